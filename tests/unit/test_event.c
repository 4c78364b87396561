/* The envelope: input validation, canonical form, fast scan, timestamps. */
#include "evkit/event.h"

#include "evkit/err.h"
#include "evkit/utf8.h"

#include "check.h"

#include <cjson/cJSON.h>
#include <string.h>

static const struct {
	const char *input;
	const char *error; /* NULL: accepted; else a substring of the reason */
} inputs[] = {
	{ "{\"topic\":\"a:b\",\"event\":\"e\"}", NULL },
	{ "{\"topic\":\"a:b\",\"event\":\"e\",\"payload\":[1,\"x\"]}", NULL },
	{ "{\"seq\":5,\"topic\":\"a\",\"event\":\"e\",\"payload\":null}", NULL },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"ts\":\"2026-11-22T22:01:02.345678Z\"}", NULL },
	{ "  {\"topic\":\"a\",\"event\":\"e\"}  ", NULL },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"extra\":1}", "unknown field 'extra'" },
	{ "{\"topic\":\"a\",\"topic\":\"b\",\"event\":\"e\"}", "duplicate field" },
	{ "{\"topic\":\"a::b\",\"event\":\"e\"}", "invalid topic" },
	{ "{\"topic\":\"a\",\"event\":\"e e\"}", "invalid event name" },
	{ "{\"event\":\"e\"}", "topic" },
	{ "{\"topic\":\"a\"}", "event" },
	{ "{\"topic\":1,\"event\":\"e\"}", "topic" },
	{ "[1,2]", "not a JSON object" },
	{ "{\"topic\":\"a\",", "invalid JSON" },
	{ "{\"topic\":\"a\",\"event\":\"e\"} x", "trailing data" },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"ts\":\"yesterday\"}", "RFC 3339" },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"ts\":\"2026-11-22T22:01:02+01:00\"}", "RFC 3339" },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"payload\":\"\xff\"}", "UTF-8" },
	{ "", "invalid JSON" },
};

/* What follows "ts" in the canonical line: the payload is copied as
 * written when the input is laid out canonically, printed otherwise. */
static const struct {
	const char *input;
	const char *tail;
} tails[] = {
	{ "{\"topic\":\"a\",\"event\":\"e\",\"payload\":{\"n\":1.0}}",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":{\"n\":1.0}}" },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"payload\": [ {\"x\":\"}\"} ] } \r",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":[ {\"x\":\"}\"} ]}" },
	{ "{\"topic\":\"a\",\"event\":\"e\",\"payload\":\"q\\\"\\n\"}",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":\"q\\\"\\n\"}" },
	/* Not canonical: printed from the parse. */
	{ "{ \"topic\":\"a\",\"event\":\"e\",\"payload\":{\"n\":1.0}}",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":{\"n\":1}}" },
	{ "{\"event\":\"e\",\"topic\":\"a\",\"payload\":2}",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":2}" },
	{ "{\"topic\":\"a\\/b\",\"event\":\"e\",\"payload\":3}",
	  ",\"topic\":\"a/b\",\"event\":\"e\",\"payload\":3}" },
	{ "{\"topic\":\"a\",\"event\":\"e\"}",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":{}}" },
	{ "{\"seq\":1,\"topic\":\"a\",\"event\":\"e\",\"payload\":4}",
	  ",\"topic\":\"a\",\"event\":\"e\",\"payload\":4}" },
};

static const struct {
	const char *in;
	const char *out; /* NULL: rejected */
} stamps[] = {
	{ "2026-11-22T22:01:02.345678Z", "2026-11-22T22:01:02.345678Z" },
	{ "2026-11-22T22:01:02Z", "2026-11-22T22:01:02.000000Z" },
	{ "2026-11-22t22:01:02.3z", "2026-11-22T22:01:02.300000Z" },
	{ "2026-11-22T22:01:02.123456789Z", "2026-11-22T22:01:02.123456Z" },
	{ "2026-11-22T22:01:02+00:00", "2026-11-22T22:01:02.000000Z" },
	{ "2026-13-22T22:01:02Z", NULL },
	{ "2026-02-30T22:01:02Z", NULL },
	{ "2026-11-22T24:01:02Z", NULL },
	{ "2026-11-22T22:01:02.Z", NULL },
	{ "2026-11-22 22:01:02Z", NULL },
	{ "2026-11-22T22:01:02", NULL },
};

