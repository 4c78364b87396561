#include "evkit/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "evkit";

static const char *const messages[] = {
	[EVK_OK] = "success",
	[EVK_ENOMEM] = "out of memory",
	[EVK_EINVAL] = "invalid input",
	[EVK_EUNAVAIL] = "hub unavailable",
	[EVK_EPERM] = "permission denied",
	[EVK_ETIMEDOUT] = "timed out",
	[EVK_EPROTO] = "protocol error",
	[EVK_EIO] = "input/output error",
	[EVK_EGAP] = "events no longer retained",
	[EVK_ECLOSED] = "connection to the hub lost",
	[EVK_ETOOLONG] = "too long",
	[EVK_EINTR] = "interrupted",
	[EVK_EAGAIN] = "temporary failure, try again",
};

const char *
evk_strerror(int err)
{
	if (err < 0 || (size_t)err >= sizeof(messages) / sizeof(messages[0]) ||
	    messages[err] == NULL)
		return "unknown error";
	return messages[err];
}

int
evk_err_exit(int err)
{
	switch (err) {
	case EVK_OK: return EVK_EX_OK;
	case EVK_EINVAL:
	case EVK_ETOOLONG: return EVK_EX_DATAERR;
	case EVK_EUNAVAIL:
	case EVK_ECLOSED: return EVK_EX_UNAVAILABLE;
	case EVK_ETIMEDOUT:
	case EVK_EAGAIN: return EVK_EX_TEMPFAIL;
	case EVK_EIO: return EVK_EX_IOERR;
	case EVK_EPERM: return EVK_EX_NOPERM;
	default: return EVK_EX_FAIL;
	}
}

void
evk_set_progname(const char *name)
{
	const char *slash = strrchr(name, '/');
	progname = slash ? slash + 1 : name;
}

const char *
evk_progname(void)
{
	return progname;
}

static void
vwarn(const char *fmt, va_list ap)
{
	char msg[4096];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "%s: %s\n", progname, msg);
}

void
evk_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

void
evk_die(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	exit(status);
}

static const char *subcommand;

void
evk_set_subcommand(const char *name)
{
	subcommand = name;
}

void
evk_usage_die(const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s%s%s: %s\nTry '%s%s%s --help' for more information.\n", progname,
		subcommand ? " " : "", subcommand ? subcommand : "", msg, progname,
		subcommand ? " " : "", subcommand ? subcommand : "");
	exit(EVK_EX_USAGE);
}

void
evk_die_hub(const char *url, int err)
{
	if (err == EVK_EPERM)
		evk_die(EVK_EX_NOPERM, "cannot connect to the hub at '%s': permission denied",
			url);
	evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", url, evk_strerror(err));
}
