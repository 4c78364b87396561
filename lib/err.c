#include "evkit/err.h"

#include "evkit/bus.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *progname = "evkit";

/* Where messages go (evk_log_*): the level from -q/-v, a timestamp on each
 * line when they go to a log file, syslog once a daemon has no stderr. */
static int log_level = EVK_LOG_NORMAL;
static int log_stamps;
static int log_syslog;

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
vwarn(int priority, const char *fmt, va_list ap)
{
	char msg[4096];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_syslog) {
		syslog(priority, "%s", msg);
		return;
	}
	if (log_stamps) {
		struct timespec now;
		struct tm tm;
		char when[64] = "";
		if (clock_gettime(CLOCK_REALTIME, &now) == 0 && gmtime_r(&now.tv_sec, &tm))
			snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
				 tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
		fprintf(stderr, "%s%s[%ld]: %s\n", when, progname, (long)getpid(), msg);
		return;
	}
	fprintf(stderr, "%s: %s\n", progname, msg);
}

void
evk_warn(const char *fmt, ...)
{
	va_list ap;
	if (log_level < EVK_LOG_NORMAL)
		return;
	va_start(ap, fmt);
	vwarn(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
evk_info(const char *fmt, ...)
{
	va_list ap;
	if (log_level < EVK_LOG_VERBOSE)
		return;
	va_start(ap, fmt);
	vwarn(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
evk_log_level(int level)
{
	log_level = level;
}

int
evk_log_file(const char *path, int *fd)
{
	int f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (f < 0)
		return EVK_EIO;
	log_stamps = 1;
	*fd = f;
	return EVK_OK;
}

void
evk_log_syslog(void)
{
	openlog(progname, LOG_PID, LOG_DAEMON);
	log_syslog = 1;
}

void
evk_die(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(LOG_ERR, fmt, ap);
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
evk_warn_text(const char *text)
{
	evk_warn("%s", text);
}

void
evk_die_hub(const char *url, int err)
{
	if (err == EVK_EPERM)
		evk_die(EVK_EX_NOPERM, "cannot connect to the hub at '%s': permission denied",
			url);
	/* The bus told more (JetStream not enabled, no quorum, a stream that
	 * cannot be used): its sentence names the address. */
	if (evk_bus_why())
		evk_die(err == EVK_EUNAVAIL || err == EVK_ECLOSED || err == EVK_ETIMEDOUT
				? EVK_EX_UNAVAILABLE
				: evk_err_exit(err),
			"%s", evk_bus_why());
	evk_die(EVK_EX_UNAVAILABLE, "no hub at '%s': %s", url, evk_strerror(err));
}
