#include "evkit/subject.h"

#include "evkit/err.h"
#include "evkit/topic.h"

#include <string.h>

/* Appends c to out at *at, escaped when NATS reserves it. */
static bool
put_escaped(char *out, size_t size, size_t *at, char c)
{
	static const char hex[] = "0123456789ABCDEF";
	bool esc = c == '.' || c == '>' || c == '%' || c == '*';

	if (*at + (esc ? 3 : 1) >= size)
		return false;
	if (esc) {
		out[(*at)++] = '%';
		out[(*at)++] = hex[(unsigned char)c >> 4];
		out[(*at)++] = hex[(unsigned char)c & 15];
	} else {
		out[(*at)++] = c;
	}
	return true;
}

int
evk_subject_from_topic(char *out, size_t size, const char *topic, size_t n)
{
	size_t at = sizeof(EVK_SUBJECT_PREFIX) - 1;

	if (!evk_topic_valid(topic, n))
		return EVK_EINVAL;
	if (size <= at)
		return EVK_ETOOLONG;
	memcpy(out, EVK_SUBJECT_PREFIX, at);
	for (size_t i = 0; i < n; i++) {
		if (topic[i] == ':') {
			if (at + 1 >= size)
				return EVK_ETOOLONG;
			out[at++] = '.';
		} else if (!put_escaped(out, size, &at, topic[i])) {
			return EVK_ETOOLONG;
		}
	}
	out[at] = '\0';
	return EVK_OK;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
evk_subject_to_topic(char *out, size_t size, size_t *len, const char *s, size_t n)
{
	const size_t pre = sizeof(EVK_SUBJECT_PREFIX) - 1;
	size_t at = 0;

	if (n <= pre || memcmp(s, EVK_SUBJECT_PREFIX, pre) != 0)
		return EVK_EINVAL;
	for (size_t i = pre; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			c = ':';
		} else if (c == '%') {
			int hi, lo;
			if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 ||
			    (lo = hexval(s[i + 2])) < 0)
				return EVK_EINVAL;
			c = (char)(hi << 4 | lo);
			/* Only what the encoder escapes: one spelling each. */
			if (c != '.' && c != '>' && c != '%' && c != '*')
				return EVK_EINVAL;
			i += 2;
		} else if (c == '>' || c == '*' || c == ':') {
			return EVK_EINVAL;
		}
		if (at + 1 >= size)
			return EVK_EINVAL;
		out[at++] = c;
	}
	out[at] = '\0';
	if (!evk_topic_valid(out, at))
		return EVK_EINVAL;
	*len = at;
	return EVK_OK;
}

int
evk_subject_filter(char *out, size_t size, const char *pattern, bool *exact)
{
	size_t at = sizeof(EVK_SUBJECT_PREFIX) - 1;
	size_t n = strlen(pattern);
	size_t last_dot = at - 1, prev_dot = at - 1; /* the prefix's dot */

	if (!evk_pattern_valid(pattern))
		return EVK_EINVAL;
	if (size <= at)
		return EVK_ETOOLONG;
	memcpy(out, EVK_SUBJECT_PREFIX, at);
	*exact = true;
	for (size_t i = 0; i < n; i++) {
		bool seg_start = i == 0 || pattern[i - 1] == ':';
		if (seg_start && strcmp(pattern + i, "**") == 0) {
			/* "a:b:**" matches a:b too, which "evk.a.b.>" does
			 * not: the filter is "evk.a.>" (or "evk.>"), the
			 * client's matcher does the rest. */
			at = prev_dot + 1;
			if (at + 2 > size)
				return EVK_ETOOLONG;
			out[at++] = '>';
			out[at] = '\0';
			*exact = false;
			return EVK_OK;
		}
		if (pattern[i] == ':') {
			if (at + 1 >= size)
				return EVK_ETOOLONG;
			prev_dot = last_dot;
			last_dot = at;
			out[at++] = '.';
		} else if (seg_start && pattern[i] == '*' &&
			   (pattern[i + 1] == ':' || pattern[i + 1] == '\0')) {
			if (at + 1 >= size)
				return EVK_ETOOLONG;
			out[at++] = '*';
		} else if (!put_escaped(out, size, &at, pattern[i])) {
			return EVK_ETOOLONG;
		}
	}
	out[at] = '\0';
	return EVK_OK;
}

/* The token of filter f starting at *at ('\0'-terminated filters): its
 * start and length; *at moves past it and its dot. false at the end. */
static bool
next_token(const char *f, size_t *at, const char **tok, size_t *len)
{
	if (f[*at] == '\0')
		return false;
	*tok = f + *at;
	*len = strcspn(*tok, ".");
	*at += *len + (f[*at + *len] == '.');
	return true;
}

/* Merges filter b into filter a (as evk_subject_filter_all). */
static int
merge_filters(char *a, size_t size, const char *b)
{
	char m[EVK_SUBJECT_MAX];
	size_t ia = 0, ib = 0, at = 0, prev = 0;
	const char *ta, *tb;
	size_t la, lb;

	for (;;) {
		bool ha = next_token(a, &ia, &ta, &la);
		bool hb = next_token(b, &ib, &tb, &lb);
		if (!ha && !hb)
			break;
		if (!ha || !hb) {
			/* One ends here: the token before becomes '>' (never
			 * the first, "evk": every filter has two tokens). */
			at = prev;
			m[at++] = '>';
			break;
		}
		if (at > 0)
			m[at++] = '.';
		prev = at;
		if ((la == 1 && *ta == '>') || (lb == 1 && *tb == '>')) {
			m[at++] = '>';
			break;
		}
		if (la == lb && memcmp(ta, tb, la) == 0) {
			if (at + la >= sizeof(m))
				return EVK_ETOOLONG;
			memcpy(m + at, ta, la);
			at += la;
		} else {
			m[at++] = '*';
		}
	}
	m[at] = '\0';
	if (at + 1 > size)
		return EVK_ETOOLONG;
	memcpy(a, m, at + 1);
	return EVK_OK;
}

int
evk_subject_filter_all(char *out, size_t size, const char *const *patterns, int n,
		       bool *exact)
{
	char f[EVK_SUBJECT_MAX];
	bool one;
	int rv;

	if (n <= 0) {
		if (size < sizeof(EVK_SUBJECT_PREFIX ">"))
			return EVK_ETOOLONG;
		strcpy(out, EVK_SUBJECT_PREFIX ">");
		*exact = true;
		return EVK_OK;
	}
	if ((rv = evk_subject_filter(out, size, patterns[0], exact)) != EVK_OK)
		return rv;
	for (int i = 1; i < n; i++) {
		if ((rv = evk_subject_filter(f, sizeof(f), patterns[i], &one)) != EVK_OK)
			return rv;
		if (strcmp(f, out) == 0) {
			*exact = *exact && one;
			continue;
		}
		if ((rv = merge_filters(out, size, f)) != EVK_OK)
			return rv;
		*exact = false;
	}
	return EVK_OK;
}
