/* The bus on NATS JetStream: include/evkit/bus.h for nats:// addresses
 * (picked by lib/bus_pick.c).
 *
 *   nats://HOST:PORT[,HOST:PORT...][/STREAM][?replicas=N]
 *
 * Each event is one message on the subject of its topic (evkit/subject.h)
 * holding the canonical line without seq; the stream's sequence is the
 * seq. The stream (default EVKIT) is created on first use when missing:
 * subjects evk.>, file storage, limits retention of EVK_RETAIN_DEFAULT
 * messages, discard old, the URL's replicas (default 1). A stream that
 * exists is used as it is.
 *
 * Publishing is asynchronous with PubAcks, up to NATS_WINDOW messages (and
 * NATS_WINDOW_BYTES) in flight; acks are reported in publishing order and
 * the first failure is sticky, so nothing after an unacknowledged event
 * is reported as acknowledged. Subscribing is an ordered push consumer
 * (flow control, heartbeats, recreated by the library from the last
 * stream sequence seen when it misses something) on evk.>, starting at
 * the wanted sequence: a stream sequence past the expected one is a gap
 * (the stream no longer holds that stretch). */
#include "bus_impl.h"

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/limits.h"
#include "evkit/subject.h"

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- addresses ---- */

struct nurl {
	char buf[EVK_URL_MAX + 8 * NATS_SERVERS_MAX];
	const char *servers[NATS_SERVERS_MAX];
	int n;
	char stream[NATS_STREAM_NAME_MAX + 1];
	int replicas;
};

static int
parse_url(struct nurl *u, const char *url, const char **why)
{
	const char *p = url + sizeof(EVK_NATS_SCHEME) - 1;
	size_t at = 0;

	memset(u, 0, sizeof(*u));
	strcpy(u->stream, NATS_STREAM_DEFAULT);
	u->replicas = 1;
	if (strlen(url) >= EVK_URL_MAX) {
		*why = "address too long";
		return EVK_EINVAL;
	}
	/* Servers: HOST[:PORT] separated by commas, each as nats://HOST:PORT. */
	while (*p != '\0' && *p != '/' && *p != '?') {
		size_t len = strcspn(p, ",/?");
		const char *colon = memchr(p, ':', len);
		if (len == 0 || colon == p) {
			*why = "nats:// wants HOST:PORT[,HOST:PORT...]";
			return EVK_EINVAL;
		}
		if (colon) {
			char *end;
			long port = strtol(colon + 1, &end, 10);
			if (end != p + len || port <= 0 || port > 65535) {
				*why = "a nats:// server's port must be 1-65535";
				return EVK_EINVAL;
			}
		}
		for (size_t i = 0; i < len; i++)
			if (p[i] <= ' ' || p[i] == '@' || p[i] > '~') {
				*why = "a nats:// server must be HOST:PORT";
				return EVK_EINVAL;
			}
		if (u->n == NATS_SERVERS_MAX) {
			*why = "at most 16 servers in a nats:// address";
			return EVK_EINVAL;
		}
		u->servers[u->n++] = u->buf + at;
		at += (size_t)sprintf(u->buf + at, "nats://%.*s%s", (int)len, p,
				      colon ? "" : ":4222") + 1;
		p += len;
		if (*p == ',')
			p++;
	}
	if (u->n == 0) {
		*why = "nats:// wants at least one HOST:PORT";
		return EVK_EINVAL;
	}
	if (*p == '/') {
		size_t len = strcspn(++p, "?");
		if (len == 0 || len > NATS_STREAM_NAME_MAX) {
			*why = "a stream name is 1-32 characters";
			return EVK_EINVAL;
		}
		for (size_t i = 0; i < len; i++)
			if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
			      (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '-')) {
				*why = "a stream name holds only A-Z a-z 0-9 _ -";
				return EVK_EINVAL;
			}
		memcpy(u->stream, p, len);
		u->stream[len] = '\0';
		p += len;
	}
	if (*p == '?') {
		char *end;
		if (strncmp(p + 1, "replicas=", 9) != 0) {
			*why = "the only nats:// parameter is replicas=N";
			return EVK_EINVAL;
		}
		long r = strtol(p + 10, &end, 10);
		if (end == p + 10 || *end != '\0' || r < 1 || r > 5) {
			*why = "replicas must be 1-5";
			return EVK_EINVAL;
		}
		u->replicas = (int)r;
		p = end;
	}
	if (*p != '\0') {
		*why = "unexpected characters after the nats:// address";
		return EVK_EINVAL;
	}
	return EVK_OK;
}

int
evk_nats_url_check(const char *url, const char **why)
{
	struct nurl u;
	return parse_url(&u, url, why);
}

