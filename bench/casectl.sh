#!/bin/bash
# bench/casectl.sh — casectl ingest against the storage floor.
#
# 100,000 cases through `casectl ingest` (agencies and offenders matched,
# each case announced on two topics through the outbox, a running hub),
# beside the same rows imported by the plain sqlite3 shell in one
# transaction into an equivalent schema (no matching, no notifications).
set -euo pipefail

N=${1:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${EVKIT_BIN:-$ROOT/bin}:$PATH" LC_ALL=C CASECTL_ACTOR=bench
dir=$(mktemp -d "${TMPDIR:-/tmp}/evkit-casectl.XXXXXX")
hub=
cleanup() {
	[ -n "$hub" ] && kill "$hub" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "{\"agency\":\"a%d\",\"case_reference\":\"REF/%d\",\"offender\":{\"name\":\"Firm %d Ltd\",\"postcode\":\"LS%d 1AA\"},\"offence_action_date\":\"2024-03-%02d\",\"offence_fine\":%d,\"offence_costs\":%d.5,\"offence_result\":\"Guilty\"}\n", i % 5, i, i % 5000, i % 9, i % 28 + 1, i * 10, i % 1000
}' >"$dir/cases.jsonl"
# The same rows as CSV for the sqlite3 shell.
awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "%d,a%d,REF/%d,Firm %d Ltd,LS%d 1AA,2024-03-%02d,%d,%d.5,Guilty\n", i, i % 5, i, i % 5000, i % 9, i % 28 + 1, i * 10, i % 1000
}' >"$dir/cases.csv"

export EVBUS_URL="ipc://$dir/bus"
evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
hub=$(cat "$dir/hub.pid")
casectl --db "$dir/cases.db" init --admin bench >/dev/null

t0=$(date +%s.%N)
/usr/bin/time -o "$dir/ingest.time" -f "%U %S" casectl --db "$dir/cases.db" ingest <"$dir/cases.jsonl" 2>"$dir/ingest.err"
t1=$(date +%s.%N)
sqlite3 "$dir/floor.db" <<SQL
PRAGMA journal_mode=WAL;
CREATE TABLE cases (id INTEGER PRIMARY KEY, agency TEXT, case_reference TEXT,
  offender TEXT, postcode TEXT, offence_action_date TEXT, offence_fine REAL,
  offence_costs REAL, offence_result TEXT, UNIQUE (agency, case_reference));
SQL
t2=$(date +%s.%N)
sqlite3 "$dir/floor.db" <<SQL
.mode csv
BEGIN;
.import $dir/cases.csv cases
COMMIT;
SQL
t3=$(date +%s.%N)
notes=$(evbusd --status | jq .head_seq)
hub_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$hub/stat")

echo "casectl ingest: $N cases, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-40s %10s %12s\n' run seconds cases/s
awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-40s %10.2f %12.0f\n", "casectl ingest (+ notifications)", b - a, n / (b - a) }'
awk -v n="$N" -v a="$t2" -v b="$t3" 'BEGIN { printf "%-40s %10.2f %12.0f\n", "sqlite3 shell .import, one transaction", b - a, n / (b - a) }'
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { printf "casectl/sqlite3 time ratio %.2f (goal <= 3)\n", (b - a) / (d - c) }'
read -r user sys <"$dir/ingest.time"
echo "cpu seconds: casectl $user user + $sys system (with its checkpoint thread), hub $hub_cpu"
echo "notifications on the bus: $notes ($(sed 's/^casectl: //' "$dir/ingest.err"))"
