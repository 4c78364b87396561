/* A program's own database (casectl's cases, evworker's jobs), in SQLite
 * (a private file, the embedded default) or PostgreSQL (shared by many
 * hosts): opened and migrated, kept prepared statements, transactions and
 * the error text a program prints. SQLite is built on lib/store.c,
 * PostgreSQL on libpq. Never prints or exits: each call returns an
 * evk_err code and leaves the reason in evk_db_error().
 *
 * Which store: the --db value. "postgresql://..." and "postgres://..."
 * URIs and libpq key=value strings ("host=/run/pg dbname=evkit", any
 * value with a '=' before its first '/') are PostgreSQL, as libpq reads
 * them; anything else is a SQLite path. A program's tables live in a
 * PostgreSQL schema of their own, named after the default file without
 * ".db" ("jobs", "cases"), so that two programs may share one database.
 *
 * Porting a caller (sqlite3_* to evk_q_*), for both stores at once:
 *   sqlite3_stmt *st = evk_store_stmt(db, sql)  ->  struct evk_q *q = evk_db_q(db, sql)
 *   sqlite3_bind_int64/int/text/blob/null/double -> evk_q_bind_* (same
 *       1-based index; values are not copied: they must stay until the
 *       last step, as with SQLITE_STATIC; NULL text binds NULL)
 *   sqlite3_step == SQLITE_ROW / SQLITE_DONE -> evk_q_step == EVK_ROW /
 *       EVK_DONE (anything else: an evk_err, reason in evk_db_error)
 *   sqlite3_column_int64/int/text/blob/bytes/double/type/name ->
 *       evk_q_int64/int/text/blob/bytes/double/is_null/type/name
 *       (0-based; text is NUL-terminated, NULL for SQL NULL)
 *   sqlite3_reset -> evk_q_reset; step-expecting-no-row -> evk_q_done
 *   sqlite3_last_insert_rowid -> "INSERT ... RETURNING id" and a step
 *       (SQLite has RETURNING too); sqlite3_changes -> evk_q_changes
 *   BEGIN IMMEDIATE / COMMIT / ROLLBACK -> evk_db_begin/commit/rollback
 * SQL is written once with '?' (or '?N') placeholders, turned into $1..
 * for PostgreSQL. Portable SQL: coalesce, CASE, count/sum/min/max of one
 * argument, ON CONFLICT ... DO NOTHING/UPDATE, RETURNING, '||'. Where the
 * dialects differ (SQLite's two-argument max(), randomblob, group_concat,
 * INTEGER PRIMARY KEY versus BIGSERIAL, BLOB versus BYTEA), pick by
 * evk_db_dialect(db). Integers are 64-bit in both (PostgreSQL: BIGINT;
 * a column declared INTEGER holds only 32 bits there). Text is UTF-8
 * without NUL; byte strings are BLOB/BYTEA columns bound with
 * evk_q_bind_blob. */
#ifndef EVKIT_DB_H
#define EVKIT_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVK_DB_PATH_MAX 4096
#define EVK_DB_ERR_MAX 512

enum evk_dialect { EVK_DB_SQLITE = 1, EVK_DB_POSTGRES = 2 };

/* evk_q_step's results besides the evk_err codes (which are below 100). */
enum { EVK_ROW = 100, EVK_DONE = 101 };

/* A column's type (evk_q_type). */
enum evk_coltype { EVK_COL_NULL, EVK_COL_INT, EVK_COL_REAL, EVK_COL_TEXT, EVK_COL_BLOB };

struct evk_q;
struct pg_conn;

struct evk_db {
	enum evk_dialect dialect;
	sqlite3 *sq;                 /* SQLite: the handle; NULL until opened */
	struct pg_conn *pg;          /* PostgreSQL: the connection, or NULL */
	struct evk_q *qs;            /* the kept statements */
	int nqs;
	bool in_tx;                  /* PostgreSQL: inside BEGIN ... COMMIT */
	bool tx_failed;              /* PostgreSQL: a statement of the transaction failed */
	int npiped;                  /* PostgreSQL: statements sent, not yet answered */
	bool lost;                   /* PostgreSQL: the connection is gone */
	int64_t locks[256];          /* PostgreSQL: advisory locks held (evk_db_try_lock) */
	int nlocks;
	int64_t unlocks[256];        /* PostgreSQL: to release once the transaction commits */
	int nunlocks;
	char path[EVK_DB_PATH_MAX];  /* the file, or the connection string */
	char err[EVK_DB_ERR_MAX];    /* the last failure, for the program to print */
	char why[EVK_DB_ERR_MAX];    /* PostgreSQL: the server's last message */
};

