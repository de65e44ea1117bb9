/*
 * echo.c - the smallest useful module: it answers with what it was sent.
 *
 * Serves the end-to-end tests and the benchmarks, and is a second example
 * next to the one in sdk/README.  Methods:
 *   echo   the payload back, byte for byte (binary and NUL bytes included)
 *   upper  the payload with ASCII letters upper-cased, other bytes unchanged
 *   fail   always CAGE_FAIL, to exercise the dead store and error reporting
 *   noop   CAGE_OK with no reply, to measure the host's own overhead
 */
#include <stdlib.h>

#include "cage.h"

static cage_outcome echo(cage_call *call)
{
	size_t len;
	const void *data = cage_payload(call, &len);

	if (cage_reply(call, data, len) < 0) {
		cage_error(call, "reply of %zu bytes is larger than the host accepts",
		    len);
		return CAGE_FAIL;
	}
	return CAGE_OK;
}

static cage_outcome upper(cage_call *call)
{
	size_t len, i;
	const unsigned char *in = cage_payload(call, &len);
	unsigned char *out;
	int rc;

	/* malloc(0) may return NULL; keep at least one byte. */
	out = malloc(len > 0 ? len : 1);
	if (out == NULL) {
		cage_error(call, "out of memory for a %zu byte reply", len);
		return CAGE_RETRY;
	}
	/* Plain ASCII, on purpose: toupper() would depend on the locale. */
	for (i = 0; i < len; i++)
		out[i] = (in[i] >= 'a' && in[i] <= 'z') ? in[i] - 'a' + 'A' : in[i];
	rc = cage_reply(call, out, len);
	free(out);
	if (rc < 0) {
		cage_error(call, "reply of %zu bytes is larger than the host accepts",
		    len);
		return CAGE_FAIL;
	}
	return CAGE_OK;
}

static cage_outcome fail(cage_call *call)
{
	cage_error(call, "echo.fail was asked to fail");
	return CAGE_FAIL;
}

static cage_outcome noop(cage_call *call)
{
	(void)call;
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "echo", echo },
	{ "upper", upper },
	{ "fail", fail },
	{ "noop", noop },
	{ NULL, NULL },
};

CAGE_MODULE("1.0", methods);
