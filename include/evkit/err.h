/* Error codes of lib/, exit statuses (SPEC §7) and the programs' message
 * helpers, which prefix every message with the program's name. */
#ifndef EVKIT_ERR_H
#define EVKIT_ERR_H

#include <stdarg.h>

/* Exit statuses, SPEC §7. */
enum evk_exit {
	EVK_EX_OK = 0,
	EVK_EX_FAIL = 1,
	EVK_EX_USAGE = 2,
	EVK_EX_DATAERR = 65,
	EVK_EX_UNAVAILABLE = 69,
	EVK_EX_IOERR = 74,
	EVK_EX_TEMPFAIL = 75,
	EVK_EX_NOPERM = 77,
	EVK_EX_TIMEOUT = 124,
};

/* Error codes returned by lib/ functions (0 is success). */
enum evk_err {
	EVK_OK = 0,
	EVK_ENOMEM,      /* out of memory */
	EVK_EINVAL,      /* invalid argument or input */
	EVK_EUNAVAIL,    /* hub not reachable */
	EVK_ETIMEDOUT,   /* deadline passed */
	EVK_EPROTO,      /* peer spoke something else */
	EVK_EIO,         /* read, write or database failure */
	EVK_EGAP,        /* events no longer retained */
	EVK_ECLOSED,     /* connection lost */
	EVK_ETOOLONG,    /* over a size limit */
	EVK_EINTR,       /* interrupted by a signal */
	EVK_EAGAIN,      /* temporary failure (a full disk, a busy store) */
	EVK_EPERM,       /* permission denied (socket, file, certificate) */
};

/* A static description of an evk_err code. */
const char *evk_strerror(int err);

/* The exit status (SPEC §7) that suits an evk_err code. */
int evk_err_exit(int err);

/* The program name used as message prefix; set once from main. */
void evk_set_progname(const char *name);
const char *evk_progname(void);

/* Print "prog: message\n" on stderr. The format has no trailing newline.
 * Nothing with -q (evk_log_level(EVK_LOG_QUIET)); evk_die always prints. */
void evk_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Like evk_warn, only with -v (EVK_LOG_VERBOSE): what a daemon is doing. */
void evk_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* How much evk_warn/evk_info print: -q, the default, -v. */
enum evk_log_level { EVK_LOG_QUIET, EVK_LOG_NORMAL, EVK_LOG_VERBOSE };
void evk_log_level(int level);

/* --log FILE: opens path for appending (created 0600) into *fd and puts an
 * RFC 3339 UTC timestamp and the pid before every later message. The
 * caller points stderr at *fd (dup2, or evk_daemon_log_fd once detached).
 * EVK_EIO when it cannot be opened (errno says why). */
int evk_log_file(const char *path, int *fd);

/* From now on messages go to syslog (LOG_DAEMON, tagged with the program's
 * name and pid): a daemon without --log, whose stderr is gone. */
void evk_log_syslog(void);

/* Print like evk_warn, then exit with status. */
/* Reports that the hub at url cannot be reached (err from evkit/bus.h) and
 * exits: "permission denied" with 77 for EVK_EPERM (a socket or directory
 * of another user, a refused certificate); the bus's own reason when it
 * gave one (evk_bus_why: 69 for an unavailable bus, else the status of
 * err: 65 for a stream evkit cannot use); else "no hub" with 69. */
void evk_die_hub(const char *url, int err) __attribute__((noreturn));

/* evk_warn of a text as it is (no format), for callbacks that pass one
 * (evk_sub_next_past_gaps). */
void evk_warn_text(const char *text);

void evk_die(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* A usage error, as git and mosquitto report one: "prog[ sub]: message"
 * and "Try 'prog[ sub] --help' for more information." on stderr, then
 * exit 2. The subcommand is the one named by evk_set_subcommand. */
void evk_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The subcommand being run (NULL: none), named in usage errors. */
void evk_set_subcommand(const char *name);

#endif
