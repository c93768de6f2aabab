/* SPDX-License-Identifier: MIT */
/*
 * The queue: two staging arenas ("stages"). Application threads copy their
 * datagrams into the active stage under qlock; a flush swaps the stages
 * under qlock and sends the detached one with no qlock held, so senders go
 * on queueing while the kernel works. flock makes flushes one at a time,
 * which keeps every flow in order (a flush only starts when the previous
 * one is complete, and the other stage is then empty).
 *
 * Lock order: flock, then qlock, then the fdtable lock. Application threads
 * never hold a lock when they return, and hold none across a cancellation
 * point: cancellation is disabled while the library works for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <stdio.h>

#include "trace.h"
#include "uw.h"

/*
 * Set while this thread is inside the library holding, or about to take, a
 * lock. send() is async-signal-safe: a signal handler that sends while its
 * thread is in here must not wait for a lock that thread holds, so a
 * re-entered call goes straight to the kernel.
 */
static __thread unsigned int uw_in_core __attribute__((tls_model("initial-exec")));
/* A terminating signal that arrived while this thread was in here: acted
 * on (uw_core_on_deferred) when it leaves. */
static __thread volatile sig_atomic_t uw_deferred_sig __attribute__((tls_model("initial-exec")));
void (*uw_core_on_deferred)(int sig);

static bool core_enter(int *cs)
{
	if (uw_in_core)
		return false;
	uw_in_core++;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, cs);
	return true;
}

static void core_leave(int cs)
{
	pthread_setcancelstate(cs, NULL);
	uw_in_core--;
	if (__builtin_expect(uw_deferred_sig, 0) && !uw_in_core) {
		int sig = uw_deferred_sig;

		uw_deferred_sig = 0;
		if (uw_core_on_deferred)
			uw_core_on_deferred(sig);
	}
}

/* A synchronous socket queues again once its sends come less than
 * max delay / UW_SYNC_GAP apart (core/uw.h, UW_SOCK_SYNC). */
#define UW_SYNC_GAP	2u
#define UW_SYNC_HOLD_NS	(100ull * 1000000ull)
/* Datagrams in one batch from which a backend that sends all sockets in
 * one call pays for the flush (see note_lonely). */
#define UW_CROSS_PAYS	16u
/* Sends of an interactive socket without a read between them, after
 * which it is taken for a stream (see UW_SOCK_INTERACTIVE). */
#define UW_INTERACTIVE_BURST	64u

/* Live statistics go out after flushes (sys->after_flush, flush lock
 * held); a process whose sends all go to the kernel flushes nothing, so
 * its sends publish them too, every UW_SYNC_PUBLISH_NS at most, when the
 * flush lock is free. */
#define UW_SYNC_PUBLISH_NS	(100ull * 1000000ull)

static void publish_now_and_then(struct uw_core *c, uint64_t now)
{
	int cs;

	if (!c->sys->after_flush ||
	    now < atomic_load_explicit(&c->sync_publish_ns, memory_order_relaxed))
		return;
	atomic_store_explicit(&c->sync_publish_ns, now + UW_SYNC_PUBLISH_NS, memory_order_relaxed);
	if (!core_enter(&cs))
		return;
	if (!pthread_mutex_trylock(&c->flock)) {
		c->sys->after_flush(now);
		pthread_mutex_unlock(&c->flock);
	}
	core_leave(cs);
}

void uw_core_sync_error(struct uw_sock *s, uint64_t now_ns)
{
	atomic_store_explicit(&s->sync_err_ns, now_ns, memory_order_relaxed);
	uw_sock_go_direct(s, UW_DIRECT_ERROR);
}

/* The socket whose send this thread handed to the kernel to judge
 * (UW_SOCK_SYNC): the preload edge reports the kernel's answer. */
__thread struct uw_sock *uw_sync_sock __attribute__((tls_model("initial-exec")));

/* A cross-socket backend's side of sends_come_fast: the process's direct
 * datagrams within one max delay are twice what a batch needs to pay. (The
 * window's count is racy between threads; an estimate is all it needs.) */
static bool process_sends_fast(struct uw_core *c, uint64_t now, long datagrams)
{
	uint64_t start = atomic_load_explicit(&c->sync_win_ns, memory_order_relaxed);

	if (now - start > (uint64_t)c->cfg.max_delay_us * 1000) {
		atomic_store_explicit(&c->sync_win_ns, now, memory_order_relaxed);
		atomic_store_explicit(&c->sync_win_n, 0, memory_order_relaxed);
	}
	return atomic_fetch_add_explicit(&c->sync_win_n, (uint32_t)datagrams,
					 memory_order_relaxed) + (uint32_t)datagrams >=
	       2 * UW_CROSS_PAYS;
}

void uw_core_sync_done(struct uw_core *c, struct uw_sock *s, long datagrams, long bytes)
{
	uint64_t last = atomic_load_explicit(&s->sync_last_ns, memory_order_relaxed);

	uw_sync_sock = NULL;
	uw_stat_add(&c->stats.sync_calls, 1);
	if (datagrams <= 0) {
		uw_stat_add(&c->stats.sync_errors, 1);
		atomic_store_explicit(&s->sync_err_ns, last, memory_order_relaxed);
		return;
	}
	if (c->be.ops->cross_socket && c->cfg.step_aside && process_sends_fast(c, last, datagrams))
		atomic_store_explicit(&s->sync_fast, true, memory_order_relaxed);
	if (atomic_load_explicit(&s->sync_fast, memory_order_relaxed) &&
	    last - atomic_load_explicit(&s->sync_err_ns, memory_order_relaxed) >= UW_SYNC_HOLD_NS)
		uw_sock_clear(s, UW_SOCK_SYNC);
	uw_stat_add(&s->n_direct, (uint64_t)datagrams);
	uw_stat_add(&c->stats.sync_datagrams, (uint64_t)datagrams);
	uw_stat_add(&c->stats.sync_bytes, (uint64_t)bytes);
	uw_stat_add(&c->stats.datagrams_in, (uint64_t)datagrams);
	uw_stat_add(&c->stats.bytes_in, (uint64_t)bytes);
	uw_stat_add(&c->stats.datagrams_out, (uint64_t)datagrams);
	uw_stat_add(&c->stats.bytes_out, (uint64_t)bytes);
	publish_now_and_then(c, last);
}

bool uw_core_inside(void)
{
	return uw_in_core;
}

void uw_core_defer_signal(int sig)
{
	uw_deferred_sig = sig;
}

bool uw_core_enter(int *cs)
{
	return core_enter(cs);
}

void uw_core_leave(int cs)
{
	core_leave(cs);
}

/* ---- addresses ---------------------------------------------------------- */

