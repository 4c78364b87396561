/* evbusd — the hub: accepts events, numbers them, keeps a log, fans them
 * out, refills what subscribers missed. This file holds the command line,
 * start-up and shutdown; the parts are named in evbusd.h. */
#include "evbusd.h"

#include "evkit/daemon.h"
#include "evkit/err.h"
#include "evkit/flags.h"
#include "evkit/opts.h"
#include "evkit/limits.h"
#include "evkit/nngclose.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* What the command line asks for, beyond the hub's own settings. */
struct evbusd_opts {
	const char *bus, *store, *pidfile, *logfile;
	bool memory, daemonize, status;
};

#define STR_(x) #x
#define STR(x) STR_(x)

/* The options, in the order --help lists them. */
static const struct evk_flag flags[] = {
	{ "bus", 'b', 0, "URL", "listen here (default $EVBUS_URL, else a private ipc path)", 0 },
	{ "store", 's', 0, "FILE", "the event log (default $XDG_STATE_HOME/evkit/bus.db)", 0 },
	{ "memory", 'm', 0, NULL, "keep the log in memory only (lost when the hub stops)", 0 },
	{ "retain", 'r', 0, "N", "events the log keeps (default " STR(EVK_RETAIN_DEFAULT) ")",
	  0 },
	{ "synchronous", 'Y', 0, "normal|full",
	  "normal (default): an acknowledged event survives the\n"
	  "hub's crash; full: also the machine's (fsync per commit)", 0 },
	{ "daemon", 'd', 0, NULL, "go to the background once accepting connections", 0 },
	{ "log", 'L', 0, "FILE",
	  "append messages to FILE, timestamped (with --daemon and\n"
	  "no --log, messages go to syslog)", 0 },
	{ "quiet", 'q', EVK_FLAG_SHORT, NULL, "no warnings; errors only", 0 },
	{ "verbose", 'v', EVK_FLAG_SHORT, NULL, "also say what the hub does (listening, stopping)",
	  0 },
	{ "pidfile", 'p', 0, "FILE", "write the hub's pid to FILE", 0 },
	{ "status", 'S', 0, NULL, "print the running hub's figures as JSON", 0 },
	{ "insecure", 'I', 0, NULL, "allow a plain tcp:// address beyond loopback", 0 },
	EVK_FLAGS_TLS,
	EVK_FLAGS_HELP,
};

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: evbusd [--bus URL] [--store FILE | --memory] [--retain N]\n"
		"              [--synchronous normal|full]\n"
		"              [--daemon] [--pidfile FILE] [--log FILE] [-q|-v] [--insecure]\n"
		"              [--tls-cert FILE --tls-key FILE --tls-ca FILE]\n"
		"       evbusd --status [--bus URL]\n"
		"\n"
		"The evkit hub: numbers events, keeps them in a SQLite log, fans\n"
		"them out to subscribers and refills what a slow one missed.\n"
		"\n");
	evk_flags_print(out, flags, EVK_NFLAGS(flags), 0, 15);
	fprintf(out, "  --help, --version\n");
	exit(status);
}

/* Reads the options into o and h (--retain, --insecure); exits 2 on bad
 * usage. */
static void
parse_args(struct hub *h, struct evbusd_opts *o, int argc, char **argv)
{
	struct evk_getopt g;
	int c;

	evk_flags_getopt(&g, "evbusd " EVK_VERSION, usage, flags, EVK_NFLAGS(flags), ":");
	while ((c = evk_flags_next(&g, argc, argv)) != -1) {
		switch (c) {
		case 'b': o->bus = optarg; break;
		case 's': o->store = optarg; break;
		case 'm': o->memory = true; break;
		case 'r': h->retain = (uint64_t)evk_flag_int("--retain", optarg, 1, INT64_MAX); break;
		case 'Y':
			if (strcmp(optarg, "full") != 0 && strcmp(optarg, "normal") != 0)
				evk_usage_die("--synchronous takes normal or full, not '%s'", optarg);
			h->sync_full = strcmp(optarg, "full") == 0;
			break;
		case 'd': o->daemonize = true; break;
		case 'p': o->pidfile = optarg; break;
		case 'L': o->logfile = optarg; break;
		case 'q': evk_log_level(EVK_LOG_QUIET); break;
		case 'v': evk_log_level(EVK_LOG_VERBOSE); break;
		case 'S': o->status = true; break;
		case 'I': h->insecure = true; break;
		}
	}
	if (optind < argc)
		evk_usage_die("unexpected argument '%s'", argv[optind]);
	if (o->memory && o->store)
		evk_usage_die("--store and --memory exclude each other");
	if (o->store && *o->store == '\0')
		evk_usage_die("--store wants a file name");
}

