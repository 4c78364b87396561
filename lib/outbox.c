/* The transactional outbox (include/evkit/outbox.h): rows of notes
 * recorded with the change, delivered in order, each line once. */
#include "evkit/outbox.h"

#include "evkit/bus.h"
#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/limits.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_CHUNK 4096 /* rows per delivery round */

/* The thread that sends a committed row while the writer goes on; it
 * touches neither the database nor the outbox, only its own copy of the
 * notes, its scratch and the hub connection. */
struct sender {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct evk_pub *pub;
	evk_outbox_expand_fn expand;
	struct evk_buf notes, scratch[2];
	long long row;
	int format;
	bool busy, stop;
	int rv;
	uint64_t acked; /* lines of the last row the hub acknowledged */
};

struct evk_outbox {
	struct evk_db *db;
	char url[EVK_URL_MAX];
	evk_outbox_expand_fn expand;
	struct evk_pub *pub;         /* flush's connection, kept while it works */
	struct evk_buf scratch[2];   /* the caller's thread's */
	struct sender *sender;       /* delivering as it goes, or NULL */
	long long sent_row;      /* the row handed to the sender, or 0 */
	char err[256];
};

/* An outbox row in a delivery round: lines the hub had acknowledged
 * before (sent), lines given to the publisher now, and whether all of
 * the rest were. */
struct round_row {
	long long id;
	long sent, added;
	bool whole;
};

static int
fail(struct evk_outbox *ob, const char *what)
{
	evk_db_fail(ob->db, what);
	snprintf(ob->err, sizeof(ob->err), "%s", evk_db_error(ob->db));
	return EVK_EIO;
}

const char *
evk_outbox_error(const struct evk_outbox *ob)
{
	return ob->err;
}

/* ---- a row's event lines ---- */

/* The line callback of a row walk: lines before skip are counted, not
 * passed on; fn's own error is kept apart from damage. */
struct walk {
	long long row;
	long index, skip;
	evk_outbox_line_fn fn;
	void *arg;
	int fn_rv;
};

static int
walk_line(void *arg, const char *line, size_t len)
{
	struct walk *w = arg;
	long i = w->index++;
	if (i < w->skip)
		return EVK_OK;
	return w->fn_rv = w->fn(w->arg, line, len, EVK_OUTBOX_SEQ(w->row, i));
}

/* Calls fn on each event line of a row, oldest first, skipping the
 * first skip; returns fn's first error. A row whose notes cannot be read
 * is EVK_EPROTO with *damaged set. */
static int
each_line(evk_outbox_expand_fn expand, struct evk_buf scratch[2], long long row,
	  const char *blob, size_t len, int format, long skip, evk_outbox_line_fn fn,
	  void *arg, bool *damaged)
{
	struct walk w = { .row = row, .skip = skip, .fn = fn, .arg = arg };
	*damaged = false;
	if (format != EVK_OUTBOX_LINES && expand == NULL)
		goto bad_row;
	for (const char *p = blob, *end = blob + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		int rv;
		if (nl == NULL)
			goto bad_row;
		if (format == EVK_OUTBOX_LINES)
			rv = walk_line(&w, p, (size_t)(nl - p));
		else
			rv = expand(format, p, (size_t)(nl - p), scratch, walk_line, &w);
		if (rv != EVK_OK && w.fn_rv == EVK_OK && rv == EVK_EPROTO)
			goto bad_row;
		if (rv != EVK_OK)
			return rv;
		p = nl + 1;
	}
	return EVK_OK;
bad_row:
	*damaged = true;
	return EVK_EPROTO;
}

/* ---- opening ---- */

int
evk_outbox_open(struct evk_outbox **out, struct evk_db *db, const char *url,
		evk_outbox_expand_fn expand)
{
	struct evk_outbox *ob = calloc(1, sizeof(*ob));
	*out = NULL;
	if (ob == NULL)
		return EVK_ENOMEM;
	if (strlen(url) >= sizeof(ob->url)) {
		free(ob);
		return EVK_EINVAL;
	}
	ob->db = db;
	strcpy(ob->url, url);
	ob->expand = expand;
	for (int i = 0; i < 2; i++)
		ob->scratch[i] = (struct evk_buf)EVK_BUF_INIT(0);
	*out = ob;
	return EVK_OK;
}

