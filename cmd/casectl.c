/* casectl — the enforcement `case` resource in SQLite; every committed
 * action is announced on the bus through an outbox written in the same
 * transaction (Ash resource + Ash.Notifier.PubSub). */
#include "evkit/tls.h"
#include "evkit/buf.h"
#include "evkit/bus.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/gate.h"
#include "evkit/jsonmem.h"
#include "evkit/lines.h"
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
#define OUTBOX_CHUNK 4096             /* notifications per delivery round */
#define BATCH_BYTES (8u << 20)        /* ingest commits past this much to announce */
#define AGENCY_CACHE 64               /* agencies a process remembers */

enum role { ROLE_NONE, ROLE_VIEWER, ROLE_EDITOR, ROLE_ADMIN };

struct ctx {
	sqlite3 *db;
	const char *db_path;
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
	struct evk_buf out, payload, key, line;
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
	/* ingest: a write transaction is open; delivering as we go (live)
	 * with the open transaction's notifications in batch, and those of
	 * the last commit sent and awaiting their acks */
	bool in_txn, live;
	struct sender *sender;
	struct evk_buf batch;
	sqlite3_int64 batch_n, sent_row;
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
		EVK_TLS_USAGE
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
	evk_die(EVK_EX_UNAVAILABLE, "%s: %s", what, sqlite3_errmsg(c->db));
}

static sqlite3_stmt *
prepare(struct ctx *c, const char *sql)
{
	sqlite3_stmt *st = evk_store_stmt(c->db, sql);
	if (st == NULL)
		db_die(c, "cannot prepare a query");
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
	if (evk_store_exec(c->db, sql) != EVK_OK)
		db_die(c, sql);
}

/* BEGIN IMMEDIATE, retried while another casectl holds the lock beyond the
 * busy timeout. */
static void
begin(struct ctx *c)
{
	if (evk_store_begin(c->db) != EVK_OK)
		db_die(c, "cannot start a transaction");
}

/* ---- schema ---- */

static const char *const migrations[] = {
	"CREATE TABLE agencies (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,"
	" name TEXT NOT NULL);"
	"CREATE TABLE offenders (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
	" postcode TEXT, match_key TEXT NOT NULL UNIQUE);"
	"CREATE TABLE cases (id TEXT PRIMARY KEY,"
	" agency_id INTEGER NOT NULL REFERENCES agencies(id),"
	" case_reference TEXT NOT NULL,"
	" offender_id INTEGER REFERENCES offenders(id),"
	" offence_action_date TEXT, offence_fine REAL, offence_costs REAL,"
	" offence_result TEXT, inserted_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
	" last_synced_at TEXT, UNIQUE (agency_id, case_reference));"
	"CREATE INDEX cases_updated ON cases(updated_at);"
	"CREATE TABLE users (name TEXT PRIMARY KEY,"
	" role TEXT NOT NULL CHECK (role IN ('admin','editor','viewer')));"
	"CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL,"
	" action TEXT NOT NULL, past TEXT NOT NULL, case_id TEXT NOT NULL,"
	" payload TEXT NOT NULL);",
	/* 2: an outbox row holds the ready event lines of one transaction
	 * (count of them, each ending in a newline): a long ingest writes one
	 * row per batch instead of one per case. */
	"CREATE TABLE outbox2 (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" count INTEGER NOT NULL, lines BLOB NOT NULL);"
	"INSERT INTO outbox2 (count, lines) SELECT 2,"
	" '{\"ts\":\"' || ts || '\",\"topic\":\"case:' || past || '\",\"event\":\"' || action"
	" || '\",\"payload\":' || payload || '}' || char(10) ||"
	" '{\"ts\":\"' || ts || '\",\"topic\":\"case:' || past || ':' || case_id"
	" || '\",\"event\":\"' || action || '\",\"payload\":' || payload || '}' || char(10)"
	" FROM outbox ORDER BY id;"
	"DROP TABLE outbox;"
	"ALTER TABLE outbox2 RENAME TO outbox;",
	/* 3: the outbox moves to table notifications, whose rows may hold
	 * notes instead of lines (format 3): one per notification,
	 * "ts\taction\tpast\tid\tpayload\n", expanded into its two event
	 * lines when sent; half the bytes to write. Table outbox goes, so an
	 * older casectl stops at it instead of sending notes as lines. */
	"CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" count INTEGER NOT NULL, lines BLOB NOT NULL, format INTEGER NOT NULL);"
	"INSERT INTO notifications (id, count, lines, format)"
	" SELECT id, count, lines, 2 FROM outbox ORDER BY id;"
	"DROP TABLE outbox;",
	/* 4: how many of a row's event lines the hub already acknowledged:
	 * a delivery cut short resumes after them instead of sending them
	 * again. */
	"ALTER TABLE notifications ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;",
	/* 5: rows may hold notes of format 4 (values without member names,
	 * the payload built when sent). The table is renamed so that an
	 * older casectl stops at it instead of sending such notes as they
	 * are; its rows keep their own format. */
	"ALTER TABLE notifications RENAME TO notes;",
};

