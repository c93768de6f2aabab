/* SPDX-License-Identifier: MIT */
/*
 * The packet backend: every queued datagram of the process, whatever its
 * socket and destination, is written into an AF_PACKET TX ring as a whole
 * frame (prebuilt Ethernet + IP + UDP header per flow, lengths, IPv4 ID and
 * checksums patched per packet), frames of different flows alternating,
 * and the ring is handed to the kernel with one kick per batch.
 *
 * A flow's header is built from the application's socket (bound address
 * and port, TTL/hop limit, TOS/traffic class, DF, SO_MARK, SO_PRIORITY,
 * bound device, multicast interface) and from what the kernel says over
 * rtnetlink (route, source address, device, neighbour). It is rebuilt when
 * an option changes, when the kernel reports a route/neighbour/link/address
 * change, and at least every UW_PKT_REVALIDATE_NS.
 *
 * What the ring cannot carry goes through the application's own socket
 * with the mmsg backend, counted by reason (enum uw_pkt_fb): local and
 * loopback destinations (the kernel drops injected frames with a local
 * source), broadcast, datagrams above the path MTU, tunnels, link types
 * without a header template, unresolved neighbours (the kernel resolves
 * them from the socket's first datagram), a multicast group a local socket
 * would receive through the loop, and everything when the process lacks
 * CAP_NET_RAW. A flow goes one way or the other for a whole batch, so its
 * order holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/virtio_net.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <unistd.h>

#include "backend.h"
#include "packet.h"
#include "ring.h"
#include "trace.h"

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4	5	/* linux/virtio_net.h, 6.2 */
#endif

#define UW_PKT_CACHE		1024u		/* flow entries, a power of two */
#define UW_PKT_MAX_RINGS	8u
#define UW_PKT_REVALIDATE_NS	(1000ull * 1000000ull)
#define UW_PKT_RESOLVE_WAIT_NS	(5ull * 1000000ull)
#define UW_PKT_MAX_HDR		(14u + 40u + 8u)

const char *const uw_pkt_fb_name[UW_PKT_FB__COUNT] = {
	[UW_PKT_FB_NO_CAP]	= "no_cap_net_raw",
	[UW_PKT_FB_LOCAL]	= "local",
	[UW_PKT_FB_BROADCAST]	= "broadcast",
	[UW_PKT_FB_OVERSIZE]	= "above_mtu",
	[UW_PKT_FB_TUNNEL]	= "tunnel",
	[UW_PKT_FB_LINK]	= "link_type",
	[UW_PKT_FB_SHAPER]	= "shaper",
	[UW_PKT_FB_NO_RING]	= "no_ring",
	[UW_PKT_FB_UNRESOLVED]	= "unresolved_neighbour",
	[UW_PKT_FB_MC_LOOP]	= "multicast_loop",
	[UW_PKT_FB_V4MAPPED]	= "v4_mapped",
	[UW_PKT_FB_ROUTE]	= "route",
	[UW_PKT_FB_OPTIONS]	= "ip_options",
	[UW_PKT_FB_NEIGH_TRIGGER] = "neighbour_refresh",
};

/* A ring per (device, mark, priority, protocol for headerless devices). */
enum { UW_RING_OPENING = 1, UW_RING_READY, UW_RING_REFUSED };

struct pkt_ring {
	struct uw_ring r;
	bool open, failed, opening;	/* as the flushing thread knows it */
	_Atomic int setup;		/* set by the thread opening it */
	struct uw_ring_params want;
	const struct uw_sys *sys;
	uint32_t *slot_run;	/* per frame: run of the current batch, seg */
	uint32_t *slot_seg;
	uint32_t *slot_n;	/* datagrams in the frame (GSO) */
};

/* What the backend knows about one flow (socket, destination). */
struct pkt_flow {
	bool used;
	uint8_t fb;		/* UW_PKT_FB__COUNT: through the ring */
	bool refresh;		/* send one datagram through the socket first */
	uint32_t sock_id, opt_gen, epoch;
	uint64_t expiry_ns;
	struct uw_addr dest;
	struct pkt_ring *ring;
	int family, ifindex;
	bool has_nexthop;	/* unicast over Ethernet: a neighbour to watch */
	union uw_ip nexthop;
	uint16_t l2_len, l3_len, hdr_len;
	uint16_t ip_id;
	uint32_t max_payload;
	uint64_t ip_sum;	/* IPv4 header template, lengths and ID zero */
	uint64_t pseudo_sum;	/* source, destination, protocol */
	uint64_t port_sum;	/* the two ports */
	unsigned char hdr[UW_PKT_MAX_HDR];
};

/* A flow's datagrams in this batch, for the round-robin. */
struct pkt_lane {
	struct pkt_flow *e;
	uint32_t first, last;	/* runs: first run index, last run index */
	uint32_t run, seg;	/* cursor */
	uint32_t next_lane;
	bool ring;
	bool seen;
};

struct pkt_priv {
	struct uw_backend mmsg;		/* everything the ring does not carry */
	struct uw_config cfg;
	bool no_cap;
	bool rt_open, rt_failed;
	struct uw_rt rt;
	uint32_t epoch;
	struct pkt_flow cache[UW_PKT_CACHE];
	uint32_t cache_used;
	struct pkt_ring rings[UW_PKT_MAX_RINGS];
	struct pkt_ring spare;		/* opened unbound at start */
	/* per batch scratch */
	struct pkt_lane *lanes;
	size_t lanes_cap;
	uint32_t *next_run;		/* runs of a lane, in order */
	size_t next_run_cap;
	struct uw_run *fb_runs;
	uint32_t *fb_from;
	size_t fb_cap, fb_from_cap;
	struct uw_group *fb_groups;
	size_t fb_groups_cap;
	uint64_t burst_max;
};

static void start_opening(struct pkt_ring *pr);

/* ---- capability ----------------------------------------------------------- */

static bool have_net_raw(void)
{
	cap_t caps = cap_get_proc();
	cap_flag_value_t v = CAP_CLEAR;

	if (!caps)
		return false;
	if (cap_get_flag(caps, CAP_NET_RAW, CAP_EFFECTIVE, &v))
		v = CAP_CLEAR;
	cap_free(caps);
	return v == CAP_SET;
}

/* ---- open / close / fork ---------------------------------------------------- */

