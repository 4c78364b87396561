/* evsub — subscribe by topic pattern and print matching events as JSON
 * lines, in seq order, none missed and none twice. */
#include "evkit/bus.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/flags.h"
#include "evkit/fmt.h"
#include "evkit/gate.h"
#include "evkit/limits.h"
#include "evkit/opts.h"
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

enum format { FMT_JSON, FMT_PAYLOAD, FMT_TEXT, FMT_TSV, FMT_TEMPLATE };
enum tkey { KEY_TOPIC_EVENT, KEY_TOPIC, KEY_EVENT };

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
	const char *template;  /* -F */
	long long throttle_ms; /* 0: off */
	long long debounce_ms; /* 0: off */
	enum tkey key;
	long long batch_ms;    /* 0: off */
	uint64_t batch_size;   /* 0: off */
	bool latest;
	bool snapshot; /* replay up to the head at the start, then exit 0 */
	bool stats;
};

static volatile sig_atomic_t stopping, stats_wanted;

static void
on_stats(int sig)
{
	(void)sig;
	stats_wanted = 1;
}

/* The options, in the order --help lists them. */
static const struct evk_flag flags[] = {
	EVK_FLAGS_BUS,
	{ "exclude", 'x', 0, "PATTERN", "drop events whose topic matches (repeatable)", 0 },
	{ "event", 'E', 0, "NAME", "only events with this name (repeatable)", 0 },
	{ "until", 'u', 0, "NAME", "print the first event with this name, then exit 0", 0 },
	{ "count", 'n', EVK_FLAG_SHORT, "N", "exit 0 after printing N events", 0 },
	{ "timeout", 'W', EVK_FLAG_SHORT, "SEC",
	  "exit 124 after SEC if --count/--until was not met,\nelse exit 0 after SEC", 0 },
	{ "since", 's', 0, "SEQ", "first replay retained events with seq > SEQ", 0 },
	{ "ready-file", 'r', 0, "PATH", "create PATH once subscribed: no later event is missed",
	  0 },
	{ "format", 'o', EVK_FLAG_SHORT, "FMT",
	  "json (default), payload (the payload JSON),\n"
	  "text (topic event payload) or tsv (seq, ts,\n"
	  "topic, event, payload)", 0 },
	{ "template", 'F', EVK_FLAG_SHORT, "T",
	  "print T per event: %s seq, %t topic, %e event,\n"
	  "%p payload, %T ts, %{payload.a.b} one field, %%,\n"
	  "\\t \\n", 0 },
	{ "throttle", 'T', 0, "MS",
	  "per key at most one event per MS window, the\n"
	  "latest; a burst's last event comes at window end", 0 },
	{ "throttle-key", 'K', 0, "K", "topic+event (default), topic or event", 0 },
	{ "debounce", 'D', 0, "MS", "per key, the latest event after MS of quiet", 0 },
	{ "batch", 'B', 0, "MS", "print one JSON array of the events of each MS", 0 },
	{ "batch-size", 'Z', 0, "N", "... or of each N events (never an empty array)", 0 },
	{ "latest", 'L', 0, NULL,
	  "replay only the newest retained event per topic\n"
	  "(from --since, default 0), then go on live", 0 },
	{ "snapshot", 'P', 0, NULL,
	  "with --since or --latest: replay up to the hub's\n"
	  "head at the start, then exit 0 (not live)", 0 },
	{ "stats", 'S', 0, NULL, "on exit or SIGUSR1, figures as JSON on stderr", 0 },
	EVK_FLAGS_HELP,
};
#define NFLAGS EVK_NFLAGS(flags)

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: evsub [options] PATTERN...\n"
		"\n"
		"Prints the events whose topic matches any PATTERN as JSON lines.\n"
		"A pattern matches whole ':'-separated segments: '*' is one segment,\n"
		"a final '**' any number (also none): case:*:7, workflow:**, **.\n"
		"\n");
	evk_flags_print(out, flags, NFLAGS, 0, 19);
	fprintf(out,
		"  -h, --help, --version\n"
		"\n"
		"Exit: 0 done, 2 usage, 69 no hub, 77 permission denied, 124 timeout.\n");
	exit(status);
}

