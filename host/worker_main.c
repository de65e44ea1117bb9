/*
 * worker_main.c - the code a worker process runs: read a job, load the
 * module version it names, run the probe or the handler, send the result
 * (the channel's framing and skips are in worker_channel.c).
 * Everything here runs in the worker process (see worker_exec.c); plugin
 * faults end this process only, and the host turns them into a failed
 * attempt.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../sdk/cage.h"
#include "log.h"
#include "worker.h"
#include "worker_channel.h"

/* The module version this worker has loaded. */
static struct {
	char path[4096];
	char label[NAME_MAX_LEN + RECORD_VERSION_MAX + 2];	/* module@version */
	void *handle;
	const struct cage_module *desc;
} loaded;

/* A running call: the SDK's cage_call. */
struct cage_call {
	struct cage_call_head head;
	const struct job *job;
	const char *version;
	char *reply;
	size_t reply_len;
	char error[RECORD_ERROR_MAX + 1];
	struct outgoing_call *outgoing;	/* cage_enqueue()s so far */
	int outgoing_count;
	size_t outgoing_bytes;
};

static const void *call_payload(const cage_call *call, size_t *len)
{
	if (len)
		*len = call->job->payload_len;
	return call->job->payload ? call->job->payload : "";
}

static const char *call_str(const cage_call *call, int which)
{
	switch (which) {
	case CAGE__ID: return call->job->id;
	case CAGE__QUEUE: return call->job->queue;
	case CAGE__MODULE: return call->job->module;
	case CAGE__METHOD: return call->job->method;
	case CAGE__VERSION: return call->version;
	default: return "";
	}
}

static uint32_t call_attempt(const cage_call *call)
{
	return call->job->attempt;
}

static int call_reply(cage_call *call, const void *data, size_t len)
{
	char *copy;

	/* the reply and the calls enqueued on other cages share one limit,
	 * so that the result always fits in a message */
	if (len > WORKER_MAX_REPLY - call->outgoing_bytes)
		return -1;
	copy = malloc(len + 1);
	if (!copy)
		return -1;
	memcpy(copy, data, len);
	copy[len] = '\0';
	free(call->reply);
	call->reply = copy;
	call->reply_len = len;
	return 0;
}

static void call_errorv(cage_call *call, const char *fmt, va_list ap)
{
	char raw[RECORD_ERROR_MAX + 1];

	vsnprintf(raw, sizeof raw, fmt, ap);
	record_clean_text(call->error, sizeof call->error, raw);
}

static void call_logv(cage_call *call, int level, const char *fmt, va_list ap)
{
	char raw[1024], text[1024];

	if (level < CAGE_LOG_ERROR)
		level = CAGE_LOG_ERROR;
	if (level > CAGE_LOG_DEBUG)
		level = CAGE_LOG_DEBUG;
	vsnprintf(raw, sizeof raw, fmt, ap);
	/* one line: a newline in it must not forge a line of the host's log */
	record_clean_text(text, sizeof text, raw);
	log_msg((enum log_level)level, "%s@%s%s%s: %s", call->job->module, call->version,
		call->job->id[0] ? " call " : "", call->job->id, text);
}

static bool valid_label(const char *s, size_t max)
{
	return s && strnlen(s, max + 1) <= max && name_is_valid(s, strlen(s));
}

