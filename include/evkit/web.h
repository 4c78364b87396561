/* widgetd's page: an HTTP server (nng's) that serves the widgets to a
 * browser. `/` is one self-contained page, `/widgets` and `/widgets/ID`
 * the widgets as `widgetd get` prints them, `/events` a Server-Sent Events
 * feed: the whole current state first, then every change.
 *
 * Threads: the fold thread calls evk_web_widget; nng's threads serve the
 * requests and write the feeds; a reaper thread of this module pings the
 * feeds and frees the connections that ended. No cJSON here (widgetd's
 * cJSON allocator is for the fold thread only): widgets come as text. */
#ifndef EVKIT_WEB_H
#define EVKIT_WEB_H

#include <stdbool.h>
#include <stddef.h>

#define EVK_WEB_FEEDS_MAX 1024        /* open feeds at once; beyond, 503 */
#define EVK_WEB_FEED_QUEUE (1 << 20)  /* bytes a feed may have unsent */
#define EVK_WEB_PING_MS 15000         /* a comment on idle feeds */

struct evk_web;

/* Serves on addr: "PORT" (loopback), "HOST:PORT" or "[V6]:PORT". With
 * this process's certificate and key (evk_tls_web_config) the page is
 * HTTPS; without them a host that is not loopback is refused unless
 * insecure. bus is shown in the page's header. An evk error, with *why
 * saying what. */
int evk_web_open(struct evk_web **wp, const char *addr, bool insecure, const char *bus,
		 const char **why);

/* The page's address, with the port bound (for "--http 0"). */
const char *evk_web_url(const struct evk_web *w);

/* True when the page is plain HTTP beyond loopback (insecure). */
bool evk_web_clear(const struct evk_web *w);

/* A widget's new state (JSON text json of len bytes), or its removal when
 * json is NULL: kept for the next requests and queued to every feed. Never
 * waits for a browser: a feed whose queue is full is dropped. An evk
 * error (out of memory: the widget keeps its old state here). */
int evk_web_widget(struct evk_web *w, const char *id, const char *json, size_t len);

/* How many feeds are open (for tests and --status). */
int evk_web_feeds(struct evk_web *w);

/* Stops serving and frees everything. */
void evk_web_close(struct evk_web *w);

#endif
