/* casectl — the enforcement `case` resource in SQLite; every committed
 * action is announced on the bus through an outbox written in the same
 * transaction (Ash resource + Ash.Notifier.PubSub). */
#include "evkit/buf.h"
#include "evkit/bus.h"
#include "evkit/cases.h"
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/gate.h"
#include "evkit/jsonmem.h"
#include "evkit/lines.h"
#include "evkit/outbox.h"
#include "evkit/store.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define FIELD_MAX (1024 * 1024)       /* bytes in one text field */
#define LINE_MAX_DEFAULT (4u << 20)   /* one input line */
#define INGEST_TXN 5000               /* cases per ingest transaction (--batch) */
#define INGEST_TXN_MAX 1000000
#define INGEST_IDLE_MS 50             /* input paused this long: commit what came */
#define PROGRESS_AFTER_MS 1000        /* an input this long gets a progress line */
#define PROGRESS_EVERY_MS 250         /* ... redrawn at most this often */
#define BATCH_BYTES (8u << 20)        /* ingest commits past this much to announce */
#define AGENCY_CACHE 64               /* agencies a process remembers */

enum role { ROLE_NONE, ROLE_VIEWER, ROLE_EDITOR, ROLE_ADMIN };

struct ctx {
	struct evk_db db;
	const char *db_path; /* --db, or NULL for the default */
	char url[EVK_URL_MAX];
	const char *bus;
	char actor[256];
	enum role role;
	size_t max_line;
	long txn_cases; /* cases per ingest transaction (--batch) */
	int interrupted; /* the signal that stopped reading the input, or 0 */
	bool strict;
	/* list/watch filters */
	const char *agency, *offender, *since, *sort;
	long limit;
	long long refetch_ms;
	long count; /* watch: exit after this many results */
	/* scratch for the case being written; created: its timestamp, which
	 * the case_view of a created case points at */
	struct evk_buf out, key;
	char created[EVK_TS_LEN + 1];
	struct agency {
		sqlite3_int64 id;
		char *code, *name;
	} agencies[AGENCY_CACHE];
	size_t n_agencies;
	struct offender {
		sqlite3_int64 id;
		struct evk_buf name, postcode; /* NUL-terminated */
		bool has_postcode;
	} off;
	/* a write transaction is open, with its notifications in batch */
	bool in_txn;
	struct evk_outbox *outbox;
	struct evk_buf batch;
	sqlite3_int64 batch_n;
	sqlite3_int64 damaged_row; /* the outbox row that cannot be sent, or 0 */
};

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	stopping = sig;
}

/* SIGURG interrupts the input thread's read (reader_halt); nothing else. */
static void
on_urgent(int sig)
{
	(void)sig;
}

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: casectl [--db FILE] [--bus URL] [--actor NAME] COMMAND [ARGS]\n"
		"\n"
		"The enforcement case resource; every change is announced on the bus\n"
		"(case:{created,synced,updated,destroyed} and ...:{id}).\n"
		"\n"
		"  init --admin NAME           create the database and its first admin\n"
		"  user add NAME --role ROLE   add an actor: admin, editor or viewer\n"
		"  user list\n"
		"  create [JSON]               create a case (or JSON lines on stdin)\n"
		"  get ID                      print one case\n"
		"  list [filters]              print cases as JSON lines\n"
		"  update ID JSON              change fields of a case\n"
		"  sync ID                     mark a case synced\n"
		"  destroy ID                  delete a case (admin)\n"
		"  ingest [--strict] [--batch N]\n"
		"                              upsert JSON lines by (agency, case_reference),\n"
		"                              N per transaction (default 5000)\n"
		"  outbox list|flush           notifications not yet delivered\n"
		"  watch [filters] [--refetch-window MS] [-n N]\n"
		"                              print the list as one JSON array, again\n"
		"                              after case events (at most once per window)\n"
		"\n"
		"filters: --agency CODE --offender TEXT --since TS --sort FIELD --limit N\n"
		"\n"
		"  --db FILE        the database (default $XDG_STATE_HOME/evkit/cases.db)\n"
		"  --bus URL        the hub (default $EVBUS_URL, else a private ipc path)\n"
		"  --actor NAME     act as NAME (default $CASECTL_ACTOR, else the login)\n"
		"  --max-line BYTES longest input line (default 4194304)\n"
		"  -h, --help, --version\n"
		"\n"
		"Exit: 0 ok, 1 no such case, 2 usage, 65 bad input, 69 database\n"
		"unavailable, 77 not allowed, 130/143 input stopped by SIGINT/SIGTERM.\n");
	exit(status);
}

/* ---- small helpers ---- */

static void
now_ts(char out[EVK_TS_LEN + 1])
{
	evk_ts_now(out);
}

static void
new_uuid(char out[37])
{
	if (evk_uuid7(out) != EVK_OK)
		evk_die(EVK_EX_FAIL, "no random bytes: %s", strerror(errno));
}

static void
db_die(struct ctx *c, const char *what)
{
	evk_db_fail(&c->db, what);
	evk_die(EVK_EX_UNAVAILABLE, "%s", evk_db_error(&c->db));
}

/* A database call failed: its reason is in c->db. */
static void
db_check(struct ctx *c, int rv)
{
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_db_error(&c->db));
}

static sqlite3_stmt *
prepare(struct ctx *c, const char *sql)
{
	sqlite3_stmt *st = evk_db_stmt(&c->db, sql);
	if (st == NULL)
		db_check(c, EVK_EIO);
	return st;
}

/* Done with a statement for now (it stays prepared). */
static void
done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
}

/* Binds s without a copy: it must stay as it is until the statement's
 * last step (every caller binds, steps, then resets). */
static void
bind_text(struct ctx *c, sqlite3_stmt *st, int i, const char *s)
{
	int rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
		   : sqlite3_bind_null(st, i);
	if (rc != SQLITE_OK)
		db_die(c, "cannot bind a value");
}

static void
exec(struct ctx *c, const char *sql)
{
	db_check(c, evk_db_exec(&c->db, sql));
}

/* BEGIN IMMEDIATE, retried while another casectl holds the lock beyond the
 * busy timeout. */
static void
begin(struct ctx *c)
{
	db_check(c, evk_db_begin(&c->db));
}

/* ---- schema ---- */

static void
open_db(struct ctx *c, bool create)
{
	int rv = evk_db_open(&c->db, c->db_path, "cases.db", create, evk_cases_migrations,
			     EVK_CASES_MIGRATIONS);
	if (rv == EVK_EINVAL)
		evk_die(EVK_EX_USAGE, "%s", evk_db_error(&c->db));
	if (rv == EVK_EUNAVAIL)
		evk_die(EVK_EX_UNAVAILABLE, "%s (run: casectl init --admin NAME)",
			evk_db_error(&c->db));
	db_check(c, rv);
}

static enum role
role_of(struct ctx *c, const char *name)
{
	sqlite3_stmt *st = prepare(c, "SELECT role FROM users WHERE name = ?");
	enum role r = ROLE_NONE;
	bind_text(c, st, 1, name);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		r = strcmp(s, "admin") == 0    ? ROLE_ADMIN
		    : strcmp(s, "editor") == 0 ? ROLE_EDITOR
					       : ROLE_VIEWER;
	}
	done(st);
	return r;
}

static void
require(struct ctx *c, enum role need, const char *action)
{
	if (c->role == ROLE_NONE)
		evk_die(EVK_EX_NOPERM, "unknown actor '%s' (casectl user add)", c->actor);
	if (c->role < need)
		evk_die(EVK_EX_NOPERM, "actor '%s' may not %s", c->actor, action);
}

/* ---- cases as JSON ---- */

/* evk_case_with's callback: casectl's own, with the ctx. */
struct with {
	struct ctx *c;
	void (*fn)(struct ctx *, const struct evk_case *, void *);
	void *arg;
};

