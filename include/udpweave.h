/* SPDX-License-Identifier: MIT */
/*
 * udpweave: the interface for applications that know they run under it.
 * An unmodified application needs none of this (LD_PRELOAD is enough).
 * Resolve these with dlsym(RTLD_DEFAULT, "uw_flush") to keep working
 * without the library.
 */
#ifndef UDPWEAVE_H
#define UDPWEAVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Send everything queued by this process now. Returns the number of
 * datagrams handed to the kernel, or -1 with errno set. */
long uw_flush(void);

/* A snapshot of the counters as JSON (the same object UDPWEAVE_STATS
 * writes at exit) into buf. Returns its length, or -1 with errno set
 * (ENOSPC: buf too small, ENODEV: the library is inactive). */
int uw_get_stats(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
