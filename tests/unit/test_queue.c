/* SPDX-License-Identifier: MIT */
/*
 * The core's send path with a recording backend and no flush thread: what
 * is queued and what is handed to the kernel as it is, order across
 * arena-full flushes, pending asynchronous errors, fork.
 */
#include "helpers.h"

static struct uw_core c;
static struct uw_sock *s, *sc;		/* unconnected, connected */
static struct uw_config cfg;
static struct sockaddr_in to;

static int setup(void **state)
{
	(void)state;
	rec_reset();
	uw_config_defaults(&cfg);
	strcpy(cfg.backend, "passthrough");
	cfg.arena_kb = 256;
	assert_int_equal(uw_core_init(&c, &cfg, &fake_sys), 0);
	c.be.ops = &rec_ops;
	c.flusher_running = true;	/* no thread: flushes are the test's */
	s = make_sock(3, AF_INET);
	sc = make_sock(4, AF_INET);
	uw_sock_set(sc, UW_SOCK_CONNECTED);
	sc->peer = make_v4(0x7f000001, 9);
	to = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(9),
				   .sin_addr.s_addr = htonl(0x7f000001) };
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	c.flusher_running = false;
	uw_core_destroy(&c);
	free(s);
	free(sc);
	return 0;
}

static ssize_t send_tagged(struct uw_sock *so, size_t len, unsigned char tag,
			   const struct sockaddr *name, socklen_t namelen, int flags)
{
	static unsigned char buf[70000];
	struct iovec iov = { buf, len };

	memset(buf, tag, len);
	return uw_core_send(&c, so, &(struct uw_msg){ &iov, 1, len, flags, name, namelen });
}

static bool queueable(struct uw_sock *so, const void *buf, size_t len, int flags,
		      const void *name, socklen_t namelen)
{
	struct iovec iov = { (void *)buf, len };

	return uw_msg_queueable(so, &(struct uw_msg){ &iov, 1, len, flags, name, namelen });
}

static void what_is_queued_and_what_is_not(void **state)
{
	struct sockaddr_in bad = to, bcast = to;
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(9) };
	char b[8] = "x";

	(void)state;
	assert_true(queueable(s, b, 1, 0, &to, sizeof(to)));
	assert_true(queueable(s, b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, &to, sizeof(to)));
	assert_true(queueable(s, NULL, 0, 0, &to, sizeof(to)));		/* empty datagram */
	assert_true(queueable(sc, b, 1, 0, NULL, 0));
	assert_true(queueable(s, b, UW_MAX_PAYLOAD_V4, 0, &to, sizeof(to)));
	/* the kernel's to answer: */
	assert_false(queueable(s, b, 1, 0, NULL, 0));			/* EDESTADDRREQ */
	assert_false(queueable(s, NULL, 1, 0, &to, sizeof(to)));	/* EFAULT */
	assert_false(queueable(s, b, UW_MAX_PAYLOAD_V4 + 1, 0, &to, sizeof(to))); /* EMSGSIZE */
	assert_false(queueable(s, b, 1, 0, &to, sizeof(to) - 1));	/* EINVAL */
	assert_false(queueable(s, b, 1, 0, &v6, sizeof(v6)));		/* EAFNOSUPPORT */
	bad.sin_port = 0;
	assert_false(queueable(s, b, 1, 0, &bad, sizeof(bad)));	/* EINVAL */
	bcast.sin_addr.s_addr = htonl(INADDR_BROADCAST);
	assert_false(queueable(s, b, 1, 0, &bcast, sizeof(bcast)));	/* EACCES maybe */
	assert_false(queueable(s, b, 1, MSG_MORE, &to, sizeof(to)));
	assert_false(queueable(s, b, 1, MSG_CONFIRM, &to, sizeof(to)));
	assert_false(queueable(s, b, 1, MSG_OOB, &to, sizeof(to)));
	uw_sock_set(sc, UW_SOCK_CORKED);
	assert_false(queueable(sc, b, 1, 0, NULL, 0));
	uw_sock_clear(sc, UW_SOCK_CORKED);
}

