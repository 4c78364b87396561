/* evbusd --status: the running hub's figures as JSON. */
#include "evbusd.h"

#include "evkit/proto.h"

#include <cjson/cJSON.h>
#include <unistd.h>

/* "armed" (restarts the hub if it stops answering), "waiting" (no probe
 * has succeeded yet) or "off". */
static const char *
hub_watchdog_state(const struct hub *h)
{
	return h->watchdog == NULL ? "off" : evk_watchdog_armed(h->watchdog) ? "armed" : "waiting";
}

void
hub_status(struct hub *h, nng_msg *req)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o && cJSON_AddStringToObject(o, "version", EVK_VERSION) &&
	    cJSON_AddStringToObject(o, "bus", h->url) &&
	    cJSON_AddStringToObject(o, "store", h->store ? h->store : ":memory:") &&
	    cJSON_AddNumberToObject(o, "pid", (double)getpid()) &&
	    cJSON_AddNumberToObject(o, "uptime_s", (double)(time(NULL) - h->started)) &&
	    cJSON_AddNumberToObject(o, "head_seq", (double)h->head) &&
	    cJSON_AddNumberToObject(o, "oldest_seq", (double)h->oldest) &&
	    cJSON_AddNumberToObject(o, "retain", (double)h->retain) &&
	    cJSON_AddNumberToObject(o, "subscribers", (double)pipes_count(&h->subscribers)) &&
	    cJSON_AddNumberToObject(o, "clients", (double)pipes_count(&h->clients)) &&
	    cJSON_AddNumberToObject(o, "events_in", (double)h->events_in) &&
	    cJSON_AddNumberToObject(o, "frames_in", (double)h->frames_in) &&
	    cJSON_AddNumberToObject(o, "events_out", (double)h->events_out) &&
	    cJSON_AddNumberToObject(o, "rejected_frames", (double)h->rejected_frames) &&
	    cJSON_AddNumberToObject(o, "refill_requests", (double)h->replay_requests) &&
	    cJSON_AddNumberToObject(o, "refilled_events", (double)h->replayed_events) &&
	    cJSON_AddNumberToObject(o, "duplicates_dropped", (double)h->duplicates) &&
	    cJSON_AddNumberToObject(o, "checkpoint_failures",
				    (double)evk_checkpointer_failures(h->ckpt, NULL, 0)) &&
	    cJSON_AddStringToObject(o, "watchdog", hub_watchdog_state(h)))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	reply_text(h, req, text ? EVK_MSG_STATUS : EVK_MSG_FAILURE,
		   text ? 0 : EVK_FAIL_TEMP, text ? text : "out of memory");
	cJSON_free(text);
}
