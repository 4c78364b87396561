#include "evkit/event.h"

#include "evkit/err.h"
#include "evkit/topic.h"
#include "evkit/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Writes v as exactly width decimal digits. */
static void
put_digits(char *out, long v, int width)
{
	for (int i = width - 1; i >= 0; i--, v /= 10)
		out[i] = (char)('0' + v % 10);
}

void
evk_ts_now(char *ts)
{
	/* The date and time to the second, written again only when the
	 * second changes: evpub stamps each event it reads. */
	static _Thread_local time_t last = -1;
	static _Thread_local char second[EVK_TS_LEN + 1];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != last) {
		gmtime_r(&now.tv_sec, &tm);
		memcpy(second, "0000-00-00T00:00:00.000000Z", EVK_TS_LEN + 1);
		put_digits(second, tm.tm_year + 1900, 4);
		put_digits(second + 5, tm.tm_mon + 1, 2);
		put_digits(second + 8, tm.tm_mday, 2);
		put_digits(second + 11, tm.tm_hour, 2);
		put_digits(second + 14, tm.tm_min, 2);
		put_digits(second + 17, tm.tm_sec, 2);
		last = now.tv_sec;
	}
	memcpy(ts, second, EVK_TS_LEN + 1);
	put_digits(ts + 20, now.tv_nsec / 1000, 6);
}

static int
digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int
num(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int
evk_ts_normalise(const char *ts, size_t n, char *out)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	char frac[7] = "000000";
	size_t i = 19;

	if (n < 20 || !digits(ts, 4) || ts[4] != '-' || !digits(ts + 5, 2) ||
	    ts[7] != '-' || !digits(ts + 8, 2) || (ts[10] != 'T' && ts[10] != 't') ||
	    !digits(ts + 11, 2) || ts[13] != ':' || !digits(ts + 14, 2) ||
	    ts[16] != ':' || !digits(ts + 17, 2))
		return EVK_EINVAL;
	int mon = num(ts + 5, 2), day = num(ts + 8, 2);
	if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] ||
	    num(ts + 11, 2) > 23 || num(ts + 14, 2) > 59 || num(ts + 17, 2) > 60)
		return EVK_EINVAL;
	if (ts[i] == '.') {
		size_t k = 0;
		for (i++; i < n && ts[i] >= '0' && ts[i] <= '9'; i++)
			if (k < 6)
				frac[k++] = ts[i];
		if (k == 0)
			return EVK_EINVAL;
	}
	if (!((n - i == 1 && (ts[i] == 'Z' || ts[i] == 'z')) ||
	      (n - i == 6 && (memcmp(ts + i, "+00:00", 6) == 0 ||
			      memcmp(ts + i, "-00:00", 6) == 0))))
		return EVK_EINVAL;
	memcpy(out, ts, 19);
	out[10] = 'T';
	out[19] = '.';
	memcpy(out + 20, frac, 6);
	out[26] = 'Z';
	out[27] = '\0';
	return EVK_OK;
}

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

