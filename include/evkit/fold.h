/* The widget fold: widget state + one event -> widget state, as the seed's
 * LiveView handle_info clauses do. Pure: no I/O, no clock (times come from
 * the event's ts). widgetd runs it; tests run it clause by clause.
 *
 * The state is a cJSON array of widget objects, each with "id" and
 * "type". Progress widgets are "progress-{wf}"; on workflow_completed one
 * is replaced by "result-{wf}". Counters, session lists and keep_live
 * lists are the widgets a config declares; their clauses are the
 * evk_fold_count, evk_fold_session_* and evk_fold_keep_live below.
 *
 * Every clause checks the event whole before it touches the state: on
 * EVK_EINVAL (malformed, *why says how) nothing changed. On EVK_ENOMEM the
 * widget touched may be left half updated (still of a valid shape). Each
 * widget changed is told to note (when not NULL), once per clause. */
#ifndef EVKIT_FOLD_H
#define EVKIT_FOLD_H

#include "evkit/event.h"
#include "evkit/limits.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define EVK_FOLD_LIST_MAX 50 /* activities and updates kept per widget */
/* Bytes in a widget id the fold makes ("progress-" or "result-" and the
 * workflow id, cut to fit): "widget:" and the id make a topic. */
#define EVK_FOLD_ID_MAX (EVK_TOPIC_MAX - 7)

/* Progress and result widgets (the workflows' own) kept at once: by
 * default, and the most widgetd --max-widgets or a config's max_widgets
 * takes. */
#define EVK_FOLD_WIDGETS_DEFAULT 1000
#define EVK_FOLD_WIDGETS_LIMIT 1000000

struct evk_fold_opts {
	size_t list_max;    /* 0: EVK_FOLD_LIST_MAX */
	size_t max_widgets; /* 0: EVK_FOLD_WIDGETS_DEFAULT; see evk_fold_trim */
};

/* What a fold did to which widget. */
enum evk_fold_change { EVK_FOLD_UPDATED, EVK_FOLD_REMOVED };
typedef void (*evk_fold_note_fn)(void *arg, const char *widget_id,
				 enum evk_fold_change change);

/* Applies a workflow event (process_created, step_started, step_progress,
 * progress_update, step_completed, workflow_completed, workflow_failed) to
 * widgets. The process and workflow are the payload's process_id and
 * workflow_id. EVK_OK
 * when applied (or not meant for widgets: then nothing changes);
 * EVK_EINVAL; EVK_ENOMEM. *why is "" unless EVK_EINVAL. A new progress or
 * result widget, made last, keeps the workflows' widgets within
 * o->max_widgets: the oldest others go (evk_fold_trim), noted removed
 * after the clause's own notes. */
int evk_fold_apply(cJSON *widgets, const struct evk_event *ev,
		   const struct evk_fold_opts *o, evk_fold_note_fn note, void *arg,
		   const char **why);

/* Keeps at most max (0 counts as 1) progress and result widgets in
 * widgets: past it, the oldest result widgets go first, then the oldest
 * progress widgets (oldest: first in the array, which holds the widgets in
 * the order they were made in; result-{wf} is made when its workflow
 * completes), never keep (NULL: none). Declared widgets (counter, session,
 * keep_live) never go and do not count. Each widget that goes is taken
 * out of the array, then noted EVK_FOLD_REMOVED (when it has an id), then
 * freed. Returns how many went. One walk to count, one per kind to drop. */
size_t evk_fold_trim(cJSON *widgets, size_t max, const cJSON *keep, evk_fold_note_fn note,
		     void *arg);

/* The widget with this id, or NULL. */
cJSON *evk_fold_find(const cJSON *widgets, const char *id);

/* counter widget id (made when missing): counts[event] goes up by one. */
int evk_fold_count(cJSON *widgets, const char *id, const struct evk_event *ev,
		   evk_fold_note_fn note, void *arg);

/* Session widget id: made when missing (active, started at ts, no items;
 * ts is EVK_TS_LEN bytes); EVK_OK whether made or found. */
int evk_fold_session_init(cJSON *widgets, const char *id, const char *ts,
			  evk_fold_note_fn note, void *arg);

/* A case created or synced (payload {"data": {"id": ...}}): while the
 * session of widget id is active, data goes first in its items, once per
 * case id, at most limit kept. A payload without data.id is let be
 * (EVK_OK, nothing noted), as the seed's handler does. */
int evk_fold_session_add(cJSON *widgets, const char *id, size_t limit,
			 const struct evk_event *ev, evk_fold_note_fn note, void *arg);

/* widgetd session start|stop at ts (EVK_TS_LEN bytes): start empties the
 * list and makes it active; stop freezes it. */
int evk_fold_session_mark(cJSON *widgets, const char *id, bool start,
			  const char *ts, evk_fold_note_fn note, void *arg);

/* keep_live widget id (made when missing) gets items, the rows its query
 * returned (taken, also on failure), and the count of queries made. */
int evk_fold_keep_live(cJSON *widgets, const char *id, cJSON *items,
		       double queries, evk_fold_note_fn note, void *arg);

/* Checks the shape of each widget of a saved state against what the
 * clauses above make and read, and takes out the damaged ones (and any
 * widget after the first of its id), telling drop (when not NULL) the
 * widget's index in the saved array, its id (or NULL) and why. Returns
 * how many were dropped. */
typedef void (*evk_fold_drop_fn)(void *arg, int index, const char *id,
				 const char *why);
int evk_fold_check(cJSON *widgets, evk_fold_drop_fn drop, void *arg);


#endif
