#!/usr/bin/env bats
# Completions: bash (the functions called as bash calls them, COMP_WORDS
# and COMP_CWORD set), zsh (a real interactive zsh on a pty) and fish
# (complete -C).  Patterns are quoted, never globbed into file names, and
# a subcommand gets only its own options.
load helpers

COMP=$BATS_TEST_DIRNAME/../completions

setup() {
	# File names a glob would find: a '**' let loose here shows them.
	cd "$BATS_TEST_TMPDIR"
	touch afile bfile workflow:x
}

# bcomp PROG WORD... — what bash completion offers for the last WORD, one a
# line, with COMP_WORDS split at ':' as bash splits them.
bcomp() {
	local prog=$1 w
	shift
	bash -c '
		prog=$1; shift
		source "'"$COMP"'/$prog.bash"
		COMP_WORDS=("$prog")
		for w in "$@"; do
			# bash cuts words at COMP_WORDBREAKS (":" among them)
			while [[ $w == *:* ]]; do
				COMP_WORDS+=("${w%%:*}" ":")
				w=${w#*:}
			done
			COMP_WORDS+=("$w")
		done
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMPREPLY=()
		"_$prog"
		printf "%s\n" "${COMPREPLY[@]}"
	' bcomp "$prog" "$@"
}

@test "bash: evsub offers topic patterns quoted, and never globs '**' into file names" {
	run -0 bcomp evsub ''
	assert_line "'**'"
	assert_line "'workflow:**'"
	refute_line --partial afile
	refute_line --partial 'workflow:x'
	run -0 bcomp evsub 'wor'
	assert_output "$(printf '%s\n' "'workflow:*'" "'workflow:**'")"
}

@test "bash: after 'topic:' the rest of the pattern is offered quoted" {
	run -0 bcomp evsub 'workflow:'
	assert_output "$(printf '%s\n' "'*'" "'**'")"
	run -0 bcomp evsub --exclude 'case:cr'
	assert_output "$(printf '%s\n' "'created'" "'created:*'")"
}

@test "bash: after an opening quote the pattern is offered bare" {
	run -0 bcomp evsub "'workflow"
	assert_output "$(printf '%s\n' 'workflow:*' 'workflow:**')"
}

@test "bash: evworker offers only the options of the subcommand being typed" {
	run -0 bcomp evworker --
	assert_output "$(printf '%s\n' --db --bus --tls-cert --tls-key --tls-ca --quiet --verbose --help --version)"
	run -0 bcomp evworker run --
	assert_output "$(printf '%s\n' --queue --concurrency --drain --grace)"
	run -0 bcomp evworker --db x list --st
	assert_output --state
	run -0 bcomp evworker enqueue --max
	assert_output --max-attempts
	run -0 bcomp evworker on --name n ''
	assert_line "'workflow:**'"
	refute_line --partial afile
}

@test "bash: casectl and widgetd offer only the options of the subcommand" {
	run -0 bcomp casectl ingest --
	assert_output "$(printf '%s\n' --strict --batch)"
	run -0 bcomp casectl list --
	assert_output "$(printf '%s\n' --agency --offender --since --sort --limit)"
	run -0 bcomp casectl init --
	assert_output --admin
	run -0 bcomp widgetd session ''
	assert_output "$(printf '%s\n' start stop)"
	run -0 bcomp widgetd view --
	assert_output ''
}

@test "bash: file arguments complete file names, --bus URLs" {
	run -0 bcomp evpub -f a
	assert_output afile
	run -0 bcomp evpub --bus ipc
	assert_output ipc://
	run -0 bcomp evpub --r
	assert_output --raw
}

# zcomp LINE — the matches an interactive zsh offers for LINE<Tab>.
zcomp() {
	timeout 20 zsh -f "$BATS_TEST_DIRNAME/tools/zsh-complete.zsh" "$COMP" "$1" \
		"$BATS_TEST_TMPDIR/zout" || return
	sort -u "$BATS_TEST_TMPDIR/zout"
}

@test "zsh: subcommands, their own options and quoted patterns" {
	command -v zsh >/dev/null || skip "zsh is not installed (make deps)"
	run -0 zcomp 'evworker '
	assert_output "$(printf '%s\n' cancel enqueue list on prune retry run show stats wait)"
	run -0 zcomp 'evworker run --'
	assert_output "$(printf '%s\n' --concurrency --drain --grace --queue)"
	run -0 zcomp 'evworker list --state d'
	assert_output discarded
	run -0 zcomp 'casectl ingest --'
	assert_output "$(printf '%s\n' --batch --strict)"
	run -0 zcomp 'evsub wor'
	assert_output "$(printf '%s\n' 'workflow:\*' 'workflow:\*\*')"
	run -0 zcomp 'evpub --r'
	assert_output --raw
}

@test "zsh: the installed _evkit serves all six programs" {
	command -v zsh >/dev/null || skip "zsh is not installed (make deps)"
	run -0 zsh -f -c "fpath=('$COMP' \$fpath); autoload -U compinit; compinit -u -D
		for p in evbusd evpub evsub evworker casectl widgetd; do print \$p=\$_comps[\$p]; done"
	assert_output "$(printf '%s=_evkit\n' evbusd evpub evsub evworker casectl widgetd)"
}

# fcomp LINE — what fish offers for LINE (candidates only).
fcomp() {
	local prog=${1%% *}
	fish --no-config -c "source '$COMP/fish/$prog.fish'; complete -C '$1'" | cut -f 1
}

@test "fish: subcommands, their own options and patterns" {
	command -v fish >/dev/null || skip "fish is not installed (make deps)"
	local f
	for f in "$COMP"/fish/*.fish; do fish --no-config -n "$f"; done
	run -0 fcomp 'evworker run --'
	assert_output "$(printf '%s\n' --concurrency --drain --grace --queue)"
	run -0 fcomp 'evworker --'
	assert_output "$(printf '%s\n' --bus --db --help --quiet --tls-ca --tls-cert --tls-key --verbose --version)"
	run -0 fcomp 'casectl user '
	assert_output "$(printf '%s\n' add list)"
	run -0 fcomp 'evsub wor'
	assert_output "$(printf '%s\n' 'workflow:*' 'workflow:**')"
	run -0 fcomp 'evpub --r'
	assert_output --raw
}

@test "every long flag of each program is offered by its zsh and fish completions" {
	command -v zsh >/dev/null && command -v fish >/dev/null || skip "zsh or fish missing"
	local p flag z f
	for p in evbusd evpub evsub evworker casectl widgetd; do
		z=$(cat "$COMP/_evkit")
		f=$(cat "$COMP/fish/$p.fish")
		for flag in $("$p" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
			[[ $z == *"$flag["* || $z == *"$flag\""* || $z == *",$flag}"* ]] || fail "zsh: $p lacks $flag"
			[[ $f == *"-l ${flag#--} "* ]] || fail "fish: $p lacks $flag"
		done
	done
}

# declared PROG — the long options PROG's own table declares, as PROG
# tells them: its --help, and for casectl and evworker, which list only
# some options in --help, the words their completion helpers answer.
declared() {
	case $1 in
	casectl) casectl --complete-words options ;;
	evworker)
		evworker --complete
		for c in $(evworker --complete | grep -v -- '^-' | cut -f 1); do evworker "$c" --complete; done
		;;
	*) "$1" --help | grep -o -- '--[a-z][a-z-]*' ;;
	esac | grep -- '^--' | sort -u
}

@test "every option a completion offers is one its program declares" {
	command -v zsh >/dev/null && command -v fish >/dev/null || skip "zsh or fish missing"
	local p flag known offered
	for p in evbusd evpub evsub evworker casectl widgetd; do
		known=$(declared "$p")
		[ -n "$known" ] || fail "$p declares no option"
		offered=$({
			grep -- '^ *complete ' "$COMP/fish/$p.fish" | grep -o -- ' -l [a-z][a-z-]*' |
				sed 's/^ -l /--/'
			awk -v f="_$p() {" '$0 == f { on = 1 } on { print } on && $0 == "}" { exit }' \
				"$COMP/_evkit" | grep -o -- '--[a-z][a-z-]*'
			bcomp "$p" --
			for sub in $(bcomp "$p" ''); do bcomp "$p" "$sub" --; done
		} | grep -- '^--' | sort -u)
		for flag in $offered; do
			grep -qx -- "$flag" <<<"$known" || fail "$p: a completion offers $flag, which $p does not declare"
		done
	done
}

@test "fish offers the subcommands casectl's and evworker's tables declare" {
	command -v fish >/dev/null || skip "fish is not installed (make deps)"
	[ "$(fcomp 'casectl ' | sort)" = "$(casectl --complete-words commands | sort)" ]
	[ "$(fcomp 'evworker ' | sort)" = "$(evworker --complete | grep -v -- '^-' | cut -f 1 | sort)" ]
}
