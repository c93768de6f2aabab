/* SPDX-License-Identifier: MIT */
/*
 * udpweave stats PID [--watch] [--json]: the live counters a process
 * running under the library publishes in /dev/shm/udpweave.<pid>
 * (include/udpweave_stats.h), read under the segment's seqlock.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"
#include "udpweave_stats.h"

#define SNAPSHOT_TRIES	1000	/* a writer holds seq odd for a memcpy */
#define READY_WAIT_MS	200	/* a segment just created, not yet filled */

static const char stats_usage[] =
	"usage: udpweave stats PID [--watch] [--json]\n"
	"\n"
	"Show the live counters of process PID running under udpweave, from the\n"
	"segment it publishes in " UW_STATS_DIR "/" UW_STATS_PREFIX "PID (updated at most every\n"
	"100 ms while it sends).\n"
	"\n"
	"  -w, --watch   refresh once a second, with rates per second, until\n"
	"                interrupted or the process exits\n"
	"  -j, --json    print the raw JSON object (with --watch: one line a second)\n"
	"  -h, --help    this text\n"
	"\n"
	"A segment owned by another user than the process's (for a process that is\n"
	"gone: than yours) is refused.\n"
	"\n"
	"Exit status: 0 counters shown; 1 no segment for PID (not running under\n"
	"udpweave, or nothing sent yet) or the process is gone; 2 bad usage, or\n"
	"the segment refused.\n";

struct stats_opts {
	pid_t pid;
	bool watch;
	bool json;
};

enum pid_state { PID_ALIVE, PID_GONE };

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	interrupted = 1;
}

/* Gone: no such process, or a zombie nobody reaped yet. */
static enum pid_state pid_state(pid_t pid)
{
	char path[64], buf[256], *paren;
	size_t len;

