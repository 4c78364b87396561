#!/bin/bash
# bench/evworker.sh [N] — the worker's overhead per job against the
# fork/exec floor: N (2,000) `true` jobs through `evworker run --drain
# --concurrency 2` (claim, run, record, broadcast 4 events each through a
# running hub), beside `xargs -P2 -n1 true` on the same N commands. The
# queue is filled once and copied (sqlite3) for each of $RUNS (3) runs; each run
# times xargs, the worker, then xargs again, and compares the worker with
# the mean of the two, so that a machine whose load drifts (CI, a shared
# VM) shows in both sides of a ratio. Each run must complete every job
# and broadcast its 4N events (exit 1 otherwise); the hub's CPU time for
# them is shown too (/proc).
set -euo pipefail

N=${1:-2000}
RUNS=${RUNS:-3}
. "$(dirname "$0")/lib.sh" worker

export EVBUS_URL="ipc://$dir/bus"
evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
hub=$(cat "$dir/hub.pid")
for ((i = 0; i < N; i++)); do echo true; done >"$dir/cmds"
mkdir "$dir/queue"
for ((i = 0; i < N; i++)); do evworker --db "$dir/queue/jobs.db" enqueue -- true; done >/dev/null

now() { date +%s.%N; }
# CPU seconds (user + system) a process has used, from /proc/PID/stat.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

echo "evworker: $N 'true' jobs, concurrency 2, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-4s %9s %9s %9s %7s %11s %9s %9s\n' run xargs evworker xargs ratio completed events 'hub ms'
ratios=()
for ((r = 1; r <= RUNS; r++)); do
	rm -rf "$dir/run"
	cp -r "$dir/queue" "$dir/run"
	# A copy is a producer of its own: the hub would drop its events as
	# the first run's, sent again.
	sqlite3 "$dir/run/jobs.db" "UPDATE outbox_producer SET id = lower(hex(randomblob(16)))"
	h0=$(cpu_of "$hub")
	e0=$(evbusd --status | jq .head_seq)
	t0=$(now)
	xargs -P2 -n1 true <"$dir/cmds"
	t1=$(now)
	evworker --db "$dir/run/jobs.db" run --drain --concurrency 2 2>/dev/null
	t2=$(now)
	h1=$(cpu_of "$hub")
	events=$(($(evbusd --status | jq .head_seq) - e0))
	xargs -P2 -n1 true <"$dir/cmds"
	t3=$(now)
	done=$(evworker --db "$dir/run/jobs.db" list --state completed | wc -l)
	ratio=$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" \
		'BEGIN { printf "%.2f", (c - b) / (((b - a) + (d - c)) / 2) }')
	ratios+=("$ratio")
	# The floor in seconds (the last run's), for rows that compare with it.
	xargs_s=$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { print ((b - a) + (d - c)) / 2 }')
	awk -v r="$r" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v q="$ratio" -v k="$done/$N" \
		-v e="$events" -v h0="$h0" -v h1="$h1" 'BEGIN {
		printf "%-4d %9.2f %9.2f %9.2f %7s %11s %9d %9.0f\n", r, b - a, c - b, d - c, q, k, e,
			(h1 - h0) * 1000 }'
	if [ "$done" -ne "$N" ] || [ "$events" -ne $((4 * N)) ]; then
		echo "evworker: run $r completed $done of $N jobs, broadcast $events of $((4 * N)) events" >&2
		exit 1
	fi
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "evworker/xargs time ratio, median of $RUNS: $median (goal <= 3)"
