/* The widget fold: widget state + one event -> widget state, as the seed's
 * LiveView handle_info clauses do. Pure: no I/O, no clock (times come from
 * the event's ts). widgetd runs it; tests run it clause by clause.
 *
 * The state is a cJSON array of widget objects, each with "id" and
 * "type". Progress widgets are "progress-{wf}"; on workflow_completed one
 * is replaced by "result-{wf}". */
#ifndef EVKIT_FOLD_H
#define EVKIT_FOLD_H

#include "evkit/event.h"
#include "evkit/limits.h"

#include <cjson/cJSON.h>
#include <stddef.h>

#define EVK_FOLD_LIST_MAX 50 /* activities and updates kept per widget */
/* Bytes in a widget id the fold makes ("progress-" or "result-" and the
 * workflow id, cut to fit): "widget:" and the id make a topic. */
#define EVK_FOLD_ID_MAX (EVK_TOPIC_MAX - 7)

struct evk_fold_opts {
	size_t list_max; /* 0: EVK_FOLD_LIST_MAX */
};

/* What a fold did to which widget. */
enum evk_fold_change { EVK_FOLD_UPDATED, EVK_FOLD_REMOVED };
typedef void (*evk_fold_note_fn)(void *arg, const char *widget_id,
				 enum evk_fold_change change);

/* Applies ev to widgets. EVK_OK when applied (or not meant for widgets:
 * then nothing changes); EVK_EINVAL when the event is malformed, with
 * *why saying how: nothing changes then either. EVK_ENOMEM. */
int evk_fold_apply(cJSON *widgets, const struct evk_event *ev,
		   const struct evk_fold_opts *o, evk_fold_note_fn note, void *arg,
		   const char **why);

/* The widget with this id, or NULL. */
cJSON *evk_fold_find(const cJSON *widgets, const char *id);

#endif
