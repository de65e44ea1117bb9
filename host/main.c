/*
 * main.c - cagehost: reads the config, binds the port, drops privileges,
 * and runs the host (host.c) until SIGTERM or SIGINT.  Then it stops
 * taking on work, waits up to stop_timeout for the requests it took and
 * the attempts running (a second signal cuts that short), commits, and
 * closes the store cleanly; attempts still running then are retried next
 * time.  When the store needs recovery, the program starts over in place.
 */
#include "config.h"	/* PACKAGE_VERSION */

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conf.h"
#include "duration.h"
#include "host.h"
#include "log.h"
#include "store.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: cagehost -c FILE [--check]\n"
		"       cagehost --version\n"
		"  -c, --config FILE  configuration file (INI; see etc/cagehost.conf)\n"
		"      --check        validate the configuration and exit\n"
		"      --version      print the version and exit\n"
		"  -h, --help         show this help\n");
}

static void print_conf(const struct host_conf *c)
{
	char a[32], b[32], d[32], e[32], address[sizeof c->listen_host + 16];

	printf("listen %s\ndata_dir %s\nplugin_dir %s\nbackup_dir %s\nbackup_keep %d%s\n"
	       "workers %d\n",
	       conf_format_address(c->listen_host, c->listen_port, address, sizeof address),
	       c->data_dir, c->plugin_dir, c->backup_dir, c->backup_keep,
	       c->backup_keep ? "" : " (all)", c->workers);
	for (const struct queue_conf *q = c->queues; q; q = q->next)
		printf("queue %s: retry_interval %s, retry_factor %g, retry_max_interval %s, "
		       "retry_jitter %g, lifetime %s, attempt_timeout %s, concurrency %d, "
		       "wake_on_new_version %s\n",
		       q->name, duration_format(q->retry.interval_ms, a, sizeof a),
		       q->retry.factor, duration_format(q->retry.max_interval_ms, b, sizeof b),
		       q->retry.jitter, duration_format(q->retry.lifetime_ms, d, sizeof d),
		       duration_format(q->attempt_timeout_ms, e, sizeof e), q->concurrency,
		       q->wake_on_new_version ? "yes" : "no");
	for (const struct cage_conf *k = c->cages; k; k = k->next) {
		printf("cage %s:", k->name);
		for (int i = 0; i < k->url_count; i++)
			printf(" http://%s:%d", k->urls[i].host, k->urls[i].port);
		printf(", token %s\n", k->token[0] ? "set" : "none");
	}
}

/* How often a stopping host looks whether its work is done. */
#define STOP_TICK_MS 10

struct stopping {
	struct host *host;
	struct event *tick;
	int64_t deadline_ms;		/* monotonic */
	bool begun;
};

static void stop_tick(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval tick = { 0, STOP_TICK_MS * 1000 };
	struct stopping *st = arg;
	struct host *h = st->host;
	char busy[256], limit[32];

	(void)fd;
	(void)what;
	if (host_busy(h, busy, sizeof busy) == 0) {
		/* every answer is in the sockets: the kernel delivers it */
		event_base_loopexit(h->base, NULL);
		return;
	}
	if (clock_mono_ms() >= st->deadline_ms) {
		log_warning("stopping after stop_timeout (%s) with %s: those requests get no "
			    "answer, and the attempts run again after the restart",
			    duration_format(h->conf.stop_timeout_ms, limit, sizeof limit), busy);
		event_base_loopexit(h->base, NULL);
		return;
	}
	evtimer_add(st->tick, &tick);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct stopping *st = arg;
	const char *name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
	char limit[32];

	(void)what;
	if (st->begun) {
		log_info("got %s again; stopping now", name);
		event_base_loopexit(st->host->base, NULL);
		return;
	}
	st->begun = true;
	host_begin_stop(st->host);
	log_info("got %s; stopping: taking no new work, waiting up to %s for the work in "
		 "progress", name, duration_format(st->host->conf.stop_timeout_ms, limit,
						   sizeof limit));
	st->deadline_ms = clock_mono_ms() + st->host->conf.stop_timeout_ms;
	stop_tick(-1, 0, st);
}

/* SIGHUP: the host has no configuration reload, and a closed terminal must
 * not stop it; say so, and go on. */
static void on_hangup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_warning("got SIGHUP: ignored (cagehost does not reload its configuration; "
		    "restart it to apply changes, or send SIGTERM to stop it)");
}

/*
 * Started as root with `user = NAME`: hands data_dir (and its files) and a
 * backup_dir made now to that user, then switches to it for good.
 * Returns 0, or -1 after logging.
 */
