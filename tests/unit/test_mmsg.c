/* SPDX-License-Identifier: MIT */
/* ldflags: -Wl,--wrap=sendmmsg */
/*
 * The mmsg backend against a scripted kernel: sendmmsg is wrapped at link
 * time, and each call answers from a script (all sent, some sent, or an
 * error), recording the messages it was given.
 */
#include <netinet/udp.h>

#include "helpers.h"
#include "backend.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SCM_TXTIME
#define SCM_TXTIME 61
#endif

#define ALL 100000

struct step {
	int rc;		/* messages to accept (ALL), or -1 */
	int err;
};

struct call {
	unsigned int vlen;
	unsigned int nmsg_gso;		/* messages with a UDP_SEGMENT cmsg */
	unsigned int datagrams;		/* iovecs = datagrams */
	uint16_t first_gso;
	unsigned int nmsg_txtime;	/* messages with an SCM_TXTIME cmsg */
	uint64_t txtime[8];		/* of the first eight messages (0: none) */
	int flags;
};

static struct step script[32];
static size_t nscript, at;
static struct call calls[64];
static size_t ncalls;

int __wrap_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	struct call *c = &calls[ncalls++];
	struct step s = at < nscript ? script[at++] : (struct step){ ALL, 0 };
	unsigned int take;

	(void)fd;
	memset(c, 0, sizeof(*c));
	c->flags = flags;
	c->vlen = vlen;
	for (unsigned int i = 0; i < vlen; i++) {
		struct msghdr *h = &vec[i].msg_hdr;

		c->datagrams += (unsigned int)h->msg_iovlen;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TXTIME) {
				assert_int_equal(cm->cmsg_len, CMSG_LEN(sizeof(uint64_t)));
				if (i < 8)
					memcpy(&c->txtime[i], CMSG_DATA(cm), sizeof(uint64_t));
				c->nmsg_txtime++;
				continue;
			}
			assert_int_equal(cm->cmsg_level, SOL_UDP);
			assert_int_equal(cm->cmsg_type, UDP_SEGMENT);
			assert_true(h->msg_iovlen > 1);
			if (!c->nmsg_gso)
				c->first_gso = *(uint16_t *)CMSG_DATA(cm);
			c->nmsg_gso++;
		}
	}
	if (s.rc < 0) {
		errno = s.err;
		return -1;
	}
	take = s.rc >= (int)vlen ? vlen : (unsigned int)s.rc;
	for (unsigned int i = 0; i < take; i++)
		vec[i].msg_len = 1;
	return (int)take;
}

static int mtu_now = 1500;

static int scripted_mtu(int fd, int level, int opt, void *val, socklen_t *len)
{
	(void)fd;
	(void)level;
	(void)opt;
	*(int *)val = mtu_now;
	*len = sizeof(int);
	return 0;
}

static int probes;

static int counting_socket(int d, int t, int p)
{
	(void)d;
	(void)t;
	(void)p;
	probes++;
	return 99;
}

static struct uw_stats stats;
static struct uw_sys sys;
static struct uw_backend be;
static struct uw_arena arena;
static struct uw_stage st;
static struct uw_scratch sc;
static struct uw_batch b;
static struct uw_sock *s;
static struct uw_addr A, B;

static int setup(void **state)
{
	(void)state;
	memset(&stats, 0, sizeof(stats));
	sys = fake_sys;
	sys.sendmmsg = sendmmsg;	/* → __wrap_sendmmsg */
	sys.getsockopt = scripted_mtu;
	sys.socket = counting_socket;
	probes = 0;
	mtu_now = 1500;
	be = (struct uw_backend){ .ops = &uw_backend_mmsg, .sys = &sys, .stats = &stats };
	assert_int_equal(be.ops->open(&be, NULL), 0);
	assert_int_equal(uw_arena_init(&arena, 4 << 20), 0);
	uw_stage_init(&st, &arena);
	s = make_sock(7, AF_INET);
	A = make_v4(0x0a000001, 5000);
	B = make_v4(0x0a000002, 5000);
	nscript = at = ncalls = 0;
	fake_now += 10ull * 1000000000ull;	/* route cache entries expire */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	be.ops->close(&be);
	uw_stage_reset(&st);
	uw_arena_free(&arena);
	uw_scratch_free(&sc);
	free(s);
	return 0;
}

/* 2 flows × 20 datagrams of 1316 bytes: two GSO runs of 20. */
static void send_two_flows(void)
{
	for (int i = 0; i < 20; i++) {
		stage_put(&st, s, &A, 1316, 'a');
		stage_put(&st, s, &B, 1316, 'b');
	}
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	assert_int_equal(b.nruns, 2);
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
}

static uint32_t dropped(void)
{
	uint32_t n = 0;

	for (size_t i = 0; i < b.nruns; i++)
		n += b.runs[i].dropped;
	return n;
}

