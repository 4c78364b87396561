#!/bin/bash
# bench/casectl.sh — casectl ingest against the storage floor.
#
# 100,000 cases through `casectl ingest` (agencies and offenders matched,
# each case announced on two topics through the outbox, a running hub),
# beside the same rows imported by the plain sqlite3 shell in one
# transaction into an equivalent schema (no matching, no notifications).
# Five rounds, each pair run back to back on fresh files and a fresh hub;
# medians are reported, so one noisy moment does not decide the ratio.
# Then the same on PostgreSQL 15 (a private server on a unix socket,
# synchronous_commit=off: a commit survives a killed process, as SQLite's
# synchronous=NORMAL does), beside psql's \copy of the rows in one
# transaction: PG_ROUNDS rounds (default 3; 0 skips).
set -euo pipefail

N=${1:-100000}
ROUNDS=${ROUNDS:-5}
export CASECTL_ACTOR=bench
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh" casectl
PG_ROUNDS=${PG_ROUNDS:-3}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
pgdir=
# bench_exit stops the PostgreSQL server too (in pids); its folder goes after.
trap 'bench_exit; [ -z "$pgdir" ] || rm -rf "$pgdir"' EXIT

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

# Makes database $1 and ingests the cases into it, timed: the wall clock
# in t0 and t1, the CPU in $dir/$2.time, the hub's head after in notes.
ingest() {
	casectl --db "$1" init --admin bench >/dev/null
	t0=$(now)
	/usr/bin/time -o "$dir/$2.time" -f "%U %S" \
		casectl --db "$1" ingest <"$dir/cases.jsonl" 2>"$dir/$2.err"
	t1=$(now)
	notes=$(evbusd --status | jq .head_seq)
}

for r in $(seq "$ROUNDS"); do
	export EVBUS_URL="ipc://$dir/bus$r"
	evbusd --store "$dir/bus$r.db" --daemon --pidfile "$dir/hub$r.pid"
	hub=$(cat "$dir/hub$r.pid")
	ingest "$dir/cases$r.db" "ingest$r"
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

# PostgreSQL: a server of its own, as the unprivileged nobody when root
# (its socket in a short directory: the path must stay under 107 bytes).
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
	fi
	exec "$@"
}
if [ "$PG_ROUNDS" -gt 0 ]; then
	pgdir=$(mktemp -d /tmp/evkpgb.XXXXXX)
	[ "$(id -u)" != 0 ] || chown nobody:nogroup "$pgdir"
	(as_pg "$PG_BIN/initdb" -D "$pgdir/data" -U evkit --auth=trust -E UTF8 --locale=C.UTF-8) \
		>"$dir/initdb.log" 2>&1
	as_pg "$PG_BIN/postgres" -D "$pgdir/data" -k "$pgdir" -c listen_addresses= \
		-c synchronous_commit=off </dev/null >"$dir/pg.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 300); do
		psql -XAtq -d "host=$pgdir user=evkit dbname=postgres" -c 'SELECT 1' >/dev/null 2>&1 && break
		sleep 0.1
	done
	cd "$dir" # psql's \copy reads cases.csv from here
fi
for r in $(seq "$PG_ROUNDS"); do
	export EVBUS_URL="ipc://$dir/pgbus$r"
	evbusd --store "$dir/pgbus$r.db" --daemon --pidfile "$dir/pghub$r.pid"
	hub=$(cat "$dir/pghub$r.pid")
	psql -XAtq -d "host=$pgdir user=evkit dbname=postgres" -c "CREATE DATABASE c$r" -c "CREATE DATABASE f$r"
	db="postgresql:///c$r?host=$pgdir&user=evkit"
	ingest "$db" "pgingest$r"
	kill "$hub"
	hub=
	read -r user sys <"$dir/pgingest$r.time"
	echo "$r pgcasectl $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $user $sys 0 $notes" >>"$dir/runs"
	psql -XAtq -d "host=$pgdir user=evkit dbname=f$r" -c "CREATE TABLE cases (id BIGINT PRIMARY KEY,
		agency TEXT, case_reference TEXT, offender TEXT, postcode TEXT, offence_action_date TEXT,
		offence_fine DOUBLE PRECISION, offence_costs DOUBLE PRECISION, offence_result TEXT,
		UNIQUE (agency, case_reference))"
	t2=$(now)
	psql -XAtq -d "host=$pgdir user=evkit dbname=f$r" -c '\copy cases FROM cases.csv WITH (FORMAT csv)'
	t3=$(now)
	echo "$r pgfloor $(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')" >>"$dir/runs"
	psql -XAtq -d "host=$pgdir user=evkit dbname=postgres" -c "DROP DATABASE c$r" -c "DROP DATABASE f$r"
	rm -f "$dir/pgbus$r.db"*
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
if [ "$PG_ROUNDS" -gt 0 ]; then
	pt=$(median pgcasectl 3) pf=$(median pgfloor 3)
	echo
	echo "PostgreSQL 15 (unix socket, synchronous_commit=off), median of $PG_ROUNDS rounds"
	printf '%-40s %10.2f %12.0f   %s\n' "casectl ingest, PostgreSQL" "$pt" "$(awk -v n="$N" -v t="$pt" 'BEGIN { print n / t }')" \
		"$(awk '$2 == "pgcasectl" { printf "%.2f ", $3 }' "$dir/runs")"
	printf '%-40s %10.2f %12.0f   %s\n' "psql \\copy, one transaction" "$pf" "$(awk -v n="$N" -v t="$pf" 'BEGIN { print n / t }')" \
		"$(awk '$2 == "pgfloor" { printf "%.2f ", $3 }' "$dir/runs")"
	awk -v a="$pt" -v b="$pf" -v s="$ct" 'BEGIN { printf "casectl/psql time ratio %.2f; casectl on PostgreSQL/on SQLite %.2f\n", a / b, a / s }'
	echo "cpu seconds: casectl $(median pgcasectl 4) user + $(median pgcasectl 5) system; notifications on the bus: $(median pgcasectl 7)"
fi
