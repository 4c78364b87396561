/* The bus on NATS JetStream (lib/nats_impl.h): nats:// addresses, the
 * link to the servers, the stream and the errors it tells. */
#include "nats_impl.h"

/* ---- addresses ---- */

/* The address's /STREAM part at *pp into u->stream; *pp moves past it. */
static int
parse_stream(struct nurl *u, const char **pp, const char **why)
{
	const char *p = *pp + 1;
	size_t len = strcspn(p, "?");

	if (len == 0 || len > NATS_STREAM_NAME_MAX) {
		*why = "a stream name is 1-32 characters";
		return EVK_EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
		      (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '-')) {
			*why = "a stream name holds only A-Z a-z 0-9 _ -";
			return EVK_EINVAL;
		}
	memcpy(u->stream, p, len);
	u->stream[len] = '\0';
	*pp = p + len;
	return EVK_OK;
}

static int
parse_url(struct nurl *u, const char *url, const char **why)
{
	const char *p = url + sizeof(EVK_NATS_SCHEME) - 1;
	size_t at = 0;

	memset(u, 0, sizeof(*u));
	strcpy(u->stream, NATS_STREAM_DEFAULT);
	u->replicas = 1;
	if (strlen(url) >= EVK_URL_MAX) {
		*why = "address too long";
		return EVK_EINVAL;
	}
	/* Servers: HOST[:PORT] separated by commas, each as nats://HOST:PORT. */
	while (*p != '\0' && *p != '/' && *p != '?') {
		size_t len = strcspn(p, ",/?");
		const char *colon = memchr(p, ':', len);
		if (len == 0 || colon == p) {
			*why = "nats:// wants HOST:PORT[,HOST:PORT...]";
			return EVK_EINVAL;
		}
		if (colon) {
			char *end;
			long port = strtol(colon + 1, &end, 10);
			if (end != p + len || port <= 0 || port > 65535) {
				*why = "a nats:// server's port must be 1-65535";
				return EVK_EINVAL;
			}
		}
		for (size_t i = 0; i < len; i++)
			if (p[i] <= ' ' || p[i] == '@' || p[i] > '~') {
				*why = "a nats:// server must be HOST:PORT";
				return EVK_EINVAL;
			}
		if (u->n == NATS_SERVERS_MAX) {
			*why = "at most 16 servers in a nats:// address";
			return EVK_EINVAL;
		}
		u->servers[u->n++] = u->buf + at;
		at += (size_t)sprintf(u->buf + at, "nats://%.*s%s", (int)len, p,
				      colon ? "" : ":4222") + 1;
		p += len;
		if (*p == ',')
			p++;
	}
	if (u->n == 0) {
		*why = "nats:// wants at least one HOST:PORT";
		return EVK_EINVAL;
	}
	if (*p == '/' && parse_stream(u, &p, why) != EVK_OK)
		return EVK_EINVAL;
	if (*p == '?') {
		char *end;
		if (strncmp(p + 1, "replicas=", 9) != 0) {
			*why = "the only nats:// parameter is replicas=N";
			return EVK_EINVAL;
		}
		long r = strtol(p + 10, &end, 10);
		if (end == p + 10 || *end != '\0' || r < 1 || r > 5) {
			*why = "replicas must be 1-5";
			return EVK_EINVAL;
		}
		u->replicas = (int)r;
		u->replicas_given = true;
		p = end;
	}
	if (*p != '\0') {
		*why = "unexpected characters after the nats:// address";
		return EVK_EINVAL;
	}
	return EVK_OK;
}

int
evk_nats_url_check(const char *url, const char **why)
{
	struct nurl u;
	return parse_url(&u, url, why);
}

/* ---- connections ---- */

int
nats_err(natsStatus s)
{
	switch (s) {
	case NATS_OK: return EVK_OK;
	case NATS_NO_MEMORY: return EVK_ENOMEM;
	case NATS_TIMEOUT: return EVK_ETIMEDOUT;
	case NATS_NO_SERVER:
	case NATS_NO_RESPONDERS:
	case NATS_NOT_FOUND: return EVK_EUNAVAIL;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_STALE_CONNECTION:
	case NATS_INVALID_SUBSCRIPTION: return EVK_ECLOSED;
	case NATS_MAX_PAYLOAD: return EVK_ETOOLONG;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT: return EVK_EINVAL;
	default: return EVK_EIO;
	}
}

/* The library reports asynchronous errors here; lib/ never prints, and
 * every error that matters comes back through a call. */
