/*
 * cagectl.c - command-line client for cagehost's HTTP API.
 *
 *   cagectl [-u URL] call MODULE METHOD [PAYLOAD|-]
 *   cagectl [-u URL] enqueue [-q QUEUE] [-k KEY] [-d DELAY] MODULE METHOD [PAYLOAD|-]
 *   cagectl [-u URL] show ID
 *   cagectl [-u URL] requeue ID
 *   cagectl [-u URL] backup
 *   cagectl [-u URL] delete ID
 *   cagectl [-u URL] dead [-q QUEUE] [-m MODULE] [-f METHOD] [--requeue | --delete]
 *   cagectl [-u URL] pending [-q QUEUE] [-m MODULE] [-f METHOD]
 *   cagectl [-u URL] retry [-q QUEUE] [-f METHOD] MODULE
 *   cagectl [-u URL] modules
 *
 * URL defaults to $CAGEHOST_URL or http://127.0.0.1:8610; a host with a
 * token set needs $CAGEHOST_TOKEN (sent as Authorization: Bearer).  A payload of
 * "-" is read from standard input.  Exit status: 0 on success, 1 when the
 * host answered with an error (printed on stderr), 2 on usage errors, 3
 * when the host could not be reached.
 */
#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "names.h"
#include "record.h"	/* RECORD_IDEM_MAX: the longest key the host takes */
#include "write_all.h"

struct target {
	char host[256];
	char port[16];
};

struct response {
	int status;
	char *raw;		/* whole response, NUL-terminated */
	char *body;		/* points into raw */
	size_t body_len;
};

/* Prints the usage (on stdout when asked for with --help) and exits. */
__attribute__((noreturn))
static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: cagectl [-u URL] call MODULE METHOD [PAYLOAD|-]\n"
		"       cagectl [-u URL] enqueue [-q QUEUE] [-k IDEMPOTENCY_KEY] [-d DELAY] MODULE METHOD\n"
		"               [PAYLOAD|-]     (DELAY as in the config: 90s, 10m, 2h)\n"
		"       cagectl [-u URL] show ID\n"
		"       cagectl [-u URL] requeue ID\n"
		"       cagectl [-u URL] backup     (a hot backup into the host's backup_dir)\n"
		"       cagectl [-u URL] delete ID   (forgets a dead call)\n"
		"       cagectl [-u URL] dead [-q QUEUE] [-m MODULE] [-f METHOD] [--requeue | --delete]\n"
		"               (lists the dead calls selected; or requeues them, or deletes them)\n"
		"       cagectl [-u URL] pending [-q QUEUE] [-m MODULE] [-f METHOD]\n"
		"               (lists the calls not finished yet: waiting, or running)\n"
		"       cagectl [-u URL] retry [-q QUEUE] [-f METHOD] MODULE\n"
		"               (its calls waiting for a retry, of that queue and method, are\n"
		"               retried now)\n"
		"       cagectl [-u URL] modules    (the modules: version in service, methods,\n"
		"               and why a file was refused)\n"
		"URL defaults to $CAGEHOST_URL, else http://127.0.0.1:8610;\n"
		"$CAGEHOST_TOKEN, when set, is sent as Authorization: Bearer TOKEN\n");
	exit(status);
}

/* A delay goes into the query string as it is: digits and a unit only
 * (the host checks the value and says what is wrong with it). */
static int valid_delay(const char *delay)
{
	size_t len = strlen(delay);

	return len > 0 && len < 32 && strspn(delay, "0123456789abcdefghijklmnopqrstuvwxyz") == len;
}

/*
 * Splits "http://HOST[:PORT][/]" (the scheme may be left out; HOST may be
 * an IPv6 address in brackets).  Returns 0, or -1 with why set.
 */
