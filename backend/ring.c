/* SPDX-License-Identifier: MIT */
/*
 * One AF_PACKET TX ring (TPACKET_V2) bound to one device.
 *
 * The user side owns frames whose status is TP_STATUS_AVAILABLE; it fills
 * them in ring order, marks them TP_STATUS_SEND_REQUEST, and one
 * sendto(fd, NULL, 0, MSG_DONTWAIT) hands every requested frame to the
 * kernel, which walks the ring from its own head while it finds requests.
 * A frame handed over turns TP_STATUS_SENDING and then, when the device
 * has released the skb that points into it, TP_STATUS_AVAILABLE again:
 * only then may it be reused. Completions are collected once per batch
 * (uw_ring_reclaim), or when the ring is full.
 */
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#define UW_RING_DATA_OFF	(TPACKET2_HDRLEN - sizeof(struct sockaddr_ll))
#define UW_RING_MIN_FRAMES	64u
#define UW_RING_WAIT_MAX_NS	(10ull * 1000000000ull)

static inline struct tpacket2_hdr *frame_hdr(const struct uw_ring *r, uint32_t i)
{
	return (struct tpacket2_hdr *)(r->map + (size_t)(i / r->frames_per_block) * r->block_size +
				       (size_t)(i % r->frames_per_block) * r->frame_size);
}

static inline uint32_t frame_status(const struct uw_ring *r, uint32_t i)
{
	return __atomic_load_n(&frame_hdr(r, i)->tp_status, __ATOMIC_ACQUIRE);
}

static int set_int(const struct uw_sys *sys, int fd, int level, int opt, int v)
{
	return sys->setsockopt(fd, level, opt, &v, sizeof(v)) ? -errno : 0;
}

/* Frame and block geometry for frames of data_len bytes, nframes wanted. */
static void ring_layout(struct uw_ring *r, uint32_t data_len, size_t bytes)
{
	uint32_t page = (uint32_t)sysconf(_SC_PAGESIZE);
	uint32_t frame = (UW_RING_DATA_OFF + data_len + TPACKET_ALIGNMENT - 1) &
			 ~(uint32_t)(TPACKET_ALIGNMENT - 1);
	uint32_t block = page;
	size_t nblocks;

	/* Blocks of at least 16 frames (less waste at the block's end), at
	 * most 4 MiB; a power of two pages, as the kernel allocates them. */
	while (block < 16u * frame && block < (4u << 20))
		block <<= 1;
	while (block < frame)
		block <<= 1;
	nblocks = bytes / block;
	if (nblocks * (block / frame) < UW_RING_MIN_FRAMES)
		nblocks = (UW_RING_MIN_FRAMES + block / frame - 1) / (block / frame);
	r->frame_size = frame;
	r->block_size = block;
	r->frames_per_block = block / frame;
	r->block_nr = (uint32_t)nblocks;
	r->frame_nr = r->frames_per_block * r->block_nr;
	r->data_max = frame - (uint32_t)UW_RING_DATA_OFF;
}

static int map_ring(struct uw_ring *r)
{
	for (;;) {
		struct tpacket_req req = {
			.tp_block_size = r->block_size,
			.tp_block_nr = r->block_nr,
			.tp_frame_size = r->frame_size,
			.tp_frame_nr = r->frame_nr,
		};
		int err = 0;

		if (r->sys->setsockopt(r->fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)))
			err = -errno;
		if (!err) {
			r->map_len = (size_t)r->block_size * r->block_nr;
			r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
			if (r->map != MAP_FAILED)
				return 0;
			err = -errno;
			r->map = NULL;
			/* give the ring back before asking for a smaller one */
			req = (struct tpacket_req){ 0 };
			r->sys->setsockopt(r->fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req));
		}
		/* The kernel refused the size: halve it, down to a minimum. */
		if ((err != -ENOMEM && err != -ENOBUFS && err != -EAGAIN) ||
		    r->frame_nr / 2 < UW_RING_MIN_FRAMES / 2 || r->block_nr < 2)
			return err;
		r->block_nr /= 2;
		r->frame_nr = r->frames_per_block * r->block_nr;
	}
}

