#!/usr/bin/env bats
# evsub's stream operators: throttle, debounce, batch, templates, latest, stats.
load helpers

setup() { start_hub; }
teardown() { stop_all; }

# burst TOPIC N — N events {"i":1..N} on TOPIC in one evpub (one frame).
burst() {
	seq 1 "$2" | awk '{ print "{\"i\":" $1 "}" }' | evpub -t "$1" -e tick
}

# has_line FILE JQ-FILTER — true once some line of FILE matches.
has_line() { jq -e -s "any(.[]; $2)" "$1" >/dev/null 2>&1; }

@test "evsub --throttle 500 prints 1 to 10 events of a 200-event burst, the last one last; keys are independent" {
	local out=$BATS_TEST_TMPDIR/out
	sub_bg "$out" --throttle 500 'k:**'
	{ seq 1 200 | awk '{ print "{\"topic\":\"k:a\",\"event\":\"tick\",\"payload\":{\"i\":" $1 "}}";
	                     print "{\"topic\":\"k:b\",\"event\":\"tick\",\"payload\":{\"i\":" $1 "}}" }'; } | evpub
	wait_for has_line "$out" '.topic == "k:a" and .payload.i == 200'
	wait_for has_line "$out" '.topic == "k:b" and .payload.i == 200'
	local key n last
	for key in k:a k:b; do
		n=$(jq -s --arg k "$key" 'map(select(.topic == $k)) | length' "$out")
		last=$(jq -s --arg k "$key" 'map(select(.topic == $k)) | last | .payload.i' "$out")
		((n >= 1 && n <= 10)) || fail "$key: $n events printed"
		[ "$last" -eq 200 ]
	done
}

@test "evsub --throttle-key topic throttles all events of a topic together" {
	local out=$BATS_TEST_TMPDIR/out
	sub_bg "$out" --throttle 400 --throttle-key topic 'k:**'
	{ seq 1 100 | awk '{ print "{\"topic\":\"k:a\",\"event\":\"e" ($1 % 5) "\",\"payload\":{\"i\":" $1 "}}" }'; } | evpub
	wait_for has_line "$out" '.payload.i == 100'
	n=$(wc -l <"$out")
	((n >= 1 && n <= 10)) || fail "$n events printed"
	run -2 evsub --throttle 10 --throttle-key nope '**'
}

@test "evsub --debounce 300 prints exactly one event per key of a burst, the last" {
	local out=$BATS_TEST_TMPDIR/out
	sub_bg "$out" --debounce 300 'k:**'
	burst k:a 50
	burst k:b 70
	wait_for has_line "$out" '.topic == "k:a"'
	wait_for has_line "$out" '.topic == "k:b"'
	kill -TERM "$SUB_PID"
	wait "$SUB_PID"
	run jq -s -c 'map([.topic, .payload.i]) | sort' "$out"
	assert_output '[["k:a",50],["k:b",70]]'
}

@test "evsub --batch 200 prints JSON arrays holding the 500 events in order, each once" {
	local out=$BATS_TEST_TMPDIR/out
	sub_bg "$out" --batch 200 -n 500 -W 30 'b:**'
	burst b:x 500
	wait "$SUB_PID"
	run jq -e -c 'type == "array" and length > 0' "$out"
	refute_output --partial false
	run jq -c -s '[.[][] | .payload.i] == [range(1; 501)]' "$out"
	assert_output true
}

@test "evsub --batch-size 100 over 500 events prints exactly 5 arrays of 100" {
	burst b:x 500
	run -0 evsub --since 0 --batch-size 100 -o payload -n 500 -W 30 'b:**'
	run jq -c 'length' <<<"$output"
	assert_output $'100\n100\n100\n100\n100'
}

@test "evsub --batch refuses text formats" {
	run -2 --separate-stderr evsub --batch 100 -o text '**'
	[[ $stderr == *"--batch"* ]]
}

@test "evsub -F prints each documented field; a missing field is empty; quotes and newlines stay escaped" {
	evpub f:1 done '{"msg":"say \"hi\"\nthere","n":[1,{"x":2}],"pct":50}'
	run -0 evsub --since 0 -n 1 -F '%s|%t|%e|%T|%{payload.pct}|%{payload.msg}|%{payload.n.1.x}|%{payload.none}|%%|%p\t!' 'f:**'
	local seq ts
	seq=$(evsub --since 0 -n 1 'f:**' | jq .seq)
	ts=$(evsub --since 0 -n 1 'f:**' | jq -r .ts)
	assert_output "$seq|f:1|done|$ts|50|say \\\"hi\\\"\\nthere|2||%|{\"msg\":\"say \\\"hi\\\"\\nthere\",\"n\":[1,{\"x\":2}],\"pct\":50}	!"
	[ "${#lines[@]}" -eq 1 ]
	run -2 evsub -F '%q' '**'
	run -2 evsub -F '%{pay.x}' '**'
}

@test "evsub -o payload prints valid JSON per line, -o tsv five tab-separated fields" {
	evpub p:1 e '{"a":"x\ty","b":[1,2]}'
	evpub p:1 e '"just a string"'
	evpub p:1 e '3.5'
	run -0 evsub --since 0 -n 3 -o payload 'p:**'
	run jq -c . <<<"$output"
	assert_output $'{"a":"x\\ty","b":[1,2]}\n"just a string"\n3.5'
	run -0 evsub --since 0 -n 1 -o tsv 'p:**'
	[ "$(awk -F '\t' '{ print NF }' <<<"$output")" -eq 5 ]
	[ "$(cut -f 3,4 <<<"$output")" = $'p:1\te' ]
}

@test "evsub --latest --since 0 prints the newest event of each topic, then live events" {
	local i
	for i in 1 2 3; do
		evpub "t:$i" e "{\"v\":$i}"
		evpub "t:$i" e "{\"v\":$((i * 10))}"
	done
	local out=$BATS_TEST_TMPDIR/out
	sub_bg "$out" --latest --since 0 -n 4 -W 30 't:**'
	evpub t:1 e '{"v":100}'
	wait "$SUB_PID"
	run jq -c '[.topic, .payload.v]' "$out"
	assert_output $'["t:1",10]\n["t:2",20]\n["t:3",30]\n["t:1",100]'
}

@test "evsub --stats counts add up: received = printed + throttled" {
	local out=$BATS_TEST_TMPDIR/out
	sub_bg "$out" --throttle 300 --stats 's:**'
	burst s:a 300
	evpub other:x e
	wait_for has_line "$out" '.payload.i == 300'
	kill -USR1 "$SUB_PID"
	wait_for grep -q received "$out.err"
	kill -TERM "$SUB_PID"
	wait "$SUB_PID"
	run jq -c -s 'last | [.received, .printed + .throttled + .pending, .filtered, .received > .printed]' "$out.err"
	assert_output '[300,300,1,true]'
	[ "$(wc -l <"$out")" -eq "$(jq -s 'last | .printed' "$out.err")" ]
}

@test "operators compose: --since 0 --event --throttle -F" {
	{ seq 0 25 100 | awk '{ print "{\"topic\":\"process:p1\",\"event\":\"step_progress\",\"payload\":{\"percentage\":" $1 "}}" }'
	  echo '{"topic":"process:p1","event":"step_started","payload":{}}'; } | evpub
	run -0 evsub --since 0 --event step_progress --throttle 500 -F '%t %{payload.percentage}' -n 2 -W 30 'process:*'
	assert_output $'process:p1 0\nprocess:p1 100'
}
