/*
 * store.c - the Berkeley DB call store (contract in store.h).
 *
 * Durable write procedure (what makes a 202 true):
 *   1. store_add_call() puts the record into calls.db (and idem.db) inside
 *      the turn's transaction; BDB updates due.db in the same transaction.
 *   2. store_commit() commits with DB_TXN_WRITE_NOSYNC: the log records are
 *      written to the operating system (a crash of the process keeps them).
 *   3. store_flush_log(), on batch.c's flusher thread, fdatasyncs the log.
 *   4. Only then does the HTTP layer answer 202 (batch.c).
 * After a crash, DB_RECOVER on open replays the log, so every commit that
 * was flushed is present.  Checkpoints (the checkpoint thread) bound the
 * log that recovery reads, and the checkpoint thread then deletes log files
 * older than the last checkpoint, so disk use follows the pending calls,
 * not the traffic (never while a backup copies them: see store_backup_*).
 */
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "log_ahead.h"
#include "store.h"

#define CHECKPOINT_TICK_MS 1000
#define CHECKPOINT_LOG_KB 4096
#define SWEEP_DEAD_READ_MAX 2000	/* records one bite of a dead.db pass reads */
#define SWEEP_DEAD_BITE_MS 5		/* and for at most about this long */
#define LOCK_TIMEOUT_US 1000000
#define INTEGRITY_BUDGET_MS 400
#define LOG_FILE_BYTES (2 << 20)
/* to start: a new log file (2 MB) and room to work */
#define MIN_FREE_BYTES ((uint64_t)8 << 20)
#define WATCHDOG_TICK_MS 200
#define HELD_WARNING_MS (10 * 60 * 1000)	/* a backup holding log removal: said */
#define CAGE_FILL_BATCH 500	/* index entries per transaction while building cages.db */
#define COMPACT_MIN_BYTES ((uint64_t)16 << 20)	/* smaller files are left as they are */
#define COMPACT_COUNT_MS 25	/* per file, to see how much of it is records */

/* Counts the open transaction changes, applied to the store's counts when
 * it commits. */
struct txn_counts {
	int64_t done;		/* records added to done.db (-removed) */
	int64_t dead;		/* dead.db: the same */
	uint64_t early;		/* done calls swept before done_retention */
	uint64_t dead_swept;	/* dead calls swept (store_sweep_dead) */
};

struct store {
	DB_ENV *env;
	DB *calls, *due, *cages, *new_calls, *attempts, *done, *dead, *idem, *delivered,
	   *quarantine;
	/* due.db once more, not associated with calls.db: its entries as they
	 * are (due time -> call id), where a read through `due` would fetch
	 * each call's record too.  For reading only. */
	DB *due_entries;
	DB_TXN *txn;		/* the open batch, or NULL */
	bool txn_failed;	/* an operation in it failed: abort, never commit */
	struct {		/* during a part (store_part_begin): the batch's */
		DB_TXN *txn;
		bool txn_failed;
		struct txn_counts delta;
	} outer;
	bool busy;		/* the last failure was a lock another process holds */
	uint64_t done_count;	/* records in done.db (counted at open) */
	struct txn_counts delta;	/* what the open transaction changed */
	/* the earliest death stored since the last pass over dead.db ended
	 * (store_sweep_dead's gate); INT64_MAX: none */
	int64_t deaths_min_ms;
	char flush_error[256];	/* why the last log flush failed */
	long shm_key;		/* base System V key of the regions */
	u_int32_t recorded_log;	/* log file named in cagehost.state */
	uint64_t last_id;
	uint64_t opened_max_id;	/* the largest call id stored at open */
	int lock_fd;
	struct store_stats stats;
	char error[2048];
	/* the checkpoint and watchdog threads (store_backup()'s thread and
	 * the batch's flusher also use env) */
	pthread_t cp_thread, watchdog_thread;
	bool watchdog_running;
	struct log_ahead *log_ahead;	/* writes the next log files ahead */
	pthread_mutex_t cp_lock;
	/* log files are removed under this lock, and not while a backup runs */
	pthread_mutex_t removal_lock;
	bool backup_running;
	int64_t backup_since_ms;	/* monotonic */
	int64_t held_told_ms;		/* the last warning that removal is held */
	pthread_cond_t cp_wake;
	bool cp_running, cp_stop;
	int64_t cp_interval_ms;
	char dir[4096];
};

__attribute__((format(printf, 2, 3)))
static int fail(struct store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	s->busy = false;
	vsnprintf(s->error, sizeof s->error, fmt, ap);
	va_end(ap);
	return -1;
}

static void (*fatal_handler)(void);

void store_on_fatal(void (*handler)(void))
{
	fatal_handler = handler;
}

/* BDB says the environment needs recovery: the only safe move is a restart,
 * which runs recovery (DB_RECOVER) on open. */
static void check_fatal(struct store *s, int rc)
{
	if (rc != DB_RUNRECOVERY)
		return;
	(void)s;
	log_error("the database environment needs recovery (%s); restarting to recover",
		  db_strerror(rc));
	if (fatal_handler)
		fatal_handler();
	_exit(70);
}

static void stop_checkpoints(struct store *s);
static void remove_old_logs(struct store *s);

static int db_fail(struct store *s, const char *what, int rc)
{
	check_fatal(s, rc);
	if (s->txn)
		s->txn_failed = true;	/* the whole transaction must go */
	if (rc == DB_LOCK_DEADLOCK || rc == DB_LOCK_NOTGRANTED) {
		fail(s, "%s: storage busy: another process holds a lock the host needs (a "
		     "db5.3_dump piped into a pager that does not read?)", what);
		s->busy = true;
		return -1;
	}
	return fail(s, "%s: %s", what, db_strerror(rc));
}

const char *store_error(const struct store *s)
{
	return s->error;
}

bool store_busy(const struct store *s)
{
	return s->busy;
}

/* due.db key: the ISO due time at the start of a pending record. */
static int due_of(DB *secondary, const DBT *pkey, const DBT *pdata, DBT *skey)
{
	(void)secondary;
	(void)pkey;
	if (pdata->size < RECORD_NEXT_PREFIX_LEN + CLOCK_ISO_LEN ||
	    memcmp(pdata->data, RECORD_NEXT_PREFIX, RECORD_NEXT_PREFIX_LEN) != 0)
		return DB_DONOTINDEX;
	memset(skey, 0, sizeof *skey);
	skey->data = (char *)pdata->data + RECORD_NEXT_PREFIX_LEN;
	skey->size = CLOCK_ISO_LEN;
	return 0;
}

static void dbt_bytes(DBT *dbt, const void *data, size_t len)
{
	memset(dbt, 0, sizeof *dbt);
	dbt->data = (void *)data;
	dbt->size = (u_int32_t)len;
}

/* cages.db key: the cage a pending call is for; calls run here have none. */
static int cage_of(DB *secondary, const DBT *pkey, const DBT *pdata, DBT *skey)
{
	const char *name;
	size_t len;

	(void)secondary;
	(void)pkey;
	if (record_cage_of(pdata->data, pdata->size, &name, &len) != 0)
		return DB_DONOTINDEX;
	dbt_bytes(skey, name, len);
	return 0;
}

static const char *recovery_hint(const struct store *s);

static int open_db(struct store *s, DB **db, const char *file, DBTYPE type, bool dupsort)
{
	int rc = db_create(db, s->env, 0);

	if (rc)
		return db_fail(s, file, rc);
	if (dupsort)
		(*db)->set_flags(*db, DB_DUPSORT);
	/* page checksums: damage on disk is found when a page is read, never
	 * taken for data (ignored for a database created without them) */
	(*db)->set_flags(*db, DB_CHKSUM);
	/*
	 * calls.db and done.db grow at their end (ids go up with time):
	 * bigger pages, a quarter of the splits, page allocations and page
	 * writes (new files only; an existing one keeps its size).  For
	 * calls.db, delayed enqueues/s +6 %, faster in 9 of 10 paired runs;
	 * 64 KiB pages, or 16 KiB for due.db too, did no better.
	 */
	if (!strcmp(file, "calls.db") || !strcmp(file, "done.db"))
		(*db)->set_pagesize(*db, 16384);
	/* a handle is used by one thread at a time (batch.h): no DB_THREAD */
	rc = (*db)->open(*db, NULL, file, NULL, type, DB_CREATE | DB_AUTO_COMMIT, 0600);
	if (rc) {
		(*db)->close(*db, 0);
		*db = NULL;
		return fail(s, "cannot open %s/%s: %s%s", s->dir, file, db_strerror(rc),
			    recovery_hint(s));
	}
	return 0;
}

/*
 * Fills db (a plain sorted-duplicates B-tree, to become cages.db) from
 * calls.db: the cage name -> call id of each pending call for a cage, in
 * transactions of CAGE_FILL_BATCH entries.  Returns a Berkeley DB code.
 */
static int fill_cage_index(struct store *s, DB *db)
{
	DB_TXN *t = NULL;
	const char *name;
	size_t len;
	DBT k, d, sk;
	DBC *c;
	int n = 0, rc;

	rc = s->calls->cursor(s->calls, NULL, &c, DB_READ_COMMITTED);
	if (rc)
		return rc;
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	while ((rc = c->get(c, &k, &d, DB_NEXT)) == 0) {
		if (record_cage_of(d.data, d.size, &name, &len) != 0)
			continue;
		if (!t && (rc = s->env->txn_begin(s->env, NULL, &t, 0)) != 0)
			break;
		dbt_bytes(&sk, name, len);
		rc = db->put(db, t, &sk, &k, 0);
		if (rc)
			break;
		if (++n % CAGE_FILL_BATCH == 0) {
			rc = t->commit(t, 0);
			t = NULL;
			if (rc)
				break;
		}
	}
	c->close(c);
	if (rc == DB_NOTFOUND) {
		rc = t ? t->commit(t, 0) : 0;
		t = NULL;
	}
	if (t)
		t->abort(t);
	return rc;
}

