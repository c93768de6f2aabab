/* soak — a long randomized run of an unmodified-looking UDP program, for
 * udpweave under LD_PRELOAD (driven by bench/soak.py, which runs the
 * receiver without the library, watches for hangs and judges the result).
 *
 * --threads worker threads share --slots UDP IPv4 loopback sockets. Slot i
 * sends to 127.0.0.1:(--base-port + i); every socket is bound to
 * 127.0.0.1:0, so the receiver can tell which socket a datagram left from.
 * A slot has a generation, bumped whenever a new socket takes its place.
 * Each datagram starts with a header (magic, kind, slot, source port,
 * length, generation, sequence, check word); the rest is the sequence's low
 * byte. A slot's lock is held while its datagrams are built and sent, so
 * the header always names the socket the program really wrote to.
 *
 * Each worker picks, at random (--seed), one operation on a random slot:
 *   send       a burst of 1..16 datagrams with sendto, send, write, writev,
 *              sendmsg (1-3 iovecs, sometimes an IP_TTL cmsg) or sendmmsg
 *   reopen     close() the socket (after a burst, sometimes) and open a new one
 *   dup2       dup2/dup3 a fresh socket over the slot's number
 *   dup-send   dup the slot's fd, send through the copy, close one of the two
 *   close-range close_range() over 2-4 slots with consecutive numbers, reopen
 *   raw-close  a burst, syscall(SYS_close) (behind the library's back), then
 *              at once open() a file in --tmpdir or connect a TCP socket to
 *              the receiver's --tcp-port on the freed number; kept 0.2-2 s,
 *              then the file is read (its bytes are stray bytes) and the TCP
 *              socket closed (the receiver counts what reached it)
 *   fault      (while faults are on: toggled every 3 s) calls that must fail
 *              with EFAULT: buffer (void *)1, a PROT_NONE page, a buffer
 *              running into it, a bad iovec, a bad address; a sendmmsg whose
 *              second message is bad must return 1
 * and, at most every --fork-ms / --closefrom-ms over all threads:
 *   fork       a child sends 200 datagrams to --child-port on a fresh socket,
 *              then raise(SIGTERM) under SIG_DFL; the parent waits (10 s at
 *              most) and records how it died
 *   closefrom  closefrom() over the slots with the highest numbers, reopen
 * A toggler thread switches SIGUSR1/SIGUSR2 between SIG_IGN and handlers
 * (with and without SA_RESTART, SA_SIGINFO, signal()) and SIGWINCH between
 * SIG_DFL and a handler; a signaller thread sends SIGUSR1, SIGUSR2,
 * SIGWINCH and SIGURG (default: ignored) to random threads (pthread_kill)
 * or the process (kill). SIGUSR1/2 are never SIG_DFL once the run starts.
 * --handler-send: the handler also sends a datagram to --sig-port.
 * --ops LIST keeps only the named operations besides sends (reopen, dup2,
 * dup-send, close-range, raw-close, fault, fork, closefrom, signals), to
 * narrow down a finding; --history FILE records how every generation of
 * every slot ended, to name the operation behind a misdirected datagram.
 *
 * Output on stdout: "hb ELAPSED C0 C1 ..." once a second (per-thread
 * progress counters, "d" once a thread is done: workers, signaller,
 * toggler, main), then one line "result {JSON}". Diagnostics on stderr.
 * This is a bench tool: it exits on setup errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOAK_MAGIC	0x4B414F53u	/* "SOAK" */
#define KIND_SLOT	0
#define KIND_CHILD	1
#define KIND_HANDLER	2
#define HDR_LEN		24
#define MAX_DGRAM	1400
#define MAX_BURST	16
#define MAX_SLOTS	4096
#define MAX_THREADS	64
#define FD_MAX		65536
#define CHILD_DGRAMS	200
#define CHILD_CELLS	4096
#define ERRNO_MAX	256

struct soak_hdr {
	uint32_t magic;
	uint16_t kind;
	uint16_t slot;
	uint16_t src_port;
	uint16_t len;
	uint32_t gen;
	uint32_t seq;
	uint32_t check;
};

_Static_assert(sizeof(struct soak_hdr) == HDR_LEN, "header layout");

/* ---- configuration ------------------------------------------------------ */

struct options {
	unsigned seconds;
	unsigned threads;
	unsigned nslots;
	uint64_t seed;
	unsigned base_port;
	unsigned child_port;
	unsigned sig_port;
	unsigned tcp_port;
	unsigned rate;		/* datagrams per second over all workers, 0: no limit */
	unsigned fork_ms;
	unsigned closefrom_ms;
	const char *tmpdir;
	const char *history;
	unsigned ops;		/* OP_* bits: what the workers may do */
	bool handler_send;
};

enum op_bit {
	OP_REOPEN = 1u << 0, OP_DUP2 = 1u << 1, OP_DUP_SEND = 1u << 2, OP_CLOSE_RANGE = 1u << 3,
	OP_RAW_CLOSE = 1u << 4, OP_FAULT = 1u << 5, OP_FORK = 1u << 6, OP_CLOSEFROM = 1u << 7,
	OP_SIGNALS = 1u << 8, OP_ALL = (1u << 9) - 1,
};

static const char *const op_name[] = {
	"reopen", "dup2", "dup-send", "close-range", "raw-close", "fault", "fork", "closefrom",
	"signals",
};

static struct options opt;

/* ---- counters: one list makes the struct, the sum and the JSON ---------- */

#define SOAK_COUNTERS(X)						\
	X(ops) X(send_calls) X(sent) X(sent_sendto) X(sent_send)	\
	X(sent_write) X(sent_writev) X(sent_sendmsg) X(sent_sendmmsg)	\
	X(sent_via_dup) X(send_errors) X(short_sends)			\
	X(reopens) X(dup2s) X(dup_sends) X(dup_kept)			\
	X(close_ranges) X(close_range_slots) X(close_range_skipped)	\
	X(closefroms) X(closefrom_slots) X(closefrom_skipped)		\
	X(raw_close_file) X(raw_close_tcp) X(fd_number_reused)		\
	X(tcp_connect_errors) X(releases) X(stray_file_bytes)		\
	X(stray_file_magic) X(efault_tests) X(efault_ok)		\
	X(efault_mismatch) X(forks) X(fork_errors) X(child_sigterm)	\
	X(child_other_death) X(child_hung) X(child_sent)		\
	X(bind_already_bound)

struct counters {
#define X(name) uint64_t name;
	SOAK_COUNTERS(X)
#undef X
	uint64_t errs[ERRNO_MAX];
};

/* ---- shared state ------------------------------------------------------- */

