/*
 * backup.c - hot backups of the store on a thread of their own (see
 * backup.h): naming, the partial directory, syncing, and telling the loop.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "clock.h"
#include "log.h"
#include "store.h"

#define PARTIAL_PREFIX ".partial-"

struct backup {
	struct event_base *base;
	struct store *store;
	char data_dir[PATH_MAX];
	char dir[PATH_MAX];		/* backup_dir */
	int wake_fd;			/* eventfd: the thread is done */
	struct event *wake;
	pthread_t thread;
	bool running;
	backup_done_fn done;
	void *done_arg;
	char partial[PATH_MAX + 128];	/* being made */
	int64_t started_ms;
	struct backup_result res;	/* the thread's, read after the join */
};

/* Calls fn(path of entry, arg) for each entry of dir but . and ..; -1 with
 * errno when dir cannot be read. */
static int each_entry(const char *dir, void (*fn)(const char *path, const char *name, void *arg),
		      void *arg)
{
	char path[PATH_MAX + 320];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		fn(path, e->d_name, arg);
	}
	closedir(d);
	return 0;
}

static void remove_file(const char *path, const char *name, void *arg)
{
	(void)name;
	(void)arg;
	unlink(path);
}

/* Removes dir and the files in it (a backup holds no directories). */
static void remove_flat_dir(const char *dir)
{
	each_entry(dir, remove_file, NULL);
	rmdir(dir);
}

static void remove_partial(const char *path, const char *name, void *arg)
{
	(void)arg;
	if (!strncmp(name, PARTIAL_PREFIX, strlen(PARTIAL_PREFIX))) {
		log_warning("backup: removing %s, left by a backup that did not finish", path);
		remove_flat_dir(path);
	}
}

struct sync_state {
	int failed_errno;
	uint64_t bytes;
};

/* fsyncs one file of the copy and counts its size. */
static void sync_file(const char *path, const char *name, void *arg)
{
	struct sync_state *st = arg;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	(void)name;
	if (fd < 0 || fstat(fd, &sb) < 0 || fsync(fd) < 0) {
		if (!st->failed_errno)
			st->failed_errno = errno;
	} else {
		st->bytes += (uint64_t)sb.st_size;
	}
	if (fd >= 0)
		close(fd);
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = fd < 0 ? -1 : fsync(fd);

	if (fd >= 0)
		close(fd);
	return rc;
}

/* Files of data_dir that are not Berkeley DB's but belong with the data
 * (the host's name among cages: see relay.c). */
static const char *const plain_files[] = { "identity" };

/* Copies from/name to to/name if it exists; 0, or -1 with errno. */
static int copy_plain_file(const char *from, const char *to, const char *name)
{
	char src[PATH_MAX + 64], dst[PATH_MAX + 192], buf[8192];
	int in, out, rc = 0;
	ssize_t n;

	snprintf(src, sizeof src, "%s/%s", from, name);
	snprintf(dst, sizeof dst, "%s/%s", to, name);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return errno == ENOENT ? 0 : -1;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	while (rc == 0 && (n = read(in, buf, sizeof buf)) != 0) {
		if (n < 0 || write(out, buf, (size_t)n) != n)
			rc = -1;
	}
	close(in);
	if (close(out) < 0)
		rc = -1;
	return rc;
}

/* The backup thread: copy, sync, and give the copy its final name. */
static void *make_backup(void *arg)
{
	struct backup *b = arg;
	struct backup_result *res = &b->res;
	struct sync_state st = { 0, 0 };
	uint64_t one = 1;

	if (store_backup(b->store, b->partial, res->error, sizeof res->error) < 0)
		goto out;
	for (size_t i = 0; i < sizeof plain_files / sizeof plain_files[0]; i++) {
		if (copy_plain_file(b->data_dir, b->partial, plain_files[i]) < 0) {
			snprintf(res->error, sizeof res->error, "cannot copy %.300s/%s: %s",
				 b->data_dir, plain_files[i], strerror(errno));
			goto out;
		}
	}
	if (each_entry(b->partial, sync_file, &st) < 0 || st.failed_errno || sync_dir(b->partial) < 0) {
		snprintf(res->error, sizeof res->error, "cannot sync the copy in %.300s: %s",
			 b->partial, strerror(st.failed_errno ? st.failed_errno : errno));
		goto out;
	}
	if (rename(b->partial, res->dir) < 0 || sync_dir(b->dir) < 0) {
		snprintf(res->error, sizeof res->error, "cannot rename %.300s to %.300s: %s",
			 b->partial, res->dir, strerror(errno));
		goto out;
	}
	res->bytes = st.bytes;
	res->ok = true;
out:
	if (!res->ok)
		remove_flat_dir(b->partial);
	res->ms = clock_mono_ms() - b->started_ms;
	if (write(b->wake_fd, &one, sizeof one) < 0)
		log_error("backup: cannot wake the event loop: %s", strerror(errno));
	return NULL;
}

