#include "evkit/topic.h"

#include "evkit/limits.h"

#include <stdio.h>
#include <string.h>

static bool
segment_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != ':' && c != '*';
}

bool
evk_topic_valid(const char *s, size_t n)
{
	size_t seglen = 0;

	if (n == 0 || n > EVK_TOPIC_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ':') {
			if (seglen == 0)
				return false;
			seglen = 0;
		} else if (segment_char(c)) {
			seglen++;
		} else {
			return false;
		}
	}
	return seglen > 0;
}

const char *
evk_pattern_error(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return "empty pattern";
	if (n > EVK_TOPIC_MAX)
		return "longer than 255 bytes";
	for (const char *seg = s;;) {
		const char *end = strchr(seg, ':');
		size_t len = end ? (size_t)(end - seg) : strlen(seg);

		if (len == 0)
			return "empty segment (a pattern has no leading, trailing or double ':')";
		if (len == 2 && seg[0] == '*' && seg[1] == '*') {
			if (end != NULL)
				return "'**' may only end a pattern";
		} else if (!(len == 1 && seg[0] == '*')) {
			for (size_t i = 0; i < len; i++) {
				unsigned char c = (unsigned char)seg[i];
				if (c == '*')
					return "'*' must be a whole segment";
				if (c == ' ')
					return "a segment holds no space";
				if (!segment_char(c))
					return "a segment holds printable ASCII only";
			}
		}
		if (end == NULL)
			return NULL;
		seg = end + 1;
	}
}

bool
evk_pattern_valid(const char *s)
{
	return evk_pattern_error(s) == NULL;
}

/* True when s[0..n) is one of MQTT's or NATS's wildcards. */
static bool
foreign_wildcard(const char *s, size_t n)
{
	return n == 1 && (s[0] == '#' || s[0] == '+' || s[0] == '>');
}

bool
evk_pattern_hint(const char *s, char *out, size_t size)
{
	size_t n = strlen(s);
	char sep = 0;
	bool foreign = false;

	/* The separator: ':' if the pattern has one, else '/' (MQTT) or '.'
	 * (NATS) when the pattern uses it next to a wildcard. */
	if (strchr(s, ':') != NULL)
		sep = ':';
	else if (strchr(s, '/') != NULL)
		sep = '/';
	else if (strchr(s, '.') != NULL)
		sep = '.';
	else
		sep = ':';
	for (size_t i = 0, start = 0; i <= n; i++) {
		if (i < n && s[i] != sep)
			continue;
		const char *seg = s + start;
		size_t len = i - start;
		if (foreign_wildcard(seg, len) || (sep != ':' && len == 1 && seg[0] == '*'))
			foreign = true;
		start = i + 1;
	}
	if (!foreign || size == 0)
		return false;
	/* Rewrite: segments joined by ':', '#' and '>' become '**', '+' '*'. */
	size_t o = 0;
	for (size_t i = 0, start = 0; i <= n; i++) {
		if (i < n && s[i] != sep)
			continue;
		const char *seg = s + start;
		size_t len = i - start;
		const char *w = seg;
		size_t wl = len;
		if (len == 1 && (seg[0] == '#' || seg[0] == '>'))
			w = "**", wl = 2;
		else if (len == 1 && seg[0] == '+')
			w = "*", wl = 1;
		if (o + wl + 2 > size)
			return false;
		if (start > 0)
			out[o++] = ':';
		memcpy(out + o, w, wl);
		o += wl;
		start = i + 1;
	}
	out[o] = '\0';
	return evk_pattern_valid(out) && strcmp(out, s) != 0;
}

int
evk_pattern_check(const char *s, char *msg, size_t size)
{
	char hint[EVK_TOPIC_MAX + 8];
	const char *why = evk_pattern_error(s);
	bool hinted = evk_pattern_hint(s, hint, sizeof(hint));

	if (size > 0)
		msg[0] = '\0';
	if (why == NULL && !hinted)
		return EVK_PATTERN_OK;
	bool nats = strchr(s, '>') || (strchr(s, '.') && !strchr(s, ':') && !strchr(s, '/'));
	const char *kind = nats ? "a NATS" : "an MQTT";
	if (why == NULL)
		snprintf(msg, size, "'%s' looks like %s pattern; evkit spells it '%s'", s, kind, hint);
	else if (hinted)
		snprintf(msg, size, "invalid pattern '%s': %s (%s pattern? evkit spells it '%s')",
			 s, why, kind, hint);
	else
		snprintf(msg, size, "invalid pattern '%s': %s", s, why);
	return why == NULL ? EVK_PATTERN_HINT : EVK_PATTERN_BAD;
}

/* Walks pattern and topic segment by segment; '**' (always last) matches
 * whatever remains, including nothing. */
bool
evk_pattern_match(const char *p, const char *t, size_t n)
{
	size_t pos = 0;     /* start of the current topic segment */
	bool more = true;   /* the topic has a segment at pos */

	for (;;) {
		const char *pend = strchr(p, ':');
		size_t plen = pend ? (size_t)(pend - p) : strlen(p);

		if (plen == 2 && p[0] == '*' && p[1] == '*')
			return true;
		if (!more)
			return false;
		const char *colon = memchr(t + pos, ':', n - pos);
		size_t tlen = colon ? (size_t)(colon - (t + pos)) : n - pos;

		if (!(plen == 1 && p[0] == '*') &&
		    (plen != tlen || memcmp(p, t + pos, plen) != 0))
			return false;
		more = colon != NULL;
		pos += tlen + (more ? 1 : 0);
		if (pend == NULL)
			return !more;
		p = pend + 1;
	}
}

bool
evk_event_name_valid(const char *s, size_t n)
{
	if (n == 0 || n > EVK_EVENT_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}
