/* A program's own database in SQLite or PostgreSQL: private files,
 * migrations, kept statements, transactions and the error text
 * (include/evkit/db.h). */
#include "evkit/db.h"

#include "evkit/err.h"
#include "evkit/store.h"

#include <libpq-fe.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_QS 96     /* kept statements per database */
#define MAX_PARAMS 32 /* parameters of one PostgreSQL statement */

/* PostgreSQL's type oids (catalog/pg_type.h, not installed by libpq-dev). */
enum { OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_FLOAT4 = 700,
       OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

struct evk_q {
	struct evk_db *db;
	uintptr_t asked;      /* the sql pointer it was first asked for with */
	char *sql;            /* PostgreSQL: the text asked for (owned) */
	sqlite3_stmt *st;     /* SQLite */
	/* PostgreSQL: a statement prepared on the connection as "evkN" */
	int nparams;
	const char *vals[MAX_PARAMS];
	int lens[MAX_PARAMS], fmts[MAX_PARAMS];
	char num[MAX_PARAMS][32]; /* numbers bound, as text */
	PGresult *res;        /* the result of the last step's execution */
	int row, nrows;       /* the current row (-1 before the first) */
	unsigned char *blob;  /* a bytea value unescaped, and where from */
	size_t blob_len;
	int blob_row, blob_col;
	int64_t changes;      /* rows the last execution changed */
};

/* Sets db->err; a longer text is cut. */
static void __attribute__((format(printf, 2, 3)))
set_err(struct evk_db *db, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
}

/* db->why from libpq's message (one line, no trailing newline); notes a
 * connection that went. */
static void
pg_why(struct evk_db *db, const char *msg)
{
	if (msg && strncmp(msg, "ERROR:  ", 8) == 0)
		msg += 8;
	if (msg && strncmp(msg, "FATAL:  ", 8) == 0)
		msg += 8;
	snprintf(db->why, sizeof(db->why), "%s", msg && *msg ? msg : "unknown error");
	/* The first line: what went wrong (the rest points into the SQL). */
	db->why[strcspn(db->why, "\n")] = '\0';
	size_t n = strlen(db->why);
	while (n > 0 && db->why[n - 1] == ' ')
		db->why[--n] = '\0';
	if (db->pg && PQstatus(db->pg) == CONNECTION_BAD)
		db->lost = true;
	if (db->in_tx)
		db->tx_failed = true;
}

int
evk_db_fail(struct evk_db *db, const char *what)
{
	if (db->dialect == EVK_DB_POSTGRES) {
		if (db->lost)
			set_err(db, "%s: lost the connection to the database: %s", what, db->why);
		else
			set_err(db, "%s: %s", what, db->why[0] ? db->why : "no database");
	} else {
		set_err(db, "%s: %s", what, db->sq ? sqlite3_errmsg(db->sq) : "no database");
	}
	return EVK_EIO;
}

const char *
evk_db_error(const struct evk_db *db)
{
	return db->err;
}

bool
evk_db_lost(const struct evk_db *db)
{
	return db->lost;
}

enum evk_dialect
evk_db_dialect(const struct evk_db *db)
{
	return db->dialect;
}

bool
evk_db_is_postgres(const char *path)
{
	if (path == NULL)
		return false;
	if (strncmp(path, "postgresql://", 13) == 0 || strncmp(path, "postgres://", 11) == 0)
		return true;
	/* key=value: a '=' before any '/' (a file name has none there). */
	const char *eq = strchr(path, '='), *slash = strchr(path, '/');
	return eq && (slash == NULL || eq < slash);
}

int
evk_db_create_private(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? EVK_OK : EVK_EIO;
	/* The umask may have taken bits away, never added any; fchmod makes
	 * it exactly 0600 all the same. */
	int rv = fchmod(fd, 0600) == 0 ? EVK_OK : EVK_EIO;
	if (close(fd) != 0)
		rv = EVK_EIO;
	return rv;
}

/* Fills db->path from path or the default. */
static int
resolve_path(struct evk_db *db, const char *path, const char *default_name)
{
	if (path == NULL) {
		if (evk_store_default_path(default_name, db->path, sizeof(db->path)) != EVK_OK) {
			set_err(db, "no --db given and no HOME or XDG_STATE_HOME");
			return EVK_EINVAL;
		}
		return EVK_OK;
	}
	if (strlen(path) >= sizeof(db->path)) {
		set_err(db, "database path too long");
		return EVK_EINVAL;
	}
	snprintf(db->path, sizeof(db->path), "%s", path);
	return EVK_OK;
}

/* ---- SQLite ---- */

static int
sqlite_migrate(sqlite3 *sq, const struct evk_migration *m, int n)
{
	const char *list[64];
	if (n > 64)
		return EVK_EINVAL;
	for (int i = 0; i < n; i++)
		list[i] = m[i].sql;
	return evk_store_migrate(sq, list, n);
}

static int
sqlite_open(struct evk_db *db, bool create, const struct evk_migration *m, int n)
{
	const char *why;
	if (!create && access(db->path, F_OK) != 0) {
		set_err(db, "no database at '%s'", db->path);
		return EVK_EUNAVAIL;
	}
	if (strcmp(db->path, ":memory:") != 0 &&
	    (evk_store_make_parents(db->path) != EVK_OK ||
	     evk_db_create_private(db->path) != EVK_OK)) {
		set_err(db, "cannot create database '%s': %s", db->path, strerror(errno));
		return EVK_EIO;
	}
	if (evk_store_open(db->path, &db->sq, &why) != EVK_OK) {
		set_err(db, "cannot open database '%s': %s", db->path, why);
		return EVK_EIO;
	}
	if (sqlite_migrate(db->sq, m, n) != EVK_OK) {
		evk_db_fail(db, "cannot set up the database");
		sqlite3_close(db->sq);
		db->sq = NULL;
		return EVK_EIO;
	}
	return EVK_OK;
}

/* ---- PostgreSQL ---- */

static void
no_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message; /* lib/ never prints */
}

