/*
 * uw_sender — conformance sender for the udpweave integration tests.
 *
 * Sends sequence-stamped datagrams through every UDP send path of libc
 * (send, sendto, sendmsg, sendmmsg, write, writev) so that uw_receiver can
 * check every byte, the per-flow order and the datagram boundaries.
 *
 * Payload (little-endian):
 *   off  0  u32  magic 0x31765755 ("UWv1")
 *   off  4  u32  flow id
 *   off  8  u64  sequence number within the flow (from 0)
 *   off 16  u64  CLOCK_MONOTONIC send time, ns
 *   off 24  u32  total datagram length
 *   off 28  ...  pattern: byte[i] = s0 + i*s1 + (i >> 8), (s0, s1) from
 *                uw_seed(flow, seq); keep in sync with uw_receiver.c and
 *                libuw_ctor.c.
 *
 * Flow ids: flow_base + proc*10000 + thread*100 + dest_index, where proc is
 * 0 for a normal run; with --fork-exit 0 = parent before fork, 1 = child,
 * 2 = parent after the child exited.
 *
 * Output: one JSON summary line per process on stdout (written with
 * write(2), so it survives _exit and execve).  Errors go to stderr.
 * Exit status: 0 ok, 1 a send failed, 2 usage, 3 setup failure.
 *
 * --errno-probe performs a list of bad (and a few edge-case good) calls and
 * prints one line per case: "case=NAME rc=RC errno=NAME|OK [key=value...]".
 * The test runs it with and without the library and compares.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uw_payload.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define UW_MAX_DGRAM  65536u
#define MAX_DESTS     64
#define MAX_SIZES     256
#define MAX_THREADS   64
#define MAX_BATCH     64
#define MAX_IOV       8
#define ZERO_EVERY    50	/* a zero-length datagram after every 50th */

extern char **environ;

/* ---------------------------------------------------------------- payload */

/* Builds datagram (flow, seq) of len bytes (len 0 or >= UW_HDR_LEN). */
static void uw_build(uint8_t *p, uint32_t len, uint32_t flow, uint64_t seq)
{
	if (len < UW_HDR_LEN)
		return;
	put_le32(p, UW_MAGIC);
	put_le32(p + 4, flow);
	put_le64(p + 8, seq);
	put_le64(p + 16, mono_ns());
	put_le32(p + 24, len);
	uw_fill_pattern(p, len, uw_seed(flow, seq));
}

/* ---------------------------------------------------------------- options */

enum mode { M_SEND, M_SENDTO, M_SENDMSG, M_SENDMMSG, M_WRITE, M_WRITEV, M_MIXED, M_COUNT };
static const char *const mode_names[M_COUNT] = {
	"send", "sendto", "sendmsg", "sendmmsg", "write", "writev", "mixed",
};

enum exit_how { EX_RETURN, EX_EXIT, EX__EXIT, EX__EXIT2, EX_EXECVE, EX_THREAD_EXIT };
static const char *const exit_names[] = { "return", "exit", "_exit", "_Exit", "execve", "thread-exit" };

struct dest {
	struct sockaddr_storage ss;
	socklen_t len;
	int family;
	char text[96];
};

static struct {
	struct dest dests[MAX_DESTS];
	int ndests;
	enum mode mode;
	uint64_t count;
	uint32_t sizes[MAX_SIZES];
	int nsizes;
	bool connected;
	int threads;
	bool shared_socket;
	bool fork_exit;
	double rate_pps;
	uint32_t burst;		/* datagrams of a flow in a row (default 1) */
	uint32_t pause_us;	/* sleep after each round of bursts */
	bool zero_len;
	bool errno_probe;
	bool close_after;
	uint32_t flow_base;
	enum exit_how exit_how;
	const char *dlopen_path;
	int tos, ttl;		/* -1: leave the default */
	bool nonblock;
	int sndbuf;		/* SO_SNDBUF asked for */
	bool recverr;		/* IP_RECVERR / IPV6_RECVERR: qdisc drops as ENOBUFS */
	struct dest src4, src6;	/* --src: bind address per family (len 0: none) */
} opt = {
	.sndbuf = 4 << 20,
	.tos = -1,
	.ttl = -1,
	.mode = M_SENDTO,
	.count = 1000,
	.sizes = { 1316 },
	.nsizes = 1,
	.threads = 1,
	.burst = 1,
	.exit_how = EX_RETURN,
};

static void usage(void)
{
	fprintf(stderr,
		"usage: uw_sender --dest ADDR:PORT [--dest ...] [options]\n"
		"  --mode send|sendto|sendmsg|sendmmsg|write|writev|mixed (default sendto)\n"
		"  --count N            datagrams per flow (default 1000)\n"
		"  --sizes a,b,c        sizes, cycled by sequence number (0 or >= 28)\n"
		"  --connected          one connected socket per destination\n"
		"  --threads T          sending threads, each with its own flows\n"
		"  --shared-socket      threads share the sockets (else own sockets)\n"
		"  --fork-exit          send, fork; child sends and _exit(0)s; parent sends again\n"
		"  --rate-pps R         pace each thread to R datagrams/s\n"
		"  --burst M            M datagrams of a flow in a row, then the next flow\n"
		"                       (as GStreamer's multiudpsink sends a buffer list)\n"
		"  --pause-us U         sleep U us after each round (a burst of every flow)\n"
		"  --zero-len           add a zero-length datagram after every %dth\n"
		"  --close              close the sockets after sending\n"
		"  --flow-base B        first flow id (default 0)\n"
		"  --exit-how return|exit|_exit|_Exit|execve|thread-exit\n"
		"  --dlopen PATH        dlopen PATH before sending\n"
		"  --tos N / --ttl N    IP_TOS/IPV6_TCLASS, IP_TTL/IPV6_UNICAST_HOPS on every socket\n"
		"  --src ADDR           bind every socket of ADDR's family to ADDR (port 0)\n"
		"  --nonblock           O_NONBLOCK sockets (EAGAIN counts as an error)\n"
		"  --sndbuf BYTES       SO_SNDBUF of every socket (default 4 MiB)\n"
		"  --recverr            IP_RECVERR/IPV6_RECVERR: the kernel reports drops (ENOBUFS)\n"
		"  --errno-probe        run the error-case probe instead\n", ZERO_EVERY);
	exit(2);
}

static int parse_dest(const char *arg, struct dest *d)
{
	memset(d, 0, sizeof(*d));
	if (uw_parse_addr(arg, &d->ss, &d->len))
		return -1;
	d->family = d->ss.ss_family;
	snprintf(d->text, sizeof(d->text), "%s", arg);
	return 0;
}

static int parse_sizes(const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	int n = 0;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(tok, &end, 10);

		if (*end || n >= MAX_SIZES || v >= UW_MAX_DGRAM || (v > 0 && v < UW_HDR_LEN)) {
			free(copy);
			return -1;
		}
		opt.sizes[n++] = (uint32_t)v;
	}
	free(copy);
	if (n == 0)
		return -1;
	opt.nsizes = n;
	return 0;
}

