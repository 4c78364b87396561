/* widgetd — folds the bus's events into widget state (the seed's LiveView
 * widgets), keeps it durably, publishes each change on widget:{id}, and
 * shows it (widgetd get, widgetd view). */
#include "evkit/tls.h"
#include "evkit/buf.h"
#include "evkit/cases.h"
#include "evkit/bus.h"
#include "evkit/daemon.h"
#include "evkit/err.h"
#include "evkit/opts.h"
#include "evkit/event.h"
#include "evkit/fold.h"
#include "evkit/gate.h"
#include "evkit/jsonmem.h"
#include "evkit/store.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define SAVE_EVERY 10000    /* events folded between saves while busy */
#define HOUSEKEEP_EVERY 256 /* events between timer checks while busy */
#define SESSION_TOPIC "widgetd:session" /* widgetd session start|stop */
#define GET_TOPIC "widgetd:get"         /* widgetd get and view ask here */
#define REPLY_PREFIX "widgetd:reply:"   /* ... for answers on REPLY_PREFIX{nonce} */
#define ANSWER_MS 5000                  /* how long get waits for the daemon */

static long long answer_ms = ANSWER_MS; /* -W: how long get and view wait */

struct opts {
	const char *bus, *config, *cases_db, *state, *pidfile;
	long long throttle_ms;
	bool daemon;
};

static volatile sig_atomic_t stopping;

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: widgetd [--bus URL] [--config FILE] [--cases-db FILE] [--state FILE]\n"
		"               [--throttle MS] [--daemon] [--pidfile FILE]\n"
		"       widgetd [-W SECS] get [ID]\n"
		"       widgetd [-W SECS] view\n"
		"       widgetd session start|stop [ID]\n"
		"\n"
		"Folds workflow and case events into widgets: progress-{wf} (replaced by\n"
		"result-{wf}), keep_live lists re-queried from casectl's database, session\n"
		"lists and counters. Publishes each change on widget:{id} (widget_updated,\n"
		"at most once per --throttle window, the last state always sent).\n"
		"\n"
		"  --bus URL        the hub (default $EVBUS_URL, else a private ipc path)\n"
		EVK_TLS_USAGE
		"  --config FILE    widgets to keep (JSON; default: the seed's widgets)\n"
		"  --cases-db FILE  casectl's database, for keep_live lists\n"
		"  --state FILE     state and last applied seq (default\n"
		"                   $XDG_STATE_HOME/evkit/widgets.db)\n"
		"  --throttle MS    per widget publishing window (default 500)\n"
		"  --daemon         go to the background once subscribed\n"
		"  --pidfile FILE   write the daemon's pid to FILE\n"
		"  -W, --wait SECS  get, view: wait this long for the daemon (default 5)\n"
		"  -h, --help, --version\n"
		"\n"
		"get asks the running daemon for one widget (exit 1 if unknown) or all,\n"
		"as JSON lines, as of every event published before it; view is a live\n"
		"terminal dashboard (q or Ctrl-C quits), plain lines when piped.\n"
		"session start empties a session list and collects from then on; session\n"
		"stop freezes it (all session widgets, or ID only).\n"
		"\n"
		"Exit: 0 ok, 1 unknown widget, 2 usage, 65 bad config, 69 no hub, no\n"
		"daemon answering or no state.\n");
	exit(status);
}

/* ---- configured widgets ---- */

enum kind { K_KEEP_LIVE, K_SESSION, K_COUNTER };

struct decl {
	enum kind kind;
	char id[128];
	char pattern[256]; /* counter: topics; keep_live: events that refetch */
	char event[EVK_EVENT_MAX + 1];
	long limit;
	long long window_ms;
	struct evk_gate *refetch; /* keep_live */
	long long queries;
};

static struct decl decls[64];
static int ndecls;
static size_t list_max = EVK_FOLD_LIST_MAX;

static const char *default_config =
	"{\"widgets\":["
	"{\"id\":\"recent-cases\",\"type\":\"keep_live\",\"limit\":100,\"refetch_window\":5000},"
	"{\"id\":\"session-cases\",\"type\":\"session\",\"limit\":50},"
	"{\"id\":\"case-events\",\"type\":\"counter\",\"pattern\":\"case:*\"}"
	"]}";

