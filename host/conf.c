/*
 * conf.c - INI parsing and validation of the host configuration (see
 * conf.h).  The grammar: "[host]", "[queue NAME]", "[cage NAME]", "key = value" lines,
 * blank lines and lines starting with '#' or ';'.  Values run to the end of
 * the line; surrounding blanks are trimmed.
 */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "duration.h"

#ifndef PLUGINDIR
#define PLUGINDIR "/usr/local/lib/cagehost/plugins"
#endif
#ifndef DATADIR_DEFAULT
#define DATADIR_DEFAULT "/var/lib/cagehost"
#endif

#define CONF_MAX_BYTES (1 << 20)
#define KEYS_MAX 512		/* keys in a file (each of the few sections has a dozen) */

struct parser {
	const char *file;
	int line;
	const char *base_dir;
	struct host_conf *conf;
	struct queue_conf *queue;	/* current [queue] section, or NULL */
	struct cage_conf *cage;		/* current [cage] section, or NULL */
	bool in_section;
	bool default_seen;	/* [queue default] appeared */
	struct {		/* the keys set so far, to refuse one set twice */
		const void *section;	/* its queue or cage; NULL: [host] */
		char key[32];
		int line;
	} keys[KEYS_MAX];
	int key_count;
	char *err;
	size_t err_size;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct parser *p, const char *fmt, ...)
{
	int n = snprintf(p->err, p->err_size, "%s:%d: ", p->file, p->line);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static struct queue_conf *queue_new(struct host_conf *conf, const char *name)
{
	struct queue_conf *q = calloc(1, sizeof *q);

	if (!q)
		return NULL;
	snprintf(q->name, sizeof q->name, "%s", name);
	retry_policy_default(&q->retry);
	q->attempt_timeout_ms = 30 * 1000;
	q->concurrency = 0;
	q->wake_on_new_version = true;
	q->next = conf->queues;
	conf->queues = q;
	return q;
}

const struct cage_conf *conf_cage(const struct host_conf *conf, const char *name)
{
	for (const struct cage_conf *c = conf->cages; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

const struct queue_conf *conf_queue(const struct host_conf *conf, const char *name)
{
	for (const struct queue_conf *q = conf->queues; q; q = q->next)
		if (strcmp(q->name, name) == 0)
			return q;
	return NULL;
}

static void conf_defaults(struct host_conf *conf)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	memset(conf, 0, sizeof *conf);
	snprintf(conf->listen_host, sizeof conf->listen_host, "127.0.0.1");
	conf->listen_port = 8610;
	snprintf(conf->data_dir, sizeof conf->data_dir, "%s", DATADIR_DEFAULT);
	snprintf(conf->plugin_dir, sizeof conf->plugin_dir, "%s", PLUGINDIR);
	conf->workers = cpus < 2 ? 2 : (int)cpus;
	conf->max_body_size = 1 << 20;
	conf->max_header_size = 8 << 10;
	conf->sync_timeout_ms = 30 * 1000;
	conf->done_retention_ms = 3600 * 1000;
	conf->done_keep_max = 100000;
	conf->checkpoint_interval_ms = 10 * 1000;
	conf->worker_memory_limit = (size_t)1 << 30;
	conf->worker_files_limit = 256;
	conf->max_connections = 1024;
	conf->header_timeout_ms = 10 * 1000;
	conf->idle_timeout_ms = 60 * 1000;
	conf->stop_timeout_ms = 5 * 1000;
	conf->log_level = LOG_INFO;
}

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static int parse_int(struct parser *p, const char *key, const char *value,
		     long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno || end == value || *end != '\0')
		return fail(p, "%s: '%s' is not a whole number", key, value);
	if (v < min || v > max)
		return fail(p, "%s: %ld is out of range %ld..%ld", key, v, min, max);
	*out = v;
	return 0;
}

static int parse_size(struct parser *p, const char *key, const char *value, size_t *out)
{
	static const struct { const char *suffix; size_t mult; } units[] = {
		{ "", 1 }, { "k", 1024 }, { "K", 1024 }, { "M", 1 << 20 }, { "G", 1 << 30 },
	};
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno || end == value || value[0] == '-')
		return fail(p, "%s: '%s' is not a size (like 65536, 64k, 1M)", key, value);
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (v == 0 || v > (1ULL << 32) / units[i].mult)
				return fail(p, "%s: '%s' is out of range 1..4G", key, value);
			*out = (size_t)v * units[i].mult;
			return 0;
		}
	}
	return fail(p, "%s: '%s' has an unknown unit (use k, M or G)", key, value);
}

