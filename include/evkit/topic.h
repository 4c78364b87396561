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

/* True when topic[0..n) matches the (valid) pattern. */
bool evk_pattern_match(const char *pattern, const char *topic, size_t n);

/* True when s[0..n) is a valid event name: 1-64 of [A-Za-z0-9_.-]. */
bool evk_event_name_valid(const char *s, size_t n);

#endif