static int lookup(const char *const *names, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dest", required_argument, NULL, 'd' },
		{ "mode", required_argument, NULL, 'm' },
		{ "count", required_argument, NULL, 'n' },
		{ "sizes", required_argument, NULL, 's' },
		{ "connected", no_argument, NULL, 'c' },
		{ "threads", required_argument, NULL, 't' },
		{ "shared-socket", no_argument, NULL, 'S' },
		{ "fork-exit", no_argument, NULL, 'F' },
		{ "rate-pps", required_argument, NULL, 'r' },
		{ "burst", required_argument, NULL, 'M' },
		{ "pause-us", required_argument, NULL, 'P' },
		{ "zero-len", no_argument, NULL, 'z' },
		{ "close", no_argument, NULL, 'C' },
		{ "flow-base", required_argument, NULL, 'b' },
		{ "exit-how", required_argument, NULL, 'x' },
		{ "dlopen", required_argument, NULL, 'D' },
		{ "errno-probe", no_argument, NULL, 'E' },
		{ "tos", required_argument, NULL, 'T' },
		{ "ttl", required_argument, NULL, 'L' },
		{ "src", required_argument, NULL, 'B' },
		{ "nonblock", no_argument, NULL, 'N' },
		{ "sndbuf", required_argument, NULL, 'O' },
		{ "recverr", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, v;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (opt.ndests >= MAX_DESTS || parse_dest(optarg, &opt.dests[opt.ndests]) < 0) {
				fprintf(stderr, "uw_sender: bad --dest %s\n", optarg);
				usage();
			}
			opt.ndests++;
			break;
		case 'm':
			v = lookup(mode_names, M_COUNT, optarg);
			if (v < 0)
				usage();
			opt.mode = (enum mode)v;
			break;
		case 'n':
			opt.count = strtoull(optarg, NULL, 10);
			break;
		case 's':
			if (parse_sizes(optarg) < 0) {
				fprintf(stderr, "uw_sender: bad --sizes %s\n", optarg);
				usage();
			}
			break;
		case 'c': opt.connected = true; break;
		case 't':
			opt.threads = atoi(optarg);
			if (opt.threads < 1 || opt.threads > MAX_THREADS)
				usage();
			break;
		case 'S': opt.shared_socket = true; break;
		case 'F': opt.fork_exit = true; break;
		case 'r': opt.rate_pps = atof(optarg); break;
		case 'M':
			opt.burst = (uint32_t)strtoul(optarg, NULL, 10);
			if (opt.burst < 1)
				usage();
			break;
		case 'P': opt.pause_us = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'z': opt.zero_len = true; break;
		case 'C': opt.close_after = true; break;
		case 'b': opt.flow_base = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'x':
			v = lookup(exit_names, (int)(sizeof(exit_names) / sizeof(exit_names[0])), optarg);
			if (v < 0)
				usage();
			opt.exit_how = (enum exit_how)v;
			break;
		case 'D': opt.dlopen_path = optarg; break;
		case 'E': opt.errno_probe = true; break;
		case 'T': opt.tos = (int)strtol(optarg, NULL, 0); break;
		case 'L': opt.ttl = atoi(optarg); break;
		case 'N': opt.nonblock = true; break;
		case 'O': opt.sndbuf = atoi(optarg); break;
		case 'R': opt.recverr = true; break;
		case 'B': {
			struct dest d;
			char spec[128];

			snprintf(spec, sizeof(spec), strchr(optarg, ':') ? "[%s]:0" : "%s:0", optarg);
			if (parse_dest(spec, &d) < 0) {
				fprintf(stderr, "uw_sender: bad --src %s\n", optarg);
				usage();
			}
			if (d.family == AF_INET)
				opt.src4 = d;
			else
				opt.src6 = d;
			break;
		}
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (opt.errno_probe)
		return;
	if (opt.ndests == 0) {
		fprintf(stderr, "uw_sender: at least one --dest is needed\n");
		usage();
	}
	if (!opt.connected && (opt.mode == M_SEND || opt.mode == M_WRITE || opt.mode == M_WRITEV)) {
		fprintf(stderr, "uw_sender: --mode %s needs --connected\n", mode_names[opt.mode]);
		usage();
	}
	for (int d = 0; d < opt.ndests; d++) {
		uint32_t max = opt.dests[d].family == AF_INET ? 65507 : 65527;

		for (int i = 0; i < opt.nsizes; i++)
			if (opt.sizes[i] > max) {
				fprintf(stderr, "uw_sender: size %u too large for %s\n", opt.sizes[i],
					opt.dests[d].text);
				usage();
			}
	}
}

/* ---------------------------------------------------------------- sockets */

struct sockset {
	int conn_fd[MAX_DESTS];	/* --connected: one per destination */
	int unconn_fd[2];	/* otherwise: one per family (0 = v4, 1 = v6) */
};

static int family_slot(int family)
{
	return family == AF_INET6;
}

static void must(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "uw_sender: %s: %s\n", what, strerror(errno));
		exit(3);
	}
}

/* A UDP socket with the options asked for on the command line. */
static int udp_socket(int family)
{
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | (opt.nonblock ? SOCK_NONBLOCK : 0), 0);
	int one = 1;
	const struct dest *src = family == AF_INET ? &opt.src4 : &opt.src6;

	must(fd, "socket");
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt.sndbuf, sizeof(opt.sndbuf));
	if (opt.recverr)
		must(family == AF_INET ? setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one))
				       : setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one)),
		     "setsockopt RECVERR");
	if (opt.tos >= 0)
		must(family == AF_INET ? setsockopt(fd, IPPROTO_IP, IP_TOS, &opt.tos, sizeof(int))
				       : setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &opt.tos, sizeof(int)),
		     "setsockopt TOS");
	if (opt.ttl >= 0)
		must(family == AF_INET ? setsockopt(fd, IPPROTO_IP, IP_TTL, &opt.ttl, sizeof(int))
				       : setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &opt.ttl, sizeof(int)),
		     "setsockopt TTL");
	if (src->len)
		must(bind(fd, (const struct sockaddr *)&src->ss, src->len), "bind --src");
	return fd;
}

static void sockset_open(struct sockset *ss)
{
	ss->unconn_fd[0] = ss->unconn_fd[1] = -1;
	for (int d = 0; d < opt.ndests; d++) {
		struct dest *de = &opt.dests[d];

		ss->conn_fd[d] = -1;
		if (opt.connected) {
			ss->conn_fd[d] = udp_socket(de->family);
			if (connect(ss->conn_fd[d], (struct sockaddr *)&de->ss, de->len) < 0) {
				fprintf(stderr, "uw_sender: connect %s: %s\n", de->text, strerror(errno));
				exit(3);
			}
		} else if (ss->unconn_fd[family_slot(de->family)] < 0) {
			ss->unconn_fd[family_slot(de->family)] = udp_socket(de->family);
		}
	}
}

static void sockset_close(struct sockset *ss)
{
	for (int d = 0; d < opt.ndests; d++)
		if (ss->conn_fd[d] >= 0)
			close(ss->conn_fd[d]);
	for (int i = 0; i < 2; i++)
		if (ss->unconn_fd[i] >= 0)
			close(ss->unconn_fd[i]);
}

