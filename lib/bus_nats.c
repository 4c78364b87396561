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
#include "bus_impl.h"

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/limits.h"
#include "evkit/subject.h"

#include <cjson/cJSON.h>
#include <nats/nats.h>
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
#define NATS_CONNECT_ALL_MS 4000            /* every server of the list tried */
#define NATS_LEADER_WAIT_MS 5000            /* a stream elects its leader */
#define NATS_GAP_CHECK_MS 100               /* the retained range, read again */
#define NATS_CLOSED_POLL_MS 100             /* waiting acks: is the link closed? */
#define NATS_NAP_NS 200000                  /* in a burst, before waiting */

/* ---- addresses ---- */

struct nurl {
	char buf[EVK_URL_MAX + 8 * NATS_SERVERS_MAX];
	const char *servers[NATS_SERVERS_MAX];
	int n;
	char stream[NATS_STREAM_NAME_MAX + 1];
	int replicas;
	bool replicas_given; /* ?replicas=N */
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
		u->replicas_given = true;
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
	char url[EVK_URL_MAX]; /* as the user gave it, for messages */
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
	snprintf(l->url, sizeof(l->url), "%s", url);
	/* Each server of the list gets its share of NATS_CONNECT_ALL_MS, so
	 * that nothing listening anywhere is told within 5 s. */
	int per_server = NATS_CONNECT_ALL_MS / l->u.n;
	if (per_server > EVK_CONNECT_TIMEOUT_MS)
		per_server = EVK_CONNECT_TIMEOUT_MS;
	if ((s = natsOptions_Create(&o)) != NATS_OK)
		return from_nats(s);
	if ((s = natsOptions_SetServers(o, l->u.servers, l->u.n)) != NATS_OK ||
	    (s = natsOptions_SetNoRandomize(o, true)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(o, per_server)) != NATS_OK ||
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

/* The error of a JetStream API request, with evk_bus_why's sentence when
 * the user can act on it. */
static int
js_failed(const struct link *l, natsStatus s, jsErrCode jerr)
{
	const char *url = l->url, *stream = l->u.stream;

	if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr ||
	    jerr == JSNotEnabledForAccountErr) {
		evk_bus_set_why("JetStream is not enabled on the server at '%s' "
				"(nats-server runs it with -js)", url);
		return EVK_EUNAVAIL;
	}
	if (jerr == JSClusterNotAvailErr || jerr == JSClusterNotLeaderErr) {
		evk_bus_set_why("the JetStream cluster at '%s' has no quorum: no leader "
				"(a majority of its servers is down or cut off)", url);
		return EVK_EUNAVAIL;
	}
	if (s == NATS_TIMEOUT) {
		evk_bus_set_why("JetStream at '%s' did not answer within %d s: no quorum "
				"in its cluster, or an overloaded server",
				url, NATS_API_WAIT_MS / 1000);
		return EVK_EUNAVAIL;
	}
	if (jerr == JSStreamOfflineErr) {
		evk_bus_set_why("stream '%s' at '%s' is offline: no quorum of its "
				"replicas is up", stream, url);
		return EVK_EUNAVAIL;
	}
	if (jerr == JSClusterNoPeersErr || jerr == JSInsufficientResourcesErr) {
		evk_bus_set_why("cannot place stream '%s' with %d replica%s at '%s': %s",
				stream, l->u.replicas, l->u.replicas == 1 ? "" : "s", url,
				jerr == JSClusterNoPeersErr
					? "not as many servers of the cluster are up"
					: "its servers lack the storage");
		return EVK_EUNAVAIL;
	}
	if (jerr == JSStreamReplicasNotSupportedErr) {
		evk_bus_set_why("the server at '%s' is not in a cluster: replicas=%d "
				"needs a JetStream cluster of as many servers",
				url, l->u.replicas);
		return EVK_EINVAL;
	}
	if (jerr == JSStreamSubjectOverlapErr) {
		evk_bus_set_why("cannot create stream '%s' at '%s': another stream takes "
				"subjects overlapping evk.> (name that stream in the "
				"address: nats://HOST:PORT/STREAM)", stream, url);
		return EVK_EINVAL;
	}
	if (jerr != 0) {
		evk_bus_set_why("JetStream at '%s' refused stream '%s' (error %d: %s)",
				url, stream, (int)jerr, nats_GetLastError(NULL));
		return EVK_EIO;
	}
	return from_nats(s);
}

/* The error code alone, for what a publish or a consumer being made
 * again meets in a failover (EVK_EUNAVAIL: worth trying again). */
static int
from_js(natsStatus s, jsErrCode jerr)
{
	if (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT ||
	    jerr == JSNotEnabledForAccountErr || jerr == JSClusterNotAvailErr ||
	    jerr == JSClusterNoPeersErr || jerr == JSStreamReplicasNotSupportedErr ||
	    jerr == JSInsufficientResourcesErr || jerr == JSStreamOfflineErr ||
	    jerr == JSClusterNotLeaderErr)
		return EVK_EUNAVAIL;
	return from_nats(s);
}

/* True when one of the stream's subjects takes every evk.> subject. */
static bool
takes_evk(const jsStreamConfig *c)
{
	for (int i = 0; i < c->SubjectsLen; i++)
		if (c->Subjects[i] && (strcmp(c->Subjects[i], ">") == 0 ||
				       strcmp(c->Subjects[i], "*.>") == 0 ||
				       strcmp(c->Subjects[i], NATS_FILTER) == 0))
			return true;
	return false;
}

/* What differs in the stream's configuration from the one evkit makes, as
 * "; "-separated notes into out (empty when nothing does). */
static void
config_differs(const struct link *l, const jsStreamConfig *c, char *out, size_t n)
{
	size_t at = 0;
#define NOTE(...)                                                                 \
	do {                                                                      \
		if (at < n)                                                       \
			at += (size_t)snprintf(out + at, n - at, "%s", at ? "; " : ""); \
		if (at < n)                                                       \
			at += (size_t)snprintf(out + at, n - at, __VA_ARGS__);    \
	} while (0)
	out[0] = '\0';
	if (!takes_evk(c))
		NOTE("subjects %s%s (not evk.>)", c->SubjectsLen > 0 ? c->Subjects[0] : "none",
		     c->SubjectsLen > 1 ? ", ..." : "");
	if (c->Retention != js_LimitsPolicy)
		NOTE("%s retention (not limits)",
		     c->Retention == js_InterestPolicy ? "interest" : "work-queue");
	if (c->Storage != js_FileStorage)
		NOTE("memory storage (not file)");
	if (c->MaxMsgs != EVK_RETAIN_DEFAULT)
		NOTE("retains %lld events (not %d)", (long long)c->MaxMsgs, EVK_RETAIN_DEFAULT);
	if (c->MaxBytes > 0)
		NOTE("at most %lld bytes", (long long)c->MaxBytes);
	if (c->MaxAge > 0)
		NOTE("events expire after %lld s", (long long)(c->MaxAge / 1000000000));
	if (c->MaxMsgsPerSubject > 0)
		NOTE("at most %lld events per subject", (long long)c->MaxMsgsPerSubject);
	if (c->Discard != js_DiscardOld)
		NOTE("discards new events when full (not old)");
	if (c->Replicas != l->u.replicas && (l->u.replicas_given || l->u.replicas != 1))
		NOTE("%d replica%s (the address asks for %d)", (int)c->Replicas,
		     c->Replicas == 1 ? "" : "s", l->u.replicas);
#undef NOTE
}

/* Refuses a stream evkit cannot use as it is: one that does not take its
 * subjects, or one that deletes events before every subscriber and
 * replay had them. */
static int
usable(const struct link *l, const jsStreamInfo *si)
{
	const jsStreamConfig *c = si->Config;

	if (!takes_evk(c)) {
		evk_bus_set_why("stream '%s' at '%s' does not take evkit's subjects evk.> "
				"(it takes %s%s): name another stream in the address "
				"(nats://HOST:PORT/STREAM)", l->u.stream, l->url,
				c->SubjectsLen > 0 ? c->Subjects[0] : "none",
				c->SubjectsLen > 1 ? ", ..." : "");
		return EVK_EINVAL;
	}
	if (c->Retention != js_LimitsPolicy) {
		evk_bus_set_why("stream '%s' at '%s' has %s retention: evkit needs limits "
				"retention (events kept for replay and every subscriber)",
				l->u.stream, l->url,
				c->Retention == js_InterestPolicy ? "interest" : "work-queue");
		return EVK_EINVAL;
	}
	return EVK_OK;
}

/* True when the stream has a leader (or is not replicated). */
static bool
has_leader(const jsStreamInfo *si)
{
	return si->Cluster == NULL || (si->Cluster->Leader && si->Cluster->Leader[0]);
}

/* True when the stream has a leader and most of its replicas are online
 * (a leader cut off from the others believes it leads for a while). */
static bool
has_quorum(const jsStreamInfo *si)
{
	if (!has_leader(si))
		return false;
	if (si->Cluster == NULL)
		return true;
	int online = 1, total = 1 + si->Cluster->ReplicasLen;
	for (int i = 0; i < si->Cluster->ReplicasLen; i++)
		online += !si->Cluster->Replicas[i]->Offline;
	return 2 * online > total;
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
		return js_failed(l, s, jerr);
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
	return js_failed(l, s, jerr);
}

/* The stream for a publisher or subscriber: made when missing, refused
 * when evkit cannot use it, and with a leader (waited for up to
 * NATS_LEADER_WAIT_MS: a replicated stream elects one after a failure). */
static int
stream_open(struct link *l, jsStreamInfo **si)
{
	long long until = evk_mono_ms() + NATS_LEADER_WAIT_MS;
	int rv;

	for (;;) {
		if ((rv = stream_info(l, si, true)) != EVK_OK)
			return rv;
		if ((rv = usable(l, *si)) != EVK_OK) {
			jsStreamInfo_Destroy(*si);
			return rv;
		}
		if (has_leader(*si))
			return EVK_OK;
		int replicas = (int)(*si)->Config->Replicas;
		jsStreamInfo_Destroy(*si);
		*si = NULL;
		if (evk_mono_ms() >= until) {
			evk_bus_set_why("stream '%s' at '%s' has no leader: no quorum of its "
					"%d replicas is up (evbusd --status --bus URL lists "
					"them)", l->u.stream, l->url, replicas);
			return EVK_EUNAVAIL;
		}
		nats_Sleep(250);
	}
}

/* ---- publishing ---- */

/* Each event is published with a reply subject <inbox>.<n>, n counting
 * the publisher's events; JetStream's PubAck comes there. The acks are
 * taken in by the publishing thread itself, from a synchronous
 * subscription on <inbox>.*: no lock, no callback, and one wake-up for
 * many acks when it waits for a window to drain. */

enum { ENTRY_FREE, ENTRY_SENT, ENTRY_ACKED, ENTRY_FAILED };

struct entry {
	char *line;     /* the canonical line without seq, '\n'-terminated,
			 * kept only for on_ack */
	size_t len, cap;
	uint64_t n;     /* its number, in its reply subject */
	uint64_t seq;
	int state;
	bool no_stream; /* of an ENTRY_FAILED: no stream took it */
	int jerr;       /* else JetStream's error code (0: an ack unread) */
};

struct evk_nats_pub {
	struct link l;
	natsSubscription *acks;
	char inbox[64];         /* "<inbox>." */
	size_t inbox_len;
	char ack_head[64];      /* a PubAck's start: {"stream":"<name>", */
	size_t ack_head_len;
	struct entry ring[NATS_WINDOW];
	unsigned oldest, count; /* the entries in flight, in publishing order */
	unsigned done;          /* of them, the first ones no longer ENTRY_SENT */
	unsigned adds;          /* since acks were last taken in */
	uint64_t n_next;
	size_t bytes;           /* their lines' bytes */
	evk_ack_fn on_ack;
	void *arg;
	uint64_t acked, last_seq;
	int failed;             /* sticky */
	struct evk_buf scan;
	char subject[EVK_SUBJECT_MAX];
	size_t longest;         /* the longest subject published, and its topic */
	char longest_topic[EVK_TOPIC_MAX + 1];
	char why[1024];         /* evk_nats_pub_why's, once failed */
};

/* The stream sequence of a PubAck: the server writes it as
 * {"stream":"<name>", "seq":N...}, read here at once; anything else (an
 * error, another field first) goes to cJSON. false for a refusal, with
 * *jerr JetStream's error code (-1 when it gave none). */
static bool
read_puback(const struct evk_nats_pub *p, const char *data, int len, uint64_t *seq,
	    int *jerr)
{
	static const char seq_key[] = "\"seq\":";

	*jerr = -1;
	if (data && len > (int)p->ack_head_len + 8 &&
	    memcmp(data, p->ack_head, p->ack_head_len) == 0) {
		const char *d = data + p->ack_head_len, *end = data + len;
		uint64_t v = 0;
		if (*d == ' ')
			d++;
		if (end - d < (long)sizeof(seq_key) || memcmp(d, seq_key, sizeof(seq_key) - 1) != 0)
			d = end; /* not the usual shape */
		else
			d += sizeof(seq_key) - 1;
		for (; d < end && *d >= '0' && *d <= '9' && v < UINT64_MAX / 10 - 9; d++)
			v = v * 10 + (uint64_t)(*d - '0');
		if (d < end && (*d == '}' || *d == ',') && v > 0) {
			*seq = v;
			return true;
		}
	}
	cJSON *o = data ? cJSON_ParseWithLength(data, (size_t)(len < 0 ? 0 : len)) : NULL;
	cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
	cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seq");
	bool ok = err == NULL && cJSON_IsNumber(s) && s->valuedouble >= 1;
	if (ok)
		*seq = (uint64_t)s->valuedouble;
	cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "err_code");
	if (cJSON_IsNumber(code))
		*jerr = code->valueint;
	cJSON_Delete(o);
	return ok;
}