/* ---- connections ---- */

static int
from_nats(natsStatus s)
{
	switch (s) {
	case NATS_OK: return EVK_OK;
	case NATS_NO_MEMORY: return EVK_ENOMEM;
	case NATS_TIMEOUT: return EVK_ETIMEDOUT;
	case NATS_NO_SERVER:
	case NATS_NO_RESPONDERS:
	case NATS_NOT_FOUND: return EVK_EUNAVAIL;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_STALE_CONNECTION:
	case NATS_INVALID_SUBSCRIPTION: return EVK_ECLOSED;
	case NATS_MAX_PAYLOAD: return EVK_ETOOLONG;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT: return EVK_EINVAL;
	default: return EVK_EIO;
	}
}

/* The library reports asynchronous errors here; lib/ never prints, and
 * every error that matters comes back through a call. */
static void
quiet_errors(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	(void)nc;
	(void)sub;
	(void)err;
	(void)arg;
}

struct link {
	natsConnection *nc;
	jsCtx *js;
	struct nurl u;
	bool missing; /* the stream does not exist (yet) */
	atomic_bool reconnected; /* since the consumer was made */
};

static void
on_reconnected(natsConnection *nc, void *arg)
{
	struct link *l = arg;
	(void)nc;
	l->reconnected = true;
}

static void
link_close(struct link *l)
{
	if (l->js)
		jsCtx_Destroy(l->js);
	if (l->nc)
		natsConnection_Destroy(l->nc);
	l->js = NULL;
	l->nc = NULL;
}

/* Connects to the first server of the list that answers (in the order
 * given), with reconnects to the others (and to servers the cluster
 * announces) when it goes away. */
static int
link_open(struct link *l, const char *url, const jsOptions *jo)
{
	natsOptions *o = NULL;
	natsStatus s;
	const char *why;
	int rv;

	memset(l, 0, sizeof(*l));
	if ((rv = parse_url(&l->u, url, &why)) != EVK_OK)
		return rv;
	if ((s = natsOptions_Create(&o)) != NATS_OK)
		return from_nats(s);
	if ((s = natsOptions_SetServers(o, l->u.servers, l->u.n)) != NATS_OK ||
	    (s = natsOptions_SetNoRandomize(o, true)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(o, EVK_CONNECT_TIMEOUT_MS)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(o, NATS_RECONNECTS)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(o, 250)) != NATS_OK ||
	    (s = natsOptions_SetPingInterval(o, 2000)) != NATS_OK ||
	    (s = natsOptions_SetMaxPingsOut(o, 3)) != NATS_OK ||
	    (s = natsOptions_SetMaxPendingMsgs(o, NATS_SUB_PENDING_MSGS)) != NATS_OK ||
	    (s = natsOptions_SetErrorHandler(o, quiet_errors, NULL)) != NATS_OK ||
	    (s = natsOptions_SetReconnectedCB(o, on_reconnected, l)) != NATS_OK ||
	    (s = natsOptions_SetName(o, "evkit")) != NATS_OK) {
		natsOptions_Destroy(o);
		return from_nats(s);
	}
	s = natsConnection_Connect(&l->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		l->nc = NULL;
		return s == NATS_NO_MEMORY ? EVK_ENOMEM : EVK_EUNAVAIL;
	}
	if ((s = natsConnection_JetStream(&l->js, l->nc, (jsOptions *)jo)) != NATS_OK) {
		link_close(l);
		return from_nats(s);
	}
	return EVK_OK;
}

/* The error of a JetStream API request: no responders means JetStream is
 * not enabled there (or has no quorum yet). */
static int
from_js(natsStatus s, jsErrCode jerr)
{
	if (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT ||
	    jerr == JSNotEnabledForAccountErr || jerr == JSClusterNotAvailErr ||
	    jerr == JSClusterNoPeersErr || jerr == JSStreamReplicasNotSupportedErr ||
	    jerr == JSInsufficientResourcesErr)
		return EVK_EUNAVAIL;
	return from_nats(s);
}

/* The stream's info, creating the stream when it is missing. */
static int
stream_info(struct link *l, jsStreamInfo **si, bool create)
{
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(si, l->js, l->u.stream, NULL, &jerr);

	if (s == NATS_OK)
		return EVK_OK;
	if (!(s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr))
		return from_js(s, jerr);
	l->missing = true;
	if (!create)
		return EVK_EUNAVAIL;
	jsStreamConfig sc;
	const char *subjects[] = { NATS_FILTER };
	jsStreamConfig_Init(&sc);
	sc.Name = l->u.stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Retention = js_LimitsPolicy;
	sc.MaxMsgs = EVK_RETAIN_DEFAULT;
	sc.Discard = js_DiscardOld;
	sc.Storage = js_FileStorage;
	sc.Replicas = l->u.replicas;
	jerr = 0;
	s = js_AddStream(si, l->js, &sc, NULL, &jerr);
	if (s == NATS_OK)
		return EVK_OK;
	if (jerr == JSStreamNameExistErr) {
		/* Someone else made it meanwhile: theirs is used as it is. */
		jerr = 0;
		if ((s = js_GetStreamInfo(si, l->js, l->u.stream, NULL, &jerr)) == NATS_OK)
			return EVK_OK;
	}
	return from_js(s, jerr);
}

