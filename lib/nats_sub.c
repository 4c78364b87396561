/* The bus on NATS JetStream (lib/nats_impl.h): the subscriber. */
#include "nats_impl.h"

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
		return nats_js_err(st, jerr);
	}
	if ((st = natsSubscription_SetPendingLimits(s->sub, NATS_SUB_PENDING_MSGS,
						    NATS_SUB_PENDING_BYTES)) != NATS_OK) {
		natsSubscription_Destroy(s->sub);
		s->sub = NULL;
		return nats_err(st);
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
	if ((rv = nats_link_open(&s->l, url, &jo)) != EVK_OK ||
	    (rv = nats_stream_open(&s->l, &si)) != EVK_OK) {
		nats_link_close(&s->l);
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
	if (nats_stream_info(&s->l, &si, false) != EVK_OK)
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
		return nats_err(st) == EVK_EIO ? EVK_ECLOSED : nats_err(st);
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
	nats_link_close(&s->l);
	evk_buf_release(&s->line);
	free(s);
}