static void ipv6_limits(void **state)
{
	struct uw_sock *s6 = make_sock(5, AF_INET6);
	struct sockaddr_in6 d = { .sin6_family = AF_INET6, .sin6_port = htons(9),
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in6 mapped = d;
	char b[1] = "x";

	(void)state;
	assert_true(queueable(s6, b, UW_MAX_PAYLOAD_V6, 0, &d, sizeof(d)));
	assert_false(queueable(s6, b, UW_MAX_PAYLOAD_V6 + 1, 0, &d, sizeof(d)));
	assert_true(queueable(s6, b, 1, 0, &d, 24));			/* RFC 2133 length */
	assert_false(queueable(s6, b, 1, 0, &d, 23));
	assert_false(queueable(s6, b, 1, 0, &to, sizeof(to)));	/* AF_INET on v6 */
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
	assert_false(queueable(s6, b, 1, 0, &mapped, sizeof(mapped)));
	free(s6);
}

static void queued_send_returns_length_and_counts(void **state)
{
	(void)state;
	assert_int_equal(send_tagged(s, 1316, 1, (void *)&to, sizeof(to), 0), 1316);
	assert_int_equal(send_tagged(sc, 0, 0, NULL, 0, 0), 0);
	assert_int_equal(s->queued, 1);
	assert_int_equal(sc->queued, 1);
	assert_int_equal(atomic_load(&c.stats.datagrams_in), 2);
	assert_int_equal(nrec, 0);			/* nothing sent yet */
	assert_int_equal(uw_core_flush(&c, UW_FLUSH_EXPLICIT), 2);
	assert_int_equal(nrec, 2);
	assert_int_equal(s->queued, 0);
	assert_int_equal(atomic_load(&c.stats.datagrams_out), 2);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_EXPLICIT]), 1);
	assert_int_equal(uw_core_flush(&c, UW_FLUSH_EXPLICIT), 0);	/* empty: no batch */
	assert_int_equal(rec_batches, 1);
}

static void unqueueable_send_flushes_its_socket_first(void **state)
{
	(void)state;
	send_tagged(s, 100, 1, (void *)&to, sizeof(to), 0);
	assert_int_equal(send_tagged(s, 100, 2, (void *)&to, sizeof(to), MSG_MORE), UW_PASS);
	assert_int_equal(nrec, 1);		/* the queued one left before */
	assert_int_equal(atomic_load(&c.stats.passthrough_calls), 1);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_BARRIER]), 1);
	/* with nothing queued, no flush */
	assert_int_equal(send_tagged(s, 100, 2, NULL, 0, 0), UW_PASS);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_BARRIER]), 1);
}

static void order_holds_across_arena_full_flushes(void **state)
{
	struct sockaddr_in to2 = to;
	unsigned int next[2] = { 0, 0 }, total = 0;

	(void)state;
	to2.sin_port = htons(10);
	/* 256 KiB arena (three 80 KiB chunks): 3000 datagrams need many flushes */
	for (int i = 0; i < 1500; i++) {
		assert_int_equal(send_tagged(s, 1316, (unsigned char)i, (void *)&to, sizeof(to), 0),
				 1316);
		assert_int_equal(send_tagged(s, 1000, (unsigned char)i, (void *)&to2, sizeof(to2), 0),
				 1000);
	}
	uw_core_flush(&c, UW_FLUSH_EXIT);
	assert_true(atomic_load(&c.stats.flushes[UW_FLUSH_ARENA_FULL]) >= 10);
	/* every run continues its flow where the previous one stopped */
	for (size_t i = 0; i < nrec; i++) {
		unsigned int f = ntohs(rec[i].dest.u.in.sin_port) == 9 ? 0 : 1;

		assert_int_equal(rec[i].first_byte, (unsigned char)next[f]);
		next[f] += rec[i].nseg;
		assert_int_equal(rec[i].last_byte, (unsigned char)(next[f] - 1));
		total += rec[i].nseg;
	}
	assert_int_equal(total, 3000);
	assert_int_equal(next[0], 1500);
	assert_int_equal(atomic_load(&c.stats.datagrams_out), 3000);
	/* a batch may use all the memory not being sent, never more */
	assert_true(atomic_load(&c.stats.arena_high_water) > 128 * 1024);
	assert_true(atomic_load(&c.stats.arena_high_water) <= 256 * 1024);
	assert_int_equal(c.arena.nfree, c.arena.nchunks);
}

static void sendto_the_peer_is_the_same_flow_as_send(void **state)
{
	(void)state;
	for (int i = 0; i < 6; i++)
		send_tagged(sc, 100, (unsigned char)i, i % 2 ? (void *)&to : NULL,
			    i % 2 ? sizeof(to) : 0, 0);
	uw_core_flush(&c, UW_FLUSH_EXPLICIT);
	assert_int_equal(nrec, 1);		/* one flow, one run, in order */
	assert_int_equal(rec[0].nseg, 6);
	assert_int_equal(rec[0].dest.len, 0);
	assert_int_equal(rec[0].first_byte, 0);
	assert_int_equal(rec[0].last_byte, 5);
}

/* A flush thread kept off the CPU: the sender that finds the stage past
 * its due time flushes it. */
