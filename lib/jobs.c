#include "evkit/jobs.h"

#include "evkit/buf.h"
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/limits.h"
#include "evkit/opts.h"
#include "evkit/outbox.h"
#include "evkit/store.h"
#include "evkit/topic.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const migrations[] = {
	"CREATE TABLE jobs (id INTEGER PRIMARY KEY,"
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
	/* 2: jobs fed an event on stdin by `evworker on`, and where each
	 * `on` subscription stands. */
	"ALTER TABLE jobs ADD COLUMN stdin TEXT;"
	"CREATE TABLE cursors (name TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);",
	/* 3: the outbox of lib/outbox.c (table notes, one event line a row). */
	EVK_OUTBOX_SCHEMA "INSERT INTO notes (id, count, lines, format)"
	" SELECT id, 1, CAST(line || char(10) AS BLOB), 2 FROM outbox ORDER BY id;"
	"DROP TABLE outbox;",
	/* 4: the claim and the rescue read only the jobs they are after, in
	 * order, instead of sorting every due job or scanning the history. */
	"CREATE INDEX IF NOT EXISTS jobs_due ON jobs (queue, priority, scheduled_at, id)"
	" WHERE state IN ('available','scheduled','retryable');"
	"CREATE INDEX IF NOT EXISTS jobs_running ON jobs (worker_host) WHERE state = 'executing';",
};

const char evk_jobs_states[] =
	"available, scheduled, executing, retryable, completed, discarded, cancelled";

#define JOB_COLS                                                                     \
	"id, queue, priority, state, steps, workflow_id, resource_id, attempt,"         \
	" max_attempts, backoff, timeout, scheduled_at, worker_host, worker_pid,"       \
	" inserted_at, attempted_at, completed_at, last_error, output"

/* Steps a statement that returns no row, then resets it. */
static int
done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? EVK_OK : EVK_EIO;
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
find_unique(sqlite3 *db, const char *key)
{
	int64_t id = 0;
	sqlite3_stmt *st = evk_store_stmt(db, "SELECT id FROM jobs WHERE unique_key = ?"
					      " AND unique_until > ? AND state NOT IN"
					      " ('cancelled','discarded') ORDER BY id LIMIT 1");
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, evk_wall_ms());
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		id = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? id : -1;
}

int
evk_jobs_insert(sqlite3 *db, const struct evk_job_spec *s, int64_t *id)
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
	 * enqueues are serialised by the database's write lock. */
	if (s->unique_for_s > 0 &&
	    ((rv = unique_key(s, &key)) != EVK_OK || (*id = find_unique(db, key.p)) < 0)) {
		rv = rv ? rv : EVK_EIO;
		goto out;
	}
	if (*id > 0)
		goto out;
	sqlite3_stmt *st = evk_store_stmt(
		db, "INSERT INTO jobs (queue, priority, state, steps, workflow_id, resource_id,"
		    " max_attempts, backoff, timeout, scheduled_at, unique_key, unique_until,"
		    " inserted_at, stdin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	if (st == NULL) {
		rv = EVK_EIO;
		goto out;
	}
	sqlite3_bind_text(st, 1, s->queue, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, s->priority);
	sqlite3_bind_text(st, 3, s->due_ms > now ? "scheduled" : "available", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, s->steps, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, s->workflow ? s->workflow : wf, -1, SQLITE_TRANSIENT);
	if (s->resource)
		sqlite3_bind_text(st, 6, s->resource, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, s->max_attempts);
	sqlite3_bind_int64(st, 8, s->backoff_s);
	if (s->timeout_s > 0)
		sqlite3_bind_int64(st, 9, s->timeout_s);
	sqlite3_bind_int64(st, 10, s->due_ms);
	if (s->unique_for_s > 0) {
		sqlite3_bind_text(st, 11, key.p, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 12, now + s->unique_for_s * 1000);
	}
	sqlite3_bind_text(st, 13, ins, -1, SQLITE_STATIC);
	if (s->input)
		sqlite3_bind_text(st, 14, s->input, (int)s->input_len, SQLITE_STATIC);
	if ((rv = done(st)) == EVK_OK)
		*id = sqlite3_last_insert_rowid(db);
out:
	evk_buf_release(&key);
	return rv;
}

