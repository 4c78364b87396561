#include "evkit/daemon.h"

#include "evkit/err.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1;
static int log_fd = -1;

void
evk_daemon_log_fd(int fd)
{
	log_fd = fd;
}

int
evk_daemon_start(void)
{
	int fds[2];
	pid_t pid;

	if (pipe(fds) != 0)
		return EVK_EIO;
	fflush(NULL);
	if ((pid = fork()) < 0)
		return EVK_EIO;
	if (pid > 0) {
		unsigned char status = 1;
		close(fds[1]);
		if (read(fds[0], &status, 1) != 1) {
			int ws;
			waitpid(pid, &ws, 0);
			status = WIFEXITED(ws) && WEXITSTATUS(ws) ? WEXITSTATUS(ws) : 1;
		}
		_exit(status);
	}
	close(fds[0]);
	ready_fd = fds[1];
	setsid();
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		if (null > 2)
			close(null);
	}
	return EVK_OK;
}

void
evk_daemon_ready(int status)
{
	unsigned char b = (unsigned char)status;

	if (ready_fd < 0)
		return;
	if (status == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 1);
			dup2(log_fd >= 0 ? log_fd : null, 2);
			if (null > 2)
				close(null);
		}
		if (log_fd < 0)
			evk_log_syslog(); /* stderr is gone: keep the messages */
	}
	if (write(ready_fd, &b, 1) != 1) {
		/* The parent is gone; nothing to tell. */
	}
	close(ready_fd);
	ready_fd = -1;
}

int
evk_pidfile_write(const char *path)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >=
	    sizeof(tmp))
		return EVK_EINVAL;
	if ((f = fopen(tmp, "w")) == NULL)
		return EVK_EIO;
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return EVK_EIO;
	}
	return EVK_OK;
}

int
evk_daemon_log(const char *path, int detach_later)
{
	int fd;

	if (evk_log_file(path, &fd) != EVK_OK)
		return EVK_EIO;
	if (detach_later) {
		evk_daemon_log_fd(fd);
		return EVK_OK;
	}
	if (dup2(fd, 2) < 0) {
		close(fd);
		return EVK_EIO;
	}
	close(fd);
	return EVK_OK;
}
