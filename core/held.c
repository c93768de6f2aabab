/* SPDX-License-Identifier: MIT */
/*
 * Held datagrams (design §3.5, backpressure). What a flush could not hand
 * to a full socket (EAGAIN, ENOBUFS) waits on that socket's own list, not
 * in the flush: the flush goes on with the other sockets, within their
 * budgets, and never sleeps. The list goes out before anything later of
 * its socket, sent by whoever comes first:
 *
 *   - the application's next call on the socket, which waits for room if
 *     the socket blocks, or fails with EAGAIN if it does not, as the
 *     kernel's send would have;
 *   - the flush thread, which retries every UW_HELD_RETRY_NS;
 *   - close and exit, which wait a bounded time, then drop and count.
 *
 * One sender at a time drains a list (draining, under hold_lock), so the
 * socket's order holds; a flush meeting a socket with a list appends to
 * it. hold_lock is taken inside the library (signals deferred), never
 * across a wait.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"
#include "uw.h"

/* A run of held datagrams to one destination: nseg segments of seg bytes
 * (the last may be shorter), sent as one GSO message where the socket
 * takes them, else segment by segment from done on. */
struct uw_held {
	struct uw_held *next;
	struct uw_addr dest;		/* always an address: see held_add */
	uint32_t seg, nseg, done;	/* segments: size, count, already sent */
	uint32_t len, off;		/* bytes: all of them, before segment done */
	bool plain;			/* one segment a message */
	uint8_t cls;			/* its pool class, UW_HELD_CLASSES: none */
	unsigned char data[];
};

/* The pool (uw_core.held_pool): blocks of UW_HELD_BLOCK << class bytes,
 * header included; one larger than the largest class is malloc's alone. */
#define UW_HELD_BLOCK	2048u

static struct uw_held *held_get(struct uw_core *c, size_t len)
{
	size_t need = sizeof(struct uw_held) + len;
	unsigned int k = 0;
	struct uw_held *h = NULL;

	while (k < UW_HELD_CLASSES && (size_t)UW_HELD_BLOCK << k < need)
		k++;
	if (k < UW_HELD_CLASSES) {
		pthread_mutex_lock(&c->held_pool_lock);
		h = c->held_pool[k];
		if (h) {
			c->held_pool[k] = h->next;
			c->held_pool_bytes -= (size_t)UW_HELD_BLOCK << k;
		}
		pthread_mutex_unlock(&c->held_pool_lock);
		need = (size_t)UW_HELD_BLOCK << k;
	}
	if (!h)
		h = malloc(need);
	if (h)
		h->cls = (uint8_t)k;
	return h;
}

static void held_put(struct uw_core *c, struct uw_held *h)
{
	size_t size;

	if (h->cls < UW_HELD_CLASSES) {
		size = (size_t)UW_HELD_BLOCK << h->cls;
		pthread_mutex_lock(&c->held_pool_lock);
		if (c->held_pool_bytes + size <= c->held_pool_cap) {
			h->next = c->held_pool[h->cls];
			c->held_pool[h->cls] = h;
			c->held_pool_bytes += size;
			h = NULL;
		}
		pthread_mutex_unlock(&c->held_pool_lock);
	}
	free(h);
}

void uw_held_init(struct uw_core *c, size_t pool_cap)
{
	pthread_mutex_init(&c->held_lock, NULL);
	pthread_mutex_init(&c->held_pool_lock, NULL);
	c->held_pool_cap = pool_cap;
}

void uw_held_free_pool(struct uw_core *c)
{
	pthread_mutex_lock(&c->held_pool_lock);
	for (unsigned int k = 0; k < UW_HELD_CLASSES; k++) {
		while (c->held_pool[k]) {
			struct uw_held *h = c->held_pool[k];

			c->held_pool[k] = h->next;
			free(h);
		}
	}
	c->held_pool_bytes = 0;
	pthread_mutex_unlock(&c->held_pool_lock);
}

