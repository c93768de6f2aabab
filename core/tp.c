/* SPDX-License-Identifier: MIT */
/* The LTTng-UST probes of provider "udpweave" (built with liblttng-ust-dev). */
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#define LTTNG_UST_TRACEPOINT_DEFINE
#include "udpweave_tp.h"
