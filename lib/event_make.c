/* Canonical event lines from input: from fields and a payload
 * (evk_event_build, evk_event_from_payload) and from a JSON line
 * (evk_event_from_json, with evpub's fast path). */
#include "evkit/event.h"
#include "event_impl.h"

#include "evkit/err.h"
#include "evkit/topic.h"
#include "evkit/utf8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes d with the fewest significant digits (15 to 17) that read back
 * as d exactly; false when none does (not finite). */
static bool
exact_number(double d, char *buf, size_t n)
{
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(buf, n, "%.*g", digits, d);
		if (strtod(buf, NULL) == d)
			return true;
	}
	return false;
}

/* Whether cJSON would print a number in v so that it reads back as
 * another: it writes 15 digits when they come within DBL_EPSILON, so
 * 1.0000000000000002 would be stored as 1 (found by tests/fuzz). */
static bool
needs_exact(const cJSON *v)
{
	char buf[32];
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (!isfinite(d) || (fabs(d) < 1e15 && d == floor(d)))
			return false; /* null, or printed whole */
		snprintf(buf, sizeof(buf), "%1.15g", d);
		return strtod(buf, NULL) != d;
	}
	for (const cJSON *c = v->child; c; c = c->next)
		if (needs_exact(c))
			return true;
	return false;
}

/* Replaces each number of v (a copy) that needs it by its exact text. */
static bool
make_exact(cJSON *v)
{
	char buf[32];
	for (cJSON *c = v->child, *next; c; c = next) {
		next = c->next;
		if (cJSON_IsNumber(c) && needs_exact(c)) {
			exact_number(c->valuedouble, buf, sizeof(buf));
			cJSON *raw = cJSON_CreateRaw(buf);
			if (raw == NULL)
				return false;
			raw->string = c->string; /* the member's name moves over */
			raw->type |= c->type & cJSON_StringIsConst;
			c->string = NULL;
			cJSON_ReplaceItemViaPointer(v, c, raw);
		} else if (!make_exact(c)) {
			return false;
		}
	}
	return true;
}

/* Escapes each DEL and C1 character (C2 80-9F) in out->p[from..) as
 * \u00XX: cJSON prints them raw, and the hub refuses a raw control byte
 * (terminals act on them). In JSON that cJSON printed they stand only
 * inside strings. */
static int
escape_raw_controls(struct evk_buf *out, size_t from)
{
	size_t i = from;
	while (i < out->len && out->p[i] != 0x7f &&
	       !((unsigned char)out->p[i] == 0xc2 && i + 1 < out->len &&
		 (unsigned char)out->p[i + 1] >= 0x80 && (unsigned char)out->p[i + 1] <= 0x9f))
		i++;
	if (i == out->len)
		return EVK_OK;
	size_t n = out->len - i;
	char *tail = malloc(n);
	if (tail == NULL)
		return EVK_ENOMEM;
	memcpy(tail, out->p + i, n);
	out->len = i;
	int rv = EVK_OK;
	for (size_t k = 0; rv == EVK_OK && k < n; k++) {
		unsigned char b = (unsigned char)tail[k];
		char esc[7];
		if (b == 0x7f || (b == 0xc2 && k + 1 < n && (unsigned char)tail[k + 1] >= 0x80 &&
				  (unsigned char)tail[k + 1] <= 0x9f)) {
			unsigned v = b == 0x7f ? b : (unsigned char)tail[++k];
			snprintf(esc, sizeof(esc), "\\u%04x", v);
			rv = evk_buf_add(out, esc, 6);
		} else {
			rv = evk_buf_addch(out, (char)b);
		}
	}
	free(tail);
	return rv;
}

static int add_payload_tree(struct evk_buf *out, const cJSON *payload);

/* Appends the payload's JSON text, printed from the tree. */
static int
add_payload(struct evk_buf *out, const cJSON *payload)
{
	size_t mark = out->len;
	int rv = add_payload_tree(out, payload);
	return rv == EVK_OK ? escape_raw_controls(out, mark) : rv;
}

/* Appends the payload's JSON text; prints into the buffer directly when
 * it fits, which avoids an allocation per event. */
