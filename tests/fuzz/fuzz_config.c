/* widgetd's --config file: lib/widgetconf.c's evk_widgetconf_parse, as
 * widgetd reads the file. Refused: EVK_EINVAL with a reason. Accepted:
 * each widget has an id that makes a topic and holds no ':', ids are
 * unique, a valid pattern, a valid event name or none, a whole limit and
 * window in range (issue 16 item 14); nothing leaks either way. */
#include "fuzz.h"

#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/topic.h"
#include "evkit/widgetconf.h"

static struct evk_widgetconf conf;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256] = "";

	if (size > 65536)
		return 0;
	int rv = evk_widgetconf_parse(&conf, (const char *)data, size, why, sizeof(why));
	if (rv != EVK_OK) {
		FUZZ_CHECK(rv == EVK_EINVAL && why[0], "refused with %d and no reason", rv);
		return 0;
	}
	FUZZ_CHECK(conf.list_max >= 1 && conf.list_max <= 10000, "list_max %zu", conf.list_max);
	for (int i = 0; i < conf.n; i++) {
		const struct evk_widget_decl *d = &conf.widgets[i];
		FUZZ_CHECK(evk_topic_valid(d->id, strlen(d->id)) && !strchr(d->id, ':'),
			   "widget id '%s' accepted", d->id);
		FUZZ_CHECK(evk_pattern_valid(d->pattern), "pattern '%s' accepted", d->pattern);
		FUZZ_CHECK(d->event[0] == '\0' || evk_event_name_valid(d->event, strlen(d->event)),
			   "event '%s' accepted", d->event);
		FUZZ_CHECK(d->limit >= 1 && d->limit <= EVK_WIDGET_LIMIT_MAX && d->window_ms >= 1 &&
				   d->window_ms <= EVK_WIDGET_WINDOW_MAX,
			   "limit %ld, window %lld", d->limit, d->window_ms);
		for (int j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(conf.widgets[j].id, d->id) != 0, "duplicate id '%s' accepted",
				   d->id);
	}
	return 0;
}
