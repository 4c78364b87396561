#!/usr/bin/env bats
# The daemons' messages: --log FILE (timestamped), syslog when detached
# without it, -q and -v.
load helpers

setup() { T=$BATS_TEST_TMPDIR; }
teardown() { stop_all; }

STAMP='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'

@test "evbusd --daemon --log FILE -v: what the hub does, timestamped, in FILE" {
	evbusd_only "evbusd's own log"
	start_hub --log "$T/hub.log" -v
	wait_for grep -q 'listening on' "$T/hub.log"
	run grep 'listening on' "$T/hub.log"
	assert_output --regexp "$STAMP evbusd\\[$HUB_PID\\]: listening on 'ipc://"
	stop_hub
	run grep -c 'stopping' "$T/hub.log"
	assert_output 1
	# The log is private like the hub's other files.
	run stat -c %a "$T/hub.log"
	assert_output 600
}

@test "widgetd --daemon --log FILE keeps its warnings; -q drops them; -v says what it announces" {
	start_hub
	widgetd --state "$T/w.db" --daemon --pidfile "$T/w.pid" --log "$T/w.log" -v
	BG_PIDS+=("$(cat "$T/w.pid")")
	evpub widgetd:session bogus '{}'
	wait_for grep -q 'not a session command; skipped' "$T/w.log"
	run grep 'not a session command' "$T/w.log"
	assert_output --regexp "$STAMP widgetd\\[[0-9]+\\]: event [0-9]+ \\(bogus\\): not a session command; skipped"
	run grep -c 'subscribed to' "$T/w.log"
	assert_output 1
	evpub process:p1 process_created '{"process_id":"p1","workflow_id":"wfl"}'
	wait_for grep -q 'announced widget_updated on widget:progress-wfl' "$T/w.log"

	# -q: the same skipped event leaves no line; the daemon still works.
	widgetd --state "$T/q.db" --daemon --pidfile "$T/q.pid" --log "$T/q.log" -q
	BG_PIDS+=("$(cat "$T/q.pid")")
	evpub widgetd:session bogus '{}'
	evpub process:p2 process_created '{"process_id":"p2","workflow_id":"wfq"}'
	WAIT_SECS=20 wait_for bash -c "widgetd get progress-wfq >/dev/null 2>&1"
	run cat "$T/q.log"
	assert_output ''
}

@test "--log names a file it cannot open: exit 74 before going to the background" {
	evbusd_only "evbusd's own log"
	run -74 evbusd --memory --bus "ipc://$T/bus" --daemon --log "$T/no/such/dir/hub.log"
	assert_output --partial "cannot open the log '$T/no/such/dir/hub.log'"
	run -74 widgetd --state "$T/w.db" --bus "ipc://$T/bus" --log "$T/no/such/dir/w.log"
	assert_output --partial "cannot open the log"
}

@test "-q and -v are in both daemons' --help" {
	run -0 evbusd --help
	assert_output --partial '--log FILE'
	assert_output --partial '-q, --quiet'
	run -0 widgetd --help
	assert_output --partial '--log FILE'
	assert_output --partial '-v, --verbose'
}

@test "evworker -q drops run's notices; -v adds what run does; errors still print" {
	start_hub
	evworker --db "$T/jobs.db" enqueue -- true >/dev/null
	run -0 --separate-stderr evworker --db "$T/jobs.db" run --drain
	[[ $stderr == *"job 1 completed"* ]] || fail "default: $stderr"
	evworker --db "$T/jobs.db" enqueue -- true >/dev/null
	run -0 --separate-stderr evworker -q --db "$T/jobs.db" run --drain
	[ -z "$stderr" ] || fail "-q: $stderr"
	run -0 evworker --db "$T/jobs.db" list --state completed
	[ "${#lines[@]}" -eq 2 ]
	evworker --db "$T/jobs.db" enqueue -- true >/dev/null
	run -0 --separate-stderr evworker -v --db "$T/jobs.db" run --drain
	[[ $stderr == *"running jobs of queue 'default', 1 at once, until none is due"* ]] || fail "-v: $stderr"
	run -2 --separate-stderr evworker -q --db "$T/jobs.db" run --bogus
	[[ $stderr == *"--bogus"* ]] || fail "-q hid a usage error: $stderr"
}
