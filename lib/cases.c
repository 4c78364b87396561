/* The enforcement case resource (include/evkit/cases.h): its schema, the
 * case view, its JSON and its queries. */
#include "evkit/cases.h"

#include "evkit/db.h"
#include "evkit/err.h"
#include "evkit/outbox.h"
#include "evkit/store.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	  " payload TEXT NOT NULL);", NULL },
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
	  "ALTER TABLE outbox2 RENAME TO outbox;", NULL },
	/* 3: the outbox moves to table notifications, whose rows may hold
	 * notes instead of lines (format 3): one per notification,
	 * "ts\taction\tpast\tid\tpayload\n", expanded into its two event
	 * lines when sent; half the bytes to write. Table outbox goes, so an
	 * older casectl stops at it instead of sending notes as lines. */
	{ "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	  " count INTEGER NOT NULL, lines BLOB NOT NULL, format INTEGER NOT NULL);"
	  "INSERT INTO notifications (id, count, lines, format)"
	  " SELECT id, count, lines, 2 FROM outbox ORDER BY id;"
	  "DROP TABLE outbox;", NULL },
	/* 4: how many of a row's event lines the hub already acknowledged:
	 * a delivery cut short resumes after them instead of sending them
	 * again. */
	{ "ALTER TABLE notifications ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;", NULL },
	/* 5: rows may hold notes of format 4 (values without member names,
	 * the payload built when sent). The table is renamed so that an
	 * older casectl stops at it instead of sending such notes as they
	 * are; its rows keep their own format. */
	{ "ALTER TABLE notifications RENAME TO notes;", NULL },
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
	  "DROP TABLE note3;" EVK_OUTBOX_PRODUCER_SCHEMA, NULL },
};

void
evk_case_from_row(sqlite3_stmt *st, struct evk_case *v)
{
#define TEXT(i) ((const char *)sqlite3_column_text(st, (i)))
	*v = (struct evk_case){
		.id = TEXT(0), .agency_id = sqlite3_column_int64(st, 1),
		.agency_code = TEXT(2), .agency_name = TEXT(3), .reference = TEXT(4),
		.offender_id = sqlite3_column_int64(st, 5), .off_name = TEXT(6),
		.off_postcode = TEXT(7), .date = TEXT(8),
		.has_fine = sqlite3_column_type(st, 9) != SQLITE_NULL,
		.fine = sqlite3_column_double(st, 9),
		.has_costs = sqlite3_column_type(st, 10) != SQLITE_NULL,
		.costs = sqlite3_column_double(st, 10), .result = TEXT(11),
		.inserted = TEXT(12), .updated = TEXT(13), .synced = TEXT(14),
	};
#undef TEXT
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

int
evk_case_with(sqlite3 *db, const char *id, evk_case_fn fn, void *arg, bool *found)
{
	sqlite3_stmt *st = evk_store_stmt(db, EVK_CASE_SELECT " WHERE c.id = ?");
	struct evk_case v;
	int rv = EVK_OK;

	*found = false;
	if (st == NULL)
		return EVK_EIO;
	if (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) != SQLITE_OK) {
		sqlite3_reset(st);
		return EVK_EIO;
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*found = true;
		evk_case_from_row(st, &v);
		rv = fn(arg, &v);
	} else if (rc != SQLITE_DONE) {
		rv = EVK_EIO;
	}
	sqlite3_reset(st);
	return rv;
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

int
evk_cases_list(sqlite3 *db, const struct evk_case_filter *f, evk_case_fn fn, void *arg)
{
	char sql[1024];
	const char *col = f->sort ? evk_case_sort_column(f->sort) : "updated_at";
	struct evk_buf esc = EVK_BUF_INIT(0);
	int rv = EVK_OK, rc;

	if (col == NULL)
		return EVK_EINVAL;
	snprintf(sql, sizeof(sql),
		 EVK_CASE_SELECT " WHERE (?1 IS NULL OR a.code = ?1)"
				 " AND (?2 IS NULL OR o.name LIKE '%%' || ?2 || '%%' ESCAPE '\\')"
				 " AND (?3 IS NULL OR c.updated_at >= ?3)"
				 " ORDER BY c.%s %s, c.id LIMIT ?4",
		 col, f->sort ? "ASC" : "DESC");
	sqlite3_stmt *st = evk_store_stmt(db, sql);
	if (st == NULL)
		return EVK_EIO;
	if (f->offender && (rv = like_escape(&esc, f->offender)) != EVK_OK)
		goto out;
	if ((f->agency ? sqlite3_bind_text(st, 1, f->agency, -1, SQLITE_STATIC)
		       : sqlite3_bind_null(st, 1)) != SQLITE_OK ||
	    (f->offender ? sqlite3_bind_text(st, 2, esc.p, -1, SQLITE_STATIC)
			 : sqlite3_bind_null(st, 2)) != SQLITE_OK ||
	    (f->since ? sqlite3_bind_text(st, 3, f->since, -1, SQLITE_STATIC)
		      : sqlite3_bind_null(st, 3)) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 4, f->limit) != SQLITE_OK) {
		rv = EVK_EIO;
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct evk_case v;
		evk_case_from_row(st, &v);
		if ((rv = fn(arg, &v)) != EVK_OK)
			goto out;
	}
	if (rc != SQLITE_DONE)
		rv = EVK_EIO;
out:
	sqlite3_reset(st);
	evk_buf_release(&esc);
	return rv;
}

int
evk_cases_recent(sqlite3 *db, long limit, cJSON *items)
{
	sqlite3_stmt *st = evk_store_stmt(
		db, "SELECT json_object('id', c.id, 'agency', a.code, 'case_reference',"
		    " c.case_reference, 'offender', o.name, 'offence_fine', c.offence_fine,"
		    " 'updated_at', c.updated_at) FROM cases c JOIN agencies a ON a.id = c.agency_id"
		    " LEFT JOIN offenders o ON o.id = c.offender_id ORDER BY c.updated_at DESC, c.id"
		    " LIMIT ?");
	int rv = EVK_OK, rc = SQLITE_DONE;
	if (st == NULL)
		return EVK_EIO;
	if (sqlite3_bind_int64(st, 1, limit) != SQLITE_OK)
		rv = EVK_EIO;
	while (rv == EVK_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* SQLite's json_object: a NULL text or a failed parse is
		 * memory run out */
		const char *row = (const char *)sqlite3_column_text(st, 0);
		cJSON *it = row ? cJSON_Parse(row) : NULL;
		if (it == NULL || !cJSON_AddItemToArray(items, it)) {
			cJSON_Delete(it);
			rv = EVK_ENOMEM;
		}
	}
	if (rv == EVK_OK && rc != SQLITE_DONE)
		rv = EVK_EIO; /* a read cut short is not the whole list */
	sqlite3_reset(st);
	return rv;
}
