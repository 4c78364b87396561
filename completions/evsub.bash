# bash completion for evsub(1)
_evsub() {
	local cur prev
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	case $prev in
	--tls-cert | --tls-key | --tls-ca)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--ready-file)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--bus)
		COMPREPLY=($(compgen -W 'ipc:// tcp://127.0.0.1:' -- "$cur"))
		return
		;;
	-o | --format)
		COMPREPLY=($(compgen -W 'json payload text tsv' -- "$cur"))
		return
		;;
	--throttle-key)
		COMPREPLY=($(compgen -W 'topic+event topic event' -- "$cur"))
		return
		;;
	--exclude | --event | --until | -n | --count | -W | --timeout | --since | \
		-F | --template | --throttle | --debounce | --batch | --batch-size)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W '--bus --tls-cert --tls-key --tls-ca --exclude --event --until --count
			--timeout --since --ready-file --format --template --throttle
			--throttle-key --debounce --batch --batch-size --latest --snapshot --stats
			--help --version' -- "$cur"))
	else
		COMPREPLY=($(compgen -W 'workflow:** process:** resource:** case:**
			widget:** **' -- "$cur"))
	fi
}
complete -F _evsub evsub
