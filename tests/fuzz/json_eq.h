/* Ordered, exact comparison of two cJSON trees for the harnesses:
 * cJSON_Compare finds object members by name (so {"a":1,"a":2} differs
 * from itself) and compares numbers with a tolerance. */
#ifndef EVKIT_FUZZ_JSON_EQ_H
#define EVKIT_FUZZ_JSON_EQ_H
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/* Whether v holds a number that is not finite (1e999): JSON has none,
 * so such a payload cannot be stored as it came (issue 16 item 11). */
static inline bool
json_has_nonfinite(const cJSON *v)
{
	if (cJSON_IsNumber(v))
		return !isfinite(v->valuedouble);
	for (const cJSON *c = v ? v->child : NULL; c; c = c->next)
		if (json_has_nonfinite(c))
			return true;
	return false;
}

static inline bool
json_eq(const cJSON *a, const cJSON *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if ((a->type & 0xff) != (b->type & 0xff))
		return false;
	if ((a->string == NULL) != (b->string == NULL) ||
	    (a->string && strcmp(a->string, b->string) != 0))
		return false;
	switch (a->type & 0xff) {
	case cJSON_Number:
		return a->valuedouble == b->valuedouble;
	case cJSON_String:
	case cJSON_Raw:
		return strcmp(a->valuestring, b->valuestring) == 0;
	case cJSON_Array:
	case cJSON_Object: {
		const cJSON *x = a->child, *y = b->child;
		for (; x && y; x = x->next, y = y->next)
			if (!json_eq(x, y))
				return false;
		return x == NULL && y == NULL;
	}
	default:
		return true;
	}
}
#endif
