/* SPDX-License-Identifier: MIT */
/* The stats JSON: every key the tools read, and the derived figures. */
#include "helpers.h"

static struct uw_stats st;
static char buf[4096];

static int json(void)
{
	return uw_stats_json(&st, "mmsg", buf, sizeof(buf));
}

static void empty_stats_are_zero(void **state)
{
	(void)state;
	uw_stats_reset(&st);
	assert_true(json() > 0);
	assert_non_null(strstr(buf, "\"backend\": \"mmsg\""));
	assert_non_null(strstr(buf, "\"datagrams_in\": 0,"));
	assert_non_null(strstr(buf, "\"segments_per_run\": {\"mean\": 0.00, \"max\": 0}"));
	assert_non_null(strstr(buf, "\"async_errors_by_errno\": {}"));
	assert_non_null(strstr(buf, "\"flushes_by_reason\": {\"deadline\": 0"));
	assert_int_equal(buf[strlen(buf) - 2], '}');
}

static void derived_figures_and_maps(void **state)
{
	(void)state;
	uw_stats_reset(&st);
	atomic_store(&st.datagrams_out, 300);
	atomic_store(&st.messages, 20);
	atomic_store(&st.segments_max, 44);
	atomic_store(&st.gso_runs, 10);	/* 290 datagrams in 10 runs, 10 plain */
	atomic_store(&st.gso_segments, 290);
	atomic_store(&st.async_errno[ECONNREFUSED], 3);
	atomic_store(&st.async_errno[ENETUNREACH], 1);
	atomic_store(&st.fallbacks_gso, 2);
	atomic_store(&st.mmsg_calls, 7);
	atomic_store(&st.uring_enters, 9);
	atomic_store(&st.uring_zc_notifs, 4);
	atomic_store(&st.flushes[UW_FLUSH_ARENA_FULL], 5);
	uw_stats_note_delay(&st, 1500000);	/* 1.5 ms */
	uw_stats_note_delay(&st, 9000000);	/* 9 ms */
	assert_true(json() > 0);
	assert_non_null(strstr(buf, "\"segments_per_run\": {\"mean\": 29.00, \"max\": 44}"));
	assert_non_null(strstr(buf, "\"ECONNREFUSED\": 3"));
	assert_non_null(strstr(buf, "\"ENETUNREACH\": 1"));
	assert_non_null(strstr(buf, "\"fallbacks\": {\"gso_refused\": 2"));
	assert_non_null(strstr(buf, "\"sendmmsg_calls\": 7"));
	assert_non_null(strstr(buf, "\"uring\": {\"io_uring_enter_calls\": 9, \"sqes\": 0"));
	assert_non_null(strstr(buf, "\"zc_notifications\": 4"));
	assert_non_null(strstr(buf, "\"arena_full\": 5"));
	assert_non_null(strstr(buf, "\"<2000\": 1"));
	assert_non_null(strstr(buf, "\">=8000\": 1"));
	assert_non_null(strstr(buf, "\"max_queue_delay_us\": 9000"));
}

static void too_small_a_buffer_says_enospc(void **state)
{
	(void)state;
	assert_int_equal(uw_stats_json(&st, "mmsg", buf, 64), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_stats_are_zero),
		cmocka_unit_test(derived_figures_and_maps),
		cmocka_unit_test(too_small_a_buffer_says_enospc),
	};

	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
