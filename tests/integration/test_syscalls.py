"""System-call reduction, measured from outside with strace: 20000 datagrams
of 1316 B to 4 destinations through one unconnected socket (sendto)."""
from conftest import (assert_delivered, need_strace, read_stats, run, sender_summaries,
                      strace_counts, tool)

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
    r = run(args, shim=shim, extra_env=env, strace_out=trace, timeout=120,
            strace_calls="sendto,sendmsg,sendmmsg,write,writev")
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=[1316])
    counts = strace_counts(trace)
    calls = sum(counts.get(c, (0, 0))[0] for c in SEND_CALLS)
    errors = sum(counts.get(c, (0, 0))[1] for c in SEND_CALLS)
    return r, sums, calls, errors, counts


def test_syscall_reduction(receiver_factory, tmp_path):
    """With the shim the send system calls (sendto+sendmsg+sendmmsg, all
    threads) are at most 1/8 of those without, and equal the library's own
    `syscalls` counter."""
    need_strace()
    _, base_sums, base_calls, _, base_counts = traced_run(receiver_factory, tmp_path,
                                                          False, "baseline")
    datagrams = base_sums[0]["sent_total"]
    assert datagrams == 4 * COUNT_PER_DEST
    assert base_calls == datagrams, f"baseline: {base_counts}"

    r, sums, calls, errors, counts = traced_run(receiver_factory, tmp_path, True, "shim")
    assert calls * 8 <= base_calls, (f"{calls} send syscalls with the shim vs {base_calls} "
                                     f"without: less than 8x fewer ({counts})\n{r.describe()}")
    stats = list(read_stats(tmp_path).values())
    assert len(stats) == 1, f"expected one stats file, got {len(stats)}"
    st = stats[0]
    assert st["syscalls"] in (calls, calls - errors), (
        f"library says syscalls={st['syscalls']}, strace counted {calls} send calls "
        f"({errors} failed): {counts}")
    assert st["datagrams_out"] == datagrams, st
