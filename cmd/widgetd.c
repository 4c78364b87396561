/* widgetd — folds the bus's events into widget state (the seed's LiveView
 * widgets), keeps it durably, publishes each change on widget:{id}, and
 * shows it (widgetd get, widgetd view). */
#include "evkit/buf.h"
#include "evkit/bus.h"
#include "evkit/daemon.h"
#include "evkit/err.h"
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
#define RECONNECT_MS 1000               /* between tries to reach a lost hub */

struct opts {
	const char *bus, *config, *cases_db, *state, *pidfile;
	long long throttle_ms, answer_ms; /* answer_ms: -W, how long get and view wait */
	bool daemon;
};

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

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

struct daemon;

struct decl {
	enum kind kind;
	char id[128];
	char pattern[256]; /* counter: topics; keep_live: events that refetch */
	char event[EVK_EVENT_MAX + 1];
	long limit;
	long long window_ms;
	struct evk_gate *refetch; /* keep_live */
	long long queries;
	struct daemon *daemon;
};

#define MAX_DECLS 64
#define MAX_LIMIT 10000           /* items in a list widget */
#define MAX_WINDOW_MS 86400000LL /* a refetch window: a day */

/* Everything the running daemon holds, handed to its callbacks. */
struct daemon {
	const char *url;
	struct decl decls[MAX_DECLS];
	int ndecls;
	size_t list_max;
	cJSON *widgets;
	sqlite3 *state_db, *cases_db;
	struct evk_gate *publish_gate;
	struct evk_pub *pub; /* NULL while the hub is away */
	/* Widgets announced since the hub last acknowledged everything (ids
	 * as member names): after a lost link each is announced again, with
	 * its state then. */
	cJSON *unacked;
	long long reconnect_at; /* when to try the hub again (monotonic ms) */
	uint64_t last_seq;
	long long now; /* the monotonic clock, read once per event */
};

static const char *default_config =
	"{\"widgets\":["
	"{\"id\":\"recent-cases\",\"type\":\"keep_live\",\"limit\":100,\"refetch_window\":5000},"
	"{\"id\":\"session-cases\",\"type\":\"session\",\"limit\":50},"
	"{\"id\":\"case-events\",\"type\":\"counter\",\"pattern\":\"case:*\"}"
	"]}";

static const struct {
	const char *name;
	enum kind kind;
} kinds[] = { { "keep_live", K_KEEP_LIVE }, { "session", K_SESSION }, { "counter", K_COUNTER } };

/* Member name of config widget w (called id, in config file): absent gives
 * def; else a whole number from min to max, or widgetd dies naming it. */
static long long
whole_number(const cJSON *w, const char *name, long long min, long long max, long long def,
	     const char *file, const char *id)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(w, name);
	if (v == NULL)
		return def;
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min || v->valuedouble > (double)max ||
	    v->valuedouble != (double)(long long)v->valuedouble)
		evk_die(EVK_EX_DATAERR, "%s: widget '%s': %s is a whole number from %lld to %lld", file,
			id, name, min, max);
	return (long long)v->valuedouble;
}

/* One widget of the config (the n-th, 1-based) into dm; dies on a bad one. */
static void
parse_decl(struct daemon *dm, const cJSON *w, const char *name, int n)
{
	struct decl *d = &dm->decls[dm->ndecls];
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
	const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "type"));
	const char *pat = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "pattern"));
	const char *ev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "event"));
	size_t k = 0;

	if (id == NULL || !evk_topic_valid(id, strlen(id)) || strchr(id, ':') ||
	    strlen(id) >= sizeof(d->id))
		evk_die(EVK_EX_DATAERR, "%s: widget %d needs an id (no ':')", name, n);
	for (int i = 0; i < dm->ndecls; i++)
		if (strcmp(dm->decls[i].id, id) == 0)
			evk_die(EVK_EX_DATAERR, "%s: widgets %d and %d have the same id '%s'", name, i + 1,
				n, id);
	snprintf(d->id, sizeof(d->id), "%s", id);
	while (k < sizeof(kinds) / sizeof(kinds[0]) && !(type && strcmp(type, kinds[k].name) == 0))
		k++;
	if (k == sizeof(kinds) / sizeof(kinds[0]))
		evk_die(EVK_EX_DATAERR, "%s: widget '%s': unknown type '%s' (keep_live, session,"
					" counter; progress and result widgets come by themselves)",
			name, id, type ? type : "");
	d->kind = kinds[k].kind;
	d->limit = (long)whole_number(w, "limit", 1, MAX_LIMIT, d->kind == K_KEEP_LIVE ? 100 : 50,
				      name, id);
	d->window_ms = whole_number(w, "refetch_window", 1, MAX_WINDOW_MS, 5000, name, id);
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
	d->daemon = dm;
	dm->ndecls++;
}

