"""Interactive traffic goes straight through (issue 13): a socket the
process also reads is request/response (DNS, RTCP feedback, ping-pong),
and its sends are not held for a batch; one that then streams without
reading is batched again. Real processes across a veth pair between two
namespaces the test makes (loopback readers are flushed for another
reason: test_hostile's local-read)."""
import json
import statistics
import subprocess

import pytest

from conftest import child_env, require_shim
from test_uring import NetPair

PY = "/usr/bin/python3"
ROUNDS = 300

SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{addr}", 0))
print(s.getsockname()[1], flush=True)
for _ in range({rounds}):
    d, peer = s.recvfrom(2048)
    s.sendto(d, peer)
"""

CLIENT = """
import json, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
rtt = []
for i in range({rounds}):
    t = time.perf_counter_ns()
    s.sendto(i.to_bytes(4, "little") * 50, ("{addr}", {port}))
    d = s.recv(2048)
    rtt.append((time.perf_counter_ns() - t) // 1000)
    assert int.from_bytes(d[:4], "little") == i
print(json.dumps(rtt))
"""


@pytest.fixture
def pair():
    p = NetPair()
    yield p
    p.close()


def env_for(shim, stats):
    extra = {"UDPWEAVE_STATS": str(stats)} if shim else None
    return child_env(shim=shim, extra=extra)


def ping_pong(pair, tmp_path, shim, tag):
    srv_stats, cli_stats = tmp_path / f"srv-{tag}.json", tmp_path / f"cli-{tag}.json"
    srv = subprocess.Popen([*pair.in_rx(), PY, "-c",
                            SERVER.format(addr=pair.V4[1], rounds=ROUNDS)],
                           stdout=subprocess.PIPE, text=True, env=env_for(shim, srv_stats))
    try:
        port = int(srv.stdout.readline())
        cli = subprocess.run([*pair.in_tx(), PY, "-c",
                              CLIENT.format(addr=pair.V4[1], port=port, rounds=ROUNDS)],
                             capture_output=True, text=True, timeout=60,
                             env=env_for(shim, cli_stats))
        assert cli.returncode == 0, cli.stderr
        srv.wait(timeout=30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    rtt = json.loads(cli.stdout.strip().splitlines()[-1])
    stats = ((json.loads(srv_stats.read_text()), json.loads(cli_stats.read_text()))
             if shim else None)
    return statistics.median(rtt), stats


def test_request_response_is_not_held(pair, tmp_path):
    """An echo server and a client, both under the library: every reply
    and every request goes out at its call (the kernel's send, counted in
    sync_datagrams), so the round trip is the kernel's, not one max delay
    (2 ms) per side as when both queued."""
    require_shim()
    base, _ = ping_pong(pair, tmp_path, False, "base")
    got, (srv, cli) = ping_pong(pair, tmp_path, True, "shim")
    assert srv["interactive_sockets"] == 1 and cli["interactive_sockets"] == 1, (srv, cli)
    assert srv["sync_datagrams"] == ROUNDS, srv
    assert cli["sync_datagrams"] == ROUNDS, cli
    assert srv["batches"] == cli["batches"] == 0, (srv, cli)
    # 500 us: far below the 2 ms a held reply waits, far above the noise
    assert got <= base + 500, f"round trip p50 {got} us with the library, {base} us without"


STREAMER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{src}", 0))
s.sendto(b"hello", ("{addr}", {port}))
s.recvfrom(100)                       # one answer: the socket is read
def state():                          # struct udpweave_metrics.state
    return int.from_bytes(s.getsockopt(0x7577, 1, 40)[20:24], "little")
read = state()
for i in range({count}):
    s.sendto(i.to_bytes(4, "little") * 329, ("{addr}", {port}))
print(read, state(), flush=True)
"""


def test_a_socket_that_streams_after_a_read_is_batched_again(pair, tmp_path):
    """A socket read once (an RTCP report on the RTP socket) that then
    streams 3000 datagrams without reading: the first UW_INTERACTIVE_BURST
    (64) go at their calls, the rest are batched, all delivered."""
    require_shim()
    count = 3000
    rx = subprocess.Popen([*pair.in_rx(), PY, "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("{pair.V4[1]}", 0))
print(s.getsockname()[1], flush=True)
d, peer = s.recvfrom(100)
s.sendto(b"ok", peer)
s.settimeout(2)
n = 0
try:
    while True:
        s.recv(2048)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""], stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        port = int(rx.stdout.readline())
        stats = tmp_path / "stream.json"
        cp = subprocess.run([*pair.in_tx(), PY, "-c",
                             STREAMER.format(src=pair.V4[0], addr=pair.V4[1], port=port,
                                             count=count)],
                            capture_output=True, text=True, timeout=60,
                            env=env_for(True, stats))
        assert cp.returncode == 0, cp.stderr
        got = int(rx.stdout.readline())
    finally:
        if rx.poll() is None:
            rx.kill()
        rx.wait()
    st = json.loads(stats.read_text())
    assert got == count, f"received {got} of {count}"
    # getsockopt(SOL_UDPWEAVE) tells the mode: interactive and direct
    # after the read, neither once it streamed
    read, after = map(int, cp.stdout.split())
    assert read & 0xC0 == 0xC0, f"state after the read {read:#x}: not INTERACTIVE|DIRECT"
    assert after & 0xC0 == 0, f"state after streaming {after:#x}: still INTERACTIVE/DIRECT"
    assert st["interactive_sockets"] == 1, st
    # the hello, and 64 after the read; a few more if the machine made
    # sends slow (then the kernel judges them: UW_SOCK_SYNC)
    assert st["sync_datagrams"] <= 1 + 64 + 200, st
    assert st["datagrams_in"] - st["sync_datagrams"] >= count - 200, st
    assert st["syscalls"] * 4 <= count, st
