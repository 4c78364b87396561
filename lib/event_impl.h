/* Private declarations shared by lib/event.c (the event API: times,
 * scanning a stored line, UUIDs, clocks), lib/event_check.c (the one-pass
 * JSON and event line check) and lib/event_make.c (canonical event lines
 * from input). Not installed; the functions are hidden, so libevkit.so
 * exports no more than it did when lib/event.c was one file. */
#ifndef EVKIT_EVENT_IMPL_H
#define EVKIT_EVENT_IMPL_H

#include "evkit/event.h"

#include <stdbool.h>
#include <stddef.h>

/* Whether c is JSON white space (RFC 8259: space, tab, CR, LF). */
static inline bool
json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims JSON white space from both ends of [*p, *p + *n). */
static inline void
trim(const char **p, size_t *n)
{
	while (*n > 0 && json_space(**p))
		(*p)++, (*n)--;
	while (*n > 0 && json_space((*p)[*n - 1]))
		(*n)--;
}

/* lib/event.c: fills ev's fields from p, which starts at "ts" of a
 * canonical line (the seq, if any, already read), to end. */
__attribute__((visibility("hidden"))) int
evk_event_scan_fields(struct evk_event *ev, const char *p, const char *end);

/* lib/event_check.c: EVK_OK when p[0..n) is one JSON value on one line,
 * else EVK_EINVAL with *at, *why and *hint set, as json_value_check there
 * (for evpub's fast path; the hub's check calls the static one directly). */
__attribute__((visibility("hidden"))) int
evk_json_value_check(const char *p, size_t n, size_t *at, const char **why, const char **hint);

#endif