void
evk_outbox_close(struct evk_outbox *ob)
{
	if (ob == NULL)
		return;
	evk_outbox_live_stop(ob);
	evk_pub_close(ob->pub);
	for (int i = 0; i < 2; i++)
		evk_buf_release(&ob->scratch[i]);
	free(ob);
}

int
evk_outbox_producer(struct evk_outbox *ob, char id[EVK_OUTBOX_PRODUCER_LEN + 1])
{
	struct evk_q *q = evk_db_q(ob->db, "SELECT id FROM outbox_producer");
	int rv = EVK_EIO;
	if (q == NULL)
		return fail(ob, "cannot read the outbox's producer id");
	if (evk_q_step(q) == EVK_ROW && evk_q_bytes(q, 0) == EVK_OUTBOX_PRODUCER_LEN) {
		memcpy(id, evk_q_text(q, 0), EVK_OUTBOX_PRODUCER_LEN + 1);
		rv = EVK_OK;
	} else {
		fail(ob, "cannot read the outbox's producer id");
	}
	evk_q_reset(q);
	return rv;
}

int
evk_outbox_record(struct evk_outbox *ob, int format, const char *notes, size_t len, long count,
		  long long *row)
{
	bool pg = evk_db_dialect(ob->db) == EVK_DB_POSTGRES;
	/* PostgreSQL: ids are drawn under a lock held until the commit, so
	 * that they grow in commit order: a flush never sees a row whose
	 * smaller id would commit later (the hub drops a sequence not above
	 * the last it stored). SQLite's write lock does that already. */
	struct evk_q *q = evk_db_q(
		ob->db, pg ? "WITH l AS (SELECT pg_advisory_xact_lock(2121, 1))"
			     " INSERT INTO notes (count, lines, format) SELECT ?, ?, ? FROM l"
			     " RETURNING id"
			   : "INSERT INTO notes (count, lines, format) VALUES (?, ?, ?)");
	if (q == NULL)
		return fail(ob, "cannot write the outbox");
	evk_q_bind_int64(q, 1, count);
	evk_q_bind_int64(q, 3, format);
	if (row == NULL) {
		/* Nothing to read back: sent with the next statement or the
		 * commit (PostgreSQL). */
		if (evk_q_bind_blob(q, 2, notes, len) != EVK_OK || evk_q_send(q) != EVK_OK)
			return fail(ob, "cannot write the outbox");
		return EVK_OK;
	}
	int rc = evk_q_bind_blob(q, 2, notes, len) == EVK_OK ? evk_q_step(q) : EVK_EIO;
	int rv = rc == EVK_ROW || rc == EVK_DONE ? EVK_OK : fail(ob, "cannot write the outbox");
	if (rv == EVK_OK && row)
		*row = pg ? (rc == EVK_ROW ? evk_q_int64(q, 0) : 0)
			  : sqlite3_last_insert_rowid(ob->db->sq);
	evk_q_reset(q);
	return rv;
}

/* ---- delivery ---- */

/* Runs q (bound, no rows) and resets it. */
static int
run(struct evk_outbox *ob, struct evk_q *q, const char *what)
{
	return evk_q_done(q) == EVK_OK ? EVK_OK : fail(ob, what);
}

/* After a delivery round: the hub acknowledged the first `acked` lines
 * given to the publisher, in order. Rows acknowledged whole leave; a row
 * acknowledged in part keeps its count of lines sent, so the next round
 * resumes after them instead of sending them again. */
static int
settle_round(struct evk_outbox *ob, const struct round_row *rows, long n, uint64_t acked)
{
	long i = 0;
	struct evk_q *st;
	while (i < n && rows[i].whole && acked >= (uint64_t)rows[i].added)
		acked -= (uint64_t)rows[i++].added;
	if (i > 0) {
		if ((st = evk_db_q(ob->db, "DELETE FROM notes WHERE id <= ?")) == NULL)
			return fail(ob, "cannot clear the outbox");
		evk_q_bind_int64(st, 1, rows[i - 1].id);
		/* Sent with the commit (PostgreSQL). */
		if (evk_q_send(st) != EVK_OK)
			return fail(ob, "cannot clear the outbox");
	}
	if (i < n && acked > 0) {
		if ((st = evk_db_q(ob->db, "UPDATE notes SET sent = ? WHERE id = ?")) == NULL)
			return fail(ob, "cannot update the outbox");
		evk_q_bind_int64(st, 1, rows[i].sent + (long long)acked);
		evk_q_bind_int64(st, 2, rows[i].id);
		return run(ob, st, "cannot update the outbox");
	}
	return EVK_OK;
}

