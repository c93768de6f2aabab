/* udp_blast — a plain UDP sender for the udpweave benchmarks.
 *
 * Sends --count datagrams of --size bytes round-robin over D destinations
 * (--dst base address, --addrs consecutive addresses × --ports consecutive
 * ports starting at --port; D = addrs × ports) in one of these modes:
 *
 *   sendto          one unconnected socket, one sendto() per datagram
 *                   (what an unmodified streaming server does)
 *   connected-send  one connected socket per destination, one send() each
 *   sendmmsg        one unconnected socket, sendmmsg of --batch single
 *                   datagrams (batching without GSO, for comparison)
 *   uring-conn      the hand-written io_uring sender for connected-send:
 *                   one connected socket per destination, per round one
 *                   IORING_OP_SEND per socket and one io_uring_enter
 *                   (what the uring backend does with one datagram per
 *                   socket per flush, without the library's queueing)
 *   ideal-gso       the hand-written ideal: per round, every destination
 *                   gets a run of --segs consecutive datagrams sent as ONE
 *                   message with a UDP_SEGMENT cmsg; one sendmmsg per round
 *                   carries the runs of all destinations
 *
 * Every datagram starts with a 16-byte tag (magic, flow index, per-flow
 * sequence number) so bench/udp_sink can count per-flow loss and order.
 * The run is bounded by --count and by --time-limit seconds.  --rate paces
 * the total datagram rate in 1 ms ticks (0 = as fast as possible).
 * --flush-every N (sendto, connected-send) calls udpweave's uw_flush()
 * after every N datagrams when the library is loaded (as an aware
 * application may), so that every flush carries exactly N datagrams:
 * N = destinations gives one datagram per socket per flush.
 *
 * Output: one JSON object on stdout (counts, errors, elapsed time and the
 * process's own rusage at the end of main — the benchmark itself prefers
 * wait4(), which also covers work done after main returns).
 *
 * This is a bench tool: it exits on setup errors.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define BLAST_MAGIC	0x55574231u	/* "UWB1" */
#define MAX_DESTS	4096
#define MAX_SEGS	64
#define MAX_GSO_BYTES	65507
#define MAX_BATCH	1024
#define TAG_BYTES	16

enum mode { MODE_SENDTO, MODE_CONNECTED, MODE_SENDMMSG, MODE_IDEAL_GSO, MODE_URING_CONN };

struct tag {
	uint32_t magic;
	uint32_t flow;
	uint64_t seq;
};

struct options {
	enum mode mode;
	const char *mode_name;
	long count;
	size_t size;
	const char *dst;
	int addrs;
	int port;
	int ports;
	int segs;
	int batch;
	double time_limit;
	long rate;
	int sndbuf;
	long flush_every;
};

struct dest {
	struct sockaddr_storage sa;
	socklen_t len;
	uint64_t next_seq;
};

struct blast {
	struct options opt;
	struct dest *dests;
	int ndest;
	int family;
	int fd;			/* unconnected socket */
	int *conn_fds;		/* connected-send: one per destination */
	long sent;
	long bytes;
	long calls;
	long errors;
	int first_errno;
	long first_error_at;
	bool truncated;
	double t_start;
	long (*uw_flush)(void);	/* the library's, when it is loaded */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "udp_blast: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: udp_blast --dst ADDR [--addrs N] [--port P] [--ports N]\n"
		"                 [--mode sendto|connected-send|sendmmsg|ideal-gso|uring-conn]\n"
		"                 [--count N] [--size BYTES] [--segs N] [--batch N]\n"
		"                 [--rate DGRAMS_PER_S] [--sndbuf BYTES] [--time-limit S]\n"
		"                 [--flush-every N]\n");
	exit(2);
}

static enum mode parse_mode(const char *s)
{
	if (!strcmp(s, "sendto"))
		return MODE_SENDTO;
	if (!strcmp(s, "connected-send"))
		return MODE_CONNECTED;
	if (!strcmp(s, "sendmmsg"))
		return MODE_SENDMMSG;
	if (!strcmp(s, "ideal-gso"))
		return MODE_IDEAL_GSO;
	if (!strcmp(s, "uring-conn"))
		return MODE_URING_CONN;
	fprintf(stderr, "udp_blast: unknown mode '%s'\n", s);
	usage();
	return MODE_SENDTO;
}

