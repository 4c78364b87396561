#!/usr/bin/env bats
# Other people's hands (issue 16, item 6): the hub's files are private
# whatever the umask, and a client refused by the socket's permissions
# says "permission denied" with 77, not "no hub" with 69.
load helpers

setup() { evbusd_only "evbusd's files and ipc socket"; }
teardown() {
	stop_all
	[[ -z ${WORKDIR:-} ]] || rm -rf "$WORKDIR"
}

# mode PATH — the octal permission bits of PATH.
mode() { stat -c %a "$1"; }

@test "evbusd makes its store, -wal, -shm, lock, pidfile and socket 0600 in 0700 directories under umask 022" {
	umask 022
	HUB_STORE=$BATS_TEST_TMPDIR/new/dir/bus.db start_hub
	run -0 evpub t:a tick '{"password":"hunter2"}'
	local f
	for f in bus.db bus.db-wal bus.db-shm bus.db.lock; do
		[ "$(mode "$BATS_TEST_TMPDIR/new/dir/$f")" = 600 ] || {
			echo "$f: $(mode "$BATS_TEST_TMPDIR/new/dir/$f")"; false; }
	done
	[ "$(mode "$BATS_TEST_TMPDIR/new")" = 700 ]
	[ "$(mode "$BATS_TEST_TMPDIR/new/dir")" = 700 ]
	[ "$(mode "$BATS_TEST_TMPDIR/hub.pid")" = 600 ]
	[ "$(mode "$BATS_TEST_TMPDIR/bus")" = 600 ]
	[ "$(mode "$BATS_TEST_TMPDIR/bus.pub")" = 600 ]
}

@test "evbusd makes a store others could read private, and says so" {
	umask 022
	sqlite3 "$BATS_TEST_TMPDIR/bus.db" 'CREATE TABLE x (y);'
	chmod 644 "$BATS_TEST_TMPDIR/bus.db"
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus"
	run -0 evbusd --store "$BATS_TEST_TMPDIR/bus.db" --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid"
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
	assert_output --partial "was readable by others: made it private"
	[ "$(mode "$BATS_TEST_TMPDIR/bus.db")" = 600 ]
}

# denied CMD... — runs CMD as a client the hub's socket refuses: the
# test's own user once the socket is chmod 000, or, when the tests run as
# root (root passes every permission check), the user nobody.
denied() {
	if [[ $(id -u) -eq 0 ]]; then
		setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
	else
		"$@"
	fi
}

@test "a client the socket refuses says 'permission denied' and exits 77, on every program" {
	if [[ $(id -u) -eq 0 ]] && ! setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
		skip "running as root without a working setpriv: cannot be refused"
	fi
	start_hub
	chmod 000 "${EVBUS_URL#ipc://}" "${EVBUS_URL#ipc://}.pub"
	chmod 755 "$BATS_TEST_TMPDIR"
	run -77 denied evpub t:a tick
	assert_output --partial "permission denied"
	refute_output --partial "no hub"
	run -77 denied evsub -n 1 -W 5 '**'
	assert_output --partial "permission denied"
	run -77 denied evbusd --status
	assert_output --partial "permission denied"
	run -77 denied widgetd get
	assert_output --partial "permission denied"
	# evworker's own database where the other user may write it
	WORKDIR=$(mktemp -d)
	chmod 777 "$WORKDIR"
	run -77 denied evworker --db "$WORKDIR/jobs.db" on "t:**" -- true
	assert_output --partial "permission denied"
}
