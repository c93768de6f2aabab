/*
 * uw_receiver — verifying receiver for the udpweave integration tests.
 *
 * Binds one or more UDP sockets, receives with recvmmsg in a tight loop and
 * checks every datagram written by uw_sender (format: see uw_sender.c):
 * every byte, per-flow sequence (gaps, duplicates, reorders), sizes, the
 * destination port, source address, TOS/traffic class and TTL/hop limit of
 * each flow, and the delay from the stamped send time (CLOCK_MONOTONIC) to
 * the kernel receive timestamp (SO_TIMESTAMPNS, converted to monotonic).
 * Kernel-counted drops on its sockets (SO_RXQ_OVFL) are reported as
 * rx_overflow: a receiver that overflowed says nothing about the sender.
 *
 * Stops on the first of: --expect N datagrams (then lingers --linger-ms to
 * catch extras), --idle-ms without data once data has arrived, --timeout-s,
 * SIGUSR1/SIGTERM/SIGINT (then drains until 200 ms without data).
 *
 * Multicast: a --bind address that is a group is joined on the interface
 * named by --join (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP), after all binds.
 *
 * Ready signal: "ready ports=P1,P2" on stderr and, with --ready-file, a file
 * containing {"ports":[P1,P2]} (written atomically).
 * Result: one JSON object on stdout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uw_payload.h"

#define MAX_SOCKS    32
#define BATCH        64
#define BUF_SIZE     65536
#define FLOW_SLOTS   16384	/* power of two */
#define FLOW_SIZES   64
#define DELAY_BUCKET_US 10
#define DELAY_BUCKETS   200000	/* 2 s in 10 us buckets */

/* ---------------------------------------------------------------- payload */

/* ---------------------------------------------------------------- state */

struct size_count {
	uint32_t size;
	uint64_t count;
};

struct rx_flow {
	bool used;
	uint32_t id;
	uint64_t count, bytes;
	uint64_t first_seq, max_seq;
	uint64_t dups, reorders, corrupt;
	uint64_t *seen;		/* bitmap of sequence numbers */
	size_t seen_words;
	struct size_count sizes[FLOW_SIZES];
	int nsizes;
	uint64_t sizes_other;
	int port;		/* destination port of the first datagram */
	uint64_t port_mismatch;
	uint64_t first_arrival, last_arrival;	/* per-port arrival index */
	uint64_t max_delay_ns;
	char src[64];		/* source address:port of the first datagram */
	uint64_t src_mismatch;
	int tos, ttl;		/* of the first datagram (-1: not reported) */
	uint64_t tos_mismatch, ttl_mismatch;
};

/* What the kernel told about one datagram besides its bytes. */
struct rx_meta {
	uint64_t rx_ns;		/* kernel receive time, CLOCK_MONOTONIC */
	uint64_t user_ns;	/* when recvmmsg returned */
	int tos, ttl;		/* IP TOS / IPv6 traffic class, TTL / hop limit */
	char src[64];
	bool truncated;
};

struct rx_sock {
	int fd;
	int port;
	int family;
	struct sockaddr_storage addr;	/* as bound */
	uint64_t arrivals;
	uint64_t zero_len;
	uint32_t overflow;	/* SO_RXQ_OVFL: drops counted by the kernel */
};

static struct {
	int idle_ms;
	int linger_ms;
	double timeout_s;
	uint64_t expect;
	long rcvbuf;
	const char *ready_file;
	const char *join_if;	/* --join: interface for multicast binds */
} opt = {
	.idle_ms = 1500,
	.linger_ms = 100,
	.timeout_s = 60,
	.rcvbuf = 32 << 20,
};

static struct rx_sock socks[MAX_SOCKS];
static int nsocks;
static struct rx_flow *flows;
static int nflows;

static struct {
	uint64_t datagrams, bytes, zero_len;
	uint64_t short_len, bad_magic, bad_length, truncated, corrupt;
	uint64_t delay_hist[DELAY_BUCKETS + 1];
	uint64_t delay_n, delay_max_ns, delay_user_max_ns;
	bool kernel_ts;
} st;

static volatile sig_atomic_t stop_signal;
static int64_t rt_minus_mono_ns;	/* CLOCK_REALTIME - CLOCK_MONOTONIC */

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* ---------------------------------------------------------------- setup */

