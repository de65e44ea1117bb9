/*
 * worker_pool.c - the host side of the worker processes (see worker.h):
 * forking, handing out jobs by class, reading results, timeouts, and
 * turning a worker's death into a readable failed attempt.
 *
 * Jobs are pipelined: a worker may hold several jobs, which it runs in
 * order, so under load the host sends several jobs in one write and the
 * worker never sleeps between them.  How many depends on how long jobs
 * take: no job should wait more than about QUEUE_BUDGET_US behind others in
 * a worker (fast handlers: up to PIPELINE_MAX deep; slow ones: one at a
 * time, and nothing is queued behind a job already past the budget).  A job
 * queued behind one that turns out slow can still be stopped: the worker
 * is told to skip it (pool_cancel).  The first unanswered job is the
 * running one: its timeout runs from when it became first, and if the
 * worker dies, that job is the one that failed; the jobs behind it go back
 * to the front of their queue, unharmed.
 *
 * A worker's death is learned from its pidfd, which gives the exact wait
 * status (any result already sent is read first).  If the channel closes
 * while the process lives on (a plugin closed fds it does not own), the
 * worker gets a short grace period to die on its own and is then killed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "names.h"
#include "log.h"
#include "wire.h"
#include "worker.h"
#include "worker_output.h"

#define PIPELINE_MAX 64
#define QUEUE_BUDGET_US 2000
#define CHANNEL_GRACE_MS 1000
#define RESPAWN_DELAY_MS 100

struct worker {
	struct worker_pool *pool;
	int slot;
	pid_t pid;
	int pidfd;
	struct event *death;		/* pidfd readable */
	struct bufferevent *channel;
	struct worker_output *output;	/* what its plugins print */
	struct event *deadline;		/* first job's timeout, or channel grace */
	bool dying;			/* killed, or its channel is gone */
	bool channel_lost;
	bool retired;			/* said WORKER_RETIRED: replaced at once */
	uint32_t answered;		/* results it sent */
	struct job *jobs[PIPELINE_MAX];	/* sent, unanswered; [0] runs */
	int64_t head_since_us;		/* monotonic: when jobs[0] became first */
	int count;
	uint32_t sent;			/* jobs sent on the channel so far */
	char kill_reason[256];		/* set when the host killed it */
	int64_t started_ms;		/* monotonic, for quick-death backoff */
};

struct worker_pool {
	struct event_base *base;
	int size;
	char record_path[4096];		/* the workers' process groups, one a line */
	struct worker_limits limits;
	struct worker **workers;
	TAILQ_HEAD(, job) waiting[CLASS_COUNT];
	int waiting_count[CLASS_COUNT];
	bool held[CLASS_COUNT];		/* pool_hold() */
	struct event *kick;		/* deferred hand-out */
	int64_t job_us;			/* moving average of a job's time */
	void (*on_idle)(void *arg);
	void *on_idle_arg;
};

static void spawn(struct worker_pool *pool, int slot);

/* When process pid started (field 22 of /proc/PID/stat), 0 if it is gone. */
static unsigned long long process_start(pid_t pid)
{
	char path[64], line[1024];
	unsigned long long start = 0;
	const char *after;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fgets(line, sizeof line, f) && (after = strrchr(line, ')')) &&
	    sscanf(after + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
			      "%*d %*d %*d %llu", &start) != 1)
		start = 0;
	fclose(f);
	return start;
}

/* Writes the live workers' process groups to the record file, after a line
 * naming this host ("host PID START"). */
static void record_groups(struct worker_pool *pool)
{
	FILE *f = fopen(pool->record_path, "w");

	if (!f)
		return;
	fprintf(f, "host %d %llu\n", (int)getpid(), process_start(getpid()));
	for (int i = 0; i < pool->size; i++)
		if (pool->workers[i])
			fprintf(f, "%d\n", (int)pool->workers[i]->pid);
	fclose(f);
}

/*
 * Kills processes of this program left in the process groups recorded by
 * an earlier run (only ours: same executable, group listed).  A record
 * whose host still runs came with a copy of another host's data_dir: its
 * workers are that host's, and are left alone.
 */
