/* evbusd's parts: the command line (main.c), the connections and who may
 * make them (conn.c), the log in SQLite (store.c), the batch of requests
 * and its fan-out, the hot path (hub.c), refills (replay.c), --status
 * (status.c) and the watchdog that restarts a wedged hub (watch.c). */
#ifndef EVBUSD_H
#define EVBUSD_H

#include "evkit/bus.h"
#include "evkit/store.h"
#include "evkit/watchdog.h"

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define BATCH_MSGS 64                 /* requests handled per commit */
#define BATCH_BYTES (8 * 1024 * 1024) /* bytes handled per commit */
#define REPLAY_BYTES (1024 * 1024)    /* bytes per replay reply */

/* Seqs reserved at a time in the store's seq file (FILE.seq): every seq
 * the hub assigns is at most the number it holds, so a store that comes
 * back empty (truncated, deleted), or that lost the tail it had not
 * synced when the machine went down, goes on above it: no seq is given
 * twice. The file also names the boot of the machine it was written in:
 * after a crash of the hub alone the log lost nothing (the kernel held
 * it), and numbering goes on from the log's head; a clean stop lowers the
 * number to the head, once the log is synced. */
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
	bool sync_full; /* --synchronous full: fsync the WAL at each commit */
	uint32_t row_events; /* events stored per row at most: retain/16, 1..64 */
	const char *store;
	char seqfile[4096]; /* FILE.seq, "" with --memory */
	uint64_t reserved;  /* the number seqfile holds */
	char boot[64];      /* the tag seqfile holds: this boot's id, or "synced" */
	bool boot_known;    /* false: boot says "unknown" (no boot id to read) */
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
	bool insecure; /* --insecure: plain tcp:// beyond loopback */
	char **argv;   /* the hub's own, for the watchdog's re-exec */
};

/* Set by SIGTERM and SIGINT: hub_run ends at its next turn. */
extern volatile sig_atomic_t stopping;

/* conn.c: connections counted and refused, listening. */
uint64_t pipes_count(struct pipes *set);
bool is_refused(struct hub *h, nng_pipe p);
void refuse(struct hub *h, nng_pipe p);
void hub_check_exposure(const struct hub *h);
void hub_listen(struct hub *h);

/* store.c: the log. */
void hub_open_store(struct hub *h, const char *path);
void hub_refuse_second(struct hub *h);
void hub_private_files(void);
void hub_private_store(const char *store);
int hub_trim(struct hub *h);
char store_failure(struct hub *h, char *text, size_t n);
void hub_close_store(struct hub *h);

/* hub.c: publishing, the batch and the main loop. */
int hub_publish(struct hub *h, nng_msg *req, nng_msg **fan, uint32_t *count,
		char *why, size_t whylen);
void reply_text(struct hub *h, nng_msg *req, char kind, char class, const char *text);
void hub_run(struct hub *h);

/* replay.c: a refill request. */
void hub_replay(struct hub *h, nng_msg *req);

/* status.c: a status request. */
void hub_status(struct hub *h, nng_msg *req);

/* watch.c: the watchdog. */
bool hub_was_restarted(void);
struct evk_watchdog *hub_watch(struct hub *h);

#endif