/*
 * Opens cages.db, the index of calls.db by cage, which Berkeley DB keeps
 * from then on.  A new data_dir, or one from a version before the index,
 * has none: it is built under another name, committed in parts (in one
 * transaction, each page of calls.db would need a lock), and renamed into
 * place once complete, so a crash part way leaves no cages.db and the
 * next start builds it again.  (DB_CREATE on associate would refill an
 * empty index from all of calls.db at every start, and cages.db is empty
 * whenever no call waits for another cage.)
 */
static int open_cage_index(struct store *s)
{
	char path[sizeof s->dir + 16];
	DB *fresh;
	int rc;

	snprintf(path, sizeof path, "%s/cages.db", s->dir);
	if (access(path, F_OK) != 0) {
		rc = s->env->dbremove(s->env, NULL, "cages.db.new", NULL, DB_AUTO_COMMIT);
		if (rc && rc != ENOENT)
			goto fail;
		if (open_db(s, &fresh, "cages.db.new", DB_BTREE, true) < 0)
			return -1;
		rc = fill_cage_index(s, fresh);
		fresh->close(fresh, 0);
		if (rc == 0)
			rc = s->env->dbrename(s->env, NULL, "cages.db.new", NULL, "cages.db",
					      DB_AUTO_COMMIT);
		if (rc)
			goto fail;
	}
	if (open_db(s, &s->cages, "cages.db", DB_BTREE, true) < 0)
		return -1;
	rc = s->calls->associate(s->calls, NULL, s->cages, cage_of, DB_AUTO_COMMIT);
	if (rc == 0)
		return 0;
fail:
	check_fatal(s, rc);
	return fail(s, "cannot index %s/calls.db by cage: %s%s", s->dir, db_strerror(rc),
		    recovery_hint(s));
}

/* What to do about a damaged data_dir, appended to such errors. */
static const char *recovery_hint(const struct store *s)
{
	static char hint[1024 * 3];

	snprintf(hint, sizeof hint,
		 ". Nothing was changed. To recover: stop anything using %1$.300s, back it up "
		 "(cp -a %1$.300s %1$.300s.bak), then run catastrophic recovery, which replays every "
		 "log file still there: db5.3_recover -c -h %1$.300s; check a file with "
		 "db5.3_verify %1$.300s/FILE.db; what cannot be recovered can be salvaged with "
		 "db5.3_dump -r -p %1$.300s/calls.db", s->dir);
	return hint;
}

/* The highest number of a log.NNNNNNNNNN file in dir that holds records
 * (0 when none). */
static unsigned long newest_log_file(const char *dir)
{
	unsigned long newest = 0;
	struct dirent *e;
	DIR *d = opendir(dir);

	while (d && (e = readdir(d))) {
		unsigned long n;
		char tail, path[4400];

		if (sscanf(e->d_name, "log.%lu%c", &n, &tail) != 1 || n <= newest)
			continue;
		/* a file written ahead (log_ahead.h) says nothing of the log */
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (!log_file_is_blank(path))
			newest = n;
	}
	if (d)
		closedir(d);
	return newest;
}

/*
 * cagehost.state remembers the log file in use at the last checkpoint.
 * Log files are only ever removed once older than that, so if the newest
 * one on disk is older, log files were lost - and with them commits that
 * recovery would need: the host must not start as if nothing happened.
 */
static int check_logs_present(struct store *s)
{
	char path[4200];
	unsigned long recorded = 0, newest = newest_log_file(s->dir);
	FILE *f;

	snprintf(path, sizeof path, "%s/cagehost.state", s->dir);
	f = fopen(path, "r");
	if (!f)
		return 0;	/* a new data_dir */
	if (fscanf(f, "log=%lu", &recorded) != 1)
		recorded = 0;
	fclose(f);
	if (newest < recorded)
		return fail(s, "log files are missing from %.300s: the last checkpoint was in "
			    "log.%010lu, the newest left is %s; commits in them would be lost "
			    "(restore the log files from a backup; to accept the loss, delete "
			    "%.300s/cagehost.state)%s", s->dir, recorded,
			    newest ? "older" : "none", s->dir, recovery_hint(s));
	return 0;
}

static void record_log_position(struct store *s)
{
	char path[4200], tmp[4300];
	DB_LOG_STAT *st;
	FILE *f;

	if (s->env->log_stat(s->env, &st, 0) != 0)
		return;
	if (st->st_cur_file == s->recorded_log) {
		free(st);	/* the checkpoint thread asks every second */
		return;
	}
	s->recorded_log = st->st_cur_file;
	snprintf(path, sizeof path, "%s/cagehost.state", s->dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f) {
		fprintf(f, "log=%lu\n", (unsigned long)st->st_cur_file);
		if (fclose(f) == 0)
			rename(tmp, path);
	}
	free(st);
}

/*
 * Counts the entries of db with a walk that reads every page (whole
 * records: large payloads live on overflow pages, which a key-only walk
 * would skip).
 */
static int count_entries(struct store *s, DB *db, const char *file, uint64_t *n,
			 int64_t deadline_ms, bool *complete)
{
	DBC *c;
	DBT k, d;
	int rc;

	*n = 0;
	rc = db->cursor(db, NULL, &c, 0);
	if (rc)
		return fail(s, "%s/%s cannot be read: %s%s", s->dir, file, db_strerror(rc),
			    recovery_hint(s));
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	*complete = false;
	while ((rc = c->get(c, &k, &d, DB_NEXT)) == 0) {
		if (++*n % 4096 == 0 && clock_mono_ms() > deadline_ms)
			break;
	}
	*complete = rc == DB_NOTFOUND;
	c->close(c);
	if (rc == 0)
		return 0;	/* out of time, not out of data */
	if (rc != DB_NOTFOUND)
		return fail(s, "%s/%s is damaged: %s (after %" PRIu64 " records)%s", s->dir, file,
			    db_strerror(rc), *n, recovery_hint(s));
	return 0;
}

/* A file shorter than the pages its header counts was truncated. */
static int check_length(struct store *s, DB *db, const char *file)
{
	DBTYPE type = DB_BTREE;
	void *st;
	u_int32_t pages, page_size;
	char path[4200];
	struct stat fs;
	int rc;

	db->get_type(db, &type);
	rc = db->stat(db, NULL, &st, DB_FAST_STAT);
	if (rc)
		return fail(s, "%s/%s cannot be read: %s%s", s->dir, file, db_strerror(rc),
			    recovery_hint(s));
	if (type == DB_HASH) {
		pages = ((DB_HASH_STAT *)st)->hash_pagecnt;
		page_size = ((DB_HASH_STAT *)st)->hash_pagesize;
	} else {
		pages = ((DB_BTREE_STAT *)st)->bt_pagecnt;
		page_size = ((DB_BTREE_STAT *)st)->bt_pagesize;
	}
	free(st);
	snprintf(path, sizeof path, "%s/%s", s->dir, file);
	rc = stat(path, &fs) == 0 && (uint64_t)fs.st_size < (uint64_t)pages * page_size;
	if (rc)
		fail(s, "%s is truncated: %lld bytes, its header counts %u pages of %u%s", path,
		     (long long)fs.st_size, pages, page_size, recovery_hint(s));
	return rc ? -1 : 0;
}

/*
 * Before serving: the files must be as long as their headers say, every
 * pending call must be readable, and the due index must list each of them
 * once.  A truncated file or a damaged page shows up here (page checksums),
 * and the host refuses to start rather than run with calls silently
 * missing.  The read is bounded to INTEGRITY_BUDGET_MS, so that a restart
 * with a million pending calls stays quick; pages not read then are checked
 * by their checksums when the host reads them.
 */
static int check_integrity(struct store *s)
{
	int64_t deadline = clock_mono_ms() + INTEGRITY_BUDGET_MS;
	uint64_t calls, due;
	bool calls_all, due_all;

	if (check_length(s, s->calls, "calls.db") < 0 || check_length(s, s->due, "due.db") < 0 ||
	    check_length(s, s->new_calls, "new.db") < 0 ||
	    count_entries(s, s->calls, "calls.db", &calls, deadline, &calls_all) < 0 ||
	    count_entries(s, s->due, "due.db", &due, deadline + INTEGRITY_BUDGET_MS / 2,
			  &due_all) < 0)
		return -1;
	if (!calls_all || !due_all) {
		log_info("checked the first %" PRIu64 " pending calls at start; the rest are "
			 "checked as they are read", calls);
		return 0;
	}
	if (calls != due)
		return fail(s, "%s/calls.db holds %" PRIu64 " pending calls but its index due.db "
			    "lists %" PRIu64 ": the files are damaged or from different times%s",
			    s->dir, calls, due, recovery_hint(s));
	return 0;
}

/*
 * The bytes of keys and records in db, if they are fewer than limit and
 * can be read by deadline_ms; else (or when the file cannot be read: the
 * integrity check and the host's own reads report that) false.
 */
static bool record_bytes(DB *db, int64_t deadline_ms, uint64_t limit, uint64_t *bytes)
{
	uint64_t n = 0;
	DBC *c;
	DBT k, d;
	int rc;

	*bytes = 0;
	if (db->cursor(db, NULL, &c, 0))
		return false;
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	while ((rc = c->get(c, &k, &d, DB_NEXT)) == 0) {
		*bytes += k.size + d.size;
		if (*bytes >= limit || (++n % 1024 == 0 && clock_mono_ms() > deadline_ms))
			break;
	}
	c->close(c);
	return rc == DB_NOTFOUND;
}

