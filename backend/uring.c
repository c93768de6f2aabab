/* SPDX-License-Identifier: MIT */
/*
 * The uring backend: the batches of every socket of the process in one
 * io_uring submission. Each message (a GSO run with its UDP_SEGMENT control
 * message, or a plain datagram) is an IORING_OP_SENDMSG (a plain datagram
 * on a connected socket: IORING_OP_SEND) on the application's own socket,
 * so its options, the routing, ARP and the firewall apply as without the
 * library. One io_uring_enter submits a
 * flush's messages and waits for their completions, which are then reaped
 * in one pass: the flushing thread owns the stage until the kernel is done
 * with it, so no arena region is reused under the kernel.
 *
 * Order: the messages of one socket are a linked chain (IOSQE_IO_LINK),
 * sent in order. A failed message cuts its chain (the kernel cancels the
 * rest); the shared error policy (backend/common.c) decides about the
 * message, which is submitted again alone if it is to be retried, then
 * what is left of the chain.
 *
 * A full socket buffer is waited out inside the kernel (io_uring arms a
 * poll and sends when there is room, whether the socket is blocking or
 * not), within the same io_uring_enter, as a blocking sendmmsg waits: no
 * EAGAIN comes back, no system call is spent on it. (With MSG_DONTWAIT
 * the EAGAIN completions, each a poll() and a resubmission, cost 12
 * io_uring_enter calls per flush of 16-segment runs on the bench's veth.)
 * Other refusals (ENOBUFS from a qdisc drop, ECONNREFUSED, EIO from GSO)
 * complete with their error and take the shared policy.
 *
 * A run with a departure time (kernel pacing, core/pace.c) carries it as
 * SCM_TXTIME beside its UDP_SEGMENT, as with the mmsg backend.
 *
 * Zero-copy (UDPWEAVE_URING_ZC_BYTES, off by default: see README): a
 * message of at least that many bytes goes as IORING_OP_SENDMSG_ZC from
 * the staging arena, which is then registered with the ring as fixed
 * buffer 0. The flush waits for the kernel's notification that it no
 * longer reads those pages, as for the result of every message.
 *
 * Without io_uring (io_uring_setup refused: an old kernel, the
 * kernel.io_uring_disabled sysctl, a seccomp filter) one warning line, and
 * the mmsg backend sends.
 *
 * A forked child drops the parent's ring (its own copy of the mappings
 * and of the fd: the parent's ring is untouched) and makes its own at its
 * first flush.
 *
 * The auto backend (the default) is this one choosing per batch: a batch
 * of UR_PICK_SOCKS sockets or more goes in one submission, where sendmmsg
 * would make a call per socket; a batch of fewer goes by sendmmsg, which
 * one socket's runs do not need a submission and its reaping for
 * (bench/results/uring.md, one socket to 100 destinations: uring 1.24x the
 * mmsg CPU with runs of 8, 0.95x with runs of 16; 100 sockets of one
 * datagram each: 0.70x). Without io_uring at its start it is the mmsg
 * backend itself, with one info line.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "trace.h"

/* Linux 6.2; liburing 2.3 predates them. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE	(1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED	(1U << 31)
#endif

/* Submission queue: one entry per 4 KiB of arena, 64..4096 entries (a
 * flush with more messages takes several rounds). */
#define UR_SQ_MIN		64u
#define UR_SQ_MAX		4096u
#define UR_ARENA_PER_SQE	4096u
#define UR_ENTER_TRIES		200u	/* transient io_uring_enter refusals */
/* A zero-copy send carries its pages as the fragments of one skb: at most
 * MAX_SKB_FRAGS (17 in a default kernel build). Datagrams in the arena are
 * not contiguous (each has a header), so a 1316-byte GSO run of more than
 * about 13 segments cannot go zero-copy (EMSGSIZE). */
#define UR_ZC_MAX_FRAGS		17u
#define UR_PAGE			4096u
#define UR_PENDING		INT32_MIN
/* auto: sockets in a batch from which one submission beats sendmmsg */
#define UR_PICK_SOCKS		4u

