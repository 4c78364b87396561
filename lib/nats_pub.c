/* The bus on NATS JetStream (lib/nats_impl.h): the publisher. */
#include "nats_impl.h"

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
	bool repeat;    /* of an ENTRY_ACKED: stored before (a duplicate) */
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
	uint64_t dropped;       /* acknowledged as duplicates */
	char producer[EVK_PRODUCER_MAX + 1]; /* "" or the Nats-Msg-Id prefix */
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
	    int *jerr, bool *repeat)
{
	static const char seq_key[] = "\"seq\":";
	static const char dup_key[] = "\"duplicate\":true";

	*jerr = -1;
	*repeat = false;
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
			/* A message id seen within the stream's duplicate
			 * window: the stored one's seq, and
			 * "duplicate":true after it. */
			*repeat = *d == ',' &&
				  memmem(d, (size_t)(end - d), dup_key, sizeof(dup_key) - 1);
			*seq = v;
			return true;
		}
	}
	cJSON *o = data ? cJSON_ParseWithLength(data, (size_t)(len < 0 ? 0 : len)) : NULL;
	cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
	cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seq");
	bool ok = err == NULL && cJSON_IsNumber(s) && s->valuedouble >= 1;
	if (ok) {
		*seq = (uint64_t)s->valuedouble;
		*repeat = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "duplicate"));
	}
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
			       &e->jerr, &e->repeat)) {
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
	int rv = nats_stream_info(&p->l, &si, false);
	bool noq = rv == EVK_EUNAVAIL || (rv == EVK_OK && !nats_has_quorum(si));
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
	return nats_js_err(NATS_ERR, (jsErrCode)e->jerr) == EVK_EUNAVAIL ? EVK_EUNAVAIL : EVK_EIO;
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
		p->dropped += e->repeat;
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
	if ((rv = nats_link_open(&p->l, url, &jo)) != EVK_OK ||
	    (rv = nats_stream_open(&p->l, &si)) != EVK_OK) {
		nats_link_close(&p->l);
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
		nats_link_close(&p->l);
		free(p);
		return s == NATS_NO_MEMORY || s == NATS_OK ? EVK_ENOMEM : nats_err(s);
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

/* Sends one message with its reply subject; with a producer id, it
 * carries the header Nats-Msg-Id: <producer>:<pseq>, by which JetStream
 * stores it once within the stream's duplicate window. */
static natsStatus
send_one(struct evk_nats_pub *p, const char *reply, const char *line, size_t len,
	 uint64_t pseq)
{
	if (p->producer[0] == '\0')
		return natsConnection_PublishRequest(p->l.nc, p->subject, reply, line,
						     (int)len);
	char id[EVK_PRODUCER_MAX + 24];
	natsMsg *m = NULL;
	snprintf(id, sizeof(id), "%s:%llu", p->producer, (unsigned long long)pseq);
	natsStatus s = natsMsg_Create(&m, p->subject, reply, line, (int)len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(p->l.nc, m);
	natsMsg_Destroy(m);
	return s;
}

static int
add(struct evk_nats_pub *p, const char *line, size_t len, uint64_t pseq)
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
	if ((s = send_one(p, reply, line, len, pseq)) != NATS_OK) {
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
evk_nats_pub_add(struct evk_nats_pub *p, const char *line, size_t len)
{
	return p->producer[0] ? EVK_EINVAL : add(p, line, len, 0);
}

int
evk_nats_pub_set_producer(struct evk_nats_pub *p, const char *id)
{
	size_t n = strlen(id);
	if (!evk_producer_valid(id, n) || p->count > 0 || p->n_next > 1)
		return EVK_EINVAL;
	memcpy(p->producer, id, n + 1);
	return EVK_OK;
}

int
evk_nats_pub_add_seq(struct evk_nats_pub *p, const char *line, size_t len, uint64_t pseq)
{
	/* (lib/bus_pick.c checks the order) */
	return p->producer[0] == '\0' ? EVK_EINVAL : add(p, line, len, pseq);
}

uint64_t
evk_nats_pub_dropped(const struct evk_nats_pub *p)
{
	return p->dropped;
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
	/* What is buffered goes now: the library's flusher would wait a
	 * millisecond to gather more (an error shows in the acks). */
	if (p->count > p->done)
		natsConnection_FlushTimeout(p->l.nc, NATS_API_WAIT_MS);
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
	nats_link_close(&p->l);
	for (unsigned i = 0; i < NATS_WINDOW; i++)
		free(p->ring[i].line);
	evk_buf_release(&p->scan);
	free(p);
}

