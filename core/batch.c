/* SPDX-License-Identifier: MIT */
/*
 * The batch builder: turns the flows of detached stages into messages.
 *
 * Consecutive equal-length datagrams of one flow become one GSO run (the
 * last may be shorter), capped at UW_GSO_MAX_SEGS segments and
 * UW_GSO_MAX_BYTES bytes, never with a segment larger than the path
 * carries, and, for a paced flow, never spreading its datagrams' due times
 * over more than the flow's jitter budget (a run leaves as one burst, at
 * the departure time of its first datagram). Runs are grouped by socket
 * (one group = what one sendmmsg can carry) and, inside a group, taken
 * from the flows round-robin so that no destination gets its whole
 * backlog in one burst.
 *
 * Several stages (the wheel's, released in order) make one batch: a flow
 * present in more than one is chained into one, its order kept.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uw.h"

int uw_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

void uw_scratch_free(struct uw_scratch *sc)
{
	free(sc->runs);
	free(sc->iov);
	free(sc->groups);
	free(sc->flows);
	free(sc->cand);
	free(sc->maxseg);
	memset(sc, 0, sizeof(*sc));
}

static uint32_t flow_max_segment(struct uw_backend *be, struct uw_flow *f)
{
	if (uw_sock_flags(f->sock) & UW_SOCK_NO_GSO)
		return 0;
	if (!be->ops->max_segment)
		return 0;
	return be->ops->max_segment(be, f->sock, &f->dest);
}

/* A run is one skb, which the kernel lets a socket have even past its
 * send buffer: no more than half of that buffer in one piece, so that
 * what the socket has in flight stays near what the kernel allows it. */
static uint32_t run_max_bytes(struct uw_sock *s)
{
	uint32_t half = atomic_load_explicit(&s->sndbuf, memory_order_relaxed) / 2;

	return half && half < UW_GSO_MAX_BYTES ? half : UW_GSO_MAX_BYTES;
}

/* May the run r (segments of seg bytes so far) take datagram d next? */
static bool run_takes(const struct uw_run *r, uint32_t seg, uint32_t max_seg,
		      const struct uw_dgram *d)
{
	if (!d || seg == 0 || seg > max_seg)
		return false;
	if (r->iov[r->nseg - 1].iov_len < seg)	/* the shorter tail came */
		return false;
	if (d->len > seg || d->len == 0)
		return false;
	return r->nseg < UW_GSO_MAX_SEGS && r->bytes + d->len <= run_max_bytes(r->sock);
}

/* Cut the next run off the front of f. */
static void cut_run(struct uw_flow *f, uint32_t max_seg, struct uw_run *r, struct iovec *iov)
{
	struct uw_dgram *d = f->head;
	uint32_t seg = d->len;
	uint64_t first_due = d->due_ns;

	r->sock = f->sock;
	r->dest = &f->dest;
	r->iov = iov;
	r->seg_size = seg;
	r->nseg = 0;
	r->bytes = 0;
	r->dropped = 0;
	r->dropped_bytes = 0;
	r->held = 0;
	r->held_bytes = 0;
	r->txtime_ns = f->txtime ? first_due : 0;
	for (;;) {
		iov[r->nseg].iov_base = d->data;
		iov[r->nseg].iov_len = d->len;
		r->nseg++;
		r->bytes += d->len;
		d = d->next;
		if (!run_takes(r, seg, max_seg, d) || d->due_ns - first_due > f->cut_ns)
			break;
	}
	f->head = d;
}

/* The flows of the stages, a flow found again (same record) chained onto
 * its first appearance; returns how many in sc->cand. */
static size_t merge_flows(struct uw_scratch *sc, struct uw_stage *const *stv, size_t nst,
			  uint32_t gen)
{
	size_t n = 0;

	for (size_t i = 0; i < nst; i++) {
		for (struct uw_flow *f = stv[i]->flows; f; f = f->next) {
			struct uw_flowrec *rec = f->rec;

			if (!f->head)
				continue;
			if (rec && rec->build_gen == gen) {
				rec->build_tail->next = f->head;
				rec->build_tail = f->tail;
				continue;
			}
			if (rec) {
				rec->build_gen = gen;
				rec->build_tail = f->tail;
			}
			sc->cand[n++] = f;
		}
	}
	return n;
}