static void
quiet_errors(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	(void)nc;
	(void)sub;
	(void)err;
	(void)arg;
}


static void
on_reconnected(natsConnection *nc, void *arg)
{
	struct link *l = arg;
	(void)nc;
	l->reconnected = true;
}

void
nats_link_close(struct link *l)
{
	if (l->js)
		jsCtx_Destroy(l->js);
	if (l->nc)
		natsConnection_Destroy(l->nc);
	l->js = NULL;
	l->nc = NULL;
}

/* Connects to the first server of the list that answers (in the order
 * given), with reconnects to the others (and to servers the cluster
 * announces) when it goes away. */
int
nats_link_open(struct link *l, const char *url, const jsOptions *jo)
{
	natsOptions *o = NULL;
	natsStatus s;
	const char *why;
	int rv;

	memset(l, 0, sizeof(*l));
	if ((rv = parse_url(&l->u, url, &why)) != EVK_OK)
		return rv;
	snprintf(l->url, sizeof(l->url), "%s", url);
	/* Each server of the list gets its share of NATS_CONNECT_ALL_MS, so
	 * that nothing listening anywhere is told within 5 s. */
	int per_server = NATS_CONNECT_ALL_MS / l->u.n;
	if (per_server > EVK_CONNECT_TIMEOUT_MS)
		per_server = EVK_CONNECT_TIMEOUT_MS;
	if ((s = natsOptions_Create(&o)) != NATS_OK)
		return nats_err(s);
	if ((s = natsOptions_SetServers(o, l->u.servers, l->u.n)) != NATS_OK ||
	    (s = natsOptions_SetNoRandomize(o, true)) != NATS_OK ||
	    (s = natsOptions_SetTimeout(o, per_server)) != NATS_OK ||
	    (s = natsOptions_SetMaxReconnect(o, NATS_RECONNECTS)) != NATS_OK ||
	    (s = natsOptions_SetReconnectWait(o, 250)) != NATS_OK ||
	    (s = natsOptions_SetPingInterval(o, 2000)) != NATS_OK ||
	    (s = natsOptions_SetMaxPingsOut(o, 3)) != NATS_OK ||
	    (s = natsOptions_SetMaxPendingMsgs(o, NATS_SUB_PENDING_MSGS)) != NATS_OK ||
	    (s = natsOptions_SetErrorHandler(o, quiet_errors, NULL)) != NATS_OK ||
	    (s = natsOptions_SetReconnectedCB(o, on_reconnected, l)) != NATS_OK ||
	    (s = natsOptions_SetName(o, "evkit")) != NATS_OK) {
		natsOptions_Destroy(o);
		return nats_err(s);
	}
	s = natsConnection_Connect(&l->nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK) {
		l->nc = NULL;
		return s == NATS_NO_MEMORY ? EVK_ENOMEM : EVK_EUNAVAIL;
	}
	if ((s = natsConnection_JetStream(&l->js, l->nc, (jsOptions *)jo)) != NATS_OK) {
		nats_link_close(l);
		return nats_err(s);
	}
	return EVK_OK;
}

/* The error of a JetStream API request, with evk_bus_why's sentence when
 * the user can act on it. */
static int
js_failed(const struct link *l, natsStatus s, jsErrCode jerr)
{
	const char *url = l->url, *stream = l->u.stream;

	if (s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr ||
	    jerr == JSNotEnabledForAccountErr) {
		evk_bus_set_why("JetStream is not enabled on the server at '%s' "
				"(nats-server runs it with -js)", url);
		return EVK_EUNAVAIL;
	}
	if (jerr == JSClusterNotAvailErr || jerr == JSClusterNotLeaderErr) {
		evk_bus_set_why("the JetStream cluster at '%s' has no quorum: no leader "
				"(a majority of its servers is down or cut off)", url);
		return EVK_EUNAVAIL;
	}
	if (s == NATS_TIMEOUT) {
		evk_bus_set_why("JetStream at '%s' did not answer within %d s: no quorum "
				"in its cluster, or an overloaded server",
				url, NATS_API_WAIT_MS / 1000);
		return EVK_EUNAVAIL;
	}
	if (jerr == JSStreamOfflineErr) {
		evk_bus_set_why("stream '%s' at '%s' is offline: no quorum of its "
				"replicas is up", stream, url);
		return EVK_EUNAVAIL;
	}
	if (jerr == JSClusterNoPeersErr || jerr == JSInsufficientResourcesErr) {
		evk_bus_set_why("cannot place stream '%s' with %d replica%s at '%s': %s",
				stream, l->u.replicas, l->u.replicas == 1 ? "" : "s", url,
				jerr == JSClusterNoPeersErr
					? "not as many servers of the cluster are up"
					: "its servers lack the storage");
		return EVK_EUNAVAIL;
	}
	if (jerr == JSStreamReplicasNotSupportedErr) {
		evk_bus_set_why("the server at '%s' is not in a cluster: replicas=%d "
				"needs a JetStream cluster of as many servers",
				url, l->u.replicas);
		return EVK_EINVAL;
	}
	if (jerr == JSStreamSubjectOverlapErr) {
		evk_bus_set_why("cannot create stream '%s' at '%s': another stream takes "
				"subjects overlapping evk.> (name that stream in the "
				"address: nats://HOST:PORT/STREAM)", stream, url);
		return EVK_EINVAL;
	}
	if (jerr != 0) {
		evk_bus_set_why("JetStream at '%s' refused stream '%s' (error %d: %s)",
				url, stream, (int)jerr, nats_GetLastError(NULL));
		return EVK_EIO;
	}
	return nats_err(s);
}

