#!/bin/bash
# bench/casectl.sh — casectl ingest against the storage floor.
#
# 100,000 cases through `casectl ingest` (agencies and offenders matched,
# each case announced on two topics through the outbox, a running hub),
# beside the same rows imported by the plain sqlite3 shell in one
# transaction into an equivalent schema (no matching, no notifications).
# Five rounds, each pair run back to back on fresh files and a fresh hub;
# medians are reported, so one noisy moment does not decide the ratio.
set -euo pipefail

N=${1:-100000}
ROUNDS=${ROUNDS:-5}
export CASECTL_ACTOR=bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh" casectl

awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "{\"agency\":\"a%d\",\"case_reference\":\"REF/%d\",\"offender\":{\"name\":\"Firm %d Ltd\",\"postcode\":\"LS%d 1AA\"},\"offence_action_date\":\"2024-03-%02d\",\"offence_fine\":%d,\"offence_costs\":%d.5,\"offence_result\":\"Guilty\"}\n", i % 5, i, i % 5000, i % 9, i % 28 + 1, i * 10, i % 1000
}' >"$dir/cases.jsonl"
# The same rows as CSV for the sqlite3 shell.
awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "%d,a%d,REF/%d,Firm %d Ltd,LS%d 1AA,2024-03-%02d,%d,%d.5,Guilty\n", i, i % 5, i, i % 5000, i % 9, i % 28 + 1, i * 10, i % 1000
}' >"$dir/cases.csv"

now() { date +%s.%N; }

for r in $(seq "$ROUNDS"); do
	export EVBUS_URL="ipc://$dir/bus$r"
	evbusd --store "$dir/bus$r.db" --daemon --pidfile "$dir/hub$r.pid"
	hub=$(cat "$dir/hub$r.pid")
	casectl --db "$dir/cases$r.db" init --admin bench >/dev/null
	t0=$(now)
	/usr/bin/time -o "$dir/ingest$r.time" -f "%U %S" \
		casectl --db "$dir/cases$r.db" ingest <"$dir/cases.jsonl" 2>"$dir/ingest$r.err"
	t1=$(now)
	notes=$(evbusd --status | jq .head_seq)
	hub_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$hub/stat")
	kill "$hub"
	hub=
	read -r user sys <"$dir/ingest$r.time"
	echo "$r casectl $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $user $sys $hub_cpu $notes" >>"$dir/runs"

	sqlite3 "$dir/floor$r.db" >/dev/null <<-SQL
		PRAGMA journal_mode=WAL;
		CREATE TABLE cases (id INTEGER PRIMARY KEY, agency TEXT, case_reference TEXT,
		  offender TEXT, postcode TEXT, offence_action_date TEXT, offence_fine REAL,
		  offence_costs REAL, offence_result TEXT, UNIQUE (agency, case_reference));
	SQL
	t2=$(now)
	sqlite3 "$dir/floor$r.db" <<-SQL
		.mode csv
		BEGIN;
		.import $dir/cases.csv cases
		COMMIT;
	SQL
	t3=$(now)
	echo "$r floor $(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')" >>"$dir/runs"
	rm -f "$dir/cases$r.db"* "$dir/floor$r.db"* "$dir/bus$r.db"*
done

# The median of a column over the rows of one kind.
median() {
	awk -v k="$1" -v c="$2" '$2 == k { print $c }' "$dir/runs" | sort -g |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ct=$(median casectl 3) ft=$(median floor 3)

echo "casectl ingest: $N cases, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), median of $ROUNDS rounds"
printf '%-40s %10s %12s   %s\n' run seconds cases/s "each round"
printf '%-40s %10.2f %12.0f   %s\n' "casectl ingest (+ notifications)" "$ct" "$(awk -v n="$N" -v t="$ct" 'BEGIN { print n / t }')" \
	"$(awk '$2 == "casectl" { printf "%.2f ", $3 }' "$dir/runs")"
printf '%-40s %10.2f %12.0f   %s\n' "sqlite3 shell .import, one transaction" "$ft" "$(awk -v n="$N" -v t="$ft" 'BEGIN { print n / t }')" \
	"$(awk '$2 == "floor" { printf "%.2f ", $3 }' "$dir/runs")"
awk -v a="$ct" -v b="$ft" 'BEGIN { printf "casectl/sqlite3 time ratio %.2f (goal <= 3)\n", a / b }'
echo "cpu seconds: casectl $(median casectl 4) user + $(median casectl 5) system (with its checkpoint thread), hub $(median casectl 6)"
echo "notifications on the bus: $(median casectl 7) ($(sed 's/^casectl: //' "$dir/ingest1.err"))"
