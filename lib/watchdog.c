/* The hub's watchdog (see include/evkit/watchdog.h): a probe that talks
 * to the hub as a brand-new client would, a thread that runs it, and the
 * sendmsg() shim that keeps nng 1.5.2's listeners accepting. */
#include "evkit/watchdog.h"
#include "evkit/err.h"
#include "evkit/tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- the sendmsg() shim ---- */

static int workaround = -1; /* -1: not decided yet, then 0 or 1 */

void
evk_nng_workaround(void)
{
	const char *v = getenv("EVBUSD_NNG_WORKAROUND");
	__atomic_store_n(&workaround, !(v && strcmp(v, "0") == 0), __ATOMIC_RELAXED);
}

/* Interposes libc's sendmsg for the program that links this file (nng
 * calls it through the dynamic linker, which finds the program's own
 * first). Only the error code changes. */
ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
	static ssize_t (*real)(int, const struct msghdr *, int);
	ssize_t (*fn)(int, const struct msghdr *, int) =
		__atomic_load_n(&real, __ATOMIC_ACQUIRE);

	if (fn == NULL) {
		void *sym = dlsym(RTLD_NEXT, "sendmsg");
		if (sym == NULL) {
			errno = ENOSYS;
			return -1;
		}
		memcpy(&fn, &sym, sizeof(fn));
		__atomic_store_n(&real, fn, __ATOMIC_RELEASE);
	}
	ssize_t n = fn(fd, msg, flags);
	if (n < 0 && errno == EPIPE && __atomic_load_n(&workaround, __ATOMIC_RELAXED) != 0)
		errno = ECONNRESET;
	return n;
}

/* ---- the probe ---- */

#define SP_REQ 0x30 /* nng's protocol numbers: REQ v0 */
#define SP_REP 0x31 /* REP v0 */

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return EVK_ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return EVK_OK;
		if (rc < 0 && errno != EINTR)
			return EVK_EIO;
	}
}

/* Sends (out) or receives all n bytes of b before the deadline. */
static int
xfer_all(int fd, bool out, unsigned char *b, size_t n, int64_t deadline)
{
	while (n > 0) {
		ssize_t r = out ? send(fd, b, n, MSG_NOSIGNAL) : recv(fd, b, n, 0);
		if (r > 0) {
			b += r;
			n -= (size_t)r;
		} else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = wait_fd(fd, out ? POLLOUT : POLLIN, deadline);
			if (rc != EVK_OK)
				return rc;
		} else {
			return EVK_ECLOSED;
		}
	}
	return EVK_OK;
}

/* A non-blocking socket connected to url, or -1 with *err set. */
static int
dial(const char *url, bool *ipc, int64_t deadline, int *err)
{
	int fd = -1;

	*err = EVK_EUNAVAIL;
	if (strncmp(url, "ipc://", 6) == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		*ipc = true;
		if (strlen(url + 6) >= sizeof(sa.sun_path)) {
			*err = EVK_EINVAL;
			return -1;
		}
		memcpy(sa.sun_path, url + 6, strlen(url + 6));
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			/* A full backlog (EAGAIN) is a hub that does not accept. */
			*err = errno == EAGAIN ? EVK_ETIMEDOUT : EVK_EUNAVAIL;
			close(fd);
			return -1;
		}
		return fd;
	}
	if (strncmp(url, "tcp://", 6) != 0) {
		*err = EVK_EINVAL;
		return -1;
	}
	*ipc = false;
	char host[256];
	const char *hp = url + 6, *colon = strrchr(hp, ':');
	if (colon == NULL || (size_t)(colon - hp) >= sizeof(host)) {
		*err = EVK_EINVAL;
		return -1;
	}
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	/* A hub listening on every address answers on loopback. */
	const char *name = host;
	if (host[0] == '\0' || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
		name = "127.0.0.1";
	else if (strcmp(host, "[::]") == 0)
		name = "::1";
	else if (host[0] == '[' && colon - hp > 2) { /* [v6] */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	if (getaddrinfo(name, colon + 1, &hints, &ai) != 0 || ai == NULL)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		int e = 0;
		socklen_t len = sizeof(e);
		if (errno != EINPROGRESS ||
		    (*err = wait_fd(fd, POLLOUT, deadline)) != EVK_OK ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e != 0) {
			if (*err == EVK_OK)
				*err = EVK_EUNAVAIL;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

/* The probe of a tls+tcp:// hub: nng's own client with this process's
 * certificate (the hub's, which its CA signed). */
static int
probe_tls(const char *url, int timeout_ms)
{
	nng_socket s;
	nng_msg *m = NULL;
	int rv;

	if ((rv = nng_req0_open(&s)) != 0)
		return EVK_ENOMEM;
	if ((rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) == 0 &&
	    (rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms)) == 0 &&
	    (rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms)) == 0 &&
	    (rv = evk_tls_dial(s, url, NNG_FLAG_NONBLOCK)) == 0 &&
	    (rv = nng_msg_alloc(&m, 0)) == 0 && (rv = nng_msg_append(m, "S", 1)) == 0 &&
	    (rv = nng_sendmsg(s, m, 0)) == 0) {
		m = NULL;
		if ((rv = nng_recvmsg(s, &m, 0)) == 0 &&
		    (nng_msg_len(m) < 1 || *(char *)nng_msg_body(m) != 'S'))
			rv = NNG_EPROTO;
	}
	if (m)
		nng_msg_free(m);
	nng_close(s);
	switch (rv) {
	case 0: return EVK_OK;
	case NNG_ETIMEDOUT: return EVK_ETIMEDOUT;
	case NNG_EPEERAUTH:
	case NNG_ECRYPTO:
	case NNG_EPERM: return EVK_EPERM;
	case NNG_ECONNREFUSED: return EVK_EUNAVAIL;
	case NNG_EPROTO: return EVK_EPROTO;
	default: return EVK_ECLOSED;
	}
}

int
evk_hub_probe(const char *url, int timeout_ms)
{
	if (evk_tls_url(url))
		return probe_tls(url, timeout_ms);
	int64_t deadline = now_ms() + timeout_ms;
	bool ipc = false;
	int rc, fd = dial(url, &ipc, deadline, &rc);
	if (fd < 0)
		return rc;

	/* SP header: "\0SP\0", our protocol, two zero bytes. */
	unsigned char hdr[8] = { 0, 'S', 'P', 0, 0, SP_REQ, 0, 0 }, peer[8];
	/* One request: ipc's message type 1 (ipc only), the length, then
	 * the REQ header (a request id with its top bit set) and 'S'. */
	unsigned char req[14] = { 1, 0, 0, 0, 0, 0, 0, 0, 5, 0x80, 0, 0, 1, 'S' };
	unsigned char rep[14];
	size_t skip = ipc ? 0 : 1, head = ipc ? 9 : 8;

	if ((rc = xfer_all(fd, true, hdr, sizeof(hdr), deadline)) == EVK_OK &&
	    (rc = xfer_all(fd, false, peer, sizeof(peer), deadline)) == EVK_OK &&
	    (memcmp(peer, "\0SP\0", 4) != 0 || peer[4] != 0 || peer[5] != SP_REP))
		rc = EVK_EPROTO;
	if (rc == EVK_OK)
		rc = xfer_all(fd, true, req + skip, sizeof(req) - skip, deadline);
	/* The reply: its frame header, the request id back, then 'S'. */
	if (rc == EVK_OK)
		rc = xfer_all(fd, false, rep, head + 5, deadline);
	if (rc == EVK_OK && (memcmp(rep + head, req + 9, 4) != 0 || rep[head + 4] != 'S'))
		rc = EVK_EPROTO;
	close(fd);
	return rc;
}

/* ---- the thread ---- */

struct evk_watchdog {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled to stop */
	bool stop;
	char url[512];
	const uint64_t *progress;
	int interval_ms, timeout_ms, failures;
	evk_wedged_fn on_wedged;
	void *arg;
	bool armed; /* a probe succeeded once */
};

/* Sleeps ms, or less when told to stop; false once stopping. */
static bool
pause_ms(struct evk_watchdog *w, int ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->stop && ms > 0 && pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT)
		;
	bool go_on = !w->stop;
	pthread_mutex_unlock(&w->mu);
	return go_on;
}

