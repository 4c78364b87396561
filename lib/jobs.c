#include "evkit/jobs.h"

#include "evkit/buf.h"
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/limits.h"
#include "evkit/opts.h"
#include "evkit/outbox.h"
#include "evkit/topic.h"

#include "proc_id.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct evk_migration migrations[] = {
	{ "CREATE TABLE jobs (id INTEGER PRIMARY KEY,"
	  " queue TEXT NOT NULL, priority INTEGER NOT NULL, state TEXT NOT NULL"
	  "  CHECK (state IN ('available','scheduled','executing','retryable',"
	  "   'completed','discarded','cancelled')),"
	  " steps TEXT NOT NULL, workflow_id TEXT NOT NULL, resource_id TEXT,"
	  " attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
	  " backoff INTEGER NOT NULL, timeout INTEGER, scheduled_at INTEGER NOT NULL,"
	  " unique_key TEXT, unique_until INTEGER,"
	  " worker_host TEXT, worker_pid INTEGER, child_pid INTEGER,"
	  " inserted_at TEXT NOT NULL, attempted_at TEXT, completed_at TEXT,"
	  " last_error TEXT, output TEXT);"
	  "CREATE INDEX jobs_fetch ON jobs (queue, state, priority, scheduled_at, id);"
	  "CREATE INDEX jobs_unique ON jobs (unique_key) WHERE unique_key IS NOT NULL;"
	  "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);",
	  /* PostgreSQL starts at the schema of the last migration: 64-bit
	   * integers, the output tail and stdin as bytes. */
	  "CREATE TABLE jobs (id BIGSERIAL PRIMARY KEY,"
	  " queue TEXT NOT NULL, priority INTEGER NOT NULL, state TEXT NOT NULL"
	  "  CHECK (state IN ('available','scheduled','executing','retryable',"
	  "   'completed','discarded','cancelled')),"
	  " steps TEXT NOT NULL, workflow_id TEXT NOT NULL, resource_id TEXT,"
	  " attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
	  " backoff BIGINT NOT NULL, timeout BIGINT, scheduled_at BIGINT NOT NULL,"
	  " unique_key TEXT, unique_until BIGINT,"
	  " worker_host TEXT, worker_pid BIGINT, child_pid BIGINT,"
	  " inserted_at TEXT NOT NULL, attempted_at TEXT, completed_at TEXT,"
	  " last_error TEXT, output BYTEA, stdin BYTEA);"
	  "CREATE INDEX jobs_fetch ON jobs (queue, state, priority, scheduled_at, id);"
	  "CREATE INDEX jobs_unique ON jobs (unique_key) WHERE unique_key IS NOT NULL;"
	  "CREATE TABLE cursors (name TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);"
	  EVK_OUTBOX_SCHEMA_PG },
	/* 2: jobs fed an event on stdin by `evworker on`, and where each
	 * `on` subscription stands. */
	{ "ALTER TABLE jobs ADD COLUMN stdin TEXT;"
	  "CREATE TABLE cursors (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);",
	  "" },
	/* 3: the outbox of lib/outbox.c (table notes, one event line a row). */
	{ EVK_OUTBOX_SCHEMA "INSERT INTO notes (id, count, lines, format)"
	  " SELECT id, 1, CAST(line || char(10) AS BLOB), 2 FROM outbox ORDER BY id;"
	  "DROP TABLE outbox;",
	  "" },
	/* 4: the claim and the rescue read only the jobs they are after, in
	 * order, instead of sorting every due job or scanning the history. */
	{ "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, priority, scheduled_at, id)"
	  " WHERE state IN ('available','scheduled','retryable');"
	  "CREATE INDEX IF NOT EXISTS jobs_running ON jobs (worker_host) WHERE state = 'executing';",
	  NULL },
	/* 5: which processes the worker and its step were (lib/proc_id.h),
	 * so that a pid used again, by this boot or after a reboot, is not
	 * taken for them. Set by the claim and the step's launch, emptied
	 * whenever a job stops executing: an evworker that does not know
	 * them (an older one on the same queue) leaves them empty, and its
	 * jobs are judged by pid alone, never by another run's record. */
	{ "ALTER TABLE jobs ADD COLUMN worker_start TEXT;"
	  "ALTER TABLE jobs ADD COLUMN child_start TEXT;",
	  NULL },
};

const char evk_jobs_states[] =
	"available, scheduled, executing, retryable, completed, discarded, cancelled";

#define JOB_COLS                                                                     \
	"id, queue, priority, state, steps, workflow_id, resource_id, attempt,"         \
	" max_attempts, backoff, timeout, scheduled_at, worker_host, worker_pid,"       \
	" inserted_at, attempted_at, completed_at, last_error, output"

/* Steps a statement that returns no row (or reads none), then resets it. */
static int
done(struct evk_q *q)
{
	return evk_q_done(q) == EVK_OK ? EVK_OK : EVK_EIO;
}

