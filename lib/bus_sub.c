/* lib/bus_sub.c: the nng client's subscriber (evk_nng_sub_*). */
#include "bus_nng.h" /* its names: evk_nng_*, picked by lib/bus_pick.c */
#include "evkit/bus.h"

#include "evkit/err.h"
#include "evkit/limits.h"
#include "evkit/proto.h"
#include "evkit/tls.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	if ((rv = evk_nng_request(s->req, req, reply)) != EVK_OK)
		return rv;
	if (!evk_events_hdr_get(nng_msg_body(*reply), nng_msg_len(*reply), hdr)) {
		rv = evk_nng_refusal(nng_msg_body(*reply), nng_msg_len(*reply), s->why);
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
		return evk_nng_err(rv);
	}
	if ((rv = nng_socket_set(s->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
	    (rv = nng_socket_set_int(s->sub, NNG_OPT_RECVBUF, EVK_SUB_QUEUE_FRAMES)) != 0 ||
	    (rv = nng_socket_set_size(s->sub, NNG_OPT_RECVMAXSZ, EVK_FRAME_MAX)) != 0 ||
	    (rv = evk_tls_dial(s->sub, fanout, 0)) != 0) {
		nng_close(s->sub);
		free(s);
		return evk_nng_err(rv) == EVK_EIO ? EVK_EUNAVAIL : evk_nng_err(rv);
	}
	if ((rv = evk_nng_req_open(&s->req, url)) != EVK_OK) {
		evk_nng_close_sockets(&s->sub, 1);
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
			return evk_nng_err(rv);
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
	evk_nng_close_sockets((nng_socket[]){ s->sub, s->req }, 2);
	free(s);
}
