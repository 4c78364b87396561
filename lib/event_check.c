/* The one-pass checks: JSON text lexed without a tree
 * (evk_json_lex_check, json_value_check) and the hub's check of a stored
 * event line (evk_event_check). */
#include "evkit/event.h"
#include "event_impl.h"

#include "evkit/err.h"
#include "evkit/topic.h"
#include "evkit/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest number text checked for range (longer ones are refused). */
#define NUMBER_MAX 1100

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Steps past one number at p[*i] as RFC 8259 spells it, checking that it
 * fits a double. False (with *why) when it does not. */
static bool
lex_number(const char *p, size_t n, size_t *i, const char **why)
{
	size_t s = *i, k = *i;
	bool big = false;

	if (p[k] == '-')
		k++;
	if (k < n && p[k] == '0')
		k++;
	else if (k < n && p[k] >= '1' && p[k] <= '9')
		while (k < n && is_digit(p[k]))
			k++;
	else
		goto bad;
	if (k < n && p[k] == '.') {
		if (++k == n || !is_digit(p[k]))
			goto bad;
		while (k < n && is_digit(p[k]))
			k++;
	}
	if (k < n && (p[k] == 'e' || p[k] == 'E')) {
		big = true;
		if (++k < n && (p[k] == '+' || p[k] == '-'))
			k++;
		if (k == n || !is_digit(p[k]))
			goto bad;
		while (k < n && is_digit(p[k]))
			k++;
	}
	if (k < n && (is_digit(p[k]) || p[k] == '.' || p[k] == 'e' || p[k] == 'E' ||
		      p[k] == '+' || p[k] == '-'))
		goto bad;
	*i = k;
	if (big || k - s > 300) {
		char text[NUMBER_MAX + 1];
		if (k - s > NUMBER_MAX) {
			*why = "number too long";
			return false;
		}
		memcpy(text, p + s, k - s);
		text[k - s] = '\0';
		if (isinf(strtod(text, NULL))) {
			*why = "number out of range (beyond a double)";
			return false;
		}
	}
	return true;
bad:
	*i = s;
	*why = "invalid number";
	return false;
}

/* Bytes that end a run of plain bytes in a JSON string: '"', '\\', C0,
 * DEL and 0xc2 (which starts the C1 controls, C2 80-9F in UTF-8). */
