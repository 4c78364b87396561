/* evbusd — the hub: accepts events, numbers them, keeps a log, fans them
 * out, refills what subscribers missed. */
#include "evkit/bus.h"
#include "evkit/daemon.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/opts.h"
#include "evkit/limits.h"
#include "evkit/proto.h"
#include "evkit/store.h"
#include "evkit/tls.h"
#include "evkit/utf8.h"
#include "evkit/watchdog.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <nng/transport/ipc/ipc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

#define BATCH_MSGS 64                 /* requests handled per commit */
#define BATCH_BYTES (8 * 1024 * 1024) /* bytes handled per commit */
#define REPLAY_BYTES (1024 * 1024)    /* bytes per replay reply */

/* Seqs reserved at a time in the store's seq file (FILE.seq): every seq
 * the hub assigns is below the number it holds, so a store that comes
 * back empty (truncated, deleted) goes on above it, never from 1. */
#define SEQ_RESERVE 1000000

#define REFUSED_MAX 256 /* connections remembered as refused (the oldest go) */
#define GONE_MAX 256    /* connections remembered as closed */

/* The connections of one socket that nng reported added. A connection
 * refused in its handshake (a wrong SP header or protocol) is reported
 * removed without having been added: it must not lower the count. */
struct pipes {
	nng_mtx *mtx;
	uint32_t *ids; /* sorted */
	size_t n, cap;
};

struct hub {
	sqlite3 *db;
	sqlite3_stmt *insert, *select, *trim, *oldest_q, *set_head;
	sqlite3_stmt *producer_get, *producer_set; /* exactly-once publishing */
	uint32_t dropped; /* lines of the last 'Q' frame stored before */
	uint64_t duplicates; /* such lines so far */
	nng_socket rep, pub;
	uint64_t head;   /* last seq assigned and committed */
	uint64_t oldest; /* oldest retained seq; head + 1 when empty */
	uint64_t retain;
	uint32_t row_events; /* events stored per row at most: retain/16, 1..64 */
	const char *store;
	char seqfile[4096]; /* FILE.seq, "" with --memory */
	uint64_t reserved;  /* the number seqfile holds */
	char url[EVK_URL_MAX], fanout[EVK_URL_MAX];
	time_t started;
	/* figures for --status */
	uint64_t events_in, frames_in, events_out, rejected_frames;
	uint64_t replay_requests, replayed_events;
	struct pipes subscribers, clients; /* from nng's pipe callbacks */
	struct evk_checkpointer *ckpt; /* NULL with --memory */
	/* Connections a publish frame of which was refused: their later
	 * frames are refused too (they may be on their way already), so the
	 * hub never stores frame k+1 of a publisher without frame k. A
	 * connection leaves the set when it closes. */
	nng_mtx *refused_mtx;
	uint32_t refused[REFUSED_MAX]; /* oldest first */
	int n_refused;
	/* The last connections that closed: one may close before the hub
	 * gets to its refused frame, and must not be remembered then. */
	uint32_t gone[GONE_MAX];
	unsigned n_gone;
	/* Turns of the main loop, for the watchdog (see hub_watch). */
	uint64_t loops;
	struct evk_watchdog *watchdog;
};

static volatile sig_atomic_t stopping;

static void
usage(FILE *out, int status)
{
	fprintf(out,
		"usage: evbusd [--bus URL] [--store FILE | --memory] [--retain N]\n"
		"              [--daemon] [--pidfile FILE] [--log FILE] [-q|-v] [--insecure]\n"
		"              [--tls-cert FILE --tls-key FILE --tls-ca FILE]\n"
		"       evbusd --status [--bus URL]\n"
		"\n"
		"The evkit hub: numbers events, keeps them in a SQLite log, fans\n"
		"them out to subscribers and refills what a slow one missed.\n"
		"\n"
		"  --bus URL       listen here (default $EVBUS_URL, else a private ipc path)\n"
		"  --store FILE    the event log (default $XDG_STATE_HOME/evkit/bus.db)\n"
		"  --memory        keep the log in memory only (lost when the hub stops)\n"
		"  --retain N      events the log keeps (default %d)\n"
		"  --daemon        go to the background once accepting connections\n"
		"  --log FILE      append messages to FILE, timestamped (with --daemon and\n"
		"                  no --log, messages go to syslog)\n"
		"  -q, --quiet     no warnings; errors only\n"
		"  -v, --verbose   also say what the hub does (listening, stopping)\n"
		"  --pidfile FILE  write the hub's pid to FILE\n"
		"  --status        print the running hub's figures as JSON\n"
		"  --insecure      allow a plain tcp:// address beyond loopback\n"
		EVK_TLS_USAGE
		"  --help, --version\n",
		EVK_RETAIN_DEFAULT);
	exit(status);
}

/* Keeps set's ids up to date. Without memory for a new id, that
 * connection is not counted. */
static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct pipes *set = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	size_t lo = 0, hi;

	nng_mtx_lock(set->mtx);
	for (hi = set->n; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		if (set->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	bool known = lo < set->n && set->ids[lo] == id;
	if (ev == NNG_PIPE_EV_ADD_POST && !known) {
		if (set->n == set->cap) {
			size_t cap = set->cap ? set->cap * 2 : 64;
			uint32_t *ids = realloc(set->ids, cap * sizeof(*ids));
			if (ids == NULL)
				goto out;
			set->ids = ids;
			set->cap = cap;
		}
		memmove(set->ids + lo + 1, set->ids + lo, (set->n - lo) * sizeof(*set->ids));
		set->ids[lo] = id;
		set->n++;
	} else if (ev == NNG_PIPE_EV_REM_POST && known) {
		memmove(set->ids + lo, set->ids + lo + 1, (set->n - lo - 1) * sizeof(*set->ids));
		set->n--;
	}
out:
	nng_mtx_unlock(set->mtx);
}

static uint64_t
pipes_count(struct pipes *set)
{
	nng_mtx_lock(set->mtx);
	size_t n = set->n;
	nng_mtx_unlock(set->mtx);
	return n;
}

static bool
is_refused(struct hub *h, nng_pipe p)
{
	bool found = false;
	nng_mtx_lock(h->refused_mtx);
	for (int i = 0; i < h->n_refused && !found; i++)
		found = h->refused[i] == (uint32_t)nng_pipe_id(p);
	nng_mtx_unlock(h->refused_mtx);
	return found;
}

/* Remembers that a frame of p was refused, unless p already closed. When
 * the set is full the oldest entry goes: in practice a connection long
 * gone; were it alive and still sending, its next frame could be stored
 * past the refused one (it takes 256 refused live connections). */
static void
refuse(struct hub *h, nng_pipe p)
{
	uint32_t id = (uint32_t)nng_pipe_id(p);
	bool known = false;
	nng_mtx_lock(h->refused_mtx);
	for (int i = 0; i < h->n_refused && !known; i++)
		known = h->refused[i] == id;
	for (unsigned i = 0; i < GONE_MAX && !known; i++) /* ids are never 0 */
		known = h->gone[i] == id;
	if (!known) {
		if (h->n_refused == REFUSED_MAX)
			memmove(h->refused, h->refused + 1,
				sizeof(h->refused[0]) * (REFUSED_MAX - 1));
		else
			h->n_refused++;
		h->refused[h->n_refused - 1] = id;
	}
	nng_mtx_unlock(h->refused_mtx);
}

/* A client's connection went: counted, and forgotten as refused. */
static void
client_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct hub *h = arg;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	pipe_event(p, ev, &h->clients);
	if (ev != NNG_PIPE_EV_REM_POST)
		return;
	nng_mtx_lock(h->refused_mtx);
	for (int i = 0; i < h->n_refused; i++)
		if (h->refused[i] == id) {
			memmove(h->refused + i, h->refused + i + 1,
				sizeof(h->refused[0]) * (size_t)(h->n_refused - i - 1));
			h->n_refused--;
			break;
		}
	h->gone[h->n_gone++ % GONE_MAX] = id;
	nng_mtx_unlock(h->refused_mtx);
}