enum slot_kind { SLOT_UDP, SLOT_FILE, SLOT_TCP, SLOT_CLOSED };

struct slot {
	pthread_mutex_t lock;
	int fd;
	enum slot_kind kind;
	bool connected;
	uint16_t src_port;
	uint32_t gen;
	uint32_t seq;
	int64_t hold_until;	/* FILE, TCP: when to check and go back to UDP */
	char path[128];		/* FILE */
	uint8_t *ended;		/* [gen % HIST_GENS]: enum gen_end */
};

struct rng {
	uint64_t s;
};

/* How each generation of a slot ended (--history), for the report on a
 * misdirected datagram: 0 = still open or not recorded. */
enum gen_end {
	END_NONE, END_REOPEN, END_DUP2, END_CLOSE_RANGE, END_CLOSEFROM, END_RAW_FILE, END_RAW_TCP,
	END_RELEASE, END_TEARDOWN,
};

static const char *const gen_end_name[] = {
	"open", "close+reopen", "dup2 over it", "close_range", "closefrom",
	"raw SYS_close, number to a file", "raw SYS_close, number to TCP",
	"close of the file/TCP fd", "close at the end",
};

#define HIST_GENS	4096

struct worker {
	unsigned id;
	pthread_t thread;
	struct rng rng;
	struct counters c;
	char buf[MAX_BURST][MAX_DGRAM];
};

static struct slot slots[MAX_SLOTS];
static _Atomic int fd_owner[FD_MAX];		/* slot index + 1, 0: not a slot's */
/* Readers: every operation that makes or closes fds. Writer: closefrom,
 * which must know every fd at or above its bound. Taken before slot locks. */
static pthread_rwlock_t fd_lock;
static struct worker *workers;
static _Atomic bool stop_workers, stop_helpers, faults_on;
static _Atomic uint64_t progress[MAX_THREADS + 3];
static _Atomic bool done[MAX_THREADS + 3];
static _Atomic uint64_t sig_caught[NSIG];
static _Atomic uint64_t handler_sent, handler_seq, sig_sent, disposition_changes;
static _Atomic int64_t next_fork_ns, next_closefrom_ns;
static _Atomic uint32_t child_ids;
static _Atomic uint32_t *child_sent;		/* MAP_SHARED: what each child was told it sent */
static int handler_fd = -1;
static struct sockaddr_in sig_addr;
static char *bad_page;				/* PROT_NONE */
static char *edge;				/* 16 readable bytes before bad_page */
static int64_t t0_ns, deadline_ns;

/* ---- small helpers ------------------------------------------------------ */

static void write_history(void)
{
	FILE *f;

	if (!opt.history || !(f = fopen(opt.history, "w")))
		return;
	for (unsigned i = 0; i < opt.nslots; i++) {
		uint32_t top = slots[i].gen;

		for (uint32_t g = top > HIST_GENS ? top - HIST_GENS + 1 : 1; g <= top; g++)
			fprintf(f, "%u %u %s\n", i, g, gen_end_name[slots[i].ended[g % HIST_GENS]]);
	}
	fclose(f);
}

static void die(const char *what)
{
	int e = errno;

	fprintf(stderr, "soak: %s: %s\n", what, strerror(e));
	write_history();
	exit(3);
}

/* The slot's current generation ends (slot locked). */
static void gen_ended(struct slot *sl, enum gen_end how)
{
	sl->ended[sl->gen % HIST_GENS] = (uint8_t)how;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };

	nanosleep(&ts, NULL);	/* a signal may cut it short: fine */
}

static uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1Dull;
}

static unsigned rng_below(struct rng *r, unsigned n)
{
	return (unsigned)(rng_next(r) % n);
}

static bool rng_chance(struct rng *r, unsigned percent)
{
	return rng_below(r, 100) < percent;
}

static void rng_seed(struct rng *r, uint64_t seed, uint64_t stream)
{
	r->s = (seed ^ (stream + 1) * 0x9E3779B97F4A7C15ull) | 1;
	for (int i = 0; i < 8; i++)
		rng_next(r);
}

