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
};

void uw_stats_reset(struct uw_stats *st)
{
	memset(st, 0, sizeof(*st));
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
	EMIT(", \"datagrams_dropped\": %llu", LD(datagrams_dropped));
	EMIT(", \"passthrough_calls\": %llu", LD(passthrough_calls));
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
	EMIT(", \"segments_per_run\": {\"mean\": %.2f, \"max\": %llu}",
	     LD(messages) ? (double)LD(datagrams_out) / (double)LD(messages) : 0.0,
	     LD(segments_max) ? LD(segments_max) : (LD(datagrams_out) ? 1ull : 0ull));
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
	EMIT("}}}");
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
	EMIT("}}\n");
#undef EMIT
	return (int)n;
}