static int parse_url(const char *url, struct target *t, const char **why)
{
	const char *p = url, *host, *end;
	size_t host_len;

	*why = "expected http://HOST[:PORT]";
	if (strncmp(p, "https://", 8) == 0) {
		*why = "cagectl speaks plain HTTP only (put a TLS proxy in front of it "
		       "for https)";
		return -1;
	}
	if (strncmp(p, "http://", 7) == 0)
		p += 7;
	if (*p == '[') {
		host = p + 1;
		end = strchr(host, ']');
		if (!end)
			return -1;
		host_len = (size_t)(end - host);
		p = end + 1;
	} else {
		host = p;
		host_len = strcspn(p, ":/");
		p += host_len;
	}
	if (host_len == 0 || host_len >= sizeof t->host)
		return -1;
	snprintf(t->host, sizeof t->host, "%.*s", (int)host_len, host);
	snprintf(t->port, sizeof t->port, "80");
	if (*p == ':') {
		size_t port_len = strspn(p + 1, "0123456789");

		if (port_len == 0 || port_len >= sizeof t->port)
			return -1;
		snprintf(t->port, sizeof t->port, "%.*s", (int)port_len, p + 1);
		p += 1 + port_len;
	}
	if (*p == '/' && p[1] == '\0')
		p++;
	if (*p) {
		*why = "a URL with a path is not supported: the API is at the root "
		       "(http://HOST:PORT)";
		return -1;
	}
	return 0;
}

static char *read_all(FILE *in, size_t *len)
{
	size_t cap = 4096;
	char *buf = malloc(cap);

	*len = 0;
	while (buf) {
		size_t n = fread(buf + *len, 1, cap - *len, in);

		*len += n;
		if (n == 0)
			break;
		if (*len == cap) {
			char *grown = realloc(buf, cap * 2);

			if (!grown) {
				free(buf);
				return NULL;
			}
			buf = grown;
			cap *= 2;
		}
	}
	return buf;
}

