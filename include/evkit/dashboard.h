/* The dashboard's layout (widgetd view): one line per widget, in a stable
 * order, cut to the terminal's width. Pure: it builds text, the program
 * draws it (ncurses) or prints it (plain). Only printable ASCII comes out:
 * any other byte of a widget (a control byte, an escape, UTF-8) is shown
 * as '?', so a widget cannot move the cursor or wrap a line. */
#ifndef EVKIT_DASHBOARD_H
#define EVKIT_DASHBOARD_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define EVK_DASH_WIDTH_MAX 1024 /* columns drawn at the most */

/* How a line looks. */
enum evk_dash_style {
	EVK_DASH_NORMAL,
	EVK_DASH_TITLE,  /* the header */
	EVK_DASH_DONE,   /* a completed workflow */
	EVK_DASH_FAILED, /* a failed step or workflow: its error shown */
	EVK_DASH_ALERT,  /* the hub is away */
};

/* Puts widget w (taken) into the dashboard's list (a cJSON array): in
 * place of the widget of its id, else, for result-{wf}, in place of
 * progress-{wf}'s row (which goes), else last. Rows thus never move on an
 * update. A list that would pass EVK_DASH_LIST_MAX rows loses its first
 * (oldest) row: announcements of ever new ids never grow it without end.
 * w NULL removes the widget id. false when out of memory (w is freed). */
#define EVK_DASH_LIST_MAX 10000
bool evk_dash_put(cJSON *list, const char *id, cJSON *w);

/* The width of the id column for these widgets on width columns. */
int evk_dash_id_width(const cJSON *list, int width);

/* Widget w's line, at most width columns (and EVK_DASH_WIDTH_MAX), ids
 * in id_width columns, into out (width + 1 bytes). Returns its style. */
enum evk_dash_style evk_dash_row(const cJSON *w, int width, int id_width, char *out);

/* The header: title, bus, clock (HH:MM:SS) and whether the hub answers,
 * the clock and mark always shown (the bus cut first). */
void evk_dash_header(char *out, int width, const char *bus, const char *clock, bool connected);

#endif
