# bash completion for casectl(1)
_casectl() {
	local cur prev cmd i
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		init | user | create | get | list | update | sync | destroy | ingest | outbox | watch)
			cmd=${COMP_WORDS[i]}
			break
			;;
		esac
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
	--role)
		COMPREPLY=($(compgen -W 'admin editor viewer' -- "$cur"))
		return
		;;
	--sort)
		COMPREPLY=($(compgen -W 'inserted_at updated_at offence_action_date
			offence_fine offence_costs case_reference last_synced_at' -- "$cur"))
		return
		;;
	--bus | --actor | --admin | --agency | --offender | --since | --limit | \
		--refetch-window | -n | --count | --max-line | --batch)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W '--db --bus --tls-cert --tls-key --tls-ca --actor --admin --role --agency
			--offender --since --sort --limit --refetch-window --count --strict
			--max-line --batch --help --version' -- "$cur"))
	elif [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W 'init user create get list update sync destroy
			ingest outbox watch' -- "$cur"))
	elif [[ $cmd == user && $prev == user ]]; then
		COMPREPLY=($(compgen -W 'add list' -- "$cur"))
	elif [[ $cmd == outbox && $prev == outbox ]]; then
		COMPREPLY=($(compgen -W 'list flush' -- "$cur"))
	fi
}
complete -F _casectl casectl
