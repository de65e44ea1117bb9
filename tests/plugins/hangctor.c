/*
 * hangctor.c - test module "hangctor": its ELF constructor spins forever, so
 * dlopen() never returns.  The attempt timeout must cover loading the module,
 * not only running the handler.
 */
#include "cage.h"

__attribute__((constructor))
static void hang_on_load(void)
{
	volatile unsigned long spins = 0;

	for (;;)
		spins++;
}

static cage_outcome work(cage_call *call)
{
	cage_reply_str(call, "hangctor ran, which it never should");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "work", work },
	{ NULL, NULL },
};

CAGE_MODULE("1", methods);
