"""The sender flushes, the flush thread is a backstop (issue 13): a thread
that goes to sleep past the time its queue falls due sends the queue itself
before it sleeps, and the flush thread then needs no wake-up for it.

A real Python process under the library sends bursts of BURST datagrams to
a receiver on loopback (this test, not under the library) and sleeps 1 ms
between bursts, by one of the calls a paced server sleeps with. Checked:
every datagram arrives, once, in order; the library's stats say the
flushes were the sender's (reason `sleep`), and that sends woke the flush
thread (`flush_thread_signals`) for almost none of them. The control sleeps
with a call the library does not see (a condition variable's timed wait,
as threading.Event.wait): there the flush thread does the flushing, so the
counters above do tell the two apart."""
import json
import socket

import pytest

from conftest import child_env, require_shim, run

PY = "/usr/bin/python3"
BURSTS = 400
BURST = 4

SENDER = """
import ctypes, select, socket, sys, threading, time
how, port, bursts, burst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)

class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

ev = threading.Event()
sleeps = {
    "clock_nanosleep": lambda: time.sleep(0.001),
    "nanosleep": lambda: libc.nanosleep(ctypes.byref(Timespec(0, 1000000)), None),
    "usleep": lambda: libc.usleep(1000),
    "select": lambda: select.select([], [], [], 0.001),
    "poll": lambda: libc.poll(None, 0, 1),
    "condvar": lambda: ev.wait(0.001),
}
nap = sleeps[how]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
for _ in range(bursts):
    for _ in range(burst):
        s.sendto(n.to_bytes(4, "little") * 100, ("127.0.0.1", port))
        n += 1
    nap()
"""


def run_sender(tmp_path, how):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.5)
    stats = tmp_path / f"stats-{how}.json"
    env = child_env(True, {"UDPWEAVE_STATS": str(stats)})
    r = run([PY, "-c", SENDER, how, rx.getsockname()[1], BURSTS, BURST], extra_env=env,
            timeout=60)
    assert r.rc == 0, r.describe()
    got = []
    try:
        while len(got) < BURSTS * BURST:
            d = rx.recv(2048)
            assert len(d) == 400, len(d)
            got.append(int.from_bytes(d[:4], "little"))
    except socket.timeout:
        pass
    rx.close()
    assert got == list(range(BURSTS * BURST)), \
        f"{len(got)} of {BURSTS * BURST} datagrams, first wrong at " \
        f"{next((i for i, v in enumerate(got) if v != i), len(got))}\n{r.describe()}"
    return json.loads(stats.read_text())


@pytest.mark.parametrize("how", ["clock_nanosleep", "nanosleep", "usleep", "select", "poll"])
def test_a_sleeping_sender_flushes_its_own_queue(tmp_path, how):
    require_shim()
    st = run_sender(tmp_path, how)
    batches = st["batches"]
    by_sleep = st["flushes_by_reason"]["sleep"]
    ctx = json.dumps({k: st[k] for k in ("batches", "flushes_by_reason", "flushes_by_sender",
                                         "flushes_by_flush_thread", "flush_thread_signals",
                                         "gso_segments", "sync_calls")})
    # queued at all (bursts of 4 within the 2 ms default are GSO runs)
    assert batches >= BURSTS // 4 and st["gso_segments"] >= BURSTS, ctx
    assert by_sleep >= 0.8 * batches, ctx
    assert st["flushes_by_sender"] >= 0.8 * batches, ctx
    assert st["flush_thread_signals"] <= 0.05 * batches + 3, ctx


def test_a_sleep_the_library_cannot_see_leaves_it_to_the_flush_thread(tmp_path):
    """The control: the same sender sleeping in a condition variable."""
    require_shim()
    st = run_sender(tmp_path, "condvar")
    ctx = json.dumps({k: st[k] for k in ("batches", "flushes_by_reason", "flushes_by_sender",
                                         "flushes_by_flush_thread", "flush_thread_signals")})
    assert st["flushes_by_reason"]["sleep"] == 0, ctx
    assert st["flushes_by_flush_thread"] >= 0.5 * st["batches"], ctx
