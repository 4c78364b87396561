/* The dashboard's layout: rows that fit, a stable order, errors shown,
 * nothing but printable ASCII. */
#include "evkit/dashboard.h"

#include "check.h"

#include <string.h>

static bool
printable(const char *s)
{
	for (; *s; s++)
		if (*s < ' ' || *s > '~')
			return false;
	return true;
}

static void
test_rows(void)
{
	static const char *const widgets[] = {
		"{\"id\":\"progress-wf1\",\"type\":\"progress\",\"workflow_id\":\"wf1\",\"percentage\":50,"
		"\"activities\":[{\"step\":\"validate\",\"status\":\"running\"}],\"updates\":[]}",
		"{\"id\":\"progress-wf2\",\"type\":\"progress\",\"workflow_id\":\"wf2\",\"percentage\":20,"
		"\"status\":\"failed\",\"error\":\"exit 3\",\"activities\":[],\"updates\":[]}",
		"{\"id\":\"result-wf3\",\"type\":\"result\",\"workflow_id\":\"wf3\",\"status\":\"completed\","
		"\"percentage\":100}",
		"{\"id\":\"session-cases\",\"type\":\"session\",\"active\":true,\"started_at\":\"t\","
		"\"items\":[{\"id\":\"c1\",\"case_reference\":\"HSE/\\u001b[2J1\"}]}",
		"{\"id\":\"case-events\",\"type\":\"counter\",\"counts\":{\"create\":3,\"sync\":1}}",
		"{\"id\":\"recent\",\"type\":\"keep_live\",\"items\":[{\"case_reference\":\"R1\"}],\"queries\":4}",
		"{\"id\":\"progress-wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww\","
		"\"type\":\"progress\",\"workflow_id\":\"w\",\"percentage\":150,\"activities\":[],\"updates\":[]}",
	};
	cJSON *list = cJSON_CreateArray();
	char row[EVK_DASH_WIDTH_MAX + 1];
	for (size_t i = 0; i < sizeof(widgets) / sizeof(widgets[0]); i++)
		cJSON_AddItemToArray(list, cJSON_Parse(widgets[i]));
	for (int width = 1; width <= 300; width++) {
		int idw = evk_dash_id_width(list, width);
		const cJSON *w;
		cJSON_ArrayForEach(w, list) {
			evk_dash_row(w, width, idw, row);
			CHECK((int)strlen(row) <= width && printable(row), "width %d: '%s'", width, row);
		}
		evk_dash_header(row, width, "ipc:///tmp/a/very/long/path/to/the/bus", "12:34:56", width % 2);
		CHECK((int)strlen(row) <= width, "header at %d: '%s'", width, row);
		CHECK(width < 16 || strstr(row, width % 2 ? "connected" : "DISCONNECTED"),
		      "the mark at %d: '%s'", width, row);
		CHECK(width < 30 || strstr(row, "12:34:56"), "the clock at %d: '%s'", width, row);
	}
	int idw = evk_dash_id_width(list, 80);
	CHECK(evk_dash_row(cJSON_GetArrayItem(list, 0), 80, idw, row) == EVK_DASH_NORMAL &&
		      strstr(row, "progress-wf1") == row && strstr(row, "] ") && strstr(row, " 50.0% running validate"),
	      "progress: '%s'", row);
	CHECK(evk_dash_row(cJSON_GetArrayItem(list, 1), 80, idw, row) == EVK_DASH_FAILED &&
		      strstr(row, " 20.0% failed: exit 3"),
	      "failure and its error: '%s'", row);
	CHECK(evk_dash_row(cJSON_GetArrayItem(list, 2), 80, idw, row) == EVK_DASH_DONE &&
		      strstr(row, "100.0% completed"),
	      "result: '%s'", row);
	evk_dash_row(cJSON_GetArrayItem(list, 3), 80, idw, row);
	CHECK(strstr(row, "active, 1 items: HSE/?[2J1"), "escape shown as '?': '%s'", row);
	evk_dash_row(cJSON_GetArrayItem(list, 4), 80, idw, row);
	CHECK(strstr(row, " create 3 sync 1"), "counts: '%s'", row);
	evk_dash_row(cJSON_GetArrayItem(list, 6), 80, idw, row);
	CHECK(strstr(row, "~ [") && strstr(row, "150.0%"), "long id cut, bar full: '%s'", row);
	cJSON_Delete(list);
}

/* Rows keep their place: an update in place, a result on its progress
 * widget's row, a new widget last, a removal closes up. */
static void
test_order(void)
{
	cJSON *list = cJSON_CreateArray();
	evk_dash_put(list, "a", cJSON_Parse("{\"id\":\"a\",\"type\":\"counter\"}"));
	evk_dash_put(list, "progress-wf", cJSON_Parse("{\"id\":\"progress-wf\",\"type\":\"progress\",\"workflow_id\":\"wf\"}"));
	evk_dash_put(list, "b", cJSON_Parse("{\"id\":\"b\",\"type\":\"counter\"}"));
	evk_dash_put(list, "a", cJSON_Parse("{\"id\":\"a\",\"type\":\"counter\",\"counts\":{\"x\":1}}"));
	evk_dash_put(list, "result-wf", cJSON_Parse("{\"id\":\"result-wf\",\"type\":\"result\",\"workflow_id\":\"wf\"}"));
	evk_dash_put(list, "progress-wf", NULL);
	evk_dash_put(list, "c", cJSON_Parse("{\"id\":\"c\",\"type\":\"counter\"}"));
	char *s = cJSON_PrintUnformatted(list);
	CHECK(strcmp(s, "[{\"id\":\"a\",\"type\":\"counter\",\"counts\":{\"x\":1}},"
			"{\"id\":\"result-wf\",\"type\":\"result\",\"workflow_id\":\"wf\"},"
			"{\"id\":\"b\",\"type\":\"counter\"},{\"id\":\"c\",\"type\":\"counter\"}]") == 0,
	      "order: %s", s);
	cJSON_free(s);
	evk_dash_put(list, "b", NULL);
	CHECK(cJSON_GetArraySize(list) == 3, "removed");
	cJSON_Delete(list);
}

/* Ever new ids: the list keeps the newest EVK_DASH_LIST_MAX rows. */
static void
test_bound(void)
{
	cJSON *list = cJSON_CreateArray();
	char id[32], json[64];
	for (int i = 0; i < EVK_DASH_LIST_MAX + 5; i++) {
		snprintf(id, sizeof(id), "w%d", i);
		snprintf(json, sizeof(json), "{\"id\":\"%s\",\"type\":\"counter\"}", id);
		CHECK(evk_dash_put(list, id, cJSON_Parse(json)), "put %d", i);
	}
	CHECK(cJSON_GetArraySize(list) == EVK_DASH_LIST_MAX, "size %d", cJSON_GetArraySize(list));
	const cJSON *first = cJSON_GetArrayItem(list, 0);
	CHECK(strcmp(cJSON_GetObjectItem(first, "id")->valuestring, "w5") == 0, "oldest kept");
	cJSON_Delete(list);
}

int
main(void)
{
	test_rows();
	test_order();
	test_bound();
	return check_done("test_dashboard");
}
