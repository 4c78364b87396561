/* lib/proc_id.c: which process a pid names, across pid reuse. */
#include "check.h"
#include "../../lib/proc_id.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* A live process reads as "BOOT/START"; it is itself and no other, also
 * with a command name that holds ") (" and spaces. */
static void
test_self(void)
{
	char id[EVK_PROC_ID_LEN], again[EVK_PROC_ID_LEN];
	CHECK(evk_proc_id(getpid(), id), "own identity read");
	const char *slash = strchr(id, '/');
	CHECK(slash && slash - id == 36 && strspn(slash + 1, "0123456789") == strlen(slash + 1) &&
		      slash[1] != '\0',
	      "boot id, slash, start ticks: %s", id);
	CHECK(prctl(PR_SET_NAME, "a) (b c ) d", 0, 0, 0) == 0, "renamed");
	CHECK(evk_proc_id(getpid(), again) && strcmp(again, id) == 0, "same after rename: %s", again);
	CHECK(evk_proc_same(getpid(), id), "the same process");
	char other[EVK_PROC_ID_LEN];
	memcpy(other, id, 37);
	strcpy(other + 37, "1");
	CHECK(!evk_proc_same(getpid(), other), "started at another time: another process");
	CHECK(evk_proc_same(getpid(), NULL), "nothing recorded: taken as the same");
	CHECK(!evk_proc_id(0, again) && !evk_proc_id(-1, again), "no pid 0 or -1");
}

/* A child's identity differs from its parent's; once reaped its pid reads
 * as nothing, and its group is still "ours" (gone, same boot), but not
 * for a record of another boot. */
static void
test_child(void)
{
	char mine[EVK_PROC_ID_LEN], kid[EVK_PROC_ID_LEN];
	int fds[2];
	CHECK(pipe(fds) == 0, "pipe");
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(fds[1]);
		(void)read(fds[0], &c, 1); /* until the parent closes */
		_exit(0);
	}
	close(fds[0]);
	CHECK(pid > 0, "fork");
	CHECK(evk_proc_id(getpid(), mine) && evk_proc_id(pid, kid), "both read");
	CHECK(strncmp(mine, kid, 37) == 0, "one boot");
	CHECK(evk_proc_group_ours(pid, kid), "a live child with its record is ours");
	/* (Start times count clock ticks: a process started in another
	 * tick, here the first of the boot.) */
	char early[EVK_PROC_ID_LEN];
	snprintf(early, sizeof(early), "%.36s/1", kid);
	CHECK(!evk_proc_group_ours(pid, early), "a live process with another's record is not");
	close(fds[1]);
	CHECK(waitpid(pid, NULL, 0) == pid, "reaped");
	char now[EVK_PROC_ID_LEN];
	bool reused = evk_proc_id(pid, now); /* by another process already: rare */
	CHECK(reused || evk_proc_group_ours(pid, kid), "a gone leader's group is ours");
	char old_boot[EVK_PROC_ID_LEN];
	snprintf(old_boot, sizeof(old_boot), "00000000-0000-0000-0000-000000000000/%s", strchr(kid, '/') + 1);
	CHECK(!evk_proc_group_ours(pid, old_boot), "a record of another boot is never ours");
	CHECK(evk_proc_group_ours(pid, NULL), "nothing recorded: taken as ours");
}

int
main(void)
{
	test_self();
	test_child();
	return check_done("test_proc_id");
}
