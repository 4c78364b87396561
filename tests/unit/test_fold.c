/* The widget fold, clause by clause against the seed's handle_info. */
#include "evkit/err.h"
#include "evkit/fold.h"
#include "evkit/topic.h"

#include "check.h"

#include <stdio.h>
#include <string.h>

static char notes[1024];

static void
note(void *arg, const char *id, enum evk_fold_change c)
{
	(void)arg;
	size_t n = strlen(notes);
	snprintf(notes + n, sizeof(notes) - n, "%s%s%s", n ? " " : "",
		 c == EVK_FOLD_REMOVED ? "-" : "+", id);
}

/* The event (topic, name, payload JSON) with ts second s, in line. */
static int
event(struct evk_event *ev, char line[2048], const char *topic, const char *name,
      const char *payload, int s)
{
	snprintf(line, 2048,
		 "{\"seq\":1,\"ts\":\"2026-11-24T10:00:%02d.000000Z\",\"topic\":\"%s\","
		 "\"event\":\"%s\",\"payload\":%s}",
		 s, topic, name, payload);
	notes[0] = '\0';
	return evk_event_scan(ev, line, strlen(line));
}

/* Folds one event on topic with ts second s. */
static int
fold_on(cJSON *widgets, const char *topic, const char *name, const char *payload, int s,
	const char **why)
{
	char line[2048];
	struct evk_event ev;
	struct evk_fold_opts o = { .list_max = 3 };
	if (event(&ev, line, topic, name, payload, s) != EVK_OK)
		return -1;
	return evk_fold_apply(widgets, &ev, &o, note, NULL, why);
}

/* Folds one event of process:p1 with ts second s. */
static int
fold(cJSON *widgets, const char *name, const char *payload, int s, const char **why)
{
	return fold_on(widgets, "process:p1", name, payload, s, why);
}

/* A value of the widget id, as compact JSON, or "" */
static const char *
get(const cJSON *widgets, const char *id, const char *path)
{
	static char out[1024];
	const cJSON *v = evk_fold_find(widgets, id);
	char name[64];
	for (const char *p = path; v && *p;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
		v = (name[0] >= '0' && name[0] <= '9') ? cJSON_GetArrayItem(v, name[0] - '0')
						       : cJSON_GetObjectItemCaseSensitive(v, name);
		p += n + (dot ? 1 : 0);
	}
	char *s = v ? cJSON_PrintUnformatted(v) : NULL;
	snprintf(out, sizeof(out), "%s", s ? s : "");
	cJSON_free(s);
	return out;
}

#define IDS "\"process_id\":\"p1\",\"workflow_id\":\"wf\""

/* The progress and result clauses, one after the other, as a workflow
 * runs. */