static int sockset_fd(const struct sockset *ss, int d)
{
	return opt.connected ? ss->conn_fd[d] : ss->unconn_fd[family_slot(opt.dests[d].family)];
}

/* ---------------------------------------------------------------- workers */

struct flow {
	uint32_t id;
	int dest;
	int fd;
	uint64_t next_seq, end_seq;
	uint64_t sent, bytes, zero_len, zero_len_writev;
	char src[64];		/* local address of the socket after the last send */
};

struct phase;

struct worker {
	int index;
	int proc;
	struct sockset *socks;
	struct flow flows[MAX_DESTS];
	int nflows;
	int rr;			/* round-robin position over flows */
	struct flow *cur;	/* --burst: the flow of the current burst */
	uint32_t burst_left;	/* its datagrams still to send in a row */
	uint64_t round_start;	/* --pause-us: seqs_taken at the round's start */
	uint64_t step;		/* mixed-mode position */
	uint64_t batch_i;	/* sendmmsg batch-size position */
	uint64_t errors;
	uint64_t calls[M_COUNT];
	uint64_t pace_next_ns;
	uint8_t *arena;		/* MAX_BATCH * 2 datagram buffers */
	struct phase *phase;
	pthread_t tid;
};

static const int batch_cycle[] = { 1, 2, 7, 16, 64, 3, 1, 32, 5, 64 };
static const enum mode mixed_cycle[] = { M_SEND, M_SENDTO, M_SENDMSG, M_SENDMMSG, M_WRITE, M_WRITEV };
static pthread_barrier_t exit_barrier;

static uint32_t size_for(uint64_t seq)
{
	return opt.sizes[seq % (uint64_t)opt.nsizes];
}

static bool flow_done(const struct flow *f)
{
	return f->next_seq >= f->end_seq;
}

static struct flow *next_flow(struct worker *w)
{
	if (w->cur && w->burst_left && !flow_done(w->cur)) {
		w->burst_left--;
		return w->cur;
	}
	for (int i = 0; i < w->nflows; i++) {
		struct flow *f = &w->flows[(w->rr + i) % w->nflows];

		if (!flow_done(f)) {
			w->rr = (w->rr + i + 1) % w->nflows;
			w->cur = f;
			w->burst_left = opt.burst - 1;
			return f;
		}
	}
	return NULL;
}

static bool mode_needs_connected(enum mode m)
{
	return m == M_SEND || m == M_WRITE || m == M_WRITEV;
}

static enum mode pick_mode(struct worker *w)
{
	const int n = (int)(sizeof(mixed_cycle) / sizeof(mixed_cycle[0]));

	if (opt.mode != M_MIXED)
		return opt.mode;
	for (;;) {
		enum mode m = mixed_cycle[w->step++ % (uint64_t)n];

		if (opt.connected || !mode_needs_connected(m))
			return m;
	}
}

/* Splits buf[0..len) into up to max pieces at irregular points (the first
 * piece cuts the header mid-field, like a protocol header + payload split),
 * sometimes with an empty iovec in the middle; iov needs max + 1 entries. */
static int split_iov(uint8_t *buf, size_t len, uint64_t seq, int max, struct iovec *iov)
{
	int pieces = 1 + (int)(seq % (uint64_t)max);
	size_t off = 0;
	int n = 0;

	if ((size_t)pieces > len)
		pieces = len ? (int)len : 1;
	for (int i = 0; i < pieces; i++) {
		size_t left = len - off, take;

		if (i == pieces - 1)
			take = left;
		else if (i == 0)
			take = left < 5 ? left : 5 + (seq % 7);
		else {
			size_t share = left / (size_t)(pieces - i);

			take = share > (size_t)(i % 3) ? share - (size_t)(i % 3) : share;
		}
		if (take > left)
			take = left;
		iov[n].iov_base = buf + off;
		iov[n].iov_len = take;
		n++;
		off += take;
		/* an empty iovec now and then: legal, and must not end a datagram */
		if (i == 1 && pieces > 3 && (seq & 1)) {
			iov[n].iov_base = buf + off;
			iov[n].iov_len = 0;
			n++;
		}
	}
	return n;
}

static void record_error(struct worker *w, const char *what, const struct flow *f, ssize_t rc,
			 size_t want, int err)
{
	w->errors++;
	if (w->errors <= 10)
		fprintf(stderr, "uw_sender: %s flow %u seq %" PRIu64 ": rc=%zd want=%zu errno=%s\n",
			what, f->id, f->next_seq, rc, want, rc < 0 ? strerrorname_np(err) : "-");
}

static ssize_t send_by_mode(struct worker *w, enum mode m, const struct flow *f, uint8_t *buf,
			    size_t len, uint64_t salt)
{
	const struct dest *de = &opt.dests[f->dest];
	const struct sockaddr *to = opt.connected ? NULL : (const struct sockaddr *)&de->ss;
	socklen_t tolen = opt.connected ? 0 : de->len;
	struct iovec iov[MAX_IOV + 2];
	struct msghdr mh;

	w->calls[m]++;
	switch (m) {
	case M_SEND:
		return send(f->fd, buf, len, 0);
	case M_SENDTO:
		return sendto(f->fd, buf, len, 0, to, tolen);
	case M_SENDMSG:
		memset(&mh, 0, sizeof(mh));
		mh.msg_name = (void *)to;
		mh.msg_namelen = tolen;
		if (len == 0 && (salt & 1)) {
			mh.msg_iov = NULL;	/* zero-length datagram without iovec */
			mh.msg_iovlen = 0;
		} else {
			mh.msg_iov = iov;
			mh.msg_iovlen = (size_t)split_iov(buf, len, salt, MAX_IOV, iov);
		}
		return sendmsg(f->fd, &mh, 0);
	case M_WRITE:
		return write(f->fd, buf, len);
	case M_WRITEV:
		return writev(f->fd, iov, split_iov(buf, len, salt, MAX_IOV, iov));
	default:
		abort();
	}
}

static void account(struct flow *f, size_t len)
{
	f->sent++;
	f->bytes += len;
}

/* A zero-length datagram for flow f through mode m.  Note: the kernel
 * sends an empty datagram for send/sendto/sendmsg/sendmmsg/write of 0
 * bytes, but writev() of 0 bytes returns 0 without sending anything. */
static void send_zero(struct worker *w, struct flow *f, enum mode m)
{
	uint8_t dummy[1] = { 0 };
	ssize_t rc;

	if (m == M_SENDMMSG)
		m = M_SENDMSG;
	rc = send_by_mode(w, m, f, dummy, 0, f->next_seq);
	if (rc != 0) {
		record_error(w, "zero-length send", f, rc, 0, errno);
		return;
	}
	if (m == M_WRITEV)
		f->zero_len_writev++;
	else
		f->zero_len++;
}

static bool wants_zero_after(uint64_t seq)
{
	return opt.zero_len && seq % ZERO_EVERY == ZERO_EVERY - 1;
}

