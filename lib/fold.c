#include "evkit/fold.h"

#include "fold_impl.h"

#include "evkit/err.h"
#include "evkit/topic.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- small tools, on cJSON's public API ----
 *
 * Cost (bench/foldbench, callgrind, N=120000 minus N=20000): 5,364
 * instructions per event; 5,198 when the fold reached into cJSON's
 * internals (525858c). The rest is the accessors called instead of read
 * inline (cJSON_GetStringValue, cJSON_Is*: about 110 an event) and reused
 * entries refilled with cJSON_SetValuestring instead of pointing at
 * literals (about 60): no measured need for the internals. */

cJSON *
evk_fold_find(const cJSON *widgets, const char *id)
{
	cJSON *w;
	cJSON_ArrayForEach(w, widgets) {
		const char *wid = str(w, "id");
		if (wid && strcmp(wid, id) == 0)
			return w;
	}
	return NULL;
}

/* Adds member name (a string literal: cJSON keeps the pointer instead of
 * a copy, cJSON_AddItemToObjectCS) to o, which has none of that name; v
 * is taken either way. false when out of memory (or v is NULL: its
 * creation failed). */
static bool
add(cJSON *o, const char *name, cJSON *v)
{
	if (v && !cJSON_AddItemToObjectCS(o, name, v)) {
		cJSON_Delete(v);
		return false;
	}
	return v != NULL;
}

/* Sets member name of o to v (replacing one of that name); v is taken
 * either way. A new member keeps name by pointer when it is a literal
 * (cJSON_AddItemToObjectCS), else a copy. false when out of memory (or v
 * is NULL: its creation failed). */
static bool
set_member(cJSON *o, const char *name, cJSON *v, bool literal)
{
	if (v == NULL)
		return false;
	bool ok = member(o, name) ? cJSON_ReplaceItemInObjectCaseSensitive(o, name, v)
		  : literal	  ? cJSON_AddItemToObjectCS(o, name, v)
				  : cJSON_AddItemToObject(o, name, v);
	if (!ok)
		cJSON_Delete(v);
	return ok;
}

/* set_member for a name that is a string literal. */
static bool
put(cJSON *o, const char *name, cJSON *v)
{
	return set_member(o, name, v, true);
}

/* Sets number member name of o, whose current member is old (NULL: none
 * or not known): in place when that is a number. */
static bool
put_number(cJSON *o, const char *name, cJSON *old, double v)
{
	if (old == NULL)
		old = member(o, name);
	if (cJSON_IsNumber(old)) {
		cJSON_SetNumberValue(old, v);
		return true;
	}
	return put(o, name, cJSON_CreateNumber(v));
}

/* Sets string member name of o: in place when it is a string. */
static bool
put_string(cJSON *o, const char *name, const char *v)
{
	cJSON *old = member(o, name);
	if (cJSON_IsString(old) && cJSON_SetValuestring(old, v) != NULL)
		return true;
	return put(o, name, cJSON_CreateString(v));
}

/* An event's ts as a string, in s. */
static const char *
ts_text(char s[EVK_TS_LEN + 1], const char *ts)
{
	memcpy(s, ts, EVK_TS_LEN);
	s[EVK_TS_LEN] = '\0';
	return s;
}

static cJSON *
ts_string(const char *ts)
{
	char s[EVK_TS_LEN + 1];
	return cJSON_CreateString(ts_text(s, ts));
}

/* The array name of w, list (NULL: not known), made when missing or not
 * an array; NULL when out of memory. */
static cJSON *
list_of(cJSON *w, const char *name, cJSON *list)
{
	if (list == NULL)
		list = member(w, name);
	if (!cJSON_IsArray(list) && (list = cJSON_CreateArray(), !put(w, name, list)))
		return NULL;
	return list;
}

/* Makes room in list for one more item, keeping at most max (at least
 * one): the item that one more would push out is detached and returned
 * (the caller may reuse it), any past it deleted; NULL when there is room.
 * One walk to the cap. */