static int
add_payload_tree(struct evk_buf *out, const cJSON *payload)
{
	if (payload == NULL)
		return evk_buf_add(out, "{}", 2);
	if (needs_exact(payload)) {
		char buf[32];
		if (cJSON_IsNumber(payload)) {
			exact_number(payload->valuedouble, buf, sizeof(buf));
			return evk_buf_addstr(out, buf);
		}
		cJSON *copy = cJSON_Duplicate(payload, 1);
		char *text = copy && make_exact(copy) ? cJSON_PrintUnformatted(copy) : NULL;
		cJSON_Delete(copy);
		if (text == NULL)
			return EVK_ENOMEM;
		int rv = evk_buf_addstr(out, text);
		cJSON_free(text);
		return rv;
	}
	size_t guess = 256;
	for (int attempt = 0; attempt < 2; attempt++) {
		int rv = evk_buf_reserve(out, guess);
		if (rv != EVK_OK)
			break;
		size_t room = out->cap - out->len - 1;
		if (cJSON_PrintPreallocated((cJSON *)payload, out->p + out->len,
					    (int)(room > 0x7fffffff ? 0x7fffffff : room),
					    0)) {
			out->len += strlen(out->p + out->len);
			return EVK_OK;
		}
		guess = room * 4 + 4096;
	}
	char *text = cJSON_PrintUnformatted(payload);
	if (text == NULL)
		return EVK_ENOMEM;
	int rv = evk_buf_addstr(out, text);
	cJSON_free(text);
	return rv;
}

/* Appends one canonical event line; the payload is either printed from
 * the tree or, when raw is not NULL, copied as the raw JSON text the input
 * already holds (validated by the caller's parse). */
static int
build(struct evk_buf *out, const char *ts, const char *topic, const char *event,
      const cJSON *payload, const char *raw, size_t rawlen, const char **why)
{
	char now[EVK_TS_LEN + 1];
	size_t mark = out->len;
	int rv;

	if (!evk_topic_valid(topic, strlen(topic))) {
		if (why)
			*why = "invalid topic";
		return EVK_EINVAL;
	}
	if (!evk_event_name_valid(event, strlen(event))) {
		if (why)
			*why = "invalid event name";
		return EVK_EINVAL;
	}
	if (ts == NULL) {
		evk_ts_now(now);
		ts = now;
	}
	if ((rv = evk_buf_add(out, "{\"ts\":\"", 7)) ||
	    (rv = evk_buf_add(out, ts, EVK_TS_LEN)) ||
	    (rv = evk_buf_add(out, "\",\"topic\":", 10)) ||
	    (rv = evk_buf_add_json_string(out, topic, strlen(topic))) ||
	    (rv = evk_buf_add(out, ",\"event\":\"", 10)) ||
	    (rv = evk_buf_addstr(out, event)) ||
	    (rv = evk_buf_add(out, "\",\"payload\":", 12)) ||
	    (rv = raw ? evk_buf_add(out, raw, rawlen) : add_payload(out, payload)) ||
	    (rv = evk_buf_addch(out, '}'))) {
		out->len = mark;
		if (why)
			*why = rv == EVK_ETOOLONG ? "event too long" : "out of memory";
		return rv;
	}
	return EVK_OK;
}

int
evk_event_build(struct evk_buf *out, const char *ts, const char *topic,
		const char *event, const cJSON *payload, const char **why)
{
	return build(out, ts, topic, event, payload, NULL, 0, why);
}

int
evk_event_build_raw(struct evk_buf *out, const char *ts, const char *topic,
		    const char *event, const char *payload, size_t len,
		    const char **why)
{
	return build(out, ts, topic, event, NULL, payload, len, why);
}

/* True when text[0..n) holds a byte below 0x20: JSON white space that a
 * canonical line (one line) cannot carry as it is. */
static bool
has_control(const char *text, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)text[i] < 0x20)
			return true;
	return false;
}

/* When a valid event line is laid out exactly as
 * {"topic":"T","event":"E","payload":P} with T and E written without
 * escapes, sets the raw payload text P: copying it is much cheaper than
 * printing the parsed payload again, and keeps the publisher's spelling
 * of numbers. The caller has checked that these are the only fields. */
