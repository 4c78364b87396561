/* The enforcement case resource (include/evkit/cases.h): its schema, the
 * case view, its JSON and its queries. */
#include "evkit/cases.h"

#include "evkit/err.h"
#include "evkit/outbox.h"
#include "evkit/store.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL's schema: the one SQLite reaches after its six steps, in
 * its types (BIGSERIAL ids, BIGINT references, DOUBLE PRECISION, the
 * outbox's BYTEA). Text compares byte by byte (COLLATE "C"), as in SQLite,
 * so that sorting and --since agree on both stores. */
#define CASES_SCHEMA_PG                                                                  \
	"CREATE TABLE agencies (id BIGSERIAL PRIMARY KEY, code TEXT COLLATE \"C\" NOT NULL UNIQUE," \
	" name TEXT COLLATE \"C\" NOT NULL);"                                                  \
	"CREATE TABLE offenders (id BIGSERIAL PRIMARY KEY, name TEXT COLLATE \"C\" NOT NULL,"    \
	" postcode TEXT COLLATE \"C\", match_key TEXT COLLATE \"C\" NOT NULL UNIQUE);"          \
	"CREATE TABLE cases (id TEXT COLLATE \"C\" PRIMARY KEY,"                                 \
	" agency_id BIGINT NOT NULL REFERENCES agencies(id),"                                   \
	" case_reference TEXT COLLATE \"C\" NOT NULL,"                                          \
	" offender_id BIGINT REFERENCES offenders(id),"                                         \
	" offence_action_date TEXT COLLATE \"C\", offence_fine DOUBLE PRECISION,"                \
	" offence_costs DOUBLE PRECISION, offence_result TEXT COLLATE \"C\","                    \
	" inserted_at TEXT COLLATE \"C\" NOT NULL, updated_at TEXT COLLATE \"C\" NOT NULL,"      \
	" last_synced_at TEXT COLLATE \"C\", UNIQUE (agency_id, case_reference));"               \
	"CREATE INDEX cases_updated ON cases(updated_at);"                                      \
	"CREATE TABLE users (name TEXT COLLATE \"C\" PRIMARY KEY,"                               \
	" role TEXT NOT NULL CHECK (role IN ('admin','editor','viewer')));" EVK_OUTBOX_SCHEMA_PG

const struct evk_migration evk_cases_migrations[EVK_CASES_MIGRATIONS] = {
	{ "CREATE TABLE agencies (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,"
	  " name TEXT NOT NULL);"
	  "CREATE TABLE offenders (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
	  " postcode TEXT, match_key TEXT NOT NULL UNIQUE);"
	  "CREATE TABLE cases (id TEXT PRIMARY KEY,"
	  " agency_id INTEGER NOT NULL REFERENCES agencies(id),"
	  " case_reference TEXT NOT NULL,"
	  " offender_id INTEGER REFERENCES offenders(id),"
	  " offence_action_date TEXT, offence_fine REAL, offence_costs REAL,"
	  " offence_result TEXT, inserted_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
	  " last_synced_at TEXT, UNIQUE (agency_id, case_reference));"
	  "CREATE INDEX cases_updated ON cases(updated_at);"
	  "CREATE TABLE users (name TEXT PRIMARY KEY,"
	  " role TEXT NOT NULL CHECK (role IN ('admin','editor','viewer')));"
	  "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL,"
	  " action TEXT NOT NULL, past TEXT NOT NULL, case_id TEXT NOT NULL,"
	  " payload TEXT NOT NULL);",
	  CASES_SCHEMA_PG },
	/* 2: an outbox row holds the ready event lines of one transaction
	 * (count of them, each ending in a newline): a long ingest writes one
	 * row per batch instead of one per case. */
	{ "CREATE TABLE outbox2 (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	  " count INTEGER NOT NULL, lines BLOB NOT NULL);"
	  "INSERT INTO outbox2 (count, lines) SELECT 2,"
	  " '{\"ts\":\"' || ts || '\",\"topic\":\"case:' || past || '\",\"event\":\"' || action"
	  " || '\",\"payload\":' || payload || '}' || char(10) ||"
	  " '{\"ts\":\"' || ts || '\",\"topic\":\"case:' || past || ':' || case_id"
	  " || '\",\"event\":\"' || action || '\",\"payload\":' || payload || '}' || char(10)"
	  " FROM outbox ORDER BY id;"
	  "DROP TABLE outbox;"
	  "ALTER TABLE outbox2 RENAME TO outbox;",
	  "" },
	/* 3: the outbox moves to table notifications, whose rows may hold
	 * notes instead of lines (format 3): one per notification,
	 * "ts\taction\tpast\tid\tpayload\n", expanded into its two event
	 * lines when sent; half the bytes to write. Table outbox goes, so an
	 * older casectl stops at it instead of sending notes as lines. */
	{ "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	  " count INTEGER NOT NULL, lines BLOB NOT NULL, format INTEGER NOT NULL);"
	  "INSERT INTO notifications (id, count, lines, format)"
	  " SELECT id, count, lines, 2 FROM outbox ORDER BY id;"
	  "DROP TABLE outbox;",
	  "" },
	/* 4: how many of a row's event lines the hub already acknowledged:
	 * a delivery cut short resumes after them instead of sending them
	 * again. */
	{ "ALTER TABLE notifications ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;",
	  "" },
	/* 5: rows may hold notes of format 4 (values without member names,
	 * the payload built when sent). The table is renamed so that an
	 * older casectl stops at it instead of sending such notes as they
	 * are; its rows keep their own format. */
	{ "ALTER TABLE notifications RENAME TO notes;",
	  "" },
	/* 6: notes of format 3 (ts, action, past, id and the payload itself)
	 * become their two event lines (format 2, EVK_OUTBOX_LINES), so that
	 * only the current format needs reading; a row whose notes cannot be
	 * read keeps format 3, which the outbox reports as damaged. The
	 * outbox gets its producer id. */
	{ "CREATE TEMP TABLE note3 AS"
	  " WITH RECURSIVE split(id, n, rest, note) AS ("
	  "  SELECT id, 0, CAST(lines AS TEXT), NULL FROM notes WHERE format = 3"
	  "  UNION ALL SELECT id, n + 1, substr(rest, instr(rest, char(10)) + 1),"
	  "  substr(rest, 1, instr(rest, char(10)) - 1) FROM split WHERE instr(rest, char(10)) > 0),"
	  " t1(id, n, ts, r) AS (SELECT id, n, substr(note, 1, instr(note, char(9)) - 1),"
	  "  CASE WHEN instr(note, char(9)) > 0 THEN substr(note, instr(note, char(9)) + 1) END"
	  "  FROM split WHERE n > 0),"
	  " t2(id, n, ts, action, r) AS (SELECT id, n, ts, substr(r, 1, instr(r, char(9)) - 1),"
	  "  CASE WHEN instr(r, char(9)) > 0 THEN substr(r, instr(r, char(9)) + 1) END FROM t1),"
	  " t3(id, n, ts, action, past, r) AS (SELECT id, n, ts, action,"
	  "  substr(r, 1, instr(r, char(9)) - 1),"
	  "  CASE WHEN instr(r, char(9)) > 0 THEN substr(r, instr(r, char(9)) + 1) END FROM t2),"
	  " t4(id, n, ts, action, past, cid, payload) AS (SELECT id, n, ts, action, past,"
	  "  substr(r, 1, instr(r, char(9)) - 1),"
	  "  CASE WHEN instr(r, char(9)) > 0 THEN substr(r, instr(r, char(9)) + 1) END FROM t3)"
	  " SELECT id, n, CASE WHEN payload IS NULL OR payload = '' OR length(ts) <> 27"
	  "  OR action = '' OR past = '' OR cid = '' THEN NULL ELSE"
	  "  '{\"ts\":\"' || ts || '\",\"topic\":\"case:' || past || '\",\"event\":\"' || action"
	  "  || '\",\"payload\":' || payload || '}' || char(10) ||"
	  "  '{\"ts\":\"' || ts || '\",\"topic\":\"case:' || past || ':' || cid"
	  "  || '\",\"event\":\"' || action || '\",\"payload\":' || payload || '}' || char(10)"
	  "  END AS line FROM t4"
	  " UNION ALL SELECT id, -1, NULL FROM split WHERE instr(rest, char(10)) = 0 AND rest <> '';"
	  "UPDATE notes SET format = 2, lines = CAST(coalesce((SELECT group_concat(line, '') FROM"
	  " (SELECT line FROM note3 WHERE note3.id = notes.id ORDER BY n)), '') AS BLOB)"
	  " WHERE format = 3 AND NOT EXISTS"
	  " (SELECT 1 FROM note3 WHERE note3.id = notes.id AND line IS NULL);"
	  "DROP TABLE note3;" EVK_OUTBOX_PRODUCER_SCHEMA,
	  "" },
};

