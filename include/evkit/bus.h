/* The client side of the bus: where the hub is, publishing with
 * acknowledgements, and subscribing with gap refill. */
#ifndef EVKIT_BUS_H
#define EVKIT_BUS_H

#include "evkit/event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVK_URL_MAX 512

/* Resolves the hub's address: opt (from --bus) when not NULL, else
 * $EVBUS_URL, else ipc://$XDG_RUNTIME_DIR/evkit/bus, else
 * ipc:///tmp/evkit-$UID/bus. The default directory is created with mode
 * 0700 and refused when another user owns it or others may write to it.
 * EVK_EINVAL when the address is unusable (why says how). */
int evk_bus_resolve(const char *opt, char *url, size_t n, const char **why);

/* The fan-out address that belongs to a hub address: an ipc path with
 * ".pub" appended, or a tcp port plus one. */
int evk_bus_fanout_url(const char *url, char *out, size_t n);

/* ---- publishing ---- */

struct evk_pub;

/* Called for every acknowledged frame, in seq order: count canonical lines
 * without seq (each '\n'-terminated) in lines[0..len), numbered from
 * first_seq. */
typedef void (*evk_ack_fn)(void *arg, uint64_t first_seq, const char *lines,
			   size_t len, uint32_t count);

/* Connects to the hub at url. EVK_EUNAVAIL when nothing answers there.
 * On success *out is the caller's, to release with evk_pub_close. */
int evk_pub_open(struct evk_pub **out, const char *url, evk_ack_fn on_ack,
		 void *arg);

/* Queues one canonical line without seq (no '\n'); sends a frame when it
 * is full. The line is copied. Errors are those of the hub link. */
int evk_pub_add(struct evk_pub *p, const char *line, size_t len);

/* Exactly once (as JetStream's Nats-Msg-Id): names the publisher, 1-64
 * bytes of [0-9A-Za-z_.:-], before anything is queued. From then on
 * lines are added with evk_pub_add_seq (evk_pub_add refuses them), each
 * with a sequence larger than the one before, kept by the caller across
 * runs (an outbox row's). The hub keeps, per producer id and in the
 * transaction that stores the events, the highest sequence it stored, and
 * drops a line whose sequence is not above it while still acknowledging
 * it: a line sent again after a crash is stored once. On a nats:// bus
 * each line carries the header Nats-Msg-Id: <id>:<sequence>, and
 * JetStream stores a repeat within the stream's duplicate window (two
 * minutes by default) once, acknowledging it as a duplicate. */
int evk_pub_set_producer(struct evk_pub *p, const char *id);
int evk_pub_add_seq(struct evk_pub *p, const char *line, size_t len, uint64_t pseq);
/* Acknowledged lines the hub had stored before (dropped as repeats). */
uint64_t evk_pub_dropped(const struct evk_pub *p);

/* Builds and queues one event (see evk_event_build). */
int evk_pub_event(struct evk_pub *p, const char *topic, const char *event,
		  const struct cJSON *payload);

/* Sends the frame being filled without waiting for acknowledgements
 * (frames are otherwise sent when full), so the hub can store it while
 * the caller goes on. */
int evk_pub_flush(struct evk_pub *p);

/* Sends what is queued and waits until the hub acknowledged every event.
 * EVK_ECLOSED when the hub went away: events since the last acknowledged
 * frame may or may not be stored. */
int evk_pub_sync(struct evk_pub *p);

/* The hub's reason when it refused a frame (EVK_EINVAL: bad input) or
 * failed to store it (EVK_EAGAIN: try again later, e.g. its disk is
 * full; EVK_EIO: its store is damaged or read-only); NULL otherwise. */
const char *evk_pub_why(const struct evk_pub *p);

/* Events acknowledged so far, and the last seq acknowledged. */
uint64_t evk_pub_acked(const struct evk_pub *p);
uint64_t evk_pub_last_seq(const struct evk_pub *p);

/* Closes the connection without waiting for acks; p is freed, unless
 * nng was still closing the socket after 2 s (then p stays allocated,
 * as nng may still call back into it). */