/* One migration: sql brings the schema one version up, on both stores
 * unless pg is set, which PostgreSQL then runs instead ("" for nothing:
 * a step its first migration already took). */
struct evk_migration {
	const char *sql;
	const char *pg;
};

/* True when path names a PostgreSQL database (see above). */
bool evk_db_is_postgres(const char *path);

/* Opens the database at path (NULL: $XDG_STATE_HOME/evkit/default_name)
 * and brings its schema up to date: migration i takes it from version i
 * to i+1, each in its own transaction, applied once even when several
 * processes open it at once (SQLite: PRAGMA user_version; PostgreSQL:
 * table evk_schema under an advisory lock).
 * SQLite: WAL, a busy timeout and foreign keys (evk_store_open); a new
 * file is created 0600 whatever the umask, so its WAL and SHM files are
 * 0600 too. create == false: a missing file is an error (EVK_EUNAVAIL)
 * instead (PostgreSQL: a schema without tables).
 * No path and no default is EVK_EINVAL. On failure nothing is left open
 * and db->err says why. */
int evk_db_open(struct evk_db *db, const char *path, const char *default_name, bool create,
		const struct evk_migration *migrations, int n);

/* Finalizes the kept statements and closes; EVK_EIO (see err) when the
 * store refused. A db that never opened is fine. */
int evk_db_close(struct evk_db *db);

enum evk_dialect evk_db_dialect(const struct evk_db *db);

/* Creates path, if it is missing, as an empty file of mode 0600 (the
 * umask does not apply). EVK_OK when it exists already, whatever its mode. */
int evk_db_create_private(const char *path);

/* A kept prepared statement for sql, reset and unbound, found again by
 * its text (pass the same literal: the pointer is tried first); NULL with
 * err set. At most 96 per database. */
struct evk_q *evk_db_q(struct evk_db *db, const char *sql);

int evk_q_bind_int64(struct evk_q *q, int i, int64_t v);
int evk_q_bind_double(struct evk_q *q, int i, double v);
int evk_q_bind_text(struct evk_q *q, int i, const char *s); /* NULL: NULL */
int evk_q_bind_textn(struct evk_q *q, int i, const char *s, size_t n);
int evk_q_bind_blob(struct evk_q *q, int i, const void *p, size_t n);
int evk_q_bind_null(struct evk_q *q, int i);

/* EVK_ROW (a row to read), EVK_DONE, or an evk_err with err set. */
int evk_q_step(struct evk_q *q);
/* Steps once expecting no row (or ignoring the first row of a RETURNING)
 * and resets: EVK_OK or an evk_err. */
int evk_q_done(struct evk_q *q);
void evk_q_reset(struct evk_q *q);
/* Rows the last INSERT, UPDATE or DELETE of q changed. */
int64_t evk_q_changes(struct evk_q *q);

int evk_q_ncols(struct evk_q *q);
const char *evk_q_name(struct evk_q *q, int col);
enum evk_coltype evk_q_type(struct evk_q *q, int col);
bool evk_q_is_null(struct evk_q *q, int col);
int64_t evk_q_int64(struct evk_q *q, int col);
int evk_q_int(struct evk_q *q, int col);
double evk_q_double(struct evk_q *q, int col);
const char *evk_q_text(struct evk_q *q, int col);
const void *evk_q_blob(struct evk_q *q, int col);
size_t evk_q_bytes(struct evk_q *q, int col);

/* The underlying SQLite statement, for callers not yet ported (NULL on
 * PostgreSQL). */
sqlite3_stmt *evk_q_sqlite(struct evk_q *q);

/* A kept SQLite statement (evk_store_stmt) for callers not yet ported;
 * NULL with err set, and always on PostgreSQL. */