static bool
list_add(const char **list, int *n, const char *v, const char *flag)
{
	if (*n >= MAX_LIST)
		evk_usage_die("too many %s (at most %d)", flag, MAX_LIST);
	list[(*n)++] = v;
	return true;
}

static uint64_t
parse_u64(const char *s, const char *flag, bool allow_zero)
{
	return (uint64_t)evk_flag_int(flag, s, allow_zero ? 0 : 1, INT64_MAX);
}

static const char *const format_names[] = {
	[FMT_JSON] = "json", [FMT_PAYLOAD] = "payload", [FMT_TEXT] = "text", [FMT_TSV] = "tsv",
	NULL,
};
static const char *const key_names[] = {
	[KEY_TOPIC_EVENT] = "topic+event", [KEY_TOPIC] = "topic", [KEY_EVENT] = "event", NULL,
};

/* The index of v among names (NULL-terminated); a usage error listing
 * them when v is none of them. */
static int
one_of(const char *v, const char *const *names, const char *what)
{
	char list[128] = "";
	size_t len = 0;

	for (int i = 0; names[i]; i++) {
		if (strcmp(v, names[i]) == 0)
			return i;
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
					names[i]);
	}
	evk_usage_die("unknown %s '%s' (%s)", what, v, list);
}

/* The checks that need the whole command line: patterns, event names and
 * the options that exclude or need each other. */
static void
check_args(struct opts *o)
{
	if (o->npatterns == 0)
		evk_usage_die("missing PATTERN (use '**' for every topic)");
	for (int i = 0; i < o->npatterns + o->nexcludes; i++) {
		char msg[640];
		const char *p = i < o->npatterns ? o->patterns[i] : o->excludes[i - o->npatterns];
		if (evk_pattern_check(p, msg, sizeof(msg)) == EVK_PATTERN_BAD)
			evk_usage_die("%s", msg);
		else if (*msg)
			evk_warn("%s", msg);
	}
	for (int i = 0; i < o->nevents; i++)
		if (!evk_event_name_valid(o->events[i], strlen(o->events[i])))
			evk_usage_die("invalid event name '%s'", o->events[i]);
	if (o->until && !evk_event_name_valid(o->until, strlen(o->until)))
		evk_usage_die("invalid event name '%s'", o->until);
	if (o->throttle_ms && o->debounce_ms)
		evk_usage_die("--throttle and --debounce exclude each other");
	if ((o->batch_ms || o->batch_size) && o->format != FMT_JSON &&
	    o->format != FMT_PAYLOAD)
		evk_usage_die("--batch prints JSON arrays: use -o json or -o payload");
	if (o->snapshot && !o->latest && o->since == EVK_SINCE_LIVE)
		evk_usage_die("--snapshot replays: give --since SEQ or --latest");
	if (o->latest && o->since == EVK_SINCE_LIVE)
		o->since = 0;
}

