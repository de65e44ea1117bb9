/*
 * always_fail.c - test module "alwaysfail": work returns CAGE_RETRY every
 * time, so a queued call walks the whole retry schedule (with a short test
 * policy) and finally expires into the dead store.
 */
#include "cage.h"

static cage_outcome work(cage_call *call)
{
	cage_error(call, "always fails");
	return CAGE_RETRY;
}

static const struct cage_method methods[] = {
	{ "work", work },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);
