/*
 * backup.c - hot backups of the store on a thread of their own (see
 * backup.h): every file operation, the copy itself and the sync happen on
 * that thread, so a slow backup_dir never holds up the event loop.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "clock.h"
#include "log.h"
#include "store.h"
#include "write_all.h"

#define PARTIAL_PREFIX ".partial-"
#define SPARE_BYTES ((uint64_t)64 << 20)	/* free space a backup leaves */

struct backup {
	struct store *store;
	char data_dir[PATH_MAX];
	char dir[PATH_MAX];		/* backup_dir */
	int keep;			/* complete backups kept (0: all) */
	int wake_fd;			/* eventfd: the thread is done */
	struct event *wake;
	pthread_t thread;
	bool running;
	bool cancel;			/* set by backup_cancel(); atomic */
	backup_done_fn done;
	void *done_arg;
	char partial[PATH_MAX + 128];	/* being made */
	int64_t started_ms;
	int pause_ms;			/* CAGEHOST_TEST_BACKUP_PAUSE_MS (backup.h) */
	struct backup_result res;	/* the thread's, read after the join */
};

/* Files of data_dir that are not Berkeley DB's but belong with the data
 * (the host's name among cages: see relay.c). */
static const char *const plain_files[] = { "identity" };

/* Calls fn(path, name, arg) for each entry of dir but . and ..; -1 with
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

/* A partial backup nobody is making (its maker holds a lock on it while it
 * runs: another host may share backup_dir) is removed. */
static void remove_partial(const char *path, const char *name, void *arg)
{
	int fd;

	(void)arg;
	if (strncmp(name, PARTIAL_PREFIX, strlen(PARTIAL_PREFIX)) != 0)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	log_warning("backup: removing %s, left by a backup that did not finish", path);
	remove_flat_dir(path);
	close(fd);
}

/* The suffix number of a complete backup's name, STAMP or STAMP-N (1 for
 * none), or 0 for any other name; STAMP is 20261128T194952Z. */
static long backup_number(const char *name)
{
	static const char shape[] = "ddddddddTddddddZ";
	char *end;
	long n;

	for (size_t i = 0; i < sizeof shape - 1; i++)
		if (shape[i] == 'd' ? !isdigit((unsigned char)name[i]) : name[i] != shape[i])
			return 0;
	if (!name[sizeof shape - 1])
		return 1;
	if (name[sizeof shape - 1] != '-' || !isdigit((unsigned char)name[sizeof shape]))
		return 0;
	n = strtol(name + sizeof shape, &end, 10);
	return *end || n < 2 ? 0 : n;
}

/* Oldest first: by time, then by the number taken within one second. */
static int older_first(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	int by_time = strncmp(x, y, 16);
	long nx = backup_number(x), ny = backup_number(y);

	return by_time ? by_time : (nx > ny) - (nx < ny);
}

/* The first bytes of dir/identity (the host's name among cages, which a
 * backup holds too), or "" when it cannot be read. */
static void read_identity(const char *dir, char *out, size_t size)
{
	char path[PATH_MAX + 64];
	ssize_t n = -1;
	int fd;

	snprintf(path, sizeof path, "%s/identity", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, out, size - 1);
		close(fd);
	}
	out[n > 0 ? n : 0] = '\0';
}

/* The names of this host's complete backups in its backup_dir, but one. */
struct backup_names {
	const char *identity;	/* this host's */
	const char *except;	/* the backup just made */
	char **name;
	size_t count, size;
	bool out_of_memory;
};

