/* SPDX-License-Identifier: MIT */
/*
 * When to flush, and the thread that does it.
 *
 * A stage is due when its oldest datagram has waited the maximum delay
 * (less a small slack for the flush itself), or, with UDPWEAVE_INTERVAL_US,
 * at the next tick of a fixed grid if that comes first, so that all
 * streams of the process flush together. The flush thread sleeps until the
 * earliest due time and is woken only when an empty stage gets its first
 * datagram: one wake-up per flush, never one per datagram.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "uw.h"

uint64_t uw_core_due_ns(const struct uw_core *c, const struct uw_stage *st,
			enum uw_flush_reason *why)
{
	uint64_t delay = (uint64_t)c->cfg.max_delay_us * UW_NSEC_PER_USEC;
	uint64_t due = st->oldest_ns + (delay > c->slack_ns ? delay - c->slack_ns : 0);

	*why = UW_FLUSH_DEADLINE;
	if (c->cfg.interval_us) {
		uint64_t iv = (uint64_t)c->cfg.interval_us * UW_NSEC_PER_USEC;
		uint64_t tick = (st->oldest_ns / iv + 1) * iv;

		if (tick < due) {
			due = tick;
			*why = UW_FLUSH_INTERVAL;
		}
	}
	return due;
}

static struct timespec to_timespec(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	return ts;
}

static void *flusher_main(void *arg)
{
	struct uw_core *c = arg;

	if (c->sys->thread_setup)
		c->sys->thread_setup();
	pthread_mutex_lock(&c->qlock);
	while (!c->stopping) {
		struct uw_stage *st = &c->stage[c->active];
		uint64_t due, now;
		enum uw_flush_reason why;

		if (!st->ndgrams) {
			c->flusher_idle = true;
			pthread_cond_wait(&c->wake, &c->qlock);
			c->flusher_idle = false;
			continue;
		}
		due = uw_core_due_ns(c, st, &why);
		now = c->sys->now_ns();
		if (now < due) {
			struct timespec ts = to_timespec(due);

			pthread_cond_timedwait(&c->wake, &c->qlock, &ts);
			continue;
		}
		uw_stat_max(&c->stats.max_wake_late_ns, now - due);
		pthread_mutex_unlock(&c->qlock);
		uw_core_flush(c, why);
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
