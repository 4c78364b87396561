#include "evkit/jsonmem.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

/* Each block carries a 16-byte header before what it hands out (keeping
 * malloc's 16-byte alignment): its size class, or LARGE. A kept block's
 * first bytes link it into its class's list. */
#define HEADER 16
#define GRAIN 16
#define CLASSES (EVK_JSONMEM_SMALL / GRAIN)
#define LARGE UINT32_MAX

struct header {
	uint32_t class;
	uint32_t pad[3];
};

struct kept {
	struct kept *next;
};

static struct kept *lists[CLASSES];
static unsigned counts[CLASSES];

void *
evk_jsonmem_alloc(size_t n)
{
	struct header *h;

	if (n > EVK_JSONMEM_SMALL) {
		if (n > SIZE_MAX - HEADER || (h = malloc(HEADER + n)) == NULL)
			return NULL;
		h->class = LARGE;
		return (char *)h + HEADER;
	}
	uint32_t c = n ? (uint32_t)((n - 1) / GRAIN) : 0;
	if (lists[c]) {
		h = (struct header *)lists[c];
		lists[c] = lists[c]->next;
		counts[c]--;
	} else if ((h = malloc(HEADER + (size_t)(c + 1) * GRAIN)) == NULL) {
		return NULL;
	}
	h->class = c;
	return (char *)h + HEADER;
}

void
evk_jsonmem_free(void *p)
{
	if (p == NULL)
		return;
	struct header *h = (struct header *)((char *)p - HEADER);
	uint32_t c = h->class;
	if (c == LARGE || counts[c] >= EVK_JSONMEM_KEEP) {
		free(h);
		return;
	}
	struct kept *k = (struct kept *)h;
	k->next = lists[c];
	lists[c] = k;
	counts[c]++;
}

void
evk_jsonmem_release(void)
{
	for (int c = 0; c < CLASSES; c++) {
		while (lists[c]) {
			struct kept *k = lists[c];
			lists[c] = k->next;
			free(k);
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