/* One ack message: marks its entry. */
static void
take_ack(struct evk_nats_pub *p, natsMsg *m)
{
	const char *subj = natsMsg_GetSubject(m);
	uint64_t n = 0;

	if (p->count == 0 || subj == NULL || strncmp(subj, p->inbox, p->inbox_len) != 0)
		return;
	const char *d = subj + p->inbox_len;
	for (; *d >= '0' && *d <= '9' && n < UINT64_MAX / 10 - 9; d++)
		n = n * 10 + (uint64_t)(*d - '0');
	uint64_t first = p->ring[p->oldest].n;
	if (*d != '\0' || n < first || n - first >= p->count)
		return; /* not one in flight (a late ack of a failed one) */
	struct entry *e = &p->ring[(p->oldest + (unsigned)(n - first)) % NATS_WINDOW];
	if (e->state != ENTRY_SENT)
		return;
	if (natsMsg_IsNoResponders(m)) {
		e->state = ENTRY_FAILED;
		e->no_stream = true;
	} else if (read_puback(p, natsMsg_GetData(m), natsMsg_GetDataLength(m), &e->seq,
			       &e->jerr)) {
		e->state = ENTRY_ACKED;
	} else {
		e->state = ENTRY_FAILED;
	}
	while (p->done < p->count &&
	       p->ring[(p->oldest + p->done) % NATS_WINDOW].state != ENTRY_SENT)
		p->done++;
}

