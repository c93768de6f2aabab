/* SPDX-License-Identifier: MIT */
/*
 * Local readers see what was sent. A datagram to a loopback address is in
 * its receiver's queue when the kernel's send returns; a process that
 * sends to itself and then reads (recv, FIONREAD, poll on the socket) must
 * find it there, not still in the library's queue. Before such a read on
 * a UDP socket of ours, or a poll/select waiting to read one, what is queued goes
 * out (uw_core_before_read: only when something to loopback is queued,
 * one flag load otherwise). epoll_wait does not say which fds it waits
 * for: it flushes once the process has read from a UDP socket.
 *
 * recvmsg() also brings fds (SCM_RIGHTS): numbers the library may still
 * hold for a socket closed behind its back.
 */
#include <poll.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>

#include "preload.h"

static inline bool local_pending(void)
{
	return atomic_load_explicit(&uw_active, memory_order_relaxed) &&
	       atomic_load_explicit(&uw_core.local_queued, memory_order_relaxed);
}

/* A read of fd: if it is a UDP socket of ours, the socket is interactive
 * (its own queue goes now), and what is queued to loopback goes first. */
static void before_read_fd(int fd)
{
	struct uw_sock *s;

	if (!atomic_load_explicit(&uw_active, memory_order_relaxed) || !(s = uw_fd_sock(fd)))
		return;
	uw_core_note_read(&uw_core, s);
	if (!local_pending())
		return;
	atomic_store_explicit(&uw_core.udp_reader, true, memory_order_relaxed);
	uw_core_before_read(&uw_core);
}

static void fresh_rights(const struct msghdr *m)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)m); c;
	     c = CMSG_NXTHDR((struct msghdr *)m, c)) {
		const int *fds = (const int *)CMSG_DATA(c);
		size_t n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++)
			uw_fd_fresh(fds[i]);
	}
}

UW_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	uw_bind_real();
	before_read_fd(fd);
	return real.recv(fd, buf, len, flags);
}

UW_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
			   socklen_t *fromlen)
{
	uw_bind_real();
	before_read_fd(fd);
	return real.recvfrom(fd, buf, len, flags, from, fromlen);
}

UW_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t rc;

	uw_bind_real();
	before_read_fd(fd);
	rc = real.recvmsg(fd, msg, flags);
	if (rc >= 0 && msg && msg->msg_controllen &&
	    atomic_load_explicit(&uw_active, memory_order_relaxed))
		fresh_rights(msg);
	return rc;
}

UW_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
		       struct timespec *timeout)
{
	uw_bind_real();
	before_read_fd(fd);
	return real.recvmmsg(fd, vec, vlen, flags, timeout);
}

UW_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	uw_bind_real();
	before_read_fd(fd);
	return real.read(fd, buf, len);
}

UW_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	uw_bind_real();
	before_read_fd(fd);
	return real.readv(fd, iov, iovcnt);
}

/* FIONREAD (SIOCINQ) is the one that looks into the receive queue; the
 * third argument is read as an unsigned long (see fcntl). */
UW_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	unsigned long arg;

	va_start(ap, req);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	uw_bind_real();
	if (req == FIONREAD)
		before_read_fd(fd);
	return real.ioctl(fd, req, arg);
}

/* Waiting to read fds: a UDP socket of ours among them has its queue sent
 * first (a request must leave before its answer is waited for), and what
 * is queued to loopback goes too. */
static void before_poll(const struct pollfd *fds, nfds_t n)
{
	bool local = local_pending();

	if (!fds || !atomic_load_explicit(&uw_core.queued_total, memory_order_relaxed))
		return;
	for (nfds_t i = 0; i < n; i++) {
		struct pollfd p;
		struct uw_sock *s;

		if (uw_copy_from_user(&p, &fds[i], sizeof(p)))
			return;		/* the kernel's EFAULT */
		/* waiting to write (ffmpeg polls before each send) is no read */
		if (p.fd < 0 || !(p.events & (POLLIN | POLLRDNORM)) || !(s = uw_fd_sock(p.fd)))
			continue;
		if (local) {
			uw_core_before_read(&uw_core);
			return;
		}
		uw_core_flush_sock(&uw_core, s, UW_FLUSH_BARRIER);
	}
}

