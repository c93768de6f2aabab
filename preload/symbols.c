/* SPDX-License-Identifier: MIT */
/*
 * Binding the real libc functions and initialising the library, both
 * lazily and once: an interposer may run before our constructor (another
 * library's constructor sending a datagram), and until initialisation is
 * complete every call is handed straight on.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "egress.h"
#include "preload.h"
#include "trace.h"

struct uw_real real;
struct uw_core uw_core;

static pthread_once_t bind_once = PTHREAD_ONCE_INIT;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
_Atomic bool uw_active;
static __thread bool uw_initialising;
extern char **environ;

static void bind_all(void)
{
#define UW_SYSCALL(ret, name, params) \
	real.name = (ret (*) params)dlsym(RTLD_NEXT, #name);
#include "syscalls.def"
#undef UW_SYSCALL
	/* glibc-private alias: fall back to the public entry point. */
	if (!real.__sendmmsg)
		real.__sendmmsg = real.sendmmsg;
	if (!real.fcntl64)
		real.fcntl64 = real.fcntl;
}

void uw_bind_real(void)
{
	pthread_once(&bind_once, bind_all);
}

/* ---- what the core may call ------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void log_to_stderr(const char *line, size_t len)
{
	int saved = errno;

	if (real.write(STDERR_FILENO, line, len) < 0)
		(void)0;
	errno = saved;
}

/* In the flush thread. With UDPWEAVE_RT_PRIORITY it runs SCHED_FIFO, so
 * that busy application threads cannot make it late for a deadline;
 * permitted with CAP_SYS_NICE or an RLIMIT_RTPRIO, else one line and
 * normal priority. */
static void flusher_setup(void)
{
	struct sched_param sp = { .sched_priority = (int)uw_core.cfg.rt_priority };
	int err;

	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);	/* wake on time, not 50 µs late */
	pthread_setname_np(pthread_self(), "udpweave");
	if (!sp.sched_priority)
		return;
	err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (err)
		uw_warn("cannot run the flush thread at SCHED_FIFO priority %d (%s); "
			"normal priority", sp.sched_priority, strerror(err));
}

static int real_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	return real.sendmmsg(fd, v, n, flags);
}

static ssize_t real_sendmsg(int fd, const struct msghdr *m, int flags)
{
	return real.sendmsg(fd, m, flags);
}

static int real_socket(int d, int t, int p)
{
	return real.socket(d, t, p);
}

static int real_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return real.connect(fd, sa, len);
}

static int real_close(int fd)
{
	return real.close(fd);
}

static int real_fd_flags(int fd)
{
	return real.fcntl(fd, F_GETFL);
}

static int real_getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	return real.getsockopt(fd, level, opt, val, len);
}

static int real_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	return real.bind(fd, sa, len);
}

static ssize_t real_sendto(int fd, const void *buf, size_t len, int flags,
			   const struct sockaddr *to, socklen_t tolen)
{
	return real.sendto(fd, buf, len, flags, to, tolen);
}

static int real_nanosleep(const struct timespec *req, struct timespec *rem)
{
	return real.nanosleep(req, rem);
}

static int real_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return real.poll(fds, n, timeout);
}

static int real_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	return real.setsockopt(fd, level, opt, val, len);
}

/* The netlink socket of egress_paces() is the library's own: made and
 * closed with the real calls (a sanitizer in front sees neither), never
 * classified. */
static int real_socket_nl(int d, int t, int p)
{
	return real.socket(d, t, p);
}

static ssize_t real_sendto_nl(int fd, const void *buf, size_t len, int flags,
			      const struct sockaddr *to, socklen_t tolen)
{
	return real.sendto(fd, buf, len, flags, to, tolen);
}

static int real_close_nl(int fd)
{
	return real.close(fd);
}

static ssize_t real_recv(int fd, void *buf, size_t len, int flags)
{
	return recv(fd, buf, len, flags);	/* not interposed */
}

/*
 * The egress qdisc toward dest: does it release by departure time (fq),
 * is it a shaper (tbf, htb...)? Asked of rtnetlink once per address;
 * answers are kept a few seconds (a qdisc is rarely changed under a
 * running stream).
 */
#define EGRESS_CACHE	16
#define EGRESS_TTL_NS	(5ull * 1000000000ull)
#define EGRESS_FQ	1
#define EGRESS_SHAPER	2

static struct {
	struct uw_addr key;
	int answer;			/* EGRESS_* bits, or -errno */
	uint64_t expiry_ns;
} egress_cache[EGRESS_CACHE];
static unsigned int egress_next;
static pthread_mutex_t egress_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct uw_nl_ops egress_ops = {
	.socket = real_socket_nl, .sendto = real_sendto_nl, .recv = real_recv,
	.close = real_close_nl,
};

