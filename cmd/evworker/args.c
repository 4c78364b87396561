/* evworker's command line: every option and command in one table each,
 * from which the usage text, the completions and the checks of which
 * option applies to which command come. */
#include "evworker.h"

#include "evkit/err.h"
#include "evkit/flags.h"
#include "evkit/jobs.h"
#include "evkit/opts.h"
#include "evkit/topic.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every option, a row each: its name, getopt value, mode and argument,
 * then its help and the commands it applies to (F_ bits; 0: every
 * command). */
static const struct evk_flag flags[] = {
	{ "db", 'd', 0, "DB",
	  "the queue: a SQLite file (default $EVWORKER_DB, else\n"
	  "$XDG_STATE_HOME/evkit/jobs.db) or postgresql://...", 0 },
	EVK_FLAGS_BUS,
	{ "quiet", 'q', EVK_FLAG_SHORT, NULL,
	  "no notices or warnings; errors only", 0 },
	{ "verbose", 'v', EVK_FLAG_SHORT, NULL,
	  "also say what run does", 0 },
	{ "queue", 'Q', 0, "Q",
	  "the queue (default 'default')", F_QUEUE },
	{ "priority", 'p', 0, "P",
	  "0 (first) to 9", F_PRIORITY },
	{ "max-attempts", 'm', 0, "N",
	  "default 20", F_ATTEMPTS },
	{ "backoff", 'B', 0, "SEC",
	  "retry after SEC + 2^attempt s (default 15)", F_BACKOFF },
	{ "timeout", 't', 0, "SEC",
	  "kill the step after SEC (wait: give up, 124)", F_TIMEOUT },
	{ "in", 'i', 0, "SEC",
	  "due in SEC seconds", F_IN },
	{ "at", 'a', 0, "TS",
	  "due at an RFC 3339 UTC time", F_AT },
	{ "unique-for", 'u', 0, "SEC",
	  "the same job enqueued in the last SEC: that one", F_UNIQUE },
	{ "workflow", 'w', 0, "ID",
	  "the workflow id (default a new UUID)", F_WORKFLOW },
	{ "resource", 'r', 0, "ID",
	  "also broadcast on resource:ID", F_RESOURCE },
	{ "steps", 's', 0, "FILE",
	  "the workflow's steps ('-': stdin)", F_STEPS },
	{ "concurrency", 'c', 0, "N",
	  "jobs at once (default 1)", F_CONCURRENCY },
	{ "drain", 'D', 0, NULL,
	  "exit once no job is due; 1 if one failed", F_DRAIN },
	{ "grace", 'g', 0, "SEC",
	  "on SIGTERM, wait this long for running jobs", F_GRACE },
	{ "state", 'S', 0, "S",
	  "only jobs in state S", F_STATE },
	{ "older-than", 'o', 0, "SEC",
	  "finished longer ago than SEC", F_OLDER },
	{ "name", 'N', 0, "N",
	  "the subscription's name, which keeps its place", F_NAME },
	{ "ready-file", 'R', 0, "F",
	  "create F once subscribed", F_READY },
	EVK_FLAGS_HELP,
	{ "complete", 'C', EVK_FLAG_SCRIPT, NULL, NULL, 0 }, /* for completions */
};
#define NFLAGS EVK_NFLAGS(flags)