int uw_batch_build_stages(struct uw_scratch *sc, struct uw_stage *const *stv, size_t nst,
			  struct uw_backend *be, struct uw_batch *b)
{
	struct uw_flow *f;
	size_t ngroups = 0, nruns = 0, niov = 0, ncand, ndgrams = 0, nflows = 0;
	uint32_t gen = ++sc->gen;

	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < nst; i++) {
		ndgrams += stv[i]->ndgrams;
		nflows += stv[i]->nflows;
	}
	if (!ndgrams)
		return 0;
	/* all memory first: nothing below may fail once flows are chained */
	if (uw_grow((void **)&sc->runs, &sc->runs_cap, ndgrams, sizeof(*sc->runs)) ||
	    uw_grow((void **)&sc->iov, &sc->iov_cap, ndgrams, sizeof(*sc->iov)) ||
	    uw_grow((void **)&sc->flows, &sc->flows_cap, nflows, sizeof(*sc->flows)) ||
	    uw_grow((void **)&sc->cand, &sc->cand_cap, nflows, sizeof(*sc->cand)) ||
	    uw_grow((void **)&sc->maxseg, &sc->maxseg_cap, nflows, sizeof(*sc->maxseg)) ||
	    uw_grow((void **)&sc->groups, &sc->groups_cap, nflows, sizeof(*sc->groups)))
		return -ENOMEM;
	ncand = merge_flows(sc, stv, nst, gen);

	/* Groups in order of first appearance; count flows per group. */
	for (size_t k = 0; k < ncand; k++) {
		struct uw_sock *s = sc->cand[k]->sock;

		if (s->batch_gen != gen) {
			s->batch_gen = gen;
			s->batch_group = (uint32_t)ngroups;
			sc->groups[ngroups].sock = s;
			sc->groups[ngroups].nruns = 0;	/* flows, for now */
			ngroups++;
		}
		sc->groups[s->batch_group].nruns++;
	}
	/* Counting sort of the flows by group (stable). */
	for (size_t g = 0, at = 0; g < ngroups; g++) {
		size_t n = sc->groups[g].nruns;

		sc->groups[g].nruns = at;	/* start offset, for now */
		at += n;
	}
	for (size_t k = 0; k < ncand; k++) {
		f = sc->cand[k];
		sc->flows[sc->groups[f->sock->batch_group].nruns++] = f;
	}

	/* Round-robin over the flows of each group. */
	for (size_t g = 0, first = 0; g < ngroups; g++) {
		size_t last = sc->groups[g].nruns, run0 = nruns;
		struct uw_flow **fl = sc->flows + first;
		size_t nfl = last - first, live = nfl;
		uint32_t *ms = sc->maxseg + first;

		for (size_t i = 0; i < nfl; i++)
			ms[i] = flow_max_segment(be, fl[i]);
		while (live) {
			live = 0;
			for (size_t i = 0; i < nfl; i++) {
				struct uw_run *r;

				if (!fl[i]->head)
					continue;
				r = &sc->runs[nruns++];
				cut_run(fl[i], ms[i], r, sc->iov + niov);
				r->flow = (uint32_t)(first + i);
				niov += r->nseg;
				b->datagrams += r->nseg;
				b->bytes += r->bytes;
				live += fl[i]->head != NULL;
			}
		}
		sc->groups[g].runs = sc->runs + run0;
		sc->groups[g].nruns = nruns - run0;
		first = last;
	}
	b->groups = sc->groups;
	b->ngroups = ngroups;
	b->runs = sc->runs;
	b->nruns = nruns;
	b->nflows = ncand;
	return 0;
}

int uw_batch_build(struct uw_scratch *sc, struct uw_stage *st, struct uw_backend *be,
		   struct uw_batch *b)
{
	return uw_batch_build_stages(sc, &st, 1, be, b);
}
