#!/bin/sh
# bench/wedge.sh — the acceptance of issue 16 items 4 and 5: ROUNDS (20)
# rounds of each reproduction against a fresh hub, and how long the hub
# took to answer a publish after it (limit 10 s).
#   bare:  COUNT (1) bare connect()+close() on the ipc socket, then evpub
#   stop:  SIGSTOP of the hub for STOP (15) s while a publisher waits,
#          SIGCONT, then evpub
# Prints one line per round and a summary; exit 1 if any round took over
# 10 s. Needs `make all` (bin/ and build/obj/tests/tools/bareconn).
# EVBUSD_NNG_WORKAROUND=0 measures the watchdog alone (then RETRY=1: evpub
# is run again until it succeeds, the time is until the first success).
set -u
EVKIT_BIN=${EVKIT_BIN:-$(pwd)/bin}
TOOLS=${EVKIT_TOOLS:-$(pwd)/build/obj/tests/tools}
ROUNDS=${ROUNDS:-20} COUNT=${COUNT:-1} STOP=${STOP:-15} RETRY=${RETRY:-0}
WHICH=${1:-bare stop}
bad=0

now() { date +%s.%N; }

hub_up() {
	dir=$(mktemp -d)
	EVBUS_URL="ipc://$dir/bus"; export EVBUS_URL
	"$EVKIT_BIN/evbusd" --store "$dir/bus.db" --daemon --pidfile "$dir/pid" || exit 1
	pid=$(cat "$dir/pid")
}

hub_down() {
	kill "$pid" 2>/dev/null
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	kill -9 "$pid" 2>/dev/null
	rm -rf "$dir"
}

# answer — publishes once (evpub gives up after 10 s) and prints the time.
answer() {
	t0=$(now)
	tries=0
	while :; do
		tries=$((tries + 1))
		if timeout 30 "$EVKIT_BIN/evpub" bench:wedge tick 2>/dev/null; then rc=0; else rc=$?; fi
		[ "$rc" -ne 0 ] && [ "$RETRY" = 1 ] && [ "$(echo "$(now) - $t0 < 30" | bc)" -eq 1 ] || break
	done
	t=$(echo "$(now) - $t0" | bc)
	if [ "$rc" -ne 0 ] || [ "$(echo "$t > 10" | bc)" -eq 1 ]; then bad=$((bad + 1)); fi
	printf '%s round %2d: evpub exit %d after %.3f s (%d tries)\n' "$1" "$2" "$rc" "$t" "$tries"
	echo "$t" >>"$3"
}

for which in $WHICH; do
	times=$(mktemp)
	r=1
	while [ $r -le "$ROUNDS" ]; do
		hub_up
		case $which in
		bare)
			"$TOOLS/bareconn" "$EVBUS_URL" "$COUNT" ;;
		stop)
			kill -STOP "$pid"
			timeout 30 "$EVKIT_BIN/evpub" bench:wedge waiting 2>/dev/null &
			waiter=$!
			sleep "$STOP"
			kill -CONT "$pid"
			wait "$waiter" ;;
		esac
		answer "$which" "$r" "$times"
		hub_down
		r=$((r + 1))
	done
	sort -n "$times" | awk -v w="$which" '{ t[NR] = $1 } END {
		printf "%s: %d rounds, answer in median %.3f s, max %.3f s\n", w, NR, t[int((NR + 1) / 2)], t[NR] }'
	rm -f "$times"
done
[ "$bad" -eq 0 ] || { echo "$bad rounds over 10 s or failed"; exit 1; }
