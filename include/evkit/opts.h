/* What every program does around its real work, written once: number and
 * duration flags with one wording for a bad value, getopt's complaints in
 * one line, signal setup, ready files, the default state path and reading
 * a whole file (or a JSON document) of any size up to a stated bound.
 *
 * Nothing here prints or exits: each function returns 0 (EVK_OK) or an
 * evk_err code, and where a user's text is at fault it writes the message
 * to show into why (EVK_OPT_WHY bytes), which the program prints. */
#ifndef EVKIT_OPTS_H
#define EVKIT_OPTS_H

#include "evkit/err.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define EVK_OPT_WHY 320 /* room for one message about one flag */

/* The largest file evk_file_read reads by default: a steps file, a
 * widget config. A larger file is refused whole, never cut. */
#define EVK_FILE_MAX (64 * 1024 * 1024)

/* s as a whole number from lo to hi into *out. On failure EVK_EINVAL and
 * why holds "FLAG wants a whole number from LO to HI, not 'S'". */
int evk_opt_int(const char *flag, const char *s, long long lo, long long hi, long long *out,
		char why[EVK_OPT_WHY]);

/* s as seconds (fractions allowed) from 0 to max into *out. On failure
 * EVK_EINVAL and why holds "FLAG wants seconds from 0 to MAX, not 'S'". */
int evk_opt_seconds(const char *flag, const char *s, double max, double *out,
		    char why[EVK_OPT_WHY]);

/* What getopt_long's '?' or ':' (with opterr = 0 and a ':' first in the
 * short options) means for the option just read, in one line: "unknown
 * option '--x'", "option '--steps' needs an argument", "option '--drain'
 * takes no argument". Reads optind and optopt. */
void evk_opt_explain(int ch, char *const *argv, const struct option *longopts,
		     char why[EVK_OPT_WHY]);

/* The long name of the option whose getopt value is val, or NULL. */
const char *evk_opt_name(const struct option *longopts, int val);

/* SIGTERM and SIGINT store their number in *stop (the handler stays
 * installed; system calls they interrupt return EINTR). With ignore_pipe,
 * SIGPIPE is ignored (write errors come back as EPIPE instead); without it
 * SIGPIPE keeps its default, which ends a filter whose reader is gone.
 * *stop must live as long as the process. */
int evk_signals_init(volatile sig_atomic_t *stop, bool ignore_pipe);

/* Installs handler for sig with sa_flags and an empty mask. */
int evk_signal_catch(int sig, void (*handler)(int), int sa_flags);

/* Creates (or truncates) the empty file path, the sign a test or script
 * waits for. EVK_EIO with errno set on failure. */
int evk_ready_file(const char *path);

/* The database path to use: given when not NULL, else the default
 * $XDG_STATE_HOME/evkit/name (else ~/.local/state/evkit/name) written to
 * buf. NULL when there is neither a given path nor a HOME. */
const char *evk_state_file(const char *given, const char *name, char *buf, size_t n);

/* Reads the whole of path ("-": standard input) into *text, NUL
 * terminated, its length (without the NUL) in *len; the caller frees
 * *text. A file longer than max bytes is refused with EVK_ETOOLONG and
 * nothing is returned (never a cut file). EVK_EIO with errno set when it
 * cannot be opened or read (EISDIR for a directory); EVK_ENOMEM. */
int evk_file_read(const char *path, size_t max, char **text, size_t *len);

/* Reads path as evk_file_read does (EVK_FILE_MAX) and parses it as one
 * JSON document into *json (the caller's, cJSON_Delete). Refused with
 * EVK_EINVAL and a reason in why: a NUL byte, a string holding \u0000
 * (which C strings would cut short), anything after the document, JSON
 * that does not parse. EVK_ETOOLONG and EVK_EIO (errno set) with a reason
 * in why too. The messages begin with the file's name ("stdin" for -). */
int evk_json_file_read(const char *path, cJSON **json, char why[EVK_OPT_WHY]);

/* True when the JSON text holds a \u0000 escape inside a string. */
bool evk_json_has_nul_escape(const char *text, size_t len);

/* For programs, which may exit: the value of a flag, or a usage error
 * (evk_usage_die: the message, the --help hint, exit 2). */
static inline long long
evk_flag_int(const char *flag, const char *s, long long lo, long long hi)
{
	char why[EVK_OPT_WHY];
	long long v = 0;
	if (evk_opt_int(flag, s, lo, hi, &v, why) != EVK_OK)
		evk_usage_die("%s", why);
	return v;
}

static inline double
evk_flag_seconds(const char *flag, const char *s, double max)
{
	char why[EVK_OPT_WHY];
	double v = 0;
	if (evk_opt_seconds(flag, s, max, &v, why) != EVK_OK)
		evk_usage_die("%s", why);
	return v;
}

/* getopt_long's '?' or ':' as a usage error: "prog: unknown option '--x'"
 * and the --help hint, exit 2. */
__attribute__((noreturn)) static inline void
evk_flag_die(int ch, char *const *argv, const struct option *longopts)
{
	char why[EVK_OPT_WHY];
	evk_opt_explain(ch, argv, longopts, why);
	evk_usage_die("%s", why);
}

#endif
