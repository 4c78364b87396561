/* casectl create and ingest: cases from JSON lines, read on a thread of
 * their own, written in batched transactions. */
#include "casectl.h"

/* ---- JSON-lines input (create, ingest) ---- */

enum upsert { UP_CREATE_ONLY, UP_INGEST };

/* The progress line of a long ingest on a terminal: lines read and what
 * became of them, redrawn in place; cleared before any other message. */
struct progress {
	bool tty, shown;
	long long start, next;
};

static void
progress_clear(struct progress *pg)
{
	if (pg->shown)
		fputs("\r\033[K", stderr);
	pg->shown = false;
}

static void
progress_draw(struct progress *pg, unsigned long lines, long created, long synced, long bad)
{
	long long now = evk_mono_ms();
	if (!pg->tty || now < pg->next)
		return;
	pg->next = now + PROGRESS_EVERY_MS;
	fprintf(stderr, "\r\033[Kcasectl: %lu lines: %ld created, %ld synced, %ld rejected",
		lines, created, synced, bad);
	pg->shown = true;
}

/* ---- ingest input: read and parsed on a thread of its own ----
 *
 * The reader thread turns input lines into entries (the input's fields,
 * or why the line is refused) in chunks, whose texts are copied into the
 * chunk's arena; the writer takes the chunks in turn. Two chunks: one
 * filled while the other is written. */
#define CHUNK_LINES 512
#define CHUNK_BYTES (256u << 10)

#define INPUT_TEXTS 6

/* The text fields of an input, to move them into a chunk's arena and back. */
static void
input_texts(struct input *in, const char **t[INPUT_TEXTS])
{
	t[0] = &in->agency;
	t[1] = &in->reference;
	t[2] = &in->off_name;
	t[3] = &in->off_postcode;
	t[4] = &in->date;
	t[5] = &in->result;
}

struct entry {
	unsigned long lineno;
	struct input in;           /* its texts NULL here: they are in the arena */
	size_t text[INPUT_TEXTS];  /* their offsets in the arena, or NO_TEXT */
	size_t why;                /* the refused line's reason, or NO_TEXT */
};

struct chunk {
	struct evk_buf arena;
	struct entry e[CHUNK_LINES];
	size_t n;
	int end, err; /* EVK_LINE_EOF or EVK_LINE_ERR (errno) after the last entry */
	bool ready;   /* filled, for the writer */
};

struct reader {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC */
	struct evk_lines r;
	size_t max_line;
	bool stop, done;
	atomic_int cancel; /* stop reading now (r.cancel) */
	struct chunk chunk[2];
};

/* Fills k with the next lines; hands it over early rather than wait for
 * input with some lines in it. Stopped (reader_halt), it ends at once. */
static void
fill_chunk(struct reader *rd, struct chunk *k)
{
	char *text, why[512];
	size_t len;

	evk_buf_reset(&k->arena);
	k->n = 0;
	k->end = 0;
	while (k->n < CHUNK_LINES && k->arena.len < CHUNK_BYTES && !atomic_load(&rd->cancel)) {
		if (k->n > 0 && !evk_lines_ready(&rd->r))
			break;
		int s = evk_lines_next(&rd->r, &text, &len);
		if (s == EVK_LINE_ERR && atomic_load(&rd->cancel))
			break; /* stopped: the writer takes what came before */
		if (s == EVK_LINE_EOF || s == EVK_LINE_ERR) {
			k->end = s;
			k->err = errno;
			break;
		}
		if (s == EVK_LINE_OK && len == 0)
			continue;
		struct entry *e = &k->e[k->n++];
		struct input in;
		cJSON *o = NULL;
		why[0] = '\0';
		e->lineno = rd->r.lineno;
		if (s == EVK_LINE_TOOLONG)
			snprintf(why, sizeof(why), "line longer than %zu bytes", rd->max_line);
		else if (s == EVK_LINE_NUL)
			snprintf(why, sizeof(why), "NUL byte in line");
		else if (nul_escape(text, len))
			snprintf(why, sizeof(why), "%s", NUL_ESCAPE_WHY);
		else if ((o = cJSON_ParseWithLength(text, len)) == NULL)
			snprintf(why, sizeof(why), "invalid JSON");
		e->why = NO_TEXT;
		if (why[0] == '\0' && parse_input(o, &in, false, why, sizeof(why))) {
			const char **tx[INPUT_TEXTS];
			input_texts(&in, tx);
			for (int t = 0; t < INPUT_TEXTS; t++) {
				e->text[t] = keep_text(&k->arena, *tx[t]);
				*tx[t] = NULL; /* they point into o */
			}
			e->in = in;
		} else {
			e->why = keep_text(&k->arena, why);
		}
		cJSON_Delete(o);
	}
}