static void
load_config(const struct opts *o)
{
	char why[EVK_OPT_WHY];
	cJSON *c = NULL;
	int rv = o->config ? evk_json_file_read(o->config, &c, why) : EVK_OK;
	if (rv != EVK_OK)
		evk_die(rv == EVK_EIO ? EVK_EX_IOERR : EVK_EX_DATAERR, "config %s", why);
	const char *name = o->config ? o->config : "the built-in config";
	if (c == NULL)
		c = cJSON_Parse(default_config);
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(c, "widgets");
	if (!cJSON_IsObject(c) || !cJSON_IsArray(ws))
		evk_die(EVK_EX_DATAERR, "%s: want {\"widgets\": [...]}", name);
	const cJSON *lm = cJSON_GetObjectItemCaseSensitive(c, "list_max");
	if (lm && (!cJSON_IsNumber(lm) || lm->valuedouble < 1 || lm->valuedouble > 10000))
		evk_die(EVK_EX_DATAERR, "%s: list_max is a number from 1 to 10000", name);
	if (lm)
		list_max = (size_t)lm->valuedouble;
	const cJSON *w;
	cJSON_ArrayForEach(w, ws) {
		if (ndecls == (int)(sizeof(decls) / sizeof(decls[0])))
			evk_die(EVK_EX_DATAERR, "%s: too many widgets", name);
		struct decl *d = &decls[ndecls];
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
		const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "type"));
		const cJSON *limit = cJSON_GetObjectItemCaseSensitive(w, "limit");
		const cJSON *win = cJSON_GetObjectItemCaseSensitive(w, "refetch_window");
		const char *pat = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "pattern"));
		const char *ev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "event"));
		if (id == NULL || !evk_topic_valid(id, strlen(id)) || strchr(id, ':') ||
		    strlen(id) >= sizeof(d->id))
			evk_die(EVK_EX_DATAERR, "%s: widget %d needs an id (no ':')", name, ndecls + 1);
		snprintf(d->id, sizeof(d->id), "%s", id);
		if (type && strcmp(type, "keep_live") == 0)
			d->kind = K_KEEP_LIVE;
		else if (type && strcmp(type, "session") == 0)
			d->kind = K_SESSION;
		else if (type && strcmp(type, "counter") == 0)
			d->kind = K_COUNTER;
		else
			evk_die(EVK_EX_DATAERR, "%s: widget '%s': unknown type '%s' (keep_live, session,"
						" counter; progress and result widgets come by themselves)",
				name, id, type ? type : "");
		d->limit = cJSON_IsNumber(limit) && limit->valuedouble >= 1 ? (long)limit->valuedouble
									     : d->kind == K_KEEP_LIVE ? 100 : 50;
		d->window_ms = cJSON_IsNumber(win) && win->valuedouble >= 1 ? (long long)win->valuedouble
									   : 5000;
		snprintf(d->pattern, sizeof(d->pattern), "%s",
			 pat ? pat : d->kind == K_COUNTER ? "**" : "case:*");
		if (!evk_pattern_valid(d->pattern))
			evk_die(EVK_EX_DATAERR, "%s: widget '%s': invalid pattern '%s'", name, id, d->pattern);
		if (ev && !evk_event_name_valid(ev, strlen(ev)))
			evk_die(EVK_EX_DATAERR, "%s: widget '%s': invalid event '%s'", name, id, ev);
		snprintf(d->event, sizeof(d->event), "%s", ev ? ev : "");
		if (d->kind == K_KEEP_LIVE &&
		    !(d->refetch = evk_gate_new(EVK_GATE_THROTTLE, d->window_ms, 1, 4096)))
			evk_die(EVK_EX_FAIL, "out of memory");
		ndecls++;
	}
	cJSON_Delete(c);
}

/* ---- the daemon ---- */

static cJSON *widgets;
static sqlite3 *state_db, *cases_db;
static struct evk_gate *publish_gate;
static struct evk_pub *pub;
static uint64_t last_seq;
static long long loop_now; /* the monotonic clock, read once per event */

static cJSON *
widget_or_new(const char *id, const char *type)
{
	cJSON *w = evk_fold_find(widgets, id);
	if (w)
		return w;
	w = cJSON_CreateObject();
	if (w == NULL || !cJSON_AddStringToObject(w, "id", id) ||
	    !cJSON_AddStringToObject(w, "type", type) || !cJSON_AddItemToArray(widgets, w))
		evk_die(EVK_EX_FAIL, "out of memory");
	return w;
}

static int publish(void *arg, const char *id_, size_t len);

