#include "bus_nng.h" /* its names: evk_nng_*, picked by lib/bus_pick.c */
#include "evkit/bus.h"

#include "evkit/err.h"
#include "evkit/limits.h"
#include "evkit/proto.h"
#include "evkit/tls.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
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

/* ---- closing without hanging ----
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
static bool
close_sockets(const nng_socket *socks, int n)
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
static int
from_nng(int rv)
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

#define WHY_MAX 256

/* An 'E' or 'F' reply's error code, its text copied to why[0..WHY_MAX);
 * EVK_EPROTO (and an empty why) for anything else. */
static int
refusal(const void *b, size_t n, char *why)
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
static int
req_open(nng_socket *s, const char *url)
{
	int rv;

	if ((rv = nng_req0_open(s)) != 0)
		return from_nng(rv);
	if ((rv = nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME,
				    NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, EVK_FRAME_MAX)) != 0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, EVK_ACK_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, EVK_ACK_TIMEOUT_MS)) != 0 ||
	    (rv = evk_tls_dial(*s, url, 0)) != 0) {
		nng_close(*s);
		return from_nng(rv) == EVK_EIO ? EVK_EUNAVAIL : from_nng(rv);
	}
	return EVK_OK;
}

/* Sends one request and waits for its reply. */
static int
request(nng_socket s, nng_msg *req, nng_msg **reply)
{
	int rv = nng_sendmsg(s, req, 0);
	if (rv != 0) {
		nng_msg_free(req);
		return from_nng(rv);
	}
	if ((rv = nng_recvmsg(s, reply, 0)) != 0)
		return from_nng(rv);
	return EVK_OK;
}

/* ---- publishing ----
 *
 * Up to EVK_PUB_WINDOW frames are in flight, each on a REQ context of its
 * own. Frames are handed to nng one at a time, in order: the next is
 * started when the one before it has been taken by the connection (from
 * the aio callback), so a frame that the hub does not take within the
 * timeout fails together with every frame after it, and the hub never
 * sees a later frame without an earlier one. The caller goes on filling
 * the next frame meanwhile; acks are read in order by complete_oldest. */

enum slot_state {
	SLOT_IDLE,      /* being filled, or free */
	SLOT_QUEUED,    /* waiting for the frame before it to be sent */
	SLOT_SENDING,   /* handed to nng */
	SLOT_SENT,      /* taken by the connection; the ack is to be read */
	SLOT_FAILED,    /* not sent (rv says why); nor is any frame after it */
	SLOT_RECEIVING, /* reading the ack */
};

struct slot {
	nng_ctx ctx;
	nng_aio *aio;
	struct evk_pub *pub;
	struct evk_buf lines; /* the frame, kept until acknowledged */
	struct evk_buf pseqs; /* with a producer id: each line's sequence */
	uint32_t count;
	bool in_flight;
	enum slot_state state; /* under pub->mtx */
	int rv;                /* nng error of a SLOT_FAILED */
};

struct evk_pub {
	nng_socket sock;
	struct slot slots[EVK_PUB_WINDOW];
	unsigned cur;      /* slot being filled */
	unsigned oldest;   /* oldest slot in flight */
	unsigned in_flight;
	evk_ack_fn on_ack;
	void *arg;
	uint64_t acked;
	uint64_t last_seq;
	struct evk_buf scratch;
	int failed;        /* sticky link error */
	nng_mtx *mtx;      /* guards lost, sending and the slots' states */
	nng_cv *cv;        /* a slot left SLOT_QUEUED or SLOT_SENDING */
	bool lost;         /* the connection to the hub went away */
	bool broken;       /* a send failed: no frame goes after it */
	bool sending;      /* a slot is SLOT_SENDING */
	char why[WHY_MAX]; /* the hub's reason for a refusal, or "" */
	char producer[EVK_PRODUCER_MAX]; /* exactly once: 'Q' frames */
	size_t producer_len;             /* 0: 'P' frames */
	uint64_t pseq_last;              /* the last sequence added */
	uint64_t dropped;                /* lines the hub had stored before */
	struct evk_pub *next_left;
};

/* Publishers whose socket did not finish closing (see close_sockets). */
static struct evk_pub *left_closing;
static pthread_mutex_t left_mu = PTHREAD_MUTEX_INITIALIZER;