sqlite3_stmt *evk_db_stmt(struct evk_db *db, const char *sql);

/* Runs sql (no parameters, no rows; several statements allowed). */
int evk_db_exec(struct evk_db *db, const char *sql);

/* Statements whose answer the caller does not wait for, inside a
 * transaction: PostgreSQL sends them (libpq's pipeline mode) with the
 * next statement that waits for its answer, or with the COMMIT, in one
 * round trip; a failure shows there (that statement, or the commit,
 * fails with the first failure's reason) and every later statement of
 * the transaction fails too. SQLite, and PostgreSQL outside a
 * transaction, run them at once. evk_q_changes is not known after
 * evk_q_send. evk_db_send takes one statement, no parameters, no rows;
 * evk_q_send a bound kept statement (its values are copied when sent)
 * whose rows, if any, are dropped; it resets q. */
int evk_db_send(struct evk_db *db, const char *sql);
int evk_q_send(struct evk_q *q);

/* A write transaction: SQLite BEGIN IMMEDIATE (retried while another
 * process writes); PostgreSQL BEGIN (READ COMMITTED: rows are locked as
 * they are written, claims use FOR UPDATE SKIP LOCKED), sent with the
 * transaction's first statement (evk_db_send), so a failure to begin
 * shows there. COMMIT (PostgreSQL: in one round trip with the statements
 * sent before and the unlocks waiting for it), ROLLBACK. */
int evk_db_begin(struct evk_db *db);
int evk_db_commit(struct evk_db *db);
int evk_db_rollback(struct evk_db *db);
/* COMMIT without waiting for the answer, for a transaction whose outcome
 * the caller need not know at once: PostgreSQL sends it with the
 * statements before it to the server, which commits as it reads them;
 * the answer is read, and a failure shows, with the next statement that
 * waits (or at evk_db_close). SQLite, a transaction with unlocks waiting
 * for its commit, or one where a statement failed: evk_db_commit. */
int evk_db_commit_send(struct evk_db *db);

/* Steps st once, expecting no row (an INSERT, UPDATE or DELETE), and
 * resets it (SQLite only; evk_q_done for both). */
int evk_db_step_done(struct evk_db *db, sqlite3_stmt *st);

/* Records a failure: err becomes "what: <the store's message>". Returns
 * EVK_EIO, so `return evk_db_fail(db, "...")` reads well. A lost
 * PostgreSQL connection says so. */
int evk_db_fail(struct evk_db *db, const char *what);

/* The last failure's text: "what: reason". */
const char *evk_db_error(const struct evk_db *db);

/* True once the PostgreSQL connection is gone (never for SQLite). */
bool evk_db_lost(const struct evk_db *db);

/* PostgreSQL: the connection's socket, for a program to poll while it
 * waits (readable when the server says goodbye); -1 on SQLite. */
int evk_db_fd(const struct evk_db *db);
/* PostgreSQL: reads what the server sent meanwhile and, with ping, runs a
 * trivial query; EVK_EIO with err set ("lost the connection ...") once
 * the connection is gone. Outside a transaction. EVK_OK on SQLite. */
int evk_db_alive(struct evk_db *db, bool ping);

/* PostgreSQL session-level advisory locks on a 64-bit key (a job id),
 * held until unlocked or the connection ends: *got says whether it was
 * free (or held by this session already). The keys held are in
 * db->locks[0..nlocks) (at most 256: EVK_ETOOLONG past them). On SQLite
 * both are no-ops with *got true. */
int evk_db_try_lock(struct evk_db *db, int64_t key, bool *got);
/* Inside a transaction the unlock is sent with the next statement
 * (evk_db_send). */
int evk_db_unlock(struct evk_db *db, int64_t key);
/* Records that a statement of the caller's took the lock on key (one
 * that calls pg_try_advisory_lock itself, to save a round trip):
 * EVK_ETOOLONG past 256 held. */
int evk_db_lock_taken(struct evk_db *db, int64_t key);
/* Releases the lock once the open transaction commits (at once outside
 * one): a change that ends what the lock guards is seen by others before
 * the lock is free. A rollback keeps the lock. */
int evk_db_unlock_at_commit(struct evk_db *db, int64_t key);

#endif
