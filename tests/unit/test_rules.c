/* SPDX-License-Identifier: MIT */
/* UDPWEAVE_RULES: valid rules and units, which rule a destination takes
 * when several overlap, and every kind of malformed rule. */
#include <netinet/in.h>

#include "helpers.h"

static struct uw_rule rules[UW_MAX_RULES];
static unsigned int n;
static char err[256];

static int parse(const char *s)
{
	return uw_rules_parse(s, rules, &n, err, sizeof(err));
}

static struct uw_addr v6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	struct uw_addr a;

	assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
	uw_addr_from_sockaddr(&a, (struct sockaddr *)&in6, sizeof(in6));
	return a;
}

static const struct uw_rule *match(const struct uw_addr *a)
{
	return uw_rules_match(rules, n, a);
}

static void the_design_example(void **state)
{
	struct uw_addr a = make_v4(0xef010105, 1234);	/* 239.1.1.5 */
	const struct uw_rule *r;

	(void)state;
	assert_int_equal(parse("239.1.1.0/24:rate=8M,jitter=5ms,delay=40ms;"
			       "10.0.0.5:5004:jitter=1ms"), 0);
	assert_int_equal(n, 2);
	r = match(&a);
	assert_non_null(r);
	assert_int_equal(r->index, 1);
	assert_int_equal(r->m.rate_bps, 8000000);
	assert_int_equal(r->m.jitter_us, 5000);
	assert_int_equal(r->m.delay_us, 40000);
	a = make_v4(0x0a000005, 5004);
	r = match(&a);
	assert_non_null(r);
	assert_int_equal(r->index, 2);
	assert_int_equal(r->m.jitter_us, 1000);
	assert_int_equal(r->m.rate_bps, 0);		/* not set */
	assert_int_equal(r->m.delay_us, 0);
	a = make_v4(0x0a000005, 5005);			/* other port: no rule */
	assert_null(match(&a));
	a = make_v4(0xef010205, 1234);			/* outside the /24 */
	assert_null(match(&a));
}

static void units_and_fractions(void **state)
{
	(void)state;
	assert_int_equal(parse("1.2.3.4:rate=2.5M,jitter=1.5ms,delay=2s"), 0);
	assert_int_equal(rules[0].m.rate_bps, 2500000);
	assert_int_equal(rules[0].m.jitter_us, 1500);
	assert_int_equal(rules[0].m.delay_us, 2000000);
	assert_int_equal(parse("1.2.3.4:rate=800k,jitter=250us"), 0);
	assert_int_equal(rules[0].m.rate_bps, 800000);
	assert_int_equal(rules[0].m.jitter_us, 250);
	assert_int_equal(parse("1.2.3.4:rate=1G"), 0);
	assert_int_equal(rules[0].m.rate_bps, 1000000000);
	assert_int_equal(parse("1.2.3.4:rate=64000"), 0);	/* plain bit/s */
	assert_int_equal(rules[0].m.rate_bps, 64000);
	assert_int_equal(parse("1.2.3.4:rate=1000G,delay=10s"), 0);	/* the limits */
	assert_int_equal(rules[0].m.rate_bps, 1000000000000ull);
	assert_int_equal(rules[0].m.delay_us, 10000000);
	assert_int_equal(parse(""), 0);			/* no rules */
	assert_int_equal(n, 0);
	assert_int_equal(parse("1.2.3.4:jitter=1ms;"), 0);	/* a trailing ';' */
	assert_int_equal(n, 1);
}

static void ipv6_and_wildcard(void **state)
{
	struct uw_addr a = v6("2001:db8::7", 5004), b = v6("2001:db9::1", 5004);
	struct uw_addr c4 = make_v4(0xc0a80001, 9);

	(void)state;
	assert_int_equal(parse("[2001:db8::]/32:jitter=2ms;[2001:db8::7]:5004:jitter=1ms;"
			       "*:delay=30ms"), 0);
	assert_int_equal(n, 3);
	assert_int_equal(match(&a)->m.jitter_us, 1000);		/* /128 with a port */
	a = v6("2001:db8::7", 5005);
	assert_int_equal(match(&a)->m.jitter_us, 2000);		/* the /32 */
	assert_int_equal(match(&b)->m.delay_us, 30000);		/* '*' */
	assert_int_equal(match(&c4)->m.delay_us, 30000);	/* '*' takes IPv4 too */
	/* an IPv4 rule never matches IPv6, nor the reverse */
	assert_int_equal(parse("0.0.0.0/0:jitter=3ms"), 0);
	assert_null(match(&b));
	assert_non_null(match(&c4));
	assert_int_equal(parse("[::]/0:jitter=3ms"), 0);
	assert_null(match(&c4));
	assert_non_null(match(&b));
}

/* Longest prefix, then a port, then the later rule; whole rules, never a
 * mix of two. */
static void overlapping_rules_most_specific_wins(void **state)
{
	struct uw_addr a = make_v4(0x0a010203, 5004);	/* 10.1.2.3:5004 */
	const struct uw_rule *r;

	(void)state;
	assert_int_equal(parse("10.0.0.0/8:rate=1M;10.1.0.0/16:rate=2M;"
			       "10.1.2.3:rate=3M;10.1.0.0/16:5004:rate=4M"), 0);
	r = match(&a);
	assert_int_equal(r->m.rate_bps, 3000000);	/* /32 beats /16 with a port */
	a = make_v4(0x0a010204, 5004);
	assert_int_equal(match(&a)->m.rate_bps, 4000000);	/* /16 + port beats /16 */
	a = make_v4(0x0a010204, 5005);
	assert_int_equal(match(&a)->m.rate_bps, 2000000);
	a = make_v4(0x0a020204, 5004);
	assert_int_equal(match(&a)->m.rate_bps, 1000000);
	/* the same prefix and port twice: the later one wins, whole */
	assert_int_equal(parse("10.1.0.0/16:rate=5M,jitter=9ms;10.1.0.0/16:rate=6M"), 0);
	r = match(&a);
	assert_null(r);
	a = make_v4(0x0a010101, 1);
	r = match(&a);
	assert_int_equal(r->m.rate_bps, 6000000);
	assert_int_equal(r->m.jitter_us, 0);
	assert_int_equal(r->index, 2);
	/* a non-octet prefix */
	assert_int_equal(parse("10.1.2.128/25:jitter=7ms"), 0);
	a = make_v4(0x0a0102ff, 1);
	assert_int_equal(match(&a)->m.jitter_us, 7000);
	a = make_v4(0x0a01027f, 1);
	assert_null(match(&a));
}

