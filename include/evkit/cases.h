/* The enforcement case resource, shared by casectl (which owns the
 * database) and widgetd (which reads it for keep_live lists): the
 * schema, a case as one view, its JSON text and the queries, on either
 * store of include/evkit/db.h (SQLite or PostgreSQL). Never prints or
 * exits; a database failure is EVK_EIO with the reason in
 * evk_db_error(db). */
#ifndef EVKIT_CASES_H
#define EVKIT_CASES_H

#include "evkit/buf.h"
#include "evkit/db.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* The schema's migrations, for evk_db_open: the cases, agencies,
 * offenders, users and the outbox (table notes, lib/outbox.c). One
 * definition; PostgreSQL, which has no databases of casectl 0.1 to
 * upgrade, starts at the current schema in its first step. */
#define EVK_CASES_MIGRATIONS 6
extern const struct evk_migration evk_cases_migrations[EVK_CASES_MIGRATIONS];

/* The columns of a case and what it loads, in evk_case_from_row's order. */
#define EVK_CASE_SELECT                                                                 \
	"SELECT c.id, a.id, a.code, a.name, c.case_reference, o.id, o.name, o.postcode," \
	" c.offence_action_date, c.offence_fine, c.offence_costs, c.offence_result,"    \
	" c.inserted_at, c.updated_at, c.last_synced_at"                                \
	" FROM cases c JOIN agencies a ON a.id = c.agency_id"                           \
	" LEFT JOIN offenders o ON o.id = c.offender_id"

/* One case, agency and offender loaded: the fields of an EVK_CASE_SELECT
 * row, or of a case just written (no read-back). Its strings belong to
 * whoever filled it (a row: until the statement moves on). A NULL string
 * is JSON null; offender_id 0 means no offender. */
struct evk_case {
	const char *id, *reference, *agency_code, *agency_name;
	int64_t agency_id, offender_id;
	const char *off_name, *off_postcode, *date, *result;
	bool has_fine, has_costs;
	double fine, costs;
	const char *inserted, *updated, *synced;
};

/* Fills v from the current row of an EVK_CASE_SELECT statement. */
void evk_case_from_row(struct evk_q *q, struct evk_case *v);

/* Appends s as a JSON string, or null for NULL. */
int evk_case_add_text(struct evk_buf *b, const char *s);

/* A case as JSON, in two steps that may be apart (casectl's outbox keeps
 * the values and lays them out when it sends): evk_case_values appends
 * the case's EVK_CASE_VALUES members as JSON values, each after a tab
 * (which JSON text holds only escaped); evk_case_layout appends the case
 * whose values those are (without their first tab: vals[0..len)) as one
 * JSON object, EVK_EPROTO when vals does not hold EVK_CASE_VALUES values.
 * Numbers are written as cJSON prints them. evk_case_write does both. */
#define EVK_CASE_VALUES 15
int evk_case_values(struct evk_buf *b, const struct evk_case *v);
int evk_case_layout(struct evk_buf *b, const char *vals, size_t len);
int evk_case_write(struct evk_buf *b, const struct evk_case *v);

/* Called with each case a query finds; a non-zero return stops the query
 * and is returned. v lives until the callback returns. */
typedef int (*evk_case_fn)(void *arg, const struct evk_case *v);

/* Calls fn on the case id (evk_case_with_ref: of reference ref of agency
 * agency_id); *found says whether there is one. */
int evk_case_with(struct evk_db *db, const char *id, evk_case_fn fn, void *arg, bool *found);
int evk_case_with_ref(struct evk_db *db, int64_t agency_id, const char *ref, evk_case_fn fn,
		      void *arg, bool *found);

/* The list: cases of an agency code, whose offender's name holds a text,
 * changed since a timestamp (each NULL: any), newest change first or
 * sorted (ascending) by a column of evk_case_sort_columns; at most limit. */
struct evk_case_filter {
	const char *agency, *offender, *since, *sort;
	long limit;
};
/* The columns a list may be sorted by, NULL-terminated. */
extern const char *const evk_case_sort_columns[];
/* name as one of evk_case_sort_columns, or NULL. */
const char *evk_case_sort_column(const char *name);
/* EVK_EINVAL: f->sort is not a sort column. */
int evk_cases_list(struct evk_db *db, const struct evk_case_filter *f, evk_case_fn fn, void *arg);

/* The limit most recently changed cases (id, agency, case_reference,
 * offender, offence_fine, updated_at), appended to the array items: the
 * keep_live widget's list. EVK_EIO when the database failed (some rows
 * may have been appended), EVK_ENOMEM. */
int evk_cases_recent(struct evk_db *db, long limit, cJSON *items);

/* Opens casectl's existing database at path (a file or a PostgreSQL
 * connection string, as casectl --db takes) for a reader such as
 * widgetd: never creates it. As evk_db_open. */
int evk_cases_open(struct evk_db *db, const char *path);

/* Opens db again at its own path when its PostgreSQL connection was lost
 * (a server restart, a failover) or an earlier reopening failed: a
 * long-running reader's way back. EVK_OK when db is open, *reopened
 * saying whether it was opened again (false: nothing was lost); else as
 * evk_db_open, db left closed (the next call tries again). */
int evk_cases_reconnect(struct evk_db *db, bool *reopened);

#endif
