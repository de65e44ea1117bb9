/*
 * worker_output.h - what plugins print.  A handler's stdout and stderr are
 * not its reply; in a worker they go to a pipe, and each line reaches the
 * host's log (at info level) naming the call that printed it:
 *
 *   ... worker 4242 info: billing@1.1+5e0c1f2a call 01a2...: printed: <line>
 *
 * ("sync call METHOD" for a sync call, "(loading)" while a new version is
 * checked).  Lines are cut at 4 KiB; control characters become spaces, so
 * a plugin cannot forge a line of the host's log; a worker logs at most 100
 * such lines a second, and the next line logged says how many were left
 * out.  The worker reads the pipe after
 * each job, so every line printed (and flushed) during a job is named
 * after it; a thread reads it meanwhile, so a call that prints a lot never
 * blocks.  What a process forked by a plugin prints after the job is named
 * after the job running when it is read.
 */
#ifndef CAGEHOST_WORKER_OUTPUT_H
#define CAGEHOST_WORKER_OUTPUT_H

#include "worker.h"

/* In a worker, before the first job: fds 1 and 2 become the pipe, and the
 * worker's own log lines keep the original stderr.  On failure (logged)
 * output goes to the log as it is, as before. */
void worker_output_start(void);

/* job starts (its prints are named after it), or has ended (job NULL:
 * what it printed is logged now). */
void worker_output_job(const struct job *job);

#endif
