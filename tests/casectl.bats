#!/usr/bin/env bats
# casectl: the case resource; each committed action is announced on the bus.
load helpers

# On PostgreSQL (make test-pg) one server serves the file, a database each test.
setup_file() { store_setup_file; }
teardown_file() { store_teardown_file; }

setup() {
	start_hub
	export CASECTL_ACTOR=ann
	DB=$(new_db cases)
	casectl --db "$DB" init --admin ann >/dev/null
	casectl --db "$DB" user add ed --role editor
	casectl --db "$DB" user add vic --role viewer
}
teardown() {
	[[ -n ${TMUX_SESSION:-} ]] && tmux kill-session -t "$TMUX_SESSION" 2>/dev/null
	stop_all
}

cc() { casectl --db "$DB" "$@"; }

# listen N — collects N case events into $BATS_TEST_TMPDIR/events.
listen() {
	rm -f "$BATS_TEST_TMPDIR/ready"
	bg_to "$BATS_TEST_TMPDIR/events" evsub --ready-file "$BATS_TEST_TMPDIR/ready" -n "$1" -W 30 'case:**'
	LISTENER=${BG_PIDS[-1]}
	wait_file "$BATS_TEST_TMPDIR/ready"
}

# cases N [FIRST] — N input cases as JSON lines, references R<FIRST>...
cases() {
	# awk: a bash loop under bats' debug trap is slow
	awk -v n="$1" -v first="${2:-1}" 'BEGIN {
		for (i = first; i < first + n; i++)
			printf "{\"agency\":\"hse\",\"case_reference\":\"R%d\",\"offender\":{\"name\":\"Firm %d Ltd\",\"postcode\":\"LS%d 1AA\"},\"offence_action_date\":\"2024-03-%02d\",\"offence_fine\":%d,\"offence_result\":\"Guilty\"}\n", i, i % 7, i % 3, i % 28 + 1, i * 100
	}'
}