static void parse_options(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "dst", required_argument, NULL, 'd' },
		{ "addrs", required_argument, NULL, 'A' },
		{ "port", required_argument, NULL, 'p' },
		{ "ports", required_argument, NULL, 'P' },
		{ "segs", required_argument, NULL, 'g' },
		{ "batch", required_argument, NULL, 'b' },
		{ "time-limit", required_argument, NULL, 't' },
		{ "rate", required_argument, NULL, 'r' },
		{ "sndbuf", required_argument, NULL, 'B' },
		{ "flush-every", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	*o = (struct options){
		.mode = MODE_SENDTO, .mode_name = "sendto", .count = 200000,
		.size = 1316, .addrs = 1, .port = 9000, .ports = 1, .segs = 16,
		.batch = 0, .time_limit = 30.0,
	};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm': o->mode = parse_mode(optarg); o->mode_name = optarg; break;
		case 'n': o->count = atol(optarg); break;
		case 's': o->size = strtoul(optarg, NULL, 0); break;
		case 'd': o->dst = optarg; break;
		case 'A': o->addrs = atoi(optarg); break;
		case 'p': o->port = atoi(optarg); break;
		case 'P': o->ports = atoi(optarg); break;
		case 'g': o->segs = atoi(optarg); break;
		case 'b': o->batch = atoi(optarg); break;
		case 't': o->time_limit = atof(optarg); break;
		case 'r': o->rate = atol(optarg); break;
		case 'B': o->sndbuf = atoi(optarg); break;
		case 'F': o->flush_every = atol(optarg); break;
		default: usage();
		}
	}
	if (!o->dst || o->count < 0 || o->size < 1 || o->size > 65507 ||
	    o->addrs < 1 || o->ports < 1 || o->addrs * o->ports > MAX_DESTS ||
	    o->port < 1 || o->port + o->ports - 1 > 65535 ||
	    o->time_limit <= 0 || o->batch < 0 || o->batch > MAX_BATCH || o->flush_every < 0)
		usage();
	if (o->mode == MODE_IDEAL_GSO &&
	    (o->segs < 1 || o->segs > MAX_SEGS ||
	     o->size * (size_t)o->segs > MAX_GSO_BYTES)) {
		fprintf(stderr, "udp_blast: --segs %d × --size %zu exceeds a GSO run "
			"(≤%d segments, ≤%d bytes)\n", o->segs, o->size, MAX_SEGS,
			MAX_GSO_BYTES);
		exit(2);
	}
}

/* Destination i: address base + (i % addrs), port + (i / addrs). */
static void build_destinations(struct blast *b)
{
	const struct options *o = &b->opt;
	struct in_addr v4;
	struct in6_addr v6;
	int i;

	b->ndest = o->addrs * o->ports;
	b->dests = calloc(b->ndest, sizeof(*b->dests));
	if (!b->dests)
		die("calloc");
	if (inet_pton(AF_INET, o->dst, &v4) == 1)
		b->family = AF_INET;
	else if (inet_pton(AF_INET6, o->dst, &v6) == 1)
		b->family = AF_INET6;
	else {
		fprintf(stderr, "udp_blast: bad address '%s'\n", o->dst);
		exit(2);
	}
	for (i = 0; i < b->ndest; i++) {
		struct dest *d = &b->dests[i];
		int a = i % o->addrs, port = o->port + i / o->addrs;

		if (b->family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&d->sa;

			sin->sin_family = AF_INET;
			sin->sin_port = htons(port);
			sin->sin_addr.s_addr = htonl(ntohl(v4.s_addr) + a);
			d->len = sizeof(*sin);
		} else {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&d->sa;
			uint32_t last;

			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(port);
			sin6->sin6_addr = v6;
			memcpy(&last, &v6.s6_addr[12], 4);
			last = htonl(ntohl(last) + a);
			memcpy(&sin6->sin6_addr.s6_addr[12], &last, 4);
			d->len = sizeof(*sin6);
		}
	}
}