static int egress_query(const struct uw_addr *dest)
{
	struct uw_addr key = *dest;
	struct uw_egress e;
	uint64_t now = mono_ns();
	int saved = errno, answer;

	if (key.u.sa.sa_family == AF_INET)
		key.u.in.sin_port = 0;
	else
		key.u.in6.sin6_port = 0;
	pthread_mutex_lock(&egress_lock);
	for (unsigned int i = 0; i < EGRESS_CACHE; i++) {
		if (egress_cache[i].expiry_ns > now && uw_addr_equal(&egress_cache[i].key, &key)) {
			answer = egress_cache[i].answer;
			pthread_mutex_unlock(&egress_lock);
			return answer;
		}
	}
	pthread_mutex_unlock(&egress_lock);
	answer = uw_egress_lookup(&egress_ops, &key.u.sa, &e);
	if (!answer)
		answer = (e.fq ? EGRESS_FQ : 0) | (e.shaper ? EGRESS_SHAPER : 0);
	uw_debug("egress qdisc toward the flow: %s (ifindex %u, root '%s'): %s%s",
		 answer < 0 ? strerror(-answer) : "found", e.ifindex, e.root,
		 answer > 0 && (answer & EGRESS_FQ) ? "fq, the kernel paces" :
		 "not fq, the library paces",
		 answer > 0 && (answer & EGRESS_SHAPER) ? "; a shaper: no GSO runs" : "");
	pthread_mutex_lock(&egress_lock);
	egress_cache[egress_next].key = key;
	egress_cache[egress_next].answer = answer;
	egress_cache[egress_next].expiry_ns = now + EGRESS_TTL_NS;
	egress_next = (egress_next + 1) % EGRESS_CACHE;
	pthread_mutex_unlock(&egress_lock);
	errno = saved;
	return answer;
}

static int egress_paces(const struct uw_addr *dest)
{
	int answer = egress_query(dest);

	return answer < 0 ? answer : !!(answer & EGRESS_FQ);
}

/* Shapers are rare: one dump of every interface's qdiscs says whether
 * any is there, a few seconds at a time, before any address is asked. */
static int egress_shapes(const struct uw_addr *dest)
{
	static _Atomic uint64_t checked_until;
	static _Atomic int any;
	uint64_t now = mono_ns();
	int answer;

	if (now >= atomic_load_explicit(&checked_until, memory_order_relaxed)) {
		atomic_store_explicit(&any, uw_egress_any_shaper(&egress_ops) != 0,
				      memory_order_relaxed);
		atomic_store_explicit(&checked_until, now + EGRESS_TTL_NS, memory_order_relaxed);
	}
	if (!atomic_load_explicit(&any, memory_order_relaxed))
		return 0;
	answer = egress_query(dest);
	return answer < 0 ? answer : !!(answer & EGRESS_SHAPER);
}

static const struct uw_sys uw_sys_real = {
	.sendmsg	= real_sendmsg,
	.sendmmsg	= real_sendmmsg,
	.poll		= real_poll,
	.socket		= real_socket,
	.connect	= real_connect,
	.close		= real_close,
	.getsockopt	= real_getsockopt,
	.getsockname	= getsockname,
	.bind		= real_bind,
	.sendto		= real_sendto,
	.setsockopt	= real_setsockopt,
	.nanosleep	= real_nanosleep,
	.now_ns		= mono_ns,
	.log_write	= log_to_stderr,
	.thread_setup	= flusher_setup,
	.after_flush	= uw_live_publish,
	.egress_paces	= egress_paces,
	.egress_shapes	= egress_shapes,
	.fd_flags	= real_fd_flags,
};

/* ---- initialisation ------------------------------------------------------ */

static int fd_table_size(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_max == RLIM_INFINITY ||
	    rl.rlim_max > (1u << 20))
		return 1 << 20;
	return rl.rlim_max < 1024 ? 1024 : (int)rl.rlim_max;
}

static void atfork_prepare(void)
{
	uw_core_fork_prepare(&uw_core);
}

static void atfork_parent(void)
{
	uw_core_fork_parent(&uw_core);
}

static void atfork_child(void)
{
	uw_core_fork_child(&uw_core);
	uw_live_after_fork_child();
}

static void init_all(void)
{
	struct uw_config cfg;
	char msg[512];
	int err;

	uw_bind_real();
	uw_initialising = true;
	err = uw_config_parse(&cfg, environ, msg, sizeof(msg));
	uw_log_init(&uw_sys_real, cfg.log_level);
	if (msg[0])
		uw_log(err ? UW_LOG_ERROR : UW_LOG_WARN, "%s", msg);
	if (cfg.disabled || cfg.passthrough)
		goto out;
	err = uw_core_init(&uw_core, &cfg, &uw_sys_real);
	if (!err)
		err = uw_fdtable_init(&uw_core.fds, fd_table_size());
	if (err) {
		uw_log(UW_LOG_ERROR, "cannot initialise (%s); running in passthrough",
		       strerror(-err));
		goto out;
	}
	uw_core.fds.release = uw_core_sock_release;
	uw_core.fds.release_ctx = &uw_core;
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	uw_signals_init();
	uw_stats_note_owner();
	uw_info("backend %s, max delay %u us, arena %u KiB", cfg.backend,
		cfg.max_delay_us, cfg.arena_kb);
	atomic_store(&uw_active, true);
out:
	uw_initialising = false;
}

bool uw_on_slow(void)
{
	uw_bind_real();
	if (uw_initialising)
		return false;
	pthread_once(&init_once, init_all);
	return atomic_load_explicit(&uw_active, memory_order_acquire);
}

void uw_deactivate(void)
{
	atomic_store(&uw_active, false);
}

/* The tracepoint provider is loaded here, once the library is initialised,
 * not in init_all(): liblttng-ust's own constructor calls socket() through
 * the interposers (preload/trace.c). */
__attribute__((constructor)) static void uw_constructor(void)
{
	if (uw_on())
		uw_trace_load(uw_core.cfg.trace);
}