@test "casectl create publishes exactly case:created and case:created:{id} with the stored case loaded" {
	listen 2
	run -0 cc create '{"agency":"hse","case_reference":"HSE/2024/017","offender":{"name":"Acme Ltd","postcode":"LS1 4AP"},"offence_action_date":"2024-03-01","offence_fine":12000,"offence_costs":1450.5,"offence_result":"Guilty"}'
	local id stored printed
	id=$(jq -r .id <<<"$output")
	printed=$(jq -c . <<<"$output")
	stored=$(cc get "$id" | jq -c .)
	# What create printed is what was stored, timestamps included.
	[ "$printed" = "$stored" ]
	[[ $(jq -r .inserted_at <<<"$stored") =~ ^20[0-9-]{8}T[0-9:.]{15}Z$ ]]
	wait "$LISTENER"
	run jq -c '[.topic, .event, .payload.resource, .payload.action, .payload.actor]' "$BATS_TEST_TMPDIR/events"
	assert_output "[\"case:created\",\"create\",\"case\",\"create\",\"ann\"]
[\"case:created:$id\",\"create\",\"case\",\"create\",\"ann\"]"
	run jq -c '.payload.data' "$BATS_TEST_TMPDIR/events"
	assert_output "$stored
$stored"
	[ "$(jq -r '.agency.code + " " + .offender.name' <<<"$stored")" = "hse Acme Ltd" ]
}

@test "a case without offender, fine or date is announced as stored, nulls and escapes included" {
	listen 2
	run -0 cc create '{"agency":"hse","case_reference":"N\t1 \"q\" \\ \u00e9","offence_result":"line\nbreak"}'
	local stored
	stored=$(jq -c . <<<"$output")
	[ "$(jq -c '[.offender, .offence_fine, .offence_action_date, .last_synced_at]' <<<"$stored")" = '[null,null,null,null]' ]
	wait "$LISTENER"
	run jq -c '.payload.data' "$BATS_TEST_TMPDIR/events"
	assert_output "$stored
$stored"
}

@test "an offender written differently is one offender, announced with the name first stored" {
	listen 6
	cc ingest 2>/dev/null <<-'IN'
		{"agency":"hse","case_reference":"O1","offender":{"name":"Acme  Widgets, Ltd.","postcode":"ls1 4ap"}}
		{"agency":"hse","case_reference":"O2","offender":{"name":"ACME widgets ltd","postcode":"LS14AP"}}
		{"agency":"ea","case_reference":"O3","offender":{"name":"acme Widgets LTD","postcode":"L S1 4AP"}}
	IN
	wait "$LISTENER"
	[ "$(db_sql "$DB" 'SELECT count(*) FROM offenders')" -eq 1 ]
	# Every case, stored and announced, carries the offender as first stored.
	run -0 jq -r '.payload.data.offender | "\(.id) \(.name) \(.postcode)"' "$BATS_TEST_TMPDIR/events"
	[ "$(sort -u <<<"$output")" = "1 Acme  Widgets, Ltd. ls1 4ap" ]
	run -0 cc --actor ed ingest <<<'{"agency":"hse","case_reference":"O4","offender":{"name":"acme widgets ltd","postcode":"LS1 4AP"}}'
	[ "$(cc list | jq -r 'select(.case_reference == "O4") | .offender.name')" = "Acme  Widgets, Ltd." ]
}

@test "casectl create - of cases each naming a new offender prints and announces each its own, as stored" {
	listen 6
	run -0 --separate-stderr cc create - < <(cases 3 1)
	[ "$(jq -r '"\(.offender.name)/\(.offender.postcode)"' <<<"$output" | paste -sd,)" = "Firm 1 Ltd/LS1 1AA,Firm 2 Ltd/LS2 1AA,Firm 3 Ltd/LS0 1AA" ]
	local printed
	printed=$(jq -c . <<<"$output")
	[ "$(jq -r .id <<<"$output" | while read -r id; do cc get "$id" | jq -c .; done)" = "$printed" ]
	wait "$LISTENER"
	[ "$(jq -c 'select(.topic == "case:created") | .payload.data' "$BATS_TEST_TMPDIR/events")" = "$printed" ]
}

@test "casectl create refuses a reference its agency has, alone or among new ones, and announces only what it made" {
	run -0 cc create '{"agency":"hse","case_reference":"D1","offence_fine":1}'
	local id
	id=$(jq -r .id <<<"$output")
	run -65 --separate-stderr cc create '{"agency":"hse","case_reference":"D1","offence_fine":2}'
	[ "$stderr" = "casectl create: case D1 of hse exists (id $id)" ]
	# Refused with an offender new to the database: nothing is written.
	run -65 --separate-stderr cc create <<<'{"agency":"hse","case_reference":"D1","offender":{"name":"New Firm Ltd"}}'
	[ "$(db_sql "$DB" 'SELECT count(*) FROM offenders')" -eq 0 ]
	# From stdin: the taken line is reported by number and skipped.
	run -65 --separate-stderr cc create <<-'IN'
		{"agency":"hse","case_reference":"D2","offender":{"name":"D2 Ltd"}}
		{"agency":"hse","case_reference":"D1"}
		{"agency":"hse","case_reference":"D3"}
	IN
	[[ $stderr == *"stdin:2: case D1 of hse exists (id $id)"* ]]
	[ "$(jq -r .case_reference <<<"$output" | paste -sd,)" = D2,D3 ]
	[ "$(jq -r .offender.name <<<"$output" | paste -sd,)" = "D2 Ltd,null" ]
	[ "$(jq -r .inserted_at <<<"$output" | grep -cE '^20[0-9-]{8}T[0-9:.]{15}Z$')" -eq 2 ]
	[ "$(cc get "$id" | jq .offence_fine)" = 1 ]
	[ "$(cc list | wc -l)" -eq 3 ]
	[ "$(hub_status_field head_seq)" -eq 6 ]
}

@test "casectl ingest of 30 cases of which 6 exist gives 24 create and 6 sync notifications and 30 rows" {
	cases 6 | cc --actor ed ingest
	listen 60
	cases 30 >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr cc --actor ed ingest <"$BATS_TEST_TMPDIR/in"
	[ "$stderr" = "casectl: ingested 30: 24 created, 6 synced, 0 rejected" ]
	wait "$LISTENER"
	run jq -r '.topic | split(":")[0:2] | join(":")' "$BATS_TEST_TMPDIR/events"
	[ "$(grep -c '^case:created$' <<<"$output")" -eq 48 ]
	[ "$(grep -c '^case:synced$' <<<"$output")" -eq 12 ]
	[ "$(cc list --limit 1000 | wc -l)" -eq 30 ]
	# Offenders are matched: 7 firms x 3 postcodes at most, not 30 rows.
	[ "$(cc list --limit 1000 | jq -r .offender.id | sort -u | wc -l)" -le 21 ]
}

@test "an ingest meeting references again, in one insert run and across runs: created once, then synced, in input order, announced as stored" {
	# 151 lines: R1..R100 new, then R40..R88 again (the second and third
	# runs of 64); R7 and R70 also come back inside their first run, R7
	# with another offender and no fine.
	{
		cases 10
		echo '{"agency":"hse","case_reference":"R7","offender":{"name":"Other Ltd"},"offence_result":"Appeal"}'
		cases 60 11
		echo '{"agency":"hse","case_reference":"R70","offence_fine":5}'
		cases 30 71
		cases 49 40
	} >"$BATS_TEST_TMPDIR/in"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/in")" -eq 151 ]
	listen 302
	run -0 --separate-stderr cc ingest <"$BATS_TEST_TMPDIR/in"
	[ "$stderr" = "casectl: ingested 151: 100 created, 51 synced, 0 rejected" ]
	wait "$LISTENER"
	# Each line's event, in input order: created for a reference's first
	# line, synced after; each followed by its own topic of the case id.
	run -0 jq -r '.case_reference' "$BATS_TEST_TMPDIR/in"
	local expected
	expected=$(awk '{ print (seen[$0]++ ? "synced " : "created ") $0 }' <<<"$output")
	run -0 jq -r 'select(.topic | split(":") | length == 2) | "\(.topic | split(":")[1]) \(.payload.data.case_reference)"' "$BATS_TEST_TMPDIR/events"
	[ "$output" = "$expected" ]
	run -0 jq -r '[.topic, (.payload.data.id)] | "\(.[0]) \(.[1])"' "$BATS_TEST_TMPDIR/events"
	[ "$(awk 'NR % 2 == 0 { split(prev, a, " "); if ($1 != a[1] ":" a[2]) bad++ } { prev = $0 } END { print bad + 0 }' <<<"$output")" -eq 0 ]
	[ "$(cc list --limit 1000 | wc -l)" -eq 100 ]
	# What was announced of a new case is what is stored (a case not met
	# again); a case met again ends with the last line's values.
	local id
	id=$(cc list --limit 1000 | jq -r 'select(.case_reference == "R30") | .id')
	[ "$(jq -c "select(.topic == \"case:created:$id\") | .payload.data" "$BATS_TEST_TMPDIR/events")" = "$(cc get "$id" | jq -c .)" ]
	[ "$(cc list --limit 1000 | jq -c 'select(.case_reference == "R7") | [.offender.name, .offence_fine, .offence_result]')" = '["Other Ltd",700,"Appeal"]' ]
	[ "$(cc list --limit 1000 | jq -c 'select(.case_reference == "R70") | [.offender.name, .offence_fine]')" = '["Firm 0 Ltd",7000]' ]
	[ "$(cc list --limit 1000 | jq -c 'select(.case_reference == "R45") | .last_synced_at != null')" = true ]
	# Each write is stamped after the one before: sorted by updated_at,
	# the cases come in the order of their last lines (keep_live shows
	# the newest first by it).
	run -0 jq -r '.case_reference' "$BATS_TEST_TMPDIR/in"
	expected=$(awk '{ last[$0] = NR } END { for (r in last) print last[r], r }' <<<"$output" | sort -n | cut -d' ' -f2)
	[ "$(cc list --limit 1000 --sort updated_at | jq -r .case_reference)" = "$expected" ]
}

@test "past the offenders a process remembers (16,384) it forgets them and finds them again: one offender per match key" {
	# 16,450 cases: 16,400 offenders, then 50 cases naming the first 50
	# again (written differently) after the process forgot them.
	awk 'BEGIN {
		for (i = 1; i <= 16400; i++)
			printf "{\"agency\":\"hse\",\"case_reference\":\"M%d\",\"offender\":{\"name\":\"Firm %d Ltd\",\"postcode\":\"LS1 1AA\"}}\n", i, i
		for (i = 1; i <= 50; i++)
			printf "{\"agency\":\"hse\",\"case_reference\":\"M%d\",\"offender\":{\"name\":\"FIRM %d LTD\",\"postcode\":\"ls11aa\"}}\n", 16400 + i, i
	}' >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr cc ingest "$BATS_TEST_TMPDIR/in"
	[ "$stderr" = "casectl: ingested 16450: 16450 created, 0 synced, 0 rejected" ]
	[ "$(db_sql "$DB" 'SELECT count(*) FROM offenders')" -eq 16400 ]
	run -0 cc list --limit 100000
	[ "$(jq -r 'select(.case_reference == "M16401" or .case_reference == "M1") | "\(.offender.id) \(.offender.name)"' <<<"$output" | sort -u)" = "1 Firm 1 Ltd" ]
	[ "$(jq -r 'select(.case_reference == "M16450") | .offender.name' <<<"$output")" = "Firm 50 Ltd" ]
}

@test "a viewer's create exits 77, writes nothing and publishes nothing; an unknown actor cannot list" {
	run -77 --separate-stderr cc --actor vic create '{"agency":"hse","case_reference":"X1"}'
	[[ $stderr == *"vic"* ]]
	run -77 cc --actor nobody list
	[ "$(cc list | wc -l)" -eq 0 ]
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	[ "$(hub_status_field head_seq)" -eq 0 ]
	run -0 cc --actor vic list
	run -77 cc --actor ed destroy nothing
	run -77 cc --actor ed user add x --role admin
}

