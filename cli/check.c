/* SPDX-License-Identifier: MIT */
/*
 * udpweave check [--backend B]: what this host offers the library, one
 * line per item, "OK   thing: reason" or "NO   thing: reason". Every probe
 * is real (a socket, a ring, a system call) and sends only to a socket
 * of its own on 127.0.0.1. Exit status 1 when the chosen backend cannot
 * run here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <linux/net_tstamp.h>
#include <linux/pkt_sched.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "egress.h"
#include "netdev.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SO_TXTIME
#define SO_TXTIME 61
#endif

#define GSO_PROBE_SEGMENT	1000
#define GSO_PROBE_SEGMENTS	3
#define PROBE_WAIT_MS		1000
#define ARENA_DEFAULT_KB	4096	/* the library's UDPWEAVE_ARENA_KB default */
#define GSO_SW_CSUM_MAJOR	6	/* first kernel that checksums GSO in software */
#define GSO_SW_CSUM_MINOR	11

static const char check_usage[] =
	"usage: udpweave check [--backend B] [--lib PATH] [--dest ADDR]\n"
	"\n"
	"Report what this host supports for udpweave, one line per item:\n"
	"  OK   thing: reason      or      NO   thing: reason\n"
	"UDP GSO (socket option, and a real GSO send on 127.0.0.1), per interface\n"
	"its MTU and whether a GSO run can leave it (TX checksum offload), AF_PACKET\n"
	"TX_RING, CAP_NET_RAW, io_uring, SO_TXTIME, the root qdisc of each interface\n"
	"(fq or not), RLIMIT_MEMLOCK, the pacing in effect toward a destination\n"
	"(the kernel's, through SO_TXTIME and fq, or the library's own scheduler),\n"
	"the library, and the chosen backend.\n"
	"\n";
static const char check_usage_options[] =
	"  --lib PATH    the library to look for (as 'udpweave run --lib')\n"
	"  --dest ADDR   the destination whose pacing to report (an IPv4 or IPv6\n"
	"                address; default 192.0.2.1: the default route)\n"
	"  -h, --help    this text\n"
	"\n"
	"Exit status: 0 the backend can run here; 1 it cannot; 2 bad usage.\n";

/* What the probes found, for the verdict on the backend. */
struct host {
	bool sendmmsg;
	bool gso;
	char gso_why[128];
	bool tx_ring;
	bool cap_net_raw;
	bool io_uring;
	bool library;
};

static void line(bool ok, const char *thing, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void line(bool ok, const char *thing, const char *fmt, ...)
{
	va_list ap;

	printf("%s   %s: ", ok ? "OK" : "NO", thing);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ------------------------------------------------------------- loopback */

struct loopback {
	int rx, tx;
	struct sockaddr_in addr;
};

static void loopback_close(struct loopback *lb)
{
	if (lb->rx >= 0)
		close(lb->rx);
	if (lb->tx >= 0)
		close(lb->tx);
	lb->rx = lb->tx = -1;
}

/* A receiver on 127.0.0.1 and a sender connected to it: probes never
 * send anywhere else. */
static int loopback_open(struct loopback *lb)
{
	socklen_t alen = sizeof(lb->addr);

	lb->rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	lb->tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memset(&lb->addr, 0, sizeof(lb->addr));
	lb->addr.sin_family = AF_INET;
	lb->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lb->rx < 0 || lb->tx < 0 ||
	    bind(lb->rx, (struct sockaddr *)&lb->addr, sizeof(lb->addr)) ||
	    getsockname(lb->rx, (struct sockaddr *)&lb->addr, &alen) ||
	    connect(lb->tx, (struct sockaddr *)&lb->addr, sizeof(lb->addr))) {
		int err = -errno;

		loopback_close(lb);
		return err;
	}
	return 0;
}

/* Up to max datagrams within PROBE_WAIT_MS; their sizes into sizes[]. */
static size_t loopback_receive(struct loopback *lb, size_t *sizes, size_t max)
{
	struct timespec t0, t;
	char buf[65536];
	size_t n = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (n < max) {
		struct pollfd p = { .fd = lb->rx, .events = POLLIN };
		long waited;
		ssize_t r;

		clock_gettime(CLOCK_MONOTONIC, &t);
		waited = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (waited >= PROBE_WAIT_MS || poll(&p, 1, (int)(PROBE_WAIT_MS - waited)) <= 0)
			break;
		r = recv(lb->rx, buf, sizeof(buf), 0);
		if (r >= 0)
			sizes[n++] = (size_t)r;
	}
	return n;
}

/* One sendmmsg(2) of two plain datagrams, as the mmsg backend without GSO. */
static void probe_sendmmsg(struct loopback *lb, struct host *h)
{
	char payload[2][100] = { { 0 } };
	struct iovec iov[2] = { { payload[0], 100 }, { payload[1], 100 } };
	struct mmsghdr mm[2] = { 0 };
	size_t sizes[2];
	int n;

	for (int i = 0; i < 2; i++) {
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	n = sendmmsg(lb->tx, mm, 2, 0);
	if (n < 0) {
		line(false, "sendmmsg", "%s", strerror(errno));
		return;
	}
	if (n != 2 || loopback_receive(lb, sizes, 2) != 2) {
		line(false, "sendmmsg", "sent %d of 2 messages, not both received on 127.0.0.1", n);
		return;
	}
	h->sendmmsg = true;
	line(true, "sendmmsg", "2 messages in one call arrived on 127.0.0.1");
}

static void probe_udp_segment_option(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int seg = GSO_PROBE_SEGMENT;

	if (fd < 0) {
		line(false, "UDP_SEGMENT", "no UDP socket: %s", strerror(errno));
		return;
	}
	if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)))
		line(false, "UDP_SEGMENT", "setsockopt refused: %s%s", strerror(errno),
		     errno == ENOPROTOOPT ? " (a kernel before 4.18 has no UDP GSO)" : "");
	else
		line(true, "UDP_SEGMENT", "setsockopt accepted on a UDP socket (gso_size %d)", seg);
	close(fd);
}

