/* SPDX-License-Identifier: MIT */
/* The preload edge: the real libc functions, the process-wide core, and
 * the few helpers every interposer uses. */
#ifndef UW_PRELOAD_H
#define UW_PRELOAD_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "uw.h"

#define UW_EXPORT __attribute__((visibility("default")))

struct uw_real {
#define UW_SYSCALL(ret, name, params) ret (*name) params;
#include "syscalls.def"
#undef UW_SYSCALL
};

extern struct uw_real real;
extern struct uw_core uw_core;

/* True once the library is initialised and active: real.* is bound either
 * way after the first call. */
extern _Atomic bool uw_active;
bool uw_on_slow(void);

static inline bool uw_on(void)
{
	if (__builtin_expect(atomic_load_explicit(&uw_active, memory_order_acquire), 1))
		return true;
	return uw_on_slow();
}
void uw_bind_real(void);

/* The socket state of fd if it is a UDP socket the library queues for,
 * classifying fds it did not see created. NULL: hand the call on. */
struct uw_sock *uw_classify(int fd);

void uw_order_barrier(void);

static inline struct uw_sock *uw_fd_lookup(int fd, bool sending)
{
	uintptr_t v;

	if (!uw_on())
		return NULL;
	v = uw_fdtable_peek(&uw_core.fds, fd);
	if (v == UW_FD_FOREIGN)
		return NULL;
	if (uw_slot_sock(v))
		return uw_slot_sock(v);
	if (v == UW_FD_UNKNOWN) {
		struct uw_sock *s = uw_classify(fd);

		if (s)
			return s;
		v = uw_fdtable_peek(&uw_core.fds, fd);
	}
	if (sending && v == UW_FD_OTHER_SOCK)
		uw_order_barrier();
	return NULL;
}

/* For calls about the fd (connect, setsockopt...). */
static inline struct uw_sock *uw_fd_sock(int fd)
{
	return uw_fd_lookup(fd, false);
}

/* For sends: a message on another socket (a TCP control connection, a
 * Unix socket) never overtakes the datagrams queued before it. */
static inline struct uw_sock *uw_send_sock(int fd)
{
	return uw_fd_lookup(fd, true);
}

/* -errno → -1 with errno; success → the result with the caller's errno. */
static inline ssize_t uw_ret(ssize_t rc, int saved_errno)
{
	if (rc < 0) {
		errno = (int)-rc;
		return -1;
	}
	errno = saved_errno;
	return rc;
}

void uw_sync_peer(struct uw_sock *s);
/* The stats JSON with the socket list (preload/process.c). */
int uw_stats_full_json(char *buf, size_t len);
int uw_metrics_from_user(int opt, const void *val, socklen_t len, struct uw_metrics *m);
void uw_fd_closing(int fd);
void uw_fd_dup(int oldfd, int newfd);
void uw_fd_fresh(int fd);
void uw_process_exit(enum uw_flush_reason why);
void uw_deactivate(void);
void uw_stats_note_owner(void);
void uw_live_publish(uint64_t now_ns);
void uw_live_close(void);
void uw_live_after_fork_child(void);
void uw_trace_load(enum uw_trace_mode mode);
void uw_signals_init(void);

#endif
