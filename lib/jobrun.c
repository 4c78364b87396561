#include "evkit/jobrun.h"

#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/limits.h"
#include "evkit/topic.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

/* The first error is kept; later steps of a failed call do nothing. */
static int
fail(struct evk_jobrun *r, int err)
{
	if (r->err == EVK_OK)
		r->err = err;
	return r->err;
}

static cJSON *
base_payload(struct evk_jobrun *r)
{
	cJSON *p = cJSON_CreateObject();
	if (p == NULL || !cJSON_AddStringToObject(p, "process_id", r->process_id) ||
	    !cJSON_AddStringToObject(p, "workflow_id", r->q.workflow) ||
	    !cJSON_AddNumberToObject(p, "job_id", (double)r->q.id) ||
	    !cJSON_AddNumberToObject(p, "attempt", r->q.attempt)) {
		cJSON_Delete(p);
		fail(r, EVK_ENOMEM);
		return NULL;
	}
	return p;
}

/* Sends event on the process's topic, or on the workflow's (and the
 * resource's); takes p (NULL: out of memory). */
static void
emit_on(struct evk_jobrun *r, const char *scope, const char *event, cJSON *p)
{
	char topic[EVK_TOPIC_MAX + 1];
	const struct evk_jobrun_sink *k = r->sink;
	if (p == NULL) {
		fail(r, EVK_ENOMEM);
	} else if (strcmp(scope, "process") == 0) {
		snprintf(topic, sizeof(topic), "process:%s", r->process_id);
		fail(r, k->emit(k->arg, topic, event, p));
	} else {
		snprintf(topic, sizeof(topic), "workflow:%s", r->q.workflow);
		fail(r, k->emit(k->arg, topic, event, p));
		if (r->q.has_resource) {
			snprintf(topic, sizeof(topic), "resource:%s", r->q.resource);
			fail(r, k->emit(k->arg, topic, event, p));
		}
	}
	cJSON_Delete(p);
}

/* Overall percentage: steps done plus the running step's share. */
static double
overall(const struct evk_jobrun *r, double step_pct)
{
	double v = (r->step + step_pct / 100.0) * 100.0 / r->q.nsteps;
	return round(v * 100) / 100;
}

static const char *
step_name(const struct evk_jobrun *r)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetArrayItem(r->q.steps, r->step), "name"));
}

/* A payload with the step and fields given by fmt: 's' a string, 'n' a
 * number, 'o' an object (taken), each after its name. */
static cJSON *
step_payload(struct evk_jobrun *r, const char *fmt, ...)
{
	cJSON *p = base_payload(r);
	va_list ap;
	bool ok = p && cJSON_AddStringToObject(p, "step", step_name(r)) != NULL;
	va_start(ap, fmt);
	for (const char *f = fmt; *f; f++) {
		const char *name = va_arg(ap, const char *);
		if (*f == 's') {
			const char *v = va_arg(ap, const char *);
			ok = ok && cJSON_AddStringToObject(p, name, v) != NULL;
		} else if (*f == 'n') {
			double v = va_arg(ap, double);
			ok = ok && cJSON_AddNumberToObject(p, name, v) != NULL;
		} else {
			cJSON *v = va_arg(ap, cJSON *);
			if (!(ok = ok && v && cJSON_AddItemToObject(p, name, v)))
				cJSON_Delete(v);
		}
	}
	va_end(ap);
	if (!ok) {
		cJSON_Delete(p);
		return NULL;
	}
	return p;
}

static void
log_state(struct evk_jobrun *r, const char *what)
{
	r->sink->log(r->sink->arg, (long long)r->q.id, r->q.attempt, what);
}

/* Announces the job's current step, whose child the caller starts with
 * evk_jobrun_launch once the announcement has committed. */
static void
start_step(struct evk_jobrun *r)
{
	emit_on(r, "process", "step_started", step_payload(r, "n", "percentage", overall(r, 0)));
	r->s.pid = -1;
	r->launch = true;
}

