# bash completion for widgetd(1)
_widgetd() {
	local cur prev
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	case $prev in
	--tls-cert | --tls-key | --tls-ca)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--config | --cases-db | --state | --pidfile | --log)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--bus | --throttle | -W | --wait | --http)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W '--bus --tls-cert --tls-key --tls-ca --config --cases-db --state --throttle
			--daemon --pidfile --log -q --quiet -v --verbose --http --insecure -W --wait --help --version' -- "$cur"))
	elif [[ $prev == session ]]; then
		COMPREPLY=($(compgen -W 'start stop' -- "$cur"))
	else
		COMPREPLY=($(compgen -W 'get view session' -- "$cur"))
	fi
}
complete -F _widgetd widgetd
