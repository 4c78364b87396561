#!/usr/bin/env bats
# The habits users bring from mosquitto_sub, jq and git (issue 18): '-' is
# stdin, a plain-text payload is easy, a pattern error says why and an
# MQTT or NATS pattern gets evkit's spelling.  Uses evkit's own bats
# library for the event assertions.
load helpers
load ../share/bats/load

setup() { evkit_setup; }
teardown() { evkit_teardown; }

@test "evpub -f - reads the JSON lines from stdin" {
	evkit_listen 'demo:*'
	run -0 --separate-stderr evpub -f - <<<'{"topic":"demo:a","event":"tick","payload":{"n":1}}'
	assert_event demo:a tick --payload '.n == 1'
	run -0 evpub -t demo:b -e line -f - <<<'{"n":2}'
	assert_event demo:b line --payload '.n == 2'
}

@test "evpub -f - names stdin in a bad-line message" {
	run -65 --separate-stderr evpub -f - <<<'{oops'
	[[ $stderr == "evpub: stdin:1: "* ]]
}

@test "evpub TOPIC EVENT --raw TEXT publishes TEXT as a JSON string" {
	evkit_listen 'demo:*'
	run -0 evpub --echo demo:x tick --raw 'hello'
	[ "$(jq -c .payload <<<"$output")" = '"hello"' ]
	evpub --raw 'say "hi"\' demo:y tick
	assert_event demo:x tick --payload '. == "hello"'
	assert_event demo:y tick --payload '. == "say \"hi\"\\"'
}

@test "evpub --raw with a JSON payload too, or without TOPIC EVENT, is a usage error" {
	run -2 --separate-stderr evpub --raw x demo:x tick '{}'
	[[ $stderr == *"--raw TEXT is the payload of TOPIC EVENT, given a PAYLOAD_JSON too"* ]]
	run -2 --separate-stderr evpub --raw x
	[[ $stderr == *"--raw TEXT is the payload of TOPIC EVENT"* ]]
}

@test "a pattern error says why" {
	run -2 --separate-stderr evsub -W 1 'case:**:x'
	[ "$stderr" = "evsub: invalid pattern 'case:**:x': '**' may only end a pattern" ]
	run -2 --separate-stderr evsub -W 1 'case:created*'
	[ "$stderr" = "evsub: invalid pattern 'case:created*': '*' must be a whole segment" ]
	run -2 --separate-stderr evsub -W 1 --exclude 'a::b' '**'
	[[ $stderr == *"'a::b': empty segment"* ]]
	run -2 --separate-stderr evworker --db "$BATS_TEST_TMPDIR/j.db" on 'x:**:y' -- true
	[ "$stderr" = "evworker: invalid pattern 'x:**:y': '**' may only end a pattern" ]
}

@test "an MQTT or NATS pattern gets a hint with the evkit spelling" {
	run -0 --separate-stderr evsub -W 0.1 'sensors/#'
	[ "$stderr" = "evsub: 'sensors/#' looks like an MQTT pattern; evkit spells it 'sensors:**'" ]
	run -0 --separate-stderr evsub -W 0.1 'home/+/temp'
	[[ $stderr == *"evkit spells it 'home:*:temp'"* ]]
	run -0 --separate-stderr evsub -W 0.1 'orders.>'
	[ "$stderr" = "evsub: 'orders.>' looks like a NATS pattern; evkit spells it 'orders:**'" ]
	run -2 --separate-stderr evsub -W 0.1 'orders.*'
	[ "$stderr" = "evsub: invalid pattern 'orders.*': '*' must be a whole segment (a NATS pattern? evkit spells it 'orders:*')" ]
	run -0 --separate-stderr evsub -W 0.1 'case:#'
	[[ $stderr == *"evkit spells it 'case:**'"* ]]
	# A plain pattern says nothing.
	run -0 --separate-stderr evsub -W 0.1 'a.b.c' 'case:*:7'
	[ -z "$stderr" ]
}
