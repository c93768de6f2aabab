/* SPDX-License-Identifier: MIT */
/*
 * Per-stream metrics and their plans.
 *
 * A flow (socket, destination) has metrics from three places, the later
 * overriding the earlier field by field: the most specific UDPWEAVE_RULES
 * rule for its destination, then what the application set on its socket
 * (setsockopt SOL_UDPWEAVE or uw_set_metrics). Without any, the flow goes
 * the default way (the global maximum delay). With some, it is paced:
 *
 *   quantum Q  the time its rate takes to fill a target GSO run (64 KB),
 *              or UDPWEAVE_INTERVAL_US; at most its jitter budget less the
 *              flush thread's wake-up precision P, and its delay less P;
 *              a power-of-two multiple of 50 µs, so that the release times
 *              of all flows fall on one grid and flush together;
 *   due time   enqueue time + a constant offset: the spacing the
 *              application produced is kept, shifted;
 *   release    user space (the egress qdisc is not fq): offset Q, each
 *              datagram in the wheel stage of the quantum holding its due
 *              time, sent when the flush thread wakes for it: departure
 *              within Q (+ lateness) of due, so the spacing changes by
 *              less than the jitter budget;
 *              kernel (fq, and a backend that attaches SCM_TXTIME): offset
 *              D - P, handed over P to P + Q ahead of due with its
 *              departure time; fq releases it on time, so Q may be as
 *              large as the delay allows and a GSO run is cut where the
 *              due times of its datagrams spread more than the jitter.
 *
 * Admission: a flow whose jitter budget is within one 50 µs grain of the
 * measured wake-up precision (user space), whose delay leaves no quantum,
 * or whose configured rate needs more staging memory than half the arena
 * leaves it (rate x the time its datagrams stay) cannot be met: it is sent
 * directly (each datagram as the application sends it, which adds no
 * jitter), and reported in getsockopt and the stats. Plans are made again
 * every 100 ms (rate estimates, precision): a refused flow is admitted
 * once it can be met, but a paced flow is never turned back to direct
 * sending by a passing spike of the machine's load (that would take its
 * batching away when the machine needs it most): it goes on paced at the
 * finest quantum, reported as not met (degraded).
 *
 * The precision is the p99 of the flush thread's recent lateness: a
 * histogram of its wake-ups halved every 2048, read every 256.
 *
 * Rates are estimated per flow from what each flush sends: a sample per
 * 100 ms window, averaged with weight 1/4 (a time constant of ~400 ms).
 *
 * Flow records exist only while pacing is on (a rule, or a socket with
 * metrics): a process without either pays nothing for any of this.
 */
#include <errno.h>
#include <linux/net_tstamp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uw.h"
#include "udpweave.h"

#ifndef SO_TXTIME
#define SO_TXTIME 61
#endif
#ifndef SO_MAX_PACING_RATE
#define SO_MAX_PACING_RATE 47
#endif

#define UW_FLOWREC_IDLE_NS	(2ull * 1000000000ull)
#define UW_PRECISION_MIN_NS	10000ull
#define UW_PRECISION_EVERY	256u	/* read the p99 every ... wake-ups */
#define UW_PRECISION_HALVE	2048u	/* halve the counts beyond ... */

/* ---- the plan ------------------------------------------------------------ */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* The largest GRAIN << k not above x (GRAIN at least), capped. */
static uint64_t quantum_floor(uint64_t x)
{
	uint64_t q = UW_PACE_GRAIN_NS;

	x = min_u64(x, UW_PACE_MAX_QUANTUM_NS);
	while (q * 2 <= x)
		q *= 2;
	return q;
}

static bool has_metrics(const struct uw_metrics *m)
{
	return m->rate_bps || m->jitter_us || m->delay_us;
}

