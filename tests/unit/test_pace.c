/* SPDX-License-Identifier: MIT */
/*
 * Pacing: the interval chosen across rates and jitter budgets, admission,
 * the kernel (SO_TXTIME) plan; then paced flows through the core under a
 * fake clock: due and release times, what a flush at a given time sends,
 * flow order, departure times and GSO runs cut by due-time spread.
 */
#include "helpers.h"
#include "udpweave.h"

#define US 1000ull
#define MS 1000000ull

static struct uw_pace_plan plan;

static void plan_for(uint64_t rate, uint32_t jitter_us, uint32_t delay_us, uint64_t est,
		     uint64_t precision, bool kernel)
{
	struct uw_pace_in in = {
		.m = { rate, jitter_us, delay_us },
		.est_bps = est,
		.precision_ns = precision,
		.default_delay_us = 2000,
		.kernel = kernel,
		.arena_room = 2u << 20,
	};

	uw_pace_plan(&in, &plan);
}

static void no_metrics_no_pacing(void **state)
{
	(void)state;
	plan_for(0, 0, 0, 5000000, 100 * US, false);
	assert_int_equal(plan.mode, UW_PACE_NONE);
	plan_for(0, 0, 0, 0, 100 * US, true);
	assert_int_equal(plan.mode, UW_PACE_NONE);
}

/* Q = the time the rate takes to fill a 64 KB run, at most the jitter and
 * the delay less the precision, rounded down to 50 µs << k. */
static void interval_across_rates_and_jitters(void **state)
{
	static const struct {
		uint64_t rate;
		uint32_t jitter_us, delay_us;
		uint64_t est, want_q_us;
	} cases[] = {
		{ 5000000, 1000, 30000, 0, 800 },	/* the stream: jitter-bound */
		{ 5000000, 8000, 20000, 0, 6400 },
		{ 5000000, 0, 40000, 0, 25600 },	/* delay-bound */
		{ 8000000, 0, 0, 0, 1600 },		/* rate only: the 2 ms default */
		{ 100000000, 10000, 40000, 0, 3200 },	/* 64 KB in 5.2 ms */
		{ 500000000, 10000, 40000, 0, 800 },	/* 64 KB in 1.05 ms */
		{ 10000000000ull, 10000, 40000, 0, 50 },	/* faster than a grain */
		{ 0, 10000, 40000, 0, 6400 },		/* no rate known yet */
		{ 0, 10000, 40000, 1000000000, 400 },	/* estimated 1 Gbit/s */
		{ 0, 10000, 40000, 1000000, 6400 },	/* estimated 1 Mbit/s */
		{ 0, 150, 0, 0, 50 },			/* just above the precision */
		{ 0, 0, 10000000, 0, 204800 },		/* the largest quantum */
	};

	(void)state;
	for (size_t i = 0; i < UW_ARRAY_SIZE(cases); i++) {
		plan_for(cases[i].rate, cases[i].jitter_us, cases[i].delay_us, cases[i].est,
			 100 * US, false);
		if (plan.mode != UW_PACE_USER || plan.quantum_ns != cases[i].want_q_us * US)
			fail_msg("case %zu: mode %d quantum %llu us, expected user %llu us", i,
				 plan.mode, (unsigned long long)plan.quantum_ns / US,
				 (unsigned long long)cases[i].want_q_us);
		/* user space: due one quantum after enqueue, released on it */
		assert_int_equal(plan.offset_ns, plan.quantum_ns);
		assert_int_equal(plan.lead_ns, 0);
		assert_int_equal(plan.cut_ns, cases[i].jitter_us ? cases[i].jitter_us * US
								 : UINT64_MAX);
	}
}

static void interval_override(void **state)
{
	struct uw_pace_in in = { .m = { 5000000, 10000, 0 }, .precision_ns = 100 * US,
				 .default_delay_us = 40000, .interval_us = 1000,
				 .arena_room = 1u << 20 };

	(void)state;
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.quantum_ns, 800 * US);	/* 1 ms, to the grid */
	in.interval_us = 50000;				/* still within the jitter */
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.quantum_ns, 6400 * US);
}