static void sender_flushes_a_late_stage(void **state)
{
	(void)state;
	fake_now = 1000000000ull;
	send_tagged(s, 100, 0, (void *)&to, sizeof(to), 0);
	fake_now += 1000000;			/* 1 ms: not due (1.6 ms) */
	send_tagged(s, 100, 1, (void *)&to, sizeof(to), 0);
	assert_int_equal(nrec, 0);
	fake_now += 1000000;			/* 2 ms: due */
	send_tagged(s, 100, 2, (void *)&to, sizeof(to), 0);
	assert_int_equal(nrec, 1);
	assert_int_equal(rec[0].nseg, 3);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_DEADLINE]), 1);
	assert_int_equal(atomic_load(&c.queued_total), 0);
}

static void a_sleep_past_the_due_time_flushes_first(void **state)
{
	(void)state;
	fake_now = 1000000000ull;
	assert_int_equal(uw_core_flush_before_sleep(&c, UINT64_MAX), 0);	/* empty */
	send_tagged(s, 100, 0, (void *)&to, sizeof(to), 0);
	send_tagged(s, 100, 1, (void *)&to, sizeof(to), 0);
	/* a sleep that ends before the stage is due (1.6 ms): it waits */
	assert_int_equal(uw_core_flush_before_sleep(&c, fake_now + 1000000), 0);
	assert_int_equal(nrec, 0);
	/* one that ends after: the stage goes now, from this thread */
	assert_int_equal(uw_core_flush_before_sleep(&c, fake_now + 2000000), 2);
	assert_int_equal(nrec, 1);
	assert_int_equal(rec[0].nseg, 2);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_SLEEP]), 1);
	assert_int_equal(atomic_load(&c.stats.flushes_by_thread), 0);
	assert_int_equal(atomic_load(&c.queued_total), 0);
}

static void pending_error_is_reported_once_and_not_queued(void **state)
{
	(void)state;
	atomic_store(&sc->pending_err, ECONNREFUSED);
	assert_int_equal(send_tagged(sc, 10, 0, NULL, 0, 0), -ECONNREFUSED);
	assert_int_equal(sc->queued, 0);
	assert_int_equal(send_tagged(sc, 10, 0, NULL, 0, 0), 10);
	assert_int_equal(sc->queued, 1);
}

static void flush_sock_only_when_it_has_datagrams(void **state)
{
	(void)state;
	send_tagged(s, 10, 0, (void *)&to, sizeof(to), 0);
	uw_core_flush_sock(&c, sc, UW_FLUSH_CLOSE);
	assert_int_equal(nrec, 0);
	uw_core_flush_sock(&c, s, UW_FLUSH_CLOSE);
	assert_int_equal(nrec, 1);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_CLOSE]), 1);
}

static void forked_child_starts_empty(void **state)
{
	(void)state;
	assert_int_equal(uw_fdtable_init(&c.fds, 64), 0);
	uw_fdtable_install(&c.fds, 3, s);
	send_tagged(s, 10, 0, (void *)&to, sizeof(to), 0);
	uw_core_fork_prepare(&c);
	uw_core_fork_child(&c);
	assert_int_equal(s->queued, 0);
	assert_int_equal(c.stage[c.active].ndgrams, 0);
	assert_false(c.flusher_running);
	assert_int_equal(atomic_load(&c.stats.datagrams_in), 0);
	c.flusher_running = true;
	assert_int_equal(uw_core_flush(&c, UW_FLUSH_EXIT), 0);
	assert_int_equal(nrec, 0);		/* the parent's datagram is the parent's */
	free(c.fds.slot);
}

/* n datagrams of 100 bytes on so to each of ndest ports, then a flush. */
static void flush_round(struct uw_sock *so, int ndest, int n)
{
	for (int d = 0; d < ndest; d++) {
		struct sockaddr_in a = to;

		a.sin_port = htons((uint16_t)(9 + d));
		for (int i = 0; i < n; i++)
			assert_int_equal(send_tagged(so, 100, 1, (void *)&a, sizeof(a), 0), 100);
	}
	assert_int_equal(uw_core_flush(&c, UW_FLUSH_EXPLICIT), ndest * n);
}

static void lonely_socket_goes_to_the_kernel(void **state)
{
	(void)state;
	/* two datagrams a flush (a GSO run): the queue pays, it stays */
	for (int r = 0; r < 16; r++)
		flush_round(s, 1, 2);
	assert_false(uw_sock_flags(s) & UW_SOCK_SYNC);
	/* one a flush: the 8th makes it direct, once */
	for (int r = 0; r < 7; r++)
		flush_round(s, 1, 1);
	assert_false(uw_sock_flags(s) & UW_SOCK_SYNC);
	flush_round(s, 1, 1);
	assert_true(uw_sock_flags(s) & UW_SOCK_SYNC);
	assert_int_equal(atomic_load(&c.stats.lonely_sockets), 1);
}