void uw_pace_plan(const struct uw_pace_in *in, struct uw_pace_plan *out)
{
	const struct uw_metrics *m = &in->m;
	uint64_t jitter = (uint64_t)m->jitter_us * UW_NSEC_PER_USEC;
	uint64_t delay = (uint64_t)(m->delay_us ? m->delay_us : in->default_delay_us) *
			 UW_NSEC_PER_USEC;
	uint64_t rate = m->rate_bps ? m->rate_bps : in->est_bps;
	uint64_t p = in->precision_ns ? in->precision_ns : UW_PACE_PRECISION0_NS;
	uint64_t want = UINT64_MAX, cap, hold;

	memset(out, 0, sizeof(*out));
	out->cut_ns = UINT64_MAX;
	if (!has_metrics(m)) {
		out->mode = UW_PACE_NONE;
		return;
	}
	if (in->interval_us)
		want = (uint64_t)in->interval_us * UW_NSEC_PER_USEC;
	else if (rate)
		want = (uint64_t)UW_PACE_TARGET_BYTES * 8ull * 1000000000ull / rate;
	if (in->kernel) {
		/* handed over P..P+Q ahead of due, due D - P after enqueue */
		cap = delay > 2 * p ? delay - 2 * p : 0;
		if (cap < UW_PACE_GRAIN_NS)
			out->refused |= UW_REFUSE_DELAY;
	} else {
		/* sent within Q + P of enqueue: the spacing changes by < Q + P */
		cap = delay > p ? delay - p : 0;
		if (cap < UW_PACE_GRAIN_NS)
			out->refused |= UW_REFUSE_DELAY;
		if (jitter) {
			uint64_t cap_j = jitter > p ? jitter - p : 0;

			if (cap_j < UW_PACE_GRAIN_NS)
				out->refused |= UW_REFUSE_JITTER;
			cap = min_u64(cap, cap_j);
		}
	}
	if (out->refused && !in->paced) {
		out->mode = UW_PACE_DIRECT;
		return;
	}
	out->quantum_ns = quantum_floor(min_u64(want, cap));
	if (in->kernel) {
		out->mode = UW_PACE_KERNEL;
		out->offset_ns = delay > p ? min_u64(delay - p, UW_PACE_MAX_OFFSET_NS) : 0;
		if (out->offset_ns < out->quantum_ns)	/* degraded: no room */
			out->offset_ns = out->quantum_ns;
		out->lead_ns = min_u64(p, out->offset_ns - out->quantum_ns);
		hold = out->offset_ns + p;
	} else {
		out->mode = UW_PACE_USER;
		out->offset_ns = out->quantum_ns;
		hold = 2 * out->quantum_ns + p;
	}
	if (jitter)
		out->cut_ns = jitter;
	if (m->rate_bps) {
		out->hold_bytes = m->rate_bps / 8 * (hold / 1000) / 1000000;
		if (out->hold_bytes > in->arena_room) {
			out->refused |= UW_REFUSE_RATE;
			if (!in->paced)
				out->mode = UW_PACE_DIRECT;
		}
	}
}

/* ---- wake-up precision ----------------------------------------------------- */

uint64_t uw_pace_precision_ns(const struct uw_core *c)
{
	uint64_t p = atomic_load_explicit(&c->stats.precision_ns, memory_order_relaxed);

	return p ? p : UW_PACE_PRECISION0_NS;
}

/* The p99 of the last few hundred wake-ups, halved counts keeping the
 * older ones in with less weight. Flusher thread only. */
