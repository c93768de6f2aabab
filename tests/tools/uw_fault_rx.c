/*
 * uw_fault_rx — the receiver of the fault matrix (test_faults.py).
 *
 * Binds one UDP socket and checks every datagram written by uw_fault_tx
 * (uw_payload.h) byte for byte: magic, flow, stamped length = received
 * length, the pattern. Unlike uw_receiver it says which sequence numbers
 * arrived (as ranges), so the test can tell, per datagram, whether what the
 * sender was told matches what happened.
 *
 * Stops on SIGUSR1/SIGTERM (then drains until --drain-ms without data) or
 * after --timeout-s. Ready signal: --ready-file gets {"port":P} (written
 * atomically). Result, one JSON object on stdout:
 *   count, bytes: intact datagrams of the flow, each sequence number once
 *   corrupt, foreign (not ours or another flow), dups, reorders
 *   rx_overflow: the kernel's drops on this socket (SO_RXQ_OVFL)
 *   delivered: [[first, last], ...] sequence ranges, inclusive
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uw_payload.h"

#define BATCH		64
#define BUF_SIZE	65536
#define MAX_SEQ		(1u << 20)

static struct {
	struct sockaddr_storage bind;
	socklen_t bind_len;
	const char *ready_file;
	uint32_t flow;
	unsigned int timeout_s, drain_ms;
} opt = { .timeout_s = 60, .drain_ms = 150 };

static volatile sig_atomic_t stop;

static struct {
	uint64_t count, bytes, corrupt, foreign, dups, reorders, rx_overflow;
	uint64_t max_seq;
	bool any;
	uint8_t *seen;		/* one byte per sequence number */
} st;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: uw_fault_rx --bind ADDR:PORT [--flow F] [--ready-file PATH]\n"
			"                   [--timeout-s S] [--drain-ms MS]\n");
	exit(2);
}

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "flow", required_argument, NULL, 'f' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ "timeout-s", required_argument, NULL, 't' },
		{ "drain-ms", required_argument, NULL, 'D' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_bind = false;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (uw_parse_addr(optarg, &opt.bind, &opt.bind_len))
				usage();
			have_bind = true;
			break;
		case 'f': opt.flow = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': opt.ready_file = optarg; break;
		case 't': opt.timeout_s = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'D': opt.drain_ms = (unsigned int)strtoul(optarg, NULL, 10); break;
		default:
			usage();
		}
	}
	if (optind != argc || !have_bind)
		usage();
}

static void must(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "uw_fault_rx: %s: %s\n", what, strerror(errno));
		exit(3);
	}
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	must(getsockname(fd, (struct sockaddr *)&ss, &len), "getsockname");
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void write_ready(int port)
{
	char tmp[4096];
	FILE *f;

	if (!opt.ready_file)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
	f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "uw_fault_rx: %s: %s\n", tmp, strerror(errno));
		exit(3);
	}
	fprintf(f, "{\"port\":%d}\n", port);
	fclose(f);
	must(rename(tmp, opt.ready_file), "rename ready file");
}

static int open_socket(void)
{
	int fd = socket(opt.bind.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;
	int rcvbuf = 8 << 20;

	must(fd, "socket");
	/* as root past rmem_max: the receiver must not be what loses data */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	must(setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)), "SO_RXQ_OVFL");
	must(bind(fd, (struct sockaddr *)&opt.bind, opt.bind_len), "bind");
	return fd;
}

static bool intact(const uint8_t *p, size_t len)
{
	uint32_t seed;
	uint8_t s0, s1;

	if (len < UW_HDR_LEN || get_le32(p + 24) != len)
		return false;
	seed = uw_seed(get_le32(p + 4), get_le64(p + 8));
	s0 = (uint8_t)seed;
	s1 = (uint8_t)((seed >> 8) | 1);
	for (size_t i = UW_HDR_LEN; i < len; i++)
		if (p[i] != (uint8_t)(s0 + i * s1 + (i >> 8)))
			return false;
	return true;
}

static void take(const uint8_t *p, size_t len)
{
	uint64_t seq;

	if (len < UW_HDR_LEN || get_le32(p) != UW_MAGIC || get_le32(p + 4) != opt.flow) {
		st.foreign++;
		return;
	}
	if (!intact(p, len)) {
		st.corrupt++;
		return;
	}
	seq = get_le64(p + 8);
	if (seq >= MAX_SEQ) {
		st.foreign++;
		return;
	}
	if (st.seen[seq]) {
		st.dups++;
		return;
	}
	st.seen[seq] = 1;
	if (st.any && seq < st.max_seq)
		st.reorders++;
	if (!st.any || seq > st.max_seq)
		st.max_seq = seq;
	st.any = true;
	st.count++;
	st.bytes += len;
}

static void note_overflow(struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
			uint32_t v;

			memcpy(&v, CMSG_DATA(c), sizeof(v));
			st.rx_overflow = v;
		}
}

/* Receives what is there; the number of datagrams. */
static int receive_some(int fd, uint8_t (*bufs)[BUF_SIZE])
{
	static struct mmsghdr v[BATCH];
	static struct iovec iov[BATCH];
	static char ctl[BATCH][CMSG_SPACE(sizeof(uint32_t))];
	int n;

	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ bufs[i], BUF_SIZE };
		memset(&v[i], 0, sizeof(v[i]));
		v[i].msg_hdr.msg_iov = &iov[i];
		v[i].msg_hdr.msg_iovlen = 1;
		v[i].msg_hdr.msg_control = ctl[i];
		v[i].msg_hdr.msg_controllen = sizeof(ctl[i]);
	}
	n = recvmmsg(fd, v, BATCH, MSG_DONTWAIT, NULL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : (must(-1, "recvmmsg"), 0);
	for (int i = 0; i < n; i++) {
		if (v[i].msg_hdr.msg_flags & MSG_TRUNC)
			st.corrupt++;
		else
			take(bufs[i], v[i].msg_len);
		note_overflow(&v[i].msg_hdr);
	}
	return n;
}

static void print_report(void)
{
	bool first = true;

	printf("{\"count\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"corrupt\":%" PRIu64
	       ",\"foreign\":%" PRIu64 ",\"dups\":%" PRIu64 ",\"reorders\":%" PRIu64
	       ",\"rx_overflow\":%" PRIu64 ",\"delivered\":[",
	       st.count, st.bytes, st.corrupt, st.foreign, st.dups, st.reorders, st.rx_overflow);
	for (uint64_t s = 0; st.any && s <= st.max_seq; s++) {
		uint64_t e = s;

		if (!st.seen[s])
			continue;
		while (e + 1 <= st.max_seq && st.seen[e + 1])
			e++;
		printf("%s[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",", s, e);
		first = false;
		s = e;
	}
	printf("]}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static uint8_t bufs[BATCH][BUF_SIZE];
	struct sigaction sa = { .sa_handler = on_stop };
	uint64_t deadline, idle_since = 0;
	int fd;

	parse_options(argc, argv);
	st.seen = calloc(MAX_SEQ, 1);
	if (!st.seen)
		return 3;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	fd = open_socket();
	write_ready(bound_port(fd));
	deadline = mono_ns() + (uint64_t)opt.timeout_s * 1000000000ull;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = mono_ns();

		if (now > deadline)
			break;
		if (stop) {
			if (!idle_since)
				idle_since = now;
			if (now - idle_since > (uint64_t)opt.drain_ms * 1000000ull)
				break;
		}
		if (poll(&p, 1, 20) > 0 && receive_some(fd, bufs) > 0)
			idle_since = 0;
	}
	print_report();
	return 0;
}
