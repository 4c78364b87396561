#!/usr/bin/env bats
# Every program: --help on stdout with exit 0, --version, bad flags exit 2.
load helpers

programs() { ls "$EVKIT_BIN"; }

@test "every program prints its usage on stdout and exits 0 for --help" {
	for p in $(programs); do
		run -0 --separate-stderr "$p" --help
		assert_output --partial "usage: $p"
		[ -z "$stderr" ]
	done
}

@test "every program exits 2 with a message naming itself on an unknown flag" {
	for p in $(programs); do
		run -2 --separate-stderr "$p" --no-such-flag
		[[ $stderr == *"$p"* ]] || fail "$p: stderr lacks its name: $stderr"
	done
}

@test "every program prints the same version" {
	local want
	want=$(sed -n 's/^VERSION *:= *//p' "$BATS_TEST_DIRNAME/../Makefile")
	for p in $(programs); do
		run -0 "$p" --version
		assert_output "$p $want"
	done
}
