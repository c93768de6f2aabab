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

long uw_copy_from_user(void *dst, const void *src, size_t n)
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

bool uw_fault_fixup(void *ucontext)
{
	return false;
}

#endif
