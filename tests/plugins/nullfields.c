/*
 * nullfields.c - test module "nullfields": a descriptor with the right ABI
 * version and size but NULL version and NULL methods.  The host must refuse
 * it with a reason rather than dereference either pointer.
 */
#include "cage.h"

__attribute__((visibility("default")))
const struct cage_module cage_module = {
	CAGE_ABI_VERSION, sizeof(struct cage_module), NULL, NULL
};
