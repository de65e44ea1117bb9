/*
 * worker.h - the worker processes that run plugin code.
 *
 * Plugin code never runs in the host.  The host keeps a pool of worker
 * processes, started at start-up and replaced whenever one dies (each a
 * fresh exec of the host's program: see worker_exec.c).  Each worker
 * takes one job at a time over a socketpair:
 *
 *   host -> worker  JOB:    kind, path of the module's private copy, module,
 *                           method, version label, call id, queue, attempt,
 *                           payload
 *   host -> worker  SKIP:   kind, number of a job sent earlier (the jobs on
 *                           a channel are numbered from 1, skips not counted)
 *   worker -> host  RESULT: status, reply, error text, version label,
 *                           method names (probe only, space-separated),
 *                           calls enqueued on other cages (with OK only)
 *
 * Jobs are pipelined (worker_pool.c), so a worker may hold jobs it has not
 * started.  Before it starts one, it reads every SKIP already sent; a job
 * named in one is answered WORKER_NOT_STARTED and never runs.
 * A job of kind PROBE loads a module version and describes it; a CALL job
 * runs one attempt.  The worker dlopens the private copy named in the job
 * (a new version has a new path, so it is loaded afresh) and keeps it loaded
 * for the next job naming the same path.  Before it unloads a module for
 * another, it counts its threads: a thread the module left running would
 * crash once the module's code is unmapped, in the middle of another
 * module's job.  So a worker with more than its own thread answers
 * WORKER_RETIRED instead and ends; the host gives that job, and the jobs
 * behind it, to fresh workers, and none of them counts as an attempt.
 * A worker that crashes, exits or
 * outlives the job's timeout is killed and replaced, and the job ends with
 * status WORKER_CRASHED or WORKER_TIMEOUT and a reason naming module@version.
 */
#ifndef CAGEHOST_WORKER_H
#define CAGEHOST_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "names.h"
#include "record.h"

struct event_base;

/* Exit status of a worker that could not send a result to the host. */
#define WORKER_EXIT_CHANNEL_LOST 125

/* Largest reply a handler may set (cage_reply fails above it). */
#define WORKER_MAX_REPLY ((size_t)32 << 20)

enum job_kind { JOB_PROBE = 0, JOB_CALL = 1, JOB_SKIP = 2 /* on the channel only */ };

/* Jobs wait in the first non-empty class, in this order. */
enum job_class { CLASS_PROBE, CLASS_SYNC, CLASS_QUEUED, CLASS_COUNT };

enum worker_status {
	WORKER_OK = 0,		/* handler said CAGE_OK (probe: loaded fine) */
	WORKER_RETRY = 1,	/* handler said CAGE_RETRY */
	WORKER_FAIL = 2,	/* handler said CAGE_FAIL */
	WORKER_NO_METHOD = 3,	/* module has no such method */
	WORKER_LOAD_FAILED = 4,	/* dlopen or descriptor check failed */
	WORKER_BAD_OUTCOME = 5,	/* handler returned something else */
	WORKER_CRASHED = 6,	/* killed by a signal, exit(), lost channel */
	WORKER_TIMEOUT = 7,	/* ran past the job's timeout */
	WORKER_NO_MODULE = 8,	/* module not in plugin_dir (host side) */
	WORKER_NOT_STARTED = 9,	/* start_by_ms passed first, or its worker was
				 * told to skip it: it never ran */
	WORKER_RETIRED = 10,	/* on the channel only: the worker did not start
				 * the job and ends; its jobs go to fresh workers */
};

/* On the wire, a result's status word carries this bit when the job left
 * output in the worker's pipe: the host reads the pipe before the result
 * (worker_output.h), and only then. */
#define WORKER_PRINTED_FLAG 0x80000000u

/* Most calls one handler may enqueue on other cages (cage_enqueue). */
#define WORKER_MAX_OUTGOING 64

/* A call a handler enqueued on another cage; stored only with an OK. */
struct outgoing_call {
	char cage[NAME_MAX_LEN + 1];
	char queue[NAME_MAX_LEN + 1];
	char module[NAME_MAX_LEN + 1];
	char method[NAME_MAX_LEN + 1];
	char *payload;		/* malloc'd */
	size_t payload_len;
};

struct job_result {
	enum worker_status status;
	bool printed;		/* output waits in the worker's pipe */
	char *reply;		/* malloc'd, owned by the result; may be NULL */
	size_t reply_len;
	char error[RECORD_ERROR_MAX + 1];
	char version[RECORD_VERSION_MAX + 1];
	char methods[2048];	/* probe only */
	struct outgoing_call *outgoing;	/* malloc'd; with WORKER_OK only */
	int outgoing_count;
};

struct job;
typedef void (*job_done_fn)(struct job *job, struct job_result *result);

