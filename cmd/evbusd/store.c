/* evbusd's log: the SQLite store (its schema, checks and lock), its seq
 * file, its private files, trimming to --retain, and what a failed write
 * says. */
#include "evbusd.h"

#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* True when the file at path (if any) reached the disk. */
static bool
synced(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	bool ok = fdatasync(fd) == 0;
	return close(fd) == 0 && ok;
}

/* True when the log and its WAL reached the disk. */
static bool
store_synced(const char *store)
{
	char wal[4096 + 8];
	snprintf(wal, sizeof(wal), "%s-wal", store);
	return synced(store) && synced(wal);
}

/* Sets h->boot to the machine's boot id (a new one at each boot). */
static void
hub_boot_id(struct hub *h)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	size_t n = f ? fread(h->boot, 1, sizeof(h->boot) - 1, f) : 0;

	if (f)
		fclose(f);
	while (n > 0 && (h->boot[n - 1] < '!' || h->boot[n - 1] > '~'))
		n--;
	h->boot[n] = '\0';
	h->boot_known = n > 0 && strspn(h->boot, "0123456789abcdef-") == n;
	if (!h->boot_known)
		snprintf(h->boot, sizeof(h->boot), "unknown");
}

/* Sets the head to from, above the log's (which lacks from's events),
 * in meta too, so that the next start goes on from there. */
