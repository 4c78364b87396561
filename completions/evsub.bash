# bash completion for evsub(1)
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_evsub() {
	local cur prev words cword
	_evkit_init
	case $prev in
	--tls-cert | --tls-key | --tls-ca) _evkit_files; return ;;
	--ready-file) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222'; return ;;
	-o | --format) _evkit_reply 'json payload text tsv'; return ;;
	--throttle-key) _evkit_reply 'topic+event topic event'; return ;;
	--exclude) _evkit_patterns "$_EVKIT_PATTERNS"; return ;;
	--event | --until | -n | --count | -W | --timeout | --since | \
		-F | --template | --throttle | --debounce | --batch | --batch-size)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		_evkit_reply '--bus --tls-cert --tls-key --tls-ca --exclude --event --until --count --timeout --since
			--ready-file --format --template --throttle --throttle-key --debounce
			--batch --batch-size --latest --snapshot --stats --help --version'
	else
		_evkit_patterns "$_EVKIT_PATTERNS"
	fi
}
complete -F _evsub evsub
