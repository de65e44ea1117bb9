/*
 * dupmethod.c - test module "dupmethod": a method table that lists one
 * method name twice.  The host must refuse it (which of the two would a
 * caller get?) and name the method.
 */
#include <stddef.h>

#include "cage.h"

static cage_outcome first(cage_call *call)
{
	cage_reply_str(call, "first");
	return CAGE_OK;
}

static cage_outcome second(cage_call *call)
{
	cage_reply_str(call, "second");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "run", first },
	{ "stop", second },
	{ "run", second },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);
