/* SPDX-License-Identifier: MIT */
/*
 * Copies from the application's memory that fail with -EFAULT instead of
 * crashing, the kernel's way (copy_from_user and its exception table):
 * every instruction that may touch application memory has an entry in the
 * section uw_extable naming where to resume; the fault handler
 * (preload/signal.c) moves a faulting thread that is at one of them to its
 * fixup, which returns -EFAULT. Nothing is armed on the way in: the hot
 * path pays for a `rep movsb` and nothing else.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "uw.h"

/* An entry: the faulting instruction and its fixup, each as an offset from
 * the entry's own field (position-independent, no relocations). */
struct uw_extable_entry {
	int32_t insn;
	int32_t fixup;
};

#if defined(__x86_64__)

/* The linker's bounds of the section (its name is a C identifier). */
extern const struct uw_extable_entry __start_uw_extable[] __attribute__((visibility("hidden")));
extern const struct uw_extable_entry __stop_uw_extable[] __attribute__((visibility("hidden")));

#define UW_EXTABLE(insn, fixup)						\
	".pushsection uw_extable, \"a\"\n"				\
	".balign 4\n"							\
	".long " #insn " - .\n"						\
	".long " #fixup " - .\n"					\
	".popsection\n"

/* One 8-byte load from the application: 0 or -EFAULT. */
static inline long load8(uint64_t *v, const void *p)
{
	long ret = 0;

	asm volatile("1:	movq (%[p]), %[v]\n"
		     "	jmp 3f\n"
		     "2:	mov %[efault], %[ret]\n"
		     "3:\n"
		     UW_EXTABLE(1b, 2b)
		     : [ret] "+r" (ret), [v] "=r" (*v)
		     : [p] "r" (p), [efault] "i" (-EFAULT)
		     : "memory");
	return ret;
}

/*
 * Addresses and headers (8 to 32 bytes) by 8-byte loads, the last one
 * overlapping: `rep movsb` costs a few ns more to start than such a copy
 * takes. The destination is the library's own memory.
 */
static long copy_small(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	uint64_t v;

	for (size_t off = 0; off + 8 <= n; off += 8) {
		if (load8(&v, s + off))
			return -EFAULT;
		memcpy(d + off, &v, 8);
	}
	if (n & 7) {
		if (load8(&v, s + n - 8))
			return -EFAULT;
		memcpy(d + n - 8, &v, 8);
	}
	return 0;
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
		return copy_small(dst, src, n);
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
