/* lib/bus_conn.c: the nng client's addresses, its connections to the
 * hub (REQ sockets, requests, closing without hanging) and the status
 * request. Publishing is in lib/bus_pub.c, subscribing in lib/bus_sub.c. */
#include "bus_nng.h" /* its names: evk_nng_*, picked by lib/bus_pick.c */
#include "evkit/bus.h"

#include "evkit/err.h"
#include "evkit/limits.h"
#include "evkit/proto.h"
#include "evkit/tls.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- addresses ---- */

/* Creates dir with mode 0700, or checks that an existing one is ours and
 * private. */
static int
private_dir(const char *dir, const char **why)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		*why = "cannot create the bus directory";
		return EVK_EINVAL;
	}
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		*why = "the bus directory is not a directory";
		return EVK_EINVAL;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		*why = "the bus directory is not private (owner or mode)";
		return EVK_EINVAL;
	}
	return EVK_OK;
}

int
evk_bus_resolve(const char *opt, char *url, size_t n, const char **why)
{
	const char *env = getenv("EVBUS_URL");
	const char *rt = getenv("XDG_RUNTIME_DIR");
	char dir[EVK_URL_MAX];
	const char *dummy;
	int rv;

	if (why == NULL)
		why = &dummy;
	*why = "address too long";
	if (opt == NULL && env != NULL && *env != '\0')
		opt = env;
	if (opt != NULL) {
		if (strncmp(opt, "ipc://", 6) != 0 && strncmp(opt, "tcp://", 6) != 0 &&
		    strncmp(opt, "inproc://", 9) != 0 && !evk_tls_url(opt)) {
			*why = "address must start with ipc://, tcp://, tls+tcp://, inproc:// or nats://";
			return EVK_EINVAL;
		}
		if (strlen(opt) + 5 >= n)
			return EVK_EINVAL;
		strcpy(url, opt);
		return EVK_OK;
	}
	if (rt != NULL && *rt == '/') {
		if ((size_t)snprintf(dir, sizeof(dir), "%s/evkit", rt) >= sizeof(dir))
			return EVK_EINVAL;
	} else {
		snprintf(dir, sizeof(dir), "/tmp/evkit-%u", (unsigned)geteuid());
	}
	if ((rv = private_dir(dir, why)) != EVK_OK)
		return rv;
	if ((size_t)snprintf(url, n, "ipc://%s/bus", dir) >= n - 5)
		return EVK_EINVAL;
	return EVK_OK;
}

int
evk_bus_fanout_url(const char *url, char *out, size_t n)
{
	if (strncmp(url, "tcp://", 6) == 0 || evk_tls_url(url)) {
		const char *colon = strrchr(url, ':');
		char *end;
		long port = colon ? strtol(colon + 1, &end, 10) : -1;
		if (colon == NULL || colon < strstr(url, "://") + 3 || *end != '\0' || port <= 0 ||
		    port >= 65535)
			return EVK_EINVAL;
		if ((size_t)snprintf(out, n, "%.*s:%ld", (int)(colon - url), url,
				     port + 1) >= n)
			return EVK_EINVAL;
		return EVK_OK;
	}
	if ((size_t)snprintf(out, n, "%s.pub", url) >= n)
		return EVK_EINVAL;
	return EVK_OK;
}

/* ---- closing without hanging (evkit/nngclose.h) ----
 *
 * nng 1.5.2's nng_close can wait forever for a connection's teardown
 * (nanomsg/nng#1543, fixed in later nng); here it happened about once in
 * 2,000 evsub exits, in the closing of the subscriber socket. So sockets
 * are closed on a thread of their own, waited for up to CLOSE_WAIT_MS;
 * past that they are left closing (the exit of the process ends it), and
 * whatever nng may still call back into stays allocated. */

#define CLOSE_WAIT_MS 2000

struct closer {
	nng_mtx *mu;
	nng_cv *cv;
	nng_socket socks[2];
	int n;
	int refs; /* the waiter's and the closing thread's */
	bool done;
};

static void
closer_unref(struct closer *c)
{
	nng_mtx_lock(c->mu);
	bool last = --c->refs == 0;
	nng_mtx_unlock(c->mu);
	if (last) {
		nng_cv_free(c->cv);
		nng_mtx_free(c->mu);
		free(c);
	}
}

/* Closing threads not yet done: once nng is stuck, they may never be. */
#define CLOSERS_MAX 16
static _Atomic int closers;

static void *
closer_run(void *arg)
{
	struct closer *c = arg;

	for (int i = 0; i < c->n; i++)
		nng_close(c->socks[i]);
	nng_mtx_lock(c->mu);
	c->done = true;
	nng_cv_wake(c->cv);
	nng_mtx_unlock(c->mu);
	closer_unref(c);
	closers--;
	return NULL;
}

/* Closes n (1 or 2) sockets. False when they were still closing after
 * CLOSE_WAIT_MS: then nng may still run their callbacks. Once that
 * happened, nng's reaper is likely stuck for good (nanomsg/nng#1616), so
 * later closes are started but not waited for (false), up to CLOSERS_MAX
 * such threads at a time (past it, sockets are left open). Without memory or
 * a thread the sockets are closed here, waiting as long as it takes
 * (left alone once nng is stuck). The thread is a detached pthread: nng's
 * own threads can only be joined. */