static void send_one(struct worker *w, struct flow *f, enum mode m)
{
	uint64_t seq = f->next_seq;
	uint32_t len = size_for(seq);
	uint8_t *buf = w->arena;
	ssize_t rc;

	uw_build(buf, len, f->id, seq);
	rc = send_by_mode(w, m, f, buf, len, seq);
	if (rc != (ssize_t)len)
		record_error(w, mode_names[m], f, rc, len, errno);
	else
		account(f, len);
	f->next_seq++;
	if (wants_zero_after(seq))
		send_zero(w, f, m);
}

/* One sendmmsg call: with connected sockets k datagrams of one flow; with an
 * unconnected socket datagrams of all flows sharing that socket, round-robin,
 * each message with its own destination. */
static void send_batch(struct worker *w)
{
	const int nb = (int)(sizeof(batch_cycle) / sizeof(batch_cycle[0]));
	int k = batch_cycle[w->batch_i++ % (uint64_t)nb];
	struct mmsghdr v[2 * MAX_BATCH];
	struct iovec iov[2 * MAX_BATCH][MAX_IOV + 2];
	struct flow *owner[2 * MAX_BATCH];
	uint32_t want[2 * MAX_BATCH];
	struct flow *first = next_flow(w), *f = first;
	int n = 0, fd = first->fd, rc;

	memset(v, 0, sizeof(v));
	while (n < k && f) {
		uint64_t seq = f->next_seq;
		uint32_t len = size_for(seq);
		uint8_t *buf = w->arena + (size_t)n * UW_MAX_DGRAM;
		const struct dest *de = &opt.dests[f->dest];
		struct msghdr *mh = &v[n].msg_hdr;

		uw_build(buf, len, f->id, seq);
		mh->msg_iov = iov[n];
		mh->msg_iovlen = (size_t)split_iov(buf, len, seq + (uint64_t)n, 4, iov[n]);
		if (!opt.connected) {
			mh->msg_name = (void *)&de->ss;
			mh->msg_namelen = de->len;
		}
		v[n].msg_len = 0xdeadbeef;
		owner[n] = f;
		want[n] = len;
		n++;
		f->next_seq++;
		if (wants_zero_after(seq)) {
			mh = &v[n].msg_hdr;
			*mh = v[n - 1].msg_hdr;
			mh->msg_iov = NULL;
			mh->msg_iovlen = 0;
			v[n].msg_len = 0xdeadbeef;
			owner[n] = f;
			want[n] = 0;
			n++;
		}
		if (opt.connected) {
			f = flow_done(f) ? NULL : f;
		} else {
			/* next flow on the same socket */
			struct flow *g = NULL;

			for (int i = 0; i < w->nflows && !g; i++) {
				struct flow *c = next_flow(w);

				if (c && c->fd == fd)
					g = c;
			}
			f = g;
		}
	}
	w->calls[M_SENDMMSG]++;
	rc = sendmmsg(fd, v, (unsigned int)n, 0);
	if (rc != n)
		record_error(w, "sendmmsg", first, rc, (size_t)n, errno);
	for (int i = 0; i < n && i < rc; i++) {
		if (v[i].msg_len != want[i]) {
			record_error(w, "sendmmsg msg_len", owner[i], v[i].msg_len, want[i], 0);
			continue;
		}
		if (want[i] == 0)
			owner[i]->zero_len++;
		else
			account(owner[i], want[i]);
	}
}

static void pace(struct worker *w, int sent)
{
	struct timespec ts;

	if (opt.rate_pps <= 0)
		return;
	if (w->pace_next_ns == 0)
		w->pace_next_ns = mono_ns();
	w->pace_next_ns += (uint64_t)((double)sent * 1e9 / opt.rate_pps);
	ts.tv_sec = (time_t)(w->pace_next_ns / 1000000000ull);
	ts.tv_nsec = (long)(w->pace_next_ns % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static uint64_t seqs_taken(const struct worker *w);

/* --pause-us: once every flow had its burst, sleep. */
static void pause_after_round(struct worker *w)
{
	uint64_t taken = seqs_taken(w);
	struct timespec ts;

	if (!opt.pause_us || taken - w->round_start < (uint64_t)w->nflows * opt.burst)
		return;
	w->round_start = taken;
	ts.tv_sec = (time_t)(opt.pause_us / 1000000u);
	ts.tv_nsec = (long)(opt.pause_us % 1000000u) * 1000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static struct flow *peek_flow(const struct worker *w)
{
	if (w->cur && w->burst_left && !flow_done(w->cur))
		return w->cur;
	for (int i = 0; i < w->nflows; i++) {
		const struct flow *f = &w->flows[(w->rr + i) % w->nflows];

		if (!flow_done(f))
			return (struct flow *)f;
	}
	return NULL;
}

static uint64_t seqs_taken(const struct worker *w)
{
	uint64_t n = 0;

	for (int i = 0; i < w->nflows; i++)
		n += w->flows[i].next_seq;
	return n;
}

/* The socket's local address as the receiver should see it as source. */
static void local_address(int fd, char *out, size_t outsz)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	snprintf(out, outsz, "?");
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(out, outsz, "%s:%d", host, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(out, outsz, "[%s]:%d", host, ntohs(sin6->sin6_port));
	}
}

static void worker_run(struct worker *w)
{
	while (peek_flow(w)) {
		enum mode m = pick_mode(w);
		uint64_t before = seqs_taken(w);

		if (m == M_SENDMMSG)
			send_batch(w);
		else
			send_one(w, next_flow(w), m);
		pace(w, (int)(seqs_taken(w) - before));
		pause_after_round(w);
	}
	for (int i = 0; i < w->nflows; i++)
		local_address(w->flows[i].fd, w->flows[i].src, sizeof(w->flows[i].src));
}

static void worker_setup(struct worker *w, int index, int proc, struct sockset *socks,
			 uint64_t count)
{
	memset(w, 0, sizeof(*w));
	w->index = index;
	w->proc = proc;
	w->socks = socks;
	w->nflows = opt.ndests;
	for (int d = 0; d < opt.ndests; d++) {
		struct flow *f = &w->flows[d];

		f->id = opt.flow_base + (uint32_t)proc * 10000u + (uint32_t)index * 100u + (uint32_t)d;
		f->dest = d;
		f->fd = sockset_fd(socks, d);
		f->end_seq = count;
	}
	w->arena = malloc((size_t)2 * MAX_BATCH * UW_MAX_DGRAM);
	if (!w->arena) {
		fprintf(stderr, "uw_sender: out of memory\n");
		exit(3);
	}
}

/* ---------------------------------------------------------------- summary */

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += r;
		n -= (size_t)r;
	}
}

/* One JSON line on stdout, written with write(2) so that it is out before
 * _exit/execve. */