union gso_cmsg {
	char buf[CMSG_SPACE(sizeof(uint16_t))];
	struct cmsghdr align;
};

/* One GSO run as the mmsg backend sends it: a message with a UDP_SEGMENT
 * control message, in a sendmmsg(2). The receiver must see the segments. */
static void probe_gso_send(struct loopback *lb, struct host *h)
{
	static char payload[GSO_PROBE_SEGMENT * GSO_PROBE_SEGMENTS];
	struct iovec iov = { payload, sizeof(payload) };
	union gso_cmsg ctl = { { 0 } };
	struct mmsghdr mm = { .msg_hdr = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
	} };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mm.msg_hdr);
	uint16_t seg = GSO_PROBE_SEGMENT;
	size_t sizes[GSO_PROBE_SEGMENTS + 1], n, good = 0;

	cm->cmsg_level = SOL_UDP;
	cm->cmsg_type = UDP_SEGMENT;
	cm->cmsg_len = CMSG_LEN(sizeof(seg));
	memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
	if (sendmmsg(lb->tx, &mm, 1, 0) != 1) {
		snprintf(h->gso_why, sizeof(h->gso_why), "a GSO send on 127.0.0.1 failed: %s",
			 strerror(errno));
		line(false, "UDP GSO send", "%s", h->gso_why);
		return;
	}
	n = loopback_receive(lb, sizes, GSO_PROBE_SEGMENTS + 1);
	for (size_t i = 0; i < n; i++)
		good += sizes[i] == GSO_PROBE_SEGMENT;
	if (n != GSO_PROBE_SEGMENTS || good != n) {
		snprintf(h->gso_why, sizeof(h->gso_why),
			 "a %zu-byte GSO send arrived as %zu datagrams, not %d of %d bytes",
			 sizeof(payload), n, GSO_PROBE_SEGMENTS, GSO_PROBE_SEGMENT);
		line(false, "UDP GSO send", "%s", h->gso_why);
		return;
	}
	h->gso = true;
	line(true, "UDP GSO send", "%zu bytes with gso_size %d arrived as %d datagrams on 127.0.0.1",
	     sizeof(payload), GSO_PROBE_SEGMENT, GSO_PROBE_SEGMENTS);
}

static void probe_loopback(struct host *h)
{
	struct loopback lb;
	int ret = loopback_open(&lb);

	probe_udp_segment_option();
	if (ret) {
		line(false, "sendmmsg", "no UDP socket pair on 127.0.0.1: %s", strerror(-ret));
		line(false, "UDP GSO send", "no UDP socket pair on 127.0.0.1: %s", strerror(-ret));
		snprintf(h->gso_why, sizeof(h->gso_why), "no UDP socket on 127.0.0.1");
		return;
	}
	probe_sendmmsg(&lb, h);
	probe_gso_send(&lb, h);
	loopback_close(&lb);
}

