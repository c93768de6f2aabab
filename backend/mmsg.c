/* SPDX-License-Identifier: MIT */
/*
 * The mmsg backend: per socket, one sendmmsg(2) whose messages are the
 * socket's GSO runs (a UDP_SEGMENT control message each), destinations
 * interleaved as the batch builder ordered them. The application's own
 * socket sends, so its options (TTL, TOS, multicast, bound port) apply.
 *
 * When the kernel refuses GSO (EIO: no checksum offload on the route,
 * EINVAL), the rest of the socket's batch goes as plain datagrams in the
 * same sendmmsg fashion, and the socket is remembered as GSO-less.
 *
 * A run with a departure time (kernel pacing, core/pace.c) carries it as
 * SCM_TXTIME, beside its UDP_SEGMENT: fq releases it then.
 */
#include <errno.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "trace.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef SCM_TXTIME
#define SCM_TXTIME 61
#endif

union uw_cmsg_seg {
	char buf[CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(uint64_t))];
	struct cmsghdr align;
};

struct mmsg_priv {
	struct mmsghdr *mm;
	struct uw_run **run;		/* run of each message */
	uint32_t *first;		/* its first datagram within the run */
	union uw_cmsg_seg *cmsg;
	size_t cap;
};

static int mmsg_open(struct uw_backend *be, const struct uw_config *cfg)
{
	be->priv = calloc(1, sizeof(struct mmsg_priv));
	return be->priv ? 0 : -ENOMEM;
}

static void mmsg_close(struct uw_backend *be)
{
	struct mmsg_priv *p = be->priv;

	if (!p)
		return;
	free(p->mm);
	free(p->run);
	free(p->first);
	free(p->cmsg);
	free(p);
	be->priv = NULL;
}

static int reserve(struct mmsg_priv *p, size_t n)
{
	size_t cap = p->cap ? p->cap : 256;
	void *a, *b, *c, *d;

	if (n <= p->cap)
		return 0;
	while (cap < n)
		cap *= 2;
	a = realloc(p->mm, cap * sizeof(*p->mm));
	if (a)
		p->mm = a;
	b = realloc(p->run, cap * sizeof(*p->run));
	if (b)
		p->run = b;
	c = realloc(p->first, cap * sizeof(*p->first));
	if (c)
		p->first = c;
	d = realloc(p->cmsg, cap * sizeof(*p->cmsg));
	if (d)
		p->cmsg = d;
	if (!a || !b || !c || !d)
		return -ENOMEM;
	p->cap = cap;
	return 0;
}

static void fill_msg(struct mmsg_priv *p, size_t k, struct uw_run *r, uint32_t first,
		     uint32_t niov, bool gso)
{
	struct msghdr *h = &p->mm[k].msg_hdr;
	size_t clen = (gso ? CMSG_SPACE(sizeof(uint16_t)) : 0) +
		      (r->txtime_ns ? CMSG_SPACE(sizeof(uint64_t)) : 0);

	memset(h, 0, sizeof(*h));
	if (r->dest->len) {
		h->msg_name = (void *)&r->dest->u;
		h->msg_namelen = r->dest->len;
	}
	h->msg_iov = r->iov + first;
	h->msg_iovlen = niov;
	if (clen) {
		struct cmsghdr *cm;

		memset(&p->cmsg[k], 0, sizeof(p->cmsg[k]));
		h->msg_control = p->cmsg[k].buf;
		h->msg_controllen = clen;
		cm = CMSG_FIRSTHDR(h);
		if (gso) {
			cm->cmsg_level = SOL_UDP;
			cm->cmsg_type = UDP_SEGMENT;
			cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			*(uint16_t *)CMSG_DATA(cm) = (uint16_t)r->seg_size;
			cm = CMSG_NXTHDR(h, cm);
		}
		if (r->txtime_ns) {
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_TXTIME;
			cm->cmsg_len = CMSG_LEN(sizeof(uint64_t));
			memcpy(CMSG_DATA(cm), &r->txtime_ns, sizeof(uint64_t));
		}
	}
	p->run[k] = r;
	p->first[k] = first;
}

/* Messages for runs[0..n): one per GSO run, or one per datagram when the
 * socket (or this attempt) has no GSO. Returns the number of messages. */
