"""Configuration, statistics and the passthrough modes (design.md 3.10, 4):
bad values give one line on stderr and passthrough, UDPWEAVE_DISABLE=1 makes
the library inert, UDPWEAVE_STATS writes counters that match what the
receiver saw, and UDPWEAVE_BACKEND=passthrough makes one call per datagram."""
import pytest

from conftest import (SANITIZER, assert_delivered, need_strace, read_stats, run,
                      sender_summaries, strace_counts, tool, udpweave_lines)

SIZES = [1316, 1316, 1316, 1316, 200, 28, 1316, 9000]
SEND_CALLS = ("sendto", "sendmsg", "sendmmsg")


def sender(rx, *extra, count=500):
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES)),
            *extra]
    for a in rx.addrs():
        args += ["--dest", a]
    return args


def send_syscalls(path):
    counts = strace_counts(path)
    return sum(counts.get(c, (0, 0))[0] for c in SEND_CALLS), counts


@pytest.mark.parametrize("var,value", [
    ("UDPWEAVE_MAX_DELAY_US", "banana"),
    ("UDPWEAVE_MAX_DELAY_US", "-1"),
    ("UDPWEAVE_MAX_DELAY_US", "12abc"),
    ("UDPWEAVE_BACKEND", "nonsense"),
    ("UDPWEAVE_ARENA_KB", "lots"),
    ("UDPWEAVE_LOG", "chatty"),
    ("UDPWEAVE_RULES", "10.0.0.0/8:jitter=1ms;10.0.0.5:5004:jitter=fast"),
])
def test_bad_config(receiver_factory, tmp_path, var, value):
    """A bad value: exactly one stderr line starting with "udpweave:", the
    program is not disturbed, every datagram is delivered, and the library
    runs in passthrough (strace: one sendto per datagram)."""
    need_strace()
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0"])
    trace = tmp_path / "strace.txt"
    r = run(sender(rx, "--mode", "sendto"), shim=True, extra_env={var: value},
            strace_out=trace)
    sums = sender_summaries(r)
    report = rx.finish()
    lines = udpweave_lines(r.stderr)
    assert len(lines) == 1, (f"expected exactly one 'udpweave:' line on stderr for "
                             f"{var}={value}\n{r.describe()}")
    if not SANITIZER:
        assert r.stderr.strip().splitlines() == lines, (
            f"stderr has more than the one udpweave line\n{r.describe()}")
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
    n, counts = send_syscalls(trace)
    datagrams = sums[0]["sent_total"]
    assert n >= datagrams, (f"{var}={value}: {n} send syscalls for {datagrams} datagrams: "
                            f"the library batched instead of running in passthrough "
                            f"({counts})\n{r.describe()}")


def test_disable(receiver_factory, tmp_path):
    """UDPWEAVE_DISABLE=1: everything delivered, nothing on stderr, no stats
    file, and no batching (one sendto per datagram)."""
    need_strace()
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0"])
    trace = tmp_path / "strace.txt"
    r = run(sender(rx, "--mode", "sendto"), shim=True,
            extra_env={"UDPWEAVE_DISABLE": "1",
                       "UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")},
            strace_out=trace)
    sums = sender_summaries(r)
    report = rx.finish()
    assert not udpweave_lines(r.stderr), r.describe()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
    assert read_stats(tmp_path) == {}, "UDPWEAVE_DISABLE=1 still wrote a stats file"
    n, counts = send_syscalls(trace)
    assert n == sums[0]["sent_total"], (f"UDPWEAVE_DISABLE=1: {n} send syscalls for "
                                        f"{sums[0]['sent_total']} datagrams ({counts})")


INT_KEYS = ["datagrams_in", "bytes_in", "datagrams_out", "bytes_out", "datagrams_dropped",
            "syscalls", "batches", "gso_runs", "segments_max", "fallbacks_gso",
            "async_errors"]


@pytest.mark.parametrize("mode,extra", [
    pytest.param("mixed", ("--connected",), id="mixed-connected"),
    pytest.param("sendmmsg", (), id="sendmmsg-unconnected"),
])
def test_stats(receiver_factory, tmp_path, mode, extra):
    """UDPWEAVE_STATS=<dir>/stats-%p.json: one JSON file named with the pid,
    with the documented keys; datagrams_in == datagrams_out == what the
    receiver counted (bytes likewise), nothing dropped, fewer syscalls than
    datagrams."""
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0", "[::1]:0"])
    r = run(sender(rx, "--mode", mode, *extra, count=1000), shim=True,
            extra_env={"UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")})
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
    stats = read_stats(tmp_path)
    pid = sums[0]["pid"]
    assert list(stats) == [str(tmp_path / f"stats-{pid}.json")], (
        f"expected one stats file for pid {pid}, found {list(stats)}\n{r.describe()}")
    st = next(iter(stats.values()))
    for key in INT_KEYS:
        assert isinstance(st.get(key), int) and not isinstance(st.get(key), bool), (
            f"stats key {key!r} missing or not an integer: {st}")
    assert isinstance(st.get("backend"), str) and st["backend"] == "auto", st
    assert st["datagrams_in"] == st["datagrams_out"] == report["datagrams"], st
    assert st["bytes_in"] == st["bytes_out"] == report["bytes"], st
    assert st["datagrams_dropped"] == 0, st
    assert 0 < st["syscalls"] < st["datagrams_out"], st
    assert 0 < st["batches"] <= st["syscalls"], st
    assert st["gso_runs"] > 0 and st["segments_max"] > 1, st


def test_passthrough_backend(receiver_factory, tmp_path):
    """UDPWEAVE_BACKEND=passthrough: every datagram delivered, one send
    system call per datagram, stats say passthrough."""
    need_strace()
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0"])
    trace = tmp_path / "strace.txt"
    r = run(sender(rx, "--mode", "sendto", count=2000), shim=True,
            extra_env={"UDPWEAVE_BACKEND": "passthrough",
                       "UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")},
            strace_out=trace)
    sums = sender_summaries(r)
    report = rx.finish()
    assert not udpweave_lines(r.stderr), r.describe()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
    n, counts = send_syscalls(trace)
    datagrams = sums[0]["sent_total"]
    assert datagrams <= n <= datagrams * 1.01 + 10, (
        f"passthrough: {n} send syscalls for {datagrams} datagrams ({counts})")
    for st in read_stats(tmp_path).values():
        assert st.get("backend") == "passthrough", st
        assert st["datagrams_out"] == datagrams, st


@pytest.mark.parametrize("mode,extra", [
    pytest.param("mixed", ("--connected",), id="mixed-connected"),
    pytest.param("mixed", (), id="mixed-unconnected"),
])
def test_passthrough_backend_all_paths(receiver_factory, mode, extra):
    """UDPWEAVE_BACKEND=passthrough through every send path: delivered,
    intact, in order."""
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0"])
    r = run(sender(rx, "--mode", mode, *extra), shim=True,
            extra_env={"UDPWEAVE_BACKEND": "passthrough"})
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
