# bash completion for casectl(1). The words come from casectl itself
# (casectl --complete-words WHAT reads its command and option tables), so
# a new command, option or sort column needs no edit here.
_casectl() {
	local cur prev cmd i commands
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	commands=$(casectl --complete-words commands 2>/dev/null)
	for ((i = 1; i < COMP_CWORD; i++)); do
		if grep -qxF -- "${COMP_WORDS[i]}" <<<"$commands"; then
			cmd=${COMP_WORDS[i]}
			break
		fi
	done
	case $prev in
	--tls-cert | --tls-key | --tls-ca)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--db)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--role | --sort)
		COMPREPLY=($(compgen -W "$(casectl --complete-words "$prev" 2>/dev/null)" -- "$cur"))
		return
		;;
	--bus | --actor | --admin | --agency | --offender | --since | --limit | \
		--refetch-window | -n | --count | --max-line | --batch)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(casectl --complete-words options 2>/dev/null)" -- "$cur"))
	elif [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$commands" -- "$cur"))
	elif [[ $prev == "$cmd" ]]; then
		COMPREPLY=($(compgen -W "$(casectl --complete-words "$cmd" 2>/dev/null)" -- "$cur"))
	fi
}
complete -F _casectl casectl
