/* lib/jobs.c on an in-memory queue: states, dates, backoff, steps, and a
 * job's way from insert through claim to its end, as wait sees it. */
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/jobs.h"
#include "evkit/store.h"

#include "check.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
test_states_dates_backoff(void)
{
	static const struct {
		const char *s;
		bool valid;
	} states[] = {
		{ "available", true }, { "cancelled", true }, { "retryable", true },
		{ "done", false },     { "", false },         { "able", false },
		{ "completed,", false }, { "scheduled, executing", false },
	};
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		CHECK(evk_jobs_state_valid(states[i].s) == states[i].valid, "state '%s'",
		      states[i].s);

	char ts[28];
	evk_jobs_ts(0, ts);
	CHECK(strcmp(ts, "1970-01-01T00:00:00.000000Z") == 0, "ts 0: %s", ts);
	evk_jobs_ts(1893553445123LL, ts);
	CHECK(strcmp(ts, "2030-01-02T03:04:05.123000Z") == 0, "ts: %s", ts);

	CHECK(evk_jobs_backoff_ms(0, 5, 999) == 0, "base 0 retries at once");
	CHECK(evk_jobs_backoff_ms(15, 1, 0) == 17000, "15 + 2^1 s");
	CHECK(evk_jobs_backoff_ms(15, 1, 999) == 18698, "plus jitter under 10%%");
	CHECK(evk_jobs_backoff_ms(1, 40, 0) == (1LL + (1LL << 30)) * 1000, "2^attempt capped");
}

static void
test_steps_argv(void)
{
	char *argv[] = { "sh", "-c", "echo \"$0\"", NULL };
	char *text;
	CHECK(evk_jobs_steps_argv(3, argv, &text) == EVK_OK &&
		      strcmp(text, "[{\"name\":\"run\",\"run\":[\"sh\",\"-c\",\"echo \\\"$0\\\"\"]}]") ==
			      0,
	      "steps of a command");
	free(text);
}

static void
test_lifecycle(void)
{
	struct evk_db jobs;
	struct evk_db *db = &jobs;
	int64_t a, b, c;
	int total, pending, failed;
	volatile sig_atomic_t stop = 0;

	CHECK(evk_jobs_open(&jobs, ":memory:") == EVK_OK, "open");
	struct evk_job_spec s = { .queue = "q", .steps = "[{\"name\":\"a\",\"run\":[\"true\"]}]",
				  .workflow = "wf", .max_attempts = 1, .due_ms = evk_wall_ms() };
	evk_db_begin(db);
	CHECK(evk_jobs_insert(db, &s, &a) == EVK_OK && a == 1, "insert");
	s.unique_for_s = 60;
	CHECK(evk_jobs_insert(db, &s, &b) == EVK_OK && b == 2, "unique: first");
	CHECK(evk_jobs_insert(db, &s, &c) == EVK_OK && c == 2, "unique: the same job");
	evk_db_commit(db);

	CHECK(evk_jobs_wait(db, 0, "wf", 0, &stop, &total, &pending, &failed) == EVK_ETIMEDOUT &&
		      total == 2 && pending == 2,
	      "wait: nothing ended yet");
	CHECK(evk_jobs_wait(db, 0, "nope", 0, &stop, &total, &pending, &failed) == EVK_EINVAL,
	      "wait: no such workflow");

	struct evk_job j;
	evk_db_begin(db);
	CHECK(evk_jobs_claim(db, "q", "h", getpid(), &j) == EVK_OK && j.id == 1 &&
		      j.attempt == 1 && j.nsteps == 1 && strcmp(j.workflow, "wf") == 0,
	      "claim the first");
	struct evk_job_end e = { .state = "completed", .output = "out", .output_len = 3,
				 .due_ms = evk_wall_ms(), .finished = true };
	CHECK(evk_jobs_end(db, j.id, &e) == EVK_OK, "end");
	evk_job_release(&j);
	CHECK(evk_jobs_claim(db, "other", "h", getpid(), &j) == EVK_ETIMEDOUT, "none in 'other'");
	evk_db_commit(db);
	CHECK(evk_jobs_wait(db, 1, NULL, -1, &stop, &total, &pending, &failed) == EVK_OK &&
		      failed == 0,
	      "wait: an ended job returns at once");

	char state[16];
	pid_t child;
	evk_db_begin(db);
	CHECK(evk_jobs_cancel_retry(db, 1, true, "h", state, &child) == EVK_EINVAL &&
		      strcmp(state, "completed") == 0,
	      "a completed job cannot be cancelled");
	CHECK(evk_jobs_cancel_retry(db, 2, true, "h", state, &child) == EVK_OK && child == 0,
	      "cancel");
	CHECK(evk_jobs_cancel_retry(db, 9, true, "h", state, &child) == EVK_EINVAL && !*state,
	      "no job 9");
	evk_db_commit(db);
	CHECK(evk_jobs_wait(db, 0, "wf", -1, &stop, &total, &pending, &failed) == EVK_OK &&
		      total == 2 && failed == 1,
	      "wait: the workflow ended, one cancelled");

	cJSON *job;
	CHECK(evk_jobs_get(db, 1, true, &job) == EVK_OK, "get");
	CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(job, "output")), "out") == 0 &&
		      cJSON_IsString(cJSON_GetObjectItem(job, "scheduled_at")) &&
		      cJSON_IsArray(cJSON_GetObjectItem(job, "steps")),
	      "a job as JSON: output, RFC 3339 scheduled_at, steps parsed");
	cJSON_Delete(job);
	CHECK(evk_jobs_get(db, 9, false, &job) == EVK_EINVAL && job == NULL, "get: no job 9");
	evk_db_close(&jobs);
}

int
main(void)
{
	test_states_dates_backoff();
	test_steps_argv();
	test_lifecycle();
	return check_done("test_jobs");
}
