/*
 * check_http_guard.c - unit tests of the HTTP guard (host/http_guard.c)
 * under a real evhttp server on loopback, driven one loop pass at a time
 * by a plain socket client: an answer made outside evhttp's callbacks (one
 * that waited) is on the socket the moment http_guard_write_now() returns.
 */
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "../../host/http_guard.h"

#define LOOP_PASSES 2000	/* a request's way through the loop takes a few */

static struct event_base *base;
static struct evhttp *http;
static struct evhttp_request *waiting;	/* a POST not answered yet */
static int client = -1;

/* GET: answered at once; POST: kept, reading ahead, for the test to answer */
static void handle(struct evhttp_request *req, void *arg)
{
	(void)arg;
	if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
		evhttp_send_reply(req, 200, "OK", NULL);
		return;
	}
	waiting = req;
	http_guard_read_ahead(req);
}

static void serve(void)
{
	struct evhttp_bound_socket *bound;
	struct sockaddr_in addr;
	socklen_t len = sizeof addr;

	base = event_base_new();
	http = evhttp_new(base);
	ck_assert_ptr_nonnull(http);
	http_guard_install(http, base, 8192, 1 << 20, 10000, 16, 16);
	evhttp_set_gencb(http, handle, NULL);
	bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	ck_assert_ptr_nonnull(bound);
	http_guard_listen(evhttp_bound_socket_get_listener(bound));
	ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr,
				     &len), 0);
	client = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(client, (struct sockaddr *)&addr, sizeof addr), 0);
}

static void stop(void)
{
	close(client);
	http_guard_close();
	evhttp_free(http);
	event_base_free(base);
	waiting = NULL;
}

static void send_text(const char *text)
{
	ck_assert_int_eq(send(client, text, strlen(text), 0), (ssize_t)strlen(text));
}

/* The client has bytes to read, without waiting. */
static bool readable(void)
{
	struct pollfd p = { client, POLLIN, 0 };

	return poll(&p, 1, 0) == 1;
}

/* Runs the loop a pass at a time until the client can read an answer, and
 * returns its status line's code. */
static int next_answer(void)
{
	char text[1024];
	ssize_t n;
	int code = 0;

	for (int i = 0; i < LOOP_PASSES && !readable(); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	n = recv(client, text, sizeof text - 1, 0);
	ck_assert_int_gt(n, 0);
	text[n] = '\0';
	ck_assert_int_eq(sscanf(text, "HTTP/1.1 %d", &code), 1);
	return code;
}

/* Sends a POST and runs the loop until the handler holds it. */
static void post_and_wait(void)
{
	send_text("POST /later HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
	for (int i = 0; i < LOOP_PASSES && !waiting; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_ptr_nonnull(waiting);
}

/* Answers the waiting POST from outside evhttp, as the API does once the
 * disk has it, and says whether the answer could be read at once. */
static bool answer_now(void)
{
	struct http_guard_conn conn = http_guard_conn_of(waiting);

	ck_assert_int_ge(conn.fd, 0);
	evhttp_send_reply(waiting, 202, "Accepted", NULL);
	waiting = NULL;
	http_guard_write_now(conn);
	return readable();
}

/* The answer to the waiting POST can be read as soon as it is made, and it
 * is the 202. */
static void answered_at_once(void)
{
	ck_assert(answer_now());
	ck_assert_int_eq(next_answer(), 202);
}

START_TEST(an_answer_that_waited_is_written_at_once)
{
	serve();
	post_and_wait();
	ck_assert(!readable());
	answered_at_once();
	stop();
}
END_TEST

/* the bufferevent keeps its output's start frozen after it has written:
 * the guard's write must thaw it as the bufferevent does */
START_TEST(also_after_answers_the_loop_wrote)
{
	serve();
	send_text("GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(next_answer(), 200);
	post_and_wait();
	answered_at_once();
	stop();
}
END_TEST

/* what came while the answer waited is read, and answered after it */
START_TEST(a_request_sent_meanwhile_is_answered_after_it)
{
	serve();
	post_and_wait();
	send_text("GET /now HTTP/1.1\r\nHost: x\r\n\r\n");
	for (int i = 0; i < 50; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert(!readable());
	answered_at_once();
	ck_assert_int_eq(next_answer(), 200);
	post_and_wait();
	answered_at_once();
	stop();
}
END_TEST

Suite *http_guard_suite(void)
{
	Suite *s = suite_create("http_guard");
	TCase *tc = tcase_create("write_now");

	tcase_add_test(tc, an_answer_that_waited_is_written_at_once);
	tcase_add_test(tc, also_after_answers_the_loop_wrote);
	tcase_add_test(tc, a_request_sent_meanwhile_is_answered_after_it);
	suite_add_tcase(s, tc);
	return s;
}