void uw_pace_note_wake(struct uw_core *c, uint64_t late_ns)
{
	uint64_t p99;

	uw_stats_note_late(&c->stats, late_ns);
	c->late_recent[uw_late_bucket(late_ns)]++;
	if (++c->late_samples % UW_PRECISION_EVERY)
		return;
	p99 = uw_late_quantile_us(c->late_recent, 0.99) * UW_NSEC_PER_USEC;
	atomic_store_explicit(&c->stats.precision_ns,
			      p99 > UW_PRECISION_MIN_NS ? p99 : UW_PRECISION_MIN_NS,
			      memory_order_relaxed);
	if (c->late_samples < 2 * UW_PRECISION_HALVE)
		return;
	c->late_samples = 0;
	for (unsigned int i = 0; i < UW_LATE_BUCKETS; i++) {
		c->late_recent[i] /= 2;
		c->late_samples += (uint32_t)c->late_recent[i];
	}
	c->late_samples -= c->late_samples % UW_PRECISION_EVERY;
}

/* ---- flow records ---------------------------------------------------------- */

static void metrics_merge(struct uw_metrics *out, const struct uw_metrics *rule,
			  const struct uw_metrics *sock)
{
	out->rate_bps = sock->rate_bps ? sock->rate_bps : rule->rate_bps;
	out->jitter_us = sock->jitter_us ? sock->jitter_us : rule->jitter_us;
	out->delay_us = sock->delay_us ? sock->delay_us : rule->delay_us;
}

static const struct uw_addr *flow_target(const struct uw_sock *s, const struct uw_addr *dest)
{
	return dest->len ? dest : &s->peer;
}

static bool enable_txtime(struct uw_core *c, struct uw_sock *s)
{
	struct sock_txtime t = { .clockid = CLOCK_MONOTONIC, .flags = 0 };
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
	int saved = errno;

	if (uw_sock_flags(s) & UW_SOCK_TXTIME)
		return true;
	if (!c->sys->setsockopt || c->sys->setsockopt(fd, SOL_SOCKET, SO_TXTIME, &t, sizeof(t))) {
		uw_info("fd %d: SO_TXTIME refused (%s); pacing in user space", fd,
			strerror(errno));
		errno = saved;
		return false;
	}
	uw_sock_set(s, UW_SOCK_TXTIME);
	errno = saved;
	return true;
}

/* fq also spaces what the socket sends at its rate (with 1/16 headroom, so
 * that the departure times lead, not the rate). */
static void set_pacing_rate(struct uw_core *c, struct uw_sock *s, uint64_t bps)
{
	uint64_t bytes = bps / 8 + bps / 128;
	uint32_t b32 = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
	int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
	int saved = errno;

	if (c->sys->setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &bytes, sizeof(bytes)) &&
	    c->sys->setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &b32, sizeof(b32)))
		uw_info("fd %d: SO_MAX_PACING_RATE refused (%s)", fd, strerror(errno));
	errno = saved;
}

struct uw_flowrec *uw_flowrec_prepare(struct uw_core *c, struct uw_sock *s,
				      const struct uw_addr *dest, const struct uw_metrics *sock_m)
{
	struct uw_flowrec *r = calloc(1, sizeof(*r));
	const struct uw_addr *target = flow_target(s, dest);
	const struct uw_rule *rule;
	struct uw_metrics m;

	if (!r)
		return NULL;
	r->sock = s;
	r->dest = *dest;
	rule = uw_rules_match(c->cfg.rules, c->cfg.nrules, target);
	if (rule) {
		r->rule = rule->index;
		r->rule_m = rule->m;
	}
	metrics_merge(&m, &r->rule_m, sock_m);
	if (has_metrics(&m) && target->len && c->be.ops->txtime && c->sys->egress_paces &&
	    c->sys->egress_paces(target) == 1) {
		r->kernel_ok = enable_txtime(c, s);
		if (r->kernel_ok && m.rate_bps && (!dest->len || sock_m->rate_bps))
			set_pacing_rate(c, s, m.rate_bps);
	}
	return r;
}

static uint32_t rec_slot(const struct uw_flowtab *t, const struct uw_addr *dest)
{
	return uw_addr_hash(dest) & (t->cap - 1);
}

struct uw_flowrec *uw_flowrec_find(struct uw_sock *s, const struct uw_addr *dest)
{
	struct uw_flowrec *r = s->last_rec;
	struct uw_flowtab *t = s->recs;