struct job {
	enum job_kind kind;
	enum job_class class;
	char path[4096];	/* private copy to load */
	char module[NAME_MAX_LEN + 1];
	char method[NAME_MAX_LEN + 1];
	char version[RECORD_VERSION_MAX + 1];	/* label; for a probe, the hash part */
	char id[CALL_ID_LEN + 1];
	char queue[NAME_MAX_LEN + 1];
	char cage[NAME_MAX_LEN + 1];	/* "" = run here; else delivered (relay.h) */
	uint32_t attempt;
	char *payload;		/* malloc'd, owned by the job */
	size_t payload_len;
	int64_t timeout_ms;
	int64_t start_by_ms;	/* monotonic; not handed to a worker by then, it
				 * never runs: done() gets WORKER_NOT_STARTED (0: any time) */
	job_done_fn done;	/* called once; then the job's owner frees it */
	void *arg;
	TAILQ_ENTRY(job) link;
	uint32_t seq;		/* the pool's: its number on its worker's channel */
	bool skip_sent;		/* the pool's: its worker was told to skip it */
	bool retired_once;	/* the pool's: a worker retired before starting it */
};

struct worker_pool;

/* Resource limits of each worker process (0 = none). */
struct worker_limits {
	size_t memory_bytes;	/* RLIMIT_AS */
	int64_t cpu_ms;		/* CPU time per job (RLIMIT_CPU, moved each job) */
	int files;		/* RLIMIT_NOFILE */
};

/*
 * Forks `size` workers.  record_path names a file that lists the workers'
 * process groups; at start, processes left in the groups of an earlier
 * run (what a plugin forked, when the host was killed with -9) are killed.
 * Returns NULL (and logs why) on failure.
 */
struct worker_pool *pool_new(struct event_base *base, int size,
			     const struct worker_limits *limits, const char *record_path);

/* Kills every worker.  Jobs still queued or running are dropped, not
 * completed and not touched: their owners free them. */
void pool_free(struct worker_pool **pool);

/* Queues job; its done() runs later, never from inside pool_submit. */
void pool_submit(struct worker_pool *pool, struct job *job);

enum cancel_outcome {
	CANCEL_TAKEN_BACK,	/* it still waited for a worker: done() never runs */
	CANCEL_ASKED,		/* a worker holds it behind its running job and is
				 * told to skip it: done() gets WORKER_NOT_STARTED
				 * (or, if the worker started it first, its outcome) */
	CANCEL_TOO_LATE,	/* running, or held outside the pool: done() runs
				 * as it would have */
};

/* Tries to make sure job never runs (see cancel_outcome). */
enum cancel_outcome pool_cancel(struct worker_pool *pool, struct job *job);

/* Jobs queued but not yet given to a worker, in class c. */
int pool_waiting(const struct worker_pool *pool, enum job_class c);

/*
 * Stops handing out jobs of class c (the host is stopping: queued calls
 * not started yet run after the restart).  They stay queued; pool_free()
 * drops them like any other.
 */
void pool_hold(struct worker_pool *pool, enum job_class c);

/* Workers currently running a job. */
int pool_busy(const struct worker_pool *pool);
int pool_size(const struct worker_pool *pool);

/* True while a job naming module file path waits in the pool or in a
 * worker (its private copy must stay until then). */
bool pool_uses_path(const struct worker_pool *pool, const char *path);

/* Jobs the workers can hold at once (size x pipeline depth). */
int pool_capacity(const struct worker_pool *pool);

/* Called whenever a worker becomes free (to let the scheduler refill). */
void pool_on_idle(struct worker_pool *pool, void (*cb)(void *arg), void *arg);

/* Frees a result's reply and outgoing calls. */
void job_result_release(struct job_result *result);

/* Ends job without a worker: done() gets status, version (NULL: none) and
 * the error text. */
__attribute__((format(printf, 4, 5)))
void job_fail(struct job *job, enum worker_status status, const char *version,
	      const char *fmt, ...);

/* Frees only a result's outgoing calls (a handler that did not say OK). */
void job_result_drop_outgoing(struct job_result *result);

/*
 * Starts a worker process: a fresh exec of this program (/proc/self/exe)
 * that serves jobs on `channel` (its fd 3), with `output` (the write end of
 * a pipe, see worker_output.h) as its stdout and stderr, in a process group
 * of its own, under `limits`, logging at log_level.  Safe to call while
 * other threads run.  Returns the pid (a child of the caller), or -1 with
 * errno set.
 */
pid_t worker_spawn(int channel, int output, const struct worker_limits *limits, int log_level);

/*
 * Worker side: serves jobs on fd until the host goes away.  Never returns.
 * (Runs in the spawned worker process, called by worker_exec.c.)
 */
__attribute__((noreturn))
void worker_main(int fd, int64_t cpu_limit_ms);

#endif
