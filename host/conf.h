/*
 * conf.h - the host's configuration: an INI file with a [host] section and
 * one [queue NAME] section per queue.  Every error names file:line.
 *
 *   [host]
 *   listen = 127.0.0.1:8610
 *   data_dir = /var/lib/cagehost
 *   plugin_dir = /usr/local/lib/cagehost/plugins
 *   backup_dir = /var/lib/cagehost.backups   (default: DATA_DIR.backups)
 *   backup_keep = 7              (default 0: every backup is kept)
 *   workers = 4
 *   dead_retention = 90d         (default 0: dead calls stay until deleted)
 *
 *   [queue default]
 *   retry_interval = 60s
 *   retry_factor = 1.5
 *   retry_max_interval = 1h
 *   lifetime = 3d
 *   attempt_timeout = 30s
 *   concurrency = 0
 *
 *   [cage billing-eu]            another cage that handlers may enqueue on
 *   url = http://10.0.0.7:8610 http://10.0.0.8:8610   (copies; up to 4)
 *   token = SECRET               its token, if it has one
 *
 * Relative paths are taken relative to the config file's directory.
 */
#ifndef CAGEHOST_CONF_H
#define CAGEHOST_CONF_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "names.h"
#include "retry.h"

struct queue_conf {
	char name[NAME_MAX_LEN + 1];
	struct retry_policy retry;
	int64_t attempt_timeout_ms;	/* worker is killed past this */
	int concurrency;		/* attempts running at once; 0 = no limit */
	bool wake_on_new_version;	/* retry waiting calls soon after a module fix */
	int line;			/* of its section header in the file; 0: none */
	struct queue_conf *next;
};

#define CAGE_URLS_MAX 4

/* Another cage: where calls enqueued on it by handlers are delivered. */
struct cage_conf {
	char name[NAME_MAX_LEN + 1];
	struct {
		char host[256];
		int port;
	} urls[CAGE_URLS_MAX];		/* copies that can each take a call */
	int url_count;
	char token[256];		/* sent as Authorization: Bearer; "" = none */
	int line;			/* of its section header in the file */
	struct cage_conf *next;
};

struct host_conf {
	char listen_host[256];
	int listen_port;
	int listen_line;		/* where listen is set in the file; 0: not set */
	char data_dir[PATH_MAX];
	char plugin_dir[PATH_MAX];
	char backup_dir[PATH_MAX];	/* where POST /v1/backup puts backups */
	int backup_keep;		/* this host's backups kept there (0: all) */
	int workers;			/* worker processes */
	size_t max_body_size;		/* bytes; larger requests get 413 */
	size_t max_header_size;		/* bytes; larger headers get 431 */
	int64_t sync_timeout_ms;	/* attempt timeout of sync calls */
	int64_t done_retention_ms;	/* how long finished calls stay visible */
	uint64_t done_keep_max;		/* and at most this many of them */
	int64_t dead_retention_ms;	/* dead calls deleted this long after (0: kept) */
	uint64_t dead_keep_max;		/* and beyond this many, the oldest (0: no limit) */
	int64_t checkpoint_interval_ms;
	enum log_level log_level;
	char token[256];		/* "" = no auth (loopback only) */
	char user[64];			/* drop to this user when started as root */
	size_t worker_memory_limit;	/* RLIMIT_AS of workers, bytes; 0 = none */
	int64_t worker_cpu_limit_ms;	/* CPU time per attempt; 0 = none */
	int worker_files_limit;		/* RLIMIT_NOFILE of workers */
	int max_connections;		/* HTTP connections at once */
	int64_t header_timeout_ms;	/* to receive a request's headers (408) */
	int64_t idle_timeout_ms;	/* keep-alive connection idle limit */
	int64_t stop_timeout_ms;	/* SIGTERM: wait this long for work in progress */
	struct queue_conf *queues;	/* "default" always present */
	struct cage_conf *cages;	/* [cage NAME] sections */
};

/*
 * Reads the file at path into *conf (defaults for everything not set), and
 * checks that the listen address resolves.  Returns 0, or -1 with
 * "path:line: reason" in err.  On success the caller owns conf's queue
 * list and frees it with conf_release().
 */
int conf_load(const char *path, struct host_conf *conf, char *err, size_t err_size);

/*
 * Parses text as if it were the file named `name` (used by conf_load and
 * by tests): no lookups, no files read.  base_dir anchors relative paths.
 */
int conf_parse(const char *name, const char *text, const char *base_dir,
	       struct host_conf *conf, char *err, size_t err_size);

/* Writes "HOST:PORT" to out, with an IPv6 address in brackets
 * ("[::1]:8610"), and returns out. */
char *conf_format_address(const char *host, int port, char *out, size_t size);

/* The queue called name, or NULL. */
const struct queue_conf *conf_queue(const struct host_conf *conf, const char *name);

/* The cage called name, or NULL. */
const struct cage_conf *conf_cage(const struct host_conf *conf, const char *name);

void conf_release(struct host_conf *conf);

#endif
