#!/usr/bin/env bats
# evsub: patterns, filters, counts, timeouts, replay, and no missed event.
load helpers

setup() { start_hub; }
teardown() { stop_all; }

# lines_at_least FILE N — true once FILE has N lines or more.
lines_at_least() { (($(wc -l <"$1") >= $2)); }

# publish TOPIC... — publishes one event per topic, event name "e".
publish() {
	local t
	for t in "$@"; do printf '{"topic":"%s","event":"e"}\n' "$t"; done | evpub
}

@test "evsub prints the events whose topic matches any pattern, per SPEC's pattern table" {
	sub_bg "$BATS_TEST_TMPDIR/out" -n 5 -W 20 'case:created:*' 'case:*:7' 'wf:**'
	publish case:created case:created:7 case:created:7:x case:synced:7 case:synced:8 \
		wf cases:x wf:1:2 case:created:9
	wait "$SUB_PID"
	run jq -r .topic "$BATS_TEST_TMPDIR/out"
	assert_output "$(printf '%s\n' case:created:7 case:synced:7 wf wf:1:2 case:created:9)"
}

@test "evsub rejects invalid patterns with exit 2" {
	for p in 'a:**:b' 'c*' 'a::b' '' ':a'; do
		run -2 --separate-stderr evsub "$p"
		[[ ${stderr_lines[0]} == "evsub: invalid pattern '$p': "* ]] || fail "$p: $stderr"
	done
	run -2 evsub
}

@test "evsub --exclude drops matching topics" {
	sub_bg "$BATS_TEST_TMPDIR/out" -n 2 -W 20 --exclude 'a:secret:*' 'a:**'
	publish a:1 a:secret:1 a:2
	wait "$SUB_PID"
	assert_equal "$(jq -r .topic "$BATS_TEST_TMPDIR/out" | tr '\n' ' ')" "a:1 a:2 "
}

@test "evsub --event keeps only the named events (repeatable)" {
	sub_bg "$BATS_TEST_TMPDIR/out" -n 2 -W 20 --event create --event sync '**'
	printf '{"topic":"c","event":"%s"}\n' create update sync destroy | evpub
	wait "$SUB_PID"
	assert_equal "$(jq -r .event "$BATS_TEST_TMPDIR/out" | tr '\n' ' ')" "create sync "
}

@test "evsub --until prints the first such event and exits 0" {
	sub_bg "$BATS_TEST_TMPDIR/out" --until workflow_completed -W 20 'workflow:*'
	printf '{"topic":"workflow:1","event":"%s"}\n' step workflow_completed after | evpub
	wait "$SUB_PID"
	assert_equal "$(jq -r .event "$BATS_TEST_TMPDIR/out" | tr '\n' ' ')" "step workflow_completed "
}

@test "evsub -n exits 0 after N events" {
	sub_bg "$BATS_TEST_TMPDIR/out" -n 2 '**'
	publish a b c
	wait "$SUB_PID"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/out")" = 2 ]
}

@test "evsub -W exits 124 when --count was not reached, 0 when no count was asked" {
	run -124 evsub -n 1 -W 0.3 '**'
	run -0 evsub -W 0.3 '**'
	run -124 evsub --until never -W 0.3 '**'
	run -2 evsub -W soon '**'
}

@test "evsub --since replays retained events then continues live, no gap and no duplicate at the seam" {
	for i in $(seq 50); do echo "{\"topic\":\"s\",\"event\":\"e\",\"payload\":$i}"; done | evpub
	sub_bg "$BATS_TEST_TMPDIR/out" --since 20 -n 60 -W 30 '**'
	for i in $(seq 51 80); do echo "{\"topic\":\"s\",\"event\":\"e\",\"payload\":$i}"; done | evpub
	wait "$SUB_PID"
	run jq -s -c 'map(.payload) == [range(21;81)]' "$BATS_TEST_TMPDIR/out"
	assert_output true
}

@test "evsub --ready-file is created once subscribed: an event published right after is received" {
	for i in 1 2 3 4 5; do
		sub_bg "$BATS_TEST_TMPDIR/out$i" -n 1 -W 10 "r:$i"
		publish "r:$i"
		wait "$SUB_PID"
		assert_equal "$(jq -r .topic "$BATS_TEST_TMPDIR/out$i")" "r:$i"
	done
}

@test "evsub -o payload prints the payload JSON, -o text topic, event and payload" {
	evpub a:1 step '{"pct":50}'
	run -0 evsub --since 0 -n 1 -o payload '**'
	assert_output '{"pct":50}'
	run -0 evsub --since 0 -n 1 -o text '**'
	assert_output 'a:1 step {"pct":50}'
	run -2 evsub -o yaml '**'
}

@test "evsub --since rejects a negative or non-numeric seq" {
	run -2 evsub --since -1 '**'
	run -2 evsub --since x '**'
}

@test "a subscriber stopped during a 200,000-event burst receives all of them in order, once each" {
	seq 200000 | awk '{printf "{\"topic\":\"burst:%d\",\"event\":\"e\",\"payload\":{\"i\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n", $1 % 97, $1}' \
		>"$BATS_TEST_TMPDIR/burst"
	sub_bg "$BATS_TEST_TMPDIR/out" -n 200000 -W 120 -o payload '**'
	kill -STOP "$SUB_PID"
	evpub -f "$BATS_TEST_TMPDIR/burst"
	kill -CONT "$SUB_PID"
	wait "$SUB_PID"
	run -0 jq -s -c 'map(.i) == [range(1;200001)]' "$BATS_TEST_TMPDIR/out"
	assert_output true
	# The fan-out dropped frames while it was stopped; the log filled them in.
	# (On NATS the consumer's flow control holds the server back instead.)
	on_nats || (($(hub_status_field refilled_events) > 0))
}