static int parse_duration(struct parser *p, const char *key, const char *value,
			  int64_t min_ms, int64_t *out)
{
	char why[160];
	char shown[32];

	if (duration_parse(value, out, why, sizeof why) < 0)
		return fail(p, "%s: %s", key, why);
	if (*out < min_ms)
		return fail(p, "%s: must be at least %s", key,
			    duration_format(min_ms, shown, sizeof shown));
	return 0;
}

/* A decimal number from min to max ("1.5", "0.2"). */
static int parse_number(struct parser *p, const char *key, const char *value, double min,
			double max, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(value, &end);
	if (errno || end == value || *end != '\0' || !(*out >= min) || *out > max)
		return fail(p, "%s: '%s' is not a number from %g to %g", key, value, min, max);
	return 0;
}

static int parse_bool(struct parser *p, const char *key, const char *value, bool *out)
{
	if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "on") ||
	    !strcmp(value, "1"))
		*out = true;
	else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "off") ||
		 !strcmp(value, "0"))
		*out = false;
	else
		return fail(p, "%s: '%s' is not yes or no", key, value);
	return 0;
}

static int parse_path(struct parser *p, const char *key, const char *value,
		      char *out, size_t size)
{
	int n;

	if (value[0] == '\0')
		return fail(p, "%s: empty path", key);
	if (value[0] == '/' || !p->base_dir)
		n = snprintf(out, size, "%s", value);
	else
		n = snprintf(out, size, "%s/%s", p->base_dir, value);
	if (n < 0 || (size_t)n >= size)
		return fail(p, "%s: path too long", key);
	return 0;
}

static int parse_listen(struct parser *p, const char *value)
{
	struct host_conf *c = p->conf;
	const char *colon = strrchr(value, ':');
	long port;
	size_t host_len;

	if (!colon || colon == value)
		return fail(p, "listen: '%s' is not ADDRESS:PORT", value);
	host_len = (size_t)(colon - value);
	if (value[0] == '[' && value[host_len - 1] == ']')
		value++, host_len -= 2;
	if (host_len >= sizeof c->listen_host)
		return fail(p, "listen: address too long");
	if (parse_int(p, "listen port", colon + 1, 0, 65535, &port) < 0)
		return -1;
	memcpy(c->listen_host, value, host_len);
	c->listen_host[host_len] = '\0';
	c->listen_port = (int)port;
	return 0;
}

/* A number of calls to keep, from 0 to 100,000,000. */
static int parse_keep_max(struct parser *p, const char *key, const char *value, uint64_t *out)
{
	long n;

	if (parse_int(p, key, value, 0, 100000000, &n) < 0)
		return -1;
	*out = (uint64_t)n;
	return 0;
}

