"""Every send path, IPv4 and IPv6, connected and not, with and without the
shim: the receiver must see the same datagrams (count, size, every byte)
in per-flow order (design.md 3.2, 3.3)."""
import pytest

from conftest import (BACKENDS, DEFAULT_MAX_DELAY_US, SHIM_BACKENDS, assert_delay_bound,
                      assert_delivered, run, sender_summaries, tool)

SIZES_V4 = [28, 1316, 1316, 1316, 1316, 200, 1472, 9000, 1316, 1316, 65507, 1000, 1316]
SIZES_V6 = [28, 1316, 1316, 1316, 1316, 200, 1452, 9000, 1316, 1316, 65527, 1000, 1316]
BIND = {"v4": "127.0.0.1:0", "v6": "[::1]:0"}

CONNECTED_MODES = ["send", "sendto", "sendmsg", "sendmmsg", "write", "writev", "mixed"]
UNCONNECTED_MODES = ["sendto", "sendmsg", "sendmmsg", "mixed"]
PATHS = ([pytest.param(m, True, id=f"{m}-connected") for m in CONNECTED_MODES]
         + [pytest.param(m, False, id=f"{m}-unconnected") for m in UNCONNECTED_MODES])
SHIM = SHIM_BACKENDS


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("mode,connected", PATHS)
def test_send_path(receiver_factory, mode, connected, family, shim):
    """300 datagrams per flow to 3 ports through one send path: all arrive
    once, intact, in order, with their sizes (28 B .. 64 KiB)."""
    sizes = SIZES_V4 if family == "v4" else SIZES_V6
    rx = receiver_factory(binds=[BIND[family]] * 3)
    args = [tool("uw_sender"), "--mode", mode, "--count", 300,
            "--sizes", ",".join(map(str, sizes))]
    for a in rx.addrs():
        args += ["--dest", a]
    if connected:
        args.append("--connected")
    r = run(args, shim=shim)
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=sizes)
    assert report["datagrams"] == 900
    if shim:
        assert_delay_bound(report, DEFAULT_MAX_DELAY_US, r.describe())


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("mode", CONNECTED_MODES)
def test_zero_length_datagrams(receiver_factory, mode, shim):
    """Zero-length datagrams (one after every 50th) arrive as zero-length
    datagrams, as many as the kernel sends.  Note the kernel's rule: send,
    sendto, sendmsg, sendmmsg and write of 0 bytes send an empty datagram,
    writev of 0 bytes sends nothing (counted apart by the sender)."""
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0"])
    args = [tool("uw_sender"), "--mode", mode, "--count", 400, "--connected",
            "--zero-len", "--sizes", "28,1316,700"]
    for a in rx.addrs():
        args += ["--dest", a]
    r = run(args, shim=shim)
    sums = sender_summaries(r)
    report = rx.finish()
    zero = sum(s["zero_len_total"] for s in sums)
    writev_zero = sum(s["zero_len_writev_total"] for s in sums)
    assert zero + writev_zero > 0, "the sender sent no zero-length datagram"
    assert_delivered(report, sums, r.describe() + (
        f"\nzero-length sends: {zero} that the kernel turns into empty datagrams, "
        f"{writev_zero} writev() calls of 0 bytes that it does not"),
        ports=rx.ports, zero_len=zero)


THREAD_SIZES = [1316, 1316, 1316, 188, 1316, 7 * 188, 1316, 28]


