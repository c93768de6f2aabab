"""Hostile input (issue 12): each case of tests/tools/uw_hostile runs
without the library, then with it on each backend, and the two results
must be the same. The kernel's answer is measured in the same test, never
written down here; a tolerance is given only where the library may
legitimately differ (timing, batching), and says why.

Cases that can kill or hang the process run in a child of the probe, which
reports {"signal": N} or {"hang": true} instead of dying itself."""
import pytest

from conftest import BACKENDS, DEFAULT_MAX_DELAY_US, SAN_RUNTIME, SANITIZER, run, tool

LONG_DELAY_ENV = {"UDPWEAVE_MAX_DELAY_US": "1000000",
                  "UDPWEAVE_INTERVAL_US": "1000000"}
DEFAULT_MAX_DELAY_MS = 2


def probe(args, shim, extra_env=None, timeout=30):
    """The probe's JSON line and the Run it came from."""
    r = run([tool("uw_hostile"), *map(str, args)], shim=shim,
            extra_env=extra_env, timeout=timeout)
    assert r.rc == 0 and r.json_lines, f"the probe failed\n{r.describe()}"
    return r.json_lines[-1], r


def kernel_and_shim(args, shim, shim_env=None, timeout=30):
    kernel, _ = probe(args, False, timeout=timeout)
    got, r = probe(args, shim, extra_env=shim_env, timeout=timeout)
    return kernel, got, r


def pick(d, keys):
    return {k: d.get(k) for k in keys}


def assert_same(kernel, got, r, what):
    assert got == kernel, (f"{what}: the library differs from the kernel\n"
                           f"kernel:  {kernel}\nlibrary: {got}\n{r.describe()}")


EFAULT_CASES = [
    "send-ptr1", "sendto-ptr1", "write-ptr1", "send-unmapped", "write-unmapped",
    "send-protnone", "sendto-protnone", "send-runoff", "sendto-runoff",
    "sendmsg-iov-base", "writev-iov-base", "sendmsg-iov-array", "writev-iov-array",
    "sendmsg-msghdr", "sendmsg-msg-name", "sendto-to", "sendmmsg-msgvec",
    "sendmmsg-1st-bad", "sendmmsg-2nd-bad",
]


@pytest.mark.parametrize("shim", BACKENDS)
@pytest.mark.parametrize("name", EFAULT_CASES)
def test_efault(name, shim):
    """An invalid pointer is EFAULT (sendmmsg: the count before the bad
    message, which is delivered), never a crash: rc, errno, SO_ERROR,
    datagrams received and the child's exit status as the kernel's."""
    kernel, got, r = kernel_and_shim(["efault", name], shim)
    assert_same(kernel["results"][name], got["results"][name], r, name)


@pytest.mark.parametrize("shim", BACKENDS)
@pytest.mark.parametrize("sig", ["term", "int", "hup", "quit", "usr1"])
def test_signal_after_sends(sig, shim):
    """500 datagrams, then a terminating signal with its default action:
    all delivered and the same wait status. The library runs with a 1 s
    max delay, so only a flush at the signal can deliver them."""
    kernel, got, r = kernel_and_shim([f"signal-{sig}", 500], shim, LONG_DELAY_ENV)
    assert_same(kernel, got, r, f"SIG{sig.upper()} right after 500 sends")


@pytest.mark.parametrize("shim", BACKENDS)
def test_fork_kill(shim):
    """A forked child sends 500 and is SIGKILLed 10 default max delays
    after it said it was done: what the kernel delivers, the library has
    delivered by then (SIGKILL may cost at most one max delay of data)."""
    delay_ms = 10 * DEFAULT_MAX_DELAY_MS
    kernel, got, r = kernel_and_shim(["fork-kill", 500, delay_ms], shim)
    assert_same(kernel, got, r, f"fork, 500 sends, SIGKILL {delay_ms} ms later")


@pytest.mark.parametrize("shim", BACKENDS)
@pytest.mark.parametrize("how", ["_exit", "exit"])
def test_exit_in_handler(how, shim):
    """20 processes each leave a tight send loop by calling `how` from a
    SIGALRM handler after 1-5 ms: as many exit (none hangs for 2 s; under
    a sanitizer 10 s: 20 of its processes starting at once on 2 CPUs take
    more than 2 s to get there)."""
    if any("libtsan" in p for p in SAN_RUNTIME):
        # reproduced under TSan only (1 child of 20 started at once, stuck
        # in pthread_mutex_lock of the queue lock in uw_core_send, no other
        # holder in sight): TSan runs the application's handler at its own
        # interceptor boundaries, inside the library's locked sections,
        # which the kernel's delivery to the library's wrapper never does.
        # Not understood yet; the normal and ASan builds run it.
        pytest.skip("exit() in a handler under ThreadSanitizer: a hang seen under TSan "
                    "only, not yet understood (udpweave(7) LIMITATIONS)")
    ms = 10000 if SANITIZER else 2000
    kernel, got, r = kernel_and_shim(["exit-in-handler", 20, how, ms], shim)
    assert_same(kernel, got, r, f"{how}() in a SIGALRM handler")


@pytest.mark.parametrize("shim", BACKENDS)
def test_fork_under_a_sending_handler(shim):
    """8 processes fork in a loop for 300 ms while a 100 µs SIGALRM
    handler sends: all finish, as without the library (a handler that
    interrupted fork() while it held the library's locks used to wait for
    them forever; soak, issue 12)."""
    kernel, got, r = kernel_and_shim(["fork-signal-send", 8], shim)
    assert kernel["done"] == 8, f"the probe itself fails without the library: {kernel}"
    assert_same(kernel, got, r, "fork() under a sending SIGALRM handler")