static void usage(void)
{
	fprintf(stderr,
		"usage: uw_receiver [--bind ADDR:PORT ...] [--expect N] [--idle-ms MS]\n"
		"                   [--linger-ms MS] [--timeout-s S] [--rcvbuf BYTES]\n"
		"                   [--ready-file PATH] [--join IFNAME]\n"
		"  default bind 127.0.0.1:0; IPv6 as [::1]:0\n"
		"  --join IFNAME: join every multicast --bind address on IFNAME\n");
	exit(2);
}

static void bind_one(const char *arg)
{
	struct sockaddr_storage ss;
	char host[80];
	const char *port_s;
	size_t hlen;
	socklen_t len;
	int fd, one = 1, family;
	struct rx_sock *s;

	if (nsocks >= MAX_SOCKS)
		usage();
	memset(&ss, 0, sizeof(ss));
	if (arg[0] == '[') {
		const char *rb = strchr(arg, ']');

		if (!rb || rb[1] != ':')
			usage();
		hlen = (size_t)(rb - arg - 1);
		port_s = rb + 2;
		if (hlen >= sizeof(host))
			usage();
		memcpy(host, arg + 1, hlen);
	} else {
		const char *colon = strrchr(arg, ':');

		if (!colon)
			usage();
		hlen = (size_t)(colon - arg);
		port_s = colon + 1;
		if (hlen >= sizeof(host))
			usage();
		memcpy(host, arg, hlen);
	}
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		family = AF_INET;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)atoi(port_s));
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		family = AF_INET6;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)atoi(port_s));
		len = sizeof(*sin6);
	} else {
		fprintf(stderr, "uw_receiver: bad address %s\n", arg);
		usage();
	}

	fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("uw_receiver: socket");
		exit(3);
	}
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &opt.rcvbuf, sizeof(int)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt.rcvbuf, sizeof(int));
	if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) == 0)
		st.kernel_ts = true;
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	if (family == AF_INET) {
		setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &one, sizeof(one));
	} else {
		setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		fprintf(stderr, "uw_receiver: bind %s: %s\n", arg, strerror(errno));
		exit(3);
	}
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	s = &socks[nsocks++];
	s->fd = fd;
	s->family = family;
	s->addr = ss;
	s->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					  : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static bool is_group(const struct rx_sock *s)
{
	if (s->family == AF_INET)
		return IN_MULTICAST(ntohl(((const struct sockaddr_in *)&s->addr)->sin_addr.s_addr));
	return IN6_IS_ADDR_MULTICAST(&((const struct sockaddr_in6 *)&s->addr)->sin6_addr);
}

/* Joins every bound group on the --join interface. */
static void join_groups(void)
{
	unsigned int ifindex;

	if (!opt.join_if)
		return;
	ifindex = if_nametoindex(opt.join_if);
	if (!ifindex) {
		fprintf(stderr, "uw_receiver: --join %s: %s\n", opt.join_if, strerror(errno));
		exit(3);
	}
	for (int i = 0; i < nsocks; i++) {
		struct rx_sock *s = &socks[i];
		int rc;

		if (!is_group(s))
			continue;
		if (s->family == AF_INET) {
			struct ip_mreqn m = {
				.imr_multiaddr = ((struct sockaddr_in *)&s->addr)->sin_addr,
				.imr_ifindex = (int)ifindex,
			};

			rc = setsockopt(s->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m));
		} else {
			struct ipv6_mreq m = {
				.ipv6mr_multiaddr = ((struct sockaddr_in6 *)&s->addr)->sin6_addr,
				.ipv6mr_interface = ifindex,
			};

			rc = setsockopt(s->fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m));
		}
		if (rc < 0) {
			fprintf(stderr, "uw_receiver: join group on %s: %s\n", opt.join_if,
				strerror(errno));
			exit(3);
		}
	}
}

