/* evpub — publish events from arguments or JSON lines; exits 0 only when
 * the hub acknowledged (stored) every one. */
#include "evkit/bus.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/flags.h"
#include "evkit/lines.h"
#include "evkit/opts.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct opts {
	const char *bus;
	const char *file;
	const char *topic;
	const char *event;
	const char *raw; /* --raw TEXT: the payload is TEXT as a JSON string */
	size_t max_line;
	bool strict;
	bool echo;
	char **args; /* TOPIC EVENT [PAYLOAD_JSON] */
	int nargs;
};

/* The options, in the order --help lists them. */
static const struct evk_flag flags[] = {
	EVK_FLAGS_BUS,
	{ "file", 'f', EVK_FLAG_SHORT, "FILE",
	  "read JSON lines from FILE instead of stdin ('-': stdin)", 0 },
	{ "raw", 'r', 0, "TEXT", "the payload is TEXT, published as a JSON string", 0 },
	{ "topic", 't', EVK_FLAG_SHORT, "TOPIC", "each input line is a payload for this topic", 0 },
	{ "event", 'e', EVK_FLAG_SHORT, "NAME", "... and this event name", 0 },
	{ "strict", 's', 0, NULL, "stop at the first bad line (earlier lines stay published)", 0 },
	{ "echo", 'E', 0, NULL, "print each acknowledged event, with its seq", 0 },
	{ "max-line", 'L', 0, "BYTES", "longest input line (default 1048576)", 0 },
	EVK_FLAGS_HELP,
};
#define NFLAGS EVK_NFLAGS(flags)

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: evpub [options] TOPIC EVENT [PAYLOAD_JSON | --raw TEXT]\n"
		"       evpub [options] [-f FILE]            (JSON lines: full events)\n"
		"       evpub [options] -t TOPIC -e EVENT [-f FILE]  (JSON lines: payloads)\n"
		"\n"
		"Publishes events to the evkit hub; exits 0 once every event was\n"
		"acknowledged, that is numbered and stored.\n"
		"\n");
	evk_flags_print(out, flags, NFLAGS, 0, 17);
	fprintf(out,
		"  -h, --help, --version\n"
		"\n"
		"Exit: 0 all published, 2 usage, 65 bad input lines (the good ones were\n"
		"published), 69 no hub, 74 read error, 77 permission denied.\n");
	exit(status);
}

