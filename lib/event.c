/* The event API: RFC 3339 times, scanning a stored event line, UUIDv7,
 * clocks. Checking a line is lib/event_check.c; making one, lib/event_make.c. */
#include "evkit/event.h"
#include "event_impl.h"

#include "evkit/err.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Writes v as exactly width decimal digits. */
static void
put_digits(char *out, long v, int width)
{
	for (int i = width - 1; i >= 0; i--, v /= 10)
		out[i] = (char)('0' + v % 10);
}

void
evk_ts_now(char *ts)
{
	/* The date and time to the second, written again only when the
	 * second changes: evpub stamps each event it reads. */
	static _Thread_local time_t last = -1;
	static _Thread_local char second[EVK_TS_LEN + 1];
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != last) {
		gmtime_r(&now.tv_sec, &tm);
		memcpy(second, "0000-00-00T00:00:00.000000Z", EVK_TS_LEN + 1);
		put_digits(second, tm.tm_year + 1900, 4);
		put_digits(second + 5, tm.tm_mon + 1, 2);
		put_digits(second + 8, tm.tm_mday, 2);
		put_digits(second + 11, tm.tm_hour, 2);
		put_digits(second + 14, tm.tm_min, 2);
		put_digits(second + 17, tm.tm_sec, 2);
		last = now.tv_sec;
	}
	memcpy(ts, second, EVK_TS_LEN + 1);
	put_digits(ts + 20, now.tv_nsec / 1000, 6);
}

static int
digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int
num(const char *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

int
evk_ts_normalise(const char *ts, size_t n, char *out)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	char frac[7] = "000000";
	size_t i = 19;

	if (n < 20 || !digits(ts, 4) || ts[4] != '-' || !digits(ts + 5, 2) ||
	    ts[7] != '-' || !digits(ts + 8, 2) || (ts[10] != 'T' && ts[10] != 't') ||
	    !digits(ts + 11, 2) || ts[13] != ':' || !digits(ts + 14, 2) ||
	    ts[16] != ':' || !digits(ts + 17, 2))
		return EVK_EINVAL;
	int mon = num(ts + 5, 2), day = num(ts + 8, 2);
	if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] ||
	    num(ts + 11, 2) > 23 || num(ts + 14, 2) > 59 || num(ts + 17, 2) > 60)
		return EVK_EINVAL;
	if (ts[i] == '.') {
		size_t k = 0;
		for (i++; i < n && ts[i] >= '0' && ts[i] <= '9'; i++)
			if (k < 6)
				frac[k++] = ts[i];
		if (k == 0)
			return EVK_EINVAL;
	}
	if (!((n - i == 1 && (ts[i] == 'Z' || ts[i] == 'z')) ||
	      (n - i == 6 && (memcmp(ts + i, "+00:00", 6) == 0 ||
			      memcmp(ts + i, "-00:00", 6) == 0))))
		return EVK_EINVAL;
	memcpy(out, ts, 19);
	out[10] = 'T';
	out[19] = '.';
	memcpy(out + 20, frac, 6);
	out[26] = 'Z';
	out[27] = '\0';
	return EVK_OK;
}

/* Checks that *p starts with the literal lit and steps past it. */
static int
expect(const char **p, const char *end, const char *lit, size_t n)
{
	if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
		return 0;
	*p += n;
	return 1;
}

int
evk_event_scan(struct evk_event *ev, const char *line, size_t len)
{
	const char *p = line, *end = line + len;
	uint64_t seq = 0;

	if (!expect(&p, end, "{\"seq\":", 7))
		return EVK_EINVAL;
	const char *digits_start = p;
	while (p < end && *p >= '0' && *p <= '9' && p - digits_start < 20)
		seq = seq * 10 + (uint64_t)(*p++ - '0');
	if (p == digits_start || !expect(&p, end, ",", 1) ||
	    evk_event_scan_fields(ev, p, end) != EVK_OK)
		return EVK_EINVAL;
	ev->seq = seq;
	ev->line = line;
	ev->line_len = len;
	return EVK_OK;
}

/* Declared in event_impl.h. */
int
evk_event_scan_fields(struct evk_event *ev, const char *p, const char *end)
{
	if (!expect(&p, end, "\"ts\":\"", 6) || end - p < EVK_TS_LEN)
		return EVK_EINVAL;
	ev->ts = p;
	p += EVK_TS_LEN;
	if (!expect(&p, end, "\",\"topic\":\"", 11))
		return EVK_EINVAL;
	/* The topic: printable ASCII, where only '"' and '\' are escaped. */
	const char *t = p;
	size_t tl = 0;
	int escaped = 0;
	while (p < end && *p != '"') {
		if (*p == '\\') {
			if (end - p < 2 || (p[1] != '"' && p[1] != '\\' && p[1] != '/'))
				return EVK_EINVAL;
			escaped = 1;
			p++;
		}
		if (tl >= EVK_TOPIC_MAX)
			return EVK_EINVAL;
		ev->topic_buf[tl++] = *p++;
	}
	if (p == end)
		return EVK_EINVAL;
	ev->topic_buf[tl] = '\0';
	ev->topic = escaped ? ev->topic_buf : t;
	ev->topic_len = tl;
	p++;
	if (!expect(&p, end, ",\"event\":\"", 10))
		return EVK_EINVAL;
	ev->event = p;
	while (p < end && *p != '"')
		p++;
	ev->event_len = (size_t)(p - ev->event);
	if (!expect(&p, end, "\",\"payload\":", 12) || end - p < 2 ||
	    end[-1] != '}')
		return EVK_EINVAL;
	ev->payload = p;
	ev->payload_len = (size_t)(end - 1 - p);
	return EVK_OK;
}

/* Random bytes from a small pool, refilled by getrandom: one system call
 * per 16 UUIDs instead of one each. Not thread-safe, like the callers. */
static int
random_bytes(unsigned char *out, size_t n)
{
	static unsigned char pool[256];
	static size_t left;
	while (n > 0) {
		if (left == 0) {
			ssize_t got = getrandom(pool, sizeof(pool), 0);
			if (got < 0 && errno != EINTR)
				return EVK_EIO;
			left = got > 0 ? (size_t)got : 0;
			continue;
		}
		size_t k = n < left ? n : left;
		memcpy(out, pool + sizeof(pool) - left, k);
		left -= k;
		out += k;
		n -= k;
	}
	return EVK_OK;
}

int
evk_uuid7(char out[37])
{
	/* RFC 9562 version 7: 48 bits of Unix milliseconds, then a 12-bit
	 * counter that orders the ids of one millisecond (it starts at a
	 * random value below 2048 each new millisecond; past 4095 the
	 * millisecond is borrowed from the future), then 62 random bits. */
	static uint64_t last_ms;
	static unsigned counter;
	unsigned char b[16];
	struct timespec t;

	if (random_bytes(b, sizeof(b)) != EVK_OK)
		return EVK_EIO;
	clock_gettime(CLOCK_REALTIME, &t);
	uint64_t ms = (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
	if (ms > last_ms) {
		last_ms = ms;
		counter = ((unsigned)b[6] << 8 | b[7]) & 0x7ff;
	} else if (++counter > 0xfff) {
		last_ms++;
		counter = 0;
	}
	ms = last_ms;
	for (int i = 5; i >= 0; i--, ms >>= 8)
		b[i] = (unsigned char)(ms & 0xff);
	b[6] = (unsigned char)(0x70 | (counter >> 8));
	b[7] = (unsigned char)(counter & 0xff);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = '\0';
	return EVK_OK;
}

static long long
clock_ms(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

long long
evk_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

long long
evk_wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}
