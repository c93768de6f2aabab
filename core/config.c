/* SPDX-License-Identifier: MIT */
/* UDPWEAVE_* configuration: read once, every bad value named in one line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uw.h"

#define UW_ENV_PREFIX "UDPWEAVE_"

void uw_config_defaults(struct uw_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->backend, "auto");
	cfg->max_delay_us = 2000;
	cfg->arena_kb = 4096;
	cfg->log_level = UW_LOG_WARN;
	cfg->interleave_burst = 1;
	cfg->sync = true;
	cfg->step_aside = true;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_level(const char *s, enum uw_log_level *out)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (size_t i = 0; i < UW_ARRAY_SIZE(names); i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum uw_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_backend(const char *s, char *out, size_t outlen)
{
	if (!uw_backend_find(s))
		return -EINVAL;
	snprintf(out, outlen, "%s", s);
	return 0;
}

static int parse_stats(const char *s, char *out, size_t outlen)
{
	if (!*s || strlen(s) >= outlen)
		return -EINVAL;
	strcpy(out, s);
	return 0;
}

struct uw_var {
	const char *name;
	const char *expect;
};

static const struct uw_var uw_vars[] = {
	{ "BACKEND",      "one of auto, mmsg, packet, uring, passthrough" },
	{ "MAX_DELAY_US", "microseconds, 0..10000000" },
	{ "INTERVAL_US",  "microseconds, 1..10000000" },
	{ "ARENA_KB",     "kilobytes, 256..1048576" },
	{ "RULES",        "destination rules" },
	{ "STATS",        "a file path or 'stderr'" },
	{ "LOG",          "one of error, warn, info, debug" },
	{ "DISABLE",      "0 or 1" },
	{ "STATS_OWNER",  "a process id (set by the library itself)" },
	{ "RT_PRIORITY",  "0 (off) or a SCHED_FIFO priority 1..99 for the flush thread" },
	{ "INTERLEAVE",   "'flow' or 'burst:N' (N datagrams per destination in a row, 1..64)" },
	{ "PACKET_QDISC_BYPASS", "0 or 1" },
	{ "PACKET_GSO",   "0 or 1" },
	{ "URING_ZC_BYTES", "0 (off) or the smallest message in bytes the uring backend sends zero-copy, 1..65535" },
	{ "TRACE",        "0 (never load the LTTng-UST provider), 1 (always) or auto" },
	{ "SYNC",         "1 (the kernel judges a socket's first sends and those after an error) or 0" },
	{ "STEP_ASIDE",   "1 (slow and interactive sockets send straight to the kernel) or 0" },
};

static int parse_interleave(const char *s, uint32_t *out)
{
	if (!strcmp(s, "flow")) {
		*out = 1;
		return 0;
	}
	if (strncmp(s, "burst:", 6))
		return -EINVAL;
	return parse_u32(s + 6, 1, 64, out);
}

static int parse_bool(const char *s, bool *out)
{
	uint32_t u;

	if (parse_u32(s, 0, 1, &u))
		return -EINVAL;
	*out = u;
	return 0;
}

static int apply(struct uw_config *cfg, size_t var, const char *v, char *why, size_t whylen)
{
	uint32_t u;

	switch (var) {
	case 0: return parse_backend(v, cfg->backend, sizeof(cfg->backend));
	case 1: return parse_u32(v, 0, 10000000, &cfg->max_delay_us);
	case 2: return parse_u32(v, 1, 10000000, &cfg->interval_us);
	case 3: return parse_u32(v, 256, 1048576, &cfg->arena_kb);
	case 4: return uw_rules_parse(v, cfg->rules, &cfg->nrules, why, whylen);
	case 5: return parse_stats(v, cfg->stats_path, sizeof(cfg->stats_path));
	case 6: return parse_level(v, &cfg->log_level);
	case 7:
		if (parse_u32(v, 0, 1, &u))
			return -EINVAL;
		cfg->disabled = u;
		return 0;
	case 8:
		return parse_u32(v, 1, INT32_MAX, &u);
	case 9:
		return parse_u32(v, 0, 99, &cfg->rt_priority);
	case 10:
		return parse_interleave(v, &cfg->interleave_burst);
	case 11:
		return parse_bool(v, &cfg->packet_qdisc_bypass);
	case 12:
		return parse_bool(v, &cfg->packet_gso);
	case 13:
		return parse_u32(v, 0, 65535, &cfg->uring_zc_bytes);
	case 14:
		if (!strcmp(v, "auto")) {
			cfg->trace = UW_TRACE_AUTO;
			return 0;
		}
		if (parse_u32(v, 0, 1, &u))
			return -EINVAL;
		cfg->trace = u ? UW_TRACE_ON : UW_TRACE_OFF;
		return 0;
	case 15:
		return parse_bool(v, &cfg->sync);
	case 16:
		return parse_bool(v, &cfg->step_aside);
	}
	return -EINVAL;
}

static int find_var(const char *name, size_t namelen)
{
	for (size_t i = 0; i < UW_ARRAY_SIZE(uw_vars); i++)
		if (strlen(uw_vars[i].name) == namelen &&
		    !memcmp(uw_vars[i].name, name, namelen))
			return (int)i;
	return -1;
}

int uw_config_parse(struct uw_config *cfg, char *const *env, char *msg, size_t msglen)
{
	const size_t plen = strlen(UW_ENV_PREFIX);
	char why[200];

	uw_config_defaults(cfg);
	if (msglen)
		msg[0] = '\0';
	for (; env && *env; env++) {
		const char *e = *env, *eq = strchr(e, '=');
		int var;

		if (strncmp(e, UW_ENV_PREFIX, plen) || !eq)
			continue;
		var = find_var(e + plen, (size_t)(eq - e) - plen);
		if (var < 0) {
			snprintf(msg, msglen, "unknown variable %.*s ignored",
				 (int)(eq - e), e);
			continue;
		}
		why[0] = '\0';
		if (apply(cfg, (size_t)var, eq + 1, why, sizeof(why))) {
			snprintf(msg, msglen,
				 "%s" "%s=%.64s: %s%s; running in passthrough (every send goes straight to the kernel)",
				 UW_ENV_PREFIX, uw_vars[var].name, eq + 1, why[0] ? "" : "expected ",
				 why[0] ? why : uw_vars[var].expect);
			goto bad;
		}
	}
	return 0;
bad:
	uw_config_defaults(cfg);
	cfg->passthrough = true;
	return -EINVAL;
}
