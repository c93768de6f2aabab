"""Nothing queued is lost when the process ends or changes image right after
its last send (design.md 3.5).  The shim runs with a 1 s max delay and flush
interval, far longer than these programs live, so only the exit-path flush
can deliver the tail."""
import pytest

from conftest import (SHIM_BACKENDS, assert_delay_bound, assert_delivered, run, sender_summaries,
                      tool, udpweave_lines)

LONG_DELAY_US = 1_000_000
LONG_DELAY_ENV = {"UDPWEAVE_MAX_DELAY_US": str(LONG_DELAY_US),
                  "UDPWEAVE_INTERVAL_US": str(LONG_DELAY_US)}
SIZES = [1316, 1316, 1316, 1316, 1316, 1316, 1316, 188, 28, 9000]
SHIM = SHIM_BACKENDS


def sender_args(rx, *extra):
    args = [tool("uw_sender"), "--count", 400, "--sizes", ",".join(map(str, SIZES)),
            *extra]
    for a in rx.addrs():
        args += ["--dest", a]
    return args


def check_config_accepted(r, shim):
    if shim:
        assert not udpweave_lines(r.stderr), (
            "the library refused the test's configuration, so this test would "
            f"not exercise the exit flush\n{r.describe()}")


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("how,mode,extra", [
    pytest.param("return", "mixed", ("--connected",), id="return-from-main"),
    pytest.param("exit", "sendto", (), id="exit"),
    pytest.param("_exit", "mixed", ("--connected",), id="_exit"),
    pytest.param("_Exit", "sendmmsg", (), id="_Exit"),
    pytest.param("execve", "mixed", ("--connected",), id="execve-bin-true"),
    pytest.param("thread-exit", "mixed", (), id="exit-from-second-thread"),
])
def test_exit_right_after_send(receiver_factory, how, mode, extra, shim):
    """The process leaves right after its last send (return from main,
    exit, _exit, _Exit, execve of /bin/true, exit() called by a second
    thread while main waits in pthread_join): every datagram arrives."""
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0"])
    r = run(sender_args(rx, "--mode", mode, "--exit-how", how, *extra), shim=shim,
            extra_env=LONG_DELAY_ENV if shim else None)
    sums = sender_summaries(r)
    report = rx.finish()
    check_config_accepted(r, shim)
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
    if shim:
        assert_delay_bound(report, LONG_DELAY_US, r.describe())


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("extra", [
    pytest.param(("--connected", "--mode", "mixed"), id="connected-mixed"),
    pytest.param(("--mode", "mixed"), id="unconnected-mixed"),
    pytest.param(("--mode", "sendmmsg", "--threads", "2", "--shared-socket"), id="sendmmsg-2-threads"),
])
def test_fork_child_exits(receiver_factory, extra, shim):
    """Parent sends, forks; the child sends on the inherited sockets and
    _exit(0)s right after its last send; the parent waits and sends again.
    All datagrams of all three phases arrive, and on each destination the
    phases arrive in the order they were sent (parent before the fork,
    child, parent after): the parent flushed before fork, the child at
    _exit."""
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0", "[::1]:0"])
    r = run(sender_args(rx, "--fork-exit", *extra), shim=shim,
            extra_env=LONG_DELAY_ENV if shim else None)
    sums = sender_summaries(r)
    report = rx.finish()
    check_config_accepted(r, shim)
    assert sorted(s["proc"] for s in sums) == [0, 1, 2], r.describe()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)

    # order of the phases per destination (same socket, same destination)
    flows = report["flows"]
    threads = 2 if "--threads" in extra else 1
    problems = []
    for t in range(threads):
        for d in range(len(rx.ports)):
            before, child, after = (flows[str(p * 10000 + t * 100 + d)] for p in (0, 1, 2))
            if not before["last_arrival"] < child["first_arrival"]:
                problems.append(f"dest {d} thread {t}: a child datagram arrived before "
                                "the parent's pre-fork datagrams were all in")
            if not child["last_arrival"] < after["first_arrival"]:
                problems.append(f"dest {d} thread {t}: a parent post-fork datagram "
                                "arrived before the child's were all in")
    assert not problems, r.describe() + "\n" + "\n".join(problems)
    if shim:
        assert_delay_bound(report, LONG_DELAY_US, r.describe())


@pytest.mark.parametrize("shim", SHIM)
def test_close_then_exit(receiver_factory, shim):
    """Sockets closed right after the last send, then a normal exit: all
    datagrams arrive (close flushes what the socket queued)."""
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0"])
    r = run(sender_args(rx, "--mode", "mixed", "--connected", "--close", "--exit-how", "_exit"),
            shim=shim, extra_env=LONG_DELAY_ENV if shim else None)
    sums = sender_summaries(r)
    report = rx.finish()
    check_config_accepted(r, shim)
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
