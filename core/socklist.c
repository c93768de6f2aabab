/* SPDX-License-Identifier: MIT */
/*
 * Each socket's mode, for the stats' socket_list: whether its sends are
 * queued, go to the kernel at their calls (direct: its first sends, sends
 * that never came faster than half the max delay since, sends after a
 * kernel error, or a socket whose batches saved nothing), because the
 * process reads it (interactive), or wait on its held list (held); and
 * how many of its datagrams went each way (bypass: UDP_CORK, its own
 * UDP_SEGMENT or shutdown, all to the kernel; gone: its fd was closed
 * behind the library's back). Open sockets are read from the
 * fd table when the stats are written; a socket's last state is kept when
 * it is closed (the last UW_SOCKLIST_CLOSED of them), so that a process
 * that closes its sockets before it exits still shows them.
 *
 * Only atomics of a socket are read (flags, counters): a socket is never
 * freed, but its other fields change under locks the stats do not take.
 */
#include <stdio.h>

#include "uw.h"

static void rec_of(struct uw_sock *s, int fd, struct uw_sock_rec *r)
{
	r->fd = fd;
	r->id = s->id;
	r->flags = uw_sock_flags(s);
	r->why = atomic_load_explicit(&s->direct_why, memory_order_relaxed);
	r->queued = atomic_load_explicit(&s->n_queued, memory_order_relaxed);
	r->direct = atomic_load_explicit(&s->n_direct, memory_order_relaxed);
}

void uw_socklist_closed(struct uw_core *c, struct uw_sock *s)
{
	struct uw_sock_rec r;
	bool entered;
	int cs;

	rec_of(s, atomic_load_explicit(&s->fd, memory_order_relaxed), &r);
	if (!r.queued && !r.direct)
		return;			/* never sent: nothing to show */
	entered = uw_core_enter(&cs);	/* a signal's stats wait until unlocked */
	pthread_mutex_lock(&c->socklist_lock);
	c->closed[c->nclosed++ % UW_SOCKLIST_CLOSED] = r;
	pthread_mutex_unlock(&c->socklist_lock);
	if (entered)
		uw_core_leave(cs);
}

static const char *mode_of(const struct uw_core *c, const struct uw_sock_rec *r)
{
	static const char *const why[] = { "direct-first", "direct-error", "direct-lonely" };

	if (r->flags & UW_SOCK_GONE)
		return "gone";		/* closed behind the library's back */
	if (r->flags & UW_SOCK_INTERACTIVE)
		return "interactive";
	if (r->flags & UW_SOCK_HELD)
		return "held";
	if (r->flags & UW_SOCK_BYPASS)
		return "bypass";
	if ((r->flags & UW_SOCK_SYNC) && c->cfg.sync) {
		/* still direct after its first sends: they never came fast */
		if (r->why == UW_DIRECT_FIRST && r->direct > 1)
			return "direct-slow";
		return r->why < UW_ARRAY_SIZE(why) ? why[r->why] : "direct";
	}
	return "queued";
}

static int rec_json(const struct uw_core *c, const struct uw_sock_rec *r, bool open,
		    bool first, char *buf, size_t len)
{
	int w = snprintf(buf, len, "%s{\"fd\": %d, \"id\": %u, \"open\": %s, \"mode\": \"%s\", "
			 "\"datagrams_queued\": %llu, \"datagrams_direct\": %llu}",
			 first ? "" : ", ", r->fd, r->id, open ? "true" : "false",
			 mode_of(c, r), (unsigned long long)r->queued,
			 (unsigned long long)r->direct);

	return w < 0 || (size_t)w >= len ? 0 : w;
}

int uw_socklist_json(struct uw_core *c, char *buf, size_t len)
{
	const size_t tail = 2;			/* "]" and its NUL */
	int maxfd = atomic_load_explicit(&c->fds.max_fd, memory_order_relaxed);
	size_t n;
	bool first = true, entered;
	int w, cs;

	w = snprintf(buf, len, "\"socket_list\": [");
	if (w < 0 || (size_t)w + tail > len)
		return 0;
	n = (size_t)w;
	for (int fd = 0; fd <= maxfd && fd < c->fds.nslots; fd++) {
		struct uw_sock *s = uw_slot_sock(uw_fdtable_peek(&c->fds, fd));
		struct uw_sock_rec r;

		if (!s || atomic_load_explicit(&s->fd, memory_order_relaxed) != fd)
			continue;	/* not ours, or a dup of one listed */
		rec_of(s, fd, &r);
		if (!r.queued && !r.direct)
			continue;
		w = rec_json(c, &r, true, first, buf + n, len - n - tail);
		if (!w)
			break;
		n += (size_t)w;
		first = false;
	}
	entered = uw_core_enter(&cs);
	pthread_mutex_lock(&c->socklist_lock);
	for (uint64_t i = c->nclosed > UW_SOCKLIST_CLOSED ? c->nclosed - UW_SOCKLIST_CLOSED : 0;
	     i < c->nclosed; i++) {
		w = rec_json(c, &c->closed[i % UW_SOCKLIST_CLOSED], false, first, buf + n,
			     len - n - tail);
		if (!w)
			break;
		n += (size_t)w;
		first = false;
	}
	pthread_mutex_unlock(&c->socklist_lock);
	if (entered)
		uw_core_leave(cs);
	buf[n++] = ']';
	buf[n] = '\0';
	return (int)n;
}
