# bash completion for casectl(1).  The words come from casectl itself:
# commands, sort columns, roles and a command's words from
# `casectl --complete-words WHAT` (its command and option tables), each
# command's options from its line in `casectl --help`, so a new command,
# option or sort column needs no edit here.  After a command only its own
# options are offered.
_evkit_dir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=evkit-common.bash
. "$_evkit_dir/evkit-common" 2>/dev/null || . "$_evkit_dir/evkit-common.bash"
unset _evkit_dir

# _casectl_options — the options of $cmd (the global ones when empty), as
# casectl --help shows them.
_casectl_options() {
	casectl --help 2>/dev/null | awk -v cmd="$cmd" '
		/^filters:/ { filters = $0 }
		cmd == "" && /^  -/ { line = line " " $0 }
		cmd != "" && $1 == cmd { line = line " " $0 }
		END {
			if (line ~ /\[filters\]/) line = line " " filters
			n = split(line, w, /[][ ,|]+/)
			for (i = 1; i <= n; i++) if (w[i] ~ /^--[a-z]/ && !seen[w[i]]++) print w[i]
		}'
}

_casectl() {
	local cur prev words cword cmd
	_evkit_init
	# shellcheck disable=SC2046
	_evkit_subcommand $(casectl --complete-words commands 2>/dev/null)
	case $prev in
	--tls-cert | --tls-key | --tls-ca) _evkit_files; return ;;
	--db) _evkit_files; return ;;
	--bus) _evkit_reply 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222'; return ;;
	--role | --sort) _evkit_reply "$(casectl --complete-words "$prev" 2>/dev/null)"; return ;;
	--actor | --admin | --agency | --offender | --since | --limit | \
		--refetch-window | -n | --count | --max-line | --batch)
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		_evkit_reply "$(_casectl_options)"
	elif [[ -z $cmd ]]; then
		_evkit_reply "$(casectl --complete-words commands 2>/dev/null)"
	elif [[ $prev == "$cmd" && -n $(casectl --complete-words "$cmd" 2>/dev/null) ]]; then
		_evkit_reply "$(casectl --complete-words "$cmd" 2>/dev/null)"
	elif [[ $cmd == create || $cmd == ingest ]]; then
		_evkit_files
	fi
}
complete -F _casectl casectl
