/* PostgreSQL under lib/db.c: the connection opened and its schema
 * migrated, and the pipeline that sends statements without waiting and
 * reads their answers together (include/evkit/db.h, lib/db_impl.h). */
#include "db_impl.h"

#include "evkit/err.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* db->why from libpq's message (one line, no trailing newline); notes a
 * connection that went. */
void
pg_why(struct evk_db *db, const char *msg)
{
	if (msg && strncmp(msg, "ERROR:  ", 8) == 0)
		msg += 8;
	if (msg && strncmp(msg, "FATAL:  ", 8) == 0)
		msg += 8;
	snprintf(db->why, sizeof(db->why), "%s", msg && *msg ? msg : "unknown error");
	/* The first line: what went wrong (the rest points into the SQL). */
	db->why[strcspn(db->why, "\n")] = '\0';
	size_t n = strlen(db->why);
	while (n > 0 && db->why[n - 1] == ' ')
		db->why[--n] = '\0';
	if (db->pg && PQstatus(db->pg) == CONNECTION_BAD)
		db->lost = true;
	if (db->in_tx)
		db->tx_failed = true;
}

static void
no_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message; /* lib/ never prints */
}

/* ---- the pipeline (PostgreSQL) ----
 * Statements whose answer can wait (evk_db_send, evk_q_send, BEGIN, the
 * unlocks after a COMMIT) are sent in libpq's pipeline mode and answered
 * together with the next statement that waits: one round trip for all. */

/* Sends a statement without waiting for its answer: the kept statement
 * name, or sql with n text parameters. */
int
pg_send(struct evk_db *db, const char *name, const char *sql, int n, const char *const *vals,
	const int *lens, const int *fmts)
{
	if (PQpipelineStatus(db->pg) == PQ_PIPELINE_OFF && !PQenterPipelineMode(db->pg)) {
		pg_why(db, PQerrorMessage(db->pg));
		return EVK_EIO;
	}
	int sent = name ? PQsendQueryPrepared(db->pg, name, n, vals, lens, fmts, 0)
			: PQsendQueryParams(db->pg, sql, n, NULL, vals, lens, fmts, 0);
	if (!sent) {
		pg_why(db, PQerrorMessage(db->pg));
		return EVK_EIO;
	}
	db->npiped++;
	return EVK_OK;
}

/* Reads one statement's answer from the pipeline: *failed set, with
 * the reason in db->why, at the first failure; *kept the answer when
 * keep. False when the connection gave nothing. */
static bool
pg_read_one(struct evk_db *db, bool keep, PGresult **kept, bool *failed)
{
	PGresult *res;
	bool any = false;
	while ((res = PQgetResult(db->pg)) != NULL) {
		ExecStatusType s = PQresultStatus(res);
		bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
		any = true;
		if (!ok && !*failed) {
			pg_why(db, s == PGRES_PIPELINE_ABORTED
					   ? "an earlier statement of the transaction failed"
					   : PQresultErrorMessage(res));
			*failed = true;
		}
		if (ok && keep && *kept == NULL)
			*kept = res;
		else
			PQclear(res);
	}
	return any;
}

/* Ends the pipeline, if one is open: a sync, then the answers to the
 * statements sent, in order; *wanted (when not NULL) the answer to
 * statement want (0-based, of those sent), for the caller to clear.
 * EVK_EIO, with db->why from the first failure, when any failed (then
 * *wanted is NULL). */
int
pg_sync(struct evk_db *db, int want, PGresult **wanted)
{
	int n = db->npiped;
	bool failed = false;
	PGresult *kept = NULL;
	if (wanted)
		*wanted = NULL;
	db->npiped = 0;
	if (PQpipelineStatus(db->pg) == PQ_PIPELINE_OFF)
		return EVK_OK;
	if (!PQpipelineSync(db->pg)) {
		pg_why(db, PQerrorMessage(db->pg));
		failed = true;
		n = 0;
	}
	for (int i = 0; i < n; i++)
		if (!pg_read_one(db, wanted && i == want, &kept, &failed)) {
			if (!failed)
				pg_why(db, PQerrorMessage(db->pg));
			failed = true;
			break;
		}
	PGresult *res = failed && PQstatus(db->pg) == CONNECTION_BAD ? NULL : PQgetResult(db->pg);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		if (!failed)
			pg_why(db, PQerrorMessage(db->pg));
		failed = true;
	}
	PQclear(res);
	if (!PQexitPipelineMode(db->pg) && !failed) {
		pg_why(db, PQerrorMessage(db->pg));
		failed = true;
	}
	/* A server that went says so in the first answer, before libpq
	 * finds the connection closed. */
	if (PQstatus(db->pg) == CONNECTION_BAD)
		db->lost = true;
	if (failed) {
		PQclear(kept);
		return EVK_EIO;
	}
	if (wanted)
		*wanted = kept;
	else
		PQclear(kept);
	return EVK_OK;
}

/* Runs sql (no parameters), after the statements sent before; *res the
 * result when rows are wanted. */