/*
 * Before serving: a file that a drained backlog left mostly empty gives its
 * pages back.  Berkeley DB reuses freed pages but never returns them, so
 * 200,000 delayed calls that ran leave calls.db at about 90 MB.  A file
 * larger than COMPACT_MIN_BYTES whose records (counted for at most
 * COMPACT_COUNT_MS: a file with more is not empty) fill less than a third
 * of it is compacted, the freed pages moved to its end and cut off
 * (DB->compact with DB_FREE_SPACE, in transactions of its own).  A failure
 * is logged and changes nothing else.
 */
static void compact_drained_files(struct store *s)
{
	const struct {
		DB *db;
		const char *file;
	} files[] = { { s->calls, "calls.db" },	    { s->due, "due.db" },
		      { s->new_calls, "new.db" },   { s->attempts, "attempts.db" },
		      { s->done, "done.db" },	    { s->dead, "dead.db" },
		      { s->idem, "idem.db" },	    { s->delivered, "delivered.db" } };
	char path[4200];

	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		uint64_t held, after;
		int64_t started = clock_mono_ms();
		struct stat before, now;
		DB_COMPACT c;
		int rc;

		snprintf(path, sizeof path, "%s/%s", s->dir, files[i].file);
		if (stat(path, &before) < 0 || (uint64_t)before.st_size < COMPACT_MIN_BYTES ||
		    !record_bytes(files[i].db, started + COMPACT_COUNT_MS,
				  (uint64_t)before.st_size / 3, &held))
			continue;
		memset(&c, 0, sizeof c);
		rc = files[i].db->compact(files[i].db, NULL, NULL, NULL, &c, DB_FREE_SPACE, NULL);
		if (rc) {
			log_warning("%s holds %.1f MB of records in %.1f MB; compacting it failed: %s",
				    path, held / 1048576.0, before.st_size / 1048576.0,
				    db_strerror(rc));
			check_fatal(s, rc);
			continue;
		}
		after = stat(path, &now) == 0 ? (uint64_t)now.st_size : (uint64_t)before.st_size;
		log_info("%s held %.1f MB of records in %.1f MB: compacted to %.1f MB in %.2f s",
			 path, held / 1048576.0, before.st_size / 1048576.0, after / 1048576.0,
			 (clock_mono_ms() - started) / 1000.0);
	}
}

static uint64_t count_keys(DB *db)
{
	uint64_t n = 0;
	DBC *c;
	DBT k, d;

	if (db->cursor(db, NULL, &c, 0))
		return 0;
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_PARTIAL;
	while (c->get(c, &k, &d, DB_NEXT) == 0)
		n++;
	c->close(c);
	return n;
}

static uint64_t last_key_id(DB *db)
{
	DBC *c;
	DBT k, d;
	uint64_t id = 0;
	char text[CALL_ID_LEN + 1];

	if (db->cursor(db, NULL, &c, 0))
		return 0;
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_PARTIAL;	/* the key is all we need */
	if (c->get(c, &k, &d, DB_LAST) == 0 && k.size == CALL_ID_LEN) {
		memcpy(text, k.data, CALL_ID_LEN);
		text[CALL_ID_LEN] = '\0';
		id = strtoull(text, NULL, 16);
	}
	c->close(c);
	return id;
}

#define REQUEUE_PER_TXN 500	/* keeps each transaction's locks few */

/* Moves up to REQUEUE_PER_TXN records out of new.db; *left is set when
 * more remain. */
static int requeue_some(struct store *s, uint64_t *moved, uint64_t *broken, bool *left)
{
	struct call_record r;
	char why[128];
	int n = 0, rc;
	DB_TXN *t;
	DBC *c;
	DBT k, d;

	*left = false;
	rc = s->env->txn_begin(s->env, NULL, &t, 0);
	if (rc)
		return db_fail(s, "txn_begin", rc);
	rc = s->new_calls->cursor(s->new_calls, t, &c, 0);
	if (rc) {
		t->abort(t);
		return fail(s, "%s/new.db cannot be read: %s%s", s->dir, db_strerror(rc),
			    recovery_hint(s));
	}
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	while ((rc = c->get(c, &k, &d, DB_NEXT)) == 0) {
		bool good = record_decode_call(d.data, d.size, &r, why, sizeof why) == 0 &&
			    r.state == CALL_PENDING;
		DB *to = good ? s->calls : s->quarantine;

		rc = to->put(to, t, &k, &d, 0);
		if (rc == 0)
			rc = c->del(c, 0);
		if (rc)
			break;
		if (good)
			++*moved;
		else
			++*broken;
		if (++n == REQUEUE_PER_TXN) {
			*left = true;
			rc = DB_NOTFOUND;
			break;
		}
	}
	c->close(c);
	if (rc != DB_NOTFOUND) {
		t->abort(t);
		return fail(s, "%s/new.db: cannot move its calls to calls.db: %s%s", s->dir,
			    db_strerror(rc), recovery_hint(s));
	}
	rc = t->commit(t, 0);
	if (rc)
		return db_fail(s, "commit", rc);
	return 0;
}

/*
 * new.db holds the calls whose first attempt a host was running from
 * memory.  At start they are due again: each moves to calls.db as it is
 * (its next= is its enqueue time), or to quarantine.db when it cannot be
 * decoded.  There are at most as many as a host keeps in flight (1,024),
 * so this is quick; each move is atomic, so a crash midway loses nothing.
 */
static int requeue_new_calls(struct store *s)
{
	uint64_t moved = 0, broken = 0;
	bool left = true;

	while (left)
		if (requeue_some(s, &moved, &broken, &left) < 0)
			return -1;
	if (moved)
		log_info("%" PRIu64 " call(s) were at their first attempt when the host stopped; "
			 "they are due again", moved);
	if (broken)
		log_error("new.db: moved %" PRIu64 " unreadable record(s) to quarantine.db "
			  "(db5.3_dump -p shows them; nothing else reads them)", broken);
	return 0;
}

static int lock_dir(struct store *s, const char *dir)
{
	char path[4096], pid[32];
	int n;

	snprintf(path, sizeof path, "%s/cagehost.lock", dir);
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0)
		return fail(s, "cannot create %s: %s", path, strerror(errno));
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		n = (int)pread(s->lock_fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		return fail(s, "another cagehost (pid %s) is using %s", pid[0] ? pid : "?", dir);
	}
	n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n)
		return fail(s, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* data_dir/cagehost.shm names the regions' key, for tools and tests. */
static void record_shm_key(const struct store *s)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof path, "%s/cagehost.shm", s->dir);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "%ld\n", s->shm_key);
		fclose(f);
	}
}

/*
 * The environment's regions live in System V shared memory, not in
 * memory-mapped files in data_dir: a region file grows as the cache fills,
 * and touching a page of it that the disk cannot back (a full disk) kills
 * the process with SIGBUS.  Each data_dir gets its own key (by device and
 * inode, 16 keys apart); db5.3_dump finds the regions through __db.001.
 */
static long shm_key_of(const char *dir)
{
	struct stat st;
	uint64_t h = 1469598103934665603ULL;

	if (stat(dir, &st) < 0)
		return 0x43470000;
	h = (h ^ (uint64_t)st.st_dev) * 1099511628211ULL;
	h = (h ^ (uint64_t)st.st_ino) * 1099511628211ULL;
	return (long)(0x10000000 + (h % 0x3000000) * 16);
}

static int process_alive(DB_ENV *env, pid_t pid, db_threadid_t tid, u_int32_t flags)
{
	(void)env;
	(void)tid;
	(void)flags;
	return pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH;
}

/* " (only N MiB free ...)" when the file system is nearly full, else "". */
static const char *free_space_note(const char *dir)
{
	static char note[160];
	struct statvfs fs;
	uint64_t avail;

	note[0] = '\0';
	if (statvfs(dir, &fs) == 0) {
		avail = (uint64_t)fs.f_bavail * fs.f_frsize;
		if (avail < MIN_FREE_BYTES)
			snprintf(note, sizeof note,
				 " (only %" PRIu64 " MiB free in %s; cagehost needs %" PRIu64
				 " MiB to start: free some space - no recovery is needed)",
				 avail >> 20, dir, MIN_FREE_BYTES >> 20);
	}
	return note;
}

static void bdb_message(const DB_ENV *env, const char *prefix, const char *msg)
{
	static struct log_budget budget = LOG_BUDGET(20, "Berkeley DB messages");

	(void)env;
	log_msg_budget(&budget, LOG_ERROR, "%s: %s", prefix, msg);
}

int store_make_dir(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, len + 1);
	while (len > 1 && path[len - 1] == '/')
		path[--len] = '\0';	/* "data/" is data itself, not a parent */
	for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -1;
		*slash = '/';
	}
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

