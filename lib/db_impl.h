/* Private declarations shared by lib/db.c (open, close, errors,
 * transactions, locks), lib/db_pg.c (PostgreSQL's connection and
 * pipeline) and lib/db_q.c (the kept statements), behind
 * include/evkit/db.h. Not installed. */
#ifndef EVKIT_DB_IMPL_H
#define EVKIT_DB_IMPL_H

#include "evkit/db.h"

#include <libpq-fe.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Private to lib/: none of these is exported from libevkit.so. */
#pragma GCC visibility push(hidden)

#define MAX_QS 96     /* kept statements per database */
#define MAX_PARAMS 4096 /* parameters of one PostgreSQL statement */

struct evk_q {
	struct evk_db *db;
	uintptr_t asked;      /* the sql pointer it was first asked for with */
	char *sql;            /* PostgreSQL: the text asked for (owned) */
	sqlite3_stmt *st;     /* SQLite */
	/* PostgreSQL: a statement prepared on the connection as "evkN", and
	 * its parameters (arrays of nparams, in one allocation: params) */
	int nparams;
	void *params;
	const char **vals;
	int *lens, *fmts;
	char (*num)[32]; /* numbers bound, as text */
	PGresult *res;        /* the result of the last step's execution */
	int row, nrows;       /* the current row (-1 before the first) */
	unsigned char *blob;  /* a bytea value unescaped, and where from */
	size_t blob_len;
	int blob_row, blob_col;
	int64_t changes;      /* rows the last execution changed */
};

/* lib/db.c: sets db->err; a longer text is cut. */
void db_set_err(struct evk_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* lib/db_q.c: drops q's PostgreSQL result and unescaped bytea; no row. */
void db_q_clear(struct evk_q *q);

/* lib/db_pg.c: db->why from libpq's message msg (its first line); notes a
 * lost connection (db->lost) and a failed transaction (db->tx_failed). */
void pg_why(struct evk_db *db, const char *msg);

/* lib/db_pg.c: sends the kept statement name, or sql, with n parameters
 * into the pipeline without waiting; EVK_EIO with db->why on failure. */
int pg_send(struct evk_db *db, const char *name, const char *sql, int n, const char *const *vals,
	    const int *lens, const int *fmts);

/* lib/db_pg.c: ends an open pipeline and reads its answers; *wanted (the
 * caller clears it) is statement want's; EVK_EIO, db->why set, if any failed. */
int pg_sync(struct evk_db *db, int want, PGresult **wanted);

/* lib/db_pg.c: runs sql after what was sent before; *rows (the caller
 * clears it) the result when not NULL; EVK_EIO with db->why on failure. */
int pg_exec(struct evk_db *db, const char *sql, PGresult **rows);

/* lib/db_pg.c: connects to db->path, sets the search path to the schema
 * named after default_name and migrates it; EVK_EUNAVAIL (no schema, not
 * create) or EVK_EIO with db->err set, db->pg NULL, on failure. */
int pg_open(struct evk_db *db, const char *default_name, bool create, const struct evk_migration *m,
	    int n);

#pragma GCC visibility pop

#endif
