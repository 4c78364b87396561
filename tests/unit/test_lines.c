/* The JSON-lines reader: numbering, the size limit, NUL bytes, last line. */
#include "evkit/lines.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Feeds text through a file and collects (status, line) pairs. */
static int
read_all(const char *text, size_t n, size_t max, int *status, char lines[][64],
	 unsigned long *numbers, int cap)
{
	int count = 0;
	struct evk_lines r;
	FILE *f = tmpfile();

	if (f == NULL || fwrite(text, 1, n, f) != n || fflush(f) != 0)
		return -1;
	rewind(f);
	evk_lines_init(&r, fileno(f), max);
	for (;;) {
		char *line;
		size_t len;
		int st = evk_lines_next(&r, &line, &len);
		if (st == EVK_LINE_EOF || count == cap)
			break;
		status[count] = st;
		numbers[count] = r.lineno;
		lines[count][0] = '\0';
		if (st == EVK_LINE_OK)
			snprintf(lines[count], 64, "%s", line);
		count++;
	}
	evk_lines_release(&r);
	fclose(f);
	return count;
}

int
main(void)
{
	int st[16];
	char lines[16][64];
	unsigned long num[16];

	int n = read_all("a\nbb\n\nccc", 9, 100, st, lines, num, 16);
	CHECK(n == 4, "four lines, got %d", n);
	CHECK(strcmp(lines[0], "a") == 0 && strcmp(lines[1], "bb") == 0 &&
		      strcmp(lines[2], "") == 0 && strcmp(lines[3], "ccc") == 0,
	      "contents, last line without newline");
	CHECK(num[3] == 4, "numbered from 1");

	n = read_all("ok\n0123456789ABCDEF\nfine\r\n", 25, 10, st, lines, num, 16);
	CHECK(n == 3, "three results, got %d", n);
	CHECK(st[1] == EVK_LINE_TOOLONG && num[1] == 2, "line 2 too long");
	CHECK(st[2] == EVK_LINE_OK && strcmp(lines[2], "fine") == 0 && num[2] == 3,
	      "reader goes on after a long line; CR stripped");

	n = read_all("a\0b\nc\n", 6, 100, st, lines, num, 16);
	CHECK(n == 2 && st[0] == EVK_LINE_NUL && st[1] == EVK_LINE_OK, "NUL reported");

	/* A long line spanning many reads is skipped whole. */
	size_t big = 300000;
	char *text = malloc(big + 8);
	memset(text, 'x', big);
	memcpy(text + big, "\nyes\n", 5);
	n = read_all(text, big + 5, 1000, st, lines, num, 16);
	free(text);
	CHECK(n == 2 && st[0] == EVK_LINE_TOOLONG && strcmp(lines[1], "yes") == 0,
	      "big line skipped, next kept");
	return check_done("test_lines");
}
