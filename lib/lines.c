#include "evkit/lines.h"

#include "evkit/err.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)

int
evk_lines_init(struct evk_lines *r, int fd, size_t max_line)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->max_line = max_line;
	r->cap = max_line + 2 + READ_CHUNK;
	r->buf = malloc(r->cap);
	return r->buf ? EVK_OK : EVK_ENOMEM;
}

void
evk_lines_release(struct evk_lines *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Finds the next '\n' among the buffered bytes, remembering how far it
 * looked so that a long line is scanned once. */
static char *
find_newline(struct evk_lines *r)
{
	char *nl = memchr(r->buf + r->start + r->scan, '\n',
			  r->end - r->start - r->scan);
	r->scan = nl ? 0 : r->end - r->start;
	return nl;
}

bool
evk_lines_ready(struct evk_lines *r)
{
	if (r->eof)
		return true;
	return memchr(r->buf + r->start + r->scan, '\n',
		      r->end - r->start - r->scan) != NULL;
}

int
evk_lines_wait(struct evk_lines *r, int timeout_ms)
{
	struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
	if (evk_lines_ready(r))
		return 1;
	int n = poll(&pfd, 1, timeout_ms);
	return n > 0 ? 1 : 0;
}

/* Reads more input after moving buffered bytes to the front. Returns
 * bytes read, 0 at end of input, -1 on error. */
static ssize_t
fill(struct evk_lines *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	size_t room = r->cap - 1 - r->end;
	if (room > READ_CHUNK)
		room = READ_CHUNK;
	for (;;) {
		if (r->cancel && atomic_load(r->cancel)) {
			errno = EINTR;
			return -1;
		}
		ssize_t n = read(r->fd, r->buf + r->end, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			r->end += (size_t)n;
		return n;
	}
}

/* Discards input up to and including the next '\n' (or the end). */
static int
skip_line(struct evk_lines *r)
{
	for (;;) {
		char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
		if (nl) {
			r->start = (size_t)(nl - r->buf) + 1;
			r->scan = 0;
			return EVK_LINE_TOOLONG;
		}
		r->start = r->end = r->scan = 0;
		ssize_t n = fill(r);
		if (n < 0)
			return EVK_LINE_ERR;
		if (n == 0) {
			r->eof = true;
			return EVK_LINE_TOOLONG;
		}
	}
}

int
evk_lines_next(struct evk_lines *r, char **line, size_t *len)
{
	for (;;) {
		char *nl = find_newline(r);
		size_t n;

		if (nl == NULL && r->end - r->start > r->max_line) {
			r->lineno++;
			return skip_line(r);
		}
		if (nl == NULL && r->eof) {
			if (r->end == r->start)
				return EVK_LINE_EOF;
			nl = r->buf + r->end; /* last line without '\n' */
		}
		if (nl == NULL) {
			ssize_t got = fill(r);
			if (got < 0)
				return EVK_LINE_ERR;
			if (got == 0)
				r->eof = true;
			continue;
		}
		*line = r->buf + r->start;
		n = (size_t)(nl - *line);
		r->start += n + (nl < r->buf + r->end ? 1 : 0);
		r->scan = 0;
		r->lineno++;
		if (n > r->max_line)
			return EVK_LINE_TOOLONG;
		if (n > 0 && (*line)[n - 1] == '\r')
			n--;
		(*line)[n] = '\0';
		*len = n;
		return memchr(*line, '\0', n) ? EVK_LINE_NUL : EVK_LINE_OK;
	}
}
