/* SPDX-License-Identifier: MIT */
/*
 * The packet backend's arithmetic: the Internet checksum helpers against a
 * byte-by-byte reference (RFC 1071), every length and alignment, and the
 * incremental IPv4 header checksum the frame writer uses.
 */
#include <arpa/inet.h>

#include "helpers.h"
#include "packet.h"

/* RFC 1071, 16-bit big-endian words, carries folded as they come. */
static uint16_t ref_csum(const unsigned char *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint16_t ours(const void *p, size_t len)
{
	return ntohs((uint16_t)~uw_csum_fold(uw_csum_add(0, p, len)));
}

static void checksum_matches_reference(void **state)
{
	unsigned char buf[2100];
	unsigned int seed = 12345;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= 2048; len += (len < 80 ? 1 : 37))
			assert_int_equal(ours(buf + off, len), ref_csum(buf + off, len));
	/* all ones: the fold must carry more than once */
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(ours(buf, 2047), ref_csum(buf, 2047));
	assert_int_equal(ours(buf, 2048), ref_csum(buf, 2048));
}

static void sums_add_up_in_pieces(void **state)
{
	unsigned char buf[1500];

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	/* pieces of even length chain: header template + payload */
	for (size_t cut = 0; cut <= 64; cut += 2) {
		uint64_t s = uw_csum_add(uw_csum_add(0, buf, cut), buf + cut, sizeof(buf) - cut - 1);

		assert_int_equal(ntohs((uint16_t)~uw_csum_fold(s)), ref_csum(buf, sizeof(buf) - 1));
	}
}

/* The frame writer patches tot_len and ID into a template summed with both
 * zero: the result must equal the checksum of the finished header. */
static void ipv4_header_checksum_is_incremental(void **state)
{
	unsigned char h[20] = { 0x45, 0xb8, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0,
				10, 9, 0, 1, 239, 1, 2, 3 };
	uint64_t base = uw_csum_add(0, h, 20);

	(void)state;
	for (uint32_t tot = 28; tot < 65536; tot += 997) {
		for (uint32_t id = 0; id < 65536; id += 4099) {
			uint16_t t = htons((uint16_t)tot), i = htons((uint16_t)id);
			uint16_t inc = (uint16_t)~uw_csum_fold(base + t + i);
			unsigned char full[20];

			memcpy(full, h, 20);
			memcpy(full + 2, &t, 2);
			memcpy(full + 4, &i, 2);
			assert_int_equal(ntohs(inc), ref_csum(full, 20));
			memcpy(full + 10, &inc, 2);
			assert_int_equal(ref_csum(full, 20), 0);	/* verifies */
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(checksum_matches_reference),
		cmocka_unit_test(sums_add_up_in_pieces),
		cmocka_unit_test(ipv4_header_checksum_is_incremental),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