/* Steps a bound statement that returns at most one row, reads that row
 * with read(q, out), then resets q: EVK_OK, none when there is no row,
 * what read returns, or EVK_EIO. */
static int
one_row(struct evk_q *q, int none, int (*read)(struct evk_q *q, void *out), void *out)
{
	int rc = evk_q_step(q);
	int rv = rc == EVK_ROW ? read(q, out) : rc == EVK_DONE ? none : EVK_EIO;
	evk_q_reset(q);
	return rv;
}

/* A one_row reader: the first column into an int64_t. */
static int
read_int64(struct evk_q *q, void *out)
{
	*(int64_t *)out = evk_q_int64(q, 0);
	return EVK_OK;
}

static bool
is_pg(const struct evk_db *db)
{
	return evk_db_dialect(db) == EVK_DB_POSTGRES;
}

int
evk_jobs_open(struct evk_db *db, const char *path)
{
	return evk_db_open(db, path, "jobs.db", true, migrations,
			   (int)(sizeof(migrations) / sizeof(migrations[0])));
}

bool
evk_jobs_state_valid(const char *state)
{
	static const char *const states[] = { "available", "scheduled", "executing", "retryable",
					      "completed", "discarded", "cancelled" };
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (strcmp(state, states[i]) == 0)
			return true;
	return false;
}

void
evk_jobs_ts(long long ms, char ts[28])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(ts, 28, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, 28 - n, ".%03lld000Z", ms % 1000);
}

/* The unique key of a spec: queue, steps and workflow. */
static int
unique_key(const struct evk_job_spec *s, struct evk_buf *key)
{
	if (evk_buf_addstr(key, s->queue) || evk_buf_addch(key, '\n') ||
	    evk_buf_addstr(key, s->steps) || evk_buf_addch(key, '\n') ||
	    evk_buf_addstr(key, s->workflow ? s->workflow : "") || evk_buf_addch(key, '\0'))
		return EVK_ENOMEM;
	return EVK_OK;
}

/* The pending job a unique spec names, or 0. */
static int64_t
find_unique(struct evk_db *db, const char *key)
{
	int64_t id = 0;
	struct evk_q *st = evk_db_q(db, "SELECT id FROM jobs WHERE unique_key = ?"
					" AND unique_until > ? AND state NOT IN"
					" ('cancelled','discarded') ORDER BY id LIMIT 1");
	if (st == NULL)
		return -1;
	evk_q_bind_text(st, 1, key);
	evk_q_bind_int64(st, 2, evk_wall_ms());
	return one_row(st, EVK_OK, read_int64, &id) == EVK_OK ? id : -1;
}

/* PostgreSQL: enqueues of one unique key wait for each other until the
 * first commits (SQLite's write lock does that for every enqueue). */
static int
lock_unique(struct evk_db *db, const char *key)
{
	if (!is_pg(db))
		return EVK_OK;
	struct evk_q *q = evk_db_q(db, "SELECT pg_advisory_xact_lock(2122, hashtext(?))");
	if (q == NULL)
		return EVK_EIO;
	evk_q_bind_text(q, 1, key);
	return done(q);
}

int
evk_jobs_insert(struct evk_db *db, const struct evk_job_spec *s, int64_t *id)
{
	char wf[37], ins[EVK_TS_LEN + 1];
	struct evk_buf key = EVK_BUF_INIT(0);
	int rv = EVK_OK;
	long long now = evk_wall_ms();

	*id = 0;
	if (s->workflow == NULL && evk_uuid7(wf) != EVK_OK)
		return EVK_EIO;
	evk_ts_now(ins);
	/* Checked and inserted in one write transaction: two racing
	 * enqueues are serialised by the database's write lock (SQLite) or
	 * the key's lock (PostgreSQL). */
	if (s->unique_for_s > 0 &&
	    ((rv = unique_key(s, &key)) != EVK_OK || (rv = lock_unique(db, key.p)) != EVK_OK ||
	     (*id = find_unique(db, key.p)) < 0)) {
		rv = rv ? rv : EVK_EIO;
		goto out;
	}
	if (*id > 0)
		goto out;
	struct evk_q *st = evk_db_q(
		db, is_pg(db) ? "INSERT INTO jobs (queue, priority, state, steps, workflow_id,"
				" resource_id, max_attempts, backoff, timeout, scheduled_at,"
				" unique_key, unique_until, inserted_at, stdin)"
				" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id"
			      : "INSERT INTO jobs (queue, priority, state, steps, workflow_id,"
				" resource_id, max_attempts, backoff, timeout, scheduled_at,"
				" unique_key, unique_until, inserted_at, stdin)"
				" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	if (st == NULL) {
		rv = EVK_EIO;
		goto out;
	}
	evk_q_bind_text(st, 1, s->queue);
	evk_q_bind_int64(st, 2, s->priority);
	evk_q_bind_text(st, 3, s->due_ms > now ? "scheduled" : "available");
	evk_q_bind_text(st, 4, s->steps);
	evk_q_bind_text(st, 5, s->workflow ? s->workflow : wf);
	if (s->resource)
		evk_q_bind_text(st, 6, s->resource);
	evk_q_bind_int64(st, 7, s->max_attempts);
	evk_q_bind_int64(st, 8, s->backoff_s);
	if (s->timeout_s > 0)
		evk_q_bind_int64(st, 9, s->timeout_s);
	evk_q_bind_int64(st, 10, s->due_ms);
	if (s->unique_for_s > 0) {
		evk_q_bind_text(st, 11, key.p);
		evk_q_bind_int64(st, 12, now + s->unique_for_s * 1000);
	}
	evk_q_bind_text(st, 13, ins);
	if (s->input)
		evk_q_bind_textn(st, 14, s->input, s->input_len);
	int rc = evk_q_step(st);
	if (rc == EVK_ROW)
		*id = evk_q_int64(st, 0);
	else if (rc == EVK_DONE)
		*id = sqlite3_last_insert_rowid(db->sq);
	else
		rv = EVK_EIO;
	evk_q_reset(st);
out:
	evk_buf_release(&key);
	return rv;
}

