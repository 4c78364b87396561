#!/usr/bin/env bats
# evbusd never wedges: a client that goes away during the handshake, a hub
# stopped and continued, and the watchdog that restarts a hub that no
# longer answers (issue 16, items 4 and 5).
load helpers

setup() { evbusd_only "the hub's own sockets and watchdog"; }
teardown() { stop_all; }

# A connection the hub accepts only after its client closed it: the hub's
# send of its SP header fails with EPIPE, which nng 1.5.2 took for the
# listener's own closing (upstream nanomsg/nng#1518) and stopped accepting.
# The connect waits until every thread of the hub is stopped: kill returns
# before a thread busy on another core has stopped, and one that accepts
# in time makes the order the winning one.
closed_before_accept() {
	kill -STOP "$1"
	wait_for all_stopped "$1"
	"$EVKIT_TOOLS/bareconn" "$EVBUS_URL" "${2:-1}"
	kill -CONT "$1"
}

# all_stopped PID — true when each of PID's threads is stopped (state T).
all_stopped() {
	local stat t
	for t in /proc/"$1"/task/*/stat; do
		stat=$(cat "$t" 2>/dev/null) || continue
		stat=${stat##*) }
		[[ ${stat:0:1} == [Tt] ]] || return 1
	done
}

# seqs — the seq of every retained event, one line.
seqs() { evsub --since 0 -n "$1" -W 20 '**' | jq -c -s 'map(.seq)'; }

@test "a bare connect and close on the ipc socket leaves the hub accepting" {
	start_hub
	local round
	for round in 1 2 3 4 5; do
		run -0 "$EVKIT_TOOLS/bareconn" "$EVBUS_URL" 20
		run -0 evpub t:a tick "{\"round\":$round}"
	done
	# The losing order made certain: the client is gone before the accept.
	for round in 6 7 8; do
		closed_before_accept "$HUB_PID"
		run -0 evpub t:a tick "{\"round\":$round}"
	done
	run -0 seqs 8
	[ "$output" = "[1,2,3,4,5,6,7,8]" ]
}

@test "the fan-out socket survives bare connects too" {
	start_hub
	closed_before_accept "$HUB_PID"
	kill -STOP "$HUB_PID"
	wait_for all_stopped "$HUB_PID"
	"$EVKIT_TOOLS/bareconn" "${EVBUS_URL}.pub" 3
	kill -CONT "$HUB_PID"
	bg_to "$BATS_TEST_TMPDIR/out" evsub -n 1 -W 20 --ready-file "$BATS_TEST_TMPDIR/ready" 't:**'
	WAIT_SECS=20 wait_file "$BATS_TEST_TMPDIR/ready"
	run -0 evpub t:a tick
	WAIT_SECS=20 wait_for json_true '.seq == 1' <"$BATS_TEST_TMPDIR/out"
}

@test "a hub stopped for a while a publisher waits answers after SIGCONT" {
	start_hub
	run -0 evpub t:a tick '{"n":1}'
	kill -STOP "$HUB_PID"
	# The publisher connects, waits for its ack, and gives up (10 s).
	evpub t:a tick '{"n":"lost"}' 2>"$BATS_TEST_TMPDIR/err" &
	local pub=$!
	BG_PIDS+=("$pub")
	WAIT_SECS=30 wait_for gone "$pub"
	local rc=0
	wait "$pub" || rc=$?
	[ "$rc" -ne 0 ]
	kill -CONT "$HUB_PID"
	run -0 evpub t:a tick '{"n":2}'
	# The publisher that gave up was never told its event was stored, and
	# a timeout is ambiguous: the hub may still store it once it runs
	# again (seen under load). What it promises: it answers, it keeps
	# every acknowledged event, and the log has no hole or repeat.
	local head
	head=$(hub_status_field head_seq)
	[[ $head == 2 || $head == 3 ]] || fail "head_seq $head"
	run -0 bash -c "evsub --since 0 -n $head -W 20 '**' | jq -c -s '[map(.seq), (map(.payload.n) | first, last)]'"
	if [[ $head == 2 ]]; then assert_output '[[1,2],1,2]'; else assert_output '[[1,2,3],1,2]'; fi
}

@test "the watchdog restarts a hub that stopped accepting; no acknowledged event is lost" {
	# Without the sendmsg workaround nng 1.5.2 wedges for certain here.
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus"
	EVBUSD_NNG_WORKAROUND=0 bg evbusd --store "$BATS_TEST_TMPDIR/bus.db" \
		--pidfile "$BATS_TEST_TMPDIR/hub.pid" 2>"$BATS_TEST_TMPDIR/log"
	local pid=${BG_PIDS[-1]}
	# The watchdog acts once its probe has worked.
	WAIT_SECS=20 wait_for bash -c "evbusd --status | json_true '.watchdog == \"armed\"'"
	run -0 evpub t:a tick '{"n":1}'
	run -0 evpub t:a tick '{"n":2}'
	closed_before_accept "$pid"
	# Publishers fail until the watchdog notices (a few seconds), then
	# the restarted hub takes them.
	WAIT_SECS=30 wait_for evpub t:a tick '{"n":3}' 2>/dev/null
	run -0 cat "$BATS_TEST_TMPDIR/log"
	assert_output --partial "stopped answering at 'ipc://$BATS_TEST_TMPDIR/bus'"
	assert_output --partial "restarted by its watchdog"
	# Same process (re-executed), same pidfile, same log.
	kill -0 "$pid"
	[ "$(cat "$BATS_TEST_TMPDIR/hub.pid")" = "$pid" ]
	run -0 seqs 3
	[ "$output" = "[1,2,3]" ]
	WAIT_SECS=20 wait_for bash -c "evbusd --status | json_true '.watchdog == \"armed\"'"
	run -0 evsub --since 0 -n 3 -W 20 -o payload '**'
	assert_output $'{"n":1}\n{"n":2}\n{"n":3}'
}
