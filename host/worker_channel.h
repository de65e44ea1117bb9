/*
 * worker_channel.h - the worker's end of its channel to the host (the
 * messages are in worker.h): jobs come pipelined, several per read, with
 * the host's requests to skip jobs it has taken back; results go back one
 * per job, in order.  Used by the worker process only (worker_main.c).
 */
#ifndef CAGEHOST_WORKER_CHANNEL_H
#define CAGEHOST_WORKER_CHANNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

/*
 * Reads the next job from fd, waiting for it, and numbers it (job->seq,
 * counting from 1 as the host does).  Skip requests read meanwhile are
 * noted, and so are those already sent behind the job (read without
 * waiting, at most one frame's worth ahead).  The job's strings and
 * payload point into the channel's buffer, valid until the next call.
 * Returns 0, or -1 when the host closed the channel or sent a bad frame.
 */
int channel_read_job(int fd, struct job *job);

/* Was job number seq to be skipped?  (Ask once per job, in order: the
 * skips up to it are forgotten.) */
bool channel_skip_asked(uint32_t seq);

/* Writes res to the host.  Returns 0, or -1 when the channel is lost. */
int channel_send_result(int fd, const struct job_result *res);

#endif
