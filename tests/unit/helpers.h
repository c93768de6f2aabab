/* SPDX-License-Identifier: MIT */
/* Shared fixtures of the unit tests: a fake clock, a fake system-call
 * table, a fake backend that records what it was asked to send, and
 * builders for sockets and addresses. Included by one test file each. */
#ifndef UW_TEST_HELPERS_H
#define UW_TEST_HELPERS_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "uw.h"

/* Each test file uses some of these. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

/* ---- fake clock ---------------------------------------------------------- */

static uint64_t fake_now;

static uint64_t fake_now_ns(void)
{
	return fake_now;
}

static void fake_log(const char *line, size_t len)
{
	(void)line;
	(void)len;
}

static int fake_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(40000) };

	(void)fd;
	memcpy(sa, &in, sizeof(in));
	*len = sizeof(in);
	return 0;
}

static int fake_getsockopt_mtu1500(int fd, int level, int opt, void *val, socklen_t *len)
{
	(void)fd;
	(void)level;
	(void)opt;
	*(int *)val = 1500;
	*len = sizeof(int);
	return 0;
}

static int fake_socket(int d, int t, int p)
{
	(void)d;
	(void)t;
	(void)p;
	return 99;
}

static int fake_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	(void)fd;
	(void)sa;
	(void)len;
	return 0;
}

static int fake_close(int fd)
{
	(void)fd;
	return 0;
}

static int fake_poll(struct pollfd *p, nfds_t n, int ms)
{
	(void)p;
	(void)n;
	(void)ms;
	return 1;
}

static int fake_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	(void)fd;
	(void)level;
	(void)opt;
	(void)val;
	(void)len;
	return 0;
}

static int fake_nanosleep(const struct timespec *a, struct timespec *b)
{
	(void)a;
	(void)b;
	return 0;
}

static struct uw_sys fake_sys = {
	.poll		= fake_poll,
	.socket		= fake_socket,
	.connect	= fake_connect,
	.close		= fake_close,
	.getsockopt	= fake_getsockopt_mtu1500,
	.getsockname	= fake_getsockname,
	.setsockopt	= fake_setsockopt,
	.nanosleep	= fake_nanosleep,
	.now_ns		= fake_now_ns,
	.log_write	= fake_log,
};

/* ---- fake backend: records every run it is handed ------------------------ */

#define REC_MAX 4096

struct rec_run {
	struct uw_sock *sock;
	struct uw_addr dest;
	uint32_t nseg, seg_size, bytes;
	uint32_t first_len, last_len;
	unsigned char first_byte, last_byte;	/* data[0] of first and last datagram */
	uint64_t txtime_ns;
	uint64_t sent_at;			/* the clock when it was handed over */
};

static struct rec_run rec[REC_MAX];
static size_t nrec;
static _Atomic size_t rec_batches;
static uint32_t fake_max_seg = 1472;

static int rec_open(struct uw_backend *be, const struct uw_config *cfg)
{
	(void)be;
	(void)cfg;
	return 0;
}

static int rec_send_batch(struct uw_backend *be, struct uw_batch *b)
{
	rec_batches++;
	for (size_t i = 0; i < b->nruns && nrec < REC_MAX; i++) {
		struct uw_run *r = &b->runs[i];
		struct rec_run *o = &rec[nrec++];

		o->sock = r->sock;
		o->dest = *r->dest;
		o->nseg = r->nseg;
		o->seg_size = r->seg_size;
		o->bytes = r->bytes;
		o->first_len = (uint32_t)r->iov[0].iov_len;
		o->last_len = (uint32_t)r->iov[r->nseg - 1].iov_len;
		o->first_byte = r->iov[0].iov_len ? ((unsigned char *)r->iov[0].iov_base)[0] : 0;
		o->last_byte = r->iov[r->nseg - 1].iov_len ?
			((unsigned char *)r->iov[r->nseg - 1].iov_base)[0] : 0;
		o->txtime_ns = r->txtime_ns;
		o->sent_at = be->sys && be->sys->now_ns ? be->sys->now_ns() : 0;
	}
	return 0;
}

static uint32_t rec_max_segment(struct uw_backend *be, struct uw_sock *s,
				const struct uw_addr *dest)
{
	(void)be;
	(void)s;
	(void)dest;
	return fake_max_seg;
}

static const struct uw_backend_ops rec_ops = {
	.name		= "recorder",
	.open		= rec_open,
	.send_batch	= rec_send_batch,
	.max_segment	= rec_max_segment,
};

/* The same, attaching departure times (as mmsg does). */
static const struct uw_backend_ops rec_txtime_ops = {
	.name		= "recorder-txtime",
	.open		= rec_open,
	.send_batch	= rec_send_batch,
	.max_segment	= rec_max_segment,
	.txtime		= true,
};

static void rec_reset(void)
{
	nrec = 0;
	rec_batches = 0;
	fake_max_seg = 1472;
}

/* ---- builders -------------------------------------------------------------- */

static struct uw_sock *make_sock(int fd, int family)
{
	struct uw_sock *s = calloc(1, sizeof(*s));

	atomic_store(&s->fd, fd);
	s->family = family;
	uw_sock_set(s, UW_SOCK_BOUND);
	return s;
}

static struct uw_addr make_v4(uint32_t host_order_addr, uint16_t port)
{
	struct uw_addr a;
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(host_order_addr) };

	uw_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof(in));
	return a;
}

/* A datagram of len bytes, all equal to tag. */
static void stage_put(struct uw_stage *st, struct uw_sock *s, const struct uw_addr *dest,
		      size_t len, unsigned char tag)
{
	static unsigned char buf[70000];
	struct iovec iov = { buf, len };

	memset(buf, tag, len);
	assert_int_equal(uw_stage_add(st, s, dest, &iov, 1, len, fake_now_ns), 0);
}

#endif
