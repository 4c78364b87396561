/* Output templates for evsub -F: fields of an event laid out as text.
 *
 *   %s seq   %t topic   %e event   %p payload JSON   %T ts
 *   %{payload.a.b} one payload field (array elements by index: items.0);
 *   strings print their JSON-escaped text without quotes, so one event
 *   stays one line; other values print as JSON; a missing field prints
 *   nothing.   %% a percent sign;  \t \n \\ escapes. */
#ifndef EVKIT_FMT_H
#define EVKIT_FMT_H

#include "evkit/buf.h"
#include "evkit/event.h"

struct evk_fmt;

/* Compiles tmpl; NULL with *why set on a bad template or no memory. */
struct evk_fmt *evk_fmt_new(const char *tmpl, const char **why);
void evk_fmt_free(struct evk_fmt *f);

/* Appends ev rendered by f to out (no newline added). */
int evk_fmt_render(const struct evk_fmt *f, const struct evk_event *ev,
		   struct evk_buf *out);

#endif