/* Fails every queued frame (none of them was handed to nng). Under mtx. */
static void
fail_queued(struct evk_pub *p, int rv)
{
	for (unsigned i = 0; i < EVK_PUB_WINDOW; i++)
		if (p->slots[i].state == SLOT_QUEUED) {
			p->slots[i].state = SLOT_FAILED;
			p->slots[i].rv = rv;
		}
	nng_cv_wake(p->cv);
}

/* Nothing more goes out on p: queued frames fail, frames being sent or
 * acks being read are aborted, with error rv. */
static void
give_up(struct evk_pub *p, int rv)
{
	nng_mtx_lock(p->mtx);
	p->lost = true;
	fail_queued(p, rv);
	for (unsigned i = 0; i < EVK_PUB_WINDOW; i++)
		if (p->slots[i].aio)
			nng_aio_abort(p->slots[i].aio, rv);
	nng_mtx_unlock(p->mtx);
}

/* The hub's connection is gone: whatever is in flight will never be
 * acknowledged, so fail it now instead of at the ack timeout.  Runs on an
 * nng thread. */
static void
on_pipe_lost(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	(void)pipe;
	(void)ev;
	give_up(arg, NNG_ECONNRESET);
}

/* A slot's aio finished: a send (then the next queued frame goes), or the
 * ack's receive (complete_oldest waits for that one itself). Runs on an
 * nng thread. */
static void
on_slot_done(void *arg)
{
	struct slot *sl = arg;
	struct evk_pub *p = sl->pub;

	nng_mtx_lock(p->mtx);
	if (sl->state == SLOT_SENDING) {
		int rv = nng_aio_result(sl->aio);
		p->sending = false;
		if (rv != 0) {
			/* Not taken (the frame is back in the aio): nor are
			 * the ones after it, so the hub sees no hole. */
			sl->state = SLOT_FAILED;
			sl->rv = rv == NNG_ETIMEDOUT ? NNG_ECLOSED : rv;
			p->broken = true;
			fail_queued(p, NNG_ECLOSED);
		} else {
			sl->state = SLOT_SENT;
			struct slot *next = &p->slots[(sl - p->slots + 1) % EVK_PUB_WINDOW];
			if (next->state == SLOT_QUEUED) {
				if (p->lost) {
					fail_queued(p, NNG_ECONNRESET);
				} else {
					next->state = SLOT_SENDING;
					p->sending = true;
					nng_ctx_send(next->ctx, next->aio);
				}
			}
		}
		nng_cv_wake(p->cv);
	}
	nng_mtx_unlock(p->mtx);
}

/* Starts reading a slot's ack unless the hub is already lost; false when
 * it is. */
static bool
recv_start(struct evk_pub *p, struct slot *sl)
{
	bool ok;

	nng_mtx_lock(p->mtx);
	ok = !p->lost;
	if (ok) {
		sl->state = SLOT_RECEIVING;
		nng_ctx_recv(sl->ctx, sl->aio);
	}
	nng_mtx_unlock(p->mtx);
	return ok;
}

int
evk_pub_open(struct evk_pub **out, const char *url, evk_ack_fn on_ack, void *arg)
{
	struct evk_pub *p = calloc(1, sizeof(*p));
	int rv;

	if (p == NULL)
		return EVK_ENOMEM;
	if ((rv = nng_mtx_alloc(&p->mtx)) != 0) {
		free(p);
		return from_nng(rv);
	}
	if ((rv = nng_cv_alloc(&p->cv, p->mtx)) != 0) {
		nng_mtx_free(p->mtx);
		free(p);
		return from_nng(rv);
	}
	if ((rv = req_open(&p->sock, url)) != EVK_OK) {
		nng_cv_free(p->cv);
		nng_mtx_free(p->mtx);
		free(p);
		return rv;
	}
	for (unsigned i = 0; i < EVK_PUB_WINDOW; i++) {
		struct slot *sl = &p->slots[i];
		sl->pub = p;
		sl->lines = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX - 64);
		sl->pseqs = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX / 8);
		if ((rv = nng_ctx_open(&sl->ctx, p->sock)) != 0 ||
		    (rv = nng_aio_alloc(&sl->aio, on_slot_done, sl)) != 0) {
			p->failed = from_nng(rv);
			evk_pub_close(p);
			return from_nng(rv);
		}
		nng_aio_set_timeout(sl->aio, EVK_ACK_TIMEOUT_MS);
	}
	if ((rv = nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, on_pipe_lost,
				  p)) != 0) {
		p->failed = from_nng(rv);
		evk_pub_close(p);
		return from_nng(rv);
	}
	p->scratch = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX - 64);
	p->on_ack = on_ack;
	p->arg = arg;
	*out = p;
	return EVK_OK;
}