/* One message: one SQE. */
struct ur_msg {
	struct msghdr hdr;
	union uw_be_cmsgs cmsg;
	struct uw_run *run;
	uint32_t first;		/* its first datagram within the run */
	uint32_t nseg;		/* datagrams it carries */
	bool gso;
	bool copy;		/* zero-copy refused for it: copying sends */
	bool zc, fixed;		/* as last submitted */
	bool notif_due;		/* a zero-copy send announced its notification */
	bool notif_seen;
	uint32_t notif_res;
	int res;		/* its completion, or UR_PENDING */
};

/* The messages of one socket, in the order they must leave. */
/* Never SIGPIPE; never waiting for room inside the ring (the flush would
 * wait for the completion): a full socket's runs are held by the core. */
#define UR_MSG_FLAGS	(MSG_NOSIGNAL | MSG_DONTWAIT)

struct ur_chain {
	struct uw_sock *sock;
	int fd;
	struct uw_run *runs_end;	/* past the socket's last run */
	size_t next, end;		/* messages not yet through: [next, end) */
	size_t submitted;		/* this round: [next, submitted) */
	bool probe;			/* retrying next: it goes alone */
	struct uw_retry rs;
};

struct uring_priv {
	struct io_uring ring;
	bool have_ring;
	bool unavailable;	/* io_uring refused: the mmsg backend sends */
	bool pick;		/* auto: sendmmsg for batches of few sockets */
	bool zc_fixed;		/* zero-copy from the registered arena */
	uint32_t zc_bytes;	/* smallest zero-copy message; 0: none */
	unsigned int entries;
	const struct uw_arena *arena;
	struct uw_backend mmsg;
	struct ur_msg *msg;
	size_t nmsg, msg_cap;
	struct ur_chain *chain;
	size_t nchain, chain_cap;
	uint32_t round;		/* submissions made: the high half of user_data */
	uint32_t round_segs;	/* datagrams of the round being submitted */
};

/* ---- the ring ------------------------------------------------------------- */

static unsigned int sq_entries(const struct uw_arena *a)
{
	size_t total = a ? (size_t)a->nchunks * a->chunk_size : 0;
	unsigned int n = UR_SQ_MIN;

	while (n < UR_SQ_MAX && (size_t)n * UR_ARENA_PER_SQE < total)
		n *= 2;
	return n;
}

/* Zero-copy needs IORING_OP_SENDMSG_ZC; the arena registered as a fixed
 * buffer spares the kernel pinning its pages for every send. */
static void zc_start(struct uring_priv *p)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(&p->ring);
	bool have_op = probe && io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC);
	struct iovec arena;
	int err = -EINVAL;

	if (probe)
		io_uring_free_probe(probe);
	if (!have_op) {
		uw_warn("UDPWEAVE_URING_ZC_BYTES ignored: this kernel has no "
			"IORING_OP_SENDMSG_ZC (Linux 6.1)");
		p->zc_bytes = 0;
		return;
	}
	if (p->arena) {
		arena.iov_base = p->arena->mem;
		arena.iov_len = (size_t)p->arena->nchunks * p->arena->chunk_size;
		err = io_uring_register_buffers(&p->ring, &arena, 1);
	}
	p->zc_fixed = !err;
	if (err)
		uw_info("the staging arena is not registered with io_uring (%s); "
			"zero-copy sends pin its pages each time", strerror(-err));
}

static int ring_start(struct uring_priv *p)
{
	/* A round of n SQEs posts up to 2n CQEs (zero-copy notifications),
	 * and notifications of an earlier round may still be there. */
	struct io_uring_params par = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
			 IORING_SETUP_COOP_TASKRUN,
		.cq_entries = 4 * p->entries,
	};
	int err = io_uring_queue_init_params(p->entries, &p->ring, &par);

	if (err == -EINVAL) {	/* before Linux 5.19: without the newer flags */
		memset(&par, 0, sizeof(par));
		par.flags = IORING_SETUP_CQSIZE;
		par.cq_entries = 4 * p->entries;
		err = io_uring_queue_init_params(p->entries, &p->ring, &par);
	}
	if (err)
		return err;
	p->have_ring = true;
	if (p->zc_bytes)
		zc_start(p);
	return 0;
}

/* Unmap the ring and close its fd, unless the fd is no longer ours (the
 * application closed it: its number may name something else now). */
static void ring_stop(struct uring_priv *p, bool fd_ours)
{
	if (!p->have_ring)
		return;
	if (!fd_ours)
		p->ring.ring_fd = -1;
	io_uring_queue_exit(&p->ring);
	p->have_ring = false;
	p->zc_fixed = false;
}

