/* lib/opts.c: flag values and their one wording, getopt's complaints,
 * ready files, state paths and whole-file reads (never cut). */
#include "evkit/err.h"
#include "evkit/opts.h"

#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_int(void)
{
	static const struct {
		const char *s;
		long long lo, hi;
		int rv;
		long long want;
	} cases[] = {
		{ "0", 0, 9, EVK_OK, 0 },        { "9", 0, 9, EVK_OK, 9 },
		{ "-3", -5, 5, EVK_OK, -3 },     { "10", 0, 9, EVK_EINVAL, 0 },
		{ "-1", 0, 9, EVK_EINVAL, 0 },   { "", 0, 9, EVK_EINVAL, 0 },
		{ "3x", 0, 9, EVK_EINVAL, 0 },   { " 3", 0, 9, EVK_EINVAL, 0 },
		{ "1.5", 0, 9, EVK_EINVAL, 0 },  { "99999999999999999999", 0, 9, EVK_EINVAL, 0 },
		{ "0x10", 0, 99, EVK_EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[EVK_OPT_WHY] = "";
		long long v = -42;
		int rv = evk_opt_int("--n", cases[i].s, cases[i].lo, cases[i].hi, &v, why);
		CHECK(rv == cases[i].rv, "int '%s': rv %d", cases[i].s, rv);
		if (rv == EVK_OK)
			CHECK(v == cases[i].want, "int '%s': %lld", cases[i].s, v);
		else
			CHECK(v == -42 && strstr(why, "--n wants a whole number from") &&
				      strstr(why, cases[i].s),
			      "int '%s': why '%s'", cases[i].s, why);
	}
	char why[EVK_OPT_WHY];
	long long v;
	evk_opt_int("--priority", "12", 0, 9, &v, why);
	CHECK(strcmp(why, "--priority wants a whole number from 0 to 9, not '12'") == 0, "%s",
	      why);
}

static void
test_seconds(void)
{
	static const struct {
		const char *s;
		int rv;
		double want;
	} cases[] = {
		{ "0", EVK_OK, 0 },        { "1.5", EVK_OK, 1.5 },  { "600", EVK_OK, 600 },
		{ "-1", EVK_EINVAL, 0 },   { "", EVK_EINVAL, 0 },   { "nan", EVK_EINVAL, 0 },
		{ "inf", EVK_EINVAL, 0 },  { "2s", EVK_EINVAL, 0 }, { "1001", EVK_EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[EVK_OPT_WHY] = "";
		double v = -1;
		int rv = evk_opt_seconds("-W", cases[i].s, 1000, &v, why);
		CHECK(rv == cases[i].rv, "seconds '%s': rv %d", cases[i].s, rv);
		if (rv == EVK_OK)
			CHECK(v == cases[i].want, "seconds '%s': %g", cases[i].s, v);
		else
			CHECK(strncmp(why, "-W wants seconds", 16) == 0, "seconds: why '%s'", why);
	}
}

/* Runs getopt_long over argv and returns the explanation of its first
 * complaint. */
static const char *
explain(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "steps", required_argument, NULL, 's' },
		{ "state", required_argument, NULL, 'S' },
		{ "drain", no_argument, NULL, 'D' },
		{ 0 },
	};
	static char why[EVK_OPT_WHY];
	int c;
	optind = 0;
	opterr = 0;
	strcpy(why, "(none)");
	while ((c = getopt_long(argc, argv, "+:n:h", lo, NULL)) != -1)
		if (c == '?' || c == ':') {
			evk_opt_explain(c, argv, lo, why);
			break;
		}
	return why;
}