static int connect_to(const struct target *t)
{
	struct addrinfo hints = { 0 }, *res, *ai;
	int fd = -1, rc;

	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(t->host, t->port, &hints, &res);
	if (rc) {
		fprintf(stderr, "cagectl: %s:%s: %s\n", t->host, t->port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (fd < 0)
		fprintf(stderr, "cagectl: cannot connect to %s:%s: %s\n", t->host, t->port,
			strerror(errno));
	freeaddrinfo(res);
	return fd;
}

static int request(const struct target *t, const char *method, const char *path,
		   const char *extra_headers, const char *body, size_t body_len,
		   struct response *res)
{
	char head[2048], auth[400] = "";
	const char *token = getenv("CAGEHOST_TOKEN");
	size_t cap = 65536, len = 0;
	char *end;
	bool ipv6;
	int fd, n;

	if (token && token[0])
		snprintf(auth, sizeof auth, "Authorization: Bearer %.300s\r\n", token);
	fd = connect_to(t);
	if (fd < 0)
		return -1;
	ipv6 = strchr(t->host, ':') != NULL;
	n = snprintf(head, sizeof head,
		     "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nContent-Length: %zu\r\n"
		     "Accept: text/plain\r\nConnection: close\r\n%s%s\r\n",
		     method, path, ipv6 ? "[" : "", t->host, ipv6 ? "]" : "", t->port, body_len,
		     auth, extra_headers);
	if (n < 0 || (size_t)n >= sizeof head || write_all(fd, head, (size_t)n) < 0 ||
	    write_all(fd, body, body_len) < 0) {
		fprintf(stderr, "cagectl: sending the request failed: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	res->raw = malloc(cap + 1);
	while (res->raw) {
		ssize_t got = read(fd, res->raw + len, cap - len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
		if (len == cap) {
			char *grown = realloc(res->raw, cap * 2 + 1);

			if (!grown)
				break;
			res->raw = grown;
			cap *= 2;
		}
	}
	close(fd);
	if (!res->raw || sscanf(res->raw, "HTTP/1.%*d %d", &res->status) != 1) {
		fprintf(stderr, "cagectl: no valid HTTP response from %s:%s\n", t->host, t->port);
		return -1;
	}
	res->raw[len] = '\0';
	end = strstr(res->raw, "\r\n\r\n");
	res->body = end ? end + 4 : res->raw + len;
	res->body_len = len - (size_t)(res->body - res->raw);
	return 0;
}

/* Prints the "error" value of a JSON error body, or the body as is. */
static void print_error(const struct response *res)
{
	const char *e = strstr(res->body, "\"error\": \"");

	fprintf(stderr, "cagectl: HTTP %d: ", res->status);
	if (!e) {
		fprintf(stderr, "%.*s\n", (int)res->body_len, res->body);
		return;
	}
	for (e += 10; *e && *e != '"'; e++) {
		if (*e == '\\' && e[1])
			e++;
		fputc(*e, stderr);
	}
	fputc('\n', stderr);
}

static char *payload_arg(int argc, char **argv, int i, size_t *len)
{
	if (i >= argc) {
		*len = 0;
		return strdup("");
	}
	if (!strcmp(argv[i], "-"))
		return read_all(stdin, len);
	*len = strlen(argv[i]);
	return strdup(argv[i]);
}

/* Exits 2 unless name is a valid module, method or queue name. */
static void check_name(const char *what, const char *name)
{
	if (!name_is_valid(name, strlen(name))) {
		fprintf(stderr, "cagectl: '%s' is not a valid %s name ([A-Za-z0-9_.-], 1 to %d "
			"characters, not starting with '.')\n", name, what, NAME_MAX_LEN);
		exit(2);
	}
}

/* Exits 2 unless key is an Idempotency-Key the host takes: printable
 * ASCII, 1 to RECORD_IDEM_MAX bytes (a CR or LF would end the header). */
static void check_key(const char *key)
{
	size_t len = strlen(key);

	for (size_t i = 0; i < len; i++) {
		if (key[i] < 0x20 || key[i] > 0x7e) {
			fprintf(stderr, "cagectl: the idempotency key may only hold printable "
				"ASCII characters\n");
			exit(2);
		}
	}
	if (len == 0 || len > RECORD_IDEM_MAX) {
		fprintf(stderr, "cagectl: the idempotency key must be 1 to %d characters, "
			"not %zu\n", RECORD_IDEM_MAX, len);
		exit(2);
	}
}

/* The value of option argv[*i], which *i then passes; a usage error when
 * it has none, or was given before (seen). */
static const char *option_value(int argc, char **argv, int *i, const char *seen)
{
	if (*i + 1 >= argc || seen)
		usage(2);
	*i += 2;
	return argv[*i - 1];
}

/*
 * cagectl dead|pending [-q QUEUE] [-m MODULE] [-f METHOD]: every page of
 * GET /v1/calls?state=STATE, one line per call, oldest first; and
 * cagectl dead ... --requeue | --delete: every page of dead calls requeued
 * (POST /v1/calls/requeue?state=dead...) or deleted (DELETE
 * /v1/calls?state=dead...), and how many.
 */
static int page_calls(const struct target *t, const char *state, int argc, char **argv, int i)
{
	static const char *const options[] = { "-q", "-m", "-f" };
	static const char *const names[] = { "queue", "module", "method" };
	const char *filters[3] = { NULL, NULL, NULL };
	const char *action = NULL;	/* "requeued", "deleted"; NULL: list */
	char path[1024], after[32] = "";
	long total = 0;

	while (i < argc && argv[i][0] == '-') {
		int k = 0;

		if (!strcmp(argv[i], "--requeue") || !strcmp(argv[i], "--delete")) {
			if (action || strcmp(state, "dead") != 0)
				usage(2);
			action = argv[i++][2] == 'r' ? "requeued" : "deleted";
			continue;
		}
		while (k < 3 && strcmp(argv[i], options[k]) != 0)
			k++;
		if (k == 3)
			usage(2);
		filters[k] = option_value(argc, argv, &i, filters[k]);
		check_name(names[k], filters[k]);
	}
	if (i != argc)
		usage(2);
	do {
		struct response res = { 0 };
		size_t n = (size_t)snprintf(path, sizeof path, "/v1/calls%s?state=%s&limit=1000",
					    action && action[0] == 'r' ? "/requeue" : "", state);
		const char *method = !action ? "GET" : action[0] == 'r' ? "POST" : "DELETE";
		char *next;
		long count = 0;

		for (int k = 0; k < 3; k++) {
			if (filters[k])
				n += (size_t)snprintf(path + n, sizeof path - n, "&%s=%s", names[k],
						      filters[k]);
		}
		if (after[0])
			snprintf(path + n, sizeof path - n, "&after=%s", after);
		if (request(t, method, path, "", "", 0, &res) < 0)
			return 3;
		if (res.status < 200 || res.status > 299) {
			print_error(&res);
			free(res.raw);
			if (action)
				printf("%s %ld dead call%s before that\n", action, total,
				       total == 1 ? "" : "s");
			return 1;
		}
		/* the calls' lines (or "requeued: N"), then "next: ID" when
		 * there are more */
		next = !strncmp(res.body, "next: ", 6) ? res.body : strstr(res.body, "\nnext: ");
		if (next && next != res.body)
			next++;
		if (!action)
			fwrite(res.body, 1, next ? (size_t)(next - res.body) : res.body_len, stdout);
		else if (sscanf(res.body, "%*[a-z]: %ld", &count) == 1)
			total += count;
		after[0] = '\0';
		if (next)
			sscanf(next, "next: %16[0-9a-f]", after);
		free(res.raw);
	} while (after[0]);
	if (action)
		printf("%s %ld dead call%s\n", action, total, total == 1 ? "" : "s");
	return 0;
}

int main(int argc, char **argv)
{
	const char *url = getenv("CAGEHOST_URL");
	const char *queue = "default", *key = NULL, *delay = NULL, *cmd;
	const char *retry_queue = NULL, *retry_method = NULL;
	char path[1024], headers[512] = "";
	struct response res = { 0 };
	struct target t;
	char *body = NULL;
	const char *why;
	size_t body_len = 0;
	int i = 1, rc;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		usage(0);
	if (i + 1 < argc && !strcmp(argv[i], "-u")) {
		url = argv[i + 1];
		i += 2;
	}
	if (!url)
		url = "http://127.0.0.1:8610";
	if (parse_url(url, &t, &why) < 0) {
		fprintf(stderr, "cagectl: URL '%s': %s\n", url, why);
		return 2;
	}
	if (i >= argc)
		usage(2);
	cmd = argv[i++];
	if (!strcmp(cmd, "dead") || !strcmp(cmd, "pending"))
		return page_calls(&t, cmd, argc, argv, i);
	if (!strcmp(cmd, "call")) {
		if (argc - i < 2 || argc - i > 3)
			usage(2);
		check_name("module", argv[i]);
		check_name("method", argv[i + 1]);
		snprintf(path, sizeof path, "/v1/call/%s/%s", argv[i], argv[i + 1]);
		body = payload_arg(argc, argv, i + 2, &body_len);
	} else if (!strcmp(cmd, "enqueue")) {
		const char *given_queue = NULL;

		while (i < argc && argv[i][0] == '-' && argv[i][1]) {
			if (!strcmp(argv[i], "-q")) {
				queue = given_queue = option_value(argc, argv, &i, given_queue);
			} else if (!strcmp(argv[i], "-k")) {
				key = option_value(argc, argv, &i, key);
			} else if (!strcmp(argv[i], "-d")) {
				delay = option_value(argc, argv, &i, delay);
				if (!valid_delay(delay)) {
					fprintf(stderr, "cagectl: -d takes a duration such as 90s, "
						"10m or 2h, not '%s'\n", delay);
					return 2;
				}
			} else {
				usage(2);
			}
		}
		if (argc - i < 2 || argc - i > 3)
			usage(2);
		check_name("queue", queue);
		check_name("module", argv[i]);
		check_name("method", argv[i + 1]);
		if (key)
			check_key(key);
		snprintf(path, sizeof path, "/v1/enqueue/%s/%s/%s%s%s", queue, argv[i], argv[i + 1],
			 delay ? "?delay=" : "", delay ? delay : "");
		if (key)
			snprintf(headers, sizeof headers, "Idempotency-Key: %s\r\n", key);
		body = payload_arg(argc, argv, i + 2, &body_len);
	} else if (!strcmp(cmd, "show") || !strcmp(cmd, "requeue") || !strcmp(cmd, "delete")) {
		if (argc - i != 1)
			usage(2);
		check_name("call id", argv[i]);
		snprintf(path, sizeof path, "/v1/calls/%s%s", argv[i],
			 !strcmp(cmd, "requeue") ? "/requeue" : "");
		body = strdup("");
	} else if (!strcmp(cmd, "retry")) {
		while (i < argc && argv[i][0] == '-' && argv[i][1]) {
			if (!strcmp(argv[i], "-q"))
				retry_queue = option_value(argc, argv, &i, retry_queue);
			else if (!strcmp(argv[i], "-f"))
				retry_method = option_value(argc, argv, &i, retry_method);
			else
				usage(2);
		}
		if (argc - i != 1)
			usage(2);
		if (retry_queue)
			check_name("queue", retry_queue);
		if (retry_method)
			check_name("method", retry_method);
		check_name("module", argv[i]);
		snprintf(path, sizeof path, "/v1/calls/retry?module=%s%s%s%s%s", argv[i],
			 retry_queue ? "&queue=" : "", retry_queue ? retry_queue : "",
			 retry_method ? "&method=" : "", retry_method ? retry_method : "");
		body = strdup("");
	} else if (!strcmp(cmd, "backup")) {
		if (argc - i != 0)
			usage(2);
		snprintf(path, sizeof path, "/v1/backup");
		body = strdup("");
	} else if (!strcmp(cmd, "modules")) {
		if (argc - i != 0)
			usage(2);
		snprintf(path, sizeof path, "/v1/modules");
		body = strdup("");
	} else {
		usage(2);
	}
	if (!body) {
		fprintf(stderr, "cagectl: cannot read the payload\n");
		return 2;
	}
	rc = request(&t, !strcmp(cmd, "show") || !strcmp(cmd, "modules") ? "GET"
			 : !strcmp(cmd, "delete")			     ? "DELETE"
									     : "POST",
		     path, headers, body, body_len, &res);
	free(body);
	if (rc < 0)
		return 3;
	if (res.status < 200 || res.status > 299) {
		print_error(&res);
		free(res.raw);
		return 1;
	}
	if (!strcmp(cmd, "enqueue")) {
		/* {"id": "0194f3a2b1c00001"...} -> the id alone */
		const char *id = strstr(res.body, "\"id\": \"");

		if (id)
			printf("%.16s%s\n", id + 7,
			       strstr(res.body, "\"duplicate\"") ? " (duplicate: stored earlier)" : "");
		else
			fwrite(res.body, 1, res.body_len, stdout);
	} else if (!strcmp(cmd, "requeue") || !strcmp(cmd, "delete")) {
		printf("%sd %s\n", cmd, argv[argc - 1]);
	} else if (!strcmp(cmd, "retry")) {
		printf("the calls of %s%s%s%s%s waiting for a retry are being retried\n",
		       argv[argc - 1], retry_method ? "." : "", retry_method ? retry_method : "",
		       retry_queue ? " in queue " : "", retry_queue ? retry_queue : "");
	} else {
		fwrite(res.body, 1, res.body_len, stdout);
		if (!strcmp(cmd, "call") && res.body_len && res.body[res.body_len - 1] != '\n' &&
		    isatty(STDOUT_FILENO))
			putchar('\n');
	}
	free(res.raw);
	return 0;
}
