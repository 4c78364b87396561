# bash completion for evpub(1)
_evpub() {
	local cur prev
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	case $prev in
	--tls-cert | --tls-key | --tls-ca)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	-f | --file)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--bus)
		COMPREPLY=($(compgen -W 'ipc:// tcp://127.0.0.1:' -- "$cur"))
		return
		;;
	-t | --topic | -e | --event | --max-line)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W '--bus --tls-cert --tls-key --tls-ca --file --topic --event --strict --echo
			--max-line --help --version' -- "$cur"))
	fi
}
complete -F _evpub evpub