static void *
watch(void *arg)
{
	struct evk_watchdog *w = arg;
	int failed = 0;

	/* The first probe at once, the others every interval. */
	for (int wait = 0; pause_ms(w, wait); wait = w->interval_ms) {
		uint64_t before = __atomic_load_n(w->progress, __ATOMIC_RELAXED);
		int rc = evk_hub_probe(w->url, w->timeout_ms);
		if (rc == EVK_OK) {
			__atomic_store_n(&w->armed, true, __ATOMIC_RELAXED);
			failed = 0;
			continue;
		}
		if (!__atomic_load_n(&w->armed, __ATOMIC_RELAXED))
			continue; /* never answered: the probe itself may not work */
		if (__atomic_load_n(w->progress, __ATOMIC_RELAXED) == before)
			continue; /* the hub is busy (or stopped): not a verdict */
		if (rc != EVK_ETIMEDOUT && rc != EVK_ECLOSED && rc != EVK_EUNAVAIL)
			continue; /* answered, but not as asked: no restart cures that */
		if (++failed >= w->failures) {
			w->on_wedged(w->arg, w->url, rc);
			failed = 0;
		}
	}
	return NULL;
}

int
evk_watchdog_start(struct evk_watchdog **out, const char *url,
		   const uint64_t *progress, int interval_ms, int timeout_ms,
		   int failures, evk_wedged_fn on_wedged, void *arg)
{
	struct evk_watchdog *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (w == NULL)
		return EVK_ENOMEM;
	if (strlen(url) >= sizeof(w->url)) {
		free(w);
		return EVK_EINVAL;
	}
	strcpy(w->url, url);
	w->progress = progress;
	w->interval_ms = interval_ms;
	w->timeout_ms = timeout_ms;
	w->failures = failures;
	w->on_wedged = on_wedged;
	w->arg = arg;
	/* The raw probe of ipc:// and tcp:// needs nothing that could be
	 * wrong (a hub wedged before its first probe must be caught too);
	 * the tls+tcp:// probe needs the hub's certificate to pass as a
	 * client's, which only a success shows. */
	w->armed = !evk_tls_url(url);
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0) {
		free(w);
		return EVK_ENOMEM;
	}
	/* pause_ms counts on the monotonic clock: on another the waits
	 * would end at once and the probes never pause. */
	int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		free(w);
		return EVK_ENOMEM;
	}
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		pthread_cond_destroy(&w->cv);
		free(w);
		return EVK_ENOMEM;
	}
	if (pthread_create(&w->thread, NULL, watch, w) != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return EVK_ENOMEM;
	}
	*out = w;
	return EVK_OK;
}

bool
evk_watchdog_armed(const struct evk_watchdog *w)
{
	return w && __atomic_load_n(&w->armed, __ATOMIC_RELAXED);
}

void
evk_watchdog_stop(struct evk_watchdog *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
