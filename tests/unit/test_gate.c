/* Keyed gates (throttle, debounce, latest) and output templates. */
#include "evkit/event.h"
#include "evkit/fmt.h"
#include "evkit/gate.h"

#include "check.h"

#include <string.h>

/* Records what a gate emits: the lines, joined by spaces. */
static char seen[4096];

static int
record(void *arg, const char *line, size_t len)
{
	(void)arg;
	if (seen[0])
		strcat(seen, " ");
	strncat(seen, line, len);
	return 0;
}

#define OFFER(g, key, seq, line, now) \
	evk_gate_offer(g, key, strlen(key), seq, line, strlen(line), now, record, NULL)

int
main(void)
{
	struct evk_gate *g;

	/* Throttle: first at once, the window's latest at its end, then quiet. */
	g = evk_gate_new(EVK_GATE_THROTTLE, 100, 16, 1 << 20);
	seen[0] = '\0';
	OFFER(g, "a", 1, "a1", 0);
	OFFER(g, "a", 2, "a2", 10);
	OFFER(g, "a", 3, "a3", 20);
	OFFER(g, "b", 4, "b4", 30);
	CHECK(strcmp(seen, "a1 b4") == 0, "leading edges: %s", seen);
	CHECK(evk_gate_next_due(g) == 100, "due %lld", evk_gate_next_due(g));
	evk_gate_tick(g, 99, record, NULL);
	CHECK(strcmp(seen, "a1 b4") == 0, "nothing before the window ends: %s", seen);
	evk_gate_tick(g, 100, record, NULL);
	CHECK(strcmp(seen, "a1 b4 a3") == 0, "trailing edge: %s", seen);
	CHECK(evk_gate_dropped(g) == 1, "a2 dropped: %llu",
	      (unsigned long long)evk_gate_dropped(g));
	OFFER(g, "a", 5, "a5", 150); /* inside a's second window */
	evk_gate_tick(g, 200, record, NULL);
	CHECK(strcmp(seen, "a1 b4 a3 a5") == 0, "second window: %s", seen);
	evk_gate_tick(g, 1000, record, NULL);
	CHECK(evk_gate_next_due(g) == -1 && evk_gate_pending(g) == 0, "idle keys forgotten");
	evk_gate_free(g);

	/* Forget: the held event is dropped, the next offer goes at once. */
	g = evk_gate_new(EVK_GATE_THROTTLE, 100, 16, 1 << 20);
	seen[0] = '\0';
	OFFER(g, "a", 1, "a1", 0);
	OFFER(g, "a", 2, "a2", 10);
	OFFER(g, "b", 3, "b3", 20);
	evk_gate_forget(g, "a", 1);
	evk_gate_forget(g, "zz", 2); /* unknown: nothing happens */
	CHECK(evk_gate_pending(g) == 0, "a2 dropped by forget");
	OFFER(g, "a", 4, "a4", 30);
	evk_gate_tick(g, 1000, record, NULL);
	CHECK(strcmp(seen, "a1 b3 a4") == 0, "forgotten key starts afresh: %s", seen);
	evk_gate_free(g);

	/* Debounce: only after quiet, the latest. */
	g = evk_gate_new(EVK_GATE_DEBOUNCE, 100, 16, 1 << 20);
	seen[0] = '\0';
	OFFER(g, "a", 1, "a1", 0);
	OFFER(g, "a", 2, "a2", 90);
	evk_gate_tick(g, 150, record, NULL);
	CHECK(seen[0] == '\0', "quiet not reached: %s", seen);
	evk_gate_tick(g, 190, record, NULL);
	CHECK(strcmp(seen, "a2") == 0, "debounced: %s", seen);
	evk_gate_free(g);

	/* Latest: held until flush, flushed in seq order. */
	g = evk_gate_new(EVK_GATE_LATEST, 0, 16, 1 << 20);
	seen[0] = '\0';
	OFFER(g, "x", 1, "x1", 0);
	OFFER(g, "y", 2, "y2", 0);
	OFFER(g, "x", 3, "x3", 0);
	evk_gate_tick(g, 1000000, record, NULL);
	CHECK(seen[0] == '\0', "latest waits for flush");
	evk_gate_flush(g, record, NULL);
	CHECK(strcmp(seen, "y2 x3") == 0, "newest per key, by seq: %s", seen);
	evk_gate_free(g);

	/* Bounds: a new key past max_keys releases the one due soonest. */
	g = evk_gate_new(EVK_GATE_DEBOUNCE, 100, 2, 1 << 20);
	seen[0] = '\0';
	OFFER(g, "a", 1, "a1", 0);
	OFFER(g, "b", 2, "b2", 1);
	OFFER(g, "c", 3, "c3", 2);
	CHECK(strcmp(seen, "a1") == 0, "evicted early, not lost: %s", seen);
	CHECK(evk_gate_pending(g) == 2, "two held");
	evk_gate_free(g);

	/* Templates. */
	const char *why;
	struct evk_fmt *f;
	CHECK(evk_fmt_new("%q", &why) == NULL, "unknown field");
	CHECK(evk_fmt_new("x%", &why) == NULL, "dangling %%");
	CHECK(evk_fmt_new("%{payload.a", &why) == NULL, "unclosed");
	CHECK(evk_fmt_new("%{pay}", &why) == NULL, "not payload");
	const char *line = "{\"seq\":9,\"ts\":\"2026-11-22T22:01:02.345678Z\",\"topic\":"
			   "\"a:b\",\"event\":\"e\",\"payload\":{\"s\":\"q\\\"\",\"l\":[true]}}";
	struct evk_event ev;
	CHECK(evk_event_scan(&ev, line, strlen(line)) == 0, "scan");
	f = evk_fmt_new("%s %t %e %{payload.s} %{payload.l.0} %{payload.l.9} %{payload} 100%% a\\tb", &why);
	CHECK(f != NULL, "template compiles");
	struct evk_buf out = EVK_BUF_INIT(0);
	if (f && evk_fmt_render(f, &ev, &out) == 0) {
		CHECK(out.len == strlen("9 a:b e q\\\" true  {\"s\":\"q\\\"\",\"l\":[true]} 100% a\tb") &&
			      memcmp(out.p, "9 a:b e q\\\" true  {\"s\":\"q\\\"\",\"l\":[true]} 100% a\tb",
				     out.len) == 0,
		      "rendered: %.*s", (int)out.len, out.p);
	}
	evk_fmt_free(f);
	evk_buf_release(&out);
	return check_done("test_gate");
}