def run_threads(receiver_factory, shim, sharing, extra=()):
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0", "[::1]:0"])
    args = [tool("uw_sender"), "--mode", "mixed", "--threads", 8, "--count", 500,
            "--sizes", ",".join(map(str, THREAD_SIZES)), *sharing, *extra]
    for a in rx.addrs():
        args += ["--dest", a]
    r = run(args, shim=shim)
    sums = sender_summaries(r)
    report = rx.finish()
    assert len(sums[0]["flows"]) == 24
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=THREAD_SIZES)
    return r, report


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("sharing", [
    pytest.param(("--shared-socket",), id="shared-unconnected"),
    pytest.param(("--shared-socket", "--connected"), id="shared-connected"),
    pytest.param((), id="own-unconnected"),
    pytest.param(("--connected",), id="own-connected"),
])
def test_threads(receiver_factory, sharing, shim):
    """8 threads flat out, each with its own flows, on shared sockets or on
    their own sockets, all send paths mixed: every flow complete and in
    order.  (No delay bound here: 8 CPU-bound threads on a 2-core machine
    delay datagrams by tens of ms between stamp and send even without the
    library; see test_threads_paced for the bound.)"""
    run_threads(receiver_factory, shim, sharing)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sharing", [
    pytest.param(("--shared-socket",), id="shared-unconnected"),
    pytest.param(("--connected",), id="own-connected"),
])
def test_threads_paced(receiver_factory, sharing, backend):
    """8 paced threads (1500 datagrams/s each) under the shim: complete, in
    order, and no datagram held much beyond the max delay."""
    r, report = run_threads(receiver_factory, backend, sharing, extra=("--rate-pps", 1500))
    assert_delay_bound(report, DEFAULT_MAX_DELAY_US, r.describe())


@pytest.mark.parametrize("shim", SHIM)
def test_paced_stream(receiver_factory, shim):
    """A paced stream (2000 datagrams/s for 1 s, like a real-time server):
    complete, in order, and never held longer than the max delay."""
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0"])
    args = [tool("uw_sender"), "--mode", "mixed", "--connected", "--count", 1000,
            "--rate-pps", 2000, "--sizes", "1316,1316,1316,1316,1316,1316,1316,500"]
    for a in rx.addrs():
        args += ["--dest", a]
    r = run(args, shim=shim)
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports)
    if shim:
        assert_delay_bound(report, DEFAULT_MAX_DELAY_US, r.describe())


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("connected", [pytest.param(True, id="connected"),
                                       pytest.param(False, id="unconnected")])
def test_socket_options(receiver_factory, family, connected, shim):
    """Options set on the application's socket apply to what is sent for it
    (design.md 3.9): TOS / traffic class 0x28, TTL / hop limit 7, and the
    bound source address (127.0.0.2 for IPv4) and port, as the receiver
    sees them on every datagram of every flow."""
    rx = receiver_factory(binds=[BIND[family]] * 2)
    src = "127.0.0.2" if family == "v4" else "::1"
    args = [tool("uw_sender"), "--mode", "mixed", "--count", 300, "--tos", "0x28",
            "--ttl", 7, "--src", src, "--sizes", "1316,1316,1316,200"]
    for a in rx.addrs():
        args += ["--dest", a]
    if connected:
        args.append("--connected")
    r = run(args, shim=shim)
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports)
    problems = []
    for fid, f in sums[0]["flows"].items():
        got = report["flows"][fid]
        for key, want in (("tos", 0x28), ("ttl", 7), ("src", f["src"]),
                          ("tos_mismatch", 0), ("ttl_mismatch", 0), ("src_mismatch", 0)):
            if got[key] != want:
                problems.append(f"flow {fid}: {key}={got[key]!r}, expected {want!r}")
        host = f["src"].rsplit(":", 1)[0].strip("[]")
        if host != src:
            problems.append(f"flow {fid}: sender socket bound to {f['src']}, not {src}")
    assert not problems, r.describe() + "\n" + "\n".join(problems)


@pytest.mark.parametrize("shim", SHIM)
@pytest.mark.parametrize("connected", [pytest.param(True, id="connected"),
                                       pytest.param(False, id="unconnected")])
def test_nonblocking_sockets(receiver_factory, connected, shim):
    """O_NONBLOCK sockets sending flat out: no EAGAIN where the kernel gives
    none (loopback frees send-buffer space at once), everything delivered
    (design.md 3.7)."""
    sizes = [1316, 1316, 1316, 1316, 1316, 1316, 9000, 200]
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0"])
    args = [tool("uw_sender"), "--mode", "mixed", "--count", 3000, "--nonblock",
            "--sizes", ",".join(map(str, sizes))]
    for a in rx.addrs():
        args += ["--dest", a]
    if connected:
        args.append("--connected")
    r = run(args, shim=shim)
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=sizes)
