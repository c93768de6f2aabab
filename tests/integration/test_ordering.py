"""A message on another socket never overtakes the datagrams queued before
it: a sender under the shim (with a 1 s max delay, so only the ordering
rule can send them early) queues UDP datagrams, then writes on a TCP
connection or a Unix socket; when the message arrives, every datagram must
already be in the receiver's UDP socket. Writes to pipes and files do not
flush (they are not messages to a peer)."""
import json
import os
import socket
import subprocess
import textwrap

import pytest

from conftest import BACKENDS, assert_backend_used, child_env, require_shim

PY = "/usr/bin/python3"
N = 50


def _udp_rx():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    return rx


def _queued_in(rx):
    n = 0
    while True:
        try:
            rx.recv(2048)
            n += 1
        except BlockingIOError:
            return n


def _sender(code, tmp_path, backend=True):
    require_shim()
    env = child_env(shim=backend, extra={"UDPWEAVE_MAX_DELAY_US": "1000000",
                                         "UDPWEAVE_STATS": str(tmp_path / "st.json")})
    return subprocess.Popen([PY, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channel", ["tcp", "unix"])
def test_control_message_does_not_overtake_queued_datagrams(channel, backend, tmp_path):
    rx = _udp_rx()
    uport = rx.getsockname()[1]
    if channel == "tcp":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("127.0.0.1", 0))
        target = repr(("127.0.0.1", ls.getsockname()[1]))
        fam = "socket.AF_INET"
    else:
        path = str(tmp_path / "ctl.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        target = repr(path)
        fam = "socket.AF_UNIX"
    ls.listen(1)
    ls.settimeout(10)
    p = _sender(f"""
        import socket, time
        c = socket.socket({fam}, socket.SOCK_STREAM)
        c.connect({target})
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range({N}):
            u.sendto(b"d" * 1000, ("127.0.0.1", {uport}))
        c.sendall(b"END")          # must not overtake the {N} datagrams
        c.recv(1)                  # the test answers when it has looked
        """, tmp_path, backend)
    try:
        conn, _ = ls.accept()
        conn.settimeout(10)
        assert conn.recv(3) == b"END"
        have = _queued_in(rx)
        conn.sendall(b"k")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert have == N, f"only {have} of {N} datagrams had arrived when the message did"
    st = json.loads((tmp_path / "st.json").read_text())
    assert st["datagrams_in"] == N and st["flushes_by_reason"]["barrier"] == 1
    assert_backend_used(st, backend)


def test_pipe_writes_do_not_flush(tmp_path):
    """Writing a log line to a pipe is not a message that could overtake:
    the datagrams stay batched until their deadline."""
    rx = _udp_rx()
    uport = rx.getsockname()[1]
    p = _sender(f"""
        import os, socket, sys
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range({N}):
            u.sendto(b"d" * 1000, ("127.0.0.1", {uport}))
            os.write(1, b"log line\\n")
        """, tmp_path)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert out.count("log line") == N
    st = json.loads((tmp_path / "st.json").read_text())
    assert st["flushes_by_reason"]["barrier"] == 0
    assert st["batches"] == 1 and st["datagrams_out"] == N
    assert _queued_in(rx) == N
