/* The implementations behind include/evkit/bus.h, each with the same
 * contract as the function of bus.h it is named after: evk_nng_*
 * (lib/bus_conn.c, lib/bus_pub.c, lib/bus_sub.c: evbusd over nng) and
 * evk_nats_* (lib/nats_*.c, NATS JetStream).
 * lib/bus_pick.c chooses by the URL's scheme. */
#ifndef EVKIT_BUS_IMPL_H
#define EVKIT_BUS_IMPL_H

#include "evkit/bus.h"

/* Private to lib/: none of these is exported from libevkit.so. */
#pragma GCC visibility push(hidden)

#define EVK_NATS_SCHEME "nats://"

/* Sets evk_bus_why's sentence (lib/bus_pick.c clears it on each open). */
void evk_bus_set_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- nng (lib/bus_conn.c, lib/bus_pub.c, lib/bus_sub.c) ---- */
struct evk_nng_pub;
struct evk_nng_sub;
int evk_nng_bus_resolve(const char *opt, char *url, size_t n, const char **why);
int evk_nng_bus_fanout_url(const char *url, char *out, size_t n);
int evk_nng_pub_open(struct evk_nng_pub **out, const char *url, evk_ack_fn on_ack,
		     void *arg);
int evk_nng_pub_add(struct evk_nng_pub *p, const char *line, size_t len);
int evk_nng_pub_flush(struct evk_nng_pub *p);
int evk_nng_pub_sync(struct evk_nng_pub *p);
uint64_t evk_nng_pub_acked(const struct evk_nng_pub *p);
uint64_t evk_nng_pub_last_seq(const struct evk_nng_pub *p);
const char *evk_nng_pub_why(const struct evk_nng_pub *p);
int evk_nng_pub_set_producer(struct evk_nng_pub *p, const char *id);
int evk_nng_pub_add_seq(struct evk_nng_pub *p, const char *line, size_t len, uint64_t pseq);
uint64_t evk_nng_pub_dropped(const struct evk_nng_pub *p);
void evk_nng_pub_close(struct evk_nng_pub *p);
int evk_nng_sub_open(struct evk_nng_sub **out, const char *url, int64_t since);
int evk_nng_sub_next(struct evk_nng_sub *s, struct evk_event *ev, int timeout_ms);
bool evk_nng_sub_buffered(const struct evk_nng_sub *s);
void evk_nng_sub_gap(const struct evk_nng_sub *s, uint64_t *from, uint64_t *to);
uint64_t evk_nng_sub_start_head(const struct evk_nng_sub *s);
uint64_t evk_nng_sub_malformed(const struct evk_nng_sub *s);
uint64_t evk_nng_sub_refilled(const struct evk_nng_sub *s);
const char *evk_nng_sub_why(const struct evk_nng_sub *s);
void evk_nng_sub_close(struct evk_nng_sub *s);
int evk_nng_bus_status(const char *url, char **json);

/* ---- NATS JetStream (lib/nats_*.c) ---- */
struct evk_nats_pub;
struct evk_nats_sub;
/* EVK_OK when url is a well-formed nats:// address (why says what is
 * wrong otherwise). */
int evk_nats_url_check(const char *url, const char **why);
int evk_nats_pub_open(struct evk_nats_pub **out, const char *url,
		      evk_ack_fn on_ack, void *arg);
int evk_nats_pub_add(struct evk_nats_pub *p, const char *line, size_t len);
int evk_nats_pub_set_producer(struct evk_nats_pub *p, const char *id);
int evk_nats_pub_add_seq(struct evk_nats_pub *p, const char *line, size_t len,
			 uint64_t pseq);
uint64_t evk_nats_pub_dropped(const struct evk_nats_pub *p);
int evk_nats_pub_flush(struct evk_nats_pub *p);
int evk_nats_pub_sync(struct evk_nats_pub *p);
uint64_t evk_nats_pub_acked(const struct evk_nats_pub *p);
uint64_t evk_nats_pub_last_seq(const struct evk_nats_pub *p);
const char *evk_nats_pub_why(const struct evk_nats_pub *p);
void evk_nats_pub_close(struct evk_nats_pub *p);
int evk_nats_sub_open(struct evk_nats_sub **out, const char *url, int64_t since,
		      const char *const *patterns, int n);
int evk_nats_sub_next(struct evk_nats_sub *s, struct evk_event *ev, int timeout_ms);
bool evk_nats_sub_buffered(const struct evk_nats_sub *s);
void evk_nats_sub_gap(const struct evk_nats_sub *s, uint64_t *from, uint64_t *to);
uint64_t evk_nats_sub_start_head(const struct evk_nats_sub *s);
uint64_t evk_nats_sub_malformed(const struct evk_nats_sub *s);
const char *evk_nats_sub_why(const struct evk_nats_sub *s);
void evk_nats_sub_close(struct evk_nats_sub *s);
int evk_nats_bus_status(const char *url, char **json);

#pragma GCC visibility pop

#endif
