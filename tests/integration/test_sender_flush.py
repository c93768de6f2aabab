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
counters above do tell the two apart. A real GStreamer udpsink, whose
clock waits in a futex through syscall(3), sends its own stages too; and
syscall(3), interposed for that, is the kernel's for every call."""
import json
import shutil
import socket

import pytest

from conftest import SAN_RUNTIME, child_env, require_shim, run

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
word = ctypes.c_int(0)
libc.syscall.restype = ctypes.c_long
libc.syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]

def futex_wait(bitset):
    # as glib's GCond and GStreamer's clock wait: syscall(SYS_futex, ...)
    # with a relative (FUTEX_WAIT) or absolute CLOCK_MONOTONIC
    # (FUTEX_WAIT_BITSET) timeout of 1 ms; ETIMEDOUT expected
    if bitset:
        t = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 1000000
        ts, op = Timespec(t // 10**9, t % 10**9), 9 | 128
    else:
        ts, op = Timespec(0, 1000000), 0 | 128
    r = libc.syscall(202, ctypes.byref(word), op, 0, ctypes.byref(ts), None, 0xffffffff)
    assert r == -1 and ctypes.get_errno() == 110, (r, ctypes.get_errno())
sleeps = {
    "clock_nanosleep": lambda: time.sleep(0.001),
    "nanosleep": lambda: libc.nanosleep(ctypes.byref(Timespec(0, 1000000)), None),
    "usleep": lambda: libc.usleep(1000),
    "select": lambda: select.select([], [], [], 0.001),
    "poll": lambda: libc.poll(None, 0, 1),
    "condvar": lambda: ev.wait(0.001),
    "futex": lambda: futex_wait(False),
    "futex_bitset": lambda: futex_wait(True),
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
    # a 10 ms delay: a 1 ms sleep that overshoots by a few ms on a loaded
    # machine still ends before the queue is due, as the test means it to
    env = child_env(True, {"UDPWEAVE_STATS": str(stats), "UDPWEAVE_MAX_DELAY_US": "10000"})
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


@pytest.mark.parametrize("how", ["clock_nanosleep", "nanosleep", "usleep", "select", "poll",
                                 "futex", "futex_bitset"])
def test_a_sleeping_sender_flushes_its_own_queue(tmp_path, how):
    require_shim()
    st = run_sender(tmp_path, how)
    batches = st["batches"]
    by_sleep = st["flushes_by_reason"]["sleep"]
    ctx = json.dumps({k: st[k] for k in ("batches", "flushes_by_reason", "flushes_by_sender",
                                         "flushes_by_flush_thread", "flush_thread_signals",
                                         "gso_segments", "sync_calls")})
    # queued at all (a stage of some 7 bursts of 4: GSO runs)
    assert batches >= BURSTS // 20 and st["gso_segments"] >= BURSTS, ctx
    if SAN_RUNTIME:
        # a sanitizer's process is slow enough that its stages often fall
        # due between two sleeps: its next send flushes them (reason
        # deadline, still the sender), or the flush thread does
        assert by_sleep > 0, ctx
        assert st["flushes_by_sender"] >= 0.4 * batches, ctx
    else:
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


def test_gstreamer_udpsink_clock_waits_flush_the_queue(tmp_path):
    """A real GStreamer udpsink with sync=true waits for each buffer's time
    in its clock (a futex through syscall(3)): the sender thread sends its
    own stages before those waits, the flush thread nearly never. A buffer
    every 2.5 ms: GStreamer 1.22 waits that long in a futex alone (for
    waits near 1 ms it ends with a clock_nanosleep, which the library saw
    already); a 10 ms max delay makes 4 datagrams a batch."""
    require_shim()
    if any("libtsan" in p for p in SAN_RUNTIME):
        pytest.skip("GStreamer under ThreadSanitizer: glib synchronises with raw futex "
                    "calls TSan cannot see, and TSan reports GStreamer's own races")
    if not shutil.which("gst-launch-1.0"):
        pytest.skip("gst-launch-1.0 not installed (scripts/deps.sh installs it)")
    n = 600
    src = tmp_path / "in.bin"
    src.write_bytes(b"".join(i.to_bytes(4, "little") * 329 for i in range(n)))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.5)
    stats = tmp_path / "stats.json"
    env = child_env(True, {"UDPWEAVE_STATS": str(stats), "UDPWEAVE_MAX_DELAY_US": "10000"})
    # 1316 B buffers at 526.4 kB/s: one every 2.5 ms, 1.5 s
    r = run(["gst-launch-1.0", "-q", "filesrc", f"location={src}", "blocksize=1316", "!",
             "identity", "datarate=526400", "!", "udpsink", "host=127.0.0.1",
             f"port={rx.getsockname()[1]}", "sync=true"], extra_env=env, timeout=60)
    assert r.rc == 0, r.describe()
    got = []
    try:
        while len(got) < n:
            got.append(int.from_bytes(rx.recv(2048)[:4], "little"))
    except socket.timeout:
        pass
    rx.close()
    assert got == list(range(n)), f"{len(got)} of {n} datagrams\n{r.describe()}"
    st = json.loads(stats.read_text())
    ctx = json.dumps({k: st[k] for k in ("batches", "flushes_by_reason", "flushes_by_sender",
                                         "flushes_by_flush_thread", "flush_thread_signals",
                                         "sync_calls", "datagrams_out")})
    assert st["batches"] >= n // 8 and st["datagrams_out"] == n, ctx
    assert st["flushes_by_reason"]["sleep"] >= 0.8 * st["batches"], ctx
    assert st["flushes_by_flush_thread"] <= 0.1 * st["batches"], ctx


SYSCALLS = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
def sc(*a):
    ctypes.set_errno(0)
    r = libc.syscall(*[L(x) for x in a])
    return r if r != -1 else "E%d" % ctypes.get_errno()
fd = os.open("/etc/os-release", os.O_RDONLY)
buf = ctypes.create_string_buffer(8)
out = [
    sc(39) == os.getpid(),                     # getpid, no argument
    sc(3, -1),                                 # close(-1): EBADF
    sc(202, 8, 0, 0, 0, 0, 0),                 # futex on a bad address: EFAULT
    sc(17, fd, ctypes.addressof(buf), 3, 1),   # pread64, offset 1 (4th argument)
    buf.raw[:3],
    # mmap: the 6th argument (offset) not page-aligned is EINVAL, 0 maps
    sc(9, 0, 4096, 1, 0x22, -1, 4095),
    sc(9, 0, 4096, 1, 0x22, -1, 0) > 0,
]
print(out)
"""


def test_syscall3_is_the_kernels():
    """syscall(3) is interposed (to see futex waits): every argument, the
    seventh on the stack included, reaches the kernel, and results and
    errno are the kernel's, as without the library."""
    require_shim()
    base = run([PY, "-c", SYSCALLS], timeout=30)
    shim = run([PY, "-c", SYSCALLS], extra_env=child_env(True), timeout=30)
    assert base.rc == 0 and shim.rc == 0, (base.describe(), shim.describe())
    assert "True, 'E9', 'E14', 3," in base.stdout and "'E22', True]" in base.stdout, base.stdout
    assert shim.stdout == base.stdout, (shim.stdout, base.stdout)
