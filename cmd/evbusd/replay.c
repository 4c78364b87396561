/* evbusd's refills: a subscriber that missed events asks for them from a
 * seq on, and gets what the log still holds, up to REPLAY_BYTES. */
#include "evbusd.h"

#include "evkit/err.h"
#include "evkit/proto.h"

#include <string.h>

void
hub_replay(struct hub *h, nng_msg *req)
{
	const void *b = nng_msg_body(req);
	unsigned char hdr[EVK_EVENTS_HDR];
	uint64_t from, first = 0;
	uint32_t max, count = 0;

	if (!evk_replay_get(b, nng_msg_len(req), &from, &max)) {
		reply_text(h, req, EVK_MSG_ERROR, 0, "bad replay request");
		return;
	}
	if (max > EVK_REFILL_EVENTS)
		max = EVK_REFILL_EVENTS;
	h->replay_requests++;
	nng_msg_clear(req);
	/* One allocation up front: appending line by line to a message that
	 * grows as it goes copies it over and over (nng 1.5). */
	if (nng_msg_reserve(req, sizeof(hdr) + REPLAY_BYTES + 64 * 1024) != 0 ||
	    nng_msg_append(req, hdr, sizeof(hdr)) != 0)
		goto fail;
	if (max > 0 && from <= h->head) {
		size_t bytes = 0;
		if (from < h->oldest)
			from = h->oldest;
		int rc = sqlite3_bind_int64(h->select, 1, (sqlite3_int64)from);
		while (rc == SQLITE_OK && count < max && bytes < REPLAY_BYTES &&
		       (rc = sqlite3_step(h->select)) == SQLITE_ROW) {
			rc = SQLITE_OK;
			const char *p = sqlite3_column_blob(h->select, 1);
			const char *end = p + sqlite3_column_bytes(h->select, 1);
			/* The row's lines are seqs first, first + 1, ... */
			uint64_t seq = (uint64_t)sqlite3_column_int64(h->select, 0);
			for (; p < end && count < max && bytes < REPLAY_BYTES; seq++) {
				const char *nl = memchr(p, '\n', (size_t)(end - p));
				if (nl == NULL) {
					rc = SQLITE_CORRUPT;
					break;
				}
				size_t len = (size_t)(nl - p) + 1;
				if (seq >= from) {
					if (nng_msg_append(req, p, len) != 0) {
						sqlite3_reset(h->select);
						goto fail;
					}
					if (count == 0)
						first = seq;
					bytes += len;
					count++;
				}
				p += len;
			}
		}
		sqlite3_reset(h->select);
		/* A read error must not pass for a stretch the log lacks: the
		 * subscriber would report a gap. What was read is still good. */
		if (rc != SQLITE_OK && rc != SQLITE_DONE && count == 0)
			goto fail;
	}
	evk_events_hdr_put(nng_msg_body(req), &(struct evk_events_hdr){
		.first = first, .count = count, .head = h->head, .oldest = h->oldest });
	h->replayed_events += count;
	if (nng_sendmsg(h->rep, req, 0) != 0)
		nng_msg_free(req);
	return;
fail:
	evk_warn("cannot read the log: %s", sqlite3_errmsg(h->db));
	reply_text(h, req, EVK_MSG_FAILURE, EVK_FAIL_IO, "cannot read the hub's log (see the hub's messages)");
}