static void give_up(struct uring_priv *p, int err)
{
	/* auto was not asked for io_uring: a line for the curious only */
	uw_log(p->pick ? UW_LOG_INFO : UW_LOG_WARN,
	       "io_uring is not available (%s%s); the mmsg backend sends instead", strerror(-err),
	       err == -EPERM ? ": kernel.io_uring_disabled or a seccomp filter" :
	       err == -ENOSYS ? ": a kernel without io_uring or a seccomp filter" : "");
	p->unavailable = true;
}

static void backoff(struct uw_backend *be, unsigned int k)
{
	struct timespec ts = { 0, (long)(50u << (k < 8 ? k : 8)) * 1000 };

	be->sys->nanosleep(&ts, NULL);
}

/* Every io_uring_enter is a system call made to send: counted, traced. */
static void note_enter(struct uw_backend *be, unsigned int sqes, uint32_t segs, int ret)
{
	uw_stat_add(&be->stats->syscalls, 1);
	uw_stat_add(&be->stats->uring_enters, 1);
	uw_trace(backend_send, "uring", sqes, segs, ret);
}

/* Submit the queued SQEs and wait for want completions. With a count to
 * wait for, io_uring_submit_and_wait makes exactly one io_uring_enter. */
static int submit_and_wait(struct uw_backend *be, struct uring_priv *p, unsigned int want)
{
	unsigned int queued = io_uring_sq_ready(&p->ring);

	for (unsigned int tries = 0; tries < UR_ENTER_TRIES; tries++) {
		int ret = io_uring_submit_and_wait(&p->ring, want);

		note_enter(be, queued, p->round_segs, ret);
		if (ret >= 0 || ret == -EINTR) {
			/* a signal, or a kernel that stops at a bad SQE: the
			 * rest is still queued */
			queued = io_uring_sq_ready(&p->ring);
			if (!queued)
				return 0;
			continue;
		}
		if (ret != -EAGAIN && ret != -EBUSY && ret != -ENOMEM)
			return ret;
		backoff(be, tries);
	}
	return -EAGAIN;
}

static int wait_more(struct uw_backend *be, struct uring_priv *p, unsigned int want,
		     unsigned int *tries)
{
	int ret = io_uring_enter((unsigned int)p->ring.ring_fd, 0, want,
				 IORING_ENTER_GETEVENTS, NULL);

	note_enter(be, 0, 0, ret);
	if (ret >= 0 || ret == -EINTR)
		return 0;
	if ((ret == -EAGAIN || ret == -EBUSY || ret == -ENOMEM) && ++*tries < UR_ENTER_TRIES) {
		backoff(be, *tries);
		return 0;
	}
	return ret;
}

/* A zero-copy send's notification: the kernel no longer reads its pages. */
static void note_notification(struct uw_backend *be, uint32_t res)
{
	uw_stat_add(&be->stats->uring_zc_notifs, 1);
	if (res & IORING_NOTIF_USAGE_ZC_COPIED)
		uw_stat_add(&be->stats->uring_zc_copied, 1);
}

/* The result of message m; a zero-copy send's announces its notification
 * (IORING_CQE_F_MORE). Returns 1 if that notification is still to come. */
static unsigned int take_result(struct uw_backend *be, struct ur_msg *m,
				const struct io_uring_cqe *cqe)
{
	m->res = cqe->res;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		return 0;
	m->notif_due = true;
	uw_stat_add(&be->stats->uring_zc_sends, 1);
	if (m->notif_seen)
		note_notification(be, m->notif_res);
	return !m->notif_seen;
}

/* Returns 1 if this was a notification being waited for. */
static unsigned int take_notification(struct uw_backend *be, struct ur_msg *m,
				      const struct io_uring_cqe *cqe)
{
	if (m->notif_seen)
		return 0;
	m->notif_seen = true;
	m->notif_res = (uint32_t)cqe->res;
	if (!m->notif_due)
		return 0;	/* its result is still to come */
	note_notification(be, m->notif_res);
	return 1;
}

/*
 * Reap the results of the round's `results` messages and the notification
 * every zero-copy send among them announced, in whichever order they come,
 * waiting only when none is there. A CQE of an earlier round is a
 * notification nobody waits for: a failed zero-copy send may post one
 * without announcing it.
 */
