/* evk_fold_check (include/evkit/fold.h): a saved state's widgets against
 * the shapes the fold makes. */
#include "evkit/fold.h"

#include "fold_impl.h"

#include "evkit/topic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A member a widget of some type must (or may) have, and its type. */
struct rule {
	const char *name;
	cJSON_bool (*is)(const cJSON *v);
	bool required;
};

static const struct rule progress_rules[] = {
	{ "workflow_id", cJSON_IsString, true }, { "process_id", cJSON_IsString, false },
	{ "percentage", cJSON_IsNumber, true },	 { "activities", cJSON_IsArray, true },
	{ "updates", cJSON_IsArray, true },	 { "status", cJSON_IsString, false },
	{ "error", cJSON_IsString, false },	 { "will_retry", cJSON_IsBool, false },
	{ NULL, NULL, false },
};
static const struct rule result_rules[] = {
	{ "workflow_id", cJSON_IsString, true }, { "status", cJSON_IsString, true },
	{ "percentage", cJSON_IsNumber, true },	 { "completed_at", cJSON_IsString, false },
	{ NULL, NULL, false },
};
static const struct rule counter_rules[] = {
	{ "counts", cJSON_IsObject, false },
	{ NULL, NULL, false },
};
static const struct rule session_rules[] = {
	{ "active", cJSON_IsBool, true },	 { "started_at", cJSON_IsString, true },
	{ "stopped_at", cJSON_IsString, false }, { "items", cJSON_IsArray, true },
	{ NULL, NULL, false },
};
static const struct rule keep_live_rules[] = {
	{ "items", cJSON_IsArray, false }, { "queries", cJSON_IsNumber, false },
	{ NULL, NULL, false },
};

static const struct {
	const char *type;
	const struct rule *rules;
} shapes[] = {
	{ "progress", progress_rules }, { "result", result_rules },	  { "counter", counter_rules },
	{ "session", session_rules },	{ "keep_live", keep_live_rules },
};

/* Each element of w's array name is an object, with string members
 * (NULL-ended) when given. */
static bool
all_objects(const cJSON *w, const char *name, const char *const *strings)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, member(w, name)) {
		if (!cJSON_IsObject(it))
			return false;
		for (const char *const *s = strings; s && *s; s++)
			if (!cJSON_IsString(member(it, *s)))
				return false;
	}
	return true;
}

/* Why widget w is damaged (into buf, n bytes), or NULL when it is not;
 * a second widget of an id is told only when widgets is not NULL. */
static const char *
damage(const cJSON *widgets, const cJSON *w, char *buf, size_t n)
{
	static const char *const activity[] = { "step", "status", NULL };
	const char *id = str(w, "id"), *type = str(w, "type");
	const cJSON *m;
	size_t k = 0;
	if (!cJSON_IsObject(w))
		return "not an object";
	if (id == NULL || id[0] == '\0' || strlen(id) > EVK_FOLD_ID_MAX)
		return "no id, or one too long";
	snprintf(buf, n, "widget:%s", id);
	if (!evk_topic_valid(buf, strlen(buf)))
		return "an id that makes no topic";
	if (widgets && evk_fold_find(widgets, id) != w)
		return "a second widget of that id";
	while (k < sizeof(shapes) / sizeof(shapes[0]) && !(type && strcmp(type, shapes[k].type) == 0))
		k++;
	if (k == sizeof(shapes) / sizeof(shapes[0]))
		return "no known type";
	for (const struct rule *r = shapes[k].rules; r->name; r++) {
		m = member(w, r->name);
		if (m ? !r->is(m) : r->required) {
			snprintf(buf, n, "%s %s", r->name, m ? "of the wrong type" : "missing");
			return buf;
		}
	}
	if (!all_objects(w, "activities", activity) || !all_objects(w, "updates", NULL) ||
	    !all_objects(w, "items", NULL))
		return "a list holds something else than what the fold makes";
	cJSON_ArrayForEach(m, member(w, "counts"))
		if (!cJSON_IsNumber(m))
			return "a count is not a number";
	return NULL;
}

/* A widget of the saved array: where it is, its id, what is wrong. */
struct entry {
	cJSON *w;
	const char *id;
	int index;
	bool damaged, second;
};

/* Entries by id, then by index. */
static int
by_id(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
	int c = strcmp(x->id, y->id);
	return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* One walk that looks each id up: n * n, for when there is no memory for
 * the sort. */
static int
check_slowly(cJSON *widgets, evk_fold_drop_fn drop, void *arg)
{
	cJSON *w = widgets ? widgets->child : NULL, *next;
	int index = 0, dropped = 0;
	char buf[EVK_TOPIC_MAX + 1];
	for (; w; w = next, index++) {
		next = w->next;
		const char *why = damage(widgets, w, buf, sizeof(buf));
		if (why == NULL)
			continue;
		if (drop)
			drop(arg, index, str(w, "id"), why);
		cJSON_Delete(cJSON_DetachItemViaPointer(widgets, w));
		dropped++;
	}
	return dropped;
}

/* The second widgets of an id are found by sorting the good widgets by
 * id, so that a state of many widgets (one saved before widgetd had a
 * bound) is checked in n log n, not n * n; then the widgets are dropped
 * in their order, each told why. */
int
evk_fold_check(cJSON *widgets, evk_fold_drop_fn drop, void *arg)
{
	int n = cJSON_GetArraySize(widgets), k = 0, dropped = 0;
	char buf[EVK_TOPIC_MAX + 1];
	if (n == 0)
		return 0;
	struct entry *all = malloc((size_t)n * sizeof(*all));
	struct entry **good = malloc((size_t)n * sizeof(*good));
	if (all == NULL || good == NULL) {
		free(all);
		free(good);
		return check_slowly(widgets, drop, arg);
	}
	int i = 0;
	for (cJSON *w = widgets->child; w && i < n; w = w->next, i++) {
		all[i] = (struct entry){ .w = w, .id = str(w, "id"), .index = i };
		all[i].damaged = damage(NULL, w, buf, sizeof(buf)) != NULL;
		if (!all[i].damaged)
			good[k++] = &all[i];
	}
	qsort(good, (size_t)k, sizeof(*good), by_id);
	for (int j = 1; j < k; j++)
		good[j]->second = strcmp(good[j]->id, good[j - 1]->id) == 0;
	for (int j = 0; j < i; j++) {
		const char *why = all[j].damaged ? damage(NULL, all[j].w, buf, sizeof(buf))
				  : all[j].second ? "a second widget of that id"
						  : NULL;
		if (why == NULL)
			continue;
		if (drop)
			drop(arg, all[j].index, all[j].id, why);
		cJSON_Delete(cJSON_DetachItemViaPointer(widgets, all[j].w));
		dropped++;
	}
	free(all);
	free(good);
	return dropped;
}