int store_open(struct store **out, const char *dir, char *err, size_t err_size)
{
	struct store *s = calloc(1, sizeof *s);
	int rc;

	*out = NULL;
	if (!s) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	s->deaths_min_ms = INT64_MAX;
	s->lock_fd = -1;
	pthread_mutex_init(&s->removal_lock, NULL);
	snprintf(s->dir, sizeof s->dir, "%s", dir);
	if (store_make_dir(dir) < 0) {
		fail(s, "cannot create data_dir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (lock_dir(s, dir) < 0 || check_logs_present(s) < 0)
		goto fail;
	rc = db_env_create(&s->env, 0);
	if (rc) {
		db_fail(s, "db_env_create", rc);
		goto fail;
	}
	s->env->set_errcall(s->env, bdb_message);
	s->env->set_errpfx(s->env, "berkeley db");
	s->env->set_cachesize(s->env, 0, 32 << 20, 1);
	s->env->set_lg_bsize(s->env, 1 << 20);
	/* small log files: a full disk needs only this much freed to restart */
	s->env->set_lg_max(s->env, LOG_FILE_BYTES);
	s->env->set_lk_detect(s->env, DB_LOCK_DEFAULT);
	/* an outside reader (db_dump into a pager that does not read) must
	 * not block the host's writes for long: they fail after this, and the
	 * turn's enqueues get 503 instead of hanging */
	s->env->set_timeout(s->env, LOCK_TIMEOUT_US, DB_SET_LOCK_TIMEOUT);
	/* thread tracking lets failchk free what dead processes left */
	s->env->set_thread_count(s->env, 128);
	s->env->set_isalive(s->env, process_alive);
	/* log files are removed by remove_old_logs(), never while a backup
	 * copies them (DB_LOG_AUTO_REMOVE removes them from any thread that
	 * switches log files, and cannot be held back reliably) */
	s->env->log_set_config(s->env, DB_LOG_AUTO_REMOVE, 0);
	s->env->set_flags(s->env, DB_TXN_WRITE_NOSYNC, 1);
	s->shm_key = shm_key_of(dir);
	s->env->set_shm_key(s->env, s->shm_key);
	/* recorded before the regions exist: a start refused below (damaged
	 * data) leaves them, and tools and operators must find them */
	record_shm_key(s);
	rc = s->env->open(s->env, dir,
			  DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG |
			  DB_INIT_MPOOL | DB_RECOVER | DB_THREAD | DB_SYSTEM_MEM, 0600);
	if (rc) {
		const char *note = free_space_note(dir);

		fail(s, "cannot open the database environment in %.300s: %s%s", dir,
		     db_strerror(rc), note[0] ? note : recovery_hint(s));
		goto fail;
	}
	/*
	 * B-trees in id (so age) order, except new.db: its records come and
	 * go within moments, and a hash reuses their space in place, where a
	 * B-tree would split pages at one end and free them at the other.
	 */
	if (open_db(s, &s->calls, "calls.db", DB_BTREE, false) ||
	    open_db(s, &s->due, "due.db", DB_BTREE, true) ||
	    open_db(s, &s->new_calls, "new.db", DB_HASH, false) ||
	    open_db(s, &s->attempts, "attempts.db", DB_BTREE, false) ||
	    open_db(s, &s->done, "done.db", DB_BTREE, false) ||
	    open_db(s, &s->dead, "dead.db", DB_BTREE, false) ||
	    open_db(s, &s->idem, "idem.db", DB_BTREE, false) ||
	    open_db(s, &s->delivered, "delivered.db", DB_BTREE, false) ||
	    open_db(s, &s->quarantine, "quarantine.db", DB_BTREE, false))
		goto fail;
	/* DB_CREATE builds due.db from calls.db if it is missing or new. */
	rc = s->calls->associate(s->calls, NULL, s->due, due_of, DB_CREATE | DB_AUTO_COMMIT);
	if (rc) {
		db_fail(s, "cannot index calls.db by due time", rc);
		goto fail;
	}
	if (open_db(s, &s->due_entries, "due.db", DB_BTREE, true))
		goto fail;
	if (check_integrity(s) < 0 || open_cage_index(s) < 0 || requeue_new_calls(s) < 0)
		goto fail;
	compact_drained_files(s);
	s->done_count = count_keys(s->done);
	s->stats.dead_calls = count_keys(s->dead);
	record_log_position(s);
	s->last_id = last_key_id(s->calls);
	if (last_key_id(s->done) > s->last_id)
		s->last_id = last_key_id(s->done);
	if (last_key_id(s->dead) > s->last_id)
		s->last_id = last_key_id(s->dead);
	s->opened_max_id = s->last_id;
	*out = s;
	return 0;
fail:
	snprintf(err, err_size, "%s", s->error);
	store_close(&s);
	return -1;
}

void store_close(struct store **sp)
{
	struct store *s = *sp;

	if (!s)
		return;
	stop_checkpoints(s);
	if (s->txn)
		store_abort(s);
	/* the secondaries close before their primary */
	DB **dbs[] = { &s->due_entries, &s->due,  &s->cages, &s->calls,
		       &s->new_calls,   &s->attempts, &s->done, &s->dead,
		       &s->idem,        &s->delivered, &s->quarantine };
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
		if (*dbs[i])
			(*dbs[i])->close(*dbs[i], 0);
		*dbs[i] = NULL;
	}
	if (s->env) {
		DB_ENV *gone;

		if (s->env->txn_checkpoint(s->env, 0, 0, DB_FORCE) == 0)
			remove_old_logs(s);
		s->env->close(s->env, 0);
		/* a clean stop gives the shared memory back */
		if (s->shm_key && db_env_create(&gone, 0) == 0) {
			gone->set_shm_key(gone, s->shm_key);
			gone->remove(gone, s->dir, 0);
		}
	}
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
	*sp = NULL;
}

/* (Every enqueue makes an id and a record on the event loop: these two
 * copy without snprintf, which took most of their time.) */
void store_new_id(struct store *s, char id[CALL_ID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint64_t now = (uint64_t)clock_wall_ms() << 16, n;

	s->last_id = now > s->last_id ? now : s->last_id + 1;
	n = s->last_id;
	for (int i = CALL_ID_LEN - 1; i >= 0; i--, n >>= 4)
		id[i] = digits[n & 0xf];
	id[CALL_ID_LEN] = '\0';
}

/* Copies what fits of name into a field of size bytes, terminated. */
static void copy_name(char *field, size_t size, const char *name)
{
	size_t len = strnlen(name, size - 1);

	memcpy(field, name, len);
	field[len] = '\0';
}

void store_new_call(struct store *s, struct call_record *r, const char *queue,
		    const char *module, const char *method)
{
	memset(r, 0, sizeof *r);
	r->state = CALL_PENDING;
	store_new_id(s, r->id);
	copy_name(r->queue, sizeof r->queue, queue);
	copy_name(r->module, sizeof r->module, module);
	copy_name(r->method, sizeof r->method, method);
	r->enqueued_ms = r->when_ms = clock_wall_ms();
}

static DB_TXN *txn(struct store *s)
{
	int rc;

	if (!s->txn) {
		/*
		 * No waiting for locks: only another process (a db5.3_dump) can
		 * hold one this host needs, and a lock wait of Berkeley DB's does
		 * not always expire (its timeout bookkeeping misses some waits).
		 * The batch's writer retries a busy transaction for up to a
		 * second instead (batch.c).
		 */
		rc = s->env->txn_begin(s->env, NULL, &s->txn, DB_TXN_NOWAIT);
		if (rc) {
			db_fail(s, "txn_begin", rc);
			s->txn = NULL;
		}
	}
	return s->txn;
}

static int put(struct store *s, DB *db, const char *what, const void *key, size_t key_len,
	       const void *data, size_t data_len, u_int32_t flags)
{
	DB_TXN *t = txn(s);
	DBT k, d;
	int rc;

	if (!t)
		return -1;
	dbt_bytes(&k, key, key_len);
	dbt_bytes(&d, data, data_len);
	rc = db->put(db, t, &k, &d, flags);
	if (rc)
		return db_fail(s, what, rc);
	return 0;
}

static int del(struct store *s, DB *db, const char *what, const void *key, size_t key_len)
{
	DB_TXN *t = txn(s);
	DBT k;
	int rc;

	if (!t)
		return -1;
	dbt_bytes(&k, key, key_len);
	rc = db->del(db, t, &k, 0);
	if (rc && rc != DB_NOTFOUND)
		return db_fail(s, what, rc);
	return 0;
}

static int put_call(struct store *s, DB *db, const char *what, const struct call_record *r,
		    bool with_payload, u_int32_t flags)
{
	size_t len;
	char *bytes = record_encode_call(r, with_payload, &len);
	int rc;

	if (!bytes)
		return fail(s, "%s: out of memory", what);
	rc = put(s, db, what, r->id, strlen(r->id), bytes, len, flags);
	free(bytes);
	return rc;
}

/*
 * A new call's id is above every id stored when the store opened, and
 * store_new_id() never makes one twice: so a new call cannot overwrite a
 * stored one, and its put needs no DB_NOOVERWRITE.  That flag costs a
 * search of calls.db per enqueue on top of the one Berkeley DB makes for
 * the indexes (17 % of the writer's instructions for a delayed enqueue,
 * callgrind; enqueues/s +5 %, 8 of 10 paired runs faster).
 */
static bool is_new_id(const struct store *s, const char *id)
{
	char *end;
	uint64_t n = strtoull(id, &end, 16);

	return end == id + CALL_ID_LEN && !*end && n > s->opened_max_id;
}

int store_add_call(struct store *s, const struct call_record *r, bool is_new)
{
	if (!is_new_id(s, r->id))
		return fail(s, "add call %s: not a new call id (ids up to %016" PRIx64
			    " were taken when %s opened)", r->id, s->opened_max_id, s->dir);
	if (put_call(s, is_new ? s->new_calls : s->calls, "add call", r, true, 0) < 0)
		return -1;
	if (r->idem_key[0] &&
	    put(s, r->delivery ? s->delivered : s->idem, "add idempotency key", r->idem_key,
		strlen(r->idem_key), r->id, strlen(r->id), 0) < 0)
		return -1;
	__atomic_add_fetch(&s->stats.calls_added, 1, __ATOMIC_RELAXED);
	return 0;
}

int store_update_call(struct store *s, const struct call_record *r, bool was_new)
{
	if (was_new && del(s, s->new_calls, "move call from new.db", r->id, strlen(r->id)) < 0)
		return -1;
	return put_call(s, s->calls, "update call", r, true, 0);
}

int store_finish_call(struct store *s, const struct call_record *r, bool was_new)
{
	bool dead = r->state == CALL_DEAD;

	if (del(s, was_new ? s->new_calls : s->calls, "remove call", r->id, strlen(r->id)) < 0)
		return -1;
	if (dead) {
		s->delta.dead++;
		/* stamped on the loop, maybe before a pass began; or a clock
		 * set back: the next pass must not wait past it */
		if (r->when_ms < s->deaths_min_ms)
			s->deaths_min_ms = r->when_ms;
	} else {
		s->delta.done++;
	}
	return put_call(s, dead ? s->dead : s->done, dead ? "keep dead call" : "keep done call",
			r, dead, 0);
}

int store_requeue_dead(struct store *s, const struct call_record *r)
{
	if (del(s, s->dead, "remove dead call", r->id, strlen(r->id)) < 0)
		return -1;
	if (put_call(s, s->calls, "requeue call", r, true, 0) < 0)
		return -1;
	s->delta.dead--;
	return 0;
}

static int delete_attempts(struct store *s, const char *id);
static int find_key(struct store *s, DB *db, const char *key, char id[CALL_ID_LEN + 1]);

/* Deletes key from db (idem.db, delivered.db) if it maps to call id: a
 * later call may have taken the key over, and that mapping stays. */
static int delete_key_of(struct store *s, DB *db, const char *key, const char *id)
{
	char mapped[CALL_ID_LEN + 1];
	int rc = find_key(s, db, key, mapped);

	if (rc != 0 || strcmp(mapped, id) != 0)
		return rc < 0 ? -1 : 0;
	return del(s, db, "delete idempotency key", key, strlen(key));
}

int store_delete_dead(struct store *s, const struct call_record *r)
{
	if (del(s, s->dead, "delete dead call", r->id, strlen(r->id)) < 0 ||
	    delete_attempts(s, r->id) < 0)
		return -1;
	/* a call delivered by another cage has its key in delivered.db */
	if (r->idem_key[0] && (delete_key_of(s, s->idem, r->idem_key, r->id) < 0 ||
			       delete_key_of(s, s->delivered, r->idem_key, r->id) < 0))
		return -1;
	s->delta.dead--;
	return 0;
}

static void attempt_key(char *key, size_t size, const char *id, uint32_t n)
{
	snprintf(key, size, "%s/%04" PRIu32, id, n);
}

int store_add_attempt(struct store *s, const char *id, uint32_t n, const struct attempt_record *a)
{
	char key[CALL_ID_LEN + 16];
	size_t len;
	char *bytes = record_encode_attempt(a, &len);
	int rc;

	if (!bytes)
		return fail(s, "add attempt: out of memory");
	attempt_key(key, sizeof key, id, n);
	rc = put(s, s->attempts, "add attempt", key, strlen(key), bytes, len, 0);
	free(bytes);
	return rc;
}

/* The database behind a table of store.h. */
static DB *table_db(const struct store *s, enum store_table table)
{
	DB *const dbs[] = { [TABLE_CALLS] = s->calls, [TABLE_NEW] = s->new_calls,
			    [TABLE_DONE] = s->done, [TABLE_DEAD] = s->dead };

	return dbs[table];
}

int store_get_call(struct store *s, enum store_table table, const char *id,
		   struct call_record *r, void **buf)
{
	DB *db = table_db(s, table);
	char why[128];
	DBT k, d;
	int rc;

	*buf = NULL;
	dbt_bytes(&k, id, strlen(id));
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_MALLOC;
	rc = db->get(db, s->txn, &k, &d, s->txn ? 0 : DB_READ_COMMITTED);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc)
		return db_fail(s, "read call", rc);
	if (record_decode_call(d.data, d.size, r, why, sizeof why) < 0) {
		free(d.data);
		return fail(s, "call %s: %s", id, why);
	}
	if (!r->id[0]) {
		snprintf(r->id, sizeof r->id, "%s", id);
		r->enqueued_ms = record_id_time(id);
	}
	*buf = d.data;
	return 0;
}

static int open_cursor(struct store *s, DB *db, DBC **c)
{
	int rc = db->cursor(db, s->txn, c, s->txn ? 0 : DB_READ_COMMITTED);

	if (rc)
		return db_fail(s, "cursor", rc);
	return 0;
}

static int find_key(struct store *s, DB *db, const char *key, char id[CALL_ID_LEN + 1])
{
	DBT k, d;
	int rc;

	dbt_bytes(&k, key, strlen(key));
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_USERMEM;
	d.data = id;
	d.ulen = CALL_ID_LEN;
	rc = db->get(db, s->txn, &k, &d, s->txn ? 0 : DB_READ_COMMITTED);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc)
		return db_fail(s, "read idempotency key", rc);
	id[d.size < CALL_ID_LEN ? d.size : CALL_ID_LEN] = '\0';
	return 0;
}