/* hold_lock is taken inside the library (a signal is deferred, never
 * run over it); inside already when a flush parks. */
static bool lock_held(struct uw_sock *s, int *cs)
{
	bool entered = uw_core_enter(cs);

	pthread_mutex_lock(&s->hold_lock);
	return entered;
}

static void unlock_held(struct uw_sock *s, bool entered, int cs)
{
	pthread_mutex_unlock(&s->hold_lock);
	if (entered)
		uw_core_leave(cs);
}

/* Parked: s has a list. A socket that does not block also sends to the
 * kernel at its calls (UW_SOCK_SYNC), so that EAGAIN comes where the
 * kernel gives it; one that blocks queues again once its list is sent,
 * which its next call waits for. */
static uint32_t parked_flags(struct uw_core *c, struct uw_sock *s)
{
	int fl = c->sys->fd_flags ? c->sys->fd_flags(atomic_load_explicit(&s->fd,
					memory_order_relaxed)) : -1;

	return UW_SOCK_HELD | (fl < 0 || (fl & O_NONBLOCK) ? UW_SOCK_SYNC : 0);
}

/* s joins the core's list of sockets with held datagrams; the flush
 * thread, asleep until later, is told to retry them. */
static void list_sock(struct uw_core *c, struct uw_sock *s)
{
	bool first = false;
	int cs;
	bool in = uw_core_enter(&cs);	/* held_lock, qlock: a handler's exit takes them */

	pthread_mutex_lock(&c->held_lock);
	if (!s->held_listed) {
		s->held_listed = true;
		s->held_link = c->held_socks;
		c->held_socks = s;
		first = !atomic_fetch_add_explicit(&c->nheld_socks, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&c->held_lock);
	if (first) {
		pthread_mutex_lock(&c->qlock);
		c->held_next_ns = 0;
		if (c->flusher_running)
			pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->qlock);
	}
	if (in)
		uw_core_leave(cs);
}

