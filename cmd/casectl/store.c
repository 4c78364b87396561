/* casectl: the database, roles, and a case printed. */
#include "casectl.h"

/* ---- small helpers ---- */

void
now_ts(char out[EVK_TS_LEN + 1])
{
	evk_ts_now(out);
}

void
new_uuid(char out[37])
{
	if (evk_uuid7(out) != EVK_OK)
		evk_die(EVK_EX_FAIL, "no random bytes: %s", strerror(errno));
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

sqlite3_stmt *
prepare(struct ctx *c, const char *sql)
{
	sqlite3_stmt *st = evk_db_stmt(&c->db, sql);
	if (st == NULL)
		db_check(c, EVK_EIO);
	return st;
}

/* Done with a statement for now (it stays prepared). */
void
done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
}

/* Binds s without a copy: it must stay as it is until the statement's
 * last step (every caller binds, steps, then resets). */
void
bind_text(struct ctx *c, sqlite3_stmt *st, int i, const char *s)
{
	int rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
		   : sqlite3_bind_null(st, i);
	if (rc != SQLITE_OK)
		db_die(c, "cannot bind a value");
}

void
exec(struct ctx *c, const char *sql)
{
	db_check(c, evk_db_exec(&c->db, sql));
}

/* BEGIN IMMEDIATE, retried while another casectl holds the lock beyond the
 * busy timeout. */
void
begin(struct ctx *c)
{
	db_check(c, evk_db_begin(&c->db));
}

/* ---- schema ---- */

void
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

enum role
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
	if (evk_case_with(c->db.sq, id, with_case, &w, &found) != EVK_OK)
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