static int open_socket(const struct blast *b)
{
	int fd = socket(b->family, SOCK_DGRAM, 0);

	if (fd < 0)
		die("socket");
	if (b->opt.sndbuf > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &b->opt.sndbuf,
		       sizeof(b->opt.sndbuf)) < 0)
		die("SO_SNDBUFFORCE");
	return fd;
}

static void open_sockets(struct blast *b)
{
	int i;

	if (b->opt.mode != MODE_CONNECTED && b->opt.mode != MODE_URING_CONN) {
		b->fd = open_socket(b);
		return;
	}
	b->conn_fds = calloc(b->ndest, sizeof(int));
	if (!b->conn_fds)
		die("calloc");
	for (i = 0; i < b->ndest; i++) {
		b->conn_fds[i] = open_socket(b);
		if (connect(b->conn_fds[i], (struct sockaddr *)&b->dests[i].sa,
			    b->dests[i].len) < 0)
			die("connect");
	}
}

/* Write the tag of the next datagram of flow f into buf. */
static inline void tag_datagram(struct blast *b, char *buf, int f)
{
	struct tag t = {
		.magic = BLAST_MAGIC, .flow = f, .seq = b->dests[f].next_seq++,
	};

	if (b->opt.size >= TAG_BYTES)
		memcpy(buf, &t, sizeof(t));
}

static void fill_payload(char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (char)('a' + i % 26);
}

static void note_error(struct blast *b, int err)
{
	if (!b->errors++) {
		b->first_errno = err;
		b->first_error_at = b->sent;
	}
}

static bool out_of_time(struct blast *b)
{
	if (now_s() - b->t_start <= b->opt.time_limit)
		return false;
	b->truncated = true;
	return true;
}

/* Pacing in 1 ms bursts: datagram n is due at t_start + n / rate. */
static long pace_burst(const struct blast *b)
{
	return b->opt.rate >= 2000 ? b->opt.rate / 1000 : 1;
}