static int privileges_drop(const struct host_conf *conf)
{
	struct passwd *pw;
	struct dirent *e;
	char path[PATH_MAX * 2];
	struct stat st;
	DIR *d;

	if (!conf->user[0])
		return 0;
	pw = getpwnam(conf->user);
	if (!pw) {
		log_error("user %s does not exist", conf->user);
		return -1;
	}
	if (geteuid() != 0) {
		if (geteuid() == pw->pw_uid)
			return 0;
		log_error("user = %s needs cagehost to be started as root", conf->user);
		return -1;
	}
	if (store_make_dir(conf->data_dir) < 0) {
		log_error("cannot create data_dir %s: %s", conf->data_dir, strerror(errno));
		return -1;
	}
	if (chown(conf->data_dir, pw->pw_uid, pw->pw_gid) < 0) {
		log_error("cannot give %s to %s: %s", conf->data_dir, conf->user, strerror(errno));
		return -1;
	}
	d = opendir(conf->data_dir);
	while (d && (e = readdir(d))) {
		snprintf(path, sizeof path, "%s/%s", conf->data_dir, e->d_name);
		if (e->d_name[0] != '.' && lchown(path, pw->pw_uid, pw->pw_gid) < 0)
			log_warning("cannot give %s to %s: %s", path, conf->user, strerror(errno));
	}
	if (d)
		closedir(d);
	/* a backup_dir made here is handed over; one that exists is left as
	 * it is (it may be shared), and one that cannot be made only fails
	 * backups, not the start */
	if (stat(conf->backup_dir, &st) < 0 &&
	    (store_make_dir(conf->backup_dir) < 0 ||
	     chown(conf->backup_dir, pw->pw_uid, pw->pw_gid) < 0))
		log_warning("cannot create backup_dir %s for %s: %s; backups will fail until it "
			    "can be", conf->backup_dir, conf->user, strerror(errno));
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0 || setuid(0) == 0) {
		log_error("cannot switch to user %s: %s", conf->user, strerror(errno));
		return -1;
	}
	log_info("running as user %s (uid %u)", conf->user, (unsigned)pw->pw_uid);
	return 0;
}

/* Lifts the soft limit of open files to the hard one: every connection
 * takes one, and systemd's soft default is 1024 (http_guard.h keeps
 * connections within what the limit leaves). */
static void raise_open_files_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warning("cannot raise the open files limit: %s", strerror(errno));
	}
}

/* Runs the host until SIGTERM or SIGINT.  Returns the exit status. */
static int run(struct host *h)
{
	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL;
	struct stopping st = { h, NULL, 0, false };
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* during start-up too (recovery can be long) */
	raise_open_files_limit();
	/* bind while still root (a port below 1024), then drop privileges
	 * before touching data or plugins */
	if (host_listen(h) < 0 || privileges_drop(&h->conf) < 0 || host_start(h) < 0)
		return 1;
	sigterm = evsignal_new(h->base, SIGTERM, on_signal, &st);
	sigint = evsignal_new(h->base, SIGINT, on_signal, &st);
	sighup = evsignal_new(h->base, SIGHUP, on_hangup, NULL);
	st.tick = evtimer_new(h->base, stop_tick, &st);
	if (sigterm && sigint && sighup && st.tick && event_add(sigterm, NULL) == 0 &&
	    event_add(sigint, NULL) == 0 && event_add(sighup, NULL) == 0) {
		event_base_dispatch(h->base);
		host_stop(h);
		rc = 0;
	}
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	if (st.tick)
		event_free(st.tick);
	return rc;
}

static char **saved_argv;

/* The store needs recovery: start over in place (recovery runs on open).
 * Workers see their channel close and exit; unanswered requests are
 * dropped, and nothing they sent was acknowledged. */
static void restart_in_place(void)
{
	const char *last = getenv("CAGEHOST_RECOVERED_AT");
	char now[32];

	/* needing recovery again right after one means the damage is on
	 * disk, not in a dead reader: stop and say what to do */
	if (last && clock_mono_ms() - strtoll(last, NULL, 10) < 60000) {
		log_error("the database needed recovery twice within a minute; stopping. "
			  "The usual cause is a reader killed inside Berkeley DB (a db5.3_dump "
			  "or db5.3_stat killed while it read), not damage: start the host again. "
			  "If it stops like this again with no reader killed, stop its service, "
			  "back up data_dir, then run db5.3_recover -c -h DATA_DIR and "
			  "db5.3_verify DATA_DIR/calls.db");
		return;
	}
	snprintf(now, sizeof now, "%lld", (long long)clock_mono_ms());
	setenv("CAGEHOST_RECOVERED_AT", now, 1);
	execv("/proc/self/exe", saved_argv);
	log_error("cannot restart: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	bool check_only = false;
	struct host h;
	char err[1024];
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c': config = optarg; break;
		case 'k': check_only = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("cagehost %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config || optind != argc) {
		usage(stderr);
		return 2;
	}
	memset(&h, 0, sizeof h);
	saved_argv = argv;
	store_on_fatal(restart_in_place);
	if (conf_load(config, &h.conf, err, sizeof err) < 0) {
		fprintf(stderr, "cagehost: %s\n", err);
		return 1;
	}
	if (check_only) {
		printf("%s: OK\n", config);
		print_conf(&h.conf);
		conf_release(&h.conf);
		return 0;
	}
	log_set_level(h.conf.log_level);
	rc = run(&h);
	host_free(&h);
	if (rc == 0)
		log_info("stopped");
	return rc;
}
