/* SPDX-License-Identifier: MIT */
/* Helpers shared by the backends. */
#ifndef UW_BACKEND_H
#define UW_BACKEND_H

#include <netinet/udp.h>
#include <string.h>

#include "uw.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#ifndef SCM_TXTIME
#define SCM_TXTIME 61
#endif

/* Room for the control messages of one run: UDP_SEGMENT (a GSO run) and
 * SCM_TXTIME (its departure time). */
union uw_be_cmsgs {
	char buf[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(uint64_t))];
	struct cmsghdr align;
};

/* Give h the control messages of a run: UDP_SEGMENT of seg bytes unless
 * seg is 0, SCM_TXTIME unless txtime_ns is 0; none: no control data. */
static inline void uw_be_set_cmsgs(struct msghdr *h, union uw_be_cmsgs *c, uint16_t seg,
				   uint64_t txtime_ns)
{
	struct cmsghdr *cm = &c->align;
	size_t len = 0;

	h->msg_control = NULL;
	h->msg_controllen = 0;
	if (!seg && !txtime_ns)
		return;
	memset(c, 0, sizeof(*c));
	if (seg) {
		cm->cmsg_level = SOL_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(seg));
		memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
		len += CMSG_SPACE(sizeof(seg));
		cm = (struct cmsghdr *)(c->buf + len);
	}
	if (txtime_ns) {
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_TXTIME;
		cm->cmsg_len = CMSG_LEN(sizeof(txtime_ns));
		memcpy(CMSG_DATA(cm), &txtime_ns, sizeof(txtime_ns));
		len += CMSG_SPACE(sizeof(txtime_ns));
	}
	h->msg_control = c->buf;
	h->msg_controllen = len;
}

/* What to do after the kernel refused a message. */
enum uw_be_action {
	UW_BE_RETRY,	/* send the same message again */
	UW_BE_DROP,	/* the kernel would have refused it too: count, move on */
	UW_BE_UNGSO,	/* resend the run as plain datagrams */
	/* the socket is full: this message and the socket's later ones are
	 * held (uw_be_hold), for the core to send when there is room */
	UW_BE_PARK,
};

/* Retry state of one message; reset after every success. */
struct uw_retry {
	unsigned int nobufs;
	bool async_retried;
};

enum uw_be_action uw_be_on_error(struct uw_backend *be, struct uw_retry *rs,
				 struct uw_sock *s, int fd, int err, bool gso);
/* A GSO run refused with EINVAL: EMSGSIZE if the path no longer carries
 * its segment size (the path MTU shrank), which is no refusal of GSO
 * itself; EINVAL otherwise. */
int uw_be_gso_einval(struct uw_backend *be, struct uw_run *r);
/* The first datagrams..., n of them, were refused for good. */
void uw_be_drop(struct uw_run *r, const struct iovec *iov, uint32_t n);
/* The socket is full from datagram first of run r on: that run's rest and
 * the runs after it up to end (the socket's) are held, not sent. */
void uw_be_hold(struct uw_run *r, uint32_t first, struct uw_run *end);

uint32_t uw_route_max_segment(const struct uw_sys *sys, struct uw_sock *s,
			      const struct uw_addr *dest);
void uw_route_forget(struct uw_sock *s, const struct uw_addr *dest);

#endif
