/* casectl: input cases, agencies and offenders written. */
#include "casectl.h"

#include <search.h>

/* A text field of the input, the member v (or NULL when absent): *out is
 * its text, NULL when absent or null; *has (if given) whether it came. */
static bool
text_value(const cJSON *v, const char *name, const char **out, bool *has, char *why, size_t wl)
{
	if (v == NULL || cJSON_IsNull(v)) {
		*out = NULL;
		if (has)
			*has = v != NULL;
		return true;
	}
	if (!cJSON_IsString(v)) {
		snprintf(why, wl, "'%s' must be a string", name);
		return false;
	}
	if (strlen(v->valuestring) > FIELD_MAX) {
		snprintf(why, wl, "'%s' longer than %d bytes", name, FIELD_MAX);
		return false;
	}
	*out = v->valuestring;
	if (has)
		*has = true;
	return true;
}

static bool
text_field(const cJSON *o, const char *name, const char **out, bool *has, char *why,
	   size_t wl)
{
	return text_value(cJSON_GetObjectItemCaseSensitive(o, name), name, out, has, why, wl);
}

bool
nul_escape(const char *text, size_t len)
{
	const char *end = text + len;
	/* Escapes are rare: memchr finds each (or none) at memory speed. */
	for (const char *p = text; (p = memchr(p, '\\', (size_t)(end - p))) != NULL; p += 2) {
		if (end - p >= 6 && p[1] == 'u' && memcmp(p + 2, "0000", 4) == 0)
			return true;
		if (end - p < 2)
			break; /* p + 2: past the escaped character, a backslash included */
	}
	return false;
}

bool
valid_date(const char *s, char *ts)
{
	char buf[EVK_TS_LEN + 1], out[EVK_TS_LEN + 1];
	size_t n = strlen(s);
	if (n == 10) {
		/* A day: its first moment. */
		memcpy(buf, s, 10);
		memcpy(buf + 10, "T00:00:00Z", 11);
		s = buf;
		n = 20;
	}
	if (evk_ts_normalise(s, n, out) != EVK_OK)
		return false;
	if (ts)
		memcpy(ts, out, sizeof(out));
	return true;
}

/* The fields of an input case, each found in the one walk that checks
 * them (the first of a name counts, as with cJSON_GetObjectItemCaseSensitive). */
enum field { F_AGENCY, F_REFERENCE, F_OFFENDER, F_DATE, F_FINE, F_COSTS, F_RESULT, F_COUNT };
static const char *const field_names[F_COUNT] = {
	"agency", "case_reference", "offender", "offence_action_date",
	"offence_fine", "offence_costs", "offence_result",
};