int store_find_idem(struct store *s, const char *key, char id[CALL_ID_LEN + 1])
{
	return find_key(s, s->idem, key, id);
}

int store_find_delivery(struct store *s, const char *key, char id[CALL_ID_LEN + 1])
{
	return find_key(s, s->delivered, key, id);
}

/*
 * Deletes, in the open transaction, the keys of db that start with prefix;
 * with limit (prefix and a call id), only those of exactly its length that
 * sort below it (other keys with that prefix, longer or shorter, stay).
 * Returns how many, or -1.
 */
static int delete_prefixed(struct store *s, DB *db, const char *what, const char *prefix,
			   const char *limit)
{
	size_t plen = strlen(prefix), limit_len = limit ? strlen(limit) : 0;
	int deleted = 0, rc;
	DBC *c;
	DBT k, d;

	if (!txn(s) || open_cursor(s, db, &c) < 0)
		return -1;
	dbt_bytes(&k, prefix, plen);
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_PARTIAL;
	for (rc = c->get(c, &k, &d, DB_SET_RANGE); rc == 0; rc = c->get(c, &k, &d, DB_NEXT)) {
		if (k.size <= plen || memcmp(k.data, prefix, plen) != 0)
			break;
		if (limit && k.size != limit_len)
			continue;
		if (limit && memcmp(k.data, limit, limit_len) >= 0)
			break;
		rc = c->del(c, 0);
		if (rc)
			break;
		deleted++;
	}
	c->close(c);
	if (rc && rc != DB_NOTFOUND)
		return db_fail(s, what, rc);
	return deleted;
}

int store_forget_deliveries(struct store *s, const char *prefix, const char *below_id)
{
	char limit[RECORD_IDEM_MAX + 1];

	if (strlen(prefix) + CALL_ID_LEN > RECORD_IDEM_MAX)
		return fail(s, "forget deliveries: sender name too long");
	snprintf(limit, sizeof limit, "%s%s", prefix, below_id);
	/* a sender's keys sort by call id (fixed width hex); a longer key
	 * ("cage-X-peer-2-ID" for "cage-X-peer-") is another sender's */
	return delete_prefixed(s, s->delivered, "forget answered deliveries", prefix, limit);
}

bool store_has_deliveries(struct store *s)
{
	DBT k, d;
	DBC *c;
	bool any;

	if (s->cages->cursor(s->cages, NULL, &c, 0))
		return true;	/* cannot tell: assume so */
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	k.flags = d.flags = DB_DBT_PARTIAL;
	any = c->get(c, &k, &d, DB_FIRST) == 0;
	c->close(c);
	return any;
}

int store_cage_floor(struct store *s, const char *cage, char id[CALL_ID_LEN + 1])
{
	DBC *c;
	DBT k, pk, d;
	int rc;

	if (open_cursor(s, s->cages, &c) < 0)
		return -1;
	dbt_bytes(&k, cage, strlen(cage));
	memset(&pk, 0, sizeof pk);
	pk.flags = DB_DBT_USERMEM;
	pk.data = id;
	pk.ulen = CALL_ID_LEN;
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_PARTIAL;
	/* duplicates sort by primary key: the first is the oldest call */
	rc = c->pget(c, &k, &pk, &d, DB_SET);
	c->close(c);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc)
		return db_fail(s, "read the index of calls by cage", rc);
	id[pk.size < CALL_ID_LEN ? pk.size : CALL_ID_LEN] = '\0';
	return 0;
}

int store_next_due(struct store *s, int64_t after_ms, int64_t *due_ms)
{
	char after[CLOCK_ISO_LEN + 1];
	DBC *c;
	DBT k, d;
	int rc;

	if (open_cursor(s, s->due_entries, &c) < 0)
		return -1;
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_PARTIAL;
	if (after_ms == INT64_MIN) {
		rc = c->get(c, &k, &d, DB_FIRST);
	} else {
		clock_format_iso(after_ms, after, sizeof after);
		dbt_bytes(&k, after, CLOCK_ISO_LEN);
		rc = c->get(c, &k, &d, DB_SET_RANGE);
		if (rc == 0 && k.size == CLOCK_ISO_LEN && !memcmp(k.data, after, CLOCK_ISO_LEN))
			rc = c->get(c, &k, &d, DB_NEXT_NODUP);
	}
	c->close(c);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc)
		return db_fail(s, "read due index", rc);
	if (clock_parse_iso(k.data, k.size, due_ms) < 0)
		return fail(s, "due.db holds a key that is not a time");
	return 0;
}

/*
 * Moves a pending record that cannot be decoded out of the way, bytes
 * intact, into quarantine.db, so it cannot hold up the calls due after it.
 */
static void quarantine_call(struct store *s, const char *id)
{
	DBT k, d;
	int rc;

	if (!txn(s))
		return;
	dbt_bytes(&k, id, strlen(id));
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_MALLOC;
	rc = s->calls->get(s->calls, s->txn, &k, &d, 0);
	if (rc == 0 && put(s, s->quarantine, "quarantine call", id, strlen(id), d.data, d.size,
			   0) == 0 && del(s, s->calls, "quarantine call", id, strlen(id)) == 0)
		log_error("calls.db: moved unreadable record %s to quarantine.db (db5.3_dump -p "
			  "shows it; nothing else reads it)", id);
	free(d.data);
}

