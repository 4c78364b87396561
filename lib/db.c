/* A program's own SQLite database: private files, migrations, statements
 * and the error text (include/evkit/db.h). */
#include "evkit/db.h"

#include "evkit/err.h"
#include "evkit/store.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Sets db->err; a longer text is cut. */
static void __attribute__((format(printf, 2, 3)))
set_err(struct evk_db *db, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(db->err, sizeof(db->err), fmt, ap);
	va_end(ap);
}

int
evk_db_fail(struct evk_db *db, const char *what)
{
	set_err(db, "%s: %s", what,
		 db->sq ? sqlite3_errmsg(db->sq) : "no database");
	return EVK_EIO;
}

const char *
evk_db_error(const struct evk_db *db)
{
	return db->err;
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

int
evk_db_open(struct evk_db *db, const char *path, const char *default_name, bool create,
	    const char *const *migrations, int n)
{
	const char *why;
	int rv;

	db->sq = NULL;
	db->err[0] = '\0';
	if ((rv = resolve_path(db, path, default_name)) != EVK_OK)
		return rv;
	if (!create && access(db->path, F_OK) != 0) {
		set_err(db, "no database at '%s'", db->path);
		return EVK_EUNAVAIL;
	}
	if (strcmp(db->path, ":memory:") != 0 &&
	    (evk_store_make_parents(db->path) != EVK_OK ||
	     evk_db_create_private(db->path) != EVK_OK)) {
		set_err(db, "cannot create database '%s': %s", db->path,
			 strerror(errno));
		return EVK_EIO;
	}
	if (evk_store_open(db->path, &db->sq, &why) != EVK_OK) {
		set_err(db, "cannot open database '%s': %s", db->path, why);
		return EVK_EIO;
	}
	if (evk_store_migrate(db->sq, migrations, n) != EVK_OK) {
		evk_db_fail(db, "cannot set up the database");
		sqlite3_close(db->sq);
		db->sq = NULL;
		return EVK_EIO;
	}
	return EVK_OK;
}

int
evk_db_close(struct evk_db *db)
{
	if (db->sq == NULL)
		return EVK_OK;
	evk_store_stmt_release_all();
	if (sqlite3_close(db->sq) != SQLITE_OK)
		return evk_db_fail(db, "closing the database");
	db->sq = NULL;
	return EVK_OK;
}

sqlite3_stmt *
evk_db_stmt(struct evk_db *db, const char *sql)
{
	sqlite3_stmt *st = evk_store_stmt(db->sq, sql);
	if (st == NULL)
		evk_db_fail(db, "cannot prepare a query");
	return st;
}

int
evk_db_exec(struct evk_db *db, const char *sql)
{
	return evk_store_exec(db->sq, sql) == EVK_OK ? EVK_OK : evk_db_fail(db, sql);
}

int
evk_db_begin(struct evk_db *db)
{
	return evk_store_begin(db->sq) == EVK_OK ? EVK_OK
						  : evk_db_fail(db, "cannot start a transaction");
}

int
evk_db_commit(struct evk_db *db)
{
	return evk_store_exec(db->sq, "COMMIT") == EVK_OK
		       ? EVK_OK
		       : evk_db_fail(db, "cannot commit a transaction");
}

int
evk_db_rollback(struct evk_db *db)
{
	return evk_store_exec(db->sq, "ROLLBACK") == EVK_OK
		       ? EVK_OK
		       : evk_db_fail(db, "cannot roll back a transaction");
}

int
evk_db_step_done(struct evk_db *db, sqlite3_stmt *st)
{
	int rv = sqlite3_step(st) == SQLITE_DONE ? EVK_OK : evk_db_fail(db, "cannot write");
	sqlite3_reset(st);
	return rv;
}
