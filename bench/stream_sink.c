/* stream_sink — many-stream MPEG-TS receiver for the udpweave benchmarks.
 *
 * One socket per client: client i is (--addr + i % --addrs, --port + i /
 * --addrs), bound exactly, so a stream is identified by its destination
 * address and port, as the sender addressed it.  Each socket gets a large
 * SO_RCVBUFFORCE, kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME)
 * and the kernel's drop counter (SO_RXQ_OVFL); everything is drained with
 * recvmmsg from an epoll loop.
 *
 * Per datagram it keeps one record (receive time, client, length, key) for
 * bench/streams_bench.py, which joins them with the send times logged by
 * bench/so/uwb_stamp.c (same key function: keep the two in sync) to get
 * the delay of every datagram and its inter-arrival jitter.  With --ts it
 * checks the MPEG-TS of each stream: sync byte every 188 bytes and per-PID
 * continuity counters (ISO/IEC 13818-1 2.4.3.3, as bench/ts_receiver.py).
 *
 * Prints "ready" on stdout once every socket is bound; stops after --idle-ms
 * without data (once data has arrived), on SIGTERM/SIGINT (after draining),
 * or at --time-limit; then writes the records to --out and one JSON object
 * on stdout.
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

#define MAX_CLIENTS	4096
#define BATCH		64
#define BUF_BYTES	65536
#define TS_PACKET	188
#define TS_PIDS		8192
#define CC_UNSEEN	0xFF
#define CTRL_BYTES	(CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(uint32_t)))

#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif

/* One received datagram; the layout bench/streams_bench.py reads. */
struct record {
	uint64_t t_ns;		/* kernel receive time, CLOCK_REALTIME */
	uint32_t client;
	uint32_t len;
	uint32_t key;
	uint32_t pad;
};

struct client {
	int fd;
	uint64_t received, bytes, sync_errors, cc_errors;
	uint32_t rxq_ovfl;
	uint8_t *cc;		/* last CC per PID (CC_UNSEEN), bit 4: duplicate seen */
};

struct options {
	const char *addr;
	int addrs;
	int port;
	int clients;
	int rcvbuf;
	int idle_ms;
	double time_limit;
	bool ts;
	const char *out;
	long max_records;
};

struct sink {
	struct options opt;
	struct client *cl;
	int epfd;
	struct record *rec;
	long nrec;
	uint64_t received, bytes, records_dropped;
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
	fprintf(stderr, "stream_sink: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: stream_sink --clients N [--addr ADDR] [--addrs K] [--port P]\n"
		"                   [--ts] [--out FILE] [--max-records N] [--rcvbuf BYTES]\n"
		"                   [--idle-ms MS] [--time-limit S]\n");
	exit(2);
}

static void parse_options(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "addrs", required_argument, NULL, 'A' },
		{ "port", required_argument, NULL, 'p' },
		{ "clients", required_argument, NULL, 'c' },
		{ "rcvbuf", required_argument, NULL, 'r' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ "time-limit", required_argument, NULL, 't' },
		{ "ts", no_argument, NULL, 'T' },
		{ "out", required_argument, NULL, 'o' },
		{ "max-records", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	*o = (struct options){
		.addr = "127.0.0.1", .addrs = 1, .port = 20000, .clients = 1,
		.rcvbuf = 16 << 20, .idle_ms = 500, .time_limit = 60,
		.max_records = 4 << 20,
	};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': o->addr = optarg; break;
		case 'A': o->addrs = atoi(optarg); break;
		case 'p': o->port = atoi(optarg); break;
		case 'c': o->clients = atoi(optarg); break;
		case 'r': o->rcvbuf = atoi(optarg); break;
		case 'i': o->idle_ms = atoi(optarg); break;
		case 't': o->time_limit = atof(optarg); break;
		case 'T': o->ts = true; break;
		case 'o': o->out = optarg; break;
		case 'm': o->max_records = atol(optarg); break;
		default: usage();
		}
	}
	if (o->clients < 1 || o->clients > MAX_CLIENTS || o->addrs < 1 ||
	    o->port < 1 || o->port + (o->clients - 1) / o->addrs > 65535 ||
	    o->time_limit <= 0 || o->max_records < 0)
		usage();
}

/* keep in sync with bench/so/uwb_stamp.c: FNV-1a over the first and
 * the last 16 bytes (all of a shorter datagram) */