static void
changed(void *arg, const char *id, enum evk_fold_change c)
{
	(void)arg;
	/* A removal is the widget's last word: it goes at once, and replaces
	 * an update the throttle still held. */
	if (c == EVK_FOLD_REMOVED) {
		evk_gate_forget(publish_gate, id, strlen(id));
		publish(NULL, id, strlen(id));
		return;
	}
	/* Throttled per widget: the gate holds the id, the state is read
	 * when it is published, so the last state always goes out. */
	if (evk_gate_offer(publish_gate, id, strlen(id), last_seq, id, strlen(id), loop_now,
			   publish, NULL) > 0)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* Announces the widget's current state (or its removal) on widget:{id}.
 * A failure is said on stderr; the state itself is kept and saved, and the
 * widget's next change announces it again. */
static int
publish(void *arg, const char *id_, size_t len)
{
	char id[EVK_FOLD_ID_MAX + 1], topic[EVK_TOPIC_MAX + 1];
	(void)arg;
	if (len > EVK_FOLD_ID_MAX) {
		evk_warn("cannot announce widget '%.*s...': id longer than %d bytes", 40, id_,
			 EVK_FOLD_ID_MAX);
		return 0;
	}
	snprintf(id, sizeof(id), "%.*s", (int)len, id_);
	snprintf(topic, sizeof(topic), "widget:%s", id);
	cJSON *w = evk_fold_find(widgets, id);
	cJSON *gone = NULL;
	if (w == NULL && ((gone = cJSON_CreateObject()) == NULL ||
			  !cJSON_AddStringToObject(gone, "id", id)))
		evk_die(EVK_EX_FAIL, "out of memory");
	int rv;
	if (pub && (rv = evk_pub_event(pub, topic, w ? "widget_updated" : "widget_removed",
				       w ? w : gone)) != EVK_OK)
		evk_warn("cannot announce widget '%s': %s", id, evk_strerror(rv));
	cJSON_Delete(gone);
	return 0;
}

/* keep_live: the list re-queried from casectl's database. */
static int
refetch(void *arg, const char *line, size_t len)
{
	struct decl *d = arg;
	(void)line;
	(void)len;
	cJSON *w = widget_or_new(d->id, "keep_live");
	cJSON *items = cJSON_CreateArray();
	d->queries++;
	if (cases_db && items && evk_cases_recent(cases_db, d->limit, items) != EVK_OK)
		evk_warn("keep_live '%s': %s", d->id, sqlite3_errmsg(cases_db));
	if (items == NULL ||
	    !(cJSON_GetObjectItemCaseSensitive(w, "items")
		      ? cJSON_ReplaceItemInObjectCaseSensitive(w, "items", items)
		      : cJSON_AddItemToObject(w, "items", items)))
		evk_die(EVK_EX_FAIL, "out of memory");
	cJSON *q = cJSON_GetObjectItemCaseSensitive(w, "queries");
	if (q)
		cJSON_SetNumberValue(q, (double)d->queries);
	else
		cJSON_AddNumberToObject(w, "queries", (double)d->queries);
	changed(NULL, d->id, EVK_FOLD_UPDATED);
	return 0;
}

static void session_add(struct decl *d, const struct evk_event *ev);

static void
apply_decls(const struct evk_event *ev, long long now)
{
	for (int i = 0; i < ndecls; i++) {
		struct decl *d = &decls[i];
		if (!evk_pattern_match(d->pattern, ev->topic, ev->topic_len))
			continue;
		if (d->event[0] && (strlen(d->event) != ev->event_len ||
				    memcmp(d->event, ev->event, ev->event_len) != 0))
			continue;
		if (d->kind == K_COUNTER) {
			cJSON *w = widget_or_new(d->id, "counter");
			cJSON *counts = cJSON_GetObjectItemCaseSensitive(w, "counts");
			if (counts == NULL)
				counts = cJSON_AddObjectToObject(w, "counts");
			char key[EVK_EVENT_MAX + 1];
			snprintf(key, sizeof(key), "%.*s", (int)ev->event_len, ev->event);
			cJSON *n = cJSON_GetObjectItemCaseSensitive(counts, key);
			if (n)
				cJSON_SetNumberValue(n, n->valuedouble + 1);
			else if (!counts || !cJSON_AddNumberToObject(counts, key, 1))
				evk_die(EVK_EX_FAIL, "out of memory");
			changed(NULL, d->id, EVK_FOLD_UPDATED);
		} else if (d->kind == K_KEEP_LIVE) {
			if (evk_gate_offer(d->refetch, "k", 1, ev->seq, "k", 1, now, refetch, d) > 0)
				evk_die(EVK_EX_FAIL, "out of memory");
		} else if (d->kind == K_SESSION &&
			   ((ev->event_len == 6 && memcmp(ev->event, "create", 6) == 0) ||
			    (ev->event_len == 4 && memcmp(ev->event, "sync", 4) == 0))) {
			session_add(d, ev);
		}
	}
}

/* A session list: the cases created or synced since the session started,
 * newest first, each once, capped at the widget's limit. */
static cJSON *
session_widget(const struct decl *d, const char *ts, size_t tslen)
{
	cJSON *w = evk_fold_find(widgets, d->id);
	if (w)
		return w;
	w = widget_or_new(d->id, "session");
	char started[EVK_TS_LEN + 1];
	snprintf(started, sizeof(started), "%.*s", (int)tslen, ts);
	if (!cJSON_AddTrueToObject(w, "active") || !cJSON_AddStringToObject(w, "started_at", started) ||
	    !cJSON_AddArrayToObject(w, "items"))
		evk_die(EVK_EX_FAIL, "out of memory");
	return w;
}

static void
session_add(struct decl *d, const struct evk_event *ev)
{
	cJSON *w = session_widget(d, ev->ts, EVK_TS_LEN);
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w, "active")))
		return;
	cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	cJSON *data = cJSON_DetachItemFromObjectCaseSensitive(p, "data");
	cJSON_Delete(p);
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "id"));
	if (!cJSON_IsObject(data) || id == NULL) {
		cJSON_Delete(data);
		return;
	}
	cJSON *items = cJSON_GetObjectItemCaseSensitive(w, "items"), *it;
	if (!cJSON_IsArray(items))
		evk_die(EVK_EX_FAIL, "session '%s' has no items", d->id);
	int i = 0;
	cJSON_ArrayForEach(it, items) {
		const char *other = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
		if (other && strcmp(other, id) == 0) {
			cJSON_DeleteItemFromArray(items, i);
			break;
		}
		i++;
	}
	if (!cJSON_InsertItemInArray(items, 0, data))
		evk_die(EVK_EX_FAIL, "out of memory");
	while (cJSON_GetArraySize(items) > d->limit)
		cJSON_DeleteItemFromArray(items, cJSON_GetArraySize(items) - 1);
	changed(NULL, d->id, EVK_FOLD_UPDATED);
}