static int reap(struct uw_backend *be, struct uring_priv *p, unsigned int results)
{
	unsigned int tries = 0, due = 0;

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;

		io_uring_for_each_cqe(&p->ring, head, cqe) {
			uint64_t data = io_uring_cqe_get_data64(cqe);
			uint32_t k = (uint32_t)data;
			struct ur_msg *m;

			seen++;
			if ((uint32_t)(data >> 32) != p->round || k >= p->nmsg)
				continue;
			m = &p->msg[k];
			if (cqe->flags & IORING_CQE_F_NOTIF) {
				due -= take_notification(be, m, cqe);
			} else if (m->res == UR_PENDING) {
				due += take_result(be, m, cqe);
				results--;
			}
		}
		io_uring_cq_advance(&p->ring, seen);
		if (!results && !due)
			return 0;
		if (!seen) {
			int err = wait_more(be, p, results + due, &tries);

			if (err)
				return err;
		}
	}
}

/* ---- messages and chains ------------------------------------------------- */

static int reserve_msgs(struct uring_priv *p, size_t more)
{
	size_t need = p->nmsg + more, cap = p->msg_cap ? p->msg_cap : 256;
	void *m;

	if (need <= p->msg_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	m = realloc(p->msg, cap * sizeof(*p->msg));
	if (!m)
		return -ENOMEM;
	p->msg = m;
	p->msg_cap = cap;
	return 0;
}

static void add_msg(struct uring_priv *p, struct uw_run *r, uint32_t first, uint32_t nseg,
		    bool gso)
{
	struct ur_msg *m = &p->msg[p->nmsg++];

	m->run = r;
	m->first = first;
	m->nseg = nseg;
	m->gso = gso;
	m->copy = m->zc = m->fixed = false;
	m->res = UR_PENDING;
}

/* Messages for the runs [r, end) of one socket: one per GSO run, or one
 * per datagram without GSO. *first: the index of the first. */
static int add_run_msgs(struct uring_priv *p, struct uw_run *r, struct uw_run *end, bool gso,
			size_t *first)
{
	size_t need = 0;

	for (struct uw_run *x = r; x < end; x++)
		need += gso ? 1 : x->nseg;
	if (reserve_msgs(p, need))
		return -ENOMEM;
	*first = p->nmsg;
	for (; r < end; r++) {
		if (gso || r->nseg == 1)
			add_msg(p, r, 0, r->nseg, gso && r->nseg > 1);
		else
			for (uint32_t j = 0; j < r->nseg; j++)
				add_msg(p, r, j, 1, false);
	}
	return 0;
}

/* One chain per group (socket). */
static int build_chains(struct uring_priv *p, struct uw_batch *b)
{
	p->nmsg = 0;
	p->nchain = 0;
	if (b->ngroups > p->chain_cap) {
		void *c = realloc(p->chain, b->ngroups * sizeof(*p->chain));

		if (!c)
			return -ENOMEM;
		p->chain = c;
		p->chain_cap = b->ngroups;
	}
	for (size_t g = 0; g < b->ngroups; g++) {
		struct uw_group *gr = &b->groups[g];
		struct ur_chain *c = &p->chain[p->nchain++];

		memset(c, 0, sizeof(*c));
		c->sock = gr->sock;
		c->fd = atomic_load_explicit(&gr->sock->fd, memory_order_relaxed);
		c->runs_end = gr->runs + gr->nruns;
		if (add_run_msgs(p, gr->runs, c->runs_end,
				 !(uw_sock_flags(gr->sock) & UW_SOCK_NO_GSO), &c->next))
			return -ENOMEM;
		c->end = p->nmsg;
	}
	return 0;
}

static uint32_t msg_bytes(const struct ur_msg *m)
{
	const struct uw_run *r = m->run;

	return m->nseg == r->nseg ? r->bytes : (uint32_t)r->iov[m->first].iov_len;
}

/* Pages the message's data spans: the skb fragments of a zero-copy send. */
static unsigned int msg_pages(const struct ur_msg *m)
{
	const struct iovec *iov = m->run->iov + m->first;
	unsigned int pages = 0;

	for (uint32_t i = 0; i < m->nseg; i++) {
		uintptr_t a = (uintptr_t)iov[i].iov_base;

		if (iov[i].iov_len)
			pages += (unsigned int)((a + iov[i].iov_len - 1) / UR_PAGE - a / UR_PAGE + 1);
	}
	return pages;
}

static bool goes_zero_copy(const struct uring_priv *p, const struct ur_msg *m)
{
	return p->zc_bytes && !m->copy && msg_bytes(m) >= p->zc_bytes &&
	       msg_pages(m) <= UR_ZC_MAX_FRAGS;
}

/* The SQE of message k of chain c; linked to the next one if link. */
static void prep_msg(struct uw_backend *be, struct uring_priv *p, struct io_uring_sqe *sqe,
		     struct ur_chain *c, size_t k, bool link)
{
	struct ur_msg *m = &p->msg[k];
	struct uw_run *r = m->run;
	struct msghdr *h = &m->hdr;

	memset(h, 0, sizeof(*h));
	if (r->dest->len) {
		h->msg_name = (void *)&r->dest->u;
		h->msg_namelen = r->dest->len;
	}
	h->msg_iov = r->iov + m->first;
	h->msg_iovlen = m->nseg;
	uw_be_set_cmsgs(h, &m->cmsg, m->gso ? (uint16_t)r->seg_size : 0, r->txtime_ns);
	m->res = UR_PENDING;
	m->notif_due = m->notif_seen = false;
	m->zc = goes_zero_copy(p, m);
	m->fixed = m->zc && p->zc_fixed;
	if (m->zc) {
		io_uring_prep_sendmsg_zc(sqe, c->fd, h, UR_MSG_FLAGS);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		if (m->fixed) {
			sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;
			sqe->buf_index = 0;
		}
	} else if (!h->msg_controllen && m->nseg == 1 && !r->dest->len) {
		/* a plain datagram on a connected socket: no msghdr for the
		 * kernel to copy and import */
		io_uring_prep_send(sqe, c->fd, h->msg_iov[0].iov_base, h->msg_iov[0].iov_len,
				   UR_MSG_FLAGS);
	} else {
		io_uring_prep_sendmsg(sqe, c->fd, h, UR_MSG_FLAGS);
	}
	if (link)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, (uint64_t)p->round << 32 | k);
	p->round_segs += m->nseg;
}

