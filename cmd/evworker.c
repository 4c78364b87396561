/* evworker — a durable job queue in SQLite that runs commands and
 * workflows of named steps and broadcasts their progress on the bus
 * (Oban workers broadcasting through Phoenix.PubSub). */
#include "evkit/tls.h"
#include "evkit/buf.h"
#include "evkit/bus.h"
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/outbox.h"
#include "evkit/store.h"
#include "evkit/topic.h"
#include "evkit/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 256
#define OUTPUT_TAIL 4096  /* bytes of a job's output kept */
#define PROGRESS_LINE 4096 /* longest progress line */
#define PROGRESS_FD 3      /* the child's progress descriptor */

struct opts {
	const char *db_path, *bus, *queue, *state, *steps_file, *workflow, *resource;
	int priority, max_attempts, concurrency;
	long long backoff, timeout, in_s, unique_for, grace, older_than;
	const char *at;
	const char *name, *ready_file;
	bool drain;
};

static volatile sig_atomic_t stopping;
static int child_pipe[2] = { -1, -1 }; /* SIGCHLD wakes the run loop */

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

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

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: evworker [--db FILE] [--bus URL] COMMAND [ARGS]\n"
		"\n"
		"A durable job queue: jobs are commands or workflows of named steps;\n"
		"workers run them and broadcast every step on the bus.\n"
		"\n"
		"  enqueue [opts] -- CMD [ARG...]   a command job (argv, no shell)\n"
		"  enqueue [opts] --steps FILE      a workflow: [{\"name\":..,\"run\":[..]},..]\n"
		"      --queue Q  --priority 0-9  --max-attempts N (20)  --backoff SEC (15)\n"
		"      --timeout SEC  --in SEC  --at TS  --unique-for SEC\n"
		"      --workflow ID  --resource ID\n"
		"  run [--queue Q] [--concurrency N] [--drain] [--grace SEC]\n"
		"  list [--state S] [--queue Q]     jobs as JSON lines\n"
		"  show ID                          one job, with its output tail\n"
		"  cancel ID | retry ID             stop (kill) a job | run it again\n"
		"  prune --older-than SEC           forget finished jobs\n"
		"  stats                            counts per queue and state\n"
		"  on [--name N] [--ready-file F] [opts] PATTERN... -- CMD [ARG...]\n"
		"                                   a job per matching event, the event\n"
		"                                   on the job's stdin\n"
		"\n"
		"  --db FILE   the queue (default $XDG_STATE_HOME/evkit/jobs.db)\n"
		"  --bus URL   the hub (default $EVBUS_URL, else a private ipc path)\n"
		EVK_TLS_USAGE
		"  -h, --help, --version\n"
		"\n"
		"A step exits 0 for success, 75 to snooze (run again after the backoff,\n"
		"no attempt counted), anything else fails. It reports progress on the\n"
		"descriptor $EVWORKER_PROGRESS_FD: 'PERCENT [MESSAGE]', a JSON object\n"
		"{\"event\":..,\"payload\":..}, or any other line as a progress update.\n"
		"\n"
		"Exit: 0 ok, 1 job failed (run --drain) or no such job, 2 usage,\n"
		"69 database unavailable.\n");
	exit(status);
}

static void
new_uuid(char out[37])
{
	if (evk_uuid7(out) != EVK_OK)
		evk_die(EVK_EX_FAIL, "no random bytes: %s", strerror(errno));
}

/* ---- the database ---- */

static sqlite3 *db;
static char url[EVK_URL_MAX];
static char host[256];

static void
db_die(const char *what)
{
	evk_die(EVK_EX_UNAVAILABLE, "%s: %s", what, sqlite3_errmsg(db));
}

static sqlite3_stmt *
stmt(const char *sql)
{
	sqlite3_stmt *st = evk_store_stmt(db, sql);
	if (st == NULL)
		db_die("cannot prepare a query");
	return st;
}

static void
exec(const char *sql)
{
	if (evk_store_exec(db, sql) != EVK_OK)
		db_die(sql);
}

static void
begin(void)
{
	if (evk_store_begin(db) != EVK_OK)
		db_die("cannot start a transaction");
}

static void
step_done(sqlite3_stmt *st)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die("cannot write");
	sqlite3_reset(st);
}

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
};

static void
open_db(const char *path)
{
	static struct evk_db jobs; /* its handle is db */
	int rv = evk_db_open(&jobs, path, "jobs.db", true, migrations,
			     (int)(sizeof(migrations) / sizeof(migrations[0])));
	if (rv != EVK_OK)
		evk_die(rv == EVK_EINVAL ? EVK_EX_USAGE : EVK_EX_UNAVAILABLE, "%s",
			evk_db_error(&jobs));
	db = jobs.sq;
}

/* ---- broadcasts: an outbox in the database (lib/outbox.c) ---- */

static struct evk_outbox *outbox;
static bool hub_warned;
static bool outbox_dirty; /* rows added since the last delivery */