/* evbusd --status: prints the running hub's figures; an exit status. */
static int
print_status(const char *url)
{
	char *json;
	int rv = evk_bus_status(url, &json);
	if (rv == EVK_EPERM || (rv != EVK_OK && evk_bus_why()))
		evk_die_hub(url, rv);
	if (rv != EVK_OK)
		evk_die(evk_err_exit(rv) == EVK_EX_DATAERR ? EVK_EX_UNAVAILABLE : evk_err_exit(rv),
			"no hub at '%s': %s", url, evk_strerror(rv));
	printf("%s\n", json);
	free(json);
	return fclose(stdout) == 0 ? 0 : EVK_EX_IOERR;
}

/* Works out the fan-out address and the store, refuses an exposed
 * listener, and goes to the background when asked (its log first). */
static void
hub_configure(struct hub *h, struct evbusd_opts *o, bool restarted)
{
	static char default_store[4096];
	const char *store = o->store;

	if (evk_bus_fanout_url(h->url, h->fanout, sizeof(h->fanout)) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address '%s'%s", h->url,
			strncmp(h->url, "nats://", 7) == 0
				? ": evbusd listens on ipc:// or tcp://; nats:// is a nats-server's"
				: "");
	if (!o->memory &&
	    !(store = evk_state_file(store, "bus.db", default_store, sizeof(default_store))))
		evk_usage_die("no --store given and no HOME or XDG_STATE_HOME");
	h->store = o->memory ? NULL : store;
	hub_check_exposure(h);
	/* A hub its watchdog restarted is detached already: its log goes to
	 * the file at once, or on to syslog. */
	if (o->logfile && evk_daemon_log(o->logfile, o->daemonize && !restarted) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot open the log '%s': %s", o->logfile,
			strerror(errno));
	if (!o->logfile && o->daemonize && restarted)
		evk_log_syslog();
	if (o->daemonize && !restarted && evk_daemon_start() != EVK_OK)
		evk_die(EVK_EX_FAIL, "cannot go to the background");
}

/* Opens the store and listens; then the hub is ready. */
static void
hub_start(struct hub *h, const char *pidfile)
{
	const char *why;

	h->started = time(NULL);
	hub_private_files();
	hub_refuse_second(h);
	hub_private_store(h->store);
	hub_open_store(h, h->store);
	if (h->store && (h->ckpt = evk_checkpointer_start(h->db, h->store, &why)) == NULL)
		evk_warn("checkpoints stay in the writer: %s", why);
	hub_listen(h);
	if (pidfile && evk_pidfile_write(pidfile) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot write pid file '%s'", pidfile);
	evk_daemon_ready(0);
	evk_info("listening on '%s' and '%s'; store %s, retaining %llu events", h->url,
		 h->fanout, h->store ? h->store : "in memory", (unsigned long long)h->retain);
}

/* Closes the sockets, then the store. Closing is given 2 s: nng 1.5.2
 * can hang in it (evkit/nngclose.h), and did here after a SIGTERM while a
 * publisher streamed, leaving the hub running for good. Past the 2 s the
 * hub stops anyway, keeping what the pipe callbacks use (h's locks and
 * pipe lists; h is static in main); no callback touches the store. */
static void
hub_stop(struct hub *h)
{
	/* Every ack was sent after its commit; give the pipes a moment to
	 * carry the last ones out before closing. */
	nng_msleep(20);
	if (!evk_nng_close_sockets((nng_socket[]){ h->rep, h->pub }, 2)) {
		evk_warn("the sockets were still closing after 2 s: stopping without them");
	} else {
		nng_mtx_free(h->refused_mtx);
		nng_mtx_free(h->clients.mtx);
		nng_mtx_free(h->subscribers.mtx);
		free(h->clients.ids);
		free(h->subscribers.ids);
	}
	hub_close_store(h);
}

int
main(int argc, char **argv)
{
	/* Static: sockets still closing at the end (hub_stop) may call back
	 * into h while the process exits. */
	static struct hub h = { .retain = EVK_RETAIN_DEFAULT };
	struct evbusd_opts o = { 0 };
	const char *why;

	h.argv = argv;
	evk_set_progname(argv[0]);
	evk_nng_workaround();
	openlog("evbusd", LOG_PID, LOG_DAEMON);
	bool restarted = hub_was_restarted();
	parse_args(&h, &o, argc, argv);
	h.row_events = h.retain / 16 < 1 ? 1 : h.retain / 16 > 64 ? 64 : (uint32_t)(h.retain / 16);
	if (evk_bus_resolve(o.bus, h.url, sizeof(h.url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address '%s': %s",
			o.bus ? o.bus : getenv("EVBUS_URL") ? getenv("EVBUS_URL") : "(default)", why);
	if (o.status)
		return print_status(h.url);
	hub_configure(&h, &o, restarted);

	evk_signals_init(&stopping, true);

	hub_start(&h, o.pidfile);
	h.watchdog = hub_watch(&h);
	hub_run(&h);
	evk_info("stopping");
	evk_watchdog_stop(h.watchdog);
	hub_stop(&h);
	if (o.pidfile)
		unlink(o.pidfile);
	return 0;
}
