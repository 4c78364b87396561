/* The hub's publish path: cmd/evbusd/'s frame check and hub_publish,
 * linked in as they are (every object of cmd/evbusd/ but main.o, see the
 * Makefile), on an in-memory store.
 *
 * The input is the body of a publish request (after the 'P'). A refused
 * frame stores nothing; an accepted one stores and fans out the same
 * lines, numbered head+1, head+2, ... with nothing else, each line the
 * client's with its seq in front, and each a canonical event: it scans,
 * with a valid topic and event name, a normal ts, a payload that parses,
 * no raw control byte (issue 16 item 2). A publish-once ('Q') frame sent
 * a second time stores nothing (issue 16 item 3). */
#include "../../cmd/evbusd/evbusd.h"

#include "fuzz.h"
#include "json_eq.h"

#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/proto.h"
#include "evkit/topic.h"
#include "evkit/utf8.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static struct hub hub;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	hub.retain = 1000000;
	hub.row_events = 3; /* small rows: a frame spans several */
	hub_open_store(&hub, NULL);
	return 0;
}

/* Checks one stored or fanned-out line, seq in front, '\n' after. */
static void
check_line(const char *l, size_t n, uint64_t seq, const char *sent, size_t sent_len)
{
	char head[32];
	int hl = snprintf(head, sizeof(head), "{\"seq\":%llu,", (unsigned long long)seq);
	FUZZ_CHECK(n == (size_t)hl + sent_len - 1 && memcmp(l, head, (size_t)hl) == 0 &&
			   memcmp(l + hl, sent + 1, sent_len - 1) == 0,
		   "line %llu is not the one sent with its seq", (unsigned long long)seq);
	struct evk_event ev;
	char norm[EVK_TS_LEN + 1];
	FUZZ_CHECK(evk_event_scan(&ev, l, n) == EVK_OK && ev.seq == seq,
		   "stored line does not scan: %.*s", (int)n, l);
	FUZZ_CHECK(evk_topic_valid(ev.topic, ev.topic_len), "stored topic invalid");
	FUZZ_CHECK(evk_event_name_valid(ev.event, ev.event_len), "stored event name invalid");
	FUZZ_CHECK(evk_ts_normalise(ev.ts, EVK_TS_LEN, norm) == EVK_OK &&
			   memcmp(norm, ev.ts, EVK_TS_LEN) == 0,
		   "stored ts not normal");
	FUZZ_CHECK(evk_utf8_valid(l, n) && fuzz_json_no_controls(l, n) &&
			   fuzz_no_control(l, n),
		   "stored line holds invalid UTF-8 or a control byte");
	cJSON *v = cJSON_ParseWithLength(ev.payload, ev.payload_len);
	FUZZ_CHECK(v != NULL, "stored payload does not parse");
	cJSON_Delete(v);
}

/* Publishes frame[0..n) as one request. */
static int
publish(const void *frame, size_t n, nng_msg **fan, uint32_t *count)
{
	nng_msg *req;
	char why[256];
	if (nng_msg_alloc(&req, n) != 0)
		return EVK_ENOMEM;
	memcpy(nng_msg_body(req), frame, n);
	*fan = NULL;
	*count = 0;
	int rv = hub_publish(&hub, req, fan, count, why, sizeof(why));
	FUZZ_CHECK(rv == EVK_OK || rv == EVK_EINVAL, "hub_publish: %d", rv);
	if (rv == EVK_EINVAL)
		FUZZ_CHECK(why[0], "a refusal without a reason");
	nng_msg_free(req);
	return rv;
}