@test "with the hub down create succeeds; the next command delivers the notifications once each, in order" {
	stop_hub
	run -0 --separate-stderr cc create '{"agency":"ea","case_reference":"E1"}'
	[[ $stderr == *"outbox"* ]]
	run -0 --separate-stderr cc create '{"agency":"ea","case_reference":"E2"}'
	# The pending notifications, as the event lines they will be.
	run -0 cc outbox list
	[ "${#lines[@]}" -eq 4 ]
	run jq -r '[.topic, .event, .payload.data.case_reference, .payload.data.id] | @tsv' <<<"$output"
	local id1 id2
	id1=$(cut -f4 <<<"${lines[0]}") id2=$(cut -f4 <<<"${lines[2]}")
	[ "${lines[0]}" = "case:created	create	E1	$id1" ]
	[ "${lines[1]}" = "case:created:$id1	create	E1	$id1" ]
	[ "${lines[2]}" = "case:created	create	E2	$id2" ]
	[ "${lines[3]}" = "case:created:$id2	create	E2	$id2" ]
	start_hub
	run -0 cc list
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	run -0 evsub --since 0 -n 4 -W 10 -o text 'case:**'
	run awk '{ print $1 }' <<<"$output"
	[ "${lines[0]}" = case:created ] && [ "${lines[2]}" = case:created ]
	run cc outbox flush
	[ "$(hub_status_field head_seq)" -eq 4 ]
}

@test "a damaged outbox row is named, holds back what follows it, and lets what precedes it go" {
	stop_hub
	local r
	for r in F1 F2 F3; do
		cc create "{\"agency\":\"ea\",\"case_reference\":\"$r\"}" >/dev/null 2>&1
	done
	db_sql "$DB" "UPDATE notes SET lines = $(as_blob "'not a note'") WHERE id = (SELECT min(id) + 1 FROM notes)"
	start_hub
	run -65 --separate-stderr cc outbox flush
	[[ $stderr == *"outbox row "*" is damaged"*"the 4 notifications from it on stay"* ]]
	# F1 went out, once; F2's row and F3's behind it wait.
	[ "$(hub_status_field head_seq)" -eq 2 ]
	run -0 evsub --since 0 -n 2 -W 10 'case:**'
	[ "$(jq -r .payload.data.case_reference <<<"$output" | sort -u)" = F1 ]
	run -65 --separate-stderr cc outbox flush
	[ "$(hub_status_field head_seq)" -eq 2 ]
}

@test "an outbox row of a format this casectl does not know is reported damaged, not sent" {
	stop_hub
	cc create '{"agency":"hse","case_reference":"U1"}' >/dev/null 2>&1
	db_sql "$DB" "UPDATE notes SET format = 9"
	start_hub
	run -65 --separate-stderr cc outbox flush
	[[ $stderr == *"outbox row "*" is damaged"* ]]
	[ "$(hub_status_field head_seq)" -eq 0 ]
}

@test "a delivery cut short resumes after what the hub acknowledged: nothing is sent twice" {
	stop_hub
	cases 3 1 | cc ingest 2>/dev/null
	# One row of three notes; the first stays whole, the rest is damage.
	if on_pg; then
		db_sql "$DB" "UPDATE notes SET lines = substring(lines from 1 for position('\\x0a'::bytea in lines)) || 'damage'::bytea"
	else
		db_sql "$DB" "UPDATE notes SET lines = CAST(substr(lines, 1, instr(lines, char(10))) || 'damage' AS BLOB)"
	fi
	start_hub
	run -65 --separate-stderr cc outbox flush
	[[ $stderr == *"the 4 notifications from it on stay"* ]]
	[ "$(hub_status_field head_seq)" -eq 2 ]
	[ "$(db_sql "$DB" 'SELECT sent FROM notes')" -eq 2 ]
	# The next round starts after the two lines the hub has.
	run -65 --separate-stderr cc outbox flush
	[ "$(hub_status_field head_seq)" -eq 2 ]
	run -0 evsub --since 0 -n 2 -W 10 -o tsv 'case:**'
	run cut -f3 <<<"$output"
	[ "${lines[0]}" = case:created ] && [[ ${lines[1]} == case:created:* ]]
	# outbox list shows what is pending (here only the damage), not what went.
	run -65 --separate-stderr cc outbox list
	[ -z "$output" ]
	[[ $stderr == *"is damaged"* ]]
}

@test "four concurrent ingests over overlapping references store each case exactly once" {
	# 2500 cases each, 1000 per ingest transaction, so the processes
	# deliver batches while the others write and flush.
	cases 2500 1 >"$BATS_TEST_TMPDIR/a"
	cases 2500 1001 >"$BATS_TEST_TMPDIR/b"
	cases 2500 2001 >"$BATS_TEST_TMPDIR/c"
	cases 2500 501 >"$BATS_TEST_TMPDIR/d"
	local p pids=()
	for p in a b c d; do
		cc --actor ed ingest --batch 1000 <"$BATS_TEST_TMPDIR/$p" 2>"$BATS_TEST_TMPDIR/$p.err" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	run -0 cc list --limit 10000
	[ "${#lines[@]}" -eq 4500 ]
	[ "$(jq -r .case_reference <<<"$output" | sort -u | wc -l)" -eq 4500 ]
	# Every notification went out once: 4500 creates and 5500 syncs, two
	# topics each, and each created case announced exactly twice.
	run -0 cc outbox flush
	[ "$(hub_status_field head_seq)" -eq 20000 ]
	evsub --since 0 -n 20000 -W 10 'case:**' >"$BATS_TEST_TMPDIR/events"
	run -0 jq -r 'select(.event == "create") | .payload.data.id' "$BATS_TEST_TMPDIR/events"
	[ "${#lines[@]}" -eq 9000 ]
	[ "$(printf '%s\n' "${lines[@]}" | sort | uniq -c | awk '$1 != 2' | wc -l)" -eq 0 ]
}