static int call_enqueue(cage_call *call, const char *cage, const char *queue, const char *module,
			const char *method, const void *payload, size_t len)
{
	struct outgoing_call *grown, *o;

	if (!valid_label(cage, NAME_MAX_LEN) || !valid_label(queue, NAME_MAX_LEN) ||
	    !valid_label(module, NAME_MAX_LEN) || !valid_label(method, NAME_MAX_LEN) ||
	    (!payload && len) ||
	    call->outgoing_count == WORKER_MAX_OUTGOING ||
	    len > WORKER_MAX_REPLY - call->outgoing_bytes - call->reply_len)
		return -1;
	grown = realloc(call->outgoing, (size_t)(call->outgoing_count + 1) * sizeof *grown);
	if (!grown)
		return -1;
	call->outgoing = grown;
	o = &grown[call->outgoing_count];
	memset(o, 0, sizeof *o);
	o->payload = malloc(len + 1);
	if (!o->payload)
		return -1;
	if (len)
		memcpy(o->payload, payload, len);
	o->payload[len] = '\0';
	o->payload_len = len;
	snprintf(o->cage, sizeof o->cage, "%s", cage);
	snprintf(o->queue, sizeof o->queue, "%s", queue);
	snprintf(o->module, sizeof o->module, "%s", module);
	snprintf(o->method, sizeof o->method, "%s", method);
	call->outgoing_count++;
	call->outgoing_bytes += len;
	return 0;
}

static const struct cage_ops ops = {
	sizeof(struct cage_ops), call_payload, call_str, call_attempt,
	call_reply, call_errorv, call_logv, call_enqueue,
};

/* Checks the descriptor of a freshly loaded module; "" when fine. */
/* At most max bytes of a plugin's string, for a message: '?' for bytes
 * that are not printable ASCII, "(null)" for NULL. */
static const char *shown(const char *s, char *out, size_t max)
{
	size_t i = 0;

	if (!s)
		return "(null)";
	for (; s[i] && i + 1 < max; i++)
		out[i] = s[i] > ' ' && s[i] < 0x7f ? s[i] : '?';
	out[i] = '\0';
	return out;
}

static void check_descriptor(const struct cage_module *m, char *why, size_t size)
{
	char text[72];

	why[0] = '\0';
	if (m->abi_version != CAGE_ABI_VERSION) {
		snprintf(why, size, "built for ABI %u, host speaks ABI %u", m->abi_version,
			 (unsigned)CAGE_ABI_VERSION);
		return;
	}
	if (m->struct_size < sizeof(struct cage_module)) {
		snprintf(why, size, "descriptor is %u bytes, expected at least %zu",
			 m->struct_size, sizeof(struct cage_module));
		return;
	}
	if (!valid_label(m->version, 32)) {
		snprintf(why, size, "version string '%s' is not valid ([A-Za-z0-9_.-], 1 to 32 "
			 "characters, not starting with '.')", shown(m->version, text, 40));
		return;
	}
	if (!m->methods) {
		snprintf(why, size, "descriptor has no method table");
		return;
	}
	for (int i = 0; m->methods[i].name; i++) {
		if (i >= 256) {
			snprintf(why, size, "more than 256 methods (is the table ended by "
				 "{ NULL, NULL }?)");
			return;
		}
		if (!valid_label(m->methods[i].name, NAME_MAX_LEN)) {
			snprintf(why, size, "method #%d's name '%s' is not valid ([A-Za-z0-9_.-], "
				 "1 to %d characters, not starting with '.')", i + 1,
				 shown(m->methods[i].name, text, sizeof text), NAME_MAX_LEN);
			return;
		}
		if (!m->methods[i].handler) {
			snprintf(why, size, "method %s (#%d) has no handler", m->methods[i].name,
				 i + 1);
			return;
		}
		for (int j = 0; j < i; j++) {
			if (!strcmp(m->methods[j].name, m->methods[i].name)) {
				snprintf(why, size, "method %s is listed twice (#%d and #%d)",
					 m->methods[i].name, j + 1, i + 1);
				return;
			}
		}
	}
}

/* Threads of this process (/proc/self/status), or 0 when that cannot be
 * read (every descriptor taken, say). */