void
evk_case_from_row(struct evk_q *q, struct evk_case *v)
{
	*v = (struct evk_case){
		.id = evk_q_text(q, 0), .agency_id = evk_q_int64(q, 1),
		.agency_code = evk_q_text(q, 2), .agency_name = evk_q_text(q, 3),
		.reference = evk_q_text(q, 4),
		.offender_id = evk_q_is_null(q, 5) ? 0 : evk_q_int64(q, 5),
		.off_name = evk_q_text(q, 6), .off_postcode = evk_q_text(q, 7),
		.date = evk_q_text(q, 8), .has_fine = !evk_q_is_null(q, 9),
		.fine = evk_q_is_null(q, 9) ? 0 : evk_q_double(q, 9),
		.has_costs = !evk_q_is_null(q, 10),
		.costs = evk_q_is_null(q, 10) ? 0 : evk_q_double(q, 10),
		.result = evk_q_text(q, 11), .inserted = evk_q_text(q, 12),
		.updated = evk_q_text(q, 13), .synced = evk_q_text(q, 14),
	};
}

int
evk_case_add_text(struct evk_buf *b, const char *s)
{
	return s ? evk_buf_add_json_string(b, s, strlen(s)) : evk_buf_add(b, "null", 4);
}

/* A number printed as cJSON prints it, so every output agrees: whole
 * numbers within int as integers, else the shortest of 15 or 17 digits
 * that reads back the same. */
