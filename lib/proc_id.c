/* Which process a pid names, across pid reuse (lib/proc_id.h): the boot's
 * id (/proc/sys/kernel/random/boot_id) and the process's start time, the
 * 22nd field of /proc/PID/stat. */
#include "proc_id.h"

#include "evkit/err.h"
#include "evkit/opts.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* This boot's id (36 characters), read once. */
static const char *
boot_id(void)
{
	static _Thread_local char id[40];
	if (id[0] == '\0') {
		char *text;
		size_t len;
		if (evk_file_read("/proc/sys/kernel/random/boot_id", 64, &text, &len) != EVK_OK)
			return NULL;
		if (len >= 36)
			memcpy(id, text, 36);
		free(text);
		if (len < 36)
			return NULL;
	}
	return id;
}

bool
evk_proc_id(pid_t pid, char out[EVK_PROC_ID_LEN])
{
	/* The command name (field 2, in parentheses) may hold anything: the
	 * fields are counted after its last ')'. A stat line is short. */
	char path[40], *stat, *end;
	size_t len;
	const char *boot = boot_id();
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if (boot == NULL || pid <= 0 || evk_file_read(path, 4096, &stat, &len) != EVK_OK)
		return false;
	const char *p = strrchr(stat, ')');
	/* After ')': field 3 (state) ... field 22 (starttime). */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	errno = 0;
	unsigned long long start = p ? strtoull(p + 1, &end, 10) : 0;
	bool ok = p && errno == 0 && end != p + 1;
	free(stat);
	if (ok)
		snprintf(out, EVK_PROC_ID_LEN, "%s/%llu", boot, start);
	return ok;
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
