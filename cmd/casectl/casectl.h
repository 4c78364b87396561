/* casectl — the enforcement `case` resource in SQLite or PostgreSQL
 * (lib/db*.c); every committed action is announced on the bus through an
 * outbox written in the same transaction (Ash resource +
 * Ash.Notifier.PubSub). What the files of
 * cmd/casectl/ share: main.c (the command table, options), store.c (the
 * database, roles, printing a case), write.c (input cases, agencies,
 * offenders), notes.c (notifications through lib/outbox.c), ingest.c
 * (create and ingest from JSON lines), commands.c (the other commands). */
#ifndef CASECTL_H
#define CASECTL_H

#include "evkit/buf.h"
#include "evkit/bus.h"
#include "evkit/cases.h"
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/gate.h"
#include "evkit/lines.h"
#include "evkit/outbox.h"
#include "evkit/store.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define FIELD_MAX (1024 * 1024)       /* bytes in one text field */
#define LINE_MAX_DEFAULT (4u << 20)   /* one input line */
#define INGEST_TXN 5000               /* cases per ingest transaction (--batch) */
#define INGEST_TXN_MAX 1000000
#define INGEST_IDLE_MS 50             /* input paused this long: commit what came */
#define PROGRESS_AFTER_MS 1000        /* an input this long gets a progress line */
#define PROGRESS_EVERY_MS 250         /* ... redrawn at most this often */
#define BATCH_BYTES (8u << 20)        /* ingest commits past this much to announce */
#define AGENCY_CACHE 64               /* agencies a process remembers */
#define OFFENDER_CACHE 16384          /* offenders a process remembers */
#define OFFENDER_CACHE_BYTES (64u << 20) /* ... and at most this many bytes of them */
#define INSERT_RUN 64                 /* new cases an ingest inserts in one statement */
#define INSERT_SHAPES 7               /* ... as pieces of 64, 32, ..., 1 rows */

enum role { ROLE_NONE, ROLE_VIEWER, ROLE_EDITOR, ROLE_ADMIN };

struct ctx {
	struct evk_db db;
	const char *db_path; /* --db, or NULL for the default */
	char url[EVK_URL_MAX];
	const char *bus;
	const char *admin, *new_role; /* init --admin, user add --role */
	char actor[256];
	enum role role;
	size_t max_line;
	int input_fd;           /* create and ingest read JSON lines here */
	const char *input_name; /* ... named so in messages */
	long txn_cases; /* cases per ingest transaction (--batch) */
	int interrupted; /* the signal that stopped reading the input, or 0 */
	bool strict;
	/* list/watch filters */
	const char *agency, *offender, *since, *sort;
	char since_ts[EVK_TS_LEN + 1]; /* --since in the stored form */
	long limit;
	long long refetch_ms;
	long count; /* watch: exit after this many results */
	/* scratch for the case being written; created: its timestamp, which
	 * the case_view of a created case points at */
	struct evk_buf out, key;
	char created[EVK_TS_LEN + 1];
	struct agency {
		int64_t id;
		char *code, *name;
	} agencies[AGENCY_CACHE];
	size_t n_agencies;
	struct offender {
		int64_t id;
		struct evk_buf name, postcode; /* NUL-terminated */
		bool has_postcode;
	} off;
	/* Offenders met, by match key (glibc's hsearch_r): never renamed or
	 * deleted once stored, so a process looks each up once. Emptied
	 * when full. */
	struct hsearch_data *off_tab; /* NULL until the first */
	struct known_offender **known;
	size_t n_known, known_bytes;
	/* the statements of an ingest's runs (run.c), each of 64, 32, ..., 1
	 * rows (NULL until made) */
	char *run_sql[3][INSERT_SHAPES];
	/* a write transaction is open, with its notifications in batch */
	bool in_txn;
	struct evk_outbox *outbox;
	struct evk_buf batch;
	long batch_n;
	long long damaged_row; /* the outbox row that cannot be sent, or 0 */
};

/* ---- input cases ---- */

struct input {
	const char *agency, *reference, *off_name, *off_postcode, *date, *result;
	bool has_fine, has_costs;
	double fine, costs;
	bool has_offender, has_date, has_result;
};


/* Texts kept in an arena (an evk_buf that may move): each by its offset,
 * NO_TEXT for none (NULL). keep_text dies when out of memory. */
#define NO_TEXT ((size_t)-1)
size_t keep_text(struct evk_buf *arena, const char *s);
static inline const char *
kept_text(const struct evk_buf *arena, size_t at)
{
	return at == NO_TEXT ? NULL : arena->p + at;
}

/* The cases of an ingest waiting to be inserted together (run.c's
 * run_add, run_flush): what the insert binds and what their notifications
 * say. Their agency and offender texts are kept in the run's arena; the
 * input's own texts must stay until the flush. */
struct run {
	struct run_case {
		struct input in;
		int64_t agency_id, off; /* off: 0 until run_flush finds it */
		size_t agency_code, agency_name, off_key, off_name, off_postcode;
		char id[37];
		char now[EVK_TS_LEN + 1];
		bool created, off_found; /* inserted; its offender found stored */
	} c[INSERT_RUN];
	size_t n;
	struct evk_buf arena;
};

