/* widgetd's page over nng's HTTP server (see include/evkit/web.h).
 *
 * The live feed is Server-Sent Events, not a WebSocket: the feed only goes
 * one way (server to page), EventSource reconnects by itself and is plain
 * HTTP that curl can read, and nng's ws transport would wrap each change
 * in a message protocol the page would have to speak (SP over ws) or a
 * stream listener of its own; SSE is a few header lines on a hijacked
 * connection. */
#include "evkit/web.h"
#include "evkit/err.h"
#include "evkit/tls.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The page, embedded at build time (the Makefile makes this object depend
 * on the file; the path is relative to the top of the tree, where make
 * runs the compiler). */
__asm__(".pushsection .rodata\n"
	".balign 16\n"
	"evk_web_page_html:\n"
	".incbin \"share/web/index.html\"\n"
	".byte 0\n"
	".popsection\n");
extern const char evk_web_page_html[];

struct widget {
	char *id, *json;
	size_t len;
};

/* One open feed: out is being written (from off), pend waits behind it.
 * A read stays posted so that a page that goes away is noticed at once. */
struct feed {
	struct feed *next;
	struct evk_web *web;
	nng_http_conn *conn;
	nng_aio *aio, *rdaio;
	char *out, *pend;
	size_t out_len, off, pend_len, pend_cap, limit;
	char in[64]; /* what the page sends after its request: ignored */
	bool busy, reading, dead;
};

struct evk_web {
	nng_http_server *server;
	nng_http_handler *handler;
	char url[300], bus[300];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t reaper;
	bool reaper_started, stopping;
	bool clear; /* plain HTTP beyond loopback (--insecure) */
	struct widget *ws;
	size_t nws, capws;
	struct feed *feeds;
	int nfeeds;
};

static const char sse_head[] = "HTTP/1.1 200 OK\r\n"
			       "Content-Type: text/event-stream\r\n"
			       "Cache-Control: no-store\r\n"
			       "X-Accel-Buffering: no\r\n"
			       "Connection: close\r\n\r\n"
			       "retry: 1000\n\n";

static long
widget_index(const struct evk_web *w, const char *id, size_t n)
{
	for (size_t i = 0; i < w->nws; i++)
		if (strlen(w->ws[i].id) == n && memcmp(w->ws[i].id, id, n) == 0)
			return (long)i;
	return -1;
}

/* ---- feeds (all under w->mu) ---- */

static void
feed_start_write(struct feed *f)
{
	if (f->busy || f->dead)
		return;
	if (f->off == f->out_len) {
		/* The queue behind becomes the one being written. */
		free(f->out);
		f->out = f->pend;
		f->out_len = f->pend_len;
		f->off = 0;
		f->pend = NULL;
		f->pend_len = f->pend_cap = 0;
	}
	if (f->off == f->out_len)
		return;
	nng_iov iov = { .iov_buf = f->out + f->off, .iov_len = f->out_len - f->off };
	if (nng_aio_set_iov(f->aio, 1, &iov) != 0) {
		f->dead = true;
		return;
	}
	f->busy = true;
	nng_http_conn_write(f->conn, f->aio);
}

/* Ends feed f: its write is cancelled, the reaper frees it. */
static void
feed_drop(struct feed *f)
{
	f->dead = true;
	if (f->busy)
		nng_aio_cancel(f->aio);
	if (f->reading)
		nng_aio_cancel(f->rdaio);
	pthread_cond_signal(&f->web->cv);
}

/* Queues n bytes on f; a feed that would hold more than its limit unsent
 * (a page that stopped reading) is dropped, its write cancelled. */
static void
feed_queue(struct feed *f, const char *s, size_t n)
{
	if (f->dead)
		return;
	if (f->out_len - f->off + f->pend_len + n > f->limit) {
		feed_drop(f);
		return;
	}
	if (f->pend_len + n > f->pend_cap) {
		size_t cap = f->pend_cap ? f->pend_cap : 4096;
		while (cap < f->pend_len + n)
			cap *= 2;
		char *p = realloc(f->pend, cap);
		if (p == NULL) {
			feed_drop(f);
			return;
		}
		f->pend = p;
		f->pend_cap = cap;
	}
	memcpy(f->pend + f->pend_len, s, n);
	f->pend_len += n;
	feed_start_write(f);
}

static void
feed_written(void *arg)
{
	struct feed *f = arg;
	struct evk_web *w = f->web;
	pthread_mutex_lock(&w->mu);
	f->busy = false;
	if (nng_aio_result(f->aio) != 0) {
		f->dead = true;
		pthread_cond_signal(&w->cv);
	} else {
		f->off += nng_aio_count(f->aio);
		feed_start_write(f);
	}
	pthread_mutex_unlock(&w->mu);
}

