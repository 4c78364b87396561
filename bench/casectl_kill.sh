#!/bin/bash
# bench/casectl_kill.sh — issue 16.3's check by hand: `casectl ingest` of N
# cases (default 50,000) killed with -9 mid-run, then run again on the
# same input; the hub's log must hold exactly one case:created per case.
# RUNS rounds (default 5), each on a fresh hub and database; the kill
# comes when the hub holds K events (a different K each round).
#
# Usage: bench/casectl_kill.sh [N]   (EVKIT_BIN: the programs, default bin/)
set -euo pipefail

N=${1:-50000}
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EVKIT_BIN:-$ROOT/bin}
export PATH="$BIN:$PATH" LC_ALL=C CASECTL_ACTOR=ann

dir=$(mktemp -d "${TMPDIR:-/tmp}/evkit-kill.XXXXXX")
hub=
cleanup() {
	[[ -n $hub ]] && kill "$hub" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++)
	printf "{\"agency\":\"hse\",\"case_reference\":\"R%d\",\"offender\":{\"name\":\"Firm %d Ltd\",\"postcode\":\"LS%d 1AA\"},\"offence_action_date\":\"2024-03-%02d\",\"offence_fine\":%d,\"offence_result\":\"Guilty\"}\n", i, i % 7, i % 3, i % 28 + 1, i * 100 }' >"$dir/cases"

head_seq() { evbusd --status 2>/dev/null | jq .head_seq || echo 0; }
fails=0
for run in $(seq "$RUNS"); do
	rm -f "$dir"/bus* "$dir"/cases.db*
	export EVBUS_URL="ipc://$dir/bus"
	evbusd --store "$dir/bus.db" --retain $((N * 10)) --daemon --pidfile "$dir/hub.pid"
	hub=$(cat "$dir/hub.pid")
	casectl --db "$dir/cases.db" init --admin ann >/dev/null
	at=$((N * (run + 1) / (RUNS + 2) * 2)) # events (two per case) at the kill
	casectl --db "$dir/cases.db" ingest --batch 1000 <"$dir/cases" 2>/dev/null &
	pid=$!
	deadline=$((SECONDS + 300))
	while (($(head_seq) < at)) && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
	killed_at=$(head_seq)
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	casectl --db "$dir/cases.db" ingest --batch 1000 <"$dir/cases" 2>/dev/null
	read -r cases creates most < <(evsub --since 0 -n "$(head_seq)" -W 120 "case:**" | jq -c "select(.topic == \"case:created\")" |
		jq -r '.payload.data.case_reference' | sort | uniq -c |
		awk '{ n++; t += $1; if ($1 > m) m = $1 } END { print n + 0, t + 0, m + 0 }')
	dropped=$(evbusd --status | jq .duplicates_dropped)
	ok=yes
	[[ $cases == "$N" && $creates == "$N" && $most == 1 ]] || { ok=NO; fails=$((fails + 1)); }
	printf 'run %d: killed at head %s; cases %s, case:created %s (most for one case %s), repeats dropped by the hub %s: %s\n' \
		"$run" "$killed_at" "$cases" "$creates" "$most" "$dropped" "$ok"
	kill "$hub"
	while kill -0 "$hub" 2>/dev/null; do sleep 0.05; done
	hub=
done
((fails == 0))
