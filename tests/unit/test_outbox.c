/* The outbox: rows of lines or of the program's notes, each line with a
 * stable sequence number; damage found, never passed on. */
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/outbox.h"
#include "evkit/store.h"

#include "check.h"

#include <string.h>

static char seen[4096];
static uint64_t seqs[16];
static int n_seen;

static int
record(void *arg, const char *line, size_t len, uint64_t seq)
{
	(void)arg;
	if (seen[0])
		strcat(seen, " ");
	strncat(seen, line, len);
	if (n_seen < 16)
		seqs[n_seen] = seq;
	n_seen++;
	return 0;
}

/* Format 7: a note "x" stands for two lines "x1" and "x2". */
static int
twice(int format, const char *note, size_t len, struct evk_buf scratch[2],
      int (*emit)(void *, const char *, size_t), void *arg)
{
	int rv;
	if (format != 7 || len == 0)
		return EVK_EPROTO;
	for (char d = '1'; d <= '2'; d++) {
		evk_buf_reset(&scratch[0]);
		if ((rv = evk_buf_add(&scratch[0], note, len)) != EVK_OK ||
		    (rv = evk_buf_addch(&scratch[0], d)) != EVK_OK ||
		    (rv = emit(arg, scratch[0].p, scratch[0].len)) != EVK_OK)
			return rv;
	}
	return EVK_OK;
}

static void
walk(struct evk_outbox *ob, long long *damaged, int *rv)
{
	seen[0] = '\0';
	n_seen = 0;
	*rv = evk_outbox_each(ob, record, NULL, damaged);
}

int
main(void)
{
	sqlite3 *db;
	const char *why;
	struct evk_outbox *ob;
	long long r1, r2, r3, damaged;
	char id[EVK_OUTBOX_PRODUCER_LEN + 1], id2[EVK_OUTBOX_PRODUCER_LEN + 1];
	int rv;

	struct evk_db store;
	static const struct evk_migration schema[] = { { EVK_OUTBOX_SCHEMA, NULL } };
	(void)why;
	CHECK(evk_db_open(&store, ":memory:", "outbox.db", true, schema, 1) == EVK_OK, "open");
	db = store.sq;
	CHECK(evk_outbox_open(&ob, &store, "ipc:///nonexistent/evkit-test", twice) == EVK_OK, "outbox");

	CHECK(evk_outbox_producer(ob, id) == EVK_OK && strlen(id) == 32 &&
		      strspn(id, "0123456789abcdef") == 32, "producer id '%s'", id);
	/* The producer schema again (a migration run twice) keeps the id. */
	CHECK(evk_store_exec(db, EVK_OUTBOX_PRODUCER_SCHEMA) == EVK_OK, "schema again");
	CHECK(evk_outbox_producer(ob, id2) == EVK_OK && strcmp(id, id2) == 0, "same id");

	CHECK(evk_outbox_record(ob, EVK_OUTBOX_LINES, "a\nb\n", 4, 2, &r1) == EVK_OK, "lines");
	CHECK(evk_outbox_record(ob, 7, "x\ny\n", 4, 4, &r2) == EVK_OK, "notes");
	walk(ob, &damaged, &rv);
	CHECK(rv == EVK_OK && damaged == 0, "walk %d", rv);
	CHECK(strcmp(seen, "a b x1 x2 y1 y2") == 0, "lines in order: '%s'", seen);
	CHECK(n_seen == 6 && seqs[0] == EVK_OUTBOX_SEQ(r1, 0) && seqs[1] == EVK_OUTBOX_SEQ(r1, 1) &&
		      seqs[2] == EVK_OUTBOX_SEQ(r2, 0) && seqs[5] == EVK_OUTBOX_SEQ(r2, 3),
	      "sequence numbers");
	CHECK(seqs[1] < seqs[2], "sequence numbers grow across rows");

	/* Lines the hub acknowledged are not walked again; their numbers
	 * stay. */
	CHECK(evk_store_exec(db, "UPDATE notes SET sent = 3 WHERE format = 7") == EVK_OK, "sent");
	walk(ob, &damaged, &rv);
	CHECK(strcmp(seen, "a b y2") == 0 && seqs[2] == EVK_OUTBOX_SEQ(r2, 3), "resume: '%s'",
	      seen);

	/* Damage: a note without its newline, an unknown format. */
	CHECK(evk_outbox_record(ob, EVK_OUTBOX_LINES, "c\nd", 3, 2, &r3) == EVK_OK, "damaged");
	walk(ob, &damaged, &rv);
	CHECK(rv == EVK_EPROTO && damaged == r3, "damage found: %d %lld", rv, (long long)damaged);
	CHECK(strcmp(seen, "a b y2 c") == 0, "what precedes the damage: '%s'", seen);
	CHECK(evk_store_exec(db, "DELETE FROM notes WHERE id >= 3;"
				 "UPDATE notes SET format = 9 WHERE format = 7") == EVK_OK, "format");
	walk(ob, &damaged, &rv);
	CHECK(rv == EVK_EPROTO && damaged == r2, "unknown format is damage");

	/* No hub: a flush delivers nothing and loses nothing. */
	struct evk_outbox_report rep;
	CHECK(evk_store_exec(db, "DELETE FROM notes WHERE format = 9") == EVK_OK, "clear");
	CHECK(evk_outbox_flush(ob, &rep) == EVK_OK && rep.pending == 2 && rep.unreachable &&
		      rep.damaged == 0, "flush without a hub: %ld", rep.pending);

	evk_outbox_close(ob);
	evk_db_close(&store);
	return check_done("outbox");
}
