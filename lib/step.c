#include "evkit/step.h"

#include "evkit/err.h"
#include "evkit/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

/* What the child needs up to exec: it reads only these and its stack. */
struct spawn {
	char *const *argv;
	char **envp;
	int prog, out, in;
	pid_t parent;	  /* the worker */
	sigset_t mask;	  /* the worker's signal mask, for the step */
};

/* In the child (a vfork child: the worker's memory, the worker stopped
 * until exec) only async-signal-safe calls up to exec, no malloc. The
 * step dies with its worker: SIGKILL when the thread that spawned it
 * ends, which is the worker's main thread (the run loop), so when the
 * worker ends; and at once if the worker died before prctl. */
static void __attribute__((noreturn))
child_exec(const struct spawn *a)
{
	static const char msg[] = "cannot run the step's command: ";
	struct sigaction sa;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != a->parent)
		_exit(127);
	setpgid(0, 0);
	/* No worker's handler may run in the child, nor survive in it:
	 * handled signals back to their default (as posix_spawn does), and
	 * SIGPIPE, which the worker ignores. */
	memset(&sa, 0, sizeof(sa));
	for (int sig = 1; sig < _NSIG; sig++) {
		struct sigaction old;
		if (sigaction(sig, NULL, &old) != 0)
			continue;
		if (sig == SIGPIPE || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
			sa.sa_handler = SIG_DFL;
			sigaction(sig, &sa, NULL);
		}
	}
	/* dup2 onto itself keeps close-on-exec: clear it then. */
	if ((a->prog == EVK_STEP_PROGRESS_FD ? fcntl(a->prog, F_SETFD, 0)
					     : dup2(a->prog, EVK_STEP_PROGRESS_FD)) < 0 ||
	    dup2(a->out, STDOUT_FILENO) < 0 || dup2(a->out, STDERR_FILENO) < 0 ||
	    dup2(a->in, STDIN_FILENO) < 0 || sigprocmask(SIG_SETMASK, &a->mask, NULL) != 0)
		_exit(127);
	/* Not found, not executable, a script without #! (run by /bin/sh):
	 * as a shell would, say why on the step's output and exit 127. */
	execvpe(a->argv[0], a->argv, a->envp);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0 ||
	    write(STDERR_FILENO, a->argv[0], strlen(a->argv[0])) < 0 ||
	    write(STDERR_FILENO, "\n", 1) < 0) {
		/* nothing more to say */
	}
	_exit(127);
}

/* The step's child by vfork, as posix_spawn does (which cannot set
 * PR_SET_PDEATHSIG): the kernel neither copies the worker's page tables
 * nor makes it fault its pages back in, as after fork, which with those
 * faults took 40% of the worker's own CPU per `true` job. All signals
 * are blocked around vfork so that no handler runs in the child on the
 * worker's stack. Under AddressSanitizer fork, so that its
 * interceptors (sigaction, execvpe) never run in a child sharing the
 * worker's memory; the child does the same. */
#if defined(__SANITIZE_ADDRESS__)
#define EVK_STEP_FORK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVK_STEP_FORK 1
#endif
#endif
/* The child's pid in the worker, or -1; the child never returns. */
static pid_t __attribute__((noinline))
start_child(const struct spawn *a)
{
#ifdef EVK_STEP_FORK
	pid_t pid = fork();
#else
	pid_t pid = vfork();
#endif
	if (pid == 0)
		child_exec(a);
	return pid;
}

static int
spawn_step(pid_t *pid, char *const argv[], char **envp, int prog, int out, int in)
{
	struct spawn a = { argv, envp, prog, out, in, getpid(), { { 0 } } };
	sigset_t all;
	int rc, e = 0;

	sigfillset(&all);
	if ((rc = pthread_sigmask(SIG_BLOCK, &all, &a.mask)) != 0)
		return rc;
	if ((*pid = start_child(&a)) < 0)
		e = errno;
	else
		setpgid(*pid, *pid); /* fork: before the worker may signal it */
	pthread_sigmask(SIG_SETMASK, &a.mask, NULL);
	return e;
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
	if ((e = spawn_step(&s->pid, argv, envp, prog[1], out[1], in)) != 0) {
		errno = e;
		goto out;
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
