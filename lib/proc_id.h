/* Which process a pid names, across pid reuse: lib/proc_id.c, for
 * lib/jobs.c's rescue. Not installed. */
#ifndef EVKIT_PROC_ID_H
#define EVKIT_PROC_ID_H

#include <stdbool.h>
#include <sys/types.h>

/* Private to lib/: not exported from libevkit.so. */
#pragma GCC visibility push(hidden)

/* "BOOT_ID/START": the boot and the start time (clock ticks after boot,
 * 10 ms) of a process, which no other process of any boot shares (a pid
 * used twice within one tick would be: pid_max processes started in 10 ms). */
#define EVK_PROC_ID_LEN 64

/* The identity of live process pid into out; false when it cannot be
 * read (no such process, no /proc). */
bool evk_proc_id(pid_t pid, char out[EVK_PROC_ID_LEN]);

/* Whether pid may still be the process whose identity was recorded as
 * id: true when id is NULL (not recorded) or the identity of pid cannot
 * be read; false when pid is a process of another boot or started at
 * another time (its pid reused). */
bool evk_proc_same(pid_t pid, const char *id);

/* Whether the process group of leader (recorded as id) may still hold
 * processes of that run, so that killing -leader hits only them: the
 * same boot, and leader either gone (Linux gives no new process a pid
 * still used as a process group's id) or the recorded process itself.
 * True when id is NULL (not recorded). */
bool evk_proc_group_ours(pid_t leader, const char *id);

#pragma GCC visibility pop

#endif
