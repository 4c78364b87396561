# bash completion for evworker(1)
_evworker() {
	local cur prev cmd i
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		enqueue | run | list | show | cancel | retry | prune | stats | on)
			cmd=${COMP_WORDS[i]}
			break
			;;
		--) return ;;
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
		COMPREPLY=($(compgen -W '--db --bus --tls-cert --tls-key --tls-ca --queue --priority --max-attempts
			--backoff --timeout --in --at --unique-for --workflow --resource --steps
			--concurrency --drain --grace --state --older-than --name --ready-file
			--help --version' -- "$cur"))
	elif [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W 'enqueue run list show cancel retry prune stats on' -- "$cur"))
	fi
}
complete -F _evworker evworker
