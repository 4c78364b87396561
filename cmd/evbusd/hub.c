/* evbusd's hot path: a batch of requests received together, its publish
 * frames checked, numbered and stored in one transaction, then the acks
 * and the fan-out (only after the commit), then refills and status. */
#include "evbusd.h"

#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

volatile sig_atomic_t stopping;

/* Checks that a publish frame holds only canonical events without seq
 * ('\n' after each; see evk_event_check), and sets *count. The hub trusts
 * no client: what it stores, subscribers must be able to read. On
 * failure writes the reason, naming the line, to why[0..n). */
static bool
frame_valid(const char *b, size_t n, uint32_t *count, char *why, size_t whylen)
{
	uint32_t c = 0;
	char reason[128];

	if (n == 0 || b[n - 1] != '\n') {
		snprintf(why, whylen, "malformed frame: not '\\n'-terminated lines");
		return false;
	}
	for (const char *p = b, *end = b + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)(nl - p);
		c++;
		if (evk_event_check(p, len, reason, sizeof(reason)) != EVK_OK) {
			snprintf(why, whylen, "malformed event on line %u of the frame: %.120s",
				 (unsigned)c, reason);
			return false;
		}
		p = nl + 1;
	}
	*count = c;
	return true;
}

/* For a 'Q' frame of count lines: checks its producer id and sequences
 * (from 1, strictly increasing), and sets *skip to the lines stored before (those
 * at most the highest sequence stored for the producer: a prefix). */
static int
producer_skip(struct hub *h, const struct evk_publish_once *q, uint32_t count,
	      uint32_t *skip, char *why, size_t whylen)
{
	if (!evk_producer_valid(q->id, q->idlen)) {
		snprintf(why, whylen, "malformed frame: bad producer id");
		return EVK_EINVAL;
	}
	if (q->count != count) {
		snprintf(why, whylen, "malformed frame: %u sequences for %u lines",
			 (unsigned)q->count, (unsigned)count);
		return EVK_EINVAL;
	}
	if (count > 0 && evk_get_u64(q->pseqs) == 0) {
		/* (Sequences start at 1: a 0 would be taken as stored.) */
		snprintf(why, whylen, "malformed frame: producer sequence 0");
		return EVK_EINVAL;
	}
	for (uint32_t i = 1; i < count; i++)
		if (evk_get_u64(q->pseqs + 8 * i) <= evk_get_u64(q->pseqs + 8 * (i - 1))) {
			snprintf(why, whylen, "malformed frame: producer sequences not increasing");
			return EVK_EINVAL;
		}
	uint64_t high = 0;
	int rc = sqlite3_bind_text(h->producer_get, 1, q->id, (int)q->idlen, SQLITE_STATIC);
	if (rc == SQLITE_OK && (rc = sqlite3_step(h->producer_get)) == SQLITE_ROW) {
		high = (uint64_t)sqlite3_column_int64(h->producer_get, 0);
		rc = SQLITE_DONE;
	}
	sqlite3_reset(h->producer_get);
	if (rc != SQLITE_DONE)
		return EVK_EIO;
	*skip = 0;
	while (*skip < count && evk_get_u64(q->pseqs + 8 * *skip) <= high)
		(*skip)++;
	return EVK_OK;
}