bool
parse_input(const cJSON *o, struct input *in, bool partial, char *why, size_t wl)
{
	const cJSON *f[F_COUNT] = { 0 };
	memset(in, 0, sizeof(*in));
	if (!cJSON_IsObject(o)) {
		snprintf(why, wl, "a case is a JSON object");
		return false;
	}
	for (const cJSON *m = o->child; m; m = m->next) {
		int k = 0;
		while (k < F_COUNT && strcmp(field_names[k], m->string) != 0)
			k++;
		if (k == F_COUNT) {
			snprintf(why, wl, "unknown field '%.64s'", m->string);
			return false;
		}
		if (f[k] == NULL)
			f[k] = m;
	}
	if (!text_value(f[F_AGENCY], field_names[F_AGENCY], &in->agency, NULL, why, wl) ||
	    !text_value(f[F_REFERENCE], field_names[F_REFERENCE], &in->reference, NULL, why, wl) ||
	    !text_value(f[F_DATE], field_names[F_DATE], &in->date, &in->has_date, why, wl) ||
	    !text_value(f[F_RESULT], field_names[F_RESULT], &in->result, &in->has_result, why, wl))
		return false;
	if (in->date && !valid_date(in->date, NULL)) {
		snprintf(why, wl, "'offence_action_date' is not a date (YYYY-MM-DD or RFC 3339)");
		return false;
	}
	if (!partial && (in->agency == NULL || in->reference == NULL || !*in->agency ||
			 !*in->reference)) {
		snprintf(why, wl, "'agency' and 'case_reference' are required");
		return false;
	}
	if (partial && (in->agency || in->reference)) {
		snprintf(why, wl, "'agency' and 'case_reference' cannot change");
		return false;
	}
	const cJSON *off = f[F_OFFENDER];
	if (off && !cJSON_IsNull(off)) {
		if (!cJSON_IsObject(off) ||
		    !text_field(off, "name", &in->off_name, NULL, why, wl) ||
		    !text_field(off, "postcode", &in->off_postcode, NULL, why, wl) ||
		    in->off_name == NULL || !*in->off_name) {
			if (!*why)
				snprintf(why, wl, "'offender' needs a 'name'");
			return false;
		}
		in->has_offender = true;
	}
	for (int i = F_FINE; i <= F_COSTS; i++) {
		const cJSON *v = f[i];
		if (v == NULL || cJSON_IsNull(v))
			continue;
		if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
			snprintf(why, wl, "'%s' must be a number, not negative", field_names[i]);
			return false;
		}
		*(i == F_COSTS ? &in->costs : &in->fine) = v->valuedouble;
		*(i == F_COSTS ? &in->has_costs : &in->has_fine) = true;
	}
	return true;
}

/* Offenders are one row per normalised name + postcode: case, spacing
 * and punctuation of the name, and spacing of the postcode, do not count. */
static void
match_key(const char *name, const char *postcode, struct evk_buf *out)
{
	bool space = false;
	evk_buf_reset(out);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (isalnum(*p) || *p >= 0x80) {
			if (space && out->len)
				evk_buf_addch(out, ' ');
			space = false;
			evk_buf_addch(out, (char)tolower(*p));
		} else if (isspace(*p)) {
			space = true;
		}
	}
	evk_buf_addch(out, '|');
	for (const unsigned char *p = (const unsigned char *)(postcode ? postcode : ""); *p; p++)
		if (!isspace(*p))
			evk_buf_addch(out, (char)toupper(*p));
	evk_buf_addch(out, '\0');
}

/* The agency with this code, created when new. Agencies are few and never
 * change, so each process keeps the ones it met. */
