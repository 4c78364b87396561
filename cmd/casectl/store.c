/* casectl: the database, roles, and a case printed. */
#include "casectl.h"

/* ---- small helpers ---- */

/* Now, later than the stamp this thread gave before (the cases of an
 * ingest run are stamped microseconds apart, and their updated_at keeps
 * their order): at most a microsecond's wait. A clock set back is taken
 * as it is. */
void
now_ts(char out[EVK_TS_LEN + 1])
{
	static _Thread_local char last[EVK_TS_LEN + 1];
	do
		evk_ts_now(out);
	while (memcmp(out, last, EVK_TS_LEN) == 0);
	memcpy(last, out, EVK_TS_LEN + 1);
}

void
new_uuid(char out[37])
{
	if (evk_uuid7(out) != EVK_OK)
		evk_die(EVK_EX_FAIL, "no random bytes: %s", strerror(errno));
}

size_t
keep_text(struct evk_buf *arena, const char *s)
{
	if (s == NULL)
		return NO_TEXT;
	size_t at = arena->len;
	if (evk_buf_add(arena, s, strlen(s) + 1) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	return at;
}

void
db_die(struct ctx *c, const char *what)
{
	evk_db_fail(&c->db, what);
	evk_die(EVK_EX_UNAVAILABLE, "%s", evk_db_error(&c->db));
}

/* A database call failed: its reason is in c->db. */
void
db_check(struct ctx *c, int rv)
{
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_db_error(&c->db));
}

struct evk_q *
prepare(struct ctx *c, const char *sql)
{
	struct evk_q *q = evk_db_q(&c->db, sql);
	if (q == NULL)
		db_check(c, EVK_EIO);
	return q;
}

/* Done with a statement for now (it stays prepared). */
void
done(struct evk_q *q)
{
	evk_q_reset(q);
}

/* A bind failed: out of memory or a value too long. */
static void
bind_check(struct ctx *c, int rv)
{
	if (rv != EVK_OK)
		db_die(c, "cannot bind a value");
}

/* Binds s without a copy: it must stay as it is until the statement's
 * last step (every caller binds, steps, then resets). NULL binds NULL. */
void
bind_text(struct ctx *c, struct evk_q *q, int i, const char *s)
{
	bind_check(c, evk_q_bind_text(q, i, s));
}

void
bind_int(struct ctx *c, struct evk_q *q, int i, int64_t v)
{
	bind_check(c, evk_q_bind_int64(q, i, v));
}

void
bind_double(struct ctx *c, struct evk_q *q, int i, double v)
{
	bind_check(c, evk_q_bind_double(q, i, v));
}

/* Steps q: true with a row to read, false when done; a failure ends
 * casectl, naming what it was doing. */
bool
step_row(struct ctx *c, struct evk_q *q, const char *what)
{
	int rc = evk_q_step(q);
	if (rc != EVK_ROW && rc != EVK_DONE)
		db_die(c, what);
	return rc == EVK_ROW;
}

/* Steps q once (a write), then resets it. */
void
step_done(struct ctx *c, struct evk_q *q, const char *what)
{
	if (evk_q_done(q) != EVK_OK)
		db_die(c, what);
}

void
exec(struct ctx *c, const char *sql)
{
	db_check(c, evk_db_exec(&c->db, sql));
}

/* A write transaction. SQLite: BEGIN IMMEDIATE, retried while another
 * casectl holds the lock beyond the busy timeout. PostgreSQL: BEGIN, then
 * a transaction-level advisory lock, so that casectl's writers on one
 * database take turns as they do on SQLite: a batch of an ingest never
 * waits on another's rows half way (no deadlock between two ingests
 * meeting the same offenders and cases in different orders), and the
 * outbox's rows commit in the order of their ids. Readers never wait. */
void
begin(struct ctx *c)
{
	db_check(c, evk_db_begin(&c->db));
	if (evk_db_dialect(&c->db) == EVK_DB_POSTGRES)
		step_done(c, prepare(c, "SELECT pg_advisory_xact_lock(2122, 1)"),
			  "cannot start a transaction");
}

/* ---- schema ---- */

/* The database: --db, else $CASECTL_DB, else the default file. */
void
open_db(struct ctx *c, bool create)
{
	const char *path = c->db_path;
	if (path == NULL && (path = getenv("CASECTL_DB")) != NULL && *path == '\0')
		path = NULL;
	int rv = evk_db_open(&c->db, path, "cases.db", create, evk_cases_migrations,
			     EVK_CASES_MIGRATIONS);
	if (rv == EVK_EINVAL)
		evk_die(EVK_EX_USAGE, "%s", evk_db_error(&c->db));
	if (rv == EVK_EUNAVAIL)
		evk_die(EVK_EX_UNAVAILABLE, "%s (run: casectl init --admin NAME)",
			evk_db_error(&c->db));
	db_check(c, rv);
}

enum role
role_of(struct ctx *c, const char *name)
{
	struct evk_q *q = prepare(c, "SELECT role FROM users WHERE name = ?");
	enum role r = ROLE_NONE;
	bind_text(c, q, 1, name);
	if (step_row(c, q, "cannot read the users")) {
		const char *s = evk_q_text(q, 0);
		r = strcmp(s, "admin") == 0    ? ROLE_ADMIN
		    : strcmp(s, "editor") == 0 ? ROLE_EDITOR
					       : ROLE_VIEWER;
	}
	done(q);
	return r;
}

/* The name of a role, as the users table holds it. */
const char *
role_name(enum role r)
{
	return r == ROLE_ADMIN ? "admin" : r == ROLE_EDITOR ? "editor" : "viewer";
}

void
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
bool
case_with(struct ctx *c, const char *id, void (*fn)(struct ctx *, const struct evk_case *,
						    void *),
	  void *arg)
{
	struct with w = { c, fn, arg };
	bool found;
	if (evk_case_with(&c->db, id, with_case, &w, &found) != EVK_OK)
		db_die(c, "cannot read a case");
	return found;
}

/* Runs fn on the case of reference ref of agency agency; false when
 * there is none. */
bool
case_with_ref(struct ctx *c, int64_t agency, const char *ref,
	      void (*fn)(struct ctx *, const struct evk_case *, void *), void *arg)
{
	struct with w = { c, fn, arg };
	bool found;
	if (evk_case_with_ref(&c->db, agency, ref, with_case, &w, &found) != EVK_OK)
		db_die(c, "cannot read a case");
	return found;
}

void
put_text(const struct evk_buf *b)
{
	if (b->len && fwrite(b->p, 1, b->len, stdout) != b->len)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
}

/* Leaves the case in c->out as one JSON line. */
void
print_case_to(struct ctx *c, const struct evk_case *v)
{
	evk_buf_reset(&c->out);
	if (evk_case_write(&c->out, v) != EVK_OK || evk_buf_addch(&c->out, '\n'))
		evk_die(EVK_EX_FAIL, "out of memory");
}

void
print_case(struct ctx *c, const struct evk_case *v, void *arg)
{
	(void)arg;
	print_case_to(c, v);
	put_text(&c->out);
}

void
print_json(cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	if (s == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (puts(s) == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	cJSON_free(s);
}

