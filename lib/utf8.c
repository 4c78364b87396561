#include "evkit/utf8.h"

#include <stdint.h>
#include <string.h>

bool
evk_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		/* Fast path: eight ASCII bytes at a time. */
		if (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if ((w & 0x8080808080808080ULL) == 0) {
				i += 8;
				continue;
			}
		}
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
		} else if (c >= 0xc2 && c <= 0xdf) {
			if (i + 1 >= n || (s[i + 1] & 0xc0) != 0x80)
				return false;
			i += 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			if (i + 2 >= n || (s[i + 1] & 0xc0) != 0x80 ||
			    (s[i + 2] & 0xc0) != 0x80)
				return false;
			if (c == 0xe0 && s[i + 1] < 0xa0)
				return false; /* overlong */
			if (c == 0xed && s[i + 1] > 0x9f)
				return false; /* surrogate */
			i += 3;
		} else if (c >= 0xf0 && c <= 0xf4) {
			if (i + 3 >= n || (s[i + 1] & 0xc0) != 0x80 ||
			    (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80)
				return false;
			if (c == 0xf0 && s[i + 1] < 0x90)
				return false; /* overlong */
			if (c == 0xf4 && s[i + 1] > 0x8f)
				return false; /* above U+10FFFF */
			i += 4;
		} else {
			return false;
		}
	}
	return true;
}

bool
evk_json_no_controls(const char *s, size_t n, size_t *at)
{
	bool in_string = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		bool bad;
		if (in_string) {
			if (c == '\\' && i + 1 < n && (unsigned char)s[i + 1] >= 0x20)
				i++; /* an escaped character */
			else if (c == '"')
				in_string = false;
			bad = c < 0x20;
		} else {
			if (c == '"')
				in_string = true;
			bad = c < 0x20 && c != '\t' && c != '\n' && c != '\r';
		}
		if (bad) {
			if (at)
				*at = i;
			return false;
		}
	}
	return true;
}
