/* evworker's steps file (--steps FILE): cmd/evworker.c's read_steps,
 * compiled in here as it is (its main renamed; evk_die returns here, see
 * die.h). The input is the file. Refused: status 65 (bad data). Accepted:
 * a non-empty array of {"name": NAME, "run": [STRING...]}, NAME a valid
 * event name. With EVKIT_FUZZ_STRICT=1 also: nothing but white space after
 * the array, and no "\u0000" cutting a string short (issue 16 item 14). */
#include "die.h"

#define main evworker_main
#include "../../cmd/evworker.c"
#undef main

#include "fuzz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	const char *path = fuzz_file(data, size);

	fuzz_begin();
	if (setjmp(fuzz_die_jmp)) {
		fuzz_end();
		FUZZ_CHECK(fuzz_die_status == EVK_EX_DATAERR, "refused with status %d, not 65",
			   fuzz_die_status);
		return 0;
	}
	cJSON *steps = read_steps(path);
	FUZZ_CHECK(cJSON_IsArray(steps) && cJSON_GetArraySize(steps) > 0, "steps not an array");
	const cJSON *s;
	cJSON_ArrayForEach(s, steps) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(s, "name");
		const cJSON *run = cJSON_GetObjectItemCaseSensitive(s, "run");
		FUZZ_CHECK(cJSON_IsString(name) &&
				   evk_event_name_valid(name->valuestring, strlen(name->valuestring)),
			   "a step without a valid name");
		FUZZ_CHECK(cJSON_IsArray(run) && cJSON_GetArraySize(run) > 0, "a step without run");
		const cJSON *a;
		cJSON_ArrayForEach(a, run)
			FUZZ_CHECK(cJSON_IsString(a), "run holds a non-string");
	}
	char *text = cJSON_PrintUnformatted(steps);
	FUZZ_CHECK(text != NULL, "steps do not print");
	cJSON_free(text);
	if (fuzz_strict()) {
		const char *end = NULL;
		cJSON *again = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
		FUZZ_CHECK(again != NULL, "accepted steps that do not parse");
		while (end < (const char *)data + size && strchr(" \t\r\n", *end) && *end)
			end++;
		FUZZ_CHECK(end == (const char *)data + size, "accepted trailing data after the steps");
		cJSON_Delete(again);
		FUZZ_CHECK(memmem(data, size, "\\u0000", 6) == NULL, "accepted a \\u0000 in the steps");
	}
	cJSON_Delete(steps);
	FUZZ_CHECK(fuzz_end() == 0, "accepted steps leak cJSON blocks");
	return 0;
}