void uw_addr_from_sockaddr(struct uw_addr *a, const struct sockaddr *sa, socklen_t len)
{
	memset(a, 0, sizeof(*a));
	if (!sa)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		a->len = sizeof(a->u.in);
		a->u.in.sin_family = AF_INET;
		a->u.in.sin_port = in->sin_port;
		a->u.in.sin_addr = in->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		a->len = sizeof(a->u.in6);
		a->u.in6.sin6_family = AF_INET6;
		a->u.in6.sin6_port = in6->sin6_port;
		a->u.in6.sin6_flowinfo = in6->sin6_flowinfo;
		a->u.in6.sin6_addr = in6->sin6_addr;
		if (len >= sizeof(*in6))
			a->u.in6.sin6_scope_id = in6->sin6_scope_id;
	}
}

/* "addr:port", "[addr]:port", or "" for the connected peer. */
void uw_addr_format(const struct uw_addr *a, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (!a->len) {
		snprintf(out, len, "%s", "");
	} else if (a->u.sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->u.in.sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(a->u.in.sin_port));
	} else {
		inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
	}
}

bool uw_addr_equal(const struct uw_addr *a, const struct uw_addr *b)
{
	return a->len == b->len && !memcmp(&a->u, &b->u, a->len);
}

static uint32_t mix32(uint32_t h, uint32_t v)
{
	h ^= v * 0x9e3779b1u;
	return (h << 13 | h >> 19) * 5u + 0xe6546b64u;
}

uint32_t uw_addr_hash(const struct uw_addr *a)
{
	uint32_t h = a->len;

	if (a->len == sizeof(a->u.in)) {
		h = mix32(h, a->u.in.sin_addr.s_addr);
		h = mix32(h, a->u.in.sin_port);
	} else if (a->len == sizeof(a->u.in6)) {
		const uint32_t *w = a->u.in6.sin6_addr.s6_addr32;

		for (int i = 0; i < 4; i++)
			h = mix32(h, w[i]);
		h = mix32(h, a->u.in6.sin6_port ^ a->u.in6.sin6_scope_id ^
			     a->u.in6.sin6_flowinfo);
	}
	return h ^ (h >> 16);
}

/* ---- stages ------------------------------------------------------------- */

int uw_arena_init(struct uw_arena *a, size_t total)
{
	size_t chunk = total / 32 > UW_CHUNK_MIN ? total / 32 : UW_CHUNK_MIN;
	unsigned int n = total / chunk > 2 ? (unsigned int)(total / chunk) : 2;

	memset(a, 0, sizeof(*a));
	a->mem = malloc((size_t)n * chunk);
	a->chunk = calloc(n, sizeof(*a->chunk));
	if (!a->mem || !a->chunk) {
		uw_arena_free(a);
		return -ENOMEM;
	}
	a->chunk_size = chunk;
	a->nchunks = n;
	for (unsigned int i = n; i-- > 0;) {
		a->chunk[i].base = a->mem + (size_t)i * chunk;
		a->chunk[i].next = a->free;
		a->free = &a->chunk[i];
	}
	a->nfree = n;
	return 0;
}

void uw_arena_free(struct uw_arena *a)
{
	free(a->mem);
	free(a->chunk);
	memset(a, 0, sizeof(*a));
}

void uw_stage_init(struct uw_stage *st, struct uw_arena *arena)
{
	memset(st, 0, sizeof(*st));
	st->arena = arena;
}

void uw_stage_reset(struct uw_stage *st)
{
	struct uw_arena *a = st->arena;

	for (struct uw_flow *f = st->flows; f; f = f->next)
		st->bucket[f->bucket] = NULL;
	while (st->chunks) {
		struct uw_chunk *ch = st->chunks;

		st->chunks = ch->next;
		ch->next = a->free;
		a->free = ch;
		a->nfree++;
	}
	st->used = 0;
	st->ndgrams = 0;
	st->nbytes = 0;
	st->oldest_ns = 0;
	st->flows = st->flows_tail = NULL;
	st->nflows = 0;
}

/* need bytes of st's current chunk, or of a fresh one; NULL: none free. */
static void *stage_take(struct uw_stage *st, size_t need)
{
	struct uw_arena *a = st->arena;
	struct uw_chunk *ch = st->chunks;
	void *p;

	if (!ch || ch->used + need > a->chunk_size) {
		ch = a->free;
		if (!ch || need > a->chunk_size)
			return NULL;
		a->free = ch->next;
		a->nfree--;
		ch->used = 0;
		ch->next = st->chunks;
		st->chunks = ch;
	}
	p = ch->base + ch->used;
	ch->used += need;
	st->used += need;
	return p;
}

static struct uw_flow *stage_find(struct uw_stage *st, uint32_t bucket, struct uw_sock *s,
				  const struct uw_addr *dest)
{
	for (struct uw_flow *f = st->bucket[bucket]; f; f = f->hash_next)
		if (f->sock == s && uw_addr_equal(&f->dest, dest))
			return f;
	return NULL;
}

/* Give back the last n bytes stage_take() gave. */
static void stage_untake(struct uw_stage *st, size_t n)
{
	st->chunks->used -= n;
	st->used -= n;
}

/* The application's bytes into d: -EFAULT where the kernel would fail. */
static __attribute__((noinline)) int copy_payload_iov(struct uw_dgram *d,
						       const struct iovec *iov, size_t iovlen)
{
	for (size_t i = 0, off = 0; i < iovlen; i++) {
		if (iov[i].iov_len && uw_copy_from_user(d->data + off, iov[i].iov_base,
							iov[i].iov_len))
			return -EFAULT;
		off += iov[i].iov_len;
	}
	return 0;
}

/* One buffer (send, sendto, write) with no loop: a loop here makes
 * stage_append keep its state on the stack. */
static inline int copy_payload(struct uw_dgram *d, const struct iovec *iov, size_t iovlen)
{
	if (iovlen == 1)
		return uw_copy_from_user(d->data, iov->iov_base, iov->iov_len) ? -EFAULT : 0;
	return copy_payload_iov(d, iov, iovlen);
}

/* Append a datagram to its flow in st (a new flow for rec if there is none
 * yet): flow and datagram in one piece, all or nothing. The payload is
 * copied first, so that a fault in it leaves st as it was. */
