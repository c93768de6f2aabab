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

#define UW_ROUTE_SLOTS		256
#define UW_ROUTE_TTL_NS		(5ull * 1000000000ull)
#define UW_ROUTE_FAIL_TTL_NS	(1ull * 1000000000ull)

struct route_entry {
	struct uw_addr dest;
	uint32_t max_seg;
	uint64_t expiry_ns;
};

static struct route_entry route_cache[UW_ROUTE_SLOTS];

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

uint32_t uw_route_max_segment(const struct uw_sys *sys, struct uw_sock *s,
			      const struct uw_addr *dest)
{
	uint64_t now = sys->now_ns();
	struct route_entry *e;
	int saved = errno;
	uint32_t seg;

	if (!dest->len) {
		if (now < s->mtu_expiry_ns)
			return s->mtu;
		seg = seg_from_mtu(s->family,
				   sock_mtu(sys, atomic_load_explicit(&s->fd, memory_order_relaxed),
					    s->family));
		s->mtu = seg;
		s->mtu_expiry_ns = now + (seg ? UW_ROUTE_TTL_NS : UW_ROUTE_FAIL_TTL_NS);
		errno = saved;
		return seg;
	}
	e = &route_cache[uw_addr_hash(dest) % UW_ROUTE_SLOTS];
	if (now < e->expiry_ns && uw_addr_equal(&e->dest, dest))
		return e->max_seg;
	seg = seg_from_mtu(dest->u.sa.sa_family, probe_mtu(sys, dest));
	e->dest = *dest;
	e->max_seg = seg;
	e->expiry_ns = now + (seg ? UW_ROUTE_TTL_NS : UW_ROUTE_FAIL_TTL_NS);
	errno = saved;
	return seg;
}

void uw_route_forget(struct uw_sock *s, const struct uw_addr *dest)
{
	struct route_entry *e;

	if (!dest->len) {
		s->mtu_expiry_ns = 0;
		return;
	}
	e = &route_cache[uw_addr_hash(dest) % UW_ROUTE_SLOTS];
	if (uw_addr_equal(&e->dest, dest))
		e->expiry_ns = 0;
}
