/* SPDX-License-Identifier: MIT */
/*
 * Per-fd state: a flat array indexed by fd, so that a send on a file, a pipe
 * or a TCP socket costs one load before it reaches the real call. A slot is
 * UW_FD_UNKNOWN (never classified), UW_FD_FOREIGN (not a socket),
 * UW_FD_OTHER_SOCK (a socket, not UDP), or a struct uw_sock shared by
 * reference among dup'ed fds.
 *
 * Socket objects are never returned to malloc: a closed one goes on a free
 * list and is reused, so a thread racing a close() never touches freed
 * memory (the kernel has the same race on fd numbers, by design).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uw.h"

int uw_fdtable_init(struct uw_fdtable *t, int nslots)
{
	memset(t, 0, sizeof(*t));
	/* calloc of a large table is a lazily-zeroed mapping: untouched pages
	 * cost no resident memory. */
	t->slot = calloc((size_t)nslots, sizeof(*t->slot));
	if (!t->slot)
		return -ENOMEM;
	t->nslots = nslots;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

static _Atomic uint32_t uw_sock_ids;

struct uw_sock *uw_sock_new(struct uw_fdtable *t, int fd, int family)
{
	struct uw_sock *s;

	pthread_mutex_lock(&t->lock);
	s = t->free_list;
	if (s)
		t->free_list = s->next_free;
	pthread_mutex_unlock(&t->lock);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
	} else {
		memset(s, 0, sizeof(*s));
	}
	pthread_mutex_init(&s->hold_lock, NULL);
	atomic_store_explicit(&s->fd, fd, memory_order_relaxed);
	atomic_store_explicit(&s->flags, UW_SOCK_SYNC, memory_order_relaxed);
	s->family = family;
	s->id = atomic_fetch_add_explicit(&uw_sock_ids, 1, memory_order_relaxed) + 1;
	return s;
}

static void note_fd(struct uw_fdtable *t, int fd)
{
	int cur = atomic_load_explicit(&t->max_fd, memory_order_relaxed);

	while (fd > cur &&
	       !atomic_compare_exchange_weak_explicit(&t->max_fd, &cur, fd, memory_order_relaxed,
						      memory_order_relaxed))
		;
}


struct uw_sock *uw_fdtable_install(struct uw_fdtable *t, int fd, struct uw_sock *s)
{
	uintptr_t old;

	if ((unsigned)fd >= (unsigned)t->nslots)
		return NULL;
	pthread_mutex_lock(&t->lock);
	if (s) {
		s->refs++;
		note_fd(t, fd);
	}
	old = atomic_exchange_explicit(&t->slot[fd], s ? (uintptr_t)s : UW_FD_UNKNOWN,
				       memory_order_acq_rel);
	pthread_mutex_unlock(&t->lock);
	return uw_slot_sock(old);
}

void uw_fdtable_mark_foreign(struct uw_fdtable *t, int fd, uintptr_t what)
{
	uintptr_t expect = UW_FD_UNKNOWN;

	if ((unsigned)fd < (unsigned)t->nslots)
		atomic_compare_exchange_strong_explicit(&t->slot[fd], &expect, what,
							memory_order_acq_rel,
							memory_order_relaxed);
}

struct uw_sock *uw_fdtable_adopt(struct uw_fdtable *t, int fd, struct uw_sock *s)
{
	uintptr_t v;

	if ((unsigned)fd >= (unsigned)t->nslots)
		return NULL;
	pthread_mutex_lock(&t->lock);
	v = atomic_load_explicit(&t->slot[fd], memory_order_relaxed);
	if (v == UW_FD_UNKNOWN) {
		s->refs++;
		note_fd(t, fd);
		atomic_store_explicit(&t->slot[fd], (uintptr_t)s, memory_order_release);
		v = (uintptr_t)s;
	}
	pthread_mutex_unlock(&t->lock);
	return uw_slot_sock(v);
}

void uw_sock_discard(struct uw_fdtable *t, struct uw_sock *s)
{
	pthread_mutex_lock(&t->lock);
	s->next_free = t->free_list;
	t->free_list = s;
	pthread_mutex_unlock(&t->lock);
}

/* The last reference: the release hook runs with no lock held (it may
 * flush), while nobody can reach s (no fd names it, not yet reusable). */
bool uw_sock_put(struct uw_fdtable *t, struct uw_sock *s)
{
	bool last;

	pthread_mutex_lock(&t->lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&t->lock);
	if (!last)
		return false;
	if (t->release)
		t->release(s, t->release_ctx);
	pthread_mutex_lock(&t->lock);
	s->next_free = t->free_list;
	t->free_list = s;
	pthread_mutex_unlock(&t->lock);
	return true;
}

int uw_fdtable_other_fd(struct uw_fdtable *t, struct uw_sock *s, int not_fd)
{
	int max = atomic_load_explicit(&t->max_fd, memory_order_relaxed);

	for (int fd = 0; fd <= max && fd < t->nslots; fd++)
		if (fd != not_fd &&
		    atomic_load_explicit(&t->slot[fd], memory_order_acquire) == (uintptr_t)s)
			return fd;
	return -1;
}