@test "a long ingest delivers each batch once, both topics of a case together, and empties the outbox" {
	cases 2500 1 | cc ingest 2>/dev/null
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	[ "$(hub_status_field head_seq)" -eq 5000 ]
	run -0 evsub --since 0 -n 5000 -W 10 -o tsv 'case:**'
	# Lines 2k-1 and 2k: case:created, then case:created:{the same id}.
	run awk -F'\t' 'NR % 2 { if ($3 != "case:created") bad++
			match($5, /"data":\{"id":"[^"]*"/); id = substr($5, RSTART + 14, RLENGTH - 15); next }
		$3 != "case:created:" id { bad++ }
		END { print NR, bad + 0 }' <<<"$output"
	[ "$output" = "5000 0" ]
}

# head_at_least N — true once the hub has stored N events.
head_at_least() { [ "$(hub_status_field head_seq 2>/dev/null || echo 0)" -ge "$1" ]; }

# ingest_from_fifo — starts `cc ingest` (pid INGEST, stderr in err) on a
# fifo whose writing end stays open on fd 7 until the test closes it.
ingest_from_fifo() {
	mkfifo "$BATS_TEST_TMPDIR/in"
	casectl --db "$DB" ingest <"$BATS_TEST_TMPDIR/in" 2>"$BATS_TEST_TMPDIR/err" &
	INGEST=$! # casectl itself, to signal
	BG_PIDS+=("$INGEST")
	exec 7>"$BATS_TEST_TMPDIR/in"
}

@test "an ingest commits and announces what came when its input pauses, without waiting for a full batch" {
	ingest_from_fifo
	cases 3 1 >&7
	# The producer is still there (the fifo is open), yet all three are in.
	wait_for head_at_least 6
	[ "$(cc list | wc -l)" -eq 3 ]
	cases 2 4 >&7
	wait_for head_at_least 10
	exec 7>&-
	wait "$INGEST"
	grep -q 'ingested 5: 5 created' "$BATS_TEST_TMPDIR/err"
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	run -2 --separate-stderr cc ingest --batch 0 </dev/null
	run -2 --separate-stderr cc ingest --batch 1000001 </dev/null
	[[ $stderr == *"--batch wants a whole number from 1 to 1000000"* ]]
}

# catches_int PID — true once PID has its own SIGINT handler (a background
# job starts with SIGINT ignored).
catches_int() {
	local mask
	# Until bash's fork has exec'd casectl it is a shell with bats's INT
	# trap (the same SigCgt bit): a SIGINT then never reaches casectl.
	[[ $(readlink "/proc/$1/exe" 2>/dev/null) == */casectl ]] || return 1
	mask=$(awk '/^SigCgt/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[[ -n $mask ]] && (((16#$mask >> 1) & 1))
}

# ingest_ended — waits for the ingest (pid INGEST) to end; STATUS is its
# exit status.
ingest_ended() {
	WAIT_SECS=30 wait_for gone "$INGEST"
	STATUS=0
	wait "$INGEST" || STATUS=$?
}

@test "an ingest waiting on its input stops on SIGTERM, keeps what it took, and exits 143" {
	ingest_from_fifo
	cases 3 1 >&7
	wait_for head_at_least 6
	# The producer is still there: only the signal ends the ingest.
	kill -TERM "$INGEST"
	ingest_ended
	[ "$STATUS" -eq 143 ]
	grep -q 'ingested 3: 3 created, 0 synced, 0 rejected (interrupted' "$BATS_TEST_TMPDIR/err"
	exec 7>&-
	[ "$(cc list | wc -l)" -eq 3 ]
	[ "$(cc outbox list | wc -l)" -eq 0 ]
}

@test "an ingest interrupted mid-stream stores and announces exactly what its summary counts" {
	cases 30000 1 >"$BATS_TEST_TMPDIR/in"
	casectl --db "$DB" ingest <"$BATS_TEST_TMPDIR/in" 2>"$BATS_TEST_TMPDIR/err" &
	INGEST=$!
	BG_PIDS+=("$INGEST")
	wait_for head_at_least 2
	kill -INT "$INGEST"
	local n
	ingest_ended
	n=$(sed -n 's/^casectl: ingested \([0-9]*\):.*/\1/p' "$BATS_TEST_TMPDIR/err")
	[ "$(db_sql "$DB" 'SELECT count(*) FROM cases')" -eq "$n" ]
	[ "$(hub_status_field head_seq)" -eq $((2 * n)) ]
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	# Cut short, it says so; done before the signal landed, it is a success.
	if ((n < 30000)); then
		[ "$STATUS" -eq 130 ] && grep -q '(interrupted' "$BATS_TEST_TMPDIR/err"
	else
		[ "$STATUS" -eq 0 ]
	fi
}

@test "an ingest whose input cannot be read says so and exits 74" {
	run -74 --separate-stderr cc ingest <"$BATS_TEST_TMPDIR"
	[[ $stderr == *"stdin: read error after line 0: Is a directory"* ]]
}

@test "an ingest reading endless input without a newline stops at once on SIGINT" {
	casectl --db "$DB" ingest </dev/zero 2>"$BATS_TEST_TMPDIR/err" &
	INGEST=$!
	BG_PIDS+=("$INGEST")
	wait_for catches_int "$INGEST"
	kill -INT "$INGEST"
	ingest_ended
	[ "$STATUS" -eq 130 ]
	grep -q 'ingested 0: .*(interrupted' "$BATS_TEST_TMPDIR/err"
}

@test "a long ingest on a terminal shows a progress line, cleared before the summary" {
	mkfifo "$BATS_TEST_TMPDIR/in"
	TMUX_SESSION=evkit-ingest-$$
	tmux new-session -d -s "$TMUX_SESSION" -x 120 -y 10 \
		"EVBUS_URL=$EVBUS_URL PATH=$PATH CASECTL_ACTOR=ann casectl --db '$DB' ingest <'$BATS_TEST_TMPDIR/in'; echo EXIT=\$?; exec sleep 600"
	exec 7>"$BATS_TEST_TMPDIR/in"
	cases 3 1 >&7
	# A second on, the input still open: the line says where the ingest is.
	wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | grep -q '^casectl: 3 lines: 3 created, 0 synced, 0 rejected'"
	cases 2 4 >&7
	wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | grep -q '^casectl: 5 lines: 5 created'"
	exec 7>&-
	wait_for bash -c "tmux capture-pane -p -t '$TMUX_SESSION' | grep -q '^EXIT=0'"
	run tmux capture-pane -p -t "$TMUX_SESSION"
	[[ $output == *"casectl: ingested 5: 5 created, 0 synced, 0 rejected"* ]]
	[[ $output != *"lines:"* ]]
}

@test "a hub lost in the middle of an ingest loses no notification: the rest wait in the outbox" {
	ingest_from_fifo
	# The first batches go out as they commit; then the hub goes away.
	cases 1500 1 >&7
	wait_for head_at_least 2000
	stop_hub
	cases 1500 1501 >&7
	exec 7>&-
	wait "$INGEST"
	grep -q 'ingested 3000: 3000 created' "$BATS_TEST_TMPDIR/err"
	grep -q 'kept in the outbox' "$BATS_TEST_TMPDIR/err"
	[ "$(cc list --limit 5000 | wc -l)" -eq 3000 ]
	start_hub
	run -0 cc outbox flush
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	# Each case once on both topics, per id in order: a frame the hub
	# stored just before it went, its ack lost, is sent again and stored
	# once (evbusd: Q frames; NATS: Nats-Msg-Id).
	local head
	head=$(hub_status_field head_seq)
	run -0 evsub --since 0 -n "$head" -W 10 -o tsv 'case:**'
	run awk -F'\t' '{ match($5, /"data":\{"id":"[^"]*"/); id = substr($5, RSTART + 14, RLENGTH - 15)
			if ($3 == "case:created") { if (a[id]++ || b[id]) bad++ }
			else if ($3 == "case:created:" id) { if (b[id]++ || !a[id]) bad++ }
			else bad++ }
		END { for (i in a) { n++; if (!b[i]) bad++ } print n, bad + 0 }' <<<"$output"
	[ "$output" = "3000 0" ]
}

@test "a database of casectl 0.1 is upgraded and its pending notifications still go out" {
	sqlite_only "casectl 0.1 kept its cases in SQLite only"
	local old=$BATS_TEST_TMPDIR/old.db
	sqlite3 "$old" <<-'SQL'
		CREATE TABLE agencies (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, name TEXT NOT NULL);
		CREATE TABLE offenders (id INTEGER PRIMARY KEY, name TEXT NOT NULL, postcode TEXT, match_key TEXT NOT NULL UNIQUE);
		CREATE TABLE cases (id TEXT PRIMARY KEY, agency_id INTEGER NOT NULL REFERENCES agencies(id),
		  case_reference TEXT NOT NULL, offender_id INTEGER REFERENCES offenders(id),
		  offence_action_date TEXT, offence_fine REAL, offence_costs REAL, offence_result TEXT,
		  inserted_at TEXT NOT NULL, updated_at TEXT NOT NULL, last_synced_at TEXT,
		  UNIQUE (agency_id, case_reference));
		CREATE INDEX cases_updated ON cases(updated_at);
		CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('admin','editor','viewer')));
		CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, action TEXT NOT NULL,
		  past TEXT NOT NULL, case_id TEXT NOT NULL, payload TEXT NOT NULL);
		INSERT INTO users VALUES ('ann', 'admin');
		INSERT INTO outbox (ts, action, past, case_id, payload) VALUES
		  ('2026-01-02T03:04:05.000006Z', 'create', 'created', 'c-1', '{"resource":"case","action":"create","actor":"ann","data":{"id":"c-1"}}'),
		  ('2026-01-02T03:04:06.000000Z', 'sync', 'synced', 'c-1', '{"resource":"case","action":"sync","actor":"ann","data":{"id":"c-1"}}');
		PRAGMA user_version = 1;
	SQL
	run -0 casectl --db "$old" list
	[ "$(sqlite3 "$old" 'PRAGMA user_version')" -eq 6 ]
	run -0 evsub --since 0 -n 4 -W 10 -o tsv 'case:**'
	run cut -f2,3 <<<"$output"
	[ "${lines[0]}" = "case:created	create" ] && [ "${lines[1]}" = "case:created:c-1	create" ]
	[ "${lines[2]}" = "case:synced	sync" ] && [ "${lines[3]}" = "case:synced:c-1	sync" ]
	run -0 evsub --since 0 -n 1 -W 10 'case:created'
	[ "$(jq -c '[.ts, .payload.data.id]' <<<"$output")" = '["2026-01-02T03:04:05.000006Z","c-1"]' ]
	[ "$(casectl --db "$old" outbox list | wc -l)" -eq 0 ]
}

