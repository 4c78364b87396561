/* widgetd — folds the bus's events into widget state (the seed's LiveView
 * widgets), keeps it durably, publishes each change on widget:{id}, and
 * shows it (widgetd get, widgetd view). The daemon is in daemon.c,
 * the dashboard in view.c. */
#include "widgetd.h"

#include "evkit/opts.h"
#include "evkit/bus.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/flags.h"
#include "evkit/fold.h"
#include "evkit/jsonmem.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile sig_atomic_t widgetd_stopping;

/* The options, in the order --help lists them. */
static const struct evk_flag flags[] = {
	EVK_FLAGS_BUS,
	{ "config", 'c', 0, "FILE", "widgets to keep (JSON; default: the seed's widgets)", 0 },
	{ "cases-db", 'C', 0, "DB", "casectl's database for keep_live (file, postgresql://...)",
	  0 },
	{ "state", 's', 0, "FILE", "state, last seq (default $XDG_STATE_HOME/evkit/widgets.db)", 0 },
	{ "throttle", 't', 0, "MS", "per widget publishing window (default 500)", 0 },
	{ "max-widgets", 'M', 0, "N", "progress and result widgets kept at most (default 1000)", 0 },
	{ "daemon", 'd', 0, NULL, "go to the background once subscribed", 0 },
	{ "pidfile", 'p', 0, "FILE", "write the daemon's pid to FILE", 0 },
	{ "log", 'L', 0, "FILE",
	  "append messages to FILE, timestamped (a daemon without\n"
	  "it logs to syslog)", 0 },
	{ "quiet", 'q', EVK_FLAG_SHORT, NULL,
	  "no warnings (skipped events and the like); errors only", 0 },
	{ "verbose", 'v', EVK_FLAG_SHORT, NULL,
	  "also say what the daemon does (subscribed, announced)", 0 },
	{ "http", 'H', 0, "[HOST:]PORT",
	  "serve the widgets to a browser (HTTPS with --tls-cert):\n"
	  "the page at /, /widgets[/ID] as get prints them, /events\n"
	  "live (loopback unless HOST; 0 picks a free port)", 0 },
	{ "insecure", 'I', 0, NULL, "allow --http beyond loopback without --tls-cert/--tls-key",
	  0 },
	{ "wait", 'W', EVK_FLAG_SHORT, "SECS",
	  "get, view: wait this long for the daemon (default 5)", 0 },
	EVK_FLAGS_HELP,
};
#define NFLAGS EVK_NFLAGS(flags)

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: widgetd [--bus URL] [--config FILE] [--cases-db FILE] [--state FILE]\n"
		"               [--throttle MS] [--daemon] [--pidfile FILE] [--log FILE] [-q|-v]\n"
		"               [--http [HOST:]PORT [--insecure]]\n"
		"       widgetd [-W SECS] get [ID]\n"
		"       widgetd [-W SECS] view\n"
		"       widgetd session start|stop [ID]\n"
		"\n"
		"Folds workflow and case events into widgets: progress-{wf} (replaced by\n"
		"result-{wf}), keep_live lists re-queried from casectl's database, session\n"
		"lists and counters. Publishes each change on widget:{id} (widget_updated,\n"
		"at most once per --throttle window, the last state always sent).\n"
		"\n");
	evk_flags_print(out, flags, NFLAGS, 0, 18);
	fprintf(out,
		"  -h, --help, --version\n"
		"\n"
		"get asks the running daemon for one widget (exit 1 if unknown) or all,\n"
		"as JSON lines, as of every event published before it; view is a live\n"
		"dashboard (ncurses; q or Ctrl-C quits): the bus, the time, connected or\n"
		"DISCONNECTED, a row per widget; plain frames when not on a terminal, with\n"
		"TERM=dumb or NO_COLOR.\n"
		"session start empties a session list and collects from then on; session\n"
		"stop freezes it (all session widgets, or ID only).\n"
		"\n"
		"Exit: 0 ok, 1 unknown widget, 2 usage, 65 bad config, 69 no hub, no\n"
		"daemon answering or no state.\n");
	exit(status);
}

