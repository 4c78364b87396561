#include "evkit/dashboard.h"

#include <stdio.h>
#include <string.h>

#define ID_MIN 8
#define BAR_MAX 30
#define BAR_MIN 5
#define SHOWN_ITEMS 5 /* list items named on a row */

static const char *
str(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* ---- the list, in a stable order ---- */

static int
index_of(const cJSON *list, const char *id)
{
	const cJSON *w;
	int i = 0;
	cJSON_ArrayForEach(w, list) {
		const char *wid = str(w, "id");
		if (wid && strcmp(wid, id) == 0)
			return i;
		i++;
	}
	return -1;
}

bool
evk_dash_put(cJSON *list, const char *id, cJSON *w)
{
	int at = index_of(list, id);
	if (w == NULL) {
		if (at >= 0)
			cJSON_DeleteItemFromArray(list, at);
		return true;
	}
	if (at >= 0)
		return cJSON_ReplaceItemInArray(list, at, w) || (cJSON_Delete(w), false);
	/* A workflow's result takes its progress widget's row. */
	const char *wf = str(w, "workflow_id"), *type = str(w, "type");
	if (wf && type && strcmp(type, "result") == 0) {
		cJSON *p;
		at = 0;
		cJSON_ArrayForEach(p, list) {
			const char *pt = str(p, "type"), *pwf = str(p, "workflow_id");
			if (pt && pwf && strcmp(pt, "progress") == 0 && strcmp(pwf, wf) == 0)
				return cJSON_ReplaceItemInArray(list, at, w) || (cJSON_Delete(w), false);
			at++;
		}
	}
	if (!cJSON_AddItemToArray(list, w)) {
		cJSON_Delete(w);
		return false;
	}
	if (cJSON_GetArraySize(list) > EVK_DASH_LIST_MAX)
		cJSON_DeleteItemFromArray(list, 0);
	return true;
}

int
evk_dash_id_width(const cJSON *list, int width)
{
	const cJSON *w;
	int n = ID_MIN;
	cJSON_ArrayForEach(w, list) {
		const char *id = str(w, "id");
		if (id && (int)strlen(id) > n)
			n = (int)strlen(id);
	}
	return n > width / 3 ? width / 3 : n;
}

/* ---- a line ---- */

struct line {
	char *p;
	int n, max;
};

/* Appends s, printable ASCII only, up to the line's end. */
static void
put(struct line *l, const char *s)
{
	for (; s && *s && l->n < l->max; s++)
		l->p[l->n++] = *s >= ' ' && *s <= '~' ? *s : '?';
	l->p[l->n] = '\0';
}

/* Appends s padded or cut to exactly w columns ('~' marks a cut). */
static void
put_column(struct line *l, const char *s, int w)
{
	int len = (int)strlen(s), start = l->n;
	if (len > w && w > 0) {
		for (int i = 0; i < w - 1 && l->n < l->max; i++)
			l->p[l->n++] = s[i] >= ' ' && s[i] <= '~' ? s[i] : '?';
		put(l, "~");
	} else {
		put(l, s);
	}
	while (l->n - start < w && l->n < l->max)
		l->p[l->n++] = ' ';
	l->p[l->n] = '\0';
}

static void
putf(struct line *l, const char *fmt, double v)
{
	char s[64];
	snprintf(s, sizeof(s), fmt, v);
	put(l, s);
}

/* ", "-joined field name of the first SHOWN_ITEMS items (or their id). */
static void
put_items(struct line *l, const cJSON *items, const char *field)
{
	const cJSON *it;
	int n = 0;
	cJSON_ArrayForEach(it, items) {
		const char *s = str(it, field);
		if (n == SHOWN_ITEMS) {
			put(l, ", ...");
			break;
		}
		put(l, n++ ? ", " : ": ");
		if (s)
			put(l, s);
		else
			putf(l, "%g", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "id")));
	}
}

/* A progress or result widget: bar, percentage, then its error when it
 * failed, else the latest activity. */
