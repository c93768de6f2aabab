/*
 * uw_fault_tx — the paced sender of the fault matrix (test_faults.py).
 *
 * Sends --count datagrams of --size bytes to one destination at a fixed
 * rate, one send call each (send on a connected socket, else sendto), and
 * records what every call answered: the outcome of each sequence number
 * (ok or the errno), how long the longest call took. A failed datagram is
 * not retried: the stream moves on, as a live sender does.
 *
 * Mid-stream changes happen at fixed points of the stream, the same in
 * every run: before sequence number N of --pause-at N, the sender sleeps
 * --settle-ms (what a library queued before that point leaves meanwhile),
 * prints "pause N" on stdout and waits for a line on stdin; the test
 * changes the network, answers, and the sender goes on at its rate from
 * that moment (no catching up).
 *
 * Payload: uw_payload.h (flow --flow, sequence from 0), checked byte for
 * byte by uw_fault_rx.
 *
 * Output, the last line on stdout, one JSON object:
 *   count, sent, bytes: datagrams the app was told were sent, their bytes
 *   errors: {"EPERM": n, ...}, errors_total
 *   outcomes: [[first_seq, n, "ok"|"EPERM"|"short"], ...] (runs, in order)
 *   max_call_us, max_call_seq: the longest single send call
 *   elapsed_ms: first send to last send returning
 * Exit status: 0 (whatever the sends answered), 2 usage, 3 setup failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uw_payload.h"

#define MAX_PAUSES	8
#define MAX_DGRAM	65507u

static struct {
	struct sockaddr_storage dest;
	socklen_t dest_len;
	const char *dest_text;
	uint64_t count;
	uint32_t size;
	double rate_pps;
	bool connected, nonblock;
	int sndbuf;		/* 0: the kernel's default */
	int pmtudisc;		/* -1: the default */
	uint32_t flow;
	uint64_t pause_at[MAX_PAUSES];
	int npauses;
	unsigned int settle_ms;
} opt = {
	.count = 600,
	.size = 1400,
	.rate_pps = 2000,
	.pmtudisc = -1,
	.settle_ms = 30,
};

/* One run of equal outcomes: 0 = ok, an errno, or -1 = short send. */
struct outcome_run {
	uint64_t first, n;
	int what;
};

static struct outcome_run *runs;
static size_t nruns, runs_cap;
static uint64_t errno_count[256];

static void usage(void)
{
	fprintf(stderr,
		"usage: uw_fault_tx --dest ADDR:PORT [options]\n"
		"  --count N          datagrams (default 600)\n"
		"  --size BYTES       datagram size, >= 28 (default 1400)\n"
		"  --rate-pps R       datagrams per second (default 2000)\n"
		"  --connected        connect, then send(); else sendto()\n"
		"  --nonblock         O_NONBLOCK socket\n"
		"  --sndbuf BYTES     SO_SNDBUF\n"
		"  --pmtudisc do|dont|want|probe   IP_MTU_DISCOVER\n"
		"  --flow F           flow id in the payload (default 0)\n"
		"  --pause-at N       stop before sequence N until a line on stdin (repeatable)\n"
		"  --settle-ms MS     sleep before each pause (default 30)\n");
	exit(2);
}

static int pmtudisc_value(const char *s)
{
	static const struct { const char *name; int v; } t[] = {
		{ "dont", IP_PMTUDISC_DONT }, { "want", IP_PMTUDISC_WANT },
		{ "do", IP_PMTUDISC_DO }, { "probe", IP_PMTUDISC_PROBE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(s, t[i].name))
			return t[i].v;
	usage();
	return -1;
}

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dest", required_argument, NULL, 'd' },
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "rate-pps", required_argument, NULL, 'r' },
		{ "connected", no_argument, NULL, 'c' },
		{ "nonblock", no_argument, NULL, 'N' },
		{ "sndbuf", required_argument, NULL, 'b' },
		{ "pmtudisc", required_argument, NULL, 'm' },
		{ "flow", required_argument, NULL, 'f' },
		{ "pause-at", required_argument, NULL, 'p' },
		{ "settle-ms", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (uw_parse_addr(optarg, &opt.dest, &opt.dest_len))
				usage();
			opt.dest_text = optarg;
			break;
		case 'n': opt.count = strtoull(optarg, NULL, 10); break;
		case 's': opt.size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': opt.rate_pps = atof(optarg); break;
		case 'c': opt.connected = true; break;
		case 'N': opt.nonblock = true; break;
		case 'b': opt.sndbuf = atoi(optarg); break;
		case 'm': opt.pmtudisc = pmtudisc_value(optarg); break;
		case 'f': opt.flow = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p':
			if (opt.npauses >= MAX_PAUSES)
				usage();
			opt.pause_at[opt.npauses++] = strtoull(optarg, NULL, 10);
			break;
		case 'S': opt.settle_ms = (unsigned int)strtoul(optarg, NULL, 10); break;
		default:
			usage();
		}
	}
	if (optind != argc || !opt.dest_text || opt.size < UW_HDR_LEN || opt.size > MAX_DGRAM ||
	    opt.rate_pps <= 0)
		usage();
}

static void must(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "uw_fault_tx: %s: %s\n", what, strerror(errno));
		exit(3);
	}
}

