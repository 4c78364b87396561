/* The bus on NATS JetStream (lib/nats_impl.h): evk_nats_bus_status. */
#include "nats_impl.h"

/* ---- status ---- */

/* Prints o (and deletes it) into *json, malloc'ed as the caller frees it:
 * cJSON's own allocation may be a program's cache (evkit/jsonmem.h). */
static int
print_status(cJSON *o, bool ok, char **json)
{
	char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (text == NULL)
		return EVK_ENOMEM;
	*json = strdup(text);
	cJSON_free(text);
	return *json ? EVK_OK : EVK_ENOMEM;
}

/* A stream made elsewhere is used as it is: what differs from the
 * configuration evkit makes, one note each (none for evkit's), as o's
 * "differs" array. false when out of memory. */
static bool
add_differs(cJSON *o, const struct link *l, const jsStreamInfo *si)
{
	char notes[1024];
	cJSON *differs = cJSON_AddArrayToObject(o, "differs");
	bool ok = differs != NULL;

	nats_config_differs(l, si->Config, notes, sizeof(notes));
	for (char *n = notes, *end; ok && *n; n = end) {
		end = strstr(n, "; ");
		size_t len = end ? (size_t)(end - n) : strlen(n);
		char one[256];
		snprintf(one, sizeof(one), "%.*s", (int)len, n);
		cJSON *str = cJSON_CreateString(one);
		ok = str != NULL && cJSON_AddItemToArray(differs, str);
		end = end ? end + 2 : n + len;
	}
	return ok;
}

/* The stream's figures as JSON: head and retained range, replicas, the
 * cluster's leader and peers. */
int
evk_nats_bus_status(const char *url, char **json)
{
	struct link l;
	jsStreamInfo *si = NULL;
	jsOptions jo;
	int rv;

	jsOptions_Init(&jo);
	jo.Wait = NATS_API_WAIT_MS;
	if ((rv = nats_link_open(&l, url, &jo)) != EVK_OK)
		return rv;
	if ((rv = nats_stream_info(&l, &si, false)) != EVK_OK && !l.missing) {
		nats_link_close(&l);
		return rv;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON *c = NULL;
	bool ok = o != NULL;
	if (l.missing) {
		/* Made by the first publisher or subscriber: nothing yet. */
		ok = ok && cJSON_AddStringToObject(o, "backend", "nats") &&
		     cJSON_AddStringToObject(o, "bus", url) &&
		     cJSON_AddStringToObject(o, "stream", l.u.stream) &&
		     cJSON_AddBoolToObject(o, "exists", false) &&
		     cJSON_AddNumberToObject(o, "head_seq", 0) &&
		     cJSON_AddNumberToObject(o, "oldest_seq", 0) &&
		     cJSON_AddNumberToObject(o, "retained", 0);
		nats_link_close(&l);
		return print_status(o, ok, json);
	}
	/* The names of evbusd --status where the figure is the same. */
	ok = ok && cJSON_AddStringToObject(o, "backend", "nats") &&
	     cJSON_AddStringToObject(o, "bus", url) &&
	     cJSON_AddStringToObject(o, "stream", l.u.stream) &&
	     cJSON_AddBoolToObject(o, "exists", true) &&
	     cJSON_AddNumberToObject(o, "head_seq", (double)si->State.LastSeq) &&
	     cJSON_AddNumberToObject(o, "oldest_seq", (double)si->State.FirstSeq) &&
	     cJSON_AddNumberToObject(o, "retained", (double)si->State.Msgs) &&
	     cJSON_AddNumberToObject(o, "bytes", (double)si->State.Bytes) &&
	     cJSON_AddNumberToObject(o, "retain", (double)si->Config->MaxMsgs) &&
	     cJSON_AddNumberToObject(o, "subscribers", (double)si->State.Consumers) &&
	     cJSON_AddStringToObject(o, "storage", si->Config->Storage == js_FileStorage
							   ? "file"
							   : "memory") &&
	     cJSON_AddNumberToObject(o, "replicas", (double)si->Config->Replicas);
	ok = ok && add_differs(o, &l, si);
	if (ok && si->Cluster) {
		cJSON *peers;
		ok = (c = cJSON_AddObjectToObject(o, "cluster")) != NULL &&
		     cJSON_AddStringToObject(c, "name", si->Cluster->Name ? si->Cluster->Name : "") &&
		     cJSON_AddStringToObject(c, "leader",
					     si->Cluster->Leader ? si->Cluster->Leader : "") &&
		     cJSON_AddBoolToObject(c, "quorum", nats_has_quorum(si)) &&
		     (peers = cJSON_AddArrayToObject(c, "replicas")) != NULL;
		for (int i = 0; ok && i < si->Cluster->ReplicasLen; i++) {
			const jsPeerInfo *pi = si->Cluster->Replicas[i];
			cJSON *r = cJSON_CreateObject();
			ok = r != NULL && cJSON_AddItemToArray(peers, r) &&
			     cJSON_AddStringToObject(r, "name", pi->Name ? pi->Name : "") &&
			     cJSON_AddBoolToObject(r, "current", pi->Current) &&
			     cJSON_AddBoolToObject(r, "offline", pi->Offline) &&
			     cJSON_AddNumberToObject(r, "lag", (double)pi->Lag);
		}
	}
	jsStreamInfo_Destroy(si);
	nats_link_close(&l);
	return print_status(o, ok, json);
}
