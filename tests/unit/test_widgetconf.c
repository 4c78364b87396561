/* widgetd's config: taken whole or refused with a reason naming the widget
 * and the field. */
#include "evkit/err.h"
#include "evkit/widgetconf.h"

#include "check.h"

#include <string.h>

static struct evk_widgetconf conf;

static int
parse(const char *text, char *why)
{
	return evk_widgetconf_parse(&conf, text, strlen(text), why, 256);
}

int
main(void)
{
	char why[256];
	static const struct {
		const char *text, *why; /* why NULL: taken */
	} cases[] = {
		{ "{\"widgets\":[]}", NULL },
		{ "{\"widgets\":[{\"id\":\"r\",\"type\":\"keep_live\",\"limit\":5,\"refetch_window\":500}]}", NULL },
		{ "{\"widgets\":[{\"id\":\"r\",\"type\":\"keep_live\",\"limit\":-5}]}",
		  "widget 'r': limit is a whole number from 1 to 10000" },
		{ "{\"widgets\":[{\"id\":\"r\",\"type\":\"keep_live\",\"limit\":1e300}]}",
		  "widget 'r': limit is a whole number from 1 to 10000" },
		{ "{\"widgets\":[{\"id\":\"r\",\"type\":\"session\",\"limit\":2.5}]}",
		  "widget 'r': limit is a whole number from 1 to 10000" },
		{ "{\"widgets\":[{\"id\":\"r\",\"type\":\"session\",\"limit\":\"9\"}]}",
		  "widget 'r': limit is a whole number from 1 to 10000" },
		{ "{\"widgets\":[{\"id\":\"r\",\"type\":\"keep_live\",\"refetch_window\":-1}]}",
		  "widget 'r': refetch_window is a whole number from 1 to 86400000" },
		{ "{\"widgets\":[{\"id\":\"s\",\"type\":\"session\"},{\"id\":\"s\",\"type\":\"counter\"}]}",
		  "widgets 1 and 2 have the same id 's'" },
		{ "{\"widgets\":[{\"id\":\"x\",\"type\":\"pie\"}]}",
		  "widget 'x': unknown type 'pie' (keep_live, session, counter; progress and result widgets"
		  " come by themselves)" },
		{ "{\"widgets\":[{\"id\":\"a:b\",\"type\":\"counter\"}]}", "widget 1 needs an id (no ':')" },
		{ "{\"widgets\":[{\"type\":\"counter\"}]}", "widget 1 needs an id (no ':')" },
		{ "{\"widgets\":[{\"id\":\"c\",\"type\":\"counter\",\"pattern\":\"a:**:b\"}]}",
		  "widget 'c': invalid pattern 'a:**:b': '**' may only end a pattern" },
		{ "{\"widgets\":[{\"id\":\"c\",\"type\":\"counter\",\"event\":\"a b\"}]}",
		  "widget 'c': invalid event 'a b'" },
		{ "{\"list_max\":0,\"widgets\":[]}", "list_max is a whole number from 1 to 10000" },
		{ "{\"max_widgets\":0,\"widgets\":[]}", "max_widgets is a whole number from 1 to 1000000" },
		{ "{\"max_widgets\":-3,\"widgets\":[]}", "max_widgets is a whole number from 1 to 1000000" },
		{ "{\"max_widgets\":2.5,\"widgets\":[]}", "max_widgets is a whole number from 1 to 1000000" },
		{ "{\"max_widgets\":\"5\",\"widgets\":[]}", "max_widgets is a whole number from 1 to 1000000" },
		{ "{\"max_widgets\":1000001,\"widgets\":[]}", "max_widgets is a whole number from 1 to 1000000" },
		{ "[1]", "want {\"widgets\": [...]}" },
		{ "{\"widgets\":", "want {\"widgets\": [...]}" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why[0] = '\0';
		int rv = parse(cases[i].text, why);
		if (cases[i].why)
			CHECK(rv == EVK_EINVAL && strcmp(why, cases[i].why) == 0, "%s: '%s'", cases[i].text, why);
		else
			CHECK(rv == EVK_OK, "%s: %s", cases[i].text, why);
	}
	CHECK(parse(evk_widgetconf_default, why) == EVK_OK && conf.n == 3 &&
		      conf.widgets[0].kind == EVK_WIDGET_KEEP_LIVE && conf.widgets[0].limit == 100 &&
		      conf.widgets[0].window_ms == 5000 && strcmp(conf.widgets[0].pattern, "case:*") == 0 &&
		      conf.widgets[1].kind == EVK_WIDGET_SESSION && conf.widgets[1].limit == 50 &&
		      conf.widgets[2].kind == EVK_WIDGET_COUNTER &&
		      strcmp(conf.widgets[2].pattern, "case:*") == 0 && conf.list_max == 50 &&
		      conf.max_widgets == 1000,
	      "the built-in config: %s", why);
	CHECK(parse("{\"max_widgets\":5,\"widgets\":[]}", why) == EVK_OK && conf.max_widgets == 5,
	      "max_widgets 5: %s", why);
	char many[8192] = "{\"widgets\":[";
	for (int i = 0; i <= EVK_WIDGETS_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s{\"id\":\"w%d\",\"type\":\"counter\"}",
			 i ? "," : "", i);
	strcat(many, "]}");
	CHECK(parse(many, why) == EVK_EINVAL && strcmp(why, "more than 64 widgets") == 0, "%s", why);
	return check_done("test_widgetconf");
}