/* A one_row reader: a job (struct evk_job) from a row of the claim query;
 * on failure nothing is left to release. */
static int
job_from_claim(struct evk_q *st, void *out)
{
	struct evk_job *j = out;
	memset(j, 0, sizeof(*j));
	j->id = evk_q_int64(st, 0);
	j->steps = cJSON_Parse(evk_q_text(st, 1));
	j->nsteps = cJSON_GetArraySize(j->steps);
	snprintf(j->workflow, sizeof(j->workflow), "%s", evk_q_text(st, 2));
	if (!evk_q_is_null(st, 3)) {
		snprintf(j->resource, sizeof(j->resource), "%s", evk_q_text(st, 3));
		j->has_resource = true;
	}
	j->attempt = evk_q_int(st, 4) + 1;
	j->max_attempts = evk_q_int(st, 5);
	j->backoff_s = evk_q_int64(st, 6);
	j->timeout_s = evk_q_int64(st, 7);
	if (!evk_q_is_null(st, 8)) {
		const void *p = evk_q_blob(st, 8);
		j->input_len = evk_q_bytes(st, 8);
		if ((j->input = malloc(j->input_len + 1)) == NULL) {
			evk_job_release(j);
			return EVK_ENOMEM;
		}
		if (j->input_len)
			memcpy(j->input, p, j->input_len);
	}
	return EVK_OK;
}

/* Binds the worker taking a job to parameters 1 to 3 and 6 of a claim:
 * host, pid, now (written into ts, which must last until the step) and
 * which process pid is (NULL when it cannot be read). */
static void
bind_claimant(struct evk_q *st, const char *host, pid_t pid, char ts[EVK_TS_LEN + 1])
{
	/* A worker claims as itself: its identity is read once, and kept
	 * here until the next claim's step. */
	static _Thread_local pid_t known;
	static _Thread_local char known_id[EVK_PROC_ID_LEN];
	if (pid != known && evk_proc_id(pid, known_id))
		known = pid;
	evk_ts_now(ts);
	evk_q_bind_text(st, 1, host);
	evk_q_bind_int64(st, 2, pid);
	evk_q_bind_text(st, 3, ts);
	evk_q_bind_text(st, 6, pid == known ? known_id : NULL);
}

/* PostgreSQL: one statement takes the next due job no other worker is
 * taking (SKIP LOCKED: the row stays locked until the commit), tries this
 * session's advisory lock on its id, held while the job runs (see
 * evk_jobs_rescue), and only when it got the lock claims the job: one
 * round trip a claim. The lock is taken unless a rescuer is between its
 * lock and its commit, or the job's last worker has yet to release it
 * after its end: then nothing changes (EVK_EAGAIN) and the job is taken
 * next time. */