static int thread_count(void)
{
	char line[256];
	int n = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * True when loading job's module would unload one that left threads
 * running: the worker has no thread of its own, so any other is the
 * module's, and it would crash in the middle of job once dlclose unmaps
 * its code.  Such a worker retires instead (worker.h).
 */
static bool threads_left_behind(const struct job *job)
{
	int threads;

	if (!loaded.handle || !strcmp(loaded.path, job->path))
		return false;
	threads = thread_count();
	if (threads == 1)
		return false;
	if (threads == 0)
		log_warning("cannot count this worker's threads (no /proc/self/status), so %s may "
			    "have left some running; this worker ends before loading %s@%s, and a "
			    "fresh one runs that", loaded.label, job->module, job->version);
	else
		log_warning("%s left %d thread%s running; this worker ends before loading "
			    "%s@%s, and a fresh one runs that", loaded.label, threads - 1,
			    threads == 2 ? "" : "s", job->module, job->version);
	return true;
}

/* Makes job's module version the loaded one.  Returns 0, or -1 with why. */
static int load(const struct job *job, char *why, size_t size)
{
	const char *path = job->path;
	void *handle;
	const struct cage_module *desc;

	if (loaded.handle && !strcmp(loaded.path, path))
		return 0;
	if (loaded.handle) {
		dlclose(loaded.handle);
		loaded.handle = NULL;
		loaded.desc = NULL;
	}
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		snprintf(why, size, "cannot load: %s", dlerror());
		return -1;
	}
	desc = dlsym(handle, CAGE_MODULE_SYMBOL);
	if (!desc) {
		snprintf(why, size, "no '%s' descriptor (declare one with CAGE_MODULE)",
			 CAGE_MODULE_SYMBOL);
		dlclose(handle);
		return -1;
	}
	check_descriptor(desc, why, size);
	if (why[0]) {
		dlclose(handle);
		return -1;
	}
	snprintf(loaded.path, sizeof loaded.path, "%s", path);
	snprintf(loaded.label, sizeof loaded.label, "%s@%s", job->module, job->version);
	loaded.handle = handle;
	loaded.desc = desc;
	return 0;
}

/* The worker ends: whatever its plugins forked ends with it (the worker
 * leads its own process group; see worker_pool.c). */
__attribute__((noreturn))
static void end_worker(int status)
{
	if (getpgrp() == getpid())
		kill(0, SIGKILL);
	_exit(status);
}

static void send_result(int fd, const struct job_result *res)
{
	if (channel_send_result(fd, res) < 0)
		end_worker(WORKER_EXIT_CHANNEL_LOST);
}

static void probe(const struct job *job, struct job_result *res)
{
	size_t n = 0;

	/* a version string is at most 32 bytes (checked on load), the hash 8 */
	snprintf(res->version, sizeof res->version, "%.32s+%.8s", loaded.desc->version,
		 job->version);
	/* the list is for people (logs, GET /v1/modules): cut, with a mark,
	 * where it would not fit */
	for (int i = 0; loaded.desc->methods[i].name; i++) {
		size_t left = sizeof res->methods - sizeof " ..." - n;
		int w = snprintf(res->methods + n, left, "%s%s", i ? " " : "",
				 loaded.desc->methods[i].name);

		if (w < 0 || (size_t)w >= left) {
			snprintf(res->methods + n, sizeof res->methods - n, " ...");
			break;
		}
		n += (size_t)w;
	}
	res->status = WORKER_OK;
}

