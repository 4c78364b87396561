/* casectl: the commands other than create and ingest. */
#include "casectl.h"

/* A usage error for a command's arguments, in one line (evk_usage_die):
 * fewer than min names what is missing, more than max the first extra. */
void
casectl_args(int argc, char **argv, int min, int max, const char *missing)
{
	if (argc < min)
		evk_usage_die("missing %s", missing);
	if (argc > max)
		evk_usage_die("unexpected argument '%s'", argv[max]);
}

int
cmd_get(struct ctx *c, int argc, char **argv)
{
	casectl_args(argc, argv, 1, 1, "ID");
	if (!case_with(c, argv[0], print_case, NULL))
		evk_die(EVK_EX_FAIL, "no case '%s'", argv[0]);
	outbox_flush(c, true);
	return 0;
}

/* query's callback: one case appended to c->out, as a JSON line or as
 * an element of the array. */
struct listing {
	struct ctx *c;
	bool array;
	long n;
};

static int
list_case(void *arg, const struct evk_case *v)
{
	struct listing *l = arg;
	struct evk_buf *out = &l->c->out;
	if ((l->array && evk_buf_addch(out, l->n++ == 0 ? '[' : ',')) ||
	    evk_case_write(out, v) != EVK_OK || (!l->array && evk_buf_addch(out, '\n')))
		evk_die(EVK_EX_FAIL, "out of memory");
	return EVK_OK;
}

/* Runs the list query, newest change first unless sorted, and leaves
 * the cases in c->out: as JSON lines, or as one JSON array when array. */
static void
query(struct ctx *c, bool array)
{
	struct evk_case_filter f = { .agency = c->agency, .offender = c->offender,
				     .since = c->since, .sort = c->sort, .limit = c->limit };
	struct listing l = { .c = c, .array = array };
	evk_buf_reset(&c->out);
	int rv = evk_cases_list(&c->db, &f, list_case, &l);
	if (rv == EVK_ENOMEM)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rv != EVK_OK)
		db_die(c, "cannot list cases");
	if (array && evk_buf_add(&c->out, l.n ? "]\n" : "[]\n", l.n ? 2 : 3))
		evk_die(EVK_EX_FAIL, "out of memory");
}

int
cmd_list(struct ctx *c, int argc, char **argv)
{
	casectl_args(argc, argv, 0, 0, "");
	query(c, false);
	put_text(&c->out);
	outbox_flush(c, true);
	return 0;
}

static int update(struct ctx *c, int argc, char **argv, bool sync);

int
cmd_update(struct ctx *c, int argc, char **argv)
{
	casectl_args(argc, argv, 2, 2, argc ? "JSON after ID" : "ID and JSON");
	return update(c, argc, argv, false);
}

/* casectl sync ID: update without changes, stamping last_synced_at. */
int
cmd_sync(struct ctx *c, int argc, char **argv)
{
	casectl_args(argc, argv, 1, 1, "ID");
	return update(c, argc, argv, true);
}

/* Changes (argv[1]) or syncs (sync) case argv[0] and announces it. */
static int
update(struct ctx *c, int argc, char **argv, bool sync)
{
	char why[512] = "";
	struct input in;

	(void)argc;
	require(c, ROLE_EDITOR, "update cases");
	if (!sync && nul_escape(argv[1], strlen(argv[1])))
		evk_die(EVK_EX_DATAERR, "%s", NUL_ESCAPE_WHY);
	cJSON *o = sync ? cJSON_CreateObject() : cJSON_Parse(argv[1]);
	if (o == NULL)
		evk_die(EVK_EX_DATAERR, "the changes are not valid JSON");
	if (!parse_input(o, &in, true, why, sizeof(why)))
		evk_die(EVK_EX_DATAERR, "%s", why);
	begin(c);
	apply_fields(c, argv[0], &in, sync);
	/* No row, no change: exiting leaves the transaction uncommitted. */
	if (!announce(c, argv[0], sync ? "sync" : "update", sync ? "synced" : "updated", true))
		evk_die(EVK_EX_FAIL, "no case '%s'", argv[0]);
	commit(c, false);
	put_text(&c->out);
	cJSON_Delete(o);
	fflush(stdout);
	outbox_flush(c, false);
	return 0;
}

int
cmd_destroy(struct ctx *c, int argc, char **argv)
{
	casectl_args(argc, argv, 1, 1, "ID");
	begin(c);
	if (!announce(c, argv[0], "destroy", "destroyed", true))
		evk_die(EVK_EX_FAIL, "no case '%s'", argv[0]);
	struct evk_q *q = prepare(c, "DELETE FROM cases WHERE id = ?");
	bind_text(c, q, 1, argv[0]);
	step_done(c, q, "cannot delete the case");
	commit(c, false);
	put_text(&c->out);
	fflush(stdout);
	outbox_flush(c, false);
	return 0;
}

int
cmd_outbox(struct ctx *c, int argc, char **argv)
{
	casectl_args(argc, argv, 1, 1, "list or flush");
	if (strcmp(argv[0], "list") == 0) {
		require(c, ROLE_VIEWER, "read the outbox");
		long long damaged;
		int rv = evk_outbox_each(c->outbox, print_line, NULL, &damaged);
		if (damaged)
			evk_die(EVK_EX_DATAERR, "outbox row %lld is damaged (neither event lines"
				" nor notes)", (long long)damaged);
		outbox_check(c, rv);
		return 0;
	}
	if (strcmp(argv[0], "flush") == 0) {
		require(c, ROLE_EDITOR, "flush the outbox");
		long pending = outbox_flush(c, false);
		return c->damaged_row ? EVK_EX_DATAERR : pending ? EVK_EX_UNAVAILABLE : 0;
	}
	evk_usage_die("unknown outbox command '%s' (list, flush)", argv[0]);
}

