/* evsub — subscribe by topic pattern and print matching events as JSON
 * lines, in seq order, none missed and none twice. */
#include "evkit/bus.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/topic.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 256 /* patterns, excludes or event names on one command line */

enum format { FMT_JSON, FMT_PAYLOAD, FMT_TEXT };

struct opts {
	const char *bus;
	const char *patterns[MAX_LIST];
	int npatterns;
	const char *excludes[MAX_LIST];
	int nexcludes;
	const char *events[MAX_LIST];
	int nevents;
	const char *until;
	const char *ready_file;
	int64_t since;
	uint64_t count;       /* 0: no limit */
	double timeout_s;     /* < 0: none */
	enum format format;
};

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: evsub [options] PATTERN...\n"
		"\n"
		"Prints the events whose topic matches any PATTERN as JSON lines.\n"
		"A pattern matches whole ':'-separated segments: '*' is one segment,\n"
		"a final '**' any number (also none): case:*:7, workflow:**, **.\n"
		"\n"
		"  --bus URL           the hub (default $EVBUS_URL, else a private ipc path)\n"
		"  --exclude PATTERN   drop events whose topic matches (repeatable)\n"
		"  --event NAME        only events with this name (repeatable)\n"
		"  --until NAME        print the first event with this name, then exit 0\n"
		"  -n, --count N       exit 0 after printing N events\n"
		"  -W, --timeout SEC   exit 124 after SEC if --count/--until was not met,\n"
		"                      else exit 0 after SEC\n"
		"  --since SEQ         first replay retained events with seq > SEQ\n"
		"  --ready-file PATH   create PATH once subscribed: no later event is missed\n"
		"  -o, --format FMT    json (default), payload (the payload JSON) or\n"
		"                      text (topic, event and payload, space-separated)\n"
		"  -h, --help, --version\n"
		"\n"
		"Exit: 0 done, 2 usage, 69 no hub, 124 timeout.\n");
	exit(status);
}

static bool
list_add(const char **list, int *n, const char *v, const char *flag)
{
	if (*n >= MAX_LIST)
		evk_die(EVK_EX_USAGE, "too many %s (at most %d)", flag, MAX_LIST);
	list[(*n)++] = v;
	return true;
}

static double
parse_seconds(const char *s, const char *flag)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || !(v >= 0) || v > 1e9)
		evk_die(EVK_EX_USAGE, "%s wants seconds, not '%s'", flag, s);
	return v;
}

static uint64_t
parse_u64(const char *s, const char *flag, bool allow_zero)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *s == '-' || *end != '\0' || errno || (!allow_zero && v == 0) ||
	    v > INT64_MAX)
		evk_die(EVK_EX_USAGE, "%s wants a whole number, not '%s'", flag, s);
	return v;
}

static void
parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bus", required_argument, NULL, 'b' },
		{ "exclude", required_argument, NULL, 'x' },
		{ "event", required_argument, NULL, 'E' },
		{ "until", required_argument, NULL, 'u' },
		{ "count", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 'W' },
		{ "since", required_argument, NULL, 's' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ "format", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "n:W:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': o->bus = optarg; break;
		case 'x': list_add(o->excludes, &o->nexcludes, optarg, "--exclude"); break;
		case 'E': list_add(o->events, &o->nevents, optarg, "--event"); break;
		case 'u': o->until = optarg; break;
		case 'n': o->count = parse_u64(optarg, "--count", false); break;
		case 'W': o->timeout_s = parse_seconds(optarg, "--timeout"); break;
		case 's': o->since = (int64_t)parse_u64(optarg, "--since", true); break;
		case 'r': o->ready_file = optarg; break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				o->format = FMT_JSON;
			else if (strcmp(optarg, "payload") == 0)
				o->format = FMT_PAYLOAD;
			else if (strcmp(optarg, "text") == 0)
				o->format = FMT_TEXT;
			else
				evk_die(EVK_EX_USAGE, "unknown format '%s' (json, payload, text)",
					optarg);
			break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("evsub %s\n", EVK_VERSION); exit(0);
		default: usage(stderr, EVK_EX_USAGE);
		}
	}
	for (int i = optind; i < argc; i++)
		list_add(o->patterns, &o->npatterns, argv[i], "patterns");
	if (o->npatterns == 0) {
		evk_warn("no pattern given (use '**' for every topic)");
		usage(stderr, EVK_EX_USAGE);
	}
	for (int i = 0; i < o->npatterns; i++)
		if (!evk_pattern_valid(o->patterns[i]))
			evk_die(EVK_EX_USAGE, "invalid pattern '%s'", o->patterns[i]);
	for (int i = 0; i < o->nexcludes; i++)
		if (!evk_pattern_valid(o->excludes[i]))
			evk_die(EVK_EX_USAGE, "invalid pattern '%s'", o->excludes[i]);
	for (int i = 0; i < o->nevents; i++)
		if (!evk_event_name_valid(o->events[i], strlen(o->events[i])))
			evk_die(EVK_EX_USAGE, "invalid event name '%s'", o->events[i]);
	if (o->until && !evk_event_name_valid(o->until, strlen(o->until)))
		evk_die(EVK_EX_USAGE, "invalid event name '%s'", o->until);
}