static void
hub_raise_head(struct hub *h, const char *path, uint64_t from)
{
	sqlite3_stmt *st;

	if (h->oldest > h->head) /* an empty log */
		h->oldest = from + 1;
	h->head = from;
	if (sqlite3_prepare_v2(h->db, "UPDATE meta SET value = ? WHERE key = 'head'",
			       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, (sqlite3_int64)from) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		evk_die(EVK_EX_IOERR, "cannot write store '%s': %s", path,
			sqlite3_errmsg(h->db));
	sqlite3_finalize(st);
}

/* Refuses a store that is read-only or damaged (74), and keeps seqs
 * from being given twice: when the store came back empty, or the
 * machine went down since seqs up to the seq file's number were handed
 * out (the log may have lost those not yet synced), numbering goes on
 * after that number. */
static void
hub_check_store(struct hub *h, const char *path)
{
	char why[512], tag[64];
	uint64_t floor;
	int rv;

	/* Damage was looked for before the migrations (hub_open_store); now
	 * whether it takes a write. */
	if (evk_store_begin(h->db) != EVK_OK ||
	    evk_store_exec(h->db, "UPDATE meta SET value = value WHERE key = 'head'") != EVK_OK ||
	    evk_store_exec(h->db, "COMMIT") != EVK_OK) {
		snprintf(why, sizeof(why), "%s", sqlite3_errmsg(h->db));
		evk_store_exec(h->db, "ROLLBACK");
		evk_die(EVK_EX_IOERR, "store '%s' cannot be used: it cannot be written: %s", path, why);
	}
	if ((size_t)snprintf(h->seqfile, sizeof(h->seqfile), "%s.seq", path) >=
	    sizeof(h->seqfile))
		evk_die(EVK_EX_USAGE, "store path too long: '%s'", path);
	if ((rv = evk_seqfile_read(h->seqfile, &floor, tag, sizeof(tag))) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot read '%s' (how far seqs went): %s", h->seqfile,
			rv == EVK_EINVAL ? "it holds no number" : strerror(errno));
	hub_boot_id(h);
	/* A file of one number (an older evbusd's) names no boot: the log is
	 * trusted then, as that evbusd did. A hub with --synchronous full
	 * synced each commit before handing its seqs out: it writes "synced"
	 * instead of the boot, and its log is trusted after any crash. */
	bool same_boot = tag[0] == '\0' || strcmp(tag, "synced") == 0 ||
			 (h->boot_known && strcmp(tag, h->boot) == 0);
	if (h->sync_full && store_synced(path)) /* what an earlier hub left unsynced */
		snprintf(h->boot, sizeof(h->boot), "synced");
	if (h->head == 0 && floor > 0) {
		evk_warn("store '%s' is empty, but seqs up to %llu may have been used "
			 "(says '%s'): numbering goes on after them (remove both files "
			 "to start a new log from 1)",
			 path, (unsigned long long)floor, h->seqfile);
		hub_raise_head(h, path, floor);
	} else if (floor > h->head && !same_boot) {
		evk_warn("store '%s': the hub did not stop cleanly and the machine restarted "
			 "since; events acknowledged after the log's last sync may be lost: "
			 "numbering goes on after %llu, the highest seq that may have been "
			 "given (the log ends at %llu; subscribers see the seqs between as a gap)",
			 path, (unsigned long long)floor, (unsigned long long)h->head);
		hub_raise_head(h, path, floor);
	}
	/* A log that never held an event has no seq file: it may be empty.
	 * Otherwise the file names this boot before any seq is given. */
	h->reserved = floor;
	if (h->head > 0 && (h->reserved <= h->head || strcmp(tag, h->boot) != 0)) {
		uint64_t ceiling = h->head + SEQ_RESERVE > floor ? h->head + SEQ_RESERVE : floor;
		if (evk_seqfile_write(h->seqfile, ceiling, h->boot) != EVK_OK)
			evk_die(EVK_EX_IOERR, "cannot write '%s': %s", h->seqfile, strerror(errno));
		h->reserved = ceiling;
	}
}

void
hub_open_store(struct hub *h, const char *path)
{
	static const char *const migrations[] = {
		"CREATE TABLE events (seq INTEGER PRIMARY KEY, line BLOB NOT NULL);"
		"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
		"INSERT INTO meta VALUES ('head', 0);",
		/* 2: a row holds events first..last (consecutive, at most
		 * row_events) as the lines with their seq that were fanned
		 * out ('\n' after each): one insert for many events. */
		"CREATE TABLE frames (first INTEGER PRIMARY KEY, last INTEGER NOT NULL,"
		" lines BLOB NOT NULL);"
		"INSERT INTO frames (first, last, lines)"
		" SELECT seq, seq, CAST(line || char(10) AS BLOB) FROM events ORDER BY seq;"
		"DROP TABLE events;",
		/* 3: per producer ('Q' frames), the highest sequence stored,
		 * written in the transaction that stores its events. */
		"CREATE TABLE producers (id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;",
	};
	const char *why;
	sqlite3_stmt *st;

	struct stat st_file;
	if (evk_store_open(path, &h->db, &why) != EVK_OK)
		evk_die(path && stat(path, &st_file) == 0 ? EVK_EX_IOERR : EVK_EX_UNAVAILABLE,
			"cannot open store '%s': %s", path ? path : ":memory:", why);
	if (h->sync_full && evk_store_exec(h->db, "PRAGMA synchronous=FULL") != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot set up store '%s': %s", path ? path : ":memory:",
			sqlite3_errmsg(h->db));
	char bad[512];
	if (path && evk_store_check(h->db, NULL, bad, sizeof(bad)) != EVK_OK)
		evk_die(EVK_EX_IOERR, "store '%s' cannot be used: %s", path, bad);
	if (evk_store_migrate(h->db, migrations, 3) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot set up store '%s': %s",
			path ? path : ":memory:", sqlite3_errmsg(h->db));
	if (sqlite3_prepare_v2(h->db,
			       "SELECT max((SELECT value FROM meta WHERE key='head'),"
			       " coalesce((SELECT last FROM frames ORDER BY first DESC LIMIT 1), 0)),"
			       " coalesce((SELECT min(first) FROM frames), 0)",
			       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		evk_die(EVK_EX_IOERR, "cannot read store: %s", sqlite3_errmsg(h->db));
	h->head = (uint64_t)sqlite3_column_int64(st, 0);
	h->oldest = sqlite3_column_int64(st, 1) ? (uint64_t)sqlite3_column_int64(st, 1)
						: h->head + 1;
	sqlite3_finalize(st);
	if (path)
		hub_check_store(h, path);
	/* The row holding seq ?1 (the latest that starts at or before it). */
#define FROM_FRAME "(SELECT coalesce(max(first), 0) FROM frames WHERE first <= ?1)"
	if (sqlite3_prepare_v3(h->db, "INSERT INTO frames (first, last, lines) VALUES (?, ?, ?)",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->insert, NULL) ||
	    sqlite3_prepare_v3(h->db,
			       "SELECT first, lines FROM frames WHERE first >= " FROM_FRAME
			       " ORDER BY first",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->select, NULL) ||
	    sqlite3_prepare_v3(h->db, "DELETE FROM frames WHERE first < " FROM_FRAME, -1,
			       SQLITE_PREPARE_PERSISTENT, &h->trim, NULL) ||
	    sqlite3_prepare_v3(h->db, "SELECT min(first) FROM frames", -1,
			       SQLITE_PREPARE_PERSISTENT, &h->oldest_q, NULL) ||
	    sqlite3_prepare_v3(h->db, "UPDATE meta SET value = ? WHERE key = 'head'",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->set_head, NULL) ||
	    sqlite3_prepare_v3(h->db, "SELECT seq FROM producers WHERE id = ?", -1,
			       SQLITE_PREPARE_PERSISTENT, &h->producer_get, NULL) ||
	    sqlite3_prepare_v3(h->db,
			       "INSERT INTO producers (id, seq) VALUES (?1, ?2)"
			       " ON CONFLICT (id) DO UPDATE SET seq = ?2",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->producer_set, NULL))
		evk_die(EVK_EX_IOERR, "cannot prepare store: %s", sqlite3_errmsg(h->db));
}

/* Refuses to start beside a hub that already answers on our address or
 * owns our store.  Asking the hub itself (a full request) also spares it
 * nng's own liveness probe, a bare connect-and-close that wedges the ipc
 * poller of nng 1.5.2.  The store lock stays held (fd kept open) until
 * exit: two hubs numbering into one log would reuse seqs. */
void
hub_refuse_second(struct hub *h)
{
	char *json = NULL;

	if (evk_bus_status(h->url, &json) == EVK_OK) {
		free(json);
		evk_die(EVK_EX_UNAVAILABLE,
			"another evbusd is already running at '%s'", h->url);
	}
	if (h->store == NULL)
		return;
	char lock[4096];
	if (snprintf(lock, sizeof(lock), "%s.lock", h->store) >= (int)sizeof(lock))
		evk_die(EVK_EX_USAGE, "store path too long: '%s'", h->store);
	if (evk_store_make_parents(h->store) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open store '%s': %s", h->store,
			"cannot create its directory");
	int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open store '%s': %s", h->store,
			strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		evk_die(EVK_EX_UNAVAILABLE,
			errno == EWOULDBLOCK ? "store '%s' is in use by another evbusd"
					     : "cannot lock store '%s'",
			h->store);
	/* fd stays open: the lock lives as long as this process. */
}

/* ---- private files: the store, its -wal, -shm and .lock, the pidfile
 * and the sockets are 0600, new directories 0700, whatever the umask
 * (events may carry secrets). A store left readable by others (made by
 * an older evbusd) is made private, with a warning. */
void
hub_private_files(void)
{
	umask(077);
}

void
hub_private_store(const char *store)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", ".lock", ".seq" };
	char path[4096];
	struct stat st;

	for (size_t i = 0; store && i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (snprintf(path, sizeof(path), "%s%s", store, suffixes[i]) >= (int)sizeof(path) ||
		    stat(path, &st) != 0 || (st.st_mode & 077) == 0 || st.st_uid != geteuid())
			continue;
		if (chmod(path, st.st_mode & 0700) == 0)
			evk_warn("'%s' was readable by others: made it private (0600)", path);
		else
			evk_warn("'%s' is readable by others and cannot be made private: %s",
				 path, strerror(errno));
	}
}

/* Deletes events beyond the retention bound, with some slack so that the
 * delete runs once per many commits. */
int
hub_trim(struct hub *h)
{
	uint64_t slack = h->retain / 16;
	if (h->head - h->oldest + 1 <= h->retain + slack)
		return EVK_OK;
	uint64_t keep_from = h->head - h->retain + 1;
	/* Whole rows go: the one holding keep_from stays. */
	int rc = sqlite3_bind_int64(h->trim, 1, (sqlite3_int64)keep_from);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(h->trim);
	sqlite3_reset(h->trim);
	if (rc != SQLITE_DONE)
		return EVK_EIO;
	rc = sqlite3_step(h->oldest_q);
	if (rc == SQLITE_ROW && sqlite3_column_type(h->oldest_q, 0) == SQLITE_INTEGER)
		h->oldest = (uint64_t)sqlite3_column_int64(h->oldest_q, 0);
	sqlite3_reset(h->oldest_q);
	return rc == SQLITE_ROW ? EVK_OK : EVK_EIO;
}

/* Says why the store refused a write, in text[0..n), and whether that is
 * temporary (a full disk or a busy lock: EVK_FAIL_TEMP) or a fault of the
 * store (EVK_FAIL_IO). */
char
store_failure(struct hub *h, char *text, size_t n)
{
	int rc = sqlite3_extended_errcode(h->db), sys = sqlite3_system_errno(h->db);
	bool full = (rc & 0xff) == SQLITE_FULL || sys == ENOSPC || sys == EFBIG ||
		    sys == EDQUOT;
	bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;

	snprintf(text, n, "cannot store events in '%s': %s%s",
		 h->store ? h->store : ":memory:",
		 full ? "no space left (disk full or file size limit)"
		      : sqlite3_errmsg(h->db),
		 (rc & 0xff) == SQLITE_READONLY ? " (the store is read-only)" : "");
	return full || busy ? EVK_FAIL_TEMP : EVK_FAIL_IO;
}

/* After a clean close: once the log and its WAL reached the disk, every
 * seq given is in the log, and the seq file's number comes down to the
 * head, so that a restart after a reboot makes no gap. */
static void
hub_lower_reservation(struct hub *h)
{
	if (!h->seqfile[0] || h->reserved <= h->head || h->head == 0)
		return;
	if (!store_synced(h->store) || evk_seqfile_write(h->seqfile, h->head, h->boot) != EVK_OK)
		evk_warn("cannot sync the store or write '%s': after a reboot, numbering will "
			 "go on after %llu", h->seqfile, (unsigned long long)h->reserved);
}

/* Finalizes the statements, stops the checkpointer (saying what failed)
 * and closes the store. */
void
hub_close_store(struct hub *h)
{
	sqlite3_finalize(h->insert);
	sqlite3_finalize(h->select);
	sqlite3_finalize(h->trim);
	sqlite3_finalize(h->oldest_q);
	sqlite3_finalize(h->set_head);
	sqlite3_finalize(h->producer_get);
	sqlite3_finalize(h->producer_set);
	char last[256];
	uint64_t failed = evk_checkpointer_failures(h->ckpt, last, sizeof(last));
	if (failed)
		evk_warn("%llu checkpoints failed, the last: %s", (unsigned long long)failed, last);
	if (evk_checkpointer_stop(h->ckpt) != EVK_OK)
		evk_warn("closing the checkpoint connection failed");
	if (sqlite3_close(h->db) != SQLITE_OK) {
		evk_warn("closing the store: %s", sqlite3_errmsg(h->db));
		return;
	}
	hub_lower_reservation(h);
}