static void
open_db(struct ctx *c, bool create)
{
	static char def[4096]; /* the default path lives as long as c */
	const char *why;

	if (c->db_path == NULL) {
		if (evk_store_default_path("cases.db", def, sizeof(def)) != EVK_OK)
			evk_die(EVK_EX_USAGE, "no --db given and no HOME or XDG_STATE_HOME");
		c->db_path = def;
	}
	if (!create && access(c->db_path, F_OK) != 0)
		evk_die(EVK_EX_UNAVAILABLE, "no database at '%s' (run: casectl init --admin NAME)",
			c->db_path);
	if (evk_store_open(c->db_path, &c->db, &why) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open database '%s': %s", c->db_path, why);
	if (evk_store_migrate(c->db, migrations, (int)(sizeof(migrations) / sizeof(migrations[0]))) != EVK_OK)
		db_die(c, "cannot set up the database");
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

#define CASE_SELECT                                                                   \
	"SELECT c.id, a.id, a.code, a.name, c.case_reference, o.id, o.name, o.postcode," \
	" c.offence_action_date, c.offence_fine, c.offence_costs, c.offence_result,"    \
	" c.inserted_at, c.updated_at, c.last_synced_at"                                \
	" FROM cases c JOIN agencies a ON a.id = c.agency_id"                           \
	" LEFT JOIN offenders o ON o.id = c.offender_id"

/* One case as casectl shows it, agency and offender loaded: the fields of a
 * CASE_SELECT row, or of a case just written (no read-back). A NULL
 * string is JSON null; offender_id 0 means no offender. */
struct case_view {
	const char *id, *reference, *agency_code, *agency_name;
	sqlite3_int64 agency_id, offender_id;
	const char *off_name, *off_postcode, *date, *result;
	bool has_fine, has_costs;
	double fine, costs;
	const char *inserted, *updated, *synced;
};

static void
view_from_row(sqlite3_stmt *st, struct case_view *v)
{
#define TEXT(i) ((const char *)sqlite3_column_text(st, (i)))
	*v = (struct case_view){
		.id = TEXT(0), .agency_id = sqlite3_column_int64(st, 1),
		.agency_code = TEXT(2), .agency_name = TEXT(3), .reference = TEXT(4),
		.offender_id = sqlite3_column_int64(st, 5), .off_name = TEXT(6),
		.off_postcode = TEXT(7), .date = TEXT(8),
		.has_fine = sqlite3_column_type(st, 9) != SQLITE_NULL,
		.fine = sqlite3_column_double(st, 9),
		.has_costs = sqlite3_column_type(st, 10) != SQLITE_NULL,
		.costs = sqlite3_column_double(st, 10), .result = TEXT(11),
		.inserted = TEXT(12), .updated = TEXT(13), .synced = TEXT(14),
	};
#undef TEXT
}

static int
add_text(struct evk_buf *b, const char *s)
{
	return s ? evk_buf_add_json_string(b, s, strlen(s)) : evk_buf_add(b, "null", 4);
}

/* A number printed as cJSON prints it, so every output agrees: whole
 * numbers within int as integers, else the shortest of 15 or 17 digits
 * that reads back the same. */
static int
add_number(struct evk_buf *b, bool has, double d)
{
	char s[32];
	if (!has || isnan(d) || isinf(d))
		return evk_buf_add(b, "null", 4);
	long long k = fabs(d) < 1e13 ? llround(d * 100) : 0;
	if (fabs(d) < 1e13 && (double)k / 100 == d) {
		/* Whole numbers and cents, most fines and costs, without
		 * printf: the text %d or %1.15g gives them. */
		char *e = s + sizeof(s), *q = e;
		unsigned long long u = (unsigned long long)llabs(k);
		unsigned cents = (unsigned)(u % 100);
		if (cents) {
			if (cents % 10 == 0)
				cents /= 10;
			else
				*--q = (char)('0' + cents % 10), cents /= 10;
			*--q = (char)('0' + cents);
			*--q = '.';
		}
		u /= 100;
		do
			*--q = (char)('0' + u % 10);
		while (u /= 10);
		if (k < 0)
			*--q = '-';
		return evk_buf_add(b, q, (size_t)(e - q));
	}
	if (d >= INT_MIN && d <= INT_MAX && d == (double)(int)d) {
		snprintf(s, sizeof(s), "%d", (int)d);
	} else {
		double back;
		snprintf(s, sizeof(s), "%1.15g", d);
		if (sscanf(s, "%lg", &back) != 1 || back != d)
			snprintf(s, sizeof(s), "%1.17g", d);
	}
	return evk_buf_addstr(b, s);
}

/* A case's members, in the order it is written as JSON, and the text
 * before each: ids, strings and numbers as JSON values. The offender's
 * three come as null when the case has none. */
#define CASE_VALUES 15
#define OFFENDER_ID 4 /* the index of the offender's id */
static const char *const case_keys[CASE_VALUES] = {
	"{\"id\":", ",\"agency\":{\"id\":", ",\"code\":", ",\"name\":",
	"},\"offender\":{\"id\":", ",\"name\":", ",\"postcode\":", "},\"case_reference\":",
	",\"offence_action_date\":", ",\"offence_fine\":", ",\"offence_costs\":",
	",\"offence_result\":", ",\"inserted_at\":", ",\"updated_at\":", ",\"last_synced_at\":",
};

/* Appends the case's CASE_VALUES members as JSON values, each after a
 * tab (which JSON text holds only escaped). */
static void
case_values(struct evk_buf *b, const struct case_view *v)
{
	bool off = v->offender_id != 0;
	bool ok = !evk_buf_addch(b, '\t') && !add_text(b, v->id) && !evk_buf_addch(b, '\t') &&
		  !evk_buf_add_u64(b, (uint64_t)v->agency_id) && !evk_buf_addch(b, '\t') &&
		  !add_text(b, v->agency_code) && !evk_buf_addch(b, '\t') &&
		  !add_text(b, v->agency_name) && !evk_buf_addch(b, '\t');
	if (ok && !off)
		ok = !evk_buf_add(b, "null\tnull\tnull", 14);
	else if (ok)
		ok = !evk_buf_add_u64(b, (uint64_t)v->offender_id) && !evk_buf_addch(b, '\t') &&
		     !add_text(b, v->off_name) && !evk_buf_addch(b, '\t') &&
		     !add_text(b, v->off_postcode);
	ok = ok && !evk_buf_addch(b, '\t') && !add_text(b, v->reference) &&
	     !evk_buf_addch(b, '\t') && !add_text(b, v->date) && !evk_buf_addch(b, '\t') &&
	     !add_number(b, v->has_fine, v->fine) && !evk_buf_addch(b, '\t') &&
	     !add_number(b, v->has_costs, v->costs) && !evk_buf_addch(b, '\t') &&
	     !add_text(b, v->result) && !evk_buf_addch(b, '\t') && !add_text(b, v->inserted) &&
	     !evk_buf_addch(b, '\t') && !add_text(b, v->updated) && !evk_buf_addch(b, '\t') &&
	     !add_text(b, v->synced);
	if (!ok)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* Appends the case whose values case_values wrote (without its first
 * tab: vals[0..len)) as one JSON object. EVK_EPROTO when vals does not
 * hold CASE_VALUES values. */
static int
case_layout(struct evk_buf *b, const char *vals, size_t len)
{
	const char *p = vals, *end = vals + len;
	bool no_offender = false;
	for (int i = 0; i < CASE_VALUES; i++) {
		const char *tab = memchr(p, '\t', (size_t)(end - p)), *v = p;
		if ((tab == NULL) != (i == CASE_VALUES - 1) || (tab ? tab : end) == v)
			return EVK_EPROTO;
		size_t n = (size_t)((tab ? tab : end) - v);
		const char *key = case_keys[i];
		p = tab ? tab + 1 : end;
		if (i == OFFENDER_ID)
			no_offender = n == 4 && memcmp(v, "null", 4) == 0;
		if (no_offender && i >= OFFENDER_ID && i < OFFENDER_ID + 3) {
			/* No offender object: its three values are null. */
			if (i == OFFENDER_ID && evk_buf_addstr(b, "},\"offender\":null") != EVK_OK)
				return EVK_ENOMEM;
			continue;
		}
		if (no_offender && i == OFFENDER_ID + 3)
			key++; /* no offender object to close */
		if (evk_buf_addstr(b, key) != EVK_OK || evk_buf_add(b, v, n) != EVK_OK)
			return EVK_ENOMEM;
	}
	return evk_buf_addch(b, '}');
}

/* Appends the case as one JSON object. */
static void
case_write(struct evk_buf *b, const struct case_view *v)
{
	struct evk_buf vals = EVK_BUF_INIT(0);
	case_values(&vals, v);
	if (case_layout(b, vals.p + 1, vals.len - 1) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	evk_buf_release(&vals);
}

/* Runs fn on the case id inside a CASE_SELECT; false when there is none. */
static bool
case_with(struct ctx *c, const char *id, void (*fn)(struct ctx *, const struct case_view *,
						    void *),
	  void *arg)
{
	sqlite3_stmt *st = prepare(c, CASE_SELECT " WHERE c.id = ?");
	struct case_view v;
	bind_text(c, st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		view_from_row(st, &v);
		fn(c, &v, arg);
	} else if (rc != SQLITE_DONE) {
		db_die(c, "cannot read a case");
	}
	done(st);
	return rc == SQLITE_ROW;
}

static void
put_text(const struct evk_buf *b)
{
	if (b->len && fwrite(b->p, 1, b->len, stdout) != b->len)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
}

/* Leaves the case in c->out as one JSON line. */
static void
print_case_to(struct ctx *c, const struct case_view *v)
{
	evk_buf_reset(&c->out);
	case_write(&c->out, v);
	if (evk_buf_addch(&c->out, '\n'))
		evk_die(EVK_EX_FAIL, "out of memory");
}

static void
print_case(struct ctx *c, const struct case_view *v, void *arg)
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
 * and written, just before COMMIT, as one outbox row of format 4. A note
 * "ts\taction\tpast\tid\tactor\tvalues\n" stands for the event lines
 * case:{past} and case:{past}:{id}, whose payload is built from it when
 * they are sent: actor and the case's values (case_values) are JSON text,
 * which holds no raw tab or newline. Without the member names a note is
 * half the bytes the payload would be, and every byte of a batch is
 * written to the WAL, then again by the checkpoint.
 * Older rows stay readable: notes of format 3 (written before schema 5)
 * carry the payload itself after the id; rows of format 2 (before
 * schema 3) hold the event lines. */
#define NOTE_FORMAT 4
#define NOTE_PAYLOAD 3 /* notes whose payload follows the id */
#define LINE_FORMAT 2

/* Queues the notification of one action on case v, payload {resource,
 * action, actor, data}. */
static void
notify(struct ctx *c, const char *action, const char *past, const struct case_view *v)
{
	char ts[EVK_TS_LEN + 1];
	now_ts(ts);
	struct evk_buf *b = &c->batch;
	if (evk_buf_add(b, ts, EVK_TS_LEN) || evk_buf_addch(b, '\t') || evk_buf_addstr(b, action) ||
	    evk_buf_addch(b, '\t') || evk_buf_addstr(b, past) || evk_buf_addch(b, '\t') ||
	    evk_buf_addstr(b, v->id) || evk_buf_addch(b, '\t') || add_text(b, c->actor))
		evk_die(EVK_EX_FAIL, "out of memory");
	case_values(b, v);
	if (evk_buf_addch(b, '\n'))
		evk_die(EVK_EX_FAIL, "out of memory");
	c->batch_n += 2;
}

/* The payload a note of format 4 stands for, from the text after its id
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
	    (rv = add_text(out, action)) != EVK_OK ||
	    (rv = evk_buf_add(out, ",\"actor\":", 9)) != EVK_OK ||
	    (rv = evk_buf_add(out, rest, (size_t)(tab - rest))) != EVK_OK ||
	    (rv = evk_buf_add(out, ",\"data\":", 8)) != EVK_OK ||
	    (rv = case_layout(out, tab + 1, n - (size_t)(tab + 1 - rest))) != EVK_OK)
		return rv;
	return evk_buf_addch(out, '}');
}

/* Calls fn on each event line (without its newline) an outbox row holds,
 * oldest first, skipping the first skip; line and payload are scratch.
 * Stops at and returns fn's first error. A row that holds neither lines
 * nor notes is EVK_EPROTO with *damaged set (fn's own errors leave it
 * false). */
static int
each_event(struct evk_buf *line, struct evk_buf *payload, const char *blob, size_t len,
	   int format, long skip, int (*fn)(void *, const char *, size_t), void *arg,
	   bool *damaged)
{
	*damaged = false;
	if (format != LINE_FORMAT && format != NOTE_PAYLOAD && format != NOTE_FORMAT)
		goto bad_row;
	for (const char *p = blob, *end = blob + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		int rv;
		if (nl == NULL)
			goto bad_row;
		if (format == LINE_FORMAT) {
			if (skip > 0)
				skip--;
			else if ((rv = fn(arg, p, (size_t)(nl - p))) != EVK_OK)
				return rv;
			p = nl + 1;
			continue;
		}
		/* ts, action, past, id: NUL-terminated copies; the payload or
		 * the values rest */
		char f[4][EVK_TOPIC_MAX + 1];
		for (int i = 0; i < 4; i++) {
			const char *tab = memchr(p, '\t', (size_t)(nl - p));
			if (tab == NULL || (size_t)(tab - p) > EVK_TOPIC_MAX)
				goto bad_row;
			memcpy(f[i], p, (size_t)(tab - p));
			f[i][tab - p] = '\0';
			p = tab + 1;
		}
		if (strlen(f[0]) != EVK_TS_LEN)
			goto bad_row;
		const char *pl = p;
		size_t pn = (size_t)(nl - p);
		if (format == NOTE_FORMAT) {
			if ((rv = note_payload(payload, f[1], p, pn)) == EVK_EPROTO)
				goto bad_row;
			if (rv != EVK_OK)
				evk_die(EVK_EX_FAIL, "out of memory");
			pl = payload->p;
			pn = payload->len;
		}
		for (int i = 0; i < 2; i++) {
			char topic[EVK_TOPIC_MAX + 1];
			const char *why = NULL;
			snprintf(topic, sizeof(topic), i ? "case:%s:%s" : "case:%s", f[2], f[3]);
			evk_buf_reset(line);
			if (evk_event_build_raw(line, f[0], topic, f[1], pl, pn, &why) != EVK_OK) {
				evk_warn("cannot build a notification: %s", why ? why : "");
				goto bad_row;
			}
			if (skip > 0)
				skip--;
			else if ((rv = fn(arg, line->p, line->len)) != EVK_OK)
				return rv;
		}
		p = nl + 1;
	}
	return EVK_OK;
bad_row:
	*damaged = true;
	return EVK_EPROTO;
}

/* notify_row's argument: the action, its past tense, and whether to keep
 * the case as a JSON line in c->out, to print once committed. */
struct announcement {
	const char *action, *past;
	bool keep;
};

static void
notify_row(struct ctx *c, const struct case_view *v, void *arg)
{
	const struct announcement *a = arg;
	notify(c, a->action, a->past, v);
	if (a->keep)
		print_case_to(c, v);
}

static int
publish_line(void *pub, const char *line, size_t len)
{
	return evk_pub_add(pub, line, len);
}

static int
print_line(void *arg, const char *line, size_t len)
{
	(void)arg;
	if (fwrite(line, 1, len, stdout) != len || putchar('\n') == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return EVK_OK;
}

/* publish_line, counting the lines the publisher took. */
struct counting {
	struct evk_pub *pub;
	long added;
};

static int
count_line(void *arg, const char *line, size_t len)
{
	struct counting *k = arg;
	int rv = evk_pub_add(k->pub, line, len);
	if (rv == EVK_OK)
		k->added++;
	return rv;
}

/* An outbox row in a delivery round: lines the hub had acknowledged
 * before (sent), lines given to the publisher now, and whether all of
 * the rest were. */
struct round_row {
	sqlite3_int64 id;
	long sent, added;
	bool whole;
};

/* After a delivery round: the hub acknowledged the first `acked` lines
 * given to the publisher, in order. Rows acknowledged whole leave; a row
 * acknowledged in part keeps its count of lines sent, so the next round
 * resumes after them instead of sending them again. */
static void
settle_round(struct ctx *c, const struct round_row *rows, long n, uint64_t acked)
{
	long i = 0;
	while (i < n && rows[i].whole && acked >= (uint64_t)rows[i].added)
		acked -= (uint64_t)rows[i++].added;
	sqlite3_stmt *st;
	if (i > 0) {
		st = prepare(c, "DELETE FROM notes WHERE id <= ?");
		sqlite3_bind_int64(st, 1, rows[i - 1].id);
		if (sqlite3_step(st) != SQLITE_DONE)
			db_die(c, "cannot clear the outbox");
		done(st);
	}
	if (i < n && acked > 0) {
		st = prepare(c, "UPDATE notes SET sent = ? WHERE id = ?");
		sqlite3_bind_int64(st, 1, rows[i].sent + (sqlite3_int64)acked);
		sqlite3_bind_int64(st, 2, rows[i].id);
		if (sqlite3_step(st) != SQLITE_DONE)
			db_die(c, "cannot update the outbox");
		done(st);
	}
}

/* Delivers the outbox, oldest first, each once: rows are deleted (or
 * their acknowledged part recorded) in the same write transaction that
 * published them (another casectl waits), so two processes never send the
 * same row. A line is sent again only when the hub went away between
 * storing it and acknowledging it. Returns how many notifications stay
 * pending; quiet == true when the hub being down is not worth a warning. */
static long
outbox_flush(struct ctx *c, bool quiet)
{
	struct evk_pub *pub = NULL;
	long pending = 0;
	bool more = true;
	sqlite3_int64 damaged = 0;
	struct round_row *rows = malloc(OUTBOX_CHUNK * sizeof(*rows));

	if (rows == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	while (more) {
		begin(c);
		sqlite3_stmt *st =
			prepare(c, "SELECT id, lines, format, sent FROM notes ORDER BY id");
		uint64_t acked0 = pub ? evk_pub_acked(pub) : 0;
		long n = 0;
		int rc;
		bool ok = true;
		while (n < OUTBOX_CHUNK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (pub == NULL && evk_pub_open(&pub, c->url, NULL, NULL) != EVK_OK) {
				pub = NULL;
				ok = false;
				break;
			}
			struct counting k = { pub, 0 };
			struct round_row *r = &rows[n++];
			bool bad;
			r->id = sqlite3_column_int64(st, 0);
			r->sent = (long)sqlite3_column_int64(st, 3);
			int rv = each_event(&c->line, &c->payload, sqlite3_column_blob(st, 1),
					    (size_t)sqlite3_column_bytes(st, 1),
					    sqlite3_column_int(st, 2), r->sent, count_line, &k, &bad);
			r->added = k.added;
			r->whole = rv == EVK_OK;
			if (rv != EVK_OK) {
				if (bad)
					damaged = r->id;
				ok = false;
				break;
			}
		}
		more = ok && n == OUTBOX_CHUNK;
		if (ok && n < OUTBOX_CHUNK && rc != SQLITE_DONE)
			ok = false;
		done(st);
		/* What the hub acknowledged goes, also when a later line could
		 * not be sent. */
		if (n > 0 && pub) {
			if (evk_pub_sync(pub) != EVK_OK)
				more = false;
			settle_round(c, rows, n, evk_pub_acked(pub) - acked0);
		} else {
			more = false;
		}
		exec(c, "COMMIT");
	}
	free(rows);
	evk_pub_close(pub);
	sqlite3_stmt *st = prepare(c, "SELECT coalesce(sum(count - sent), 0) FROM notes");
	if (sqlite3_step(st) == SQLITE_ROW)
		pending = (long)sqlite3_column_int64(st, 0);
	done(st);
	c->damaged_row = damaged;
	if (damaged)
		evk_warn("outbox row %lld is damaged (neither event lines nor notes): it and "
			 "the %ld notifications from it on stay in table notes of '%s'",
			 (long long)damaged, pending, c->db_path);
	else if (pending > 0 && !quiet)
		evk_warn("hub at '%s' unavailable: %ld notifications kept in the outbox "
			 "(delivered by the next casectl command or 'casectl outbox flush')",
			 c->url, pending);
	return pending;
}

/* ---- committing, and delivering while ingesting ----
 *
 * A long ingest hands each committed transaction's notifications to the
 * hub while it works on the next one, so the hub stores them while casectl
 * writes cases. Each step runs inside the next write transaction: no other
 * casectl can flush the outbox in between, so a row goes out once.
 *   COMMIT batch k; BEGIN; live_send(k); ...cases of k+1...;
 *   live_settle(k) (wait for the acks, delete k's row); COMMIT k+1.
 * The sending itself (notes expanded into event lines, framed, published,
 * acknowledged) runs on a thread of its own, so the writer does not wait
 * for it. The sender touches neither the database nor the ctx: it has its
 * own copy of the batch, its own scratch and the hub connection. */

struct sender {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct evk_pub *pub;
	struct evk_buf notes, line, payload;
	bool busy, stop;
	int rv;
	uint64_t acked; /* lines of the last batch the hub acknowledged */
};

static void *
sender_run(void *arg)
{
	struct sender *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->busy && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->mu);
		bool bad;
		uint64_t acked0 = evk_pub_acked(s->pub);
		int rv = each_event(&s->line, &s->payload, s->notes.p, s->notes.len, NOTE_FORMAT, 0,
				    publish_line, s->pub, &bad);
		int synced = evk_pub_sync(s->pub); /* also counts what did go */
		if (rv == EVK_OK)
			rv = synced;
		pthread_mutex_lock(&s->mu);
		s->rv = rv;
		s->acked = evk_pub_acked(s->pub) - acked0;
		s->busy = false;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Waits until the sender is idle; the outcome of its last batch, and how
 * many of its lines the hub acknowledged. */
static int
sender_wait(struct sender *s, uint64_t *acked)
{
	pthread_mutex_lock(&s->mu);
	while (s->busy)
		pthread_cond_wait(&s->cv, &s->mu);
	int rv = s->rv;
	*acked = s->acked;
	pthread_mutex_unlock(&s->mu);
	return rv;
}

/* Stops delivering as we go; what is left goes through outbox_flush. */
static void
live_stop(struct ctx *c)
{
	struct sender *s = c->sender;

	c->live = false;
	c->sent_row = 0;
	if (s == NULL)
		return;
	c->sender = NULL;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL); /* after its batch, if one was under way */
	evk_pub_close(s->pub);
	evk_buf_release(&s->notes);
	evk_buf_release(&s->line);
	evk_buf_release(&s->payload);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Starts delivering as we go when the outbox is empty (so nothing older
 * would be overtaken) and the hub answers. */
static void
live_start(struct ctx *c)
{
	struct sender *s;

	if (outbox_flush(c, true) != 0 || (s = calloc(1, sizeof(*s))) == NULL)
		return;
	s->notes = (struct evk_buf)EVK_BUF_INIT(0);
	s->line = (struct evk_buf)EVK_BUF_INIT(0);
	s->payload = (struct evk_buf)EVK_BUF_INIT(0);
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return;
	}
	if (pthread_cond_init(&s->cv, NULL) != 0) {
		pthread_mutex_destroy(&s->mu);
		free(s);
		return;
	}
	if (evk_pub_open(&s->pub, c->url, NULL, NULL) != EVK_OK ||
	    pthread_create(&s->thread, NULL, sender_run, s) != 0) {
		evk_pub_close(s->pub);
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return;
	}
	c->sender = s;
	c->live = true;
}

/* In the transaction after the batch's commit: hands the batch to the
 * sender when its row is still the oldest in the outbox (another casectl
 * may have flushed it in between, or left older ones). */
static void
live_send(struct ctx *c, sqlite3_int64 row)
{
	struct sender *s = c->sender;
	sqlite3_stmt *st = prepare(
		c, "SELECT count(*), min(id), max(sent) FROM notes WHERE id <= ?");
	sqlite3_bind_int64(st, 1, row);
	/* Untouched, too: a flush in between may have sent part of it. */
	bool ours = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == 1 &&
		    sqlite3_column_int64(st, 1) == row && sqlite3_column_int64(st, 2) == 0;
	done(st);
	if (!ours) {
		live_stop(c);
		return;
	}
	/* The sender is idle (settled before this commit): swap buffers. */
	struct evk_buf t = s->notes;
	s->notes = c->batch;
	c->batch = t;
	pthread_mutex_lock(&s->mu);
	s->busy = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	c->sent_row = row;
}

/* Before the commit: once the hub acknowledged what live_send handed
 * over, its row leaves the outbox in this transaction; when the hub went,
 * what it did acknowledge is recorded, not sent again. */
static void
live_settle(struct ctx *c)
{
	if (c->sent_row == 0)
		return;
	uint64_t acked;
	int rv = sender_wait(c->sender, &acked);
	struct round_row r = { .id = c->sent_row, .added = (long)acked, .whole = rv == EVK_OK };
	settle_round(c, &r, 1, acked);
	if (rv != EVK_OK)
		live_stop(c);
	c->sent_row = 0;
}

/* Commits the open transaction with its notifications as one outbox row
 * (settling the batch sent within it) and, while delivering as we go,
 * opens the next transaction and sends this batch. more == false: no
 * transaction is left open. */
static void
commit(struct ctx *c, bool more)
{
	sqlite3_int64 row = 0;
	if (c->batch_n > 0) {
		sqlite3_stmt *st =
			prepare(c, "INSERT INTO notes (count, lines, format) VALUES (?, ?, ?)");
		sqlite3_bind_int64(st, 1, c->batch_n);
		sqlite3_bind_int(st, 3, NOTE_FORMAT);
		if (sqlite3_bind_blob64(st, 2, c->batch.p, c->batch.len, SQLITE_STATIC) !=
			    SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_DONE)
			db_die(c, "cannot write the outbox");
		done(st);
		row = sqlite3_last_insert_rowid(c->db);
	}
	live_settle(c);
	exec(c, "COMMIT");
	c->in_txn = false;
	if (c->live && row) {
		begin(c);
		c->in_txn = true;
		live_send(c, row);
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
		a.id = sqlite3_last_insert_rowid(c->db);
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
	return o->id = sqlite3_last_insert_rowid(c->db);
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
	    struct case_view *v)
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
	if (sqlite3_changes(c->db) == 0) {
		find_case(c, a->id, in->reference, id);
		return false;
	}
	*v = (struct case_view){
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
			struct case_view v;
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
	struct evk_checkpointer *ck = evk_checkpointer_start(c->db, c->db_path, &why);
	/* Room for a whole batch in the page cache: pages spilled before the
	 * commit would be written to the WAL twice. */
	exec(c, "PRAGMA cache_size=-32768");
	live_start(c);
	read_cases(c, mode, created, synced, bad);
	live_stop(c);
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
		struct case_view v;
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

static const char *
sort_column(const char *f)
{
	static const char *const ok[] = { "inserted_at", "updated_at", "offence_action_date",
					  "offence_fine", "offence_costs", "case_reference",
					  "last_synced_at", NULL };
	for (int i = 0; ok[i]; i++)
		if (strcmp(ok[i], f) == 0)
			return ok[i];
	return NULL;
}

/* Runs the list query, newest change first unless sorted, and appends
 * each case to c->out: as JSON lines, or as one JSON array when array. */
static void
query(struct ctx *c, bool array)
{
	char sql[1024];
	const char *col = c->sort ? sort_column(c->sort) : "updated_at";
	snprintf(sql, sizeof(sql),
		 CASE_SELECT " WHERE (?1 IS NULL OR a.code = ?1)"
			     " AND (?2 IS NULL OR o.name LIKE '%%' || ?2 || '%%' ESCAPE '\\')"
			     " AND (?3 IS NULL OR c.updated_at >= ?3)"
			     " ORDER BY c.%s %s, c.id LIMIT ?4",
		 col, c->sort ? "ASC" : "DESC");
	sqlite3_stmt *st = prepare(c, sql);
	struct evk_buf esc = EVK_BUF_INIT(0);
	if (c->offender) {
		for (const char *p = c->offender; *p; p++) {
			if (*p == '%' || *p == '_' || *p == '\\')
				evk_buf_addch(&esc, '\\');
			evk_buf_addch(&esc, *p);
		}
		evk_buf_addch(&esc, '\0');
		if (esc.p == NULL)
			evk_die(EVK_EX_FAIL, "out of memory");
	}
	bind_text(c, st, 1, c->agency);
	bind_text(c, st, 2, c->offender ? esc.p : NULL);
	bind_text(c, st, 3, c->since);
	sqlite3_bind_int64(st, 4, c->limit);
	int rc, n = 0;
	evk_buf_reset(&c->out);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct case_view v;
		view_from_row(st, &v);
		if (array && evk_buf_addch(&c->out, n++ == 0 ? '[' : ','))
			evk_die(EVK_EX_FAIL, "out of memory");
		case_write(&c->out, &v);
		if (!array && evk_buf_addch(&c->out, '\n'))
			evk_die(EVK_EX_FAIL, "out of memory");
	}
	if (rc != SQLITE_DONE)
		db_die(c, "cannot list cases");
	if (array && evk_buf_add(&c->out, n ? "]\n" : "[]\n", n ? 2 : 3))
		evk_die(EVK_EX_FAIL, "out of memory");
	done(st);
	evk_buf_release(&esc);
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
		sqlite3_stmt *st = prepare(
			c, "SELECT id, lines, format, sent FROM notes ORDER BY id");
		bool bad;
		while (sqlite3_step(st) == SQLITE_ROW)
			if (each_event(&c->line, &c->payload, sqlite3_column_blob(st, 1),
				       (size_t)sqlite3_column_bytes(st, 1), sqlite3_column_int(st, 2),
				       (long)sqlite3_column_int64(st, 3), print_line, NULL,
				       &bad) != EVK_OK)
				evk_die(EVK_EX_DATAERR, "outbox row %lld is damaged (neither event lines"
					" nor notes)", (long long)sqlite3_column_int64(st, 0));
		done(st);
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
			    add_text(&c->out, (const char *)sqlite3_column_text(st, 0)) ||
			    evk_buf_add(&c->out, ",\"role\":", 8) ||
			    add_text(&c->out, (const char *)sqlite3_column_text(st, 1)) ||
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
	if (o == NULL || !cJSON_AddStringToObject(o, "db", c->db_path) ||
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
		evk_die_hub(c->url, rv);
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
	EVK_TLS_LONGOPTS,
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
		case EVK_OPT_TLS_CERT:
		case EVK_OPT_TLS_KEY:
		case EVK_OPT_TLS_CA: evk_tls_option(ch, optarg); break;
		case 'a': snprintf(c->actor, sizeof(c->actor), "%s", optarg); break;
		case 'A': x->admin = optarg; break;
		case 'r': x->role = optarg; break;
		case 'g': c->agency = optarg; break;
		case 'o': c->offender = optarg; break;
		case 's': c->since = optarg; break;
		case 'S':
			if (sort_column(optarg) == NULL)
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
	evk_buf_release(&c.payload);
	evk_buf_release(&c.key);
	evk_buf_release(&c.batch);
	evk_buf_release(&c.line);
	evk_buf_release(&c.off.name);
	evk_buf_release(&c.off.postcode);
	evk_store_stmt_release_all();
	if (sqlite3_close(c.db) != SQLITE_OK)
		evk_warn("closing the database: %s", sqlite3_errmsg(c.db));
	if (fclose(stdout) != 0 && status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	evk_jsonmem_release();
	return status;
}
