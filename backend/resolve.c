/* SPDX-License-Identifier: MIT */
/*
 * Route, link and neighbour lookups over rtnetlink, for the packet backend.
 *
 * Messages are built and parsed with libmnl; the sockets are the library's
 * own and go through struct uw_sys (libmnl's socket helpers would call the
 * libc functions this library interposes). Requests are synchronous and
 * made from the flushing thread only; a second socket subscribed to
 * neighbour, route, link and address events tells the backend when what it
 * cached may be stale.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "packet.h"

#define UW_RT_BUF	16384u

static int nl_socket(const struct uw_sys *sys, unsigned int groups, uint32_t *portid)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = groups };
	socklen_t len = sizeof(sa);
	int fd = sys->socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (groups ? SOCK_NONBLOCK : 0),
			     NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (sys->bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    (portid && sys->getsockname(fd, (struct sockaddr *)&sa, &len))) {
		int err = -errno;

		sys->close(fd);
		return err;
	}
	if (portid) {
		struct timeval tv = { 1, 0 };	/* the kernel answers at once */

		*portid = sa.nl_pid;
		sys->setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

int uw_rt_open(struct uw_rt *rt, const struct uw_sys *sys, struct uw_stats *stats)
{
	int fd;

	memset(rt, 0, sizeof(*rt));
	rt->sys = sys;
	rt->stats = stats;
	rt->fd = rt->ev_fd = -1;
	rt->buf = malloc(UW_RT_BUF);
	if (!rt->buf)
		return -ENOMEM;
	fd = nl_socket(sys, 0, &rt->portid);
	if (fd < 0)
		goto fail;
	rt->fd = fd;
	fd = nl_socket(sys, RTMGRP_NEIGH | RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE |
			    RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, NULL);
	if (fd < 0)
		goto fail;
	rt->ev_fd = fd;
	rt->seq = 1;
	return 0;
fail:
	uw_rt_close(rt);
	return fd;
}

void uw_rt_close(struct uw_rt *rt)
{
	if (rt->fd >= 0)
		rt->sys->close(rt->fd);
	if (rt->ev_fd >= 0)
		rt->sys->close(rt->ev_fd);
	free(rt->buf);
	rt->buf = NULL;
	rt->fd = rt->ev_fd = -1;
}

/* Send nlh and run cb over the answer. */
static int transact(struct uw_rt *rt, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	uint32_t seq = ++rt->seq;
	int rc;

	nlh->nlmsg_seq = seq;
	uw_stat_add(&rt->stats->pkt.netlink_queries, 1);
	if (rt->sys->sendto(rt->fd, nlh, nlh->nlmsg_len, 0, NULL, 0) < 0)
		return -errno;
	for (;;) {	/* one answer: the message or an error */
		ssize_t n = recv(rt->fd, rt->buf, UW_RT_BUF, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		errno = 0;
		rc = mnl_cb_run(rt->buf, (size_t)n, seq, rt->portid, cb, data);
		if (rc == MNL_CB_ERROR && errno == EPROTO)
			continue;	/* the late answer to an earlier request */
		if (rc == MNL_CB_ERROR)
			return errno ? -errno : -EIO;
		break;
	}
	return 0;
}

/* ---- routes --------------------------------------------------------------- */

struct route_ctx {
	struct uw_route *out;
	int family;
};

static void copy_ip(union uw_ip *ip, const struct nlattr *a)
{
	size_t n = mnl_attr_get_payload_len(a);

	memset(ip, 0, sizeof(*ip));
	memcpy(ip, mnl_attr_get_payload(a), n < sizeof(*ip) ? n : sizeof(*ip));
}

static int route_metric_cb(const struct nlattr *a, void *data)
{
	struct uw_route *r = data;

	if (mnl_attr_get_type(a) == RTAX_MTU && mnl_attr_get_payload_len(a) >= 4)
		r->mtu = mnl_attr_get_u32(a);
	return MNL_CB_OK;
}

static int route_attr_cb(const struct nlattr *a, void *data)
{
	struct route_ctx *c = data;
	struct uw_route *r = c->out;

	switch (mnl_attr_get_type(a)) {
	case RTA_OIF:
		r->oif = (int)mnl_attr_get_u32(a);
		break;
	case RTA_PREFSRC:
		copy_ip(&r->prefsrc, a);
		r->has_prefsrc = true;
		break;
	case RTA_GATEWAY:
		copy_ip(&r->gateway, a);
		r->has_gateway = true;
		r->gw_family = c->family;
		break;
	case RTA_VIA:
		if (mnl_attr_get_payload_len(a) >= sizeof(struct rtvia)) {
			const struct rtvia *v = mnl_attr_get_payload(a);
			size_t n = mnl_attr_get_payload_len(a) - sizeof(*v);

			memset(&r->gateway, 0, sizeof(r->gateway));
			memcpy(&r->gateway, v->rtvia_addr, n < 16 ? n : 16);
			r->gw_family = v->rtvia_family;
			r->has_gateway = true;
		}
		break;
	case RTA_METRICS:
		mnl_attr_parse_nested(a, route_metric_cb, r);
		break;
	}
	return MNL_CB_OK;
}

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
	struct route_ctx *c = data;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_type != RTM_NEWROUTE)
		return MNL_CB_OK;
	c->out->type = rtm->rtm_type;
	return mnl_attr_parse(nlh, sizeof(*rtm), route_attr_cb, c);
}