/* Each malformed value: -EINVAL, no rules, a message naming the rule and
 * what is wrong with it, on one line. */
static void expect_bad(const char *s, const char *why)
{
	n = 99;
	assert_int_equal(parse(s), -EINVAL);
	assert_int_equal(n, 0);
	if (!strstr(err, why))
		fail_msg("'%s': message '%s' lacks '%s'", s, err, why);
	assert_null(strchr(err, '\n'));
}

static void malformed_rules(void **state)
{
	(void)state;
	expect_bad("10.0.0.0/8", "expected ':' and metrics");
	expect_bad("10.0.0.0/8:", "no metrics");
	expect_bad("10.0.0.0/8:rate", "not key=value");
	expect_bad("10.0.0.0/8:speed=1M", "unknown metric 'speed'");
	expect_bad("10.0.0.0/8:rate=8Mbit", "bad rate");
	expect_bad("10.0.0.0/8:rate=-1", "bad rate");
	expect_bad("10.0.0.0/8:rate=0", "out of range");
	expect_bad("10.0.0.0/8:rate=2000G", "out of range");
	expect_bad("10.0.0.0/8:jitter=5", "bad jitter");
	expect_bad("10.0.0.0/8:jitter=5 ms", "bad jitter");
	expect_bad("10.0.0.0/8:delay=11s", "out of range");
	expect_bad("10.0.0.0/8:delay=1.ms", "bad delay");
	expect_bad("10.0.0.0/8:jitter=1ms,jitter=2ms", "given twice");
	expect_bad("10.0.0/8:jitter=1ms", "not an IPv4 address");
	expect_bad("300.0.0.1:jitter=1ms", "not an IPv4 address");
	expect_bad("2001:db8::1:jitter=1ms", "IPv6 goes in brackets");
	expect_bad("[2001:db8::1:jitter=1ms", "without ']'");
	expect_bad("[2001:zz8::1]:jitter=1ms", "not an IPv6 address");
	expect_bad("10.0.0.0/33:jitter=1ms", "prefix length 33");
	expect_bad("10.0.0.0/x:jitter=1ms", "bad prefix length");
	expect_bad("10.0.0.1/8:jitter=1ms", "bits set beyond /8");
	expect_bad("10.0.0.1:0:jitter=1ms", "bad port");
	expect_bad("10.0.0.1:70000:jitter=1ms", "bad port");
	expect_bad("10.0.0.1:50x:jitter=1ms", "bad port");
	expect_bad(":jitter=1ms", "no destination");
	/* the second rule is named by its position */
	expect_bad("10.0.0.1:jitter=1ms;10.0.0.2:jitter=bad", "rule 2 '10.0.0.2:jitter=bad'");
}

static void at_most_32_rules(void **state)
{
	char buf[2048] = "";

	(void)state;
	for (int i = 0; i < UW_MAX_RULES; i++) {
		char one[40];

		snprintf(one, sizeof(one), "10.0.0.%d:jitter=1ms;", i);
		strcat(buf, one);
	}
	assert_int_equal(parse(buf), 0);
	assert_int_equal(n, UW_MAX_RULES);
	strcat(buf, "10.0.1.1:jitter=1ms");
	expect_bad(buf, "more than 32 rules");
}

/* Through UDPWEAVE_RULES: parsed into the configuration, or one line and
 * passthrough. */
static void rules_in_the_configuration(void **state)
{
	struct uw_config cfg;
	char msg[512];
	char *good[] = { "UDPWEAVE_RULES=10.0.0.0/8:jitter=1ms;10.0.0.5:rate=1M", NULL };
	char *bad[] = { "UDPWEAVE_RULES=10.0.0.0/8:jitter=1ms;10.0.0.5:rate=1X", NULL };

	(void)state;
	assert_int_equal(uw_config_parse(&cfg, good, msg, sizeof(msg)), 0);
	assert_int_equal(cfg.nrules, 2);
	assert_int_equal(cfg.rules[0].prefix_len, 32);	/* most specific first */
	assert_int_equal(uw_config_parse(&cfg, bad, msg, sizeof(msg)), -EINVAL);
	assert_true(cfg.passthrough);
	assert_int_equal(cfg.nrules, 0);
	assert_non_null(strstr(msg, "UDPWEAVE_RULES"));
	assert_non_null(strstr(msg, "rule 2"));
	assert_non_null(strstr(msg, "passthrough"));
	assert_null(strchr(msg, '\n'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_design_example),
		cmocka_unit_test(units_and_fractions),
		cmocka_unit_test(ipv6_and_wildcard),
		cmocka_unit_test(overlapping_rules_most_specific_wins),
		cmocka_unit_test(malformed_rules),
		cmocka_unit_test(at_most_32_rules),
		cmocka_unit_test(rules_in_the_configuration),
	};

	return cmocka_run_group_tests_name("rules", tests, NULL, NULL);
}
