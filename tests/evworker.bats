#!/usr/bin/env bats
# evworker: durable jobs and workflows whose every step is broadcast.
# The queue is SQLite, or PostgreSQL with EVKIT_STORE=pg (`make test-pg`).
load helpers

setup_file() { store_setup_file; }
teardown_file() { store_teardown_file; }
setup() { jobs_setup; }
teardown() { stop_all; }

ew() { evworker --db "$DB" "$@"; }

@test "a two-step workflow broadcasts its steps in order, on the topics SPEC names" {
	cat >"$T/steps.json" <<-'EOF'
	[{"name":"validate","run":["sh","-c","echo '50 half' >&$EVWORKER_PROGRESS_FD; echo checking >&$EVWORKER_PROGRESS_FD"]},
	 {"name":"process","run":["true"]}]
	EOF
	bg_to "$T/events" evsub --ready-file "$T/ready" -n 8 -W 30 'workflow:**' 'process:**'
	local sub=${BG_PIDS[-1]}
	wait_file "$T/ready"
	run -0 ew enqueue --steps "$T/steps.json" --workflow wf1
	[ "$(jq -r .state <<<"$output")" = available ]
	run -0 ew run --drain
	wait "$sub"
	local pid
	pid=$(jq -r 'select(.event == "process_created") | .payload.process_id' "$T/events")
	run jq -r '[.topic, .event, (.payload.percentage // "")] | map(tostring) | join(" ")' "$T/events"
	assert_output "workflow:wf1 process_created 
process:$pid step_started 0
process:$pid step_progress 25
process:$pid progress_update 
process:$pid step_completed 50
process:$pid step_started 50
process:$pid step_completed 100
workflow:wf1 workflow_completed "
	[ "$(jq -r 'select(.event == "step_progress") | .payload.content' "$T/events")" = half ]
	[ "$(jq -r 'select(.event == "progress_update") | .payload.content' "$T/events")" = checking ]
	[ "$(ew show 1 | jq -r .state)" = completed ]
}

@test "a job exiting 3 with --max-attempts 3 --backoff 0 runs 3 times, fails each time, ends discarded" {
	bg_to "$T/events" evsub --ready-file "$T/ready" --event workflow_failed -n 3 -W 30 'workflow:**'
	local sub=${BG_PIDS[-1]}
	wait_file "$T/ready"
	ew enqueue --max-attempts 3 --backoff 0 -- sh -c 'exit 3' >/dev/null
	run -1 ew run --drain
	wait "$sub"
	run jq -c '[.payload.attempt, .payload.error, .payload.will_retry]' "$T/events"
	assert_output $'[1,"exit 3",true]\n[2,"exit 3",true]\n[3,"exit 3",false]'
	run ew show 1
	[ "$(jq -c '[.state, .attempt]' <<<"$output")" = '["discarded",3]' ]
}

@test "exit 75 snoozes: the job runs again without an attempt counted" {
	ew enqueue --backoff 0 -- sh -c '[ -e "$0" ] && exit 0; touch "$0"; exit 75' "$T/marker" >/dev/null
	run -0 ew run --drain
	run ew show 1
	[ "$(jq -c '[.state, .attempt]' <<<"$output")" = '["completed",1]' ]
}

@test "--timeout 1 kills the job's whole process group and marks it failed by timeout" {
	# A duration of this run's own: other suites on the machine sleep too.
	local s=30.$$$RANDOM
	ew enqueue --timeout 1 --max-attempts 1 -- sh -c 'sleep "$0" & sleep "$0"' "$s" >/dev/null
	run -1 ew run --drain
	run ew show 1
	[ "$(jq -r .last_error <<<"$output")" = "timeout after 1 s" ]
	[ "$(jq -r .state <<<"$output")" = discarded ]
	run pgrep -f "sleep $s"
	assert_failure
}

