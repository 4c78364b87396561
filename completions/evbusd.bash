# bash completion for evbusd(1)
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_evbusd() {
	local cur prev words cword
	_evkit_init
	case $prev in
	--tls-cert | --tls-key | --tls-ca) _evkit_files; return ;;
	--store | --pidfile | --log) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp://'; return ;;
	--retain) return ;;
	--synchronous) _evkit_reply 'normal full'; return ;;
	esac
	_evkit_reply '--bus --tls-cert --tls-key --tls-ca --insecure --store --memory --retain --synchronous
		--daemon --pidfile --log --quiet --verbose --status --help --version'
}
complete -F _evbusd evbusd
