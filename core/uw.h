/* SPDX-License-Identifier: MIT */
/*
 * udpweave core: types shared by core/, backend/ and preload/.
 *
 * Conventions: functions return a count or -errno; only preload/ sets errno.
 * The core makes no system call of its own: it reaches the kernel through
 * struct uw_sys (the real libc functions in the preload build, fakes or
 * --wrap'ed libc in unit tests).
 */
#ifndef UW_CORE_H
#define UW_CORE_H

#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/*
 * ThreadSanitizer builds: TSan's interceptors of blocking calls (usleep,
 * nanosleep, poll, recv, ...) ignore every interceptor called inside
 * them, pthread_mutex_lock included. The library runs inside them (a
 * flush before a sleep or a read, the application's call having gone
 * through TSan's interceptor first), so TSan would not see its locks
 * there and report races on what they protect. The lock operations are
 * annotated as well, which TSan records even there.
 */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>

static inline int uw_tsan_mutex_lock(pthread_mutex_t *m)
{
	int r = pthread_mutex_lock(m);

	if (!r)
		__tsan_acquire(m);
	return r;
}

static inline int uw_tsan_mutex_trylock(pthread_mutex_t *m)
{
	int r = pthread_mutex_trylock(m);

	if (!r)
		__tsan_acquire(m);
	return r;
}

static inline int uw_tsan_mutex_unlock(pthread_mutex_t *m)
{
	__tsan_release(m);
	return pthread_mutex_unlock(m);
}

#define pthread_mutex_lock	uw_tsan_mutex_lock
#define pthread_mutex_trylock	uw_tsan_mutex_trylock
#define pthread_mutex_unlock	uw_tsan_mutex_unlock
/* The same for a publication by an atomic store-release / load-acquire
 * pair, whose atomics TSan ignores there too. */
#define uw_tsan_release(p)	__tsan_release((void *)(p))
#define uw_tsan_acquire(p)	__tsan_acquire((void *)(p))
#else
#define uw_tsan_release(p)	((void)0)
#define uw_tsan_acquire(p)	((void)0)
#endif

#define UW_MAX_PAYLOAD_V4	65507u	/* 65535 - 20 (IPv4) - 8 (UDP) */
#define UW_MAX_PAYLOAD_V6	65527u	/* 65535 - 8 (UDP), no jumbograms */
#define UW_GSO_MAX_SEGS		64u
#define UW_GSO_MAX_BYTES	65507u
#define UW_HELD_CLASSES		7u	/* held runs' pool: 2 KiB .. 128 KiB (core/held.c) */
/* A largest segment that no datagram fits: datagrams go alone, no GSO. */
#define UW_SEG_PLAIN		1u
#define UW_UIO_MAXIOV		1024
#define UW_PASS			(-100000)	/* "call the real function" */

#define UW_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define UW_ALIGN8(x)		(((x) + 7u) & ~(size_t)7u)
#define UW_NSEC_PER_USEC	1000ull

/* ---- system calls the core and backends may make ---------------------- */

struct uw_addr;

struct uw_sys {
	ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
	int (*sendmmsg)(int fd, struct mmsghdr *vec, unsigned int vlen, int flags);
	int (*poll)(struct pollfd *fds, nfds_t n, int timeout_ms);
	int (*socket)(int domain, int type, int protocol);
	int (*connect)(int fd, const struct sockaddr *sa, socklen_t len);
	int (*close)(int fd);
	int (*getsockopt)(int fd, int level, int opt, void *val, socklen_t *len);
	int (*getsockname)(int fd, struct sockaddr *sa, socklen_t *len);
	int (*bind)(int fd, const struct sockaddr *sa, socklen_t len);
	ssize_t (*sendto)(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *to, socklen_t tolen);
	int (*setsockopt)(int fd, int level, int opt, const void *val, socklen_t len);
	int (*nanosleep)(const struct timespec *req, struct timespec *rem);
	uint64_t (*now_ns)(void);		/* CLOCK_MONOTONIC */
	void (*log_write)(const char *line, size_t len);
	void (*thread_setup)(void);	/* optional, in the flush thread */
	/* optional: after each flush, with the flush lock held */
	void (*after_flush)(uint64_t now_ns);
	/* optional: 1 when the egress qdisc toward dest releases packets at
	 * their departure times (fq), 0 when not, -errno when unknown */
	int (*egress_paces)(const struct uw_addr *dest);
	/* optional: 1 when the egress qdisc toward dest is a shaper (tbf,
	 * htb...), 0 when not, -errno when unknown */
	int (*egress_shapes)(const struct uw_addr *dest);
	/* optional: the fd's status flags (fcntl F_GETFL), -1 when unknown */
	int (*fd_flags)(int fd);
};

/* ---- per-stream metrics and destination rules (core/rules.c) ---------- */

/* A field 0 is "not set". */
struct uw_metrics {
	uint64_t rate_bps;
	uint32_t jitter_us;
	uint32_t delay_us;
};

#define UW_MAX_RULES	32
#define UW_MAX_TIME_US	10000000u		/* jitter and delay: 10 s */
#define UW_MAX_RATE_BPS	1000000000000ull	/* 1 Tbit/s */

/* One UDPWEAVE_RULES entry: a destination prefix, an optional port. */
struct uw_rule {
	int family;			/* AF_INET, AF_INET6; AF_UNSPEC: '*' */
	unsigned int prefix_len;
	uint16_t port;			/* host order; 0: any port */
	uint16_t index;			/* 1-based position in UDPWEAVE_RULES */
	unsigned char addr[16];		/* network order, host bits zero */
	struct uw_metrics m;
};

/* Parse a UDPWEAVE_RULES value into rules[], most specific first (longest
 * prefix, then with a port, then the later in the string). Returns 0, or
 * -EINVAL with one readable line (no newline) in err. */
int uw_rules_parse(const char *s, struct uw_rule *rules, unsigned int *n,
		   char *err, size_t errlen);
/* The most specific rule matching dest, or NULL. */
const struct uw_rule *uw_rules_match(const struct uw_rule *rules, unsigned int n,
				     const struct uw_addr *dest);

/* ---- configuration (core/config.c) ------------------------------------ */

enum uw_log_level { UW_LOG_ERROR, UW_LOG_WARN, UW_LOG_INFO, UW_LOG_DEBUG };

/* UDPWEAVE_TRACE: when the LTTng-UST provider is loaded (preload/trace.c) */
enum uw_trace_mode {
	UW_TRACE_AUTO,		/* a session daemon is reachable */
	UW_TRACE_OFF,
	UW_TRACE_ON,
};

struct uw_config {
	char backend[16];
	uint32_t max_delay_us;
	uint32_t interval_us;		/* 0: unset */
	uint32_t arena_kb;
	uint32_t rt_priority;		/* SCHED_FIFO flush thread; 0: off */
	uint32_t interleave_burst;	/* datagrams per destination in a row; 1: flow */
	bool packet_qdisc_bypass;	/* packet backend: PACKET_QDISC_BYPASS */
	bool packet_gso;		/* packet backend: GSO frames (PACKET_VNET_HDR) */
	uint32_t uring_zc_bytes;	/* uring: smallest zero-copy message; 0: off */
	enum uw_trace_mode trace;	/* UDPWEAVE_TRACE */
	bool sync;			/* UDPWEAVE_SYNC: UW_SOCK_SYNC honoured */
	bool step_aside;		/* UDPWEAVE_STEP_ASIDE: lonely, interactive */
	char stats_path[PATH_MAX];	/* "" unset, "stderr", or a path (%p) */
	enum uw_log_level log_level;
	bool disabled;			/* UDPWEAVE_DISABLE=1 */
	bool passthrough;		/* bad configuration: hands off */
	unsigned int nrules;		/* UDPWEAVE_RULES */
	struct uw_rule rules[UW_MAX_RULES];
};

void uw_config_defaults(struct uw_config *cfg);
/* Parse the UDPWEAVE_* entries of an environ-style array. Returns 0, or
 * -EINVAL with one readable line (no newline) in msg; cfg is then defaults
 * with passthrough set. An unknown UDPWEAVE_* name is ignored but named in
 * msg (a warning) with a 0 return. */
int uw_config_parse(struct uw_config *cfg, char *const *env, char *msg, size_t msglen);

/* ---- logging (core/log.c) --------------------------------------------- */

void uw_log_init(const struct uw_sys *sys, enum uw_log_level level);
void uw_log(enum uw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define uw_warn(...)	uw_log(UW_LOG_WARN, __VA_ARGS__)
#define uw_info(...)	uw_log(UW_LOG_INFO, __VA_ARGS__)
#define uw_debug(...)	uw_log(UW_LOG_DEBUG, __VA_ARGS__)

/* ---- application memory (core/ucopy.c) -------------------------------- */

/* Copy n bytes from the application: 0, or -EFAULT where the kernel would
 * say so (a fault during the copy; needs the fault handler of
 * preload/signal.c, which calls uw_fault_fixup). */
long uw_copy_from_user(void *dst, const void *src, size_t n);
/* The same where the destination is the application's too (dst of
 * uw_copy_from_user is the library's own memory). */
long uw_copy_to_user(void *dst, const void *src, size_t n);
/* From a SIGSEGV/SIGBUS handler: a fault at one of the copies above is
 * moved to its fixup (true); any other fault is not ours (false). */
bool uw_fault_fixup(void *ucontext);

/* ---- addresses --------------------------------------------------------- */

/* A destination as the kernel sees it; len 0 means "the connected peer". */
struct uw_addr {
	socklen_t len;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} u;
};

bool uw_addr_equal(const struct uw_addr *a, const struct uw_addr *b);
void uw_addr_format(const struct uw_addr *a, char *out, size_t len);
uint32_t uw_addr_hash(const struct uw_addr *a);

/* ---- sockets and the fd table (core/fdtable.c) ------------------------- */

enum {
	UW_SOCK_CONNECTED	= 1u << 0,
	UW_SOCK_NO_GSO		= 1u << 1,	/* kernel refused UDP_SEGMENT */
	UW_SOCK_BOUND		= 1u << 2,	/* has a local port */
	/* The application relies on kernel state a queue would break:
	 * every send of such a socket goes straight to the kernel. */
	UW_SOCK_CORKED		= 1u << 3,	/* UDP_CORK */
	UW_SOCK_APP_GSO		= 1u << 4,	/* its own UDP_SEGMENT */
	UW_SOCK_SHUT		= 1u << 5,	/* shutdown(SHUT_WR) */
	/* its fd no longer names the socket (closed or replaced behind the
	 * library's back): nothing more is queued or sent for it */
	UW_SOCK_GONE		= 1u << 7,
	UW_SOCK_BYPASS		= UW_SOCK_CORKED | UW_SOCK_APP_GSO | UW_SOCK_SHUT | UW_SOCK_GONE,
	UW_SOCK_TXTIME		= 1u << 6,	/* SO_TXTIME set by the library */
	/* a new or newly connected socket, or one a flush found in error:
	 * its sends go straight to the kernel, so that the call the kernel
	 * fails is the one that fails, until one succeeds less than
	 * UW_SYNC_GAP of max delay after the one before (a socket sending
	 * slower than that would gain nothing from a queue) and at least
	 * UW_SYNC_HOLD_NS after the kernel's last error for it (an ICMP
	 * error comes a round trip after the send that caused it) */
	UW_SOCK_SYNC		= 1u << 8,
	/* datagrams a full socket refused wait on its own list (core/held.c):
	 * they go before anything later of the socket */
	UW_SOCK_HELD		= 1u << 9,
	/* the process reads this socket too (request/response: DNS, RTCP,
	 * ping-pong): its sends go straight to the kernel, and its queue
	 * goes before a read of it, until it sends UW_INTERACTIVE_BURST
	 * datagrams without a read in between (a stream that reads now and
	 * then: queued again) */
	UW_SOCK_INTERACTIVE	= 1u << 10,
};

struct uw_flowrec;
struct uw_flowtab;

struct uw_sock {
	_Atomic int fd;			/* the fd the library sends on */
	int family;			/* AF_INET or AF_INET6 */
	_Atomic uint32_t flags;
	_Atomic int pending_err;	/* async error for the next send */
	int refs;			/* fds naming it (fdtable lock) */
	uint32_t id;			/* unique over the process's life */
	/* bumped after every bind, connect and setsockopt on the socket:
	 * what a backend derived from the socket's options is stale */
	_Atomic uint32_t opt_gen;
	_Atomic int mc_ifindex;		/* IP_MULTICAST_IF by index (ip_mreqn) */
	uint32_t queued;		/* datagrams queued (queue lock) */
	uint64_t qbytes;		/* their bytes (queue lock) */
	/* SO_SNDBUF as the kernel reports it (doubled); 0: unknown. The queue
	 * holds no more than that for the socket, a GSO run half of it. */
	_Atomic uint32_t sndbuf;
	struct uw_addr peer;		/* valid with UW_SOCK_CONNECTED */
	uint32_t mtu;			/* cached path MTU, connected sockets */
	uint64_t mtu_expiry_ns;
	uint32_t batch_gen;		/* batch builder marks (flush lock) */
	uint32_t verify_gen;		/* identity checked in this flush (flock) */
	/* flushes in a row that had one datagram of it (flock) */
	uint32_t lonely_gen, lonely_done, flush_dgrams, lonely_run;
	uint64_t cookie;		/* SO_COOKIE at registration; 0: unknown */
	uint32_t batch_group;
	_Atomic uint64_t sync_last_ns;	/* its last send under UW_SOCK_SYNC */
	_Atomic uint64_t sync_err_ns;	/* the kernel's last error for it */
	_Atomic uint32_t sends_since_read;	/* UW_SOCK_INTERACTIVE */
	_Atomic bool sync_fast;		/* that one came soon after the one before */
	_Atomic uint8_t direct_why;	/* enum uw_direct_why: why UW_SOCK_SYNC */
	/* its datagrams so far: queued (written under qlock), and handed to
	 * the kernel at its calls (any thread) */
	_Atomic uint64_t n_queued, n_direct;
	/* held datagrams (core/held.c): the list, its drainer (hold_lock);
	 * the core's list of sockets with some (uw_core.held_lock) */
	pthread_mutex_t hold_lock;
	struct uw_held *held_head, *held_tail;
	bool draining;
	_Atomic uint64_t held_retry_ns;	/* ENOBUFS: not before then (hold_lock) */
	uint32_t held_backoff_ns;
	_Atomic bool held_listed;	/* written under uw_core.held_lock */
	struct uw_sock *held_link;
	struct uw_sock *next_free;
	/* pacing (qlock) */
	struct uw_metrics metrics;	/* set by the application */
	struct uw_flowtab *recs;	/* flow records, by destination */
	struct uw_flowrec *last_rec;	/* the one used last */
};

/* Why a socket's sends go to the kernel at their calls (UW_SOCK_SYNC); its
 * mode in the stats' socket_list. */
enum uw_direct_why {
	UW_DIRECT_FIRST,		/* its first sends, or a new peer's */
	UW_DIRECT_ERROR,		/* after an error of the kernel's */
	UW_DIRECT_LONELY,		/* a batch of it saves nothing */
};

static inline void uw_sock_go_direct(struct uw_sock *s, enum uw_direct_why why)
{
	atomic_store_explicit(&s->direct_why, (uint8_t)why, memory_order_relaxed);
	atomic_fetch_or_explicit(&s->flags, UW_SOCK_SYNC, memory_order_relaxed);
}

static inline uint32_t uw_sock_flags(struct uw_sock *s)
{
	return atomic_load_explicit(&s->flags, memory_order_relaxed);
}

static inline void uw_sock_set(struct uw_sock *s, uint32_t f)
{
	atomic_fetch_or_explicit(&s->flags, f, memory_order_relaxed);
}

static inline void uw_sock_clear(struct uw_sock *s, uint32_t f)
{
	atomic_fetch_and_explicit(&s->flags, ~f, memory_order_relaxed);
}

#define UW_FD_UNKNOWN	((uintptr_t)0)
#define UW_FD_FOREIGN	((uintptr_t)1)	/* not a socket: file, pipe, tty... */
#define UW_FD_OTHER_SOCK ((uintptr_t)2)	/* a socket, not UDP: TCP, Unix... */

/* The socket state a slot value names, if any. */
static inline struct uw_sock *uw_slot_sock(uintptr_t v)
{
	return v > UW_FD_OTHER_SOCK ? (struct uw_sock *)v : NULL;
}

struct uw_fdtable {
	_Atomic uintptr_t *slot;
	int nslots;
	_Atomic int max_fd;
	pthread_mutex_t lock;		/* refs, free list */
	struct uw_sock *free_list;
	/* optional: a sock's last reference is going, before it is reused */
	void (*release)(struct uw_sock *s, void *ctx);
	void *release_ctx;
};

int uw_fdtable_init(struct uw_fdtable *t, int nslots);
static inline uintptr_t uw_fdtable_peek(struct uw_fdtable *t, int fd)
{
	if ((unsigned)fd >= (unsigned)t->nslots)
		return UW_FD_FOREIGN;
	return atomic_load_explicit(&t->slot[fd], memory_order_acquire);
}
struct uw_sock *uw_sock_new(struct uw_fdtable *t, int fd, int family);
/* Point fd at sock (NULL: unknown, taking a reference); returns the sock
 * fd pointed at before, whose reference the caller now owns, or NULL. */
struct uw_sock *uw_fdtable_install(struct uw_fdtable *t, int fd, struct uw_sock *s);
/* Mark an unclassified fd as not ours (UW_FD_FOREIGN or UW_FD_OTHER_SOCK). */
void uw_fdtable_mark_foreign(struct uw_fdtable *t, int fd, uintptr_t what);
/* Install s at fd only if fd is still unclassified; returns what fd names
 * afterwards (s, or the sock another thread installed first, or NULL). */
struct uw_sock *uw_fdtable_adopt(struct uw_fdtable *t, int fd, struct uw_sock *s);
/* Return a sock that was never installed. */
void uw_sock_discard(struct uw_fdtable *t, struct uw_sock *s);
/* Drop a reference taken by install; returns true if it was the last. */
bool uw_sock_put(struct uw_fdtable *t, struct uw_sock *s);
/* Another fd still naming s, or -1. */
int uw_fdtable_other_fd(struct uw_fdtable *t, struct uw_sock *s, int not_fd);

/* ---- statistics (core/stats.c) ----------------------------------------- */

enum uw_flush_reason {
	UW_FLUSH_DEADLINE, UW_FLUSH_INTERVAL, UW_FLUSH_ARENA_FULL,
	UW_FLUSH_CLOSE, UW_FLUSH_BARRIER, UW_FLUSH_EXIT, UW_FLUSH_FORK,
	UW_FLUSH_EXEC, UW_FLUSH_EXPLICIT, UW_FLUSH_PACED, UW_FLUSH_SIGNAL,
	UW_FLUSH_SNDBUF,	/* a socket's queue reached its send buffer */
	UW_FLUSH_SLEEP,		/* due while the sending thread sleeps */
	UW_FLUSH__COUNT
};

/* Flush-thread lateness: quarter-octave buckets of microseconds (0, 1, 2,
 * 3, then 4-5, 5-6, 6-7, 7-8, 8-10, ... up to 2^17 µs, and above). */
#define UW_LATE_BUCKETS		64
unsigned int uw_late_bucket(uint64_t ns);
uint64_t uw_late_bucket_upper_us(unsigned int i);
/* The p-quantile (0 < p < 1) of a histogram, as its bucket's upper bound
 * in µs; 0 when empty. */
uint64_t uw_late_quantile_us(const uint64_t *hist, double p);

/* A paced flow as the stats show it (a snapshot the flusher keeps). */
#define UW_STATS_FLOWS		8

struct uw_flow_stat {
	const void *key;		/* its flow record; NULL: free slot */
	int fd;
	struct uw_addr dest;		/* the peer's for a connected flow */
	struct uw_metrics m;		/* in effect */
	uint64_t est_bps;
	uint32_t quantum_us;
	uint8_t mode, refused;
	uint64_t updated_ns;
};

extern const char *const uw_flush_reason_name[UW_FLUSH__COUNT];

struct uw_stats {
	_Atomic uint64_t datagrams_in, bytes_in;
	_Atomic uint64_t datagrams_out, bytes_out, datagrams_dropped;
	_Atomic uint64_t dropped_sock_gone;	/* of those: their socket was gone */
	_Atomic uint64_t held_datagrams;	/* a full socket's, sent later (core/held.c) */
	_Atomic uint64_t held_dropped;		/* of those: never sent (closed, exit, refused) */
	_Atomic uint64_t held_sends;		/* send calls for them (in syscalls too) */
	_Atomic uint64_t interactive_sockets;	/* sockets found read as well as sent on */
	_Atomic uint64_t lonely_sockets;	/* sent to the kernel again: slow (issue 13) */
	_Atomic uint64_t passthrough_calls;	/* app calls handed to the kernel as they were */
	/* app calls handed to the kernel to judge (UW_SOCK_SYNC: a socket's
	 * first sends, or after an error): the datagrams and bytes it took
	 * (counted in datagrams_in/out too), the calls it failed */
	_Atomic uint64_t sync_calls, sync_datagrams, sync_bytes, sync_errors;
	_Atomic uint64_t syscalls;		/* send calls made by the library */
	_Atomic uint64_t batches, messages, gso_runs, gso_segments, segments_max;
	_Atomic uint64_t fallbacks_gso, gso_split_mtu, retries;
	_Atomic uint64_t async_errors;
	_Atomic uint64_t async_errno[134];	/* by errno (< 134) */
	/* per backend */
	_Atomic uint64_t mmsg_calls, mmsg_messages;	/* sendmmsg */
	_Atomic uint64_t pt_calls;			/* passthrough sendmsg */
	struct uw_packet_stats {
		_Atomic uint64_t frames, bytes, kicks, kick_retries, ring_waits;
		_Atomic uint64_t gso_frames, rings, ring_bytes;
		_Atomic uint64_t netlink_queries, resolves, neigh_triggers;
		_Atomic uint64_t longest_burst;
		_Atomic uint64_t fallback[16];		/* datagrams, by enum uw_pkt_fb */
	} pkt;
	_Atomic uint64_t uring_enters, uring_sqes;	/* io_uring_enter, SQEs */
	_Atomic uint64_t uring_zc_sends, uring_zc_notifs, uring_zc_copied;
	_Atomic uint64_t uring_requeued;	/* SQEs submitted again after a cut chain */
	_Atomic uint64_t uring_mmsg_batches;	/* sent by mmsg: no io_uring */
	_Atomic uint64_t uring_ring_failures;	/* io_uring_enter failed for good */
	_Atomic uint64_t flushes[UW_FLUSH__COUNT];
	_Atomic uint64_t flushes_by_thread;	/* of those, by the flush thread */
	_Atomic uint64_t flusher_signals;	/* the flush thread woken by a send */
	_Atomic uint64_t max_queue_delay_ns;
	/* flushes by how long their oldest datagram had waited: below 250 µs,
	 * 500, 1000, 2000, 4000, 8000 µs, and above */
	_Atomic uint64_t queue_delay_hist[7];
	_Atomic uint64_t max_wake_late_ns;	/* flush thread behind its due time */
	_Atomic uint64_t arena_high_water;
	/* pacing */
	_Atomic uint64_t paced_datagrams;	/* queued with a due time */
	_Atomic uint64_t direct_datagrams;	/* not admitted: sent as they came */
	_Atomic uint64_t refusals;		/* flows found not admissible */
	_Atomic uint64_t txtime_messages;	/* sent with SCM_TXTIME */
	_Atomic uint64_t pace_flows;		/* flow records now */
	_Atomic uint64_t precision_ns;		/* wake-up precision in use */
	_Atomic uint64_t wake_late_hist[UW_LATE_BUCKETS];
	pthread_mutex_t flow_stat_lock;
	struct uw_flow_stat flow_stat[UW_STATS_FLOWS];
};

static inline void uw_stat_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* For counters only ever written under one lock: a plain add, no locked
 * instruction (readers elsewhere still see whole values). */
static inline void uw_stat_add_locked(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static inline void uw_stat_max(_Atomic uint64_t *c, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(c, memory_order_relaxed);

	while (v > cur &&
	       !atomic_compare_exchange_weak_explicit(c, &cur, v, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

void uw_stats_reset(struct uw_stats *st);
void uw_stats_note_delay(struct uw_stats *st, uint64_t ns);
void uw_stats_note_late(struct uw_stats *st, uint64_t ns);
/* JSON object, NUL-terminated; returns its length or -ENOSPC. */
int uw_stats_json(const struct uw_stats *st, const char *backend, char *buf, size_t len);
/* core/socklist.c: "socket_list": [...] of the open sockets and the last
 * ones closed, as many as fit in len (0 if none fits); a closed socket's
 * last state is kept by uw_socklist_closed. */
struct uw_core;
int uw_socklist_json(struct uw_core *c, char *buf, size_t len);
void uw_socklist_closed(struct uw_core *c, struct uw_sock *s);

/* ---- batches: what a flush hands to a backend (core/batch.c) ----------- */

/* One message: nseg datagrams of one flow, all seg_size bytes but the last
 * (which may be shorter); nseg == 1 means a plain datagram (no GSO). */
struct uw_run {
	struct uw_sock *sock;
	const struct uw_addr *dest;	/* len 0: connected peer */
	struct iovec *iov;		/* one per datagram */
	uint32_t nseg;
	uint32_t seg_size;
	uint32_t bytes;
	uint32_t dropped;		/* out: datagrams the kernel refused */
	uint32_t dropped_bytes;
	/* out: the last held datagrams were not sent, the socket being full
	 * (EAGAIN): the core keeps them (core/held.c) */
	uint32_t held;
	uint32_t held_bytes;
	uint32_t flow;			/* the flow's ordinal in the batch */
	uint64_t txtime_ns;		/* departure time (SO_TXTIME); 0: none */
};

/* All runs of one socket, flows interleaved round-robin. */
struct uw_group {
	struct uw_sock *sock;
	struct uw_run *runs;
	size_t nruns;
};

struct uw_batch {
	struct uw_group *groups;
	size_t ngroups;
	struct uw_run *runs;
	size_t nruns;
	size_t nflows;			/* run.flow < nflows */
	uint64_t datagrams, bytes;
};

/* ---- backends (backend/) ----------------------------------------------- */

struct uw_backend;
struct uw_arena;

struct uw_backend_ops {
	const char *name;
	int  (*open)(struct uw_backend *be, const struct uw_config *cfg);
	/* Send every run; sets run->err for runs that could not be sent.
	 * Returns 0 or -errno if the backend itself failed. */
	int  (*send_batch)(struct uw_backend *be, struct uw_batch *b);
	/* Largest GSO segment the path to dest carries; 0: no GSO. Optional. */
	uint32_t (*max_segment)(struct uw_backend *be, struct uw_sock *s,
				const struct uw_addr *dest);
	void (*close)(struct uw_backend *be);
	/* In a forked child, locks held: drop what the parent owns (rings,
	 * mappings shared with the parent). Optional. */
	void (*fork_child)(struct uw_backend *be);
	/* Attaches run->txtime_ns to what it sends (SCM_TXTIME): the core
	 * hands the kernel's fq the release of such runs. */
	bool txtime;
	/* Sends every socket's runs of a batch in one call (a submission, a
	 * ring kick): a socket's lone datagram still shares that call; from
	 * cross_min_socks sockets in the batch on (0: 1). */
	bool cross_socket;
	uint32_t cross_min_socks;
};

struct uw_backend {
	const struct uw_backend_ops *ops;
	const struct uw_sys *sys;
	struct uw_stats *stats;
	const struct uw_arena *arena;	/* the staging memory (set before open) */
	void *priv;
};

const struct uw_backend_ops *uw_backend_find(const char *name);
extern const struct uw_backend_ops uw_backend_mmsg;
extern const struct uw_backend_ops uw_backend_passthrough;
extern const struct uw_backend_ops uw_backend_packet;
extern const struct uw_backend_ops uw_backend_uring;
extern const struct uw_backend_ops uw_backend_auto;	/* uring choosing per batch */

/* ---- the queue: staging arena, flows, flush (core/queue.c) ------------- */

struct uw_dgram {
	struct uw_dgram *next;
	uint32_t len;
	uint32_t pad;
	uint64_t due_ns;		/* paced: when it should leave; else 0 */
	unsigned char data[];
};

#define UW_FLOW_BUCKETS 1024

/* A flow's datagrams in one stage. */
struct uw_flow {
	struct uw_flow *hash_next, *next;
	struct uw_sock *sock;
	struct uw_addr dest;
	struct uw_dgram *head, *tail;
	uint32_t count;
	uint32_t bucket;
	uint64_t bytes;
	struct uw_flowrec *rec;		/* its record (pacing on), or NULL */
	uint64_t cut_ns;		/* largest due-time spread of a GSO run */
	bool txtime;			/* runs carry their departure time */
};

/* How a flow is sent (its plan, core/pace.c). */
enum uw_pace_mode {
	UW_PACE_NONE,		/* no metrics: the global maximum delay */
	UW_PACE_USER,		/* released by the timing wheel */
	UW_PACE_KERNEL,		/* handed over ahead, released by fq (SO_TXTIME) */
	UW_PACE_DIRECT,		/* not admitted: each datagram as it comes */
};

#define UW_REFUSE_JITTER	0x1u	/* below the flush thread's precision */
#define UW_REFUSE_DELAY		0x2u	/* no room for a quantum in it */
#define UW_REFUSE_RATE		0x4u	/* the arena cannot hold it */

#define UW_PACE_GRAIN_NS	50000ull	/* quanta are GRAIN << k */
#define UW_PACE_MAX_QUANTUM_NS	(UW_PACE_GRAIN_NS << 12)	/* 204.8 ms */
#define UW_PACE_MAX_OFFSET_NS	1000000000ull	/* fq drops beyond its horizon */
#define UW_PACE_TARGET_BYTES	UW_GSO_MAX_BYTES	/* a run worth the call */
#define UW_PACE_PRECISION0_NS	100000ull	/* until measured */
#define UW_PACE_REPLAN_NS	100000000ull	/* plans follow the estimates */
#define UW_RATE_WINDOW_NS	100000000ull	/* EWMA sample, weight 1/4 */

struct uw_pace_in {
	struct uw_metrics m;		/* in effect (0: not set) */
	uint64_t est_bps;		/* measured rate, 0: unknown */
	uint64_t precision_ns;		/* flush thread's wake-up precision */
	uint32_t default_delay_us;	/* UDPWEAVE_MAX_DELAY_US */
	uint32_t interval_us;		/* UDPWEAVE_INTERVAL_US, 0: unset */
	bool kernel;			/* fq on the egress, a txtime backend */
	bool paced;			/* paced already: stays paced, degraded,
					 * if its metrics can no longer be met */
	uint64_t arena_room;		/* bytes this flow may hold */
};

struct uw_pace_plan {
	enum uw_pace_mode mode;
	uint32_t refused;		/* UW_REFUSE_* */
	uint64_t quantum_ns;		/* release grid */
	uint64_t offset_ns;		/* due = enqueue + offset */
	uint64_t lead_ns;		/* handed over this long before due */
	uint64_t cut_ns;		/* largest due spread of a GSO run */
	uint64_t hold_bytes;		/* arena it needs at its configured rate */
};

/* The plan of a flow: pure arithmetic (core/pace.c). */
void uw_pace_plan(const struct uw_pace_in *in, struct uw_pace_plan *out);

/*
 * A flow record: what the library keeps about a (socket, destination)
 * between flushes while pacing is on: its metrics, plan, rate estimate.
 * Fields are the queue lock's unless said otherwise.
 */
struct uw_flowrec {
	struct uw_sock *sock;
	struct uw_addr dest;		/* len 0: the connected peer */
	uint16_t rule;			/* matching rule's index, 0: none */
	bool kernel_ok;			/* egress is fq, SO_TXTIME set */
	bool stale;			/* the peer changed: skipped by lookups */
	struct uw_metrics rule_m;	/* from the rule */
	struct uw_metrics m;		/* in effect */
	struct uw_pace_plan plan;
	uint64_t reserved;		/* arena bytes counted for admission */
	uint64_t replan_ns;
	uint64_t last_release_ns;	/* releases never go back: flow order */
	uint64_t last_due_ns;		/* nor departure times */
	uint64_t last_used_ns;
	struct uw_stage *stage;		/* the stage it queued into last */
	uint32_t stage_gen;
	uint32_t queued;		/* datagrams in stages */
	/* flush lock */
	uint64_t win_start_ns, win_bytes;
	uint32_t build_gen;
	struct uw_dgram *build_tail;
	_Atomic uint64_t est_bps;	/* written under the flush lock */
};

struct uw_flowtab {
	uint32_t cap, n;		/* cap a power of two */
	struct uw_flowrec *slot[];
};

/*
 * The staging memory: UDPWEAVE_ARENA_KB cut into equal chunks. The stage
 * being filled takes chunks as it needs them; a stage being sent holds its
 * chunks until the kernel has them all. So a batch can use all the memory
 * that is not being sent, and memory stays bounded. (qlock)
 */
struct uw_chunk {
	struct uw_chunk *next;
	unsigned char *base;
	size_t used;
};

struct uw_arena {
	unsigned char *mem;
	struct uw_chunk *chunk;		/* all of them */
	struct uw_chunk *free;
	size_t chunk_size;
	unsigned int nchunks, nfree;
};

/* Chunks are at least this large: a maximal datagram and a flow fit. */
#define UW_CHUNK_MIN	(80u * 1024u)

int uw_arena_init(struct uw_arena *a, size_t total);
void uw_arena_free(struct uw_arena *a);

struct uw_stage {
	struct uw_arena *arena;
	uint64_t release_ns;		/* wheel stages: when it is sent */
	uint32_t gen;			/* bumped each time a wheel stage opens */
	bool open;			/* in the wheel, taking datagrams */
	struct uw_stage *next_free;
	struct uw_chunk *chunks;	/* the current one first */
	size_t used;			/* bytes taken, over all its chunks */
	uint32_t ndgrams;
	uint64_t nbytes;
	uint64_t oldest_ns;
	struct uw_flow *flows, *flows_tail;
	uint32_t nflows;
	struct uw_flow *bucket[UW_FLOW_BUCKETS];
};

/*
 * The timing wheel (Carousel, SIGCOMM 2017): paced datagrams are queued in
 * the stage of their release time, a multiple of their flow's quantum;
 * the flush thread wakes at the earliest and sends that stage whole. Open
 * stages are kept sorted by release time. (qlock)
 */
#define UW_WHEEL_STAGES 32

struct uw_wheel {
	struct uw_stage *open[UW_WHEEL_STAGES];
	unsigned int nopen;
	struct uw_stage *free;
	struct uw_stage stages[UW_WHEEL_STAGES];
};

/* Scratch memory of the (single) flushing thread, grow-only. */
struct uw_scratch {
	struct uw_run *runs;
	size_t runs_cap;
	struct iovec *iov;
	size_t iov_cap;
	struct uw_group *groups;
	size_t groups_cap;
	struct uw_flow **flows;
	size_t flows_cap;
	struct uw_flow **cand;		/* flows of all stages, merged */
	size_t cand_cap;
	uint32_t *maxseg;		/* per flow, in group order */
	size_t maxseg_cap;
	uint32_t gen;
};

/* A socket as the stats' socket_list shows it (core/socklist.c). */
struct uw_sock_rec {
	int fd;
	uint32_t id;
	uint32_t flags;
	uint8_t why;
	uint64_t queued, direct;
};

#define UW_SOCKLIST_CLOSED	16	/* the last sockets closed */

struct uw_core {
	struct uw_config cfg;
	const struct uw_sys *sys;
	struct uw_backend be;
	struct uw_stats stats;
	struct uw_fdtable fds;

	pthread_mutex_t socklist_lock;	/* closed[], nclosed */
	struct uw_sock_rec closed[UW_SOCKLIST_CLOSED];
	uint64_t nclosed;
	pthread_mutex_t qlock;		/* the active stage, sock->queued */
	pthread_mutex_t flock;		/* one flush at a time, owns the other stage */
	pthread_cond_t wake;		/* flusher sleeps here (qlock) */
	struct uw_arena arena;
	struct uw_stage stage[2];
	int active;
	struct uw_scratch scratch;	/* flock */
	uint32_t verify_gen;		/* flushes, for uw_sock.verify_gen (flock) */
	uint32_t lonely_gen;		/* flushes, for uw_sock.lonely_gen (flock) */
	_Atomic uint64_t queued_total;	/* datagrams in both stages */
	/* a datagram to a loopback address is queued: a read of this
	 * process must see it (uw_core_before_read) */
	_Atomic bool local_queued;
	/* sockets with held datagrams (core/held.c) */
	pthread_mutex_t held_lock;
	struct uw_sock *held_socks;
	_Atomic uint32_t nheld_socks;
	uint64_t held_next_ns;		/* the flush thread's next retry (qlock) */
	_Atomic uint64_t sync_publish_ns;	/* live stats from sync sends, next */
	/* freed runs kept for the next ones (core/held.c, held_pool_lock):
	 * a full socket holds and frees its runs by the thousand a second,
	 * and malloc would give the pages back and fault them in again */
	pthread_mutex_t held_pool_lock;
	struct uw_held *held_pool[UW_HELD_CLASSES];
	size_t held_pool_bytes, held_pool_cap;
	_Atomic bool udp_reader;	/* the process has read from a UDP socket */
	/* direct sends in the current max-delay window (cross-socket backends) */
	_Atomic uint64_t sync_win_ns;
	_Atomic uint32_t sync_win_n;

	/* senders check the deadline every check_every datagrams (qlock) */
	uint32_t check_every, since_check;
	uint64_t last_check_ns;

	/* flusher state (qlock) */
	bool flusher_running;
	bool flusher_failed;		/* no thread: flush inline */
	bool stopping;
	uint64_t flusher_until;		/* asleep until (UINT64_MAX: no
					 * deadline); 0: awake */
	bool queued_since_tick;		/* a stage started since its last wake */
	pthread_t flusher;
	uint64_t slack_ns;

	/* pacing */
	_Atomic bool pace_on;		/* rules, or a socket with metrics */
	struct uw_wheel *wheel;		/* qlock; allocated on first use */
	uint64_t pace_reserved;		/* arena bytes of admitted flows (qlock) */
	uint64_t late_recent[UW_LATE_BUCKETS];	/* flusher only */
	uint32_t late_samples;
};

int uw_core_init(struct uw_core *c, const struct uw_config *cfg, const struct uw_sys *sys);
void uw_core_destroy(struct uw_core *c);

/* One application send, already split into iovecs. */
struct uw_msg {
	const struct iovec *iov;
	size_t iovlen;
	size_t len;
	int flags;
	const struct sockaddr *name;
	socklen_t namelen;
};

/* Queue one datagram: returns its length, -errno (a pending async error),
 * or UW_PASS after flushing the socket: the caller makes the real call. */
ssize_t uw_core_send(struct uw_core *c, struct uw_sock *s, const struct uw_msg *m);
/* Flush everything queued; returns datagrams sent. */
long uw_core_flush(struct uw_core *c, enum uw_flush_reason why);
/* Whether this thread is inside the library (its locks may be held), and
 * a terminating signal for it to act on when it leaves (through
 * uw_core_on_deferred: the preload edge's). Async-signal-safe. */
/* Before a read that may look for what this process sent to itself (recv,
 * FIONREAD, poll on a UDP socket): what is queued to loopback goes out. */
void uw_core_before_read(struct uw_core *c);
/* The process reads (or waits to read) socket s: it is interactive, and
 * what is queued for it goes now. */
void uw_core_note_read(struct uw_core *c, struct uw_sock *s);
/* A send of socket s handed to the kernel because of UW_SOCK_SYNC
 * (uw_sync_sock set to s by uw_core_send): what the kernel took (datagrams
 * <= 0: it refused); a success ends the socket's synchronous sends. */
extern __thread struct uw_sock *uw_sync_sock;
/* The kernel failed a send of s (at a flush): synchronous again, for a
 * while (UW_SOCK_SYNC). */
void uw_core_sync_error(struct uw_sock *s, uint64_t now_ns);
void uw_core_sync_done(struct uw_core *c, struct uw_sock *s, long datagrams, long bytes);
bool uw_core_inside(void);

/* ---- held datagrams (core/held.c) -------------------------------------- */

struct uw_held;
/* Kept for reuse: the pool's memory (the arena's size at most), and the
 * forked child's lists, the parent's to send, dropped uncounted. */
void uw_held_init(struct uw_core *c, size_t pool_cap);
void uw_held_free_pool(struct uw_core *c);
void uw_held_fork_child(struct uw_core *c);
/* How long close and exit wait for a full socket's room before they drop
 * (and count) what it still holds. */
#define UW_HELD_CLOSE_MS	1000
#define UW_HELD_EXIT_MS		2000
/* After a backend's send: r's held datagrams onto its socket's list (flock). */
void uw_held_park_run(struct uw_core *c, struct uw_run *r);
/* A flush meeting a socket with a list: f's datagrams join it (flock). */
void uw_held_take_flow(struct uw_core *c, struct uw_flow *f);
/* Send s's list: 0 when empty, -EAGAIN when still full after wait_ms
 * (0: never wait, -1: as long as it takes). */
int uw_held_drain(struct uw_core *c, struct uw_sock *s, int wait_ms);
/* Before s is closed: wait_ms for room, then what is left is dropped. */
void uw_held_close(struct uw_core *c, struct uw_sock *s, int wait_ms);
/* s's number is not s any more: its list is dropped, counted. */
void uw_held_forget(struct uw_core *c, struct uw_sock *s);
/* The flush thread: every socket's list once, never waiting. */
void uw_held_retry(struct uw_core *c);
/* Exit: every list, for at most wait_ms in all; then dropped, counted. */
void uw_held_exit(struct uw_core *c, int wait_ms);
void uw_core_defer_signal(int sig);
extern void (*uw_core_on_deferred)(int sig);
/* Flush if s has anything queued (before close, connect, setsockopt...). */
void uw_core_flush_sock(struct uw_core *c, struct uw_sock *s, enum uw_flush_reason why);
/* Before a send of s the kernel makes: s's queue, then its held datagrams,
 * waiting for room if a send with flags would (0), else -EAGAIN. */
int uw_core_barrier(struct uw_core *c, struct uw_sock *s, int flags);
void uw_core_fork_prepare(struct uw_core *c);
void uw_core_fork_parent(struct uw_core *c);
void uw_core_fork_child(struct uw_core *c);

void uw_addr_from_sockaddr(struct uw_addr *a, const struct sockaddr *sa, socklen_t len);
void uw_core_start_flusher(struct uw_core *c);	/* qlock held */
void uw_core_stop_flusher(struct uw_core *c);

/* Pacing (core/pace.c). The metrics an application sets on a socket (0
 * fields: not set); its queue must have been flushed. */
void uw_core_set_metrics(struct uw_core *c, struct uw_sock *s, const struct uw_metrics *m);
struct udpweave_metrics;
/* What is in effect for s's flow (see include/udpweave.h). */
void uw_core_get_metrics(struct uw_core *c, struct uw_sock *s, struct udpweave_metrics *out);
/* s's peer changed (connect): its flows are looked up afresh. */
void uw_core_sock_forget_flows(struct uw_core *c, struct uw_sock *s);
/* s's last reference is going: its queue out, its records freed. */
void uw_core_sock_release(struct uw_sock *s, void *core);

/* Inside the library on behalf of an application thread: false when
 * re-entered from a signal handler (then hand the call on). */
bool uw_core_enter(int *cancel_state);
void uw_core_leave(int cancel_state);
/* Flush the stages that are due (the flush thread, or a sender that finds
 * it late); returns datagrams sent. */
long uw_core_flush_due(struct uw_core *c);
/* The calling thread is about to sleep until wake_ns (monotonic; UINT64_MAX:
 * no timeout): the default stage goes now if it falls due before then. */
long uw_core_flush_before_sleep(struct uw_core *c, uint64_t wake_ns);
/* Set on the flush thread. */
extern __thread bool uw_is_flusher;

/* Internals of pacing shared by queue.c, sched.c and batch.c (qlock held
 * unless said otherwise). */
struct uw_flowrec *uw_flowrec_find(struct uw_sock *s, const struct uw_addr *dest);
/* A new record for (s, dest), resolved with no lock held: rule match,
 * egress qdisc (a few system calls). NULL: no memory. */
struct uw_flowrec *uw_flowrec_prepare(struct uw_core *c, struct uw_sock *s,
				      const struct uw_addr *dest, const struct uw_metrics *sock_m);
/* Insert r, or free it and return the record another thread inserted. */
struct uw_flowrec *uw_flowrec_insert(struct uw_core *c, struct uw_flowrec *r, uint64_t now);
void uw_flowrec_replan(struct uw_core *c, struct uw_flowrec *r, uint64_t now);
/* After a flush (flush lock): rate estimates and the stats snapshot. */
void uw_pace_account(struct uw_core *c, struct uw_stage *const *stv, size_t n, uint64_t now);
/* The flush thread woke late_ns after its target (flusher thread). */
void uw_pace_note_wake(struct uw_core *c, uint64_t late_ns);
uint64_t uw_pace_precision_ns(const struct uw_core *c);

/* The wheel (core/sched.c, qlock held). */
struct uw_stage *uw_wheel_stage(struct uw_core *c, uint64_t release_ns, bool *opened);
/* Detach the open stages released at or before t (all: UINT64_MAX) into
 * v (room for UW_WHEEL_STAGES); returns how many. */
size_t uw_wheel_detach(struct uw_core *c, uint64_t t, struct uw_stage **v);
void uw_wheel_put(struct uw_core *c, struct uw_stage *st);
uint64_t uw_wheel_next_ns(const struct uw_core *c);	/* UINT64_MAX: none */

/* Internals exposed for unit tests. */
bool uw_msg_queueable(const struct uw_sock *s, const struct uw_msg *m);
uint64_t uw_core_due_ns(const struct uw_core *c, const struct uw_stage *st,
			enum uw_flush_reason *why);
int uw_batch_build(struct uw_scratch *sc, struct uw_stage *st, struct uw_backend *be,
		   struct uw_batch *b);
/* One batch from several detached stages, in release order: a flow found
 * in more than one (by its record) is one flow, in order. */
int uw_batch_build_stages(struct uw_scratch *sc, struct uw_stage *const *stv, size_t nst,
			  struct uw_backend *be, struct uw_batch *b);
/* An empty stage drawing on arena. */
void uw_stage_init(struct uw_stage *st, struct uw_arena *arena);
/* Empty st, its chunks back to the arena. */
void uw_stage_reset(struct uw_stage *st);
/* Append a datagram to st; -ENOSPC if it does not fit. The clock is read
 * (now_ns called) only for the first datagram of a stage: the deadline
 * depends on the oldest one alone. */
int uw_stage_add(struct uw_stage *st, struct uw_sock *s, const struct uw_addr *dest,
		 const struct iovec *iov, size_t iovlen, size_t len, uint64_t (*now_ns)(void));
/* The same for a paced datagram: due time, its flow record, enqueued at now. */
int uw_stage_add_paced(struct uw_stage *st, struct uw_sock *s, const struct uw_addr *dest,
		       const struct iovec *iov, size_t iovlen, size_t len, uint64_t now,
		       uint64_t due_ns, struct uw_flowrec *rec);
void uw_scratch_free(struct uw_scratch *sc);
/* Grow *p (an array of *cap elements) to hold need; -ENOMEM leaves it. */
int uw_grow(void **p, size_t *cap, size_t need, size_t elem);

#endif
