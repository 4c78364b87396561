# evkit for bats: a private hub per test and assertions on the events that
# were published, in the spirit of Elixir's assert_receive and of
# bats-assert's messages.  See evkit-bats(7).
#
#   load /usr/share/evkit/bats/load        # or: bats_load_library evkit/bats
#   setup()    { evkit_setup; }
#   teardown() { evkit_teardown; }
#   @test "deploy announces itself" {
#       evkit_listen 'deploy:**'
#       ./deploy web 1.4.2
#       assert_event 'deploy:*' finished --payload '.version == "1.4.2"'
#   }
#
# Works with bats-core alone or with bats-support/bats-assert loaded; needs
# bash 4.4+, jq and the evkit programs.  Every process the library starts is
# stopped by its pid in evkit_teardown.  No sleep is used except as the pause
# of a polling loop with a deadline.

# The evkit programs: $EVKIT_BIN when set, else the bin directory of the
# installation (or source tree) this file belongs to, else $PATH.
_evkit_find_bin() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 0
	if [[ -n ${EVKIT_BIN:-} && -x $EVKIT_BIN/evbusd ]]; then
		_EVKIT_BIN=$EVKIT_BIN
	elif [[ $here == */share/evkit/bats && -x ${here%/share/evkit/bats}/bin/evbusd ]]; then
		_EVKIT_BIN=${here%/share/evkit/bats}/bin
	elif [[ $here == */share/bats && -x ${here%/share/bats}/bin/evbusd ]]; then
		_EVKIT_BIN=${here%/share/bats}/bin
	else
		return 0
	fi
	# Put it first only when $PATH would find other evkit programs, so the
	# test and the code under test use the evkit this file came with.
	if [[ $(command -v evbusd 2>/dev/null) != "$_EVKIT_BIN/evbusd" ]]; then
		PATH="$_EVKIT_BIN:$PATH"
		export PATH
	fi
}
_evkit_find_bin
unset -f _evkit_find_bin

# Defaults, all overridable in the environment or the test file.
: "${EVKIT_WITHIN:=10}"           # assert_event & co wait at most this long
: "${EVKIT_REFUTE_WITHIN:=0.5}"   # refute_event watches this long
: "${EVKIT_SHOW_EVENTS:=20}"      # a failure lists at most this many events
# The topic of the marker events that evkit_sync publishes; never shown.
_EVKIT_SYNC_TOPIC=evkit-bats:sync

EVKIT_PIDS=()

# --- messages -------------------------------------------------------------

# _evkit_fail TITLE [LINE...] — prints a bats-assert style block on stderr
# and returns 1.
_evkit_fail() {
	local title=$1 line
	shift
	{
		printf -- '-- %s --\n' "$title"
		for line in "$@"; do printf '%s\n' "$line"; done
		printf -- '--\n'
	} >&2
	return 1
}

# _evkit_usage FUNCTION MESSAGE — a usage error of one of our functions.
_evkit_usage() {
	_evkit_fail "$1: usage error" "$2"
}

# --- time -----------------------------------------------------------------

# _evkit_now — sets _evkit_us to the time in microseconds.
_evkit_now() {
	_evkit_us=${EPOCHREALTIME//[.,]/}
}

# _evkit_secs_us SECONDS — sets _evkit_us to SECONDS (like 2 or 0.25) in
# microseconds; returns 1 when SECONDS is not such a number.
_evkit_secs_us() {
	[[ $1 =~ ^([0-9]{1,6})(\.([0-9]{1,6}))?$ ]] || return 1
	local frac=${BASH_REMATCH[3]}000000
	_evkit_us=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${frac:0:6}))
}

# _evkit_deadline SECONDS — sets _evkit_deadline to now + SECONDS.
_evkit_deadline() {
	_evkit_secs_us "$1" || return 1
	local d=$_evkit_us
	_evkit_now
	_evkit_deadline=$((_evkit_us + d))
}

# _evkit_expired — true once _evkit_deadline has passed.
_evkit_expired() {
	_evkit_now
	((_evkit_us >= _evkit_deadline))
}

# _evkit_gone PID — true once PID has exited (or is a zombie).
_evkit_gone() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat:0:1} == Z ]]
}

