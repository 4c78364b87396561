#!/usr/bin/env bats
# The evkit bats library (share/bats/load.bash): each function passing and
# failing, failures checked through `run` and their messages, short
# windows, and no process left behind after any test.  Loads only the
# library (not bats-assert), as a user without bats-assert would; with
# EVKIT_TEST_BUS=nats://… the same tests run against that bus.
bats_require_minimum_version 1.5.0

EVKIT_BIN=${EVKIT_BIN:-$BATS_TEST_DIRNAME/../bin}
# `make test-nats` (EVKIT_TEST_BACKEND=nats): a private nats-server per test.
if [[ ${EVKIT_TEST_BACKEND:-} == nats && -z ${EVKIT_TEST_BUS:-} ]]; then
	EVKIT_TEST_BUS=nats
fi
load ../share/bats/load
export LC_ALL=C.UTF-8

setup() {
	evkit_setup
}

# Every process the library started is gone after evkit_teardown, and no
# process at all still names this test's directory.
teardown() {
	local pids=("${EVKIT_PIDS[@]}") p left
	evkit_teardown
	for p in "${pids[@]}"; do
		_evkit_gone "$p" || { echo "pid $p outlived evkit_teardown" >&2; return 1; }
	done
	if left=$(pgrep -a -f "$BATS_TEST_TMPDIR"); then
		echo "left behind: $left" >&2
		kill $(awk '{print $1}' <<<"$left") 2>/dev/null
		return 1
	fi
}

# The inner file's test keyword, spelled so that bats does not take the
# lines of a here-document for tests of this file.
AT=@

# has TEXT — $output contains TEXT.
has() {
	[[ $output == *"$1"* ]] || { printf 'output lacks: %s\n---\n%s\n' "$1" "$output" >&2; return 1; }
}

@test "evkit_setup starts a private in-memory hub in BATS_TEST_TMPDIR and exports EVBUS_URL" {
	[[ -z ${EVKIT_TEST_BUS:-} ]] || skip "EVKIT_TEST_BUS names the bus"
	[[ $EVBUS_URL == "ipc://$BATS_TEST_TMPDIR/"* ]]
	[[ -n $EVKIT_HUB_PID ]] && ! _evkit_gone "$EVKIT_HUB_PID"
	run evbusd --status
	[ "$status" -eq 0 ]
	[ "$(jq -r .head_seq <<<"$output")" = 0 ]
	# bash -c: a child sees the exported URL.
	run bash -c 'echo "$EVBUS_URL"'
	[ "$output" = "$EVBUS_URL" ]
}