int
evk_jobrun_launch(struct evk_jobrun *r)
{
	if (!r->launch || r->err != EVK_OK)
		return r->err;
	const cJSON *run = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetArrayItem(r->q.steps, r->step), "run");
	int n = cJSON_GetArraySize(run);
	char **argv = calloc((size_t)n + 1, sizeof(char *));
	char vars[6][200], *extra[7] = { vars[0], vars[1], vars[2], vars[3], vars[4], vars[5] };
	if (argv == NULL)
		return fail(r, EVK_ENOMEM);
	for (int i = 0; i < n; i++)
		argv[i] = cJSON_GetStringValue(cJSON_GetArrayItem(run, i));
	snprintf(vars[0], 200, "EVWORKER_JOB_ID=%lld", (long long)r->q.id);
	snprintf(vars[1], 200, "EVWORKER_ATTEMPT=%d", r->q.attempt);
	snprintf(vars[2], 200, "EVWORKER_PROGRESS_FD=%d", EVK_STEP_PROGRESS_FD);
	snprintf(vars[3], 200, "EVWORKER_PROCESS_ID=%s", r->process_id);
	snprintf(vars[4], 200, "EVWORKER_WORKFLOW_ID=%s", r->q.workflow);
	snprintf(vars[5], 200, "EVWORKER_STEP=%s", step_name(r));
	r->launch = false;
	if (fail(r, evk_step_start(&r->s, argv, "EVWORKER_", extra, r->q.input,
				   r->q.input_len)) == EVK_OK)
		fail(r, evk_jobs_set_child(r->db, r->q.id, r->s.pid));
	free(argv);
	return r->err;
}

/* One line from the step's progress descriptor: "PERCENT [MESSAGE]", a
 * JSON object {"event", "payload"}, or any other text. */
static void
progress_line(void *arg, char *line)
{
	struct evk_jobrun *r = arg;
	char *end;
	double pct = strtod(line, &end);
	if (end != line && (*end == '\0' || *end == ' ') && pct >= 0 && pct <= 100 &&
	    !isnan(pct)) {
		while (*end == ' ')
			end++;
		emit_on(r, "process", "step_progress",
			step_payload(r, "nns", "percentage", overall(r, pct), "step_percentage",
				     pct, "content", end));
		return;
	}
	cJSON *o = cJSON_Parse(line);
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
	if (cJSON_IsObject(o) && cJSON_IsString(ev) &&
	    evk_event_name_valid(ev->valuestring, strlen(ev->valuestring))) {
		cJSON *payload = cJSON_DetachItemFromObjectCaseSensitive(o, "payload");
		char name[EVK_EVENT_MAX + 1];
		snprintf(name, sizeof(name), "%s", ev->valuestring);
		emit_on(r, "process", name, payload ? payload : cJSON_CreateObject());
		cJSON_Delete(o);
		return;
	}
	cJSON_Delete(o);
	emit_on(r, "process", "progress_update", step_payload(r, "s", "content", line));
}

static long long
backoff_ms(const struct evk_jobrun *r)
{
	unsigned jitter = 0;
	if (getrandom(&jitter, sizeof(jitter), 0) != sizeof(jitter))
		jitter = 0;
	return evk_jobs_backoff_ms(r->q.backoff_s, r->q.attempt, jitter);
}

/* Records the end of the job's attempt and broadcasts the workflow's end
 * (unless snoozed). */
static void
job_ended(struct evk_jobrun *r, bool ok, bool snooze, const char *err)
{
	bool retry = !ok && !snooze && r->q.attempt < r->q.max_attempts;
	struct evk_job_end e = {
		.state = ok ? "completed" : snooze ? "scheduled" : retry ? "retryable" : "discarded",
		.error = ok ? NULL : snooze ? "snoozed" : err,
		.output = r->s.tail, .output_len = r->s.tail_len,
		.due_ms = evk_wall_ms() + (snooze || retry ? backoff_ms(r) : 0),
		.finished = ok || (!snooze && !retry), .uncount = snooze,
	};
	fail(r, evk_jobs_end(r->db, r->q.id, &e));
	if (!snooze) {
		cJSON *p = base_payload(r);
		if (p && (!cJSON_AddStringToObject(p, "status", ok ? "completed" : "failed") ||
			  (!ok && (!cJSON_AddStringToObject(p, "error", err) ||
				   !cJSON_AddBoolToObject(p, "will_retry", retry))))) {
			cJSON_Delete(p);
			p = NULL;
		}
		emit_on(r, "workflow", ok ? "workflow_completed" : "workflow_failed", p);
	}
	log_state(r, ok ? "completed" : snooze ? "snoozed" : retry ? "failed, will retry"
							      : "failed, discarded");
}

/* The step's child is gone with status; goes on to the next step or ends
 * the job. Returns true while the job runs on. */
