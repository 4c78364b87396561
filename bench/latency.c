/* latency: publish-to-delivery latency through a running hub.
 *
 *   latency URL RATE SECONDS
 *
 * Publishes RATE events per second for SECONDS, each acknowledged before
 * the next (as evpub does when its input is idle), and receives them on a
 * subscriber thread; prints one JSON line with p50, p99 and max in
 * microseconds, and how many were received. */
#include "evkit/bus.h"
#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"

#include <pthread.h>
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
};

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

int
main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: latency URL RATE SECONDS\n");
		return 2;
	}
	const char *url = argv[1];
	long rate = atol(argv[2]);
	double secs = atof(argv[3]);
	size_t n = (size_t)((double)rate * secs);
	struct rx rx = { .want = n };
	struct evk_pub *pub;
	struct evk_buf line = EVK_BUF_INIT(0);
	pthread_t th;
	char why[256], payload[64];
	int rv;

	if (rate <= 0 || n == 0 || (rx.lat = calloc(n, sizeof(long))) == NULL)
		return 2;
	if ((rv = evk_sub_open(&rx.sub, url, EVK_SINCE_LIVE)) != EVK_OK ||
	    (rv = evk_pub_open(&pub, url, NULL, NULL)) != EVK_OK) {
		fprintf(stderr, "latency: %s: %s\n", url, evk_strerror(rv));
		return 69;
	}
	if (pthread_create(&th, NULL, receive, &rx) != 0)
		return 1;
	long long start = now_us(), period = 1000000 / rate;
	for (size_t i = 0; i < n; i++) {
		long long due = start + (long long)i * period, t;
		while ((t = now_us()) < due) {
			struct timespec d = { 0, (long)(due - t) * 1000 };
			nanosleep(&d, NULL);
		}
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
	pthread_join(th, NULL);
	qsort(rx.lat, rx.got, sizeof(long), cmp_long);
	if (rx.got == 0) {
		fprintf(stderr, "latency: nothing received\n");
		return 1;
	}
	printf("{\"sent\":%zu,\"received\":%zu,\"p50_us\":%ld,\"p99_us\":%ld,\"max_us\":%ld}\n",
	       n, rx.got, rx.lat[rx.got / 2], rx.lat[(size_t)((double)rx.got * 0.99)],
	       rx.lat[rx.got - 1]);
	evk_pub_close(pub);
	evk_sub_close(rx.sub);
	evk_buf_release(&line);
	free(rx.lat);
	return rx.got == n ? 0 : 1;
}