/* Refuses a store that is read-only or damaged (74), and keeps seqs
 * from starting over when the store came back empty: its seq file says
 * how far numbering may have gone. */
static void
hub_check_store(struct hub *h, const char *path)
{
	char why[512];
	uint64_t floor;
	int rv;

	/* Damage was looked for before the migrations (hub_open_store); now
	 * whether it takes a write. */
	if (evk_store_begin(h->db) != EVK_OK ||
	    evk_store_exec(h->db, "UPDATE meta SET value = value WHERE key = 'head'") != EVK_OK ||
	    evk_store_exec(h->db, "COMMIT") != EVK_OK) {
		snprintf(why, sizeof(why), "%s", sqlite3_errmsg(h->db));
		evk_store_exec(h->db, "ROLLBACK");
		evk_die(EVK_EX_IOERR, "store '%s' cannot be used: it cannot be written: %s", path, why);
	}
	if ((size_t)snprintf(h->seqfile, sizeof(h->seqfile), "%s.seq", path) >=
	    sizeof(h->seqfile))
		evk_die(EVK_EX_USAGE, "store path too long: '%s'", path);
	if ((rv = evk_seqfile_read(h->seqfile, &floor)) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot read '%s' (how far seqs went): %s", h->seqfile,
			rv == EVK_EINVAL ? "it holds no number" : strerror(errno));
	if (h->head == 0 && floor > 0) {
		evk_warn("store '%s' is empty, but seqs up to %llu may have been used "
			 "(says '%s'): numbering goes on after them (remove both files "
			 "to start a new log from 1)",
			 path, (unsigned long long)floor, h->seqfile);
		h->head = floor;
		h->oldest = floor + 1;
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(h->db, "UPDATE meta SET value = ? WHERE key = 'head'",
				       -1, &st, NULL) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 1, (sqlite3_int64)floor) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_DONE)
			evk_die(EVK_EX_IOERR, "cannot write store '%s': %s", path,
				sqlite3_errmsg(h->db));
		sqlite3_finalize(st);
	}
	/* A log that never held an event has no seq file: it may be empty. */
	h->reserved = floor;
	if (h->head > 0 && h->reserved <= h->head) {
		if (evk_seqfile_write(h->seqfile, h->head + SEQ_RESERVE) != EVK_OK)
			evk_die(EVK_EX_IOERR, "cannot write '%s': %s", h->seqfile, strerror(errno));
		h->reserved = h->head + SEQ_RESERVE;
	}
}

