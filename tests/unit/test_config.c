/* SPDX-License-Identifier: MIT */
/* UDPWEAVE_* parsing: defaults, good values, every kind of bad value. */
#include "helpers.h"

static struct uw_config cfg;
static char msg[512];

static int parse(char *const *env)
{
	return uw_config_parse(&cfg, env, msg, sizeof(msg));
}

static void defaults_without_variables(void **state)
{
	char *env[] = { "PATH=/bin", "HOME=/root", NULL };

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_string_equal(cfg.backend, "auto");
	assert_int_equal(cfg.max_delay_us, 2000);
	assert_int_equal(cfg.interval_us, 0);
	assert_int_equal(cfg.arena_kb, 4096);
	assert_int_equal(cfg.log_level, UW_LOG_WARN);
	assert_int_equal(cfg.uring_zc_bytes, 0);
	assert_false(cfg.disabled);
	assert_false(cfg.passthrough);
	assert_string_equal(msg, "");
}

static void good_values(void **state)
{
	char *env[] = {
		"UDPWEAVE_BACKEND=passthrough", "UDPWEAVE_MAX_DELAY_US=20000",
		"UDPWEAVE_INTERVAL_US=500", "UDPWEAVE_ARENA_KB=256",
		"UDPWEAVE_STATS=/tmp/s-%p.json", "UDPWEAVE_LOG=debug",
		"UDPWEAVE_DISABLE=0", "UDPWEAVE_RT_PRIORITY=5", NULL
	};

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_string_equal(cfg.backend, "passthrough");
	assert_int_equal(cfg.max_delay_us, 20000);
	assert_int_equal(cfg.interval_us, 500);
	assert_int_equal(cfg.arena_kb, 256);
	assert_string_equal(cfg.stats_path, "/tmp/s-%p.json");
	assert_int_equal(cfg.log_level, UW_LOG_DEBUG);
	assert_false(cfg.disabled);
	assert_int_equal(cfg.rt_priority, 5);
}

static void zero_delay_and_limits_are_accepted(void **state)
{
	char *env[] = { "UDPWEAVE_MAX_DELAY_US=0", "UDPWEAVE_ARENA_KB=1048576", NULL };

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_int_equal(cfg.max_delay_us, 0);
	assert_int_equal(cfg.arena_kb, 1048576);
}

static void disable(void **state)
{
	char *env[] = { "UDPWEAVE_DISABLE=1", NULL };

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_true(cfg.disabled);
}

/* Each bad value: -EINVAL, passthrough, defaults, one line naming it. */
static void expect_bad(const char *var)
{
	char *env[] = { "UDPWEAVE_LOG=info", (char *)var, NULL };
	char name[64];

	assert_int_equal(parse(env), -EINVAL);
	assert_true(cfg.passthrough);
	assert_int_equal(cfg.max_delay_us, 2000);
	assert_int_equal(cfg.log_level, UW_LOG_WARN);	/* defaults again */
	snprintf(name, sizeof(name), "%.*s", (int)(strchr(var, '=') - var), var);
	assert_non_null(strstr(msg, name));
	assert_non_null(strstr(msg, "passthrough"));
	assert_null(strchr(msg, '\n'));
}

static void bad_values(void **state)
{
	(void)state;
	expect_bad("UDPWEAVE_MAX_DELAY_US=banana");
	expect_bad("UDPWEAVE_MAX_DELAY_US=-5");
	expect_bad("UDPWEAVE_MAX_DELAY_US=12x");
	expect_bad("UDPWEAVE_MAX_DELAY_US=");
	expect_bad("UDPWEAVE_MAX_DELAY_US=10000001");
	expect_bad("UDPWEAVE_MAX_DELAY_US=99999999999999999999999");
	expect_bad("UDPWEAVE_INTERVAL_US=0");
	expect_bad("UDPWEAVE_ARENA_KB=255");
	expect_bad("UDPWEAVE_ARENA_KB=1048577");
	expect_bad("UDPWEAVE_BACKEND=nonsense");
	expect_bad("UDPWEAVE_BACKEND=");
	expect_bad("UDPWEAVE_LOG=loud");
	expect_bad("UDPWEAVE_DISABLE=yes");
	expect_bad("UDPWEAVE_STATS=");
	expect_bad("UDPWEAVE_RULES=10.0.0.0/8:rate=8Mbit");
	expect_bad("UDPWEAVE_RULES=10.0.0.0/8");
	expect_bad("UDPWEAVE_RT_PRIORITY=100");
	expect_bad("UDPWEAVE_INTERLEAVE=round-robin");
	expect_bad("UDPWEAVE_INTERLEAVE=burst:");
	expect_bad("UDPWEAVE_INTERLEAVE=burst:0");
	expect_bad("UDPWEAVE_INTERLEAVE=burst:65");
	expect_bad("UDPWEAVE_PACKET_GSO=2");
	expect_bad("UDPWEAVE_PACKET_QDISC_BYPASS=on");
	expect_bad("UDPWEAVE_URING_ZC_BYTES=65536");
	expect_bad("UDPWEAVE_URING_ZC_BYTES=10k");
}

static void packet_options(void **state)
{
	char *flow[] = { "UDPWEAVE_BACKEND=packet", "UDPWEAVE_INTERLEAVE=flow", NULL };
	char *burst[] = { "UDPWEAVE_INTERLEAVE=burst:16", "UDPWEAVE_PACKET_GSO=1",
			  "UDPWEAVE_PACKET_QDISC_BYPASS=1", NULL };

	(void)state;
	assert_int_equal(parse(flow), 0);
	assert_string_equal(cfg.backend, "packet");
	assert_int_equal(cfg.interleave_burst, 1);
	assert_false(cfg.packet_gso);
	assert_false(cfg.packet_qdisc_bypass);
	assert_int_equal(parse(burst), 0);
	assert_int_equal(cfg.interleave_burst, 16);
	assert_true(cfg.packet_gso);
	assert_true(cfg.packet_qdisc_bypass);
}

static void uring_and_its_zero_copy_threshold(void **state)
{
	char *env[] = { "UDPWEAVE_BACKEND=uring", "UDPWEAVE_URING_ZC_BYTES=10000", NULL };

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_string_equal(cfg.backend, "uring");
	assert_int_equal(cfg.uring_zc_bytes, 10000);
	assert_string_equal(msg, "");
}

static void unknown_variable_is_named_and_ignored(void **state)
{
	char *env[] = { "UDPWEAVE_MAXDELAY_US=5", "UDPWEAVE_MAX_DELAY_US=300", NULL };

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_false(cfg.passthrough);
	assert_int_equal(cfg.max_delay_us, 300);
	assert_non_null(strstr(msg, "UDPWEAVE_MAXDELAY_US"));
}

static void other_prefixes_are_not_ours(void **state)
{
	char *env[] = { "UDPWEAVEX=1", "XUDPWEAVE_LOG=loud", "UDPWEAVE", NULL };

	(void)state;
	assert_int_equal(parse(env), 0);
	assert_string_equal(msg, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_without_variables),
		cmocka_unit_test(good_values),
		cmocka_unit_test(zero_delay_and_limits_are_accepted),
		cmocka_unit_test(disable),
		cmocka_unit_test(bad_values),
		cmocka_unit_test(packet_options),
		cmocka_unit_test(uring_and_its_zero_copy_threshold),
		cmocka_unit_test(unknown_variable_is_named_and_ignored),
		cmocka_unit_test(other_prefixes_are_not_ours),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
