#!/bin/bash
# bench/evworker.sh [N [M]] — the worker's overhead per job against the
# fork/exec floor: N (2,000) `true` jobs through `evworker run --drain
# --concurrency 2` (claim, run, record, broadcast 4 events each through a
# running hub), beside `xargs -P2 -n1 true` on the same N commands. The
# queue is filled once and copied (sqlite3) for each of $RUNS (3) runs; each run
# times xargs, the worker, then xargs again, and compares the worker with
# the mean of the two, so that a machine whose load drifts (CI, a shared
# VM) shows in both sides of a ratio. Each run must complete every job
# and broadcast its 4N events (exit 1 otherwise); the hub's CPU time for
# them is shown too (/proc). Then the same on PostgreSQL ($RUNS runs, each
# between two xargs runs too), and M (400) jobs of 'sleep 0.01' by one
# worker and by two (below).
set -euo pipefail

N=${1:-2000}
RUNS=${RUNS:-3}
. "$(dirname "$0")/lib.sh" worker
# The PostgreSQL rows' server: stopped with the others (pids), its
# folder (owned by nobody, outside $dir) removed.
pgdir=
trap 'bench_exit; [ -z "$pgdir" ] || rm -rf "$pgdir"' EXIT

export EVBUS_URL="ipc://$dir/bus"
evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
hub=$(cat "$dir/hub.pid")
for ((i = 0; i < N; i++)); do echo true; done >"$dir/cmds"
mkdir "$dir/queue"
for ((i = 0; i < N; i++)); do evworker --db "$dir/queue/jobs.db" enqueue -- true; done >/dev/null

now() { date +%s.%N; }
# CPU seconds (user + system) a process has used, from /proc/PID/stat.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# run_between R DB — run R: xargs, the worker on queue DB, xargs again;
# prints its row and adds its ratio (the worker's time over the mean of
# the two floors around it) to ratios. Exit 1 unless every job completed
# and broadcast its 4 events.
run_between() {
	local r=$1 db=$2 t0 t1 t2 t3 h0 h1 e0 events completed ratio
	h0=$(cpu_of "$hub")
	e0=$(evbusd --status | jq .head_seq)
	t0=$(now)
	xargs -P2 -n1 true <"$dir/cmds"
	t1=$(now)
	evworker --db "$db" run --drain --concurrency 2 2>/dev/null
	t2=$(now)
	h1=$(cpu_of "$hub")
	events=$(($(evbusd --status | jq .head_seq) - e0))
	xargs -P2 -n1 true <"$dir/cmds"
	t3=$(now)
	completed=$(evworker --db "$db" list --state completed | wc -l)
	ratio=$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" \
		'BEGIN { printf "%.2f", (c - b) / (((b - a) + (d - c)) / 2) }')
	ratios+=("$ratio")
	awk -v r="$r" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v q="$ratio" -v k="$completed/$N" \
		-v e="$events" -v h0="$h0" -v h1="$h1" 'BEGIN {
		printf "%-4d %9.2f %9.2f %9.2f %7s %11s %9d %9.0f\n", r, b - a, c - b, d - c, q, k, e,
			(h1 - h0) * 1000 }'
	if [ "$completed" -ne "$N" ] || [ "$events" -ne $((4 * N)) ]; then
		echo "evworker: run $r completed $completed of $N jobs, broadcast $events of $((4 * N)) events" >&2
		exit 1
	fi
}
header() {
	printf '%-4s %9s %9s %9s %7s %11s %9s %9s\n' run xargs evworker xargs ratio completed events 'hub ms'
	ratios=()
}
median_ratio() { printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "evworker: $N 'true' jobs, concurrency 2, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
header
for ((r = 1; r <= RUNS; r++)); do
	rm -rf "$dir/run"
	cp -r "$dir/queue" "$dir/run"
	# A copy is a producer of its own: the hub would drop its events as
	# the first run's, sent again.
	sqlite3 "$dir/run/jobs.db" "UPDATE outbox_producer SET id = lower(hex(randomblob(16)))"
	run_between "$r" "$dir/run/jobs.db"
done
echo "evworker/xargs time ratio, median of $RUNS: $(median_ratio) (goal <= 3)"

# ---- PostgreSQL (issue 21): the same jobs on a queue in PostgreSQL 15 ----
# A private server (as nobody when root), unix socket only, with
# synchronous_commit=off: like evkit's SQLite (synchronous=NORMAL), a
# commit survives the process but not a power cut. Then scaling out: jobs
# that sleep 10 ms, run by one worker and by two on one queue.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL: $PG_BIN/initdb missing, rows skipped"; exit 0; }
M=${2:-400}
# as_pg CMD... — execs CMD as the server's owner (nobody when root).
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid="$(id -u nobody)" --regid="$(getent group nogroup | cut -d: -f3)" \
			--clear-groups -- "$@"
	fi
	exec "$@"
}
pgdir=$(mktemp -d /tmp/evkpgb.XXXXXX)
[ "$(id -u)" != 0 ] || chown nobody:nogroup "$pgdir"
(as_pg "$PG_BIN/initdb" -D "$pgdir/data" -U evkit --auth=trust -E UTF8 --locale=C.UTF-8) >/dev/null
as_pg "$PG_BIN/postgres" -D "$pgdir/data" -k "$pgdir" -c listen_addresses= \
	-c synchronous_commit=off </dev/null >"$pgdir/log" 2>&1 &