static void one_call_carries_every_run(void **state)
{
	(void)state;
	send_two_flows();
	assert_int_equal(ncalls, 1);
	assert_int_equal(calls[0].vlen, 2);
	assert_int_equal(calls[0].nmsg_gso, 2);
	assert_int_equal(calls[0].first_gso, 1316);
	assert_int_equal(calls[0].datagrams, 40);
	assert_int_equal(atomic_load(&stats.syscalls), 1);
	assert_int_equal(dropped(), 0);
}

static void gso_refused_with_eio_falls_back_to_plain(void **state)
{
	(void)state;
	script[nscript++] = (struct step){ -1, EIO };
	send_two_flows();
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[1].nmsg_gso, 0);
	assert_int_equal(calls[1].vlen, 40);		/* one message per datagram */
	assert_true(uw_sock_flags(s) & UW_SOCK_NO_GSO);
	assert_int_equal(atomic_load(&stats.fallbacks_gso), 1);
	assert_int_equal(dropped(), 0);
}

static void gso_refused_with_einval_falls_back_too(void **state)
{
	(void)state;
	script[nscript++] = (struct step){ -1, EINVAL };
	send_two_flows();
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[1].vlen, 40);
	assert_true(uw_sock_flags(s) & UW_SOCK_NO_GSO);
	assert_int_equal(dropped(), 0);
}

static void einval_from_a_shrunk_path_splits_without_disabling_gso(void **state)
{
	(void)state;
	for (int i = 0; i < 20; i++)
		stage_put(&st, s, &A, 1316, 'a');
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);	/* MTU 1500 */
	assert_int_equal(b.nruns, 1);
	mtu_now = 1200;			/* the route now carries 1172-byte segments */
	script[nscript++] = (struct step){ -1, EINVAL };
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[1].vlen, 20);
	assert_false(uw_sock_flags(s) & UW_SOCK_NO_GSO);
	assert_int_equal(atomic_load(&stats.gso_split_mtu), 1);
	assert_int_equal(atomic_load(&stats.fallbacks_gso), 0);
	assert_int_equal(dropped(), 0);
}

static uint32_t held(void)
{
	uint32_t n = 0;

	for (size_t i = 0; i < b.nruns; i++)
		n += b.runs[i].held;
	return n;
}

static void eagain_holds_the_socket_never_waits(void **state)
{
	(void)state;
	script[nscript++] = (struct step){ -1, EAGAIN };
	send_two_flows();
	assert_int_equal(ncalls, 1);		/* no retry, no poll in the flush */
	assert_true(calls[0].flags & MSG_DONTWAIT);
	assert_int_equal(held(), 40);		/* both runs: the core keeps them */
	assert_int_equal(atomic_load(&stats.retries), 1);
	assert_int_equal(dropped(), 0);
	assert_int_equal(atomic_load(&s->pending_err), 0);
}

static void enobufs_is_retried(void **state)
{
	(void)state;
	script[nscript++] = (struct step){ -1, ENOBUFS };
	script[nscript++] = (struct step){ -1, ENOBUFS };
	script[nscript++] = (struct step){ -1, ENOBUFS };
	send_two_flows();
	assert_int_equal(ncalls, 4);
	assert_int_equal(dropped(), 0);
	assert_int_equal(atomic_load(&s->pending_err), 0);
}

static void partial_send_resumes_where_it_stopped(void **state)
{
	(void)state;
	script[nscript++] = (struct step){ 1, 0 };
	send_two_flows();
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[0].vlen, 2);
	assert_int_equal(calls[1].vlen, 1);
	assert_int_equal(calls[1].datagrams, 20);
	assert_int_equal(dropped(), 0);
}

static void a_consumed_socket_error_is_reported_not_dropped(void **state)
{
	(void)state;
	/* ICMP left ECONNREFUSED on the socket: the send that meets it
	 * consumes it; the run goes again and the app hears of it later. */
	script[nscript++] = (struct step){ -1, ECONNREFUSED };
	send_two_flows();
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[1].vlen, 2);
	assert_int_equal(dropped(), 0);
	assert_int_equal(atomic_load(&s->pending_err), ECONNREFUSED);
	assert_int_equal(atomic_load(&stats.async_errors), 1);
}

static void a_persistent_error_drops_only_that_run(void **state)
{
	(void)state;
	script[nscript++] = (struct step){ -1, ENETUNREACH };
	script[nscript++] = (struct step){ -1, ENETUNREACH };
	send_two_flows();
	assert_int_equal(ncalls, 3);
	assert_int_equal(calls[2].vlen, 1);		/* the second run goes on */
	assert_int_equal(b.runs[0].dropped, 20);
	assert_int_equal(b.runs[1].dropped, 0);
	assert_int_equal(atomic_load(&s->pending_err), ENETUNREACH);
}