static bool
any_match(const char *const *patterns, int n, const struct evk_event *ev)
{
	for (int i = 0; i < n; i++)
		if (evk_pattern_match(patterns[i], ev->topic, ev->topic_len))
			return true;
	return false;
}

static bool
wanted(const struct opts *o, const struct evk_event *ev)
{
	if (!any_match(o->patterns, o->npatterns, ev) ||
	    any_match(o->excludes, o->nexcludes, ev))
		return false;
	if (o->nevents == 0)
		return true;
	for (int i = 0; i < o->nevents; i++)
		if (strlen(o->events[i]) == ev->event_len &&
		    memcmp(o->events[i], ev->event, ev->event_len) == 0)
			return true;
	return false;
}

static void
print_event(const struct opts *o, const struct evk_event *ev)
{
	switch (o->format) {
	case FMT_JSON:
		fwrite(ev->line, 1, ev->line_len, stdout);
		break;
	case FMT_PAYLOAD:
		fwrite(ev->payload, 1, ev->payload_len, stdout);
		break;
	case FMT_TEXT:
		fwrite(ev->topic, 1, ev->topic_len, stdout);
		putchar(' ');
		fwrite(ev->event, 1, ev->event_len, stdout);
		putchar(' ');
		fwrite(ev->payload, 1, ev->payload_len, stdout);
		break;
	}
	putchar('\n');
}

/* Creates the ready file (empty) atomically enough for a poller. */
static void
touch_ready(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || close(fd) != 0)
		evk_die(EVK_EX_IOERR, "cannot create ready file '%s': %s", path,
			strerror(errno));
}

/* True when stdout is a pipe whose reader has gone: noticed while idle,
 * so that `evsub ... | head -1` ends without waiting for another event. */
static bool
reader_gone(void)
{
	struct pollfd pfd = { .fd = STDOUT_FILENO, .events = 0 };
	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
}

static long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
main(int argc, char **argv)
{
	struct opts o = { .since = EVK_SINCE_LIVE, .timeout_s = -1 };
	struct evk_sub *sub;
	struct evk_event ev;
	char url[EVK_URL_MAX];
	const char *why;
	uint64_t printed = 0;
	int rv, status = 0;

	evk_set_progname(argv[0]);
	parse_args(&o, argc, argv);
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address: %s", why);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	long long deadline = o.timeout_s >= 0 ? now_ms() + (long long)(o.timeout_s * 1000) : -1;
	if ((rv = evk_sub_open(&sub, url, o.since)) != EVK_OK)
		evk_die(rv == EVK_EUNAVAIL || rv == EVK_ECLOSED || rv == EVK_ETIMEDOUT
				? EVK_EX_UNAVAILABLE
				: evk_err_exit(rv),
			"no hub at '%s': %s", url, evk_strerror(rv));
	if (o.ready_file)
		touch_ready(o.ready_file);

	static char outbuf[64 * 1024];
	bool dirty = false;
	if (setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf)) != 0)
		evk_die(EVK_EX_FAIL, "cannot buffer stdout");
	while (!stopping) {
		int wait = 200; /* wake up now and then to notice signals */
		if (deadline >= 0) {
			long long left = deadline - now_ms();
			if (left <= 0) {
				status = o.count || o.until ? EVK_EX_TIMEOUT : 0;
				break;
			}
			if (left < wait)
				wait = (int)left;
		}
		rv = evk_sub_next(sub, &ev, wait);
		if (rv == EVK_ETIMEDOUT) {
			if (reader_gone())
				break;
			continue;
		}
		if (rv == EVK_EGAP) {
			uint64_t from, to;
			evk_sub_gap(sub, &from, &to);
			if (from == to)
				evk_warn("gap: event %llu is no longer retained",
					 (unsigned long long)from);
			else
				evk_warn("gap: events %llu-%llu are no longer retained",
					 (unsigned long long)from, (unsigned long long)to);
			continue;
		}
		if (rv != EVK_OK) {
			evk_warn("lost the hub at '%s': %s", url, evk_strerror(rv));
			status = EVK_EX_UNAVAILABLE;
			break;
		}
		bool show = wanted(&o, &ev);
		if (show) {
			print_event(&o, &ev);
			printed++;
			dirty = true;
		}
		/* Flush once the events at hand are printed, not per line: as
		 * prompt for the reader, a write per frame instead of per event. */
		if (dirty && !evk_sub_buffered(sub)) {
			dirty = false;
			if (fflush(stdout) != 0) {
				if (errno == EPIPE)
					break; /* the reader is gone: a clean end */
				evk_warn("writing stdout: %s", strerror(errno));
				status = EVK_EX_IOERR;
				break;
			}
		}
		if (!show)
			continue;
		if (o.until && strlen(o.until) == ev.event_len &&
		    memcmp(o.until, ev.event, ev.event_len) == 0)
			break;
		if (o.count && printed >= o.count)
			break;
	}
	evk_sub_close(sub);
	if (fclose(stdout) != 0 && errno != EPIPE && status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return status;
}