static void run_call(const struct job *job, struct job_result *res)
{
	struct cage_call call = { { &ops }, job, job->version, NULL, 0, "", NULL, 0, 0 };
	cage_outcome outcome;
	cage_handler handler = NULL;

	snprintf(res->version, sizeof res->version, "%s", job->version);
	for (int i = 0; loaded.desc->methods[i].name; i++)
		if (!strcmp(loaded.desc->methods[i].name, job->method))
			handler = loaded.desc->methods[i].handler;
	if (!handler) {
		res->status = WORKER_NO_METHOD;
		snprintf(res->error, sizeof res->error, "module %s@%s has no method %s",
			 job->module, job->version, job->method);
		return;
	}
	outcome = handler(&call);
	res->reply = call.reply;
	res->reply_len = call.reply_len;
	snprintf(res->error, sizeof res->error, "%s", call.error);
	/* calls enqueued on other cages go with an OK only */
	res->outgoing = call.outgoing;
	res->outgoing_count = call.outgoing_count;
	if (outcome != CAGE_OK)
		job_result_drop_outgoing(res);
	switch (outcome) {
	case CAGE_OK: res->status = WORKER_OK; break;
	case CAGE_RETRY: res->status = WORKER_RETRY; break;
	case CAGE_FAIL: res->status = WORKER_FAIL; break;
	default:
		res->status = WORKER_BAD_OUTCOME;
		snprintf(res->error, sizeof res->error, "handler %s.%s returned %d, not OK/RETRY/FAIL",
			 job->module, job->method, (int)outcome);
	}
}

/* Gives the next job cpu_ms of CPU time from now (SIGXCPU past it). */
static void limit_cpu(int64_t cpu_ms)
{
	struct rusage used;
	struct rlimit rl;

	int64_t used_ms;

	if (cpu_ms <= 0 || getrusage(RUSAGE_SELF, &used) < 0)
		return;
	used_ms = (int64_t)(used.ru_utime.tv_sec + used.ru_stime.tv_sec) * 1000 +
		  (used.ru_utime.tv_usec + used.ru_stime.tv_usec) / 1000;
	/* whole seconds only: round up, so the job gets at least cpu_ms */
	rl.rlim_cur = (rlim_t)((used_ms + cpu_ms + 999) / 1000);
	rl.rlim_max = RLIM_INFINITY;
	setrlimit(RLIMIT_CPU, &rl);
}

/* True when bytes wait in the output pipe (FIONREAD works on either end
 * of a pipe); true too when that cannot be told, so that nothing is
 * named after the wrong job. */
static bool output_waiting(void)
{
	int n = 0;

	return ioctl(STDOUT_FILENO, FIONREAD, &n) < 0 || n > 0;
}

void worker_main(int fd, int64_t cpu_limit_ms)
{
	unsigned loads = 0;	/* jobs whose module loaded */
	char tag[32];

	snprintf(tag, sizeof tag, "worker %d", (int)getpid());
	log_set_tag(tag);
	for (;;) {
		struct job job;
		struct job_result res;

		if (channel_read_job(fd, &job) < 0)
			end_worker(0);	/* the host closed the channel: done */
		memset(&res, 0, sizeof res);
		if (channel_skip_asked(job.seq)) {
			res.status = WORKER_NOT_STARTED;
			send_result(fd, &res);
			continue;
		}
		if (threads_left_behind(&job)) {
			res.status = WORKER_RETIRED;
			send_result(fd, &res);
			end_worker(0);
		}
		limit_cpu(cpu_limit_ms);
		if (load(&job, res.error, sizeof res.error) < 0) {
			res.status = WORKER_LOAD_FAILED;
		} else {
			loads++;
			if (job.kind == JOB_PROBE)
				probe(&job, &res);
			else
				run_call(&job, &res);
		}
		/* what the job printed goes into the output pipe before its
		 * result, which says so: the host reads the pipe first
		 * (worker_output.h) */
		fflush(stdout);
		fflush(stderr);
		res.printed = output_waiting();
		send_result(fd, &res);
		job_result_release(&res);
		if (res.status == WORKER_LOAD_FAILED && job.kind != JOB_PROBE && loads > 0) {
			/* this version passed its check, so the fault is this
			 * process's: descriptors, memory or threads an earlier
			 * module left behind.  A fresh worker takes over (the
			 * host hands it the jobs behind this one).  A fresh
			 * worker that fails the same way stays: ending it
			 * would only start another. */
			log_warning("%s@%s: %s; this worker ends, a fresh one takes its place",
				    job.module, job.version, res.error);
			end_worker(0);
		}
	}
}
