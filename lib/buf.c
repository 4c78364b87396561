#include "evkit/buf.h"

#include "evkit/err.h"

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