static void add_backup_name(const char *path, const char *name, void *arg)
{
	struct backup_names *l = arg;
	char identity[64], **bigger;
	struct stat sb;

	if (!backup_number(name) || l->out_of_memory || !strcmp(name, l->except) ||
	    lstat(path, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return;	/* not a backup, the new one, or a link: never followed */
	/* another host's (sharing backup_dir), or one that is not whole */
	read_identity(path, identity, sizeof identity);
	if (!identity[0] || strcmp(identity, l->identity) != 0)
		return;
	if (l->count == l->size) {
		bigger = realloc(l->name, (l->size * 2 + 16) * sizeof *bigger);
		if (!bigger) {
			l->out_of_memory = true;
			return;
		}
		l->name = bigger;
		l->size = l->size * 2 + 16;
	}
	l->name[l->count] = strdup(name);
	if (l->name[l->count])
		l->count++;
	else
		l->out_of_memory = true;
}

/* The bytes of data_dir's own files: about what a backup takes. */
static void add_size(const char *path, const char *name, void *arg)
{
	struct stat sb;

	(void)name;
	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
		*(uint64_t *)arg += (uint64_t)sb.st_size;
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

/* Copies from/name to to/name; 0, or -1 with errno (ENOENT when from/name
 * is not there). */
static int copy_file(const char *from, const char *to, const char *name)
{
	char src[PATH_MAX + 64], dst[PATH_MAX + 192], buf[65536];
	int in, out, rc = 0;
	ssize_t n;

	snprintf(src, sizeof src, "%s/%s", from, name);
	snprintf(dst, sizeof dst, "%s/%s", to, name);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	while (rc == 0 && (n = read(in, buf, sizeof buf)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		rc = n < 0 ? -1 : write_all(out, buf, (size_t)n);
	}
	close(in);
	if (close(out) < 0)
		rc = -1;
	return rc;
}

/* The highest number a backup (or partial) of one second has taken. */
struct stamp_use {
	const char *stamp;
	long highest;	/* 0: none; 1: STAMP itself; N: STAMP-N */
};

static void note_stamp_use(const char *path, const char *name, void *arg)
{
	struct stamp_use *use = arg;
	long n;

	(void)path;
	if (!strncmp(name, PARTIAL_PREFIX, strlen(PARTIAL_PREFIX)))
		name += strlen(PARTIAL_PREFIX);
	n = backup_number(name);
	if (n > use->highest && !strncmp(name, use->stamp, strlen(use->stamp)))
		use->highest = n;
}

/*
 * Picks NAME for a backup beginning now: STAMP, or STAMP-N above every
 * number that second has taken, so that names sort as the backups were
 * made even after older ones were removed (backup_keep).
 */
static void pick_names(struct backup *b)
{
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	struct stamp_use use = { stamp, 0 };

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
	each_entry(b->dir, note_stamp_use, &use);
	if (use.highest == 0)
		snprintf(b->res.dir, sizeof b->res.dir, "%s/%s", b->dir, stamp);
	else
		snprintf(b->res.dir, sizeof b->res.dir, "%s/%s-%ld", b->dir, stamp, use.highest + 1);
	snprintf(b->partial, sizeof b->partial, "%s/" PARTIAL_PREFIX "%s",
		 b->dir, strrchr(b->res.dir, '/') + 1);
}

/* What to do about a directory this host cannot write. */
static const char *access_hint(int err)
{
	return err == EACCES || err == EPERM
		       ? " (backup_dir must be writable by the user the host runs as)"
		       : "";
}

/* Takes backup_dir/.lock (see prepare()); its descriptor, or -1 with the
 * reason in res. */
static int lock_backup_dir(struct backup *b)
{
	char path[PATH_MAX + 8];
	int fd;

	snprintf(path, sizeof path, "%s/.lock", b->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		snprintf(b->res.error, sizeof b->res.error, "cannot lock %.500s: %s%s", path,
			 strerror(errno), access_hint(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * Removes the backup NAME: first renamed to a partial's name, so that it
 * stops counting as a backup at once, and so that what a failure leaves is
 * removed with the next backup's leftovers.
 */
static void remove_backup(struct backup *b, const char *name)
{
	char path[PATH_MAX + 64], gone[PATH_MAX + 128];

	snprintf(path, sizeof path, "%s/%s", b->dir, name);
	snprintf(gone, sizeof gone, "%s/" PARTIAL_PREFIX "%s", b->dir, name);
	if (rename(path, gone) < 0) {
		log_warning("backup: cannot remove %s (backup_keep = %d): %s", path, b->keep,
			    strerror(errno));
		return;
	}
	remove_flat_dir(gone);
	if (access(gone, F_OK) == 0)
		log_warning("backup: %s is not a backup any more, but could not be removed "
			    "whole: %s (the next backup tries again)", path, gone);
	else
		log_info("backup: removed %s (backup_keep = %d)", path, b->keep);
}

/* After a complete backup: this host's oldest complete backups beyond the
 * newest b->keep are removed.  Another host's, in a shared backup_dir, are
 * told apart by their identity file and left alone; so is the backup just
 * made, whatever its name. */
static void remove_old_backups(struct backup *b)
{
	char identity[64];
	struct backup_names l = { identity, strrchr(b->res.dir, '/') + 1, NULL, 0, 0, false };
	int lock_fd;

	read_identity(b->data_dir, identity, sizeof identity);
	if (b->keep <= 0 || !identity[0] || (lock_fd = lock_backup_dir(b)) < 0)
		return;
	if (each_entry(b->dir, add_backup_name, &l) < 0 || l.out_of_memory) {
		log_warning("backup: old backups in %s were not removed: cannot list them (%s)",
			    b->dir, l.out_of_memory ? "out of memory" : strerror(errno));
	} else if (l.count + 1 > (size_t)b->keep) {
		/* the new one and the newest keep - 1 of the others stay */
		size_t remove = l.count + 1 - (size_t)b->keep;

		qsort(l.name, l.count, sizeof *l.name, older_first);
		for (size_t i = 0; i < remove; i++)
			remove_backup(b, l.name[i]);
		sync_dir(b->dir);
	}
	close(lock_fd);
	for (size_t i = 0; i < l.count; i++)
		free(l.name[i]);
	free(l.name);
}

/*
 * backup_dir exists (made, with its parents, and synced into its parent
 * when new); leftover partials are removed, a free name is picked and its
 * partial directory made and locked, all under backup_dir/.lock, so that
 * hosts sharing backup_dir neither take one name nor remove each other's
 * partials.  Returns the partial's lock, or -1 with the reason in res.
 */
static int prepare(struct backup *b)
{
	struct backup_result *res = &b->res;
	struct stat sb;
	bool is_new = stat(b->dir, &sb) < 0;
	char path[PATH_MAX + 8];
	int dir_lock, fd = -1;

	if (store_make_dir(b->dir) < 0) {
		snprintf(res->error, sizeof res->error, "cannot create backup_dir %.500s: %s%s",
			 b->dir, strerror(errno), access_hint(errno));
		return -1;
	}
	if (is_new) {
		snprintf(path, sizeof path, "%s/..", b->dir);
		sync_dir(path);
	}
	dir_lock = lock_backup_dir(b);
	if (dir_lock < 0)
		return -1;
	each_entry(b->dir, remove_partial, NULL);
	pick_names(b);
	if (mkdir(b->partial, 0700) < 0 ||
	    (fd = open(b->partial, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		snprintf(res->error, sizeof res->error, "cannot create %.500s: %s%s", b->partial,
			 strerror(errno), access_hint(errno));
		fd = -1;
	} else {
		flock(fd, LOCK_EX);
	}
	close(dir_lock);
	return fd;
}

/* Enough room in backup_dir for a copy of data_dir and SPARE_BYTES more?
 * Else false, with the reason in res. */
static bool room_for_copy(struct backup *b)
{
	uint64_t needed = SPARE_BYTES, avail;
	struct statvfs fs;

	each_entry(b->data_dir, add_size, &needed);
	if (statvfs(b->dir, &fs) < 0)
		return true;	/* no figure: the copy finds out */
	avail = (uint64_t)fs.f_bavail * fs.f_frsize;
	if (avail >= needed)
		return true;
	snprintf(b->res.error, sizeof b->res.error,
		 "backup_dir %.400s has %" PRIu64 " MiB free; a backup needs about %" PRIu64
		 " MiB (the size of data_dir, and 64 MiB to spare): free some space, or set "
		 "backup_dir to a directory on another disk", b->dir, avail >> 20, needed >> 20);
	return false;
}

static bool cancelled(struct backup *b)
{
	if (!__atomic_load_n(&b->cancel, __ATOMIC_RELAXED))
		return false;
	snprintf(b->res.error, sizeof b->res.error, "the host is stopping: the backup was not "
		 "finished");
	b->res.cancelled = true;
	return true;
}

/* The copy into b->partial: databases, log files, plain files, recovery. */
static bool copy_store(struct backup *b)
{
	struct backup_result *res = &b->res;
	char **logs = NULL;
	bool ok;

	store_backup_begin(b->store);
	ok = store_backup_databases(b->store, b->partial, &b->cancel, res->error,
				    sizeof res->error) == 0;
	for (int waited = 0; ok && waited < b->pause_ms && !cancelled(b); waited += 10)
		usleep(10000);
	ok = ok && store_backup_log_files(b->store, &logs, res->error, sizeof res->error) == 0;
	for (char **name = logs; ok && name && *name; name++) {
		if (cancelled(b))
			ok = false;
		else if (copy_file(b->data_dir, b->partial, *name) < 0) {
			snprintf(res->error, sizeof res->error, "cannot copy %.300s/%s: %s",
				 b->data_dir, *name, strerror(errno));
			ok = false;
		}
	}
	free(logs);
	store_backup_end(b->store);
	if (!ok) {
		cancelled(b);	/* the reason, when it is that */
		return false;
	}
	for (size_t i = 0; i < sizeof plain_files / sizeof plain_files[0]; i++) {
		if (copy_file(b->data_dir, b->partial, plain_files[i]) < 0 && errno != ENOENT) {
			snprintf(res->error, sizeof res->error, "cannot copy %.300s/%s: %s",
				 b->data_dir, plain_files[i], strerror(errno));
			return false;
		}
	}
	return !cancelled(b) &&
	       store_recover_copy(b->partial, res->error, sizeof res->error) == 0 &&
	       !cancelled(b);
}

/* The backup thread: prepare, copy, sync, and give the copy its name. */
static void *make_backup(void *arg)
{
	struct backup *b = arg;
	struct backup_result *res = &b->res;
	struct sync_state st = { 0, 0 };
	uint64_t one = 1;
	int lock_fd = prepare(b);

	if (lock_fd < 0)
		goto out;
	if (!room_for_copy(b) || !copy_store(b))
		goto failed;
	if (each_entry(b->partial, sync_file, &st) < 0 || st.failed_errno || sync_dir(b->partial) < 0) {
		snprintf(res->error, sizeof res->error, "cannot sync the copy in %.300s: %s",
			 b->partial, strerror(st.failed_errno ? st.failed_errno : errno));
		goto failed;
	}
	if (rename(b->partial, res->dir) < 0) {
		snprintf(res->error, sizeof res->error, "cannot rename %.300s to %.300s: %s",
			 b->partial, res->dir, strerror(errno));
		goto failed;
	}
	if (sync_dir(b->dir) < 0) {
		/* complete, but its name may not survive a power cut: kept */
		snprintf(res->error, sizeof res->error, "the backup in %.300s is complete, but "
			 "backup_dir could not be synced (%s): it may not survive a power cut",
			 res->dir, strerror(errno));
		goto out;
	}
	res->bytes = st.bytes;
	res->ok = true;
	remove_old_backups(b);
	goto out;
failed:
	remove_flat_dir(b->partial);
out:
	if (lock_fd >= 0)
		close(lock_fd);
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
			  const char *backup_dir, int keep)
{
	struct backup *b = calloc(1, sizeof *b);

	if (!b)
		return NULL;
	b->store = store;
	b->keep = keep;
	snprintf(b->data_dir, sizeof b->data_dir, "%s", data_dir);
	snprintf(b->dir, sizeof b->dir, "%s", backup_dir);
	if (getenv("CAGEHOST_TEST_BACKUP_PAUSE_MS"))
		b->pause_ms = atoi(getenv("CAGEHOST_TEST_BACKUP_PAUSE_MS"));
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

void backup_cancel(struct backup *b)
{
	if (b && b->running)
		__atomic_store_n(&b->cancel, true, __ATOMIC_RELAXED);
}

void backup_free(struct backup **bp)
{
	struct backup *b = *bp;

	if (!b)
		return;
	if (b->running) {
		backup_cancel(b);
		log_info("backup: waiting for the backup into %s to stop", b->partial);
		pthread_join(b->thread, NULL);
		log_info("backup: %s: %s", b->res.dir, b->res.ok ? "complete" : b->res.error);
	}
	if (b->wake)
		event_free(b->wake);
	if (b->wake_fd >= 0)
		close(b->wake_fd);
	free(b);
	*bp = NULL;
}

int backup_start(struct backup *b, backup_done_fn done, void *arg)
{
	if (b->running)
		return 1;
	memset(&b->res, 0, sizeof b->res);
	snprintf(b->res.dir, sizeof b->res.dir, "%s", b->dir);
	b->partial[0] = '\0';
	b->cancel = false;
	b->done = done;
	b->done_arg = arg;
	b->started_ms = clock_mono_ms();
	if (pthread_create(&b->thread, NULL, make_backup, b) != 0)
		return -1;
	pthread_setname_np(b->thread, "cage-backup");
	b->running = true;
	log_info("backup: started, into %s", b->dir);
	return 0;
}

const char *backup_running_dir(const struct backup *b)
{
	return b->running ? b->dir : "";
}
