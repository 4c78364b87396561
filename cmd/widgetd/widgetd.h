/* widgetd's parts: the daemon (daemon.c), the dashboard (view.c) and the
 * command line, get and session (main.c). */
#ifndef WIDGETD_H
#define WIDGETD_H

#include "evkit/event.h"
#include "evkit/bus.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>

#define SESSION_TOPIC "widgetd:session" /* widgetd session start|stop */
#define GET_TOPIC "widgetd:get"         /* widgetd get and view ask here */
#define REPLY_PREFIX "widgetd:reply:"   /* ... for answers on REPLY_PREFIX{nonce} */
#define ANSWER_MS 5000                  /* how long get waits for the daemon */

struct opts {
	const char *bus, *config, *cases_db, *state, *pidfile, *log;
	long long throttle_ms, answer_ms; /* answer_ms: -W, how long get and view wait */
	long long max_widgets; /* --max-widgets; 0: the config's max_widgets */
	bool daemon;
	const char *http; /* --http ADDR: the page (lib/web.c) */
	bool insecure;
};

/* Set by SIGTERM and SIGINT: each loop ends at its next turn. */
extern volatile sig_atomic_t widgetd_stopping;

/* Runs the daemon until widgetd_stopping; an exit status. */
int widgetd_daemon(const struct opts *o, const char *url);

/* widgetd view: the dashboard until q or widgetd_stopping. */
int widgetd_view(const char *url, long long answer_ms);

/* widgetd_request's outcomes other than a count. */
enum { NO_ANSWER = -1, HUB_LOST = -2, INCOMPLETE = -3, INTERRUPTED = -4 };

/* Asks the daemon for its widgets (see main.c). */
long widgetd_request(struct evk_sub *sub, const char *url, long long answer_ms, const char *id,
		     void (*fn)(void *arg, const char *json, size_t len), void *arg, int *err);

static inline bool
topic_is(const struct evk_event *ev, const char *topic)
{
	return ev->topic_len == strlen(topic) && memcmp(ev->topic, topic, ev->topic_len) == 0;
}

static inline bool
topic_has_prefix(const struct evk_event *ev, const char *prefix)
{
	size_t n = strlen(prefix);
	return ev->topic_len >= n && memcmp(ev->topic, prefix, n) == 0;
}

static inline bool
event_is(const struct evk_event *ev, const char *name)
{
	return ev->event_len == strlen(name) && memcmp(ev->event, name, ev->event_len) == 0;
}

#endif
