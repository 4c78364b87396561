#!/usr/bin/env bats
# widgetd: the fold of live events into widgets, published and shown.
load helpers

setup() {
	start_hub
	T=$BATS_TEST_TMPDIR
}
teardown() {
	[[ -n ${TMUX_SESSION:-} ]] && tmux kill-session -t "$TMUX_SESSION" 2>/dev/null
	stop_all
}

# start_widgetd ARGS... — the daemon, back once subscribed; WPID.
start_widgetd() {
	widgetd --state "$T/widgets.db" --daemon --pidfile "$T/w.pid" "$@"
	WPID=$(cat "$T/w.pid")
	BG_PIDS+=("$WPID")
}

# fg_widgetd ERR — the daemon in the foreground (a child, its status
# waitable), stderr in ERR, throttle 50 ms; WPID.
fg_widgetd() {
	widgetd --state "$T/widgets.db" --throttle 50 2>"$1" &
	WPID=$!
	BG_PIDS+=("$WPID")
}

# progress EVENT PAYLOAD-FIELDS — one workflow event of process p1 of wf1.
progress() {
	evpub "process:p1" "$1" "{\"process_id\":\"p1\",\"workflow_id\":\"wf1\"${2:+,$2}}"
}

@test "a real evworker workflow ends in result-{wf}; progress-{wf} is gone; both changes are published" {
	start_widgetd --throttle 100
	bg_to "$T/wev" evsub --ready-file "$T/ready" --until widget_removed -W 30 'widget:*'
	local sub=${BG_PIDS[-1]}
	wait_file "$T/ready"
	cat >"$T/steps.json" <<-'EOF'
	[{"name":"validate","run":["sh","-c","echo 50 half >&$EVWORKER_PROGRESS_FD"]},
	 {"name":"process","run":["true"]}]
	EOF
	evworker --db "$T/jobs.db" enqueue --steps "$T/steps.json" --workflow wf7 >/dev/null
	evworker --db "$T/jobs.db" run --drain 2>/dev/null
	wait "$sub"
	run jq -r '.topic + " " + .event' "$T/wev"
	assert_line 'widget:progress-wf7 widget_updated'
	assert_line 'widget:result-wf7 widget_updated'
	assert_line 'widget:progress-wf7 widget_removed'
	wait_for widgetd get result-wf7
	run -0 widgetd get result-wf7
	[ "$(jq -r '.type + " " + .status' <<<"$output")" = "result completed" ]
	run -1 widgetd get progress-wf7
}

@test "widgetd get answers from the daemon as of every event before it, even once the hub dropped the announcements" {
	stop_hub
	start_hub --retain 50
	start_widgetd --throttle 60000
	progress process_created
	progress step_started '"step":"validate"'
	progress step_progress '"percentage":42'
	# No waiting: the answer comes after the events, in stream order.
	run -0 widgetd get progress-wf1
	[ "$(jq -c '[.percentage, .activities[0].step, .process_id]' <<<"$output")" = '[42,"validate","p1"]' ]
	# The throttle held the announcement back; the daemon knows better.
	progress step_progress '"percentage":77'
	[ "$(widgetd get progress-wf1 | jq .percentage)" = 77 ]
	# 200 other events: the hub keeps about 50, none of them about wf1.
	awk 'BEGIN { for (i = 0; i < 200; i++) print "{\"topic\":\"noise:x\",\"event\":\"tick\"}" }' | evpub
	(( $(hub_status_field oldest_seq) > 10 ))
	[ "$(widgetd get progress-wf1 | jq .percentage)" = 77 ]
	run -0 widgetd get
	[ "$(jq -r .id <<<"$output" | grep -c '^progress-wf1$')" -eq 1 ]
	run -1 --separate-stderr widgetd get nothing-here
	[ "$stderr" = "widgetd: no widget 'nothing-here'" ]
}

