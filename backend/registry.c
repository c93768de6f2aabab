/* SPDX-License-Identifier: MIT */
/* Backends by name. */
#include <string.h>

#include "uw.h"

static const struct uw_backend_ops *const uw_backends[] = {
	&uw_backend_mmsg,
	&uw_backend_packet,
	&uw_backend_uring,
	&uw_backend_auto,
	&uw_backend_passthrough,
};

const struct uw_backend_ops *uw_backend_find(const char *name)
{
	for (size_t i = 0; i < UW_ARRAY_SIZE(uw_backends); i++)
		if (!strcmp(uw_backends[i]->name, name))
			return uw_backends[i];
	return NULL;
}
