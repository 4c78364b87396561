/* Topic and pattern rules of SPEC §2-3, as tables. */
#include "evkit/topic.h"

#include "check.h"

#include <string.h>

static const struct {
	const char *pattern;
	const char *topic;
	bool match;
} matches[] = {
	/* SPEC §3 table */
	{ "case:created", "case:created", true },
	{ "case:created", "case:created:7", false },
	{ "case:created:*", "case:created:7", true },
	{ "case:created:*", "case:created", false },
	{ "case:created:*", "case:created:7:x", false },
	{ "case:*:7", "case:synced:7", true },
	{ "case:*:7", "case:synced:8", false },
	{ "case:**", "case", true },
	{ "case:**", "case:created", true },
	{ "case:**", "case:created:7", true },
	{ "case:**", "cases:x", false },
	{ "**", "case", true },
	{ "**", "a:b:c:d:e", true },
	/* edges */
	{ "*", "case", true },
	{ "*", "case:x", false },
	{ "*:*", "a:b", true },
	{ "*:*", "a", false },
	{ "case", "cas", false },
	{ "cas", "case", false },
	{ "case:created", "case:create", false },
	{ "a:**", "ab", false },
	{ "a:*:**", "a", false },
	{ "a:*:**", "a:b", true },
	{ "a:*:**", "a:b:c:d", true },
	{ "workflow:*", "workflow:9f2c", true },
	{ "process:9f2c", "process:9f2c", true },
	{ "x\"y:*", "x\"y:1", true },
};

static const struct {
	const char *pattern;
	bool valid;
} patterns[] = {
	{ "case:created", true }, { "case:*", true }, { "**", true },
	{ "case:**", true },      { "*:*:7", true },  { "", false },
	{ "**:x", false },        { "a:**:b", false }, { "c*", false },
	{ "*c", false },          { "a::b", false },  { ":a", false },
	{ "a:", false },          { "a b", false },   { "***", false },
	{ "a:***", false },       { "a\tb", false },  { "é", false },
};

static const struct {
	const char *topic;
	bool valid;
} topics[] = {
	{ "case", true },        { "case:created:7", true }, { "a:b:c", true },
	{ "x\"y", true },        { "process:9f2c", true },   { "", false },
	{ ":", false },          { "a:", false },            { ":a", false },
	{ "a::b", false },       { "a b", false },           { "a*b", false },
	{ "a\nb", false },       { "é", false },             { "a\x7f", false },
};

static const struct {
	const char *name;
	bool valid;
} events[] = {
	{ "step_started", true }, { "create", true }, { "a.b-c_D9", true },
	{ "", false },            { "a b", false },   { "a:b", false },
	{ "é", false },           { "a/b", false },
};

int
main(void)
{
	char long_topic[300];

	for (size_t i = 0; i < sizeof(matches) / sizeof(matches[0]); i++) {
		CHECK(evk_pattern_valid(matches[i].pattern), "pattern %s valid",
		      matches[i].pattern);
		CHECK(evk_pattern_match(matches[i].pattern, matches[i].topic,
					strlen(matches[i].topic)) == matches[i].match,
		      "'%s' vs '%s' should %smatch", matches[i].pattern, matches[i].topic,
		      matches[i].match ? "" : "not ");
	}
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
		CHECK(evk_pattern_valid(patterns[i].pattern) == patterns[i].valid,
		      "pattern '%s' valid=%d", patterns[i].pattern, patterns[i].valid);
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		CHECK(evk_topic_valid(topics[i].topic, strlen(topics[i].topic)) ==
			      topics[i].valid,
		      "topic '%s' valid=%d", topics[i].topic, topics[i].valid);
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
		CHECK(evk_event_name_valid(events[i].name, strlen(events[i].name)) ==
			      events[i].valid,
		      "event '%s' valid=%d", events[i].name, events[i].valid);

	/* Length limits: a topic of 255 bytes is fine, 256 is not. */
	memset(long_topic, 'a', sizeof(long_topic));
	CHECK(evk_topic_valid(long_topic, 255), "255-byte topic valid");
	CHECK(!evk_topic_valid(long_topic, 256), "256-byte topic invalid");
	CHECK(evk_event_name_valid(long_topic, 64), "64-byte event valid");
	CHECK(!evk_event_name_valid(long_topic, 65), "65-byte event invalid");
	/* Why a pattern is invalid, and the evkit spelling of MQTT/NATS ones. */
	static const struct {
		const char *pattern, *error, *hint;
	} whys[] = {
		{ "case:**:x", "'**' may only end a pattern", NULL },
		{ "a*", "'*' must be a whole segment", NULL },
		{ "a::b", "empty segment (a pattern has no leading, trailing or double ':')", NULL },
		{ "", "empty pattern", NULL },
		{ "a b", "a segment holds no space", NULL },
		{ "sensors/#", NULL, "sensors:**" },
		{ "a/+/b", NULL, "a:*:b" },
		{ "orders.>", NULL, "orders:**" },
		{ "orders.*", "'*' must be a whole segment", "orders:*" },
		{ "#", NULL, "**" },
		{ "case:#", NULL, "case:**" },
		{ "a.b.c", NULL, NULL },
		{ "case:*:7", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(whys) / sizeof(whys[0]); i++) {
		const char *e = evk_pattern_error(whys[i].pattern);
		char hint[300], msg[640];
		bool h = evk_pattern_hint(whys[i].pattern, hint, sizeof(hint));
		CHECK(whys[i].error ? e && strcmp(e, whys[i].error) == 0 : e == NULL,
		      "'%s': error '%s'", whys[i].pattern, e ? e : "(none)");
		CHECK(whys[i].hint ? h && strcmp(hint, whys[i].hint) == 0 : !h,
		      "'%s': hint '%s'", whys[i].pattern, h ? hint : "(none)");
		int r = evk_pattern_check(whys[i].pattern, msg, sizeof(msg));
		CHECK(r == (e ? EVK_PATTERN_BAD : h ? EVK_PATTERN_HINT : EVK_PATTERN_OK) &&
			      (r == EVK_PATTERN_OK) == (msg[0] == '\0'),
		      "'%s': check %d '%s'", whys[i].pattern, r, msg);
	}
	char tiny[4];
	CHECK(!evk_pattern_hint("sensors/#", tiny, sizeof(tiny)), "hint too long for out");

	/* A topic is matched by its length, not a NUL. */
	CHECK(evk_pattern_match("case:*", "case:7:x", 6), "length-bounded topic");
	return check_done("test_topic");
}
