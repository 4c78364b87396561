/* include/evkit/bus.h: picks the implementation by the URL's scheme,
 * nats:// for NATS JetStream (lib/nats_*.c), anything else for evbusd
 * (lib/bus_conn.c, bus_pub.c, bus_sub.c). Programs never know which one
 * they talk to. */
#include "evkit/bus.h"

#include "bus_impl.h"

#include "evkit/err.h"
#include "evkit/limits.h"

#include <cjson/cJSON.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* evk_bus_why's sentence, per thread. */
static _Thread_local char bus_why[1024];

void
evk_bus_set_why(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(bus_why, sizeof(bus_why), fmt, ap);
	va_end(ap);
}

const char *
evk_bus_why(void)
{
	return bus_why[0] ? bus_why : NULL;
}

static bool
is_nats(const char *url)
{
	return strncmp(url, EVK_NATS_SCHEME, sizeof(EVK_NATS_SCHEME) - 1) == 0;
}

int
evk_bus_resolve(const char *opt, char *url, size_t n, const char **why)
{
	const char *env = getenv("EVBUS_URL");
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	if (opt == NULL && env != NULL && *env != '\0')
		opt = env;
	if (opt == NULL || !is_nats(opt))
		return evk_nng_bus_resolve(opt, url, n, why);
	if (evk_nats_url_check(opt, why) != EVK_OK)
		return EVK_EINVAL;
	if (strlen(opt) >= n) {
		*why = "address too long";
		return EVK_EINVAL;
	}
	strcpy(url, opt);
	return EVK_OK;
}

int
evk_bus_fanout_url(const char *url, char *out, size_t n)
{
	if (is_nats(url))
		return EVK_EINVAL; /* evbusd's own addresses only */
	return evk_nng_bus_fanout_url(url, out, n);
}

/* ---- publishing ---- */

struct evk_pub {
	struct evk_nng_pub *nng;
	struct evk_nats_pub *nats;
	struct evk_buf scratch;
	uint64_t last_seq; /* the one-shot evk_publish's */
	bool producer;     /* evk_pub_set_producer was called */
	uint64_t pseq_last; /* the last sequence evk_pub_add_seq queued */
};

int
evk_pub_open(struct evk_pub **out, const char *url, evk_ack_fn on_ack, void *arg)
{
	struct evk_pub *p = calloc(1, sizeof(*p));
	bus_why[0] = '\0';
	if (p == NULL)
		return EVK_ENOMEM;
	int rv = is_nats(url) ? evk_nats_pub_open(&p->nats, url, on_ack, arg)
			      : evk_nng_pub_open(&p->nng, url, on_ack, arg);
	if (rv != EVK_OK) {
		free(p);
		return rv;
	}
	p->scratch = (struct evk_buf)EVK_BUF_INIT(EVK_FRAME_MAX - 64);
	*out = p;
	return EVK_OK;
}

int
evk_pub_add(struct evk_pub *p, const char *line, size_t len)
{
	return p->nats ? evk_nats_pub_add(p->nats, line, len)
		       : evk_nng_pub_add(p->nng, line, len);
}

int
evk_pub_event(struct evk_pub *p, const char *topic, const char *event,
	      const cJSON *payload)
{
	evk_buf_reset(&p->scratch);
	int rv = evk_event_build(&p->scratch, NULL, topic, event, payload, NULL);
	if (rv != EVK_OK)
		return rv;
	return evk_pub_add(p, p->scratch.p, p->scratch.len);
}

int
evk_pub_flush(struct evk_pub *p)
{
	return p->nats ? evk_nats_pub_flush(p->nats) : evk_nng_pub_flush(p->nng);
}

int
evk_pub_sync(struct evk_pub *p)
{
	return p->nats ? evk_nats_pub_sync(p->nats) : evk_nng_pub_sync(p->nng);
}

uint64_t
evk_pub_acked(const struct evk_pub *p)
{
	return p->nats ? evk_nats_pub_acked(p->nats) : evk_nng_pub_acked(p->nng);
}

uint64_t
evk_pub_last_seq(const struct evk_pub *p)
{
	return p->nats ? evk_nats_pub_last_seq(p->nats) : evk_nng_pub_last_seq(p->nng);
}

int
evk_pub_set_producer(struct evk_pub *p, const char *id)
{
	int rv = p->nats ? evk_nats_pub_set_producer(p->nats, id)
			 : evk_nng_pub_set_producer(p->nng, id);
	if (rv == EVK_OK)
		p->producer = true;
	return rv;
}

int
evk_pub_add_seq(struct evk_pub *p, const char *line, size_t len, uint64_t pseq)
{
	if (!p->producer || pseq == 0 || pseq <= p->pseq_last)
		return EVK_EINVAL;
	int rv = p->nats ? evk_nats_pub_add_seq(p->nats, line, len, pseq)
			 : evk_nng_pub_add_seq(p->nng, line, len, pseq);
	if (rv == EVK_OK)
		p->pseq_last = pseq;
	return rv;
}

