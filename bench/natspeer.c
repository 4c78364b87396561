/* bench/natspeer.c — the NATS C client's own fastest path, file to file,
 * as the peer rows of bench/bus.sh:
 *
 *   natspeer core URL IN OUT N   core publish -> async callback subscriber
 *   natspeer js URL IN OUT N     JetStream: async publish with PubAcks
 *                                (window 4096) into a file-storage stream,
 *                                an ordered push consumer with a callback
 *
 * Each line of IN is one message (the line as its data), published on
 * nbench.t<i%16>; the subscriber writes each message's data and '\n' to
 * OUT. Prints "T0 T1 RECEIVED" (seconds since the epoch): from the first
 * publish until N messages were written (and, for js, every ack came).
 * Bench only: errors end the program. */
#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long received, wanted;
static FILE *out;

static double
now(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void
die(const char *what, natsStatus s)
{
	fprintf(stderr, "natspeer: %s: %s\n", what, natsStatus_GetText(s));
	exit(1);
}

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
	(void)nc;
	(void)sub;
	(void)arg;
	fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), out);
	fputc('\n', out);
	natsMsg_Destroy(m);
	pthread_mutex_lock(&mu);
	if (++received == wanted)
		pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

int
main(int argc, char **argv)
{
	natsConnection *pc, *sc;
	natsSubscription *sub;
	jsCtx *pjs = NULL, *sjs = NULL;
	natsStatus s;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	char subj[32];
	long i = 0;

	if (argc != 6 || (strcmp(argv[1], "core") != 0 && strcmp(argv[1], "js") != 0)) {
		fprintf(stderr, "usage: natspeer core|js URL IN OUT N\n");
		return 2;
	}
	bool js = strcmp(argv[1], "js") == 0;
	FILE *in = fopen(argv[3], "r");
	if (in == NULL || (out = fopen(argv[4], "w")) == NULL) {
		perror("natspeer");
		return 1;
	}
	wanted = atol(argv[5]);
	if ((s = natsConnection_ConnectTo(&pc, argv[2])) != NATS_OK ||
	    (s = natsConnection_ConnectTo(&sc, argv[2])) != NATS_OK)
		die("connect", s);
	if (js) {
		jsOptions jo;
		jsOptions_Init(&jo);
		jo.PublishAsync.MaxPending = 4096;
		/* A loaded machine may hold acks back longer than the
		 * default 200 ms a full window waits. */
		jo.PublishAsync.StallWait = 10000;
		if ((s = natsConnection_JetStream(&pjs, pc, &jo)) != NATS_OK ||
		    (s = natsConnection_JetStream(&sjs, sc, NULL)) != NATS_OK)
			die("jetstream", s);
		/* A fresh stream each run. */
		js_DeleteStream(pjs, "NBENCH", NULL, NULL);
		jsStreamConfig cfg;
		const char *subjects[] = { "nbench.>" };
		jsStreamConfig_Init(&cfg);
		cfg.Name = "NBENCH";
		cfg.Subjects = subjects;
		cfg.SubjectsLen = 1;
		cfg.Storage = js_FileStorage;
		cfg.MaxMsgs = 1000000;
		if ((s = js_AddStream(NULL, pjs, &cfg, NULL, NULL)) != NATS_OK)
			die("add stream", s);
		jsSubOptions so;
		jsSubOptions_Init(&so);
		so.Ordered = true;
		so.Stream = "NBENCH";
		if ((s = js_Subscribe(&sub, sjs, "nbench.>", on_msg, NULL, NULL, &so,
				      NULL)) != NATS_OK)
			die("subscribe", s);
	} else {
		if ((s = natsConnection_Subscribe(&sub, sc, "nbench.>", on_msg, NULL)) !=
			    NATS_OK ||
		    (s = natsSubscription_SetPendingLimits(sub, -1, -1)) != NATS_OK ||
		    (s = natsConnection_Flush(sc)) != NATS_OK)
			die("subscribe", s);
	}
	double t0 = now();
	while ((len = getline(&line, &cap, in)) > 0) {
		if (line[len - 1] == '\n')
			len--;
		snprintf(subj, sizeof(subj), "nbench.t%ld", i++ % 16);
		if (js)
			s = js_PublishAsync(pjs, subj, line, (int)len, NULL);
		else
			s = natsConnection_Publish(pc, subj, line, (int)len);
		if (s != NATS_OK)
			die("publish", s);
	}
	if (js) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 60000;
		if ((s = js_PublishAsyncComplete(pjs, &po)) != NATS_OK)
			die("acks", s);
	} else if ((s = natsConnection_Flush(pc)) != NATS_OK) {
		die("flush", s);
	}
	struct timespec until = { .tv_sec = (time_t)now() + 60 };
	pthread_mutex_lock(&mu);
	while (received < wanted)
		if (pthread_cond_timedwait(&cv, &mu, &until) != 0)
			break;
	long got = received;
	pthread_mutex_unlock(&mu);
	double t1 = now();
	printf("%.6f %.6f %ld\n", t0, t1, got);
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	fflush(out);
	if (js) {
		js_DeleteStream(pjs, "NBENCH", NULL, NULL);
		jsCtx_Destroy(pjs);
		jsCtx_Destroy(sjs);
	}
	natsConnection_Destroy(pc);
	natsConnection_Destroy(sc);
	free(line);
	return got == wanted ? 0 : 1;
}