static struct uw_dgram *stage_append(struct uw_stage *st, struct uw_sock *s,
				     const struct uw_addr *dest, const struct iovec *iov,
				     size_t iovlen, size_t len, struct uw_flowrec *rec,
				     int *err)
{
	uint32_t bucket = (uw_addr_hash(dest) ^ (uint32_t)((uintptr_t)s >> 4)) %
			  UW_FLOW_BUCKETS;
	struct uw_flow *f = stage_find(st, bucket, s, dest);
	size_t dlen = sizeof(struct uw_dgram) + UW_ALIGN8(len);
	size_t flen = f ? 0 : UW_ALIGN8(sizeof(*f));
	struct uw_dgram *d;
	unsigned char *p;

	p = stage_take(st, flen + dlen);
	if (!p) {
		*err = -ENOSPC;
		return NULL;
	}
	d = (struct uw_dgram *)(p + flen);
	if (copy_payload(d, iov, iovlen)) {
		stage_untake(st, flen + dlen);
		*err = -EFAULT;
		return NULL;
	}
	if (!f) {
		f = (struct uw_flow *)p;
		memset(f, 0, sizeof(*f));
		f->sock = s;
		f->dest = *dest;
		f->bucket = bucket;
		f->rec = rec;
		f->cut_ns = rec ? rec->plan.cut_ns : UINT64_MAX;
		f->txtime = rec && rec->plan.mode == UW_PACE_KERNEL;
		f->hash_next = st->bucket[bucket];
		st->bucket[bucket] = f;
		if (st->flows_tail)
			st->flows_tail->next = f;
		else
			st->flows = f;
		st->flows_tail = f;
		st->nflows++;
	}
	d->next = NULL;
	d->len = (uint32_t)len;
	d->due_ns = 0;
	if (f->tail)
		f->tail->next = d;
	else
		f->head = d;
	f->tail = d;
	f->count++;
	f->bytes += len;
	st->ndgrams++;
	st->nbytes += len;
	return d;
}

int uw_stage_add(struct uw_stage *st, struct uw_sock *s, const struct uw_addr *dest,
		 const struct iovec *iov, size_t iovlen, size_t len, uint64_t (*now_ns)(void))
{
	int err;

	if (!stage_append(st, s, dest, iov, iovlen, len, NULL, &err))
		return err;
	if (st->ndgrams == 1)
		st->oldest_ns = now_ns();
	return 0;
}

int uw_stage_add_paced(struct uw_stage *st, struct uw_sock *s, const struct uw_addr *dest,
		       const struct iovec *iov, size_t iovlen, size_t len, uint64_t now,
		       uint64_t due_ns, struct uw_flowrec *rec)
{
	int err;
	struct uw_dgram *d = stage_append(st, s, dest, iov, iovlen, len, rec, &err);

	if (!d)
		return err;
	d->due_ns = due_ns;
	if (st->ndgrams == 1)
		st->oldest_ns = now;
	return 0;
}

/* ---- what can be queued -------------------------------------------------- */

static bool is_v4_mapped(const struct in6_addr *a)
{
	return IN6_IS_ADDR_V4MAPPED(a);
}

/* A plain datagram to a well-formed destination. Anything else (odd flags,
 * control data, bad addresses, oversize) goes to the kernel as it is, so
 * that the application sees exactly the kernel's errno. */
bool uw_msg_queueable(const struct uw_sock *s, const struct uw_msg *m)
{
	uint32_t flags = atomic_load_explicit(&((struct uw_sock *)s)->flags,
					      memory_order_relaxed);
	size_t max = s->family == AF_INET ? UW_MAX_PAYLOAD_V4 : UW_MAX_PAYLOAD_V6;

	if (flags & UW_SOCK_BYPASS)
		return false;
	if (m->flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL))
		return false;
	if (m->len > max || m->iovlen > UW_UIO_MAXIOV || (m->iovlen && !m->iov))
		return false;
	if (m->namelen > sizeof(struct sockaddr_storage))	/* EINVAL */
		return false;
	for (size_t i = 0; i < m->iovlen; i++)
		if (!m->iov[i].iov_base && m->iov[i].iov_len)
			return false;
	if (!m->name)
		return flags & UW_SOCK_CONNECTED;
	if (m->name->sa_family != s->family)
		return false;
	if (s->family == AF_INET) {
		const struct sockaddr_in *in = (const void *)m->name;

		return m->namelen >= sizeof(*in) && in->sin_port &&
		       in->sin_addr.s_addr != htonl(INADDR_BROADCAST);
	} else {
		const struct sockaddr_in6 *in6 = (const void *)m->name;

		/* 24: the RFC 2133 size without sin6_scope_id, which the
		 * kernel accepts too. */
		return m->namelen >= 24 && in6->sin6_port &&
		       !is_v4_mapped(&in6->sin6_addr);
	}
}

/* ---- the core ------------------------------------------------------------ */

int uw_core_init(struct uw_core *c, const struct uw_config *cfg, const struct uw_sys *sys)
{
	const struct uw_backend_ops *ops;
	pthread_condattr_t ca;
	uint64_t delay = (uint64_t)cfg->max_delay_us * UW_NSEC_PER_USEC;
	int err;

	memset(c, 0, sizeof(*c));
	c->cfg = *cfg;
	c->sys = sys;
	uw_stats_reset(&c->stats);
	if (cfg->nrules)
		atomic_store(&c->pace_on, true);
	ops = uw_backend_find(cfg->backend);
	if (!ops)
		return -EINVAL;
	c->check_every = 1;
	/* Aim before the deadline: the flush takes time, and the flush thread
	 * may wake late on a busy machine (hundreds of µs were seen here). A
	 * fifth of the budget, at most 500 µs. */
	c->slack_ns = delay / 5 < 500000 ? delay / 5 : 500000;
	pthread_mutex_init(&c->qlock, NULL);
	pthread_mutex_init(&c->socklist_lock, NULL);
	pthread_mutex_init(&c->flock, NULL);
	uw_held_init(c, 2 * (size_t)cfg->arena_kb * 1024);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	err = uw_arena_init(&c->arena, (size_t)cfg->arena_kb * 1024);
	if (err)
		goto fail;
	uw_stage_init(&c->stage[0], &c->arena);
	uw_stage_init(&c->stage[1], &c->arena);
	c->be.ops = ops;
	c->be.sys = sys;
	c->be.stats = &c->stats;
	c->be.arena = &c->arena;
	err = ops->open(&c->be, cfg);
	if (err)
		goto fail;
	return 0;
fail:
	uw_arena_free(&c->arena);
	return err;
}

void uw_core_destroy(struct uw_core *c)
{
	uw_core_stop_flusher(c);
	if (c->be.ops && c->be.ops->close)
		c->be.ops->close(&c->be);
	uw_arena_free(&c->arena);
	uw_scratch_free(&c->scratch);
	uw_held_free_pool(c);
	free(c->wheel);
	c->wheel = NULL;
}

static void account_runs(struct uw_core *c, struct uw_batch *b)
{
	struct uw_stats *st = &c->stats;

	for (size_t i = 0; i < b->nruns; i++) {
		struct uw_run *r = &b->runs[i];

		uw_stat_add(&st->datagrams_dropped, r->dropped);
		uw_stat_add(&st->datagrams_out, r->nseg - r->dropped - r->held);
		uw_stat_add(&st->bytes_out, r->bytes - r->dropped_bytes - r->held_bytes);
		if (r->held)	/* a full socket: they wait on its own list */
			uw_held_park_run(c, r);
	}
}

