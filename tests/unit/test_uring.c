/* SPDX-License-Identifier: MIT */
/* ldflags: -Wl,--wrap=io_uring_queue_init_params,--wrap=io_uring_queue_exit,--wrap=io_uring_submit_and_wait,--wrap=io_uring_enter,--wrap=io_uring_register_buffers,--wrap=io_uring_get_probe_ring,--wrap=io_uring_free_probe,--wrap=sendmmsg */
/*
 * The uring backend against a fake kernel: liburing's setup, submit and
 * enter functions are wrapped at link time around rings in plain memory,
 * which liburing's inline helpers (get_sqe, for_each_cqe, cq_advance) then
 * use as they would the kernel's. The fake kernel takes the SQEs in order,
 * answers each from a script (sent, or -errno), cancels the rest of a
 * linked chain after a failure as io_uring does, posts zero-copy
 * notifications (at once or at the next io_uring_enter), and logs every
 * datagram it "sent" so that order and completeness can be checked.
 */
#include <liburing.h>

#include "helpers.h"
#include "backend.h"

#define MAXE	64
#define WIRE_MAX 4096

/* ---- the fake kernel ------------------------------------------------------- */

static struct {
	unsigned sq_head, sq_tail, sq_mask, sq_entries, sq_flags, sq_dropped;
	unsigned cq_head, cq_tail, cq_mask, cq_entries, cq_flags, cq_overflow;
	unsigned array[MAXE];
	struct io_uring_sqe sqes[MAXE];
	struct io_uring_cqe cqes[4 * MAXE];
} fk;

static unsigned fake_entries;		/* 0: as asked */
static int init_err;			/* io_uring_queue_init_params answers this */
static int enter_err;			/* the next submit answers this, once */
static bool defer_notifs;		/* notifications at the next io_uring_enter */
static bool unannounced;		/* a failed zero-copy send: no F_MORE, a notification anyway */
static int script[64];			/* the n-th issued SQE: 0 sent, or -errno */
static unsigned nissued;
static unsigned inits, exits, submits, waits, registers;
static int exit_fd;
static struct iovec registered;
static struct io_uring_cqe deferred[MAXE];
static unsigned ndeferred;

/* every SQE the kernel took, in order */
struct sqe_rec {
	uint8_t opcode, flags;
	uint16_t ioprio, buf_index;
	int fd;
	uint32_t msg_flags;
	uint64_t user_data;
	size_t iovlen;
	uint16_t gso;		/* UDP_SEGMENT size, 0: none */
	uint64_t txtime;	/* SCM_TXTIME, 0: none */
	bool named;		/* msg_name set */
	int res;
};
static struct sqe_rec sqes[512];
static unsigned nsqes;

/* every datagram that left, in order */
struct wire_rec {
	int fd;
	uint16_t port;		/* 0: the connected peer */
	unsigned char tag;
	uint32_t len;
};
static struct wire_rec wire[WIRE_MAX];
static unsigned nwire;

static void wire_put(int fd, const struct msghdr *h, size_t i)
{
	struct wire_rec *w = &wire[nwire++];
	const struct iovec *iov = &h->msg_iov[i];

	w->fd = fd;
	w->port = h->msg_name ? ntohs(((struct sockaddr_in *)h->msg_name)->sin_port) : 0;
	w->tag = iov->iov_len ? ((unsigned char *)iov->iov_base)[0] : 0;
	w->len = (uint32_t)iov->iov_len;
}

static void post(uint64_t data, int res, uint32_t flags)
{
	struct io_uring_cqe *c = &fk.cqes[fk.cq_tail & fk.cq_mask];

	assert_true(fk.cq_tail - fk.cq_head < fk.cq_entries);	/* no overflow */
	c->user_data = data;
	c->res = res;
	c->flags = flags;
	fk.cq_tail++;
}

/* The UDP_SEGMENT and SCM_TXTIME control messages of h (0: none). */
static void cmsgs_of(const struct msghdr *h, uint16_t *seg, uint64_t *txtime)
{
	*seg = 0;
	*txtime = 0;
	if (!h->msg_controllen)
		return;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)h); cm;
	     cm = CMSG_NXTHDR((struct msghdr *)h, cm)) {
		if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_SEGMENT)
			memcpy(seg, CMSG_DATA(cm), sizeof(*seg));
		else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TXTIME)
			memcpy(txtime, CMSG_DATA(cm), sizeof(*txtime));
		else
			fail_msg("unexpected control message %d/%d", cm->cmsg_level, cm->cmsg_type);
	}
}