static enum evk_dash_style
progress_row(struct line *l, const cJSON *w, int width, int id_width)
{
	const cJSON *pct = cJSON_GetObjectItemCaseSensitive(w, "percentage");
	const cJSON *last = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(w, "activities"), 0);
	const char *status = str(w, "status"), *error = str(w, "error");
	double p = cJSON_IsNumber(pct) ? pct->valuedouble : 0;
	int bar = width - id_width - 30;
	bar = bar > BAR_MAX ? BAR_MAX : bar < BAR_MIN ? BAR_MIN : bar;
	int fill = (int)(p < 0 ? 0 : p > 100 ? bar : p / 100 * bar + 0.5);

	put(l, " [");
	for (int i = 0; i < bar && l->n < l->max; i++)
		l->p[l->n++] = i < fill ? '#' : '.';
	l->p[l->n] = '\0';
	put(l, "] ");
	putf(l, "%5.1f%%", p);
	if (status && strcmp(status, "failed") == 0) {
		put(l, " failed: ");
		put(l, error ? error : "?");
		return EVK_DASH_FAILED;
	}
	if (status) {
		put(l, " ");
		put(l, status);
		return strcmp(status, "completed") == 0 ? EVK_DASH_DONE : EVK_DASH_NORMAL;
	}
	if (last) {
		const char *as = str(last, "status"), *ae = str(last, "error");
		put(l, " ");
		put(l, as);
		put(l, " ");
		put(l, str(last, "step"));
		if (ae) {
			put(l, ": ");
			put(l, ae);
			return EVK_DASH_FAILED;
		}
	}
	return EVK_DASH_NORMAL;
}

enum evk_dash_style
evk_dash_row(const cJSON *w, int width, int id_width, char *out)
{
	struct line l = { out, 0, width < EVK_DASH_WIDTH_MAX ? width : EVK_DASH_WIDTH_MAX };
	const char *type = str(w, "type"), *id = str(w, "id");
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(w, "items"), *c;
	out[0] = '\0';
	if (l.max < 1)
		return EVK_DASH_NORMAL;
	put_column(&l, id ? id : "?", id_width);
	if (type && (strcmp(type, "progress") == 0 || strcmp(type, "result") == 0))
		return progress_row(&l, w, width, id_width);
	if (type && strcmp(type, "counter") == 0) {
		cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(w, "counts")) {
			put(&l, " ");
			put(&l, c->string);
			putf(&l, " %g", cJSON_GetNumberValue(c));
		}
		return EVK_DASH_NORMAL;
	}
	if (type && strcmp(type, "session") == 0)
		put(&l, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w, "active")) ? " active," : " stopped,");
	putf(&l, " %g items", cJSON_GetArraySize(items));
	put_items(&l, items, "case_reference");
	return EVK_DASH_NORMAL;
}

void
evk_dash_header(char *out, int width, const char *bus, const char *clock, bool connected)
{
	static const char title[] = "evkit widgets";
	const char *mark = connected ? "connected" : "DISCONNECTED";
	char right[64];
	struct line l = { out, 0, width < EVK_DASH_WIDTH_MAX ? width : EVK_DASH_WIDTH_MAX };
	out[0] = '\0';
	if (l.max < 1)
		return;
	snprintf(right, sizeof(right), "%s  %s", clock, mark);
	int room = l.max - (int)strlen(right);
	/* title, then as much of the bus as fits, then the clock and mark
	 * at the right; a narrow screen keeps the mark first */
	if (room >= (int)sizeof(title) + 2) {
		put(&l, title);
		int bus_room = room - l.n - 3;
		if (bus_room >= 8) {
			put(&l, "  ");
			put_column(&l, bus, bus_room < (int)strlen(bus) ? bus_room : (int)strlen(bus));
		}
		while (l.n < room)
			put(&l, " ");
		put(&l, right);
	} else {
		put(&l, mark);
		put(&l, " ");
		put(&l, clock);
	}
}