/* Takes in the acks that came; with wait_ms > 0 and none there, waits up
 * to that long for one. */
static void
take_acks(struct evk_nats_pub *p, int64_t wait_ms)
{
	int msgs = 0, bytes = 0;
	natsMsg *m;

	if (natsSubscription_GetPending(p->acks, &msgs, &bytes) != NATS_OK)
		return;
	if (msgs == 0 && wait_ms > 0 &&
	    natsSubscription_NextMsg(&m, p->acks, wait_ms) == NATS_OK) {
		take_ack(p, m);
		natsMsg_Destroy(m);
		return;
	}
	/* Those there: NextMsg returns each at once. */
	while (msgs-- > 0 && natsSubscription_NextMsg(&m, p->acks, 1) == NATS_OK) {
		take_ack(p, m);
		natsMsg_Destroy(m);
	}
}

/* No ack came in time: the event may or may not be stored. When the
 * stream lost its quorum (no leader, or JetStream cannot answer while the
 * link is up), why says so and the bus is unavailable. */
static int
lost_failed(struct evk_nats_pub *p)
{
	jsStreamInfo *si = NULL;

	if (natsConnection_Status(p->l.nc) != NATS_CONN_STATUS_CONNECTED)
		return EVK_ECLOSED;
	int rv = stream_info(&p->l, &si, false);
	bool noq = rv == EVK_EUNAVAIL || (rv == EVK_OK && !has_quorum(si));
	if (si)
		jsStreamInfo_Destroy(si);
	if (!noq)
		return EVK_ECLOSED;
	snprintf(p->why, sizeof(p->why),
		 "stream '%s' has no quorum (no leader): no acknowledgement came, "
		 "events after the %llu acknowledged may or may not be stored",
		 p->l.u.stream, (unsigned long long)p->acked);
	return EVK_EUNAVAIL;
}

