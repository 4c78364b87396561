/* SQLite helpers shared by the hub, the worker, cases and widgets. */
#ifndef EVKIT_STORE_H
#define EVKIT_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Opens (creating) the database at path, or an in-memory one for NULL or
 * ":memory:", with WAL, synchronous=NORMAL (durable against a killed
 * process), foreign keys and a busy timeout. Creates the file's parent
 * directory when missing. On failure *db is NULL and *why (a static or
 * sqlite string valid until the next call) names the problem. */
int evk_store_open(const char *path, sqlite3 **db, const char **why);

/* BEGIN IMMEDIATE (a write transaction now), retried while other
 * processes hold the write lock. */
int evk_store_begin(sqlite3 *db);

/* Creates the missing directories above PATH, each mode 0700. */
int evk_store_make_parents(const char *path);

/* Checkpoints off the writer's path: a thread with its own connection to
 * path copies db's WAL back into the database (PASSIVE) whenever it grew
 * by 4 MiB; past 64 MiB the writer itself forces a RESTART, which bounds
 * the WAL. Replaces SQLite's automatic checkpoint, which runs inside the
 * committing call and fsyncs. NULL (automatic checkpoints stay) when the
 * thread cannot start; *why says why. */
struct evk_checkpointer;
struct evk_checkpointer *evk_checkpointer_start(sqlite3 *db, const char *path,
						const char **why);
/* Stops the thread (waiting for a checkpoint under way) and restores the
 * automatic checkpoint. NULL is allowed. EVK_EIO when its connection did
 * not close cleanly. */
int evk_checkpointer_stop(struct evk_checkpointer *c);
/* Checkpoints that failed so far (they are tried again later); the last
 * one's reason goes to last[0..n) when last is not NULL. */
uint64_t evk_checkpointer_failures(struct evk_checkpointer *c, char *last, size_t n);

/* Checks at start that db is usable: not read-only, passing SQLite's
 * quick_check, and (when probe_sql is not NULL) writable, by running
 * probe_sql in a write transaction. EVK_EIO with the reason ("it is
 * damaged (...)") in why[0..n) otherwise. */
int evk_store_check(sqlite3 *db, const char *probe_sql, char *why, size_t n);

/* A small file holding one number and an optional tag (a second line,
 * at most 63 printable characters), replaced atomically and durably (a
 * temporary file, fsync, rename, fsync of the directory), mode 0600.
 * Reading a missing file gives 0 and ""; a file of one line gives its
 * tag as ""; EVK_EINVAL when it holds no number or a bad tag. tag may be
 * NULL to write none or ignore it; tag_n is its buffer's size. */
int evk_seqfile_read(const char *path, uint64_t *value, char *tag, size_t tag_n);
int evk_seqfile_write(const char *path, uint64_t value, const char *tag);

/* Runs sql (no parameters, no rows). */
int evk_store_exec(sqlite3 *db, const char *sql);

/* Applies migrations: migrations[i] brings the schema from version i to
 * i+1 (PRAGMA user_version), each in its own transaction. When one fails,
 * its transaction is left open, so that sqlite3_errmsg says why: the
 * caller closes the database (which rolls it back) or rolls it back. */
int evk_store_migrate(sqlite3 *db, const char *const *migrations, int n);

/* The default database path $XDG_STATE_HOME/evkit/name, else
 * ~/.local/state/evkit/name, written to out. */
int evk_store_default_path(const char *name, char *out, size_t n);

/* A prepared statement for sql on db, reset and unbound, kept (and
 * found again by its text) until evk_store_stmt_release(db) or
 * evk_store_stmt_release_all; NULL when it cannot be prepared (see
 * sqlite3_errmsg) or 64 are kept already. */
sqlite3_stmt *evk_store_stmt(sqlite3 *db, const char *sql);
/* Finalizes the statements kept for db, leaving other databases' kept;
 * call before closing db. */
void evk_store_stmt_release(sqlite3 *db);
/* Finalizes every kept statement; call before closing the databases. */
void evk_store_stmt_release_all(void);

#endif