static void unlist_sock(struct uw_core *c, struct uw_sock *s)
{
	int cs;
	bool in = uw_core_enter(&cs);

	pthread_mutex_lock(&c->held_lock);
	if (s->held_listed) {
		for (struct uw_sock **p = &c->held_socks; *p; p = &(*p)->held_link) {
			if (*p == s) {
				*p = s->held_link;
				break;
			}
		}
		s->held_listed = false;
		atomic_fetch_sub_explicit(&c->nheld_socks, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&c->held_lock);
	if (in)
		uw_core_leave(cs);
}

/* Segments iov[0..n) (one per datagram, every one but the last of the
 * first one's size) onto s's list as one run (hold_lock held). A run to
 * the connected peer keeps the peer's address: a later connect must not
 * redirect what was sent before it. False without memory. */
static bool held_add(struct uw_core *c, struct uw_sock *s, const struct uw_addr *dest,
		     const struct iovec *iov, uint32_t n)
{
	struct uw_held *h;
	size_t len = 0;

	for (uint32_t i = 0; i < n; i++)
		len += iov[i].iov_len;
	h = held_get(c, len);
	if (!h)
		return false;
	h->next = NULL;
	h->dest = dest->len ? *dest : s->peer;
	h->seg = (uint32_t)iov[0].iov_len;
	h->nseg = n;
	h->done = h->off = 0;
	h->len = (uint32_t)len;
	h->plain = n == 1 || !h->seg || (uw_sock_flags(s) & UW_SOCK_NO_GSO);
	len = 0;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(h->data + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	if (s->held_tail)
		s->held_tail->next = h;
	else
		s->held_head = h;
	s->held_tail = h;
	return true;
}

/* The unsent segments of h are lost (no memory, closed, refused). */
static void count_lost(struct uw_core *c, uint32_t nseg)
{
	uw_stat_add(&c->stats.datagrams_dropped, nseg);
	uw_stat_add(&c->stats.held_dropped, nseg);
}

void uw_held_park_run(struct uw_core *c, struct uw_run *r)
{
	struct uw_sock *s = r->sock;
	bool in;
	int cs;

	if (!r->held)
		return;
	in = lock_held(s, &cs);
	uw_stat_add(&c->stats.held_datagrams, r->held);
	if (!held_add(c, s, r->dest, r->iov + (r->nseg - r->held), r->held))
		count_lost(c, r->held);
	uw_sock_set(s, parked_flags(c, s));
	unlock_held(s, in, cs);
	list_sock(c, s);
}

/* The largest segment a run of s's datagrams to dest may carry: the
 * path's, as the backends find it (UW_SEG_PLAIN toward a shaper: datagrams
 * alone); a run the kernel still refuses goes segment by segment. Flush
 * lock held. */
static uint32_t held_run_cap(struct uw_core *c, struct uw_sock *s, const struct uw_addr *dest)
{
	if (uw_sock_flags(s) & UW_SOCK_NO_GSO)
		return 0;
	return uw_route_max_segment(c->sys, s, dest);
}

void uw_held_take_flow(struct uw_core *c, struct uw_flow *f)
{
	struct uw_sock *s = f->sock;
	int cs;
	bool in = lock_held(s, &cs);

	for (struct uw_dgram *d = f->head; d;) {
		struct iovec iov[UW_GSO_MAX_SEGS];
		uint32_t n = 0, bytes = 0, cap = held_run_cap(c, s, &f->dest);

		/* a run as the batch builder cuts them: equal sizes, a shorter
		 * last one, within GSO's limits and the socket's path */
		do {
			iov[n].iov_base = d->data;
			iov[n].iov_len = d->len;
			bytes += d->len;
			n++;
			d = d->next;
		} while (d && n < UW_GSO_MAX_SEGS && d->len && d->len <= iov[0].iov_len &&
			 iov[n - 1].iov_len == iov[0].iov_len && iov[0].iov_len <= cap &&
			 bytes + d->len <= UW_GSO_MAX_BYTES);
		uw_stat_add(&c->stats.held_datagrams, n);
		if (!held_add(c, s, &f->dest, iov, n))
			count_lost(c, n);
	}
	uw_sock_set(s, parked_flags(c, s));
	unlock_held(s, in, cs);
	f->head = f->tail = NULL;
	list_sock(c, s);
}

/* The rest of h to the kernel, waiting for room only if wait (the
 * application's own thread, on a socket that blocks): 0 when all of it
 * went, or the errno with h->done at what did. */
static int held_send(struct uw_core *c, struct uw_sock *s, struct uw_held *h, bool wait)
{
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed), saved = errno, err = 0;
	union uw_be_cmsgs ctl;

	while (h->done < h->nseg) {
		bool gso = !h->plain && h->nseg - h->done > 1;
		uint32_t n = gso ? h->len - h->off : (h->len - h->off < h->seg ? h->len - h->off
										 : h->seg);
		struct iovec iov = { h->data + h->off, n };
		struct msghdr mh = { .msg_name = h->dest.len ? &h->dest.u : NULL,
				     .msg_namelen = h->dest.len, .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t r;

		uw_be_set_cmsgs(&mh, &ctl, gso ? (uint16_t)h->seg : 0, 0);
		do
			r = c->sys->sendmsg(fd, &mh, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
		while (r < 0 && errno == EINTR);
		uw_stat_add(&c->stats.syscalls, 1);
		uw_stat_add(&c->stats.held_sends, 1);
		if (r < 0) {
			err = errno;
			if (gso && (err == EINVAL || err == EIO || err == EMSGSIZE)) {
				h->plain = true;	/* the path or the device: one by one */
				err = 0;
				continue;
			}
			break;
		}
		uw_stat_add(&c->stats.datagrams_out, gso ? h->nseg - h->done : 1);
		uw_stat_add(&c->stats.bytes_out, n);
		h->done = gso ? h->nseg : h->done + 1;
		h->off += n;
	}
	errno = saved;
	return err;
}

static bool is_full(int err)
{
	return err == EAGAIN || err == ENOBUFS || err == ENOMEM;
}

/*
 * ENOBUFS is a qdisc that dropped (with IP_RECVERR) or no memory: no
 * POLLOUT will say when to try again, and trying at once feeds a full
 * queue (with fragments of large datagrams, it keeps it full). Growing
 * back-off, 1 to 16 ms (hold_lock held).
 */
#define UW_HELD_BACKOFF_MIN_NS	1000000u
#define UW_HELD_BACKOFF_MAX_NS	16000000u

static void back_off(struct uw_core *c, struct uw_sock *s)
{
	uint32_t b = s->held_backoff_ns ? s->held_backoff_ns * 2 : UW_HELD_BACKOFF_MIN_NS;

	s->held_backoff_ns = b > UW_HELD_BACKOFF_MAX_NS ? UW_HELD_BACKOFF_MAX_NS : b;
	s->held_retry_ns = c->sys->now_ns() + s->held_backoff_ns;
}

/* Up to this many runs go in one sendmmsg. */
#define UW_HELD_BATCH	64

/*
 * Runs v[0..n) to the kernel, one message each (GSO), in as few calls as
 * it takes: returns how many went whole; the next one, if any, has the
 * errno in *err (and h->done at what of it went). A run that must go
 * segment by segment (GSO refused, or one datagram left of several) goes
 * by held_send.
 */
static uint32_t send_runs(struct uw_core *c, struct uw_sock *s, struct uw_held **v, uint32_t n,
			  bool wait, int *err)
{
	struct mmsghdr mm[UW_HELD_BATCH];
	struct iovec iov[UW_HELD_BATCH];
	union uw_be_cmsgs ctl[UW_HELD_BATCH];
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed), saved = errno;
	uint32_t k = 0;

	*err = 0;
	while (k < n) {
		uint32_t m = 0;
		int r;

		for (uint32_t i = k; i < n && !v[i]->done && (v[i]->nseg == 1 || !v[i]->plain);
		     i++, m++) {
			struct msghdr *h = &mm[m].msg_hdr;

			memset(&mm[m], 0, sizeof(mm[m]));
			iov[m] = (struct iovec){ v[i]->data, v[i]->len };
			h->msg_name = v[i]->dest.len ? &v[i]->dest.u : NULL;
			h->msg_namelen = v[i]->dest.len;
			h->msg_iov = &iov[m];
			h->msg_iovlen = 1;
			uw_be_set_cmsgs(h, &ctl[m], v[i]->nseg > 1 ? (uint16_t)v[i]->seg : 0, 0);
		}
		if (!m) {	/* segment by segment */
			*err = held_send(c, s, v[k], wait);
			if (*err)
				break;
			k++;
			continue;
		}
		do
			r = c->sys->sendmmsg(fd, mm, m, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
		while (r < 0 && errno == EINTR);
		uw_stat_add(&c->stats.syscalls, 1);
		uw_stat_add(&c->stats.held_sends, 1);
		if (r <= 0) {	/* the first one's answer, and its fallbacks */
			*err = held_send(c, s, v[k], wait);
			if (*err)
				break;
			k++;
			continue;
		}
		for (int i = 0; i < r; i++, k++) {
			uw_stat_add(&c->stats.datagrams_out, v[k]->nseg);
			uw_stat_add(&c->stats.bytes_out, v[k]->len);
			v[k]->done = v[k]->nseg;
		}
	}
	errno = saved;
	return k;
}

/* Send s's list until the kernel has no room: 0 when it is empty, EAGAIN
 * when the socket is full, ENOBUFS while backing off, EBUSY when another
 * thread is draining it. The caller takes an emptied socket off the
 * core's list. */
static int drain_once(struct uw_core *c, struct uw_sock *s, bool wait)
{
	struct uw_held *v[UW_HELD_BATCH], *h;
	bool empty, in;
	int cs, err = 0;

	in = lock_held(s, &cs);
	if (s->draining) {
		unlock_held(s, in, cs);
		return EBUSY;
	}
	if (s->held_retry_ns && c->sys->now_ns() < s->held_retry_ns) {
		unlock_held(s, in, cs);
		return ENOBUFS;		/* backing off */
	}
	s->draining = true;
	for (;;) {
		uint32_t n = 0, k;

		while (n < UW_HELD_BATCH && (h = s->held_head) != NULL) {
			s->held_head = h->next;
			if (!h->next)
				s->held_tail = NULL;
			v[n++] = h;
		}
		if (!n)
			break;
		unlock_held(s, in, cs);		/* a wait, outside the library */
		k = send_runs(c, s, v, n, wait, &err);
		in = lock_held(s, &cs);
		for (uint32_t i = 0; i < k; i++)
			held_put(c, v[i]);
		if (k < n && !is_full(err)) {	/* refused for good: the next call hears it */
			int none = 0;

			count_lost(c, v[k]->nseg - v[k]->done);
			atomic_compare_exchange_strong(&s->pending_err, &none, err);
			held_put(c, v[k++]);
			err = 0;
		}
		if (k < n) {	/* the rest back at the head, in order: still first */
			v[n - 1]->next = s->held_head;
			for (uint32_t i = n - 1; i > k; i--)
				v[i - 1]->next = v[i];
			s->held_head = v[k];
			if (!s->held_tail)
				s->held_tail = v[n - 1];
		}
		if (is_full(err)) {
			if (err != EAGAIN)
				back_off(c, s);
			break;
		}
		s->held_backoff_ns = 0;
		s->held_retry_ns = 0;
	}
	s->draining = false;
	empty = !s->held_head;
	if (empty)
		uw_sock_clear(s, UW_SOCK_HELD);
	unlock_held(s, in, cs);
	return empty ? 0 : err == ENOBUFS || err == ENOMEM ? ENOBUFS : EAGAIN;
}

int uw_held_drain(struct uw_core *c, struct uw_sock *s, int wait_ms)
{
	uint64_t until = wait_ms > 0 ? c->sys->now_ns() + (uint64_t)wait_ms * 1000000u : 0;

	for (;;) {
		struct pollfd p = { .fd = atomic_load_explicit(&s->fd, memory_order_relaxed),
				    .events = POLLOUT };
		int err = drain_once(c, s, wait_ms < 0), ms = 100;
		uint64_t now;

		if (!err) {
			unlist_sock(c, s);
			return 0;
		}
		if (!wait_ms)
			return -EAGAIN;
		if (wait_ms > 0) {
			now = c->sys->now_ns();
			if (now >= until)
				return -EAGAIN;
			if ((until - now) / 1000000u < (uint64_t)ms)
				ms = (int)((until - now) / 1000000u) + 1;
		}
		if (err == EBUSY) {	/* another thread drains it */
			ms = 1;
		} else if (err != EAGAIN) {	/* ENOBUFS: its back-off, no POLLOUT */
			uint64_t at = atomic_load_explicit(&s->held_retry_ns, memory_order_relaxed);

			now = c->sys->now_ns();
			ms = at > now ? (int)((at - now) / 1000000u) + 1 : 1;
			c->sys->poll(NULL, 0, ms);
			continue;
		}
		c->sys->poll(&p, 1, ms);
	}
}

/* The list is dropped, counted (close of the socket, exit, or its number
 * found reused). */
static void held_discard(struct uw_core *c, struct uw_sock *s, bool gone)
{
	struct uw_held *h;
	int cs;
	bool in = lock_held(s, &cs);

	while ((h = s->held_head) != NULL) {
		s->held_head = h->next;
		count_lost(c, h->nseg - h->done);
		if (gone)
			uw_stat_add(&c->stats.dropped_sock_gone, h->nseg - h->done);
		held_put(c, h);
	}
	s->held_tail = NULL;
	uw_sock_clear(s, UW_SOCK_HELD);
	unlock_held(s, in, cs);
}

void uw_held_close(struct uw_core *c, struct uw_sock *s, int wait_ms)
{
	if (!(uw_sock_flags(s) & UW_SOCK_HELD) && !s->held_listed)
		return;
	if (uw_held_drain(c, s, wait_ms))
		held_discard(c, s, false);
	unlist_sock(c, s);
}

void uw_held_forget(struct uw_core *c, struct uw_sock *s)
{
	if (!(uw_sock_flags(s) & UW_SOCK_HELD) && !s->held_listed)
		return;
	held_discard(c, s, true);
	unlist_sock(c, s);
}

/* Every listed socket once, never waiting (the flush thread); sockets it
 * empties leave the list. Under held_lock: a socket is closed (and its
 * memory reused) only after it left the list. */
static size_t retry_once(struct uw_core *c, bool discard)
{
	size_t left = 0;
	int cs;
	bool in = uw_core_enter(&cs);

	pthread_mutex_lock(&c->held_lock);
	for (struct uw_sock **p = &c->held_socks; *p;) {
		struct uw_sock *s = *p;
		int err = drain_once(c, s, false);

		if (err && discard) {
			held_discard(c, s, false);
			err = 0;
		}
		if (err) {
			left++;
			p = &s->held_link;
			continue;
		}
		*p = s->held_link;
		s->held_listed = false;
		atomic_fetch_sub_explicit(&c->nheld_socks, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&c->held_lock);
	if (in)
		uw_core_leave(cs);
	return left;
}

void uw_held_retry(struct uw_core *c)
{
	if (atomic_load_explicit(&c->nheld_socks, memory_order_relaxed))
		retry_once(c, false);
}

void uw_held_exit(struct uw_core *c, int wait_ms)
{
	uint64_t until = c->sys->now_ns() + (uint64_t)wait_ms * 1000000u;

	/* an exit from a handler that interrupted the library: its thread
	 * may hold the lists' locks, which are left alone (the lists lost,
	 * as at _exit without the library nothing is sent later either) */
	if (uw_core_inside())
		return;

	while (atomic_load_explicit(&c->nheld_socks, memory_order_relaxed)) {
		bool last = c->sys->now_ns() >= until;

		if (!retry_once(c, last) || last)
			return;
		c->sys->poll(NULL, 0, 1);
	}
}

/*
 * The forked child: what the parent held, the parent sends. Another thread
 * of the parent may have been in a list or the pool at fork: the locks are
 * made anew and the lists let go of without reading them (the parent's
 * memory, leaked here, never sent twice).
 */
void uw_held_fork_child(struct uw_core *c)
{
	int max = atomic_load_explicit(&c->fds.max_fd, memory_order_relaxed);

	for (int fd = 0; fd <= max && fd < c->fds.nslots; fd++) {
		struct uw_sock *s = uw_slot_sock(atomic_load_explicit(&c->fds.slot[fd],
								      memory_order_relaxed));

		if (!s)
			continue;
		pthread_mutex_init(&s->hold_lock, NULL);
		s->held_head = s->held_tail = NULL;
		s->draining = false;
		s->held_listed = false;
		s->held_link = NULL;
		s->held_retry_ns = 0;
		s->held_backoff_ns = 0;
		uw_sock_clear(s, UW_SOCK_HELD);
	}
	pthread_mutex_init(&c->held_lock, NULL);
	pthread_mutex_init(&c->held_pool_lock, NULL);
	c->held_socks = NULL;
	atomic_store(&c->nheld_socks, 0);
	c->held_next_ns = 0;
	memset(c->held_pool, 0, sizeof(c->held_pool));
	c->held_pool_bytes = 0;
}