/* Posts a read on f's connection (under w->mu). */
static void
feed_start_read(struct feed *f)
{
	nng_iov iov = { .iov_buf = f->in, .iov_len = sizeof(f->in) };
	if (f->dead || nng_aio_set_iov(f->rdaio, 1, &iov) != 0)
		return;
	f->reading = true;
	nng_http_conn_read(f->conn, f->rdaio);
}

/* The page sent something (read on) or went away (the feed ends). */
static void
feed_read(void *arg)
{
	struct feed *f = arg;
	struct evk_web *w = f->web;
	pthread_mutex_lock(&w->mu);
	f->reading = false;
	if (nng_aio_result(f->rdaio) != 0)
		feed_drop(f);
	else
		feed_start_read(f);
	pthread_mutex_unlock(&w->mu);
}

static void
feed_free(struct feed *f)
{
	nng_aio_free(f->aio); /* waits for its callback */
	nng_aio_free(f->rdaio);
	nng_http_conn_close(f->conn);
	free(f->out);
	free(f->pend);
	free(f);
}

/* Sends one SSE event (its data one line: JSON has no raw newline) to
 * every feed. */
static void
broadcast(struct evk_web *w, const char *event, const char *data, size_t len)
{
	for (struct feed *f = w->feeds; f; f = f->next) {
		feed_queue(f, "event: ", 7);
		feed_queue(f, event, strlen(event));
		feed_queue(f, "\ndata: ", 7);
		feed_queue(f, data, len);
		feed_queue(f, "\n\n", 2);
	}
}

/* Pings idle feeds (a closed page is noticed at the next write) and frees
 * the feeds that ended, outside the lock and off nng's threads. */
static void *
reaper(void *arg)
{
	struct evk_web *w = arg;
	struct timespec last, now;
	clock_gettime(CLOCK_MONOTONIC, &last);
	pthread_mutex_lock(&w->mu);
	while (!w->stopping) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&w->cv, &w->mu, &until);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >=
		    EVK_WEB_PING_MS) {
			last = now;
			for (struct feed *f = w->feeds; f; f = f->next)
				if (f->out_len == f->off && f->pend_len == 0)
					feed_queue(f, ": ping\n\n", 8);
		}
		struct feed *gone = NULL, **pp = &w->feeds;
		while (*pp) {
			struct feed *f = *pp;
			if (f->dead && !f->busy && !f->reading) {
				*pp = f->next;
				f->next = gone;
				gone = f;
				w->nfeeds--;
			} else {
				pp = &f->next;
			}
		}
		pthread_mutex_unlock(&w->mu);
		while (gone) {
			struct feed *f = gone;
			gone = f->next;
			feed_free(f);
		}
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* ---- requests ---- */