static struct sockaddr_in loopback(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

static void count_errno(struct counters *c, int e)
{
	c->send_errors++;
	c->errs[e > 0 && e < ERRNO_MAX ? e : 0]++;
}

static uint32_t hdr_check(const struct soak_hdr *h)
{
	return h->magic ^ ((uint32_t)h->kind << 16) ^ h->slot ^ ((uint32_t)h->src_port << 16) ^
	       h->len ^ (h->gen * 0x9E3779B1u) ^ (h->seq * 0x85EBCA77u);
}

/* One datagram of len bytes: the header, then the sequence's low byte. */
static size_t build_dgram(char *buf, unsigned kind, unsigned slot, uint16_t port,
			  uint32_t gen, uint32_t seq, size_t len)
{
	struct soak_hdr h = {
		.magic = SOAK_MAGIC, .kind = (uint16_t)kind, .slot = (uint16_t)slot,
		.src_port = port, .len = (uint16_t)len, .gen = gen, .seq = seq,
	};

	h.check = hdr_check(&h);
	memcpy(buf, &h, sizeof(h));
	memset(buf + HDR_LEN, (int)(seq & 0xff), len - HDR_LEN);
	return len;
}

static size_t pick_len(struct rng *r)
{
	return HDR_LEN + rng_below(r, MAX_DGRAM - HDR_LEN + 1);
}

/* ---- slots: open, install, forget ---------------------------------------- */

static _Atomic uint64_t bind_already_bound;

/* A UDP socket bound to 127.0.0.1:0 (its port known), connected to the
 * slot's receiver port half the time. A new socket found bound already
 * was written to by someone else before we bound it: counted. */
static int udp_open(unsigned idx, struct rng *r, bool *connected, uint16_t *port)
{
	struct sockaddr_in local = loopback(0), dst = loopback(opt.base_port + idx);
	socklen_t len = sizeof(local);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		die("socket");
	if (bind(fd, (struct sockaddr *)&local, sizeof(local))) {
		if (errno != EINVAL)
			die("bind");
		if (atomic_fetch_add(&bind_already_bound, 1) < 5)
			fprintf(stderr, "soak: fd %d: a new socket was bound already\n", fd);
	}
	if (getsockname(fd, (struct sockaddr *)&local, &len))
		die("getsockname");
	*port = ntohs(local.sin_port);
	*connected = rng_chance(r, 50);
	if (*connected && connect(fd, (struct sockaddr *)&dst, sizeof(dst)))
		die("connect");
	return fd;
}

static void own_fd(int fd, unsigned idx)
{
	if (fd >= 0 && fd < FD_MAX)
		atomic_store(&fd_owner[fd], (int)idx + 1);
}

/* Before the number is given up: once closed, another slot may get it. */
static void disown_fd(int fd)
{
	if (fd >= 0 && fd < FD_MAX)
		atomic_store(&fd_owner[fd], 0);
}

static void slot_install_udp(struct slot *sl, unsigned idx, int fd, bool connected, uint16_t port)
{
	sl->fd = fd;
	sl->kind = SLOT_UDP;
	sl->connected = connected;
	sl->src_port = port;
	sl->gen++;
	sl->seq = 0;
	own_fd(fd, idx);
}

static void slot_open_udp(struct slot *sl, unsigned idx, struct rng *r)
{
	bool connected;
	uint16_t port;
	int fd = udp_open(idx, r, &connected, &port);

	slot_install_udp(sl, idx, fd, connected, port);
}

static void lock_slot(unsigned idx)
{
	pthread_mutex_lock(&slots[idx].lock);
}

static void unlock_slot(unsigned idx)
{
	pthread_mutex_unlock(&slots[idx].lock);
}

/* ---- sending ------------------------------------------------------------- */

enum send_mode { M_SENDTO, M_SENDMSG, M_SENDMMSG, M_SEND, M_WRITE, M_WRITEV, M_COUNT };

/* An unconnected socket has only the calls that carry an address. */
static enum send_mode pick_mode(struct rng *r, bool connected)
{
	return (enum send_mode)rng_below(r, connected ? M_COUNT : M_SEND);
}

static void count_sent(struct counters *c, enum send_mode m, uint64_t n)
{
	c->sent += n;
	switch (m) {
	case M_SENDTO:   c->sent_sendto += n; break;
	case M_SENDMSG:  c->sent_sendmsg += n; break;
	case M_SENDMMSG: c->sent_sendmmsg += n; break;
	case M_SEND:     c->sent_send += n; break;
	case M_WRITE:    c->sent_write += n; break;
	case M_WRITEV:   c->sent_writev += n; break;
	default: break;
	}
}

/* Up to three iovecs cut at random points of one datagram. */
static int split_iov(struct rng *r, char *p, size_t len, struct iovec *iov)
{
	int n = 1 + (int)rng_below(r, 3);
	size_t a = rng_below(r, (unsigned)len + 1), b = rng_below(r, (unsigned)len + 1);

	if (a > b) {
		size_t t = a;

		a = b;
		b = t;
	}
	if (n == 1) {
		iov[0] = (struct iovec){ p, len };
	} else if (n == 2) {
		iov[0] = (struct iovec){ p, a };
		iov[1] = (struct iovec){ p + a, len - a };
	} else {
		iov[0] = (struct iovec){ p, a };
		iov[1] = (struct iovec){ p + a, b - a };
		iov[2] = (struct iovec){ p + b, len - b };
	}
	return n;
}

/* One datagram, one call. Returns whether the call took it whole. */
static bool send_one(struct worker *w, int fd, const struct sockaddr_in *dst, bool connected,
		     enum send_mode m, char *p, size_t len, int flags)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[3];
	struct msghdr mh = { 0 };
	ssize_t r;

	w->c.send_calls++;
	switch (m) {
	case M_SENDTO:
		r = sendto(fd, p, len, flags, connected ? NULL : (const struct sockaddr *)dst,
			   connected ? 0 : sizeof(*dst));
		break;
	case M_SEND:
		r = send(fd, p, len, flags);
		break;
	case M_WRITE:
		r = write(fd, p, len);
		break;
	case M_WRITEV:
		r = writev(fd, iov, split_iov(&w->rng, p, len, iov));
		break;
	default:	/* M_SENDMSG */
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)split_iov(&w->rng, p, len, iov);
		if (!connected) {
			mh.msg_name = (void *)dst;
			mh.msg_namelen = sizeof(*dst);
		}
		if (rng_chance(&w->rng, 10)) {
			struct cmsghdr *cm;
			int ttl = 64;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = IPPROTO_IP;
			cm->cmsg_type = IP_TTL;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &ttl, sizeof(ttl));
		}
		r = sendmsg(fd, &mh, flags);
		break;
	}
	if (r < 0) {
		count_errno(&w->c, errno);
		return false;
	}
	if ((size_t)r != len) {
		w->c.short_sends++;
		return false;
	}
	return true;
}

static void send_mmsg(struct worker *w, int fd, const struct sockaddr_in *dst, bool connected,
		      unsigned n, const size_t *lens, int flags)
{
	struct mmsghdr vec[MAX_BURST];
	struct iovec iov[MAX_BURST][3];
	int r;

	memset(vec, 0, sizeof(vec));
	for (unsigned i = 0; i < n; i++) {
		vec[i].msg_hdr.msg_iov = iov[i];
		vec[i].msg_hdr.msg_iovlen = (size_t)split_iov(&w->rng, w->buf[i], lens[i], iov[i]);
		if (!connected) {
			vec[i].msg_hdr.msg_name = (void *)dst;
			vec[i].msg_hdr.msg_namelen = sizeof(*dst);
		}
	}
	w->c.send_calls++;
	r = sendmmsg(fd, vec, n, flags);
	if (r < 0) {
		count_errno(&w->c, errno);
		return;
	}
	for (int i = 0; i < r; i++)
		if (vec[i].msg_len != lens[i])
			w->c.short_sends++;
	count_sent(&w->c, M_SENDMMSG, (uint64_t)r);
}

/* A burst of 1..16 datagrams on the slot (locked, UDP), sent through fd
 * (the slot's or a dup of it); the same size throughout half the time, so
 * that the library can make GSO runs. */
static uint64_t send_burst(struct worker *w, unsigned idx, int fd)
{
	struct slot *sl = &slots[idx];
	struct sockaddr_in dst = loopback(opt.base_port + idx);
	enum send_mode m = pick_mode(&w->rng, sl->connected);
	unsigned n = 1 + rng_below(&w->rng, MAX_BURST);
	bool same = rng_chance(&w->rng, 50);
	int flags = rng_chance(&w->rng, 10) ? MSG_DONTWAIT : 0;
	size_t lens[MAX_BURST], len = pick_len(&w->rng);
	uint64_t before = w->c.sent;

	for (unsigned i = 0; i < n; i++) {
		lens[i] = same ? len : pick_len(&w->rng);
		build_dgram(w->buf[i], KIND_SLOT, idx, sl->src_port, sl->gen, sl->seq++, lens[i]);
	}
	if (m == M_SENDMMSG) {
		send_mmsg(w, fd, &dst, sl->connected, n, lens, flags);
	} else {
		for (unsigned i = 0; i < n; i++)
			if (send_one(w, fd, &dst, sl->connected, m, w->buf[i], lens[i], flags))
				count_sent(&w->c, m, 1);
	}
	return w->c.sent - before;
}