static void cross_socket_backend_counts_the_whole_batch(void **state)
{
	static struct uw_sock *more[15];
	struct uw_backend_ops cross = rec_ops;

	(void)state;
	cross.cross_socket = true;
	c.be.ops = &cross;
	for (int i = 0; i < 15; i++)
		more[i] = make_sock(10 + i, AF_INET);
	/* one datagram of each of 16 sockets: one call for 16, it pays,
	 * though each socket has only one */
	for (int r = 0; r < 16; r++) {
		assert_int_equal(send_tagged(s, 100, 1, (void *)&to, sizeof(to), 0), 100);
		for (int i = 0; i < 15; i++)
			assert_int_equal(send_tagged(more[i], 100, 1, (void *)&to, sizeof(to), 0),
					 100);
		assert_int_equal(uw_core_flush(&c, UW_FLUSH_EXPLICIT), 16);
	}
	assert_false(uw_sock_flags(s) & UW_SOCK_SYNC);
	/* its own datagram alone, 8 flushes: the flush costs more than it saves */
	for (int r = 0; r < 8; r++)
		flush_round(s, 1, 1);
	assert_true(uw_sock_flags(s) & UW_SOCK_SYNC);
	/* its own GSO run pays there too */
	uw_sock_clear(s, UW_SOCK_SYNC);
	for (int r = 0; r < 16; r++)
		flush_round(s, 1, 2);
	assert_false(uw_sock_flags(s) & UW_SOCK_SYNC);
	for (int i = 0; i < 15; i++)
		free(more[i]);
	c.be.ops = &rec_ops;
}

/* Up to n sends of so, gap_us apart, each of those the library hands to
 * the kernel answered as sent; how many went to the kernel before the
 * first one the library queued (n: none queued). */
static int sync_sends(struct uw_sock *so, int n, uint64_t gap_us)
{
	for (int i = 0; i < n; i++) {
		ssize_t rc;

		fake_now += gap_us * 1000;
		rc = send_tagged(so, 100, 1, (void *)&to, sizeof(to), 0);
		if (rc != UW_PASS) {
			assert_int_equal(rc, 100);
			uw_core_flush(&c, UW_FLUSH_EXPLICIT);
			return i;
		}
		assert_ptr_equal(uw_sync_sock, so);
		uw_core_sync_done(&c, so, 1, 100);
	}
	return n;
}

static void cross_socket_backend_queues_again_only_when_it_pays(void **state)
{
	static struct uw_backend_ops cross;
	static struct uw_sock *more[40];
	int n = 0;

	(void)state;
	cross = rec_ops;
	cross.cross_socket = true;
	c.be.ops = &cross;
	fake_now = 1000000000ull;
	uw_sock_set(s, UW_SOCK_SYNC);
	/* a datagram every 1.5 ms, slower than half the max delay: neither
	 * its GSO run nor the process's batch would pay */
	assert_int_equal(sync_sends(s, 100, 1500), 100);
	assert_true(uw_sock_flags(s) & UW_SOCK_SYNC);
	/* 40 slow sockets (each sends once every 2 ms), 40 datagrams of the
	 * process within one max delay: twice what pays (UW_CROSS_PAYS) */
	for (int i = 0; i < 40; i++) {
		more[i] = make_sock(20 + i, AF_INET);
		uw_sock_set(more[i], UW_SOCK_SYNC);
	}
	for (int round = 0; round < 3 && !n; round++) {
		for (int i = 0; i < 40 && !n; i++) {
			if (sync_sends(more[i], 1, 50) == 0)
				n = 1;
		}
	}
	assert_int_equal(n, 1);
	/* its own sends 0.5 ms apart, a GSO run of 4 a max delay: it pays */
	fake_now += 10000000;
	assert_in_range(sync_sends(s, 10, 500), 1, 2);
	for (int i = 0; i < 40; i++)
		free(more[i]);
	c.be.ops = &rec_ops;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(what_is_queued_and_what_is_not),
		T(ipv6_limits),
		T(queued_send_returns_length_and_counts),
		T(unqueueable_send_flushes_its_socket_first),
		T(order_holds_across_arena_full_flushes),
		T(sendto_the_peer_is_the_same_flow_as_send),
		T(sender_flushes_a_late_stage),
		T(a_sleep_past_the_due_time_flushes_first),
		T(pending_error_is_reported_once_and_not_queued),
		T(flush_sock_only_when_it_has_datagrams),
		T(forked_child_starts_empty),
		T(lonely_socket_goes_to_the_kernel),
		T(cross_socket_backend_counts_the_whole_batch),
		T(cross_socket_backend_queues_again_only_when_it_pays),
	};

	return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