/* ---- the pipeline (PostgreSQL) ----
 * Statements whose answer can wait (evk_db_send, evk_q_send, BEGIN, the
 * unlocks after a COMMIT) are sent in libpq's pipeline mode and answered
 * together with the next statement that waits: one round trip for all. */

/* Sends a statement without waiting for its answer: the kept statement
 * name, or sql with n text parameters. */
static int
pg_send(struct evk_db *db, const char *name, const char *sql, int n, const char *const *vals,
	const int *lens, const int *fmts)
{
	if (PQpipelineStatus(db->pg) == PQ_PIPELINE_OFF && !PQenterPipelineMode(db->pg)) {
		pg_why(db, PQerrorMessage(db->pg));
		return EVK_EIO;
	}
	int sent = name ? PQsendQueryPrepared(db->pg, name, n, vals, lens, fmts, 0)
			: PQsendQueryParams(db->pg, sql, n, NULL, vals, lens, fmts, 0);
	if (!sent) {
		pg_why(db, PQerrorMessage(db->pg));
		return EVK_EIO;
	}
	db->npiped++;
	return EVK_OK;
}

/* Reads one statement's answer from the pipeline: *failed set, with
 * the reason in db->why, at the first failure; *kept the answer when
 * keep. False when the connection gave nothing. */
static bool
pg_read_one(struct evk_db *db, bool keep, PGresult **kept, bool *failed)
{
	PGresult *res;
	bool any = false;
	while ((res = PQgetResult(db->pg)) != NULL) {
		ExecStatusType s = PQresultStatus(res);
		bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
		any = true;
		if (!ok && !*failed) {
			pg_why(db, s == PGRES_PIPELINE_ABORTED
					   ? "an earlier statement of the transaction failed"
					   : PQresultErrorMessage(res));
			*failed = true;
		}
		if (ok && keep && *kept == NULL)
			*kept = res;
		else
			PQclear(res);
	}
	return any;
}

/* Ends the pipeline, if one is open: a sync, then the answers to the
 * statements sent, in order; *wanted (when not NULL) the answer to
 * statement want (0-based, of those sent), for the caller to clear.
 * EVK_EIO, with db->why from the first failure, when any failed (then
 * *wanted is NULL). */
static int
pg_sync(struct evk_db *db, int want, PGresult **wanted)
{
	int n = db->npiped;
	bool failed = false;
	PGresult *kept = NULL;
	if (wanted)
		*wanted = NULL;
	db->npiped = 0;
	if (PQpipelineStatus(db->pg) == PQ_PIPELINE_OFF)
		return EVK_OK;
	if (!PQpipelineSync(db->pg)) {
		pg_why(db, PQerrorMessage(db->pg));
		failed = true;
		n = 0;
	}
	for (int i = 0; i < n; i++)
		if (!pg_read_one(db, wanted && i == want, &kept, &failed)) {
			if (!failed)
				pg_why(db, PQerrorMessage(db->pg));
			failed = true;
			break;
		}
	PGresult *res = failed && PQstatus(db->pg) == CONNECTION_BAD ? NULL : PQgetResult(db->pg);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		if (!failed)
			pg_why(db, PQerrorMessage(db->pg));
		failed = true;
	}
	PQclear(res);
	if (!PQexitPipelineMode(db->pg) && !failed) {
		pg_why(db, PQerrorMessage(db->pg));
		failed = true;
	}
	/* A server that went says so in the first answer, before libpq
	 * finds the connection closed. */
	if (PQstatus(db->pg) == CONNECTION_BAD)
		db->lost = true;
	if (failed) {
		PQclear(kept);
		return EVK_EIO;
	}
	if (wanted)
		*wanted = kept;
	else
		PQclear(kept);
	return EVK_OK;
}

/* Runs sql (no parameters), after the statements sent before; *res the
 * result when rows are wanted. */