static bool
step_ended(struct evk_jobrun *r, int status)
{
	evk_step_read(&r->s, progress_line, r);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	bool ok = code == 0 && !r->timed_out;
	bool snooze = code == 75 && !r->timed_out;
	char err[160];
	if (r->timed_out)
		snprintf(err, sizeof(err), "timeout after %lld s", r->q.timeout_s);
	else if (WIFSIGNALED(status))
		snprintf(err, sizeof(err), "killed by signal %d", WTERMSIG(status));
	else
		snprintf(err, sizeof(err), "exit %d", code);

	cJSON *p, *res = ok ? cJSON_CreateObject() : NULL;
	if (ok) {
		if (res && (!cJSON_AddStringToObject(res, "status", "success") ||
			    !cJSON_AddNumberToObject(res, "exit", 0))) {
			cJSON_Delete(res);
			res = NULL;
		}
		p = step_payload(r, "no", "percentage", overall(r, 100), "result", res);
	} else {
		p = step_payload(r, "ns", "percentage", overall(r, 0), "error",
				 snooze ? "snoozed" : err);
	}
	emit_on(r, "process", "step_completed", p);
	if (ok && r->step + 1 < r->q.nsteps) {
		evk_step_close(&r->s);
		r->step++;
		start_step(r);
		return true;
	}
	job_ended(r, ok, snooze, err);
	return false;
}

int
evk_jobrun_poll(struct evk_jobrun *r, bool *done, bool *failed)
{
	int status;
	*done = *failed = false;
	if (r->s.pid <= 0) /* not launched */
		return r->err;
	evk_step_read(&r->s, progress_line, r);
	if (r->deadline > 0 && !r->timed_out && evk_mono_ms() >= r->deadline) {
		r->timed_out = true;
		kill(-r->s.pid, SIGKILL);
	}
	if (r->err == EVK_OK && waitpid(r->s.pid, &status, WNOHANG) == r->s.pid) {
		/* The step is over; whatever its group left behind goes too. */
		kill(-r->s.pid, SIGKILL);
		if (!step_ended(r, status)) {
			*done = true;
			*failed = !(WIFEXITED(status) &&
				    (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 75));
		}
	}
	return r->err;
}

static void
on_rescued(int64_t id, pid_t child, void *arg)
{
	const struct evk_jobrun_sink *k = arg;
	if (child > 0)
		kill(-child, SIGKILL); /* the dead worker's step, if left */
	k->log(k->arg, (long long)id, 0, "rescued");
}

int
evk_jobrun_rescue(struct evk_db *db, const char *host, const struct evk_jobrun_sink *sink)
{
	return evk_jobs_rescue(db, host, getpid(), on_rescued, (void *)sink);
}

int
evk_jobrun_claim(struct evk_db *db, const char *queue, const char *host,
		 const struct evk_jobrun_sink *sink, struct evk_jobrun **run)
{
	struct evk_jobrun *r = calloc(1, sizeof(*r));
	*run = NULL;
	if (r == NULL)
		return EVK_ENOMEM;
	r->sink = sink;
	r->db = db;
	r->s.progress_fd = r->s.output_fd = -1;
	r->s.pid = -1;
	int rv = evk_jobs_claim(db, queue, host, getpid(), &r->q);
	if (rv == EVK_OK && evk_uuid7(r->process_id) != EVK_OK)
		rv = EVK_EIO;
	if (rv == EVK_OK) {
		emit_on(r, "workflow", "process_created", base_payload(r));
		rv = r->err;
	}
	if (rv != EVK_OK || r->q.nsteps <= 0) {
		evk_jobrun_free(r);
		/* None due (the rescues stand), or a rescuer still held the
		 * job's lock (PostgreSQL: the claim was undone; next time). */
		return rv == EVK_ETIMEDOUT || rv == EVK_EAGAIN ? EVK_OK : rv;
	}
	log_state(r, "started");
	if (r->q.timeout_s > 0)
		r->deadline = evk_mono_ms() + r->q.timeout_s * 1000;
	start_step(r);
	*run = r;
	return r->err;
}

int
evk_jobrun_abandon(struct evk_jobrun *r)
{
	if (r->s.pid > 0) {
		kill(-r->s.pid, SIGKILL);
		waitpid(r->s.pid, NULL, 0);
	}
	fail(r, evk_jobs_abandon(r->db, r->q.id));
	log_state(r, "stopped, will retry");
	return r->err;
}

void
evk_jobrun_free(struct evk_jobrun *r)
{
	if (r == NULL)
		return;
	evk_step_close(&r->s);
	evk_job_release(&r->q);
	free(r);
}