static int
add_number(struct evk_buf *b, bool has, double d)
{
	char s[32];
	if (!has || isnan(d) || isinf(d))
		return evk_buf_add(b, "null", 4);
	long long k = fabs(d) < 1e13 ? llround(d * 100) : 0;
	if (fabs(d) < 1e13 && (double)k / 100 == d) {
		/* Whole numbers and cents, most fines and costs, without
		 * printf: the text %d or %1.15g gives them. */
		char *e = s + sizeof(s), *q = e;
		unsigned long long u = (unsigned long long)llabs(k);
		unsigned cents = (unsigned)(u % 100);
		if (cents) {
			if (cents % 10 == 0)
				cents /= 10;
			else
				*--q = (char)('0' + cents % 10), cents /= 10;
			*--q = (char)('0' + cents);
			*--q = '.';
		}
		u /= 100;
		do
			*--q = (char)('0' + u % 10);
		while (u /= 10);
		if (k < 0)
			*--q = '-';
		return evk_buf_add(b, q, (size_t)(e - q));
	}
	if (d >= INT_MIN && d <= INT_MAX && d == (double)(int)d) {
		snprintf(s, sizeof(s), "%d", (int)d);
	} else {
		double back;
		snprintf(s, sizeof(s), "%1.15g", d);
		if (sscanf(s, "%lg", &back) != 1 || back != d)
			snprintf(s, sizeof(s), "%1.17g", d);
	}
	return evk_buf_addstr(b, s);
}

/* A case's members, in the order it is written as JSON, and the text
 * before each: ids, strings and numbers as JSON values. The offender's
 * three come as null when the case has none. */
