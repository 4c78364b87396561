#!/bin/bash
# examples/demo.sh — what `make demo` runs: evkit's main job on a private
# bus in a temporary directory. A three-step workflow (validate, process,
# report: examples/steps/) run by evworker ingests enforcement cases
# (examples/cases.jsonl) with casectl, and widgetd folds the events into
# widgets shown live: `widgetd view` on a terminal, else the widget:*
# announcements as lines. Ends by itself within a minute, stops everything
# it started, removes its directory; Ctrl-C cleans up the same way.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$ROOT/bin:$PATH"
dir=$(mktemp -d "${TMPDIR:-/tmp}/evkit-demo.XXXXXX")
pids=()
# gone PID — PID has exited: no such process, or a zombie init has not
# reaped yet (it holds nothing any more).
gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat:0:1} == Z ]]
}
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# The daemons are not our children: wait until they are gone.
	local deadline=$((SECONDS + 10))
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
		while ! gone "$p" && ((SECONDS < deadline)); do sleep 0.02; done
	done
	[ -t 1 ] && printf '\033[?25h' || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '== %s\n' "$*"; }
wait_file() {
	local deadline=$((SECONDS + 10))
	until [ -e "$1" ]; do
		((SECONDS < deadline)) || { echo "demo: timed out waiting for $1" >&2; exit 1; }
		sleep 0.02
	done
}

export EVBUS_URL="ipc://$dir/bus" CASECTL_ACTOR=demo XDG_STATE_HOME="$dir/state"
say "a private hub and widgetd in $dir"
evbusd --store "$dir/bus.db" --daemon --pidfile "$dir/hub.pid"
pids+=("$(cat "$dir/hub.pid")")
casectl --db "$dir/cases.db" init --admin demo >/dev/null
# widgetd also serves the widgets to a browser (--http, a free loopback port).
widgetd --state "$dir/widgets.db" --cases-db "$dir/cases.db" --throttle 200 \
	--config "$ROOT/examples/widgets.json" --daemon --pidfile "$dir/widgetd.pid" \
	--http "${DEMO_HTTP:-127.0.0.1:0}" 2>"$dir/widgetd.err" || { cat "$dir/widgetd.err" >&2; exit 1; }
pids+=("$(cat "$dir/widgetd.pid")")
say "the widgets in a browser: $(sed -n 's/^widgetd: the page is at //p' "$dir/widgetd.err")" \
	"(DEMO_HOLD=1 keeps it open after the workflow, until Enter)"

# The live view: the dashboard on a terminal, else the announcements.
if [ -t 1 ]; then
	widgetd view &
	pids+=("$!")
else
	evsub --ready-file "$dir/ready" \
		-F '  %t  %e  %{payload.percentage}  %{payload.status}' 'widget:*' &
	pids+=("$!")
	wait_file "$dir/ready"
fi

steps="$ROOT/examples/steps"
cat >"$dir/workflow.json" <<JSON
[{"name":"validate","run":["$steps/validate.sh","$ROOT/examples/cases.jsonl"]},
 {"name":"process","run":["$steps/process.sh","$ROOT/examples/cases.jsonl","$dir/cases.db"]},
 {"name":"report","run":["$steps/report.sh","$dir/cases.db"]}]
JSON
evworker --db "$dir/jobs.db" enqueue --steps "$dir/workflow.json" --workflow demo >/dev/null
[ -t 1 ] || say "evworker runs the workflow: validate -> process -> report"
evworker --db "$dir/jobs.db" run --drain 2>"$dir/worker.log"

# The result widget replaces the progress widget once widgetd folds the end.
deadline=$((SECONDS + 10))
until widgetd get result-demo >"$dir/result" 2>/dev/null; do
	((SECONDS < deadline)) || { echo "demo: no result widget" >&2; exit 1; }
	sleep 0.1
done
sleep 0.5 # let the last redraw show before the view is stopped
[ "${DEMO_HOLD:-}" = 1 ] && [ -t 0 ] && read -r -p "the page stays until Enter " _
for p in "${pids[@]:2}"; do kill "$p" 2>/dev/null || true; done
# the dashboard leaves its screen before the summary is printed
wait "${pids[@]:2}" 2>/dev/null || true
[ -t 1 ] && printf '\033[?25h\n'
say "workflow demo: $(jq -r '.status + ", " + (.percentage | tostring) + "%"' "$dir/result")"
say "cases: $(casectl --db "$dir/cases.db" list --limit 1000 | wc -l) ingested; $(evbusd --status | jq .head_seq) events on the bus"
