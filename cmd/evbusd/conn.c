/* evbusd's connections: counted from nng's pipe callbacks, remembered when
 * a frame of theirs was refused, and the listeners, with who may connect. */
#include "evbusd.h"

#include "evkit/err.h"
#include "evkit/limits.h"
#include "evkit/tls.h"

#include <netdb.h>
#include <netinet/in.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/transport/ipc/ipc.h>
#include <stdlib.h>
#include <string.h>

/* Keeps set's ids up to date. Without memory for a new id, that
 * connection is not counted. */
static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct pipes *set = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	size_t lo = 0, hi;

	nng_mtx_lock(set->mtx);
	for (hi = set->n; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		if (set->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	bool known = lo < set->n && set->ids[lo] == id;
	if (ev == NNG_PIPE_EV_ADD_POST && !known) {
		if (set->n == set->cap) {
			size_t cap = set->cap ? set->cap * 2 : 64;
			uint32_t *ids = realloc(set->ids, cap * sizeof(*ids));
			if (ids == NULL)
				goto out;
			set->ids = ids;
			set->cap = cap;
		}
		memmove(set->ids + lo + 1, set->ids + lo, (set->n - lo) * sizeof(*set->ids));
		set->ids[lo] = id;
		set->n++;
	} else if (ev == NNG_PIPE_EV_REM_POST && known) {
		memmove(set->ids + lo, set->ids + lo + 1, (set->n - lo - 1) * sizeof(*set->ids));
		set->n--;
	}
out:
	nng_mtx_unlock(set->mtx);
}

uint64_t
pipes_count(struct pipes *set)
{
	nng_mtx_lock(set->mtx);
	size_t n = set->n;
	nng_mtx_unlock(set->mtx);
	return n;
}

bool
is_refused(struct hub *h, nng_pipe p)
{
	bool found = false;
	nng_mtx_lock(h->refused_mtx);
	for (int i = 0; i < h->n_refused && !found; i++)
		found = h->refused[i] == (uint32_t)nng_pipe_id(p);
	nng_mtx_unlock(h->refused_mtx);
	return found;
}

/* Remembers that a frame of p was refused, unless p already closed. When
 * the set is full the oldest entry goes: in practice a connection long
 * gone; were it alive and still sending, its next frame could be stored
 * past the refused one (it takes 256 refused live connections). */
void
refuse(struct hub *h, nng_pipe p)
{
	uint32_t id = (uint32_t)nng_pipe_id(p);
	bool known = false;
	nng_mtx_lock(h->refused_mtx);
	for (int i = 0; i < h->n_refused && !known; i++)
		known = h->refused[i] == id;
	for (unsigned i = 0; i < GONE_MAX && !known; i++) /* ids are never 0 */
		known = h->gone[i] == id;
	if (!known) {
		if (h->n_refused == REFUSED_MAX)
			memmove(h->refused, h->refused + 1,
				sizeof(h->refused[0]) * (REFUSED_MAX - 1));
		else
			h->n_refused++;
		h->refused[h->n_refused - 1] = id;
	}
	nng_mtx_unlock(h->refused_mtx);
}

/* A client's connection went: counted, and forgotten as refused. */
static void
client_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct hub *h = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	pipe_event(p, ev, &h->clients);
	if (ev != NNG_PIPE_EV_REM_POST)
		return;
	nng_mtx_lock(h->refused_mtx);
	for (int i = 0; i < h->n_refused; i++)
		if (h->refused[i] == id) {
			memmove(h->refused + i, h->refused + i + 1,
				sizeof(h->refused[0]) * (size_t)(h->n_refused - i - 1));
			h->n_refused--;
			break;
		}
	h->gone[h->n_gone++ % GONE_MAX] = id;
	nng_mtx_unlock(h->refused_mtx);
}

/* ---- who may connect: tls+tcp:// requires a client certificate signed
 * by the hub's CA; a plain tcp:// listener beyond loopback is refused
 * unless --insecure (anyone who reaches it could publish and read). */

