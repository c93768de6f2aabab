"""Shared fixtures and helpers for the udpweave integration tests.

Real processes only: tests/tools/uw_receiver (verifying receiver) is started
first, the program under test runs with or without LD_PRELOAD, then the
receiver is told to drain and prints its JSON report.

Environment (set by `make integration`):
  UW_TEST_BUILD   / UDPWEAVE_BUILD    build directory (default: <repo>/build)
  UW_TEST_PRELOAD / UDPWEAVE_PRELOAD  full LD_PRELOAD value for the shim
                                      (sanitizer runtime first, if any)
"""
import ctypes
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = pathlib.Path(os.environ.get("UW_TEST_BUILD")
                     or os.environ.get("UDPWEAVE_BUILD")
                     or REPO / "build")
PRELOAD = (os.environ.get("UW_TEST_PRELOAD")
           or os.environ.get("UDPWEAVE_PRELOAD")
           or str(BUILD / "libudpweave.so"))
SHIM_LIB = PRELOAD.split()[-1]
# A sanitizer runtime in front of the library (it must stay first in any
# LD_PRELOAD); stderr may then carry its reports.
SAN_RUNTIME = PRELOAD.split()[:-1]
SANITIZER = bool(SAN_RUNTIME)
TOOLS = BUILD / "tests"

DEFAULT_MAX_DELAY_US = 2000
DELAY_SLACK_US = 50_000          # generous: catches stuck datagrams, not jitter
SUBPROCESS_TIMEOUT = 60

# Environment variables that must not leak from the test runner into the
# programs under test.
_STRIP_PREFIXES = ("UDPWEAVE_", "UW_TEST_", "UW_CTOR_")


def tool(name):
    """Path of a built test tool; skips when it was not built."""
    path = TOOLS / name
    if not path.exists():
        pytest.skip(f"{path} not built (run `make tools`)")
    return str(path)


def require_shim():
    if not os.path.exists(SHIM_LIB):
        pytest.skip(f"{SHIM_LIB} not built (run `make lib`)")


# --------------------------------------------------------------------------
# backends: a test parametrized with SHIM_BACKENDS gets `shim` = False (no
# shim), True (the shim with its default backend, mmsg) or a backend name;
# child_env() and run() take any of them.

def _io_uring_setup_error():
    """None if this process can make an io_uring (io_uring_setup(2), number
    425 on every architecture), else why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)      # struct io_uring_params
    fd = libc.syscall(425, 4, params)
    if fd < 0:
        return os.strerror(ctypes.get_errno())
    os.close(fd)
    return None


URING_UNAVAILABLE = _io_uring_setup_error()
needs_uring = pytest.mark.skipif(URING_UNAVAILABLE is not None,
                                 reason=f"io_uring is not available here: {URING_UNAVAILABLE}")
# True: the library with its default backend (auto)
SHIM_BACKENDS = [pytest.param(False, id="baseline"), pytest.param(True, id="shim"),
                 pytest.param("uring", id="uring", marks=needs_uring)]
# the shim only: each backend, named
BACKENDS = [pytest.param("mmsg", id="mmsg"),
            pytest.param("uring", id="uring", marks=needs_uring)]


def backend_env(shim):
    """UDPWEAVE_BACKEND for a backend named by `shim` (see SHIM_BACKENDS)."""
    return {"UDPWEAVE_BACKEND": shim} if isinstance(shim, str) else {}


def assert_backend_used(st, shim, context=""):
    """The stats JSON `st` shows that the backend `shim` named sent: for
    uring, through io_uring_enter and never through the mmsg fallback."""
    if shim == "uring":
        u = st["backend_counters"]["uring"]
        assert st["backend"] == "uring", f"{context}\n{st}"
        assert u["io_uring_enter_calls"] > 0 and u["mmsg_batches"] == 0, f"{context}\n{st}"
        # io_uring_enter, the fallback's sendmsg, and a full socket's
        # held datagrams sent later (core/held.c)
        assert st["syscalls"] == (u["io_uring_enter_calls"] + st["backend_counters"]
                                  ["passthrough"]["sendmsg_calls"] + st["held_sends"]), \
            f"{context}\n{st}"
    elif shim:
        want = shim if isinstance(shim, str) else "auto"     # True: the default
        assert st["backend"] == want, f"{context}\n{st}"


def child_env(shim=False, extra=None, preload=None):
    """A clean environment for a program under test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_STRIP_PREFIXES) and k != "LD_PRELOAD"}
    if shim:
        require_shim()
        env["LD_PRELOAD"] = preload or PRELOAD
        env.update(backend_env(shim))
    if any("libtsan" in p for p in SAN_RUNTIME):
        # the library's flush thread makes every process multi-threaded, and
        # TSan by default kills a child that starts a thread after fork
        opts = env.get("TSAN_OPTIONS", "")
        if "die_after_fork" not in opts:
            env["TSAN_OPTIONS"] = (opts + ":" if opts else "") + "die_after_fork=0"
    env.update(extra or {})
    return env


