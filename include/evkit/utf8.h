#ifndef EVKIT_UTF8_H
#define EVKIT_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool evk_utf8_valid(const char *s, size_t n);

#endif
