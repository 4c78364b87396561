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
}
BG_PIDS=()

# json_true FILTER — true when stdin holds JSON whose last value passes
# FILTER (jq -e alone also succeeds on empty input).
json_true() { jq -e -s "length > 0 and (last | $1)" >/dev/null 2>&1; }
export -f json_true

# hub_status_field NAME — one figure from evbusd --status.
hub_status_field() { evbusd --status | jq -r ".$1"; }