int
cmd_user(struct ctx *c, int argc, char **argv)
{
	const char *role = c->new_role;
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		struct evk_q *q = prepare(c, "SELECT name, role FROM users ORDER BY name");
		while (step_row(c, q, "cannot read the users")) {
			evk_buf_reset(&c->out);
			if (evk_buf_add(&c->out, "{\"name\":", 8) ||
			    evk_case_add_text(&c->out, evk_q_text(q, 0)) ||
			    evk_buf_add(&c->out, ",\"role\":", 8) ||
			    evk_case_add_text(&c->out, evk_q_text(q, 1)) ||
			    evk_buf_add(&c->out, "}\n", 2))
				evk_die(EVK_EX_FAIL, "out of memory");
			put_text(&c->out);
		}
		done(q);
		return 0;
	}
	if (argc == 0)
		evk_usage_die("missing add or list");
	if (strcmp(argv[0], "add") != 0 && strcmp(argv[0], "list") != 0)
		evk_usage_die("unknown user command '%s' (add, list)", argv[0]);
	casectl_args(argc, argv, 2, strcmp(argv[0], "add") == 0 ? 2 : 1, "NAME after add");
	if (role == NULL)
		evk_usage_die("missing --role for '%s' (admin, editor or viewer)", argv[1]);
	if (strcmp(role, "admin") && strcmp(role, "editor") && strcmp(role, "viewer"))
		evk_die(EVK_EX_USAGE, "unknown role '%s' (admin, editor, viewer)", role);
	struct evk_q *q = prepare(c, "INSERT INTO users (name, role) VALUES (?, ?)"
				     " ON CONFLICT (name) DO UPDATE SET role = excluded.role");
	bind_text(c, q, 1, argv[1]);
	bind_text(c, q, 2, role);
	step_done(c, q, "cannot add the user");
	return 0;
}

int
cmd_init(struct ctx *c, int argc, char **argv)
{
	const char *admin = c->admin;

	(void)argc;
	(void)argv;
	if (admin == NULL)
		evk_die(EVK_EX_USAGE, "init needs --admin NAME");
	struct evk_q *q = prepare(c, "SELECT count(*) FROM users");
	int users = step_row(c, q, "cannot read the users") ? evk_q_int(q, 0) : 0;
	done(q);
	if (users > 0)
		require(c, ROLE_ADMIN, "add an admin to an existing database");
	q = prepare(c, "INSERT INTO users (name, role) VALUES (?, 'admin')"
		       " ON CONFLICT (name) DO NOTHING");
	bind_text(c, q, 1, admin);
	step_done(c, q, "cannot add the admin");
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !cJSON_AddStringToObject(o, "db", c->db.path) ||
	    !cJSON_AddStringToObject(o, "admin", admin))
		evk_die(EVK_EX_FAIL, "out of memory");
	print_json(o);
	cJSON_Delete(o);
	return 0;
}

/* watch: the list, then again after case events, at most once per window,
 * the last change always included (a throttle with a trailing edge). */
struct watch {
	struct ctx *c;
	long printed;
};

static int
rerun(void *arg, const char *line, size_t len)
{
	struct watch *w = arg;
	(void)line;
	(void)len;
	query(w->c, true);
	put_text(&w->c->out);
	if (fflush(stdout) != 0)
		return -1;
	w->printed++;
	return w->c->count && w->printed >= w->c->count ? -1 : 0;
}

int
cmd_watch(struct ctx *c, int argc, char **argv)
{
	struct evk_sub *sub;
	struct evk_event ev;
	struct watch w = { .c = c };
	int rv;

	casectl_args(argc, argv, 0, 0, "");
	/* Subscribe first: no change after the first result is missed. */
	if ((rv = evk_sub_open(&sub, c->url, EVK_SINCE_LIVE)) != EVK_OK)
		evk_die_hub(c->url, rv);
	struct evk_gate *g = evk_gate_new(EVK_GATE_THROTTLE, c->refetch_ms, 1, 4096);
	if (g == NULL)
		evk_die(EVK_EX_FAIL, "out of memory");
	if (rerun(&w, NULL, 0) != 0)
		goto out;
	while (!stopping) {
		long long now = evk_mono_ms(), due = evk_gate_next_due(g);
		if (evk_gate_tick(g, now, rerun, &w) != 0)
			break;
		int wait = due < 0 ? 200 : due > now ? (int)(due - now) : 0;
		if (wait > 200)
			wait = 200;
		rv = evk_sub_next(sub, &ev, wait);
		if (rv == EVK_ETIMEDOUT || rv == EVK_EGAP)
			continue;
		if (rv != EVK_OK) {
			evk_warn("lost the hub at '%s': %s", c->url, evk_strerror(rv));
			break;
		}
		if (!evk_pattern_match("case:*", ev.topic, ev.topic_len))
			continue;
		if (evk_gate_offer(g, "case", 4, ev.seq, "x", 1, evk_mono_ms(), rerun, &w) != 0)
			break;
	}
out:
	evk_gate_free(g);
	evk_sub_close(sub);
	return 0;
}
