#!/bin/bash
# bench/bus.sh — the bus against the brokers a user would pick instead.
#
# 200,000 events of ~200 bytes from a file, 3 runs each, side by side:
#   evkit      evpub -> evbusd (durable SQLite log) -> evsub, over ipc; again
#              with evbusd --synchronous full (a sync per commit)
#   redis      redis-cli --pipe of PUBLISH -> redis-server -> redis-cli SUBSCRIBE,
#              over a unix socket, no persistence
#   mosquitto  mosquitto_pub -l -> mosquitto (QoS 0) -> mosquitto_sub, loopback tcp
#            (and redis over loopback tcp, its usual set-up)
#   NATS       nats-server -js on loopback tcp: core pub/sub (no persistence)
#              and JetStream (file storage) with the C client's fastest path
#              (bench/natspeer.c: async publish with acks, callback
#              subscriber), then evpub -> JetStream -> evsub (nats://)
# then publish-to-delivery latency at 1,000 and 10,000 events/s (evkit,
# JetStream and NATS core, bench/latency.c), and evbusd's
# peak RSS while a subscriber is stopped (SIGSTOP) during a 1,000,000-event
# burst, and whether it gets them all once continued.
#
# Usage: bench/bus.sh [EVENTS]   (EVKIT_BIN, EVKIT_BENCH_TOOLS from make bench)
set -euo pipefail

N=${1:-200000}
BURST=${BURST:-1000000}
RUNS=${RUNS:-3}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh" bench

now() { date +%s.%N; }
# wait_until SECS CMD... — polls CMD until it succeeds, at most SECS seconds.
wait_until() {
	local deadline=$((SECONDS + $1)); shift
	until "$@"; do
		((SECONDS < deadline)) || { echo "bench: timed out: $*" >&2; return 1; }
		sleep 0.01
	done
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ~200-byte events, 16 topics.
gen() {
	awk -v n="$1" 'BEGIN {
		pad = sprintf("%0120d", 0); gsub(/0/, "x", pad)
		for (i = 1; i <= n; i++)
			printf "{\"topic\":\"bench:t%d\",\"event\":\"tick\",\"payload\":{\"i\":%d,\"pad\":\"%s\"}}\n", i % 16, i, pad
	}'
}
gen "$N" >"$dir/events"
bytes=$(wc -c <"$dir/events")

# ---- evkit ----
export EVBUS_URL="ipc://$dir/bus"
evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
hub=$(cat "$dir/hub.pid"); pids+=("$hub")
# The same with SQLite's synchronous=FULL: each commit synced before the ack.
FULL_URL="ipc://$dir/busfull"
evbusd --bus "$FULL_URL" --store "$dir/busfull.db" --synchronous full --daemon --pidfile "$dir/hubfull.pid"
pids+=("$(cat "$dir/hubfull.pid")")
evkit_run() {
	rm -f "$dir/ready"
	evsub --ready-file "$dir/ready" -n "$N" -W 120 'bench:**' >"$dir/evkit.out" &
	local sub=$!
	wait_until 10 test -e "$dir/ready"
	local t0; t0=$(now)
	evpub -f "$dir/events"
	wait "$sub" || true
	local t1; t1=$(now)
	echo "$t0 $t1 $(wc -l <"$dir/evkit.out")"
}

# lines_at_least FILE N — true once FILE has N lines.
lines_at_least() { [ "$(wc -l <"$1")" -ge "$2" ]; }

# ---- redis ----
# redis-cli prints 3 lines per message (message, channel, payload) after 3
# for the subscription itself.
# redis_run CONNECT-ARGS... — over the unix socket or loopback tcp.
redis_run() {
	redis-cli "$@" SUBSCRIBE bench >"$dir/redis.out" &
	local sub=$!
	wait_until 10 sh -c "[ \"\$(redis-cli -s '$dir/redis.sock' PUBSUB NUMSUB bench | tail -n 1)\" = 1 ]"
	local t0; t0=$(now)
	redis-cli "$@" --pipe <"$dir/redis.cmds" >/dev/null
	wait_until 60 lines_at_least "$dir/redis.out" $((3 + 3 * N)) || true
	local t1; t1=$(now)
	kill "$sub"; wait "$sub" 2>/dev/null || true
	echo "$t0 $t1 $(( ($(wc -l <"$dir/redis.out") - 3) / 3 ))"
}

# ---- mosquitto ----
# Ready once a probe on a second topic comes back.
mosq_run() {
	mosquitto_sub -p "$MPORT" -h 127.0.0.1 -v -t probe -t bench >"$dir/mosq.out" &
	local sub=$!
	until grep -q '^probe' "$dir/mosq.out"; do
		mosquitto_pub -p "$MPORT" -h 127.0.0.1 -t probe -m x
		sleep 0.05
	done
	local base; base=$(wc -l <"$dir/mosq.out")
	local t0; t0=$(now)
	mosquitto_pub -p "$MPORT" -h 127.0.0.1 -t bench -l <"$dir/events"
	wait_until 60 lines_at_least "$dir/mosq.out" $((base + N)) || true
	local t1; t1=$(now)
	kill "$sub"; wait "$sub" 2>/dev/null || true
	echo "$t0 $t1 $(grep -c '^bench ' "$dir/mosq.out")"
}

