/* SPDX-License-Identifier: MIT */
/*
 * What the test tools share. The payload: a 28-byte little-endian header
 * (magic "UWv1", flow id u32, sequence u64, CLOCK_MONOTONIC send time ns
 * u64, total length u32), then a pattern derived from (flow, sequence) so
 * that a receiver can check every byte. And destinations as they are
 * written on command lines and in the environment: ADDR:PORT, [ADDR6]:PORT.
 */
#ifndef UW_PAYLOAD_H
#define UW_PAYLOAD_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define UW_MAGIC	0x31765755u
#define UW_HDR_LEN	28u

static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static inline uint32_t uw_seed(uint32_t flow, uint64_t seq)
{
	uint64_t x = ((uint64_t)flow << 40) ^ seq ^ 0x9E3779B97F4A7C15ull;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/* The bytes after the header. */
static inline void uw_fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint8_t s0 = (uint8_t)seed, s1 = (uint8_t)((seed >> 8) | 1);

	for (size_t i = UW_HDR_LEN; i < len; i++)
		p[i] = (uint8_t)(s0 + i * s1 + (i >> 8));
}

/* A whole datagram of len >= UW_HDR_LEN bytes, stamped now. */
static inline void uw_payload_build(uint8_t *p, uint32_t len, uint32_t flow, uint64_t seq)
{
	put_le32(p, UW_MAGIC);
	put_le32(p + 4, flow);
	put_le64(p + 8, seq);
	put_le64(p + 16, mono_ns());
	put_le32(p + 24, len);
	uw_fill_pattern(p, len, uw_seed(flow, seq));
}

/* "ADDR:PORT" or "[ADDR6]:PORT" (port 0..65535) into ss and len: 0 or -1. */
static inline int uw_parse_addr(const char *arg, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	const char *host_s = arg, *port_s, *sep;
	char host[80], *end;
	size_t hlen;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (arg[0] == '[') {
		sep = strchr(arg, ']');
		if (!sep || sep[1] != ':')
			return -1;
		host_s = arg + 1;
		port_s = sep + 2;
	} else {
		sep = strrchr(arg, ':');
		if (!sep)
			return -1;
		port_s = sep + 1;
	}
	hlen = (size_t)(sep - host_s);
	if (hlen >= sizeof(host))
		return -1;
	memcpy(host, host_s, hlen);
	host[hlen] = '\0';
	port = strtol(port_s, &end, 10);
	if (*port_s == '\0' || *end || port < 0 || port > 65535)
		return -1;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

#endif