/* ---- publishing ---- */

enum { ENTRY_FREE, ENTRY_SENT, ENTRY_ACKED, ENTRY_FAILED };

struct entry {
	natsMsg *msg;   /* handed to the library, until its ack came */
	char *line;     /* the canonical line without seq, '\n'-terminated */
	size_t len, cap;
	uint64_t seq;
	int state;      /* under mu */
	natsStatus err; /* of an ENTRY_FAILED */
	jsErrCode jerr; /* and JetStream's reason, when it gave one */
};

struct evk_nats_pub {
	struct link l;
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* an entry left ENTRY_SENT */
	struct entry ring[NATS_WINDOW];
	unsigned oldest, count; /* the entries in flight, in publishing order */
	size_t bytes;           /* their lines' bytes */
	evk_ack_fn on_ack;
	void *arg;
	uint64_t acked, last_seq;
	int failed;             /* sticky */
	struct evk_buf scan;
	char subject[EVK_SUBJECT_MAX];
};

/* A PubAck or its failure (runs on a library thread). */
static void
on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct evk_nats_pub *p = closure;
	(void)js;

	pthread_mutex_lock(&p->mu);
	for (unsigned i = 0; i < p->count; i++) {
		struct entry *e = &p->ring[(p->oldest + i) % NATS_WINDOW];
		if (e->msg != msg || e->state != ENTRY_SENT)
			continue;
		if (pa != NULL) {
			e->state = ENTRY_ACKED;
			e->seq = pa->Sequence;
		} else {
			e->state = ENTRY_FAILED;
			e->err = pae ? pae->Err : NATS_ERR;
			e->jerr = pae ? pae->ErrCode : 0;
		}
		e->msg = NULL;
		pthread_cond_broadcast(&p->cv);
		break;
	}
	pthread_mutex_unlock(&p->mu);
	natsMsg_Destroy(msg);
}

static int
from_puback(natsStatus s, jsErrCode jerr)
{
	/* JetStream refused it (a full or failing store, a stream that
	 * does not take the subject): an error of the bus itself. */
	if (jerr != 0)
		return from_js(s, jerr) == EVK_EUNAVAIL ? EVK_EUNAVAIL : EVK_EIO;
	if (s == NATS_NO_RESPONDERS)
		return EVK_EUNAVAIL;
	/* No ack within the wait, or the connection went: it may or may
	 * not be stored. */
	return EVK_ECLOSED;
}

/* Reports the oldest entries whose ack came, in order. With wait, first
 * waits (until deadline_ms on the monotonic clock) for the oldest one. */
static int
complete(struct evk_nats_pub *p, bool wait, long long deadline_ms)
{
	pthread_mutex_lock(&p->mu);
	if (wait && p->count > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long long left = deadline_ms - evk_mono_ms();
		if (left < 0)
			left = 0;
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (p->ring[p->oldest].state == ENTRY_SENT)
			if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0)
				break;
		if (p->ring[p->oldest].state == ENTRY_SENT) {
			pthread_mutex_unlock(&p->mu);
			return p->failed = EVK_ECLOSED;
		}
	}
	while (p->count > 0 && p->ring[p->oldest].state != ENTRY_SENT) {
		struct entry *e = &p->ring[p->oldest];
		if (e->state == ENTRY_FAILED) {
			pthread_mutex_unlock(&p->mu);
			return p->failed = from_puback(e->err, e->jerr);
		}
		pthread_mutex_unlock(&p->mu);
		p->acked++;
		p->last_seq = e->seq;
		if (p->on_ack)
			p->on_ack(p->arg, e->seq, e->line, e->len, 1);
		if (e->cap > NATS_LINE_KEEP) {
			free(e->line);
			e->line = NULL;
			e->cap = 0;
		}
		pthread_mutex_lock(&p->mu);
		e->state = ENTRY_FREE;
		p->bytes -= e->len;
		p->oldest = (p->oldest + 1) % NATS_WINDOW;
		p->count--;
	}
	pthread_mutex_unlock(&p->mu);
	return EVK_OK;
}