static void *
reader_run(void *arg)
{
	struct reader *rd = arg;
	sigset_t urgent;

	/* The one thread SIGURG is for: it cuts a read short (reader_halt). */
	sigemptyset(&urgent);
	sigaddset(&urgent, SIGURG);
	pthread_sigmask(SIG_UNBLOCK, &urgent, NULL);
	for (int i = 0;; i ^= 1) {
		struct chunk *k = &rd->chunk[i];
		pthread_mutex_lock(&rd->mu);
		while (k->ready && !rd->stop)
			pthread_cond_wait(&rd->cv, &rd->mu);
		bool stop = rd->stop;
		pthread_mutex_unlock(&rd->mu);
		if (stop)
			break;
		fill_chunk(rd, k);
		pthread_mutex_lock(&rd->mu);
		k->ready = true;
		pthread_cond_broadcast(&rd->cv);
		pthread_mutex_unlock(&rd->mu);
		if (k->end || atomic_load(&rd->cancel))
			break;
	}
	pthread_mutex_lock(&rd->mu);
	rd->done = true;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
	return NULL;
}

/* The CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait. */
static struct timespec
deadline(int ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

/* Waits up to ms for chunk k to be filled; whether it is. */
static bool
chunk_wait(struct reader *rd, struct chunk *k, int ms)
{
	struct timespec until = deadline(ms);
	pthread_mutex_lock(&rd->mu);
	while (!k->ready && pthread_cond_timedwait(&rd->cv, &rd->mu, &until) != ETIMEDOUT)
		;
	bool ready = k->ready;
	pthread_mutex_unlock(&rd->mu);
	return ready;
}

static void
chunk_done(struct reader *rd, struct chunk *k)
{
	pthread_mutex_lock(&rd->mu);
	k->ready = false;
	pthread_cond_broadcast(&rd->cv);
	pthread_mutex_unlock(&rd->mu);
}

static struct reader *
reader_start(int fd, size_t max_line)
{
	struct reader *rd = calloc(1, sizeof(*rd));
	if (rd == NULL || evk_lines_init(&rd->r, fd, max_line) != EVK_OK)
		evk_die(EVK_EX_FAIL, "out of memory");
	rd->max_line = max_line;
	rd->r.cancel = &rd->cancel;
	for (int i = 0; i < 2; i++)
		rd->chunk[i].arena = (struct evk_buf)EVK_BUF_INIT(0);
	pthread_condattr_t attr;
	if (pthread_mutex_init(&rd->mu, NULL) != 0 || pthread_condattr_init(&attr) != 0 ||
	    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&rd->cv, &attr) != 0 ||
	    pthread_create(&rd->thread, NULL, reader_run, rd) != 0)
		evk_die(EVK_EX_FAIL, "cannot start the input thread");
	pthread_condattr_destroy(&attr);
	return rd;
}

/* Stops the reader thread, also when it waits for input that may never
 * come: its read is cut short by SIGURG (caught by on_urgent, blocked in
 * every other thread) until it is done. The chunks it filled stay, to be
 * taken. */
static void
reader_halt(struct reader *rd)
{
	pthread_mutex_lock(&rd->mu);
	rd->stop = true;
	atomic_store(&rd->cancel, 1);
	pthread_cond_broadcast(&rd->cv);
	while (!rd->done) {
		/* Again and again: a signal that lands just before the read
		 * starts does not interrupt it. */
		pthread_kill(rd->thread, SIGURG);
		struct timespec until = deadline(10);
		pthread_cond_timedwait(&rd->cv, &rd->mu, &until);
	}
	pthread_mutex_unlock(&rd->mu);
	pthread_join(rd->thread, NULL);
}

static void
reader_free(struct reader *rd)
{
	evk_lines_release(&rd->r);
	for (int i = 0; i < 2; i++)
		evk_buf_release(&rd->chunk[i].arena);
	pthread_cond_destroy(&rd->cv);
	pthread_mutex_destroy(&rd->mu);
	free(rd);
}

