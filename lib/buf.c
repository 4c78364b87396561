#include "evkit/buf.h"

#include "evkit/err.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
evk_buf_grow(struct evk_buf *b, size_t n)
{
	size_t need = b->len + n + 1; /* room for a NUL */
	if (need <= b->cap)
		return EVK_OK;
	if (b->max && need > b->max + 1)
		return EVK_ETOOLONG;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	if (b->max && cap > b->max + 1)
		cap = b->max + 1;
	char *p = realloc(b->p, cap);
	if (p == NULL)
		return EVK_ENOMEM;
	b->p = p;
	b->cap = cap;
	return EVK_OK;
}

int
evk_buf_add(struct evk_buf *b, const void *s, size_t n)
{
	int rv = evk_buf_reserve(b, n);
	if (rv != EVK_OK)
		return rv;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return EVK_OK;
}

int
evk_buf_addstr(struct evk_buf *b, const char *s)
{
	return evk_buf_add(b, s, strlen(s));
}

/* Whether any of the 8 bytes of w must be escaped in a JSON string: a
 * control byte (below 0x20), '"', '\\' or DEL. Each test is the classic
 * "has a byte below n" on w or on w with the wanted byte turned to 0;
 * it is exact for "any" (a borrow only marks bytes above a true hit), and
 * bytes from 0x80 up (UTF-8) never count, as ~w masks them. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline bool
word_needs_escape(uint64_t w)
{
	uint64_t t = (w - ONES * 0x20) | ((w ^ ONES * '"') - ONES) |
		     ((w ^ ONES * '\\') - ONES) | ((w ^ ONES * 0x7f) - ONES);
	return (t & ~w & HIGHS) != 0;
}

int
evk_buf_add_json_string(struct evk_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t plain = 0; /* start of the run of bytes copied as they are */
	int rv = evk_buf_reserve(b, n + 2);
	if (rv != EVK_OK)
		return rv;
	b->p[b->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		/* Most text needs no escape: skip it a word at a time, then
		 * look at bytes one by one from the word that has a hit. */
		uint64_t w;
		while (i + 8 <= n && (memcpy(&w, s + i, 8), !word_needs_escape(w)))
			i += 8;
		if (i == n)
			break;
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 2;
		switch (c) {
		case '"': memcpy(esc, "\\\"", 2); break;
		case '\\': memcpy(esc, "\\\\", 2); break;
		case '\n': memcpy(esc, "\\n", 2); break;
		case '\r': memcpy(esc, "\\r", 2); break;
		case '\t': memcpy(esc, "\\t", 2); break;
		default:
			if (c >= 0x20 && c != 0x7f)
				continue;
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		if ((rv = evk_buf_add(b, s + plain, i - plain)) != EVK_OK ||
		    (rv = evk_buf_add(b, esc, elen)) != EVK_OK)
			return rv;
		plain = i + 1;
	}
	if ((rv = evk_buf_add(b, s + plain, n - plain)) != EVK_OK)
		return rv;
	return evk_buf_addch(b, '"');
}

int
evk_buf_add_u64(struct evk_buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return evk_buf_add(b, tmp + i, sizeof(tmp) - i);
}

void
evk_buf_release(struct evk_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