/* Whatever the inputs, an admitted plan keeps its promises. */
static void plans_keep_their_bounds(void **state)
{
	static const uint64_t rates[] = { 0, 64000, 4000000, 100000000, 10000000000ull };
	static const uint32_t jitters[] = { 0, 60, 200, 1000, 5000, 100000 };
	static const uint32_t delays[] = { 0, 100, 1000, 30000, 10000000 };
	static const uint64_t precisions[] = { 0, 10 * US, 100 * US, 2 * MS };

	(void)state;
	for (size_t a = 0; a < UW_ARRAY_SIZE(rates); a++)
	for (size_t b = 0; b < UW_ARRAY_SIZE(jitters); b++)
	for (size_t d = 0; d < UW_ARRAY_SIZE(delays); d++)
	for (size_t p = 0; p < UW_ARRAY_SIZE(precisions); p++)
	for (int k = 0; k < 2; k++) {
		uint64_t prec = precisions[p] ? precisions[p] : UW_PACE_PRECISION0_NS;
		uint64_t delay = (delays[d] ? delays[d] : 2000) * US, q;

		plan_for(rates[a], jitters[b], delays[d], 0, precisions[p], k);
		if (!rates[a] && !jitters[b] && !delays[d]) {
			assert_int_equal(plan.mode, UW_PACE_NONE);
			continue;
		}
		if (plan.mode == UW_PACE_DIRECT) {
			assert_true(plan.refused);
			continue;
		}
		q = plan.quantum_ns;
		assert_int_equal(plan.refused, 0);
		assert_true(q >= UW_PACE_GRAIN_NS && q <= UW_PACE_MAX_QUANTUM_NS);
		/* 50 µs << k */
		assert_int_equal(q % UW_PACE_GRAIN_NS, 0);
		assert_int_equal((q / UW_PACE_GRAIN_NS) & (q / UW_PACE_GRAIN_NS - 1), 0);
		if (k) {
			assert_int_equal(plan.mode, UW_PACE_KERNEL);
			/* released before due, never before enqueue */
			assert_true(plan.offset_ns >= q + plan.lead_ns);
			assert_true(plan.offset_ns + prec <= delay ||
				    plan.offset_ns == UW_PACE_MAX_OFFSET_NS);
		} else {
			assert_int_equal(plan.mode, UW_PACE_USER);
			assert_true(q + prec <= delay);
			if (jitters[b])
				assert_true(q + prec <= jitters[b] * US);
		}
	}
}

static void admission(void **state)
{
	struct uw_pace_in in = { .m = { 1000000000, 10000, 0 }, .precision_ns = 100 * US,
				 .default_delay_us = 40000, .arena_room = 1u << 20 };

	(void)state;
	/* jitter within a grain of the precision: cannot be met */
	plan_for(0, 120, 0, 0, 100 * US, false);
	assert_int_equal(plan.mode, UW_PACE_DIRECT);
	assert_int_equal(plan.refused, UW_REFUSE_JITTER);
	plan_for(0, 150, 0, 0, 100 * US, false);
	assert_int_equal(plan.mode, UW_PACE_USER);
	plan_for(0, 1000, 0, 0, 980 * US, false);	/* a worse machine */
	assert_int_equal(plan.refused, UW_REFUSE_JITTER);
	/* a delay with no room for a quantum */
	plan_for(0, 0, 120, 0, 100 * US, false);
	assert_int_equal(plan.refused, UW_REFUSE_DELAY);
	plan_for(0, 0, 240, 0, 100 * US, true);		/* kernel: D - 2 P */
	assert_int_equal(plan.refused, UW_REFUSE_DELAY);
	plan_for(0, 0, 250, 0, 100 * US, true);
	assert_int_equal(plan.mode, UW_PACE_KERNEL);
	/* fq releases on time: a tiny jitter is no reason to refuse */
	plan_for(5000000, 10, 30000, 0, 100 * US, true);
	assert_int_equal(plan.mode, UW_PACE_KERNEL);
	assert_int_equal(plan.cut_ns, 10 * US);
	/* rate x hold time against the arena room */
	uw_pace_plan(&in, &plan);			/* 1 Gbit/s, Q 400 µs */
	assert_int_equal(plan.mode, UW_PACE_USER);
	assert_int_equal(plan.hold_bytes, 1000000000ull / 8 * (2 * 400 + 100) / 1000000);
	in.arena_room = plan.hold_bytes - 1;
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.mode, UW_PACE_DIRECT);
	assert_int_equal(plan.refused, UW_REFUSE_RATE);
	in.m.rate_bps = 0;				/* only configured rates count */
	in.est_bps = 1000000000;
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.mode, UW_PACE_USER);
}

