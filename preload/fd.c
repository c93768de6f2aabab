/* SPDX-License-Identifier: MIT */
/*
 * The fd life cycle: which fds are UDP sockets of ours, which fds share a
 * socket (dup), and the calls before which queued datagrams must be on the
 * wire because they change what the kernel would have done with them
 * (close, connect, bind, setsockopt, shutdown).
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"
#include "udpweave.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

static bool is_udp(int domain, int type, int protocol)
{
	return (domain == AF_INET || domain == AF_INET6) &&
	       (type & 0xf) == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP);
}

/* Connected or not, and to whom: asked of the kernel, which knows best
 * (after a failed connect(), or for an inherited socket). */
void uw_sync_peer(struct uw_sock *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);

	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
		uw_addr_from_sockaddr(&s->peer, (struct sockaddr *)&ss, len);
		uw_sock_set(s, UW_SOCK_CONNECTED);
	} else {
		uw_sock_clear(s, UW_SOCK_CONNECTED);
	}
	errno = saved;
}

static int sockopt_int(int fd, int opt)
{
	int v = -1;
	socklen_t len = sizeof(v);

	return real.getsockopt(fd, SOL_SOCKET, opt, &v, &len) ? -errno : v;
}

/* SO_SNDBUF as the kernel reports it; 0 when unknown. */
static uint32_t sock_sndbuf(int fd)
{
	int v = 0, saved = errno;
	socklen_t len = sizeof(v);

	if (real.getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) || v < 0)
		v = 0;
	errno = saved;
	return (uint32_t)v;
}

static uint64_t sock_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int saved = errno;

	if (real.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len))
		cookie = 0;
	errno = saved;
	return cookie;
}

struct uw_sock *uw_classify(int fd)
{
	int saved = errno, type, domain, proto;
	struct uw_sock *s, *got;

	type = sockopt_int(fd, SO_TYPE);
	if (type == -EBADF || type == -ENOSYS) {	/* not open: the real call says so */
		errno = saved;
		return NULL;
	}
	domain = type == SOCK_DGRAM ? sockopt_int(fd, SO_DOMAIN) : -1;
	proto = domain == AF_INET || domain == AF_INET6 ? sockopt_int(fd, SO_PROTOCOL) : -1;
	errno = saved;
	if (!is_udp(domain, type, proto)) {
		uw_fdtable_mark_foreign(&uw_core.fds, fd,
					type < 0 ? UW_FD_FOREIGN : UW_FD_OTHER_SOCK);
		return NULL;
	}
	s = uw_sock_new(&uw_core.fds, fd, domain);
	if (!s)
		return NULL;
	s->cookie = sock_cookie(fd);
	atomic_store_explicit(&s->sndbuf, sock_sndbuf(fd), memory_order_relaxed);
	uw_sync_peer(s);
	got = uw_fdtable_adopt(&uw_core.fds, fd, s);
	if (got != s)
		uw_sock_discard(&uw_core.fds, s);
	return got;
}

/* s no longer has fd: another fd of it sends, or none does. */
static void drop_fd(struct uw_sock *s, int fd)
{
	int other;

	if (!uw_sock_put(&uw_core.fds, s) &&
	    atomic_load_explicit(&s->fd, memory_order_relaxed) == fd) {
		other = uw_fdtable_other_fd(&uw_core.fds, s, fd);
		atomic_store_explicit(&s->fd, other, memory_order_relaxed);
	}
}

/*
 * fd was just made by a call the library saw (socket, accept, open, pipe,
 * an fd received with SCM_RIGHTS...). If the table still names something
 * there, what it named was closed behind the library's back (a raw
 * close(2)): the entry goes, so that the new fd is judged afresh; a socket
 * of ours that had it keeps its other fds, and what it had queued is
 * dropped at the flush (its cookie no longer matches), never sent here.
 */