@test "a workflow id of 300 bytes gives a widget announced as updated, under an id cut to fit a topic" {
	start_widgetd --throttle 100
	local wf id
	wf=$(printf 'w%.0s' {1..300})
	bg_to "$T/wev" evsub --ready-file "$T/ready" -n 2 -W 30 'widget:*'
	wait_file "$T/ready"
	evpub "process:p1" process_created "{\"process_id\":\"p1\",\"workflow_id\":\"$wf\"}"
	evpub "process:p1" step_progress "{\"process_id\":\"p1\",\"workflow_id\":\"$wf\",\"percentage\":9}"
	wait "${BG_PIDS[-1]}"
	run jq -r '.event' "$T/wev"
	assert_output "widget_updated
widget_updated"
	id=$(jq -r 'select(.topic | startswith("widget:progress-")) | .payload.id' "$T/wev" | head -n 1)
	[ "${#id}" -eq 248 ]
	[ "$(widgetd get "$id" | jq .percentage)" = 9 ]
}

@test "widgetd get with no daemon on the bus says so and exits 69 after -W" {
	run -69 --separate-stderr widgetd -W 0.3 get
	[[ $stderr == *"no widgetd answered"*"within 300 ms"* ]]
	run -2 --separate-stderr widgetd -W x get
	[[ $stderr == *"-W wants seconds"* ]]
}

@test "100 step_progress events in a burst with --throttle 100 give at most 20 updates, the last at 100%" {
	start_widgetd --throttle 100
	progress process_created
	progress step_started '"step":"work"'
	bg_to "$T/wev" evsub --ready-file "$T/ready" --event widget_updated 'widget:progress-wf1'
	wait_file "$T/ready"
	seq 1 100 | awk '{ print "{\"process_id\":\"p1\",\"workflow_id\":\"wf1\",\"step\":\"work\",\"percentage\":" $1 "}" }' |
		evpub -t process:p1 -e step_progress
	wait_for bash -c "tail -n 1 '$T/wev' | json_true '.payload.percentage == 100'"
	local n
	n=$(wc -l <"$T/wev")
	((n >= 1 && n <= 20)) || fail "$n widget_updated events: $(cut -c1-100 "$T/wev")"
}

@test "after kill -9 and a restart each event is folded once: nothing twice, nothing skipped" {
	start_widgetd --throttle 50
	progress process_created
	local i
	for i in 1 2 3 4 5; do progress progress_update "\"content\":\"u$i\""; done
	wait_for bash -c "widgetd get progress-wf1 | json_true '.updates | length == 5'"
	kill -9 "$WPID"
	for i in 6 7 8; do progress progress_update "\"content\":\"u$i\""; done
	start_widgetd --throttle 50
	wait_for bash -c "widgetd get progress-wf1 | json_true '.updates | length == 8'"
	run widgetd get progress-wf1
	[ "$(jq -c '[.updates[].content]' <<<"$output")" = '["u8","u7","u6","u5","u4","u3","u2","u1"]' ]
}

@test "keep_live recent cases follow casectl within a refetch window, at most one query per window" {
	export CASECTL_ACTOR=ann
	casectl --db "$T/cases.db" init --admin ann >/dev/null
	echo '{"widgets":[{"id":"recent","type":"keep_live","limit":5,"refetch_window":500}]}' >"$T/conf.json"
	start_widgetd --config "$T/conf.json" --cases-db "$T/cases.db" --throttle 50
	local t0=$SECONDS
	seq 1 1000 | awk '{ printf "{\"agency\":\"hse\",\"case_reference\":\"R%d\"}\n", $1 }' |
		casectl --db "$T/cases.db" ingest 2>/dev/null
	wait_for bash -c "widgetd get recent | json_true '.items | map(.case_reference) | index(\"R1000\")'"
	local elapsed=$((SECONDS - t0 + 1)) q
	q=$(widgetd get recent | jq .queries)
	# One query at start, then at most one per 500 ms window (plus the trailing one).
	((q >= 2 && q <= 2 + elapsed * 2)) || fail "$q queries in ${elapsed}s"
	[ "$(widgetd get recent | jq '.items | length')" -eq 5 ]
}