	if (kill(pid, 0) && errno == ESRCH)
		return PID_GONE;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (uw_read_file(path, buf, sizeof(buf), &len))
		return PID_ALIVE;
	paren = strrchr(buf, ')');
	if (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'))
		return PID_GONE;
	return PID_ALIVE;
}

static void pid_comm(pid_t pid, char *out, size_t len)
{
	char path[64];
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if (uw_read_file(path, out, len, &n) || !n) {
		snprintf(out, len, "?");
		return;
	}
	out[strcspn(out, "\n")] = '\0';
}

static void segment_path(pid_t pid, char *out, size_t len)
{
	snprintf(out, len, "%s/%s%d", UW_STATS_DIR, UW_STATS_PREFIX, (int)pid);
}

/* The effective uid of a running pid (the owner of what it creates), from
 * the Uid: line of /proc/PID/status; -1 when it cannot be told. */
static long pid_euid(pid_t pid)
{
	char path[64], buf[2048], *uid;
	unsigned long real, eff;
	size_t len;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (uw_read_file(path, buf, sizeof(buf), &len))
		return -1;
	uid = strstr(buf, "\nUid:");
	if (!uid || sscanf(uid + 5, "%lu %lu", &real, &eff) != 2)
		return -1;
	return (long)eff;
}

/* Whose segment may be believed: the running process's user; for a pid
 * that is gone (nobody to ask) only the reader's own. */
static uid_t segment_owner(pid_t pid)
{
	long uid = pid_state(pid) == PID_ALIVE ? pid_euid(pid) : -1;

	return uid < 0 ? geteuid() : (uid_t)uid;
}

static uid_t refused_owner, refused_expected;

/*
 * Map the segment of pid read-only. -ENOENT: none; -EAGAIN: created but
 * not yet filled by its writer (size or magic not there yet); -EINVAL:
 * not a udpweave segment; -EPERM: owned by another user than the
 * process's (planted: refused_owner, refused_expected say who).
 */
static int segment_map(pid_t pid, const struct uw_stats_segment **out)
{
	char path[128];
	struct stat st;
	void *m;
	int fd;

	segment_path(pid, path, sizeof(path));
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		close(fd);
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	refused_expected = segment_owner(pid);
	if (st.st_uid != refused_expected) {
		refused_owner = st.st_uid;
		close(fd);
		return -EPERM;
	}
	if (st.st_size < UW_STATS_SEGMENT_SIZE) {
		close(fd);
		return -EAGAIN;
	}
	m = mmap(NULL, UW_STATS_SEGMENT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -errno;
	*out = m;
	return 0;
}

static void segment_unmap(const struct uw_stats_segment *seg)
{
	munmap((void *)seg, UW_STATS_SEGMENT_SIZE);
}

static uint64_t seq_load(const struct uw_stats_segment *seg, memory_order mo)
{
	return atomic_load_explicit((_Atomic uint64_t *)&seg->seq, mo);
}

/* A consistent copy of the JSON (NUL-terminated), under the seqlock. */
static int segment_snapshot(const struct uw_stats_segment *seg, char *json, size_t cap,
			    uint32_t *seg_pid)
{
	static const char zero[sizeof(seg->magic)];

	for (int i = 0; i < SNAPSHOT_TRIES; i++) {
		uint64_t seq = seq_load(seg, memory_order_acquire);
		uint32_t len;

		if (seq & 1) {
			sched_yield();
			continue;
		}
		len = seg->len;
		if (len > sizeof(seg->json) || len >= cap)
			len = 0;	/* torn: the check below retries */
		memcpy(json, seg->json, len);
		*seg_pid = seg->pid;
		uw_seqlock_fence(memory_order_acquire);
		if (seq_load(seg, memory_order_relaxed) != seq)
			continue;
		if (!memcmp(seg->magic, zero, sizeof(zero)) || !len)
			return -EAGAIN;	/* mapped, not written yet */
		if (memcmp(seg->magic, UW_STATS_MAGIC, sizeof(seg->magic)))
			return -EINVAL;
		json[len] = '\0';
		return (int)len;
	}
	return -EBUSY;
}

/* Map and copy, waiting a little for a segment its writer just created. */
static int read_segment(pid_t pid, char *json, size_t cap, uint32_t *seg_pid)
{
	const struct uw_stats_segment *seg;
	int ret = -EAGAIN;

	for (int waited = 0; ret == -EAGAIN && waited <= READY_WAIT_MS; waited += 10) {
		if (waited)
			usleep(10000);
		ret = segment_map(pid, &seg);
		if (ret)
			continue;
		ret = segment_snapshot(seg, json, cap, seg_pid);
		segment_unmap(seg);
	}
	return ret;
}

static int explain_no_segment(pid_t pid, int err)
{
	char path[128];

	segment_path(pid, path, sizeof(path));
	switch (err) {
	case -ENOENT:
		if (pid_state(pid) == PID_GONE)
			uw_err("no process %d", (int)pid);
		else
			uw_err("process %d publishes no counters (no %s): it is not running under udpweave, or it has not sent anything yet",
			       (int)pid, path);
		break;
	case -EACCES:
		uw_err("cannot read %s: %s (run as the user of process %d, or as root)",
		       path, strerror(-err), (int)pid);
		break;
	case -EINVAL:
		uw_err("%s is not a udpweave stats segment", path);
		break;
	case -EPERM:
		uw_err("refusing %s: it is owned by uid %u, not by uid %u (%s); not shown",
		       path, (unsigned)refused_owner, (unsigned)refused_expected,
		       pid_state(pid) == PID_ALIVE ? "the user of the process" : "the process is gone: yours");
		return UW_EXIT_USAGE;
	case -EAGAIN:
		uw_err("process %d has created %s but published nothing in it yet", (int)pid, path);
		break;
	case -EBUSY:
		uw_err("%s: the writer never left it in a stable state (it may have died while writing)",
		       path);
		break;
	default:
		uw_err("cannot read %s: %s", path, strerror(-err));
	}
	return UW_EXIT_FAIL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_json(const char *json)
{
	size_t n = strlen(json);

	while (n && strchr(" \t\r\n", json[n - 1]))
		n--;
	printf("%.*s\n", (int)n, json);
}

static void print_human(pid_t pid, struct uw_json *cur, const struct uw_rates *r, bool gone)
{
	char comm[64];

	pid_comm(pid, comm, sizeof(comm));
	if (gone)
		printf("udpweave: last counters of process %d (no longer running)\n", (int)pid);
	else
		printf("udpweave: process %d (%s)\n", (int)pid, comm);
	uw_summary_print(stdout, cur, r);
}

static int parse_sample(const char *json, struct uw_json *j, pid_t pid)
{
	if (uw_json_parse(j, json, strlen(json))) {
		uw_err("the segment of process %d holds no valid JSON object", (int)pid);
		return -EINVAL;
	}
	return 0;
}

/* Once: the counters, and a word if the process that wrote them is gone. */
static int stats_once(const struct stats_opts *o)
{
	char json[UW_STATS_SEGMENT_SIZE];
	struct uw_json *j;
	uint32_t seg_pid;
	bool gone;
	int ret;

	ret = read_segment(o->pid, json, sizeof(json), &seg_pid);
	if (ret < 0)
		return explain_no_segment(o->pid, ret);
	gone = pid_state(o->pid) == PID_GONE;
	if (gone)
		uw_err("process %d is not running: %s%s%d is left from it (these are its last counters)",
		       (int)o->pid, UW_STATS_DIR "/", UW_STATS_PREFIX, (int)o->pid);
	else if (seg_pid != (uint32_t)o->pid)
		uw_err("warning: the segment names pid %u, not %d", seg_pid, (int)o->pid);
	if (o->json) {
		print_json(json);
		return gone ? UW_EXIT_FAIL : UW_EXIT_OK;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return UW_EXIT_FAIL;
	ret = parse_sample(json, j, o->pid);
	if (!ret)
		print_human(o->pid, j, NULL, gone);
	free(j);
	return ret || gone ? UW_EXIT_FAIL : UW_EXIT_OK;
}

static void sleep_until(double t)
{
	double d = t - now_s();
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);	/* EINTR: interrupted, the loop checks */
}

static void install_interrupt_handlers(void)
{
	struct sigaction sa = { .sa_handler = on_interrupt };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Every second until interrupted or the process exits. */
static int stats_watch(const struct stats_opts *o)
{
	char json[UW_STATS_SEGMENT_SIZE];
	struct uw_json *cur = calloc(1, sizeof(*cur)), *prev = calloc(1, sizeof(*prev)), *t;
	bool have_prev = false, tty = isatty(STDOUT_FILENO);
	double t_prev = 0, t_cur, next = now_s();
	uint32_t seg_pid;
	int ret = UW_EXIT_OK, n;

	if (!cur || !prev) {
		free(cur);
		free(prev);
		return UW_EXIT_FAIL;
	}
	install_interrupt_handlers();
	n = read_segment(o->pid, json, sizeof(json), &seg_pid);
	if (n < 0) {
		ret = explain_no_segment(o->pid, n);
		goto out;
	}
	while (!interrupted) {
		t_cur = now_s();
		if (pid_state(o->pid) == PID_GONE) {
			uw_err("process %d exited", (int)o->pid);
			break;
		}
		n = read_segment(o->pid, json, sizeof(json), &seg_pid);
		if (n == -ENOENT || n == -EAGAIN) {
			/* between images (exec), or exiting: no sample this time */
			have_prev = false;
		} else if (n < 0) {
			ret = explain_no_segment(o->pid, n);
			break;
		} else if (o->json) {
			print_json(json);
		} else if (!parse_sample(json, cur, o->pid)) {
			struct uw_rates r = { .prev = have_prev ? prev : NULL,
					      .secs = t_cur - t_prev };

			if (tty)
				fputs("\033[H\033[J", stdout);
			else
				putchar('\n');
			print_human(o->pid, cur, &r, false);
			t = prev;
			prev = cur;
			cur = t;
			t_prev = t_cur;
			have_prev = true;
		}
		fflush(stdout);
		next += 1.0;
		sleep_until(next);
	}
out:
	free(cur);
	free(prev);
	return ret;
}

static int parse_stats_options(int argc, char **argv, struct stats_opts *o)
{
	static const struct option longopts[] = {
		{ "watch", no_argument, NULL, 'w' },
		{ "json",  no_argument, NULL, 'j' },
		{ "help",  no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":wjh", longopts, NULL)) != -1) {
		switch (c) {
		case 'w': o->watch = true; break;
		case 'j': o->json = true; break;
		case 'h':
			fputs(stats_usage, stdout);
			return UW_EXIT_OK;
		default:
			return uw_option_error("stats", c, argv);
		}
	}
	if (optind >= argc)
		return uw_usage_error("stats", "missing PID");
	if (optind + 1 < argc)
		return uw_usage_error("stats", "one PID only, got '%s' too", argv[optind + 1]);
	if (uw_parse_pid(argv[optind], &o->pid))
		return uw_usage_error("stats", "PID: expected a process id, got '%s'",
				      argv[optind]);
	return -1;
}

int cmd_stats(int argc, char **argv)
{
	struct stats_opts o = { 0 };
	int ret = parse_stats_options(argc, argv, &o);

	if (ret >= 0)
		return ret;
	return o.watch ? stats_watch(&o) : stats_once(&o);
}