	if (r && uw_addr_equal(&r->dest, dest))
		return r;
	if (!t)
		return NULL;
	for (uint32_t i = rec_slot(t, dest); (r = t->slot[i]); i = (i + 1) & (t->cap - 1)) {
		if (!r->stale && uw_addr_equal(&r->dest, dest)) {
			s->last_rec = r;
			return r;
		}
	}
	return NULL;
}

static void rec_free(struct uw_core *c, struct uw_flowrec *r)
{
	c->pace_reserved -= r->reserved;
	if (r->sock->last_rec == r)
		r->sock->last_rec = NULL;
	uw_stat_add(&c->stats.pace_flows, -1ull);
	free(r);
}

static void tab_put(struct uw_flowtab *t, struct uw_flowrec *r)
{
	uint32_t i = rec_slot(t, &r->dest);

	while (t->slot[i])
		i = (i + 1) & (t->cap - 1);
	t->slot[i] = r;
	t->n++;
}

static bool rec_droppable(const struct uw_flowrec *r, uint64_t now, bool drop_all_idle)
{
	return !r->queued && (drop_all_idle || r->stale ||
			      now - r->last_used_ns > UW_FLOWREC_IDLE_NS);
}

/* Rebuild s's table with room for one more: idle records go (all the
 * unqueued ones with drop_all_idle), the table grows if it must. -ENOMEM
 * leaves it as it was. */
static int tab_rebuild(struct uw_core *c, struct uw_sock *s, uint64_t now, bool drop_all_idle)
{
	struct uw_flowtab *old = s->recs, *t;
	uint32_t keep = 0, cap = 4;

	for (uint32_t i = 0; old && i < old->cap; i++)
		if (old->slot[i] && !rec_droppable(old->slot[i], now, drop_all_idle))
			keep++;
	while ((keep + 1) * 4 > cap * 3)
		cap *= 2;
	t = calloc(1, sizeof(*t) + cap * sizeof(t->slot[0]));
	if (!t)
		return -ENOMEM;
	t->cap = cap;
	for (uint32_t i = 0; old && i < old->cap; i++) {
		struct uw_flowrec *r = old->slot[i];

		if (!r)
			continue;
		if (rec_droppable(r, now, drop_all_idle))
			rec_free(c, r);
		else
			tab_put(t, r);
	}
	free(old);
	s->recs = t;
	return 0;
}

struct uw_flowrec *uw_flowrec_insert(struct uw_core *c, struct uw_flowrec *r, uint64_t now)
{
	struct uw_sock *s = r->sock;
	struct uw_flowrec *old = uw_flowrec_find(s, &r->dest);
	struct uw_flowtab *t = s->recs;

	if (old) {
		free(r);
		return old;
	}
	if ((!t || (t->n + 1) * 4 > t->cap * 3) && tab_rebuild(c, s, now, false) &&
	    (!s->recs || (s->recs->n + 1) * 4 > s->recs->cap * 3)) {
		free(r);
		return NULL;
	}
	r->last_used_ns = now;
	tab_put(s->recs, r);
	s->last_rec = r;
	uw_stat_add(&c->stats.pace_flows, 1);
	return r;
}

static uint64_t arena_bytes(const struct uw_core *c)
{
	return (uint64_t)c->arena.nchunks * c->arena.chunk_size;
}

