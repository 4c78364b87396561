/* A cache of freed small blocks for cJSON, for programs whose cJSON use
 * is all on one thread (widgetd, casectl, the fold bench).
 *
 * Folding one event parses its payload into some 25 small cJSON nodes and
 * strings and frees them again; glibc's malloc and free were a third of
 * the fold's instructions. The cache keeps freed blocks of up to
 * EVK_JSONMEM_SMALL bytes in per-size lists (at most EVK_JSONMEM_KEEP per
 * size, so its memory is bounded) and hands them out again. */
#ifndef EVKIT_JSONMEM_H
#define EVKIT_JSONMEM_H

#include <stddef.h>

#define EVK_JSONMEM_SMALL 256 /* larger blocks go straight to malloc */
#define EVK_JSONMEM_KEEP 1024 /* freed blocks kept per size class */

/* Makes cJSON allocate through the cache. Call first thing in main,
 * before any cJSON call, and only where no two threads use cJSON: the
 * cache has no lock. Under AddressSanitizer it does nothing, so that
 * every cJSON block stays visible to it. */
void evk_jsonmem_install(void);

/* The hooks themselves (exposed for the unit test). */
void *evk_jsonmem_alloc(size_t n);
void evk_jsonmem_free(void *p);

/* Frees the kept blocks (at exit: leak checkers see a clean heap). */
void evk_jsonmem_release(void);

/* Blocks kept now, over all sizes. */
size_t evk_jsonmem_kept(void);

#endif
