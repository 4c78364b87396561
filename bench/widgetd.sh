#!/bin/bash
# bench/widgetd.sh — the widget fold: in process (bench/foldbench.c: one
# long workflow, and 25,000 short ones), and
# end to end: 200,000 workflow events through evpub -> evbusd -> widgetd,
# timed until widgetd announces the final widget, beside plain evsub
# receiving the same events (the bus's own pace), in one run. Then the
# catch-up: a widgetd whose state predates the stream resumes from the
# hub's log, beside evsub --since 0 reading the same log: how fast each
# consumer takes what the bus can hand it, without a publisher sharing
# the cores.
set -euo pipefail

N=${1:-200000}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh" widgetd

inproc=$("$TOOLS/foldbench" 1000000)
# Ever new workflows (a long run, or a publisher of new workflow ids):
# the widgets kept are bounded (--max-widgets, 1000), and so is the fold's
# walk over them.
churn=$("$TOOLS/foldbench" 100000 workflows)

# One workflow: process_created, N-2 step events, workflow_completed.
awk -v n="$N" 'BEGIN {
	ids = "\"process_id\":\"p1\",\"workflow_id\":\"wfb\""
	printf "{\"topic\":\"workflow:wfb\",\"event\":\"process_created\",\"payload\":{%s}}\n", ids
	for (i = 1; i <= n - 2; i++) {
		k = i % 4; s = int(i / 4)
		if (k == 0) printf "{\"topic\":\"process:p1\",\"event\":\"step_started\",\"payload\":{%s,\"step\":\"s%d\",\"percentage\":%d}}\n", ids, s, s % 100
		if (k == 1) printf "{\"topic\":\"process:p1\",\"event\":\"step_progress\",\"payload\":{%s,\"step\":\"s%d\",\"percentage\":%d}}\n", ids, s, s % 100
		if (k == 2) printf "{\"topic\":\"process:p1\",\"event\":\"progress_update\",\"payload\":{%s,\"content\":\"at %d\"}}\n", ids, i
		if (k == 3) printf "{\"topic\":\"process:p1\",\"event\":\"step_completed\",\"payload\":{%s,\"step\":\"s%d\",\"result\":{\"status\":\"success\"}}}\n", ids, s
	}
	printf "{\"topic\":\"workflow:wfb\",\"event\":\"workflow_completed\",\"payload\":{%s,\"status\":\"completed\"}}\n", ids
}' >"$dir/events"


# Each run on a fresh hub, so neither pays for the other's log.
hub() {
	export EVBUS_URL="ipc://$dir/$1"
	evbusd --store "$dir/$1.db" --daemon --pidfile "$dir/$1.pid"
	pids+=("$(cat "$dir/$1.pid")")
}

# watch READY EVSUB-ARGS... — evsub in the background, returning once it
# is subscribed (--ready-file $dir/READY); $sub is its pid.
watch() {
	local ready="$dir/$1"
	shift
	evsub --ready-file "$ready" "$@" >/dev/null &
	sub=$!
	wait_file "$ready"
}

# The bus alone: plain evsub.
hub bus1
watch r1 -n "$N" -W 120 '**'
t0=$(date +%s.%N)
evpub -f "$dir/events"
wait "$sub"
t1=$(date +%s.%N)

# widgetd folding the same stream, until it announces that progress-wfb
# is gone (replaced by result-wfb on the last event).
hub bus2
# First a state from before the stream, for the catch-up run.
widgetd --state "$dir/w0.db" --daemon --pidfile "$dir/w0.pid"
stop_by_pidfile "$dir/w0.pid"
widgetd --state "$dir/w.db" --throttle 500 --daemon --pidfile "$dir/w.pid"
pids+=("$(cat "$dir/w.pid")")
watch r2 --until widget_removed -W 120 'widget:progress-wfb'
t2=$(date +%s.%N)
evpub -f "$dir/events"
wait "$sub"
t3=$(date +%s.%N)
stop_by_pidfile "$dir/w.pid"

# Catch-up from the log of the run above.
t4=$(date +%s.%N)
evsub --since 0 -n "$N" -W 120 '**' >/dev/null
t5=$(date +%s.%N)
watch r3 --until widget_removed -W 120 'widget:progress-wfb'
t6=$(date +%s.%N)
widgetd --state "$dir/w0.db" --throttle 500 --daemon --pidfile "$dir/w0.pid"
pids+=("$(cat "$dir/w0.pid")")
wait "$sub"
t7=$(date +%s.%N)

echo "widgetd fold: $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-44s %12s\n' run events/s
printf '%-44s %12.0f\n' "fold in process (foldbench, 1,000,000)" "$(jq .events_per_s <<<"$inproc")"
printf '%-44s %12.0f\n' "fold, 25,000 workflows (100,000 events)" "$(jq .events_per_s <<<"$churn")"
awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-44s %12.0f\n", "bus alone: evpub -> evbusd -> evsub", n / (b - a) }'
awk -v n="$N" -v a="$t2" -v b="$t3" 'BEGIN { printf "%-44s %12.0f\n", "evpub -> evbusd -> widgetd (fold, save, publish)", n / (b - a) }'
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { printf "live: widgetd/bus throughput %.2f (goal: keeps up, 1.0)\n", (b - a) / (d - c) }'
awk -v n="$N" -v a="$t4" -v b="$t5" 'BEGIN { printf "%-44s %12.0f\n", "catch-up from the log: evsub --since 0", n / (b - a) }'
awk -v n="$N" -v a="$t6" -v b="$t7" 'BEGIN { printf "%-44s %12.0f\n", "catch-up from the log: widgetd resuming", n / (b - a) }'
awk -v a="$t4" -v b="$t5" -v c="$t6" -v d="$t7" 'BEGIN { printf "catch-up: widgetd/evsub throughput %.2f\n", (b - a) / (d - c) }'
