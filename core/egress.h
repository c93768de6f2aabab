/* SPDX-License-Identifier: MIT */
/*
 * The egress of a destination and whether its qdisc releases packets at
 * their departure times (fq, which honours SO_TXTIME and pacing rates):
 * rtnetlink asked directly (RTM_GETROUTE, then an RTM_GETQDISC dump), no
 * library. Shared by the library (through struct uw_sys) and `udpweave
 * check`; it makes its system calls through the functions it is given.
 */
#ifndef UW_EGRESS_H
#define UW_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct uw_nl_ops {
	int (*socket)(int domain, int type, int protocol);
	ssize_t (*sendto)(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *to, socklen_t tolen);
	ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
	int (*close)(int fd);
};

struct uw_egress {
	unsigned int ifindex;		/* the route's output device */
	char root[16];			/* its root qdisc's kind, "" none */
	unsigned int children;		/* of a multiqueue root (mq, mqprio) */
	unsigned int children_fq;
	bool fq;			/* departure times are honoured */
	bool shaper;			/* a rate-limiting root (tbf, htb...) */
};

/* Fills e for dest (AF_INET or AF_INET6). Returns 0 or -errno. */
int uw_egress_lookup(const struct uw_nl_ops *ops, const struct sockaddr *dest,
		     struct uw_egress *e);

/* 1 when some interface's root qdisc is a shaper, 0 when none, -errno. */
int uw_egress_any_shaper(const struct uw_nl_ops *ops);

#endif