static int
claim_pg(struct evk_db *db, const char *queue, const char *host, pid_t pid,
	 struct evk_job *job)
{
	char ts[EVK_TS_LEN + 1];
	struct evk_q *st = evk_db_q(
		db, "WITH due AS MATERIALIZED (SELECT id FROM jobs WHERE queue = ?4 AND state IN"
		    " ('available','scheduled','retryable') AND scheduled_at <= ?5"
		    " ORDER BY priority, scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),"
		    " locked AS MATERIALIZED (SELECT id, pg_try_advisory_lock(id) AS got FROM due),"
		    " claimed AS (UPDATE jobs SET state = 'executing', attempt = attempt + 1,"
		    " worker_host = ?1, worker_pid = ?2, attempted_at = ?3, worker_start = ?6,"
		    " child_start = NULL"
		    " FROM locked WHERE jobs.id = locked.id AND locked.got"
		    " RETURNING jobs.id, steps, workflow_id, resource_id, attempt - 1 AS attempt,"
		    " max_attempts, backoff, timeout, stdin)"
		    " SELECT c.id, c.steps, c.workflow_id, c.resource_id, c.attempt, c.max_attempts,"
		    " c.backoff, c.timeout, c.stdin, CASE WHEN l.got THEN 1 ELSE 0 END"
		    " FROM locked l LEFT JOIN claimed c ON c.id = l.id");
	if (st == NULL)
		return EVK_EIO;
	bind_claimant(st, host, pid, ts);
	evk_q_bind_text(st, 4, queue);
	evk_q_bind_int64(st, 5, evk_wall_ms());
	int rc = evk_q_step(st), rv;
	if (rc == EVK_ROW && evk_q_int64(st, 9) == 1)
		rv = evk_q_is_null(st, 0) ? EVK_EIO : job_from_claim(st, job);
	else
		rv = rc == EVK_ROW ? EVK_EAGAIN : rc == EVK_DONE ? EVK_ETIMEDOUT : EVK_EIO;
	evk_q_reset(st);
	if (rv == EVK_OK && evk_db_lock_taken(db, job->id) != EVK_OK) {
		evk_job_release(job);
		rv = EVK_ETOOLONG;
	}
	return rv;
}

/* SQLite: the next job due on queue ?1 at ?2 (ms), taken by the UPDATE
 * that follows in the same write transaction. */
static const char CLAIM_SQLITE[] =
	"SELECT id, steps, workflow_id, resource_id, attempt, max_attempts, backoff,"
	" timeout, stdin FROM jobs WHERE queue = ? AND state IN"
	" ('available','scheduled','retryable') AND scheduled_at <= ?"
	" ORDER BY priority, scheduled_at, id LIMIT 1";

int
evk_jobs_claim(struct evk_db *db, const char *queue, const char *host, pid_t pid,
	       struct evk_job *job)
{
	if (is_pg(db))
		return claim_pg(db, queue, host, pid, job);
	struct evk_q *st = evk_db_q(db, CLAIM_SQLITE);
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, queue);
	evk_q_bind_int64(st, 2, evk_wall_ms());
	int rv = one_row(st, EVK_ETIMEDOUT, job_from_claim, job);
	if (rv != EVK_OK)
		return rv;
	char ts[EVK_TS_LEN + 1];
	st = evk_db_q(db, "UPDATE jobs SET state = 'executing', attempt = attempt + 1,"
			  " worker_host = ?1, worker_pid = ?2, attempted_at = ?3,"
			  " worker_start = ?6, child_start = NULL WHERE id = ?4");
	if (st == NULL) {
		evk_job_release(job);
		return EVK_EIO;
	}
	bind_claimant(st, host, pid, ts);
	evk_q_bind_int64(st, 4, job->id);
	if ((rv = done(st)) != EVK_OK)
		evk_job_release(job);
	return rv;
}

void
evk_job_release(struct evk_job *job)
{
	cJSON_Delete(job->steps);
	free(job->input);
	job->steps = NULL;
	job->input = NULL;
}

static bool
alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Job id, if it is still executing, goes to state (due now) with why as
 * its last error: *changed. */
static int
leave_executing(struct evk_db *db, int64_t id, const char *state, const char *why,
		bool *changed)
{
	struct evk_q *st = evk_db_q(db, "UPDATE jobs SET state = ?, scheduled_at = ?,"
					" last_error = ?, child_pid = NULL, worker_start = NULL,"
					" child_start = NULL"
					" WHERE id = ? AND state = 'executing'");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, state);
	evk_q_bind_int64(st, 2, evk_wall_ms());
	evk_q_bind_text(st, 3, why);
	evk_q_bind_int64(st, 4, id);
	int rv = done(st);
	*changed = rv == EVK_OK && evk_q_changes(st) > 0;
	return rv;
}

static int
make_available(struct evk_db *db, int64_t id, bool *changed)
{
	return leave_executing(db, id, "available", "rescued: its worker died", changed);
}

/* PostgreSQL: a running job's worker holds the advisory lock on its id
 * for as long as its connection lives; a lock that can be taken is a
 * dead worker's. The job's step is killed when its worker was on host. */
#define HELD_MAX (256 * 21 + 3)

/* The advisory locks this connection holds, its running jobs' ids, as a
 * PostgreSQL array literal (numbers only, bound as a parameter). */
static void
held_array(const struct evk_db *db, char held[HELD_MAX])
{
	char *p = held;
	*p++ = '{';
	for (int i = 0; i < db->nlocks; i++)
		p += sprintf(p, "%s%" PRId64, i ? "," : "", db->locks[i]);
	strcpy(p, "}");
}