static int
pg_exec(struct evk_db *db, const char *sql, PGresult **rows)
{
	int before = pg_sync(db, -1, NULL);
	PGresult *res = PQexec(db->pg, sql);
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		if (before == EVK_OK)
			pg_why(db, res ? PQresultErrorMessage(res) : PQerrorMessage(db->pg));
		PQclear(res);
		return EVK_EIO;
	}
	if (before != EVK_OK) {
		PQclear(res);
		return EVK_EIO;
	}
	if (rows)
		*rows = res;
	else
		PQclear(res);
	return EVK_OK;
}

/* The schema's version: -1 when it has no table evk_schema yet. */
static int
pg_version(struct evk_db *db, int *version)
{
	PGresult *res;
	*version = -1;
	if (pg_exec(db, "SELECT version FROM evk_schema", &res) != EVK_OK) {
		/* 42P01: undefined_table. */
		return EVK_EIO;
	}
	if (PQntuples(res) == 1)
		*version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return EVK_OK;
}

/* Whether table evk_schema exists in the schema searched. */
static int
pg_has_schema(struct evk_db *db, bool *has)
{
	PGresult *res;
	if (pg_exec(db, "SELECT to_regclass('evk_schema') IS NOT NULL", &res) != EVK_OK)
		return EVK_EIO;
	*has = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return EVK_OK;
}

/* Applies the missing migrations in one transaction, under an advisory
 * lock of the schema's own, so that processes opening at once apply each
 * once. */
static int
pg_migrate(struct evk_db *db, const char *schema, const struct evk_migration *m, int n)
{
	char sql[512];
	char *id = PQescapeIdentifier(db->pg, schema, strlen(schema));
	char *lit = PQescapeLiteral(db->pg, schema, strlen(schema));
	int version, rv = EVK_EIO;
	if (id == NULL || lit == NULL) {
		pg_why(db, PQerrorMessage(db->pg));
		goto out;
	}
	if (pg_exec(db, "BEGIN", NULL) != EVK_OK)
		goto out;
	snprintf(sql, sizeof(sql),
		 "SELECT pg_advisory_xact_lock(2121, hashtext(%s));"
		 "CREATE SCHEMA IF NOT EXISTS %s;"
		 "CREATE TABLE IF NOT EXISTS evk_schema (version INTEGER NOT NULL);"
		 "INSERT INTO evk_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM evk_schema)",
		 lit, id);
	if (pg_exec(db, sql, NULL) != EVK_OK || pg_version(db, &version) != EVK_OK)
		goto rollback;
	for (; version < n; version++) {
		const char *step = m[version].pg ? m[version].pg : m[version].sql;
		snprintf(sql, sizeof(sql), "UPDATE evk_schema SET version = %d", version + 1);
		if ((*step && pg_exec(db, step, NULL) != EVK_OK) || pg_exec(db, sql, NULL) != EVK_OK)
			goto rollback;
	}
	if (pg_exec(db, "COMMIT", NULL) == EVK_OK)
		rv = EVK_OK;
	goto out;
rollback:
	{
		char why[sizeof(db->why)];
		memcpy(why, db->why, sizeof(why));
		pg_exec(db, "ROLLBACK", NULL);
		memcpy(db->why, why, sizeof(why));
	}
out:
	PQfreemem(id);
	PQfreemem(lit);
	return rv;
}

static int
pg_open(struct evk_db *db, const char *default_name, bool create, const struct evk_migration *m,
	int n)
{
	char schema[64], sql[160];
	snprintf(schema, sizeof(schema), "%s", default_name);
	char *dot = strstr(schema, ".db");
	if (dot)
		*dot = '\0';

	db->pg = PQconnectdb(db->path);
	if (db->pg == NULL || PQstatus(db->pg) != CONNECTION_OK) {
		pg_why(db, db->pg ? PQerrorMessage(db->pg) : "out of memory");
		db->lost = false;
		set_err(db, "cannot connect to the database: %s", db->why);
		goto fail;
	}
	PQsetNoticeProcessor(db->pg, no_notices, NULL);
	char *id = PQescapeIdentifier(db->pg, schema, strlen(schema));
	if (id == NULL) {
		pg_why(db, PQerrorMessage(db->pg));
		evk_db_fail(db, "cannot set up the database");
		goto fail;
	}
	snprintf(sql, sizeof(sql), "SET search_path TO %s", id);
	PQfreemem(id);
	bool has = false;
	int version = -1;
	if (pg_exec(db, sql, NULL) != EVK_OK || pg_has_schema(db, &has) != EVK_OK ||
	    (has && pg_version(db, &version) != EVK_OK)) {
		evk_db_fail(db, "cannot set up the database");
		goto fail;
	}
	if (!has && !create) {
		set_err(db, "no database: schema '%s' has no tables", schema);
		PQfinish(db->pg);
		db->pg = NULL;
		return EVK_EUNAVAIL;
	}
	if (version < n && pg_migrate(db, schema, m, n) != EVK_OK) {
		evk_db_fail(db, "cannot set up the database");
		goto fail;
	}
	return EVK_OK;
fail:
	PQfinish(db->pg);
	db->pg = NULL;
	return EVK_EIO;
}

