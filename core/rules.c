/* SPDX-License-Identifier: MIT */
/*
 * UDPWEAVE_RULES: per-destination stream metrics for applications that do
 * not set their own.
 *
 *   rules  = rule *( ";" rule ) [ ";" ]
 *   rule   = target [ ":" port ] ":" metric *( "," metric )
 *   target = IPv4 [ "/" len ] | "[" IPv6 "]" [ "/" len ] | "*"
 *   metric = "rate=" number [ "k" | "M" | "G" ]          bit/s (1000-based)
 *          | "jitter=" number ( "us" | "ms" | "s" )
 *          | "delay=" number ( "us" | "ms" | "s" )
 *
 * e.g. 239.1.1.0/24:rate=8M,jitter=5ms,delay=40ms;10.0.0.5:5004:jitter=1ms
 * Numbers may have a decimal fraction (2.5M, 1.5ms). "*" matches every
 * destination of both families. A datagram's destination takes the most
 * specific matching rule: the longest prefix, then a rule with a port
 * over one without, then the rule written later. Rules are not merged:
 * the one that matches gives all the metrics.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uw.h"

#define UW_RULE_TEXT_MAX 256

struct rule_err {
	char *buf;
	size_t len;
};

static int fail(struct rule_err *e, unsigned int idx, const char *rule, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct rule_err *e, unsigned int idx, const char *rule, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	snprintf(e->buf, e->len, "rule %u '%.64s': %s", idx, rule, why);
	return -EINVAL;
}

/* A decimal number with an optional fraction, times scale (a power of
 * ten of at most 10^9), into *out; the unit text follows at *end. */
static int parse_scaled(const char *s, uint64_t scale, uint64_t *out, const char **end)
{
	uint64_t whole = 0, frac = 0, div = 1;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (div < 1000000000ull) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				div *= 10;
			}
		}
	}
	if (whole > UINT64_MAX / scale)
		return -ERANGE;
	*out = whole * scale + frac * scale / div;
	*end = p;
	return 0;
}

struct uw_unit {
	const char *unit;
	uint64_t scale;
};

/* A number with one of units after it, scaled, in 1..max. */
static int parse_with_unit(const char *v, const struct uw_unit *units, size_t nunits,
			   uint64_t max, uint64_t *out)
{
	const char *end;

	for (size_t i = 0; i < nunits; i++) {
		uint64_t x;

		if (parse_scaled(v, units[i].scale, &x, &end))
			return -EINVAL;
		if (strcmp(end, units[i].unit))
			continue;
		if (x < 1 || x > max)
			return -ERANGE;
		*out = x;
		return 0;
	}
	return -EINVAL;
}

static int parse_rate(const char *v, uint64_t *bps)
{
	static const struct uw_unit units[] = {
		{ "", 1 }, { "k", 1000 }, { "K", 1000 }, { "M", 1000000 },
		{ "G", 1000000000 },
	};

	return parse_with_unit(v, units, UW_ARRAY_SIZE(units), UW_MAX_RATE_BPS, bps);
}

static int parse_duration(const char *v, uint32_t *us)
{
	static const struct uw_unit units[] = {
		{ "us", 1 }, { "ms", 1000 }, { "s", 1000000 },
	};
	uint64_t x;
	int err = parse_with_unit(v, units, UW_ARRAY_SIZE(units), UW_MAX_TIME_US, &x);

	if (!err)
		*us = (uint32_t)x;
	return err;
}

