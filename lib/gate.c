#include "evkit/gate.h"

#include "evkit/err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *hnext;       /* hash chain */
	struct entry *prev, *next; /* due order */
	long long due;
	uint64_t seq;
	uint32_t hash;
	bool pending;
	char *line;
	size_t len, cap;
	size_t klen;
	char key[]; /* klen bytes */
};

struct evk_gate {
	enum evk_gate_mode mode;
	long long ms;
	size_t max_keys, max_bytes;
	size_t nkeys, bytes, npending;
	uint64_t dropped;
	struct entry **buckets;
	size_t nbuckets; /* a power of two */
	struct entry *head, *tail;
};

static uint32_t
hash_key(const char *k, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 16777619u;
	return h;
}

struct evk_gate *
evk_gate_new(enum evk_gate_mode mode, long long ms, size_t max_keys,
	     size_t max_bytes)
{
	struct evk_gate *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->mode = mode;
	g->ms = ms;
	g->max_keys = max_keys ? max_keys : 1;
	g->max_bytes = max_bytes;
	g->nbuckets = 64;
	while (g->nbuckets < g->max_keys && g->nbuckets < (1u << 20))
		g->nbuckets <<= 1;
	if ((g->buckets = calloc(g->nbuckets, sizeof(*g->buckets))) == NULL) {
		free(g);
		return NULL;
	}
	return g;
}

static void
list_unlink(struct evk_gate *g, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		g->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		g->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
list_append(struct evk_gate *g, struct entry *e)
{
	e->prev = g->tail;
	e->next = NULL;
	if (g->tail)
		g->tail->next = e;
	else
		g->head = e;
	g->tail = e;
}

static void
entry_remove(struct evk_gate *g, struct entry *e)
{
	struct entry **pp = &g->buckets[e->hash & (g->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	list_unlink(g, e);
	if (e->pending)
		g->npending--;
	g->bytes -= e->cap;
	g->nkeys--;
	free(e->line);
	free(e);
}

/* Emits e's pending event, if any. */
static int
release(struct evk_gate *g, struct entry *e, evk_gate_emit_fn emit, void *arg)
{
	if (!e->pending)
		return 0;
	e->pending = false;
	g->npending--;
	return emit(arg, e->line, e->len);
}

/* Makes room by releasing and forgetting the key due soonest. */
static int
evict_one(struct evk_gate *g, evk_gate_emit_fn emit, void *arg)
{
	struct entry *e = g->head;
	int rv = release(g, e, emit, arg);
	entry_remove(g, e);
	return rv;
}

static int
hold(struct evk_gate *g, struct entry *e, uint64_t seq, const char *line,
     size_t len, evk_gate_emit_fn emit, void *arg)
{
	int rv;

	if (e->pending)
		g->dropped++; /* replaced: latest wins */
	if (len > e->cap) {
		/* Room for the larger line; other keys give way first. */
		while (g->bytes - e->cap + len > g->max_bytes && g->head != e &&
		       g->nkeys > 1)
			if ((rv = evict_one(g, emit, arg)) != 0)
				return rv;
		char *p = realloc(e->line, len);
		if (p == NULL)
			return EVK_ENOMEM;
		g->bytes += len - e->cap;
		e->line = p;
		e->cap = len;
	}
	memcpy(e->line, line, len);
	e->len = len;
	e->seq = seq;
	if (!e->pending)
		g->npending++;
	e->pending = true;
	return 0;
}

static struct entry *
find(const struct evk_gate *g, const char *key, size_t klen, uint32_t h)
{
	struct entry *e = g->buckets[h & (g->nbuckets - 1)];
	while (e && !(e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0))
		e = e->hnext;
	return e;
}

void
evk_gate_forget(struct evk_gate *g, const char *key, size_t klen)
{
	struct entry *e = find(g, key, klen, hash_key(key, klen));
	if (e)
		entry_remove(g, e);
}

int
evk_gate_offer(struct evk_gate *g, const char *key, size_t klen, uint64_t seq,
	       const char *line, size_t len, long long now,
	       evk_gate_emit_fn emit, void *arg)
{
	uint32_t h = hash_key(key, klen);
	struct entry *e = find(g, key, klen, h);
	int rv;

	if (e == NULL) {
		while (g->nkeys >= g->max_keys)
			if ((rv = evict_one(g, emit, arg)) != 0)
				return rv;
		if ((e = calloc(1, sizeof(*e) + klen)) == NULL)
			return EVK_ENOMEM;
		memcpy(e->key, key, klen);
		e->klen = klen;
		e->hash = h;
		e->hnext = g->buckets[h & (g->nbuckets - 1)];
		g->buckets[h & (g->nbuckets - 1)] = e;
		g->nkeys++;
		list_append(g, e);
		if (g->mode == EVK_GATE_THROTTLE) {
			/* A new window: this event goes at once. */
			e->due = now + g->ms;
			return emit(arg, line, len);
		}
	}
	switch (g->mode) {
	case EVK_GATE_THROTTLE:
		return hold(g, e, seq, line, len, emit, arg);
	case EVK_GATE_DEBOUNCE:
		e->due = now + g->ms;
		list_unlink(g, e);
		list_append(g, e);
		return hold(g, e, seq, line, len, emit, arg);
	case EVK_GATE_LATEST:
		return hold(g, e, seq, line, len, emit, arg);
	}
	return 0;
}

int
evk_gate_tick(struct evk_gate *g, long long now, evk_gate_emit_fn emit, void *arg)
{
	int rv;

	if (g->mode == EVK_GATE_LATEST)
		return 0;
	while (g->head && g->head->due <= now) {
		struct entry *e = g->head;
		if (g->mode == EVK_GATE_THROTTLE && e->pending) {
			/* The window's last event; a new window starts now. */
			rv = release(g, e, emit, arg);
			e->due = now + g->ms;
			list_unlink(g, e);
			list_append(g, e);
		} else {
			rv = release(g, e, emit, arg);
			entry_remove(g, e);
		}
		if (rv != 0)
			return rv;
	}
	return 0;
}

long long
evk_gate_next_due(const struct evk_gate *g)
{
	if (g->mode == EVK_GATE_LATEST || g->head == NULL)
		return -1;
	return g->head->due;
}

static int
by_seq(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

int
evk_gate_flush(struct evk_gate *g, evk_gate_emit_fn emit, void *arg)
{
	struct entry **held = NULL;
	size_t n = 0;
	int rv = 0;

	if (g->npending > 0) {
		if ((held = malloc(g->npending * sizeof(*held))) == NULL)
			return EVK_ENOMEM;
		for (struct entry *e = g->head; e; e = e->next)
			if (e->pending)
				held[n++] = e;
		qsort(held, n, sizeof(*held), by_seq);
	}
	for (size_t i = 0; i < n && rv == 0; i++)
		rv = release(g, held[i], emit, arg);
	free(held);
	while (g->head)
		entry_remove(g, g->head);
	return rv;
}

uint64_t
evk_gate_dropped(const struct evk_gate *g)
{
	return g->dropped;
}

size_t
evk_gate_pending(const struct evk_gate *g)
{
	return g->npending;
}

void
evk_gate_free(struct evk_gate *g)
{
	if (g == NULL)
		return;
	while (g->head)
		entry_remove(g, g->head);
	free(g->buckets);
	free(g);
}