/*
 * Puts c on the first entry of due.db at or after (time from, call
 * from_id): sorted duplicates keep the calls of one due time in id order.
 */
static int position_due(DBC *c, const char *from, const char *from_id, DBT *k, DBT *d)
{
	int rc;

	if (!from[0])
		return c->get(c, k, d, DB_FIRST);
	dbt_bytes(k, from, strlen(from));
	if (from_id[0]) {
		dbt_bytes(d, from_id, strlen(from_id));
		rc = c->get(c, k, d, DB_GET_BOTH_RANGE);
		if (rc != DB_NOTFOUND)
			return rc;
		/* no call due at `from` comes at or after from_id (or none is
		 * due then any more): the first call due later */
		dbt_bytes(k, from, strlen(from));
		memset(d, 0, sizeof *d);
		rc = c->get(c, k, d, DB_SET_RANGE);
		if (rc == 0 && k->size == strlen(from) && !memcmp(k->data, from, k->size))
			rc = c->get(c, k, d, DB_NEXT_NODUP);
		return rc;
	}
	memset(d, 0, sizeof *d);
	return c->get(c, k, d, DB_SET_RANGE);
}

/* Is the entry (k, d) at or after position (time, id)?  ("" time: never) */
static bool at_or_after(const DBT *k, const DBT *d, const char *time, const char *id)
{
	size_t n = strlen(time);
	int c;

	if (!time[0])
		return false;
	c = memcmp(k->data, time, k->size < n ? k->size : n);
	if (c == 0)
		c = k->size < n ? -1 : k->size > n;
	if (c == 0) {
		n = strlen(id);
		c = memcmp(d->data, id, d->size < n ? d->size : n);
		if (c == 0)
			c = d->size < n ? -1 : d->size > n;
	}
	return c >= 0;
}

int store_scan_due(struct store *s, const char *from, const char *from_id, const char *until,
		   const char *until_id, int64_t now_ms, int max,
		   int (*skip)(const char *time, const char *id, void *arg),
		   int (*visit)(const struct call_record *r, void *arg), void *arg)
{
	char id[CALL_ID_LEN + 1], time[CLOCK_ISO_LEN + 1];
	char now_iso[CLOCK_ISO_LEN + 1], why[128];
	char broken[16][CALL_ID_LEN + 1];
	/* (every scan passes an entry again: a line a second says it) */
	static struct log_budget dangling = LOG_BUDGET(1, "due.db entries without a call");
	struct call_record r;
	DBC *c, *calls;
	DBT k, d, pk, pd;
	int rc, got, pass, seen = 0, nbroken = 0;

	clock_format_iso(now_ms, now_iso, sizeof now_iso);
	if (open_cursor(s, s->due_entries, &c) < 0)
		return -1;
	if (open_cursor(s, s->calls, &calls) < 0) {
		c->close(c);
		return -1;
	}
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	memset(&pd, 0, sizeof pd);
	/*
	 * The index is walked on its own and a call's record read only when
	 * skip() lets it through: a scan passes over the calls in flight at
	 * the cost of a cursor step each, not of a read of calls.db.
	 */
	for (rc = position_due(c, from, from_id, &k, &d); rc == 0 && seen < max;
	     rc = c->get(c, &k, &d, DB_NEXT)) {
		if (k.size != CLOCK_ISO_LEN || memcmp(k.data, now_iso, CLOCK_ISO_LEN) > 0 ||
		    at_or_after(&k, &d, until, until_id))
			break;
		if (d.size != CALL_ID_LEN) {
			log_msg_budget(&dangling, LOG_ERROR, "due.db: an entry for %.*s names no "
				       "call id (%u bytes); passed over", (int)k.size,
				       (char *)k.data, d.size);
			continue;
		}
		memcpy(id, d.data, CALL_ID_LEN);
		id[CALL_ID_LEN] = '\0';
		memcpy(time, k.data, CLOCK_ISO_LEN);
		time[CLOCK_ISO_LEN] = '\0';
		pass = skip ? skip(time, id, arg) : 0;
		if (pass < 0)
			break;
		if (pass > 0)
			continue;
		dbt_bytes(&pk, id, CALL_ID_LEN);
		got = calls->get(calls, &pk, &pd, DB_SET);
		if (got == DB_NOTFOUND) {
			log_msg_budget(&dangling, LOG_ERROR, "due.db lists call %s, which calls.db "
				       "does not hold; passed over", id);
			continue;
		}
		if (got) {
			rc = got;
			break;
		}
		if (record_decode_call(pd.data, pd.size, &r, why, sizeof why) < 0) {
			log_error("calls.db: unreadable record %s: %s", id, why);
			if (nbroken < 16)
				memcpy(broken[nbroken++], id, sizeof id);
			continue;
		}
		seen++;
		if (visit(&r, arg))
			break;
	}
	calls->close(calls);
	c->close(c);
	for (int i = 0; i < nbroken; i++)
		quarantine_call(s, broken[i]);
	if (rc && rc != DB_NOTFOUND)
		return db_fail(s, "scan due calls", rc);
	return 0;
}

int store_scan_calls(struct store *s, enum store_table table, const char *after_id, int max,
		     int (*visit)(const struct call_record *r, void *arg), void *arg,
		     char last_read[CALL_ID_LEN + 1])
{
	struct call_record r;
	char why[128];
	DBC *c;
	DBT k, d;
	int rc, seen = 0;

	if (open_cursor(s, table_db(s, table), &c) < 0)
		return -1;
	memset(&d, 0, sizeof d);
	dbt_bytes(&k, after_id, strlen(after_id));
	rc = c->get(c, &k, &d, after_id[0] ? DB_SET_RANGE : DB_FIRST);
	for (; rc == 0 && seen < max; rc = c->get(c, &k, &d, DB_NEXT)) {
		if (k.size == strlen(after_id) && !memcmp(k.data, after_id, k.size))
			continue;
		seen++;
		if (last_read)
			snprintf(last_read, CALL_ID_LEN + 1, "%.*s",
				 (int)(k.size < CALL_ID_LEN ? k.size : CALL_ID_LEN), (char *)k.data);
		if (record_decode_call(d.data, d.size, &r, why, sizeof why) < 0)
			continue;
		if (!r.id[0] && k.size == CALL_ID_LEN) {
			memcpy(r.id, k.data, CALL_ID_LEN);
			r.id[CALL_ID_LEN] = '\0';
			r.enqueued_ms = record_id_time(r.id);
		}
		if (visit(&r, arg))
			break;
	}
	c->close(c);
	if (rc && rc != DB_NOTFOUND)
		return db_fail(s, "scan calls", rc);
	return seen;
}

int store_list_attempts(struct store *s, const char *id,
			void (*visit)(uint32_t n, const struct attempt_record *a, void *arg),
			void *arg)
{
	struct attempt_record a;
	char prefix[CALL_ID_LEN + 2];
	size_t plen;
	DBC *c;
	DBT k, d;
	int rc;

	plen = (size_t)snprintf(prefix, sizeof prefix, "%s/", id);
	if (open_cursor(s, s->attempts, &c) < 0)
		return -1;
	dbt_bytes(&k, prefix, plen);
	memset(&d, 0, sizeof d);
	for (rc = c->get(c, &k, &d, DB_SET_RANGE); rc == 0; rc = c->get(c, &k, &d, DB_NEXT)) {
		if (k.size <= plen || memcmp(k.data, prefix, plen) != 0)
			break;
		if (record_decode_attempt(d.data, d.size, &a) == 0) {
			/* the key's bytes are not NUL-terminated: read only its own */
			uint32_t n = 0;

			for (size_t i = plen; i < k.size && i < plen + 9; i++)
				if (((char *)k.data)[i] >= '0' && ((char *)k.data)[i] <= '9')
					n = n * 10 + (uint32_t)(((char *)k.data)[i] - '0');
			visit(n, &a, arg);
		}
	}
	c->close(c);
	if (rc && rc != DB_NOTFOUND)
		return db_fail(s, "list attempts", rc);
	return 0;
}

static int delete_attempts(struct store *s, const char *id)
{
	char prefix[CALL_ID_LEN + 2];

	snprintf(prefix, sizeof prefix, "%s/", id);
	return delete_prefixed(s, s->attempts, "delete attempts", prefix, NULL) < 0 ? -1 : 0;
}

/* Does done.db (or dead.db) hold more than keep_max records, this
 * transaction's writes counted? */
static bool over_keep_max(const struct store *s, bool dead, uint64_t keep_max)
{
	int64_t held = dead ? (int64_t)__atomic_load_n(&s->stats.dead_calls, __ATOMIC_RELAXED) +
				      s->delta.dead
			    : (int64_t)s->done_count + s->delta.done;

	return held > 0 && (uint64_t)held > keep_max;
}

/* Forgets the finished call under cursor c, with its attempts and its
 * Idempotency-Key; r->id is set, the other fields may be zero (a record
 * that did not decode). */
static int forget_finished(struct store *s, DBC *c, bool dead, const struct call_record *r)
{
	int rc;

	/* only the key that maps to this call: a delivered call's key lives
	 * in delivered.db, and the same string in idem.db is another call's.
	 * A key in delivered.db stays: it guards against the other cage
	 * sending the call again, until that cage says it will not
	 * (store_forget_deliveries) */
	if (r->idem_key[0] && delete_key_of(s, s->idem, r->idem_key, r->id) < 0)
		return -1;
	if (delete_attempts(s, r->id) < 0)
		return -1;
	rc = c->del(c, 0);
	if (rc)
		return db_fail(s, dead ? "sweep dead calls" : "sweep done calls", rc);
	if (dead)
		s->delta.dead--;
	else
		s->delta.done--;
	return 0;
}

