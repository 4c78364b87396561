#ifndef EVKIT_UTF8_H
#define EVKIT_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool evk_utf8_valid(const char *s, size_t n);

/* True when the JSON text s[0..n) holds no raw control byte (below 0x20):
 * none inside a string (RFC 8259 wants them escaped) and none outside but
 * JSON white space (cJSON takes any of them as white space). Otherwise
 * sets *at (if given) to the offset of the first. */
bool evk_json_no_controls(const char *s, size_t n, size_t *at);

#endif
