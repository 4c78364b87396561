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
	[ "$(sqlite3 "$BATS_TEST_TMPDIR/bus.db" 'PRAGMA user_version')" -eq 3 ]
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
	assert_output "E malformed frame: not '\\n'-terminated lines"
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
	[[ ${lines[0]} == "E malformed event on line 1 of the frame: "* ]]
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
	[[ ${lines[1]} == "E malformed event on line 1 of the frame: "* ]]
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

@test "the hub stores only canonical events and says why it refuses a line (issue 16.2)" {
	evbusd_only "raw frames of evbusd's own wire protocol (tests/tools/rawreq)"
	start_hub
	local ok='{"ts":"2026-01-01T00:00:00.000000Z","topic":"a","event":"b","payload":'
	run -0 raw 'P{"ts":"x"}\n'
	assert_output 'E malformed event on line 1 of the frame: not a canonical event ({"ts","topic","event","payload"})'
	run -0 raw "P${ok}{}}\n${ok}{\"x\":\"a\001\"}}\n"
	assert_output 'E malformed event on line 2 of the frame: raw control byte at column 78 in a string (write it as \u00XX)'
	run -0 raw "P${ok}\"\033[2J\"}\n"
	assert_output --partial 'raw control byte at column'
	run -0 raw "P${ok}\"tab\there\"}\n"
	assert_output --partial 'raw control byte at column'
	run -0 raw "P${ok}{\"x\":\t1}}\n"
	assert_output --partial 'outside a string'
	run -0 raw "P${ok}1e999}\n"
	assert_output --partial 'number out of range'
	run -0 raw "P${ok}01}\n"
	assert_output --partial 'invalid number'
	run -0 raw "P${ok}[1,]}\n"
	assert_output --partial 'payload is not one JSON value'
	run -0 raw "P${ok}{} }\n"
	assert_output --partial 'payload is not one JSON value'
	run -0 raw 'P{"ts":"2026-01-01T00:00:00Z","topic":"a","event":"b","payload":{}}\n'
	assert_output --partial 'not a canonical event'
	run -0 raw 'P{"ts":"2026-13-01T00:00:00.000000Z","topic":"a","event":"b","payload":{}}\n'
	assert_output --partial "'ts' is not an RFC 3339 UTC time with microseconds"
	run -0 raw 'P{"ts":"2026-01-01T00:00:00.000000Z","topic":"a::b","event":"b","payload":{}}\n'
	assert_output --partial 'invalid topic'
	run -0 raw 'P{"ts":"2026-01-01T00:00:00.000000Z","topic":"a","event":"b c","payload":{}}\n'
	assert_output --partial 'invalid event name'
	run -0 raw 'P{"ts":"2026-01-01T00:00:00.000000Z","topic":"a","event":"b","payload":"\377"}\n'
	assert_output --partial 'invalid UTF-8'
	[ "$(hub_status_field head_seq)" -eq 0 ]
	# Escaped, the same bytes are fine.
	printf 'P%s%s}\n' "$ok" '{"x":"\u0001 \" ok","n":-1.5e3}' >"$BATS_TEST_TMPDIR/req"
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/req"
	assert_output 'A 13 bytes'
	[ "$(hub_status_field head_seq)" -eq 1 ]
	evbusd --status >/dev/null
	evsub --since 0 -n 1 '**' | jq -e '.payload.n == -1500' >/dev/null
}

@test "a refused line neither repeats events nor invents a gap for a live subscriber (issue 16.2)" {
	evbusd_only "raw frames of evbusd's own wire protocol (tests/tools/rawreq)"
	start_hub
	rm -f "$BATS_TEST_TMPDIR/ready"
	bg_to "$BATS_TEST_TMPDIR/got" evsub --ready-file "$BATS_TEST_TMPDIR/ready" -n 19 -W 60 '**' 2>"$BATS_TEST_TMPDIR/err"
	local sub=${BG_PIDS[-1]}
	wait_file "$BATS_TEST_TMPDIR/ready"
	run -0 raw 'P{"ts":"x"}\n'
	run -0 raw 'P{"ts":"x"}\n'
	local i
	for i in $(seq 19); do evpub t e "{\"i\":$i}"; done
	wait "$sub"
	run jq -s -c 'map(.seq)' "$BATS_TEST_TMPDIR/got"
	assert_output "[$(seq -s, 19)]"
	run cat "$BATS_TEST_TMPDIR/err"
	assert_output ''
	(($(hub_status_field refill_requests) < 10))
}