static void
load_config(struct daemon *dm, const char *path)
{
	char *text = NULL;
	if (path) {
		FILE *f = fopen(path, "r");
		if (f == NULL)
			evk_die(EVK_EX_IOERR, "cannot read config '%s': %s", path, strerror(errno));
		text = calloc(1, 1 << 20);
		if (text == NULL)
			evk_die(EVK_EX_FAIL, "out of memory");
		if (fread(text, 1, (1 << 20) - 1, f) == 0 && ferror(f))
			evk_die(EVK_EX_IOERR, "cannot read config '%s'", path);
		fclose(f);
	}
	const char *name = path ? path : "the built-in config";
	cJSON *c = cJSON_Parse(text ? text : default_config);
	free(text);
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(c, "widgets");
	if (!cJSON_IsObject(c) || !cJSON_IsArray(ws))
		evk_die(EVK_EX_DATAERR, "%s: want {\"widgets\": [...]}", name);
	const cJSON *lm = cJSON_GetObjectItemCaseSensitive(c, "list_max");
	if (lm && (!cJSON_IsNumber(lm) || lm->valuedouble < 1 || lm->valuedouble > 10000))
		evk_die(EVK_EX_DATAERR, "%s: list_max is a number from 1 to 10000", name);
	dm->list_max = lm ? (size_t)lm->valuedouble : EVK_FOLD_LIST_MAX;
	const cJSON *w;
	cJSON_ArrayForEach(w, ws) {
		if (dm->ndecls == MAX_DECLS)
			evk_die(EVK_EX_DATAERR, "%s: too many widgets", name);
		parse_decl(dm, w, name, dm->ndecls + 1);
	}
	cJSON_Delete(c);
}

/* ---- the daemon ---- */

static int publish(void *arg, const char *id_, size_t len);