void evk_pub_close(struct evk_pub *p);

/* One-shot: connect, publish one event, wait for its ack, close.
 * *seq (when not NULL) receives its seq. */
int evk_publish(const char *url, const char *topic, const char *event,
		const struct cJSON *payload, uint64_t *seq);

/* ---- subscribing ---- */

struct evk_sub;

#define EVK_SINCE_LIVE INT64_MIN /* no replay: events after the head */

/* Subscribes to every event of the hub at url. since >= 0 replays the
 * retained events with seq > since first; EVK_SINCE_LIVE starts after
 * the hub's current head. On return the subscription is in place: no
 * event published after this call returns is missed. A subscriber never
 * moves backwards: after a hub restarted without its log (--memory), the
 * events it numbers again below the last seq delivered are not seen. */
int evk_sub_open(struct evk_sub **out, const char *url, int64_t since);

/* Like evk_sub_open, for the events whose topic matches one of the n
 * patterns (every event when n == 0). A hint to the bus, which may
 * deliver more (evbusd sends every event; on NATS the server filters
 * with one subject filter, which can be wider than the patterns) but
 * never fewer: the caller still matches each event. Seqs, replay and
 * gaps are those of evk_sub_open. */
int evk_sub_open_match(struct evk_sub **out, const char *url, int64_t since,
		       const char *const *patterns, int n);

/* The next event in seq order, each once, refilled from the hub's log
 * where the fan-out dropped some. Waits up to timeout_ms (-1: forever).
 * Returns EVK_OK with *ev filled (valid until the next call),
 * EVK_ETIMEDOUT, EVK_EGAP when a range was no longer retained (see
 * evk_sub_gap; the next call goes on after it), or a link error. */
int evk_sub_next(struct evk_sub *s, struct evk_event *ev, int timeout_ms);

/* Which stretch evk_sub_next's EVK_EGAP skipped, as the programs say it
 * on stderr: "gap: events A-B are no longer retained" (valid until the
 * next call). */
const char *evk_sub_gap_text(struct evk_sub *s);

/* evk_sub_next for a loop that goes on past a gap: a gap's text
 * (evk_sub_gap_text) goes to on_gap, and the call returns EVK_ETIMEDOUT
 * as if nothing came. Otherwise as evk_sub_next. */
int evk_sub_next_past_gaps(struct evk_sub *s, struct evk_event *ev, int timeout_ms,
			   void (*on_gap)(const char *text));

/* True while events already received wait to be read: the next
 * evk_sub_next returns without waiting on the hub. Lets a printer flush
 * once per frame instead of once per event. */
bool evk_sub_buffered(const struct evk_sub *s);

/* The range of the last EVK_EGAP. */
void evk_sub_gap(const struct evk_sub *s, uint64_t *from, uint64_t *to);

/* The hub's head seq when subscribed. */
uint64_t evk_sub_start_head(const struct evk_sub *s);

/* The hub's reason when it refused or failed a replay (EVK_EIO: its
 * store cannot be read), NULL otherwise. */
const char *evk_sub_why(const struct evk_sub *s);

/* Lines that failed evk_event_scan (skipped in their place), refilled
 * events. */
uint64_t evk_sub_malformed(const struct evk_sub *s);
uint64_t evk_sub_refilled(const struct evk_sub *s);

/* Closes the subscription and frees s. Like evk_pub_close, it waits at
 * most 2 s for nng to close the sockets (see lib/bus_conn.c: nng 1.5.2 can
 * hang there), then leaves them to the process's exit. */
void evk_sub_close(struct evk_sub *s);

/* Why the last evk_pub_open, evk_sub_open(_match), evk_publish or
 * evk_bus_status of this thread failed, as one sentence naming the
 * address, when the bus told more than that nothing answers there (on
 * NATS: JetStream not enabled, no quorum, a stream evkit cannot use);
 * NULL otherwise. */
const char *evk_bus_why(void);

/* Asks the hub for its figures (a JSON object, malloc'ed, caller frees). */
int evk_bus_status(const char *url, char **json);

#endif