int
evk_db_open(struct evk_db *db, const char *path, const char *default_name, bool create,
	    const struct evk_migration *migrations, int n)
{
	int rv;

	*db = (struct evk_db){ .dialect = EVK_DB_SQLITE };
	if ((rv = resolve_path(db, path, default_name)) != EVK_OK)
		return rv;
	if ((db->qs = calloc(MAX_QS, sizeof(*db->qs))) == NULL) {
		set_err(db, "out of memory");
		return EVK_ENOMEM;
	}
	if (evk_db_is_postgres(db->path)) {
		db->dialect = EVK_DB_POSTGRES;
		rv = pg_open(db, default_name, create, migrations, n);
	} else {
		rv = sqlite_open(db, create, migrations, n);
	}
	if (rv != EVK_OK) {
		free(db->qs);
		db->qs = NULL;
	}
	return rv;
}

static void
q_clear(struct evk_q *q)
{
	PQclear(q->res);
	q->res = NULL;
	PQfreemem(q->blob);
	q->blob = NULL;
	q->row = -1;
	q->nrows = 0;
}

int
evk_db_close(struct evk_db *db)
{
	int rv = EVK_OK;
	/* The answers to what was sent without waiting (evk_db_commit_send). */
	if (db->pg && pg_sync(db, -1, NULL) != EVK_OK)
		rv = evk_db_fail(db, "closing the database");
	for (int i = 0; i < db->nqs; i++) {
		struct evk_q *q = &db->qs[i];
		if (q->st)
			sqlite3_finalize(q->st);
		q_clear(q);
		free(q->sql);
	}
	free(db->qs);
	db->qs = NULL;
	db->nqs = 0;
	if (db->pg) {
		PQfinish(db->pg);
		db->pg = NULL;
	}
	if (db->sq == NULL)
		return rv;
	evk_store_stmt_release_all();
	if (sqlite3_close(db->sq) != SQLITE_OK)
		return evk_db_fail(db, "closing the database");
	db->sq = NULL;
	return rv;
}

/* ---- statements ---- */

/* sql with '?' and '?N' turned into $N (outside quotes); the number of
 * parameters in *np. NULL when out of memory or past MAX_PARAMS. */
static char *
pg_sql(const char *sql, int *np)
{
	size_t n = strlen(sql);
	char *out = malloc(n * 3 + 1), *o = out;
	char quote = 0;
	int max = 0;
	if (out == NULL)
		return NULL;
	for (const char *p = sql; *p; p++) {
		if (quote) {
			if (*p == quote)
				quote = 0;
			*o++ = *p;
			continue;
		}
		if (*p == '\'' || *p == '"') {
			quote = *p;
			*o++ = *p;
			continue;
		}
		if (*p != '?') {
			*o++ = *p;
			continue;
		}
		int k;
		if (p[1] >= '0' && p[1] <= '9') {
			k = (int)strtol(p + 1, (char **)&p, 10);
			p--;
		} else {
			k = max + 1;
		}
		if (k > max)
			max = k;
		if (k < 1 || k > MAX_PARAMS) {
			free(out);
			return NULL;
		}
		o += sprintf(o, "$%d", k);
	}
	*o = '\0';
	*np = max;
	return out;
}

/* Makes q ready for binding: reset, unbound. */
static struct evk_q *
q_ready(struct evk_q *q)
{
	if (q->st) {
		sqlite3_reset(q->st);
		sqlite3_clear_bindings(q->st);
		return q;
	}
	q_clear(q);
	for (int i = 0; i < q->nparams; i++) {
		q->vals[i] = NULL;
		q->lens[i] = 0;
		q->fmts[i] = 0;
	}
	return q;
}

static const char *
q_text(const struct evk_q *q)
{
	return q->st ? sqlite3_sql(q->st) : q->sql;
}

static bool
q_prepare(struct evk_db *db, struct evk_q *q, const char *sql)
{
	if (db->dialect == EVK_DB_SQLITE) {
		if (sqlite3_prepare_v3(db->sq, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->st, NULL) !=
		    SQLITE_OK) {
			evk_db_fail(db, "cannot prepare a query");
			return false;
		}
		return true;
	}
	char name[16];
	char *text = pg_sql(sql, &q->nparams);
	if (text == NULL || (q->sql = strdup(sql)) == NULL) {
		free(text);
		snprintf(db->why, sizeof(db->why), "out of memory or too many parameters");
		evk_db_fail(db, "cannot prepare a query");
		return false;
	}
	snprintf(name, sizeof(name), "evk%d", db->nqs);
	/* The statements sent before go first (a failure among them fails
	 * this call). */
	int before = pg_sync(db, -1, NULL);
	PGresult *res = before == EVK_OK ? PQprepare(db->pg, name, text, 0, NULL) : NULL;
	free(text);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		if (before == EVK_OK)
			pg_why(db, res ? PQresultErrorMessage(res) : PQerrorMessage(db->pg));
		PQclear(res);
		free(q->sql);
		q->sql = NULL;
		evk_db_fail(db, "cannot prepare a query");
		return false;
	}
	PQclear(res);
	q->row = -1;
	return true;
}

