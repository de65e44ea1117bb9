/*
 * flaky.c - test module "flaky", the reload-before-retry case in miniature.
 *
 * Built twice: with -DFLAKY_VERSION=1 (version "1") work always returns
 * CAGE_RETRY; with -DFLAKY_VERSION=2 (version "2") it succeeds and says which
 * attempt and call it ran for.  A test enqueues calls against v1, drops v2
 * into the plugin directory and expects the waiting calls to complete.
 * fail refuses permanently in both builds.  gate fails (RETRY) while the
 * file its payload names exists, in both builds: a failure whose cause is
 * outside the module (tests/e2e/retry_now.sh).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cage.h"

#if !defined(FLAKY_VERSION) || (FLAKY_VERSION != 1 && FLAKY_VERSION != 2)
#error "build with -DFLAKY_VERSION=1 or -DFLAKY_VERSION=2"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

static cage_outcome work(cage_call *call)
{
#if FLAKY_VERSION == 1
	cage_error(call, "flaky v1 always fails");
	return CAGE_RETRY;
#else
	char reply[256];

	snprintf(reply, sizeof(reply), "flaky v2 ok attempt %" PRIu32 " id %s",
	    cage_attempt(call), cage_call_id(call));
	cage_reply_str(call, reply);
	return CAGE_OK;
#endif
}

static cage_outcome fail(cage_call *call)
{
	cage_error(call, "flaky refuses");
	return CAGE_FAIL;
}

static cage_outcome gate(cage_call *call)
{
	char path[512];
	size_t len;
	const void *payload = cage_payload(call, &len);

	if (len == 0 || len >= sizeof path) {
		cage_error(call, "gate takes a file's path as its payload");
		return CAGE_FAIL;
	}
	memcpy(path, payload, len);
	path[len] = '\0';
	if (access(path, F_OK) == 0) {
		cage_error(call, "the gate is closed");
		return CAGE_RETRY;
	}
	cage_reply_str(call, "through the gate");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "work", work },
	{ "fail", fail },
	{ "gate", gate },
	{ NULL, NULL },
};

CAGE_MODULE(STR(FLAKY_VERSION), methods);
