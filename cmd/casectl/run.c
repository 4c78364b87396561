/* casectl ingest: new cases written a run at a time.
 *
 * One statement of many rows costs the server about a third of as many
 * one-row statements, and one round trip instead of one each (PostgreSQL:
 * 30 against 113 us a case inserted, measured with pgbench). So an ingest
 * gathers up to INSERT_RUN cases, then looks up the offenders it has not
 * met in one SELECT, inserts those that are new in one INSERT, inserts
 * the cases in one INSERT, and announces each case in input order. Each
 * statement goes in pieces of INSERT_RUN, INSERT_RUN/2, ..., 1 rows, so a
 * database keeps at most INSERT_SHAPES of each.
 *
 * What is stored and announced is what one case after another would
 * give: an offender is made by the first case that names it (its stored
 * name is the first one met), a reference met again is synced, and each
 * case is stamped (inserted_at, updated_at) when its line was taken. */
#include "casectl.h"

enum run_stmt { RUN_CASES, RUN_FIND, RUN_OFFENDERS };

static const struct {
	const char *head, *row, *tail;
} run_parts[3] = {
	[RUN_CASES] = { "INSERT INTO cases (id, agency_id, case_reference, offender_id,"
			" offence_action_date, offence_fine, offence_costs, offence_result,"
			" inserted_at, updated_at) VALUES ",
			"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			" ON CONFLICT (agency_id, case_reference) DO NOTHING RETURNING id" },
	[RUN_FIND] = { "SELECT id, name, postcode, match_key FROM offenders WHERE match_key IN (",
		       "?", ")" },
	[RUN_OFFENDERS] = { "INSERT INTO offenders (name, postcode, match_key) VALUES ",
			    "(?, ?, ?)",
			    " ON CONFLICT (match_key) DO NOTHING RETURNING id, name, postcode, match_key" },
};

/* Adds the input case in to run r (not full); its texts must stay until
 * run_flush. Its agency is found or made now. */
void
run_add(struct ctx *c, struct run *r, const struct input *in)
{
	struct run_case *k = &r->c[r->n++];
	const struct agency *a = agency_get(c, in->agency);
	k->in = *in;
	k->agency_id = a->id;
	k->agency_code = keep_text(&r->arena, a->code);
	k->agency_name = keep_text(&r->arena, a->name);
	k->off = 0;
	k->off_key = k->off_name = k->off_postcode = NO_TEXT;
	if (in->has_offender) {
		match_key(in->off_name, in->off_postcode, &c->key);
		k->off_key = keep_text(&r->arena, c->key.p);
	}
	k->created = k->off_found = false;
	new_uuid(k->id);
	now_ts(k->now);
}

void
run_sql_free(struct ctx *c)
{
	for (int s = 0; s < 3; s++)
		for (int i = 0; i < INSERT_SHAPES; i++) {
			free(c->run_sql[s][i]);
			c->run_sql[s][i] = NULL;
		}
}

/* Statement s of `rows` rows (INSERT_RUN >> shape), made once. */
static const char *
run_sql(struct ctx *c, enum run_stmt s, int shape, size_t rows)
{
	if (c->run_sql[s][shape])
		return c->run_sql[s][shape];
	struct evk_buf b = EVK_BUF_INIT(0);
	int rv = evk_buf_addstr(&b, run_parts[s].head);
	for (size_t i = 0; i < rows && rv == EVK_OK; i++)
		if (i == 0 || (rv = evk_buf_addch(&b, ',')) == EVK_OK)
			rv = evk_buf_addstr(&b, run_parts[s].row);
	if (rv != EVK_OK || evk_buf_addstr(&b, run_parts[s].tail) || evk_buf_addch(&b, '\0'))
		evk_die(EVK_EX_FAIL, "out of memory");
	return c->run_sql[s][shape] = b.p;
}

/* c->key becomes the text key (which may be in an arena that moves). */
static void
set_key(struct ctx *c, const char *key)
{
	evk_buf_reset(&c->key);
	if (evk_buf_add(&c->key, key, strlen(key) + 1) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
}

static void
bind_piece(struct ctx *c, struct evk_q *q, const struct run *r, enum run_stmt s,
	   const size_t *idx, size_t rows)
{
	for (size_t i = 0; i < rows; i++) {
		const struct run_case *k = &r->c[idx[i]];
		const char *key = kept_text(&r->arena, k->off_key);
		int at = (int)i * (s == RUN_CASES ? 10 : s == RUN_FIND ? 1 : 3);
		if (s == RUN_FIND) {
			bind_text(c, q, at + 1, key);
		} else if (s == RUN_OFFENDERS) {
			bind_text(c, q, at + 1, k->in.off_name);
			bind_text(c, q, at + 2, k->in.off_postcode);
			bind_text(c, q, at + 3, key);
		} else {
			bind_text(c, q, at + 1, k->id);
			bind_int(c, q, at + 2, k->agency_id);
			bind_text(c, q, at + 3, k->in.reference);
			bind_fields(c, q, at + 4, &k->in, k->off);
			bind_text(c, q, at + 9, k->now);
			bind_text(c, q, at + 10, k->now);
		}
	}
}

/* Runs statement s over the cases r->c[idx[0..rows)]: the cases it
 * inserted are marked created; the offenders it returns are remembered,
 * and the cases naming them marked off_found. */
static void
run_piece(struct ctx *c, struct run *r, enum run_stmt s, int shape, const size_t *idx, size_t rows)
{
	struct evk_q *q = prepare(c, run_sql(c, s, shape, rows));
	bind_piece(c, q, r, s, idx, rows);
	static const char *const what[3] = {
		[RUN_CASES] = "cannot insert a case",
		[RUN_FIND] = "cannot read an offender",
		[RUN_OFFENDERS] = "cannot add an offender",
	};
	while (step_row(c, q, what[s])) {
		if (s != RUN_CASES) {
			offender_from_row(c, q);
			set_key(c, evk_q_text(q, 3));
			offender_remember(c);
			for (size_t i = 0; i < rows; i++)
				if (strcmp(kept_text(&r->arena, r->c[idx[i]].off_key), c->key.p) == 0)
					r->c[idx[i]].off_found = true;
			continue;
		}
		const char *id = evk_q_text(q, 0);
		for (size_t i = 0; i < rows; i++)
			if (id && strcmp(r->c[idx[i]].id, id) == 0)
				r->c[idx[i]].created = true;
	}
	done(q);
}

/* Runs statement s over the cases r->c[idx[0..n)], in pieces. */
static void
run_pieces(struct ctx *c, struct run *r, enum run_stmt s, const size_t *idx, size_t n)
{
	for (size_t from = 0, rows = INSERT_RUN, shape = 0; from < n; rows >>= 1, shape++)
		for (; n - from >= rows; from += rows)
			run_piece(c, r, s, (int)shape, idx + from, rows);
}

/* The offender of each case of r that names one: those this process has
 * not met looked up, and those not found inserted, a piece at a time
 * (each key once: its first case's name and postcode). */
static void
run_offenders(struct ctx *c, struct run *r)
{
	size_t want[INSERT_RUN] = { 0 }, n = 0, m = 0;
	for (size_t i = 0; i < r->n; i++) {
		const char *key = kept_text(&r->arena, r->c[i].off_key);
		size_t j = 0;
		if (key == NULL)
			continue;
		while (j < n && strcmp(kept_text(&r->arena, r->c[want[j]].off_key), key) != 0)
			j++;
		if (j < n)
			continue; /* an earlier case of the run looks it up */
		set_key(c, key);
		if (!offender_known(c))
			want[n++] = i;
	}
	run_pieces(c, r, RUN_FIND, want, n);
	/* Not by the cache: it may have been emptied as the rows came. */
	for (size_t j = 0; j < n; j++)
		if (!r->c[want[j]].off_found)
			want[m++] = want[j];
	run_pieces(c, r, RUN_OFFENDERS, want, m);
	for (size_t i = 0; i < r->n; i++) {
		struct run_case *k = &r->c[i];
		if (k->off_key == NO_TEXT)
			continue;
		set_key(c, kept_text(&r->arena, k->off_key));
		/* Not remembered (the cache was emptied meanwhile): one at a time. */
		k->off = offender_known(c) ? c->off.id : offender_get(c, &k->in);
		k->off_name = keep_text(&r->arena, c->off.name.p);
		k->off_postcode = c->off.has_postcode ? keep_text(&r->arena, c->off.postcode.p) : NO_TEXT;
	}
}

/* Writes run r, then announces each of its cases in input order: a new
 * one as created (from what was written), one whose agency had that
 * reference already (also an earlier case of the run) updated and
 * announced as synced. Empties r. */
void
run_flush(struct ctx *c, struct run *r, long *created, long *synced)
{
	size_t all[INSERT_RUN];
	for (size_t i = 0; i < r->n; i++)
		all[i] = i;
	run_offenders(c, r);
	run_pieces(c, r, RUN_CASES, all, r->n);
	for (size_t i = 0; i < r->n; i++) {
		const struct run_case *k = &r->c[i];
		if (k->created) {
			struct evk_case v = {
				.id = k->id, .agency_code = kept_text(&r->arena, k->agency_code),
				.agency_name = kept_text(&r->arena, k->agency_name),
				.agency_id = k->agency_id, .offender_id = k->off,
				.off_name = kept_text(&r->arena, k->off_name),
				.off_postcode = kept_text(&r->arena, k->off_postcode),
			};
			case_from_input(&v, &k->in, k->now);
			notify(c, "create", "created", &v);
			(*created)++;
			continue;
		}
		/* By its reference: one round trip for the change and the
		 * read back on PostgreSQL. */
		sync_fields(c, k->agency_id, &k->in, k->off, k->now);
		if (!announce_synced(c, k->agency_id, k->in.reference))
			db_die(c, "cannot read the case back");
		(*synced)++;
	}
	r->n = 0;
	evk_buf_reset(&r->arena);
}