static void
test_workflow(void)
{
	cJSON *w = cJSON_CreateArray();
	const char *why;

	/* process_created attaches process_id to progress-{wf}. */
	CHECK(fold(w, "process_created", "{" IDS "}", 0, &why) == EVK_OK, "process_created");
	CHECK(strcmp(get(w, "progress-wf", "process_id"), "\"p1\"") == 0, "process id attached");
	CHECK(strcmp(notes, "+progress-wf") == 0, "noted: %s", notes);

	/* step_started adds a running activity and the percentage. */
	fold(w, "step_started", "{" IDS ",\"step\":\"validate\"}", 1, &why);
	CHECK(strcmp(get(w, "progress-wf", "activities.0.status"), "\"running\"") == 0, "running");
	CHECK(strcmp(get(w, "progress-wf", "activities.0.description"), "\"Validating input\"") == 0,
	      "described as the seed does");
	CHECK(strcmp(get(w, "progress-wf", "activities.0.timestamp"),
		     "\"2026-11-24T10:00:01.000000Z\"") == 0, "timestamp from the event");
	CHECK(strcmp(get(w, "progress-wf", "percentage"), "30") == 0,
	      "seed's estimate without a percentage: %s", get(w, "progress-wf", "percentage"));
	fold(w, "step_started", "{" IDS ",\"step\":\"other\",\"percentage\":40}", 2, &why);
	CHECK(strcmp(get(w, "progress-wf", "percentage"), "40") == 0, "given percentage wins");
	CHECK(strcmp(get(w, "progress-wf", "activities.0.description"), "\"Running other\"") == 0,
	      "generic description");

	/* step_progress updates the percentage. */
	fold(w, "step_progress", "{" IDS ",\"step\":\"other\",\"percentage\":55.5}", 3, &why);
	CHECK(strcmp(get(w, "progress-wf", "percentage"), "55.5") == 0, "progress");

	/* progress_update prepends an update; lists are capped (3 here). */
	for (int i = 0; i < 5; i++) {
		char pl[128];
		snprintf(pl, sizeof(pl), "{" IDS ",\"content\":\"u%d\"}", i);
		fold(w, "progress_update", pl, 4 + i, &why);
	}
	CHECK(strcmp(get(w, "progress-wf", "updates.0.content"), "\"u4\"") == 0, "newest first");
	CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
		      evk_fold_find(w, "progress-wf"), "updates")) == 3, "capped at 3");

	/* step_completed marks the most recent running activity of the step. */
	fold(w, "step_completed", "{" IDS ",\"step\":\"validate\",\"result\":{\"status\":\"success\"}}",
	     10, &why);
	CHECK(strcmp(get(w, "progress-wf", "activities.1.status"), "\"completed\"") == 0,
	      "validate completed: %s", get(w, "progress-wf", "activities.1.status"));
	CHECK(strcmp(get(w, "progress-wf", "activities.1.result.status"), "\"success\"") == 0,
	      "with its result");
	CHECK(strcmp(get(w, "progress-wf", "activities.0.status"), "\"running\"") == 0,
	      "other still running");
	fold(w, "step_completed", "{" IDS ",\"step\":\"other\",\"error\":\"exit 3\"}", 11, &why);
	CHECK(strcmp(get(w, "progress-wf", "activities.0.status"), "\"failed\"") == 0, "failed");
	CHECK(strcmp(get(w, "progress-wf", "activities.0.error"), "\"exit 3\"") == 0, "its error");
	CHECK(fold(w, "step_completed", "{" IDS ",\"step\":\"other\"}", 12, &why) == EVK_EINVAL,
	      "no running activity left: malformed, skipped");

	/* workflow_failed shows the error. */
	fold(w, "workflow_failed", "{" IDS ",\"error\":\"exit 3\",\"will_retry\":true}", 13, &why);
	CHECK(strcmp(get(w, "progress-wf", "error"), "\"exit 3\"") == 0 &&
		      strcmp(get(w, "progress-wf", "will_retry"), "true") == 0,
	      "failure shown");

	/* workflow_completed replaces progress-{wf} with result-{wf}. */
	CHECK(fold(w, "workflow_completed", "{" IDS ",\"status\":\"completed\"}", 20, &why) == EVK_OK,
	      "completed");
	CHECK(evk_fold_find(w, "progress-wf") == NULL, "progress gone");
	CHECK(strcmp(get(w, "result-wf", "type"), "\"result\"") == 0 &&
		      strcmp(get(w, "result-wf", "status"), "\"completed\"") == 0,
	      "result widget");
	/* The result is announced before the progress widget goes. */
	CHECK(strcmp(notes, "+result-wf -progress-wf") == 0, "noted: %s", notes);

	/* Malformed and unexpected events change nothing. */
	char *before = cJSON_PrintUnformatted(w);
	static const struct {
		const char *event, *payload;
	} bad[] = {
		{ "process_created", "{\"process_id\":\"p2\"}" },
		{ "step_started", "{\"workflow_id\":\"wf2\"}" },
		{ "step_progress", "{\"workflow_id\":\"wf2\",\"percentage\":\"x\"}" },
		{ "step_progress", "{\"workflow_id\":\"wf2\"}" },
		{ "progress_update", "{\"workflow_id\":\"wf2\",\"content\":5}" },
		{ "step_completed", "{\"workflow_id\":\"wf2\",\"step\":\"a\"}" },
		{ "workflow_completed", "{}" },
		{ "step_started", "[1,2]" },
		{ "step_started", "\"text\"" },
		{ "step_started", "{\"step\":\"a\"}" },
		{ "process_created", "{\"process_id\":\"p5\",\"workflow_id\":\"a b\"}" },
		{ "step_progress", "{\"workflow_id\":\"x*\",\"percentage\":1}" },
		{ "workflow_completed", "{\"workflow_id\":\"a:\"}" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(fold(w, bad[i].event, bad[i].payload, 30, &why) == EVK_EINVAL && why[0],
		      "%s %s rejected", bad[i].event, bad[i].payload);
	}
	CHECK(fold(w, "something_else", "{}", 31, &why) == EVK_OK, "unrelated events pass");
	char *after = cJSON_PrintUnformatted(w);
	CHECK(strcmp(before, after) == 0, "nothing changed:\n%s\n%s", before, after);
	cJSON_free(before);
	cJSON_free(after);
	cJSON_Delete(w);
}

