/* For harnesses that compile a program's cmd/NAME.c in: evk_die, which
 * prints and exits, returns to the harness instead (through longjmp), so
 * that a refused input is an answer, not the end of the fuzzer. Include
 * this before the program's source. What the program leaves to exit() to
 * free is cJSON's: fuzz_begin() puts cJSON on allocation hooks that keep
 * a list, and fuzz_end() frees what is left on it, so that LeakSanitizer
 * still finds a leak on the paths that do return. */
#ifndef EVKIT_FUZZ_DIE_H
#define EVKIT_FUZZ_DIE_H
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>

#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define evk_die fuzz_die

/* Every cJSON block has this header in front (16 bytes: malloc's alignment). */
struct fuzz_block {
	struct fuzz_block *prev, *next;
};
static struct fuzz_block fuzz_live = { &fuzz_live, &fuzz_live };

static void *
fuzz_malloc(size_t n)
{
	struct fuzz_block *b = malloc(sizeof(*b) + n);
	if (b == NULL)
		return NULL;
	b->prev = &fuzz_live;
	b->next = fuzz_live.next;
	fuzz_live.next->prev = b;
	fuzz_live.next = b;
	return b + 1;
}

static void
fuzz_free(void *p)
{
	if (p == NULL)
		return;
	struct fuzz_block *b = (struct fuzz_block *)p - 1;
	b->prev->next = b->next;
	b->next->prev = b->prev;
	free(b);
}

static void
fuzz_begin(void)
{
	static int hooked;
	if (!hooked) {
		cJSON_Hooks h = { fuzz_malloc, fuzz_free };
		cJSON_InitHooks(&h);
		hooked = 1;
	}
}

/* Frees the cJSON blocks a refused input left; returns how many. */
static size_t
fuzz_end(void)
{
	size_t n = 0;
	while (fuzz_live.next != &fuzz_live) {
		fuzz_free(fuzz_live.next + 1);
		n++;
	}
	return n;
}

static jmp_buf fuzz_die_jmp;
static int fuzz_die_status;

__attribute__((noreturn, format(printf, 2, 3))) void fuzz_die(int status, const char *fmt, ...);

void
fuzz_die(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap); /* formats, as the real one would */
	va_end(ap);
	fuzz_die_status = status;
	longjmp(fuzz_die_jmp, 1);
}

/* The path of a file that holds data[0..size): one memfd, rewritten at
 * each call, for the programs that take a file name. */
static const char *
fuzz_file(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("fuzz", 0);
		FUZZ_CHECK(fd >= 0, "memfd_create");
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	FUZZ_CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, data, size, 0) == (ssize_t)size,
		   "cannot write the input file");
	return path;
}
#endif
