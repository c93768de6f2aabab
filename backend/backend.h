/* SPDX-License-Identifier: MIT */
/* Helpers shared by the backends. */
#ifndef UW_BACKEND_H
#define UW_BACKEND_H

#include "uw.h"

/* What to do after the kernel refused a message. */
enum uw_be_action {
	UW_BE_RETRY,	/* send the same message again */
	UW_BE_DROP,	/* the kernel would have refused it too: count, move on */
	UW_BE_UNGSO,	/* resend the run as plain datagrams */
};

/* Retry state of one message; reset after every success. */
struct uw_retry {
	unsigned int again_ms;
	unsigned int nobufs;
	bool async_retried;
};

enum uw_be_action uw_be_on_error(struct uw_backend *be, struct uw_retry *rs,
				 struct uw_sock *s, int fd, int err, bool gso);
/* The first datagrams..., n of them, were refused for good. */
void uw_be_drop(struct uw_run *r, const struct iovec *iov, uint32_t n);

uint32_t uw_route_max_segment(const struct uw_sys *sys, struct uw_sock *s,
			      const struct uw_addr *dest);
void uw_route_forget(struct uw_sock *s, const struct uw_addr *dest);

#endif