@test "two workers with --concurrency 3 run 200 quick jobs, each exactly once" {
	local i
	for ((i = 1; i <= 200; i++)); do
		ew enqueue -- sh -c 'echo "$EVWORKER_JOB_ID" >>"$0"' "$T/ran" >/dev/null
	done
	ew run --drain --concurrency 3 2>/dev/null &
	local a=$!
	ew run --drain --concurrency 3 2>/dev/null &
	local b=$!
	wait "$a"
	wait "$b"
	[ "$(wc -l <"$T/ran")" -eq 200 ]
	[ "$(sort -u "$T/ran" | wc -l)" -eq 200 ]
	[ "$(ew list --state completed | wc -l)" -eq 200 ]
}

# worker_killed_mid_job SECONDS [exec] — job 1 appends "run" to
# $T/once.log each time it runs; its first run sleeps SECONDS (a child of
# the step's shell, left in its process group when the shell dies with the
# worker; with exec, the step itself), and its worker is killed -9 then.
# PostgreSQL: waits until the dead worker's session (and its lock) ended,
# once the server saw the connection close.
worker_killed_mid_job() {
	ew enqueue -- sh -c 'echo run >>"$0.log"; [ -e "$0" ] && exit 0; touch "$0"; $2 sleep "$1"' \
		"$T/once" "$1" "${2:-}" >/dev/null
	evworker --db "$DB" run 2>/dev/null &
	local w=$!
	wait_file "$T/once"
	# The step's pid is committed just after its start (on PostgreSQL
	# without waiting for the answer): the kill comes after it.
	wait_for job_has_child 1
	kill -9 "$w"
	wait "$w" || true
	! on_pg || wait_for pg_no_sessions "$DB"
}

# job_has_child ID — the queue holds job ID's step pid.
job_has_child() { [ "$(db_sql "$DB" "SELECT count(*) FROM jobs WHERE id = $1 AND child_pid IS NOT NULL")" = 1 ]; }

@test "a job whose worker was killed -9 is rescued and completes on the next run, never twice at once" {
	local s=30.$$$RANDOM
	worker_killed_mid_job "$s"
	run -0 ew run --drain
	[ "$(ew show 1 | jq -r .state)" = completed ]
	[ "$(wc -l <"$T/once.log")" -eq 2 ]
	run pgrep -f "sleep $s"
	assert_failure
}

# leads_group PID — PID runs and leads its own process group.
leads_group() { [ "$(ps -o pgid= -p "$1" | tr -d ' ')" = "$1" ]; }

# past_tick TICKS — the clock is past TICKS, clock ticks after boot (the
# unit of a process's start time, /proc/PID/stat field 22).
past_tick() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" '{ exit !($1 * hz > t + 1) }' /proc/uptime; }

