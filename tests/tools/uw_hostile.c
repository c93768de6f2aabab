/* SPDX-License-Identifier: MIT */
/*
 * Hostile-input probe (issue 12): each case does what a careless or hostile
 * program does to its UDP sockets and prints one JSON line with what the
 * calls returned and what arrived. The suite runs it without and with the
 * library and compares; the kernel's answer is never written down here.
 *
 * usage: uw_hostile CASE [args]
 *   efault [NAME]                     invalid pointers (all, or one NAME)
 *   signal-SIG [COUNT]                SIG: term int hup quit usr1 alrm pipe
 *                                     abrt segv; COUNT datagrams (500) first
 *   fork-kill [COUNT] [DELAY_MS]      forked child sends, SIGKILL after DELAY
 *   exit-in-handler [N] [exit|_exit] [MS]
 *                                     SIGALRM handler leaves a send loop; a
 *                                     child not gone in MS (2000) hangs
 *   fork-signal-send [N]              a SIGALRM handler sends while the
 *                                     program forks in a loop
 *   fd-reuse [N] [CLOSE] [TARGET]     CLOSE: sys_close closefrom close_range
 *                                     TARGET: accept tcp udp
 *   nonblock-eagain [COUNT] [SIZE] [tbf|lo]
 *                                     O_NONBLOCK, SO_SNDBUF 4096, tbf 8 Mbit/s
 *                                     on a private netns's lo (root) or none
 *   errors-3x                         broadcast, EMSGSIZE, no route x3
 *   connrefused                       4 sends to a closed port
 *   local-read                        send to ourselves, read at once
 *
 * Every process that may die or hang under test is a child that re-executes
 * this program (so a preloaded library starts fresh in it, as in any
 * program, not in a fork's copy): the parent reports {"signal": N} for a
 * child killed by a signal and {"hang": true} for one it had to kill.
 * Loopback only (a private network namespace's where a case must shape
 * or lose routes); every receiver is a socket of this program.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#define PAGE		4096
#define SIG_LEN		1316
#define RX_BUF		(8 << 20)	/* nothing of a burst may be dropped */
#define CHILD_MS	5000		/* a child slower than this hangs */
#define IDLE_MS		200		/* receiver drained: this long quiet */

static char out[1 << 16];
static size_t outlen;

/* Appends to the one JSON line the case prints. */
static void jp(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	outlen += vsnprintf(out + outlen, sizeof(out) - outlen, fmt, ap);
	va_end(ap);
	if (outlen >= sizeof(out))
		outlen = sizeof(out) - 1;
}

static void jflush(void)
{
	printf("%s\n", out);
	fflush(stdout);
}

static const char *ename(int e)
{
	const char *n = e ? strerrorname_np(e) : "0";

	return n ? n : "?";
}

