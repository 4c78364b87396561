# bash completion for evbusd(1)
_evbusd() {
	local cur prev
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	case $prev in
	--tls-cert | --tls-key | --tls-ca)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--store | --pidfile | --log)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--bus)
		COMPREPLY=($(compgen -W 'ipc:// tcp://127.0.0.1:' -- "$cur"))
		return
		;;
	--retain)
		return
		;;
	esac
	COMPREPLY=($(compgen -W '--bus --tls-cert --tls-key --tls-ca --insecure --store --memory --retain --daemon
		--pidfile --log -q --quiet -v --verbose --status --help --version' -- "$cur"))
}
complete -F _evbusd evbusd