static int pkt_open(struct uw_backend *be, const struct uw_config *cfg)
{
	struct pkt_priv *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	p->mmsg = *be;
	p->mmsg.ops = &uw_backend_mmsg;
	err = uw_backend_mmsg.open(&p->mmsg, cfg);
	if (err) {
		free(p);
		return err;
	}
	if (!have_net_raw()) {
		p->no_cap = true;
		uw_warn("UDPWEAVE_BACKEND=packet needs CAP_NET_RAW, which this process lacks; "
			"using the mmsg backend for everything");
	}
	else {
		/* Setting a ring up takes the kernel milliseconds (an RCU grace
		 * period): start one now, unbound, for frames of a 1500-byte
		 * MTU, while the application is still setting up. */
		p->spare.want = (struct uw_ring_params){
			.frame_data = 14u + 1500u,
			.bytes = 2u * (size_t)cfg->arena_kb * 1024u,
			.qdisc_bypass = cfg->packet_qdisc_bypass,
		};
		p->spare.sys = be->sys;
		start_opening(&p->spare);
	}
	be->priv = p;
	return 0;
}

static void close_rings(struct pkt_priv *p, bool child)
{
	for (unsigned int i = 0; i <= UW_PKT_MAX_RINGS; i++) {
		struct pkt_ring *pr = i < UW_PKT_MAX_RINGS ? &p->rings[i] : &p->spare;

		if (pr->opening && !child) {	/* let its opener finish first */
			for (int k = 0; k < 2000 && atomic_load_explicit(&pr->setup,
					memory_order_acquire) == UW_RING_OPENING; k++)
				usleep(1000);
			pr->open = atomic_load_explicit(&pr->setup, memory_order_acquire) ==
				   UW_RING_READY;
			uw_tsan_acquire(&pr->setup);
		}
		if (pr->open)
			uw_ring_close(&pr->r);
		if (pr->opening && child)	/* its opener lives in the parent only */
			pr->slot_run = pr->slot_seg = pr->slot_n = NULL;
		free(pr->slot_run);
		free(pr->slot_seg);
		free(pr->slot_n);
		memset(pr, 0, sizeof(*pr));
	}
	if (p->rt_open)
		uw_rt_close(&p->rt);
	p->rt_open = p->rt_failed = false;
	memset(p->cache, 0, sizeof(p->cache));
	p->cache_used = 0;
}

static void pkt_close(struct uw_backend *be)
{
	struct pkt_priv *p = be->priv;

	if (!p)
		return;
	/* frames already handed over are sent by the kernel even after
	 * the socket is closed; none is left requested after a batch */
	close_rings(p, false);
	uw_backend_mmsg.close(&p->mmsg);
	free(p->lanes);
	free(p->next_run);
	free(p->fb_runs);
	free(p->fb_from);
	free(p->fb_groups);
	free(p);
	be->priv = NULL;
}

/* The child must not write into the parent's rings (shared mappings). */
static void pkt_fork_child(struct uw_backend *be)
{
	struct pkt_priv *p = be->priv;

	if (p)
		close_rings(p, true);
}

static uint32_t pkt_max_segment(struct uw_backend *be, struct uw_sock *s,
				const struct uw_addr *dest)
{
	return uw_route_max_segment(be->sys, s, dest);
}

/* ---- rings ------------------------------------------------------------------ */

/* Open a ring; in its own thread: the kernel takes milliseconds to set one
 * up (an RCU grace period), which a flush must not wait for. */
static bool open_ring_now(struct pkt_ring *pr)
{
	if (uw_ring_open(&pr->r, pr->sys, &pr->want))
		return false;
	pr->slot_run = calloc(pr->r.frame_nr, sizeof(uint32_t));
	pr->slot_seg = calloc(pr->r.frame_nr, sizeof(uint32_t));
	pr->slot_n = calloc(pr->r.frame_nr, sizeof(uint32_t));
	if (pr->slot_run && pr->slot_seg && pr->slot_n)
		return true;
	uw_ring_close(&pr->r);
	free(pr->slot_run);
	free(pr->slot_seg);
	free(pr->slot_n);
	pr->slot_run = pr->slot_seg = pr->slot_n = NULL;
	return false;
}

static void *ring_opener(void *arg)
{
	struct pkt_ring *pr = arg;
	bool ok = open_ring_now(pr);

	uw_tsan_release(&pr->setup);
	atomic_store_explicit(&pr->setup, ok ? UW_RING_READY : UW_RING_REFUSED,
			      memory_order_release);
	return NULL;
}

static void start_opening(struct pkt_ring *pr)
{
	pthread_attr_t a;
	pthread_t t;
	sigset_t all, old;
	int err;

	atomic_store_explicit(&pr->setup, UW_RING_OPENING, memory_order_relaxed);
	pr->opening = true;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);	/* the host's signals stay with its threads */
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&t, &a, ring_opener, pr);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		ring_opener(pr);	/* no thread: here and now */
}

/* What became of a ring being opened. */
static void ring_settle(struct pkt_ring *pr, struct uw_stats *st)
{
	int state;

	if (!pr->opening)
		return;
	state = atomic_load_explicit(&pr->setup, memory_order_acquire);
	if (state == UW_RING_OPENING)
		return;
	uw_tsan_acquire(&pr->setup);	/* a flush before a sleep: core/uw.h */
	pr->opening = false;
	if (state == UW_RING_REFUSED) {
		pr->failed = true;
		uw_info("packet: no TX ring on interface %d", pr->want.ifindex);
		return;
	}
	pr->open = true;
	uw_stat_add(&st->pkt.rings, 1);
	uw_stat_add(&st->pkt.ring_bytes, pr->r.map_len);
	uw_info("packet: TX ring on interface %d: %u frames of %u bytes", pr->want.ifindex,
		pr->r.frame_nr, pr->r.frame_size);
}

static bool spare_fits(const struct pkt_ring *sp, const struct uw_ring_params *want)
{
	return (sp->opening || sp->open) && !want->proto && !want->vnet_hdr &&
	       want->frame_data <= sp->want.frame_data &&
	       want->qdisc_bypass == sp->want.qdisc_bypass;
}

/* Take the spare ring (opened unbound when the backend started, so that
 * the first batch does not wait the whole set-up) for want. */