/* Waits for the oldest frame in flight to be sent, then for its ack, and
 * reports it. The reply of an ack that came first waits in the context. */
static int
complete_oldest(struct evk_pub *p)
{
	struct slot *sl = &p->slots[p->oldest];
	nng_msg *reply;
	int rv;

	nng_mtx_lock(p->mtx);
	while (sl->state == SLOT_QUEUED || sl->state == SLOT_SENDING)
		nng_cv_wait(p->cv);
	bool sent = sl->state == SLOT_SENT;
	rv = sent ? 0 : sl->rv;
	nng_mtx_unlock(p->mtx);
	if (sent) {
		if (!recv_start(p, sl)) {
			rv = NNG_ECLOSED;
		} else {
			nng_aio_wait(sl->aio);
			rv = nng_aio_result(sl->aio);
		}
	}
	nng_mtx_lock(p->mtx);
	sl->state = SLOT_IDLE;
	nng_mtx_unlock(p->mtx);
	sl->in_flight = false;
	p->in_flight--;
	p->oldest = (p->oldest + 1) % EVK_PUB_WINDOW;
	/* The frame itself when it was not sent, else the ack (or nothing). */
	reply = nng_aio_get_msg(sl->aio);
	nng_aio_set_msg(sl->aio, NULL);
	if (rv != 0) {
		if (reply)
			nng_msg_free(reply);
		return p->failed = from_nng(rv);
	}
	uint64_t first;
	uint32_t count, dropped;
	if (evk_ack_get(nng_msg_body(reply), nng_msg_len(reply), &first, &count, &dropped) &&
	    count == sl->count && dropped <= count) {
		p->acked += sl->count;
		p->dropped += dropped;
		/* The lines stored before are skipped: on_ack sees those
		 * stored now, numbered from first. */
		const char *lines = sl->lines.p;
		for (uint32_t i = 0; i < dropped; i++)
			lines = (const char *)memchr(lines, '\n', sl->lines.len) + 1;
		size_t len = sl->lines.len - (size_t)(lines - sl->lines.p);
		if (dropped < count) {
			p->last_seq = first + (count - dropped) - 1;
			if (p->on_ack)
				p->on_ack(p->arg, first, lines, len, count - dropped);
		}
		rv = EVK_OK;
	} else {
		rv = p->failed = refusal(nng_msg_body(reply), nng_msg_len(reply), p->why);
	}
	nng_msg_free(reply);
	evk_buf_reset(&sl->lines);
	evk_buf_reset(&sl->pseqs);
	sl->count = 0;
	return rv;
}

/* Queues the slot being filled for sending (it goes at once when no
 * other frame is being sent) and moves to the next slot, first completing
 * the one there if it is still in flight. */
static int
send_current(struct evk_pub *p)
{
	struct slot *sl = &p->slots[p->cur];
	nng_msg *msg;

	if (sl->count == 0)
		return EVK_OK;
	if (p->producer_len > 0) {
		size_t hdr = evk_publish_once_hdr_len(p->producer_len, sl->count);
		if (nng_msg_alloc(&msg, hdr + sl->lines.len) != 0)
			return p->failed = EVK_ENOMEM;
		unsigned char *w = evk_publish_once_hdr_put(nng_msg_body(msg), p->producer,
							     p->producer_len, sl->count);
		memcpy(w, sl->pseqs.p, sl->pseqs.len);
		memcpy(w + sl->pseqs.len, sl->lines.p, sl->lines.len);
	} else {
		if (nng_msg_alloc(&msg, EVK_PUBLISH_HDR + sl->lines.len) != 0)
			return p->failed = EVK_ENOMEM;
		memcpy(evk_publish_hdr_put(nng_msg_body(msg)), sl->lines.p, sl->lines.len);
	}
	nng_aio_set_msg(sl->aio, msg);
	nng_mtx_lock(p->mtx);
	bool lost = p->lost || p->broken;
	if (!lost) {
		if (p->sending) {
			sl->state = SLOT_QUEUED;
		} else {
			sl->state = SLOT_SENDING;
			p->sending = true;
			nng_ctx_send(sl->ctx, sl->aio);
		}
	}
	nng_mtx_unlock(p->mtx);
	if (lost) {
		nng_aio_set_msg(sl->aio, NULL);
		nng_msg_free(msg);
		return p->failed = EVK_ECLOSED;
	}
	sl->in_flight = true;
	p->in_flight++;
	p->cur = (p->cur + 1) % EVK_PUB_WINDOW;
	if (p->slots[p->cur].in_flight)
		return complete_oldest(p);
	return EVK_OK;
}