static void
hub_open_store(struct hub *h, const char *path)
{
	static const char *const migrations[] = {
		"CREATE TABLE events (seq INTEGER PRIMARY KEY, line BLOB NOT NULL);"
		"CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
		"INSERT INTO meta VALUES ('head', 0);",
		/* 2: a row holds events first..last (consecutive, at most
		 * row_events) as the lines with their seq that were fanned
		 * out ('\n' after each): one insert for many events. */
		"CREATE TABLE frames (first INTEGER PRIMARY KEY, last INTEGER NOT NULL,"
		" lines BLOB NOT NULL);"
		"INSERT INTO frames (first, last, lines)"
		" SELECT seq, seq, CAST(line || char(10) AS BLOB) FROM events ORDER BY seq;"
		"DROP TABLE events;",
		/* 3: per producer ('Q' frames), the highest sequence stored,
		 * written in the transaction that stores its events. */
		"CREATE TABLE producers (id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;",
	};
	const char *why;
	sqlite3_stmt *st;

	struct stat st_file;
	if (evk_store_open(path, &h->db, &why) != EVK_OK)
		evk_die(path && stat(path, &st_file) == 0 ? EVK_EX_IOERR : EVK_EX_UNAVAILABLE,
			"cannot open store '%s': %s", path ? path : ":memory:", why);
	char bad[512];
	if (path && evk_store_check(h->db, NULL, bad, sizeof(bad)) != EVK_OK)
		evk_die(EVK_EX_IOERR, "store '%s' cannot be used: %s", path, bad);
	if (evk_store_migrate(h->db, migrations, 3) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot set up store '%s': %s",
			path ? path : ":memory:", sqlite3_errmsg(h->db));
	if (sqlite3_prepare_v2(h->db,
			       "SELECT max((SELECT value FROM meta WHERE key='head'),"
			       " coalesce((SELECT last FROM frames ORDER BY first DESC LIMIT 1), 0)),"
			       " coalesce((SELECT min(first) FROM frames), 0)",
			       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		evk_die(EVK_EX_IOERR, "cannot read store: %s", sqlite3_errmsg(h->db));
	h->head = (uint64_t)sqlite3_column_int64(st, 0);
	h->oldest = sqlite3_column_int64(st, 1) ? (uint64_t)sqlite3_column_int64(st, 1)
						: h->head + 1;
	sqlite3_finalize(st);
	if (path)
		hub_check_store(h, path);
	/* The row holding seq ?1 (the latest that starts at or before it). */
#define FROM_FRAME "(SELECT coalesce(max(first), 0) FROM frames WHERE first <= ?1)"
	if (sqlite3_prepare_v3(h->db, "INSERT INTO frames (first, last, lines) VALUES (?, ?, ?)",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->insert, NULL) ||
	    sqlite3_prepare_v3(h->db,
			       "SELECT first, lines FROM frames WHERE first >= " FROM_FRAME
			       " ORDER BY first",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->select, NULL) ||
	    sqlite3_prepare_v3(h->db, "DELETE FROM frames WHERE first < " FROM_FRAME, -1,
			       SQLITE_PREPARE_PERSISTENT, &h->trim, NULL) ||
	    sqlite3_prepare_v3(h->db, "SELECT min(first) FROM frames", -1,
			       SQLITE_PREPARE_PERSISTENT, &h->oldest_q, NULL) ||
	    sqlite3_prepare_v3(h->db, "UPDATE meta SET value = ? WHERE key = 'head'",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->set_head, NULL) ||
	    sqlite3_prepare_v3(h->db, "SELECT seq FROM producers WHERE id = ?", -1,
			       SQLITE_PREPARE_PERSISTENT, &h->producer_get, NULL) ||
	    sqlite3_prepare_v3(h->db,
			       "INSERT INTO producers (id, seq) VALUES (?1, ?2)"
			       " ON CONFLICT (id) DO UPDATE SET seq = ?2",
			       -1, SQLITE_PREPARE_PERSISTENT, &h->producer_set, NULL))
		evk_die(EVK_EX_IOERR, "cannot prepare store: %s", sqlite3_errmsg(h->db));
}

/* Refuses to start beside a hub that already answers on our address or
 * owns our store.  Asking the hub itself (a full request) also spares it
 * nng's own liveness probe, a bare connect-and-close that wedges the ipc
 * poller of nng 1.5.2.  The store lock stays held (fd kept open) until
 * exit: two hubs numbering into one log would reuse seqs. */
static void
hub_refuse_second(struct hub *h)
{
	char *json = NULL;

	if (evk_bus_status(h->url, &json) == EVK_OK) {
		free(json);
		evk_die(EVK_EX_UNAVAILABLE,
			"another evbusd is already running at '%s'", h->url);
	}
	if (h->store == NULL)
		return;
	char lock[4096];
	if (snprintf(lock, sizeof(lock), "%s.lock", h->store) >= (int)sizeof(lock))
		evk_die(EVK_EX_USAGE, "store path too long: '%s'", h->store);
	if (evk_store_make_parents(h->store) != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open store '%s': %s", h->store,
			"cannot create its directory");
	int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		evk_die(EVK_EX_UNAVAILABLE, "cannot open store '%s': %s", h->store,
			strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		evk_die(EVK_EX_UNAVAILABLE,
			errno == EWOULDBLOCK ? "store '%s' is in use by another evbusd"
					     : "cannot lock store '%s'",
			h->store);
	/* fd stays open: the lock lives as long as this process. */
}

/* ---- who may connect: tls+tcp:// requires a client certificate signed
 * by the hub's CA; a plain tcp:// listener beyond loopback is refused
 * unless --insecure (anyone who reaches it could publish and read). */

static bool insecure; /* --insecure */

/* True when every address host (of a tcp:// url) stands for is loopback. */
static bool
loopback_only(const char *url)
{
	char host[256];
	const char *hp = strstr(url, "://") + 3, *colon = strrchr(hp, ':');
	if (colon == NULL || (size_t)(colon - hp) >= sizeof(host))
		return false;
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	if (host[0] == '[' && colon - hp > 2) {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		return false; /* every interface */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0)
		return false;
	bool loop = ai != NULL;
	for (struct addrinfo *a = ai; a && loop; a = a->ai_next) {
		if (a->ai_family == AF_INET)
			loop = (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127;
		else if (a->ai_family == AF_INET6)
			loop = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
		else
			loop = false;
	}
	freeaddrinfo(ai);
	return loop;
}

/* Refuses a plain tcp:// url beyond loopback unless --insecure; called
 * before anything listens. */
static void
hub_check_exposure(const char *url)
{
	if (strncmp(url, "tcp://", 6) != 0 || loopback_only(url))
		return;
	if (!insecure)
		evk_die(EVK_EX_USAGE,
			"refusing to listen on '%s' without TLS: anyone who can reach it could"
			" publish and read every event; use tls+tcp:// with --tls-cert,"
			" --tls-key and --tls-ca, a loopback address, or --insecure",
			url);
	evk_warn("warning: listening on '%s' without TLS or authentication (--insecure)",
		 url);
}

static void
hub_secure_listener(nng_listener l, const char *url)
{
	const char *why = NULL;
	int rv;

	if (!evk_tls_url(url))
		return;
	if ((rv = evk_tls_listener(l, &why)) != 0)
		evk_die(rv == NNG_ENOENT || rv == NNG_EPERM ? EVK_EX_IOERR : EVK_EX_USAGE,
			"cannot listen on '%s': %s", url, why ? why : nng_strerror(rv));
}

static void
hub_listen(struct hub *h)
{
	nng_listener l;
	int rv;

	if ((rv = nng_mtx_alloc(&h->clients.mtx)) != 0 ||
	    (rv = nng_mtx_alloc(&h->subscribers.mtx)) != 0 ||
	    (rv = nng_rep0_open_raw(&h->rep)) != 0 || (rv = nng_pub0_open(&h->pub)) != 0)
		evk_die(EVK_EX_FAIL, "cannot open sockets: %s", nng_strerror(rv));
	if ((rv = nng_socket_set_size(h->rep, NNG_OPT_RECVMAXSZ, EVK_FRAME_MAX)) != 0 ||
	    (rv = nng_socket_set_int(h->pub, NNG_OPT_SENDBUF, EVK_SUB_QUEUE_FRAMES)) != 0 ||
	    (rv = nng_socket_set_int(h->rep, NNG_OPT_RECVBUF, BATCH_MSGS)) != 0 ||
	    (rv = nng_pipe_notify(h->pub, NNG_PIPE_EV_ADD_POST, pipe_event,
				  &h->subscribers)) != 0 ||
	    (rv = nng_pipe_notify(h->pub, NNG_PIPE_EV_REM_POST, pipe_event,
				  &h->subscribers)) != 0 ||
	    (rv = nng_mtx_alloc(&h->refused_mtx)) != 0 ||
	    (rv = nng_pipe_notify(h->rep, NNG_PIPE_EV_ADD_POST, client_event, h)) != 0 ||
	    (rv = nng_pipe_notify(h->rep, NNG_PIPE_EV_REM_POST, client_event, h)) != 0)
		evk_die(EVK_EX_FAIL, "cannot set up sockets: %s", nng_strerror(rv));

	const char *urls[2] = { h->url, h->fanout };
	nng_socket socks[2] = { h->rep, h->pub };
	for (int i = 0; i < 2; i++) {
		if ((rv = nng_listener_create(&l, socks[i], urls[i])) != 0)
			evk_die(EVK_EX_USAGE, "cannot listen on '%s': %s", urls[i],
				nng_strerror(rv));
		if (strncmp(urls[i], "ipc://", 6) == 0)
			nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
		hub_secure_listener(l, urls[i]);
		if ((rv = nng_listener_start(l, 0)) != 0)
			evk_die(EVK_EX_UNAVAILABLE, "cannot listen on '%s': %s%s",
				urls[i], nng_strerror(rv),
				rv == NNG_EADDRINUSE ? " (is another evbusd running?)" : "");
	}
}

/* Checks that a publish frame holds only canonical events without seq
 * ('\n' after each; see evk_event_check), and sets *count. The hub trusts
 * no client: what it stores, subscribers must be able to read. On
 * failure writes the reason, naming the line, to why[0..n). */
static bool
frame_valid(const char *b, size_t n, uint32_t *count, char *why, size_t whylen)
{
	uint32_t c = 0;
	char reason[128];

	if (n == 0 || b[n - 1] != '\n') {
		snprintf(why, whylen, "malformed frame: not '\\n'-terminated lines");
		return false;
	}
	for (const char *p = b, *end = b + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)(nl - p);
		c++;
		if (evk_event_check(p, len, reason, sizeof(reason)) != EVK_OK) {
			snprintf(why, whylen, "malformed event on line %u of the frame: %.120s",
				 (unsigned)c, reason);
			return false;
		}
		p = nl + 1;
	}
	*count = c;
	return true;
}

/* For a 'Q' frame of count lines: checks its producer id and sequences
 * (strictly increasing), and sets *skip to the lines stored before (those
 * at most the highest sequence stored for the producer: a prefix). */
static int
producer_skip(struct hub *h, const struct evk_publish_once *q, uint32_t count,
	      uint32_t *skip, char *why, size_t whylen)
{
	if (!evk_producer_valid(q->id, q->idlen)) {
		snprintf(why, whylen, "malformed frame: bad producer id");
		return EVK_EINVAL;
	}
	if (q->count != count) {
		snprintf(why, whylen, "malformed frame: %u sequences for %u lines",
			 (unsigned)q->count, (unsigned)count);
		return EVK_EINVAL;
	}
	for (uint32_t i = 1; i < count; i++)
		if (evk_get_u64(q->pseqs + 8 * i) <= evk_get_u64(q->pseqs + 8 * (i - 1))) {
			snprintf(why, whylen, "malformed frame: producer sequences not increasing");
			return EVK_EINVAL;
		}
	uint64_t high = 0;
	int rc = sqlite3_bind_text(h->producer_get, 1, q->id, (int)q->idlen, SQLITE_STATIC);
	if (rc == SQLITE_OK && (rc = sqlite3_step(h->producer_get)) == SQLITE_ROW) {
		high = (uint64_t)sqlite3_column_int64(h->producer_get, 0);
		rc = SQLITE_DONE;
	}
	sqlite3_reset(h->producer_get);
	if (rc != SQLITE_DONE)
		return EVK_EIO;
	*skip = 0;
	while (*skip < count && evk_get_u64(q->pseqs + 8 * *skip) <= high)
		(*skip)++;
	return EVK_OK;
}

/* Records the highest sequence of q as stored. */
static int
producer_stored(struct hub *h, const struct evk_publish_once *q)
{
	uint64_t last = evk_get_u64(q->pseqs + 8 * (q->count - 1));
	int rc = sqlite3_bind_text(h->producer_set, 1, q->id, (int)q->idlen, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(h->producer_set, 2, (sqlite3_int64)last);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(h->producer_set);
	sqlite3_reset(h->producer_set);
	return rc == SQLITE_DONE ? EVK_OK : EVK_EIO;
}

/* True when req is a publish frame ('P' or 'Q'). */
static bool
is_publish(nng_msg *req)
{
	const char *lines;
	size_t len;
	struct evk_publish_once q;
	return evk_publish_get(nng_msg_body(req), nng_msg_len(req), &lines, &len) ||
	       evk_publish_once_get(nng_msg_body(req), nng_msg_len(req), &q);
}

/* Numbers and stores one publish frame, building its fan-out message
 * (*fan NULL when a 'Q' frame held only lines stored before: h->dropped
 * says how many of its lines were). Called inside the batch's
 * transaction. */
static int
hub_publish(struct hub *h, nng_msg *req, nng_msg **fan, uint32_t *count,
	    char *why, size_t whylen)
{
	const char *b;
	size_t n;
	nng_msg *m;
	struct evk_publish_once q = { 0 };
	bool once = false;
	uint32_t skip = 0;
	int rv;

	h->dropped = 0;
	*fan = NULL;
	if (evk_publish_once_get(nng_msg_body(req), nng_msg_len(req), &q)) {
		once = true;
		b = q.lines;
		n = q.len;
	} else if (!evk_publish_get(nng_msg_body(req), nng_msg_len(req), &b, &n)) {
		snprintf(why, whylen, "malformed frame");
		return EVK_EINVAL;
	}
	if (!frame_valid(b, n, count, why, whylen))
		return EVK_EINVAL;
	if (once) {
		if ((rv = producer_skip(h, &q, *count, &skip, why, whylen)) != EVK_OK)
			return rv;
		for (uint32_t i = 0; i < skip; i++) {
			const char *nl = memchr(b, '\n', n);
			n -= (size_t)(nl + 1 - b);
			b = nl + 1;
		}
		h->dropped = skip;
		*count -= skip;
		if (*count == 0)
			return EVK_OK;
		if ((rv = producer_stored(h, &q)) != EVK_OK)
			return rv;
	}
	if (nng_msg_alloc(&m, EVK_EVENTS_HDR + n + (size_t)*count * 28) != 0)
		return EVK_ENOMEM;
	unsigned char *out = nng_msg_body(m), *w = out + EVK_EVENTS_HDR;
	unsigned char *row = w;          /* the lines of the row being filled */
	uint64_t seq = h->head, row_first = seq + 1;
	for (const char *p = b, *end = b + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)(nl - p);
		memcpy(w, "{\"seq\":", 7);
		w += 7;
		w += sprintf((char *)w, "%llu,", (unsigned long long)++seq);
		memcpy(w, p + 1, len - 1);
		w += len - 1;
		*w++ = '\n';
		p = nl + 1;
		/* The lines as fanned out are the log, up to row_events a row
		 * (so trimming whole rows stays within retain's slack). */
		if (seq - row_first + 1 < h->row_events && p < end)
			continue;
		int rc = sqlite3_bind_int64(h->insert, 1, (sqlite3_int64)row_first);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(h->insert, 2, (sqlite3_int64)seq);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_blob(h->insert, 3, row, (int)(w - row), SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(h->insert);
		sqlite3_reset(h->insert);
		if (rc != SQLITE_DONE) {
			nng_msg_free(m);
			return EVK_EIO;
		}
		row = w;
		row_first = seq + 1;
	}
	evk_events_hdr_put(out, &(struct evk_events_hdr){
		.first = h->head + 1, .count = *count, .head = seq, .oldest = h->oldest });
	nng_msg_chop(m, nng_msg_len(m) - (size_t)(w - out));
	h->head = seq;
	*fan = m;
	return EVK_OK;
}

/* Deletes events beyond the retention bound, with some slack so that the
 * delete runs once per many commits. */
static int
hub_trim(struct hub *h)
{
	uint64_t slack = h->retain / 16;
	if (h->head - h->oldest + 1 <= h->retain + slack)
		return EVK_OK;
	uint64_t keep_from = h->head - h->retain + 1;
	/* Whole rows go: the one holding keep_from stays. */
	int rc = sqlite3_bind_int64(h->trim, 1, (sqlite3_int64)keep_from);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(h->trim);
	sqlite3_reset(h->trim);
	if (rc != SQLITE_DONE)
		return EVK_EIO;
	rc = sqlite3_step(h->oldest_q);
	if (rc == SQLITE_ROW && sqlite3_column_type(h->oldest_q, 0) == SQLITE_INTEGER)
		h->oldest = (uint64_t)sqlite3_column_int64(h->oldest_q, 0);
	sqlite3_reset(h->oldest_q);
	return rc == SQLITE_ROW ? EVK_OK : EVK_EIO;
}

/* Turns req into a reply of kind (with a class byte when not 0) and an
 * optional text body, keeping the routing header, and sends it. */
static void
reply_text(struct hub *h, nng_msg *req, char kind, char class, const char *text)
{
	nng_msg_clear(req);
	if (nng_msg_append(req, &kind, 1) != 0 ||
	    (class && nng_msg_append(req, &class, 1) != 0) ||
	    (text && nng_msg_append(req, text, strlen(text)) != 0) ||
	    nng_sendmsg(h->rep, req, 0) != 0)
		nng_msg_free(req);
}

static void
hub_replay(struct hub *h, nng_msg *req)
{
	const void *b = nng_msg_body(req);
	unsigned char hdr[EVK_EVENTS_HDR];
	uint64_t from, first = 0;
	uint32_t max, count = 0;

	if (!evk_replay_get(b, nng_msg_len(req), &from, &max)) {
		reply_text(h, req, EVK_MSG_ERROR, 0, "bad replay request");
		return;
	}
	if (max > EVK_REFILL_EVENTS)
		max = EVK_REFILL_EVENTS;
	h->replay_requests++;
	nng_msg_clear(req);
	/* One allocation up front: appending line by line to a message that
	 * grows as it goes copies it over and over (nng 1.5). */
	if (nng_msg_reserve(req, sizeof(hdr) + REPLAY_BYTES + 64 * 1024) != 0 ||
	    nng_msg_append(req, hdr, sizeof(hdr)) != 0)
		goto fail;
	if (max > 0 && from <= h->head) {
		size_t bytes = 0;
		if (from < h->oldest)
			from = h->oldest;
		int rc = sqlite3_bind_int64(h->select, 1, (sqlite3_int64)from);
		while (rc == SQLITE_OK && count < max && bytes < REPLAY_BYTES &&
		       (rc = sqlite3_step(h->select)) == SQLITE_ROW) {
			rc = SQLITE_OK;
			const char *p = sqlite3_column_blob(h->select, 1);
			const char *end = p + sqlite3_column_bytes(h->select, 1);
			/* The row's lines are seqs first, first + 1, ... */
			uint64_t seq = (uint64_t)sqlite3_column_int64(h->select, 0);
			for (; p < end && count < max && bytes < REPLAY_BYTES; seq++) {
				const char *nl = memchr(p, '\n', (size_t)(end - p));
				if (nl == NULL) {
					rc = SQLITE_CORRUPT;
					break;
				}
				size_t len = (size_t)(nl - p) + 1;
				if (seq >= from) {
					if (nng_msg_append(req, p, len) != 0) {
						sqlite3_reset(h->select);
						goto fail;
					}
					if (count == 0)
						first = seq;
					bytes += len;
					count++;
				}
				p += len;
			}
		}
		sqlite3_reset(h->select);
		/* A read error must not pass for a stretch the log lacks: the
		 * subscriber would report a gap. What was read is still good. */
		if (rc != SQLITE_OK && rc != SQLITE_DONE && count == 0)
			goto fail;
	}
	evk_events_hdr_put(nng_msg_body(req), &(struct evk_events_hdr){
		.first = first, .count = count, .head = h->head, .oldest = h->oldest });
	h->replayed_events += count;
	if (nng_sendmsg(h->rep, req, 0) != 0)
		nng_msg_free(req);
	return;
fail:
	evk_warn("cannot read the log: %s", sqlite3_errmsg(h->db));
	reply_text(h, req, EVK_MSG_FAILURE, EVK_FAIL_IO, "cannot read the hub's log (see the hub's messages)");
}

/* "armed" (restarts the hub if it stops answering), "waiting" (no probe
 * has succeeded yet) or "off". */
static const char *
hub_watchdog_state(const struct hub *h)
{
	return h->watchdog == NULL ? "off" : evk_watchdog_armed(h->watchdog) ? "armed" : "waiting";
}

static void
hub_status(struct hub *h, nng_msg *req)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o && cJSON_AddStringToObject(o, "version", EVK_VERSION) &&
	    cJSON_AddStringToObject(o, "bus", h->url) &&
	    cJSON_AddStringToObject(o, "store", h->store ? h->store : ":memory:") &&
	    cJSON_AddNumberToObject(o, "pid", (double)getpid()) &&
	    cJSON_AddNumberToObject(o, "uptime_s", (double)(time(NULL) - h->started)) &&
	    cJSON_AddNumberToObject(o, "head_seq", (double)h->head) &&
	    cJSON_AddNumberToObject(o, "oldest_seq", (double)h->oldest) &&
	    cJSON_AddNumberToObject(o, "retain", (double)h->retain) &&
	    cJSON_AddNumberToObject(o, "subscribers", (double)pipes_count(&h->subscribers)) &&
	    cJSON_AddNumberToObject(o, "clients", (double)pipes_count(&h->clients)) &&
	    cJSON_AddNumberToObject(o, "events_in", (double)h->events_in) &&
	    cJSON_AddNumberToObject(o, "frames_in", (double)h->frames_in) &&
	    cJSON_AddNumberToObject(o, "events_out", (double)h->events_out) &&
	    cJSON_AddNumberToObject(o, "rejected_frames", (double)h->rejected_frames) &&
	    cJSON_AddNumberToObject(o, "refill_requests", (double)h->replay_requests) &&
	    cJSON_AddNumberToObject(o, "refilled_events", (double)h->replayed_events) &&
	    cJSON_AddNumberToObject(o, "duplicates_dropped", (double)h->duplicates) &&
	    cJSON_AddNumberToObject(o, "checkpoint_failures",
				    (double)evk_checkpointer_failures(h->ckpt, NULL, 0)) &&
	    cJSON_AddStringToObject(o, "watchdog", hub_watchdog_state(h)))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	reply_text(h, req, text ? EVK_MSG_STATUS : EVK_MSG_FAILURE,
		   text ? 0 : EVK_FAIL_TEMP, text ? text : "out of memory");
	cJSON_free(text);
}

static void
hub_heartbeat(struct hub *h)
{
	nng_msg *m;
	unsigned char b[EVK_HEARTBEAT_LEN];

	evk_heartbeat_put(b, h->head);
	if (nng_msg_alloc(&m, 0) != 0)
		return;
	if (nng_msg_append(m, b, sizeof(b)) != 0 || nng_sendmsg(h->pub, m, 0) != 0)
		nng_msg_free(m);
}

/* Says why the store refused a write, in text[0..n), and whether that is
 * temporary (a full disk or a busy lock: EVK_FAIL_TEMP) or a fault of the
 * store (EVK_FAIL_IO). */
static char
store_failure(struct hub *h, char *text, size_t n)
{
	int rc = sqlite3_extended_errcode(h->db), sys = sqlite3_system_errno(h->db);
	bool full = (rc & 0xff) == SQLITE_FULL || sys == ENOSPC || sys == EFBIG ||
		    sys == EDQUOT;
	bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;

	snprintf(text, n, "cannot store events in '%s': %s%s",
		 h->store ? h->store : ":memory:",
		 full ? "no space left (disk full or file size limit)"
		      : sqlite3_errmsg(h->db),
		 (rc & 0xff) == SQLITE_READONLY ? " (the store is read-only)" : "");
	return full || busy ? EVK_FAIL_TEMP : EVK_FAIL_IO;
}

/* Handles one batch of requests: all publishes in one transaction, then
 * fan-out and acks (only after the commit), then replays and status. */
static void
hub_batch(struct hub *h, nng_msg **reqs, int n)
{
	nng_msg *fan[BATCH_MSGS] = { 0 };
	uint32_t counts[BATCH_MSGS] = { 0 }, dropped[BATCH_MSGS] = { 0 };
	int errs[BATCH_MSGS] = { 0 };
	char whys[BATCH_MSGS][200];
	char failure[256] = "", fail_class = EVK_FAIL_IO;
	uint64_t head0 = h->head, oldest0 = h->oldest;
	bool any = false, ok = true;

	for (int i = 0; i < n; i++) {
		if (is_publish(reqs[i]))
			any = true;
	}
	if (any) {
		ok = evk_store_exec(h->db, "BEGIN") == EVK_OK;
		for (int i = 0; ok && i < n; i++) {
			if (!is_publish(reqs[i]))
				continue;
			if (is_refused(h, nng_msg_get_pipe(reqs[i]))) {
				errs[i] = EVK_ECLOSED;
				continue;
			}
			errs[i] = hub_publish(h, reqs[i], &fan[i], &counts[i], whys[i],
					      sizeof(whys[i]));
			dropped[i] = h->dropped;
			if (errs[i] == EVK_EIO || errs[i] == EVK_ENOMEM)
				ok = false;
			else if (errs[i] != EVK_OK) /* its next frame may be in this batch */
				refuse(h, nng_msg_get_pipe(reqs[i]));
		}
		if (ok && h->head != head0) {
			ok = sqlite3_bind_int64(h->set_head, 1,
						(sqlite3_int64)h->head) == SQLITE_OK &&
			     sqlite3_step(h->set_head) == SQLITE_DONE;
			sqlite3_reset(h->set_head);
		}
		if (ok)
			ok = hub_trim(h) == EVK_OK;
		int seq_errno = 0;
		if (ok && h->seqfile[0] && h->head >= h->reserved) {
			/* Reserved before the commit that uses the seqs. */
			if (evk_seqfile_write(h->seqfile, h->head + SEQ_RESERVE) == EVK_OK)
				h->reserved = h->head + SEQ_RESERVE;
			else
				ok = false, seq_errno = errno ? errno : EIO;
		}
		if (ok)
			ok = evk_store_exec(h->db, "COMMIT") == EVK_OK;
		if (!ok && seq_errno) {
			snprintf(failure, sizeof(failure), "cannot store events: cannot write '%.160s': %.40s",
				 h->seqfile, strerror(seq_errno));
			fail_class = seq_errno == ENOSPC || seq_errno == EDQUOT || seq_errno == EFBIG
					     ? EVK_FAIL_TEMP : EVK_FAIL_IO;
		}
		if (!ok) {
			if (!seq_errno)
				fail_class = store_failure(h, failure, sizeof(failure));
			evk_warn("%s", failure);
			evk_store_exec(h->db, "ROLLBACK");
			h->head = head0;
			h->oldest = oldest0;
		}
	}
	for (int i = 0; i < n; i++) {
		nng_msg *req = reqs[i];
		char kind = evk_frame_kind(nng_msg_body(req), nng_msg_len(req));

		if (is_publish(req)) {
			if (!ok || errs[i] != EVK_OK) {
				if (fan[i])
					nng_msg_free(fan[i]);
				h->rejected_frames++;
				if (!ok) /* a batch that failed to store: all its frames */
					refuse(h, nng_msg_get_pipe(req));
				if (!ok)
					reply_text(h, req, EVK_MSG_FAILURE, fail_class, failure);
				else
					reply_text(h, req, EVK_MSG_ERROR, 0,
						   errs[i] == EVK_ECLOSED
							   ? "refused: an earlier frame of this"
							     " connection was refused"
						   : errs[i] == EVK_EINVAL ? whys[i]
									   : "out of memory");
				continue;
			}
			h->frames_in++;
			h->events_in += counts[i];
			h->events_out += (uint64_t)counts[i] *
					 pipes_count(&h->subscribers);
			/* Acks first: the publisher waits on them. */
			struct evk_events_hdr fh = { 0 };
			if (fan[i])
				evk_events_hdr_get(nng_msg_body(fan[i]), nng_msg_len(fan[i]), &fh);
			unsigned char ack[EVK_ACK_ONCE_LEN];
			size_t ack_len = EVK_ACK_LEN;
			if (kind == EVK_MSG_PUBLISH_ONCE) {
				evk_ack_once_put(ack, fh.first, counts[i] + dropped[i], dropped[i]);
				ack_len = EVK_ACK_ONCE_LEN;
				h->duplicates += dropped[i];
			} else {
				evk_ack_put(ack, fh.first, counts[i]);
			}
			nng_msg_clear(req);
			if (nng_msg_append(req, ack, ack_len) != 0 ||
			    nng_sendmsg(h->rep, req, 0) != 0)
				nng_msg_free(req);
			if (fan[i] && nng_sendmsg(h->pub, fan[i], 0) != 0)
				nng_msg_free(fan[i]);
		} else if (kind == EVK_MSG_REPLAY) {
			hub_replay(h, req);
		} else if (kind == EVK_MSG_STATUS) {
			hub_status(h, req);
		} else {
			reply_text(h, req, EVK_MSG_ERROR, 0, "unknown request");
		}
	}
}

static void
hub_run(struct hub *h)
{
	nng_msg *reqs[BATCH_MSGS];
	nng_time next_beat = nng_clock() + EVK_HEARTBEAT_MS;

	while (!stopping) {
		__atomic_add_fetch(&h->loops, 1, __ATOMIC_RELAXED);
		nng_time now = nng_clock();
		if (now >= next_beat) {
			hub_heartbeat(h);
			next_beat = now + EVK_HEARTBEAT_MS;
		}
		nng_socket_set_ms(h->rep, NNG_OPT_RECVTIMEO,
				  (nng_duration)(next_beat - now));
		int rv = nng_recvmsg(h->rep, &reqs[0], 0);
		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0) {
			evk_warn("receive failed: %s", nng_strerror(rv));
			break;
		}
		int n = 1;
		size_t bytes = nng_msg_len(reqs[0]);
		while (n < BATCH_MSGS && bytes < BATCH_BYTES &&
		       nng_recvmsg(h->rep, &reqs[n], NNG_FLAG_NONBLOCK) == 0)
			bytes += nng_msg_len(reqs[n++]);
		hub_batch(h, reqs, n);
	}
}

/* ---- private files: the store, its -wal, -shm and .lock, the pidfile
 * and the sockets are 0600, new directories 0700, whatever the umask
 * (events may carry secrets). A store left readable by others (made by
 * an older evbusd) is made private, with a warning. */
static void
hub_private_files(void)
{
	umask(077);
}

static void
hub_private_store(const char *store)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", ".lock", ".seq" };
	char path[4096];
	struct stat st;

	for (size_t i = 0; store && i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (snprintf(path, sizeof(path), "%s%s", store, suffixes[i]) >= (int)sizeof(path) ||
		    stat(path, &st) != 0 || (st.st_mode & 077) == 0 || st.st_uid != geteuid())
			continue;
		if (chmod(path, st.st_mode & 0700) == 0)
			evk_warn("'%s' was readable by others: made it private (0600)", path);
		else
			evk_warn("'%s' is readable by others and cannot be made private: %s",
				 path, strerror(errno));
	}
}

