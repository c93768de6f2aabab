/* SPDX-License-Identifier: MIT */
/*
 * Signals shared with the application, the way runtimes share them
 * (OpenJDK's libjsig): sigaction() and signal() are interposed for the
 * signals the library has a use for, so that the application still sees
 * and owns its dispositions while the library's handler sits in front.
 *
 * SIGSEGV, SIGBUS: the library's handler is always installed. A fault at
 * one of the library's copies from application memory (core/ucopy.c)
 * resumes at its fixup, and the call fails with EFAULT as the kernel's
 * would; any other fault is the application's: its handler is called as
 * the kernel would have called it, or, under the default disposition, the
 * default is put back and the faulting instruction runs again (the same
 * death, the same core dump).
 *
 * The terminating signals (SIGTERM, SIGINT, SIGHUP, ...): while the
 * application's disposition is the default one, the library's handler is
 * installed instead; it sends the queue, puts the default back and raises
 * the signal again, so the process dies as it would have, its datagrams
 * sent. A thread interrupted inside the library (holding its locks) is
 * left to finish: the signal is raised again when it leaves. Signals the
 * application handles or ignores are not touched.
 *
 * The table is changed by sigaction() with every signal blocked and under
 * a spin lock (sigaction is async-signal-safe: it may be called from a
 * handler), which the handlers take to read it.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

/* The signals whose default action kills the process and loses the
 * queue: sent from outside (deferred while the thread is in the library),
 * and raised by the thread itself (crashes: best effort, never deferred,
 * nothing sent if the crash is inside the library). */
static const int uw_term_signals[] = {
	SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE,
	SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGPWR, SIGSTKFLT,
};
static const int uw_crash_signals[] = { SIGABRT, SIGILL, SIGFPE, SIGTRAP, SIGSYS };

enum sig_role { ROLE_NONE, ROLE_FAULT, ROLE_TERM, ROLE_CRASH };

struct sig_slot {
	struct sigaction app;	/* what the application set (or found) */
	enum sig_role role;
	bool ours;		/* the library's handler is the kernel's */
};

static struct sig_slot slots[NSIG];
static atomic_flag table_lock = ATOMIC_FLAG_INIT;
static _Atomic bool signals_ready;

static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	return real.sigaction ? real.sigaction(sig, act, old) :
	       (int)syscall(SYS_rt_sigaction, sig, act, old, _NSIG / 8);
}

static void table_lock_take(void)
{
	while (atomic_flag_test_and_set_explicit(&table_lock, memory_order_acquire))
		;
}

static void table_lock_drop(void)
{
	atomic_flag_clear_explicit(&table_lock, memory_order_release);
}

/* Writers hold the lock with every signal blocked: a handler can never
 * interrupt its own thread's writer, so handlers may take it too. */
static void table_write_begin(sigset_t *saved)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, saved);
	table_lock_take();
}

