#!/bin/zsh -f
# capture.zsh DIR 'COMMAND LINE' OUT — completes COMMAND LINE in an
# interactive zsh (on a pty) with the completion functions in DIR and
# writes every match zsh offers, one a line, to OUT.
zmodload zsh/zpty || exit 1
: >$3
zpty z zsh -f -i
zpty -w z "fpath=(${(q)1} \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "PROMPT= ; __out=${(q)3}"
zpty -w z 'compadd() {
	if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
	local -a __hits
	builtin compadd -A __hits "$@"
	(( $#__hits )) || return 1
	print -rl -- "${(@)__hits}" >>$__out
	builtin compadd "$@"
}'
zpty -w z '_evkit_end() { print -r -- "<<END"">>"; exit }; comppostfuncs=(_evkit_end)'
zpty -w z "$2"$'\t'
local line
while zpty -r z line; do
	[[ $line == *'<<END>>'* ]] && break
done
zpty -d z
