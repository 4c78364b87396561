#include "evkit/topic.h"

#include "evkit/limits.h"

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

bool
evk_pattern_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > EVK_TOPIC_MAX)
		return false;
	for (const char *seg = s;;) {
		const char *end = strchr(seg, ':');
		size_t len = end ? (size_t)(end - seg) : strlen(seg);

		if (len == 0)
			return false;
		if (len == 2 && seg[0] == '*' && seg[1] == '*') {
			if (end != NULL)
				return false; /* '**' only last */
		} else if (!(len == 1 && seg[0] == '*')) {
			for (size_t i = 0; i < len; i++)
				if (!segment_char((unsigned char)seg[i]))
					return false;
		}
		if (end == NULL)
			return true;
		seg = end + 1;
	}
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
