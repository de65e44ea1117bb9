/*
 * crashy.c - test module "crashy": every way a handler can go wrong.
 *
 * Each method misbehaves in one way the host must survive, turning it into a
 * failed attempt (CAGE_RETRY) while it keeps serving other calls:
 *   segv    writes through a NULL pointer (SIGSEGV)
 *   abort   prints "crashy abort: last words" on stderr, then calls abort()
 *           (SIGABRT)
 *   term    raises SIGTERM in the worker (a signal the worker also uses
 *           to learn that the host died)
 *   exit    calls exit(3) from inside the worker
 *   hang    spins on the CPU forever (needs attempt_timeout)
 *   sleep   blocks forever in pause() (needs attempt_timeout)
 * and three well-behaved ones:
 *   ok      replies "crashy ok" (the worker replaced after a crash works)
 *   slow    takes the milliseconds its payload names (a stopping host lets
 *           it finish), logs "crashy slow done", replies "slow ok"; a
 *           payload naming a file ("/...", ended by the payload's end or
 *           a NUL) instead creates FILE.started and then waits until FILE
 *           exists (at most 60 s), so that a test sees when it starts and
 *           says when it ends
 *   chatty  prints to stdout and stderr, then replies "chatty ok" (the
 *           handler's own output must not corrupt the host's channel)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cage.h"

/* The crash is the point: sanitizer builds must not intercept it. */
__attribute__((no_sanitize("undefined", "address")))
static cage_outcome segv(cage_call *call)
{
	/*
	 * Both volatiles matter: with a plain int target gcc 12 -O2 drops the
	 * store, and the handler returns CAGE_OK instead of crashing.
	 */
	volatile int *volatile p = NULL;

	(void)call;
	*p = 1;
	return CAGE_OK;
}

static cage_outcome do_abort(cage_call *call)
{
	(void)call;
	fprintf(stderr, "crashy abort: last words\n");
	abort();
}

static cage_outcome term(cage_call *call)
{
	(void)call;
	raise(SIGTERM);
	pause();	/* the signal is handled: wait until it ends us */
	return CAGE_OK;
}

static cage_outcome do_exit(cage_call *call)
{
	(void)call;
	exit(3);
}

static cage_outcome hang(cage_call *call)
{
	volatile unsigned long spins = 0;

	(void)call;
	for (;;)
		spins++;
	return CAGE_RETRY;	/* not reached; keeps -Wreturn-type quiet */
}

static cage_outcome do_sleep(cage_call *call)
{
	(void)call;
	for (;;)
		pause();
	return CAGE_RETRY;	/* not reached */
}

static cage_outcome slow(cage_call *call)
{
	char text[4096] = "";	/* milliseconds, or a path */
	size_t len;
	const void *payload = cage_payload(call, &len);
	long ms;

	if (len >= sizeof text)
		len = sizeof text - 1;
	memcpy(text, payload, len);
	if (text[0] == '/') {
		char started[sizeof text + 8];
		FILE *f;

		snprintf(started, sizeof started, "%s.started", text);
		if ((f = fopen(started, "w")))
			fclose(f);
		for (int waited_ms = 0; access(text, F_OK) != 0 && waited_ms < 60000;
		     waited_ms += 20)
			usleep(20 * 1000);
	} else {
		ms = strtol(text, NULL, 10);
		usleep((useconds_t)(ms > 0 && ms < 600000 ? ms : 1000) * 1000);
	}
	cage_log(call, CAGE_LOG_INFO, "crashy slow done");
	cage_reply_str(call, "slow ok");
	return CAGE_OK;
}

static cage_outcome ok(cage_call *call)
{
	cage_reply_str(call, "crashy ok");
	return CAGE_OK;
}

static cage_outcome chatty(cage_call *call)
{
	int i;

	for (i = 1; i <= 3; i++) {
		printf("crashy chatty: stdout line %d\n", i);
		fprintf(stderr, "crashy chatty: stderr line %d\n", i);
	}
	/* A worker may leave with _exit(); do not leave output in buffers. */
	fflush(stdout);
	fflush(stderr);
	cage_reply_str(call, "chatty ok");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "segv", segv },
	{ "abort", do_abort },
	{ "term", term },
	{ "exit", do_exit },
	{ "hang", hang },
	{ "sleep", do_sleep },
	{ "slow", slow },
	{ "ok", ok },
	{ "chatty", chatty },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);