static bool take_spare(struct pkt_priv *p, struct pkt_ring *slot, struct uw_stats *st,
		       const struct uw_ring_params *want)
{
	struct pkt_ring *sp = &p->spare;

	for (int k = 0; k < 20000 && sp->opening; k++) {	/* 2 s at most */
		struct timespec ts = { 0, 100000 };

		ring_settle(sp, st);
		if (sp->opening)
			nanosleep(&ts, NULL);
	}
	if (!sp->open)
		return false;
	*slot = *sp;	/* its opener is done with it */
	memset(sp, 0, sizeof(*sp));
	if (uw_ring_bind(&slot->r, want)) {
		uw_ring_close(&slot->r);
		memset(slot, 0, sizeof(*slot));
		return false;
	}
	slot->want.ifindex = want->ifindex;
	slot->want.mark = want->mark;
	slot->want.priority = want->priority;
	slot->r.params = slot->want;
	return true;
}

/* The ring for these parameters, opened if need be; NULL when the device
 * refused one or every slot is taken. */
static struct pkt_ring *get_ring(struct pkt_priv *p, const struct uw_sys *sys,
				 struct uw_stats *st, const struct uw_ring_params *want)
{
	struct pkt_ring *free_slot = NULL;

	for (unsigned int i = 0; i < UW_PKT_MAX_RINGS; i++) {
		struct pkt_ring *pr = &p->rings[i];
		const struct uw_ring_params *h = &pr->want;

		if (!pr->open && !pr->failed) {
			if (!free_slot)
				free_slot = pr;
			continue;
		}
		if (h->ifindex == want->ifindex && h->mark == want->mark &&
		    h->priority == want->priority && h->proto == want->proto &&
		    h->frame_data >= want->frame_data && h->vnet_hdr == want->vnet_hdr)
			return pr->failed ? NULL : pr;
	}
	if (!free_slot)
		return NULL;
	if (spare_fits(&p->spare, want) && take_spare(p, free_slot, st, want)) {
		uw_info("packet: TX ring on interface %d: %u frames of %u bytes", want->ifindex,
			free_slot->r.frame_nr, free_slot->r.frame_size);
		return free_slot;
	}
	free_slot->want = *want;
	free_slot->sys = sys;
	free_slot->opening = true;
	ring_opener(free_slot);		/* here and now */
	ring_settle(free_slot, st);
	return free_slot->failed ? NULL : free_slot;
}

/* ---- flow resolution ------------------------------------------------------------ */

static int opt_int(const struct uw_sys *sys, int fd, int level, int opt, int dflt)
{
	int v = 0;
	socklen_t len = sizeof(v);

	if (sys->getsockopt(fd, level, opt, &v, &len) || len < 1)
		return dflt;
	if (len == 1)	/* IP_TOS and IP_MULTICAST_* may answer one byte */
		return *(unsigned char *)&v;
	return v;
}

static bool is_v4mapped(const struct in6_addr *a)
{
	static const unsigned char pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return !memcmp(a->s6_addr, pfx, sizeof(pfx));
}

/* Does a local socket on ifindex belong to the multicast group (so the
 * kernel would loop a copy back to it)? Read from /proc/net/igmp{,6}. */
static bool mc_local_member(const struct uw_sys *sys, int family, int ifindex,
			    const union uw_ip *grp)
{
	char buf[16384], want[40];
	ssize_t n;
	int fd = open(family == AF_INET ? "/proc/net/igmp" : "/proc/net/igmp6",
		      O_RDONLY | O_CLOEXEC);
	bool member = false;
	int cur = -1;

	if (fd < 0)
		return true;	/* cannot tell: keep the kernel's loop */
	n = read(fd, buf, sizeof(buf) - 1);
	sys->close(fd);
	if (n <= 0)
		return n < 0;
	buf[n] = '\0';
	if (family == AF_INET) {
		uint32_t raw;

		memcpy(&raw, &grp->v4, 4);
		snprintf(want, sizeof(want), "%08X", raw);
	} else {
		for (int i = 0; i < 16; i++)
			snprintf(want + 2 * i, 3, "%02x", grp->v6.s6_addr[i]);
	}
	for (char *line = buf, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		if (family == AF_INET) {
			if (*line >= '0' && *line <= '9')
				cur = atoi(line);
			else if (*line == '\t' && cur == ifindex && strstr(line, want))
				member = true;
		} else {
			int idx;
			char dev[32], g[40];

			if (sscanf(line, "%d %31s %39s", &idx, dev, g) == 3 && idx == ifindex &&
			    !strcmp(g, want))
				member = true;
		}
	}
	return member;
}

static void mc_mac(int family, const union uw_ip *g, unsigned char mac[6])
{
	if (family == AF_INET) {
		mac[0] = 0x01, mac[1] = 0x00, mac[2] = 0x5e;
		mac[3] = g->v4.s_addr >> 8 & 0x7f;
		memcpy(mac + 4, (const unsigned char *)&g->v4 + 2, 2);
	} else {
		mac[0] = 0x33, mac[1] = 0x33;
		memcpy(mac + 2, g->v6.s6_addr + 12, 4);
	}
}

static bool is_multicast(int family, const union uw_ip *a)
{
	if (family == AF_INET)
		return (ntohl(a->v4.s_addr) >> 28) == 0xe;
	return a->v6.s6_addr[0] == 0xff;
}

static bool nud_usable(uint16_t state)
{
	return state & (NUD_REACHABLE | NUD_PERMANENT | NUD_NOARP | NUD_STALE |
			NUD_DELAY | NUD_PROBE);
}

static void put16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

/* The header template and its partial sums. */
static void build_header(struct pkt_flow *e, const unsigned char *dmac, const unsigned char *smac,
			 const union uw_ip *src, const union uw_ip *dst, uint16_t sport,
			 uint16_t dport, int hops, int tos, bool df, bool l2)
{
	unsigned char *h = e->hdr;
	uint16_t proto = htons(IPPROTO_UDP);

	memset(e->hdr, 0, sizeof(e->hdr));
	e->l2_len = l2 ? 14 : 0;
	if (l2) {
		memcpy(h, dmac, 6);
		memcpy(h + 6, smac, 6);
		put16(h + 12, htons(e->family == AF_INET ? ETH_P_IP : ETH_P_IPV6));
		h += 14;
	}
	if (e->family == AF_INET) {
		e->l3_len = 20;
		h[0] = 0x45;
		h[1] = (unsigned char)tos;
		put16(h + 6, htons(df ? IP_DF : 0));
		h[8] = (unsigned char)hops;
		h[9] = IPPROTO_UDP;
		memcpy(h + 12, &src->v4, 4);
		memcpy(h + 16, &dst->v4, 4);
		e->ip_sum = uw_csum_add(0, h, 20);
		e->pseudo_sum = uw_csum_add(uw_csum_add(0, &src->v4, 4), &dst->v4, 4) + proto;
	} else {
		uint32_t label = (ntohl((uint32_t)(sport ^ dport) << 16 ^ dst->v6.s6_addr32[3] ^
					src->v6.s6_addr32[3]) * 2654435761u) >> 12;
		uint32_t w0 = htonl(6u << 28 | (uint32_t)(tos & 0xff) << 20 | (label & 0xfffff));

		e->l3_len = 40;
		memcpy(h, &w0, 4);
		h[6] = IPPROTO_UDP;
		h[7] = (unsigned char)hops;
		memcpy(h + 8, &src->v6, 16);
		memcpy(h + 24, &dst->v6, 16);
		e->ip_sum = 0;
		e->pseudo_sum = uw_csum_add(uw_csum_add(0, &src->v6, 16), &dst->v6, 16) + proto;
	}
	h += e->l3_len;
	put16(h, sport);
	put16(h + 2, dport);
	e->port_sum = (uint64_t)sport + dport;
	e->hdr_len = (uint16_t)(e->l2_len + e->l3_len + 8);
}

