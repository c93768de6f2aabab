/* run_measured — run a command as a fresh child and report its rusage.
 *
 *   run_measured --out FILE [--setenv KEY=VAL]... -- PROGRAM ARGS...
 *
 * Forks (a real fork of this small process, not vfork), sets the extra
 * environment in the child, execs PROGRAM, reaps it with wait4() and writes
 * one JSON object to FILE: exit status, user/system CPU seconds, ru_maxrss,
 * context switches and wall time.  Exits with the child's status.
 *
 * Why not wait4() from the benchmark script directly: ru_maxrss survives
 * exec, and a child spawned by Python (vfork + exec) or by `ip netns exec`
 * starts with the launcher's high-water mark (Python's ~18 MiB), which hides
 * the few MiB being measured.  A child forked from this tiny program starts
 * below the sender's own footprint, and the CPU figures exclude the
 * launchers (ip, taskset).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SETENV 64

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
	return tv.tv_sec + tv.tv_usec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: run_measured --out FILE [--setenv KEY=VAL]... -- PROGRAM ARGS...\n");
	exit(2);
}

static pid_t child;

static void forward_signal(int sig)
{
	if (child > 0)
		kill(child, sig);
}

static void write_report(const char *path, int status, const struct rusage *ru,
			 double wall)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "run_measured: %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "{\"pid\": %d, \"exited\": %s, \"exit_code\": %d, \"signal\": %d, "
		"\"utime_s\": %.6f, \"stime_s\": %.6f, \"maxrss_kb\": %ld, "
		"\"nvcsw\": %ld, \"nivcsw\": %ld, \"minflt\": %ld, \"wall_s\": %.6f}\n",
		(int)child, WIFEXITED(status) ? "true" : "false",
		WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		tv_s(ru->ru_utime), tv_s(ru->ru_stime), ru->ru_maxrss,
		ru->ru_nvcsw, ru->ru_nivcsw, ru->ru_minflt, wall);
	fclose(f);
}

int main(int argc, char **argv)
{
	const char *out = NULL, *setenvs[MAX_SETENV];
	int nset = 0, i, status = 0;
	struct sigaction sa = { .sa_handler = forward_signal };
	struct rusage ru;
	double t0;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			out = argv[++i];
		} else if (!strcmp(argv[i], "--setenv") && i + 1 < argc &&
			   nset < MAX_SETENV && strchr(argv[i + 1], '=')) {
			setenvs[nset++] = argv[++i];
		} else {
			usage();
		}
	}
	if (!out || i >= argc)
		usage();
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	t0 = now_s();
	child = fork();
	if (child < 0) {
		perror("run_measured: fork");
		return 2;
	}
	if (child == 0) {
		for (int k = 0; k < nset; k++)
			putenv((char *)setenvs[k]);
		execvp(argv[i], argv + i);
		fprintf(stderr, "run_measured: %s: %s\n", argv[i], strerror(errno));
		_exit(127);
	}
	while (wait4(child, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("run_measured: wait4");
			return 2;
		}
	}
	write_report(out, status, &ru, now_s() - t0);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
