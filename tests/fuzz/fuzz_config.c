/*
 * fuzz_config.c - libFuzzer target for the configuration parser
 * (host/conf.c).  The input is the text of a config file named
 * "fuzz.conf".  What must hold for any text:
 *   - no crash, no undefined behaviour, no leak (the sanitizers check);
 *   - a refused file says where: the message starts with "fuzz.conf:N: "
 *     with N >= 1 (a line) or "fuzz.conf: " (a check of the whole file),
 *     and has a reason after that prefix;
 *   - an accepted file has the default queue, and every value the host
 *     later relies on is within the range the parser promises.
 *
 * conf_load() refuses a file that holds a NUL byte before parsing, so
 * conf_parse() never sees one: inputs with a NUL are cut there, as
 * conf_load's check would make them.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define NAME "fuzz.conf"

static void fail(const char *what, const char *err)
{
	fprintf(stderr, "fuzz_config: %s\n  message: \"%s\"\n", what, err);
	abort();
}

/* The message must be "fuzz.conf:N: reason" (N >= 1) or "fuzz.conf: reason". */
static void check_error(const char *err)
{
	const char *p = err;
	long line = 0;

	if (strncmp(p, NAME ":", sizeof NAME) != 0)
		fail("error message does not start with the file name", err);
	p += sizeof NAME;
	if (*p == ' ') {
		p++;
	} else {
		if (!isdigit((unsigned char)*p))
			fail("error message has neither a line number nor ': '", err);
		while (isdigit((unsigned char)*p) && line < 100000000)
			line = line * 10 + (*p++ - '0');
		if (line < 1)
			fail("error message names line 0", err);
		if (strncmp(p, ": ", 2) != 0)
			fail("line number is not followed by ': '", err);
		p += 2;
	}
	if (*p == '\0')
		fail("error message has no reason", err);
}

static void check_conf(const struct host_conf *c)
{
	const struct queue_conf *q = conf_queue(c, "default");
	int queues = 0;

	if (!q)
		fail("accepted config has no default queue", "");
	if (c->listen_port < 0 || c->listen_port > 65535 || c->workers < 1 ||
	    c->max_body_size == 0 || c->max_header_size == 0 || c->max_connections < 1 ||
	    c->header_timeout_ms < 100 || c->idle_timeout_ms < 1000 ||
	    c->sync_timeout_ms < 1 || c->checkpoint_interval_ms < 100 ||
	    c->worker_files_limit < 16 || (unsigned)c->log_level > LOG_DEBUG)
		fail("accepted config has a [host] value out of range", "");
	if (!memchr(c->listen_host, '\0', sizeof c->listen_host) ||
	    !memchr(c->data_dir, '\0', sizeof c->data_dir) ||
	    !memchr(c->plugin_dir, '\0', sizeof c->plugin_dir) ||
	    !memchr(c->token, '\0', sizeof c->token) || !memchr(c->user, '\0', sizeof c->user))
		fail("accepted config has an unterminated string", "");
	for (q = c->queues; q; q = q->next) {
		if (!name_is_valid(q->name, strlen(q->name)))
			fail("accepted config has a queue with an invalid name", q->name);
		if (q->retry.interval_ms < 1 || q->retry.max_interval_ms < q->retry.interval_ms ||
		    q->retry.lifetime_ms < 0 || !(q->retry.factor >= 1.0 && q->retry.factor <= 100.0) ||
		    q->attempt_timeout_ms < 1 || q->concurrency < 0)
			fail("accepted config has a queue value out of range", q->name);
		if (conf_queue(c, q->name) != q)
			fail("accepted config defines a queue twice", q->name);
		if (++queues > 100000)
			fail("accepted config's queue list does not end", "");
	}
	for (const struct cage_conf *k = c->cages; k; k = k->next) {
		if (!name_is_valid(k->name, strlen(k->name)))
			fail("accepted config has a cage with an invalid name", k->name);
		if (conf_cage(c, k->name) != k)
			fail("accepted config defines a cage twice", k->name);
		if (k->url_count < 1 || k->url_count > CAGE_URLS_MAX)
			fail("accepted config has a cage without urls (or too many)", k->name);
		for (int i = 0; i < k->url_count; i++)
			if (!k->urls[i].host[0] || strpbrk(k->urls[i].host, "/ \t") ||
			    k->urls[i].port < 1 || k->urls[i].port > 65535)
				fail("accepted config has a malformed cage url", k->name);
		if (!memchr(k->token, '\0', sizeof k->token))
			fail("accepted config has an unterminated cage token", k->name);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct host_conf conf;
	char err[1024];
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(err, 'X', sizeof err);	/* so a message never written shows */
	if (conf_parse(NAME, text, "/fuzz/etc", &conf, err, sizeof err) == 0) {
		check_conf(&conf);
		conf_release(&conf);
	} else {
		if (!memchr(err, '\0', sizeof err))
			fail("error message missing or not terminated", "");
		check_error(err);
		/* conf_parse releases on failure; releasing again must be harmless */
		conf_release(&conf);
	}
	free(text);
	return 0;
}
