/* Going into the background once ready, and pid files. */
#ifndef EVKIT_DAEMON_H
#define EVKIT_DAEMON_H

/* Forks. The parent waits until the child calls evk_daemon_ready and then
 * exits with the status the child reported (or 1 if the child died first);
 * it never returns. The child returns 0, in a new session, with stdin
 * on /dev/null. Call before any thread (nng) is started. */
int evk_daemon_start(void);

/* In the child: reports status to the waiting parent (0: accepting) and
 * detaches stdout and stderr when status is 0: stderr then goes to the
 * file given to evk_daemon_log_fd, or else messages go to syslog
 * (evk_log_syslog). No-op when not daemonised. */
void evk_daemon_ready(int status);

/* The --log file's descriptor, for evk_daemon_ready to keep as stderr. */
void evk_daemon_log_fd(int fd);

/* --log FILE: messages from now on are appended to path, timestamped
 * (evk_log_file). With detach_later, stderr moves there when the daemon
 * detaches (evk_daemon_ready); else at once. EVK_EIO: errno says why. */
int evk_daemon_log(const char *path, int detach_later);

/* Writes the pid to path (atomically, via a temporary file). */
int evk_pidfile_write(const char *path);

#endif