static int host_key(struct parser *p, const char *key, const char *value)
{
	struct host_conf *c = p->conf;
	long n;

	if (!strcmp(key, "listen")) {
		c->listen_line = p->line;
		return parse_listen(p, value);
	}
	if (!strcmp(key, "data_dir"))
		return parse_path(p, key, value, c->data_dir, sizeof c->data_dir);
	if (!strcmp(key, "plugin_dir"))
		return parse_path(p, key, value, c->plugin_dir, sizeof c->plugin_dir);
	if (!strcmp(key, "backup_dir"))
		return parse_path(p, key, value, c->backup_dir, sizeof c->backup_dir);
	if (!strcmp(key, "backup_keep")) {
		if (parse_int(p, key, value, 0, 100000, &n) < 0)
			return -1;
		c->backup_keep = (int)n;
		return 0;
	}
	if (!strcmp(key, "workers")) {
		if (parse_int(p, key, value, 1, 256, &n) < 0)
			return -1;
		c->workers = (int)n;
		return 0;
	}
	if (!strcmp(key, "max_body_size"))
		return parse_size(p, key, value, &c->max_body_size);
	if (!strcmp(key, "max_header_size"))
		return parse_size(p, key, value, &c->max_header_size);
	if (!strcmp(key, "sync_timeout"))
		return parse_duration(p, key, value, 1, &c->sync_timeout_ms);
	if (!strcmp(key, "done_retention"))
		return parse_duration(p, key, value, 0, &c->done_retention_ms);
	if (!strcmp(key, "done_keep_max"))
		return parse_keep_max(p, key, value, &c->done_keep_max);
	if (!strcmp(key, "dead_retention"))
		return parse_duration(p, key, value, 0, &c->dead_retention_ms);
	if (!strcmp(key, "dead_keep_max"))
		return parse_keep_max(p, key, value, &c->dead_keep_max);
	if (!strcmp(key, "checkpoint_interval"))
		return parse_duration(p, key, value, 100, &c->checkpoint_interval_ms);
	if (!strcmp(key, "token")) {
		if (strlen(value) < 16 || strlen(value) >= sizeof c->token)
			return fail(p, "token: use 16 to %zu characters", sizeof c->token - 1);
		for (const char *t = value; *t; t++)
			if (!isgraph((unsigned char)*t))
				return fail(p, "token: only printable characters, no spaces");
		snprintf(c->token, sizeof c->token, "%s", value);
		return 0;
	}
	if (!strcmp(key, "user")) {
		if (!name_is_valid(value, strlen(value)) || strlen(value) >= sizeof c->user)
			return fail(p, "user: '%s' is not a user name", value);
		snprintf(c->user, sizeof c->user, "%s", value);
		return 0;
	}
	if (!strcmp(key, "worker_memory_limit")) {
		if (!strcmp(value, "0")) {
			c->worker_memory_limit = 0;
			return 0;
		}
		return parse_size(p, key, value, &c->worker_memory_limit);
	}
	if (!strcmp(key, "worker_cpu_limit"))
		return parse_duration(p, key, value, 0, &c->worker_cpu_limit_ms);
	if (!strcmp(key, "worker_files_limit")) {
		if (parse_int(p, key, value, 16, 1048576, &n) < 0)
			return -1;
		c->worker_files_limit = (int)n;
		return 0;
	}
	if (!strcmp(key, "max_connections")) {
		if (parse_int(p, key, value, 1, 1000000, &n) < 0)
			return -1;
		c->max_connections = (int)n;
		return 0;
	}
	if (!strcmp(key, "header_timeout"))
		return parse_duration(p, key, value, 100, &c->header_timeout_ms);
	if (!strcmp(key, "idle_timeout"))
		return parse_duration(p, key, value, 1000, &c->idle_timeout_ms);
	if (!strcmp(key, "stop_timeout"))
		return parse_duration(p, key, value, 0, &c->stop_timeout_ms);
	if (!strcmp(key, "log_level")) {
		static const char *const levels[] = { "error", "warning", "info", "debug" };

		for (int i = 0; i < 4; i++) {
			if (!strcmp(value, levels[i])) {
				c->log_level = (enum log_level)i;
				return 0;
			}
		}
		return fail(p, "log_level: '%s' is not error, warning, info or debug", value);
	}
	return fail(p, "unknown key '%s' in [host]", key);
}

static int queue_key(struct parser *p, const char *key, const char *value)
{
	struct queue_conf *q = p->queue;
	long n;

	if (!strcmp(key, "retry_interval"))
		return parse_duration(p, key, value, 1, &q->retry.interval_ms);
	if (!strcmp(key, "retry_max_interval"))
		return parse_duration(p, key, value, 1, &q->retry.max_interval_ms);
	if (!strcmp(key, "lifetime"))
		return parse_duration(p, key, value, 0, &q->retry.lifetime_ms);
	if (!strcmp(key, "attempt_timeout"))
		return parse_duration(p, key, value, 1, &q->attempt_timeout_ms);
	if (!strcmp(key, "retry_factor"))
		return parse_number(p, key, value, 1, 100, &q->retry.factor);
	if (!strcmp(key, "retry_jitter"))
		return parse_number(p, key, value, 0, 1, &q->retry.jitter);
	if (!strcmp(key, "concurrency")) {
		if (parse_int(p, key, value, 0, 1000000, &n) < 0)
			return -1;
		q->concurrency = (int)n;
		return 0;
	}
	if (!strcmp(key, "wake_on_new_version"))
		return parse_bool(p, key, value, &q->wake_on_new_version);
	return fail(p, "unknown key '%s' in [queue %s]", key, q->name);
}