static void table_write_end(const sigset_t *saved)
{
	table_lock_drop();
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/* A consistent copy of the application's action for sig (from a handler:
 * another thread's writer holds the lock for a few instructions). */
static void app_action(int sig, struct sigaction *out)
{
	table_lock_take();
	*out = slots[sig].app;
	table_lock_drop();
}

static bool is_default(const struct sigaction *sa)
{
	return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == SIG_DFL;
}

static bool is_ignored(const struct sigaction *sa)
{
	return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == SIG_IGN;
}

/* ---- the application's handler, called as the kernel would ------------ */

static void call_app(int sig, siginfo_t *info, void *uc, const struct sigaction *app)
{
	sigset_t mask, saved;

	if (app->sa_flags & SA_RESETHAND) {
		sigset_t s;

		table_write_begin(&s);
		memset(&slots[sig].app, 0, sizeof(slots[sig].app));
		slots[sig].app.sa_handler = SIG_DFL;
		table_write_end(&s);
	}
	mask = app->sa_mask;
	if (!(app->sa_flags & SA_NODEFER))
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_BLOCK, &mask, &saved);
	if (app->sa_flags & SA_SIGINFO)
		app->sa_sigaction(sig, info, uc);
	else
		app->sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* Put the kernel's default action back for sig (the library steps out). */
static void restore_default(int sig)
{
	struct sigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	real_sigaction(sig, &dfl, NULL);
	slots[sig].ours = false;
}

/* ---- faults -------------------------------------------------------------- */

static void on_fault(int sig, siginfo_t *info, void *uc)
{
	struct sigaction app;
	int saved = errno;

	if (uw_fault_fixup(uc)) {	/* a copy of ours: it returns -EFAULT */
		errno = saved;
		return;
	}
	app_action(sig, &app);
	if (is_default(&app) || is_ignored(&app)) {
		/* the application's crash: what is queued goes first if the
		 * library is not where it crashed, then the instruction
		 * faults again under the default action (an ignored
		 * synchronous fault kills all the same) */
		if (!uw_core_inside())
			uw_process_exit(UW_FLUSH_SIGNAL);
		restore_default(sig);
		errno = saved;
		return;
	}
	errno = saved;
	call_app(sig, info, uc, &app);
}

/* ---- terminating signals ------------------------------------------------- */

/* Send what is queued, then die of sig as without the library. */
static void die_of(int sig)
{
	uw_process_exit(UW_FLUSH_SIGNAL);
	restore_default(sig);
	raise(sig);	/* pending until the handler returns (sig is blocked) */
}

static void on_term(int sig, siginfo_t *info, void *uc)
{
	int saved = errno;

	if (uw_core_inside()) {		/* its locks may be held: later */
		uw_core_defer_signal(sig);
		errno = saved;
		return;
	}
	die_of(sig);
	errno = saved;
}

/* Raised by the thread itself: never deferred (the instruction would only
 * fault again); nothing sent from a crash inside the library. */
static void on_crash(int sig, siginfo_t *info, void *uc)
{
	int saved = errno;

	if (!uw_core_inside())
		uw_process_exit(UW_FLUSH_SIGNAL);
	restore_default(sig);
	raise(sig);
	errno = saved;
}

/* The core's call when a thread that deferred sig leaves the library. */
static void run_deferred(int sig)
{
	die_of(sig);
}

static void (*handler_of(enum sig_role role))(int, siginfo_t *, void *)
{
	return role == ROLE_FAULT ? on_fault : role == ROLE_TERM ? on_term : on_crash;
}

/* ---- installing ------------------------------------------------------- */

/* The library's action for a role. Faults: SA_NODEFER and an empty mask,
 * as the fixup returns to the interrupted code, whose mask must not then
 * hold the signal. The others run with every signal blocked. */
static void ours_for(enum sig_role role, struct sigaction *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sa_sigaction = handler_of(role);
	sa->sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	if (role == ROLE_FAULT) {
		sa->sa_flags |= SA_NODEFER;
		sigemptyset(&sa->sa_mask);
	} else {
		sigfillset(&sa->sa_mask);
	}
}

static void install(int sig, enum sig_role role)
{
	struct sigaction sa, old;

	ours_for(role, &sa);
	if (real_sigaction(sig, NULL, &old))
		return;
	slots[sig].app = old;
	slots[sig].role = role;
	/* a terminating signal the application (or its parent: nohup)
	 * handles or ignores is left alone */
	if (role != ROLE_FAULT && !is_default(&old))
		return;
	if (!real_sigaction(sig, &sa, NULL))
		slots[sig].ours = true;
}

void uw_signals_init(void)
{
	sigset_t saved;

	table_write_begin(&saved);
	install(SIGSEGV, ROLE_FAULT);
	install(SIGBUS, ROLE_FAULT);
	for (size_t i = 0; i < UW_ARRAY_SIZE(uw_term_signals); i++)
		install(uw_term_signals[i], ROLE_TERM);
	for (size_t i = 0; i < UW_ARRAY_SIZE(uw_crash_signals); i++)
		install(uw_crash_signals[i], ROLE_CRASH);
	table_write_end(&saved);
	uw_core_on_deferred = run_deferred;
	atomic_store_explicit(&signals_ready, true, memory_order_release);
}

/* A forked child keeps the parent's table and handlers; nothing to do.
 * After exec the kernel resets caught signals, and the new image's library
 * starts from its own table. */

/* ---- the interposers ---------------------------------------------------- */

static int shared_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/* sigaction for a signal the library handles: the application's view
 * and choice in the table; the kernel gets the library's handler where it
 * has to stand in front, the application's otherwise. */
static int managed_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sig_slot *sl = &slots[sig];
	struct sigaction mine;
	sigset_t saved;
	int rc = 0;

	table_write_begin(&saved);
	if (old)
		*old = sl->app;
	if (act) {
		if (sl->role == ROLE_FAULT) {
			sl->app = *act;
		} else if (is_default(act)) {
			ours_for(sl->role, &mine);
			rc = real_sigaction(sig, &mine, NULL);
			if (!rc) {
				sl->app = *act;
				sl->ours = true;
			}
		} else {
			rc = real_sigaction(sig, act, NULL);
			if (!rc) {
				sl->app = *act;
				sl->ours = false;
			}
		}
	}
	table_write_end(&saved);
	return rc;
}

/* Before the library's signals are set up, sigaction may be called by a
 * sanitizer runtime initialising itself (ThreadSanitizer does, from the
 * first intercepted call): nothing instrumented may run then, not even
 * the library's lazy binding. */
#if defined(__SANITIZE_THREAD__)
#define UW_NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define UW_NO_TSAN
#endif

UW_NO_TSAN static int next_sigaction(int sig, const struct sigaction *act,
				     struct sigaction *old)
{
	static int (*fn)(int, const struct sigaction *, struct sigaction *);

	if (!fn)
		fn = (int (*)(int, const struct sigaction *, struct sigaction *))
			dlsym(RTLD_NEXT, "sigaction");
	return fn(sig, act, old);
}

/* Reading what the application passed may fault like any other pointer
 * argument: the kernel's EFAULT. */
UW_EXPORT UW_NO_TSAN int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (!atomic_load_explicit(&signals_ready, memory_order_acquire) || sig <= 0 ||
	    sig >= NSIG || slots[sig].role == ROLE_NONE)
		return next_sigaction(sig, act, old);
	return shared_sigaction(sig, act, old);
}

static int shared_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction a, o;
	int rc;

	if (act && uw_copy_from_user(&a, act, sizeof(a))) {
		errno = EFAULT;
		return -1;
	}
	rc = managed_sigaction(sig, act ? &a : NULL, old ? &o : NULL);
	if (!rc && old && uw_copy_to_user(old, &o, sizeof(o))) {
		errno = EFAULT;
		return -1;
	}
	return rc;
}

/* glibc's signal(): BSD semantics, the signal blocked in its handler and
 * calls restarted. */
static sighandler_t set_handler(int sig, sighandler_t h, int flags)
{
	struct sigaction sa, old;

	if (h == SIG_ERR || sig <= 0 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old))
		return SIG_ERR;
	return old.sa_handler;
}

UW_EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	return set_handler(sig, h, SA_RESTART);
}

UW_EXPORT sighandler_t bsd_signal(int sig, sighandler_t h)
{
	return set_handler(sig, h, SA_RESTART);
}

UW_EXPORT sighandler_t sysv_signal(int sig, sighandler_t h)
{
	return set_handler(sig, h, SA_RESETHAND | SA_NODEFER);
}