/* ---- get and view: the widgets from the running daemon ----
 *
 * A client subscribes, then publishes a get on GET_TOPIC naming a reply
 * topic of its own; the daemon answers at the request's place in the
 * stream, so the answer includes every event published before it. */

/* Asks the daemon for its widgets (only widget id when not NULL) through
 * sub, opened live before; calls fn on each widget's JSON text, in the
 * daemon's order. Returns how many, or NO_ANSWER when no daemon answered
 * within answer_ms, HUB_LOST (*err says why), INCOMPLETE (*err says
 * whether the hub dropped part), INTERRUPTED. */
long
widgetd_request(struct evk_sub *sub, const char *url, long long answer_ms, const char *id,
		void (*fn)(void *arg, const char *json, size_t len), void *arg, int *err)
{
	char nonce[37], reply[sizeof(REPLY_PREFIX) + 37];
	if (evk_uuid7(nonce) != EVK_OK)
		evk_die(EVK_EX_FAIL, "no random numbers");
	snprintf(reply, sizeof(reply), "%s%s", REPLY_PREFIX, nonce);
	cJSON *p = cJSON_CreateObject();
	if (p == NULL || !cJSON_AddStringToObject(p, "reply", reply) ||
	    (id && !cJSON_AddStringToObject(p, "widget", id)) ||
	    !cJSON_AddNumberToObject(p, "until", (double)(evk_wall_ms() + answer_ms)))
		evk_die(EVK_EX_FAIL, "out of memory");
	*err = evk_publish(url, GET_TOPIC, "get", p, NULL);
	cJSON_Delete(p);
	if (*err != EVK_OK)
		return HUB_LOST;

	long long deadline = evk_mono_ms() + answer_ms;
	long n = 0;
	struct evk_event ev;
	while (!widgetd_stopping) {
		long long left = deadline - evk_mono_ms();
		int rv = left <= 0 ? EVK_ETIMEDOUT
				   : evk_sub_next(sub, &ev, left > INT_MAX ? INT_MAX : (int)left);
		if (rv == EVK_ETIMEDOUT)
			return NO_ANSWER;
		if (rv == EVK_EGAP) {
			*err = EVK_EGAP; /* part of the answer may be gone */
			continue;
		}
		if (rv != EVK_OK)
			return *err = rv, HUB_LOST;
		if (!topic_is(&ev, reply))
			continue;
		if (event_is(&ev, "end")) {
			cJSON *end = cJSON_ParseWithLength(ev.payload, ev.payload_len);
			const cJSON *count = cJSON_GetObjectItemCaseSensitive(end, "count");
			bool whole = cJSON_IsNumber(count) && count->valuedouble == (double)n;
			cJSON_Delete(end);
			return whole ? n : INCOMPLETE;
		}
		fn(arg, ev.payload, ev.payload_len);
		n++;
	}
	return INTERRUPTED;
}