/* Fills job from a row of the claim query. */
static int
job_from_claim(sqlite3_stmt *st, struct evk_job *j)
{
	memset(j, 0, sizeof(*j));
	j->id = sqlite3_column_int64(st, 0);
	j->steps = cJSON_Parse((const char *)sqlite3_column_text(st, 1));
	j->nsteps = cJSON_GetArraySize(j->steps);
	snprintf(j->workflow, sizeof(j->workflow), "%s", (const char *)sqlite3_column_text(st, 2));
	if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
		snprintf(j->resource, sizeof(j->resource), "%s",
			 (const char *)sqlite3_column_text(st, 3));
		j->has_resource = true;
	}
	j->attempt = sqlite3_column_int(st, 4) + 1;
	j->max_attempts = sqlite3_column_int(st, 5);
	j->backoff_s = sqlite3_column_int64(st, 6);
	j->timeout_s = sqlite3_column_int64(st, 7);
	if (sqlite3_column_type(st, 8) != SQLITE_NULL) {
		j->input_len = (size_t)sqlite3_column_bytes(st, 8);
		if ((j->input = malloc(j->input_len + 1)) == NULL)
			return EVK_ENOMEM;
		memcpy(j->input, sqlite3_column_blob(st, 8), j->input_len);
	}
	return EVK_OK;
}

int
evk_jobs_claim(sqlite3 *db, const char *queue, const char *host, pid_t pid,
	       struct evk_job *job)
{
	sqlite3_stmt *st = evk_store_stmt(
		db, "SELECT id, steps, workflow_id, resource_id, attempt, max_attempts, backoff,"
		    " timeout, stdin FROM jobs WHERE queue = ? AND state IN"
		    " ('available','scheduled','retryable') AND scheduled_at <= ?"
		    " ORDER BY priority, scheduled_at, id LIMIT 1");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, evk_wall_ms());
	int rc = sqlite3_step(st);
	int rv = rc == SQLITE_ROW ? job_from_claim(st, job) : rc == SQLITE_DONE ? EVK_ETIMEDOUT
										 : EVK_EIO;
	sqlite3_reset(st);
	if (rv != EVK_OK) {
		if (rc == SQLITE_ROW)
			evk_job_release(job);
		return rv;
	}
	char ts[EVK_TS_LEN + 1];
	evk_ts_now(ts);
	st = evk_store_stmt(db, "UPDATE jobs SET state = 'executing', attempt = attempt + 1,"
				" worker_host = ?, worker_pid = ?, attempted_at = ? WHERE id = ?");
	if (st == NULL) {
		evk_job_release(job);
		return EVK_EIO;
	}
	sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, pid);
	sqlite3_bind_text(st, 3, ts, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, job->id);
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

/* Jobs left executing by a worker of this host that is gone run again:
 * decided by the worker's liveness, never by elapsed time. */
int
evk_jobs_rescue(sqlite3 *db, const char *host, pid_t self,
		void (*rescued)(int64_t id, pid_t child, void *arg), void *arg)
{
	sqlite3_stmt *st = evk_store_stmt(db, "SELECT id, worker_pid, child_pid FROM jobs"
					      " WHERE state = 'executing' AND worker_host = ?");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
	int64_t ids[64];
	pid_t kids[64];
	int n = 0;
	while (n < 64 && sqlite3_step(st) == SQLITE_ROW) {
		pid_t w = (pid_t)sqlite3_column_int64(st, 1);
		if (w != self && !alive(w)) {
			kids[n] = (pid_t)sqlite3_column_int64(st, 2);
			ids[n++] = sqlite3_column_int64(st, 0);
		}
	}
	sqlite3_reset(st);
	for (int i = 0; i < n; i++) {
		st = evk_store_stmt(db, "UPDATE jobs SET state = 'available', scheduled_at = ?,"
					" last_error = 'rescued: its worker died', child_pid = NULL"
					" WHERE id = ? AND state = 'executing'");
		if (st == NULL)
			return EVK_EIO;
		sqlite3_bind_int64(st, 1, evk_wall_ms());
		sqlite3_bind_int64(st, 2, ids[i]);
		if (done(st) != EVK_OK)
			return EVK_EIO;
		rescued(ids[i], kids[i], arg);
	}
	return EVK_OK;
}

int
evk_jobs_set_child(sqlite3 *db, int64_t id, pid_t child)
{
	sqlite3_stmt *st = evk_store_stmt(db, "UPDATE jobs SET child_pid = ? WHERE id = ?");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_int64(st, 1, child);
	sqlite3_bind_int64(st, 2, id);
	return done(st);
}