static void announce_ready(void)
{
	char ports[MAX_SOCKS * 8] = "", json[MAX_SOCKS * 8 + 32];
	size_t used = 0;

	for (int i = 0; i < nsocks; i++)
		used += (size_t)snprintf(ports + used, sizeof(ports) - used, "%s%d", i ? "," : "",
					 socks[i].port);
	fprintf(stderr, "ready ports=%s\n", ports);
	if (opt.ready_file) {
		char tmp[4096];
		FILE *f;

		snprintf(json, sizeof(json), "{\"ports\":[%s]}\n", ports);
		snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
		f = fopen(tmp, "w");
		if (!f || fputs(json, f) < 0 || fclose(f) != 0 || rename(tmp, opt.ready_file) < 0) {
			perror("uw_receiver: ready file");
			exit(3);
		}
	}
}

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "expect", required_argument, NULL, 'e' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ "linger-ms", required_argument, NULL, 'l' },
		{ "timeout-s", required_argument, NULL, 't' },
		{ "rcvbuf", required_argument, NULL, 'r' },
		{ "ready-file", required_argument, NULL, 'R' },
		{ "join", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	bool bound = false;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'b': bind_one(optarg); bound = true; break;
		case 'e': opt.expect = strtoull(optarg, NULL, 10); break;
		case 'i': opt.idle_ms = atoi(optarg); break;
		case 'l': opt.linger_ms = atoi(optarg); break;
		case 't': opt.timeout_s = atof(optarg); break;
		case 'r': opt.rcvbuf = atol(optarg); break;
		case 'R': opt.ready_file = optarg; break;
		case 'j': opt.join_if = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	if (!bound)
		bind_one("127.0.0.1:0");
	join_groups();
}

/* ---------------------------------------------------------------- checks */

static struct rx_flow *flow_get(uint32_t id)
{
	uint32_t h = (id * 2654435761u) & (FLOW_SLOTS - 1);

	for (uint32_t i = 0; i < FLOW_SLOTS; i++) {
		struct rx_flow *f = &flows[(h + i) & (FLOW_SLOTS - 1)];

		if (!f->used) {
			f->used = true;
			f->id = id;
			nflows++;
			return f;
		}
		if (f->id == id)
			return f;
	}
	fprintf(stderr, "uw_receiver: too many flows\n");
	exit(3);
}

/* Marks seq as seen; returns true if it had been seen before. */
static bool seen_mark(struct rx_flow *f, uint64_t seq)
{
	size_t word = (size_t)(seq / 64);
	uint64_t bit = 1ull << (seq % 64);
	bool was;

	if (seq > (1ull << 32))
		return false;	/* absurd sequence number: counted as corrupt elsewhere */
	if (word >= f->seen_words) {
		size_t n = f->seen_words ? f->seen_words : 64;

		while (n <= word)
			n *= 2;
		f->seen = realloc(f->seen, n * sizeof(uint64_t));
		if (!f->seen) {
			fprintf(stderr, "uw_receiver: out of memory\n");
			exit(3);
		}
		memset(f->seen + f->seen_words, 0, (n - f->seen_words) * sizeof(uint64_t));
		f->seen_words = n;
	}
	was = f->seen[word] & bit;
	f->seen[word] |= bit;
	return was;
}

static void count_size(struct rx_flow *f, uint32_t len)
{
	for (int i = 0; i < f->nsizes; i++)
		if (f->sizes[i].size == len) {
			f->sizes[i].count++;
			return;
		}
	if (f->nsizes < FLOW_SIZES) {
		f->sizes[f->nsizes].size = len;
		f->sizes[f->nsizes++].count = 1;
		return;
	}
	f->sizes_other++;
}

static void record_delay(struct rx_flow *f, uint64_t stamp_ns, uint64_t rx_ns, uint64_t user_ns)
{
	uint64_t d = rx_ns > stamp_ns ? rx_ns - stamp_ns : 0;
	uint64_t du = user_ns > stamp_ns ? user_ns - stamp_ns : 0;
	uint64_t b = d / 1000 / DELAY_BUCKET_US;

	st.delay_hist[b < DELAY_BUCKETS ? b : DELAY_BUCKETS]++;
	st.delay_n++;
	if (d > st.delay_max_ns)
		st.delay_max_ns = d;
	if (du > st.delay_user_max_ns)
		st.delay_user_max_ns = du;
	if (d > f->max_delay_ns)
		f->max_delay_ns = d;
}