/* The error code alone, for what a publish or a consumer being made
 * again meets in a failover (EVK_EUNAVAIL: worth trying again). */
int
nats_js_err(natsStatus s, jsErrCode jerr)
{
	if (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT ||
	    jerr == JSNotEnabledForAccountErr || jerr == JSClusterNotAvailErr ||
	    jerr == JSClusterNoPeersErr || jerr == JSStreamReplicasNotSupportedErr ||
	    jerr == JSInsufficientResourcesErr || jerr == JSStreamOfflineErr ||
	    jerr == JSClusterNotLeaderErr)
		return EVK_EUNAVAIL;
	return nats_err(s);
}

/* True when one of the stream's subjects takes every evk.> subject. */
static bool
takes_evk(const jsStreamConfig *c)
{
	for (int i = 0; i < c->SubjectsLen; i++)
		if (c->Subjects[i] && (strcmp(c->Subjects[i], ">") == 0 ||
				       strcmp(c->Subjects[i], "*.>") == 0 ||
				       strcmp(c->Subjects[i], NATS_FILTER) == 0))
			return true;
	return false;
}

/* What differs in the stream's configuration from the one evkit makes, as
 * "; "-separated notes into out (empty when nothing does). */
void
nats_config_differs(const struct link *l, const jsStreamConfig *c, char *out, size_t n)
{
	size_t at = 0;
#define NOTE(...)                                                                 \
	do {                                                                      \
		if (at < n)                                                       \
			at += (size_t)snprintf(out + at, n - at, "%s", at ? "; " : ""); \
		if (at < n)                                                       \
			at += (size_t)snprintf(out + at, n - at, __VA_ARGS__);    \
	} while (0)
	out[0] = '\0';
	if (!takes_evk(c))
		NOTE("subjects %s%s (not evk.>)", c->SubjectsLen > 0 ? c->Subjects[0] : "none",
		     c->SubjectsLen > 1 ? ", ..." : "");
	if (c->Retention != js_LimitsPolicy)
		NOTE("%s retention (not limits)",
		     c->Retention == js_InterestPolicy ? "interest" : "work-queue");
	if (c->Storage != js_FileStorage)
		NOTE("memory storage (not file)");
	if (c->MaxMsgs != EVK_RETAIN_DEFAULT)
		NOTE("retains %lld events (not %d)", (long long)c->MaxMsgs, EVK_RETAIN_DEFAULT);
	if (c->MaxBytes > 0)
		NOTE("at most %lld bytes", (long long)c->MaxBytes);
	if (c->MaxAge > 0)
		NOTE("events expire after %lld s", (long long)(c->MaxAge / 1000000000));
	if (c->MaxMsgsPerSubject > 0)
		NOTE("at most %lld events per subject", (long long)c->MaxMsgsPerSubject);
	if (c->Discard != js_DiscardOld)
		NOTE("discards new events when full (not old)");
	if (c->Replicas != l->u.replicas && (l->u.replicas_given || l->u.replicas != 1))
		NOTE("%d replica%s (the address asks for %d)", (int)c->Replicas,
		     c->Replicas == 1 ? "" : "s", l->u.replicas);
#undef NOTE
}

