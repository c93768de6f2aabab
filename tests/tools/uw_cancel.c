/* SPDX-License-Identifier: MIT */
/*
 * Threads sending on one connected UDP socket are cancelled at random
 * moments (as VLC cancels its output thread); then the main thread sends
 * and exits. Under the shim no lock may be left held (the joins and the
 * main thread's sends would hang) and send() must stay a cancellation
 * point (a thread looping on it must die).
 *
 * usage: uw_cancel PORT THREADS ROUNDS
 * Each datagram: u32 thread id (0 = main), u32 sequence, then 100 bytes.
 * Prints "sent N" with the number of send() calls that returned success.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LEN 108

static int fd;

struct worker {
	pthread_t th;
	uint32_t id;
	volatile uint64_t sent;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);	/* vDSO: no cancellation point */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void spin_us(unsigned int us)
{
	uint64_t end = now_ns() + us * 1000ull;

	while (now_ns() < end)
		;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	unsigned char buf[LEN] = { 0 };

	for (uint32_t seq = 0;; seq++) {
		memcpy(buf, &w->id, 4);
		memcpy(buf + 4, &seq, 4);
		if (send(fd, buf, LEN, 0) == LEN)
			w->sent++;
		/* Let the receiver keep up without calling any cancellation
		 * point: send() must be the one that lets the thread die. */
		spin_us(20);
	}
	return NULL;
}

static int join_within(pthread_t th, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_timedjoin_np(th, NULL, &ts);
}

int main(int argc, char **argv)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	int nthreads, rounds;
	uint64_t total = 0;
	unsigned char buf[LEN] = { 0 };

	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT THREADS ROUNDS\n", argv[0]);
		return 2;
	}
	to.sin_port = htons((uint16_t)atoi(argv[1]));
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	nthreads = atoi(argv[2]);
	rounds = atoi(argv[3]);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to))) {
		perror("socket/connect");
		return 2;
	}
	srand(42);
	for (int r = 0; r < rounds; r++) {
		struct worker w[16];

		for (int i = 0; i < nthreads && i < 16; i++) {
			w[i].id = (uint32_t)(r * 16 + i + 1);
			w[i].sent = 0;
			pthread_create(&w[i].th, NULL, run, &w[i]);
		}
		usleep(1000 + (unsigned)(rand() % 4000));
		for (int i = 0; i < nthreads && i < 16; i++)
			pthread_cancel(w[i].th);
		for (int i = 0; i < nthreads && i < 16; i++) {
			if (join_within(w[i].th, 5000)) {
				printf("HANG: thread %u not cancelled within 5 s\n", w[i].id);
				fflush(stdout);
				_exit(3);
			}
			total += w[i].sent;
		}
	}
	for (uint32_t seq = 0; seq < 100; seq++) {
		memcpy(buf + 4, &seq, 4);
		if (send(fd, buf, LEN, 0) != LEN) {
			perror("send");
			return 1;
		}
		total++;
	}
	printf("sent %llu\n", (unsigned long long)total);
	return 0;
}