/* One statement finds the running jobs of others (those of this session,
 * ?1, left out) and tries their locks (the LIMIT keeps the lock out of the
 * inner scan): the rows it returns are dead workers' jobs, now locked by
 * this session. */
static const char RESCUE_PG[] =
	"SELECT id, child_pid, worker_host, child_start FROM"
	" (SELECT id, child_pid, worker_host, child_start FROM jobs"
	" WHERE state = 'executing' AND NOT (id = ANY (?::bigint[]))"
	" ORDER BY id LIMIT 64) running WHERE pg_try_advisory_lock(id)";

static int
rescue_pg(struct evk_db *db, const char *host,
	  void (*rescued)(int64_t id, pid_t child, void *arg), void *arg)
{
	char held[HELD_MAX];
	int64_t ids[64];
	pid_t kids[64];
	int n = 0, rv = EVK_OK;
	held_array(db, held);
	struct evk_q *st = evk_db_q(db, RESCUE_PG);
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, held);
	int rc;
	while (n < 64 && (rc = evk_q_step(st)) == EVK_ROW) {
		const char *h = evk_q_text(st, 2);
		pid_t kid = (pid_t)evk_q_int64(st, 1);
		kids[n] = h && strcmp(h, host) == 0 && evk_proc_group_ours(kid, evk_q_text(st, 3))
				  ? kid
				  : 0;
		ids[n++] = evk_q_int64(st, 0);
	}
	evk_q_reset(st);
	if (rc != EVK_ROW && rc != EVK_DONE)
		return EVK_EIO;
	for (int i = 0; i < n; i++) {
		bool changed = false;
		if (rv == EVK_OK)
			rv = make_available(db, ids[i], &changed);
		/* Released before the commit: a claim after it takes it anew. */
		int un = evk_db_unlock(db, ids[i]);
		if (rv == EVK_OK)
			rv = un;
		if (rv == EVK_OK && changed)
			rescued(ids[i], kids[i], arg);
	}
	return rv;
}

int
evk_jobs_cancelled(struct evk_db *db, int64_t ids[], int max, int *n)
{
	*n = 0;
	if (!is_pg(db) || db->nlocks == 0)
		return EVK_OK;
	char held[HELD_MAX];
	held_array(db, held);
	struct evk_q *st = evk_db_q(db, "SELECT id FROM jobs WHERE state = 'cancelled'"
					" AND id = ANY (?::bigint[]) ORDER BY id");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, held);
	int rc;
	while ((rc = evk_q_step(st)) == EVK_ROW)
		if (*n < max)
			ids[(*n)++] = evk_q_int64(st, 0);
	evk_q_reset(st);
	return rc == EVK_DONE ? EVK_OK : EVK_EIO;
}

/* Jobs left executing by a worker of this host that is gone run again:
 * decided by the worker's liveness, never by elapsed time. A live process
 * with the worker's pid is the worker only if it started when the worker
 * did, in this boot (a pid is used again, and from the start after a
 * reboot); the step's process group is killed only while it can still be
 * the step's (evk_proc_group_ours). */
int
evk_jobs_rescue(struct evk_db *db, const char *host, pid_t self,
		void (*rescued)(int64_t id, pid_t child, void *arg), void *arg)
{
	if (is_pg(db))
		return rescue_pg(db, host, rescued, arg);
	struct evk_q *st = evk_db_q(db, "SELECT id, worker_pid, child_pid, worker_start, child_start"
					" FROM jobs WHERE state = 'executing' AND worker_host = ?");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, host);
	int64_t ids[64];
	pid_t kids[64];
	int n = 0;
	while (n < 64 && evk_q_step(st) == EVK_ROW) {
		pid_t w = (pid_t)evk_q_int64(st, 1), kid = (pid_t)evk_q_int64(st, 2);
		if (w != self && (!alive(w) || !evk_proc_same(w, evk_q_text(st, 3)))) {
			kids[n] = evk_proc_group_ours(kid, evk_q_text(st, 4)) ? kid : 0;
			ids[n++] = evk_q_int64(st, 0);
		}
	}
	evk_q_reset(st);
	for (int i = 0; i < n; i++) {
		bool changed;
		if (make_available(db, ids[i], &changed) != EVK_OK)
			return EVK_EIO;
		rescued(ids[i], kids[i], arg);
	}
	return EVK_OK;
}

int
evk_jobs_set_child(struct evk_db *db, int64_t id, pid_t child)
{
	char which[EVK_PROC_ID_LEN];
	struct evk_q *st =
		evk_db_q(db, "UPDATE jobs SET child_pid = ?, child_start = ? WHERE id = ?");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_int64(st, 1, child);
	evk_q_bind_text(st, 2, evk_proc_id(child, which) ? which : NULL);
	evk_q_bind_int64(st, 3, id);
	/* evk_q_send copies the values as it sends. */
	return evk_q_send(st) == EVK_OK ? EVK_OK : EVK_EIO;
}

