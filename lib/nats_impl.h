/* The private declarations shared by lib/nats_link.c (addresses, the
 * link, the stream), lib/nats_pub.c (publishing), lib/nats_sub.c
 * (subscribing) and lib/nats_status.c (evk_nats_bus_status): the bus on
 * NATS JetStream behind include/evkit/bus.h for nats:// addresses
 * (picked by lib/bus_pick.c).
 *
 *   nats://HOST:PORT[,HOST:PORT...][/STREAM][?replicas=N]
 *
 * Each event is one message on the subject of its topic (evkit/subject.h)
 * holding the canonical line without seq; the stream's sequence is the
 * seq. The stream (default EVKIT) is created on first use when missing:
 * subjects evk.>, file storage, limits retention of EVK_RETAIN_DEFAULT
 * messages, discard old, the URL's replicas (default 1). A stream that
 * exists is used as it is, never altered: evkit refuses one it cannot use
 * (other subjects, another retention), and its status lists what
 * differs. A failure the user can act on (JetStream not enabled, no
 * quorum, a stream evkit cannot use, a subject longer than the server
 * takes) is told by evk_bus_why or the handle's why, naming the address.
 *
 * Publishing is asynchronous with PubAcks (each event a publish with its
 * own reply subject), up to NATS_WINDOW messages (and NATS_WINDOW_BYTES)
 * in flight; acks are reported in publishing order and the first failure
 * is sticky, so nothing after an unacknowledged event is reported as
 * acknowledged. Subscribing is an ordered push consumer (flow control,
 * heartbeats, made again from the next stream sequence when it misses
 * something) on the subscriber's patterns'
 * subject filter (evkit/subject.h; evk.> for every event), starting at
 * the wanted sequence: the consumer sequence tells a message lost on the
 * way, the stream's oldest retained sequence tells a gap (the stream no
 * longer holds that stretch) from events the filter skipped. */
#ifndef EVKIT_NATS_IMPL_H
#define EVKIT_NATS_IMPL_H

#include "bus_impl.h"

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/limits.h"
#include "evkit/proto.h"
#include "evkit/subject.h"

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Private to lib/: none of these is exported from libevkit.so. */
#pragma GCC visibility push(hidden)

#define NATS_SERVERS_MAX 16
#define NATS_STREAM_DEFAULT "EVKIT"
#define NATS_STREAM_NAME_MAX 32
#define NATS_FILTER "evk.>"
#define NATS_WINDOW 4096                    /* messages in flight */
#define NATS_WINDOW_BYTES (16 * 1024 * 1024) /* bytes in flight */
#define NATS_LINE_KEEP (64 * 1024)          /* larger line buffers are freed */
#define NATS_API_WAIT_MS 5000               /* JetStream API requests */
#define NATS_SUB_PENDING_MSGS 65536         /* client-side queue of a consumer */
#define NATS_SUB_PENDING_BYTES (64 * 1024 * 1024)
#define NATS_RECONNECTS 120                 /* every 250 ms: 30 s and more */
#define NATS_CLOSE_WAIT_MS 2000
#define NATS_HEARTBEAT_MS 1000              /* a consumer's idle heartbeat */
#define NATS_INACTIVE_MS 10000              /* an abandoned consumer goes */
#define NATS_RESUB_MS 30000                 /* making a consumer may fail so long */
#define NATS_RETRY_MS 100                   /* between two tries */
#define NATS_PROBE_MS 3000                  /* an idle consumer is checked */
#define NATS_CONNECT_ALL_MS 4000            /* every server of the list tried */
#define NATS_LEADER_WAIT_MS 5000            /* a stream elects its leader */
#define NATS_GAP_CHECK_MS 100               /* the retained range, read again */
#define NATS_CLOSED_POLL_MS 100             /* waiting acks: is the link closed? */
#define NATS_NAP_NS 200000                  /* in a burst, before waiting */
#define NATS_PEER_SILENT_MS 5000            /* a replica unheard of is down */

struct nurl {
	char buf[EVK_URL_MAX + 8 * NATS_SERVERS_MAX];
	const char *servers[NATS_SERVERS_MAX];
	int n;
	char stream[NATS_STREAM_NAME_MAX + 1];
	int replicas;
	bool replicas_given; /* ?replicas=N */
};

/* A connection with its JetStream context, to the stream of its URL. */
struct link {
	natsConnection *nc;
	jsCtx *js;
	struct nurl u;
	char url[EVK_URL_MAX]; /* as the user gave it, for messages */
	bool missing; /* the stream does not exist (yet) */
	atomic_bool reconnected; /* since the consumer was made */
};

/* An evkit error code (EVK_*) for a library status. */
int nats_err(natsStatus s);
/* Connects l to url's servers (the first that answers, in order;
 * reconnects to the others); *l is set whole. */
int nats_link_open(struct link *l, const char *url, const jsOptions *jo);
/* Closes l's connection and context (l may be half open). */
void nats_link_close(struct link *l);
/* The error code alone for a failed JetStream call (EVK_EUNAVAIL: worth
 * trying again). */
int nats_js_err(natsStatus s, jsErrCode jerr);
/* What differs in c from the configuration evkit makes, as "; "-separated
 * notes into out. */
void nats_config_differs(const struct link *l, const jsStreamConfig *c, char *out, size_t n);
/* True when the stream has a leader and most of its replicas are online. */
bool nats_has_quorum(const jsStreamInfo *si);
/* The stream's info into *si, creating the stream when missing and create
 * is true. */
int nats_stream_info(struct link *l, jsStreamInfo **si, bool create);
/* The stream for a publisher or subscriber: made when missing, refused
 * when unusable, with a leader. */
int nats_stream_open(struct link *l, jsStreamInfo **si);

#pragma GCC visibility pop

#endif
