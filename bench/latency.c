/* latency: publish-to-delivery latency through a running hub.
 *
 *   latency URL RATE SECONDS
 *   latency --nats-core|--nats-js nats://HOST:PORT RATE SECONDS
 *
 * Publishes RATE events per second for SECONDS, each acknowledged before
 * the next (as evpub does when its input is idle), and receives them on a
 * subscriber thread; prints one JSON line with p50, p99 and max in
 * microseconds, how many were received, and the rate reached (below
 * RATE when each acknowledgement takes longer than 1/RATE s). The URL picks evkit's
 * backend (an evbusd, or JetStream through evkit's client with
 * nats://URL/STREAM). The NATS peers use the C client directly, each
 * publish sent at once, an async callback subscriber: --nats-core (no
 * log, no acks) and --nats-js (each publish acknowledged by JetStream,
 * file storage, before the next). */
#include "evkit/bus.h"
#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long
now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

struct rx {
	struct evk_sub *sub;
	long *lat;
	size_t want, got;
	long long sent_us; /* how long publishing took: the rate reached */
	pthread_mutex_t mu;
};

/* --nats-core: each message's data is its send time in microseconds. */
static void
on_core(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
	struct rx *rx = arg;
	(void)nc;
	(void)sub;
	long long t = atoll(natsMsg_GetData(msg));
	pthread_mutex_lock(&rx->mu);
	if (rx->got < rx->want)
		rx->lat[rx->got++] = (long)(now_us() - t);
	pthread_mutex_unlock(&rx->mu);
	natsMsg_Destroy(msg);
}

/* Sleeps until the i-th event of a RATE-per-second stream is due. */
static void
pace(long long start, long long period, size_t i)
{
	long long due = start + (long long)i * period, t;
	while ((t = now_us()) < due) {
		struct timespec d = { 0, (long)(due - t) * 1000 };
		nanosleep(&d, NULL);
	}
}

/* Connects to url, sending each publish at once (SendAsap: no batching
 * by the client's flusher, the latency path). */
static natsConnection *
nats_connect(const char *url)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, url) != NATS_OK ||
	    natsOptions_SetSendAsap(o, true) != NATS_OK || natsConnection_Connect(&nc, o) != NATS_OK)
		nc = NULL;
	natsOptions_Destroy(o);
	return nc;
}

#define LAT_SUBJECT "evkbench.latency"
#define LAT_STREAM "EVKLATENCY"

/* The NATS peers with the C client: core publish (no acks, no log) or,
 * with js, an acknowledged JetStream publish into a file-storage stream
 * and a push consumer with a callback. */
static int
run_nats(const char *url, bool js, long rate, struct rx *rx)
{
	natsConnection *pc = nats_connect(url), *sc = nats_connect(url);
	natsSubscription *sub = NULL;
	jsCtx *pjs = NULL, *sjs = NULL;
	char data[32];
	natsStatus s = pc && sc ? NATS_OK : NATS_NO_SERVER;

	if (s == NATS_OK && js) {
		jsStreamConfig cfg;
		const char *subjects[] = { LAT_SUBJECT };
		jsSubOptions so;
		if ((s = natsConnection_JetStream(&pjs, pc, NULL)) == NATS_OK)
			s = natsConnection_JetStream(&sjs, sc, NULL);
		if (s == NATS_OK) {
			js_DeleteStream(pjs, LAT_STREAM, NULL, NULL);
			jsStreamConfig_Init(&cfg);
			cfg.Name = LAT_STREAM;
			cfg.Subjects = subjects;
			cfg.SubjectsLen = 1;
			cfg.Storage = js_FileStorage;
			s = js_AddStream(NULL, pjs, &cfg, NULL, NULL);
		}
		jsSubOptions_Init(&so);
		so.Ordered = true;
		so.Stream = LAT_STREAM;
		if (s == NATS_OK)
			s = js_Subscribe(&sub, sjs, LAT_SUBJECT, on_core, rx, NULL, &so, NULL);
	} else if (s == NATS_OK) {
		s = natsConnection_Subscribe(&sub, sc, LAT_SUBJECT, on_core, rx);
	}
	if (s == NATS_OK)
		s = natsConnection_Flush(sc);
	if (s != NATS_OK) {
		fprintf(stderr, "latency: %s: %s\n", url, natsStatus_GetText(s));
		return 69;
	}
	long long start = now_us(), period = 1000000 / rate;
	for (size_t i = 0; i < rx->want && s == NATS_OK; i++) {
		pace(start, period, i);
		int len = snprintf(data, sizeof(data), "%lld", now_us());
		jsPubAck *pa = NULL;
		s = js ? js_Publish(&pa, pjs, LAT_SUBJECT, data, len, NULL, NULL)
		       : natsConnection_Publish(pc, LAT_SUBJECT, data, len);
		jsPubAck_Destroy(pa);
	}
	rx->sent_us = now_us() - start;
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&rx->mu);
		bool done = rx->got >= rx->want;
		pthread_mutex_unlock(&rx->mu);
		if (done)
			break;
		nats_Sleep(10);
	}
	natsConnection_Close(sc);
	natsSubscription_Destroy(sub);
	if (js) {
		js_DeleteStream(pjs, LAT_STREAM, NULL, NULL);
		jsCtx_Destroy(pjs);
		jsCtx_Destroy(sjs);
	}
	natsConnection_Destroy(sc);
	natsConnection_Destroy(pc);
	return s == NATS_OK ? 0 : 69;
}

