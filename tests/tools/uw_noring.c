/* SPDX-License-Identifier: MIT */
/*
 * uw_noring — run a program in which io_uring is refused, as a container's
 * seccomp profile or the kernel.io_uring_disabled sysctl refuse it, but for
 * this process tree only (the sysctl is global: other tests run meanwhile).
 *
 *   uw_noring ENOSYS|EPERM PROGRAM [ARGS...]
 *
 * Installs a seccomp filter under which io_uring_setup, io_uring_enter and
 * io_uring_register fail with that errno (every other system call is
 * allowed), then execs PROGRAM. Exit status 77 if the filter cannot be
 * installed, 2 on bad usage, 127 if PROGRAM cannot be run.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define UW_AUDIT_ARCH	AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define UW_AUDIT_ARCH	AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define UW_AUDIT_ARCH	AUDIT_ARCH_I386
#endif

static int usage(void)
{
	fprintf(stderr, "usage: uw_noring ENOSYS|EPERM PROGRAM [ARGS...]\n");
	return 2;
}

int main(int argc, char **argv)
{
	int err;

	if (argc < 3)
		return usage();
	if (!strcmp(argv[1], "ENOSYS"))
		err = ENOSYS;
	else if (!strcmp(argv[1], "EPERM"))
		err = EPERM;
	else
		return usage();
#ifndef UW_AUDIT_ARCH
	fprintf(stderr, "uw_noring: no seccomp architecture for this build\n");
	return 77;
#else
	struct sock_filter filter[] = {
		/* another architecture's system call numbers: not ours to judge */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, UW_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned int)err & SECCOMP_RET_DATA)),
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		fprintf(stderr, "uw_noring: cannot install the seccomp filter: %s\n",
			strerror(errno));
		return 77;
	}
	if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != err) {
		fprintf(stderr, "uw_noring: the filter does not refuse io_uring_setup\n");
		return 77;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "uw_noring: %s: %s\n", argv[2], strerror(errno));
	return 127;
#endif
}