/* One "http://HOST:PORT" of a cage's url list (no path: the API's own). */
static int parse_cage_url(struct parser *p, struct cage_conf *c, const char *url)
{
	const char *hostpart, *colon;
	char *end;
	long port;

	if (c->url_count == CAGE_URLS_MAX)
		return fail(p, "url: more than %d addresses for cage %s", CAGE_URLS_MAX, c->name);
	if (strncmp(url, "http://", 7) != 0)
		return fail(p, "url: '%s' is not http://HOST:PORT", url);
	hostpart = url + 7;
	colon = strrchr(hostpart, ':');
	if (!colon || colon == hostpart ||
	    (size_t)(colon - hostpart) >= sizeof c->urls[0].host || strchr(hostpart, '/'))
		return fail(p, "url: '%s' is not http://HOST:PORT", url);
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end != '\0' || port < 1 || port > 65535)
		return fail(p, "url: '%s' has no valid port (1 to 65535)", url);
	snprintf(c->urls[c->url_count].host, sizeof c->urls[0].host, "%.*s",
		 (int)(colon - hostpart), hostpart);
	c->urls[c->url_count++].port = (int)port;
	return 0;
}

static int cage_key(struct parser *p, const char *key, const char *value)
{
	struct cage_conf *c = p->cage;
	char *save = NULL, list[4096];

	if (!strcmp(key, "url")) {
		c->url_count = 0;
		snprintf(list, sizeof list, "%s", value);
		for (char *url = strtok_r(list, " \t,", &save); url;
		     url = strtok_r(NULL, " \t,", &save))
			if (parse_cage_url(p, c, url) < 0)
				return -1;
		if (c->url_count == 0)
			return fail(p, "url: empty (give http://HOST:PORT, several for copies)");
		return 0;
	}
	if (!strcmp(key, "token")) {
		if (strlen(value) >= sizeof c->token)
			return fail(p, "token: longer than %zu characters", sizeof c->token - 1);
		snprintf(c->token, sizeof c->token, "%s", value);
		return 0;
	}
	return fail(p, "unknown key '%s' in [cage %s]", key, c->name);
}

static int cage_section(struct parser *p, const char *name)
{
	struct cage_conf *c;

	if (!name_is_valid(name, strlen(name)))
		return fail(p, "invalid cage name '%s' (letters, digits, '_', '-', '.'; at most %d)",
			    name, NAME_MAX_LEN);
	if (conf_cage(p->conf, name))
		return fail(p, "cage '%s' is defined twice", name);
	c = calloc(1, sizeof *c);
	if (!c)
		return fail(p, "out of memory");
	snprintf(c->name, sizeof c->name, "%s", name);
	c->line = p->line;
	c->next = p->conf->cages;
	p->conf->cages = c;
	p->cage = c;
	return 0;
}

static int section(struct parser *p, char *line)
{
	char *end = strchr(line, ']');
	char *name;

	if (!end || trim(end + 1)[0] != '\0')
		return fail(p, "malformed section header (expected [host], [queue NAME] or "
			    "[cage NAME])");
	*end = '\0';
	name = trim(line + 1);
	p->in_section = true;
	p->queue = NULL;
	p->cage = NULL;
	if (!strcmp(name, "host"))
		return 0;
	if (!strncmp(name, "cage", 4) && isspace((unsigned char)name[4]))
		return cage_section(p, trim(name + 4));
	if (strncmp(name, "queue", 5) != 0 || !isspace((unsigned char)name[5]))
		return fail(p, "unknown section [%s] (expected [host], [queue NAME] or [cage NAME])",
			    name);
	name = trim(name + 5);
	if (!name_is_valid(name, strlen(name)))
		return fail(p, "invalid queue name '%s' (letters, digits, '_', '-', '.'; at most %d)",
			    name, NAME_MAX_LEN);
	for (struct queue_conf *q = p->conf->queues; q; q = q->next) {
		if (!strcmp(q->name, name)) {
			/* "default" exists before the file is read: configure it once */
			if (strcmp(name, "default") != 0 || p->default_seen)
				return fail(p, "queue '%s' is defined twice", name);
			p->default_seen = true;
			p->queue = q;
			q->line = p->line;
			return 0;
		}
	}
	p->queue = queue_new(p->conf, name);
	if (!p->queue)
		return fail(p, "out of memory");
	p->queue->line = p->line;
	return 0;
}