static const unsigned char str_stop[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The byte at p[k] (k < n) is a raw control character: C0, DEL or C1. */
static bool
raw_control(const char *p, size_t n, size_t k)
{
	unsigned char b = (unsigned char)p[k];
	return b < 0x20 || b == 0x7f ||
	       (b == 0xc2 && k + 1 < n && (unsigned char)p[k + 1] >= 0x80 &&
		(unsigned char)p[k + 1] <= 0x9f);
}

/* The value of the four hex digits at p[k], or -1. */
static long
hex4(const char *p, size_t n, size_t k)
{
	long v = 0;
	if (k > n || n - k < 4)
		return -1;
	for (size_t j = k; j < k + 4; j++) {
		char c = p[j];
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/* Length of the escape at p[k] ('\\') as RFC 8259 spells it, a UTF-16
 * surrogate only in a pair (cJSON refuses a lone one); 0 when invalid. */
static size_t
escape_len(const char *p, size_t n, size_t k)
{
	if (k + 1 >= n)
		return 0;
	switch (p[k + 1]) {
	case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
		return 2;
	case 'u':
		break;
	default:
		return 0;
	}
	long u = hex4(p, n, k + 2);
	if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
		return 0;
	if (u < 0xd800 || u > 0xdbff)
		return 6;
	long lo = k + 7 < n && p[k + 6] == '\\' && p[k + 7] == 'u' ? hex4(p, n, k + 8) : -1;
	return lo >= 0xdc00 && lo <= 0xdfff ? 12 : 0;
}

enum lex { LEX_OK, LEX_BAD, LEX_END };

/* Nonzero when one of the eight bytes in w may end a run of plain string
 * bytes: below 0x20, '"', '\\', or 0x7f and above (DEL, and every
 * non-ASCII byte, which str_stop then decides). */
static uint64_t
word_stops(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
	uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
	/* Per byte x (borrows and carries only spread from a byte already
	 * flagged): x - 0x20 sets the high bit when x < 0x20, x ^ '"' - 1
	 * when x is '"', likewise '\\', x + 1 when x is 0x7f, x itself
	 * when above. */
	return ((w - ones * 0x20) | (q - ones) | (b - ones) | w | (w + ones)) & high;
}

/* Steps past the JSON string that starts at p[*i] ('"'). LEX_BAD (with
 * *i at the fault, *why and *hint) for a raw control byte or an invalid
 * escape; LEX_END when the text ends inside the string. */
static enum lex
lex_string(const char *p, size_t n, size_t *i, const char **why, const char **hint)
{
	size_t k = *i + 1;
	for (;;) {
		while (k < n) {
			uint64_t w;
			if (n - k >= 8 && (memcpy(&w, p + k, 8), word_stops(w) == 0)) {
				k += 8;
				continue;
			}
			if (str_stop[(unsigned char)p[k]])
				break;
			k++;
		}
		if (k >= n) {
			*i = n;
			return LEX_END;
		}
		if (p[k] == '"') {
			*i = k + 1;
			return LEX_OK;
		}
		if (p[k] == '\\') {
			size_t e = escape_len(p, n, k);
			if (e > 0) {
				k += e;
				continue;
			}
			if (k + 1 >= n) {
				*i = n;
				return LEX_END;
			}
			if (!raw_control(p, n, k + 1)) {
				*i = k;
				*why = "invalid escape";
				*hint = " in a string";
				return LEX_BAD;
			}
			k++; /* the byte after the backslash is the fault */
		} else if (!raw_control(p, n, k)) {
			k++; /* 0xc2 starting a printable character */
			continue;
		}
		/* C0, DEL and C1: terminals act on them. */
		*i = k;
		*why = "raw control byte";
		*hint = " in a string (write it as \\u00XX)";
		return LEX_BAD;
	}
}

int
evk_json_lex_check(const char *p, size_t n, bool one_line, size_t *at,
		   const char **why, const char **hint)
{
	size_t i = 0;

	*hint = "";
	while (i < n) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"') {
			enum lex r = lex_string(p, n, &i, why, hint);
			if (r == LEX_BAD) {
				*at = i;
				return EVK_EINVAL;
			}
			if (r == LEX_END)
				return EVK_OK; /* unterminated: the parser says so */
		} else if (c == '-' || is_digit((char)c)) {
			if (!lex_number(p, n, &i, why)) {
				*at = i;
				return EVK_EINVAL;
			}
		} else if (c < 0x20 && (one_line || !json_space((char)c))) {
			*at = i;
			*why = "raw control byte";
			*hint = one_line ? " outside a string" : " between values";
			return EVK_EINVAL;
		} else {
			i++;
		}
	}
	return EVK_OK;
}

/* cJSON's nesting limit (CJSON_NESTING_LIMIT): deeper text it refuses. */
#define JSON_DEPTH_MAX 1000

/* What a step of json_value_check found: the value goes on; not one JSON
 * value (the error names what stands at the place); or a fault that
 * lex_string or lex_number described. */
enum step { STEP_OK, STEP_BAD, STEP_FAIL };

/* A string at p[*i] ('"'), *i past it. */
static inline enum step
string_step(const char *p, size_t n, size_t *i, const char **why, const char **hint)
{
	switch (lex_string(p, n, i, why, hint)) {
	case LEX_OK:
		return STEP_OK;
	case LEX_BAD:
		return STEP_FAIL;
	case LEX_END:
		break;
	}
	*why = "not one JSON value";
	return STEP_BAD;
}

/* A value that is no array or object at p[*i]: a string, true, false,
 * null or a number, *i past it. */
static inline enum step
scalar_step(const char *p, size_t n, size_t *i, const char **why, const char **hint)
{
	switch (p[*i]) {
	case '"':
		return string_step(p, n, i, why, hint);
	case 't':
	case 'f':
	case 'n': {
		const char *lit = p[*i] == 't' ? "true" : p[*i] == 'f' ? "false" : "null";
		size_t l = strlen(lit);
		if (n - *i < l || memcmp(p + *i, lit, l) != 0)
			return STEP_BAD;
		*i += l;
		return STEP_OK;
	}
	default:
		if (p[*i] != '-' && !is_digit(p[*i]))
			return STEP_BAD;
		return lex_number(p, n, i, why) ? STEP_OK : STEP_FAIL;
	}
}

/* An object member's name and the ':' after it, white space before each,
 * from p[*i]; *i past the ':'. */
static inline enum step
key_step(const char *p, size_t n, size_t *i, const char **why, const char **hint)
{
	while (*i < n && p[*i] == ' ')
		(*i)++;
	if (*i == n || p[*i] != '"')
		return STEP_BAD;
	enum step s = string_step(p, n, i, why, hint);
	if (s != STEP_OK)
		return s;
	while (*i < n && p[*i] == ' ')
		(*i)++;
	if (*i == n || p[*i] != ':')
		return STEP_BAD;
	(*i)++;
	return STEP_OK;
}

/* Checks that p[0..n) is one JSON value on one line, in a single pass
 * and without building it: exactly what evk_json_lex_check (one_line)
 * and cJSON_ParseWithLengthOpts, ending at n, accept together (the fuzz
 * target event compares them), but for a leading byte order mark. The hub runs this on every line it
 * stores, where parsing each payload into a tree cost two thirds of its
 * time. On failure *at, *why and *hint as for evk_json_lex_check. */
static int
json_value_check(const char *p, size_t n, size_t *at, const char **why, const char **hint)
{
	unsigned char objects[JSON_DEPTH_MAX / 8 + 1]; /* bit d: level d is an object */
	size_t i = 0, depth = 0;
	bool object = false; /* the innermost container is an object */
	enum step s;

	*hint = "";
	*why = "not one JSON value";
	/* A byte order mark, which cJSON skips at the start of its text, is
	 * refused: inside a line it is not JSON. */
value:
	while (i < n && p[i] == ' ')
		i++;
	if (i == n)
		goto bad;
	if (p[i] == '{' || p[i] == '[') {
		if (depth == JSON_DEPTH_MAX) {
			*why = "nested too deep";
			goto bad;
		}
		object = p[i] == '{';
		if (object)
			objects[depth / 8] |= (unsigned char)(1u << depth % 8);
		else
			objects[depth / 8] &= (unsigned char)~(1u << depth % 8);
		depth++;
		for (i++; i < n && p[i] == ' '; i++)
			;
		if (i < n && p[i] == (object ? '}' : ']')) {
			i++;
			goto close;
		}
		if (object)
			goto key;
		goto value;
	}
	if ((s = scalar_step(p, n, &i, why, hint)) != STEP_OK)
		goto stop;
	goto after;
key:
	if ((s = key_step(p, n, &i, why, hint)) != STEP_OK)
		goto stop;
	goto value;
close:
	depth--;
	object = depth > 0 && (objects[(depth - 1) / 8] >> (depth - 1) % 8 & 1);
after:
	if (depth == 0) {
		if (i == n)
			return EVK_OK;
		goto bad; /* cJSON's end is before trailing white space too */
	}
	while (i < n && p[i] == ' ')
		i++;
	if (i < n && p[i] == ',') {
		i++;
		if (object)
			goto key;
		goto value;
	}
	if (i < n && p[i] == (object ? '}' : ']')) {
		i++;
		goto close;
	}
bad:
	s = STEP_BAD;
stop:
	if (s == STEP_BAD && i < n && (unsigned char)p[i] < 0x20) {
		*why = "raw control byte";
		*hint = " outside a string";
	}
	*at = i;
	return EVK_EINVAL;
}

/* Declared in event_impl.h. */
int
evk_json_value_check(const char *p, size_t n, size_t *at, const char **why, const char **hint)
{
	return json_value_check(p, n, at, why, hint);
}

int
evk_event_check(const char *line, size_t len, char *why, size_t whylen)
{
	struct evk_event ev;
	char ts[EVK_TS_LEN + 1];
	const char *reason, *hint = "";
	size_t at = 0;

	if (!evk_utf8_valid(line, len)) {
		reason = "invalid UTF-8";
		goto bad;
	}
	if (len < 2 || line[0] != '{' ||
	    evk_event_scan_fields(&ev, line + 1, line + len) != EVK_OK) {
		reason = "not a canonical event ({\"ts\",\"topic\",\"event\",\"payload\"})";
		goto bad;
	}
	if (evk_ts_normalise(ev.ts, EVK_TS_LEN, ts) != EVK_OK ||
	    memcmp(ts, ev.ts, EVK_TS_LEN) != 0) {
		reason = "'ts' is not an RFC 3339 UTC time with microseconds";
		goto bad;
	}
	if (!evk_topic_valid(ev.topic, ev.topic_len)) {
		reason = "invalid topic";
		goto bad;
	}
	if (!evk_event_name_valid(ev.event, ev.event_len)) {
		reason = "invalid event name";
		goto bad;
	}
	if (json_value_check(ev.payload, ev.payload_len, &at, &reason, &hint) != EVK_OK) {
		snprintf(why, whylen, "%s%s at column %zu%s",
			 strcmp(reason, "not one JSON value") == 0 ? "payload is " : "", reason,
			 (size_t)(ev.payload - line) + at + 1, hint);
		return EVK_EINVAL;
	}
	return EVK_OK;
bad:
	snprintf(why, whylen, "%s", reason);
	return EVK_EINVAL;
}
