/* widgetd view: the widgets as a live dashboard (ncurses), or plain
 * frames where there is no full screen. */
#include "widgetd.h"

#include "evkit/bus.h"
#include "evkit/dashboard.h"
#include "evkit/err.h"
#include "evkit/event.h"

#include <cjson/cJSON.h>
#include <curses.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* The dashboard: the widgets (as evk_dash_put keeps them), whether the
 * hub answers, and the screen: ncurses, or plain frames. */
struct view {
	const char *url;
	long long answer_ms;
	cJSON *list;
	struct evk_sub *sub; /* NULL while the hub is away */
	bool connected, changed;
	bool synced, asked; /* the daemon's answer came, a question went */
	int err;	    /* the last probe's */
	long long probe_at;
	SCREEN *screen; /* NULL: plain text */
	FILE *keys;	/* the terminal the keys come from */
};

static void
view_widget(void *arg, const char *json, size_t len)
{
	cJSON *w = cJSON_ParseWithLength(json, len);
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "id"));
	if (id == NULL)
		cJSON_Delete(w);
	else if (!evk_dash_put(arg, id, w))
		evk_die(EVK_EX_FAIL, "out of memory");
}

/* Every second: whether the hub answers. Once it does again, subscribes
 * afresh and asks the daemon for every widget (again each second until
 * it answers); while it does not, the widgets stay as last known under a
 * DISCONNECTED mark. */
static void
view_probe(struct view *v)
{
	char *status = NULL;
	int err;
	if (evk_mono_ms() < v->probe_at)
		return;
	v->probe_at = evk_mono_ms() + 1000;
	v->err = evk_bus_status(v->url, &status);
	bool up = v->err == EVK_OK;
	free(status);
	if (!up && v->sub) {
		evk_sub_close(v->sub);
		v->sub = NULL;
	}
	if (up && v->sub == NULL) {
		up = evk_sub_open(&v->sub, v->url, EVK_SINCE_LIVE) == EVK_OK;
		v->synced = false;
	}
	if (up && !v->synced) {
		/* the first time -W; then briefly, not to stall the screen */
		long long ms = v->asked && v->answer_ms > 500 ? 500 : v->answer_ms;
		cJSON *fresh = cJSON_CreateArray();
		long n = fresh ? widgetd_request(v->sub, v->url, ms, NULL, view_widget, fresh, &err)
			       : NO_ANSWER;
		if (n >= 0) {
			cJSON_Delete(v->list);
			v->list = fresh;
			v->synced = v->changed = true;
		} else {
			cJSON_Delete(fresh);
		}
		v->asked = true;
	}
	v->changed |= up != v->connected;
	v->connected = up;
}

/* Waits up to 200 ms for the next announcement and puts it in the list. */
static void
view_follow(struct view *v)
{
	struct evk_event ev;
	char id[EVK_TOPIC_MAX + 1];
	if (v->sub == NULL) {
		poll(NULL, 0, 200);
		return;
	}
	int rv = evk_sub_next(v->sub, &ev, 200);
	if (rv != EVK_OK && rv != EVK_ETIMEDOUT && rv != EVK_EGAP) {
		evk_sub_close(v->sub);
		v->sub = NULL;
		v->connected = false;
		v->changed = true;
	}
	if (rv != EVK_OK || !topic_has_prefix(&ev, "widget:"))
		return;
	snprintf(id, sizeof(id), "%.*s", (int)ev.topic_len - 7, ev.topic + 7);
	cJSON *w = NULL;
	if (event_is(&ev, "widget_updated") &&
	    !cJSON_IsObject(w = cJSON_ParseWithLength(ev.payload, ev.payload_len))) {
		cJSON_Delete(w); /* an update that is no widget: the row stays, not removed */
		return;
	}
	if (!evk_dash_put(v->list, id, w))
		evk_die(EVK_EX_FAIL, "out of memory");
	v->changed = true;
}

/* The dashboard's lines, one at a time: the header (row 0), then a row
 * per widget, the last row saying how many did not fit in rows. */
static void
view_lines(const struct view *v, int width, int rows,
	   void (*line)(void *arg, int row, const char *text, enum evk_dash_style s), void *arg)
{
	char text[EVK_DASH_WIDTH_MAX + 1], clock[16];
	time_t t = time(NULL);
	struct tm tm;
	int id_width = evk_dash_id_width(v->list, width), row = 2, n = cJSON_GetArraySize(v->list);
	const cJSON *w;
	strftime(clock, sizeof(clock), "%H:%M:%S", localtime_r(&t, &tm));
	evk_dash_header(text, width, v->url, clock, v->connected);
	line(arg, 0, text, v->connected ? EVK_DASH_TITLE : EVK_DASH_ALERT);
	cJSON_ArrayForEach(w, v->list) {
		if (row == rows - 1 && n > 1) {
			snprintf(text, sizeof(text), "... %d more", n);
			line(arg, row, text, EVK_DASH_NORMAL);
			break;
		}
		enum evk_dash_style s = evk_dash_row(w, width, id_width, text);
		line(arg, row++, text, s);
		n--;
	}
}