static void
test_long_id(void)
{
	cJSON *w;
	const char *why;
	/* A long workflow id: the widget id is cut so that widget:{id} is
	 * still a topic, and the widget is found by it. */
	w = cJSON_CreateArray();
	char longwf[301], payload[512];
	memset(longwf, 'w', 300);
	longwf[300] = '\0';
	snprintf(payload, sizeof(payload), "{\"process_id\":\"p9\",\"workflow_id\":\"%s\"}", longwf);
	CHECK(fold(w, "process_created", payload, 40, &why) == EVK_OK, "long workflow id: %s", why);
	const char *lid = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(w, 0), "id"));
	char topic[EVK_TOPIC_MAX + 2];
	snprintf(topic, sizeof(topic), "widget:%s", lid ? lid : "");
	CHECK(lid && strlen(lid) == EVK_FOLD_ID_MAX && strncmp(lid, "progress-www", 12) == 0 &&
		      evk_topic_valid(topic, strlen(topic)),
	      "long id cut to %d bytes and a topic", EVK_FOLD_ID_MAX);
	snprintf(payload, sizeof(payload),
		 "{\"process_id\":\"p9\",\"workflow_id\":\"%s\",\"percentage\":5}", longwf);
	CHECK(fold(w, "step_progress", payload, 41, &why) == EVK_OK &&
		      cJSON_GetArraySize(w) == 1 && strcmp(get(w, lid, "percentage"), "5") == 0,
	      "the long id's widget is found again");
	cJSON_Delete(w);
}

static void
test_replaced_members(void)
{
	cJSON *w;
	const char *why;
	/* A member replaced by a duplicated item (which brings its own name):
	 * no name leaks (ASan's leak check in make check-san). */
	w = cJSON_Parse("[{\"id\":\"progress-wf\",\"type\":\"progress\",\"process_id\":\"p1\","
			"\"workflow_id\":\"wf\",\"percentage\":0,\"activities\":[{\"step\":\"a\","
			"\"status\":\"running\",\"error\":\"old\",\"result\":{\"x\":1}}],\"updates\":[]}]");
	CHECK(w && fold(w, "step_completed",
			"{" IDS ",\"step\":\"a\",\"error\":\"boom\",\"result\":{\"x\":2}}", 42,
			&why) == EVK_OK &&
		      strcmp(get(w, "progress-wf", "activities.0.error"), "\"boom\"") == 0 &&
		      strcmp(get(w, "progress-wf", "activities.0.result"), "{\"x\":2}") == 0,
	      "error and result replaced: %s", why);
	cJSON_Delete(w);
}

/* counter: one count per event name, made on the first. */
static void
test_counter(void)
{
	cJSON *w = cJSON_CreateArray();
	char line[2048];
	struct evk_event ev;
	event(&ev, line, "case:created", "create", "{}", 1);
	CHECK(evk_fold_count(w, "c", &ev, note, NULL) == EVK_OK && strcmp(notes, "+c") == 0,
	      "counter made and noted: %s", notes);
	evk_fold_count(w, "c", &ev, note, NULL);
	event(&ev, line, "case:synced", "sync", "{}", 2);
	evk_fold_count(w, "c", &ev, note, NULL);
	CHECK(strcmp(get(w, "c", "counts"), "{\"create\":2,\"sync\":1}") == 0, "counts: %s",
	      get(w, "c", "counts"));
	CHECK(strcmp(get(w, "c", "type"), "\"counter\"") == 0, "type counter");
	cJSON_Delete(w);
}

#define CASE(id, ref) "{\"resource\":\"case\",\"data\":{\"id\":\"" id "\",\"case_reference\":\"" ref "\"}}"