void uw_fd_fresh(int fd)
{
	uintptr_t v;
	struct uw_sock *s;
	int saved = errno;

	if (!atomic_load_explicit(&uw_active, memory_order_acquire) ||
	    (unsigned)fd >= (unsigned)uw_core.fds.nslots)
		return;
	v = uw_fdtable_peek(&uw_core.fds, fd);
	if (v == UW_FD_UNKNOWN)
		return;
	if (!uw_slot_sock(v)) {
		atomic_compare_exchange_strong(&uw_core.fds.slot[fd], &v, UW_FD_UNKNOWN);
		return;
	}
	s = uw_fdtable_install(&uw_core.fds, fd, NULL);
	if (s)
		drop_fd(s, fd);
	errno = saved;
}

/* fd is going away (close, dup2 over it): its datagrams leave first. */
void uw_fd_closing(int fd)
{
	uintptr_t v = uw_fdtable_peek(&uw_core.fds, fd);
	int saved = errno;
	struct uw_sock *s;

	if (v == UW_FD_UNKNOWN || (unsigned)fd >= (unsigned)uw_core.fds.nslots)
		return;
	if (!uw_slot_sock(v)) {		/* the next fd of this number starts afresh */
		atomic_compare_exchange_strong(&uw_core.fds.slot[fd], &v, UW_FD_UNKNOWN);
		return;
	}
	s = uw_fdtable_install(&uw_core.fds, fd, NULL);

	if (s) {
		uw_core_flush_sock(&uw_core, s, UW_FLUSH_CLOSE);
		if (s->refs <= 1)	/* its last fd: what a full socket held goes first */
			uw_held_close(&uw_core, s, UW_HELD_CLOSE_MS);
		drop_fd(s, fd);
	}
	errno = saved;
}

void uw_order_barrier(void)
{
	if (atomic_load_explicit(&uw_core.queued_total, memory_order_relaxed))
		uw_core_flush(&uw_core, UW_FLUSH_BARRIER);
}

void uw_fd_dup(int oldfd, int newfd)
{
	uintptr_t v = uw_fdtable_peek(&uw_core.fds, oldfd);
	struct uw_sock *stale;

	stale = uw_fdtable_install(&uw_core.fds, newfd, uw_slot_sock(v));
	if (v == UW_FD_FOREIGN || v == UW_FD_OTHER_SOCK)
		uw_fdtable_mark_foreign(&uw_core.fds, newfd, v);
	if (stale)	/* newfd was closed behind our back */
		uw_sock_put(&uw_core.fds, stale);
}

UW_EXPORT int socket(int domain, int type, int protocol)
{
	int fd, saved;
	struct uw_sock *s, *stale;

	uw_bind_real();
	fd = real.socket(domain, type, protocol);
	if (fd < 0 || !uw_on())
		return fd;
	saved = errno;
	s = is_udp(domain, type, protocol) ? uw_sock_new(&uw_core.fds, fd, domain) : NULL;
	if (s)
		s->cookie = sock_cookie(fd);
	stale = uw_fdtable_install(&uw_core.fds, fd, s);
	if (!s)
		uw_fdtable_mark_foreign(&uw_core.fds, fd, UW_FD_OTHER_SOCK);
	if (stale)	/* closed behind our back: see uw_fd_fresh */
		drop_fd(stale, fd);
	errno = saved;
	return fd;
}

UW_EXPORT int close(int fd)
{
	uw_bind_real();
	if (uw_on())
		uw_fd_closing(fd);
	return real.close(fd);
}

UW_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	uw_bind_real();
	if (uw_on() && !(flags & CLOSE_RANGE_CLOEXEC)) {
		unsigned int max = (unsigned int)atomic_load(&uw_core.fds.max_fd);

		for (unsigned int fd = first; fd <= last && fd <= max; fd++)
			uw_fd_closing((int)fd);
	}
	return real.close_range(first, last, flags);
}

UW_EXPORT int fclose(FILE *stream)
{
	uw_bind_real();
	if (stream && uw_on()) {
		int fd = fileno(stream);

		if (fd >= 0)
			uw_fd_closing(fd);
	}
	return real.fclose(stream);
}

