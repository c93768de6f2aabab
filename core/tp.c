/* SPDX-License-Identifier: MIT */
/*
 * The LTTng-UST probes of provider "udpweave": built alone into
 * libudpweave-lttng.so (linked with liblttng-ust), which the library loads
 * only when tracing can happen; the tracepoints are defined in
 * preload/trace.c (dynamic linkage, lttng-ust(3)).
 */
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#include "udpweave_tp.h"
