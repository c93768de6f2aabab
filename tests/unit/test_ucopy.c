/* SPDX-License-Identifier: MIT */
/* Copies from application memory: -EFAULT at a fault, through the fixup a
 * SIGSEGV handler applies (as preload/signal.c does), and nothing is
 * written past what could be read. */
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "helpers.h"

static unsigned char *map;	/* two pages, the second PROT_NONE */
static size_t page;
static int others;		/* faults that were not a copy's */

static void on_segv(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)info;
	if (!uw_fault_fixup(uc)) {
		others++;
		signal(SIGSEGV, SIG_DFL);
	}
}

/* In the test itself: CMocka puts its own handlers in at each test. */
static void catch_faults(void)
{
	struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGSEGV, &sa, NULL), 0);
	assert_int_equal(sigaction(SIGBUS, &sa, NULL), 0);
}

static int setup(void **state)
{
	(void)state;
	page = (size_t)sysconf(_SC_PAGESIZE);
	map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED || mprotect(map + page, page, PROT_NONE))
		return -1;
	memset(map, 0xab, page);
	return 0;
}

static void readable_memory_is_copied(void **state)
{
	unsigned char dst[256];

	(void)state;
	memset(dst, 0, sizeof(dst));
	assert_int_equal(uw_copy_from_user(dst, map + page - sizeof(dst), sizeof(dst)), 0);
	for (size_t i = 0; i < sizeof(dst); i++)
		assert_int_equal(dst[i], 0xab);
	assert_int_equal(uw_copy_from_user(dst, NULL, 0), 0);	/* nothing to read */
	for (size_t n = 1; n <= 40; n++) {	/* every size of the small path */
		memset(dst, 0, sizeof(dst));
		assert_int_equal(uw_copy_from_user(dst, map + 3, n), 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(dst[i], 0xab);
		assert_int_equal(dst[n], 0);
	}
}

/* Every size class (8-byte loads, 32-byte loads, the 128-byte loop,
 * `rep movsb`) at a few alignments: the bytes, and none past them. */
static void every_size_is_copied(void **state)
{
	static const size_t big[] = { 1316, 4095, 4096, 16383, 16384, 20000, 65507 };
	size_t len = 70000;
	unsigned char *src = malloc(len + 64), *dst = malloc(len + 64);

	(void)state;
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < len + 64; i++)
		src[i] = (unsigned char)(i * 7 + 1);
	for (size_t k = 0; k < 600 + UW_ARRAY_SIZE(big); k++) {
		size_t n = k < 600 ? k : big[k - 600];

		for (size_t so = 0; so < 3; so++) {
			size_t dofs = (so * 13) % 32;

			memset(dst, 0, n + dofs + 32);
			assert_int_equal(uw_copy_from_user(dst + dofs, src + so, n), 0);
			assert_memory_equal(dst + dofs, src + so, n);
			for (size_t i = 0; i < 32; i++)
				assert_int_equal(dst[dofs + n + i], 0);
		}
	}
	free(src);
	free(dst);
}

/* A copy of each size class that runs one byte off the readable page
 * fails, wherever its loads are; the same copy ending at the page's end
 * does not. */
static void every_size_faults_at_the_edge(void **state)
{
	static const size_t sizes[] = { 8, 16, 28, 32, 33, 63, 64, 65, 100, 127, 128, 129,
					200, 255, 256, 1316, 2048, 4000 };
	unsigned char *dst = malloc(8192);

	(void)state;
	assert_non_null(dst);
	catch_faults();
	for (size_t k = 0; k < UW_ARRAY_SIZE(sizes); k++) {
		size_t n = sizes[k];

		assert_int_equal(uw_copy_from_user(dst, map + page - n, n), 0);
		assert_int_equal(uw_copy_from_user(dst, map + page - n + 1, n), -EFAULT);
		assert_int_equal(uw_copy_from_user(dst, map + page - n + 32, n), -EFAULT);
		/* nothing readable at all */
		assert_int_equal(uw_copy_from_user(dst, map + page, n), -EFAULT);
	}
	free(dst);
	assert_int_equal(others, 0);
}

static void a_fault_is_efault(void **state)
{
	unsigned char dst[64];

	(void)state;
	catch_faults();
	assert_int_equal(uw_copy_from_user(dst, (void *)1, sizeof(dst)), -EFAULT);
	assert_int_equal(uw_copy_from_user(dst, map + page, 1), -EFAULT);
	/* running off the end of the readable page */
	assert_int_equal(uw_copy_from_user(dst, map + page - 8, sizeof(dst)), -EFAULT);
	/* small copies (addresses, iovecs) take 8-byte loads: each may fault */
	assert_int_equal(uw_copy_from_user(dst, map + page - 8, 16), -EFAULT);
	assert_int_equal(uw_copy_from_user(dst, map + page - 12, 28), -EFAULT);
	assert_int_equal(uw_copy_from_user(dst, map + page - 28, 28), 0);
	/* a bad destination (the msg_len the library stores) */
	assert_int_equal(uw_copy_to_user(map + page, dst, 4), -EFAULT);
	/* many in a row: the signal is not left blocked by the fixup */
	for (int i = 0; i < 1000; i++)
		assert_int_equal(uw_copy_from_user(dst, (void *)8, 1), -EFAULT);
	assert_int_equal(others, 0);
}

static void other_faults_are_not_fixed_up(void **state)
{
	ucontext_t uc;

	(void)state;
	memset(&uc, 0, sizeof(uc));
	getcontext(&uc);	/* an ip inside this test, no copy's */
	assert_false(uw_fault_fixup(&uc));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(readable_memory_is_copied),
		cmocka_unit_test(every_size_is_copied),
		cmocka_unit_test(every_size_faults_at_the_edge),
		cmocka_unit_test(a_fault_is_efault),
		cmocka_unit_test(other_faults_are_not_fixed_up),
	};

	return cmocka_run_group_tests_name("ucopy", tests, setup, NULL);
}