static void describe_refusal(const struct uw_core *c, const struct uw_flowrec *r,
			     char *why, size_t len)
{
	uint64_t p = uw_pace_precision_ns(c) / UW_NSEC_PER_USEC;

	if (r->plan.refused & UW_REFUSE_RATE)
		snprintf(why, len, "rate %llu bit/s needs %llu KiB of staging, more than the "
			 "arena leaves (UDPWEAVE_ARENA_KB)",
			 (unsigned long long)r->m.rate_bps,
			 (unsigned long long)r->plan.hold_bytes / 1024);
	else if (r->plan.refused & UW_REFUSE_JITTER)
		snprintf(why, len, "jitter %u us is below the flush thread's wake-up "
			 "precision (%llu us) plus a %llu us quantum", r->m.jitter_us,
			 (unsigned long long)p, UW_PACE_GRAIN_NS / UW_NSEC_PER_USEC);
	else
		snprintf(why, len, "delay %u us leaves no quantum after the wake-up "
			 "precision (%llu us)", r->m.delay_us ? r->m.delay_us :
			 c->cfg.max_delay_us, (unsigned long long)p);
}

void uw_flowrec_replan(struct uw_core *c, struct uw_flowrec *r, uint64_t now)
{
	static _Atomic bool warned;
	uint64_t budget = arena_bytes(c) / 2, others = c->pace_reserved - r->reserved;
	uint32_t was = r->plan.refused;
	bool first = !r->replan_ns;
	struct uw_pace_in in = {
		.est_bps = atomic_load_explicit(&r->est_bps, memory_order_relaxed),
		.precision_ns = uw_pace_precision_ns(c),
		.default_delay_us = c->cfg.max_delay_us,
		.interval_us = c->cfg.interval_us,
		.kernel = r->kernel_ok,
		.paced = r->plan.mode == UW_PACE_USER || r->plan.mode == UW_PACE_KERNEL,
		.arena_room = budget > others ? budget - others : 0,
	};

	metrics_merge(&in.m, &r->rule_m, &r->sock->metrics);
	r->m = in.m;
	uw_pace_plan(&in, &r->plan);
	r->reserved = r->plan.mode == UW_PACE_DIRECT ? 0 : r->plan.hold_bytes;
	c->pace_reserved = others + r->reserved;
	r->replan_ns = now + UW_PACE_REPLAN_NS;
	if (r->plan.refused && (first || r->plan.refused != was)) {
		char why[200], dest[64];
		int fd = atomic_load_explicit(&r->sock->fd, memory_order_relaxed);

		uw_stat_add(&c->stats.refusals, 1);
		describe_refusal(c, r, why, sizeof(why));
		uw_addr_format(flow_target(r->sock, &r->dest), dest, sizeof(dest));
		const char *what = r->plan.mode == UW_PACE_DIRECT ?
				   "its datagrams are sent directly, unbatched" :
				   "paced at the finest quantum, the metrics not met";

		if (!atomic_exchange(&warned, true))
			uw_warn("fd %d to %s: %s; %s (later ones: see the stats)", fd, dest, why,
				what);
		else
			uw_info("fd %d to %s: %s; %s", fd, dest, why, what);
	}
}

/* ---- after a flush: estimates, the stats snapshot ------------------------- */

static void snapshot(struct uw_core *c, struct uw_flowrec *r, uint64_t est, uint64_t now)
{
	struct uw_stats *st = &c->stats;
	struct uw_flow_stat *e = NULL;

	pthread_mutex_lock(&st->flow_stat_lock);
	for (unsigned int i = 0; i < UW_STATS_FLOWS && !e; i++)
		if (st->flow_stat[i].key == r)
			e = &st->flow_stat[i];
	/* else a free slot, a stale one (quiet for 1 s), or a slower one */
	for (unsigned int i = 0; i < UW_STATS_FLOWS && !e; i++)
		if (!st->flow_stat[i].key || now - st->flow_stat[i].updated_ns > 1000000000ull)
			e = &st->flow_stat[i];
	for (unsigned int i = 0; i < UW_STATS_FLOWS && !e; i++)
		if (st->flow_stat[i].est_bps < est && (!e || st->flow_stat[i].est_bps < e->est_bps))
			e = &st->flow_stat[i];
	if (e) {
		e->key = r;
		e->fd = atomic_load_explicit(&r->sock->fd, memory_order_relaxed);
		e->dest = *flow_target(r->sock, &r->dest);
		e->m = r->m;
		e->est_bps = est;
		e->quantum_us = (uint32_t)(r->plan.quantum_ns / UW_NSEC_PER_USEC);
		e->mode = (uint8_t)r->plan.mode;
		e->refused = (uint8_t)r->plan.refused;
		e->updated_ns = now;
	}
	pthread_mutex_unlock(&st->flow_stat_lock);
}