/* ------------------------------------------------------------- interfaces */

static int interface_mtu(int fd, const char *ifname, int *mtu, bool *up)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFMTU, &ifr))
		return -errno;
	*mtu = ifr.ifr_mtu;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr))
		return -errno;
	*up = ifr.ifr_flags & IFF_UP;
	return 0;
}

/*
 * Since Linux 6.11 ("udp: Allow GSO transmit from devices with no checksum
 * offload") the kernel computes the checksum of a GSO run in software
 * instead of refusing it with EIO.
 */
static bool kernel_checksums_gso(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return false;
	return major > GSO_SW_CSUM_MAJOR ||
	       (major == GSO_SW_CSUM_MAJOR && minor >= GSO_SW_CSUM_MINOR);
}

static const char *checksum_offload(const struct uw_netdev_features *f)
{
	if (f->hw_csum)
		return f->udp_seg_known ? "tx-checksum-ip-generic" : "ETHTOOL_GTXCSUM";
	if (f->ip_csum && f->ipv6_csum)
		return "tx-checksum-ipv4, tx-checksum-ipv6";
	if (f->ip_csum)
		return "tx-checksum-ipv4 only: IPv6 GSO sends fail with EIO";
	if (f->ipv6_csum)
		return "tx-checksum-ipv6 only: IPv4 GSO sends fail with EIO";
	return NULL;
}

static void probe_interface_gso(int fd, const char *ifname)
{
	struct uw_netdev_features f;
	char thing[IF_NAMESIZE + 16];
	const char *csum, *seg;
	bool up = false;
	int mtu = 0, ret;

	snprintf(thing, sizeof(thing), "GSO via %s", ifname);
	ret = interface_mtu(fd, ifname, &mtu, &up);
	if (ret) {
		line(false, thing, "cannot read its MTU: %s", strerror(-ret));
		return;
	}
	ret = uw_netdev_features(fd, ifname, &f);
	if (ret) {
		line(false, thing, "mtu %d%s; its offloads cannot be read (ethtool: %s)", mtu,
		     up ? "" : ", down", strerror(-ret));
		return;
	}
	csum = checksum_offload(&f);
	if (!csum && kernel_checksums_gso()) {
		line(true, thing, "mtu %d%s; no TX checksum offload, but this kernel (>= %d.%d) checksums GSO runs in software (older ones refuse them with EIO)",
		     mtu, up ? "" : ", down", GSO_SW_CSUM_MAJOR, GSO_SW_CSUM_MINOR);
		return;
	}
	if (!csum) {
		line(false, thing, "mtu %d%s; no TX checksum offload: the kernel refuses GSO runs with EIO (the library then sends plain datagrams)",
		     mtu, up ? "" : ", down");
		return;
	}
	if (!f.udp_seg_known)
		seg = "segmentation: unknown";
	else if (f.udp_seg)
		seg = "segmented by the device (tx-udp-segmentation on)";
	else
		seg = "segmented in software (tx-udp-segmentation off)";
	line(true, thing, "mtu %d%s; TX checksum offload (%s); %s", mtu, up ? "" : ", down",
	     csum, seg);
}

static void probe_interfaces(struct if_nameindex *ifs)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		line(false, "interfaces", "no socket for the ioctls: %s", strerror(errno));
		return;
	}
	for (struct if_nameindex *i = ifs; i && i->if_index; i++)
		probe_interface_gso(fd, i->if_name);
	close(fd);
}

/* ------------------------------------------------------------- packet backend */

/* TPACKET_V2 and a two-frame TX ring, mapped and let go. */
static int tx_ring_setup(void)
{
	struct tpacket_req req = {
		.tp_block_size = 4096, .tp_block_nr = 1,
		.tp_frame_size = 2048, .tp_frame_nr = 2,
	};
	int version = TPACKET_V2, ret = 0;
	void *ring;
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);	/* protocol 0: receives nothing */

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) ||
	    setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req))) {
		ret = -errno;
		goto out;
	}
	ring = mmap(NULL, req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
		    MAP_SHARED, fd, 0);
	if (ring == MAP_FAILED)
		ret = -errno;
	else
		munmap(ring, req.tp_block_size * req.tp_block_nr);