def udpweave_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("udpweave:")]


# --------------------------------------------------------------------------
# process bookkeeping: everything started is killed at the end of the test

class ProcessSet:
    def __init__(self):
        self.procs = []

    def popen(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass


@pytest.fixture
def procs():
    ps = ProcessSet()
    yield ps
    ps.kill_all()


# --------------------------------------------------------------------------
# receiver

class Receiver:
    """uw_receiver bound to ports on loopback; `finish()` returns its report."""

    _seq = 0

    def __init__(self, procs, tmp_path, binds=("127.0.0.1:0",), idle_ms=5000,
                 timeout_s=90, extra_args=(), prefix=()):
        """prefix: in front of the command, e.g. ("ip", "netns", "exec", NS)."""
        Receiver._seq += 1
        self.binds = list(binds)
        self.ready = tmp_path / f"rx-ready-{Receiver._seq}.json"
        args = [*prefix, tool("uw_receiver"), "--ready-file", str(self.ready),
                "--idle-ms", str(idle_ms), "--timeout-s", str(timeout_s)]
        for b in self.binds:
            args += ["--bind", b]
        args += list(extra_args)
        self.proc = procs.popen(args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=child_env())
        deadline = time.monotonic() + 10
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError("receiver died: " + self.proc.stderr.read())
            if time.monotonic() > deadline:
                raise AssertionError("receiver not ready within 10 s")
            time.sleep(0.01)
        self.ports = json.loads(self.ready.read_text())["ports"]
        self.report = None

    def addr(self, i=0):
        host = self.binds[i].rsplit(":", 1)[0]
        return f"{host}:{self.ports[i]}"

    def addrs(self):
        return [self.addr(i) for i in range(len(self.ports))]

    def finish(self, timeout=30):
        """Tell the receiver to drain (until 200 ms without data) and report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"receiver did not finish: {err}")
        assert self.proc.returncode == 0, f"receiver failed: {err}"
        self.report = json.loads(out.strip().splitlines()[-1])
        return self.report


@pytest.fixture
def receiver_factory(procs, tmp_path):
    def make(**kw):
        return Receiver(procs, tmp_path, **kw)
    return make


# --------------------------------------------------------------------------
# running programs

class Run:
    def __init__(self, cp, args):
        self.rc = cp.returncode
        self.stdout = cp.stdout
        self.stderr = cp.stderr
        self.args = args
        self.json_lines = []
        for line in cp.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.json_lines.append(json.loads(line))
                except ValueError:
                    pass

    def describe(self):
        return (f"command: {' '.join(map(str, self.args))}\nrc={self.rc}\n"
                f"stderr:\n{self.stderr[-3000:]}")


def run(args, shim=False, extra_env=None, timeout=SUBPROCESS_TIMEOUT,
        strace_out=None, strace_calls="sendto,sendmsg,sendmmsg", preload=None):
    """Runs a program to completion (killed after `timeout`).

    With strace_out, runs it under `strace -f -yy` tracing strace_calls (see
    strace_counts); the shim is then given through strace -E so that strace
    itself is not preloaded."""
    env = child_env(shim=False, extra={**backend_env(shim), **(extra_env or {})})
    args = [str(a) for a in args]
    if strace_out:
        cmd = ["strace", "-f", "-yy", "-qq", "-o", str(strace_out), "-e",
               f"trace={strace_calls}"]
        if shim:
            require_shim()
            cmd += ["-E", f"LD_PRELOAD={preload or PRELOAD}"]
        cmd += args
    else:
        cmd = args
        if shim:
            env = child_env(shim=shim, extra=extra_env, preload=preload)
    try:
        cp = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout} s: {' '.join(cmd)}\n"
                             f"stderr: {e.stderr}") from None
    r = Run(cp, cmd)
    if shim == "uring":
        assert not any("io_uring" in l for l in udpweave_lines(r.stderr)), (
            f"the uring backend did not send through io_uring\n{r.describe()}")
    return r


_STRACE_CALL = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^:>]+)")
_STRACE_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>")


def strace_counts(path, protocols=("UDP", "UDPv6")):
    """{syscall: (calls, errors)} from a `strace -f -yy` log, counting only
    calls on fds of the given socket protocols: the library's own sends,
    not those of other libraries of the process (liblttng-ust talks to its
    session daemon over Unix sockets) nor writes to stdout."""
    counts, pending = {}, {}

    def note(name, failed):
        calls, errors = counts.get(name, (0, 0))
        counts[name] = (calls + 1, errors + int(failed))

    for line in pathlib.Path(path).read_text().splitlines():
        m = _STRACE_CALL.match(line)
        if m:
            if m.group(4) not in protocols:
                continue
            if line.endswith("<unfinished ...>"):
                pending[m.group(1)] = m.group(2)
            else:
                note(m.group(2), re.search(r"= -1 E\w+", line) is not None)
            continue
        m = _STRACE_RESUMED.match(line)
        if m and pending.get(m.group(1)) == m.group(2):
            del pending[m.group(1)]
            note(m.group(2), re.search(r"= -1 E\w+", line) is not None)
    return counts


def need_strace():
    if not shutil.which("strace"):
        pytest.skip("strace not installed")


def read_stats(tmp_path, pattern="stats-*.json"):
    files = sorted(glob.glob(str(tmp_path / pattern)))
    return {f: json.loads(pathlib.Path(f).read_text()) for f in files}


def free_port():
    """A port free for both TCP and UDP on loopback (best effort)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise AssertionError("no free port")


# --------------------------------------------------------------------------
# checking what the receiver saw against what the sender says it sent

def expected_sizes(count, sizes):
    hist = {}
    for seq in range(count):
        s = sizes[seq % len(sizes)]
        hist[str(s)] = hist.get(str(s), 0) + 1
    return hist


def sender_flows(summaries):
    flows = {}
    for s in summaries:
        if "flows" in s:
            for fid, f in s["flows"].items():
                assert fid not in flows, f"flow {fid} reported twice"
                flows[fid] = f
    return flows


def delivery_problems(rx, summaries, ports=None, sizes=None, zero_len=None):
    """Everything wrong with the receiver report `rx` given the sender
    summaries; [] when every datagram arrived once, intact, in order."""
    problems = []
    flows = sender_flows(summaries)
    if not flows:
        problems.append("sender reported no flows")
    for fid, f in sorted(flows.items(), key=lambda kv: int(kv[0])):
        r = rx["flows"].get(fid)
        if f["sent"] == 0:
            if r:
                problems.append(f"flow {fid}: received {r['count']}, sent none")
            continue
        if not r:
            problems.append(f"flow {fid}: sent {f['sent']}, received nothing")
            continue
        for key, want in (("count", f["sent"]), ("bytes", f["bytes"]),
                          ("first_seq", 0), ("last_seq", f["sent"] - 1),
                          ("missing", 0), ("dups", 0), ("reorders", 0),
                          ("corrupt", 0), ("port_mismatch", 0)):
            if r[key] != want:
                problems.append(f"flow {fid}: {key}={r[key]}, expected {want}")
        if ports is not None and r["port"] != ports[f["dest_index"]]:
            problems.append(f"flow {fid}: arrived on port {r['port']}, "
                            f"sent to {f['dest']}")
        if sizes is not None:
            want = expected_sizes(f["sent"], sizes)
            if r["sizes"] != want:
                problems.append(f"flow {fid}: sizes {r['sizes']}, expected {want}")
    for fid in rx["flows"]:
        if fid not in flows:
            problems.append(f"flow {fid}: received {rx['flows'][fid]['count']} "
                            "datagrams nobody sent")
    for key in ("short", "bad_magic", "bad_length", "truncated", "corrupt"):
        if rx[key]:
            problems.append(f"receiver: {key}={rx[key]}")
    if zero_len is None:
        zero_len = sum(s.get("zero_len_total", 0) for s in summaries)
    if rx["zero_len"] != zero_len:
        problems.append(f"zero-length datagrams: received {rx['zero_len']}, "
                        f"expected {zero_len}")
    if rx["rx_overflow"]:
        problems.append(f"receiver socket overflowed ({rx['rx_overflow']} drops "
                        "counted by the kernel)")
    return problems


def assert_delivered(rx, summaries, context, **kw):
    problems = delivery_problems(rx, summaries, **kw)
    assert not problems, (f"{context}\n" + "\n".join(problems[:40]))


def assert_delay_bound(rx, max_delay_us, context):
    bound = max_delay_us + DELAY_SLACK_US
    got = rx["delay_us"]["max"]
    assert got <= bound, (f"{context}\nreceiver-measured max delay {got:.0f} us "
                          f"> {bound} us (max delay {max_delay_us} us + slack); "
                          f"p50={rx['delay_us']['p50']} p99={rx['delay_us']['p99']}")


def sender_summaries(r, context=""):
    assert r.rc == 0, f"sender failed\n{r.describe()}"
    sums = [j for j in r.json_lines if "flows" in j]
    assert sums, f"sender printed no summary\n{r.describe()}"
    for s in sums:
        assert s["errors"] == 0, f"sender saw send errors\n{r.describe()}"
    return sums
