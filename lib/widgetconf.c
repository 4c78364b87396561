#include "evkit/widgetconf.h"

#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/fold.h"
#include "evkit/topic.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char evk_widgetconf_default[] =
	"{\"widgets\":["
	"{\"id\":\"recent-cases\",\"type\":\"keep_live\",\"limit\":100,\"refetch_window\":5000},"
	"{\"id\":\"session-cases\",\"type\":\"session\",\"limit\":50},"
	"{\"id\":\"case-events\",\"type\":\"counter\",\"pattern\":\"case:*\"}"
	"]}";

static const struct {
	const char *name;
	enum evk_widget_kind kind;
} kinds[] = {
	{ "keep_live", EVK_WIDGET_KEEP_LIVE },
	{ "session", EVK_WIDGET_SESSION },
	{ "counter", EVK_WIDGET_COUNTER },
};

/* Member name of o: absent gives def; else a whole number from min to
 * max, or false with why saying so. */
static bool
whole_number(const cJSON *o, const char *name, long long min, long long max, long long def,
	     long long *out, const char *id, char *why, size_t n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	*out = def;
	if (v == NULL)
		return true;
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min || v->valuedouble > (double)max ||
	    v->valuedouble != (double)(long long)v->valuedouble) {
		if (id)
			snprintf(why, n, "widget '%s': %s is a whole number from %lld to %lld", id, name,
				 min, max);
		else
			snprintf(why, n, "%s is a whole number from %lld to %lld", name, min, max);
		return false;
	}
	*out = (long long)v->valuedouble;
	return true;
}

static const char *
member_string(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* The config's widget w into c->widgets[c->n]. */
static int
parse_widget(struct evk_widgetconf *c, const cJSON *w, char *why, size_t n)
{
	struct evk_widget_decl *d = &c->widgets[c->n];
	const char *id = member_string(w, "id"), *type = member_string(w, "type");
	const char *pat = member_string(w, "pattern"), *ev = member_string(w, "event");
	long long limit;
	size_t k = 0;

	if (id == NULL || !evk_topic_valid(id, strlen(id)) || strchr(id, ':') ||
	    strlen(id) > EVK_WIDGET_ID_MAX)
		return snprintf(why, n, "widget %d needs an id (no ':')", c->n + 1), EVK_EINVAL;
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->widgets[i].id, id) == 0)
			return snprintf(why, n, "widgets %d and %d have the same id '%s'", i + 1, c->n + 1,
					id),
			       EVK_EINVAL;
	snprintf(d->id, sizeof(d->id), "%s", id);
	while (k < sizeof(kinds) / sizeof(kinds[0]) && !(type && strcmp(type, kinds[k].name) == 0))
		k++;
	if (k == sizeof(kinds) / sizeof(kinds[0]))
		return snprintf(why, n,
				"widget '%s': unknown type '%s' (keep_live, session, counter;"
				" progress and result widgets come by themselves)",
				id, type ? type : ""),
		       EVK_EINVAL;
	d->kind = kinds[k].kind;
	if (!whole_number(w, "limit", 1, EVK_WIDGET_LIMIT_MAX, d->kind == EVK_WIDGET_KEEP_LIVE ? 100 : 50,
			  &limit, id, why, n) ||
	    !whole_number(w, "refetch_window", 1, EVK_WIDGET_WINDOW_MAX, 5000, &d->window_ms, id, why, n))
		return EVK_EINVAL;
	d->limit = (long)limit;
	snprintf(d->pattern, sizeof(d->pattern), "%s",
		 pat ? pat : d->kind == EVK_WIDGET_COUNTER ? "**" : "case:*");
	const char *perr = pat && strlen(pat) >= sizeof(d->pattern) ? "longer than 255 bytes"
								      : evk_pattern_error(d->pattern);
	if (perr)
		return snprintf(why, n, "widget '%s': invalid pattern '%s': %s", id, pat, perr), EVK_EINVAL;
	if (ev && !evk_event_name_valid(ev, strlen(ev)))
		return snprintf(why, n, "widget '%s': invalid event '%s'", id, ev), EVK_EINVAL;
	snprintf(d->event, sizeof(d->event), "%s", ev ? ev : "");
	c->n++;
	return EVK_OK;
}

int
evk_widgetconf_parse(struct evk_widgetconf *c, const char *text, size_t len, char *why,
		     size_t whylen)
{
	cJSON *doc = cJSON_ParseWithLength(text, len);
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(doc, "widgets"), *w;
	long long list_max, max_widgets;
	int rv = EVK_EINVAL;

	c->n = 0;
	if (!cJSON_IsObject(doc) || !cJSON_IsArray(ws)) {
		snprintf(why, whylen, "want {\"widgets\": [...]}");
		goto out;
	}
	if (!whole_number(doc, "list_max", 1, 10000, EVK_FOLD_LIST_MAX, &list_max, NULL, why, whylen))
		goto out;
	c->list_max = (size_t)list_max;
	if (!whole_number(doc, "max_widgets", 1, EVK_FOLD_WIDGETS_LIMIT, EVK_FOLD_WIDGETS_DEFAULT,
			  &max_widgets, NULL, why, whylen))
		goto out;
	c->max_widgets = (size_t)max_widgets;
	cJSON_ArrayForEach(w, ws) {
		if (c->n == EVK_WIDGETS_MAX) {
			snprintf(why, whylen, "more than %d widgets", EVK_WIDGETS_MAX);
			goto out;
		}
		if (parse_widget(c, w, why, whylen) != EVK_OK)
			goto out;
	}
	rv = EVK_OK;
out:
	cJSON_Delete(doc);
	return rv;
}