static uint32_t datagram_key(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len && i < 16; i++)
		h = (h ^ p[i]) * 16777619u;
	for (i = len > 32 ? len - 16 : 16; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static int bind_client(const struct options *o, int i)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct in_addr base;
	int fd, one = 1;

	if (inet_pton(AF_INET, o->addr, &base) != 1)
		usage();
	sa.sin_addr.s_addr = htonl(ntohl(base.s_addr) + i % o->addrs);
	sa.sin_port = htons(o->port + i / o->addrs);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &o->rcvbuf, sizeof(o->rcvbuf)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf)) < 0)
		die("SO_RCVBUF");
	if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0)
		die("SO_TIMESTAMPNS");
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	return fd;
}

static void open_sockets(struct sink *k)
{
	int i;

	k->epfd = epoll_create1(0);
	if (k->epfd < 0)
		die("epoll_create1");
	for (i = 0; i < k->opt.clients; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

		k->cl[i].fd = bind_client(&k->opt, i);
		if (k->opt.ts) {
			k->cl[i].cc = malloc(TS_PIDS);
			if (!k->cl[i].cc)
				die("malloc");
			memset(k->cl[i].cc, CC_UNSEEN, TS_PIDS);
		}
		if (epoll_ctl(k->epfd, EPOLL_CTL_ADD, k->cl[i].fd, &ev) < 0)
			die("epoll_ctl");
	}
}

/* Continuity counter of one TS packet against the last one of its PID:
 * +1 when it carries payload, unchanged when it does not, one duplicate
 * allowed, no check across a signalled discontinuity. */
static void check_ts_packet(struct client *c, const uint8_t *p)
{
	unsigned pid = ((p[1] & 0x1F) << 8) | p[2];
	unsigned afc = (p[3] >> 4) & 3, cc = p[3] & 0x0F;
	bool discontinuity = (afc & 2) && p[4] > 0 && (p[5] & 0x80);
	uint8_t last = c->cc[pid];

	if (pid == 0x1FFF)
		return;
	if (last != CC_UNSEEN && !discontinuity) {
		unsigned prev = last & 0x0F;
		bool prev_dup = last & 0x10;

		if (afc & 1) {
			if (cc == prev && !prev_dup) {
				c->cc[pid] = cc | 0x10;
				return;
			}
			if (cc != ((prev + 1) & 0x0F))
				c->cc_errors++;
		} else if (cc != prev) {
			c->cc_errors++;
		}
	}
	c->cc[pid] = cc;
}

static void check_ts(struct client *c, const uint8_t *p, size_t len)
{
	size_t off;

	if (len % TS_PACKET)
		c->sync_errors++;
	for (off = 0; off + TS_PACKET <= len; off += TS_PACKET) {
		if (p[off] != 0x47) {
			c->sync_errors++;
			continue;
		}
		check_ts_packet(c, p + off);
	}
}

static uint64_t timestamp_ns(struct msghdr *mh, struct client *c)
{
	struct cmsghdr *cm;
	uint64_t t = 0;

	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET)
			continue;
		if (cm->cmsg_type == SO_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
			t = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
		} else if (cm->cmsg_type == SO_RXQ_OVFL) {
			memcpy(&c->rxq_ovfl, CMSG_DATA(cm), sizeof(c->rxq_ovfl));
		}
	}
	return t;
}

static void count_datagram(struct sink *k, int i, const uint8_t *buf,
			   size_t len, uint64_t t_ns)
{
	struct client *c = &k->cl[i];

	c->received++;
	c->bytes += len;
	k->received++;
	k->bytes += len;
	if (k->opt.ts)
		check_ts(c, buf, len);
	if (k->nrec < k->opt.max_records)
		k->rec[k->nrec++] = (struct record){
			.t_ns = t_ns, .client = i, .len = len,
			.key = datagram_key(buf, len),
		};
	else
		k->records_dropped++;
}

/* Read everything queued on client i's socket. */
static long drain_client(struct sink *k, int i, uint8_t *bufs,
			 struct mmsghdr *m, struct iovec *iov, char *ctrl)
{
	long total = 0;
	int j, r;