int
evk_jobs_end(sqlite3 *db, int64_t id, const struct evk_job_end *e)
{
	char now[EVK_TS_LEN + 1];
	evk_ts_now(now);
	sqlite3_stmt *st = evk_store_stmt(
		db, "UPDATE jobs SET state = ?, scheduled_at = ?, last_error = ?, output = ?,"
		    " completed_at = CASE WHEN ? THEN ? END, child_pid = NULL,"
		    " attempt = attempt - ? WHERE id = ? AND state = 'executing'");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_text(st, 1, e->state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, e->due_ms);
	if (e->error)
		sqlite3_bind_text(st, 3, e->error, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, e->output, (int)e->output_len, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, e->finished);
	sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, e->uncount ? 1 : 0);
	sqlite3_bind_int64(st, 8, id);
	return done(st);
}

int
evk_jobs_abandon(sqlite3 *db, int64_t id)
{
	sqlite3_stmt *st = evk_store_stmt(db, "UPDATE jobs SET state = 'retryable',"
					      " scheduled_at = ?, last_error = 'worker stopped',"
					      " child_pid = NULL WHERE id = ? AND state = 'executing'");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_int64(st, 1, evk_wall_ms());
	sqlite3_bind_int64(st, 2, id);
	return done(st);
}

static bool
is_final(const char *state)
{
	return strcmp(state, "completed") == 0 || strcmp(state, "discarded") == 0 ||
	       strcmp(state, "cancelled") == 0;
}

int
evk_jobs_cancel_retry(sqlite3 *db, int64_t id, bool cancel, const char *host, char state[16],
		      pid_t *child)
{
	sqlite3_stmt *st = evk_store_stmt(
		db, "SELECT state, child_pid, worker_host FROM jobs WHERE id = ?");
	state[0] = '\0';
	*child = 0;
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return EVK_EINVAL;
	}
	snprintf(state, 16, "%s", (const char *)sqlite3_column_text(st, 0));
	pid_t kid = (pid_t)sqlite3_column_int64(st, 1);
	bool here = sqlite3_column_type(st, 2) != SQLITE_NULL &&
		    strcmp((const char *)sqlite3_column_text(st, 2), host) == 0;
	sqlite3_reset(st);
	if (cancel ? is_final(state) : strcmp(state, "executing") == 0)
		return EVK_EINVAL;
	if (cancel) {
		st = evk_store_stmt(db, "UPDATE jobs SET state = 'cancelled', child_pid = NULL,"
					" last_error = 'cancelled' WHERE id = ?");
		if (st)
			sqlite3_bind_int64(st, 1, id);
		if (strcmp(state, "executing") == 0 && here && kid > 0)
			*child = kid;
	} else {
		st = evk_store_stmt(db, "UPDATE jobs SET state = 'available', scheduled_at = ?,"
					" max_attempts = max(max_attempts, attempt + 1) WHERE id = ?");
		if (st) {
			sqlite3_bind_int64(st, 1, evk_wall_ms());
			sqlite3_bind_int64(st, 2, id);
		}
	}
	return st ? done(st) : EVK_EIO;
}

/* A column's value as JSON: steps parsed, scheduled_at as RFC 3339. */
static cJSON *
column_json(sqlite3_stmt *st, int i, const char *name)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL: return cJSON_CreateNull();
	case SQLITE_INTEGER:
		if (strcmp(name, "scheduled_at") == 0) {
			char ts[28];
			evk_jobs_ts(sqlite3_column_int64(st, i), ts);
			return cJSON_CreateString(ts);
		}
		return cJSON_CreateNumber((double)sqlite3_column_int64(st, i));
	default:
		if (strcmp(name, "steps") == 0)
			return cJSON_Parse((const char *)sqlite3_column_text(st, i));
		return cJSON_CreateString((const char *)sqlite3_column_text(st, i));
	}
}