/* Queues a line, with its sequence when p has a producer id. */
static int
add_line(struct evk_pub *p, const char *line, size_t len, uint64_t pseq)
{
	struct slot *sl = &p->slots[p->cur];
	unsigned char be[8];
	int rv;

	if (p->failed)
		return p->failed;
	if (sl->count > 0 && sl->lines.len + len + 1 > EVK_FRAME_TARGET) {
		if ((rv = send_current(p)) != EVK_OK)
			return rv;
		sl = &p->slots[p->cur];
	}
	size_t mark = sl->lines.len;
	evk_put_u64(be, pseq);
	if ((rv = evk_buf_add(&sl->lines, line, len)) != EVK_OK ||
	    (rv = evk_buf_addch(&sl->lines, '\n')) != EVK_OK ||
	    (p->producer_len > 0 && (rv = evk_buf_add(&sl->pseqs, (const char *)be, 8)) != EVK_OK)) {
		sl->lines.len = mark;
		return rv;
	}
	sl->count++;
	if (sl->lines.len >= EVK_FRAME_TARGET)
		return send_current(p);
	return EVK_OK;
}

int
evk_pub_add(struct evk_pub *p, const char *line, size_t len)
{
	if (p->producer_len > 0)
		return EVK_EINVAL; /* each line needs its sequence */
	return add_line(p, line, len, 0);
}

int
evk_pub_set_producer(struct evk_pub *p, const char *id)
{
	size_t n = strlen(id);
	if (!evk_producer_valid(id, n) || p->in_flight > 0 || p->slots[p->cur].count > 0)
		return EVK_EINVAL;
	memcpy(p->producer, id, n);
	p->producer_len = n;
	return EVK_OK;
}

int
evk_pub_add_seq(struct evk_pub *p, const char *line, size_t len, uint64_t pseq)
{
	if (p->producer_len == 0 || (p->pseq_last != 0 && pseq <= p->pseq_last) || pseq == 0)
		return EVK_EINVAL;
	int rv = add_line(p, line, len, pseq);
	if (rv == EVK_OK)
		p->pseq_last = pseq;
	return rv;
}

uint64_t
evk_pub_dropped(const struct evk_pub *p)
{
	return p->dropped;
}

int
evk_pub_flush(struct evk_pub *p)
{
	return p->failed ? p->failed : send_current(p);
}

int
evk_pub_sync(struct evk_pub *p)
{
	int rv;

	if (p->failed)
		return p->failed;
	if ((rv = send_current(p)) != EVK_OK)
		return rv;
	while (p->in_flight > 0)
		if ((rv = complete_oldest(p)) != EVK_OK)
			return rv;
	return EVK_OK;
}

const char *
evk_pub_why(const struct evk_pub *p)
{
	return p->why[0] ? p->why : NULL;
}

uint64_t
evk_pub_acked(const struct evk_pub *p)
{
	return p->acked;
}

uint64_t
evk_pub_last_seq(const struct evk_pub *p)
{
	return p->last_seq;
}