const struct agency *
agency_get(struct ctx *c, const char *code)
{
	for (size_t i = 0; i < c->n_agencies; i++)
		if (strcmp(c->agencies[i].code, code) == 0)
			return &c->agencies[i];
	struct agency a = { 0 };
	/* Another casectl may add it at the same moment: the unique code
	 * keeps one, and a second look finds the one that was kept. */
	for (int pass = 0; a.name == NULL && pass < 2; pass++) {
		struct evk_q *q = prepare(c, "SELECT id, name FROM agencies WHERE code = ?");
		bind_text(c, q, 1, code);
		if (step_row(c, q, "cannot read an agency")) {
			a.id = evk_q_int64(q, 0);
			if ((a.name = strdup(evk_q_text(q, 1))) == NULL)
				evk_die(EVK_EX_FAIL, "out of memory");
		}
		done(q);
		if (a.name || pass)
			break;
		q = prepare(c, "INSERT INTO agencies (code, name) VALUES (?1, ?1)"
			       " ON CONFLICT (code) DO NOTHING RETURNING id");
		bind_text(c, q, 1, code);
		if (step_row(c, q, "cannot add an agency")) {
			a.id = evk_q_int64(q, 0);
			if ((a.name = strdup(code)) == NULL)
				evk_die(EVK_EX_FAIL, "out of memory");
		}
		done(q);
	}
	if (a.name == NULL)
		db_die(c, "cannot add an agency");
	a.code = strdup(code);
	if (a.code == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (c->n_agencies == AGENCY_CACHE) {
		/* Past the cache, the oldest entry makes room. */
		free(c->agencies[0].code);
		free(c->agencies[0].name);
		memmove(c->agencies, c->agencies + 1, sizeof(a) * (AGENCY_CACHE - 1));
		c->n_agencies--;
	}
	c->agencies[c->n_agencies] = a;
	return &c->agencies[c->n_agencies++];
}

/* Looks the offender of match key c->key up; true (its id, stored name
 * and postcode in c->off) when there is one. */
static bool
offender_find(struct ctx *c)
{
	struct offender *o = &c->off;
	struct evk_q *q = prepare(c, "SELECT id, name, postcode FROM offenders WHERE match_key = ?");
	bind_text(c, q, 1, c->key.p);
	bool found = step_row(c, q, "cannot read an offender");
	evk_buf_reset(&o->name);
	evk_buf_reset(&o->postcode);
	o->has_postcode = false;
	if (found) {
		o->id = evk_q_int64(q, 0);
		const char *pc = evk_q_text(q, 2);
		if (evk_buf_add(&o->name, evk_q_text(q, 1), evk_q_bytes(q, 1) + 1) ||
		    (pc && evk_buf_add(&o->postcode, pc, strlen(pc) + 1)))
			evk_die(EVK_EX_FAIL, "out of memory");
		o->has_postcode = pc != NULL;
	}
	done(q);
	return found;
}

/* An offender met: its id, stored name and postcode, and its match key. */
struct known_offender {
	int64_t id;
	const char *name, *postcode; /* postcode NULL: none */
	char key[];
};

void
offenders_forget(struct ctx *c)
{
	if (c->off_tab) {
		hdestroy_r(c->off_tab);
		free(c->off_tab);
		c->off_tab = NULL;
	}
	for (size_t i = 0; i < c->n_known; i++)
		free(c->known[i]);
	free(c->known);
	c->known = NULL;
	c->n_known = 0;
}

/* The offender of match key c->key when this process met it, into c->off. */
static bool
offender_known(struct ctx *c)
{
	ENTRY e = { .key = c->key.p }, *found;
	struct offender *o = &c->off;
	if (c->off_tab == NULL || hsearch_r(e, FIND, &found, c->off_tab) == 0)
		return false;
	const struct known_offender *k = found->data;
	evk_buf_reset(&o->name);
	evk_buf_reset(&o->postcode);
	if (evk_buf_add(&o->name, k->name, strlen(k->name) + 1) ||
	    (k->postcode && evk_buf_add(&o->postcode, k->postcode, strlen(k->postcode) + 1)))
		evk_die(EVK_EX_FAIL, "out of memory");
	o->has_postcode = k->postcode != NULL;
	o->id = k->id;
	return true;
}

/* Remembers the offender in c->off under match key c->key; past
 * OFFENDER_CACHE offenders the process forgets them all and starts again. */
static void
offender_remember(struct ctx *c)
{
	const struct offender *o = &c->off;
	size_t nk = strlen(c->key.p) + 1, nn = strlen(o->name.p) + 1,
	       np = o->has_postcode ? strlen(o->postcode.p) + 1 : 0;
	ENTRY *added;
	if (c->n_known == OFFENDER_CACHE)
		offenders_forget(c);
	if (c->off_tab == NULL) {
		/* calloc: hcreate_r wants the table zeroed */
		if ((c->off_tab = calloc(1, sizeof(*c->off_tab))) == NULL ||
		    hcreate_r(OFFENDER_CACHE * 4 / 3, c->off_tab) == 0 ||
		    (c->known = calloc(OFFENDER_CACHE, sizeof(*c->known))) == NULL)
			evk_die(EVK_EX_FAIL, "out of memory");
	}
	struct known_offender *k = malloc(sizeof(*k) + nk + nn + np);
	if (k == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	k->id = o->id;
	memcpy(k->key, c->key.p, nk);
	k->name = memcpy(k->key + nk, o->name.p, nn);
	k->postcode = np ? memcpy(k->key + nk + nn, o->postcode.p, np) : NULL;
	c->known[c->n_known++] = k;
	if (hsearch_r((ENTRY){ .key = k->key, .data = k }, ENTER, &added, c->off_tab) == 0)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* The offender of the input (matched by normalised name and postcode),
 * created when new; its stored name and postcode are left in c->off.
 * One row per match key whoever writes: the key is unique, and an
 * offender another casectl added first is found and used. */
static int64_t
offender_get(struct ctx *c, const struct input *in)
{
	struct offender *o = &c->off;
	match_key(in->off_name, in->off_postcode, &c->key);
	if (c->key.p == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (offender_known(c))
		return o->id;
	if (offender_find(c)) {
		offender_remember(c);
		return o->id;
	}
	struct evk_q *q = prepare(c, "INSERT INTO offenders (name, postcode, match_key)"
				     " VALUES (?, ?, ?) ON CONFLICT (match_key) DO NOTHING RETURNING id");
	bind_text(c, q, 1, in->off_name);
	bind_text(c, q, 2, in->off_postcode);
	bind_text(c, q, 3, c->key.p);
	bool added = step_row(c, q, "cannot add an offender");
	if (added)
		o->id = evk_q_int64(q, 0);
	done(q);
	if (!added) {
		if (!offender_find(c))
			db_die(c, "cannot add an offender");
		offender_remember(c);
		return o->id;
	}
	if (evk_buf_add(&o->name, in->off_name, strlen(in->off_name) + 1) ||
	    (in->off_postcode &&
	     evk_buf_add(&o->postcode, in->off_postcode, strlen(in->off_postcode) + 1)))
		evk_die(EVK_EX_FAIL, "out of memory");
	o->has_postcode = in->off_postcode != NULL;
	offender_remember(c);
	return o->id;
}

/* The id of the case (agency, reference), or "" when there is none. */
void
find_case(struct ctx *c, int64_t agency, const char *ref, char id[37])
{
	struct evk_q *q = prepare(c, "SELECT id FROM cases WHERE agency_id = ? AND case_reference = ?");
	bind_int(c, q, 1, agency);
	bind_text(c, q, 2, ref);
	id[0] = '\0';
	if (step_row(c, q, "cannot read a case"))
		snprintf(id, 37, "%s", evk_q_text(q, 0));
	done(q);
}

/* Binds the case fields (offender off, date, fine, costs, result) to
 * ?at to ?at+4; one the input does not carry (off 0) is NULL. */
static void
bind_fields(struct ctx *c, struct evk_q *q, int at, const struct input *in, int64_t off)
{
	if (off)
		bind_int(c, q, at, off);
	bind_text(c, q, at + 1, in->date);
	if (in->has_fine)
		bind_double(c, q, at + 2, in->fine);
	if (in->has_costs)
		bind_double(c, q, at + 3, in->costs);
	bind_text(c, q, at + 4, in->result);
}

/* What a write of a case's fields starts with: the time into now, the
 * offender's id into *off (0: the input names none) and sql prepared.
 * The offender comes first: its statements run before sql is bound. */
static struct evk_q *
fields_write(struct ctx *c, const struct input *in, char *now, int64_t *off, const char *sql)
{
	now_ts(now);
	*off = in->has_offender ? offender_get(c, in) : 0;
	return prepare(c, sql);
}

/* Sets the fields the input carries on case id; sync also stamps
 * last_synced_at. */
void
apply_fields(struct ctx *c, const char *id, const struct input *in, bool sync)
{
	char now[EVK_TS_LEN + 1];
	int64_t off;
	struct evk_q *q = fields_write(
		c, in, now, &off,
		"UPDATE cases SET"
		" offender_id = CASE WHEN ?6 = 1 THEN ?1 ELSE offender_id END,"
		" offence_action_date = CASE WHEN ?7 = 1 THEN ?2 ELSE offence_action_date END,"
		" offence_fine = CASE WHEN ?8 = 1 THEN ?3 ELSE offence_fine END,"
		" offence_costs = CASE WHEN ?9 = 1 THEN ?4 ELSE offence_costs END,"
		" offence_result = CASE WHEN ?10 = 1 THEN ?5 ELSE offence_result END,"
		" updated_at = ?11,"
		" last_synced_at = CASE WHEN ?12 = 1 THEN ?11 ELSE last_synced_at END"
		" WHERE id = ?13");
	bind_fields(c, q, 1, in, off);
	bind_int(c, q, 6, in->has_offender);
	bind_int(c, q, 7, in->has_date);
	bind_int(c, q, 8, in->has_fine);
	bind_int(c, q, 9, in->has_costs);
	bind_int(c, q, 10, in->has_result);
	bind_text(c, q, 11, now);
	bind_int(c, q, 12, sync);
	bind_text(c, q, 13, id);
	step_done(c, q, "cannot update a case");
}

/* Inserts a new case of agency a and announces it; v describes it after,
 * built from what was written rather than read back. false: the agency
 * has a case of that reference already, whose id is left in id; nothing
 * was written. */
bool
create_case(struct ctx *c, const struct agency *a, const struct input *in, char id[37],
	    struct evk_case *v)
{
	char *now = c->created; /* outlives this call: v points at it */
	int64_t off;
	new_uuid(id);
	/* The unique (agency, reference) keeps one case whoever inserts. */
	struct evk_q *q = fields_write(
		c, in, now, &off,
		"INSERT INTO cases (id, agency_id, case_reference, offender_id,"
		" offence_action_date, offence_fine, offence_costs, offence_result,"
		" inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?9)"
		" ON CONFLICT (agency_id, case_reference) DO NOTHING");
	bind_text(c, q, 1, id);
	bind_int(c, q, 2, a->id);
	bind_text(c, q, 3, in->reference);
	bind_fields(c, q, 4, in, off);
	bind_text(c, q, 9, now);
	step_done(c, q, "cannot insert a case");
	if (evk_q_changes(q) == 0) {
		find_case(c, a->id, in->reference, id);
		return false;
	}
	*v = (struct evk_case){
		.id = id, .reference = in->reference, .agency_code = a->code,
		.agency_name = a->name, .agency_id = a->id, .offender_id = off,
		.off_name = off ? c->off.name.p : NULL,
		.off_postcode = off && c->off.has_postcode ? c->off.postcode.p : NULL,
		.date = in->date, .result = in->result, .has_fine = in->has_fine,
		.has_costs = in->has_costs, .fine = in->fine, .costs = in->costs,
		.inserted = now, .updated = now, .synced = NULL,
	};
	notify(c, "create", "created", v);
	return true;
}


/* ---- an ingest's cases, inserted a run at a time ----
 *
 * One INSERT of many rows costs the server about a third of as many
 * one-row INSERTs, and one round trip instead of one each (PostgreSQL:
 * 30 against 113 us a case, measured with pgbench). A run is inserted in
 * pieces of INSERT_RUN, INSERT_RUN/2, ..., 1 rows, so a database keeps at
 * most INSERT_SHAPES of these statements. */

/* Adds the input case in to run r (not full): its agency and offender
 * are found or made now, as create_case does before its insert. */
void
run_add(struct ctx *c, struct run *r, const struct input *in)
{
	struct run_case *k = &r->c[r->n++];
	const struct agency *a = agency_get(c, in->agency);
	k->in = *in;
	k->agency_id = a->id;
	k->agency_code = keep_text(&r->arena, a->code);
	k->agency_name = keep_text(&r->arena, a->name);
	k->off = in->has_offender ? offender_get(c, in) : 0;
	k->off_name = k->off ? keep_text(&r->arena, c->off.name.p) : NO_TEXT;
	k->off_postcode = k->off && c->off.has_postcode ? keep_text(&r->arena, c->off.postcode.p)
							 : NO_TEXT;
	k->created = false;
	new_uuid(k->id);
	now_ts(k->now);
}

void
insert_sql_free(struct ctx *c)
{
	for (int i = 0; i < INSERT_SHAPES; i++) {
		free(c->insert_sql[i]);
		c->insert_sql[i] = NULL;
	}
}

/* The statement inserting `rows` cases (INSERT_RUN >> shape), made once. */
static const char *
insert_sql(struct ctx *c, int shape, size_t rows)
{
	static const char head[] =
		"INSERT INTO cases (id, agency_id, case_reference, offender_id,"
		" offence_action_date, offence_fine, offence_costs, offence_result,"
		" inserted_at, updated_at) VALUES ",
			  row[] = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			  tail[] = " ON CONFLICT (agency_id, case_reference) DO NOTHING RETURNING id";
	if (c->insert_sql[shape])
		return c->insert_sql[shape];
	struct evk_buf b = EVK_BUF_INIT(0);
	int rv = evk_buf_addstr(&b, head);
	for (size_t i = 0; i < rows && rv == EVK_OK; i++)
		if (i == 0 || (rv = evk_buf_addch(&b, ',')) == EVK_OK)
			rv = evk_buf_addstr(&b, row);
	if (rv != EVK_OK || evk_buf_addstr(&b, tail) || evk_buf_addch(&b, '\0'))
		evk_die(EVK_EX_FAIL, "out of memory");
	return c->insert_sql[shape] = b.p;
}

/* Inserts cases r->c[from, from + rows) in one statement; those inserted
 * (not already there) are marked created. */
static void
insert_piece(struct ctx *c, struct run *r, int shape, size_t from, size_t rows)
{
	struct evk_q *q = prepare(c, insert_sql(c, shape, rows));
	for (size_t i = 0; i < rows; i++) {
		const struct run_case *k = &r->c[from + i];
		int at = (int)i * 10;
		bind_text(c, q, at + 1, k->id);
		bind_int(c, q, at + 2, k->agency_id);
		bind_text(c, q, at + 3, k->in.reference);
		bind_fields(c, q, at + 4, &k->in, k->off);
		bind_text(c, q, at + 9, k->now);
		bind_text(c, q, at + 10, k->now);
	}
	while (step_row(c, q, "cannot insert a case")) {
		const char *id = evk_q_text(q, 0);
		for (size_t i = from; i < from + rows; i++)
			if (id && strcmp(r->c[i].id, id) == 0)
				r->c[i].created = true;
	}
	done(q);
}

/* Writes run r, then announces each of its cases in input order: a new
 * one as created (from what was written), one whose agency had that
 * reference already (also an earlier case of the run) updated and
 * announced as synced. Empties r. */
void
run_flush(struct ctx *c, struct run *r, long *created, long *synced)
{
	for (size_t from = 0, rows = INSERT_RUN, shape = 0; from < r->n; rows >>= 1, shape++)
		for (; r->n - from >= rows; from += rows)
			insert_piece(c, r, (int)shape, from, rows);
	for (size_t i = 0; i < r->n; i++) {
		const struct run_case *k = &r->c[i];
		if (k->created) {
			struct evk_case v = {
				.id = k->id, .reference = k->in.reference,
				.agency_code = kept_text(&r->arena, k->agency_code),
				.agency_name = kept_text(&r->arena, k->agency_name), .agency_id = k->agency_id,
				.offender_id = k->off, .off_name = kept_text(&r->arena, k->off_name),
				.off_postcode = kept_text(&r->arena, k->off_postcode), .date = k->in.date,
				.result = k->in.result, .has_fine = k->in.has_fine,
				.has_costs = k->in.has_costs, .fine = k->in.fine,
				.costs = k->in.costs, .inserted = k->now, .updated = k->now,
			};
			notify(c, "create", "created", &v);
			(*created)++;
			continue;
		}
		char id[37];
		find_case(c, k->agency_id, k->in.reference, id);
		if (id[0] == '\0')
			db_die(c, "cannot find a case that was there");
		apply_fields(c, id, &k->in, true);
		if (!announce(c, id, "sync", "synced", false))
			db_die(c, "cannot read the case back");
		(*synced)++;
	}
	r->n = 0;
	evk_buf_reset(&r->arena);
}
