/* Running one claimed job of the queue (lib/jobs.c): its steps in order,
 * each a child (lib/step.c), their events, the job's end recorded with
 * Oban's retry, snooze and discard. The program gives the sinks: where
 * events go (evworker: its outbox) and where the log lines go. Nothing
 * here prints or exits. Errors: EVK_ENOMEM, EVK_EIO (the database: see
 * evk_db_error, or a step that cannot start: errno). */
#ifndef EVKIT_JOBRUN_H
#define EVKIT_JOBRUN_H

#include "evkit/jobs.h"
#include "evkit/step.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

struct evk_db;

struct evk_jobrun_sink {
	/* An event for topic; payload stays the caller's. 0 or an error. */
	int (*emit)(void *arg, const char *topic, const char *event, cJSON *payload);
	/* "job ID WHAT (attempt N)"; attempt 0 when it does not apply. */
	void (*log)(void *arg, long long id, int attempt, const char *what);
	void *arg;
};

struct evk_jobrun {
	const struct evk_jobrun_sink *sink;
	struct evk_db *db;
	struct evk_job q;       /* as claimed */
	int step;               /* the current step */
	char process_id[37];
	long long deadline;     /* monotonic ms, 0: none */
	struct evk_step s;      /* the current step's child (pid -1: none yet) */
	bool launch;            /* the current step waits for evk_jobrun_launch */
	bool timed_out;
	int err;                /* the first error met, sticky */
};

/* Each call below runs inside the caller's write transaction, which
 * holds the job's changes and its events (the sink's) together.
 *
 * Rescues the jobs of dead workers (evk_jobs_rescue): their steps are
 * killed, each logged "rescued". A run loop calls it once a turn, before
 * its claims. */
int evk_jobrun_rescue(struct evk_db *db, const char *host, const struct evk_jobrun_sink *sink);

/* Claims the next due job of queue and announces it (process_created)
 * and its first step (step_started). *run is NULL when no job is due. */
int evk_jobrun_claim(struct evk_db *db, const char *queue, const char *host,
		     const struct evk_jobrun_sink *sink, struct evk_jobrun **run);

/* Starts the child of the step announced last (if not yet started) and
 * records its pid, in a write transaction after the one that announced
 * it: the claim is stored before its child runs, and a worker killed in
 * between leaves only the pid's UPDATE and COMMIT unrecorded (the child
 * runs already; a transaction cannot hold it back). When that commit
 * fails, the caller kills the child's process group. */
int evk_jobrun_launch(struct evk_jobrun *r);

/* Reads what the step wrote (progress lines become events), kills it at
 * its timeout, and when its child has ended announces the next step (to
 * launch) or ends the job: then *done is true and *failed says whether
 * the attempt failed (a snooze is not a failure). */
int evk_jobrun_poll(struct evk_jobrun *r, bool *done, bool *failed);

/* Kills the running step and puts the job back as retryable (shutdown). */
int evk_jobrun_abandon(struct evk_jobrun *r);

void evk_jobrun_free(struct evk_jobrun *r);

#endif
