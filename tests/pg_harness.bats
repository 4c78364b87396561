#!/usr/bin/env bats
# The PostgreSQL test harness itself (tests/helpers.bash): a private
# server per file, a fresh database per test, stopped by its pid.
load helpers

setup_file() {
	export EVKIT_STORE=pg
	store_setup_file
}
teardown_file() { store_teardown_file; }
setup() { EVKIT_STORE=pg; }
teardown() { stop_all; }

@test "the suite's server listens on a short unix socket only, as an unprivileged user" {
	[ -S "$PG_HOST/.s.PGSQL.5432" ]
	((${#PG_HOST} + 16 < 107))
	[ "$(db_sql "postgresql:///postgres?host=$PG_HOST&user=evkit" 'SHOW listen_addresses')" = "" ]
	[ "$(stat -c %U "$PG_DIR/data")" != root ]
	[ "$(ps -o user= -p "$PG_PID")" != root ]
}

@test "new_db gives each test a fresh database that db_sql reads and writes" {
	local db
	db=$(new_db cases)
	[[ $db == "postgresql:///t${BATS_TEST_NUMBER}_cases?host=$PG_HOST&user=evkit" ]]
	db_sql "$db" 'CREATE TABLE t (a int, b text)'
	db_sql "$db" "INSERT INTO t VALUES (1, 'x'), (2, 'y')"
	[ "$(db_sql "$db" 'SELECT a, b FROM t ORDER BY a' | paste -sd' ')" = "1|x 2|y" ]
}

@test "the database of the test before is gone; sessions can be cut" {
	[ "$(db_sql "postgresql:///postgres?host=$PG_HOST&user=evkit" "SELECT count(*) FROM pg_database WHERE datname LIKE 't%\_cases'")" -eq 0 ]
	local db
	db=$(new_db cut)
	mkfifo "$BATS_TEST_TMPDIR/in"
	bg psql -XAtq -d "$db" -f "$BATS_TEST_TMPDIR/in" -o "$BATS_TEST_TMPDIR/out"
	local p=${BG_PIDS[-1]}
	exec 7>"$BATS_TEST_TMPDIR/in"
	echo 'SELECT 1;' >&7
	wait_for test -s "$BATS_TEST_TMPDIR/out"
	pg_end_sessions "$db"
	echo 'SELECT 2;' >&7
	exec 7>&-
	run wait "$p"
	[ "$status" -ne 0 ]
	[ "$(cat "$BATS_TEST_TMPDIR/out")" = 1 ]
}
