/* SPDX-License-Identifier: MIT */
/* What `udpweave check` asks of network devices: offload features
 * (ethtool ioctls) and root qdiscs (an rtnetlink dump through libmnl). */
#ifndef UW_CLI_NETDEV_H
#define UW_CLI_NETDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uw_netdev_features {
	bool hw_csum;		/* tx-checksum-ip-generic */
	bool ip_csum;		/* tx-checksum-ipv4 */
	bool ipv6_csum;		/* tx-checksum-ipv6 */
	bool udp_seg;		/* tx-udp-segmentation: the device segments */
	bool udp_seg_known;	/* false: only ETHTOOL_GTXCSUM answered */
};

int uw_netdev_features(int sockfd, const char *ifname, struct uw_netdev_features *f);

struct uw_qdisc {
	unsigned int ifindex;
	uint32_t parent;
	uint32_t handle;
	char kind[32];
};

struct uw_qdisc_list {
	struct uw_qdisc *q;
	size_t n, cap;
};

int uw_qdisc_dump(struct uw_qdisc_list *l);
void uw_qdisc_list_free(struct uw_qdisc_list *l);

#endif
