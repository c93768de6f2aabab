/* SPDX-License-Identifier: MIT */
/*
 * Calls that make fds. An fd number is not an identity: when one of these
 * returns a number the library still holds as a socket of its own, that
 * socket was closed behind its back (a raw close(2), a library's closefrom
 * the library did not see), and the entry goes before the application
 * can use the new fd (uw_fd_fresh). The socket's identity is checked
 * again at every flush (core/queue.c, drop_gone) for what no interposer
 * sees.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "preload.h"

static int fresh(int fd)
{
	if (fd >= 0)
		uw_fd_fresh(fd);
	return fd;
}

static int fresh_pair(int rc, const int fds[2])
{
	if (!rc) {
		uw_fd_fresh(fds[0]);
		uw_fd_fresh(fds[1]);
	}
	return rc;
}

/* The mode argument exists with O_CREAT and O_TMPFILE only. */
static mode_t open_mode(int flags, va_list ap)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		return va_arg(ap, mode_t);
	return 0;
}

UW_EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	uw_bind_real();
	return fresh(real.open(path, flags, mode));
}

UW_EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

UW_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = open_mode(flags, ap);
	va_end(ap);
	uw_bind_real();
	return fresh(real.openat(dirfd, path, flags, mode));
}

UW_EXPORT int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

UW_EXPORT int creat(const char *path, mode_t mode)
{
	uw_bind_real();
	return fresh(real.creat(path, mode));
}

UW_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	uw_bind_real();
	return fresh(real.accept(fd, addr, len));
}

UW_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	uw_bind_real();
	return fresh(real.accept4(fd, addr, len, flags));
}

UW_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	uw_bind_real();
	return fresh_pair(real.socketpair(domain, type, protocol, sv), sv);
}

UW_EXPORT int pipe(int fds[2])
{
	uw_bind_real();
	return fresh_pair(real.pipe(fds), fds);
}

UW_EXPORT int pipe2(int fds[2], int flags)
{
	uw_bind_real();
	return fresh_pair(real.pipe2(fds, flags), fds);
}

UW_EXPORT int eventfd(unsigned int initval, int flags)
{
	uw_bind_real();
	return fresh(real.eventfd(initval, flags));
}

UW_EXPORT int epoll_create(int size)
{
	uw_bind_real();
	return fresh(real.epoll_create(size));
}

UW_EXPORT int epoll_create1(int flags)
{
	uw_bind_real();
	return fresh(real.epoll_create1(flags));
}

UW_EXPORT int timerfd_create(int clockid, int flags)
{
	uw_bind_real();
	return fresh(real.timerfd_create(clockid, flags));
}

UW_EXPORT int signalfd(int fd, const sigset_t *mask, int flags)
{
	uw_bind_real();
	return fresh(real.signalfd(fd, mask, flags));
}

UW_EXPORT int memfd_create(const char *name, unsigned int flags)
{
	uw_bind_real();
	return fresh(real.memfd_create(name, flags));
}

UW_EXPORT int inotify_init1(int flags)
{
	uw_bind_real();
	return fresh(real.inotify_init1(flags));
}

/* closefrom() closes with close_range(2) inside libc: the sockets of ours
 * among them are flushed and forgotten first, as by close(). */
UW_EXPORT void closefrom(int lowfd)
{
	uw_bind_real();
	if (uw_on() && lowfd >= 0) {
		int max = atomic_load(&uw_core.fds.max_fd);

		for (int fd = lowfd; fd <= max; fd++)
			uw_fd_closing(fd);
	}
	real.closefrom(lowfd);
}
