# bash completion for widgetd(1): the daemon's options, or a subcommand
# and then only its own.
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_widgetd() {
	local cur prev words cword cmd
	_evkit_init
	_evkit_subcommand get view session
	case $prev in
	--tls-cert | --tls-key | --tls-ca) _evkit_files; return ;;
	--config | --cases-db | --state | --pidfile | --log) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222'; return ;;
	--throttle | --max-widgets | -W | --wait | --http) return ;;
	esac
	if [[ $cur == -* ]]; then
		case $cmd in
		'') _evkit_reply '--bus --tls-cert --tls-key --tls-ca --config --cases-db --state --throttle
			--max-widgets --daemon --pidfile --log --quiet --verbose --http --insecure --wait --help --version' ;;
		esac
	elif [[ -z $cmd ]]; then
		_evkit_reply 'get view session'
	elif [[ $cmd == session && $prev == session ]]; then
		_evkit_reply 'start stop'
	fi
}
complete -F _widgetd widgetd