/* widgetd session start|stop [ID], as it comes through the bus: start
 * begins a new session (the list emptied), stop freezes the list. Both
 * take effect at the event's place in the stream. */
static void
session_command(const struct evk_event *ev)
{
	bool start = ev->event_len == 13 && memcmp(ev->event, "session_start", 13) == 0;
	bool stop = ev->event_len == 12 && memcmp(ev->event, "session_stop", 12) == 0;
	cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	const cJSON *target = cJSON_GetObjectItemCaseSensitive(p, "widget");
	const char *only = cJSON_GetStringValue(target);
	char ts[EVK_TS_LEN + 1];
	bool found = false;

	snprintf(ts, sizeof(ts), "%.*s", EVK_TS_LEN, ev->ts);
	if ((!start && !stop) || !cJSON_IsObject(p) || (target && only == NULL)) {
		evk_warn("event %llu (%.*s): not a session command; skipped",
			 (unsigned long long)ev->seq, (int)ev->event_len, ev->event);
		cJSON_Delete(p);
		return;
	}
	for (int i = 0; i < ndecls; i++) {
		struct decl *d = &decls[i];
		if (d->kind != K_SESSION || (only && strcmp(only, d->id) != 0))
			continue;
		found = true;
		cJSON *w = session_widget(d, ev->ts, EVK_TS_LEN);
		cJSON_DeleteItemFromObjectCaseSensitive(w, "active");
		cJSON_DeleteItemFromObjectCaseSensitive(w, "stopped_at");
		bool ok = cJSON_AddBoolToObject(w, "active", start) != NULL;
		if (start) {
			cJSON_DeleteItemFromObjectCaseSensitive(w, "started_at");
			cJSON_DeleteItemFromObjectCaseSensitive(w, "items");
			ok = ok && cJSON_AddStringToObject(w, "started_at", ts) &&
			     cJSON_AddArrayToObject(w, "items");
		} else {
			ok = ok && cJSON_AddStringToObject(w, "stopped_at", ts);
		}
		if (!ok)
			evk_die(EVK_EX_FAIL, "out of memory");
		changed(NULL, d->id, EVK_FOLD_UPDATED);
	}
	if (!found)
		evk_warn("event %llu: no session widget '%s'", (unsigned long long)ev->seq,
			 only ? only : "");
	cJSON_Delete(p);
}