/* A flow paced already is not turned to direct sending by a worse
 * precision: it stays paced at the finest quantum, reported as not met. */
static void paced_flows_degrade_rather_than_go_direct(void **state)
{
	struct uw_pace_in in = { .m = { 5000000, 1000, 30000 }, .precision_ns = 2 * MS,
				 .default_delay_us = 2000, .paced = true, .arena_room = 1u << 20 };

	(void)state;
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.mode, UW_PACE_USER);
	assert_int_equal(plan.refused, UW_REFUSE_JITTER);
	assert_int_equal(plan.quantum_ns, UW_PACE_GRAIN_NS);
	in.kernel = true;
	in.m.delay_us = 1000;				/* D < 2 P */
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.mode, UW_PACE_KERNEL);
	assert_int_equal(plan.refused, UW_REFUSE_DELAY);
	assert_true(plan.offset_ns >= plan.quantum_ns + plan.lead_ns);
	in.paced = false;				/* a new flow: refused */
	uw_pace_plan(&in, &plan);
	assert_int_equal(plan.mode, UW_PACE_DIRECT);
}

/* fq: handed over ahead, the departure time D - P after enqueue. */
static void kernel_plan(void **state)
{
	(void)state;
	plan_for(5000000, 1000, 30000, 0, 100 * US, true);
	assert_int_equal(plan.mode, UW_PACE_KERNEL);
	assert_int_equal(plan.quantum_ns, 25600 * US);	/* not bound by the jitter */
	assert_int_equal(plan.offset_ns, 29900 * US);
	assert_int_equal(plan.lead_ns, 100 * US);
	assert_int_equal(plan.cut_ns, 1000 * US);
	plan_for(0, 0, 10000000, 0, 100 * US, true);	/* capped below fq's horizon */
	assert_int_equal(plan.offset_ns, UW_PACE_MAX_OFFSET_NS);
}

/* ---- through the core, fake clock, no flush thread ------------------------ */

static struct uw_core c;
static struct uw_sock *s1, *s2;
static int egress_answer;

static int fake_egress(const struct uw_addr *dest)
{
	(void)dest;
	return egress_answer;
}

static void core_with(const char *rules, const struct uw_backend_ops *ops)
{
	static struct uw_sys sys;
	struct uw_config cfg;
	char msg[256];

	rec_reset();
	fake_now = 1000 * MS;
	sys = fake_sys;
	sys.egress_paces = fake_egress;
	uw_config_defaults(&cfg);
	strcpy(cfg.backend, "passthrough");
	assert_int_equal(uw_rules_parse(rules, cfg.rules, &cfg.nrules, msg, sizeof(msg)), 0);
	assert_int_equal(uw_core_init(&c, &cfg, &sys), 0);
	c.be.ops = ops;
	c.flusher_running = true;	/* no thread: flushes are the test's */
	s1 = make_sock(3, AF_INET);
	s2 = make_sock(4, AF_INET);
}