int store_sweep_done(struct store *s, int64_t cutoff_ms, uint64_t keep_max, int max)
{
	char cutoff_id[CALL_ID_LEN + 1], why[128];
	struct call_record r;
	int deleted = 0, rc;
	DBC *c;
	DBT k, d;

	/* ids start with the enqueue time: nothing enqueued after the cutoff
	 * can have finished before it */
	snprintf(cutoff_id, sizeof cutoff_id, "%016" PRIx64,
		 (uint64_t)(cutoff_ms < 0 ? 0 : cutoff_ms) << 16);
	if (!txn(s) || open_cursor(s, s->done, &c) < 0)
		return -1;
	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	for (rc = c->get(c, &k, &d, DB_FIRST); rc == 0 && deleted < max;
	     rc = c->get(c, &k, &d, DB_NEXT)) {
		/* the oldest go first while there are more than keep_max */
		bool too_many = over_keep_max(s, false, keep_max);

		if (!too_many && (k.size != CALL_ID_LEN ||
				  memcmp(k.data, cutoff_id, CALL_ID_LEN) > 0))
			break;
		if (record_decode_call(d.data, d.size, &r, why, sizeof why) < 0)
			memset(&r, 0, sizeof r);	/* its id is all that is known */
		else if (r.when_ms >= cutoff_ms && !too_many)
			continue;
		else if (r.when_ms >= cutoff_ms)
			s->delta.early++;
		snprintf(r.id, sizeof r.id, "%.*s", (int)k.size, (char *)k.data);
		if (forget_finished(s, c, false, &r) < 0) {
			c->close(c);
			return -1;
		}
		deleted++;
	}
	c->close(c);
	if (rc && rc != DB_NOTFOUND)
		return db_fail(s, "sweep done calls", rc);
	return deleted;
}

/* Forgets the dead call id under cursor c, read whole for its key. */
static int forget_dead_here(struct store *s, DBC *c, const char *id)
{
	struct call_record r;
	char why[128];
	DBT k, d;
	int rc;

	memset(&k, 0, sizeof k);
	memset(&d, 0, sizeof d);
	rc = c->get(c, &k, &d, DB_CURRENT);
	if (rc)
		return db_fail(s, "sweep dead calls", rc);
	if (record_decode_call(d.data, d.size, &r, why, sizeof why) < 0)
		memset(&r, 0, sizeof r);	/* damaged: its key is unknown */
	snprintf(r.id, sizeof r.id, "%s", id);
	return forget_finished(s, c, true, &r);
}

/*
 * One bite of a pass over dead.db (see store.h).  A call's id holds its
 * enqueue time, not its death: a call that expired died a lifetime after
 * it was enqueued, so the calls before the cutoff's id include calls too
 * recent to go, which every pass reads again.  So a pass resumes where the
 * last bite stopped, reads at most SWEEP_DEAD_READ_MAX records or for
 * SWEEP_DEAD_BITE_MS a bite (and of each record only its death, unless it
 * goes), and a new pass for age starts only once the cutoff has reached
 * the earliest death it passed over (pass->next_ms), and no sooner than 19
 * times the last pass's reading time after it.
 */
int store_sweep_dead(struct store *s, int64_t cutoff_ms, uint64_t keep_max, int max,
		     struct store_sweep_pass *pass)
{
	char cutoff_id[CALL_ID_LEN + 1];
	int64_t started_ms = clock_mono_ms(), until_ms = started_ms + SWEEP_DEAD_BITE_MS;
	bool too_many = over_keep_max(s, true, keep_max), ended = false;
	int deleted = 0, read = 0, rc;
	DBC *c;
	DBT k, d;

	if (!pass->at[0] && started_ms < pass->not_before_ms)
		return 0;	/* the last pass was long: wait */
	if (!pass->at[0] && !too_many &&
	    cutoff_ms < (pass->next_ms < s->deaths_min_ms ? pass->next_ms : s->deaths_min_ms))
		return 0;	/* none can have died long enough ago yet */
	if (!pass->at[0]) {
		pass->pass_min_ms = INT64_MAX;
		pass->pass_read_ms = 0;
	}
	snprintf(cutoff_id, sizeof cutoff_id, "%016" PRIx64,
		 (uint64_t)(cutoff_ms < 0 ? 0 : cutoff_ms) << 16);
	if (!txn(s) || open_cursor(s, s->dead, &c) < 0)
		return -1;
	/* a record's first field is its death: read no more of it, unless
	 * it goes */
	memset(&d, 0, sizeof d);
	d.flags = DB_DBT_PARTIAL;
	d.dlen = RECORD_WHEN_BYTES;
	/* the oldest go first while there are more than keep_max */
	dbt_bytes(&k, pass->at, strlen(pass->at));
	rc = c->get(c, &k, &d, too_many || !pass->at[0] ? DB_FIRST : DB_SET_RANGE);
	if (rc == 0 && !too_many && k.size == strlen(pass->at) && !memcmp(k.data, pass->at, k.size))
		rc = c->get(c, &k, &d, DB_NEXT);	/* read in the last bite */
	for (; rc == 0 && deleted < max; rc = c->get(c, &k, &d, DB_NEXT)) {
		bool valid = k.size == CALL_ID_LEN, dated;
		int64_t died;

		too_many = over_keep_max(s, true, keep_max);
		if (!too_many && (!valid || memcmp(k.data, cutoff_id, CALL_ID_LEN) > 0)) {
			/* enqueued after the cutoff: none of the rest died before it */
			char first[CALL_ID_LEN + 1];

			snprintf(first, sizeof first, "%.*s", (int)k.size, (char *)k.data);
			if (valid && record_id_time(first) < pass->pass_min_ms)
				pass->pass_min_ms = record_id_time(first);
			ended = true;
			break;
		}
		dated = record_when(d.data, d.size, &died) == 0;
		snprintf(pass->at, sizeof pass->at, "%.*s", (int)k.size, (char *)k.data);
		if (too_many || (dated && died < cutoff_ms)) {
			if (forget_dead_here(s, c, pass->at) < 0) {
				c->close(c);
				return -1;
			}
			deleted++;
		} else if (dated && died < pass->pass_min_ms) {
			pass->pass_min_ms = died;	/* died too recently to go yet */
		}
		/* a damaged record goes only for keep_max: its age is unknown */
		if (++read >= SWEEP_DEAD_READ_MAX ||
		    (read % 32 == 0 && clock_mono_ms() >= until_ms))
			break;
	}
	c->close(c);
	if (rc == DB_NOTFOUND)
		ended = true;
	else if (rc)
		return db_fail(s, "sweep dead calls", rc);
	pass->pass_read_ms += clock_mono_ms() - started_ms;
	if (ended) {
		/* what the pass kept, and what died meanwhile; a pass that
		 * failed (its bites undone) leaves the gate as it was */
		pass->at[0] = '\0';
		pass->not_before_ms = clock_mono_ms() + 19 * pass->pass_read_ms;
		pass->next_ms = pass->pass_min_ms < s->deaths_min_ms ? pass->pass_min_ms
								     : s->deaths_min_ms;
		s->deaths_min_ms = INT64_MAX;
	}
	s->delta.dead_swept += (uint64_t)deleted;
	return deleted;
}

bool store_in_transaction(const struct store *s)
{
	return s->txn != NULL;
}

int store_part_begin(struct store *s)
{
	DB_TXN *outer = txn(s), *part;
	int rc;

	if (!outer)
		return -1;
	rc = s->env->txn_begin(s->env, outer, &part, DB_TXN_NOWAIT);
	if (rc) {
		/* not db_fail(): the batch's own transaction has not failed */
		check_fatal(s, rc);
		return fail(s, "txn_begin: %s", db_strerror(rc));
	}
	s->outer.txn = outer;
	s->outer.txn_failed = s->txn_failed;
	s->outer.delta = s->delta;
	s->txn = part;
	s->txn_failed = false;
	return 0;
}

int store_part_end(struct store *s, bool keep)
{
	DB_TXN *part = s->txn;
	int rc = 0;

	keep = keep && !s->txn_failed;
	s->txn = s->outer.txn;
	s->txn_failed = s->outer.txn_failed;
	s->outer.txn = NULL;
	if (keep) {
		rc = part->commit(part, 0);
		if (rc == 0)
			return 0;
	} else {
		part->abort(part);
	}
	s->delta = s->outer.delta;
	if (rc) {
		fail(s, "commit: %s", db_strerror(rc));
		check_fatal(s, rc);
	}
	return -1;
}

int store_commit(struct store *s)
{
	int rc;

	if (!s->txn)
		return 0;
	if (s->txn_failed) {
		store_abort(s);
		return -1;	/* the message of the failed operation stands */
	}
	rc = s->txn->commit(s->txn, DB_TXN_WRITE_NOSYNC);
	__atomic_add_fetch(&s->stats.commits, 1, __ATOMIC_RELAXED);
	s->txn = NULL;
	if (rc) {
		memset(&s->delta, 0, sizeof s->delta);
		return db_fail(s, "commit", rc);
	}
	__atomic_add_fetch(&s->stats.done_swept_early, s->delta.early, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->stats.dead_swept, s->delta.dead_swept, __ATOMIC_RELAXED);
	/* done.db's count follows what committed, not what was tried */
	s->done_count = (int64_t)s->done_count + s->delta.done < 0 ? 0
		      : (uint64_t)((int64_t)s->done_count + s->delta.done);
	__atomic_add_fetch(&s->stats.dead_calls, (uint64_t)s->delta.dead, __ATOMIC_RELAXED);
	memset(&s->delta, 0, sizeof s->delta);
	return 0;
}

