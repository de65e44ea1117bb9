/*
 * names.c - validation of module, method and queue names, and the set of
 * names told about once (see names.h).
 */
#include <stdio.h>
#include <string.h>

#include "names.h"

bool name_is_valid(const char *name, size_t len)
{
	if (len == 0 || len > NAME_MAX_LEN || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

enum name_set_seen name_set_add(struct name_set *set, const char *name)
{
	for (int i = 0; i < set->count; i++)
		if (!strcmp(set->names[i], name))
			return NAME_SEEN;
	if (set->count == NAME_SET_MAX) {
		if (set->full)
			return NAME_SEEN;
		set->full = true;
		return NAME_SET_FULL;
	}
	snprintf(set->names[set->count++], sizeof set->names[0], "%s", name);
	return NAME_NEW;
}
