/* Keyed event gates for evsub: throttle, debounce and latest-per-key.
 *
 * A gate holds at most one pending event line per key, in bounded memory:
 * at most max_keys keys and max_bytes of pending lines. When a new key or a
 * line would pass a bound, the key due soonest is released early (its
 * pending event emitted), so nothing is dropped to make room. */
#ifndef EVKIT_GATE_H
#define EVKIT_GATE_H

#include <stddef.h>
#include <stdint.h>

enum evk_gate_mode {
	EVK_GATE_THROTTLE, /* first event at once, then the latest per window */
	EVK_GATE_DEBOUNCE, /* the latest event after ms of quiet */
	EVK_GATE_LATEST,   /* the latest event, held until evk_gate_flush */
};

#define EVK_GATE_MAX_KEYS 65536
#define EVK_GATE_MAX_BYTES (64u * 1024 * 1024)

/* Called with each event line the gate lets through. */
typedef int (*evk_gate_emit_fn)(void *arg, const char *line, size_t len);

struct evk_gate;

/* NULL when out of memory. */
struct evk_gate *evk_gate_new(enum evk_gate_mode mode, long long ms,
			      size_t max_keys, size_t max_bytes);
void evk_gate_free(struct evk_gate *g);

/* Offers one event line (seq for ordering flushes) under key at time now
 * (ms, monotonic). Returns 0 or the first non-zero emit result, or
 * EVK_ENOMEM. */
int evk_gate_offer(struct evk_gate *g, const char *key, size_t klen,
		   uint64_t seq, const char *line, size_t len, long long now,
		   evk_gate_emit_fn emit, void *arg);

/* Forgets key: its pending event is dropped unsent, and its next offer
 * starts afresh (under THROTTLE: goes at once). */
void evk_gate_forget(struct evk_gate *g, const char *key, size_t klen);

/* Emits what is due at now. */
int evk_gate_tick(struct evk_gate *g, long long now, evk_gate_emit_fn emit,
		  void *arg);

/* When the next event falls due (ms, monotonic), or -1 if none will. */
long long evk_gate_next_due(const struct evk_gate *g);

/* Emits every pending event, in seq order, and forgets all keys. */
int evk_gate_flush(struct evk_gate *g, evk_gate_emit_fn emit, void *arg);

/* Events replaced by a later one of their key before being emitted. */
uint64_t evk_gate_dropped(const struct evk_gate *g);
/* Events held now. */
size_t evk_gate_pending(const struct evk_gate *g);

#endif