static uint8_t resolve_flow(struct pkt_priv *p, struct uw_backend *be, struct uw_sock *s,
			    const struct uw_addr *dest, struct pkt_flow *e)
{
	const struct uw_sys *sys = be->sys;
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
	union { struct sockaddr sa; struct sockaddr_in in; struct sockaddr_in6 in6; } me;
	socklen_t melen = sizeof(me);
	union uw_ip src = { 0 }, dst = { 0 };
	bool src_bound, mc, l2;
	uint16_t sport, dport;
	int oif, hops, tos, mark, prio, pmtud = IP_PMTUDISC_WANT;
	struct uw_route rt;
	struct uw_link link;
	unsigned char dmac[6] = { 0 };
	struct uw_ring_params rp = { 0 };
	uint16_t nud = 0;

	e->refresh = false;
	e->has_nexthop = false;
	e->ring = NULL;
	if (sys->getsockname(fd, &me.sa, &melen))
		return UW_PKT_FB_ROUTE;
	if (s->family == AF_INET) {
		e->family = AF_INET;
		src.v4 = me.in.sin_addr;
		src_bound = me.in.sin_addr.s_addr != htonl(INADDR_ANY);
		sport = me.in.sin_port;
		dst.v4 = dest->u.in.sin_addr;
		dport = dest->u.in.sin_port;
	} else {
		if (dest->u.sa.sa_family != AF_INET6 || is_v4mapped(&dest->u.in6.sin6_addr))
			return UW_PKT_FB_V4MAPPED;
		e->family = AF_INET6;
		src.v6 = me.in6.sin6_addr;
		src_bound = !IN6_IS_ADDR_UNSPECIFIED(&me.in6.sin6_addr);
		if (src_bound && is_v4mapped(&src.v6))
			return UW_PKT_FB_V4MAPPED;
		sport = me.in6.sin6_port;
		dst.v6 = dest->u.in6.sin6_addr;
		dport = dest->u.in6.sin6_port;
	}
	if (!sport)
		return UW_PKT_FB_ROUTE;
	mc = is_multicast(e->family, &dst);
	mark = opt_int(sys, fd, SOL_SOCKET, SO_MARK, 0);
	prio = opt_int(sys, fd, SOL_SOCKET, SO_PRIORITY, 0);
	oif = opt_int(sys, fd, SOL_SOCKET, SO_BINDTOIFINDEX, 0);
	if (e->family == AF_INET) {
		socklen_t olen = 64;
		char opts[64];

		if (!sys->getsockopt(fd, IPPROTO_IP, IP_OPTIONS, opts, &olen) && olen > 0)
			return UW_PKT_FB_OPTIONS;
		hops = mc ? opt_int(sys, fd, IPPROTO_IP, IP_MULTICAST_TTL, 1)
			  : opt_int(sys, fd, IPPROTO_IP, IP_TTL, 64);
		tos = opt_int(sys, fd, IPPROTO_IP, IP_TOS, 0);
		pmtud = opt_int(sys, fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_WANT);
		if (mc) {
			struct in_addr ifa = { 0 };
			socklen_t alen = sizeof(ifa);
			int idx = atomic_load_explicit(&s->mc_ifindex, memory_order_relaxed);

			if (idx)
				oif = idx;
			if (!src_bound && !sys->getsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &ifa, &alen) &&
			    ifa.s_addr) {
				src.v4 = ifa;	/* the route lookup picks the device by it */
				src_bound = true;
			}
		}
	} else {
		hops = mc ? opt_int(sys, fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 1)
			  : opt_int(sys, fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 64);
		tos = opt_int(sys, fd, IPPROTO_IPV6, IPV6_TCLASS, 0);
		if (mc) {
			int idx = opt_int(sys, fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, 0);

			if (idx)
				oif = idx;
		}
		if (dest->u.in6.sin6_scope_id)
			oif = (int)dest->u.in6.sin6_scope_id;
	}
	if (hops < 0)
		hops = 64;
	if (uw_rt_route(&p->rt, e->family, &dst, src_bound ? &src : NULL, oif, (uint32_t)mark,
			sport, dport, &rt))
		return UW_PKT_FB_ROUTE;
	if (rt.type == RTN_LOCAL)
		return UW_PKT_FB_LOCAL;
	if (rt.type == RTN_BROADCAST)
		return UW_PKT_FB_BROADCAST;
	if ((rt.type != RTN_UNICAST && rt.type != RTN_MULTICAST) || !rt.oif)
		return UW_PKT_FB_ROUTE;
	if (!src_bound) {
		if (!rt.has_prefsrc)
			return UW_PKT_FB_ROUTE;
		src = rt.prefsrc;
	}
	if (uw_rt_link(&p->rt, rt.oif, &link) || !(link.flags & IFF_UP))
		return UW_PKT_FB_ROUTE;
	switch (link.type) {
	case ARPHRD_LOOPBACK:
		return UW_PKT_FB_LOCAL;
	case ARPHRD_ETHER:
		l2 = true;
		break;
	case ARPHRD_NONE:
	case ARPHRD_RAWIP:
		l2 = false;
		break;
	case ARPHRD_TUNNEL:
	case ARPHRD_TUNNEL6:
	case ARPHRD_IPGRE:
	case ARPHRD_IP6GRE:
	case ARPHRD_SIT:
		return UW_PKT_FB_TUNNEL;
	default:
		return UW_PKT_FB_LINK;
	}
	if (l2 && link.addr_len != 6)
		return UW_PKT_FB_LINK;
	/* a ring has no send buffer: toward a shaper it would overflow the
	 * qdisc's queue in silence */
	if (sys->egress_shapes && sys->egress_shapes(e->dest.len ? &e->dest : &s->peer) == 1)
		return UW_PKT_FB_SHAPER;
	e->ifindex = rt.oif;
	e->max_payload = (rt.mtu && rt.mtu < link.mtu ? rt.mtu : link.mtu) -
			 (e->family == AF_INET ? 28u : 48u);
	if (mc) {
		int loop = e->family == AF_INET ? opt_int(sys, fd, IPPROTO_IP, IP_MULTICAST_LOOP, 1)
						: opt_int(sys, fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 1);

		if (loop && mc_local_member(sys, e->family, rt.oif, &dst))
			return UW_PKT_FB_MC_LOOP;
		mc_mac(e->family, &dst, dmac);
	} else if (l2) {
		union uw_ip nh = dst;

		if (rt.has_gateway) {
			if (rt.gw_family != e->family)
				return UW_PKT_FB_ROUTE;
			nh = rt.gateway;
		}
		e->nexthop = nh;
		e->has_nexthop = true;
		if (uw_rt_neigh(&p->rt, e->family, rt.oif, &nh, dmac, &nud) || !nud_usable(nud)) {
			e->refresh = true;
			return UW_PKT_FB_UNRESOLVED;
		}
		/* The kernel knows this neighbour but has not confirmed it
		 * lately: a datagram through the socket makes it check. */
		e->refresh = nud & NUD_STALE;
	}
	rp.ifindex = rt.oif;
	rp.mark = (uint32_t)mark;
	rp.priority = (uint32_t)prio;
	rp.proto = l2 ? 0 : htons(e->family == AF_INET ? ETH_P_IP : ETH_P_IPV6);
	rp.vnet_hdr = p->cfg.packet_gso && l2;
	rp.frame_data = (l2 ? 14u : 0u) + link.mtu + (rp.vnet_hdr ? 65536u + 10u : 0u);
	/* Twice the staging memory: a whole batch fits while the previous
	 * one is still in flight (frames come back when the receiver has
	 * freed their skbs). */
	rp.bytes = 2u * (size_t)p->cfg.arena_kb * 1024u;
	rp.qdisc_bypass = p->cfg.packet_qdisc_bypass;
	e->ring = get_ring(p, sys, be->stats, &rp);
	if (!e->ring)
		return UW_PKT_FB_NO_RING;
	build_header(e, dmac, link.addr, &src, &dst, sport, dport, hops, tos,
		     e->family == AF_INET && (pmtud == IP_PMTUDISC_WANT || pmtud == IP_PMTUDISC_DO ||
					      pmtud == IP_PMTUDISC_PROBE), l2);
	e->ip_id = (uint16_t)(s->id * 7919u + ntohs(dport));
	uw_stat_add(&be->stats->pkt.resolves, 1);
	return UW_PKT_FB__COUNT;
}

