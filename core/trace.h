/* SPDX-License-Identifier: MIT */
/*
 * Tracepoints: uw_trace(event, args...) is an LTTng-UST tracepoint of
 * provider "udpweave" when the library is built with liblttng-ust-dev
 * (UW_HAVE_LTTNG), and nothing otherwise. A disabled tracepoint costs one
 * predicted branch. uw_trace_on(event) guards work done only to trace.
 */
#ifndef UW_TRACE_H
#define UW_TRACE_H

#ifdef UW_HAVE_LTTNG
#include "udpweave_tp.h"
#define uw_trace(event, ...)	lttng_ust_tracepoint(udpweave, event, __VA_ARGS__)
#define uw_trace_on(event)	lttng_ust_tracepoint_enabled(udpweave, event)
#else
#define uw_trace(event, ...)	do { } while (0)
#define uw_trace_on(event)	0
#endif

#endif
