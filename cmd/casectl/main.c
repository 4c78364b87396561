/* casectl: the command table, options and main. */
#include "casectl.h"

#include "evkit/flags.h"
#include "evkit/opts.h"

volatile sig_atomic_t stopping;

/* SIGURG interrupts the input thread's read (reader_halt); nothing else. */
static void
on_urgent(int sig)
{
	(void)sig;
}

/* The commands: name, what runs it, the role it needs (checked before
 * it runs; ROLE_NONE: the command checks for itself) and what that role
 * allows, its synopsis and help for usage(), and the words completion
 * offers after it. usage() and --complete-words read this table alone. */
struct command {
	const char *name;
	int (*run)(struct ctx *c, int argc, char **argv);
	enum role need;
	const char *action;
	const char *synopsis, *help, *words;
};

static const struct command commands[] = {
	{ "init", cmd_init, ROLE_NONE, NULL, "--admin NAME",
	  "create the database and its first admin", NULL },
	{ "user", cmd_user, ROLE_ADMIN, "manage users", "add NAME --role ROLE\nlist",
	  "add an actor: admin, editor or viewer", "add list" },
	{ "create", cmd_create, ROLE_EDITOR, "create cases", "[JSON|-]",
	  "create a case (or JSON lines on stdin)", NULL },
	{ "get", cmd_get, ROLE_VIEWER, "read cases", "ID", "print one case", NULL },
	{ "list", cmd_list, ROLE_VIEWER, "read cases", "[filters]",
	  "print cases as JSON lines", NULL },
	{ "update", cmd_update, ROLE_NONE, NULL, "ID JSON", "change fields of a case", NULL },
	{ "sync", cmd_sync, ROLE_NONE, NULL, "ID", "mark a case synced", NULL },
	{ "destroy", cmd_destroy, ROLE_ADMIN, "destroy cases", "ID", "delete a case (admin)",
	  NULL },
	{ "ingest", cmd_ingest, ROLE_EDITOR, "ingest cases", "[--strict] [--batch N] [FILE]",
	  "upsert JSON lines by (agency, case_reference),\nN per transaction (default 5000)",
	  NULL },
	{ "outbox", cmd_outbox, ROLE_NONE, NULL, "list|flush", "notifications not yet delivered",
	  "list flush" },
	{ "watch", cmd_watch, ROLE_VIEWER, "watch cases", "[filters] [--refetch-window MS] [-n N]",
	  "print the list as one JSON array, again\nafter case events (at most once per window)",
	  NULL },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The options, before or after the command; --help lists those of every
 * command, the synopses in commands[] the others. */
static const struct evk_flag flags[] = {
	{ "db", 'd', 0, "FILE|URI",
	  "the database: a SQLite file (default $CASECTL_DB, else\n"
	  "$XDG_STATE_HOME/evkit/cases.db) or postgresql://...", 0 },
	EVK_FLAGS_BUS,
	{ "actor", 'a', 0, "NAME", "act as NAME (default $CASECTL_ACTOR, else the login)", 0 },
	{ "admin", 'A', 0, "NAME", NULL, 0 },
	{ "role", 'r', 0, "ROLE", NULL, 0 },
	{ "agency", 'g', 0, "CODE", NULL, 0 },
	{ "offender", 'o', 0, "TEXT", NULL, 0 },
	{ "since", 's', 0, "TS", NULL, 0 },
	{ "sort", 'S', 0, "FIELD", NULL, 0 },
	{ "limit", 'l', 0, "N", NULL, 0 },
	{ "refetch-window", 'w', 0, "MS", NULL, 0 },
	{ "count", 'n', EVK_FLAG_SHORT, "N", NULL, 0 },
	{ "strict", 'T', 0, NULL, NULL, 0 },
	{ "max-line", 'm', 0, "BYTES", "longest input line (default 4194304)", 0 },
	{ "batch", 'B', 0, "N", NULL, 0 },
	EVK_FLAGS_HELP,
	{ "complete-words", 'W', EVK_FLAG_SCRIPT, "WHAT", NULL, 0 }, /* for completions/ */
};
#define NFLAGS EVK_NFLAGS(flags)

#define HELP_COLUMN 30 /* where a command's help starts in usage() */

/* One command's lines of usage(): each form of its synopsis, the help
 * beside the first (or below it, when the synopsis is long), the rest of
 * the help's lines below. */
static void
usage_command(FILE *out, const struct command *k)
{
	const char *syn = k->synopsis, *help = k->help;
	for (bool first = true; *syn || first; first = false) {
		size_t n = strcspn(syn, "\n");
		int w = fprintf(out, "  %s %.*s", k->name, (int)n, syn);
		syn += n + (syn[n] == '\n');
		if (!first)
			fputc('\n', out);
		else if (w >= HELP_COLUMN)
			fprintf(out, "\n%*s", HELP_COLUMN, "");
		else
			fprintf(out, "%*s", HELP_COLUMN - w, "");
		while (first && *help) {
			n = strcspn(help, "\n");
			fprintf(out, "%.*s\n", (int)n, help);
			help += n + (help[n] == '\n');
			if (*help)
				fprintf(out, "%*s", HELP_COLUMN, "");
		}
	}
}

void
usage(FILE *out, int status)
{
	fprintf(out, "usage: casectl [--db FILE|URI] [--bus URL] [--actor NAME] COMMAND [ARGS]\n"
		     "\n"
		     "The enforcement case resource; every change is announced on the bus\n"
		     "(case:{created,synced,updated,destroyed} and ...:{id}).\n"
		     "\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		usage_command(out, &commands[i]);
	fprintf(out,
		"\n"
		"filters: --agency CODE --offender TEXT --since TS --sort FIELD --limit N\n"
		"\n");
	evk_flags_print(out, flags, NFLAGS, 0, 16);
	fprintf(out,
		"  -h, --help, --version\n"
		"\n"
		"Exit: 0 ok, 1 no such case, 2 usage, 65 bad input, 69 database\n"
		"unavailable, 77 not allowed, 130/143 input stopped by SIGINT/SIGTERM.\n");
	exit(status);
}

static void
default_actor(struct ctx *c)
{
	const char *a = getenv("CASECTL_ACTOR");
	if (a == NULL || !*a) {
		struct passwd *pw = getpwuid(geteuid());
		a = pw ? pw->pw_name : "unknown";
	}
	snprintf(c->actor, sizeof(c->actor), "%s", a);
}


/* --complete-words WHAT, for the shell completions (completions/): the
 * commands (commands-help: each with a tab and its help, for fish), the
 * long options, the words after a command, or the values of --sort or
 * --role, one a line, from the tables above. */
static void
complete_words(const char *what)
{
	if (strcmp(what, "commands") == 0) {
		for (size_t i = 0; i < N_COMMANDS; i++)
			puts(commands[i].name);
	} else if (strcmp(what, "commands-help") == 0) {
		for (size_t i = 0; i < N_COMMANDS; i++)
			printf("%s\t%.*s\n", commands[i].name,
			       (int)strcspn(commands[i].help, "\n"), commands[i].help);
	} else if (strcmp(what, "options") == 0) {
		evk_flags_print_words(flags, NFLAGS, 0);
	} else if (strcmp(what, "--sort") == 0) {
		for (int i = 0; evk_case_sort_columns[i]; i++)
			puts(evk_case_sort_columns[i]);
	} else if (strcmp(what, "--role") == 0) {
		for (int r = ROLE_VIEWER; r <= ROLE_ADMIN; r++)
			puts(role_name((enum role)r));
	} else {
		for (size_t i = 0; i < N_COMMANDS; i++)
			if (strcmp(commands[i].name, what) == 0 && commands[i].words)
				for (const char *w = commands[i].words; *w;) {
					size_t n = strcspn(w, " ");
					printf("%.*s\n", (int)n, w);
					w += n + (w[n] == ' ');
				}
	}
	exit(fclose(stdout) == 0 ? 0 : EVK_EX_IOERR);
}

/* A whole number above 0 for option flag, within max. */
static long long
positive(const char *s, long long max, const char *flag)
{
	return evk_flag_int(flag, s, 1, max);
}

/* The columns --sort takes, for a message: "a, b, c". */
static const char *
sort_names(void)
{
	static char names[256];
	size_t n = 0;
	for (int i = 0; evk_case_sort_columns[i]; i++)
		n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "",
				      evk_case_sort_columns[i]);
	return names;
}

/* Options go before or after the command: `casectl --db F list --agency hse`. */
static void
parse_opts(struct ctx *c, int argc, char **argv, const char *lead)
{
	struct evk_getopt g;
	int ch;
	evk_flags_getopt(&g, "casectl " EVK_VERSION, usage, flags, NFLAGS, lead);
	while ((ch = evk_flags_next(&g, argc, argv)) != -1) {
		switch (ch) {
		case 'd': c->db_path = optarg; break;
		case 'b': c->bus = optarg; break;
		case 'a': snprintf(c->actor, sizeof(c->actor), "%s", optarg); break;
		case 'A':
			if (*optarg == '\0')
				evk_die(EVK_EX_USAGE, "--admin: the name is empty (is $USER unset?)");
			c->admin = optarg;
			break;
		case 'r': c->new_role = optarg; break;
		case 'g': c->agency = optarg; break;
		case 'o': c->offender = optarg; break;
		case 's':
			if (!valid_date(optarg, c->since_ts))
				evk_die(EVK_EX_USAGE, "--since: '%s' is not a date (YYYY-MM-DD) or an "
					"RFC 3339 UTC time", optarg);
			c->since = c->since_ts;
			break;
		case 'S':
			if (evk_case_sort_column(optarg) == NULL)
				evk_die(EVK_EX_USAGE, "cannot sort by '%s' (%s)", optarg, sort_names());
			c->sort = optarg;
			break;
		case 'l': c->limit = (long)positive(optarg, LONG_MAX, "--limit"); break;
		case 'w': c->refetch_ms = positive(optarg, LLONG_MAX, "--refetch-window"); break;
		case 'n': c->count = (long)positive(optarg, LONG_MAX, "--count"); break;
		case 'm': c->max_line = (size_t)positive(optarg, LLONG_MAX, "--max-line"); break;
		case 'B': c->txn_cases = (long)positive(optarg, INGEST_TXN_MAX, "--batch"); break;
		case 'T': c->strict = true; break;
		case 'W': complete_words(optarg); break;
		}
	}
}

/* SIGINT and SIGTERM stop the work (stopping); SIGURG is for the ingest's
 * input thread alone (reader_halt): blocked here, so in every thread
 * started from here on but that one. */
static void
signals_setup(void)
{
	sigset_t urgent;

	evk_signals_init(&stopping, true);
	sigemptyset(&urgent);
	sigaddset(&urgent, SIGURG);
	pthread_sigmask(SIG_BLOCK, &urgent, NULL);
	evk_signal_catch(SIGURG, on_urgent, 0);
}

static const struct command *
command_find(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	evk_die(EVK_EX_USAGE, "unknown command '%s' (see casectl --help)", name);
}

static void
ctx_release(struct ctx *c)
{
	for (size_t i = 0; i < c->n_agencies; i++) {
		free(c->agencies[i].code);
		free(c->agencies[i].name);
	}
	evk_buf_release(&c->out);
	evk_buf_release(&c->key);
	evk_buf_release(&c->batch);
	evk_outbox_close(c->outbox);
	evk_buf_release(&c->off.name);
	evk_buf_release(&c->off.postcode);
	offenders_forget(c);
	run_sql_free(c);
	if (evk_db_close(&c->db) != EVK_OK)
		evk_warn("%s", evk_db_error(&c->db));
}

int
main(int argc, char **argv)
{
	struct ctx c = { .limit = 100, .refetch_ms = 5000, .max_line = LINE_MAX_DEFAULT,
			 .txn_cases = INGEST_TXN, .input_fd = STDIN_FILENO, .input_name = "stdin" };
	static char progname[64];
	const char *why;

	evk_set_progname(argv[0]);
	default_actor(&c);
	parse_opts(&c, argc, argv, "+:");
	if (optind >= argc)
		evk_usage_die("missing COMMAND (init, user, create, get, list, update, sync, destroy,"
			      " ingest, outbox, watch)");
	const char *name = argv[optind];
	/* The command's own arguments and options: argv[optind..] with the
	 * command in the place of the program name. */
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	optind = 0; /* glibc: start over, permuting again */
	parse_opts(&c, sub_argc, sub_argv, ":");

	if (evk_bus_resolve(c.bus, c.url, sizeof(c.url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address: %s", why);
	signals_setup();
	const struct command *k = command_find(name);
	/* From here on, messages name the command: "casectl ingest: ...". */
	snprintf(progname, sizeof(progname), "casectl %s", k->name);
	evk_set_progname(progname);
	open_db(&c, k->run == cmd_init);
	if (evk_outbox_open(&c.outbox, &c.db, c.url, expand_note) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	c.role = role_of(&c, c.actor);
	if (k->need != ROLE_NONE)
		require(&c, k->need, k->action);
	int status = k->run(&c, sub_argc - optind, sub_argv + optind);
	ctx_release(&c);
	if (fclose(stdout) != 0 && status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return status;
}