/* ---- FILE and TCP slots: the check, and back to UDP ---------------------- */

static uint64_t count_magic(const char *p, size_t n)
{
	uint32_t magic = SOAK_MAGIC;
	uint64_t k = 0;

	for (size_t i = 0; i + 4 <= n; i++)
		if (!memcmp(p + i, &magic, 4))
			k++;
	return k;
}

/* Every byte in the file is a stray one: the program never writes there. */
static void check_file(struct worker *w, const char *path)
{
	char local[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		fprintf(stderr, "soak: %s: %s\n", path, strerror(errno));
		return;
	}
	while ((n = read(fd, local, sizeof(local))) > 0) {
		w->c.stray_file_bytes += (uint64_t)n;
		w->c.stray_file_magic += count_magic(local, (size_t)n);
	}
	close(fd);
	unlink(path);
}

/* The slot (locked) holds a file or TCP socket: close it, check it. */
static void slot_release(struct worker *w, unsigned idx)
{
	struct slot *sl = &slots[idx];

	disown_fd(sl->fd);
	close(sl->fd);
	sl->fd = -1;
	gen_ended(sl, END_RELEASE);
	if (sl->kind == SLOT_FILE)
		check_file(w, sl->path);
	sl->kind = SLOT_CLOSED;
	w->c.releases++;
}

static bool hold_over(const struct slot *sl)
{
	return sl->kind != SLOT_UDP && now_ns() >= sl->hold_until;
}

/* Caller holds fd_lock (read) and the slot. */
static void release_if_due(struct worker *w, unsigned idx)
{
	if (hold_over(&slots[idx])) {
		slot_release(w, idx);
		slot_open_udp(&slots[idx], idx, &w->rng);
	}
}

/* ---- operations ---------------------------------------------------------- */

static void op_send(struct worker *w, unsigned idx)
{
	bool due;

	lock_slot(idx);
	if (slots[idx].kind == SLOT_UDP)
		send_burst(w, idx, slots[idx].fd);
	due = hold_over(&slots[idx]);
	unlock_slot(idx);
	if (due) {		/* fd_lock comes before a slot's lock */
		pthread_rwlock_rdlock(&fd_lock);
		lock_slot(idx);
		release_if_due(w, idx);
		unlock_slot(idx);
		pthread_rwlock_unlock(&fd_lock);
	}
}

/* Runs an fd-changing operation on a UDP slot: fd_lock, then the slot. */
static void with_udp_slot(struct worker *w, unsigned idx, void (*fn)(struct worker *, unsigned))
{
	pthread_rwlock_rdlock(&fd_lock);
	lock_slot(idx);
	if (slots[idx].kind == SLOT_UDP)
		fn(w, idx);
	else
		release_if_due(w, idx);
	unlock_slot(idx);
	pthread_rwlock_unlock(&fd_lock);
}

static void do_reopen(struct worker *w, unsigned idx)
{
	struct slot *sl = &slots[idx];

	if (rng_chance(&w->rng, 50))
		send_burst(w, idx, sl->fd);
	disown_fd(sl->fd);
	gen_ended(sl, END_REOPEN);
	if (close(sl->fd))
		die("close");
	slot_open_udp(sl, idx, &w->rng);
	w->c.reopens++;
}

static void do_dup2(struct worker *w, unsigned idx)
{
	struct slot *sl = &slots[idx];
	bool connected;
	uint16_t port;
	int fresh, r;

	if (rng_chance(&w->rng, 50))
		send_burst(w, idx, sl->fd);
	fresh = udp_open(idx, &w->rng, &connected, &port);
	gen_ended(sl, END_DUP2);
	r = rng_chance(&w->rng, 30) ? dup3(fresh, sl->fd, O_CLOEXEC) : dup2(fresh, sl->fd);
	if (r != sl->fd)
		die("dup2");
	close(fresh);
	sl->connected = connected;
	sl->src_port = port;
	sl->gen++;
	sl->seq = 0;
	w->c.dup2s++;
}

/* Send through a dup; then close the copy, or keep the copy and close the
 * original (the same socket: same generation, same port). */
static void do_dup_send(struct worker *w, unsigned idx)
{
	struct slot *sl = &slots[idx];
	int d = rng_chance(&w->rng, 50) ? dup(sl->fd) : fcntl(sl->fd, F_DUPFD_CLOEXEC, 0);

	if (d < 0)
		die("dup");
	w->c.sent_via_dup += send_burst(w, idx, d);
	w->c.dup_sends++;
	if (rng_chance(&w->rng, 50)) {
		close(d);
		return;
	}
	disown_fd(sl->fd);
	close(sl->fd);
	sl->fd = d;
	own_fd(d, idx);
	w->c.dup_kept++;
}

/* After a burst, the number is closed behind the library's back and at
 * once given to a file or a TCP connection (the kernel hands out the
 * lowest free number, so usually this one). */
static void do_raw_close(struct worker *w, unsigned idx)
{
	struct slot *sl = &slots[idx];
	int old = sl->fd, fd;

	send_burst(w, idx, old);
	disown_fd(old);
	if (syscall(SYS_close, old))
		die("SYS_close");
	if (rng_chance(&w->rng, 50)) {
		snprintf(sl->path, sizeof(sl->path), "%s/slot%u-gen%u", opt.tmpdir, idx, sl->gen);
		fd = open(sl->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			die("open");
		sl->kind = SLOT_FILE;
		gen_ended(sl, END_RAW_FILE);
		w->c.raw_close_file++;
	} else {
		struct sockaddr_in sa = loopback(opt.tcp_port);

		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket tcp");
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINTR)
			w->c.tcp_connect_errors++;
		sl->kind = SLOT_TCP;
		gen_ended(sl, END_RAW_TCP);
		w->c.raw_close_tcp++;
	}
	if (fd == old)
		w->c.fd_number_reused++;
	sl->fd = fd;
	sl->gen++;
	sl->hold_until = now_ns() + 200000000 + (int64_t)rng_below(&w->rng, 1800) * 1000000;
	own_fd(fd, idx);
}

/* Slots whose fds are first..first+n-1, each a UDP slot, locked (try-lock:
 * no order among slots; held is ours already); idx[] gets them. Returns n,
 * or 0 with nothing more held. */