/* ---- the watchdog: a hub that no longer serves restarts itself ----
 *
 * nng 1.5.2 can stop accepting connections for good (see
 * evk_nng_workaround) and has other poller and close bugs. A thread asks
 * the hub for its status every WATCH_EVERY_MS through its own listening
 * address, as a new client; after WATCH_FAILURES failed probes in a row
 * while the main loop kept turning, the hub says so (stderr and syslog)
 * and re-executes itself with the same arguments: same pid, same store
 * and pidfile. Every acknowledged event was committed before its ack, so
 * none is lost; clients in the middle of a request see the connection
 * drop, as with any restart, and reconnect. */
#define WATCH_EVERY_MS 500
#define WATCH_TIMEOUT_MS 1000
#define WATCH_FAILURES 3
#define RESTARTED_ENV "EVBUSD_RESTARTED" /* set across the re-exec */

static char **hub_argv;

static void
hub_wedged(void *arg, const char *url, int why)
{
	(void)arg;
	evk_warn("the hub stopped answering at '%s' (%s): restarting it", url,
		 evk_strerror(why));
	syslog(LOG_WARNING, "hub at '%s' stopped answering (%s): re-executing pid %ld",
	       url, evk_strerror(why), (long)getpid());
	/* The mask survives execv: a signal blocked in this thread would stay
	 * blocked in the new hub, which then could not be stopped. */
	sigset_t none;
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	if (setenv(RESTARTED_ENV, "1", 1) == 0)
		execv("/proc/self/exe", hub_argv);
	evk_warn("cannot restart: %s", strerror(errno));
	syslog(LOG_ERR, "cannot re-execute: %s", strerror(errno));
}