/* The kernel's side of one submission. */
static unsigned kernel_take(void)
{
	unsigned n = 0;
	bool cancel = false;

	for (; fk.sq_head != fk.sq_tail; fk.sq_head++, n++) {
		struct io_uring_sqe *sqe = &fk.sqes[fk.sq_head & fk.sq_mask];
		const struct msghdr *h = (const void *)(uintptr_t)sqe->addr;
		struct iovec one;
		struct msghdr plain;
		struct sqe_rec *r = &sqes[nsqes++];
		bool zc = sqe->opcode == IORING_OP_SENDMSG_ZC;
		int res = 0;

		if (sqe->opcode == IORING_OP_SEND) {	/* one buffer, connected */
			one = (struct iovec){ (void *)(uintptr_t)sqe->addr, sqe->len };
			plain = (struct msghdr){ .msg_iov = &one, .msg_iovlen = 1 };
			h = &plain;
		}
		assert_true(sqe->opcode == IORING_OP_SENDMSG || sqe->opcode == IORING_OP_SEND || zc);
		r->opcode = sqe->opcode;
		r->flags = sqe->flags;
		r->ioprio = sqe->ioprio;
		r->buf_index = sqe->buf_index;
		r->fd = sqe->fd;
		r->msg_flags = sqe->msg_flags;
		r->user_data = sqe->user_data;
		r->iovlen = h->msg_iovlen;
		cmsgs_of(h, &r->gso, &r->txtime);
		r->named = h->msg_name != NULL;
		if (cancel) {
			res = -ECANCELED;
		} else {
			res = nissued < UW_ARRAY_SIZE(script) ? script[nissued] : 0;
			nissued++;
		}
		if (!res) {
			for (size_t i = 0; i < h->msg_iovlen; i++) {
				wire_put(sqe->fd, h, i);
				res += (int)h->msg_iov[i].iov_len;
			}
		}
		r->res = res;
		/* a failure cancels the rest of its chain */
		cancel = res < 0 && (sqe->flags & IOSQE_IO_LINK);
		post(sqe->user_data, res, zc && !(res < 0 && unannounced) ? IORING_CQE_F_MORE : 0);
		if (zc) {
			struct io_uring_cqe note = { .user_data = sqe->user_data, .res = 0,
						     .flags = IORING_CQE_F_NOTIF };

			if (defer_notifs)
				deferred[ndeferred++] = note;
			else
				post(note.user_data, note.res, note.flags);
		}
	}
	return n;
}

static void post_deferred(void)
{
	for (unsigned i = 0; i < ndeferred; i++)
		post(deferred[i].user_data, deferred[i].res, deferred[i].flags);
	ndeferred = 0;
}

int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
				      struct io_uring_params *p);
int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
				      struct io_uring_params *p)
{
	inits++;
	if (init_err)
		return init_err;
	if (fake_entries)
		entries = fake_entries;
	if (entries > MAXE)
		entries = MAXE;
	memset(&fk, 0, sizeof(fk));
	fk.sq_entries = entries;
	fk.sq_mask = entries - 1;
	fk.cq_entries = 2 * entries;
	if ((p->flags & IORING_SETUP_CQSIZE) && p->cq_entries)
		fk.cq_entries = p->cq_entries > 4 * MAXE ? 4 * MAXE : p->cq_entries;
	fk.cq_mask = fk.cq_entries - 1;
	memset(ring, 0, sizeof(*ring));
	ring->sq.khead = &fk.sq_head;
	ring->sq.ktail = &fk.sq_tail;
	ring->sq.kring_mask = &fk.sq_mask;
	ring->sq.kring_entries = &fk.sq_entries;
	ring->sq.kflags = &fk.sq_flags;
	ring->sq.kdropped = &fk.sq_dropped;
	ring->sq.array = fk.array;
	ring->sq.sqes = fk.sqes;
	ring->sq.ring_mask = fk.sq_mask;
	ring->sq.ring_entries = entries;
	ring->cq.khead = &fk.cq_head;
	ring->cq.ktail = &fk.cq_tail;
	ring->cq.kring_mask = &fk.cq_mask;
	ring->cq.kring_entries = &fk.cq_entries;
	ring->cq.kflags = &fk.cq_flags;
	ring->cq.koverflow = &fk.cq_overflow;
	ring->cq.cqes = fk.cqes;
	ring->cq.ring_mask = fk.cq_mask;
	ring->cq.ring_entries = fk.cq_entries;
	ring->flags = p->flags;
	ring->ring_fd = 77;
	ring->enter_ring_fd = 77;
	return 0;
}

