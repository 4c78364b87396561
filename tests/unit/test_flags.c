/* lib/flags.c: one table of options makes getopt's arrays, the --help
 * lines and the completions' words. */
#include "evkit/err.h"
#include "evkit/flags.h"

#include "check.h"

#include <string.h>

enum { RUN = 1, LIST = 2 };

static const struct evk_flag table[] = {
	{ "db", 'd', 0, "FILE", "the database:\ntwo lines", 0 },
	{ "count", 'n', EVK_FLAG_SHORT, "N", "exit after N", 0 },
	{ "quiet", 'q', EVK_FLAG_SHORT, NULL, "errors only", 0 },
	{ "synchronous", 'Y', 0, "normal|full", "below the flag", 0 },
	{ "drain", 'D', 0, NULL, "exit once idle", RUN },
	{ "state", 'S', 0, "S", "only state S", LIST | RUN },
	{ "hidden", 'H', 0, "X", NULL, 0 },
	{ "complete", 'C', EVK_FLAG_SCRIPT, NULL, NULL, 0 },
	EVK_FLAGS_HELP,
};
#define N EVK_NFLAGS(table)

static void
test_getopt(void)
{
	struct evk_getopt g;
	CHECK(evk_getopt_init(&g, table, N, "+:") == EVK_OK, "init");
	CHECK(strcmp(g.shortopts, "+:n:qh") == 0, "shortopts '%s'", g.shortopts);
	CHECK(g.longopts[N].name == NULL, "the zero entry");
	CHECK(strcmp(g.longopts[0].name, "db") == 0 && g.longopts[0].val == 'd' &&
		      g.longopts[0].has_arg == required_argument && g.longopts[0].flag == NULL,
	      "--db");
	CHECK(g.longopts[2].has_arg == no_argument, "--quiet takes none");
	CHECK(evk_getopt_init(&g, table, EVK_FLAGS_MAX + 1, "") == EVK_ETOOLONG, "too many");
	CHECK(evk_getopt_init(&g, table, N, "+:x") == EVK_ETOOLONG, "a long lead");
}

static void
test_help(void)
{
	static const struct {
		unsigned scope;
		int width;
		const char *want;
	} cases[] = {
		{ 0, 14,
		  "  --db FILE      the database:\n"
		  "                 two lines\n"
		  "  -n, --count N  exit after N\n"
		  "  -q, --quiet    errors only\n"
		  "  --synchronous normal|full\n"
		  "                 below the flag\n" },
		{ RUN, 10, "  --drain    exit once idle\n  --state S  only state S\n" },
		{ LIST, 10, "  --state S  only state S\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evk_buf b = EVK_BUF_INIT(0);
		CHECK(evk_flags_help(&b, table, N, cases[i].scope, cases[i].width) == EVK_OK,
		      "help %zu", i);
		CHECK(b.p && strcmp(b.p, cases[i].want) == 0, "help %zu:\n%s", i, b.p);
		evk_buf_release(&b);
	}
	struct evk_buf small = EVK_BUF_INIT(8);
	CHECK(evk_flags_help(&small, table, N, 0, 12) == EVK_ETOOLONG, "a capped buffer");
	evk_buf_release(&small);
}

static void
test_words(void)
{
	struct evk_buf b = EVK_BUF_INIT(0);
	CHECK(evk_flags_words(&b, table, N, 0) == EVK_OK, "words");
	/* Listed or not, every flag but the script's own. */
	CHECK(b.p && strcmp(b.p, "--db\n--count\n--quiet\n--synchronous\n--hidden\n--help\n"
				 "--version\n") == 0,
	      "words:\n%s", b.p);
	evk_buf_reset(&b);
	CHECK(evk_flags_words(&b, table, N, RUN) == EVK_OK, "run's words");
	CHECK(b.p && strcmp(b.p, "--drain\n--state\n") == 0, "run's words:\n%s", b.p);
	evk_buf_release(&b);
}

int
main(void)
{
	test_getopt();
	test_help();
	test_words();
	return check_done("flags");
}
