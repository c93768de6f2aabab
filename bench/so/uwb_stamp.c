/* libuwb_stamp — send-time logger for the stream benchmarks (LD_PRELOAD).
 *
 *   LD_PRELOAD="libuwb_stamp.so libudpweave.so" UWB_STAMP_OUT=/tmp/s-%p.bin prog
 *
 * Records, for every UDP datagram an unmodified program hands to sendto(),
 * sendmsg() or sendmmsg() with an IPv4 destination address, the moment of
 * the call (CLOCK_REALTIME, the clock of the kernel's receive timestamps),
 * the destination, the length and a key of the payload, then passes the
 * call on unchanged to the next definition (libudpweave.so when it is
 * loaded after this library, else libc).  bench/stream_sink records the
 * receive time of each datagram with the same key; the difference is the
 * delay the datagram saw from the application's call to the receiving
 * socket, with or without the shim in between.  At exit the records are
 * written to UWB_STAMP_OUT (%p: pid).
 *
 * Not logged: sends on connected sockets without an address (send(),
 * write()); the programs benchmarked (ffmpeg's udp://, GStreamer's
 * multiudpsink) address every datagram.  Cost per call: one vDSO clock
 * read and 24 bytes per datagram stored; the key reads 32 bytes.
 *
 * Built by bench/streams_bench.py (gcc -shared -fPIC), not by the Makefile
 * (which builds every bench/<name>.c as a program).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS	(8L << 20)

/* The layout bench/streams_bench.py reads. */
struct record {
	uint64_t t_ns;		/* call time, CLOCK_REALTIME */
	uint32_t addr;		/* destination, network byte order */
	uint16_t port;		/* destination port, host byte order */
	uint16_t pad;
	uint32_t len;
	uint32_t key;
};

static ssize_t (*next_sendto)(int, const void *, size_t, int,
			      const struct sockaddr *, socklen_t);
static ssize_t (*next_sendmsg)(int, const struct msghdr *, int);
static int (*next_sendmmsg)(int, struct mmsghdr *, unsigned int, int);

static struct record *records;
static atomic_long nrecords;
static atomic_long overflow;

__attribute__((constructor)) static void stamp_init(void)
{
	if (next_sendmmsg)
		return;
	next_sendto = dlsym(RTLD_NEXT, "sendto");
	next_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
	next_sendmmsg = dlsym(RTLD_NEXT, "sendmmsg");
	records = mmap(NULL, MAX_RECORDS * sizeof(*records), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (records == MAP_FAILED)
		records = NULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint8_t iov_byte(const struct iovec *iov, size_t n, size_t off)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (off < iov[i].iov_len)
			return ((const uint8_t *)iov[i].iov_base)[off];
		off -= iov[i].iov_len;
	}
	return 0;
}

/* keep in sync with bench/stream_sink.c: FNV-1a over the first and the
 * last 16 bytes (all of a shorter datagram) */
static uint32_t datagram_key(const struct iovec *iov, size_t n, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len && i < 16; i++)
		h = (h ^ iov_byte(iov, n, i)) * 16777619u;
	for (i = len > 32 ? len - 16 : 16; i < len; i++)
		h = (h ^ iov_byte(iov, n, i)) * 16777619u;
	return h;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
	size_t len = 0, i;

	for (i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

static void log_datagram(uint64_t t, const void *name, socklen_t namelen,
			 const struct iovec *iov, size_t niov)
{
	const struct sockaddr_in *sin = name;
	size_t len;
	long i;

	if (!records || !sin || namelen < sizeof(*sin) || sin->sin_family != AF_INET)
		return;
	i = atomic_fetch_add_explicit(&nrecords, 1, memory_order_relaxed);
	if (i >= MAX_RECORDS) {
		atomic_fetch_add_explicit(&overflow, 1, memory_order_relaxed);
		return;
	}
	len = iov_total(iov, niov);
	records[i] = (struct record){
		.t_ns = t, .addr = sin->sin_addr.s_addr, .port = ntohs(sin->sin_port),
		.len = (uint32_t)len, .key = datagram_key(iov, niov, len),
	};
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
	       const struct sockaddr *to, socklen_t tolen)
{
	uint64_t t = now_ns();
	struct iovec iov = { (void *)buf, len };
	ssize_t r;

	if (!next_sendmmsg)
		stamp_init();
	r = next_sendto(fd, buf, len, flags, to, tolen);

	if (r >= 0)
		log_datagram(t, to, tolen, &iov, 1);
	return r;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	uint64_t t = now_ns();
	ssize_t r;

	if (!next_sendmmsg)
		stamp_init();
	r = next_sendmsg(fd, msg, flags);

	if (r >= 0)
		log_datagram(t, msg->msg_name, msg->msg_namelen, msg->msg_iov,
			     msg->msg_iovlen);
	return r;
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	uint64_t t = now_ns();
	int r, i;

	if (!next_sendmmsg)
		stamp_init();
	r = next_sendmmsg(fd, vec, vlen, flags);

	for (i = 0; i < r; i++)
		log_datagram(t, vec[i].msg_hdr.msg_name, vec[i].msg_hdr.msg_namelen,
			     vec[i].msg_hdr.msg_iov, vec[i].msg_hdr.msg_iovlen);
	return r;
}

int __sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	return sendmmsg(fd, vec, vlen, flags);
}

static void path_for_pid(char *out, size_t size, const char *pattern)
{
	const char *p = strstr(pattern, "%p");

	if (!p) {
		snprintf(out, size, "%s", pattern);
		return;
	}
	snprintf(out, size, "%.*s%d%s", (int)(p - pattern), pattern, (int)getpid(), p + 2);
}

__attribute__((destructor)) static void stamp_write(void)
{
	const char *pattern = getenv("UWB_STAMP_OUT");
	long n = atomic_load(&nrecords);
	char path[4096];
	int fd;

	if (!pattern || !records)
		return;
	if (n > MAX_RECORDS)
		n = MAX_RECORDS;
	path_for_pid(path, sizeof(path), pattern);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	/* raw write(2): the shim, if loaded, would only pass a file fd through */
	for (size_t off = 0, total = (size_t)n * sizeof(*records); off < total;) {
		ssize_t w = write(fd, (const char *)records + off, total - off);

		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(fd);
}
