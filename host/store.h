/*
 * store.h - the durable call store: a Berkeley DB transactional environment
 * in data_dir, owned by the host process alone.
 *
 * Files in data_dir (B-trees, and new.db a hash, with text keys and text
 * records, see record.h, so `db5.3_dump -p -h DATA_DIR FILE` reads well):
 *   calls.db     pending calls, key = call id
 *   due.db       index of calls.db by next attempt time (maintained by BDB)
 *   new.db       new calls whose first attempt the host runs from memory
 *                (same records; not indexed; moved to calls.db at start)
 *   attempts.db  one record per attempt, key = "ID/NNNN"
 *   done.db      finished calls (no payload), kept for done_retention
 *   dead.db      calls that failed for good or expired, with payload
 *   cages.db     index of calls.db by the cage a call is for (calls to
 *                other cages only; maintained by BDB)
 *   idem.db      Idempotency-Key -> call id
 *   delivered.db  Idempotency-Key -> call id of calls other cages
 *                delivered, kept until their sender has its answer
 *   quarantine.db  pending records that could not be decoded, kept as found
 *   cagehost.lock  held while a host runs on this directory
 *   modules/     private copies of loaded plugin versions
 *   log.*, __db.001  Berkeley DB's log; the file that locates the regions
 *                (the newest log files may be blank: written ahead, see
 *                log_ahead.h)
 *   cagehost.shm   the System V key of the regions (kept in shared memory)
 *
 * Writes are grouped: every store_* write joins the current transaction,
 * which store_commit() ends.  The host's batch (batch.h) does its writes
 * on a writer thread; a store is used by one thread at a time, and only
 * store_flush_log() and store_get_stats() may be called concurrently.
 * Commits do not wait for the disk; store_flush_log() does, and a new call
 * is acknowledged only after the flush that follows its commit (see
 * batch.h).  Losing an unflushed commit in a power cut means an attempt
 * runs again, never that an acknowledged call is lost.  Reads see the
 * current transaction's own writes.
 *
 * Every function returns 0 on success and -1 on failure with a message in
 * store_error(); lookups return 1 for "not found".  A failure that BDB says
 * needs recovery ends the process (recovery runs on the next start).
 */
#ifndef CAGEHOST_STORE_H
#define CAGEHOST_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "record.h"

struct store;

/* Creates dir (mode 0700) and its missing parents (0755), as mkdir -p;
 * 0, or -1 with errno. */
int store_make_dir(const char *dir);

/* Opens (creating and recovering as needed) the store in dir. */
int store_open(struct store **out, const char *dir, char *err, size_t err_size);

/*
 * Sets what to do when Berkeley DB reports that the environment needs
 * recovery (DB_RUNRECOVERY), e.g. after a reader process died inside the
 * library: the handler should restart the host (recovery runs on open).
 * Without one, or if it returns, the process exits with status 70.
 */
void store_on_fatal(void (*handler)(void));

/* Aborts any open transaction, checkpoints, closes; *s becomes NULL. */
void store_close(struct store **s);

/* The last error message. */
const char *store_error(const struct store *s);

/*
 * True when the last failure was a lock held by another process: writes
 * never wait for locks (DB_TXN_NOWAIT), so the caller may abort and retry.
 */
bool store_busy(const struct store *s);

/* A new call id: 16 lowercase hex digits, increasing, starting with the time. */
void store_new_id(struct store *s, char id[CALL_ID_LEN + 1]);

/*
 * Fills *r as a new pending call of queue/module/method with a new id,
 * enqueued and due now; the caller adds what else it has (cage, key,
 * payload) and records it.
 */
void store_new_call(struct store *s, struct call_record *r, const char *queue,
		    const char *module, const char *method);

/*
 * Writes a new pending call (and its Idempotency-Key, if any): into
 * new.db when is_new (the caller runs its first attempt from memory and
 * needs no index entry), else into calls.db.  r->id must be new to the
 * store, as store_new_id() makes them: the write does not look for a call
 * of that id (an overwrite check costs a B-tree search per enqueue), so an
 * id at or below the largest one stored when the store opened is refused
 * instead.
 */
int store_add_call(struct store *s, const struct call_record *r, bool is_new);

/* Overwrites a pending call (after a failed attempt); was_new moves it
 * from new.db to calls.db. */
int store_update_call(struct store *s, const struct call_record *r, bool was_new);

/*
 * Removes a pending call (from new.db when was_new) and keeps it as done
 * (without payload) or dead (with payload), according to r->state.
 */
int store_finish_call(struct store *s, const struct call_record *r, bool was_new);

/* Moves a dead call back to pending, due at r->when_ms. */
int store_requeue_dead(struct store *s, const struct call_record *r);

