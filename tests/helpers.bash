# Shared helpers for evkit's bats suites: real programs, a real hub in the
# test's own directory, readiness by file or bounded polling, never a bare
# sleep as synchronisation.
bats_require_minimum_version 1.5.0
load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

EVKIT_BIN=${EVKIT_BIN:-$BATS_TEST_DIRNAME/../bin}
EVKIT_TOOLS=${EVKIT_TOOLS:-$BATS_TEST_DIRNAME/../build/obj/tests/tools}
PATH="$EVKIT_BIN:$PATH"
export LC_ALL=C.UTF-8

# wait_for CMD... — retries CMD until it succeeds, for at most $WAIT_SECS
# (default 10) seconds.
wait_for() {
	local deadline=$((SECONDS + ${WAIT_SECS:-10}))
	until "$@"; do
		((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; return 1; }
		sleep 0.02
	done
}

# test_cert NAME CA [DIR] — makes DIR/NAME.key and DIR/NAME.crt (DIR:
# the test's directory), signed by DIR/CA.{crt,key}, or self-signed when
# CA is "self"; valid two days, for 127.0.0.1 and localhost.
test_cert() {
	local d=${3:-$BATS_TEST_TMPDIR}
	if [[ $2 == self ]]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-keyout "$d/$1.key" -out "$d/$1.crt" -days 2 -subj "/CN=$1" 2>/dev/null
		return
	fi
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$d/$1.key" -out "$d/$1.csr" -subj "/CN=$1" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/$1.ext"
	openssl x509 -req -in "$d/$1.csr" -CA "$d/$2.crt" -CAkey "$d/$2.key" \
		-CAcreateserial -out "$d/$1.crt" -days 2 -extfile "$d/$1.ext" 2>/dev/null
}

# wait_file PATH — waits until PATH exists.
wait_file() { wait_for test -e "$1"; }

# gone PID — true once PID has exited: no such process, or a zombie its
# parent has not reaped yet (a daemon's parent is init, which may be slow
# to reap; a zombie holds no file, socket or lock any more).
gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat:0:1} == Z ]]
}

# The bus the suites run on: EVKIT_TEST_BACKEND=evbusd (the default) or
# nats, a real `nats-server -js` on a free loopback port (`make test-nats`).
EVKIT_TEST_BACKEND=${EVKIT_TEST_BACKEND:-evbusd}

# on_nats — true when the suites run on NATS.
on_nats() { [[ $EVKIT_TEST_BACKEND == nats ]]; }

# evbusd_only REASON — skips the test on NATS, saying why it cannot hold
# there; never a silent skip.
evbusd_only() { ! on_nats || skip "evbusd only: $*"; }

# start_hub [ARGS...] — starts evbusd in the background on a private ipc
# path in the test's directory; sets EVBUS_URL, HUB_PID, HUB_STORE.  With
# --memory among ARGS no store is given.  On NATS it starts nats-server
# instead (see start_nats).
start_hub() {
	if on_nats; then
		start_nats "$@"
		return
	fi
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus"
	HUB_STORE=${HUB_STORE:-$BATS_TEST_TMPDIR/bus.db}
	local store=(--store "$HUB_STORE")
	[[ " $* " == *" --memory "* ]] && store=()
	evbusd "${store[@]}" --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid" "$@"
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
}

