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

/*
 * Per-stream performance metrics of a UDP socket.
 *
 * Set them with uw_set_metrics(), or with no link-time dependency at all
 * with setsockopt(fd, SOL_UDPWEAVE, UDPWEAVE_METRICS, &m, sizeof(m)): the
 * library handles that private level itself and the kernel never sees it
 * (without the library the kernel answers ENOPROTOOPT, EOPNOTSUPP for
 * getsockopt, which tells the program it runs without udpweave). A field
 * left 0 is "not set here":
 * the value of the matching UDPWEAVE_RULES rule, else the default,
 * applies. Setting all three to 0 returns the socket to its rules.
 *
 * getsockopt(fd, SOL_UDPWEAVE, UDPWEAVE_METRICS, &m, &len) and
 * uw_get_metrics() return the values in effect for the socket's flow (the
 * connected peer, or the destination it last sent to; max_delay_us is the
 * default when nothing sets it), with the pacing chosen and whether the
 * library can meet them. Values out of range are EINVAL, as is a length
 * below UDPWEAVE_METRICS_MIN_SIZE; another option at this level is
 * ENOPROTOOPT.
 */
#define SOL_UDPWEAVE		0x7577	/* "uw": not a kernel level */
#define UDPWEAVE_METRICS	1

struct udpweave_metrics {
	uint64_t rate_bps;		/* the stream's bit rate */
	uint32_t max_jitter_us;		/* largest tolerable change of spacing */
	uint32_t max_delay_us;		/* longest a datagram may wait */
	/* Returned by getsockopt; ignored by setsockopt. */
	uint32_t pacing;		/* UDPWEAVE_PACING_* in effect */
	uint32_t state;			/* UDPWEAVE_STATE_* bits */
	uint64_t est_rate_bps;		/* measured rate (EWMA), 0: not yet */
	uint32_t interval_us;		/* release quantum chosen */
	uint32_t precision_us;		/* flush thread's wake-up precision (p99) */
};

/* setsockopt needs at least rate_bps, max_jitter_us and max_delay_us. */
#define UDPWEAVE_METRICS_MIN_SIZE	16u
/* Largest value accepted for max_jitter_us and max_delay_us (10 s), and
 * for rate_bps (1 Tbit/s); anything above is EINVAL. */
#define UDPWEAVE_MAX_TIME_US		10000000u
#define UDPWEAVE_MAX_RATE_BPS		1000000000000ull

enum {
	UDPWEAVE_PACING_NONE	= 0,	/* no metrics: the global maximum delay */
	UDPWEAVE_PACING_USER	= 1,	/* the library's own timing wheel */
	UDPWEAVE_PACING_KERNEL	= 2,	/* departure times (SO_TXTIME) and fq */
	UDPWEAVE_PACING_DIRECT	= 3,	/* not admitted: sent as the app sends */
};

#define UDPWEAVE_STATE_ADMITTED		0x01u	/* the metrics can be met */
#define UDPWEAVE_STATE_JITTER_TOO_LOW	0x02u	/* below the wake-up precision */
#define UDPWEAVE_STATE_DELAY_TOO_LOW	0x04u	/* no room to batch in it */
#define UDPWEAVE_STATE_RATE_TOO_HIGH	0x08u	/* more than the arena holds */
#define UDPWEAVE_STATE_NO_FLOW		0x10u	/* unconnected, nothing sent yet:
						 * destination rules not known */
#define UDPWEAVE_STATE_RATE_ESTIMATED	0x20u	/* no rate set: est_rate_bps used */
/* The socket's mode now (they change as it is used): */
#define UDPWEAVE_STATE_DIRECT		0x40u	/* sends go straight to the kernel
						 * (first sends, after an error,
						 * too slow to batch, interactive) */
#define UDPWEAVE_STATE_INTERACTIVE	0x80u	/* the process reads it too */

/* Both return 0, or -1 with errno: EINVAL (a value out of range), EBADF,
 * ENOTSOCK (not a UDP socket the library queues for), ENODEV (the
 * library is inactive). */
int uw_set_metrics(int fd, const struct udpweave_metrics *m);
int uw_get_metrics(int fd, struct udpweave_metrics *m);

#ifdef __cplusplus
}
#endif

#endif
