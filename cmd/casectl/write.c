/* casectl: input cases, agencies and offenders written. */
#include "casectl.h"

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
	sqlite3_stmt *st = prepare(c, "SELECT id, name FROM agencies WHERE code = ?");
	bind_text(c, st, 1, code);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		a.id = sqlite3_column_int64(st, 0);
		a.name = strdup((const char *)sqlite3_column_text(st, 1));
	} else if (rc != SQLITE_DONE) {
		db_die(c, "cannot read an agency");
	}
	done(st);
	if (rc == SQLITE_DONE) {
		st = prepare(c, "INSERT INTO agencies (code, name) VALUES (?1, ?1)");
		bind_text(c, st, 1, code);
		if (sqlite3_step(st) != SQLITE_DONE)
			db_die(c, "cannot add an agency");
		done(st);
		a.id = sqlite3_last_insert_rowid(c->db.sq);
		a.name = strdup(code);
	}
	a.code = strdup(code);
	if (a.code == NULL || a.name == NULL)
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

/* The offender of the input (matched by normalised name and postcode),
 * created when new; its stored name and postcode are left in c->off. */
static sqlite3_int64
offender_get(struct ctx *c, const struct input *in)
{
	struct offender *o = &c->off;
	match_key(in->off_name, in->off_postcode, &c->key);
	if (c->key.p == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	sqlite3_stmt *st =
		prepare(c, "SELECT id, name, postcode FROM offenders WHERE match_key = ?");
	bind_text(c, st, 1, c->key.p);
	int rc = sqlite3_step(st);
	evk_buf_reset(&o->name);
	evk_buf_reset(&o->postcode);
	o->has_postcode = false;
	if (rc == SQLITE_ROW) {
		o->id = sqlite3_column_int64(st, 0);
		const char *pc = (const char *)sqlite3_column_text(st, 2);
		if (evk_buf_add(&o->name, sqlite3_column_text(st, 1),
				(size_t)sqlite3_column_bytes(st, 1) + 1) ||
		    (pc && evk_buf_add(&o->postcode, pc, strlen(pc) + 1)))
			evk_die(EVK_EX_FAIL, "out of memory");
		o->has_postcode = pc != NULL;
	} else if (rc != SQLITE_DONE) {
		db_die(c, "cannot read an offender");
	}
	done(st);
	if (rc == SQLITE_ROW)
		return o->id;
	st = prepare(c, "INSERT INTO offenders (name, postcode, match_key) VALUES (?, ?, ?)");
	bind_text(c, st, 1, in->off_name);
	bind_text(c, st, 2, in->off_postcode);
	bind_text(c, st, 3, c->key.p);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot add an offender");
	done(st);
	if (evk_buf_add(&o->name, in->off_name, strlen(in->off_name) + 1) ||
	    (in->off_postcode &&
	     evk_buf_add(&o->postcode, in->off_postcode, strlen(in->off_postcode) + 1)))
		evk_die(EVK_EX_FAIL, "out of memory");
	o->has_postcode = in->off_postcode != NULL;
	return o->id = sqlite3_last_insert_rowid(c->db.sq);
}

/* The id of the case (agency, reference), or "" when there is none. */
void
find_case(struct ctx *c, sqlite3_int64 agency, const char *ref, char id[37])
{
	sqlite3_stmt *st = prepare(c, "SELECT id FROM cases WHERE agency_id = ? AND case_reference = ?");
	sqlite3_bind_int64(st, 1, agency);
	bind_text(c, st, 2, ref);
	id[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(id, 37, "%s", (const char *)sqlite3_column_text(st, 0));
	done(st);
}

/* Sets the fields the input carries on case id; sync also stamps
 * last_synced_at. */
void
apply_fields(struct ctx *c, const char *id, const struct input *in, bool sync)
{
	char now[EVK_TS_LEN + 1];
	now_ts(now);
	sqlite3_stmt *st = prepare(
		c, "UPDATE cases SET"
		   " offender_id = CASE WHEN ?1 THEN ?2 ELSE offender_id END,"
		   " offence_action_date = CASE WHEN ?3 THEN ?4 ELSE offence_action_date END,"
		   " offence_fine = CASE WHEN ?5 THEN ?6 ELSE offence_fine END,"
		   " offence_costs = CASE WHEN ?7 THEN ?8 ELSE offence_costs END,"
		   " offence_result = CASE WHEN ?9 THEN ?10 ELSE offence_result END,"
		   " updated_at = ?11,"
		   " last_synced_at = CASE WHEN ?12 THEN ?11 ELSE last_synced_at END"
		   " WHERE id = ?13");
	sqlite3_bind_int(st, 1, in->has_offender);
	if (in->has_offender)
		sqlite3_bind_int64(st, 2, offender_get(c, in));
	sqlite3_bind_int(st, 3, in->has_date);
	bind_text(c, st, 4, in->date);
	sqlite3_bind_int(st, 5, in->has_fine);
	sqlite3_bind_double(st, 6, in->fine);
	sqlite3_bind_int(st, 7, in->has_costs);
	sqlite3_bind_double(st, 8, in->costs);
	sqlite3_bind_int(st, 9, in->has_result);
	bind_text(c, st, 10, in->result);
	bind_text(c, st, 11, now);
	sqlite3_bind_int(st, 12, sync);
	bind_text(c, st, 13, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot update a case");
	done(st);
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
	now_ts(now);
	new_uuid(id);
	sqlite3_int64 off = in->has_offender ? offender_get(c, in) : 0;
	sqlite3_stmt *st = prepare(
		c, "INSERT INTO cases (id, agency_id, case_reference, offender_id,"
		   " offence_action_date, offence_fine, offence_costs, offence_result,"
		   " inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?9)"
		   " ON CONFLICT (agency_id, case_reference) DO NOTHING");
	bind_text(c, st, 1, id);
	sqlite3_bind_int64(st, 2, a->id);
	bind_text(c, st, 3, in->reference);
	if (off)
		sqlite3_bind_int64(st, 4, off);
	bind_text(c, st, 5, in->date);
	if (in->has_fine)
		sqlite3_bind_double(st, 6, in->fine);
	if (in->has_costs)
		sqlite3_bind_double(st, 7, in->costs);
	bind_text(c, st, 8, in->result);
	bind_text(c, st, 9, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_die(c, "cannot insert a case");
	done(st);
	if (sqlite3_changes(c->db.sq) == 0) {
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