static void core_done(void)
{
	c.flusher_running = false;
	uw_core_flush(&c, UW_FLUSH_EXIT);
	uw_core_sock_release(s1, &c);
	uw_core_sock_release(s2, &c);
	assert_int_equal(atomic_load(&c.stats.pace_flows), 0);
	uw_core_destroy(&c);
	free(s1);
	free(s2);
}

static ssize_t send_at(uint64_t t, struct uw_sock *s, uint32_t addr, uint16_t port,
		       size_t len, unsigned char tag)
{
	static unsigned char buf[2000];
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(addr) };
	struct iovec iov = { buf, len };

	fake_now = t;
	memset(buf, tag, len);
	return uw_core_send(&c, s, &(struct uw_msg){ &iov, 1, len, 0, (void *)&to,
						     sizeof(to) });
}

/* jitter 2 ms, delay 20 ms, precision 100 µs (not measured): Q 1.6 ms. A
 * datagram every 0.5 ms, a flush every 100 µs (a flush thread's ticks):
 * each flush sends exactly those released by then, each within one
 * quantum of its enqueue time, in order. */
static void paced_release_times(void **state)
{
	const uint64_t q = 1600 * US, t0 = 1000 * MS;
	unsigned int sent = 0, queued = 0;

	(void)state;
	core_with("10.0.0.0/8:jitter=2ms,delay=20ms", &rec_ops);
	fake_max_seg = 0;	/* one datagram per run: each one visible */
	for (uint64_t t = t0; t <= t0 + 40 * MS && sent < 40; t += 100 * US) {
		size_t before = nrec;

		if ((t - t0) % (500 * US) == 0 && queued < 40) {
			assert_int_equal(send_at(t, s1, 0x0a000001, 5000, 100,
						 (unsigned char)queued), 100);
			queued++;
		}
		fake_now = t;
		uw_core_flush_due(&c);
		for (size_t k = before; k < nrec; k++) {
			uint64_t enq = t0 + (uint64_t)rec[k].first_byte * 500 * US;
			uint64_t rel = (enq + q) / q * q;

			assert_int_equal(rec[k].first_byte, sent);	/* in order */
			/* released at the first flush at or after its release time */
			assert_true(t >= rel && t < rel + 100 * US);
			assert_true(t > enq && t - enq <= q);
			assert_int_equal(rec[k].txtime_ns, 0);	/* user space */
			sent++;
		}
	}
	assert_int_equal(sent, 40);
	assert_int_equal(atomic_load(&c.stats.paced_datagrams), 40);
	/* one flush per quantum with something released in it */
	assert_int_equal(atomic_load(&c.stats.flushes[UW_FLUSH_PACED]), 13);
	core_done();
}

/* A destination without a rule keeps the default behaviour beside paced
 * ones; one flush sends what is due of both. */
static void default_and_paced_side_by_side(void **state)
{
	const uint64_t t0 = 1000 * MS;

	(void)state;
	core_with("10.0.0.0/8:jitter=2ms", &rec_ops);
	send_at(t0, s1, 0x0a000001, 5000, 100, 1);		/* paced, released at +1.6 */
	send_at(t0, s2, 0xc0a80001, 5000, 100, 2);		/* default: due +1.6 (2 - 0.4) */
	fake_now = t0 + 1599 * US;
	uw_core_flush_due(&c);
	assert_int_equal(nrec, 0);
	fake_now = t0 + 1600 * US;
	uw_core_flush_due(&c);
	assert_int_equal(nrec, 2);
	assert_int_equal(rec_batches, 1);		/* one batch for both */
	/* a rule-less flow of a paced process still reports none */
	{
		struct udpweave_metrics m;

		uw_core_get_metrics(&c, s2, &m);
		assert_int_equal(m.pacing, UDPWEAVE_PACING_NONE);
		assert_int_equal(m.max_delay_us, 2000);
		uw_core_get_metrics(&c, s1, &m);
		assert_int_equal(m.pacing, UDPWEAVE_PACING_USER);
		assert_int_equal(m.max_jitter_us, 2000);
		assert_int_equal(m.interval_us, 1600);
		assert_true(m.state & UDPWEAVE_STATE_ADMITTED);
	}
	core_done();
}

