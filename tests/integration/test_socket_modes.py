"""Each socket's mode in the stats (issue 13): socket_list names every
socket that sent, open or (the last 16) closed, with its mode and how many
of its datagrams were queued and how many went to the kernel at their
calls (also through uw_get_stats while the process runs). One real Python process under the library, on loopback, with four
sockets the library must tell apart:

  stream   bursts of 8 every 1 ms: queued (GSO runs);
  slow     one datagram every 5 ms, slower than half the max delay from
           its first: direct (slow);
  lonely   bursts of 8 every 1 ms for 100 ms (queued), then one datagram
           every 5 ms: direct, because its batches of one saved nothing;
  chat     sends to itself and reads each reply: interactive;
  closed   a burst stream closed before the end: in the list, open false.

The modes are checked against getsockopt(SOL_UDPWEAVE)'s state bits read
in the same process, and the counts against what the process sent."""
import json
import socket

from conftest import child_env, require_shim, run

PY = "/usr/bin/python3"

PROG = """
import ctypes, json, socket, struct, sys, time
port = int(sys.argv[1])
SOL_UDPWEAVE, UDPWEAVE_METRICS = 0x7577, 1

def state(s):
    # struct udpweave_metrics: rate (u64), jitter, delay, pacing, state (u32)
    raw = s.getsockopt(SOL_UDPWEAVE, UDPWEAVE_METRICS, 40)
    return struct.unpack_from("=QIIII", raw)[4]

def sock():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

stream, slow, chat, gone, lonely = sock(), sock(), sock(), sock(), sock()
chat.bind(("127.0.0.1", 0))
sent = {"stream": 0, "slow": 0, "chat": 0, "closed": 0, "lonely": 0}
for i in range(200):
    for _ in range(8):
        stream.sendto(b"s" * 1000, ("127.0.0.1", port)); sent["stream"] += 1
        if i < 50:
            gone.sendto(b"g" * 1000, ("127.0.0.1", port)); sent["closed"] += 1
        if i < 100:
            lonely.sendto(b"l" * 1000, ("127.0.0.1", port)); sent["lonely"] += 1
    if i % 5 == 0:
        slow.sendto(b"w" * 100, ("127.0.0.1", port)); sent["slow"] += 1
        if i >= 100:
            lonely.sendto(b"l" * 100, ("127.0.0.1", port)); sent["lonely"] += 1
    if i % 4 == 0:
        chat.sendto(b"c" * 50, chat.getsockname()); sent["chat"] += 1
        chat.recv(100)
    if i == 50:
        gone_fd = gone.fileno()
        gone.close()
    time.sleep(0.001)
fds = {"stream": stream.fileno(), "slow": slow.fileno(), "chat": chat.fileno(),
       "closed": gone_fd, "lonely": lonely.fileno()}
states = {k: state(s) for k, s in (("stream", stream), ("slow", slow), ("chat", chat),
                                   ("lonely", lonely))}
buf = ctypes.create_string_buffer(16384)
n = ctypes.CDLL(None).uw_get_stats(buf, len(buf))
live = json.loads(buf.raw[:n])
print(json.dumps({"fds": fds, "sent": sent, "states": states, "live": live["socket_list"]}))
"""


def check_list(slist, out, at_exit):
    by_fd = {}
    for e in slist:
        by_fd.setdefault(e["fd"], []).append(e)
    ctx = json.dumps({"out": {k: out[k] for k in ("fds", "sent", "states")},
                      "socket_list": slist, "at_exit": at_exit})
    got = {}
    for name, fd in out["fds"].items():
        entries = by_fd.get(fd, [])
        assert len(entries) == 1, f"{name}: {entries}\n{ctx}"
        got[name] = e = entries[0]
        assert e["datagrams_queued"] + e["datagrams_direct"] == out["sent"][name], \
            f"{name}\n{ctx}"
        # Python closes every socket before the process exits
        assert e["open"] == (name != "closed" and not at_exit), f"{name}\n{ctx}"
    assert got["stream"]["mode"] == "queued", ctx
    assert got["stream"]["datagrams_queued"] >= 0.9 * out["sent"]["stream"], ctx
    assert got["closed"]["mode"] == "queued" and got["closed"]["datagrams_queued"] > 0, ctx
    assert got["slow"]["mode"] == "direct-slow", ctx
    assert got["slow"]["datagrams_direct"] == out["sent"]["slow"], ctx
    assert got["lonely"]["mode"] == "direct-lonely", ctx
    assert got["lonely"]["datagrams_queued"] >= 700, ctx
    assert got["lonely"]["datagrams_direct"] >= 5, ctx
    assert got["chat"]["mode"] == "interactive", ctx
    assert got["chat"]["datagrams_direct"] >= out["sent"]["chat"] - 1, ctx
    return ctx


def test_socket_list_shows_each_sockets_mode(tmp_path):
    require_shim()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    stats = tmp_path / "stats.json"
    r = run([PY, "-c", PROG, rx.getsockname()[1]],
            extra_env=child_env(True, {"UDPWEAVE_STATS": str(stats)}), timeout=60)
    rx.close()
    assert r.rc == 0, r.describe()
    out = json.loads(r.stdout)
    st = json.loads(stats.read_text())
    check_list(out["live"], out, False)
    ctx = check_list(st["socket_list"], out, True)
    # the same as getsockopt(SOL_UDPWEAVE) said in the process
    states = out["states"]
    assert not states["stream"] & 0xC0, ctx
    assert states["slow"] & 0x40 and not states["slow"] & 0x80, ctx
    assert states["lonely"] & 0x40 and not states["lonely"] & 0x80, ctx
    assert states["chat"] & 0xC0 == 0xC0, ctx
