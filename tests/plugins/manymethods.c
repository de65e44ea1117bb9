/*
 * manymethods.c - test module "manymethods": the most methods a module may
 * have (256), each with the longest name (64 bytes) and a '.' in it, so
 * that their list (16 KB) is longer than the 2 KB the worker reports to the
 * host, and names are checked whole, not a byte at a time.  The table is
 * filled in by a constructor, which runs when the module loads, before the
 * worker reads the descriptor.  Every method answers its name.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cage.h"

#define METHODS 256
#define NAME_LEN 64

static char names[METHODS][NAME_LEN + 1];
static struct cage_method methods[METHODS + 1];	/* the last stays { NULL, NULL } */

static cage_outcome answer_name(cage_call *call)
{
	cage_reply_str(call, cage_method(call));
	return CAGE_OK;
}

__attribute__((constructor)) static void fill_table(void)
{
	for (int i = 0; i < METHODS; i++) {
		/* "m000.____": the number, a '.', then '_' up to NAME_LEN bytes */
		snprintf(names[i], sizeof names[i], "m%03d.", i);
		memset(names[i] + 5, '_', NAME_LEN - 5);
		names[i][NAME_LEN] = '\0';
		methods[i].name = names[i];
		methods[i].handler = answer_name;
	}
}

CAGE_MODULE("1", methods);
