#include "evkit/jsonmem.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

/* Each block carries a 16-byte header before what it hands out (keeping
 * malloc's 16-byte alignment): its size class, or LARGE, and while the
 * block is kept, the link to the next kept block of its class. The class
 * stays put while a block is kept, so handing one out again only unlinks
 * it: cJSON asks for some 17 blocks an event in the fold. */
#define HEADER 16
#define GRAIN 16
#define CLASSES (EVK_JSONMEM_SMALL / GRAIN)
#define LARGE UINT32_MAX

struct header {
	uint32_t class;
	uint32_t pad;
	struct header *next;
};

static struct header *lists[CLASSES];
static unsigned counts[CLASSES];

/* A block when no kept one fits: a new one, or a large one. Out of
 * line, so that the common case (evk_jsonmem_alloc) needs no stack frame. */
static __attribute__((noinline)) void *
alloc_new(size_t n)
{
	struct header *h;

	if (n == 0) /* class 0, as 1..16 */
		return evk_jsonmem_alloc(1);
	if (n > EVK_JSONMEM_SMALL) {
		if (n > SIZE_MAX - HEADER || (h = malloc(HEADER + n)) == NULL)
			return NULL;
		h->class = LARGE;
		return (char *)h + HEADER;
	}
	uint32_t c = (uint32_t)((n - 1) / GRAIN);
	if ((h = malloc(HEADER + (size_t)(c + 1) * GRAIN)) == NULL)
		return NULL;
	h->class = c;
	return (char *)h + HEADER;
}

void *
evk_jsonmem_alloc(size_t n)
{
	size_t c = (n - 1) / GRAIN; /* size 0 wraps round: alloc_new */
	struct header *h;

	if (c < CLASSES && (h = lists[c]) != NULL) {
		lists[c] = h->next;
		counts[c]--;
		return (char *)h + HEADER;
	}
	return alloc_new(n);
}

void
evk_jsonmem_free(void *p)
{
	if (p == NULL)
		return;
	struct header *h = (struct header *)((char *)p - HEADER);
	uint32_t c = h->class; /* LARGE is past the classes */
	if (c < CLASSES && counts[c] < EVK_JSONMEM_KEEP) {
		h->next = lists[c];
		lists[c] = h;
		counts[c]++;
		return;
	}
	free(h);
}

void
evk_jsonmem_release(void)
{
	for (int c = 0; c < CLASSES; c++) {
		while (lists[c]) {
			struct header *h = lists[c];
			lists[c] = h->next;
			free(h);
		}
		counts[c] = 0;
	}
}

size_t
evk_jsonmem_kept(void)
{
	size_t n = 0;
	for (int c = 0; c < CLASSES; c++)
		n += counts[c];
	return n;
}

#if defined(__SANITIZE_ADDRESS__)
#define EVK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVK_ASAN 1
#endif
#endif

void
evk_jsonmem_install(void)
{
#ifndef EVK_ASAN
	cJSON_Hooks hooks = { evk_jsonmem_alloc, evk_jsonmem_free };
	cJSON_InitHooks(&hooks);
#endif
}