int
evk_nats_pub_open(struct evk_nats_pub **out, const char *url, evk_ack_fn on_ack,
		  void *arg)
{
	struct evk_nats_pub *p = calloc(1, sizeof(*p));
	jsStreamInfo *si = NULL;
	jsOptions jo;
	int rv;

	if (p == NULL)
		return EVK_ENOMEM;
	if (pthread_mutex_init(&p->mu, NULL) != 0) {
		free(p);
		return EVK_ENOMEM;
	}
	if (pthread_cond_init(&p->cv, NULL) != 0) {
		pthread_mutex_destroy(&p->mu);
		free(p);
		return EVK_ENOMEM;
	}
	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	jo.PublishAsync.MaxPending = NATS_WINDOW;
	jo.PublishAsync.AckHandler = on_puback;
	jo.PublishAsync.AckHandlerClosure = p;
	if ((rv = link_open(&p->l, url, &jo)) != EVK_OK ||
	    (rv = stream_info(&p->l, &si, true)) != EVK_OK) {
		link_close(&p->l);
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return rv;
	}
	jsStreamInfo_Destroy(si);
	p->scan = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX);
	p->on_ack = on_ack;
	p->arg = arg;
	*out = p;
	return EVK_OK;
}

/* The topic of a canonical line as evk_event_build writes it,
 * {"ts":"<27>","topic":"...", when it holds no JSON escape; false
 * otherwise (then the full scan finds it). */
static bool
plain_topic(const char *line, size_t len, const char **topic, size_t *n)
{
	static const char head[] = "{\"ts\":\"";
	static const char mid[] = "\",\"topic\":\"";
	const size_t at = sizeof(head) - 1 + EVK_TS_LEN + sizeof(mid) - 1;

	if (len <= at || memcmp(line, head, sizeof(head) - 1) != 0 ||
	    memcmp(line + sizeof(head) - 1 + EVK_TS_LEN, mid, sizeof(mid) - 1) != 0)
		return false;
	size_t max = len - at < EVK_TOPIC_MAX + 1 ? len - at : EVK_TOPIC_MAX + 1;
	const char *end = memchr(line + at, '"', max);
	if (end == NULL || memchr(line + at, '\\', (size_t)(end - (line + at))))
		return false;
	*topic = line + at;
	*n = (size_t)(end - *topic);
	return true;
}

int
evk_nats_pub_add(struct evk_nats_pub *p, const char *line, size_t len)
{
	struct evk_event ev;
	natsMsg *m = NULL;
	natsStatus s;
	int rv;

	if (p->failed)
		return p->failed;
	/* The topic, for the subject. */
	const char *topic;
	size_t topic_len;
	if (!plain_topic(line, len, &topic, &topic_len)) {
		/* Escapes in it: scan the line as if it had a seq. */
		if (len < 2 || line[0] != '{')
			return EVK_EINVAL;
		evk_buf_reset(&p->scan);
		if ((rv = evk_buf_add(&p->scan, "{\"seq\":1,", 9)) != EVK_OK ||
		    (rv = evk_buf_add(&p->scan, line + 1, len - 1)) != EVK_OK)
			return rv;
		if (evk_event_scan(&ev, p->scan.p, p->scan.len) != EVK_OK)
			return EVK_EINVAL;
		topic = ev.topic;
		topic_len = ev.topic_len;
	}
	if ((rv = evk_subject_from_topic(p->subject, sizeof(p->subject), topic,
					 topic_len)) != EVK_OK)
		return rv;
	/* A place in the window. */
	while (p->count == NATS_WINDOW ||
	       (p->count > 0 && p->bytes + len + 1 > NATS_WINDOW_BYTES))
		if ((rv = complete(p, true, evk_mono_ms() + EVK_ACK_TIMEOUT_MS + 5000)) !=
		    EVK_OK)
			return rv;
	struct entry *e = &p->ring[(p->oldest + p->count) % NATS_WINDOW];
	if (e->cap < len + 1) {
		char *n = realloc(e->line, len + 1);
		if (n == NULL)
			return EVK_ENOMEM;
		e->line = n;
		e->cap = len + 1;
	}
	memcpy(e->line, line, len);
	e->line[len] = '\n';
	e->len = len + 1;
	if ((s = natsMsg_Create(&m, p->subject, NULL, line, (int)len)) != NATS_OK)
		return p->failed = from_nats(s);
	pthread_mutex_lock(&p->mu);
	e->msg = m;
	e->state = ENTRY_SENT;
	p->count++;
	p->bytes += e->len;
	pthread_mutex_unlock(&p->mu);
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = EVK_ACK_TIMEOUT_MS;
	natsMsg *send = m;
	if ((s = js_PublishMsgAsync(p->l.js, &send, &po)) != NATS_OK) {
		/* Not handed over: it is still ours, and the last entry. */
		pthread_mutex_lock(&p->mu);
		e->state = ENTRY_FREE;
		e->msg = NULL;
		p->count--;
		p->bytes -= e->len;
		pthread_mutex_unlock(&p->mu);
		natsMsg_Destroy(send);
		/* Too large, or else the connection is gone (closed, or its
		 * reconnect buffer full): what came before may be stored. */
		return p->failed = s == NATS_MAX_PAYLOAD ? EVK_ETOOLONG
				   : s == NATS_NO_MEMORY  ? EVK_ENOMEM
							  : EVK_ECLOSED;
	}
	/* Reports what was acknowledged meanwhile, without waiting. */
	return complete(p, false, 0);
}