/* "key=value,key=value" into r->m. */
static int parse_metrics(char *list, struct uw_rule *r, struct rule_err *e, const char *text)
{
	bool seen[3] = { false, false, false };
	char *save = NULL;

	if (!*list)
		return fail(e, r->index, text, "no metrics (expected rate=, jitter= or delay=)");
	for (char *kv = strtok_r(list, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		int which, err;

		if (!eq)
			return fail(e, r->index, text, "'%s' is not key=value", kv);
		*eq = '\0';
		if (!strcmp(kv, "rate"))
			which = 0;
		else if (!strcmp(kv, "jitter"))
			which = 1;
		else if (!strcmp(kv, "delay"))
			which = 2;
		else
			return fail(e, r->index, text, "unknown metric '%s' (rate, jitter, delay)", kv);
		if (seen[which])
			return fail(e, r->index, text, "%s given twice", kv);
		seen[which] = true;
		if (which == 0)
			err = parse_rate(eq + 1, &r->m.rate_bps);
		else
			err = parse_duration(eq + 1, which == 1 ? &r->m.jitter_us : &r->m.delay_us);
		if (err == -ERANGE)
			return fail(e, r->index, text, "%s=%s out of range (%s)", kv, eq + 1,
				    which ? "1us..10s" : "1 bit/s..1000G");
		if (err)
			return fail(e, r->index, text, "bad %s '%s' (e.g. %s)", kv, eq + 1,
				    which ? "500us, 5ms, 1.5s" : "800k, 8M, 2.5G");
	}
	return 0;
}

static bool host_bits_zero(const unsigned char *a, unsigned int bits, unsigned int len)
{
	for (unsigned int i = len; i < bits; i++)
		if (a[i / 8] & (0x80u >> (i % 8)))
			return false;
	return true;
}

/* "10.0.0.0/8", "[2001:db8::]/32", "*": the target at the front of *p;
 * *p is left after it. */
static int parse_target(char **p, struct uw_rule *r, struct rule_err *e, const char *text)
{
	char *s = *p, *end, *slash;
	unsigned int bits;

	if (*s == '*') {
		r->family = AF_UNSPEC;
		r->prefix_len = 0;
		*p = s + 1;
		return 0;
	}
	if (*s == '[') {
		end = strchr(s, ']');
		if (!end)
			return fail(e, r->index, text, "'[' without ']' around an IPv6 address");
		*end = '\0';
		if (inet_pton(AF_INET6, s + 1, r->addr) != 1)
			return fail(e, r->index, text, "'%s' is not an IPv6 address", s + 1);
		r->family = AF_INET6;
		bits = 128;
		end++;
	} else {
		size_t n = strcspn(s, "/:");
		char save = s[n];

		s[n] = '\0';
		if (!n)
			return fail(e, r->index, text, "no destination before ':'");
		if (inet_pton(AF_INET, s, r->addr) != 1) {
			return fail(e, r->index, text,
				    "'%s' is not an IPv4 address (IPv6 goes in brackets: [2001:db8::1])", s);
		}
		s[n] = save;
		r->family = AF_INET;
		bits = 32;
		end = s + n;
	}
	r->prefix_len = bits;
	if (*end == '/') {
		unsigned long len;

		slash = end + 1;
		if (*slash < '0' || *slash > '9')
			return fail(e, r->index, text, "bad prefix length");
		len = strtoul(slash, &end, 10);
		if (len > bits)
			return fail(e, r->index, text, "prefix length %lu above %u", len, bits);
		r->prefix_len = (unsigned int)len;
		if (!host_bits_zero(r->addr, bits, r->prefix_len))
			return fail(e, r->index, text, "address has bits set beyond /%u",
				    r->prefix_len);
	}
	*p = end;
	return 0;
}

static int parse_rule(char *text, struct uw_rule *r, struct rule_err *e)
{
	char copy[UW_RULE_TEXT_MAX];
	char *p = text, *colon;
	int err;

	snprintf(copy, sizeof(copy), "%s", text);	/* for messages */
	err = parse_target(&p, r, e, copy);
	if (err)
		return err;
	if (*p != ':')
		return fail(e, r->index, copy, "expected ':' and metrics after the destination");
	p++;
	colon = strchr(p, ':');
	if (colon) {
		char *end;
		unsigned long port;

		if (*p < '0' || *p > '9')
			return fail(e, r->index, copy, "bad port '%.*s'", (int)(colon - p), p);
		port = strtoul(p, &end, 10);
		if (end != colon || port < 1 || port > 65535)
			return fail(e, r->index, copy, "bad port '%.*s' (1..65535)",
				    (int)(colon - p), p);
		r->port = (uint16_t)port;
		p = colon + 1;
	}
	return parse_metrics(p, r, e, copy);
}

/* More specific first; equal: the later in the text first. */
static int rule_order(const void *a, const void *b)
{
	const struct uw_rule *x = a, *y = b;

	if (x->prefix_len != y->prefix_len)
		return x->prefix_len > y->prefix_len ? -1 : 1;
	if (!x->port != !y->port)
		return x->port ? -1 : 1;
	return x->index > y->index ? -1 : 1;
}

int uw_rules_parse(const char *s, struct uw_rule *rules, unsigned int *n,
		   char *err, size_t errlen)
{
	struct rule_err e = { err, errlen };
	char *buf, *save = NULL;
	unsigned int count = 0;
	int ret = 0;

	*n = 0;
	if (errlen)
		err[0] = '\0';
	if (!*s)
		return 0;
	buf = strdup(s);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -EINVAL;
	}
	for (char *t = strtok_r(buf, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
		struct uw_rule *r = &rules[count];

		if (count == UW_MAX_RULES) {
			snprintf(err, errlen, "more than %d rules", UW_MAX_RULES);
			ret = -EINVAL;
			break;
		}
		if (strlen(t) >= UW_RULE_TEXT_MAX) {
			ret = fail(&e, count + 1, t, "longer than %d characters",
				   UW_RULE_TEXT_MAX - 1);
			break;
		}
		memset(r, 0, sizeof(*r));
		r->index = (uint16_t)(count + 1);
		ret = parse_rule(t, r, &e);
		if (ret)
			break;
		count++;
	}
	free(buf);
	if (ret)
		return ret;
	qsort(rules, count, sizeof(*rules), rule_order);
	*n = count;
	return 0;
}

static bool prefix_matches(const struct uw_rule *r, const unsigned char *a)
{
	unsigned int full = r->prefix_len / 8, rest = r->prefix_len % 8;

	if (memcmp(r->addr, a, full))
		return false;
	return !rest || !((r->addr[full] ^ a[full]) & (0xffu << (8 - rest)));
}

const struct uw_rule *uw_rules_match(const struct uw_rule *rules, unsigned int n,
				     const struct uw_addr *dest)
{
	const unsigned char *a;
	uint16_t port;
	int family;

	if (!dest->len)
		return NULL;
	family = dest->u.sa.sa_family;
	if (family == AF_INET) {
		a = (const unsigned char *)&dest->u.in.sin_addr;
		port = ntohs(dest->u.in.sin_port);
	} else {
		a = dest->u.in6.sin6_addr.s6_addr;
		port = ntohs(dest->u.in6.sin6_port);
	}
	for (unsigned int i = 0; i < n; i++) {
		const struct uw_rule *r = &rules[i];

		if (r->family != AF_UNSPEC && r->family != family)
			continue;
		if (r->port && r->port != port)
			continue;
		if (r->family == AF_UNSPEC || prefix_matches(r, a))
			return r;
	}
	return NULL;
}