static void *
receive(void *arg)
{
	struct rx *rx = arg;
	struct evk_event ev;

	while (rx->got < rx->want) {
		int rv = evk_sub_next(rx->sub, &ev, 5000);
		if (rv == EVK_ETIMEDOUT)
			break;
		if (rv != EVK_OK)
			continue;
		const char *t = memmem(ev.payload, ev.payload_len, "\"t\":", 4);
		if (t == NULL)
			continue;
		rx->lat[rx->got++] = (long)(now_us() - atoll(t + 4));
	}
	return NULL;
}

static int
cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Prints the JSON line of figures; 0 when every event came. */
static int
report(struct rx *rx, size_t n)
{
	qsort(rx->lat, rx->got, sizeof(long), cmp_long);
	if (rx->got == 0) {
		fprintf(stderr, "latency: nothing received\n");
		return 1;
	}
	printf("{\"sent\":%zu,\"received\":%zu,\"p50_us\":%ld,\"p99_us\":%ld,\"max_us\":%ld,"
	       "\"rate\":%.0f}\n",
	       n, rx->got, rx->lat[rx->got / 2], rx->lat[(size_t)((double)rx->got * 0.99)],
	       rx->lat[rx->got - 1], rx->sent_us > 0 ? (double)n * 1e6 / (double)rx->sent_us : 0.0);
	free(rx->lat);
	return rx->got == n ? 0 : 1;
}

int
main(int argc, char **argv)
{
	bool core = argc == 5 && strcmp(argv[1], "--nats-core") == 0;
	bool js = argc == 5 && strcmp(argv[1], "--nats-js") == 0;
	if (core || js) {
		argv++;
		argc--;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: latency [--nats-core|--nats-js] URL RATE SECONDS\n");
		return 2;
	}
	const char *url = argv[1];
	long rate = atol(argv[2]);
	double secs = atof(argv[3]);
	size_t n = (size_t)((double)rate * secs);
	struct rx rx = { .want = n, .mu = PTHREAD_MUTEX_INITIALIZER };
	struct evk_pub *pub;
	struct evk_buf line = EVK_BUF_INIT(0);
	pthread_t th;
	char why[256], payload[64];
	int rv;

	if (rate <= 0 || n == 0 || (rx.lat = calloc(n, sizeof(long))) == NULL)
		return 2;
	if (core || js) {
		if ((rv = run_nats(url, js, rate, &rx)) != 0)
			return rv;
		return report(&rx, n);
	}
	if ((rv = evk_sub_open(&rx.sub, url, EVK_SINCE_LIVE)) != EVK_OK ||
	    (rv = evk_pub_open(&pub, url, NULL, NULL)) != EVK_OK) {
		fprintf(stderr, "latency: %s: %s\n", url, evk_strerror(rv));
		return 69;
	}
	if (pthread_create(&th, NULL, receive, &rx) != 0)
		return 1;
	long long start = now_us(), period = 1000000 / rate;
	for (size_t i = 0; i < n; i++) {
		pace(start, period, i);
		int len = snprintf(payload, sizeof(payload), "{\"t\":%lld}", now_us());
		evk_buf_reset(&line);
		if (evk_event_from_payload(&line, "bench:latency", "tick", payload,
					   (size_t)len, why, sizeof(why)) != EVK_OK ||
		    evk_pub_add(pub, line.p, line.len) != EVK_OK ||
		    evk_pub_sync(pub) != EVK_OK) {
			fprintf(stderr, "latency: publish failed\n");
			return 69;
		}
	}
	rx.sent_us = now_us() - start;
	pthread_join(th, NULL);
	evk_pub_close(pub);
	evk_sub_close(rx.sub);
	evk_buf_release(&line);
	return report(&rx, n);
}
