/* Topics and patterns as NATS subjects (the JetStream backend, see
 * lib/nats_*.c and evkit(7)).
 *
 * A topic becomes "evk." followed by its segments joined by '.', where a
 * segment's '.', '>' and '%' (characters NATS reserves, and the escape
 * itself) become %2E, %3E and %25. ('*', ' ' and ':' never occur in a
 * segment.) The mapping is reversible: every valid topic round-trips. */
#ifndef EVKIT_SUBJECT_H
#define EVKIT_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>

#define EVK_SUBJECT_PREFIX "evk."
/* "evk." plus every byte of a 255-byte topic escaped to three, and a NUL. */
#define EVK_SUBJECT_MAX (4 + 3 * 255 + 1)

/* Writes the subject of topic[0..n) (a valid topic) to out[0..size).
 * EVK_ETOOLONG when it does not fit, EVK_EINVAL for an invalid topic. */
int evk_subject_from_topic(char *out, size_t size, const char *topic, size_t n);

/* Writes the topic of subject s[0..n) to out[0..size) (NUL-terminated)
 * and its length to *len. EVK_EINVAL when s is not the subject of a valid
 * topic. */
int evk_subject_to_topic(char *out, size_t size, size_t *len, const char *s,
			 size_t n);

/* The subject filter for a (valid) pattern: '*' stays '*', a final "**"
 * becomes '>'. *exact is false when the filter is wider than the
 * pattern (a final "**" also matches the bare prefix, which '>' does
 * not, so the filter is then the prefix's '>' one level up, or "evk.>"):
 * the receiver must then finish with evk_pattern_match. */
int evk_subject_filter(char *out, size_t size, const char *pattern, bool *exact);

/* One subject filter for n (valid) patterns: their filters (as
 * evk_subject_filter) merged into the narrowest single filter that
 * covers each, token by token: a token they share stays, tokens that
 * differ become '*', and where their lengths differ or one has '>', '>'
 * (one token earlier when a filter ends there: "evk.a" and "evk.a.b"
 * give "evk.>"). n == 0 is every topic, "evk.>". *exact as for one
 * pattern: false when the filter takes topics no pattern matches. */
int evk_subject_filter_all(char *out, size_t size, const char *const *patterns,
			   int n, bool *exact);

#endif
