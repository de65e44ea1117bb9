/*
 * worker_output.h - what plugins print.  A handler's stdout and stderr are
 * not its reply: a worker's fds 1 and 2 are a pipe whose read end the host
 * holds (its own log lines go to the host's stderr through another fd, see
 * worker_exec.c).  The worker pool reads the pipe and logs each line (at
 * info level) naming the job that printed it:
 *
 *   ... cagehost info: worker 4242: billing@1.1+5e0c1f2a call 01a2...: printed: <line>
 *
 * ("sync call METHOD" for a sync call, "(loading)" while a new version is
 * checked).  The pipe is read when it is readable, before a job's result
 * is taken when the result says output waits (WORKER_PRINTED_FLAG), and
 * when the worker dies: so a line printed (and flushed) during a job is
 * named after it, and what a plugin printed just before crashing is not
 * lost.  Lines
 * are cut at 4 KiB; control characters become spaces, so a plugin cannot
 * forge a line of the host's log; the host logs at most 100 printed lines
 * a second, and the next one logged says how many were left out.  What a
 * process forked by a plugin prints is named after the job running when
 * it is read.
 */
#ifndef CAGEHOST_WORKER_OUTPUT_H
#define CAGEHOST_WORKER_OUTPUT_H

#include <sys/types.h>

#include "worker.h"

struct event_base;
struct worker_output;

/*
 * Reads the pipe read_fd (taken over: closed by worker_output_free) of
 * worker pid whenever it is readable, naming lines after running(arg):
 * the job the worker runs now, or NULL.  NULL when out of memory.
 */
struct worker_output *worker_output_new(struct event_base *base, int read_fd, pid_t pid,
					const struct job *(*running)(void *arg), void *arg);

/* Reads and logs what the pipe holds now, naming it after job (NULL:
 * between jobs). */
void worker_output_drain(struct worker_output *o, const struct job *job);

/*
 * Job has ended, its result says no output waits: a last line it printed
 * without a newline, which the pipe's reader took before the worker looked
 * (so the result did not say so), is logged now, named after job, rather
 * than joined to the next job's first line.  Reads nothing.
 */
void worker_output_end_job(struct worker_output *o, const struct job *job);

/* Drains the pipe (naming what is left after job), then closes it. */
void worker_output_free(struct worker_output **o, const struct job *job);

#endif
