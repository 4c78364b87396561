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
 * and punctuation of the name, and spacing of the postcode, do not count.
 * Out of memory ends casectl (a key cut short could match another). */
void
match_key(const char *name, const char *postcode, struct evk_buf *out)
{
	bool space = false;
	int rv = EVK_OK;
	evk_buf_reset(out);
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (isalnum(*p) || *p >= 0x80) {
			if (space && out->len)
				rv |= evk_buf_addch(out, ' ');
			space = false;
			rv |= evk_buf_addch(out, (char)tolower(*p));
		} else if (isspace(*p)) {
			space = true;
		}
	}
	rv |= evk_buf_addch(out, '|');
	for (const unsigned char *p = (const unsigned char *)(postcode ? postcode : ""); *p; p++)
		if (!isspace(*p))
			rv |= evk_buf_addch(out, (char)toupper(*p));
	if ((rv | evk_buf_addch(out, '\0')) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
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
	struct evk_q *q = prepare(c, "SELECT id, name, postcode FROM offenders WHERE match_key = ?");
	bind_text(c, q, 1, c->key.p);
	bool found = step_row(c, q, "cannot read an offender");
	if (found) {
		offender_from_row(c, q);
	} else {
		/* offender_get fills in the one it adds */
		evk_buf_reset(&c->off.name);
		evk_buf_reset(&c->off.postcode);
		c->off.has_postcode = false;
	}
	done(q);
	return found;
}

/* The offender of q's current row (id, name, postcode) into c->off. */
void
offender_from_row(struct ctx *c, struct evk_q *q)
{
	struct offender *o = &c->off;
	const char *pc = evk_q_text(q, 2);
	evk_buf_reset(&o->name);
	evk_buf_reset(&o->postcode);
	o->id = evk_q_int64(q, 0);
	if (evk_buf_add(&o->name, evk_q_text(q, 1), evk_q_bytes(q, 1) + 1) ||
	    (pc && evk_buf_add(&o->postcode, pc, strlen(pc) + 1)))
		evk_die(EVK_EX_FAIL, "out of memory");
	o->has_postcode = pc != NULL;
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
	c->known_bytes = 0;
}

/* The offender of match key c->key when this process met it, into c->off. */
bool
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
 * OFFENDER_CACHE offenders, or OFFENDER_CACHE_BYTES of their names,
 * postcodes and keys (each up to a field's megabyte), the process forgets
 * them all and starts again. */
void
offender_remember(struct ctx *c)
{
	const struct offender *o = &c->off;
	size_t nk = strlen(c->key.p) + 1, nn = strlen(o->name.p) + 1,
	       np = o->has_postcode ? strlen(o->postcode.p) + 1 : 0;
	ENTRY *added;
	if (c->n_known == OFFENDER_CACHE || c->known_bytes + nk + nn + np > OFFENDER_CACHE_BYTES)
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
	c->known_bytes += nk + nn + np;
	if (hsearch_r((ENTRY){ .key = k->key, .data = k }, ENTER, &added, c->off_tab) == 0)
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* The offender of the input (matched by normalised name and postcode),
 * created when new; its stored name and postcode are left in c->off.
 * One row per match key whoever writes: the key is unique, and an
 * offender another casectl added first is found and used. */
int64_t
offender_get(struct ctx *c, const struct input *in)
{
	struct offender *o = &c->off;
	match_key(in->off_name, in->off_postcode, &c->key);
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
void
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

/* The change of a case's fields, ?1 to ?12 bound by bind_update. */
#define UPDATE_SET                                                                       \
	"UPDATE cases SET"                                                               \
	" offender_id = CASE WHEN ?6 = 1 THEN ?1 ELSE offender_id END,"                  \
	" offence_action_date = CASE WHEN ?7 = 1 THEN ?2 ELSE offence_action_date END,"  \
	" offence_fine = CASE WHEN ?8 = 1 THEN ?3 ELSE offence_fine END,"                \
	" offence_costs = CASE WHEN ?9 = 1 THEN ?4 ELSE offence_costs END,"              \
	" offence_result = CASE WHEN ?10 = 1 THEN ?5 ELSE offence_result END,"           \
	" updated_at = ?11,"                                                             \
	" last_synced_at = CASE WHEN ?12 = 1 THEN ?11 ELSE last_synced_at END"

/* Binds the fields the input carries (offender off), stamped now; sync
 * also stamps last_synced_at. */
static void
bind_update(struct ctx *c, struct evk_q *q, const struct input *in, int64_t off,
	    const char *now, bool sync)
{
	bind_fields(c, q, 1, in, off);
	bind_int(c, q, 6, in->has_offender);
	bind_int(c, q, 7, in->has_date);
	bind_int(c, q, 8, in->has_fine);
	bind_int(c, q, 9, in->has_costs);
	bind_int(c, q, 10, in->has_result);
	bind_text(c, q, 11, now);
	bind_int(c, q, 12, sync);
}

/* Sets the fields the input carries on case id; sync also stamps
 * last_synced_at. */
void
apply_fields(struct ctx *c, const char *id, const struct input *in, bool sync)
{
	char now[EVK_TS_LEN + 1];
	int64_t off;
	struct evk_q *q = fields_write(c, in, now, &off, UPDATE_SET " WHERE id = ?13");
	bind_update(c, q, in, off, now, sync);
	bind_text(c, q, 13, id);
	step_done(c, q, "cannot update a case");
}

/* Syncs the case (agency, in->reference), which is there, with the
 * fields the input carries (offender off), stamped at; sent without
 * waiting for the answer (evk_q_send: on PostgreSQL it goes with the
 * next statement that waits). */
void
sync_fields(struct ctx *c, int64_t agency, const struct input *in, int64_t off, const char *at)
{
	struct evk_q *q =
		prepare(c, UPDATE_SET " WHERE agency_id = ?13 AND case_reference = ?14");
	bind_update(c, q, in, off, at, true);
	bind_int(c, q, 13, agency);
	bind_text(c, q, 14, in->reference);
	if (evk_q_send(q) != EVK_OK)
		db_die(c, "cannot update a case");
}

/* The fields of v that a case inserted from input in at now holds as
 * written (nothing read back): its reference, the case fields the input
 * carries, and both stamps now; no last sync. */
void
case_from_input(struct evk_case *v, const struct input *in, const char *now)
{
	v->reference = in->reference;
	v->date = in->date;
	v->result = in->result;
	v->has_fine = in->has_fine;
	v->has_costs = in->has_costs;
	v->fine = in->fine;
	v->costs = in->costs;
	v->inserted = v->updated = now;
	v->synced = NULL;
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
		.id = id, .agency_code = a->code, .agency_name = a->name, .agency_id = a->id,
		.offender_id = off, .off_name = off ? c->off.name.p : NULL,
		.off_postcode = off && c->off.has_postcode ? c->off.postcode.p : NULL,
	};
	case_from_input(v, in, now);
	notify(c, "create", "created", v);
	return true;
}
