/* A program's options from its one table: getopt_long's arrays, the
 * option lines of --help and the completions' words. */
#include "evkit/flags.h"

#include <stdbool.h>
#include <string.h>

int
evk_getopt_init(struct evk_getopt *g, const struct evk_flag *f, size_t n, const char *lead)
{
	size_t k = strlen(lead);

	if (n > EVK_FLAGS_MAX || k > 2)
		return EVK_ETOOLONG;
	memcpy(g->shortopts, lead, k);
	for (size_t i = 0; i < n; i++) {
		g->longopts[i] = (struct option){ f[i].name,
						  f[i].arg ? required_argument : no_argument,
						  NULL, f[i].val };
		if (f[i].mode & EVK_FLAG_SHORT) {
			g->shortopts[k++] = (char)f[i].val;
			if (f[i].arg)
				g->shortopts[k++] = ':';
		}
	}
	g->longopts[n] = (struct option){ 0 };
	g->shortopts[k] = '\0';
	return EVK_OK;
}

/* Whether f belongs where scope asks: 0, the flags of every command;
 * else the flags of a command among scope's. */
static bool
in_scope(const struct evk_flag *f, unsigned scope)
{
	return scope ? (f->scope & scope) != 0 : f->scope == 0;
}

/* Appends n spaces. */
static int
pad(struct evk_buf *out, int n)
{
	int rv = EVK_OK;
	while (rv == EVK_OK && n-- > 0)
		rv = evk_buf_addch(out, ' ');
	return rv;
}

/* Appends one flag's --help lines: the flag padded to the help column,
 * the help's first line beside it (below it when the flag is wider), its
 * later lines below, indented. */
static int
help_lines(struct evk_buf *out, const struct evk_flag *f, int width)
{
	char left[128];
	const char *h = f->help;
	int rv;

	if (f->mode & EVK_FLAG_SHORT)
		snprintf(left, sizeof(left), "  -%c, --%s%s%s", f->val, f->name,
			 f->arg ? " " : "", f->arg ? f->arg : "");
	else
		snprintf(left, sizeof(left), "  --%s%s%s", f->name, f->arg ? " " : "",
			 f->arg ? f->arg : "");
	/* A flag wider than the column has its help below it. */
	int w = (int)strlen(left);
	if ((rv = evk_buf_addstr(out, left)) != EVK_OK ||
	    (w > width + 2 && (rv = evk_buf_addch(out, '\n')) != EVK_OK) ||
	    (rv = pad(out, w > width + 2 ? width + 2 : width + 2 - w)) != EVK_OK)
		return rv;
	for (;;) {
		size_t len = strcspn(h, "\n");
		if ((rv = evk_buf_addch(out, ' ')) != EVK_OK ||
		    (rv = evk_buf_add(out, h, len)) != EVK_OK ||
		    (rv = evk_buf_addch(out, '\n')) != EVK_OK || h[len] == '\0')
			return rv;
		h += len + 1;
		if ((rv = pad(out, width + 2)) != EVK_OK)
			return rv;
	}
}

int
evk_flags_help(struct evk_buf *out, const struct evk_flag *f, size_t n, unsigned scope,
	       int width)
{
	int rv = EVK_OK;
	for (size_t i = 0; rv == EVK_OK && i < n; i++)
		if (f[i].help && in_scope(&f[i], scope))
			rv = help_lines(out, &f[i], width);
	return rv;
}

int
evk_flags_words(struct evk_buf *out, const struct evk_flag *f, size_t n, unsigned scope)
{
	int rv = EVK_OK;
	for (size_t i = 0; rv == EVK_OK && i < n; i++)
		if (!(f[i].mode & EVK_FLAG_SCRIPT) && in_scope(&f[i], scope))
			if ((rv = evk_buf_addstr(out, "--")) == EVK_OK &&
			    (rv = evk_buf_addstr(out, f[i].name)) == EVK_OK)
				rv = evk_buf_addch(out, '\n');
	return rv;
}