static cJSON *
job_from_row(sqlite3_stmt *st, bool with_output)
{
	cJSON *j = cJSON_CreateObject();
	int n = sqlite3_column_count(st);
	for (int i = 0; j && i < n; i++) {
		const char *name = sqlite3_column_name(st, i);
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

int
evk_jobs_get(sqlite3 *db, int64_t id, bool with_output, cJSON **job)
{
	sqlite3_stmt *st = evk_store_stmt(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?");
	*job = NULL;
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*job = job_from_row(st, with_output);
	sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? EVK_EINVAL : EVK_EIO;
	return *job ? EVK_OK : EVK_ENOMEM;
}

int
evk_jobs_list(sqlite3 *db, const char *state, const char *queue,
	      int (*each)(cJSON *job, void *arg), void *arg)
{
	sqlite3_stmt *st = evk_store_stmt(db, "SELECT " JOB_COLS " FROM jobs WHERE"
					      " (?1 IS NULL OR state = ?1)"
					      " AND (?2 IS NULL OR queue = ?2) ORDER BY id");
	int rv = EVK_OK, rc;
	if (st == NULL)
		return EVK_EIO;
	if (state)
		sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	if (queue)
		sqlite3_bind_text(st, 2, queue, -1, SQLITE_STATIC);
	while (rv == EVK_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *j = job_from_row(st, false);
		rv = j ? each(j, arg) : EVK_ENOMEM;
		cJSON_Delete(j);
	}
	if (rv == EVK_OK && rc != SQLITE_DONE)
		rv = EVK_EIO;
	sqlite3_reset(st);
	return rv;
}

int
evk_jobs_prune(sqlite3 *db, const char *before_ts, int *n)
{
	sqlite3_stmt *st = evk_store_stmt(
		db, "DELETE FROM jobs WHERE state IN ('completed','discarded','cancelled')"
		    " AND coalesce(completed_at, inserted_at) < ?");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_text(st, 1, before_ts, -1, SQLITE_STATIC);
	int rv = done(st);
	*n = sqlite3_changes(db);
	return rv;
}

int
evk_jobs_stats(sqlite3 *db, cJSON **stats)
{
	sqlite3_stmt *st = evk_store_stmt(db, "SELECT queue, state, count(*) FROM jobs"
					      " GROUP BY queue, state ORDER BY queue, state");
	cJSON *all = cJSON_CreateObject();
	int rv = st && all ? EVK_OK : st ? EVK_ENOMEM : EVK_EIO;
	while (rv == EVK_OK && sqlite3_step(st) == SQLITE_ROW) {
		const char *q = (const char *)sqlite3_column_text(st, 0);
		cJSON *qo = cJSON_GetObjectItemCaseSensitive(all, q);
		if (qo == NULL)
			qo = cJSON_AddObjectToObject(all, q);
		if (qo == NULL ||
		    !cJSON_AddNumberToObject(qo, (const char *)sqlite3_column_text(st, 1),
					     sqlite3_column_int(st, 2)))
			rv = EVK_ENOMEM;
	}
	if (st)
		sqlite3_reset(st);
	if (rv != EVK_OK)
		cJSON_Delete(all);
	*stats = rv == EVK_OK ? all : NULL;
	return rv;
}

static int
progress(sqlite3 *db, int64_t id, const char *workflow, int *total, int *pending,
		  int *failed)
{
	sqlite3_stmt *st = evk_store_stmt(
		db, "SELECT count(*),"
		    " coalesce(sum(state NOT IN ('completed','discarded','cancelled')), 0),"
		    " coalesce(sum(state IN ('discarded','cancelled')), 0)"
		    " FROM jobs WHERE (?1 IS NULL OR workflow_id = ?1) AND (?2 = 0 OR id = ?2)");
	if (st == NULL)
		return EVK_EIO;
	if (workflow)
		sqlite3_bind_text(st, 1, workflow, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, workflow ? 0 : id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*total = sqlite3_column_int(st, 0);
		*pending = sqlite3_column_int(st, 1);
		*failed = sqlite3_column_int(st, 2);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? EVK_OK : EVK_EIO;
}

int
evk_jobs_wait(sqlite3 *db, int64_t id, const char *workflow, long long timeout_ms,
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
evk_jobs_cursor(sqlite3 *db, const char *name, int64_t *seq)
{
	sqlite3_stmt *st = evk_store_stmt(db, "SELECT last_seq FROM cursors WHERE name = ?");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*seq = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? EVK_OK : rc == SQLITE_DONE ? EVK_EINVAL : EVK_EIO;
}

int
evk_jobs_cursor_set(sqlite3 *db, const char *name, uint64_t seq, bool create)
{
	sqlite3_stmt *st = evk_store_stmt(
		db, create ? "INSERT OR IGNORE INTO cursors (last_seq, name) VALUES (?, ?)"
			   : "UPDATE cursors SET last_seq = ? WHERE name = ?");
	if (st == NULL)
		return EVK_EIO;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
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
