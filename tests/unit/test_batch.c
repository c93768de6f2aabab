/* SPDX-License-Identifier: MIT */
/* The batch builder: run grouping, caps, the odd last segment, the path
 * MTU, and the interleaving order. */
#include "helpers.h"

static struct uw_arena arena;
static struct uw_stage st;
static struct uw_scratch sc;
static struct uw_backend be = { .ops = &rec_ops, .sys = &fake_sys };
static struct uw_batch b;
static struct uw_sock *s1, *s2;
static struct uw_addr A, B, C;

static int setup(void **state)
{
	(void)state;
	rec_reset();
	assert_int_equal(uw_arena_init(&arena, 8 << 20), 0);
	uw_stage_init(&st, &arena);
	s1 = make_sock(3, AF_INET);
	s2 = make_sock(4, AF_INET);
	A = make_v4(0x0a000001, 5000);
	B = make_v4(0x0a000002, 5000);
	C = make_v4(0x0a000003, 5000);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uw_stage_reset(&st);
	uw_arena_free(&arena);
	uw_scratch_free(&sc);
	free(s1);
	free(s2);
	return 0;
}

static void build(void)
{
	assert_int_equal(uw_batch_build(&sc, &st, &be, &b), 0);
}

static void expect_run(size_t i, struct uw_sock *s, const struct uw_addr *d, uint32_t nseg,
		       uint32_t seg, uint32_t bytes)
{
	assert_true(i < b.nruns);
	assert_ptr_equal(b.runs[i].sock, s);
	assert_true(uw_addr_equal(b.runs[i].dest, d));
	assert_int_equal(b.runs[i].nseg, nseg);
	assert_int_equal(b.runs[i].seg_size, seg);
	assert_int_equal(b.runs[i].bytes, bytes);
}

static void equal_sizes_make_one_run(void **state)
{
	(void)state;
	for (int i = 0; i < 10; i++)
		stage_put(&st, s1, &A, 1316, (unsigned char)i);
	build();
	assert_int_equal(b.nruns, 1);
	expect_run(0, s1, &A, 10, 1316, 13160);
	/* the iovecs are the datagrams, in order */
	for (int i = 0; i < 10; i++)
		assert_int_equal(((unsigned char *)b.runs[0].iov[i].iov_base)[0], i);
	assert_int_equal(b.datagrams, 10);
}

static void at_most_64_segments(void **state)
{
	(void)state;
	for (int i = 0; i < 100; i++)
		stage_put(&st, s1, &A, 100, 0);
	build();
	assert_int_equal(b.nruns, 2);
	expect_run(0, s1, &A, 64, 100, 6400);
	expect_run(1, s1, &A, 36, 100, 3600);
}

static void at_most_65507_bytes(void **state)
{
	(void)state;
	fake_max_seg = 65507;
	for (int i = 0; i < 60; i++)
		stage_put(&st, s1, &A, 1472, 0);
	build();
	assert_int_equal(b.nruns, 2);
	expect_run(0, s1, &A, 44, 1472, 44 * 1472);	/* 45 would be 66240 */
	expect_run(1, s1, &A, 16, 1472, 16 * 1472);
}

static void shorter_datagram_ends_a_run(void **state)
{
	(void)state;
	for (int i = 0; i < 5; i++)
		stage_put(&st, s1, &A, 1316, 0);
	stage_put(&st, s1, &A, 500, 0);
	for (int i = 0; i < 3; i++)
		stage_put(&st, s1, &A, 1316, 0);
	build();
	assert_int_equal(b.nruns, 2);
	expect_run(0, s1, &A, 6, 1316, 5 * 1316 + 500);
	expect_run(1, s1, &A, 3, 1316, 3 * 1316);
}

static void longer_datagram_starts_a_run(void **state)
{
	(void)state;
	stage_put(&st, s1, &A, 1000, 0);
	stage_put(&st, s1, &A, 1000, 0);
	stage_put(&st, s1, &A, 1200, 0);
	build();
	assert_int_equal(b.nruns, 2);
	expect_run(0, s1, &A, 2, 1000, 2000);
	expect_run(1, s1, &A, 1, 1200, 1200);
}

