#!/usr/bin/env bats
# The systemd user units in examples/systemd: valid for systemd-analyze
# (when it is there), every flag of ExecStart known to the program, and the
# ExecStart lines, run as systemd would run them, give a working hub and
# widget daemon at the default address.
load helpers

UNITS=$BATS_TEST_DIRNAME/../examples/systemd

teardown() { stop_all; }

# execstart UNIT — the unit's ExecStart command line.
execstart() { sed -n 's/^ExecStart=//p' "$UNITS/$1"; }

@test "the units are Type=simple, restart on failure and name existing flags" {
	local u argv flag
	for u in evbusd.service widgetd.service; do
		grep -qx 'Type=simple' "$UNITS/$u"
		grep -qx 'Restart=on-failure' "$UNITS/$u"
		read -r -a argv <<<"$(execstart "$u")"
		[ "${argv[0]}" = "/usr/local/bin/${u%.service}" ]
		for flag in "${argv[@]:1}"; do
			[[ $flag == --* ]] || continue
			"${u%.service}" --help | grep -q -- "$flag " || fail "$u: ExecStart flag $flag is not in --help"
		done
	done
	grep -qx 'Requires=evbusd.service' "$UNITS/widgetd.service"
	grep -qx 'After=evbusd.service' "$UNITS/widgetd.service"
}

@test "systemd-analyze verify accepts the units" {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
	local d=$BATS_TEST_TMPDIR/units u
	mkdir -p "$d" "$BATS_TEST_TMPDIR/run"
	chmod 700 "$BATS_TEST_TMPDIR/run"
	# the binaries under test, where the installed units would name PREFIX/bin
	for u in evbusd.service widgetd.service; do
		sed "s|/usr/local/bin/|$EVKIT_BIN/|" "$UNITS/$u" >"$d/$u"
	done
	run -0 systemd-analyze verify --man=no "$d/evbusd.service" "$d/widgetd.service"
	[ -z "$output" ]
	XDG_RUNTIME_DIR=$BATS_TEST_TMPDIR/run run -0 systemd-analyze verify --user --man=no \
		"$d/evbusd.service" "$d/widgetd.service"
	[ -z "$output" ]
}

@test "make install puts the units in PREFIX/lib/systemd/user with PREFIX/bin in ExecStart" {
	local D=$BATS_TEST_TMPDIR/D
	make -s -C "$BATS_TEST_DIRNAME/.." install PREFIX=/usr DESTDIR="$D" >/dev/null
	grep -qx 'ExecStart=/usr/bin/evbusd --store %S/evkit/bus.db' "$D/usr/lib/systemd/user/evbusd.service"
	grep -q '^ExecStart=/usr/bin/widgetd ' "$D/usr/lib/systemd/user/widgetd.service"
}

@test "the ExecStart lines, run as systemd runs them, serve at the default address" {
	local run=$BATS_TEST_TMPDIR/run state=$BATS_TEST_TMPDIR/state argv
	mkdir -p "$run" "$state"
	chmod 700 "$run"
	unset EVBUS_URL
	export XDG_RUNTIME_DIR=$run XDG_STATE_HOME=$state
	# %S is the user's state directory
	read -r -a argv <<<"$(execstart evbusd.service | sed "s|%S|$state|g; s|/usr/local/bin/||")"
	bg "${argv[@]}" 3>&-
	WAIT_SECS=20 wait_for evbusd --status >/dev/null
	read -r -a argv <<<"$(execstart widgetd.service | sed "s|%S|$state|g; s|/usr/local/bin/||")"
	bg "${argv[@]}" 3>&-
	# widgetd answers once subscribed; what is published next is folded
	WAIT_SECS=20 wait_for widgetd get >/dev/null 2>&1
	evpub workflow:svc process_created '{"process_id":"p1","workflow_id":"svc"}'
	run -0 widgetd get progress-svc
	[ "$(jq -r .id <<<"$output")" = progress-svc ]
	[ -f "$state/evkit/bus.db" ]
	[ -f "$state/evkit/widgets.db" ]
}
