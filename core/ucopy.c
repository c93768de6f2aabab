/* SPDX-License-Identifier: MIT */
/*
 * Copies from the application's memory that fail with -EFAULT instead of
 * crashing, the kernel's way (copy_from_user and its exception table):
 * every instruction that may touch application memory has an entry in the
 * section uw_extable naming where to resume; the fault handler
 * (preload/signal.c) moves a faulting thread that is at one of them to its
 * fixup, which returns -EFAULT. Nothing is armed on the way in: the hot
 * path pays for the copy and nothing else (see core/ucopy.h for the small
 * copies, inline where they are made).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "ucopy.h"

/* An entry: the faulting instruction and its fixup, each as an offset from
 * the entry's own field (position-independent, no relocations). */
struct uw_extable_entry {
	int32_t insn;
	int32_t fixup;
};

#if defined(__x86_64__)

#include <immintrin.h>

/* The linker's bounds of the section (its name is a C identifier). */
extern const struct uw_extable_entry __start_uw_extable[] __attribute__((visibility("hidden")));
extern const struct uw_extable_entry __stop_uw_extable[] __attribute__((visibility("hidden")));

/* v = 32 bytes at p, or a jump to the C label fault (as UW_LOAD8). */
struct uw_32b { unsigned char b[32]; };
#define LOAD32(v, p, fault)						\
	asm goto("1:	vmovdqu %[src], %[val]\n"			\
		 UW_EXTABLE(1b, %l[fault])				\
		 : [val] "=x" (v)					\
		 : [src] "m" (*(const struct uw_32b *)(p))		\
		 : : fault)

/* 32-byte loads and stores at s/d + off. */
#define COPY32(off, fault)						\
	do {								\
		__m256i v_;						\
									\
		LOAD32(v_, s + (off), fault);				\
		_mm256_storeu_si256((void *)(d + (off)), v_);		\
	} while (0)

/*
 * Payloads (33 bytes up to UW_COPY_REP_MIN) by 32-byte AVX2 loads, four
 * a turn, the last 128 bytes loaded first and stored last (overlapping
 * the last turn): memcpy's speed. `rep movsb` starts slower: 1316 bytes
 * into the arena (destinations aligned to 8) took it some 5 ns more than
 * this loop or glibc's memcpy (AMD EPYC, Zen 4), 7 ns a datagram in the
 * send path. It stays for large copies, where it catches up, and where
 * there is no AVX2.
 */
#define UW_COPY_REP_MIN	(16u * 1024u)

__attribute__((target("avx2")))
static long copy_avx2(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	__m256i t0, t1, t2, t3;

	if (n <= 64) {
		LOAD32(t0, s, fault);
		LOAD32(t1, s + n - 32, fault);
		_mm256_storeu_si256((void *)d, t0);
		_mm256_storeu_si256((void *)(d + n - 32), t1);
		return 0;
	}
	if (n <= 128) {
		COPY32(0, fault);
		COPY32(32, fault);
		COPY32(n - 64, fault);
		COPY32(n - 32, fault);
		return 0;
	}
	LOAD32(t0, s + n - 128, fault);
	LOAD32(t1, s + n - 96, fault);
	LOAD32(t2, s + n - 64, fault);
	LOAD32(t3, s + n - 32, fault);
	for (size_t off = 0; off + 128 < n; off += 128) {
		COPY32(off, fault);
		COPY32(off + 32, fault);
		COPY32(off + 64, fault);
		COPY32(off + 96, fault);
	}
	_mm256_storeu_si256((void *)(d + n - 128), t0);
	_mm256_storeu_si256((void *)(d + n - 96), t1);
	_mm256_storeu_si256((void *)(d + n - 64), t2);
	_mm256_storeu_si256((void *)(d + n - 32), t3);
	return 0;
fault:
	return -EFAULT;
}

/* Set once, before main (a copy before that takes `rep movsb`). */
static bool have_avx2;

__attribute__((constructor))
static void ucopy_init(void)
{
	__builtin_cpu_init();
	have_avx2 = __builtin_cpu_supports("avx2");
}

/* Either side may be the application's. */
long uw_copy_to_user(void *dst, const void *src, size_t n)
{
	long ret = 0;

	asm volatile("1:	rep movsb\n"
		     "	jmp 3f\n"
		     "2:	mov %[efault], %[ret]\n"
		     "3:\n"
		     UW_EXTABLE(1b, 2b)
		     : [ret] "+r" (ret), "+D" (dst), "+S" (src), "+c" (n)
		     : [efault] "i" (-EFAULT)
		     : "memory");
	return ret;
}

long uw_copy_from_user(void *dst, const void *src, size_t n)
{
	if (n >= 8 && n <= 32)
		return uw_copy_small_from_user(dst, src, n);
	if (n > 32 && n < UW_COPY_REP_MIN && have_avx2)
		return copy_avx2(dst, src, n);
	return uw_copy_to_user(dst, src, n);
}

bool uw_fault_fixup(void *ucontext)
{
	ucontext_t *uc = ucontext;
	uintptr_t ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];

	for (const struct uw_extable_entry *e = __start_uw_extable; e < __stop_uw_extable; e++) {
		if ((uintptr_t)&e->insn + (intptr_t)e->insn != ip)
			continue;
		uc->uc_mcontext.gregs[REG_RIP] = (greg_t)((uintptr_t)&e->fixup + (intptr_t)e->fixup);
		return true;
	}
	return false;
}

#else	/* no fixups on this architecture: plain copies, faults are faults */

long uw_copy_from_user(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
	return 0;
}

long uw_copy_to_user(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
	return 0;
}

bool uw_fault_fixup(void *ucontext)
{
	return false;
}

#endif
