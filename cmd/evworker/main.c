/* evworker — a durable job queue in SQLite or PostgreSQL that runs commands and
 * workflows of named steps and broadcasts their progress on the bus
 * (Oban workers broadcasting through Phoenix.PubSub). The queue itself
 * is lib/jobs.c; this file holds the commands, the run loop and the
 * steps' children, args.c the command line. */
#include "evworker.h"

#include "evkit/buf.h"
#include "evkit/db.h"
#include "evkit/bus.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/jobrun.h"
#include "evkit/jobs.h"
#include "evkit/opts.h"
#include "evkit/outbox.h"
#include "evkit/step.h"
#include "evkit/store.h"
#include "evkit/tls.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUTBOX_ROW_TARGET (256 * 1024) /* bytes of event lines per outbox row, about */
#define OUTBOX_DEFER_MS 10 /* how long a delivery may wait for a turn that is due */

/* The worker: everything a command and the run loop's callbacks share. */
struct worker {
	struct opts o;
	const struct command *cmd;
	char url[EVK_URL_MAX];
	char host[256];
	struct evk_db jobs;  /* the queue */
	struct evk_outbox *outbox; /* opened when first used */
	bool hub_warned;
	bool outbox_dirty; /* rows added since the last delivery */
	long long dirty_since; /* monotonic ms of the oldest such row */
	struct evk_buf batch;  /* the open transaction's event lines */
	long batch_n;          /* how many */
	struct evk_jobrun_sink sink; /* where running jobs send events and logs */
	struct evk_jobrun *running[MAX_CONCURRENCY];
	int nrunning;
	long long pinged; /* when the queue's connection was last checked */
};

/* Signals reach the run loop through these two (a handler has no
 * argument): the stop request and the SIGCHLD self-pipe. */
static volatile sig_atomic_t stopping;
static int child_pipe[2] = { -1, -1 };

static void
on_child(int sig)
{
	int e = errno;
	(void)sig;
	if (write(child_pipe[1], "c", 1) < 0) {
		/* full: the loop is awake anyway */
	}
	errno = e;
}

/* ---- the database ---- */

/* A worker that gives up leaves no step running: those started in the
 * failed transaction are not recorded, the others would be killed by
 * the rescue anyway. */
static void
stop_steps(struct worker *w)
{
	for (int i = 0; i < w->nrunning; i++)
		if (w->running[i]->s.pid > 0)
			kill(-w->running[i]->s.pid, SIGKILL);
}

/* The queue failed, a lost PostgreSQL connection included (a worker on
 * PostgreSQL rescues this one's jobs once the connection is gone): exit
 * 69 with no step left running. */
static void
db_die(struct worker *w, const char *what)
{
	stop_steps(w);
	evk_db_fail(&w->jobs, what);
	evk_die(EVK_EX_UNAVAILABLE, "%s", evk_db_error(&w->jobs));
}

/* Dies unless rv (from lib/jobs.c) is EVK_OK. */
static void
check(struct worker *w, int rv, const char *what)
{
	if (rv == EVK_ENOMEM) {
		stop_steps(w);
		evk_die(EVK_EX_FAIL, "out of memory");
	}
	if (rv != EVK_OK)
		db_die(w, what);
}

static void
begin(struct worker *w)
{
	if (evk_db_begin(&w->jobs) != EVK_OK)
		db_die(w, "cannot start a transaction");
}

static void
commit(struct worker *w)
{
	if (evk_db_commit(&w->jobs) != EVK_OK)
		db_die(w, "cannot commit");
}

/* ---- broadcasts: an outbox in the database (lib/outbox.c) ---- */