struct evk_q *
evk_db_q(struct evk_db *db, const char *sql)
{
	for (int i = 0; i < db->nqs; i++)
		if (db->qs[i].asked == (uintptr_t)sql) {
			if (strcmp(q_text(&db->qs[i]), sql) == 0)
				return q_ready(&db->qs[i]);
			break;
		}
	for (int i = 0; i < db->nqs; i++)
		if (strcmp(q_text(&db->qs[i]), sql) == 0)
			return q_ready(&db->qs[i]);
	if (db->qs == NULL || db->nqs == MAX_QS) {
		set_err(db, "cannot prepare a query: too many kept");
		return NULL;
	}
	struct evk_q *q = &db->qs[db->nqs];
	*q = (struct evk_q){ .db = db, .asked = (uintptr_t)sql, .row = -1 };
	if (!q_prepare(db, q, sql))
		return NULL;
	db->nqs++;
	return q;
}

sqlite3_stmt *
evk_q_sqlite(struct evk_q *q)
{
	return q->st;
}

/* The PostgreSQL parameter i (1-based) as text, or NULL when out of range. */
static int
pg_bind(struct evk_q *q, int i, const char *v, int len, int fmt)
{
	if (i < 1 || i > q->nparams)
		return EVK_EINVAL;
	q->vals[i - 1] = v;
	q->lens[i - 1] = len;
	q->fmts[i - 1] = fmt;
	return EVK_OK;
}

static int
sq_rc(int rc)
{
	return rc == SQLITE_OK ? EVK_OK : rc == SQLITE_NOMEM ? EVK_ENOMEM : EVK_EINVAL;
}

int
evk_q_bind_int64(struct evk_q *q, int i, int64_t v)
{
	if (q->st)
		return sq_rc(sqlite3_bind_int64(q->st, i, v));
	if (i < 1 || i > q->nparams)
		return EVK_EINVAL;
	snprintf(q->num[i - 1], sizeof(q->num[0]), "%" PRId64, v);
	return pg_bind(q, i, q->num[i - 1], 0, 0);
}

int
evk_q_bind_double(struct evk_q *q, int i, double v)
{
	if (q->st)
		return sq_rc(sqlite3_bind_double(q->st, i, v));
	if (i < 1 || i > q->nparams)
		return EVK_EINVAL;
	snprintf(q->num[i - 1], sizeof(q->num[0]), "%.17g", v);
	return pg_bind(q, i, q->num[i - 1], 0, 0);
}

int
evk_q_bind_text(struct evk_q *q, int i, const char *s)
{
	if (q->st)
		return sq_rc(s ? sqlite3_bind_text(q->st, i, s, -1, SQLITE_STATIC)
			       : sqlite3_bind_null(q->st, i));
	return pg_bind(q, i, s, 0, 0);
}

int
evk_q_bind_textn(struct evk_q *q, int i, const char *s, size_t n)
{
	if (q->st)
		return sq_rc(sqlite3_bind_text64(q->st, i, s, n, SQLITE_STATIC, SQLITE_UTF8));
	/* PostgreSQL takes text parameters NUL-terminated: the bytes are
	 * sent in binary format, which for text is the text itself. */
	if (n > INT32_MAX)
		return EVK_ETOOLONG;
	return pg_bind(q, i, s, (int)n, 1);
}

int
evk_q_bind_blob(struct evk_q *q, int i, const void *p, size_t n)
{
	if (q->st)
		return sq_rc(sqlite3_bind_blob64(q->st, i, p, n, SQLITE_STATIC));
	if (n > INT32_MAX)
		return EVK_ETOOLONG;
	return pg_bind(q, i, p ? p : "", (int)n, 1);
}

int
evk_q_bind_null(struct evk_q *q, int i)
{
	if (q->st)
		return sq_rc(sqlite3_bind_null(q->st, i));
	return pg_bind(q, i, NULL, 0, 0);
}

