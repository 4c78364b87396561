#include "evkit/step.h"

#include "evkit/err.h"
#include "evkit/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

/* environ without the variables starting with drop, plus extra. */
static char **
child_env(const char *drop, char *const extra[])
{
	size_t ne = 0, nx = 0, k = 0, nd = strlen(drop);
	while (environ[ne])
		ne++;
	while (extra[nx])
		nx++;
	char **envp = calloc(ne + nx + 1, sizeof(char *));
	if (envp == NULL)
		return NULL;
	for (size_t i = 0; i < ne; i++)
		if (nd == 0 || strncmp(environ[i], drop, nd) != 0)
			envp[k++] = environ[i];
	for (size_t i = 0; i < nx; i++)
		envp[k++] = extra[i];
	return envp;
}

/* The step's stdin: input in a memory file, or /dev/null. */
static int
child_stdin(const char *input, size_t len)
{
	if (input == NULL)
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	int fd = memfd_create("evkit-step-stdin", MFD_CLOEXEC);
	if (fd >= 0 && (write(fd, input, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0)) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* In the child: only async-signal-safe calls up to exec. */
static void __attribute__((noreturn))
child_exec(char *const argv[], char **envp, int prog, int out, int in)
{
	static const char msg[] = "cannot run the step's command: ";
	setpgid(0, 0);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	/* dup2 onto itself keeps close-on-exec: clear it then. */
	if ((prog == EVK_STEP_PROGRESS_FD ? fcntl(prog, F_SETFD, 0)
					  : dup2(prog, EVK_STEP_PROGRESS_FD)) < 0 ||
	    dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0 ||
	    dup2(in, STDIN_FILENO) < 0)
		_exit(127);
	execvpe(argv[0], argv, envp);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
	    write(STDERR_FILENO, argv[0], strlen(argv[0])) < 0 || write(STDERR_FILENO, "\n", 1) < 0) {
		/* nothing more to say */
	}
	_exit(127);
}

/* The step's child by posix_spawn (vfork-like): the kernel neither
 * copies the worker's page tables nor makes it fault its pages back in,
 * as after fork, which with those faults took 40% of the worker's own
 * CPU per `true` job. The same setup as child_exec, in the same order;
 * dup2 of the progress descriptor onto itself clears its close-on-exec
 * (POSIX 2024, glibc since 2.29). */
static int
spawn_step(pid_t *pid, char *const argv[], char **envp, int prog, int out, int in)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t def;
	int rc;

	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGCHLD);
	if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
		return rc;
	if ((rc = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}
	if ((rc = posix_spawn_file_actions_adddup2(&fa, prog, EVK_STEP_PROGRESS_FD)) == 0 &&
	    (rc = posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO)) == 0 &&
	    (rc = posix_spawn_file_actions_adddup2(&fa, out, STDERR_FILENO)) == 0 &&
	    (rc = posix_spawn_file_actions_adddup2(&fa, in, STDIN_FILENO)) == 0 &&
	    (rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
						    POSIX_SPAWN_SETSIGDEF)) == 0 &&
	    (rc = posix_spawnattr_setpgroup(&at, 0)) == 0 &&
	    (rc = posix_spawnattr_setsigdefault(&at, &def)) == 0)
		rc = posix_spawnp(pid, argv[0], &fa, &at, argv, envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

int
evk_step_start(struct evk_step *s, char *const argv[], const char *drop, char *const extra[],
	       const char *input, size_t input_len)
{
	int prog[2] = { -1, -1 }, out[2] = { -1, -1 }, in = -1, e;
	char **envp = child_env(drop, extra);
	int rv = EVK_EIO;

	s->pid = -1;
	s->progress_fd = s->output_fd = -1;
	s->line_len = 0; /* the tail goes on from the step before */
	if (envp == NULL)
		return EVK_ENOMEM;
	if (pipe2(prog, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
	    (in = child_stdin(input, input_len)) < 0)
		goto out;
	if (spawn_step(&s->pid, argv, envp, prog[1], out[1], in) != 0) {
		/* Not found, not executable, a script without #! ...: a forked
		 * child tries as execvpe does and says why on the step's
		 * output, exiting 127, as a shell would. */
		if ((s->pid = fork()) < 0)
			goto out;
		if (s->pid == 0)
			child_exec(argv, envp, prog[1], out[1], in);
		setpgid(s->pid, s->pid);
	}
	fcntl(prog[0], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	s->progress_fd = prog[0];
	s->output_fd = out[0];
	prog[0] = out[0] = -1;
	rv = EVK_OK;
out:
	e = errno;
	for (int i = 0; i < 2; i++) {
		if (prog[i] >= 0)
			close(prog[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	if (in >= 0)
		close(in);
	free(envp);
	errno = e;
	return rv;
}

/* Reads fd until it would block; at its end closes it and sets it to
 * -1. Calls take(s, bytes, n, ...) for what was read. */
static void
drain(struct evk_step *s, int *fd, void (*line)(void *, char *), void *arg,
      void (*take)(struct evk_step *, const char *, size_t, void (*)(void *, char *), void *))
{
	char buf[4096];
	while (*fd >= 0) {
		ssize_t n = read(*fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close(*fd);
			*fd = -1;
			return;
		}
		take(s, buf, (size_t)n, line, arg);
	}
}

/* Progress bytes: each whole line (valid UTF-8, no NUL) to line(). */
static void
take_progress(struct evk_step *s, const char *buf, size_t n, void (*line)(void *, char *),
	      void *arg)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n' || s->line_len == sizeof(s->line) - 1) {
			s->line[s->line_len] = '\0';
			if (s->line_len > 0 && evk_utf8_valid(s->line, s->line_len) &&
			    !memchr(s->line, '\0', s->line_len))
				line(arg, s->line);
			s->line_len = 0;
			if (buf[i] == '\n')
				continue;
		}
		s->line[s->line_len++] = buf[i];
	}
}

/* Output bytes: the last EVK_STEP_TAIL are kept. */
static void
take_output(struct evk_step *s, const char *buf, size_t n, void (*line)(void *, char *),
	    void *arg)
{
	(void)line;
	(void)arg;
	if (n >= EVK_STEP_TAIL) {
		memcpy(s->tail, buf + n - EVK_STEP_TAIL, EVK_STEP_TAIL);
		s->tail_len = EVK_STEP_TAIL;
		return;
	}
	if (s->tail_len + n > EVK_STEP_TAIL) {
		size_t drop = s->tail_len + n - EVK_STEP_TAIL;
		memmove(s->tail, s->tail + drop, s->tail_len - drop);
		s->tail_len -= drop;
	}
	memcpy(s->tail + s->tail_len, buf, n);
	s->tail_len += n;
}

void
evk_step_read(struct evk_step *s, void (*line)(void *arg, char *text), void *arg)
{
	drain(s, &s->progress_fd, line, arg, take_progress);
	drain(s, &s->output_fd, line, arg, take_output);
}

void
evk_step_close(struct evk_step *s)
{
	if (s->progress_fd >= 0)
		close(s->progress_fd);
	if (s->output_fd >= 0)
		close(s->output_fd);
	s->progress_fd = s->output_fd = -1;
}