out:
	close(fd);
	return ret;
}

static void probe_tx_ring(struct host *h)
{
	int ret = tx_ring_setup();

	h->tx_ring = !ret;
	if (!ret)
		line(true, "AF_PACKET TX_RING", "a TPACKET_V2 TX ring was set up and mapped");
	else if (ret == -EPERM || ret == -EACCES)
		line(false, "AF_PACKET TX_RING", "%s: an AF_PACKET socket needs CAP_NET_RAW",
		     strerror(-ret));
	else
		line(false, "AF_PACKET TX_RING", "%s", strerror(-ret));
}

static void probe_cap_net_raw(struct host *h)
{
	cap_flag_value_t eff = CAP_CLEAR, perm = CAP_CLEAR;
	cap_t caps = cap_get_proc();

	if (!caps) {
		line(false, "CAP_NET_RAW", "cannot read this process's capabilities: %s",
		     strerror(errno));
		return;
	}
	cap_get_flag(caps, CAP_NET_RAW, CAP_EFFECTIVE, &eff);
	cap_get_flag(caps, CAP_NET_RAW, CAP_PERMITTED, &perm);
	cap_free(caps);
	h->cap_net_raw = eff == CAP_SET;
	if (eff == CAP_SET)
		line(true, "CAP_NET_RAW", "in the effective set (the packet backend may open AF_PACKET sockets)");
	else if (perm == CAP_SET)
		line(false, "CAP_NET_RAW", "permitted but not effective");
	else
		line(false, "CAP_NET_RAW", "not held: the packet backend cannot open AF_PACKET sockets (setcap cap_net_raw+ep, or run as root)");
}

/* ------------------------------------------------------------- uring, txtime, memlock */

static int io_uring_sysctl(void)
{
	char buf[16];
	size_t len;

	if (uw_read_file("/proc/sys/kernel/io_uring_disabled", buf, sizeof(buf), &len))
		return -1;
	return atoi(buf);
}

static const char *io_uring_sysctl_meaning(int v)
{
	switch (v) {
	case -1: return "no kernel.io_uring_disabled sysctl";
	case 0:  return "kernel.io_uring_disabled = 0: enabled for all";
	case 1:  return "kernel.io_uring_disabled = 1: only for CAP_SYS_ADMIN or kernel.io_uring_group";
	default: return "kernel.io_uring_disabled = 2: disabled";
	}
}

static void probe_io_uring(struct host *h)
{
	struct io_uring_params p = { 0 };
	int sysctl = io_uring_sysctl();
	long fd = syscall(__NR_io_uring_setup, 4, &p);

	if (fd < 0) {
		line(false, "io_uring", "io_uring_setup: %s (%s)", strerror(errno),
		     io_uring_sysctl_meaning(sysctl));
		return;
	}
	close((int)fd);
	h->io_uring = true;
	line(true, "io_uring", "io_uring_setup works (%s)", io_uring_sysctl_meaning(sysctl));
}

static void probe_so_txtime(void)
{
	struct sock_txtime t = { .clockid = CLOCK_MONOTONIC };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		line(false, "SO_TXTIME", "no UDP socket: %s", strerror(errno));
		return;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_TXTIME, &t, sizeof(t)))
		line(false, "SO_TXTIME", "setsockopt refused: %s", strerror(errno));
	else
		line(true, "SO_TXTIME", "setsockopt accepted on a UDP socket (CLOCK_MONOTONIC, as fq expects)");
	close(fd);
}

static void fmt_limit(char *buf, size_t len, rlim_t v)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "unlimited");
	else
		uw_fmt_bytes(buf, len, (double)v);
}

static void probe_memlock(void)
{
	struct rlimit rl;
	char soft[32], hard[32];

	if (getrlimit(RLIMIT_MEMLOCK, &rl)) {
		line(false, "RLIMIT_MEMLOCK", "%s", strerror(errno));
		return;
	}
	fmt_limit(soft, sizeof(soft), rl.rlim_cur);
	fmt_limit(hard, sizeof(hard), rl.rlim_max);
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= ARENA_DEFAULT_KB * 1024ull)
		line(true, "RLIMIT_MEMLOCK", "soft %s, hard %s: room to lock the default %d KiB staging arena (io_uring fixed buffers)",
		     soft, hard, ARENA_DEFAULT_KB);
	else
		line(false, "RLIMIT_MEMLOCK", "soft %s, hard %s: less than the default %d KiB staging arena; a backend that registers it as fixed buffers (io_uring) cannot (ulimit -l)",
		     soft, hard, ARENA_DEFAULT_KB);
}

