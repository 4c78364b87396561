/* Topics and topic patterns (SPEC §2, §3). */
#ifndef EVKIT_TOPIC_H
#define EVKIT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is a valid topic: 1-255 bytes of non-empty segments
 * joined by ':', each of printable ASCII other than space, ':' and '*'. */
bool evk_topic_valid(const char *s, size_t n);

/* True when s is a valid pattern: segments as in a topic, or '*', with '**'
 * allowed only as the last segment. */
bool evk_pattern_valid(const char *s);

/* Why s is not a valid pattern ("'**' may only end a pattern"), or NULL
 * when it is valid.  The text is static. */
const char *evk_pattern_error(const char *s);

/* When s looks like an MQTT or NATS pattern ('#', '+' or '>' as a segment,
 * or '*' between '/' or '.'), writes evkit's spelling of it to out
 * ("sensors/#" -> "sensors:**") and returns true. */
bool evk_pattern_hint(const char *s, char *out, size_t size);

/* What a program should say about pattern s: EVK_PATTERN_OK (nothing),
 * EVK_PATTERN_HINT (valid, but msg holds a hint worth a warning) or
 * EVK_PATTERN_BAD (msg holds the usage error, with the reason and any
 * hint).  msg gets at most size bytes; it is empty for EVK_PATTERN_OK. */
enum { EVK_PATTERN_BAD = -1, EVK_PATTERN_OK = 0, EVK_PATTERN_HINT = 1 };
int evk_pattern_check(const char *s, char *msg, size_t size);

/* True when topic[0..n) matches the (valid) pattern. */
bool evk_pattern_match(const char *pattern, const char *topic, size_t n);

/* True when s[0..n) is a valid event name: 1-64 of [A-Za-z0-9_.-]. */
bool evk_event_name_valid(const char *s, size_t n);

#endif