uint64_t
evk_pub_dropped(const struct evk_pub *p)
{
	return p->nats ? evk_nats_pub_dropped(p->nats) : evk_nng_pub_dropped(p->nng);
}

const char *
evk_pub_why(const struct evk_pub *p)
{
	return p->nats ? evk_nats_pub_why(p->nats) : evk_nng_pub_why(p->nng);
}

void
evk_pub_close(struct evk_pub *p)
{
	if (p == NULL)
		return;
	if (p->nats)
		evk_nats_pub_close(p->nats);
	else
		evk_nng_pub_close(p->nng);
	evk_buf_release(&p->scratch);
	free(p);
}

int
evk_publish(const char *url, const char *topic, const char *event,
	    const cJSON *payload, uint64_t *seq)
{
	struct evk_pub *p;
	int rv = evk_pub_open(&p, url, NULL, NULL);
	if (rv != EVK_OK)
		return rv;
	if ((rv = evk_pub_event(p, topic, event, payload)) == EVK_OK &&
	    (rv = evk_pub_sync(p)) == EVK_OK && seq)
		*seq = evk_pub_last_seq(p);
	evk_pub_close(p);
	return rv;
}

/* ---- subscribing ---- */

struct evk_sub {
	struct evk_nng_sub *nng;
	struct evk_nats_sub *nats;
	char gap_text[80]; /* evk_sub_gap_text's */
};

int
evk_sub_open(struct evk_sub **out, const char *url, int64_t since)
{
	return evk_sub_open_match(out, url, since, NULL, 0);
}

int
evk_sub_open_match(struct evk_sub **out, const char *url, int64_t since,
		   const char *const *patterns, int n)
{
	struct evk_sub *s = calloc(1, sizeof(*s));
	bus_why[0] = '\0';
	if (s == NULL)
		return EVK_ENOMEM;
	int rv = is_nats(url) ? evk_nats_sub_open(&s->nats, url, since, patterns, n)
			      : evk_nng_sub_open(&s->nng, url, since);
	if (rv != EVK_OK) {
		free(s);
		return rv;
	}
	*out = s;
	return EVK_OK;
}

int
evk_sub_next(struct evk_sub *s, struct evk_event *ev, int timeout_ms)
{
	return s->nats ? evk_nats_sub_next(s->nats, ev, timeout_ms)
		       : evk_nng_sub_next(s->nng, ev, timeout_ms);
}

int
evk_sub_next_past_gaps(struct evk_sub *s, struct evk_event *ev, int timeout_ms,
		       void (*on_gap)(const char *text))
{
	int rv = evk_sub_next(s, ev, timeout_ms);
	if (rv != EVK_EGAP)
		return rv;
	on_gap(evk_sub_gap_text(s));
	return EVK_ETIMEDOUT;
}

bool
evk_sub_buffered(const struct evk_sub *s)
{
	return s->nats ? evk_nats_sub_buffered(s->nats) : evk_nng_sub_buffered(s->nng);
}

void
evk_sub_gap(const struct evk_sub *s, uint64_t *from, uint64_t *to)
{
	if (s->nats)
		evk_nats_sub_gap(s->nats, from, to);
	else
		evk_nng_sub_gap(s->nng, from, to);
}

const char *
evk_sub_gap_text(struct evk_sub *s)
{
	uint64_t from, to;
	evk_sub_gap(s, &from, &to);
	if (from == to)
		snprintf(s->gap_text, sizeof(s->gap_text),
			 "gap: event %llu is no longer retained", (unsigned long long)from);
	else
		snprintf(s->gap_text, sizeof(s->gap_text),
			 "gap: events %llu-%llu are no longer retained",
			 (unsigned long long)from, (unsigned long long)to);
	return s->gap_text;
}

const char *
evk_sub_why(const struct evk_sub *s)
{
	return s->nats ? evk_nats_sub_why(s->nats) : evk_nng_sub_why(s->nng);
}

uint64_t
evk_sub_start_head(const struct evk_sub *s)
{
	return s->nats ? evk_nats_sub_start_head(s->nats)
		       : evk_nng_sub_start_head(s->nng);
}

uint64_t
evk_sub_malformed(const struct evk_sub *s)
{
	return s->nats ? evk_nats_sub_malformed(s->nats)
		       : evk_nng_sub_malformed(s->nng);
}

uint64_t
evk_sub_refilled(const struct evk_sub *s)
{
	/* JetStream's consumer never drops, so nothing is refilled there. */
	return s->nats ? 0 : evk_nng_sub_refilled(s->nng);
}

void
evk_sub_close(struct evk_sub *s)
{
	if (s == NULL)
		return;
	if (s->nats)
		evk_nats_sub_close(s->nats);
	else
		evk_nng_sub_close(s->nng);
	free(s);
}

int
evk_bus_status(const char *url, char **json)
{
	bus_why[0] = '\0';
	return is_nats(url) ? evk_nats_bus_status(url, json)
			    : evk_nng_bus_status(url, json);
}