/* Source, TOS and TTL must stay what they were for the flow's first datagram. */
static void check_meta(struct rx_flow *f, const struct rx_meta *m)
{
	if (f->count == 1) {
		snprintf(f->src, sizeof(f->src), "%s", m->src);
		f->tos = m->tos;
		f->ttl = m->ttl;
		return;
	}
	if (strcmp(f->src, m->src) != 0)
		f->src_mismatch++;
	if (f->tos != m->tos)
		f->tos_mismatch++;
	if (f->ttl != m->ttl)
		f->ttl_mismatch++;
}

static void check_datagram(struct rx_sock *s, const uint8_t *p, size_t len, const struct rx_meta *m)
{
	static uint8_t expect[BUF_SIZE];
	struct rx_flow *f;
	uint32_t id;
	uint64_t seq;

	st.datagrams++;
	st.bytes += len;
	s->arrivals++;
	if (len == 0) {
		st.zero_len++;
		s->zero_len++;
		return;
	}
	if (m->truncated) {
		st.truncated++;
		return;
	}
	if (len < UW_HDR_LEN) {
		st.short_len++;
		return;
	}
	if (get_le32(p) != UW_MAGIC) {
		st.bad_magic++;
		return;
	}
	id = get_le32(p + 4);
	seq = get_le64(p + 8);
	f = flow_get(id);
	f->count++;
	f->bytes += len;
	count_size(f, (uint32_t)len);
	if (f->count == 1) {
		f->port = s->port;
		f->first_seq = seq;
		f->first_arrival = s->arrivals;
	} else if (f->port != s->port) {
		f->port_mismatch++;
	}
	f->last_arrival = s->arrivals;
	check_meta(f, m);
	if (get_le32(p + 24) != len) {
		st.bad_length++;
		f->corrupt++;
		return;
	}
	uw_fill_pattern(expect, len, uw_seed(id, seq));
	if (memcmp(p + UW_HDR_LEN, expect + UW_HDR_LEN, len - UW_HDR_LEN) != 0) {
		st.corrupt++;
		f->corrupt++;
		return;
	}
	if (seen_mark(f, seq))
		f->dups++;
	else if (f->count > 1 && seq < f->max_seq)
		f->reorders++;
	if (f->count == 1 || seq > f->max_seq)
		f->max_seq = seq;
	record_delay(f, get_le64(p + 16), m->rx_ns, m->user_ns);
}

/* ---------------------------------------------------------------- receive */

struct rx_batch {
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_storage names[BATCH];
	char ctrl[BATCH][256];
	uint8_t *bufs;
};

static void format_src(const struct sockaddr_storage *ss, char *out, size_t outsz)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(out, outsz, "%s:%d", host, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(out, outsz, "[%s]:%d", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, outsz, "?");
	}
}

static int cmsg_int(const struct cmsghdr *c)
{
	int v = 0;

	if (c->cmsg_len >= CMSG_LEN(sizeof(int)))
		memcpy(&v, CMSG_DATA(c), sizeof(v));
	else
		v = *(const uint8_t *)CMSG_DATA(c);	/* IP_TOS is one byte */
	return v;
}

static void read_meta(struct msghdr *mh, struct rx_sock *s, struct rx_meta *m)
{
	m->rx_ns = m->user_ns;
	m->tos = m->ttl = -1;
	m->truncated = (mh->msg_flags & MSG_TRUNC) != 0;
	format_src(mh->msg_name, m->src, sizeof(m->src));
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(c), sizeof(ts));
			m->rx_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec -
				   (uint64_t)rt_minus_mono_ns;
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
			uint32_t drops;

			memcpy(&drops, CMSG_DATA(c), sizeof(drops));
			if (drops > s->overflow)
				s->overflow = drops;
		} else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) ||
			   (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS)) {
			m->tos = cmsg_int(c);
		} else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
			   (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
			m->ttl = cmsg_int(c);
		}
	}
}