have_redis=0 have_mosq=0
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
	awk '{ printf "*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$%d\r\n%s\r\n", length($0), $0 }' \
		"$dir/events" >"$dir/redis.cmds"
	# No persistence, and no output-buffer limit for subscribers: by default
	# redis drops a subscriber 32 MB behind, which a burst of this size is.
	RPORT=$((20000 + RANDOM % 20000))
	redis-server --port "$RPORT" --bind 127.0.0.1 --unixsocket "$dir/redis.sock" --save '' --appendonly no \
		--client-output-buffer-limit 'pubsub 0 0 0' \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
	wait_until 10 test -s "$dir/redis.pid"
	pids+=("$(cat "$dir/redis.pid")")
	wait_until 10 redis-cli -s "$dir/redis.sock" PING >/dev/null
	have_redis=1
fi
if command -v mosquitto >/dev/null && command -v mosquitto_sub >/dev/null; then
	MPORT=$((20000 + RANDOM % 20000))
	printf 'listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$MPORT" >"$dir/mosq.conf"
	mosquitto -c "$dir/mosq.conf" >"$dir/mosq.log" 2>&1 &
	pids+=("$!")
	wait_until 10 mosquitto_pub -p "$MPORT" -h 127.0.0.1 -t probe -m x 2>/dev/null
	have_mosq=1
fi

have_nats=0
if command -v nats-server >/dev/null && [ -x "$TOOLS/natspeer" ]; then
	NPORT=$((20000 + RANDOM % 20000))
	nats-server -js -a 127.0.0.1 -p "$NPORT" -sd "$dir/nats" -l "$dir/nats.log" </dev/null >/dev/null 2>&1 &
	pids+=("$!")
	wait_until 10 grep -qs 'Server is ready' "$dir/nats.log"
	have_nats=1
fi
# natspeer_run core|js — the C client, file to file.
natspeer_run() { "$TOOLS/natspeer" "$1" "nats://127.0.0.1:$NPORT" "$dir/events" "$dir/natspeer.out" "$N"; }

# One row per peer: median events/s over the runs, MB/s, worst loss.
row() {
	local name=$1 file=$2
	local rate loss
	rate=$(awk -v n="$N" '{ print n / ($2 - $1) }' "$file" | median)
	loss=$(awk -v n="$N" 'BEGIN { m = 0 } { if (n - $3 > m) m = n - $3 } END { print m }' "$file")
	printf '%-34s %12.0f %8.1f %8d\n' "$name" "$rate" "$(awk -v r="$rate" -v b="$bytes" -v n="$N" 'BEGIN { print r * b / n / 1e6 }')" "$loss"
	eval "rate_$3=$rate"
}

: >"$dir/evkit.runs" >"$dir/redis.runs" >"$dir/redistcp.runs" >"$dir/mosq.runs"
: >"$dir/evkitfull.runs" >"$dir/natscore.runs" >"$dir/natsjs.runs" >"$dir/evkitnats.runs"
for ((r = 1; r <= RUNS; r++)); do
	evkit_run >>"$dir/evkit.runs"
	EVBUS_URL=$FULL_URL evkit_run >>"$dir/evkitfull.runs"
	((have_nats)) && natspeer_run core >>"$dir/natscore.runs"
	((have_nats)) && natspeer_run js >>"$dir/natsjs.runs"
	((have_nats)) && EVBUS_URL="nats://127.0.0.1:$NPORT/EVKB" evkit_run >>"$dir/evkitnats.runs"
	((have_redis)) && redis_run -s "$dir/redis.sock" >>"$dir/redis.runs"
	((have_redis)) && redis_run -h 127.0.0.1 -p "$RPORT" >>"$dir/redistcp.runs"
	((have_mosq)) && mosq_run >>"$dir/mosq.runs"
done

# ratio A B — the median over the runs of A's rate over B's, each pair
# measured in the same run (the machine is shared: a ratio of one run is
# steadier than rates of different moments).
ratio() {
	paste -d' ' "$dir/$1.runs" "$dir/$2.runs" |
		awk -v n="$N" '{ print (n / ($2 - $1)) / (n / ($5 - $4)) }' | median
}

