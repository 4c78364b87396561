#!/usr/bin/env bats
# evbusd: the hub — numbering, the durable log, retention, daemon life cycle.
load helpers

# On NATS the hub is nats-server: the tests of evbusd itself (its options,
# store file, status figures, protocol and life cycle) are skipped there,
# each saying so; the bus's promises (seq across restarts, replay, nothing
# acknowledged lost) run on both.
teardown() { stop_all; }

# events N [TOPIC] — N JSON-lines events on stdout.
events() {
	# awk: a bash loop under bats' debug trap takes seconds per 10,000 lines
	awk -v n="$1" -v t="${2:-t:a}" 'BEGIN {
		for (i = 1; i <= n; i++)
			printf "{\"topic\":\"%s\",\"event\":\"tick\",\"payload\":{\"i\":%d}}\n", t, i
	}'
}

@test "evbusd --daemon returns once accepting; the pidfile names it; SIGTERM removes it" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	run -0 evpub a b
	[ "$HUB_PID" -gt 1 ]
	kill -0 "$HUB_PID"
	kill -TERM "$HUB_PID"
	wait_for gone "$HUB_PID"
	HUB_PID=
	[ ! -e "$BATS_TEST_TMPDIR/hub.pid" ]
}

@test "evbusd in the foreground exits 0 on SIGTERM and on SIGINT" {
	evbusd_only "a test of the evbusd program itself"
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus"
	local sig
	for sig in TERM INT; do
		evbusd --store "$BATS_TEST_TMPDIR/bus.db" &
		local pid=$!
		WAIT_SECS=10 wait_for evbusd --status
		kill "-$sig" "$pid"
		local rc=0
		wait "$pid" || rc=$?
		[ "$rc" -eq 0 ]
	done
}

@test "evbusd --status prints the hub's figures as JSON" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	events 3 | evpub
	run -0 evbusd --status
	run jq -c '[.head_seq, .oldest_seq, .events_in, (.subscribers|type)]' <<<"$output"
	assert_output '[3,1,3,"number"]'
}

@test "evbusd --status exits 69 naming the address when no hub runs" {
	evbusd_only "a test of the evbusd program itself"
	run -69 --separate-stderr evbusd --status --bus "ipc://$BATS_TEST_TMPDIR/none"
	assert [ -z "$output" ]
	[[ $stderr == *"ipc://$BATS_TEST_TMPDIR/none"* ]]
}

@test "seq goes on after a restart on the same store, and --since 0 replays the old events" {
	start_hub
	events 5 | evpub
	stop_hub
	start_hub
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq 6 ]
	run -0 evsub --since 0 -n 6 -W 10 '**'
	run jq -s -c 'map(.seq)' <<<"$output"
	assert_output '[1,2,3,4,5,6]'
}

@test "--since N replays from N+1 exactly, also from inside what one publish stored" {
	start_hub
	events 300 | evpub
	local n
	for n in 0 1 37 63 64 65 200 296; do
		run -0 evsub --since "$n" -n 3 -W 10 '**'
		run jq -s -c 'map(.seq)' <<<"$output"
		assert_output "[$((n + 1)),$((n + 2)),$((n + 3))]"
	done
	run -0 evsub --since 297 -n 3 -W 10 '**'
	[ "$(jq -s -c 'map(.payload.i)' <<<"$output")" = '[298,299,300]' ]
}