bool
evk_nng_close_sockets(const nng_socket *socks, int n)
{
	static _Atomic bool wedged;
	bool wait = !wedged;
	struct closer *c;
	pthread_t t;

	/* Stuck closing threads are capped; past that, sockets stay open.
	 * The count goes up here, down when a thread ends or is not made. */
	if (atomic_fetch_add(&closers, 1) >= CLOSERS_MAX && !wait) {
		closers--;
		return false;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto fallback;
	c->n = n;
	c->refs = 2;
	memcpy(c->socks, socks, (size_t)n * sizeof(*socks));
	if (nng_mtx_alloc(&c->mu) != 0)
		goto free_c;
	if (nng_cv_alloc(&c->cv, c->mu) != 0)
		goto free_mu;
	if (pthread_create(&t, NULL, closer_run, c) != 0)
		goto free_cv;
	pthread_detach(t);
	if (!wait) {
		closer_unref(c);
		return false;
	}
	nng_time until = nng_clock() + CLOSE_WAIT_MS;
	nng_mtx_lock(c->mu);
	while (!c->done && nng_cv_until(c->cv, until) != NNG_ETIMEDOUT)
		;
	bool done = c->done;
	nng_mtx_unlock(c->mu);
	closer_unref(c);
	if (!done)
		wedged = true;
	return done;

free_cv:
	nng_cv_free(c->cv);
free_mu:
	nng_mtx_free(c->mu);
free_c:
	free(c);
fallback:
	closers--;
	if (!wait)
		return false;
	for (int i = 0; i < n; i++)
		nng_close(socks[i]);
	return true;
}

/* Maps an nng error to ours. */
int
evk_nng_err(int rv)
{
	switch (rv) {
	case 0: return EVK_OK;
	case NNG_ENOMEM: return EVK_ENOMEM;
	case NNG_ETIMEDOUT: return EVK_ETIMEDOUT;
	case NNG_ECONNREFUSED:
	case NNG_ENOENT:
	case NNG_EADDRINVAL:
	case NNG_EUNREACHABLE: return EVK_EUNAVAIL;
	case NNG_EPERM:
	case NNG_EPEERAUTH: /* TLS: a certificate refused, either side */
	case NNG_ECRYPTO: return EVK_EPERM;
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_ECLOSED: return EVK_ECLOSED;
	case NNG_EINVAL: return EVK_EINVAL;
	default: return EVK_EIO;
	}
}

/* An 'E' or 'F' reply's error code, its text copied to why[0..WHY_MAX);
 * EVK_EPROTO (and an empty why) for anything else. */
int
evk_nng_refusal(const void *b, size_t n, char *why)
{
	char class;
	const char *text;
	size_t len;

	why[0] = '\0';
	if (!evk_refusal_get(b, n, &class, &text, &len))
		return EVK_EPROTO;
	snprintf(why, WHY_MAX, "%.*s", (int)(len < WHY_MAX ? len : WHY_MAX - 1), text);
	return class == 0 ? EVK_EINVAL : class == EVK_FAIL_TEMP ? EVK_EAGAIN : EVK_EIO;
}

/* Opens a REQ socket to the hub: no resend (a lost hub fails the request
 * instead of publishing it twice), large frames allowed. */
int
evk_nng_req_open(nng_socket *s, const char *url)
{
	int rv;

	if ((rv = nng_req0_open(s)) != 0)
		return evk_nng_err(rv);
	if ((rv = nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME,
				    NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, EVK_FRAME_MAX)) != 0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, EVK_ACK_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, EVK_ACK_TIMEOUT_MS)) != 0 ||
	    (rv = evk_tls_dial(*s, url, 0)) != 0) {
		nng_close(*s);
		return evk_nng_err(rv) == EVK_EIO ? EVK_EUNAVAIL : evk_nng_err(rv);
	}
	return EVK_OK;
}

/* Sends one request and waits for its reply. */
int
evk_nng_request(nng_socket s, nng_msg *req, nng_msg **reply)
{
	int rv = nng_sendmsg(s, req, 0);
	if (rv != 0) {
		nng_msg_free(req);
		return evk_nng_err(rv);
	}
	if ((rv = nng_recvmsg(s, reply, 0)) != 0)
		return evk_nng_err(rv);
	return EVK_OK;
}

/* ---- status ---- */


int
evk_bus_status(const char *url, char **json)
{
	nng_socket s;
	nng_msg *req, *reply;
	int rv = evk_nng_req_open(&s, url);

	if (rv != EVK_OK)
		return rv;
	if (nng_msg_alloc(&req, 1) != 0) {
		evk_nng_close_sockets(&s, 1);
		return EVK_ENOMEM;
	}
	*(char *)nng_msg_body(req) = EVK_MSG_STATUS;
	if ((rv = evk_nng_request(s, req, &reply)) == EVK_OK) {
		const char *text;
		size_t len;
		char why[WHY_MAX];
		if (!evk_status_get(nng_msg_body(reply), nng_msg_len(reply), &text, &len)) {
			rv = evk_nng_refusal(nng_msg_body(reply), nng_msg_len(reply), why);
		} else if ((*json = malloc(len + 1)) == NULL) {
			rv = EVK_ENOMEM;
		} else {
			memcpy(*json, text, len);
			(*json)[len] = '\0';
		}
		nng_msg_free(reply);
	}
	evk_nng_close_sockets(&s, 1);
	return rv;
}
