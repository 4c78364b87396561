#!/usr/bin/env bats
# How another project tests its own events with evkit: a private hub per
# test, a subscriber that is ready before the code under test runs, and
# assertions on what was published. Run: bats examples/myproject.bats

setup() {
	export EVBUS_URL="ipc://$BATS_TEST_TMPDIR/bus"
	evbusd --memory --daemon --pidfile "$BATS_TEST_TMPDIR/hub.pid"
}

teardown() {
	kill "$(cat "$BATS_TEST_TMPDIR/hub.pid")"
}

# The code under test: a deploy script that announces what it did.
deploy() {
	evpub "deploy:$1" finished "{\"version\":\"$2\"}"
}

@test "deploy announces deploy:{app} finished with the version" {
	evsub --ready-file "$BATS_TEST_TMPDIR/ready" -n 1 -W 10 'deploy:*' >"$BATS_TEST_TMPDIR/got" &
	while [ ! -e "$BATS_TEST_TMPDIR/ready" ]; do sleep 0.01; done
	deploy web 1.4.2
	wait $!
	[ "$(jq -r '.topic + " " + .event + " " + .payload.version' "$BATS_TEST_TMPDIR/got")" = \
		"deploy:web finished 1.4.2" ]
}
