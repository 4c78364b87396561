#include "evkit/fold.h"

#include "evkit/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

cJSON *
evk_fold_find(const cJSON *widgets, const char *id)
{
	cJSON *w;
	cJSON_ArrayForEach(w, widgets) {
		const char *wid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
		if (wid && strcmp(wid, id) == 0)
			return w;
	}
	return NULL;
}

static const char *
str(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* The seed's describe_step/1 and estimate_progress/1; the fixed texts
 * are referenced, not copied. */
static cJSON *
describe(const char *step, char *buf, size_t n)
{
	if (strcmp(step, "validate") == 0)
		return cJSON_CreateStringReference("Validating input");
	if (strcmp(step, "process") == 0)
		return cJSON_CreateStringReference("Processing data");
	snprintf(buf, n, "Running %s", step);
	return cJSON_CreateString(buf);
}

static double
estimate(const char *step)
{
	return strcmp(step, "validate") == 0 ? 30 : strcmp(step, "process") == 0 ? 60 : 50;
}

/* Sets (replacing) member name of o; false when out of memory. name is
 * a string literal: a new member keeps the pointer instead of a copy. */
static bool
put(cJSON *o, const char *name, cJSON *v)
{
	if (v == NULL)
		return false;
	cJSON *old = cJSON_GetObjectItemCaseSensitive(o, name);
	if (old == NULL)
		return cJSON_AddItemToObjectCS(o, name, v);
	/* In place: the new item takes over the old one's name. */
	v->string = old->string;
	v->type |= old->type & cJSON_StringIsConst;
	old->string = NULL;
	old->type &= ~cJSON_StringIsConst;
	return cJSON_ReplaceItemViaPointer(o, old, v);
}

/* Sets number member name of o, in place when it is a number already. */
static bool
put_number(cJSON *o, const char *name, double v)
{
	cJSON *old = cJSON_GetObjectItemCaseSensitive(o, name);
	if (cJSON_IsNumber(old)) {
		cJSON_SetNumberHelper(old, v);
		return true;
	}
	return put(o, name, cJSON_CreateNumber(v));
}

/* prefix + name into out (n bytes), cut short if need be: a widget id. */
static const char *
widget_id(char *out, size_t n, const char *prefix, const char *name)
{
	size_t a = strlen(prefix), b = strlen(name);
	if (a >= n)
		a = n - 1;
	if (b > n - 1 - a)
		b = n - 1 - a;
	memcpy(out, prefix, a);
	memcpy(out + a, name, b);
	out[a + b] = '\0';
	return out;
}

/* Prepends item to the array name of w, keeping at most max. */
static bool
prepend(cJSON *w, const char *name, cJSON *item, size_t max)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(w, name);
	if (!cJSON_IsArray(list)) {
		if ((list = cJSON_CreateArray()) == NULL || !put(w, name, list)) {
			cJSON_Delete(item);
			return false;
		}
	}
	if (!cJSON_InsertItemInArray(list, 0, item)) {
		cJSON_Delete(item);
		return false;
	}
	/* One walk to the cap, then whatever lies past it goes. */
	cJSON *last = list->child;
	for (size_t n = 1; last && n < max; n++)
		last = last->next;
	while (last && last->next)
		cJSON_Delete(cJSON_DetachItemViaPointer(list, last->next));
	return true;
}

static cJSON *
ts_string(const struct evk_event *ev)
{
	char ts[EVK_TS_LEN + 1];
	memcpy(ts, ev->ts, EVK_TS_LEN);
	ts[EVK_TS_LEN] = '\0';
	return cJSON_CreateString(ts);
}

/* The progress widget an event of a process belongs to: the one that
 * holds its process_id, else progress-{workflow_id}. */
