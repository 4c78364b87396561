/* widgetd's daemon: folds the bus's events into widget state (the seed's
 * LiveView widgets), keeps it durably, publishes each change on
 * widget:{id} and answers widgetd get. */
#include "widgetd.h"

#include "evkit/opts.h"
#include "evkit/bus.h"
#include "evkit/cases.h"
#include "evkit/daemon.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/fold.h"
#include "evkit/gate.h"
#include "evkit/store.h"
#include "evkit/topic.h"
#include "evkit/web.h"
#include "evkit/widgetconf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAVE_EVERY 10000    /* events folded between saves while busy */
#define HOUSEKEEP_EVERY 256 /* events between timer checks while busy */
#define RECONNECT_MS 1000   /* between tries to reach a lost hub */

/* ---- the daemon ---- */

struct daemon;

/* A declared widget and what the daemon keeps for it. */
struct decl {
	const struct evk_widget_decl *c;
	struct evk_gate *refetch; /* keep_live */
	long long queries;
	struct daemon *daemon;
};

/* Everything the running daemon holds, handed to its callbacks. */
struct daemon {
	const char *url;
	struct evk_widgetconf conf;
	struct decl decls[EVK_WIDGETS_MAX];
	size_t max_widgets; /* progress and result widgets kept (evk_fold_trim) */
	cJSON *widgets;
	/* Ids of the saved widgets trimmed at load, announced as removed
	 * once the hub is reached; then NULL. */
	cJSON *trimmed;
	sqlite3 *state_db;
	struct evk_db *cases_db; /* --cases-db (SQLite or PostgreSQL), or NULL */
	struct evk_gate *publish_gate;
	struct evk_pub *pub; /* NULL while the hub is away */
	/* Widgets announced since the hub last acknowledged everything (ids
	 * as member names): after a lost link each is announced again, with
	 * its state then. */
	cJSON *unacked;
	long long reconnect_at; /* when to try the hub again (monotonic ms) */
	uint64_t last_seq;
	long long now; /* the monotonic clock, read once per event */
	struct evk_web *web; /* --http */
};

