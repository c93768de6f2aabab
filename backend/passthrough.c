/* SPDX-License-Identifier: MIT */
/* The passthrough backend: one sendmsg(2) per datagram, as the application
 * would have made it. The reference, and the last resort of the others. */
#include <errno.h>
#include <string.h>

#include "backend.h"
#include "trace.h"

#ifndef SCM_TXTIME
#define SCM_TXTIME 61
#endif

static int pt_open(struct uw_backend *be, const struct uw_config *cfg)
{
	return 0;
}

/* Datagram k of r: false when the socket is full (it and the rest of r
 * are then held). */
static bool send_one(struct uw_backend *be, struct uw_run *r, uint32_t k)
{
	struct uw_sock *s = r->sock;
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
	struct msghdr h = {
		.msg_name = r->dest->len ? (void *)&r->dest->u : NULL,
		.msg_namelen = r->dest->len,
		.msg_iov = r->iov + k,
		.msg_iovlen = 1,
	};
	union {
		char buf[CMSG_SPACE(sizeof(uint64_t))];
		struct cmsghdr align;
	} ctl;
	struct uw_retry rs = { 0 };

	if (r->txtime_ns) {	/* its departure time, for fq */
		struct cmsghdr *cm = &ctl.align;

		memset(&ctl, 0, sizeof(ctl));
		h.msg_control = ctl.buf;
		h.msg_controllen = sizeof(ctl.buf);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_TXTIME;
		cm->cmsg_len = CMSG_LEN(sizeof(uint64_t));
		memcpy(CMSG_DATA(cm), &r->txtime_ns, sizeof(uint64_t));
	}
	for (;;) {
		ssize_t rc = be->sys->sendmsg(fd, &h, MSG_NOSIGNAL | MSG_DONTWAIT);

		uw_stat_add(&be->stats->syscalls, 1);
		uw_stat_add(&be->stats->pt_calls, 1);
		uw_trace(backend_send, "passthrough", 1, 1, rc < 0 ? -errno : 1);
		if (rc >= 0)
			return true;
		switch (uw_be_on_error(be, &rs, s, fd, errno, false)) {
		case UW_BE_DROP:
			uw_be_drop(r, r->iov + k, 1);
			return true;
		case UW_BE_PARK:
			uw_be_hold(r, k, r + 1);
			return false;
		default:
			break;
		}
	}
}

static int pt_send_batch(struct uw_backend *be, struct uw_batch *b)
{
	for (size_t i = 0; i < b->nruns; i++) {
		struct uw_run *r = &b->runs[i];

		if (r->held)	/* its socket was found full */
			continue;
		for (uint32_t k = 0; k < r->nseg; k++) {
			if (send_one(be, r, k))
				continue;
			/* full: the socket's later runs wait behind this one */
			for (size_t j = i + 1; j < b->nruns; j++)
				if (b->runs[j].sock == r->sock && !b->runs[j].held)
					uw_be_hold(&b->runs[j], 0, &b->runs[j] + 1);
			break;
		}
	}
	return 0;
}

const struct uw_backend_ops uw_backend_passthrough = {
	.name		= "passthrough",
	.open		= pt_open,
	.send_batch	= pt_send_batch,
	.close		= NULL,
	.txtime		= true,
};