/* The fold's note: widget id changed. */
static void
changed(void *arg, const char *id, enum evk_fold_change c)
{
	struct daemon *dm = arg;
	/* A removal is the widget's last word: it goes at once, and replaces
	 * an update the throttle still held. */
	if (c == EVK_FOLD_REMOVED) {
		evk_gate_forget(dm->publish_gate, id, strlen(id));
		publish(dm, id, strlen(id));
		return;
	}
	/* Throttled per widget: the gate holds the id, the state is read
	 * when it is published, so the last state always goes out. */
	if (evk_gate_offer(dm->publish_gate, id, strlen(id), dm->last_seq, id, strlen(id), dm->now,
			   publish, dm) > 0)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* A clause's outcome: out of memory ends the daemon. */
static void
folded(int rv)
{
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* Announces the widget's current state (or its removal) on widget:{id}.
 * Until the hub acknowledges it, the id stays in dm->unacked: a lost link
 * announces it again (see sync_announcements). */
static int
publish(void *arg, const char *id_, size_t len)
{
	struct daemon *dm = arg;
	char id[EVK_FOLD_ID_MAX + 1], topic[EVK_TOPIC_MAX + 1];
	if (len > EVK_FOLD_ID_MAX) {
		evk_warn("cannot announce widget '%.*s...': id longer than %d bytes", 40, id_,
			 EVK_FOLD_ID_MAX);
		return 0;
	}
	snprintf(id, sizeof(id), "%.*s", (int)len, id_);
	snprintf(topic, sizeof(topic), "widget:%s", id);
	if (!cJSON_GetObjectItemCaseSensitive(dm->unacked, id) && !cJSON_AddTrueToObject(dm->unacked, id))
		evk_die(EVK_EX_FAIL, "out of memory");
	cJSON *w = evk_fold_find(dm->widgets, id);
	cJSON *gone = NULL;
	if (w == NULL && ((gone = cJSON_CreateObject()) == NULL ||
			  !cJSON_AddStringToObject(gone, "id", id)))
		evk_die(EVK_EX_FAIL, "out of memory");
	int rv = dm->pub ? evk_pub_event(dm->pub, topic, w ? "widget_updated" : "widget_removed",
					  w ? w : gone)
			 : EVK_OK;
	/* A lost link is sync_announcements' to tell and mend. */
	if (rv != EVK_OK && rv != EVK_ECLOSED && rv != EVK_EUNAVAIL && rv != EVK_EPROTO)
		evk_warn("cannot announce widget '%s': %s", id, evk_strerror(rv));
	cJSON_Delete(gone);
	return 0;
}

/* keep_live: the list re-queried from casectl's database. */
static int
refetch(void *arg, const char *line, size_t len)
{
	struct decl *d = arg;
	sqlite3 *cases_db = d->daemon->cases_db;
	(void)line;
	(void)len;
	cJSON *items = cJSON_CreateArray();
	d->queries++;
	if (cases_db && items) {
		sqlite3_stmt *st = evk_store_stmt(
			cases_db,
			"SELECT json_object('id', c.id, 'agency', a.code, 'case_reference',"
			" c.case_reference, 'offender', o.name, 'offence_fine', c.offence_fine,"
			" 'updated_at', c.updated_at) FROM cases c JOIN agencies a ON a.id = c.agency_id"
			" LEFT JOIN offenders o ON o.id = c.offender_id ORDER BY c.updated_at DESC, c.id"
			" LIMIT ?");
		if (st) {
			sqlite3_bind_int64(st, 1, d->limit);
			while (sqlite3_step(st) == SQLITE_ROW) {
				cJSON *it = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
				if (it)
					cJSON_AddItemToArray(items, it);
			}
			sqlite3_reset(st);
		} else {
			evk_warn("keep_live '%s': %s", d->id, sqlite3_errmsg(cases_db));
		}
	}
	folded(evk_fold_keep_live(d->daemon->widgets, d->id, items, (double)d->queries, changed,
				  d->daemon));
	return 0;
}

static bool
event_is(const struct evk_event *ev, const char *name)
{
	return ev->event_len == strlen(name) && memcmp(ev->event, name, ev->event_len) == 0;
}

/* The declared widgets' clauses, for each declaration the event matches. */
static void
apply_decls(struct daemon *dm, const struct evk_event *ev)
{
	for (int i = 0; i < dm->ndecls; i++) {
		struct decl *d = &dm->decls[i];
		if (!evk_pattern_match(d->pattern, ev->topic, ev->topic_len) ||
		    (d->event[0] && !event_is(ev, d->event)))
			continue;
		if (d->kind == K_COUNTER) {
			folded(evk_fold_count(dm->widgets, d->id, ev, changed, dm));
		} else if (d->kind == K_KEEP_LIVE) {
			if (evk_gate_offer(d->refetch, "k", 1, ev->seq, "k", 1, dm->now, refetch, d) > 0)
				evk_die(EVK_EX_FAIL, "out of memory");
		} else if (event_is(ev, "create") || event_is(ev, "sync")) {
			folded(evk_fold_session_add(dm->widgets, d->id, (size_t)d->limit, ev, changed, dm));
		}
	}
}

/* widgetd session start|stop [ID], as it comes through the bus: start
 * begins a new session (the list emptied), stop freezes the list. Both
 * take effect at the event's place in the stream. */
static void
session_command(struct daemon *dm, const struct evk_event *ev)
{
	bool start = event_is(ev, "session_start"), stop = event_is(ev, "session_stop");
	cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	const cJSON *target = cJSON_GetObjectItemCaseSensitive(p, "widget");
	const char *only = cJSON_GetStringValue(target);
	bool found = false;

	if ((!start && !stop) || !cJSON_IsObject(p) || (target && only == NULL)) {
		evk_warn("event %llu (%.*s): not a session command; skipped",
			 (unsigned long long)ev->seq, (int)ev->event_len, ev->event);
		cJSON_Delete(p);
		return;
	}
	for (int i = 0; i < dm->ndecls; i++) {
		struct decl *d = &dm->decls[i];
		if (d->kind != K_SESSION || (only && strcmp(only, d->id) != 0))
			continue;
		found = true;
		folded(evk_fold_session_mark(dm->widgets, d->id, start, ev->ts, changed, dm));
	}
	if (!found)
		evk_warn("event %llu: no session widget '%s'", (unsigned long long)ev->seq,
			 only ? only : "");
	cJSON_Delete(p);
}

static void
save_state(struct daemon *dm)
{
	char *text = cJSON_PrintUnformatted(dm->widgets);
	if (text == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	sqlite3_stmt *st = evk_store_stmt(dm->state_db, "INSERT INTO state (id, widgets, last_seq)"
							" VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE"
							" SET widgets = excluded.widgets,"
							" last_seq = excluded.last_seq");
	if (st == NULL || sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, (sqlite3_int64)dm->last_seq) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		evk_die(EVK_EX_UNAVAILABLE, "cannot save state: %s", sqlite3_errmsg(dm->state_db));
	sqlite3_reset(st);
	cJSON_free(text);
}

/* Waits for the hub to acknowledge every announcement. When the link
 * is lost (the hub restarted), connects again (once a second until the
 * hub answers) and announces again every widget not acknowledged, as it
 * is now: no folded change goes unannounced. */
static void
sync_announcements(struct daemon *dm)
{
	int rv = EVK_OK;
	cJSON *m;
	if (dm->pub && (rv = evk_pub_sync(dm->pub)) == EVK_OK) {
		while (dm->unacked->child)
			cJSON_Delete(cJSON_DetachItemViaPointer(dm->unacked, dm->unacked->child));
		return;
	}
	if (dm->pub) {
		evk_warn("widget announcements not acknowledged by '%s': %s; reconnecting", dm->url,
			 evk_strerror(rv));
		evk_pub_close(dm->pub);
		dm->pub = NULL;
	} else if (dm->now < dm->reconnect_at) {
		return;
	}
	dm->reconnect_at = dm->now + RECONNECT_MS;
	if (evk_pub_open(&dm->pub, dm->url, NULL, NULL) != EVK_OK) {
		dm->pub = NULL;
		return;
	}
	int n = cJSON_GetArraySize(dm->unacked);
	if (n)
		evk_warn("reconnected to '%s': announcing %d widget%s again", dm->url, n,
			 n == 1 ? "" : "s");
	cJSON_ArrayForEach(m, dm->unacked)
		publish(dm, m->string, strlen(m->string));
	/* acknowledged at the next round */
}

/* Runs what is due: refetches, throttled announcements, a save when the
 * stream paused, the acknowledgement of what was announced. Returns how
 * long the next wait for an event may be (ms). */
static int
housekeeping(struct daemon *dm, struct evk_sub *sub, int *unsaved)
{
	long long now = dm->now = evk_mono_ms();
	long long due = evk_gate_next_due(dm->publish_gate);

	for (int i = 0; i < dm->ndecls; i++) {
		struct decl *d = &dm->decls[i];
		if (d->refetch) {
			evk_gate_tick(d->refetch, now, refetch, d);
			long long t = evk_gate_next_due(d->refetch);
			if (t >= 0 && (due < 0 || t < due))
				due = t;
		}
	}
	evk_gate_tick(dm->publish_gate, now, publish, dm);
	if (*unsaved && !evk_sub_buffered(sub)) {
		save_state(dm);
		*unsaved = 0;
	}
	sync_announcements(dm);
	if (dm->pub == NULL && (due < 0 || dm->reconnect_at < due))
		due = dm->reconnect_at;
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
answer(struct daemon *dm, const struct evk_event *ev)
{
	cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	const char *reply = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "reply"));
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(p, "widget");
	const cJSON *until = cJSON_GetObjectItemCaseSensitive(p, "until");
	if (reply == NULL || strncmp(reply, REPLY_PREFIX, strlen(REPLY_PREFIX)) != 0 ||
	    !evk_topic_valid(reply, strlen(reply)) || (want && !cJSON_IsString(want))) {
		evk_warn("event %llu: a get without a reply topic under '%s'; skipped",
			 (unsigned long long)ev->seq, REPLY_PREFIX);
	} else if (dm->pub && !(cJSON_IsNumber(until) && until->valuedouble < (double)evk_wall_ms())) {
		const char *id = cJSON_GetStringValue(want);
		const cJSON *only = id ? evk_fold_find(dm->widgets, id) : NULL;
		cJSON *w, *end = cJSON_CreateObject();
		long n = 0;
		int rv = EVK_OK;
		cJSON_ArrayForEach(w, dm->widgets) {
			if (id && w != only)
				continue;
			if ((rv = evk_pub_event(dm->pub, reply, "widget", w)) != EVK_OK)
				break;
			n++;
		}
		if (end == NULL || !cJSON_AddNumberToObject(end, "count", (double)n))
			evk_die(EVK_EX_FAIL, "out of memory");
		if (rv == EVK_OK && (rv = evk_pub_event(dm->pub, reply, "end", end)) == EVK_OK)
			rv = evk_pub_flush(dm->pub);
		if (rv != EVK_OK)
			evk_warn("cannot answer on '%s': %s", reply, evk_strerror(rv));
		cJSON_Delete(end);
	}
	cJSON_Delete(p);
}

/* One event of the stream, at its place: a session command, a get, or an
 * event to fold (widgets' own announcements and widgetd's talk aside). */
static void
apply_event(struct daemon *dm, const struct evk_event *ev)
{
	const char *why;
	if (topic_is(ev, SESSION_TOPIC)) {
		session_command(dm, ev);
	} else if (topic_is(ev, GET_TOPIC)) {
		answer(dm, ev);
	} else if (!topic_has_prefix(ev, "widget:") && !topic_has_prefix(ev, "widgetd:")) {
		struct evk_fold_opts fo = { .list_max = dm->list_max };
		int rv = evk_fold_apply(dm->widgets, ev, &fo, changed, dm, &why);
		if (rv == EVK_EINVAL)
			evk_warn("event %llu (%.*s): %s; skipped", (unsigned long long)ev->seq,
				 (int)ev->event_len, ev->event, why);
		folded(rv);
		apply_decls(dm, ev);
	}
}

/* A damaged widget of the saved state, left out. */
static void
dropped(void *arg, int index, const char *id, const char *why)
{
	evk_warn("state '%s': widget %d%s%s%s dropped: %s", (const char *)arg, index + 1,
		 id ? " ('" : "", id ? id : "", id ? "')" : "", why);
}

/* Opens the state database and loads the saved state (its damaged
 * widgets dropped) and the seq it includes; returns where the
 * subscription starts. */
static int64_t
load_state(struct daemon *dm, const char *path)
{
	static const char *const migrations[] = {
		"CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), widgets TEXT NOT NULL,"
		" last_seq INTEGER NOT NULL);",
	};
	const char *why;
	int64_t since = EVK_SINCE_LIVE;
	if (evk_store_open(path, &dm->state_db, &why) != EVK_OK ||
	    evk_store_migrate(dm->state_db, migrations, 1) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open state '%s': %s", path,
			dm->state_db ? sqlite3_errmsg(dm->state_db) : why);
	sqlite3_stmt *st = evk_store_stmt(dm->state_db, "SELECT widgets, last_seq FROM state WHERE id = 1");
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		dm->widgets = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
		dm->last_seq = (uint64_t)sqlite3_column_int64(st, 1);
		since = (int64_t)dm->last_seq;
	}
	if (st)
		sqlite3_reset(st);
	if (since != EVK_SINCE_LIVE && !cJSON_IsArray(dm->widgets)) {
		evk_warn("state '%s': the saved widgets are not a JSON array; starting without them",
			 path);
		cJSON_Delete(dm->widgets);
		dm->widgets = NULL;
	}
	if (dm->widgets == NULL)
		dm->widgets = cJSON_CreateArray();
	else
		evk_fold_check(dm->widgets, dropped, (void *)path);
	if (dm->widgets == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	return since;
}

/* Sets the daemon up: config, state, cases database, the hub. */
static struct evk_sub *
start_daemon(struct daemon *dm, const struct opts *o)
{
	char def[4096];
	const char *path = o->state;
	if (path == NULL) {
		if (evk_store_default_path("widgets.db", def, sizeof(def)) != EVK_OK)
			evk_die(EVK_EX_USAGE, "no --state given and no HOME or XDG_STATE_HOME");
		path = def;
	}
	load_config(dm, o->config);
	int64_t since = load_state(dm, path);
	if (o->cases_db) {
		if (sqlite3_open_v2(o->cases_db, &dm->cases_db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
			evk_die(EVK_EX_UNAVAILABLE, "cannot open cases database '%s'", o->cases_db);
		sqlite3_busy_timeout(dm->cases_db, 5000);
	}
	if (!(dm->unacked = cJSON_CreateObject()) ||
	    !(dm->publish_gate = evk_gate_new(EVK_GATE_THROTTLE, o->throttle_ms, EVK_GATE_MAX_KEYS,
					      1 << 20)))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (o->daemon && evk_daemon_start() != EVK_OK)
		evk_die(EVK_EX_FAIL, "cannot go to the background");
	/* Subscribe, then load what the lists need: events newer than the
	 * snapshot are replayed by the subscription, none falls between. */
	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, dm->url, since);
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", dm->url, evk_strerror(rv));
	if ((rv = evk_pub_open(&dm->pub, dm->url, NULL, NULL)) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", dm->url, evk_strerror(rv));
	char now_ts[EVK_TS_LEN + 1];
	evk_ts_now(now_ts);
	for (int i = 0; i < dm->ndecls; i++) {
		if (dm->decls[i].kind == K_KEEP_LIVE)
			refetch(&dm->decls[i], NULL, 0);
		if (dm->decls[i].kind == K_SESSION)
			folded(evk_fold_session_init(dm->widgets, dm->decls[i].id, now_ts, changed, dm));
	}
	if (o->pidfile && evk_pidfile_write(o->pidfile) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot write pid file '%s'", o->pidfile);
	evk_daemon_ready(0);
	return sub;
}

static void
stop_daemon(struct daemon *dm, struct evk_sub *sub, const struct opts *o)
{
	evk_gate_flush(dm->publish_gate, publish, dm);
	if (dm->pub)
		evk_pub_sync(dm->pub);
	save_state(dm);
	evk_sub_close(sub);
	evk_pub_close(dm->pub);
	evk_gate_free(dm->publish_gate);
	for (int i = 0; i < dm->ndecls; i++)
		evk_gate_free(dm->decls[i].refetch);
	cJSON_Delete(dm->widgets);
	cJSON_Delete(dm->unacked);
	evk_store_stmt_release_all();
	sqlite3_close(dm->state_db);
	if (dm->cases_db)
		sqlite3_close(dm->cases_db);
	if (o->pidfile)
		unlink(o->pidfile);
}

static int
run_daemon(const struct opts *o, const char *url)
{
	struct daemon dm = { .url = url };
	struct evk_sub *sub = start_daemon(&dm, o);
	struct evk_event ev;
	int unsaved = 0, burst = 0, wait = 0, rv;

	dm.now = evk_mono_ms();
	while (!stopping) {
		/* Timers, saving and acknowledgements between frames, or every
		 * HOUSEKEEP_EVERY events of a long one; not per event. */
		bool idle = !evk_sub_buffered(sub);
		if (idle || ++burst >= HOUSEKEEP_EVERY) {
			burst = 0;
			wait = housekeeping(&dm, sub, &unsaved);
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
		if (ev.seq <= dm.last_seq)
			continue; /* folded before the snapshot */
		dm.last_seq = ev.seq;
		apply_event(&dm, &ev);
		if (++unsaved >= SAVE_EVERY) {
			save_state(&dm);
			unsaved = 0;
		}
	}
	stop_daemon(&dm, sub, o);
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
request_widgets(struct evk_sub *sub, const char *url, long long answer_ms, const char *id,
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
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", url, evk_strerror(rv));

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
cmd_get(const char *url, long long answer_ms, const char *id)
{
	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, url, EVK_SINCE_LIVE);
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", url, evk_strerror(rv));
	long n = request_widgets(sub, url, answer_ms, id, print_widget, NULL);
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
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", url, evk_strerror(rv));
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
cmd_view(const char *url, long long answer_ms)
{
	struct evk_sub *sub;
	bool tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
	struct termios saved, raw;
	int rv = evk_sub_open(&sub, url, EVK_SINCE_LIVE);
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", url, evk_strerror(rv));
	cJSON *map = cJSON_CreateObject();
	if (map == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (request_widgets(sub, url, answer_ms, NULL, map_widget, map) < 0)
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
	struct opts o = { .throttle_ms = 500, .answer_ms = ANSWER_MS };
	char url[EVK_URL_MAX];
	const char *why;
	int c;

	evk_set_progname(argv[0]);
	/* The fold's small cJSON blocks are reused instead of going back to
	 * malloc each event: cJSON is used on this thread only. */
	evk_jsonmem_install();
	atexit(evk_jsonmem_release);
	while ((c = getopt_long(argc, argv, "hW:", longopts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'b': o.bus = optarg; break;
		case 'c': o.config = optarg; break;
		case 'C': o.cases_db = optarg; break;
		case 's': o.state = optarg; break;
		case 't':
			o.throttle_ms = strtoll(optarg, &end, 10);
			if (*optarg == '\0' || *end || o.throttle_ms < 1)
				evk_die(EVK_EX_USAGE, "--throttle wants milliseconds, not '%s'", optarg);
			break;
		case 'W':
			if ((o.answer_ms = (long long)(evk_arg_seconds(optarg, "-W") * 1000)) < 1)
				evk_die(EVK_EX_USAGE, "-W wants seconds, not '%s'", optarg);
			break;
		case 'd': o.daemon = true; break;
		case 'p': o.pidfile = optarg; break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("widgetd %s\n", EVK_VERSION); return 0;
		default: usage(stderr, EVK_EX_USAGE);
		}
	}
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address: %s", why);
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (optind < argc && strcmp(argv[optind], "get") == 0) {
		if (argc - optind > 2)
			usage(stderr, EVK_EX_USAGE);
		return cmd_get(url, o.answer_ms, argc - optind == 2 ? argv[optind + 1] : NULL);
	}
	if (optind < argc && strcmp(argv[optind], "view") == 0 && argc - optind == 1)
		return cmd_view(url, o.answer_ms);
	if (optind < argc && strcmp(argv[optind], "session") == 0) {
		if (argc - optind < 2 || argc - optind > 3 ||
		    (strcmp(argv[optind + 1], "start") && strcmp(argv[optind + 1], "stop")))
			usage(stderr, EVK_EX_USAGE);
		return cmd_session(url, argv[optind + 1], argc - optind == 3 ? argv[optind + 2] : NULL);
	}
	if (optind < argc)
		evk_die(EVK_EX_USAGE, "unknown command '%s' (get, view, session)", argv[optind]);
	return run_daemon(&o, url);
}