/* On the loop: the thread is done. */
static void on_finished(evutil_socket_t fd, short what, void *arg)
{
	struct backup *b = arg;
	struct backup_result res;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof n) < 0 || !b->running)
		return;
	pthread_join(b->thread, NULL);
	b->running = false;
	res = b->res;
	if (res.ok)
		log_info("backup: %s is complete: %.1f MiB in %.3f s", res.dir,
			 (double)res.bytes / 1048576.0, (double)res.ms / 1000.0);
	else
		log_error("backup: failed after %.3f s: %s", (double)res.ms / 1000.0, res.error);
	b->done(&res, b->done_arg);
}

struct backup *backup_new(struct event_base *base, struct store *store, const char *data_dir,
			  const char *backup_dir)
{
	struct backup *b = calloc(1, sizeof *b);

	if (!b)
		return NULL;
	b->base = base;
	b->store = store;
	snprintf(b->data_dir, sizeof b->data_dir, "%s", data_dir);
	snprintf(b->dir, sizeof b->dir, "%s", backup_dir);
	b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->wake_fd < 0)
		goto fail;
	b->wake = event_new(base, b->wake_fd, EV_READ | EV_PERSIST, on_finished, b);
	if (!b->wake || event_add(b->wake, NULL) < 0)
		goto fail;
	return b;
fail:
	backup_free(&b);
	return NULL;
}

void backup_free(struct backup **bp)
{
	struct backup *b = *bp;

	if (!b)
		return;
	if (b->running) {
		log_info("backup: waiting for the backup into %s to finish", b->partial);
		pthread_join(b->thread, NULL);
		log_info("backup: %s", b->res.ok ? "finished" : b->res.error);
	}
	if (b->wake)
		event_free(b->wake);
	if (b->wake_fd >= 0)
		close(b->wake_fd);
	free(b);
	*bp = NULL;
}

/* Picks NAME for a backup beginning now: the first free of STAMP, STAMP-2... */
static void pick_names(struct backup *b)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	struct stat sb;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
	snprintf(b->res.dir, sizeof b->res.dir, "%s/%s", b->dir, stamp);
	for (int n = 2; stat(b->res.dir, &sb) == 0; n++)
		snprintf(b->res.dir, sizeof b->res.dir, "%s/%s-%d", b->dir, stamp, n);
	snprintf(b->partial, sizeof b->partial, "%s/" PARTIAL_PREFIX "%s",
		 b->dir, strrchr(b->res.dir, '/') + 1);
}

int backup_start(struct backup *b, backup_done_fn done, void *arg, char *err, size_t err_size)
{
	if (b->running)
		return 1;
	if (store_make_dir(b->dir) < 0) {
		snprintf(err, err_size, "cannot create backup_dir %s: %s", b->dir, strerror(errno));
		return -1;
	}
	each_entry(b->dir, remove_partial, NULL);
	memset(&b->res, 0, sizeof b->res);
	pick_names(b);
	if (mkdir(b->partial, 0700) < 0) {
		snprintf(err, err_size, "cannot create %s: %s", b->partial, strerror(errno));
		return -1;
	}
	b->done = done;
	b->done_arg = arg;
	b->started_ms = clock_mono_ms();
	if (pthread_create(&b->thread, NULL, make_backup, b) != 0) {
		rmdir(b->partial);
		snprintf(err, err_size, "cannot start the backup thread");
		return -1;
	}
	pthread_setname_np(b->thread, "cage-backup");
	b->running = true;
	log_info("backup: copying the store into %s", b->partial);
	return 0;
}

const char *backup_running_dir(const struct backup *b)
{
	return b->running ? b->res.dir : "";
}
