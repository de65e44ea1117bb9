/*
 * log_ahead.c - writes Berkeley DB's next log files ahead (see log_ahead.h).
 *
 * The thread looks at the log's position every BUSY_LOOK_MS while the log
 * moves, every IDLE_LOOK_MS while it does not.  A file is written as
 * log.ahead.tmp (a name BDB ignores: log.NNN is its), synced, and only
 * then linked to its log.NNNNNNNNNN name: link() never replaces, so if BDB
 * got there first its own file stays.  While a link's directory entry is
 * not yet synced, `unsynced` is set, and log_ahead_after_flush() syncs the
 * directory itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "log_ahead.h"

#define BUSY_LOOK_MS 10
#define IDLE_LOOK_MS 200
#define FAST_FILE_MS 1000	/* files that fill faster than this: two ahead */
#define FAILED_PAUSE_MS 5000	/* after a failure, before the next try */
/* below this much free space the space is left to Berkeley DB itself */
#define MIN_FREE_BYTES ((uint64_t)64 << 20)
#define CHUNK (256 << 10)

struct log_ahead {
	DB_ENV *env;
	char dir[4096];
	uint32_t file_bytes;
	int dir_fd;
	int unsynced;			/* a link's directory entry may not be on disk */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	bool failing;			/* the last try failed (logged once) */
};

/* The current log file and offset; false if BDB cannot say. */
static bool log_position(struct log_ahead *la, uint32_t *file, uint32_t *offset)
{
	DB_LOG_STAT *st;

	if (la->env->log_stat(la->env, &st, 0) != 0)
		return false;
	*file = st->st_cur_file;
	*offset = st->st_cur_offset;
	free(st);
	return true;
}

static int sync_dir(struct log_ahead *la)
{
	if (fsync(la->dir_fd) < 0)
		return -1;
	__atomic_store_n(&la->unsynced, 0, __ATOMIC_SEQ_CST);
	return 0;
}

