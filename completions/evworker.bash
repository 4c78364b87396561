# bash completion for evworker(1): the subcommand first, then only its
# own options. The commands and each command's options come from evworker
# itself (`evworker [COMMAND] --complete`, read from its one table of
# commands and options), so they never drift.
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_evworker() {
	local cur prev words cword cmd cmds
	_evkit_init
	cmds=$(evworker --complete 2>/dev/null | grep -v -- '^-' | cut -f 1)
	# shellcheck disable=SC2086
	_evkit_subcommand $cmds
	case $prev in
	--tls-cert | --tls-key | --tls-ca) _evkit_files; return ;;
	--db | --steps | --ready-file) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222'; return ;;
	--state)
		_evkit_reply 'available scheduled executing retryable completed discarded cancelled'
		return
		;;
	--queue | --priority | --max-attempts | --backoff | --timeout | --in | \
		--at | --unique-for | --workflow | --resource | --concurrency | --grace | \
		--older-than | --name)
		return
		;;
	esac
	local i
	for ((i = 1; i < cword; i++)); do
		[[ ${words[i]} == -- ]] && { _evkit_files; return; } # the command's own words
	done
	if [[ $cur == -* ]]; then
		# shellcheck disable=SC2086
		_evkit_reply "$(evworker $cmd --complete 2>/dev/null | grep -- '^-')"
	elif [[ -z $cmd ]]; then
		_evkit_reply "$cmds"
	elif [[ $cmd == on ]]; then
		_evkit_patterns "$_EVKIT_PATTERNS"
	fi
}
complete -F _evworker evworker