int
evk_nats_pub_flush(struct evk_nats_pub *p)
{
	/* Every message is on its way already (the library's flusher sends
	 * them): only acks to report. */
	if (p->failed)
		return p->failed;
	return complete(p, false, 0);
}

int
evk_nats_pub_sync(struct evk_nats_pub *p)
{
	int rv;

	while (p->count > 0)
		if ((rv = complete(p, true, evk_mono_ms() + EVK_ACK_TIMEOUT_MS + 5000)) !=
		    EVK_OK)
			return rv;
	return p->failed;
}

uint64_t
evk_nats_pub_acked(const struct evk_nats_pub *p)
{
	return p->acked;
}

uint64_t
evk_nats_pub_last_seq(const struct evk_nats_pub *p)
{
	return p->last_seq;
}

void
evk_nats_pub_close(struct evk_nats_pub *p)
{
	if (p == NULL)
		return;
	/* Acks still to come would call into p: give them a moment. */
	long long until = evk_mono_ms() + NATS_CLOSE_WAIT_MS;
	p->on_ack = NULL;
	while (p->count > 0 && evk_mono_ms() < until)
		if (complete(p, true, until) != EVK_OK)
			break;
	natsConnection_Close(p->l.nc);
	pthread_mutex_lock(&p->mu);
	bool pending = false;
	for (unsigned i = 0; i < p->count; i++)
		if (p->ring[(p->oldest + i) % NATS_WINDOW].state == ENTRY_SENT)
			pending = true;
	pthread_mutex_unlock(&p->mu);
	link_close(&p->l);
	if (pending)
		return; /* the library may still call on_puback: p stays */
	for (unsigned i = 0; i < NATS_WINDOW; i++)
		free(p->ring[i].line);
	evk_buf_release(&p->scan);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* ---- subscribing ---- */

struct evk_nats_sub {
	struct link l;
	natsSubscription *sub; /* NULL while a new consumer is to be made */
	long long resub_since; /* when making one started failing, or 0 */
	long long probed;      /* when the consumer was last known to exist */
	natsMsg *held;        /* the message after a gap, delivered next */
	struct evk_buf line;  /* the event being delivered, with its seq */
	uint64_t next;        /* seq of the next event to deliver */
	uint64_t start_head;
	uint64_t gap_from, gap_to;
	uint64_t malformed;
	char subject[EVK_SUBJECT_MAX];
};

/* Makes the consumer: ephemeral, push, no acks, starting at s->next, with
 * flow control (the server sends no more than the client has taken in)
 * and heartbeats (a consumer that went away with its server is noticed).
 * This is an ordered consumer done here rather than by the library, so
 * that a new one is made, from the next seq, whenever anything is amiss:
 * a missed heartbeat, a consumer sequence that skipped, a full queue. */
static int
subscribe(struct evk_nats_sub *s)
{
	jsSubOptions so;
	jsOptions jo;
	jsErrCode jerr = 0;
	natsStatus st;

	if (s->sub) {
		natsSubscription_Destroy(s->sub);
		s->sub = NULL;
	}
	s->l.reconnected = false;
	s->probed = evk_mono_ms();
	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	jsSubOptions_Init(&so);
	so.Stream = s->l.u.stream;
	so.ManualAck = true;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = s->next;
	so.Config.AckPolicy = js_AckNone;
	so.Config.FlowControl = true;
	so.Config.Heartbeat = (int64_t)NATS_HEARTBEAT_MS * 1000000;
	so.Config.InactiveThreshold = (int64_t)NATS_INACTIVE_MS * 1000000;
	so.Config.MemoryStorage = true;
	so.Config.Replicas = 1;
	if ((st = js_SubscribeSync(&s->sub, s->l.js, NATS_FILTER, &jo, &so, &jerr)) !=
	    NATS_OK) {
		s->sub = NULL;
		return from_js(st, jerr);
	}
	if ((st = natsSubscription_SetPendingLimits(s->sub, NATS_SUB_PENDING_MSGS,
						    NATS_SUB_PENDING_BYTES)) != NATS_OK) {
		natsSubscription_Destroy(s->sub);
		s->sub = NULL;
		return from_nats(st);
	}
	return EVK_OK;
}

/* A consumer cannot be made: worth trying again (a cluster electing a
 * leader, or placing the consumer on a server that just died)? */
static bool
transient(int rv)
{
	return rv == EVK_EUNAVAIL || rv == EVK_ETIMEDOUT || rv == EVK_ECLOSED;
}

int
evk_nats_sub_open(struct evk_nats_sub **out, const char *url, int64_t since)
{
	struct evk_nats_sub *s = calloc(1, sizeof(*s));
	jsStreamInfo *si = NULL;
	jsOptions jo;
	int rv;

	if (s == NULL)
		return EVK_ENOMEM;
	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	if ((rv = link_open(&s->l, url, &jo)) != EVK_OK ||
	    (rv = stream_info(&s->l, &si, true)) != EVK_OK) {
		link_close(&s->l);
		free(s);
		return rv;
	}
	/* The head now: the consumer starts right after it (or at since),
	 * so every later event comes. */
	s->start_head = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	if (since == EVK_SINCE_LIVE)
		s->next = s->start_head + 1;
	else
		s->next = (uint64_t)(since < 0 ? 0 : since) + 1;
	long long until = evk_mono_ms() + NATS_RESUB_MS;
	while ((rv = subscribe(s)) != EVK_OK && transient(rv) && evk_mono_ms() < until)
		nats_Sleep(NATS_RETRY_MS);
	if (rv != EVK_OK) {
		evk_nats_sub_close(s);
		return rv;
	}
	s->line = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX);
	*out = s;
	return EVK_OK;
}

