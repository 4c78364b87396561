# Shared by evkit's bash completions, which source it (installed next to
# them as "evkit-common").  Replies go into COMPREPLY through mapfile, never
# an unquoted $(...), so a '**' is never globbed into file names.

# _evkit_init — sets cur, prev, words and cword like COMP_WORDS and
# COMP_CWORD, with the pieces that COMP_WORDBREAKS cut at ':' joined again
# (patterns such as case:*:7, URLs such as tcp://host:port).
_evkit_init() {
	local i w
	words=()
	cword=0
	for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
		w=${COMP_WORDS[i]}
		if ((i > 1)) && [[ $w == :* || ${COMP_WORDS[i - 1]} == *: ]]; then
			words[-1]+=$w
		else
			words+=("$w")
		fi
		((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
	done
	cur=${words[cword]-}
	prev=${words[cword - 1]-}
}

# _evkit_subcommand NAME... — sets cmd to the first word before the cursor
# that is one of NAME (empty when none); stops at '--'.
_evkit_subcommand() {
	local i n
	cmd=
	for ((i = 1; i < cword; i++)); do
		[[ ${words[i]} == -- ]] && return
		for n in "$@"; do
			[[ ${words[i]} == "$n" ]] && { cmd=$n; return; }
		done
	done
}

# _evkit_reply WORDS — the words (a list) that start with cur.
_evkit_reply() {
	mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}

# _evkit_files — file names that start with cur.
_evkit_files() {
	compopt -o filenames 2>/dev/null
	mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}

# _evkit_patterns PATTERNS — topic patterns that start with cur, quoted so
# that the shell passes them on as they are: 'workflow:**'.  After an
# opening quote the reply is bare (readline closes the quote); after an
# unquoted ':' only the part readline replaces is given, quoted.
_evkit_patterns() {
	local c=$cur q= pre= m
	local -a found
	if [[ $c == [\'\"]* ]]; then
		q=${c:0:1}
		c=${c:1}
	fi
	mapfile -t found < <(compgen -W "$1" -- "$c")
	COMPREPLY=()
	if [[ -n $q ]]; then
		COMPREPLY=("${found[@]}")
		return
	fi
	[[ ${COMP_WORDBREAKS-:} == *:* && $c == *:* ]] && pre=${c%"${c##*:}"}
	for m in "${found[@]}"; do
		COMPREPLY+=("'${m#"$pre"}'")
	done
}

# Patterns worth offering: the seed's topic families.
_EVKIT_PATTERNS='** workflow:* workflow:** process:* process:** resource:*
resource:** case:** case:created case:created:* case:synced:* case:updated:*
case:destroyed:* widget:* widget:**'