void __wrap_io_uring_queue_exit(struct io_uring *ring);
void __wrap_io_uring_queue_exit(struct io_uring *ring)
{
	exits++;
	exit_fd = ring->ring_fd;
}

int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
	unsigned tail = ring->sq.sqe_tail;

	submits++;
	assert_int_equal(ring->ring_fd, 77);
	if (enter_err) {
		int e = enter_err;

		enter_err = 0;
		return e;
	}
	ring->sq.sqe_head = tail;	/* what liburing's flush does */
	fk.sq_tail = tail;
	post_deferred();
	return (int)kernel_take();
}

int __wrap_io_uring_enter(unsigned int fd, unsigned int to_submit, unsigned int min_complete,
			  unsigned int flags, sigset_t *sig);
int __wrap_io_uring_enter(unsigned int fd, unsigned int to_submit, unsigned int min_complete,
			  unsigned int flags, sigset_t *sig)
{
	(void)to_submit;
	(void)sig;
	waits++;
	assert_int_equal(fd, 77);
	assert_true(flags & IORING_ENTER_GETEVENTS);
	assert_true(min_complete > 0);
	post_deferred();
	return 0;
}

int __wrap_io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov, unsigned n);
int __wrap_io_uring_register_buffers(struct io_uring *ring, const struct iovec *iov, unsigned n)
{
	(void)ring;
	assert_int_equal(n, 1);
	registers++;
	registered = iov[0];
	return 0;
}

static struct io_uring_probe *probe_mem;

struct io_uring_probe *__wrap_io_uring_get_probe_ring(struct io_uring *ring);
struct io_uring_probe *__wrap_io_uring_get_probe_ring(struct io_uring *ring)
{
	(void)ring;
	probe_mem = calloc(1, sizeof(*probe_mem) + 256 * sizeof(struct io_uring_probe_op));
	probe_mem->last_op = IORING_OP_LAST - 1;
	for (int i = 0; i < IORING_OP_LAST; i++)
		probe_mem->ops[i].flags = IO_URING_OP_SUPPORTED;
	return probe_mem;
}

void __wrap_io_uring_free_probe(struct io_uring_probe *p);
void __wrap_io_uring_free_probe(struct io_uring_probe *p)
{
	free(p);
}

/* The mmsg backend's sendmmsg, when io_uring is unavailable. */
static unsigned sendmmsg_calls;

int __wrap_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	(void)flags;
	sendmmsg_calls++;
	for (unsigned int i = 0; i < vlen; i++) {
		for (size_t j = 0; j < vec[i].msg_hdr.msg_iovlen; j++)
			wire_put(fd, &vec[i].msg_hdr, j);
		vec[i].msg_len = 1;
	}
	return (int)vlen;
}

/* The passthrough backend's sendmsg, when the ring failed. */
static unsigned sendmsg_calls;

static ssize_t fake_sendmsg(int fd, const struct msghdr *h, int flags)
{
	(void)flags;
	sendmsg_calls++;
	for (size_t j = 0; j < h->msg_iovlen; j++)
		wire_put(fd, h, j);
	return 1;
}

static unsigned polls;

static int counting_poll(struct pollfd *p, nfds_t n, int ms)
{
	(void)p;
	(void)n;
	(void)ms;
	polls++;
	return 1;
}

static char logged[1024];

static void capture_log(const char *line, size_t len)
{
	size_t have = strlen(logged);

	if (have + len < sizeof(logged)) {
		memcpy(logged + have, line, len);
		logged[have + len] = '\0';
	}
}

