/* The job queue of evworker, in SQLite: Oban's states (available,
 * scheduled, executing, retryable, completed, discarded, cancelled),
 * queues, priorities, unique jobs and backoff. Every function takes the
 * open database; none prints or exits. Functions that write expect the
 * caller to hold a write transaction (evk_db_begin) where they say so.
 * Errors: EVK_EIO (see evk_db_error), EVK_ENOMEM, EVK_EINVAL. */
#ifndef EVKIT_JOBS_H
#define EVKIT_JOBS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

#define EVK_JOBS_ID_MAX 100 /* bytes of a workflow or resource id */

/* Opens (creating, 0600) the queue at path (NULL: the default
 * $XDG_STATE_HOME/evkit/jobs.db) and brings its schema up to date, with
 * evk_db_open's errors (EVK_EINVAL: no path and no default). */
struct evk_db;
int evk_jobs_open(struct evk_db *db, const char *path);

/* True for one of the seven states; evk_jobs_states lists them. */
bool evk_jobs_state_valid(const char *state);
extern const char evk_jobs_states[];

/* A job to enqueue. steps is the JSON array of {name, run}; input (may be
 * NULL) is given to the job's first step on stdin. */
struct evk_job_spec {
	const char *queue, *steps, *workflow, *resource;
	const char *input;
	size_t input_len;
	int priority, max_attempts;
	long long backoff_s, timeout_s, unique_for_s;
	long long due_ms; /* wall clock, ms */
};

/* Inserts a job, or with unique_for_s finds the pending one of the same
 * queue, steps and workflow; the caller holds a write transaction. */
int evk_jobs_insert(struct evk_db *db, const struct evk_job_spec *spec, int64_t *id);

/* A claimed job. */
struct evk_job {
	int64_t id;
	cJSON *steps; /* owned */
	int nsteps;
	char workflow[EVK_JOBS_ID_MAX + 28], resource[EVK_JOBS_ID_MAX + 28];
	bool has_resource;
	int attempt, max_attempts;
	long long backoff_s, timeout_s;
	char *input; /* owned, or NULL */
	size_t input_len;
};

/* Claims the next due job of queue for worker (host, pid) into *job:
 * EVK_OK, or EVK_ETIMEDOUT when none is due. PostgreSQL: the claim skips
 * rows other workers are claiming, and this session holds the advisory
 * lock on the job's id until evk_jobs_end or evk_jobs_abandon; EVK_EAGAIN
 * when a rescuer still held it (roll back, claim again later). The caller holds a write
 * transaction and frees the job with evk_job_release. */
int evk_jobs_claim(struct evk_db *db, const char *queue, const char *host, pid_t pid,
		   struct evk_job *job);
void evk_job_release(struct evk_job *job);

/* Calls rescued(id, child, arg) for each job left executing by a worker
 * that is no longer alive, after making it available again; the caller
 * holds a write transaction. At most 64 per call. Never by elapsed time:
 * SQLite: jobs of host whose worker process is gone: no process has its
 * pid, or the one that has started at another time or in another boot
 * (child is its step's process group, 0 when that group can no longer be
 * the step's). PostgreSQL: jobs of any host whose advisory lock can be
 * taken, i.e. whose worker's connection has ended (child is 0 unless the
 * worker was on host). */
int evk_jobs_rescue(struct evk_db *db, const char *host, pid_t self,
		    void (*rescued)(int64_t id, pid_t child, void *arg), void *arg);

/* Notes the running step's child (its process group). Inside a
 * transaction on PostgreSQL, evk_jobs_set_child and evk_jobs_end are sent
 * with the next statement or the commit (evk_q_send). */
int evk_jobs_set_child(struct evk_db *db, int64_t id, pid_t child);

