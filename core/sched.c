/* SPDX-License-Identifier: MIT */
/*
 * When to flush, and the thread that does it.
 *
 * Flows without metrics share the default stage. It is due when its
 * oldest datagram has waited the maximum delay (less a small slack for the
 * flush itself), or, with UDPWEAVE_INTERVAL_US, at the next tick of a
 * fixed grid if that comes first, so that all streams of the process
 * flush together.
 *
 * Paced flows (core/pace.c) queue in the timing wheel: one stage per
 * release time, a multiple of the flow's quantum on a grid common to all
 * flows, so that everything released in the same quantum leaves as one
 * batch across flows.
 *
 * The flush thread sleeps until the earliest of the default stage's due
 * time and the wheel's first release, and is woken only when a stage
 * opens earlier than that: one wake-up per quantum, never one per
 * datagram. How late it wakes is measured (the pacing's precision).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uw.h"

/* ---- the wheel ------------------------------------------------------------ */

static struct uw_wheel *wheel_get(struct uw_core *c)
{
	struct uw_wheel *w = c->wheel;

	if (w)
		return w;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	for (int i = UW_WHEEL_STAGES; i-- > 0;) {
		uw_stage_init(&w->stages[i], &c->arena);
		w->stages[i].next_free = w->free;
		w->free = &w->stages[i];
	}
	c->wheel = w;
	return w;
}

struct uw_stage *uw_wheel_stage(struct uw_core *c, uint64_t release_ns, bool *opened)
{
	struct uw_wheel *w = wheel_get(c);
	struct uw_stage *st;
	int i;

	*opened = false;
	if (!w)
		return NULL;
	/* from the latest: a new release time is usually the last one */
	for (i = (int)w->nopen - 1; i >= 0; i--) {
		if (w->open[i]->release_ns == release_ns)
			return w->open[i];
		if (w->open[i]->release_ns < release_ns)
			break;
	}
	st = w->free;
	if (!st)
		return NULL;
	w->free = st->next_free;
	i++;
	memmove(&w->open[i + 1], &w->open[i], (w->nopen - (unsigned int)i) * sizeof(w->open[0]));
	w->open[i] = st;
	w->nopen++;
	st->release_ns = release_ns;
	st->gen++;
	st->open = true;
	*opened = true;
	return st;
}

size_t uw_wheel_detach(struct uw_core *c, uint64_t t, struct uw_stage **v)
{
	struct uw_wheel *w = c->wheel;
	unsigned int n = 0;

	if (!w)
		return 0;
	while (n < w->nopen && w->open[n]->release_ns <= t) {
		w->open[n]->open = false;
		v[n] = w->open[n];
		n++;
	}
	memmove(&w->open[0], &w->open[n], (w->nopen - n) * sizeof(w->open[0]));
	w->nopen -= n;
	return n;
}

void uw_wheel_put(struct uw_core *c, struct uw_stage *st)
{
	uw_stage_reset(st);
	st->next_free = c->wheel->free;
	c->wheel->free = st;
}

uint64_t uw_wheel_next_ns(const struct uw_core *c)
{
	return c->wheel && c->wheel->nopen ? c->wheel->open[0]->release_ns : UINT64_MAX;
}

/* ---- the default stage ------------------------------------------------------ */

/* When a default stage whose first datagram came at oldest is due. */
static uint64_t due_from(const struct uw_core *c, uint64_t oldest, enum uw_flush_reason *why)
{
	uint64_t delay = (uint64_t)c->cfg.max_delay_us * UW_NSEC_PER_USEC;
	uint64_t due = oldest + (delay > c->slack_ns ? delay - c->slack_ns : 0);

	*why = UW_FLUSH_DEADLINE;
	if (c->cfg.interval_us) {
		uint64_t iv = (uint64_t)c->cfg.interval_us * UW_NSEC_PER_USEC;
		uint64_t tick = (oldest / iv + 1) * iv;

		if (tick < due) {
			due = tick;
			*why = UW_FLUSH_INTERVAL;
		}
	}
	return due;
}