static int
with_case(void *arg, const struct evk_case *v)
{
	struct with *w = arg;
	w->fn(w->c, v, w->arg);
	return EVK_OK;
}

/* Runs fn on the case id; false when there is none. */
static bool
case_with(struct ctx *c, const char *id, void (*fn)(struct ctx *, const struct evk_case *,
						    void *),
	  void *arg)
{
	struct with w = { c, fn, arg };
	bool found;
	if (evk_case_with(c->db.sq, id, with_case, &w, &found) != EVK_OK)
		db_die(c, "cannot read a case");
	return found;
}

static void
put_text(const struct evk_buf *b)
{
	if (b->len && fwrite(b->p, 1, b->len, stdout) != b->len)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
}

/* Leaves the case in c->out as one JSON line. */
static void
print_case_to(struct ctx *c, const struct evk_case *v)
{
	evk_buf_reset(&c->out);
	if (evk_case_write(&c->out, v) != EVK_OK || evk_buf_addch(&c->out, '\n'))
		evk_die(EVK_EX_FAIL, "out of memory");
}

static void
print_case(struct ctx *c, const struct evk_case *v, void *arg)
{
	(void)arg;
	print_case_to(c, v);
	put_text(&c->out);
}

static void
print_json(cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	if (s == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (puts(s) == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	cJSON_free(s);
}

/* ---- notifications: outbox inside the transaction, delivered after ----
 *
 * The notifications of a transaction are collected in c->batch as notes
 * and written, just before COMMIT, as one outbox row of format 4
 * (lib/outbox.c delivers it). A note
 * "ts\taction\tpast\tid\tactor\tvalues\n" stands for the event lines
 * case:{past} and case:{past}:{id}, whose payload is built from it when
 * they are sent: actor and the case's values (evk_case_values) are JSON text,
 * which holds no raw tab or newline. Without the member names a note is
 * half the bytes the payload would be, and every byte of a batch is
 * written to the WAL, then again by the checkpoint. Rows of older formats
 * were converted by migration 6. */
#define NOTE_FORMAT 4

/* Queues the notification of one action on case v, payload {resource,
 * action, actor, data}. */
static void
notify(struct ctx *c, const char *action, const char *past, const struct evk_case *v)
{
	char ts[EVK_TS_LEN + 1];
	now_ts(ts);
	struct evk_buf *b = &c->batch;
	if (evk_buf_add(b, ts, EVK_TS_LEN) || evk_buf_addch(b, '\t') || evk_buf_addstr(b, action) ||
	    evk_buf_addch(b, '\t') || evk_buf_addstr(b, past) || evk_buf_addch(b, '\t') ||
	    evk_buf_addstr(b, v->id) || evk_buf_addch(b, '\t') || evk_case_add_text(b, c->actor))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (evk_case_values(b, v) != EVK_OK || evk_buf_addch(b, '\n'))
		evk_die(EVK_EX_FAIL, "out of memory");
	c->batch_n += 2;
}

/* The payload a note stands for, from the text after its id
 * (rest[0..n)), into out. */
static int
note_payload(struct evk_buf *out, const char *action, const char *rest, size_t n)
{
	const char *tab = memchr(rest, '\t', n);
	int rv;
	if (tab == NULL || tab == rest)
		return EVK_EPROTO;
	evk_buf_reset(out);
	if ((rv = evk_buf_add(out, "{\"resource\":\"case\",\"action\":", 28)) != EVK_OK ||
	    (rv = evk_case_add_text(out, action)) != EVK_OK ||
	    (rv = evk_buf_add(out, ",\"actor\":", 9)) != EVK_OK ||
	    (rv = evk_buf_add(out, rest, (size_t)(tab - rest))) != EVK_OK ||
	    (rv = evk_buf_add(out, ",\"data\":", 8)) != EVK_OK ||
	    (rv = evk_case_layout(out, tab + 1, n - (size_t)(tab + 1 - rest))) != EVK_OK)
		return rv;
	return evk_buf_addch(out, '}');
}

/* The outbox's expand callback: one note (note[0..len)) into its two
 * event lines. Uses only its arguments (it runs on the sender's thread
 * too). */
static int
expand_note(int format, const char *note, size_t len, struct evk_buf scratch[2],
	    int (*emit)(void *, const char *, size_t), void *emit_arg)
{
	struct evk_buf *line = &scratch[0], *payload = &scratch[1];
	const char *p = note, *nl = note + len;
	char f[4][EVK_TOPIC_MAX + 1]; /* ts, action, past, id */
	int rv;

	if (format != NOTE_FORMAT)
		return EVK_EPROTO;
	for (int i = 0; i < 4; i++) {
		const char *tab = memchr(p, '\t', (size_t)(nl - p));
		if (tab == NULL || (size_t)(tab - p) > EVK_TOPIC_MAX)
			return EVK_EPROTO;
		memcpy(f[i], p, (size_t)(tab - p));
		f[i][tab - p] = '\0';
		p = tab + 1;
	}
	if (strlen(f[0]) != EVK_TS_LEN)
		return EVK_EPROTO;
	if ((rv = note_payload(payload, f[1], p, (size_t)(nl - p))) != EVK_OK)
		return rv;
	for (int i = 0; i < 2; i++) {
		char topic[EVK_TOPIC_MAX + 1];
		snprintf(topic, sizeof(topic), i ? "case:%s:%s" : "case:%s", f[2], f[3]);
		evk_buf_reset(line);
		rv = evk_event_build_raw(line, f[0], topic, f[1], payload->p, payload->len, NULL);
		if (rv == EVK_EINVAL)
			return EVK_EPROTO;
		if (rv != EVK_OK || (rv = emit(emit_arg, line->p, line->len)) != EVK_OK)
			return rv;
	}
	return EVK_OK;
}

/* notify_row's argument: the action, its past tense, and whether to keep
 * the case as a JSON line in c->out, to print once committed. */
struct announcement {
	const char *action, *past;
	bool keep;
};

static void
notify_row(struct ctx *c, const struct evk_case *v, void *arg)
{
	const struct announcement *a = arg;
	notify(c, a->action, a->past, v);
	if (a->keep)
		print_case_to(c, v);
}

static int
print_line(void *arg, const char *line, size_t len, uint64_t seq)
{
	(void)arg;
	(void)seq;
	if (fwrite(line, 1, len, stdout) != len || putchar('\n') == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return EVK_OK;
}

/* An outbox call failed: out of memory or the database. */
static void
outbox_check(struct ctx *c, int rv)
{
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_outbox_error(c->outbox));
}

/* Delivers the outbox (evk_outbox_flush) and says what stays. Returns how
 * many notifications stay pending; quiet == true when the hub being down
 * is not worth a warning. */
static long
outbox_flush(struct ctx *c, bool quiet)
{
	struct evk_outbox_report r;
	outbox_check(c, evk_outbox_flush(c->outbox, &r));
	c->damaged_row = r.damaged;
	if (r.damaged)
		evk_warn("outbox row %lld is damaged (neither event lines nor notes): it and "
			 "the %ld notifications from it on stay in table notes of '%s'",
			 (long long)r.damaged, r.pending, c->db.path);
	else if (r.pending > 0 && !quiet)
		evk_warn("hub at '%s' unavailable: %ld notifications kept in the outbox "
			 "(delivered by the next casectl command or 'casectl outbox flush')",
			 c->url, r.pending);
	return r.pending;
}

/* Commits the open transaction with its notifications as one outbox row
 * (settling the row sent within it) and, while delivering as we go
 * (evk_outbox_live_start), opens the next transaction and sends this
 * row. more == false: no transaction is left open. */
static void
commit(struct ctx *c, bool more)
{
	sqlite3_int64 row = 0;
	if (c->batch_n > 0)
		outbox_check(c, evk_outbox_record(c->outbox, NOTE_FORMAT, c->batch.p, c->batch.len,
						  c->batch_n, &row));
	outbox_check(c, evk_outbox_live_settle(c->outbox));
	exec(c, "COMMIT");
	c->in_txn = false;
	if (evk_outbox_is_live(c->outbox) && row) {
		begin(c);
		c->in_txn = true;
		outbox_check(c, evk_outbox_live_send(c->outbox, row, NOTE_FORMAT, &c->batch));
	}
	c->batch_n = 0;
	evk_buf_reset(&c->batch);
	if (c->in_txn && !more)
		commit(c, false);
}

/* ---- input cases ---- */

struct input {
	const char *agency, *reference, *off_name, *off_postcode, *date, *result;
	bool has_fine, has_costs;
	double fine, costs;
	bool has_offender, has_date, has_result;
};

/* A text field of the input, the member v (or NULL when absent): *out is
 * its text, NULL when absent or null; *has (if given) whether it came. */
static bool
text_value(const cJSON *v, const char *name, const char **out, bool *has, char *why, size_t wl)
{
	if (v == NULL || cJSON_IsNull(v)) {
		*out = NULL;
		if (has)
			*has = v != NULL;
		return true;
	}
	if (!cJSON_IsString(v)) {
		snprintf(why, wl, "'%s' must be a string", name);
		return false;
	}
	if (strlen(v->valuestring) > FIELD_MAX) {
		snprintf(why, wl, "'%s' longer than %d bytes", name, FIELD_MAX);
		return false;
	}
	*out = v->valuestring;
	if (has)
		*has = true;
	return true;
}

static bool
text_field(const cJSON *o, const char *name, const char **out, bool *has, char *why,
	   size_t wl)
{
	return text_value(cJSON_GetObjectItemCaseSensitive(o, name), name, out, has, why, wl);
}

/* The fields of an input case, each found in the one walk that checks
 * them (the first of a name counts, as with cJSON_GetObjectItemCaseSensitive). */
enum field { F_AGENCY, F_REFERENCE, F_OFFENDER, F_DATE, F_FINE, F_COSTS, F_RESULT, F_COUNT };
static const char *const field_names[F_COUNT] = {
	"agency", "case_reference", "offender", "offence_action_date",
	"offence_fine", "offence_costs", "offence_result",
};

static bool
parse_input(const cJSON *o, struct input *in, bool partial, char *why, size_t wl)
{
	const cJSON *f[F_COUNT] = { 0 };
	memset(in, 0, sizeof(*in));
	if (!cJSON_IsObject(o)) {
		snprintf(why, wl, "a case is a JSON object");
		return false;
	}
	for (const cJSON *m = o->child; m; m = m->next) {
		int k = 0;
		while (k < F_COUNT && strcmp(field_names[k], m->string) != 0)
			k++;
		if (k == F_COUNT) {
			snprintf(why, wl, "unknown field '%.64s'", m->string);
			return false;
		}
		if (f[k] == NULL)
			f[k] = m;
	}
	if (!text_value(f[F_AGENCY], field_names[F_AGENCY], &in->agency, NULL, why, wl) ||
	    !text_value(f[F_REFERENCE], field_names[F_REFERENCE], &in->reference, NULL, why, wl) ||
	    !text_value(f[F_DATE], field_names[F_DATE], &in->date, &in->has_date, why, wl) ||
	    !text_value(f[F_RESULT], field_names[F_RESULT], &in->result, &in->has_result, why, wl))
		return false;
	if (!partial && (in->agency == NULL || in->reference == NULL || !*in->agency ||
			 !*in->reference)) {
		snprintf(why, wl, "'agency' and 'case_reference' are required");
		return false;
	}
	if (partial && (in->agency || in->reference)) {
		snprintf(why, wl, "'agency' and 'case_reference' cannot change");
		return false;
	}
	const cJSON *off = f[F_OFFENDER];
	if (off && !cJSON_IsNull(off)) {
		if (!cJSON_IsObject(off) ||
		    !text_field(off, "name", &in->off_name, NULL, why, wl) ||
		    !text_field(off, "postcode", &in->off_postcode, NULL, why, wl) ||
		    in->off_name == NULL || !*in->off_name) {
			if (!*why)
				snprintf(why, wl, "'offender' needs a 'name'");
			return false;
		}
		in->has_offender = true;
	}
	for (int i = F_FINE; i <= F_COSTS; i++) {
		const cJSON *v = f[i];
		if (v == NULL || cJSON_IsNull(v))
			continue;
		if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
			snprintf(why, wl, "'%s' must be a number, not negative", field_names[i]);
			return false;
		}
		*(i == F_COSTS ? &in->costs : &in->fine) = v->valuedouble;
		*(i == F_COSTS ? &in->has_costs : &in->has_fine) = true;
	}
	return true;
}

/* Offenders are one row per normalised name + postcode: case, spacing
 * and punctuation of the name, and spacing of the postcode, do not count. */
static void
match_key(const char *name, const char *postcode, struct evk_buf *out)
{
	bool space = false;
	evk_buf_reset(out);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (isalnum(*p) || *p >= 0x80) {
			if (space && out->len)
				evk_buf_addch(out, ' ');
			space = false;
			evk_buf_addch(out, (char)tolower(*p));
		} else if (isspace(*p)) {
			space = true;
		}
	}
	evk_buf_addch(out, '|');
	for (const unsigned char *p = (const unsigned char *)(postcode ? postcode : ""); *p; p++)
		if (!isspace(*p))
			evk_buf_addch(out, (char)toupper(*p));
	evk_buf_addch(out, '\0');
}