static void
parse_args(struct opts *o, int argc, char **argv)
{
	struct evk_getopt g;
	int c;

	evk_flags_getopt(&g, "evsub " EVK_VERSION, usage, flags, NFLAGS, ":");
	while ((c = evk_flags_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'b': o->bus = optarg; break;
		case 'x': list_add(o->excludes, &o->nexcludes, optarg, "--exclude"); break;
		case 'E': list_add(o->events, &o->nevents, optarg, "--event"); break;
		case 'u': o->until = optarg; break;
		case 'n': o->count = parse_u64(optarg, "--count", false); break;
		case 'W': o->timeout_s = evk_flag_seconds("--timeout", optarg, 1e9); break;
		case 's': o->since = (int64_t)parse_u64(optarg, "--since", true); break;
		case 'r': o->ready_file = optarg; break;
		case 'o': o->format = (enum format)one_of(optarg, format_names, "format"); break;
		case 'F':
			o->template = optarg;
			o->format = FMT_TEMPLATE;
			break;
		case 'T': o->throttle_ms = (long long)parse_u64(optarg, "--throttle", false); break;
		case 'D': o->debounce_ms = (long long)parse_u64(optarg, "--debounce", false); break;
		case 'B': o->batch_ms = (long long)parse_u64(optarg, "--batch", false); break;
		case 'Z': o->batch_size = parse_u64(optarg, "--batch-size", false); break;
		case 'K': o->key = (enum tkey)one_of(optarg, key_names, "--throttle-key"); break;
		case 'L': o->latest = true; break;
		case 'P': o->snapshot = true; break;
		case 'S': o->stats = true; break;
		}
	}
	for (int i = optind; i < argc; i++)
		list_add(o->patterns, &o->npatterns, argv[i], "patterns");
	check_args(o);
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

/* What happens to the events that pass the filters: held by the
 * --latest and --throttle/--debounce gates, gathered by --batch, printed. */
struct out {
	const struct opts *o;
	struct evk_fmt *fmt;
	struct evk_gate *latest, *gate;
	struct evk_buf text;    /* -F rendering */
	struct evk_buf batch;   /* the array being gathered */
	uint64_t batch_n;
	long long batch_due;
	uint64_t received, filtered, printed, batches, gaps;
	bool dirty;             /* printed but not flushed */
	bool done;              /* --count or --until met */
};

#define BATCH_BYTES_MAX (4u * 1024 * 1024) /* an array is cut at this size */


/* Writes p[0..n); nothing for n == 0 (p may then be NULL, as an empty
 * -F rendering leaves it, which fwrite must not be given). */
static void
write_out(const void *p, size_t n)
{
	if (n > 0)
		fwrite(p, 1, n, stdout);
}

static void
print_event(struct out *w, const struct evk_event *ev)
{
	switch (w->o->format) {
	case FMT_JSON:
		write_out(ev->line, ev->line_len);
		break;
	case FMT_PAYLOAD:
		write_out(ev->payload, ev->payload_len);
		break;
	case FMT_TEXT:
		write_out(ev->topic, ev->topic_len);
		putchar(' ');
		write_out(ev->event, ev->event_len);
		putchar(' ');
		write_out(ev->payload, ev->payload_len);
		break;
	case FMT_TSV:
		printf("%llu\t%.*s\t", (unsigned long long)ev->seq, EVK_TS_LEN, ev->ts);
		write_out(ev->topic, ev->topic_len);
		putchar('\t');
		write_out(ev->event, ev->event_len);
		putchar('\t');
		write_out(ev->payload, ev->payload_len);
		break;
	case FMT_TEMPLATE:
		evk_buf_reset(&w->text);
		if (evk_fmt_render(w->fmt, ev, &w->text) != EVK_OK)
			evk_die(EVK_EX_FAIL, "out of memory");
		write_out(w->text.p, w->text.len);
		break;
	}
	putchar('\n');
	w->dirty = true;
}

static void
batch_flush(struct out *w)
{
	if (w->batch_n == 0)
		return;
	if (evk_buf_add(&w->batch, "]\n", 2) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	write_out(w->batch.p, w->batch.len);
	evk_buf_reset(&w->batch);
	w->batch_n = 0;
	w->batches++;
	w->dirty = true;
}

/* The last stage: into the batch or printed. Returns DONE once --count
 * or --until is met, which stops the gates from emitting more. */
#define DONE (-1)
static int
deliver(struct out *w, const struct evk_event *ev)
{
	const struct opts *o = w->o;

	if (w->done)
		return DONE;
	if (o->batch_ms || o->batch_size) {
		const char *v = o->format == FMT_PAYLOAD ? ev->payload : ev->line;
		size_t n = o->format == FMT_PAYLOAD ? ev->payload_len : ev->line_len;
		if (w->batch_n > 0 && w->batch.len + n + 3 > BATCH_BYTES_MAX)
			batch_flush(w);
		if (evk_buf_addch(&w->batch, w->batch_n ? ',' : '[') != EVK_OK ||
		    evk_buf_add(&w->batch, v, n) != EVK_OK)
			evk_die(EVK_EX_FAIL, "out of memory");
		if (w->batch_n++ == 0 && o->batch_ms)
			w->batch_due = evk_mono_ms() + o->batch_ms;
		if (o->batch_size && w->batch_n >= o->batch_size)
			batch_flush(w);
	} else {
		print_event(w, ev);
	}
	w->printed++;
	if ((o->count && w->printed >= o->count) ||
	    (o->until && strlen(o->until) == ev->event_len &&
	     memcmp(o->until, ev->event, ev->event_len) == 0)) {
		w->done = true;
		return DONE;
	}
	return 0;
}

/* A gate lets a held line through: back to an event, then on. */
static int gated(struct out *w, const struct evk_event *ev);

static int
from_gate(void *arg, const char *line, size_t len, bool next_gate)
{
	struct out *w = arg;
	struct evk_event ev;

	if (evk_event_scan(&ev, line, len) != EVK_OK)
		return 0; /* cannot happen: the line scanned before */
	return next_gate ? gated(w, &ev) : deliver(w, &ev);
}

static int
from_throttle(void *arg, const char *line, size_t len)
{
	return from_gate(arg, line, len, false);
}

static int
from_latest(void *arg, const char *line, size_t len)
{
	return from_gate(arg, line, len, true);
}

/* Through --throttle or --debounce when asked, keyed as asked. */
static int
gated(struct out *w, const struct evk_event *ev)
{
	char key[EVK_TOPIC_MAX + 1 + EVK_EVENT_MAX + 1];
	size_t kl = 0;

	if (w->gate == NULL)
		return deliver(w, ev);
	if (w->o->key != KEY_EVENT) {
		memcpy(key, ev->topic, ev->topic_len);
		kl = ev->topic_len;
	}
	if (w->o->key != KEY_TOPIC) {
		key[kl++] = '\0';
		memcpy(key + kl, ev->event, ev->event_len);
		kl += ev->event_len;
	}
	int rv = evk_gate_offer(w->gate, key, kl, ev->seq, ev->line, ev->line_len,
				evk_mono_ms(), from_throttle, w);
	if (rv > 0)
		evk_die(EVK_EX_FAIL, "out of memory");
	return rv;
}

static void
print_stats(const struct out *w, const struct evk_sub *sub)
{
	uint64_t dropped = (w->gate ? evk_gate_dropped(w->gate) : 0) +
			   (w->latest ? evk_gate_dropped(w->latest) : 0);
	uint64_t pending = (w->gate ? evk_gate_pending(w->gate) : 0) +
			   (w->latest ? evk_gate_pending(w->latest) : 0);
	fprintf(stderr,
		"{\"received\":%llu,\"filtered\":%llu,\"printed\":%llu,"
		"\"throttled\":%llu,\"pending\":%llu,\"batches\":%llu,"
		"\"refilled\":%llu,\"gaps\":%llu}\n",
		(unsigned long long)w->received, (unsigned long long)w->filtered,
		(unsigned long long)w->printed, (unsigned long long)dropped,
		(unsigned long long)pending, (unsigned long long)w->batches,
		(unsigned long long)(sub ? evk_sub_refilled(sub) : 0),
		(unsigned long long)w->gaps);
}

/* True when stdout is a pipe whose reader has gone: noticed while idle,
 * so that `evsub ... | head -1` ends without waiting for another event. */
static bool
reader_gone(void)
{
	struct pollfd pfd = { .fd = STDOUT_FILENO, .events = 0 };
	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
}

/* The subscription's state in the main loop: the output, where the replay
 * ends (seq at subscription) and how the loop ends. */
struct run {
	struct out w;
	struct evk_sub *sub;
	const char *url;
	uint64_t replay_end;
	bool snapshot_done; /* --snapshot: seq replay_end went by */
	int status;
};

/* Subscribes from o->since, exiting with the SPEC's status when no hub
 * answers, then creates the ready file. */
static struct evk_sub *
subscribe(const struct opts *o, const char *url)
{
	struct evk_sub *sub;
	int rv;

	/* The bus filters by the patterns where it can (--latest and
	 * --snapshot see every event, to notice the end of the replay). */
	bool all = o->latest || o->snapshot;
	if ((rv = evk_sub_open_match(&sub, url, o->since, all ? NULL : o->patterns,
				     all ? 0 : o->npatterns)) == EVK_EPERM ||
	    (rv != EVK_OK && evk_bus_why()))
		evk_die_hub(url, rv);
	if (rv != EVK_OK)
		evk_die(rv == EVK_EUNAVAIL || rv == EVK_ECLOSED || rv == EVK_ETIMEDOUT
				? EVK_EX_UNAVAILABLE
				: evk_err_exit(rv),
			"no hub at '%s': %s", url, evk_strerror(rv));
	if (o->ready_file && evk_ready_file(o->ready_file) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot create ready file '%s': %s", o->ready_file,
			strerror(errno));
	return sub;
}

/* The template and the gates asked for; --latest holds the replay (seq up
 * to the head at subscription) when there is one. */
static void
out_init(struct out *w, const struct opts *o, uint64_t replay_end)
{
	const char *fwhy;

	if (o->template && (w->fmt = evk_fmt_new(o->template, &fwhy)) == NULL)
		evk_usage_die("bad template '%s': %s", o->template, fwhy);
	if ((o->throttle_ms &&
	     !(w->gate = evk_gate_new(EVK_GATE_THROTTLE, o->throttle_ms, EVK_GATE_MAX_KEYS,
				      EVK_GATE_MAX_BYTES))) ||
	    (o->debounce_ms &&
	     !(w->gate = evk_gate_new(EVK_GATE_DEBOUNCE, o->debounce_ms, EVK_GATE_MAX_KEYS,
				      EVK_GATE_MAX_BYTES))))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (o->latest && (uint64_t)o->since < replay_end &&
	    !(w->latest = evk_gate_new(EVK_GATE_LATEST, 0, EVK_GATE_MAX_KEYS,
				       EVK_GATE_MAX_BYTES)))
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* How long the loop may wait for the next event: at most 200 ms, to notice
 * signals, and not past the -W deadline, the gate's next due key or the
 * batch's end; a gate and a batch that are due go out first. Returns -1
 * once the deadline (-1: none) has passed. */
static long long
next_wait(struct out *w, long long now, long long deadline)
{
	long long wait = 200;

	if (deadline >= 0) {
		if (deadline - now <= 0)
			return -1;
		if (deadline - now < wait)
			wait = deadline - now;
	}
	if (w->gate) {
		if (evk_gate_tick(w->gate, now, from_throttle, w) > 0)
			evk_die(EVK_EX_FAIL, "out of memory");
		long long due = evk_gate_next_due(w->gate);
		if (due >= 0 && due - now < wait)
			wait = due > now ? due - now : 0;
	}
	if (w->batch_n && w->o->batch_ms) {
		if (w->batch_due <= now)
			batch_flush(w);
		else if (w->batch_due - now < wait)
			wait = w->batch_due - now;
	}
	return wait;
}

/* Flushes stdout once nothing more is buffered to print. False when the
 * loop must end: the reader has gone (a clean end) or the write failed. */
static bool
flush_when_idle(struct run *r)
{
	if (!r->w.dirty || evk_sub_buffered(r->sub))
		return true;
	r->w.dirty = false;
	if (fflush(stdout) == 0)
		return true;
	if (errno != EPIPE) {
		evk_warn("writing stdout: %s", strerror(errno));
		r->status = EVK_EX_IOERR;
	}
	return false;
}

/* A gap in the hub's log: said on stderr, unless --snapshot is past it. */
static void
on_gap(struct run *r)
{
	uint64_t gap_from, gap_to;

	r->w.gaps++;
	evk_sub_gap(r->sub, &gap_from, &gap_to);
	if (r->w.o->snapshot && gap_from > r->replay_end) {
		r->snapshot_done = true; /* past the snapshot: not ours */
		return;
	}
	evk_warn("%s", evk_sub_gap_text(r->sub));
	if (r->w.o->snapshot && gap_to >= r->replay_end)
		r->snapshot_done = true;
}

/* The subscription ended with rv: said on stderr, the exit status. */
static int
lost_hub(const struct run *r, int rv)
{
	if (evk_sub_why(r->sub)) {
		evk_warn("the hub at '%s' failed: %s", r->url, evk_sub_why(r->sub));
		return evk_err_exit(rv);
	}
	evk_warn("lost the hub at '%s': %s", r->url, evk_strerror(rv));
	return EVK_EX_UNAVAILABLE;
}

/* --latest's replay is over: the newest of each topic, then live. */
static void
latest_end(struct out *w)
{
	evk_gate_flush(w->latest, from_latest, w);
	evk_gate_free(w->latest);
	w->latest = NULL;
}

/* One event from the hub: filtered, then held by --latest during the
 * replay or passed on through the gates. */
static void
on_event(struct run *r, const struct evk_event *ev, long long now)
{
	struct out *w = &r->w;

	if (w->o->snapshot && ev->seq > r->replay_end) {
		r->snapshot_done = true; /* published after the start */
		return;
	}
	if (w->latest && ev->seq > r->replay_end) {
		latest_end(w); /* caught up */
		if (w->done)
			return;
	}
	if (!wanted(w->o, ev)) {
		w->filtered++;
	} else {
		w->received++;
		if (w->latest) {
			if (evk_gate_offer(w->latest, ev->topic, ev->topic_len, ev->seq,
					   ev->line, ev->line_len, now, from_latest, w) > 0)
				evk_die(EVK_EX_FAIL, "out of memory");
		} else {
			gated(w, ev);
		}
	}
	if (w->latest && ev->seq >= r->replay_end)
		latest_end(w);
	if (w->o->snapshot && ev->seq >= r->replay_end)
		r->snapshot_done = true;
}

/* Stopped (signal or -W): what the gates hold is still delivered, as a
 * throttle's last event always is; then the partial batch, the figures,
 * stdout closed and the subscription. Returns the exit status. */
static int
finish(struct run *r)
{
	struct out *w = &r->w;

	if (!w->done && (stopping || r->status == 0 || r->status == EVK_EX_TIMEOUT)) {
		if (w->latest)
			evk_gate_flush(w->latest, from_latest, w);
		if (w->gate)
			evk_gate_flush(w->gate, from_throttle, w);
	}
	batch_flush(w);
	if (w->o->stats)
		print_stats(w, r->sub);
	evk_gate_free(w->latest);
	evk_gate_free(w->gate);
	evk_fmt_free(w->fmt);
	evk_buf_release(&w->text);
	evk_buf_release(&w->batch);
	/* Output first: a reader waiting for it need not wait for the close. */
	if (fclose(stdout) != 0 && errno != EPIPE && r->status == 0)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	evk_sub_close(r->sub);
	return r->status;
}

int
main(int argc, char **argv)
{
	struct opts o = { .since = EVK_SINCE_LIVE, .timeout_s = -1 };
	struct evk_event ev;
	char url[EVK_URL_MAX];
	const char *why;
	int rv;

	evk_set_progname(argv[0]);
	parse_args(&o, argc, argv);
	if (evk_bus_resolve(o.bus, url, sizeof(url), &why) != EVK_OK)
		evk_usage_die("bad bus address: %s", why);

	evk_signals_init(&stopping, false);

	long long deadline = o.timeout_s >= 0 ? evk_mono_ms() + (long long)(o.timeout_s * 1000) : -1;
	struct run r = { .w = { .o = &o, .text = EVK_BUF_INIT(0),
				.batch = EVK_BUF_INIT(BATCH_BYTES_MAX + EVK_MAX_LINE_DEFAULT) },
			 .url = url };
	r.sub = subscribe(&o, url);

	static char outbuf[64 * 1024];
	if (setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf)) != 0)
		evk_die(EVK_EX_FAIL, "cannot buffer stdout");

	r.replay_end = evk_sub_start_head(r.sub);
	out_init(&r.w, &o, r.replay_end);
	evk_signal_catch(SIGUSR1, on_stats, 0);
	/* --snapshot: done at once when the replay is empty. */
	r.snapshot_done = o.snapshot && (uint64_t)o.since >= r.replay_end;

	while (!stopping && !r.w.done && !r.snapshot_done) {
		long long now = evk_mono_ms();
		long long wait = next_wait(&r.w, now, deadline);
		if (wait < 0) {
			r.status = o.count || o.until ? EVK_EX_TIMEOUT : 0;
			break;
		}
		if (stats_wanted) {
			stats_wanted = 0;
			print_stats(&r.w, r.sub);
		}
		if (r.w.done || !flush_when_idle(&r))
			break;
		rv = evk_sub_next(r.sub, &ev, (int)wait);
		if (rv == EVK_ETIMEDOUT) {
			if (reader_gone())
				break;
		} else if (rv == EVK_EGAP) {
			on_gap(&r);
		} else if (rv != EVK_OK) {
			r.status = lost_hub(&r, rv);
			break;
		} else {
			on_event(&r, &ev, now);
		}
	}
	return finish(&r);
}
