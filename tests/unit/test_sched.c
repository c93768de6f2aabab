/* SPDX-License-Identifier: MIT */
/* When a stage is due: deadlines from the maximum delay and the interval
 * grid under a fake clock, and the flush thread keeping them for real. */
#include <time.h>

#include "helpers.h"

#define US 1000ull
#define MS 1000000ull

static struct uw_core c;
static struct uw_stage st;

static void configure(uint32_t max_delay_us, uint32_t interval_us)
{
	memset(&c, 0, sizeof(c));
	c.cfg.max_delay_us = max_delay_us;
	c.cfg.interval_us = interval_us;
	c.slack_ns = (uint64_t)max_delay_us * US / 5 < 500 * US ?
		     (uint64_t)max_delay_us * US / 5 : 500 * US;
}

static void deadline_is_oldest_plus_max_delay_less_slack(void **state)
{
	enum uw_flush_reason why;

	(void)state;
	configure(2000, 0);
	st.oldest_ns = 5 * MS;
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 5 * MS + 2 * MS - 400 * US);
	assert_int_equal(why, UW_FLUSH_DEADLINE);
	configure(20000, 0);			/* at most 500 µs early */
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 5 * MS + 20 * MS - 500 * US);
	configure(500, 0);			/* a fifth when small */
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 5 * MS + 500 * US - 100 * US);
	configure(0, 0);
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 5 * MS);
}

static void interval_grid_comes_first_when_earlier(void **state)
{
	enum uw_flush_reason why;

	(void)state;
	configure(20000, 1000);			/* 20 ms budget, 1 ms grid */
	st.oldest_ns = 5 * MS + 300 * US;
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 6 * MS);
	assert_int_equal(why, UW_FLUSH_INTERVAL);
	st.oldest_ns = 6 * MS;			/* on a tick: the next one */
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 7 * MS);
	configure(1000, 50000);			/* the budget bounds the interval */
	st.oldest_ns = 5 * MS;
	assert_int_equal(uw_core_due_ns(&c, &st, &why), 6 * MS - 200 * US);
	assert_int_equal(why, UW_FLUSH_DEADLINE);
}

static uint64_t real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The thread, on the real clock: nothing leaves before its due time, and
 * everything leaves (within a generous bound: this is not a timing test). */
static void flush_thread_keeps_the_deadline(void **state)
{
	struct uw_config cfg;
	struct uw_sys sys = fake_sys;
	struct uw_sock *s = make_sock(3, AF_INET);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9),
				  .sin_addr.s_addr = htonl(0x7f000001) };
	struct iovec iov = { (void *)"hello", 5 };
	uint64_t t0, waited = 0;

	(void)state;
	rec_reset();
	sys.now_ns = real_now;
	uw_config_defaults(&cfg);
	strcpy(cfg.backend, "passthrough");
	cfg.max_delay_us = 20000;
	assert_int_equal(uw_core_init(&c, &cfg, &sys), 0);
	c.be.ops = &rec_ops;
	t0 = real_now();
	assert_int_equal(uw_core_send(&c, s, &(struct uw_msg){ &iov, 1, 5, 0,
							       (void *)&to, sizeof(to) }), 5);
	pthread_mutex_lock(&c.qlock);
	assert_true(c.flusher_running);
	pthread_mutex_unlock(&c.qlock);
	while (!atomic_load(&rec_batches) && waited < 2000) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
		waited++;
	}
	assert_int_equal(rec_batches, 1);
	assert_true(real_now() - t0 >= 20 * MS - c.slack_ns);
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_DEADLINE]), 1);
	uw_core_stop_flusher(&c);
	for (bool running = true; running;) {
		struct timespec ts = { 0, 1000000 };

		pthread_mutex_lock(&c.qlock);
		running = c.flusher_running;
		pthread_cond_signal(&c.wake);
		pthread_mutex_unlock(&c.qlock);
		nanosleep(&ts, NULL);
	}
	uw_core_destroy(&c);
	free(s);
}

