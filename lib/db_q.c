/* A database's kept statements (include/evkit/db.h): evk_db_q prepares
 * once and finds again by the text, on SQLite a sqlite3_stmt, on
 * PostgreSQL a statement prepared on the connection (its '?' turned into
 * $N); binding, stepping and reading columns on either. */
#include "db_impl.h"

#include "evkit/err.h"
#include "evkit/store.h"

#include <libpq-fe.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL's type oids (catalog/pg_type.h, not installed by libpq-dev). */
enum { OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_FLOAT4 = 700,
       OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

void
db_q_clear(struct evk_q *q)
{
	PQclear(q->res);
	q->res = NULL;
	PQfreemem(q->blob);
	q->blob = NULL;
	q->row = -1;
	q->nrows = 0;
}

/* sql with '?' and '?N' turned into $N (outside quotes); the number of
 * parameters in *np. NULL when out of memory or past MAX_PARAMS. */
static char *
pg_sql(const char *sql, int *np)
{
	size_t n = strlen(sql);
	/* A lone '?' becomes at most "$4096" (MAX_PARAMS): five bytes. */
	_Static_assert(MAX_PARAMS <= 9999, "a parameter's number in four digits");
	char *out = malloc(n * 5 + 1), *o = out;
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
	db_q_clear(q);
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

/* The parameter arrays of q (nparams of each) in one zeroed allocation,
 * owned by q->params; false when out of memory. */
static bool
q_params(struct evk_q *q)
{
	size_t n = (size_t)q->nparams;
	/* Pointers, then the ints, then the number texts: each part aligned. */
	char *p = calloc(1, n * (sizeof(*q->vals) + 2 * sizeof(int) + sizeof(*q->num)) + 1);
	if (p == NULL)
		return false;
	q->params = p;
	q->vals = (const char **)(void *)p;
	q->lens = (int *)(void *)(p + n * sizeof(*q->vals));
	q->fmts = q->lens + n;
	q->num = (char(*)[32])(void *)(q->fmts + n);
	return true;
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
	if (!q_params(q)) {
		free(text);
		free(q->sql);
		q->sql = NULL;
		snprintf(db->why, sizeof(db->why), "out of memory");
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
		free(q->params);
		q->params = NULL;
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
		db_set_err(db, "cannot prepare a query: too many kept");
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
		db_set_err(db, "%s", sqlite3_errmsg(db->sq));
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
			db_set_err(db, "%s%s", db->lost ? "lost the connection to the database: " : "",
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
		db_set_err(db, "%s%s", db->lost ? "lost the connection to the database: " : "", db->why);
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
		db_set_err(db, "cannot prepare a query: not a SQLite database");
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