# _evkit_stop PID — SIGTERM, up to 10 s to go, then SIGKILL.
_evkit_stop() {
	local pid=$1
	kill -CONT "$pid" 2>/dev/null || true
	kill -TERM "$pid" 2>/dev/null || true
	_evkit_deadline 10
	until _evkit_gone "$pid"; do
		if _evkit_expired; then
			echo "evkit: pid $pid ignored SIGTERM for 10 s; killed" >&2
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.02
	done
	wait "$pid" 2>/dev/null || true
}

# --- the hub ----------------------------------------------------------------

# evkit_setup — a private hub for this test (evbusd --memory on an ipc
# socket in $BATS_TEST_TMPDIR), EVBUS_URL exported.  With EVKIT_TEST_BUS=nats
# the private hub is a NATS server (nats-server -js on a free loopback
# port, its store in $BATS_TEST_TMPDIR); with EVKIT_TEST_BUS=URL
# (nats://HOST:PORT, tcp://…) that bus is used and nothing is started.
evkit_setup() {
	if [[ -z ${BATS_TEST_TMPDIR:-} ]]; then
		_evkit_usage evkit_setup "BATS_TEST_TMPDIR is not set: call it from a bats setup() or test"
		return
	fi
	EVKIT_DIR=$BATS_TEST_TMPDIR/evkit
	mkdir -p "$EVKIT_DIR" || return
	EVKIT_PIDS=()
	_EVKIT_LISTEN_PID=
	_EVKIT_EVENTS=
	EVKIT_HUB_PID=
	if [[ ${EVKIT_TEST_BUS:-} == nats ]]; then
		_evkit_start_nats
		return
	elif [[ -n ${EVKIT_TEST_BUS:-} ]]; then
		export EVBUS_URL=$EVKIT_TEST_BUS
		return 0
	fi
	export EVBUS_URL="ipc://$EVKIT_DIR/bus"
	local pidfile=$EVKIT_DIR/hub.pid
	if ! evbusd --memory --bus "$EVBUS_URL" --daemon --pidfile "$pidfile" \
		2>"$EVKIT_DIR/hub.err" </dev/null 3>&-; then
		_evkit_fail "evkit_setup: the hub did not start" \
			"command : evbusd --memory --bus $EVBUS_URL --daemon" \
			"stderr  : $(cat "$EVKIT_DIR/hub.err" 2>/dev/null)"
		return
	fi
	EVKIT_HUB_PID=$(cat "$pidfile") || return
	EVKIT_PIDS+=("$EVKIT_HUB_PID")
}

# _evkit_start_nats — nats-server -js on 127.0.0.1, on a port it picks (read
# from its ports file), with its store and log in EVKIT_DIR; waits until it
# serves, then exports EVBUS_URL.
_evkit_start_nats() {
	local dir=$EVKIT_DIR/nats ports port
	mkdir -p "$dir" || return
	if ! command -v nats-server >/dev/null; then
		_evkit_fail "evkit_setup: EVKIT_TEST_BUS=nats needs nats-server" \
			"install : nats-server (Debian package nats-server)"
		return
	fi
	nats-server -js -a 127.0.0.1 -p -1 -sd "$dir/store" --ports_file_dir "$dir" \
		-l "$dir/log" </dev/null >/dev/null 2>&1 3>&- &
	EVKIT_HUB_PID=$!
	EVKIT_PIDS+=("$EVKIT_HUB_PID")
	ports=$dir/nats-server_$EVKIT_HUB_PID.ports
	_evkit_deadline 20
	until [[ -s $ports ]] && grep -q 'Server is ready' "$dir/log" 2>/dev/null; do
		if _evkit_gone "$EVKIT_HUB_PID" || _evkit_expired; then
			_evkit_fail "evkit_setup: nats-server did not start" \
				"log     : $(tail -n 3 "$dir/log" 2>/dev/null)"
			return
		fi
		sleep 0.02
	done
	port=$(jq -r '(.nats // .client)[0]' "$ports") || return
	export EVBUS_URL="nats://127.0.0.1:${port##*:}"
}

