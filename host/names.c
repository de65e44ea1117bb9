/*
 * names.c - validation of module, method and queue names (see names.h).
 */
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