void
evk_pub_close(struct evk_pub *p)
{
	if (p == NULL)
		return;
	/* Even if the close below is left unfinished. */
	give_up(p, NNG_ECLOSED);
	/* Closing fails whatever is in flight; then no more callbacks. */
	if (!close_sockets(&p->sock, 1)) {
		/* Still closing: on_pipe_lost may yet run. p stays, reachable. */
		pthread_mutex_lock(&left_mu);
		p->next_left = left_closing;
		left_closing = p;
		pthread_mutex_unlock(&left_mu);
		return;
	}
	for (unsigned i = 0; i < EVK_PUB_WINDOW; i++) {
		struct slot *sl = &p->slots[i];
		if (sl->aio) {
			nng_aio_wait(sl->aio);
			/* A frame not sent, or an ack not read. */
			nng_msg *m = nng_aio_get_msg(sl->aio);
			if (m)
				nng_msg_free(m);
			nng_aio_free(sl->aio);
		}
		evk_buf_release(&sl->lines);
		evk_buf_release(&sl->pseqs);
	}
	evk_buf_release(&p->scratch);
	nng_cv_free(p->cv);
	nng_mtx_free(p->mtx);
	free(p);
}

/* ---- subscribing ---- */

struct evk_sub {
	nng_socket sub;
	nng_socket req;
	nng_msg *frame;        /* frame being read, or NULL */
	const char *cursor;    /* next line in frame */
	const char *frame_end;
	uint64_t frame_seq;    /* seq of the line at cursor (from the header) */
	uint64_t next;         /* seq of the next event to deliver */
	uint64_t known_head;   /* highest seq known to exist */
	uint64_t start_head;
	uint64_t gap_from, gap_to;
	uint64_t malformed, refilled;
	bool frame_is_refill;  /* frame came from the log, not the fan-out */
	nng_duration recv_timeout;
	char why[WHY_MAX];     /* the hub's reason for a refusal, or "" */
};

/* Asks the hub for up to max events from seq `from` on. */
static int
replay(struct evk_sub *s, uint64_t from, uint32_t max, nng_msg **reply,
       struct evk_events_hdr *hdr)
{
	nng_msg *req;
	int rv;

	if ((rv = nng_msg_alloc(&req, EVK_REPLAY_LEN)) != 0)
		return EVK_ENOMEM;
	evk_replay_put(nng_msg_body(req), from, max);
	if ((rv = request(s->req, req, reply)) != EVK_OK)
		return rv;
	if (!evk_events_hdr_get(nng_msg_body(*reply), nng_msg_len(*reply), hdr)) {
		rv = refusal(nng_msg_body(*reply), nng_msg_len(*reply), s->why);
		nng_msg_free(*reply);
		return rv;
	}
	return EVK_OK;
}

