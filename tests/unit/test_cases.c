/* A case as JSON (values, then laid out) and the case queries. */
#include "evkit/cases.h"
#include "evkit/err.h"
#include "evkit/store.h"

#include "check.h"

#include <string.h>

static const struct {
	double fine;
	const char *text;
} numbers[] = {
	{ 12000, "12000" }, { 1450.5, "1450.5" }, { 0.07, "0.07" }, { -3.25, "-3.25" },
	{ 1e15, "1e+15" },  { 0.1234, "0.1234" }, { 2147483647, "2147483647" },
};

static int
count(void *arg, const struct evk_case *v)
{
	(void)v;
	(*(int *)arg)++;
	return 0;
}

int
main(void)
{
	struct evk_case v = {
		.id = "c-1", .reference = "R\"1", .agency_code = "hse", .agency_name = "hse",
		.agency_id = 1, .offender_id = 2, .off_name = "Acme", .off_postcode = NULL,
		.date = "2024-03-01", .has_fine = true, .fine = 12000, .inserted = "t1",
		.updated = "t2",
	};
	struct evk_buf b = EVK_BUF_INIT(0);

	CHECK(evk_case_write(&b, &v) == EVK_OK, "write");
	CHECK(evk_buf_addch(&b, '\0') == EVK_OK &&
		      strcmp(b.p, "{\"id\":\"c-1\",\"agency\":{\"id\":1,\"code\":\"hse\",\"name\":\"hse\"},"
				  "\"offender\":{\"id\":2,\"name\":\"Acme\",\"postcode\":null},"
				  "\"case_reference\":\"R\\\"1\",\"offence_action_date\":\"2024-03-01\","
				  "\"offence_fine\":12000,\"offence_costs\":null,\"offence_result\":null,"
				  "\"inserted_at\":\"t1\",\"updated_at\":\"t2\",\"last_synced_at\":null}") == 0,
	      "case JSON: %s", b.p);
	v.offender_id = 0;
	evk_buf_reset(&b);
	CHECK(evk_case_write(&b, &v) == EVK_OK && evk_buf_addch(&b, '\0') == EVK_OK &&
		      strstr(b.p, "\"name\":\"hse\"},\"offender\":null,\"case_reference\"") != NULL,
	      "no offender: %s", b.p);
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		char want[64];
		v.fine = numbers[i].fine;
		evk_buf_reset(&b);
		snprintf(want, sizeof(want), "\"offence_fine\":%s,", numbers[i].text);
		CHECK(evk_case_write(&b, &v) == EVK_OK && evk_buf_addch(&b, '\0') == EVK_OK &&
			      strstr(b.p, want) != NULL, "number %s: %s", numbers[i].text, b.p);
	}
	/* Values that are not a case's are refused, not laid out. */
	evk_buf_reset(&b);
	CHECK(evk_case_layout(&b, "\"a\"\t1", 5) == EVK_EPROTO, "too few values");
	CHECK(evk_case_layout(&b, "", 0) == EVK_EPROTO, "no values");

	/* The schema and the queries. */
	struct evk_db db;
	int n = 0;
	bool found;
	CHECK(evk_db_open(&db, ":memory:", "cases.db", true, evk_cases_migrations,
			  EVK_CASES_MIGRATIONS) == EVK_OK,
	      "open and migrate");
	CHECK(evk_db_exec(&db, "INSERT INTO agencies VALUES (1, 'hse', 'hse');"
			       "INSERT INTO cases (id, agency_id, case_reference, inserted_at,"
			       " updated_at, offence_fine) VALUES ('c-1', 1, 'R1', 't', 't', NULL),"
			       " ('c-2', 1, 'R2', 't', 'u', 12000.0)") == EVK_OK, "rows");
	struct evk_case_filter f = { .limit = 10 };
	CHECK(evk_cases_list(&db, &f, count, &n) == EVK_OK && n == 2, "list %d", n);
	f.since = "u";
	n = 0;
	CHECK(evk_cases_list(&db, &f, count, &n) == EVK_OK && n == 1, "since %d", n);
	f.sort = "id; DROP TABLE cases";
	CHECK(evk_cases_list(&db, &f, count, &n) == EVK_EINVAL, "bad sort refused");
	n = 0;
	CHECK(evk_case_with(&db, "c-2", count, &n, &found) == EVK_OK && found && n == 1, "get");
	CHECK(evk_case_with(&db, "c-9", count, &n, &found) == EVK_OK && !found, "no case");
	/* keep_live's items: the newest change first, a REAL fine as the
	 * number cJSON prints, no offender as null. */
	cJSON *items = cJSON_CreateArray();
	CHECK(evk_cases_recent(&db, 2, items) == EVK_OK && cJSON_GetArraySize(items) == 2,
	      "recent");
	char *text = cJSON_PrintUnformatted(items);
	CHECK(text && strcmp(text, "[{\"id\":\"c-2\",\"agency\":\"hse\",\"case_reference\":\"R2\","
				   "\"offender\":null,\"offence_fine\":12000,\"updated_at\":\"u\"},"
				   "{\"id\":\"c-1\",\"agency\":\"hse\",\"case_reference\":\"R1\","
				   "\"offender\":null,\"offence_fine\":null,\"updated_at\":\"t\"}]") == 0,
	      "recent items: %s", text ? text : "(none)");
	cJSON_free(text);
	cJSON_Delete(items);
	CHECK(evk_db_close(&db) == EVK_OK, "close");
	evk_buf_release(&b);
	return check_done("cases");
}
