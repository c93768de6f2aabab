/* SPDX-License-Identifier: MIT */
/*
 * Device offloads and qdiscs for `udpweave check`.
 *
 * The kernel sends a UDP GSO run only as CHECKSUM_PARTIAL: the egress
 * device must offload the TX checksum (NETIF_F_HW_CSUM, or IP_CSUM for
 * IPv4 / IPV6_CSUM for IPv6), else the send fails with EIO. Whether the
 * device also segments (NETIF_F_GSO_UDP_L4, "tx-udp-segmentation") only
 * decides where segmentation happens: in the NIC or in software just
 * before the driver.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/ethtool.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "netdev.h"

#ifndef MNL_SOCKET_DUMP_SIZE
#define MNL_SOCKET_DUMP_SIZE 32768	/* libmnl >= 1.0.5 has it */
#endif

/* ------------------------------------------------------------- ethtool */

static int ethtool(int sockfd, const char *ifname, void *cmd)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = cmd;
	return ioctl(sockfd, SIOCETHTOOL, &ifr) ? -errno : 0;
}

static int feature_count(int sockfd, const char *ifname)
{
	struct {
		struct ethtool_sset_info hdr;
		uint32_t count;
	} info = { .hdr = { .cmd = ETHTOOL_GSSET_INFO, .sset_mask = 1ull << ETH_SS_FEATURES } };
	int ret = ethtool(sockfd, ifname, &info);

	if (ret)
		return ret;
	if (!(info.hdr.sset_mask & (1ull << ETH_SS_FEATURES)) || !info.count)
		return -EOPNOTSUPP;
	return (int)info.count;
}

static struct ethtool_gstrings *feature_names(int sockfd, const char *ifname, int n)
{
	struct ethtool_gstrings *s = calloc(1, sizeof(*s) + (size_t)n * ETH_GSTRING_LEN);

	if (!s)
		return NULL;
	s->cmd = ETHTOOL_GSTRINGS;
	s->string_set = ETH_SS_FEATURES;
	s->len = (uint32_t)n;
	if (ethtool(sockfd, ifname, s)) {
		free(s);
		return NULL;
	}
	return s;
}

static struct ethtool_gfeatures *feature_bits(int sockfd, const char *ifname, int n)
{
	uint32_t blocks = ((uint32_t)n + 31) / 32;
	struct ethtool_gfeatures *g = calloc(1, sizeof(*g) + blocks * sizeof(g->features[0]));

	if (!g)
		return NULL;
	g->cmd = ETHTOOL_GFEATURES;
	g->size = blocks;
	if (ethtool(sockfd, ifname, g)) {
		free(g);
		return NULL;
	}
	return g;
}

static bool feature_active(const struct ethtool_gstrings *names,
			   const struct ethtool_gfeatures *bits, const char *name)
{
	for (uint32_t i = 0; i < names->len; i++) {
		const char *s = (const char *)names->data + i * ETH_GSTRING_LEN;

		if (!strncmp(s, name, ETH_GSTRING_LEN))
			return bits->features[i / 32].active & (1u << (i % 32));
	}
	return false;
}

/* The coarse answer of older drivers: any TX checksum offload at all. */
static int txcsum_only(int sockfd, const char *ifname, struct uw_netdev_features *f)
{
	struct ethtool_value v = { .cmd = ETHTOOL_GTXCSUM };
	int ret = ethtool(sockfd, ifname, &v);

	if (ret)
		return ret;
	f->hw_csum = v.data != 0;
	return 0;
}

/* The active offloads of ifname; sockfd is any socket (for the ioctl). */
int uw_netdev_features(int sockfd, const char *ifname, struct uw_netdev_features *f)
{
	struct ethtool_gstrings *names;
	struct ethtool_gfeatures *bits = NULL;
	int n;

	memset(f, 0, sizeof(*f));
	n = feature_count(sockfd, ifname);
	if (n < 0)
		return txcsum_only(sockfd, ifname, f);
	names = feature_names(sockfd, ifname, n);
	if (names)
		bits = feature_bits(sockfd, ifname, n);
	if (!names || !bits) {
		free(names);
		free(bits);
		return txcsum_only(sockfd, ifname, f);
	}
	f->hw_csum = feature_active(names, bits, "tx-checksum-ip-generic");
	f->ip_csum = feature_active(names, bits, "tx-checksum-ipv4");
	f->ipv6_csum = feature_active(names, bits, "tx-checksum-ipv6");
	f->udp_seg = feature_active(names, bits, "tx-udp-segmentation");
	f->udp_seg_known = true;
	free(names);
	free(bits);
	return 0;
}

/* ------------------------------------------------------------- qdiscs */

static int qdisc_attr(const struct nlattr *attr, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(attr);

	if (mnl_attr_type_valid(attr, TCA_MAX) < 0)
		return MNL_CB_OK;
	if (type == TCA_KIND && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0)
		return MNL_CB_ERROR;
	tb[type] = attr;
	return MNL_CB_OK;
}

static int qdisc_add(struct uw_qdisc_list *l, const struct tcmsg *t, const char *kind)
{
	struct uw_qdisc *q;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;

		q = realloc(l->q, cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		l->q = q;
		l->cap = cap;
	}
	q = &l->q[l->n++];
	q->ifindex = (unsigned int)t->tcm_ifindex;
	q->parent = t->tcm_parent;
	q->handle = t->tcm_handle;
	snprintf(q->kind, sizeof(q->kind), "%s", kind);
	return 0;
}

static int qdisc_msg(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[TCA_MAX + 1] = { 0 };
	const struct tcmsg *t = mnl_nlmsg_get_payload(nlh);

	if (mnl_attr_parse(nlh, sizeof(*t), qdisc_attr, tb) < 0 || !tb[TCA_KIND])
		return MNL_CB_OK;
	return qdisc_add(data, t, mnl_attr_get_str(tb[TCA_KIND])) ? MNL_CB_ERROR : MNL_CB_OK;
}

static int qdisc_request(struct mnl_socket *nl, uint32_t seq)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct tcmsg *t;

	nlh->nlmsg_type = RTM_GETQDISC;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	t = mnl_nlmsg_put_extra_header(nlh, sizeof(*t));
	t->tcm_family = AF_UNSPEC;
	return mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0 ? -errno : 0;
}

/* Every qdisc of every device (RTM_GETQDISC dump). */
int uw_qdisc_dump(struct uw_qdisc_list *l)
{
	char buf[MNL_SOCKET_DUMP_SIZE];
	struct mnl_socket *nl;
	uint32_t seq = (uint32_t)time(NULL), portid;
	ssize_t n;
	int ret;

	memset(l, 0, sizeof(*l));
	nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	ret = qdisc_request(nl, seq);
	while (!ret) {
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0) {
			ret = -errno;
			break;
		}
		ret = mnl_cb_run(buf, (size_t)n, seq, portid, qdisc_msg, l);
		if (ret < 0)
			ret = -(errno ? errno : EPROTO);
		else if (ret == MNL_CB_STOP)
			break;
		else
			ret = 0;
	}
out:
	mnl_socket_close(nl);
	if (ret)
		uw_qdisc_list_free(l);
	return ret > 0 ? 0 : ret;
}

void uw_qdisc_list_free(struct uw_qdisc_list *l)
{
	free(l->q);
	memset(l, 0, sizeof(*l));
}
