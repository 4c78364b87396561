#include "evkit/store.h"

#include "evkit/err.h"

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A setup statement of a database another process may be creating or
 * recovering at the same moment: SQLite answers SQLITE_BUSY there without
 * calling the busy handler (about 1 open in 130 when four processes
 * create one file at once), so it is tried again, for up to the busy
 * timeout. */
static int
setup_exec(sqlite3 *db, const char *sql)
{
	const struct timespec pause = { 0, 5 * 1000 * 1000 };

	for (int i = 0; i < BUSY_TIMEOUT_MS / 5; i++) {
		if (evk_store_exec(db, sql) == EVK_OK)
			return EVK_OK;
		if ((sqlite3_errcode(db) & 0xff) != SQLITE_BUSY)
			break;
		nanosleep(&pause, NULL);
	}
	return EVK_EIO;
}

int
evk_store_open(const char *path, sqlite3 **db, const char **why)
{
	int memory = path == NULL || strcmp(path, ":memory:") == 0;

	*db = NULL;
	/* No global memory statistics: they take a process-wide mutex on
	 * every allocation. SQLite allows this only before it starts, so
	 * once; if it had started already (SQLITE_MISUSE), it is only slower. */
	static bool configured;
	if (!configured) {
		configured = true;
		(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	}
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
	/* 16 KiB pages (for a new database; WAL fixes the size from then on):
	 * a quarter of the system calls per megabyte written. */
	if ((!memory && setup_exec(*db, "PRAGMA page_size=16384") != EVK_OK) ||
	    (!memory && setup_exec(*db, "PRAGMA journal_mode=WAL") != EVK_OK) ||
	    evk_store_exec(*db, "PRAGMA synchronous=NORMAL") != EVK_OK ||
	    /* Debian's SQLite zeroes every freed page (secure_delete=ON), so
	     * each row an outbox or the hub's retention deletes is written
	     * to the WAL a second time, as zeros. FAST still clears deleted
	     * content inside the pages a change writes anyway. */
	    evk_store_exec(*db, "PRAGMA secure_delete=FAST") != EVK_OK ||
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
	/* Up to date: no write lock needed. Otherwise the version is read
	 * again inside each write transaction, so processes opening one
	 * database at once apply each migration once. */
	for (bool locked = false;; locked = true) {
		sqlite3_stmt *st;
		int version = -1;
		char bump[64];

		if (locked && evk_store_begin(db) != EVK_OK)
			return EVK_EIO;
		if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW)
				version = sqlite3_column_int(st, 0);
			sqlite3_finalize(st);
		}
		if (!locked) {
			if (version >= n)
				return EVK_OK;
			continue;
		}
		if (version < 0 || version >= n) {
			if (evk_store_exec(db, version < 0 ? "ROLLBACK" : "COMMIT") != EVK_OK ||
			    version < 0)
				return EVK_EIO;
			return EVK_OK;
		}
		snprintf(bump, sizeof(bump), "PRAGMA user_version=%d", version + 1);
		/* A failure leaves its transaction open: a ROLLBACK here would
		 * replace the reason sqlite3_errmsg gives with "not an error". */
		if (evk_store_exec(db, migrations[version]) != EVK_OK ||
		    evk_store_exec(db, bump) != EVK_OK)
			return EVK_EIO;
		if (evk_store_exec(db, "COMMIT") != EVK_OK)
			return EVK_EIO;
	}
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
 * SQL text: a busy command runs the same few statements many times. Most
 * callers pass the same string literal each time, so the entry first
 * asked for with this very pointer is tried first; the text decides. */
#define STMT_CACHE 64
static struct {
	sqlite3 *db;
	sqlite3_stmt *st;
	uintptr_t asked; /* the sql pointer it was first asked for with (as a
			  * number: it may be a stack buffer long gone) */
} cache[STMT_CACHE];
static int ncache;

static sqlite3_stmt *
stmt_ready(int i)
{
	sqlite3_reset(cache[i].st);
	sqlite3_clear_bindings(cache[i].st);
	return cache[i].st;
}

sqlite3_stmt *
evk_store_stmt(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;

	for (int i = 0; i < ncache; i++)
		if (cache[i].asked == (uintptr_t)sql) {
			if (cache[i].db == db && strcmp(sqlite3_sql(cache[i].st), sql) == 0)
				return stmt_ready(i);
			break;
		}
	for (int i = 0; i < ncache; i++)
		if (cache[i].db == db && strcmp(sqlite3_sql(cache[i].st), sql) == 0)
			return stmt_ready(i);
	if (ncache == STMT_CACHE ||
	    sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
		return NULL;
	cache[ncache].db = db;
	cache[ncache].st = st;
	cache[ncache].asked = (uintptr_t)sql;
	ncache++;
	return st;
}

void
evk_store_stmt_release_all(void)
{
	while (ncache > 0)
		sqlite3_finalize(cache[--ncache].st);
}

void
evk_store_stmt_release(sqlite3 *db)
{
	int kept = 0;
	for (int i = 0; i < ncache; i++) {
		if (cache[i].db == db)
			sqlite3_finalize(cache[i].st);
		else
			cache[kept++] = cache[i];
	}
	ncache = kept;
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

/* ---- checkpoints off the hot path ---- */

#define CKPT_WAKE_BYTES (4 << 20)
#define CKPT_FORCE_BYTES (64 << 20)

struct evk_checkpointer {
	sqlite3 *writer, *db;
	nng_thread *thread;
	nng_mtx *mtx;
	nng_cv *cv;
	int wake_pages, force_pages;
	bool wanted, stop;
	/* Failed checkpoints (under mtx): counted and the last reason kept
	 * for the program to report (lib/ never prints). */
	uint64_t failures;
	char failure[256];
};

/* Records a failed checkpoint of db. */
static void
checkpoint_failed(struct evk_checkpointer *c, sqlite3 *db)
{
	nng_mtx_lock(c->mtx);
	c->failures++;
	snprintf(c->failure, sizeof(c->failure), "%s", sqlite3_errmsg(db));
	nng_mtx_unlock(c->mtx);
}

uint64_t
evk_checkpointer_failures(struct evk_checkpointer *c, char *last, size_t n)
{
	if (c == NULL)
		return 0;
	nng_mtx_lock(c->mtx);
	uint64_t k = c->failures;
	if (last && n > 0)
		snprintf(last, n, "%s", c->failure);
	nng_mtx_unlock(c->mtx);
	return k;
}

static void
checkpointer_run(void *arg)
{
	struct evk_checkpointer *c = arg;

	for (;;) {
		nng_mtx_lock(c->mtx);
		while (!c->wanted && !c->stop)
			nng_cv_wait(c->cv);
		bool stop = c->stop;
		c->wanted = false;
		nng_mtx_unlock(c->mtx);
		if (stop)
			return;
		int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
						   NULL, NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			checkpoint_failed(c, c->db);
	}
}

/* Called by SQLite after each commit on the writer's connection. */
static int
on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct evk_checkpointer *c = arg;

	if (pages >= c->force_pages) {
		int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART,
						   NULL, NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			checkpoint_failed(c, db);
	} else if (pages >= c->wake_pages) {
		nng_mtx_lock(c->mtx);
		c->wanted = true;
		nng_cv_wake(c->cv);
		nng_mtx_unlock(c->mtx);
	}
	return SQLITE_OK;
}

struct evk_checkpointer *
evk_checkpointer_start(sqlite3 *db, const char *path, const char **why)
{
	struct evk_checkpointer *c = calloc(1, sizeof(*c));
	sqlite3_stmt *st = NULL;
	int page = 4096;

	if (c == NULL) {
		*why = "out of memory";
		return NULL;
	}
	if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0)
		page = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	c->wake_pages = CKPT_WAKE_BYTES / page;
	c->force_pages = CKPT_FORCE_BYTES / page;
	c->writer = db;
	if (evk_store_open(path, &c->db, why) != EVK_OK) {
		free(c);
		return NULL;
	}
	if (nng_mtx_alloc(&c->mtx) != 0 || nng_cv_alloc(&c->cv, c->mtx) != 0 ||
	    nng_thread_create(&c->thread, checkpointer_run, c) != 0) {
		*why = "cannot start the checkpoint thread";
		if (c->cv)
			nng_cv_free(c->cv);
		if (c->mtx)
			nng_mtx_free(c->mtx);
		sqlite3_close(c->db);
		free(c);
		return NULL;
	}
	sqlite3_wal_hook(db, on_wal_commit, c); /* replaces the automatic one */
	return c;
}

int
evk_checkpointer_stop(struct evk_checkpointer *c)
{
	if (c == NULL)
		return EVK_OK;
	sqlite3_wal_autocheckpoint(c->writer, 1000); /* SQLite's default hook */
	nng_mtx_lock(c->mtx);
	c->stop = true;
	nng_cv_wake(c->cv);
	nng_mtx_unlock(c->mtx);
	nng_thread_destroy(c->thread); /* joins */
	int rv = sqlite3_close(c->db) == SQLITE_OK ? EVK_OK : EVK_EIO;
	nng_cv_free(c->cv);
	nng_mtx_free(c->mtx);
	free(c);
	return rv;
}

/* ---- health and the seq floor ---- */

int
evk_store_check(sqlite3 *db, const char *probe_sql, char *why, size_t n)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_db_readonly(db, "main") == 1) {
		snprintf(why, n, "it is read-only (check its and its directory's permissions)");
		return EVK_EIO;
	}
	rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		snprintf(why, n, "it cannot be read: %s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return EVK_EIO;
	}
	const char *res = (const char *)sqlite3_column_text(st, 0);
	if (res == NULL || strcmp(res, "ok") != 0) {
		snprintf(why, n, "it is damaged (%s)", res ? res : "no answer");
		for (char *c = why; *c; c++)
			if (*c == '\n')
				*c = ' ';
		sqlite3_finalize(st);
		return EVK_EIO;
	}
	sqlite3_finalize(st);
	if (probe_sql == NULL)
		return EVK_OK;
	if (evk_store_begin(db) != EVK_OK || evk_store_exec(db, probe_sql) != EVK_OK ||
	    evk_store_exec(db, "COMMIT") != EVK_OK) {
		snprintf(why, n, "it cannot be written: %s", sqlite3_errmsg(db));
		evk_store_exec(db, "ROLLBACK");
		return EVK_EIO;
	}
	return EVK_OK;
}