/* Without memory for a batch, send datagram by datagram: never drop. */
static void flush_stage_slowly(struct uw_core *c, struct uw_stage *stg)
{
	struct uw_backend pt = c->be;

	pt.ops = &uw_backend_passthrough;
	for (struct uw_flow *f = stg->flows; f; f = f->next) {
		for (struct uw_dgram *d = f->head; d; d = d->next) {
			struct iovec iov = { d->data, d->len };
			struct uw_run r = { .sock = f->sock, .dest = &f->dest, .iov = &iov,
					    .nseg = 1, .seg_size = d->len, .bytes = d->len,
					    .txtime_ns = f->txtime ? d->due_ns : 0 };
			struct uw_group g = { f->sock, &r, 1 };
			struct uw_batch b = { &g, 1, &r, 1, 1, 1, d->len };

			pt.ops->send_batch(&pt, &b);
			account_runs(c, &b);
		}
	}
}

/* Whether s's fd still names s: the kernel's socket cookie, captured when
 * the library met the socket, against the one now behind the number. */
static bool sock_is_there(struct uw_core *c, struct uw_sock *s)
{
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed), saved = errno;
	socklen_t len = sizeof(uint64_t);
	uint64_t cookie = 0;
	bool there;

	if (!s->cookie || !c->sys->getsockopt)
		return true;
	if (fd < 0)
		return false;
	there = !c->sys->getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) ?
		cookie == s->cookie : errno != EBADF && errno != ENOTSOCK && errno != ENOPROTOOPT;
	errno = saved;
	return there;
}

/*
 * Sockets closed or replaced behind the library's back (a raw close(2),
 * closefrom, the number reused by a socket or file it did not see made):
 * their datagrams cannot reach their own socket any more, and are
 * dropped and counted, never written to whatever the number is now. One
 * check per socket and flush. A socket with held datagrams (full) gets
 * the flow's datagrams onto its list, behind them. Flush lock held.
 */
static void drop_gone(struct uw_core *c, struct uw_stage *const *v, size_t n)
{
	uint32_t gen = ++c->verify_gen;

	for (size_t i = 0; i < n; i++) {
		for (struct uw_flow *f = v[i]->flows; f; f = f->next) {
			struct uw_sock *s = f->sock;

			if (!f->head)
				continue;
			if (s->verify_gen != gen) {
				s->verify_gen = gen;
				if (!(uw_sock_flags(s) & UW_SOCK_GONE) && !sock_is_there(c, s))
					uw_sock_set(s, UW_SOCK_GONE);
			}
			if (!(uw_sock_flags(s) & UW_SOCK_GONE)) {
				/* behind its held datagrams: after them */
				if (uw_sock_flags(s) & UW_SOCK_HELD)
					uw_held_take_flow(c, f);
				continue;
			}
			uw_held_forget(c, s);
			uw_stat_add(&c->stats.datagrams_dropped, f->count);
			uw_stat_add(&c->stats.dropped_sock_gone, f->count);
			f->head = f->tail = NULL;
		}
	}
}

/*
 * A socket that had one datagram in each of its last UW_LONELY_FLUSHES
 * flushes gains nothing from the queue (no GSO run, no message beside it
 * in its sendmmsg) and pays a flush for each datagram: its sends go to the
 * kernel at their calls again (UW_SOCK_SYNC) until they come fast. With a
 * backend that sends all sockets in one call, the whole batch counts too:
 * it pays for the flush (the flush thread's wake-up and switch, some
 * 10-20 us here, against ~1.5 us a datagram saved) from UW_CROSS_PAYS
 * datagrams on, whatever the socket's own share. Paced flows are the
 * scheduler's. Flush lock held.
 */
#define UW_LONELY_FLUSHES	8u

static void note_lonely(struct uw_core *c, struct uw_stage *const *v, size_t n)
{
	uint32_t gen = ++c->lonely_gen, total = 0, nsocks = 0;
	bool cross;

	for (size_t i = 0; i < n; i++) {
		for (struct uw_flow *f = v[i]->flows; f; f = f->next) {
			struct uw_sock *s = f->sock;

			if (!f->head)
				continue;
			if (s->lonely_gen != gen) {
				s->lonely_gen = gen;
				s->flush_dgrams = 0;
				nsocks++;
			}
			s->flush_dgrams += f->rec ? 2 : f->count;	/* paced: never */
			total += f->count;
		}
	}
	/* one call for all: the backend does that for this many sockets */
	cross = c->be.ops->cross_socket && nsocks >= c->be.ops->cross_min_socks;
	for (size_t i = 0; i < n; i++) {
		for (struct uw_flow *f = v[i]->flows; f; f = f->next) {
			struct uw_sock *s = f->sock;

			if (!f->head || s->lonely_done == gen)
				continue;
			s->lonely_done = gen;
			if (s->flush_dgrams > 1 || (cross && total >= UW_CROSS_PAYS)) {
				s->lonely_run = 0;
			} else if (++s->lonely_run >= UW_LONELY_FLUSHES) {
				s->lonely_run = 0;
				atomic_store_explicit(&s->sync_last_ns, 0, memory_order_relaxed);
				uw_sock_go_direct(s, UW_DIRECT_LONELY);
				uw_stat_add(&c->stats.lonely_sockets, 1);
			}
		}
	}
}

/* Send the detached stages v[0..n), oldest release first, as one batch.
 * Flush lock held, queue lock not. */
static void flush_stages(struct uw_core *c, struct uw_stage *const *v, size_t n,
			 enum uw_flush_reason why)
{
	struct uw_batch b;
	uint64_t now = c->sys->now_ns(), oldest = UINT64_MAX, used = 0, nbytes = 0;
	uint32_t nflows = 0, ndgrams = 0;

	for (size_t i = 0; i < n; i++) {
		if (v[i]->ndgrams && v[i]->oldest_ns < oldest)
			oldest = v[i]->oldest_ns;
		used += v[i]->used;
		nflows += v[i]->nflows;
		ndgrams += v[i]->ndgrams;
		nbytes += v[i]->nbytes;
	}
	uw_stat_add(&c->stats.flushes[why], 1);
	if (uw_is_flusher)
		uw_stat_add(&c->stats.flushes_by_thread, 1);
	uw_stat_add(&c->stats.batches, 1);
	uw_stats_note_delay(&c->stats, now > oldest ? now - oldest : 0);
	uw_stat_max(&c->stats.arena_high_water, used);
	drop_gone(c, v, n);
	if (c->cfg.sync && c->cfg.step_aside)
		note_lonely(c, v, n);
	if (uw_batch_build_stages(&c->scratch, v, n, &c->be, &b)) {
		uw_warn("out of memory building a batch; sending datagram by datagram");
		for (size_t i = 0; i < n; i++)
			flush_stage_slowly(c, v[i]);
		return;
	}
	for (size_t i = 0; i < b.nruns; i++) {
		if (b.runs[i].nseg > 1) {
			uw_stat_add(&c->stats.gso_runs, 1);
			uw_stat_add(&c->stats.gso_segments, b.runs[i].nseg);
			uw_stat_max(&c->stats.segments_max, b.runs[i].nseg);
		}
		if (b.runs[i].txtime_ns)
			uw_stat_add(&c->stats.txtime_messages, 1);
	}
	uw_stat_add(&c->stats.messages, b.nruns);
	uw_trace(flush, uw_flush_reason_name[why], nflows, ndgrams, nbytes);
	c->be.ops->send_batch(&c->be, &b);
	account_runs(c, &b);
}