#define OFFENDER_ID 4 /* the index of the offender's id */
static const char *const case_keys[EVK_CASE_VALUES] = {
	"{\"id\":", ",\"agency\":{\"id\":", ",\"code\":", ",\"name\":",
	"},\"offender\":{\"id\":", ",\"name\":", ",\"postcode\":", "},\"case_reference\":",
	",\"offence_action_date\":", ",\"offence_fine\":", ",\"offence_costs\":",
	",\"offence_result\":", ",\"inserted_at\":", ",\"updated_at\":", ",\"last_synced_at\":",
};

int
evk_case_values(struct evk_buf *b, const struct evk_case *v)
{
	bool off = v->offender_id != 0;
	bool ok = !evk_buf_addch(b, '\t') && !evk_case_add_text(b, v->id) && !evk_buf_addch(b, '\t') &&
		  !evk_buf_add_u64(b, (uint64_t)v->agency_id) && !evk_buf_addch(b, '\t') &&
		  !evk_case_add_text(b, v->agency_code) && !evk_buf_addch(b, '\t') &&
		  !evk_case_add_text(b, v->agency_name) && !evk_buf_addch(b, '\t');
	if (ok && !off)
		ok = !evk_buf_add(b, "null\tnull\tnull", 14);
	else if (ok)
		ok = !evk_buf_add_u64(b, (uint64_t)v->offender_id) && !evk_buf_addch(b, '\t') &&
		     !evk_case_add_text(b, v->off_name) && !evk_buf_addch(b, '\t') &&
		     !evk_case_add_text(b, v->off_postcode);
	ok = ok && !evk_buf_addch(b, '\t') && !evk_case_add_text(b, v->reference) &&
	     !evk_buf_addch(b, '\t') && !evk_case_add_text(b, v->date) && !evk_buf_addch(b, '\t') &&
	     !add_number(b, v->has_fine, v->fine) && !evk_buf_addch(b, '\t') &&
	     !add_number(b, v->has_costs, v->costs) && !evk_buf_addch(b, '\t') &&
	     !evk_case_add_text(b, v->result) && !evk_buf_addch(b, '\t') && !evk_case_add_text(b, v->inserted) &&
	     !evk_buf_addch(b, '\t') && !evk_case_add_text(b, v->updated) && !evk_buf_addch(b, '\t') &&
	     !evk_case_add_text(b, v->synced);
	return ok ? EVK_OK : EVK_ENOMEM;
}

int
evk_case_layout(struct evk_buf *b, const char *vals, size_t len)
{
	const char *p = vals, *end = vals + len;
	bool no_offender = false;
	for (int i = 0; i < EVK_CASE_VALUES; i++) {
		const char *tab = memchr(p, '\t', (size_t)(end - p)), *v = p;
		if ((tab == NULL) != (i == EVK_CASE_VALUES - 1) || (tab ? tab : end) == v)
			return EVK_EPROTO;
		size_t n = (size_t)((tab ? tab : end) - v);
		const char *key = case_keys[i];
		p = tab ? tab + 1 : end;
		if (i == OFFENDER_ID)
			no_offender = n == 4 && memcmp(v, "null", 4) == 0;
		if (no_offender && i >= OFFENDER_ID && i < OFFENDER_ID + 3) {
			/* No offender object: its three values are null. */
			if (i == OFFENDER_ID && evk_buf_addstr(b, "},\"offender\":null") != EVK_OK)
				return EVK_ENOMEM;
			continue;
		}
		if (no_offender && i == OFFENDER_ID + 3)
			key++; /* no offender object to close */
		if (evk_buf_addstr(b, key) != EVK_OK || evk_buf_add(b, v, n) != EVK_OK)
			return EVK_ENOMEM;
	}
	return evk_buf_addch(b, '}');
}

int
evk_case_write(struct evk_buf *b, const struct evk_case *v)
{
	struct evk_buf vals = EVK_BUF_INIT(0);
	int rv = evk_case_values(&vals, v);
	if (rv == EVK_OK)
		rv = evk_case_layout(b, vals.p + 1, vals.len - 1);
	evk_buf_release(&vals);
	return rv;
}