static unsigned lock_fd_run(int first, unsigned n, unsigned held, unsigned *idx)
{
	unsigned got = 0;
	bool ok = true;

	for (unsigned i = 0; i < n && ok; i++) {
		int fd = first + (int)i, owner = fd < FD_MAX ? atomic_load(&fd_owner[fd]) : 0;
		unsigned s = (unsigned)owner - 1;

		if (owner <= 0 || (s != held && pthread_mutex_trylock(&slots[s].lock)))
			break;
		idx[got++] = s;
		ok = slots[s].fd == fd && slots[s].kind == SLOT_UDP;
	}
	if (ok && got == n)
		return n;
	for (unsigned i = 0; i < got; i++)
		if (idx[i] != held)
			unlock_slot(idx[i]);
	return 0;
}

static void do_close_range(struct worker *w, unsigned idx)
{
	unsigned n = 2 + rng_below(&w->rng, 3), run[4];
	int first = slots[idx].fd;

	if (!lock_fd_run(first, n, idx, run)) {
		w->c.close_range_skipped++;
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (rng_chance(&w->rng, 50))
			send_burst(w, run[i], slots[run[i]].fd);
		disown_fd(slots[run[i]].fd);
		gen_ended(&slots[run[i]], END_CLOSE_RANGE);
	}
	if (close_range((unsigned)first, (unsigned)first + n - 1, 0))
		die("close_range");
	for (unsigned i = 0; i < n; i++) {
		slot_open_udp(&slots[run[i]], run[i], &w->rng);
		if (run[i] != idx)
			unlock_slot(run[i]);
	}
	w->c.close_ranges++;
	w->c.close_range_slots += n;
}

/* ---- EFAULT ------------------------------------------------------------- */

enum fault_kind {
	F_ONE, F_NONE_PAGE, F_EDGE, F_SENDMSG_IOV, F_IOV_ARRAY, F_BAD_ADDR, F_MMSG_SECOND,
	F_COUNT
};

static const char *const fault_name[F_COUNT] = {
	"buf=(void*)1", "buf=PROT_NONE", "buf runs into PROT_NONE", "sendmsg iov[1] bad",
	"iovec array PROT_NONE", "address (void*)1", "sendmmsg 2nd message bad",
};

static void fault_result(struct worker *w, enum fault_kind f, long r, int e, long want)
{
	w->c.efault_tests++;
	if (r == want && (want >= 0 || e == EFAULT)) {
		w->c.efault_ok++;
		return;
	}
	if (w->c.efault_mismatch++ < 5)
		fprintf(stderr, "soak: fault %s: got %ld errno %d (%s), want %ld%s\n", fault_name[f],
			r, e, strerror(e), want, want < 0 ? " EFAULT" : "");
}

static void do_fault(struct worker *w, unsigned idx)
{
	struct slot *sl = &slots[idx];
	struct sockaddr_in dst = loopback(opt.base_port + idx);
	const struct sockaddr *to = sl->connected ? NULL : (const struct sockaddr *)&dst;
	socklen_t tolen = sl->connected ? 0 : sizeof(dst);
	enum fault_kind f = (enum fault_kind)rng_below(&w->rng, F_COUNT);
	char *good = w->buf[0];
	struct iovec iov[2];
	struct msghdr mh = { 0 };
	struct mmsghdr vec[2];
	long r = 0;

	build_dgram(good, KIND_SLOT, idx, sl->src_port, sl->gen, sl->seq++, 64);
	errno = 0;
	switch (f) {
	case F_ONE:
		r = sendto(sl->fd, (void *)1, 64, 0, to, tolen);
		break;
	case F_NONE_PAGE:
		r = sendto(sl->fd, bad_page, 64, 0, to, tolen);
		break;
	case F_EDGE:
		r = sendto(sl->fd, edge, 100, 0, to, tolen);
		break;
	case F_SENDMSG_IOV:
	case F_IOV_ARRAY:
		iov[0] = (struct iovec){ good, 32 };
		iov[1] = (struct iovec){ bad_page, 32 };
		mh.msg_iov = f == F_IOV_ARRAY ? (struct iovec *)bad_page : iov;
		mh.msg_iovlen = 2;
		mh.msg_name = (void *)to;
		mh.msg_namelen = tolen;
		r = f == F_IOV_ARRAY && sl->connected ? writev(sl->fd, (struct iovec *)bad_page, 2) :
		    sendmsg(sl->fd, &mh, 0);
		break;
	case F_BAD_ADDR:
		r = sendto(sl->fd, good, 64, 0, (const struct sockaddr *)1, sizeof(dst));
		break;
	default:	/* F_MMSG_SECOND */
		memset(vec, 0, sizeof(vec));
		iov[0] = (struct iovec){ good, 64 };
		iov[1] = (struct iovec){ bad_page, 64 };
		for (int i = 0; i < 2; i++) {
			vec[i].msg_hdr.msg_iov = &iov[i];
			vec[i].msg_hdr.msg_iovlen = 1;
			vec[i].msg_hdr.msg_name = (void *)to;
			vec[i].msg_hdr.msg_namelen = tolen;
		}
		r = sendmmsg(sl->fd, vec, 2, 0);
		if (r > 0)
			count_sent(&w->c, M_SENDMMSG, (uint64_t)r);
		fault_result(w, f, r, errno, 1);
		return;
	}
	fault_result(w, f, r, errno, -1);
}

/* ---- fork --------------------------------------------------------------- */

static void child_main(uint32_t id, struct rng *r)
{
	struct sockaddr_in local = loopback(0), dst = loopback(opt.child_port);
	socklen_t len = sizeof(local);
	bool connected = rng_chance(r, 50);
	char buf[MAX_DGRAM];
	uint32_t ok = 0;
	uint16_t port;
	int fd;

	signal(SIGTERM, SIG_DFL);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&local, sizeof(local)) ||
	    getsockname(fd, (struct sockaddr *)&local, &len) ||
	    (connected && connect(fd, (struct sockaddr *)&dst, sizeof(dst))))
		_exit(90);
	port = ntohs(local.sin_port);
	for (uint32_t seq = 0; seq < CHILD_DGRAMS; seq++) {
		size_t n = build_dgram(buf, KIND_CHILD, 0, port, id, seq, 64 + rng_below(r, 1200));
		ssize_t s = connected ? send(fd, buf, n, 0) :
			    sendto(fd, buf, n, 0, (struct sockaddr *)&dst, sizeof(dst));

		if (s == (ssize_t)n)
			ok++;
	}
	atomic_store(&child_sent[id % CHILD_CELLS], ok);
	raise(SIGTERM);
	_exit(91);	/* not reached under SIG_DFL */
}

static void dump_tasks(pid_t pid)
{
	char pat[64], line[512];
	glob_t g;

	snprintf(pat, sizeof(pat), "/proc/%d/task/*/stack", (int)pid);
	if (glob(pat, 0, NULL, &g))
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		FILE *f = fopen(g.gl_pathv[i], "r");

		fprintf(stderr, "soak: %s:\n", g.gl_pathv[i]);
		while (f && fgets(line, sizeof(line), f))
			fprintf(stderr, "    %s", line);
		if (f)
			fclose(f);
	}
	globfree(&g);
}