static int
publish_line(void *pub, const char *line, size_t len, uint64_t seq)
{
	return evk_pub_add_seq(pub, line, len, seq);
}

/* A connection to the hub publishing as the outbox's producer, so the
 * hub stores a line sent again after a crash only once. */
static int
open_pub(struct evk_outbox *ob, struct evk_pub **pub)
{
	char id[EVK_OUTBOX_PRODUCER_LEN + 1];
	int rv = evk_outbox_producer(ob, id);
	if (rv == EVK_OK && (rv = evk_pub_open(pub, ob->url, NULL, NULL)) == EVK_OK &&
	    (rv = evk_pub_set_producer(*pub, id)) != EVK_OK)
		evk_pub_close(*pub);
	if (rv != EVK_OK)
		*pub = NULL;
	return rv;
}

/* publish_line, counting the lines the publisher took. */
struct counting {
	struct evk_pub *pub;
	long added;
};

static int
count_line(void *arg, const char *line, size_t len, uint64_t seq)
{
	struct counting *k = arg;
	int rv = publish_line(k->pub, line, len, seq);
	if (rv == EVK_OK)
		k->added++;
	return rv;
}

/* Whether the hub acknowledged every line of the round's rows (the
 * first acked lines given to the publisher). */
static bool
all_acked(const struct round_row *rows, long n, uint64_t acked)
{
	for (long i = 0; i < n; i++) {
		if (!rows[i].whole || acked < (uint64_t)rows[i].added)
			return false;
		acked -= (uint64_t)rows[i].added;
	}
	return true;
}

/* PostgreSQL: one flusher at a time (SQLite's write lock does it), locked
 * in the round's transaction before its rows are read; *mine is false when
 * another process holds it. */
static int
lock_flusher(struct evk_outbox *ob, bool *mine)
{
	struct evk_q *st = evk_db_q(ob->db, "SELECT CASE WHEN pg_try_advisory_xact_lock(2121, 2)"
					    " THEN 1 ELSE 0 END");
	if (st == NULL || evk_q_step(st) != EVK_ROW) {
		evk_q_reset(st);
		return EVK_EIO;
	}
	*mine = evk_q_int64(st, 0) == 1;
	evk_q_reset(st);
	return EVK_OK;
}

/* One delivery round inside the open transaction: up to OUTBOX_CHUNK
 * rows handed to the publisher, then what the hub acknowledged settled.
 * *more: a full round went well; *damaged: the row that stopped it;
 * *emptied: the round read the last row and every line went. */
static int
flush_round(struct evk_outbox *ob, struct round_row *rows, bool *more, long long *damaged,
	    bool *busy, bool *emptied)
{
	*emptied = false;
	bool pg = evk_db_dialect(ob->db) == EVK_DB_POSTGRES;
	if (pg) {
		bool mine;
		if (lock_flusher(ob, &mine) != EVK_OK)
			return fail(ob, "cannot lock the outbox");
		if (!mine) {
			/* Another process is delivering: its round sends these
			 * rows too (a stopped one holds them back, never stalls
			 * this one). */
			*more = false;
			*busy = true;
			return EVK_OK;
		}
	}
	/* (PostgreSQL reads no more rows than a round takes.) */
	struct evk_q *st =
		evk_db_q(ob->db, pg ? "SELECT id, lines, format, sent FROM notes ORDER BY id LIMIT 4096"
				    : "SELECT id, lines, format, sent FROM notes ORDER BY id");
	uint64_t acked0 = ob->pub ? evk_pub_acked(ob->pub) : 0;
	long n = 0;
	int rc = EVK_DONE, rv = EVK_OK;
	bool ok = true;

	if (st == NULL)
		return fail(ob, "cannot read the outbox");
	while (n < OUTBOX_CHUNK && (rc = evk_q_step(st)) == EVK_ROW) {
		if (ob->pub == NULL && open_pub(ob, &ob->pub) != EVK_OK) {
			ok = false;
			break;
		}
		struct counting k = { ob->pub, 0 };
		struct round_row *r = &rows[n++];
		bool bad;
		r->id = evk_q_int64(st, 0);
		r->sent = (long)evk_q_int64(st, 3);
		const char *blob = evk_q_blob(st, 1);
		size_t len = evk_q_bytes(st, 1);
		int sent = each_line(ob->expand, ob->scratch, r->id, blob, len, evk_q_int(st, 2),
				     r->sent, count_line, &k, &bad);
		r->added = k.added;
		r->whole = sent == EVK_OK;
		if (sent != EVK_OK) {
			/* Damage or the hub's refusal stop the round; what the
			 * hub took is settled all the same. */
			if (bad)
				*damaged = r->id;
			else if (sent == EVK_ENOMEM)
				rv = EVK_ENOMEM;
			ok = false;
			break;
		}
	}
	*more = ok && n == OUTBOX_CHUNK;
	if (ok && n < OUTBOX_CHUNK && rc != EVK_DONE)
		rv = fail(ob, "cannot read the outbox");
	evk_q_reset(st);
	if (rv != EVK_OK)
		return rv;
	if (n == 0 || ob->pub == NULL) {
		*emptied = ok && n == 0;
		*more = false;
		return EVK_OK;
	}
	/* What the hub acknowledged goes, also when a later line could not
	 * be sent. A connection that failed is not used again. */
	if (evk_pub_sync(ob->pub) != EVK_OK || (!ok && !*damaged)) {
		*more = false;
		rv = settle_round(ob, rows, n, evk_pub_acked(ob->pub) - acked0);
		evk_pub_close(ob->pub);
		ob->pub = NULL;
		return rv;
	}
	uint64_t acked = evk_pub_acked(ob->pub) - acked0;
	*emptied = ok && !*more && all_acked(rows, n, acked);
	return settle_round(ob, rows, n, acked);
}

