/* SPDX-License-Identifier: MIT */
/*
 * The packet backend's helpers: route, link and neighbour resolution over
 * rtnetlink (backend/resolve.c), the TX ring (backend/ring.c) and the
 * Internet checksum.
 */
#ifndef UW_PACKET_H
#define UW_PACKET_H

#include <netinet/in.h>
#include <string.h>

#include "uw.h"

/* Why a datagram went through the application's socket instead of the
 * ring (stats: packet.fallback[]). */
enum uw_pkt_fb {
	UW_PKT_FB_NO_CAP,	/* no CAP_NET_RAW: mmsg for everything */
	UW_PKT_FB_LOCAL,	/* local or loopback destination */
	UW_PKT_FB_BROADCAST,	/* broadcast route */
	UW_PKT_FB_OVERSIZE,	/* larger than the path MTU: needs fragments */
	UW_PKT_FB_TUNNEL,	/* route through an IP tunnel device */
	UW_PKT_FB_LINK,		/* link type the ring does not build headers for */
	UW_PKT_FB_NO_RING,	/* the device refused a ring */
	UW_PKT_FB_UNRESOLVED,	/* neighbour not (yet) resolved */
	UW_PKT_FB_MC_LOOP,	/* multicast looped back to a local member */
	UW_PKT_FB_V4MAPPED,	/* IPv4-mapped destination on an IPv6 socket */
	UW_PKT_FB_ROUTE,	/* unreachable, prohibited, or lookup failed */
	UW_PKT_FB_OPTIONS,	/* IP options or similar on the socket */
	UW_PKT_FB_NEIGH_TRIGGER, /* first datagram sent to refresh a neighbour */
	UW_PKT_FB_SHAPER,	/* the device's root qdisc shapes (tbf, htb...):
				 * the sockets' send buffers pace the sender */
	UW_PKT_FB__COUNT
};

extern const char *const uw_pkt_fb_name[UW_PKT_FB__COUNT];

union uw_ip {
	struct in_addr v4;
	struct in6_addr v6;
	unsigned char b[16];
};

/* ---- rtnetlink (backend/resolve.c) ------------------------------------- */

struct uw_rt {
	const struct uw_sys *sys;
	struct uw_stats *stats;
	int fd;			/* requests */
	int ev_fd;		/* neighbour, route, link, address events */
	uint32_t seq, portid;
	char *buf;		/* one receive buffer */
};

struct uw_route {
	uint8_t type;		/* RTN_* */
	int oif;
	union uw_ip prefsrc, gateway;
	bool has_prefsrc, has_gateway;
	int gw_family;		/* RTA_VIA may name an IPv6 gateway for IPv4 */
	uint32_t mtu;		/* route MTU metric (PMTU exception), 0: none */
};

struct uw_link {
	unsigned short type;	/* ARPHRD_* */
	unsigned int flags;	/* IFF_* */
	uint32_t mtu;
	unsigned char addr[8];
	unsigned int addr_len;
	char kind[16];		/* IFLA_INFO_KIND, "" if none */
};

int uw_rt_open(struct uw_rt *rt, const struct uw_sys *sys, struct uw_stats *stats);
void uw_rt_close(struct uw_rt *rt);
/* The route the kernel would take from src (NULL: any) to dst. */
int uw_rt_route(struct uw_rt *rt, int family, const union uw_ip *dst, const union uw_ip *src,
		int oif, uint32_t mark, uint16_t sport, uint16_t dport, struct uw_route *out);
int uw_rt_link(struct uw_rt *rt, int ifindex, struct uw_link *out);
/* The neighbour entry; -ENOENT when there is none. */
int uw_rt_neigh(struct uw_rt *rt, int family, int ifindex, const union uw_ip *addr,
		unsigned char mac[6], uint16_t *state);
/* Drain the event socket; true if anything relevant changed since. */
bool uw_rt_changed(struct uw_rt *rt);

/* ---- checksums ---------------------------------------------------------- */

/* Sum of 16-bit words in memory order, unfolded (64-bit accumulator). */
static inline uint64_t uw_csum_add(uint64_t sum, const void *p, size_t len)
{
	const unsigned char *b = p;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, b, 8);
		sum += (uint32_t)w;
		sum += w >> 32;
		b += 8;
		len -= 8;
	}
	if (len >= 4) {
		uint32_t w;

		memcpy(&w, b, 4);
		sum += w;
		b += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t w;

		memcpy(&w, b, 2);
		sum += w;
		b += 2;
		len -= 2;
	}
	if (len)	/* the odd byte, padded with a zero after it */
		sum += *b;
	return sum;
}

static inline uint16_t uw_csum_fold(uint64_t sum)
{
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffffu) + (sum >> 16);
	sum = (sum & 0xffffu) + (sum >> 16);
	return (uint16_t)sum;
}

#endif
