/*
 * log.c - stderr logging.  Each line is formatted into one buffer and
 * written with a single write(2), so lines from the host and its workers
 * never interleave mid-line.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static enum log_level max_level = LOG_INFO;
static char tag[32] = "cagehost";
static int out_fd = STDERR_FILENO;

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

void log_set_fd(int fd)
{
	out_fd = fd;
}

static void log_line(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
	char line[2048];
	char when[32];
	int n;

	clock_format_iso(clock_wall_ms(), when, sizeof when);
	n = snprintf(line, sizeof line, "%s %s %s: ", when, tag, level_names[level]);
	n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	if (n < (int)sizeof line - 1)
		n += snprintf(line + n, sizeof line - (size_t)n, "%s", suffix);
	if (n >= (int)sizeof line - 1)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(out_fd, line, (size_t)n) < 0)
		return; /* nowhere left to report it */
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	log_line(level, "", fmt, ap);
	va_end(ap);
}

/* The budgets used so far, for log_budgets_report(). */
static pthread_mutex_t budgets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_budget *budgets;

void log_msg_budget(struct log_budget *b, enum log_level level, const char *fmt, ...)
{
	int64_t second = clock_mono_ms() / 1000;
	uint64_t dropped = 0;
	char suffix[96] = "";
	va_list ap;
	bool logs, list;

	if (level > max_level)
		return;
	pthread_mutex_lock(&b->lock);
	if (second != b->second) {
		b->second = second;
		b->used = 0;
	}
	logs = b->used < b->per_second;
	if (logs) {
		b->used++;
		dropped = b->dropped;
		b->dropped = 0;
	} else {
		b->dropped++;
		b->level = level;
	}
	list = !b->listed;
	b->listed = true;
	pthread_mutex_unlock(&b->lock);
	if (list) {
		pthread_mutex_lock(&budgets_lock);
		b->next = budgets;
		budgets = b;
		pthread_mutex_unlock(&budgets_lock);
	}
	if (!logs)
		return;
	if (dropped)
		snprintf(suffix, sizeof suffix, " (and %llu more like it not logged: over %d a second)",
			 (unsigned long long)dropped, b->per_second);
	va_start(ap, fmt);
	log_line(level, suffix, fmt, ap);
	va_end(ap);
}

void log_budgets_report(bool all)
{
	int64_t second = clock_mono_ms() / 1000;

	pthread_mutex_lock(&budgets_lock);
	for (struct log_budget *b = budgets; b; b = b->next) {
		uint64_t dropped = 0;
		enum log_level level;

		pthread_mutex_lock(&b->lock);
		if (b->dropped && (all || second != b->second)) {
			dropped = b->dropped;
			b->dropped = 0;
		}
		level = b->level;
		pthread_mutex_unlock(&b->lock);
		if (dropped)
			log_msg(level, "%llu more %s were not logged (over %d a second)",
				(unsigned long long)dropped, b->kind, b->per_second);
	}
	pthread_mutex_unlock(&budgets_lock);
}
