#!/usr/bin/env bats
# evworker with several workers on one queue (issue 21): exactly-once
# claims, unique enqueues racing, rescue of a dead worker's job and never
# of a stopped one's, and a lost connection. On SQLite the workers share a
# host; on PostgreSQL (EVKIT_STORE=pg, `make test-pg`) the second worker
# runs under another host name when the test may make one (unshare -u as
# root), standing for a second host.
load helpers

setup_file() { store_setup_file; }
teardown_file() { store_teardown_file; }
setup() { jobs_setup; }
teardown() {
	stop_all
	local p
	for p in $(cat "$T"/*.pid 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
}

ew() { evworker --db "$DB" "$@"; }

# host_b CMD... — runs CMD (exec'd) as on a second host: under the host
# name hostb on PostgreSQL when unshare -u works, else as it is.
host_b() {
	if on_pg && ((EUID == 0)) && unshare --uts true 2>/dev/null; then
		exec unshare --uts sh -c 'hostname hostb && exec "$@"' sh "$@"
	fi
	exec "$@"
}

# jobs_table, notes_table — the queue's tables as db_sql names them.
jobs_table() { if on_pg; then echo jobs.jobs; else echo jobs; fi; }
notes_table() { if on_pg; then echo jobs.notes; else echo notes; fi; }

# outbox_empty — true when the queue's outbox holds no row.
outbox_empty() { [ "$(db_sql "$DB" "SELECT count(*) FROM $(notes_table)")" = 0 ]; }

# A job that appends its id to $T/ran, then sleeps $1 seconds.
enqueue_marker() {
	ew enqueue "${@:2}" -- sh -c 'echo "$EVWORKER_JOB_ID" >>"$0"; [ "$1" = 0 ] || sleep "$1"' "$T/ran" "$1" >/dev/null
}

@test "two workers (two hosts on PostgreSQL) run 500 jobs: each exactly once" {
	# One job enqueued, then 499 copies of its row (500 enqueues would
	# take longer than the test).
	enqueue_marker 0
	db_sql "$DB" "INSERT INTO $(jobs_table) (queue, priority, state, steps, workflow_id,
	  max_attempts, backoff, scheduled_at, inserted_at)
	  WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 499)
	  SELECT queue, priority, state, steps, workflow_id, max_attempts, backoff, scheduled_at,
	  inserted_at FROM $(jobs_table), c WHERE id = 1"
	[ "$(ew list --state available | wc -l)" -eq 500 ]
	bg evworker --db "$DB" -q run --drain --concurrency 3
	local a=${BG_PIDS[-1]}
	(host_b evworker --db "$DB" -q run --drain --concurrency 3) &
	local b=$!
	BG_PIDS+=("$b")
	wait "$a"
	wait "$b"
	[ "$(wc -l <"$T/ran")" -eq 500 ]
	run bash -c "sort -n '$T/ran' | uniq -d"
	assert_output ""
	[ "$(sort -u "$T/ran" | wc -l)" -eq 500 ]
	[ "$(ew list --state completed | wc -l)" -eq 500 ]
	[ "$(ew list | jq -s 'map(.attempt) | max')" -eq 1 ]
}

@test "the same unique job enqueued by four processes at once is inserted once" {
	local k j pids
	for ((k = 1; k <= 10; k++)); do
		pids=()
		for j in 1 2 3 4; do
			ew enqueue --unique-for 600 -- echo "job $k" >"$T/out.$k.$j" &
			pids+=("$!")
		done
		# By pid: a bare wait would also wait for bats' own timer.
		for j in "${pids[@]}"; do wait "$j"; done
	done
	[ "$(ew list | wc -l)" -eq 10 ]
	for ((k = 1; k <= 10; k++)); do
		[ "$(cat "$T"/out.$k.* | jq .id | sort -u | wc -l)" -eq 1 ]
	done
}

@test "kill -9 of a worker mid-job: the other worker rescues the job and runs it once more" {
	ew enqueue -- sh -c 'echo run >>"$0.log"; [ -e "$0" ] && exit 0; echo $$ >"$0.pid"; touch "$0"; exec sleep 30.5151' "$T/once" >/dev/null
	bg evworker --db "$DB" run
	local a=${BG_PIDS[-1]}
	wait_file "$T/once"
	(host_b evworker --db "$DB" run) 2>"$T/b.err" &
	BG_PIDS+=("$!")
	kill -9 "$a"
	WAIT_SECS=20 wait_for bash -c "[ \"\$(evworker --db '$DB' show 1 | jq -r .state)\" = completed ]"
	[ "$(wc -l <"$T/once.log")" -eq 2 ]
	[ "$(ew show 1 | jq -r .attempt)" -eq 2 ]
	grep -q "job 1 rescued" "$T/b.err"
}

@test "cancel of a job running under another worker (another host on PostgreSQL) kills its step there, once" {
	ew enqueue --max-attempts 3 --backoff 0 -- sh -c 'echo run >>"$0.log"; echo $$ >"$0.pid"; touch "$0"; exec sleep 30.8181' "$T/job" >/dev/null
	(host_b evworker --db "$DB" run) 2>"$T/b.err" &
	local b=$!
	BG_PIDS+=("$b")
	wait_file "$T/job"
	local step
	step=$(cat "$T/job.pid")
	run -0 ew cancel 1
	[ "$(jq -r .state <<<"$output")" = cancelled ]
	WAIT_SECS=20 wait_for gone "$step"
	WAIT_SECS=20 wait_for grep -q "job 1 failed" "$T/b.err"
	# The worker goes on (runs a later job) and records nothing over the
	# cancel: with attempts left and no backoff, the job would run again.
	enqueue_marker 0
	WAIT_SECS=20 wait_for bash -c "[ \"\$(evworker --db '$DB' show 2 | jq -r .state)\" = completed ]"
	[ "$(ew show 1 | jq -c '[.state, .last_error, .attempt]')" = '["cancelled","cancelled",1]' ]
	[ "$(wc -l <"$T/job.log")" -eq 1 ]
	! gone "$b"
}

@test "a worker stopped with SIGSTOP past its job's timeout is not robbed while it lives" {
	ew enqueue --timeout 1 --max-attempts 1 -- sh -c 'echo run >>"$0.log"; echo $$ >"$0.pid"; touch "$0"; exec sleep 30.6161' "$T/slow" >/dev/null
	bg evworker --db "$DB" run
	local a=${BG_PIDS[-1]}
	wait_file "$T/slow"
	# Stopped once its job's first events are delivered: idle, holding no
	# transaction (on SQLite one would stop every other writer).
	wait_for outbox_empty
	kill -STOP "$a"
	# The other worker claims (and looks for jobs to rescue) again and
	# again while it runs these, well past the stopped job's timeout.
	local i
	for i in 1 2 3 4 5 6; do enqueue_marker 0.3; done
	(host_b evworker --db "$DB" run) 2>"$T/b.err" &
	BG_PIDS+=("$!")
	WAIT_SECS=30 wait_for bash -c "[ \"\$(evworker --db '$DB' list --state completed | wc -l)\" -eq 6 ]"
	[ "$(ew show 1 | jq -c '[.state, .attempt]')" = '["executing",1]' ]
	[ "$(wc -l <"$T/slow.log")" -eq 1 ]
	! grep -q "rescued" "$T/b.err"
	# Woken, the worker ends its own job (timed out), which no one took.
	kill -CONT "$a"
	WAIT_SECS=20 wait_for bash -c "[ \"\$(evworker --db '$DB' show 1 | jq -r .state)\" = discarded ]"
	[ "$(ew show 1 | jq -r .last_error)" = "timeout after 1 s" ]
	[ "$(wc -l <"$T/slow.log")" -eq 1 ]
}

@test "a lost database connection: a clear message, exit 69, the step stopped; another worker rescues the job" {
	on_pg || skip "PostgreSQL only: SQLite has no connection to lose"
	ew enqueue -- sh -c 'echo run >>"$0.log"; [ -e "$0" ] && exit 0; echo $$ >"$0.pid"; touch "$0"; exec sleep 300.7171' "$T/job" >/dev/null
	evworker --db "$DB" run 2>"$T/a.err" &
	local a=$!
	BG_PIDS+=("$a")
	wait_file "$T/job"
	pg_end_sessions "$DB"
	WAIT_SECS=20 wait_for gone "$a"
	local st=0
	wait "$a" || st=$?
	[ "$st" -eq 69 ]
	run cat "$T/a.err"
	assert_line "evworker: the queue: lost the connection to the database: server closed the connection unexpectedly"
	wait_for gone "$(cat "$T/job.pid")"
	[ "$(ew show 1 | jq -r .state)" = executing ]
	run -0 ew run --drain
	[ "$(ew show 1 | jq -c '[.state, .attempt]')" = '["completed",2]' ]
	[ "$(wc -l <"$T/job.log")" -eq 2 ]
}

@test "an enqueue that loses its connection exits 69 and inserts nothing" {
	on_pg || skip "PostgreSQL only: SQLite has no connection to lose"
	run -69 --separate-stderr evworker --db "postgresql:///nosuchdb?host=$PG_HOST&user=evkit" enqueue -- true
	[[ $stderr == "evworker: cannot connect to the database: "*nosuchdb* ]] || fail "$stderr"
	run -0 ew list
	assert_output ""
}
