/* Which process a pid names, across pid reuse (lib/proc_id.h): the boot's
 * id (/proc/sys/kernel/random/boot_id) and the process's start time, the
 * 22nd field of /proc/PID/stat. */
#include "proc_id.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads up to n - 1 bytes of file path into buf, NUL-terminated; its
 * length, or -1. */
static ssize_t
read_small(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t got;
	do
		got = read(fd, buf, n - 1);
	while (got < 0 && errno == EINTR);
	close(fd);
	if (got < 0)
		return -1;
	buf[got] = '\0';
	return got;
}

/* This boot's id (36 characters), read once. */
static const char *
boot_id(void)
{
	static _Thread_local char id[40];
	if (id[0] == '\0') {
		char buf[64];
		if (read_small("/proc/sys/kernel/random/boot_id", buf, sizeof(buf)) < 36)
			return NULL;
		memcpy(id, buf, 36);
		id[36] = '\0';
	}
	return id;
}

bool
evk_proc_id(pid_t pid, char out[EVK_PROC_ID_LEN])
{
	/* The command name (field 2, in parentheses) may hold anything: the
	 * fields are counted after its last ')'. A stat line is short. */
	char path[40], stat[1024];
	const char *boot = boot_id();
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (boot == NULL || pid <= 0 || read_small(path, stat, sizeof(stat)) <= 0)
		return false;
	const char *p = strrchr(stat, ')');
	if (p == NULL)
		return false;
	/* After ')': field 3 (state) ... field 22 (starttime). */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL)
		return false;
	char *end;
	errno = 0;
	unsigned long long start = strtoull(p + 1, &end, 10);
	if (errno || end == p + 1)
		return false;
	snprintf(out, EVK_PROC_ID_LEN, "%s/%llu", boot, start);
	return true;
}

bool
evk_proc_same(pid_t pid, const char *id)
{
	char now[EVK_PROC_ID_LEN];
	if (id == NULL || !evk_proc_id(pid, now))
		return true;
	return strcmp(now, id) == 0;
}

bool
evk_proc_group_ours(pid_t leader, const char *id)
{
	const char *boot = boot_id();
	if (id == NULL)
		return true;
	if (boot == NULL || strncmp(id, boot, 36) != 0 || id[36] != '/')
		return false; /* another boot: its groups are gone */
	if (kill(leader, 0) != 0 && errno == ESRCH)
		return true; /* leader gone: what is left of its group, if any */
	return evk_proc_same(leader, id);
}