static struct evk_outbox *
the_outbox(struct worker *w)
{
	if (w->outbox == NULL && evk_outbox_open(&w->outbox, &w->jobs, w->url, NULL) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	return w->outbox;
}

/* The event lines gathered so far become one outbox row of the open
 * transaction. */
static void
outbox_record(struct worker *w)
{
	if (w->batch_n == 0)
		return;
	if (evk_outbox_record(the_outbox(w), EVK_OUTBOX_LINES, w->batch.p, w->batch.len,
			      w->batch_n, NULL) != EVK_OK) {
		stop_steps(w);
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_outbox_error(w->outbox));
	}
	evk_buf_reset(&w->batch);
	w->batch_n = 0;
	if (!w->outbox_dirty)
		w->dirty_since = evk_mono_ms();
	w->outbox_dirty = true;
}

/* Adds one event line to the open transaction's. */
static void
outbox_add(struct worker *w, const char *topic, const char *event, cJSON *payload)
{
	const char *why = NULL;
	if (evk_event_build(&w->batch, NULL, topic, event, payload, &why) != EVK_OK) {
		stop_steps(w);
		evk_die(EVK_EX_FAIL, "cannot build event: %s", why ? why : "");
	}
	if (evk_buf_addch(&w->batch, '\n') != EVK_OK) {
		stop_steps(w);
		evk_die(EVK_EX_FAIL, "out of memory");
	}
	w->batch_n++;
	if (w->batch.len >= OUTBOX_ROW_TARGET)
		outbox_record(w);
}

/* Publishes the outbox, oldest first, each line once; says once when the
 * hub is away. Another worker delivering (PostgreSQL): again next time,
 * or, with last, after a short wait (bounded: that one sends them too). */
static void
outbox_flush(struct worker *w, bool last)
{
	struct evk_outbox_report r;
	int rv;
	w->outbox_dirty = false;
	for (int tries = 0;; tries++) {
		rv = evk_outbox_flush(the_outbox(w), &r);
		if (rv != EVK_OK || !r.busy || !last || tries == 100)
			break;
		nanosleep(&(struct timespec){ 0, 20 * 1000000 }, NULL);
	}
	w->outbox_dirty = rv == EVK_OK && r.busy;
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_outbox_error(w->outbox));
	if (r.damaged)
		evk_warn("outbox row %lld is damaged: it and the %ld events from it on wait",
			 (long long)r.damaged, r.pending);
	if (r.pending == 0) {
		w->hub_warned = false;
	} else if (!w->hub_warned && r.unreachable) {
		evk_warn("hub at '%s' unavailable: events wait in the outbox", w->url);
		w->hub_warned = true;
	}
}

/* ---- enqueue ---- */