/* session: made active, newest first, once per case, capped; stop freezes,
 * start empties. */
static void
test_session(void)
{
	cJSON *w = cJSON_CreateArray();
	char line[2048];
	struct evk_event ev;
	static const char ts[] = "2026-11-24T10:00:00.000000Z";
	notes[0] = '\0';
	CHECK(evk_fold_session_init(w, "s", ts, note, NULL) == EVK_OK && strcmp(notes, "+s") == 0,
	      "session made and noted");
	notes[0] = '\0';
	evk_fold_session_init(w, "s", ts, note, NULL);
	CHECK(notes[0] == '\0' && cJSON_GetArraySize(w) == 1, "made once");
	CHECK(strcmp(get(w, "s", "active"), "true") == 0 &&
		      strcmp(get(w, "s", "started_at"), "\"2026-11-24T10:00:00.000000Z\"") == 0,
	      "active since ts");
	static const char *const cases[][2] = { { "c1", "R1" }, { "c2", "R2" }, { "c3", "R3" },
						{ "c1", "R1b" } };
	for (size_t i = 0; i < 4; i++) {
		char p[256];
		snprintf(p, sizeof(p), "{\"data\":{\"id\":\"%s\",\"case_reference\":\"%s\"}}",
			 cases[i][0], cases[i][1]);
		event(&ev, line, "case:created", "create", p, (int)i + 1);
		CHECK(evk_fold_session_add(w, "s", 3, &ev, note, NULL) == EVK_OK, "added");
	}
	CHECK(strcmp(get(w, "s", "items"),
		     "[{\"id\":\"c1\",\"case_reference\":\"R1b\"},{\"id\":\"c3\",\"case_reference\":\"R3\"},"
		     "{\"id\":\"c2\",\"case_reference\":\"R2\"}]") == 0,
	      "newest first, once each, capped: %s", get(w, "s", "items"));
	/* A payload without data.id is let be. */
	event(&ev, line, "case:created", "create", "{\"data\":{\"x\":1}}", 5);
	CHECK(evk_fold_session_add(w, "s", 3, &ev, note, NULL) == EVK_OK && notes[0] == '\0',
	      "no data.id: nothing");
	CHECK(evk_fold_session_mark(w, "s", false, "2026-11-24T10:00:06.000000Z", note, NULL) ==
			      EVK_OK &&
		      strcmp(get(w, "s", "active"), "false") == 0 &&
		      strcmp(get(w, "s", "stopped_at"), "\"2026-11-24T10:00:06.000000Z\"") == 0,
	      "stop");
	event(&ev, line, "case:created", "create", CASE("c9", "R9"), 7);
	evk_fold_session_add(w, "s", 3, &ev, note, NULL);
	CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(evk_fold_find(w, "s"), "items")) == 3 &&
		      notes[0] == '\0',
	      "a stopped session keeps its list");
	evk_fold_session_mark(w, "s", true, "2026-11-24T10:00:08.000000Z", note, NULL);
	CHECK(strcmp(get(w, "s", "active"), "true") == 0 && strcmp(get(w, "s", "items"), "[]") == 0 &&
		      strcmp(get(w, "s", "started_at"), "\"2026-11-24T10:00:08.000000Z\"") == 0 &&
		      strcmp(get(w, "s", "stopped_at"), "") == 0,
	      "start empties");
	cJSON_Delete(w);
}

/* keep_live: the rows replace the items, the queries counted. */
static void
test_keep_live(void)
{
	cJSON *w = cJSON_CreateArray();
	notes[0] = '\0';
	CHECK(evk_fold_keep_live(w, "k", cJSON_Parse("[{\"id\":1}]"), 1, note, NULL) == EVK_OK &&
		      strcmp(notes, "+k") == 0,
	      "keep_live made and noted");
	evk_fold_keep_live(w, "k", cJSON_Parse("[{\"id\":2},{\"id\":1}]"), 2, note, NULL);
	CHECK(strcmp(get(w, "k", "items"), "[{\"id\":2},{\"id\":1}]") == 0 &&
		      strcmp(get(w, "k", "queries"), "2") == 0 &&
		      strcmp(get(w, "k", "type"), "\"keep_live\"") == 0,
	      "items replaced: %s", get(w, "k", "items"));
	CHECK(evk_fold_keep_live(w, "k", NULL, 3, note, NULL) == EVK_ENOMEM, "no items: ENOMEM");
	cJSON_Delete(w);
}