@test "EVKIT_TEST_BUS=nats: a private nats-server per test, the same assertions" {
	command -v nats-server >/dev/null || skip "nats-server is not installed"
	# evkit's NATS backend: a nats:// URL is reachable or not, never a usage error
	run evpub --bus nats://127.0.0.1:9 probe:x e
	[ "$status" -eq 69 ] || skip "these programs have no NATS backend (evpub said: $output)"
	evkit_teardown
	EVKIT_TEST_BUS=nats evkit_setup
	[[ $EVBUS_URL == nats://127.0.0.1:* ]]
	[[ -n $EVKIT_HUB_PID ]] && ! _evkit_gone "$EVKIT_HUB_PID"
	evkit_listen 'deploy:**'
	evpub deploy:web finished '{"version":"1.4.2"}'
	assert_event 'deploy:*' finished --payload '.version == "1.4.2"'
	assert_event_count 1 'deploy:**'
	refute_event 'deploy:*' failed
	run assert_event 'deploy:*' failed --within 0.2
	[ "$status" -eq 1 ]
	has '#1 deploy:web finished {"version":"1.4.2"}'
}

@test "evkit_teardown stops the hub and the listener by pid, and may be called twice" {
	evkit_listen
	local pids=("${EVKIT_PIDS[@]}") p
	((${#pids[@]} >= 1))
	evkit_teardown
	for p in "${pids[@]}"; do _evkit_gone "$p"; done
	[ "${#EVKIT_PIDS[@]}" -eq 0 ]
	evkit_teardown
}

@test "evkit_setup outside a test says so" {
	run env -u BATS_TEST_TMPDIR bash -c "source '$BATS_TEST_DIRNAME/../share/bats/load.bash'; evkit_setup"
	[ "$status" -eq 1 ]
	has "BATS_TEST_TMPDIR is not set"
}

@test "evkit_listen is ready when it returns: an event published right after is recorded, five times over" {
	local i
	for i in 1 2 3 4 5; do
		evkit_listen 'ready:*'
		evpub "ready:$i" ping
		assert_event_count 1 'ready:*' ping
		assert_event "ready:$i" ping --within 0
	done
}

@test "evkit_listen records only its patterns; several patterns are OR-ed" {
	evkit_listen 'a:*' 'b:**'
	evpub a:1 x
	evpub c:1 x
	evpub b x
	evpub b:2:3 x
	assert_event_count 3 '**'
	refute_event 'c:**' --within 0
}

@test "evkit_listen rejects a bad pattern with the reason" {
	run evkit_listen 'case:**:x'
	[ "$status" -eq 1 ]
	has "'case:**:x': '**' may only end a pattern"
	run evkit_listen 'a:b*'
	[ "$status" -eq 1 ]
	has "'*' must be a whole segment"
	run evkit_listen 'a::b'
	has "empty segment"
}

@test "an assertion before evkit_listen says to call it" {
	run assert_event 'a:*'
	[ "$status" -eq 1 ]
	has "call evkit_listen first"
}

@test "assert_event passes on topic pattern, event and payload filter" {
	evkit_listen 'deploy:**'
	evpub deploy:web started '{"version":"1.4.2"}'
	evpub deploy:web finished '{"version":"1.4.2","ms":30}'
	assert_event 'deploy:*' finished --payload '.version == "1.4.2"'
	assert_event 'deploy:web'
	assert_event 'deploy:**' '*' --payload '.ms > 10'
	assert_event '**' started --within 0
}

@test "assert_event waits for an event that comes later" {
	evkit_listen 'late:*'
	evpub late:1 early
	# published in the background, maybe after assert_event has started
	evpub late:2 later &
	local pid=$!
	assert_event 'late:*' later --within 20
	wait "$pid"
}

@test "assert_event fails after --within and lists the events that did arrive" {
	evkit_listen 'deploy:**'
	evpub deploy:web finished '{"version":"1.4.1"}'
	evpub deploy:api started
	run assert_event 'deploy:*' finished --payload '.version == "1.4.2"' --within 0.2
	[ "$status" -eq 1 ]
	has "-- no matching event --"
	has "pattern  : deploy:*"
	has "event    : finished"
	has 'payload  : .version == "1.4.2"'
	has "within   : 0.2 s"
	has "arrived (2 events):"
	has '#1 deploy:web finished {"version":"1.4.1"}'
	has '#2 deploy:api started {}'
	[[ ${lines[-1]} == -- ]]
}

@test "assert_event with nothing recorded says so; the marker events never show" {
	evkit_listen 'x:*'
	refute_event 'x:*'
	run assert_event 'x:*' --within 0
	[ "$status" -eq 1 ]
	has "arrived  : no event"
	[[ $output != *evkit-bats* ]]
	run evkit_events
	[ -z "$output" ]
}

@test "assert_event lists only the newest EVKIT_SHOW_EVENTS events" {
	evkit_listen 'many:*'
	seq 1 30 | jq -c '{topic: "many:\(.)", event: "n", payload: {i: .}}' | evpub
	assert_event_count 30 'many:*'
	EVKIT_SHOW_EVENTS=5 run assert_event 'many:*' other --within 0
	[ "$status" -eq 1 ]
	has "arrived (30 events):"
	has "… 25 earlier not shown"
	has "many:30 n"
	[[ $output != *"many:25 n"* ]]
}

@test "assert_event: a payload filter that errors on a payload is false, one that does not compile is a usage error" {
	evkit_listen 'p:*'
	evpub -t p:1 -e text <<<'"hello"'
	evpub p:2 obj '{"version":"2"}'
	assert_event 'p:*' --payload '.version == "2"'
	run assert_event 'p:1' --payload '.version == "2"' --within 0
	[ "$status" -eq 1 ]
	has '#1 p:1 text "hello"'
	run assert_event 'p:*' --payload '.version =='
	[ "$status" -eq 1 ]
	has "usage error"
	has "is not a jq filter"
}

@test "assertions reject unknown options, bad windows and extra arguments" {
	evkit_listen
	run assert_event 'a:*' x --bogus
	has "unknown option '--bogus'"
	run assert_event 'a:*' --within soon
	has "--within 'soon': not a number of seconds"
	run assert_event 'a:*' x y
	has "too many arguments"
	run assert_event_count many 'a:*'
	has "N must be a count"
}

@test "refute_event passes when nothing matches within the window" {
	evkit_listen 'deploy:**'
	evpub deploy:web finished
	refute_event 'deploy:*' failed
	refute_event 'other:**' --within 0.1
	refute_event 'deploy:*' finished --payload '.version == "9"'
}

@test "refute_event fails on an event published just before it, even with --within 0" {
	evkit_listen 'deploy:**'
	evpub deploy:web failed '{"error":"disk full"}'
	run refute_event 'deploy:*' failed --within 0
	[ "$status" -eq 1 ]
	has "-- unexpected event --"
	has '#1 deploy:web failed {"error":"disk full"}'
}

@test "assert_event_count counts exactly: fewer and more both fail" {
	evkit_listen 'c:*'
	evpub c:1 tick
	evpub c:2 tick
	evpub c:3 tock
	assert_event_count 2 'c:*' tick
	assert_event_count 3 'c:*'
	assert_event_count 0 'c:*' none
	run assert_event_count 1 'c:*' tick --within 0.1
	[ "$status" -eq 1 ]
	has "-- event count differs --"
	has "expected : 1"
	has "actual   : 2"
	run assert_event_count 4 'c:*' --within 0.1
	[ "$status" -eq 1 ]
	has "actual   : 3"
	has "arrived (3 events):"
}

@test "assert_events_in_order allows others between and fails on the wrong order" {
	evkit_listen 'workflow:**' 'process:**'
	evpub workflow:w1 process_created
	evpub process:p1 step_started
	evpub process:p1 step_progress
	evpub process:p1 step_completed
	evpub workflow:w1 workflow_completed
	assert_events_in_order workflow:w1 process_created 'process:*' step_started \
		'process:*' step_completed 'workflow:*' workflow_completed
	run assert_events_in_order 'process:*' step_completed 'process:*' step_started --within 0.1
	[ "$status" -eq 1 ]
	has "-- events not in order --"
	has "process:* step_completed   (seen)"
	has "process:* step_started   <- missing"
	has "arrived (5 events):"
	run assert_events_in_order 'process:*'
	[ "$status" -eq 1 ]
	has "PATTERN EVENT pairs"
}

@test "evkit_wait_job waits for a job to complete and prints it" {
	local db=$BATS_TEST_TMPDIR/jobs.db id
	id=$(evworker --db "$db" enqueue -- true | jq -r .id)
	evworker --db "$db" run --drain 3>&- &
	local pid=$!
	run evkit_wait_job "$id" --db "$db" --within 20
	wait "$pid"
	[ "$status" -eq 0 ]
	[ "$(jq -r .state <<<"${lines[-1]}")" = completed ]
}

@test "evkit_wait_job --workflow returns 1 with the error when a step fails" {
	local db=$BATS_TEST_TMPDIR/jobs.db
	printf '%s\n' '[{"name":"ok","run":["true"]},{"name":"bad","run":["sh","-c","exit 3"]}]' \
		>"$BATS_TEST_TMPDIR/steps.json"
	evworker --db "$db" enqueue --max-attempts 1 --workflow nightly \
		--steps "$BATS_TEST_TMPDIR/steps.json" >/dev/null
	run evworker --db "$db" run --drain
	run evkit_wait_job --workflow nightly --db "$db" --within 20
	[ "$status" -eq 1 ]
	has "-- job did not complete --"
	has "discarded: exit 3"
}

@test "evkit_wait_job returns 124 when the job has not ended in time" {
	local db=$BATS_TEST_TMPDIR/jobs.db id
	id=$(evworker --db "$db" enqueue -- true | jq -r .id)
	run evkit_wait_job "$id" --db "$db" --within 0.2
	[ "$status" -eq 124 ]
	has "-- job did not end in time --"
	has "states   : available"
	run evkit_wait_job --db "$db"
	[ "$status" -eq 2 ]
	has "give a job ID or --workflow WF"
}

@test "the library works next to bats-support and bats-assert" {
	[[ -e /usr/lib/bats/bats-assert/load.bash ]] || skip "bats-assert is not installed"
	cat >"$BATS_TEST_TMPDIR/with_assert.bats" <<-EOF
		load '/usr/lib/bats/bats-support/load'
		load '/usr/lib/bats/bats-assert/load'
		load '$BATS_TEST_DIRNAME/../share/bats/load'
		setup() { evkit_setup; }
		teardown() { evkit_teardown; }
		${AT}test "both" {
			evkit_listen
			run evpub --echo demo:1 tick
			assert_success
			assert_event 'demo:*' tick
			run assert_event 'demo:*' tock --within 0
			assert_failure
			assert_output --partial '#1 demo:1 tick {}'
		}
	EOF
	# A clean environment and no descriptor 3: the outer run's BATS_*
	# variables and its channel would confuse the inner bats.
	run env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME" LC_ALL=C.UTF-8 EVKIT_BIN="$EVKIT_BIN" \
		bats "$BATS_TEST_TMPDIR/with_assert.bats" 3>&-
	echo "$output"
	[ "$status" -eq 0 ]
}
