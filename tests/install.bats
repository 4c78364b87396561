#!/usr/bin/env bats
# make install / uninstall: programs, man pages and completions where a
# packager expects them, pages that render cleanly, completions that work.
load helpers

PROGRAMS="casectl evbusd evpub evsub evworker widgetd"

setup() {
	STAGE=$BATS_TEST_TMPDIR/stage
	make -s -C "$BATS_TEST_DIRNAME/.." install PREFIX=/usr/local DESTDIR="$STAGE" >/dev/null
}

@test "make install puts 6 programs, 7 man pages and the bash completions in place" {
	local p
	run ls "$STAGE/usr/local/bin"
	assert_output "$(tr ' ' '\n' <<<"$PROGRAMS")"
	for p in $PROGRAMS; do
		[ -x "$STAGE/usr/local/bin/$p" ]
		[ -f "$STAGE/usr/local/share/man/man1/$p.1" ]
		[ -f "$STAGE/usr/local/share/bash-completion/completions/$p" ]
	done
	[ -f "$STAGE/usr/local/share/man/man7/evkit.7" ]
	grep -q '^#compdef evbusd evpub evsub evworker casectl widgetd$' \
		"$STAGE/usr/local/share/zsh/vendor-completions/_evkit"
	[ "$(find "$STAGE/usr/local/share/man" -type f | wc -l)" -eq 7 ]
}

@test "every installed man page renders without warnings" {
	local page
	for page in "$STAGE"/usr/local/share/man/man*/*; do
		run -0 --separate-stderr mandoc -T lint "$page"
		[ -z "$output$stderr" ] || fail "$page: $output$stderr"
		run -0 --separate-stderr man -l "$page"
		[ -z "$stderr" ] || fail "$page: $stderr"
		[ -n "$output" ]
	done
}

@test "the installed completions load in bash and complete commands and flags" {
	local comp=$STAGE/usr/local/share/bash-completion/completions
	run bash -c "
		source '$comp/evworker'
		COMP_WORDS=(evworker en); COMP_CWORD=1; _evworker; echo \"\${COMPREPLY[*]}\"
		COMP_WORDS=(evworker enqueue --max-a); COMP_CWORD=2; _evworker; echo \"\${COMPREPLY[*]}\"
		source '$comp/casectl'
		COMP_WORDS=(casectl us); COMP_CWORD=1; _casectl; echo \"\${COMPREPLY[*]}\"
		COMP_WORDS=(casectl user add x --role e); COMP_CWORD=5; _casectl; echo \"\${COMPREPLY[*]}\"
		source '$comp/evsub'
		COMP_WORDS=(evsub -o p); COMP_CWORD=2; _evsub; echo \"\${COMPREPLY[*]}\"
		source '$comp/widgetd'
		COMP_WORDS=(widgetd v); COMP_CWORD=1; _widgetd; echo \"\${COMPREPLY[*]}\"
	"
	assert_output $'enqueue\n--max-attempts\nuser\neditor\npayload\nview'
}

@test "make uninstall removes what make install put" {
	make -s -C "$BATS_TEST_DIRNAME/.." uninstall PREFIX=/usr/local DESTDIR="$STAGE" >/dev/null
	run find "$STAGE" -type f
	assert_output ''
}
