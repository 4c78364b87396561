/* Topics and patterns as NATS subjects (evkit(7), lib/subject.c). */
#include "evkit/subject.h"

#include "evkit/err.h"
#include "evkit/limits.h"
#include "evkit/topic.h"

#include "check.h"

#include <string.h>

static const struct {
	const char *topic, *subject;
} topics[] = {
	{ "case", "evk.case" },
	{ "case:created:7", "evk.case.created.7" },
	{ "process:9f2c", "evk.process.9f2c" },
	{ "a.b:c", "evk.a%2Eb.c" },
	{ "x>y:>", "evk.x%3Ey.%3E" },
	{ "100%:%25", "evk.100%25.%2525" },
	{ "..:.", "evk.%2E%2E.%2E" },
	{ "~!\"#$&'()+,-/;<=?@[\\]^_`{|}", "evk.~!\"#$&'()+,-/;<=?@[\\]^_`{|}" },
};

static const struct {
	const char *pattern, *filter;
	bool exact;
} patterns[] = {
	{ "case:created", "evk.case.created", true },
	{ "case:created:*", "evk.case.created.*", true },
	{ "case:*:7", "evk.case.*.7", true },
	{ "*", "evk.*", true },
	{ "a.b:*", "evk.a%2Eb.*", true },
	{ "**", "evk.>", false },
	{ "case:**", "evk.>", false },
	{ "case:created:**", "evk.case.>", false },
	{ "*:x:**", "evk.*.>", false },
};

/* Several patterns: one filter covering them all. */
static const struct {
	const char *patterns[3];
	int n;
	const char *filter;
	bool exact;
} merged[] = {
	{ { NULL }, 0, "evk.>", true },
	{ { "a:b" }, 1, "evk.a.b", true },
	{ { "a:b", "a:b" }, 2, "evk.a.b", true },
	{ { "a:b", "a:c" }, 2, "evk.a.*", false },
	{ { "a:b:c", "a:d:c" }, 2, "evk.a.*.c", false },
	{ { "a:b", "a:b:c" }, 2, "evk.a.>", false },
	{ { "a", "a:b" }, 2, "evk.>", false },
	{ { "a:b:c", "x:*", "a:b:d" }, 3, "evk.*.>", false },
	{ { "a:b:x", "a:b:*" }, 2, "evk.a.b.*", false },
	{ { "a:b:c:**", "a:b:d" }, 2, "evk.a.b.>", false },
	{ { "a:*", "b:*" }, 2, "evk.*.*", false },
	{ { "**", "a:b" }, 2, "evk.>", false },
};

/* Subjects that no topic maps to. */
static const char *const foreign[] = {
	"evk", "evk.", "other.x", "evk.a..b", "evk.a.>", "evk.*", "evk.%2", "evk.%zz",
	"evk.%41", "evk.%2e", "evk.a b", "evk.a:b",
};

int
main(void)
{
	char out[EVK_SUBJECT_MAX], back[EVK_TOPIC_MAX + 1];
	size_t len;
	bool exact;

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		const char *t = topics[i].topic;
		int rv = evk_subject_from_topic(out, sizeof(out), t, strlen(t));
		CHECK(rv == EVK_OK && strcmp(out, topics[i].subject) == 0,
		      "%s -> %s, not %s", t, rv == EVK_OK ? out : "error",
		      topics[i].subject);
		rv = evk_subject_to_topic(back, sizeof(back), &len, out, strlen(out));
		CHECK(rv == EVK_OK && len == strlen(t) && strcmp(back, t) == 0,
		      "%s does not round-trip (%s)", t, rv == EVK_OK ? back : "error");
	}
	/* The longest topic, all escaped, fits EVK_SUBJECT_MAX exactly. */
	char big[EVK_TOPIC_MAX + 1];
	memset(big, '.', EVK_TOPIC_MAX);
	big[EVK_TOPIC_MAX] = '\0';
	CHECK(evk_subject_from_topic(out, sizeof(out), big, EVK_TOPIC_MAX) == EVK_OK &&
		      strlen(out) == EVK_SUBJECT_MAX - 1,
	      "a 255-byte topic of dots");
	CHECK(evk_subject_to_topic(back, sizeof(back), &len, out, strlen(out)) == EVK_OK &&
		      len == EVK_TOPIC_MAX && memcmp(back, big, len) == 0,
	      "the 255-byte topic round-trips");
	CHECK(evk_subject_from_topic(out, 10, big, EVK_TOPIC_MAX) == EVK_ETOOLONG,
	      "a small buffer is too small");
	CHECK(evk_subject_from_topic(out, sizeof(out), "a::b", 4) == EVK_EINVAL,
	      "an invalid topic is refused");
	/* Every printable character a segment may hold round-trips. */
	for (int c = 0x21; c < 0x7f; c++) {
		if (c == ':' || c == '*')
			continue;
		char t[4] = { 'a', (char)c, 'z', '\0' };
		int rv = evk_subject_from_topic(out, sizeof(out), t, 3);
		CHECK(rv == EVK_OK && strchr(out + 4, '.') == NULL &&
			      strchr(out, '>') == NULL && strchr(out, '*') == NULL,
		      "character %#x makes a single token", c);
		CHECK(evk_subject_to_topic(back, sizeof(back), &len, out, strlen(out)) ==
				      EVK_OK &&
			      strcmp(back, t) == 0,
		      "character %#x round-trips", c);
	}
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
		CHECK(evk_subject_to_topic(back, sizeof(back), &len, foreign[i],
					   strlen(foreign[i])) == EVK_EINVAL,
		      "%s is not a topic's subject", foreign[i]);
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
		const char *p = patterns[i].pattern;
		int rv = evk_subject_filter(out, sizeof(out), p, &exact);
		CHECK(rv == EVK_OK && strcmp(out, patterns[i].filter) == 0 &&
			      exact == patterns[i].exact,
		      "%s -> %s (%s), not %s", p, rv == EVK_OK ? out : "error",
		      exact ? "exact" : "wider", patterns[i].filter);
	}
	for (size_t i = 0; i < sizeof(merged) / sizeof(merged[0]); i++) {
		int rv = evk_subject_filter_all(out, sizeof(out), merged[i].patterns,
						merged[i].n, &exact);
		CHECK(rv == EVK_OK && strcmp(out, merged[i].filter) == 0 &&
			      exact == merged[i].exact,
		      "merged %d (%s...) -> %s (%s), not %s", merged[i].n,
		      merged[i].n ? merged[i].patterns[0] : "", rv == EVK_OK ? out : "error",
		      exact ? "exact" : "wider", merged[i].filter);
	}
	CHECK(evk_subject_filter(out, sizeof(out), "a:**:b", &exact) == EVK_EINVAL,
	      "an invalid pattern is refused");
	return check_done("subject");
}
