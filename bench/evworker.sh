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
cleanup() {
	[ -n "$hub" ] && kill "$hub" 2>/dev/null || true
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