/* The stream sequence of a message from the consumer, read from its
 * reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.... (9
 * tokens), or with <domain>.<account hash> before <stream> (12 or more). */
static bool
stream_seq(natsMsg *m, uint64_t *seq)
{
	const char *r = natsMsg_GetReply(m);
	const char *tok[16];
	int n = 0;

	if (r == NULL || strncmp(r, "$JS.ACK.", 8) != 0)
		return false;
	for (const char *p = r; n < 16; p++) {
		tok[n++] = p;
		if ((p = strchr(p, '.')) == NULL)
			break;
	}
	int at = n == 9 ? 5 : n >= 12 ? 7 : -1;
	if (at < 0)
		return false;
	uint64_t v = 0;
	const char *p = tok[at];
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p != '.')
		return false;
	*seq = v;
	return v > 0;
}

/* Makes the event of message m (stream sequence seq) the one to deliver:
 * its line with the seq, checked, and on the subject of its topic. */
static bool
take(struct evk_nats_sub *s, natsMsg *m, uint64_t seq, struct evk_event *ev)
{
	const char *data = natsMsg_GetData(m);
	int len = natsMsg_GetDataLength(m);
	char num[32];

	if (data == NULL || len < 2 || data[0] != '{')
		return false;
	evk_buf_reset(&s->line);
	int n = snprintf(num, sizeof(num), "{\"seq\":%llu,", (unsigned long long)seq);
	if (evk_buf_add(&s->line, num, (size_t)n) != EVK_OK ||
	    evk_buf_add(&s->line, data + 1, (size_t)len - 1) != EVK_OK)
		return false;
	if (evk_event_scan(ev, s->line.p, s->line.len) != EVK_OK)
		return false;
	/* Published by evkit: the subject is its topic's. */
	const char *subj = natsMsg_GetSubject(m);
	return evk_subject_from_topic(s->subject, sizeof(s->subject), ev->topic,
				      ev->topic_len) == EVK_OK &&
	       subj != NULL && strcmp(subj, s->subject) == 0;
}

/* While no message comes: is the consumer still there? It is gone when
 * the connection moved to another server (a restart, a failover) or the
 * server holding it died; the library's heartbeat check does not tell a
 * synchronous subscriber. Asked at most every NATS_PROBE_MS. */
static bool
consumer_alive(struct evk_nats_sub *s)
{
	jsConsumerInfo *ci = NULL;
	jsOptions jo;
	jsErrCode jerr = 0;

	if (s->l.reconnected)
		return false;
	if (evk_mono_ms() - s->probed < NATS_PROBE_MS)
		return true;
	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	if (natsSubscription_GetConsumerInfo(&ci, s->sub, &jo, &jerr) != NATS_OK)
		return false;
	jsConsumerInfo_Destroy(ci);
	s->probed = evk_mono_ms();
	return true;
}