static int check_cages(struct parser *p)
{
	for (struct cage_conf *c = p->conf->cages; c; c = c->next) {
		if (c->url_count == 0) {
			p->line = c->line;
			return fail(p, "[cage %s]: no url (url = http://HOST:PORT)", c->name);
		}
	}
	return 0;
}

static int check_queues(struct parser *p)
{
	char interval[32], max[32];

	for (struct queue_conf *q = p->conf->queues; q; q = q->next) {
		if (q->retry.max_interval_ms < q->retry.interval_ms) {
			p->line = q->line;
			return fail(p, "[queue %s]: retry_max_interval (%s) is shorter than "
				    "retry_interval (%s)", q->name,
				    duration_format(q->retry.max_interval_ms, max, sizeof max),
				    duration_format(q->retry.interval_ms, interval, sizeof interval));
		}
	}
	return 0;
}

/*
 * A key set twice in one section is refused (the second would silently
 * win); [host] blocks given more than once count as one section.
 */
static int note_key(struct parser *p, const char *key)
{
	const void *section = p->cage ? (const void *)p->cage : (const void *)p->queue;
	const char *kind = p->cage ? "cage " : p->queue ? "queue " : "host";
	const char *name = p->cage ? p->cage->name : p->queue ? p->queue->name : "";

	for (int i = 0; i < p->key_count; i++)
		if (p->keys[i].section == section && !strcmp(p->keys[i].key, key))
			return fail(p, "%s is set twice in [%s%s] (first on line %d)", key, kind,
				    name, p->keys[i].line);
	if (p->key_count == KEYS_MAX)
		return fail(p, "more than %d settings in one file", KEYS_MAX);
	if (strlen(key) < sizeof p->keys[0].key) {
		p->keys[p->key_count].section = section;
		snprintf(p->keys[p->key_count].key, sizeof p->keys[0].key, "%s", key);
		p->keys[p->key_count++].line = p->line;
	}
	return 0;
}

/* A value with a comment after it: say why it did not parse. */
static void hint_inline_comment(struct parser *p, const char *value)
{
	size_t len = strlen(p->err);

	for (const char *c = value; *c; c++)
		if ((*c == '#' || *c == ';') && c > value && isspace((unsigned char)c[-1])) {
			snprintf(p->err + len, p->err_size - len,
				 " (a comment must be on a line of its own)");
			return;
		}
}

/* backup_dir when not set: DATA_DIR.backups, beside data_dir. */
static int default_backup_dir(struct parser *p)
{
	struct host_conf *c = p->conf;
	size_t len = strlen(c->data_dir);

	while (len > 1 && c->data_dir[len - 1] == '/')
		len--;
	if (len + strlen(".backups") >= sizeof c->backup_dir)
		return fail(p, "data_dir is too long to put backup_dir beside it; set backup_dir");
	snprintf(c->backup_dir, sizeof c->backup_dir, "%.*s.backups", (int)len, c->data_dir);
	return 0;
}

int conf_parse(const char *name, const char *text, const char *base_dir,
	       struct host_conf *conf, char *err, size_t err_size)
{
	struct parser p = { .file = name, .base_dir = base_dir, .conf = conf, .err = err,
			    .err_size = err_size };
	const char *cursor = text;
	char line[4096];

