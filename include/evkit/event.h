/* The event envelope (SPEC §2): parse and validate input, build the
 * canonical line, and scan canonical lines fast.
 *
 * The canonical line, as the hub stores and sends it, is
 *   {"seq":N,"ts":"…","topic":"…","event":"…","payload":…}
 * Publishers build it without the "seq" member; the hub prepends that. */
#ifndef EVKIT_EVENT_H
#define EVKIT_EVENT_H

#include "evkit/buf.h"
#include "evkit/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

/* A view of one canonical line. Pointers refer into the line, except
 * topic, which may refer to topic_buf when the topic needed unescaping. */
struct evk_event {
	uint64_t seq;
	const char *ts;        /* EVK_TS_LEN bytes, not NUL-terminated */
	const char *topic;
	size_t topic_len;
	const char *event;
	size_t event_len;
	const char *payload;   /* JSON text */
	size_t payload_len;
	const char *line;      /* the whole line, without '\n' */
	size_t line_len;
	char topic_buf[EVK_TOPIC_MAX + 1];
};

/* Writes the current UTC time as RFC 3339 with microseconds into
 * ts[EVK_TS_LEN + 1]. */
void evk_ts_now(char *ts);

/* Milliseconds on the monotonic clock: for windows, timeouts and deadlines. */
long long evk_mono_ms(void);

/* Milliseconds since the epoch (the wall clock): for times other
 * processes read, such as a job's due time or a request's deadline. */
long long evk_wall_ms(void);

/* Checks ts[0..n) is an RFC 3339 UTC time ("Z" or "+00:00", fraction
 * optional) and writes its normalised form (microseconds, "Z") to out. */
int evk_ts_normalise(const char *ts, size_t n, char *out);

/* Appends the canonical line without seq and without '\n' to out.
 * ts NULL means now. payload NULL means {}. Topic and event are checked;
 * on failure *why (if given) names the problem and out is unchanged. */
int evk_event_build(struct evk_buf *out, const char *ts, const char *topic,
		    const char *event, const struct cJSON *payload,
		    const char **why);

/* Like evk_event_build, with the payload given as JSON text the caller
 * vouches for (valid JSON, one line, valid UTF-8). */
int evk_event_build_raw(struct evk_buf *out, const char *ts, const char *topic,
			const char *event, const char *payload, size_t len,
			const char **why);

/* Parses one input line (a JSON object with topic, event, optional
 * payload, ts and seq; no other member) and appends the canonical line
 * without seq to out. On failure returns EVK_EINVAL and writes a reason
 * to why[0..whylen). */
int evk_event_from_json(struct evk_buf *out, const char *line, size_t len,
			char *why, size_t whylen);

/* Parses line[0..len) as a payload and appends the canonical line with
 * the given topic and event (already validated) to out. */
int evk_event_from_payload(struct evk_buf *out, const char *topic,
			   const char *event, const char *line, size_t len,
			   char *why, size_t whylen);

/* Fills ev from a canonical line with seq, without copying or parsing
 * the payload. EVK_EINVAL when the line is not canonical. */
int evk_event_scan(struct evk_event *ev, const char *line, size_t len);

/* Checks that line[0..len) (no '\n') is a canonical event without seq,
 * as the hub stores it: the four members in order, a normalised ts, a
 * valid topic and event name, one JSON payload; valid UTF-8, one line, no
 * raw control byte. EVK_EINVAL with the reason in why[0..whylen)
 * otherwise. */
int evk_event_check(const char *line, size_t len, char *why, size_t whylen);

/* The lexical rules cJSON does not enforce (RFC 8259): no raw control
 * character inside a string (C0, and also DEL and C1, which RFC 8259
 * allows but terminals act on), none between values but JSON white space (none
 * at all when one_line), numbers spelled as the RFC says and within a
 * double's range. EVK_EINVAL otherwise, with the offset in *at, a static
 * reason in *why ("raw control byte") and where it was in *hint (" in a
 * string (write it as \\u00XX)", or ""). */
int evk_json_lex_check(const char *text, size_t n, bool one_line, size_t *at,
		       const char **why, const char **hint);

/* A time-ordered (version 7, RFC 9562) UUID, as 36 characters and a NUL:
 * ids made later sort later, so an index on them grows at its end.
 * EVK_EIO when the system has no random bytes to give. */
int evk_uuid7(char out[37]);

#endif
