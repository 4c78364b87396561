#!/bin/bash
# bench/stalled.sh — issue 16's acceptance for "delivered once, in order":
# a subscriber stopped by SIGSTOP through an N-event burst (default
# 1,000,000), continued once the burst is in, must print exactly N events,
# in order, none twice. RUNS rounds (default 3), each on a fresh hub.
#
# Usage: bench/stalled.sh [N]   (EVKIT_BIN: the programs, default bin/)
set -euo pipefail

N=${1:-1000000}
RUNS=${RUNS:-3}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh" stalled

seq "$N" | awk '{printf "{\"topic\":\"burst:%d\",\"event\":\"e\",\"payload\":{\"i\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n", $1 % 97, $1}' >"$dir/burst"

fails=0
for run in $(seq "$RUNS"); do
	rm -f "$dir"/bus* "$dir/ready" "$dir/out"
	export EVBUS_URL="ipc://$dir/bus"
	evbusd --store "$dir/bus.db" --retain "$((N + 1000))" --daemon --pidfile "$dir/hub.pid"
	hub=$(cat "$dir/hub.pid")
	pids=("$hub")
	# The count is N + 1: a marker published after the burst ends it, so
	# a duplicate shows up as a line too many before the marker.
	evsub --ready-file "$dir/ready" -n "$((N + 1))" -W 600 -o payload '**' >"$dir/out" &
	sub=$!
	pids+=("$sub")
	until [[ -e $dir/ready ]]; do sleep 0.05; done
	kill -STOP "$sub"
	evpub -f "$dir/burst"
	kill -CONT "$sub"
	deadline=$((SECONDS + 600))
	until (($(wc -l <"$dir/out") >= N)) || ((SECONDS > deadline)); do sleep 0.2; done
	evpub end end '{"i":0}'
	wait "$sub" || true
	read -r lines uniq inorder last < <(jq -s -r --argjson n "$N" \
		'[length, (map(.i) | unique | length), (.[:$n] | map(.i) == [range(1; $n + 1)]), .[-1].i] | @tsv' "$dir/out")
	refilled=$(evbusd --status | jq .refilled_events)
	events=$((lines - 1))
	dups=$((lines - uniq))
	ok=yes
	[[ $events == "$N" && $dups == 0 && $inorder == true && $last == 0 ]] || { ok=NO; fails=$((fails + 1)); }
	printf 'run %d: events %d (expected %d), duplicates %d, in order %s, marker last %s, refilled %s: %s\n' \
		"$run" "$events" "$N" "$dups" "$inorder" "$([[ $last == 0 ]] && echo yes || echo "no ($last)")" "$refilled" "$ok"
	kill "$hub"
	while kill -0 "$hub" 2>/dev/null; do sleep 0.05; done
	pids=()
done
((fails == 0))
