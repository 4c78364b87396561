/* The transactional outbox: a program records the notifications of a
 * change in the change's own write transaction; a sender delivers them to
 * the hub in order, each once, resuming after what the hub acknowledged;
 * a damaged row is reported and holds back what follows it.
 *
 * The outbox is table notes of the program's database (EVK_OUTBOX_SCHEMA,
 * applied by one of the program's migrations). A row holds `count` event
 * lines of one transaction, stored in a format:
 *   EVK_OUTBOX_LINES  each note is a ready event line;
 *   any other         each note is the program's own, and its expand
 *                     callback turns it into its event lines when sent.
 * Notes end in a newline (JSON text holds none raw). `sent` counts the
 * row's lines the hub already acknowledged.
 *
 * Every event line has a stable identity for deduplication: the outbox's
 * producer id (32 hex digits, random, kept in table outbox_producer) and
 * its sequence number, (row id << 32) + its index in the row, which only
 * grows and is never reused (AUTOINCREMENT). A line sent again after a
 * crash carries the same pair. */
#ifndef EVKIT_OUTBOX_H
#define EVKIT_OUTBOX_H

#include "evkit/buf.h"

#include <stdbool.h>
#include <stdint.h>

#define EVK_OUTBOX_LINES 2
#define EVK_OUTBOX_PRODUCER_LEN 32
#define EVK_OUTBOX_SEQ(row, i) (((uint64_t)(row) << 32) + (uint64_t)(i))

#define EVK_OUTBOX_SCHEMA                                                          \
	"CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT,"                \
	" count INTEGER NOT NULL, lines BLOB NOT NULL, format INTEGER NOT NULL,"   \
	" sent INTEGER NOT NULL DEFAULT 0);" EVK_OUTBOX_PRODUCER_SCHEMA
/* The same on PostgreSQL (lines in BYTEA, ids from a sequence: they only
 * grow; evk_outbox_record takes a lock that makes them grow in commit
 * order, which the hub's per-producer sequence needs). */
#define EVK_OUTBOX_SCHEMA_PG                                                       \
	"CREATE TABLE notes (id BIGSERIAL PRIMARY KEY,"                            \
	" count BIGINT NOT NULL, lines BYTEA NOT NULL, format INTEGER NOT NULL,"   \
	" sent BIGINT NOT NULL DEFAULT 0);"                                        \
	"CREATE TABLE IF NOT EXISTS outbox_producer (id TEXT NOT NULL);"            \
	"INSERT INTO outbox_producer (id)"                                         \
	" SELECT replace(gen_random_uuid()::text, '-', '')"                        \
	" WHERE NOT EXISTS (SELECT 1 FROM outbox_producer);"
#define EVK_OUTBOX_PRODUCER_SCHEMA                                                 \
	"CREATE TABLE IF NOT EXISTS outbox_producer (id TEXT NOT NULL);"            \
	"INSERT INTO outbox_producer (id) SELECT lower(hex(randomblob(16)))"       \
	" WHERE NOT EXISTS (SELECT 1 FROM outbox_producer);"

/* Called for each event line: the line (no newline) and its sequence
 * number. A non-zero return stops the walk and is returned. */
typedef int (*evk_outbox_line_fn)(void *arg, const char *line, size_t len, uint64_t seq);

/* Turns one note of the program's format (note[0..len), no newline) into
 * its event lines, calling emit(emit_arg, line, len) for each in order and
 * returning emit's first error. scratch[0] and scratch[1] are buffers it
 * may use (a line passed to emit may live in them). EVK_EPROTO: the note
 * is damaged or the format unknown. It may run on the sender's thread at
 * the same time as on the caller's, so it uses only its arguments. */
typedef int (*evk_outbox_expand_fn)(int format, const char *note, size_t len,
				    struct evk_buf scratch[2],
				    int (*emit)(void *, const char *, size_t), void *emit_arg);

struct evk_outbox;
struct evk_db;

/* An outbox on db (which holds EVK_OUTBOX_SCHEMA) delivering to the hub
 * at url (copied); expand may be NULL when every row is EVK_OUTBOX_LINES.
 * db stays the caller's and must outlive the outbox. */
int evk_outbox_open(struct evk_outbox **out, struct evk_db *db, const char *url,
		    evk_outbox_expand_fn expand);
/* Stops delivering as it goes (evk_outbox_live_stop), closes the hub
 * connection and frees ob. NULL is allowed. */
void evk_outbox_close(struct evk_outbox *ob);

/* The outbox's producer id, NUL-terminated. */
int evk_outbox_producer(struct evk_outbox *ob, char id[EVK_OUTBOX_PRODUCER_LEN + 1]);

/* Inside the caller's write transaction: one row of count event lines
 * (notes[0..len), each note ending in a newline, format as above). *row
 * (when given) is its id. */
int evk_outbox_record(struct evk_outbox *ob, int format, const char *notes, size_t len,
		      long count, long long *row);

/* What a delivery left behind. */
struct evk_outbox_report {
	long pending;          /* event lines still in the outbox */
	long long damaged; /* the row that cannot be sent, or 0 */
	bool unreachable;      /* lines waited and the hub did not take them */
	bool busy;             /* PostgreSQL: another process was delivering; lines
				* committed after its round began wait for the next */
};

/* Delivers the outbox, oldest first, each line once: rows go (or their
 * acknowledged part is recorded) in the write transaction that published
 * them, so two processes never send one row. On PostgreSQL, when another
 * process is delivering already, it returns at once with busy set and
 * nothing pending: call it again a little later. A line is sent again only
 * when the hub stored it and could not say so. Runs its own
 * transactions: call it outside one. */
int evk_outbox_flush(struct evk_outbox *ob, struct evk_outbox_report *r);

/* Calls fn on each pending event line, oldest first (not those the hub
 * already acknowledged). EVK_EPROTO with *damaged set at a damaged row;
 * EVK_EIO (evk_outbox_error) when the database failed. */
int evk_outbox_each(struct evk_outbox *ob, evk_outbox_line_fn fn, void *arg,
		    long long *damaged);

/* Delivering as it goes, for a long run of transactions (an ingest): a
 * thread of its own sends each committed row while the caller writes the
 * next one. Each step runs inside the caller's next write transaction, so
 * no other process can flush in between:
 *   record row k; COMMIT; BEGIN; live_send(k); ...changes...;
 *   record row k+1; live_settle (k acknowledged: its row goes); COMMIT ...
 * live_start flushes first and starts only when the outbox is then empty
 * (nothing older overtaken) and the hub answers; whether it did. */
bool evk_outbox_live_start(struct evk_outbox *ob);
/* Hands row (whose notes are *notes of format, the caller's batch) to the sender
 * when it is still the oldest and untouched; else stops delivering as it
 * goes. The buffers are swapped: the caller gets an empty one back. */
int evk_outbox_live_send(struct evk_outbox *ob, long long row, int format,
			 struct evk_buf *notes);
/* Waits for the sender; the part of the row it sent that the hub
 * acknowledged leaves the outbox (or is recorded sent). When the hub
 * went, delivering as it goes stops: the rest waits for a flush. */
int evk_outbox_live_settle(struct evk_outbox *ob);
void evk_outbox_live_stop(struct evk_outbox *ob);
bool evk_outbox_is_live(const struct evk_outbox *ob);

/* The last failure's text ("cannot ...: reason"). */
const char *evk_outbox_error(const struct evk_outbox *ob);

#endif
