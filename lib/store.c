#include "evkit/store.h"

#include "evkit/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BUSY_TIMEOUT_MS 10000

/* Creates every missing directory above path's last slash. */
int
evk_store_make_parents(const char *path)
{
	char dir[4096];
	size_t n = strlen(path);

	if (n >= sizeof(dir))
		return EVK_EINVAL;
	memcpy(dir, path, n + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return EVK_EIO;
		*p = '/';
	}
	return EVK_OK;
}

int
evk_store_open(const char *path, sqlite3 **db, const char **why)
{
	int memory = path == NULL || strcmp(path, ":memory:") == 0;

	*db = NULL;
	if (!memory && evk_store_make_parents(path) != EVK_OK) {
		*why = "cannot create its directory";
		return EVK_EIO;
	}
	int rc = sqlite3_open_v2(memory ? ":memory:" : path, db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					 SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		*why = *db ? sqlite3_errmsg(*db) : "out of memory";
		goto fail;
	}
	sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(*db, 1);
	if ((!memory && evk_store_exec(*db, "PRAGMA journal_mode=WAL") != EVK_OK) ||
	    evk_store_exec(*db, "PRAGMA synchronous=NORMAL") != EVK_OK ||
	    evk_store_exec(*db, "PRAGMA foreign_keys=ON") != EVK_OK) {
		*why = sqlite3_errmsg(*db);
		goto fail;
	}
	return EVK_OK;
fail:
	/* The message lives in the handle; keep it readable for the caller
	 * by copying before closing. */
	{
		static char msg[256];
		snprintf(msg, sizeof(msg), "%s", *why);
		*why = msg;
	}
	sqlite3_close(*db);
	*db = NULL;
	return EVK_EIO;
}

int
evk_store_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? EVK_OK : EVK_EIO;
}

int
evk_store_migrate(sqlite3 *db, const char *const *migrations, int n)
{
	sqlite3_stmt *st;
	int version = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return EVK_EIO;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	for (int v = version; v < n; v++) {
		char bump[64];
		snprintf(bump, sizeof(bump), "PRAGMA user_version=%d", v + 1);
		if (evk_store_exec(db, "BEGIN IMMEDIATE") != EVK_OK)
			return EVK_EIO;
		if (evk_store_exec(db, migrations[v]) != EVK_OK ||
		    evk_store_exec(db, bump) != EVK_OK) {
			evk_store_exec(db, "ROLLBACK");
			return EVK_EIO;
		}
		if (evk_store_exec(db, "COMMIT") != EVK_OK)
			return EVK_EIO;
	}
	return EVK_OK;
}

int
evk_store_default_path(const char *name, char *out, size_t n)
{
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int w;

	if (state && *state == '/')
		w = snprintf(out, n, "%s/evkit/%s", state, name);
	else if (home && *home == '/')
		w = snprintf(out, n, "%s/.local/state/evkit/%s", home, name);
	else
		return EVK_EINVAL;
	return w > 0 && (size_t)w < n ? EVK_OK : EVK_EINVAL;
}

/* Prepared statements kept for the life of the process, found by their
 * SQL text: a busy command runs the same few statements many times. */
#define STMT_CACHE 64
static struct {
	sqlite3 *db;
	sqlite3_stmt *st;
} cache[STMT_CACHE];
static int ncache;

sqlite3_stmt *
evk_store_stmt(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;

	for (int i = 0; i < ncache; i++) {
		if (cache[i].db == db && strcmp(sqlite3_sql(cache[i].st), sql) == 0) {
			sqlite3_reset(cache[i].st);
			sqlite3_clear_bindings(cache[i].st);
			return cache[i].st;
		}
	}
	if (ncache == STMT_CACHE ||
	    sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
		return NULL;
	cache[ncache].db = db;
	cache[ncache].st = st;
	ncache++;
	return st;
}

void
evk_store_stmt_release_all(void)
{
	while (ncache > 0)
		sqlite3_finalize(cache[--ncache].st);
}

int
evk_store_begin(sqlite3 *db)
{
	/* The busy timeout waits inside each attempt; a writer that holds the
	 * lock for long gets a few more chances before giving up. */
	for (int i = 0; i < 50; i++) {
		if (evk_store_exec(db, "BEGIN IMMEDIATE") == EVK_OK)
			return EVK_OK;
		if (sqlite3_errcode(db) != SQLITE_BUSY)
			break;
	}
	return EVK_EIO;
}