@test "a log of evbusd 0.1 (a row per event) is upgraded: its events replay and seq goes on" {
	evbusd_only "a test of the evbusd program itself"
	sqlite3 "$BATS_TEST_TMPDIR/bus.db" <<-'SQL'
		CREATE TABLE events (seq INTEGER PRIMARY KEY, line BLOB NOT NULL);
		CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
		INSERT INTO meta VALUES ('head', 3);
		INSERT INTO events VALUES
		  (2, CAST('{"seq":2,"ts":"2026-11-20T10:00:00.000000Z","topic":"old:a","event":"e","payload":{"n":2}}' AS BLOB)),
		  (3, CAST('{"seq":3,"ts":"2026-11-20T10:00:01.000000Z","topic":"old:b","event":"e","payload":{"n":3}}' AS BLOB));
		PRAGMA user_version = 1;
	SQL
	start_hub
	[ "$(hub_status_field head_seq)" -eq 3 ]
	[ "$(hub_status_field oldest_seq)" -eq 2 ]
	run -0 evpub --echo new:c e
	[ "$(jq .seq <<<"$output")" -eq 4 ]
	run -0 --separate-stderr evsub --since 0 -n 3 -W 10 '**'
	[ "$stderr" = "evsub: gap: event 1 is no longer retained" ]
	run jq -s -c 'map([.seq, .topic])' <<<"$output"
	assert_output '[[2,"old:a"],[3,"old:b"],[4,"new:c"]]'
	[ "$(sqlite3 "$BATS_TEST_TMPDIR/bus.db" 'PRAGMA user_version')" -eq 2 ]
}

@test "evbusd --memory keeps no file and starts from seq 1 each time" {
	evbusd_only "a test of the evbusd program itself"
	start_hub --memory
	events 4 | evpub
	[ "$(hub_status_field head_seq)" -eq 4 ]
	stop_hub
	start_hub --memory
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq 1 ]
	run ls "$BATS_TEST_TMPDIR"
	refute_output --partial bus.db
}

@test "evbusd --retain N keeps about the newest N events" {
	evbusd_only "a test of the evbusd program itself"
	start_hub --retain 100
	events 1000 | evpub
	local head oldest
	head=$(hub_status_field head_seq)
	oldest=$(hub_status_field oldest_seq)
	[ "$head" -eq 1000 ]
	# At least N, and at most N plus the trim slack (N/16).
	(( head - oldest + 1 >= 100 && head - oldest + 1 <= 100 + 100 / 16 + 1 ))
	# What is kept replays whole, oldest to head.
	run -0 --separate-stderr evsub --since 0 -n $((head - oldest + 1)) -W 10 '**'
	run jq -s -c '[first.seq, last.seq, length]' <<<"$output"
	assert_output "[$oldest,$head,$((head - oldest + 1))]"
}

@test "evbusd --retain and --bus reject bad values with 2" {
	evbusd_only "a test of the evbusd program itself"
	run -2 --separate-stderr evbusd --memory --retain 0
	[[ $stderr == *"--retain"* ]]
	run -2 evbusd --memory --retain x
	run -2 --separate-stderr evbusd --memory --bus foo://x
	[[ $stderr == *"foo://x"* ]]
	run -2 evbusd --memory --store x.db
}

@test "a second hub on the same address is refused with 69" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	run -69 --separate-stderr evbusd --memory
	[[ $stderr == *"$EVBUS_URL"* ]]
	run -0 evpub a b # the first one still serves
}

@test "a second hub on the same store is refused with 69" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	run -69 --separate-stderr evbusd --bus "ipc://$BATS_TEST_TMPDIR/other" --store "$HUB_STORE"
	[[ $stderr == *"in use"* ]]
	run -0 evpub a b
}

@test "evbusd exits 69 naming the store when it cannot be opened" {
	evbusd_only "a test of the evbusd program itself"
	: >"$BATS_TEST_TMPDIR/file"
	run -69 --separate-stderr evbusd --bus "ipc://$BATS_TEST_TMPDIR/bus" \
		--store "$BATS_TEST_TMPDIR/file/bus.db"
	[[ $stderr == *"$BATS_TEST_TMPDIR/file/bus.db"* ]]
}

@test "without --bus or EVBUS_URL the hub uses a private 0700 directory" {
	evbusd_only "a test of the evbusd program itself"
	unset EVBUS_URL
	export XDG_RUNTIME_DIR="$BATS_TEST_TMPDIR/run" XDG_STATE_HOME="$BATS_TEST_TMPDIR/state"
	mkdir -m 0700 "$XDG_RUNTIME_DIR"
	evbusd --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid"
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
	[ "$(stat -c %a "$XDG_RUNTIME_DIR/evkit")" = 700 ]
	[ -S "$XDG_RUNTIME_DIR/evkit/bus" ]
	[ -f "$XDG_STATE_HOME/evkit/bus.db" ]
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq 1 ]
}