echo "bus: $N events of ~$((bytes / N)) bytes, $RUNS runs each (median), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-34s %12s %8s %8s\n' path events/s MB/s loss
row "evkit (evbusd, SQLite log, acked)" "$dir/evkit.runs" evkit
row "evkit, --synchronous full" "$dir/evkitfull.runs" evkitfull
if ((have_nats)); then
	row "NATS core pub/sub (no log, no acks)" "$dir/natscore.runs" natscore
	row "NATS JetStream, C client (file)" "$dir/natsjs.runs" natsjs
	row "evkit over NATS JetStream" "$dir/evkitnats.runs" evkitnats
fi
((have_redis)) && row "redis pub/sub, unix socket" "$dir/redis.runs" redis
((have_redis)) && row "redis pub/sub, loopback tcp" "$dir/redistcp.runs" redistcp
((have_mosq)) && row "mosquitto QoS 0" "$dir/mosq.runs" mosq
echo "ratios (median of per-run ratios):"
((have_nats)) && printf '  evkit/NATS core                 %5.2f  (goal >= 1.0)\n' "$(ratio evkit natscore)"
((have_redis)) && printf '  evkit/redis                     %5.2f over a unix socket, %.2f over tcp (goal >= 2.0)\n' \
	"$(ratio evkit redis)" "$(ratio evkit redistcp)"
((have_nats)) && printf '  evkit/JetStream (both durable)  %5.2f  (goal >= 1.0)\n' "$(ratio evkit natsjs)"
((have_nats)) && printf '  evkit-over-JetStream/C client   %5.2f  (goal >= 0.9)\n' "$(ratio evkitnats natsjs)"
# each run's (the two ran back to back in every run)
((have_nats)) && paste -d' ' "$dir/natsjs.runs" "$dir/evkitnats.runs" |
	awk '{ r = r sprintf(" %.2f", ($2 - $1) / ($5 - $4)) } END { print "    in each run:                 " r }'
printf '  evkit full/normal               %5.2f  (the cost of synchronous=FULL)\n' "$(ratio evkitfull evkit)"
((have_mosq)) && printf '  evkit/mosquitto                 %5.2f\n' "$(ratio evkit mosq)"

# ---- latency at 1,000 and 10,000 events/s ----
# Publish to delivery, each event acknowledged before the next (evkit:
# committed to the log; JetStream: stored in its file stream), so a peer
# whose acknowledgement takes longer than 1/RATE s reaches a lower rate
# (column "reached").
LSECS=${LSECS:-5}
lat_row() {
	local name=$1 rate=$2 out; shift 2
	out=$("$TOOLS/latency" "$@" "$rate" "$LSECS") || true
	if [ -z "$out" ]; then
		printf '%-40s %6s %8s %8s %8s %8s %s\n' "$name" "$rate" - - - - failed
		return
	fi
	jq -r --arg n "$name" --arg r "$rate" '"\($n)\t\($r)\t\(.rate)\t\(.p50_us)\t\(.p99_us)\t\(.max_us)\t\(.received)/\(.sent)"' <<<"$out" |
		awk -F'\t' '{ printf "%-40s %6s %8s %8s %8s %8s %s\n", $1, $2, $3, $4, $5, $6, $7 }'
}
echo "latency, publish to delivery, $LSECS s per row (goal at 1000/s, durable and acked: p50 <= 100 us, p99 <= 500 us)"
printf '%-40s %6s %8s %8s %8s %8s %s\n' path ev/s reached p50_us p99_us max_us received
for rate in 1000 10000; do
	lat_row "evkit (evbusd, acked, committed)" "$rate" "$EVBUS_URL"
	lat_row "evkit, --synchronous full" "$rate" "$FULL_URL"
	if ((have_nats)); then
		lat_row "JetStream, C client (acked, file)" "$rate" --nats-js "nats://127.0.0.1:$NPORT"
		lat_row "NATS core, C client (no log, no acks)" "$rate" --nats-core "nats://127.0.0.1:$NPORT"
		lat_row "evkit over JetStream (acked)" "$rate" "nats://127.0.0.1:$NPORT/EVKB"
	fi
done

# ---- a stopped subscriber during a 1,000,000-event burst ----
gen "$BURST" >"$dir/burst"
head=$(evbusd --status | jq .head_seq)
rm -f "$dir/ready"
evsub --ready-file "$dir/ready" -n "$BURST" -W 300 'bench:**' >"$dir/burst.out" &
sub=$!; pids+=("$sub")
wait_until 10 test -e "$dir/ready"
kill -STOP "$sub"
evpub -f "$dir/burst"
hwm=$(awk '/VmHWM/ { print $2 }' /proc/"$hub"/status)
kill -CONT "$sub"
wait "$sub" || true
got=$(wc -l <"$dir/burst.out")
inorder=$(jq -r .seq "$dir/burst.out" | awk -v h="$head" '$1 != h + NR { bad++ } END { print bad + 0 }')
echo "stopped subscriber, $BURST-event burst: evbusd peak RSS $((hwm / 1024)) MiB (goal <= 64), received $got/$BURST, $inorder out of order"