/* TEXT as a JSON string (malloc'd), for --raw. */
static char *
raw_payload(const char *text)
{
	cJSON *s = cJSON_CreateString(text);
	char *json = s ? cJSON_PrintUnformatted(s) : NULL;

	cJSON_Delete(s);
	if (json == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	return json;
}

static void
echo_acked(void *arg, uint64_t first, const char *lines, size_t len, uint32_t count)
{
	(void)arg;
	(void)count;
	for (const char *p = lines, *end = lines + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		printf("{\"seq\":%llu,", (unsigned long long)first++);
		fwrite(p + 1, 1, (size_t)(nl - p), stdout);
		p = nl + 1;
	}
	if (fflush(stdout) != 0 && errno == EPIPE)
		exit(EVK_EX_IOERR);
}

/* Reports a failure of the hub link and exits with its status. */
static void
link_failed(struct evk_pub *p, const char *url, int rv)
{
	uint64_t acked = p ? evk_pub_acked(p) : 0;
	char why[256] = "";

	if (p && evk_pub_why(p))
		snprintf(why, sizeof(why), "%s", evk_pub_why(p));
	/* Closed before the exit, which frees the frames still in flight. */
	evk_pub_close(p);
	if (rv == EVK_EPERM || (p == NULL && evk_bus_why()))
		evk_die_hub(url, rv);
	if (rv == EVK_EUNAVAIL && !*why)
		evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s'", url);
	if (rv == EVK_ECLOSED || rv == EVK_ETIMEDOUT)
		evk_die(EVK_EX_UNAVAILABLE,
			"lost the hub at '%s' (%s): %llu events acknowledged, "
			"later ones may not be stored",
			url, evk_strerror(rv), (unsigned long long)acked);
	if (*why)
		evk_die(evk_err_exit(rv), "the hub at '%s' %s: %s (%llu events acknowledged)",
			url, rv == EVK_EINVAL ? "refused a frame" : "failed", why,
			(unsigned long long)acked);
	evk_die(evk_err_exit(rv), "publishing to '%s': %s", url, evk_strerror(rv));
}

static int
publish_lines(struct evk_pub *pub, const struct opts *o, const char *url)
{
	struct evk_lines r;
	struct evk_buf line = EVK_BUF_INIT(0);
	bool std_in = o->file == NULL || strcmp(o->file, "-") == 0;
	const char *name = std_in ? "stdin" : o->file;
	char why[256];
	int fd = 0, bad = 0, rv;

	if (!std_in && (fd = open(o->file, O_RDONLY | O_CLOEXEC)) < 0)
		evk_die(EVK_EX_IOERR,
			"cannot open '%s': %s", o->file, strerror(errno));
	if (evk_lines_init(&r, fd, o->max_line) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	for (;;) {
		char *text;
		size_t len;

		/* The input is idle: send what is queued now and wait for
		 * its ack, so that a single event is never held back. */
		if (!evk_lines_ready(&r) && evk_lines_wait(&r, 0) == 0 &&
		    (rv = evk_pub_sync(pub)) != EVK_OK)
			link_failed(pub, url, rv);
		int st = evk_lines_next(&r, &text, &len);
		if (st == EVK_LINE_EOF)
			break;
		if (st == EVK_LINE_ERR)
			evk_die(EVK_EX_IOERR, "%s: read error: %s", name, strerror(errno));
		if (st == EVK_LINE_OK && len == 0)
			continue; /* blank lines are allowed, as in jq */
		if (st == EVK_LINE_TOOLONG)
			snprintf(why, sizeof(why), "line longer than %zu bytes", o->max_line);
		else if (st == EVK_LINE_NUL)
			snprintf(why, sizeof(why), "NUL byte in line");
		evk_buf_reset(&line);
		if (st == EVK_LINE_OK &&
		    (o->topic ? evk_event_from_payload(&line, o->topic, o->event, text,
						       len, why, sizeof(why))
			      : evk_event_from_json(&line, text, len, why,
						    sizeof(why))) == EVK_OK) {
			if ((rv = evk_pub_add(pub, line.p, line.len)) != EVK_OK)
				link_failed(pub, url, rv);
			continue;
		}
		evk_warn("%s:%lu: %s", name, r.lineno, why);
		bad++;
		if (o->strict)
			break;
	}
	evk_buf_release(&line);
	evk_lines_release(&r);
	if (fd > 0)
		close(fd);
	return bad;
}

static void
parse_args(struct opts *o, int argc, char **argv)
{
	struct evk_getopt g;
	int c;

	evk_flags_getopt(&g, "evpub " EVK_VERSION, usage, flags, NFLAGS, "+:");
	while ((c = evk_flags_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'b': o->bus = optarg; break;
		case 'f': o->file = optarg; break;
		case 't': o->topic = optarg; break;
		case 'e': o->event = optarg; break;
		case 's': o->strict = true; break;
		case 'E': o->echo = true; break;
		case 'r': o->raw = optarg; break;
		case 'L': o->max_line = (size_t)evk_flag_int("--max-line", optarg, 1, 1LL << 30); break;
		}
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	/* The payload slot may hold --raw TEXT: evpub demo:x tick --raw hello */
	if (o->nargs == 4 && strcmp(o->args[2], "--raw") == 0) {
		o->raw = o->args[3];
		o->nargs = 2;
	}
	if (o->raw && o->nargs != 2)
		evk_die(EVK_EX_USAGE, "--raw TEXT is the payload of TOPIC EVENT%s",
			o->nargs == 3 ? ", given a PAYLOAD_JSON too" : "");
	if ((o->topic == NULL) != (o->event == NULL))
		evk_usage_die("-t and -e go together");
	if (o->topic && !evk_topic_valid(o->topic, strlen(o->topic)))
		evk_usage_die("invalid topic '%s'", o->topic);
	if (o->event && !evk_event_name_valid(o->event, strlen(o->event)))
		evk_usage_die("invalid event name '%s'", o->event);
	if (o->nargs == 1)
		evk_usage_die("missing EVENT after TOPIC '%s'", o->args[0]);
	if (o->nargs > 3)
		evk_usage_die("unexpected argument '%s'", o->args[3]);
	if (o->nargs > 0 && (o->topic || o->file))
		evk_usage_die("TOPIC EVENT arguments and %s exclude each other",
			      o->topic ? "-t/-e" : "-f");
}

/* The event given as TOPIC EVENT [PAYLOAD_JSON | --raw TEXT], checked
 * before connecting, into one. */
static void
event_from_args(struct evk_buf *one, const struct opts *o)
{
	char *raw = o->raw ? raw_payload(o->raw) : NULL;
	const char *payload = raw ? raw : o->nargs == 3 ? o->args[2] : "{}";
	char reason[256];

	if (!evk_topic_valid(o->args[0], strlen(o->args[0])))
		evk_usage_die("invalid topic '%s'", o->args[0]);
	if (!evk_event_name_valid(o->args[1], strlen(o->args[1])))
		evk_usage_die("invalid event name '%s'", o->args[1]);
	if (evk_event_from_payload(one, o->args[0], o->args[1], payload, strlen(payload),
				   reason, sizeof(reason)) != EVK_OK)
		evk_die(EVK_EX_DATAERR, "payload: %s", reason);
	free(raw);
}

int
main(int argc, char **argv)
{
	struct opts o = { .max_line = EVK_MAX_LINE_DEFAULT };
	struct evk_pub *pub = NULL;
	struct evk_buf one = EVK_BUF_INIT(0);
	char url[EVK_URL_MAX];
	const char *why;
	int rv, bad = 0;

	evk_set_progname(argv[0]);
	parse_args(&o, argc, argv);
	if (o.nargs > 0)
		event_from_args(&one, &o);
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_usage_die("bad bus address: %s", why);
	if ((rv = evk_pub_open(&pub, url, o.echo ? echo_acked : NULL, NULL)) != EVK_OK)
		link_failed(NULL, url, rv);
	if (o.nargs > 0) {
		if ((rv = evk_pub_add(pub, one.p, one.len)) != EVK_OK)
			link_failed(pub, url, rv);
	} else {
		bad = publish_lines(pub, &o, url);
	}
	evk_buf_release(&one);
	if ((rv = evk_pub_sync(pub)) != EVK_OK)
		link_failed(pub, url, rv);
	/* Output first: a reader waiting for it need not wait for the close. */
	if (fclose(stdout) != 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	evk_pub_close(pub);
	if (bad)
		evk_warn("%d bad line%s skipped", bad, bad == 1 ? "" : "s");
	return bad ? EVK_EX_DATAERR : 0;
}
