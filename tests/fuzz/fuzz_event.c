/* The event parser and the canonical writer (lib/event.c,
 * lib/event_make.c, lib/event_check.c).
 *
 * The input is one line as evpub reads it (evk_event_from_json) and, on
 * its own, a payload as evpub takes it as an argument
 * (evk_event_from_payload). Whatever is accepted must give a line the hub
 * can store: evk_event_scan reads it back with the same topic, event and
 * ts, and its payload parses back to the same JSON value. */
#include "fuzz.h"
#include "json_eq.h"

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/topic.h"
#include "evkit/utf8.h"

#include <cjson/cJSON.h>

/* Parses text[0..n) as one JSON value with only white space after it. */
static cJSON *
parse_all(const char *text, size_t n)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(text, n, &end, 0);
	if (v == NULL)
		return NULL;
	while (end < text + n && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
		end++;
	if (end != text + n) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

/* Whether a payload (maybe a member, with a name) and the value read
 * back are the same. */
static bool
payload_eq(const cJSON *payload, const cJSON *back)
{
	cJSON tmp = *payload;
	tmp.string = NULL;
	return json_eq(&tmp, back);
}

/* Checks the line built into out (canonical, without seq) against the
 * topic, event, ts (NULL: any) and payload (NULL: {}) it came from. */
static void
check_built(const struct evk_buf *out, const char *topic, const char *event,
	    const char *ts, const cJSON *payload)
{
	struct evk_buf line = { 0 };
	struct evk_event ev;

	FUZZ_CHECK(out->len > 9 && out->p[0] == '{', "built line too short");
	FUZZ_CHECK(evk_buf_add(&line, "{\"seq\":42,", 10) == EVK_OK &&
		   evk_buf_add(&line, out->p + 1, out->len - 1) == EVK_OK, "out of memory");
	FUZZ_CHECK(evk_utf8_valid(line.p, line.len), "stored line is not valid UTF-8");
	FUZZ_CHECK(fuzz_json_no_controls(line.p, line.len),
		   "stored line holds a raw control byte in a string or a non-JSON space");
	FUZZ_CHECK(memchr(line.p, '\n', line.len) == NULL,
		   "stored line holds a newline (issue 16 item 10)");
	FUZZ_CHECK(fuzz_no_control(line.p, line.len),
		   "stored line holds a raw control byte (issue 16 items 9, 10)");
	FUZZ_CHECK(evk_event_scan(&ev, line.p, line.len) == EVK_OK,
		   "stored line does not scan: %s", line.p);
	FUZZ_CHECK(ev.seq == 42, "seq read back wrong");
	FUZZ_CHECK(ev.topic_len == strlen(topic) && memcmp(ev.topic, topic, ev.topic_len) == 0,
		   "topic read back wrong: %s", line.p);
	FUZZ_CHECK(evk_topic_valid(ev.topic, ev.topic_len), "stored topic invalid");
	FUZZ_CHECK(ev.event_len == strlen(event) && memcmp(ev.event, event, ev.event_len) == 0,
		   "event read back wrong: %s", line.p);
	char norm[EVK_TS_LEN + 1];
	FUZZ_CHECK(evk_ts_normalise(ev.ts, EVK_TS_LEN, norm) == EVK_OK &&
			   memcmp(norm, ev.ts, EVK_TS_LEN) == 0,
		   "stored ts is not normal: %s", line.p);
	if (ts)
		FUZZ_CHECK(memcmp(ts, ev.ts, EVK_TS_LEN) == 0, "ts read back wrong");

	/* The whole line is one JSON object of the five members, in order. */
	cJSON *whole = parse_all(line.p, line.len);
	FUZZ_CHECK(whole != NULL, "stored line is not JSON: %s", line.p);
	static const char *const names[] = { "seq", "ts", "topic", "event", "payload" };
	const cJSON *m = whole->child;
	for (size_t i = 0; i < 5; i++, m = m->next)
		FUZZ_CHECK(m && m->string && strcmp(m->string, names[i]) == 0,
			   "stored line's members are wrong: %s", line.p);
	FUZZ_CHECK(m == NULL, "stored line has extra members: %s", line.p);

	cJSON *back = parse_all(ev.payload, ev.payload_len);
	FUZZ_CHECK(back != NULL, "stored payload does not parse: %s", line.p);
	if (payload == NULL)
		FUZZ_CHECK(cJSON_IsObject(back) && back->child == NULL, "default payload is not {}");
	else
		FUZZ_CHECK(payload_eq(payload, back), "payload read back differs: %s", line.p);
	cJSON_Delete(back);
	cJSON_Delete(whole);
	evk_buf_release(&line);
}

/* The hub's single-pass check of a payload (evk_event_check) accepts
 * exactly what the lexical check on one line and cJSON, parsing to the
 * end, accept together (the check the hub ran before), but for a leading
 * byte order mark, which made a stored line that is not JSON. */
static void
check_payload_check(const char *text, size_t size)
{
	static const char head[] = "{\"ts\":\"2026-01-01T00:00:00.000000Z\",\"topic\":\"a\","
				   "\"event\":\"b\",\"payload\":";
	static char line[sizeof(head) + 65536 + 1];
	char why[512];
	size_t at;
	const char *lw, *lh, *end = NULL;

	if (size > 65536 || !evk_utf8_valid(text, size))
		return;
	memcpy(line, head, sizeof(head) - 1);
	memcpy(line + sizeof(head) - 1, text, size);
	line[sizeof(head) - 1 + size] = '}';
	bool hub = evk_event_check(line, sizeof(head) + size, why, sizeof(why)) == EVK_OK;
	/* A byte order mark cJSON skips at the start of its text; within a
	 * line it is not JSON: refused. */
	bool old = size > 0 && !(size >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) &&
		   evk_json_lex_check(text, size, true, &at, &lw, &lh) == EVK_OK;
	if (old) {
		cJSON *v = cJSON_ParseWithLengthOpts(text, size, &end, 0);
		old = v != NULL && end == text + size;
		cJSON_Delete(v);
	}
	FUZZ_CHECK(hub == old, "the hub %s a payload lex+cJSON %s: %.*s (%s)",
		   hub ? "accepts" : "refuses", old ? "accept" : "refuse", (int)size, text,
		   hub ? "" : why);
}

/* What evpub built, the hub accepts. */
static void
check_hub_accepts(const struct evk_buf *out)
{
	char why[512];
	FUZZ_CHECK(evk_event_check(out->p, out->len, why, sizeof(why)) == EVK_OK,
		   "the hub refuses a line evpub built: %s: %s", why, out->p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evk_buf out = { 0 };
	char why[512];
	const char *text = (const char *)data;

	/* One input line: evpub splits its input at '\n'. */
	if (memchr(data, '\n', size) == NULL &&
	    evk_event_from_json(&out, text, size, why, sizeof(why)) == EVK_OK) {
		cJSON *in = parse_all(text, size);
		FUZZ_CHECK(in != NULL, "accepted a line that is not JSON");
		const cJSON *ts = cJSON_GetObjectItemCaseSensitive(in, "ts");
		char norm[EVK_TS_LEN + 1];
		FUZZ_CHECK(ts == NULL || evk_ts_normalise(ts->valuestring, strlen(ts->valuestring),
							  norm) == EVK_OK,
			   "accepted a bad ts");
		check_built(&out,
			    cJSON_GetObjectItemCaseSensitive(in, "topic")->valuestring,
			    cJSON_GetObjectItemCaseSensitive(in, "event")->valuestring,
			    ts ? norm : NULL, cJSON_GetObjectItemCaseSensitive(in, "payload"));
		check_hub_accepts(&out);
		cJSON_Delete(in);
	}

	/* The same bytes as a payload given on evpub's command line. */
	evk_buf_reset(&out);
	if (evk_event_from_payload(&out, "fuzz:topic", "fuzzed", text, size, why,
				   sizeof(why)) == EVK_OK) {
		cJSON *in = parse_all(text, size);
		FUZZ_CHECK(in != NULL, "accepted a payload that is not JSON");
		check_built(&out, "fuzz:topic", "fuzzed", NULL, in);
		check_hub_accepts(&out);
		cJSON_Delete(in);
	}
	evk_buf_release(&out);
	check_payload_check(text, size);
	return 0;
}