static void op_fork(struct worker *w)
{
	uint32_t id = atomic_fetch_add(&child_ids, 1);
	int64_t give_up = now_ns() + 10000000000;
	int status = 0;
	pid_t pid, got = 0;

	atomic_store(&child_sent[id % CHILD_CELLS], 0);
	pid = fork();
	if (pid < 0) {
		w->c.fork_errors++;
		return;
	}
	if (pid == 0)
		child_main(id, &w->rng);
	w->c.forks++;
	while (now_ns() < give_up) {
		got = waitpid(pid, &status, WNOHANG);
		if (got == pid || (got < 0 && errno != EINTR))
			break;
		sleep_ns(2000000);
	}
	if (got != pid) {
		w->c.child_hung++;
		fprintf(stderr, "soak: child %d (id %u) still running after 10 s\n", (int)pid, id);
		pthread_rwlock_rdlock(&fd_lock);	/* dump_tasks opens files */
		dump_tasks(pid);
		pthread_rwlock_unlock(&fd_lock);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return;
	}
	w->c.child_sent += atomic_load(&child_sent[id % CHILD_CELLS]);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) {
		w->c.child_sigterm++;
		return;
	}
	w->c.child_other_death++;
	fprintf(stderr, "soak: child %d (id %u): %s %d\n", (int)pid, id,
		WIFSIGNALED(status) ? "killed by signal" : "exit status",
		WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* ---- closefrom ------------------------------------------------------------ */

/* Every fd at or above lowfd is a slot's (no stranger would be closed). */
static bool all_ours_from(int lowfd)
{
	char pat[] = "/proc/self/fd/*";
	bool ok = true;
	glob_t g;

	if (glob(pat, 0, NULL, &g))
		return false;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		int fd = atoi(strrchr(g.gl_pathv[i], '/') + 1);

		if (fd >= lowfd && (fd >= FD_MAX || !atomic_load(&fd_owner[fd]))) {
			ok = false;
			break;
		}
	}
	globfree(&g);
	return ok;
}

static void op_closefrom(struct worker *w)
{
	int maxfd = -1, lowfd;
	unsigned n = 0;

	pthread_rwlock_wrlock(&fd_lock);	/* no fd is made or closed meanwhile */
	for (unsigned i = 0; i < opt.nslots; i++)
		if (slots[i].fd > maxfd)
			maxfd = slots[i].fd;
	lowfd = maxfd - (int)rng_below(&w->rng, 6);
	if (lowfd <= handler_fd || !all_ours_from(lowfd)) {
		w->c.closefrom_skipped++;
		pthread_rwlock_unlock(&fd_lock);
		return;
	}
	for (unsigned i = 0; i < opt.nslots; i++) {
		lock_slot(i);
		if (slots[i].fd < lowfd) {
			unlock_slot(i);
			continue;
		}
		if (slots[i].kind == SLOT_UDP && rng_chance(&w->rng, 50))
			send_burst(w, i, slots[i].fd);
		disown_fd(slots[i].fd);
		gen_ended(&slots[i], END_CLOSEFROM);
	}
	closefrom(lowfd);
	for (unsigned i = 0; i < opt.nslots; i++) {
		struct slot *sl = &slots[i];

		if (sl->fd < lowfd)
			continue;
		if (sl->kind == SLOT_FILE)
			check_file(w, sl->path);
		if (sl->kind != SLOT_UDP)
			w->c.releases++;
		slot_open_udp(sl, i, &w->rng);
		unlock_slot(i);
		n++;
	}
	w->c.closefroms++;
	w->c.closefrom_slots += n;
	pthread_rwlock_unlock(&fd_lock);
}

/* ---- threads ------------------------------------------------------------ */

/* Whoever first sees the time come takes the turn. */
static bool take_turn(_Atomic int64_t *next, unsigned period_ms)
{
	int64_t t = now_ns(), due = atomic_load(next);

	return period_ms && t >= due &&
	       atomic_compare_exchange_strong(next, &due, t + (int64_t)period_ms * 1000000);
}

static bool may(enum op_bit op)
{
	return opt.ops & op;
}

static void pace(struct worker *w, int64_t start)
{
	double per_thread = (double)opt.rate / opt.threads, ahead;

	if (!opt.rate)
		return;
	ahead = (double)w->c.sent / per_thread - (double)(now_ns() - start) / 1e9;
	if (ahead > 0)
		sleep_ns((int64_t)((ahead < 0.02 ? ahead : 0.02) * 1e9));
}

/* What a thread's first closefrom would make (its malloc arena, the deeper
 * stack of glob), made at its start: the RSS samples then show the run's
 * growth, not the soak's one-time costs. */
static void warm_up(void)
{
	pthread_rwlock_rdlock(&fd_lock);
	all_ours_from(FD_MAX);
	pthread_rwlock_unlock(&fd_lock);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int64_t start;

	warm_up();
	start = now_ns();

	while (!atomic_load(&stop_workers) && now_ns() < deadline_ns) {
		unsigned idx = rng_below(&w->rng, opt.nslots), roll = rng_below(&w->rng, 1000);

		if (may(OP_FORK) && take_turn(&next_fork_ns, opt.fork_ms))
			op_fork(w);
		else if (may(OP_CLOSEFROM) && take_turn(&next_closefrom_ns, opt.closefrom_ms))
			op_closefrom(w);
		else if (roll < 800)
			op_send(w, idx);
		else if (roll < 840 && may(OP_REOPEN))
			with_udp_slot(w, idx, do_reopen);
		else if (roll >= 840 && roll < 870 && may(OP_DUP2))
			with_udp_slot(w, idx, do_dup2);
		else if (roll >= 870 && roll < 900 && may(OP_DUP_SEND))
			with_udp_slot(w, idx, do_dup_send);
		else if (roll >= 900 && roll < 910 && may(OP_CLOSE_RANGE))
			with_udp_slot(w, idx, do_close_range);
		else if (roll >= 910 && roll < 930 && may(OP_RAW_CLOSE))
			with_udp_slot(w, idx, do_raw_close);
		else if (roll >= 930 && may(OP_FAULT) && atomic_load(&faults_on))
			with_udp_slot(w, idx, do_fault);
		else
			op_send(w, idx);
		w->c.ops++;
		atomic_fetch_add(&progress[w->id], 1);
		pace(w, start);
	}
	atomic_store(&done[w->id], true);
	return NULL;
}

