/* SPDX-License-Identifier: MIT */
/*
 * What the library costs a call on an fd that is not a UDP socket: N
 * write()s of one byte to /dev/null, and N send()s of 64 bytes on a Unix
 * stream socket drained by a second thread. Prints one JSON object with
 * nanoseconds per call; run_bench.py runs it with and without the shim,
 * interleaved, and reports medians and ratios.
 *
 * usage: fd_overhead N
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	int null = open("/dev/null", O_WRONLY), sv[2];
	char msg[64] = { 0 };
	pthread_t th;
	double t0, t_write, t_send;

	if (n <= 0 || null < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
		perror("fd_overhead");
		return 1;
	}
	pthread_create(&th, NULL, drain, &sv[1]);
	t0 = now();
	for (long i = 0; i < n; i++)
		if (write(null, msg, 1) != 1)
			return 1;
	t_write = (now() - t0) / n;
	t0 = now();
	for (long i = 0; i < n; i++)
		if (send(sv[0], msg, sizeof(msg), 0) != (ssize_t)sizeof(msg))
			return 1;
	t_send = (now() - t0) / n;
	shutdown(sv[0], SHUT_WR);
	pthread_join(th, NULL);
	printf("{\"write_devnull_ns\": %.1f, \"send_unix_stream_ns\": %.1f}\n", t_write, t_send);
	return 0;
}
