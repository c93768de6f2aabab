/* SPDX-License-Identifier: MIT */
/*
 * The live-stats segment: a process running under udpweave publishes its
 * counters (the same JSON object as UDPWEAVE_STATS) in a one-page file
 * /dev/shm/udpweave.<pid>, mode 0600, created at its first flush, updated
 * at most every UW_STATS_PUBLISH_MS while it sends, and removed when it
 * exits. `udpweave stats PID` reads it.
 *
 * A reader copies the JSON under the sequence counter (a seqlock): read
 * seq (acquire); if odd, the writer is busy: retry; copy len bytes of json;
 * read seq again; if it changed, retry.
 */
#ifndef UDPWEAVE_STATS_H
#define UDPWEAVE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* The seqlock's fence. Writer and reader are different processes, which
 * ThreadSanitizer cannot observe, and GCC refuses thread fences under it:
 * there, a compiler barrier (enough on x86's ordered stores and loads). */
#ifdef __SANITIZE_THREAD__
#define uw_seqlock_fence(order)	atomic_signal_fence(order)
#else
#define uw_seqlock_fence(order)	atomic_thread_fence(order)
#endif

#define UW_STATS_MAGIC		"UWSTATS1"
#define UW_STATS_DIR		"/dev/shm"
#define UW_STATS_PREFIX		"udpweave."
#define UW_STATS_SEGMENT_SIZE	4096
#define UW_STATS_PUBLISH_MS	100

struct uw_stats_segment {
	char magic[8];		/* UW_STATS_MAGIC, no NUL */
	uint64_t seq;		/* even: stable; odd: being written */
	uint32_t pid;
	uint32_t len;		/* bytes of json, no NUL counted */
	char json[UW_STATS_SEGMENT_SIZE - 24];
};

#endif
