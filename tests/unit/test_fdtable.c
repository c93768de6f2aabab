/* SPDX-License-Identifier: MIT */
/* The fd table across socket creation, dup, close and fd reuse. */
#include "helpers.h"

static struct uw_fdtable t;

static int setup(void **state)
{
	(void)state;
	assert_int_equal(uw_fdtable_init(&t, 1024), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* installed sockets: unlink every fd naming one, then free it once */
	for (int fd = 0; fd < t.nslots; fd++) {
		uintptr_t v = uw_fdtable_peek(&t, fd);

		if (uw_slot_sock(v)) {
			struct uw_sock *s = (struct uw_sock *)v;

			for (int o = fd; o < t.nslots; o++)
				if (uw_fdtable_peek(&t, o) == v)
					uw_fdtable_install(&t, o, NULL);
			free(s);
		}
	}
	free(t.slot);
	while (t.free_list) {
		struct uw_sock *s = t.free_list;

		t.free_list = s->next_free;
		free(s);
	}
	return 0;
}

static struct uw_sock *at(int fd)
{
	uintptr_t v = uw_fdtable_peek(&t, fd);

	return uw_slot_sock(v);
}

static void new_socket_is_found_by_fd(void **state)
{
	struct uw_sock *s = uw_sock_new(&t, 5, AF_INET);

	(void)state;
	assert_int_equal(uw_fdtable_peek(&t, 5), UW_FD_UNKNOWN);
	assert_null(uw_fdtable_install(&t, 5, s));
	assert_ptr_equal(at(5), s);
	assert_int_equal(s->refs, 1);
	assert_int_equal(atomic_load(&s->fd), 5);
}

static void dup_shares_one_state(void **state)
{
	struct uw_sock *s = uw_sock_new(&t, 5, AF_INET);

	(void)state;
	uw_fdtable_install(&t, 5, s);
	uw_fdtable_install(&t, 9, at(5));
	assert_ptr_equal(at(9), s);
	assert_int_equal(s->refs, 2);
	/* close 5: 9 still names it, and becomes the fd to send on */
	assert_ptr_equal(uw_fdtable_install(&t, 5, NULL), s);
	assert_false(uw_sock_put(&t, s));
	assert_int_equal(uw_fdtable_other_fd(&t, s, 5), 9);
	assert_int_equal(uw_fdtable_peek(&t, 5), UW_FD_UNKNOWN);
	/* close 9: the last reference */
	assert_ptr_equal(uw_fdtable_install(&t, 9, NULL), s);
	assert_true(uw_sock_put(&t, s));
	assert_ptr_equal(t.free_list, s);
	assert_int_equal(uw_fdtable_other_fd(&t, s, 9), -1);
}

static void closed_state_is_reused_not_freed(void **state)
{
	struct uw_sock *s = uw_sock_new(&t, 5, AF_INET), *s2;

	(void)state;
	uw_fdtable_install(&t, 5, s);
	uw_fdtable_install(&t, 5, NULL);
	assert_true(uw_sock_put(&t, s));
	s2 = uw_sock_new(&t, 6, AF_INET6);
	assert_ptr_equal(s2, s);		/* type-stable memory */
	assert_int_equal(s2->family, AF_INET6);
	assert_int_equal(s2->refs, 0);
	assert_int_equal(uw_sock_flags(s2), UW_SOCK_SYNC);	/* its first send the kernel's */
	uw_sock_discard(&t, s2);
}

static void foreign_mark_never_hides_a_socket(void **state)
{
	struct uw_sock *s = uw_sock_new(&t, 7, AF_INET);

	(void)state;
	uw_fdtable_mark_foreign(&t, 3, UW_FD_FOREIGN);
	assert_int_equal(uw_fdtable_peek(&t, 3), UW_FD_FOREIGN);
	uw_fdtable_install(&t, 7, s);
	uw_fdtable_mark_foreign(&t, 7, UW_FD_OTHER_SOCK);
	assert_ptr_equal(at(7), s);
	/* reuse of a foreign fd by a new socket */
	assert_null(uw_fdtable_install(&t, 3, uw_sock_new(&t, 3, AF_INET)));
	assert_non_null(at(3));
}

static void adopt_installs_only_over_unknown(void **state)
{
	struct uw_sock *a = uw_sock_new(&t, 8, AF_INET), *b = uw_sock_new(&t, 8, AF_INET);

	(void)state;
	assert_ptr_equal(uw_fdtable_adopt(&t, 8, a), a);
	assert_ptr_equal(uw_fdtable_adopt(&t, 8, b), a);	/* lost the race */
	assert_int_equal(a->refs, 1);
	assert_int_equal(b->refs, 0);
	uw_sock_discard(&t, b);
	uw_fdtable_mark_foreign(&t, 20, UW_FD_OTHER_SOCK);
	b = uw_sock_new(&t, 20, AF_INET);
	assert_null(uw_fdtable_adopt(&t, 20, b));
	uw_sock_discard(&t, b);
}

static void fds_beyond_the_table_are_foreign(void **state)
{
	(void)state;
	assert_int_equal(uw_fdtable_peek(&t, 1024), UW_FD_FOREIGN);
	assert_int_equal(uw_fdtable_peek(&t, -1), UW_FD_FOREIGN);
	assert_null(uw_fdtable_install(&t, 5000, NULL));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(new_socket_is_found_by_fd),
		T(dup_shares_one_state),
		T(closed_state_is_reused_not_freed),
		T(foreign_mark_never_hides_a_socket),
		T(adopt_installs_only_over_unknown),
		T(fds_beyond_the_table_are_foreign),
	};

	return cmocka_run_group_tests_name("fdtable", tests, NULL, NULL);
}