/*
 * Forgets a dead call for good: its record, its attempts, and its
 * Idempotency-Key (when idem.db, or delivered.db for a call another cage
 * delivered, still maps that key to this call).
 */
int store_delete_dead(struct store *s, const struct call_record *r);

/* Records attempt number n of call id. */
int store_add_attempt(struct store *s, const char *id, uint32_t n,
		      const struct attempt_record *a);

enum store_table { TABLE_CALLS, TABLE_NEW, TABLE_DONE, TABLE_DEAD };

/*
 * Reads call id from table into *r.  On success *buf holds the record
 * bytes r->payload points into; the caller frees *buf.  Returns 0, 1 when
 * absent, -1 on error.
 */
int store_get_call(struct store *s, enum store_table table, const char *id,
		   struct call_record *r, void **buf);

/* Looks up an Idempotency-Key.  Returns 0 and fills id, 1 when unknown. */
int store_find_idem(struct store *s, const char *key, char id[CALL_ID_LEN + 1]);

/* The same for the key of a delivery from another cage (delivered.db
 * only; versions before it kept such keys in idem.db). */
int store_find_delivery(struct store *s, const char *key, char id[CALL_ID_LEN + 1]);

/*
 * Forgets the delivery keys that start with prefix (one sending cage's)
 * and end with a call id below below_id: that cage has the answers to
 * those deliveries (or gave up on them) and does not send them again.
 * Returns how many.
 */
int store_forget_deliveries(struct store *s, const char *prefix, const char *below_id);

/* True when some pending call waits for delivery to another cage. */
bool store_has_deliveries(struct store *s);

/*
 * The oldest pending call for cage (the smallest id; every delivery of an
 * older one was answered).  Returns 0 and fills id, 1 when there is none.
 */
int store_cage_floor(struct store *s, const char *cage, char id[CALL_ID_LEN + 1]);

/* The earliest attempt planned after after_ms (INT64_MIN: the earliest of
 * all).  Returns 0, or 1 when there is none. */
int store_next_due(struct store *s, int64_t after_ms, int64_t *due_ms);

/*
 * Calls visit() for pending calls due at or before now_ms, earliest first
 * (calls due at the same time in id order), starting at due time `from`
 * (an ISO key; "" = the earliest) and, among the calls due then, at id
 * from_id ("" = the first), and up to (not including) due time `until`
 * and id until_id ("" until: no bound but now_ms), until visit returns
 * nonzero or `max` calls were visited.  skip(), when given, sees each
 * call's due time (ISO) and id first: it returns 0 to have the call read,
 * more to pass it over unread (and uncounted), less to end the scan.  The
 * record and its payload are valid during the call only.
 */
int store_scan_due(struct store *s, const char *from, const char *from_id, const char *until,
		   const char *until_id, int64_t now_ms, int max,
		   int (*skip)(const char *time, const char *id, void *arg),
		   int (*visit)(const struct call_record *r, void *arg), void *arg);

/*
 * Calls visit() for the calls of a table in id order, starting after
 * after_id ("" = from the first), for at most max calls or until visit
 * returns nonzero.  Used for rare passes: waking the pending calls of a
 * queue after a fix, listing dead calls.  Records that do not decode are
 * passed over (counted in max).  Returns the records read, or -1; when
 * last_read is given, it gets the key of the last one read (decoded or
 * not), to go on after.
 */
int store_scan_calls(struct store *s, enum store_table table, const char *after_id, int max,
		     int (*visit)(const struct call_record *r, void *arg), void *arg,
		     char last_read[CALL_ID_LEN + 1]);

/* Calls visit() for each attempt of call id, in order. */
int store_list_attempts(struct store *s, const char *id,
			void (*visit)(uint32_t n, const struct attempt_record *a, void *arg),
			void *arg);

/*
 * Deletes up to max done calls finished before cutoff_ms - and, while
 * done.db holds more than keep_max, the oldest ones regardless - with their
 * attempts and Idempotency-Keys.  Returns the number deleted, or -1.
 */
int store_sweep_done(struct store *s, int64_t cutoff_ms, uint64_t keep_max, int max);

/* Where a pass over dead.db is, between the bites of store_sweep_dead(). */
struct store_sweep_pass {
	char at[CALL_ID_LEN + 1];	/* the last id read; "" between passes */
	/* a new pass for age is pointless until the cutoff reaches this (or
	 * a death stored since, which the store keeps): the earliest death
	 * of a call the last pass kept, or of a call it did not read.  Set
	 * when a pass ends; INT64_MIN at first, and after a bite failed */
	int64_t next_ms;
	int64_t pass_min_ms;		/* the same, gathered by this pass */
	/* a pass reads all of dead.db before the cutoff's id: the next starts
	 * no sooner than 19 times the last one's reading time after it
	 * ended (CLOCK_MONOTONIC ms), so that sweeping takes at most about
	 * 5 % of the writer */
	int64_t pass_read_ms, not_before_ms;
};
#define STORE_SWEEP_PASS_INIT { "", INT64_MIN, 0, 0, 0 }

