/* The cache of small cJSON blocks: sizes, reuse, its bound, release. */
#include "evkit/jsonmem.h"

#include "check.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

int
main(void)
{
	/* Every size gets a block it can fill (ASan in CI would see an
	 * overrun), aligned like malloc's. */
	static const size_t sizes[] = { 0, 1, 15, 16, 17, 64, 255, 256, 257, 4096 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *p = evk_jsonmem_alloc(sizes[i]);
		CHECK(p != NULL, "size %zu", sizes[i]);
		if (p == NULL)
			continue;
		CHECK((uintptr_t)p % 16 == 0, "size %zu aligned", sizes[i]);
		memset(p, 0xab, sizes[i]);
		evk_jsonmem_free(p);
	}
	/* Each freed block served the next size of its class: one kept for
	 * each of 1..16 (and 0), 17..32, 49..64 and 241..256; none large. */
	CHECK(evk_jsonmem_kept() == 4, "one block per class used, the large not: %zu",
	      evk_jsonmem_kept());
	evk_jsonmem_free(NULL);

	/* A freed block comes back for the next request of its size class. */
	void *a = evk_jsonmem_alloc(40), *b;
	evk_jsonmem_free(a);
	b = evk_jsonmem_alloc(48); /* 40 and 48 share the 33..48 class */
	CHECK(a == b, "reused");
	evk_jsonmem_free(b);

	/* Bounded: past EVK_JSONMEM_KEEP per class, frees go to free(). */
	evk_jsonmem_release();
	CHECK(evk_jsonmem_kept() == 0, "released: %zu", evk_jsonmem_kept());
	enum { N = EVK_JSONMEM_KEEP + 500 };
	static void *ps[N];
	for (int i = 0; i < N; i++)
		ps[i] = evk_jsonmem_alloc(64);
	for (int i = 0; i < N; i++)
		evk_jsonmem_free(ps[i]);
	CHECK(evk_jsonmem_kept() == EVK_JSONMEM_KEEP, "kept %zu of %d", evk_jsonmem_kept(), N);
	evk_jsonmem_release();

	/* cJSON through the hooks (a no-op under ASan): parse, edit, print. */
	evk_jsonmem_install();
	for (int round = 0; round < 3; round++) {
		cJSON *o = cJSON_Parse("{\"a\":[1,2,{\"b\":\"text that is longer than sixteen\"}],"
				       "\"c\":null,\"d\":true}");
		CHECK(o != NULL, "parsed");
		cJSON_AddItemToObject(o, "e", cJSON_CreateString("x"));
		char *s = cJSON_PrintUnformatted(o);
		CHECK(s && strcmp(s, "{\"a\":[1,2,{\"b\":\"text that is longer than sixteen\"}],"
				     "\"c\":null,\"d\":true,\"e\":\"x\"}") == 0,
		      "printed: %s", s ? s : "(null)");
		cJSON_free(s);
		cJSON_Delete(o);
	}
	evk_jsonmem_release();
	return check_done("jsonmem");
}
