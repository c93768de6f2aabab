/* SPDX-License-Identifier: MIT */
/* Counters and their JSON form. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "uw.h"
#include "packet.h"

const char *const uw_flush_reason_name[UW_FLUSH__COUNT] = {
	[UW_FLUSH_DEADLINE]	= "deadline",
	[UW_FLUSH_INTERVAL]	= "interval",
	[UW_FLUSH_ARENA_FULL]	= "arena_full",
	[UW_FLUSH_CLOSE]	= "close",
	[UW_FLUSH_BARRIER]	= "barrier",
	[UW_FLUSH_EXIT]		= "exit",
	[UW_FLUSH_FORK]		= "fork",
	[UW_FLUSH_EXEC]		= "exec",
	[UW_FLUSH_EXPLICIT]	= "explicit",
	[UW_FLUSH_PACED]	= "paced",
	[UW_FLUSH_SIGNAL]	= "signal",
	[UW_FLUSH_SNDBUF]	= "sndbuf",
	[UW_FLUSH_SLEEP]	= "sleep",
};

void uw_stats_reset(struct uw_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->flow_stat_lock, NULL);
}

/* ---- flush-thread lateness: quarter-octave buckets ----------------------- */

unsigned int uw_late_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned int e, i;

	if (us < 4)
		return (unsigned int)us;
	e = 63u - (unsigned int)__builtin_clzll(us);	/* >= 2 */
	i = 4 + (e - 2) * 4 + (unsigned int)((us >> (e - 2)) & 3);
	return i < UW_LATE_BUCKETS ? i : UW_LATE_BUCKETS - 1;
}

uint64_t uw_late_bucket_upper_us(unsigned int i)
{
	unsigned int e, sub;

	if (i < 4)
		return i + 1;
	if (i >= UW_LATE_BUCKETS - 1)
		return UINT64_MAX;
	e = (i - 4) / 4 + 2;
	sub = (i - 4) % 4;
	return (uint64_t)(5 + sub) << (e - 2);
}

uint64_t uw_late_quantile_us(const uint64_t *hist, double p)
{
	uint64_t total = 0, seen = 0;
	unsigned int i;

	for (i = 0; i < UW_LATE_BUCKETS; i++)
		total += hist[i];
	if (!total)
		return 0;
	for (i = 0; i < UW_LATE_BUCKETS; i++) {
		seen += hist[i];
		if ((double)seen >= p * (double)total)
			break;
	}
	if (i >= UW_LATE_BUCKETS - 1)	/* the open bucket: its lower bound */
		return uw_late_bucket_upper_us(UW_LATE_BUCKETS - 2);
	return uw_late_bucket_upper_us(i);
}

void uw_stats_note_late(struct uw_stats *st, uint64_t ns)
{
	uw_stat_add(&st->wake_late_hist[uw_late_bucket(ns)], 1);
	uw_stat_max(&st->max_wake_late_ns, ns);
}

static const unsigned int uw_delay_bucket_us[] = { 250, 500, 1000, 2000, 4000, 8000 };

void uw_stats_note_delay(struct uw_stats *st, uint64_t ns)
{
	size_t i = 0;

	while (i < UW_ARRAY_SIZE(uw_delay_bucket_us) && ns >= uw_delay_bucket_us[i] * 1000ull)
		i++;
	uw_stat_add(&st->queue_delay_hist[i], 1);
	uw_stat_max(&st->max_queue_delay_ns, ns);
}

#define LD(f) ((unsigned long long)atomic_load_explicit(&st->f, memory_order_relaxed))

static const char *const uw_pace_mode_name[] = { "none", "user", "kernel", "direct" };

/* One paced flow of the snapshot; 0 if it does not fit in len. */
static int flow_json(const struct uw_flow_stat *f, bool first, char *buf, size_t len)
{
	char dest[64];
	int w;

	uw_addr_format(&f->dest, dest, sizeof(dest));
	w = snprintf(buf, len, "%s{\"fd\": %d, \"dest\": \"%s\", \"pacing\": \"%s\", "
		     "\"admitted\": %s, \"rate_bps\": %llu, \"est_rate_bps\": %llu, "
		     "\"jitter_us\": %u, \"delay_us\": %u, \"quantum_us\": %u}",
		     first ? "" : ", ", f->fd, dest,
		     uw_pace_mode_name[f->mode < 4 ? f->mode : 0], f->refused ? "false" : "true",
		     (unsigned long long)f->m.rate_bps, (unsigned long long)f->est_bps,
		     f->m.jitter_us, f->m.delay_us, f->quantum_us);
	return w < 0 || (size_t)w >= len ? 0 : w;
}