static void
save_state(void)
{
	char *text = cJSON_PrintUnformatted(widgets);
	if (text == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	sqlite3_stmt *st = evk_store_stmt(state_db, "INSERT INTO state (id, widgets, last_seq)"
						    " VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE"
						    " SET widgets = excluded.widgets,"
						    " last_seq = excluded.last_seq");
	if (st == NULL || sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, (sqlite3_int64)last_seq) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		evk_die(EVK_EX_UNAVAILABLE, "cannot save state: %s", sqlite3_errmsg(state_db));
	sqlite3_reset(st);
	cJSON_free(text);
}

/* Runs what is due: refetches, throttled announcements, a save when the
 * stream paused, the acknowledgement of what was announced. Returns how
 * long the next wait for an event may be (ms). */
static int
housekeeping(struct evk_sub *sub, const char *url, int *unsaved)
{
	long long now = loop_now = evk_mono_ms();
	long long due = evk_gate_next_due(publish_gate);
	int rv;

	for (int i = 0; i < ndecls; i++) {
		if (decls[i].refetch) {
			evk_gate_tick(decls[i].refetch, now, refetch, &decls[i]);
			long long d = evk_gate_next_due(decls[i].refetch);
			if (d >= 0 && (due < 0 || d < due))
				due = d;
		}
	}
	evk_gate_tick(publish_gate, now, publish, NULL);
	if (*unsaved && !evk_sub_buffered(sub)) {
		save_state();
		*unsaved = 0;
	}
	if (pub && (rv = evk_pub_sync(pub)) != EVK_OK) {
		evk_warn("widget announcements not acknowledged by '%s': %s;"
			 " reconnecting", url, evk_strerror(rv));
		evk_pub_close(pub);
		if (evk_pub_open(&pub, url, NULL, NULL) != EVK_OK)
			pub = NULL;
	}
	if (due < 0 || due - now >= 200)
		return 200;
	return due > now ? (int)(due - now) : 0;
}

static bool
topic_is(const struct evk_event *ev, const char *topic)
{
	return ev->topic_len == strlen(topic) && memcmp(ev->topic, topic, ev->topic_len) == 0;
}

static bool
topic_has_prefix(const struct evk_event *ev, const char *prefix)
{
	size_t n = strlen(prefix);
	return ev->topic_len >= n && memcmp(ev->topic, prefix, n) == 0;
}

/* Answers a get (payload {"reply": REPLY_PREFIX..., "widget"?: ID,
 * "until"?: epoch ms}) at its place in the stream: each widget asked for,
 * as event "widget" on the reply topic, then "end" with their count. A
 * request past its deadline (replayed after a restart) is let be. */
static void
answer(const struct evk_event *ev)
{
	cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	const char *reply = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "reply"));
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(p, "widget");
	const cJSON *until = cJSON_GetObjectItemCaseSensitive(p, "until");
	if (reply == NULL || strncmp(reply, REPLY_PREFIX, strlen(REPLY_PREFIX)) != 0 ||
	    !evk_topic_valid(reply, strlen(reply)) || (want && !cJSON_IsString(want))) {
		evk_warn("event %llu: a get without a reply topic under '%s'; skipped",
			 (unsigned long long)ev->seq, REPLY_PREFIX);
	} else if (pub && !(cJSON_IsNumber(until) && until->valuedouble < (double)evk_wall_ms())) {
		const char *id = cJSON_GetStringValue(want);
		const cJSON *only = id ? evk_fold_find(widgets, id) : NULL;
		cJSON *w, *end = cJSON_CreateObject();
		long n = 0;
		int rv = EVK_OK;
		cJSON_ArrayForEach(w, widgets) {
			if (id && w != only)
				continue;
			if ((rv = evk_pub_event(pub, reply, "widget", w)) != EVK_OK)
				break;
			n++;
		}
		if (end == NULL || !cJSON_AddNumberToObject(end, "count", (double)n))
			evk_die(EVK_EX_FAIL, "out of memory");
		if (rv == EVK_OK && (rv = evk_pub_event(pub, reply, "end", end)) == EVK_OK)
			rv = evk_pub_flush(pub);
		if (rv != EVK_OK)
			evk_warn("cannot answer on '%s': %s", reply, evk_strerror(rv));
		cJSON_Delete(end);
	}
	cJSON_Delete(p);
}