static bool is_wheel_stage(const struct uw_core *c, const struct uw_stage *st)
{
	return c->wheel && st >= c->wheel->stages && st < c->wheel->stages + UW_WHEEL_STAGES;
}

/* After flush_stages, queue lock held: counters down, memory back. */
static void finish_stages(struct uw_core *c, struct uw_stage *const *v, size_t n)
{
	uint64_t total = 0;

	if (atomic_load_explicit(&c->pace_on, memory_order_relaxed))
		uw_pace_account(c, v, n, c->sys->now_ns());
	for (size_t i = 0; i < n; i++) {
		for (struct uw_flow *f = v[i]->flows; f; f = f->next) {
			f->sock->queued -= f->count;
			f->sock->qbytes -= f->bytes;
			if (f->rec)
				f->rec->queued -= f->count;
		}
		total += v[i]->ndgrams;
		if (is_wheel_stage(c, v[i]))
			uw_wheel_put(c, v[i]);
		else
			uw_stage_reset(v[i]);	/* its chunks are free again */
	}
	uw_stat_add_locked(&c->queued_total, -total);
}

/* Detached stages, flushed and given back; the locks as uw_core_flush. */
static long flush_detached(struct uw_core *c, struct uw_stage *const *v, size_t n,
			   enum uw_flush_reason why)
{
	long total = 0;

	for (size_t i = 0; i < n; i++)
		total += v[i]->ndgrams;
	if (total)
		flush_stages(c, v, n, why);
	pthread_mutex_lock(&c->qlock);
	finish_stages(c, v, n);
	pthread_mutex_unlock(&c->qlock);
	if (total && c->sys->after_flush)
		c->sys->after_flush(c->sys->now_ns());
	return total;
}

long uw_core_flush(struct uw_core *c, enum uw_flush_reason why)
{
	struct uw_stage *v[UW_WHEEL_STAGES + 1], *stg;
	size_t n = 0;
	long sent = 0;
	int cs;

	if (!core_enter(&cs))
		return 0;
	pthread_mutex_lock(&c->flock);
	pthread_mutex_lock(&c->qlock);
	stg = &c->stage[c->active];
	if (stg->ndgrams) {
		c->active ^= 1;
		v[n++] = stg;
	}
	n += uw_wheel_detach(c, UINT64_MAX, v + n);
	pthread_mutex_unlock(&c->qlock);
	if (n)
		sent = flush_detached(c, v, n, why);
	pthread_mutex_unlock(&c->flock);
	core_leave(cs);
	return sent;
}

/* What is due now: the wheel's stages released by now, and the default
 * stage if it is due; when the wheel flushes anyway, a default stage due
 * within its slack goes along (one batch, and still within its delay). */
long uw_core_flush_due(struct uw_core *c)
{
	struct uw_stage *v[UW_WHEEL_STAGES + 1], *stg;
	enum uw_flush_reason why = UW_FLUSH_PACED, dwhy;
	uint64_t now;
	size_t n;
	long sent = 0;
	int cs;

	if (!core_enter(&cs))
		return 0;
	pthread_mutex_lock(&c->flock);
	pthread_mutex_lock(&c->qlock);
	now = c->sys->now_ns();
	n = uw_wheel_detach(c, now, v);
	stg = &c->stage[c->active];
	if (stg->ndgrams && uw_core_due_ns(c, stg, &dwhy) <= now + (n ? c->slack_ns : 0)) {
		if (!n)
			why = dwhy;
		c->active ^= 1;
		v[n++] = stg;
	}
	pthread_mutex_unlock(&c->qlock);
	if (n)
		sent = flush_detached(c, v, n, why);
	pthread_mutex_unlock(&c->flock);
	core_leave(cs);
	return sent;
}

/*
 * The sender flushes, the flush thread is a backstop (issue 13): a thread
 * that goes to sleep (nanosleep, poll with a timeout, ...) past the time
 * the default stage falls due sends it now, from its own thread, before it
 * sleeps; the flush thread, which then has nothing to do at that time,
 * needs no wake-up for it. A stage due later stays for the datagrams of
 * the next wake. If the flush lock is taken, a flush is under way and the
 * flush thread will see this stage when it is due.
 */
long uw_core_flush_before_sleep(struct uw_core *c, uint64_t wake_ns)
{
	struct uw_stage *v[1], *stg;
	enum uw_flush_reason why;
	long sent = 0;
	int cs;

	if (!atomic_load_explicit(&c->queued_total, memory_order_relaxed) || !core_enter(&cs))
		return 0;
	if (pthread_mutex_trylock(&c->flock)) {
		core_leave(cs);
		return 0;
	}
	pthread_mutex_lock(&c->qlock);
	stg = &c->stage[c->active];
	if (stg->ndgrams && uw_core_due_ns(c, stg, &why) <= wake_ns) {
		c->active ^= 1;
		v[0] = stg;
		pthread_mutex_unlock(&c->qlock);
		sent = flush_detached(c, v, 1, UW_FLUSH_SLEEP);
	} else {
		pthread_mutex_unlock(&c->qlock);
	}
	pthread_mutex_unlock(&c->flock);
	core_leave(cs);
	return sent;
}

void uw_core_flush_sock(struct uw_core *c, struct uw_sock *s, enum uw_flush_reason why)
{
	uint32_t q;
	int cs;

	if (!core_enter(&cs))
		return;
	pthread_mutex_lock(&c->qlock);
	q = s->queued;
	pthread_mutex_unlock(&c->qlock);
	core_leave(cs);
	if (q)
		uw_core_flush(c, why);
}

/* A socket the kernel never bound gets its ephemeral port now, as its first
 * send would have done: getsockname() must show it right after send(). */