# evkit_teardown — stops every process the library started (the listener,
# then the hub), each by its pid, and waits until it is gone.
evkit_teardown() {
	local i
	for ((i = ${#EVKIT_PIDS[@]} - 1; i >= 0; i--)); do
		_evkit_stop "${EVKIT_PIDS[i]}"
	done
	EVKIT_PIDS=()
	EVKIT_HUB_PID=
	_EVKIT_LISTEN_PID=
}

# --- recording ------------------------------------------------------------

# evkit_listen [PATTERN...] — starts recording the events whose topic
# matches a PATTERN (default '**'); returns once the subscriber is ready, so
# every event published afterwards is recorded.  Calling it again starts a
# new recording (the earlier events are forgotten).
evkit_listen() {
	if [[ -z ${EVKIT_DIR:-} ]]; then
		_evkit_usage evkit_listen "call evkit_setup first"
		return
	fi
	local p
	for p in "$@"; do
		_evkit_check_pattern evkit_listen "$p" || return
	done
	(($#)) || set -- '**'
	if [[ -n ${_EVKIT_LISTEN_PID:-} ]]; then
		_evkit_stop "$_EVKIT_LISTEN_PID"
		_evkit_forget "$_EVKIT_LISTEN_PID"
	fi
	local n=$((${_EVKIT_LISTEN_N:-0} + 1))
	_EVKIT_LISTEN_N=$n
	_EVKIT_EVENTS=$EVKIT_DIR/events.$n.jsonl
	local ready=$EVKIT_DIR/listen.$n.ready err=$EVKIT_DIR/listen.$n.err
	rm -f "$ready"
	evsub --ready-file "$ready" "$@" "$_EVKIT_SYNC_TOPIC" \
		>"$_EVKIT_EVENTS" 2>"$err" </dev/null 3>&- &
	_EVKIT_LISTEN_PID=$!
	EVKIT_PIDS+=("$_EVKIT_LISTEN_PID")
	_evkit_deadline "$EVKIT_WITHIN"
	until [[ -e $ready ]]; do
		if _evkit_gone "$_EVKIT_LISTEN_PID" || _evkit_expired; then
			_evkit_fail "evkit_listen: the subscriber did not get ready" \
				"command : evsub $*" \
				"bus     : $EVBUS_URL" \
				"stderr  : $(cat "$err" 2>/dev/null)"
			return
		fi
		sleep 0.02
	done
}

# _evkit_forget PID — drops PID from EVKIT_PIDS.
_evkit_forget() {
	local keep=() p
	for p in "${EVKIT_PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	EVKIT_PIDS=("${keep[@]}")
}

# evkit_events — prints the recorded events as JSON lines (the markers of
# evkit_sync left out), for checks of your own with jq.
evkit_events() {
	_evkit_need_listen evkit_events || return
	_evkit_jq "$_EVKIT_SYNC_TOPIC" '' '' true '.'
}

# evkit_sync — publishes a marker event and waits until the listener has
# recorded it: every event published (acknowledged) before the call has then
# been recorded too, since the hub delivers in order.
evkit_sync() {
	_evkit_need_listen evkit_sync || return
	local nonce=$$.$RANDOM.${EPOCHREALTIME//[.,]/} err=$EVKIT_DIR/sync.err
	if ! evpub "$_EVKIT_SYNC_TOPIC" sync "{\"nonce\":\"$nonce\"}" 2>"$err" </dev/null 3>&-; then
		_evkit_fail "evkit_sync: could not publish the marker" \
			"bus    : $EVBUS_URL" "stderr : $(cat "$err")"
		return
	fi
	_evkit_deadline "$EVKIT_WITHIN"
	until jq -e -R -n --arg n "$nonce" --arg t "$_EVKIT_SYNC_TOPIC" \
		'any(inputs | fromjson? | select(.topic == $t); .payload.nonce == $n)' \
		<"$_EVKIT_EVENTS" >/dev/null 2>&1; do
		if _evkit_expired || _evkit_gone "$_EVKIT_LISTEN_PID"; then
			_evkit_fail "evkit_sync: the marker event did not come back" \
				"within : $EVKIT_WITHIN s" "bus    : $EVBUS_URL"
			return
		fi
		sleep 0.02
	done
}

_evkit_need_listen() {
	[[ -n ${_EVKIT_EVENTS:-} ]] && return 0
	_evkit_usage "$1" "nothing is recorded: call evkit_listen first"
}

# _evkit_check_pattern FUNC PATTERN — a pattern as evsub accepts it.
_evkit_check_pattern() {
	local p=$2 seg why=
	local -a segs
	if [[ -z $p ]]; then
		why='empty pattern'
	else
		IFS=: read -r -a segs <<<"$p:"
		local i n=${#segs[@]}
		[[ $p == *: || $p == :* || $p == *::* ]] && why='empty segment'
		for ((i = 0; i < n && !${#why}; i++)); do
			seg=${segs[i]}
			if [[ $seg == '**' ]]; then
				((i == n - 1)) || why="'**' may only end a pattern"
			elif [[ $seg != '*' && $seg == *'*'* ]]; then
				why="'*' must be a whole segment"
			elif [[ $seg =~ [[:space:]] ]]; then
				why='a segment holds no space'
			fi
		done
	fi
	[[ -z $why ]] && return 0
	_evkit_usage "$1" "'$p': $why"
}

# --- matching -------------------------------------------------------------

# The jq prelude: evk_match(PATTERN; EVENT) on one recorded event.
_EVKIT_JQ_DEFS='
def evk_seg(p; t):
	if (p | length) == 0 then (t | length) == 0
	elif p[0] == "**" then true
	elif (t | length) == 0 then false
	elif p[0] == "*" or p[0] == t[0] then evk_seg(p[1:]; t[1:])
	else false end;
def evk_match($pat; $ev):
	(.topic | type) == "string"
	and evk_seg($pat | split(":"); .topic | split(":"))
	and ($ev == "" or $ev == "*" or .event == $ev);
def evk_show: "#\(.seq) \(.topic) \(.event) \(.payload | tojson)";
'

# _evkit_payload_prog FILTER — sets _evkit_pp to a jq expression that is
# true when the payload passes FILTER (errors count as false).
_evkit_payload_prog() {
	if [[ -z $1 ]]; then
		_evkit_pp=true
	else
		_evkit_pp="(try ([.payload | ($1)] | any) catch false)"
	fi
}

# _evkit_jq SYNC_TOPIC PATTERN EVENT PAYLOAD_EXPR BODY — runs BODY (a jq
# expression over `$evs`, the matching events, or '.' for every recorded
# event) on the recording.  Patterns empty: every event.
_evkit_jq() {
	local sel='true'
	[[ -n $2 ]] && sel="evk_match(\$pat; \$ev) and $4"
	if [[ $5 == . ]]; then
		jq -c -R -n --arg t "$1" "$_EVKIT_JQ_DEFS"'
			inputs | fromjson? | select(type == "object" and .topic != $t)' \
			<"$_EVKIT_EVENTS"
	else
		jq -c -R -n --arg t "$1" --arg pat "$2" --arg ev "$3" "$_EVKIT_JQ_DEFS"'
			[inputs | fromjson? | select(type == "object" and .topic != $t)]
			| . as $all | [.[] | select('"$sel"')] as $evs | '"$5" \
			<"$_EVKIT_EVENTS"
	fi
}

# _evkit_check_filter FUNC FILTER — a jq filter that compiles.
_evkit_check_filter() {
	[[ -z $2 ]] && return 0
	local err rc=0
	err=$(jq -n "null | [($2)]" 2>&1 >/dev/null) || rc=$?
	# jq exits 3 when the program does not compile; other errors are the
	# filter meeting null, which is fine here.
	if ((rc == 3)); then
		_evkit_usage "$1" "--payload '$2' is not a jq filter: ${err%%$'\n'*}"
		return
	fi
	return 0
}

# _evkit_arrived — the "arrived" lines of a failure message: the recorded
# events, the newest EVKIT_SHOW_EVENTS of them.
_evkit_arrived() {
	local n
	n=$(_evkit_jq "$_EVKIT_SYNC_TOPIC" '' '' true 'length') || n=0
	if ((n == 0)); then
		echo "arrived  : no event (listening since evkit_listen)"
		return
	fi
	echo "arrived ($n event$( ((n == 1)) || echo s)):"
	if ((n > EVKIT_SHOW_EVENTS)); then
		echo "  … $((n - EVKIT_SHOW_EVENTS)) earlier not shown"
	fi
	_evkit_jq "$_EVKIT_SYNC_TOPIC" '' '' true \
		".[-$EVKIT_SHOW_EVENTS:][] | \"  \" + evk_show" | jq -r .
}

# _evkit_args FUNC NPOS ARGS... — parses [--payload F] [--within S] around
# up to NPOS positional arguments into _evkit_pos, _evkit_payload,
# _evkit_within (default $_evkit_within on entry).
_evkit_args() {
	local fn=$1 npos=$2
	shift 2
	_evkit_pos=()
	_evkit_payload=
	while (($#)); do
		case $1 in
		--payload)
			(($# >= 2)) || { _evkit_usage "$fn" "--payload needs a jq filter"; return; }
			_evkit_payload=$2
			shift 2
			;;
		--within)
			(($# >= 2)) || { _evkit_usage "$fn" "--within needs SECONDS"; return; }
			_evkit_secs_us "$2" || { _evkit_usage "$fn" "--within '$2': not a number of seconds"; return; }
			_evkit_within=$2
			shift 2
			;;
		--)
			shift
			_evkit_pos+=("$@")
			break
			;;
		-?*)
			_evkit_usage "$fn" "unknown option '$1'"
			return
			;;
		*)
			_evkit_pos+=("$1")
			shift
			;;
		esac
	done
	if ((npos >= 0 && ${#_evkit_pos[@]} > npos)); then
		_evkit_usage "$fn" "too many arguments: ${_evkit_pos[*]}"
		return
	fi
	_evkit_check_filter "$fn" "$_evkit_payload"
}

# _evkit_expect_lines PATTERN EVENT — the "expected" lines.
_evkit_expect_lines() {
	echo "pattern  : $1"
	echo "event    : ${2:-(any)}"
	[[ -n $_evkit_payload ]] && echo "payload  : $_evkit_payload"
	echo "within   : ${_evkit_within} s"
}

# _evkit_event_args FUNC WITHIN NLEAD ARGS... — the arguments of the
# one-pattern assertions: NLEAD leading words, PATTERN [EVENT], --payload
# and --within (default WITHIN).  Sets the caller's locals pat, ev,
# _evkit_within and _evkit_pp, and _evkit_pos.
_evkit_event_args() {
	local fn=$1 lead=$3
	_evkit_within=$2
	shift 3
	_evkit_need_listen "$fn" || return
	_evkit_args "$fn" $((lead + 2)) "$@" || return
	pat=${_evkit_pos[lead]:-}
	ev=${_evkit_pos[lead + 1]:-}
	[[ -n $pat ]] || { _evkit_usage "$fn" "missing PATTERN"; return; }
	_evkit_check_pattern "$fn" "$pat" || return
	_evkit_payload_prog "$_evkit_payload"
}

# --- assertions -----------------------------------------------------------

# assert_event PATTERN [EVENT] [--payload JQ_FILTER] [--within SECONDS]
# Passes as soon as a recorded event has a topic matching PATTERN, the name
# EVENT (any when omitted or '*') and a payload for which JQ_FILTER is true;
# fails after SECONDS (default $EVKIT_WITHIN, 10).
assert_event() {
	local pat ev _evkit_within _evkit_pp
	_evkit_event_args assert_event "$EVKIT_WITHIN" 0 "$@" || return
	_evkit_deadline "$_evkit_within"
	while :; do
		if [[ $(_evkit_jq "$_EVKIT_SYNC_TOPIC" "$pat" "$ev" "$_evkit_pp" \
			'$evs | length > 0') == true ]]; then
			return 0
		fi
		_evkit_expired && break
		sleep 0.05
	done
	local lines
	mapfile -t lines < <(_evkit_expect_lines "$pat" "$ev"; _evkit_arrived)
	_evkit_fail "no matching event" "${lines[@]}"
}

# refute_event PATTERN [EVENT] [--payload JQ_FILTER] [--within SECONDS]
# Fails if a matching event was recorded or arrives within SECONDS (default
# $EVKIT_REFUTE_WITHIN, 0.5).  It first calls evkit_sync, so what was
# published before the call is judged whatever the window.
refute_event() {
	local pat ev _evkit_within _evkit_pp
	_evkit_event_args refute_event "$EVKIT_REFUTE_WITHIN" 0 "$@" || return
	evkit_sync || return
	_evkit_deadline "$_evkit_within"
	local hit
	while :; do
		hit=$(_evkit_jq "$_EVKIT_SYNC_TOPIC" "$pat" "$ev" "$_evkit_pp" \
			'$evs[] | "  " + evk_show' | jq -r .)
		[[ -n $hit ]] && break
		_evkit_expired && return 0
		sleep 0.05
	done
	local lines
	mapfile -t lines < <(_evkit_expect_lines "$pat" "$ev"; echo "matching :"; echo "$hit")
	_evkit_fail "unexpected event" "${lines[@]}"
}

# assert_event_count N PATTERN [EVENT] [--payload JQ_FILTER] [--within SECONDS]
# Exactly N recorded events match.  It waits (up to SECONDS) while fewer
# than N have arrived, and calls evkit_sync first so that no event already
# published is still on its way.
assert_event_count() {
	local pat ev _evkit_within _evkit_pp want got
	_evkit_event_args assert_event_count "$EVKIT_WITHIN" 1 "$@" || return
	want=${_evkit_pos[0]:-}
	[[ $want =~ ^[0-9]+$ ]] || { _evkit_usage assert_event_count "N must be a count, not '$want'"; return; }
	evkit_sync || return
	_evkit_deadline "$_evkit_within"
	while :; do
		got=$(_evkit_jq "$_EVKIT_SYNC_TOPIC" "$pat" "$ev" "$_evkit_pp" '$evs | length')
		((got >= want)) && break
		_evkit_expired && break
		sleep 0.05
	done
	((got == want)) && return 0
	local lines
	mapfile -t lines < <(echo "expected : $want"; echo "actual   : $got"
		_evkit_expect_lines "$pat" "$ev"; _evkit_arrived)
	_evkit_fail "event count differs" "${lines[@]}"
}

# assert_events_in_order PATTERN EVENT [PATTERN EVENT...] [--within SECONDS]
# The pairs were recorded in this order (other events may come between);
# waits up to SECONDS for the last of them.  EVENT '*' is any event.
assert_events_in_order() {
	_evkit_need_listen assert_events_in_order || return
	local _evkit_within=$EVKIT_WITHIN
	_evkit_args assert_events_in_order -1 "$@" || return
	[[ -n $_evkit_payload ]] && { _evkit_usage assert_events_in_order "--payload does not apply"; return; }
	local n=${#_evkit_pos[@]} i
	if ((n == 0 || n % 2)); then
		_evkit_usage assert_events_in_order "give PATTERN EVENT pairs (use '*' for any event)"
		return
	fi
	for ((i = 0; i < n; i += 2)); do
		_evkit_check_pattern assert_events_in_order "${_evkit_pos[i]}" || return
	done
	local pairs got
	pairs=$(jq -c -n '$ARGS.positional | [range(0; length; 2) as $i | .[$i:$i + 2]]' \
		--args "${_evkit_pos[@]}") || return
	_evkit_deadline "$_evkit_within"
	while :; do
		got=$(jq -R -n --argjson pairs "$pairs" --arg t "$_EVKIT_SYNC_TOPIC" "$_EVKIT_JQ_DEFS"'
			reduce (inputs | fromjson? | select(type == "object" and .topic != $t)) as $e
				(0; . as $i | if $i < ($pairs | length)
				    and ($e | evk_match($pairs[$i][0]; $pairs[$i][1])) then $i + 1 else $i end)' \
			<"$_EVKIT_EVENTS")
		((got == n / 2)) && return 0
		_evkit_expired && break
		sleep 0.05
	done
	local lines
	mapfile -t lines < <(
		echo "expected in order:"
		for ((i = 0; i < n; i += 2)); do
			printf '  %s %s%s\n' "${_evkit_pos[i]}" "${_evkit_pos[i + 1]}" \
				"$( ((i / 2 < got)) && echo '   (seen)' || { ((i / 2 == got)) && echo '   <- missing'; })"
		done
		echo "within   : ${_evkit_within} s"
		_evkit_arrived)
	_evkit_fail "events not in order" "${lines[@]}"
}

# --- jobs -----------------------------------------------------------------

# evkit_wait_job ID|--workflow WF [--db FILE] [--within SECONDS]
# Waits until the evworker job ID, or every job of workflow WF, has ended
# (with `evworker wait` where evworker has it, else polling its list);
# prints the job (JSON line, the last one for a workflow) and returns 0 when
# it completed, 1 when it was discarded or cancelled (with a message), 124
# when it had not ended within SECONDS (default $EVKIT_WITHIN).
evkit_wait_job() {
	local id= wf= db=() within=$EVKIT_WITHIN
	while (($#)); do
		case $1 in
		--workflow) wf=${2-}; shift 2 || { _evkit_usage evkit_wait_job "--workflow needs WF"; return 2; } ;;
		--db) db=(--db "${2-}"); shift 2 || { _evkit_usage evkit_wait_job "--db needs FILE"; return 2; } ;;
		--within) within=${2-}; shift 2 || { _evkit_usage evkit_wait_job "--within needs SECONDS"; return 2; } ;;
		-?*) _evkit_usage evkit_wait_job "unknown option '$1'"; return 2 ;;
		*) [[ -z $id ]] || { _evkit_usage evkit_wait_job "one job ID only"; return 2; }; id=$1; shift ;;
		esac
	done
	if [[ -n $id && -n $wf || -z $id && -z $wf ]]; then
		_evkit_usage evkit_wait_job "give a job ID or --workflow WF"
		return 2
	fi
	if [[ -n $id && ! $id =~ ^[0-9]+$ ]]; then
		_evkit_usage evkit_wait_job "'$id' is not a job id"
		return 2
	fi
	_evkit_deadline "$within" || { _evkit_usage evkit_wait_job "--within '$within': not a number of seconds"; return 2; }
	local jobs last states err=${BATS_TEST_TMPDIR:-/tmp}/evkit-wait.err rc=0
	# An evworker with `wait` waits on the queue itself; the loop below then
	# only reads the outcome (or polls on, while the job does not exist yet).
	if evworker --help 2>/dev/null | grep -qE '^  wait '; then
		evworker "${db[@]}" wait ${id:+"$id"} ${wf:+--workflow "$wf"} --timeout "$within" \
			2>"$err" </dev/null 3>&- || rc=$?
		((rc == 124)) && _evkit_deadline 0
	fi
	while :; do
		# The job(s) as JSON lines; for a workflow, every job of it.
		if [[ -n $id ]]; then
			jobs=$(evworker "${db[@]}" list 2>"$err" </dev/null 3>&- |
				jq -c --argjson id "$id" 'select(.id == $id)')
		else
			jobs=$(evworker "${db[@]}" list 2>"$err" </dev/null 3>&- |
				jq -c --arg wf "$wf" 'select(.workflow_id == $wf)')
		fi
		if [[ -n $jobs ]]; then
			states=$(jq -r -s '[.[].state] | unique | join(" ")' <<<"$jobs")
			last=$(tail -n 1 <<<"$jobs")
			if [[ " $states " != *" available "* && " $states " != *" scheduled "* &&
				" $states " != *" executing "* && " $states " != *" retryable "* ]]; then
				printf '%s\n' "$last"
				[[ $states == completed ]] && return 0
				local bad
				bad=$(jq -r -s 'map(select(.state != "completed"))[0] | "job \(.id) \(.state): \(.last_error // "no error recorded")"' <<<"$jobs")
				_evkit_fail "job did not complete" \
					"job      : ${id:-workflow $wf}" "states   : $states" "first    : $bad"
				return 1
			fi
		fi
		if _evkit_expired; then
			_evkit_fail "job did not end in time" \
				"job      : ${id:-workflow $wf}" \
				"within   : $within s" \
				"states   : ${states:-(no such job)}" \
				"stderr   : $(cat "$err" 2>/dev/null)"
			return 124
		fi
		sleep 0.1
	done
}
