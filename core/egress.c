/* SPDX-License-Identifier: MIT */
/*
 * Which qdisc a destination's packets meet (see egress.h): the route's
 * output interface from RTM_GETROUTE, then every qdisc of that interface
 * from an RTM_GETQDISC dump. Departure times are honoured when the root
 * is fq, or a multiqueue root (mq, mqprio) has fq on every queue.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"

#define NL_BUF		16384
#define MAX_QDISCS	256

struct qd {
	uint32_t parent, handle;
	char kind[16];
};

static int nl_open(const struct uw_nl_ops *ops)
{
	int fd = ops->socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	return fd < 0 ? -errno : fd;
}

static int nl_send(const struct uw_nl_ops *ops, int fd, void *msg, size_t len)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };

	if (ops->sendto(fd, msg, len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	return 0;
}

static void add_attr(struct nlmsghdr *h, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));

	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* One reply's messages: cb per message; 1 at NLMSG_DONE or an answer, 0
 * to read on, -errno. */
typedef int (*nl_cb)(const struct nlmsghdr *h, void *arg);

static int nl_read(const struct uw_nl_ops *ops, int fd, char *buf, uint32_t seq,
		   nl_cb cb, void *arg)
{
	for (;;) {
		ssize_t n = ops->recv(fd, buf, NL_BUF, 0);
		int len;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		len = (int)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len);
		     h = NLMSG_NEXT(h, len)) {
			int ret;

			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return 1;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error ? e->error : 1;
			}
			ret = cb(h, arg);
			if (ret)
				return ret;
		}
	}
}

static int route_msg(const struct nlmsghdr *h, void *arg)
{
	const struct rtmsg *rt = NLMSG_DATA(h);
	int len = (int)RTM_PAYLOAD(h);

	if (h->nlmsg_type != RTM_NEWROUTE)
		return 0;
	for (const struct rtattr *a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == RTA_OIF) {
			*(unsigned int *)arg = *(const uint32_t *)RTA_DATA(a);
			return 1;
		}
	}
	return -ENETUNREACH;
}

static int route_oif(const struct uw_nl_ops *ops, int fd, char *buf,
		     const struct sockaddr *dest, unsigned int *oif)
{
	struct {
		struct nlmsghdr h;
		struct rtmsg r;
		char attrs[64];
	} req;
	int family = dest->sa_family, ret;

	memset(&req, 0, sizeof(req));
	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.r));
	req.h.nlmsg_type = RTM_GETROUTE;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.h.nlmsg_seq = 1;
	req.r.rtm_family = (unsigned char)family;
	if (family == AF_INET) {
		req.r.rtm_dst_len = 32;
		add_attr(&req.h, RTA_DST, &((const struct sockaddr_in *)dest)->sin_addr, 4);
	} else if (family == AF_INET6) {
		req.r.rtm_dst_len = 128;
		add_attr(&req.h, RTA_DST, &((const struct sockaddr_in6 *)dest)->sin6_addr, 16);
	} else {
		return -EAFNOSUPPORT;
	}
	ret = nl_send(ops, fd, &req, req.h.nlmsg_len);
	if (ret)
		return ret;
	*oif = 0;
	ret = nl_read(ops, fd, buf, 1, route_msg, oif);
	if (ret < 0)
		return ret;
	return *oif ? 0 : -ENETUNREACH;
}

struct qdisc_list {
	unsigned int ifindex;
	bool all;			/* every interface's, not ifindex's */
	struct qd q[MAX_QDISCS];
	unsigned int n;
};

static int qdisc_msg(const struct nlmsghdr *h, void *arg)
{
	struct qdisc_list *l = arg;
	const struct tcmsg *t = NLMSG_DATA(h);
	int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*t)));
	struct qd *q;

	if (h->nlmsg_type != RTM_NEWQDISC || l->n == MAX_QDISCS ||
	    (!l->all && (unsigned int)t->tcm_ifindex != l->ifindex))
		return 0;
	q = &l->q[l->n];
	memset(q, 0, sizeof(*q));
	q->parent = t->tcm_parent;
	q->handle = t->tcm_handle;
	for (const struct rtattr *a = (const struct rtattr *)((const char *)t +
							      NLMSG_ALIGN(sizeof(*t)));
	     RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == TCA_KIND) {
			size_t n = RTA_PAYLOAD(a);

			if (n >= sizeof(q->kind))
				n = sizeof(q->kind) - 1;
			memcpy(q->kind, RTA_DATA(a), n);
			q->kind[n] = '\0';
		}
	}
	l->n++;
	return 0;
}

