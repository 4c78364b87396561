#!/usr/bin/env bats
# lib/opts.c as the programs use it: a file is read whole or refused with a
# reason, never cut (widgetd and evworker read 1 MiB and cut the rest).
load helpers

setup() { T=$BATS_TEST_TMPDIR; }

@test "widgetd reads a config past 1 MiB whole: the widget at its end is checked" {
	{ printf '%*s' 1300000 ''; echo '{"widgets":[{"id":"x","type":"pie"}]}'; } >"$T/big.json"
	run -65 --separate-stderr widgetd --state "$T/w.db" --config "$T/big.json"
	[[ $stderr == *"unknown type 'pie'"* ]] || fail "$stderr"
}

@test "widgetd refuses a config past 64 MiB, and says why; a directory is 74" {
	truncate -s 70M "$T/huge.json"
	run -65 --separate-stderr widgetd --state "$T/w.db" --config "$T/huge.json"
	[ "$stderr" = "widgetd: config $T/huge.json: longer than 67108864 bytes" ]
	run -74 --separate-stderr widgetd --state "$T/w.db" --config "$T"
	[[ $stderr == *"Is a directory"* ]] || fail "$stderr"
}

@test "evworker reads a steps file past 1 MiB whole" {
	{ printf '%*s' 1300000 ''; echo '[{"name":"late","run":["true"]}]'; } >"$T/big.json"
	run -0 evworker --db "$T/jobs.db" enqueue --steps "$T/big.json"
	[ "$(jq -r '.steps[0].name' <<<"$output")" = late ]
}