@test "widgetd counts events and lists the session's cases, newest first" {
	start_widgetd --throttle 50
	evpub case:created create '{"resource":"case","action":"create","data":{"id":"c1","case_reference":"A1"}}'
	evpub case:synced sync '{"resource":"case","action":"sync","data":{"id":"c2","case_reference":"A2"}}'
	wait_for bash -c "widgetd get session-cases | json_true '.items | length == 2'"
	run widgetd get session-cases
	[ "$(jq -c '[.items[].case_reference]' <<<"$output")" = '["A2","A1"]' ]
	wait_for bash -c "widgetd get case-events | json_true '.counts.create == 1 and .counts.sync == 1'"
}

@test "widgetd session stop freezes the session list; session start begins an empty one" {
	start_widgetd --throttle 50
	wait_for bash -c "widgetd get session-cases | json_true '.active and (.items | length == 0)'"
	c() { evpub "case:$1" "$2" "{\"resource\":\"case\",\"action\":\"$2\",\"data\":{\"id\":\"$3\",\"case_reference\":\"$4\"}}"; }
	c created create c1 R1
	c created create c2 R2
	# A case synced again moves to the top instead of appearing twice.
	c synced sync c1 R1b
	wait_for bash -c "widgetd get session-cases | json_true '[.items[].case_reference] == [\"R1b\",\"R2\"]'"
	run -0 widgetd session stop
	c created create c3 R3
	wait_for bash -c "widgetd get case-events | json_true '.counts.create == 3'"
	run -0 widgetd get session-cases
	json_true '(.active | not) and .stopped_at != null and [.items[].case_reference] == ["R1b","R2"]' <<<"$output"
	run -0 widgetd session start session-cases
	c created create c4 R4
	wait_for bash -c "widgetd get session-cases | json_true '.active and [.items[].case_reference] == [\"R4\"]'"
	# An unknown session widget is named on stderr; the daemon goes on.
	run -0 widgetd session stop nosuch
	run -2 widgetd session pause
}

@test "malformed workflow events are skipped with a message; the daemon goes on" {
	fg_widgetd "$T/err"
	wait_for bash -c "evbusd --status | json_true '.subscribers >= 1'"
	evpub process:x step_started '"not an object"'
	evpub process:x step_progress '{"workflow_id":"wfz","percentage":"lots"}'
	evpub process:x process_created '{"process_id":"p9","workflow_id":"a b"}'
	progress process_created
	wait_for widgetd get progress-wf1
	kill -0 "$WPID"
	grep -q "step_started.*skipped" "$T/err"
	grep -q "percentage is not a number" "$T/err"
	grep -q "process_created.*workflow_id cannot name a widget" "$T/err"
}

@test "widgetd refuses an unknown widget type or a bad config with 65" {
	echo '{"widgets":[{"id":"x","type":"pie"}]}' >"$T/bad.json"
	run -65 --separate-stderr widgetd --state "$T/w.db" --config "$T/bad.json"
	[[ $stderr == *"unknown type 'pie'"* ]]
	echo '[1]' >"$T/bad2.json"
	run -65 widgetd --state "$T/w.db" --config "$T/bad2.json"
	run -2 widgetd frob
}