/* Periodic check of a resolved flow: is its neighbour still the one in
 * the header? A stale entry is refreshed by the flow's next datagram. */
static bool neighbour_still(struct pkt_priv *p, struct pkt_flow *e)
{
	unsigned char mac[6];
	uint16_t nud = 0;

	if (uw_rt_neigh(&p->rt, e->family, e->ifindex, &e->nexthop, mac, &nud) ||
	    !nud_usable(nud) || memcmp(mac, e->hdr, 6))
		return false;
	e->refresh = nud & NUD_STALE;
	return true;
}

static uint32_t flow_hash(uint32_t sock_id, const struct uw_addr *d)
{
	return (uw_addr_hash(d) ^ sock_id * 2654435761u) & (UW_PKT_CACHE - 1);
}

/* The cache entry of (s, dest), resolved if stale. */
static struct pkt_flow *lookup_flow(struct pkt_priv *p, struct uw_backend *be, struct uw_sock *s,
				    const struct uw_addr *dest, uint64_t now)
{
	const struct uw_addr *d = dest->len ? dest : &s->peer;
	uint32_t gen = atomic_load_explicit(&s->opt_gen, memory_order_acquire);
	uint32_t h = flow_hash(s->id, d);
	struct pkt_flow *e;

	for (uint32_t i = 0;; i++) {
		e = &p->cache[(h + i) & (UW_PKT_CACHE - 1)];
		if (!e->used) {
			if (p->cache_used >= UW_PKT_CACHE * 3 / 4) {	/* full: start over */
				memset(p->cache, 0, sizeof(p->cache));
				p->cache_used = 0;
				e = &p->cache[h];
			}
			memset(e, 0, sizeof(*e));
			e->used = true;
			e->sock_id = s->id;
			e->dest = *d;
			p->cache_used++;
			e->expiry_ns = 0;
			break;
		}
		if (e->sock_id == s->id && uw_addr_equal(&e->dest, d))
			break;
	}
	if (e->opt_gen == gen && e->epoch == p->epoch && e->expiry_ns <= now &&
	    e->fb == UW_PKT_FB__COUNT && e->has_nexthop && neighbour_still(p, e)) {
		e->expiry_ns = now + UW_PKT_REVALIDATE_NS;
		return e;	/* nothing changed but time: the neighbour holds */
	}
	if (e->expiry_ns <= now || e->opt_gen != gen || e->epoch != p->epoch) {
		e->opt_gen = gen;
		e->epoch = p->epoch;
		e->expiry_ns = now + UW_PKT_REVALIDATE_NS;
		e->fb = resolve_flow(p, be, s, d, e);
	}
	return e;
}

/* ---- frames ------------------------------------------------------------------ */

/* One datagram as a whole frame at f; returns the frame length. */
static uint32_t write_frame(struct pkt_flow *e, unsigned char *f, bool vnet,
			    const void *payload, uint32_t len)
{
	unsigned char *ip, *udp;
	uint16_t ulen = (uint16_t)(8 + len), c;
	uint64_t sum;

	if (vnet) {
		memset(f, 0, sizeof(struct virtio_net_hdr));
		f += sizeof(struct virtio_net_hdr);
	}
	memcpy(f, e->hdr, e->hdr_len);
	ip = f + e->l2_len;
	udp = ip + e->l3_len;
	memcpy(udp + 8, payload, len);
	sum = e->pseudo_sum + e->port_sum + 2u * (uint64_t)htons(ulen);
	sum = uw_csum_add(sum, udp + 8, len);
	c = (uint16_t)~uw_csum_fold(sum);
	put16(udp + 4, htons(ulen));
	put16(udp + 6, c ? c : 0xffff);
	if (e->family == AF_INET) {
		uint16_t tot = htons((uint16_t)(20 + ulen)), id = htons(e->ip_id++);

		put16(ip + 2, tot);
		put16(ip + 4, id);
		put16(ip + 10, (uint16_t)~uw_csum_fold(e->ip_sum + tot + id));
	} else {
		put16(ip + 4, htons(ulen));
	}
	return (vnet ? (uint32_t)sizeof(struct virtio_net_hdr) : 0) + e->hdr_len + len;
}