static int open_socket(void)
{
	int fd = socket(opt.dest.ss_family, SOCK_DGRAM | SOCK_CLOEXEC |
			(opt.nonblock ? SOCK_NONBLOCK : 0), 0);

	must(fd, "socket");
	if (opt.sndbuf)
		must(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt.sndbuf, sizeof(opt.sndbuf)),
		     "SO_SNDBUF");
	if (opt.pmtudisc >= 0)
		must(opt.dest.ss_family == AF_INET
		     ? setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &opt.pmtudisc, sizeof(int))
		     : setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &opt.pmtudisc, sizeof(int)),
		     "MTU_DISCOVER");
	if (opt.connected)
		must(connect(fd, (struct sockaddr *)&opt.dest, opt.dest_len), "connect");
	return fd;
}

static void note_outcome(uint64_t seq, int what)
{
	if (nruns && runs[nruns - 1].what == what && runs[nruns - 1].first + runs[nruns - 1].n == seq) {
		runs[nruns - 1].n++;
		return;
	}
	if (nruns == runs_cap) {
		runs_cap = runs_cap ? 2 * runs_cap : 64;
		runs = realloc(runs, runs_cap * sizeof(*runs));
		if (!runs) {
			fprintf(stderr, "uw_fault_tx: out of memory\n");
			exit(3);
		}
	}
	runs[nruns++] = (struct outcome_run){ seq, 1, what };
}

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = { (time_t)(t_ns / 1000000000ull), (long)(t_ns % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* The test's turn: settle, say where the stream stands, wait for its line. */
static void pause_for_test(uint64_t seq)
{
	char line[64];

	sleep_until(mono_ns() + (uint64_t)opt.settle_ms * 1000000ull);
	printf("pause %" PRIu64 "\n", seq);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin)) {
		fprintf(stderr, "uw_fault_tx: stdin closed at the pause before %" PRIu64 "\n", seq);
		exit(3);
	}
}

static bool pauses_before(uint64_t seq)
{
	for (int i = 0; i < opt.npauses; i++)
		if (opt.pause_at[i] == seq)
			return true;
	return false;
}

static const char *outcome_name(int what)
{
	if (what == 0)
		return "ok";
	if (what < 0)
		return "short";
	return strerrorname_np(what) ? strerrorname_np(what) : "E?";
}

static void print_summary(uint64_t sent, uint64_t bytes, uint64_t max_call_ns,
			  uint64_t max_call_seq, uint64_t elapsed_ns)
{
	uint64_t total = 0;
	bool first = true;

	printf("{\"count\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"errors\":{",
	       opt.count, sent, bytes);
	for (int e = 1; e < 256; e++) {
		if (!errno_count[e])
			continue;
		printf("%s\"%s\":%" PRIu64, first ? "" : ",", outcome_name(e), errno_count[e]);
		first = false;
		total += errno_count[e];
	}
	printf("},\"errors_total\":%" PRIu64 ",\"outcomes\":[", total);
	for (size_t i = 0; i < nruns; i++)
		printf("%s[%" PRIu64 ",%" PRIu64 ",\"%s\"]", i ? "," : "", runs[i].first, runs[i].n,
		       outcome_name(runs[i].what));
	printf("],\"max_call_us\":%.1f,\"max_call_seq\":%" PRIu64 ",\"elapsed_ms\":%.1f}\n",
	       (double)max_call_ns / 1e3, max_call_seq, (double)elapsed_ns / 1e6);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	uint64_t interval_ns, base_ns, base_seq = 0, start_ns, sent = 0, bytes = 0;
	uint64_t max_call_ns = 0, max_call_seq = 0;
	uint8_t *buf;
	int fd;

	parse_options(argc, argv);
	interval_ns = (uint64_t)(1e9 / opt.rate_pps);
	buf = malloc(opt.size);
	if (!buf)
		return 3;
	fd = open_socket();
	start_ns = base_ns = mono_ns();
	for (uint64_t seq = 0; seq < opt.count; seq++) {
		uint64_t t0, dt;
		ssize_t rc;
		int err;

		if (pauses_before(seq)) {
			pause_for_test(seq);
			base_ns = mono_ns();
			base_seq = seq;
		}
		sleep_until(base_ns + (seq - base_seq) * interval_ns);
		uw_payload_build(buf, opt.size, opt.flow, seq);
		t0 = mono_ns();
		rc = opt.connected ? send(fd, buf, opt.size, 0)
				   : sendto(fd, buf, opt.size, 0, (struct sockaddr *)&opt.dest,
					    opt.dest_len);
		err = errno;
		dt = mono_ns() - t0;
		if (dt > max_call_ns) {
			max_call_ns = dt;
			max_call_seq = seq;
		}
		if (rc == (ssize_t)opt.size) {
			sent++;
			bytes += opt.size;
			note_outcome(seq, 0);
		} else if (rc < 0) {
			if (err <= 0 || err >= 256)
				err = 255;
			errno_count[err]++;
			note_outcome(seq, err);
		} else {
			note_outcome(seq, -1);
		}
	}
	print_summary(sent, bytes, max_call_ns, max_call_seq, mono_ns() - start_ns);
	close(fd);
	return 0;
}