/* The first unacknowledged event was refused: why. */
static int
refused(struct evk_nats_pub *p, const struct entry *e)
{
	if (e->no_stream) {
		/* No stream took the subject: its leader is gone, or the
		 * stream itself. */
		snprintf(p->why, sizeof(p->why),
			 "no stream takes the events: stream '%s' has no leader (no "
			 "quorum of its replicas is up) or was deleted",
			 p->l.u.stream);
		return EVK_EUNAVAIL;
	}
	if (e->jerr == JSStreamMessageExceedsMaximumErr) {
		snprintf(p->why, sizeof(p->why),
			 "an event is larger than stream '%s' takes (its max_msg_size)",
			 p->l.u.stream);
		return EVK_ETOOLONG;
	}
	/* A full or failing store, a stream without quorum. */
	snprintf(p->why, sizeof(p->why), "stream '%s' refused an event (JetStream error %d)",
		 p->l.u.stream, e->jerr);
	return from_js(NATS_ERR, (jsErrCode)e->jerr) == EVK_EUNAVAIL ? EVK_EUNAVAIL : EVK_EIO;
}

/* The server closed the connection: why. A subject longer than its
 * max_control_line is the one reason the user can act on (the longest
 * subject published is named). */
static int
closed_failed(struct evk_nats_pub *p)
{
	const char *text = NULL;

	natsConnection_GetLastError(p->l.nc, &text);
	if (text == NULL || strstr(text, "ontrol line") == NULL)
		return EVK_ECLOSED;
	size_t topic_len = strlen(p->longest_topic);
	snprintf(p->why, sizeof(p->why),
		 "subject too long: topic '%.60s%s' makes a %zu-byte subject, "
		 "longer than the server takes (its max_control_line)",
		 p->longest_topic, topic_len > 60 ? "..." : "", p->longest);
	return EVK_ETOOLONG;
}

/* Reports the oldest entries whose ack came, in order, up to a refused
 * one. With want > 0, first waits (until deadline_ms on the monotonic
 * clock) until want entries (or all there are) have their answer, noticing
 * a connection the server closed. */
static int
complete(struct evk_nats_pub *p, unsigned want, long long deadline_ms)
{
	take_acks(p, 0);
	if (want > p->count)
		want = p->count;
	while (p->done < want) {
		long long left = deadline_ms - evk_mono_ms();
		if (left <= 0)
			return p->failed = lost_failed(p);
		if (natsConnection_IsClosed(p->l.nc))
			return p->failed = closed_failed(p);
		if (want - p->done > 16) {
			/* Many to come: they gather meanwhile, taken in at
			 * once rather than each with a wake-up. */
			nats_Sleep(1);
			take_acks(p, 0);
		} else {
			take_acks(p, left < NATS_CLOSED_POLL_MS ? left : NATS_CLOSED_POLL_MS);
		}
	}
	unsigned k = 0;
	int rv = EVK_OK;
	for (; k < p->done; k++) {
		struct entry *e = &p->ring[(p->oldest + k) % NATS_WINDOW];
		if (e->state == ENTRY_FAILED) {
			rv = p->failed = refused(p, e);
			break;
		}
		p->acked++;
		p->last_seq = e->seq;
		if (p->on_ack)
			p->on_ack(p->arg, e->seq, e->line, e->len, 1);
		if (e->cap > NATS_LINE_KEEP) {
			free(e->line);
			e->line = NULL;
			e->cap = 0;
		}
		e->state = ENTRY_FREE;
		p->bytes -= e->len;
	}
	p->oldest = (p->oldest + k) % NATS_WINDOW;
	p->count -= k;
	p->done -= k;
	return rv;
}