const char *const evk_case_sort_columns[] = {
	"inserted_at", "updated_at", "offence_action_date", "offence_fine",
	"offence_costs", "case_reference", "last_synced_at", NULL,
};

const char *
evk_case_sort_column(const char *name)
{
	for (int i = 0; evk_case_sort_columns[i]; i++)
		if (strcmp(evk_case_sort_columns[i], name) == 0)
			return evk_case_sort_columns[i];
	return NULL;
}

/* Calls fn on the row q (bound) finds, if any; resets q. */
static int
case_from_q(struct evk_q *q, evk_case_fn fn, void *arg, bool *found)
{
	struct evk_case v;
	int rv = EVK_OK, rc = evk_q_step(q);
	if (rc == EVK_ROW) {
		*found = true;
		evk_case_from_row(q, &v);
		rv = fn(arg, &v);
	} else if (rc != EVK_DONE) {
		rv = EVK_EIO;
	}
	evk_q_reset(q);
	return rv;
}

int
evk_case_with(struct evk_db *db, const char *id, evk_case_fn fn, void *arg, bool *found)
{
	struct evk_q *q = evk_db_q(db, EVK_CASE_SELECT " WHERE c.id = ?");
	*found = false;
	if (q == NULL)
		return EVK_EIO;
	if (evk_q_bind_text(q, 1, id) != EVK_OK) {
		evk_q_reset(q);
		return EVK_EIO;
	}
	return case_from_q(q, fn, arg, found);
}

int
evk_case_with_ref(struct evk_db *db, int64_t agency_id, const char *ref, evk_case_fn fn,
		  void *arg, bool *found)
{
	struct evk_q *q =
		evk_db_q(db, EVK_CASE_SELECT " WHERE c.agency_id = ? AND c.case_reference = ?");
	*found = false;
	if (q == NULL)
		return EVK_EIO;
	if (evk_q_bind_int64(q, 1, agency_id) != EVK_OK || evk_q_bind_text(q, 2, ref) != EVK_OK) {
		evk_q_reset(q);
		return EVK_EIO;
	}
	return case_from_q(q, fn, arg, found);
}

/* The offender filter as a LIKE pattern: %, _ and \ stand for themselves. */
static int
like_escape(struct evk_buf *esc, const char *s)
{
	for (const char *p = s; *p; p++) {
		if ((*p == '%' || *p == '_' || *p == '\\') && evk_buf_addch(esc, '\\') != EVK_OK)
			return EVK_ENOMEM;
		if (evk_buf_addch(esc, *p) != EVK_OK)
			return EVK_ENOMEM;
	}
	return evk_buf_addch(esc, '\0');
}

/* Whether a sort column may hold NULL: SQLite sorts NULL first going up
 * and last going down, PostgreSQL the other way unless told. */
static bool
nullable(const char *col)
{
	return strcmp(col, "inserted_at") != 0 && strcmp(col, "updated_at") != 0 &&
	       strcmp(col, "case_reference") != 0;
}