@test "notifications an earlier casectl left as payload notes (format 3) still go out as they were" {
	sqlite_only "payload notes (format 3) were written to SQLite only, before PostgreSQL"
	stop_hub
	# The database as casectl wrote it before schema 5, one note pending.
	sqlite3 "$DB" <<-'SQL'
		ALTER TABLE notes RENAME TO notifications;
		PRAGMA user_version = 4;
		INSERT INTO notifications (count, lines, format) VALUES (2, CAST(
		  '2026-01-02T03:04:05.000006Z' || char(9) || 'create' || char(9) || 'created' || char(9) || 'c-3' || char(9) ||
		  '{"resource":"case","action":"create","actor":"ann","data":{"id":"c-3","x":[1,2]}}' || char(10) AS BLOB), 3);
	SQL
	start_hub
	run -0 cc list
	[ "$(sqlite3 "$DB" 'PRAGMA user_version')" -eq 6 ]
	run -0 evsub --since 0 -n 2 -W 10 'case:**'
	[ "$(jq -c '[.topic, .ts, .payload.data]' <<<"$output" | paste -sd' ')" = \
		'["case:created","2026-01-02T03:04:05.000006Z",{"id":"c-3","x":[1,2]}] ["case:created:c-3","2026-01-02T03:04:05.000006Z",{"id":"c-3","x":[1,2]}]' ]
	[ "$(sqlite3 "$DB" 'SELECT count(*) FROM notes')" -eq 0 ]
}

@test "an earlier casectl's payload notes (format 3) become event lines once; a damaged row stays damaged" {
	sqlite_only "payload notes (format 3) were written to SQLite only, before PostgreSQL"
	stop_hub
	sqlite3 "$DB" <<-'SQL'
		DROP TABLE outbox_producer;
		ALTER TABLE notes RENAME TO notifications;
		PRAGMA user_version = 4;
		INSERT INTO notifications (count, lines, format) VALUES (2, CAST(
		  '2026-01-02T03:04:05.000006Z' || char(9) || 'sync' || char(9) || 'synced' || char(9) || 'c-4' || char(9) ||
		  '{"data":{"id":"c-4"}}' || char(10) AS BLOB), 3);
		INSERT INTO notifications (count, lines, format) VALUES (2, CAST('not a note' || char(10) AS BLOB), 3);
	SQL
	run -0 --separate-stderr cc list
	[ "$(sqlite3 "$DB" 'SELECT group_concat(format) FROM notes ORDER BY id')" = 2,3 ]
	[ "$(sqlite3 "$DB" 'SELECT count(*) FROM outbox_producer WHERE length(id) = 32')" -eq 1 ]
	start_hub
	run -65 --separate-stderr cc outbox flush
	[[ $stderr == *"outbox row "*" is damaged"* ]]
	run -0 evsub --since 0 -n 2 -W 10 'case:**'
	[ "$(jq -r .topic <<<"$output" | paste -sd' ')" = 'case:synced case:synced:c-4' ]
	[ "$(hub_status_field head_seq)" -eq 2 ]
}

