/* A tiny table-test harness: CHECK counts failures, check_done prints the
 * closing line and returns the exit status. */
#ifndef EVKIT_TEST_CHECK_H
#define EVKIT_TEST_CHECK_H

#include <stdio.h>

static int check_run, check_failed;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		check_run++;                                               \
		if (!(cond)) {                                             \
			check_failed++;                                    \
			fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
		}                                                          \
	} while (0)

static inline int
check_done(const char *suite)
{
	printf("%s: %d passed, %d failed\n", suite, check_run - check_failed,
	       check_failed);
	return check_failed ? 1 : 0;
}

#endif