int
evk_q_step(struct evk_q *q)
{
	struct evk_db *db = q->db;
	if (q->st) {
		int rc = sqlite3_step(q->st);
		if (rc == SQLITE_ROW)
			return EVK_ROW;
		if (rc == SQLITE_DONE)
			return EVK_DONE;
		set_err(db, "%s", sqlite3_errmsg(db->sq));
		return rc == SQLITE_NOMEM ? EVK_ENOMEM : EVK_EIO;
	}
	if (q->res == NULL) {
		char name[16];
		snprintf(name, sizeof(name), "evk%d", (int)(q - db->qs));
		int rv = EVK_OK;
		if (PQpipelineStatus(db->pg) != PQ_PIPELINE_OFF) {
			/* After the statements sent before, in one round trip. */
			int want = db->npiped;
			rv = pg_send(db, name, NULL, q->nparams, q->vals, q->lens, q->fmts);
			if (pg_sync(db, want, &q->res) != EVK_OK || q->res == NULL)
				rv = EVK_EIO;
		} else {
			q->res = PQexecPrepared(db->pg, name, q->nparams, q->vals, q->lens, q->fmts, 0);
			ExecStatusType s = q->res ? PQresultStatus(q->res) : PGRES_FATAL_ERROR;
			if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
				pg_why(db, q->res ? PQresultErrorMessage(q->res) : PQerrorMessage(db->pg));
				rv = EVK_EIO;
			}
		}
		if (rv != EVK_OK) {
			PQclear(q->res);
			q->res = NULL;
			set_err(db, "%s%s", db->lost ? "lost the connection to the database: " : "",
				db->why);
			return EVK_EIO;
		}
		q->nrows = PQntuples(q->res);
		q->changes = strtoll(PQcmdTuples(q->res), NULL, 10);
		q->row = -1;
	}
	if (q->row < q->nrows)
		q->row++;
	return q->row < q->nrows ? EVK_ROW : EVK_DONE;
}

int
evk_q_send(struct evk_q *q)
{
	struct evk_db *db = q->db;
	if (q->st || !db->in_tx)
		return evk_q_done(q);
	char name[16];
	snprintf(name, sizeof(name), "evk%d", (int)(q - db->qs));
	int rv = pg_send(db, name, NULL, q->nparams, q->vals, q->lens, q->fmts);
	evk_q_reset(q);
	q->changes = 0;
	if (rv != EVK_OK)
		set_err(db, "%s%s", db->lost ? "lost the connection to the database: " : "", db->why);
	return rv;
}

int
evk_q_done(struct evk_q *q)
{
	int rc = evk_q_step(q);
	evk_q_reset(q);
	return rc == EVK_ROW || rc == EVK_DONE ? EVK_OK : rc;
}

void
evk_q_reset(struct evk_q *q)
{
	if (q->st) {
		sqlite3_reset(q->st);
		return;
	}
	/* The result stays readable for evk_q_changes until the next step. */
	PQfreemem(q->blob);
	q->blob = NULL;
	q->row = q->nrows;
	if (q->res) {
		/* The next step executes again. */
		PGresult *r = q->res;
		q->res = NULL;
		PQclear(r);
	}
}

int64_t
evk_q_changes(struct evk_q *q)
{
	if (q->st)
		return sqlite3_changes(q->db->sq);
	return q->changes;
}

int
evk_q_ncols(struct evk_q *q)
{
	return q->st ? sqlite3_column_count(q->st) : q->res ? PQnfields(q->res) : 0;
}

const char *
evk_q_name(struct evk_q *q, int col)
{
	return q->st ? sqlite3_column_name(q->st, col) : PQfname(q->res, col);
}

bool
evk_q_is_null(struct evk_q *q, int col)
{
	if (q->st)
		return sqlite3_column_type(q->st, col) == SQLITE_NULL;
	return PQgetisnull(q->res, q->row, col);
}

enum evk_coltype
evk_q_type(struct evk_q *q, int col)
{
	if (q->st) {
		switch (sqlite3_column_type(q->st, col)) {
		case SQLITE_NULL: return EVK_COL_NULL;
		case SQLITE_INTEGER: return EVK_COL_INT;
		case SQLITE_FLOAT: return EVK_COL_REAL;
		case SQLITE_BLOB: return EVK_COL_BLOB;
		default: return EVK_COL_TEXT;
		}
	}
	if (PQgetisnull(q->res, q->row, col))
		return EVK_COL_NULL;
	switch (PQftype(q->res, col)) {
	case OID_INT2:
	case OID_INT4:
	case OID_INT8: return EVK_COL_INT;
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC: return EVK_COL_REAL;
	case OID_BYTEA: return EVK_COL_BLOB;
	default: return EVK_COL_TEXT;
	}
}

int64_t
evk_q_int64(struct evk_q *q, int col)
{
	if (q->st)
		return sqlite3_column_int64(q->st, col);
	return strtoll(PQgetvalue(q->res, q->row, col), NULL, 10);
}

int
evk_q_int(struct evk_q *q, int col)
{
	return (int)evk_q_int64(q, col);
}

double
evk_q_double(struct evk_q *q, int col)
{
	if (q->st)
		return sqlite3_column_double(q->st, col);
	return strtod(PQgetvalue(q->res, q->row, col), NULL);
}

const char *
evk_q_text(struct evk_q *q, int col)
{
	if (q->st)
		return (const char *)sqlite3_column_text(q->st, col);
	return PQgetisnull(q->res, q->row, col) ? NULL : PQgetvalue(q->res, q->row, col);
}

/* A bytea column, unescaped once per row and column read. */
static bool
pg_blob(struct evk_q *q, int col)
{
	if (PQftype(q->res, col) != OID_BYTEA)
		return false;
	if (q->blob && q->blob_row == q->row && q->blob_col == col)
		return true;
	PQfreemem(q->blob);
	q->blob = PQunescapeBytea((const unsigned char *)PQgetvalue(q->res, q->row, col),
				  &q->blob_len);
	q->blob_row = q->row;
	q->blob_col = col;
	return q->blob != NULL;
}