int
evk_jobs_end(struct evk_db *db, int64_t id, const struct evk_job_end *e)
{
	char now[EVK_TS_LEN + 1];
	evk_ts_now(now);
	struct evk_q *st = evk_db_q(
		db, "UPDATE jobs SET state = ?, scheduled_at = ?, last_error = ?, output = ?,"
		    " completed_at = CASE WHEN ? = 1 THEN ? END, child_pid = NULL,"
		    " worker_start = NULL, child_start = NULL,"
		    " attempt = attempt - ? WHERE id = ? AND state = 'executing'");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, e->state);
	evk_q_bind_int64(st, 2, e->due_ms);
	if (e->error)
		evk_q_bind_text(st, 3, e->error);
	if (is_pg(db))
		evk_q_bind_blob(st, 4, e->output, e->output_len);
	else
		evk_q_bind_textn(st, 4, e->output, e->output_len);
	evk_q_bind_int64(st, 5, e->finished);
	evk_q_bind_text(st, 6, now);
	evk_q_bind_int64(st, 7, e->uncount ? 1 : 0);
	evk_q_bind_int64(st, 8, id);
	/* Answered with the turn's next statement or its commit. */
	int rv = evk_q_send(st) == EVK_OK ? EVK_OK : EVK_EIO;
	return rv == EVK_OK ? evk_db_unlock_at_commit(db, id) : rv;
}

int
evk_jobs_abandon(struct evk_db *db, int64_t id)
{
	bool changed;
	int rv = leave_executing(db, id, "retryable", "worker stopped", &changed);
	return rv == EVK_OK ? evk_db_unlock_at_commit(db, id) : rv;
}

static bool
is_final(const char *state)
{
	return strcmp(state, "completed") == 0 || strcmp(state, "discarded") == 0 ||
	       strcmp(state, "cancelled") == 0;
}

int
evk_jobs_cancel_retry(struct evk_db *db, int64_t id, bool cancel, const char *host,
		      char state[16], pid_t *child)
{
	struct evk_q *st = evk_db_q(
		db, is_pg(db) ? "SELECT state, child_pid, worker_host, child_start FROM jobs"
				" WHERE id = ? FOR UPDATE"
			      : "SELECT state, child_pid, worker_host, child_start FROM jobs WHERE id = ?");
	state[0] = '\0';
	*child = 0;
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_int64(st, 1, id);
	int rc = evk_q_step(st);
	if (rc != EVK_ROW) {
		evk_q_reset(st);
		return rc == EVK_DONE ? EVK_EINVAL : EVK_EIO;
	}
	snprintf(state, 16, "%s", evk_q_text(st, 0));
	pid_t kid = (pid_t)evk_q_int64(st, 1);
	const char *h = evk_q_text(st, 2);
	bool here = h && strcmp(h, host) == 0 && evk_proc_group_ours(kid, evk_q_text(st, 3));
	evk_q_reset(st);
	if (cancel ? is_final(state) : strcmp(state, "executing") == 0)
		return EVK_EINVAL;
	if (cancel) {
		st = evk_db_q(db, "UPDATE jobs SET state = 'cancelled', child_pid = NULL,"
				  " worker_start = NULL, child_start = NULL,"
				  " last_error = 'cancelled' WHERE id = ?");
		if (st)
			evk_q_bind_int64(st, 1, id);
		if (strcmp(state, "executing") == 0 && here && kid > 0)
			*child = kid;
	} else {
		st = evk_db_q(db, is_pg(db) ? "UPDATE jobs SET state = 'available', scheduled_at = ?,"
					      " max_attempts = greatest(max_attempts, attempt + 1)"
					      " WHERE id = ?"
					    : "UPDATE jobs SET state = 'available', scheduled_at = ?,"
					      " max_attempts = max(max_attempts, attempt + 1) WHERE id = ?");
		if (st) {
			evk_q_bind_int64(st, 1, evk_wall_ms());
			evk_q_bind_int64(st, 2, id);
		}
	}
	return st ? done(st) : EVK_EIO;
}

/* A column's value as JSON: steps parsed, scheduled_at as RFC 3339, bytes
 * (PostgreSQL's output) as a string. */
static cJSON *
column_json(struct evk_q *st, int i, const char *name)
{
	switch (evk_q_type(st, i)) {
	case EVK_COL_NULL: return cJSON_CreateNull();
	case EVK_COL_INT:
		if (strcmp(name, "scheduled_at") == 0) {
			char ts[28];
			evk_jobs_ts(evk_q_int64(st, i), ts);
			return cJSON_CreateString(ts);
		}
		return cJSON_CreateNumber((double)evk_q_int64(st, i));
	case EVK_COL_BLOB: {
		size_t n = evk_q_bytes(st, i);
		const char *p = evk_q_blob(st, i);
		char *t = malloc(n + 1);
		if (t == NULL)
			return NULL;
		if (n)
			memcpy(t, p, n);
		t[n] = '\0';
		cJSON *v = cJSON_CreateString(t);
		free(t);
		return v;
	}
	default:
		if (strcmp(name, "steps") == 0)
			return cJSON_Parse(evk_q_text(st, i));
		return cJSON_CreateString(evk_q_text(st, i));
	}
}

