# bash completion for evworker(1). The commands and each command's
# options come from evworker itself (`evworker [COMMAND] --complete`, read
# from its one table of commands and options), so they never drift.
_evworker() {
	local cur prev cmd i words
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	words=$(evworker --complete 2>/dev/null)
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--) return ;;
		-*) ;;
		*)
			if grep -qx -- "${COMP_WORDS[i]}" <<<"$words"; then
				cmd=${COMP_WORDS[i]}
				break
			fi
			;;
		esac
	done
	case $prev in
	--tls-cert | --tls-key | --tls-ca)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--db | --steps | --ready-file)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--state)
		COMPREPLY=($(compgen -W 'available scheduled executing retryable completed
			discarded cancelled' -- "$cur"))
		return
		;;
	--bus | --queue | --priority | --max-attempts | --backoff | --timeout | --in | \
		--at | --unique-for | --workflow | --resource | --concurrency | --grace | \
		--older-than | --name)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(evworker $cmd --complete 2>/dev/null | grep -- '^-')" -- "$cur"))
	elif [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$(grep -v -- '^-' <<<"$words")" -- "$cur"))
	fi
}
complete -F _evworker evworker