static struct evk_outbox *
the_outbox(void)
{
	if (outbox == NULL && evk_outbox_open(&outbox, db, url, NULL) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	return outbox;
}

/* Records one event line in the open transaction. */
static void
outbox_add(const char *topic, const char *event, cJSON *payload)
{
	struct evk_buf line = EVK_BUF_INIT(0);
	const char *why = NULL;
	if (evk_event_build(&line, NULL, topic, event, payload, &why) != EVK_OK)
		evk_die(EVK_EX_FAIL, "cannot build event: %s", why ? why : "");
	if (evk_buf_addch(&line, '\n') != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (evk_outbox_record(the_outbox(), EVK_OUTBOX_LINES, line.p, line.len, 1, NULL) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_outbox_error(outbox));
	evk_buf_release(&line);
	outbox_dirty = true;
}

/* Publishes the outbox, oldest first, each line once; says once when the
 * hub is away. */
static void
outbox_flush(void)
{
	struct evk_outbox_report r;
	outbox_dirty = false;
	int rv = evk_outbox_flush(the_outbox(), &r);
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_outbox_error(outbox));
	if (r.damaged)
		evk_warn("outbox row %lld is damaged: it and the %ld events from it on wait",
			 (long long)r.damaged, r.pending);
	if (r.pending == 0) {
		hub_warned = false;
	} else if (!hub_warned && r.unreachable) {
		evk_warn("hub at '%s' unavailable: events wait in the outbox", url);
		hub_warned = true;
	}
}

/* ---- enqueue ---- */

static cJSON *
read_steps(const char *file)
{
	FILE *f = fopen(file, "r");
	if (f == NULL)
		evk_die(EVK_EX_IOERR, "cannot read '%s': %s", file, strerror(errno));
	char *buf = malloc(1 << 20);
	if (buf == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = '\0';
	cJSON *steps = cJSON_Parse(buf);
	free(buf);
	if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) == 0)
		evk_die(EVK_EX_DATAERR, "%s: steps are a non-empty JSON array", file);
	const cJSON *s;
	cJSON_ArrayForEach(s, steps) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "name");
		const cJSON *run = cJSON_GetObjectItemCaseSensitive(s, "run");
		if (!cJSON_IsString(name) ||
		    !evk_event_name_valid(name->valuestring, strlen(name->valuestring)) ||
		    !cJSON_IsArray(run) || cJSON_GetArraySize(run) == 0)
			evk_die(EVK_EX_DATAERR,
				"%s: each step is {\"name\": NAME, \"run\": [ARGV...]}", file);
		const cJSON *a;
		cJSON_ArrayForEach(a, run) {
			if (!cJSON_IsString(a))
				evk_die(EVK_EX_DATAERR, "%s: 'run' holds strings", file);
		}
	}
	return steps;
}

static void
print_job(sqlite3_int64 id, bool with_output);