int
evk_seqfile_read(const char *path, uint64_t *value, char *tag, size_t tag_n)
{
	char text[128];
	FILE *f = fopen(path, "re");

	*value = 0;
	if (tag && tag_n)
		tag[0] = '\0';
	if (f == NULL)
		return errno == ENOENT ? EVK_OK : EVK_EIO;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	bool err = ferror(f);
	fclose(f);
	if (err)
		return EVK_EIO;
	text[n] = '\0';
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (n == 0 || text[0] < '0' || text[0] > '9' || errno != 0 ||
	    (*end != '\0' && *end != '\n'))
		return EVK_EINVAL;
	*value = v;
	if (*end == '\0' || *++end == '\0')
		return EVK_OK; /* one line: no tag */
	size_t len = 0;
	while (end[len] >= '!' && end[len] <= '~')
		len++;
	if (len == 0 || len > 63 || end[len] != '\n' || end[len + 1] != '\0')
		return EVK_EINVAL;
	if (tag && tag_n) {
		if (len >= tag_n)
			return EVK_EINVAL;
		memcpy(tag, end, len);
		tag[len] = '\0';
	}
	return EVK_OK;
}

int
evk_seqfile_write(const char *path, uint64_t value, const char *tag)
{
	char tmp[4096], text[128];
	int len = snprintf(text, sizeof(text), "%llu\n%s%s", (unsigned long long)value,
			   tag && tag[0] ? tag : "", tag && tag[0] ? "\n" : "");
	if (len < 0 || (size_t)len >= sizeof(text))
		return EVK_EINVAL;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return EVK_EINVAL;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return EVK_EIO;
	bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return EVK_EIO;
	}
	/* The rename itself lasts once the directory is synced. */
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return EVK_OK;
}