/* Refuses a stream evkit cannot use as it is: one that does not take its
 * subjects, or one that deletes events before every subscriber and
 * replay had them. */
static int
usable(const struct link *l, const jsStreamInfo *si)
{
	const jsStreamConfig *c = si->Config;

	if (!takes_evk(c)) {
		evk_bus_set_why("stream '%s' at '%s' does not take evkit's subjects evk.> "
				"(it takes %s%s): name another stream in the address "
				"(nats://HOST:PORT/STREAM)", l->u.stream, l->url,
				c->SubjectsLen > 0 ? c->Subjects[0] : "none",
				c->SubjectsLen > 1 ? ", ..." : "");
		return EVK_EINVAL;
	}
	if (c->Retention != js_LimitsPolicy) {
		evk_bus_set_why("stream '%s' at '%s' has %s retention: evkit needs limits "
				"retention (events kept for replay and every subscriber)",
				l->u.stream, l->url,
				c->Retention == js_InterestPolicy ? "interest" : "work-queue");
		return EVK_EINVAL;
	}
	return EVK_OK;
}

/* True when the stream has a leader (or is not replicated). */
static bool
has_leader(const jsStreamInfo *si)
{
	return si->Cluster == NULL || (si->Cluster->Leader && si->Cluster->Leader[0]);
}

/* True when the stream has a leader and most of its replicas are online
 * (a leader cut off from the others believes it leads for a while). */
bool
nats_has_quorum(const jsStreamInfo *si)
{
	if (!has_leader(si))
		return false;
	if (si->Cluster == NULL)
		return true;
	int online = 1, total = 1 + si->Cluster->ReplicasLen;
	for (int i = 0; i < si->Cluster->ReplicasLen; i++) {
		/* Offline, or not heard from for a while (a node killed a
		 * moment ago is not known offline yet). */
		const jsPeerInfo *r = si->Cluster->Replicas[i];
		online += !r->Offline && r->Active < (int64_t)NATS_PEER_SILENT_MS * 1000000;
	}
	return 2 * online > total;
}

/* The stream's info, creating the stream when it is missing. */
int
nats_stream_info(struct link *l, jsStreamInfo **si, bool create)
{
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(si, l->js, l->u.stream, NULL, &jerr);

	if (s == NATS_OK)
		return EVK_OK;
	if (!(s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr))
		return js_failed(l, s, jerr);
	l->missing = true;
	if (!create)
		return EVK_EUNAVAIL;
	jsStreamConfig sc;
	const char *subjects[] = { NATS_FILTER };
	jsStreamConfig_Init(&sc);
	sc.Name = l->u.stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Retention = js_LimitsPolicy;
	sc.MaxMsgs = EVK_RETAIN_DEFAULT;
	sc.Discard = js_DiscardOld;
	sc.Storage = js_FileStorage;
	sc.Replicas = l->u.replicas;
	jerr = 0;
	s = js_AddStream(si, l->js, &sc, NULL, &jerr);
	if (s == NATS_OK)
		return EVK_OK;
	if (jerr == JSStreamNameExistErr) {
		/* Someone else made it meanwhile: theirs is used as it is. */
		jerr = 0;
		if ((s = js_GetStreamInfo(si, l->js, l->u.stream, NULL, &jerr)) == NATS_OK)
			return EVK_OK;
	}
	return js_failed(l, s, jerr);
}

/* The stream for a publisher or subscriber: made when missing, refused
 * when evkit cannot use it, and with a leader (waited for up to
 * NATS_LEADER_WAIT_MS: a replicated stream elects one after a failure). */
int
nats_stream_open(struct link *l, jsStreamInfo **si)
{
	long long until = evk_mono_ms() + NATS_LEADER_WAIT_MS;
	int rv;

	for (;;) {
		if ((rv = nats_stream_info(l, si, true)) != EVK_OK)
			return rv;
		if ((rv = usable(l, *si)) != EVK_OK) {
			jsStreamInfo_Destroy(*si);
			return rv;
		}
		if (has_leader(*si))
			return EVK_OK;
		int replicas = (int)(*si)->Config->Replicas;
		jsStreamInfo_Destroy(*si);
		*si = NULL;
		if (evk_mono_ms() >= until) {
			evk_bus_set_why("stream '%s' at '%s' has no leader: no quorum of its "
					"%d replicas is up (evbusd --status --bus URL lists "
					"them)", l->u.stream, l->url, replicas);
			return EVK_EUNAVAIL;
		}
		nats_Sleep(250);
	}
}