static void print_summary(struct worker *ws, int nw, int proc)
{
	char *text = NULL;
	size_t size = 0;
	FILE *m = open_memstream(&text, &size);
	uint64_t total = 0, bytes = 0, zero = 0, zero_wv = 0, errors = 0, calls[M_COUNT] = { 0 };
	bool first = true;

	fprintf(m, "{\"pid\":%d,\"proc\":%d,\"mode\":\"%s\",\"flows\":{", (int)getpid(), proc,
		mode_names[opt.mode]);
	for (int i = 0; i < nw; i++) {
		for (int j = 0; j < ws[i].nflows; j++) {
			struct flow *f = &ws[i].flows[j];

			fprintf(m, "%s\"%u\":{\"sent\":%" PRIu64 ",\"bytes\":%" PRIu64
				",\"zero_len\":%" PRIu64 ",\"zero_len_writev\":%" PRIu64
				",\"dest\":\"%s\",\"dest_index\":%d,\"src\":\"%s\"}",
				first ? "" : ",", f->id, f->sent, f->bytes, f->zero_len,
				f->zero_len_writev, opt.dests[f->dest].text, f->dest, f->src);
			first = false;
			total += f->sent;
			bytes += f->bytes;
			zero += f->zero_len;
			zero_wv += f->zero_len_writev;
		}
		errors += ws[i].errors;
		for (int k = 0; k < M_COUNT; k++)
			calls[k] += ws[i].calls[k];
	}
	fprintf(m, "},\"sent_total\":%" PRIu64 ",\"bytes_total\":%" PRIu64 ",\"zero_len_total\":%" PRIu64
		",\"zero_len_writev_total\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"calls\":{",
		total, bytes, zero, zero_wv, errors);
	for (int k = 0; k < M_MIXED; k++)
		fprintf(m, "%s\"%s\":%" PRIu64, k ? "," : "", mode_names[k], calls[k]);
	fprintf(m, "}}\n");
	fclose(m);
	write_all(1, text, size);
	free(text);
}

static uint64_t errors_of(struct worker *ws, int nw)
{
	uint64_t e = 0;

	for (int i = 0; i < nw; i++)
		e += ws[i].errors;
	return e;
}

/* ---------------------------------------------------------------- phases */

struct phase {
	struct worker ws[MAX_THREADS];
	int nw;
	int proc;
	struct sockset own[MAX_THREADS];
};

static void *worker_thread(void *arg)
{
	struct worker *w = arg;

	worker_run(w);
	if (opt.exit_how == EX_THREAD_EXIT && !opt.fork_exit) {
		pthread_barrier_wait(&exit_barrier);
		if (w->index == 0) {
			struct phase *ph = w->phase;

			print_summary(ph->ws, ph->nw, ph->proc);
			exit(errors_of(ph->ws, ph->nw) ? 1 : 0);
		}
		for (;;)
			pause();
	}
	return NULL;
}

/* Runs one sending phase: opt.threads workers, each with its own flows. */
static void run_phase(struct phase *ph, int proc, struct sockset *shared, uint64_t count)
{
	bool threaded = opt.threads > 1 || opt.exit_how == EX_THREAD_EXIT;

	ph->nw = opt.threads;
	ph->proc = proc;
	for (int t = 0; t < opt.threads; t++) {
		struct sockset *s = shared;

		if (!opt.shared_socket && t > 0) {
			sockset_open(&ph->own[t]);
			s = &ph->own[t];
		}
		worker_setup(&ph->ws[t], t, proc, s, count);
		ph->ws[t].phase = ph;
	}
	if (!threaded) {
		worker_run(&ph->ws[0]);
		return;
	}
	if (opt.exit_how == EX_THREAD_EXIT)
		pthread_barrier_init(&exit_barrier, NULL, (unsigned int)opt.threads);
	for (int t = 0; t < opt.threads; t++)
		if (pthread_create(&ph->ws[t].tid, NULL, worker_thread, &ph->ws[t]) != 0) {
			fprintf(stderr, "uw_sender: pthread_create failed\n");
			exit(3);
		}
	for (int t = 0; t < opt.threads; t++)
		pthread_join(ph->ws[t].tid, NULL);
}

static void phase_close(struct phase *ph, struct sockset *shared)
{
	if (!opt.close_after)
		return;
	sockset_close(shared);
	for (int t = 1; t < ph->nw; t++)
		if (!opt.shared_socket)
			sockset_close(&ph->own[t]);
}

static int finish(int status)
{
	char *args[] = { "true", NULL };

	switch (opt.exit_how) {
	case EX_EXIT:
		exit(status);
	case EX__EXIT:
		_exit(status);
	case EX__EXIT2:
		_Exit(status);
	case EX_EXECVE:
		execve("/bin/true", args, environ);
		fprintf(stderr, "uw_sender: execve /bin/true: %s\n", strerror(errno));
		_exit(3);
	default:
		return status;
	}
}

static int run_fork_exit(struct sockset *socks)
{
	static struct phase before, child, after;
	uint64_t half = opt.count / 2;
	int status = 0;
	pid_t pid;

	run_phase(&before, 0, socks, half);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "uw_sender: fork: %s\n", strerror(errno));
		return 3;
	}
	if (pid == 0) {
		run_phase(&child, 1, socks, opt.count);
		print_summary(child.ws, child.nw, 1);
		_exit(errors_of(child.ws, child.nw) ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
		fprintf(stderr, "uw_sender: child did not exit normally (status %#x)\n", status);
		return 1;
	}
	run_phase(&after, 2, socks, opt.count - half);
	phase_close(&after, socks);
	/* the parent's two phases as one summary line each */
	print_summary(before.ws, before.nw, 0);
	print_summary(after.ws, after.nw, 2);
	if (WEXITSTATUS(status) != 0)
		return 1;
	return finish(errors_of(before.ws, before.nw) || errors_of(after.ws, after.nw) ? 1 : 0);
}

/* ---------------------------------------------------------------- errno probe */

static int probe_sink4, probe_sink4b, probe_sink6;
static struct sockaddr_in sink4_addr, sink4b_addr;
static struct sockaddr_in6 sink6_addr;
static uint8_t probe_buf[70000];
static void *volatile probe_null;	/* NULL the compiler cannot see */

static int bound_sink(int family, struct sockaddr_storage *out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1, big = 32 << 20;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;

		s->sin_family = AF_INET;
		s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

		s->sin6_family = AF_INET6;
		s->sin6_addr = in6addr_loopback;
		len = sizeof(*s);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)out, &len) < 0) {
		fprintf(stderr, "uw_sender: probe sink: %s\n", strerror(errno));
		exit(3);
	}
	return fd;
}

/* A UDP socket of the family, connected to addr when given. */
static int probe_socket(int family, const void *addr, socklen_t len)
{
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || (addr && connect(fd, addr, len) < 0)) {
		fprintf(stderr, "uw_sender: probe socket: %s\n", strerror(errno));
		exit(3);
	}
	return fd;
}

static int conn4(void)
{
	return probe_socket(AF_INET, &sink4_addr, sizeof(sink4_addr));
}

static int conn6(void)
{
	return probe_socket(AF_INET6, &sink6_addr, sizeof(sink6_addr));
}

struct sink_tally {
	const char *name;
	int fd;
	int n, nsz;
	uint32_t sizes[64], counts[64];
};

static void tally(struct sink_tally *t, uint32_t size)
{
	int i;

	t->n++;
	for (i = 0; i < t->nsz; i++)
		if (t->sizes[i] == size)
			break;
	if (i == t->nsz && t->nsz < 64) {
		t->sizes[t->nsz] = size;
		t->counts[t->nsz++] = 0;
	}
	if (i < 64)
		t->counts[i]++;
}

/* Receives what reached the sinks (until 10 ms without data) and appends
 * " NAME=N:SIZExCOUNT,..." per sink that got something. */
