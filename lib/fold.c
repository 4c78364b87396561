#include "evkit/fold.h"

#include "evkit/err.h"

#include <stdbool.h>
#include <string.h>

/* cJSON_IsNumber, cJSON_IsArray and the like, inline: each was a call
 * into the library. */
static bool
has_type(const cJSON *v, int type)
{
	return v && (v->type & 0xFF) == type;
}

/* cJSON_GetStringValue, inline. */
static const char *
text(const cJSON *v)
{
	return has_type(v, cJSON_String) ? v->valuestring : NULL;
}

/* Whether s is lit, a string literal. The names and fixed texts the fold
 * gives keep the very literal (see add), so for those the pointer tells;
 * two bytes rule out most other strings before a strcmp (lit is never
 * empty, so s[1] is read only when s[0] is not its end). */
static bool
is(const char *s, const char *lit)
{
	return s == lit || (s[0] == lit[0] && s[1] == lit[1] && strcmp(s, lit) == 0);
}

/* cJSON_GetObjectItemCaseSensitive (the first of the name; a member
 * without a name ends the search), comparing by is(). Inline: each call
 * names a literal, whose first bytes are then known. */
static inline cJSON *
member(const cJSON *o, const char *name)
{
	cJSON *m = o ? o->child : NULL;
	while (m && m->string && !is(m->string, name))
		m = m->next;
	return m && m->string ? m : NULL;
}

cJSON *
evk_fold_find(const cJSON *widgets, const char *id)
{
	cJSON *w;
	cJSON_ArrayForEach(w, widgets) {
		/* "id" comes first in every widget the fold or widgetd makes */
		const char *wid = text(member(w, "id"));
		if (wid && strcmp(wid, id) == 0)
			return w;
	}
	return NULL;
}

static const char *
str(const cJSON *o, const char *name)
{
	return text(member(o, name));
}

/* Adds member name (a string literal: kept, not copied) to o, which has
 * none of that name (a new object): no lookup. false when out of memory. */
static bool
add(cJSON *o, const char *name, cJSON *v)
{
	if (v == NULL)
		return false;
	if (!cJSON_AddItemToObjectCS(o, name, v)) {
		cJSON_Delete(v);
		return false;
	}
	return true;
}

/* Sets (replacing) member name of o; false when out of memory. name is
 * a string literal: a new member keeps the pointer instead of a copy. */
static bool
put(cJSON *o, const char *name, cJSON *v)
{
	if (v == NULL)
		return false;
	cJSON *old = member(o, name);
	if (old == NULL)
		return add(o, name, v);
	/* In place: the new item takes over the old one's name (dropping
	 * any it brought, as a duplicated item does). */
	if (v->string && !(v->type & cJSON_StringIsConst))
		cJSON_free(v->string);
	v->type &= ~cJSON_StringIsConst;
	v->string = old->string;
	v->type |= old->type & cJSON_StringIsConst;
	old->string = NULL;
	old->type &= ~cJSON_StringIsConst;
	return cJSON_ReplaceItemViaPointer(o, old, v);
}

/* Sets number member name of o, whose current member is old (or NULL):
 * in place when that is a number. */
static bool
set_number(cJSON *o, const char *name, cJSON *old, double v)
{
	if (has_type(old, cJSON_Number)) {
		cJSON_SetNumberHelper(old, v);
		return true;
	}
	return put(o, name, cJSON_CreateNumber(v));
}

/* prefix + name into out (n bytes), cut short if need be (as snprintf
 * would): a widget id or a description. Inline: the prefix is a literal,
 * so its length and its copy are worked out at compile time. */
static inline const char *
join(char *out, size_t n, const char *prefix, const char *name)
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

/* The seed's describe_step/1 and estimate_progress/1; the fixed texts
 * are referenced, not copied. Joined, not printed: snprintf was a sixth
 * of a step_started's instructions. */
static cJSON *
describe(const char *step, char *buf, size_t n)
{
	if (is(step, "validate"))
		return cJSON_CreateStringReference("Validating input");
	if (is(step, "process"))
		return cJSON_CreateStringReference("Processing data");
	return cJSON_CreateString(join(buf, n, "Running ", step));
}