/* True when every address host (of a tcp:// url) stands for is loopback. */
static bool
loopback_only(const char *url)
{
	char host[256];
	const char *hp = strstr(url, "://") + 3, *colon = strrchr(hp, ':');
	if (colon == NULL || (size_t)(colon - hp) >= sizeof(host))
		return false;
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	if (host[0] == '[' && colon - hp > 2) {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		return false; /* every interface */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0)
		return false;
	bool loop = ai != NULL;
	for (struct addrinfo *a = ai; a && loop; a = a->ai_next) {
		if (a->ai_family == AF_INET)
			loop = (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127;
		else if (a->ai_family == AF_INET6)
			loop = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
		else
			loop = false;
	}
	freeaddrinfo(ai);
	return loop;
}

/* Refuses a plain tcp:// url beyond loopback unless --insecure; called
 * before anything listens. */
void
hub_check_exposure(const struct hub *h)
{
	const char *url = h->url;

	if (strncmp(url, "tcp://", 6) != 0 || loopback_only(url))
		return;
	if (!h->insecure)
		evk_die(EVK_EX_USAGE,
			"refusing to listen on '%s' without TLS: anyone who can reach it could"
			" publish and read every event; use tls+tcp:// with --tls-cert,"
			" --tls-key and --tls-ca, a loopback address, or --insecure",
			url);
	evk_warn("warning: listening on '%s' without TLS or authentication (--insecure)",
		 url);
}

static void
hub_secure_listener(nng_listener l, const char *url)
{
	const char *why = NULL;
	int rv;

	if (!evk_tls_url(url))
		return;
	if ((rv = evk_tls_listener(l, &why)) != 0)
		evk_die(rv == NNG_ENOENT || rv == NNG_EPERM ? EVK_EX_IOERR : EVK_EX_USAGE,
			"cannot listen on '%s': %s", url, why ? why : nng_strerror(rv));
}

void
hub_listen(struct hub *h)
{
	nng_listener l;
	int rv;

	if ((rv = nng_mtx_alloc(&h->clients.mtx)) != 0 ||
	    (rv = nng_mtx_alloc(&h->subscribers.mtx)) != 0 ||
	    (rv = nng_rep0_open_raw(&h->rep)) != 0 || (rv = nng_pub0_open(&h->pub)) != 0)
		evk_die(EVK_EX_FAIL, "cannot open sockets: %s", nng_strerror(rv));
	if ((rv = nng_socket_set_size(h->rep, NNG_OPT_RECVMAXSZ, EVK_FRAME_MAX)) != 0 ||
	    (rv = nng_socket_set_int(h->pub, NNG_OPT_SENDBUF, EVK_SUB_QUEUE_FRAMES)) != 0 ||
	    (rv = nng_socket_set_int(h->rep, NNG_OPT_RECVBUF, BATCH_MSGS)) != 0 ||
	    (rv = nng_pipe_notify(h->pub, NNG_PIPE_EV_ADD_POST, pipe_event,
				  &h->subscribers)) != 0 ||
	    (rv = nng_pipe_notify(h->pub, NNG_PIPE_EV_REM_POST, pipe_event,
				  &h->subscribers)) != 0 ||
	    (rv = nng_mtx_alloc(&h->refused_mtx)) != 0 ||
	    (rv = nng_pipe_notify(h->rep, NNG_PIPE_EV_ADD_POST, client_event, h)) != 0 ||
	    (rv = nng_pipe_notify(h->rep, NNG_PIPE_EV_REM_POST, client_event, h)) != 0)
		evk_die(EVK_EX_FAIL, "cannot set up sockets: %s", nng_strerror(rv));

	const char *urls[2] = { h->url, h->fanout };
	nng_socket socks[2] = { h->rep, h->pub };
	for (int i = 0; i < 2; i++) {
		if ((rv = nng_listener_create(&l, socks[i], urls[i])) != 0)
			evk_die(EVK_EX_USAGE, "cannot listen on '%s': %s", urls[i],
				nng_strerror(rv));
		if (strncmp(urls[i], "ipc://", 6) == 0)
			nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
		hub_secure_listener(l, urls[i]);
		if ((rv = nng_listener_start(l, 0)) != 0)
			evk_die(EVK_EX_UNAVAILABLE, "cannot listen on '%s': %s%s",
				urls[i], nng_strerror(rv),
				rv == NNG_EADDRINUSE ? " (is another evbusd running?)" : "");
	}
}