static void drain_sinks(char *out, size_t outsz)
{
	static uint8_t rbuf[70000];
	struct sink_tally t[3] = {
		{ .name = "d4", .fd = probe_sink4 },
		{ .name = "d4b", .fd = probe_sink4b },
		{ .name = "d6", .fd = probe_sink6 },
	};
	struct pollfd p[3];
	size_t used = strlen(out);

	for (int i = 0; i < 3; i++) {
		p[i].fd = t[i].fd;
		p[i].events = POLLIN;
	}
	while (poll(p, 3, 10) > 0) {
		for (int i = 0; i < 3; i++) {
			ssize_t r;

			if (!(p[i].revents & POLLIN))
				continue;
			r = recv(t[i].fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
			if (r >= 0)
				tally(&t[i], (uint32_t)r);
		}
	}
	for (int k = 0; k < 3; k++) {
		if (!t[k].n)
			continue;
		used += (size_t)snprintf(out + used, outsz - used, " %s=%d:", t[k].name, t[k].n);
		for (int i = 0; i < t[k].nsz && used < outsz; i++)
			used += (size_t)snprintf(out + used, outsz - used, "%s%ux%u", i ? "," : "",
						 t[k].sizes[i], t[k].counts[i]);
	}
}

static int probe_cases;

/* Prints the case line; closes the case's sockets first (the library flushes
 * on close) and reports what reached the sinks. */
static void report(const char *name, long rc, int err, int *fds, int nfds, const char *extra)
{
	char deliv[512] = "";

	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	drain_sinks(deliv, sizeof(deliv));
	printf("case=%s rc=%ld errno=%s%s%s%s\n", name, rc, rc < 0 ? strerrorname_np(err) : "OK",
	       extra ? " " : "", extra ? extra : "", deliv);
	fflush(stdout);
	probe_cases++;
}

#define REPORT1(name, fd, call)                                      \
	do {                                                         \
		int fds_[1] = { (fd) };                              \
		long rc_;                                            \
		errno = 0;                                           \
		rc_ = (long)(call);                                  \
		report((name), rc_, errno, fds_, 1, NULL);           \
	} while (0)

static int closed_fd(void)
{
	int fd = conn4();

	send(fd, probe_buf, 10, 0);	/* let the library see it in use */
	close(fd);
	return fd;
}

static void probe_bad_fds(void)
{
	struct iovec iov = { probe_buf, 10 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct mmsghdr mm = { .msg_hdr = mh };
	int fd, p[2];

	fd = closed_fd();
	REPORT1("send_closed_fd", -1, send(fd, probe_buf, 10, 0));
	fd = closed_fd();
	REPORT1("sendto_closed_fd", -1,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&sink4_addr, sizeof(sink4_addr)));
	fd = closed_fd();
	REPORT1("sendmsg_closed_fd", -1, sendmsg(fd, &mh, 0));
	fd = closed_fd();
	REPORT1("sendmmsg_closed_fd", -1, sendmmsg(fd, &mm, 1, 0));
	fd = closed_fd();
	REPORT1("write_closed_fd", -1, write(fd, probe_buf, 10));
	fd = closed_fd();
	REPORT1("writev_closed_fd", -1, writev(fd, &iov, 1));

	if (pipe(p) < 0)
		exit(3);
	REPORT1("send_pipe", -1, send(p[1], probe_buf, 10, 0));
	REPORT1("sendto_pipe", -1,
		sendto(p[1], probe_buf, 10, 0, (struct sockaddr *)&sink4_addr, sizeof(sink4_addr)));
	REPORT1("sendmsg_pipe", -1, sendmsg(p[1], &mh, 0));
	REPORT1("sendmmsg_pipe", -1, sendmmsg(p[1], &mm, 1, 0));
	{
		char rb[32], extra[64];
		long rc;
		ssize_t r;

		errno = 0;
		rc = write(p[1], probe_buf, 10);
		r = read(p[0], rb, sizeof(rb));
		snprintf(extra, sizeof(extra), "read=%zd", r);
		report("write_pipe", rc, errno, NULL, 0, extra);
		errno = 0;
		rc = writev(p[1], &iov, 1);
		r = read(p[0], rb, sizeof(rb));
		snprintf(extra, sizeof(extra), "read=%zd", r);
		report("writev_pipe", rc, errno, NULL, 0, extra);
	}
	close(p[0]);
	close(p[1]);
}

static void probe_sizes(void)
{
	struct iovec iov3[3] = { { probe_buf, 20000 }, { probe_buf, 20000 }, { probe_buf, 25508 } };
	struct iovec big6 = { probe_buf, 65528 };
	struct msghdr mh6 = { .msg_iov = &big6, .msg_iovlen = 1 };
	struct iovec okv = { probe_buf, 100 }, bigv = { probe_buf, 65508 };
	struct mmsghdr mm[3];
	int fd;

	fd = conn4();
	REPORT1("send_toobig_v4", fd, send(fd, probe_buf, 65508, 0));
	fd = conn4();
	REPORT1("send_max_v4", fd, send(fd, probe_buf, 65507, 0));
	fd = conn4();
	REPORT1("write_toobig_v4", fd, write(fd, probe_buf, 65508));
	fd = conn4();
	REPORT1("writev_toobig_v4", fd, writev(fd, iov3, 3));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_toobig_v4", fd,
		sendto(fd, probe_buf, 65508, 0, (struct sockaddr *)&sink4_addr, sizeof(sink4_addr)));
	fd = conn6();
	REPORT1("send_toobig_v6", fd, send(fd, probe_buf, 65528, 0));
	fd = conn6();
	REPORT1("send_max_v6", fd, send(fd, probe_buf, 65527, 0));
	fd = conn6();
	REPORT1("sendmsg_toobig_v6", fd, sendmsg(fd, &mh6, 0));

	memset(mm, 0, sizeof(mm));
	mm[0].msg_hdr.msg_iov = &bigv;
	mm[0].msg_hdr.msg_iovlen = 1;
	fd = conn4();
	REPORT1("sendmmsg_toobig_v4", fd, sendmmsg(fd, mm, 1, 0));

	memset(mm, 0, sizeof(mm));
	mm[0].msg_hdr.msg_iov = &okv;
	mm[0].msg_hdr.msg_iovlen = 1;
	mm[1].msg_hdr.msg_iov = &bigv;
	mm[1].msg_hdr.msg_iovlen = 1;
	mm[2].msg_hdr.msg_iov = &okv;
	mm[2].msg_hdr.msg_iovlen = 1;
	fd = conn4();
	{
		char extra[64];
		int fds[1] = { fd };
		long rc;

		errno = 0;
		rc = sendmmsg(fd, mm, 3, 0);
		snprintf(extra, sizeof(extra), "msg_len0=%u", mm[0].msg_len);
		report("sendmmsg_partial_toobig_v4", rc, errno, fds, 1, extra);
	}
}