static void reap_leftovers(const char *record_path)
{
	char self[4096], exe[4096], path[64], line[512];
	pid_t groups[1024];
	int count = 0;
	ssize_t n;
	struct dirent *e;
	FILE *f = fopen(record_path, "r");
	DIR *proc;

	if (!f)
		return;
	while (count < 1024 && fgets(line, sizeof line, f)) {
		int host;
		unsigned long long start;

		if (sscanf(line, "host %d %llu", &host, &start) == 2) {
			if (host != getpid() && start && process_start(host) == start) {
				log_warning("%s lists the workers of cagehost %d, which is still "
					    "running (is this data_dir a copy of its?): they are "
					    "left alone", record_path, host);
				fclose(f);
				return;
			}
		} else if (atoi(line) > 1) {
			groups[count++] = (pid_t)atoi(line);
		}
	}
	fclose(f);
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	proc = opendir("/proc");
	if (n <= 0 || !proc || count == 0) {
		if (proc)
			closedir(proc);
		return;
	}
	self[n] = '\0';
	while ((e = readdir(proc))) {
		pid_t pid = (pid_t)atoi(e->d_name);
		const char *after;
		int pgrp = 0, ppid = 0;
		char state;

		if (pid <= 1 || pid == getpid())
			continue;
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(line, sizeof line, f))
			line[0] = '\0';
		fclose(f);
		after = strrchr(line, ')');	/* the command name may hold anything */
		if (!after || sscanf(after + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
			continue;
		for (int i = 0; i < count; i++) {
			if (pgrp != groups[i])
				continue;
			snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
			n = readlink(path, exe, sizeof exe - 1);
			if (n > 0 && (exe[n] = '\0', !strcmp(exe, self))) {
				log_warning("killing process %d left by a worker of an earlier run",
					    (int)pid);
				kill(pid, SIGKILL);
			}
		}
	}
	closedir(proc);
}
static void hand_out(evutil_socket_t fd, short what, void *arg);

void job_result_release(struct job_result *result)
{
	free(result->reply);
	result->reply = NULL;
	result->reply_len = 0;
	job_result_drop_outgoing(result);
}

void job_fail(struct job *job, enum worker_status status, const char *version,
	      const char *fmt, ...)
{
	struct job_result res;
	va_list ap;

	memset(&res, 0, sizeof res);
	res.status = status;
	if (version)
		snprintf(res.version, sizeof res.version, "%s", version);
	va_start(ap, fmt);
	vsnprintf(res.error, sizeof res.error, fmt, ap);
	va_end(ap);
	job->done(job, &res);
}

void job_result_drop_outgoing(struct job_result *result)
{
	for (int i = 0; i < result->outgoing_count; i++)
		free(result->outgoing[i].payload);
	free(result->outgoing);
	result->outgoing = NULL;
	result->outgoing_count = 0;
}

/* One name, exactly as sent: not cut short, no NUL inside, valid. */
static int read_name(struct wire_in *r, char out[NAME_MAX_LEN + 1])
{
	size_t len;
	const char *data = wire_in_bytes(r, &len);

	if (r->failed || len > NAME_MAX_LEN || !name_is_valid(data, len))
		return -1;
	memcpy(out, data, len);
	out[len] = '\0';
	return 0;
}

/*
 * Reads the calls a handler enqueued on other cages into res.  Returns 0,
 * or -1 for a malformed list (or no memory for it).
 */
static int read_outgoing(struct wire_in *r, struct job_result *res)
{
	uint32_t count = wire_in_u32(r);

	if (r->failed || count == 0)
		return r->failed || r->p != r->end ? -1 : 0;
	if (count > WORKER_MAX_OUTGOING || res->status != WORKER_OK)
		return -1;
	res->outgoing = calloc(count, sizeof *res->outgoing);
	if (!res->outgoing)
		return -1;
	for (uint32_t i = 0; i < count; i++) {
		struct outgoing_call *o = &res->outgoing[res->outgoing_count++];
		const char *payload;

		if (read_name(r, o->cage) < 0 || read_name(r, o->queue) < 0 ||
		    read_name(r, o->module) < 0 || read_name(r, o->method) < 0)
			return -1;
		payload = wire_in_bytes(r, &o->payload_len);
		if (r->failed || !(o->payload = malloc(o->payload_len + 1)))
			return -1;
		memcpy(o->payload, payload, o->payload_len);
		o->payload[o->payload_len] = '\0';
	}
	return r->p == r->end ? 0 : -1;	/* nothing may follow the list */
}

static void kick(struct worker_pool *pool)
{
	event_active(pool->kick, EV_TIMEOUT, 0);
}

static void arm_deadline(struct worker *w)
{
	struct job *job = w->jobs[0];
	struct timeval tv;

	if (!job) {
		evtimer_del(w->deadline);
		return;
	}
	tv.tv_sec = job->timeout_ms / 1000;
	tv.tv_usec = (job->timeout_ms % 1000) * 1000;
	evtimer_add(w->deadline, &tv);
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Jobs a worker may hold now (see the top of this file). */
static int pipeline_depth(const struct worker_pool *pool)
{
	int64_t depth = QUEUE_BUDGET_US / (pool->job_us > 1 ? pool->job_us : 1);

	return depth < 1 ? 1 : depth > PIPELINE_MAX ? PIPELINE_MAX : (int)depth;
}

/* Removes the first job and completes it with res. */
static void finish_first(struct worker *w, struct job_result *res)
{
	struct job *job = w->jobs[0];
	int64_t now = now_us();

	/* how long the job ran: an average over the last few dozen */
	if (res->status != WORKER_NOT_STARTED)
		w->pool->job_us += (now - w->head_since_us - w->pool->job_us) / 16;
	w->head_since_us = now;

	memmove(w->jobs, w->jobs + 1, (size_t)(w->count - 1) * sizeof w->jobs[0]);
	w->jobs[--w->count] = NULL;
	if (!w->dying)
		arm_deadline(w);
	job->done(job, res);
	job_result_release(res);
}

static void not_started_error(const struct job *job, char *out, size_t size);

/* Puts the jobs a dying worker holds, none of them started, back at the
 * front of their queues; one it was told to skip ends WORKER_NOT_STARTED
 * instead, as it would have there. */
static void requeue_rest(struct worker *w)
{
	struct worker_pool *pool = w->pool;

	while (w->count > 0) {
		struct job *job = w->jobs[--w->count];

		w->jobs[w->count] = NULL;
		if (job->skip_sent) {
			struct job_result res;

			memset(&res, 0, sizeof res);
			res.status = WORKER_NOT_STARTED;
			not_started_error(job, res.error, sizeof res.error);
			job->done(job, &res);
			continue;
		}
		TAILQ_INSERT_HEAD(&pool->waiting[job->class], job, link);
		pool->waiting_count[job->class]++;
	}
}

static const char *job_subject(const struct job *job, char *out, size_t size)
{
	if (job->kind == JOB_PROBE)
		snprintf(out, size, "loading %s (%.200s)", job->module, job->path);
	else
		snprintf(out, size, "%s@%s", job->module, job->version);
	return out;
}

/* Kills the worker; its death handler completes the first job with reason. */
static void kill_worker(struct worker *w, const char *reason)
{
	if (w->kill_reason[0])
		return;	/* already killed */
	w->dying = true;
	snprintf(w->kill_reason, sizeof w->kill_reason, "%s", reason);
	bufferevent_disable(w->channel, EV_READ | EV_WRITE);
	kill(-w->pid, SIGKILL);
	kill(w->pid, SIGKILL);
}

static void describe_death(const struct worker *w, const struct job *job, int status,
			   char *out, size_t size)
{
	char subject[300];

	job_subject(job, subject, sizeof subject);
	if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_CHANNEL_LOST)
		snprintf(out, size, "worker lost its channel to the host in %s (did the plugin "
			 "close a descriptor it does not own?)", subject);
	else if (w->kill_reason[0])
		snprintf(out, size, "%s in %s", w->kill_reason, subject);
	else if (WIFSIGNALED(status) && sigabbrev_np(WTERMSIG(status)))
		snprintf(out, size, "worker killed by SIG%s in %s", sigabbrev_np(WTERMSIG(status)),
			 subject);
	else if (WIFSIGNALED(status))
		snprintf(out, size, "worker killed by signal %d in %s", WTERMSIG(status), subject);
	else if (WIFEXITED(status))
		snprintf(out, size, "worker exited with status %d in %s", WEXITSTATUS(status),
			 subject);
	else
		snprintf(out, size, "worker ended in %s", subject);
}

static void read_results(struct worker *w);

/* The job a worker runs now, or NULL (what it prints is named after it). */
static const struct job *running_job(void *arg)
{
	struct worker *w = arg;

	return w->count ? w->jobs[0] : NULL;
}

static void release_worker(struct worker *w)
{
	worker_output_free(&w->output, NULL);
	event_free(w->death);
	close(w->pidfd);
	bufferevent_free(w->channel);
	event_free(w->deadline);
	free(w);
}

static void on_death(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_pool *pool = w->pool;
	struct job_result res;
	siginfo_t info;
	int status, slot = w->slot;
	bool quick;

	(void)fd;
	(void)what;
	memset(&info, 0, sizeof info);
	if (waitid(P_PIDFD, (id_t)w->pidfd, &info, WEXITED | WNOHANG) < 0 || info.si_pid == 0)
		return;	/* not dead yet */
	status = info.si_code == CLD_EXITED ? (info.si_status & 0xff) << 8
					    : info.si_status & 0x7f;
	kill(-w->pid, SIGKILL);	/* anything the plugin forked */
	/* results it sent before dying are not its fault */
	if (!w->kill_reason[0] && !w->channel_lost) {
		struct evbuffer *in = bufferevent_get_input(w->channel);

		while (evbuffer_read(in, bufferevent_getfd(w->channel), 65536) > 0)
			;
		read_results(w);
	}
	w->dying = true;
	/* what the job printed before it died: its last words */
	worker_output_drain(w->output, running_job(w));
	if (w->count > 0) {
		memset(&res, 0, sizeof res);
		res.status = !strncmp(w->kill_reason, "attempt timed out", 17) ? WORKER_TIMEOUT
									       : WORKER_CRASHED;
		describe_death(w, w->jobs[0], status, res.error, sizeof res.error);
		if (w->jobs[0]->kind == JOB_CALL) {
			const struct job *job = w->jobs[0];

			snprintf(res.version, sizeof res.version, "%s", job->version);
			/* the log also names the call */
			log_warning("%s (%s %s.%s%s%s)", res.error,
				    job->id[0] ? "queued call" : "sync call", job->module,
				    job->method, job->id[0] ? " " : "", job->id);
		} else {
			log_warning("%s", res.error);
		}
		finish_first(w, &res);
		requeue_rest(w);
	}
	pool->workers[slot] = NULL;
	/* a retired worker ended as asked, not for want of a working start */
	quick = !w->retired && clock_mono_ms() - w->started_ms < RESPAWN_DELAY_MS;
	release_worker(w);
	if (quick) {
		/* dying at once again and again: don't spin */
		struct timeval tv = { 0, RESPAWN_DELAY_MS * 1000 };

		event_base_once(pool->base, -1, EV_TIMEOUT, hand_out, pool, &tv);
	} else {
		spawn(pool, slot);
		kick(pool);
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	char reason[256];

	(void)fd;
	(void)what;
	if (w->channel_lost || !w->jobs[0]) {
		kill_worker(w, w->channel_lost ? "worker closed its channel to the host"
					       : "worker did not end when it said it would");
		return;
	}
	snprintf(reason, sizeof reason, "attempt timed out after %lld ms (worker killed)",
		 (long long)w->jobs[0]->timeout_ms);
	kill_worker(w, reason);
}

/* True for the label characters: the name set plus '+'. */
static bool label_ok(const char *s)
{
	if (!s[0])
		return false;
	for (; *s; s++)
		if (!name_is_valid(s, 1) && *s != '+' && *s != '.')
			return false;
	return true;
}

/*
 * A result is what the worker says, and plugin code runs in the worker:
 * only words that end up on disk are checked.  A call's version is the one
 * the host asked for; a probe's label and method names must be well-formed.
 */
static bool plausible_result(const struct job *job, struct job_result *res)
{
	if (job->kind == JOB_CALL) {
		snprintf(res->version, sizeof res->version, "%s", job->version);
		return true;
	}
	if (res->status != WORKER_OK)
		return true;
	if (!label_ok(res->version))
		return false;
	/* method names, space-separated; the list may end in " ..." where
	 * the worker cut it (worker_main.c) */
	for (const char *m = res->methods; *m;) {
		size_t len = strcspn(m, " ");

		if (len && !name_is_valid(m, len) && strcmp(m, "...") != 0)
			return false;
		m += len;
		m += strspn(m, " ");
	}
	return true;
}

/* The error of a job that never started (WORKER_NOT_STARTED). */
static void not_started_error(const struct job *job, char *out, size_t size)
{
	snprintf(out, size, "no worker was free within %lld ms; the call did not run",
		 (long long)job->timeout_ms);
}

/* A status a worker may send for job: what a handler or a load can end
 * with, WORKER_RETIRED, or WORKER_NOT_STARTED for a job the host asked it
 * to skip. */
static bool known_status(const struct job *job, enum worker_status status)
{
	return status <= WORKER_BAD_OUTCOME || status == WORKER_RETIRED ||
	       (status == WORKER_NOT_STARTED && job->skip_sent);
}

/* The worker is to end by itself (it said so, or its channel is gone):
 * past CHANNEL_GRACE_MS it is killed (on_deadline). */
static void await_exit(struct worker *w)
{
	struct timeval grace = { CHANNEL_GRACE_MS / 1000, (CHANNEL_GRACE_MS % 1000) * 1000 };

	w->dying = true;
	event_del(w->deadline);
	evtimer_add(w->deadline, &grace);
}

/*
 * WORKER_RETIRED is true only from a worker that has run a job (a module
 * of it is loaded), and never twice for one job (a retired job goes only
 * to a fresh worker, idle: hand_out).  Plugin code runs
 * in the worker and could write one on the channel: else the job would go
 * round the workers for ever, charged nothing.  An implausible one kills
 * the worker, and its job fails as a crash (an attempt).
 */
static bool retirement_plausible(struct worker *w)
{
	if (w->answered > 0 && !w->jobs[0]->retired_once)
		return true;
	kill_worker(w, w->answered ? "worker retired twice before starting the same job"
				   : "worker retired before it ran any job");
	return false;
}

static void read_results(struct worker *w)
{
	struct evbuffer *in = bufferevent_get_input(w->channel);
	unsigned char header[4];
	struct job_result res;
	struct wire_in r;
	const char *body, *reply;
	uint32_t len, status;
	bool ends;

	while (evbuffer_get_length(in) >= 4 && !w->kill_reason[0]) {
		evbuffer_copyout(in, header, 4);
		len = wire_frame_len(header);
		if (len > WIRE_MAX_FRAME) {
			kill_worker(w, "worker sent an oversized message");
			return;
		}
		if (evbuffer_get_length(in) < 4 + (size_t)len)
			return;
		body = (const char *)evbuffer_pullup(in, 4 + (ev_ssize_t)len) + 4;
		memset(&res, 0, sizeof res);
		wire_in_init(&r, body, len);
		status = wire_in_u32(&r);
		res.printed = status & WORKER_PRINTED_FLAG;
		res.status = (enum worker_status)(status & ~WORKER_PRINTED_FLAG);
		reply = wire_in_bytes(&r, &res.reply_len);
		wire_in_str(&r, res.error, sizeof res.error);
		wire_in_str(&r, res.version, sizeof res.version);
		wire_in_str(&r, res.methods, sizeof res.methods);
		if (r.failed || w->count == 0 || !known_status(w->jobs[0], res.status) ||
		    !plausible_result(w->jobs[0], &res) || read_outgoing(&r, &res) < 0) {
			job_result_release(&res);
			kill_worker(w, "worker sent a malformed message");
			return;
		}
		if (res.reply_len) {
			res.reply = malloc(res.reply_len + 1);
			if (!res.reply) {
				job_result_release(&res);
				kill_worker(w, "host out of memory for the reply");
				return;
			}
			memcpy(res.reply, reply, res.reply_len);
			res.reply[res.reply_len] = '\0';
		}
		evbuffer_drain(in, 4 + (size_t)len);
		if (res.status == WORKER_RETIRED) {
			job_result_release(&res);
			if (!retirement_plausible(w))
				return;
			/* it started none of its jobs and ends (worker.h) */
			if (res.printed)
				worker_output_drain(w->output, NULL);
			w->jobs[0]->retired_once = true;
			w->retired = true;
			await_exit(w);
			requeue_rest(w);
			return;
		}
		w->answered++;
		if (res.status == WORKER_NOT_STARTED)
			not_started_error(w->jobs[0], res.error, sizeof res.error);
		/* the job's output is in the pipe before its result */
		if (res.printed)
			worker_output_drain(w->output, w->jobs[0]);
		else
			worker_output_end_job(w->output, w->jobs[0]);
		ends = res.status == WORKER_LOAD_FAILED && w->jobs[0]->kind == JOB_CALL;
		finish_first(w, &res);
		if (ends) {
			/* a worker that could not load a checked version ends after
			 * this answer without starting the jobs behind it
			 * (worker_main.c): they go back to the pool */
			await_exit(w);
			requeue_rest(w);
			return;
		}
	}
}

static void on_channel_read(struct bufferevent *bev, void *arg)
{
	struct worker *w = arg;

	(void)bev;
	read_results(w);
	kick(w->pool);
}

static void on_channel_event(struct bufferevent *bev, short what, void *arg)
{
	struct worker *w = arg;

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	read_results(w);
	bufferevent_disable(w->channel, EV_READ | EV_WRITE);
	if (w->dying)
		return;
	/* usually the process is dying and its pidfd fires next; if it
	 * lives on without its channel, it is killed after the grace */
	w->channel_lost = true;
	await_exit(w);
}

static void spawn(struct worker_pool *pool, int slot)
{
	struct worker *w = NULL;
	int fds[2], out[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
		log_error("cannot create a worker channel: %s", strerror(errno));
		return;
	}
	if (pipe2(out, O_CLOEXEC) < 0) {
		log_error("cannot create a worker's output pipe: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	pid = worker_spawn(fds[1], out[1], &pool->limits, log_get_level());
	close(fds[1]);
	close(out[1]);
	if (pid < 0) {
		log_error("cannot start a worker: %s", strerror(errno));
		close(fds[0]);
		close(out[0]);
		return;
	}
	w = calloc(1, sizeof *w);
	if (!w) {
		close(out[0]);
		goto fail;
	}
	w->output = worker_output_new(pool->base, out[0], pid, running_job, w);
	w->pool = pool;
	w->slot = slot;
	w->pid = pid;
	w->started_ms = clock_mono_ms();
	w->pidfd = pidfd_open(pid, 0);
	if (w->pidfd < 0) {
		log_error("pidfd_open: %s", strerror(errno));
		goto fail;
	}
	evutil_make_socket_nonblocking(fds[0]);
	w->channel = bufferevent_socket_new(pool->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	w->death = event_new(pool->base, w->pidfd, EV_READ | EV_PERSIST, on_death, w);
	w->deadline = evtimer_new(pool->base, on_deadline, w);
	if (!w->channel || !w->death || !w->deadline || !w->output)
		goto fail;
	bufferevent_setcb(w->channel, on_channel_read, NULL, on_channel_event, w);
	bufferevent_enable(w->channel, EV_READ);
	event_add(w->death, NULL);
	pool->workers[slot] = w;
	record_groups(pool);
	return;
fail:
	log_error("cannot set up worker %d", (int)pid);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	if (w && w->channel)
		bufferevent_free(w->channel);
	else
		close(fds[0]);
	if (w && w->death)
		event_free(w->death);
	if (w && w->deadline)
		event_free(w->deadline);
	if (w && w->pidfd >= 0)
		close(w->pidfd);
	if (w)
		worker_output_free(&w->output, NULL);
	free(w);
}

static int send_job(struct worker *w, struct job *job)
{
	struct wire_out out;

	wire_out_init(&out);
	wire_out_u32(&out, (uint32_t)job->kind);
	wire_out_str(&out, job->path);
	wire_out_str(&out, job->module);
	wire_out_str(&out, job->method);
	wire_out_str(&out, job->version);
	wire_out_str(&out, job->id);
	wire_out_str(&out, job->queue);
	wire_out_u32(&out, job->attempt);
	wire_out_bytes(&out, job->payload ? job->payload : "", job->payload_len);
	if (wire_out_finish(&out) < 0 || bufferevent_write(w->channel, out.data, out.len) < 0) {
		wire_out_free(&out);
		return -1;
	}
	wire_out_free(&out);
	job->seq = ++w->sent;
	job->skip_sent = false;
	w->jobs[w->count++] = job;
	if (w->count == 1) {
		w->head_since_us = now_us();
		arm_deadline(w);
	}
	return 0;
}

static struct job *next_job(struct worker_pool *pool)
{
	for (int c = 0; c < CLASS_COUNT; c++) {
		struct job *job = pool->held[c] ? NULL : TAILQ_FIRST(&pool->waiting[c]);

		if (job) {
			TAILQ_REMOVE(&pool->waiting[c], job, link);
			pool->waiting_count[c]--;
			return job;
		}
	}
	return NULL;
}

/* The live worker with the fewest jobs below `below`, or NULL.  A worker
 * whose running job has taken longer than QUEUE_BUDGET_US is slower than
 * the average says: nothing more is queued behind it. */
static struct worker *least_loaded(struct worker_pool *pool, int below)
{
	struct worker *best = NULL;
	int64_t now = now_us();

	for (int i = 0; i < pool->size; i++) {
		struct worker *w = pool->workers[i];

		if (!w || w->dying || w->count >= below)
			continue;
		if (w->count > 0 && now - w->head_since_us > QUEUE_BUDGET_US)
			continue;
		if (!best || w->count < best->count)
			best = w;
	}
	return best;
}

/* A live worker that has run nothing and holds no job: the only one a job
 * some worker retired on may go to (see retirement_plausible). */
static struct worker *fresh_idle_worker(struct worker_pool *pool)
{
	for (int i = 0; i < pool->size; i++) {
		struct worker *w = pool->workers[i];

		if (w && !w->dying && w->count == 0 && w->answered == 0)
			return w;
	}
	return NULL;
}

static void hand_out(evutil_socket_t fd, short what, void *arg)
{
	struct worker_pool *pool = arg;
	struct worker *w;

	(void)fd;
	(void)what;
	for (int i = 0; i < pool->size; i++)
		if (!pool->workers[i])
			spawn(pool, i);
	while ((w = least_loaded(pool, pipeline_depth(pool)))) {
		struct job *job = next_job(pool);

		if (!job)
			break;
		if (job->start_by_ms && now_us() / 1000 > job->start_by_ms) {
			char why[RECORD_ERROR_MAX + 1];

			/* its start_by_ms passed while it waited: it does not run */
			not_started_error(job, why, sizeof why);
			job_fail(job, WORKER_NOT_STARTED, NULL, "%s", why);
			continue;
		}
		/* a probe may take its worker down: never queue work behind it */
		if (job->kind == JOB_PROBE && w->count > 0) {
			TAILQ_INSERT_HEAD(&pool->waiting[job->class], job, link);
			pool->waiting_count[job->class]++;
			if (!(w = least_loaded(pool, 1)))
				break;
			job = next_job(pool);
		}
		/* a job a worker retired on waits for a fresh worker (the one
		 * started in the retired one's place), which cannot retire on it */
		if (job->retired_once && (w->answered > 0 || w->count > 0)) {
			TAILQ_INSERT_HEAD(&pool->waiting[job->class], job, link);
			pool->waiting_count[job->class]++;
			if (!(w = fresh_idle_worker(pool)))
				break;
			job = next_job(pool);
		}
		if (send_job(w, job) < 0)
			job_fail(job, WORKER_CRASHED, NULL, "cannot send the job to a worker");
	}
	if (pool->on_idle)
		pool->on_idle(pool->on_idle_arg);
}

struct worker_pool *pool_new(struct event_base *base, int size,
			     const struct worker_limits *limits, const char *record_path)
{
	struct worker_pool *pool = calloc(1, sizeof *pool);

	if (!pool)
		return NULL;
	snprintf(pool->record_path, sizeof pool->record_path, "%s", record_path);
	reap_leftovers(record_path);
	pool->limits = *limits;
	pool->job_us = QUEUE_BUDGET_US;	/* one at a time until measured */
	pool->base = base;
	pool->size = size;
	pool->workers = calloc((size_t)size, sizeof *pool->workers);
	pool->kick = event_new(base, -1, 0, hand_out, pool);
	if (!pool->workers || !pool->kick) {
		free(pool->workers);
		free(pool);
		return NULL;
	}
	for (int c = 0; c < CLASS_COUNT; c++)
		TAILQ_INIT(&pool->waiting[c]);
	for (int i = 0; i < size; i++)
		spawn(pool, i);
	return pool;
}

void pool_free(struct worker_pool **pp)
{
	struct worker_pool *pool = *pp;

	if (!pool)
		return;
	for (int i = 0; i < pool->size; i++) {
		struct worker *w = pool->workers[i];

		if (!w)
			continue;
		kill(-w->pid, SIGKILL);
		waitpid(w->pid, NULL, 0);
		release_worker(w);
	}
	event_free(pool->kick);
	free(pool->workers);
	free(pool);
	*pp = NULL;
}

void pool_submit(struct worker_pool *pool, struct job *job)
{
	job->retired_once = false;
	TAILQ_INSERT_TAIL(&pool->waiting[job->class], job, link);
	pool->waiting_count[job->class]++;
	kick(pool);
}

/* Tells w not to start its job number seq (see worker.h). */
static int send_skip(struct worker *w, uint32_t seq)
{
	struct wire_out out;
	int rc = 0;

	wire_out_init(&out);
	wire_out_u32(&out, JOB_SKIP);
	wire_out_u32(&out, seq);
	if (wire_out_finish(&out) < 0 || bufferevent_write(w->channel, out.data, out.len) < 0)
		rc = -1;
	wire_out_free(&out);
	return rc;
}

enum cancel_outcome pool_cancel(struct worker_pool *pool, struct job *job)
{
	struct job *j;

	TAILQ_FOREACH(j, &pool->waiting[job->class], link) {
		if (j == job) {
			TAILQ_REMOVE(&pool->waiting[job->class], job, link);
			pool->waiting_count[job->class]--;
			return CANCEL_TAKEN_BACK;
		}
	}
	for (int i = 0; i < pool->size; i++) {
		struct worker *w = pool->workers[i];

		/* jobs[0] runs; those behind it wait in the worker */
		for (int k = 1; w && !w->dying && k < w->count; k++) {
			if (w->jobs[k] != job)
				continue;
			if (!job->skip_sent && send_skip(w, job->seq) == 0)
				job->skip_sent = true;
			return job->skip_sent ? CANCEL_ASKED : CANCEL_TOO_LATE;
		}
	}
	return CANCEL_TOO_LATE;
}

int pool_waiting(const struct worker_pool *pool, enum job_class c)
{
	return pool->waiting_count[c];
}

void pool_hold(struct worker_pool *pool, enum job_class c)
{
	pool->held[c] = true;
}

int pool_busy(const struct worker_pool *pool)
{
	int busy = 0;

	for (int i = 0; i < pool->size; i++)
		if (pool->workers[i] && pool->workers[i]->count > 0)
			busy++;
	return busy;
}

bool pool_uses_path(const struct worker_pool *pool, const char *path)
{
	const struct job *job;

	for (int c = 0; c < CLASS_COUNT; c++)
		TAILQ_FOREACH(job, &pool->waiting[c], link)
			if (!strcmp(job->path, path))
				return true;
	for (int i = 0; i < pool->size; i++) {
		const struct worker *w = pool->workers[i];

		for (int j = 0; w && j < w->count; j++)
			if (!strcmp(w->jobs[j]->path, path))
				return true;
	}
	return false;
}

int pool_size(const struct worker_pool *pool)
{
	return pool->size;
}

int pool_capacity(const struct worker_pool *pool)
{
	return pool->size * PIPELINE_MAX;
}

void pool_on_idle(struct worker_pool *pool, void (*cb)(void *arg), void *arg)
{
	pool->on_idle = cb;
	pool->on_idle_arg = arg;
}