/* Queue as much of every unfinished chain as the SQ takes, each part
 * linked; returns the number of SQEs queued. */
static unsigned int queue_round(struct uw_backend *be, struct uring_priv *p)
{
	unsigned int space = io_uring_sq_space_left(&p->ring), n = 0;

	p->round++;
	p->round_segs = 0;
	for (size_t i = 0; i < p->nchain; i++) {
		struct ur_chain *c = &p->chain[i];
		size_t want = c->probe ? 1 : c->end - c->next;
		size_t last = c->next + (want > space ? space : want);

		c->submitted = c->next;
		for (size_t k = c->next; k < last; k++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);

			if (!sqe)
				break;
			prep_msg(be, p, sqe, c, k, k + 1 < last);
			c->submitted = k + 1;
		}
		n += (unsigned int)(c->submitted - c->next);
		space -= (unsigned int)(c->submitted - c->next);
	}
	uw_stat_add(&be->stats->uring_sqes, n);
	return n;
}

/* Send messages [from, to) of c one datagram per sendmsg: when the ring
 * itself failed, or no memory was left to rebuild a chain. */
static void send_plainly(struct uw_backend *be, struct uring_priv *p, struct ur_chain *c,
			 size_t from, size_t to)
{
	for (size_t k = from; k < to; k++) {
		struct ur_msg *m = &p->msg[k];
		struct uw_run r = *m->run;
		struct uw_group g = { c->sock, &r, 1 };

		r.iov += m->first;
		r.nseg = m->nseg;
		r.dropped = r.dropped_bytes = r.held = r.held_bytes = 0;
		uw_backend_passthrough.send_batch(be, &(struct uw_batch){
			.groups = &g, .ngroups = 1, .runs = &r, .nruns = 1 });
		m->run->dropped += r.dropped;
		m->run->dropped_bytes += r.dropped_bytes;
		if (r.held) {	/* full: this and the socket's later ones wait */
			uw_be_hold(m->run, m->first + r.nseg - r.held, c->runs_end);
			return;
		}
	}
}