/* Not admitted: handed back to be sent by the caller as it is. */
static void refused_flows_go_direct(void **state)
{
	struct udpweave_metrics m;

	(void)state;
	core_with("10.0.0.0/8:jitter=100us", &rec_ops);
	assert_int_equal(send_at(1000 * MS, s1, 0x0a000001, 5000, 100, 1), UW_PASS);
	assert_int_equal(atomic_load(&c.stats.direct_datagrams), 1);
	assert_int_equal(atomic_load(&c.stats.refusals), 1);
	assert_int_equal(atomic_load(&c.queued_total), 0);
	uw_core_get_metrics(&c, s1, &m);
	assert_int_equal(m.pacing, UDPWEAVE_PACING_DIRECT);
	assert_true(m.state & UDPWEAVE_STATE_JITTER_TOO_LOW);
	assert_false(m.state & UDPWEAVE_STATE_ADMITTED);
	core_done();
}

/* The machine gets slower: the paced flow stays paced (degraded), a new
 * flow with the same budget is refused; both reported. */
static void worse_precision_degrades_paced_flows(void **state)
{
	struct udpweave_metrics out;

	(void)state;
	core_with("10.0.0.0/8:jitter=1ms", &rec_ops);
	send_at(1000 * MS, s1, 0x0a000001, 5000, 100, 1);
	uw_core_get_metrics(&c, s1, &out);
	assert_int_equal(out.pacing, UDPWEAVE_PACING_USER);
	assert_int_equal(out.state & UDPWEAVE_STATE_ADMITTED, UDPWEAVE_STATE_ADMITTED);
	atomic_store(&c.stats.precision_ns, 2 * MS);	/* measured: 2 ms late at p99 */
	send_at(1200 * MS, s1, 0x0a000001, 5000, 100, 2);	/* replanned */
	send_at(1200 * MS, s2, 0x0a000002, 5000, 100, 3);	/* a new flow */
	uw_core_get_metrics(&c, s1, &out);
	assert_int_equal(out.pacing, UDPWEAVE_PACING_USER);
	assert_int_equal(out.interval_us, 50);
	assert_true(out.state & UDPWEAVE_STATE_JITTER_TOO_LOW);
	assert_false(out.state & UDPWEAVE_STATE_ADMITTED);
	assert_int_equal(out.precision_us, 2000);
	uw_core_get_metrics(&c, s2, &out);
	assert_int_equal(out.pacing, UDPWEAVE_PACING_DIRECT);
	assert_int_equal(atomic_load(&c.stats.refusals), 2);
	assert_int_equal(atomic_load(&c.stats.direct_datagrams), 1);
	/* faster again: both paced and met */
	atomic_store(&c.stats.precision_ns, 50 * US);
	send_at(1400 * MS, s1, 0x0a000001, 5000, 100, 4);
	send_at(1400 * MS, s2, 0x0a000002, 5000, 100, 5);
	uw_core_get_metrics(&c, s1, &out);
	assert_true(out.state & UDPWEAVE_STATE_ADMITTED);
	assert_int_equal(out.interval_us, 800);
	uw_core_get_metrics(&c, s2, &out);
	assert_int_equal(out.pacing, UDPWEAVE_PACING_USER);
	assert_true(out.state & UDPWEAVE_STATE_ADMITTED);
	core_done();
}