/* The agency with this code, created when new. Agencies are few and never
 * change, so each process keeps the ones it met. */
static const struct agency *
agency_get(struct ctx *c, const char *code)
{
	for (size_t i = 0; i < c->n_agencies; i++)
		if (strcmp(c->agencies[i].code, code) == 0)
			return &c->agencies[i];
	struct agency a = { 0 };
	sqlite3_stmt *st = prepare(c, "SELECT id, name FROM agencies WHERE code = ?");
	bind_text(c, st, 1, code);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		a.id = sqlite3_column_int64(st, 0);
		a.name = strdup((const char *)sqlite3_column_text(st, 1));
	} else if (rc != SQLITE_DONE) {
		db_die(c, "cannot read an agency");
	}
	done(st);
	if (rc == SQLITE_DONE) {
		st = prepare(c, "INSERT INTO agencies (code, name) VALUES (?1, ?1)");
		bind_text(c, st, 1, code);
		if (sqlite3_step(st) != SQLITE_DONE)
			db_die(c, "cannot add an agency");
		done(st);
		a.id = sqlite3_last_insert_rowid(c->db.sq);
		a.name = strdup(code);
	}
	a.code = strdup(code);
	if (a.code == NULL || a.name == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (c->n_agencies == AGENCY_CACHE) {
		/* Past the cache, the oldest entry makes room. */
		free(c->agencies[0].code);
		free(c->agencies[0].name);
		memmove(c->agencies, c->agencies + 1, sizeof(a) * (AGENCY_CACHE - 1));
		c->n_agencies--;
	}
	c->agencies[c->n_agencies] = a;
	return &c->agencies[c->n_agencies++];
}

/* The offender of the input (matched by normalised name and postcode),
 * created when new; its stored name and postcode are left in c->off. */
