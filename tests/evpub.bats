#!/usr/bin/env bats
# evpub: publish from arguments or JSON lines; exit 0 only when acknowledged.
load helpers

setup() { start_hub; }
teardown() { stop_all; }

# collect N [ARGS] — subscribes (ready before returning) and writes what it
# receives to $BATS_TEST_TMPDIR/got.
collect() {
	local n=$1; shift
	rm -f "$BATS_TEST_TMPDIR/ready"
	bg_to "$BATS_TEST_TMPDIR/got" evsub --ready-file "$BATS_TEST_TMPDIR/ready" -n "$n" -W 30 "$@" '**'
	SUB_PID=${BG_PIDS[-1]}
	wait_file "$BATS_TEST_TMPDIR/ready"
}

@test "evpub TOPIC EVENT PAYLOAD publishes one event and exits 0" {
	collect 1
	run -0 evpub case:created:7 create '{"id":7}'
	wait "$SUB_PID"
	run jq -c '[.topic, .event, .payload, (.seq|type), (.ts|test("^[0-9-]+T[0-9:.]+Z$"))]' \
		"$BATS_TEST_TMPDIR/got"
	assert_output '["case:created:7","create",{"id":7},"number",true]'
}

@test "evpub without a payload publishes {}" {
	run -0 evpub --echo a b
	[ "$(jq -c .payload <<<"$output")" = '{}' ]
}

@test "evpub rejects an invalid topic or event name as a usage error" {
	run -2 --separate-stderr evpub 'a::b' e
	assert [ "$stderr" = "evpub: invalid topic 'a::b'"$'\n'"Try 'evpub --help' for more information." ]
	run -2 evpub a 'e e'
	run -2 evpub -t 'a*' -e e
}

@test "evpub rejects an argument payload that is not JSON with 65" {
	run -65 --separate-stderr evpub a e '{oops'
	[[ $stderr == "evpub: payload: invalid JSON"* ]]
}

@test "evpub refuses raw control bytes in JSON (a raw TAB in a string, a form feed after a value) with 65" {
	# Found by tests/fuzz (fuzz_event): cJSON takes them, jq and RFC 8259 do not.
	run -65 --separate-stderr evpub a e $'{"x":"a\tb"}'
	[[ $stderr == *"invalid JSON"*"column 8"* ]]
	printf '{"topic":"a","event":"e","payload":{}\f}\n' >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr evpub -f "$BATS_TEST_TMPDIR/in"
	[[ $stderr == *":1: invalid JSON"* ]]
	run -0 evpub --echo a e $'{"x":"a\\tb",\t"y":1}'
	[ "$(jq -c .payload <<<"$output")" = '{"x":"a\tb","y":1}' ]
}

@test "1000 events from stdin arrive in order with strictly increasing seq, and --since 0 replays them" {
	collect 1000
	for i in $(seq 1000); do printf '{"topic":"n:%d","event":"e","payload":{"i":%d}}\n' "$i" "$i"; done |
		evpub
	wait "$SUB_PID"
	run -0 jq -s -c '[length, (map(.payload.i) == [range(1;1001)]),
		([.[0:-1], .[1:]] | transpose | all(.[0].seq < .[1].seq))]' "$BATS_TEST_TMPDIR/got"
	assert_output '[1000,true,true]'
	run -0 bash -c 'evsub --since 0 -n 1000 "**" | jq -s -c "map(.payload.i) == [range(1;1001)]"'
	assert_output true
}

@test "evpub -f FILE reads the lines of FILE; a missing file exits 74" {
	printf '{"topic":"f","event":"one"}\n{"topic":"f","event":"two"}\n' >"$BATS_TEST_TMPDIR/in"
	run -0 evpub --echo -f "$BATS_TEST_TMPDIR/in"
	assert_equal "$(jq -r .event <<<"$output" | tr '\n' ' ')" "one two "
	run -74 --separate-stderr evpub -f "$BATS_TEST_TMPDIR/nope"
	[[ $stderr == "evpub: cannot open '$BATS_TEST_TMPDIR/nope'"* ]]
}

@test "evpub -t TOPIC -e EVENT takes each line as a payload" {
	run -0 --separate-stderr bash -c 'printf "{\"p\":1}\n[2]\n\"three\"\n" | evpub --echo -t w:1 -e step_progress'
	run -0 jq -s -c 'map([.topic,.event,.payload])' <<<"$output"
	assert_output '[["w:1","step_progress",{"p":1}],["w:1","step_progress",[2]],["w:1","step_progress","three"]]'
}

@test "evpub keeps a ts given in the input, normalised to microseconds" {
	run -0 bash -c 'echo "{\"topic\":\"t\",\"event\":\"e\",\"ts\":\"2026-01-02T03:04:05Z\"}" | evpub --echo'
	[ "$(jq -r .ts <<<"$output")" = "2026-01-02T03:04:05.000000Z" ]
}