static void zero_length_datagrams_stand_alone(void **state)
{
	(void)state;
	stage_put(&st, s1, &A, 100, 0);
	stage_put(&st, s1, &A, 0, 0);
	stage_put(&st, s1, &A, 0, 0);
	stage_put(&st, s1, &A, 100, 0);
	build();
	assert_int_equal(b.nruns, 4);
	expect_run(1, s1, &A, 1, 0, 0);
	expect_run(2, s1, &A, 1, 0, 0);
}

static void no_segment_larger_than_the_path(void **state)
{
	(void)state;
	fake_max_seg = 1472;
	for (int i = 0; i < 4; i++)
		stage_put(&st, s1, &A, 2000, 0);
	for (int i = 0; i < 4; i++)
		stage_put(&st, s1, &A, 1472, 0);
	build();
	assert_int_equal(b.nruns, 5);
	for (int i = 0; i < 4; i++)
		expect_run((size_t)i, s1, &A, 1, 2000, 2000);
	expect_run(4, s1, &A, 4, 1472, 4 * 1472);
}

static void gso_less_socket_sends_single_datagrams(void **state)
{
	(void)state;
	uw_sock_set(s1, UW_SOCK_NO_GSO);
	for (int i = 0; i < 3; i++)
		stage_put(&st, s1, &A, 1316, 0);
	build();
	assert_int_equal(b.nruns, 3);
	uw_sock_clear(s1, UW_SOCK_NO_GSO);
}

static void flows_interleave_round_robin(void **state)
{
	(void)state;
	/* 130 datagrams each: runs of 64, 64, 2 per flow */
	for (int i = 0; i < 130; i++) {
		stage_put(&st, s1, &A, 100, 'a');
		stage_put(&st, s1, &B, 100, 'b');
		stage_put(&st, s1, &C, 100, 'c');
	}
	build();
	assert_int_equal(b.ngroups, 1);
	assert_int_equal(b.nruns, 9);
	for (size_t i = 0; i < 9; i++) {
		const struct uw_addr *d = i % 3 == 0 ? &A : i % 3 == 1 ? &B : &C;

		expect_run(i, s1, d, i < 6 ? 64 : 2, 100, i < 6 ? 6400 : 200);
	}
}

static void uneven_flows_keep_rotating(void **state)
{
	(void)state;
	for (int i = 0; i < 200; i++)
		stage_put(&st, s1, &A, 100, 0);
	stage_put(&st, s1, &B, 100, 0);
	build();
	/* A, B, then A alone */
	assert_int_equal(b.nruns, 5);
	expect_run(0, s1, &A, 64, 100, 6400);
	expect_run(1, s1, &B, 1, 100, 100);
	expect_run(2, s1, &A, 64, 100, 6400);
	expect_run(3, s1, &A, 64, 100, 6400);
	expect_run(4, s1, &A, 8, 100, 800);
}

static void runs_are_grouped_by_socket(void **state)
{
	(void)state;
	stage_put(&st, s1, &A, 100, 0);
	stage_put(&st, s2, &A, 100, 0);
	stage_put(&st, s1, &B, 100, 0);
	stage_put(&st, s2, &B, 100, 0);
	build();
	assert_int_equal(b.ngroups, 2);
	assert_ptr_equal(b.groups[0].sock, s1);
	assert_int_equal(b.groups[0].nruns, 2);
	assert_ptr_equal(b.groups[1].sock, s2);
	assert_int_equal(b.groups[1].nruns, 2);
	assert_true(uw_addr_equal(b.groups[0].runs[0].dest, &A));
	assert_true(uw_addr_equal(b.groups[0].runs[1].dest, &B));
	assert_ptr_equal(b.groups[1].runs[0].sock, s2);
}