static ssize_t build_msgs(struct mmsg_priv *p, struct uw_run *runs, size_t n, bool gso)
{
	size_t need = 0, k = 0;

	for (size_t i = 0; i < n; i++)
		need += gso ? 1 : runs[i].nseg;
	if (reserve(p, need))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct uw_run *r = &runs[i];

		if (gso || r->nseg == 1)
			fill_msg(p, k++, r, 0, r->nseg, gso && r->nseg > 1);
		else
			for (uint32_t j = 0; j < r->nseg; j++)
				fill_msg(p, k++, r, j, 1, false);
	}
	return (ssize_t)k;
}

/* Only a GSO message carries more than one datagram. */
static bool is_gso_msg(const struct mmsg_priv *p, size_t k)
{
	return p->mm[k].msg_hdr.msg_iovlen > 1;
}

/* Send the runs of one socket. */
static void send_group(struct uw_backend *be, struct uw_group *g)
{
	struct mmsg_priv *p = be->priv;
	struct uw_sock *s = g->sock;
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
	bool gso = !(uw_sock_flags(s) & UW_SOCK_NO_GSO);
	struct uw_retry rs = { 0 };
	size_t done_runs = 0;
	ssize_t n = build_msgs(p, g->runs, g->nruns, gso);
	size_t i = 0;

	if (n < 0) {	/* no memory for the vector: one message at a time */
		uw_backend_passthrough.send_batch(be, &(struct uw_batch){
			.groups = g, .ngroups = 1, .runs = g->runs, .nruns = g->nruns });
		return;
	}
	while (i < (size_t)n) {
		unsigned int vlen = (size_t)n - i > UW_UIO_MAXIOV ? UW_UIO_MAXIOV
								   : (unsigned int)((size_t)n - i);
		/* never waiting for room: a full socket's runs are held */
		int rc = be->sys->sendmmsg(fd, &p->mm[i], vlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		int err = errno;
		struct uw_run *r;

		uw_stat_add(&be->stats->syscalls, 1);
		uw_stat_add(&be->stats->mmsg_calls, 1);
		if (uw_trace_on(backend_send)) {
			uint32_t segs = 0;

			for (unsigned int k = 0; k < vlen; k++)
				segs += (uint32_t)p->mm[i + k].msg_hdr.msg_iovlen;
			uw_trace(backend_send, "mmsg", vlen, segs, rc < 0 ? -err : rc);
		}
		if (rc > 0) {
			uw_stat_add(&be->stats->mmsg_messages, (uint64_t)rc);
			i += (size_t)rc;
			memset(&rs, 0, sizeof(rs));
			continue;
		}
		r = p->run[i];
		if (rc == 0)
			err = EIO;
		if (err == EINVAL && is_gso_msg(p, i))
			err = uw_be_gso_einval(be, r);
		switch (uw_be_on_error(be, &rs, s, fd, err, is_gso_msg(p, i))) {
		case UW_BE_RETRY:
			break;
		case UW_BE_DROP:
			uw_be_drop(r, p->mm[i].msg_hdr.msg_iov,
				   (uint32_t)p->mm[i].msg_hdr.msg_iovlen);
			i++;
			memset(&rs, 0, sizeof(rs));
			break;
		case UW_BE_PARK:
			uw_be_hold(r, p->first[i], g->runs + g->nruns);
			return;
		case UW_BE_UNGSO:
			/* Messages are whole runs in GSO mode: resend from this
			 * run on as plain datagrams. */
			done_runs = (size_t)(r - g->runs);
			n = build_msgs(p, g->runs + done_runs, g->nruns - done_runs, false);
			if (n < 0) {
				uw_backend_passthrough.send_batch(be, &(struct uw_batch){
					.groups = g, .ngroups = 1, .runs = g->runs + done_runs,
					.nruns = g->nruns - done_runs });
				return;
			}
			i = 0;
			break;
		}
	}
}

static int mmsg_send_batch(struct uw_backend *be, struct uw_batch *b)
{
	for (size_t g = 0; g < b->ngroups; g++)
		send_group(be, &b->groups[g]);
	return 0;
}

static uint32_t mmsg_max_segment(struct uw_backend *be, struct uw_sock *s,
				 const struct uw_addr *dest)
{
	return uw_route_max_segment(be->sys, s, dest);
}

const struct uw_backend_ops uw_backend_mmsg = {
	.name		= "mmsg",
	.open		= mmsg_open,
	.send_batch	= mmsg_send_batch,
	.max_segment	= mmsg_max_segment,
	.close		= mmsg_close,
	.txtime		= true,
};