static void pace(struct blast *b, long n)
{
	double due = b->t_start + (double)n / (double)b->opt.rate;
	struct timespec ts;

	if (due <= now_s())
		return;
	ts.tv_sec = (time_t)due;
	ts.tv_nsec = (long)((due - (double)ts.tv_sec) * 1e9);
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* Called before datagram (or round) n: pace, and stop when out of time. */
static bool should_pause(struct blast *b, long n, long step)
{
	if (b->opt.rate > 0 && n % pace_burst(b) < step)
		pace(b, n);
	return n % 1024 < step && out_of_time(b);
}

static void account(struct blast *b, ssize_t r, long ndgrams)
{
	b->calls++;
	if (r < 0) {
		note_error(b, errno);
		return;
	}
	b->sent += ndgrams;
	b->bytes += r;
}

/* After datagram n: the aware application's explicit flush. */
static inline void maybe_flush(struct blast *b, long n)
{
	if (b->uw_flush && (n + 1) % b->opt.flush_every == 0)
		b->uw_flush();
}

static void run_sendto(struct blast *b)
{
	char *buf = malloc(b->opt.size);
	long n;

	if (!buf)
		die("malloc");
	fill_payload(buf, b->opt.size);
	for (n = 0; n < b->opt.count; n++) {
		int f = n % b->ndest;
		struct dest *d = &b->dests[f];

		if (should_pause(b, n, 1))
			break;
		tag_datagram(b, buf, f);
		account(b, sendto(b->fd, buf, b->opt.size, 0,
				  (struct sockaddr *)&d->sa, d->len), 1);
		maybe_flush(b, n);
	}
	free(buf);
}

static void run_connected(struct blast *b)
{
	char *buf = malloc(b->opt.size);
	long n;

	if (!buf)
		die("malloc");
	fill_payload(buf, b->opt.size);
	for (n = 0; n < b->opt.count; n++) {
		int f = n % b->ndest;

		if (should_pause(b, n, 1))
			break;
		tag_datagram(b, buf, f);
		account(b, send(b->conn_fds[f], buf, b->opt.size, 0), 1);
		maybe_flush(b, n);
	}
	free(buf);
}

/* Count the datagrams of the first `done` messages of a sendmmsg. */
static long datagrams_in(const struct mmsghdr *m, int done, size_t size)
{
	long n = 0;
	int i;

	for (i = 0; i < done; i++)
		n += (m[i].msg_len + size - 1) / size;
	return n;
}

/* sendmmsg may take fewer than vlen messages; resend the rest. */
static void send_all_mmsg(struct blast *b, struct mmsghdr *m, int vlen)
{
	int off = 0;

	while (off < vlen) {
		int r = sendmmsg(b->fd, m + off, vlen - off, 0);

		b->calls++;
		if (r <= 0) {
			note_error(b, r < 0 ? errno : EAGAIN);
			return;
		}
		for (int i = 0; i < r; i++)
			b->bytes += m[off + i].msg_len;
		b->sent += datagrams_in(m + off, r, b->opt.size);
		off += r;
	}
}

static void run_sendmmsg(struct blast *b)
{
	int batch = b->opt.batch ? b->opt.batch : 64;
	struct mmsghdr *m = calloc(batch, sizeof(*m));
	struct iovec *iov = calloc(batch, sizeof(*iov));
	char *bufs = malloc((size_t)batch * b->opt.size);
	long n = 0;
	int i;

	if (!m || !iov || !bufs)
		die("calloc");
	for (i = 0; i < batch; i++)
		fill_payload(bufs + (size_t)i * b->opt.size, b->opt.size);
	while (n < b->opt.count && !should_pause(b, n, batch)) {
		int vlen = 0;

		for (; vlen < batch && n < b->opt.count; vlen++, n++) {
			int f = n % b->ndest;
			char *buf = bufs + (size_t)vlen * b->opt.size;

			tag_datagram(b, buf, f);
			iov[vlen] = (struct iovec){ buf, b->opt.size };
			m[vlen].msg_hdr = (struct msghdr){
				.msg_name = &b->dests[f].sa,
				.msg_namelen = b->dests[f].len,
				.msg_iov = &iov[vlen], .msg_iovlen = 1,
			};
		}
		send_all_mmsg(b, m, vlen);
	}
	free(bufs);
	free(iov);
	free(m);
}

/* The ideal: one sendmmsg per round; message d is a GSO run of up to
 * --segs consecutive datagrams of destination d (UDP_SEGMENT = size). */
struct gso_msg {
	struct iovec iov;
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctrl;
};

static void set_gso_cmsg(struct msghdr *h, struct gso_msg *g, uint16_t seg)
{
	struct cmsghdr *cm;

	h->msg_control = g->ctrl.buf;
	h->msg_controllen = sizeof(g->ctrl.buf);
	cm = CMSG_FIRSTHDR(h);
	cm->cmsg_level = SOL_UDP;
	cm->cmsg_type = UDP_SEGMENT;
	cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
	memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
}

static void run_ideal_gso(struct blast *b)
{
	size_t size = b->opt.size, run_bytes = size * b->opt.segs;
	long per_round = (long)b->ndest * b->opt.segs, n = 0;
	struct mmsghdr *m = calloc(b->ndest, sizeof(*m));
	struct gso_msg *g = calloc(b->ndest, sizeof(*g));
	char *bufs = malloc(run_bytes * b->ndest);
	int d, s;

	if (!m || !g || !bufs)
		die("calloc");
	for (d = 0; d < b->ndest; d++)
		for (s = 0; s < b->opt.segs; s++)
			fill_payload(bufs + d * run_bytes + s * size, size);
	while (n < b->opt.count && !should_pause(b, n, per_round)) {
		long left = b->opt.count - n;
		int vlen = 0;

		/* A short last round spreads what is left round-robin. */
		for (d = 0; d < b->ndest; d++) {
			long segs = left >= per_round ? b->opt.segs :
				    left / b->ndest + (d < left % b->ndest);
			char *run = bufs + d * run_bytes;

			if (segs == 0)
				continue;
			for (s = 0; s < segs; s++)
				tag_datagram(b, run + s * size, d);
			g[vlen].iov = (struct iovec){ run, segs * size };
			m[vlen].msg_hdr = (struct msghdr){
				.msg_name = &b->dests[d].sa,
				.msg_namelen = b->dests[d].len,
				.msg_iov = &g[vlen].iov, .msg_iovlen = 1,
			};
			if (segs > 1)
				set_gso_cmsg(&m[vlen].msg_hdr, &g[vlen], size);
			n += segs;
			vlen++;
		}
		send_all_mmsg(b, m, vlen);
	}
	free(bufs);
	free(g);
	free(m);
}

/* One IORING_OP_SEND per connected socket per round, one io_uring_enter
 * that waits for them all. */
static void run_uring_conn(struct blast *b)
{
	size_t size = b->opt.size;
	char *bufs = malloc(size * b->ndest);
	struct io_uring ring;
	long n = 0;
	int err;

	if (!bufs)
		die("malloc");
	err = io_uring_queue_init((unsigned)b->ndest, &ring, 0);
	if (err) {
		errno = -err;
		die("io_uring_queue_init");
	}
	for (int d = 0; d < b->ndest; d++)
		fill_payload(bufs + d * size, size);
	while (n < b->opt.count && !should_pause(b, n, b->ndest)) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int k = 0, r;

		for (int d = 0; d < b->ndest && n < b->opt.count; d++, n++, k++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

			tag_datagram(b, bufs + d * size, d);
			io_uring_prep_send(sqe, b->conn_fds[d], bufs + d * size, size, 0);
		}
		r = io_uring_submit_and_wait(&ring, (unsigned)k);
		b->calls++;
		if (r < 0)
			note_error(b, -r);
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			if (cqe->res < 0) {
				note_error(b, -cqe->res);
			} else {
				b->sent++;
				b->bytes += cqe->res;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	io_uring_queue_exit(&ring);
	free(bufs);
}

/* The high-water RSS of this process's own memory (not of a launcher). */
static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void print_report(const struct blast *b, double elapsed)
{
	struct rusage ru;
	long hwm = vm_hwm_kb();

	getrusage(RUSAGE_SELF, &ru);
	printf("{\"tool\": \"udp_blast\", \"mode\": \"%s\", \"count\": %ld, "
	       "\"size\": %zu, \"destinations\": %d, \"segs\": %d, "
	       "\"sent\": %ld, \"bytes\": %ld, \"calls\": %ld, "
	       "\"errors\": %ld, \"first_errno\": %d, \"first_error\": \"%s\", "
	       "\"first_error_at\": %ld, \"truncated\": %s, "
	       "\"elapsed_s\": %.6f, \"self_utime_s\": %.6f, "
	       "\"self_stime_s\": %.6f, \"self_maxrss_kb\": %ld, "
	       "\"self_vmhwm_kb\": %ld, \"explicit_flushes\": %s}\n",
	       b->opt.mode_name, b->opt.count, b->opt.size, b->ndest,
	       b->opt.segs, b->sent, b->bytes, b->calls, b->errors,
	       b->first_errno, b->errors ? strerror(b->first_errno) : "",
	       b->first_error_at, b->truncated ? "true" : "false", elapsed,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss,
	       hwm, b->uw_flush ? "true" : "false");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct blast b = { .fd = -1 };

	parse_options(&b.opt, argc, argv);
	build_destinations(&b);
	open_sockets(&b);
	if (b.opt.flush_every)
		b.uw_flush = (long (*)(void))dlsym(RTLD_DEFAULT, "uw_flush");
	b.t_start = now_s();
	switch (b.opt.mode) {
	case MODE_SENDTO: run_sendto(&b); break;
	case MODE_CONNECTED: run_connected(&b); break;
	case MODE_SENDMMSG: run_sendmmsg(&b); break;
	case MODE_IDEAL_GSO: run_ideal_gso(&b); break;
	case MODE_URING_CONN: run_uring_conn(&b); break;
	}
	print_report(&b, now_s() - b.t_start);
	return b.sent == b.opt.count ? 0 : 1;
}