/* ---- sleeping ------------------------------------------------------------
 *
 * The sender flushes, the flush thread is a backstop (issue 13): a thread
 * about to sleep past the time the default stage falls due sends it now
 * (uw_core_flush_before_sleep). Only waits that are sleeps: nanosleep,
 * clock_nanosleep, usleep, sleep, poll/select/epoll with no fds to wait
 * for, and timed futex waits through syscall(3) (below). A wait on fds may return at once (ffmpeg polls for POLLOUT before
 * every send): flushing there would flush at every datagram.
 */
#define NS_FOREVER	UINT64_MAX

static void before_sleep(uint64_t ns)
{
	uint64_t now;

	if (!atomic_load_explicit(&uw_active, memory_order_relaxed) ||
	    !atomic_load_explicit(&uw_core.queued_total, memory_order_relaxed))
		return;
	now = uw_core.sys->now_ns();
	uw_core_flush_before_sleep(&uw_core, ns > NS_FOREVER - now ? NS_FOREVER : now + ns);
}

/* A timespec of the application's, as nanoseconds (0 if the kernel will
 * refuse it: EFAULT, EINVAL). */
static uint64_t ts_ns(const struct timespec *ts)
{
	struct timespec t;

	if (!ts || uw_copy_from_user(&t, ts, sizeof(t)) || t.tv_sec < 0 || t.tv_nsec < 0 ||
	    t.tv_nsec >= 1000000000L)
		return 0;
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

UW_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	uw_bind_real();
	before_sleep(ts_ns(req));
	return real.nanosleep(req, rem);
}

UW_EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
			      struct timespec *rem)
{
	uint64_t ns;

	uw_bind_real();
	ns = ts_ns(req);
	if (ns && (flags & TIMER_ABSTIME)) {
		struct timespec now;

		if (clock_gettime(clk, &now))
			ns = 0;		/* the kernel's EINVAL */
		else
			ns = ns > ts_ns(&now) ? ns - ts_ns(&now) : 0;
	}
	before_sleep(ns);
	return real.clock_nanosleep(clk, flags, req, rem);
}

UW_EXPORT int usleep(useconds_t us)
{
	uw_bind_real();
	before_sleep((uint64_t)us * 1000);
	return real.usleep(us);
}

UW_EXPORT unsigned int sleep(unsigned int s)
{
	uw_bind_real();
	before_sleep((uint64_t)s * 1000000000ull);
	return real.sleep(s);
}

/* ---- futex waits through syscall(3) ------------------------------------
 *
 * glib's GCond and GStreamer's clock (udpsink/multiudpsink with sync=true
 * wait there between buffers) do not sleep in libc's sleeps: they call
 * syscall(SYS_futex, FUTEX_WAIT_BITSET, ..., absolute CLOCK_MONOTONIC time)
 * through libc's syscall(3). A timed futex wait past the due time is a
 * sleep like the others. A wait without a timeout is not: a contended
 * GMutex waits that way for a moment, and flushing there would flush at
 * every contention.
 *
 * syscall(3) is variadic and its seventh argument is on the caller's
 * stack; an assembly entry hands all seven to uw_syscall7 without reading
 * past what a C va_list may read, then the system call is made here as
 * libc makes it (result in -4095..-1: errno, -1). Nothing is bound from
 * libc for it, so it works before, during and after uw_bind_real (an
 * allocator calling syscall() inside dlsym). Other architectures: not
 * interposed.
 */
#if defined(__x86_64__)
#include <linux/futex.h>
#include <sys/syscall.h>

