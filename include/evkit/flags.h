/* A program's options declared once: one table of struct evk_flag from
 * which getopt_long's long options and short-option string, the option
 * lines of --help and the words the shell completions offer are all
 * made, so a flag cannot be missing from one of them (git answers
 * --git-completion-helper from its parse-options table the same way).
 *
 * Nothing here prints or exits: the functions fill what the caller gives
 * them and the program prints it; evk_flags_print and evk_flags_getopt,
 * inline below, are the programs' own. */
#ifndef EVKIT_FLAGS_H
#define EVKIT_FLAGS_H

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/opts.h"
#include "evkit/tls.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

/* The most options one table holds (a program's table is checked). */
#define EVK_FLAGS_MAX 48

/* struct evk_flag's mode bits. */
enum {
	EVK_FLAG_SHORT = 1 << 0,  /* val is also the short option -val */
	EVK_FLAG_SCRIPT = 1 << 1, /* for the completions' scripts: never offered */
};

/* One option: its long name (without "--"), the value getopt_long returns
 * for it (its letter, or an EVK_OPT_ value of its own), EVK_FLAG_ bits,
 * the name of its argument in --help (NULL: it takes none), its help
 * (lines after the first start at the help column; NULL: offered by the
 * completions but not listed in --help) and the program's bits of the
 * commands it applies to (0: to every command, or a program without
 * commands). */
struct evk_flag {
	const char *name;
	int val;
	unsigned mode;
	const char *arg, *help;
	unsigned scope;
};

/* The TLS options of every client of the hub. */
#define EVK_FLAGS_TLS                                                                   \
	{ "tls-cert", EVK_OPT_TLS_CERT, 0, "FILE",                                      \
	  "certificate for tls+tcp:// (default $EVBUS_TLS_CERT)", 0 },                  \
	{ "tls-key", EVK_OPT_TLS_KEY, 0, "FILE", "its key (default $EVBUS_TLS_KEY)", 0 }, \
	{ "tls-ca", EVK_OPT_TLS_CA, 0, "FILE",                                          \
	  "the CA that signs the peer (default $EVBUS_TLS_CA)", 0 }

/* --bus and the TLS options. */
#define EVK_FLAGS_BUS                                                                    \
	{ "bus", 'b', 0, "URL", "the hub (default $EVBUS_URL, else a private ipc path)", 0 }, \
	EVK_FLAGS_TLS

/* -h/--help and --version, which every program takes. */
#define EVK_FLAGS_HELP                                 \
	{ "help", 'h', EVK_FLAG_SHORT, NULL, NULL, 0 }, \
	{ "version", 'V', 0, NULL, NULL, 0 }

/* The number of flags in a table. */
#define EVK_NFLAGS(table) (sizeof(table) / sizeof((table)[0]))

/* getopt_long's view of a table: longopts ends with a zero entry;
 * shortopts is the lead given ("+:", ":") and then each EVK_FLAG_SHORT
 * letter, followed by ':' when it takes an argument. The line --version
 * prints and the program's usage function are evk_flags_next's. */
struct evk_getopt {
	struct option longopts[EVK_FLAGS_MAX + 1];
	char shortopts[2 * EVK_FLAGS_MAX + 3];
	const char *version;
	void (*usage)(FILE *out, int status);
};

/* Fills g from the n flags of f. EVK_ETOOLONG when n is over
 * EVK_FLAGS_MAX or lead over two characters. */
int evk_getopt_init(struct evk_getopt *g, const struct evk_flag *f, size_t n, const char *lead);

/* Appends to out the --help lines of the flags that have help and whose
 * scope is scope (0: the flags of every command; else those sharing a bit
 * with it): "  -f, --file FILE" (or "  --file FILE") padded to width
 * columns after the indent, a space, the help, its later lines indented
 * to the help column. 0, EVK_ENOMEM or EVK_ETOOLONG (out's cap). */
int evk_flags_help(struct evk_buf *out, const struct evk_flag *f, size_t n, unsigned scope,
		   int width);

/* Appends to out the long options the completions offer, "--name" one a
 * line: every flag of that scope (as evk_flags_help chooses) but the
 * EVK_FLAG_SCRIPT ones, listed or not. 0, EVK_ENOMEM or EVK_ETOOLONG. */
int evk_flags_words(struct evk_buf *out, const struct evk_flag *f, size_t n, unsigned scope);

/* For programs, which may print and exit: the help lines of
 * evk_flags_help written to out. */
static inline void
evk_flags_print(FILE *out, const struct evk_flag *f, size_t n, unsigned scope, int width)
{
	struct evk_buf b = EVK_BUF_INIT(0);
	if (evk_flags_help(&b, f, n, scope, width) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (b.len)
		fwrite(b.p, 1, b.len, out);
	evk_buf_release(&b);
}

/* For programs: the words of evk_flags_words written to stdout. */
static inline void
evk_flags_print_words(const struct evk_flag *f, size_t n, unsigned scope)
{
	struct evk_buf b = EVK_BUF_INIT(0);
	if (evk_flags_words(&b, f, n, scope) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (b.len)
		fwrite(b.p, 1, b.len, stdout);
	evk_buf_release(&b);
}

/* For programs: evk_getopt_init, whose failure is the program's own bug,
 * with what --version prints ("evpub 0.1.0") and the usage --help prints
 * (NULL: the program handles 'h' itself), and getopt's own messages off
 * (evk_flags_next words them). */
static inline void
evk_flags_getopt(struct evk_getopt *g, const char *version, void (*usage)(FILE *, int),
		 const struct evk_flag *f, size_t n, const char *lead)
{
	if (evk_getopt_init(g, f, n, lead) != EVK_OK)
		evk_die(EVK_EX_FAIL, "%zu options are more than %d", n, EVK_FLAGS_MAX);
	g->version = version;
	g->usage = usage;
	opterr = 0;
}

/* For programs: getopt_long over g, with what every program does alike
 * done here: an unknown option or a missing argument is a usage error
 * (evk_flag_die), a TLS option's file is recorded (evk_tls_option),
 * --help and --version ('h' and 'V', as EVK_FLAGS_HELP declares them)
 * print the usage or the version on stdout and exit. Returns the next
 * other option, as getopt_long does, or -1. */
static inline int
evk_flags_next(const struct evk_getopt *g, int argc, char **argv)
{
	for (;;) {
		int ch = getopt_long(argc, argv, g->shortopts, g->longopts, NULL);
		switch (ch) {
		case '?':
		case ':': evk_flag_die(ch, argv, g->longopts);
		case EVK_OPT_TLS_CERT:
		case EVK_OPT_TLS_KEY:
		case EVK_OPT_TLS_CA: evk_tls_option(ch, optarg); break;
		case 'V':
			printf("%s\n", g->version);
			exit(fclose(stdout) == 0 ? 0 : EVK_EX_IOERR);
		case 'h':
			if (g->usage == NULL)
				return ch;
			g->usage(stdout, 0);
			exit(0); /* usage exits already */
		default: return ch;
		}
	}
}

#endif