@test "hostile values are stored and returned byte for byte; over-long fields are refused clearly" {
	local nasty='x'"'"'); DROP TABLE cases; -- "quoted" \\ é ☃ 𝄞'
	local json
	json=$(jq -cn --arg r "$nasty" '{agency:"hse", case_reference:$r, offence_result:$r, offender:{name:$r}}')
	run -0 cc create "$json"
	local id
	id=$(jq -r .id <<<"$output")
	run -0 cc get "$id"
	[ "$(jq -r .case_reference <<<"$output")" = "$nasty" ]
	[ "$(jq -r .offender.name <<<"$output")" = "$nasty" ]
	# 1 MiB fields fit; one byte more is refused with the limit named.
	head -c 1048576 /dev/zero | tr '\0' 'a' >"$BATS_TEST_TMPDIR/mib"
	jq -cn --rawfile r "$BATS_TEST_TMPDIR/mib" '{agency:"hse", case_reference:"BIG", offence_result:$r}' |
		cc create >/dev/null
	[ "$(cc list --agency hse --sort case_reference --limit 1 | jq -r '.offence_result | length')" -eq 1048576 ]
	printf a >>"$BATS_TEST_TMPDIR/mib"
	run -65 --separate-stderr bash -c "jq -cn --rawfile r '$BATS_TEST_TMPDIR/mib' '{agency:\"hse\", case_reference:\"BIG2\", offence_result:\$r}' | casectl --db '$DB' create"
	[[ $stderr == *"longer than 1048576 bytes"* ]]
	run -65 --separate-stderr bash -c "printf '{\"agency\":\"hse\",\"case_reference\":\"B\",\"evil\":1}\nnot json\n' | casectl --db '$DB' create"
	[[ $stderr == *"stdin:1: unknown field 'evil'"* ]]
	[[ $stderr == *"stdin:2: invalid JSON"* ]]
	[ "$(cc list --limit 100 | wc -l)" -eq 2 ]
}

@test "casectl watch --refetch-window 500 over a burst of 20 creates refetches at most once a window, the last with the last case" {
	bg_to "$BATS_TEST_TMPDIR/watch" casectl --db "$DB" watch --refetch-window 500 --limit 100
	wait_for test -s "$BATS_TEST_TMPDIR/watch"
	cases 20 >"$BATS_TEST_TMPDIR/in"
	local i t0 t1
	t0=${EPOCHREALTIME/./}
	for ((i = 1; i <= 20; i++)); do sed -n "${i}p" "$BATS_TEST_TMPDIR/in" | cc create >/dev/null; done
	wait_for bash -c "tail -n 1 '$BATS_TEST_TMPDIR/watch' | json_true 'map(.case_reference) | index(\"R20\")'"
	t1=${EPOCHREALTIME/./}
	# The initial list, then at most one refetch per 500 ms window the
	# burst spans (however slow the machine made it), plus the trailing
	# one.
	local n max=$((3 + (t1 - t0) / 500000))
	n=$(wc -l <"$BATS_TEST_TMPDIR/watch")
	((n >= 2 && n <= max)) || fail "$n results for a burst of $(((t1 - t0) / 1000)) ms (at most $max)"
	[ "$(tail -n 1 "$BATS_TEST_TMPDIR/watch" | jq length)" -eq 20 ]
}

@test "casectl update, sync and destroy announce case:updated, case:synced and case:destroyed" {
	local id
	id=$(cc create '{"agency":"hse","case_reference":"U1","offence_fine":5}' | jq -r .id)
	listen 6
	run -0 cc update "$id" '{"offence_fine":7,"offence_result":"Appeal"}'
	[ "$(jq .offence_fine <<<"$output")" = 7 ]
	run -0 cc sync "$id"
	[ "$(jq -r .last_synced_at <<<"$output")" != null ]
	run -0 cc destroy "$id"
	wait "$LISTENER"
	run jq -r '(.topic | sub(":" + "'"$id"'"; ":ID")) + " " + .event' "$BATS_TEST_TMPDIR/events"
	assert_output $'case:updated update\ncase:updated:ID update\ncase:synced sync\ncase:synced:ID sync\ncase:destroyed destroy\ncase:destroyed:ID destroy'
	run -1 cc get "$id"
	run -65 cc update "$id" '{"agency":"x"}'
}

@test "casectl list filters by agency and offender and sorts by a known field only" {
	cases 10 | cc ingest 2>/dev/null
	cc create '{"agency":"ea","case_reference":"E%_","offender":{"name":"100% Pure_Water"}}' >/dev/null
	[ "$(cc list --agency ea | jq -r .case_reference)" = "E%_" ]
	[ "$(cc list --offender '0% Pure_' | wc -l)" -eq 1 ]
	[ "$(cc list --offender '%' | wc -l)" -eq 1 ]
	run -0 cc list --sort offence_fine --limit 3
	run jq -s -c 'map(.offence_fine)' <<<"$output"
	assert_output '[null,100,200]'
	run -2 cc list --sort 'id; DROP TABLE cases'
}

@test "casectl ingest --strict stops at the first bad line; --since filters by change time" {
	printf '%s\n' '{"agency":"hse","case_reference":"S1"}' 'oops' '{"agency":"hse","case_reference":"S2"}' >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr cc --strict ingest <"$BATS_TEST_TMPDIR/in"
	[[ $stderr == *"stdin:2: invalid JSON"* ]]
	[ "$(cc list | jq -r .case_reference)" = S1 ]
	run -0 cc list --since 2999-01-01T00:00:00Z
	assert_output ''
	[ "$(cc list --since 2000-01-01T00:00:00Z | wc -l)" -eq 1 ]
	run -65 --separate-stderr cc --max-line 20 create <"$BATS_TEST_TMPDIR/in"
	[[ $stderr == *"stdin:1: line longer than 20 bytes"* ]]
}

@test "casectl creates cases.db, its WAL and SHM 0600 whatever the umask" {
	sqlite_only "the server owns PostgreSQL's files"
	local db=$BATS_TEST_TMPDIR/private/cases.db
	(umask 022 && casectl --db "$db" init --admin ann >/dev/null)
	# watch keeps the database open, so its -wal and -shm stay.
	(umask 022 && exec casectl --db "$db" watch >"$BATS_TEST_TMPDIR/watch" 2>&1) &
	BG_PIDS+=($!)
	wait_for test -s "$BATS_TEST_TMPDIR/watch"
	wait_file "$db-wal"
	[ "$(stat -c %a "$db")" = 600 ]
	[ "$(stat -c %a "$db-wal")" = 600 ]
	[ "$(stat -c %a "$db-shm")" = 600 ]
	[ "$(stat -c %a "$BATS_TEST_TMPDIR/private")" = 700 ]
}

# offered WORDS... — what casectl's bash completion offers for the last word.
offered() {
	source "$BATS_TEST_DIRNAME/../completions/casectl.bash"
	COMP_WORDS=(casectl "$@")
	COMP_CWORD=$#
	COMPREPLY=()
	_casectl
	printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd' '
}

@test "casectl's usage and completion come from its command table: every command, sort column and role" {
	[ "$(offered '')" = "create destroy get ingest init list outbox sync update user watch" ]
	[ "$(offered user '')" = "add list" ]
	[ "$(offered outbox '')" = "flush list" ]
	[ "$(offered list --sort '')" = "case_reference inserted_at last_synced_at offence_action_date offence_costs offence_fine updated_at" ]
	[ "$(offered user add x --role '')" = "admin editor viewer" ]
	run -0 casectl --help
	local k
	for k in $(casectl --complete-words commands); do
		grep -q "^  $k" <<<"$output" || fail "usage lacks $k"
	done
}

# created_per_case FILE — "CASES CREATES MAX" over the case:created events
# of an evsub -o json log: distinct cases, events, most events of one case.
created_per_case() {
	jq -r 'select(.topic == "case:created") | .payload.data.case_reference' "$1" |
		sort | uniq -c | awk '{ n++; t += $1; if ($1 > m) m = $1 } END { print n + 0, t + 0, m + 0 }'
}