int uw_stats_json(const struct uw_stats *st, const char *backend, char *buf, size_t len)
{
	size_t n = 0;
	int w;

#define EMIT(...) do {							\
		w = snprintf(buf + n, len - n, __VA_ARGS__);		\
		if (w < 0 || (size_t)w >= len - n)			\
			return -ENOSPC;					\
		n += (size_t)w;						\
	} while (0)

	EMIT("{\"backend\": \"%s\"", backend);
	EMIT(", \"datagrams_in\": %llu, \"bytes_in\": %llu", LD(datagrams_in), LD(bytes_in));
	EMIT(", \"datagrams_out\": %llu, \"bytes_out\": %llu", LD(datagrams_out), LD(bytes_out));
	EMIT(", \"datagrams_dropped\": %llu, \"dropped_sock_gone\": %llu", LD(datagrams_dropped),
	     LD(dropped_sock_gone));
	EMIT(", \"passthrough_calls\": %llu", LD(passthrough_calls));
	EMIT(", \"sync_calls\": %llu, \"sync_datagrams\": %llu, \"sync_bytes\": %llu",
	     LD(sync_calls), LD(sync_datagrams), LD(sync_bytes));
	EMIT(", \"sync_errors\": %llu", LD(sync_errors));
	EMIT(", \"held_datagrams\": %llu, \"held_dropped\": %llu, \"held_sends\": %llu",
	     LD(held_datagrams), LD(held_dropped), LD(held_sends));
	EMIT(", \"interactive_sockets\": %llu, \"lonely_sockets\": %llu",
	     LD(interactive_sockets), LD(lonely_sockets));
	EMIT(", \"syscalls\": %llu, \"batches\": %llu, \"messages\": %llu",
	     LD(syscalls), LD(batches), LD(messages));
	EMIT(", \"gso_runs\": %llu, \"gso_segments\": %llu, \"segments_max\": %llu",
	     LD(gso_runs), LD(gso_segments), LD(segments_max));
	EMIT(", \"fallbacks_gso\": %llu, \"gso_split_mtu\": %llu, \"retries\": %llu",
	     LD(fallbacks_gso), LD(gso_split_mtu), LD(retries));
	EMIT(", \"async_errors\": %llu", LD(async_errors));
	EMIT(", \"async_errors_by_errno\": {");
	for (int e = 1, first = 1; e < (int)UW_ARRAY_SIZE(st->async_errno); e++) {
		unsigned long long v = atomic_load_explicit(&st->async_errno[e],
							     memory_order_relaxed);
		const char *name = strerrorname_np(e);

		if (!v)
			continue;
		if (name)
			EMIT("%s\"%s\": %llu", first ? "" : ", ", name, v);
		else
			EMIT("%s\"%d\": %llu", first ? "" : ", ", e, v);
		first = 0;
	}
	EMIT("}");
	/* datagrams per GSO run (a plain datagram is no run) */
	EMIT(", \"segments_per_run\": {\"mean\": %.2f, \"max\": %llu}",
	     LD(gso_runs) ? (double)LD(gso_segments) / (double)LD(gso_runs) : 0.0,
	     LD(gso_runs) ? LD(segments_max) : 0ull);
	EMIT(", \"fallbacks\": {\"gso_refused\": %llu, \"gso_mtu_split\": %llu}",
	     LD(fallbacks_gso), LD(gso_split_mtu));
	EMIT(", \"backend_counters\": {\"mmsg\": {\"sendmmsg_calls\": %llu, "
	     "\"messages_sent\": %llu}, \"passthrough\": {\"sendmsg_calls\": %llu}",
	     LD(mmsg_calls), LD(mmsg_messages), LD(pt_calls));
	EMIT(", \"packet\": {\"frames\": %llu, \"bytes\": %llu, \"kicks\": %llu, "
	     "\"kick_retries\": %llu, \"ring_full_waits\": %llu, \"gso_frames\": %llu, "
	     "\"rings\": %llu, \"ring_bytes\": %llu, \"netlink_queries\": %llu, "
	     "\"flow_resolutions\": %llu, \"neighbour_triggers\": %llu, "
	     "\"longest_same_destination_burst\": %llu, \"fallback_datagrams\": {",
	     LD(pkt.frames), LD(pkt.bytes), LD(pkt.kicks), LD(pkt.kick_retries),
	     LD(pkt.ring_waits), LD(pkt.gso_frames), LD(pkt.rings), LD(pkt.ring_bytes),
	     LD(pkt.netlink_queries), LD(pkt.resolves), LD(pkt.neigh_triggers),
	     LD(pkt.longest_burst));
	for (int i = 0; i < UW_PKT_FB__COUNT; i++)
		EMIT("%s\"%s\": %llu", i ? ", " : "", uw_pkt_fb_name[i],
		     (unsigned long long)atomic_load_explicit(&st->pkt.fallback[i],
							      memory_order_relaxed));
	EMIT("}}");
	EMIT(", \"uring\": {\"io_uring_enter_calls\": %llu, \"sqes\": %llu, "
	     "\"zc_sends\": %llu, \"zc_notifications\": %llu, \"zc_copied\": %llu, "
	     "\"requeued\": %llu, \"mmsg_batches\": %llu, \"ring_failures\": %llu}}",
	     LD(uring_enters), LD(uring_sqes), LD(uring_zc_sends), LD(uring_zc_notifs),
	     LD(uring_zc_copied), LD(uring_requeued), LD(uring_mmsg_batches),
	     LD(uring_ring_failures));
	EMIT(", \"max_queue_delay_us\": %llu", LD(max_queue_delay_ns) / 1000);
	EMIT(", \"max_flush_thread_late_us\": %llu", LD(max_wake_late_ns) / 1000);
	EMIT(", \"arena_high_water_bytes\": %llu", LD(arena_high_water));
	EMIT(", \"queue_delay_hist_us\": {");
	for (size_t i = 0; i <= UW_ARRAY_SIZE(uw_delay_bucket_us); i++)
		EMIT("%s\"%s%u\": %llu", i ? ", " : "",
		     i < UW_ARRAY_SIZE(uw_delay_bucket_us) ? "<" : ">=",
		     uw_delay_bucket_us[i < UW_ARRAY_SIZE(uw_delay_bucket_us) ? i : i - 1],
		     (unsigned long long)atomic_load_explicit(&st->queue_delay_hist[i],
							      memory_order_relaxed));
	EMIT("}");
	EMIT(", \"flushes_by_reason\": {");
	for (int i = 0; i < UW_FLUSH__COUNT; i++)
		EMIT("%s\"%s\": %llu", i ? ", " : "", uw_flush_reason_name[i],
		     (unsigned long long)atomic_load_explicit(&st->flushes[i],
							      memory_order_relaxed));
	EMIT("}");
	EMIT(", \"flushes_by_sender\": %llu, \"flushes_by_flush_thread\": %llu, "
	     "\"flush_thread_signals\": %llu",
	     LD(batches) - LD(flushes_by_thread), LD(flushes_by_thread), LD(flusher_signals));
	{
		uint64_t h[UW_LATE_BUCKETS], count = 0;

		for (int i = 0; i < UW_LATE_BUCKETS; i++) {
			h[i] = atomic_load_explicit(&st->wake_late_hist[i], memory_order_relaxed);
			count += h[i];
		}
		EMIT(", \"flush_thread_wake_late_us\": {\"count\": %llu, \"p50\": %llu, "
		     "\"p90\": %llu, \"p99\": %llu, \"max\": %llu}",
		     (unsigned long long)count, (unsigned long long)uw_late_quantile_us(h, 0.5),
		     (unsigned long long)uw_late_quantile_us(h, 0.9),
		     (unsigned long long)uw_late_quantile_us(h, 0.99),
		     LD(max_wake_late_ns) / 1000);
	}
	EMIT(", \"pacing\": {\"flows\": %llu, \"paced_datagrams\": %llu, "
	     "\"direct_datagrams\": %llu, \"refusals\": %llu, \"txtime_runs\": %llu, "
	     "\"precision_us\": %llu, \"flow_list\": [",
	     LD(pace_flows), LD(paced_datagrams), LD(direct_datagrams), LD(refusals),
	     LD(txtime_messages),
	     (LD(precision_ns) ? LD(precision_ns) : UW_PACE_PRECISION0_NS) / 1000);
	/* as many flows as fit, leaving room for the end */
	pthread_mutex_lock((pthread_mutex_t *)&st->flow_stat_lock);
	for (int i = 0, first = 1; i < UW_STATS_FLOWS; i++) {
		const size_t tail = 8;
		int w2;

		if (!st->flow_stat[i].key || len - n <= tail)
			continue;
		w2 = flow_json(&st->flow_stat[i], first, buf + n, len - n - tail);
		if (w2) {
			n += (size_t)w2;
			first = 0;
		}
	}
	pthread_mutex_unlock((pthread_mutex_t *)&st->flow_stat_lock);
	EMIT("]}}\n");
#undef EMIT
	return (int)n;
}