static cJSON *
take_tail(cJSON *list, size_t max)
{
	cJSON *last = list->child, *extra;
	for (size_t n = 1; last && n < max; n++)
		last = last->next;
	if (last == NULL)
		return NULL;
	while ((extra = last->next) != NULL)
		cJSON_Delete(cJSON_DetachItemViaPointer(list, extra));
	return cJSON_DetachItemViaPointer(list, last);
}

/* Prepends item (taken) to the array name of w, list (NULL: not known;
 * made when missing or not an array), keeping at most max. */
static bool
prepend(cJSON *w, const char *name, cJSON *list, cJSON *item, size_t max)
{
	if (item == NULL)
		return false;
	if ((list = list_of(w, name, list)) == NULL) {
		cJSON_Delete(item);
		return false;
	}
	cJSON_Delete(take_tail(list, max));
	if (!cJSON_InsertItemInArray(list, 0, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/* An object of n string members, names[i] (literals) = values[i], in that
 * order. old (taken, or NULL) is an item a full list dropped: when it is
 * such an object (members past the n may differ: they go), it is refilled
 * in place (cJSON_SetValuestring), which spares a dozen allocations per
 * event at steady state; else it goes and a new object is made. NULL
 * when out of memory. */
static cJSON *
entry(cJSON *old, const char *const *names, const char *const *values, size_t n)
{
	cJSON *m = cJSON_IsObject(old) ? old->child : NULL, *next;
	size_t i = 0;
	for (; m && i < n && m->string && is_name(m->string, names[i]); i++)
		m = m->next;
	if (i == n) {
		for (; m; m = next) {
			next = m->next;
			cJSON_Delete(cJSON_DetachItemViaPointer(old, m));
		}
		/* NULL for a member that is no string (or a reference) */
		for (i = 0, m = old->child; i < n && cJSON_SetValuestring(m, values[i]); i++)
			m = m->next;
		if (i == n)
			return old;
	}
	cJSON_Delete(old);
	cJSON *o = cJSON_CreateObject();
	for (i = 0; o && i < n; i++)
		if (!add(o, names[i], cJSON_CreateString(values[i]))) {
			cJSON_Delete(o);
			return NULL;
		}
	return o;
}

/* Puts an entry (see entry()) first in the array name of w, list (NULL:
 * not known; made when missing or not an array), keeping at most max. */
static bool
prepend_entry(cJSON *w, const char *name, cJSON *list, size_t max, const char *const *names,
	      const char *const *values, size_t n)
{
	cJSON *item;
	if ((list = list_of(w, name, list)) == NULL ||
	    (item = entry(take_tail(list, max), names, values, n)) == NULL)
		return false;
	if (!cJSON_InsertItemInArray(list, 0, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/* The widget id, made (with these id and type members first) when
 * missing; NULL when out of memory. */
static cJSON *
widget(cJSON *widgets, const char *id, const char *type)
{
	cJSON *w = evk_fold_find(widgets, id);
	if (w)
		return w;
	if ((w = cJSON_CreateObject()) == NULL || !add(w, "id", cJSON_CreateString(id)) ||
	    !add(w, "type", cJSON_CreateString(type)) || !cJSON_AddItemToArray(widgets, w)) {
		cJSON_Delete(w);
		return NULL;
	}
	return w;
}

static void
tell(evk_fold_note_fn note, void *arg, const char *id, enum evk_fold_change c)
{
	if (note)
		note(arg, id, c);
}

/* ---- workflow events: progress and result widgets ---- */

/* One workflow event being folded. */
struct fold {
	cJSON *widgets;
	const struct evk_event *ev;
	cJSON *payload; /* an object */
	/* Its members the clauses read, found in one walk (the first of a
	 * name, as cJSON_GetObjectItemCaseSensitive finds). */
	cJSON *step, *pct, *content, *status, *error, *result, *retry;
	const char *wf, *pid; /* or NULL */
	char topic_id[EVK_TOPIC_MAX + 1]; /* the id of process:{id} or workflow:{id} */
	/* The members of the event's progress widget the clauses touch,
	 * found in one walk (see scan_progress). */
	cJSON *w_pid, *w_pct, *w_activities, *w_updates;
	cJSON *made; /* a widget the clause added for a new workflow, or NULL */
	size_t max;
	const char *why;
};

/* prefix + name into out (n bytes), cut short as snprintf would: a
 * widget id or a description. Not snprintf: that was a tenth of the
 * fold's instructions. */
static inline const char *
join(char *out, size_t n, const char *prefix, const char *name)
{
	size_t a = strlen(prefix), b = strlen(name);
	if (a > n - 1)
		a = n - 1;
	if (b > n - 1 - a)
		b = n - 1 - a;
	memcpy(out, prefix, a);
	memcpy(out + a, name, b);
	out[a + b] = '\0';
	return out;
}

/* prefix + wf, cut to EVK_FOLD_ID_MAX bytes. */
static inline const char *
widget_id(char out[EVK_FOLD_ID_MAX + 1], const char *prefix, const char *wf)
{
	return join(out, EVK_FOLD_ID_MAX + 1, prefix, wf);
}

/* The progress widget an event of process f->pid of workflow f->wf (either
 * may be NULL) belongs to: progress-{wf} when it holds the process (or the
 * event names none), else the first that holds the process, else
 * progress-{wf}, else NULL. A process id reused by another workflow thus
 * stays with the workflow the event names. */
static void
scan_progress(struct fold *f, cJSON *w)
{
	cJSON *m;
	f->w_pid = f->w_pct = f->w_activities = f->w_updates = NULL;
	cJSON_ArrayForEach(m, w) {
		const char *k = m->string;
		cJSON **slot = NULL;
		switch (k ? k[0] : 0) {
		case 'p': /* the second byte tells the two apart */
			slot = k[1] == 'r' ? (is_name(k, "process_id") ? &f->w_pid : NULL)
					   : (is_name(k, "percentage") ? &f->w_pct : NULL);
			break;
		case 'a': slot = is_name(k, "activities") ? &f->w_activities : NULL; break;
		case 'u': slot = is_name(k, "updates") ? &f->w_updates : NULL; break;
		}
		if (slot && *slot == NULL)
			*slot = m;
	}
}

static cJSON *
progress_of(struct fold *f)
{
	char id[EVK_FOLD_ID_MAX + 1];
	cJSON *w, *own = f->wf ? evk_fold_find(f->widgets, widget_id(id, "progress-", f->wf)) : NULL;
	if (own) {
		scan_progress(f, own);
		const char *own_pid = cJSON_GetStringValue(f->w_pid);
		if (f->pid == NULL || (own_pid && strcmp(own_pid, f->pid) == 0))
			return own;
	}
	if (f->pid) {
		cJSON_ArrayForEach(w, f->widgets) {
			const char *t = str(w, "type"), *wp = str(w, "process_id");
			if (t && wp && str(w, "id") && strcmp(t, "progress") == 0 && strcmp(wp, f->pid) == 0) {
				scan_progress(f, w);
				return w;
			}
		}
	}
	if (own)
		scan_progress(f, own);
	return own;
}

/* progress-{f->wf}, new, last in the widgets (f->made). */
static cJSON *
new_progress(struct fold *f)
{
	char id[EVK_FOLD_ID_MAX + 1];
	const char *wf = f->wf;
	cJSON *w = cJSON_CreateObject();
	if (w == NULL || !add(w, "id", cJSON_CreateString(widget_id(id, "progress-", wf))) ||
	    !add(w, "type", cJSON_CreateString("progress")) ||
	    !add(w, "workflow_id", cJSON_CreateString(wf)) || !add(w, "is_live", cJSON_CreateTrue()) ||
	    !add(w, "percentage", cJSON_CreateNumber(0)) ||
	    !add(w, "activities", cJSON_CreateArray()) || !add(w, "updates", cJSON_CreateArray()) ||
	    !cJSON_AddItemToArray(f->widgets, w)) {
		cJSON_Delete(w);
		return NULL;
	}
	return f->made = w;
}

/* Whether workflow f->wf can name widgets: progress-{wf} and result-{wf}
 * (as cut) each make a topic after "widget:", where they are announced.
 * Asked only where a widget is about to be made. */
static bool
names_widgets(struct fold *f)
{
	char topic[EVK_TOPIC_MAX + 1];
	static const char *const prefixes[] = { "widget:progress-", "widget:result-" };
	for (size_t i = 0; i < 2; i++) {
		join(topic, sizeof(topic), prefixes[i], f->wf);
		if (!evk_topic_valid(topic, strlen(topic))) {
			f->why = "workflow_id cannot name a widget (widget:progress-{id} is no topic)";
			return false;
		}
	}
	return true;
}

/* The event's progress widget, made for its workflow when there is none;
 * NULL with f->why set, or on EVK_ENOMEM (*rv). */
static cJSON *
progress_or_new(struct fold *f, int *rv)
{
	cJSON *w = progress_of(f);
	if (w)
		return w;
	if (f->wf == NULL) {
		f->why = "no process_id or workflow_id to find the widget by";
		*rv = EVK_EINVAL;
	} else if (!names_widgets(f)) {
		*rv = EVK_EINVAL;
	} else if ((w = new_progress(f)) == NULL) {
		*rv = EVK_ENOMEM;
	} else {
		scan_progress(f, w);
	}
	return w;
}

/* The seed's describe_step/1 and estimate_progress/1. */
static const char *
describe(char s[160], const char *step)
{
	if (strcmp(step, "validate") == 0)
		return "Validating input";
	if (strcmp(step, "process") == 0)
		return "Processing data";
	return join(s, 160, "Running ", step);
}

static double
estimate(const char *step)
{
	return strcmp(step, "validate") == 0 ? 30 : strcmp(step, "process") == 0 ? 60 : 50;
}

/* The payload's percentage: NULL when absent, *bad when not a number. */
static const cJSON *
percentage(struct fold *f, bool *bad)
{
	const cJSON *pct = f->pct;
	*bad = pct && !cJSON_IsNumber(pct);
	if (*bad)
		f->why = "percentage is not a number";
	return pct;
}

/* process_created: progress-{wf} (made when missing) holds the process. */
static int
process_created(struct fold *f, cJSON **changed)
{
	char id[EVK_FOLD_ID_MAX + 1];
	if (!f->pid || !f->wf) {
		f->why = "process_created without process_id and workflow_id";
		return EVK_EINVAL;
	}
	cJSON *w = evk_fold_find(f->widgets, widget_id(id, "progress-", f->wf));
	if (w == NULL && !names_widgets(f))
		return EVK_EINVAL;
	if ((w == NULL && (w = new_progress(f)) == NULL) ||
	    !put_string(w, "process_id", f->pid))
		return EVK_ENOMEM;
	*changed = w;
	return EVK_OK;
}

/* step_started: a running activity first, and the percentage given or the
 * seed's estimate. */
static int
step_started(struct fold *f, cJSON **changed)
{
	const char *step = cJSON_GetStringValue(f->step);
	bool bad;
	const cJSON *pct = percentage(f, &bad);
	int rv = EVK_OK;
	if (bad)
		return EVK_EINVAL;
	if (step == NULL) {
		f->why = "step event without step";
		return EVK_EINVAL;
	}
	static const char *const names[] = { "step", "status", "timestamp", "description" };
	char ts[EVK_TS_LEN + 1], text[160];
	const char *values[] = { step, "running", ts_text(ts, f->ev->ts), describe(text, step) };
	cJSON *w = progress_or_new(f, &rv);
	if (w == NULL)
		return rv;
	if (!prepend_entry(w, "activities", f->w_activities, f->max, names, values, 4) ||
	    !put_number(w, "percentage", f->w_pct, pct ? pct->valuedouble : estimate(step)))
		return EVK_ENOMEM;
	*changed = w;
	return EVK_OK;
}

/* step_progress: the percentage. */
static int
step_progress(struct fold *f, cJSON **changed)
{
	bool bad;
	const cJSON *pct = percentage(f, &bad);
	int rv = EVK_OK;
	if (bad)
		return EVK_EINVAL;
	if (pct == NULL) {
		f->why = "step_progress without percentage";
		return EVK_EINVAL;
	}
	cJSON *w = progress_or_new(f, &rv);
	if (w == NULL)
		return rv;
	if (!put_number(w, "percentage", f->w_pct, pct->valuedouble))
		return EVK_ENOMEM;
	*changed = w;
	return EVK_OK;
}

/* progress_update: an update first. */
static int
progress_update(struct fold *f, cJSON **changed)
{
	const char *content = cJSON_GetStringValue(f->content);
	bool bad;
	int rv = EVK_OK;
	percentage(f, &bad);
	if (bad)
		return EVK_EINVAL;
	if (content == NULL) {
		f->why = "progress_update without content";
		return EVK_EINVAL;
	}
	static const char *const names[] = { "content", "timestamp" };
	char ts[EVK_TS_LEN + 1];
	const char *values[] = { content, ts_text(ts, f->ev->ts) };
	cJSON *w = progress_or_new(f, &rv);
	if (w == NULL)
		return rv;
	if (!prepend_entry(w, "updates", f->w_updates, f->max, names, values, 2))
		return EVK_ENOMEM;
	*changed = w;
	return EVK_OK;
}

/* step_completed: the most recent running activity of the step becomes
 * completed (failed with an error), with the payload's error and result
 * moved over. */
static int
step_completed(struct fold *f, cJSON **changed)
{
	const char *step = cJSON_GetStringValue(f->step);
	bool bad;
	const cJSON *pct = percentage(f, &bad);
	cJSON *w, *a, *found = NULL;
	if (bad)
		return EVK_EINVAL;
	if (step == NULL) {
		f->why = "step event without step";
		return EVK_EINVAL;
	}
	if ((w = progress_of(f)) != NULL) {
		cJSON_ArrayForEach(a, f->w_activities) {
			const char *as = str(a, "step"), *st = str(a, "status");
			if (as && st && strcmp(as, step) == 0 && strcmp(st, "running") == 0) {
				found = a; /* the most recent: the list is newest first */
				break;
			}
		}
	}
	if (found == NULL) {
		f->why = "step_completed without a running activity of that step";
		return EVK_EINVAL;
	}
	cJSON *err = f->error ? cJSON_DetachItemViaPointer(f->payload, f->error) : NULL;
	cJSON *res = f->result ? cJSON_DetachItemViaPointer(f->payload, f->result) : NULL;
	bool ok = put_string(found, "status", err ? "failed" : "completed");
	ok = (err == NULL || put(found, "error", err)) && ok;
	ok = (res == NULL || put(found, "result", res)) && ok;
	if (!ok || (pct && !put_number(w, "percentage", f->w_pct, pct->valuedouble)))
		return EVK_ENOMEM;
	*changed = w;
	return EVK_OK;
}

/* workflow_failed: the progress widget shows the error. */
static int
workflow_failed(struct fold *f, cJSON **changed)
{
	const char *err = cJSON_GetStringValue(f->error);
	int rv = EVK_OK;
	cJSON *w = progress_or_new(f, &rv);
	if (w == NULL)
		return rv;
	if (!put_string(w, "status", "failed") || !put_string(w, "error", err ? err : "failed") ||
	    !put(w, "will_retry",
		 cJSON_CreateBool(cJSON_IsTrue(f->retry))))
		return EVK_ENOMEM;
	*changed = w;
	return EVK_OK;
}

/* workflow_completed: result-{wf} replaces progress-{wf}. Notes both
 * itself, the result first: a watcher never sees the workflow with
 * neither. */
static int
workflow_completed(struct fold *f, cJSON **changed, evk_fold_note_fn note, void *arg)
{
	char pid_id[EVK_FOLD_ID_MAX + 1], rid[EVK_FOLD_ID_MAX + 1];
	if (f->wf == NULL) {
		f->why = "workflow_completed without workflow_id";
		return EVK_EINVAL;
	}
	if (!names_widgets(f))
		return EVK_EINVAL;
	const char *status = cJSON_GetStringValue(f->status);
	cJSON *r = cJSON_CreateObject(), *old;
	if (r == NULL || !add(r, "id", cJSON_CreateString(widget_id(rid, "result-", f->wf))) ||
	    !add(r, "type", cJSON_CreateString("result")) ||
	    !add(r, "workflow_id", cJSON_CreateString(f->wf)) ||
	    !add(r, "status", cJSON_CreateString(status ? status : "completed")) ||
	    !add(r, "percentage", cJSON_CreateNumber(100)) ||
	    !add(r, "completed_at", ts_string(f->ev->ts))) {
		cJSON_Delete(r);
		return EVK_ENOMEM;
	}
	bool replaces = (old = evk_fold_find(f->widgets, rid)) != NULL;
	if (old)
		cJSON_Delete(cJSON_DetachItemViaPointer(f->widgets, old));
	if (!cJSON_AddItemToArray(f->widgets, r)) {
		cJSON_Delete(r);
		return EVK_ENOMEM;
	}
	tell(note, arg, rid, EVK_FOLD_UPDATED);
	if ((old = evk_fold_find(f->widgets, widget_id(pid_id, "progress-", f->wf))) != NULL) {
		cJSON_Delete(cJSON_DetachItemViaPointer(f->widgets, old));
		tell(note, arg, pid_id, EVK_FOLD_REMOVED);
		replaces = true;
	}
	if (!replaces)
		f->made = r; /* one more workflow widget */
	*changed = NULL;
	return EVK_OK;
}

/* The event -> clause table. A clause returns EVK_OK with *changed the
 * widget to note (or NULL), or an error with nothing changed. */
typedef int clause_fn(struct fold *f, cJSON **changed);
#define CLAUSE(name) { #name, sizeof(#name) - 1, name }
static const struct clause {
	const char *event;
	size_t len;
	clause_fn *fold;
} clauses[] = {
	CLAUSE(process_created), CLAUSE(step_started),	  CLAUSE(step_progress),
	CLAUSE(progress_update), CLAUSE(step_completed), CLAUSE(workflow_failed),
	{ "workflow_completed", sizeof("workflow_completed") - 1, NULL },
};
#undef CLAUSE

/* The seed's topics name the process (process:{pid}) or the workflow
 * (workflow:{wf}) an event is about: the topic's id counts where the
 * payload names none. */
static void
topic_ids(struct fold *f)
{
	static const struct {
		const char *prefix;
		size_t len;
		size_t at;
	} topics[] = {
		{ "process:", 8, offsetof(struct fold, pid) },
		{ "workflow:", 9, offsetof(struct fold, wf) },
	};
	const struct evk_event *ev = f->ev;
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		const char **id = (const char **)((char *)f + topics[i].at);
		size_t n = ev->topic_len - topics[i].len;
		if (*id || ev->topic_len <= topics[i].len ||
		    memcmp(ev->topic, topics[i].prefix, topics[i].len) != 0 ||
		    memchr(ev->topic + topics[i].len, ':', n))
			continue;
		memcpy(f->topic_id, ev->topic + topics[i].len, n);
		f->topic_id[n] = '\0';
		*id = f->topic_id;
	}
}

static void
scan_payload(struct fold *f)
{
	cJSON *m, *wf = NULL, *pid = NULL;
	cJSON_ArrayForEach(m, f->payload) {
		const char *k = m->string;
		cJSON **slot = NULL;
		/* by the first letter (and the second or third where two
		 * names share it), then the name: one strcmp at most */
		switch (k[0]) {
		case 'w': slot = k[1] == 'o' ? (!strcmp(k, "workflow_id") ? &wf : NULL)
					     : (!strcmp(k, "will_retry") ? &f->retry : NULL); break;
		case 'p': slot = k[1] == 'r' ? (!strcmp(k, "process_id") ? &pid : NULL)
					     : (!strcmp(k, "percentage") ? &f->pct : NULL); break;
		case 's': slot = k[1] && k[2] == 'e' ? (!strcmp(k, "step") ? &f->step : NULL)
						     : (!strcmp(k, "status") ? &f->status : NULL); break;
		case 'c': slot = !strcmp(k, "content") ? &f->content : NULL; break;
		case 'e': slot = !strcmp(k, "error") ? &f->error : NULL; break;
		case 'r': slot = !strcmp(k, "result") ? &f->result : NULL; break;
		}
		if (slot && *slot == NULL)
			*slot = m; /* the first of a name, as cJSON_GetObjectItemCaseSensitive */
	}
	f->wf = cJSON_GetStringValue(wf);
	f->pid = cJSON_GetStringValue(pid);
	topic_ids(f);
}

static const struct clause *
clause_of(const struct evk_event *ev)
{
	for (size_t i = 0; i < sizeof(clauses) / sizeof(clauses[0]); i++)
		if (ev->event_len == clauses[i].len && memcmp(ev->event, clauses[i].event, ev->event_len) == 0)
			return &clauses[i];
	return NULL;
}

int
evk_fold_apply(cJSON *widgets, const struct evk_event *ev, const struct evk_fold_opts *o,
	       evk_fold_note_fn note, void *arg, const char **why)
{
	const struct clause *c = clause_of(ev);
	cJSON *changed = NULL;
	int rv;

	*why = "";
	if (c == NULL)
		return EVK_OK; /* not a widget event */
	struct fold f = {
		.widgets = widgets,
		.ev = ev,
		.payload = cJSON_ParseWithLength(ev->payload, ev->payload_len),
		.max = o && o->list_max ? o->list_max : EVK_FOLD_LIST_MAX,
	};
	if (!cJSON_IsObject(f.payload)) {
		*why = "payload is not an object";
		cJSON_Delete(f.payload);
		return EVK_EINVAL;
	}
	scan_payload(&f);
	rv = c->fold ? c->fold(&f, &changed) : workflow_completed(&f, &changed, note, arg);
	if (rv == EVK_OK && changed)
		tell(note, arg, str(changed, "id"), EVK_FOLD_UPDATED);
	if (f.made) /* a new workflow widget: the oldest go past the bound */
		evk_fold_trim(widgets, o && o->max_widgets ? o->max_widgets : EVK_FOLD_WIDGETS_DEFAULT,
			      f.made, note, arg);
	if (rv == EVK_EINVAL)
		*why = f.why;
	cJSON_Delete(f.payload);
	return rv;
}

/* ---- the bound on workflow widgets ---- */

/* What a widget is to the bound: 0 a declared one (never dropped), else
 * the round it may go in: result widgets first, then progress ones. */
static int
trim_round(const cJSON *w)
{
	const char *t = str(w, "type");
	switch (t ? t[0] : 0) { /* the first byte tells them apart */
	case 'r': return strcmp(t, "result") == 0;
	case 'p': return strcmp(t, "progress") == 0 ? 2 : 0;
	}
	return 0;
}

size_t
evk_fold_trim(cJSON *widgets, size_t max, const cJSON *keep, evk_fold_note_fn note, void *arg)
{
	size_t n = 0, dropped = 0;
	cJSON *w, *next;
	cJSON_ArrayForEach(w, widgets)
		n += trim_round(w) != 0;
	if (max == 0)
		max = 1;
	/* the array holds the widgets in the order they were made in */
	for (int round = 1; round <= 2 && n > max; round++) {
		for (w = widgets->child; w && n > max; w = next) {
			next = w->next;
			if (w == keep || trim_round(w) != round)
				continue;
			/* detached first: a note that looks the id up finds it gone */
			cJSON_DetachItemViaPointer(widgets, w);
			const char *id = str(w, "id");
			if (id)
				tell(note, arg, id, EVK_FOLD_REMOVED);
			cJSON_Delete(w);
			n--;
			dropped++;
		}
	}
	return dropped;
}

/* ---- declared widgets: counter, session, keep_live ---- */

int
evk_fold_count(cJSON *widgets, const char *id, const struct evk_event *ev,
	       evk_fold_note_fn note, void *arg)
{
	char key[EVK_EVENT_MAX + 1];
	cJSON *w = widget(widgets, id, "counter"), *counts, *n;
	if (w == NULL)
		return EVK_ENOMEM;
	if (!cJSON_IsObject(counts = member(w, "counts")) &&
	    (counts = cJSON_CreateObject(), !put(w, "counts", counts)))
		return EVK_ENOMEM;
	snprintf(key, sizeof(key), "%.*s", (int)ev->event_len, ev->event);
	if (cJSON_IsNumber(n = member(counts, key)))
		cJSON_SetNumberValue(n, n->valuedouble + 1);
	else if (!set_member(counts, key, cJSON_CreateNumber(1), false))
		return EVK_ENOMEM;
	tell(note, arg, id, EVK_FOLD_UPDATED);
	return EVK_OK;
}

/* Session widget id, made when missing (active since ts): *made says so. */
static cJSON *
session_widget(cJSON *widgets, const char *id, const char *ts, bool *made)
{
	cJSON *w = evk_fold_find(widgets, id);
	*made = w == NULL;
	if (w)
		return w;
	if ((w = widget(widgets, id, "session")) == NULL || !cJSON_AddTrueToObject(w, "active") ||
	    !add(w, "started_at", ts_string(ts)) ||
	    !cJSON_AddArrayToObject(w, "items"))
		return NULL;
	return w;
}

int
evk_fold_session_init(cJSON *widgets, const char *id, const char *ts,
		      evk_fold_note_fn note, void *arg)
{
	bool made;
	if (session_widget(widgets, id, ts, &made) == NULL)
		return EVK_ENOMEM;
	if (made)
		tell(note, arg, id, EVK_FOLD_UPDATED);
	return EVK_OK;
}

int
evk_fold_session_add(cJSON *widgets, const char *id, size_t limit, const struct evk_event *ev,
		     evk_fold_note_fn note, void *arg)
{
	bool made;
	cJSON *w = session_widget(widgets, id, ev->ts, &made), *items, *it;
	if (w == NULL)
		return EVK_ENOMEM;
	if (made)
		tell(note, arg, id, EVK_FOLD_UPDATED);
	if (!cJSON_IsTrue(member(w, "active")))
		return EVK_OK;
	cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	cJSON *data = cJSON_DetachItemFromObjectCaseSensitive(p, "data");
	const char *cid = str(data, "id");
	cJSON_Delete(p);
	if (!cJSON_IsObject(data) || cid == NULL) {
		cJSON_Delete(data);
		return EVK_OK;
	}
	if (!cJSON_IsArray(items = member(w, "items")) &&
	    (items = cJSON_CreateArray(), !put(w, "items", items))) {
		cJSON_Delete(data);
		return EVK_ENOMEM;
	}
	cJSON_ArrayForEach(it, items) {
		const char *other = str(it, "id");
		if (other && strcmp(other, cid) == 0) {
			cJSON_Delete(cJSON_DetachItemViaPointer(items, it));
			break;
		}
	}
	if (!prepend(w, "items", items, data, limit))
		return EVK_ENOMEM;
	tell(note, arg, id, EVK_FOLD_UPDATED);
	return EVK_OK;
}

int
evk_fold_session_mark(cJSON *widgets, const char *id, bool start, const char *ts,
		      evk_fold_note_fn note, void *arg)
{
	bool made;
	cJSON *w = session_widget(widgets, id, ts, &made);
	if (w == NULL)
		return EVK_ENOMEM;
	cJSON_DeleteItemFromObjectCaseSensitive(w, "active");
	cJSON_DeleteItemFromObjectCaseSensitive(w, "stopped_at");
	bool ok = cJSON_AddBoolToObject(w, "active", start) != NULL;
	if (start) {
		cJSON_DeleteItemFromObjectCaseSensitive(w, "started_at");
		cJSON_DeleteItemFromObjectCaseSensitive(w, "items");
		ok = ok && add(w, "started_at", ts_string(ts)) &&
		     cJSON_AddArrayToObject(w, "items");
	} else {
		ok = ok && add(w, "stopped_at", ts_string(ts));
	}
	if (!ok)
		return EVK_ENOMEM;
	tell(note, arg, id, EVK_FOLD_UPDATED);
	return EVK_OK;
}

int
evk_fold_keep_live(cJSON *widgets, const char *id, cJSON *items, double queries,
		   evk_fold_note_fn note, void *arg)
{
	cJSON *w = widget(widgets, id, "keep_live");
	if (w == NULL || items == NULL) {
		cJSON_Delete(items);
		return EVK_ENOMEM;
	}
	if (!put(w, "items", items) || !put_number(w, "queries", NULL, queries))
		return EVK_ENOMEM;
	tell(note, arg, id, EVK_FOLD_UPDATED);
	return EVK_OK;
}