/* A saved state's damaged widgets are dropped, each told once; the
 * whole ones stay, in order. */
static char drops[1024];

static void
drop(void *arg, int index, const char *id, const char *why)
{
	(void)arg;
	size_t n = strlen(drops);
	snprintf(drops + n, sizeof(drops) - n, "%s%d %s: %s", n ? "; " : "", index,
		 id ? id : "-", why);
}

static void
test_check(void)
{
	static const struct {
		const char *widget, *why; /* why NULL: kept */
	} cases[] = {
		{ "{\"id\":\"progress-a\",\"type\":\"progress\",\"workflow_id\":\"a\",\"percentage\":0,"
		  "\"activities\":[{\"step\":\"s\",\"status\":\"running\"}],\"updates\":[{}]}", NULL },
		{ "{\"type\":\"progress\",\"process_id\":\"p1\",\"workflow_id\":\"a\",\"percentage\":0,"
		  "\"activities\":[],\"updates\":[]}", "no id, or one too long" },
		{ "{\"id\":\"progress-b\",\"type\":\"progress\",\"percentage\":0,\"activities\":[],"
		  "\"updates\":[]}", "workflow_id missing" },
		{ "{\"id\":\"progress-c\",\"type\":\"progress\",\"workflow_id\":\"c\",\"percentage\":\"0\","
		  "\"activities\":[],\"updates\":[]}", "percentage of the wrong type" },
		{ "{\"id\":\"progress-d\",\"type\":\"progress\",\"workflow_id\":\"d\",\"percentage\":0,"
		  "\"activities\":[{\"step\":1,\"status\":\"running\"}],\"updates\":[]}",
		  "a list holds something else than what the fold makes" },
		{ "{\"id\":\"result-a\",\"type\":\"result\",\"workflow_id\":\"a\",\"status\":\"completed\","
		  "\"percentage\":100}", NULL },
		{ "{\"id\":\"result-b\",\"type\":\"result\",\"workflow_id\":\"b\",\"percentage\":100}",
		  "status missing" },
		{ "{\"id\":\"c\",\"type\":\"counter\",\"counts\":{\"x\":1}}", NULL },
		{ "{\"id\":\"c\",\"type\":\"counter\"}", "a second widget of that id" },
		{ "{\"id\":\"c2\",\"type\":\"counter\",\"counts\":{\"x\":\"1\"}}", "a count is not a number" },
		{ "{\"id\":\"s\",\"type\":\"session\",\"active\":true,\"started_at\":\"t\",\"items\":[]}", NULL },
		{ "{\"id\":\"s2\",\"type\":\"session\",\"active\":1,\"started_at\":\"t\",\"items\":[]}",
		  "active of the wrong type" },
		{ "{\"id\":\"k\",\"type\":\"keep_live\",\"items\":[{}],\"queries\":1}", NULL },
		{ "{\"id\":\"k2\",\"type\":\"keep_live\",\"items\":[1]}",
		  "a list holds something else than what the fold makes" },
		{ "{\"id\":\"x\",\"type\":\"pie\"}", "no known type" },
		{ "{\"id\":\"a b\",\"type\":\"counter\"}", "an id that makes no topic" },
		{ "[]", "not an object" },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	char expect[1024] = "";
	cJSON *w = cJSON_CreateArray();
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		cJSON_AddItemToArray(w, cJSON_Parse(cases[i].widget));
		if (cases[i].why) {
			size_t len = strlen(expect);
			cJSON *one = cJSON_Parse(cases[i].widget);
			const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(one, "id"));
			snprintf(expect + len, sizeof(expect) - len, "%s%zu %s: %s", len ? "; " : "", i,
				 id ? id : "-", cases[i].why);
			cJSON_Delete(one);
			bad++;
		}
	}
	drops[0] = '\0';
	CHECK(evk_fold_check(w, drop, NULL) == bad, "%d dropped", bad);
	CHECK(strcmp(drops, expect) == 0, "drops:\n%s\nwant:\n%s", drops, expect);
	CHECK(cJSON_GetArraySize(w) == (int)n - bad && evk_fold_find(w, "progress-a") &&
		      evk_fold_find(w, "k"),
	      "the whole ones stay");
	CHECK(evk_fold_check(w, drop, NULL) == 0, "a checked state is whole");
	cJSON_Delete(w);
}

