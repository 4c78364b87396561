/* A program's own SQLite database (casectl's cases, evworker's jobs):
 * opened private and migrated, with the statements, transactions and the
 * error text a program prints. Built on lib/store.c; never prints or
 * exits: each call returns an evk_err code and leaves the reason in
 * evk_db_error(). */
#ifndef EVKIT_DB_H
#define EVKIT_DB_H

#include <sqlite3.h>
#include <stdbool.h>

#define EVK_DB_PATH_MAX 4096
#define EVK_DB_ERR_MAX 512

struct evk_db {
	sqlite3 *sq;                 /* NULL until opened */
	char path[EVK_DB_PATH_MAX];  /* the file opened */
	char err[EVK_DB_ERR_MAX];    /* the last failure, for the program to print */
};

/* Opens the database at path (NULL: $XDG_STATE_HOME/evkit/default_name),
 * with WAL, a busy timeout and foreign keys (evk_store_open), then brings
 * its schema up to date (evk_store_migrate). A new file is created 0600
 * whatever the umask, so its WAL and SHM files are 0600 too (SQLite gives
 * them the database's mode). create == false: a missing file is an error
 * (EVK_EUNAVAIL) instead; no path and no
 * default is EVK_EINVAL. On failure db->sq is NULL (nothing to close) and
 * db->err says why. */
int evk_db_open(struct evk_db *db, const char *path, const char *default_name, bool create,
		const char *const *migrations, int n);

/* Finalizes the kept statements and closes; EVK_EIO (see err) when SQLite
 * refused. A db that never opened is fine. */
int evk_db_close(struct evk_db *db);

/* Creates path, if it is missing, as an empty file of mode 0600 (the
 * umask does not apply). EVK_OK when it exists already, whatever its mode. */
int evk_db_create_private(const char *path);

/* A kept prepared statement for sql (evk_store_stmt); NULL with err set. */
sqlite3_stmt *evk_db_stmt(struct evk_db *db, const char *sql);

/* Runs sql (no parameters, no rows). */
int evk_db_exec(struct evk_db *db, const char *sql);

/* BEGIN IMMEDIATE (retried while another process writes), COMMIT and
 * ROLLBACK. */
int evk_db_begin(struct evk_db *db);
int evk_db_commit(struct evk_db *db);
int evk_db_rollback(struct evk_db *db);

/* Steps st once, expecting no row (an INSERT, UPDATE or DELETE), and
 * resets it. */
int evk_db_step_done(struct evk_db *db, sqlite3_stmt *st);

/* Records a failure: err becomes "what: <sqlite's message>". Returns
 * EVK_EIO, so `return evk_db_fail(db, "...")` reads well. */
int evk_db_fail(struct evk_db *db, const char *what);

/* The last failure's text: "what: reason". */
const char *evk_db_error(const struct evk_db *db);

#endif