static cJSON *
progress_of(cJSON *widgets, const cJSON *p)
{
	const char *pid = str(p, "process_id"), *wf = str(p, "workflow_id");
	char id[256];
	cJSON *w;
	if (wf) {
		/* Usually the event names both: progress-{wf} holding the
		 * process is the answer without looking at every widget. */
		widget_id(id, sizeof(id), "progress-", wf);
		w = evk_fold_find(widgets, id);
		const char *wp = w ? str(w, "process_id") : NULL;
		if (w && (pid == NULL || (wp && strcmp(wp, pid) == 0)))
			return w;
	}
	if (pid) {
		cJSON_ArrayForEach(w, widgets) {
			const char *t = str(w, "type"), *wp = str(w, "process_id");
			if (t && wp && strcmp(t, "progress") == 0 && strcmp(wp, pid) == 0)
				return w;
		}
	}
	return wf ? evk_fold_find(widgets, id) : NULL;
}

static cJSON *
new_progress(cJSON *widgets, const char *wf)
{
	char id[256];
	widget_id(id, sizeof(id), "progress-", wf);
	cJSON *w = cJSON_CreateObject();
	if (w == NULL || !put(w, "id", cJSON_CreateString(id)) ||
	    !put(w, "type", cJSON_CreateString("progress")) ||
	    !put(w, "workflow_id", cJSON_CreateString(wf)) ||
	    !put(w, "is_live", cJSON_CreateTrue()) ||
	    !put(w, "percentage", cJSON_CreateNumber(0)) ||
	    !put(w, "activities", cJSON_CreateArray()) ||
	    !put(w, "updates", cJSON_CreateArray()) || !cJSON_AddItemToArray(widgets, w)) {
		cJSON_Delete(w);
		return NULL;
	}
	return w;
}

#define EV(name) (ev->event_len == sizeof(name) - 1 && memcmp(ev->event, name, sizeof(name) - 1) == 0)
#define FAIL(msg) do { *why = msg; rv = EVK_EINVAL; goto out; } while (0)
#define OOM() do { rv = EVK_ENOMEM; goto out; } while (0)

