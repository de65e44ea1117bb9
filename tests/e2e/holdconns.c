/*
 * holdconns.c - a test client that holds many connections to a host open,
 * the way a connection flood or a slowloris client does.
 *
 *   holdconns PORT COUNT SECONDS [drip]
 *
 * Opens up to COUNT connections to 127.0.0.1:PORT (each connect waits at
 * most 1 s: a host that stopped accepting leaves the rest unopened), then
 * keeps them open for SECONDS, reading whatever the host sends.  With
 * "drip", each connection sends one byte of a never-ending header line
 * every second.  Prints one line:
 *
 *   opened=N answered503=N closed_by_host=N
 *
 * answered503: connections whose first bytes from the host were a 503;
 * closed_by_host: connections the host closed for good while they were
 * held: a byte sent after the end of its stream (a probe, every 50 ms) or
 * a dripped byte failed, since the host's socket was gone - a host that
 * only shut its sending side is still reading, and is not counted.  Exit
 * status 0, or 2 for bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct held {
	int fd;
	bool answered503;
	bool eof;		/* the host's side of the stream ended */
	bool closed;		/* the host's socket is gone (a send failed) */
	size_t got;		/* bytes read so far */
	char head[16];		/* the first of them */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection to port, or -1 when it is not made within a second. */
static int open_one(int port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct pollfd p = { fd, POLLOUT, 0 };
	int err = 0;
	socklen_t len = sizeof err;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	if (poll(&p, 1, 1000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
	    err) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads what the host sent on h (never blocks). */
static void drain(struct held *h)
{
	char buf[4096];
	ssize_t n = -1;

	while (!h->closed && !h->eof && (n = read(h->fd, buf, sizeof buf)) != 0) {
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				h->closed = true;	/* reset */
			return;
		}
		for (ssize_t i = 0; i < n && h->got < sizeof h->head; i++)
			h->head[h->got++] = buf[i];
		if (h->got >= 12 && !memcmp(h->head, "HTTP/1.1 503", 12))
			h->answered503 = true;
	}
	if (n == 0)
		h->eof = true;
	/* after the end of the stream: is the host still there to read? */
	if (h->eof && !h->closed && send(h->fd, "x", 1, MSG_NOSIGNAL) < 0)
		h->closed = true;
}

int main(int argc, char **argv)
{
	int port, count, seconds, opened = 0, answered = 0, closed = 0;
	bool drip = argc == 5 && !strcmp(argv[4], "drip");
	struct held *held;
	int64_t end, next_drip;

	if (argc < 4 || argc > 5 || (argc == 5 && !drip)) {
		fprintf(stderr, "usage: holdconns PORT COUNT SECONDS [drip]\n");
		return 2;
	}
	port = atoi(argv[1]);
	count = atoi(argv[2]);
	seconds = atoi(argv[3]);
	if (port <= 0 || count <= 0 || seconds < 0 || !(held = calloc((size_t)count, sizeof *held)))
		return 2;
	while (opened < count && (held[opened].fd = open_one(port)) >= 0)
		opened++;
	if (drip)
		for (int i = 0; i < opened; i++)
			(void)!send(held[i].fd, "POST / HTTP/1.1\r\nX-Slow: ", 25, MSG_NOSIGNAL);
	end = now_ms() + (int64_t)seconds * 1000;
	next_drip = now_ms() + 1000;
	while (now_ms() < end) {
		for (int i = 0; i < opened; i++)
			drain(&held[i]);
		if (drip && now_ms() >= next_drip) {
			for (int i = 0; i < opened; i++)
				if (!held[i].closed && send(held[i].fd, "x", 1, MSG_NOSIGNAL) < 0)
					held[i].closed = true;
			next_drip += 1000;
		}
		usleep(50 * 1000);
	}
	for (int i = 0; i < opened; i++) {
		drain(&held[i]);
		answered += held[i].answered503;
		closed += held[i].closed;
		close(held[i].fd);
	}
	printf("opened=%d answered503=%d closed_by_host=%d\n", opened, answered, closed);
	free(held);
	return 0;
}
