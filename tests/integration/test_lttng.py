"""LTTng-UST tracepoints of provider "udpweave": a real lttng-sessiond, a
session enabling udpweave:*, a sender under the shim; babeltrace2 reads
the trace and the event counts must match the library's stats JSON.

The provider is its own shared object (dynamic linkage): the library
links nothing of lttng-ust, and a process loads the provider (and with it
liblttng-ust, its threads and its statedump) only when a session daemon
is reachable or UDPWEAVE_TRACE=1; never with UDPWEAVE_TRACE=0."""
import collections
import json
import os
import shutil
import socket
import subprocess
import textwrap
import time

import pytest

from conftest import SHIM_LIB, child_env, require_shim, tool

PROVIDER = os.path.join(os.path.dirname(SHIM_LIB), "libudpweave-lttng.so")

PY = "/usr/bin/python3"


def _lttng(*args, check=True):
    return subprocess.run(["lttng", *args], capture_output=True, text=True, timeout=60,
                          check=check)


def require_provider():
    require_shim()
    if not os.path.exists(PROVIDER):
        pytest.skip(f"no {PROVIDER}: the library was built without LTTng-UST "
                    "(liblttng-ust-dev missing, or LTTNG=0)")


PROBE = """
import os, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    s.sendto(b"x" * 100, ("127.0.0.1", 9))
time.sleep(0.3)
me = f"/proc/{os.getpid()}"
maps = open(me + "/maps").read()
threads = [open(f"{me}/task/{t}/comm").read().strip() for t in os.listdir(me + "/task")]
print(int("/liblttng-ust.so" in maps), int("libudpweave-lttng.so" in maps),
      sum(t.endswith("-ust") for t in threads))
"""


def loaded(extra):
    """(liblttng-ust mapped, provider mapped, lttng-ust listener threads) of
    a process under the shim that sent UDP."""
    cp = subprocess.run([PY, "-c", PROBE], capture_output=True, text=True, timeout=60,
                        env=child_env(shim=True, extra=extra))
    assert cp.returncode == 0, cp.stderr
    return tuple(int(x) for x in cp.stdout.split())


def test_library_links_no_lttng():
    require_provider()
    for lib in (SHIM_LIB,):
        ldd = subprocess.run(["ldd", lib], capture_output=True, text=True, timeout=60)
        assert ldd.returncode == 0, ldd.stderr
        assert "lttng" not in ldd.stdout, ldd.stdout
    ldd = subprocess.run(["ldd", PROVIDER], capture_output=True, text=True, timeout=60)
    assert "liblttng-ust.so" in ldd.stdout, ldd.stdout


def test_without_a_session_daemon_nothing_is_loaded(tmp_path):
    """No session daemon reachable: no liblttng-ust, no provider, no
    listener thread (so no statedump); UDPWEAVE_TRACE=1 loads them anyway
    (which shows the check sees them); the library's own message says so."""
    require_provider()
    if subprocess.run(["pgrep", "-x", "lttng-sessiond"], capture_output=True).returncode == 0:
        pytest.skip("a session daemon is running (started outside this test)")
    home = {"HOME": str(tmp_path), "LTTNG_HOME": str(tmp_path)}
    assert loaded(home) == (0, 0, 0)
    assert loaded(dict(home, UDPWEAVE_TRACE="auto")) == (0, 0, 0)
    ust, prov, threads = loaded(dict(home, UDPWEAVE_TRACE="1", UDPWEAVE_LOG="info"))
    assert (ust, prov) == (1, 1) and threads >= 1, (ust, prov, threads)


