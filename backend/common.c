/* SPDX-License-Identifier: MIT */
/*
 * The error policy every backend shares (design §3.5): a full socket
 * (EAGAIN; ENOBUFS after a short back-off) is never waited for here, its
 * runs are held for the core (core/held.c); a refused GSO run is resent
 * as plain datagrams; and an
 * error the kernel reports for the socket (ICMP, routing, firewall) is kept
 * for the application's next send. Such an error may have been the
 * socket's pending one, consumed by this very send: the message is tried
 * once more, and dropped only if the kernel refuses it again, as it would
 * have refused the application.
 */
#include <errno.h>
#include <time.h>

#include "backend.h"
#include "trace.h"

#define UW_NOBUFS_MAX		4u	/* 0.75 ms of growing back-off, then held */

static void note_async_error(struct uw_backend *be, struct uw_sock *s, int fd, int err)
{
	int none = 0;

	uw_trace(async_error, fd, err);
	uw_stat_add(&be->stats->async_errors, 1);
	if (err > 0 && err < (int)UW_ARRAY_SIZE(be->stats->async_errno))
		uw_stat_add(&be->stats->async_errno[err], 1);
	atomic_compare_exchange_strong(&s->pending_err, &none, err);
	uw_core_sync_error(s, be->sys->now_ns());	/* its next sends: the kernel's */
}

static void backoff(struct uw_backend *be, unsigned int k)
{
	unsigned int us = 50u << (k < 8 ? k : 8);
	struct timespec ts = { 0, (long)(us > 10000 ? 10000 : us) * 1000 };

	be->sys->nanosleep(&ts, NULL);
}

enum uw_be_action uw_be_on_error(struct uw_backend *be, struct uw_retry *rs,
				 struct uw_sock *s, int fd, int err, bool gso)
{
	switch (err) {
	case EINTR:
		return UW_BE_RETRY;
	case EAGAIN:
		/* never a wait in the flush: the socket's own list waits */
		uw_stat_add(&be->stats->retries, 1);
		return UW_BE_PARK;
	case ENOBUFS:
	case ENOMEM:
		if (rs->nobufs < UW_NOBUFS_MAX) {
			backoff(be, rs->nobufs++);
			uw_stat_add(&be->stats->retries, 1);
			return UW_BE_RETRY;
		}
		uw_stat_add(&be->stats->retries, 1);
		return UW_BE_PARK;
	case EIO:
	case EINVAL:
		if (gso) {
			if (!(uw_sock_flags(s) & UW_SOCK_NO_GSO))
				uw_info("fd %d: the kernel refused UDP GSO (error %d); "
					"plain datagrams from now on", fd, err);
			uw_sock_set(s, UW_SOCK_NO_GSO);
			uw_stat_add(&be->stats->fallbacks_gso, 1);
			uw_trace(fallback, "gso_refused", fd);
			return UW_BE_UNGSO;
		}
		break;
	case EMSGSIZE:
		if (gso) {
			uw_stat_add(&be->stats->gso_split_mtu, 1);
			uw_trace(fallback, "gso_mtu_split", fd);
			return UW_BE_UNGSO;
		}
		break;
	}
	note_async_error(be, s, fd, err);
	if (!rs->async_retried) {
		rs->async_retried = true;
		uw_stat_add(&be->stats->retries, 1);
		return UW_BE_RETRY;
	}
	return UW_BE_DROP;
}

int uw_be_gso_einval(struct uw_backend *be, struct uw_run *r)
{
	uw_route_forget(r->sock, r->dest);
	if (r->seg_size > uw_route_max_segment(be->sys, r->sock, r->dest))
		return EMSGSIZE;
	return EINVAL;
}

void uw_be_drop(struct uw_run *r, const struct iovec *iov, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		r->dropped++;
		r->dropped_bytes += (uint32_t)iov[i].iov_len;
	}
}

void uw_be_hold(struct uw_run *r, uint32_t first, struct uw_run *end)
{
	for (; r < end; r++, first = 0) {
		for (uint32_t i = first; i < r->nseg; i++)
			r->held_bytes += (uint32_t)r->iov[i].iov_len;
		r->held = r->nseg - first;
	}
}