/*
 * A zero-copy send refused as such: EMSGSIZE (more fragments than an skb
 * holds) for this message, which goes again copied; EINVAL or EOPNOTSUPP
 * for the process: first the fixed buffer goes (a kernel without vectored
 * fixed buffers for SENDMSG_ZC), then zero-copy itself. True if the
 * message is to be sent again. (A GSO refusal looks the same the first
 * time and costs zero-copy for the process; the message then meets the
 * shared policy as a plain SENDMSG.)
 */
static bool zc_refused(struct uring_priv *p, struct ur_msg *m, int err)
{
	if (m->zc && err == EMSGSIZE) {
		m->copy = true;
		return true;
	}
	if (!m->zc || (err != EINVAL && err != EOPNOTSUPP))
		return false;
	if (m->fixed) {
		if (p->zc_fixed)
			uw_info("io_uring refused zero-copy from the registered arena "
				"(error %d); zero-copy from its pages instead", err);
		p->zc_fixed = false;
	} else {
		if (p->zc_bytes)
			uw_info("io_uring refused a zero-copy send (error %d); "
				"copying sends from now on", err);
		p->zc_bytes = 0;
	}
	return true;
}

/* Message k of c failed: the policy's verdict, and what c sends next. */
static void on_failure(struct uw_backend *be, struct uring_priv *p, struct ur_chain *c, size_t k)
{
	struct ur_msg *m = &p->msg[k];
	struct uw_run *r = m->run;
	bool gso = m->gso;
	int err = -m->res;

	uw_stat_add(&be->stats->uring_requeued, c->submitted - k - 1);
	if (zc_refused(p, m, err)) {
		uw_stat_add(&be->stats->uring_requeued, 1);
		return;
	}
	if (err == EINVAL && gso)
		err = uw_be_gso_einval(be, r);
	switch (uw_be_on_error(be, &c->rs, c->sock, c->fd, err, gso)) {
	case UW_BE_RETRY:
		/* alone until it goes: a socket that stays full or a qdisc
		 * that keeps dropping would otherwise have the whole rest of
		 * the chain prepared and cancelled at every attempt */
		uw_stat_add(&be->stats->uring_requeued, 1);
		c->probe = true;
		break;
	case UW_BE_DROP:
		uw_be_drop(r, r->iov + m->first, m->nseg);
		c->next = k + 1;
		c->probe = false;
		memset(&c->rs, 0, sizeof(c->rs));
		break;
	case UW_BE_PARK:
		uw_be_hold(r, m->first, c->runs_end);
		c->next = c->end;
		c->probe = false;
		break;
	case UW_BE_UNGSO:
		/* Messages are whole runs in GSO mode: this run and the
		 * socket's later ones go again as plain datagrams. */
		uw_stat_add(&be->stats->uring_requeued, 1);
		if (add_run_msgs(p, r, c->runs_end, false, &c->next)) {
			uw_backend_passthrough.send_batch(be, &(struct uw_batch){
				.runs = r, .nruns = (size_t)(c->runs_end - r) });
			c->next = c->end;
			break;
		}
		c->end = p->nmsg;
		break;
	}
}

/* After a round: c's messages through in order, up to the first failure. */
static void settle(struct uw_backend *be, struct uring_priv *p, struct ur_chain *c)
{
	for (size_t k = c->next; k < c->submitted; k++) {
		if (p->msg[k].res < 0) {
			on_failure(be, p, c, k);
			return;
		}
		c->next = k + 1;
		c->probe = false;
		memset(&c->rs, 0, sizeof(c->rs));
	}
}

/* io_uring_enter failed for good (the application closed the ring's fd,
 * ...): what has not completed goes by sendmsg (a message in flight may
 * thus leave twice rather than never), and a new ring is made at the next
 * flush. */
static void ring_failed(struct uw_backend *be, struct uring_priv *p, int err)
{
	uw_warn("io_uring_enter failed (%s); this batch goes by sendmsg, a new ring "
		"at the next flush", strerror(-err));
	uw_stat_add(&be->stats->uring_ring_failures, 1);
	ring_stop(p, err != -EBADF && err != -EOPNOTSUPP);
	for (size_t i = 0; i < p->nchain; i++) {
		struct ur_chain *c = &p->chain[i];

		while (c->next < c->submitted && p->msg[c->next].res >= 0)
			c->next++;
		send_plainly(be, p, c, c->next, c->end);
		c->next = c->end;
	}
}