@pytest.fixture(scope="module")
def sessiond():
    for prog in ("lttng", "lttng-sessiond", "babeltrace2"):
        if not shutil.which(prog):
            pytest.skip(f"{prog} not installed (Debian: lttng-tools, babeltrace2)")
    require_provider()
    started = None
    if subprocess.run(["pgrep", "-x", "lttng-sessiond"], capture_output=True).returncode:
        r = subprocess.run(["lttng-sessiond", "--daemonize"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode:
            pytest.skip(f"cannot start lttng-sessiond: {r.stderr.strip()}")
        started = subprocess.run(["pgrep", "-nx", "lttng-sessiond"], capture_output=True,
                                 text=True).stdout.strip()
    yield
    if started:
        subprocess.run(["kill", started])
        for _ in range(100):        # gone, its sockets removed
            if not os.path.exists(f"/proc/{started}"):
                break
            time.sleep(0.05)


def _traced(tmp_path, code):
    """Run a Python sender under the shim inside a tracing session; returns
    (event counts by name, events, stats)."""
    name = f"uwtest-{os.getpid()}-{time.monotonic_ns()}"
    out = tmp_path / "trace"
    _lttng("create", name, f"--output={out}")
    try:
        _lttng("enable-event", "-u", "-s", name, "udpweave:*")
        # the session sees every process of this user: keep the sender's own
        _lttng("add-context", "-u", "-s", name, "-t", "vpid")
        _lttng("start", name)
        stats = tmp_path / "stats.json"
        cp = subprocess.run([PY, "-c", "import os; print(os.getpid(), flush=True)\n" +
                             textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=60, env=child_env(shim=True, extra={
                                "UDPWEAVE_STATS": str(stats)}))
        assert cp.returncode == 0, cp.stderr
        pid = int(cp.stdout.split()[0])
        _lttng("stop", name)
    finally:
        _lttng("destroy", name, check=False)
    bt = subprocess.run(["babeltrace2", str(out)], capture_output=True, text=True, timeout=60)
    assert bt.returncode == 0, bt.stderr
    events = [l for l in bt.stdout.splitlines()
              if " udpweave:" in l and f"vpid = {pid} }}" in l]
    counts = collections.Counter(l.split(" udpweave:")[1].split(":")[0] for l in events)
    return counts, events, json.loads(stats.read_text())


def test_event_counts_match_the_stats(sessiond, tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    counts, events, st = _traced(tmp_path, f"""
        import socket, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(700):
            s.sendto(b"x" * 1316, ("127.0.0.1", {port}))
            if i % 100 == 99:
                time.sleep(0.005)          # several flushes
        # a connected socket sending fast (queued, after its first sends,
        # which the kernel judges) whose receiver goes away: ICMP ->
        # ECONNREFUSED at a flush, reported on a later send
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.connect(peer.getsockname())
        refused = 0
        for i in range(400):
            if i == 100:
                peer.close()
            try:
                c.send(b"y" * 100)
            except ConnectionRefusedError:
                refused += 1
            time.sleep(0.0001)
        assert refused >= 1, "no ECONNREFUSED reported"
    """)
    rx.close()
    assert counts["config"] == 1
    # the kernel's own sends (a socket's first) are not enqueued
    assert counts["enqueue"] == st["datagrams_in"] - st["sync_datagrams"] > 690
    assert counts["flush"] == st["batches"] >= 2
    assert counts["backend_send"] == st["syscalls"]
    assert counts["async_error"] == st["async_errors"] >= 1
    assert counts["fallback"] == st["fallbacks_gso"] + st["gso_split_mtu"]
    assert any(f'dest = "127.0.0.1:{port}", len = 1316' in e for e in events)
    assert any("err = 111" in e for e in events)     # ECONNREFUSED
    # each flush event's reason, as many as the stats count for it
    for why, n in st["flushes_by_reason"].items():
        got = sum(f'reason = "{why}"' in e for e in events if " udpweave:flush:" in e)
        assert got == n, (why, got, st["flushes_by_reason"])


def test_no_session_no_events_and_same_delivery(sessiond, tmp_path):
    """Without a tracing session the library behaves the same (tracepoints
    are disabled: one predicted branch each)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    port = rx.getsockname()[1]
    r = subprocess.run([tool("uw_sender"), "--dest", f"127.0.0.1:{port}", "--count", "300"],
                       capture_output=True, text=True, timeout=60, env=child_env(shim=True))
    assert r.returncode == 0, r.stderr
    got = 0
    try:
        while got < 300:
            rx.recv(2048)
            got += 1
    except socket.timeout:
        pass
    rx.close()
    assert got == 300


def test_a_session_daemon_loads_the_provider(sessiond):
    """A reachable daemon: the provider and liblttng-ust are loaded
    (auto, the default); UDPWEAVE_TRACE=0 keeps them out."""
    ust, prov, threads = loaded({})
    assert (ust, prov) == (1, 1) and threads >= 1, (ust, prov, threads)
    assert loaded({"UDPWEAVE_TRACE": "0"}) == (0, 0, 0)