pids+=($!)
psql_() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
for ((i = 0; i < 300; i++)); do
	psql_ -d "host=$pgdir user=evkit dbname=postgres" -c 'SELECT 1' >/dev/null 2>&1 && break
	sleep 0.1
done
psql_ -d "host=$pgdir user=evkit dbname=postgres" -c 'CREATE DATABASE q2'
pq2="postgresql:///q2?host=$pgdir&user=evkit"
# One job enqueued, copied N-1 times (enqueue is not what is measured).
copies() {
	psql_ -d "$1" -c "INSERT INTO jobs.jobs (queue, priority, state, steps, workflow_id,
	  max_attempts, backoff, scheduled_at, inserted_at) SELECT queue, priority, state, steps,
	  workflow_id, max_attempts, backoff, scheduled_at, inserted_at
	  FROM jobs.jobs, generate_series(1, $2) WHERE id = 1"
}
# Each of $RUNS runs on a queue of its own (database q1_R), between two
# xargs runs like SQLite's, so that the ratio compares like with like.
echo
echo "evworker on PostgreSQL 15 (synchronous_commit=off): the same $N 'true' jobs, load $(cut -d' ' -f1 /proc/loadavg)"
header
for ((r = 1; r <= RUNS; r++)); do
	psql_ -d "host=$pgdir user=evkit dbname=postgres" -c "CREATE DATABASE q1_$r"
	pq1="postgresql:///q1_$r?host=$pgdir&user=evkit"
	evworker --db "$pq1" enqueue -- true >/dev/null
	copies "$pq1" $((N - 1))
	run_between "$r" "$pq1"
done
echo "evworker(pg)/xargs time ratio, median of $RUNS: $(median_ratio) (goal <= 4)"

evworker --db "$pq2" enqueue -- sleep 0.01 >/dev/null
copies "$pq2" $((M - 1))
t5=$(date +%s.%N)
evworker --db "$pq2" run --drain 2>/dev/null
t6=$(date +%s.%N)
psql_ -d "$pq2" -c "UPDATE jobs.jobs SET state = 'available', attempt = 0"
t7=$(date +%s.%N)
evworker --db "$pq2" run --drain 2>/dev/null &
w2=$!
evworker --db "$pq2" run --drain 2>/dev/null
wait "$w2"
t8=$(date +%s.%N)
twice=$(evworker --db "$pq2" list | jq -s 'map(select(.attempt != 1)) | length')

echo
echo "evworker on PostgreSQL 15: $M jobs of 'sleep 0.01'"
printf '%-36s %10s %12s\n' run seconds jobs/s
awk -v n="$M" -v a="$t5" -v b="$t6" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "sleep 0.01: one worker (pg)", b - a, n / (b - a) }'
awk -v n="$M" -v a="$t7" -v b="$t8" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "sleep 0.01: two workers, one queue", b - a, n / (b - a) }'
awk -v a="$t5" -v b="$t6" -v c="$t7" -v d="$t8" 'BEGIN { printf "two workers/one worker throughput %.2f (goal >= 1.6)\n", (b - a) / (d - c) }'
echo "sleep jobs run more than once: $twice"