static sqlite3_int64
offender_get(struct ctx *c, const struct input *in)
{
	struct offender *o = &c->off;
	match_key(in->off_name, in->off_postcode, &c->key);
	if (c->key.p == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	sqlite3_stmt *st =
		prepare(c, "SELECT id, name, postcode FROM offenders WHERE match_key = ?");
	bind_text(c, st, 1, c->key.p);
	int rc = sqlite3_step(st);
	evk_buf_reset(&o->name);
	evk_buf_reset(&o->postcode);
	o->has_postcode = false;
	if (rc == SQLITE_ROW) {
		o->id = sqlite3_column_int64(st, 0);
		const char *pc = (const char *)sqlite3_column_text(st, 2);
		if (evk_buf_add(&o->name, sqlite3_column_text(st, 1),
				(size_t)sqlite3_column_bytes(st, 1) + 1) ||
		    (pc && evk_buf_add(&o->postcode, pc, strlen(pc) + 1)))
			evk_die(EVK_EX_FAIL, "out of memory");
		o->has_postcode = pc != NULL;
	} else if (rc != SQLITE_DONE) {
		db_die(c, "cannot read an offender");
	}
	done(st);
	if (rc == SQLITE_ROW)
		return o->id;
	st = prepare(c, "INSERT INTO offenders (name, postcode, match_key) VALUES (?, ?, ?)");
	bind_text(c, st, 1, in->off_name);
	bind_text(c, st, 2, in->off_postcode);
	bind_text(c, st, 3, c->key.p);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot add an offender");
	done(st);
	if (evk_buf_add(&o->name, in->off_name, strlen(in->off_name) + 1) ||
	    (in->off_postcode &&
	     evk_buf_add(&o->postcode, in->off_postcode, strlen(in->off_postcode) + 1)))
		evk_die(EVK_EX_FAIL, "out of memory");
	o->has_postcode = in->off_postcode != NULL;
	return o->id = sqlite3_last_insert_rowid(c->db.sq);
}

/* The id of the case (agency, reference), or "" when there is none. */
static void
find_case(struct ctx *c, sqlite3_int64 agency, const char *ref, char id[37])
{
	sqlite3_stmt *st = prepare(c, "SELECT id FROM cases WHERE agency_id = ? AND case_reference = ?");
	sqlite3_bind_int64(st, 1, agency);
	bind_text(c, st, 2, ref);
	id[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(id, 37, "%s", (const char *)sqlite3_column_text(st, 0));
	done(st);
}

/* Sets the fields the input carries on case id; sync also stamps
 * last_synced_at. */
static void
apply_fields(struct ctx *c, const char *id, const struct input *in, bool sync)
{
	char now[EVK_TS_LEN + 1];
	now_ts(now);
	sqlite3_stmt *st = prepare(
		c, "UPDATE cases SET"
		   " offender_id = CASE WHEN ?1 THEN ?2 ELSE offender_id END,"
		   " offence_action_date = CASE WHEN ?3 THEN ?4 ELSE offence_action_date END,"
		   " offence_fine = CASE WHEN ?5 THEN ?6 ELSE offence_fine END,"
		   " offence_costs = CASE WHEN ?7 THEN ?8 ELSE offence_costs END,"
		   " offence_result = CASE WHEN ?9 THEN ?10 ELSE offence_result END,"
		   " updated_at = ?11,"
		   " last_synced_at = CASE WHEN ?12 THEN ?11 ELSE last_synced_at END"
		   " WHERE id = ?13");
	sqlite3_bind_int(st, 1, in->has_offender);
	if (in->has_offender)
		sqlite3_bind_int64(st, 2, offender_get(c, in));
	sqlite3_bind_int(st, 3, in->has_date);
	bind_text(c, st, 4, in->date);
	sqlite3_bind_int(st, 5, in->has_fine);
	sqlite3_bind_double(st, 6, in->fine);
	sqlite3_bind_int(st, 7, in->has_costs);
	sqlite3_bind_double(st, 8, in->costs);
	sqlite3_bind_int(st, 9, in->has_result);
	bind_text(c, st, 10, in->result);
	bind_text(c, st, 11, now);
	sqlite3_bind_int(st, 12, sync);
	bind_text(c, st, 13, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot update a case");
	done(st);
}

/* Inserts a new case of agency a and announces it; v describes it after,
 * built from what was written rather than read back. false: the agency
 * has a case of that reference already, whose id is left in id; nothing
 * was written. */
static bool
create_case(struct ctx *c, const struct agency *a, const struct input *in, char id[37],
	    struct evk_case *v)
{
	char *now = c->created; /* outlives this call: v points at it */
	now_ts(now);
	new_uuid(id);
	sqlite3_int64 off = in->has_offender ? offender_get(c, in) : 0;
	sqlite3_stmt *st = prepare(
		c, "INSERT INTO cases (id, agency_id, case_reference, offender_id,"
		   " offence_action_date, offence_fine, offence_costs, offence_result,"
		   " inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?9)"
		   " ON CONFLICT (agency_id, case_reference) DO NOTHING");
	bind_text(c, st, 1, id);
	sqlite3_bind_int64(st, 2, a->id);
	bind_text(c, st, 3, in->reference);
	if (off)
		sqlite3_bind_int64(st, 4, off);
	bind_text(c, st, 5, in->date);
	if (in->has_fine)
		sqlite3_bind_double(st, 6, in->fine);
	if (in->has_costs)
		sqlite3_bind_double(st, 7, in->costs);
	bind_text(c, st, 8, in->result);
	bind_text(c, st, 9, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot insert a case");
	done(st);
	if (sqlite3_changes(c->db.sq) == 0) {
		find_case(c, a->id, in->reference, id);
		return false;
	}
	*v = (struct evk_case){
		.id = id, .reference = in->reference, .agency_code = a->code,
		.agency_name = a->name, .agency_id = a->id, .offender_id = off,
		.off_name = off ? c->off.name.p : NULL,
		.off_postcode = off && c->off.has_postcode ? c->off.postcode.p : NULL,
		.date = in->date, .result = in->result, .has_fine = in->has_fine,
		.has_costs = in->has_costs, .fine = in->fine, .costs = in->costs,
		.inserted = now, .updated = now, .synced = NULL,
	};
	notify(c, "create", "created", v);
	return true;
}

/* Announces an action on case id from its stored row (keep: and leaves
 * the row in c->out); false when there is no such case. */
static bool
announce(struct ctx *c, const char *id, const char *action, const char *past, bool keep)
{
	struct announcement a = { action, past, keep };
	return case_with(c, id, notify_row, &a);
}

/* ---- JSON-lines input (create, ingest) ---- */

enum upsert { UP_CREATE_ONLY, UP_INGEST };

/* The progress line of a long ingest on a terminal: lines read and what
 * became of them, redrawn in place; cleared before any other message. */
struct progress {
	bool tty, shown;
	long long start, next;
};

static void
progress_clear(struct progress *pg)
{
	if (pg->shown)
		fputs("\r\033[K", stderr);
	pg->shown = false;
}

static void
progress_draw(struct progress *pg, unsigned long lines, long created, long synced, long bad)
{
	long long now = evk_mono_ms();
	if (!pg->tty || now < pg->next)
		return;
	pg->next = now + PROGRESS_EVERY_MS;
	fprintf(stderr, "\r\033[Kcasectl: %lu lines: %ld created, %ld synced, %ld rejected",
		lines, created, synced, bad);
	pg->shown = true;
}

/* ---- ingest input: read and parsed on a thread of its own ----
 *
 * The reader thread turns input lines into entries (the input's fields,
 * or why the line is refused) in chunks, whose texts are copied into the
 * chunk's arena; the writer takes the chunks in turn. Two chunks: one
 * filled while the other is written. */
#define CHUNK_LINES 512
#define CHUNK_BYTES (256u << 10)
#define NO_TEXT ((size_t)-1)

#define INPUT_TEXTS 6

/* The text fields of an input, to move them into a chunk's arena and back. */
static void
input_texts(struct input *in, const char **t[INPUT_TEXTS])
{
	t[0] = &in->agency;
	t[1] = &in->reference;
	t[2] = &in->off_name;
	t[3] = &in->off_postcode;
	t[4] = &in->date;
	t[5] = &in->result;
}

struct entry {
	unsigned long lineno;
	struct input in;           /* its texts NULL here: they are in the arena */
	size_t text[INPUT_TEXTS];  /* their offsets in the arena, or NO_TEXT */
	size_t why;                /* the refused line's reason, or NO_TEXT */
};

struct chunk {
	struct evk_buf arena;
	struct entry e[CHUNK_LINES];
	size_t n;
	int end, err; /* EVK_LINE_EOF or EVK_LINE_ERR (errno) after the last entry */
	bool ready;   /* filled, for the writer */
};

struct reader {
	pthread_t thread;
	nng_mtx *mu;
	nng_cv *cv;
	struct evk_lines r;
	size_t max_line;
	bool stop, done;
	atomic_int cancel; /* stop reading now (r.cancel) */
	struct chunk chunk[2];
};

static size_t
keep_text(struct chunk *k, const char *s)
{
	if (s == NULL)
		return NO_TEXT;
	size_t at = k->arena.len;
	if (evk_buf_add(&k->arena, s, strlen(s) + 1) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	return at;
}

/* Fills k with the next lines; hands it over early rather than wait for
 * input with some lines in it. Stopped (reader_halt), it ends at once. */
static void
fill_chunk(struct reader *rd, struct chunk *k)
{
	char *text, why[512];
	size_t len;

	evk_buf_reset(&k->arena);
	k->n = 0;
	k->end = 0;
	while (k->n < CHUNK_LINES && k->arena.len < CHUNK_BYTES && !atomic_load(&rd->cancel)) {
		if (k->n > 0 && !evk_lines_ready(&rd->r))
			break;
		int s = evk_lines_next(&rd->r, &text, &len);
		if (s == EVK_LINE_ERR && atomic_load(&rd->cancel))
			break; /* stopped: the writer takes what came before */
		if (s == EVK_LINE_EOF || s == EVK_LINE_ERR) {
			k->end = s;
			k->err = errno;
			break;
		}
		if (s == EVK_LINE_OK && len == 0)
			continue;
		struct entry *e = &k->e[k->n++];
		struct input in;
		cJSON *o = NULL;
		why[0] = '\0';
		e->lineno = rd->r.lineno;
		if (s == EVK_LINE_TOOLONG)
			snprintf(why, sizeof(why), "line longer than %zu bytes", rd->max_line);
		else if (s == EVK_LINE_NUL)
			snprintf(why, sizeof(why), "NUL byte in line");
		else if ((o = cJSON_ParseWithLength(text, len)) == NULL)
			snprintf(why, sizeof(why), "invalid JSON");
		e->why = NO_TEXT;
		if (why[0] == '\0' && parse_input(o, &in, false, why, sizeof(why))) {
			const char **tx[INPUT_TEXTS];
			input_texts(&in, tx);
			for (int t = 0; t < INPUT_TEXTS; t++) {
				e->text[t] = keep_text(k, *tx[t]);
				*tx[t] = NULL; /* they point into o */
			}
			e->in = in;
		} else {
			e->why = keep_text(k, why);
		}
		cJSON_Delete(o);
	}
}

static void *
reader_run(void *arg)
{
	struct reader *rd = arg;
	sigset_t urgent;

	/* The one thread SIGURG is for: it cuts a read short (reader_halt). */
	sigemptyset(&urgent);
	sigaddset(&urgent, SIGURG);
	pthread_sigmask(SIG_UNBLOCK, &urgent, NULL);
	for (int i = 0;; i ^= 1) {
		struct chunk *k = &rd->chunk[i];
		nng_mtx_lock(rd->mu);
		while (k->ready && !rd->stop)
			nng_cv_wait(rd->cv);
		bool stop = rd->stop;
		nng_mtx_unlock(rd->mu);
		if (stop)
			break;
		fill_chunk(rd, k);
		nng_mtx_lock(rd->mu);
		k->ready = true;
		nng_cv_wake(rd->cv);
		nng_mtx_unlock(rd->mu);
		if (k->end || atomic_load(&rd->cancel))
			break;
	}
	nng_mtx_lock(rd->mu);
	rd->done = true;
	nng_cv_wake(rd->cv);
	nng_mtx_unlock(rd->mu);
	return NULL;
}

/* Waits up to ms for chunk k to be filled; whether it is. */
static bool
chunk_wait(struct reader *rd, struct chunk *k, int ms)
{
	nng_time until = nng_clock() + (nng_time)ms;
	nng_mtx_lock(rd->mu);
	while (!k->ready && nng_cv_until(rd->cv, until) != NNG_ETIMEDOUT)
		;
	bool ready = k->ready;
	nng_mtx_unlock(rd->mu);
	return ready;
}

static void
chunk_done(struct reader *rd, struct chunk *k)
{
	nng_mtx_lock(rd->mu);
	k->ready = false;
	nng_cv_wake(rd->cv);
	nng_mtx_unlock(rd->mu);
}

static struct reader *
reader_start(size_t max_line)
{
	struct reader *rd = calloc(1, sizeof(*rd));
	if (rd == NULL || evk_lines_init(&rd->r, STDIN_FILENO, max_line) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	rd->max_line = max_line;
	rd->r.cancel = &rd->cancel;
	for (int i = 0; i < 2; i++)
		rd->chunk[i].arena = (struct evk_buf)EVK_BUF_INIT(0);
	if (nng_mtx_alloc(&rd->mu) != 0 || nng_cv_alloc(&rd->cv, rd->mu) != 0 ||
	    pthread_create(&rd->thread, NULL, reader_run, rd) != 0)
		evk_die(EVK_EX_FAIL, "cannot start the input thread");
	return rd;
}

/* Stops the reader thread, also when it waits for input that may never
 * come: its read is cut short by SIGURG (caught by on_urgent, blocked in
 * every other thread) until it is done. The chunks it filled stay, to be
 * taken. */
static void
reader_halt(struct reader *rd)
{
	nng_mtx_lock(rd->mu);
	rd->stop = true;
	atomic_store(&rd->cancel, 1);
	nng_cv_wake(rd->cv);
	while (!rd->done) {
		/* Again and again: a signal that lands just before the read
		 * starts does not interrupt it. */
		pthread_kill(rd->thread, SIGURG);
		nng_cv_until(rd->cv, nng_clock() + 10);
	}
	nng_mtx_unlock(rd->mu);
	pthread_join(rd->thread, NULL);
}

static void
reader_free(struct reader *rd)
{
	evk_lines_release(&rd->r);
	for (int i = 0; i < 2; i++)
		evk_buf_release(&rd->chunk[i].arena);
	nng_cv_free(rd->cv);
	nng_mtx_free(rd->mu);
	free(rd);
}

static const char *
arena_text(const struct chunk *k, size_t at)
{
	return at == NO_TEXT ? NULL : k->arena.p + at;
}

/* What read_cases keeps across chunks. */
struct intake {
	enum upsert mode;
	long *created, *synced, *bad;
	int n_txn;            /* cases in the open transaction */
	unsigned long lineno; /* of the line last taken */
	bool stop;            /* --strict met a bad line */
	struct progress pg;
};

/* Writes the cases of chunk k; returns how its input ended (0: more to
 * come). */
static int
take_chunk(struct ctx *c, struct intake *t, struct chunk *k)
{
	char why[512];
	for (size_t i = 0; i < k->n && !t->stop; i++) {
		const struct entry *e = &k->e[i];
		t->lineno = e->lineno;
		if ((t->lineno & 255) == 0)
			progress_draw(&t->pg, t->lineno, *t->created, *t->synced, *t->bad);
		why[0] = '\0';
		if (e->why != NO_TEXT) {
			snprintf(why, sizeof(why), "%s", arena_text(k, e->why));
		} else {
			struct input in = e->in;
			const char **tx[INPUT_TEXTS];
			input_texts(&in, tx);
			for (int n = 0; n < INPUT_TEXTS; n++)
				*tx[n] = arena_text(k, e->text[n]);
			if (!c->in_txn) {
				begin(c);
				c->in_txn = true;
			}
			t->n_txn++;
			const struct agency *ag = agency_get(c, in.agency);
			char id[37] = "";
			struct evk_case v;
			/* create refuses a taken reference before it writes
			 * anything (an offender included); ingest finds out
			 * on insert, the common case being a new one. */
			if (t->mode == UP_CREATE_ONLY)
				find_case(c, ag->id, in.reference, id);
			if (id[0] == '\0' && create_case(c, ag, &in, id, &v)) {
				(*t->created)++;
				if (t->mode == UP_CREATE_ONLY)
					print_case(c, &v, NULL);
			} else if (t->mode == UP_CREATE_ONLY) {
				snprintf(why, sizeof(why), "case %s of %s exists (id %s)",
					 in.reference, in.agency, id);
			} else {
				apply_fields(c, id, &in, true);
				if (!announce(c, id, "sync", "synced", false))
					db_die(c, "cannot read the case back");
				(*t->synced)++;
			}
		}
		if (why[0]) {
			progress_clear(&t->pg);
			evk_warn("stdin:%lu: %s", t->lineno, why);
			(*t->bad)++;
			t->stop = c->strict;
		}
		if (c->in_txn && (t->n_txn >= c->txn_cases || c->batch.len >= BATCH_BYTES)) {
			commit(c, true);
			t->n_txn = 0;
		}
	}
	return t->stop ? 0 : k->end;
}

static int
read_cases(struct ctx *c, enum upsert mode, long *created, long *synced, long *bad)
{
	struct intake t = {
		.mode = mode, .created = created, .synced = synced, .bad = bad,
		.pg = { .tty = mode == UP_INGEST && isatty(STDERR_FILENO) == 1,
			.start = evk_mono_ms() },
	};
	struct reader *rd = reader_start(c->max_line);
	int end = 0, err = 0, j = 0;

	t.pg.next = t.pg.start + PROGRESS_AFTER_MS;
	while (!end && !t.stop && !stopping) {
		struct chunk *k = &rd->chunk[j];
		/* A producer that pauses (a scraper between pages) sees what it
		 * sent committed and announced then, not a batch later. While
		 * waiting, the progress line stays current and a signal stops
		 * the reading. */
		if (!chunk_wait(rd, k, c->in_txn ? INGEST_IDLE_MS : PROGRESS_EVERY_MS)) {
			if (c->in_txn) {
				commit(c, false);
				t.n_txn = 0;
			}
			progress_draw(&t.pg, t.lineno, *created, *synced, *bad);
			continue;
		}
		end = take_chunk(c, &t, k);
		err = k->err;
		chunk_done(rd, k);
		j ^= 1;
	}
	reader_halt(rd);
	/* Stopped by a signal: what the reader had parsed is taken too (at
	 * most its two chunks, in order); the rest of the input is not. */
	for (int n = 0; n < 2 && !end && !t.stop && rd->chunk[j].ready; n++, j ^= 1) {
		end = take_chunk(c, &t, &rd->chunk[j]);
		err = rd->chunk[j].err;
	}
	reader_free(rd);
	progress_clear(&t.pg);
	if (stopping && end != EVK_LINE_EOF && !t.stop)
		c->interrupted = stopping;
	/* What was taken is kept, also when the input failed after it. */
	if (c->in_txn)
		commit(c, false);
	if (end == EVK_LINE_ERR)
		evk_die(EVK_EX_IOERR, "stdin: read error after line %lu: %s (the cases before it "
			"are stored and announced)", t.lineno, strerror(err));
	return 0;
}

/* Reads cases from stdin in batched transactions, delivering their
 * notifications as it goes, with checkpoints off the writer's path. */
static void
ingest(struct ctx *c, enum upsert mode, long *created, long *synced, long *bad)
{
	const char *why;
	struct evk_checkpointer *ck = evk_checkpointer_start(c->db.sq, c->db.path, &why);
	/* Room for a whole batch in the page cache: pages spilled before the
	 * commit would be written to the WAL twice. */
	exec(c, "PRAGMA cache_size=-32768");
	evk_outbox_live_start(c->outbox);
	read_cases(c, mode, created, synced, bad);
	evk_outbox_live_stop(c->outbox);
	evk_checkpointer_stop(ck);
}

/* ---- commands ---- */

static int
cmd_create(struct ctx *c, int argc, char **argv)
{
	long created = 0, synced = 0, bad = 0;
	require(c, ROLE_EDITOR, "create cases");
	if (argc > 1)
		usage(stderr, EVK_EX_USAGE);
	if (argc == 1) {
		char why[512] = "";
		struct input in;
		cJSON *o = cJSON_Parse(argv[0]);
		if (o == NULL)
			evk_die(EVK_EX_DATAERR, "the case is not valid JSON");
		if (!parse_input(o, &in, false, why, sizeof(why)))
			evk_die(EVK_EX_DATAERR, "%s", why);
		begin(c);
		const struct agency *ag = agency_get(c, in.agency);
		char id[37];
		find_case(c, ag->id, in.reference, id);
		if (id[0])
			evk_die(EVK_EX_DATAERR, "case %s of %s exists (id %s)", in.reference,
				in.agency, id);
		struct evk_case v;
		if (!create_case(c, ag, &in, id, &v))
			evk_die(EVK_EX_FAIL, "case %s of %s appeared while being created",
				in.reference, in.agency);
		commit(c, false);
		print_case(c, &v, NULL);
		cJSON_Delete(o);
	} else {
		ingest(c, UP_CREATE_ONLY, &created, &synced, &bad);
	}
	fflush(stdout);
	outbox_flush(c, false);
	return c->interrupted ? 128 + c->interrupted : bad ? EVK_EX_DATAERR : 0;
}

static int
cmd_ingest(struct ctx *c, int argc, char **argv)
{
	long created = 0, synced = 0, bad = 0;
	(void)argv;
	require(c, ROLE_EDITOR, "ingest cases");
	if (argc > 0)
		usage(stderr, EVK_EX_USAGE);
	ingest(c, UP_INGEST, &created, &synced, &bad);
	fprintf(stderr, "casectl: ingested %ld: %ld created, %ld synced, %ld rejected%s\n",
		created + synced, created, synced, bad,
		c->interrupted ? " (interrupted: the rest of the input was not read)" : "");
	outbox_flush(c, false);
	return c->interrupted ? 128 + c->interrupted : bad ? EVK_EX_DATAERR : 0;
}

static int
cmd_get(struct ctx *c, int argc, char **argv)
{
	require(c, ROLE_VIEWER, "read cases");
	if (argc != 1)
		usage(stderr, EVK_EX_USAGE);
	if (!case_with(c, argv[0], print_case, NULL))
		evk_die(EVK_EX_FAIL, "no case '%s'", argv[0]);
	outbox_flush(c, true);
	return 0;
}

/* query's callback: one case appended to c->out, as a JSON line or as
 * an element of the array. */
struct listing {
	struct ctx *c;
	bool array;
	long n;
};

static int
list_case(void *arg, const struct evk_case *v)
{
	struct listing *l = arg;
	struct evk_buf *out = &l->c->out;
	if ((l->array && evk_buf_addch(out, l->n++ == 0 ? '[' : ',')) ||
	    evk_case_write(out, v) != EVK_OK || (!l->array && evk_buf_addch(out, '\n')))
		evk_die(EVK_EX_FAIL, "out of memory");
	return EVK_OK;
}

/* Runs the list query, newest change first unless sorted, and leaves
 * the cases in c->out: as JSON lines, or as one JSON array when array. */
static void
query(struct ctx *c, bool array)
{
	struct evk_case_filter f = { .agency = c->agency, .offender = c->offender,
				     .since = c->since, .sort = c->sort, .limit = c->limit };
	struct listing l = { .c = c, .array = array };
	evk_buf_reset(&c->out);
	int rv = evk_cases_list(c->db.sq, &f, list_case, &l);
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		db_die(c, "cannot list cases");
	if (array && evk_buf_add(&c->out, l.n ? "]\n" : "[]\n", l.n ? 2 : 3))
		evk_die(EVK_EX_FAIL, "out of memory");
}

static int
cmd_list(struct ctx *c, int argc, char **argv)
{
	(void)argv;
	require(c, ROLE_VIEWER, "read cases");
	if (argc > 0)
		usage(stderr, EVK_EX_USAGE);
	query(c, false);
	put_text(&c->out);
	outbox_flush(c, true);
	return 0;
}

static int
cmd_update(struct ctx *c, int argc, char **argv)
{
	char why[512] = "";
	struct input in;

	require(c, ROLE_EDITOR, "update cases");
	if (argc != 1 && argc != 2)
		usage(stderr, EVK_EX_USAGE);
	bool sync = argc == 1;
	cJSON *o = sync ? cJSON_CreateObject() : cJSON_Parse(argv[1]);
	if (o == NULL)
		evk_die(EVK_EX_DATAERR, "the changes are not valid JSON");
	if (!parse_input(o, &in, true, why, sizeof(why)))
		evk_die(EVK_EX_DATAERR, "%s", why);
	begin(c);
	apply_fields(c, argv[0], &in, sync);
	/* No row, no change: exiting leaves the transaction uncommitted. */
	if (!announce(c, argv[0], sync ? "sync" : "update", sync ? "synced" : "updated", true))
		evk_die(EVK_EX_FAIL, "no case '%s'", argv[0]);
	commit(c, false);
	put_text(&c->out);
	cJSON_Delete(o);
	fflush(stdout);
	outbox_flush(c, false);
	return 0;
}

static int
cmd_destroy(struct ctx *c, int argc, char **argv)
{
	require(c, ROLE_ADMIN, "destroy cases");
	if (argc != 1)
		usage(stderr, EVK_EX_USAGE);
	begin(c);
	if (!announce(c, argv[0], "destroy", "destroyed", true))
		evk_die(EVK_EX_FAIL, "no case '%s'", argv[0]);
	sqlite3_stmt *st = prepare(c, "DELETE FROM cases WHERE id = ?");
	bind_text(c, st, 1, argv[0]);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot delete the case");
	done(st);
	commit(c, false);
	put_text(&c->out);
	fflush(stdout);
	outbox_flush(c, false);
	return 0;
}

static int
cmd_outbox(struct ctx *c, int argc, char **argv)
{
	if (argc != 1)
		usage(stderr, EVK_EX_USAGE);
	if (strcmp(argv[0], "list") == 0) {
		require(c, ROLE_VIEWER, "read the outbox");
		sqlite3_int64 damaged;
		int rv = evk_outbox_each(c->outbox, print_line, NULL, &damaged);
		if (damaged)
			evk_die(EVK_EX_DATAERR, "outbox row %lld is damaged (neither event lines"
				" nor notes)", (long long)damaged);
		outbox_check(c, rv);
		return 0;
	}
	if (strcmp(argv[0], "flush") == 0) {
		require(c, ROLE_EDITOR, "flush the outbox");
		long pending = outbox_flush(c, false);
		return c->damaged_row ? EVK_EX_DATAERR : pending ? EVK_EX_UNAVAILABLE : 0;
	}
	usage(stderr, EVK_EX_USAGE);
	return EVK_EX_USAGE;
}

static int
cmd_user(struct ctx *c, int argc, char **argv, const char *role)
{
	require(c, ROLE_ADMIN, "manage users");
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		sqlite3_stmt *st = prepare(c, "SELECT name, role FROM users ORDER BY name");
		while (sqlite3_step(st) == SQLITE_ROW) {
			evk_buf_reset(&c->out);
			if (evk_buf_add(&c->out, "{\"name\":", 8) ||
			    evk_case_add_text(&c->out, (const char *)sqlite3_column_text(st, 0)) ||
			    evk_buf_add(&c->out, ",\"role\":", 8) ||
			    evk_case_add_text(&c->out, (const char *)sqlite3_column_text(st, 1)) ||
			    evk_buf_add(&c->out, "}\n", 2))
				evk_die(EVK_EX_FAIL, "out of memory");
			put_text(&c->out);
		}
		done(st);
		return 0;
	}
	if (argc != 2 || strcmp(argv[0], "add") != 0 || role == NULL)
		usage(stderr, EVK_EX_USAGE);
	if (strcmp(role, "admin") && strcmp(role, "editor") && strcmp(role, "viewer"))
		evk_die(EVK_EX_USAGE, "unknown role '%s' (admin, editor, viewer)", role);
	sqlite3_stmt *st = prepare(c, "INSERT INTO users (name, role) VALUES (?, ?)"
				      " ON CONFLICT (name) DO UPDATE SET role = excluded.role");
	bind_text(c, st, 1, argv[1]);
	bind_text(c, st, 2, role);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot add the user");
	done(st);
	return 0;
}

static int
cmd_init(struct ctx *c, const char *admin)
{
	if (admin == NULL)
		evk_die(EVK_EX_USAGE, "init needs --admin NAME");
	sqlite3_stmt *st = prepare(c, "SELECT count(*) FROM users");
	int users = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	done(st);
	if (users > 0)
		require(c, ROLE_ADMIN, "add an admin to an existing database");
	st = prepare(c, "INSERT OR IGNORE INTO users (name, role) VALUES (?, 'admin')");
	bind_text(c, st, 1, admin);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot add the admin");
	done(st);
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !cJSON_AddStringToObject(o, "db", c->db.path) ||
	    !cJSON_AddStringToObject(o, "admin", admin))
		evk_die(EVK_EX_FAIL, "out of memory");
	print_json(o);
	cJSON_Delete(o);
	return 0;
}

/* watch: the list, then again after case events, at most once per window,
 * the last change always included (a throttle with a trailing edge). */
struct watch {
	struct ctx *c;
	long printed;
};

static int
rerun(void *arg, const char *line, size_t len)
{
	struct watch *w = arg;
	(void)line;
	(void)len;
	query(w->c, true);
	put_text(&w->c->out);
	if (fflush(stdout) != 0)
		return -1;
	w->printed++;
	return w->c->count && w->printed >= w->c->count ? -1 : 0;
}

static int
cmd_watch(struct ctx *c, int argc, char **argv)
{
	struct evk_sub *sub;
	struct evk_event ev;
	struct watch w = { .c = c };
	int rv;

	(void)argv;
	require(c, ROLE_VIEWER, "watch cases");
	if (argc > 0)
		usage(stderr, EVK_EX_USAGE);
	/* Subscribe first: no change after the first result is missed. */
	if ((rv = evk_sub_open(&sub, c->url, EVK_SINCE_LIVE)) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", c->url, evk_strerror(rv));
	struct evk_gate *g = evk_gate_new(EVK_GATE_THROTTLE, c->refetch_ms, 1, 4096);
	if (g == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rerun(&w, NULL, 0) != 0)
		goto out;
	while (!stopping) {
		long long now = evk_mono_ms(), due = evk_gate_next_due(g);
		if (evk_gate_tick(g, now, rerun, &w) != 0)
			break;
		int wait = due < 0 ? 200 : due > now ? (int)(due - now) : 0;
		if (wait > 200)
			wait = 200;
		rv = evk_sub_next(sub, &ev, wait);
		if (rv == EVK_ETIMEDOUT || rv == EVK_EGAP)
			continue;
		if (rv != EVK_OK) {
			evk_warn("lost the hub at '%s': %s", c->url, evk_strerror(rv));
			break;
		}
		if (!evk_pattern_match("case:*", ev.topic, ev.topic_len))
			continue;
		if (evk_gate_offer(g, "case", 4, ev.seq, "x", 1, evk_mono_ms(), rerun, &w) != 0)
			break;
	}
out:
	evk_gate_free(g);
	evk_sub_close(sub);
	return 0;
}

static void
default_actor(struct ctx *c)
{
	const char *a = getenv("CASECTL_ACTOR");
	if (a == NULL || !*a) {
		struct passwd *pw = getpwuid(geteuid());
		a = pw ? pw->pw_name : "unknown";
	}
	snprintf(c->actor, sizeof(c->actor), "%s", a);
}

static const struct option longopts[] = {
	{ "db", required_argument, NULL, 'd' },
	{ "bus", required_argument, NULL, 'b' },
	{ "actor", required_argument, NULL, 'a' },
	{ "admin", required_argument, NULL, 'A' },
	{ "role", required_argument, NULL, 'r' },
	{ "agency", required_argument, NULL, 'g' },
	{ "offender", required_argument, NULL, 'o' },
	{ "since", required_argument, NULL, 's' },
	{ "sort", required_argument, NULL, 'S' },
	{ "limit", required_argument, NULL, 'l' },
	{ "refetch-window", required_argument, NULL, 'w' },
	{ "count", required_argument, NULL, 'n' },
	{ "strict", no_argument, NULL, 'T' },
	{ "max-line", required_argument, NULL, 'm' },
	{ "batch", required_argument, NULL, 'B' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ 0 },
};

struct extra {
	const char *admin, *role;
};

/* Options go before or after the command: `casectl --db F list --agency hse`. */
static void
parse_opts(struct ctx *c, struct extra *x, int argc, char **argv, const char *spec)
{
	int ch;
	while ((ch = getopt_long(argc, argv, spec, longopts, NULL)) != -1) {
		char *end;
		long long v;
		switch (ch) {
		case 'd': c->db_path = optarg; break;
		case 'b': c->bus = optarg; break;
		case 'a': snprintf(c->actor, sizeof(c->actor), "%s", optarg); break;
		case 'A': x->admin = optarg; break;
		case 'r': x->role = optarg; break;
		case 'g': c->agency = optarg; break;
		case 'o': c->offender = optarg; break;
		case 's': c->since = optarg; break;
		case 'S':
			if (evk_case_sort_column(optarg) == NULL)
				evk_die(EVK_EX_USAGE, "cannot sort by '%s'", optarg);
			c->sort = optarg;
			break;
		case 'l':
		case 'w':
		case 'n':
		case 'm':
		case 'B':
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (*optarg == '\0' || *end || errno || v <= 0)
				evk_die(EVK_EX_USAGE, "'%s' is not a positive whole number", optarg);
			if (ch == 'l')
				c->limit = (long)v;
			else if (ch == 'w')
				c->refetch_ms = v;
			else if (ch == 'n')
				c->count = (long)v;
			else if (ch == 'B' && v > INGEST_TXN_MAX)
				evk_die(EVK_EX_USAGE, "--batch: at most %d cases per transaction",
					INGEST_TXN_MAX);
			else if (ch == 'B')
				c->txn_cases = (long)v;
			else
				c->max_line = (size_t)v;
			break;
		case 'T': c->strict = true; break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("casectl %s\n", EVK_VERSION); exit(0);
		default: usage(stderr, EVK_EX_USAGE);
		}
	}
}

int
main(int argc, char **argv)
{
	struct ctx c = { .limit = 100, .refetch_ms = 5000, .max_line = LINE_MAX_DEFAULT,
			 .txn_cases = INGEST_TXN };
	struct extra x = { 0 };
	const char *why;

	evk_set_progname(argv[0]);
	/* An ingest parses each input line into some 20 small cJSON blocks
	 * and frees them again: they are reused instead of going back to
	 * malloc. cJSON is used by one thread at a time: this one, except
	 * while an ingest's input thread runs (it parses; this thread does
	 * not touch cJSON until it has joined it). The sender and the
	 * checkpointer threads never call it. The kept blocks are freed at
	 * the end of main, not by exit(), which another thread's evk_die
	 * may call while the input thread parses. */
	evk_jsonmem_install();
	default_actor(&c);
	parse_opts(&c, &x, argc, argv, "+n:h");
	if (optind >= argc) {
		evk_warn("no command given");
		usage(stderr, EVK_EX_USAGE);
	}
	const char *cmd = argv[optind];
	/* The command's own arguments and options: argv[optind..] with the
	 * command in the place of the program name. */
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	optind = 0; /* glibc: start over, permuting again */
	parse_opts(&c, &x, sub_argc, sub_argv, "n:h");
	char **args = sub_argv + optind;
	int nargs = sub_argc - optind;

	if (evk_bus_resolve(c.bus, c.url, sizeof(c.url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address: %s", why);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* SIGURG is for the ingest's input thread alone (reader_halt): blocked
	 * here, so in every thread started from here on but that one. */
	sigset_t urgent;
	sigemptyset(&urgent);
	sigaddset(&urgent, SIGURG);
	pthread_sigmask(SIG_BLOCK, &urgent, NULL);
	sa.sa_handler = on_urgent;
	sigaction(SIGURG, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	static const char *const known[] = { "init", "user", "create", "get", "list",
					     "update", "sync", "destroy", "ingest",
					     "outbox", "watch", NULL };
	int k = 0;
	while (known[k] && strcmp(known[k], cmd) != 0)
		k++;
	if (known[k] == NULL)
		evk_die(EVK_EX_USAGE, "unknown command '%s' (see casectl --help)", cmd);

	open_db(&c, strcmp(cmd, "init") == 0);
	if (evk_outbox_open(&c.outbox, c.db.sq, c.url, expand_note) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	c.role = role_of(&c, c.actor);
	int status;
	if (strcmp(cmd, "init") == 0)
		status = cmd_init(&c, x.admin);
	else if (strcmp(cmd, "user") == 0)
		status = cmd_user(&c, nargs, args, x.role);
	else if (strcmp(cmd, "create") == 0)
		status = cmd_create(&c, nargs, args);
	else if (strcmp(cmd, "get") == 0)
		status = cmd_get(&c, nargs, args);
	else if (strcmp(cmd, "list") == 0)
		status = cmd_list(&c, nargs, args);
	else if (strcmp(cmd, "update") == 0 || strcmp(cmd, "sync") == 0) {
		if (nargs != (strcmp(cmd, "update") == 0 ? 2 : 1))
			usage(stderr, EVK_EX_USAGE);
		status = cmd_update(&c, nargs, args);
	} else if (strcmp(cmd, "destroy") == 0)
		status = cmd_destroy(&c, nargs, args);
	else if (strcmp(cmd, "ingest") == 0)
		status = cmd_ingest(&c, nargs, args);
	else if (strcmp(cmd, "outbox") == 0)
		status = cmd_outbox(&c, nargs, args);
	else
		status = cmd_watch(&c, nargs, args);
	for (size_t i = 0; i < c.n_agencies; i++) {
		free(c.agencies[i].code);
		free(c.agencies[i].name);
	}
	evk_buf_release(&c.out);
	evk_buf_release(&c.key);
	evk_buf_release(&c.batch);
	evk_outbox_close(c.outbox);
	evk_buf_release(&c.off.name);
	evk_buf_release(&c.off.postcode);
	if (evk_db_close(&c.db) != EVK_OK)
		evk_warn("%s", evk_db_error(&c.db));
	if (fclose(stdout) != 0 && status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	evk_jsonmem_release();
	return status;
}