static const struct command commands[] = {
	{ "enqueue", cmd_enqueue, F_JOB, NEED_DB, "[opts] -- CMD [ARG...] | --steps FILE",
	  "a command job (argv, no shell) or a workflow" },
	{ "run", cmd_run, F_QUEUE | F_CONCURRENCY | F_DRAIN | F_GRACE, NEED_DB | NEED_BUS,
	  "[--queue Q] [--concurrency N] [--drain] [--grace SEC]", "run due jobs" },
	{ "list", cmd_list, F_STATE | F_QUEUE, NEED_DB, "[--state S] [--queue Q]",
	  "jobs as JSON lines" },
	{ "show", cmd_show, 0, NEED_DB, "ID", "one job, with its output tail" },
	{ "wait", cmd_wait, F_WORKFLOW | F_TIMEOUT, NEED_DB, "ID | --workflow WF [--timeout SEC]",
	  "until a job or workflow ends (0, 1 or 124)" },
	{ "cancel", cmd_cancel, 0, NEED_DB, "ID", "stop (kill) a job" },
	{ "retry", cmd_retry, 0, NEED_DB, "ID", "run a job again" },
	{ "prune", cmd_prune, F_OLDER, NEED_DB, "--older-than SEC", "forget finished jobs" },
	{ "stats", cmd_stats, 0, NEED_DB, "", "counts per queue and state" },
	{ "on", cmd_on, F_JOB | F_NAME | F_READY, NEED_DB | NEED_BUS,
	  "[opts] PATTERN... -- CMD [ARG...]", "a job per matching event (on stdin)" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *
find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void __attribute__((noreturn))
usage(FILE *out, const struct command *c)
{
	if (c) {
		fprintf(out, "usage: evworker [options] %s%s%s\n\n%s\n\n", c->name,
			*c->args ? " " : "", c->args, c->help);
		if (c->flags)
			evk_flags_print(out, flags, NFLAGS, c->flags, 20);
		evk_flags_print(out, flags, NFLAGS, 0, 20);
		exit(0);
	}
	fprintf(out, "usage: evworker [--db DB] [--bus URL] COMMAND [ARGS]\n\n"
		     "A durable job queue: jobs are commands or workflows of named steps;\n"
		     "workers run them and broadcast every step on the bus.\n\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n'evworker COMMAND --help' describes a command and its options.\n\n");
	evk_flags_print(out, flags, NFLAGS, 0, 20);
	fprintf(out,
		"  -h, --help, --version\n\n"
		"A step exits 0 for success, 75 to snooze (run again after the backoff,\n"
		"no attempt counted), anything else fails. It reports progress on the\n"
		"descriptor $EVWORKER_PROGRESS_FD: 'PERCENT [MESSAGE]', a JSON object\n"
		"{\"event\":..,\"payload\":..}, or any other line as a progress update.\n\n"
		"Exit: 0 ok, 1 job failed (run --drain, wait) or no such job, 2 usage,\n"
		"65 bad steps, 69 database unavailable, 74 unreadable steps, 124 wait\n"
		"timed out.\n");
	exit(0);
}

/* For completions: the commands (each with a tab and its help, which
 * fish shows) and every option, or a command's options, one a line. */
static void __attribute__((noreturn))
complete(const struct command *c)
{
	for (size_t i = 0; !c && i < NCOMMANDS; i++)
		printf("%s\t%s\n", commands[i].name, commands[i].help);
	/* Before a command: the options of every command; after it: its own. */
	if (!c || c->flags)
		evk_flags_print_words(flags, NFLAGS, c ? c->flags : 0);
	exit(0);
}

static bool
id_valid(const char *s)
{
	return evk_topic_valid(s, strlen(s)) && !strchr(s, ':') && strlen(s) <= EVK_JOBS_ID_MAX;
}

/* One option into o; exits on a bad value. */
static void
set_option(struct opts *o, int ch, const char *arg)
{
	switch (ch) {
	case 'd': o->db_path = arg; break;
	case 'b': o->bus = arg; break;
	case 'Q': o->queue = arg; break;
	case 'q': o->quiet = true; evk_log_level(EVK_LOG_QUIET); break;
	case 'v': o->quiet = false; evk_log_level(EVK_LOG_VERBOSE); break;
	case 'p': o->priority = (int)evk_flag_int("--priority", arg, 0, 9); break;
	case 'm': o->max_attempts = (int)evk_flag_int("--max-attempts", arg, 1, 1000000); break;
	case 'B': o->backoff = evk_flag_int("--backoff", arg, 0, 86400 * 365); break;
	case 't': o->timeout = arg; break; /* a job's whole seconds, or wait's */
	case 'i': o->in_s = evk_flag_int("--in", arg, 0, 86400 * 3650); break;
	case 'a': o->at = arg; break;
	case 'u': o->unique_for = evk_flag_int("--unique-for", arg, 1, 86400 * 3650); break;
	case 'w':
		if (!id_valid(arg))
			evk_usage_die("bad workflow id '%s'", arg);
		o->workflow = arg;
		break;
	case 'r':
		if (!id_valid(arg))
			evk_usage_die("bad resource id '%s'", arg);
		o->resource = arg;
		break;
	case 's': o->steps_file = arg; break;
	case 'c': o->concurrency = (int)evk_flag_int("--concurrency", arg, 1, MAX_CONCURRENCY); break;
	case 'D': o->drain = true; break;
	case 'g': o->grace = evk_flag_int("--grace", arg, 0, 86400); break;
	case 'S': o->state = arg; break;
	case 'o': o->older_than = evk_flag_int("--older-than", arg, 1, 86400LL * 36500); break;
	case 'N': o->name = arg; break;
	case 'R': o->ready_file = arg; break;
	case 'C': o->complete = true; break;
	}
	for (size_t i = 0; i < NFLAGS; i++)
		if (flags[i].val == ch)
			o->given |= flags[i].scope;
}

/* Options up to the command, the command, then its options up to its
 * first argument or "--"; returns the index of its first argument. */
int
parse_args(struct opts *o, const struct command **cmd, int argc, char **argv)
{
	struct evk_getopt g;
	const char *help_of = NULL;
	int ch;
	evk_flags_getopt(&g, "evworker " EVK_VERSION, NULL, flags, NFLAGS, "+:");
	for (int pass = 0; pass < 2; pass++) {
		while ((ch = evk_flags_next(&g, argc, argv)) != -1) {
			if (ch == 'h')
				help_of = pass ? (*cmd)->name : "";
			set_option(o, ch, optarg);
		}
		if (help_of)
			usage(stdout, pass ? (*cmd) : NULL);
		if (pass == 0 && optind >= argc && o->complete)
			complete(NULL);
		if (pass == 0 && optind >= argc)
			evk_usage_die("missing COMMAND (%s)", "enqueue, run, list, show, wait, ...");
		if (pass == 0 && !((*cmd) = find_command(argv[optind])))
			evk_usage_die("unknown command '%s' (enqueue, run, list, show, wait, cancel,"
				      " retry, prune, stats, on)", argv[optind]);
		if (pass == 0)
			evk_set_subcommand(argv[optind++]);
	}
	if (o->complete)
		complete((*cmd));
	unsigned extra = o->given & ~(*cmd)->flags;
	for (size_t i = 0; extra && i < NFLAGS; i++)
		if (flags[i].scope & extra)
			evk_usage_die("--%s does not apply to %s", flags[i].name, (*cmd)->name);
	return optind;
}