static void ensure_bound(struct uw_core *c, struct uw_sock *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int port = 0;

	if (c->sys->getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			port = ((struct sockaddr_in *)&ss)->sin_port;
		else if (ss.ss_family == AF_INET6)
			port = ((struct sockaddr_in6 *)&ss)->sin6_port;
		if (!port) {
			memset(&ss, 0, sizeof(ss));
			ss.ss_family = (sa_family_t)s->family;
			len = s->family == AF_INET ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6);
			c->sys->bind(s->fd, (struct sockaddr *)&ss, len);
		}
	}
	/* Even if this failed, the flush's send binds the socket. */
	uw_sock_set(s, UW_SOCK_BOUND);
}

/*
 * The flush thread may be kept off the CPU by the very threads that send
 * (8 busy senders on 2 cores). Senders therefore look at the clock too, and
 * one that finds the stage past its due time flushes it. The clock is read
 * about every UW_CHECK_WINDOW_NS of sending, not for every datagram: every
 * check_every datagrams, adapted to the rate. qlock held.
 */
#define UW_CHECK_WINDOW_NS	50000u
#define UW_CHECK_MAX_EVERY	64u
/* A paced sender flushes the wheel itself when the flush thread is this
 * late for its first release. */
#define UW_PACE_SENDER_LATE_NS	(4 * UW_PACE_GRAIN_NS)

/* The flush thread is late for the wheel's first release. qlock held. */
static bool wheel_late(const struct uw_core *c, uint64_t now)
{
	uint64_t next = uw_wheel_next_ns(c);

	return next != UINT64_MAX && now >= next + UW_PACE_SENDER_LATE_NS;
}

static bool sender_finds_stage_late(struct uw_core *c, struct uw_stage *stg)
{
	enum uw_flush_reason why;
	uint64_t now, per, every;

	if (++c->since_check < c->check_every)
		return false;
	now = c->sys->now_ns();
	per = c->last_check_ns && now > c->last_check_ns ?
	      (now - c->last_check_ns) / c->since_check : UW_CHECK_WINDOW_NS;
	every = UW_CHECK_WINDOW_NS / (per ? per : 1);	/* datagrams per window */
	c->check_every = every < 1 ? 1 : every > UW_CHECK_MAX_EVERY ? UW_CHECK_MAX_EVERY
								     : (uint32_t)every;
	c->since_check = 0;
	c->last_check_ns = now;
	return (stg->ndgrams && now >= uw_core_due_ns(c, stg, &why)) || wheel_late(c, now);
}

/* qlock held: a new stage's first datagram may be due before the time the
 * flush thread sleeps until. */
static void wake_flusher(struct uw_core *c, uint64_t due)
{
	c->queued_since_tick = true;
	if (!c->flusher_running && !c->flusher_failed)
		uw_core_start_flusher(c);
	else if (due < c->flusher_until) {
		uw_stat_add_locked(&c->stats.flusher_signals, 1);
		pthread_cond_signal(&c->wake);
	}
}

/* The configuration event goes with the first datagram queued while it is
 * enabled: the provider is loaded, and a session's events enabled by
 * lttng-ust's listener thread, only after the library's constructor. */
static void trace_config(struct uw_core *c)
{
	static atomic_bool traced;

	if (uw_trace_on(config) && !atomic_exchange_explicit(&traced, true, memory_order_relaxed))
		uw_trace(config, c->cfg.backend, c->cfg.max_delay_us, c->cfg.interval_us,
			 c->cfg.arena_kb);
}

static void trace_enqueue(struct uw_core *c, struct uw_sock *s, const struct uw_addr *dest,
			  size_t len)
{
	trace_config(c);
	if (uw_trace_on(enqueue)) {
		char d[64];

		uw_addr_format(dest, d, sizeof(d));
		uw_trace(enqueue, atomic_load_explicit(&s->fd, memory_order_relaxed), d,
			 (uint32_t)len);
	}
}

/* Into the default stage (qlock held, the library entered; both are let
 * go here); rec, when pacing is on, keeps the flow's rate estimate. */
/* One datagram more in a stage (qlock held). */
static void count_enqueued(struct uw_core *c, struct uw_sock *s, struct uw_flowrec *rec,
			   size_t len)
{
	s->queued++;
	s->qbytes += len;
	uw_stat_add_locked(&s->n_queued, 1);
	if (rec)
		rec->queued++;
	uw_stat_add_locked(&c->queued_total, 1);
	uw_stat_add_locked(&c->stats.datagrams_in, 1);
	uw_stat_add_locked(&c->stats.bytes_in, len);
}

/* After a datagram was staged: wake the flusher for a new release time
 * (wake) or make sure one runs, leave the core, and flush here if the
 * flusher is late or missing. Returns len. */
static ssize_t enqueued(struct uw_core *c, int cs, struct uw_sock *s, const struct uw_addr *dest,
			size_t len, bool wake, uint64_t wake_at, bool late)
{
	if (wake)
		wake_flusher(c, wake_at);
	else if (!c->flusher_running && !c->flusher_failed)
		uw_core_start_flusher(c);
	pthread_mutex_unlock(&c->qlock);
	core_leave(cs);
	trace_enqueue(c, s, dest, len);
	if (late && c->flusher_failed)
		uw_core_flush(c, UW_FLUSH_DEADLINE);
	else if (late)
		uw_core_flush_due(c);
	return (ssize_t)len;
}

/* Whether a send with flags waits for room on s, as the kernel's would. */
static bool send_blocks(struct uw_core *c, struct uw_sock *s, int flags)
{
	int fl;

	if (flags & MSG_DONTWAIT)
		return false;
	fl = c->sys->fd_flags ? c->sys->fd_flags(atomic_load_explicit(&s->fd,
					memory_order_relaxed)) : 0;
	return fl < 0 || !(fl & O_NONBLOCK);
}

int uw_core_barrier(struct uw_core *c, struct uw_sock *s, int flags)
{
	uw_core_flush_sock(c, s, UW_FLUSH_BARRIER);
	if (!(uw_sock_flags(s) & UW_SOCK_HELD))
		return 0;
	/* the kernel's own answer for a full socket: wait, or EAGAIN */
	return uw_held_drain(c, s, send_blocks(c, s, flags) ? -1 : 0);
}

/* Nothing of this call is queued: the kernel answers it, after the
 * socket's queue (its order), counted as a passthrough call. */
static ssize_t to_kernel(struct uw_core *c, struct uw_sock *s, int flags)
{
	int err = uw_core_barrier(c, s, flags);

	if (err)
		return err;
	uw_stat_add(&c->stats.passthrough_calls, 1);
	return UW_PASS;
}

/* A send of a UW_SOCK_SYNC socket: the kernel's to judge, after the
 * socket's queue; uw_core_sync_done hears the answer. */
/*
 * Whether a synchronous socket's sends come fast enough to queue again:
 * the other side of the lonely rule (note_lonely), with room between the
 * two so that a flow on the edge does not go back and forth. A socket's
 * queue pays from a GSO run of two: sends less than max delay /
 * UW_SYNC_GAP apart. With a backend that sends every socket in one call it
 * also pays from UW_CROSS_PAYS datagrams in a batch, whatever socket they
 * come from: that is judged when the kernel has answered
 * (uw_core_sync_done, process_sends_fast), by datagrams, not calls.
 */