static void estimate(struct uw_core *c, struct uw_flowrec *r, uint64_t bytes,
		     uint64_t since, uint64_t now)
{
	uint64_t dt, old, est;
	double sample;

	if (!r->win_start_ns)
		r->win_start_ns = since < now ? since : now;
	r->win_bytes += bytes;
	dt = now - r->win_start_ns;
	if (dt < UW_RATE_WINDOW_NS)
		return;
	sample = (double)r->win_bytes * 8e9 / (double)dt;
	old = atomic_load_explicit(&r->est_bps, memory_order_relaxed);
	est = old ? (uint64_t)((double)old + (sample - (double)old) / 4) : (uint64_t)sample;
	atomic_store_explicit(&r->est_bps, est, memory_order_relaxed);
	r->win_start_ns = now;
	r->win_bytes = 0;
	snapshot(c, r, est, now);
}

void uw_pace_account(struct uw_core *c, struct uw_stage *const *stv, size_t n, uint64_t now)
{
	for (size_t i = 0; i < n; i++)
		for (struct uw_flow *f = stv[i]->flows; f; f = f->next)
			if (f->rec)
				estimate(c, f->rec, f->bytes, stv[i]->oldest_ns, now);
}

/* ---- the application's side ------------------------------------------------ */

/* Records of s: the idle ones go, the rest are skipped from now on. */
static void forget_locked(struct uw_core *c, struct uw_sock *s)
{
	struct uw_flowtab *t = s->recs;

	for (uint32_t i = 0; t && i < t->cap; i++)
		if (t->slot[i])
			t->slot[i]->stale = true;
	s->last_rec = NULL;
	if (t)
		tab_rebuild(c, s, 0, true);
}

void uw_core_sock_forget_flows(struct uw_core *c, struct uw_sock *s)
{
	int cs;

	if (!uw_core_enter(&cs))
		return;
	pthread_mutex_lock(&c->qlock);
	forget_locked(c, s);
	pthread_mutex_unlock(&c->qlock);
	uw_core_leave(cs);
}

void uw_core_set_metrics(struct uw_core *c, struct uw_sock *s, const struct uw_metrics *m)
{
	int cs;

	uw_core_flush_sock(c, s, UW_FLUSH_BARRIER);
	if (!uw_core_enter(&cs))
		return;
	pthread_mutex_lock(&c->qlock);
	s->metrics = *m;
	forget_locked(c, s);
	if (has_metrics(m))
		atomic_store(&c->pace_on, true);
	pthread_mutex_unlock(&c->qlock);
	uw_core_leave(cs);
}

/* The last reference to s is going: nothing of it may stay queued when
 * its records go (a racing send may have queued more: flush again). */
void uw_core_sock_release(struct uw_sock *s, void *core)
{
	struct uw_core *c = core;
	int cs;

	uw_socklist_closed(c, s);
	for (int attempt = 0; attempt < 3; attempt++) {
		uw_core_flush_sock(c, s, UW_FLUSH_CLOSE);
		if (!uw_core_enter(&cs))
			return;
		pthread_mutex_lock(&c->qlock);
		if (!s->queued) {
			forget_locked(c, s);
			if (s->recs && !s->recs->n) {
				free(s->recs);
				s->recs = NULL;
			}
			pthread_mutex_unlock(&c->qlock);
			uw_core_leave(cs);
			return;
		}
		pthread_mutex_unlock(&c->qlock);
		uw_core_leave(cs);
	}
	/* still sending from another thread: its records stay (leaked) */
	s->recs = NULL;
	s->last_rec = NULL;
}