/* Metrics set on the socket override the rule field by field. */
static void socket_metrics_override_rules(void **state)
{
	struct uw_metrics m = { .jitter_us = 4000 };
	struct udpweave_metrics out;

	(void)state;
	core_with("10.0.0.0/8:rate=8M,jitter=2ms", &rec_ops);
	uw_core_set_metrics(&c, s1, &m);
	send_at(1000 * MS, s1, 0x0a000001, 5000, 100, 1);
	uw_core_get_metrics(&c, s1, &out);
	assert_int_equal(out.rate_bps, 8000000);	/* the rule's */
	assert_int_equal(out.max_jitter_us, 4000);	/* the socket's */
	assert_int_equal(out.interval_us, 1600);	/* the 2 ms default delay bounds it */
	m.jitter_us = 0;
	uw_core_set_metrics(&c, s1, &m);		/* back to the rule */
	send_at(1001 * MS, s1, 0x0a000001, 5000, 100, 1);
	uw_core_get_metrics(&c, s1, &out);
	assert_int_equal(out.max_jitter_us, 2000);
	core_done();
}

/* fq on the egress: departure times ride with the runs, a run never spans
 * more than the jitter budget of due times. 1 ms jitter, a datagram every
 * 0.4 ms: at most 3 per run (0, 0.4, 0.8). */
static void kernel_pacing_departure_times_and_runs(void **state)
{
	const uint64_t t0 = 1000 * MS;
	uint32_t segs = 0;

	(void)state;
	egress_answer = 1;
	core_with("10.0.0.0/8:rate=5M,jitter=1ms,delay=30ms", &rec_txtime_ops);
	for (int i = 0; i < 30; i++)
		send_at(t0 + (uint64_t)i * 400 * US, s1, 0x0a000001, 5000, 1316, (unsigned char)i);
	assert_true(uw_sock_flags(s1) & UW_SOCK_TXTIME);
	fake_now = t0 + 12 * MS;
	uw_core_flush(&c, UW_FLUSH_EXPLICIT);
	assert_true(nrec >= 10);
	for (size_t k = 0; k < nrec; k++) {
		uint64_t due = t0 + (uint64_t)rec[k].first_byte * 400 * US + 29900 * US;

		assert_int_equal(rec[k].txtime_ns, due);
		assert_true(rec[k].nseg <= 3);
		assert_int_equal(rec[k].first_byte, segs);
		segs += rec[k].nseg;
	}
	assert_int_equal(segs, 30);
	assert_int_equal(atomic_load(&c.stats.txtime_messages), nrec);
	egress_answer = 0;
	core_done();
}

/* Without fq the same rule is paced in user space, with no departure times. */
static void no_fq_no_txtime(void **state)
{
	struct udpweave_metrics out;

	(void)state;
	egress_answer = 0;
	core_with("10.0.0.0/8:rate=5M,jitter=1ms,delay=30ms", &rec_txtime_ops);
	send_at(1000 * MS, s1, 0x0a000001, 5000, 1316, 0);
	assert_false(uw_sock_flags(s1) & UW_SOCK_TXTIME);
	uw_core_get_metrics(&c, s1, &out);
	assert_int_equal(out.pacing, UDPWEAVE_PACING_USER);
	assert_int_equal(out.interval_us, 800);
	core_done();
}

/* The quantum may shrink (a new rate estimate): a flow's releases never
 * go back, so its datagrams stay in order. */
static void releases_never_go_back(void **state)
{
	const uint64_t t0 = 1000 * MS;
	struct uw_flowrec *r;

	(void)state;
	core_with("10.0.0.0/8:jitter=10ms,delay=40ms", &rec_ops);
	fake_max_seg = 0;
	send_at(t0, s1, 0x0a000001, 5000, 100, 0);	/* Q 6.4 ms: released at +6.4 */
	r = s1->last_rec;
	assert_non_null(r);
	assert_int_equal(r->plan.quantum_ns, 6400 * US);
	atomic_store(&r->est_bps, 1000000000);		/* now 1 Gbit/s: Q 400 µs */
	r->replan_ns = 0;
	send_at(t0 + 100 * US, s1, 0x0a000001, 5000, 100, 1);
	assert_int_equal(r->plan.quantum_ns, 400 * US);
	/* the due time does not go back either: released with it */
	assert_int_equal(r->last_release_ns, t0 + 6400 * US);
	fake_now = t0 + 1 * MS;
	uw_core_flush_due(&c);
	assert_int_equal(nrec, 0);			/* the second waits for the first */
	fake_now = t0 + 7 * MS;
	uw_core_flush_due(&c);
	assert_int_equal(nrec, 2);
	assert_int_equal(rec[0].first_byte, 0);
	assert_int_equal(rec[1].first_byte, 1);
	core_done();
}

