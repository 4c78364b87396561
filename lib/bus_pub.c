/* lib/bus_pub.c: the nng client's publisher (evk_nng_pub_*). */
#include "bus_nng.h" /* its names: evk_nng_*, picked by lib/bus_pick.c */
#include "evkit/bus.h"

#include "evkit/err.h"
#include "evkit/limits.h"
#include "evkit/proto.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	uint64_t dropped;                /* lines the hub had stored before */
	struct evk_pub *next_left;
};

/* Publishers whose socket did not finish closing (see
 * evk_nng_close_sockets). */
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
		return evk_nng_err(rv);
	}
	if ((rv = nng_cv_alloc(&p->cv, p->mtx)) != 0) {
		nng_mtx_free(p->mtx);
		free(p);
		return evk_nng_err(rv);
	}
	if ((rv = evk_nng_req_open(&p->sock, url)) != EVK_OK) {
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
			p->failed = evk_nng_err(rv);
			evk_pub_close(p);
			return evk_nng_err(rv);
		}
		nng_aio_set_timeout(sl->aio, EVK_ACK_TIMEOUT_MS);
	}
	if ((rv = nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, on_pipe_lost,
				  p)) != 0) {
		p->failed = evk_nng_err(rv);
		evk_pub_close(p);
		return evk_nng_err(rv);
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
		return p->failed = evk_nng_err(rv);
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
		rv = p->failed = evk_nng_refusal(nng_msg_body(reply), nng_msg_len(reply), p->why);
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
	/* (lib/bus_pick.c checks the order) */
	return p->producer_len == 0 ? EVK_EINVAL : add_line(p, line, len, pseq);
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
	if (!evk_nng_close_sockets(&p->sock, 1)) {
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