const void *
evk_q_blob(struct evk_q *q, int col)
{
	if (q->st)
		return sqlite3_column_blob(q->st, col);
	if (PQgetisnull(q->res, q->row, col))
		return NULL;
	if (PQftype(q->res, col) == OID_BYTEA)
		return pg_blob(q, col) ? q->blob : NULL;
	return PQgetvalue(q->res, q->row, col);
}

size_t
evk_q_bytes(struct evk_q *q, int col)
{
	if (q->st)
		return (size_t)sqlite3_column_bytes(q->st, col);
	if (PQgetisnull(q->res, q->row, col))
		return 0;
	if (PQftype(q->res, col) == OID_BYTEA)
		return pg_blob(q, col) ? q->blob_len : 0;
	return (size_t)PQgetlength(q->res, q->row, col);
}

sqlite3_stmt *
evk_db_stmt(struct evk_db *db, const char *sql)
{
	if (db->sq == NULL) {
		set_err(db, "cannot prepare a query: not a SQLite database");
		return NULL;
	}
	sqlite3_stmt *st = evk_store_stmt(db->sq, sql);
	if (st == NULL)
		evk_db_fail(db, "cannot prepare a query");
	return st;
}

int
evk_db_step_done(struct evk_db *db, sqlite3_stmt *st)
{
	int rv = sqlite3_step(st) == SQLITE_DONE ? EVK_OK : evk_db_fail(db, "cannot write");
	sqlite3_reset(st);
	return rv;
}

/* ---- whole statements and transactions ---- */

int
evk_db_exec(struct evk_db *db, const char *sql)
{
	if (db->dialect == EVK_DB_POSTGRES)
		return pg_exec(db, sql, NULL) == EVK_OK ? EVK_OK : evk_db_fail(db, sql);
	return evk_store_exec(db->sq, sql) == EVK_OK ? EVK_OK : evk_db_fail(db, sql);
}

int
evk_db_send(struct evk_db *db, const char *sql)
{
	if (db->dialect != EVK_DB_POSTGRES || !db->in_tx)
		return evk_db_exec(db, sql);
	return pg_send(db, NULL, sql, 0, NULL, NULL, NULL) == EVK_OK ? EVK_OK
								    : evk_db_fail(db, sql);
}

int
evk_db_begin(struct evk_db *db)
{
	if (db->dialect == EVK_DB_POSTGRES) {
		/* Sent with the transaction's first statement. */
		db->in_tx = true;
		db->tx_failed = false;
		if (pg_send(db, NULL, "BEGIN", 0, NULL, NULL, NULL) != EVK_OK) {
			db->in_tx = false;
			return evk_db_fail(db, "cannot start a transaction");
		}
		return EVK_OK;
	}
	return evk_store_begin(db->sq) == EVK_OK ? EVK_OK
						  : evk_db_fail(db, "cannot start a transaction");
}

/* Forgets the advisory lock on key (db->locks). */
static void
forget_lock(struct evk_db *db, int64_t key)
{
	for (int i = 0; i < db->nlocks; i++)
		if (db->locks[i] == key) {
			db->locks[i] = db->locks[--db->nlocks];
			break;
		}
}

int
evk_db_unlock_at_commit(struct evk_db *db, int64_t key)
{
	if (db->dialect != EVK_DB_POSTGRES)
		return EVK_OK;
	if (!db->in_tx)
		return evk_db_unlock(db, key);
	if (db->nunlocks == (int)(sizeof(db->unlocks) / sizeof(db->unlocks[0])))
		return EVK_ETOOLONG;
	db->unlocks[db->nunlocks++] = key;
	return EVK_OK;
}

/* PostgreSQL: COMMIT after the statements sent before and, unless a
 * statement of the transaction failed, the unlocks that waited for it,
 * in one round trip. A COMMIT the server turned into a ROLLBACK (the
 * transaction had failed) is a failure, and one that never ran (the
 * pipeline stopped at an earlier failure) is rolled back. */
static int
pg_commit(struct evk_db *db)
{
	char keys[256][24];
	const char *val[1];
	int want = db->npiped, n = db->tx_failed ? 0 : db->nunlocks;
	int rv = pg_send(db, NULL, "COMMIT", 0, NULL, NULL, NULL);
	for (int i = 0; rv == EVK_OK && i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), "%" PRId64, db->unlocks[i]);
		val[0] = keys[i];
		rv = pg_send(db, NULL, "SELECT pg_advisory_unlock($1::bigint)", 1, val, NULL, NULL);
	}
	db->in_tx = false;
	db->nunlocks = 0;
	PGresult *res;
	bool synced = pg_sync(db, want, &res) == EVK_OK;
	bool committed = res && strcmp(PQcmdStatus(res), "COMMIT") == 0;
	if (rv == EVK_OK && synced && !committed)
		pg_why(db, res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
							      : "the transaction was rolled back");
	PQclear(res);
	if (rv == EVK_OK && synced && committed) {
		for (int i = 0; i < n; i++)
			forget_lock(db, db->unlocks[i]);
		return EVK_OK;
	}
	if (PQtransactionStatus(db->pg) == PQTRANS_INERROR ||
	    PQtransactionStatus(db->pg) == PQTRANS_INTRANS)
		PQclear(PQexec(db->pg, "ROLLBACK"));
	return evk_db_fail(db, "cannot commit a transaction");
}