/* Bind an open ring to its device, with the flows' mark and priority. */
int uw_ring_bind(struct uw_ring *r, const struct uw_ring_params *p)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_ifindex = p->ifindex,
		.sll_protocol = 0,	/* transmit only: no packet is received */
	};
	int err = 0;

	if (p->mark)
		err = set_int(r->sys, r->fd, SOL_SOCKET, SO_MARK, (int)p->mark);
	if (!err && p->priority)
		err = set_int(r->sys, r->fd, SOL_SOCKET, SO_PRIORITY, (int)p->priority);
	if (!err && r->sys->bind(r->fd, (struct sockaddr *)&sll, sizeof(sll)))
		err = -errno;
	return err;
}

int uw_ring_open(struct uw_ring *r, const struct uw_sys *sys, const struct uw_ring_params *p)
{
	int err, fd;

	memset(r, 0, sizeof(*r));
	r->sys = sys;
	r->params = *p;
	r->fd = -1;
	fd = sys->socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r->fd = fd;
	err = set_int(sys, fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2);
	if (!err && p->vnet_hdr)
		err = set_int(sys, fd, SOL_PACKET, PACKET_VNET_HDR, 1);
	/* a malformed frame is skipped, not a wedge in the ring */
	if (!err)
		err = set_int(sys, fd, SOL_PACKET, PACKET_LOSS, 1);
	if (!err && p->qdisc_bypass)
		err = set_int(sys, fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1);
	if (err)
		goto fail;
	ring_layout(r, p->frame_data, p->bytes);
	/* Room for every frame in flight: the send buffer bounds the skbs
	 * the kernel holds for this socket (SO_SNDBUFFORCE needs
	 * CAP_NET_ADMIN; the plain option is capped by wmem_max). */
	if (set_int(sys, fd, SOL_SOCKET, SO_SNDBUFFORCE, (int)(2 * (size_t)r->frame_nr * r->frame_size)))
		set_int(sys, fd, SOL_SOCKET, SO_SNDBUF, (int)(2 * (size_t)r->frame_nr * r->frame_size));
	err = map_ring(r);
	if (!err && p->ifindex)
		err = uw_ring_bind(r, p);
	if (err)
		goto fail;
	return 0;
fail:
	uw_ring_close(r);
	return err;
}

void uw_ring_close(struct uw_ring *r)
{
	if (r->map)
		munmap(r->map, r->map_len);
	if (r->fd >= 0)
		r->sys->close(r->fd);
	r->map = NULL;
	r->fd = -1;
}

uint32_t uw_ring_reclaim(struct uw_ring *r)
{
	while (r->inflight) {
		uint32_t st = frame_status(r, r->tail);

		if (st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING))
			break;
		r->tail = r->tail + 1 == r->frame_nr ? 0 : r->tail + 1;
		r->inflight--;
	}
	return r->frame_nr - r->inflight - r->filled;
}

void *uw_ring_next(struct uw_ring *r)
{
	uint32_t i;

	if (r->inflight + r->filled == r->frame_nr)
		return NULL;
	i = r->head + r->filled;
	if (i >= r->frame_nr)
		i -= r->frame_nr;
	return (unsigned char *)frame_hdr(r, i) + UW_RING_DATA_OFF;
}

uint32_t uw_ring_commit(struct uw_ring *r, uint32_t len)
{
	uint32_t i = r->head + r->filled;
	struct tpacket2_hdr *h;

	if (i >= r->frame_nr)
		i -= r->frame_nr;
	h = frame_hdr(r, i);
	h->tp_len = len;
	h->tp_snaplen = len;
	__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
	r->filled++;
	return i;
}

