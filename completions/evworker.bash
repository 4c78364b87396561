# bash completion for evworker(1): the subcommand first, then only its
# own options.
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_evworker() {
	local cur prev words cword cmd
	_evkit_init
	local cmds='enqueue run list show cancel retry prune stats on'
	# wait, where this evworker has it
	evworker --help 2>/dev/null | grep -qE '^  wait ' && cmds+=' wait'
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
	local enq='--queue --priority --max-attempts --backoff --timeout --in --at
		--unique-for --workflow --resource'
	if [[ $cur == -* ]]; then
		case $cmd in
		'') _evkit_reply '--db --bus --tls-cert --tls-key --tls-ca --help --version' ;;
		enqueue) _evkit_reply "$enq --steps --" ;;
		run) _evkit_reply '--queue --concurrency --drain --grace' ;;
		list) _evkit_reply '--state --queue' ;;
		prune) _evkit_reply '--older-than' ;;
		wait) _evkit_reply '--workflow --timeout' ;;
		on) _evkit_reply "--name --ready-file $enq --" ;;
		esac
	elif [[ -z $cmd ]]; then
		_evkit_reply "$cmds"
	elif [[ $cmd == on ]]; then
		_evkit_patterns "$_EVKIT_PATTERNS"
	fi
}
complete -F _evworker evworker