/* ------------------------------------------------------------- qdiscs */

static const struct uw_qdisc *root_qdisc(const struct uw_qdisc_list *l, unsigned int ifindex)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->q[i].ifindex == ifindex && l->q[i].parent == TC_H_ROOT)
			return &l->q[i];
	return NULL;
}

/* The children of a multiqueue root (mq, mqprio): how many, how many fq. */
static void child_qdiscs(const struct uw_qdisc_list *l, const struct uw_qdisc *root,
			 size_t *n, size_t *fq)
{
	*n = *fq = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct uw_qdisc *q = &l->q[i];

		if (q->ifindex != root->ifindex || q == root || q->parent == TC_H_INGRESS ||
		    TC_H_MAJ(q->parent) != TC_H_MAJ(root->handle))
			continue;
		(*n)++;
		*fq += !strcmp(q->kind, "fq");
	}
}

static void probe_qdisc(const struct uw_qdisc_list *l, const struct if_nameindex *ifc)
{
	const struct uw_qdisc *root = root_qdisc(l, ifc->if_index);
	char thing[IF_NAMESIZE + 16];
	size_t n, fq;

	snprintf(thing, sizeof(thing), "qdisc %s", ifc->if_name);
	if (!root) {
		line(false, thing, "no root qdisc reported (noop: the interface is down or has no queue)");
		return;
	}
	if (!strcmp(root->kind, "fq")) {
		line(true, thing, "root fq: departure times (SO_TXTIME) and pacing rates are honoured");
		return;
	}
	child_qdiscs(l, root, &n, &fq);
	if (n && fq == n) {
		line(true, thing, "root %s with fq on all %zu queues: departure times are honoured",
		     root->kind, n);
		return;
	}
	if (n)
		line(false, thing, "root %s with fq on %zu of %zu queues: only the library's own scheduler paces",
		     root->kind, fq, n);
	else
		line(false, thing, "root %s, not fq: only the library's own scheduler paces",
		     root->kind);
}

static void probe_qdiscs(const struct if_nameindex *ifs)
{
	struct uw_qdisc_list l;
	int ret = uw_qdisc_dump(&l);

	if (ret) {
		line(false, "qdiscs", "rtnetlink RTM_GETQDISC dump failed: %s", strerror(-ret));
		return;
	}
	for (const struct if_nameindex *i = ifs; i && i->if_index; i++)
		probe_qdisc(&l, i);
	uw_qdisc_list_free(&l);
}

/* ------------------------------------------------------------- pacing */

static ssize_t libc_recv(int fd, void *buf, size_t len, int flags)
{
	return recv(fd, buf, len, flags);
}

/* Which pacing a paced stream to dest gets: the kernel's (fq honours
 * SO_TXTIME) or the library's own timing wheel. Sends nothing: a route
 * lookup and a qdisc dump. */
