/*
 * backup.h - hot backups the host makes of its own store (POST /v1/backup,
 * `cagectl backup`).
 *
 * A backup is made on a thread of its own while the host goes on serving
 * (store.h, store_backup_*: the database files are copied page by page,
 * then the log files, whose removal is held back meanwhile, which is why
 * db5.3_hotbackup run from outside fails under load; the copy is then
 * recovered in place).  It is built in BACKUP_DIR/.partial-NAME, locked
 * while it is made, every file synced, and renamed to BACKUP_DIR/NAME only
 * when whole: a directory whose name does not start with a dot is a
 * complete backup, and a data_dir a host can start on as it is.  NAME is
 * the UTC time the backup began (20261128T194952Z), with "-2", "-3"...
 * added when that name is taken.  A backup does not start without room in
 * backup_dir for a copy of data_dir and 64 MiB to spare.  One backup at a
 * time.
 *
 * For tests: CAGEHOST_TEST_BACKUP_PAUSE_MS in the host's environment makes
 * each backup wait that long between the database files and the log
 * files, so that checkpoints surely come meanwhile, or a SIGTERM
 * (tests/e2e/backup.sh).
 */
#ifndef CAGEHOST_BACKUP_H
#define CAGEHOST_BACKUP_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;
struct backup;

struct backup_result {
	bool ok;
	char dir[PATH_MAX + 64];	/* the finished backup (ok) */
	uint64_t bytes;		/* the size of its files */
	int64_t ms;		/* how long it took */
	bool cancelled;		/* stopped by backup_cancel() */
	char error[1024];	/* why it failed (not ok) */
};

/* Called on the event loop when a backup has finished or failed. */
typedef void (*backup_done_fn)(const struct backup_result *res, void *arg);

/*
 * Backups of store, opened on data_dir, into backup_dir (created, with its
 * parents, when the first backup starts); NULL when out of memory or
 * descriptors.  A backup holds the store's files and data_dir/identity.
 * When keep > 0, each complete backup is followed by the removal of this
 * host's oldest complete backups beyond the newest keep, the new one
 * included (another host's, sharing backup_dir, have another identity
 * file and stay).
 */
struct backup *backup_new(struct event_base *base, struct store *store, const char *data_dir,
			  const char *backup_dir, int keep);

/* Cancels a backup still running (the host is stopping): it stops after
 * the file it is copying, and its done() says so (res->cancelled). */
void backup_cancel(struct backup *b);

/* Cancels a backup still running and waits for it (its done is not
 * called), then frees b.  Before the store is closed. */
void backup_free(struct backup **b);

/*
 * Starts a backup; done(res, arg) follows on the loop, also when it could
 * not begin (backup_dir cannot be made, no room).  Returns 0, 1 when one is
 * running already (nothing started), or -1 when no thread can be started.
 * Leftover .partial- directories of a backup that did not finish (and that
 * no host is making: another may share backup_dir) are removed first.
 */
int backup_start(struct backup *b, backup_done_fn done, void *arg);

/* backup_dir while a backup runs ("" when none), for messages. */
const char *backup_running_dir(const struct backup *b);

#endif
