/* SPDX-License-Identifier: MIT */
/*
 * The send paths. Each interposer finds the fd's socket state, describes
 * the datagram as a struct uw_msg, and lets the core queue it; what the
 * core will not queue (odd flags, control data, bad arguments) goes to the
 * real call after the socket's queue, so the kernel answers with its own
 * errno and the flow keeps its order.
 *
 * Everything the application passes by pointer is read with
 * uw_copy_from_user() into the interposer's own frame (the msghdr, the
 * iovec array, the address): a bad pointer is then the kernel's to judge
 * (EFAULT), never a fault of ours; the payload is copied the same way by
 * the core.
 */
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <string.h>

#include "preload.h"
#include "ucopy.h"

/* send() and its kin are cancellation points; a queued send makes no
 * system call, so it acts on a pending cancellation at its entry, before
 * anything is queued, as the kernel call would have. */
static ssize_t submit(struct uw_sock *s, const struct uw_msg *m)
{
	int saved = errno;
	ssize_t rc;

	pthread_testcancel();
	rc = uw_core_send(&uw_core, s, m);

	if (rc == UW_PASS) {
		errno = saved;
		return UW_PASS;
	}
	return uw_ret(rc, saved);
}

/* A send the kernel made: if the core handed it over to have the kernel
 * judge it (UW_SOCK_SYNC), the answer is counted, and a success ends the
 * socket's synchronous sends. */
static inline ssize_t direct(struct uw_sock *s, ssize_t rc)
{
	if (__builtin_expect(uw_sync_sock != NULL, 0) && uw_sync_sock == s) {
		int saved = errno;

		uw_core_sync_done(&uw_core, s, rc >= 0 ? 1 : 0, rc > 0 ? rc : 0);
		errno = saved;
	}
	return rc;
}

/* What cannot be read goes to the kernel, after the socket's queue. */
static ssize_t submit_refused(struct uw_sock *s)
{
	uw_core_flush_sock(&uw_core, s, UW_FLUSH_BARRIER);
	return UW_PASS;
}

/*
 * The fast path of each interposer is the fd lookup and, for anything but
 * a UDP socket of ours, a tail call to libc: the datagram is described
 * only in the out-of-line helpers below.
 */
/* A few iovecs are copied; a message with more goes to the kernel. */
#define UW_LOCAL_IOV	64

/* The address into name: false when it cannot be read (or is longer than
 * any address, which the kernel refuses): the kernel's to answer. A name
 * of length 0 is no name, as for the kernel. */
static bool copy_name(struct sockaddr_storage *name, const struct sockaddr **to,
		      socklen_t *tolen)
{
	if (!*to || !*tolen) {
		*to = NULL;
		*tolen = 0;
		return true;
	}
	if (*tolen > sizeof(*name) || uw_copy_small_from_user(name, *to, *tolen))
		return false;
	*to = (const struct sockaddr *)name;
	return true;
}

static __attribute__((noinline)) ssize_t queue_buf(struct uw_sock *s, const void *buf,
						    size_t len, int flags,
						    const struct sockaddr *to, socklen_t tolen)
{
	struct iovec iov = { (void *)buf, len };
	struct sockaddr_storage name;

	if (!copy_name(&name, &to, &tolen))
		return submit_refused(s);
	return submit(s, &(struct uw_msg){ &iov, 1, len, flags, to, tolen });
}

UW_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			 const struct sockaddr *to, socklen_t tolen)
{
	struct uw_sock *s = uw_send_sock(fd);
	ssize_t rc;

	if (!s || (rc = queue_buf(s, buf, len, flags, to, tolen)) == UW_PASS)
		return direct(s, real.sendto(fd, buf, len, flags, to, tolen));
	return rc;
}

UW_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	struct uw_sock *s = uw_send_sock(fd);
	ssize_t rc;

	if (!s || (rc = queue_buf(s, buf, len, flags, NULL, 0)) == UW_PASS)
		return direct(s, real.send(fd, buf, len, flags));
	return rc;
}

UW_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	struct uw_sock *s = uw_send_sock(fd);
	ssize_t rc;

	if (!s || (rc = queue_buf(s, buf, len, 0, NULL, 0)) == UW_PASS)
		return direct(s, real.write(fd, buf, len));
	return rc;
}

/* The iovec array into local (n <= UW_LOCAL_IOV): false when it cannot
 * be read. */
static bool copy_iov(struct iovec *local, const struct iovec *iov, size_t n)
{
	return n <= UW_LOCAL_IOV && (!n || (iov && !uw_copy_small_from_user(local, iov, n * sizeof(*iov))));
}

/* Total length of an iovec, or SIZE_MAX when the kernel would refuse it
 * (which makes the message unqueueable). */
static size_t iov_total(const struct iovec *iov, size_t n)
{
	size_t total = 0;

	if (n > UW_UIO_MAXIOV || (n && !iov))
		return SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		if (iov[i].iov_len > SSIZE_MAX - total)
			return SIZE_MAX;
		total += iov[i].iov_len;
	}
	return total;
}