int uw_rt_route(struct uw_rt *rt, int family, const union uw_ip *dst, const union uw_ip *src,
		int oif, uint32_t mark, uint16_t sport, uint16_t dport, struct uw_route *out)
{
	char buf[512];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	size_t alen = family == AF_INET ? 4 : 16;
	struct route_ctx c = { out, family };

	memset(out, 0, sizeof(*out));
	nlh->nlmsg_type = RTM_GETROUTE;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	rtm->rtm_family = (unsigned char)family;
	rtm->rtm_dst_len = (unsigned char)(alen * 8);
	mnl_attr_put(nlh, RTA_DST, alen, dst);
	if (src) {
		rtm->rtm_src_len = (unsigned char)(alen * 8);
		mnl_attr_put(nlh, RTA_SRC, alen, src);
	}
	if (oif)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)oif);
	if (mark)
		mnl_attr_put_u32(nlh, RTA_MARK, mark);
	mnl_attr_put_u8(nlh, RTA_IP_PROTO, IPPROTO_UDP);
	mnl_attr_put_u16(nlh, RTA_SPORT, sport);	/* network order, as given */
	mnl_attr_put_u16(nlh, RTA_DPORT, dport);
	return transact(rt, nlh, route_cb, &c);
}

/* ---- links ---------------------------------------------------------------- */

static int linkinfo_cb(const struct nlattr *a, void *data)
{
	struct uw_link *l = data;

	if (mnl_attr_get_type(a) == IFLA_INFO_KIND)
		snprintf(l->kind, sizeof(l->kind), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

static int link_attr_cb(const struct nlattr *a, void *data)
{
	struct uw_link *l = data;
	size_t n;

	switch (mnl_attr_get_type(a)) {
	case IFLA_MTU:
		l->mtu = mnl_attr_get_u32(a);
		break;
	case IFLA_ADDRESS:
		n = mnl_attr_get_payload_len(a);
		l->addr_len = n < sizeof(l->addr) ? (unsigned int)n : sizeof(l->addr);
		memcpy(l->addr, mnl_attr_get_payload(a), l->addr_len);
		break;
	case IFLA_LINKINFO:
		mnl_attr_parse_nested(a, linkinfo_cb, l);
		break;
	}
	return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct uw_link *l = data;
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_type != RTM_NEWLINK)
		return MNL_CB_OK;
	l->type = ifm->ifi_type;
	l->flags = ifm->ifi_flags;
	return mnl_attr_parse(nlh, sizeof(*ifm), link_attr_cb, l);
}

int uw_rt_link(struct uw_rt *rt, int ifindex, struct uw_link *out)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));

	memset(out, 0, sizeof(*out));
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	return transact(rt, nlh, link_cb, out);
}

/* ---- neighbours ----------------------------------------------------------- */

struct neigh_ctx {
	unsigned char *mac;
	uint16_t state;
	bool has_mac;
};

static int neigh_attr_cb(const struct nlattr *a, void *data)
{
	struct neigh_ctx *c = data;

	if (mnl_attr_get_type(a) == NDA_LLADDR && mnl_attr_get_payload_len(a) == 6) {
		memcpy(c->mac, mnl_attr_get_payload(a), 6);
		c->has_mac = true;
	}
	return MNL_CB_OK;
}

static int neigh_cb(const struct nlmsghdr *nlh, void *data)
{
	struct neigh_ctx *c = data;
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_type != RTM_NEWNEIGH)
		return MNL_CB_OK;
	c->state = ndm->ndm_state;
	return mnl_attr_parse(nlh, sizeof(*ndm), neigh_attr_cb, c);
}

int uw_rt_neigh(struct uw_rt *rt, int family, int ifindex, const union uw_ip *addr,
		unsigned char mac[6], uint16_t *state)
{
	char buf[256];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	struct neigh_ctx c = { .mac = mac };
	int rc;

	nlh->nlmsg_type = RTM_GETNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ndm->ndm_family = (unsigned char)family;
	ndm->ndm_ifindex = ifindex;
	mnl_attr_put(nlh, NDA_DST, family == AF_INET ? 4 : 16, addr);
	rc = transact(rt, nlh, neigh_cb, &c);
	if (rc)
		return rc;
	*state = c.state;
	return c.has_mac ? 0 : -ENOENT;
}

/* ---- events --------------------------------------------------------------- */

bool uw_rt_changed(struct uw_rt *rt)
{
	bool changed = false;

	for (;;) {
		ssize_t n = recv(rt->ev_fd, rt->buf, UW_RT_BUF, MSG_DONTWAIT);

		if (n > 0) {
			changed = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* ENOBUFS: events were lost, so assume a change */
		if (n < 0 && errno == ENOBUFS)
			changed = true;
		return changed;
	}
}
