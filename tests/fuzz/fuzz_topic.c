/* Topics and topic patterns (lib/topic.c) against a reference written
 * from SPEC §2 and §3 as plainly as it reads:
 *   a topic is 1-255 bytes of non-empty segments joined by ':', each of
 *   printable ASCII other than space, ':' and '*';
 *   a pattern's segments are such segments, '*', or a final '**';
 *   a literal segment matches itself, '*' exactly one segment, a final
 *   '**' zero or more trailing segments.
 * The input is "PATTERN\nTOPIC" (without '\n': the same bytes as both). */
#include "fuzz.h"

#include "evkit/limits.h"
#include "evkit/topic.h"

#include <stdbool.h>

#define SEGS_MAX 256

struct segs {
	size_t n;
	const char *s[SEGS_MAX];
	size_t len[SEGS_MAX];
};

/* Splits s[0..n) at every ':'. */
static void
split(const char *s, size_t n, struct segs *out)
{
	size_t start = 0;
	out->n = 0;
	for (size_t i = 0; i <= n; i++)
		if (i == n || s[i] == ':') {
			out->s[out->n] = s + start;
			out->len[out->n] = i - start;
			out->n++;
			start = i + 1;
		}
}

static bool
ref_segment(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(c >= 0x21 && c <= 0x7e) || c == ':' || c == '*')
			return false;
	}
	return true;
}

static bool
is_lit(const struct segs *g, size_t i, const char *lit)
{
	return g->len[i] == strlen(lit) && memcmp(g->s[i], lit, g->len[i]) == 0;
}

/* A topic, or with pattern a pattern, as the SPEC words them. */
static bool
ref_valid(const char *s, size_t n, bool pattern)
{
	struct segs g;
	if (n < 1 || n > 255)
		return false;
	split(s, n, &g);
	for (size_t i = 0; i < g.n; i++)
		if (!(ref_segment(g.s[i], g.len[i]) ||
		      (pattern && (is_lit(&g, i, "*") || (is_lit(&g, i, "**") && i == g.n - 1)))))
			return false;
	return true;
}

static bool
ref_match(const struct segs *p, size_t i, const struct segs *t, size_t j)
{
	if (i == p->n)
		return j == t->n;
	if (is_lit(p, i, "**"))
		return true;
	if (j == t->n)
		return false;
	if (!is_lit(p, i, "*") &&
	    (p->len[i] != t->len[j] || memcmp(p->s[i], t->s[j], p->len[i]) != 0))
		return false;
	return ref_match(p, i + 1, t, j + 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 600)
		return 0;
	const uint8_t *nl = memchr(data, '\n', size);
	size_t plen = nl ? (size_t)(nl - data) : size;
	const char *topic = nl ? (const char *)nl + 1 : (const char *)data;
	size_t tlen = nl ? size - plen - 1 : size;

	/* Patterns come as C strings (argv, configs): up to the first NUL. */
	char *pattern = fuzz_strndup(data, plen);
	if (pattern == NULL)
		return 0;
	size_t pn = strlen(pattern);

	bool pv = evk_pattern_valid(pattern), tv = evk_topic_valid(topic, tlen);
	FUZZ_CHECK(pv == ref_valid(pattern, pn, true), "pattern '%s': valid %d, reference says %d",
		   pattern, pv, !pv);
	FUZZ_CHECK(tv == ref_valid(topic, tlen, false), "topic: valid %d, reference says %d", tv, !tv);
	if (tv) {
		/* Every topic is a pattern that matches it, and '**' matches it. */
		char *self = fuzz_strndup((const uint8_t *)topic, tlen);
		FUZZ_CHECK(self && evk_pattern_valid(self) && evk_pattern_match(self, topic, tlen),
			   "topic '%s' does not match itself", self ? self : "");
		FUZZ_CHECK(evk_pattern_match("**", topic, tlen), "'**' does not match '%s'", self);
		free(self);
	}
	if (pv && tv) {
		struct segs p, t;
		split(pattern, pn, &p);
		split(topic, tlen, &t);
		bool m = evk_pattern_match(pattern, topic, tlen);
		FUZZ_CHECK(m == ref_match(&p, 0, &t, 0),
			   "pattern '%s' on topic '%.*s': match %d, reference says %d", pattern,
			   (int)tlen, topic, m, !m);
	}
	free(pattern);
	return 0;
}
