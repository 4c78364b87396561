/* The widget fold (lib/fold.c). The input is evpub input lines, made
 * canonical (seq 1, 2, ...) as the hub stores them and folded in turn
 * into a state that starts empty. After each event the state prints and
 * parses back, every widget is an object with a string id and type, and
 * each widget the fold names in its note has an id of a valid length that
 * makes a topic ("widget:ID") and, when updated, is in the state. A first
 * line that is a JSON array is taken as a saved state, checked as widgetd
 * loads one (evk_fold_check: issue 16 item 13). */
#include "fuzz.h"

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/fold.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>

struct noted {
	cJSON *widgets;
	int notes;
};

static void
note(void *arg, const char *id, enum evk_fold_change change)
{
	struct noted *n = arg;
	char topic[EVK_TOPIC_MAX + 16];

	FUZZ_CHECK(id != NULL, "note without a widget id");
	size_t len = strlen(id);
	FUZZ_CHECK(len > 0 && len <= EVK_FOLD_ID_MAX, "widget id of %zu bytes", len);
	snprintf(topic, sizeof(topic), "widget:%s", id);
	FUZZ_CHECK(evk_topic_valid(topic, strlen(topic)), "widget id '%s' makes no topic", id);
	if (change == EVK_FOLD_UPDATED)
		FUZZ_CHECK(evk_fold_find(n->widgets, id) != NULL, "updated widget '%s' not in state", id);
	n->notes++;
}

static void
check_state(const cJSON *widgets)
{
	FUZZ_CHECK(cJSON_IsArray(widgets), "state is not an array");
	char *text = cJSON_PrintUnformatted(widgets);
	FUZZ_CHECK(text != NULL, "state does not print");
	cJSON *back = cJSON_Parse(text);
	FUZZ_CHECK(back != NULL, "printed state does not parse: %s", text);
	cJSON_Delete(back);
	free(text);
	const cJSON *w;
	cJSON_ArrayForEach(w, widgets) {
		FUZZ_CHECK(cJSON_IsObject(w), "a widget is not an object");
		FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(w, "id")) &&
				   cJSON_IsString(cJSON_GetObjectItemCaseSensitive(w, "type")),
			   "a widget without a string id and type");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	struct noted n = { cJSON_CreateArray(), 0 };
	struct evk_fold_opts o = { .list_max = 3 };
	struct evk_buf built = { 0 }, line = { 0 };
	char why[256];
	const char *p = (const char *)data, *end = p + size;
	uint64_t seq = 0;
	int first = 1;

	if (n.widgets == NULL)
		return 0;
	while (p < end && seq < 64) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (first) {
			cJSON *saved = cJSON_ParseWithLength(p, len);
			if (cJSON_IsArray(saved)) {
				cJSON_Delete(n.widgets);
				n.widgets = saved;
				saved = NULL;
				evk_fold_check(n.widgets, NULL, NULL);
				check_state(n.widgets);
			}
			cJSON_Delete(saved);
		}
		first = 0;
		evk_buf_reset(&built);
		evk_buf_reset(&line);
		if (evk_event_from_json(&built, p, len, why, sizeof(why)) == EVK_OK) {
			struct evk_event ev;
			const char *err = NULL;
			FUZZ_CHECK(evk_buf_add(&line, "{\"seq\":", 7) == EVK_OK &&
					   evk_buf_add_u64(&line, ++seq) == EVK_OK &&
					   evk_buf_addch(&line, ',') == EVK_OK &&
					   evk_buf_add(&line, built.p + 1, built.len - 1) == EVK_OK,
				   "out of memory");
			FUZZ_CHECK(evk_event_scan(&ev, line.p, line.len) == EVK_OK, "line does not scan");
			int notes = n.notes;
			int rv = evk_fold_apply(n.widgets, &ev, &o, note, &n, &err);
			FUZZ_CHECK(rv == EVK_OK || rv == EVK_EINVAL, "fold failed: %d", rv);
			if (rv == EVK_EINVAL)
				FUZZ_CHECK(err && *err && n.notes == notes,
					   "a refused event without a reason, or with notes");
			check_state(n.widgets);
		}
		p += len + 1;
	}
	cJSON_Delete(n.widgets);
	evk_buf_release(&built);
	evk_buf_release(&line);
	return 0;
}
