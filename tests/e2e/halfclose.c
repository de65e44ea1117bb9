/*
 * halfclose.c - a test client that sends a request and closes its sending
 * side at once, the way `nc -N` or a shell's here-document client does.
 *
 *   halfclose PORT FILE SECONDS [reset]
 *
 * Connects to 127.0.0.1:PORT, sends the bytes of FILE, shuts down its
 * sending side (the host reads the end of the stream after them), then
 * copies everything the host sends to standard output until the host
 * closes the connection or SECONDS pass.  Exit status 0 when the host
 * closed the connection, 1 on a timeout or an error, 2 for bad usage.
 *
 * With "reset" it leaves the way a client killed with unread data does:
 * it keeps its sending side open, reads nothing for SECONDS, then resets
 * the connection (SO_LINGER 0), and exits 0.
 */
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char buf[4096];
	size_t n;
	FILE *in;
	int fd, seconds;
	time_t end;

	if (argc < 4 || argc > 5 || atoi(argv[1]) <= 0 || (seconds = atoi(argv[3])) <= 0 ||
	    (argc == 5 && strcmp(argv[4], "reset"))) {
		fprintf(stderr, "usage: halfclose PORT FILE SECONDS [reset]\n");
		return 2;
	}
	addr.sin_port = htons((uint16_t)atoi(argv[1]));
	if (!(in = fopen(argv[2], "rb"))) {
		perror(argv[2]);
		return 1;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		perror("connect");
		return 1;
	}
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		if (send(fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n) {
			perror("send");
			return 1;
		}
	fclose(in);
	if (argc == 5) {
		struct linger abort_close = { .l_onoff = 1, .l_linger = 0 };

		sleep((unsigned)seconds);
		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close) < 0) {
			perror("SO_LINGER");
			return 1;
		}
		close(fd);
		return 0;
	}
	shutdown(fd, SHUT_WR);
	end = time(NULL) + seconds;
	while (time(NULL) < end) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t got;

		if (poll(&p, 1, 100) < 1)
			continue;
		got = read(fd, buf, sizeof buf);
		if (got <= 0)
			return got == 0 ? 0 : 1;
		fwrite(buf, 1, (size_t)got, stdout);
		fflush(stdout);
	}
	return 1;
}