/* What read_cases keeps across chunks. */
struct intake {
	enum upsert mode;
	long *created, *synced, *bad;
	int n_txn;            /* cases in the open transaction */
	unsigned long lineno; /* of the line last taken */
	bool stop;            /* --strict met a bad line */
	struct progress pg;
	struct run run;       /* ingest: new cases waiting for their insert */
};

/* create: writes case in and prints it, or says in why that its
 * reference is taken. */
static void
create_one(struct ctx *c, struct intake *t, const struct input *in, char *why, size_t wl)
{
	const struct agency *ag = agency_get(c, in->agency);
	char id[37];
	struct evk_case v;
	find_case(c, ag->id, in->reference, id);
	if (id[0] == '\0' && create_case(c, ag, in, id, &v)) {
		(*t->created)++;
		print_case(c, &v, NULL);
	} else {
		snprintf(why, wl, "case %s of %s exists (id %s)", in->reference, in->agency, id);
	}
}

/* Writes the cases of chunk k (those of an ingest's last run too, as its
 * texts are the chunk's); returns how its input ended (0: more to come). */
static int
take_chunk(struct ctx *c, struct intake *t, struct chunk *k)
{
	char why[512];
	for (size_t i = 0; i < k->n && !t->stop; i++) {
		const struct entry *e = &k->e[i];
		t->lineno = e->lineno;
		if ((t->lineno & 255) == 0)
			progress_draw(&t->pg, t->lineno, *t->created, *t->synced, *t->bad);
		why[0] = '\0';
		if (e->why != NO_TEXT) {
			snprintf(why, sizeof(why), "%s", kept_text(&k->arena, e->why));
		} else {
			struct input in = e->in;
			const char **tx[INPUT_TEXTS];
			input_texts(&in, tx);
			for (int n = 0; n < INPUT_TEXTS; n++)
				*tx[n] = kept_text(&k->arena, e->text[n]);
			if (!c->in_txn) {
				begin(c);
				c->in_txn = true;
			}
			t->n_txn++;
			/* ingest finds out on insert, a run at a time, whether
			 * a case is new (the common case) or synced; create
			 * refuses a taken reference before it writes anything
			 * (an offender included). */
			if (t->mode == UP_INGEST)
				run_add(c, &t->run, &in);
			else
				create_one(c, t, &in, why, sizeof(why));
		}
		bool full = t->n_txn >= c->txn_cases || c->batch.len >= BATCH_BYTES;
		if (t->run.n == INSERT_RUN || full)
			run_flush(c, &t->run, t->created, t->synced);
		if (why[0]) {
			progress_clear(&t->pg);
			evk_warn("%s:%lu: %s", c->input_name, t->lineno, why);
			(*t->bad)++;
			t->stop = c->strict;
		}
		if (c->in_txn && (t->n_txn >= c->txn_cases || c->batch.len >= BATCH_BYTES)) {
			commit(c, true);
			t->n_txn = 0;
		}
	}
	run_flush(c, &t->run, t->created, t->synced);
	return t->stop ? 0 : k->end;
}

static int
read_cases(struct ctx *c, enum upsert mode, long *created, long *synced, long *bad)
{
	struct intake t = {
		.mode = mode, .created = created, .synced = synced, .bad = bad,
		.pg = { .tty = mode == UP_INGEST && isatty(STDERR_FILENO) == 1,
			.start = evk_mono_ms() },
	};
	t.run.arena = (struct evk_buf)EVK_BUF_INIT(0);
	struct reader *rd = reader_start(c->input_fd, c->max_line);
	int end = 0, err = 0, j = 0;

	t.pg.next = t.pg.start + PROGRESS_AFTER_MS;
	while (!end && !t.stop && !stopping) {
		struct chunk *k = &rd->chunk[j];
		/* A producer that pauses (a scraper between pages) sees what it
		 * sent committed and announced then, not a batch later. While
		 * waiting, the progress line stays current and a signal stops
		 * the reading. */
		if (!chunk_wait(rd, k, c->in_txn ? INGEST_IDLE_MS : PROGRESS_EVERY_MS)) {
			if (c->in_txn) {
				commit(c, false);
				t.n_txn = 0;
			}
			progress_draw(&t.pg, t.lineno, *created, *synced, *bad);
			continue;
		}
		end = take_chunk(c, &t, k);
		err = k->err;
		chunk_done(rd, k);
		j ^= 1;
	}
	reader_halt(rd);
	/* Stopped by a signal: what the reader had parsed is taken too (at
	 * most its two chunks, in order); the rest of the input is not. */
	for (int n = 0; n < 2 && !end && !t.stop && rd->chunk[j].ready; n++, j ^= 1) {
		end = take_chunk(c, &t, &rd->chunk[j]);
		err = rd->chunk[j].err;
	}
	reader_free(rd);
	evk_buf_release(&t.run.arena);
	progress_clear(&t.pg);
	if (stopping && end != EVK_LINE_EOF && !t.stop)
		c->interrupted = stopping;
	/* What was taken is kept, also when the input failed after it. */
	if (c->in_txn)
		commit(c, false);
	if (end == EVK_LINE_ERR)
		evk_die(EVK_EX_IOERR, "%s: read error after line %lu: %s (the cases before it "
			"are stored and announced)", c->input_name, t.lineno, strerror(err));
	return 0;
}