/* The first whole widget of an id stays, whatever came before it; a
 * third of an id goes too. */
static void
test_check_ids(void)
{
	cJSON *w = cJSON_Parse("[{\"id\":\"c\",\"type\":\"counter\",\"counts\":{\"x\":\"1\"}},"
			       "{\"id\":\"d\",\"type\":\"counter\"},"
			       "{\"id\":\"c\",\"type\":\"counter\",\"counts\":{\"x\":2}},"
			       "{\"id\":\"d\",\"type\":\"counter\"},"
			       "{\"id\":\"c\",\"type\":\"counter\"},"
			       "{\"id\":\"d\",\"type\":\"counter\"}]");
	drops[0] = '\0';
	CHECK(evk_fold_check(w, drop, NULL) == 4, "4 dropped: %s", drops);
	CHECK(strcmp(drops, "0 c: a count is not a number; 3 d: a second widget of that id; "
			    "4 c: a second widget of that id; 5 d: a second widget of that id") == 0,
	      "in their order: %s", drops);
	CHECK(strcmp(get(w, "c", "counts.x"), "2") == 0, "the whole c stays");
	cJSON_Delete(w);
}

/* Folds one event of workflow wf (its own process p-wf) keeping at most
 * max workflow widgets. */
static int
fold_bounded(cJSON *widgets, const char *name, const char *wf, size_t max)
{
	char line[2048], topic[64], payload[256];
	struct evk_event ev;
	struct evk_fold_opts o = { .max_widgets = max };
	const char *why;
	snprintf(topic, sizeof(topic), "workflow:%s", wf);
	snprintf(payload, sizeof(payload),
		 "{\"process_id\":\"p-%s\",\"workflow_id\":\"%s\",\"step\":\"s\"}", wf, wf);
	if (event(&ev, line, topic, name, payload, 0) != EVK_OK)
		return -1;
	return evk_fold_apply(widgets, &ev, &o, note, NULL, &why);
}