int
evk_db_commit(struct evk_db *db)
{
	if (db->dialect == EVK_DB_POSTGRES)
		return pg_commit(db);
	return evk_store_exec(db->sq, "COMMIT") == EVK_OK
		       ? EVK_OK
		       : evk_db_fail(db, "cannot commit a transaction");
}

int
evk_db_commit_send(struct evk_db *db)
{
	if (db->dialect != EVK_DB_POSTGRES || db->nunlocks > 0 || db->tx_failed)
		return evk_db_commit(db);
	db->in_tx = false;
	if (pg_send(db, NULL, "COMMIT", 0, NULL, NULL, NULL) != EVK_OK)
		return evk_db_fail(db, "cannot commit a transaction");
	if (PQflush(db->pg) != 0) {
		pg_why(db, PQerrorMessage(db->pg));
		return evk_db_fail(db, "cannot commit a transaction");
	}
	return EVK_OK;
}

int
evk_db_rollback(struct evk_db *db)
{
	if (db->dialect == EVK_DB_POSTGRES) {
		db->in_tx = false;
		db->nunlocks = 0;
		/* Keeps the reason of the failure that led here; what was
		 * sent before is read and dropped. */
		char why[sizeof(db->why)], err[sizeof(db->err)];
		memcpy(why, db->why, sizeof(why));
		memcpy(err, db->err, sizeof(err));
		pg_sync(db, -1, NULL);
		int rv = pg_exec(db, "ROLLBACK", NULL);
		memcpy(db->why, why, sizeof(why));
		memcpy(db->err, err, sizeof(err));
		return rv;
	}
	return evk_store_exec(db->sq, "ROLLBACK") == EVK_OK
		       ? EVK_OK
		       : evk_db_fail(db, "cannot roll back a transaction");
}

int
evk_db_fd(const struct evk_db *db)
{
	return db->pg ? PQsocket(db->pg) : -1;
}

int
evk_db_alive(struct evk_db *db, bool ping)
{
	if (db->dialect != EVK_DB_POSTGRES)
		return EVK_OK;
	if (db->lost || PQconsumeInput(db->pg) == 0 || PQstatus(db->pg) != CONNECTION_OK) {
		if (!db->lost)
			pg_why(db, PQerrorMessage(db->pg));
		db->lost = true;
		return evk_db_fail(db, "the database");
	}
	if (ping && pg_exec(db, "SELECT 1", NULL) != EVK_OK)
		return evk_db_fail(db, "the database");
	return EVK_OK;
}

/* ---- advisory locks (PostgreSQL) ---- */

int
evk_db_try_lock(struct evk_db *db, int64_t key, bool *got)
{
	*got = true;
	if (db->dialect != EVK_DB_POSTGRES)
		return EVK_OK;
	if (db->nlocks == (int)(sizeof(db->locks) / sizeof(db->locks[0])))
		return EVK_ETOOLONG;
	struct evk_q *q = evk_db_q(
		db, "SELECT CASE WHEN pg_try_advisory_lock(?::bigint) THEN 1 ELSE 0 END");
	if (q == NULL)
		return EVK_EIO;
	evk_q_bind_int64(q, 1, key);
	int rc = evk_q_step(q);
	if (rc == EVK_ROW)
		*got = evk_q_int64(q, 0) == 1;
	evk_q_reset(q);
	if (rc == EVK_ROW && *got)
		db->locks[db->nlocks++] = key;
	return rc == EVK_ROW ? EVK_OK : evk_db_fail(db, "cannot take a lock");
}

int
evk_db_lock_taken(struct evk_db *db, int64_t key)
{
	if (db->dialect != EVK_DB_POSTGRES)
		return EVK_OK;
	if (db->nlocks == (int)(sizeof(db->locks) / sizeof(db->locks[0])))
		return EVK_ETOOLONG;
	db->locks[db->nlocks++] = key;
	return EVK_OK;
}

int
evk_db_unlock(struct evk_db *db, int64_t key)
{
	if (db->dialect != EVK_DB_POSTGRES)
		return EVK_OK;
	struct evk_q *q = evk_db_q(db, "SELECT pg_advisory_unlock(?::bigint)");
	if (q == NULL)
		return EVK_EIO;
	evk_q_bind_int64(q, 1, key);
	forget_lock(db, key);
	return evk_q_send(q) == EVK_OK ? EVK_OK : evk_db_fail(db, "cannot release a lock");
}