static void nap(const struct uw_sys *sys, long ns)
{
	struct timespec ts = { 0, ns };

	sys->nanosleep(&ts, NULL);
}

/*
 * Hand every filled frame to the kernel. MSG_DONTWAIT: the call returns
 * once the frames are queued to the device, without waiting for their
 * completion. A full send buffer (EAGAIN) or a full queue (ENOBUFS, the
 * frame is left requested) stops the walk early: wait and kick again.
 * Returns 0, or -errno when the kernel refused for good; frames still
 * requested are then reported by uw_ring_requested().
 */
int uw_ring_kick(struct uw_ring *r, struct uw_stats *st)
{
	uint32_t last;
	uint64_t waited = 0;
	unsigned int k = 0;

	if (!r->filled)
		return 0;
	last = r->head + r->filled - 1;
	if (last >= r->frame_nr)
		last -= r->frame_nr;
	for (;;) {
		ssize_t rc = r->sys->sendto(r->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
		int err = rc < 0 ? errno : 0;

		uw_stat_add(&st->syscalls, 1);
		uw_stat_add(&st->pkt.kicks, 1);
		if (!(frame_status(r, last) & TP_STATUS_SEND_REQUEST))
			break;	/* every frame was taken */
		if (err && err != EAGAIN && err != ENOBUFS && err != EINTR && err != ENOMEM)
			return -err;
		if (waited >= UW_RING_WAIT_MAX_NS)
			return -(err ? err : EAGAIN);
		uw_stat_add(&st->pkt.kick_retries, 1);
		if (err == EAGAIN) {
			struct pollfd pfd = { .fd = r->fd, .events = POLLOUT };

			r->sys->poll(&pfd, 1, 1);
			waited += 1000000;
		} else if (err != EINTR) {
			long ns = 20000L << (k < 6 ? k : 6);

			nap(r->sys, ns);
			waited += (uint64_t)ns;
			k++;
		}
	}
	r->inflight += r->filled;
	r->head = last + 1 == r->frame_nr ? 0 : last + 1;
	r->filled = 0;
	return 0;
}

bool uw_ring_requested(const struct uw_ring *r, uint32_t i)
{
	return frame_status(r, i) & TP_STATUS_SEND_REQUEST;
}

/* After a failed kick: the frames the kernel took count as in flight, the
 * ones it never took are given back (the caller resends their datagrams
 * another way first). */
void uw_ring_unfill(struct uw_ring *r)
{
	uint32_t k = 0;

	while (k < r->filled) {
		uint32_t i = r->head + k;

		if (i >= r->frame_nr)
			i -= r->frame_nr;
		if (frame_status(r, i) & TP_STATUS_SEND_REQUEST)
			break;
		k++;
	}
	for (uint32_t m = k; m < r->filled; m++) {
		uint32_t i = r->head + m;

		if (i >= r->frame_nr)
			i -= r->frame_nr;
		__atomic_store_n(&frame_hdr(r, i)->tp_status, TP_STATUS_AVAILABLE,
				 __ATOMIC_RELEASE);
	}
	r->inflight += k;
	r->head = (r->head + k) % r->frame_nr;
	r->filled = 0;
}

int uw_ring_wait_frame(struct uw_ring *r, struct uw_stats *st)
{
	uint32_t want = r->frame_nr / 4 ? r->frame_nr / 4 : 1;
	uint64_t waited = 0;
	unsigned int k = 0;

	/* Wait for a quarter of the ring, not for one frame: refilling
	 * frame by frame would cost a kick per frame or two. */
	uw_stat_add(&st->pkt.ring_waits, 1);
	while (uw_ring_reclaim(r) < want) {
		long ns = 5000L << (k < 6 ? k : 6);

		if (waited >= UW_RING_WAIT_MAX_NS)
			return uw_ring_reclaim(r) ? 0 : -EAGAIN;
		nap(r->sys, ns);
		waited += (uint64_t)ns;
		k++;
	}
	return 0;
}