/* Records the highest sequence of q as stored. */
static int
producer_stored(struct hub *h, const struct evk_publish_once *q)
{
	uint64_t last = evk_get_u64(q->pseqs + 8 * (q->count - 1));
	int rc = sqlite3_bind_text(h->producer_set, 1, q->id, (int)q->idlen, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(h->producer_set, 2, (sqlite3_int64)last);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(h->producer_set);
	sqlite3_reset(h->producer_set);
	return rc == SQLITE_DONE ? EVK_OK : EVK_EIO;
}

/* True when req is a publish frame ('P' or 'Q'). */
static bool
is_publish(nng_msg *req)
{
	const char *lines;
	size_t len;
	struct evk_publish_once q;
	return evk_publish_get(nng_msg_body(req), nng_msg_len(req), &lines, &len) ||
	       evk_publish_once_get(nng_msg_body(req), nng_msg_len(req), &q);
}

/* Writes v in decimal and a ',' at w; returns the bytes written. (The
 * hub writes one per event: sprintf cost as much as the insert.) */
static size_t
put_seq(unsigned char *w, uint64_t v)
{
	unsigned char d[20];
	size_t n = 0;
	do
		d[n++] = (unsigned char)('0' + v % 10);
	while ((v /= 10) > 0);
	for (size_t i = 0; i < n; i++)
		w[i] = d[n - 1 - i];
	w[n] = ',';
	return n + 1;
}

/* Numbers and stores one publish frame, building its fan-out message
 * (*fan NULL when a 'Q' frame held only lines stored before: h->dropped
 * says how many of its lines were). Called inside the batch's
 * transaction. */
int
hub_publish(struct hub *h, nng_msg *req, nng_msg **fan, uint32_t *count,
	    char *why, size_t whylen)
{
	const char *b;
	size_t n;
	nng_msg *m;
	struct evk_publish_once q = { 0 };
	bool once = false;
	uint32_t skip = 0;
	int rv;

	h->dropped = 0;
	*fan = NULL;
	if (evk_publish_once_get(nng_msg_body(req), nng_msg_len(req), &q)) {
		once = true;
		b = q.lines;
		n = q.len;
	} else if (!evk_publish_get(nng_msg_body(req), nng_msg_len(req), &b, &n)) {
		snprintf(why, whylen, "malformed frame");
		return EVK_EINVAL;
	}
	if (!frame_valid(b, n, count, why, whylen))
		return EVK_EINVAL;
	if (once) {
		if ((rv = producer_skip(h, &q, *count, &skip, why, whylen)) != EVK_OK)
			return rv;
		for (uint32_t i = 0; i < skip; i++) {
			const char *nl = memchr(b, '\n', n);
			n -= (size_t)(nl + 1 - b);
			b = nl + 1;
		}
		h->dropped = skip;
		*count -= skip;
		if (*count == 0)
			return EVK_OK;
		if ((rv = producer_stored(h, &q)) != EVK_OK)
			return rv;
	}
	if (nng_msg_alloc(&m, EVK_EVENTS_HDR + n + (size_t)*count * 28) != 0)
		return EVK_ENOMEM;
	unsigned char *out = nng_msg_body(m), *w = out + EVK_EVENTS_HDR;
	unsigned char *row = w;          /* the lines of the row being filled */
	uint64_t seq = h->head, row_first = seq + 1;
	for (const char *p = b, *end = b + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)(nl - p);
		memcpy(w, "{\"seq\":", 7);
		w += 7;
		w += put_seq(w, ++seq);
		memcpy(w, p + 1, len - 1);
		w += len - 1;
		*w++ = '\n';
		p = nl + 1;
		/* The lines as fanned out are the log, up to row_events a row
		 * (so trimming whole rows stays within retain's slack). */
		if (seq - row_first + 1 < h->row_events && p < end)
			continue;
		int rc = sqlite3_bind_int64(h->insert, 1, (sqlite3_int64)row_first);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(h->insert, 2, (sqlite3_int64)seq);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_blob(h->insert, 3, row, (int)(w - row), SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(h->insert);
		sqlite3_reset(h->insert);
		if (rc != SQLITE_DONE) {
			nng_msg_free(m);
			return EVK_EIO;
		}
		row = w;
		row_first = seq + 1;
	}
	evk_events_hdr_put(out, &(struct evk_events_hdr){
		.first = h->head + 1, .count = *count, .head = seq, .oldest = h->oldest });
	nng_msg_chop(m, nng_msg_len(m) - (size_t)(w - out));
	h->head = seq;
	*fan = m;
	return EVK_OK;
}

/* Turns req into a reply of kind (with a class byte when not 0) and an
 * optional text body, keeping the routing header, and sends it. */
void
reply_text(struct hub *h, nng_msg *req, char kind, char class, const char *text)
{
	nng_msg_clear(req);
	if (nng_msg_append(req, &kind, 1) != 0 ||
	    (class && nng_msg_append(req, &class, 1) != 0) ||
	    (text && nng_msg_append(req, text, strlen(text)) != 0) ||
	    nng_sendmsg(h->rep, req, 0) != 0)
		nng_msg_free(req);
}

static void
hub_heartbeat(struct hub *h)
{
	nng_msg *m;
	unsigned char b[EVK_HEARTBEAT_LEN];

	evk_heartbeat_put(b, h->head);
	if (nng_msg_alloc(&m, 0) != 0)
		return;
	if (nng_msg_append(m, b, sizeof(b)) != 0 || nng_sendmsg(h->pub, m, 0) != 0)
		nng_msg_free(m);
}

#define WHY_MAX 200 /* a refused frame's reason */

/* What the publish frames of one batch came to, frame by frame. */
struct batch {
	nng_msg *fan[BATCH_MSGS]; /* each frame's fan-out, NULL for none */
	uint32_t counts[BATCH_MSGS], dropped[BATCH_MSGS];
	int errs[BATCH_MSGS];
	char (*whys)[WHY_MAX]; /* why a frame was refused (EVK_EINVAL) */
	char failure[256], fail_class; /* why the batch was not stored */
	bool ok;                       /* false: none of its frames was stored */
};

/* Reserves seqs in the seq file when head reached what it holds, before
 * the commit that uses them: 0, or the errno of the failed write. */
static int
hub_reserve_seqs(struct hub *h)
{
	if (!h->seqfile[0] || h->head < h->reserved)
		return 0;
	if (evk_seqfile_write(h->seqfile, h->head + SEQ_RESERVE, h->boot) != EVK_OK)
		return errno ? errno : EIO;
	h->reserved = h->head + SEQ_RESERVE;
	return 0;
}

/* Stores the batch's publish frames in one transaction. When that fails,
 * rolls back (head and oldest as before) and says why in b->failure. */
static void
hub_store_batch(struct hub *h, nng_msg **reqs, int n, struct batch *b)
{
	uint64_t head0 = h->head, oldest0 = h->oldest;
	int seq_errno = 0;
	bool ok = evk_store_exec(h->db, "BEGIN") == EVK_OK;

	for (int i = 0; ok && i < n; i++) {
		if (!is_publish(reqs[i]))
			continue;
		if (is_refused(h, nng_msg_get_pipe(reqs[i]))) {
			b->errs[i] = EVK_ECLOSED;
			continue;
		}
		b->errs[i] = hub_publish(h, reqs[i], &b->fan[i], &b->counts[i], b->whys[i],
					 WHY_MAX);
		b->dropped[i] = h->dropped;
		if (b->errs[i] == EVK_EIO || b->errs[i] == EVK_ENOMEM)
			ok = false;
		else if (b->errs[i] != EVK_OK) /* its next frame may be in this batch */
			refuse(h, nng_msg_get_pipe(reqs[i]));
	}
	if (ok)
		ok = hub_trim(h) == EVK_OK;
	/* The head is the newest row's last seq (trimming keeps that row):
	 * meta's copy is written only along with a trim, which writes pages
	 * anyway. A commit of one small event writes one page less: with
	 * 16 KiB pages, a third of its WAL checksum and write. */
	if (ok && h->oldest != oldest0) {
		ok = sqlite3_bind_int64(h->set_head, 1, (sqlite3_int64)h->head) == SQLITE_OK &&
		     sqlite3_step(h->set_head) == SQLITE_DONE;
		sqlite3_reset(h->set_head);
	}
	if (ok && (seq_errno = hub_reserve_seqs(h)) != 0)
		ok = false;
	if (ok)
		ok = evk_store_exec(h->db, "COMMIT") == EVK_OK;
	b->ok = ok;
	if (ok)
		return;
	if (seq_errno) {
		snprintf(b->failure, sizeof(b->failure),
			 "cannot store events: cannot write '%.160s': %.40s", h->seqfile,
			 strerror(seq_errno));
		b->fail_class = seq_errno == ENOSPC || seq_errno == EDQUOT || seq_errno == EFBIG
					? EVK_FAIL_TEMP : EVK_FAIL_IO;
	} else {
		b->fail_class = store_failure(h, b->failure, sizeof(b->failure));
	}
	evk_warn("%s", b->failure);
	evk_store_exec(h->db, "ROLLBACK");
	h->head = head0;
	h->oldest = oldest0;
}

/* Answers publish frame i of the batch (req, of kind): its ack, then its
 * fan-out; or why it was refused. */
static void
hub_answer_publish(struct hub *h, nng_msg *req, char kind, struct batch *b, int i)
{
	if (!b->ok || b->errs[i] != EVK_OK) {
		if (b->fan[i])
			nng_msg_free(b->fan[i]);
		h->rejected_frames++;
		if (!b->ok) /* a batch that failed to store: all its frames */
			refuse(h, nng_msg_get_pipe(req));
		if (!b->ok)
			reply_text(h, req, EVK_MSG_FAILURE, b->fail_class, b->failure);
		else
			reply_text(h, req, EVK_MSG_ERROR, 0,
				   b->errs[i] == EVK_ECLOSED
					   ? "refused: an earlier frame of this"
					     " connection was refused"
				   : b->errs[i] == EVK_EINVAL ? b->whys[i]
							      : "out of memory");
		return;
	}
	h->frames_in++;
	h->events_in += b->counts[i];
	h->events_out += (uint64_t)b->counts[i] * pipes_count(&h->subscribers);
	/* Acks first: the publisher waits on them. */
	struct evk_events_hdr fh = { 0 };
	if (b->fan[i])
		evk_events_hdr_get(nng_msg_body(b->fan[i]), nng_msg_len(b->fan[i]), &fh);
	unsigned char ack[EVK_ACK_ONCE_LEN];
	size_t ack_len = EVK_ACK_LEN;
	if (kind == EVK_MSG_PUBLISH_ONCE) {
		evk_ack_once_put(ack, fh.first, b->counts[i] + b->dropped[i], b->dropped[i]);
		ack_len = EVK_ACK_ONCE_LEN;
		h->duplicates += b->dropped[i];
	} else {
		evk_ack_put(ack, fh.first, b->counts[i]);
	}
	nng_msg_clear(req);
	if (nng_msg_append(req, ack, ack_len) != 0 || nng_sendmsg(h->rep, req, 0) != 0)
		nng_msg_free(req);
	if (b->fan[i] && nng_sendmsg(h->pub, b->fan[i], 0) != 0)
		nng_msg_free(b->fan[i]);
}

/* Handles one batch of requests: all publishes in one transaction, then
 * fan-out and acks (only after the commit), then replays and status. */
static void
hub_batch(struct hub *h, nng_msg **reqs, int n)
{
	char whys[BATCH_MSGS][WHY_MAX];
	struct batch b = { .whys = whys, .fail_class = EVK_FAIL_IO, .ok = true };
	bool any = false;

	for (int i = 0; i < n; i++) {
		if (is_publish(reqs[i]))
			any = true;
	}
	if (any)
		hub_store_batch(h, reqs, n, &b);
	for (int i = 0; i < n; i++) {
		nng_msg *req = reqs[i];
		char kind = evk_frame_kind(nng_msg_body(req), nng_msg_len(req));

		if (is_publish(req))
			hub_answer_publish(h, req, kind, &b, i);
		else if (kind == EVK_MSG_REPLAY)
			hub_replay(h, req);
		else if (kind == EVK_MSG_STATUS)
			hub_status(h, req);
		else
			reply_text(h, req, EVK_MSG_ERROR, 0, "unknown request");
	}
}

void
hub_run(struct hub *h)
{
	nng_msg *reqs[BATCH_MSGS];
	nng_time next_beat = nng_clock() + EVK_HEARTBEAT_MS;

	while (!stopping) {
		__atomic_add_fetch(&h->loops, 1, __ATOMIC_RELAXED);
		nng_time now = nng_clock();
		if (now >= next_beat) {
			hub_heartbeat(h);
			next_beat = now + EVK_HEARTBEAT_MS;
		}
		nng_socket_set_ms(h->rep, NNG_OPT_RECVTIMEO,
				  (nng_duration)(next_beat - now));
		int rv = nng_recvmsg(h->rep, &reqs[0], 0);
		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0) {
			evk_warn("receive failed: %s", nng_strerror(rv));
			break;
		}
		int n = 1;
		size_t bytes = nng_msg_len(reqs[0]);
		while (n < BATCH_MSGS && bytes < BATCH_BYTES &&
		       nng_recvmsg(h->rep, &reqs[n], NNG_FLAG_NONBLOCK) == 0)
			bytes += nng_msg_len(reqs[n++]);
		hub_batch(h, reqs, n);
	}
}