int
evk_cases_list(struct evk_db *db, const struct evk_case_filter *f, evk_case_fn fn, void *arg)
{
	char sql[1024];
	const char *col = f->sort ? evk_case_sort_column(f->sort) : "updated_at";
	bool pg = evk_db_dialect(db) == EVK_DB_POSTGRES;
	struct evk_buf esc = EVK_BUF_INIT(0);
	int rv = EVK_OK, rc;

	if (col == NULL)
		return EVK_EINVAL;
	/* The dialects differ in two words: SQLite's LIKE ignores ASCII
	 * case, PostgreSQL's ILIKE does; and where NULL sorts. */
	snprintf(sql, sizeof(sql),
		 EVK_CASE_SELECT
		 " WHERE (CAST(?1 AS TEXT) IS NULL OR a.code = ?1)"
		 " AND (CAST(?2 AS TEXT) IS NULL OR o.name %s '%%' || ?2 || '%%' ESCAPE '\\')"
		 " AND (CAST(?3 AS TEXT) IS NULL OR c.updated_at >= ?3)"
		 " ORDER BY c.%s %s, c.id LIMIT ?4",
		 pg ? "ILIKE" : "LIKE", col,
		 f->sort ? (pg && nullable(col) ? "ASC NULLS FIRST" : "ASC")
			 : (pg && nullable(col) ? "DESC NULLS LAST" : "DESC"));
	struct evk_q *q = evk_db_q(db, sql);
	if (q == NULL)
		return EVK_EIO;
	if (f->offender && (rv = like_escape(&esc, f->offender)) != EVK_OK)
		goto out;
	if (evk_q_bind_text(q, 1, f->agency) != EVK_OK ||
	    evk_q_bind_text(q, 2, f->offender ? esc.p : NULL) != EVK_OK ||
	    evk_q_bind_text(q, 3, f->since) != EVK_OK ||
	    evk_q_bind_int64(q, 4, f->limit) != EVK_OK) {
		rv = EVK_EIO;
		goto out;
	}
	while ((rc = evk_q_step(q)) == EVK_ROW) {
		struct evk_case v;
		evk_case_from_row(q, &v);
		if ((rv = fn(arg, &v)) != EVK_OK)
			goto out;
	}
	if (rc != EVK_DONE)
		rv = EVK_EIO;
out:
	evk_q_reset(q);
	evk_buf_release(&esc);
	return rv;
}

/* One keep_live item from the current row of evk_cases_recent's query. */
static cJSON *
recent_item(struct evk_q *q)
{
	static const char *const names[] = { "id", "agency", "case_reference", "offender",
					     "offence_fine", "updated_at" };
	cJSON *it = cJSON_CreateObject();
	if (it == NULL)
		return NULL;
	for (int i = 0; i < 6; i++) {
		cJSON *v = evk_q_is_null(q, i) ? cJSON_CreateNull()
			   : i == 4	       ? cJSON_CreateNumber(evk_q_double(q, i))
					       : cJSON_CreateString(evk_q_text(q, i));
		if (v == NULL || !cJSON_AddItemToObject(it, names[i], v)) {
			cJSON_Delete(v);
			cJSON_Delete(it);
			return NULL;
		}
	}
	return it;
}

int
evk_cases_recent(struct evk_db *db, long limit, cJSON *items)
{
	struct evk_q *q = evk_db_q(
		db, "SELECT c.id, a.code, c.case_reference, o.name, c.offence_fine, c.updated_at"
		    " FROM cases c JOIN agencies a ON a.id = c.agency_id"
		    " LEFT JOIN offenders o ON o.id = c.offender_id ORDER BY c.updated_at DESC, c.id"
		    " LIMIT ?");
	int rv = EVK_OK, rc = EVK_DONE;
	if (q == NULL)
		return EVK_EIO;
	if (evk_q_bind_int64(q, 1, limit) != EVK_OK)
		rv = EVK_EIO;
	while (rv == EVK_OK && (rc = evk_q_step(q)) == EVK_ROW) {
		cJSON *it = recent_item(q);
		if (it == NULL || !cJSON_AddItemToArray(items, it)) {
			cJSON_Delete(it);
			rv = EVK_ENOMEM;
		}
	}
	if (rv == EVK_OK && rc != EVK_DONE)
		rv = EVK_EIO; /* a read cut short is not the whole list */
	evk_q_reset(q);
	return rv;
}

int
evk_cases_open(struct evk_db *db, const char *path)
{
	return evk_db_open(db, path, "cases.db", false, evk_cases_migrations,
			   EVK_CASES_MIGRATIONS);
}

int
evk_cases_reconnect(struct evk_db *db, bool *reopened)
{
	char path[EVK_DB_PATH_MAX];
	*reopened = false;
	if (!evk_db_lost(db) && (db->sq || db->pg))
		return EVK_OK;
	*reopened = true;
	snprintf(path, sizeof(path), "%s", db->path);
	evk_db_close(db);
	return evk_cases_open(db, path);
}
