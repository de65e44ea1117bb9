/*
 * badctor.c - test module "badctor": its ELF constructor dereferences NULL,
 * so the worker dies inside dlopen(), before any descriptor is read.  A load
 * that kills the worker must be a failed attempt, not a host crash.
 */
#include "cage.h"

__attribute__((constructor, no_sanitize("undefined", "address")))
static void crash_on_load(void)
{
	volatile int *volatile p = NULL;	/* see crashy.c: segv */

	*p = 1;
}

static cage_outcome work(cage_call *call)
{
	cage_reply_str(call, "badctor ran, which it never should");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "work", work },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);
