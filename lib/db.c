/* A program's own database in SQLite or PostgreSQL (include/evkit/db.h):
 * opening (private files, migrations on SQLite), closing, the error text,
 * whole statements, transactions and advisory locks. PostgreSQL's
 * connection and pipeline are in lib/db_pg.c, the kept statements in
 * lib/db_q.c; lib/db_impl.h holds what they share. */
#include "db_impl.h"

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

/* Sets db->err; a longer text is cut. */
void __attribute__((format(printf, 2, 3)))
db_set_err(struct evk_db *db, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
}

int
evk_db_fail(struct evk_db *db, const char *what)
{
	if (db->dialect == EVK_DB_POSTGRES) {
		if (db->lost)
			db_set_err(db, "%s: lost the connection to the database: %s", what, db->why);
		else
			db_set_err(db, "%s: %s", what, db->why[0] ? db->why : "no database");
	} else {
		db_set_err(db, "%s: %s", what, db->sq ? sqlite3_errmsg(db->sq) : "no database");
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
			db_set_err(db, "no --db given and no HOME or XDG_STATE_HOME");
			return EVK_EINVAL;
		}
		return EVK_OK;
	}
	if (strlen(path) >= sizeof(db->path)) {
		db_set_err(db, "database path too long");
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
		db_set_err(db, "no database at '%s'", db->path);
		return EVK_EUNAVAIL;
	}
	if (strcmp(db->path, ":memory:") != 0 &&
	    (evk_store_make_parents(db->path) != EVK_OK ||
	     evk_db_create_private(db->path) != EVK_OK)) {
		db_set_err(db, "cannot create database '%s': %s", db->path, strerror(errno));
		return EVK_EIO;
	}
	if (evk_store_open(db->path, &db->sq, &why) != EVK_OK) {
		db_set_err(db, "cannot open database '%s': %s", db->path, why);
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

int
evk_db_open(struct evk_db *db, const char *path, const char *default_name, bool create,
	    const struct evk_migration *migrations, int n)
{
	int rv;

	*db = (struct evk_db){ .dialect = EVK_DB_SQLITE };
	if ((rv = resolve_path(db, path, default_name)) != EVK_OK)
		return rv;
	if ((db->qs = calloc(MAX_QS, sizeof(*db->qs))) == NULL) {
		db_set_err(db, "out of memory");
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
		db_q_clear(q);
		free(q->sql);
		free(q->params);
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
	evk_store_stmt_release(db->sq);
	if (sqlite3_close(db->sq) != SQLITE_OK)
		return evk_db_fail(db, "closing the database");
	db->sq = NULL;
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