static void before_futex(int op, const struct timespec *timeout)
{
	int cmd = op & FUTEX_CMD_MASK, saved = errno;
	clockid_t clk = op & FUTEX_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC;
	uint64_t ns;

	if ((cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET) || !timeout ||
	    !atomic_load_explicit(&uw_active, memory_order_relaxed) ||
	    !atomic_load_explicit(&uw_core.queued_total, memory_order_relaxed) ||
	    !(ns = ts_ns(timeout)))
		return;
	if (cmd == FUTEX_WAIT_BITSET) {		/* absolute */
		struct timespec now;

		if (clock_gettime(clk, &now))
			return;
		ns = ns > ts_ns(&now) ? ns - ts_ns(&now) : 0;
		if (!ns)
			return;
	}
	before_sleep(ns);
	errno = saved;
}

__attribute__((visibility("hidden"), used))
long uw_syscall7(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;

	if (nr == SYS_futex)
		before_futex((int)a2, (const struct timespec *)a4);
	/* after the call: a register variable is only its register in asm */
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	if ((unsigned long)ret > -4096ul) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

/* long syscall(long nr, ...): nr and a1..a5 are in registers already in
 * uw_syscall7's order; a6 is pushed again so that it is uw_syscall7's
 * seventh argument (8(%rsp) at its entry, the stack 16-byte aligned). */
__asm__(".text\n"
	".globl syscall\n"
	".type syscall, @function\n"
	"syscall:\n"
	"	.cfi_startproc\n"
	"	pushq 8(%rsp)\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	call uw_syscall7\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size syscall, .-syscall\n");
#endif

/* A wait with no fds is a sleep (timeout in ms; negative: forever). */
static void before_idle_wait_ms(int timeout)
{
	before_sleep(timeout < 0 ? NS_FOREVER : (uint64_t)timeout * 1000000);
}

UW_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	uw_bind_real();
	if (!n)
		before_idle_wait_ms(timeout);
	before_poll(fds, n);
	return real.poll(fds, n, timeout);
}

UW_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		    const sigset_t *mask)
{
	uw_bind_real();
	if (!n)
		before_sleep(timeout ? ts_ns(timeout) : NS_FOREVER);
	before_poll(fds, n);
	return real.ppoll(fds, n, timeout, mask);
}

static void before_select(int n, const fd_set *r)
{
	fd_set copy;

	if (!local_pending() || !r || n <= 0)
		return;
	if (n > FD_SETSIZE)
		n = FD_SETSIZE;
	if (uw_copy_from_user(&copy, r, ((size_t)n + 7) / 8))
		return;
	for (int fd = 0; fd < n; fd++) {
		if (FD_ISSET(fd, &copy) && uw_fd_sock(fd)) {
			uw_core_before_read(&uw_core);
			return;
		}
	}
}

UW_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout)
{
	uw_bind_real();
	if (n <= 0) {
		struct timeval tv;

		if (!timeout)
			before_sleep(NS_FOREVER);
		else if (!uw_copy_from_user(&tv, timeout, sizeof(tv)) && tv.tv_sec >= 0 &&
			 tv.tv_usec >= 0)
			before_sleep((uint64_t)tv.tv_sec * 1000000000ull +
				     (uint64_t)tv.tv_usec * 1000);
	}
	before_select(n, r);
	return real.select(n, r, w, e, timeout);
}

UW_EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout,
		      const sigset_t *mask)
{
	uw_bind_real();
	if (n <= 0)
		before_sleep(timeout ? ts_ns(timeout) : NS_FOREVER);
	before_select(n, r);
	return real.pselect(n, r, w, e, timeout, mask);
}

static void before_epoll(void)
{
	if (local_pending() && atomic_load_explicit(&uw_core.udp_reader, memory_order_relaxed))
		uw_core_before_read(&uw_core);
}

UW_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	uw_bind_real();
	before_epoll();
	return real.epoll_wait(epfd, ev, max, timeout);
}

UW_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			  const sigset_t *mask)
{
	uw_bind_real();
	before_epoll();
	return real.epoll_pwait(epfd, ev, max, timeout, mask);
}