	for (;;) {
		for (j = 0; j < BATCH; j++) {
			iov[j] = (struct iovec){ bufs + (size_t)j * BUF_BYTES, BUF_BYTES };
			m[j].msg_hdr = (struct msghdr){
				.msg_iov = &iov[j], .msg_iovlen = 1,
				.msg_control = ctrl + (size_t)j * CTRL_BYTES,
				.msg_controllen = CTRL_BYTES,
			};
		}
		r = recvmmsg(k->cl[i].fd, m, BATCH, MSG_DONTWAIT, NULL);
		if (r <= 0)
			break;
		for (j = 0; j < r; j++)
			count_datagram(k, i, iov[j].iov_base, m[j].msg_len,
				       timestamp_ns(&m[j].msg_hdr, &k->cl[i]));
		total += r;
	}
	if (total) {
		k->t_last = now_s();
		if (!k->t_first)
			k->t_first = k->t_last;
	}
	return total;
}

static void receive_loop(struct sink *k)
{
	static struct mmsghdr m[BATCH];
	static struct iovec iov[BATCH];
	static char ctrl[BATCH * CTRL_BYTES];
	uint8_t *bufs = malloc((size_t)BATCH * BUF_BYTES);
	double t_start = now_s();
	int i;

	if (!bufs)
		die("malloc");
	while (!stop_requested) {
		struct epoll_event ev[256];
		double t = now_s();
		int n;

		if (t - t_start > k->opt.time_limit)
			break;
		if (k->received && (t - k->t_last) * 1000 > k->opt.idle_ms)
			break;
		n = epoll_wait(k->epfd, ev, 256, 20);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (i = 0; i < n; i++)
			drain_client(k, ev[i].data.u32, bufs, m, iov, ctrl);
	}
	for (i = 0; i < k->opt.clients; i++)
		drain_client(k, i, bufs, m, iov, ctrl);
	free(bufs);
}

static void write_records(const struct sink *k)
{
	FILE *f;

	if (!k->opt.out)
		return;
	f = fopen(k->opt.out, "wb");
	if (!f)
		die(k->opt.out);
	if (k->nrec && fwrite(k->rec, sizeof(*k->rec), k->nrec, f) != (size_t)k->nrec)
		die("write records");
	if (fclose(f))
		die("close records");
}

static void print_report(const struct sink *k)
{
	uint64_t min_c = UINT64_MAX, max_c = 0, sync = 0, cc = 0, ovfl = 0;
	int i, with_data = 0;
	struct rusage ru;

	for (i = 0; i < k->opt.clients; i++) {
		const struct client *c = &k->cl[i];

		min_c = c->received < min_c ? c->received : min_c;
		max_c = c->received > max_c ? c->received : max_c;
		with_data += c->received > 0;
		sync += c->sync_errors;
		cc += c->cc_errors;
		ovfl += c->rxq_ovfl;
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"tool\": \"stream_sink\", \"clients\": %d, \"clients_with_data\": %d, "
	       "\"received\": %llu, \"bytes\": %llu, \"client_min\": %llu, "
	       "\"client_max\": %llu, \"ts_checked\": %s, \"sync_errors\": %llu, "
	       "\"cc_errors\": %llu, \"rx_overflow\": %llu, \"records\": %ld, "
	       "\"records_dropped\": %llu, \"duration_s\": %.6f, \"utime_s\": %.6f, "
	       "\"stime_s\": %.6f}\n",
	       k->opt.clients, with_data, (unsigned long long)k->received,
	       (unsigned long long)k->bytes, (unsigned long long)min_c,
	       (unsigned long long)max_c, k->opt.ts ? "true" : "false",
	       (unsigned long long)sync, (unsigned long long)cc,
	       (unsigned long long)ovfl, k->nrec,
	       (unsigned long long)k->records_dropped,
	       k->received ? k->t_last - k->t_first : 0.0,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct sink k = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;

	parse_options(&k.opt, argc, argv);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)k.opt.clients + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)k.opt.clients + 64 ?
			rl.rlim_max : (rlim_t)k.opt.clients + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	k.cl = calloc(k.opt.clients, sizeof(*k.cl));
	k.rec = malloc(((size_t)k.opt.max_records + 1) * sizeof(*k.rec));
	if (!k.cl || !k.rec)
		die("malloc");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	open_sockets(&k);
	printf("ready\n");
	fflush(stdout);
	receive_loop(&k);
	write_records(&k);
	print_report(&k);
	return 0;
}
