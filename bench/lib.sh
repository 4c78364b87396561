# bench/lib.sh — what every bench script starts with, sourced first:
#   . "$(dirname "$0")/lib.sh" NAME
# The programs (EVKIT_BIN, default bin/) on PATH, the bench tools in
# TOOLS (EVKIT_BENCH_TOOLS), a scratch folder $dir (evkit-NAME.XXXXXX),
# and, at exit, every process in pids and the one in hub stopped (a
# stopped one continued first) and $dir removed.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EVKIT_BIN:-$ROOT/bin}
TOOLS=${EVKIT_BENCH_TOOLS:-$ROOT/build/obj/bench}
export PATH="$BIN:$PATH" LC_ALL=C
dir=$(mktemp -d "${TMPDIR:-/tmp}/evkit-$1.XXXXXX")
pids=()
hub=

bench_exit() {
	local p
	for p in ${hub:+"$hub"} "${pids[@]}"; do
		kill -CONT "$p" 2>/dev/null || true
		kill "$p" 2>/dev/null || true
	done
	for p in ${hub:+"$hub"} "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	# A daemon (not a child: wait returns at once) writes its last files
	# on its way out: up to 5 s for each to be gone.
	local i
	for p in ${hub:+"$hub"} "${pids[@]}"; do
		for ((i = 0; i < 250; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.02
		done
	done
	rm -rf "$dir"
}
trap bench_exit EXIT
trap 'exit 130' INT TERM

# stop_by_pidfile FILE — TERM to the daemon FILE names; returns once it
# has removed FILE on its way out.
stop_by_pidfile() {
	kill "$(cat "$1")"
	while [ -e "$1" ]; do sleep 0.01; done
}

# wait_file FILE — returns once FILE exists (a --ready-file).
wait_file() {
	while [ ! -e "$1" ]; do sleep 0.01; done
}