UW_EXPORT int dup(int fd)
{
	int r;

	uw_bind_real();
	r = real.dup(fd);
	if (r >= 0 && uw_on())
		uw_fd_dup(fd, r);
	return r;
}

static int dup_onto(int oldfd, int newfd, int flags, bool is_dup3)
{
	int r;

	uw_bind_real();
	if (oldfd == newfd || !uw_on())
		return is_dup3 ? real.dup3(oldfd, newfd, flags) : real.dup2(oldfd, newfd);
	uw_fd_closing(newfd);
	r = is_dup3 ? real.dup3(oldfd, newfd, flags) : real.dup2(oldfd, newfd);
	if (r >= 0)
		uw_fd_dup(oldfd, newfd);
	return r;
}

UW_EXPORT int dup2(int oldfd, int newfd)
{
	return dup_onto(oldfd, newfd, 0, false);
}

UW_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return dup_onto(oldfd, newfd, flags, true);
}

/* F_DUPFD and F_DUPFD_CLOEXEC are dup()s; the rest passes through. The
 * third argument, when there is one, is an int, a long or a pointer: all
 * fit the unsigned long it is read as (x86-64 and other LP64 ABIs). */
UW_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	unsigned long arg;
	int r;

	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	uw_bind_real();
	r = real.fcntl(fd, cmd, arg);
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && uw_on())
		uw_fd_dup(fd, r);
	return r;
}

/* glibc's fcntl64 is the same function on LP64. */
UW_EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

UW_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct uw_sock *s;
	int r;

	uw_bind_real();
	s = uw_fd_sock(fd);
	if (!s)
		return real.connect(fd, sa, len);
	uw_core_flush_sock(&uw_core, s, UW_FLUSH_BARRIER);
	r = real.connect(fd, sa, len);
	uw_sync_peer(s);
	uw_sock_go_direct(s, UW_DIRECT_FIRST);	/* a new peer: its first send the kernel's */
	atomic_fetch_add_explicit(&s->opt_gen, 1, memory_order_release);
	uw_core_sock_forget_flows(&uw_core, s);	/* rules follow the new peer */
	return r;
}

UW_EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct uw_sock *s;

	uw_bind_real();
	int r;

	s = uw_fd_sock(fd);
	if (s)
		uw_core_flush_sock(&uw_core, s, UW_FLUSH_BARRIER);
	r = real.bind(fd, sa, len);
	if (s)
		atomic_fetch_add_explicit(&s->opt_gen, 1, memory_order_release);
	return r;
}

static void note_udp_option(struct uw_sock *s, int opt, const void *val, socklen_t len)
{
	uint32_t flag = opt == UDP_CORK ? UW_SOCK_CORKED : UW_SOCK_APP_GSO;
	int on = 0;

	if (len >= sizeof(int))
		on = *(const int *)val;
	else if (len >= sizeof(uint16_t))
		on = *(const uint16_t *)val;
	if (on)
		uw_sock_set(s, flag);
	else
		uw_sock_clear(s, flag);
}

/* ---- SOL_UDPWEAVE: stream metrics (include/udpweave.h) ----------------- */

/* Checked as the kernel checks its own options: a short or missing value
 * is EINVAL/EFAULT, an unknown option ENOPROTOOPT. Returns 0 or -errno. */
int uw_metrics_from_user(int opt, const void *val, socklen_t len, struct uw_metrics *m)
{
	struct udpweave_metrics in = { 0 };

	if (opt != UDPWEAVE_METRICS)
		return -ENOPROTOOPT;
	if (len < UDPWEAVE_METRICS_MIN_SIZE)
		return -EINVAL;
	if (!val)
		return -EFAULT;
	memcpy(&in, val, UDPWEAVE_METRICS_MIN_SIZE);
	if (in.rate_bps > UDPWEAVE_MAX_RATE_BPS || in.max_jitter_us > UDPWEAVE_MAX_TIME_US ||
	    in.max_delay_us > UDPWEAVE_MAX_TIME_US)
		return -EINVAL;
	m->rate_bps = in.rate_bps;
	m->jitter_us = in.max_jitter_us;
	m->delay_us = in.max_delay_us;
	return 0;
}