static int
pending(struct evk_outbox *ob, long *n)
{
	struct evk_q *st = evk_db_q(ob->db, "SELECT coalesce(sum(count - sent), 0) FROM notes");
	if (st == NULL)
		return fail(ob, "cannot read the outbox");
	int rv = evk_q_step(st) == EVK_ROW ? EVK_OK : fail(ob, "cannot read the outbox");
	*n = rv == EVK_OK ? (long)evk_q_int64(st, 0) : 0;
	evk_q_reset(st);
	return rv;
}

int
evk_outbox_flush(struct evk_outbox *ob, struct evk_outbox_report *r)
{
	struct round_row *rows = malloc(OUTBOX_CHUNK * sizeof(*rows));
	bool more = true, busy = false, emptied = false;
	int rv = EVK_OK;

	*r = (struct evk_outbox_report){ 0 };
	if (rows == NULL)
		return EVK_ENOMEM;
	while (more && rv == EVK_OK) {
		if (evk_db_begin(ob->db) != EVK_OK) {
			rv = fail(ob, "cannot start a transaction");
			break;
		}
		rv = flush_round(ob, rows, &more, &r->damaged, &busy, &emptied);
		if (rv != EVK_OK)
			evk_db_rollback(ob->db);
		else if (evk_db_commit(ob->db) != EVK_OK)
			rv = fail(ob, "cannot commit the outbox");
	}
	free(rows);
	/* A round that sent the last row leaves none pending (SQLite's
	 * write lock held; on PostgreSQL rows committed since are another
	 * flush's): no query needed. */
	if (rv == EVK_OK && !busy && !emptied)
		rv = pending(ob, &r->pending);
	r->unreachable = rv == EVK_OK && r->pending > 0 && r->damaged == 0;
	r->busy = busy;
	return rv;
}

int
evk_outbox_each(struct evk_outbox *ob, evk_outbox_line_fn fn, void *arg, long long *damaged)
{
	struct evk_q *st =
		evk_db_q(ob->db, "SELECT id, lines, format, sent FROM notes ORDER BY id");
	int rv = EVK_OK, rc = EVK_DONE;
	bool bad = false;

	*damaged = 0;
	if (st == NULL)
		return fail(ob, "cannot read the outbox");
	while (rv == EVK_OK && (rc = evk_q_step(st)) == EVK_ROW) {
		const char *blob = evk_q_blob(st, 1);
		size_t len = evk_q_bytes(st, 1);
		rv = each_line(ob->expand, ob->scratch, evk_q_int64(st, 0), blob, len,
			       evk_q_int(st, 2), (long)evk_q_int64(st, 3), fn, arg, &bad);
		if (bad)
			*damaged = evk_q_int64(st, 0);
	}
	if (rv == EVK_OK && rc != EVK_DONE)
		rv = fail(ob, "cannot read the outbox"); /* not all of it was walked */
	evk_q_reset(st);
	return rv;
}