static void
reply(nng_aio *aio, uint16_t status, const char *type, const char *body, size_t len)
{
	nng_http_res *res;
	if (nng_http_res_alloc(&res) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	if (nng_http_res_set_status(res, status) != 0 ||
	    nng_http_res_set_header(res, "Content-Type", type) != 0 ||
	    nng_http_res_set_header(res, "Cache-Control", "no-store") != 0 ||
	    nng_http_res_set_header(res, "X-Content-Type-Options", "nosniff") != 0 ||
	    (status == 405 && nng_http_res_set_header(res, "Allow", "GET, HEAD") != 0) ||
	    /* The page may fetch nothing but its own feed. */
	    (strncmp(type, "text/html", 9) == 0 &&
	     nng_http_res_set_header(res, "Content-Security-Policy",
				     "default-src 'none'; script-src 'unsafe-inline';"
				     " style-src 'unsafe-inline'; connect-src 'self'") != 0) ||
	    nng_http_res_copy_data(res, body, len) != 0) {
		nng_http_res_free(res);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
}

static void
reply_text(nng_aio *aio, uint16_t status, const char *text)
{
	reply(aio, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* The widgets as `widgetd get` prints them: one JSON line each, all of
 * them or only index only (>= 0). */
static void
reply_widgets(nng_aio *aio, struct evk_web *w, long only)
{
	pthread_mutex_lock(&w->mu);
	size_t n = 0;
	for (size_t i = 0; i < w->nws; i++)
		if (only < 0 || (size_t)only == i)
			n += w->ws[i].len + 1;
	char *body = malloc(n + 1);
	if (body) {
		char *p = body;
		for (size_t i = 0; i < w->nws; i++) {
			if (only >= 0 && (size_t)only != i)
				continue;
			memcpy(p, w->ws[i].json, w->ws[i].len);
			p += w->ws[i].len;
			*p++ = '\n';
		}
	}
	pthread_mutex_unlock(&w->mu);
	if (body == NULL) {
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	reply(aio, 200, only >= 0 ? "application/json" : "application/x-ndjson", body, n);
	free(body);
}

/* Opens a feed on the request's connection: the HTTP head, the bus, the
 * whole current state, then (from evk_web_widget) every change. */
static void
open_feed(nng_aio *aio, struct evk_web *w, nng_http_req *req, nng_http_conn *conn)
{
	struct feed *f = calloc(1, sizeof(*f));
	if (f == NULL || nng_aio_alloc(&f->aio, feed_written, f) != 0 ||
	    nng_aio_alloc(&f->rdaio, feed_read, f) != 0) {
		if (f && f->aio)
			nng_aio_free(f->aio);
		free(f);
		nng_aio_finish(aio, NNG_ENOMEM);
		return;
	}
	pthread_mutex_lock(&w->mu);
	if (w->nfeeds >= EVK_WEB_FEEDS_MAX || w->stopping) {
		pthread_mutex_unlock(&w->mu);
		nng_aio_free(f->aio);
		nng_aio_free(f->rdaio);
		free(f);
		reply_text(aio, 503, "too many open feeds\n");
		return;
	}
	size_t state = 0;
	for (size_t i = 0; i < w->nws; i++)
		state += w->ws[i].len + 1;
	f->web = w;
	f->conn = conn;
	f->limit = state + sizeof(sse_head) + strlen(w->bus) + 64 + EVK_WEB_FEED_QUEUE;
	/* From here the connection is ours (nng 1.5: the request too). */
	nng_http_hijack(conn);
	nng_http_req_free(req);
	feed_queue(f, sse_head, sizeof(sse_head) - 1);
	feed_queue(f, "event: hello\ndata: ", 19);
	feed_queue(f, w->bus, strlen(w->bus));
	feed_queue(f, "\n\nevent: snapshot\ndata: [", 25);
	for (size_t i = 0; i < w->nws; i++) {
		if (i)
			feed_queue(f, ",", 1);
		feed_queue(f, w->ws[i].json, w->ws[i].len);
	}
	feed_queue(f, "]\n\n", 3);
	f->next = w->feeds;
	w->feeds = f;
	w->nfeeds++;
	feed_start_read(f);
	pthread_mutex_unlock(&w->mu);
	nng_aio_set_output(aio, 0, NULL);
	nng_aio_finish(aio, 0);
}

/* A widget id in a path: printable ASCII, no '/', '%' or quote; else the
 * path is a bad one (400). */
static bool
path_id_ok(const char *s, size_t n)
{
	if (n == 0 || n > 1024)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '/' || c == '%' || c == '"' || c == '\\')
			return false;
	}
	return true;
}

static void
handle(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	nng_http_conn *conn = nng_aio_get_input(aio, 2);
	struct evk_web *w = nng_http_handler_get_data(h);
	const char *method = nng_http_req_get_method(req);
	const char *uri = nng_http_req_get_uri(req);
	size_t n = strcspn(uri, "?#");
	bool get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;

	if (n == 0 || uri[0] != '/') {
		reply_text(aio, 400, "bad path\n");
		return;
	}
	bool page = n == 1;
	bool events = n == 7 && memcmp(uri, "/events", 7) == 0;
	bool all = (n == 8 && memcmp(uri, "/widgets", 8) == 0) ||
		   (n == 9 && memcmp(uri, "/widgets/", 9) == 0);
	bool one = n > 9 && memcmp(uri, "/widgets/", 9) == 0;
	bool stat = n == 7 && memcmp(uri, "/status", 7) == 0;
	if (!page && !events && !all && !one && !stat) {
		reply_text(aio, 404, "not found\n");
		return;
	}
	if (!get && !(head && !events)) {
		reply_text(aio, 405, "method not allowed\n");
		return;
	}
	if (page) {
		reply(aio, 200, "text/html; charset=utf-8", evk_web_page_html,
		      strlen(evk_web_page_html));
	} else if (stat) {
		char text[96];
		pthread_mutex_lock(&w->mu);
		int m = snprintf(text, sizeof(text), "{\"feeds\":%d,\"widgets\":%zu}\n", w->nfeeds,
				 w->nws);
		pthread_mutex_unlock(&w->mu);
		reply(aio, 200, "application/json", text, (size_t)m);
	} else if (events) {
		open_feed(aio, w, req, conn);
	} else if (all) {
		reply_widgets(aio, w, -1);
	} else if (!path_id_ok(uri + 9, n - 9)) {
		reply_text(aio, 400, "bad widget id\n");
	} else {
		pthread_mutex_lock(&w->mu);
		long i = widget_index(w, uri + 9, n - 9);
		pthread_mutex_unlock(&w->mu);
		if (i < 0)
			reply_text(aio, 404, "no such widget\n");
		else
			reply_widgets(aio, w, i);
	}
}

/* ---- the fold's side ---- */

int
evk_web_widget(struct evk_web *w, const char *id, const char *json, size_t len)
{
	char gone[2 * 1024 + 16];
	size_t idlen = strlen(id);
	pthread_mutex_lock(&w->mu);
	long i = widget_index(w, id, idlen);
	if (json == NULL) {
		if (i >= 0) {
			free(w->ws[i].id);
			free(w->ws[i].json);
			memmove(&w->ws[i], &w->ws[i + 1], (w->nws - (size_t)i - 1) * sizeof(w->ws[0]));
			w->nws--;
			if (idlen < 1024) {
				/* {"id":"ID"}, the id's quotes, backslashes and
				 * control bytes escaped as JSON wants. */
				size_t m = (size_t)snprintf(gone, sizeof(gone), "{\"id\":\"");
				for (const char *c = id; *c; c++) {
					if (*c == '"' || *c == '\\')
						gone[m++] = '\\';
					gone[m++] = (unsigned char)*c < ' ' ? ' ' : *c;
				}
				memcpy(gone + m, "\"}", 2);
				broadcast(w, "widget_removed", gone, m + 2);
			}
		}
		pthread_mutex_unlock(&w->mu);
		return EVK_OK;
	}
	char *copy = malloc(len + 1);
	if (copy == NULL) {
		pthread_mutex_unlock(&w->mu);
		return EVK_ENOMEM;
	}
	memcpy(copy, json, len);
	copy[len] = '\0';
	if (i < 0) {
		if (w->nws == w->capws) {
			size_t cap = w->capws ? w->capws * 2 : 64;
			struct widget *p = realloc(w->ws, cap * sizeof(*p));
			if (p == NULL) {
				free(copy);
				pthread_mutex_unlock(&w->mu);
				return EVK_ENOMEM;
			}
			w->ws = p;
			w->capws = cap;
		}
		char *idc = strdup(id);
		if (idc == NULL) {
			free(copy);
			pthread_mutex_unlock(&w->mu);
			return EVK_ENOMEM;
		}
		i = (long)w->nws++;
		w->ws[i].id = idc;
		w->ws[i].json = NULL;
	}
	free(w->ws[i].json);
	w->ws[i].json = copy;
	w->ws[i].len = len;
	broadcast(w, "widget_updated", copy, len);
	pthread_mutex_unlock(&w->mu);
	return EVK_OK;
}

int
evk_web_feeds(struct evk_web *w)
{
	pthread_mutex_lock(&w->mu);
	int n = w->nfeeds;
	pthread_mutex_unlock(&w->mu);
	return n;
}

const char *
evk_web_url(const struct evk_web *w)
{
	return w->url;
}

bool
evk_web_clear(const struct evk_web *w)
{
	return w->clear;
}

/* Splits addr into host and port; a lone port is on loopback. */
static int
parse_addr(const char *addr, char *host, size_t hostsz, long *port, const char **why)
{
	const char *colon = strrchr(addr, ':');
	const char *ps = colon ? colon + 1 : addr;
	char *end;
	*why = "want PORT, HOST:PORT or [IPV6]:PORT";
	if (colon == NULL) {
		snprintf(host, hostsz, "127.0.0.1");
	} else {
		size_t hl = (size_t)(colon - addr);
		if (hl == 0 || hl >= hostsz)
			return EVK_EINVAL;
		if (addr[0] == '[') {
			if (hl < 3 || addr[hl - 1] != ']')
				return EVK_EINVAL;
		} else if (memchr(addr, ':', hl)) {
			return EVK_EINVAL; /* a bare IPv6 address needs brackets */
		}
		memcpy(host, addr, hl);
		host[hl] = '\0';
	}
	*port = strtol(ps, &end, 10);
	if (*ps == '\0' || *end || *port < 0 || *port > 65535)
		return EVK_EINVAL;
	for (const char *c = host; *c; c++)
		if (*c <= ' ' || *c == '/' || *c == '@' || *c == '?' || *c == '#')
			return EVK_EINVAL;
	return EVK_OK;
}

static bool
loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	       strncmp(host, "127.", 4) == 0;
}

/* The bus as the page shows it, in out (n bytes): without a user or
 * password, on one line. */
static void
shown_bus(char *out, size_t n, const char *bus)
{
	const char *scheme = strstr(bus, "://"), *rest = scheme ? scheme + 3 : bus;
	const char *at = strchr(rest, '@'), *slash = strchr(rest, '/');
	if (at && (slash == NULL || at < slash))
		snprintf(out, n, "%.*s%s", (int)(rest - bus), bus, at + 1);
	else
		snprintf(out, n, "%s", bus);
	for (char *c = out; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
}

int
evk_web_open(struct evk_web **wp, const char *addr, bool insecure, const char *bus,
	     const char **why)
{
	char host[256], text[400];
	long port;
	nng_url *url = NULL;
	int rv;

	nng_tls_config *tls = NULL;

	*wp = NULL;
	if ((rv = parse_addr(addr, host, sizeof(host), &port, why)) != EVK_OK)
		return rv;
	/* With this process's certificate and key the page is HTTPS. */
	if ((rv = evk_tls_web_config(&tls, why)) != 0) {
		if (*why == NULL)
			*why = nng_strerror(rv);
		return rv == NNG_ENOMEM ? EVK_ENOMEM : EVK_EINVAL;
	}
	if (tls == NULL && !loopback(host) && !insecure) {
		*why = "not a loopback address: give the page a certificate (--tls-cert, --tls-key)"
		       " or add --insecure to serve it in the clear";
		return EVK_EPERM;
	}
	const char *scheme_web = tls ? "https" : "http";
	struct evk_web *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		if (tls)
			nng_tls_config_free(tls);
		return EVK_ENOMEM;
	}
	w->clear = tls == NULL && !loopback(host);
	shown_bus(w->bus, sizeof(w->bus), bus);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	snprintf(text, sizeof(text), "%s://%s:%ld", scheme_web, host, port);
	*why = "cannot serve there";
	if ((rv = nng_url_parse(&url, text)) != 0 ||
	    (rv = nng_http_server_hold(&w->server, url)) != 0 ||
	    (tls && (rv = nng_http_server_set_tls(w->server, tls)) != 0) ||
	    (rv = nng_http_handler_alloc(&w->handler, "/", handle)) != 0 ||
	    (rv = nng_http_handler_set_tree(w->handler)) != 0 ||
	    (rv = nng_http_handler_set_method(w->handler, NULL)) != 0 ||
	    (rv = nng_http_handler_set_data(w->handler, w, NULL)) != 0 ||
	    (rv = nng_http_server_add_handler(w->server, w->handler)) != 0 ||
	    ((w->handler = NULL), (rv = nng_http_server_start(w->server))) != 0) {
		*why = nng_strerror(rv);
		if (tls)
			nng_tls_config_free(tls);
		if (url)
			nng_url_free(url);
		if (w->handler)
			nng_http_handler_free(w->handler);
		if (w->server)
			nng_http_server_release(w->server);
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return rv == NNG_ENOMEM ? EVK_ENOMEM : EVK_EIO;
	}
	nng_url_free(url);
	if (tls)
		nng_tls_config_free(tls); /* the server holds its own reference */
	nng_sockaddr sa;
	if (port == 0 && nng_http_server_get_addr(w->server, &sa) == 0 &&
	    (sa.s_family == NNG_AF_INET || sa.s_family == NNG_AF_INET6))
		port = ntohs(sa.s_family == NNG_AF_INET ? sa.s_in.sa_port : sa.s_in6.sa_port);
	snprintf(w->url, sizeof(w->url), "%s://%s:%ld/", scheme_web, host, port);
	if (pthread_create(&w->reaper, NULL, reaper, w) != 0) {
		evk_web_close(w);
		return EVK_ENOMEM;
	}
	w->reaper_started = true;
	*wp = w;
	return EVK_OK;
}

void
evk_web_close(struct evk_web *w)
{
	if (w == NULL)
		return;
	nng_http_server_stop(w->server);
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	for (struct feed *f = w->feeds; f; f = f->next)
		feed_drop(f);
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->reaper_started)
		pthread_join(w->reaper, NULL);
	/* Every write was cancelled: each feed's callback has run or is
	 * about to; nng_aio_free waits for it. */
	while (w->feeds) {
		struct feed *f = w->feeds;
		w->feeds = f->next;
		feed_free(f);
	}
	nng_http_server_release(w->server);
	for (size_t i = 0; i < w->nws; i++) {
		free(w->ws[i].id);
		free(w->ws[i].json);
	}
	free(w->ws);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