@test "pids used again (a later process, a reboot): the dead worker's job is rescued though a process has its pid, and the group that now has its step's pid is not killed" {
	worker_killed_mid_job 1000 exec
	# Processes started in one clock tick look alike (see lib/proc_id.h):
	# the stranger below starts in a later tick than the step and worker.
	local started
	started=$(db_sql "$DB" "SELECT child_start FROM jobs WHERE id = 1")
	[[ $started == */* ]]
	wait_for past_tick "${started#*/}"
	# A stranger leading its own process group has the pids the dead
	# worker and its step had (the rescue on PostgreSQL goes by the
	# worker's lock, not its pid; the step's group counts on both).
	setsid sleep 1000 &
	local stranger=$!
	BG_PIDS+=("$stranger")
	wait_for leads_group "$stranger"
	db_sql "$DB" "UPDATE jobs SET worker_pid = $stranger, child_pid = $stranger WHERE id = 1"
	run -0 ew run --drain
	[ "$(ew show 1 | jq -r .state)" = completed ]
	[ "$(wc -l <"$T/once.log")" -eq 2 ]
	! gone "$stranger"
}

@test "a job an older evworker claims after this one ran it is judged by pid alone: never rescued from its live worker" {
	sqlite_only "the rescue by pid (PostgreSQL goes by the worker's lock)"
	ew enqueue -- sh -c '[ -e "$0" ] && exit 0; touch "$0"; exit 1' "$T/first" >/dev/null
	run -1 ew run --drain # its job failed
	[ "$(ew show 1 | jq -r .state)" = retryable ]
	# An older evworker, which does not record which process it is, claims
	# the job: only its state, worker and attempt change.
	sleep 1000 &
	local old=$!
	BG_PIDS+=("$old")
	db_sql "$DB" "UPDATE jobs SET state = 'executing', worker_pid = $old, attempt = attempt + 1 WHERE id = 1"
	run -0 --separate-stderr ew run --drain
	[ "$(ew show 1 | jq -r .state)" = executing ]
	[[ $stderr != *rescued* ]]
}

@test "a step dies with its worker: kill -9 the worker and the step's process is gone too" {
	local s=30.$$$RANDOM
	# The first run writes its pid and sleeps; the rescued run ends at once.
	ew enqueue -- sh -c '[ -e "$0" ] && exit 0; echo $$ >"$0.tmp"; mv "$0.tmp" "$0"; exec sleep "$1"' \
		"$T/pid" "$s" >/dev/null
	evworker --db "$DB" run 2>/dev/null &
	local w=$!
	wait_file "$T/pid"
	local step
	step=$(cat "$T/pid")
	kill -9 "$w"
	wait "$w" || true
	WAIT_SECS=20 wait_for gone "$step"
	! on_pg || wait_for pg_no_sessions "$DB"
	run -0 ew run --drain
	[ "$(ew show 1 | jq -r .state)" = completed ]
}

@test "scheduled jobs wait, cancelled jobs never run, --unique-for returns the existing job" {
	ew enqueue --in 3600 -- touch "$T/later" >/dev/null
	ew enqueue -- touch "$T/cancelled" >/dev/null
	run -0 ew cancel 2
	[ "$(jq -r .state <<<"$output")" = cancelled ]
	run -0 ew enqueue --unique-for 60 -- touch "$T/unique"
	local id
	id=$(jq .id <<<"$output")
	run -0 ew enqueue --unique-for 60 -- touch "$T/unique"
	[ "$(jq .id <<<"$output")" -eq "$id" ]
	run -0 ew run --drain
	[ ! -e "$T/later" ] && [ ! -e "$T/cancelled" ] && [ -e "$T/unique" ]
	[ "$(ew show 1 | jq -r .state)" = scheduled ]
	[ "$(ew list | wc -l)" -eq 3 ]
}

@test "arguments with ; \$( ) quotes and newlines reach the job unchanged" {
	local nasty1='a; rm -rf / $(touch pwned) `id`' nasty2=$'two\nlines "q" \'s\''
	ew enqueue -- sh -c 'printf "%s\0" "$@" >"$0"' "$T/args" "$nasty1" "$nasty2" >/dev/null
	run -0 ew run --drain
	run bash -c "tr '\\0' '|' <'$T/args'"
	assert_output "$nasty1|$nasty2|"
	[ ! -e pwned ] && [ ! -e "$T/pwned" ]
}

@test "a step that cannot be run fails with 127 and says why; a script without #! runs under sh" {
	printf 'echo "$2" >"$1"\n' >"$T/plain"
	chmod +x "$T/plain"
	ew enqueue --max-attempts 1 -- evkit-no-such-command >/dev/null
	ew enqueue --max-attempts 1 -- "$T/plain" "$T/ran" yes >/dev/null
	run -1 ew run --drain
	run ew show 1
	[ "$(jq -c '[.state, .last_error, .output]' <<<"$output")" = \
		'["discarded","exit 127","cannot run the step'"'"'s command: evkit-no-such-command\n"]' ]
	[ "$(ew show 2 | jq -r .state)" = completed ]
	[ "$(cat "$T/ran")" = yes ]
}

@test "a step starts with the default action for SIGPIPE, which the worker ignores" {
	ew enqueue --max-attempts 1 -- sh -c 'kill -PIPE $$; exit 0' >/dev/null
	run -1 ew run --drain
	[ "$(ew show 1 | jq -r .last_error)" = "killed by signal 13" ]
}

@test "with the hub down the job still runs; its events are delivered in order once the hub is back" {
	stop_hub
	ew enqueue --workflow wf9 -- sh -c 'echo "10 a" >&$EVWORKER_PROGRESS_FD; echo "90 b" >&$EVWORKER_PROGRESS_FD' >/dev/null
	run -0 --separate-stderr ew run --drain
	[[ $stderr == *"outbox"* ]]
	[ "$(ew show 1 | jq -r .state)" = completed ]
	start_hub
	run -0 ew run --drain
	run evsub --since 0 -n 6 -W 10 -F '%e %{payload.percentage}' '**'
	assert_output $'process_created \nstep_started 0\nstep_progress 10\nstep_progress 90\nstep_completed 100\nworkflow_completed '
}

@test "evworker rejects bad usage with 2 and unknown jobs with 1" {
	run -2 ew enqueue
	run -2 ew enqueue --priority 12 -- true
	run -2 ew frobnicate
	run -1 ew show 999
	echo '[{"name":"a"}]' >"$T/bad.json"
	run -65 ew enqueue --steps "$T/bad.json"
}

@test "evworker on enqueues exactly one job per matching event, across a restart, the event on stdin" {
	evworker --db "$DB" on --ready-file "$T/ready" 'case:created' -- sh -c 'jq -r .payload.n >>"$0"' "$T/seen" 2>"$T/on.err" &
	local on=$!
	BG_PIDS+=("$on")
	wait_file "$T/ready"
	local i
	for i in 1 2 3; do evpub case:created create "{\"n\":$i}"; done
	evpub case:synced sync '{"n":99}'
	wait_for bash -c "[ \"\$(evworker --db '$DB' list | wc -l)\" -eq 3 ]"
	kill -TERM "$on"
	wait "$on"
	# Published while `on` is down: picked up after the restart.
	for i in 4 5; do evpub case:created create "{\"n\":$i}"; done
	rm -f "$T/ready"
	evworker --db "$DB" on --ready-file "$T/ready" 'case:created' -- sh -c 'jq -r .payload.n >>"$0"' "$T/seen" 2>>"$T/on.err" &
	on=$!
	BG_PIDS+=("$on")
	wait_file "$T/ready"
	evpub case:created create '{"n":6}'
	wait_for bash -c "[ \"\$(evworker --db '$DB' list | wc -l)\" -eq 6 ]"
	kill -TERM "$on"
	wait "$on"
	run -0 ew run --drain
	run sort -n "$T/seen"
	assert_output $'1\n2\n3\n4\n5\n6'
}

@test "jobs run by priority, then due time, then id; --resource also broadcasts on resource:{id}" {
	ew enqueue --priority 5 -- sh -c 'echo low >>"$0"' "$T/order" >/dev/null
	ew enqueue --priority 0 --resource r1 -- sh -c 'echo high >>"$0"' "$T/order" >/dev/null
	ew enqueue --at 2020-01-01T00:00:00Z --priority 5 -- sh -c 'echo old >>"$0"' "$T/order" >/dev/null
	bg_to "$T/events" evsub --ready-file "$T/ready" -n 2 -W 30 'resource:r1'
	local sub=${BG_PIDS[-1]}
	wait_file "$T/ready"
	run -0 ew run --drain
	run cat "$T/order"
	assert_output $'high\nold\nlow'
	wait "$sub"
	run jq -r .event "$T/events"
	assert_output $'process_created\nworkflow_completed'
}

@test "evworker stats counts jobs per queue and state; prune forgets finished ones" {
	ew enqueue -- true >/dev/null
	ew enqueue --queue other -- true >/dev/null
	ew enqueue --in 3600 -- true >/dev/null
	ew run --drain 2>/dev/null
	run -0 ew stats
	[ "$(jq -c . <<<"$output")" = '{"default":{"completed":1,"scheduled":1},"other":{"available":1}}' ]
	run -0 ew prune --older-than 1
	[ "$(jq .pruned <<<"$output")" -eq 0 ]
	run -2 ew prune
}

@test "SIGTERM stops claiming, lets a running job finish within --grace, then exits" {
	ew enqueue -- sh -c 'sleep 0.5; touch "$0"' "$T/finished" >/dev/null
	ew enqueue -- touch "$T/never" >/dev/null
	evworker --db "$DB" run --grace 10 2>"$T/log" &
	local w=$!
	wait_for grep -q "job 1 started" "$T/log"
	kill -TERM "$w"
	wait "$w"
	[ -e "$T/finished" ] && [ ! -e "$T/never" ]
	[ "$(ew show 1 | jq -r .state)" = completed ]
	[ "$(ew show 2 | jq -r .state)" = available ]
}

@test "a steps file is read whole past 1 MiB; past the 64 MiB bound it is refused, never cut" {
	{ printf '%*s' 1300000 ''; echo '[{"name":"late","run":["true"]}]'; } >"$T/big.json"
	run -0 ew enqueue --steps "$T/big.json"
	[ "$(jq -r '.steps[0].name' <<<"$output")" = late ]
	truncate -s 70M "$T/huge.json"
	run -65 --separate-stderr ew enqueue --steps "$T/huge.json"
	[ "$stderr" = "evworker: $T/huge.json: longer than 67108864 bytes" ]
	[ "$(ew list | wc -l)" -eq 1 ]
}

@test "--steps refuses trailing garbage and a \\u0000 in a string (65), and a directory (74)" {
	echo '[{"name":"a","run":["true"]}] trailing' >"$T/garbage.json"
	run -65 --separate-stderr ew enqueue --steps "$T/garbage.json"
	[[ $stderr == *"invalid JSON at byte 31"* ]] || fail "$stderr"
	echo '[{"name":"a","run":["tr\u0000ue", "x"]}]' >"$T/nul.json"
	run -65 --separate-stderr ew enqueue --steps "$T/nul.json"
	[[ $stderr == *'a string holds \u0000'* ]] || fail "$stderr"
	run -74 --separate-stderr ew enqueue --steps "$T"
	[[ $stderr == *"Is a directory"* ]] || fail "$stderr"
	# cJSON takes any control byte for white space; JSON does not.
	printf '[{"name":"a","run":["true"]}]\002\n' >"$T/ctl.json"
	run -65 --separate-stderr ew enqueue --steps "$T/ctl.json"
	[[ $stderr == *"raw control byte at byte 30"* ]] || fail "$stderr"
	[ "$(ew list | wc -l)" -eq 0 ]
}

@test "enqueue --steps - reads the steps from stdin" {
	run -0 ew enqueue --steps - --workflow from-stdin <<<'[{"name":"s","run":["true"]}]'
	[ "$(jq -c '[.workflow_id, .steps[0].name]' <<<"$output")" = '["from-stdin","s"]' ]
}

@test "an option that does not apply to the command is a usage error naming both" {
	echo '[{"name":"a","run":["true"]}]' >"$T/x.json"
	run -2 --separate-stderr ew run --priority 3 --steps "$T/x.json" --drain
	[ "$stderr" = "evworker run: --priority does not apply to run"$'\n'"Try 'evworker run --help' for more information." ]
	run -2 --separate-stderr ew list --older-than 5
	[ "${stderr_lines[0]}" = "evworker list: --older-than does not apply to list" ]
	run -0 ew run --help
	assert_output --partial "usage: evworker [options] run"
	assert_output --partial "--concurrency N"
	refute_output --partial "--priority"
}

@test "list --state with an unknown state lists the valid ones" {
	run -2 --separate-stderr ew list --state done
	[ "${stderr_lines[0]}" = "evworker list: unknown state 'done' (available, scheduled, executing, retryable, completed, discarded, cancelled)" ]
}

@test "dates in evworker's JSON are RFC 3339, scheduled_at included" {
	run -0 ew enqueue --at 2030-01-02T03:04:05Z -- true
	[ "$(jq -r .scheduled_at <<<"$output")" = 2030-01-02T03:04:05.000000Z ]
	[[ $(jq -r .inserted_at <<<"$output") =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]]
}

@test "evworker wait: a job that ended before the wait returns at once with its status" {
	ew enqueue --workflow ok -- true >/dev/null
	ew enqueue --workflow bad --max-attempts 1 -- false >/dev/null
	ew run --drain 2>/dev/null || true
	run -0 ew wait 1
	run -1 ew wait 2
	run -0 ew wait --workflow ok
	run -1 ew wait --workflow bad
	run -1 --separate-stderr ew wait 99
	[ "$stderr" = "evworker: no job 99" ]
	run -2 ew wait
	run -2 ew wait 1 --workflow ok
}

@test "evworker wait follows a job to its end, and gives 124 at --timeout" {
	ew enqueue --workflow later -- sh -c 'sleep 0.3' >/dev/null
	ew enqueue --in 3600 --workflow never -- true >/dev/null
	bg evworker --db "$DB" run # the program itself, so stop_all stops it by its pid
	run -0 ew wait --workflow later --timeout 30
	[ "$(ew show 1 | jq -r .state)" = completed ]
	run -124 --separate-stderr ew wait --workflow never --timeout 0.2
	[ "$stderr" = "evworker: timed out: 1 of 1 job not ended" ]
}

@test "evworker creates jobs.db, its WAL and SHM 0600 whatever the umask" {
	sqlite_only "files and their modes"
	(umask 022 && exec evworker --db "$DB" on --ready-file "$T/ready" 'never:*' -- true >/dev/null 2>&1) &
	BG_PIDS+=($!)
	wait_file "$T/ready"
	wait_file "$DB-wal"
	[ "$(stat -c %a "$DB")" = 600 ]
	[ "$(stat -c %a "$DB-wal")" = 600 ]
	[ "$(stat -c %a "$DB-shm")" = 600 ]
}

@test "a schema change that fails says why, and leaves the queue as it was" {
	sqlite_only "SQLite's user_version"
	ew enqueue -- true >/dev/null
	# The columns of schema 5 are there already: its change cannot apply.
	sqlite3 "$DB" 'PRAGMA user_version = 4'
	run -69 --separate-stderr ew list
	[[ $stderr == *"cannot set up the database: duplicate column name: worker_start"* ]]
	[ "$(sqlite3 "$DB" 'PRAGMA user_version')" -eq 4 ]
	[ "$(sqlite3 "$DB" 'SELECT count(*) FROM jobs')" -eq 1 ]
}

@test "events an earlier evworker left in its outbox go out once, in order, after the upgrade" {
	sqlite_only "SQLite's schema before version 3"
	ew enqueue -- true >/dev/null
	# The queue as evworker wrote it before schema 3, two events pending.
	sqlite3 "$DB" <<-'SQL'
		DROP TABLE notes;
		DROP TABLE outbox_producer;
		CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
		INSERT INTO outbox (line) VALUES
		  ('{"ts":"2026-01-02T03:04:05.000006Z","topic":"old:one","event":"e","payload":{"n":1}}'),
		  ('{"ts":"2026-01-02T03:04:06.000006Z","topic":"old:two","event":"e","payload":{"n":2}}');
		DELETE FROM jobs;
		ALTER TABLE jobs DROP COLUMN worker_start;
		ALTER TABLE jobs DROP COLUMN child_start;
		PRAGMA user_version = 2;
	SQL
	run -0 ew run --drain
	[ "$(sqlite3 "$DB" 'PRAGMA user_version')" -eq 5 ]
	[ "$(sqlite3 "$DB" 'SELECT count(*) FROM notes')" -eq 0 ]
	[ "$(hub_status_field head_seq)" -eq 2 ]
	run -0 evsub --since 0 -n 2 -W 10 'old:*'
	[ "$(jq -r .topic <<<"$output" | paste -sd' ')" = 'old:one old:two' ]
}