@test "whatever a log holds, a subscriber never repeats a seq, never goes back, never reports a false gap (issue 16.2)" {
	evbusd_only "rows written into evbusd's SQLite store"
	start_hub
	evpub t e '{"i":1}'
	evpub t e '{"i":2}'
	stop_hub
	# Rows a hub of before the fix could have stored: a line that does not
	# scan and a line naming another seq, as events 3 and 4.
	sqlite3 "$HUB_STORE" "INSERT INTO frames VALUES (3, 4, CAST('{\"seq\":3,\"ts\":\"x\"}' || char(10) || '{\"seq\":1,\"ts\":\"2026-01-01T00:00:00.000000Z\",\"topic\":\"t\",\"event\":\"e\",\"payload\":{\"i\":1}}' || char(10) AS BLOB)); UPDATE meta SET value = 4 WHERE key = 'head';"
	start_hub
	rm -f "$BATS_TEST_TMPDIR/ready"
	bg_to "$BATS_TEST_TMPDIR/live" evsub --ready-file "$BATS_TEST_TMPDIR/ready" --since 0 -n 4 -W 60 '**' 2>"$BATS_TEST_TMPDIR/err"
	local sub=${BG_PIDS[-1]}
	wait_file "$BATS_TEST_TMPDIR/ready"
	evpub t e '{"i":5}'
	evpub t e '{"i":6}'
	wait "$sub"
	run jq -s -c 'map([.seq, .payload.i])' "$BATS_TEST_TMPDIR/live"
	assert_output '[[1,1],[2,2],[5,5],[6,6]]'
	run cat "$BATS_TEST_TMPDIR/err"
	assert_output ''
	run -0 --separate-stderr evsub --since 2 -n 2 -o payload '**'
	assert_output $'{"i":5}\n{"i":6}'
	assert_equal "$stderr" ''
}

@test "--status counts right after connections with a wrong SP header (issue 16.8)" {
	local port=$((20000 + RANDOM % 20000)) i p
	export EVBUS_URL="tcp://127.0.0.1:$port"
	evbusd --memory --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid"
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
	# A well-formed SP header naming the wrong protocol (pair), on both
	# the request and the fan-out port: nng drops each in its handshake.
	for i in $(seq 10); do
		for p in "$port" "$((port + 1))"; do
			timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p; printf '\\x00SP\\x00\\x00\\x10\\x00\\x00' >&3; timeout 2 cat <&3 >/dev/null; exec 3>&-" || true
		done
	done
	bg_to "$BATS_TEST_TMPDIR/got" evsub --ready-file "$BATS_TEST_TMPDIR/ready" -n 1 -W 30 '**'
	wait_file "$BATS_TEST_TMPDIR/ready"
	evpub a b
	wait "${BG_PIDS[-1]}"
	run -0 evbusd --status
	jq -e '.clients >= 0 and .subscribers >= 0 and .subscribers <= 1 and .events_out <= 2' <<<"$output" || fail "$output"
}

# store_with_events N — a store at $HUB_STORE holding N events, hub stopped.
store_with_events() {
	start_hub
	yes '{"topic":"t","event":"e","payload":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}' |
		head -n "$1" | evpub
	stop_hub
}

@test "a read-only store is refused at start with 74 and the reason (issue 16.12)" {
	evbusd_only "evbusd's SQLite store"
	store_with_events 100
	# SQLite opens a file whose write version (byte 18) is above 2 read-only,
	# whoever runs the test (root ignores file modes).
	printf '\003' | dd of="$HUB_STORE" bs=1 seek=18 conv=notrunc 2>/dev/null
	run -74 --separate-stderr timeout 20 evbusd --store "$HUB_STORE"
	[[ $stderr == "evbusd: store '$HUB_STORE' cannot be used: it is read-only"* ]] || fail "$stderr"
}

@test "a damaged store is refused at start with 74 and the reason (issue 16.12)" {
	evbusd_only "evbusd's SQLite store"
	store_with_events 5000
	head -c 4096 /dev/zero | tr '\0' '\377' | dd of="$HUB_STORE" bs=4096 seek=20 conv=notrunc 2>/dev/null
	run -74 --separate-stderr timeout 20 evbusd --store "$HUB_STORE"
	[[ $stderr == "evbusd: store '$HUB_STORE' cannot be used: it is damaged ("* ]] || fail "$stderr"
	# Garbage where the header was: not a database at all.
	head -c 4096 /dev/zero | tr '\0' '\377' | dd of="$HUB_STORE" bs=4096 conv=notrunc 2>/dev/null
	run -74 --separate-stderr timeout 20 evbusd --store "$HUB_STORE"
	[[ $stderr == "evbusd: cannot open store '$HUB_STORE': "* ]] || fail "$stderr"
}