@test "an outbox sent again after the hub stored it (ack lost, crash) is stored once (issue 16.3)" {
	sqlite_only "a copy of the database file stands for the crash"
	stop_hub
	cases 50 | cc ingest 2>/dev/null
	[ "$(cc outbox list | wc -l)" -eq 100 ]
	# The database as a kill -9 leaves it after the hub stored a round but
	# before casectl recorded the acknowledgement.
	cp "$DB" "$BATS_TEST_TMPDIR/crashed.db"
	start_hub
	cc outbox flush
	[ "$(hub_status_field head_seq)" -eq 100 ]
	cp "$BATS_TEST_TMPDIR/crashed.db" "$DB"
	rm -f "$DB-wal" "$DB-shm"
	cc outbox flush
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	[ "$(hub_status_field head_seq)" -eq 100 ]
	on_nats || [ "$(hub_status_field duplicates_dropped)" -eq 100 ]
	evsub --since 0 -W 2 'case:**' >"$BATS_TEST_TMPDIR/log" || true
	[ "$(created_per_case "$BATS_TEST_TMPDIR/log")" = "50 50 1" ]
}

@test "kill -9 of casectl ingest mid-run, then a resumed run: one case:created per case (issue 16.3)" {
	local round
	cases 20000 >"$BATS_TEST_TMPDIR/all"
	for round in 1 2 3; do
		casectl --db "$DB" ingest --batch 500 <"$BATS_TEST_TMPDIR/all" 2>/dev/null &
		local pid=$!
		BG_PIDS+=("$pid")
		WAIT_SECS=60 wait_for head_at_least $((round * 2000))
		kill -9 "$pid" 2>/dev/null || true # (it may have finished)
		wait "$pid" 2>/dev/null || true
	done
	# Resume: the same input again (known cases sync), and the outbox drains.
	cc ingest --batch 500 <"$BATS_TEST_TMPDIR/all" 2>/dev/null
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	[ "$(db_sql "$DB" 'SELECT count(*) FROM cases')" -eq 20000 ]
	evsub --since 0 -W 5 'case:created' >"$BATS_TEST_TMPDIR/log" || true
	[ "$(created_per_case "$BATS_TEST_TMPDIR/log")" = "20000 20000 1" ]
}

@test "casectl list --since refuses what is not a date, clearly, with the usage status" {
	local bad
	for bad in zzz 2024-13-45 2024-02-30 2024-03-01T25:00:00Z ''; do
		run -2 --separate-stderr cc list --since "$bad"
		[[ $stderr == *"--since: '$bad' is not a date"* ]] || fail "$bad: $stderr"
	done
	cc create '{"agency":"hse","case_reference":"S1"}' >/dev/null
	run -0 cc list --since 2000-01-01
	[ "${#lines[@]}" -eq 1 ]
	run -0 cc list --since 2999-01-01T00:00:00Z
	[ "${#lines[@]}" -eq 0 ]
}

@test "an offence_action_date that is not a date is rejected with its reason, the rest ingested" {
	run -65 --separate-stderr cc ingest <<-'EOF2'
	{"agency":"hse","case_reference":"D1","offence_action_date":"not a date"}
	{"agency":"hse","case_reference":"D2","offence_action_date":"2024-02-29"}
	{"agency":"hse","case_reference":"D3","offence_action_date":"2024-13-45"}
	EOF2
	[[ $stderr == *"stdin:1: 'offence_action_date' is not a date"* ]]
	[[ $stderr == *"stdin:3: 'offence_action_date' is not a date"* ]]
	[[ $stderr == *"1 created, 0 synced, 2 rejected"* ]]
	run -0 cc list
	[ "$(jq -r .case_reference <<<"$output")" = D2 ]
	run -65 --separate-stderr cc create '{"agency":"hse","case_reference":"D4","offence_action_date":"tomorrow"}'
	run -65 --separate-stderr cc update "$(cc list | jq -r .id)" '{"offence_action_date":"x"}'
}

@test "a string holding \\u0000 is refused with its reason, never stored cut short" {
	run -65 --separate-stderr cc ingest <<-'EOF2'
	{"agency":"hse","case_reference":"A\u0000B"}
	{"agency":"hse","case_reference":"N2","offence_result":"lit\\u0000eral"}
	EOF2
	[[ $stderr == *"stdin:1: a string holds a NUL character"* ]]
	[[ $stderr == *"1 created, 0 synced, 1 rejected"* ]]
	run -0 cc list
	[ "$(jq -r '[.case_reference, .offence_result] | join(" ")' <<<"$output")" = 'N2 lit\u0000eral' ]
	run -65 --separate-stderr cc create '{"agency":"hse","case_reference":"A\u0000B"}'
	[[ $stderr == *"NUL character"* ]]
	run -65 --separate-stderr cc update "$(cc list | jq -r .id)" '{"offence_result":"x\u0000y"}'
	[[ $stderr == *"NUL character"* ]]
	[ "$(cc list | jq -r .case_reference)" = N2 ]
}

@test "casectl create - reads JSON lines on stdin; casectl ingest FILE reads the file" {
	cases 2 1 | cc create - >"$BATS_TEST_TMPDIR/out"
	[ "$(jq -r .case_reference "$BATS_TEST_TMPDIR/out" | paste -sd' ')" = "R1 R2" ]
	cases 3 2 >"$BATS_TEST_TMPDIR/in.jsonl"
	run -0 --separate-stderr cc ingest "$BATS_TEST_TMPDIR/in.jsonl" </dev/null
	[ "$stderr" = "casectl: ingested 3: 2 created, 1 synced, 0 rejected" ]
	printf '{"agency":"hse"}\n' >"$BATS_TEST_TMPDIR/bad.jsonl"
	run -65 --separate-stderr cc ingest "$BATS_TEST_TMPDIR/bad.jsonl"
	[[ $stderr == "casectl ingest: $BATS_TEST_TMPDIR/bad.jsonl:1: 'agency' and 'case_reference' are required"* ]]
	run -74 --separate-stderr cc ingest "$BATS_TEST_TMPDIR/nope"
	[[ $stderr == "casectl ingest: cannot open '$BATS_TEST_TMPDIR/nope'"* ]]
	cases 1 9 | cc ingest - 2>/dev/null
	[ "$(cc list | jq -r .case_reference | sort | paste -sd' ')" = "R1 R2 R3 R4 R9" ]
}

@test "casectl init refuses an empty admin name before it creates anything" {
	local db=$BATS_TEST_TMPDIR/empty.db
	run -2 --separate-stderr casectl --db "$db" init --admin ""
	[[ $stderr == *"--admin: the name is empty"* ]]
	[ ! -e "$db" ]
}

