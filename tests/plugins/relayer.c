/*
 * relayer.c - test module "relayer": its handlers enqueue calls on another
 * cage, the one the test config names "peer" (cage_enqueue).
 *
 *   pass       enqueues peer default/echo.upper with its own payload; OK
 *   two        enqueues two calls (payloads "PAYLOAD#1", "PAYLOAD#2"); OK
 *   then_fail  enqueues one, then returns CAGE_FAIL (nothing may be sent)
 *   nowhere    enqueues on cage "nosuch", which no config names; OK
 *   to_pair    enqueues on cage "pair" (a cage with two urls); OK
 *   to_slow    enqueues peer slow/echo.upper (another queue); OK
 *   big        enqueues peer default/echo.upper with as many bytes ('x')
 *              as its payload says (at most 16 MiB); OK
 *   bad_name   tries a module name with a '/'; replies "refused" when
 *              cage_enqueue says -1 (and returns OK either way)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cage.h"

static int forward(cage_call *call, const char *cage, const char *suffix)
{
	size_t len;
	const char *payload = cage_payload(call, &len);
	char text[4096];
	int n = snprintf(text, sizeof text, "%.*s%s", (int)len, payload, suffix);

	return cage_enqueue(call, cage, "default", "echo", "upper", text, (size_t)n);
}

static cage_outcome pass(cage_call *call)
{
	if (forward(call, "peer", "") < 0) {
		cage_error(call, "cage_enqueue failed");
		return CAGE_RETRY;
	}
	cage_reply_str(call, "sent");
	return CAGE_OK;
}

static cage_outcome two(cage_call *call)
{
	if (forward(call, "peer", "#1") < 0 || forward(call, "peer", "#2") < 0) {
		cage_error(call, "cage_enqueue failed");
		return CAGE_RETRY;
	}
	return CAGE_OK;
}

static cage_outcome then_fail(cage_call *call)
{
	forward(call, "peer", "");
	cage_error(call, "failed after enqueueing");
	return CAGE_FAIL;
}

static cage_outcome nowhere(cage_call *call)
{
	forward(call, "nosuch", "");
	return CAGE_OK;
}

static cage_outcome to_pair(cage_call *call)
{
	forward(call, "pair", "");
	return CAGE_OK;
}

static cage_outcome to_slow(cage_call *call)
{
	size_t len;
	const char *payload = cage_payload(call, &len);

	if (cage_enqueue(call, "peer", "slow", "echo", "upper", payload, len) < 0) {
		cage_error(call, "cage_enqueue failed");
		return CAGE_RETRY;
	}
	return CAGE_OK;
}

static cage_outcome big(cage_call *call)
{
	size_t len;
	const char *payload = cage_payload(call, &len);
	char text[32] = "";
	long size;
	char *bytes;
	int rc;

	memcpy(text, payload, len < sizeof text ? len : sizeof text - 1);
	size = strtol(text, NULL, 10);
	if (size <= 0 || size > (16L << 20) || !(bytes = malloc((size_t)size))) {
		cage_error(call, "big: a size from 1 to 16 MiB, please");
		return CAGE_FAIL;
	}
	memset(bytes, 'x', (size_t)size);
	rc = cage_enqueue(call, "peer", "default", "echo", "upper", bytes, (size_t)size);
	free(bytes);
	if (rc < 0) {
		cage_error(call, "cage_enqueue failed");
		return CAGE_RETRY;
	}
	return CAGE_OK;
}

static cage_outcome bad_name(cage_call *call)
{
	int rc = cage_enqueue(call, "peer", "default", "a/b", "upper", "x", 1);

	cage_reply_str(call, rc < 0 ? "refused" : "accepted");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "pass", pass },
	{ "two", two },
	{ "then_fail", then_fail },
	{ "nowhere", nowhere },
	{ "to_pair", to_pair },
	{ "to_slow", to_slow },
	{ "big", big },
	{ "bad_name", bad_name },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);
