/* SPDX-License-Identifier: MIT */
/*
 * LTTng-UST provider "udpweave". Included through core/trace.h; the probes
 * are created in core/tp.c (the provider, libudpweave-lttng.so), the
 * tracepoints defined in preload/trace.c.
 */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER udpweave

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "./udpweave_tp.h"

#if !defined(UW_UDPWEAVE_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define UW_UDPWEAVE_TP_H

#include <stdint.h>
#include <lttng/tracepoint.h>

/* A datagram queued: its fd, destination ("" for the connected peer). */
LTTNG_UST_TRACEPOINT_EVENT(udpweave, enqueue,
	LTTNG_UST_TP_ARGS(int, fd, const char *, dest, uint32_t, len),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_integer(int, fd, fd)
		lttng_ust_field_string(dest, dest)
		lttng_ust_field_integer(uint32_t, len, len)))

/* A batch leaves: why, how many flows, datagrams and bytes. */
LTTNG_UST_TRACEPOINT_EVENT(udpweave, flush,
	LTTNG_UST_TP_ARGS(const char *, reason, uint32_t, flows, uint32_t, datagrams,
			  uint64_t, bytes),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_string(reason, reason)
		lttng_ust_field_integer(uint32_t, flows, flows)
		lttng_ust_field_integer(uint32_t, datagrams, datagrams)
		lttng_ust_field_integer(uint64_t, bytes, bytes)))

/* One system call of a backend: messages handed over, datagrams in them,
 * and its return value (messages sent, or -errno). */
LTTNG_UST_TRACEPOINT_EVENT(udpweave, backend_send,
	LTTNG_UST_TP_ARGS(const char *, backend, uint32_t, messages, uint32_t, segments,
			  int, rc),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_string(backend, backend)
		lttng_ust_field_integer(uint32_t, messages, messages)
		lttng_ust_field_integer(uint32_t, segments, segments)
		lttng_ust_field_integer(int, rc, rc)))

/* A slower way taken for a batch: "gso_refused", "gso_mtu_split". */
LTTNG_UST_TRACEPOINT_EVENT(udpweave, fallback,
	LTTNG_UST_TP_ARGS(const char *, reason, int, fd),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_string(reason, reason)
		lttng_ust_field_integer(int, fd, fd)))

/* An error met at flush time, kept for the application's next send. */
LTTNG_UST_TRACEPOINT_EVENT(udpweave, async_error,
	LTTNG_UST_TP_ARGS(int, fd, int, err),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_integer(int, fd, fd)
		lttng_ust_field_integer(int, err, err)))

/* The configuration: once, with the first datagram queued while enabled. */
LTTNG_UST_TRACEPOINT_EVENT(udpweave, config,
	LTTNG_UST_TP_ARGS(const char *, backend, uint32_t, max_delay_us, uint32_t, interval_us,
			  uint32_t, arena_kb),
	LTTNG_UST_TP_FIELDS(
		lttng_ust_field_string(backend, backend)
		lttng_ust_field_integer(uint32_t, max_delay_us, max_delay_us)
		lttng_ust_field_integer(uint32_t, interval_us, interval_us)
		lttng_ust_field_integer(uint32_t, arena_kb, arena_kb)))

#endif

#include <lttng/tracepoint-event.h>