/* The ids of the widgets, in their order, space-separated. */
static const char *
ids(const cJSON *widgets)
{
	static char out[1024];
	const cJSON *w;
	out[0] = '\0';
	cJSON_ArrayForEach(w, widgets) {
		size_t n = strlen(out);
		snprintf(out + n, sizeof(out) - n, "%s%s", n ? " " : "",
			 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id")));
	}
	return out;
}

/* --max-widgets: a new workflow widget past the bound drops the oldest
 * result widget, else the oldest progress widget; declared widgets stay
 * and do not count. */
static void
test_bound(void)
{
	cJSON *w = cJSON_CreateArray();
	char line[2048];
	struct evk_event ev;
	event(&ev, line, "case:created", "create", "{}", 0);
	evk_fold_count(w, "counter", &ev, NULL, NULL);
	evk_fold_session_init(w, "session", "2026-11-24T10:00:00.000000Z", NULL, NULL);

	/* A workflow that keeps running, then five that end, with room for 3. */
	CHECK(fold_bounded(w, "step_started", "run", 3) == EVK_OK, "run starts");
	static const char *const wfs[] = { "a", "b", "c", "d", "e" };
	for (int i = 0; i < 5; i++) {
		CHECK(fold_bounded(w, "process_created", wfs[i], 3) == EVK_OK, "%s starts", wfs[i]);
		CHECK(fold_bounded(w, "workflow_completed", wfs[i], 3) == EVK_OK, "%s ends", wfs[i]);
	}
	CHECK(strcmp(ids(w), "counter session progress-run result-d result-e") == 0,
	      "the running one and the 2 newest results: %s", ids(w));
	/* Each event, the changes noted after its clause, and the widgets
	 * then (NULL: not checked). */
	static const struct {
		const char *event, *wf, *notes, *ids;
	} steps[] = {
		{ "process_created", "f", "+progress-f -result-d", NULL },
		/* no result left but the new one: the oldest progress goes */
		{ "process_created", "g", "+progress-g -result-e", NULL },
		{ "process_created", "h", "+progress-h -progress-run",
		  "counter session progress-f progress-g progress-h" },
		/* a result made without its progress widget never drops itself */
		{ "workflow_completed", "x", "+result-x -progress-f", NULL },
		/* a result replacing its progress widget drops nothing */
		{ "workflow_completed", "g", "+result-g -progress-g", NULL },
		/* an event of a workflow already shown makes nothing new */
		{ "step_started", "h", "+progress-h", "counter session progress-h result-x result-g" },
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		fold_bounded(w, steps[i].event, steps[i].wf, 3);
		CHECK(strcmp(notes, steps[i].notes) == 0, "%s %s: noted %s", steps[i].event,
		      steps[i].wf, notes);
		CHECK(steps[i].ids == NULL || strcmp(ids(w), steps[i].ids) == 0, "%s %s: %s",
		      steps[i].event, steps[i].wf, ids(w));
	}

	/* evk_fold_trim on a state of many: results first, oldest first;
	 * with room for 1, keep stays. */
	notes[0] = '\0';
	CHECK(evk_fold_trim(w, 2, NULL, note, NULL) == 1 && strcmp(notes, "-result-x") == 0, "%s",
	      notes);
	notes[0] = '\0';
	CHECK(evk_fold_trim(w, 1, evk_fold_find(w, "progress-h"), note, NULL) == 1 &&
		      strcmp(notes, "-result-g") == 0,
	      "%s", notes);
	CHECK(evk_fold_trim(w, 1, NULL, note, NULL) == 0, "within the bound: nothing goes");
	CHECK(strcmp(ids(w), "counter session progress-h") == 0, "declared ones stay: %s", ids(w));
	/* without opts, the default bound */
	cJSON_Delete(w);
	w = cJSON_CreateArray();
	for (int i = 0; i < EVK_FOLD_WIDGETS_DEFAULT + 5; i++) {
		char wf[16];
		snprintf(wf, sizeof(wf), "w%d", i);
		fold_bounded(w, "workflow_completed", wf, 0);
	}
	CHECK(cJSON_GetArraySize(w) == EVK_FOLD_WIDGETS_DEFAULT && evk_fold_find(w, "result-w5") &&
		      !evk_fold_find(w, "result-w4"),
	      "%d kept by default", cJSON_GetArraySize(w));
	cJSON_Delete(w);
}

/* The seed's topics name the process and the workflow; the payload's
 * fields win when present. */
static void
test_topic_ids(void)
{
	cJSON *w = cJSON_CreateArray();
	const char *why;
	CHECK(fold_on(w, "resource:r1", "process_created", "{" IDS "}", 0, &why) == EVK_OK,
	      "process_created on resource:{id}");
	CHECK(fold_on(w, "process:p1", "step_started", "{\"step\":\"validate\"}", 1, &why) == EVK_OK &&
		      strcmp(get(w, "progress-wf", "activities.0.step"), "\"validate\"") == 0 &&
		      strcmp(notes, "+progress-wf") == 0,
	      "process:p1 step_started into p1's widget: %s", why);
	CHECK(fold_on(w, "process:p1:x", "step_progress", "{\"percentage\":9}", 2, &why) == EVK_EINVAL,
	      "process:p1:x names no process");
	CHECK(fold_on(w, "process:p2", "step_progress", "{\"process_id\":\"p1\",\"percentage\":9}", 3,
		      &why) == EVK_OK &&
		      strcmp(get(w, "progress-wf", "percentage"), "9") == 0,
	      "the payload's process_id wins");
	CHECK(fold_on(w, "process:p3", "process_created", "{\"workflow_id\":\"wf3\"}", 4, &why) == EVK_OK &&
		      strcmp(get(w, "progress-wf3", "process_id"), "\"p3\"") == 0,
	      "process_created's process from its topic");
	CHECK(fold_on(w, "workflow:wf", "workflow_completed", "{\"status\":\"completed\"}", 5, &why) ==
			      EVK_OK &&
		      strcmp(get(w, "result-wf", "status"), "\"completed\"") == 0 &&
		      evk_fold_find(w, "progress-wf") == NULL,
	      "workflow_completed on workflow:{wf}: %s", why);
	CHECK(fold_on(w, "workflow:wf9", "workflow_failed", "{\"workflow_id\":\"wf3\",\"error\":\"exit 3\"}",
		      6, &why) == EVK_OK &&
		      strcmp(get(w, "progress-wf3", "error"), "\"exit 3\"") == 0 &&
		      evk_fold_find(w, "progress-wf9") == NULL,
	      "the payload's workflow_id wins");
	cJSON_Delete(w);
}

/* A full list reuses the entry it drops for the new one: what it holds
 * after is exactly what a new entry would hold, whatever the dropped one
 * held (a result, an error, members of a saved state in another order or
 * of another type). */
static void
test_full_lists(void)
{
	cJSON *w = cJSON_CreateArray();
	const char *why;
	char pl[160];

	fold(w, "process_created", "{" IDS "}", 0, &why);
	for (int i = 0; i < 3; i++) {
		snprintf(pl, sizeof(pl), "{" IDS ",\"step\":\"s%d\"}", i);
		fold(w, "step_started", pl, 1, &why);
		snprintf(pl, sizeof(pl),
			 "{" IDS ",\"step\":\"s%d\",\"error\":\"exit %d\",\"result\":{\"n\":%d}}", i,
			 i, i);
		fold(w, "step_completed", pl, 2, &why);
	}
	CHECK(fold(w, "step_started", "{" IDS ",\"step\":\"validate\"}", 3, &why) == EVK_OK &&
		      strcmp(get(w, "progress-wf", "activities.0"),
			     "{\"step\":\"validate\",\"status\":\"running\",\"timestamp\":"
			     "\"2026-11-24T10:00:03.000000Z\",\"description\":\"Validating input\"}") == 0,
	      "a reused activity holds only what a new one would: %s",
	      get(w, "progress-wf", "activities.0"));
	CHECK(strcmp(get(w, "progress-wf", "activities.2.step"), "\"s1\"") == 0 &&
		      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
			      evk_fold_find(w, "progress-wf"), "activities")) == 3,
	      "the oldest went, three kept");
	/* A saved state's entries, of other shapes. */
	cJSON *acts = cJSON_GetObjectItemCaseSensitive(evk_fold_find(w, "progress-wf"), "activities");
	cJSON_ReplaceItemInArray(acts, 2, cJSON_Parse("{\"status\":\"x\",\"step\":\"y\"}"));
	fold(w, "step_started", "{" IDS ",\"step\":\"a\"}", 4, &why);
	cJSON_ReplaceItemInArray(acts, 2, cJSON_Parse("{\"step\":1,\"status\":\"x\",\"timestamp\":\"t\","
						      "\"description\":\"d\"}"));
	fold(w, "step_started", "{" IDS ",\"step\":\"b\"}", 5, &why);
	CHECK(strcmp(get(w, "progress-wf", "activities.1"),
		     "{\"step\":\"a\",\"status\":\"running\",\"timestamp\":"
		     "\"2026-11-24T10:00:04.000000Z\",\"description\":\"Running a\"}") == 0 &&
		      strcmp(get(w, "progress-wf", "activities.0"),
			     "{\"step\":\"b\",\"status\":\"running\",\"timestamp\":"
			     "\"2026-11-24T10:00:05.000000Z\",\"description\":\"Running b\"}") == 0,
	      "entries of another shape dropped, new ones made: %s",
	      get(w, "progress-wf", "activities"));
	for (int i = 0; i < 4; i++) {
		snprintf(pl, sizeof(pl), "{" IDS ",\"content\":\"a longer update %d\"}", i);
		fold(w, "progress_update", pl, 6, &why);
	}
	fold(w, "progress_update", "{" IDS ",\"content\":\"u\"}", 7, &why);
	CHECK(strcmp(get(w, "progress-wf", "updates.0"),
		     "{\"content\":\"u\",\"timestamp\":\"2026-11-24T10:00:07.000000Z\"}") == 0 &&
		      strcmp(get(w, "progress-wf", "updates.2.content"), "\"a longer update 2\"") == 0,
	      "a reused update: %s", get(w, "progress-wf", "updates"));
	cJSON_Delete(w);
}

int
main(void)
{
	test_workflow();
	test_full_lists();
	test_long_id();
	test_replaced_members();
	test_counter();
	test_session();
	test_keep_live();
	test_check();
	test_check_ids();
	test_bound();
	test_topic_ids();
	return check_done("test_fold");
}