# start_nats [ARGS...] — starts `nats-server -js` on 127.0.0.1, on the
# port it had before in this test (a restart) or a free one the server
# picks, with its store in the test's directory, and
# waits until it serves; sets EVBUS_URL, HUB_PID, NATS_PORT.  The store is
# the directory nats.$(basename $HUB_STORE) beside $HUB_STORE.  evbusd's
# --memory is ignored (JetStream keeps a store either way); other evbusd
# options have no equivalent there (the client makes the stream), so the
# test is skipped, naming them.
start_nats() {
	local a
	for a in "$@"; do
		[[ $a == --memory ]] ||
			skip "evbusd only: 'start_hub $*' has no NATS equivalent (the stream's limits are set by evkit's client)"
	done
	HUB_STORE=${HUB_STORE:-$BATS_TEST_TMPDIR/bus.db}
	local dir=$BATS_TEST_TMPDIR/nats.run
	mkdir -p "$dir"
	rm -f "$dir"/*.ports
	nats-server -js -a 127.0.0.1 -p "${NATS_PORT:--1}" -sd "$(dirname "$HUB_STORE")/nats.$(basename "$HUB_STORE")" \
		--ports_file_dir "$dir" -l "$dir/log" </dev/null >/dev/null 2>&1 3>&- &
	HUB_PID=$!
	local ports="$dir/nats-server_$HUB_PID.ports"
	WAIT_SECS=20 wait_for test -s "$ports"
	NATS_PORT=$(jq -r '.nats[0] // .client[0]' "$ports")
	NATS_PORT=${NATS_PORT##*:}
	export EVBUS_URL="nats://127.0.0.1:$NATS_PORT"
	WAIT_SECS=20 wait_for grep -q 'Server is ready' "$dir/log"
}

# nats_suite — the setup of a suite that starts its own nats-server
# processes: skipped, saying why, unless the suites run on NATS; sets T.
nats_suite() {
	on_nats || skip "the NATS tests run with make test-nats (EVKIT_TEST_BACKEND=nats)"
	command -v nats-server >/dev/null ||
		skip "nats-server is not installed (make deps installs it)"
	T=$BATS_TEST_TMPDIR
	unset EVBUS_URL
}

# free_port — a loopback port nothing listens on (probed with a connect),
# none of those in TAKEN (to which the caller of $(free_port) adds it).
free_port() {
	local p fd
	while :; do
		p=$((20000 + RANDOM % 40000))
		[[ " ${TAKEN[*]:-} " == *" $p "* ]] && continue
		if ! { exec {fd}<>"/dev/tcp/127.0.0.1/$p"; } 2>/dev/null; then
			echo "$p"
			return
		fi
		exec {fd}>&-
	done
}

# stop_hub [SIGNAL] — stops the hub started by start_hub, by its pid, and
# waits until it is gone.
stop_hub() {
	[[ -n ${HUB_PID:-} ]] || return 0
	kill "-${1:-TERM}" "$HUB_PID" 2>/dev/null || true
	wait_for gone "$HUB_PID"
	HUB_PID=
}

# bg CMD... — runs CMD in the background, remembering its pid for cleanup.
bg() {
	"$@" &
	BG_PIDS+=("$!")
}

# bg_to FILE CMD... — like bg, with CMD's stdout going to FILE.
bg_to() {
	local out=$1; shift
	"$@" >"$out" &
	BG_PIDS+=("$!")
}

# sub_bg OUT ARGS... — starts evsub ARGS in the background, its output in
# OUT and its errors in OUT.err, and returns once it is subscribed (its
# ready file exists); SUB_PID is its pid.
sub_bg() {
	local out=$1; shift
	rm -f "$BATS_TEST_TMPDIR/ready"
	evsub --ready-file "$BATS_TEST_TMPDIR/ready" "$@" >"$out" 2>"$out.err" &
	SUB_PID=$!
	BG_PIDS+=("$SUB_PID")
	wait_file "$BATS_TEST_TMPDIR/ready"
}

# jobs_setup — an evworker suite's setup: a hub, a fresh queue DB (jobs)
# in the suite's store, T the test's directory.
jobs_setup() {
	start_hub
	DB=$(new_db jobs)
	T=$BATS_TEST_TMPDIR
}

# stop_all — stops every process started with bg and the hub; one that
# outlives SIGTERM by 5 s is killed, so a broken program fails its test
# instead of hanging the suite.
stop_all() {
	local p
	for p in "${BG_PIDS[@]}"; do
		kill -CONT "$p" 2>/dev/null || true
		kill "$p" 2>/dev/null || true
	done
	for p in "${BG_PIDS[@]}"; do
		WAIT_SECS=5 wait_for gone "$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	BG_PIDS=()
	stop_hub
	drop_test_dbs
}
BG_PIDS=()

# json_true FILTER — true when stdin holds JSON whose last value passes
# FILTER (jq -e alone also succeeds on empty input).
json_true() { jq -e -s "length > 0 and (last | $1)" >/dev/null 2>&1; }
export -f json_true

# hub_status_field NAME — one figure from evbusd --status.
hub_status_field() { evbusd --status | jq -r ".$1"; }

# The store the evworker and casectl suites keep their data in:
# EVKIT_STORE=sqlite (the default: a file in the test's directory) or pg,
# a real PostgreSQL 15 the suite starts itself (`make test-pg`): one server
# per bats file (store_setup_file / store_teardown_file), a fresh database
# per test (new_db).
EVKIT_STORE=${EVKIT_STORE:-sqlite}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# on_pg — true when the suites run on PostgreSQL.
on_pg() { [[ $EVKIT_STORE == pg ]]; }

# sqlite_only REASON — skips the test on PostgreSQL, saying why it cannot
# hold there; never a silent skip.
sqlite_only() { ! on_pg || skip "sqlite only: $*"; }

# as_pg CMD... — runs CMD (exec'd: as_pg's pid is CMD's) as the server's
# owner: as root, the unprivileged nobody:nogroup (PostgreSQL refuses to
# run as root); else as is.
as_pg() {
	if ((EUID == 0)); then
		exec setpriv --reuid="$(id -u nobody)" --regid="$(getent group nogroup | cut -d: -f3)" \
			--clear-groups --inh-caps=-all -- "$@"
	fi
	exec "$@"
}

# pg_ready — true once the server at $PG_HOST accepts queries.
pg_ready() { psql -XAtq -d "host=$PG_HOST user=evkit dbname=postgres" -c 'SELECT 1' >/dev/null 2>&1; }

# pg_start — initdb and start a private PostgreSQL in a short directory
# under /tmp (a unix socket path must stay under 107 bytes, and
# $BATS_TEST_TMPDIR can be longer), listening on its unix socket only,
# and waits until it answers; exports PG_DIR, PG_HOST (the socket's
# directory) and PG_PID. Tuned for tests (no fsync): never for data.
pg_start() {
	PG_DIR=$(mktemp -d /tmp/evkpg.XXXXXX)
	((EUID != 0)) || chown nobody:nogroup "$PG_DIR"
	(as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U evkit --auth=trust -N -E UTF8 \
		--locale=C.UTF-8) >"$PG_DIR/initdb.log" 2>&1 ||
		{ cat "$PG_DIR/initdb.log" >&2; return 1; }
	as_pg "$PG_BIN/postgres" -D "$PG_DIR/data" -k "$PG_DIR" -c listen_addresses= \
		-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
		-c max_connections=100 </dev/null >"$PG_DIR/log" 2>&1 3>&- &
	PG_PID=$!
	PG_HOST=$PG_DIR
	export PG_DIR PG_HOST PG_PID
	WAIT_SECS=30 wait_for pg_ready || { cat "$PG_DIR/log" >&2; return 1; }
}

# pg_stop — stops the server started by pg_start (fast shutdown: its
# sessions are ended), by its pid, and removes its directory.
pg_stop() {
	[[ -n ${PG_PID:-} ]] || return 0
	kill -INT "$PG_PID" 2>/dev/null || true
	WAIT_SECS=30 wait_for gone "$PG_PID" || kill -KILL "$PG_PID" 2>/dev/null || true
	wait "$PG_PID" 2>/dev/null || true
	rm -rf "$PG_DIR"
	PG_PID= PG_DIR= PG_HOST=
}

# store_setup_file / store_teardown_file — a suite's setup_file and
# teardown_file: start and stop the server when the suite runs on
# PostgreSQL, nothing on SQLite.
store_setup_file() { ! on_pg || pg_start; }
store_teardown_file() { ! on_pg || pg_stop; }

# new_db NAME — prints the --db value of a fresh, empty store called NAME
# in this test: $BATS_TEST_TMPDIR/NAME.db, or on PostgreSQL a new database
# (dropped by stop_all) as a libpq URI.
new_db() {
	if ! on_pg; then
		echo "$BATS_TEST_TMPDIR/$1.db"
		return
	fi
	local name="t${BATS_TEST_NUMBER}_$1"
	psql -XAtq -v ON_ERROR_STOP=1 -d "host=$PG_HOST user=evkit dbname=postgres" \
		-c "CREATE DATABASE \"$name\"" >/dev/null || return 1
	echo "postgresql:///$name?host=$PG_HOST&user=evkit"
}

# db_sql DB SQL — runs SQL (trusted test text) on the store DB names (a
# new_db value) and prints the rows, columns separated by '|', as sqlite3
# and psql -At both do. On PostgreSQL the programs' own schemas (casectl's
# "cases", evworker's "jobs": lib/db_pg.c) are searched first.
db_sql() {
	if [[ $1 == postgresql://* ]]; then
		PGOPTIONS='-c search_path=cases,jobs,public' psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"
	else
		sqlite3 "$1" "$2"
	fi
}

# as_blob EXPR — SQL for the text EXPR as a byte string (BLOB, BYTEA) in
# the dialect of the suite's store.
as_blob() {
	if on_pg; then
		echo "convert_to($1, 'UTF8')"
	else
		echo "CAST($1 AS BLOB)"
	fi
}

# pg_end_sessions DB — ends every session connected to the database of
# the URI DB (a lost connection, as a server restart or a network cut
# leaves it).
pg_end_sessions() {
	local name=${1#postgresql:///}
	name=${name%%\?*}
	psql -XAtq -d "host=$PG_HOST user=evkit dbname=postgres" \
		-c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$name'" >/dev/null
}

# pg_no_sessions DB — true when no session is connected to the database
# of the URI DB (a killed client's session ends once the server sees its
# connection close).
pg_no_sessions() {
	local name=${1#postgresql:///}
	name=${name%%\?*}
	[ "$(psql -XAtq -d "host=$PG_HOST user=evkit dbname=postgres" \
		-c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$name'")" = 0 ]
}

# drop_test_dbs — drops the databases new_db made in this test (stop_all
# calls it once the test's programs are stopped).
drop_test_dbs() {
	on_pg && [[ -n ${PG_HOST:-} ]] || return 0
	local d
	for d in $(psql -XAtq -d "host=$PG_HOST user=evkit dbname=postgres" \
		-c "SELECT datname FROM pg_database WHERE datname LIKE 't${BATS_TEST_NUMBER}\_%'"); do
		psql -XAtq -d "host=$PG_HOST user=evkit dbname=postgres" \
			-c "DROP DATABASE \"$d\" WITH (FORCE)" >/dev/null || true
	done
}