/* rc and errno name of one call, as the suite compares them */
static void jrc(const char *key, long rc, int err)
{
	jp("\"%s\":{\"rc\":%ld,\"errno\":\"%s\"}", key, rc, rc < 0 ? ename(err) : "0");
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void die(const char *what)
{
	fprintf(stderr, "uw_hostile: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* ---------------------------------------------------------------- sockets */

static struct sockaddr_in lo_addr(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("getsockname");
	return ntohs(a.sin_port);
}

/* A UDP socket bound to 127.0.0.1:0 with a receive buffer of rcvbuf
 * (forced past rmem_max as root, so a burst is never dropped). */
static int udp_rx(int rcvbuf)
{
	struct sockaddr_in a = lo_addr(0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	return fd;
}

static int udp_to(int port)
{
	struct sockaddr_in a = lo_addr(port);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		die("socket");
	if (port && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	return fd;
}

/* Datagrams on fd until idle_ms pass without one. */
static long drain(int fd, int idle_ms)
{
	char buf[65536];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	long n = 0;

	while (poll(&p, 1, idle_ms) > 0)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
			n++;
	return n;
}

static int so_error(int fd)
{
	int e = 0;
	socklen_t len = sizeof(e);

	getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
	return e;
}

/* --------------------------------------------------------------- children */

struct child {
	pid_t pid;
	int out;		/* its stdout, or -1 */
	int status;
	int hung;
};

/* Runs this program again as `uw_hostile args...` in a child; with
 * capture, its stdout comes back through a pipe. */
static void spawn(struct child *c, int capture, char *const args[])
{
	char *argv[16] = { "uw_hostile" };
	int p[2] = { -1, -1 };
	int i;

	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	if (capture && pipe2(p, O_CLOEXEC) < 0)
		die("pipe");
	fflush(stdout);
	c->pid = fork();
	if (c->pid < 0)
		die("fork");
	if (c->pid == 0) {
		if (capture)
			dup2(p[1], 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	if (capture)
		close(p[1]);
	c->out = p[0];
	c->hung = 0;
}

/* Waits for the child until deadline (µs, monotonic), SIGKILLs it if it
 * is still there, and reads what it printed into buf. */
static void reap(struct child *c, uint64_t deadline, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		if (waitpid(c->pid, &c->status, WNOHANG) == c->pid)
			break;
		if (now_us() >= deadline) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &c->status, 0);
			c->hung = 1;
			break;
		}
		sleep_ms(1);
	}
	if (c->out >= 0) {
		ssize_t r;

		/* the child is gone: what it wrote is in the pipe, or lost */
		fcntl(c->out, F_SETFL, O_NONBLOCK);
		while (n + 1 < size && (r = read(c->out, buf + n, size - 1 - n)) > 0)
			n += r;
		close(c->out);
	}
	if (buf)
		buf[n] = 0;
}

static void jstatus(const struct child *c)
{
	if (c->hung)
		jp("\"status\":{\"hang\":true}");
	else if (WIFSIGNALED(c->status))
		jp("\"status\":{\"signal\":%d}", WTERMSIG(c->status));
	else
		jp("\"status\":{\"exit\":%d}", WEXITSTATUS(c->status));
}

static void itoa_arg(char *buf, long v)
{
	snprintf(buf, 24, "%ld", v);
}

/* ----------------------------------------------------------------- efault */

struct bad {
	void *ptr1;		/* (void *)1 */
	void *unmapped;		/* a page mapped, then unmapped */
	void *protnone;		/* a PROT_NONE page */
	void *runoff;		/* 100 readable bytes, then an unmapped page */
};

static void bad_init(struct bad *b)
{
	char *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	memset(p, 'x', PAGE);
	munmap(p + PAGE, PAGE);
	b->ptr1 = (void *)1;
	b->runoff = p + PAGE - 100;
	b->unmapped = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(b->unmapped, PAGE);
	b->protnone = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* One invalid-pointer call: u is unconnected, c connected, both to *to. */
struct efault_env {
	int u, c;
	struct sockaddr_in to;
	struct bad b;
	char good[100];
};

typedef long (*efault_fn)(struct efault_env *e);

#define TO(e)	(struct sockaddr *)&(e)->to, sizeof((e)->to)

/* one line per call: the table below reads as the list */
#define EF(name, call) \
	static long ef_##name(struct efault_env *e) { return call; }

EF(send_ptr1, send(e->c, e->b.ptr1, 100, 0))
EF(sendto_ptr1, sendto(e->u, e->b.ptr1, 100, 0, TO(e)))
EF(write_ptr1, write(e->c, e->b.ptr1, 100))
EF(send_unmapped, send(e->c, e->b.unmapped, 100, 0))
EF(write_unmapped, write(e->c, e->b.unmapped, 100))
EF(send_protnone, send(e->c, e->b.protnone, 100, 0))
EF(sendto_protnone, sendto(e->u, e->b.protnone, 100, 0, TO(e)))
EF(send_runoff, send(e->c, e->b.runoff, 1000, 0))
EF(sendto_runoff, sendto(e->u, e->b.runoff, 1000, 0, TO(e)))
EF(sendmsg_msghdr, sendmsg(e->c, e->b.ptr1, 0))
EF(sendto_to, sendto(e->u, e->good, 100, 0, e->b.ptr1, 16))
EF(writev_iov_array, writev(e->c, e->b.ptr1, 1))
EF(sendmmsg_msgvec, sendmmsg(e->c, e->b.ptr1, 2, 0))

enum ef_name { NO_NAME, GOOD_NAME, BAD_NAME };

/* sendmsg of 100 bytes at base (or through a given iov array); with a
 * name, on the unconnected socket */
static long ef_msg(struct efault_env *e, void *base, struct iovec *iov, enum ef_name name)
{
	struct iovec v = { base, 100 };
	struct msghdr m = { .msg_iov = iov ? iov : &v, .msg_iovlen = 1 };

	if (name != NO_NAME) {
		m.msg_name = name == BAD_NAME ? e->b.ptr1 : &e->to;
		m.msg_namelen = sizeof(e->to);
	}
	return sendmsg(name != NO_NAME ? e->u : e->c, &m, 0);
}

EF(sendmsg_iov_base, ef_msg(e, e->b.ptr1, NULL, NO_NAME))
EF(sendmsg_iov_array, ef_msg(e, e->good, e->b.ptr1, NO_NAME))
EF(sendmsg_msg_name, ef_msg(e, e->good, NULL, BAD_NAME))

static long ef_writev_iov_base(struct efault_env *e)
{
	struct iovec v[2] = { { e->good, 50 }, { e->b.unmapped, 50 } };

	return writev(e->c, v, 2);
}


/* Two messages, the second with a bad buffer: the kernel sends the first
 * and returns 1. */
static long ef_mmsg(struct efault_env *e, void *second)
{
	struct iovec v[2] = { { e->good, 100 }, { second, 100 } };
	struct mmsghdr mm[2] = {
		{ .msg_hdr = { .msg_iov = &v[0], .msg_iovlen = 1 } },
		{ .msg_hdr = { .msg_iov = &v[1], .msg_iovlen = 1 } },
	};

	return sendmmsg(e->c, mm, 2, 0);
}

EF(sendmmsg_2nd_bad, ef_mmsg(e, e->b.protnone))

static long ef_sendmmsg_1st_bad(struct efault_env *e)
{
	struct iovec v = { e->b.ptr1, 100 };
	struct mmsghdr mm = { .msg_hdr = { .msg_iov = &v, .msg_iovlen = 1 } };

	return sendmmsg(e->c, &mm, 1, 0);
}

static const struct {
	const char *name;
	efault_fn fn;
} efaults[] = {
	{ "send-ptr1", ef_send_ptr1 },
	{ "sendto-ptr1", ef_sendto_ptr1 },
	{ "write-ptr1", ef_write_ptr1 },
	{ "send-unmapped", ef_send_unmapped },
	{ "write-unmapped", ef_write_unmapped },
	{ "send-protnone", ef_send_protnone },
	{ "sendto-protnone", ef_sendto_protnone },
	{ "send-runoff", ef_send_runoff },
	{ "sendto-runoff", ef_sendto_runoff },
	{ "sendmsg-iov-base", ef_sendmsg_iov_base },
	{ "writev-iov-base", ef_writev_iov_base },
	{ "sendmsg-iov-array", ef_sendmsg_iov_array },
	{ "writev-iov-array", ef_writev_iov_array },
	{ "sendmsg-msghdr", ef_sendmsg_msghdr },
	{ "sendmsg-msg-name", ef_sendmsg_msg_name },
	{ "sendto-to", ef_sendto_to },
	{ "sendmmsg-msgvec", ef_sendmmsg_msgvec },
	{ "sendmmsg-1st-bad", ef_sendmmsg_1st_bad },
	{ "sendmmsg-2nd-bad", ef_sendmmsg_2nd_bad },
};

#define N_EFAULTS (int)(sizeof(efaults) / sizeof(efaults[0]))

/* child: uw_hostile child-efault NAME PORT; prints {"rc":..,"errno":..,
 * "so_error":..} for the one call */
static int child_efault(const char *name, int port)
{
	struct efault_env e = { .to = lo_addr(port) };
	long rc;
	int i, err;

	for (i = 0; i < N_EFAULTS && strcmp(efaults[i].name, name); i++)
		;
	if (i == N_EFAULTS)
		return 2;
	memset(e.good, 'g', sizeof(e.good));
	bad_init(&e.b);
	e.u = udp_to(0);
	e.c = udp_to(port);
	rc = efaults[i].fn(&e);
	err = errno;
	printf("\"rc\":%ld,\"errno\":\"%s\",\"so_error\":\"%s\"", rc,
	       rc < 0 ? ename(err) : "0", ename(so_error(e.c)));
	return 0;
}

static void efault_one(int i, int rx)
{
	char port[24], buf[512];
	char *args[] = { "child-efault", (char *)efaults[i].name, port, NULL };
	struct child c;

	itoa_arg(port, port_of(rx));
	spawn(&c, 1, args);
	reap(&c, now_us() + CHILD_MS * 1000ull, buf, sizeof(buf));
	jp("\"%s\":{%s%s", efaults[i].name, buf, buf[0] ? "," : "");
	jp("\"received\":%ld,", drain(rx, 30));
	jstatus(&c);
	jp("}");
}

static int case_efault(const char *only)
{
	int rx = udp_rx(RX_BUF), i, n = 0;

	jp("{\"case\":\"efault\",\"results\":{");
	for (i = 0; i < N_EFAULTS; i++) {
		if (only && strcmp(only, efaults[i].name))
			continue;
		jp(n++ ? "," : "");
		efault_one(i, rx);
	}
	jp("}}");
	if (!n) {
		fprintf(stderr, "uw_hostile: no efault case %s\n", only);
		return 2;
	}
	jflush();
	return 0;
}

/* ---------------------------------------------------------------- signals */

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{ "term", SIGTERM }, { "int", SIGINT }, { "hup", SIGHUP },
	{ "quit", SIGQUIT }, { "usr1", SIGUSR1 }, { "usr2", SIGUSR2 },
	{ "alrm", SIGALRM }, { "pipe", SIGPIPE }, { "abrt", SIGABRT },
	{ "segv", SIGSEGV },
};

static int signal_number(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (!strcmp(signals[i].name, name))
			return signals[i].sig;
	return 0;
}

/* The caller's signal state must not decide the result: default
 * disposition, unblocked, and no core file left in the test's directory. */
static void default_signal(int sig)
{
	struct rlimit no_core = { 0, 0 };
	sigset_t set;

	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	setrlimit(RLIMIT_CORE, &no_core);
}

static long send_burst(int fd, int port, long count)
{
	struct sockaddr_in to = lo_addr(port);
	char buf[SIG_LEN];
	long i, ok = 0;

	memset(buf, 's', sizeof(buf));
	for (i = 0; i < count; i++) {
		memcpy(buf, &i, sizeof(i));
		if (sendto(fd, buf, sizeof(buf), 0, (struct sockaddr *)&to, sizeof(to)) == SIG_LEN)
			ok++;
	}
	return ok;
}

/* child: uw_hostile child-signal SIG PORT COUNT; prints "sent":N, then
 * dies of SIG right after its last send */
static int child_signal(int sig, int port, long count)
{
	int fd = udp_to(0);

	default_signal(sig);
	printf("\"sent\":%ld,", send_burst(fd, port, count));
	fflush(stdout);
	if (sig == SIGABRT)
		abort();
	raise(sig);
	return 0;
}

static int case_signal(const char *name, long count)
{
	int sig = signal_number(name), rx = udp_rx(RX_BUF);
	char port[24], n[24], s[24], buf[256];
	char *args[] = { "child-signal", s, port, n, NULL };
	struct child c;

	if (!sig) {
		fprintf(stderr, "uw_hostile: unknown signal %s\n", name);
		return 2;
	}
	itoa_arg(s, sig);
	itoa_arg(port, port_of(rx));
	itoa_arg(n, count);
	spawn(&c, 1, args);
	reap(&c, now_us() + CHILD_MS * 1000ull, buf, sizeof(buf));
	jp("{\"case\":\"signal-%s\",%s\"received\":%ld,", name, buf, drain(rx, IDLE_MS));
	jstatus(&c);
	jp("}");
	jflush();
	return 0;
}

/* A forked (not re-executed) child sends, says so through a pipe and
 * waits; the parent SIGKILLs it delay_ms later. */
static int case_fork_kill(long count, int delay_ms)
{
	int rx = udp_rx(RX_BUF), p[2];
	long sent = 0;
	struct child c = { .out = -1 };

	if (pipe(p) < 0)
		die("pipe");
	fflush(stdout);
	c.pid = fork();
	if (c.pid < 0)
		die("fork");
	if (c.pid == 0) {
		int fd = udp_to(0);

		sent = send_burst(fd, port_of(rx), count);
		if (write(p[1], &sent, sizeof(sent)) != sizeof(sent))
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &sent, sizeof(sent)) != sizeof(sent))
		sent = -1;
	sleep_ms(delay_ms);
	kill(c.pid, SIGKILL);
	reap(&c, now_us() + CHILD_MS * 1000ull, NULL, 0);
	jp("{\"case\":\"fork-kill\",\"sent\":%ld,\"received\":%ld,", sent, drain(rx, IDLE_MS));
	jstatus(&c);
	jp("}");
	jflush();
	return 0;
}

/* -------------------------------------------------------- exit in handler */

static int use_exit;

static void leave(int sig)
{
	(void)sig;
	if (use_exit)
		exit(0);
	_exit(0);
}

/* child: uw_hostile child-exit-handler exit|_exit USEC PORT; sends in a
 * tight loop until a SIGALRM handler leaves the process */
static __attribute__((noreturn)) int child_exit_handler(const char *how, long usec,
								 int port)
{
	struct itimerval t = { .it_value = { 0, usec } };
	int fd = udp_to(0);

	use_exit = !strcmp(how, "exit");
	signal(SIGALRM, leave);
	setitimer(ITIMER_REAL, &t, NULL);
	for (;;)
		send_burst(fd, port, 1000);
}

/* N children at once (a hang costs its 2 s only once), interrupted after
 * 1..5 ms of sending. */
static int case_exit_in_handler(int runs, const char *how, int ms)
{
	int rx = udp_rx(1 << 16), i, hangs = 0, exited = 0, other = 0;
	char port[24], usec[64][24];
	struct child c[64];
	uint64_t deadline;

	if (runs > 64)
		runs = 64;
	itoa_arg(port, port_of(rx));
	for (i = 0; i < runs; i++) {
		char *args[] = { "child-exit-handler", (char *)how, usec[i], port, NULL };

		itoa_arg(usec[i], 1000 + 1000 * (i % 5));
		spawn(&c[i], 0, args);
	}
	deadline = now_us() + (uint64_t)ms * 1000;
	for (i = 0; i < runs; i++) {
		reap(&c[i], deadline, NULL, 0);
		if (c[i].hung)
			hangs++;
		else if (WIFEXITED(c[i].status) && WEXITSTATUS(c[i].status) == 0)
			exited++;
		else
			other++;
	}
	jp("{\"case\":\"exit-in-handler\",\"how\":\"%s\",\"runs\":%d,\"exited\":%d,"
	   "\"hangs\":%d,\"other\":%d}", how, runs, exited, hangs, other);
	jflush();
	return 0;
}

/* ------------------------------------------------- fork under a handler */

static int fs_fd, fs_port;
static volatile sig_atomic_t fs_handled;

static void fs_send(int sig)
{
	struct sockaddr_in to = lo_addr(fs_port);
	int saved = errno;

	(void)sig;
	sendto(fs_fd, "handler", 7, 0, (struct sockaddr *)&to, sizeof(to));
	fs_handled++;
	errno = saved;
}

/* child: uw_hostile child-fork-signal PORT; forks (each child leaving at
 * once) for 300 ms while a 100 µs timer's handler sends: a signal taken
 * while fork() holds the library's locks must not wait for them */
static __attribute__((noreturn)) int child_fork_signal(int port)
{
	struct itimerval t = { .it_interval = { 0, 100 }, .it_value = { 0, 100 } };
	uint64_t until = now_us() + 300000;
	long forks = 0;

	fs_fd = udp_to(0);
	fs_port = port;
	signal(SIGALRM, fs_send);
	setitimer(ITIMER_REAL, &t, NULL);
	while (now_us() < until && forks < 5000) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid > 0) {
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			forks++;
		}
		send_burst(fs_fd, port, 1);
	}
	t = (struct itimerval){ 0 };
	setitimer(ITIMER_REAL, &t, NULL);
	_exit(forks > 0 && fs_handled > 0 ? 0 : 3);
}

/* N children at once, each forking under the handler; 5 s for all. */
static int case_fork_signal(int runs)
{
	int rx = udp_rx(1 << 20), i, hangs = 0, done = 0, other = 0;
	char port[24];
	struct child c[16];
	uint64_t deadline;

	if (runs > 16)
		runs = 16;
	itoa_arg(port, port_of(rx));
	for (i = 0; i < runs; i++) {
		char *args[] = { "child-fork-signal", port, NULL };

		spawn(&c[i], 0, args);
	}
	deadline = now_us() + 5000000;
	for (i = 0; i < runs; i++) {
		reap(&c[i], deadline, NULL, 0);
		if (c[i].hung)
			hangs++;
		else if (WIFEXITED(c[i].status) && WEXITSTATUS(c[i].status) == 0)
			done++;
		else
			other++;
	}
	jp("{\"case\":\"fork-signal-send\",\"runs\":%d,\"done\":%d,\"hangs\":%d,"
	   "\"other\":%d}", runs, done, hangs, other);
	jflush();
	return 0;
}

/* --------------------------------------------------------------- fd reuse */

#define REUSE_MSG	"TCP stream of the application, nothing else\n"
#define UDP_MSG		"UDP payload queued for a socket that was closed behind us"

static int tcp_listener(void)
{
	struct sockaddr_in a = lo_addr(0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0)
		die("tcp listen");
	return fd;
}

/* The close the library does not see. */
static int hidden_close(int fd, const char *how)
{
	if (!strcmp(how, "closefrom")) {
		closefrom(fd);
		return 0;
	}
	if (!strcmp(how, "close_range"))
		return syscall(SYS_close_range, fd, fd, 0);
	return syscall(SYS_close, fd);
}

/* Reads the TCP peer until EOF (or 1 s): the bytes that are not exactly
 * the stream the application wrote. */
static long stray_bytes(int fd)
{
	char buf[4096];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t n = 0;
	ssize_t r;

	while (n < sizeof(buf) && poll(&p, 1, 1000) > 0) {
		r = read(fd, buf + n, sizeof(buf) - n);
		if (r <= 0)
			break;
		n += r;
	}
	if (n >= strlen(REUSE_MSG) && memmem(buf, n, REUSE_MSG, strlen(REUSE_MSG)))
		return n - strlen(REUSE_MSG);
	return n;
}

/* The new owner of the number writes on it as it would; for a UDP
 * owner, what its own receiver got that it did not send. */
static long use_new_owner(int fd, const char *target, int peer, int rx2)
{
	if (!strcmp(target, "udp"))
		return drain(rx2, 50);
	if (!strcmp(target, "accept")) {
		if (write(fd, REUSE_MSG, strlen(REUSE_MSG)) < 0)
			return -1;
		shutdown(fd, SHUT_WR);
		return stray_bytes(peer);
	}
	return 0;
}

static int new_owner(const char *target, int lis, int rx2)
{
	if (!strcmp(target, "accept"))
		return accept(lis, NULL, NULL);
	if (!strcmp(target, "udp"))
		return udp_to(port_of(rx2));
	return socket(AF_INET, SOCK_STREAM, 0);	/* never connected */
}

/* child: uw_hostile child-fd-reuse CLOSE TARGET; prints "reused",
 * "delivered" (to the UDP socket's own receiver) and "stray" */
static int child_fd_reuse(const char *how, const char *target)
{
	int lis = tcp_listener(), rx = udp_rx(RX_BUF), rx2 = udp_rx(RX_BUF);
	struct sockaddr_in la = lo_addr(port_of(lis));
	int peer = socket(AF_INET, SOCK_STREAM, 0), u, fd, i;
	long stray;

	/* the peer connects now so that accept() needs no new number but u's */
	if (connect(peer, (struct sockaddr *)&la, sizeof(la)) < 0)
		die("tcp connect");
	u = udp_to(port_of(rx));	/* the highest number: closefrom hits it only */
	for (i = 0; i < 3; i++)
		send(u, UDP_MSG, strlen(UDP_MSG), 0);
	hidden_close(u, how);
	fd = new_owner(target, lis, rx2);
	sleep_ms(20);			/* ten default max delays: the flush is due */
	stray = use_new_owner(fd, target, peer, rx2);
	printf("\"reused\":%d,\"delivered\":%ld,\"stray\":%ld", fd == u, drain(rx, 50), stray);
	return 0;
}

static int case_fd_reuse(int runs, const char *how, const char *target)
{
	char *args[] = { "child-fd-reuse", (char *)how, (char *)target, NULL };
	long reused = 0, delivered = 0, stray = 0, sigpipe = 0, died = 0, hangs = 0;
	char buf[256];
	int i;

	for (i = 0; i < runs; i++) {
		struct child c;
		long r = 0, d = 0, s = 0;

		spawn(&c, 1, args);
		reap(&c, now_us() + CHILD_MS * 1000ull, buf, sizeof(buf));
		sscanf(buf, "\"reused\":%ld,\"delivered\":%ld,\"stray\":%ld", &r, &d, &s);
		reused += r;
		delivered += d;
		stray += s;
		hangs += c.hung;
		sigpipe += !c.hung && WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGPIPE;
		died += !c.hung && (WIFSIGNALED(c.status) || WEXITSTATUS(c.status));
	}
	jp("{\"case\":\"fd-reuse\",\"close\":\"%s\",\"target\":\"%s\",\"runs\":%d,"
	   "\"reused\":%ld,\"sent\":%d,\"delivered\":%ld,\"stray\":%ld,\"sigpipe\":%ld,"
	   "\"died\":%ld,\"hangs\":%ld}", how, target, runs, reused, 3 * runs,
	   delivered, stray, sigpipe, died, hangs);
	jflush();
	return 0;
}

/* --------------------------------------------------------------- nonblock */

/* Loopback never pushes back (the skb leaves the send buffer inside the
 * call), so the tbf 8 Mbit/s goes on the loopback of a network
 * namespace of our own: the host's lo is not touched. 0 if shaped. */
static int shaped_loopback(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd;

	if (unshare(CLONE_NEWNET) < 0)
		return -1;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return -1;
	close(fd);
	/* tc without the preload: its netlink is no business of the test */
	return system("env -u LD_PRELOAD tc qdisc add dev lo root tbf rate 8mbit "
		      "burst 4kb latency 400ms >/dev/null 2>&1") ? -1 : 0;
}

/* Datagrams on fd until idle_ms pass without one or max_ms in all. */
static long drain_for(int fd, int idle_ms, int max_ms)
{
	char buf[65536];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t end = now_us() + max_ms * 1000ull;
	long n = 0;

	while (now_us() < end && poll(&p, 1, idle_ms) > 0)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
			n++;
	return n;
}

/* A non-blocking sender with SO_SNDBUF 4096 behind tbf: how many sends
 * the kernel takes, how many it refuses, how long one call may take, and
 * how many of the accepted arrive (within 2 s). */
/* How long the timestamped datagram waiting on rx took to arrive (its
 * kernel receive time against the send time it carries); -1: none. */
static long long unrelated_late_us(int rx)
{
	char cbuf[CMSG_SPACE(sizeof(struct timespec))];
	struct timespec sent, got = { 0, 0 };
	struct iovec iov = { &sent, sizeof(sent) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct pollfd p = { .fd = rx, .events = POLLIN };

	if (poll(&p, 1, 3000) <= 0 || recvmsg(rx, &mh, MSG_DONTWAIT) != sizeof(sent))
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS)
			memcpy(&got, CMSG_DATA(c), sizeof(got));
	if (!got.tv_sec)
		return -1;
	return ((long long)got.tv_sec - sent.tv_sec) * 1000000LL +
	       (got.tv_nsec - sent.tv_nsec) / 1000;
}

static int case_nonblock(long count, int size, const char *where)
{
	int shaped = strcmp(where, "lo") ? shaped_loopback() == 0 : 0;
	int rx = udp_rx(RX_BUF), fd = udp_to(port_of(rx)), sndbuf = 4096, on = 1;
	/* an unrelated socket: its datagram, sent halfway, must not wait for
	 * the full one */
	int rx2 = udp_rx(RX_BUF), fd2 = udp_to(port_of(rx2));
	long i, ok = 0, eagain = 0, enobufs = 0, other = 0;
	uint64_t t0, t, longest = 0, start = now_us();
	long long late_us = -1;
	char buf[65536];
	ssize_t r;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	setsockopt(rx2, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
	memset(buf, 'n', sizeof(buf));
	for (i = 0; i < count; i++) {
		if (i == count / 2) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			send(fd2, &ts, sizeof(ts), 0);
		}
		t0 = now_us();
		r = send(fd, buf, size, 0);
		t = now_us() - t0;
		longest = t > longest ? t : longest;
		if (r == size)
			ok++;
		else if (errno == EAGAIN)
			eagain++;
		else if (errno == ENOBUFS)
			enobufs++;
		else
			other++;
	}
	t = now_us() - start;
	jp("{\"case\":\"nonblock-eagain\",\"shaped\":%s,\"count\":%ld,\"size\":%d,"
	   "\"accepted\":%ld,\"eagain\":%ld,\"enobufs\":%ld,\"other\":%ld,"
	   "\"longest_us\":%llu,\"total_us\":%llu,\"so_error\":\"%s\",",
	   shaped ? "true" : "false", count, size, ok, eagain, enobufs, other,
	   (unsigned long long)longest, (unsigned long long)t, ename(so_error(fd)));
	late_us = unrelated_late_us(rx2);
	jp("\"received\":%ld,\"unrelated_late_us\":%lld}", drain_for(rx, IDLE_MS, 2000), late_us);
	jflush();
	return 0;
}

/* ----------------------------------------------------------------- errors */

/* Three sendto()s 10 ms apart on a fresh socket, then its SO_ERROR. */
static void three_sends(const char *key, const struct sockaddr_in *to, size_t len)
{
	static char buf[70000];
	int fd = udp_to(0), i;
	long rc;

	jp("\"%s\":{\"calls\":[", key);
	for (i = 0; i < 3; i++) {
		rc = sendto(fd, buf, len, 0, (const struct sockaddr *)to, sizeof(*to));
		jp("%s\"%s\"", i ? "," : "", rc < 0 ? ename(errno) : "ok");
		sleep_ms(10);
	}
	jp("],\"so_error\":\"%s\"}", ename(so_error(fd)));
	close(fd);
}

/* No route, without touching the host's routes: a network namespace of
 * our own has none (root only; else skipped). Last, as it moves us. */
static void no_route(void)
{
	struct sockaddr_in to = lo_addr(9);

	to.sin_addr.s_addr = inet_addr("192.0.2.1");
	if (unshare(CLONE_NEWNET) < 0) {
		jp("\"no-route\":{\"skipped\":\"%s\"}", ename(errno));
		return;
	}
	three_sends("no-route", &to, 100);
}

static int case_errors(void)
{
	int rx = udp_rx(RX_BUF);
	struct sockaddr_in bcast = lo_addr(port_of(rx)), big = lo_addr(port_of(rx));

	bcast.sin_addr.s_addr = inet_addr("127.255.255.255");
	jp("{\"case\":\"errors-3x\",");
	three_sends("broadcast", &bcast, 100);
	jp(",");
	three_sends("emsgsize", &big, 65508);
	jp(",");
	no_route();
	jp(",\"received\":%ld}", drain(rx, 50));
	jflush();
	return 0;
}

/* Connected to a closed port: ICMP port unreachable makes every other
 * send fail, as the kernel reports the error of the previous one. */
static int case_connrefused(void)
{
	int rx = udp_rx(1 << 16), port = port_of(rx), fd, i;
	long rc;

	close(rx);
	fd = udp_to(port);
	jp("{\"case\":\"connrefused\",\"calls\":[");
	for (i = 0; i < 4; i++) {
		rc = send(fd, "x", 1, 0);
		jp("%s\"%s\"", i ? "," : "", rc < 0 ? ename(errno) : "ok");
		sleep_ms(20);
	}
	jp("],\"so_error\":\"%s\"}", ename(so_error(fd)));
	jflush();
	return 0;
}

/* What a reader of the process sees right after its own send. */
static void read_back(const char *key, int from, int to_fd)
{
	struct sockaddr_in to = lo_addr(port_of(to_fd));
	struct pollfd p = { .fd = to_fd, .events = POLLIN };
	char buf[256];
	int pending = -1, ready;
	long rc, r;

	memset(buf, 'l', 100);
	rc = sendto(from, buf, 100, 0, (struct sockaddr *)&to, sizeof(to));
	ioctl(to_fd, FIONREAD, &pending);
	ready = poll(&p, 1, 0);
	r = recv(to_fd, buf, sizeof(buf), MSG_DONTWAIT);
	jp("\"%s\":{\"send\":%ld,\"fionread\":%d,\"poll\":%d,", key, rc, pending, ready);
	jrc("recv", r, errno);
	jp("}");
	drain(to_fd, 20);
}

static int case_local_read(void)
{
	int a = udp_rx(1 << 16), b = udp_rx(1 << 16);

	jp("{\"case\":\"local-read\",");
	read_back("other-socket", a, b);
	jp(",");
	read_back("same-socket", b, b);
	jp("}");
	jflush();
	return 0;
}

/* ------------------------------------------------------------------- main */

static long arg(int argc, char **argv, int i, long def)
{
	return argc > i ? strtol(argv[i], NULL, 0) : def;
}

static const char *sarg(int argc, char **argv, int i, const char *def)
{
	return argc > i ? argv[i] : def;
}

static int children(int argc, char **argv)
{
	const char *c = argv[1];

	if (!strcmp(c, "child-efault") && argc == 4)
		return child_efault(argv[2], atoi(argv[3]));
	if (!strcmp(c, "child-signal") && argc == 5)
		return child_signal(atoi(argv[2]), atoi(argv[3]), atol(argv[4]));
	if (!strcmp(c, "child-exit-handler") && argc == 5)
		return child_exit_handler(argv[2], atol(argv[3]), atoi(argv[4]));
	if (!strcmp(c, "child-fd-reuse") && argc == 4)
		return child_fd_reuse(argv[2], argv[3]);
	if (!strcmp(c, "child-fork-signal") && argc == 3)
		return child_fork_signal(atoi(argv[2]));
	return 2;
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";

	if (!strncmp(c, "child-", 6))
		return children(argc, argv);
	if (!strcmp(c, "efault"))
		return case_efault(argc > 2 ? argv[2] : NULL);
	if (!strncmp(c, "efault-", 7))
		return case_efault(c + 7);
	if (!strncmp(c, "signal-", 7))
		return case_signal(c + 7, arg(argc, argv, 2, 500));
	if (!strcmp(c, "fork-kill"))
		return case_fork_kill(arg(argc, argv, 2, 500), arg(argc, argv, 3, 50));
	if (!strcmp(c, "exit-in-handler"))
		return case_exit_in_handler(arg(argc, argv, 2, 20), sarg(argc, argv, 3, "_exit"),
					    arg(argc, argv, 4, 2000));
	if (!strcmp(c, "fork-signal-send"))
		return case_fork_signal(arg(argc, argv, 2, 8));
	if (!strcmp(c, "fd-reuse"))
		return case_fd_reuse(arg(argc, argv, 2, 10), sarg(argc, argv, 3, "sys_close"),
				     sarg(argc, argv, 4, "accept"));
	if (!strcmp(c, "nonblock-eagain"))
		return case_nonblock(arg(argc, argv, 2, 10000), arg(argc, argv, 3, 1000),
				     sarg(argc, argv, 4, "tbf"));
	if (!strcmp(c, "errors-3x"))
		return case_errors();
	if (!strcmp(c, "connrefused"))
		return case_connrefused();
	if (!strcmp(c, "local-read"))
		return case_local_read();
	fprintf(stderr, "usage: uw_hostile CASE [args] (see the source's head)\n");
	return 2;
}
