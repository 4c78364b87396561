#!/bin/bash
# bench/evsub_fold.sh — evsub --throttle over a firehose: does it keep up
# with the bus, in bounded memory?
#
# 1,000,000 events on 1,000 topics through evpub -> evbusd -> evsub, once
# with plain evsub and once with --throttle 100 (one key per topic); a
# final marker event ends each run (--until). Prints events/s and evsub's
# peak RSS for both, and the ratio.
set -euo pipefail

N=${1:-1000000}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh" fold

awk -v n="$N" 'BEGIN {
	for (i = 1; i <= n; i++)
		printf "{\"topic\":\"fold:t%d\",\"event\":\"step_progress\",\"payload\":{\"i\":%d,\"percentage\":%d}}\n", i % 1000, i, i % 101
	print "{\"topic\":\"fold:end\",\"event\":\"end\",\"payload\":{}}"
}' >"$dir/events"

export EVBUS_URL="ipc://$dir/bus"

# run NAME EVSUB-ARGS... — prints "NAME events/s peak-RSS-KiB printed", each
# on a fresh hub (a second million on one log would pay for trimming the
# first).
run() {
	local name=$1; shift
	# Gone once its pidfile is: a zombie's parent (init) may reap it late.
	[ -n "$hub" ] && { kill "$hub"; while [ -e "$dir/hub.pid" ]; do sleep 0.01; done; }
	rm -f "$dir"/bus.db* "$dir/ready"
	evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
	hub=$(cat "$dir/hub.pid")
	/usr/bin/time -f %M -o "$dir/rss" evsub --ready-file "$dir/ready" --until end -W 300 "$@" 'fold:**' >"$dir/out" &
	local sub=$!
	while [ ! -e "$dir/ready" ]; do sleep 0.01; done
	local t0 t1
	t0=$(date +%s.%N)
	evpub -f "$dir/events"
	wait "$sub"
	t1=$(date +%s.%N)
	awk -v n="$N" -v a="$t0" -v b="$t1" -v rss="$(cat "$dir/rss")" -v p="$(wc -l <"$dir/out")" -v name="$name" \
		'BEGIN { printf "%-28s %12.0f %10.1f %10d\n", name, n / (b - a), rss / 1024, p }'
}

echo "evsub fold: $N events on 1000 topics, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-28s %12s %10s %10s\n' run events/s "RSS MiB" printed
run "evsub (plain)" >"$dir/plain"; cat "$dir/plain"
run "evsub --throttle 100" --throttle 100 >"$dir/thr"; cat "$dir/thr"
plain=$(cat "$dir/plain") thr=$(cat "$dir/thr")
awk -v a="$(awk '{ print $(NF-2) }' <<<"$thr")" -v b="$(awk '{ print $(NF-2) }' <<<"$plain")" \
	'BEGIN { printf "throttled/plain throughput %.2f\n", a / b }'