static bool sends_come_fast(struct uw_core *c, uint64_t now, uint64_t last)
{
	return last && now - last < (uint64_t)c->cfg.max_delay_us * 1000 / UW_SYNC_GAP;
}

static ssize_t sync_send(struct uw_core *c, struct uw_sock *s, int flags)
{
	uint64_t now = c->sys->now_ns();
	uint64_t last = atomic_exchange_explicit(&s->sync_last_ns, now, memory_order_relaxed);
	int err = uw_core_barrier(c, s, flags);

	if (err)
		return err;
	if ((uw_sock_flags(s) & UW_SOCK_INTERACTIVE) &&
	    atomic_fetch_add_explicit(&s->sends_since_read, 1, memory_order_relaxed) >=
	    UW_INTERACTIVE_BURST)
		uw_sock_clear(s, UW_SOCK_INTERACTIVE);	/* a stream: it may queue again */
	/* a paced flow's rate is the scheduler's to judge (core/pace.c) */
	atomic_store_explicit(&s->sync_fast, sends_come_fast(c, now, last) ||
			      atomic_load_explicit(&c->pace_on, memory_order_relaxed),
			      memory_order_relaxed);
	uw_sync_sock = s;
	return UW_PASS;
}

/* The payload could not be read (qlock held; let go here). */
static ssize_t faulted(struct uw_core *c, struct uw_sock *s, int cs)
{
	pthread_mutex_unlock(&c->qlock);
	core_leave(cs);
	return to_kernel(c, s, 0);
}

static ssize_t queue_default(struct uw_core *c, struct uw_sock *s, const struct uw_msg *m,
			     const struct uw_addr *dest, struct uw_flowrec *rec, int cs)
{
	struct uw_stage *stg;
	enum uw_flush_reason why;
	bool was_empty, late;
	int err;

	if (s->queued && s->qbytes + m->len > atomic_load_explicit(&s->sndbuf, memory_order_relaxed) &&
	    atomic_load_explicit(&s->sndbuf, memory_order_relaxed)) {
		/* as much as the kernel would hold for the socket: its queue
		 * goes now, and this send is the kernel's to judge (room, a
		 * wait, or EAGAIN), as without the library */
		pthread_mutex_unlock(&c->qlock);
		core_leave(cs);
		uw_core_flush(c, UW_FLUSH_SNDBUF);
		return sync_send(c, s, m->flags);
	}
	for (;;) {
		stg = &c->stage[c->active];
		was_empty = !stg->ndgrams;
		/* the clock only for a stage's first datagram */
		err = rec ? uw_stage_add_paced(stg, s, dest, m->iov, m->iovlen, m->len,
					       was_empty ? c->sys->now_ns() : 0, 0, rec)
			  : uw_stage_add(stg, s, dest, m->iov, m->iovlen, m->len, c->sys->now_ns);
		if (!err)
			break;
		if (err == -EFAULT)
			return faulted(c, s, cs);
		pthread_mutex_unlock(&c->qlock);
		core_leave(cs);
		uw_core_flush(c, UW_FLUSH_ARENA_FULL);
		core_enter(&cs);
		pthread_mutex_lock(&c->qlock);
	}
	count_enqueued(c, s, rec, m->len);
	late = sender_finds_stage_late(c, stg) || c->flusher_failed;
	return enqueued(c, cs, s, dest, m->len, was_empty,
			was_empty ? uw_core_due_ns(c, stg, &why) : 0, late);
}

/* The stage of release time rel: the one rec used last, or the wheel's. */
static struct uw_stage *paced_stage(struct uw_core *c, struct uw_flowrec *rec, uint64_t rel,
				    bool *opened)
{
	struct uw_stage *st = rec->stage;

	*opened = false;
	if (st && st->open && st->gen == rec->stage_gen && st->release_ns == rel)
		return st;
	return uw_wheel_stage(c, rel, opened);
}

/*
 * A datagram of a flow with metrics (pacing on; see core/pace.c): its due
 * time, its release time on its quantum's grid (never before the flow's
 * last one: flow order), into the wheel stage of that release.
 */
static ssize_t send_paced(struct uw_core *c, struct uw_sock *s, const struct uw_msg *m,
			  const struct uw_addr *dest)
{
	struct uw_flowrec *rec;
	struct uw_stage *stg;
	uint64_t now, due, rel;
	bool opened, late;
	int cs;

	core_enter(&cs);
	pthread_mutex_lock(&c->qlock);
	rec = uw_flowrec_find(s, dest);
	if (!rec) {
		struct uw_metrics sm = s->metrics;
		struct uw_flowrec *fresh;

		pthread_mutex_unlock(&c->qlock);
		fresh = uw_flowrec_prepare(c, s, dest, &sm);
		pthread_mutex_lock(&c->qlock);
		rec = fresh ? uw_flowrec_insert(c, fresh, c->sys->now_ns()) : NULL;
	}
	now = c->sys->now_ns();
	if (rec) {
		rec->last_used_ns = now;
		if (now >= rec->replan_ns)
			uw_flowrec_replan(c, rec, now);
	}
	if (!rec || rec->plan.mode == UW_PACE_NONE)
		return queue_default(c, s, m, dest, rec, cs);
	if (rec->plan.mode == UW_PACE_DIRECT) {
		bool queued = rec->queued;

		pthread_mutex_unlock(&c->qlock);
		core_leave(cs);
		if (queued)	/* the flow's own earlier datagrams first */
			uw_core_flush_sock(c, s, UW_FLUSH_BARRIER);
		uw_stat_add(&c->stats.direct_datagrams, 1);
		return UW_PASS;
	}
	due = now + rec->plan.offset_ns;
	if (due < rec->last_due_ns)
		due = rec->last_due_ns;
	rel = (due - rec->plan.lead_ns) / rec->plan.quantum_ns * rec->plan.quantum_ns;
	if (rel < rec->last_release_ns)
		rel = rec->last_release_ns;
	for (;;) {
		int err = -ENOSPC;

		stg = paced_stage(c, rec, rel, &opened);
		if (stg)
			err = uw_stage_add_paced(stg, s, dest, m->iov, m->iovlen, m->len, now,
						 due, rec);
		if (!err)
			break;
		if (err == -EFAULT)
			return faulted(c, s, cs);
		/* no stage or no memory: make room, in order */
		pthread_mutex_unlock(&c->qlock);
		core_leave(cs);
		uw_core_flush(c, UW_FLUSH_ARENA_FULL);
		core_enter(&cs);
		pthread_mutex_lock(&c->qlock);
	}
	rec->stage = stg;
	rec->stage_gen = stg->gen;
	rec->last_release_ns = rel;
	rec->last_due_ns = due;
	count_enqueued(c, s, rec, m->len);
	uw_stat_add_locked(&c->stats.paced_datagrams, 1);
	late = c->flusher_failed || wheel_late(c, now);
	return enqueued(c, cs, s, dest, m->len, opened, rel, late);
}

