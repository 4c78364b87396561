#!/usr/bin/env bats
# Every example in examples/ and every README block marked runnable, run
# as they are.
load helpers

setup() {
	start_hub
	T=$BATS_TEST_TMPDIR
	EX=$BATS_TEST_DIRNAME/../examples
	export XDG_STATE_HOME=$T/state CASECTL_ACTOR=me
}
teardown() { stop_all; }

@test "examples/cron-enqueue.sh enqueues once per window" {
	run -0 "$EX/cron-enqueue.sh" touch "$T/done"
	local id
	id=$(jq .id <<<"$output")
	run -0 "$EX/cron-enqueue.sh" touch "$T/done"
	[ "$(jq .id <<<"$output")" -eq "$id" ]
	evworker run --queue cron --drain 2>/dev/null
	[ -e "$T/done" ]
}

@test "examples/scrape-to-casectl.sh ingests a CSV export and announces each case" {
	casectl init --admin me >/dev/null
	bg_to "$T/events" evsub --ready-file "$T/ready" -n 3 -W 10 'case:created'
	local sub=${BG_PIDS[-1]}
	wait_file "$T/ready"
	run -0 --separate-stderr "$EX/scrape-to-casectl.sh" "$EX/export.csv"
	[ "$stderr" = "casectl: ingested 3: 3 created, 0 synced, 0 rejected" ]
	wait "$sub"
	run jq -r .payload.data.case_reference "$T/events"
	assert_output $'HSE/2024/0301\nEA/2024/NW/090\nHSE/2024/0317'
}

@test "examples/wait-for-workflow.sh exits 0 on completion and 1 on failure" {
	echo '[{"name":"only","run":["true"]}]' >"$T/ok.json"
	echo '[{"name":"only","run":["false"]}]' >"$T/bad.json"
	evworker run 2>/dev/null &
	BG_PIDS+=("$!")
	run -0 "$EX/wait-for-workflow.sh" "$T/ok.json" wf-ok 30
	# A failing job is retried; with one attempt it fails for good.
	run -1 "$EX/wait-for-workflow.sh" "$T/bad.json" wf-bad 30 --max-attempts 1
	[ "$(evworker list --state discarded | jq -r .workflow_id)" = wf-bad ]
}

@test "examples/myproject.bats, a bats test of someone else's project, passes" {
	EVKIT_BATS_LIB=$BATS_TEST_DIRNAME/../share/bats/load run -0 bats "$EX/myproject.bats"
}

@test "every README block marked runnable runs and succeeds" {
	local readme=$BATS_TEST_DIRNAME/../README.md n=0
	awk '/<!-- runnable/ { grab = 1; next } grab && /^```sh/ { inside = 1; next }
	     inside && /^```/ { inside = 0; grab = 0; n++; next }
	     inside { print > ("'"$T"'/block" n ".sh") }' "$readme"
	for b in "$T"/block*.sh; do
		n=$((n + 1))
		mkdir "$b.dir"
		(cd "$b.dir" && unset EVBUS_URL && timeout 30 bash -e "$b") >"$b.out" 2>&1 ||
			fail "$(basename "$b") failed: $(cat "$b.out")"
	done
	((n >= 1))
}
