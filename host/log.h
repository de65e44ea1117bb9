/*
 * log.h - the host's log: one line per event on stderr, with a UTC
 * timestamp and a level.  Used by the host process and by worker
 * processes (which tag their lines with their pid).
 */
#ifndef CAGEHOST_LOG_H
#define CAGEHOST_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARNING = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Lines above this level are dropped.  Default LOG_INFO. */
void log_set_level(enum log_level level);

enum log_level log_get_level(void);

/* Sets the tag printed after the timestamp ("cagehost", "worker 1234"). */
void log_set_tag(const char *tag);

/* Where lines go: stderr unless set (a worker keeps the original stderr
 * for its own lines: see worker_output.h). */
void log_set_fd(int fd);

__attribute__((format(printf, 2, 3)))
void log_msg(enum log_level level, const char *fmt, ...);

/*
 * A budget of lines per second for one kind of message, so that a storm
 * (a full disk makes Berkeley DB complain about every page) cannot bury
 * the log or fill the disk further.  Shared by threads.  kind names the
 * messages in the line that counts those left out ("lines printed by
 * plugins").
 */
struct log_budget {
	pthread_mutex_t lock;
	int per_second;
	const char *kind;
	int64_t second;		/* monotonic, the second being counted */
	int used;
	uint64_t dropped;	/* not logged since the last line that was */
	enum log_level level;	/* of the last one */
	struct log_budget *next;	/* in the list log_budgets_report() reads */
	bool listed;
};
#define LOG_BUDGET(per_second, kind) \
	{ PTHREAD_MUTEX_INITIALIZER, (per_second), (kind), 0, 0, 0, LOG_INFO, NULL, false }

/* log_msg() while b's budget for this second lasts; past it the line is
 * counted, and the next line logged says how many were left out (or
 * log_budgets_report(), once the storm is over). */
__attribute__((format(printf, 3, 4)))
void log_msg_budget(struct log_budget *b, enum log_level level, const char *fmt, ...);

/* For each budget with lines left out in a second now past (or at all,
 * when all is true: at exit): a line saying how many.  The host calls it
 * every second. */
void log_budgets_report(bool all);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