/* ---- fixtures -------------------------------------------------------------- */

static struct uw_stats stats;
static struct uw_sys sys;
static struct uw_config cfg;
static struct uw_backend be;
static struct uw_arena arena;
static struct uw_stage st;
static struct uw_scratch sc;
static struct uw_batch b;
static struct uw_sock *s7, *s8, *s9;
static struct uw_addr A, B, C, PEER;

static int setup(void **state)
{
	(void)state;
	memset(&stats, 0, sizeof(stats));
	memset(script, 0, sizeof(script));
	nissued = nsqes = nwire = ndeferred = 0;
	inits = exits = submits = waits = registers = 0;
	sendmmsg_calls = sendmsg_calls = polls = 0;
	fake_entries = 0;
	init_err = enter_err = 0;
	exit_fd = 0;
	defer_notifs = unannounced = false;
	logged[0] = '\0';
	sys = fake_sys;
	sys.sendmmsg = sendmmsg;	/* → __wrap_sendmmsg */
	sys.sendmsg = fake_sendmsg;
	sys.poll = counting_poll;
	sys.log_write = capture_log;
	uw_log_init(&sys, UW_LOG_WARN);
	uw_config_defaults(&cfg);
	strcpy(cfg.backend, "uring");
	assert_int_equal(uw_arena_init(&arena, 4 << 20), 0);
	uw_stage_init(&st, &arena);
	be = (struct uw_backend){ .ops = &uw_backend_uring, .sys = &sys, .stats = &stats,
				  .arena = &arena };
	s7 = make_sock(7, AF_INET);
	s8 = make_sock(8, AF_INET);
	s9 = make_sock(9, AF_INET);
	uw_sock_set(s9, UW_SOCK_CONNECTED);
	A = make_v4(0x0a000001, 5001);
	B = make_v4(0x0a000002, 5002);
	C = make_v4(0x0a000003, 5003);
	memset(&PEER, 0, sizeof(PEER));
	fake_now += 10ull * 1000000000ull;	/* route cache entries expire */
	return 0;
}

static void open_backend(void)
{
	assert_int_equal(be.ops->open(&be, &cfg), 0);
}

static int teardown(void **state)
{
	(void)state;
	if (be.priv)
		be.ops->close(&be);
	uw_stage_reset(&st);
	uw_arena_free(&arena);
	uw_scratch_free(&sc);
	free(s7);
	free(s8);
	free(s9);
	return 0;
}

/* n datagrams of len bytes on (s, dest), tagged base, base+1, ... */
static void put_flow(struct uw_sock *s, const struct uw_addr *dest, int n, size_t len,
		     unsigned char base)
{
	for (int i = 0; i < n; i++)
		stage_put(&st, s, dest, len, (unsigned char)(base + i));
}

static void flush(void)
{
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
}

static uint32_t dropped(void)
{
	uint32_t n = 0;

	for (size_t i = 0; i < b.nruns; i++)
		n += b.runs[i].dropped;
	return n;
}

/* The wire carries exactly n datagrams of (fd, port), tagged base.. in order. */
static void assert_flow_on_wire(int fd, uint16_t port, int n, unsigned char base)
{
	int seen = 0;

	for (unsigned i = 0; i < nwire; i++) {
		if (wire[i].fd != fd || wire[i].port != port)
			continue;
		assert_true(seen < n);
		assert_int_equal(wire[i].tag, (unsigned char)(base + seen));
		seen++;
	}
	assert_int_equal(seen, n);
}

/* ---- tests ------------------------------------------------------------------- */