static bool addr_is_loopback(const struct uw_addr *a)
{
	if (a->u.sa.sa_family == AF_INET)
		return (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127;
	if (a->u.sa.sa_family != AF_INET6)
		return false;
	if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr))
		return a->u.in6.sin6_addr.s6_addr[12] == 127;
	return IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr);
}

/* Loopback datagrams are in the receiver's queue when the kernel's send
 * returns: a process reading what it sent itself must not find them
 * still here. */
static void note_local(struct uw_core *c, struct uw_sock *s, const struct uw_addr *dest)
{
	if (!atomic_load_explicit(&c->local_queued, memory_order_relaxed) &&
	    addr_is_loopback(dest->len ? dest : &s->peer))
		atomic_store_explicit(&c->local_queued, true, memory_order_relaxed);
}

void uw_core_note_read(struct uw_core *c, struct uw_sock *s)
{
	if (!c->cfg.step_aside)
		return;
	atomic_store_explicit(&s->sends_since_read, 0, memory_order_relaxed);
	if (!(uw_sock_flags(s) & UW_SOCK_INTERACTIVE)) {
		uw_sock_set(s, UW_SOCK_INTERACTIVE);
		uw_stat_add(&c->stats.interactive_sockets, 1);
	}
	uw_core_flush_sock(c, s, UW_FLUSH_BARRIER);	/* before the thread waits on it */
}

void uw_core_before_read(struct uw_core *c)
{
	if (atomic_load_explicit(&c->local_queued, memory_order_relaxed) &&
	    atomic_exchange_explicit(&c->local_queued, false, memory_order_relaxed))
		uw_core_flush(c, UW_FLUSH_BARRIER);
}

ssize_t uw_core_send(struct uw_core *c, struct uw_sock *s, const struct uw_msg *m)
{
	struct uw_addr dest;
	uint32_t fl;
	int err, cs;

	if (uw_in_core)		/* a signal handler interrupted the library */
		return UW_PASS;
	if (!uw_msg_queueable(s, m))
		return to_kernel(c, s, m->flags);
	if (atomic_load_explicit(&s->pending_err, memory_order_relaxed)) {
		err = atomic_exchange_explicit(&s->pending_err, 0, memory_order_relaxed);
		if (err)
			return -err;
	}
	fl = uw_sock_flags(s);
	if ((fl & (UW_SOCK_SYNC | UW_SOCK_HELD)) == UW_SOCK_HELD) {
		/* a socket that blocks, its list first: wait, as the kernel's
		 * send would (or EAGAIN for MSG_DONTWAIT), then queue again
		 * (or send at once, if interactive) */
		err = uw_core_barrier(c, s, m->flags);
		if (err)
			return err;
		fl &= ~UW_SOCK_HELD;
	}
	if (fl & (UW_SOCK_SYNC | UW_SOCK_HELD | UW_SOCK_INTERACTIVE) &&
	    ((fl & (UW_SOCK_HELD | UW_SOCK_INTERACTIVE)) || c->cfg.sync))
		return sync_send(c, s, m->flags);
	if (!(uw_sock_flags(s) & UW_SOCK_BOUND))
		ensure_bound(c, s);
	uw_addr_from_sockaddr(&dest, m->name, m->namelen);
	/* sendto() naming the connected peer is the same flow as send(). */
	if (dest.len && (uw_sock_flags(s) & UW_SOCK_CONNECTED) && uw_addr_equal(&dest, &s->peer))
		dest.len = 0;
	note_local(c, s, &dest);
	if (atomic_load_explicit(&c->pace_on, memory_order_relaxed))
		return send_paced(c, s, m, &dest);
	core_enter(&cs);
	pthread_mutex_lock(&c->qlock);
	return queue_default(c, s, m, &dest, NULL, cs);
}

/* ---- fork ---------------------------------------------------------------- */

/*
 * fork() runs these in the forking thread, which holds the library's locks
 * from prepare to parent/child: inside the library all that time, so that
 * a signal handler's send goes to the kernel instead of waiting for a lock
 * its own thread holds.
 */
static __thread bool fork_entered __attribute__((tls_model("initial-exec")));
static __thread int fork_cs __attribute__((tls_model("initial-exec")));

static void fork_leave(void)
{
	if (fork_entered) {
		fork_entered = false;
		core_leave(fork_cs);
	}
}

void uw_core_fork_prepare(struct uw_core *c)
{
	fork_entered = core_enter(&fork_cs);
	pthread_mutex_lock(&c->flock);
	pthread_mutex_lock(&c->qlock);
	pthread_mutex_lock(&c->fds.lock);
}

void uw_core_fork_parent(struct uw_core *c)
{
	pthread_mutex_unlock(&c->fds.lock);
	pthread_mutex_unlock(&c->qlock);
	pthread_mutex_unlock(&c->flock);
	fork_leave();
}

/* The child starts empty: what the parent queued, the parent sends. */
void uw_core_fork_child(struct uw_core *c)
{
	pthread_condattr_t ca;
	int max = atomic_load_explicit(&c->fds.max_fd, memory_order_relaxed);

	for (int fd = 0; fd <= max && fd < c->fds.nslots; fd++) {
		uintptr_t v = atomic_load_explicit(&c->fds.slot[fd], memory_order_relaxed);

		struct uw_sock *s = uw_slot_sock(v);

		if (!s)
			continue;
		s->queued = 0;
		for (uint32_t i = 0; s->recs && i < s->recs->cap; i++)
			if (s->recs->slot[i])
				s->recs->slot[i]->queued = 0;
	}
	uw_stage_reset(&c->stage[0]);
	uw_stage_reset(&c->stage[1]);
	if (c->wheel) {
		struct uw_stage *v[UW_WHEEL_STAGES];
		size_t n = uw_wheel_detach(c, UINT64_MAX, v);

		for (size_t i = 0; i < n; i++)
			uw_wheel_put(c, v[i]);
	}
	atomic_store(&c->queued_total, 0);
	uw_held_fork_child(c);
	uw_stats_reset(&c->stats);
	if (c->be.ops && c->be.ops->fork_child)
		c->be.ops->fork_child(&c->be);
	c->flusher_running = false;
	c->flusher_until = 0;
	c->flusher_failed = false;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_unlock(&c->fds.lock);
	pthread_mutex_unlock(&c->qlock);
	pthread_mutex_unlock(&c->flock);
	fork_leave();
}