static void
curses_line(void *arg, int row, const char *text, enum evk_dash_style s)
{
	static const chtype attrs[] = {
		[EVK_DASH_NORMAL] = A_NORMAL,  [EVK_DASH_TITLE] = A_REVERSE, [EVK_DASH_DONE] = A_BOLD,
		[EVK_DASH_FAILED] = A_BOLD,    [EVK_DASH_ALERT] = A_REVERSE | A_BOLD,
	};
	(void)arg;
	attrset(attrs[s] | (has_colors() && s >= EVK_DASH_DONE ? COLOR_PAIR(s) : 0));
	mvaddstr(row, 0, text);
	attrset(A_NORMAL);
}

static void
plain_line(void *arg, int row, const char *text, enum evk_dash_style s)
{
	(void)arg;
	(void)row;
	(void)s;
	if (fputs(text, stdout) == EOF || putchar('\n') == EOF)
		evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
}

/* Draws the dashboard: on the screen each time (curses sends only what
 * changed, and the clock moves), as a plain frame only when it changed. */
static void
view_draw(struct view *v)
{
	if (v->screen) {
		erase();
		view_lines(v, COLS - 1, LINES - 1, curses_line, NULL);
		attrset(A_DIM);
		mvaddstr(LINES - 1, 0, "q quits");
		attrset(A_NORMAL);
		refresh();
	} else if (v->changed) {
		struct winsize ws;
		const char *cols = getenv("COLUMNS");
		int width = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col - 1
			    : cols && atoi(cols) > 0					? atoi(cols) - 1
												: 99;
		view_lines(v, width, INT_MAX, plain_line, NULL);
		if (putchar('\n') == EOF || fflush(stdout) == EOF)
			evk_die(EVK_EX_IOERR, "writing stdout: %s", strerror(errno));
	}
	v->changed = false;
}

/* The full screen where it can be: a terminal that is not dumb, colours
 * not refused, keys from stdin or else the controlling terminal. */
static void
view_screen(struct view *v)
{
	const char *term = getenv("TERM"), *no_color = getenv("NO_COLOR");
	if (!isatty(STDOUT_FILENO) || !term || !*term || strcmp(term, "dumb") == 0 ||
	    (no_color && *no_color))
		return;
	v->keys = isatty(STDIN_FILENO) ? fdopen(dup(STDIN_FILENO), "r") : fopen("/dev/tty", "r");
	if (v->keys == NULL || (v->screen = newterm(NULL, stdout, v->keys)) == NULL) {
		if (v->keys)
			fclose(v->keys);
		v->keys = NULL;
		return;
	}
	cbreak();
	noecho();
	nodelay(stdscr, TRUE);
	keypad(stdscr, TRUE);
	curs_set(0);
	if (has_colors() && start_color() == OK) {
		use_default_colors();
		init_pair(EVK_DASH_DONE, COLOR_GREEN, -1);
		init_pair(EVK_DASH_FAILED, COLOR_RED, -1);
		init_pair(EVK_DASH_ALERT, COLOR_RED, -1);
	}
}

int
widgetd_view(const char *url, long long answer_ms)
{
	struct view v = { .url = url, .answer_ms = answer_ms, .list = cJSON_CreateArray(),
			  .changed = true };
	if (v.list == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	view_probe(&v);
	if (v.err == EVK_EPERM)
		evk_die_hub(url, v.err); /* waiting would not help */
	if (!v.connected)
		evk_warn("no hub at '%s' yet; waiting for it", url);
	else if (!v.synced)
		evk_warn("no widgetd answered on '%s'; showing widgets as they are announced", url);
	view_screen(&v);
	while (!widgetd_stopping) {
		view_draw(&v);
		view_follow(&v);
		view_probe(&v);
		int c = v.screen ? getch() : ERR;
		if (c == 'q' || c == 'Q')
			break;
	}
	if (v.screen) {
		endwin();
		delscreen(v.screen);
		fclose(v.keys);
	}
	if (v.sub)
		evk_sub_close(v.sub);
	cJSON_Delete(v.list);
	return 0;
}