int
evk_nats_pub_open(struct evk_nats_pub **out, const char *url, evk_ack_fn on_ack,
		  void *arg)
{
	struct evk_nats_pub *p = calloc(1, sizeof(*p));
	jsStreamInfo *si = NULL;
	natsInbox *inbox = NULL;
	jsOptions jo;
	natsStatus s;
	int rv;

	if (p == NULL)
		return EVK_ENOMEM;
	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	if ((rv = link_open(&p->l, url, &jo)) != EVK_OK ||
	    (rv = stream_open(&p->l, &si)) != EVK_OK) {
		link_close(&p->l);
		free(p);
		return rv;
	}
	jsStreamInfo_Destroy(si);
	char acks[80];
	if ((s = natsInbox_Create(&inbox)) != NATS_OK ||
	    (size_t)snprintf(p->inbox, sizeof(p->inbox), "%s.", inbox) >= sizeof(p->inbox) ||
	    (size_t)snprintf(acks, sizeof(acks), "%s*", p->inbox) >= sizeof(acks) ||
	    (s = natsConnection_SubscribeSync(&p->acks, p->l.nc, acks)) != NATS_OK ||
	    (s = natsSubscription_SetPendingLimits(p->acks, 4 * NATS_WINDOW, -1)) != NATS_OK) {
		natsInbox_Destroy(inbox);
		if (p->acks)
			natsSubscription_Destroy(p->acks);
		link_close(&p->l);
		free(p);
		return s == NATS_NO_MEMORY || s == NATS_OK ? EVK_ENOMEM : from_nats(s);
	}
	natsInbox_Destroy(inbox);
	p->inbox_len = strlen(p->inbox);
	p->ack_head_len = (size_t)snprintf(p->ack_head, sizeof(p->ack_head),
					   "{\"stream\":\"%s\",", p->l.u.stream);
	p->n_next = 1;
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

/* The topic of a canonical line without seq (p->scan may hold it).
 * EVK_EINVAL when there is none. */
static int
line_topic(struct evk_nats_pub *p, const char *line, size_t len, const char **topic,
	   size_t *n)
{
	struct evk_event ev;
	int rv;

	if (plain_topic(line, len, topic, n))
		return EVK_OK;
	/* Escapes in it: scan the line as if it had a seq. */
	if (len < 2 || line[0] != '{')
		return EVK_EINVAL;
	evk_buf_reset(&p->scan);
	if ((rv = evk_buf_add(&p->scan, "{\"seq\":1,", 9)) != EVK_OK ||
	    (rv = evk_buf_add(&p->scan, line + 1, len - 1)) != EVK_OK)
		return rv;
	if (evk_event_scan(&ev, p->scan.p, p->scan.len) != EVK_OK)
		return EVK_EINVAL;
	*topic = ev.topic;
	*n = ev.topic_len;
	return EVK_OK;
}

int
evk_nats_pub_add(struct evk_nats_pub *p, const char *line, size_t len)
{
	natsStatus s;
	int rv;

	if (p->failed)
		return p->failed;
	/* The topic, for the subject. */
	const char *topic;
	size_t topic_len;
	if ((rv = line_topic(p, line, len, &topic, &topic_len)) != EVK_OK)
		return rv;
	if ((rv = evk_subject_from_topic(p->subject, sizeof(p->subject), topic,
					 topic_len)) != EVK_OK)
		return rv;
	if (len > INT32_MAX)
		return EVK_ETOOLONG;
	size_t subject_len = strlen(p->subject);
	if (subject_len > p->longest) {
		/* Named when the server finds a subject too long. */
		p->longest = subject_len;
		memcpy(p->longest_topic, topic, topic_len);
		p->longest_topic[topic_len] = '\0';
	}
	/* A place in the window: when it is full, a quarter of it is
	 * freed at once. */
	if (p->count == NATS_WINDOW ||
	    (p->count > 0 && p->bytes + len + 1 > NATS_WINDOW_BYTES)) {
		unsigned want = p->count == NATS_WINDOW ? NATS_WINDOW / 4 : 1;
		long long deadline = evk_mono_ms() + EVK_ACK_TIMEOUT_MS + 5000;
		while (p->count > NATS_WINDOW - want ||
		       (p->count > 0 && p->bytes + len + 1 > NATS_WINDOW_BYTES))
			if ((rv = complete(p, want, deadline)) != EVK_OK)
				return rv;
	}
	struct entry *e = &p->ring[(p->oldest + p->count) % NATS_WINDOW];
	if (p->on_ack) {
		/* The line is echoed once acknowledged. */
		if (e->cap < len + 1) {
			char *n = realloc(e->line, len + 1);
			if (n == NULL)
				return EVK_ENOMEM;
			e->line = n;
			e->cap = len + 1;
		}
		memcpy(e->line, line, len);
		e->line[len] = '\n';
	}
	char reply[96];
	snprintf(reply, sizeof(reply), "%s%llu", p->inbox, (unsigned long long)p->n_next);
	if ((s = natsConnection_PublishRequest(p->l.nc, p->subject, reply, line, (int)len)) !=
	    NATS_OK) {
		/* Too large, or else the connection is gone (closed, or its
		 * reconnect buffer full): what came before may be stored. */
		if (s == NATS_MAX_PAYLOAD)
			snprintf(p->why, sizeof(p->why),
				 "an event of %zu bytes is larger than the server takes "
				 "(its max_payload)", len);
		return p->failed = s == NATS_MAX_PAYLOAD ? EVK_ETOOLONG
				   : s == NATS_NO_MEMORY  ? EVK_ENOMEM
				   : natsConnection_IsClosed(p->l.nc) ? closed_failed(p)
								       : EVK_ECLOSED;
	}
	e->n = p->n_next++;
	e->len = len + 1;
	e->state = ENTRY_SENT;
	e->no_stream = false;
	e->jerr = 0;
	p->count++;
	p->bytes += e->len;
	/* Reports what was acknowledged meanwhile, without waiting: at
	 * once for an echo, else now and then. */
	if (p->on_ack || ++p->adds % 64 == 0)
		return complete(p, 0, 0);
	return EVK_OK;
}

int
evk_nats_pub_flush(struct evk_nats_pub *p)
{
	/* Every message is on its way already (the library's flusher sends
	 * them): only acks to report. */
	if (p->failed)
		return p->failed;
	return complete(p, 0, 0);
}

int
evk_nats_pub_sync(struct evk_nats_pub *p)
{
	int rv;

	if (p->failed)
		return p->failed;
	long long deadline = evk_mono_ms() + EVK_ACK_TIMEOUT_MS + 5000;
	while (p->count > 0) {
		uint64_t before = p->acked;
		if ((rv = complete(p, p->count, deadline)) != EVK_OK)
			return rv;
		if (p->acked != before) /* the deadline is for the next ack */
			deadline = evk_mono_ms() + EVK_ACK_TIMEOUT_MS + 5000;
	}
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

const char *
evk_nats_pub_why(const struct evk_nats_pub *p)
{
	return p->failed && p->why[0] ? p->why : NULL;
}

void
evk_nats_pub_close(struct evk_nats_pub *p)
{
	if (p == NULL)
		return;
	/* What is buffered is sent; acks still to come are not waited for
	 * (nothing calls back into p). */
	natsConnection_Close(p->l.nc);
	natsSubscription_Destroy(p->acks);
	link_close(&p->l);
	for (unsigned i = 0; i < NATS_WINDOW; i++)
		free(p->ring[i].line);
	evk_buf_release(&p->scan);
	free(p);
}

/* ---- subscribing ---- */

struct evk_nats_sub {
	struct link l;
	natsSubscription *sub; /* NULL while a new consumer is to be made */
	long long resub_since; /* when making one started failing, or 0 */
	long long probed;      /* when the consumer was last known to exist */
	bool active;          /* a message came since */
	int queued;           /* messages known to wait in the library's queue */
	bool burst;           /* the last one was there without waiting */
	natsMsg *held;        /* the message after a gap, delivered next */
	uint64_t held_seq;
	struct evk_buf line;  /* the event being delivered, with its seq */
	uint64_t next;        /* seq of the next event to deliver */
	uint64_t cseq_next;   /* the consumer's sequence of its next message */
	uint64_t start_head;
	uint64_t gap_from, gap_to;
	uint64_t malformed;
	/* The stream's retained range as last read, and when: a skipped
	 * stretch is a gap only where the stream no longer holds it. */
	uint64_t first_known, last_known;
	long long checked;
	int64_t max_msgs;     /* its only limit (0: none), or -1: other limits */
	bool filtered;        /* the filter is narrower than evk.> */
	char filter[EVK_SUBJECT_MAX];
	char subject[EVK_SUBJECT_MAX];
	char why[1024];       /* evk_nats_sub_why's */
};

/* Makes the consumer: ephemeral, push, no acks, on s->filter, starting
 * at s->next, with flow control (the server sends no more than the client
 * has taken in) and heartbeats (a consumer that went away with its server
 * is noticed). This is an ordered consumer done here rather than by the
 * library, so that a new one is made, from the next seq, whenever
 * anything is amiss: a missed heartbeat, a consumer sequence that
 * skipped, a full queue. */
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
	s->cseq_next = 1;
	s->queued = 0;
	s->burst = false;
	s->checked = 0; /* the first skip reads the range again */
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
	if ((st = js_SubscribeSync(&s->sub, s->l.js, s->filter, &jo, &so, &jerr)) !=
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

/* Keeps what the stream's info says about its retained range. */
static void
keep_range(struct evk_nats_sub *s, const jsStreamInfo *si)
{
	const jsStreamConfig *c = si->Config;

	s->first_known = si->State.FirstSeq;
	s->last_known = si->State.LastSeq;
	s->checked = evk_mono_ms();
	s->max_msgs = c->MaxAge > 0 || c->MaxBytes > 0 || c->MaxMsgsPerSubject > 0
			      ? -1
		      : c->MaxMsgs > 0 ? c->MaxMsgs
				       : 0;
}

int
evk_nats_sub_open(struct evk_nats_sub **out, const char *url, int64_t since,
		  const char *const *patterns, int n)
{
	struct evk_nats_sub *s = calloc(1, sizeof(*s));
	jsStreamInfo *si = NULL;
	jsOptions jo;
	bool exact;
	int rv;

	if (s == NULL)
		return EVK_ENOMEM;
	if ((rv = evk_subject_filter_all(s->filter, sizeof(s->filter), patterns, n,
					 &exact)) != EVK_OK) {
		free(s);
		return rv;
	}
	s->filtered = strcmp(s->filter, NATS_FILTER) != 0;
	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	if ((rv = link_open(&s->l, url, &jo)) != EVK_OK ||
	    (rv = stream_open(&s->l, &si)) != EVK_OK) {
		link_close(&s->l);
		free(s);
		return rv;
	}
	/* The head now: the consumer starts right after it (or at since),
	 * so every later event comes. */
	s->start_head = si->State.LastSeq;
	keep_range(s, si);
	jsStreamInfo_Destroy(si);
	if (since == EVK_SINCE_LIVE)
		s->next = s->start_head + 1;
	else
		s->next = (uint64_t)(since < 0 ? 0 : since) + 1;
	long long until = evk_mono_ms() + NATS_RESUB_MS;
	while ((rv = subscribe(s)) != EVK_OK && transient(rv) && evk_mono_ms() < until)
		nats_Sleep(NATS_RETRY_MS);
	if (rv != EVK_OK) {
		if (transient(rv) && evk_bus_why() == NULL)
			evk_bus_set_why("cannot make a consumer on stream '%s' at '%s' within "
					"%d s (no quorum?)", s->l.u.stream, url,
					NATS_RESUB_MS / 1000);
		evk_nats_sub_close(s);
		return rv;
	}
	s->line = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX);
	*out = s;
	return EVK_OK;
}

/* The stream and consumer sequences of a message from the consumer, read
 * from its reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
 * <cseq>.<ts>.<pending> (9 tokens), or with <domain>.<account hash>
 * before <stream> (12 or more). */
static bool
reply_seqs(natsMsg *m, uint64_t *seq, uint64_t *cseq)
{
	const char *r = natsMsg_GetReply(m);
	const char *tok[16];
	uint64_t v[2];
	int n = 0;

	if (r == NULL || strncmp(r, "$JS.ACK.", 8) != 0)
		return false;
	tok[n++] = r;
	for (const char *p = r; *p && n < 16; p++)
		if (*p == '.')
			tok[n++] = p + 1;
	int at = n == 9 ? 5 : n >= 12 ? 7 : -1;
	if (at < 0)
		return false;
	for (int k = 0; k < 2; k++) {
		const char *p = tok[at + k];
		v[k] = 0;
		if (*p < '0' || *p > '9')
			return false;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (v[k] > (UINT64_MAX - 9) / 10)
				return false;
			v[k] = v[k] * 10 + (uint64_t)(*p - '0');
		}
		if (*p != '.' || v[k] == 0)
			return false;
	}
	*seq = v[0];
	*cseq = v[1];
	return true;
}

/* Makes the event of message m (stream sequence seq) the one to deliver:
 * its line with the seq, checked, and on the subject of its topic. */
static bool
take(struct evk_nats_sub *s, natsMsg *m, uint64_t seq, struct evk_event *ev)
{
	const char *data = natsMsg_GetData(m);
	int len = natsMsg_GetDataLength(m);
	char num[32], *at = num + sizeof(num);

	if (data == NULL || len < 2 || data[0] != '{')
		return false;
	evk_buf_reset(&s->line);
	/* {"seq":<seq>, written backwards */
	*--at = ',';
	do
		*--at = (char)('0' + seq % 10);
	while ((seq /= 10) > 0);
	at -= 7;
	memcpy(at, "{\"seq\":", 7);
	size_t n = (size_t)(num + sizeof(num) - at);
	if (evk_buf_add(&s->line, at, n) != EVK_OK ||
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
	if (s->active) {
		/* Messages came: it was there a moment ago. */
		s->active = false;
		s->probed = evk_mono_ms();
	}
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

/* The stream's oldest retained seq as it is now, or recently enough to
 * judge a skip to seq: read again for a consumer's first skip, an
 * unfiltered consumer's skip (nothing but a gap skips there), a stream
 * with limits other than a count, and when the last reading is older
 * than NATS_GAP_CHECK_MS or the subscriber is half the retention behind
 * the head (the stream cannot drop half a million events meanwhile). 0
 * when it cannot be asked now (then a new consumer is the safe course). */
static uint64_t
oldest_retained(struct evk_nats_sub *s)
{
	jsStreamInfo *si = NULL;

	bool stale = s->checked == 0 || !s->filtered || s->max_msgs < 0 ||
		     (s->max_msgs > 0 &&
		      (evk_mono_ms() - s->checked >= NATS_GAP_CHECK_MS ||
		       (s->last_known > s->next &&
			s->last_known - s->next >= (uint64_t)s->max_msgs / 2)));
	if (!stale)
		return s->first_known;
	if (stream_info(&s->l, &si, false) != EVK_OK)
		return 0;
	keep_range(s, si);
	jsStreamInfo_Destroy(si);
	return s->first_known;
}

/* Drops the consumer: the next evk_nats_sub_next makes a new one from
 * s->next on. */
static void
drop_consumer(struct evk_nats_sub *s, natsMsg *m)
{
	if (m)
		natsMsg_Destroy(m);
	natsSubscription_Destroy(s->sub);
	s->sub = NULL;
	s->queued = 0;
}

/* The next message from the consumer (made again when needed), in *m.
 * EVK_OK, EVK_ETIMEDOUT at the deadline, EVK_EAGAIN when the consumer was
 * dropped (call again), or an error of the link. */
static int
next_msg(struct evk_nats_sub *s, natsMsg **m, int timeout_ms, long long *deadline)
{
	if (s->sub == NULL) {
		/* A new consumer from s->next on; tried again while the
		 * cluster is unsettled, for up to NATS_RESUB_MS. */
		int rv = subscribe(s);
		if (rv == EVK_OK) {
			s->resub_since = 0;
		} else {
			if (!transient(rv))
				return rv;
			if (s->resub_since == 0)
				s->resub_since = evk_mono_ms();
			else if (evk_mono_ms() - s->resub_since > NATS_RESUB_MS) {
				snprintf(s->why, sizeof(s->why),
					 "no consumer on stream '%s' could be made for %d s "
					 "(no quorum?)", s->l.u.stream, NATS_RESUB_MS / 1000);
				return EVK_ECLOSED;
			}
			if (timeout_ms >= 0 && evk_mono_ms() >= *deadline)
				return EVK_ETIMEDOUT;
			nats_Sleep(NATS_RETRY_MS);
			return EVK_EAGAIN;
		}
	}
	int msgs = 0, bytes = 0;
	if (s->queued == 0 && natsSubscription_GetPending(s->sub, &msgs, &bytes) == NATS_OK &&
	    msgs == 0 && s->burst) {
		/* The queue ran dry in a burst: a moment's nap lets the next
		 * messages gather, taken then without a wake-up each. */
		struct timespec nap = { 0, NATS_NAP_NS };
		nanosleep(&nap, NULL);
		natsSubscription_GetPending(s->sub, &msgs, &bytes);
	}
	if (s->queued == 0)
		s->queued = msgs;
	int64_t wait = 3600 * 1000;
	if (s->queued > 0) {
		wait = NATS_PROBE_MS; /* there: returned at once */
	} else if (timeout_ms >= 0) {
		long long left = *deadline - evk_mono_ms();
		wait = left < 0 ? 0 : left;
	}
	if (wait > NATS_PROBE_MS)
		wait = NATS_PROBE_MS;
	s->burst = s->queued > 0;
	natsStatus st = natsSubscription_NextMsg(m, s->sub, wait);
	if (s->queued > 0)
		s->queued--;
	if (st == NATS_TIMEOUT) {
		if (!consumer_alive(s)) {
			drop_consumer(s, NULL);
			return EVK_EAGAIN;
		}
		if (timeout_ms >= 0 && *deadline == 0)
			*deadline = evk_mono_ms() + timeout_ms;
		if (timeout_ms < 0 || evk_mono_ms() < *deadline)
			return EVK_EAGAIN;
		return EVK_ETIMEDOUT;
	}
	if (st == NATS_SLOW_CONSUMER || st == NATS_MISMATCH || st == NATS_MISSED_HEARTBEAT) {
		/* Something was lost on the way, or the consumer is gone. */
		drop_consumer(s, NULL);
		return EVK_EAGAIN;
	}
	if (st != NATS_OK)
		return from_nats(st) == EVK_EIO ? EVK_ECLOSED : from_nats(st);
	return EVK_OK;
}

int
evk_nats_sub_next(struct evk_nats_sub *s, struct evk_event *ev, int timeout_ms)
{
	/* The clock is read only when a wait is due. */
	long long deadline = 0;

	for (;;) {
		natsMsg *m = s->held;
		uint64_t seq = s->held_seq, cseq;
		s->held = NULL;
		if (m == NULL) {
			if (deadline == 0 && timeout_ms >= 0 && s->queued == 0)
				deadline = evk_mono_ms() + timeout_ms;
			int rv = next_msg(s, &m, timeout_ms, &deadline);
			if (rv == EVK_EAGAIN)
				continue;
			if (rv != EVK_OK)
				return rv;
			s->active = true;
			if (!reply_seqs(m, &seq, &cseq)) {
				s->malformed++;
				natsMsg_Destroy(m);
				continue;
			}
			if (cseq != s->cseq_next) {
				/* Lost on the way (a full queue, a reconnect): a
				 * new consumer from s->next gets it again. */
				drop_consumer(s, m);
				continue;
			}
			s->cseq_next++;
			if (seq < s->next) {
				natsMsg_Destroy(m); /* already delivered */
				continue;
			}
			if (seq > s->next) {
				/* Skipped ahead: events the filter does not take,
				 * or a stretch the stream no longer holds (a gap),
				 * which the stream's oldest seq tells. */
				uint64_t first = oldest_retained(s);
				if (first == 0) {
					drop_consumer(s, m);
					continue;
				}
				if (first > s->next) {
					s->gap_from = s->next;
					s->gap_to = (first < seq ? first : seq) - 1;
					s->next = seq;
					s->held = m;
					s->held_seq = seq;
					return EVK_EGAP;
				}
			}
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
	if (s->held || s->queued > 0)
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

const char *
evk_nats_sub_why(const struct evk_nats_sub *s)
{
	return s->why[0] ? s->why : NULL;
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
	/* A stream made elsewhere is used as it is: what differs from the
	 * configuration evkit makes, one note each (none for evkit's). */
	char notes[1024];
	cJSON *differs = ok ? cJSON_AddArrayToObject(o, "differs") : NULL;
	ok = ok && differs != NULL;
	config_differs(&l, si->Config, notes, sizeof(notes));
	for (char *n = notes, *end; ok && *n; n = end) {
		end = strstr(n, "; ");
		size_t len = end ? (size_t)(end - n) : strlen(n);
		char one[256];
		snprintf(one, sizeof(one), "%.*s", (int)len, n);
		cJSON *str = cJSON_CreateString(one);
		ok = str != NULL && cJSON_AddItemToArray(differs, str);
		end = end ? end + 2 : n + len;
	}
	if (ok && si->Cluster) {
		cJSON *peers;
		ok = (c = cJSON_AddObjectToObject(o, "cluster")) != NULL &&
		     cJSON_AddStringToObject(c, "name", si->Cluster->Name ? si->Cluster->Name : "") &&
		     cJSON_AddStringToObject(c, "leader",
					     si->Cluster->Leader ? si->Cluster->Leader : "") &&
		     cJSON_AddBoolToObject(c, "quorum", has_quorum(si)) &&
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