static bool
raw_payload(const char *line, size_t len, const char *topic, const char *event,
	    const char **raw, size_t *rawlen)
{
	const char *p = line, *end;
	size_t tl = strlen(topic), el = strlen(event);

	trim(&p, &len);
	end = p + len;
#define LIT(s) (sizeof(s) - 1)
	if (len < LIT("{\"topic\":\"\",\"event\":\"\",\"payload\":}") + tl + el + 1 ||
	    end[-1] != '}' || memcmp(p, "{\"topic\":\"", LIT("{\"topic\":\"")) != 0)
		return false;
	p += LIT("{\"topic\":\"");
	if (memcmp(p, topic, tl) != 0)
		return false;
	p += tl;
	if (memcmp(p, "\",\"event\":\"", LIT("\",\"event\":\"")) != 0)
		return false;
	p += LIT("\",\"event\":\"");
	if ((size_t)(end - p) < el + LIT("\",\"payload\":}") + 1 || memcmp(p, event, el) != 0)
		return false;
	p += el;
	if (memcmp(p, "\",\"payload\":", LIT("\",\"payload\":")) != 0)
		return false;
	p += LIT("\",\"payload\":");
#undef LIT
	*rawlen = (size_t)(end - 1 - p);
	*raw = p;
	trim(raw, rawlen);
	if (*rawlen == 0 || has_control(*raw, *rawlen)) {
		*raw = NULL; /* printed again from the tree: one line */
		return false;
	}
	return true;
}

/* Parses line[0..len) as one JSON value with nothing but white space
 * after it. */