/* Reads cases from stdin in batched transactions, delivering their
 * notifications as it goes, with checkpoints off the writer's path. */
static void
ingest(struct ctx *c, enum upsert mode, long *created, long *synced, long *bad)
{
	const char *why;
	struct evk_checkpointer *ck = NULL;
	if (evk_db_dialect(&c->db) == EVK_DB_SQLITE) {
		ck = evk_checkpointer_start(c->db.sq, c->db.path, &why);
		/* Room for a whole batch in the page cache: pages spilled
		 * before the commit would be written to the WAL twice. */
		exec(c, "PRAGMA cache_size=-32768");
	}
	evk_outbox_live_start(c->outbox);
	read_cases(c, mode, created, synced, bad);
	evk_outbox_live_stop(c->outbox);
	evk_checkpointer_stop(ck);
}

/* ---- commands ---- */

int
cmd_create(struct ctx *c, int argc, char **argv)
{
	long created = 0, synced = 0, bad = 0;
	casectl_args(argc, argv, 0, 1, "");
	if (argc == 1 && strcmp(argv[0], "-") == 0)
		argc = 0; /* JSON lines on stdin */
	if (argc == 1) {
		char why[512] = "";
		struct input in;
		if (nul_escape(argv[0], strlen(argv[0])))
			evk_die(EVK_EX_DATAERR, "%s", NUL_ESCAPE_WHY);
		cJSON *o = cJSON_Parse(argv[0]);
		if (o == NULL)
			evk_die(EVK_EX_DATAERR, "the case is not valid JSON");
		if (!parse_input(o, &in, false, why, sizeof(why)))
			evk_die(EVK_EX_DATAERR, "%s", why);
		begin(c);
		const struct agency *ag = agency_get(c, in.agency);
		char id[37];
		find_case(c, ag->id, in.reference, id);
		if (id[0])
			evk_die(EVK_EX_DATAERR, "case %s of %s exists (id %s)", in.reference,
				in.agency, id);
		struct evk_case v;
		if (!create_case(c, ag, &in, id, &v))
			evk_die(EVK_EX_FAIL, "case %s of %s appeared while being created",
				in.reference, in.agency);
		commit(c, false);
		print_case(c, &v, NULL);
		cJSON_Delete(o);
	} else {
		ingest(c, UP_CREATE_ONLY, &created, &synced, &bad);
	}
	fflush(stdout);
	outbox_flush(c, false);
	return c->interrupted ? 128 + c->interrupted : bad ? EVK_EX_DATAERR : 0;
}

int
cmd_ingest(struct ctx *c, int argc, char **argv)
{
	long created = 0, synced = 0, bad = 0;
	casectl_args(argc, argv, 0, 1, "");
	if (argc == 1 && strcmp(argv[0], "-") != 0) {
		c->input_name = argv[0];
		if ((c->input_fd = open(argv[0], O_RDONLY | O_CLOEXEC)) < 0)
			evk_die(EVK_EX_IOERR, "cannot open '%s': %s", argv[0], strerror(errno));
	}
	ingest(c, UP_INGEST, &created, &synced, &bad);
	if (c->input_fd != STDIN_FILENO)
		close(c->input_fd);
	fprintf(stderr, "casectl: ingested %ld: %ld created, %ld synced, %ld rejected%s\n",
		created + synced, created, synced, bad,
		c->interrupted ? " (interrupted: the rest of the input was not read)" : "");
	outbox_flush(c, false);
	return c->interrupted ? 128 + c->interrupted : bad ? EVK_EX_DATAERR : 0;
}
