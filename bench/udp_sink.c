/* udp_sink — counting UDP receiver for the udpweave benchmarks.
 *
 * Binds one socket per port (--port P … P+--ports-1) on --addr (default the
 * wildcard, so every address of the namespace is covered), sets a large
 * SO_RCVBUFFORCE, and drains with recvmmsg.  Datagrams tagged by udp_blast
 * (magic, flow, per-flow sequence) are checked per flow: received count,
 * sequence gaps, reordering/duplicates; sizes are checked against --size.
 *
 * Prints "ready" on stdout once every socket is bound, then one JSON object
 * when it stops: after --idle-ms without data (once data has arrived), on
 * SIGTERM/SIGINT (after draining what is queued), or at --time-limit.
 *
 * This is a bench tool: it exits on setup errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BLAST_MAGIC	0x55574231u
#define MAX_FLOWS	4096
#define MAX_PORTS	1024
#define BATCH		64
#define BUF_BYTES	65536

struct tag {
	uint32_t magic;
	uint32_t flow;
	uint64_t seq;
};

struct flow {
	uint64_t next_seq;
	uint64_t received;
};

struct options {
	const char *addr;
	int port;
	int ports;
	size_t size;
	int rcvbuf;
	int idle_ms;
	double time_limit;
};

struct sink {
	struct options opt;
	int fds[MAX_PORTS];
	int epfd;
	struct flow *flows;
	uint64_t received, bytes, bad_size, untagged, gaps, reordered;
	int flows_seen;
	double t_first, t_last;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	stop_requested = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "udp_sink: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: udp_sink [--addr ADDR] [--port P] [--ports N] [--size BYTES]\n"
		"                [--rcvbuf BYTES] [--idle-ms MS] [--time-limit S]\n");
	exit(2);
}

static void parse_options(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "ports", required_argument, NULL, 'P' },
		{ "size", required_argument, NULL, 's' },
		{ "rcvbuf", required_argument, NULL, 'r' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ "time-limit", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	*o = (struct options){
		.addr = "0.0.0.0", .port = 9000, .ports = 1,
		.rcvbuf = 64 << 20, .idle_ms = 500, .time_limit = 60,
	};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': o->addr = optarg; break;
		case 'p': o->port = atoi(optarg); break;
		case 'P': o->ports = atoi(optarg); break;
		case 's': o->size = strtoul(optarg, NULL, 0); break;
		case 'r': o->rcvbuf = atoi(optarg); break;
		case 'i': o->idle_ms = atoi(optarg); break;
		case 't': o->time_limit = atof(optarg); break;
		default: usage();
		}
	}
	if (o->ports < 1 || o->ports > MAX_PORTS || o->port < 1 ||
	    o->port + o->ports - 1 > 65535 || o->time_limit <= 0)
		usage();
}

static int bind_socket(const char *addr, int port, int rcvbuf)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd, one = 1;

	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
			usage();
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
			usage();
		len = sizeof(*s4);
	}
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		die("SO_RCVBUF");
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		die("bind");
	return fd;
}

static void open_sockets(struct sink *k)
{
	int i;

	k->epfd = epoll_create1(0);
	if (k->epfd < 0)
		die("epoll_create1");
	for (i = 0; i < k->opt.ports; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

		k->fds[i] = bind_socket(k->opt.addr, k->opt.port + i, k->opt.rcvbuf);
		if (epoll_ctl(k->epfd, EPOLL_CTL_ADD, k->fds[i], &ev) < 0)
			die("epoll_ctl");
	}
}

static void count_datagram(struct sink *k, const char *buf, size_t len)
{
	struct tag t;
	struct flow *f;

	k->received++;
	k->bytes += len;
	if (k->opt.size && len != k->opt.size)
		k->bad_size++;
	if (len < sizeof(t)) {
		k->untagged++;
		return;
	}
	memcpy(&t, buf, sizeof(t));
	if (t.magic != BLAST_MAGIC || t.flow >= MAX_FLOWS) {
		k->untagged++;
		return;
	}
	f = &k->flows[t.flow];
	if (!f->received++)
		k->flows_seen++;
	if (t.seq == f->next_seq) {
		f->next_seq++;
	} else if (t.seq > f->next_seq) {
		k->gaps += t.seq - f->next_seq;
		f->next_seq = t.seq + 1;
	} else {
		k->reordered++;
	}
}

/* Read everything queued on fd; returns the number of datagrams. */
static long drain_socket(struct sink *k, int fd, char *bufs,
			 struct mmsghdr *m, struct iovec *iov)
{
	long total = 0;
	int i, r;

