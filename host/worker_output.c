/*
 * worker_output.c - plugins' stdout and stderr, a line at a time into the
 * log, named after the call that printed them (see worker_output.h).
 *
 * Every read of the pipe happens under one lock: by the thread when the
 * pipe is readable during a job, and by the worker after each job, which
 * drains it before the next job is named.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "record.h"
#include "worker_output.h"

#define LINE_MAX_BYTES 4096
#define THREAD_STACK (64 << 10)
#define PRINTED_PER_SECOND 100	/* lines a worker logs; more are counted */

static struct {
	pthread_mutex_t lock;
	int read_fd;			/* -1: not started */
	char running[512];		/* "module@version call ID", or "" */
	char line[LINE_MAX_BYTES];	/* a line not ended yet */
	size_t line_len;
} out = { PTHREAD_MUTEX_INITIALIZER, -1, "", "", 0 };

/* Logs the line gathered so far (under the lock). */
static void emit_line(void)
{
	char clean[LINE_MAX_BYTES + 1];

	static struct log_budget budget = LOG_BUDGET(PRINTED_PER_SECOND);

	out.line[out.line_len] = '\0';
	record_clean_text(clean, sizeof clean, out.line);
	log_msg_budget(&budget, LOG_INFO, "%s: printed: %s",
		       out.running[0] ? out.running : "between calls", clean);
	out.line_len = 0;
}

/* Reads what the pipe holds (under the lock).  False once every writer
 * has closed it. */
static bool drain(void)
{
	char buf[8192];

	for (;;) {
		ssize_t n = read(out.read_fd, buf, sizeof buf);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		if (n == 0) {
			if (out.line_len)
				emit_line();
			return false;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				emit_line();
				continue;
			}
			out.line[out.line_len++] = buf[i];
			if (out.line_len == sizeof out.line - 1)
				emit_line();	/* too long: cut */
		}
	}
}

/* Reads the pipe while jobs run, so that a job printing more than the
 * pipe holds does not block. */
static void *read_output(void *arg)
{
	struct pollfd p = { out.read_fd, POLLIN, 0 };
	bool open = true;

	(void)arg;
	while (open) {
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&out.lock);
		open = drain();
		pthread_mutex_unlock(&out.lock);
	}
	return NULL;
}

void worker_output_start(void)
{
	int fds[2], log_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
	pthread_attr_t attr;
	pthread_t thread;

	if (log_fd < 0 || pipe2(fds, O_CLOEXEC) < 0) {
		log_warning("plugin output goes to the log unnamed: %s", strerror(errno));
		if (log_fd >= 0)
			close(log_fd);
		return;
	}
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fflush(stdout);
	fflush(stderr);
	log_set_fd(log_fd);
	if (dup2(fds[1], STDOUT_FILENO) < 0 || dup2(fds[1], STDERR_FILENO) < 0) {
		log_warning("plugin output goes to the log unnamed: %s", strerror(errno));
		dup2(log_fd, STDOUT_FILENO);
		dup2(log_fd, STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		return;
	}
	close(fds[1]);
	out.read_fd = fds[0];
	/* a line at a time: what a handler prints is in the pipe by its end */
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, read_output, NULL) != 0)
		log_warning("no thread to read plugin output: a call printing more than 64 KiB "
			    "waits for its end");
	pthread_attr_destroy(&attr);
}

void worker_output_job(const struct job *job)
{
	if (out.read_fd < 0)
		return;
	if (!job) {
		fflush(stdout);
		fflush(stderr);
	}
	pthread_mutex_lock(&out.lock);
	if (!job) {
		drain();
		if (out.line_len)
			emit_line();	/* printed without a newline at the end */
		out.running[0] = '\0';
	} else {
		snprintf(out.running, sizeof out.running, "%s@%s%s%s", job->module, job->version,
			 job->kind == JOB_PROBE ? " (loading)" : job->id[0] ? " call " : " sync call ",
			 job->kind == JOB_PROBE ? "" : job->id[0] ? job->id : job->method);
	}
	pthread_mutex_unlock(&out.lock);
}