/* n datagrams of r from seg on as one GSO frame (virtio_net_hdr, the
 * device or the kernel segments it); returns the frame length. */
static uint32_t write_gso_frame(struct pkt_flow *e, unsigned char *f, const struct uw_run *r,
				uint32_t seg, uint32_t n)
{
	struct virtio_net_hdr vh = {
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
		.gso_type = VIRTIO_NET_HDR_GSO_UDP_L4,
		.hdr_len = e->hdr_len,
		.gso_size = (uint16_t)r->seg_size,
		.csum_start = (uint16_t)(e->l2_len + e->l3_len),
		.csum_offset = 6,
	};
	unsigned char *ip, *udp, *at;
	uint32_t total = 0;
	uint16_t ulen;

	memcpy(f, &vh, sizeof(vh));
	f += sizeof(vh);
	memcpy(f, e->hdr, e->hdr_len);
	ip = f + e->l2_len;
	udp = ip + e->l3_len;
	at = udp + 8;
	for (uint32_t i = seg; i < seg + n; i++) {
		memcpy(at, r->iov[i].iov_base, r->iov[i].iov_len);
		at += r->iov[i].iov_len;
		total += (uint32_t)r->iov[i].iov_len;
	}
	ulen = (uint16_t)(8 + total);
	put16(udp + 4, htons(ulen));
	/* partial checksum: the pseudo-header only, the rest is summed by
	 * whoever segments the frame */
	put16(udp + 6, uw_csum_fold(e->pseudo_sum + htons(ulen)));
	if (e->family == AF_INET) {
		uint16_t tot = htons((uint16_t)(20 + ulen)), id = htons(e->ip_id);

		e->ip_id = (uint16_t)(e->ip_id + n);
		put16(ip + 2, tot);
		put16(ip + 4, id);
		put16(ip + 10, (uint16_t)~uw_csum_fold(e->ip_sum + tot + id));
	} else {
		put16(ip + 4, htons(ulen));
	}
	return (uint32_t)sizeof(vh) + e->hdr_len + total;
}

/* ---- the batch ------------------------------------------------------------------ */

static void count_fallback(struct uw_stats *st, unsigned int why, uint64_t n)
{
	if (n)
		uw_stat_add(&st->pkt.fallback[why], n);
}

/* A datagram in the middle of the ring's work cannot wait on its socket's
 * list (the rest of its run may go by the ring): a full socket is waited
 * for here, this long at most, then the datagram is dropped, counted. */
#define UW_PKT_ONE_WAIT_MS	1000

/* One datagram through the application's socket, now (a neighbour refresh,
 * a frame that does not fit, a stuck ring). */
static void send_one(struct uw_backend *be, struct uw_run *r, uint32_t seg)
{
	struct uw_run one = *r;
	struct uw_group g = { r->sock, &one, 1 };
	struct pollfd pfd = { .fd = atomic_load_explicit(&r->sock->fd, memory_order_relaxed),
			      .events = POLLOUT };

	one.iov = r->iov + seg;
	one.nseg = 1;
	one.seg_size = one.bytes = (uint32_t)r->iov[seg].iov_len;
	for (int waited = 0;; waited += 10) {
		one.dropped = one.dropped_bytes = one.held = one.held_bytes = 0;
		uw_backend_passthrough.send_batch(be, &(struct uw_batch){
			.groups = &g, .ngroups = 1, .runs = &one, .nruns = 1, .nflows = 1 });
		if (!one.held)
			break;
		if (waited >= UW_PKT_ONE_WAIT_MS) {
			one.dropped = 1;
			one.dropped_bytes = one.bytes;
			break;
		}
		be->sys->poll(&pfd, 1, 10);
	}
	r->dropped += one.dropped;
	r->dropped_bytes += one.dropped_bytes;
}

/* After a neighbour was triggered: wait (bounded) until the kernel knows it. */
static bool wait_neighbour(struct pkt_priv *p, struct uw_backend *be, struct pkt_flow *e)
{
	uint64_t until = be->sys->now_ns() + UW_PKT_RESOLVE_WAIT_NS;
	unsigned char mac[6];
	uint16_t nud = 0;

	do {
		struct timespec ts = { 0, 50000 };

		be->sys->nanosleep(&ts, NULL);
		if (!uw_rt_neigh(&p->rt, e->family, e->ifindex, &e->nexthop, mac, &nud) &&
		    (nud & (NUD_REACHABLE | NUD_PERMANENT | NUD_NOARP)))
			return true;
	} while (be->sys->now_ns() < until);
	return false;
}

/* How many datagrams of run i (of nseg) lane l has sent already (a
 * neighbour trigger): everything before its cursor (run, seg). A lane's runs
 * are chained in batch order, and the trigger may have moved the cursor
 * past the first run, or past the last (run UINT32_MAX). */
static uint32_t lane_sent(const struct pkt_lane *l, uint32_t i, uint32_t nseg)
{
	if (l->run == UINT32_MAX || i < l->run)
		return nseg;
	return i == l->run ? l->seg : 0;
}

/* Send what goes through the sockets: the runs of lanes not on the ring,
 * from their cursor on, grouped by socket as the batch had them. */
