/* The wire format between the hub and its clients (internal to evkit):
 * the one place that knows the letters and the byte layout of a frame.
 * Everything else builds and reads frames through the helpers below.
 *
 * Requests (REQ → hub's REP), first byte is the kind:
 *   'P' lines...                 publish; lines are canonical without seq
 *   'Q' u8 idlen, id, u32 count, u64 pseq[count], lines...
 *                                publish exactly once: id names the
 *                                producer, pseq[i] is line i's sequence
 *                                (from 1, strictly increasing); lines whose pseq
 *                                is at most the highest the hub stored
 *                                for id are dropped, still acknowledged
 *   'R' u64 from, u32 max        replay events with seq >= from
 *   'S'                          status
 * Replies:
 *   'A' u64 first, u32 count     publish acknowledged (committed)
 *   'A' u64 first, u32 count, u32 dropped   the same for 'Q': the first
 *                                `dropped` lines were stored before (first
 *                                is the seq of the line after them; 0 when
 *                                all were)
 *   'D' u64 first, u32 count, u64 head, u64 oldest, lines...   replay
 *   'S' json                     status
 *   'E' text                     refused: the request is bad (65)
 *   'F' u8 class, text           the hub failed to serve it: class
 *                                EVK_FAIL_TEMP (try again, 75) or
 *                                EVK_FAIL_IO (its store, 74)
 * Fan-out (hub's PUB → SUB):
 *   'D' u64 first, u32 count, u64 head, u64 oldest, lines...   events
 *   'H' u64 head                 heartbeat, every EVK_HEARTBEAT_MS
 * Integers are big-endian; lines are '\n'-terminated; the lines of a 'D'
 * frame are the events first, first + 1, ... first + count - 1. */
#ifndef EVKIT_PROTO_H
#define EVKIT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EVK_MSG_PUBLISH 'P'
#define EVK_MSG_PUBLISH_ONCE 'Q'
#define EVK_MSG_REPLAY 'R'
#define EVK_MSG_STATUS 'S'
#define EVK_MSG_ACK 'A'
#define EVK_MSG_EVENTS 'D'
#define EVK_MSG_ERROR 'E'
#define EVK_MSG_FAILURE 'F'
#define EVK_MSG_HEARTBEAT 'H'

#define EVK_FAIL_TEMP 't'
#define EVK_FAIL_IO 'i'

/* Sizes of the fixed parts, the kind byte included. */
#define EVK_EVENTS_HDR (1 + 8 + 4 + 8 + 8)
#define EVK_ACK_LEN (1 + 8 + 4)
#define EVK_ACK_ONCE_LEN (EVK_ACK_LEN + 4)
#define EVK_PRODUCER_MAX 64 /* bytes in a producer id */
#define EVK_REPLAY_LEN (1 + 8 + 4)
#define EVK_HEARTBEAT_LEN (1 + 8)
#define EVK_FAILURE_HDR (1 + 1)

/* Writes v big-endian into p[0..n). */
static inline void
evk_put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* The big-endian integer in p[0..n). */
static inline uint64_t
evk_get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static inline void
evk_put_u64(unsigned char *p, uint64_t v)
{
	evk_put_be(p, v, 8);
}

static inline void
evk_put_u32(unsigned char *p, uint32_t v)
{
	evk_put_be(p, v, 4);
}

static inline uint64_t
evk_get_u64(const unsigned char *p)
{
	return evk_get_be(p, 8);
}

static inline uint32_t
evk_get_u32(const unsigned char *p)
{
	return (uint32_t)evk_get_be(p, 4);
}

/* The kind of a frame of n bytes, 0 when empty. */
static inline char
evk_frame_kind(const void *b, size_t n)
{
	return n > 0 ? *(const char *)b : 0;
}

/* ---- 'P': publish ---- */

#define EVK_PUBLISH_HDR 1

/* Writes a publish frame's header at p; returns where its lines go. */
static inline unsigned char *
evk_publish_hdr_put(unsigned char *p)
{
	p[0] = EVK_MSG_PUBLISH;
	return p + EVK_PUBLISH_HDR;
}