static int
run_daemon(struct opts *o, const char *url)
{
	static const char *const migrations[] = {
		"CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), widgets TEXT NOT NULL,"
		" last_seq INTEGER NOT NULL);",
	};
	char def[4096];
	const char *why;
	const char *path = evk_state_file(o->state, "widgets.db", def, sizeof(def));
	if (path == NULL)
		evk_usage_die("no --state given and no HOME or XDG_STATE_HOME");
	load_config(o);
	if (evk_store_open(path, &state_db, &why) != EVK_OK ||
	    evk_store_migrate(state_db, migrations, 1) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open state '%s': %s", path,
			state_db ? sqlite3_errmsg(state_db) : why);
	if (o->cases_db) {
		if (sqlite3_open_v2(o->cases_db, &cases_db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
			evk_die(EVK_EX_UNAVAILABLE, "cannot open cases database '%s'", o->cases_db);
		sqlite3_busy_timeout(cases_db, 5000);
	}
	/* The saved state and the seq it includes. */
	int64_t since = EVK_SINCE_LIVE;
	sqlite3_stmt *st = evk_store_stmt(state_db, "SELECT widgets, last_seq FROM state WHERE id = 1");
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		widgets = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
		last_seq = (uint64_t)sqlite3_column_int64(st, 1);
		since = (int64_t)last_seq;
	}
	if (st)
		sqlite3_reset(st);
	if (!cJSON_IsArray(widgets)) {
		cJSON_Delete(widgets);
		widgets = cJSON_CreateArray();
	}
	if (widgets == NULL || !(publish_gate = evk_gate_new(EVK_GATE_THROTTLE, o->throttle_ms,
							     EVK_GATE_MAX_KEYS, 1 << 20)))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (o->daemon && evk_daemon_start() != EVK_OK)
		evk_die(EVK_EX_FAIL, "cannot go to the background");
	/* Subscribe, then load what the lists need: events newer than the
	 * snapshot are replayed by the subscription, none falls between. */
	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, url, since);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	if ((rv = evk_pub_open(&pub, url, NULL, NULL)) != EVK_OK)
		evk_die_hub(url, rv);
	char now_ts[EVK_TS_LEN + 1];
	evk_ts_now(now_ts);
	for (int i = 0; i < ndecls; i++) {
		if (decls[i].kind == K_KEEP_LIVE)
			refetch(&decls[i], NULL, 0);
		if (decls[i].kind == K_SESSION && evk_fold_find(widgets, decls[i].id) == NULL) {
			session_widget(&decls[i], now_ts, EVK_TS_LEN);
			changed(NULL, decls[i].id, EVK_FOLD_UPDATED);
		}
	}
	if (o->pidfile && evk_pidfile_write(o->pidfile) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot write pid file '%s'", o->pidfile);
	evk_daemon_ready(0);

	struct evk_event ev;
	int unsaved = 0, burst = 0, wait = 0;
	loop_now = evk_mono_ms();
	while (!stopping) {
		/* Timers, saving and acknowledgements between frames, or every
		 * HOUSEKEEP_EVERY events of a long one; not per event. */
		bool idle = !evk_sub_buffered(sub);
		if (idle || ++burst >= HOUSEKEEP_EVERY) {
			burst = 0;
			wait = housekeeping(sub, url, &unsaved);
		}
		rv = evk_sub_next(sub, &ev, idle ? wait : 0);
		if (rv == EVK_ETIMEDOUT)
			continue;
		if (rv == EVK_EGAP) {
			evk_sub_report_gap(sub);
			continue;
		}
		if (rv != EVK_OK) {
			evk_warn("lost the hub at '%s': %s", url, evk_strerror(rv));
			break;
		}
		if (ev.seq <= last_seq)
			continue; /* folded before the snapshot */
		last_seq = ev.seq;
		if (topic_is(&ev, SESSION_TOPIC)) {
			session_command(&ev);
		} else if (topic_is(&ev, GET_TOPIC)) {
			answer(&ev);
		} else if (!topic_has_prefix(&ev, "widget:") && !topic_has_prefix(&ev, "widgetd:")) {
			/* widgets' own announcements and widgetd's talk aside */
			struct evk_fold_opts fo = { .list_max = list_max };
			if (evk_fold_apply(widgets, &ev, &fo, changed, NULL, &why) == EVK_EINVAL)
				evk_warn("event %llu (%.*s): %s; skipped", (unsigned long long)ev.seq,
					 (int)ev.event_len, ev.event, why);
			apply_decls(&ev, loop_now);
		}
		if (++unsaved >= SAVE_EVERY) {
			save_state();
			unsaved = 0;
		}
	}
	evk_gate_flush(publish_gate, publish, NULL);
	if (pub)
		evk_pub_sync(pub);
	save_state();
	evk_sub_close(sub);
	evk_pub_close(pub);
	evk_gate_free(publish_gate);
	for (int i = 0; i < ndecls; i++)
		evk_gate_free(decls[i].refetch);
	cJSON_Delete(widgets);
	evk_store_stmt_release_all();
	sqlite3_close(state_db);
	if (cases_db)
		sqlite3_close(cases_db);
	if (o->pidfile)
		unlink(o->pidfile);
	return 0;
}

/* ---- get and view: the widgets from the running daemon ----
 *
 * A client subscribes, then publishes a get on GET_TOPIC naming a reply
 * topic of its own; the daemon answers at the request's place in the
 * stream, so the answer includes every event published before it. */

/* Asks the daemon for its widgets (only widget id when not NULL) through
 * sub, opened live before; calls fn on each widget's JSON text, in the
 * daemon's order. Returns how many, or -1 when no daemon answered within
 * answer_ms. */
static long
request_widgets(struct evk_sub *sub, const char *url, const char *id,
		void (*fn)(void *arg, const char *json, size_t len), void *arg)
{
	char nonce[37], reply[sizeof(REPLY_PREFIX) + 37];
	if (evk_uuid7(nonce) != EVK_OK)
		evk_die(EVK_EX_FAIL, "no random numbers");
	snprintf(reply, sizeof(reply), "%s%s", REPLY_PREFIX, nonce);
	cJSON *p = cJSON_CreateObject();
	if (p == NULL || !cJSON_AddStringToObject(p, "reply", reply) ||
	    (id && !cJSON_AddStringToObject(p, "widget", id)) ||
	    !cJSON_AddNumberToObject(p, "until", (double)(evk_wall_ms() + answer_ms)))
		evk_die(EVK_EX_FAIL, "out of memory");
	int rv = evk_publish(url, GET_TOPIC, "get", p, NULL);
	cJSON_Delete(p);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);

	long long deadline = evk_mono_ms() + answer_ms;
	long n = 0;
	bool gap = false;
	struct evk_event ev;
	while (!stopping) {
		long long left = deadline - evk_mono_ms();
		if (left <= 0)
			return -1;
		rv = evk_sub_next(sub, &ev, left > INT_MAX ? INT_MAX : (int)left);
		if (rv == EVK_ETIMEDOUT)
			return -1;
		if (rv == EVK_EGAP) {
			gap = true; /* part of the answer may be gone */
			continue;
		}
		if (rv != EVK_OK)
			evk_die(EVK_EX_UNAVAILABLE, "lost the hub: %s", evk_strerror(rv));
		if (!topic_is(&ev, reply))
			continue;
		if (ev.event_len == 3 && memcmp(ev.event, "end", 3) == 0) {
			cJSON *end = cJSON_ParseWithLength(ev.payload, ev.payload_len);
			const cJSON *count = cJSON_GetObjectItemCaseSensitive(end, "count");
			bool whole = cJSON_IsNumber(count) && count->valuedouble == (double)n;
			cJSON_Delete(end);
			if (!whole)
				evk_die(EVK_EX_UNAVAILABLE, "the daemon's answer came incomplete%s;"
					" ask again", gap ? " (the hub dropped part of it)" : "");
			return n;
		}
		fn(arg, ev.payload, ev.payload_len);
		n++;
	}
	exit(130); /* interrupted */
}