static void send_fallback(struct pkt_priv *p, struct uw_backend *be, struct uw_batch *b)
{
	size_t n = 0, ng = 0;

	if (uw_grow((void **)&p->fb_runs, &p->fb_cap, b->nruns, sizeof(*p->fb_runs)) ||
	    uw_grow((void **)&p->fb_from, &p->fb_from_cap, b->nruns, sizeof(*p->fb_from)) ||
	    uw_grow((void **)&p->fb_groups, &p->fb_groups_cap, b->ngroups,
		    sizeof(*p->fb_groups))) {
		/* without memory: one datagram at a time */
		for (size_t i = 0; i < b->nruns; i++) {
			struct pkt_lane *l = &p->lanes[b->runs[i].flow];

			if (l->ring)
				continue;
			for (uint32_t sg = lane_sent(l, (uint32_t)i, b->runs[i].nseg);
			     sg < b->runs[i].nseg; sg++)
				send_one(be, &b->runs[i], sg);
		}
		return;
	}
	for (size_t g = 0; g < b->ngroups; g++) {
		struct uw_group *grp = &b->groups[g];
		size_t start = n;

		for (size_t k = 0; k < grp->nruns; k++) {
			struct uw_run *r = &grp->runs[k];
			struct pkt_lane *l = &p->lanes[r->flow];
			uint32_t skip = lane_sent(l, (uint32_t)(r - b->runs), r->nseg);

			if (l->ring || skip >= r->nseg)
				continue;
			p->fb_runs[n] = *r;
			p->fb_runs[n].iov += skip;
			p->fb_runs[n].nseg -= skip;
			for (uint32_t s = 0; s < skip; s++)
				p->fb_runs[n].bytes -= (uint32_t)r->iov[s].iov_len;
			p->fb_runs[n].dropped = p->fb_runs[n].dropped_bytes = 0;
			p->fb_from[n] = (uint32_t)(r - b->runs);
			n++;
		}
		if (n > start) {
			p->fb_groups[ng].sock = grp->sock;
			p->fb_groups[ng].runs = p->fb_runs + start;
			p->fb_groups[ng].nruns = n - start;
			ng++;
		}
	}
	if (!n)
		return;
	p->mmsg.ops->send_batch(&p->mmsg, &(struct uw_batch){
		.groups = p->fb_groups, .ngroups = ng, .runs = p->fb_runs, .nruns = n,
		.nflows = b->nflows });
	for (size_t i = 0; i < n; i++) {
		struct uw_run *r = &b->runs[p->fb_from[i]];

		r->dropped += p->fb_runs[i].dropped;
		r->dropped_bytes += p->fb_runs[i].dropped_bytes;
		/* a full socket: the run's tail (this one is its tail) is held */
		r->held = p->fb_runs[i].held;
		r->held_bytes = p->fb_runs[i].held_bytes;
	}
}

/* A kick failed for good: what the kernel did not take goes through the
 * sockets, datagram by datagram. */
static void rescue_ring(struct uw_backend *be, struct uw_batch *b, struct pkt_ring *pr)
{
	struct uw_ring *r = &pr->r;

	for (uint32_t k = 0; k < r->filled; k++) {
		uint32_t i = (r->head + k) % r->frame_nr;

		if (!uw_ring_requested(r, i))
			continue;
		for (uint32_t m = 0; m < pr->slot_n[i]; m++)
			send_one(be, &b->runs[pr->slot_run[i]], pr->slot_seg[i] + m);
	}
	uw_ring_unfill(r);
}

static int kick(struct uw_backend *be, struct uw_batch *b, struct pkt_ring *pr)
{
	int err = uw_ring_kick(&pr->r, be->stats);

	if (err) {
		uw_trace(fallback, "ring_kick_failed", pr->r.fd);
		uw_info("packet: TX ring kick failed (error %d); sending through the sockets", -err);
		rescue_ring(be, b, pr);
	}
	return err;
}

/* The next frame of pr, kicking and waiting when the ring is full. */
static unsigned char *next_frame(struct uw_backend *be, struct uw_batch *b, struct pkt_ring *pr)
{
	unsigned char *f = uw_ring_next(&pr->r);

	if (f)
		return f;
	kick(be, b, pr);
	if (uw_ring_wait_frame(&pr->r, be->stats))
		return NULL;
	return uw_ring_next(&pr->r);
}

/* Bytes the next frame of r from seg on would take. */
static uint32_t frame_bytes(const struct pkt_flow *e, const struct uw_run *r, uint32_t seg,
			    bool vnet)
{
	uint32_t n = vnet ? (uint32_t)sizeof(struct virtio_net_hdr) : 0;

	if (vnet && r->nseg - seg > 1)
		for (uint32_t i = seg; i < r->nseg; i++)
			n += (uint32_t)r->iov[i].iov_len;
	else
		n += (uint32_t)r->iov[seg].iov_len;
	return n + e->hdr_len;
}

static bool same_dest(const struct pkt_flow *a, const struct pkt_flow *b)
{
	return a && b && uw_addr_equal(&a->dest, &b->dest);
}

/* Fill the rings: burst datagrams per lane per turn, lanes round-robin. */
static void fill_rings(struct pkt_priv *p, struct uw_backend *be, struct uw_batch *b,
		       uint32_t first_lane)
{
	uint32_t burst = p->cfg.interleave_burst ? p->cfg.interleave_burst : 1;
	const struct pkt_flow *prev = NULL;
	uint64_t run_len = 0;

	while (first_lane != UINT32_MAX) {
		uint32_t prev_lane = UINT32_MAX;

		for (uint32_t li = first_lane; li != UINT32_MAX;) {
			struct pkt_lane *l = &p->lanes[li];
			struct pkt_ring *pr = l->e->ring;
			bool vnet = pr->r.params.vnet_hdr;
			uint32_t taken = 0, nxt = l->next_lane;

			while (taken < burst && l->run != UINT32_MAX) {
				struct uw_run *r = &b->runs[l->run];
				unsigned char *f = next_frame(be, b, pr);
				uint32_t n = 1, len, idx;

				if (f && frame_bytes(l->e, r, l->seg, vnet) > pr->r.data_max) {
					/* never past the frame (a size decision gone
					 * stale): through the socket */
					send_one(be, r, l->seg);
					count_fallback(be->stats, UW_PKT_FB_OVERSIZE, 1);
					l->seg++;
				} else if (!f) {	/* the ring is stuck: the rest by socket */
					for (uint32_t sg = l->seg; sg < r->nseg; sg++)
						send_one(be, r, sg);
					l->seg = r->nseg;
				} else {
					if (vnet && r->nseg - l->seg > 1) {
						n = r->nseg - l->seg;
						len = write_gso_frame(l->e, f, r, l->seg, n);
						uw_stat_add(&be->stats->pkt.gso_frames, 1);
					} else {
						len = write_frame(l->e, f, vnet, r->iov[l->seg].iov_base,
								  (uint32_t)r->iov[l->seg].iov_len);
					}
					idx = uw_ring_commit(&pr->r, len);
					pr->slot_run[idx] = l->run;
					pr->slot_seg[idx] = l->seg;
					pr->slot_n[idx] = n;
					uw_stat_add_locked(&be->stats->pkt.frames, 1);
					uw_stat_add_locked(&be->stats->pkt.bytes, len);
					run_len = same_dest(prev, l->e) ? run_len + n : n;
					if (run_len > p->burst_max)
						p->burst_max = run_len;
					prev = l->e;
					l->seg += n;
				}
				taken += n;
				if (l->seg >= r->nseg) {	/* next run of the flow */
					uint32_t nr = l->run == l->last ? UINT32_MAX : p->next_run[l->run];

					l->run = nr;
					l->seg = 0;
				}
			}
			if (l->run == UINT32_MAX) {	/* lane done: unlink it */
				if (prev_lane == UINT32_MAX)
					first_lane = nxt;
				else
					p->lanes[prev_lane].next_lane = nxt;
			} else {
				prev_lane = li;
			}
			li = nxt;
		}
	}
}

