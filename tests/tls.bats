#!/usr/bin/env bats
# tls+tcp:// with client certificates (issue 16, item 7): certificates made
# by openssl here; an authenticated client publishes and subscribes, any
# other is refused with 77; plain tcp beyond loopback needs --insecure.
load helpers

teardown() { stop_all; }

setup() {
	evbusd_only "evbusd's tls+tcp listener"
	test_cert ca self
	test_cert hub ca
	test_cert alice ca
	test_cert mallory self # a certificate the hub's CA never signed
}

# start_tls_hub — a hub on tls+tcp://127.0.0.1:PORT (a free port); sets
# EVBUS_URL and the clients' CA.
start_tls_hub() {
	local d=$BATS_TEST_TMPDIR try
	for try in 1 2 3 4 5; do
		export EVBUS_URL="tls+tcp://127.0.0.1:$((20000 + RANDOM % 20000))"
		if evbusd --store "$d/bus.db" --daemon --pidfile "$d/hub.pid" \
			--tls-cert "$d/hub.crt" --tls-key "$d/hub.key" --tls-ca "$d/ca.crt"; then
			HUB_PID=$(cat "$d/hub.pid")
			export EVBUS_TLS_CA=$d/ca.crt
			return 0
		fi
	done
	return 1
}

as_alice() {
	EVBUS_TLS_CERT=$BATS_TEST_TMPDIR/alice.crt EVBUS_TLS_KEY=$BATS_TEST_TMPDIR/alice.key "$@"
}

@test "a client with a certificate the hub's CA signed publishes and subscribes over tls+tcp" {
	start_tls_hub
	as_alice bg_to "$BATS_TEST_TMPDIR/got" evsub --ready-file "$BATS_TEST_TMPDIR/ready" \
		-n 2 -W 20 'secret:**'
	WAIT_SECS=20 wait_file "$BATS_TEST_TMPDIR/ready"
	run -0 as_alice evpub secret:a told '{"password":"hunter2"}'
	# The flags do what the environment does.
	local d=$BATS_TEST_TMPDIR
	run -0 evpub --tls-cert "$d/alice.crt" --tls-key "$d/alice.key" --tls-ca "$d/ca.crt" \
		secret:b told '{"n":2}'
	WAIT_SECS=20 wait_for json_true '.seq == 2' <"$BATS_TEST_TMPDIR/got"
	run jq -c '[.seq, .topic]' "$BATS_TEST_TMPDIR/got"
	assert_output $'[1,"secret:a"]\n[2,"secret:b"]'
	run -0 as_alice evsub --since 0 -n 2 -W 20 -o payload '**'
	assert_output $'{"password":"hunter2"}\n{"n":2}'
	# The watchdog probes the hub with the hub's own certificate.
	WAIT_SECS=20 as_alice wait_for bash -c "evbusd --status | json_true '.watchdog == \"armed\"'"
}

@test "a client without a certificate, or with one the CA did not sign, is refused with 77" {
	start_tls_hub
	run -0 as_alice evpub t:a stored
	run -77 evpub t:a nocert
	assert_output --partial "permission denied"
	run -77 env EVBUS_TLS_CERT="$BATS_TEST_TMPDIR/mallory.crt" \
		EVBUS_TLS_KEY="$BATS_TEST_TMPDIR/mallory.key" evpub t:a junk
	assert_output --partial "permission denied"
	run -77 evsub --since 0 -n 1 -W 10 '**'
	run -77 evbusd --status
	# Nothing of theirs was stored.
	run -0 as_alice evsub --since 0 -n 1 -W 20 -o json '**'
	run jq -r .event <<<"$output"
	assert_output stored
	run -0 as_alice hub_status_field head_seq
	assert_output 1
}

@test "a client that cannot check the hub (no CA) is refused" {
	start_tls_hub
	unset EVBUS_TLS_CA
	run -77 as_alice evpub t:a x
}

@test "a tls+tcp hub needs its certificate, key and CA" {
	run -2 evbusd --memory --bus tls+tcp://127.0.0.1:1 --tls-cert "$BATS_TEST_TMPDIR/hub.crt"
	assert_output --partial "needs --tls-cert, --tls-key and --tls-ca"
}

@test "a plain tcp hub beyond loopback is refused unless --insecure, which warns" {
	run -2 evbusd --memory --bus "tcp://0.0.0.0:1"
	assert_output --partial "refusing to listen on 'tcp://0.0.0.0:1' without TLS"
	run -2 evbusd --memory --bus "tcp://*:1"
	local try port
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 20000))
		run evbusd --memory --insecure --bus "tcp://0.0.0.0:$port" --daemon \
			--pidfile "$BATS_TEST_TMPDIR/hub.pid"
		((status == 0)) && break
	done
	assert_success
	HUB_PID=$(cat "$BATS_TEST_TMPDIR/hub.pid")
	assert_output --partial "warning: listening on 'tcp://0.0.0.0:$port' without TLS"
	run -0 evpub --bus "tcp://127.0.0.1:$port" t:a tick
}