static double
estimate(const char *step)
{
	return is(step, "validate") ? 30 : is(step, "process") ? 60 : 50;
}

/* Prepends item to list, the array name of w (NULL or not an array: a
 * new one), keeping at most max. */
static bool
prepend(cJSON *w, const char *name, cJSON *list, cJSON *item, size_t max)
{
	if (!has_type(list, cJSON_Array)) {
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

/* The payload members the fold reads, found in one walk; the first of a
 * name counts, as with cJSON_GetObjectItemCaseSensitive. Not const: the
 * fold may move one into a widget instead of copying it. */
struct fields {
	cJSON *wf, *pid, *step, *pct, *content, *status, *error, *result, *retry;
};

static void
scan_payload(cJSON *p, struct fields *f)
{
	*f = (struct fields){ 0 };
	for (cJSON *m = p->child; m; m = m->next) {
		const char *k = m->string;
		cJSON **slot = NULL;
		if (k == NULL)
			continue;
		switch (k[0]) {
		case 'w': slot = is(k, "workflow_id") ? &f->wf : is(k, "will_retry") ? &f->retry : NULL; break;
		case 'p': slot = is(k, "process_id") ? &f->pid : is(k, "percentage") ? &f->pct : NULL; break;
		case 's': slot = is(k, "step") ? &f->step : is(k, "status") ? &f->status : NULL; break;
		case 'c': slot = is(k, "content") ? &f->content : NULL; break;
		case 'e': slot = is(k, "error") ? &f->error : NULL; break;
		case 'r': slot = is(k, "result") ? &f->result : NULL; break;
		}
		if (slot && *slot == NULL)
			*slot = m;
	}
}

/* The members of a progress widget the fold touches, found in one walk. */
struct progress {
	cJSON *w, *id, *pid, *pct, *activities, *updates;
};

static void
scan_progress(cJSON *w, struct progress *pw)
{
	*pw = (struct progress){ .w = w };
	for (cJSON *m = w->child; m; m = m->next) {
		const char *k = m->string;
		cJSON **slot = NULL;
		if (k == NULL)
			continue;
		switch (k[0]) {
		case 'i': slot = is(k, "id") ? &pw->id : NULL; break;
		case 'p': slot = is(k, "process_id") ? &pw->pid : is(k, "percentage") ? &pw->pct : NULL; break;
		case 'a': slot = is(k, "activities") ? &pw->activities : NULL; break;
		case 'u': slot = is(k, "updates") ? &pw->updates : NULL; break;
		}
		if (slot && *slot == NULL)
			*slot = m;
	}
}

/* The progress widget an event of process pid (or NULL) of workflow wf
 * (or NULL) belongs to: progress-{wf} when it holds the process (or the
 * event names none), else the first that holds the process, else
 * progress-{wf}. false when there is none. A process id reused by another
 * workflow thus stays with the workflow the event names. */
static bool
progress_of(cJSON *widgets, const char *pid, const char *wf, struct progress *pw)
{
	char id[EVK_FOLD_ID_MAX + 1];
	cJSON *w, *own = NULL; /* progress-{wf} */
	if (wf) {
		/* Usually the event names both: progress-{wf} holding the
		 * process is the answer without looking at every widget. */
		join(id, sizeof(id), "progress-", wf);
		if ((own = evk_fold_find(widgets, id)) != NULL) {
			scan_progress(own, pw);
			const char *wp = text(pw->pid);
			if (pid == NULL || (wp && strcmp(wp, pid) == 0))
				return true;
		}
	}
	if (pid) {
		cJSON_ArrayForEach(w, widgets) {
			const char *t = str(w, "type"), *wp = str(w, "process_id");
			if (t && wp && strcmp(t, "progress") == 0 && strcmp(wp, pid) == 0) {
				scan_progress(w, pw);
				return true;
			}
		}
	}
	if (own) {
		scan_progress(own, pw);
		return true;
	}
	return false;
}

static cJSON *
new_progress(cJSON *widgets, const char *wf)
{
	char id[EVK_FOLD_ID_MAX + 1];
	join(id, sizeof(id), "progress-", wf);
	cJSON *w = cJSON_CreateObject();
	if (w == NULL || !add(w, "id", cJSON_CreateString(id)) ||
	    !add(w, "type", cJSON_CreateString("progress")) ||
	    !add(w, "workflow_id", cJSON_CreateString(wf)) ||
	    !add(w, "is_live", cJSON_CreateTrue()) ||
	    !add(w, "percentage", cJSON_CreateNumber(0)) ||
	    !add(w, "activities", cJSON_CreateArray()) ||
	    !add(w, "updates", cJSON_CreateArray()) || !cJSON_AddItemToArray(widgets, w)) {
		cJSON_Delete(w);
		return NULL;
	}
	return w;
}

/* The widget events, told apart once. */
enum kind {
	NOT_WIDGET, CREATED, STARTED, PROGRESS, UPDATE, COMPLETED, WF_COMPLETED, WF_FAILED
};

static enum kind
kind_of(const struct evk_event *ev)
{
#define K(name, kind) { name, sizeof(name) - 1, kind }
	static const struct {
		const char *name;
		size_t len;
		enum kind kind;
	} kinds[] = {
		K("step_started", STARTED), K("step_progress", PROGRESS),
		K("progress_update", UPDATE), K("step_completed", COMPLETED),
		K("process_created", CREATED), K("workflow_completed", WF_COMPLETED),
		K("workflow_failed", WF_FAILED),
	};
#undef K
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (ev->event_len == kinds[i].len && memcmp(ev->event, kinds[i].name, kinds[i].len) == 0)
			return kinds[i].kind;
	return NOT_WIDGET;
}

#define FAIL(msg) do { *why = msg; rv = EVK_EINVAL; goto out; } while (0)
#define OOM() do { rv = EVK_ENOMEM; goto out; } while (0)

int
evk_fold_apply(cJSON *widgets, const struct evk_event *ev, const struct evk_fold_opts *o,
	       evk_fold_note_fn note, void *arg, const char **why)
{
	size_t max = o && o->list_max ? o->list_max : EVK_FOLD_LIST_MAX;
	enum kind kind = kind_of(ev);
	cJSON *p = NULL, *w;
	struct fields f;
	struct progress pw;
	const char *wf, *pid, *step;
	char desc[160];
	int rv = EVK_OK;
	static const char *none = "";

	*why = none;
	if (kind == NOT_WIDGET)
		return EVK_OK; /* not a widget event */
	p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	if (!has_type(p, cJSON_Object))
		FAIL("payload is not an object");
	scan_payload(p, &f);
	wf = text(f.wf);
	pid = text(f.pid);

	if (kind == CREATED) {
		if (!pid || !wf)
			FAIL("process_created without process_id and workflow_id");
		char id[EVK_FOLD_ID_MAX + 1];
		join(id, sizeof(id), "progress-", wf);
		if ((w = evk_fold_find(widgets, id)) == NULL && (w = new_progress(widgets, wf)) == NULL)
			OOM();
		if (!put(w, "process_id", cJSON_CreateString(pid)))
			OOM();
		if (note) note(arg, id, EVK_FOLD_UPDATED);
		goto out;
	}
	if (kind == WF_COMPLETED) {
		if (!wf)
			FAIL("workflow_completed without workflow_id");
		char pid_id[EVK_FOLD_ID_MAX + 1], rid[EVK_FOLD_ID_MAX + 1];
		join(pid_id, sizeof(pid_id), "progress-", wf);
		join(rid, sizeof(rid), "result-", wf);
		cJSON *r = cJSON_CreateObject();
		const char *status = text(f.status);
		if (r == NULL || !add(r, "id", cJSON_CreateString(rid)) ||
		    !add(r, "type", cJSON_CreateString("result")) ||
		    !add(r, "workflow_id", cJSON_CreateString(wf)) ||
		    !add(r, "status", cJSON_CreateString(status ? status : "completed")) ||
		    !add(r, "percentage", cJSON_CreateNumber(100)) ||
		    !add(r, "completed_at", ts_string(ev))) {
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
	step = text(f.step);
	const cJSON *pct = f.pct;
	const char *content = text(f.content);
	if (pct && !has_type(pct, cJSON_Number))
		FAIL("percentage is not a number");
	if ((kind == STARTED || kind == COMPLETED) && !step)
		FAIL("step event without step");
	if (kind == PROGRESS && !pct)
		FAIL("step_progress without percentage");
	if (kind == UPDATE && !content)
		FAIL("progress_update without content");
	if (!progress_of(widgets, pid, wf, &pw)) {
		if (kind == COMPLETED)
			FAIL("step_completed without a running activity of that step");
		if (!wf)
			FAIL("no process_id or workflow_id to find the widget by");
		if ((w = new_progress(widgets, wf)) == NULL)
			OOM();
		scan_progress(w, &pw);
	}
	w = pw.w;

	if (kind == STARTED) {
		cJSON *a = cJSON_CreateObject();
		/* The payload's step (a string) moves into the activity: the
		 * payload goes anyway. */
		if (a == NULL || !add(a, "step", cJSON_DetachItemViaPointer(p, f.step)) ||
		    !add(a, "status", cJSON_CreateStringReference("running")) ||
		    !add(a, "timestamp", ts_string(ev)) ||
		    !add(a, "description", describe(step, desc, sizeof(desc)))) {
			cJSON_Delete(a);
			OOM();
		}
		if (!prepend(w, "activities", pw.activities, a, max) ||
		    !set_number(w, "percentage", pw.pct, pct ? pct->valuedouble : estimate(step)))
			OOM();
	} else if (kind == PROGRESS) {
		if (!set_number(w, "percentage", pw.pct, pct->valuedouble))
			OOM();
	} else if (kind == UPDATE) {
		cJSON *u = cJSON_CreateObject();
		if (u == NULL || !add(u, "content", cJSON_DetachItemViaPointer(p, f.content)) ||
		    !add(u, "timestamp", ts_string(ev))) {
			cJSON_Delete(u);
			OOM();
		}
		if (!prepend(w, "updates", pw.updates, u, max))
			OOM();
	} else if (kind == COMPLETED) {
		cJSON *err = f.error, *res = f.result;
		cJSON *a, *found = NULL, *status = NULL;
		cJSON_ArrayForEach(a, pw.activities) {
			const char *as = str(a, "step"), *st = text(status = member(a, "status"));
			if (as && st && strcmp(as, step) == 0 && is(st, "running")) {
				found = a; /* the most recent: the list is newest first */
				break;
			}
		}
		if (found == NULL)
			FAIL("step_completed without a running activity of that step");
		/* A status the fold gave refers to a literal (it owns no text):
		 * it is pointed at the new one in place. The payload's error and
		 * result move over whole, as copies of them would. */
		const char *now = err ? "failed" : "completed";
		if (status->type & cJSON_IsReference)
			status->valuestring = (char *)now;
		else if (!put(found, "status", cJSON_CreateStringReference(now)))
			OOM();
		if ((err && !put(found, "error", cJSON_DetachItemViaPointer(p, err))) ||
		    (res && !put(found, "result", cJSON_DetachItemViaPointer(p, res))))
			OOM();
		if (pct && !set_number(w, "percentage", pw.pct, pct->valuedouble))
			OOM();
	} else { /* workflow_failed */
		const char *err = text(f.error);
		if (!put(w, "status", cJSON_CreateString("failed")) ||
		    !put(w, "error", cJSON_CreateString(err ? err : "failed")) ||
		    !put(w, "will_retry", cJSON_CreateBool(cJSON_IsTrue(f.retry))))
			OOM();
	}
	if (note) note(arg, text(pw.id), EVK_FOLD_UPDATED);
out:
	cJSON_Delete(p);
	return rv;
}
