"""System-call reduction, measured from outside with strace: 20000 datagrams
of 1316 B to 4 destinations through one unconnected socket (sendto)."""
import pytest

from conftest import (BACKENDS, assert_delivered, need_strace, read_stats, run,
                      sender_summaries, strace_counts, tool)

SEND_CALLS = ("sendto", "sendmsg", "sendmmsg")
COUNT_PER_DEST = 5000


def traced_run(receiver_factory, tmp_path, shim, name):
    rx = receiver_factory(binds=["127.0.0.1:0"] * 4)
    args = [tool("uw_sender"), "--mode", "sendto", "--count", COUNT_PER_DEST,
            "--sizes", "1316"]
    for a in rx.addrs():
        args += ["--dest", a]
    trace = tmp_path / f"strace-{name}.txt"
    env = {"UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")} if shim else None
    if shim == "uring":
        # strace makes every call many times slower: the process's send
        # rate the step-aside rule sees (udpweave(7)) is then not the
        # program's, and under a sanitizer it falls below what pays
        env["UDPWEAVE_STEP_ASIDE"] = "0"
    r = run(args, shim=shim, extra_env=env, strace_out=trace, timeout=120,
            strace_calls="sendto,sendmsg,sendmmsg,write,writev,io_uring_enter")
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=[1316])
    counts = strace_counts(trace)
    calls = sum(counts.get(c, (0, 0))[0] for c in SEND_CALLS)
    errors = sum(counts.get(c, (0, 0))[1] for c in SEND_CALLS)
    # io_uring_enter's fd is the ring (anon_inode:[io_uring]), not a socket
    enters = strace_counts(trace, protocols=("anon_inode",)).get("io_uring_enter", (0, 0))
    return r, sums, calls + enters[0], errors + enters[1], counts, enters[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_syscall_reduction(receiver_factory, tmp_path, backend):
    """With the shim the send system calls (sendto+sendmsg+sendmmsg on UDP
    sockets, and io_uring_enter for the uring backend; all threads) are at
    most 1/8 of those without, and equal the library's own `syscalls`
    counter. The uring backend makes one io_uring_enter per flush."""
    need_strace()
    _, base_sums, base_calls, _, base_counts, _ = traced_run(receiver_factory, tmp_path,
                                                             False, "baseline")
    datagrams = base_sums[0]["sent_total"]
    assert datagrams == 4 * COUNT_PER_DEST
    assert base_calls == datagrams, f"baseline: {base_counts}"

    r, sums, calls, errors, counts, enters = traced_run(receiver_factory, tmp_path, backend,
                                                        "shim")
    assert calls * 8 <= base_calls, (f"{calls} send syscalls with the shim vs {base_calls} "
                                     f"without: less than 8x fewer ({counts})\n{r.describe()}")
    stats = list(read_stats(tmp_path).values())
    assert len(stats) == 1, f"expected one stats file, got {len(stats)}"
    st = stats[0]
    # the library's sends and those it left to the kernel to judge
    assert st["syscalls"] + st["sync_calls"] in (calls, calls - errors), (
        f"library says syscalls={st['syscalls']}, strace counted {calls} send calls "
        f"({errors} failed): {counts}, io_uring_enter {enters}")
    assert st["datagrams_out"] == datagrams, st
    if backend == "uring":
        u = st["backend_counters"]["uring"]
        assert enters == u["io_uring_enter_calls"] == st["batches"] > 0, (
            f"io_uring_enter: strace {enters}, library {u['io_uring_enter_calls']}, "
            f"flushes {st['batches']}\n{st}")
        assert calls == enters + st["sync_calls"], (
            f"send calls on UDP sockets besides io_uring_enter and the sync ones: {counts}")
    else:
        assert enters == 0, counts