static void fill_metrics(const struct uw_core *c, const struct uw_flowrec *r,
			 struct udpweave_metrics *out)
{
	uint64_t est = atomic_load_explicit(&r->est_bps, memory_order_relaxed);

	out->rate_bps = r->m.rate_bps;
	out->max_jitter_us = r->m.jitter_us;
	out->max_delay_us = r->m.delay_us ? r->m.delay_us : c->cfg.max_delay_us;
	out->pacing = (uint32_t)r->plan.mode;
	out->est_rate_bps = est;
	out->interval_us = (uint32_t)(r->plan.quantum_ns / UW_NSEC_PER_USEC);
	if (!r->plan.refused)
		out->state |= UDPWEAVE_STATE_ADMITTED;
	if (r->plan.refused & UW_REFUSE_JITTER)
		out->state |= UDPWEAVE_STATE_JITTER_TOO_LOW;
	if (r->plan.refused & UW_REFUSE_DELAY)
		out->state |= UDPWEAVE_STATE_DELAY_TOO_LOW;
	if (r->plan.refused & UW_REFUSE_RATE)
		out->state |= UDPWEAVE_STATE_RATE_TOO_HIGH;
	if (!r->m.rate_bps && est && r->plan.mode != UW_PACE_NONE)
		out->state |= UDPWEAVE_STATE_RATE_ESTIMATED;
}

void uw_core_get_metrics(struct uw_core *c, struct uw_sock *s, struct udpweave_metrics *out)
{
	static const struct uw_addr peer;	/* len 0 */
	bool connected = uw_sock_flags(s) & UW_SOCK_CONNECTED;
	struct uw_flowrec *r;
	uint64_t now;
	uint32_t fl;
	int cs;

	memset(out, 0, sizeof(*out));
	out->precision_us = (uint32_t)(uw_pace_precision_ns(c) / UW_NSEC_PER_USEC);
	if (!uw_core_enter(&cs))
		return;
	pthread_mutex_lock(&c->qlock);
	r = connected ? uw_flowrec_find(s, &peer) : s->last_rec;
	if (!r && connected && atomic_load(&c->pace_on)) {
		struct uw_metrics sm = s->metrics;
		struct uw_flowrec *fresh;

		pthread_mutex_unlock(&c->qlock);
		fresh = uw_flowrec_prepare(c, s, &peer, &sm);
		pthread_mutex_lock(&c->qlock);
		r = fresh ? uw_flowrec_insert(c, fresh, c->sys->now_ns()) : NULL;
	}
	now = c->sys->now_ns();
	if (r) {
		if (now >= r->replan_ns)
			uw_flowrec_replan(c, r, now);
		fill_metrics(c, r, out);
	} else {
		out->rate_bps = s->metrics.rate_bps;
		out->max_jitter_us = s->metrics.jitter_us;
		out->max_delay_us = s->metrics.delay_us ? s->metrics.delay_us
							: c->cfg.max_delay_us;
		out->pacing = UDPWEAVE_PACING_NONE;
		/* an unconnected socket that has not sent: its destination's
		 * rule, and so its plan, are not known yet */
		out->state = !connected && atomic_load(&c->pace_on) ? UDPWEAVE_STATE_NO_FLOW
								    : UDPWEAVE_STATE_ADMITTED;
	}
	fl = uw_sock_flags(s);
	if (fl & UW_SOCK_INTERACTIVE)
		out->state |= UDPWEAVE_STATE_INTERACTIVE | UDPWEAVE_STATE_DIRECT;
	if ((fl & UW_SOCK_SYNC) && c->cfg.sync)
		out->state |= UDPWEAVE_STATE_DIRECT;
	pthread_mutex_unlock(&c->qlock);
	uw_core_leave(cs);
}