/* The input is the body of a 'P' frame or, when it starts with 'Q', a
 * whole publish-once frame (producer id, sequences, lines). */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nng_msg *fan = NULL;
	uint32_t count = 0;
	uint64_t head0 = hub.head, oldest0 = hub.oldest;
	static unsigned char frame[65536 + 1];
	struct evk_publish_once q;
	bool once = size > 0 && data[0] == EVK_MSG_PUBLISH_ONCE;
	size_t n = once ? size : size + 1;
	const char *s, *send; /* the lines sent */

	if (size > 65536)
		return 0;
	if (once) {
		memcpy(frame, data, size);
	} else {
		frame[0] = EVK_MSG_PUBLISH;
		if (size)
			memcpy(frame + 1, data, size);
	}
	if (once && evk_publish_once_get(frame, n, &q)) {
		s = q.lines;
		send = q.lines + q.len;
	} else {
		s = (const char *)frame + 1;
		send = (const char *)frame + n;
	}
	FUZZ_CHECK(sqlite3_exec(hub.db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK, "BEGIN");
	int rv = publish(frame, n, &fan, &count);

	sqlite3_stmt *st;
	FUZZ_CHECK(sqlite3_prepare_v2(hub.db, "SELECT first, last, lines FROM frames ORDER BY first",
				      -1, &st, NULL) == SQLITE_OK,
		   "prepare");
	if (rv != EVK_OK || fan == NULL) {
		/* Refused, or (a 'Q' frame) every line stored before. */
		FUZZ_CHECK(rv != EVK_OK || (once && count == 0 && hub.dropped > 0),
			   "an accepted frame without fan-out");
		FUZZ_CHECK(hub.head == head0 && fan == NULL, "a frame not stored moved head");
		FUZZ_CHECK(sqlite3_step(st) == SQLITE_DONE, "a frame not stored stored rows");
	} else {
		const unsigned char *f = nng_msg_body(fan);
		size_t fl = nng_msg_len(fan);
		FUZZ_CHECK(count > 0 && fl >= EVK_EVENTS_HDR && f[0] == EVK_MSG_EVENTS &&
				   evk_get_u64(f + 1) == head0 + 1 && evk_get_u32(f + 9) == count &&
				   evk_get_u64(f + 13) == head0 + count && evk_get_u64(f + 21) == oldest0 &&
				   hub.head == head0 + count,
			   "fan-out header wrong");
		/* The fan-out: the lines sent (but those dropped as stored
		 * before), numbered. */
		for (uint32_t i = 0; once && i < hub.dropped; i++) {
			const char *snl = memchr(s, '\n', (size_t)(send - s));
			FUZZ_CHECK(snl, "dropped more lines than sent");
			s = snl + 1;
		}
		const char *p = (const char *)f + EVK_EVENTS_HDR, *end = (const char *)f + fl;
		uint64_t seq = head0;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *snl = memchr(s, '\n', (size_t)(send - s));
			FUZZ_CHECK(nl && snl, "fan-out and frame differ in lines");
			check_line(p, (size_t)(nl - p), ++seq, s, (size_t)(snl - s));
			p = nl + 1;
			s = snl + 1;
		}
		FUZZ_CHECK(s == send && seq == head0 + count, "fan-out holds %llu of %u events",
			   (unsigned long long)(seq - head0), count);
		/* The log: rows of consecutive events whose lines, joined, are
		 * the fan-out's. */
		size_t off = 0, body_len = fl - EVK_EVENTS_HDR;
		uint64_t next = head0 + 1;
		while (sqlite3_step(st) == SQLITE_ROW) {
			uint64_t first = (uint64_t)sqlite3_column_int64(st, 0);
			uint64_t last = (uint64_t)sqlite3_column_int64(st, 1);
			const void *b = sqlite3_column_blob(st, 2);
			size_t bl = (size_t)sqlite3_column_bytes(st, 2);
			FUZZ_CHECK(first == next && last >= first && last - first < hub.row_events,
				   "row %llu-%llu out of order", (unsigned long long)first,
				   (unsigned long long)last);
			FUZZ_CHECK(off + bl <= body_len && memcmp(b, f + EVK_EVENTS_HDR + off, bl) == 0,
				   "stored row differs from the fan-out");
			off += bl;
			next = last + 1;
		}
		FUZZ_CHECK(off == body_len && next == head0 + count + 1, "log and fan-out differ");
		nng_msg_free(fan);
		if (once) {
			/* Exactly once: the same frame again stores nothing. */
			uint64_t head1 = hub.head;
			FUZZ_CHECK(publish(frame, n, &fan, &count) == EVK_OK && fan == NULL &&
					   count == 0 && hub.head == head1,
				   "a 'Q' frame sent twice was stored twice");
		}
	}
	sqlite3_finalize(st);
	FUZZ_CHECK(sqlite3_exec(hub.db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK, "ROLLBACK");
	hub.head = head0;
	return 0;
}