UW_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct uw_sock *s = uw_send_sock(fd);
	ssize_t rc;
	size_t len;

	struct iovec local[UW_LOCAL_IOV];

	if (!s || iovcnt < 0)
		return real.writev(fd, iov, iovcnt);
	if (!copy_iov(local, iov, (size_t)iovcnt)) {
		submit_refused(s);
		return real.writev(fd, iov, iovcnt);
	}
	/* writev() of nothing returns before it reaches the socket: no
	 * datagram, unlike write(fd, buf, 0). The kernel's to do. */
	len = iov_total(local, (size_t)iovcnt);
	rc = len ? submit(s, &(struct uw_msg){ local, (size_t)iovcnt, len, 0, NULL, 0 }) : UW_PASS;
	if (rc == UW_PASS)
		return direct(s, real.writev(fd, iov, iovcnt));
	return rc;
}

/* A message's header, iovecs and address, copied out of the caller's
 * memory. */
struct msg_copy {
	struct msghdr hdr;
	struct iovec iov[UW_LOCAL_IOV];
	struct sockaddr_storage name;
};

/* msghdr → uw_msg, from copies in c. Control data is never queued: it may
 * carry per-packet options (IP_PKTINFO, IP_TOS, SCM_TXTIME, UDP_SEGMENT)
 * the kernel must see with exactly that datagram. False: the kernel's. */
static bool msg_from_hdr(struct uw_msg *m, struct msg_copy *c, const struct msghdr *h,
			 int flags)
{
	if (!h || uw_copy_from_user(&c->hdr, h, sizeof(*h)))
		return false;
	h = &c->hdr;
	if ((h->msg_control && h->msg_controllen) || !copy_iov(c->iov, h->msg_iov, h->msg_iovlen))
		return false;
	m->iov = c->iov;
	m->iovlen = h->msg_iovlen;
	m->len = iov_total(c->iov, h->msg_iovlen);
	m->flags = flags;
	m->name = h->msg_name;
	m->namelen = h->msg_namelen;
	return copy_name(&c->name, &m->name, &m->namelen);
}

UW_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct uw_sock *s = uw_send_sock(fd);
	struct msg_copy copy;
	struct uw_msg m;
	ssize_t rc;

	if (!s)
		return real.sendmsg(fd, msg, flags);
	if (!msg_from_hdr(&m, &copy, msg, flags)) {
		submit_refused(s);
		return real.sendmsg(fd, msg, flags);
	}
	rc = submit(s, &m);
	if (rc == UW_PASS)
		return direct(s, real.sendmsg(fd, msg, flags));
	return rc;
}

/* The address of vec[i].field by arithmetic: vec may be any bad pointer,
 * which only the copies may touch. */
#define mmsg_field(vec, i, field) \
	((void *)((uintptr_t)(vec) + (i) * sizeof(struct mmsghdr) + offsetof(struct mmsghdr, field)))

/* Messages are queued one by one; at the first one the core will not take,
 * what was queued goes out and the rest is the kernel's. Return values as
 * the kernel's: the number of messages taken, msg_len set on each. */
static int queue_mmsg(int (*real_fn)(int, struct mmsghdr *, unsigned int, int),
		      int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	struct uw_sock *s = uw_send_sock(fd);
	int saved = errno;
	unsigned int i;

	if (!s || !vec)
		return real_fn(fd, vec, vlen, flags);
	if (vlen > UW_UIO_MAXIOV)
		vlen = UW_UIO_MAXIOV;
	pthread_testcancel();
	for (i = 0; i < vlen; i++) {
		struct msg_copy copy;
		struct uw_msg m;
		ssize_t rc = UW_PASS;
		int r;

		if (msg_from_hdr(&m, &copy, mmsg_field(vec, i, msg_hdr), flags))
			rc = uw_core_send(&uw_core, s, &m);
		if (rc >= 0) {
			unsigned int sent = (unsigned int)rc;

			/* queued: the kernel would have stored msg_len too,
			 * or failed with EFAULT (the datagram is sent) */
			if (uw_copy_to_user(mmsg_field(vec, i, msg_len), &sent, sizeof(sent)))
				return i ? (int)i : (int)uw_ret(-EFAULT, saved);
			continue;
		}
		if (rc != UW_PASS) {
			if (i == 0)
				return (int)uw_ret(rc, saved);
			/* Reported by the next call, as the kernel would. */
			atomic_store(&s->pending_err, (int)-rc);
			break;
		}
		submit_refused(s);
		errno = saved;
		r = real_fn(fd, vec + i, vlen - i, flags);
		if (uw_sync_sock == s) {
			int e = errno;
			long bytes = 0;

			for (int k = 0; k < r; k++)
				bytes += vec[i + k].msg_len;
			uw_core_sync_done(&uw_core, s, r, bytes);
			errno = e;
		}
		if (r < 0)
			return i ? (int)i : r;
		return (int)i + r;
	}
	errno = saved;
	return (int)i;
}

UW_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	uw_bind_real();
	return queue_mmsg(real.sendmmsg, fd, vec, vlen, flags);
}

UW_EXPORT int __sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	uw_bind_real();
	return queue_mmsg(real.__sendmmsg, fd, vec, vlen, flags);
}
