/* The hub's publish path: cmd/evbusd.c's frame check and hub_publish,
 * compiled in here as they are (its main renamed), on an in-memory store.
 *
 * The input is the body of a publish request (after the 'P'). A refused
 * frame stores nothing; an accepted one stores and fans out the same
 * lines, numbered head+1, head+2, ... with nothing else, each line the
 * client's with its seq in front. With EVKIT_FUZZ_STRICT=1 every stored
 * line must also be a canonical event: it scans, with a valid topic and
 * event name, a normal ts, a payload that parses, no raw control byte
 * (issue 16 item 2). */
#define main evbusd_main
#include "../../cmd/evbusd.c"
#undef main

#include "fuzz.h"
#include "json_eq.h"

#include "evkit/event.h"
#include "evkit/topic.h"

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
	if (!fuzz_strict())
		return;
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nng_msg *req, *fan = NULL;
	uint32_t count = 0;
	uint64_t head0 = hub.head, oldest0 = hub.oldest;

	if (size > 65536 || nng_msg_alloc(&req, size + 1) != 0)
		return 0;
	unsigned char *body = nng_msg_body(req);
	body[0] = EVK_MSG_PUBLISH;
	if (size)
		memcpy(body + 1, data, size);
	FUZZ_CHECK(sqlite3_exec(hub.db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK, "BEGIN");
#ifdef EVK_MSG_FAILURE /* hub_publish says why it refuses */
	char why[256];
	int rv = hub_publish(&hub, req, &fan, &count, why, sizeof(why));
#else
	int rv = hub_publish(&hub, req, &fan, &count);
#endif
	FUZZ_CHECK(rv == EVK_OK || rv == EVK_EINVAL, "hub_publish: %d", rv);

	sqlite3_stmt *st;
	FUZZ_CHECK(sqlite3_prepare_v2(hub.db, "SELECT first, last, lines FROM frames ORDER BY first",
				      -1, &st, NULL) == SQLITE_OK,
		   "prepare");
	if (rv != EVK_OK) {
		FUZZ_CHECK(hub.head == head0 && fan == NULL, "a refused frame moved head");
		FUZZ_CHECK(sqlite3_step(st) == SQLITE_DONE, "a refused frame stored rows");
	} else {
		const unsigned char *f = nng_msg_body(fan);
		size_t fl = nng_msg_len(fan);
		FUZZ_CHECK(count > 0 && fl >= EVK_EVENTS_HDR && f[0] == EVK_MSG_EVENTS &&
				   evk_get_u64(f + 1) == head0 + 1 && evk_get_u32(f + 9) == count &&
				   evk_get_u64(f + 13) == head0 + count && evk_get_u64(f + 21) == oldest0 &&
				   hub.head == head0 + count,
			   "fan-out header wrong");
		/* The fan-out: the lines sent, numbered. */
		const char *p = (const char *)f + EVK_EVENTS_HDR, *end = (const char *)f + fl;
		const char *s = (const char *)data, *send = s + size;
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
	}
	sqlite3_finalize(st);
	FUZZ_CHECK(sqlite3_exec(hub.db, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK, "ROLLBACK");
	hub.head = head0;
	nng_msg_free(req);
	return 0;
}