int
evk_sub_open(struct evk_sub **out, const char *url, int64_t since)
{
	char fanout[EVK_URL_MAX];
	struct evk_sub *s = calloc(1, sizeof(*s));
	nng_msg *reply;
	int rv;

	if (s == NULL)
		return EVK_ENOMEM;
	if (evk_bus_fanout_url(url, fanout, sizeof(fanout)) != EVK_OK) {
		free(s);
		return EVK_EINVAL;
	}
	if ((rv = nng_sub0_open(&s->sub)) != 0) {
		free(s);
		return from_nng(rv);
	}
	if ((rv = nng_socket_set(s->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
	    (rv = nng_socket_set_int(s->sub, NNG_OPT_RECVBUF, EVK_SUB_QUEUE_FRAMES)) != 0 ||
	    (rv = nng_socket_set_size(s->sub, NNG_OPT_RECVMAXSZ, EVK_FRAME_MAX)) != 0 ||
	    (rv = evk_tls_dial(s->sub, fanout, 0)) != 0) {
		nng_close(s->sub);
		free(s);
		return from_nng(rv) == EVK_EIO ? EVK_EUNAVAIL : from_nng(rv);
	}
	if ((rv = req_open(&s->req, url)) != EVK_OK) {
		close_sockets(&s->sub, 1);
		free(s);
		return rv;
	}
	/* The head now: every later event has a larger seq, and reaches us
	 * live or through refill. */
	struct evk_events_hdr hdr;
	if ((rv = replay(s, UINT64_MAX, 0, &reply, &hdr)) != EVK_OK) {
		evk_sub_close(s);
		return rv;
	}
	s->start_head = hdr.head;
	nng_msg_free(reply);
	s->known_head = s->start_head;
	if (since == EVK_SINCE_LIVE)
		s->next = s->start_head + 1;
	else
		s->next = (uint64_t)(since < 0 ? 0 : since) + 1;
	s->recv_timeout = -2;
	*out = s;
	return EVK_OK;
}

static void
drop_frame(struct evk_sub *s)
{
	if (s->frame)
		nng_msg_free(s->frame);
	s->frame = NULL;
	s->cursor = s->frame_end = NULL;
}

/* Takes an events frame (live or replayed) as the one to read, skipping
 * the events already delivered. Returns EVK_EGAP when the frame starts
 * past s->next and the events between are not retained. */
static void
use_frame(struct evk_sub *s, nng_msg *m, uint64_t first)
{
	const char *b = nng_msg_body(m);
	drop_frame(s);
	s->frame = m;
	s->cursor = b + EVK_EVENTS_HDR;
	s->frame_end = b + nng_msg_len(m);
	s->frame_seq = first;
	s->frame_is_refill = false;
}

/* Fetches the next stretch of events from the log into s->frame. */
static int
refill(struct evk_sub *s)
{
	nng_msg *reply;
	struct evk_events_hdr hdr;
	int rv = replay(s, s->next, EVK_REFILL_EVENTS, &reply, &hdr);
	if (rv != EVK_OK)
		return rv;
	uint64_t first = hdr.first, head = hdr.head;
	uint32_t count = hdr.count;

	if (head > s->known_head)
		s->known_head = head;
	if (count == 0) {
		nng_msg_free(reply);
		if (head >= s->next) {
			/* Everything from next to head is gone. */
			s->gap_from = s->next;
			s->gap_to = head;
			s->next = head + 1;
			return EVK_EGAP;
		}
		s->known_head = head;
		return EVK_OK;
	}
	s->refilled += count;
	use_frame(s, reply, first);
	s->frame_is_refill = true;
	if (first > s->next) {
		s->gap_from = s->next;
		s->gap_to = first - 1;
		s->next = first;
		return EVK_EGAP;
	}
	return EVK_OK;
}

/* frame_next's answer when the frame has no event to give: read to its
 * end, or dropped to refill what a live frame skipped. */
#define FRAME_DONE (-1)

/* The next event of the current frame into *ev: EVK_OK, EVK_EGAP when a
 * frame from the log starts past s->next (the log lacks the events
 * between), or FRAME_DONE. */
static int
frame_next(struct evk_sub *s, struct evk_event *ev)
{
	while (s->cursor && s->cursor < s->frame_end) {
		const char *line = s->cursor;
		const char *nl = memchr(line, '\n', (size_t)(s->frame_end - line));
		size_t len = nl ? (size_t)(nl - line) : (size_t)(s->frame_end - line);
		/* A frame's lines are consecutive seqs from its header's
		 * first: a line that does not scan, or names another seq,
		 * still takes its place, so whatever a log holds never
		 * moves this subscriber back or makes it invent a gap. */
		uint64_t seq = s->frame_seq++;
		s->cursor = line + len + 1;
		if (seq < s->next)
			continue; /* already delivered */
		if (seq > s->next) {
			s->cursor = line; /* deliver it after the gap */
			s->frame_seq = seq;
			if (s->frame_is_refill) {
				/* The log itself lacks the stretch. */
				s->gap_from = s->next;
				s->gap_to = seq - 1;
				s->next = seq;
				return EVK_EGAP;
			}
			/* A live frame skips ahead: refill first. */
			drop_frame(s);
			if (s->known_head < seq)
				s->known_head = seq;
			return FRAME_DONE;
		}
		s->next++;
		if (evk_event_scan(ev, line, len) != EVK_OK || ev->seq != seq) {
			s->malformed++; /* skipped, in its place */
			continue;
		}
		return EVK_OK;
	}
	return FRAME_DONE;
}

/* A frame from the fan-out: a heartbeat or an events frame raises the
 * known head; an events frame that holds s->next becomes the current
 * frame (one that starts past it is dropped: the log has them all). */
static void
live_frame(struct evk_sub *s, nng_msg *m)
{
	uint64_t head;
	struct evk_events_hdr hdr;

	if (evk_heartbeat_get(nng_msg_body(m), nng_msg_len(m), &head)) {
		nng_msg_free(m);
		/* Never backwards: a heartbeat may have waited in the
		 * queue while this process was stopped, and carry a
		 * head older than what the log already gave us. */
		if (head > s->known_head)
			s->known_head = head;
		return;
	}
	if (!evk_events_hdr_get(nng_msg_body(m), nng_msg_len(m), &hdr)) {
		nng_msg_free(m);
		return;
	}
	uint64_t first = hdr.first;
	uint32_t count = hdr.count;
	uint64_t last = first + count - 1;
	if (count == 0 || last < s->next) {
		nng_msg_free(m);
		return;
	}
	if (last > s->known_head)
		s->known_head = last;
	if (first > s->next) {
		nng_msg_free(m); /* missed some: the log has them all */
		return;
	}
	use_frame(s, m, first);
}

int
evk_sub_next(struct evk_sub *s, struct evk_event *ev, int timeout_ms)
{
	nng_time deadline = timeout_ms < 0 ? 0 : nng_clock() + (nng_time)timeout_ms;
	int rv;

	for (;;) {
		if ((rv = frame_next(s, ev)) != FRAME_DONE)
			return rv;
		drop_frame(s);
		if (s->known_head >= s->next) {
			if ((rv = refill(s)) != EVK_OK)
				return rv;
			continue;
		}

		/* Live: wait for the fan-out. */
		nng_duration wait = -1;
		if (timeout_ms >= 0) {
			nng_time now = nng_clock();
			if (now >= deadline)
				return EVK_ETIMEDOUT;
			wait = (nng_duration)(deadline - now);
		}
		if (wait != s->recv_timeout) {
			nng_socket_set_ms(s->sub, NNG_OPT_RECVTIMEO, wait);
			s->recv_timeout = wait;
		}
		nng_msg *m;
		if ((rv = nng_recvmsg(s->sub, &m, 0)) != 0) {
			if (rv == NNG_ETIMEDOUT)
				return EVK_ETIMEDOUT;
			return from_nng(rv);
		}
		live_frame(s, m);
	}
}

bool
evk_sub_buffered(const struct evk_sub *s)
{
	return s->cursor && s->cursor < s->frame_end;
}

void
evk_sub_gap(const struct evk_sub *s, uint64_t *from, uint64_t *to)
{
	*from = s->gap_from;
	*to = s->gap_to;
}

uint64_t
evk_sub_start_head(const struct evk_sub *s)
{
	return s->start_head;
}

const char *
evk_sub_why(const struct evk_sub *s)
{
	return s->why[0] ? s->why : NULL;
}

uint64_t
evk_sub_malformed(const struct evk_sub *s)
{
	return s->malformed;
}

uint64_t
evk_sub_refilled(const struct evk_sub *s)
{
	return s->refilled;
}

void
evk_sub_close(struct evk_sub *s)
{
	if (s == NULL)
		return;
	drop_frame(s);
	/* Should the close be left unfinished, the socket keeps no more of
	 * the fan-out meanwhile. */
	nng_socket_set(s->sub, NNG_OPT_SUB_UNSUBSCRIBE, "", 0);
	/* No callbacks of ours on these sockets: s can go either way. */
	close_sockets((nng_socket[]){ s->sub, s->req }, 2);
	free(s);
}

int
evk_bus_status(const char *url, char **json)
{
	nng_socket s;
	nng_msg *req, *reply;
	int rv = req_open(&s, url);

	if (rv != EVK_OK)
		return rv;
	if (nng_msg_alloc(&req, 1) != 0) {
		close_sockets(&s, 1);
		return EVK_ENOMEM;
	}
	*(char *)nng_msg_body(req) = EVK_MSG_STATUS;
	if ((rv = request(s, req, &reply)) == EVK_OK) {
		const char *text;
		size_t len;
		char why[WHY_MAX];
		if (!evk_status_get(nng_msg_body(reply), nng_msg_len(reply), &text, &len)) {
			rv = refusal(nng_msg_body(reply), nng_msg_len(reply), why);
		} else if ((*json = malloc(len + 1)) == NULL) {
			rv = EVK_ENOMEM;
		} else {
			memcpy(*json, text, len);
			(*json)[len] = '\0';
		}
		nng_msg_free(reply);
	}
	close_sockets(&s, 1);
	return rv;
}