uint64_t uw_core_due_ns(const struct uw_core *c, const struct uw_stage *st,
			enum uw_flush_reason *why)
{
	return due_from(c, st->oldest_ns, why);
}

static struct timespec to_timespec(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	return ts;
}

/* The next thing to do: the earlier of the default stage's due time and
 * the wheel's first release; UINT64_MAX when nothing is queued. */
/* A full socket's held datagrams are tried again this often (core/held.c). */
#define UW_HELD_RETRY_NS	1000000u

static uint64_t next_event(const struct uw_core *c)
{
	const struct uw_stage *st = &c->stage[c->active];
	uint64_t ev = uw_wheel_next_ns(c);
	enum uw_flush_reason why;

	if (atomic_load_explicit(&c->nheld_socks, memory_order_relaxed) && c->held_next_ns < ev)
		ev = c->held_next_ns;
	if (st->ndgrams) {
		uint64_t due = uw_core_due_ns(c, st, &why);

		if (due < ev)
			ev = due;
	}
	return ev;
}

__thread bool uw_is_flusher __attribute__((tls_model("initial-exec")));

/*
 * With nothing queued, the thread sleeps until a send starts a stage and
 * wakes it. While the process keeps sending (a stage was started since the
 * thread last woke), it wakes by itself at the due time of a stage started
 * now instead: a stage started meanwhile falls due after that, so its send
 * needs no wake-up (a futex call and a switch, the cost of the flush for a
 * paced sender whose own sleeps send its stages: uw_core_flush_before_sleep).
 */
static void *flusher_main(void *arg)
{
	struct uw_core *c = arg;

	uw_is_flusher = true;
	if (c->sys->thread_setup)
		c->sys->thread_setup();
	pthread_mutex_lock(&c->qlock);
	while (!c->stopping) {
		uint64_t ev = next_event(c), now;

		if (ev == UINT64_MAX && c->queued_since_tick && c->cfg.max_delay_us) {
			enum uw_flush_reason why;

			/* no earlier than the due time of a stage started now */
			c->queued_since_tick = false;
			ev = due_from(c, c->sys->now_ns(), &why);
		}
		if (ev == UINT64_MAX) {
			c->flusher_until = UINT64_MAX;
			pthread_cond_wait(&c->wake, &c->qlock);
			c->flusher_until = 0;
			continue;
		}
		now = c->sys->now_ns();
		if (now < ev) {
			struct timespec ts = to_timespec(ev);

			c->flusher_until = ev;
			pthread_cond_timedwait(&c->wake, &c->qlock, &ts);
			c->flusher_until = 0;
			continue;
		}
		if (atomic_load_explicit(&c->nheld_socks, memory_order_relaxed) &&
		    now >= c->held_next_ns) {
			c->held_next_ns = now + UW_HELD_RETRY_NS;
			pthread_mutex_unlock(&c->qlock);
			uw_held_retry(c);
			pthread_mutex_lock(&c->qlock);
			continue;
		}
		uw_pace_note_wake(c, now - ev);
		pthread_mutex_unlock(&c->qlock);
		uw_core_flush_due(c);
		pthread_mutex_lock(&c->qlock);
	}
	c->flusher_running = false;
	pthread_mutex_unlock(&c->qlock);
	return NULL;
}

/* qlock held. The thread starts with every signal blocked, so that the
 * application's handlers keep running on the application's threads. */
void uw_core_start_flusher(struct uw_core *c)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	err = pthread_create(&c->flusher, &attr, flusher_main, c);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		c->flusher_failed = true;
		uw_warn("cannot start the flush thread (%s); flushing on every send",
			strerror(err));
		return;
	}
	c->flusher_running = true;
	c->stopping = false;
}

void uw_core_stop_flusher(struct uw_core *c)
{
	pthread_mutex_lock(&c->qlock);
	c->stopping = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->qlock);
}