static void handler_send_one(int sig)
{
	char buf[HDR_LEN + 8];
	uint32_t seq = (uint32_t)atomic_fetch_add(&handler_seq, 1);
	int saved = errno;

	build_dgram(buf, KIND_HANDLER, (unsigned)sig, 0, 0, seq, sizeof(buf));
	if (sendto(handler_fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&sig_addr,
		   sizeof(sig_addr)) == (ssize_t)sizeof(buf))
		atomic_fetch_add(&handler_sent, 1);
	errno = saved;
}

static void on_signal(int sig)
{
	atomic_fetch_add(&sig_caught[sig], 1);
	if (opt.handler_send)
		handler_send_one(sig);
}

static void on_siginfo(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	on_signal(sig);
}

/* A random disposition for SIGUSR1/SIGUSR2 that is never SIG_DFL. */
static void set_random_disposition(struct rng *r, int sig)
{
	struct sigaction sa = { 0 };

	sigemptyset(&sa.sa_mask);
	if (rng_chance(r, 30))
		sigaddset(&sa.sa_mask, sig == SIGUSR1 ? SIGUSR2 : SIGUSR1);
	switch (rng_below(r, 5)) {
	case 0:
		sa.sa_handler = SIG_IGN;
		break;
	case 1:
		sa.sa_handler = on_signal;
		sa.sa_flags = SA_RESTART;
		break;
	case 2:
		sa.sa_handler = on_signal;
		break;
	case 3:
		sa.sa_sigaction = on_siginfo;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		break;
	default:
		signal(sig, rng_chance(r, 50) ? on_signal : SIG_IGN);
		atomic_fetch_add(&disposition_changes, 1);
		return;
	}
	if (sigaction(sig, &sa, NULL))
		die("sigaction");
	atomic_fetch_add(&disposition_changes, 1);
}

static void *toggler_main(void *arg)
{
	unsigned id = opt.threads + 1;
	struct rng r;
	int64_t next_faults = now_ns() + 3000000000;

	(void)arg;
	rng_seed(&r, opt.seed, 1000);
	while (!atomic_load(&stop_helpers)) {
		sleep_ns(1000000 + (int64_t)rng_below(&r, 19) * 1000000);
		set_random_disposition(&r, rng_chance(&r, 50) ? SIGUSR1 : SIGUSR2);
		if (rng_chance(&r, 10)) {
			signal(SIGWINCH, rng_chance(&r, 50) ? SIG_DFL : on_signal);
			atomic_fetch_add(&disposition_changes, 1);
		}
		if (now_ns() >= next_faults) {
			atomic_store(&faults_on, !atomic_load(&faults_on));
			next_faults += 3000000000;
		}
		atomic_fetch_add(&progress[id], 1);
	}
	atomic_store(&done[id], true);
	return NULL;
}

static void *signaller_main(void *arg)
{
	static const int sigs[] = { SIGUSR1, SIGUSR2, SIGWINCH, SIGURG };
	unsigned id = opt.threads;
	struct rng r;

	(void)arg;
	rng_seed(&r, opt.seed, 1001);
	while (!atomic_load(&stop_helpers)) {
		int sig = sigs[rng_below(&r, 4)];

		sleep_ns(100000 + (int64_t)rng_below(&r, 1900) * 1000);
		if (!may(OP_SIGNALS))
			;
		else if (rng_chance(&r, 30))
			kill(getpid(), sig);
		else
			pthread_kill(workers[rng_below(&r, opt.threads)].thread, sig);
		atomic_fetch_add(&sig_sent, 1);
		atomic_fetch_add(&progress[id], 1);
	}
	atomic_store(&done[id], true);
	return NULL;
}

static void heartbeat(void)
{
	unsigned n = opt.threads + 3;

	printf("hb %.1f", (double)(now_ns() - t0_ns) / 1e9);
	for (unsigned i = 0; i < n; i++) {
		if (atomic_load(&done[i]))
			printf(" d");
		else
			printf(" %llu", (unsigned long long)atomic_load(&progress[i]));
	}
	printf("\n");
	fflush(stdout);
}

/* ---- result --------------------------------------------------------------- */

static void print_result(struct counters *c)
{
	bool first = true;

	c->bind_already_bound = atomic_load(&bind_already_bound);
	printf("result {\"seconds\": %u, \"threads\": %u, \"slots\": %u, \"seed\": %llu, "
	       "\"rate\": %u, \"handler_send\": %s, \"elapsed\": %.2f",
	       opt.seconds, opt.threads, opt.nslots, (unsigned long long)opt.seed, opt.rate,
	       opt.handler_send ? "true" : "false", (double)(now_ns() - t0_ns) / 1e9);
#define X(name) printf(", \"" #name "\": %llu", (unsigned long long)c->name);
	SOAK_COUNTERS(X)
#undef X
	printf(", \"send_errnos\": {");
	for (int e = 0; e < ERRNO_MAX; e++) {
		if (!c->errs[e])
			continue;
		const char *name = e ? strerrorname_np(e) : NULL;

		if (name)
			printf("%s\"%s\": %llu", first ? "" : ", ", name, (unsigned long long)c->errs[e]);
		else
			printf("%s\"errno%d\": %llu", first ? "" : ", ", e, (unsigned long long)c->errs[e]);
		first = false;
	}
	printf("}, \"children_forked\": %u", atomic_load(&child_ids));
	printf(", \"signals_sent\": %llu, \"disposition_changes\": %llu",
	       (unsigned long long)atomic_load(&sig_sent),
	       (unsigned long long)atomic_load(&disposition_changes));
	printf(", \"handler_sent\": %llu, \"signals_caught\": {\"SIGUSR1\": %llu, "
	       "\"SIGUSR2\": %llu, \"SIGWINCH\": %llu}}\n",
	       (unsigned long long)atomic_load(&handler_sent),
	       (unsigned long long)atomic_load(&sig_caught[SIGUSR1]),
	       (unsigned long long)atomic_load(&sig_caught[SIGUSR2]),
	       (unsigned long long)atomic_load(&sig_caught[SIGWINCH]));
	fflush(stdout);
}

static void sum_counters(struct counters *sum, const struct counters *c)
{
#define X(name) sum->name += c->name;
	SOAK_COUNTERS(X)
#undef X
	for (int e = 0; e < ERRNO_MAX; e++)
		sum->errs[e] += c->errs[e];
}

