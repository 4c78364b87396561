#!/usr/bin/env bats
# evkit on NATS JetStream: the errors a user can act on, each told in its
# own words naming the address (JetStream not enabled, a stream evkit
# cannot use, a subject longer than the server takes, nothing listening),
# a stream made beforehand used as it is, and the server filtering by the
# subscriber's patterns. Part of `make test-nats`; each test starts its
# own servers. (No quorum: nats_cluster.bats.)
load helpers

setup() { nats_suite; }
teardown() { stop_all; }

# server NAME ARGS... — starts nats-server NAME on 127.0.0.1 with ARGS on
# a port it picks; sets PORT once it serves.
server() {
	local name=$1; shift
	mkdir -p "$T/$name"
	nats-server -a 127.0.0.1 -p -1 --ports_file_dir "$T/$name" -l "$T/$name/log" "$@" \
		</dev/null >/dev/null 2>&1 3>&- &
	BG_PIDS+=("$!")
	local ports="$T/$name/nats-server_$!.ports"
	WAIT_SECS=20 wait_for test -s "$ports"
	PORT=$(jq -r '.nats[0] // .client[0]' "$ports")
	PORT=${PORT##*:}
	WAIT_SECS=20 wait_for grep -q 'Server is ready' "$T/$name/log"
}

# js URL API-SUBJECT [JSON] — one JetStream API request; its answer.
js() { "$EVKIT_TOOLS/natsreq" "$1" "\$JS.API.$2" "${3:-}"; }

@test "nothing listening: evpub, evsub and evbusd --status exit 69 naming the address (one server or a list)" {
	local a b c
	TAKEN=()
	a=$(free_port) && TAKEN+=("$a")
	b=$(free_port) && TAKEN+=("$b")
	c=$(free_port)
	for url in "nats://127.0.0.1:$a" "nats://127.0.0.1:$a,127.0.0.1:$b,127.0.0.1:$c/S?replicas=3"; do
		run -69 --separate-stderr timeout 30 evpub --bus "$url" a:b e
		[[ $stderr == "evpub: no hub at '$url'"* ]] || fail "$stderr"
		run -69 --separate-stderr timeout 30 evsub --bus "$url" -n 1 '**'
		[[ $stderr == "evsub: no hub at '$url'"* ]] || fail "$stderr"
		run -69 --separate-stderr timeout 30 evbusd --status --bus "$url"
		[[ $stderr == "evbusd: no hub at '$url'"* ]] || fail "$stderr"
	done
}

@test "a server without JetStream: exit 69, 'JetStream is not enabled' naming the address" {
	server plain
	local url=nats://127.0.0.1:$PORT
	local want="JetStream is not enabled on the server at '$url' (nats-server runs it with -js)"
	run -69 --separate-stderr evpub --bus "$url" a:b e
	[ "$stderr" = "evpub: $want" ]
	run -69 --separate-stderr evsub --bus "$url" -n 1 '**'
	[ "$stderr" = "evsub: $want" ]
	run -69 --separate-stderr evbusd --status --bus "$url"
	[ "$stderr" = "evbusd: $want" ]
	run -69 --separate-stderr widgetd --bus "$url" get x
	[ "$stderr" = "widgetd: $want" ]
}

@test "a stream made beforehand with other settings is used as it is, never altered, and --status lists what differs" {
	server js -js -sd "$T/js"
	local url=nats://127.0.0.1:$PORT
	run -0 js "$url" STREAM.CREATE.EVKIT \
		'{"name":"EVKIT","subjects":["evk.>"],"storage":"memory","max_msgs":50,"retention":"limits","discard":"old","num_replicas":1}'
	for i in $(seq 1 60); do echo "{\"topic\":\"t:$((i % 2))\",\"event\":\"e\",\"payload\":{\"i\":$i}}"; done |
		evpub --bus "$url"
	# Used as it is: 50 retained, in memory.
	run -0 evbusd --status --bus "$url"
	jq -e '.head_seq == 60 and .retained == 50 and .oldest_seq == 11 and .storage == "memory"' <<<"$output"
	run -0 jq -c .differs <<<"$output"
	assert_output '["memory storage (not file)","retains 50 events (not 1000000)"]'
	run -0 js "$url" STREAM.INFO.EVKIT
	jq -e '.config.max_msgs == 50 and .config.storage == "memory" and .config.subjects == ["evk.>"]' <<<"$output"
	# A stream evkit makes itself differs in nothing.
	run -0 js "$url" STREAM.DELETE.EVKIT
	evpub --bus "$url/OWN" x:y e
	run -0 evbusd --status --bus "$url/OWN"
	jq -e '.differs == [] and .retain == 1000000 and .storage == "file"' <<<"$output"
}

@test "a stream evkit cannot use (other subjects, another retention) is refused with exit 65 naming it, and left as it was" {
	server js -js -sd "$T/js"
	local url=nats://127.0.0.1:$PORT
	run -0 js "$url" STREAM.CREATE.ODD '{"name":"ODD","subjects":["foo.>"],"storage":"file","num_replicas":1}'
	run -0 js "$url" STREAM.CREATE.WQ '{"name":"WQ","subjects":["evk.>"],"retention":"workqueue","storage":"file","num_replicas":1}'
	run -65 --separate-stderr evpub --bus "$url/ODD" a:b e
	[ "$stderr" = "evpub: stream 'ODD' at '$url/ODD' does not take evkit's subjects evk.> (it takes foo.>): name another stream in the address (nats://HOST:PORT/STREAM)" ]
	run -65 --separate-stderr evsub --bus "$url/ODD" '**'
	[[ $stderr == "evsub: stream 'ODD' at '$url/ODD' does not take evkit's subjects"* ]] || fail "$stderr"
	run -65 --separate-stderr evpub --bus "$url/WQ" a:b e
	[ "$stderr" = "evpub: stream 'WQ' at '$url/WQ' has work-queue retention: evkit needs limits retention (events kept for replay and every subscriber)" ]
	# The default stream cannot be made beside WQ (the same subjects).
	run -65 --separate-stderr evpub --bus "$url" a:b e
	[[ $stderr == "evpub: cannot create stream 'EVKIT' at '$url': another stream takes subjects overlapping evk.>"* ]] || fail "$stderr"
	run -0 js "$url" STREAM.INFO.ODD
	jq -e '.config.subjects == ["foo.>"] and .state.messages == 0' <<<"$output"
	run -0 js "$url" STREAM.INFO.WQ
	jq -e '.config.retention == "workqueue" and .state.messages == 0' <<<"$output"
	# replicas=3 on a server that is not in a cluster.
	run -65 --separate-stderr evpub --bus "$url/R3?replicas=3" a:b e
	[ "$stderr" = "evpub: the server at '$url/R3?replicas=3' is not in a cluster: replicas=3 needs a JetStream cluster of as many servers" ]
}

@test "a topic whose subject is longer than the server takes: exit 65, 'subject too long' naming the topic and the address" {
	printf 'max_control_line: 256\njetstream { store_dir: "%s" }\n' "$T/js" >"$T/small.conf"
	server small -c "$T/small.conf"
	local url=nats://127.0.0.1:$PORT long
	long=a:$(printf 'b%.0s' $(seq 1 240))
	run -0 evpub --bus "$url" short:topic e
	run -65 --separate-stderr evpub --bus "$url" "$long" e
	[[ $stderr == "evpub: the hub at '$url' failed: subject too long: topic 'a:bbbb"*"...' makes a 246-byte subject, longer than the server takes (its max_control_line) (0 events acknowledged)" ]] ||
		fail "$stderr"
	# What came before was stored; nothing after it.
	{ echo '{"topic":"ok:1","event":"e"}'; echo "{\"topic\":\"$long\",\"event\":\"e\"}"; echo '{"topic":"ok:2","event":"e"}'; } >"$T/in"
	run -65 --separate-stderr evpub --bus "$url" -f "$T/in"
	[[ $stderr == *"subject too long: topic 'a:bbbb"* ]] || fail "$stderr"
	run -0 evsub --bus "$url" --since 0 -W 5 '**'
	run jq -r .topic <<<"$output"
	[[ $output == short:topic || $output == $'short:topic\nok:1' ]] || fail "$output"
}
