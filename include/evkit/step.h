/* One step of a job as a child process: in a process group of its own
 * (so a timeout or cancel kills all it started), progress lines on a
 * descriptor of their own, its output kept as a bounded tail. Nothing
 * here prints or exits. */
#ifndef EVKIT_STEP_H
#define EVKIT_STEP_H

#include <stddef.h>
#include <sys/types.h>

#define EVK_STEP_PROGRESS_FD 3 /* the child's progress descriptor */
#define EVK_STEP_TAIL 4096     /* bytes of output kept */
#define EVK_STEP_LINE 4096     /* longest progress line */

struct evk_step {
	pid_t pid;
	int progress_fd, output_fd; /* -1 once at their end */
	char line[EVK_STEP_LINE];   /* the progress line being read */
	size_t line_len;
	char tail[EVK_STEP_TAIL];   /* the last bytes of stdout and stderr */
	size_t tail_len;
};

/* Starts argv (found in PATH) as the leader of a new process group: the
 * environment without the variables starting with drop, plus extra (NULL
 * ended); stdin from input (NULL: /dev/null); progress descriptor
 * EVK_STEP_PROGRESS_FD; stdout and stderr into the tail, which goes on
 * from the step started before with s (zero it first). Started by
 * posix_spawn, everything built before, so it is safe in a threaded
 * program. EVK_EIO (errno set) or EVK_ENOMEM on failure; a command that
 * cannot be run exits 127 after saying why on its output. */
int evk_step_start(struct evk_step *s, char *const argv[], const char *drop,
		   char *const extra[], const char *input, size_t input_len);

/* Reads what the step wrote so far without blocking: calls line(arg,
 * text) for each whole progress line that is valid UTF-8 without NUL
 * (a line longer than EVK_STEP_LINE is cut into pieces), keeps output in
 * the tail, and closes each descriptor at its end. */
void evk_step_read(struct evk_step *s, void (*line)(void *arg, char *text), void *arg);

/* Closes what is still open (the child is the caller's to reap). */
void evk_step_close(struct evk_step *s);

#endif
