/* SPDX-License-Identifier: MIT */
/*
 * uw_ts_sink — receives what uw_pacer sends and measures its timing: every
 * datagram is stamped by the kernel on arrival (SO_TIMESTAMPNS,
 * CLOCK_REALTIME, the clock of the sender's stamps).
 *
 * One socket per port, --bind ADDR:PORT and the --ports - 1 ports after
 * it (all streams to one port: --ports 1). Stops --idle-ms after the last
 * datagram once data came, on SIGUSR1/SIGTERM (after draining what is
 * queued), or at --timeout-s. Then one JSON line:
 *
 *   datagrams, streams, lost (sequence gaps), reordered, duplicates, bad
 *   iat_dev_us   |A_i - A_i-1 - T|: arrival spacing against the nominal
 *                --interval-us T, consecutive sequence numbers only
 *   ipdv_us      |(A_i - A_i-1) - (S_i - S_i-1)|: arrival spacing against
 *                the sender's own spacing (RFC 5481 IPDV), so the sender's
 *                own lateness is not counted
 *   delay_us     A_i - S_i, one-way delay (same host, same clock)
 *   rate_bps     per stream, bytes after its first datagram over its span
 *   rate_err     largest |rate / (--size * 8 / T) - 1| of a stream
 * each as p50/p90/p99/max over every stream's datagrams inside the window
 * that leaves out the first and last --skip-ms of the run (start-up and
 * drain).
 *
 * A test tool: exits 1 on setup errors.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uw_payload.h"

#define PACER_MAGIC	0x43505755u
#define PACER_HDR	20u
#define MAX_PORTS	1024
#define MAX_STREAMS	65536
#define BATCH		64
#define BUF		2048

struct rec {
	uint32_t stream, seq, len;
	uint64_t sent, arrived;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static struct rec *recs;
static size_t nrecs, caprecs;
static uint64_t bad;

static void keep(const struct rec *r)
{
	if (nrecs == caprecs) {
		caprecs = caprecs ? caprecs * 2 : 65536;
		recs = realloc(recs, caprecs * sizeof(*recs));
		if (!recs) {
			perror("realloc");
			exit(1);
		}
	}
	recs[nrecs++] = *r;
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

static int drain(int fd)
{
	static uint8_t bufs[BATCH][BUF];
	static char ctl[BATCH][CMSG_SPACE(sizeof(struct timespec))];
	struct mmsghdr mm[BATCH];
	struct iovec iov[BATCH];
	int n, total = 0;

	for (;;) {
		for (int i = 0; i < BATCH; i++) {
			iov[i] = (struct iovec){ bufs[i], BUF };
			memset(&mm[i], 0, sizeof(mm[i]));
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
			mm[i].msg_hdr.msg_control = ctl[i];
			mm[i].msg_hdr.msg_controllen = sizeof(ctl[i]);
		}
		n = recvmmsg(fd, mm, BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return total;
		for (int i = 0; i < n; i++) {
			struct msghdr *h = &mm[i].msg_hdr;
			struct rec r = { 0 };

			for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
				if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS)
					r.arrived = ts_ns((struct timespec *)CMSG_DATA(c));
			if (mm[i].msg_len < PACER_HDR || get_le32(bufs[i]) != PACER_MAGIC ||
			    !r.arrived) {
				bad++;
				continue;
			}
			r.stream = get_le32(bufs[i] + 4);
			r.seq = get_le32(bufs[i] + 8);
			r.sent = get_le64(bufs[i] + 12);
			r.len = mm[i].msg_len;
			if (r.stream >= MAX_STREAMS) {
				bad++;
				continue;
			}
			keep(&r);
		}
		total += n;
	}
}

static int by_stream_then_arrival(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->stream != y->stream)
		return x->stream < y->stream ? -1 : 1;
	if (x->arrived != y->arrived)
		return x->arrived < y->arrived ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static double absd(double x)
{
	return x < 0 ? -x : x;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct series {
	double *v;
	size_t n;
};

static void add(struct series *s, double x)
{
	s->v[s->n++] = x;
}

static void print_series(const char *name, struct series *s, bool last)
{
	qsort(s->v, s->n, sizeof(double), cmp_double);
	if (!s->n)
		printf("\"%s\": {\"n\": 0}%s", name, last ? "" : ", ");
	else
		printf("\"%s\": {\"n\": %zu, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
		       "\"max\": %.1f}%s", name, s->n, s->v[s->n / 2], s->v[s->n * 9 / 10],
		       s->v[s->n * 99 / 100], s->v[s->n - 1], last ? "" : ", ");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "ports", required_argument, NULL, 'n' },
		{ "interval-us", required_argument, NULL, 'i' },
		{ "size", required_argument, NULL, 's' },
		{ "skip-ms", required_argument, NULL, 'k' },
		{ "idle-ms", required_argument, NULL, 'd' },
		{ "timeout-s", required_argument, NULL, 't' },
		{ "ready-file", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_storage ss;
	socklen_t slen = 0;
	unsigned int nports = 1, size = 1316;
	uint64_t interval_ns = 2500000, skip_ns = 300000000, idle_ns = 2000000000,
		 timeout_ns = 120000000000ull, start, last_data = 0;
	const char *ready = NULL;
	struct pollfd pfd[MAX_PORTS];
	uint64_t lo_t = UINT64_MAX, hi_t = 0, lost = 0, reordered = 0, dups = 0;
	struct series iat = { 0 }, ipdv = { 0 }, delay = { 0 }, rate = { 0 };
	double rate_err = 0, nominal;
	size_t streams = 0;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'b':
			if (uw_parse_addr(optarg, &ss, &slen)) {
				fprintf(stderr, "bad --bind %s\n", optarg);
				return 1;
			}
			break;
		case 'n': nports = (unsigned int)atoi(optarg); break;
		case 'i': interval_ns = strtoull(optarg, NULL, 10) * 1000; break;
		case 's': size = (unsigned int)atoi(optarg); break;
		case 'k': skip_ns = strtoull(optarg, NULL, 10) * 1000000; break;
		case 'd': idle_ns = strtoull(optarg, NULL, 10) * 1000000; break;
		case 't': timeout_ns = strtoull(optarg, NULL, 10) * 1000000000ull; break;
		case 'r': ready = optarg; break;
		default:
			fprintf(stderr, "usage: uw_ts_sink --bind ADDR:PORT [--ports N] "
				"[--interval-us T] [--size B] [--skip-ms M] [--idle-ms I] "
				"[--timeout-s S] [--ready-file F]\n");
			return 2;
		}
	}
	if (!slen || !nports || nports > MAX_PORTS) {
		fprintf(stderr, "uw_ts_sink: --bind needed, --ports 1..%d\n", MAX_PORTS);
		return 2;
	}
	for (unsigned int i = 0; i < nports; i++) {
		struct sockaddr_storage a = ss;
		int one = 1, big = 32 << 20;
		int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

		if (a.ss_family == AF_INET)
			((struct sockaddr_in *)&a)->sin_port =
				htons((uint16_t)(ntohs(((struct sockaddr_in *)&ss)->sin_port) + i));
		else
			((struct sockaddr_in6 *)&a)->sin6_port =
				htons((uint16_t)(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) + i));
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) ||
		    bind(fd, (struct sockaddr *)&a, slen)) {
			perror("uw_ts_sink: socket");
			return 1;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)))
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
		pfd[i] = (struct pollfd){ .fd = fd, .events = POLLIN };
	}
	signal(SIGUSR1, on_signal);
	signal(SIGTERM, on_signal);
	if (ready) {
		FILE *f = fopen(ready, "w");

		if (!f || fputs("ready\n", f) < 0 || fclose(f)) {
			perror("uw_ts_sink: ready file");
			return 1;
		}
	}
	start = mono_ns();
	for (;;) {
		uint64_t now = mono_ns();
		int got = 0;

		if (stop || now - start > timeout_ns || (last_data && now - last_data > idle_ns))
			break;
		if (poll(pfd, nports, 50) < 0 && errno != EINTR) {
			perror("poll");
			return 1;
		}
		for (unsigned int i = 0; i < nports; i++)
			got += drain(pfd[i].fd);
		if (got)
			last_data = mono_ns();
	}
	for (unsigned int i = 0; i < nports; i++)
		drain(pfd[i].fd);

	/* the window: leave out the first and last skip of the run */
	for (size_t k = 0; k < nrecs; k++) {
		if (recs[k].sent < lo_t)
			lo_t = recs[k].sent;
		if (recs[k].sent > hi_t)
			hi_t = recs[k].sent;
	}
	lo_t += skip_ns;
	hi_t = hi_t > skip_ns ? hi_t - skip_ns : 0;
	qsort(recs, nrecs, sizeof(*recs), by_stream_then_arrival);
	iat.v = calloc(nrecs + 1, sizeof(double));
	ipdv.v = calloc(nrecs + 1, sizeof(double));
	delay.v = calloc(nrecs + 1, sizeof(double));
	rate.v = calloc(nrecs + 1, sizeof(double));
	nominal = (double)size * 8e9 / (double)interval_ns;
	for (size_t a = 0, b; a < nrecs; a = b) {
		uint32_t next = recs[a].seq, max_seq = 0;
		uint64_t first = 0, last = 0, bytes = 0, unique = 0;
		const struct rec *prev = NULL;

		streams++;
		for (b = a; b < nrecs && recs[b].stream == recs[a].stream; b++) {
			const struct rec *r = &recs[b];
			bool in = r->sent >= lo_t && r->sent <= hi_t;

			if (b > a && r->seq == recs[b - 1].seq) {
				dups++;
				continue;
			}
			unique++;
			if (r->seq < next)
				reordered++;
			if (r->seq > max_seq)
				max_seq = r->seq;
			if (r->seq >= next)
				next = r->seq + 1;
			if (!in) {
				prev = NULL;
				continue;
			}
			add(&delay, (double)((int64_t)(r->arrived - r->sent)) / 1e3);
			if (prev && r->seq == prev->seq + 1) {
				double da = (double)(int64_t)(r->arrived - prev->arrived);
				double ds = (double)(int64_t)(r->sent - prev->sent);

				add(&iat, absd(da - (double)interval_ns) / 1e3);
				add(&ipdv, absd(da - ds) / 1e3);
			}
			if (!first)
				first = r->arrived;
			else
				bytes += r->len;
			last = r->arrived;
			prev = r;
		}
		if ((uint64_t)max_seq + 1 > unique)
			lost += (uint64_t)max_seq + 1 - unique;
		if (last > first) {
			double bps = (double)bytes * 8e9 / (double)(last - first);

			add(&rate, bps);
			if (absd(bps / nominal - 1) > rate_err)
				rate_err = absd(bps / nominal - 1);
		}
	}
	printf("{\"datagrams\": %zu, \"streams\": %zu, \"lost\": %llu, \"reordered\": %llu, "
	       "\"duplicates\": %llu, \"bad\": %llu, \"window_s\": %.3f, ", nrecs, streams,
	       (unsigned long long)lost, (unsigned long long)reordered,
	       (unsigned long long)dups, (unsigned long long)bad,
	       hi_t > lo_t ? (double)(hi_t - lo_t) / 1e9 : 0.0);
	print_series("iat_dev_us", &iat, false);
	print_series("ipdv_us", &ipdv, false);
	print_series("delay_us", &delay, false);
	print_series("rate_bps", &rate, false);
	printf("\"rate_err\": %.5f}\n", rate_err);
	return 0;
}
