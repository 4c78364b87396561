#!/bin/bash
# bench/evworker.sh — the worker's overhead per job against the fork/exec
# floor: 2,000 `true` jobs through `evworker run --concurrency 2` (claim,
# run, record, broadcast 4 events each through a running hub), beside
# `xargs -P2 -n1 true` on the same 2,000 commands, in one run.
set -euo pipefail

N=${1:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${EVKIT_BIN:-$ROOT/bin}:$PATH" LC_ALL=C
dir=$(mktemp -d "${TMPDIR:-/tmp}/evkit-worker.XXXXXX")
hub=
pgpid= pgdir=
cleanup() {
	[ -n "$hub" ] && kill "$hub" 2>/dev/null || true
	[ -n "$pgpid" ] && kill -INT "$pgpid" 2>/dev/null && wait "$pgpid" 2>/dev/null || true # its pid: as_pg execs
	[ -n "$pgdir" ] && rm -rf "$pgdir"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export EVBUS_URL="ipc://$dir/bus"
evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
hub=$(cat "$dir/hub.pid")
for ((i = 0; i < N; i++)); do echo true; done >"$dir/cmds"
for ((i = 0; i < N; i++)); do evworker --db "$dir/jobs.db" enqueue -- true; done >/dev/null

t0=$(date +%s.%N)
evworker --db "$dir/jobs.db" run --drain --concurrency 2 2>/dev/null
t1=$(date +%s.%N)
xargs -P2 -n1 true <"$dir/cmds"
t2=$(date +%s.%N)
done=$(evworker --db "$dir/jobs.db" list --state completed | wc -l)
events=$(evbusd --status | jq .head_seq)

echo "evworker: $N 'true' jobs, concurrency 2, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-36s %10s %12s\n' run seconds jobs/s
awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "evworker run --concurrency 2", b - a, n / (b - a) }'
awk -v n="$N" -v a="$t1" -v b="$t2" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "xargs -P2 -n1 true (the floor)", b - a, n / (b - a) }'
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "evworker/xargs time ratio %.2f (goal <= 3)\n", (b - a) / (c - b) }'
echo "completed $done/$N, $events events broadcast"

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
pgpid=$!
psql_() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
for ((i = 0; i < 300; i++)); do
	psql_ -d "host=$pgdir user=evkit dbname=postgres" -c 'SELECT 1' >/dev/null 2>&1 && break
	sleep 0.1
done
psql_ -d "host=$pgdir user=evkit dbname=postgres" -c 'CREATE DATABASE q1' -c 'CREATE DATABASE q2'
pq1="postgresql:///q1?host=$pgdir&user=evkit" pq2="postgresql:///q2?host=$pgdir&user=evkit"
# One job enqueued, copied N-1 times (enqueue is not what is measured).
copies() {
	psql_ -d "$1" -c "INSERT INTO jobs.jobs (queue, priority, state, steps, workflow_id,
	  max_attempts, backoff, scheduled_at, inserted_at) SELECT queue, priority, state, steps,
	  workflow_id, max_attempts, backoff, scheduled_at, inserted_at
	  FROM jobs.jobs, generate_series(1, $2) WHERE id = 1"
}
evworker --db "$pq1" enqueue -- true >/dev/null
copies "$pq1" $((N - 1))
t3=$(date +%s.%N)
evworker --db "$pq1" run --drain --concurrency 2 2>/dev/null
t4=$(date +%s.%N)
pgdone=$(evworker --db "$pq1" list --state completed | wc -l)

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
echo "evworker on PostgreSQL 15 (synchronous_commit=off): the same $N 'true' jobs; $M jobs of 'sleep 0.01'"
printf '%-36s %10s %12s\n' run seconds jobs/s
awk -v n="$N" -v a="$t3" -v b="$t4" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "evworker run --concurrency 2 (pg)", b - a, n / (b - a) }'
awk -v a="$t3" -v b="$t4" -v c="$t2" -v d="$t1" 'BEGIN { printf "evworker(pg)/xargs time ratio %.2f (goal <= 4)\n", (b - a) / (c - d) }'
awk -v n="$M" -v a="$t5" -v b="$t6" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "sleep 0.01: one worker (pg)", b - a, n / (b - a) }'
awk -v n="$M" -v a="$t7" -v b="$t8" 'BEGIN { printf "%-36s %10.2f %12.0f\n", "sleep 0.01: two workers, one queue", b - a, n / (b - a) }'
awk -v a="$t5" -v b="$t6" -v c="$t7" -v d="$t8" 'BEGIN { printf "two workers/one worker throughput %.2f (goal >= 1.6)\n", (b - a) / (d - c) }'
echo "completed $pgdone/$N; sleep jobs run more than once: $twice"
