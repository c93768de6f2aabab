/* SPDX-License-Identifier: MIT */
/*
 * Process life cycle: every way out of the process, or out of its image,
 * sends what is queued first (design §3.5): exit() and a return from main
 * (the destructor), _exit()/_Exit(), execve() and its family, and fork()
 * (the parent flushes; the child starts empty, see uw_core_fork_child).
 * The stats file is written at exit.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"
#include "udpweave.h"

/* The process whose stats path is the plain one: the first process of the
 * tree that loaded the library with a path without %p. It is named in the
 * environment its children inherit, so that a forked child writes to
 * path.PID even after it exec'ed (and its new image loaded us afresh). */
#define UW_STATS_OWNER_VAR "UDPWEAVE_STATS_OWNER"
static pid_t stats_owner;

void uw_stats_note_owner(void)
{
	const char *owner = getenv(UW_STATS_OWNER_VAR);
	char pid[16];

	if (!uw_core.cfg.stats_path[0] || strstr(uw_core.cfg.stats_path, "%p"))
		return;
	if (owner && *owner) {
		stats_owner = (pid_t)atoi(owner);
		return;
	}
	stats_owner = getpid();
	snprintf(pid, sizeof(pid), "%d", (int)stats_owner);
	setenv(UW_STATS_OWNER_VAR, pid, 0);
}

/* The path with %p replaced by the pid; a forked child without %p in the
 * path writes to path.PID, so that it does not overwrite its parent's. */
static int stats_path(char *out, size_t len)
{
	const char *p = uw_core.cfg.stats_path;
	pid_t pid = getpid();
	size_t n = 0;
	bool had_pid = false;
	int w;

	for (; *p && n + 1 < len; p++) {
		if (p[0] == '%' && p[1] == 'p') {
			w = snprintf(out + n, len - n, "%d", (int)pid);
			if (w < 0 || (size_t)w >= len - n)
				return -ENAMETOOLONG;
			n += (size_t)w;
			p++;
			had_pid = true;
			continue;
		}
		out[n++] = *p;
	}
	if (*p)
		return -ENAMETOOLONG;
	out[n] = '\0';
	if (!had_pid && stats_owner && stats_owner != pid) {
		w = snprintf(out + n, len - n, ".%d", (int)pid);
		if (w < 0 || (size_t)w >= len - n)
			return -ENAMETOOLONG;
	}
	return 0;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = real.write(fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		len -= (size_t)w;
	}
}

/* A regular file (or nothing, or a symlink planted there) is replaced
 * atomically by a private temporary file, created exclusively and renamed
 * over the path: never written through a link. A character device or a
 * FIFO (/dev/null, a pipe a collector reads) is written to in place,
 * without following a link and without blocking; anything else is refused.
 * Returns 0 or -errno. */
static int replace_file(const char *path, const char *json, size_t n)
{
	char tmp[PATH_MAX + 32];
	struct stat st;
	bool exists = lstat(path, &st) == 0;
	int fd;

	if (exists && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
		fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		write_all(fd, json, n);
		close(fd);
		return 0;
	}
	if (exists && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
		return S_ISDIR(st.st_mode) ? -EISDIR : -EEXIST;	/* stays as it is */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	write_all(fd, json, n);
	close(fd);
	if (rename(tmp, path)) {
		int err = -errno;

		unlink(tmp);
		return err;
	}
	return 0;
}

/* uw_stats_json with the socket list spliced in before its last brace, as
 * much of the list as fits (none if nothing does). */
int uw_stats_full_json(char *buf, size_t len)
{
	int n = uw_stats_json(&uw_core.stats, uw_core.cfg.backend, buf, len), w;

	if (n < 2 || buf[n - 2] != '}' || buf[n - 1] != '\n' || len - (size_t)n < 8)
		return n;
	memcpy(buf + n - 2, ", ", 2);
	w = uw_socklist_json(&uw_core, buf + n, len - (size_t)n - 3);
	if (!w) {
		memcpy(buf + n - 2, "}\n", 2);
		return n;
	}
	n += w;
	memcpy(buf + n, "}\n", 3);	/* and the NUL */
	return n + 2;
}

static void write_stats(void)
{
	char json[8192], path[PATH_MAX];
	int n, err, saved = errno;

	if (!uw_core.cfg.stats_path[0])
		return;
	n = uw_stats_full_json(json, sizeof(json));
	if (n < 0)
		goto out;
	if (!strcmp(uw_core.cfg.stats_path, "stderr")) {
		write_all(STDERR_FILENO, json, (size_t)n);
		goto out;
	}
	err = stats_path(path, sizeof(path));
	if (!err)
		err = replace_file(path, json, (size_t)n);
	if (err)
		uw_warn("cannot write stats to %s: %s", path, strerror(-err));
out:
	errno = saved;
}

void uw_process_exit(enum uw_flush_reason why)
{
	if (!uw_on())
		return;
	uw_core_flush(&uw_core, why);
	uw_held_exit(&uw_core, UW_HELD_EXIT_MS);
	write_stats();
	uw_live_close();
}

/* exit() and a return from main: the application's atexit handlers and
 * destructors have run (we are preloaded, so finalised last). Later sends
 * go straight to the kernel. */
__attribute__((destructor)) static void uw_destructor(void)
{
	if (!uw_on())
		return;
	uw_core_flush(&uw_core, UW_FLUSH_EXIT);
	uw_held_exit(&uw_core, UW_HELD_EXIT_MS);
	write_stats();
	uw_live_close();
	uw_deactivate();
}

UW_EXPORT void _exit(int status)
{
	uw_bind_real();
	uw_process_exit(UW_FLUSH_EXIT);
	real._exit(status);
	__builtin_unreachable();
}

UW_EXPORT void _Exit(int status)
{
	uw_bind_real();
	uw_process_exit(UW_FLUSH_EXIT);
	real._Exit(status);
	__builtin_unreachable();
}

UW_EXPORT pid_t fork(void)
{
	uw_bind_real();
	if (uw_on())
		uw_core_flush(&uw_core, UW_FLUSH_FORK);
	return real.fork();
}

static void before_exec(void)
{
	int saved = errno;

	uw_bind_real();
	if (uw_on()) {
		uw_core_flush(&uw_core, UW_FLUSH_EXEC);
		uw_live_close();
	}
	errno = saved;
}

UW_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	before_exec();
	return real.execve(path, argv, envp);
}