@test "a store truncated to 0 bytes does not restart numbering from 1 (issue 16.12)" {
	evbusd_only "evbusd's SQLite store"
	# A log that never held an event is no loss: it starts at 1.
	start_hub
	stop_hub
	start_hub
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq 1 ]
	stop_hub
	rm -f "$HUB_STORE"*
	store_with_events 10
	: >"$HUB_STORE"
	rm -f "$HUB_STORE-wal" "$HUB_STORE-shm"
	start_hub 2>"$BATS_TEST_TMPDIR/err"
	run -0 evpub --echo a b
	(($(jq .seq <<<"$output") > 10))
	grep -q "is empty, but seqs up to [0-9]* may have been used" "$BATS_TEST_TMPDIR/err"
	# And again after a restart: seq goes on from there, as always.
	local seq
	seq=$(jq .seq <<<"$output")
	stop_hub
	start_hub
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq $((seq + 1)) ]
	# Removing both files starts a new log from 1, on purpose.
	stop_hub
	rm -f "$HUB_STORE" "$HUB_STORE.seq" "$HUB_STORE-wal" "$HUB_STORE-shm"
	start_hub
	run -0 evpub --echo a b
	[ "$(jq .seq <<<"$output")" -eq 1 ]
}

@test "a store that cannot grow: evpub gets the hub's reason and 74/75, not a protocol error (issue 16.12)" {
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus" HUB_STORE="$BATS_TEST_TMPDIR/bus.db"
	# A file size limit makes the store's writes fail as a full disk would
	# (SIGXFSZ ignored, so the write fails instead of killing the hub).
	(trap '' XFSZ; ulimit -f 2048; exec evbusd --store "$HUB_STORE" --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid")
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
	yes '{"topic":"t","event":"e","payload":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}' |
		head -n 40000 >"$BATS_TEST_TMPDIR/in"
	run --separate-stderr evpub -f "$BATS_TEST_TMPDIR/in"
	[[ $status == 74 || $status == 75 ]] || fail "status $status: $stderr"
	[[ $stderr == "evpub: the hub at '$EVBUS_URL' failed: cannot store events in '$HUB_STORE': "* ]] || fail "$stderr"
	[[ $stderr != *"protocol error"* ]]
	# What was acknowledged is there, and the hub still serves it.
	local acked=${stderr##*(}
	acked=${acked%% events*}
	((acked > 0))
	run -0 evsub --since 0 -n "$acked" -W 30 -o payload '**'
	[ "${#lines[@]}" -eq "$acked" ]
}

# once_frame FILE ID SEQ... — writes a 'Q' frame (publish exactly once) of
# producer ID with one event per SEQ (payload {"n":SEQ}) to FILE.
once_frame() {
	local file=$1 id=$2 seq
	shift 2
	{
		printf 'Q'
		printf "\\x$(printf %02x "${#id}")%s" "$id"
		printf "\\x$(printf %02x $(($# >> 24 & 255)))\\x$(printf %02x $(($# >> 16 & 255)))\\x$(printf %02x $(($# >> 8 & 255)))\\x$(printf %02x $(($# & 255)))"
		for seq in "$@"; do
			printf '\000\000\000\000\000\000\000'
			printf "\\x$(printf %02x "$seq")"
		done
		for seq in "$@"; do
			printf '{"ts":"2026-01-01T00:00:00.000000Z","topic":"t","event":"e","payload":{"n":%d}}\n' "$seq"
		done
	} >"$file"
}

@test "a producer's line sent again is stored once and still acknowledged, across hub restarts (issue 16.3)" {
	evbusd_only "Q frames are evbusd's wire protocol; on NATS the outbox's publish-once is Nats-Msg-Id (casectl.bats tests it)"
	start_hub
	local f=$BATS_TEST_TMPDIR/q
	once_frame "$f" prodA 1 2
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	assert_output 'A 17 bytes'
	[ "$(hub_status_field head_seq)" -eq 2 ]
	# The same frame again (an ack lost, a crash before it was recorded).
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	assert_output 'A 17 bytes'
	[ "$(hub_status_field head_seq)" -eq 2 ]
	[ "$(hub_status_field duplicates_dropped)" -eq 2 ]
	# Overlapping: only the new line is stored; other producers are apart.
	once_frame "$f" prodA 2 3
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	once_frame "$BATS_TEST_TMPDIR/b" prodB 1
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$BATS_TEST_TMPDIR/b"
	[ "$(hub_status_field head_seq)" -eq 4 ]
	stop_hub
	start_hub
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	assert_output 'A 17 bytes'
	[ "$(hub_status_field head_seq)" -eq 4 ]
	run -0 evsub --since 0 -n 4 -o payload '**'
	assert_output $'{"n":1}\n{"n":2}\n{"n":3}\n{"n":1}'
	# Sequences must grow within a frame; ids are short and plain.
	once_frame "$f" prodA 5 4
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	assert_output 'E malformed frame: producer sequences not increasing'
	once_frame "$f" 'bad id' 9
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	assert_output 'E malformed frame: bad producer id'
	# A new producer's sequence 0 is refused, not dropped as stored.
	once_frame "$f" prodC 0 1
	run -0 "$EVKIT_TOOLS/rawreq" "$EVBUS_URL" "$f"
	assert_output 'E malformed frame: producer sequence 0'
	[ "$(hub_status_field head_seq)" -eq 4 ]
}

@test "evbusd --synchronous full keeps every acknowledged event across kill -9; a bad mode is a usage error (issue 19)" {
	evbusd_only "a test of the evbusd program itself"
	run -2 evbusd --synchronous sometimes --memory
	[[ $output == *"--synchronous takes normal or full, not 'sometimes'"* ]] || fail "$output"
	start_hub --synchronous full
	events 1000 | evpub
	kill -9 "$HUB_PID"
	wait_for gone "$HUB_PID"
	start_hub --synchronous full
	run -0 evsub --since 0 -n 1000 -W 20 't:**'
	[ "$(jq -r .seq <<<"$output" | awk '$1 != NR { bad++ } END { print NR, bad + 0 }')" = "1000 0" ]
}

@test "a log that lost its tail in a machine crash gives no seq twice: numbering goes on after the seq file's reservation, subscribers see a gap (issue 19)" {
	evbusd_only "evbusd's SQLite store and seq file"
	start_hub
	for i in 1 2 3 4 5; do evpub t e "{\"i\":$i}"; done
	stop_hub KILL
	# The seq file names this boot of the machine.
	[ "$(sed -n 2p "$HUB_STORE.seq")" = "$(cat /proc/sys/kernel/random/boot_id)" ]
	# A crash of the hub alone loses nothing: no gap.
	start_hub
	run -0 evpub --echo t e '{"i":6}'
	[ "$(jq .seq <<<"$output")" -eq 6 ]
	stop_hub KILL
	# A power loss: the log lost what it had not synced (seqs 4-6, all
	# acknowledged) and the machine came back with another boot id.
	sqlite3 "$HUB_STORE" "DELETE FROM frames WHERE last > 3"
	[ "$(sqlite3 "$HUB_STORE" 'SELECT max(last) FROM frames')" -eq 3 ]
	local reserved
	reserved=$(head -n 1 "$HUB_STORE.seq")
	printf '%s\n%s\n' "$reserved" 00000000-0000-4000-8000-000000000000 >"$HUB_STORE.seq"
	start_hub 2>"$BATS_TEST_TMPDIR/err"
	grep -q "did not stop cleanly and the machine restarted" "$BATS_TEST_TMPDIR/err"
	run -0 evpub --echo t e '{"i":7}'
	[ "$(jq .seq <<<"$output")" -eq $((reserved + 1)) ]
	# A subscriber that had seen seq 5 resumes after a gap, on the new event.
	run -0 --separate-stderr evsub --since 5 -n 1 -W 20 -o payload '**'
	assert_output '{"i":7}'
	[[ $stderr == *"gap: events 6-$reserved"* ]] || fail "$stderr"
	# A clean stop brings the reservation down to the head: after a
	# reboot, no gap.
	stop_hub
	[ "$(head -n 1 "$HUB_STORE.seq")" -eq $((reserved + 1)) ]
	printf '%s\n%s\n' $((reserved + 1)) 00000000-0000-4000-8000-000000000001 >"$HUB_STORE.seq"
	start_hub
	run -0 evpub --echo t e '{"i":8}'
	[ "$(jq .seq <<<"$output")" -eq $((reserved + 2)) ]
}

@test "a hub with --synchronous full marks its seq file synced: after any crash its log is trusted, no gap (issue 19)" {
	evbusd_only "evbusd's SQLite store and seq file"
	start_hub --synchronous full
	events 5 | evpub
	stop_hub KILL
	[ "$(sed -n 2p "$HUB_STORE.seq")" = synced ]
	start_hub
	run -0 evpub --echo t e '{"i":6}'
	[ "$(jq .seq <<<"$output")" -eq 6 ]
	# Now without full: the file names the boot again.
	[ "$(sed -n 2p "$HUB_STORE.seq")" = "$(cat /proc/sys/kernel/random/boot_id)" ]
}
