/*
 * noabi.c - test module built as "wrongabi": a descriptor that claims ABI
 * 999.  The host must refuse it with a logged reason naming both ABI
 * numbers, and keep the last good version (if any) in service.
 *
 * The descriptor is written by hand because CAGE_MODULE() always fills in
 * the right ABI version.
 */
#include "cage.h"

static cage_outcome work(cage_call *call)
{
	cage_reply_str(call, "wrongabi ran, which it never should");
	return CAGE_OK;
}

static const struct cage_method methods[] = {
	{ "work", work },
	{ NULL, NULL },
};

__attribute__((visibility("default")))
const struct cage_module cage_module = {
	999, sizeof(struct cage_module), "1", methods
};
