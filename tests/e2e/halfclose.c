/*
 * halfclose.c - a test client that sends a request and closes its sending
 * side at once, the way `nc -N` or a shell's here-document client does.
 *
 *   halfclose PORT FILE SECONDS
 *
 * Connects to 127.0.0.1:PORT, sends the bytes of FILE, shuts down its
 * sending side (the host reads the end of the stream after them), then
 * copies everything the host sends to standard output until the host
 * closes the connection or SECONDS pass.  Exit status 0 when the host
 * closed the connection, 1 on a timeout or an error, 2 for bad usage.
 */
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
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

	if (argc != 4 || atoi(argv[1]) <= 0 || (seconds = atoi(argv[3])) <= 0) {
		fprintf(stderr, "usage: halfclose PORT FILE SECONDS\n");
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
