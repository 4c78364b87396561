#include "evkit/opts.h"

#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
evk_opt_int(const char *flag, const char *s, long long lo, long long hi, long long *out,
	    char why[EVK_OPT_WHY])
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *s == ' ' || *end != '\0' || errno || v < lo || v > hi) {
		snprintf(why, EVK_OPT_WHY, "%s wants a whole number from %lld to %lld, not '%s'",
			 flag, lo, hi, s);
		return EVK_EINVAL;
	}
	*out = v;
	return EVK_OK;
}

int
evk_opt_seconds(const char *flag, const char *s, double max, double *out,
		char why[EVK_OPT_WHY])
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || !(v >= 0) || v > max) {
		snprintf(why, EVK_OPT_WHY, "%s wants seconds from 0 to %.15g, not '%s'", flag, max,
			 s);
		return EVK_EINVAL;
	}
	*out = v;
	return EVK_OK;
}

const char *
evk_opt_name(const struct option *longopts, int val)
{
	for (const struct option *o = longopts; o && o->name; o++)
		if (o->val == val && o->flag == NULL)
			return o->name;
	return NULL;
}

void
evk_opt_explain(int ch, char *const *argv, const struct option *longopts,
		char why[EVK_OPT_WHY])
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	const char *name = optopt ? evk_opt_name(longopts, optopt) : NULL;
	bool is_long = arg && strncmp(arg, "--", 2) == 0;

	if (ch == ':') {
		if (is_long || (name && !(optopt > 0 && optopt < 128 && arg && arg[0] == '-')))
			snprintf(why, EVK_OPT_WHY, "option '--%s' needs an argument",
				 name ? name : arg + 2);
		else
			snprintf(why, EVK_OPT_WHY, "option '-%c' needs an argument", optopt);
	} else if (is_long && optopt && name) {
		snprintf(why, EVK_OPT_WHY, "option '--%s' takes no argument", name);
	} else if (is_long || optopt == 0) {
		/* Unknown, or a prefix of several options: "--s". */
		size_t n = strcspn(arg, "=");
		snprintf(why, EVK_OPT_WHY, "unknown option '%.*s'", (int)n, arg);
	} else {
		snprintf(why, EVK_OPT_WHY, "unknown option '-%c'", optopt);
	}
}

static volatile sig_atomic_t *stop_flag;

static void
on_stop(int sig)
{
	if (stop_flag)
		*stop_flag = sig;
}

int
evk_signal_catch(int sig, void (*handler)(int), int sa_flags)
{
	struct sigaction sa = { .sa_handler = handler, .sa_flags = sa_flags };
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL) == 0 ? EVK_OK : EVK_EINVAL;
}

int
evk_signals_init(volatile sig_atomic_t *stop, bool ignore_pipe)
{
	stop_flag = stop;
	if (evk_signal_catch(SIGTERM, on_stop, 0) != EVK_OK ||
	    evk_signal_catch(SIGINT, on_stop, 0) != EVK_OK)
		return EVK_EINVAL;
	if (ignore_pipe && signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return EVK_EINVAL;
	return EVK_OK;
}

int
evk_ready_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return EVK_EIO;
	return close(fd) == 0 ? EVK_OK : EVK_EIO;
}

const char *
evk_state_file(const char *given, const char *name, char *buf, size_t n)
{
	if (given)
		return given;
	return evk_store_default_path(name, buf, n) == EVK_OK ? buf : NULL;
}

/* Reads fd to its end into a growing buffer, refusing past max. */
static int
read_fd(int fd, size_t max, char **text, size_t *len)
{
	size_t cap = 64 * 1024, n = 0;
	char *p = malloc(cap + 1), *q;
	int rv = EVK_OK;
	while (p != NULL) {
		if (n == cap) {
			if ((q = realloc(p, cap * 2 + 1)) == NULL) {
				rv = EVK_ENOMEM;
				break;
			}
			p = q, cap *= 2;
		}
		ssize_t r = read(fd, p + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rv = r < 0 ? EVK_EIO : EVK_OK;
			break;
		}
		if ((n += (size_t)r) > max) {
			rv = EVK_ETOOLONG;
			break;
		}
	}
	if (p == NULL)
		return EVK_ENOMEM;
	if (rv != EVK_OK) {
		int e = errno;
		free(p);
		errno = e;
		return rv;
	}
	p[n] = '\0';
	*text = p;
	*len = n;
	return EVK_OK;
}

int
evk_file_read(const char *path, size_t max, char **text, size_t *len)
{
	bool in = strcmp(path, "-") == 0;
	int fd = in ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return EVK_EIO;
	int rv = EVK_OK;
	if (fstat(fd, &st) != 0) {
		rv = EVK_EIO;
	} else if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		rv = EVK_EIO;
	} else if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > max) {
		rv = EVK_ETOOLONG;
	} else {
		rv = read_fd(fd, max, text, len);
	}
	if (!in) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return rv;
}

bool
evk_json_has_nul_escape(const char *text, size_t len)
{
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '"') {
			in_string = !in_string;
		} else if (in_string && text[i] == '\\' && i + 1 < len) {
			if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0)
				return true;
			i++; /* the escaped character: \" does not end the string */
		}
	}
	return false;
}

int
evk_json_file_read(const char *path, cJSON **json, char why[EVK_OPT_WHY])
{
	const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
	char *text;
	size_t len;
	*json = NULL;
	int rv = evk_file_read(path, EVK_FILE_MAX, &text, &len);
	if (rv == EVK_EIO) {
		snprintf(why, EVK_OPT_WHY, "cannot read '%s': %s", name, strerror(errno));
		return rv;
	}
	if (rv == EVK_ETOOLONG) {
		snprintf(why, EVK_OPT_WHY, "%s: longer than %d bytes", name, EVK_FILE_MAX);
		return rv;
	}
	if (rv != EVK_OK) {
		snprintf(why, EVK_OPT_WHY, "%s: %s", name, evk_strerror(rv));
		return rv;
	}
	const char *end = NULL, *lex, *hint;
	size_t at;
	rv = EVK_EINVAL;
	if (memchr(text, '\0', len))
		snprintf(why, EVK_OPT_WHY, "%s: NUL byte at byte %zu", name,
			 (size_t)((char *)memchr(text, '\0', len) - text) + 1);
	else if (evk_json_lex_check(text, len, false, &at, &lex, &hint) != EVK_OK)
		/* cJSON takes any control byte for white space */
		snprintf(why, EVK_OPT_WHY, "%s: %s at byte %zu%s", name, lex, at + 1, hint);
	else if (evk_json_has_nul_escape(text, len))
		snprintf(why, EVK_OPT_WHY, "%s: a string holds \\u0000", name);
	else if ((*json = cJSON_ParseWithLengthOpts(text, len + 1, &end, true)) == NULL)
		snprintf(why, EVK_OPT_WHY, "%s: invalid JSON at byte %zu", name,
			 end && end >= text ? (size_t)(end - text) + 1 : (size_t)0);
	else
		rv = EVK_OK;
	free(text);
	return rv;
}
