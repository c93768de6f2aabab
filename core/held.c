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
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "uw.h"

struct uw_held {
	struct uw_held *next;
	struct uw_addr dest;		/* always an address: see held_add */
	uint32_t len;
	unsigned char data[];
};

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

/* s joins the core's list of sockets with held datagrams; the flush
 * thread, asleep until later, is told to retry them. */
static void list_sock(struct uw_core *c, struct uw_sock *s)
{
	bool first = false;

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
}

static void unlist_sock(struct uw_core *c, struct uw_sock *s)
{
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
}

/* One datagram onto s's list (hold_lock held). A datagram to the
 * connected peer keeps the peer's address: a later connect must not
 * redirect what was sent before it. False without memory. */
static bool held_add(struct uw_sock *s, const struct uw_addr *dest, const void *data,
		     uint32_t len)
{
	struct uw_held *h = malloc(sizeof(*h) + len);

	if (!h)
		return false;
	h->next = NULL;
	h->dest = dest->len ? *dest : s->peer;
	h->len = len;
	memcpy(h->data, data, len);
	if (s->held_tail)
		s->held_tail->next = h;
	else
		s->held_head = h;
	s->held_tail = h;
	return true;
}

static void count_lost(struct uw_core *c, uint32_t len)
{
	uw_stat_add(&c->stats.datagrams_dropped, 1);
	uw_stat_add(&c->stats.held_dropped, 1);
	(void)len;
}

void uw_held_park_run(struct uw_core *c, struct uw_run *r)
{
	struct uw_sock *s = r->sock;
	bool in;
	int cs;

	if (!r->held)
		return;
	in = lock_held(s, &cs);
	for (uint32_t i = r->nseg - r->held; i < r->nseg; i++) {
		uw_stat_add(&c->stats.held_datagrams, 1);
		if (!held_add(s, r->dest, r->iov[i].iov_base, (uint32_t)r->iov[i].iov_len))
			count_lost(c, (uint32_t)r->iov[i].iov_len);
	}
	uw_sock_set(s, UW_SOCK_HELD | UW_SOCK_SYNC);
	unlock_held(s, in, cs);
	list_sock(c, s);
}

void uw_held_take_flow(struct uw_core *c, struct uw_flow *f)
{
	struct uw_sock *s = f->sock;
	int cs;
	bool in = lock_held(s, &cs);

	for (struct uw_dgram *d = f->head; d; d = d->next) {
		uw_stat_add(&c->stats.held_datagrams, 1);
		if (!held_add(s, &f->dest, d->data, d->len))
			count_lost(c, d->len);
	}
	uw_sock_set(s, UW_SOCK_HELD | UW_SOCK_SYNC);
	unlock_held(s, in, cs);
	f->head = f->tail = NULL;
	list_sock(c, s);
}

/* One held datagram to the kernel, never waiting: 0 or the errno. */
static int held_send(struct uw_core *c, struct uw_sock *s, struct uw_held *h)
{
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed), saved = errno, err;
	struct iovec iov = { h->data, h->len };
	struct msghdr mh = { .msg_name = h->dest.len ? &h->dest.u : NULL,
			     .msg_namelen = h->dest.len, .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	do
		r = c->sys->sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	err = r < 0 ? errno : 0;
	errno = saved;
	uw_stat_add(&c->stats.syscalls, 1);
	uw_stat_add(&c->stats.held_sends, 1);
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

/* Send s's list until the kernel has no room: 0 when it is empty, EAGAIN
 * when the socket is full, EBUSY when another thread is draining it. The
 * caller takes an emptied socket off the core's list. */
static int drain_once(struct uw_core *c, struct uw_sock *s)
{
	struct uw_held *h;
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
	while ((h = s->held_head) != NULL) {
		s->held_head = h->next;
		if (!h->next)
			s->held_tail = NULL;
		pthread_mutex_unlock(&s->hold_lock);
		err = held_send(c, s, h);
		pthread_mutex_lock(&s->hold_lock);
		if (is_full(err)) {	/* back at the head: still first */
			h->next = s->held_head;
			s->held_head = h;
			if (!s->held_tail)
				s->held_tail = h;
			if (err != EAGAIN)
				back_off(c, s);
			break;
		}
		s->held_backoff_ns = 0;
		s->held_retry_ns = 0;
		if (err) {	/* refused for good: the next call hears it */
			int none = 0;

			count_lost(c, h->len);
			atomic_compare_exchange_strong(&s->pending_err, &none, err);
		} else {
			uw_stat_add(&c->stats.datagrams_out, 1);
			uw_stat_add(&c->stats.bytes_out, h->len);
		}
		free(h);
		err = 0;
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
		int err = drain_once(c, s), ms = 100;
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
		count_lost(c, h->len);
		if (gone)
			uw_stat_add(&c->stats.dropped_sock_gone, 1);
		free(h);
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

	pthread_mutex_lock(&c->held_lock);
	for (struct uw_sock **p = &c->held_socks; *p;) {
		struct uw_sock *s = *p;
		int err = drain_once(c, s);

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

	while (atomic_load_explicit(&c->nheld_socks, memory_order_relaxed)) {
		bool last = c->sys->now_ns() >= until;

		if (!retry_once(c, last) || last)
			return;
		c->sys->poll(NULL, 0, 1);
	}
}