/* The stream's oldest retained seq; 0 when it cannot be asked now (then
 * a new consumer is the safe course). */
static uint64_t
oldest_retained(struct evk_nats_sub *s)
{
	jsStreamInfo *si = NULL;
	uint64_t first;

	if (stream_info(&s->l, &si, false) != EVK_OK)
		return 0;
	first = si->State.FirstSeq;
	jsStreamInfo_Destroy(si);
	return first;
}

int
evk_nats_sub_next(struct evk_nats_sub *s, struct evk_event *ev, int timeout_ms)
{
	long long deadline = timeout_ms < 0 ? 0 : evk_mono_ms() + timeout_ms;

	for (;;) {
		natsMsg *m = s->held;
		s->held = NULL;
		if (m == NULL && s->sub == NULL) {
			/* A new consumer from s->next on; tried again while
			 * the cluster is unsettled, for up to NATS_RESUB_MS. */
			int rv = subscribe(s);
			if (rv == EVK_OK) {
				s->resub_since = 0;
			} else {
				if (!transient(rv))
					return rv;
				if (s->resub_since == 0)
					s->resub_since = evk_mono_ms();
				else if (evk_mono_ms() - s->resub_since > NATS_RESUB_MS)
					return EVK_ECLOSED;
				if (timeout_ms >= 0 && evk_mono_ms() >= deadline)
					return EVK_ETIMEDOUT;
				nats_Sleep(NATS_RETRY_MS);
				continue;
			}
		}
		if (m == NULL) {
			int64_t wait = 3600 * 1000;
			if (timeout_ms >= 0) {
				long long left = deadline - evk_mono_ms();
				wait = left < 0 ? 0 : left;
			}
			if (wait > NATS_PROBE_MS)
				wait = NATS_PROBE_MS;
			natsStatus st = natsSubscription_NextMsg(&m, s->sub, wait);
			if (st == NATS_TIMEOUT) {
				if (!consumer_alive(s)) {
					natsSubscription_Destroy(s->sub);
					s->sub = NULL;
					continue;
				}
				if (timeout_ms < 0 || evk_mono_ms() < deadline)
					continue;
				return EVK_ETIMEDOUT;
			}
			if (st == NATS_SLOW_CONSUMER || st == NATS_MISMATCH ||
			    st == NATS_MISSED_HEARTBEAT) {
				/* Something was lost on the way, or the consumer
				 * is gone: a new one from s->next on. */
				natsSubscription_Destroy(s->sub);
				s->sub = NULL;
				continue;
			}
			if (st != NATS_OK)
				return from_nats(st) == EVK_EIO ? EVK_ECLOSED : from_nats(st);
		}
		s->probed = evk_mono_ms();
		uint64_t seq;
		if (!stream_seq(m, &seq)) {
			s->malformed++;
			natsMsg_Destroy(m);
			continue;
		}
		if (seq < s->next) {
			natsMsg_Destroy(m); /* already delivered */
			continue;
		}
		if (seq > s->next) {
			/* Skipped ahead: either the stream no longer holds the
			 * stretch (a gap), or the consumer sent it while the
			 * connection was down (lost on the way: a new consumer
			 * from s->next gets it again). The stream says which. */
			uint64_t first = oldest_retained(s);
			if (first <= s->next) {
				natsMsg_Destroy(m);
				natsSubscription_Destroy(s->sub);
				s->sub = NULL;
				continue;
			}
			s->gap_from = s->next;
			s->gap_to = (first < seq ? first : seq) - 1;
			s->next = s->gap_to + 1;
			if (s->next == seq) {
				s->held = m;
			} else {
				natsMsg_Destroy(m);
				natsSubscription_Destroy(s->sub);
				s->sub = NULL;
			}
			return EVK_EGAP;
		}
		s->next = seq + 1;
		bool ok = take(s, m, seq, ev);
		natsMsg_Destroy(m);
		if (ok)
			return EVK_OK;
		s->malformed++;
	}
}

bool
evk_nats_sub_buffered(const struct evk_nats_sub *s)
{
	int msgs = 0, bytes = 0;
	if (s->held)
		return true;
	return s->sub && natsSubscription_GetPending(s->sub, &msgs, &bytes) == NATS_OK && msgs > 0;
}

void
evk_nats_sub_gap(const struct evk_nats_sub *s, uint64_t *from, uint64_t *to)
{
	*from = s->gap_from;
	*to = s->gap_to;
}

uint64_t
evk_nats_sub_start_head(const struct evk_nats_sub *s)
{
	return s->start_head;
}

uint64_t
evk_nats_sub_malformed(const struct evk_nats_sub *s)
{
	return s->malformed;
}