/* ---- delivering as it goes ---- */

static void *
sender_run(void *arg)
{
	struct sender *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->busy && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->mu);
		bool bad;
		uint64_t acked0 = evk_pub_acked(s->pub);
		int rv = each_line(s->expand, s->scratch, s->row, s->notes.p, s->notes.len,
				   s->format, 0, publish_line, s->pub, &bad);
		int synced = evk_pub_sync(s->pub); /* also counts what did go */
		if (rv == EVK_OK)
			rv = synced;
		pthread_mutex_lock(&s->mu);
		s->rv = rv;
		s->acked = evk_pub_acked(s->pub) - acked0;
		s->busy = false;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Waits until the sender is idle; the outcome of its last row, and how
 * many of its lines the hub acknowledged. */
static int
sender_wait(struct sender *s, uint64_t *acked)
{
	pthread_mutex_lock(&s->mu);
	while (s->busy)
		pthread_cond_wait(&s->cv, &s->mu);
	int rv = s->rv;
	*acked = s->acked;
	pthread_mutex_unlock(&s->mu);
	return rv;
}

static void
sender_free(struct sender *s)
{
	evk_pub_close(s->pub);
	evk_buf_release(&s->notes);
	for (int i = 0; i < 2; i++)
		evk_buf_release(&s->scratch[i]);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void
evk_outbox_live_stop(struct evk_outbox *ob)
{
	struct sender *s = ob->sender;

	ob->sent_row = 0;
	if (s == NULL)
		return;
	ob->sender = NULL;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL); /* after its row, if one was under way */
	sender_free(s);
}

bool
evk_outbox_is_live(const struct evk_outbox *ob)
{
	return ob->sender != NULL;
}

bool
evk_outbox_live_start(struct evk_outbox *ob)
{
	struct evk_outbox_report r;
	struct sender *s;

	if (evk_outbox_flush(ob, &r) != EVK_OK || r.pending != 0 ||
	    (s = calloc(1, sizeof(*s))) == NULL)
		return false;
	s->expand = ob->expand;
	s->notes = (struct evk_buf)EVK_BUF_INIT(0);
	for (int i = 0; i < 2; i++)
		s->scratch[i] = (struct evk_buf)EVK_BUF_INIT(0);
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return false;
	}
	if (pthread_cond_init(&s->cv, NULL) != 0) {
		pthread_mutex_destroy(&s->mu);
		free(s);
		return false;
	}
	if (open_pub(ob, &s->pub) != EVK_OK) {
		sender_free(s);
		return false;
	}
	if (pthread_create(&s->thread, NULL, sender_run, s) != 0) {
		sender_free(s);
		return false;
	}
	ob->sender = s;
	return true;
}

int
evk_outbox_live_send(struct evk_outbox *ob, long long row, int format, struct evk_buf *notes)
{
	struct sender *s = ob->sender;
	if (s == NULL)
		return EVK_OK;
	struct evk_q *st =
		evk_db_q(ob->db, "SELECT count(*), min(id), max(sent) FROM notes WHERE id <= ?");
	if (st == NULL)
		return fail(ob, "cannot read the outbox");
	evk_q_bind_int64(st, 1, row);
	/* Untouched, too: a flush in between may have sent part of it. */
	bool ours = evk_q_step(st) == EVK_ROW && evk_q_int64(st, 0) == 1 &&
		    evk_q_int64(st, 1) == row && evk_q_int64(st, 2) == 0;
	evk_q_reset(st);
	if (!ours) {
		evk_outbox_live_stop(ob);
		return EVK_OK;
	}
	/* The sender is idle (settled before this commit): swap buffers. */
	struct evk_buf t = s->notes;
	s->notes = *notes;
	*notes = t;
	evk_buf_reset(notes);
	pthread_mutex_lock(&s->mu);
	s->row = row;
	s->format = format;
	s->busy = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	ob->sent_row = row;
	return EVK_OK;
}

int
evk_outbox_live_settle(struct evk_outbox *ob)
{
	if (ob->sent_row == 0)
		return EVK_OK;
	uint64_t acked;
	int sent = sender_wait(ob->sender, &acked);
	struct round_row r = { .id = ob->sent_row, .added = (long)acked, .whole = sent == EVK_OK };
	int rv = settle_round(ob, &r, 1, acked);
	if (sent != EVK_OK)
		evk_outbox_live_stop(ob);
	ob->sent_row = 0;
	return rv;
}
