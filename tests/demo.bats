#!/usr/bin/env bats
# The demo that `make demo` runs: a workflow, cases and widgets, live; it
# ends by itself and cleans up after itself.
load helpers

setup() {
	export TMPDIR=$BATS_TEST_TMPDIR/tmp
	mkdir "$TMPDIR"
}
teardown() {
	[[ -n ${TMUX_SESSION:-} ]] && tmux kill-session -t "$TMUX_SESSION" 2>/dev/null
	stop_all
}

@test "the demo runs the workflow to 100%, ingests the cases, shows the widgets and leaves nothing behind" {
	run -0 --separate-stderr env -u EVBUS_URL bash "$BATS_TEST_DIRNAME/../examples/demo.sh" 3>&-
	assert_output --partial "== workflow demo: completed, 100%"
	assert_output --partial "== cases: 11 ingested"
	assert_line --regexp '^  widget:progress-demo  widget_updated  [0-9.]+ '
	assert_line --regexp '^  widget:result-demo  widget_updated  100  completed'
	assert_line --regexp '^  widget:recent-cases  widget_updated'
	# No temporary directory and no process of the demo is left.
	run ls -A "$TMPDIR"
	assert_output ''
	run pgrep -f "$TMPDIR/evkit-demo"
	assert_failure
}

@test "the demo cleans up when stopped half-way (SIGTERM; Ctrl-C takes the same path)" {
	env -u EVBUS_URL bash "$BATS_TEST_DIRNAME/../examples/demo.sh" >"$BATS_TEST_TMPDIR/out" 2>&1 3>&- &
	local demo=$!
	wait_for grep -q "widget:progress-demo" "$BATS_TEST_TMPDIR/out"
	kill -TERM "$demo"
	local rc=0
	wait "$demo" || rc=$?
	[ "$rc" -ne 0 ]
	wait_for bash -c "[ -z \"\$(ls -A '$TMPDIR')\" ]"
	run pgrep -f "$TMPDIR/evkit-demo"
	assert_failure
}

@test "make demo on a terminal (tmux) shows the live dashboard" {
	TMUX_SESSION=evkit-demo-$$
	tmux new-session -d -s "$TMUX_SESSION" -x 110 -y 40 \
		"cd '$BATS_TEST_DIRNAME/..' && TMPDIR='$TMPDIR' make --no-print-directory demo; echo DEMO-EXIT=\$?; sleep 30"
	WAIT_SECS=60 wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | grep -q 'progress-demo .*\\[#'"
	WAIT_SECS=60 wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | grep -q 'DEMO-EXIT=0'"
	run tmux capture-pane -p -t "$TMUX_SESSION"
	assert_output --partial "== workflow demo: completed, 100%"
}