/* The lines of a publish frame b[0..n) in lines and len; false when b is not
 * a publish frame with at least one byte of lines. */
static inline bool
evk_publish_get(const void *b, size_t n, const char **lines, size_t *len)
{
	const char *p = b;
	if (n <= EVK_PUBLISH_HDR || p[0] != EVK_MSG_PUBLISH)
		return false;
	*lines = p + EVK_PUBLISH_HDR;
	*len = n - EVK_PUBLISH_HDR;
	return true;
}

/* ---- 'Q': publish exactly once ---- */

/* True for a producer id: 1 to EVK_PRODUCER_MAX bytes of [0-9A-Za-z_.:-]. */
static inline bool
evk_producer_valid(const char *id, size_t n)
{
	if (n == 0 || n > EVK_PRODUCER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '_' || c == '.' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* Bytes before the lines of a 'Q' frame. */
static inline size_t
evk_publish_once_hdr_len(size_t idlen, uint32_t count)
{
	return 1 + 1 + idlen + 4 + (size_t)count * 8;
}

/* Writes a 'Q' header (kind, id, count) at p; returns where the count
 * sequences go (8 bytes each, evk_put_u64), the lines after them. */
static inline unsigned char *
evk_publish_once_hdr_put(unsigned char *p, const char *id, size_t idlen, uint32_t count)
{
	p[0] = EVK_MSG_PUBLISH_ONCE;
	p[1] = (unsigned char)idlen;
	memcpy(p + 2, id, idlen);
	evk_put_u32(p + 2 + idlen, count);
	return p + 2 + idlen + 4;
}

struct evk_publish_once {
	const char *id;             /* not NUL-terminated */
	size_t idlen;
	uint32_t count;
	const unsigned char *pseqs; /* count big-endian u64s */
	const char *lines;
	size_t len;
};

/* Reads a 'Q' frame; false when b[0..n) is not one (or holds no lines). */
static inline bool
evk_publish_once_get(const void *b, size_t n, struct evk_publish_once *q)
{
	const unsigned char *p = b;
	if (n < 2 || p[0] != EVK_MSG_PUBLISH_ONCE || n < 2 + (size_t)p[1] + 4)
		return false;
	q->idlen = p[1];
	q->id = (const char *)p + 2;
	q->count = evk_get_u32(p + 2 + q->idlen);
	size_t hdr = evk_publish_once_hdr_len(q->idlen, q->count);
	if (q->count == 0 || (n - 2 - q->idlen - 4) / 8 < q->count || n <= hdr)
		return false;
	q->pseqs = p + 2 + q->idlen + 4;
	q->lines = (const char *)p + hdr;
	q->len = n - hdr;
	return true;
}

/* ---- 'D': events (replay reply and fan-out) ---- */

struct evk_events_hdr {
	uint64_t first;  /* seq of the first line */
	uint32_t count;  /* lines */
	uint64_t head;   /* the hub's head when sent */
	uint64_t oldest; /* oldest seq the hub retains */
};

/* Writes the kind and header into p[0..EVK_EVENTS_HDR). */
static inline void
evk_events_hdr_put(unsigned char *p, const struct evk_events_hdr *h)
{
	p[0] = EVK_MSG_EVENTS;
	evk_put_u64(p + 1, h->first);
	evk_put_u32(p + 9, h->count);
	evk_put_u64(p + 13, h->head);
	evk_put_u64(p + 21, h->oldest);
}

/* Reads an events frame's header; false when b[0..n) is not one. */
static inline bool
evk_events_hdr_get(const void *b, size_t n, struct evk_events_hdr *h)
{
	const unsigned char *p = b;
	if (n < EVK_EVENTS_HDR || p[0] != EVK_MSG_EVENTS)
		return false;
	h->first = evk_get_u64(p + 1);
	h->count = evk_get_u32(p + 9);
	h->head = evk_get_u64(p + 13);
	h->oldest = evk_get_u64(p + 21);
	return true;
}

/* ---- 'A' and 'R': a seq and a count after the kind ---- */

/* Writes kind, u64 seq, u32 count at p[0..13). */
static inline void
evk_seq_count_put(unsigned char *p, char kind, uint64_t seq, uint32_t count)
{
	p[0] = (unsigned char)kind;
	evk_put_u64(p + 1, seq);
	evk_put_u32(p + 9, count);
}

/* Reads what evk_seq_count_put wrote (the kind checked by the caller). */
static inline void
evk_seq_count_get(const unsigned char *p, uint64_t *seq, uint32_t *count)
{
	*seq = evk_get_u64(p + 1);
	*count = evk_get_u32(p + 9);
}

/* ---- 'A': publish acknowledged ---- */

static inline void
evk_ack_put(unsigned char p[EVK_ACK_LEN], uint64_t first, uint32_t count)
{
	evk_seq_count_put(p, EVK_MSG_ACK, first, count);
}

static inline void
evk_ack_once_put(unsigned char p[EVK_ACK_ONCE_LEN], uint64_t first, uint32_t count,
		 uint32_t dropped)
{
	evk_ack_put(p, first, count);
	evk_put_u32(p + EVK_ACK_LEN, dropped);
}

/* Reads an ack; *dropped is 0 for a 'P' frame's. */
static inline bool
evk_ack_get(const void *b, size_t n, uint64_t *first, uint32_t *count, uint32_t *dropped)
{
	const unsigned char *p = b;
	if (n < EVK_ACK_LEN || p[0] != EVK_MSG_ACK)
		return false;
	evk_seq_count_get(p, first, count);
	*dropped = n >= EVK_ACK_ONCE_LEN ? evk_get_u32(p + EVK_ACK_LEN) : 0;
	return true;
}

/* ---- 'R': replay request ---- */

static inline void
evk_replay_put(unsigned char p[EVK_REPLAY_LEN], uint64_t from, uint32_t max)
{
	evk_seq_count_put(p, EVK_MSG_REPLAY, from, max);
}

static inline bool
evk_replay_get(const void *b, size_t n, uint64_t *from, uint32_t *max)
{
	const unsigned char *p = b;
	if (n != EVK_REPLAY_LEN || p[0] != EVK_MSG_REPLAY)
		return false;
	evk_seq_count_get(p, from, max);
	return true;
}

/* ---- 'H': heartbeat ---- */

static inline void
evk_heartbeat_put(unsigned char p[EVK_HEARTBEAT_LEN], uint64_t head)
{
	p[0] = EVK_MSG_HEARTBEAT;
	evk_put_u64(p + 1, head);
}

static inline bool
evk_heartbeat_get(const void *b, size_t n, uint64_t *head)
{
	const unsigned char *p = b;
	if (n < EVK_HEARTBEAT_LEN || p[0] != EVK_MSG_HEARTBEAT)
		return false;
	*head = evk_get_u64(p + 1);
	return true;
}

/* ---- 'S': status reply ---- */

/* The JSON text of a status reply b[0..n) (not NUL-terminated); false
 * when b is not one. */
static inline bool
evk_status_get(const void *b, size_t n, const char **json, size_t *len)
{
	const char *p = b;
	if (n < 1 || p[0] != EVK_MSG_STATUS)
		return false;
	*json = p + 1;
	*len = n - 1;
	return true;
}

/* ---- 'E' and 'F': refusals and failures ---- */

/* The text of an 'E' or 'F' reply b[0..n) (not NUL-terminated) in
 * text and len, and its class: 0 for 'E', EVK_FAIL_* for 'F'. False when
 * b is neither. */
static inline bool
evk_refusal_get(const void *b, size_t n, char *class, const char **text,
		size_t *len)
{
	const char *p = b;
	if (n >= 1 && p[0] == EVK_MSG_ERROR) {
		*class = 0;
		*text = p + 1;
		*len = n - 1;
		return true;
	}
	if (n >= EVK_FAILURE_HDR && p[0] == EVK_MSG_FAILURE) {
		*class = p[1];
		*text = p + 2;
		*len = n - 2;
		return true;
	}
	return false;
}

#endif