/* The steps of a command job, or of the workflow in --steps. */
static char *
steps_of(struct opts *o, int argc, char **argv)
{
	cJSON *steps;
	if (o->steps_file) {
		if (argc > 0)
			usage(stderr, EVK_EX_USAGE);
		steps = read_steps(o->steps_file);
	} else {
		if (argc == 0)
			usage(stderr, EVK_EX_USAGE);
		cJSON *run = cJSON_CreateStringArray((const char *const *)argv, argc);
		cJSON *step = cJSON_CreateObject();
		steps = cJSON_CreateArray();
		if (!run || !step || !steps || !cJSON_AddStringToObject(step, "name", "run") ||
		    !cJSON_AddItemToObject(step, "run", run) || !cJSON_AddItemToArray(steps, step))
			evk_die(EVK_EX_FAIL, "out of memory");
	}
	char *text = cJSON_PrintUnformatted(steps);
	if (text == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	cJSON_Delete(steps);
	return text;
}

/* Inserts one job (or finds the one --unique-for names); the caller
 * holds a write transaction. */
static sqlite3_int64
insert_job(struct opts *o, const char *steps_text, const char *input, size_t ilen)
{
	char wf[37];
	if (o->workflow == NULL)
		new_uuid(wf);
	long long due = evk_wall_ms() + o->in_s * 1000;
	if (o->at) {
		char ts[EVK_TS_LEN + 1];
		struct tm tm = { 0 };
		if (evk_ts_normalise(o->at, strlen(o->at), ts) != EVK_OK ||
		    strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
			evk_die(EVK_EX_USAGE, "--at wants an RFC 3339 UTC time, not '%s'", o->at);
		due = (long long)timegm(&tm) * 1000;
	}
	char ins[EVK_TS_LEN + 1];
	evk_ts_now(ins);
	struct evk_buf key = EVK_BUF_INIT(0);
	sqlite3_int64 id = 0;
	if (o->unique_for > 0) {
		/* Checked and inserted in one write transaction: two racing
		 * enqueues are serialised by the database's write lock. */
		if (evk_buf_addstr(&key, o->queue) || evk_buf_addch(&key, '\n') ||
		    evk_buf_addstr(&key, steps_text) || evk_buf_addch(&key, '\n') ||
		    evk_buf_addstr(&key, o->workflow ? o->workflow : "") || evk_buf_addch(&key, '\0'))
			evk_die(EVK_EX_FAIL, "out of memory");
		sqlite3_stmt *st = stmt("SELECT id FROM jobs WHERE unique_key = ? AND unique_until > ?"
					" AND state NOT IN ('cancelled','discarded') ORDER BY id LIMIT 1");
		sqlite3_bind_text(st, 1, key.p, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, evk_wall_ms());
		if (sqlite3_step(st) == SQLITE_ROW)
			id = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	if (id == 0) {
		sqlite3_stmt *st = stmt(
			"INSERT INTO jobs (queue, priority, state, steps, workflow_id, resource_id,"
			" max_attempts, backoff, timeout, scheduled_at, unique_key, unique_until,"
			" inserted_at, stdin) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
		sqlite3_bind_text(st, 1, o->queue, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, o->priority);
		sqlite3_bind_text(st, 3, due > evk_wall_ms() ? "scheduled" : "available", -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(st, 4, steps_text, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, o->workflow ? o->workflow : wf, -1, SQLITE_TRANSIENT);
		if (o->resource)
			sqlite3_bind_text(st, 6, o->resource, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 7, o->max_attempts);
		sqlite3_bind_int64(st, 8, o->backoff);
		if (o->timeout > 0)
			sqlite3_bind_int64(st, 9, o->timeout);
		sqlite3_bind_int64(st, 10, due);
		if (o->unique_for > 0) {
			sqlite3_bind_text(st, 11, key.p, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 12, evk_wall_ms() + o->unique_for * 1000);
		}
		sqlite3_bind_text(st, 13, ins, -1, SQLITE_STATIC);
		if (input)
			sqlite3_bind_text(st, 14, input, (int)ilen, SQLITE_STATIC);
		step_done(st);
		id = sqlite3_last_insert_rowid(db);
	}
	evk_buf_release(&key);
	return id;
}

static int
cmd_enqueue(struct opts *o, int argc, char **argv)
{
	char *steps_text = steps_of(o, argc, argv);
	begin();
	sqlite3_int64 id = insert_job(o, steps_text, NULL, 0);
	exec("COMMIT");
	cJSON_free(steps_text);
	print_job(id, false);
	return 0;
}

/* on PATTERN... -- CMD: one job per matching event, the event on the job's
 * stdin. The job and the subscription's position are written in one
 * transaction, and a restart resumes after that position: no event is
 * enqueued twice or missed (while the hub retains it). */
static int
cmd_on(struct opts *o, int argc, char **argv)
{
	int np = 0;
	while (np < argc && strcmp(argv[np], "--") != 0)
		np++;
	if (np == 0 || np >= argc - 1)
		evk_die(EVK_EX_USAGE, "usage: evworker on PATTERN... -- CMD [ARG...]");
	for (int i = 0; i < np; i++) {
		char msg[640];
		if (evk_pattern_check(argv[i], msg, sizeof(msg)) == EVK_PATTERN_BAD)
			evk_die(EVK_EX_USAGE, "%s", msg);
		else if (*msg)
			evk_warn("%s", msg);
	}
	char *steps_text = steps_of(o, argc - np - 1, argv + np + 1);
	struct evk_buf name = EVK_BUF_INIT(0);
	if (o->name)
		evk_buf_addstr(&name, o->name);
	for (int i = 0; !o->name && i < np; i++)
		evk_buf_addstr(&name, argv[i]), evk_buf_addch(&name, ' ');
	if (!o->name)
		evk_buf_addstr(&name, steps_text);
	if (evk_buf_addch(&name, '\0') != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");

	int64_t since = EVK_SINCE_LIVE;
	sqlite3_stmt *st = stmt("SELECT last_seq FROM cursors WHERE name = ?");
	sqlite3_bind_text(st, 1, name.p, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		since = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);

	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, url, since);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	if (since == EVK_SINCE_LIVE) {
		/* First start: from now on, and remember it. */
		begin();
		st = stmt("INSERT OR IGNORE INTO cursors (name, last_seq) VALUES (?, ?)");
		sqlite3_bind_text(st, 1, name.p, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)evk_sub_start_head(sub));
		step_done(st);
		exec("COMMIT");
	}
	if (o->ready_file) {
		int fd = open(o->ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || close(fd) != 0)
			evk_die(EVK_EX_IOERR, "cannot create ready file '%s'", o->ready_file);
	}
	struct evk_event ev;
	while (!stopping) {
		rv = evk_sub_next(sub, &ev, 200);
		if (rv == EVK_ETIMEDOUT)
			continue;
		if (rv == EVK_EGAP) {
			evk_warn("%s", evk_sub_gap_text(sub));
			continue;
		}
		if (rv != EVK_OK) {
			evk_warn("lost the hub at '%s': %s", url, evk_strerror(rv));
			break;
		}
		bool match = false;
		for (int i = 0; i < np && !match; i++)
			match = evk_pattern_match(argv[i], ev.topic, ev.topic_len);
		begin();
		if (match) {
			sqlite3_int64 id = insert_job(o, steps_text, ev.line, ev.line_len);
			fprintf(stderr, "evworker: event %llu enqueued as job %lld\n",
				(unsigned long long)ev.seq, (long long)id);
		}
		st = stmt("UPDATE cursors SET last_seq = ? WHERE name = ?");
		sqlite3_bind_int64(st, 1, (sqlite3_int64)ev.seq);
		sqlite3_bind_text(st, 2, name.p, -1, SQLITE_STATIC);
		step_done(st);
		exec("COMMIT");
	}
	evk_sub_close(sub);
	evk_buf_release(&name);
	cJSON_free(steps_text);
	return 0;
}

/* ---- jobs as JSON ---- */

#define JOB_COLS                                                                     \
	"id, queue, priority, state, steps, workflow_id, resource_id, attempt,"         \
	" max_attempts, backoff, timeout, scheduled_at, worker_host, worker_pid,"       \
	" inserted_at, attempted_at, completed_at, last_error, output"

static cJSON *
job_from_row(sqlite3_stmt *st, bool with_output)
{
	cJSON *j = cJSON_CreateObject();
	int n = sqlite3_column_count(st);
	for (int i = 0; j && i < n; i++) {
		const char *name = sqlite3_column_name(st, i);
		cJSON *v;
		if (strcmp(name, "output") == 0 && !with_output)
			continue;
		switch (sqlite3_column_type(st, i)) {
		case SQLITE_NULL: v = cJSON_CreateNull(); break;
		case SQLITE_INTEGER: v = cJSON_CreateNumber((double)sqlite3_column_int64(st, i)); break;
		default:
			v = strcmp(name, "steps") == 0
				    ? cJSON_Parse((const char *)sqlite3_column_text(st, i))
				    : cJSON_CreateString((const char *)sqlite3_column_text(st, i));
		}
		if (v == NULL || !cJSON_AddItemToObject(j, name, v)) {
			cJSON_Delete(v);
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}

static void
print_json(cJSON *j)
{
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;
	if (s == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	puts(s);
	cJSON_free(s);
}

static void
print_job(sqlite3_int64 id, bool with_output)
{
	sqlite3_stmt *st = stmt("SELECT " JOB_COLS " FROM jobs WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		evk_die(EVK_EX_FAIL, "no job %lld", (long long)id);
	}
	cJSON *j = job_from_row(st, with_output);
	sqlite3_reset(st);
	print_json(j);
	cJSON_Delete(j);
}

static sqlite3_int64
parse_id(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end || v <= 0)
		evk_die(EVK_EX_USAGE, "'%s' is not a job id", s);
	return v;
}

/* ---- running jobs ---- */

struct job {
	sqlite3_int64 id;
	cJSON *steps;
	int nsteps, step;        /* current step index */
	char process_id[37];
	char wf[128], resource[128];
	bool has_resource;
	int attempt, max_attempts;
	long long backoff, timeout_ms, deadline;
	pid_t child;
	int progress_fd, output_fd;
	char pline[PROGRESS_LINE];
	size_t plen;
	char tail[OUTPUT_TAIL];
	size_t tlen;             /* bytes in tail (ring not needed: slide) */
	bool timed_out;
	char *input;             /* the job's stdin, or NULL */
	size_t input_len;
};

static struct job *running[MAX_CONCURRENCY];
static int nrunning;

static cJSON *
base_payload(const struct job *j)
{
	cJSON *p = cJSON_CreateObject();
	if (p == NULL || !cJSON_AddStringToObject(p, "process_id", j->process_id) ||
	    !cJSON_AddStringToObject(p, "workflow_id", j->wf) ||
	    !cJSON_AddNumberToObject(p, "job_id", (double)j->id) ||
	    !cJSON_AddNumberToObject(p, "attempt", j->attempt))
		evk_die(EVK_EX_FAIL, "out of memory");
	return p;
}

static void
emit_on(const struct job *j, const char *scope, const char *event, cJSON *p)
{
	char topic[EVK_TOPIC_MAX + 1];
	if (strcmp(scope, "process") == 0) {
		snprintf(topic, sizeof(topic), "process:%s", j->process_id);
		outbox_add(topic, event, p);
	} else {
		snprintf(topic, sizeof(topic), "workflow:%s", j->wf);
		outbox_add(topic, event, p);
		if (j->has_resource) {
			snprintf(topic, sizeof(topic), "resource:%s", j->resource);
			outbox_add(topic, event, p);
		}
	}
	cJSON_Delete(p);
}

/* Overall percentage: steps done plus the running step's share. */
static double
overall(const struct job *j, double step_pct)
{
	double v = (j->step + step_pct / 100.0) * 100.0 / j->nsteps;
	return round(v * 100) / 100;
}

static const char *
step_name(const struct job *j)
{
	return cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(j->steps, j->step), "name"));
}

static void
log_state(const struct job *j, const char *what)
{
	fprintf(stderr, "evworker: job %lld %s (attempt %d)\n", (long long)j->id, what,
		j->attempt);
}

/* Starts the job's current step as a child in its own process group. */
static bool
start_step(struct job *j)
{
	const cJSON *run = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(j->steps, j->step),
							    "run");
	int n = cJSON_GetArraySize(run);
	char **argv = calloc((size_t)n + 1, sizeof(char *));
	int prog[2], out[2];
	if (argv == NULL || pipe2(prog, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
		evk_die(EVK_EX_FAIL, "cannot start a step: %s", strerror(errno));
	for (int i = 0; i < n; i++)
		argv[i] = cJSON_GetStringValue(cJSON_GetArrayItem(run, i));

	cJSON *p = base_payload(j);
	if (!cJSON_AddStringToObject(p, "step", step_name(j)) ||
	    !cJSON_AddNumberToObject(p, "percentage", overall(j, 0)))
		evk_die(EVK_EX_FAIL, "out of memory");
	emit_on(j, "process", "step_started", p);

	/* Everything the child needs is built before fork: the worker may
	 * have nng threads, so the child only calls async-signal-safe
	 * functions before exec. */
	extern char **environ;
	char vars[6][200];
	snprintf(vars[0], sizeof(vars[0]), "EVWORKER_JOB_ID=%lld", (long long)j->id);
	snprintf(vars[1], sizeof(vars[1]), "EVWORKER_ATTEMPT=%d", j->attempt);
	snprintf(vars[2], sizeof(vars[2]), "EVWORKER_PROGRESS_FD=%d", PROGRESS_FD);
	snprintf(vars[3], sizeof(vars[3]), "EVWORKER_PROCESS_ID=%s", j->process_id);
	snprintf(vars[4], sizeof(vars[4]), "EVWORKER_WORKFLOW_ID=%s", j->wf);
	snprintf(vars[5], sizeof(vars[5]), "EVWORKER_STEP=%s", step_name(j));
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **envp = calloc(ne + 7, sizeof(char *));
	if (envp == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	size_t k = 0;
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], "EVWORKER_", 9) != 0)
			envp[k++] = environ[i];
	for (int i = 0; i < 6; i++)
		envp[k++] = vars[i];
	/* The job's input (an event from `evworker on`) or nothing. */
	int devnull;
	if (j->input) {
		devnull = memfd_create("evworker-stdin", MFD_CLOEXEC);
		if (devnull < 0 ||
		    write(devnull, j->input, j->input_len) != (ssize_t)j->input_len ||
		    lseek(devnull, 0, SEEK_SET) != 0)
			evk_die(EVK_EX_FAIL, "cannot give the job its input: %s", strerror(errno));
	} else {
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	pid_t pid = fork();
	if (pid < 0)
		evk_die(EVK_EX_FAIL, "cannot fork: %s", strerror(errno));
	if (pid == 0) {
		static const char msg[] = "evworker: cannot run the step's command\n";
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		/* dup2 onto itself keeps close-on-exec: clear it then. */
		if ((prog[1] == PROGRESS_FD ? fcntl(PROGRESS_FD, F_SETFD, 0)
					    : dup2(prog[1], PROGRESS_FD)) < 0 ||
		    dup2(out[1], STDOUT_FILENO) < 0 ||
		    dup2(out[1], STDERR_FILENO) < 0 ||
		    (devnull >= 0 && dup2(devnull, STDIN_FILENO) < 0))
			_exit(127);
		execvpe(argv[0], argv, envp);
		if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing more to say */
		}
		_exit(127);
	}
	free(envp);
	if (devnull >= 0)
		close(devnull);
	setpgid(pid, pid);
	free(argv);
	close(prog[1]);
	close(out[1]);
	fcntl(prog[0], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	j->child = pid;
	j->progress_fd = prog[0];
	j->output_fd = out[0];
	j->plen = 0;
	sqlite3_stmt *st = stmt("UPDATE jobs SET child_pid = ? WHERE id = ?");
	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_int64(st, 2, j->id);
	step_done(st);
	return true;
}

/* One line from the step's progress descriptor. */
static void
progress_line(struct job *j, char *line)
{
	char *end;
	double pct = strtod(line, &end);
	cJSON *p;
	if (end != line && (*end == '\0' || *end == ' ') && pct >= 0 && pct <= 100 &&
	    !isnan(pct)) {
		while (*end == ' ')
			end++;
		p = base_payload(j);
		if (!cJSON_AddStringToObject(p, "step", step_name(j)) ||
		    !cJSON_AddNumberToObject(p, "percentage", overall(j, pct)) ||
		    !cJSON_AddNumberToObject(p, "step_percentage", pct) ||
		    !cJSON_AddStringToObject(p, "content", end))
			evk_die(EVK_EX_FAIL, "out of memory");
		emit_on(j, "process", "step_progress", p);
		return;
	}
	cJSON *o = cJSON_Parse(line);
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
	if (cJSON_IsObject(o) && cJSON_IsString(ev) &&
	    evk_event_name_valid(ev->valuestring, strlen(ev->valuestring))) {
		cJSON *payload = cJSON_DetachItemFromObjectCaseSensitive(o, "payload");
		char name[EVK_EVENT_MAX + 1];
		snprintf(name, sizeof(name), "%s", ev->valuestring);
		emit_on(j, "process", name, payload ? payload : cJSON_CreateObject());
		cJSON_Delete(o);
		return;
	}
	cJSON_Delete(o);
	p = base_payload(j);
	if (!cJSON_AddStringToObject(p, "step", step_name(j)) ||
	    !cJSON_AddStringToObject(p, "content", line))
		evk_die(EVK_EX_FAIL, "out of memory");
	emit_on(j, "process", "progress_update", p);
}

/* Reads what the step wrote so far: progress lines become events, output
 * goes to the job's tail; closes each descriptor at its end. */
static void
drain_fds(struct job *j)
{
	char buf[4096];
	ssize_t n = -1;
	while (j->progress_fd >= 0 && (n = read(j->progress_fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				close(j->progress_fd), j->progress_fd = -1;
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' || j->plen == sizeof(j->pline) - 1) {
				j->pline[j->plen] = '\0';
				if (j->plen > 0 && evk_utf8_valid(j->pline, j->plen) &&
				    !memchr(j->pline, '\0', j->plen))
					progress_line(j, j->pline);
				j->plen = 0;
				if (buf[i] == '\n')
					continue;
			}
			j->pline[j->plen++] = buf[i];
		}
	}
	if (n == 0 && j->progress_fd >= 0) {
		close(j->progress_fd);
		j->progress_fd = -1;
	}
	n = -1;
	while (j->output_fd >= 0 && (n = read(j->output_fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				close(j->output_fd), j->output_fd = -1;
			break;
		}
		if ((size_t)n >= OUTPUT_TAIL) {
			memcpy(j->tail, buf + n - OUTPUT_TAIL, OUTPUT_TAIL);
			j->tlen = OUTPUT_TAIL;
		} else {
			if (j->tlen + (size_t)n > OUTPUT_TAIL) {
				size_t drop = j->tlen + (size_t)n - OUTPUT_TAIL;
				memmove(j->tail, j->tail + drop, j->tlen - drop);
				j->tlen -= drop;
			}
			memcpy(j->tail + j->tlen, buf, (size_t)n);
			j->tlen += (size_t)n;
		}
	}
	if (n == 0 && j->output_fd >= 0) {
		close(j->output_fd);
		j->output_fd = -1;
	}
}

static void
job_free(struct job *j)
{
	if (j->progress_fd >= 0)
		close(j->progress_fd);
	if (j->output_fd >= 0)
		close(j->output_fd);
	cJSON_Delete(j->steps);
	free(j->input);
	free(j);
}

/* Oban's backoff: base + 2^attempt seconds, plus up to 10% jitter; base 0
 * retries at once. */
static long long
backoff_ms(const struct job *j)
{
	if (j->backoff == 0)
		return 0;
	double s = (double)j->backoff + pow(2, j->attempt < 30 ? j->attempt : 30);
	unsigned r = 0;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = 0;
	return (long long)(s * 1000 * (1 + (r % 1000) / 10000.0));
}

/* The step's child is gone with status; goes on to the next step or ends
 * the job. Returns true while the job runs on. */
static bool
step_ended(struct job *j, int status)
{
	drain_fds(j);
	const char *step = step_name(j);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	bool ok = code == 0 && !j->timed_out;
	bool snooze = code == 75 && !j->timed_out;
	char err[160];
	if (j->timed_out)
		snprintf(err, sizeof(err), "timeout after %lld s", j->timeout_ms / 1000);
	else if (WIFSIGNALED(status))
		snprintf(err, sizeof(err), "killed by signal %d", WTERMSIG(status));
	else
		snprintf(err, sizeof(err), "exit %d", code);

	cJSON *p = base_payload(j);
	cJSON *res = cJSON_CreateObject();
	if (!res || !cJSON_AddStringToObject(p, "step", step) ||
	    !cJSON_AddNumberToObject(p, "percentage", overall(j, ok ? 100 : 0)))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (ok) {
		if (!cJSON_AddStringToObject(res, "status", "success") ||
		    !cJSON_AddNumberToObject(res, "exit", 0) ||
		    !cJSON_AddItemToObject(p, "result", res))
			evk_die(EVK_EX_FAIL, "out of memory");
	} else {
		cJSON_Delete(res);
		if (!cJSON_AddStringToObject(p, "error", snooze ? "snoozed" : err))
			evk_die(EVK_EX_FAIL, "out of memory");
	}
	emit_on(j, "process", "step_completed", p);
	if (ok && j->step + 1 < j->nsteps) {
		j->step++;
		return start_step(j);
	}

	/* The job is over: record it and broadcast the workflow's end. */
	char nowts[EVK_TS_LEN + 1];
	evk_ts_now(nowts);
	const char *state;
	bool retry = false;
	long long due = evk_wall_ms();
	if (ok) {
		state = "completed";
	} else if (snooze) {
		state = "scheduled";
		due += backoff_ms(j);
	} else if (j->attempt < j->max_attempts) {
		state = "retryable";
		retry = true;
		due += backoff_ms(j);
	} else {
		state = "discarded";
	}
	sqlite3_stmt *st = stmt(
		"UPDATE jobs SET state = ?, scheduled_at = ?, last_error = ?, output = ?,"
		" completed_at = CASE WHEN ? THEN ? END, child_pid = NULL,"
		" attempt = attempt - ? WHERE id = ? AND state = 'executing'");
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, due);
	if (!ok)
		sqlite3_bind_text(st, 3, snooze ? "snoozed" : err, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, j->tail, (int)j->tlen, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, ok || !retry);
	sqlite3_bind_text(st, 6, nowts, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, snooze ? 1 : 0);
	sqlite3_bind_int64(st, 8, j->id);
	step_done(st);
	if (!snooze) {
		p = base_payload(j);
		if (!cJSON_AddStringToObject(p, "status", ok ? "completed" : "failed") ||
		    (!ok && (!cJSON_AddStringToObject(p, "error", err) ||
			     !cJSON_AddBoolToObject(p, "will_retry", retry))))
			evk_die(EVK_EX_FAIL, "out of memory");
		emit_on(j, "workflow", ok ? "workflow_completed" : "workflow_failed", p);
	}
	log_state(j, ok ? "completed" : snooze ? "snoozed" : retry ? "failed, will retry"
							      : "failed, discarded");
	return false;
}

static bool
alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Jobs left executing by a worker of this host that is gone run again:
 * decided by the worker's liveness, never by elapsed time. */
static void
rescue(void)
{
	sqlite3_stmt *st = stmt("SELECT id, worker_pid, child_pid FROM jobs"
				" WHERE state = 'executing' AND worker_host = ?");
	sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
	sqlite3_int64 ids[64];
	pid_t kids[64];
	int n = 0;
	while (n < 64 && sqlite3_step(st) == SQLITE_ROW) {
		pid_t w = (pid_t)sqlite3_column_int64(st, 1);
		if (w != getpid() && !alive(w)) {
			kids[n] = (pid_t)sqlite3_column_int64(st, 2);
			ids[n++] = sqlite3_column_int64(st, 0);
		}
	}
	sqlite3_reset(st);
	for (int i = 0; i < n; i++) {
		if (kids[i] > 0)
			kill(-kids[i], SIGKILL); /* the dead worker's step, if left */
		st = stmt("UPDATE jobs SET state = 'available', scheduled_at = ?,"
			  " last_error = 'rescued: its worker died', child_pid = NULL"
			  " WHERE id = ? AND state = 'executing'");
		sqlite3_bind_int64(st, 1, evk_wall_ms());
		sqlite3_bind_int64(st, 2, ids[i]);
		step_done(st);
		fprintf(stderr, "evworker: job %lld rescued\n", (long long)ids[i]);
	}
}

/* Claims the next due job of the queue, or NULL. */
static struct job *
claim(const char *queue)
{
	struct job *j = NULL;
	begin();
	rescue();
	sqlite3_stmt *st = stmt(
		"SELECT id, steps, workflow_id, resource_id, attempt, max_attempts, backoff,"
		" timeout, stdin FROM jobs WHERE queue = ? AND state IN ('available','scheduled','retryable')"
		" AND scheduled_at <= ? ORDER BY priority, scheduled_at, id LIMIT 1");
	sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, evk_wall_ms());
	if (sqlite3_step(st) == SQLITE_ROW) {
		j = calloc(1, sizeof(*j));
		if (j == NULL)
			evk_die(EVK_EX_FAIL, "out of memory");
		j->id = sqlite3_column_int64(st, 0);
		j->steps = cJSON_Parse((const char *)sqlite3_column_text(st, 1));
		j->nsteps = cJSON_GetArraySize(j->steps);
		snprintf(j->wf, sizeof(j->wf), "%s", (const char *)sqlite3_column_text(st, 2));
		if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
			snprintf(j->resource, sizeof(j->resource), "%s",
				 (const char *)sqlite3_column_text(st, 3));
			j->has_resource = true;
		}
		j->attempt = sqlite3_column_int(st, 4) + 1;
		j->max_attempts = sqlite3_column_int(st, 5);
		j->backoff = sqlite3_column_int64(st, 6);
		j->timeout_ms = sqlite3_column_int64(st, 7) * 1000;
		j->progress_fd = j->output_fd = -1;
		if (sqlite3_column_type(st, 8) != SQLITE_NULL) {
			j->input_len = (size_t)sqlite3_column_bytes(st, 8);
			if ((j->input = malloc(j->input_len + 1)) == NULL)
				evk_die(EVK_EX_FAIL, "out of memory");
			memcpy(j->input, sqlite3_column_blob(st, 8), j->input_len);
		}
	}
	sqlite3_reset(st);
	if (j) {
		char ts[EVK_TS_LEN + 1];
		evk_ts_now(ts);
		st = stmt("UPDATE jobs SET state = 'executing', attempt = attempt + 1,"
			  " worker_host = ?, worker_pid = ?, attempted_at = ? WHERE id = ?");
		sqlite3_bind_text(st, 1, host, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, getpid());
		sqlite3_bind_text(st, 3, ts, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, j->id);
		step_done(st);
		new_uuid(j->process_id);
		cJSON *p = base_payload(j);
		emit_on(j, "workflow", "process_created", p);
	}
	exec("COMMIT");
	if (j && j->nsteps <= 0) {
		job_free(j);
		return NULL;
	}
	return j;
}

static void
remove_running(int i)
{
	job_free(running[i]);
	running[i] = running[--nrunning];
}

/* Stops a running step and marks its job retryable (shutdown). */
static void
abandon(struct job *j)
{
	kill(-j->child, SIGKILL);
	waitpid(j->child, NULL, 0);
	sqlite3_stmt *st = stmt("UPDATE jobs SET state = 'retryable', scheduled_at = ?,"
				" last_error = 'worker stopped', child_pid = NULL"
				" WHERE id = ? AND state = 'executing'");
	sqlite3_bind_int64(st, 1, evk_wall_ms());
	sqlite3_bind_int64(st, 2, j->id);
	step_done(st);
	log_state(j, "stopped, will retry");
}

static int
cmd_run(struct opts *o)
{
	int failed = 0;
	long long grace_end = -1;
	if (pipe2(child_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		evk_die(EVK_EX_FAIL, "cannot make a pipe: %s", strerror(errno));
	struct sigaction sc = { .sa_handler = on_child, .sa_flags = SA_RESTART | SA_NOCLDSTOP };
	sigemptyset(&sc.sa_mask);
	sigaction(SIGCHLD, &sc, NULL);
	outbox_flush(); /* what an earlier run could not deliver */
	for (;;) {
		if (stopping && grace_end < 0)
			grace_end = evk_mono_ms() + o->grace * 1000;
		while (!stopping && nrunning < o->concurrency) {
			struct job *j = claim(o->queue);
			if (j == NULL)
				break;
			log_state(j, "started");
			if (j->timeout_ms > 0)
				j->deadline = evk_mono_ms() + j->timeout_ms;
			start_step(j);
			running[nrunning++] = j;
		}
		if (nrunning == 0 && (stopping || o->drain))
			break;
		if (stopping && evk_mono_ms() >= grace_end) {
			while (nrunning > 0) {
				abandon(running[0]);
				remove_running(0);
			}
			break;
		}
		if (outbox_dirty)
			outbox_flush();
		struct pollfd pfd[2 * MAX_CONCURRENCY + 1];
		int np = 0;
		pfd[np++] = (struct pollfd){ .fd = child_pipe[0], .events = POLLIN };
		for (int i = 0; i < nrunning; i++) {
			if (running[i]->progress_fd >= 0)
				pfd[np++] = (struct pollfd){ .fd = running[i]->progress_fd, .events = POLLIN };
			if (running[i]->output_fd >= 0)
				pfd[np++] = (struct pollfd){ .fd = running[i]->output_fd, .events = POLLIN };
		}
		/* Wake for output, a child's end, a due job or a timeout. */
		poll(pfd, (nfds_t)np, 100);
		if (pfd[0].revents & POLLIN) {
			char b[64];
			while (read(child_pipe[0], b, sizeof(b)) > 0) {
			}
		}
		for (int i = 0; i < nrunning; i++) {
			struct job *j = running[i];
			drain_fds(j);
			if (j->deadline > 0 && !j->timed_out && evk_mono_ms() >= j->deadline) {
				j->timed_out = true;
				kill(-j->child, SIGKILL);
			}
			int status;
			pid_t r = waitpid(j->child, &status, WNOHANG);
			if (r == j->child) {
				/* The step is over; whatever its group left behind goes too. */
				kill(-j->child, SIGKILL);
				if (!step_ended(j, status)) {
					if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
					    !(WIFEXITED(status) && WEXITSTATUS(status) == 75))
						failed++;
					remove_running(i--);
				}
			}
		}
	}
	if (outbox_dirty)
		outbox_flush();
	evk_outbox_close(outbox);
	outbox = NULL;
	return o->drain && failed ? EVK_EX_FAIL : 0;
}

/* ---- the other commands ---- */

static int
cmd_list(struct opts *o)
{
	sqlite3_stmt *st = stmt("SELECT " JOB_COLS " FROM jobs WHERE (?1 IS NULL OR state = ?1)"
				" AND (?2 IS NULL OR queue = ?2) ORDER BY id");
	if (o->state)
		sqlite3_bind_text(st, 1, o->state, -1, SQLITE_STATIC);
	if (o->queue && strcmp(o->queue, "*") != 0)
		sqlite3_bind_text(st, 2, o->queue, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		cJSON *j = job_from_row(st, false);
		print_json(j);
		cJSON_Delete(j);
	}
	sqlite3_reset(st);
	return 0;
}

static int
cmd_cancel_retry(bool cancel, sqlite3_int64 id)
{
	begin();
	sqlite3_stmt *st = stmt("SELECT state, child_pid, worker_host FROM jobs WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		exec("ROLLBACK");
		evk_die(EVK_EX_FAIL, "no job %lld", (long long)id);
	}
	char state[16];
	snprintf(state, sizeof(state), "%s", (const char *)sqlite3_column_text(st, 0));
	pid_t child = (pid_t)sqlite3_column_int64(st, 1);
	bool here = sqlite3_column_type(st, 2) != SQLITE_NULL &&
		    strcmp((const char *)sqlite3_column_text(st, 2), host) == 0;
	sqlite3_reset(st);
	if (cancel) {
		if (strcmp(state, "completed") == 0 || strcmp(state, "discarded") == 0 ||
		    strcmp(state, "cancelled") == 0) {
			exec("ROLLBACK");
			evk_die(EVK_EX_FAIL, "job %lld is already %s", (long long)id, state);
		}
		st = stmt("UPDATE jobs SET state = 'cancelled', child_pid = NULL,"
			  " last_error = 'cancelled' WHERE id = ?");
		sqlite3_bind_int64(st, 1, id);
		step_done(st);
		if (strcmp(state, "executing") == 0 && here && child > 0)
			kill(-child, SIGKILL);
	} else {
		if (strcmp(state, "executing") == 0) {
			exec("ROLLBACK");
			evk_die(EVK_EX_FAIL, "job %lld is running", (long long)id);
		}
		st = stmt("UPDATE jobs SET state = 'available', scheduled_at = ?,"
			  " max_attempts = max(max_attempts, attempt + 1) WHERE id = ?");
		sqlite3_bind_int64(st, 1, evk_wall_ms());
		sqlite3_bind_int64(st, 2, id);
		step_done(st);
	}
	exec("COMMIT");
	print_job(id, false);
	return 0;
}

static int
cmd_prune(struct opts *o)
{
	if (o->older_than <= 0)
		evk_die(EVK_EX_USAGE, "prune needs --older-than SEC");
	char ts[EVK_TS_LEN + 1];
	time_t cut = time(NULL) - (time_t)o->older_than;
	struct tm tm;
	gmtime_r(&cut, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.000000Z", &tm);
	sqlite3_stmt *st = stmt("DELETE FROM jobs WHERE state IN ('completed','discarded',"
				"'cancelled') AND coalesce(completed_at, inserted_at) < ?");
	sqlite3_bind_text(st, 1, ts, -1, SQLITE_STATIC);
	step_done(st);
	printf("{\"pruned\":%d}\n", sqlite3_changes(db));
	return 0;
}

static int
cmd_stats(void)
{
	sqlite3_stmt *st = stmt("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"
				" ORDER BY queue, state");
	cJSON *all = cJSON_CreateObject();
	while (all && sqlite3_step(st) == SQLITE_ROW) {
		const char *q = (const char *)sqlite3_column_text(st, 0);
		cJSON *qo = cJSON_GetObjectItemCaseSensitive(all, q);
		if (qo == NULL)
			qo = cJSON_AddObjectToObject(all, q);
		if (qo == NULL || !cJSON_AddNumberToObject(qo, (const char *)sqlite3_column_text(st, 1),
							   sqlite3_column_int(st, 2)))
			evk_die(EVK_EX_FAIL, "out of memory");
	}
	sqlite3_reset(st);
	print_json(all);
	cJSON_Delete(all);
	return 0;
}

static long long
num(const char *s, const char *flag, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end || errno || v < lo || v > hi)
		evk_die(EVK_EX_USAGE, "%s wants a whole number from %lld to %lld, not '%s'", flag,
			lo, hi, s);
	return v;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "bus", required_argument, NULL, 'b' },
		EVK_TLS_LONGOPTS,
		{ "queue", required_argument, NULL, 'q' },
		{ "priority", required_argument, NULL, 'p' },
		{ "max-attempts", required_argument, NULL, 'm' },
		{ "backoff", required_argument, NULL, 'B' },
		{ "timeout", required_argument, NULL, 't' },
		{ "in", required_argument, NULL, 'i' },
		{ "at", required_argument, NULL, 'a' },
		{ "unique-for", required_argument, NULL, 'u' },
		{ "workflow", required_argument, NULL, 'w' },
		{ "resource", required_argument, NULL, 'r' },
		{ "steps", required_argument, NULL, 's' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "drain", no_argument, NULL, 'D' },
		{ "grace", required_argument, NULL, 'g' },
		{ "state", required_argument, NULL, 'S' },
		{ "older-than", required_argument, NULL, 'o' },
		{ "name", required_argument, NULL, 'N' },
		{ "ready-file", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct opts o = { .queue = "default", .max_attempts = 20, .backoff = 15,
			  .concurrency = 1, .grace = 10 };
	const char *why;
	int ch, cmd_at = 0;

	evk_set_progname(argv[0]);
	/* Options before the command, then the command's own up to "--". */
	for (int pass = 0; pass < 2; pass++) {
		while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
			switch (ch) {
			case 'd': o.db_path = optarg; break;
			case 'b': o.bus = optarg; break;
			case EVK_OPT_TLS_CERT:
			case EVK_OPT_TLS_KEY:
			case EVK_OPT_TLS_CA: evk_tls_option(ch, optarg); break;
			case 'q': o.queue = optarg; break;
			case 'p': o.priority = (int)num(optarg, "--priority", 0, 9); break;
			case 'm': o.max_attempts = (int)num(optarg, "--max-attempts", 1, 1000000); break;
			case 'B': o.backoff = num(optarg, "--backoff", 0, 86400 * 365); break;
			case 't': o.timeout = num(optarg, "--timeout", 1, 86400 * 365); break;
			case 'i': o.in_s = num(optarg, "--in", 0, 86400 * 3650); break;
			case 'a': o.at = optarg; break;
			case 'u': o.unique_for = num(optarg, "--unique-for", 1, 86400 * 3650); break;
			case 'w':
				if (!evk_topic_valid(optarg, strlen(optarg)) || strchr(optarg, ':') ||
				    strlen(optarg) > 100)
					evk_die(EVK_EX_USAGE, "bad workflow id '%s'", optarg);
				o.workflow = optarg;
				break;
			case 'r':
				if (!evk_topic_valid(optarg, strlen(optarg)) || strchr(optarg, ':') ||
				    strlen(optarg) > 100)
					evk_die(EVK_EX_USAGE, "bad resource id '%s'", optarg);
				o.resource = optarg;
				break;
			case 's': o.steps_file = optarg; break;
			case 'c': o.concurrency = (int)num(optarg, "--concurrency", 1, MAX_CONCURRENCY); break;
			case 'D': o.drain = true; break;
			case 'g': o.grace = num(optarg, "--grace", 0, 86400); break;
			case 'S': o.state = optarg; break;
			case 'o': o.older_than = num(optarg, "--older-than", 1, 86400LL * 36500); break;
			case 'N': o.name = optarg; break;
			case 'R': o.ready_file = optarg; break;
			case 'h': usage(stdout, 0); break;
			case 'V': printf("evworker %s\n", EVK_VERSION); return 0;
			default: usage(stderr, EVK_EX_USAGE);
			}
		}
		if (pass == 0) {
			if (optind >= argc) {
				evk_warn("no command given");
				usage(stderr, EVK_EX_USAGE);
			}
			cmd_at = optind++; /* the command; its options follow */
		}
	}
	const char *cmd = argv[cmd_at];
	static const char *const cmds[] = { "enqueue", "run", "list", "show", "cancel",
					    "retry", "prune", "stats", "on", NULL };
	int k = 0;
	while (cmds[k] && strcmp(cmds[k], cmd) != 0)
		k++;
	if (cmds[k] == NULL)
		evk_die(EVK_EX_USAGE, "unknown command '%s' (enqueue, run, list, show, cancel,"
				      " retry, prune, stats)", cmd);
	char **args = argv + optind;
	int nargs = argc - optind;
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address: %s", why);
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	open_db(o.db_path);
	int status = 0;
	if (strcmp(cmd, "enqueue") == 0)
		status = cmd_enqueue(&o, nargs, args);
	else if (strcmp(cmd, "on") == 0)
		status = cmd_on(&o, nargs, args);
	else if (strcmp(cmd, "run") == 0)
		status = nargs ? (usage(stderr, 2), 2) : cmd_run(&o);
	else if (strcmp(cmd, "list") == 0) {
		if (o.queue && strcmp(o.queue, "default") == 0)
			o.queue = "*";
		status = cmd_list(&o);
	} else if (strcmp(cmd, "show") == 0 && nargs == 1)
		print_job(parse_id(args[0]), true);
	else if ((strcmp(cmd, "cancel") == 0 || strcmp(cmd, "retry") == 0) && nargs == 1)
		status = cmd_cancel_retry(strcmp(cmd, "cancel") == 0, parse_id(args[0]));
	else if (strcmp(cmd, "prune") == 0)
		status = cmd_prune(&o);
	else if (strcmp(cmd, "stats") == 0)
		status = cmd_stats();
	else
		usage(stderr, EVK_EX_USAGE);
	evk_store_stmt_release_all();
	if (sqlite3_close(db) != SQLITE_OK)
		evk_warn("closing the queue: %s", sqlite3_errmsg(db));
	if (fclose(stdout) != 0 && status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return status;
}
