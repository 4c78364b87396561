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

# start_hub [ARGS...] — starts evbusd in the background on a private ipc
# path in the test's directory; sets EVBUS_URL, HUB_PID, HUB_STORE.  With
# --memory among ARGS no store is given.
start_hub() {
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus"
	HUB_STORE=${HUB_STORE:-$BATS_TEST_TMPDIR/bus.db}
	local store=(--store "$HUB_STORE")
	[[ " $* " == *" --memory "* ]] && store=()
	evbusd "${store[@]}" --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid" "$@"
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
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