/* ---- setup ---------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: soak --base-port P --child-port P --sig-port P --tcp-port P --tmpdir DIR\n"
		"            [--seconds 600] [--seed 1] [--threads 16] [--slots 500]\n"
		"            [--rate DGRAMS_PER_S] [--fork-ms 500] [--closefrom-ms 3000]\n"
		"            [--handler-send] [--history FILE]\n"
		"            [--ops all|LIST]  LIST of reopen,dup2,dup-send,close-range,raw-close,\n"
		"                              fault,fork,closefrom,signals (sends always)\n");
	exit(2);
}

static unsigned parse_ops(const char *list)
{
	char buf[256], *tok, *save;
	unsigned ops = 0;

	if (!strcmp(list, "all"))
		return OP_ALL;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned i = 0;

		while (i < sizeof(op_name) / sizeof(op_name[0]) && strcmp(tok, op_name[i]))
			i++;
		if (i == sizeof(op_name) / sizeof(op_name[0]) && strcmp(tok, "send"))
			usage();
		if (strcmp(tok, "send"))
			ops |= 1u << i;
	}
	return ops;
}

static void parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "threads", required_argument, NULL, 't' },
		{ "slots", required_argument, NULL, 'n' },
		{ "base-port", required_argument, NULL, 'b' },
		{ "child-port", required_argument, NULL, 'c' },
		{ "sig-port", required_argument, NULL, 'g' },
		{ "tcp-port", required_argument, NULL, 'T' },
		{ "rate", required_argument, NULL, 'r' },
		{ "fork-ms", required_argument, NULL, 'f' },
		{ "closefrom-ms", required_argument, NULL, 'F' },
		{ "tmpdir", required_argument, NULL, 'd' },
		{ "handler-send", no_argument, NULL, 'H' },
		{ "history", required_argument, NULL, 'h' },
		{ "ops", required_argument, NULL, 'o' },
		{ 0 }
	};
	int c;

	opt = (struct options){
		.seconds = 600, .threads = 16, .nslots = 500, .seed = 1, .rate = 40000,
		.fork_ms = 500, .closefrom_ms = 3000, .ops = OP_ALL,
	};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's': opt.seconds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'S': opt.seed = strtoull(optarg, NULL, 0); break;
		case 't': opt.threads = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'n': opt.nslots = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'b': opt.base_port = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'c': opt.child_port = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'g': opt.sig_port = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'T': opt.tcp_port = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': opt.rate = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'f': opt.fork_ms = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'F': opt.closefrom_ms = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'd': opt.tmpdir = optarg; break;
		case 'H': opt.handler_send = true; break;
		case 'h': opt.history = optarg; break;
		case 'o': opt.ops = parse_ops(optarg); break;
		default: usage();
		}
	}
	if (!opt.base_port || !opt.child_port || !opt.sig_port || !opt.tcp_port || !opt.tmpdir ||
	    !opt.threads || opt.threads > MAX_THREADS || !opt.nslots || opt.nslots > MAX_SLOTS ||
	    opt.base_port + opt.nslots > 65536)
		usage();
}

static void setup_memory(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + page, (size_t)page, PROT_NONE))
		die("mmap");
	memset(p, 'x', (size_t)page);
	bad_page = p + page;
	edge = bad_page - 16;
	child_sent = mmap(NULL, CHILD_CELLS * sizeof(*child_sent), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (child_sent == MAP_FAILED)
		die("mmap shared");
}

static void setup_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) || sigaction(SIGUSR2, &sa, NULL))
		die("sigaction");
}

static void setup_slots(void)
{
	pthread_rwlockattr_t ra;
	struct rng r;

	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fd_lock, &ra);
	sig_addr = loopback(opt.sig_port);
	handler_fd = socket(AF_INET, SOCK_DGRAM, 0);	/* the lowest number of ours */
	if (handler_fd < 0)
		die("socket");
	rng_seed(&r, opt.seed, 999);
	for (unsigned i = 0; i < opt.nslots; i++) {
		slots[i].ended = calloc(HIST_GENS, 1);
		if (!slots[i].ended)
			die("calloc");
		memset(slots[i].ended, 0, HIST_GENS);	/* resident now, not during the run */
		pthread_mutex_init(&slots[i].lock, NULL);
		slot_open_udp(&slots[i], i, &r);
	}
}

/* At the end: every slot closed (files checked), what the workers counted. */
static void teardown(struct counters *sum, struct worker *w_main)
{
	for (unsigned i = 0; i < opt.nslots; i++) {
		lock_slot(i);
		if (slots[i].kind == SLOT_UDP) {
			disown_fd(slots[i].fd);
			gen_ended(&slots[i], END_TEARDOWN);
			close(slots[i].fd);
			slots[i].kind = SLOT_CLOSED;
		} else if (slots[i].kind != SLOT_CLOSED) {
			slot_release(w_main, i);
		}
		unlock_slot(i);
		atomic_fetch_add(&progress[opt.threads + 2], 1);
	}
	close(handler_fd);
	for (unsigned i = 0; i < opt.threads; i++)
		sum_counters(sum, &workers[i].c);
	sum_counters(sum, &w_main->c);
}

int main(int argc, char **argv)
{
	pthread_t signaller, toggler;
	struct counters sum = { 0 };
	struct worker *w_main;
	int64_t next_hb;

	parse_options(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup_memory();
	setup_signals();
	setup_slots();
	workers = calloc(opt.threads + 1, sizeof(*workers));
	if (!workers)
		die("calloc");
	w_main = &workers[opt.threads];
	rng_seed(&w_main->rng, opt.seed, 998);
	t0_ns = now_ns();
	deadline_ns = t0_ns + (int64_t)opt.seconds * 1000000000;
	next_fork_ns = t0_ns + 1000000000;
	next_closefrom_ns = t0_ns + 2000000000;
	for (unsigned i = 0; i < opt.threads; i++) {
		workers[i].id = i;
		rng_seed(&workers[i].rng, opt.seed, i);
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]))
			die("pthread_create");
	}
	if (pthread_create(&signaller, NULL, signaller_main, NULL) ||
	    pthread_create(&toggler, NULL, toggler_main, NULL))
		die("pthread_create");
	next_hb = now_ns() + 1000000000;
	for (;;) {
		bool all_done = true;

		for (unsigned i = 0; i < opt.threads; i++)
			all_done &= atomic_load(&done[i]);
		if (all_done)
			break;
		sleep_ns(100000000);
		atomic_fetch_add(&progress[opt.threads + 2], 1);
		if (now_ns() >= next_hb) {
			heartbeat();
			next_hb += 1000000000;
		}
	}
	atomic_store(&stop_helpers, true);	/* before a worker is joined: pthread_kill */
	pthread_join(signaller, NULL);
	pthread_join(toggler, NULL);
	for (unsigned i = 0; i < opt.threads; i++)
		pthread_join(workers[i].thread, NULL);
	heartbeat();
	teardown(&sum, w_main);
	heartbeat();
	write_history();
	print_result(&sum);
	return 0;
}