	for (;;) {
		for (i = 0; i < BATCH; i++) {
			iov[i] = (struct iovec){ bufs + (size_t)i * BUF_BYTES, BUF_BYTES };
			m[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1 };
		}
		r = recvmmsg(fd, m, BATCH, MSG_DONTWAIT, NULL);
		if (r <= 0)
			break;
		for (i = 0; i < r; i++)
			count_datagram(k, iov[i].iov_base, m[i].msg_len);
		total += r;
	}
	if (total) {
		k->t_last = now_s();
		if (!k->t_first)
			k->t_first = k->t_last;
	}
	return total;
}

static void drain_all(struct sink *k, char *bufs, struct mmsghdr *m,
		      struct iovec *iov)
{
	int i;

	for (i = 0; i < k->opt.ports; i++)
		drain_socket(k, k->fds[i], bufs, m, iov);
}

static void receive_loop(struct sink *k)
{
	static struct mmsghdr m[BATCH];
	static struct iovec iov[BATCH];
	char *bufs = malloc((size_t)BATCH * BUF_BYTES);
	double t_start = now_s();

	if (!bufs)
		die("malloc");
	while (!stop_requested) {
		struct epoll_event ev[64];
		double t = now_s();
		int n, i;

		if (t - t_start > k->opt.time_limit)
			break;
		if (k->received && (t - k->t_last) * 1000 > k->opt.idle_ms)
			break;
		n = epoll_wait(k->epfd, ev, 64, 20);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++)
			drain_socket(k, k->fds[ev[i].data.u32], bufs, m, iov);
	}
	drain_all(k, bufs, m, iov);
	free(bufs);
}

static void print_report(const struct sink *k)
{
	struct rusage ru;
	uint64_t min_flow = UINT64_MAX, max_flow = 0;
	int i;

	for (i = 0; i < MAX_FLOWS; i++) {
		if (!k->flows[i].received)
			continue;
		if (k->flows[i].received < min_flow)
			min_flow = k->flows[i].received;
		if (k->flows[i].received > max_flow)
			max_flow = k->flows[i].received;
	}
	if (min_flow == UINT64_MAX)
		min_flow = 0;
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"tool\": \"udp_sink\", \"received\": %llu, \"bytes\": %llu, "
	       "\"bad_size\": %llu, \"untagged\": %llu, \"gaps\": %llu, "
	       "\"reordered\": %llu, \"flows\": %d, \"flow_min\": %llu, "
	       "\"flow_max\": %llu, \"duration_s\": %.6f, \"utime_s\": %.6f, "
	       "\"stime_s\": %.6f}\n",
	       (unsigned long long)k->received, (unsigned long long)k->bytes,
	       (unsigned long long)k->bad_size, (unsigned long long)k->untagged,
	       (unsigned long long)k->gaps, (unsigned long long)k->reordered,
	       k->flows_seen, (unsigned long long)min_flow,
	       (unsigned long long)max_flow,
	       k->received ? k->t_last - k->t_first : 0.0,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct sink k = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };

	parse_options(&k.opt, argc, argv);
	k.flows = calloc(MAX_FLOWS, sizeof(*k.flows));
	if (!k.flows)
		die("calloc");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	open_sockets(&k);
	printf("ready\n");
	fflush(stdout);
	receive_loop(&k);
	print_report(&k);
	return 0;
}
