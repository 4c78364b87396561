# bash completion for evpub(1)
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_evpub() {
	local cur prev words cword
	_evkit_init
	case $prev in
	--tls-cert | --tls-key | --tls-ca) _evkit_files; return ;;
	-f | --file) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222'; return ;;
	-t | --topic | -e | --event | --max-line | --raw) return ;;
	esac
	if [[ $cur == -* ]]; then
		_evkit_reply '--bus --tls-cert --tls-key --tls-ca --file --topic --event --raw --strict --echo
			--max-line --help --version'
	fi
}
complete -F _evpub evpub
