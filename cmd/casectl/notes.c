/* casectl: notifications, recorded in the outbox with the change. */
#include "casectl.h"

/* ---- notifications: outbox inside the transaction, delivered after ----
 *
 * The notifications of a transaction are collected in c->batch as notes
 * and written, just before COMMIT, as one outbox row of format 4
 * (lib/outbox.c delivers it). A note
 * "ts\taction\tpast\tid\tactor\tvalues\n" stands for the event lines
 * case:{past} and case:{past}:{id}, whose payload is built from it when
 * they are sent: actor and the case's values (evk_case_values) are JSON text,
 * which holds no raw tab or newline. Without the member names a note is
 * half the bytes the payload would be, and every byte of a batch is
 * written to the WAL, then again by the checkpoint. Rows of older formats
 * were converted by migration 6. */
#define NOTE_FORMAT 4

/* Queues the notification of one action on case v, payload {resource,
 * action, actor, data}. */
void
notify(struct ctx *c, const char *action, const char *past, const struct evk_case *v)
{
	char ts[EVK_TS_LEN + 1];
	now_ts(ts);
	struct evk_buf *b = &c->batch;
	if (evk_buf_add(b, ts, EVK_TS_LEN) || evk_buf_addch(b, '\t') || evk_buf_addstr(b, action) ||
	    evk_buf_addch(b, '\t') || evk_buf_addstr(b, past) || evk_buf_addch(b, '\t') ||
	    evk_buf_addstr(b, v->id) || evk_buf_addch(b, '\t') || evk_case_add_text(b, c->actor))
		evk_die(EVK_EX_FAIL, "out of memory");
	if (evk_case_values(b, v) != EVK_OK || evk_buf_addch(b, '\n'))
		evk_die(EVK_EX_FAIL, "out of memory");
	c->batch_n += 2;
}

/* The payload a note stands for, from the text after its id
 * (rest[0..n)), into out. */
static int
note_payload(struct evk_buf *out, const char *action, const char *rest, size_t n)
{
	const char *tab = memchr(rest, '\t', n);
	int rv;
	if (tab == NULL || tab == rest)
		return EVK_EPROTO;
	evk_buf_reset(out);
	if ((rv = evk_buf_add(out, "{\"resource\":\"case\",\"action\":", 28)) != EVK_OK ||
	    (rv = evk_case_add_text(out, action)) != EVK_OK ||
	    (rv = evk_buf_add(out, ",\"actor\":", 9)) != EVK_OK ||
	    (rv = evk_buf_add(out, rest, (size_t)(tab - rest))) != EVK_OK ||
	    (rv = evk_buf_add(out, ",\"data\":", 8)) != EVK_OK ||
	    (rv = evk_case_layout(out, tab + 1, n - (size_t)(tab + 1 - rest))) != EVK_OK)
		return rv;
	return evk_buf_addch(out, '}');
}

/* The outbox's expand callback: one note (note[0..len)) into its two
 * event lines. Uses only its arguments (it runs on the sender's thread
 * too). */
int
expand_note(int format, const char *note, size_t len, struct evk_buf scratch[2],
	    int (*emit)(void *, const char *, size_t), void *emit_arg)
{
	struct evk_buf *line = &scratch[0], *payload = &scratch[1];
	const char *p = note, *nl = note + len;
	char f[4][EVK_TOPIC_MAX + 1]; /* ts, action, past, id */
	int rv;

	if (format != NOTE_FORMAT)
		return EVK_EPROTO;
	for (int i = 0; i < 4; i++) {
		const char *tab = memchr(p, '\t', (size_t)(nl - p));
		if (tab == NULL || (size_t)(tab - p) > EVK_TOPIC_MAX)
			return EVK_EPROTO;
		memcpy(f[i], p, (size_t)(tab - p));
		f[i][tab - p] = '\0';
		p = tab + 1;
	}
	if (strlen(f[0]) != EVK_TS_LEN)
		return EVK_EPROTO;
	if ((rv = note_payload(payload, f[1], p, (size_t)(nl - p))) != EVK_OK)
		return rv;
	for (int i = 0; i < 2; i++) {
		/* case:{past} or case:{past}:{id}, with room for both parts
		 * whole: a topic too long is refused by evk_event_build_raw,
		 * not cut. Copied, not printed: twice per note sent. */
		char topic[2 * EVK_TOPIC_MAX + 8];
		size_t np = strlen(f[2]), t = 5 + np;
		memcpy(topic, "case:", 5);
		memcpy(topic + 5, f[2], np);
		if (i) {
			size_t ni = strlen(f[3]);
			topic[t++] = ':';
			memcpy(topic + t, f[3], ni);
			t += ni;
		}
		topic[t] = '\0';
		evk_buf_reset(line);
		rv = evk_event_build_raw(line, f[0], topic, f[1], payload->p, payload->len, NULL);
		if (rv == EVK_EINVAL)
			return EVK_EPROTO;
		if (rv != EVK_OK || (rv = emit(emit_arg, line->p, line->len)) != EVK_OK)
			return rv;
	}
	return EVK_OK;
}