static void more_than_1024_messages_take_several_calls(void **state)
{
	(void)state;
	uw_sock_set(s, UW_SOCK_NO_GSO);
	for (int i = 0; i < 1500; i++)
		stage_put(&st, s, &A, 100, 0);
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[0].vlen, 1024);
	assert_int_equal(calls[1].vlen, 476);
	uw_sock_clear(s, UW_SOCK_NO_GSO);
}

static void connected_flow_sends_without_a_name(void **state)
{
	struct uw_addr peer = { 0 };

	(void)state;
	/* getsockopt(IP_MTU) on the socket itself */
	for (int i = 0; i < 3; i++)
		stage_put(&st, s, &peer, 1316, 0);
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	assert_int_equal(b.nruns, 1);
	assert_int_equal(b.runs[0].nseg, 3);
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
	assert_int_equal(ncalls, 1);
}

/* The path MTU is asked once per host (not per port) and then cached. */
static void path_mtu_is_probed_once_per_host(void **state)
{
	(void)state;
	for (int round = 0; round < 2; round++) {
		for (int h = 0; h < 10; h++)
			for (int p = 0; p < 10; p++) {
				struct uw_addr d = make_v4(0x0acb0100u + (uint32_t)h,
							   (uint16_t)(9000 + p));

				stage_put(&st, s, &d, 1316, 0);
				stage_put(&st, s, &d, 1316, 0);
			}
		assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
		assert_int_equal(b.nruns, 100);
		assert_int_equal(b.runs[0].nseg, 2);
		uw_stage_reset(&st);
	}
	assert_int_equal(probes, 10);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* Departure times ride beside UDP_SEGMENT, one per message; a plain
 * datagram carries its own; the GSO fallback keeps them. */
static void departure_times_ride_with_the_runs(void **state)
{
	struct uw_flowrec r = { .plan = { .mode = UW_PACE_KERNEL, .cut_ns = UINT64_MAX } };
	struct uw_flowrec rb = r;	/* one record per flow */
	static unsigned char buf[1316];
	struct iovec iov = { buf, sizeof(buf) };

	(void)state;
	r.sock = s;
	for (int i = 0; i < 5; i++)
		assert_int_equal(uw_stage_add_paced(&st, s, &A, &iov, 1, 1316, 1, 7000 + i, &r), 0);
	assert_int_equal(uw_stage_add_paced(&st, s, &B, &iov, 1, 700, 1, 9000, &rb), 0);
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
	assert_int_equal(ncalls, 1);
	assert_int_equal(calls[0].vlen, 2);
	assert_int_equal(calls[0].nmsg_gso, 1);		/* the run of A */
	assert_int_equal(calls[0].nmsg_txtime, 2);
	assert_int_equal(calls[0].txtime[0], 7000);	/* A's first datagram's */
	assert_int_equal(calls[0].txtime[1], 9000);	/* B's, a single datagram */
	/* GSO refused: plain datagrams, the run's departure time on each */
	uw_stage_reset(&st);
	for (int i = 0; i < 5; i++)
		assert_int_equal(uw_stage_add_paced(&st, s, &A, &iov, 1, 1316, 1, 7000 + i, &r), 0);
	script[nscript++] = (struct step){ -1, EIO };
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
	assert_int_equal(be.ops->send_batch(&be, &b), 0);
	assert_int_equal(ncalls, 3);
	assert_int_equal(calls[2].vlen, 5);
	assert_int_equal(calls[2].nmsg_gso, 0);
	assert_int_equal(calls[2].nmsg_txtime, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(calls[2].txtime[i], 7000);
	assert_int_equal(dropped(), 0);
}

/* Without a departure time, no control message but UDP_SEGMENT. */
static void no_departure_time_no_txtime(void **state)
{
	(void)state;
	send_two_flows();
	assert_int_equal(calls[0].nmsg_txtime, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(one_call_carries_every_run),
		T(gso_refused_with_eio_falls_back_to_plain),
		T(gso_refused_with_einval_falls_back_too),
		T(einval_from_a_shrunk_path_splits_without_disabling_gso),
		T(eagain_holds_the_socket_never_waits),
		T(enobufs_is_retried),
		T(partial_send_resumes_where_it_stopped),
		T(a_consumed_socket_error_is_reported_not_dropped),
		T(a_persistent_error_drops_only_that_run),
		T(more_than_1024_messages_take_several_calls),
		T(connected_flow_sends_without_a_name),
		T(path_mtu_is_probed_once_per_host),
		T(departure_times_ride_with_the_runs),
		T(no_departure_time_no_txtime),
	};

	return cmocka_run_group_tests_name("mmsg", tests, NULL, NULL);
}