static void probe_pacing(const char *dest, const char *backend)
{
	static const struct uw_nl_ops ops = {
		.socket = socket, .sendto = sendto, .recv = libc_recv, .close = close,
	};
	struct sockaddr_storage ss = { 0 };
	struct uw_egress e;
	char thing[96], dev[IF_NAMESIZE] = "?";
	int err;

	snprintf(thing, sizeof(thing), "pacing to %s", dest);
	if (inet_pton(AF_INET, dest, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
	} else if (inet_pton(AF_INET6, dest, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
	} else {
		line(false, thing, "not an IPv4 or IPv6 address");
		return;
	}
	err = uw_egress_lookup(&ops, (struct sockaddr *)&ss, &e);
	if (err) {
		line(false, thing, "no route (%s): the library's own scheduler paces once there is one",
		     strerror(-err));
		return;
	}
	if_indextoname(e.ifindex, dev);
	if (e.fq && uw_backend_lookup(backend)->txtime)
		line(true, thing, "via %s (root %s%s): the kernel releases each datagram at its "
		     "departure time (SO_TXTIME, fq); the library hands batches over ahead",
		     dev, e.root, e.children ? ", fq on every queue" : "");
	else if (e.fq)
		line(false, thing, "via %s (root %s), but the %s backend attaches no departure "
		     "times: the library's own scheduler (timing wheel) paces", dev, e.root, backend);
	else
		line(false, thing, "via %s (root %s, not fq): the library's own scheduler "
		     "(timing wheel) paces; jitter budgets above its wake-up precision are kept",
		     dev, e.root[0] ? e.root : "none");
}

/* ------------------------------------------------------------- verdict */

static void probe_library(const char *opt, struct host *h)
{
	char path[PATH_MAX], why[PATH_MAX + 256];

	h->library = !uw_find_library(opt, path, sizeof(path), why, sizeof(why));
	if (h->library)
		line(true, "library", "%s", path);
	else
		line(false, "library", "%s", why);
}

static bool judge_backend(const char *name, const struct host *h)
{
	char thing[32];

	snprintf(thing, sizeof(thing), "backend %s", name);
	if (!h->library) {
		line(false, thing, "the library is not found");
		return false;
	}
	if (!strcmp(name, "passthrough")) {
		line(true, thing, "one system call per datagram: runs anywhere");
		return true;
	}
	if (!strcmp(name, "mmsg")) {
		if (!h->sendmmsg) {
			line(false, thing, "sendmmsg does not work here");
			return false;
		}
		if (!h->gso) {
			line(true, thing, "sendmmsg works; warning: without UDP GSO (%s) it sends plain sendmmsg batches",
			     h->gso_why);
			return true;
		}
		line(true, thing, "sendmmsg and UDP GSO work");
		return true;
	}
	if (!strcmp(name, "auto")) {
		if (!h->sendmmsg) {
			line(false, thing, "sendmmsg does not work here");
			return false;
		}
		if (!h->io_uring) {
			line(true, thing, "io_uring_setup fails here: every batch goes by sendmmsg%s",
			     h->gso ? " with UDP GSO" : ", without UDP GSO");
			return true;
		}
		line(true, thing, "batches of 4 sockets or more in one io_uring submission, smaller "
		     "ones by sendmmsg%s", h->gso ? " with UDP GSO" : "; warning: without UDP GSO");
		return true;
	}
	if (!strcmp(name, "uring")) {
		if (!h->io_uring) {
			line(false, thing, "io_uring_setup fails here: the library would warn and send with mmsg");
			return false;
		}
		line(true, thing, "io_uring works%s", h->gso ? " and UDP GSO works" :
		     "; warning: without UDP GSO it sends plain datagrams");
		return true;
	}
	if (!strcmp(name, "packet")) {
		if (!h->cap_net_raw || !h->tx_ring) {
			line(false, thing, "TX_RING %s, CAP_NET_RAW %s: the library would warn and send with mmsg",
			     h->tx_ring ? "works" : "fails", h->cap_net_raw ? "held" : "not held");
			return false;
		}
		line(true, thing, "AF_PACKET TX_RING works and CAP_NET_RAW is held (local and "
		     "loopback destinations still go through the sockets)");
		return true;
	}
	line(false, thing, "unknown backend");
	return false;
}

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "lib",     required_argument, NULL, 'l' },
		{ "dest",    required_argument, NULL, 'd' },
		{ "help",    no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *backend = "auto", *lib = NULL, *dest = "192.0.2.1";
	struct if_nameindex *ifs;
	struct host h = { 0 };
	int c, ret;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': backend = optarg; break;
		case 'l': lib = optarg; break;
		case 'd': dest = optarg; break;
		case 'h':
			fputs(check_usage, stdout);
			uw_backend_help(stdout, "--backend B", "auto");
			fputs(check_usage_options, stdout);
			return UW_EXIT_OK;
		default:
			return uw_option_error("check", c, argv);
		}
	}
	if (optind < argc)
		return uw_usage_error("check", "unexpected argument '%s'", argv[optind]);
	ret = uw_check_backend_option("check", backend);
	if (ret)
		return ret;
	ifs = if_nameindex();
	probe_loopback(&h);
	probe_interfaces(ifs);
	probe_tx_ring(&h);
	probe_cap_net_raw(&h);
	probe_io_uring(&h);
	probe_so_txtime();
	probe_qdiscs(ifs);
	probe_pacing(dest, backend);
	probe_memlock();
	probe_library(lib, &h);
	if (ifs)
		if_freenameindex(ifs);
	return judge_backend(backend, &h) ? UW_EXIT_OK : UW_EXIT_FAIL;
}