/* Receives everything queued on s; returns the number of datagrams. */
static int drain_socket(struct rx_sock *s, struct rx_batch *b)
{
	int total = 0;

	for (;;) {
		int n;
		uint64_t user_ns;

		for (int i = 0; i < BATCH; i++) {
			b->iov[i].iov_base = b->bufs + (size_t)i * BUF_SIZE;
			b->iov[i].iov_len = BUF_SIZE;
			memset(&b->msgs[i].msg_hdr, 0, sizeof(b->msgs[i].msg_hdr));
			b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
			b->msgs[i].msg_hdr.msg_iovlen = 1;
			b->msgs[i].msg_hdr.msg_name = &b->names[i];
			b->msgs[i].msg_hdr.msg_namelen = sizeof(b->names[i]);
			b->msgs[i].msg_hdr.msg_control = b->ctrl[i];
			b->msgs[i].msg_hdr.msg_controllen = sizeof(b->ctrl[i]);
		}
		n = recvmmsg(s->fd, b->msgs, BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return total;
		user_ns = clock_ns(CLOCK_MONOTONIC);
		for (int i = 0; i < n; i++) {
			struct rx_meta m = { .user_ns = user_ns };

			read_meta(&b->msgs[i].msg_hdr, s, &m);
			check_datagram(s, b->iov[i].iov_base, b->msgs[i].msg_len, &m);
		}
		total += n;
		if (n < BATCH)
			return total;
	}
}

static const char *receive_loop(void)
{
	static struct rx_batch b;
	struct pollfd pfds[MAX_SOCKS];
	uint64_t start = clock_ns(CLOCK_MONOTONIC), last_rx = 0, signal_at = 0, expect_at = 0;
	uint64_t hard = start + (uint64_t)(opt.timeout_s * 1e9);

	b.bufs = malloc((size_t)BATCH * BUF_SIZE);
	if (!b.bufs)
		exit(3);
	for (int i = 0; i < nsocks; i++) {
		pfds[i].fd = socks[i].fd;
		pfds[i].events = POLLIN;
	}
	for (;;) {
		uint64_t now, deadline = hard;
		int got = 0, timeout_ms;
		const char *reason = "timeout";

		for (int i = 0; i < nsocks; i++)
			got += drain_socket(&socks[i], &b);
		now = clock_ns(CLOCK_MONOTONIC);
		if (got)
			last_rx = now;
		if (stop_signal && !signal_at)
			signal_at = now;
		if (opt.expect && st.datagrams >= opt.expect && !expect_at)
			expect_at = now;
		if (got)
			continue;

		/* nothing queued: decide how long to wait */
		if (last_rx && opt.idle_ms > 0 &&
		    last_rx + (uint64_t)opt.idle_ms * 1000000ull < deadline) {
			deadline = last_rx + (uint64_t)opt.idle_ms * 1000000ull;
			reason = "idle";
		}
		if (expect_at && expect_at + (uint64_t)opt.linger_ms * 1000000ull < deadline) {
			deadline = expect_at + (uint64_t)opt.linger_ms * 1000000ull;
			reason = "expect";
		}
		if (signal_at) {
			uint64_t quiet = (last_rx > signal_at ? last_rx : signal_at) + 200000000ull;

			if (quiet < deadline) {
				deadline = quiet;
				reason = "signal";
			}
		}
		if (now >= deadline)
			return reason;
		timeout_ms = (int)((deadline - now + 999999) / 1000000);
		if (timeout_ms > 100)
			timeout_ms = 100;	/* re-check the signal flag */
		poll(pfds, (nfds_t)nsocks, timeout_ms);
	}
}

/* ---------------------------------------------------------------- report */

static uint64_t missing_of(const struct rx_flow *f)
{
	uint64_t seen = 0;

	if (!f->count || f->max_seq > (1ull << 32))
		return 0;
	for (uint64_t s = 0; s <= f->max_seq; s++)
		seen += (f->seen[s / 64] >> (s % 64)) & 1;
	return f->max_seq + 1 - seen;
}

static double delay_percentile_us(double p)
{
	uint64_t want = (uint64_t)(p * (double)st.delay_n), acc = 0;

	if (!st.delay_n)
		return 0;
	if (want >= st.delay_n)
		want = st.delay_n - 1;
	for (int i = 0; i <= DELAY_BUCKETS; i++) {
		acc += st.delay_hist[i];
		if (acc > want)
			return (double)i * DELAY_BUCKET_US;
	}
	return (double)st.delay_max_ns / 1000.0;
}

static int cmp_flow(const void *a, const void *b)
{
	const struct rx_flow *x = *(struct rx_flow *const *)a, *y = *(struct rx_flow *const *)b;

	return x->id < y->id ? -1 : x->id > y->id;
}

static void print_report(const char *reason)
{
	struct rx_flow **list = calloc((size_t)nflows + 1, sizeof(*list));
	uint32_t overflow = 0;
	int n = 0;

	for (int i = 0; i < FLOW_SLOTS; i++)
		if (flows[i].used)
			list[n++] = &flows[i];
	qsort(list, (size_t)n, sizeof(*list), cmp_flow);
	for (int i = 0; i < nsocks; i++)
		overflow += socks[i].overflow;

	printf("{\"stop_reason\":\"%s\",\"datagrams\":%" PRIu64 ",\"bytes\":%" PRIu64
	       ",\"zero_len\":%" PRIu64 ",\"short\":%" PRIu64 ",\"bad_magic\":%" PRIu64
	       ",\"bad_length\":%" PRIu64 ",\"truncated\":%" PRIu64 ",\"corrupt\":%" PRIu64
	       ",\"rx_overflow\":%u,",
	       reason, st.datagrams, st.bytes, st.zero_len, st.short_len, st.bad_magic,
	       st.bad_length, st.truncated, st.corrupt, overflow);
	printf("\"delay_us\":{\"source\":\"%s\",\"n\":%" PRIu64 ",\"p50\":%.0f,\"p99\":%.0f,"
	       "\"max\":%.1f,\"max_user\":%.1f},",
	       st.kernel_ts ? "kernel" : "user", st.delay_n, delay_percentile_us(0.50),
	       delay_percentile_us(0.99), (double)st.delay_max_ns / 1000.0,
	       (double)st.delay_user_max_ns / 1000.0);
	printf("\"ports\":[");
	for (int i = 0; i < nsocks; i++)
		printf("%s{\"port\":%d,\"datagrams\":%" PRIu64 ",\"zero_len\":%" PRIu64
		       ",\"rx_overflow\":%u}",
		       i ? "," : "", socks[i].port, socks[i].arrivals, socks[i].zero_len,
		       socks[i].overflow);
	printf("],\"flows\":{");
	for (int i = 0; i < n; i++) {
		struct rx_flow *f = list[i];

		printf("%s\"%u\":{\"count\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"first_seq\":%" PRIu64
		       ",\"last_seq\":%" PRIu64 ",\"missing\":%" PRIu64 ",\"dups\":%" PRIu64
		       ",\"reorders\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",\"port\":%d"
		       ",\"port_mismatch\":%" PRIu64 ",\"first_arrival\":%" PRIu64
		       ",\"last_arrival\":%" PRIu64 ",\"max_delay_us\":%.1f,\"src\":\"%s\""
		       ",\"src_mismatch\":%" PRIu64 ",\"tos\":%d,\"tos_mismatch\":%" PRIu64
		       ",\"ttl\":%d,\"ttl_mismatch\":%" PRIu64 ",\"sizes\":{",
		       i ? "," : "", f->id, f->count, f->bytes, f->first_seq, f->max_seq,
		       missing_of(f), f->dups, f->reorders, f->corrupt, f->port, f->port_mismatch,
		       f->first_arrival, f->last_arrival, (double)f->max_delay_ns / 1000.0, f->src,
		       f->src_mismatch, f->tos, f->tos_mismatch, f->ttl, f->ttl_mismatch);
		for (int k = 0; k < f->nsizes; k++)
			printf("%s\"%u\":%" PRIu64, k ? "," : "", f->sizes[k].size, f->sizes[k].count);
		if (f->sizes_other)
			printf("%s\"other\":%" PRIu64, f->nsizes ? "," : "", f->sizes_other);
		printf("}}");
	}
	printf("}}\n");
	fflush(stdout);
	free(list);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	const char *reason;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;	/* no SA_RESTART: poll returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	flows = calloc(FLOW_SLOTS, sizeof(*flows));
	if (!flows)
		return 3;
	parse_options(argc, argv);
	rt_minus_mono_ns = (int64_t)(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC));
	announce_ready();
	reason = receive_loop();
	print_report(reason);
	return 0;
}
