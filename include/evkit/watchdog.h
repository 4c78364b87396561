/* The hub's watchdog: notices when evbusd no longer serves new clients
 * and says so, so that the hub can recover by itself. */
#ifndef EVKIT_WATCHDOG_H
#define EVKIT_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

/* Asks the hub at url (ipc://, tcp:// or tls+tcp://) for its status the
 * way a new client would: a fresh connection, the SP handshake, a status
 * request and its reply, all within timeout_ms (tls+tcp:// with this
 * process's certificate, see evkit/tls.h). EVK_OK when the hub answered,
 * EVK_ETIMEDOUT when it did not in time, EVK_EUNAVAIL when nothing
 * listens there, EVK_EPERM when TLS refused us, EVK_EINVAL for another
 * scheme. */
int evk_hub_probe(const char *url, int timeout_ms);

struct evk_watchdog;

/* Called from the watchdog's thread when the hub at url failed its probes
 * (why: the last probe's error) while its main loop kept turning. */
typedef void (*evk_wedged_fn)(void *arg, const char *url, int why);

/* Starts a thread that probes url every interval_ms (timeout_ms each)
 * and calls on_wedged after `failures` failed probes in a row, counting
 * a failure only when *progress (the hub's main-loop counter, updated
 * atomically) moved during the probe: a hub busy in one long batch is
 * slow, not wedged. The first probe runs at once. For a tls+tcp:// url
 * the watchdog only watches until one probe succeeds (a probe that cannot
 * work, the hub's certificate not being accepted as a client's, never
 * restarts the hub). */
int evk_watchdog_start(struct evk_watchdog **out, const char *url,
		       const uint64_t *progress, int interval_ms, int timeout_ms,
		       int failures, evk_wedged_fn on_wedged, void *arg);

/* True once a probe succeeded: from then on the watchdog acts. */
bool evk_watchdog_armed(const struct evk_watchdog *w);

/* Stops and frees the watchdog (NULL is fine). */
void evk_watchdog_stop(struct evk_watchdog *w);

/* nng 1.5.2 (Debian 12) stops accepting on a listener for good when a
 * client goes away during the SP handshake and the hub's send of its
 * header fails with EPIPE (upstream nanomsg/nng#1518, fixed in 1.6.0):
 * the EPIPE becomes NNG_ECLOSED, which the listener takes for its own
 * closing. A program that links this file gets a sendmsg() that reports
 * EPIPE as ECONNRESET, which nng handles as a remote condition and goes
 * on accepting. Off when EVBUSD_NNG_WORKAROUND=0 (for tests of the
 * watchdog). */
void evk_nng_workaround(void);

#endif