/* Writes file_bytes of zeros to path and syncs them. */
static int write_blank(const char *path, uint32_t file_bytes)
{
	static const char zeros[CHUNK];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint32_t done = 0;

	if (fd < 0)
		return -1;
	while (done < file_bytes) {
		size_t n = file_bytes - done < CHUNK ? file_bytes - done : CHUNK;
		ssize_t w = write(fd, zeros, n);

		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;

			close(fd);
			errno = e;
			return -1;
		}
		done += (uint32_t)w;
	}
	if (fdatasync(fd) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/*
 * Makes log file number n unless it exists or BDB has reached it.
 * Returns 0 (made or not needed), -1 with errno, or -2 when the disk is
 * nearly full (the space is left to BDB).
 */
static int make_ahead(struct log_ahead *la, uint32_t n)
{
	char path[4200], tmp[4200];
	uint32_t file, offset;
	struct statvfs fs;
	int rc, link_errno;

	snprintf(path, sizeof path, "%s/log.%010u", la->dir, n);
	if (access(path, F_OK) == 0)
		return 0;
	if (fstatvfs(la->dir_fd, &fs) < 0)
		return -1;
	if ((uint64_t)fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES + la->file_bytes)
		return -2;
	snprintf(tmp, sizeof tmp, "%s/log.ahead.tmp", la->dir);
	if (write_blank(tmp, la->file_bytes) < 0) {
		int e = errno;

		unlink(tmp);
		errno = e;
		return -1;
	}
	/* BDB may have moved on while the file was written */
	if (!log_position(la, &file, &offset) || file >= n) {
		unlink(tmp);
		return 0;
	}
	__atomic_store_n(&la->unsynced, 1, __ATOMIC_SEQ_CST);
	rc = link(tmp, path);
	link_errno = errno;
	if (rc < 0 && link_errno == EEXIST)
		rc = 0;		/* BDB made it first: its file stays */
	unlink(tmp);
	if (sync_dir(la) < 0)
		return -1;
	if (rc < 0) {
		errno = link_errno;	/* what the log line names */
		return -1;
	}
	return 0;
}

static void note_failure(struct log_ahead *la, int rc, int e)
{
	if (!la->failing)
		log_warning("storage: cannot write the next log file ahead in %s: %s (Berkeley "
			    "DB makes it itself; flushes are slower meanwhile)", la->dir,
			    rc == -2 ? "less than 64 MB free" : strerror(e));
	la->failing = true;
}

static void *ahead_loop(void *arg)
{
	struct log_ahead *la = arg;
	uint32_t last_file = 0, last_offset = 0;
	int64_t file_began_ms = clock_mono_ms(), file_ms = FAST_FILE_MS;
	int64_t wait_ms = IDLE_LOOK_MS;

	pthread_mutex_lock(&la->lock);
	while (!la->stop) {
		struct timespec until = clock_mono_deadline(wait_ms);
		uint32_t file, offset, want = 0;
		bool ok = true;

		pthread_cond_timedwait(&la->wake, &la->lock, &until);
		if (la->stop)
			break;
		pthread_mutex_unlock(&la->lock);
		if (log_position(la, &file, &offset)) {
			if (file != last_file) {
				if (last_file)
					file_ms = clock_mono_ms() - file_began_ms;
				file_began_ms = clock_mono_ms();
			}
			wait_ms = file != last_file || offset != last_offset ? BUSY_LOOK_MS
									     : IDLE_LOOK_MS;
			last_file = file;
			last_offset = offset;
			if (offset >= la->file_bytes / 2)
				want = 1;
			if (want && file_ms < FAST_FILE_MS)
				want = 2;
			for (uint32_t k = 1; k <= want && ok; k++) {
				int rc = make_ahead(la, file + k);

				if (rc < 0) {
					note_failure(la, rc, errno);
					ok = false;
					wait_ms = FAILED_PAUSE_MS;
				}
			}
			if (ok && want && la->failing) {
				log_info("storage: writing log files ahead works again");
				la->failing = false;
			}
		}
		pthread_mutex_lock(&la->lock);
	}
	pthread_mutex_unlock(&la->lock);
	return NULL;
}

/* Frees la once its thread has ended (or never started). */
static void free_ahead(struct log_ahead *la)
{
	pthread_cond_destroy(&la->wake);
	pthread_mutex_destroy(&la->lock);
	close(la->dir_fd);
	free(la);
}

struct log_ahead *log_ahead_start(DB_ENV *env, const char *dir, uint32_t file_bytes)
{
	struct log_ahead *la = calloc(1, sizeof *la);
	pthread_condattr_t attr;

	if (!la) {
		log_warning("storage: no memory to write log files ahead");
		return NULL;
	}
	la->env = env;
	la->file_bytes = file_bytes;
	snprintf(la->dir, sizeof la->dir, "%s", dir);
	la->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (la->dir_fd < 0) {
		log_warning("storage: cannot open %s to write log files ahead: %s", dir,
			    strerror(errno));
		free(la);
		return NULL;
	}
	pthread_mutex_init(&la->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&la->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&la->thread, NULL, ahead_loop, la) != 0) {
		log_warning("storage: cannot start the thread that writes log files ahead");
		free_ahead(la);
		return NULL;
	}
	pthread_setname_np(la->thread, "cage-logahead");
	return la;
}

int log_ahead_after_flush(struct log_ahead *la)
{
	if (!la || !__atomic_load_n(&la->unsynced, __ATOMIC_SEQ_CST))
		return 0;
	return fsync(la->dir_fd);
}

void log_ahead_stop(struct log_ahead **lap)
{
	struct log_ahead *la = *lap;

	if (!la)
		return;
	pthread_mutex_lock(&la->lock);
	la->stop = true;
	pthread_cond_signal(&la->wake);
	pthread_mutex_unlock(&la->lock);
	pthread_join(la->thread, NULL);
	free_ahead(la);
	*lap = NULL;
}

bool log_file_is_blank(const char *path)
{
	unsigned char head[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return true;
	n = read(fd, head, sizeof head);
	close(fd);
	for (ssize_t i = 0; i < n; i++)
		if (head[i])
			return false;
	return true;
}