static void one_enter_sends_every_socket(void **state)
{
	(void)state;
	open_backend();
	put_flow(s7, &A, 3, 1316, 0);
	put_flow(s7, &B, 2, 1316, 100);
	put_flow(s8, &C, 1, 200, 0);
	put_flow(s9, &PEER, 4, 1000, 0);
	stage_put(&st, s9, &PEER, 1200, 4);	/* longer: a run of its own */
	flush();
	assert_int_equal(submits, 1);
	assert_int_equal(waits, 0);
	assert_int_equal(atomic_load(&stats.syscalls), 1);
	assert_int_equal(atomic_load(&stats.uring_enters), 1);
	/* one message per run: s7 A and B (GSO), s8 C (plain), s9 (GSO and
	 * a plain datagram: IORING_OP_SEND, no msghdr on a connected socket) */
	assert_int_equal(nsqes, 5);
	assert_int_equal(atomic_load(&stats.uring_sqes), 5);
	assert_int_equal(sqes[4].fd, 9);
	assert_int_equal(sqes[4].opcode, IORING_OP_SEND);
	assert_true(sqes[3].flags & IOSQE_IO_LINK);
	assert_false(sqes[4].flags & IOSQE_IO_LINK);
	assert_int_equal(sqes[0].fd, 7);
	assert_int_equal(sqes[1].fd, 7);
	assert_int_equal(sqes[2].fd, 8);
	assert_int_equal(sqes[3].fd, 9);
	/* s7's two runs are one chain; every chain ends unlinked */
	assert_true(sqes[0].flags & IOSQE_IO_LINK);
	assert_false(sqes[1].flags & IOSQE_IO_LINK);
	assert_false(sqes[2].flags & IOSQE_IO_LINK);
	assert_int_equal(sqes[0].gso, 1316);
	assert_int_equal(sqes[0].iovlen, 3);
	assert_int_equal(sqes[2].gso, 0);
	assert_int_equal(sqes[3].gso, 1000);
	assert_true(sqes[0].named);
	assert_false(sqes[3].named);		/* connected: no msg_name */
	for (unsigned i = 0; i < nsqes; i++) {
		assert_int_equal(sqes[i].opcode, i == 4 ? IORING_OP_SEND : IORING_OP_SENDMSG);
		/* never waiting for room in the ring (a full socket's runs
		 * are held by the core); MSG_NOSIGNAL as every library send */
		assert_int_equal(sqes[i].msg_flags, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	assert_flow_on_wire(7, 5001, 3, 0);
	assert_flow_on_wire(7, 5002, 2, 100);
	assert_flow_on_wire(8, 5003, 1, 0);
	assert_flow_on_wire(9, 0, 5, 0);
	assert_int_equal(dropped(), 0);
}

/* s7: four runs (each datagram longer than the one before: no two share
 * a run). */
static void put_four_runs(void)
{
	for (int i = 0; i < 4; i++)
		stage_put(&st, s7, &A, 100 + 100 * (size_t)i, (unsigned char)i);
}

static uint32_t held(void)
{
	uint32_t n = 0;

	for (size_t i = 0; i < b.nruns; i++)
		n += b.runs[i].held;
	return n;
}

static void eagain_holds_the_rest_of_the_chain(void **state)
{
	(void)state;
	open_backend();
	put_four_runs();
	put_flow(s8, &B, 2, 500, 50);
	script[1] = -EAGAIN;		/* s7's second message: s7 is full */
	flush();
	/* one round: s7 ×4 (the last two cancelled), s8 ×1; s7's last three
	 * runs are held for the core, never waited for here */
	assert_int_equal(submits, 1);
	assert_int_equal(nsqes, 5);
	assert_int_equal(sqes[1].res, -EAGAIN);
	assert_int_equal(sqes[2].res, -ECANCELED);
	assert_int_equal(sqes[3].res, -ECANCELED);
	assert_int_equal(sqes[4].fd, 8);
	assert_true(sqes[4].res > 0);
	assert_int_equal(polls, 0);
	assert_int_equal(atomic_load(&stats.retries), 1);
	assert_flow_on_wire(7, 5001, 1, 0);
	assert_flow_on_wire(8, 5002, 2, 50);	/* B: one GSO run of 2 */
	assert_int_equal(held(), 3);
	for (size_t i = 0; i < b.nruns; i++)
		if (b.runs[i].sock == s7)
			assert_int_equal(b.runs[i].held, b.runs[i].bytes == 100 ? 0 : 1);
	assert_int_equal(dropped(), 0);
	assert_int_equal(atomic_load(&s7->pending_err), 0);
}

static void a_departure_time_goes_as_scm_txtime(void **state)
{
	(void)state;
	open_backend();
	assert_true(be.ops->txtime);
	put_flow(s7, &A, 3, 1316, 0);
	put_flow(s9, &PEER, 1, 500, 0);
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	for (size_t i = 0; i < b.nruns; i++)
		b.runs[i].txtime_ns = 5000000000ull + i;
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
	assert_int_equal(nsqes, 2);
	assert_int_equal(sqes[0].gso, 1316);
	assert_int_equal(sqes[0].txtime, 5000000000ull);
	/* a connected plain datagram with a departure time needs a msghdr */
	assert_int_equal(sqes[1].opcode, IORING_OP_SENDMSG);
	assert_int_equal(sqes[1].gso, 0);
	assert_int_equal(sqes[1].txtime, 5000000001ull);
	assert_flow_on_wire(7, 5001, 3, 0);
	assert_flow_on_wire(9, 0, 1, 0);
}

static void enobufs_is_retried_until_it_goes(void **state)
{
	(void)state;
	open_backend();
	put_four_runs();
	script[0] = -ENOBUFS;
	script[1] = -ENOBUFS;
	script[2] = -ENOBUFS;
	flush();
	/* the refused message alone until it goes, then the rest */
	assert_int_equal(submits, 5);
	assert_int_equal(nsqes, 4 + 1 + 1 + 1 + 3);
	assert_int_equal(atomic_load(&stats.retries), 3);
	assert_flow_on_wire(7, 5001, 4, 0);
	assert_int_equal(dropped(), 0);
}

static void eio_on_a_gso_run_resends_plain_datagrams(void **state)
{
	(void)state;
	open_backend();
	put_flow(s7, &A, 3, 1316, 0);
	put_flow(s7, &B, 3, 1316, 10);
	script[0] = -EIO;
	flush();
	assert_int_equal(submits, 2);
	assert_int_equal(nsqes, 2 + 6);
	for (unsigned i = 2; i < nsqes; i++) {
		assert_int_equal(sqes[i].gso, 0);
		assert_int_equal(sqes[i].iovlen, 1);
	}
	assert_true(uw_sock_flags(s7) & UW_SOCK_NO_GSO);
	assert_int_equal(atomic_load(&stats.fallbacks_gso), 1);
	assert_flow_on_wire(7, 5001, 3, 0);
	assert_flow_on_wire(7, 5002, 3, 10);
	assert_int_equal(dropped(), 0);
}

static void econnrefused_is_kept_for_the_app_and_the_message_retried(void **state)
{
	(void)state;
	open_backend();
	put_flow(s9, &PEER, 2, 700, 0);
	put_flow(s8, &B, 1, 300, 0);
	script[0] = -ECONNREFUSED;
	flush();
	assert_int_equal(submits, 2);
	assert_int_equal(atomic_load(&s9->pending_err), ECONNREFUSED);
	assert_int_equal(atomic_load(&stats.async_errors), 1);
	assert_int_equal(atomic_load(&stats.async_errno[ECONNREFUSED]), 1);
	assert_flow_on_wire(9, 0, 2, 0);
	assert_flow_on_wire(8, 5002, 1, 0);
	assert_int_equal(dropped(), 0);
}

static void a_repeated_refusal_drops_that_message_only(void **state)
{
	(void)state;
	open_backend();
	put_four_runs();
	script[0] = -ECONNREFUSED;
	script[1] = -ECONNREFUSED;	/* the retry of the same message */
	flush();
	assert_int_equal(submits, 3);
	assert_int_equal(dropped(), 1);
	assert_int_equal(nwire, 3);
	assert_int_equal(wire[0].tag, 1);
	assert_int_equal(wire[1].tag, 2);
	assert_int_equal(wire[2].tag, 3);
}

static void zero_copy_waits_for_every_notification(void **state)
{
	(void)state;
	cfg.uring_zc_bytes = 10000;
	defer_notifs = true;
	open_backend();
	assert_int_equal(registers, 1);
	assert_ptr_equal(registered.iov_base, arena.mem);
	assert_int_equal(registered.iov_len, (size_t)arena.nchunks * arena.chunk_size);
	put_flow(s7, &A, 10, 1316, 0);		/* 13160 bytes: zero-copy */
	put_flow(s8, &B, 2, 1316, 0);		/* 2632: copied */
	flush();
	assert_int_equal(nsqes, 2);
	assert_int_equal(sqes[0].opcode, IORING_OP_SENDMSG_ZC);
	assert_true(sqes[0].ioprio & IORING_RECVSEND_FIXED_BUF);
	assert_int_equal(sqes[0].buf_index, 0);
	assert_int_equal(sqes[1].opcode, IORING_OP_SENDMSG);
	/* the notification came only at a later io_uring_enter: waited for */
	assert_int_equal(ndeferred, 0);
	assert_int_equal(waits, 1);
	assert_int_equal(fk.cq_head, fk.cq_tail);
	assert_int_equal(atomic_load(&stats.syscalls), 2);
	assert_int_equal(atomic_load(&stats.uring_zc_sends), 1);
	assert_int_equal(atomic_load(&stats.uring_zc_notifs), 1);
	assert_flow_on_wire(7, 5001, 10, 0);
	assert_flow_on_wire(8, 5002, 2, 0);
}

static void an_unannounced_notification_is_not_taken_for_a_later_one(void **state)
{
	(void)state;
	cfg.uring_zc_bytes = 1000;
	defer_notifs = true;
	unannounced = true;
	open_backend();
	put_flow(s7, &A, 2, 1316, 0);
	script[0] = -ENOBUFS;	/* fails, no F_MORE, and a notification later */
	flush();
	assert_int_equal(submits, 2);
	/* the second attempt's notification was waited for, not the stray */
	assert_int_equal(ndeferred, 0);
	assert_int_equal(waits, 1);
	assert_int_equal(atomic_load(&stats.uring_zc_sends), 1);
	assert_int_equal(atomic_load(&stats.uring_zc_notifs), 1);
	assert_flow_on_wire(7, 5001, 2, 0);
}

static void refused_zero_copy_steps_down_to_a_copy(void **state)
{
	(void)state;
	cfg.uring_zc_bytes = 1000;
	open_backend();
	put_flow(s7, &A, 2, 1316, 0);
	script[0] = -EINVAL;	/* no fixed buffers for SENDMSG_ZC here */
	script[1] = -EINVAL;	/* no zero-copy at all */
	flush();
	assert_int_equal(nsqes, 3);
	assert_int_equal(sqes[0].opcode, IORING_OP_SENDMSG_ZC);
	assert_true(sqes[0].ioprio & IORING_RECVSEND_FIXED_BUF);
	assert_int_equal(sqes[1].opcode, IORING_OP_SENDMSG_ZC);
	assert_false(sqes[1].ioprio & IORING_RECVSEND_FIXED_BUF);
	assert_int_equal(sqes[2].opcode, IORING_OP_SENDMSG);
	assert_int_equal(sqes[2].gso, 1316);	/* GSO itself was not refused */
	assert_int_equal(atomic_load(&stats.fallbacks_gso), 0);
	assert_int_equal(atomic_load(&s7->pending_err), 0);
	assert_flow_on_wire(7, 5001, 2, 0);
}

static void more_messages_than_the_queue_holds_take_rounds(void **state)
{
	(void)state;
	fake_entries = 4;
	open_backend();
	for (int i = 0; i < 10; i++)		/* ten single-datagram runs */
		stage_put(&st, s7, &A, 100 + 10 * (size_t)i, (unsigned char)i);
	flush();
	assert_int_equal(submits, 3);
	assert_int_equal(nsqes, 10);
	/* each round's part of the chain is linked, its last SQE is not */
	for (unsigned i = 0; i < nsqes; i++)
		assert_int_equal(!!(sqes[i].flags & IOSQE_IO_LINK), i != 3 && i != 7 && i != 9);
	assert_flow_on_wire(7, 5001, 10, 0);
}

static void without_io_uring_one_warning_and_mmsg_sends(void **state)
{
	(void)state;
	init_err = -ENOSYS;
	open_backend();
	assert_non_null(strstr(logged, "io_uring is not available"));
	assert_non_null(strstr(logged, "mmsg"));
	assert_null(strchr(strchr(logged, '\n') + 1, '\n'));	/* one line */
	put_flow(s7, &A, 3, 1316, 0);
	put_flow(s8, &B, 1, 100, 0);
	flush();
	assert_int_equal(sendmmsg_calls, 2);		/* one per socket */
	assert_flow_on_wire(7, 5001, 3, 0);
	assert_flow_on_wire(8, 5002, 1, 0);
	uw_stage_reset(&st);
	put_flow(s7, &A, 2, 1316, 3);
	flush();	/* no second warning, no second attempt */
	assert_null(strchr(strchr(logged, '\n') + 1, '\n'));
	assert_int_equal(inits, 1);
	assert_int_equal(submits, 0);
	assert_int_equal(sendmmsg_calls, 3);
	assert_int_equal(atomic_load(&stats.uring_mmsg_batches), 2);
	assert_int_equal(atomic_load(&stats.uring_enters), 0);
	assert_int_equal(atomic_load(&stats.syscalls), 3);
	assert_flow_on_wire(7, 5001, 5, 0);
}

static void a_forked_child_drops_the_parents_ring_and_makes_its_own(void **state)
{
	(void)state;
	open_backend();
	assert_int_equal(inits, 1);
	be.ops->fork_child(&be);
	assert_int_equal(exits, 1);
	assert_int_equal(exit_fd, 77);		/* the child's copy of the fd */
	put_flow(s7, &A, 3, 1316, 0);
	flush();
	assert_int_equal(inits, 2);
	assert_int_equal(submits, 1);
	assert_flow_on_wire(7, 5001, 3, 0);
}

static void a_ring_whose_fd_was_closed_is_replaced(void **state)
{
	(void)state;
	open_backend();
	put_flow(s7, &A, 3, 1316, 0);
	put_flow(s8, &B, 1, 100, 0);
	enter_err = -EBADF;
	flush();
	assert_non_null(strstr(logged, "io_uring_enter failed"));
	assert_int_equal(atomic_load(&stats.uring_ring_failures), 1);
	assert_int_equal(exits, 1);
	assert_int_equal(exit_fd, -1);		/* that fd number is not ours to close */
	assert_int_equal(sendmsg_calls, 4);	/* one per datagram */
	assert_flow_on_wire(7, 5001, 3, 0);
	assert_flow_on_wire(8, 5002, 1, 0);
	assert_int_equal(dropped(), 0);
	/* the next flush has a new ring */
	uw_stage_reset(&st);
	nwire = 0;
	put_flow(s7, &A, 2, 1316, 10);
	flush();
	assert_int_equal(inits, 2);
	assert_int_equal(submits, 2);
	assert_flow_on_wire(7, 5001, 2, 10);
}

static void an_interrupted_submit_is_made_again(void **state)
{
	(void)state;
	open_backend();
	put_flow(s7, &A, 3, 1316, 0);
	enter_err = -EINTR;
	flush();
	assert_int_equal(submits, 2);
	assert_int_equal(atomic_load(&stats.syscalls), 2);
	assert_flow_on_wire(7, 5001, 3, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(one_enter_sends_every_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(eagain_holds_the_rest_of_the_chain,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_departure_time_goes_as_scm_txtime, setup, teardown),
		cmocka_unit_test_setup_teardown(enobufs_is_retried_until_it_goes, setup, teardown),
		cmocka_unit_test_setup_teardown(eio_on_a_gso_run_resends_plain_datagrams,
						setup, teardown),
		cmocka_unit_test_setup_teardown(econnrefused_is_kept_for_the_app_and_the_message_retried,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_repeated_refusal_drops_that_message_only,
						setup, teardown),
		cmocka_unit_test_setup_teardown(zero_copy_waits_for_every_notification,
						setup, teardown),
		cmocka_unit_test_setup_teardown(an_unannounced_notification_is_not_taken_for_a_later_one,
						setup, teardown),
		cmocka_unit_test_setup_teardown(refused_zero_copy_steps_down_to_a_copy,
						setup, teardown),
		cmocka_unit_test_setup_teardown(more_messages_than_the_queue_holds_take_rounds,
						setup, teardown),
		cmocka_unit_test_setup_teardown(without_io_uring_one_warning_and_mmsg_sends,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_forked_child_drops_the_parents_ring_and_makes_its_own,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_ring_whose_fd_was_closed_is_replaced,
						setup, teardown),
		cmocka_unit_test_setup_teardown(an_interrupted_submit_is_made_again, setup, teardown),
	};

	return cmocka_run_group_tests_name("uring", tests, NULL, NULL);
}
