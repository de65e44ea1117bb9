/*
 * plugin_dir.h - the modules in the plugin directory and their versions.
 *
 * The directory is scanned at start, on inotify queue overflow and when the
 * watch is lost, and watched with inotify in between; events are debounced
 * per file.  A changed file is read, checked (permissions, complete ELF
 * shared object), hashed, and copied to an immutable private copy
 * data_dir/modules/NAME-HASH.so; a worker then probes the copy (dlopen,
 * descriptor, ABI).  Only a version that passes all of that replaces the
 * module's current version; a bad one is refused with a logged reason and
 * the last good version stays in service.
 *
 * Before every job runs, plugins_run() compares the file on disk with the
 * one last evaluated; if it changed (an event not yet seen, a cp still in
 * progress), the file is evaluated first and the job waits, so each attempt
 * runs the newest good version on disk when it starts.
 */
#ifndef CAGEHOST_PLUGIN_DIR_H
#define CAGEHOST_PLUGIN_DIR_H

#include <stdbool.h>

#include "worker.h"

struct event_base;
struct plugin_dir;

/* Called when module gets a new good version (version is its label). */
typedef void (*new_version_fn)(const char *module, const char *version, void *arg);

/*
 * Watches dir, keeping private copies in cache_dir (created, emptied).
 * Returns NULL and logs why on failure.
 */
struct plugin_dir *plugins_new(struct event_base *base, struct worker_pool *pool,
			       const char *dir, const char *cache_dir);

/* Jobs parked for a probe or about to fail are dropped, not completed and
 * not touched: their owners free them. */
void plugins_free(struct plugin_dir **p);

void plugins_on_new_version(struct plugin_dir *p, new_version_fn cb, void *arg);
/* Called once, when the start-up scan has finished probing every file. */
void plugins_on_ready(struct plugin_dir *p, void (*cb)(void *arg), void *arg);

/*
 * Runs a JOB_CALL for job->module: fills in job->path and job->version with
 * the newest good version and hands the job to the pool.  A job for a
 * module that has no good version ends with WORKER_NO_MODULE ("no module
 * NAME").  job->done is always called later, never from inside this call.
 */
void plugins_run(struct plugin_dir *p, struct job *job);

/* Number of modules with a good version. */
int plugins_count(const struct plugin_dir *p);

/* What plugins_each() tells of a module; the strings live until the loop
 * runs again. */
struct module_view {
	const char *name;
	const char *version;	/* the version in service, or NULL */
	const char *methods;	/* its methods, space-separated ("" without one) */
	const char *refused;	/* why the file now there was refused, or NULL
				 * (NULL while a file is being checked) */
	bool checking;		/* a new version of the file is being probed */
};

/*
 * Calls visit for each module in name order: those with a version in
 * service, with a file being checked, or with a file that was refused.
 * Returns -1 (having visited none) when out of memory, else 0.
 */
int plugins_each(const struct plugin_dir *p,
		 void (*visit)(const struct module_view *v, void *arg), void *arg);

#endif
