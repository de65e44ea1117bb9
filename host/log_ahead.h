/*
 * log_ahead.h - writes Berkeley DB's next log files before it needs them.
 *
 * Berkeley DB starts each log file empty and appends to it, so every
 * fdatasync of the log also has to allocate the file's new blocks and
 * write its inode: a second synchronous write per flush.  Measured on the
 * CI machine's ext4, an fdatasync after an 8 KB append took 250 us, one
 * after an 8 KB overwrite of blocks already on disk 97 us.  A thread
 * therefore writes the next log file ahead of time - zero-filled, synced,
 * under the name BDB will open - so that BDB's flushes only overwrite.
 *
 * Why BDB accepts such a file: it opens a new log file without truncating
 * it, and a file whose first header is all zeros is its "preallocated log
 * file": not yet begun, written from the start when BDB gets to it, and
 * skipped by recovery when it looks for the last log file.
 *
 * Files are made only while the log is busy: the next one once the current
 * file is half full, and one more while files fill in under a second.  An
 * idle host makes none; a busy one keeps at most two blank files (4 MB).
 */
#ifndef CAGEHOST_LOG_AHEAD_H
#define CAGEHOST_LOG_AHEAD_H

#include <db.h>
#include <stdbool.h>
#include <stdint.h>

struct log_ahead;

/*
 * Starts the thread for env, whose log files of file_bytes each live in
 * dir.  Returns NULL (and logs why) when it cannot: BDB then makes its log
 * files itself, as without it.
 */
struct log_ahead *log_ahead_start(DB_ENV *env, const char *dir, uint32_t file_bytes);

/*
 * To be called after each flush of the log, before the flush counts as
 * durable: the name of a file made ahead is on disk only once its
 * directory is synced, and BDB may have written into the file (and
 * flushed it) before the thread got to that.  Costs an atomic load, and
 * an fsync of the directory in that rare window.  Returns 0, or -1 with
 * errno when the directory cannot be synced.  NULL is accepted.
 */
int log_ahead_after_flush(struct log_ahead *la);

/* Stops the thread; blank files already made stay for BDB to use. */
void log_ahead_stop(struct log_ahead **la);

/* True if the log file at path holds no record yet: empty, zero-filled
 * (made ahead, not begun), or unreadable. */
bool log_file_is_blank(const char *path);

#endif
