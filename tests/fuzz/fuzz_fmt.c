/* evsub -F templates (lib/fmt.c). The input is "TEMPLATE\nEVENT", EVENT
 * an evpub input line made canonical as the hub stores it (a built-in
 * event when it is not one). Compiling never crashes; rendering never
 * crashes, and one event stays one line: without a backslash escape in
 * the template, the text holds no newline. */
#include "fuzz.h"

#include "evkit/buf.h"
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/fmt.h"

static const char default_line[] =
	"{\"seq\":7,\"ts\":\"2026-11-22T22:01:02.345678Z\",\"topic\":\"case:created:7\","
	"\"event\":\"create\",\"payload\":{\"id\":7,\"name\":\"a\\nb\",\"items\":[1,{\"x\":\"y\"}],"
	"\"n\":null,\"ok\":true,\"e\":\"\\u001b[31m\"}}";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 8192)
		return 0;
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tl = nl ? (size_t)(nl - data) : size;
	char *tmpl = fuzz_strndup(data, tl);
	if (tmpl == NULL)
		return 0;

	struct evk_buf line = { 0 }, built = { 0 }, out = { 0 };
	struct evk_event ev;
	char why[256];
	const char *rest = nl ? (const char *)nl + 1 : "";
	size_t rl = nl ? size - tl - 1 : 0;
	const char *enl = memchr(rest, '\n', rl);
	if (enl)
		rl = (size_t)(enl - rest);
	if (rl && evk_event_from_json(&built, rest, rl, why, sizeof(why)) == EVK_OK &&
	    evk_buf_add(&line, "{\"seq\":18446744073709551615,", 28) == EVK_OK &&
	    evk_buf_add(&line, built.p + 1, built.len - 1) == EVK_OK) {
		FUZZ_CHECK(evk_event_scan(&ev, line.p, line.len) == EVK_OK, "built line does not scan");
	} else {
		FUZZ_CHECK(evk_event_scan(&ev, default_line, sizeof(default_line) - 1) == EVK_OK,
			   "built-in line does not scan");
	}

	const char *err = NULL;
	struct evk_fmt *f = evk_fmt_new(tmpl, &err);
	if (f == NULL) {
		FUZZ_CHECK(err != NULL && *err != '\0', "a refused template has no reason");
	} else {
		int rv = evk_fmt_render(f, &ev, &out);
		FUZZ_CHECK(rv == EVK_OK, "render failed: %d", rv);
		if (strchr(tmpl, '\\') == NULL)
			FUZZ_CHECK(memchr(out.p ? out.p : "", '\n', out.len) == NULL,
				   "template '%s' rendered a newline", tmpl);
		/* Rendering twice appends the same text again. */
		size_t first = out.len;
		FUZZ_CHECK(evk_fmt_render(f, &ev, &out) == EVK_OK && out.len == 2 * first &&
				   (first == 0 || memcmp(out.p, out.p + first, first) == 0),
			   "rendering is not repeatable");
		evk_fmt_free(f);
	}
	evk_buf_release(&out);
	evk_buf_release(&built);
	evk_buf_release(&line);
	free(tmpl);
	return 0;
}