/* True (once) in a hub that its watchdog re-executed. */
static bool
hub_was_restarted(void)
{
	bool restarted = getenv(RESTARTED_ENV) != NULL;
	unsetenv(RESTARTED_ENV);
	if (restarted) {
		evk_warn("restarted by its watchdog");
		syslog(LOG_NOTICE, "restarted by its watchdog, pid %ld", (long)getpid());
	}
	return restarted;
}

static struct evk_watchdog *
hub_watch(struct hub *h)
{
	struct evk_watchdog *w = NULL;
	if (evk_watchdog_start(&w, h->url, &h->loops, WATCH_EVERY_MS, WATCH_TIMEOUT_MS,
			       WATCH_FAILURES, hub_wedged, h) != EVK_OK)
		evk_warn("cannot start the watchdog: the hub will not notice if it stops"
			 " answering");
	return w;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bus", required_argument, NULL, 'b' },
		{ "store", required_argument, NULL, 's' },
		{ "memory", no_argument, NULL, 'm' },
		{ "retain", required_argument, NULL, 'r' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "log", required_argument, NULL, 'L' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "status", no_argument, NULL, 'S' },
		{ "insecure", no_argument, NULL, 'I' },
		EVK_TLS_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct hub h = { .retain = EVK_RETAIN_DEFAULT };
	const char *bus = NULL, *store = NULL, *pidfile = NULL, *logfile = NULL, *why;
	char default_store[4096];
	bool memory = false, daemonize = false, status = false;
	int c;

	evk_set_progname(argv[0]);
	hub_argv = argv;
	evk_nng_workaround();
	openlog("evbusd", LOG_PID, LOG_DAEMON);
	bool restarted = hub_was_restarted();
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hqv", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': bus = optarg; break;
		case 's': store = optarg; break;
		case 'm': memory = true; break;
		case 'r': h.retain = (uint64_t)evk_flag_int("--retain", optarg, 1, INT64_MAX); break;
		case 'd': daemonize = true; break;
		case 'p': pidfile = optarg; break;
		case 'L': logfile = optarg; break;
		case 'q': evk_log_level(EVK_LOG_QUIET); break;
		case 'v': evk_log_level(EVK_LOG_VERBOSE); break;
		case 'S': status = true; break;
		case 'I': insecure = true; break;
		case EVK_OPT_TLS_CERT:
		case EVK_OPT_TLS_KEY:
		case EVK_OPT_TLS_CA: evk_tls_option(c, optarg); break;
		case 'h': usage(stdout, 0); break;
		case 'V': printf("evbusd %s\n", EVK_VERSION); return 0;
		default: evk_flag_die(c, argv, longopts);
		}
	}
	if (optind < argc)
		evk_usage_die("unexpected argument '%s'", argv[optind]);
	if (memory && store)
		evk_usage_die("--store and --memory exclude each other");
	if (store && *store == '\0')
		evk_usage_die("--store wants a file name");
	h.row_events = h.retain / 16 < 1 ? 1 : h.retain / 16 > 64 ? 64 : (uint32_t)(h.retain / 16);
	if (evk_bus_resolve(bus, h.url, sizeof(h.url), &why) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address '%s': %s",
			bus ? bus : getenv("EVBUS_URL") ? getenv("EVBUS_URL") : "(default)", why);
	if (status) {
		char *json;
		int rv = evk_bus_status(h.url, &json);
		if (rv == EVK_EPERM || (rv != EVK_OK && evk_bus_why()))
			evk_die_hub(h.url, rv);
		if (rv != EVK_OK)
			evk_die(evk_err_exit(rv) == EVK_EX_DATAERR ? EVK_EX_UNAVAILABLE
								    : evk_err_exit(rv),
				"no hub at '%s': %s", h.url, evk_strerror(rv));
		printf("%s\n", json);
		free(json);
		return fclose(stdout) == 0 ? 0 : EVK_EX_IOERR;
	}
	if (evk_bus_fanout_url(h.url, h.fanout, sizeof(h.fanout)) != EVK_OK)
		evk_die(EVK_EX_USAGE, "bad bus address '%s'%s", h.url,
			strncmp(h.url, "nats://", 7) == 0
				? ": evbusd listens on ipc:// or tcp://; nats:// is a nats-server's"
				: "");
	if (!memory &&
	    !(store = evk_state_file(store, "bus.db", default_store, sizeof(default_store))))
		evk_usage_die("no --store given and no HOME or XDG_STATE_HOME");
	h.store = memory ? NULL : store;
	hub_check_exposure(h.url);
	/* A hub its watchdog restarted is detached already: its log goes to
	 * the file at once, or on to syslog. */
	if (logfile && evk_daemon_log(logfile, daemonize && !restarted) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot open the log '%s': %s", logfile, strerror(errno));
	if (!logfile && daemonize && restarted)
		evk_log_syslog();
	if (daemonize && !restarted && evk_daemon_start() != EVK_OK)
		evk_die(EVK_EX_FAIL, "cannot go to the background");

	evk_signals_init(&stopping, true);

	h.started = time(NULL);
	hub_private_files();
	hub_refuse_second(&h);
	hub_private_store(h.store);
	hub_open_store(&h, h.store);
	if (h.store && (h.ckpt = evk_checkpointer_start(h.db, h.store, &why)) == NULL)
		evk_warn("checkpoints stay in the writer: %s", why);
	hub_listen(&h);
	if (pidfile && evk_pidfile_write(pidfile) != EVK_OK)
		evk_die(EVK_EX_IOERR, "cannot write pid file '%s'", pidfile);
	evk_daemon_ready(0);
	evk_info("listening on '%s' and '%s'; store %s, retaining %llu events", h.url,
		 h.fanout, h.store ? h.store : "in memory", (unsigned long long)h.retain);
	h.watchdog = hub_watch(&h);
	hub_run(&h);
	evk_info("stopping");
	evk_watchdog_stop(h.watchdog);

	/* Every ack was sent after its commit; give the pipes a moment to
	 * carry the last ones out before closing. */
	nng_msleep(20);
	nng_close(h.rep);
	nng_close(h.pub);
	nng_mtx_free(h.refused_mtx);
	nng_mtx_free(h.clients.mtx);
	nng_mtx_free(h.subscribers.mtx);
	free(h.clients.ids);
	free(h.subscribers.ids);
	sqlite3_finalize(h.insert);
	sqlite3_finalize(h.select);
	sqlite3_finalize(h.trim);
	sqlite3_finalize(h.oldest_q);
	sqlite3_finalize(h.set_head);
	sqlite3_finalize(h.producer_get);
	sqlite3_finalize(h.producer_set);
	char last[256];
	uint64_t failed = evk_checkpointer_failures(h.ckpt, last, sizeof(last));
	if (failed)
		evk_warn("%llu checkpoints failed, the last: %s", (unsigned long long)failed, last);
	if (evk_checkpointer_stop(h.ckpt) != EVK_OK)
		evk_warn("closing the checkpoint connection failed");
	if (sqlite3_close(h.db) != SQLITE_OK)
		evk_warn("closing the store: %s", sqlite3_errmsg(h.db));
	if (pidfile)
		unlink(pidfile);
	return 0;
}
