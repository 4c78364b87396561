#!/usr/bin/env bats
# evsub on NATS JetStream: the server filters by the patterns (one
# subject filter; a wider one where a single filter cannot say the
# patterns, with evsub's matcher finishing), and live delivery, replay,
# gaps and a stopped subscriber keep their promises: each matching event
# once, in seq order, a range no longer retained told as a gap. Part of
# `make test-nats`.
load helpers

setup() {
	on_nats || skip "the NATS tests run with make test-nats (EVKIT_TEST_BACKEND=nats)"
	start_hub
	T=$BATS_TEST_TMPDIR
}
teardown() { stop_all; }

# sub OUT ARGS... — evsub in the background to OUT (stderr OUT.err), once
# subscribed.
sub() {
	local out=$1; shift
	rm -f "$T/ready"
	evsub --ready-file "$T/ready" "$@" >"$out" 2>"$out.err" &
	BG_PIDS+=("$!")
	SUB_PID=$!
	wait_file "$T/ready"
}

# mixed N — N events over topics a:x, b:x, a:y:z, a, a:x:1 in turn, payload
# {"i":1..N}.
mixed() {
	awk -v n="$1" 'BEGIN { split("a:x b:x a:y:z a a:x:1", t, " ")
		for (i = 1; i <= n; i++)
			printf "{\"topic\":\"%s\",\"event\":\"e\",\"payload\":{\"i\":%d}}\n", t[(i - 1) % 5 + 1], i }'
}

# want FILE JQ-TOPIC-TEST — the [seq, topic] pairs of the echoed events
# that pass the test, one per line.
want() { jq -c "select($2) | [.seq, .topic]" "$1"; }

# same_as FILE WANT-FILE — FILE's events, as [seq, topic], are WANT-FILE's
# lines exactly: each once, in order, nothing else.
same_as() {
	jq -c '[.seq, .topic]' "$1" >"$1.pairs"
	diff "$2" "$1.pairs" >"$1.diff" || fail "$(head -n 20 "$1.diff")"
}

@test "the server filters: each matching event once, in seq order, nothing else; live, several patterns, bare prefixes" {
	sub "$T/ax" -n 400 --stats 'a:x'
	sub "$T/aany" -n 1600 --stats 'a:**'
	sub "$T/star" -n 800 --stats 'a:*:*'
	sub "$T/two" -n 800 --stats 'a:x' 'a:y:z'
	sub "$T/deep" -n 400 --stats 'a:y:*'
	mixed 2000 | evpub --echo >"$T/echo"
	for f in ax aany star two deep; do WAIT_SECS=60 wait_for grep -q received "$T/$f.err"; done
	want "$T/echo" '.topic == "a:x"' >"$T/ax.want"
	want "$T/echo" '.topic | startswith("a")' >"$T/aany.want"
	want "$T/echo" '.topic == "a:y:z" or .topic == "a:x:1"' >"$T/star.want"
	want "$T/echo" '.topic == "a:x" or .topic == "a:y:z"' >"$T/two.want"
	want "$T/echo" '.topic == "a:y:z"' >"$T/deep.want"
	for f in ax aany star two deep; do same_as "$T/$f" "$T/$f.want"; done
	# The server filtered: evsub saw no other event where one subject
	# filter says the pattern (a:x, a:*:*, a:y:*); 'a:**' (a bare a too)
	# and a:x with a:y:z (evk.a.>, a:x:1 too) take a wider filter,
	# evsub's matcher finishes.
	jq -e '.filtered == 0' "$T/ax.err" "$T/star.err" "$T/deep.err"
	jq -e '.filtered > 0' "$T/aany.err" "$T/two.err"
}

