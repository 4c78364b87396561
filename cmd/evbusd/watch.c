/* evbusd's watchdog: a hub that no longer serves restarts itself. */
#include "evbusd.h"

#include "evkit/err.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* nng 1.5.2 can stop accepting connections for good (see
 * evk_nng_workaround) and has other poller and close bugs. A thread asks
 * the hub for its status every WATCH_EVERY_MS through its own listening
 * address, as a new client; after WATCH_FAILURES failed probes in a row
 * while the main loop kept turning, the hub says so (stderr and syslog)
 * and re-executes itself with the same arguments: same pid, same store
 * and pidfile. Every acknowledged event was committed before its ack, so
 * none is lost; clients in the middle of a request see the connection
 * drop, as with any restart, and reconnect. */
#define WATCH_EVERY_MS 500
#define WATCH_TIMEOUT_MS 1000
#define WATCH_FAILURES 3
#define RESTARTED_ENV "EVBUSD_RESTARTED" /* set across the re-exec */

static void
hub_wedged(void *arg, const char *url, int why)
{
	struct hub *h = arg;
	/* A hub told to stop (its loop no longer answers, so a probe
	 * straddling the stop times out) is not restarted: the new hub
	 * would not know of the SIGTERM and serve on under the same pid. */
	if (stopping)
		return;
	evk_warn("the hub stopped answering at '%s' (%s): restarting it", url,
		 evk_strerror(why));
	syslog(LOG_WARNING, "hub at '%s' stopped answering (%s): re-executing pid %ld",
	       url, evk_strerror(why), (long)getpid());
	/* The mask survives execv: a signal blocked in this thread would stay
	 * blocked in the new hub, which then could not be stopped. */
	sigset_t none;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	/* Looked at again last: a SIGTERM may have come meanwhile (also to
	 * this thread, now that it takes signals). */
	if (stopping)
		return;
	if (setenv(RESTARTED_ENV, "1", 1) == 0)
		execv("/proc/self/exe", h->argv);
	evk_warn("cannot restart: %s", strerror(errno));
	syslog(LOG_ERR, "cannot re-execute: %s", strerror(errno));
}

/* True (once) in a hub that its watchdog re-executed. */
bool
hub_was_restarted(void)
{
	bool restarted = getenv(RESTARTED_ENV) != NULL;
	unsetenv(RESTARTED_ENV);
	if (restarted) {
		evk_warn("restarted by its watchdog");
		syslog(LOG_NOTICE, "restarted by its watchdog, pid %ld", (long)getpid());
	}
	return restarted;
}

struct evk_watchdog *
hub_watch(struct hub *h)
{
	struct evk_watchdog *w = NULL;
	if (evk_watchdog_start(&w, h->url, &h->loops, WATCH_EVERY_MS, WATCH_TIMEOUT_MS,
			       WATCH_FAILURES, hub_wedged, h) != EVK_OK)
		evk_warn("cannot start the watchdog: the hub will not notice if it stops"
			 " answering");
	return w;
}