@test "the seed's events on the seed's topics give the seed's widgets: process:{pid} and workflow:{wf} name them" {
	start_widgetd --throttle 50
	evpub resource:r1 process_created '{"process_id":"p1","workflow_id":"wf1"}'
	evpub process:p1 progress_update '{"content":"Starting workflow..."}'
	evpub process:p1 step_started '{"step":"validate"}'
	evpub process:p1 step_completed '{"step":"validate","result":{"status":"success"}}'
	wait_for bash -c "widgetd get progress-wf1 | json_true '.activities[0].status == \"completed\"'"
	run -0 widgetd get progress-wf1
	[ "$(jq -c '[.percentage, .activities[0].step, .activities[0].description, .updates[0].content]' <<<"$output")" = \
		'[30,"validate","Validating input","Starting workflow..."]' ]
	evpub workflow:wf1 workflow_completed '{"status":"completed"}'
	wait_for widgetd get result-wf1
	run -1 widgetd get progress-wf1
}

@test "widgetd announces every folded change once the hub is back after a hub restart" {
	fg_widgetd "$T/err"
	wait_for bash -c "widgetd get session-cases | json_true '.active'"
	stop_hub
	start_hub
	bg_to "$T/wev" evsub --ready-file "$T/ready" -n 1 -W 30 'widget:session-cases'
	wait_file "$T/ready"
	# widgetd is subscribed again (the hub counts it and evsub)
	wait_for bash -c "evbusd --status | json_true '.subscribers >= 2'"
	run -0 widgetd session stop
	wait "${BG_PIDS[-1]}" || fail "no announcement: $(cat "$T/err")"
	run jq -c '[.topic, .event, .payload.active]' "$T/wev"
	assert_output '["widget:session-cases","widget_updated",false]'
	run -0 widgetd get session-cases
	json_true '.active == false' <<<"$output"
}