/* The page's copy of widget id (w NULL: removed). */
static void
web_put(struct evk_web *web, const char *id, const cJSON *w)
{
	char *text = w ? cJSON_PrintUnformatted(w) : NULL;
	if ((w && text == NULL) || evk_web_widget(web, id, text, text ? strlen(text) : 0) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	cJSON_free(text);
}

/* The config (path, or the built-in one) into dm; dies on a bad one. */
static void
load_config(struct daemon *dm, const char *path)
{
	char *text = NULL, why[256];
	size_t len = strlen(evk_widgetconf_default);
	int rv = path ? evk_file_read(path, EVK_FILE_MAX, &text, &len) : EVK_OK;
	if (rv == EVK_EIO)
		evk_die(EVK_EX_IOERR, "cannot read config '%s': %s", path, strerror(errno));
	if (rv == EVK_ETOOLONG)
		evk_die(EVK_EX_DATAERR, "config %s: longer than %d bytes", path, EVK_FILE_MAX);
	if (rv != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (evk_widgetconf_parse(&dm->conf, text ? text : evk_widgetconf_default, len, why,
				 sizeof(why)) != EVK_OK)
		evk_die(EVK_EX_DATAERR, "%s: %s", path ? path : "the built-in config", why);
	free(text);
	for (int i = 0; i < dm->conf.n; i++) {
		struct decl *d = &dm->decls[i];
		d->c = &dm->conf.widgets[i];
		d->daemon = dm;
		if (d->c->kind == EVK_WIDGET_KEEP_LIVE &&
		    !(d->refetch = evk_gate_new(EVK_GATE_THROTTLE, d->c->window_ms, 1, 4096)))
			evk_die(EVK_EX_FAIL, "out of memory");
	}
}

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
	if (dm->web)
		web_put(dm->web, id, w);
	if (w == NULL && ((gone = cJSON_CreateObject()) == NULL ||
			  !cJSON_AddStringToObject(gone, "id", id)))
		evk_die(EVK_EX_FAIL, "out of memory");
	int rv = dm->pub ? evk_pub_event(dm->pub, topic, w ? "widget_updated" : "widget_removed",
					  w ? w : gone)
			 : EVK_OK;
	/* A lost link is sync_announcements' to tell and mend. */
	if (rv != EVK_OK && rv != EVK_ECLOSED && rv != EVK_EUNAVAIL && rv != EVK_EPROTO)
		evk_warn("cannot announce widget '%s': %s", id, evk_strerror(rv));
	else if (rv == EVK_OK)
		evk_info("announced %s on %s", w ? "widget_updated" : "widget_removed", topic);
	cJSON_Delete(gone);
	return 0;
}

/* keep_live: the list re-queried from casectl's database. */
static int
refetch(void *arg, const char *line, size_t len)
{
	struct decl *d = arg;
	struct evk_db *cases_db = d->daemon->cases_db;
	(void)line;
	(void)len;
	cJSON *items = cJSON_CreateArray();
	int rv = cases_db && items ? evk_cases_recent(cases_db, d->c->limit, items) : EVK_OK;
	bool again = false;
	if (rv == EVK_EIO && evk_cases_reconnect(cases_db, &again) == EVK_OK && again) {
		/* The server went away and is back: asked again on a new
		 * connection, the list as if nothing had happened. */
		cJSON_Delete(items);
		items = cJSON_CreateArray();
		rv = items ? evk_cases_recent(cases_db, d->c->limit, items) : EVK_ENOMEM;
	}
	d->queries++;
	folded(rv);
	if (rv != EVK_OK)
		evk_warn("keep_live '%s': %s", d->c->id, evk_db_error(cases_db));
	folded(evk_fold_keep_live(d->daemon->widgets, d->c->id, items, (double)d->queries, changed,
				  d->daemon));
	return 0;
}

/* The declared widgets' clauses, for each declaration the event matches. */
static void
apply_decls(struct daemon *dm, const struct evk_event *ev)
{
	for (int i = 0; i < dm->conf.n; i++) {
		struct decl *d = &dm->decls[i];
		if (!evk_pattern_match(d->c->pattern, ev->topic, ev->topic_len) ||
		    (d->c->event[0] && !event_is(ev, d->c->event)))
			continue;
		if (d->c->kind == EVK_WIDGET_COUNTER) {
			folded(evk_fold_count(dm->widgets, d->c->id, ev, changed, dm));
		} else if (d->c->kind == EVK_WIDGET_KEEP_LIVE) {
			if (evk_gate_offer(d->refetch, "k", 1, ev->seq, "k", 1, dm->now, refetch, d) > 0)
				evk_die(EVK_EX_FAIL, "out of memory");
		} else if (event_is(ev, "create") || event_is(ev, "sync")) {
			folded(evk_fold_session_add(dm->widgets, d->c->id, (size_t)d->c->limit, ev, changed, dm));
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
	for (int i = 0; i < dm->conf.n; i++) {
		struct decl *d = &dm->decls[i];
		if (d->c->kind != EVK_WIDGET_SESSION || (only && strcmp(only, d->c->id) != 0))
			continue;
		found = true;
		folded(evk_fold_session_mark(dm->widgets, d->c->id, start, ev->ts, changed, dm));
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

	for (int i = 0; i < dm->conf.n; i++) {
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
		struct evk_fold_opts fo = { .list_max = dm->conf.list_max,
					    .max_widgets = dm->max_widgets };
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

/* A saved widget past the bound: its id kept to announce its removal. */
static void
trimmed(void *arg, const char *id, enum evk_fold_change c)
{
	struct daemon *dm = arg;
	cJSON *s = cJSON_CreateString(id);
	(void)c;
	if (s == NULL || !cJSON_AddItemToArray(dm->trimmed, s)) {
		cJSON_Delete(s);
		evk_die(EVK_EX_FAIL, "out of memory");
	}
}

/* Opens the state database and loads the saved state (its damaged
 * widgets dropped, then its progress and result widgets past the bound,
 * the oldest first: a state saved before widgetd had a bound, or with a
 * larger one) and the seq it includes; returns where the subscription
 * starts. */
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
	/* A state that cannot be read stops the daemon: starting without it
	 * would save over it. */
	sqlite3_stmt *st = evk_store_stmt(dm->state_db, "SELECT widgets, last_seq FROM state WHERE id = 1");
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		evk_die(EVK_EX_UNAVAILABLE, "cannot read state '%s': %s", path,
			sqlite3_errmsg(dm->state_db));
	if (rc == SQLITE_ROW) {
		dm->widgets = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
		dm->last_seq = (uint64_t)sqlite3_column_int64(st, 1);
		since = (int64_t)dm->last_seq;
	}
	sqlite3_reset(st);
	if (since != EVK_SINCE_LIVE && !cJSON_IsArray(dm->widgets)) {
		evk_warn("state '%s': the saved widgets are not a JSON array; starting without them",
			 path);
		cJSON_Delete(dm->widgets);
		dm->widgets = NULL;
	}
	if (dm->widgets == NULL)
		dm->widgets = cJSON_CreateArray();
	if (dm->widgets == NULL || (dm->trimmed = cJSON_CreateArray()) == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	evk_fold_check(dm->widgets, dropped, (void *)path);
	size_t n = evk_fold_trim(dm->widgets, dm->max_widgets, NULL, trimmed, dm);
	if (n)
		evk_warn("state '%s': %zu progress and result widget%s past the bound of %zu"
			 " (--max-widgets) dropped, the oldest first",
			 path, n, n == 1 ? "" : "s", dm->max_widgets);
	return since;
}

/* Sets the daemon up: config, state, cases database, the hub. */
static struct evk_sub *
start_daemon(struct daemon *dm, const struct opts *o)
{
	char def[4096];
	const char *path = evk_state_file(o->state, "widgets.db", def, sizeof(def));
	if (path == NULL)
		evk_usage_die("no --state given and no HOME or XDG_STATE_HOME");
	load_config(dm, o->config);
	dm->max_widgets = o->max_widgets ? (size_t)o->max_widgets : dm->conf.max_widgets;
	int64_t since = load_state(dm, path);
	if (!(dm->unacked = cJSON_CreateObject()) ||
	    !(dm->publish_gate = evk_gate_new(EVK_GATE_THROTTLE, o->throttle_ms, EVK_GATE_MAX_KEYS,
					      1 << 20)))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (o->log && evk_daemon_log(o->log, o->daemon) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot open the log '%s': %s", o->log, strerror(errno));
	if (o->daemon && evk_daemon_start() != EVK_OK)
		evk_die(EVK_EX_FAIL, "cannot go to the background");
	/* casectl's database, opened in the process that reads it: a
	 * database connection does not survive a fork (SQLite's locks stay
	 * with the parent: the child would read an old snapshot). Until
	 * ready, a failure still reaches the caller's terminal. */
	if (o->cases_db) {
		if ((dm->cases_db = calloc(1, sizeof(*dm->cases_db))) == NULL)
			evk_die(EVK_EX_FAIL, "out of memory");
		if (evk_cases_open(dm->cases_db, o->cases_db) != EVK_OK)
			evk_die(EVK_EX_UNAVAILABLE, "cannot open cases database: %s",
				evk_db_error(dm->cases_db));
	}
	/* Subscribe, then load what the lists need: events newer than the
	 * snapshot are replayed by the subscription, none falls between. */
	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, dm->url, since);
	if (rv != EVK_OK)
		evk_die_hub(dm->url, rv);
	if ((rv = evk_pub_open(&dm->pub, dm->url, NULL, NULL)) != EVK_OK)
		evk_die_hub(dm->url, rv);
	/* The widgets trimmed at load go from the subscribers' view too. */
	for (const cJSON *t = dm->trimmed->child; t; t = t->next)
		changed(dm, t->valuestring, EVK_FOLD_REMOVED);
	cJSON_Delete(dm->trimmed);
	dm->trimmed = NULL;
	char now_ts[EVK_TS_LEN + 1];
	evk_ts_now(now_ts);
	for (int i = 0; i < dm->conf.n; i++) {
		if (dm->decls[i].c->kind == EVK_WIDGET_KEEP_LIVE)
			refetch(&dm->decls[i], NULL, 0);
		if (dm->decls[i].c->kind == EVK_WIDGET_SESSION)
			folded(evk_fold_session_init(dm->widgets, dm->decls[i].c->id, now_ts, changed, dm));
	}
	if (o->http) {
		const char *why;
		if ((rv = evk_web_open(&dm->web, o->http, o->insecure, dm->url, &why)) != EVK_OK)
			evk_die(rv == EVK_EPERM || rv == EVK_EINVAL ? EVK_EX_USAGE : EVK_EX_UNAVAILABLE,
				"cannot serve --http %s: %s", o->http, why);
		for (const cJSON *w = dm->widgets->child; w; w = w->next)
			web_put(dm->web, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id")), w);
		fprintf(stderr, "widgetd: the page is at %s\n", evk_web_url(dm->web));
		if (evk_web_clear(dm->web))
			evk_warn("warning: serving the page on '%s' without TLS (--insecure)",
				 evk_web_url(dm->web));
	}
	if (o->pidfile && evk_pidfile_write(o->pidfile) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot write pid file '%s'", o->pidfile);
	evk_daemon_ready(0);
	evk_info("subscribed to '%s'; %d widget%s declared", dm->url, dm->conf.n,
		 dm->conf.n == 1 ? "" : "s");
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
	evk_web_close(dm->web);
	evk_gate_free(dm->publish_gate);
	for (int i = 0; i < dm->conf.n; i++)
		evk_gate_free(dm->decls[i].refetch);
	cJSON_Delete(dm->widgets);
	cJSON_Delete(dm->unacked);
	evk_store_stmt_release(dm->state_db);
	sqlite3_close(dm->state_db);
	if (dm->cases_db) {
		evk_db_close(dm->cases_db);
		free(dm->cases_db);
	}
	if (o->pidfile)
		unlink(o->pidfile);
}

int
widgetd_daemon(const struct opts *o, const char *url)
{
	struct daemon dm = { .url = url };
	struct evk_sub *sub = start_daemon(&dm, o);
	struct evk_event ev;
	int unsaved = 0, burst = 0, wait = 0, rv;

	dm.now = evk_mono_ms();
	while (!widgetd_stopping) {
		/* Timers, saving and acknowledgements between frames, or every
		 * HOUSEKEEP_EVERY events of a long one; not per event. */
		bool idle = !evk_sub_buffered(sub);
		if (idle || ++burst >= HOUSEKEEP_EVERY) {
			burst = 0;
			wait = housekeeping(&dm, sub, &unsaved);
		}
		rv = evk_sub_next_past_gaps(sub, &ev, idle ? wait : 0, evk_warn_text);
		if (rv == EVK_ETIMEDOUT)
			continue;
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
