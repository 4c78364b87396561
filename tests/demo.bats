#!/usr/bin/env bats
# The demo that `make demo` runs: ends by itself, cleans up after itself.
load helpers

@test "examples/demo.sh ingests the sample cases, shows them live and leaves nothing behind" {
	export TMPDIR=$BATS_TEST_TMPDIR/tmp
	mkdir "$TMPDIR"
	run -0 --separate-stderr env -u EVBUS_URL bash "$BATS_TEST_DIRNAME/../examples/demo.sh" 3>&-
	assert_output --partial "demo: 11 cases ingested; done."
	assert_output --partial "case:created  create  HSE/2024/0117"
	assert_output --partial "case:synced  sync  HSE/2024/0117"
	assert_output --partial "progress 100%"
	assert_output --partial "keep_live: 6 hse cases"
	[[ $stderr == *"ingested 12: 11 created, 1 synced, 0 rejected"* ]]
	# No temporary directory and no process of the demo is left.
	run ls -A "$TMPDIR"
	assert_output ''
	run pgrep -f "$TMPDIR/evkit-demo"
	assert_failure
}

@test "the demo cleans up when stopped half-way (SIGTERM; Ctrl-C takes the same path)" {
	export TMPDIR=$BATS_TEST_TMPDIR/tmp
	mkdir "$TMPDIR"
	env -u EVBUS_URL bash "$BATS_TEST_DIRNAME/../examples/demo.sh" >"$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
	local demo=$!
	wait_for grep -q "scraper pipeline" "$BATS_TEST_TMPDIR/out"
	kill -TERM "$demo"
	local rc=0
	wait "$demo" || rc=$?
	[ "$rc" -ne 0 ]
	wait_for bash -c "[ -z \"\$(ls -A '$TMPDIR')\" ]"
	run pgrep -f "$TMPDIR/evkit-demo"
	assert_failure
}