static void
print_json(cJSON *j)
{
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;
	if (s == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	puts(s);
	cJSON_free(s);
}

/* Prints job id as JSON; exits 1 when there is no such job. */
static void
print_job(struct worker *w, int64_t id, bool with_output)
{
	cJSON *j;
	int rv = evk_jobs_get(&w->jobs, id, with_output, &j);
	if (rv == EVK_EINVAL)
		evk_die(EVK_EX_FAIL, "no job %lld", (long long)id);
	check(w, rv, "cannot read the job");
	print_json(j);
	cJSON_Delete(j);
}

/* The steps of a command job, or of the workflow in --steps. */
static char *
steps_of(struct opts *o, int argc, char **argv)
{
	char why[EVK_OPT_WHY], *text;
	int rv;
	if (o->steps_file && argc > 0)
		evk_usage_die("--steps and a command exclude each other");
	if (!o->steps_file && argc == 0)
		evk_usage_die("missing CMD after '--' (or --steps FILE)");
	if (o->steps_file)
		rv = evk_jobs_steps_read(o->steps_file, &text, why);
	else
		rv = evk_jobs_steps_argv(argc, argv, &text);
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		evk_die(rv == EVK_EIO ? EVK_EX_IOERR : EVK_EX_DATAERR, "%s", why);
	return text;
}

/* The job the options describe, with steps_text; due now, --in or --at. */
static struct evk_job_spec
spec_of(const struct opts *o, const char *steps_text)
{
	struct evk_job_spec s = {
		.queue = o->queue, .steps = steps_text, .workflow = o->workflow,
		.resource = o->resource, .priority = o->priority,
		.max_attempts = o->max_attempts, .backoff_s = o->backoff,
		.unique_for_s = o->unique_for, .due_ms = evk_wall_ms() + o->in_s * 1000,
	};
	if (o->timeout)
		s.timeout_s = evk_flag_int("--timeout", o->timeout, 1, 86400 * 365);
	if (o->at) {
		char ts[EVK_TS_LEN + 1];
		struct tm tm = { 0 };
		if (evk_ts_normalise(o->at, strlen(o->at), ts) != EVK_OK ||
		    strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
			evk_usage_die("--at wants an RFC 3339 UTC time, not '%s'", o->at);
		s.due_ms = (long long)timegm(&tm) * 1000;
	}
	return s;
}

int
cmd_enqueue(struct worker *w, int argc, char **argv)
{
	char *steps_text = steps_of(&w->o, argc, argv);
	struct evk_job_spec spec = spec_of(&w->o, steps_text);
	int64_t id;
	begin(w);
	check(w, evk_jobs_insert(&w->jobs, &spec, &id), "cannot enqueue");
	commit(w);
	cJSON_free(steps_text);
	print_job(w, id, false);
	return 0;
}

/* ---- on: a job per matching event ---- */

/* The subscription's name: --name, else its patterns and steps. */
static void
on_name(const struct opts *o, int np, char **patterns, const char *steps, struct evk_buf *name)
{
	int rv = EVK_OK;
	if (o->name)
		rv |= evk_buf_addstr(name, o->name);
	for (int i = 0; !o->name && i < np; i++)
		rv |= evk_buf_addstr(name, patterns[i]) | evk_buf_addch(name, ' ');
	if (!o->name)
		rv |= evk_buf_addstr(name, steps);
	if ((rv | evk_buf_addch(name, '\0')) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* Enqueues a job for each event matching a pattern, and moves the
 * cursor, in one transaction, until stopped or the hub is lost. */
static void
on_loop(struct worker *w, struct evk_sub *sub, int np, char **patterns, const char *steps,
	const char *name)
{
	struct evk_event ev;
	struct evk_job_spec spec = spec_of(&w->o, steps);
	while (!stopping) {
		int rv = evk_sub_next_past_gaps(sub, &ev, 200, evk_warn_text);
		if (rv == EVK_ETIMEDOUT)
			continue;
		if (rv != EVK_OK) {
			evk_warn("lost the hub at '%s': %s", w->url, evk_strerror(rv));
			break;
		}
		bool match = false;
		for (int i = 0; i < np && !match; i++)
			match = evk_pattern_match(patterns[i], ev.topic, ev.topic_len);
		begin(w);
		if (match) {
			int64_t id;
			spec.input = ev.line;
			spec.input_len = ev.line_len;
			spec.due_ms = evk_wall_ms() + w->o.in_s * 1000;
			check(w, evk_jobs_insert(&w->jobs, &spec, &id), "cannot enqueue");
			if (!w->o.quiet)
				fprintf(stderr, "evworker: event %llu enqueued as job %lld\n",
					(unsigned long long)ev.seq, (long long)id);
		}
		check(w, evk_jobs_cursor_set(&w->jobs, name, ev.seq, false), "cannot write");
		commit(w);
	}
}

/* on PATTERN... -- CMD: one job per matching event, the event on the job's
 * stdin. The job and the subscription's position are written in one
 * transaction, and a restart resumes after that position: no event is
 * enqueued twice or missed (while the hub retains it). */
int
cmd_on(struct worker *w, int argc, char **argv)
{
	int np = 0;
	while (np < argc && strcmp(argv[np], "--") != 0)
		np++;
	if (np == 0)
		evk_usage_die("missing PATTERN");
	if (np >= argc - 1 && !w->o.steps_file)
		evk_usage_die("missing '-- CMD' after the patterns");
	for (int i = 0; i < np; i++) {
		char msg[640];
		if (evk_pattern_check(argv[i], msg, sizeof(msg)) == EVK_PATTERN_BAD)
			evk_usage_die("%s", msg);
		else if (*msg)
			evk_warn("%s", msg);
	}
	int skip = np < argc ? 1 : 0;
	char *steps_text = steps_of(&w->o, argc - np - skip, argv + np + skip);
	struct evk_buf name = EVK_BUF_INIT(0);
	on_name(&w->o, np, argv, steps_text, &name);

	int64_t since = EVK_SINCE_LIVE;
	int rv = evk_jobs_cursor(&w->jobs, name.p, &since);
	if (rv != EVK_EINVAL)
		check(w, rv, "cannot read the subscription's place");
	struct evk_sub *sub;
	rv = evk_sub_open(&sub, w->url, since);
	if (rv != EVK_OK)
		evk_die_hub(w->url, rv);
	if (since == EVK_SINCE_LIVE) {
		/* First start: from now on, and remember it. */
		begin(w);
		check(w, evk_jobs_cursor_set(&w->jobs, name.p, evk_sub_start_head(sub), true),
		      "cannot write");
		commit(w);
	}
	if (w->o.ready_file && evk_ready_file(w->o.ready_file) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot create ready file '%s': %s", w->o.ready_file,
			strerror(errno));
	on_loop(w, sub, np, argv, steps_text, name.p);
	evk_sub_close(sub);
	evk_buf_release(&name);
	cJSON_free(steps_text);
	return 0;
}

/* ---- running jobs (lib/jobrun.c): their events go to the outbox ---- */

static int
sink_emit(void *arg, const char *topic, const char *event, cJSON *payload)
{
	outbox_add(arg, topic, event, payload);
	return EVK_OK;
}

static void
sink_log(void *arg, long long id, int attempt, const char *what)
{
	const struct worker *w = arg;
	if (w->o.quiet)
		return;
	if (attempt > 0)
		fprintf(stderr, "evworker: job %lld %s (attempt %d)\n", id, what, attempt);
	else
		fprintf(stderr, "evworker: job %lld %s\n", id, what);
}

static void
remove_running(struct worker *w, int i)
{
	evk_jobrun_free(w->running[i]);
	w->running[i] = w->running[--w->nrunning];
}

/* ---- run ---- */

/* Starts due jobs up to --concurrency, after the rescue of dead
 * workers' jobs (once a turn with a free slot, not once a claim). */
static void
start_due(struct worker *w)
{
	if (!stopping && w->nrunning < w->o.concurrency)
		check(w, evk_jobrun_rescue(&w->jobs, w->host, &w->sink), "running a job");
	while (!stopping && w->nrunning < w->o.concurrency) {
		struct evk_jobrun *r;
		check(w, evk_jobrun_claim(&w->jobs, w->o.queue, w->host, &w->sink, &r), "running a job");
		if (r == NULL)
			break;
		w->running[w->nrunning++] = r;
	}
}

/* PostgreSQL: a job of this worker cancelled from another host (evworker
 * cancel kills the step itself only on its own host) has its step's
 * process group killed here, as a local cancel does; the step's end then
 * records nothing over the cancel (only an executing job is updated).
 * The query is also the tick's ping. */
static void
kill_cancelled(struct worker *w)
{
	int64_t ids[MAX_CONCURRENCY];
	int n;
	check(w, evk_jobs_cancelled(&w->jobs, ids, MAX_CONCURRENCY, &n), "the queue");
	for (int k = 0; k < n; k++)
		for (int i = 0; i < w->nrunning; i++)
			if (w->running[i]->q.id == ids[k] && w->running[i]->s.pid > 0)
				kill(-w->running[i]->s.pid, SIGKILL);
}

/* Waits up to 100 ms for output, a child's end, a due job or a timeout. */
static void
wait_for_news(struct worker *w)
{
	struct pollfd pfd[2 * MAX_CONCURRENCY + 2];
	int np = 0, dbfd = evk_db_fd(&w->jobs), di = -1;
	pfd[np++] = (struct pollfd){ .fd = child_pipe[0], .events = POLLIN };
	for (int i = 0; i < w->nrunning; i++) {
		if (w->running[i]->s.progress_fd >= 0)
			pfd[np++] = (struct pollfd){ .fd = w->running[i]->s.progress_fd, .events = POLLIN };
		if (w->running[i]->s.output_fd >= 0)
			pfd[np++] = (struct pollfd){ .fd = w->running[i]->s.output_fd, .events = POLLIN };
	}
	if (dbfd >= 0) {
		di = np;
		pfd[np++] = (struct pollfd){ .fd = dbfd, .events = POLLIN };
	}
	poll(pfd, (nfds_t)np, 100);
	if (pfd[0].revents & POLLIN) {
		char b[64];
		while (read(child_pipe[0], b, sizeof(b)) > 0) {
		}
	}
	/* PostgreSQL: the server said goodbye, or a second passed while jobs
	 * run. A worker whose connection is gone has lost its jobs' locks,
	 * so another may rescue them: it stops them now (db_die) instead of
	 * running them beside their rescuer. */
	long long now = evk_mono_ms();
	if ((di >= 0 && pfd[di].revents) ||
	    (dbfd >= 0 && w->nrunning > 0 && now - w->pinged >= 1000)) {
		w->pinged = now;
		if (evk_db_alive(&w->jobs, false) != EVK_OK)
			db_die(w, "the queue");
		if (w->nrunning > 0)
			kill_cancelled(w);
		else if (evk_db_alive(&w->jobs, true) != EVK_OK)
			db_die(w, "the queue");
	}
}

/* Reads the running jobs' output, kills those past their timeout and
 * collects the steps that ended; returns how many jobs failed. */
static int
reap(struct worker *w)
{
	int failed = 0;
	for (int i = 0; i < w->nrunning; i++) {
		bool done, bad;
		check(w, evk_jobrun_poll(w->running[i], &done, &bad), "running a job");
		failed += bad;
		if (done)
			remove_running(w, i--);
	}
	return failed;
}

/* Whether a step's child ended since the loop last looked (its SIGCHLD
 * is waiting in the pipe). */
static bool
child_ended(void)
{
	struct pollfd p = { .fd = child_pipe[0], .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

/* Starts the children of the steps the turn announced, once it has
 * committed, in a write transaction that records their pids: a worker
 * killed after a child started and before its pid is committed leaves
 * no more unrecorded than that UPDATE and COMMIT take. On PostgreSQL the
 * COMMIT goes without waiting for the answer (the server commits as it
 * reads it); a failure shows at the next statement, and exits 69 there. */
static void
launch_steps(struct worker *w)
{
	int n = 0;
	for (int i = 0; i < w->nrunning; i++)
		n += w->running[i]->launch;
	if (n == 0)
		return;
	begin(w);
	for (int i = 0; i < w->nrunning; i++)
		check(w, evk_jobrun_launch(w->running[i]), "starting a step");
	if (evk_db_commit_send(&w->jobs) != EVK_OK)
		db_die(w, "cannot commit");
}

/* One turn of the run loop in one write transaction: the steps that
 * ended are recorded, the next steps and due jobs announced; then their
 * children start. The turn's events go to the hub, unless a step ended
 * meanwhile: a delivery waits for the hub's answer, so the next turn
 * fills that slot first, for up to OUTBOX_DEFER_MS. Returns how many
 * jobs failed; *over: the loop is done. */
static int
run_turn(struct worker *w, long long *grace_end, bool *over)
{
	begin(w);
	int failed = reap(w);
	start_due(w);
	/* Read once: SIGTERM may come at any point of the turn. */
	bool stop = stopping;
	if (stop && *grace_end < 0)
		*grace_end = evk_mono_ms() + w->o.grace * 1000;
	*over = w->nrunning == 0 && (stop || w->o.drain);
	if (!*over && stop && evk_mono_ms() >= *grace_end) {
		while (w->nrunning > 0) {
			check(w, evk_jobrun_abandon(w->running[0]), "stopping a job");
			remove_running(w, 0);
		}
		*over = true;
	}
	outbox_record(w);
	commit(w);
	launch_steps(w);
	if (w->outbox_dirty &&
	    (*over || !child_ended() || evk_mono_ms() - w->dirty_since >= OUTBOX_DEFER_MS))
		outbox_flush(w, *over);
	return failed;
}

int
cmd_run(struct worker *w, int argc, char **argv)
{
	int failed = 0;
	long long grace_end = -1;
	bool over = false;
	if (argc > 0)
		evk_usage_die("unexpected argument '%s'", argv[0]);
	if (pipe2(child_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		evk_die(EVK_EX_FAIL, "cannot make a pipe: %s", strerror(errno));
	evk_signal_catch(SIGCHLD, on_child, SA_RESTART | SA_NOCLDSTOP);
	w->sink = (struct evk_jobrun_sink){ sink_emit, sink_log, w };
	w->batch = (struct evk_buf)EVK_BUF_INIT(0);
	outbox_flush(w, false); /* what an earlier run could not deliver */
	evk_info("running jobs of queue '%s', %d at once%s", w->o.queue, w->o.concurrency,
		 w->o.drain ? ", until none is due" : "");
	for (;;) {
		failed += run_turn(w, &grace_end, &over);
		if (over)
			break;
		wait_for_news(w);
	}
	evk_buf_release(&w->batch);
	evk_outbox_close(w->outbox);
	w->outbox = NULL;
	return w->o.drain && failed ? EVK_EX_FAIL : 0;
}

/* ---- the other commands ---- */

static int64_t
parse_id(const char *s)
{
	char why[EVK_OPT_WHY];
	long long v;
	if (evk_opt_int("ID", s, 1, INT64_MAX, &v, why) != EVK_OK)
		evk_usage_die("'%s' is not a job id", s);
	return v;
}

/* The one job id a command takes. */
static int64_t
one_id(int argc, char **argv)
{
	if (argc == 0)
		evk_usage_die("missing job ID");
	if (argc > 1)
		evk_usage_die("unexpected argument '%s'", argv[1]);
	return parse_id(argv[0]);
}

static int
no_args(int argc, char **argv)
{
	if (argc > 0)
		evk_usage_die("unexpected argument '%s'", argv[0]);
	return 0;
}

static int
print_each(cJSON *job, void *arg)
{
	(void)arg;
	print_json(job);
	return 0;
}

int
cmd_list(struct worker *w, int argc, char **argv)
{
	no_args(argc, argv);
	if (w->o.state && !evk_jobs_state_valid(w->o.state))
		evk_usage_die("unknown state '%s' (%s)", w->o.state, evk_jobs_states);
	const char *queue = (w->o.given & F_QUEUE) ? w->o.queue : NULL;
	check(w, evk_jobs_list(&w->jobs, w->o.state, queue, print_each, NULL), "cannot list");
	return 0;
}

int
cmd_show(struct worker *w, int argc, char **argv)
{
	print_job(w, one_id(argc, argv), true);
	return 0;
}

static int
cancel_retry(struct worker *w, int argc, char **argv, bool cancel)
{
	int64_t id = one_id(argc, argv);
	char state[16];
	pid_t child;
	begin(w);
	int rv = evk_jobs_cancel_retry(&w->jobs, id, cancel, w->host, state, &child);
	if (rv == EVK_OK)
		commit(w);
	else
		evk_db_rollback(&w->jobs);
	if (rv == EVK_EINVAL && state[0] == '\0')
		evk_die(EVK_EX_FAIL, "no job %lld", (long long)id);
	if (rv == EVK_EINVAL)
		evk_die(EVK_EX_FAIL, cancel ? "job %lld is already %s" : "job %lld is %s",
			(long long)id, cancel ? state : "running");
	check(w, rv, "cannot change the job");
	if (child > 0)
		kill(-child, SIGKILL);
	print_job(w, id, false);
	return 0;
}

int
cmd_cancel(struct worker *w, int argc, char **argv)
{
	return cancel_retry(w, argc, argv, true);
}

int
cmd_retry(struct worker *w, int argc, char **argv)
{
	return cancel_retry(w, argc, argv, false);
}

int
cmd_prune(struct worker *w, int argc, char **argv)
{
	no_args(argc, argv);
	if (w->o.older_than <= 0)
		evk_usage_die("missing --older-than SEC");
	char ts[28];
	int n;
	evk_jobs_ts(evk_wall_ms() - w->o.older_than * 1000, ts);
	check(w, evk_jobs_prune(&w->jobs, ts, &n), "cannot prune");
	printf("{\"pruned\":%d}\n", n);
	return 0;
}

int
cmd_stats(struct worker *w, int argc, char **argv)
{
	cJSON *all;
	no_args(argc, argv);
	check(w, evk_jobs_stats(&w->jobs, &all), "cannot count");
	print_json(all);
	cJSON_Delete(all);
	return 0;
}

/* wait ID | --workflow WF: until the job, or every job of the workflow,
 * has ended; 0 all completed, 1 one discarded or cancelled, 124 at
 * --timeout. It reads the queue, so a job that ended before the wait
 * began is seen at once. */
int
cmd_wait(struct worker *w, int argc, char **argv)
{
	int64_t id = 0;
	int total, pending, failed;
	if (w->o.workflow && argc > 0)
		evk_usage_die("ID and --workflow exclude each other");
	if (!w->o.workflow)
		id = one_id(argc, argv);
	double limit = w->o.timeout ? evk_flag_seconds("--timeout", w->o.timeout, 1e9) : -1;
	int rv = evk_jobs_wait(&w->jobs, id, w->o.workflow, limit < 0 ? -1 : (long long)(limit * 1000),
			       &stopping, &total, &pending, &failed);
	if (rv == EVK_EINVAL && w->o.workflow)
		evk_die(EVK_EX_FAIL, "no job in workflow '%s'", w->o.workflow);
	if (rv == EVK_EINVAL)
		evk_die(EVK_EX_FAIL, "no job %lld", (long long)id);
	if (rv == EVK_ETIMEDOUT || rv == EVK_EINTR)
		evk_warn("%s: %d of %d job%s not ended", rv == EVK_EINTR ? "interrupted" : "timed out",
			 pending, total, total == 1 ? "" : "s");
	if (rv == EVK_ETIMEDOUT || rv == EVK_EINTR)
		return rv == EVK_EINTR ? EVK_EX_FAIL : EVK_EX_TIMEOUT;
	check(w, rv, "cannot read the queue");
	return failed ? EVK_EX_FAIL : 0;
}

int
main(int argc, char **argv)
{
	struct worker w = { .o = { .queue = "default", .max_attempts = 20, .backoff = 15,
				   .concurrency = 1, .grace = 10 } };
	const char *why;

	evk_set_progname(argv[0]);
	int first = parse_args(&w.o, &w.cmd, argc, argv);
	if ((w.cmd->needs & NEED_BUS) &&
	    evk_bus_resolve(w.o.bus, w.url, sizeof(w.url), &why) != EVK_OK)
		evk_usage_die("bad bus address: %s", why);
	if (gethostname(w.host, sizeof(w.host)) != 0)
		snprintf(w.host, sizeof(w.host), "localhost");
	evk_signals_init(&stopping, true);
	if (w.o.db_path == NULL && getenv("EVWORKER_DB") && *getenv("EVWORKER_DB"))
		w.o.db_path = getenv("EVWORKER_DB");
	int rv = evk_jobs_open(&w.jobs, w.o.db_path);
	if (rv == EVK_EINVAL)
		evk_usage_die("%s", evk_db_error(&w.jobs));
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_db_error(&w.jobs));

	int status = w.cmd->run(&w, argc - first, argv + first);
	if (evk_db_close(&w.jobs) != EVK_OK)
		evk_warn("closing the queue: %s", evk_db_error(&w.jobs));
	if (fclose(stdout) != 0 && status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return status;
}