/*
 * One bite of a pass over dead.db, in id order: deletes up to max dead
 * calls that died before cutoff_ms (INT64_MIN: none for their age), and
 * the oldest ids while dead.db holds more than keep_max (UINT64_MAX: no
 * limit), with their attempts and their Idempotency-Keys in idem.db (where
 * they still map to the call; keys in delivered.db stay, as for done
 * calls).  A bite reads a bounded number of records and leaves pass->at
 * where the next one resumes; "" once the pass ended.  Returns the number
 * deleted, or -1 (then start the pass over).
 */
int store_sweep_dead(struct store *s, int64_t cutoff_ms, uint64_t keep_max, int max,
		     struct store_sweep_pass *pass);

/* True when writes wait for store_commit(). */
bool store_in_transaction(const struct store *s);

/*
 * A part of the current transaction that can fail alone (a Berkeley DB
 * child transaction): store_part_end(s, true) joins the writes made since
 * store_part_begin() to the transaction, store_part_end(s, false) - or a
 * failure of one of them, or of the join - undoes them and nothing else.
 * For an operator's page of requeues or deletes, which must not fail the
 * other writes of its turn.  Parts do not nest.  Each returns 0, or -1
 * with store_error() (for store_part_end: the part was undone).
 */
int store_part_begin(struct store *s);
int store_part_end(struct store *s, bool keep);

/*
 * Commits the current transaction, written to the operating system but not
 * yet to the disk (it survives a crash of the process, not of the
 * machine).  Callers that added calls may only be answered after the
 * store_flush_log() that follows.
 */
int store_commit(struct store *s);

/*
 * Waits until every commit so far is on disk (fdatasync of the log).
 * Safe to call from another thread than the one that commits.
 */
int store_flush_log(struct store *s);

/* Why the last store_flush_log() failed (the flushing thread writes it;
 * read it after learning of the failure through a lock). */
const char *store_flush_error(const struct store *s);

/* Aborts the current transaction. */
void store_abort(struct store *s);

/*
 * Starts the store's two background threads (store_close() stops them):
 * - checkpoints every interval_ms, and sooner under heavy writing
 *   (flushing dirty pages can wait on the disk for long; the event loop
 *   must not), after which Berkeley DB removes log files no longer needed;
 * - a watchdog that frees what dead processes left behind (failchk), and
 *   asks Berkeley DB to fail lock waits past a second (writes do not wait
 *   at all: DB_TXN_NOWAIT; this covers reads outside a transaction).
 */
int store_start_threads(struct store *s, int64_t interval_ms);

/*
 * A hot backup, in steps (backup.c runs them on a thread of its own while
 * the host goes on; one backup at a time):
 *   store_backup_begin()      no log file is removed until ..._end()
 *   store_backup_databases()  copies every database file into dir, each
 *                             page by page in step with the cache
 *                             (DB_ENV->dbbackup); *cancel is checked
 *                             between files
 *   store_backup_log_files()  flushes the log and lists the log files to
 *                             copy after the databases (all of them,
 *                             oldest first; free() the list)
 *   store_backup_end()
 *   store_recover_copy()      catastrophic recovery of the copy in a
 *                             private environment, then a checkpoint: dir
 *                             is then a data_dir a host starts on as it is
 * A page copied early gets the commits made after it from the log files
 * copied last, which is why none may go meanwhile.  Each returns 0, or -1
 * with the reason in err.
 */
void store_backup_begin(struct store *s);
void store_backup_end(struct store *s);
int store_backup_databases(struct store *s, const char *dir, const bool *cancel, char *err,
			   size_t err_size);
int store_backup_log_files(struct store *s, char ***names, char *err, size_t err_size);
int store_recover_copy(const char *dir, char *err, size_t err_size);

struct store_stats {
	uint64_t commits, log_flushes, calls_added;	/* flushes: fdatasyncs of the log */
	/* finished calls swept before done_retention because done.db held
	 * more than keep_max: their Idempotency-Keys went with them */
	uint64_t done_swept_early;
	uint64_t dead_calls;	/* in dead.db now (as committed) */
	uint64_t dead_swept;	/* dead calls store_sweep_dead() deleted */
};
void store_get_stats(const struct store *s, struct store_stats *stats);

#endif