/* notify_row's argument: the action, its past tense, and whether to keep
 * the case as a JSON line in c->out, to print once committed. */
struct announcement {
	const char *action, *past;
	bool keep;
};

static void
notify_row(struct ctx *c, const struct evk_case *v, void *arg)
{
	const struct announcement *a = arg;
	notify(c, a->action, a->past, v);
	if (a->keep)
		print_case_to(c, v);
}

int
print_line(void *arg, const char *line, size_t len, uint64_t seq)
{
	(void)arg;
	(void)seq;
	if (fwrite(line, 1, len, stdout) != len || putchar('\n') == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	return EVK_OK;
}

/* An outbox call failed: out of memory or the database. */
void
outbox_check(struct ctx *c, int rv)
{
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		evk_die(EVK_EX_UNAVAILABLE, "%s", evk_outbox_error(c->outbox));
}

/* Delivers the outbox (evk_outbox_flush) and says what stays. Returns how
 * many notifications stay pending; quiet == true when the hub being down
 * is not worth a warning. */
long
outbox_flush(struct ctx *c, bool quiet)
{
	struct evk_outbox_report r;
	outbox_check(c, evk_outbox_flush(c->outbox, &r));
	c->damaged_row = r.damaged;
	if (r.damaged)
		evk_warn("outbox row %lld is damaged (neither event lines nor notes): it and "
			 "the %ld notifications from it on stay in table notes of '%s'",
			 (long long)r.damaged, r.pending, c->db.path);
	else if (r.pending > 0 && !quiet)
		evk_warn("hub at '%s' unavailable: %ld notifications kept in the outbox "
			 "(delivered by the next casectl command or 'casectl outbox flush')",
			 c->url, r.pending);
	return r.pending;
}

/* Commits the open transaction with its notifications as one outbox row
 * (settling the row sent within it) and, while delivering as we go
 * (evk_outbox_live_start), opens the next transaction and sends this
 * row. more == false: no transaction is left open. */
void
commit(struct ctx *c, bool more)
{
	long long row = 0;
	if (c->batch_n > 0)
		outbox_check(c, evk_outbox_record(c->outbox, NOTE_FORMAT, c->batch.p, c->batch.len,
						  c->batch_n, &row));
	outbox_check(c, evk_outbox_live_settle(c->outbox));
	db_check(c, evk_db_commit(&c->db));
	c->in_txn = false;
	if (evk_outbox_is_live(c->outbox) && row) {
		begin(c);
		c->in_txn = true;
		outbox_check(c, evk_outbox_live_send(c->outbox, row, NOTE_FORMAT, &c->batch));
	}
	c->batch_n = 0;
	evk_buf_reset(&c->batch);
	if (c->in_txn && !more)
		commit(c, false);
}

/* Announces an action on case id from its stored row (keep: and leaves
 * the row in c->out); false when there is no such case. */
bool
announce(struct ctx *c, const char *id, const char *action, const char *past, bool keep)
{
	struct announcement a = { action, past, keep };
	return case_with(c, id, notify_row, &a);
}

/* Announces the sync of the case (agency, ref) from its stored row;
 * false when there is no such case. */
bool
announce_synced(struct ctx *c, int64_t agency, const char *ref)
{
	struct announcement a = { "sync", "synced", false };
	return case_with_ref(c, agency, ref, notify_row, &a);
}