int
evk_fold_apply(cJSON *widgets, const struct evk_event *ev, const struct evk_fold_opts *o,
	       evk_fold_note_fn note, void *arg, const char **why)
{
	size_t max = o && o->list_max ? o->list_max : EVK_FOLD_LIST_MAX;
	cJSON *p = NULL, *w;
	const char *wf, *step;
	char desc[160];
	int rv = EVK_OK;
	static const char *none = "";

	*why = none;
	if (!(EV("process_created") || EV("step_started") || EV("step_progress") ||
	      EV("progress_update") || EV("step_completed") || EV("workflow_completed") ||
	      EV("workflow_failed")))
		return EVK_OK; /* not a widget event */
	p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	if (!cJSON_IsObject(p))
		FAIL("payload is not an object");
	wf = str(p, "workflow_id");

	if (EV("process_created")) {
		const char *pid = str(p, "process_id");
		if (!pid || !wf)
			FAIL("process_created without process_id and workflow_id");
		char id[256];
		widget_id(id, sizeof(id), "progress-", wf);
		if ((w = evk_fold_find(widgets, id)) == NULL && (w = new_progress(widgets, wf)) == NULL)
			OOM();
		if (!put(w, "process_id", cJSON_CreateString(pid)))
			OOM();
		if (note) note(arg, id, EVK_FOLD_UPDATED);
		goto out;
	}
	if (EV("workflow_completed")) {
		if (!wf)
			FAIL("workflow_completed without workflow_id");
		char pid_id[256], rid[256];
		widget_id(pid_id, sizeof(pid_id), "progress-", wf);
		widget_id(rid, sizeof(rid), "result-", wf);
		cJSON *r = cJSON_CreateObject();
		const char *status = str(p, "status");
		if (r == NULL || !put(r, "id", cJSON_CreateString(rid)) ||
		    !put(r, "type", cJSON_CreateString("result")) ||
		    !put(r, "workflow_id", cJSON_CreateString(wf)) ||
		    !put(r, "status", cJSON_CreateString(status ? status : "completed")) ||
		    !put(r, "percentage", cJSON_CreateNumber(100)) ||
		    !put(r, "completed_at", ts_string(ev))) {
			cJSON_Delete(r);
			OOM();
		}
		/* The result first, then the progress widget goes: a watcher
		 * never sees the workflow with neither. */
		cJSON *old = evk_fold_find(widgets, rid);
		if (old)
			cJSON_Delete(cJSON_DetachItemViaPointer(widgets, old));
		if (!cJSON_AddItemToArray(widgets, r)) {
			cJSON_Delete(r);
			OOM();
		}
		if (note) note(arg, rid, EVK_FOLD_UPDATED);
		if ((w = evk_fold_find(widgets, pid_id)) != NULL) {
			cJSON_Delete(cJSON_DetachItemViaPointer(widgets, w));
			if (note) note(arg, pid_id, EVK_FOLD_REMOVED);
		}
		goto out;
	}
	/* The rest act on the event's progress widget; check the event whole
	 * before touching anything. */
	step = str(p, "step");
	const cJSON *pct = cJSON_GetObjectItemCaseSensitive(p, "percentage");
	if (pct && !cJSON_IsNumber(pct))
		FAIL("percentage is not a number");
	if ((EV("step_started") || EV("step_completed")) && !step)
		FAIL("step event without step");
	if (EV("step_progress") && !pct)
		FAIL("step_progress without percentage");
	if (EV("progress_update") && !str(p, "content"))
		FAIL("progress_update without content");
	if ((w = progress_of(widgets, p)) == NULL) {
		if (EV("step_completed"))
			FAIL("step_completed without a running activity of that step");
		if (!wf)
			FAIL("no process_id or workflow_id to find the widget by");
		if ((w = new_progress(widgets, wf)) == NULL)
			OOM();
	}
	const char *id = str(w, "id");

	if (EV("step_started")) {
		if (!step)
			FAIL("step_started without step");
		cJSON *a = cJSON_CreateObject();
		if (a == NULL || !put(a, "step", cJSON_CreateString(step)) ||
		    !put(a, "status", cJSON_CreateStringReference("running")) ||
		    !put(a, "timestamp", ts_string(ev)) ||
		    !put(a, "description", describe(step, desc, sizeof(desc)))) {
			cJSON_Delete(a);
			OOM();
		}
		if (!prepend(w, "activities", a, max) ||
		    !put_number(w, "percentage", pct ? pct->valuedouble : estimate(step)))
			OOM();
	} else if (EV("step_progress")) {
		if (!pct)
			FAIL("step_progress without percentage");
		if (!put_number(w, "percentage", pct->valuedouble))
			OOM();
	} else if (EV("progress_update")) {
		const char *content = str(p, "content");
		if (!content)
			FAIL("progress_update without content");
		cJSON *u = cJSON_CreateObject();
		if (u == NULL || !put(u, "content", cJSON_CreateString(content)) ||
		    !put(u, "timestamp", ts_string(ev))) {
			cJSON_Delete(u);
			OOM();
		}
		if (!prepend(w, "updates", u, max))
			OOM();
	} else if (EV("step_completed")) {
		if (!step)
			FAIL("step_completed without step");
		const cJSON *err = cJSON_GetObjectItemCaseSensitive(p, "error");
		const cJSON *res = cJSON_GetObjectItemCaseSensitive(p, "result");
		cJSON *a, *found = NULL;
		cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(w, "activities")) {
			const char *s = str(a, "step"), *st = str(a, "status");
			if (s && st && strcmp(s, step) == 0 && strcmp(st, "running") == 0) {
				found = a; /* the most recent: the list is newest first */
				break;
			}
		}
		if (found == NULL)
			FAIL("step_completed without a running activity of that step");
		if (!put(found, "status", cJSON_CreateStringReference(err ? "failed" : "completed")) ||
		    (err && !put(found, "error", cJSON_Duplicate(err, true))) ||
		    (res && !put(found, "result", cJSON_Duplicate(res, true))))
			OOM();
		if (pct && !put_number(w, "percentage", pct->valuedouble))
			OOM();
	} else { /* workflow_failed */
		const char *err = str(p, "error");
		const cJSON *retry = cJSON_GetObjectItemCaseSensitive(p, "will_retry");
		if (!put(w, "status", cJSON_CreateString("failed")) ||
		    !put(w, "error", cJSON_CreateString(err ? err : "failed")) ||
		    !put(w, "will_retry", cJSON_CreateBool(cJSON_IsTrue(retry))))
			OOM();
	}
	if (note) note(arg, id, EVK_FOLD_UPDATED);
out:
	cJSON_Delete(p);
	return rv;
}
