/* SPDX-License-Identifier: MIT */
/*
 * Path MTU per destination, so that no GSO run carries a segment the route
 * cannot (the kernel refuses such a run with EINVAL). A connected socket
 * asks its own route (IP_MTU); for other destinations a throw-away socket
 * is connected to the destination (no packet is sent) and asked. Results
 * are kept a few seconds. Only the flushing thread calls this (flush lock).
 */
#include <errno.h>
#include <netinet/ip.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define UW_ROUTE_SLOTS		1024	/* a power of two */
#define UW_ROUTE_PROBE		8	/* slots tried from the hashed one */
#define UW_ROUTE_TTL_NS		(5ull * 1000000000ull)
#define UW_ROUTE_FAIL_TTL_NS	(1ull * 1000000000ull)

struct route_entry {
	struct uw_addr dest;
	uint32_t max_seg;
	uint64_t expiry_ns;
};

static struct route_entry route_cache[UW_ROUTE_SLOTS];

/* The route depends on the address, not the port: one entry per host. */
static struct uw_addr route_key(const struct uw_addr *dest)
{
	struct uw_addr k = *dest;

	if (k.u.sa.sa_family == AF_INET) {
		k.u.in.sin_port = 0;
	} else {
		k.u.in6.sin6_port = 0;
		k.u.in6.sin6_flowinfo = 0;
	}
	return k;
}

/* The entry for key, or the slot to fill: a free or expired one near the
 * hashed slot, else the one that expires first. */
static struct route_entry *route_slot(const struct uw_addr *key, uint64_t now, bool *hit)
{
	uint32_t h = uw_addr_hash(key);
	struct route_entry *victim = NULL;

	for (uint32_t i = 0; i < UW_ROUTE_PROBE; i++) {
		struct route_entry *e = &route_cache[(h + i) & (UW_ROUTE_SLOTS - 1)];

		if (e->dest.len && uw_addr_equal(&e->dest, key)) {
			*hit = now < e->expiry_ns;
			return e;
		}
		if (!victim || e->expiry_ns < victim->expiry_ns)
			victim = e;
	}
	*hit = false;
	return victim;
}

static uint32_t overhead(int family)
{
	return family == AF_INET ? 20 + 8 : 40 + 8;
}

static uint32_t seg_from_mtu(int family, int mtu)
{
	uint32_t o = overhead(family);

	if (mtu <= (int)o)
		return 0;
	return (uint32_t)mtu - o > UW_GSO_MAX_BYTES ? UW_GSO_MAX_BYTES : (uint32_t)mtu - o;
}

static int sock_mtu(const struct uw_sys *sys, int fd, int family)
{
	int mtu = 0;
	socklen_t len = sizeof(mtu);

	if (family == AF_INET)
		return sys->getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len) ? 0 : mtu;
	return sys->getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &len) ? 0 : mtu;
}

static int probe_mtu(const struct uw_sys *sys, const struct uw_addr *dest)
{
	int family = dest->u.sa.sa_family;
	int fd = sys->socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int mtu = 0;

	if (fd < 0)
		return 0;
	if (!sys->connect(fd, &dest->u.sa, dest->len))
		mtu = sock_mtu(sys, fd, family);
	sys->close(fd);
	return mtu;
}

/* Toward a shaper (tbf, htb...) datagrams go alone: a GSO run is one
 * packet to its queue, or cut up at once, and the socket's send buffer
 * (the pace a sender meets without the library) no longer holds the
 * sender back; the queue's overflow would be dropped in silence. */
static uint32_t unless_shaped(const struct uw_sys *sys, const struct uw_addr *dest, uint32_t seg)
{
	if (seg && sys->egress_shapes && sys->egress_shapes(dest) == 1)
		return UW_SEG_PLAIN;
	return seg;
}

uint32_t uw_route_max_segment(const struct uw_sys *sys, struct uw_sock *s,
			      const struct uw_addr *dest)
{
	uint64_t now = sys->now_ns();
	struct route_entry *e;
	struct uw_addr key;
	int saved = errno;
	uint32_t seg;
	bool hit;

	if (!dest->len) {
		if (now < s->mtu_expiry_ns)
			return s->mtu;
		seg = seg_from_mtu(s->family,
				   sock_mtu(sys, atomic_load_explicit(&s->fd, memory_order_relaxed),
					    s->family));
		seg = unless_shaped(sys, &s->peer, seg);
		s->mtu = seg;
		s->mtu_expiry_ns = now + (seg ? UW_ROUTE_TTL_NS : UW_ROUTE_FAIL_TTL_NS);
		errno = saved;
		return seg;
	}
	key = route_key(dest);
	e = route_slot(&key, now, &hit);
	if (hit)
		return e->max_seg;
	seg = unless_shaped(sys, dest, seg_from_mtu(dest->u.sa.sa_family, probe_mtu(sys, dest)));
	e->dest = key;
	e->max_seg = seg;
	e->expiry_ns = now + (seg ? UW_ROUTE_TTL_NS : UW_ROUTE_FAIL_TTL_NS);
	errno = saved;
	return seg;
}

void uw_route_forget(struct uw_sock *s, const struct uw_addr *dest)
{
	struct uw_addr key;
	struct route_entry *e;
	bool hit;

	if (!dest->len) {
		s->mtu_expiry_ns = 0;
		return;
	}
	key = route_key(dest);
	e = route_slot(&key, UINT64_MAX - 1, &hit);
	if (e->dest.len && uw_addr_equal(&e->dest, &key))
		e->expiry_ns = 0;
}