@test "evpub reports each bad line with its number, publishes the good ones and exits 65" {
	{
		echo '{"topic":"ok","event":"e","payload":1}'
		echo '{"topic":"ok","event":'                       # 2 invalid JSON
		echo '{"topic":"bad topic","event":"e"}'             # 3 bad topic
		echo '{"topic":"ok","event":"e","colour":"red"}'     # 4 unknown field
		printf '{"topic":"ok","event":"e","payload":"%s"}\n' "$(head -c 1100000 /dev/zero | tr '\0' x)" # 5 > 1 MiB
		printf '{"topic":"ok","event":"e","payload":"a\0b"}\n' # 6 NUL byte
		printf '{"topic":"ok","event":"e","payload":"\xff"}\n' # 7 invalid UTF-8
		echo '{"topic":"ok","event":"e","payload":8}'
	} >"$BATS_TEST_TMPDIR/mixed"
	run -65 --separate-stderr evpub --echo -f "$BATS_TEST_TMPDIR/mixed"
	assert_equal "$(jq -c .payload <<<"$output" | tr '\n' ' ')" "1 8 "
	for n in 2 3 4 5 6 7; do
		[[ $stderr == *"evpub: $BATS_TEST_TMPDIR/mixed:$n: "* ]] || fail "line $n not reported: $stderr"
	done
	[[ $stderr == *":2: invalid JSON"* && $stderr == *":3: invalid topic"* &&
	   $stderr == *":4: unknown field 'colour'"* && $stderr == *":5: line longer than"* &&
	   $stderr == *":6: NUL byte"* && $stderr == *":7: invalid UTF-8"* ]] || fail "$stderr"
	[ "$(hub_status_field head_seq)" = 2 ]
}

@test "evpub --strict stops at the first bad line and keeps what came before" {
	printf '{"topic":"a","event":"e"}\nnot json\n{"topic":"a","event":"e"}\n' >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr evpub --strict <"$BATS_TEST_TMPDIR/in"
	[[ $stderr == *"stdin:2: invalid JSON"* ]]
	[ "$(hub_status_field head_seq)" = 1 ]
}

@test "evpub --max-line sets the longest line accepted" {
	printf '{"topic":"a","event":"e","payload":"0123456789"}\n' >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr evpub --max-line 20 <"$BATS_TEST_TMPDIR/in"
	[[ $stderr == *"stdin:1: line longer than 20 bytes"* ]]
	run -2 evpub --max-line 0
}

@test "evpub --echo prints each acknowledged event with its seq" {
	run -0 bash -c 'printf "{\"topic\":\"a\",\"event\":\"e\"}\n%.0s" 1 2 3 | evpub --echo'
	assert_equal "$(jq -r .seq <<<"$output" | tr '\n' ' ')" "1 2 3 "
}

@test "evpub exits 69 within 5 s naming the address when no hub is running" {
	stop_hub
	SECONDS=0
	run -69 --separate-stderr evpub a e
	((SECONDS <= 5))
	assert [ "$stderr" = "evpub: no hub at '$EVBUS_URL'" ]
	run -69 evpub --bus "ipc://$BATS_TEST_TMPDIR/none" a e
}

@test "evpub rejects a bus address with an unknown scheme" {
	run -2 --separate-stderr evpub --bus http://x a e
	[[ $stderr == *"must start with ipc://, tcp://"* ]]
}

@test "evpub refuses raw control bytes inside JSON strings with 65 (RFC 8259), and stores none (issue 16.9)" {
	run -65 --separate-stderr evpub a:b m $'{"x":"a\x01b"}'
	[[ $stderr == *"raw control byte at column 8 in a string"* ]] || fail "$stderr"
	run -65 --separate-stderr evpub a:b m $'{"x":"\x1b[2J"}'
	run -65 --separate-stderr evpub a:b m $'"tab\there"'
	run -65 --separate-stderr evpub a:b m $'"del\x7f"'
	run -65 --separate-stderr evpub a:b m $'"csi\xc2\x9b2J"'
	printf '{"topic":"a","event":"b","payload":{"x":"\x1b]0;pwned\x07"}}\n{"topic":"a","event":"b","payload":{"x":"ok\\u001b"}}\n' \
		>"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr evpub -f "$BATS_TEST_TMPDIR/in"
	[[ $stderr == *"in:1: invalid JSON: raw control byte at column "*" in a string"* ]] || fail "$stderr"
	# Escaped, the same characters are fine; every stored line is JSON.
	run -0 evsub --since 0 -n 1 -o json '**'
	jq -e '.payload.x == "ok\u001b"' <<<"$output"
	[ "$(hub_status_field head_seq)" -eq 1 ]
}

@test "evpub publishes a valid multi-line JSON argument or -t/-e line on one line (issue 16.10)" {
	run -0 evpub --echo a:b m $'{"x":\n 1,\n\t"y": [1,\n 2]}'
	jq -e -c '.payload == {"x":1,"y":[1,2]}' <<<"$output"
	run -0 evsub --since 0 -n 1 '**'
	[ "${#lines[@]}" -eq 1 ]
	jq -e '.payload.y == [1,2]' <<<"$output"
}

@test "a number beyond a double is refused with 65 wherever it is, with or without ts (issue 16.11)" {
	run -65 --separate-stderr evpub a:b m '{"x":1e999}'
	[[ $stderr == *"number out of range"* ]] || fail "$stderr"
	printf '%s\n' '{"topic":"a","event":"b","payload":{"x":1e999}}' \
		'{"topic":"a","event":"b","payload":{"x":-1e999},"ts":"2026-01-01T00:00:00Z"}' \
		'{"topic":"a","event":"b","payload":[1e400]}' >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr evpub -f "$BATS_TEST_TMPDIR/in"
	[ "$(grep -c 'number out of range' <<<"$stderr")" -eq 3 ]
	echo '1e999' | run -65 evpub -t a -e b
	# Numbers that fit keep their spelling; invalid spellings are refused.
	run -0 evpub --echo a:b m '{"x":1.0e2,"y":-0.5E-3}'
	jq -e '.payload.x == 100' <<<"$output"
	run -65 evpub a:b m '{"x":01}'
	run -65 evpub a:b m '{"x":1.}'
	run -65 evpub a:b m '{"x":-.5}'
	[ "$(hub_status_field head_seq)" -eq 1 ]
}