@test "a filtered replay (--since) then live: no gap, no duplicate at the seam" {
	mixed 1000 | evpub --echo >"$T/echo1"
	sub "$T/out" -n 400 --since 0 'a:x'
	mixed 1000 | evpub --echo >"$T/echo2"
	wait "$SUB_PID"
	cat "$T/echo1" "$T/echo2" | jq -c 'select(.topic == "a:x") | [.seq, .topic]' >"$T/want"
	same_as "$T/out" "$T/want"
	[ ! -s "$T/out.err" ]
	# From the middle: only what comes after.
	run -0 evsub --since 1500 -n 100 -W 30 'a:x'
	printf '%s\n' "$output" >"$T/mid"
	jq -c 'select(.[0] > 1500)' "$T/want" >"$T/mid.want"
	same_as "$T/mid" "$T/mid.want"
}

@test "a stopped filtered subscriber gets every matching event of a 50,000-event burst, once, in order" {
	sub "$T/out" -n 10000 -W 120 'a:x'
	kill -STOP "$SUB_PID"
	mixed 50000 | evpub --echo >"$T/echo"
	kill -CONT "$SUB_PID"
	wait "$SUB_PID"
	want "$T/echo" '.topic == "a:x"' >"$T/want"
	same_as "$T/out" "$T/want"
	[ ! -s "$T/out.err" ]
}

@test "filtered: a range the stream no longer holds is one gap, then the matching events (a stream made with max_msgs 100)" {
	"$EVKIT_TOOLS/natsreq" "$EVBUS_URL" '$JS.API.STREAM.CREATE.EVKIT' \
		'{"name":"EVKIT","subjects":["evk.>"],"storage":"file","max_msgs":100,"retention":"limits","discard":"old","num_replicas":1}' >/dev/null
	mixed 300 | evpub --echo >"$T/echo"
	run -0 --separate-stderr evsub --since 0 -n 20 -W 30 'a:x'
	[ "$stderr" = "evsub: gap: events 1-200 are no longer retained" ] || fail "$stderr"
	printf '%s\n' "$output" >"$T/out"
	jq -c 'select(.seq > 200 and .topic == "a:x") | [.seq, .topic]' "$T/echo" >"$T/want"
	same_as "$T/out" "$T/want"
}

@test "filtered and stopped while the stream drops what it was to deliver: every matching event is delivered once, in order, or inside a gap told on stderr" {
	"$EVKIT_TOOLS/natsreq" "$EVBUS_URL" '$JS.API.STREAM.CREATE.EVKIT' \
		'{"name":"EVKIT","subjects":["evk.>"],"storage":"file","max_msgs":100,"retention":"limits","discard":"old","num_replicas":1}' >/dev/null
	sub "$T/out" --until end 'a:x'
	kill -STOP "$SUB_PID"
	mixed 20000 | evpub --echo >"$T/echo"
	kill -CONT "$SUB_PID"
	evpub a:x end
	WAIT_SECS=60 wait_for gone "$SUB_PID"
	# Each matching seq: delivered, or in a reported gap; never both, never twice.
	jq -r 'select(.topic == "a:x") | .seq' "$T/echo" >"$T/want"
	jq -r 'select(.event != "end") | .seq' "$T/out" >"$T/got"
	sort -n -c "$T/got" && [ "$(sort -nu "$T/got" | wc -l)" -eq "$(wc -l <"$T/got")" ]
	sed -n 's/^evsub: gap: events \([0-9]*\)-\([0-9]*\) are no longer retained$/\1 \2/p; s/^evsub: gap: event \([0-9]*\) is no longer retained$/\1 \1/p' \
		"$T/out.err" >"$T/gaps"
	[ "$(grep -c . "$T/out.err")" -eq "$(wc -l <"$T/gaps")" ] || fail "$(cat "$T/out.err")"
	awk 'FILENAME == ARGV[1] { lo[NR] = $1; hi[NR] = $2; n = NR; next }
	     FILENAME == ARGV[2] { got[$1] = 1; next }
	     { in_gap = 0; for (k = 1; k <= n; k++) if ($1 >= lo[k] && $1 <= hi[k]) in_gap = 1
	       if (got[$1] == in_gap) { print "seq " $1 ": delivered " got[$1] + 0 ", in a gap " in_gap; bad = 1 } }
	     END { exit bad }' "$T/gaps" "$T/got" "$T/want"
	jq -e 'select(.event == "end")' "$T/out" >/dev/null
}