@test "casectl list --sort with an unknown column lists the valid ones; subcommand errors name the subcommand" {
	run -2 --separate-stderr cc list --sort bogus
	[ "$stderr" = "casectl: cannot sort by 'bogus' (inserted_at, updated_at, offence_action_date, offence_fine, offence_costs, case_reference, last_synced_at)" ]
	run -1 --separate-stderr cc get nope
	[ "$stderr" = "casectl get: no case 'nope'" ]
	run -65 --separate-stderr cc ingest <<<'not json'
	[[ $stderr == "casectl ingest: stdin:1: invalid JSON"* ]]
}

# firms N FIRST CASE — N input cases R<FIRST>..., their offenders written
# in CASE (upper or lower) with the postcode's spacing changed, so that
# only normalised names and postcodes match them to those of `cases`.
firms() {
	awk -v n="$1" -v first="$2" -v up="$3" 'BEGIN {
		for (i = first; i < first + n; i++) {
			name = sprintf("Firm  %d, Ltd.", i % 7); pc = sprintf("ls%d1aa", i % 3)
			if (up == "upper") { name = toupper(name); pc = toupper(pc) }
			printf "{\"agency\":\"hse\",\"case_reference\":\"R%d\",\"offender\":{\"name\":\"%s\",\"postcode\":\"%s\"},\"offence_fine\":%d}\n", i, name, pc, i
		}
	}'
}

@test "two ingests of overlapping files at once: the union of cases, one offender per match key, one notification per change" {
	# R1..R1500 in order, and R1001..R2500 backwards with its offenders
	# written differently: 500 cases and all 21 offenders in both, met in
	# opposite orders.
	cases 1500 1 >"$BATS_TEST_TMPDIR/a"
	firms 1500 1001 upper | tac >"$BATS_TEST_TMPDIR/b"
	local p pids=()
	for p in a b; do
		cc --actor ed ingest --batch 200 <"$BATS_TEST_TMPDIR/$p" 2>"$BATS_TEST_TMPDIR/$p.err" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	# Every line counted once: 2500 cases created, the 500 met twice synced.
	run awk '/^casectl: ingested/ { c += $4; s += $6 } END { print c, s }' "$BATS_TEST_TMPDIR/a.err" "$BATS_TEST_TMPDIR/b.err"
	[ "$output" = "2500 500" ]
	[ "$(db_sql "$DB" 'SELECT count(*) FROM cases')" -eq 2500 ]
	[ "$(db_sql "$DB" 'SELECT count(*) FROM offenders')" -eq 21 ]
	[ "$(db_sql "$DB" 'SELECT count(*) FROM agencies')" -eq 1 ]
	[ "$(cc list --limit 10000 | jq -r .case_reference | sort -u | wc -l)" -eq 2500 ]
	# On the bus: each case created once, each of the 500 synced once,
	# after its creation, each notification on its two topics together.
	run -0 cc outbox flush
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	evsub --since 0 -n 6000 -W 20 -o tsv 'case:**' >"$BATS_TEST_TMPDIR/events"
	run awk -F'\t' '{ match($5, /"data":\{"id":"[^"]*"/); id = substr($5, RSTART + 14, RLENGTH - 15)
			if (NR % 2) { if ($3 != "case:created" && $3 != "case:synced") bad++; t = $3; next }
			if ($3 != t ":" id) bad++
			if (t == "case:created") { if (created[id]++ || (id in synced)) bad++ }
			else if (!(id in created) || synced[id]++) bad++
		}
		END { for (i in created) nc++; for (i in synced) ns++; print NR, nc, ns, bad + 0 }' "$BATS_TEST_TMPDIR/events"
	[ "$output" = "6000 2500 500 0" ]
	[ "$(hub_status_field head_seq)" -eq 6000 ]
}

# outbox_empty — true once table notes of $DB holds no row.
outbox_empty() { [ "$(db_sql "$DB" 'SELECT count(*) FROM notes')" -eq 0 ]; }

@test "a lost database connection mid-ingest: a clear message, exit 69, and the unfinished batch not written" {
	on_pg || skip "postgresql only: a SQLite file has no connection to lose"
	ingest_from_fifo
	cases 3 1 >&7
	# The first batch is committed, announced and gone from the outbox.
	wait_for head_at_least 6
	wait_for outbox_empty
	pg_end_sessions "$DB"
	cases 2 4 >&7
	exec 7>&-
	ingest_ended
	[ "$STATUS" -eq 69 ]
	grep -q 'lost the connection to the database' "$BATS_TEST_TMPDIR/err"
	[ "$(db_sql "$DB" 'SELECT count(*) FROM cases')" -eq 3 ]
	[ "$(db_sql "$DB" "SELECT count(*) FROM cases WHERE case_reference IN ('R4', 'R5')")" -eq 0 ]
	[ "$(db_sql "$DB" 'SELECT count(*) FROM offenders')" -eq 3 ]
	[ "$(cc outbox list | wc -l)" -eq 0 ]
	[ "$(hub_status_field head_seq)" -eq 6 ]
	# The next run takes up where that one stopped.
	run -0 --separate-stderr cc ingest < <(cases 5 1)
	[ "$stderr" = "casectl: ingested 5: 2 created, 3 synced, 0 rejected" ]
}

@test "casectl on a database it cannot reach says so and exits 69" {
	local gone
	if on_pg; then
		gone="postgresql:///nothere?host=$BATS_TEST_TMPDIR&user=evkit&connect_timeout=5"
	else
		gone=$BATS_TEST_TMPDIR/nodir/none.db
	fi
	run -69 --separate-stderr casectl --db "$gone" list
	[[ $stderr == "casectl list: "* ]]
	CASECTL_DB=$DB run -0 casectl list
	CASECTL_DB=$gone run -0 casectl --db "$DB" list
}

@test "widgetd's keep_live list reads the cases from casectl's store, and connects again when the server cut it" {
	echo '{"widgets":[{"id":"recent","type":"keep_live","limit":2,"refetch_window":100}]}' >"$BATS_TEST_TMPDIR/conf.json"
	widgetd --state "$BATS_TEST_TMPDIR/widgets.db" --daemon --pidfile "$BATS_TEST_TMPDIR/w.pid" \
		--config "$BATS_TEST_TMPDIR/conf.json" --cases-db "$DB" --throttle 50
	BG_PIDS+=("$(cat "$BATS_TEST_TMPDIR/w.pid")")
	cases 3 1 | cc ingest 2>/dev/null
	wait_for bash -c "widgetd get recent | json_true '.items | map(.case_reference) == [\"R3\", \"R2\"]'"
	[ "$(widgetd get recent | jq -c '.items[0] | [.agency, .offender, .offence_fine]')" = '["hse","Firm 3 Ltd",300]' ]
	# A server that cut its sessions (a restart, a failover): widgetd
	# connects again and the list follows as before.
	! on_pg || pg_end_sessions "$DB"
	cases 2 4 | cc ingest 2>/dev/null
	wait_for bash -c "widgetd get recent | json_true '.items | map(.case_reference) == [\"R5\", \"R4\"]'"
}