UW_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		       int flags)
{
	before_exec();
	return real.execveat(dirfd, path, argv, envp, flags);
}

UW_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	before_exec();
	return real.fexecve(fd, argv, envp);
}

UW_EXPORT int execv(const char *path, char *const argv[])
{
	before_exec();
	return real.execv(path, argv);
}

UW_EXPORT int execvp(const char *file, char *const argv[])
{
	before_exec();
	return real.execvp(file, argv);
}

UW_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	before_exec();
	return real.execvpe(file, argv, envp);
}

/* The list forms gather their arguments and take the vector path (glibc's
 * own would reach execve internally, past the interposer). */
static size_t count_args(va_list ap)
{
	size_t n = 1;	/* arg0 */
	va_list c;

	va_copy(c, ap);
	while (va_arg(c, const char *))
		n++;
	va_end(c);
	return n;
}

static void fill_args(char **argv, size_t n, const char *arg0, va_list ap)
{
	argv[0] = (char *)arg0;
	for (size_t i = 1; i <= n; i++)	/* up to and with the NULL */
		argv[i] = va_arg(ap, char *);
}

/* The vector call a list form amounts to; execle's envp follows the NULL. */
static int exec_list(const char *path, const char *arg, va_list ap,
		     int (*vec)(const char *, char *const[]), bool with_env)
{
	size_t n = count_args(ap);
	char *argv[n + 1];

	fill_args(argv, n, arg, ap);
	if (with_env)
		return execve(path, argv, va_arg(ap, char *const *));
	return vec(path, argv);
}

UW_EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	int r;

	va_start(ap, arg);
	r = exec_list(path, arg, ap, execv, false);
	va_end(ap);
	return r;
}

UW_EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	int r;

	va_start(ap, arg);
	r = exec_list(file, arg, ap, execvp, false);
	va_end(ap);
	return r;
}

UW_EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	int r;

	va_start(ap, arg);
	r = exec_list(path, arg, ap, NULL, true);
	va_end(ap);
	return r;
}

/* ---- the public API (include/udpweave.h) ----------------------------- */

UW_EXPORT long uw_flush(void)
{
	if (!uw_on()) {
		errno = ENODEV;
		return -1;
	}
	return uw_core_flush(&uw_core, UW_FLUSH_EXPLICIT);
}

UW_EXPORT int uw_get_stats(char *buf, size_t len)
{
	int n;

	if (!uw_on()) {
		errno = ENODEV;
		return -1;
	}
	n = uw_stats_full_json(buf, len);
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

/* The metrics calls: on a UDP socket of ours, what setsockopt and
 * getsockopt at SOL_UDPWEAVE do; otherwise EBADF or ENOTSOCK. */
static struct uw_sock *metrics_sock(int fd)
{
	struct uw_sock *s;

	uw_bind_real();
	if (!uw_on()) {
		errno = ENODEV;
		return NULL;
	}
	s = uw_fd_sock(fd);
	if (!s)
		errno = real.fcntl(fd, F_GETFD) < 0 ? EBADF : ENOTSOCK;
	return s;
}

UW_EXPORT int uw_set_metrics(int fd, const struct udpweave_metrics *m)
{
	struct uw_sock *s = metrics_sock(fd);
	struct uw_metrics v;
	int saved = errno, err;

	if (!s)
		return -1;
	err = uw_metrics_from_user(UDPWEAVE_METRICS, m, sizeof(*m), &v);
	if (!err)
		uw_core_set_metrics(&uw_core, s, &v);
	return (int)uw_ret(err, saved);
}

UW_EXPORT int uw_get_metrics(int fd, struct udpweave_metrics *m)
{
	struct uw_sock *s = metrics_sock(fd);

	if (!s)
		return -1;
	if (!m) {
		errno = EFAULT;
		return -1;
	}
	uw_core_get_metrics(&uw_core, s, m);
	return 0;
}