static cJSON *
job_from_row(struct evk_q *st, bool with_output)
{
	cJSON *j = cJSON_CreateObject();
	int n = evk_q_ncols(st);
	for (int i = 0; j && i < n; i++) {
		const char *name = evk_q_name(st, i);
		if (strcmp(name, "output") == 0 && !with_output)
			continue;
		cJSON *v = column_json(st, i, name);
		if (v == NULL || !cJSON_AddItemToObject(j, name, v)) {
			cJSON_Delete(v);
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}

/* A one_row reader: the job of the row, output or not. */
struct job_read {
	bool with_output;
	cJSON *job;
};

static int
read_job(struct evk_q *st, void *out)
{
	struct job_read *r = out;
	r->job = job_from_row(st, r->with_output);
	return r->job ? EVK_OK : EVK_ENOMEM;
}

int
evk_jobs_get(struct evk_db *db, int64_t id, bool with_output, cJSON **job)
{
	struct evk_q *st = evk_db_q(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?");
	*job = NULL;
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_int64(st, 1, id);
	struct job_read r = {.with_output = with_output};
	int rv = one_row(st, EVK_EINVAL, read_job, &r);
	*job = r.job;
	return rv;
}

int
evk_jobs_list(struct evk_db *db, const char *state, const char *queue,
	      int (*each)(cJSON *job, void *arg), void *arg)
{
	struct evk_q *st = evk_db_q(db, "SELECT " JOB_COLS " FROM jobs WHERE"
					" (CAST(?1 AS TEXT) IS NULL OR state = ?1)"
					" AND (CAST(?2 AS TEXT) IS NULL OR queue = ?2) ORDER BY id");
	int rv = EVK_OK, rc = EVK_DONE;
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, state);
	evk_q_bind_text(st, 2, queue);
	while (rv == EVK_OK && (rc = evk_q_step(st)) == EVK_ROW) {
		cJSON *j = job_from_row(st, false);
		rv = j ? each(j, arg) : EVK_ENOMEM;
		cJSON_Delete(j);
	}
	if (rv == EVK_OK && rc != EVK_DONE)
		rv = EVK_EIO;
	evk_q_reset(st);
	return rv;
}

int
evk_jobs_prune(struct evk_db *db, const char *before_ts, int *n)
{
	struct evk_q *st = evk_db_q(
		db, "DELETE FROM jobs WHERE state IN ('completed','discarded','cancelled')"
		    " AND coalesce(completed_at, inserted_at) < ?");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, before_ts);
	int rv = done(st);
	*n = (int)evk_q_changes(st);
	return rv;
}

int
evk_jobs_stats(struct evk_db *db, cJSON **stats)
{
	struct evk_q *st = evk_db_q(db, "SELECT queue, state, count(*) FROM jobs"
					" GROUP BY queue, state ORDER BY queue, state");
	cJSON *all = cJSON_CreateObject();
	int rv = st && all ? EVK_OK : st ? EVK_ENOMEM : EVK_EIO, rc = EVK_DONE;
	while (rv == EVK_OK && (rc = evk_q_step(st)) == EVK_ROW) {
		const char *q = evk_q_text(st, 0);
		cJSON *qo = cJSON_GetObjectItemCaseSensitive(all, q);
		if (qo == NULL)
			qo = cJSON_AddObjectToObject(all, q);
		if (qo == NULL ||
		    !cJSON_AddNumberToObject(qo, evk_q_text(st, 1), evk_q_int(st, 2)))
			rv = EVK_ENOMEM;
	}
	if (rv == EVK_OK && rc != EVK_DONE)
		rv = EVK_EIO;
	if (st)
		evk_q_reset(st);
	if (rv != EVK_OK)
		cJSON_Delete(all);
	*stats = rv == EVK_OK ? all : NULL;
	return rv;
}

static int
progress(struct evk_db *db, int64_t id, const char *workflow, int *total, int *pending,
	 int *failed)
{
	struct evk_q *st = evk_db_q(
		db, "SELECT count(*),"
		    " coalesce(sum(CASE WHEN state NOT IN ('completed','discarded','cancelled')"
		    "  THEN 1 ELSE 0 END), 0),"
		    " coalesce(sum(CASE WHEN state IN ('discarded','cancelled') THEN 1 ELSE 0 END), 0)"
		    " FROM jobs WHERE (CAST(?1 AS TEXT) IS NULL OR workflow_id = ?1)"
		    " AND (?2 = 0 OR id = ?2)");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, workflow);
	evk_q_bind_int64(st, 2, workflow ? 0 : id);
	int rc = evk_q_step(st);
	if (rc == EVK_ROW) {
		*total = evk_q_int(st, 0);
		*pending = evk_q_int(st, 1);
		*failed = evk_q_int(st, 2);
	}
	evk_q_reset(st);
	return rc == EVK_ROW ? EVK_OK : EVK_EIO;
}