static cJSON *
parse_value(const char *line, size_t len, char *why, size_t whylen)
{
	const char *end = NULL;

	if (!evk_utf8_valid(line, len)) {
		snprintf(why, whylen, "invalid UTF-8");
		return NULL;
	}
	size_t at;
	const char *lexwhy, *hint;
	if (evk_json_lex_check(line, len, false, &at, &lexwhy, &hint) != EVK_OK) {
		snprintf(why, whylen, "invalid JSON: %s at column %zu%s", lexwhy, at + 1, hint);
		return NULL;
	}
	cJSON *v = cJSON_ParseWithLengthOpts(line, len, &end, 0);
	if (v == NULL) {
		const char *at = cJSON_GetErrorPtr();
		if (at && at >= line && at <= line + len)
			snprintf(why, whylen, "invalid JSON at column %zu",
				 (size_t)(at - line) + 1);
		else
			snprintf(why, whylen, "invalid JSON");
		return NULL;
	}
	while (end && end < line + len &&
	       (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
		end++;
	if (end && end < line + len) {
		snprintf(why, whylen, "invalid JSON: trailing data at column %zu",
			 (size_t)(end - line) + 1);
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

/* Copies the string at *p (after its opening quote) up to its closing
 * quote into dst[0..cap) with a NUL, and steps past the quote; false when
 * it holds a '\\' or a control byte, does not end, or does not fit. */
static bool
plain_string(const char **p, const char *end, char *dst, size_t cap)
{
	const char *s = *p;
	while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
		s++;
	if (s == end || *s != '"' || (size_t)(s - *p) >= cap)
		return false;
	memcpy(dst, *p, (size_t)(s - *p));
	dst[s - *p] = '\0';
	*p = s + 1;
	return true;
}

/* evpub's fast path: a line laid out as {"topic":"T","event":"E",
 * "payload":P} (white space only around it), T and E without escapes and
 * P one JSON value on one line (json_value_check, lib/event_check.c)
 * gives the canonical line with P copied, exactly as parsing it does
 * (raw_payload), without a tree. False, with out as it was, for any
 * other line, a bad one included: the full parse then says what is wrong. */
static bool
fast_event(struct evk_buf *out, const char *line, size_t len)
{
	char topic[EVK_TOPIC_MAX + 1], event[EVK_EVENT_MAX + 1];
	const char *p = line, *end, *why, *hint;
	size_t n = len, at;

	trim(&p, &n);
	end = p + n;
#define LIT(s) (sizeof(s) - 1)
	if (n < LIT("{\"topic\":\"\",\"event\":\"\",\"payload\":0}") || end[-1] != '}' ||
	    memcmp(p, "{\"topic\":\"", LIT("{\"topic\":\"")) != 0)
		return false;
	p += LIT("{\"topic\":\"");
	if (!plain_string(&p, end, topic, sizeof(topic)) ||
	    (size_t)(end - p) < LIT(",\"event\":\"") ||
	    memcmp(p, ",\"event\":\"", LIT(",\"event\":\"")) != 0)
		return false;
	p += LIT(",\"event\":\"");
	if (!plain_string(&p, end, event, sizeof(event)) ||
	    (size_t)(end - p) < LIT(",\"payload\":") + 1 ||
	    memcmp(p, ",\"payload\":", LIT(",\"payload\":")) != 0)
		return false;
	p += LIT(",\"payload\":");
#undef LIT
	size_t rawlen = (size_t)(end - 1 - p);
	trim(&p, &rawlen);
	if (rawlen == 0 || evk_json_value_check(p, rawlen, &at, &why, &hint) != EVK_OK ||
	    !evk_utf8_valid(line, len))
		return false;
	return build(out, NULL, topic, event, NULL, p, rawlen, NULL) == EVK_OK;
}

int
evk_event_from_json(struct evk_buf *out, const char *line, size_t len,
		    char *why, size_t whylen)
{
	const cJSON *topic = NULL, *event = NULL, *payload = NULL, *ts = NULL,
		    *seq = NULL;
	char tsbuf[EVK_TS_LEN + 1];
	const char *reason = NULL;
	int rv = EVK_EINVAL;

	if (fast_event(out, line, len))
		return EVK_OK;
	cJSON *obj = parse_value(line, len, why, whylen);
	if (obj == NULL)
		return EVK_EINVAL;
	if (!cJSON_IsObject(obj)) {
		snprintf(why, whylen, "not a JSON object");
		goto out;
	}
	for (const cJSON *m = obj->child; m; m = m->next) {
		const cJSON **slot = NULL;
		if (strcmp(m->string, "topic") == 0)
			slot = &topic;
		else if (strcmp(m->string, "event") == 0)
			slot = &event;
		else if (strcmp(m->string, "payload") == 0)
			slot = &payload;
		else if (strcmp(m->string, "ts") == 0)
			slot = &ts;
		else if (strcmp(m->string, "seq") == 0)
			slot = &seq; /* the hub sets seq; an input one is ignored */
		if (slot == NULL) {
			snprintf(why, whylen, "unknown field '%.64s'", m->string);
			goto out;
		}
		if (*slot != NULL) {
			snprintf(why, whylen, "duplicate field '%s'", m->string);
			goto out;
		}
		*slot = m;
	}
	if (!cJSON_IsString(topic) || !cJSON_IsString(event)) {
		snprintf(why, whylen, "missing or non-string '%s'",
			 cJSON_IsString(topic) ? "event" : "topic");
		goto out;
	}
	if (ts != NULL) {
		if (!cJSON_IsString(ts) ||
		    evk_ts_normalise(ts->valuestring, strlen(ts->valuestring),
				     tsbuf) != EVK_OK) {
			snprintf(why, whylen, "'ts' is not an RFC 3339 UTC time");
			goto out;
		}
	}
	const char *raw = NULL;
	size_t rawlen = 0;
	if (ts == NULL && seq == NULL && payload != NULL)
		raw_payload(line, len, topic->valuestring, event->valuestring, &raw,
			    &rawlen);
	rv = build(out, ts ? tsbuf : NULL, topic->valuestring, event->valuestring,
		   payload, raw, rawlen, &reason);
	if (rv != EVK_OK) {
		if (rv == EVK_EINVAL)
			snprintf(why, whylen, "%s '%.300s'", reason,
				 strcmp(reason, "invalid topic") == 0
					 ? topic->valuestring
					 : event->valuestring);
		else
			snprintf(why, whylen, "%s", reason);
	}
out:
	cJSON_Delete(obj);
	return rv;
}

int
evk_event_from_payload(struct evk_buf *out, const char *topic,
		       const char *event, const char *line, size_t len,
		       char *why, size_t whylen)
{
	const char *reason = NULL;
	cJSON *payload = parse_value(line, len, why, whylen);
	if (payload == NULL)
		return EVK_EINVAL;
	/* The line is the payload: valid JSON, one line, valid UTF-8. */
	const char *raw = line;
	size_t rawlen = len;
	trim(&raw, &rawlen);
	if (has_control(raw, rawlen) || (rawlen >= 3 && memcmp(raw, "\xef\xbb\xbf", 3) == 0))
		raw = NULL; /* several lines, or a byte order mark (which cJSON
			     * skips at the start only): printed from the tree */
	int rv = build(out, NULL, topic, event, payload, raw, rawlen, &reason);
	if (rv != EVK_OK)
		snprintf(why, whylen, "%s", reason);
	cJSON_Delete(payload);
	return rv;
}
