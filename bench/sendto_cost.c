/* sendto_cost — the library's cost per queued datagram, call by call.
 *
 * One unconnected UDP socket, --count sendto() calls of --size bytes to
 * 127.0.0.1:--port (nothing needs to listen there). Each call is timed
 * with the TSC; the mean of the fastest 90 % of the calls is what one
 * sendto costs when it only queues (the few calls that flush the queue,
 * and interruptions, are in the slowest 10 %), so it is stable on a noisy
 * machine where the process's total CPU is not (a mean, not the median:
 * a virtual machine's TSC may tick in steps of 10 ns). The process's total CPU time per
 * datagram (all threads, flushes and kernel included) is printed too.
 *
 * Output: one JSON object on stdout. A bench tool: exits on setup errors.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <x86intrin.h>

static double now_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	long count = 300000, size = 1316;
	int port = 9999, c, fd;
	struct sockaddr_in to = { .sin_family = AF_INET };
	unsigned char *buf;
	uint32_t *cyc;
	double wall0, cpu0, wall, cpu;
	uint64_t tsc0, tsc;
	unsigned int aux;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': count = atol(optarg); break;
		case 's': size = atol(optarg); break;
		case 'p': port = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: sendto_cost [--count N] [--size BYTES] [--port P]\n");
			return 2;
		}
	}
	to.sin_port = htons((uint16_t)port);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	buf = calloc(1, (size_t)size);
	cyc = calloc((size_t)count, sizeof(*cyc));
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (!buf || !cyc || fd < 0) {
		perror("sendto_cost: setup");
		return 1;
	}
	wall0 = now_ns(CLOCK_MONOTONIC);
	cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	tsc0 = __rdtsc();
	for (long i = 0; i < count; i++) {
		uint64_t t0 = __rdtscp(&aux), t1;

		memcpy(buf, &i, sizeof(i));
		if (sendto(fd, buf, (size_t)size, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("sendto_cost: sendto");
			return 1;
		}
		t1 = __rdtscp(&aux);
		cyc[i] = t1 - t0 > UINT32_MAX ? UINT32_MAX : (uint32_t)(t1 - t0);
	}
	tsc = __rdtsc() - tsc0;
	wall = now_ns(CLOCK_MONOTONIC) - wall0;
	cpu = now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	qsort(cyc, (size_t)count, sizeof(*cyc), cmp_u32);
	{
		double ns_per_tick = wall / (double)tsc, sum = 0;
		long fast = count * 9 / 10;

		for (long i = 0; i < fast; i++)
			sum += cyc[i];

		printf("{\"tool\": \"sendto_cost\", \"count\": %ld, \"size\": %ld, "
		       "\"fast90_mean_ns\": %.2f, \"median_ns\": %.1f, \"p10_ns\": %.1f, "
		       "\"p90_ns\": %.1f, \"cpu_ns_per_dgram\": %.1f, \"wall_ns_per_dgram\": %.1f}\n",
		       count, size, sum / (double)fast * ns_per_tick, cyc[count / 2] * ns_per_tick, cyc[count / 10] * ns_per_tick,
		       cyc[count * 9 / 10] * ns_per_tick, cpu / (double)count, wall / (double)count);
	}
	return 0;
}