@test "a saved state of the wrong shape never crashes widgetd: each damaged widget is dropped with a message" {
	start_widgetd --throttle 50
	progress process_created
	wait_for widgetd get progress-wf1
	kill "$WPID"
	wait_for gone "$WPID"
	# A progress widget without id holding p1, one whose activities are
	# not objects, a second widget of one id, and something not a widget.
	sqlite3 "$T/widgets.db" "UPDATE state SET widgets = json('[
		{\"type\":\"progress\",\"process_id\":\"p1\",\"workflow_id\":\"wf1\",\"percentage\":0,\"activities\":[],\"updates\":[]},
		{\"id\":\"progress-wf2\",\"type\":\"progress\",\"workflow_id\":\"wf2\",\"percentage\":0,\"activities\":[1],\"updates\":[]},
		{\"id\":\"case-events\",\"type\":\"counter\",\"counts\":{\"create\":1}},
		{\"id\":\"case-events\",\"type\":\"counter\",\"counts\":{}},
		7]')"
	local i
	for i in 1 2; do
		fg_widgetd "$T/err$i"
		wait_for bash -c "widgetd get case-events | json_true '.counts.create == 1'"
		evpub process:p1 step_progress '{"process_id":"p1","percentage":5}'
		evpub process:p1 step_started '{"process_id":"p1","step":"a"}'
		evpub process:p2 step_progress '{"workflow_id":"wf2","percentage":7}'
		wait_for bash -c "widgetd get progress-wf2 | json_true '.percentage == 7'"
		kill -0 "$WPID"
		kill "$WPID"
		wait "$WPID" || fail "widgetd exited $? on its restart $i: $(cat "$T/err$i")"
	done
	run cat "$T/err1"
	assert_line --partial "widget 1 dropped: no id"
	assert_line --partial "widget 2 ('progress-wf2') dropped: a list holds"
	assert_line --partial "widget 4 ('case-events') dropped: a second widget of that id"
	assert_line --partial "widget 5 dropped: not an object"
	# What the first restart saved is whole: nothing dropped again.
	run grep -c dropped "$T/err2"
	assert_output 0
}

@test "widgetd refuses a config with a negative, fractional or huge limit or window, or one id twice, with 65" {
	local bad
	for bad in '"limit":-5' '"limit":1e300' '"limit":2.5' '"limit":"9"' '"refetch_window":-1' '"refetch_window":0'; do
		echo "{\"widgets\":[{\"id\":\"r\",\"type\":\"keep_live\",$bad}]}" >"$T/bad.json"
		# (timeout: a daemon that takes the config runs on)
		run -65 --separate-stderr timeout 20 widgetd --state "$T/w.db" --config "$T/bad.json"
		[[ $stderr == *"widget 'r': "*" is a whole number from 1 to "* ]] || fail "$bad: $stderr"
	done
	echo '{"widgets":[{"id":"s","type":"session"},{"id":"s","type":"counter"}]}' >"$T/dup.json"
	run -65 --separate-stderr timeout 20 widgetd --state "$T/w.db" --config "$T/dup.json"
	[ "$stderr" = "widgetd: $T/dup.json: widgets 1 and 2 have the same id 's'" ]
}

# workflows FROM TO — JSON lines for evpub: workflows wfFROM..wfTO, each
# run to completion as evworker broadcasts it (process_created, a step
# started and completed, workflow_completed), one after the other.
workflows() {
	local i ids
	for ((i = $1; i <= $2; i++)); do
		ids="\"process_id\":\"p$i\",\"workflow_id\":\"wf$i\""
		echo "{\"topic\":\"workflow:wf$i\",\"event\":\"process_created\",\"payload\":{$ids}}"
		echo "{\"topic\":\"process:p$i\",\"event\":\"step_started\",\"payload\":{$ids,\"step\":\"s\"}}"
		echo "{\"topic\":\"process:p$i\",\"event\":\"step_completed\",\"payload\":{$ids,\"step\":\"s\",\"result\":{}}}"
		echo "{\"topic\":\"workflow:wf$i\",\"event\":\"workflow_completed\",\"payload\":{$ids,\"status\":\"completed\"}}"
	done
}

# workflow_ids — the ids of the progress and result widgets widgetd get
# lists, in its order, one a line.
workflow_ids() { widgetd get | jq -r 'select(.type == "progress" or .type == "result") | .id'; }

# announced_up_to FILE — the announcements saved in FILE (evsub 'widget:*')
# include the counter's update for a case event published last: every
# removal announced before it is in FILE (removals go out at once, in the
# order of the events folded; an update after them).
announced_up_to() { grep -q '"topic":"widget:case-events"' "$1"; }

@test "--max-widgets 5: of 12 finished workflows the 5 newest results stay; each of the 7 dropped is announced removed once" {
	start_widgetd --throttle 50 --max-widgets 5
	bg_to "$T/wev" evsub --ready-file "$T/ready" 'widget:*'
	wait_file "$T/ready"
	workflows 1 12 | evpub
	evpub case:mark mark '{}'
	WAIT_SECS=20 wait_for announced_up_to "$T/wev"
	run -0 workflow_ids
	assert_output "$(printf 'result-wf%d\n' 8 9 10 11 12)"
	# Removals, in order: each progress widget once (its result replaced
	# it), and the results of wf1..wf7, oldest first, each once.
	run -0 jq -r 'select(.event == "widget_removed") | .topic' "$T/wev"
	[ "$(grep -c '^widget:progress-' <<<"$output")" -eq 12 ]
	[ "$(grep '^widget:progress-' <<<"$output" | sort -u | wc -l)" -eq 12 ]
	[ "$(grep '^widget:result-' <<<"$output")" = "$(printf 'widget:result-wf%d\n' 1 2 3 4 5 6 7)" ]
	# Nothing about a dropped widget after its removal; every payload
	# of a removal is the id alone.
	jq -s -e '[.[] | select(.topic | startswith("widget:result-"))]
		| group_by(.topic) | map(select(any(.event == "widget_removed"))) | length == 7
		  and all(last | .event == "widget_removed")' "$T/wev"
	jq -s -e 'map(select(.event == "widget_removed")) | all(.payload == {id: (.topic | ltrimstr("widget:"))})' "$T/wev"
	# The newest five were never announced as removed; the state saved
	# holds them and nothing else of the workflows.
	kill "$WPID"
	wait_for gone "$WPID"
	[ "$(sqlite3 "$T/widgets.db" "SELECT group_concat(json_extract(value, '\$.id'), ' ') FROM state, json_each(state.widgets)
		WHERE json_extract(value, '\$.type') IN ('progress', 'result')")" = "result-wf8 result-wf9 result-wf10 result-wf11 result-wf12" ]
}

@test "--max-widgets: a running workflow's progress widget stays while finished ones are dropped" {
	start_widgetd --throttle 50 --max-widgets 5
	evpub process:pr step_started '{"process_id":"pr","workflow_id":"running","step":"long"}'
	workflows 1 12 | evpub
	evpub process:pr step_progress '{"process_id":"pr","workflow_id":"running","percentage":40}'
	run -0 workflow_ids
	assert_output "$(printf '%s\n' progress-running result-wf9 result-wf10 result-wf11 result-wf12)"
	# the same widget all along: its first activity is still there
	widgetd get progress-running | json_true '.percentage == 40 and .activities[0].step == "long"'
	# More running at once than the bound: the oldest started goes.
	for wf in r1 r2 r3 r4 r5; do evpub "workflow:$wf" process_created "{\"process_id\":\"p$wf\",\"workflow_id\":\"$wf\"}"; done
	run -0 workflow_ids
	assert_output "$(printf 'progress-r%d\n' 1 2 3 4 5)"
}

@test "--max-widgets: a restart from the state keeps the bound; a smaller one trims the state with a message and announces the removals" {
	start_widgetd --throttle 50 --max-widgets 5
	workflows 1 12 | evpub
	[ "$(workflow_ids | wc -l)" -eq 5 ]
	kill "$WPID"
	wait_for gone "$WPID"
	widgetd --state "$T/widgets.db" --daemon --pidfile "$T/w.pid" --max-widgets 5 2>"$T/err1"
	WPID=$(cat "$T/w.pid")
	BG_PIDS+=("$WPID")
	workflows 13 13 | evpub
	run -0 workflow_ids
	assert_output "$(printf 'result-wf%d\n' 9 10 11 12 13)"
	run grep -c "past the bound" "$T/err1"
	assert_output 0
	kill "$WPID"
	wait_for gone "$WPID"
	# A config's max_widgets is the bound when no --max-widgets is given.
	echo '{"max_widgets":3,"widgets":[{"id":"case-events","type":"counter","pattern":"case:*"}]}' >"$T/conf.json"
	bg_to "$T/wev" evsub --ready-file "$T/ready" 'widget:*'
	wait_file "$T/ready"
	widgetd --state "$T/widgets.db" --daemon --pidfile "$T/w.pid" --config "$T/conf.json" 2>"$T/err2"
	WPID=$(cat "$T/w.pid")
	BG_PIDS+=("$WPID")
	run -0 workflow_ids
	assert_output "$(printf 'result-wf%d\n' 11 12 13)"
	[ "$(cat "$T/err2")" = "widgetd: state '$T/widgets.db': 2 progress and result widgets past the bound of 3 (--max-widgets) dropped, the oldest first" ]
	evpub case:mark mark '{}'
	WAIT_SECS=20 wait_for announced_up_to "$T/wev"
	run -0 jq -r 'select(.event == "widget_removed") | .topic' "$T/wev"
	assert_output "widget:result-wf9
widget:result-wf10"
	# --max-widgets wins over the config's.
	kill "$WPID"
	wait_for gone "$WPID"
	start_widgetd --config "$T/conf.json" --max-widgets 4
	workflows 14 15 | evpub
	run -0 workflow_ids
	assert_output "$(printf 'result-wf%d\n' 12 13 14 15)"
}

@test "a saved state of 3000 workflow widgets (one from before the bound) is trimmed on load to the newest 1000, with a message" {
	start_widgetd
	kill "$WPID"
	wait_for gone "$WPID"
	jq -n -c '[range(3000) | {id: "result-w\(.)", type: "result", workflow_id: "w\(.)", status: "completed", percentage: 100}]
		+ [{id: "result-w5", type: "result", workflow_id: "w5", status: "completed", percentage: 100}]' >"$T/big.json"
	sqlite3 "$T/widgets.db" "UPDATE state SET widgets = CAST(readfile('$T/big.json') AS TEXT)"
	widgetd --state "$T/widgets.db" --daemon --pidfile "$T/w.pid" 2>"$T/err"
	WPID=$(cat "$T/w.pid")
	BG_PIDS+=("$WPID")
	run -0 workflow_ids
	[ "${#lines[@]}" -eq 1000 ]
	[ "${lines[0]}" = result-w2000 ] && [ "${lines[999]}" = result-w2999 ]
	grep -q "widget 3001 ('result-w5') dropped: a second widget of that id" "$T/err"
	grep -q "state '$T/widgets.db': 2000 progress and result widgets past the bound of 1000 (--max-widgets) dropped, the oldest first" "$T/err"
	kill "$WPID"
	wait_for gone "$WPID"
	[ "$(sqlite3 "$T/widgets.db" "SELECT json_array_length(widgets) FROM state")" -le 1003 ]
}

@test "widgetd refuses a --max-widgets that is not a whole number from 1, with the usage status; a config's with 65" {
	local bad
	for bad in 0 -3 x 2.5 1000001 ''; do
		run -2 --separate-stderr timeout 20 widgetd --state "$T/w.db" --max-widgets "$bad"
		[ "${stderr_lines[0]}" = "widgetd: --max-widgets wants a whole number from 1 to 1000000, not '$bad'" ] ||
			fail "$bad: $stderr"
	done
	echo '{"max_widgets":0,"widgets":[]}' >"$T/bad.json"
	run -65 --separate-stderr timeout 20 widgetd --state "$T/w.db" --config "$T/bad.json"
	[ "$stderr" = "widgetd: $T/bad.json: max_widgets is a whole number from 1 to 1000000" ]
}

# pane — the view's screen now, one line per row.
pane() { tmux capture-pane -p -t "$TMUX_SESSION"; }
# on_pane ERE — waits until a row of the view matches.
on_pane() { WAIT_SECS=${WAIT_SECS:-20} wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | grep -Eq -- '$1'"; }
# row_of ID — the row (1-based) where widget ID is shown.
row_of() { pane | grep -n -- "^$1 " | cut -d: -f1; }

# check_layout WIDTH — the title line first with the clock and a mark, and
# every bar whole on its row (a wrapped bar would end on the next row).
check_layout() {
	local first line
	first=$(pane | head -n 1)
	[[ $first =~ ^evkit\ widgets\ .*[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\ \ (connected|DISCONNECTED)\ *$ ]] ||
		fail "title line: '$first'"
	while IFS= read -r line; do
		((${#line} <= $1)) || fail "row longer than $1: '$line'"
		[[ $line != *"["* || $line =~ \[[#.]+\]\ +[0-9.]+% ]] || fail "bar cut: '$line'"
		[[ $line =~ ^[#.]+\] ]] && fail "bar wrapped: '$line'"
	done < <(pane)
	return 0
}

# dashboard WIDTH HEIGHT — the dashboard through a workflow, a failure, a
# long id and the hub going away, at that size.
dashboard() {
	local w=$1 h=$2 long row
	long=$(printf 'w%.0s' {1..200})
	start_widgetd --throttle 50
	TMUX_SESSION=evkit-view-$$
	tmux new-session -d -s "$TMUX_SESSION" -x "$w" -y "$h" "EVBUS_URL=$EVBUS_URL PATH=$PATH widgetd view"
	evpub resource:r1 process_created '{"process_id":"p1","workflow_id":"wf1"}'
	evpub resource:r1 process_created "{\"process_id\":\"p2\",\"workflow_id\":\"$long\"}"
	evpub resource:r1 process_created '{"process_id":"p3","workflow_id":"wf3"}'
	evpub process:p1 step_started '{"step":"validate"}'
	evpub process:p2 step_progress '{"percentage":70}'
	on_pane '^progress-wf1 +\[#+\.+\] +30\.0% running validate'
	on_pane '^progress-www.*~ \[#+\.*\] +70\.0%'
	check_layout "$w"
	local order
	order=$(pane | grep -oE '^(progress|result|session|recent|case)-[^ ]*')
	# Updates move no row.
	evpub process:p1 step_progress '{"percentage":60}'
	evpub process:p2 step_progress '{"percentage":80}'
	on_pane '^progress-wf1 +\[#+\.+\] +60\.0%'
	on_pane '^progress-www.* +80\.0%'
	[ "$(pane | grep -oE '^(progress|result|session|recent|case)-[^ ]*')" = "$order" ] || fail "order changed"
	# A failed workflow shows its error; a completed one takes its row.
	evpub workflow:wf3 workflow_failed '{"error":"exit 3"}'
	on_pane '^progress-wf3 .* failed: exit 3'
	row=$(row_of progress-wf1)
	evpub workflow:wf1 workflow_completed '{"status":"completed"}'
	on_pane '^result-wf1 +\[#+\] 100\.0% completed'
	[ "$(row_of result-wf1)" = "$row" ] || fail "result-wf1 not on progress-wf1's row $row"
	check_layout "$w"
	# The hub goes: the last widgets stay, marked DISCONNECTED, clock going.
	stop_hub
	on_pane '^evkit widgets .*DISCONNECTED'
	local t1
	t1=$(pane | head -n 1 | grep -oE '[0-9]{2}:[0-9]{2}:[0-9]{2}')
	wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | head -n 1 | grep -vq '$t1'"
	check_layout "$w"
	pane | grep -Eq '^progress-wf3 .* failed: exit 3'
	tmux send-keys -t "$TMUX_SESSION" q
	wait_for bash -c "! tmux has-session -t '$TMUX_SESSION' 2>/dev/null"
	TMUX_SESSION=
}

@test "widgetd view at 80x24: title, clock and mark; bars that fit; rows in a stable order; errors; DISCONNECTED when the hub stops; q quits" {
	dashboard 80 24
}

@test "widgetd view at 120x40 holds the same layout" {
	dashboard 120 40
}

@test "widgetd view with TERM=dumb or NO_COLOR on a terminal, or piped, prints plain frames without an escape sequence" {
	start_widgetd --throttle 50
	progress process_created
	progress step_progress '"percentage":40'
	wait_for widgetd get progress-wf1
	local env
	for env in TERM=dumb NO_COLOR=1; do
		TMUX_SESSION=evkit-plain-$$
		rm -f "$T/go" "$T/raw"
		tmux new-session -d -s "$TMUX_SESSION" -x 80 -y 24 \
			"until [ -e '$T/go' ]; do sleep 0.05; done; env $env EVBUS_URL=$EVBUS_URL PATH=$PATH widgetd view"
		tmux pipe-pane -t "$TMUX_SESSION" -o "cat >'$T/raw'"
		touch "$T/go"
		wait_for grep -q 'progress-wf1 .*40\.0%' "$T/raw"
		tmux kill-session -t "$TMUX_SESSION"
		TMUX_SESSION=
		! grep -q $'\e' "$T/raw" || fail "$env: escape sequences: $(cat -v "$T/raw" | head -5)"
		grep -q '^evkit widgets ' "$T/raw"
	done
	bg_to "$T/piped" widgetd view
	wait_for grep -q 'progress-wf1 .*40\.0%' "$T/piped"
	! grep -q $'\e' "$T/piped"
}
