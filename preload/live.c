/* SPDX-License-Identifier: MIT */
/*
 * The live-stats segment (include/udpweave_stats.h): after a flush, at
 * most every UW_STATS_PUBLISH_MS, the counters as JSON in a one-page
 * shared file that `udpweave stats PID` reads. Created at the first flush,
 * so processes that never send UDP leave nothing behind; removed at exit
 * and before exec, and by the next process that creates one if this one
 * was killed. Runs with the flush lock held (one writer).
 *
 * Files the library opens itself are closed with plain close(), not
 * real.close: a tool interposed in front of us (ThreadSanitizer tracks
 * fds) must see the close of an fd it saw opened.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"
#include "udpweave_stats.h"

static struct uw_stats_segment *seg;
static char seg_path[64];
static uint64_t next_publish_ns;
static bool seg_failed;
static _Atomic bool seg_named;	/* seg_path names a segment of this image */

/*
 * Segments of pids that no longer exist, left by processes that were
 * killed: removed when this one creates its own. Only regular files of
 * this user with the exact name, never through a symlink; a pid that
 * exists (whoever it is now) keeps its file.
 */
static void sweep_stale(void)
{
	size_t plen = strlen(UW_STATS_PREFIX);
	struct dirent *d;
	DIR *dir;

	dir = opendir(UW_STATS_DIR);
	if (!dir)
		return;
	while ((d = readdir(dir))) {
		struct stat st;
		char *end;
		long pid;

		if (strncmp(d->d_name, UW_STATS_PREFIX, plen) || !d->d_name[plen])
			continue;
		errno = 0;
		pid = strtol(d->d_name + plen, &end, 10);
		if (*end || errno || pid <= 0 || pid > INT32_MAX || pid == (long)getpid())
			continue;
		if (!kill((pid_t)pid, 0) || errno != ESRCH)
			continue;
		if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid())
			continue;
		unlinkat(dirfd(dir), d->d_name, 0);
	}
	closedir(dir);
}

static struct uw_stats_segment *seg_create(void)
{
	struct uw_stats_segment *s;
	int fd = -1;

	snprintf(seg_path, sizeof(seg_path), "%s/%s%d", UW_STATS_DIR, UW_STATS_PREFIX,
		 (int)getpid());
	for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
		fd = open(seg_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST)	/* left by an earlier image of this pid */
			unlink(seg_path);
	}
	if (fd < 0)
		return NULL;
	if (ftruncate(fd, UW_STATS_SEGMENT_SIZE)) {
		close(fd);
		unlink(seg_path);
		return NULL;
	}
	s = mmap(NULL, UW_STATS_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (s == MAP_FAILED) {
		unlink(seg_path);
		return NULL;
	}
	memcpy(s->magic, UW_STATS_MAGIC, sizeof(s->magic));
	s->pid = (uint32_t)getpid();
	atomic_store_explicit(&seg_named, true, memory_order_release);
	sweep_stale();
	return s;
}

static void seg_write(void)
{
	char json[sizeof(seg->json)];
	int n = uw_stats_full_json(json, sizeof(json));
	uint64_t seq = atomic_load_explicit((_Atomic uint64_t *)&seg->seq, memory_order_relaxed);

	if (n < 0)
		return;
	atomic_store_explicit((_Atomic uint64_t *)&seg->seq, seq + 1, memory_order_relaxed);
	uw_seqlock_fence(memory_order_release);
	memcpy(seg->json, json, (size_t)n);
	seg->len = (uint32_t)n;
	atomic_store_explicit((_Atomic uint64_t *)&seg->seq, seq + 2, memory_order_release);
}

void uw_live_publish(uint64_t now_ns)
{
	int saved = errno;

	if (now_ns < next_publish_ns || seg_failed)
		return;
	next_publish_ns = now_ns + UW_STATS_PUBLISH_MS * 1000000ull;
	if (!seg) {
		seg = seg_create();
		if (!seg) {
			seg_failed = true;
			uw_info("no live-stats segment in %s: %s", UW_STATS_DIR, strerror(errno));
			errno = saved;
			return;
		}
	}
	seg_write();
	errno = saved;
}

/* At exit and before exec: the segment goes with this image. From a
 * signal handler that interrupted this thread inside the library (which
 * may hold flock): only the name goes, the mapping with the process. */
void uw_live_close(void)
{
	int saved = errno;

	if (uw_core_inside()) {
		if (atomic_load_explicit(&seg_named, memory_order_acquire))
			unlink(seg_path);
		errno = saved;
		return;
	}
	pthread_mutex_lock(&uw_core.flock);
	if (seg) {
		munmap(seg, UW_STATS_SEGMENT_SIZE);
		unlink(seg_path);
		seg = NULL;
		atomic_store_explicit(&seg_named, false, memory_order_relaxed);
	}
	next_publish_ns = 0;
	pthread_mutex_unlock(&uw_core.flock);
	errno = saved;
}

/* A forked child shares the parent's mapping: let go of it, and publish
 * under its own pid from its first flush on. */
void uw_live_after_fork_child(void)
{
	if (seg)
		munmap(seg, UW_STATS_SEGMENT_SIZE);
	seg = NULL;
	atomic_store_explicit(&seg_named, false, memory_order_relaxed);
	seg_failed = false;
	next_publish_ns = 0;
}
