/* A growable byte buffer with a hard cap, for building lines and frames. */
#ifndef EVKIT_BUF_H
#define EVKIT_BUF_H

#include <stddef.h>
#include <stdint.h>

struct evk_buf {
	char *p;
	size_t len;
	size_t cap;
	size_t max; /* growth beyond this fails with EVK_ETOOLONG */
};

#define EVK_BUF_INIT(max_) { NULL, 0, 0, (max_) }

/* Grows the storage to hold n more bytes; see evk_buf_reserve. */
int evk_buf_grow(struct evk_buf *b, size_t n);

/* Makes room for n more bytes; 0, EVK_ENOMEM or EVK_ETOOLONG. */
static inline int
evk_buf_reserve(struct evk_buf *b, size_t n)
{
	return b->len + n + 1 <= b->cap ? 0 : evk_buf_grow(b, n); /* room for a NUL */
}

int evk_buf_add(struct evk_buf *b, const void *s, size_t n);
int evk_buf_addstr(struct evk_buf *b, const char *s);

static inline int
evk_buf_addch(struct evk_buf *b, char c)
{
	int rv = evk_buf_reserve(b, 1);
	if (rv == 0) {
		b->p[b->len++] = c;
		b->p[b->len] = '\0';
	}
	return rv;
}
/* Appends s[0..n) as a JSON string, quotes included. */
int evk_buf_add_json_string(struct evk_buf *b, const char *s, size_t n);
int evk_buf_add_u64(struct evk_buf *b, uint64_t v);
static inline void evk_buf_reset(struct evk_buf *b) { b->len = 0; }
/* Frees the storage; the buffer may be used again. */
void evk_buf_release(struct evk_buf *b);

#endif
