#!/usr/bin/env bats
# evkit on a three-node NATS JetStream cluster on 127.0.0.1 (a stream with
# replicas=3): what is acknowledged survives kill -9 of a node, a
# subscriber on that node goes on from the survivors, and programs on
# different nodes work together. Part of `make test-nats`
# (EVKIT_TEST_BACKEND=nats); the cluster is the test's own.
load helpers

setup() { nats_suite; }
teardown() { stop_all; }

# events N — N JSON-lines events with payload {"i":1..N}.
events() {
	awk -v n="$1" 'BEGIN {
		for (i = 1; i <= n; i++)
			printf "{\"topic\":\"load:x\",\"event\":\"tick\",\"payload\":{\"i\":%d}}\n", i
	}'
}

# url I... — a bus address listing nodes I... (in that order), with the
# replicated stream.
url() {
	local i list=
	for i in "$@"; do list+=${list:+,}127.0.0.1:${CPORT[i]}; done
	echo "nats://$list/EVKC?replicas=3"
}

# start_cluster — three nats-server processes with routes to each other;
# back once the replicated stream takes events (it holds one, seq 1).
start_cluster() {
	local i routes=
	TAKEN=()
	for i in 0 1 2; do
		CPORT[i]=$(free_port)
		TAKEN+=("${CPORT[i]}")
		RPORT[i]=$(free_port)
		TAKEN+=("${RPORT[i]}")
		routes+=${routes:+,}nats://127.0.0.1:${RPORT[i]}
	done
	for i in 0 1 2; do
		nats-server -js -n "n$i" -a 127.0.0.1 -p "${CPORT[i]}" -sd "$T/n$i" \
			--cluster_name evk --cluster "nats://127.0.0.1:${RPORT[i]}" \
			--routes "$routes" -l "$T/n$i.log" </dev/null >/dev/null 2>&1 3>&- &
		NODE_PID[i]=$!
		BG_PIDS+=("$!")
	done
	for i in 0 1 2; do
		WAIT_SECS=30 wait_for grep -q 'Server is ready' "$T/n$i.log"
	done
	WAIT_SECS=90 wait_for evpub --bus "$(url 0 1 2)" cluster:ready up 2>/dev/null
}

# consecutive FROM TO FILE — FILE's seqs are FROM..TO, each once, in order.
consecutive() {
	jq -r .seq "$3" | awk -v from="$1" -v to="$2" '
		$1 != from + NR - 1 { print "line " NR ": seq " $1 ", wanted " from + NR - 1; bad = 1; exit }
		END { if (!bad && NR != to - from + 1) { print NR " seqs, wanted " to - from + 1; bad = 1 }
		      exit bad }'
}

@test "kill -9 of a node under evpub --echo of 100,000 events: what was echoed is stored once, in order; a subscriber on that node goes on without gap" {
	start_cluster
	# The subscriber is on node 1, the one to die; the publisher on 0.
	bg_to "$T/sub" evsub --bus "$(url 1 0 2)" --ready-file "$T/ready" 'load:**' 2>"$T/sub.err"

	local sub=${BG_PIDS[-1]}
	wait_file "$T/ready"
	events 100000 | evpub --bus "$(url 0 2 1)" --echo >"$T/echo" 2>"$T/pub.err" 3>&- &
	local pub=$!
	BG_PIDS+=("$pub")
	WAIT_SECS=120 wait_for bash -c "[ \$(wc -l <'$T/echo') -ge 20000 ]"
	kill -9 "${NODE_PID[1]}"
	local rc=0
	wait "$pub" || rc=$?
	echo "evpub: exit $rc, $(wc -l <"$T/echo") echoed; $(cat "$T/pub.err")"
	[[ $rc == 0 || $rc == 69 || $rc == 75 ]]
	(($(wc -l <"$T/echo") >= 20000))
	[[ $rc != 0 ]] || (($(wc -l <"$T/echo") == 100000))

	local survivors head
	survivors=$(url 0 2)
	WAIT_SECS=60 wait_for bash -c "evbusd --status --bus '$survivors' >'$T/status'"
	head=$(jq -r .head_seq "$T/status")
	# The whole stream from the survivors: no hole, each event once, in order.
	run -0 evsub --bus "$survivors" --since 0 -n "$head" -W 60 '**'
	printf '%s\n' "$output" >"$T/stream"
	consecutive 1 "$head" "$T/stream"
	jq -r 'select(.topic == "load:x") | .payload.i' "$T/stream" |
		awk '$1 <= last { print "payload " $1 " after " last; exit 1 } { last = $1 }'
	# Every echoed event is in the stream at its seq.
	jq -c '[.seq, .payload.i]' "$T/echo" | sort >"$T/echo.pairs"
	jq -c '[.seq, .payload.i]' "$T/stream" | sort >"$T/stream.pairs"
	run comm -23 "$T/echo.pairs" "$T/stream.pairs"
	assert_output ''
	# The subscriber on the dead node's list reaches the head: every event
	# after the ready one, once, in order.
	WAIT_SECS=90 wait_for bash -c "[ \"\$(tail -n 1 '$T/sub' | jq -r .seq)\" = $head ]" ||
		fail "subscriber: $(wc -l <"$T/sub") lines, last $(tail -n 1 "$T/sub"); $(cat "$T/sub.err")"
	consecutive 2 "$head" "$T/sub"
}

@test "a workflow run by evworker on one node is folded by widgetd on another and read by widgetd get through a third" {
	start_cluster
	widgetd --bus "$(url 1)" --state "$T/widgets.db" --daemon --pidfile "$T/w.pid"
	BG_PIDS+=("$(cat "$T/w.pid")")
	cat >"$T/steps.json" <<-'EOF'
	[{"name":"validate","run":["sh","-c","echo 50 half >&$EVWORKER_PROGRESS_FD"]},
	 {"name":"process","run":["true"]}]
	EOF
	evworker --bus "$(url 0)" --db "$T/jobs.db" enqueue --steps "$T/steps.json" --workflow wfc >/dev/null
	evworker --bus "$(url 0)" --db "$T/jobs.db" run --drain 2>/dev/null
	WAIT_SECS=30 wait_for widgetd --bus "$(url 2)" get result-wfc
	run -0 widgetd --bus "$(url 2)" get result-wfc
	[ "$(jq -r '.type + " " + .status' <<<"$output")" = "result completed" ]
	run -1 widgetd --bus "$(url 2)" get progress-wfc
}

@test "no quorum: with two of three nodes gone, evpub and evsub exit 69 saying so and naming the address; --status shows no quorum" {
	start_cluster
	kill -9 "${NODE_PID[1]}" "${NODE_PID[2]}"
	wait_for gone "${NODE_PID[1]}"
	wait_for gone "${NODE_PID[2]}"
	local u
	u=$(url 0)
	run -69 --separate-stderr evpub --bus "$u" q:x e
	[[ $stderr == "evpub: "*"'$u'"*"no quorum"* ]] || fail "$stderr"
	run -69 --separate-stderr evsub --bus "$u" -n 1 '**'
	[[ $stderr == "evsub: "*"'$u'"*"no quorum"* ]] || fail "$stderr"
	# The stream's status as the surviving node knows it: no quorum (or
	# the same words when it cannot answer either).
	no_quorum() {
		local out rc=0
		out=$(evbusd --status --bus "$u" 2>&1) || rc=$?
		if ((rc == 0)); then
			jq -e '.cluster.quorum == false' <<<"$out" >/dev/null
		else
			((rc == 69)) && [[ $out == *"no quorum"* ]]
		fi
	}
	WAIT_SECS=60 wait_for no_quorum
}
