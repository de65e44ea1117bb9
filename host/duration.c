/*
 * duration.c - parsing and printing of config durations (see duration.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"

static const struct {
	const char *suffix;
	int64_t ms;
} units[] = {
	{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 },
	{ "s", 1000 }, { "ms", 1 },
};

/* 100 years: large enough for any setting, small enough never to overflow. */
#define DURATION_MAX_MS ((int64_t)100 * 365 * 86400000)

int duration_parse(const char *text, int64_t *ms, char *err, size_t err_size)
{
	const char *p = text;
	int64_t number = 0;

	if (*p < '0' || *p > '9') {
		snprintf(err, err_size, "'%s' is not a duration (like 250ms, 60s, 5m, 1h, 3d)", text);
		return -1;
	}
	while (*p >= '0' && *p <= '9') {
		number = number * 10 + (*p - '0');
		if (number > DURATION_MAX_MS) {
			snprintf(err, err_size, "duration '%s' is too large", text);
			return -1;
		}
		p++;
	}
	if (*p == '\0') {
		snprintf(err, err_size, "duration '%s' has no unit (ms, s, m, h, d)", text);
		return -1;
	}
	if (*p == '.' || *p == ',') {
		snprintf(err, err_size, "duration '%s' is not a whole number: use a smaller unit "
			 "(1500ms, not 1.5s)", text);
		return -1;
	}
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(p, units[i].suffix) == 0) {
			if (number > DURATION_MAX_MS / units[i].ms) {
				snprintf(err, err_size, "duration '%s' is too large", text);
				return -1;
			}
			*ms = number * units[i].ms;
			return 0;
		}
	}
	snprintf(err, err_size, "duration '%s' has an unknown unit '%s' (use ms, s, m, h, d)", text, p);
	return -1;
}

char *duration_format(int64_t ms, char *out, size_t size)
{
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (ms != 0 && ms % units[i].ms == 0) {
			snprintf(out, size, "%" PRId64 "%s", ms / units[i].ms, units[i].suffix);
			return out;
		}
	}
	snprintf(out, size, "%" PRId64 "ms", ms);
	return out;
}