/* JSON string escaping the plain way, one byte at a time: the reference
 * evk_buf_add_json_string's word-at-a-time skip must agree with. */
static void
escape_bytewise(struct evk_buf *b, const char *s, size_t n)
{
	evk_buf_reset(b);
	evk_buf_addch(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[8];
		if (c == '"' || c == '\\')
			snprintf(e, sizeof(e), "\\%c", c);
		else if (c == '\n' || c == '\r' || c == '\t')
			snprintf(e, sizeof(e), "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
		else if (c < 0x20 || c == 0x7f)
			snprintf(e, sizeof(e), "\\u%04x", c);
		else
			snprintf(e, sizeof(e), "%c", c);
		evk_buf_addstr(b, e);
	}
	evk_buf_addch(b, '"');
}

int
main(void)
{
	struct evk_buf out = EVK_BUF_INIT(0);
	char why[256], ts[EVK_TS_LEN + 1];

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		evk_buf_reset(&out);
		why[0] = '\0';
		int rv = evk_event_from_json(&out, inputs[i].input, strlen(inputs[i].input),
					     why, sizeof(why));
		if (inputs[i].error == NULL) {
			CHECK(rv == EVK_OK, "accepts %s (%s)", inputs[i].input, why);
		} else {
			CHECK(rv != EVK_OK, "rejects %s", inputs[i].input);
			CHECK(strstr(why, inputs[i].error) != NULL,
			      "reason for %s: want '%s', got '%s'", inputs[i].input,
			      inputs[i].error, why);
			CHECK(out.len == 0, "nothing written for %s", inputs[i].input);
		}
	}
	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		evk_buf_reset(&out);
		int rv = evk_event_from_json(&out, tails[i].input, strlen(tails[i].input),
					     why, sizeof(why));
		const char *tail = rv == EVK_OK && out.len > 7 + EVK_TS_LEN + 1
					   ? out.p + 7 + EVK_TS_LEN + 1
					   : "";
		CHECK(rv == EVK_OK && strlen(tail) == out.len - (size_t)(tail - out.p) &&
			      strcmp(tail, tails[i].tail) == 0,
		      "canonical %s: got %s", tails[i].input, tail);
	}
	for (size_t i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
		int rv = evk_ts_normalise(stamps[i].in, strlen(stamps[i].in), ts);
		if (stamps[i].out)
			CHECK(rv == EVK_OK && strcmp(ts, stamps[i].out) == 0,
			      "ts %s -> %s", stamps[i].in, stamps[i].out);
		else
			CHECK(rv != EVK_OK, "ts %s rejected", stamps[i].in);
	}

	/* The canonical form keeps the given ts and orders the members. */
	evk_buf_reset(&out);
	const char *in = "{\"payload\":{\"b\":[1,2]},\"event\":\"sync\",\"ts\":"
			 "\"2026-11-22T22:01:02.345678Z\",\"topic\":\"case:synced:7\"}";
	CHECK(evk_event_from_json(&out, in, strlen(in), why, sizeof(why)) == EVK_OK,
	      "canonical input");
	CHECK(strcmp(out.p, "{\"ts\":\"2026-11-22T22:01:02.345678Z\",\"topic\":"
			    "\"case:synced:7\",\"event\":\"sync\",\"payload\":{\"b\":[1,2]}}") == 0,
	      "canonical form: %s", out.p);

	/* Scan of a stored line (with seq), including an escaped topic. */
	struct evk_event ev;
	const char *line = "{\"seq\":42,\"ts\":\"2026-11-22T22:01:02.345678Z\",\"topic\":"
			   "\"process:9f2c\",\"event\":\"step_started\",\"payload\":{\"step\":\"v\"}}";
	CHECK(evk_event_scan(&ev, line, strlen(line)) == EVK_OK, "scan");
	CHECK(ev.seq == 42, "seq %llu", (unsigned long long)ev.seq);
	CHECK(ev.topic_len == 12 && memcmp(ev.topic, "process:9f2c", 12) == 0, "topic");
	CHECK(ev.event_len == 12 && memcmp(ev.event, "step_started", 12) == 0, "event");
	CHECK(ev.payload_len == 12 && memcmp(ev.payload, "{\"step\":\"v\"}", 12) == 0,
	      "payload %.*s", (int)ev.payload_len, ev.payload);
	const char *esc = "{\"seq\":1,\"ts\":\"2026-11-22T22:01:02.345678Z\",\"topic\":"
			  "\"a\\\"b\",\"event\":\"e\",\"payload\":1}";
	CHECK(evk_event_scan(&ev, esc, strlen(esc)) == EVK_OK && ev.topic_len == 3 &&
		      memcmp(ev.topic, "a\"b", 3) == 0,
	      "escaped topic unescaped");
	const char *bad[] = { "", "{}", "{\"seq\":x}", "{\"seq\":1,\"ts\":\"short\"}",
			      "{\"seq\":1,\"ts\":\"2026-11-22T22:01:02.345678Z\",\"topic\":\"a" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(evk_event_scan(&ev, bad[i], strlen(bad[i])) == EVK_EINVAL,
		      "scan rejects %s", bad[i]);

	/* Payload mode; a built event round-trips through scan. */
	evk_buf_reset(&out);
	const char *pl = "{\"q\":\"a\\\"b\\n\"}";
	CHECK(evk_event_from_payload(&out, "t:1", "e", pl, strlen(pl), why,
				     sizeof(why)) == EVK_OK,
	      "payload mode: %s", why);
	char with_seq[512];
	snprintf(with_seq, sizeof(with_seq), "{\"seq\":7,%s", out.p + 1);
	CHECK(evk_event_scan(&ev, with_seq, strlen(with_seq)) == EVK_OK && ev.seq == 7,
	      "built line scans");

	/* Numbers keep their value when the payload is printed again (with
	 * a ts, the line is rebuilt): cJSON's 15 digits lost the last bits
	 * of 1.0000000000000002 (found by tests/fuzz). */
	{
		const char *in = "{\"topic\":\"t\",\"event\":\"e\",\"ts\":\"2026-01-01T00:00:00Z\","
				 "\"payload\":{\"x\":1.0000000000000002,\"y\":[0.1,5.8888888888888888e55,3]}}";
		evk_buf_reset(&out);
		CHECK(evk_event_from_json(&out, in, strlen(in), why, sizeof(why)) == EVK_OK, "%s", why);
		CHECK(strstr(out.p, "\"payload\":{\"x\":1.0000000000000002,\"y\":[0.1,5.888888888888889e+55,3]}") != NULL,
		      "exact numbers: %s", out.p);
		const char *n = "1.0000000000000002";
		evk_buf_reset(&out);
		cJSON *num = cJSON_Parse(n);
		CHECK(num && evk_event_build(&out, NULL, "t", "e", num, NULL) == EVK_OK &&
			      strstr(out.p, "\"payload\":1.0000000000000002}") != NULL,
		      "exact number payload: %s", out.p);
		cJSON_Delete(num);
	}

	/* UTF-8 */
	CHECK(evk_utf8_valid("plain ascii text, long enough", 29), "ascii");
	CHECK(evk_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9), "multi-byte");
	CHECK(!evk_utf8_valid("\xc0\xaf", 2), "overlong");
	CHECK(!evk_utf8_valid("\xed\xa0\x80", 3), "surrogate");
	CHECK(!evk_utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF");
	CHECK(!evk_utf8_valid("abcdefg\xc3", 8), "truncated");

	/* Raw control bytes in JSON text (found by tests/fuzz). */
	{
		size_t at = 0;
		const char *lw, *lh;
#define LEX(s, n) evk_json_lex_check(s, n, false, &at, &lw, &lh)
		CHECK(LEX("{\"a\":\t[1,\r\n2]}", 14) == EVK_OK, "JSON white space");
		CHECK(LEX("\"a\\\"\\t\"", 7) == EVK_OK, "escapes");
		CHECK(LEX("\"a\tb\"", 5) == EVK_EINVAL && at == 2, "TAB in a string");
		CHECK(LEX("{}\f", 3) == EVK_EINVAL && at == 2, "form feed outside");
		CHECK(LEX("1\0", 2) == EVK_EINVAL && at == 1, "NUL");
#undef LEX
	}

	/* JSON strings: runs copied whole, each escape in place. */
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} js[] = {
		{ "", 0, "\"\"" },
		{ "plain text", 10, "\"plain text\"" },
		{ "a\"b\\c", 5, "\"a\\\"b\\\\c\"" },
		{ "\n\r\t", 3, "\"\\n\\r\\t\"" },
		{ "x\x01y\x7f", 4, "\"x\\u0001y\\u007f\"" },
		{ "nul\0end", 7, "\"nul\\u0000end\"" },
		{ "\xc3\xa9t\xc3\xa9\"", 6, "\"\xc3\xa9t\xc3\xa9\\\"\"" },
	};
	for (size_t i = 0; i < sizeof(js) / sizeof(js[0]); i++) {
		evk_buf_reset(&out);
		CHECK(evk_buf_add_json_string(&out, js[i].in, js[i].n) == EVK_OK &&
			      strcmp(out.p, js[i].want) == 0 && out.len == strlen(js[i].want),
		      "json string %zu: got %s, want %s", i, out.p, js[i].want);
	}
	/* The word-at-a-time skip agrees with a byte-by-byte escape: every
	 * byte value at every place of strings around a word's length, then
	 * random strings rich in bytes that must be escaped. */
	struct evk_buf want = EVK_BUF_INIT(0);
	char text[40];
	int differ = 0;
	for (size_t n = 1; n <= 20; n++)
		for (size_t at = 0; at < n; at++)
			for (int v = 0; v < 256; v++) {
				memset(text, 'a' + (int)(n % 26), n);
				text[at] = (char)v;
				evk_buf_reset(&out);
				escape_bytewise(&want, text, n);
				if (evk_buf_add_json_string(&out, text, n) != EVK_OK ||
				    out.len != want.len || memcmp(out.p, want.p, out.len) != 0)
					differ++;
			}
	static const char mix[] = { '"', '\\', '\n', '\t', 0, 0x1f, 0x20, 0x7f, (char)0x80, (char)0xff,
				    'x', 'y', 'z', ' ' };
	unsigned seed = 12345;
	for (int k = 0; k < 20000; k++) {
		size_t n = (seed = seed * 1103515245u + 12345u) >> 16 & 31;
		for (size_t i = 0; i < n; i++)
			text[i] = mix[((seed = seed * 1103515245u + 12345u) >> 16) % sizeof(mix)];
		evk_buf_reset(&out);
		escape_bytewise(&want, text, n);
		if (evk_buf_add_json_string(&out, text, n) != EVK_OK || out.len != want.len ||
		    memcmp(out.p, want.p, out.len) != 0)
			differ++;
	}
	CHECK(differ == 0, "json string: %d inputs escaped unlike the byte-by-byte reference", differ);
	evk_buf_release(&want);

	struct evk_buf small = EVK_BUF_INIT(8);
	CHECK(evk_buf_add_json_string(&small, "abc\"", 4) == EVK_OK &&
		      strcmp(small.p, "\"abc\\\"\"") == 0,
	      "json string fills a capped buffer to the byte");
	evk_buf_reset(&small);
	CHECK(evk_buf_add_json_string(&small, "abcde\"", 6) == EVK_ETOOLONG,
	      "json string past the cap is refused");
	evk_buf_reset(&small);
	for (int i = 0; i < 8; i++)
		CHECK(evk_buf_addch(&small, 'a') == EVK_OK, "addch %d", i);
	CHECK(evk_buf_addch(&small, 'a') == EVK_ETOOLONG && small.len == 8 &&
		      strcmp(small.p, "aaaaaaaa") == 0,
	      "addch stops at the cap");
	evk_buf_release(&small);

	/* A payload printed from the tree keeps DEL and C1 escaped (cJSON
	 * prints them raw, which the hub refuses). */
	{
		static const char in[] = "{\"ts\":\"2026-11-22T22:01:02Z\",\"topic\":\"a\","
					 "\"event\":\"e\",\"payload\":[\"\\u009e\\u007fx\xc2\xa0\"]}";
		char w[256];
		evk_buf_reset(&out);
		CHECK(evk_event_from_json(&out, in, sizeof(in) - 1, w, sizeof(w)) == EVK_OK &&
			      strstr(out.p, "[\"\\u009e\\u007fx\xc2\xa0\"]") != NULL &&
			      evk_event_check(out.p, out.len, w, sizeof(w)) == EVK_OK,
		      "DEL and C1 printed escaped: %s", out.p);
	}

	/* The hub's single-pass payload check (evk_event_check). */
	static const struct {
		const char *payload;
		const char *error; /* NULL: accepted; else a substring */
	} payloads[] = {
		{ "{}", NULL }, { "[]", NULL }, { " {}", NULL }, { "0", NULL }, { "-1.5e3", NULL },
		{ "\"\\u00e9\\ud83d\\ude00\\n\\/\"", NULL }, { "true", NULL }, { "null", NULL },
		{ "{\"a\" : [1, {\"b\":false}, \"x\"] , \"c\":{}}", NULL },
		{ "[[[[]]],[]]", NULL },
		{ "{} ", "payload is not one JSON value at column 73" },
		{ "[1,]", "not one JSON value" }, { "{\"a\"}", "not one JSON value" },
		{ "{\"a\":1,}", "not one JSON value" }, { "[1 2]", "not one JSON value" },
		{ "{1:2}", "not one JSON value" }, { "[}", "not one JSON value" },
		{ "{]", "not one JSON value" }, { "[1]]", "not one JSON value" },
		{ "[", "not one JSON value" }, { "\"abc", "not one JSON value" },
		{ "tru", "not one JSON value" }, { "truex", "not one JSON value" },
		{ "nul", "not one JSON value" }, { "'a'", "not one JSON value" },
		{ "\xef\xbb\xbf{}", "not one JSON value" },
		{ "01", "invalid number" }, { "1e999", "number out of range" },
		{ "\"\\x\"", "invalid escape at column 72 in a string" },
		{ "\"\\uZZZZ\"", "invalid escape" }, { "\"\\ud800\"", "invalid escape" },
		{ "\"\\udc00\"", "invalid escape" }, { "\"\\ud800\\u0041\"", "invalid escape" },
		{ "\"\\u12\"", "invalid escape" },
		{ "\"a\tb\"", "raw control byte at column 73 in a string" },
		{ "\"a\x7f\"", "raw control byte" }, { "\"a\xc2\x85\"", "raw control byte" },
		{ "\"\xc2\xa0\"", NULL },
		{ "[1,\t2]", "raw control byte at column 74 outside a string" },
	};
	static const char ok[] = "{\"ts\":\"2026-01-01T00:00:00.000000Z\",\"topic\":\"a\","
				 "\"event\":\"b\",\"payload\":";
	char hubline[256];
	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		int len = snprintf(hubline, sizeof(hubline), "%s%s}", ok, payloads[i].payload);
		int rv = evk_event_check(hubline, (size_t)len, why, sizeof(why));
		if (payloads[i].error == NULL)
			CHECK(rv == EVK_OK, "payload %s refused: %s", payloads[i].payload, why);
		else
			CHECK(rv == EVK_EINVAL && strstr(why, payloads[i].error),
			      "payload %s: got %s, want %s", payloads[i].payload,
			      rv == EVK_OK ? "accepted" : why, payloads[i].error);
	}
	/* 1000 levels of nesting pass (cJSON's limit), 1001 do not. */
	static char deep[3000];
	for (int levels = 1000; levels <= 1001; levels++) {
		int len = snprintf(deep, sizeof(deep), "%s", ok);
		memset(deep + len, '[', (size_t)levels);
		memset(deep + len + levels, ']', (size_t)levels);
		deep[len + 2 * levels] = '}';
		int rv = evk_event_check(deep, (size_t)len + 2 * (size_t)levels + 1, why, sizeof(why));
		CHECK(levels == 1000 ? rv == EVK_OK : rv == EVK_EINVAL && strstr(why, "nested too deep"),
		      "%d levels of nesting", levels);
	}
	/* The word-at-a-time string scan finds a stop byte at every place: a
	 * string of n plain bytes with byte v at place at. */
	int missed = 0;
	for (size_t n = 1; n <= 20; n++)
		for (size_t at = 0; at < n; at++)
			for (int v = 1; v < 256; v++) {
				int len = snprintf(hubline, sizeof(hubline), "%s\"", ok);
				memset(hubline + len, 'a', n);
				hubline[len + (int)at] = (char)v;
				hubline[len + (int)n] = '"';
				hubline[len + (int)n + 1] = '}';
				size_t total = (size_t)len + n + 2;
				bool want = v >= 0x20 && v < 0x7f && v != '"' && v != '\\';
				bool valid = evk_utf8_valid(hubline, total);
				if (valid && (evk_event_check(hubline, total, why, sizeof(why)) == EVK_OK) != want)
					missed++;
			}
	CHECK(missed == 0, "string scan: %d bytes judged wrong", missed);

	evk_buf_release(&out);
	return check_done("test_event");
}