@test "a subscriber stalled by SIGSTOP through a burst never goes back: no duplicate (issue 16.1)" {
	# Heartbeats queued while evsub was stopped carry older heads than
	# the log it refills from; taking one as "the hub started over" moved
	# evsub back and repeated events. The burst ends with 12 small
	# publishes over more than a heartbeat period (the pauses only spread
	# them out), so the stalled queue holds heartbeats between frames.
	seq 60000 | awk '{printf "{\"topic\":\"burst:%d\",\"event\":\"e\",\"payload\":{\"i\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n", $1 % 97, $1}' \
		>"$BATS_TEST_TMPDIR/burst"
	local round i
	for round in 1 2; do
		sub_bg "$BATS_TEST_TMPDIR/out" -n 60013 -W 120 -o payload '**'
		kill -STOP "$SUB_PID"
		evpub -f "$BATS_TEST_TMPDIR/burst"
		for i in $(seq 60001 60012); do
			evpub tail e "{\"i\":$i}"
			sleep 0.03
		done
		kill -CONT "$SUB_PID"
		# Let it read its whole queue (heartbeats too) before the marker.
		WAIT_SECS=120 wait_for lines_at_least "$BATS_TEST_TMPDIR/out" 60012
		evpub end end '{"i":"end"}'
		wait "$SUB_PID"
		run -0 jq -s -c '[length, (map(.i) | unique | length), (.[:-1] | map(.i) == [range(1;60013)]), .[-1].i]' "$BATS_TEST_TMPDIR/out"
		assert_output '[60013,60013,true,"end"]'
	done
}

@test "evsub reports a range no longer retained once on stderr and goes on" {
	stop_hub
	rm -f "$HUB_STORE"*
	start_hub --retain 10
	for i in $(seq 100); do echo "{\"topic\":\"g\",\"event\":\"e\",\"payload\":$i}"; done | evpub
	run -0 --separate-stderr evsub --since 0 -n 10 -o payload '**'
	assert_equal "$(echo $output)" "$(echo $(seq 91 100))"
	[[ $stderr == "evsub: gap: events 1-90 are no longer retained" ]] || fail "$stderr"
}

@test "evsub exits 69 naming the address when no hub is running" {
	stop_hub
	run -69 --separate-stderr evsub '**'
	[[ $stderr == "evsub: no hub at '$EVBUS_URL'"* ]]
}

@test "evsub exits promptly when its reader goes away" {
	for i in $(seq 20); do echo '{"topic":"p","event":"e"}'; done | evpub
	run -0 timeout 10 bash -c 'evsub --since 0 "**" | head -n 1 | wc -l; exit "${PIPESTATUS[0]}"'
	assert_output 1
}

@test "--bus overrides EVBUS_URL, and a hub on loopback tcp serves evpub and evsub" {
	local port=$((20000 + RANDOM % 20000)) url
	url="tcp://127.0.0.1:$port"
	evbusd --bus "$url" --memory --daemon --pidfile "$BATS_TEST_TMPDIR/tcp.pid"
	BG_PIDS+=("$(cat "$BATS_TEST_TMPDIR/tcp.pid")")
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/nothing-here"
	bg_to "$BATS_TEST_TMPDIR/got" evsub --bus "$url" --ready-file "$BATS_TEST_TMPDIR/ready" -n 1 -W 10 '**'
	local sub=${BG_PIDS[-1]}
	wait_file "$BATS_TEST_TMPDIR/ready"
	run -0 evpub --bus "$url" over tcp '{"ok":true}'
	wait "$sub"
	run jq -c '[.topic, .payload.ok]' "$BATS_TEST_TMPDIR/got"
	assert_output '["over",true]'
	run -69 evpub a b # EVBUS_URL: nothing there
}

@test "evsub -F with a template that renders nothing prints an empty line (issue 16.14, UBSan)" {
	evpub a b '{"x":1}'
	run -0 evsub --since 0 -n 1 -F '%{payload.missing}' '**'
	assert_output ''
	[ "${#lines[@]}" -eq 0 ]
	run -0 evsub --since 0 -n 1 -F '%{payload.missing}|%{payload.x}' '**'
	assert_output '|1'
}

@test "evsub --since/--latest --snapshot replays up to the head at the start and exits 0, however large the log (issue 18)" {
	# Several refills' worth (4096 events or 1 MiB per refill reply).
	seq 20000 | awk '{printf "{\"topic\":\"snap:%d\",\"event\":\"e\",\"payload\":{\"i\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n", $1 % 50, $1}' | evpub
	run -0 evsub --since 0 --snapshot -o payload '**'
	run jq -s -c 'map(.i) == [range(1;20001)]' <<<"$output"
	assert_output true
	run -0 evsub --since 19990 --snapshot -o payload 'snap:**'
	[ "${#lines[@]}" -eq 10 ]
	run -0 evsub --latest --snapshot -o payload 'snap:**'
	run jq -s -c 'map(.i) == [range(19951;20001)]' <<<"$output"
	assert_output true
	# Nothing to replay: at once, nothing printed.
	run -0 timeout 10 evsub --since 20000 --snapshot '**'
	assert_output ''
	# Events published after the start are not part of it.
	bg_to "$BATS_TEST_TMPDIR/snap" evsub --since 0 --snapshot -o payload 'snap:**'
	local snap=${BG_PIDS[-1]}
	evpub snap:new e '{"i":0}'
	wait "$snap"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/snap")" -ge 20000 ]
	[ "$(wc -l <"$BATS_TEST_TMPDIR/snap")" -le 20001 ]
	run -2 evsub --snapshot '**'
}