	conf_defaults(conf);
	if (!queue_new(conf, "default")) {
		snprintf(err, err_size, "%s: out of memory", name);
		return -1;
	}
	while (*cursor) {
		const char *nl = strchr(cursor, '\n');
		size_t len = nl ? (size_t)(nl - cursor) : strlen(cursor);
		char *s, *eq, *key, *value;

		p.line++;
		if (len >= sizeof line) {
			fail(&p, "line longer than %zu bytes", sizeof line - 1);
			goto fail;
		}
		memcpy(line, cursor, len);
		line[len] = '\0';
		cursor += len + (nl ? 1 : 0);
		s = trim(line);
		if (s[0] == '\0' || s[0] == '#' || s[0] == ';')
			continue;
		if (s[0] == '[') {
			if (section(&p, s) < 0)
				goto fail;
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			fail(&p, "expected 'key = value', got '%s'", s);
			goto fail;
		}
		*eq = '\0';
		if (!p.in_section) {
			fail(&p, "'%s' is outside any section (start with [host])", trim(s));
			goto fail;
		}
		key = trim(s);
		value = trim(eq + 1);
		if (note_key(&p, key) < 0)
			goto fail;
		if ((p.cage ? cage_key : p.queue ? queue_key : host_key)(&p, key, value) < 0) {
			hint_inline_comment(&p, value);
			goto fail;
		}
	}
	if (check_queues(&p) < 0 || check_cages(&p) < 0)
		goto fail;
	if (!conf->backup_dir[0] && default_backup_dir(&p) < 0)
		goto fail;
	return 0;
fail:
	conf_release(conf);
	return -1;
}

static bool is_loopback(const char *host)
{
	return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

char *conf_format_address(const char *host, int port, char *out, size_t size)
{
	bool v6 = strchr(host, ':') != NULL;

	snprintf(out, size, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
	return out;
}

/* The listen address must be one the host can bind: a name that does not
 * resolve would only fail at start, as "in use or not an address". */
static int check_listen(const char *path, const struct host_conf *conf, char *err,
			size_t err_size)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE, .ai_socktype = SOCK_STREAM }, *found;
	int rc = getaddrinfo(conf->listen_host, NULL, &hints, &found);

	if (rc != 0) {
		snprintf(err, err_size, "%s:%d: listen: cannot resolve '%s': %s", path,
			 conf->listen_line, conf->listen_host, gai_strerror(rc));
		return -1;
	}
	freeaddrinfo(found);
	return 0;
}

/* Exposing the API beyond this machine without a token is refused. */
static int check_exposure(const char *path, const struct host_conf *conf, char *err,
			  size_t err_size)
{
	if (conf->token[0] || is_loopback(conf->listen_host))
		return 0;
	snprintf(err, err_size, "%s:%d: listen: %s is reachable from other hosts; set token = "
		 "SECRET in [host] (callers then send Authorization: Bearer SECRET)", path,
		 conf->listen_line, conf->listen_host);
	return -1;
}

int conf_load(const char *path, struct host_conf *conf, char *err, size_t err_size)
{
	char base[PATH_MAX];
	char *text = NULL;
	const char *slash;
	size_t len = 0;
	FILE *f;
	int rc;

	f = fopen(path, "r");
	if (!f) {
		snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	text = malloc(CONF_MAX_BYTES + 1);
	if (!text) {
		fclose(f);
		snprintf(err, err_size, "%s: out of memory", path);
		return -1;
	}
	len = fread(text, 1, CONF_MAX_BYTES + 1, f);
	fclose(f);
	if (len > CONF_MAX_BYTES) {
		free(text);
		snprintf(err, err_size, "%s: larger than %d bytes", path, CONF_MAX_BYTES);
		return -1;
	}
	text[len] = '\0';
	if (memchr(text, '\0', len)) {
		free(text);
		snprintf(err, err_size, "%s: contains a NUL byte; not a text file", path);
		return -1;
	}
	slash = strrchr(path, '/');
	if (!slash)
		snprintf(base, sizeof base, ".");
	else if (slash == path)
		snprintf(base, sizeof base, "/");
	else
		snprintf(base, sizeof base, "%.*s", (int)(slash - path), path);
	rc = conf_parse(path, text, base, conf, err, err_size);
	free(text);
	if (rc == 0 && (check_listen(path, conf, err, err_size) < 0 ||
			check_exposure(path, conf, err, err_size) < 0)) {
		conf_release(conf);
		return -1;
	}
	return rc;
}

void conf_release(struct host_conf *conf)
{
	while (conf->queues) {
		struct queue_conf *next = conf->queues->next;

		free(conf->queues);
		conf->queues = next;
	}
	while (conf->cages) {
		struct cage_conf *next = conf->cages->next;

		free(conf->cages);
		conf->cages = next;
	}
}
