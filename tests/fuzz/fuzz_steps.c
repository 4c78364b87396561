/* evworker's steps file (--steps FILE): evk_jobs_steps_read (lib/jobs.c).
 * The input is the file. Refused: EVK_EINVAL or EVK_ETOOLONG, with a
 * reason. Accepted: compact JSON text of a non-empty array of
 * {"name": NAME, "run": [STRING...]}, NAME a valid event name, nothing but
 * white space after the array in the input, and no "\u0000" cutting a
 * string short (issue 16 item 14). */
#include "fuzz.h"

#include "evkit/err.h"
#include "evkit/topic.h"
#include "evkit/jobs.h"

#include <cjson/cJSON.h>
#include <string.h>

/* True when data holds the escape \u0000 (a NUL in a JSON string): a
 * backslash that is not itself escaped (an odd run of backslashes), then
 * u0000. "\\u0000" is a backslash and the text u0000, not a NUL. */
static bool
has_nul_escape(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i + 6 <= size; i++) {
		if (data[i] != '\\' || memcmp(data + i + 1, "u0000", 5) != 0)
			continue;
		size_t run = 1;
		while (run <= i && data[i - run] == '\\')
			run++;
		if (run % 2 == 1)
			return true;
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	const char *path = fuzz_file(data, size);
	char *text = NULL, why[320] = "";
	int rv = evk_jobs_steps_read(path, &text, why);
	if (rv != EVK_OK) {
		FUZZ_CHECK(rv == EVK_EINVAL || rv == EVK_ETOOLONG, "refused with %d", rv);
		FUZZ_CHECK(why[0] != '\0', "refused without a reason");
		FUZZ_CHECK(text == NULL, "a refusal left text");
		return 0;
	}
	cJSON *steps = cJSON_Parse(text);
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
	const char *end = NULL;
	cJSON *again = cJSON_ParseWithLengthOpts((const char *)data, size, &end, 0);
	FUZZ_CHECK(again != NULL, "accepted steps that do not parse");
	while (end < (const char *)data + size && strchr(" \t\r\n", *end) && *end)
		end++;
	FUZZ_CHECK(end == (const char *)data + size, "accepted trailing data after the steps");
	FUZZ_CHECK(!has_nul_escape(data, size), "accepted a \\u0000 in the steps");
	cJSON_Delete(again);
	cJSON_Delete(steps);
	cJSON_free(text);
	return 0;
}