static void
print_widget(void *arg, const char *json, size_t len)
{
	(void)arg;
	if (fwrite(json, 1, len, stdout) != len || putchar('\n') == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
}

static int
cmd_get(const char *url, const char *id)
{
	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, url, EVK_SINCE_LIVE);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	long n = request_widgets(sub, url, id, print_widget, NULL);
	if (fflush(stdout) == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	evk_sub_close(sub);
	if (n < 0)
		evk_die(EVK_EX_UNAVAILABLE, "no widgetd answered on '%s' within %lld ms", url,
			answer_ms);
	if (id && n == 0) {
		evk_warn("no widget '%s'", id);
		return EVK_EX_FAIL;
	}
	return 0;
}

/* view's widgets by id: the daemon's answer, then each announcement. */
static void
map_put(cJSON *map, const char *id, size_t len, cJSON *w)
{
	char key[EVK_TOPIC_MAX + 1];
	snprintf(key, sizeof(key), "%.*s", (int)len, id);
	cJSON_DeleteItemFromObjectCaseSensitive(map, key);
	if (w && !cJSON_AddItemToObject(map, key, w))
		cJSON_Delete(w);
}

static void
map_widget(void *arg, const char *json, size_t len)
{
	cJSON *w = cJSON_ParseWithLength(json, len);
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
	if (id)
		map_put(arg, id, strlen(id), w);
	else
		cJSON_Delete(w);
}

/* Waits up to 200 ms for the next announcement and applies it to map;
 * true when one came. */
static bool
follow_widgets(struct evk_sub *sub, cJSON *map)
{
	struct evk_event ev;
	int rv = evk_sub_next(sub, &ev, 200);
	if (rv == EVK_ETIMEDOUT || rv == EVK_EGAP)
		return false;
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "lost the hub: %s", evk_strerror(rv));
	if (!topic_has_prefix(&ev, "widget:"))
		return false;
	bool updated = ev.event_len == 14 && memcmp(ev.event, "widget_updated", 14) == 0;
	map_put(map, ev.topic + 7, ev.topic_len - 7,
		updated ? cJSON_ParseWithLength(ev.payload, ev.payload_len) : NULL);
	return true;
}

/* Asks the daemon, through the bus, to start or stop the session of
 * widget id (every session widget when NULL). */
static int
cmd_session(const char *url, const char *what, const char *id)
{
	char event[16];
	cJSON *p = cJSON_CreateObject();
	if (p == NULL || (id && !cJSON_AddStringToObject(p, "widget", id)))
		evk_die(EVK_EX_FAIL, "out of memory");
	snprintf(event, sizeof(event), "session_%s", what);
	int rv = evk_publish(url, SESSION_TOPIC, event, p, NULL);
	cJSON_Delete(p);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	return 0;
}

static void
draw(const cJSON *map, bool tty)
{
	const cJSON *w;
	if (tty)
		fputs("\033[H\033[2J\033[1mevkit widgets\033[0m  (q quits)\n\n", stdout);
	cJSON_ArrayForEach(w, map) {
		const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "type"));
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
		const cJSON *pct = cJSON_GetObjectItemCaseSensitive(w, "percentage");
		if (!type || !id)
			continue;
		if (strcmp(type, "progress") == 0 || strcmp(type, "result") == 0) {
			double p = cJSON_IsNumber(pct) ? pct->valuedouble : 0;
			int fill = (int)(p / 100 * 30 + 0.5);
			char bar[31];
			for (int i = 0; i < 30; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[30] = '\0';
			const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "status"));
			printf("%-28s [%s] %5.1f%% %s\n", id, bar, p, st ? st : "");
			const cJSON *a;
			int n = 0;
			cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(w, "activities")) {
				if (n++ == 5)
					break;
				const char *as = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "status"));
				const char *step = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "step"));
				printf("    %s %s\n", as && strcmp(as, "completed") == 0 ? "[x]"
						  : as && strcmp(as, "failed") == 0   ? "[!]"
										      : "[ ]",
				       step ? step : "");
			}
		} else if (strcmp(type, "counter") == 0) {
			char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(w, "counts"));
			printf("%-28s %s\n", id, s ? s : "{}");
			cJSON_free(s);
		} else {
			const cJSON *items = cJSON_GetObjectItemCaseSensitive(w, "items"), *it;
			printf("%-28s %d items\n", id, cJSON_GetArraySize(items));
			int n = 0;
			cJSON_ArrayForEach(it, items) {
				if (n++ == 5)
					break;
				const char *ref = cJSON_GetStringValue(
					cJSON_GetObjectItemCaseSensitive(it, "case_reference"));
				printf("    %s\n", ref ? ref : "-");
			}
		}
	}
	if (tty)
		putchar('\n');
	fflush(stdout);
}