static void connected_and_named_flows_differ(void **state)
{
	struct uw_addr peer = { 0 };

	(void)state;
	stage_put(&st, s1, &peer, 100, 0);
	stage_put(&st, s1, &A, 100, 0);
	stage_put(&st, s1, &peer, 100, 0);
	build();
	assert_int_equal(b.nruns, 2);
	expect_run(0, s1, &peer, 2, 100, 200);
	assert_int_equal(b.runs[0].dest->len, 0);
}

static void empty_stage_builds_nothing(void **state)
{
	(void)state;
	build();
	assert_int_equal(b.nruns, 0);
	assert_int_equal(b.ngroups, 0);
}

static void full_arena_says_enospc_and_reset_gives_it_back(void **state)
{
	struct uw_arena small;
	struct uw_stage s_a, s_b;
	struct iovec iov = { (void *)"x", 1 };
	int n = 0;

	(void)state;
	assert_int_equal(uw_arena_init(&small, 2 * UW_CHUNK_MIN), 0);
	assert_int_equal(small.nchunks, 2);
	uw_stage_init(&s_a, &small);
	uw_stage_init(&s_b, &small);
	while (uw_stage_add(&s_a, s1, &A, &iov, 1, 1, fake_now_ns) == 0)
		n++;
	/* header and 8 bytes a datagram, one flow: both chunks, nearly full */
	{
		int per = (int)(sizeof(struct uw_dgram) + 8);

		assert_true(n > 2 * (int)UW_CHUNK_MIN / per - 16 &&
			    n <= 2 * (int)UW_CHUNK_MIN / per);
	}
	assert_int_equal(s_a.ndgrams, n);
	assert_int_equal(small.nfree, 0);
	/* the other stage gets nothing while a holds the memory */
	assert_int_equal(uw_stage_add(&s_b, s1, &A, &iov, 1, 1, fake_now_ns), -ENOSPC);
	uw_stage_reset(&s_a);
	assert_int_equal(small.nfree, 2);
	assert_int_equal(s_a.ndgrams, 0);
	/* a maximal datagram fits a chunk */
	{
		static unsigned char big[UW_MAX_PAYLOAD_V6];
		struct iovec bi = { big, sizeof(big) };

		assert_int_equal(uw_stage_add(&s_b, s1, &A, &bi, 1, sizeof(big), fake_now_ns), 0);
		assert_int_equal(uw_stage_add(&s_b, s1, &B, &bi, 1, sizeof(big), fake_now_ns), 0);
		assert_int_equal(uw_stage_add(&s_b, s1, &C, &bi, 1, sizeof(big), fake_now_ns),
				 -ENOSPC);
		assert_int_equal(s_b.ndgrams, 2);
	}
	uw_stage_reset(&s_b);
	assert_int_equal(small.nfree, 2);
	uw_arena_free(&small);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* ---- paced flows: due times, records ------------------------------------ */

#define US 1000ull

/* A record with a plan: cut at jitter_us, departure times if kernel. */
static struct uw_flowrec *paced_rec(struct uw_sock *s, uint64_t jitter_us, bool kernel)
{
	struct uw_flowrec *r = calloc(1, sizeof(*r));

	r->sock = s;
	r->plan.mode = kernel ? UW_PACE_KERNEL : UW_PACE_USER;
	r->plan.cut_ns = jitter_us ? jitter_us * US : UINT64_MAX;
	return r;
}

static void put_due(struct uw_stage *stg, struct uw_sock *s, const struct uw_addr *d,
		    struct uw_flowrec *r, uint64_t due, unsigned char tag)
{
	static unsigned char buf[1316];
	struct iovec iov = { buf, sizeof(buf) };

	memset(buf, tag, sizeof(buf));
	assert_int_equal(uw_stage_add_paced(stg, s, d, &iov, 1, sizeof(buf), due, due, r), 0);
}

/* Runs end where the due times would spread over the jitter budget: a
 * datagram every 400 µs, 1 ms budget: 0, 0.4, 0.8 | 1.2, 1.6, 2.0 | ... */
static void runs_cut_by_due_time_spread(void **state)
{
	struct uw_flowrec *r = paced_rec(s1, 1000, true);

	(void)state;
	for (int i = 0; i < 10; i++)
		put_due(&st, s1, &A, r, 5000 * US + (uint64_t)i * 400 * US, (unsigned char)i);
	build();
	assert_int_equal(b.nruns, 4);
	for (size_t i = 0; i < 4; i++) {
		expect_run(i, s1, &A, i < 3 ? 3 : 1, 1316, (i < 3 ? 3 : 1) * 1316);
		/* each leaves at its first datagram's due time */
		assert_int_equal(b.runs[i].txtime_ns, 5000 * US + i * 1200 * US);
		assert_int_equal(((unsigned char *)b.runs[i].iov[0].iov_base)[0], 3 * i);
	}
	free(r);
}

/* Exactly the budget still fits; no budget, no cut; no departure times in
 * user space. */
static void spread_limits(void **state)
{
	struct uw_flowrec *exact = paced_rec(s1, 800, false), *none = paced_rec(s2, 0, false);

	(void)state;
	for (int i = 0; i < 6; i++) {
		put_due(&st, s1, &A, exact, (uint64_t)i * 400 * US, 0);
		put_due(&st, s2, &A, none, (uint64_t)i * 5000 * US, 0);
	}
	build();
	assert_int_equal(b.nruns, 3);
	expect_run(0, s1, &A, 3, 1316, 3 * 1316);	/* 0, 0.4, 0.8: spread 0.8 */
	expect_run(1, s1, &A, 3, 1316, 3 * 1316);
	expect_run(2, s2, &A, 6, 1316, 6 * 1316);	/* 25 ms of spread, one run */
	for (size_t i = 0; i < b.nruns; i++)
		assert_int_equal(b.runs[i].txtime_ns, 0);
	free(exact);
	free(none);
}

/* Stages of successive releases make one batch; a flow found in several
 * (same record) is one flow: its order kept, its runs continued. */
static void stages_merge_into_one_batch(void **state)
{
	struct uw_stage st2, st3;
	struct uw_stage *v[3] = { &st, &st2, &st3 };
	struct uw_flowrec *ra = paced_rec(s1, 0, false), *rb = paced_rec(s1, 0, false);

	(void)state;
	uw_stage_init(&st2, &arena);
	uw_stage_init(&st3, &arena);
	for (int i = 0; i < 3; i++) {
		put_due(&st, s1, &A, ra, 0, (unsigned char)i);
		put_due(&st2, s1, &A, ra, 0, (unsigned char)(10 + i));
		put_due(&st3, s1, &A, ra, 0, (unsigned char)(20 + i));
		put_due(&st2, s1, &B, rb, 0, (unsigned char)(30 + i));
	}
	assert_int_equal(uw_batch_build_stages(&sc, v, 3, &be, &b), 0);
	assert_int_equal(b.datagrams, 12);
	assert_int_equal(b.ngroups, 1);
	assert_int_equal(b.nruns, 2);
	expect_run(0, s1, &A, 9, 1316, 9 * 1316);	/* all of A, in stage order */
	expect_run(1, s1, &B, 3, 1316, 3 * 1316);
	for (int i = 0; i < 9; i++)
		assert_int_equal(((unsigned char *)b.runs[0].iov[i].iov_base)[0],
				 (i / 3) * 10 + i % 3);
	uw_stage_reset(&st2);
	uw_stage_reset(&st3);
	free(ra);
	free(rb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(equal_sizes_make_one_run),
		T(at_most_64_segments),
		T(at_most_65507_bytes),
		T(shorter_datagram_ends_a_run),
		T(longer_datagram_starts_a_run),
		T(zero_length_datagrams_stand_alone),
		T(no_segment_larger_than_the_path),
		T(gso_less_socket_sends_single_datagrams),
		T(flows_interleave_round_robin),
		T(uneven_flows_keep_rotating),
		T(runs_are_grouped_by_socket),
		T(connected_and_named_flows_differ),
		T(empty_stage_builds_nothing),
		T(full_arena_says_enospc_and_reset_gives_it_back),
		T(runs_cut_by_due_time_spread),
		T(spread_limits),
		T(stages_merge_into_one_batch),
	};

	return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
