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
	/* A topic is matched by its length, not a NUL. */
	CHECK(evk_pattern_match("case:*", "case:7:x", 6), "length-bounded topic");
	return check_done("test_topic");
}
