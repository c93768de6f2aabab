/* SPDX-License-Identifier: MIT */
/*
 * uw_pacer — a sender that paces itself, as a streaming server does: N
 * streams, one connected UDP socket each (as VLC has), a datagram of
 * --size bytes every --interval-us per stream, the streams staggered
 * evenly, all from one thread that sleeps until the next datagram is due
 * (clock_nanosleep on an absolute CLOCK_MONOTONIC schedule).
 *
 * Stream i sends to PORT + i * --port-step. Payload (little endian): magic
 * "UWPC", stream u32, sequence u32, send time u64 (CLOCK_REALTIME ns, read
 * just before the send call: a receiver's SO_TIMESTAMPNS uses the same
 * clock), zeros.
 *
 * --metrics RATE,JITTER_US,DELAY_US sets udpweave stream metrics on every
 * socket with setsockopt(SOL_UDPWEAVE) (or with uw_set_metrics() found by
 * dlsym, with --api); without the library that fails with ENOPROTOOPT,
 * which is reported, not fatal. The first socket's getsockopt answer is
 * printed.
 *
 * Prints one JSON line: what was sent, send calls, the sender's own
 * lateness against its schedule, and the metrics answer. Exits 1 on setup
 * errors or if a send failed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uw_payload.h"
#include "udpweave.h"

#define PACER_MAGIC	0x43505755u	/* "UWPC" */
#define PACER_HDR	20u
#define MAX_STREAMS	4096

struct opts {
	struct sockaddr_storage dest;
	socklen_t dlen;
	unsigned int streams, size, port_step;
	uint64_t interval_ns, duration_ns;
	bool metrics, api;
	struct udpweave_metrics m;
};

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
	fprintf(stderr, "usage: uw_pacer --dest ADDR:PORT [--streams N] [--interval-us T] "
		"[--size B] [--seconds S] [--port-step K] [--metrics RATE,JITTER_US,DELAY_US] "
		"[--api]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "dest", required_argument, NULL, 'd' },
		{ "streams", required_argument, NULL, 'n' },
		{ "interval-us", required_argument, NULL, 'i' },
		{ "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "port-step", required_argument, NULL, 'p' },
		{ "metrics", required_argument, NULL, 'm' },
		{ "api", no_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_dest = false;
	int c;

	memset(o, 0, sizeof(*o));
	o->streams = 1;
	o->size = 1316;
	o->interval_ns = 2500000;
	o->duration_ns = 1000000000;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (uw_parse_addr(optarg, &o->dest, &o->dlen))
				usage();
			have_dest = true;
			break;
		case 'n': o->streams = (unsigned int)atoi(optarg); break;
		case 'i': o->interval_ns = strtoull(optarg, NULL, 10) * 1000; break;
		case 's': o->size = (unsigned int)atoi(optarg); break;
		case 't': o->duration_ns = (uint64_t)(atof(optarg) * 1e9); break;
		case 'p': o->port_step = (unsigned int)atoi(optarg); break;
		case 'm': {
			unsigned long long r;
			unsigned int j, d;

			if (sscanf(optarg, "%llu,%u,%u", &r, &j, &d) != 3)
				usage();
			o->metrics = true;
			o->m.rate_bps = r;
			o->m.max_jitter_us = j;
			o->m.max_delay_us = d;
			break;
		}
		case 'a': o->api = true; break;
		default: usage();
		}
	}
	if (!have_dest || !o->streams || o->streams > MAX_STREAMS || o->size < PACER_HDR ||
	    o->size > 65507 || !o->interval_ns)
		usage();
}