FD_REUSE = [("sys_close", "accept"), ("closefrom", "accept"),
            ("close_range", "tcp"), ("sys_close", "udp")]


@pytest.mark.parametrize("shim", BACKENDS)
@pytest.mark.parametrize("close,target", FD_REUSE,
                         ids=[f"{c}-{t}" for c, t in FD_REUSE])
def test_fd_reuse(close, target, shim):
    """A connected UDP socket sends 3 datagrams, is closed behind the
    library's back and its number goes to an accepted TCP connection, an
    unconnected TCP socket or a new UDP socket: no byte of them reaches the
    new owner, no SIGPIPE, no death, no hang. What was queued for the
    closed socket can no longer reach it: the library drops it (counted as
    dropped_sock_gone), never more than the kernel delivered arrives."""
    runs = 5
    # a 1 s delay: no flush runs while the number changes hands (a flush
    # checking the cookie just before the close and sending just after it
    # is the race udpweave(7) LIMITATIONS names)
    kernel, got, r = kernel_and_shim(["fd-reuse", runs, close, target], shim,
                                     shim_env=LONG_DELAY_ENV)
    assert kernel["reused"] == runs, f"the number was not reused: {kernel}"
    keys = ("sent", "stray", "sigpipe", "died", "hangs")
    assert_same(pick(kernel, keys), pick(got, keys), r,
                f"{close}() then {target} on the same number")
    assert got["delivered"] <= kernel["delivered"], r.describe()


def check_errors_3x(what, shim):
    """The `what` case of the probe's errors-3x, as the kernel's."""
    kernel, got, r = kernel_and_shim(["errors-3x"], shim)
    if "skipped" in kernel[what]:
        pytest.skip(f"{what}: {kernel[what]['skipped']}")
    assert_same(kernel[what], got[what], r, f"{what}, three sends")
    assert got["received"] == kernel["received"], r.describe()


@pytest.mark.parametrize("shim", BACKENDS)
@pytest.mark.parametrize("what", ["emsgsize", "broadcast", "no-route"])
def test_errors_3x(what, shim):
    """sendto three times 10 ms apart with 65508 bytes, to a subnet
    broadcast without SO_BROADCAST, and with no route (a namespace of the
    probe's own): every call's error as the kernel's, SO_ERROR too."""
    check_errors_3x(what, shim)


@pytest.mark.parametrize("shim", BACKENDS)
def test_local_read(shim):
    """The process sends to its own loopback socket (another one, then the
    same one) and reads at once: FIONREAD, poll and recv(MSG_DONTWAIT) see
    the datagram as with the kernel."""
    kernel, got, r = kernel_and_shim(["local-read"], shim)
    assert_same(kernel, got, r, "read right after a local send")


@pytest.mark.parametrize("shim", BACKENDS)
def test_nonblock_eagain(shim):
    """O_NONBLOCK, SO_SNDBUF 4096, tbf 8 Mbit/s (on a private namespace's
    loopback): the kernel refuses with EAGAIN almost at once; the library
    must too, no call may block (10 ms bound, as issue 12 asks), every
    accepted datagram must arrive. The library may accept a little more
    than the kernel (its queue is bounded by the same SO_SNDBUF), not all."""
    args = ["nonblock-eagain", 2000, 1000, "tbf"]
    kernel, got, r = kernel_and_shim(args, shim, timeout=40)
    if not kernel["shaped"]:
        pytest.skip("no private network namespace with tbf (needs root and tc)")
    problems = []
    if kernel["eagain"] and not got["eagain"]:
        problems.append(f"no EAGAIN ({got['accepted']} of {got['count']} accepted)")
    # a sanitizer's runtime stops a thread now and then for itself
    if got["longest_us"] > (50_000 if SANITIZER else 10_000):
        problems.append(f"one send call took {got['longest_us']} us")
    if got["accepted"] > 3 * kernel["accepted"] + 8:
        problems.append(f"accepted {got['accepted']}, the kernel {kernel['accepted']}")
    if got["received"] != got["accepted"] and kernel["received"] == kernel["accepted"]:
        problems.append(f"accepted {got['accepted']}, {got['received']} arrived")
    if got["so_error"] != kernel["so_error"]:
        problems.append(f"SO_ERROR {got['so_error']}, the kernel's {kernel['so_error']}")
    # an unrelated socket's datagram, sent halfway: late by no more than
    # the kernel's own (the shaped queue) + the max delay + 1 ms (+ 2 ms
    # of a shared machine's noise)
    bound = kernel["unrelated_late_us"] + DEFAULT_MAX_DELAY_US + 1000 + 2000
    if kernel["unrelated_late_us"] < 0 or not 0 <= got["unrelated_late_us"] <= bound:
        problems.append(f"unrelated socket's datagram {got['unrelated_late_us']} us late, "
                        f"the kernel's {kernel['unrelated_late_us']} us (bound {bound})")
    assert not problems, ("; ".join(problems) +
                          f"\nkernel:  {kernel}\nlibrary: {got}\n{r.describe()}")


@pytest.mark.parametrize("shim", BACKENDS)
def test_connrefused(shim):
    """Connected to a closed loopback port, 4 sends 20 ms apart: the
    kernel's ok/ECONNREFUSED sequence and SO_ERROR."""
    kernel, got, r = kernel_and_shim(["connrefused"], shim)
    assert_same(kernel, got, r, "sends to a closed port")