static int
cmd_view(const char *url)
{
	struct evk_sub *sub;
	bool tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	struct termios saved, raw;
	int rv = evk_sub_open(&sub, url, EVK_SINCE_LIVE);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	cJSON *map = cJSON_CreateObject();
	if (map == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (request_widgets(sub, url, NULL, map_widget, map) < 0)
		evk_warn("no widgetd answered on '%s'; showing widgets as they are announced", url);
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
		fputs("\033[?25l", stdout);
	}
	draw(map, tty);
	while (!stopping) {
		if (follow_widgets(sub, map))
			draw(map, tty);
		if (tty) {
			struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
			char c;
			if (poll(&p, 1, 0) == 1 && read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 3))
				break;
		}
	}
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		fputs("\033[?25h", stdout);
	}
	evk_sub_close(sub);
	cJSON_Delete(map);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bus", required_argument, NULL, 'b' },
		EVK_TLS_LONGOPTS,
		{ "config", required_argument, NULL, 'c' },
		{ "cases-db", required_argument, NULL, 'C' },
		{ "state", required_argument, NULL, 's' },
		{ "throttle", required_argument, NULL, 't' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "wait", required_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct opts o = { .throttle_ms = 500 };
	char url[EVK_URL_MAX];
	const char *why;
	int c;

	evk_set_progname(argv[0]);
	/* The fold's small cJSON blocks are reused instead of going back to
	 * malloc each event: cJSON is used on this thread only. */
	evk_jsonmem_install();
	atexit(evk_jsonmem_release);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hW:", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': o.bus = optarg; break;
		case EVK_OPT_TLS_CERT:
		case EVK_OPT_TLS_KEY:
		case EVK_OPT_TLS_CA: evk_tls_option(c, optarg); break;
		case 'c': o.config = optarg; break;
		case 'C': o.cases_db = optarg; break;
		case 's': o.state = optarg; break;
		case 't': o.throttle_ms = evk_flag_int("--throttle", optarg, 1, 86400000); break;
		case 'W':
			if ((answer_ms = (long long)(evk_flag_seconds("-W", optarg, 1e9) * 1000)) < 1)
				evk_usage_die("-W wants seconds from 0.001, not '%s'", optarg);
			break;
		case 'd': o.daemon = true; break;
		case 'p': o.pidfile = optarg; break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("widgetd %s\n", EVK_VERSION); return 0;
		default: evk_flag_die(c, argv, longopts);
		}
	}
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_usage_die("bad bus address: %s", why);
	evk_signals_init(&stopping, true);

	static const char *const commands[] = { "get", "view", "session" };
	for (size_t i = 0; optind < argc && i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i]) == 0)
			evk_set_subcommand(commands[i]);
	if (optind < argc && strcmp(argv[optind], "get") == 0) {
		if (argc - optind > 2)
			evk_usage_die("unexpected argument '%s'", argv[optind + 2]);
		return cmd_get(url, argc - optind == 2 ? argv[optind + 1] : NULL);
	}
	if (optind < argc && strcmp(argv[optind], "view") == 0) {
		if (argc - optind > 1)
			evk_usage_die("unexpected argument '%s'", argv[optind + 1]);
		return cmd_view(url);
	}
	if (optind < argc && strcmp(argv[optind], "session") == 0) {
		if (argc - optind < 2)
			evk_usage_die("missing start or stop");
		if (strcmp(argv[optind + 1], "start") && strcmp(argv[optind + 1], "stop"))
			evk_usage_die("unknown action '%s' (start, stop)", argv[optind + 1]);
		if (argc - optind > 3)
			evk_usage_die("unexpected argument '%s'", argv[optind + 3]);
		return cmd_session(url, argv[optind + 1], argc - optind == 3 ? argv[optind + 2] : NULL);
	}
	if (optind < argc)
		evk_usage_die("unknown command '%s' (get, view, session)", argv[optind]);
	return run_daemon(&o, url);
}
