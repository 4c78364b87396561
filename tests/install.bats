#!/usr/bin/env bats
# make install / uninstall: programs, man pages and completions where a
# packager expects them, pages that render cleanly, completions that work.
load helpers

PROGRAMS="casectl evbusd evpub evsub evworker widgetd"

setup() {
	STAGE=$BATS_TEST_TMPDIR/stage
	make -s -C "$BATS_TEST_DIRNAME/.." install PREFIX=/usr/local DESTDIR="$STAGE" >/dev/null
}
teardown() { stop_all; }

@test "make install puts 6 programs, 8 man pages and the bash, zsh and fish completions in place" {
	local p
	run ls "$STAGE/usr/local/bin"
	assert_output "$(tr ' ' '\n' <<<"$PROGRAMS")"
	for p in $PROGRAMS; do
		[ -x "$STAGE/usr/local/bin/$p" ]
		[ -f "$STAGE/usr/local/share/man/man1/$p.1" ]
		[ -f "$STAGE/usr/local/share/bash-completion/completions/$p" ]
		[ -f "$STAGE/usr/local/share/fish/vendor_completions.d/$p.fish" ]
	done
	[ -f "$STAGE/usr/local/share/man/man7/evkit.7" ]
	grep -q '^#compdef evbusd evpub evsub evworker casectl widgetd$' \
		"$STAGE/usr/local/share/zsh/vendor-completions/_evkit"
	[ "$(find "$STAGE/usr/local/share/man" -type f | wc -l)" -eq 8 ]
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

@test "the installed fish completions find their shared part where they are installed" {
	command -v fish >/dev/null || skip "fish is not installed (make deps)"
	local comp=$STAGE/usr/local/share/fish/vendor_completions.d
	[ -f "$comp/evkit-common.fish" ]
	run -0 fish --no-config -c "set fish_complete_path '$comp' \$fish_complete_path
		complete -C 'evworker run --'; complete -C 'casectl us'"
	[ "$(cut -f 1 <<<"$output")" = "$(printf '%s\n' --concurrency --drain --grace --queue user)" ] ||
		fail "$output"
}

@test "make uninstall removes what make install put" {
	make -s -C "$BATS_TEST_DIRNAME/.." uninstall PREFIX=/usr/local DESTDIR="$STAGE" >/dev/null
	run find "$STAGE" -type f
	assert_output ''
}

# The inner files' test keyword, spelled so that bats does not take the
# lines of a here-document for tests of this file.
AT=@

# run_clean CMD... — CMD in a clean environment: none of this run's BATS_*
# variables, no EVKIT_BIN, a PATH without the tree's programs, and not
# this run's descriptor 3 (bats' own channel).
run_clean() {
	run env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME" LC_ALL=C.UTF-8 \
		TMPDIR="$BATS_TEST_TMPDIR" "$@" 3>&-
	echo "$output"
}

@test "the bats library installs at PREFIX/share/evkit/bats/load.bash" {
	cmp "$BATS_TEST_DIRNAME/../share/bats/load.bash" "$STAGE/usr/local/share/evkit/bats/load.bash"
}

@test "a bats file outside the tree loads the installed library (PREFIX=/usr) and asserts a deploy event" {
	local D=$BATS_TEST_TMPDIR/D
	make -s -C "$BATS_TEST_DIRNAME/.." install PREFIX=/usr DESTDIR="$D" >/dev/null
	mkdir "$BATS_TEST_TMPDIR/elsewhere"
	cat >"$BATS_TEST_TMPDIR/elsewhere/deploy.bats" <<-EOF
		load '$D/usr/share/evkit/bats/load'
		setup() { evkit_setup; }
		teardown() { evkit_teardown; }
		deploy() { evpub "deploy:\$1" finished "{\"version\":\"\$2\"}"; }
		${AT}test "deploy announces the version" {
			[ "\$(command -v evpub)" = '$D/usr/bin/evpub' ]
			evkit_listen 'deploy:**'
			deploy web 1.4.2
			assert_event 'deploy:*' finished --payload '.version == "1.4.2"'
		}
		${AT}test "a failing assert_event lists what arrived" {
			evkit_listen 'deploy:**'
			deploy web 1.4.1
			run assert_event 'deploy:*' finished --payload '.version == "1.4.2"' --within 0.2
			[ "\$status" -eq 1 ]
			[[ \$output == *'arrived (1 event):'* ]]
			[[ \$output == *'#1 deploy:web finished {"version":"1.4.1"}'* ]]
		}
	EOF
	run_clean bats "$BATS_TEST_TMPDIR/elsewhere/deploy.bats"
	[ "$status" -eq 0 ]
	assert_line "ok 1 deploy announces the version"
	assert_line "ok 2 a failing assert_event lists what arrived"
}

@test "bats_load_library evkit/bats finds the installed library through BATS_LIB_PATH" {
	cat >"$BATS_TEST_TMPDIR/lib.bats" <<-EOF
		bats_load_library evkit/bats
		setup() { evkit_setup; }
		teardown() { evkit_teardown; }
		${AT}test "loaded" {
			evkit_listen
			evpub demo:1 tick
			assert_event_count 1 'demo:*' tick
		}
	EOF
	run_clean env BATS_LIB_PATH="$STAGE/usr/local/share" bats "$BATS_TEST_TMPDIR/lib.bats"
	[ "$status" -eq 0 ]
}

@test "make install puts libevkit.so (with its SONAME), the headers and evkit.pc in place" {
	local lib=$STAGE/usr/local/lib
	[ -f "$lib/libevkit.so.0.1.0" ] && [ -f "$lib/libevkit.a" ]
	[ "$(readlink "$lib/libevkit.so")" = libevkit.so.0 ]
	[ "$(readlink "$lib/libevkit.so.0")" = libevkit.so.0.1.0 ]
	run -0 readelf -d "$lib/libevkit.so.0.1.0"
	assert_line --regexp 'SONAME.*\[libevkit\.so\.0\]'
	[ -f "$STAGE/usr/local/include/evkit/bus.h" ]
	run -0 env PKG_CONFIG_PATH="$lib/pkgconfig" pkg-config --modversion evkit
	assert_output "$(sed -n 's/^VERSION *:= *//p' "$BATS_TEST_DIRNAME/../Makefile")"
	run -0 env PKG_CONFIG_PATH="$lib/pkgconfig" pkg-config --print-requires-private evkit
	assert_line --partial libcjson
	assert_line --partial sqlite3
	run -0 env PKG_CONFIG_PATH="$lib/pkgconfig" pkg-config --static --libs evkit
	assert_output --partial '-lnng'
}

@test "libevkit.so exports only functions the installed headers declare" {
	local so=$STAGE/usr/local/lib/libevkit.so.0.1.0 inc=$STAGE/usr/local/include/evkit
	local declared
	declared=$(cat "$inc"/*.h | grep -o '[A-Za-z_][A-Za-z0-9_]*' | sort -u)
	run -0 nm -D --defined-only "$so"
	local n=0 extra=() sym
	for sym in $(awk '$2 == "T" { print $3 }' <<<"$output"); do
		n=$((n + 1))
		grep -qxF -- "$sym" <<<"$declared" || extra+=("$sym")
	done
	[ "$n" -gt 100 ] || fail "only $n functions exported"
	[ "${#extra[@]}" -eq 0 ] || fail "exported, declared in no installed header: ${extra[*]}"
}

@test "a C program built with pkg-config against the staged install publishes and subscribes" {
	# Under `make check-san` the installed library is the sanitized one, and
	# a program linking it needs the same runtime first.
	local san=()
	[[ $EVKIT_BIN == */build/san/bin ]] && san=(-fsanitize=address,undefined)
	cat >"$BATS_TEST_TMPDIR/hello.c" <<-'EOF'
		#include <evkit/bus.h>
		#include <evkit/err.h>
		#include <cjson/cJSON.h>
		#include <stdio.h>

		int
		main(void)
		{
			char url[EVK_URL_MAX];
			const char *why;
			struct evk_sub *sub;
			struct evk_event ev;
			uint64_t seq = 0;

			if (evk_bus_resolve(NULL, url, sizeof(url), &why) != EVK_OK)
				return fprintf(stderr, "hello: %s\n", why), 2;
			if (evk_sub_open(&sub, url, EVK_SINCE_LIVE) != EVK_OK)
				return fprintf(stderr, "hello: cannot subscribe\n"), 69;
			cJSON *payload = cJSON_Parse("{\"version\":\"1.4.2\"}");
			if (payload == NULL || evk_publish(url, "deploy:web", "finished", payload, &seq) != EVK_OK)
				return fprintf(stderr, "hello: cannot publish\n"), 69;
			cJSON_Delete(payload);
			if (evk_sub_next(sub, &ev, 20000) != EVK_OK)
				return fprintf(stderr, "hello: nothing came\n"), 1;
			printf("%d %.*s %.*s %.*s\n", ev.seq == seq, (int)ev.topic_len, ev.topic,
			       (int)ev.event_len, ev.event, (int)ev.payload_len, ev.payload);
			evk_sub_close(sub);
			return 0;
		}
	EOF
	local lib=$STAGE/usr/local/lib flags
	flags=$(PKG_CONFIG_PATH="$lib/pkgconfig" pkg-config --define-prefix --cflags --libs evkit libcjson)
	# shellcheck disable=SC2086
	run -0 cc -std=c11 -Wall -Wextra -Werror "${san[@]}" -o "$BATS_TEST_TMPDIR/hello" \
		"$BATS_TEST_TMPDIR/hello.c" $flags
	run -0 readelf -d "$BATS_TEST_TMPDIR/hello"
	assert_line --partial '[libevkit.so.0]'
	start_hub --memory
	run -0 env LD_LIBRARY_PATH="$lib" "$BATS_TEST_TMPDIR/hello"
	assert_output '1 deploy:web finished {"version":"1.4.2"}'
}