static void probe_unconnected(void)
{
	struct iovec iov = { probe_buf, 10 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct mmsghdr mm = { .msg_hdr = mh };
	int fd;

	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("send_unconnected", fd, send(fd, probe_buf, 10, 0));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("write_unconnected", fd, write(fd, probe_buf, 10));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("writev_unconnected", fd, writev(fd, &iov, 1));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendmsg_noname_unconnected", fd, sendmsg(fd, &mh, 0));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendmmsg_noname_unconnected", fd, sendmmsg(fd, &mm, 1, 0));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_nulladdr_unconnected", fd, sendto(fd, probe_buf, 10, 0, probe_null, 16));
	fd = probe_socket(AF_INET6, NULL, 0);
	REPORT1("send_unconnected_v6", fd, send(fd, probe_buf, 10, 0));

	/* the kernel binds an unbound socket on its first send */
	{
		struct sockaddr_in local;
		socklen_t len = sizeof(local);
		char extra[64];
		int fds[1];
		long rc;

		fds[0] = fd = probe_socket(AF_INET, NULL, 0);
		errno = 0;
		rc = sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&sink4_addr, sizeof(sink4_addr));
		getsockname(fd, (struct sockaddr *)&local, &len);
		snprintf(extra, sizeof(extra), "bound=%d", local.sin_port != 0);
		report("getsockname_after_sendto", rc, errno, fds, 1, extra);
	}

	/* connect, then dissolve the association with AF_UNSPEC */
	{
		struct sockaddr unspec = { .sa_family = AF_UNSPEC };

		fd = conn4();
		send(fd, probe_buf, 11, 0);
		connect(fd, &unspec, sizeof(unspec));
		REPORT1("send_after_disconnect", fd, send(fd, probe_buf, 10, 0));
	}
	/* reconnect to another peer: later datagrams go to the new peer */
	fd = conn4();
	send(fd, probe_buf, 12, 0);
	connect(fd, (struct sockaddr *)&sink4b_addr, sizeof(sink4b_addr));
	REPORT1("send_after_reconnect", fd, send(fd, probe_buf, 13, 0));
	/* sendto with an address on a connected socket goes to that address */
	fd = conn4();
	REPORT1("sendto_connected_other_addr", fd,
		sendto(fd, probe_buf, 14, 0, (struct sockaddr *)&sink4b_addr, sizeof(sink4b_addr)));
}

static void probe_faults(void)
{
	struct iovec nulliov = { NULL, 10 }, okv = { probe_buf, 10 };
	struct msghdr mh = { .msg_iov = &nulliov, .msg_iovlen = 1 };
	struct msghdr mh_noiov = { .msg_iov = NULL, .msg_iovlen = 1 };
	struct mmsghdr mm[3];
	int fd;

	fd = conn4();
	REPORT1("send_null_buf", fd, send(fd, probe_null, 10, 0));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_null_buf", fd,
		sendto(fd, probe_null, 10, 0, (struct sockaddr *)&sink4_addr, sizeof(sink4_addr)));
	fd = conn4();
	REPORT1("write_null_buf", fd, write(fd, probe_null, 10));
	fd = conn4();
	REPORT1("writev_null_iov_base", fd, writev(fd, &nulliov, 1));
	fd = conn4();
	REPORT1("sendmsg_null_iov_base", fd, sendmsg(fd, &mh, 0));
	fd = conn4();
	REPORT1("sendmsg_null_msg_iov", fd, sendmsg(fd, &mh_noiov, 0));
	fd = conn4();
	REPORT1("sendmsg_null_msghdr", fd, sendmsg(fd, probe_null, 0));
	fd = conn4();
	REPORT1("send_null_zero_len", fd, send(fd, probe_null, 0, 0));

	memset(mm, 0, sizeof(mm));
	mm[0].msg_hdr.msg_iov = &nulliov;
	mm[0].msg_hdr.msg_iovlen = 1;
	fd = conn4();
	REPORT1("sendmmsg_null_iov_base", fd, sendmmsg(fd, mm, 1, 0));

	memset(mm, 0, sizeof(mm));
	for (int i = 0; i < 3; i++) {
		mm[i].msg_hdr.msg_iov = i == 1 ? &nulliov : &okv;
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	fd = conn4();
	{
		char extra[64];
		int fds[1] = { fd };
		long rc;

		errno = 0;
		rc = sendmmsg(fd, mm, 3, 0);
		snprintf(extra, sizeof(extra), "msg_len0=%u", mm[0].msg_len);
		report("sendmmsg_partial_efault", rc, errno, fds, 1, extra);
	}
	fd = conn4();
	REPORT1("sendmmsg_null_vec", fd, sendmmsg(fd, probe_null, 1, 0));
	fd = conn4();
	REPORT1("sendmmsg_null_vec_vlen0", fd, sendmmsg(fd, probe_null, 0, 0));
}

static void probe_addresses(void)
{
	struct sockaddr_in6 v6 = sink6_addr, mapped;
	struct sockaddr_in v4 = sink4_addr, port0 = sink4_addr, unspec = sink4_addr;
	struct sockaddr_in6 port0_6 = sink6_addr;
	struct iovec iov = { probe_buf, 10 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_name = &v4, .msg_namelen = 15 };
	int fd, one = 1;

	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_short_addrlen_v4", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&v4, sizeof(v4) - 1));
	fd = probe_socket(AF_INET6, NULL, 0);
	REPORT1("sendto_short_addrlen_v6", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&v6, sizeof(v6) - 5));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendmsg_short_namelen_v4", fd, sendmsg(fd, &mh, 0));
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_addrlen0_unconnected", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&v4, 0));
	fd = probe_socket(AF_INET, NULL, 0);
	{
		struct sockaddr_storage big;

		memset(&big, 0, sizeof(big));
		memcpy(&big, &v4, sizeof(v4));
		REPORT1("sendto_addrlen_too_long", fd,
			sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&big, sizeof(big) + 1));
	}
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_v4sock_v6addr", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&v6, sizeof(v6)));
	unspec.sin_family = AF_UNSPEC;
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_v4sock_unspec_family", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&unspec, sizeof(unspec)));
	fd = probe_socket(AF_INET6, NULL, 0);
	REPORT1("sendto_v6sock_v4addr", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&v4, sizeof(v4)));
	memset(&mapped, 0, sizeof(mapped));
	mapped.sin6_family = AF_INET6;
	mapped.sin6_port = sink4_addr.sin_port;
	mapped.sin6_addr.s6_addr[10] = 0xff;
	mapped.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&mapped.sin6_addr.s6_addr[12], &sink4_addr.sin_addr, 4);
	fd = probe_socket(AF_INET6, NULL, 0);
	REPORT1("sendto_v6sock_v4mapped", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&mapped, sizeof(mapped)));
	fd = probe_socket(AF_INET6, NULL, 0);
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	REPORT1("sendto_v6only_v4mapped", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&mapped, sizeof(mapped)));

	port0.sin_port = 0;
	fd = probe_socket(AF_INET, NULL, 0);
	REPORT1("sendto_port0_v4", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&port0, sizeof(port0)));
	port0_6.sin6_port = 0;
	fd = probe_socket(AF_INET6, NULL, 0);
	REPORT1("sendto_port0_v6", fd,
		sendto(fd, probe_buf, 10, 0, (struct sockaddr *)&port0_6, sizeof(port0_6)));
}

