/* lib/fold.c's and lib/fold_check.c's lookups of a member by name, on
 * cJSON's public API. */
#ifndef EVKIT_FOLD_IMPL_H
#define EVKIT_FOLD_IMPL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <string.h>

/* Whether member name k (not NULL) is the literal lit: its pointer first
 * (the fold adds the names it knows as literals, kept by pointer:
 * cJSON_AddItemToObjectCS), then its text (a name parsed or copied). */
static inline bool
is_name(const char *k, const char *lit)
{
	return k == lit || strcmp(k, lit) == 0;
}

/* Member name of o (the first of that name), as
 * cJSON_GetObjectItemCaseSensitive finds it, but comparing the pointer
 * and the first byte before calling strcmp: cJSON's strcmp on every
 * member passed over was a tenth of the fold's instructions (foldbench,
 * callgrind). */
static inline cJSON *
member(const cJSON *o, const char *name)
{
	cJSON *m;
	cJSON_ArrayForEach(m, o) {
		const char *k = m->string;
		if (k == name || (k && k[0] == name[0] && strcmp(k, name) == 0))
			return m;
	}
	return NULL;
}

static inline const char *
str(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(member(o, name));
}

#endif
