/* A JSON-lines reader: bounded line length, line numbers, NUL detection. */
#ifndef EVKIT_LINES_H
#define EVKIT_LINES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum evk_line_status {
	EVK_LINE_OK = 0,   /* *line holds one line, without its '\n' */
	EVK_LINE_EOF,      /* no more input */
	EVK_LINE_TOOLONG,  /* a line over max_line was skipped */
	EVK_LINE_NUL,      /* a line holding a NUL byte (given, to report) */
	EVK_LINE_ERR,      /* read failed; errno says why */
};

struct evk_lines {
	int fd;
	char *buf;
	size_t cap;
	size_t start; /* first unread byte */
	size_t end;   /* one past the last buffered byte */
	size_t scan;  /* bytes from start known to hold no '\n' */
	size_t max_line;
	unsigned long lineno; /* number of the line last returned */
	bool eof;
	/* Set (by the caller, after init) and nonzero: no more reads; one a
	 * signal interrupts is not retried. evk_lines_next then returns
	 * EVK_LINE_ERR with errno EINTR. How another thread stops a reader
	 * blocked on its input: set the flag, then signal the thread. */
	const atomic_int *cancel;
};

/* Reads from fd (not owned). 0 or EVK_ENOMEM. */
int evk_lines_init(struct evk_lines *r, int fd, size_t max_line);
void evk_lines_release(struct evk_lines *r);

/* The next line. On EVK_LINE_OK and EVK_LINE_NUL, *line points into the
 * reader's buffer (NUL-terminated at *len) until the next call. Blocks
 * only when no complete line is buffered. */
int evk_lines_next(struct evk_lines *r, char **line, size_t *len);

/* True when evk_lines_next can return without reading: a whole line is
 * buffered, or the input has ended. */
bool evk_lines_ready(struct evk_lines *r);

/* Waits up to timeout_ms (-1: forever) for input; 1 readable, 0 not. */
int evk_lines_wait(struct evk_lines *r, int timeout_ms);

#endif