static void probe_iov_limits(void)
{
	static struct iovec many[1025];
	static struct mmsghdr vec[2000];
	struct msghdr mh = { .msg_iov = many };
	struct iovec one = { probe_buf, 8 };
	int fd;

	for (int i = 0; i < 1025; i++) {
		many[i].iov_base = probe_buf + i;
		many[i].iov_len = 1;
	}
	mh.msg_iovlen = 1025;
	fd = conn4();
	REPORT1("sendmsg_iovlen_1025", fd, sendmsg(fd, &mh, 0));
	mh.msg_iovlen = 1024;
	fd = conn4();
	REPORT1("sendmsg_iovlen_1024", fd, sendmsg(fd, &mh, 0));
	fd = conn4();
	REPORT1("writev_iovcnt_1025", fd, writev(fd, many, 1025));
	fd = conn4();
	REPORT1("writev_iovcnt_1024", fd, writev(fd, many, 1024));
	for (int i = 0; i < 2000; i++) {
		vec[i].msg_hdr.msg_iov = &one;
		vec[i].msg_hdr.msg_iovlen = 1;
	}
	fd = conn4();
	REPORT1("sendmmsg_vlen_2000", fd, sendmmsg(fd, vec, 2000, 0));
}

static void probe_zero_len(void)
{
	struct iovec empty = { probe_buf, 0 };
	struct msghdr mh = { .msg_iov = NULL, .msg_iovlen = 0 };
	struct mmsghdr mm = { .msg_hdr = { .msg_iov = &empty, .msg_iovlen = 1 } };
	int fd;

	fd = conn4();
	REPORT1("send_zero_len", fd, send(fd, probe_buf, 0, 0));
	fd = conn4();
	REPORT1("write_zero_len", fd, write(fd, probe_buf, 0));
	fd = conn4();
	REPORT1("writev_zero_len", fd, writev(fd, &empty, 1));
	fd = conn4();
	REPORT1("sendmsg_zero_len", fd, sendmsg(fd, &mh, 0));
	fd = conn4();
	REPORT1("sendmmsg_zero_len", fd, sendmmsg(fd, &mm, 1, 0));
	fd = probe_socket(AF_INET6, NULL, 0);
	REPORT1("sendto_zero_len_v6", fd,
		sendto(fd, probe_buf, 0, 0, (struct sockaddr *)&sink6_addr, sizeof(sink6_addr)));
}

static void probe_flags_and_cmsg(void)
{
	int fd, on = 1;

	fd = conn4();
	REPORT1("send_msg_oob", fd, send(fd, probe_buf, 10, MSG_OOB));
	fd = conn4();
	REPORT1("send_msg_dontwait", fd, send(fd, probe_buf, 10, MSG_DONTWAIT));
	/* MSG_MORE corks: the kernel joins the two sends into one datagram */
	fd = conn4();
	send(fd, probe_buf, 10, MSG_MORE);
	REPORT1("send_msg_more_join", fd, send(fd, probe_buf, 20, 0));
	fd = conn4();
	setsockopt(fd, IPPROTO_UDP, UDP_CORK, &on, sizeof(on));
	send(fd, probe_buf, 10, 0);
	send(fd, probe_buf, 20, 0);
	on = 0;
	REPORT1("udp_cork_join", fd, setsockopt(fd, IPPROTO_UDP, UDP_CORK, &on, sizeof(on)));
	fd = conn4();
	shutdown(fd, SHUT_WR);
	REPORT1("send_after_shutdown_wr", fd, send(fd, probe_buf, 10, MSG_NOSIGNAL));

	/* the application's own GSO: one call, ten datagrams of 100 bytes */
	{
		char cbuf[CMSG_SPACE(sizeof(uint16_t))];
		struct iovec iov = { probe_buf, 1000 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		uint16_t seg = 100;

		memset(cbuf, 0, sizeof(cbuf));
		cm->cmsg_level = IPPROTO_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(seg));
		memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
		fd = conn4();
		REPORT1("sendmsg_app_gso", fd, sendmsg(fd, &mh, 0));

		/* an unknown SOL_IP control message: EINVAL */
		cm->cmsg_level = IPPROTO_IP;
		cm->cmsg_type = 0x7777;
		fd = conn4();
		REPORT1("sendmsg_bad_cmsg", fd, sendmsg(fd, &mh, 0));
	}
}

/* Connected socket to a closed port: the ICMP port unreachable makes a later
 * send fail with ECONNREFUSED.  Reports the attempt that saw it. */
static void probe_async_refused(int family)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char extra[96];
	int hole = bound_sink(family, &ss), fd, attempt, err = 0;
	long rc = 0;

	len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	close(hole);		/* nobody listens on that port now */
	fd = probe_socket(family, &ss, len);
	for (attempt = 1; attempt <= 10; attempt++) {
		errno = 0;
		rc = send(fd, probe_buf, 10, 0);
		err = errno;
		if (rc < 0)
			break;
		usleep(50000);
	}
	{
		long next;

		errno = 0;
		next = send(fd, probe_buf, 10, 0);
		snprintf(extra, sizeof(extra), "attempt=%d next=%s", attempt,
			 next < 0 ? strerrorname_np(errno) : "OK");
	}
	{
		int fds[1] = { fd };

		report(family == AF_INET ? "async_econnrefused_v4" : "async_econnrefused_v6", rc, err,
		       fds, 1, extra);
	}
}

static int errno_probe(void)
{
	struct sockaddr_storage ss;

	signal(SIGPIPE, SIG_IGN);
	memset(probe_buf, 0x5a, sizeof(probe_buf));
	probe_sink4 = bound_sink(AF_INET, &ss);
	memcpy(&sink4_addr, &ss, sizeof(sink4_addr));
	probe_sink4b = bound_sink(AF_INET, &ss);
	memcpy(&sink4b_addr, &ss, sizeof(sink4b_addr));
	probe_sink6 = bound_sink(AF_INET6, &ss);
	memcpy(&sink6_addr, &ss, sizeof(sink6_addr));

	probe_bad_fds();
	probe_sizes();
	probe_unconnected();
	probe_faults();
	probe_addresses();
	probe_iov_limits();
	probe_zero_len();
	probe_flags_and_cmsg();
	probe_async_refused(AF_INET);
	probe_async_refused(AF_INET6);
	printf("{\"probe_cases\":%d}\n", probe_cases);
	fflush(stdout);
	return 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	static struct sockset socks;
	static struct phase ph;
	int status;

	parse_options(argc, argv);
	if (opt.errno_probe)
		return errno_probe();
	signal(SIGPIPE, SIG_IGN);
	if (opt.dlopen_path && !dlopen(opt.dlopen_path, RTLD_NOW)) {
		fprintf(stderr, "uw_sender: dlopen: %s\n", dlerror());
		return 3;
	}
	sockset_open(&socks);
	if (opt.fork_exit)
		return run_fork_exit(&socks);
	run_phase(&ph, 0, &socks, opt.count);
	phase_close(&ph, &socks);
	print_summary(ph.ws, ph.nw, 0);
	status = errors_of(ph.ws, ph.nw) ? 1 : 0;
	return finish(status);
}