/* store.c */
void now_ts(char out[EVK_TS_LEN + 1]);
void new_uuid(char out[37]);
void db_die(struct ctx *c, const char *what);
void db_check(struct ctx *c, int rv);
struct evk_q *prepare(struct ctx *c, const char *sql);
void done(struct evk_q *q);
void bind_text(struct ctx *c, struct evk_q *q, int i, const char *s);
void bind_int(struct ctx *c, struct evk_q *q, int i, int64_t v);
void bind_double(struct ctx *c, struct evk_q *q, int i, double v);
bool step_row(struct ctx *c, struct evk_q *q, const char *what);
void step_done(struct ctx *c, struct evk_q *q, const char *what);
void exec(struct ctx *c, const char *sql);
void begin(struct ctx *c);
void open_db(struct ctx *c, bool create);
enum role role_of(struct ctx *c, const char *name);
const char *role_name(enum role r);
void require(struct ctx *c, enum role need, const char *action);
bool case_with(struct ctx *c, const char *id, void (*fn)(struct ctx *, const struct evk_case *, void *), void *arg);
bool case_with_ref(struct ctx *c, int64_t agency, const char *ref, void (*fn)(struct ctx *, const struct evk_case *, void *), void *arg);
void put_text(const struct evk_buf *b);
void print_case_to(struct ctx *c, const struct evk_case *v);
void print_case(struct ctx *c, const struct evk_case *v, void *arg);
void print_json(cJSON *j);

/* notes.c */
void notify(struct ctx *c, const char *action, const char *past, const struct evk_case *v);
int expand_note(int format, const char *note, size_t len, struct evk_buf scratch[2], int (*emit)(void *, const char *, size_t), void *emit_arg);
int print_line(void *arg, const char *line, size_t len, uint64_t seq);
void outbox_check(struct ctx *c, int rv);
long outbox_flush(struct ctx *c, bool quiet);
void commit(struct ctx *c, bool more);
bool announce(struct ctx *c, const char *id, const char *action, const char *past, bool keep);
bool announce_synced(struct ctx *c, int64_t agency, const char *ref);

/* write.c */
void offenders_forget(struct ctx *c);
/* Whether JSON text holds the escape \u0000: cJSON would cut the string
 * there, storing "A" for "A\u0000B", so such input is refused. */
bool nul_escape(const char *text, size_t len);
#define NUL_ESCAPE_WHY "a string holds a NUL character (\\u0000)"
/* Whether s is a date (YYYY-MM-DD) or an RFC 3339 UTC time; its first
 * moment in the stored form (microseconds, Z) is left in ts when given. */
bool valid_date(const char *s, char *ts);
bool parse_input(const cJSON *o, struct input *in, bool partial, char *why, size_t wl);
const struct agency *agency_get(struct ctx *c, const char *code);
void find_case(struct ctx *c, int64_t agency, const char *ref, char id[37]);
void apply_fields(struct ctx *c, const char *id, const struct input *in, bool sync);
void sync_fields(struct ctx *c, int64_t agency, const struct input *in, int64_t off, const char *at);
bool create_case(struct ctx *c, const struct agency *a, const struct input *in, char id[37], struct evk_case *v);
void case_from_input(struct evk_case *v, const struct input *in, const char *now);
/* Offenders: match_key makes the key of a name and postcode into out;
 * offender_known and offender_remember look c->key up in, and add c->off
 * to, the offenders this process met; offender_from_row reads a row (id,
 * name, postcode) into c->off; offender_get finds or makes the offender
 * of an input. bind_fields binds a case's fields from ?at on. */
void match_key(const char *name, const char *postcode, struct evk_buf *out);
bool offender_known(struct ctx *c);
void offender_remember(struct ctx *c);
void offender_from_row(struct ctx *c, struct evk_q *q);
int64_t offender_get(struct ctx *c, const struct input *in);
void bind_fields(struct ctx *c, struct evk_q *q, int at, const struct input *in, int64_t off);

/* run.c */
void run_add(struct ctx *c, struct run *r, const struct input *in);
void run_flush(struct ctx *c, struct run *r, long *created, long *synced);
void run_sql_free(struct ctx *c);

/* ingest.c */
int cmd_create(struct ctx *c, int argc, char **argv);
int cmd_ingest(struct ctx *c, int argc, char **argv);

/* commands.c */
int cmd_get(struct ctx *c, int argc, char **argv);
int cmd_list(struct ctx *c, int argc, char **argv);
int cmd_update(struct ctx *c, int argc, char **argv);
int cmd_sync(struct ctx *c, int argc, char **argv);
int cmd_destroy(struct ctx *c, int argc, char **argv);
int cmd_outbox(struct ctx *c, int argc, char **argv);
int cmd_user(struct ctx *c, int argc, char **argv);
int cmd_init(struct ctx *c, int argc, char **argv);
int cmd_watch(struct ctx *c, int argc, char **argv);

/* main.c */
void usage(FILE *out, int status) __attribute__((noreturn));
void casectl_args(int argc, char **argv, int min, int max, const char *missing);

extern volatile sig_atomic_t stopping;

#endif
