/*
 * libuw_ctor.so — sends UDP datagrams from its own constructor, so that the
 * test can check that udpweave handles calls made before (or while) it is
 * initialised, and calls from another library's constructor.
 *
 * Environment:
 *   UW_CTOR_DEST   ADDR:PORT or [ADDR]:PORT (nothing is sent when unset)
 *   UW_CTOR_COUNT  datagrams per flow (default 50)
 *   UW_CTOR_FLOW   first flow id (default 9000)
 * Flow UW_CTOR_FLOW goes through sendto on an unconnected socket that stays
 * open; flow UW_CTOR_FLOW+1 through send on a connected socket that is
 * closed at the end of the constructor.  Payload format: see uw_sender.c.
 * Reports "uw_ctor: sent=N errors=E" on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uw_payload.h"


static void uw_build(uint8_t *p, uint32_t len, uint32_t flow, uint64_t seq)
{
	uw_payload_build(p, len, flow, seq);
}

__attribute__((constructor)) static void uw_ctor_send(void)
{
	static const uint32_t sizes[] = { 28, 1316, 1316, 700, 1472 };
	const char *dest = getenv("UW_CTOR_DEST");
	const char *count_s = getenv("UW_CTOR_COUNT");
	const char *flow_s = getenv("UW_CTOR_FLOW");
	unsigned long count = count_s ? strtoul(count_s, NULL, 10) : 50;
	uint32_t flow = flow_s ? (uint32_t)strtoul(flow_s, NULL, 10) : 9000;
	struct sockaddr_storage ss;
	socklen_t len;
	uint8_t buf[2048];
	unsigned long sent = 0, errors = 0;
	int unconn, conn;
	char line[96];

	if (!dest)
		return;
	if (uw_parse_addr(dest, &ss, &len) < 0) {
		fprintf(stderr, "uw_ctor: bad UW_CTOR_DEST %s\n", dest);
		return;
	}
	unconn = socket(ss.ss_family, SOCK_DGRAM, 0);
	conn = socket(ss.ss_family, SOCK_DGRAM, 0);
	if (unconn < 0 || conn < 0 || connect(conn, (struct sockaddr *)&ss, len) < 0) {
		fprintf(stderr, "uw_ctor: socket: %s\n", strerror(errno));
		return;
	}
	for (unsigned long i = 0; i < count; i++) {
		uint32_t n = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];

		uw_build(buf, n, flow, i);
		if (sendto(unconn, buf, n, 0, (struct sockaddr *)&ss, len) == (ssize_t)n)
			sent++;
		else
			errors++;
		uw_build(buf, n, flow + 1, i);
		if (send(conn, buf, n, 0) == (ssize_t)n)
			sent++;
		else
			errors++;
	}
	close(conn);
	snprintf(line, sizeof(line), "uw_ctor: sent=%lu errors=%lu\n", sent, errors);
	if (write(2, line, strlen(line)) < 0)
		errors++;
}