static int pkt_send_batch(struct uw_backend *be, struct uw_batch *b)
{
	struct pkt_priv *p = be->priv;
	uint64_t now = be->sys->now_ns();
	uint32_t first_lane = UINT32_MAX, last_lane = UINT32_MAX;

	if (p->no_cap || p->rt_failed) {
		count_fallback(be->stats, UW_PKT_FB_NO_CAP, b->datagrams);
		return p->mmsg.ops->send_batch(&p->mmsg, b);
	}
	if (!p->rt_open) {
		if (uw_rt_open(&p->rt, be->sys, be->stats)) {
			uw_warn("packet: no rtnetlink socket; using the mmsg backend");
			p->rt_failed = true;
			return p->mmsg.ops->send_batch(&p->mmsg, b);
		}
		p->rt_open = true;
	}
	/* Every batch: a frame built for an MTU, a route or a neighbour
	 * that just changed would be lost (one recv, EAGAIN as a rule). */
	if (uw_rt_changed(&p->rt))
		p->epoch++;
	if (uw_grow((void **)&p->lanes, &p->lanes_cap, b->nflows, sizeof(*p->lanes)) ||
	    uw_grow((void **)&p->next_run, &p->next_run_cap, b->nruns, sizeof(*p->next_run)))
		return p->mmsg.ops->send_batch(&p->mmsg, b);
	for (size_t f = 0; f < b->nflows; f++)
		p->lanes[f].seen = false;
	/* Lanes: each flow's runs chained in batch order. */
	for (size_t i = 0; i < b->nruns; i++) {
		struct uw_run *r = &b->runs[i];
		struct pkt_lane *l = &p->lanes[r->flow];

		if (!l->seen) {
			memset(l, 0, sizeof(*l));
			l->seen = true;
			l->first = l->last = (uint32_t)i;
			l->run = (uint32_t)i;
			l->e = lookup_flow(p, be, r->sock, r->dest, now);
			l->ring = l->e->fb == UW_PKT_FB__COUNT;
		} else {
			p->next_run[l->last] = (uint32_t)i;
			l->last = (uint32_t)i;
		}
		if (l->ring && r->seg_size > l->e->max_payload)
			l->ring = false;	/* the whole flow: its order holds */
	}
	/* Refresh or resolve neighbours with the flow's first datagram. */
	for (size_t i = 0; i < b->nruns; i++) {
		struct uw_run *r = &b->runs[i];
		struct pkt_lane *l = &p->lanes[r->flow];

		if (l->first != i || !l->e->refresh)
			continue;
		send_one(be, r, 0);
		l->seg = 1;
		uw_stat_add(&be->stats->pkt.neigh_triggers, 1);
		count_fallback(be->stats, UW_PKT_FB_NEIGH_TRIGGER, 1);
		if (l->e->fb == UW_PKT_FB_UNRESOLVED && wait_neighbour(p, be, l->e)) {
			l->e->expiry_ns = 0;
			l->e = lookup_flow(p, be, r->sock, r->dest, now);
			l->ring = l->e->fb == UW_PKT_FB__COUNT;
			/* as above: a datagram above the MTU keeps the flow off */
			for (uint32_t k = l->first; l->ring; k = p->next_run[k]) {
				if (b->runs[k].seg_size > l->e->max_payload)
					l->ring = false;
				if (k == l->last)
					break;
			}
		}
		l->e->refresh = false;
		if (l->seg >= r->nseg) {
			l->run = l->first == l->last ? UINT32_MAX : p->next_run[l->first];
			l->seg = 0;
			if (l->run == UINT32_MAX) {
				l->ring = false;	/* nothing left */
				continue;
			}
		}
	}
	/* Count what the sockets carry, and chain the ring lanes. */
	for (size_t i = 0; i < b->nruns; i++) {
		struct uw_run *r = &b->runs[i];
		struct pkt_lane *l = &p->lanes[r->flow];

		if (l->first != i)
			continue;
		if (!l->ring) {
			uint64_t n = 0;

			for (uint32_t k = (uint32_t)i;; k = p->next_run[k]) {
				n += b->runs[k].nseg - lane_sent(l, k, b->runs[k].nseg);
				if (k == l->last)
					break;
			}
			count_fallback(be->stats, l->e->fb == UW_PKT_FB__COUNT ? UW_PKT_FB_OVERSIZE
									    : l->e->fb, n);
			continue;
		}
		l->next_lane = UINT32_MAX;
		if (last_lane == UINT32_MAX)
			first_lane = r->flow;
		else
			p->lanes[last_lane].next_lane = r->flow;
		last_lane = r->flow;
	}
	send_fallback(p, be, b);
	for (unsigned int k = 0; k < UW_PKT_MAX_RINGS; k++)
		if (p->rings[k].open)
			uw_ring_reclaim(&p->rings[k].r);
	fill_rings(p, be, b, first_lane);
	for (unsigned int k = 0; k < UW_PKT_MAX_RINGS; k++)
		if (p->rings[k].open && p->rings[k].r.filled)
			kick(be, b, &p->rings[k]);
	uw_stat_max(&be->stats->pkt.longest_burst, p->burst_max);
	if (uw_trace_on(backend_send))
		uw_trace(backend_send, "packet", (uint32_t)b->nruns, (uint32_t)b->datagrams, 0);
	return 0;
}

const struct uw_backend_ops uw_backend_packet = {
	.name		= "packet",
	.open		= pkt_open,
	.send_batch	= pkt_send_batch,
	.max_segment	= pkt_max_segment,
	.close		= pkt_close,
	.fork_child	= pkt_fork_child,
	.cross_socket	= true,
};
