/* SPDX-License-Identifier: MIT */
/*
 * The inline part of the copies from the application (core/ucopy.c): the
 * exception-table entry and the small copy the send paths make for every
 * datagram (its address, a header), so that they pay no call for it.
 */
#ifndef UW_UCOPY_H
#define UW_UCOPY_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "uw.h"

#if defined(__x86_64__)

/* An entry of the section uw_extable: the instruction that may fault and
 * where to resume, each as an offset from the entry's own field
 * (position-independent, no relocations). */
#define UW_EXTABLE(insn, fixup)						\
	".pushsection uw_extable, \"a\"\n"				\
	".balign 4\n"							\
	".long " #insn " - .\n"						\
	".long " #fixup " - .\n"					\
	".popsection\n"

/*
 * v = 8 bytes at p, or a jump to the C label fault: the fault handler
 * moves a faulting load to its label (asm goto, as the kernel's
 * unsafe_get_user: nothing to jump over on the way through). The source
 * is a memory operand: the compiler knows what is read, and orders the
 * library's own stores around it as it likes.
 */
struct uw_8b { unsigned char b[8]; };
#define UW_LOAD8(v, p, fault)						\
	asm goto("1:	movq %[src], %[val]\n"				\
		 UW_EXTABLE(1b, %l[fault])				\
		 : [val] "=r" (v)					\
		 : [src] "m" (*(const struct uw_8b *)(p))		\
		 : : fault)

/*
 * 8 to 32 bytes (addresses, headers, a few iovecs) by 8-byte loads, the
 * last one overlapping: `rep movsb` costs a few ns more to start than such
 * a copy takes. Other sizes: uw_copy_from_user. The destination is the
 * library's own memory.
 */
static inline long uw_copy_small_from_user(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	uint64_t v;

	if (n < 8 || n > 32)
		return uw_copy_from_user(dst, src, n);
	for (size_t off = 0; off + 8 <= n; off += 8) {
		UW_LOAD8(v, s + off, fault);
		memcpy(d + off, &v, 8);
	}
	if (n & 7) {
		UW_LOAD8(v, s + n - 8, fault);
		memcpy(d + n - 8, &v, 8);
	}
	return 0;
fault:
	return -EFAULT;
}

#else

static inline long uw_copy_small_from_user(void *dst, const void *src, size_t n)
{
	return uw_copy_from_user(dst, src, n);
}

#endif

#endif