void
evk_nats_sub_close(struct evk_nats_sub *s)
{
	if (s == NULL)
		return;
	if (s->held)
		natsMsg_Destroy(s->held);
	/* The connection closes first, so its reader thread stops handing
	 * messages (and flow-control requests) to a subscription being
	 * destroyed: in the other order libnats 3.4 could abort in
	 * natsConn_processMsg (evsub -n N ended with 134 or 139 about once
	 * in 30 runs). */
	if (s->l.nc)
		natsConnection_Close(s->l.nc);
	if (s->sub)
		natsSubscription_Destroy(s->sub);
	link_close(&s->l);
	evk_buf_release(&s->line);
	free(s);
}

/* ---- status ---- */

/* Prints o (and deletes it) into *json, malloc'ed as the caller frees it:
 * cJSON's own allocation may be a program's cache (evkit/jsonmem.h). */
static int
print_status(cJSON *o, bool ok, char **json)
{
	char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (text == NULL)
		return EVK_ENOMEM;
	*json = strdup(text);
	cJSON_free(text);
	return *json ? EVK_OK : EVK_ENOMEM;
}

/* The stream's figures as JSON: head and retained range, replicas, the
 * cluster's leader and peers. */
int
evk_nats_bus_status(const char *url, char **json)
{
	struct link l;
	jsStreamInfo *si = NULL;
	jsOptions jo;
	int rv;

	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	if ((rv = link_open(&l, url, &jo)) != EVK_OK)
		return rv;
	if ((rv = stream_info(&l, &si, false)) != EVK_OK && !l.missing) {
		link_close(&l);
		return rv;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON *c = NULL;
	bool ok = o != NULL;
	if (l.missing) {
		/* Made by the first publisher or subscriber: nothing yet. */
		ok = ok && cJSON_AddStringToObject(o, "backend", "nats") &&
		     cJSON_AddStringToObject(o, "bus", url) &&
		     cJSON_AddStringToObject(o, "stream", l.u.stream) &&
		     cJSON_AddBoolToObject(o, "exists", false) &&
		     cJSON_AddNumberToObject(o, "head_seq", 0) &&
		     cJSON_AddNumberToObject(o, "oldest_seq", 0) &&
		     cJSON_AddNumberToObject(o, "retained", 0);
		link_close(&l);
		return print_status(o, ok, json);
	}
	/* The names of evbusd --status where the figure is the same. */
	ok = ok && cJSON_AddStringToObject(o, "backend", "nats") &&
	     cJSON_AddStringToObject(o, "bus", url) &&
	     cJSON_AddStringToObject(o, "stream", l.u.stream) &&
	     cJSON_AddBoolToObject(o, "exists", true) &&
	     cJSON_AddNumberToObject(o, "head_seq", (double)si->State.LastSeq) &&
	     cJSON_AddNumberToObject(o, "oldest_seq", (double)si->State.FirstSeq) &&
	     cJSON_AddNumberToObject(o, "retained", (double)si->State.Msgs) &&
	     cJSON_AddNumberToObject(o, "bytes", (double)si->State.Bytes) &&
	     cJSON_AddNumberToObject(o, "retain", (double)si->Config->MaxMsgs) &&
	     cJSON_AddNumberToObject(o, "subscribers", (double)si->State.Consumers) &&
	     cJSON_AddStringToObject(o, "storage", si->Config->Storage == js_FileStorage
							   ? "file"
							   : "memory") &&
	     cJSON_AddNumberToObject(o, "replicas", (double)si->Config->Replicas);
	if (ok && si->Cluster) {
		cJSON *peers;
		ok = (c = cJSON_AddObjectToObject(o, "cluster")) != NULL &&
		     cJSON_AddStringToObject(c, "name", si->Cluster->Name ? si->Cluster->Name : "") &&
		     cJSON_AddStringToObject(c, "leader",
					     si->Cluster->Leader ? si->Cluster->Leader : "") &&
		     (peers = cJSON_AddArrayToObject(c, "replicas")) != NULL;
		for (int i = 0; ok && i < si->Cluster->ReplicasLen; i++) {
			const jsPeerInfo *pi = si->Cluster->Replicas[i];
			cJSON *r = cJSON_CreateObject();
			ok = r != NULL && cJSON_AddItemToArray(peers, r) &&
			     cJSON_AddStringToObject(r, "name", pi->Name ? pi->Name : "") &&
			     cJSON_AddBoolToObject(r, "current", pi->Current) &&
			     cJSON_AddBoolToObject(r, "offline", pi->Offline) &&
			     cJSON_AddNumberToObject(r, "lag", (double)pi->Lag);
		}
	}
	jsStreamInfo_Destroy(si);
	link_close(&l);
	return print_status(o, ok, json);
}
