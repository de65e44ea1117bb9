/*
 * worker_output.c - plugins' stdout and stderr, read by the host from each
 * worker's pipe and logged a line at a time, named after the job that
 * printed them (see worker_output.h).
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "record.h"
#include "worker_output.h"

#define LINE_MAX_BYTES 4096
#define PRINTED_PER_SECOND 100	/* lines the host logs; more are counted */

struct worker_output {
	int fd;
	pid_t pid;
	struct event *readable;
	const struct job *(*running)(void *arg);
	void *arg;
	char line[LINE_MAX_BYTES];	/* a line not ended yet */
	size_t line_len;
};

/* "billing@1.1+5e0c1f2a call ID", "... sync call METHOD", "... (loading)" */
static void name_job(const struct job *job, char *out, size_t size)
{
	if (!job)
		snprintf(out, size, "between jobs");
	else if (job->kind == JOB_PROBE)
		snprintf(out, size, "%s (loading)", job->module);
	else if (job->id[0])
		snprintf(out, size, "%s@%s call %s", job->module, job->version, job->id);
	else
		snprintf(out, size, "%s@%s sync call %s", job->module, job->version, job->method);
}

/* Logs the line gathered so far. */
static void emit_line(struct worker_output *o, const char *job_name)
{
	static struct log_budget budget = LOG_BUDGET(PRINTED_PER_SECOND, "lines printed by plugins");
	char clean[LINE_MAX_BYTES + 1];

	o->line[o->line_len] = '\0';
	record_clean_text(clean, sizeof clean, o->line);
	log_msg_budget(&budget, LOG_INFO, "worker %d: %s: printed: %s", (int)o->pid, job_name,
		       clean);
	o->line_len = 0;
}

/* Reads what the pipe holds; false once the worker's end is closed. */
static bool read_pipe(struct worker_output *o, const struct job *job, bool flush_partial)
{
	char buf[8192], name[NAME_MAX_LEN * 2 + RECORD_VERSION_MAX + 32];
	bool open = true;
	ssize_t n;

	if (o->fd < 0)
		return false;
	name_job(job, name, sizeof name);
	for (;;) {
		n = read(o->fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			open = n < 0 && errno == EAGAIN;
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				emit_line(o, name);
				continue;
			}
			o->line[o->line_len++] = buf[i];
			if (o->line_len == sizeof o->line - 1)
				emit_line(o, name);	/* too long: cut */
		}
	}
	if (o->line_len && (flush_partial || !open))
		emit_line(o, name);	/* printed without a newline at the end */
	return open;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct worker_output *o = arg;

	(void)fd;
	(void)what;
	if (!read_pipe(o, o->running(o->arg), false))
		event_del(o->readable);	/* the worker's end is closed */
}

struct worker_output *worker_output_new(struct event_base *base, int read_fd, pid_t pid,
					const struct job *(*running)(void *arg), void *arg)
{
	struct worker_output *o = calloc(1, sizeof *o);

	if (!o) {
		close(read_fd);
		return NULL;
	}
	o->fd = read_fd;
	o->pid = pid;
	o->running = running;
	o->arg = arg;
	fcntl(read_fd, F_SETFL, fcntl(read_fd, F_GETFL) | O_NONBLOCK);
	o->readable = event_new(base, read_fd, EV_READ | EV_PERSIST, on_readable, o);
	if (!o->readable || event_add(o->readable, NULL) < 0) {
		worker_output_free(&o, NULL);
		return NULL;
	}
	return o;
}

void worker_output_drain(struct worker_output *o, const struct job *job)
{
	if (o && !read_pipe(o, job, true))
		event_del(o->readable);
}

void worker_output_end_job(struct worker_output *o, const struct job *job)
{
	char name[NAME_MAX_LEN * 2 + RECORD_VERSION_MAX + 32];

	if (!o || !o->line_len)
		return;
	name_job(job, name, sizeof name);
	emit_line(o, name);
}

void worker_output_free(struct worker_output **op, const struct job *job)
{
	struct worker_output *o = *op;

	if (!o)
		return;
	read_pipe(o, job, true);
	if (o->readable)
		event_free(o->readable);
	close(o->fd);
	free(o);
	*op = NULL;
}