static bool chains_left(const struct uring_priv *p)
{
	for (size_t i = 0; i < p->nchain; i++)
		if (p->chain[i].next < p->chain[i].end)
			return true;
	return false;
}

static void send_chains(struct uw_backend *be, struct uring_priv *p)
{
	while (chains_left(p)) {
		unsigned int n = queue_round(be, p);
		int err = submit_and_wait(be, p, n);

		if (!err)
			err = reap(be, p, n);
		if (err) {
			ring_failed(be, p, err);
			return;
		}
		for (size_t i = 0; i < p->nchain; i++)
			settle(be, p, &p->chain[i]);
	}
}

/* ---- the backend ---------------------------------------------------------- */

static int open_as(struct uw_backend *be, const struct uw_config *cfg, bool pick)
{
	struct uring_priv *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->pick = pick;
	p->mmsg = *be;
	p->mmsg.ops = &uw_backend_mmsg;
	err = p->mmsg.ops->open(&p->mmsg, cfg);
	if (err) {
		free(p);
		return err;
	}
	p->arena = be->arena;
	p->entries = sq_entries(be->arena);
	p->zc_bytes = cfg ? cfg->uring_zc_bytes : 0;
	be->priv = p;
	err = ring_start(p);
	if (err)
		give_up(p, err);
	return 0;
}

static int uring_open(struct uw_backend *be, const struct uw_config *cfg)
{
	return open_as(be, cfg, false);
}

static int auto_open(struct uw_backend *be, const struct uw_config *cfg)
{
	struct uring_priv *p;
	int err = open_as(be, cfg, true);

	if (err)
		return err;
	p = be->priv;
	if (p->unavailable) {
		/* the mmsg backend, not a cross-socket one: it steps aside so */
		*be = p->mmsg;
		free(p);
	}
	return 0;
}

static int uring_send_batch(struct uw_backend *be, struct uw_batch *b)
{
	struct uring_priv *p = be->priv;

	if (!p->have_ring && !p->unavailable) {	/* a forked child's first flush */
		int err = ring_start(p);

		if (err)
			give_up(p, err);
	}
	if (p->pick && b->ngroups < UR_PICK_SOCKS)
		return p->mmsg.ops->send_batch(&p->mmsg, b);
	if (p->unavailable || build_chains(p, b)) {
		uw_stat_add(&be->stats->uring_mmsg_batches, 1);
		return p->mmsg.ops->send_batch(&p->mmsg, b);
	}
	send_chains(be, p);
	return 0;
}

static uint32_t uring_max_segment(struct uw_backend *be, struct uw_sock *s,
				  const struct uw_addr *dest)
{
	return uw_route_max_segment(be->sys, s, dest);
}

static void uring_close(struct uw_backend *be)
{
	struct uring_priv *p = be->priv;

	if (!p)
		return;
	ring_stop(p, true);
	p->mmsg.ops->close(&p->mmsg);
	free(p->msg);
	free(p->chain);
	free(p);
	be->priv = NULL;
}

/* In a forked child (locks held): the ring is the parent's. Unmapping the
 * child's view and closing its copy of the fd leave the parent's alone;
 * nothing is in flight (a flush completes before fork). */
static void uring_fork_child(struct uw_backend *be)
{
	struct uring_priv *p = be->priv;

	if (p)
		ring_stop(p, true);
}

const struct uw_backend_ops uw_backend_uring = {
	.name		= "uring",
	.open		= uring_open,
	.send_batch	= uring_send_batch,
	.max_segment	= uring_max_segment,
	.close		= uring_close,
	.fork_child	= uring_fork_child,
	.txtime		= true,
	.cross_socket	= true,
};

/* cross_min_socks: batches of fewer go by sendmmsg, a call per socket */
const struct uw_backend_ops uw_backend_auto = {
	.name		= "auto",
	.open		= auto_open,
	.send_batch	= uring_send_batch,
	.max_segment	= uring_max_segment,
	.close		= uring_close,
	.fork_child	= uring_fork_child,
	.txtime		= true,
	.cross_socket	= true,
	.cross_min_socks = UR_PICK_SOCKS,
};