static int qdisc_dump(const struct uw_nl_ops *ops, int fd, char *buf, struct qdisc_list *l)
{
	struct {
		struct nlmsghdr h;
		struct tcmsg t;
	} req;
	int ret;

	memset(&req, 0, sizeof(req));
	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.t));
	req.h.nlmsg_type = RTM_GETQDISC;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.h.nlmsg_seq = 2;
	req.t.tcm_family = AF_UNSPEC;
	req.t.tcm_ifindex = (int)l->ifindex;
	ret = nl_send(ops, fd, &req, req.h.nlmsg_len);
	if (ret)
		return ret;
	ret = nl_read(ops, fd, buf, 2, qdisc_msg, l);
	return ret < 0 ? ret : 0;
}

/* A root that holds packets back to a rate, in a queue of bounded bytes
 * or packets: a GSO run is one packet to it, or segmented at once, and
 * the socket's send buffer then no longer paces the sender. */
static bool is_shaper(const char *kind)
{
	static const char *const shapers[] = { "tbf", "htb", "hfsc", "cbq", "cake", "netem",
					       "taprio", "drr", "qfq", "ets" };

	for (size_t i = 0; i < sizeof(shapers) / sizeof(shapers[0]); i++)
		if (!strcmp(kind, shapers[i]))
			return true;
	return false;
}

static void judge(const struct qdisc_list *l, struct uw_egress *e)
{
	const struct qd *root = NULL;

	for (unsigned int i = 0; i < l->n && !root; i++)
		if (l->q[i].parent == TC_H_ROOT)
			root = &l->q[i];
	if (!root)
		return;
	memcpy(e->root, root->kind, sizeof(e->root));
	e->shaper = is_shaper(root->kind);
	if (!strcmp(root->kind, "fq")) {
		e->fq = true;
		return;
	}
	for (unsigned int i = 0; i < l->n; i++) {
		const struct qd *q = &l->q[i];

		if (q == root || q->parent == TC_H_INGRESS ||
		    TC_H_MAJ(q->parent) != TC_H_MAJ(root->handle))
			continue;
		e->children++;
		e->children_fq += !strcmp(q->kind, "fq");
	}
	e->fq = e->children && e->children_fq == e->children;
}

int uw_egress_lookup(const struct uw_nl_ops *ops, const struct sockaddr *dest,
		     struct uw_egress *e)
{
	struct qdisc_list *l = NULL;
	char *buf = malloc(NL_BUF);
	int fd = -1, ret;

	memset(e, 0, sizeof(*e));
	if (!buf)
		return -ENOMEM;
	fd = nl_open(ops);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = route_oif(ops, fd, buf, dest, &e->ifindex);
	if (ret)
		goto out;
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	l->ifindex = e->ifindex;
	ret = qdisc_dump(ops, fd, buf, l);
	if (!ret)
		judge(l, e);
out:
	if (fd >= 0)
		ops->close(fd);
	free(l);
	free(buf);
	return ret;
}

int uw_egress_any_shaper(const struct uw_nl_ops *ops)
{
	struct qdisc_list *l = calloc(1, sizeof(*l));
	char *buf = malloc(NL_BUF);
	int fd = -1, ret = -ENOMEM;

	if (!l || !buf)
		goto out;
	fd = nl_open(ops);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	l->all = true;
	ret = qdisc_dump(ops, fd, buf, l);
	for (unsigned int i = 0; !ret && i < l->n; i++)
		if (l->q[i].parent == TC_H_ROOT && is_shaper(l->q[i].kind))
			ret = 1;
out:
	if (fd >= 0)
		ops->close(fd);
	free(l);
	free(buf);
	return ret;
}
