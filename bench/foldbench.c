/* foldbench: events/s through the widget fold, in process.
 *
 *   foldbench N   folds N events of a 4-step workflow (step_started,
 *                 step_progress, progress_update, step_completed) after
 *                 its process_created, as evworker sends them, with
 *                 cJSON's blocks cached as in widgetd (evkit/jsonmem.h)
 *   foldbench N malloc
 *                 the same with cJSON on plain malloc (or whatever
 *                 allocator LD_PRELOAD puts there: mimalloc, jemalloc)
 *   foldbench N workflows
 *                 N events of ever new workflows, four each
 *                 (process_created, step_started, step_completed,
 *                 workflow_completed), each event's text made in the
 *                 timed loop: a long run, or a publisher of new workflow
 *                 ids, against the bound on workflow widgets */
#include "evkit/err.h"
#include "evkit/event.h"
#include "evkit/fold.h"
#include "evkit/jsonmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
ignore(void *arg, const char *id, enum evk_fold_change c)
{
	(void)arg;
	(void)id;
	(void)c;
}

/* foldbench N workflows: events/s of n events of n / 4 workflows. */
static int
workflows(long n)
{
	static const char *const kinds[4] = { "process_created", "step_started", "step_completed",
					      "workflow_completed" };
	char line[512];
	struct evk_event ev;
	cJSON *w = cJSON_CreateArray();
	const char *why;
	struct timespec a, b;
	if (w == NULL)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		snprintf(line, sizeof(line),
			 "{\"seq\":%ld,\"ts\":\"2026-11-24T10:00:00.000000Z\",\"topic\":\"process:p%ld\","
			 "\"event\":\"%s\",\"payload\":{\"process_id\":\"p%ld\",\"workflow_id\":\"wf%ld\","
			 "\"step\":\"s\",\"result\":{}}}",
			 i + 1, i / 4, kinds[i % 4], i / 4, i / 4);
		if (evk_event_scan(&ev, line, strlen(line)) != EVK_OK ||
		    evk_fold_apply(w, &ev, NULL, ignore, NULL, &why) != EVK_OK)
			return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("{\"events\":%ld,\"seconds\":%.3f,\"events_per_s\":%.0f,\"widgets\":%d}\n", n, s,
	       (double)n / s, cJSON_GetArraySize(w));
	cJSON_Delete(w);
	return 0;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	int cache = !(argc > 2 && strcmp(argv[2], "malloc") == 0);
	if (argc > 2 && strcmp(argv[2], "workflows") == 0) {
		evk_jsonmem_install();
		int rv = workflows(n);
		evk_jsonmem_release();
		return rv;
	}
	if (cache)
		evk_jsonmem_install(); /* as widgetd does */
	static const char *const kinds[4][2] = {
		{ "step_started", "\"step\":\"s%ld\",\"percentage\":%ld" },
		{ "step_progress", "\"step\":\"s%ld\",\"percentage\":%ld" },
		{ "progress_update", "\"step\":\"s%ld\",\"content\":\"at %ld\"" },
		{ "step_completed", "\"step\":\"s%ld\",\"percentage\":%ld,\"result\":{\"status\":\"success\"}" },
	};
	char (*lines)[512] = malloc(4000 * sizeof(*lines));
	struct evk_event *evs = malloc(4000 * sizeof(*evs));
	cJSON *w = cJSON_CreateArray();
	const char *why;
	if (!lines || !evs || !w)
		return 1;
	for (long i = 0; i < 4000; i++) {
		char fields[200];
		snprintf(fields, sizeof(fields), kinds[i % 4][1], i / 4, (i / 4) % 100);
		snprintf(lines[i], sizeof(lines[i]),
			 "{\"seq\":%ld,\"ts\":\"2026-11-24T10:00:00.000000Z\",\"topic\":\"process:p1\","
			 "\"event\":\"%s\",\"payload\":{\"process_id\":\"p1\",\"workflow_id\":\"wf\",%s}}",
			 i + 1, kinds[i % 4][0], fields);
		if (evk_event_scan(&evs[i], lines[i], strlen(lines[i])) != EVK_OK)
			return 1;
	}
	/* The workflow's first event, as evworker sends it. */
	static const char created[] =
		"{\"seq\":0,\"ts\":\"2026-11-24T10:00:00.000000Z\",\"topic\":\"workflow:wf\","
		"\"event\":\"process_created\",\"payload\":{\"process_id\":\"p1\",\"workflow_id\":\"wf\"}}";
	struct evk_event ev0;
	if (evk_event_scan(&ev0, created, sizeof(created) - 1) != EVK_OK ||
	    evk_fold_apply(w, &ev0, NULL, ignore, NULL, &why) != EVK_OK)
		return 1;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		if (evk_fold_apply(w, &evs[i % 4000], NULL, ignore, NULL, &why) != EVK_OK)
			return 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("{\"events\":%ld,\"seconds\":%.3f,\"events_per_s\":%.0f}\n", n, s, (double)n / s);
	cJSON_Delete(w);
	if (cache)
		evk_jsonmem_release();
	free(lines);
	free(evs);
	return 0;
}
