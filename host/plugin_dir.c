/*
 * plugin_dir.c - the module registry: scanning and watching the plugin
 * directory, checking and copying new versions, probing them in a worker,
 * and routing call jobs to the newest good version (see plugin_dir.h).
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_check.h"
#include "log.h"
#include "names.h"
#include "plugin_dir.h"
#include "write_all.h"

#define DEBOUNCE_MS 100
#define PROBE_TIMEOUT_MS 10000
#define MAX_PLUGIN_BYTES ((size_t)256 << 20)
#define HASH_LEN 16
#define RETIRED_CHECK_MS 1000	/* how often retired copies are looked at */
/* a file that could not be read or copied for want of descriptors, memory
 * or space is read again this long after, the wait doubling up to the max */
#define PASSING_RETRY_MS 1000
#define PASSING_RETRY_MAX_MS 10000

struct file_state {
	bool valid;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct module {
	struct plugin_dir *dir;
	char name[NAME_MAX_LEN + 1];
	char file[PATH_MAX];		/* plugin_dir/NAME.so */

	bool good;			/* the current good version: */
	char version[RECORD_VERSION_MAX + 1];
	char hash[HASH_LEN + 1];
	char path[PATH_MAX];		/* its private copy */
	char methods[2048];

	struct file_state seen;		/* the file as last evaluated */
	struct timeval looked_at;	/* the loop turn of the last look before a job */
	char refused_hash[HASH_LEN + 1];	/* the bytes a probe refused last */
	char refused_hash_why[512];	/* the reason it gave */
	char refused_why[512];		/* why the file was refused last; cleared when a
					 * version of it passes, or it goes */
	bool probing, recheck;
	char probe_hash[HASH_LEN + 1];
	char probe_path[PATH_MAX];
	struct job probe;

	struct event *debounce;		/* evaluates after file events */
	struct event *retry;		/* reads the file again (refuse_for_now) */
	int retry_ms;			/* the wait of that retry; 0: none pending */
	int probe_wait_ms;		/* retry_ms before the probe (refuse_for_now) */
	TAILQ_HEAD(, job) parked;	/* jobs waiting for the probe */
	struct module *next;
};

/* The private copy of a version no longer in service, kept while jobs
 * handed out before its replacement still name it. */
struct retired {
	char path[PATH_MAX];
	struct retired *next;
};

struct plugin_dir {
	struct event_base *base;
	struct worker_pool *pool;
	char dir[PATH_MAX];
	char cache_dir[PATH_MAX];
	int inotify_fd, watch;
	struct event *inotify_ev;
	struct event *rewatch;		/* retries a lost watch */
	struct module *modules;
	bool ready;
	struct event *ready_check;
	TAILQ_HEAD(, job) failed;	/* jobs to end with WORKER_NO_MODULE */
	struct retired *retired;
	struct event *retired_check;
	struct event *fail_ev;
	new_version_fn on_new_version;
	void *on_new_version_arg;
	void (*on_ready)(void *arg);
	void *on_ready_arg;
};

static void evaluate(struct module *m, bool force);

static uint64_t fnv1a64(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static bool module_file_name(const char *file, char *name, size_t size)
{
	size_t len = strlen(file);

	if (len < 4 || strcmp(file + len - 3, ".so") != 0 || !name_is_valid(file, len - 3) ||
	    len - 3 >= size)
		return false;
	memcpy(name, file, len - 3);
	name[len - 3] = '\0';
	return true;
}

/* A *.so file that cannot be a module (dot files are left alone: staging). */
static void note_bad_file_name(const struct plugin_dir *p, const char *file)
{
	size_t len = strlen(file);

	if (len > 3 && !strcmp(file + len - 3, ".so") && file[0] != '.')
		log_warning("ignored %s/%s: '%.*s' is not a module name (letters, digits, '_', "
			    "'-', '.'; 1 to %d; not starting with '.')", p->dir, file,
			    (int)(len - 3), file, NAME_MAX_LEN);
}

static struct module *find(struct plugin_dir *p, const char *name)
{
	for (struct module *m = p->modules; m; m = m->next)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

static void on_debounce(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evaluate(arg, false);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evaluate(arg, true);	/* the file has not changed: read it all the same */
}

static struct module *find_or_add(struct plugin_dir *p, const char *name)
{
	struct module *m = find(p, name);

	if (m)
		return m;
	m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->dir = p;
	snprintf(m->name, sizeof m->name, "%s", name);
	if (snprintf(m->file, sizeof m->file, "%s/%s.so", p->dir, name) >= (int)sizeof m->file) {
		free(m);
		return NULL;
	}
	m->debounce = evtimer_new(p->base, on_debounce, m);
	m->retry = evtimer_new(p->base, on_retry, m);
	if (!m->debounce || !m->retry) {
		if (m->debounce)
			event_free(m->debounce);
		if (m->retry)
			event_free(m->retry);
		free(m);
		return NULL;
	}
	TAILQ_INIT(&m->parked);
	m->next = p->modules;
	p->modules = m;
	return m;
}

static void check_ready(struct plugin_dir *p)
{
	if (p->ready)
		return;
	for (struct module *m = p->modules; m; m = m->next)
		if (m->probing)
			return;
	p->ready = true;
	log_info("plugin directory %s: %d module(s) loaded", p->dir, plugins_count(p));
	if (p->on_ready)
		p->on_ready(p->on_ready_arg);
}

static void release_parked(struct module *m)
{
	TAILQ_HEAD(, job) jobs;
	struct job *job;

	TAILQ_INIT(&jobs);
	TAILQ_CONCAT(&jobs, &m->parked, link);
	while ((job = TAILQ_FIRST(&jobs))) {
		TAILQ_REMOVE(&jobs, job, link);
		plugins_run(m->dir, job);
	}
}

static bool same_file(const struct file_state *a, const struct stat *st)
{
	return a->valid && a->dev == st->st_dev && a->ino == st->st_ino &&
	       a->size == st->st_size && a->mtime.tv_sec == st->st_mtim.tv_sec &&
	       a->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	       a->ctime.tv_sec == st->st_ctim.tv_sec && a->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static void remember(struct file_state *s, const struct stat *st)
{
	s->valid = true;
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime = st->st_mtim;
	s->ctime = st->st_ctim;
}

static void refuse(struct module *m, const char *why)
{
	snprintf(m->refused_why, sizeof m->refused_why, "%s", why);
	if (m->good)
		log_warning("refused %s: %s; %s@%s stays in service", m->file, why, m->name,
			    m->version);
	else
		log_warning("refused %s: %s; module %s has no good version", m->file, why,
			    m->name);
}

/* refuse(), logged only when the reason is not the one given last (a file
 * looked at again and again for the same cause) */
static void refuse_once(struct module *m, const char *why)
{
	if (strcmp(m->refused_why, why) != 0)
		refuse(m, why);
}

/* errno values that say nothing about the file, and may be gone soon: no
 * file descriptor, memory or disk space left */
static const int passing_errors[] = { EMFILE, ENFILE, ENOMEM, ENOSPC, EDQUOT };
#define PASSING_ERRORS (sizeof passing_errors / sizeof *passing_errors)

static bool passing_error(int e)
{
	for (size_t i = 0; i < PASSING_ERRORS; i++)
		if (e == passing_errors[i])
			return true;
	return false;
}

/* A probe's error names a passing_error() (the worker's dlopen() says
 * "cannot open shared object file: Too many open files", say). */
static bool passing_probe_error(const char *error)
{
	for (size_t i = 0; i < PASSING_ERRORS; i++)
		if (strstr(error, strerror(passing_errors[i])))
			return true;
	return false;
}

/*
 * The file could not be read, copied or loaded (by a worker's probe) for
 * want of descriptors, memory or disk space (passing_error): it is refused
 * for now, logged once for that reason (until a read of it works), and
 * read again PASSING_RETRY_MS later - last_wait_ms after a retry that
 * failed so: twice that, up to PASSING_RETRY_MAX_MS - until it can be or
 * the file changes.  A version in service stays meanwhile.
 */
static void refuse_for_now(struct module *m, const char *why, int last_wait_ms)
{
	char text[sizeof m->refused_why];
	struct timeval later;

	snprintf(text, sizeof text, "%s (read again, at most %d s apart, until it can be)", why,
		 PASSING_RETRY_MAX_MS / 1000);
	refuse_once(m, text);
	m->retry_ms = last_wait_ms ? 2 * last_wait_ms : PASSING_RETRY_MS;
	if (m->retry_ms > PASSING_RETRY_MAX_MS)
		m->retry_ms = PASSING_RETRY_MAX_MS;
	later.tv_sec = m->retry_ms / 1000;
	later.tv_usec = m->retry_ms % 1000 * 1000;
	evtimer_add(m->retry, &later);
}

/*
 * Reads the whole file; NULL and why on failure (*err: an errno when that
 * is the cause, else 0), NULL and why "" if it changed.
 */
static unsigned char *read_plugin(struct module *m, size_t *len, char *why, size_t why_size,
				  int *err)
{
	struct stat before, after;
	unsigned char *data = NULL;
	size_t got = 0;
	int fd;

	why[0] = '\0';
	*err = 0;
	fd = open(m->file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		*err = errno;
		snprintf(why, why_size, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &before) < 0 || !S_ISREG(before.st_mode)) {
		snprintf(why, why_size, "not a regular file");
		goto fail;
	}
	if ((size_t)before.st_size > MAX_PLUGIN_BYTES) {
		snprintf(why, why_size, "larger than %zu MiB", MAX_PLUGIN_BYTES >> 20);
		goto fail;
	}
	data = malloc((size_t)before.st_size + 1);
	if (!data) {
		*err = ENOMEM;
		snprintf(why, why_size, "out of memory");
		goto fail;
	}
	while (got < (size_t)before.st_size) {
		ssize_t n = read(fd, data + got, (size_t)before.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (fstat(fd, &after) < 0 || got != (size_t)before.st_size ||
	    after.st_size != before.st_size ||
	    after.st_mtim.tv_nsec != before.st_mtim.tv_nsec ||
	    after.st_mtim.tv_sec != before.st_mtim.tv_sec)
		goto fail;	/* being written: look again after the next event */
	close(fd);
	*len = got;
	return data;
fail:
	free(data);
	close(fd);
	return NULL;
}

/* Writes the private copy at path; -1 and why (and the errno in *err) on
 * failure. */
static int write_copy(const char *path, const unsigned char *data, size_t len,
		      char *why, size_t why_size, int *err)
{
	char tmp[PATH_MAX + 16];
	int fd;

	if (access(path, F_OK) == 0)
		return 0;	/* copies are immutable: same name, same bytes */
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
	if (fd < 0) {
		*err = errno;
		snprintf(why, why_size, "cannot create private copy %.300s: %s", tmp, strerror(errno));
		return -1;
	}
	if (write_all(fd, data, len) < 0) {
		*err = errno;
		snprintf(why, why_size, "cannot write private copy: %s", strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		*err = errno;
		snprintf(why, why_size, "cannot install private copy: %s", strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Is path a module's version in service, or one being checked?  (The
 * same bytes come back as the same path: a rollback, a file put back.) */
static bool in_service(const struct plugin_dir *p, const char *path)
{
	for (const struct module *m = p->modules; m; m = m->next)
		if ((m->good && !strcmp(m->path, path)) || (m->probing && !strcmp(m->probe_path, path)))
			return true;
	return false;
}

static bool is_retired(const struct plugin_dir *p, const char *path)
{
	for (const struct retired *r = p->retired; r; r = r->next)
		if (!strcmp(r->path, path))
			return true;
	return false;
}

/* Deletes the retired copies no job names any more; a copy back in
 * service is no longer retired. */
static void sweep_retired(struct plugin_dir *p)
{
	struct timeval again = { RETIRED_CHECK_MS / 1000, RETIRED_CHECK_MS % 1000 * 1000 };
	struct retired **r = &p->retired;

	while (*r) {
		bool serves = in_service(p, (*r)->path);

		if (serves || !pool_uses_path(p->pool, (*r)->path)) {
			struct retired *done = *r;

			if (!serves)
				unlink(done->path);
			*r = done->next;
			free(done);
		} else {
			r = &(*r)->next;
		}
	}
	if (p->retired)
		evtimer_add(p->retired_check, &again);
}

static void on_retired_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sweep_retired(arg);
}

/*
 * The private copy at path is out of service: deleted once no job handed
 * out before names it (a worker opens it when the job starts; replacing a
 * module must not fail the calls already on their way to the old one).
 */
static void retire(struct plugin_dir *p, const char *path)
{
	struct retired *r;

	if (in_service(p, path) || is_retired(p, path))
		return;
	if (!pool_uses_path(p->pool, path)) {
		unlink(path);
		return;
	}
	r = calloc(1, sizeof *r);
	if (!r) {
		unlink(path);	/* those jobs will fail to load it, and be retried */
		return;
	}
	snprintf(r->path, sizeof r->path, "%s", path);
	r->next = p->retired;
	p->retired = r;
	if (!evtimer_pending(p->retired_check, NULL))
		sweep_retired(p);
}

static void probe_done(struct job *job, struct job_result *res)
{
	struct module *m = job->arg;
	struct plugin_dir *p = m->dir;
	char old_path[PATH_MAX], old_version[RECORD_VERSION_MAX + 1];
	bool had = m->good;

	m->probing = false;
	if (res->status == WORKER_OK) {
		snprintf(old_path, sizeof old_path, "%s", m->path);
		snprintf(old_version, sizeof old_version, "%s", m->version);
		m->good = true;
		m->refused_why[0] = '\0';
		snprintf(m->version, sizeof m->version, "%s", res->version);
		snprintf(m->hash, sizeof m->hash, "%s", m->probe_hash);
		snprintf(m->path, sizeof m->path, "%s", m->probe_path);
		snprintf(m->methods, sizeof m->methods, "%s", res->methods);
		if (had) {
			log_info("replaced %s@%s with %s@%s from %s (methods: %s)", m->name,
				 old_version, m->name, m->version, m->file, m->methods);
			if (strcmp(old_path, m->path) != 0)
				retire(p, old_path);
		} else {
			log_info("loaded %s@%s from %s (methods: %s)", m->name, m->version,
				 m->file, m->methods);
		}
	} else if (passing_probe_error(res->error)) {
		/* the worker had no descriptor or memory to load it: not these
		 * bytes' fault, so they are not refused for good */
		retire(p, m->probe_path);
		refuse_for_now(m, res->error, m->probe_wait_ms);
	} else {
		snprintf(m->refused_hash, sizeof m->refused_hash, "%s", m->probe_hash);
		snprintf(m->refused_hash_why, sizeof m->refused_hash_why, "%.500s",
			 res->error[0] ? res->error : "probe failed");
		retire(p, m->probe_path);	/* a copy jobs still name stays until they are done */
		refuse(m, m->refused_hash_why);
	}
	if (m->recheck) {
		m->recheck = false;
		evaluate(m, false);
	}
	if (!m->probing) {
		release_parked(m);
		if (res->status == WORKER_OK && p->on_new_version)
			p->on_new_version(m->name, m->version, p->on_new_version_arg);
	}
	check_ready(p);
}

static bool safe_permissions(struct module *m, const struct stat *st, char *why, size_t size)
{
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, size, "file is writable by group or others (mode %03o)",
			 (unsigned)(st->st_mode & 0777));
		return false;
	}
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		snprintf(why, size, "file is owned by another user (uid %u)", (unsigned)st->st_uid);
		return false;
	}
	(void)m;
	return true;
}

/*
 * Loading code from a directory others can write is running their code:
 * the plugin directory must not be writable by group or others, nor owned
 * by another user than root or the host's.
 */
static bool safe_directory(const struct plugin_dir *p, char *why, size_t size)
{
	struct stat st;

	if (stat(p->dir, &st) < 0) {
		snprintf(why, size, "plugin directory: %s", strerror(errno));
		return false;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(why, size, "plugin directory %.300s is writable by group or others (mode %03o)",
			 p->dir, (unsigned)(st.st_mode & 0777));
		return false;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(why, size, "plugin directory %.300s is owned by another user (uid %u)", p->dir,
			 (unsigned)st.st_uid);
		return false;
	}
	return true;
}

static void forget_version(struct module *m, const char *why)
{
	if (!m->good)
		return;
	log_warning("%s: %s; module %s is no longer available", m->file, why, m->name);
	m->good = false;
	retire(m->dir, m->path);
}

static void evaluate(struct module *m, bool force)
{
	struct plugin_dir *p = m->dir;
	char why[512], hash[HASH_LEN + 1];
	unsigned char *data;
	int last_wait_ms, err;
	struct stat st;
	size_t len;

	if (m->probing) {
		m->recheck = true;
		return;
	}
	evtimer_del(m->debounce);
	if (stat(m->file, &st) < 0) {
		bool gone = errno == ENOENT || errno == ENOTDIR;

		snprintf(why, sizeof why, "cannot stat: %s", strerror(errno));
		evtimer_del(m->retry);
		m->retry_ms = 0;
		m->seen.valid = false;
		if (!gone) {
			/* there, but not a file the host can look at (a
			 * symbolic link to itself, say): refused, a good
			 * version kept, looked at again at the next event or
			 * job */
			refuse_once(m, why);
			return;
		}
		m->refused_hash[0] = '\0';
		m->refused_why[0] = '\0';
		forget_version(m, "file removed");
		return;
	}
	if (!force && same_file(&m->seen, &st))
		return;	/* a retry armed by refuse_for_now() stays armed */
	evtimer_del(m->retry);
	/* a changed file starts the retries afresh */
	last_wait_ms = same_file(&m->seen, &st) ? m->retry_ms : 0;
	m->retry_ms = 0;
	remember(&m->seen, &st);
	if (!S_ISREG(st.st_mode)) {
		refuse(m, "not a regular file");
		return;
	}
	if (!safe_directory(p, why, sizeof why) || !safe_permissions(m, &st, why, sizeof why)) {
		refuse(m, why);
		return;
	}
	data = read_plugin(m, &len, why, sizeof why, &err);
	if (!data) {
		if (!why[0])
			m->seen.valid = false;	/* changed while read: look again */
		else if (passing_error(err))
			refuse_for_now(m, why, last_wait_ms);
		else
			refuse(m, why);
		return;
	}
	snprintf(hash, sizeof hash, "%016" PRIx64, fnv1a64(data, len));
	if ((m->good && !strcmp(hash, m->hash)) || !strcmp(hash, m->refused_hash)) {
		/* content already judged (touch, rewrite of same bytes): the
		 * reason it was refused for, not a refusal in between (the
		 * file unreadable for a moment), is the one to give */
		if (!strcmp(hash, m->refused_hash))
			snprintf(m->refused_why, sizeof m->refused_why, "%s", m->refused_hash_why);
		else
			m->refused_why[0] = '\0';
		free(data);
		return;
	}
	if (elf_check_shared_object(data, len, why, sizeof why) < 0) {
		/* a file being copied in looks like this until it is complete */
		free(data);
		refuse(m, why);
		return;
	}
	if (snprintf(m->probe_path, sizeof m->probe_path, "%s/%s-%s.so", p->cache_dir, m->name,
		     hash) >= (int)sizeof m->probe_path) {
		free(data);
		refuse(m, "path of the private copy is too long");
		return;
	}
	if (write_copy(m->probe_path, data, len, why, sizeof why, &err) < 0) {
		free(data);
		if (passing_error(err))
			refuse_for_now(m, why, last_wait_ms);
		else
			refuse(m, why);
		return;
	}
	free(data);
	snprintf(m->probe_hash, sizeof m->probe_hash, "%s", hash);
	memset(&m->probe, 0, sizeof m->probe);
	m->probe.kind = JOB_PROBE;
	m->probe.class = CLASS_PROBE;
	snprintf(m->probe.path, sizeof m->probe.path, "%s", m->probe_path);
	snprintf(m->probe.module, sizeof m->probe.module, "%s", m->name);
	snprintf(m->probe.version, sizeof m->probe.version, "%.8s", hash);
	m->probe.timeout_ms = PROBE_TIMEOUT_MS;
	m->probe.done = probe_done;
	m->probe.arg = m;
	m->probe_wait_ms = last_wait_ms;
	m->probing = true;
	pool_submit(p->pool, &m->probe);
}

static void scan(struct plugin_dir *p, bool force)
{
	char name[NAME_MAX_LEN + 1];
	struct dirent *e;
	DIR *d = opendir(p->dir);

	if (!d) {
		log_error("cannot read plugin directory %s: %s", p->dir, strerror(errno));
		return;
	}
	while ((e = readdir(d))) {
		struct module *m;

		if (!module_file_name(e->d_name, name, sizeof name)) {
			if (force)	/* at start; later, inotify events say it */
				note_bad_file_name(p, e->d_name);
			continue;
		}
		m = find_or_add(p, name);
		if (m)
			evaluate(m, force);
	}
	closedir(d);
	for (struct module *m = p->modules; m; m = m->next)
		evaluate(m, false);	/* notices files that went away */
}

static int add_watch(struct plugin_dir *p)
{
	char why[512];

	if (!safe_directory(p, why, sizeof why))
		log_error("%s: no module in it will be loaded until that is fixed", why);
	p->watch = inotify_add_watch(p->inotify_fd, p->dir,
				     IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
				     IN_CREATE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF |
				     IN_ONLYDIR);
	if (p->watch < 0) {
		log_error("cannot watch plugin directory %s: %s", p->dir, strerror(errno));
		return -1;
	}
	return 0;
}

static void on_rewatch(evutil_socket_t fd, short what, void *arg)
{
	struct plugin_dir *p = arg;
	struct timeval again = { 1, 0 };

	(void)fd;
	(void)what;
	if (add_watch(p) < 0) {
		evtimer_add(p->rewatch, &again);
		return;
	}
	log_info("watching plugin directory %s again", p->dir);
	scan(p, false);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct plugin_dir *p = arg;
	char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct timeval debounce = { 0, DEBOUNCE_MS * 1000 };
	char name[NAME_MAX_LEN + 1];
	bool rescan = false, lost = false, dir_changed = false;
	ssize_t n;

	(void)what;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		for (char *at = buf; at < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)at;
			struct module *m;

			at += sizeof *ev + ev->len;
			if (ev->mask & IN_Q_OVERFLOW)
				rescan = true;
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
				lost = true;
			if (!ev->len) {
				/* the directory's own mode or owner: a file
				 * refused for them may pass now */
				if (ev->mask & IN_ATTRIB)
					dir_changed = true;
				continue;
			}
			if (!module_file_name(ev->name, name, sizeof name)) {
				if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
					note_bad_file_name(p, ev->name);
				continue;
			}
			m = find_or_add(p, name);
			if (m)
				evtimer_add(m->debounce, &debounce);
		}
	}
	if (dir_changed) {
		for (struct module *m = p->modules; m; m = m->next) {
			m->seen.valid = false;	/* read again, though unchanged */
			evtimer_add(m->debounce, &debounce);
		}
	}
	if (lost) {
		log_warning("lost the watch on plugin directory %s; retrying", p->dir);
		inotify_rm_watch(p->inotify_fd, p->watch);
		event_active(p->rewatch, EV_TIMEOUT, 0);
	} else if (rescan) {
		log_warning("inotify queue overflowed; rescanning %s", p->dir);
		scan(p, false);
	}
}

static void complete_failed(evutil_socket_t fd, short what, void *arg)
{
	struct plugin_dir *p = arg;
	struct job *job;

	(void)fd;
	(void)what;
	while ((job = TAILQ_FIRST(&p->failed))) {
		const struct module *m = find(p, job->module);

		TAILQ_REMOVE(&p->failed, job, link);
		if (m && !m->good && m->refused_why[0])
			/* the file is there: say why it is not in service */
			job_fail(job, WORKER_LOAD_FAILED, NULL, "module %s has no good version: "
				 "%s.so was refused: %s", job->module, job->module, m->refused_why);
		else
			job_fail(job, WORKER_NO_MODULE, NULL, "no module %s", job->module);
	}
}

static void on_ready_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check_ready(arg);
}

static void empty_cache(const char *cache_dir)
{
	char path[PATH_MAX * 2];
	struct dirent *e;
	DIR *d = opendir(cache_dir);

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

struct plugin_dir *plugins_new(struct event_base *base, struct worker_pool *pool,
			       const char *dir, const char *cache_dir)
{
	struct plugin_dir *p = calloc(1, sizeof *p);

	if (!p)
		return NULL;
	p->base = base;
	p->pool = pool;
	p->inotify_fd = -1;
	snprintf(p->dir, sizeof p->dir, "%s", dir);
	snprintf(p->cache_dir, sizeof p->cache_dir, "%s", cache_dir);
	TAILQ_INIT(&p->failed);
	if (mkdir(cache_dir, 0700) < 0 && errno != EEXIST) {
		log_error("cannot create %s: %s", cache_dir, strerror(errno));
		goto fail;
	}
	empty_cache(cache_dir);
	p->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (p->inotify_fd < 0) {
		log_error("inotify_init1: %s", strerror(errno));
		goto fail;
	}
	if (add_watch(p) < 0)
		goto fail;
	p->inotify_ev = event_new(base, p->inotify_fd, EV_READ | EV_PERSIST, on_inotify, p);
	p->rewatch = evtimer_new(base, on_rewatch, p);
	p->fail_ev = event_new(base, -1, 0, complete_failed, p);
	p->ready_check = event_new(base, -1, 0, on_ready_check, p);
	p->retired_check = evtimer_new(base, on_retired_check, p);
	if (!p->inotify_ev || !p->rewatch || !p->fail_ev || !p->ready_check || !p->retired_check)
		goto fail;
	event_add(p->inotify_ev, NULL);
	scan(p, true);
	event_active(p->ready_check, EV_TIMEOUT, 0);
	return p;
fail:
	plugins_free(&p);
	return NULL;
}

void plugins_free(struct plugin_dir **pp)
{
	struct plugin_dir *p = *pp;

	if (!p)
		return;
	while (p->modules) {
		struct module *next = p->modules->next;

		event_free(p->modules->debounce);
		event_free(p->modules->retry);
		free(p->modules);
		p->modules = next;
	}
	if (p->inotify_ev)
		event_free(p->inotify_ev);
	if (p->rewatch)
		event_free(p->rewatch);
	if (p->fail_ev)
		event_free(p->fail_ev);
	if (p->ready_check)
		event_free(p->ready_check);
	if (p->retired_check)
		event_free(p->retired_check);
	while (p->retired) {
		struct retired *next = p->retired->next;

		unlink(p->retired->path);
		free(p->retired);
		p->retired = next;
	}
	if (p->inotify_fd >= 0)
		close(p->inotify_fd);
	free(p);
	*pp = NULL;
}

void plugins_on_new_version(struct plugin_dir *p, new_version_fn cb, void *arg)
{
	p->on_new_version = cb;
	p->on_new_version_arg = arg;
}

void plugins_on_ready(struct plugin_dir *p, void (*cb)(void *arg), void *arg)
{
	p->on_ready = cb;
	p->on_ready_arg = arg;
}

void plugins_run(struct plugin_dir *p, struct job *job)
{
	struct module *m = find(p, job->module);
	struct stat st;

	if (!m && name_is_valid(job->module, strlen(job->module))) {
		char file[PATH_MAX + NAME_MAX_LEN + 8];

		/* a file no event has told us about yet (lstat: a link that
		 * cannot be followed is there too, and is refused with why) */
		snprintf(file, sizeof file, "%s/%s.so", p->dir, job->module);
		if (lstat(file, &st) == 0)
			m = find_or_add(p, job->module);
	}
	if (m) {
		struct timeval turn;

		/* look at the file once per loop turn: the jobs a turn starts
		 * all start at that moment (the time is the turn's cached one) */
		event_base_gettimeofday_cached(p->base, &turn);
		if (evutil_timercmp(&turn, &m->looked_at, !=)) {
			m->looked_at = turn;
			evaluate(m, false);
		}
	}
	if (m && m->probing) {
		TAILQ_INSERT_TAIL(&m->parked, job, link);
		return;
	}
	if (!m || !m->good) {
		TAILQ_INSERT_TAIL(&p->failed, job, link);
		event_active(p->fail_ev, EV_TIMEOUT, 0);
		return;
	}
	snprintf(job->path, sizeof job->path, "%s", m->path);
	snprintf(job->version, sizeof job->version, "%s", m->version);
	pool_submit(p->pool, job);
}

int plugins_count(const struct plugin_dir *p)
{
	int n = 0;

	for (const struct module *m = p->modules; m; m = m->next)
		n += m->good;
	return n;
}

/* A module plugins_each() lists: one in service, being checked, or refused
 * (a module whose file went is not). */
static bool worth_telling(const struct module *m)
{
	return m->good || m->probing || m->refused_why[0];
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(const struct module *const *)a)->name,
		      (*(const struct module *const *)b)->name);
}

int plugins_each(const struct plugin_dir *p,
		 void (*visit)(const struct module_view *v, void *arg), void *arg)
{
	const struct module **list;
	size_t n = 0;

	for (const struct module *m = p->modules; m; m = m->next)
		n += worth_telling(m);
	list = malloc((n ? n : 1) * sizeof *list);
	if (!list)
		return -1;
	n = 0;
	for (const struct module *m = p->modules; m; m = m->next)
		if (worth_telling(m))
			list[n++] = m;
	qsort(list, n, sizeof *list, by_name);
	for (size_t i = 0; i < n; i++) {
		const struct module *m = list[i];
		struct module_view v = {
			.name = m->name,
			.version = m->good ? m->version : NULL,
			.methods = m->good ? m->methods : "",
			/* while a new file is probed, an old refusal is not its */
			.refused = !m->probing && m->refused_why[0] ? m->refused_why : NULL,
			.checking = m->probing,
		};

		visit(&v, arg);
	}
	free(list);
	return 0;
}