static bool
json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims JSON white space from both ends of [*p, *p + *n). */
static void
trim(const char **p, size_t *n)
{
	while (*n > 0 && json_space(**p))
		(*p)++, (*n)--;
	while (*n > 0 && json_space((*p)[*n - 1]))
		(*n)--;
}

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
 * P one JSON value on one line (json_value_check) gives the canonical
 * line with P copied, exactly as parsing it does (raw_payload), without a
 * tree. False, with out as it was, for any other line, a bad one
 * included: the full parse then says what is wrong. */
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
	if (rawlen == 0 || json_value_check(p, rawlen, &at, &why, &hint) != EVK_OK ||
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

/* Checks that *p starts with the literal lit and steps past it. */
static int
expect(const char **p, const char *end, const char *lit, size_t n)
{
	if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
		return 0;
	*p += n;
	return 1;
}

static int scan_fields(struct evk_event *ev, const char *p, const char *end);

int
evk_event_scan(struct evk_event *ev, const char *line, size_t len)
{
	const char *p = line, *end = line + len;
	uint64_t seq = 0;

	if (!expect(&p, end, "{\"seq\":", 7))
		return EVK_EINVAL;
	const char *digits_start = p;
	while (p < end && *p >= '0' && *p <= '9' && p - digits_start < 20)
		seq = seq * 10 + (uint64_t)(*p++ - '0');
	if (p == digits_start || !expect(&p, end, ",", 1) ||
	    scan_fields(ev, p, end) != EVK_OK)
		return EVK_EINVAL;
	ev->seq = seq;
	ev->line = line;
	ev->line_len = len;
	return EVK_OK;
}

/* Fills ev's fields from p, which starts at "ts" of a canonical line
 * (the seq, if any, already read), to end. */
static int
scan_fields(struct evk_event *ev, const char *p, const char *end)
{
	if (!expect(&p, end, "\"ts\":\"", 6) || end - p < EVK_TS_LEN)
		return EVK_EINVAL;
	ev->ts = p;
	p += EVK_TS_LEN;
	if (!expect(&p, end, "\",\"topic\":\"", 11))
		return EVK_EINVAL;
	/* The topic: printable ASCII, where only '"' and '\' are escaped. */
	const char *t = p;
	size_t tl = 0;
	int escaped = 0;
	while (p < end && *p != '"') {
		if (*p == '\\') {
			if (end - p < 2 || (p[1] != '"' && p[1] != '\\' && p[1] != '/'))
				return EVK_EINVAL;
			escaped = 1;
			p++;
		}
		if (tl >= EVK_TOPIC_MAX)
			return EVK_EINVAL;
		ev->topic_buf[tl++] = *p++;
	}
	if (p == end)
		return EVK_EINVAL;
	ev->topic_buf[tl] = '\0';
	ev->topic = escaped ? ev->topic_buf : t;
	ev->topic_len = tl;
	p++;
	if (!expect(&p, end, ",\"event\":\"", 10))
		return EVK_EINVAL;
	ev->event = p;
	while (p < end && *p != '"')
		p++;
	ev->event_len = (size_t)(p - ev->event);
	if (!expect(&p, end, "\",\"payload\":", 12) || end - p < 2 ||
	    end[-1] != '}')
		return EVK_EINVAL;
	ev->payload = p;
	ev->payload_len = (size_t)(end - 1 - p);
	return EVK_OK;
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
	if (len < 2 || line[0] != '{' || scan_fields(&ev, line + 1, line + len) != EVK_OK) {
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

/* Random bytes from a small pool, refilled by getrandom: one system call
 * per 16 UUIDs instead of one each. Not thread-safe, like the callers. */
static int
random_bytes(unsigned char *out, size_t n)
{
	static unsigned char pool[256];
	static size_t left;
	while (n > 0) {
		if (left == 0) {
			ssize_t got = getrandom(pool, sizeof(pool), 0);
			if (got < 0 && errno != EINTR)
				return EVK_EIO;
			left = got > 0 ? (size_t)got : 0;
			continue;
		}
		size_t k = n < left ? n : left;
		memcpy(out, pool + sizeof(pool) - left, k);
		left -= k;
		out += k;
		n -= k;
	}
	return EVK_OK;
}

int
evk_uuid7(char out[37])
{
	/* RFC 9562 version 7: 48 bits of Unix milliseconds, then a 12-bit
	 * counter that orders the ids of one millisecond (it starts at a
	 * random value below 2048 each new millisecond; past 4095 the
	 * millisecond is borrowed from the future), then 62 random bits. */
	static uint64_t last_ms;
	static unsigned counter;
	unsigned char b[16];
	struct timespec t;

	if (random_bytes(b, sizeof(b)) != EVK_OK)
		return EVK_EIO;
	clock_gettime(CLOCK_REALTIME, &t);
	uint64_t ms = (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
	if (ms > last_ms) {
		last_ms = ms;
		counter = ((unsigned)b[6] << 8 | b[7]) & 0x7ff;
	} else if (++counter > 0xfff) {
		last_ms++;
		counter = 0;
	}
	ms = last_ms;
	for (int i = 5; i >= 0; i--, ms >>= 8)
		b[i] = (unsigned char)(ms & 0xff);
	b[6] = (unsigned char)(0x70 | (counter >> 8));
	b[7] = (unsigned char)(counter & 0xff);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = '\0';
	return EVK_OK;
}

static long long
clock_ms(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

long long
evk_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

long long
evk_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}
