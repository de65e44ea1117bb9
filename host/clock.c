/*
 * clock.c - wall and monotonic time, and the fixed-width ISO 8601 form used
 * in records, keys, logs and the HTTP API.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

int64_t clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec clock_mono_deadline(int64_t ms)
{
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_sec += ms / 1000;
	at.tv_nsec += (ms % 1000) * 1000000;
	if (at.tv_nsec >= 1000000000) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000;
	}
	return at;
}

/*
 * Formatting is on every record write's path: the date and time of the two
 * seconds formatted last are kept (per thread), so most calls only write
 * the milliseconds - also when records alternate between two times, as a
 * call's next attempt and its enqueue time do.
 */
char *clock_format_iso(int64_t ms, char *out, size_t size)
{
	static __thread struct {
		int64_t secs;
		char text[64];	/* roomy: tm fields are ints */
	} cache[2] = { { -1, "" }, { -1, "" } };
	static __thread int last;	/* the entry used last */
	int64_t secs;
	int milli, e;

	if (ms < 0)
		ms = 0;
	secs = ms / 1000;
	milli = (int)(ms % 1000);
	if (cache[last].secs == secs) {
		e = last;
	} else if (cache[!last].secs == secs) {
		e = last = !last;
	} else {
		time_t t = (time_t)secs;
		struct tm tm;

		e = last = !last;	/* replaces the one used less recently */
		gmtime_r(&t, &tm);
		snprintf(cache[e].text, sizeof cache[e].text, "%04d-%02d-%02dT%02d:%02d:%02d.000Z",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec);
		cache[e].secs = secs;
	}
	if (size < CLOCK_ISO_LEN + 1) {
		if (size)
			out[0] = '\0';
		return out;
	}
	memcpy(out, cache[e].text, CLOCK_ISO_LEN + 1);
	out[20] = (char)('0' + milli / 100);
	out[21] = (char)('0' + milli / 10 % 10);
	out[22] = (char)('0' + milli % 10);
	return out;
}

static int digits(const char *p, int n, int *value)
{
	*value = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		*value = *value * 10 + (p[i] - '0');
	}
	return 0;
}

int clock_parse_iso(const char *text, size_t len, int64_t *ms)
{
	int year, mon, day, hour, min, sec, milli;
	struct tm tm;

	if (len != CLOCK_ISO_LEN || text[4] != '-' || text[7] != '-' ||
	    text[10] != 'T' || text[13] != ':' || text[16] != ':' ||
	    text[19] != '.' || text[23] != 'Z')
		return -1;
	if (digits(text, 4, &year) || digits(text + 5, 2, &mon) ||
	    digits(text + 8, 2, &day) || digits(text + 11, 2, &hour) ||
	    digits(text + 14, 2, &min) || digits(text + 17, 2, &sec) ||
	    digits(text + 20, 3, &milli))
		return -1;
	/* only what clock_format_iso writes: 1970 to 9999, no leap second */
	if (year < 1970 || year > 9998 || mon < 1 || mon > 12 || day < 1 || day > 31 ||
	    hour > 23 || min > 59 || sec > 59)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	*ms = (int64_t)timegm(&tm) * 1000 + milli;
	return 0;
}
