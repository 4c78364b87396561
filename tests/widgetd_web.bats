#!/usr/bin/env bats
# widgetd --http: the page, /widgets[/ID], the live feed (/events), checked
# with curl and in a real browser (Debian's chromium, driven headless
# through chromedriver's WebDriver API with curl).
load helpers

# The browser test waits generously (chromium starts slowly on a loaded
# machine): a longer limit per test here than the suites' 60 s.
[[ -z ${BATS_TEST_TIMEOUT:-} ]] || ((BATS_TEST_TIMEOUT >= 300)) || BATS_TEST_TIMEOUT=300

setup() {
	start_hub
	T=$BATS_TEST_TMPDIR
	CD_PID=
}
teardown() {
	stop_browser
	stop_all
}

# start_web [ARGS...] — widgetd --http (default 127.0.0.1:0) as a daemon,
# back once it serves; WPID, URL (the page's address, from its stderr).
start_web() {
	widgetd --state "$T/widgets.db" --daemon --pidfile "$T/w.pid" \
		--http "${HTTP_ADDR:-127.0.0.1:0}" --throttle 100 "$@" 2>"$T/werr" || return 1
	WPID=$(cat "$T/w.pid")
	BG_PIDS+=("$WPID")
	URL=$(sed -n 's/^widgetd: the page is at //p' "$T/werr")
	[[ $URL == ${URL_LIKE:-http://127.0.0.1:*/} ]]
}

# stop_web — stops widgetd by its pid and waits until it is gone.
stop_web() {
	kill "$WPID"
	WAIT_SECS=20 wait_for gone "$WPID"
	local p keep=()
	for p in "${BG_PIDS[@]}"; do [[ $p == "$WPID" ]] || keep+=("$p"); done
	BG_PIDS=("${keep[@]}")
}

# status PATH [METHOD] — the HTTP status of a request.
status() {
	local m=(-X "${2:-GET}")
	[[ ${2:-GET} == HEAD ]] && m=(-I)
	curl -s -o /dev/null -w "%{http_code}" "${m[@]}" "${URL%/}$1"
}

progress() {
	evpub "process:p1" "$1" "{\"process_id\":\"p1\",\"workflow_id\":\"wf1\"${2:+,$2}}"
}

# feeds — how many feeds widgetd has open (/status).
feeds() { curl -sf "${URL}status" | jq .feeds; }

# feeds_are N — widgetd has N feeds open.
feeds_are() { [ "$(feeds)" = "$1" ]; }

# feed_has FILE TEXT — the feed saved in FILE holds TEXT.
feed_has() { grep -qF -- "$2" "$1"; }

@test "/widgets and /widgets/ID answer what widgetd get answers; bad requests get 404, 405, 400" {
	start_web
	progress process_created
	progress step_progress '"percentage":42'
	wait_for widgetd get progress-wf1
	WAIT_SECS=20 wait_for eval "curl -sf '${URL}widgets/progress-wf1' | json_true '.percentage == 42'"
	run -0 curl -sf "${URL}widgets/progress-wf1"
	[ "$output" = "$(widgetd get progress-wf1)" ]
	run -0 curl -sf "${URL}widgets"
	[ "$(jq -r .id <<<"$output" | sort)" = "$(widgetd get | jq -r .id | sort)" ]
	[ "$(status /widgets/nothing-here)" = 404 ]
	[ "$(status /nothing-here)" = 404 ]
	run -0 status /widgets/progress-wf1 POST
	assert_output 405
	[ "$(status / DELETE)" = 405 ]
	[ "$(status /events POST)" = 405 ]
	[ "$(status /widgets/a/b)" = 400 ]
	[ "$(status '/widgets/%2e%2e')" = 400 ]
	[ "$(status '/widgets/a%00b')" = 400 ]
	# The page itself: HTML with its script, nothing from elsewhere.
	run -0 curl -sf "$URL"
	assert_output --partial '<!DOCTYPE html>'
	assert_output --partial 'new EventSource("events")'
	refute_output --regexp '(src|href)="(https?:)?//'
	[ "$(status / HEAD)" = 200 ]
	curl -sI "$URL" | grep -qi "^content-security-policy: default-src 'none'"
	# None of it disturbed the daemon.
	progress step_progress '"percentage":43'
	[ "$(widgetd get progress-wf1 | jq .percentage)" = 43 ]
	kill -0 "$WPID"
}

@test "--http: a lone port is loopback; another address needs --insecure" {
	run -2 --separate-stderr widgetd --state "$T/w2.db" --http 0.0.0.0:0
	[[ $stderr == *"--insecure"* ]]
	run -2 widgetd --state "$T/w2.db" --http 'not a port'
	HTTP_ADDR=0 start_web
}

# web_cert — a CA (ca.crt) and the page's key and certificate signed by it
# (web.key, web.crt, valid for 127.0.0.1 and localhost), made by openssl.
web_cert() {
	test_cert ca self "$T"
	test_cert web ca "$T"
}

@test "--http with --tls-cert/--tls-key: HTTPS, beyond loopback without --insecure; plain HTTP refused" {
	web_cert
	# The certificate makes a non-loopback address acceptable.
	HTTP_ADDR=0.0.0.0:0 URL_LIKE='https://0.0.0.0:*/' \
		start_web --tls-cert "$T/web.crt" --tls-key "$T/web.key"
	! grep -q 'without TLS' "$T/werr"
	local port=${URL##*:}
	port=${port%/}
	URL=https://127.0.0.1:$port/
	progress process_created
	progress step_progress '"percentage":42'
	wait_for widgetd get progress-wf1
	WAIT_SECS=20 wait_for eval "curl -sf --cacert '$T/ca.crt' '${URL}widgets/progress-wf1' | json_true '.percentage == 42'"
	run -0 curl -sf --cacert "$T/ca.crt" "${URL}widgets/progress-wf1"
	[ "$output" = "$(widgetd get progress-wf1)" ]
	run -0 curl -sf --cacert "$T/ca.crt" "${URL}widgets"
	[ "$(jq -r .id <<<"$output" | sort)" = "$(widgetd get | jq -r .id | sort)" ]
	# Plain HTTP on the same port gets no page (nng ends the connection);
	# a client without the CA refuses the certificate.
	run curl -sf --max-time 20 "http://127.0.0.1:$port/widgets"
	[[ $status == 52 || $status == 56 ]] # empty reply, or reset
	[ -z "$output" ]
	run curl -sf --max-time 20 "${URL}widgets"
	[ "$status" -ne 0 ]
	# The page is still served afterwards, and its live feed over TLS.
	curl -sf --cacert "$T/ca.crt" "$URL" | grep -qi '<html'
	bg curl -s -N --max-time 120 --cacert "$T/ca.crt" -o "$T/feed" "${URL}events"
	WAIT_SECS=20 wait_for feed_has "$T/feed" 'event: snapshot'
	progress step_progress '"percentage":60'
	WAIT_SECS=20 wait_for feed_has "$T/feed" '"percentage":60'
	kill -0 "$WPID"
	# A certificate without its key is a usage error.
	run -2 --separate-stderr widgetd --state "$T/w2.db" --http 0 --tls-cert "$T/web.crt"
	[[ $stderr == *"--tls-key"* ]]
}

@test "--http beyond loopback with --insecure and no certificate: served in the clear, with a warning" {
	HTTP_ADDR=0.0.0.0:0 URL_LIKE='http://0.0.0.0:*/' start_web --insecure
	grep -q "warning: serving the page on 'http://0.0.0.0:.*' without TLS (--insecure)" "$T/werr"
	local port=${URL##*:}
	run -0 curl -sf "http://127.0.0.1:${port%/}/widgets"
}

@test "the feed sends the whole current state first, then each update and removal" {
	start_web
	progress process_created
	progress step_progress '"percentage":10'
	WAIT_SECS=20 wait_for eval "curl -sf '${URL}widgets/progress-wf1' | json_true '.percentage == 10'"
	bg curl -s -N --max-time 120 -o "$T/feed" "${URL}events"
	WAIT_SECS=20 wait_for feed_has "$T/feed" 'event: snapshot'
	grep -A1 '^event: snapshot' "$T/feed" | sed -n 's/^data: //p' >"$T/snap"
	jq -e 'map(select(.id == "progress-wf1"))[0].percentage == 10' "$T/snap"
	progress step_progress '"percentage":60'
	WAIT_SECS=20 wait_for feed_has "$T/feed" '"percentage":60'
	progress workflow_completed '"status":"completed"'
	WAIT_SECS=20 wait_for feed_has "$T/feed" 'event: widget_removed'
	# In order: hello, the snapshot, then the changes; each once.
	run -0 grep '^event: ' "$T/feed"
	assert_line --index 0 'event: hello'
	assert_line --index 1 'event: snapshot'
	[ "$(grep -c '"percentage":60' "$T/feed")" -le 1 ]
	[ "$(grep -c '^event: widget_removed' "$T/feed")" -eq 1 ]
	grep -A1 '^event: widget_removed' "$T/feed" | grep -qF 'data: {"id":"progress-wf1"}'
	grep -A1 '^event: widget_updated' "$T/feed" | grep 'data: ' | sed 's/^data: //' | jq -e -s 'map(.id) | index("result-wf1") != null'
}

# finish WF — workflow WF runs to completion (the events evworker sends),
# and its result is on the page.
finish() {
	local ids="\"process_id\":\"p-$1\",\"workflow_id\":\"$1\""
	evpub "workflow:$1" process_created "{$ids}"
	evpub "workflow:$1" workflow_completed "{$ids,\"status\":\"completed\"}"
	WAIT_SECS=20 wait_for curl -sf -o /dev/null "${URL}widgets/result-$1"
}

@test "--max-widgets: the feed announces each dropped result's removal once; the page's widgets no longer hold it" {
	start_web --max-widgets 2
	bg curl -s -N --max-time 120 -o "$T/feed" "${URL}events"
	WAIT_SECS=20 wait_for feed_has "$T/feed" 'event: snapshot'
	local wf
	for wf in a b c d; do finish "$wf"; done
	WAIT_SECS=20 wait_for feed_has "$T/feed" 'data: {"id":"progress-d"}'
	run -0 bash -c "grep -A1 '^event: widget_removed' '$T/feed' | sed -n 's/^data: //p'"
	# in order, each once: a progress widget as its result replaces it, a
	# result as the next workflow starts past the bound
	assert_output '{"id":"progress-a"}
{"id":"progress-b"}
{"id":"result-a"}
{"id":"progress-c"}
{"id":"result-b"}
{"id":"progress-d"}'
	run -0 bash -c "curl -sf '${URL}widgets' | jq -r 'select(.type == \"result\") | .id'"
	assert_output 'result-c
result-d'
	[ "$(status /widgets/result-a)" = 404 ]
}

@test "200 open feeds at once: each gets the state and the updates, the daemon keeps folding" {
	start_web
	progress process_created
	local i n
	for i in $(seq 1 200); do
		bg curl -s -N --max-time 300 -o "$T/feed.$i" "${URL}events"
	done
	all_connected() { [ "$(grep -l 'event: snapshot' "$T"/feed.* 2>/dev/null | wc -l)" -eq 200 ]; }
	WAIT_SECS=120 wait_for all_connected
	for i in $(seq 1 50); do
		progress step_progress "\"percentage\":$i"
	done
	[ "$(widgetd get progress-wf1 | jq .percentage)" = 50 ]
	all_updated() { [ "$(grep -l '"percentage":50' "$T"/feed.* | wc -l)" -eq 200 ]; }
	WAIT_SECS=120 wait_for all_updated
	[ "$(curl -sf "${URL}widgets/progress-wf1" | jq .percentage)" = 50 ]
	feeds_are 200
	# Pages that go away are let go at once, not at the next write.
	for p in "${BG_PIDS[@]}"; do
		[[ $p == "$WPID" ]] || kill "$p"
	done
	WAIT_SECS=60 wait_for feeds_are 0
}

@test "a feed that stops reading is dropped; the daemon folds on meanwhile" {
	start_web
	bg curl -s -N --max-time 300 -o "$T/slow" "${URL}events"
	local slow=${BG_PIDS[-1]}
	WAIT_SECS=20 wait_for feed_has "$T/slow" 'event: snapshot'
	feeds_are 1
	kill -STOP "$slow"
	# Far more than the feed's queue and the sockets' buffers hold: the
	# last announcements alone of 200 progress widgets, each with 50
	# updates of 4 KiB, are 40 MB.
	local pad
	pad=$(head -c 4000 /dev/zero | tr '\0' x)
	awk -v pad="$pad" 'BEGIN { for (i = 0; i < 10000; i++)
		printf "{\"topic\":\"process:p%d\",\"event\":\"progress_update\",\"payload\":{\"process_id\":\"p%d\",\"workflow_id\":\"big%d\",\"content\":\"%d %s\"}}\n", i % 200, i % 200, i % 200, i, pad }' >"$T/events"
	evpub <"$T/events"
	progress process_created
	progress step_progress '"percentage":77'
	# The fold went on while the page slept (40 MB to fold: a while).
	[ "$(widgetd -W 120 get progress-wf1 | jq .percentage)" = 77 ]
	# widgetd let the sleeper go while it still sleeps.
	WAIT_SECS=60 wait_for feeds_are 0
	# The sleeper was cut off: woken, it reads what was sent and ends.
	kill -CONT "$slow"
	WAIT_SECS=60 wait_for gone "$slow"
	! feed_has "$T/slow" '"percentage":77'
	# A new page gets everything.
	bg curl -s -N --max-time 120 -o "$T/fresh" "${URL}events"
	WAIT_SECS=30 wait_for feed_has "$T/fresh" '"percentage":77'
}

# ---- the browser ----

# start_browser — chromedriver on a free loopback port and a headless
# chromium session at 1280x800; CD (its address), SID. Skips, saying so,
# where chromium or chromedriver is not installed.
start_browser() {
	command -v chromium >/dev/null && command -v chromedriver >/dev/null ||
		skip "chromium and chromium-driver are not installed (make deps installs them on Debian)"
	chromedriver --port=0 >"$T/cd.log" 2>&1 &
	CD_PID=$!
	WAIT_SECS=60 wait_for grep -q 'started successfully on port' "$T/cd.log"
	CD="http://127.0.0.1:$(sed -n 's/.*started successfully on port \([0-9]*\).*/\1/p' "$T/cd.log")"
	local caps
	caps=$(jq -nc --arg dir "$T/profile" '{capabilities: {alwaysMatch: {browserName: "chrome",
		"goog:chromeOptions": {binary: "/usr/bin/chromium", args: ["--headless=new",
		"--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--window-size=1280,800", "--user-data-dir=" + $dir]}}}}')
	SID=$(curl -sf --max-time 120 -H 'Content-Type: application/json' -d "$caps" "$CD/session" |
		jq -r .value.sessionId)
	[[ -n $SID && $SID != null ]]
}

stop_browser() {
	[[ -n ${CD_PID:-} ]] || return 0
	[[ -n ${SID:-} ]] && curl -s --max-time 30 -X DELETE "$CD/session/$SID" >/dev/null
	kill "$CD_PID" 2>/dev/null || true
	WAIT_SECS=20 wait_for gone "$CD_PID" || kill -KILL "$CD_PID" 2>/dev/null || true
	wait "$CD_PID" 2>/dev/null || true
	CD_PID=
}

# wd METHOD PATH [JSON] — one WebDriver command on the session; its value.
wd() {
	curl -sf --max-time 60 -X "$1" -H 'Content-Type: application/json' \
		${3:+-d "$3"} "$CD/session/$SID$2" | jq -c .value
}

# js EXPR — the value of a JavaScript expression in the page.
js() { wd POST /execute/sync "$(jq -nc --arg e "return ($1);" '{script: $e, args: []}')"; }

# page_true EXPR — the expression is true in the page now.
page_true() { [ "$(js "$1")" = true ]; }

# card ID — the expression for widget ID's card text ("" when absent).
card() { echo "(document.getElementById('w-$1') || {textContent: ''}).textContent"; }

@test "in a browser: a running workflow's bar rises and becomes its result without a reload; widgetd away and back" {
	start_web
	start_browser
	wd POST /url "$(jq -nc --arg u "$URL" '{url: $u}')" >/dev/null
	WAIT_SECS=60 wait_for page_true "document.getElementById('state').className === 'on'"
	js "window.evkitMark = 'same page'" >/dev/null
	# Cases (a session list and a counter) and a workflow that fails.
	local i
	for i in 1 2 3; do
		evpub case:created create "{\"resource\":\"case\",\"action\":\"create\",\"data\":{\"id\":\"c$i\",\"case_reference\":\"HSE/2026/00$i\",\"offender\":\"Acme $i Ltd\"}}"
	done
	WAIT_SECS=60 wait_for page_true "$(card session-cases).includes('HSE/2026/003')"
	WAIT_SECS=60 wait_for page_true "$(card case-events).includes('create')"
	echo '[{"name":"validate","run":["sh","-c","echo bad input >&2; exit 3"]}]' >"$T/steps6.json"
	evworker --db "$T/jobs.db" enqueue --steps "$T/steps6.json" --workflow wf6 --max-attempts 1 >/dev/null
	evworker --db "$T/jobs.db" run --drain 2>/dev/null || true
	WAIT_SECS=60 wait_for page_true "$(card progress-wf6).includes('exit 3')"
	# A workflow that stops half-way through its first of two steps (25%)
	# until the test lets it go on.
	jq -n --arg go "$T/go" '[
	  {name: "validate", run: ["sh", "-c", "echo 50 half way >&$EVWORKER_PROGRESS_FD; i=0; while [ ! -e \"$1\" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done", "step", $go]},
	  {name: "process", run: ["true"]}]' >"$T/steps.json"
	evworker --db "$T/jobs.db" enqueue --steps "$T/steps.json" --workflow wf7 >/dev/null
	bg evworker --db "$T/jobs.db" run --drain
	local worker=${BG_PIDS[-1]}
	WAIT_SECS=60 wait_for page_true "$(card progress-wf7).includes('25%')"
	page_true "document.querySelector('#w-progress-wf7 .bar > div').style.width === '25%'"
	page_true "$(card progress-wf7).includes('Validating input')"
	# The screenshot, at 1280x800, while the workflow runs.
	wd POST /goog/cdp/execute '{"cmd":"Emulation.setDeviceMetricsOverride","params":{"width":1280,"height":800,"deviceScaleFactor":1,"mobile":false}}' >/dev/null
	wd GET /screenshot | jq -r . | base64 -d >"$T/widgetd-page.png"
	[ "$(head -c 8 "$T/widgetd-page.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
	[ "$(head -c 24 "$T/widgetd-page.png" | tail -c 8 | od -An -tx1 | tr -d ' \n')" = 0000050000000320 ]
	echo "# screenshot: $T/widgetd-page.png" >&3
	[[ -z ${WIDGETD_SCREENSHOT:-} ]] || cp "$T/widgetd-page.png" "$WIDGETD_SCREENSHOT"
	touch "$T/go"
	WAIT_SECS=60 wait_for page_true "$(card result-wf7).includes('completed')"
	WAIT_SECS=60 wait_for page_true "!document.getElementById('w-progress-wf7')"
	page_true "document.querySelector('#w-result-wf7 .bar > div').style.width === '100%'"
	wait "$worker"
	# No reload happened: the mark set on the page is still there.
	[ "$(js "window.evkitMark")" = '"same page"' ]

	# widgetd stopped: the page says disconnected.
	local port=${URL##*:}
	port=${port%/}
	stop_web
	WAIT_SECS=60 wait_for page_true "document.getElementById('state').className === 'off'"
	page_true "document.getElementById('state').textContent.includes('disconnected')"
	# Meanwhile a second workflow runs to its end on the bus.
	echo '[{"name":"only","run":["true"]}]' >"$T/steps8.json"
	evworker --db "$T/jobs.db" enqueue --steps "$T/steps8.json" --workflow wf8 >/dev/null
	evworker --db "$T/jobs.db" run --drain 2>/dev/null
	# Back on the same port: the page reconnects by itself, with the
	# current state (wf8's result, folded from the bus after the restart).
	restart() { HTTP_ADDR=127.0.0.1:$port start_web; }
	WAIT_SECS=60 wait_for restart
	WAIT_SECS=60 wait_for page_true "document.getElementById('state').className === 'on'"
	WAIT_SECS=60 wait_for page_true "$(card result-wf8).includes('completed')"
	page_true "$(card result-wf7).includes('completed')"
	[ "$(js "window.evkitMark")" = '"same page"' ]
}