@test "SIGTERM while a publisher streams: every acknowledged event is in the log" {
	start_hub
	events 50000 >"$BATS_TEST_TMPDIR/in"
	bg_to "$BATS_TEST_TMPDIR/echoed" evpub --echo -f "$BATS_TEST_TMPDIR/in"
	wait_for test -s "$BATS_TEST_TMPDIR/echoed"
	stop_hub TERM
	wait "${BG_PIDS[-1]}" || true
	start_hub
	check_echoed_in_log
}

# check_echoed_in_log — after a restart: each event evpub echoed is in the
# log with the same seq and content, and the next seq is larger than all.
check_echoed_in_log() {
	local echoed=$BATS_TEST_TMPDIR/echoed n last mark
	n=$(wc -l <"$echoed")
	[ "$n" -gt 0 ]
	last=$(tail -n 1 "$echoed" | jq .seq)
	mark=$(evpub --echo end:mark done | jq .seq)
	((mark > last))
	evsub --since 0 --until done -W 30 '**' >"$BATS_TEST_TMPDIR/log"
	jq -c . "$echoed" | sort >"$BATS_TEST_TMPDIR/a"
	jq -c . "$BATS_TEST_TMPDIR/log" | sort >"$BATS_TEST_TMPDIR/b"
	run comm -23 "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
	assert_output ''
}

# gen_halves N GATE — N events, then waits for the file GATE, then N more.
gen_halves() {
	events "$1"
	WAIT_SECS=60 wait_file "$2"
	events "$1"
}

@test "kill -9 of the hub under evpub --echo of 100,000 events loses no acknowledged event" {
	start_hub
	mkfifo "$BATS_TEST_TMPDIR/in"
	bg_to "$BATS_TEST_TMPDIR/in" gen_halves 50000 "$BATS_TEST_TMPDIR/killed"
	bg_to "$BATS_TEST_TMPDIR/echoed" evpub --echo -f "$BATS_TEST_TMPDIR/in"
	local pub=${BG_PIDS[-1]}
	wait_for test -s "$BATS_TEST_TMPDIR/echoed"
	stop_hub KILL
	touch "$BATS_TEST_TMPDIR/killed"
	local rc=0
	wait "$pub" || rc=$?
	[ "$rc" -eq 69 ]
	start_hub
	check_echoed_in_log
}

@test "evpub learns at once that the hub died: exit 69, not a wait for the ack timeout" {
	evbusd_only "on NATS the client reconnects (to a cluster's other servers) and waits for PubAcks up to the ack timeout"
	start_hub
	mkfifo "$BATS_TEST_TMPDIR/in"
	bg_to "$BATS_TEST_TMPDIR/in" yes '{"topic":"t:a","event":"tick","payload":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}'
	bg evpub -f "$BATS_TEST_TMPDIR/in"
	local pub=${BG_PIDS[-1]}
	wait_for bash -c "(( \$(evbusd --status | jq .events_in) > 0 ))"
	stop_hub KILL
	# Well inside the 10 s ack timeout; a hang fails this wait_for.
	WAIT_SECS=5 wait_for bash -c "! kill -0 $pub 2>/dev/null"
	local rc=0
	wait "$pub" || rc=$?
	[ "$rc" -eq 69 ]
}

@test "a subscriber outlives a hub restart and gets the events published after it" {
	start_hub
	bg_to "$BATS_TEST_TMPDIR/got" evsub --ready-file "$BATS_TEST_TMPDIR/ready" -n 2 -W 30 '**'
	local sub=${BG_PIDS[-1]}
	wait_file "$BATS_TEST_TMPDIR/ready"
	evpub a before
	stop_hub
	start_hub
	evpub a after
	wait "$sub"
	run jq -c '[.seq, .event]' "$BATS_TEST_TMPDIR/got"
	assert_output $'[1,"before"]\n[2,"after"]'
}