static void stop_flusher(void)
{
	uw_core_stop_flusher(&c);
	for (bool running = true; running;) {
		struct timespec ts = { 0, 1000000 };

		pthread_mutex_lock(&c.qlock);
		running = c.flusher_running;
		pthread_cond_signal(&c.wake);
		pthread_mutex_unlock(&c.qlock);
		nanosleep(&ts, NULL);
	}
}

/* The wheel on the real clock: a datagram every 1 ms, jitter 5 ms (a 3.2
 * ms quantum for any precision up to 1.8 ms): the thread wakes once per
 * quantum, never sends a datagram before its release time, keeps the
 * order, and measures how late it wakes (the precision, after 256). */
static void flush_thread_runs_the_wheel(void **state)
{
	enum { N = 900 };
	static uint64_t enq[N];
	static unsigned char data[256];
	struct uw_config cfg;
	struct uw_sys sys = fake_sys;
	struct uw_sock *s = make_sock(3, AF_INET);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9),
				  .sin_addr.s_addr = htonl(0x0a000001) };
	const uint64_t q = 3200 * US;
	char msg[128];
	uint64_t late = 0, wakes = 0;

	(void)state;
	rec_reset();
	fake_max_seg = 0;	/* a run per datagram: each one's time is seen */
	sys.now_ns = real_now;
	uw_config_defaults(&cfg);
	strcpy(cfg.backend, "passthrough");
	assert_int_equal(uw_rules_parse("10.0.0.0/8:jitter=5ms,delay=20ms", cfg.rules,
					&cfg.nrules, msg, sizeof(msg)), 0);
	assert_int_equal(uw_core_init(&c, &cfg, &sys), 0);
	c.be.ops = &rec_ops;
	for (int i = 0; i < N; i++) {
		struct timespec ts = { 0, 1000000 };
		/* datagram i: first byte i / 256, length 1 + i % 256 */
		struct iovec iov = { data, 1 + (size_t)(i & 0xff) };

		data[0] = (unsigned char)(i >> 8);
		enq[i] = real_now();
		assert_int_equal(uw_core_send(&c, s, &(struct uw_msg){ &iov, 1, iov.iov_len, 0,
				 (void *)&to, sizeof(to) }), (ssize_t)iov.iov_len);
		nanosleep(&ts, NULL);
	}
	for (int waited = 0; atomic_load(&c.queued_total) && waited < 2000; waited++) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	stop_flusher();
	assert_int_equal(nrec, N);
	for (size_t k = 0; k < nrec; k++) {
		uint64_t rel = (enq[k] + q) / q * q;
		size_t i = (size_t)rec[k].first_byte << 8 | (rec[k].first_len - 1);

		assert_int_equal(i, k);				/* in order */
		assert_true(rec[k].sent_at >= rel);		/* never early */
		if (rec[k].sent_at - rel > late)
			late = rec[k].sent_at - rel;
	}
	/* once per quantum with something in it, not per datagram */
	{
		uint64_t quanta = (enq[N - 1] - enq[0]) / q + 2;
		uint64_t flushes = atomic_load(&c.stats.flushes[UW_FLUSH_PACED]);

		if (flushes > quanta || flushes < quanta / 2)
			fail_msg("%llu paced flushes in %llu quanta",
				 (unsigned long long)flushes, (unsigned long long)quanta);
	}
	for (int i = 0; i < UW_LATE_BUCKETS; i++)
		wakes += atomic_load(&c.stats.wake_late_hist[i]);
	assert_true(wakes >= 256);
	assert_true(atomic_load(&c.stats.precision_ns) > 0);	/* measured */
	print_message("wheel: worst release lateness %llu us, precision (p99) %llu us\n",
		      (unsigned long long)(late / US),
		      (unsigned long long)(atomic_load(&c.stats.precision_ns) / US));
	uw_core_sock_release(s, &c);
	uw_core_destroy(&c);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(deadline_is_oldest_plus_max_delay_less_slack),
		cmocka_unit_test(interval_grid_comes_first_when_earlier),
		cmocka_unit_test(flush_thread_keeps_the_deadline),
		cmocka_unit_test(flush_thread_runs_the_wheel),
	};

	return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
