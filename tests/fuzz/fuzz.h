/* Shared bits of the libFuzzer harnesses (tests/fuzz/README.md).
 *
 * A harness checks a property and calls FUZZ_FAIL when it does not hold:
 * that aborts, so libFuzzer keeps the input as a crash file. */
#ifndef EVKIT_FUZZ_H
#define EVKIT_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FAIL(...)                                                         \
	do {                                                                   \
		fprintf(stderr, "fuzz: %s:%d: ", __FILE__, __LINE__);          \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		abort();                                                       \
	} while (0)

#define FUZZ_CHECK(cond, ...)                                                  \
	do {                                                                   \
		if (!(cond))                                                   \
			FUZZ_FAIL(__VA_ARGS__);                                \
	} while (0)

/* A NUL-terminated copy of data[0..size); NULL when out of memory. */
static inline char *
fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s) {
		if (size)
			memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/* Checks that the SPEC's promises hold for a line the hub would store or
 * fan out: no raw byte below 0x20 or 0x7f (JSON needs them escaped,
 * terminals must not see them), and never a NUL. */
static inline int
fuzz_no_control(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

/* True when the JSON text s[0..n) holds no raw byte below 0x20 inside a
 * string and none outside but JSON white space (RFC 8259; cJSON takes
 * any of them as white space). */
static inline int
fuzz_json_no_controls(const char *s, size_t n)
{
	int in_string = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (in_string) {
			if (c < 0x20)
				return 0;
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = 0;
		} else if (c == '"') {
			in_string = 1;
		} else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
			return 0;
		}
	}
	return 1;
}

/* Whether the stricter checks, for defects still being fixed by their
 * owners (issue 16 items 2, 9, 10), are on: EVKIT_FUZZ_STRICT=1. */
static inline int
fuzz_strict(void)
{
	static int v = -1;
	if (v < 0) {
		const char *e = getenv("EVKIT_FUZZ_STRICT");
		v = e && *e && strcmp(e, "0") != 0;
	}
	return v;
}
#endif