int store_flush_log(struct store *s)
{
	int rc = s->env->log_flush(s->env, NULL);

	if (rc) {
		snprintf(s->flush_error, sizeof s->flush_error, "%s", db_strerror(rc));
		check_fatal(s, rc);
		return -1;
	}
	if (log_ahead_after_flush(__atomic_load_n(&s->log_ahead, __ATOMIC_ACQUIRE)) < 0) {
		snprintf(s->flush_error, sizeof s->flush_error,
			 "cannot sync the directory of a new log file: %s", strerror(errno));
		return -1;
	}
	__atomic_add_fetch(&s->stats.log_flushes, 1, __ATOMIC_RELAXED);
	return 0;
}

const char *store_flush_error(const struct store *s)
{
	return s->flush_error;
}

void store_abort(struct store *s)
{
	if (!s->txn)
		return;
	s->txn->abort(s->txn);
	s->txn = NULL;
	s->txn_failed = false;
	memset(&s->delta, 0, sizeof s->delta);
}

/*
 * Checkpoints every cp_interval_ms, and sooner - checked every
 * CHECKPOINT_TICK_MS - once CHECKPOINT_LOG_KB of log has been written since
 * the last one, so that recovery after a crash under heavy traffic reads
 * only a few megabytes of log.
 */
/* Removes the log files the last checkpoint made unneeded, unless a
 * backup is copying them. */
static void remove_old_logs(struct store *s)
{
	int64_t now = clock_mono_ms();
	int rc = 0;

	pthread_mutex_lock(&s->removal_lock);
	if (!s->backup_running) {
		rc = s->env->log_archive(s->env, NULL, DB_ARCH_REMOVE);
	} else if (now - s->held_told_ms >= HELD_WARNING_MS) {
		/* a hung backup_dir (a lost NFS server): data_dir grows */
		s->held_told_ms = now;
		log_warning("a backup has held back the removal of old log files for %lld "
			    "minutes: data_dir grows meanwhile. Is backup_dir hanging? Stopping "
			    "the host (SIGTERM) cancels the backup",
			    (long long)((now - s->backup_since_ms) / 60000));
	}
	pthread_mutex_unlock(&s->removal_lock);
	if (rc)
		log_error("removing old log files: %s", db_strerror(rc));
}

static void *checkpoint_loop(void *arg)
{
	struct store *s = arg;
	int64_t tick_ms = s->cp_interval_ms < CHECKPOINT_TICK_MS ? s->cp_interval_ms
								 : CHECKPOINT_TICK_MS;
	int64_t last = clock_mono_ms();
	struct timespec until;
	int rc;

	pthread_mutex_lock(&s->cp_lock);
	while (!s->cp_stop) {
		until = clock_mono_deadline(tick_ms);
		if (pthread_cond_timedwait(&s->cp_wake, &s->cp_lock, &until) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&s->cp_lock);
		if (clock_mono_ms() - last >= s->cp_interval_ms) {
			rc = s->env->txn_checkpoint(s->env, 0, 0, 0);
			last = clock_mono_ms();
		} else {
			rc = s->env->txn_checkpoint(s->env, CHECKPOINT_LOG_KB, 0, 0);
		}
		if (rc)
			log_error("checkpoint: %s", db_strerror(rc));
		check_fatal(s, rc);
		if (rc == 0)
			remove_old_logs(s);
		record_log_position(s);
		pthread_mutex_lock(&s->cp_lock);
	}
	pthread_mutex_unlock(&s->cp_lock);
	return NULL;
}

/*
 * The watchdog: lock requests that waited past LOCK_TIMEOUT_US are failed
 * (timeouts are only checked when a detector runs; writes never wait, see
 * txn(), but reads outside a transaction can), and locks and mutexes held
 * by processes that died -
 * a db_dump killed with -9 - are freed by failchk.  If a dead process died
 * inside Berkeley DB, failchk says the environment needs recovery.
 */
static void *watchdog_loop(void *arg)
{
	struct store *s = arg;
	int ticks = 0, rc;

	for (;;) {
		struct timespec pause = { 0, WATCHDOG_TICK_MS * 1000000L };

		nanosleep(&pause, NULL);
		if (__atomic_load_n(&s->cp_stop, __ATOMIC_ACQUIRE))
			return NULL;
		s->env->lock_detect(s->env, 0, DB_LOCK_EXPIRE, NULL);
		if (++ticks % (1000 / WATCHDOG_TICK_MS) == 0) {
			rc = s->env->failchk(s->env, 0);
			if (rc)
				log_error("failchk: %s", db_strerror(rc));
			check_fatal(s, rc);
		}
	}
}

int store_start_threads(struct store *s, int64_t interval_ms)
{
	pthread_condattr_t attr;

	s->cp_interval_ms = interval_ms;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cp_wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&s->cp_lock, NULL);
	if (pthread_create(&s->cp_thread, NULL, checkpoint_loop, s) != 0)
		return fail(s, "cannot start the checkpoint thread");
	s->cp_running = true;
	pthread_setname_np(s->cp_thread, "cage-checkpoint");
	if (pthread_create(&s->watchdog_thread, NULL, watchdog_loop, s) != 0)
		return fail(s, "cannot start the watchdog thread");
	s->watchdog_running = true;
	pthread_setname_np(s->watchdog_thread, "cage-watchdog");
	/* the flusher may already be flushing: it reads the pointer atomically */
	__atomic_store_n(&s->log_ahead, log_ahead_start(s->env, s->dir, LOG_FILE_BYTES),
			 __ATOMIC_RELEASE);
	return 0;
}

static void stop_checkpoints(struct store *s)
{
	log_ahead_stop(&s->log_ahead);
	if (!s->cp_running)
		return;
	pthread_mutex_lock(&s->cp_lock);
	__atomic_store_n(&s->cp_stop, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&s->cp_wake);
	pthread_mutex_unlock(&s->cp_lock);
	pthread_join(s->cp_thread, NULL);
	s->cp_running = false;
	if (s->watchdog_running)
		pthread_join(s->watchdog_thread, NULL);
	s->watchdog_running = false;
}

int store_recover_copy(const char *dir, char *err, size_t err_size)
{
	DB_ENV *env;
	int rc = db_env_create(&env, 0), closed;

	if (rc) {
		snprintf(err, err_size, "recovering the copy: %s", db_strerror(rc));
		return -1;
	}
	env->set_errcall(env, bdb_message);
	env->set_errpfx(env, "berkeley db (backup copy)");
	env->set_lg_max(env, LOG_FILE_BYTES);
	rc = env->open(env, dir,
		       DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL |
			       DB_PRIVATE | DB_RECOVER_FATAL, 0600);
	if (rc == 0)
		rc = env->txn_checkpoint(env, 0, 0, DB_FORCE);
	if (rc == 0)
		rc = env->log_archive(env, NULL, DB_ARCH_REMOVE);
	closed = env->close(env, 0);
	if (rc || closed) {
		snprintf(err, err_size, "recovering the copy failed: %s (see the log)",
			 db_strerror(rc ? rc : closed));
		return -1;
	}
	return 0;
}

/* Every database file of data_dir (see store.h). */
static const char *const db_files[] = { "calls.db", "due.db", "new.db", "attempts.db",
					"done.db", "dead.db", "idem.db", "delivered.db",
					"quarantine.db", "cages.db" };

void store_backup_begin(struct store *s)
{
	pthread_mutex_lock(&s->removal_lock);
	s->backup_running = true;	/* a removal under way has ended */
	s->backup_since_ms = s->held_told_ms = clock_mono_ms();
	pthread_mutex_unlock(&s->removal_lock);
}

void store_backup_end(struct store *s)
{
	pthread_mutex_lock(&s->removal_lock);
	s->backup_running = false;
	pthread_mutex_unlock(&s->removal_lock);
}

int store_backup_databases(struct store *s, const char *dir, const bool *cancel, char *err,
			   size_t err_size)
{
	for (size_t i = 0; i < sizeof db_files / sizeof db_files[0]; i++) {
		int rc;

		if (__atomic_load_n(cancel, __ATOMIC_RELAXED)) {
			snprintf(err, err_size, "cancelled");
			return -1;
		}
		rc = s->env->dbbackup(s->env, db_files[i], dir, DB_EXCL);
		if (rc) {
			snprintf(err, err_size, "copying %s failed: %s", db_files[i],
				 rc > 0 || rc < -30999 ? db_strerror(rc) : "see the log");
			return -1;
		}
	}
	return 0;
}

int store_backup_log_files(struct store *s, char ***names, char *err, size_t err_size)
{
	int rc = s->env->log_flush(s->env, NULL);

	if (rc == 0)
		rc = s->env->log_archive(s->env, names, DB_ARCH_LOG);
	if (rc) {
		snprintf(err, err_size, "listing the log files failed: %s", db_strerror(rc));
		return -1;
	}
	return 0;
}

/* The counters are bumped by the batch's threads: read each atomically. */
void store_get_stats(const struct store *s, struct store_stats *stats)
{
	stats->commits = __atomic_load_n(&s->stats.commits, __ATOMIC_RELAXED);
	stats->log_flushes = __atomic_load_n(&s->stats.log_flushes, __ATOMIC_RELAXED);
	stats->calls_added = __atomic_load_n(&s->stats.calls_added, __ATOMIC_RELAXED);
	stats->done_swept_early = __atomic_load_n(&s->stats.done_swept_early, __ATOMIC_RELAXED);
	stats->dead_calls = __atomic_load_n(&s->stats.dead_calls, __ATOMIC_RELAXED);
	stats->dead_swept = __atomic_load_n(&s->stats.dead_swept, __ATOMIC_RELAXED);
}
