/* widgetd's config: the widgets it keeps besides the progress and result
 * widgets the fold makes by itself (see evkit/fold.h), as JSON
 *
 *   {"list_max": N, "max_widgets": N, "widgets": [{"id": ID, "type":
 *    "keep_live" | "session" | "counter", "limit": N, "refetch_window": MS,
 *    "pattern": P, "event": E}, ...]}
 *
 * Parsed whole or refused: nothing is guessed from a bad value. */
#ifndef EVKIT_WIDGETCONF_H
#define EVKIT_WIDGETCONF_H

#include "evkit/limits.h"

#include <stddef.h>

#define EVK_WIDGETS_MAX 64               /* declared widgets */
#define EVK_WIDGET_ID_MAX 127            /* bytes in a declared widget's id */
#define EVK_WIDGET_LIMIT_MAX 10000       /* items in a list widget */
#define EVK_WIDGET_WINDOW_MAX 86400000LL /* a refetch window, ms: a day */

enum evk_widget_kind { EVK_WIDGET_KEEP_LIVE, EVK_WIDGET_SESSION, EVK_WIDGET_COUNTER };

struct evk_widget_decl {
	enum evk_widget_kind kind;
	char id[EVK_WIDGET_ID_MAX + 1];
	char pattern[256]; /* counter: topics; keep_live, session: case events */
	char event[EVK_EVENT_MAX + 1]; /* "" for any */
	long limit;
	long long window_ms; /* keep_live: at most one query per window */
};

struct evk_widgetconf {
	size_t list_max; /* activities and updates kept per progress widget */
	size_t max_widgets; /* progress and result widgets kept (evk_fold_trim) */
	int n;
	struct evk_widget_decl widgets[EVK_WIDGETS_MAX];
};

/* The built-in config: one widget of each type, as the seed has them. */
extern const char evk_widgetconf_default[];

/* Parses text (len bytes) into *c. EVK_EINVAL with a reason in
 * why[0..whylen) naming the widget and the field. */
int evk_widgetconf_parse(struct evk_widgetconf *c, const char *text, size_t len, char *why,
			 size_t whylen);

#endif
