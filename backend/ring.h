/* SPDX-License-Identifier: MIT */
/* One AF_PACKET TX ring (backend/ring.c). */
#ifndef UW_RING_H
#define UW_RING_H

#include "uw.h"

struct uw_ring_params {
	int ifindex;
	uint32_t mark, priority;
	uint16_t proto;		/* kick protocol for devices without a link header */
	uint32_t frame_data;	/* bytes of frame data: link header + MTU (+ vnet) */
	size_t bytes;		/* memory to aim for */
	bool qdisc_bypass;
	bool vnet_hdr;
};

struct uw_ring {
	const struct uw_sys *sys;
	struct uw_ring_params params;
	int fd;
	unsigned char *map;
	size_t map_len;
	uint32_t block_size, block_nr, frame_size, frames_per_block, frame_nr;
	uint32_t data_max;	/* bytes a frame carries */
	uint32_t head;		/* first frame not yet handed to the kernel */
	uint32_t filled;	/* frames from head on, requested, not kicked */
	uint32_t tail;		/* oldest frame possibly still in flight */
	uint32_t inflight;	/* frames handed over, not yet seen available */
};

int uw_ring_open(struct uw_ring *r, const struct uw_sys *sys, const struct uw_ring_params *p);
void uw_ring_close(struct uw_ring *r);
/* Bind a ring opened with ifindex 0 to p's device, mark and priority. */
int uw_ring_bind(struct uw_ring *r, const struct uw_ring_params *p);
/* Collect completions; returns the number of frames free to fill. */
uint32_t uw_ring_reclaim(struct uw_ring *r);
/* Data area of the next frame to fill, or NULL when the ring is full. */
void *uw_ring_next(struct uw_ring *r);
/* The frame from uw_ring_next holds len bytes: request it; returns its index. */
uint32_t uw_ring_commit(struct uw_ring *r, uint32_t len);
int uw_ring_kick(struct uw_ring *r, struct uw_stats *st);
bool uw_ring_requested(const struct uw_ring *r, uint32_t i);
void uw_ring_unfill(struct uw_ring *r);
/* Wait (bounded) until a frame is free. */
int uw_ring_wait_frame(struct uw_ring *r, struct uw_stats *st);

#endif
