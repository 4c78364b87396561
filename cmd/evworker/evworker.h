/* evworker's parts: the command line, its options and help (args.c), the
 * queue's commands and the run loop (main.c). */
#ifndef EVWORKER_H
#define EVWORKER_H

#include <stdbool.h>

#define MAX_CONCURRENCY 256

/* Which options a command takes (the table of commands says). */
enum {
	F_QUEUE = 1 << 0, F_PRIORITY = 1 << 1, F_ATTEMPTS = 1 << 2, F_BACKOFF = 1 << 3,
	F_TIMEOUT = 1 << 4, F_IN = 1 << 5, F_AT = 1 << 6, F_UNIQUE = 1 << 7,
	F_WORKFLOW = 1 << 8, F_RESOURCE = 1 << 9, F_STEPS = 1 << 10, F_CONCURRENCY = 1 << 11,
	F_DRAIN = 1 << 12, F_GRACE = 1 << 13, F_STATE = 1 << 14, F_OLDER = 1 << 15,
	F_NAME = 1 << 16, F_READY = 1 << 17,
	F_JOB = F_QUEUE | F_PRIORITY | F_ATTEMPTS | F_BACKOFF | F_TIMEOUT | F_IN | F_AT |
		F_UNIQUE | F_WORKFLOW | F_RESOURCE | F_STEPS,
};

struct opts {
	const char *db_path, *bus, *queue, *state, *steps_file, *workflow, *resource;
	const char *timeout, *at, *name, *ready_file;
	int priority, max_attempts, concurrency;
	long long backoff, in_s, unique_for, grace, older_than;
	bool drain, complete, quiet;
	unsigned given; /* F_ bits of the options given */
};

/* The worker (main.c): what a command and the run loop share. */
struct worker;

enum need { NEED_DB = 1, NEED_BUS = 2 };

/* A command: the table in args.c holds one per name. */
struct command {
	const char *name;
	int (*run)(struct worker *w, int argc, char **argv);
	unsigned flags; /* the options that apply */
	unsigned needs;
	const char *args, *help;
};

int cmd_enqueue(struct worker *w, int argc, char **argv);
int cmd_run(struct worker *w, int argc, char **argv);
int cmd_list(struct worker *w, int argc, char **argv);
int cmd_show(struct worker *w, int argc, char **argv);
int cmd_wait(struct worker *w, int argc, char **argv);
int cmd_cancel(struct worker *w, int argc, char **argv);
int cmd_retry(struct worker *w, int argc, char **argv);
int cmd_prune(struct worker *w, int argc, char **argv);
int cmd_stats(struct worker *w, int argc, char **argv);
int cmd_on(struct worker *w, int argc, char **argv);

/* Options up to the command into o, the command into *cmd, then its
 * options up to its first argument or "--"; returns the index of its
 * first argument. Exits on a usage error, --help, --version and
 * --complete. */
int parse_args(struct opts *o, const struct command **cmd, int argc, char **argv);

#endif
