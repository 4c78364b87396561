#!/usr/bin/env bats
# How another project tests its own events with evkit's bats library
# (evkit-bats(7)): a private hub per test, a recording that is ready before
# the code under test runs, and assertions that wait for what was published
# and show what arrived when they fail.  Run: bats examples/myproject.bats
#
# Installed, the library is /usr/share/evkit/bats/load; from evkit's source
# tree, point EVKIT_BATS_LIB at share/bats/load.
load "${EVKIT_BATS_LIB:-/usr/share/evkit/bats/load}"

setup() { evkit_setup; }
teardown() { evkit_teardown; }

# The code under test: a deploy script that announces what it did.
deploy() {
	evpub "deploy:$1" started "{\"version\":\"$2\"}"
	if [ "$2" = broken ]; then
		evpub "deploy:$1" failed '{"error":"no such version"}'
		return 1
	fi
	evpub "deploy:$1" finished "{\"version\":\"$2\"}"
}

@test "deploy announces deploy:{app} finished with the version" {
	evkit_listen 'deploy:**'
	deploy web 1.4.2
	assert_event 'deploy:*' finished --payload '.version == "1.4.2"'
	assert_events_in_order 'deploy:web' started 'deploy:web' finished
	assert_event_count 1 'deploy:web' finished
	refute_event 'deploy:*' failed
}

@test "a broken deploy announces the failure and never finishes" {
	evkit_listen 'deploy:**'
	run deploy api broken
	[ "$status" -eq 1 ]
	assert_event deploy:api failed --payload '.error | test("version")'
	refute_event deploy:api finished
}