/* Unconnected socket, many destinations: one record each, found again,
 * idle ones evicted when the table must grow. */
static void records_per_destination(void **state)
{
	const uint64_t t0 = 1000 * MS;

	(void)state;
	core_with("10.0.0.0/8:jitter=2ms", &rec_ops);
	for (int i = 0; i < 100; i++)
		send_at(t0, s1, 0x0a000001 + (uint32_t)i, 5000, 100, (unsigned char)i);
	assert_int_equal(atomic_load(&c.stats.pace_flows), 100);
	for (int i = 0; i < 100; i++)
		send_at(t0 + 100 * US, s1, 0x0a000001 + (uint32_t)i, 5000, 100, (unsigned char)i);
	assert_int_equal(atomic_load(&c.stats.pace_flows), 100);	/* found again */
	fake_now = t0 + 10 * MS;
	uw_core_flush_due(&c);
	assert_int_equal(atomic_load(&c.queued_total), 0);
	/* 3 s later they are idle: new destinations take their places */
	for (int i = 0; i < 100; i++)
		send_at(t0 + 3000 * MS, s1, 0x0b000001 + (uint32_t)i, 5000, 100, 0);
	assert_true(atomic_load(&c.stats.pace_flows) < 200);
	core_done();
}

/* Rate estimation: an EWMA of 100 ms samples, in getsockopt and stats. */
static void rate_is_estimated(void **state)
{
	const uint64_t t0 = 1000 * MS;
	struct udpweave_metrics out;
	char json[4096];

	(void)state;
	core_with("10.0.0.0/8:jitter=2ms", &rec_ops);
	/* 1250 bytes every 1 ms = 10 Mbit/s, for 1 s */
	for (int i = 0; i < 1000; i++) {
		send_at(t0 + (uint64_t)i * MS, s1, 0x0a000001, 5000, 1250, 0);
		uw_core_flush_due(&c);
	}
	uw_core_get_metrics(&c, s1, &out);
	if (out.est_rate_bps < 9500000 || out.est_rate_bps > 10500000)
		fail_msg("estimated %llu bit/s, sent 10 Mbit/s",
			 (unsigned long long)out.est_rate_bps);
	assert_true(out.state & UDPWEAVE_STATE_RATE_ESTIMATED);
	assert_true(uw_stats_json(&c.stats, "mmsg", json, sizeof(json)) > 0);
	assert_non_null(strstr(json, "\"dest\": \"10.0.0.1:5000\", \"pacing\": \"user\""));
	assert_non_null(strstr(json, "\"est_rate_bps\": "));
	core_done();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_metrics_no_pacing),
		cmocka_unit_test(interval_across_rates_and_jitters),
		cmocka_unit_test(interval_override),
		cmocka_unit_test(plans_keep_their_bounds),
		cmocka_unit_test(admission),
		cmocka_unit_test(paced_flows_degrade_rather_than_go_direct),
		cmocka_unit_test(kernel_plan),
		cmocka_unit_test(paced_release_times),
		cmocka_unit_test(default_and_paced_side_by_side),
		cmocka_unit_test(refused_flows_go_direct),
		cmocka_unit_test(worse_precision_degrades_paced_flows),
		cmocka_unit_test(socket_metrics_override_rules),
		cmocka_unit_test(kernel_pacing_departure_times_and_runs),
		cmocka_unit_test(no_fq_no_txtime),
		cmocka_unit_test(releases_never_go_back),
		cmocka_unit_test(records_per_destination),
		cmocka_unit_test(rate_is_estimated),
	};

	return cmocka_run_group_tests_name("pace", tests, NULL, NULL);
}