static void
test_explain(void)
{
	static const struct {
		const char *args[3];
		const char *want;
	} cases[] = {
		{ { "p", "--bogus" }, "unknown option '--bogus'" },
		{ { "p", "--bogus=1" }, "unknown option '--bogus'" },
		{ { "p", "--st", "x" }, "unknown option '--st'" },
		{ { "p", "-x" }, "unknown option '-x'" },
		{ { "p", "--steps" }, "option '--steps' needs an argument" },
		{ { "p", "-n" }, "option '-n' needs an argument" },
		{ { "p", "--drain=3" }, "option '--drain' takes no argument" },
		{ { "p", "--drain" }, "(none)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[4] = { 0 };
		int argc = 0;
		for (; argc < 3 && cases[i].args[argc]; argc++)
			argv[argc] = (char *)cases[i].args[argc];
		const char *got = explain(argc, argv);
		CHECK(strcmp(got, cases[i].want) == 0, "%s: got '%s'", cases[i].args[1], got);
	}
}

static void
write_file(const char *path, const char *text, size_t n)
{
	FILE *f = fopen(path, "w");
	if (f == NULL || fwrite(text, 1, n, f) != n || fclose(f) != 0)
		abort();
}

static void
test_file_read(const char *dir)
{
	char path[512], *text = NULL;
	size_t len = 0;

	/* A file far over the old 1 MiB buffer comes back whole. */
	size_t big = 3 * 1024 * 1024 + 7;
	char *want = malloc(big);
	if (want == NULL)
		abort();
	for (size_t i = 0; i < big; i++)
		want[i] = (char)('a' + i % 26);
	snprintf(path, sizeof(path), "%s/big", dir);
	write_file(path, want, big);
	CHECK(evk_file_read(path, EVK_FILE_MAX, &text, &len) == EVK_OK, "big file read");
	CHECK(len == big && text && memcmp(text, want, big) == 0 && text[len] == '\0',
	      "big file whole: %zu of %zu", len, big);
	free(text);
	text = NULL;
	/* Over the bound: refused, nothing returned. */
	CHECK(evk_file_read(path, big - 1, &text, &len) == EVK_ETOOLONG && text == NULL,
	      "a file over max is refused");
	free(want);

	snprintf(path, sizeof(path), "%s/empty", dir);
	write_file(path, "", 0);
	CHECK(evk_file_read(path, 10, &text, &len) == EVK_OK && len == 0 && text[0] == '\0',
	      "empty file");
	free(text);

	CHECK(evk_file_read(dir, 10, &text, &len) == EVK_EIO && errno == EISDIR,
	      "a directory is an I/O error (EISDIR)");
	snprintf(path, sizeof(path), "%s/missing", dir);
	CHECK(evk_file_read(path, 10, &text, &len) == EVK_EIO && errno == ENOENT,
	      "a missing file is an I/O error (ENOENT)");
}

static void
test_json(const char *dir)
{
	static const struct {
		const char *text;
		size_t len;
		int rv;
		const char *why;
	} cases[] = {
		{ "[1, 2]\n", 7, EVK_OK, NULL },
		{ "[1, 2] x", 8, EVK_EINVAL, "invalid JSON at byte 8" },
		{ "[1, 2]]", 7, EVK_EINVAL, "invalid JSON" },
		{ "[\"tr\\u0000ue\"]", 14, EVK_EINVAL, "\\u0000" },
		{ "[\"a\\\\u0000\"]", 12, EVK_OK, NULL }, /* an escaped backslash, then text */
		{ "[1]\0[2]", 7, EVK_EINVAL, "NUL byte at byte 4" },
		{ "", 0, EVK_EINVAL, "invalid JSON" },
	};
	char path[512];
	snprintf(path, sizeof(path), "%s/j.json", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = NULL;
		char why[EVK_OPT_WHY] = "";
		write_file(path, cases[i].text, cases[i].len);
		int rv = evk_json_file_read(path, &j, why);
		CHECK(rv == cases[i].rv, "json %zu: rv %d (%s)", i, rv, why);
		CHECK((rv == EVK_OK) == (j != NULL), "json %zu: document iff ok", i);
		if (cases[i].why)
			CHECK(strstr(why, cases[i].why) && strncmp(why, path, strlen(path)) == 0,
			      "json %zu: why '%s'", i, why);
		cJSON_Delete(j);
	}
	cJSON *j = NULL;
	char why[EVK_OPT_WHY];
	CHECK(evk_json_file_read(dir, &j, why) == EVK_EIO && strstr(why, "cannot read"),
	      "json from a directory: %s", why);
}

static void
test_paths(const char *dir)
{
	char buf[512], path[512];
	CHECK(strcmp(evk_state_file("x.db", "jobs.db", buf, sizeof(buf)), "x.db") == 0,
	      "a given path wins");
	setenv("XDG_STATE_HOME", dir, 1);
	snprintf(path, sizeof(path), "%s/evkit/jobs.db", dir);
	const char *got = evk_state_file(NULL, "jobs.db", buf, sizeof(buf));
	CHECK(got && strcmp(got, path) == 0, "XDG_STATE_HOME: %s", got ? got : "(null)");
	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	CHECK(evk_state_file(NULL, "jobs.db", buf, sizeof(buf)) == NULL, "no HOME: NULL");

	snprintf(path, sizeof(path), "%s/ready", dir);
	CHECK(evk_ready_file(path) == EVK_OK && access(path, F_OK) == 0, "ready file made");
	snprintf(path, sizeof(path), "%s/no/such/ready", dir);
	CHECK(evk_ready_file(path) == EVK_EIO && errno == ENOENT, "ready file: EIO");
}

int
main(void)
{
	char dir[] = "/tmp/test_opts.XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	test_int();
	test_seconds();
	test_explain();
	test_file_read(dir);
	test_json(dir);
	test_paths(dir);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	return check_done("test_opts");
}
