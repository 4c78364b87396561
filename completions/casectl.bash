# bash completion for casectl(1): the subcommand first, then only its own
# options.
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

_casectl() {
	local cur prev words cword cmd
	_evkit_init
	_evkit_subcommand init user create get list update sync destroy ingest outbox watch
	case $prev in
	--db) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222'; return ;;
	--role) _evkit_reply 'admin editor viewer'; return ;;
	--sort)
		_evkit_reply 'inserted_at updated_at offence_action_date offence_fine
			offence_costs case_reference last_synced_at'
		return
		;;
	--actor | --admin | --agency | --offender | --since | --limit | \
		--refetch-window | -n | --count | --max-line | --batch)
		return
		;;
	esac
	local filters='--agency --offender --since --sort --limit'
	if [[ $cur == -* ]]; then
		case $cmd in
		'') _evkit_reply '--db --bus --actor --max-line --help --version' ;;
		init) _evkit_reply '--admin' ;;
		user) _evkit_reply '--role' ;;
		list) _evkit_reply "$filters" ;;
		watch) _evkit_reply "$filters --refetch-window --count" ;;
		ingest) _evkit_reply '--strict --batch' ;;
		esac
	elif [[ -z $cmd ]]; then
		_evkit_reply 'init user create get list update sync destroy ingest outbox watch'
	elif [[ $cmd == user && $prev == user ]]; then
		_evkit_reply 'add list'
	elif [[ $cmd == outbox && $prev == outbox ]]; then
		_evkit_reply 'list flush'
	elif [[ $cmd == create || $cmd == ingest ]]; then
		_evkit_files
	fi
}
complete -F _casectl casectl