static int metrics_set(struct uw_sock *s, int opt, const void *val, socklen_t len)
{
	struct uw_metrics m;
	int err = uw_metrics_from_user(opt, val, len, &m);

	if (err)
		return err;
	uw_core_set_metrics(&uw_core, s, &m);
	return 0;
}

static int metrics_get(struct uw_sock *s, int opt, void *val, socklen_t *len)
{
	struct udpweave_metrics out;

	if (opt != UDPWEAVE_METRICS)
		return -ENOPROTOOPT;
	if (!len)
		return -EFAULT;
	if (*len < UDPWEAVE_METRICS_MIN_SIZE)	/* as the kernel: not even the basics */
		return -EINVAL;
	if (!val)
		return -EFAULT;
	uw_core_get_metrics(&uw_core, s, &out);
	if (*len > sizeof(out))
		*len = sizeof(out);
	memcpy(val, &out, *len);
	return 0;
}

/* An option changes how the kernel sends what follows, not what was sent
 * before: the queue goes out under the old one. */
UW_EXPORT int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct uw_sock *s;
	int r;

	uw_bind_real();
	s = uw_fd_sock(fd);
	if (!s)
		return real.setsockopt(fd, level, opt, val, len);
	if (level == SOL_UDPWEAVE)
		return (int)uw_ret(metrics_set(s, opt, val, len), errno);
	uw_core_flush_sock(&uw_core, s, UW_FLUSH_BARRIER);
	r = real.setsockopt(fd, level, opt, val, len);
	if (r == 0 && val && (level == SOL_UDP || level == IPPROTO_UDP) &&
	    (opt == UDP_CORK || opt == UDP_SEGMENT))
		note_udp_option(s, opt, val, len);
	if (r == 0 && val && level == IPPROTO_IP && opt == IP_MULTICAST_IF)
		atomic_store_explicit(&s->mc_ifindex, len >= sizeof(struct ip_mreqn) ?
				      ((const struct ip_mreqn *)val)->imr_ifindex : 0,
				      memory_order_relaxed);
	if (r == 0 && level == SOL_SOCKET && (opt == SO_SNDBUF || opt == SO_SNDBUFFORCE))
		atomic_store_explicit(&s->sndbuf, sock_sndbuf(fd), memory_order_relaxed);
	if (r == 0)
		atomic_fetch_add_explicit(&s->opt_gen, 1, memory_order_release);
	return r;
}

/* SO_ERROR reports the error a flush met, as the kernel would have. */
UW_EXPORT int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct uw_sock *s;
	int r;

	uw_bind_real();
	if (level == SOL_UDPWEAVE && (s = uw_fd_sock(fd)) != NULL)
		return (int)uw_ret(metrics_get(s, opt, val, len), errno);
	r = real.getsockopt(fd, level, opt, val, len);
	if (r || level != SOL_SOCKET || opt != SO_ERROR || !val || !len ||
	    *len < sizeof(int) || *(int *)val)
		return r;
	s = uw_fd_sock(fd);
	if (s)
		*(int *)val = atomic_exchange(&s->pending_err, 0);
	return r;
}

UW_EXPORT int shutdown(int fd, int how)
{
	struct uw_sock *s;
	int r;

	uw_bind_real();
	s = uw_fd_sock(fd);
	if (!s)
		return real.shutdown(fd, how);
	uw_core_flush_sock(&uw_core, s, UW_FLUSH_BARRIER);
	r = real.shutdown(fd, how);
	if (r == 0 && (how == SHUT_WR || how == SHUT_RDWR))
		uw_sock_set(s, UW_SOCK_SHUT);
	return r;
}