int
pg_exec(struct evk_db *db, const char *sql, PGresult **rows)
{
	int before = pg_sync(db, -1, NULL);
	PGresult *res = PQexec(db->pg, sql);
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		if (before == EVK_OK)
			pg_why(db, res ? PQresultErrorMessage(res) : PQerrorMessage(db->pg));
		PQclear(res);
		return EVK_EIO;
	}
	if (before != EVK_OK) {
		PQclear(res);
		return EVK_EIO;
	}
	if (rows)
		*rows = res;
	else
		PQclear(res);
	return EVK_OK;
}

/* The schema's version: -1 when it has no table evk_schema yet. */
static int
pg_version(struct evk_db *db, int *version)
{
	PGresult *res;
	*version = -1;
	if (pg_exec(db, "SELECT version FROM evk_schema", &res) != EVK_OK) {
		/* 42P01: undefined_table. */
		return EVK_EIO;
	}
	if (PQntuples(res) == 1)
		*version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return EVK_OK;
}

/* Whether table evk_schema exists in the schema searched. */
static int
pg_has_schema(struct evk_db *db, bool *has)
{
	PGresult *res;
	if (pg_exec(db, "SELECT to_regclass('evk_schema') IS NOT NULL", &res) != EVK_OK)
		return EVK_EIO;
	*has = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return EVK_OK;
}

/* Applies the missing migrations in one transaction, under an advisory
 * lock of the schema's own, so that processes opening at once apply each
 * once. */
static int
pg_migrate(struct evk_db *db, const char *schema, const struct evk_migration *m, int n)
{
	char sql[512];
	char *id = PQescapeIdentifier(db->pg, schema, strlen(schema));
	char *lit = PQescapeLiteral(db->pg, schema, strlen(schema));
	int version, rv = EVK_EIO;
	if (id == NULL || lit == NULL) {
		pg_why(db, PQerrorMessage(db->pg));
		goto out;
	}
	if (pg_exec(db, "BEGIN", NULL) != EVK_OK)
		goto out;
	snprintf(sql, sizeof(sql),
		 "SELECT pg_advisory_xact_lock(2121, hashtext(%s));"
		 "CREATE SCHEMA IF NOT EXISTS %s;"
		 "CREATE TABLE IF NOT EXISTS evk_schema (version INTEGER NOT NULL);"
		 "INSERT INTO evk_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM evk_schema)",
		 lit, id);
	if (pg_exec(db, sql, NULL) != EVK_OK || pg_version(db, &version) != EVK_OK)
		goto rollback;
	for (; version < n; version++) {
		const char *step = m[version].pg ? m[version].pg : m[version].sql;
		snprintf(sql, sizeof(sql), "UPDATE evk_schema SET version = %d", version + 1);
		if ((*step && pg_exec(db, step, NULL) != EVK_OK) || pg_exec(db, sql, NULL) != EVK_OK)
			goto rollback;
	}
	if (pg_exec(db, "COMMIT", NULL) == EVK_OK)
		rv = EVK_OK;
	goto out;
rollback:
	{
		char why[sizeof(db->why)];
		memcpy(why, db->why, sizeof(why));
		pg_exec(db, "ROLLBACK", NULL);
		memcpy(db->why, why, sizeof(why));
	}
out:
	PQfreemem(id);
	PQfreemem(lit);
	return rv;
}

int
pg_open(struct evk_db *db, const char *default_name, bool create, const struct evk_migration *m,
	int n)
{
	char schema[64], sql[160];
	snprintf(schema, sizeof(schema), "%s", default_name);
	char *dot = strstr(schema, ".db");
	if (dot)
		*dot = '\0';

	db->pg = PQconnectdb(db->path);
	if (db->pg == NULL || PQstatus(db->pg) != CONNECTION_OK) {
		pg_why(db, db->pg ? PQerrorMessage(db->pg) : "out of memory");
		db->lost = false;
		db_set_err(db, "cannot connect to the database: %s", db->why);
		goto fail;
	}
	PQsetNoticeProcessor(db->pg, no_notices, NULL);
	char *id = PQescapeIdentifier(db->pg, schema, strlen(schema));
	if (id == NULL) {
		pg_why(db, PQerrorMessage(db->pg));
		evk_db_fail(db, "cannot set up the database");
		goto fail;
	}
	snprintf(sql, sizeof(sql), "SET search_path TO %s", id);
	PQfreemem(id);
	bool has = false;
	int version = -1;
	if (pg_exec(db, sql, NULL) != EVK_OK || pg_has_schema(db, &has) != EVK_OK ||
	    (has && pg_version(db, &version) != EVK_OK)) {
		evk_db_fail(db, "cannot set up the database");
		goto fail;
	}
	if (!has && !create) {
		db_set_err(db, "no database: schema '%s' has no tables", schema);
		PQfinish(db->pg);
		db->pg = NULL;
		return EVK_EUNAVAIL;
	}
	if (version < n && pg_migrate(db, schema, m, n) != EVK_OK) {
		evk_db_fail(db, "cannot set up the database");
		goto fail;
	}
	return EVK_OK;
fail:
	PQfinish(db->pg);
	db->pg = NULL;
	return EVK_EIO;
}
