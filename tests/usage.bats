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

# complete PROG WORDS... — what PROG's bash completion offers for the last word.
complete_words() {
	local prog=$1; shift
	source "$BATS_TEST_DIRNAME/../completions/$prog.bash"
	COMP_WORDS=("$prog" "$@")
	COMP_CWORD=$(($# ))
	COMPREPLY=()
	"_$prog"
	printf '%s\n' "${COMPREPLY[@]}"
}

@test "every program has a man page that renders without warnings" {
	local root=$BATS_TEST_DIRNAME/..
	for p in $(programs); do
		[ -f "$root/man/$p.1" ] || fail "no man page for $p"
		run -0 --separate-stderr mandoc -T lint "$root/man/$p.1"
		[ -z "$output$stderr" ] || fail "$p.1: $output$stderr"
		run -0 --separate-stderr groff -ww -t -man -Tutf8 "$root/man/$p.1"
		[ -z "$stderr" ] || fail "$p.1: $stderr"
	done
	run -0 --separate-stderr mandoc -T lint "$root/man/evkit.7"
	[ -z "$output$stderr" ]
}

@test "every long flag in a program's --help is offered by its bash completion" {
	for p in $(programs); do
		[ -f "$BATS_TEST_DIRNAME/../completions/$p.bash" ] || fail "no completion for $p"
		local offered flag
		# Options are offered where they apply: at the top or after a
		# subcommand (evworker run --drain), so every place is asked.
		offered=$(complete_words "$p" --
			for sub in $(complete_words "$p" ''); do complete_words "$p" "$sub" --; done)
		for flag in $("$p" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
			grep -qx -- "$flag" <<<"$offered" || fail "$p: completion lacks $flag"
		done
	done
}

@test "every long flag in a program's --help is in its man page" {
	for p in $(programs); do
		local page flag
		page=$(MANWIDTH=200 man -l "$BATS_TEST_DIRNAME/../man/$p.1" 2>/dev/null)
		for flag in $("$p" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
			grep -q -- "$flag" <<<"$page" || fail "$p: man page lacks $flag"
		done
	done
}

@test "every program's --help fits one screen: at most 40 lines of at most 80 columns" {
	for p in $(programs); do
		run -0 "$p" --help
		((${#lines[@]} <= 40)) || fail "$p: ${#lines[@]} lines"
		local l
		for l in "${lines[@]}"; do
			((${#l} <= 80)) || fail "$p: a line of ${#l} columns: $l"
		done
	done
}

# The programs whose usage errors follow git and mosquitto: one line that
# says what is wrong, then where to look.
switched() { echo evpub evsub evbusd evworker widgetd casectl; }

@test "a usage error is one line and a --help hint, not the whole usage" {
	for p in $(switched); do
		run -2 --separate-stderr "$p" --no-such-flag
		[ "$stderr" = "$p: unknown option '--no-such-flag'"$'\n'"Try '$p --help' for more information." ] ||
			fail "$p: $stderr"
		[ -z "$output" ] || fail "$p: stdout: $output"
	done
}

@test "a missing option argument is named" {
	for p in $(switched); do
		run -2 --separate-stderr "$p" --bus
		[ "${stderr_lines[0]}" = "$p: option '--bus' needs an argument" ] || fail "$p: $stderr"
		run -2 --separate-stderr "$p" --help=x
		[ "${stderr_lines[0]}" = "$p: option '--help' takes no argument" ] || fail "$p: $stderr"
	done
}

@test "a bad number names the flag, the range and the value, in one wording" {
	run -2 --separate-stderr evpub --max-line 0
	[ "${stderr_lines[0]}" = "evpub: --max-line wants a whole number from 1 to 1073741824, not '0'" ]
	run -2 --separate-stderr evbusd --retain x
	[ "${stderr_lines[0]}" = "evbusd: --retain wants a whole number from 1 to 9223372036854775807, not 'x'" ]
	run -2 --separate-stderr evsub -W -1 '**'
	[ "${stderr_lines[0]}" = "evsub: --timeout wants seconds from 0 to 1000000000, not '-1'" ]
	run -2 --separate-stderr widgetd --throttle 5ms
	[ "${stderr_lines[0]}" = "widgetd: --throttle wants a whole number from 1 to 86400000, not '5ms'" ]
	run -2 --separate-stderr evworker --priority 12 enqueue -- true
	[ "${stderr_lines[0]}" = "evworker: --priority wants a whole number from 0 to 9, not '12'" ]
	[ "${stderr_lines[1]}" = "Try 'evworker --help' for more information." ]
}

@test "a missing argument is named" {
	run -2 --separate-stderr evsub
	[ "$stderr" = "evsub: missing PATTERN (use '**' for every topic)"$'\n'"Try 'evsub --help' for more information." ]
	run -2 --separate-stderr evpub a
	[ "${stderr_lines[0]}" = "evpub: missing EVENT after TOPIC 'a'" ]
	run -2 --separate-stderr widgetd session
	[ "$stderr" = "widgetd session: missing start or stop"$'\n'"Try 'widgetd session --help' for more information." ]
}

@test "casectl's argument errors are one line naming what is wrong, plus the --help hint" {
	local db=$BATS_TEST_TMPDIR/c.db
	casectl --db "$db" init --admin me >/dev/null
	run -2 --separate-stderr casectl --db "$db" --actor me get
	[ "$stderr" = "casectl get: missing ID"$'\n'"Try 'casectl get --help' for more information." ]
	run -2 --separate-stderr casectl --db "$db" --actor me update 1
	[ "${stderr_lines[0]}" = "casectl update: missing JSON after ID" ]
	run -2 --separate-stderr casectl --db "$db" --actor me list extra
	[ "${stderr_lines[0]}" = "casectl list: unexpected argument 'extra'" ]
	run -2 --separate-stderr casectl --db "$db" --actor me user add x
	[ "${stderr_lines[0]}" = "casectl user: missing --role for 'x' (admin, editor or viewer)" ]
	run -2 --separate-stderr casectl --db "$db"
	[ "${#stderr_lines[@]}" -eq 2 ]
	[[ ${stderr_lines[0]} == "casectl: missing COMMAND ("* ]]
}