# raw BYTES... — sends printf-formatted BYTES to the hub as one request.
raw() {
	printf "$@" >"$BATS_TEST_TMPDIR/req"
	"$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/req"
}

@test "evbusd answers hostile requests with an error and keeps serving" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	run -0 raw ''
	assert_output --partial 'E '
	run -0 raw 'Z'
	assert_output 'E unknown request'
	run -0 raw 'R\001'
	assert_output --partial 'E '
	run -0 raw 'P'
	assert_output --partial 'E '
	run -0 raw 'Pnot json\n'
	assert_output --partial 'E '
	run -0 raw 'P{"ts":"x","topic":"a","event":"b","payload":{}}' # no newline
	assert_output --partial 'E '
	run -0 raw 'P{"ts":"x"\000,"topic":"a"}\n'
	assert_output --partial 'E '
	run -0 raw 'P{"ts":"\377\376"}\n'
	assert_output --partial 'E '
	# A whole 4 MiB frame of junk is refused by size or content, not stored.
	{ printf P; head -c 4194000 /dev/zero | tr '\0' 'x'; } >"$BATS_TEST_TMPDIR/big"
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/big"
	assert_output 'E malformed frame'
	# A frame beyond the hub's limit is dropped by nng with its connection.
	{ printf P; head -c 5000000 /dev/zero | tr '\0' 'x'; } >"$BATS_TEST_TMPDIR/huge"
	run -69 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/huge" 1000
	# Nothing of it reached the log; the hub still numbers good events.
	[ "$(hub_status_field head_seq)" -eq 0 ]
	[ "$(hub_status_field rejected_frames)" -eq 5 ]
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq 1 ]
}

@test "after a refused frame the hub refuses the connection's later frames; a new connection is served" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	printf 'Pnot json\n' >"$BATS_TEST_TMPDIR/bad"
	printf 'P{"ts":"2026-01-01T00:00:00.000000Z","topic":"a","event":"b","payload":{}}\n' >"$BATS_TEST_TMPDIR/good"
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/bad" 10000 "$BATS_TEST_TMPDIR/good"
	[ "${lines[0]}" = "E malformed frame" ]
	[ "${lines[1]}" = "E refused: an earlier frame of this connection was refused" ]
	[ "$(hub_status_field head_seq)" -eq 0 ]
	# Also when the good frames are on their way before the bad one is
	# refused: sent at once on one connection behind a long replay, so
	# the hub, busy with it, mostly takes all three in one batch.
	yes '{"topic":"t","event":"e","payload":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}' |
		head -n 40000 | evpub
	printf 'R\000\000\000\000\000\000\000\000\377\377\377\377' >"$BATS_TEST_TMPDIR/replay"
	RAWREQ_PIPELINE=1 run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/replay" 10000 \
		"$BATS_TEST_TMPDIR/bad" "$BATS_TEST_TMPDIR/good" "$BATS_TEST_TMPDIR/good"
	[[ ${lines[0]} == "D "* ]]
	[ "${lines[1]}" = "E malformed frame" ]
	[ "${lines[2]}" = "E refused: an earlier frame of this connection was refused" ]
	[ "${lines[3]}" = "E refused: an earlier frame of this connection was refused" ]
	[ "$(hub_status_field head_seq)" -eq 40000 ]
	# The same good frame on a connection of its own is stored.
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/good" 10000 "$BATS_TEST_TMPDIR/good"
	[ "${lines[0]}" = "A 13 bytes" ] && [ "${lines[1]}" = "A 13 bytes" ]
	[ "$(hub_status_field head_seq)" -eq 40002 ]
}

@test "a replay request for a huge count is served in bounded pieces" {
	evbusd_only "a test of the evbusd program itself"
	start_hub
	yes '{"topic":"t","event":"e","payload":{}}' | head -n 5000 | evpub
	run -0 raw 'R\000\000\000\000\000\000\000\000\377\377\377\377'
	[[ $output == "D "* ]]
	local bytes=${output#D }
	bytes=${bytes% bytes}
	((bytes < 8 * 1024 * 1024))
}