static int open_stream(const struct opts *o, unsigned int i)
{
	struct sockaddr_storage to = o->dest;
	int fd = socket(to.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	uint16_t port;

	if (fd < 0) {
		perror("socket");
		exit(1);
	}
	if (to.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&to;

		port = (uint16_t)(ntohs(in->sin_port) + i * o->port_step);
		in->sin_port = htons(port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&to;

		port = (uint16_t)(ntohs(in6->sin6_port) + i * o->port_step);
		in6->sin6_port = htons(port);
	}
	if (connect(fd, (struct sockaddr *)&to, o->dlen)) {
		perror("connect");
		exit(1);
	}
	return fd;
}

/* "ok", or the errno name of the refusal. */
static const char *set_metrics(const struct opts *o, int fd)
{
	int (*api)(int, const struct udpweave_metrics *);
	int r;

	if (o->api) {
		api = (int (*)(int, const struct udpweave_metrics *))dlsym(RTLD_DEFAULT,
									    "uw_set_metrics");
		if (!api)
			return "no uw_set_metrics";
		r = api(fd, &o->m);
	} else {
		r = setsockopt(fd, SOL_UDPWEAVE, UDPWEAVE_METRICS, &o->m, sizeof(o->m));
	}
	return r ? strerrorname_np(errno) : "ok";
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct opts o;
	int *fd;
	uint32_t *seq;
	uint64_t *late, nlate = 0, cap, sent = 0, errors = 0, t0, t, end;
	const char *metrics_set = "not asked";
	struct udpweave_metrics got = { 0 };
	socklen_t glen = sizeof(got);
	int gerr = 0;
	uint8_t *buf;

	parse(argc, argv, &o);
	fd = calloc(o.streams, sizeof(*fd));
	seq = calloc(o.streams, sizeof(*seq));
	buf = calloc(1, o.size);
	cap = o.duration_ns / o.interval_ns * o.streams + o.streams + 16;
	late = calloc(cap, sizeof(*late));
	if (!fd || !seq || !buf || !late) {
		perror("calloc");
		return 1;
	}
	for (unsigned int i = 0; i < o.streams; i++) {
		fd[i] = open_stream(&o, i);
		if (o.metrics) {
			const char *r = set_metrics(&o, fd[i]);

			if (i == 0)
				metrics_set = r;
		}
	}
	if (getsockopt(fd[0], SOL_UDPWEAVE, UDPWEAVE_METRICS, &got, &glen))
		gerr = errno;
	put_le32(buf, PACER_MAGIC);
	t0 = mono_ns() + 20000000;	/* everyone set up: start in 20 ms */
	end = t0 + o.duration_ns;
	/* datagram k overall: stream k % N, at t0 + k * interval / N */
	for (uint64_t k = 0;; k++) {
		unsigned int i = (unsigned int)(k % o.streams);
		uint64_t due = t0 + k * o.interval_ns / o.streams;
		struct timespec ts = { (time_t)(due / 1000000000ull), (long)(due % 1000000000ull) };

		if (due >= end)
			break;
		t = mono_ns();
		if (t < due) {
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
			t = mono_ns();
		}
		if (nlate < cap)
			late[nlate++] = t - due;
		put_le32(buf + 4, i);
		put_le32(buf + 8, seq[i]);
		put_le64(buf + 12, real_ns());
		if (send(fd[i], buf, o.size, 0) != (ssize_t)o.size) {
			if (!errors)
				perror("send");
			errors++;
			continue;
		}
		seq[i]++;
		sent++;
	}
	t = mono_ns() - t0;
	for (unsigned int i = 0; i < o.streams; i++)
		close(fd[i]);
	qsort(late, nlate, sizeof(*late), cmp_u64);
	printf("{\"streams\": %u, \"sent\": %llu, \"send_calls\": %llu, \"errors\": %llu, "
	       "\"size\": %u, \"interval_us\": %llu, \"elapsed_s\": %.3f, "
	       "\"sender_late_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}, "
	       "\"metrics_set\": \"%s\", \"getsockopt\": ",
	       o.streams, (unsigned long long)sent, (unsigned long long)(sent + errors),
	       (unsigned long long)errors, o.size, (unsigned long long)(o.interval_ns / 1000),
	       (double)t / 1e9,
	       nlate ? (double)late[nlate / 2] / 1e3 : 0.0,
	       nlate ? (double)late[nlate * 99 / 100] / 1e3 : 0.0,
	       nlate ? (double)late[nlate - 1] / 1e3 : 0.0, metrics_set);
	if (gerr)
		printf("{\"error\": \"%s\"}}\n", strerrorname_np(gerr));
	else
		printf("{\"len\": %u, \"rate_bps\": %llu, \"max_jitter_us\": %u, "
		       "\"max_delay_us\": %u, \"pacing\": %u, \"state\": %u, "
		       "\"est_rate_bps\": %llu, \"interval_us\": %u, \"precision_us\": %u}}\n",
		       (unsigned int)glen, (unsigned long long)got.rate_bps, got.max_jitter_us,
		       got.max_delay_us, got.pacing, got.state,
		       (unsigned long long)got.est_rate_bps, got.interval_us, got.precision_us);
	return errors ? 1 : 0;
}
