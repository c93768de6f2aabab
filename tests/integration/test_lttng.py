"""LTTng-UST tracepoints of provider "udpweave": a real lttng-sessiond, a
session enabling udpweave:*, a sender under the shim; babeltrace2 reads
the trace and the event counts must match the library's stats JSON."""
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

PY = "/usr/bin/python3"


def _lttng(*args, check=True):
    return subprocess.run(["lttng", *args], capture_output=True, text=True, timeout=60,
                          check=check)


@pytest.fixture(scope="module")
def sessiond():
    for prog in ("lttng", "lttng-sessiond", "babeltrace2"):
        if not shutil.which(prog):
            pytest.skip(f"{prog} not installed (Debian: lttng-tools, babeltrace2)")
    require_shim()
    ldd = subprocess.run(["ldd", SHIM_LIB], capture_output=True, text=True).stdout
    if "liblttng-ust" not in ldd:
        pytest.skip(f"{SHIM_LIB} was built without LTTng-UST (liblttng-ust-dev missing)")
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
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    counts, events, st = _traced(tmp_path, f"""
        import socket, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(700):
            s.sendto(b"x" * 1316, ("127.0.0.1", {port}))
            if i % 100 == 99:
                time.sleep(0.005)          # several flushes
        # a connected socket to a closed port: ICMP -> ECONNREFUSED at a
        # flush, reported on a later send
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.connect(("127.0.0.1", {closed_port}))
        refused = 0
        for i in range(40):
            try:
                c.send(b"y" * 100)
            except ConnectionRefusedError:
                refused += 1
            time.sleep(0.005)
        assert refused >= 1, "no ECONNREFUSED reported"
    """)
    rx.close()
    assert counts["config"] == 1
    assert counts["enqueue"] == st["datagrams_in"] > 700
    assert counts["flush"] == st["batches"] >= 2
    assert counts["backend_send"] == st["syscalls"]
    assert counts["async_error"] == st["async_errors"] >= 1
    assert counts["fallback"] == st["fallbacks_gso"] + st["gso_split_mtu"]
    assert any(f'dest = "127.0.0.1:{port}", len = 1316' in e for e in events)
    assert any("err = 111" in e for e in events)     # ECONNREFUSED
    assert any('reason = "deadline"' in e or 'reason = "exit"' in e for e in events)


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