static void
print_widget(void *arg, const char *json, size_t len)
{
	(void)arg;
	if (fwrite(json, 1, len, stdout) != len || putchar('\n') == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
}

static int
cmd_get(const char *url, long long answer_ms, const char *id)
{
	struct evk_sub *sub;
	int rv = evk_sub_open(&sub, url, EVK_SINCE_LIVE);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	long n = widgetd_request(sub, url, answer_ms, id, print_widget, NULL, &rv);
	if (fflush(stdout) == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	evk_sub_close(sub);
	if (n == NO_ANSWER)
		evk_die(EVK_EX_UNAVAILABLE, "no widgetd answered on '%s' within %lld ms", url,
			answer_ms);
	if (n == HUB_LOST)
		evk_die_hub(url, rv);
	if (n == INCOMPLETE)
		evk_die(EVK_EX_UNAVAILABLE, "the daemon's answer came incomplete%s; ask again",
			rv == EVK_EGAP ? " (the hub dropped part of it)" : "");
	if (n == INTERRUPTED)
		return 130;
	if (id && n == 0) {
		evk_warn("no widget '%s'", id);
		return EVK_EX_FAIL;
	}
	return 0;
}

/* Asks the daemon, through the bus, to start or stop the session of
 * widget id (every session widget when NULL). */
static int
cmd_session(const char *url, const char *what, const char *id)
{
	char event[16];
	cJSON *p = cJSON_CreateObject();
	if (p == NULL || (id && !cJSON_AddStringToObject(p, "widget", id)))
		evk_die(EVK_EX_FAIL, "out of memory");
	snprintf(event, sizeof(event), "session_%s", what);
	int rv = evk_publish(url, SESSION_TOPIC, event, p, NULL);
	cJSON_Delete(p);
	if (rv != EVK_OK)
		evk_die_hub(url, rv);
	return 0;
}

/* Reads the options into o; exits 2 on bad usage. */
static void
parse_args(struct opts *o, int argc, char **argv)
{
	struct evk_getopt g;
	int c;

	evk_flags_getopt(&g, "widgetd " EVK_VERSION, usage, flags, NFLAGS, ":");
	while ((c = evk_flags_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'b': o->bus = optarg; break;
		case 'c': o->config = optarg; break;
		case 'C': o->cases_db = optarg; break;
		case 's': o->state = optarg; break;
		case 't': o->throttle_ms = evk_flag_int("--throttle", optarg, 1, 86400000); break;
		case 'M': o->max_widgets = evk_flag_int("--max-widgets", optarg, 1, EVK_FOLD_WIDGETS_LIMIT); break;
		case 'W':
			if ((o->answer_ms = (long long)(evk_flag_seconds("-W", optarg, 1e9) * 1000)) < 1)
				evk_usage_die("-W wants seconds from 0.001, not '%s'", optarg);
			break;
		case 'd': o->daemon = true; break;
		case 'p': o->pidfile = optarg; break;
		case 'L': o->log = optarg; break;
		case 'q': evk_log_level(EVK_LOG_QUIET); break;
		case 'v': evk_log_level(EVK_LOG_VERBOSE); break;
		case 'H': o->http = optarg; break;
		case 'I': o->insecure = true; break;
		}
	}
}

/* The commands: each gets the n arguments after its name. */
static int
run_get(const struct opts *o, const char *url, int n, char **args)
{
	if (n > 1)
		evk_usage_die("unexpected argument '%s'", args[1]);
	return cmd_get(url, o->answer_ms, n == 1 ? args[0] : NULL);
}

static int
run_view(const struct opts *o, const char *url, int n, char **args)
{
	if (n > 0)
		evk_usage_die("unexpected argument '%s'", args[0]);
	return widgetd_view(url, o->answer_ms);
}

static int
run_session(const struct opts *o, const char *url, int n, char **args)
{
	(void)o;
	if (n < 1)
		evk_usage_die("missing start or stop");
	if (strcmp(args[0], "start") && strcmp(args[0], "stop"))
		evk_usage_die("unknown action '%s' (start, stop)", args[0]);
	if (n > 2)
		evk_usage_die("unexpected argument '%s'", args[2]);
	return cmd_session(url, args[0], n == 2 ? args[1] : NULL);
}

static const struct command {
	const char *name;
	int (*run)(const struct opts *o, const char *url, int n, char **args);
} commands[] = {
	{ "get", run_get },
	{ "view", run_view },
	{ "session", run_session },
};

int
main(int argc, char **argv)
{
	struct opts o = { .throttle_ms = 500, .answer_ms = ANSWER_MS };
	char url[EVK_URL_MAX];
	const char *why;

	evk_set_progname(argv[0]);
	/* The fold's small cJSON blocks are reused instead of going back to
	 * malloc each event: cJSON is used on this thread only. */
	evk_jsonmem_install();
	atexit(evk_jsonmem_release);
	parse_args(&o, argc, argv);
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_usage_die("bad bus address: %s", why);
	evk_signals_init(&widgetd_stopping, true);

	if (optind == argc)
		return widgetd_daemon(&o, url);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0) {
			evk_set_subcommand(commands[i].name);
			return commands[i].run(&o, url, argc - optind - 1, argv + optind + 1);
		}
	evk_usage_die("unknown command '%s' (get, view, session)", argv[optind]);
}