/* How a job's attempt ended. */
struct evk_job_end {
	const char *state;    /* completed, scheduled, retryable, discarded */
	const char *error;    /* NULL when completed */
	const char *output;   /* the output tail */
	size_t output_len;
	long long due_ms;     /* next run, when scheduled or retryable */
	bool finished;        /* completed_at is set */
	bool uncount;         /* a snooze: the attempt does not count */
};
int evk_jobs_end(struct evk_db *db, int64_t id, const struct evk_job_end *end);

/* A stopped worker's job goes back to retryable. */
int evk_jobs_abandon(struct evk_db *db, int64_t id);

/* PostgreSQL: the jobs this connection runs (holds the advisory locks
 * of) that were cancelled meanwhile, from a worker on any host: up to
 * max ids into ids[], their number in *n. Their steps are the caller's
 * to kill. Outside a transaction or inside one. On SQLite *n is 0 (a
 * cancel kills the step itself: one host). */
int evk_jobs_cancelled(struct evk_db *db, int64_t ids[], int max, int *n);

/* Cancels (cancel) or makes available again (retry) job id. EVK_EINVAL
 * when no such job (*state empty) or its state forbids it (*state names
 * it); *child is the running step's process group for a cancel of a job
 * running on host, else 0. The caller holds a write transaction. */
int evk_jobs_cancel_retry(struct evk_db *db, int64_t id, bool cancel, const char *host,
			  char state[16], pid_t *child);

/* Job id as a JSON object (dates RFC 3339); the output tail when
 * with_output. EVK_EINVAL when there is no such job. */
int evk_jobs_get(struct evk_db *db, int64_t id, bool with_output, cJSON **job);

/* Calls each(job, arg) for the jobs in state (NULL: all) of queue (NULL:
 * all), by id; stops at the first non-zero return and returns it. */
int evk_jobs_list(struct evk_db *db, const char *state, const char *queue,
		  int (*each)(cJSON *job, void *arg), void *arg);

/* Forgets jobs finished before before_ts (RFC 3339); *n forgotten. */
int evk_jobs_prune(struct evk_db *db, const char *before_ts, int *n);

/* {"queue": {"state": count, ...}, ...} */
int evk_jobs_stats(struct evk_db *db, cJSON **stats);

/* Waits until job id, or every job of workflow (when not NULL), has
 * ended, looking at the queue at growing intervals (at most 500 ms):
 * EVK_OK with *failed the jobs that ended discarded or cancelled;
 * EVK_ETIMEDOUT after timeout_ms (< 0: none) or EVK_EINTR once *stop is
 * set, *pending jobs not ended of *total; EVK_EINVAL when there is no such
 * job. A job that ended before the call returns at once. */
int evk_jobs_wait(struct evk_db *db, int64_t id, const char *workflow, long long timeout_ms,
		  volatile sig_atomic_t *stop, int *total, int *pending, int *failed);

/* The steps in path ("-": stdin), [{"name": NAME, "run": [ARGV...]}, ...]
 * with every string whole, as compact JSON text (cJSON_free). EVK_EIO
 * when it cannot be read, EVK_EINVAL or EVK_ETOOLONG when it is not such
 * steps; why says which. */
int evk_jobs_steps_read(const char *path, char **text, char why[320]);

/* The steps of a command job: [{"name": "run", "run": argv}]. */
int evk_jobs_steps_argv(int argc, char *const argv[], char **text);

/* Where the `evworker on` subscription name stands: EVK_OK with *seq, or
 * EVK_EINVAL when it has no position yet. */
int evk_jobs_cursor(struct evk_db *db, const char *name, int64_t *seq);
/* Sets it to seq (creating it with create; an existing one is kept). */
int evk_jobs_cursor_set(struct evk_db *db, const char *name, uint64_t seq, bool create);

/* Oban's backoff: base + 2^attempt seconds, plus jitter (0-999 tenths of
 * a percent); base 0 retries at once. */
long long evk_jobs_backoff_ms(long long base_s, int attempt, unsigned jitter);

/* ms since the epoch as 2026-11-22T22:01:02.345000Z into ts. */
void evk_jobs_ts(long long ms, char ts[28]);

#endif
