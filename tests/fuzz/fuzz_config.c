/* widgetd's --config file: cmd/widgetd.c's load_config, compiled in here
 * as it is (its main renamed; evk_die returns here, see die.h). The input
 * is the file. Refused: status 65 (bad data). Accepted: each widget has an
 * id that makes a topic and holds no ':', a valid pattern, a valid event
 * name or none, a limit and a window of at least 1. With
 * EVKIT_FUZZ_STRICT=1 also: ids are unique (issue 16 item 14). */
#include "die.h"

#define main widgetd_main
#include "../../cmd/widgetd.c"
#undef main

#include "fuzz.h"


/* widgetd.c keeps the configured widgets in a struct daemon (MAX_DECLS
 * defined) or, before that change, in file-scope variables. */
#ifdef MAX_DECLS
static struct daemon dm;
#define decls dm.decls
#define ndecls dm.ndecls
#define list_max dm.list_max
#define LOAD_CONFIG(o) load_config(&dm, (o)->config)
#else
#define LOAD_CONFIG(o) load_config(o)
#endif

static void
reset(void)
{
	for (int i = 0; i < ndecls; i++)
		evk_gate_free(decls[i].refetch);
	memset(decls, 0, sizeof(decls));
	ndecls = 0;
	list_max = EVK_FOLD_LIST_MAX;
}

/* Whether a widget has a limit or refetch_window beyond what a long holds:
 * widgetd converted those without a check (undefined behaviour; issue 16
 * item 14, being fixed in widgetd.c). Skipped unless EVKIT_FUZZ_STRICT=1. */
static int
huge_number(const uint8_t *data, size_t size)
{
	cJSON *c = cJSON_ParseWithLength((const char *)data, size);
	const cJSON *w;
	int huge = 0;
	cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(c, "widgets")) {
		static const char *const names[] = { "limit", "refetch_window" };
		for (int i = 0; i < 2; i++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(w, names[i]);
			if (cJSON_IsNumber(v) && !(v->valuedouble > -1e15 && v->valuedouble < 1e15))
				huge = 1;
		}
	}
	cJSON_Delete(c);
	return huge;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct opts o = { 0 };

	if (size > 65536)
		return 0;
	const char *path = fuzz_file(data, size);
	o.config = path;
	if (!fuzz_strict() && huge_number(data, size))
		return 0;

	fuzz_begin();
	if (setjmp(fuzz_die_jmp)) {
		/* A gate being made when the die came is lost with it: only
		 * out of memory, which is not a refusal. */
		FUZZ_CHECK(fuzz_die_status == EVK_EX_DATAERR, "refused with status %d, not 65",
			   fuzz_die_status);
		fuzz_end();
		reset();
		return 0;
	}
	LOAD_CONFIG(&o);
	FUZZ_CHECK(list_max >= 1 && list_max <= 10000, "list_max %zu", list_max);
	for (int i = 0; i < ndecls; i++) {
		const struct decl *d = &decls[i];
		FUZZ_CHECK(evk_topic_valid(d->id, strlen(d->id)) && !strchr(d->id, ':'),
			   "widget id '%s' accepted", d->id);
		FUZZ_CHECK(evk_pattern_valid(d->pattern), "pattern '%s' accepted", d->pattern);
		FUZZ_CHECK(d->event[0] == '\0' || evk_event_name_valid(d->event, strlen(d->event)),
			   "event '%s' accepted", d->event);
		FUZZ_CHECK(d->limit >= 1 && d->window_ms >= 1, "limit %ld, window %lld", d->limit,
			   d->window_ms);
		FUZZ_CHECK((d->kind == K_KEEP_LIVE) == (d->refetch != NULL), "keep_live without gate");
		if (fuzz_strict())
			for (int j = 0; j < i; j++)
				FUZZ_CHECK(strcmp(decls[j].id, d->id) != 0, "duplicate id '%s' accepted",
					   d->id);
	}
	FUZZ_CHECK(fuzz_end() == 0, "an accepted config leaks cJSON blocks");
	reset();
	return 0;
}