int
evk_jobs_wait(struct evk_db *db, int64_t id, const char *workflow, long long timeout_ms,
	      volatile sig_atomic_t *stop, int *total, int *pending, int *failed)
{
	long long deadline = timeout_ms >= 0 ? evk_mono_ms() + timeout_ms : -1, pause = 10;
	for (;;) {
		int rv = progress(db, id, workflow, total, pending, failed);
		if (rv != EVK_OK)
			return rv;
		if (*total == 0)
			return EVK_EINVAL;
		if (*pending == 0)
			return EVK_OK;
		if (*stop)
			return EVK_EINTR;
		long long left = deadline >= 0 ? deadline - evk_mono_ms() : pause;
		if (left <= 0)
			return EVK_ETIMEDOUT;
		long long ms = left < pause ? left : pause;
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		nanosleep(&ts, NULL);
		pause = pause * 2 > 500 ? 500 : pause * 2;
	}
}

int
evk_jobs_steps_read(const char *path, char **text, char why[EVK_OPT_WHY])
{
	const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
	cJSON *steps, *s;
	int rv = evk_json_file_read(path, &steps, why);
	*text = NULL;
	if (rv != EVK_OK)
		return rv;
	rv = EVK_EINVAL;
	if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) == 0) {
		snprintf(why, EVK_OPT_WHY, "%s: steps are a non-empty JSON array", name);
		goto out;
	}
	cJSON_ArrayForEach(s, steps) {
		const cJSON *sname = cJSON_GetObjectItemCaseSensitive(s, "name");
		const cJSON *run = cJSON_GetObjectItemCaseSensitive(s, "run"), *a;
		if (!cJSON_IsString(sname) ||
		    !evk_event_name_valid(sname->valuestring, strlen(sname->valuestring)) ||
		    !cJSON_IsArray(run) || cJSON_GetArraySize(run) == 0) {
			snprintf(why, EVK_OPT_WHY,
				 "%s: each step is {\"name\": NAME, \"run\": [ARGV...]}", name);
			goto out;
		}
		cJSON_ArrayForEach(a, run) {
			if (!cJSON_IsString(a)) {
				snprintf(why, EVK_OPT_WHY, "%s: 'run' holds strings", name);
				goto out;
			}
		}
	}
	rv = (*text = cJSON_PrintUnformatted(steps)) ? EVK_OK : EVK_ENOMEM;
out:
	cJSON_Delete(steps);
	return rv;
}

int
evk_jobs_steps_argv(int argc, char *const argv[], char **text)
{
	cJSON *steps = cJSON_CreateArray(), *step = cJSON_CreateObject();
	cJSON *run = cJSON_CreateStringArray((const char *const *)argv, argc);
	int rv = EVK_ENOMEM;
	*text = NULL;
	if (steps && step && run && cJSON_AddStringToObject(step, "name", "run") &&
	    cJSON_AddItemToObject(step, "run", run)) {
		run = NULL;
		if (cJSON_AddItemToArray(steps, step)) {
			step = NULL;
			rv = (*text = cJSON_PrintUnformatted(steps)) ? EVK_OK : EVK_ENOMEM;
		}
	}
	cJSON_Delete(run);
	cJSON_Delete(step);
	cJSON_Delete(steps);
	return rv;
}

int
evk_jobs_cursor(struct evk_db *db, const char *name, int64_t *seq)
{
	struct evk_q *st = evk_db_q(db, "SELECT last_seq FROM cursors WHERE name = ?");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_text(st, 1, name);
	return one_row(st, EVK_EINVAL, read_int64, seq);
}

int
evk_jobs_cursor_set(struct evk_db *db, const char *name, uint64_t seq, bool create)
{
	struct evk_q *st = evk_db_q(
		db, create ? "INSERT INTO cursors (last_seq, name) VALUES (?, ?) ON CONFLICT DO NOTHING"
			   : "UPDATE cursors SET last_seq = ? WHERE name = ?");
	if (st == NULL)
		return EVK_EIO;
	evk_q_bind_int64(st, 1, (int64_t)seq);
	evk_q_bind_text(st, 2, name);
	return done(st);
}

long long
evk_jobs_backoff_ms(long long base_s, int attempt, unsigned jitter)
{
	if (base_s == 0)
		return 0;
	double s = (double)base_s + pow(2, attempt < 30 ? attempt : 30);
	return (long long)(s * 1000 * (1 + (jitter % 1000) / 10000.0));
}
