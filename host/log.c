/*
 * log.c - stderr logging.  Each line is formatted into one buffer and
 * written with a single write(2), so lines from the host and its workers
 * never interleave mid-line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static enum log_level max_level = LOG_INFO;
static char tag[32] = "cagehost";

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_set_level(enum log_level level)
{
	max_level = level;
}

enum log_level log_get_level(void)
{
	return max_level;
}

void log_set_tag(const char *new_tag)
{
	snprintf(tag, sizeof tag, "%s", new_tag);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	char when[32];
	va_list ap;
	int n;

	if (level > max_level)
		return;
	clock_format_iso(clock_wall_ms(), when, sizeof when);
	n = snprintf(line, sizeof line, "%s %s %s: ", when, tag, level_names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof line - 1)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return; /* nowhere left to report it */
}
