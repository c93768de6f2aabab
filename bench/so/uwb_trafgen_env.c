/* libuwb_trafgen_env — what trafgen needs to run inside a network namespace
 * as a ceiling for the udpweave benchmarks (LD_PRELOAD into trafgen only).
 *
 * 1. Socket memory.  trafgen raises the host's net.core.wmem_default to
 *    4 MiB for its run; inside a network namespace those sysctls are not
 *    writable (they are global), and the benchmark does not change host
 *    settings.  Instead every AF_PACKET socket trafgen creates gets
 *    SO_SNDBUFFORCE = 4 MiB, the value trafgen would have set.
 * 2. Backpressure.  trafgen flushes its TX_RING with
 *    sendto(fd, NULL, 0, MSG_DONTWAIT) and exits ("Flushing TX_RING failed:
 *    Resource temporarily unavailable") when the socket's send buffer is
 *    full, i.e. whenever the receiver is slower than the sender.  Here that
 *    EAGAIN is retried after a 20 us sleep (bounded: 5 s in all), as a
 *    blocking sendto() in the other senders waits for buffer space.
 *
 * The number of retries, if any, is printed on stderr at exit.  Built by
 * bench/blast_bench.py (gcc -shared -fPIC), not by the Makefile.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#define SNDBUF_BYTES	(4 << 20)
#define RETRY_SLEEP_NS	20000
#define RETRY_MAX	250000		/* x 20 us = 5 s */

static atomic_long retries;

int socket(int domain, int type, int protocol)
{
	static int (*next_socket)(int, int, int);
	int fd, size = SNDBUF_BYTES;

	if (!next_socket)
		next_socket = dlsym(RTLD_NEXT, "socket");
	fd = next_socket(domain, type, protocol);
	if (fd >= 0 && domain == AF_PACKET)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
	return fd;
}

static int is_ring_flush(const void *buf, size_t len, int flags)
{
	return !buf && !len && (flags & MSG_DONTWAIT);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
	       const struct sockaddr *to, socklen_t tolen)
{
	static ssize_t (*next_sendto)(int, const void *, size_t, int,
				      const struct sockaddr *, socklen_t);
	const struct timespec pause = { 0, RETRY_SLEEP_NS };
	ssize_t r;
	long n;

	if (!next_sendto)
		next_sendto = dlsym(RTLD_NEXT, "sendto");
	r = next_sendto(fd, buf, len, flags, to, tolen);
	for (n = 0; r < 0 && errno == EAGAIN && is_ring_flush(buf, len, flags) &&
	     n < RETRY_MAX; n++) {
		nanosleep(&pause, NULL);
		r = next_sendto(fd, buf, len, flags, to, tolen);
	}
	if (n)
		atomic_fetch_add_explicit(&retries, n, memory_order_relaxed);
	return r;
}

__attribute__((destructor)) static void report(void)
{
	long n = atomic_load(&retries);

	if (n)
		fprintf(stderr, "uwb_trafgen_env: %ld EAGAIN retries\n", n);
}
