"""The `udpweave` command-line tool (issue 4): `run`, `check`, `stats`, the
help texts and the man pages.

`udpweave run` is driven around the conformance sender and a verifying
receiver; bad input must give one line, exit status 2 and no child (the
command would create a marker file); `check` must print one OK/NO line per
item; `stats` is checked against a live paced sender and against segments
this test writes itself (include/udpweave_stats.h layout)."""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import (BUILD, REPO, SAN_RUNTIME, SHIM_LIB, SUBPROCESS_TIMEOUT,
                      assert_delivered, child_env, needs_uring, require_shim, tool)

SIZES = [1316, 1316, 1316, 200, 1316, 28, 1316, 9000]
LINE = re.compile(r"^(OK|NO)   ([^:]+): (\S.*)$")
ROW = re.compile(r"^  ([A-Za-z][A-Za-z ]*):\s+(\S+)(?: us)?(?:\s+\((.*)\))?\s*$")
SEG_MAGIC = b"UWSTATS1"
SEG_SIZE = 4096
SEG_HDR = struct.Struct("=8sQII")        # magic, seq, pid, len: 24 bytes


# --------------------------------------------------------------------------
# helpers

def udpweave():
    path = BUILD / "udpweave"
    if not path.exists():
        pytest.skip(f"{path} not built (build/udpweave from cli/*.c)")
    return str(path)


def cli_env(tmp_path=None, extra=None):
    """Environment for the tool itself: clean, a private TMPDIR, and under a
    sanitizer build its runtime in LD_PRELOAD (the tool keeps it first)."""
    env = child_env(extra=extra)
    if SAN_RUNTIME:
        env["LD_PRELOAD"] = " ".join(SAN_RUNTIME)
    if tmp_path is not None:
        tmpdir = tmp_path / "tmpdir"
        tmpdir.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return env


def cli(args, tmp_path=None, extra_env=None, timeout=SUBPROCESS_TIMEOUT, env=None):
    args = [udpweave()] + [str(a) for a in args]
    cp = subprocess.run(args, env=env or cli_env(tmp_path, extra_env),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        encoding="utf-8", errors="replace", timeout=timeout)
    return cp


def describe(cp):
    return (f"command: {' '.join(map(str, cp.args))}\nrc={cp.returncode}\n"
            f"stdout:\n{cp.stdout[-3000:]}\nstderr:\n{cp.stderr[-3000:]}")


def run_args(*opts):
    """`udpweave run` with the library under test."""
    require_shim()
    return ["run", "--lib", SHIM_LIB, *opts]


def sender_args(rx, *extra, count=2000):
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES)),
            *extra]
    for a in rx.addrs():
        args += ["--dest", a]
    return args


def sender_summaries(stdout):
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            if "flows" in j:
                out.append(j)
    return out


def parse_summary(text):
    """{label: (value, note)} of the summary lines ("  label:  value  (note)")."""
    rows = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3) or "")
    return rows


def note_pairs(note):
    """"deadline 2, exit 1" -> {"deadline": 2, "exit": 1}"""
    pairs = {}
    for part in filter(None, (p.strip() for p in note.split(","))):
        name, _, value = part.rpartition(" ")
        pairs[name] = int(value)
    return pairs


def assert_summary_matches(rows, st, context):
    """Every number of the summary is the JSON's."""
    want = {
        "datagrams in": st["datagrams_in"], "bytes in": st["bytes_in"],
        "datagrams out": st["datagrams_out"], "bytes out": st["bytes_out"],
        "datagrams dropped": st["datagrams_dropped"],
        "passthrough calls": st["passthrough_calls"], "syscalls": st["syscalls"],
        "sync sends": st["sync_calls"],
        "batches": st["batches"], "GSO runs": st["gso_runs"],
        "GSO segments": st["gso_segments"], "retries": st["retries"],
        "async errors": st["async_errors"],
        "flushes": sum(st["flushes_by_reason"].values()),
        "max queue delay": st["max_queue_delay_us"],
        "max flush late": st["max_flush_thread_late_us"],
        "arena high water": st["arena_high_water_bytes"],
    }
    if "fallbacks" in st:
        want["fallbacks"] = sum(st["fallbacks"].values())
    for label, value in want.items():
        assert label in rows, f"summary has no {label!r} line\n{context}"
        assert rows[label][0] == str(value), (
            f"summary {label!r} = {rows[label][0]}, JSON says {value}\n{context}")
    assert rows["backend"][0] == st["backend"], context
    flushes = {k: v for k, v in st["flushes_by_reason"].items() if v}
    assert note_pairs(rows["flushes"][1]) == flushes, context
    if st["syscalls"]:
        per = (f"{(st['datagrams_out'] - st['sync_datagrams']) / st['syscalls']:.1f} "
               "datagrams per syscall")
        assert rows["syscalls"][1] == per, context


def child_pids(pid):
    try:
        text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def wait_for(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# --------------------------------------------------------------------------
# help, version

def test_help_and_version():
    """--help for the tool and each command (exit 0, a usage line), and
    --version; a missing or unknown command is one line and status 2."""
    cp = cli(["--help"])
    assert cp.returncode == 0 and "usage: udpweave" in cp.stdout, describe(cp)
    for sub in ("run", "check", "stats"):
        assert sub in cp.stdout, describe(cp)
        for flag in ("--help", "-h"):
            c = cli([sub, flag])
            assert c.returncode == 0, describe(c)
            assert c.stdout.startswith(f"usage: udpweave {sub}"), describe(c)
            assert not c.stderr, describe(c)
    cp = cli(["--version"])
    assert cp.returncode == 0 and re.match(r"^udpweave \d+\.\d+", cp.stdout), describe(cp)
    for args in ([], ["frobnicate"], ["--frobnicate"]):
        c = cli(args)
        assert c.returncode == 2, describe(c)
        lines = c.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("udpweave: "), describe(c)


def help_backends(sub):
    """The backend names a command's --help lists under --backend."""
    cp = cli([sub, "--help"])
    assert cp.returncode == 0, describe(cp)
    lines = cp.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.lstrip().startswith("--backend"))
    names = []
    for l in lines[start + 1:]:
        if l.startswith("    ") and not l.startswith("     "):
            names.append(l.split()[0])
        elif not l.startswith("     "):
            break
    return names


def man_section(page, title):
    """The text of a man page's paragraph (.TP entry) or section, raw roff."""
    text = (REPO / "docs" / page).read_text()
    i = text.index(title)
    end = min((j for j in (text.find("\n.TP\n.BI", i + 1), text.find("\n.SH ", i + 1)) if j > 0))
    return text[i:end]


def test_backends_from_one_table():
    """run --help and check --help list the same backends; each one is
    accepted by run and check; udpweave(1)'s --backend and udpweave(7)'s
    BACKENDS name every one and refuse none."""
    names = help_backends("run")
    assert sorted(names) == sorted(["auto", "mmsg", "passthrough", "packet", "uring"]), names
    assert help_backends("check") == names
    para = man_section("udpweave.1", ".BI \\-\\-backend \" B\"")
    sect = man_section("udpweave.7", ".SH BACKENDS")
    for n in names:
        assert f".B {n}\n" in para, f"udpweave(1) --backend does not name {n}:\n{para}"
        assert f".B {n}\n" in sect, f"udpweave(7) BACKENDS does not name {n}"
        cp = cli(run_args("--backend", n, "--", "true"))
        assert cp.returncode == 0, describe(cp)
        assert "backend" in cp.stderr, describe(cp)
        c = cli(["check", "--lib", SHIM_LIB, "--backend", n])
        assert c.returncode in (0, 1) and f"backend {n}" in c.stdout, describe(c)
    assert "refused" not in para, para


# --------------------------------------------------------------------------
# run

def test_run_summary_matches_stats_file(receiver_factory, tmp_path):
    """run --stats FILE --summary: the child's exit status, every datagram
    delivered, the JSON in FILE, and a summary whose numbers are the JSON's."""
    rx = receiver_factory(binds=["127.0.0.1:0", "127.0.0.1:0"])
    stats = tmp_path / "stats.json"
    cp = cli(run_args("--stats", stats, "--summary", "--", *sender_args(rx, "--mode", "mixed")),
             tmp_path)
    assert cp.returncode == 0, describe(cp)
    sums = sender_summaries(cp.stdout)
    assert_delivered(rx.finish(), sums, describe(cp), ports=rx.ports, sizes=SIZES)
    st = json.loads(stats.read_text())
    assert st["datagrams_in"] == st["datagrams_out"] == sums[0]["sent_total"], st
    rows = parse_summary(cp.stderr)
    assert_summary_matches(rows, st, describe(cp) + f"\nJSON: {st}")
    header = [l for l in cp.stderr.splitlines() if l.startswith("udpweave: ")]
    assert header and "exited with status 0" in header[0], describe(cp)
    assert f"(pid {sums[0]['pid']})" in header[0], describe(cp)


def test_run_default_summary(receiver_factory, tmp_path):
    """Without --stats: the summary on stderr (from the library's file in a
    private directory, removed afterwards), the child's stdout untouched."""
    rx = receiver_factory()
    cp = cli(run_args("--", *sender_args(rx, count=3000)), tmp_path)
    assert cp.returncode == 0, describe(cp)
    sums = sender_summaries(cp.stdout)
    assert len(sums) == 1, describe(cp)
    assert_delivered(rx.finish(), sums, describe(cp))
    rows = parse_summary(cp.stderr)
    assert rows["datagrams out"][0] == str(sums[0]["sent_total"]), describe(cp)
    assert rows["bytes in"][0] == str(sums[0]["bytes_total"]), describe(cp)
    assert rows["backend"][0] == "auto", describe(cp)
    assert 0 < int(rows["syscalls"][0]) < sums[0]["sent_total"], describe(cp)
    assert not any((tmp_path / "tmpdir").iterdir()), "the private directory was left behind"


def test_run_stats_stdout(receiver_factory, tmp_path):
    """--stats -: the JSON on stdout after the child's own output."""
    rx = receiver_factory()
    cp = cli(run_args("--backend", "passthrough", "--stats", "-", "--",
                      *sender_args(rx, count=500)), tmp_path)
    assert cp.returncode == 0, describe(cp)
    lines = cp.stdout.strip().splitlines()
    st = json.loads(lines[-1])
    sums = sender_summaries(cp.stdout)
    assert_delivered(rx.finish(), sums, describe(cp))
    assert st["backend"] == "passthrough", st
    assert st["datagrams_out"] == sums[0]["sent_total"], st
    assert not parse_summary(cp.stderr), f"a summary without --summary\n{describe(cp)}"


@needs_uring
def test_run_backend_uring(receiver_factory, tmp_path):
    """--backend uring: delivered, and the summary shows the uring counters
    (io_uring_enter calls, one per flush)."""
    rx = receiver_factory()
    cp = cli(run_args("--backend", "uring", "--stats", "-", "--",
                      *sender_args(rx, count=2000)), tmp_path)
    assert cp.returncode == 0, describe(cp)
    st = json.loads(cp.stdout.strip().splitlines()[-1])
    sums = sender_summaries(cp.stdout)
    assert_delivered(rx.finish(), sums, describe(cp))
    assert st["backend"] == "uring", st
    u = st["backend_counters"]["uring"]
    assert u["io_uring_enter_calls"] == st["batches"] == st["syscalls"] > 0, st


def test_run_environment(tmp_path):
    """The options become UDPWEAVE_* variables; LD_PRELOAD gets the library
    in front, after a sanitizer runtime, with what was there kept."""
    require_shim()
    extra = {"LD_PRELOAD": "/nonexistent/libasan.so.8 /nonexistent/libother.so",
             "UDPWEAVE_ARENA_KB": "2048"}
    env = cli_env(tmp_path, extra)
    if SAN_RUNTIME:
        env["LD_PRELOAD"] = " ".join(SAN_RUNTIME) + " " + extra["LD_PRELOAD"]
    cp = cli(run_args("--max-delay-us", "500", "--interval-us", "100", "--log", "error",
                      "--backend", "passthrough", "--rules", "10.0.0.5:5004:jitter=1ms",
                      "--stats", tmp_path / "s.json", "--",
                      "sh", "-c", 'env | grep "^UDPWEAVE_\\|^LD_PRELOAD="'), env=env)
    assert cp.returncode == 0, describe(cp)
    got = dict(l.split("=", 1) for l in cp.stdout.splitlines())
    assert got["UDPWEAVE_MAX_DELAY_US"] == "500", got
    assert got["UDPWEAVE_INTERVAL_US"] == "100", got
    assert got["UDPWEAVE_LOG"] == "error", got
    assert got["UDPWEAVE_BACKEND"] == "passthrough", got
    assert got["UDPWEAVE_RULES"] == "10.0.0.5:5004:jitter=1ms", got
    assert got["UDPWEAVE_ARENA_KB"] == "2048", "an inherited value was not kept"
    assert got["UDPWEAVE_STATS"] == str(tmp_path / "s.json"), got
    words = re.split(r"[ :]+", got["LD_PRELOAD"])
    shim = os.path.realpath(SHIM_LIB)
    want = [*SAN_RUNTIME, "/nonexistent/libasan.so.8", shim, "/nonexistent/libother.so"]
    assert words == want, f"LD_PRELOAD order {words}, expected {want}"


@pytest.mark.parametrize("script,status,signalled", [
    ("exit 0", 0, None),
    ("exit 3", 3, None),
    ("exit 255", 255, None),
    ("kill -KILL $$", 128 + signal.SIGKILL, "SIGKILL"),
    ("kill -USR1 $$", 128 + signal.SIGUSR1, "SIGUSR1"),
])
def test_run_exit_status(tmp_path, script, status, signalled):
    """The child's exit status, or 128 + the signal that killed it."""
    cp = cli(run_args("--", "sh", "-c", script), tmp_path)
    assert cp.returncode == status, describe(cp)
    header = [l for l in cp.stderr.splitlines() if l.startswith("udpweave: sh ")]
    assert header, describe(cp)
    if signalled:
        assert f"killed by signal {status - 128} ({signalled})" in header[0], describe(cp)
        if signalled == "SIGKILL":
            assert "wrote no stats" in cp.stderr, describe(cp)
        else:   # a default-disposition terminating signal: the library
            # sends its queue and writes its stats before the default action
            assert "wrote no stats" not in cp.stderr and "datagrams in:" in cp.stderr, \
                describe(cp)
    else:
        assert f"exited with status {status}" in header[0], describe(cp)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_run_forwards_signals(procs, tmp_path, sig):
    """SIGINT, SIGTERM and SIGHUP sent to udpweave reach the child: a child
    that catches it exits 40 + the signal number, and that is our status."""
    code = ("import signal, sys, time\n"
            "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
            "    signal.signal(s, lambda n, f: sys.exit(40 + n))\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    p = procs.popen([udpweave(), *run_args("--", "python3", "-c", code)],
                    env=cli_env(tmp_path), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    p.send_signal(sig)
    p.wait(timeout=20)
    assert p.returncode == 40 + sig, (f"status {p.returncode} after {sig!r}\n"
                                      f"{p.stderr.read()}")


def test_run_signal_kills_child(procs, tmp_path):
    """SIGTERM to udpweave with a child that does not catch it: 128+15."""
    p = procs.popen([udpweave(), *run_args("--", "sleep", "30")], env=cli_env(tmp_path),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: child_pids(p.pid), 5), "no child started"
    child = child_pids(p.pid)[0]
    wait_for(lambda: pathlib.Path(f"/proc/{child}/exe").resolve().name == "sleep", 5)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)
    assert p.returncode == 128 + signal.SIGTERM, p.stderr.read()
    assert not pathlib.Path(f"/proc/{child}").exists(), "the child survived"


def test_run_exec_failure(tmp_path):
    """A command that cannot be run: one line; 127 not found, 126 not executable."""
    cp = cli(run_args("--", "udpweave-no-such-command"), tmp_path)
    assert cp.returncode == 127, describe(cp)
    assert cp.stderr.splitlines() == [
        "udpweave: cannot run 'udpweave-no-such-command': No such file or directory"], describe(cp)
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\nexit 0\n")
    cp = cli(run_args("--", plain), tmp_path)
    assert cp.returncode == 126, describe(cp)
    assert len(cp.stderr.splitlines()) == 1, describe(cp)


def test_run_forked_child(receiver_factory, tmp_path):
    """A child forked by CMD writes its own stats: with FILE, to FILE.PID;
    the summary counts it as another process with the same totals."""
    rx = receiver_factory()
    stats = tmp_path / "st.json"
    cp = cli(run_args("--stats", stats, "--summary", "--",
                      *sender_args(rx, "--fork-exit", count=400)), tmp_path)
    assert cp.returncode == 0, describe(cp)
    sums = sender_summaries(cp.stdout)
    assert_delivered(rx.finish(), sums, describe(cp))
    parent = json.loads(stats.read_text())
    children = sorted(tmp_path.glob("st.json.*"))
    assert len(children) == 1, f"{children}\n{describe(cp)}"
    child = json.loads(children[0].read_text())
    rows = parse_summary(cp.stderr)
    assert_summary_matches(rows, parent, describe(cp))
    assert rows["other processes"][0] == "1", describe(cp)
    totals = note_pairs(rows["other processes"][1].replace("their totals:", ""))
    for key in ("datagrams_in", "datagrams_out", "bytes_out", "syscalls"):
        assert totals[key] == child[key], f"{key}: {totals} vs {child}\n{describe(cp)}"


# --------------------------------------------------------------------------
# bad input: one line, status 2, nothing started

def bad_cases(tmp_path):
    marker = tmp_path / "started"
    cmd = ["sh", "-c", f"touch {marker}"]
    return marker, [
        ("unknown option", ["--bogus", "--", *cmd]),
        ("unknown short option", ["-x", *cmd]),
        ("missing CMD", []),
        ("missing CMD after --", ["--"]),
        ("option without value", ["--max-delay-us"]),
        ("non-numeric delay", ["--max-delay-us", "banana", *cmd]),
        ("negative delay", ["--max-delay-us", "-1", *cmd]),
        ("delay with junk", ["--max-delay-us", "12abc", *cmd]),
        ("delay out of range", ["--max-delay-us", "99999999999", *cmd]),
        ("interval zero", ["--interval-us", "0", *cmd]),
        ("arena too small", ["--arena-kb", "12", *cmd]),
        ("arena non-numeric", ["--arena-kb", "lots", *cmd]),
        ("unknown backend", ["--backend", "nonsense", *cmd]),
        ("bad log level", ["--log", "chatty", *cmd]),
        ("empty rules", ["--rules", "", *cmd]),
        ("library missing", ["--lib", str(tmp_path / "nope.so"), *cmd]),
        ("library not ELF", ["--lib", "/etc/hostname", *cmd]),
        ("stats dir missing", ["--stats", str(tmp_path / "no" / "dir" / "s.json"), *cmd]),
        ("stats over a device", ["--stats", "/dev/null", *cmd]),
        ("stats is a directory", ["--stats", str(tmp_path), *cmd]),
    ]


def test_run_bad_input(tmp_path):
    """Each bad input: exactly one "udpweave: ..." line on stderr, nothing on
    stdout, exit status 2, the command never started (no marker file) and no
    private directory made."""
    marker, cases = bad_cases(tmp_path)
    for name, args in cases:
        lib = [] if any(a == "--lib" for a in args) else ["--lib", SHIM_LIB]
        require_shim()
        cp = cli(["run", *lib, *args], tmp_path)
        context = f"case {name!r}\n{describe(cp)}"
        assert cp.returncode == 2, context
        lines = cp.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("udpweave: "), context
        assert not cp.stdout, context
        assert not marker.exists(), f"the command was started\n{context}"
        assert not any((tmp_path / "tmpdir").iterdir()), f"a directory was made\n{context}"


def test_run_library_lookup(tmp_path):
    """Without --lib: next to the executable, then ../lib/udpweave; neither
    there (and nothing installed): one line, status 2."""
    require_shim()
    marker = tmp_path / "started"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "udpweave"
    shutil.copy(udpweave(), exe)
    args = [str(exe), "run", "--", "sh", "-c", f"touch {marker}"]
    installed = pathlib.Path("/usr/local/lib/udpweave/libudpweave.so").exists()
    if not installed:
        cp = subprocess.run(args, env=cli_env(tmp_path), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT)
        assert cp.returncode == 2 and not marker.exists(), describe(cp)
        assert "cannot find libudpweave.so" in cp.stderr, describe(cp)
        assert len(cp.stderr.splitlines()) == 1, describe(cp)
    libdir = tmp_path / "lib" / "udpweave"
    libdir.mkdir(parents=True)
    shutil.copy(SHIM_LIB, libdir / "libudpweave.so")
    cp = subprocess.run(args, env=cli_env(tmp_path), capture_output=True, text=True,
                        timeout=SUBPROCESS_TIMEOUT)
    assert cp.returncode == 0 and marker.exists(), describe(cp)
    check = subprocess.run([str(exe), "check"], env=cli_env(tmp_path), capture_output=True,
                           text=True, timeout=SUBPROCESS_TIMEOUT)
    assert f"OK   library: {libdir / 'libudpweave.so'}" in check.stdout.splitlines(), \
        describe(check)
    shutil.copy(SHIM_LIB, bindir / "libudpweave.so")
    check = subprocess.run([str(exe), "check"], env=cli_env(tmp_path), capture_output=True,
                           text=True, timeout=SUBPROCESS_TIMEOUT)
    assert f"OK   library: {bindir / 'libudpweave.so'}" in check.stdout.splitlines(), \
        describe(check)


# --------------------------------------------------------------------------
# check

def interfaces():
    return {name for _, name in socket.if_nameindex()}


def check_lines(cp):
    lines = cp.stdout.splitlines()
    bad = [l for l in lines if not LINE.match(l)]
    assert not bad, f"lines not of the form 'OK   thing: reason':\n{bad}\n{describe(cp)}"
    return {LINE.match(l).group(2): (LINE.match(l).group(1), LINE.match(l).group(3))
            for l in lines}


def test_check(tmp_path):
    """`udpweave check`: one OK/NO line for each item and each interface,
    status 0 for mmsg (and passthrough), for uring where io_uring works, and
    for packet where AF_PACKET TX_RING works with CAP_NET_RAW."""
    require_shim()
    before = interfaces()
    cp = cli(["check", "--lib", SHIM_LIB])
    after = interfaces()
    assert cp.returncode == 0, describe(cp)
    assert not cp.stderr, describe(cp)
    items = check_lines(cp)
    for thing in ("UDP_SEGMENT", "sendmmsg", "UDP GSO send", "AF_PACKET TX_RING",
                  "CAP_NET_RAW", "io_uring", "SO_TXTIME", "RLIMIT_MEMLOCK", "library",
                  "backend auto"):
        assert thing in items, f"no line for {thing!r}\n{describe(cp)}"
    for ifname in before & after:       # other tests may add or remove interfaces
        assert f"GSO via {ifname}" in items, f"no GSO line for {ifname}\n{describe(cp)}"
        assert f"qdisc {ifname}" in items, f"no qdisc line for {ifname}\n{describe(cp)}"
        assert re.match(r"mtu \d+", items[f"GSO via {ifname}"][1]), describe(cp)
    # this kernel (>= 4.18) and loopback always have UDP GSO
    assert items["UDP GSO send"][0] == "OK", describe(cp)
    assert items["GSO via lo"][0] == "OK", describe(cp)
    assert items["sendmmsg"][0] == "OK", describe(cp)
    assert items["backend auto"][0] == "OK", describe(cp)
    assert ("io_uring submission" in items["backend auto"][1]) == \
        (items["io_uring"][0] == "OK"), describe(cp)
    if os.geteuid() == 0:
        assert items["CAP_NET_RAW"][0] == "OK", describe(cp)
        assert items["AF_PACKET TX_RING"][0] == "OK", describe(cp)
    mtu = int(pathlib.Path("/sys/class/net/lo/mtu").read_text())
    assert items["GSO via lo"][1].startswith(f"mtu {mtu}"), describe(cp)

    uring = 0 if items["io_uring"][0] == "OK" else 1
    packet = 0 if items["AF_PACKET TX_RING"][0] == "OK" and items["CAP_NET_RAW"][0] == "OK" else 1
    for backend, status in (("passthrough", 0), ("packet", packet), ("uring", uring),
                            ("mmsg", 0)):
        c = cli(["check", "--lib", SHIM_LIB, "--backend", backend])
        assert c.returncode == status, describe(c)
        verdict = check_lines(c)[f"backend {backend}"]
        if backend == "packet":
            assert verdict[0] == ("NO" if status else "OK"), describe(c)
            assert status or "TX_RING works" in verdict[1], describe(c)
        if backend == "uring":
            assert verdict[0] == ("NO" if status else "OK"), describe(c)
    c = cli(["check", "--backend", "nonsense"])
    assert c.returncode == 2 and len(c.stderr.splitlines()) == 1 and not c.stdout, describe(c)


def test_check_in_namespace(tmp_path):
    """In a network namespace of our own: a veth end without TX checksum
    offload is reported as the kernel treats it (a GSO send through it
    fails with EIO before Linux 6.11, is checksummed in software since);
    the other end, multiqueue with an mq root, is reported with its
    children (fq on all queues: OK, where the kernel has fq)."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "tc", "ethtool")):
        pytest.skip("needs root, ip, tc and ethtool")
    require_shim()
    ns = f"uwcli{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def sh(*c, check=True):
            return subprocess.run(["ip", "netns", "exec", ns, *c], check=check,
                                  capture_output=True, text=True)
        sh("ip", "link", "add", "uwa", "numtxqueues", "2", "type", "veth",
           "peer", "name", "uwb", "numtxqueues", "2")
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "addr", "add", "10.77.0.1/24", "dev", "uwa")
        sh("ip", "link", "set", "uwa", "up")
        sh("ip", "link", "set", "uwb", "up")
        sh("ethtool", "-K", "uwa", "tx", "off")
        sh("tc", "qdisc", "replace", "dev", "uwb", "root", "handle", "1:", "mq")
        have_fq = all(sh("tc", "qdisc", "replace", "dev", "uwb", "parent", f"1:{q}", "fq",
                         check=False).returncode == 0 for q in (1, 2))
        cp = subprocess.run(["ip", "netns", "exec", ns, udpweave(), "check", "--lib", SHIM_LIB],
                            env=cli_env(), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT)
        assert cp.returncode == 0, describe(cp)
        items = check_lines(cp)
        assert set(items) >= {"GSO via lo", "GSO via uwa", "GSO via uwb", "qdisc lo",
                              "qdisc uwa", "qdisc uwb"}, describe(cp)
        assert items["GSO via uwb"][0] == "OK", describe(cp)
        if have_fq:
            assert items["qdisc uwb"] == ("OK", "root mq with fq on all 2 queues: "
                                                "departure times are honoured"), describe(cp)
        else:
            assert items["qdisc uwb"][0] == "NO", describe(cp)
            assert items["qdisc uwb"][1].startswith("root mq with fq on 0 of 2 queues"), \
                describe(cp)
        assert items["qdisc uwa"][0] == "NO", describe(cp)
        # what the NO line claims: the kernel refuses the GSO run with EIO
        probe = ("import socket, errno\n"
                 "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 "s.setsockopt(socket.SOL_UDP, 103, 1000)\n"
                 "try:\n"
                 "    s.sendto(b'x' * 3000, ('10.77.0.9', 9))\n"
                 "    print('sent')\n"
                 "except OSError as e:\n"
                 "    print(errno.errorcode[e.errno])\n")
        out = sh("python3", "-c", probe).stdout.strip()
        assert out in ("EIO", "sent"), f"GSO through uwa (tx checksum off): {out}"
        verdict, reason = items["GSO via uwa"]
        assert "no TX checksum offload" in reason, describe(cp)
        if out == "EIO":
            assert verdict == "NO" and "EIO" in reason, (
                f"the kernel refused the GSO send with EIO\n{describe(cp)}")
        else:
            assert verdict == "OK" and "in software" in reason, (
                f"the kernel sent the GSO run without checksum offload\n{describe(cp)}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# --------------------------------------------------------------------------
# stats: a live paced sender

def test_stats_live(receiver_factory, procs, tmp_path):
    """`udpweave stats PID` on a paced sender under the library: counters
    that grow, --json, --watch with rates until interrupted; once it exits,
    one line and status 1."""
    rx = receiver_factory()
    args = run_args("--stats", tmp_path / "s.json", "--",
                    *sender_args(rx, "--rate-pps", 400, count=2400))
    p = procs.popen([udpweave(), *map(str, args)],
                    env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
    pid = wait_for(lambda: child_pids(p.pid) and child_pids(p.pid)[0], 5)
    assert pid, "the sender did not start"
    seg = pathlib.Path(f"/dev/shm/udpweave.{pid}")
    if not wait_for(seg.exists, 3):
        p.kill()
        pytest.skip(f"the library publishes no live-stats segment ({seg} absent "
                    "while the sender runs)")

    first = cli(["stats", pid, "--json"])
    assert first.returncode == 0, describe(first)
    a = json.loads(first.stdout)
    time.sleep(1.0)
    human = cli(["stats", pid])
    assert human.returncode == 0, describe(human)
    assert human.stdout.startswith(f"udpweave: process {pid} (uw_sender)"), describe(human)
    rows = parse_summary(human.stdout)
    assert int(rows["datagrams in"][0]) > a["datagrams_in"], (
        f"counters did not grow: {a['datagrams_in']} -> {rows['datagrams in'][0]}")
    assert int(rows["datagrams out"][0]) > a["datagrams_out"], describe(human)
    assert rows["backend"][0] == "auto", describe(human)

    w = procs.popen([udpweave(), "stats", "--watch", str(pid)], env=cli_env(),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    w.send_signal(signal.SIGINT)
    out, err = w.communicate(timeout=10)
    assert w.returncode == 0, f"{out}\n{err}"
    samples = [b for b in out.split("\n\n") if b.strip()]
    assert len(samples) >= 2, out
    rate = re.search(r"^  datagrams in:\s+\d+\s+(\d+)/s", samples[-1], re.M)
    assert rate and 200 <= int(rate.group(1)) <= 800, (
        f"expected a rate near 400/s in the last sample\n{samples[-1]}")

    p.wait(timeout=30)
    assert p.returncode == 0, p.stderr.read()
    rx.finish()
    assert not seg.exists(), f"{seg} left after a clean exit"
    gone = cli(["stats", pid])
    assert gone.returncode == 1, describe(gone)
    assert gone.stderr.splitlines() == [f"udpweave: no process {pid}"], describe(gone)


# --------------------------------------------------------------------------
# stats: segments written by this test (include/udpweave_stats.h layout)

SAMPLE = {"backend": "mmsg", "datagrams_in": 1000, "bytes_in": 1316000,
          "datagrams_out": 990, "bytes_out": 1302840, "syscalls": 10, "batches": 10,
          "gso_runs": 20, "gso_segments": 990,
          "segments_per_run": {"mean": 49.5, "max": 50},
          "flushes_by_reason": {"deadline": 8, "exit": 2},
          "async_errors": 3, "async_errors_by_errno": {"ECONNREFUSED": 3},
          "a_key_from_the_future": {"nested": [1, 2, {"x": "y"}], "s": "\u00e9\"\\"},
          "max_queue_delay_us": 1999}


@pytest.fixture
def segment():
    """Writes /dev/shm/udpweave.<pid> as the library would; removed after."""
    made = []

    def write(pid, text, seq=2, magic=SEG_MAGIC, seg_pid=None):
        data = text.encode() if isinstance(text, str) else text
        path = pathlib.Path(f"/dev/shm/udpweave.{pid}")
        buf = bytearray(SEG_SIZE)
        SEG_HDR.pack_into(buf, 0, magic, seq, seg_pid or pid, len(data))
        buf[SEG_HDR.size:SEG_HDR.size + len(data)] = data
        path.write_bytes(bytes(buf))
        path.chmod(0o600)
        made.append(path)
        return path

    yield write
    for p in made:
        p.unlink(missing_ok=True)


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stats_segment_reader(segment):
    """A live pid's segment: the human form (unknown keys ignored, missing
    ones shown as a dash), --json verbatim."""
    pid = os.getpid()
    if pathlib.Path(f"/dev/shm/udpweave.{pid}").exists():
        pytest.skip("this test process has a real segment")
    text = json.dumps(SAMPLE)
    segment(pid, text + "\n")
    cp = cli(["stats", pid], extra_env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    assert cp.returncode == 0, describe(cp)
    rows = parse_summary(cp.stdout)
    assert rows["datagrams in"][0] == "1000", describe(cp)
    assert rows["bytes out"][0] == "1302840", describe(cp)
    assert rows["syscalls"] == ("10", "99.0 datagrams per syscall"), describe(cp)
    assert rows["GSO runs"] == ("20", "segments per run: mean 49.50, max 50"), describe(cp)
    assert rows["flushes"] == ("10", "deadline 8, exit 2"), describe(cp)
    assert rows["async errors"] == ("3", "ECONNREFUSED 3"), describe(cp)
    assert rows["max queue delay"][0] == "1999", describe(cp)
    for missing in ("datagrams dropped", "retries", "arena high water", "fallbacks"):
        assert rows[missing][0] == "\u2013", f"{missing}: {rows[missing]}\n{describe(cp)}"
    cp = cli(["stats", "--json", pid])
    assert cp.returncode == 0 and cp.stdout == text + "\n", describe(cp)
    # an ASCII locale gets a plain dash
    cp = cli(["stats", pid], extra_env={"LC_ALL": "C"})
    assert parse_summary(cp.stdout)["retries"][0] == "-", describe(cp)


def test_stats_counts_every_fallback(segment):
    """fallbacks: the core's and every backend's (packet's fallback
    datagrams by reason, uring's batches sent by mmsg); segments per run:
    datagrams per GSO run, not per message."""
    pid = os.getpid()
    if pathlib.Path(f"/dev/shm/udpweave.{pid}").exists():
        pytest.skip("this test process has a real segment")
    st = dict(SAMPLE, gso_runs=10, gso_segments=490,
              segments_per_run={"mean": 25.0, "max": 49},
              fallbacks={"gso_refused": 0, "gso_mtu_split": 0},
              backend_counters={"packet": {"fallback_datagrams": {"local": 9, "above_mtu": 1}},
                                "uring": {"mmsg_batches": 2, "ring_failures": 0, "zc_copied": 0}})
    segment(pid, json.dumps(st))
    cp = cli(["stats", pid])
    assert cp.returncode == 0, describe(cp)
    rows = parse_summary(cp.stdout)
    assert rows["fallbacks"][0] == "12", describe(cp)
    assert note_pairs(rows["fallbacks"][1]) == {"packet local": 9, "packet above_mtu": 1,
                                                "uring mmsg_batches": 2}, describe(cp)
    assert rows["GSO runs"] == ("10", "segments per run: mean 49.00, max 49"), describe(cp)


def test_stats_dead_pid(segment):
    """A segment whose process is gone: its last counters, a line saying so,
    status 1."""
    pid = dead_pid()
    segment(pid, json.dumps(SAMPLE))
    cp = cli(["stats", pid])
    assert cp.returncode == 1, describe(cp)
    assert cp.stderr.startswith(f"udpweave: process {pid} is not running"), describe(cp)
    assert len(cp.stderr.splitlines()) == 1, describe(cp)
    assert parse_summary(cp.stdout)["datagrams in"][0] == "1000", describe(cp)


def test_stats_bad_segments(segment):
    """No segment, a segment never stable (odd seq), a foreign file, a bad
    PID: one line each, status 1 (2 for bad usage)."""
    pid = os.getpid()
    if pathlib.Path(f"/dev/shm/udpweave.{pid}").exists():
        pytest.skip("this test process has a real segment")
    cp = cli(["stats", pid])
    assert cp.returncode == 1, describe(cp)
    assert "not running under udpweave, or it has not sent anything yet" in cp.stderr, describe(cp)
    assert len(cp.stderr.splitlines()) == 1 and not cp.stdout, describe(cp)

    segment(pid, json.dumps(SAMPLE), seq=3)
    cp = cli(["stats", pid])
    assert cp.returncode == 1 and len(cp.stderr.splitlines()) == 1, describe(cp)
    assert "stable" in cp.stderr, describe(cp)

    segment(pid, json.dumps(SAMPLE), magic=b"NOTMINE!")
    cp = cli(["stats", pid])
    assert cp.returncode == 1 and "not a udpweave stats segment" in cp.stderr, describe(cp)

    segment(pid, "{not json")
    cp = cli(["stats", pid])
    assert cp.returncode == 1 and "no valid JSON" in cp.stderr, describe(cp)

    for args in (["stats"], ["stats", "abc"], ["stats", "0"], ["stats", "1", "2"],
                 ["stats", "--bogus", "1"]):
        cp = cli(args)
        assert cp.returncode == 2 and len(cp.stderr.splitlines()) == 1, describe(cp)


def test_stats_refuses_planted_segment(segment):
    """A segment owned by another user than the process's (planted for a
    root process by nobody; for a gone pid: not the reader's): one line,
    status 2, nothing shown."""
    pid = os.getpid()
    if pathlib.Path(f"/dev/shm/udpweave.{pid}").exists():
        pytest.skip("this test process has a real segment")
    if os.geteuid() != 0:
        pytest.skip("needs root to plant a segment owned by another user")
    nobody = 65534
    for victim in (pid, dead_pid()):
        path = segment(victim, json.dumps(SAMPLE))
        os.chown(path, nobody, nobody)
        for args in (["stats", victim], ["stats", "--json", victim]):
            cp = cli(args)
            assert cp.returncode == 2, describe(cp)
            assert not cp.stdout, describe(cp)
            lines = cp.stderr.splitlines()
            assert len(lines) == 1 and f"owned by uid {nobody}, not by uid 0" in lines[0], describe(cp)
        os.chown(path, 0, 0)
        cp = cli(["stats", "--json", victim])
        assert cp.returncode in (0, 1) and json.loads(cp.stdout) == SAMPLE, describe(cp)


def test_library_sweeps_stale_segments(segment, receiver_factory, tmp_path):
    """A process creating its segment removes those of gone pids that are
    this user's regular files; a live pid's, another user's, a symlink and
    a name that is not a pid stay."""
    if os.geteuid() != 0:
        pytest.skip("needs root to plant a segment owned by another user")
    gone = [dead_pid() for _ in range(3)]
    stale = segment(gone[0], json.dumps(SAMPLE))
    foreign = segment(gone[1], json.dumps(SAMPLE))
    os.chown(foreign, 65534, 65534)
    link = pathlib.Path(f"/dev/shm/udpweave.{gone[2]}")
    link.symlink_to(stale)
    odd = pathlib.Path("/dev/shm/udpweave.12x")
    odd.write_text("x")
    live = segment(1, json.dumps(SAMPLE))	# pid 1 exists
    try:
        rx = receiver_factory()
        cp = cli(run_args("--stats", tmp_path / "s.json", "--",
                          *sender_args(rx, "--rate-pps", 2000, count=400)), tmp_path)
        assert cp.returncode == 0, describe(cp)
        assert not stale.exists(), "a gone pid's segment of this user was left"
        assert foreign.exists() and link.is_symlink() and odd.exists() and live.exists(), (
            sorted(p.name for p in pathlib.Path("/dev/shm").glob("udpweave.*")))
    finally:
        link.unlink(missing_ok=True)
        odd.unlink(missing_ok=True)


def test_stats_watch_until_exit(segment, procs):
    """--watch ends by itself (status 0) when the process exits."""
    p = procs.popen(["sleep", "2"])
    segment(p.pid, json.dumps(SAMPLE))
    cp = cli(["stats", "--watch", "--json", p.pid], timeout=20)
    assert cp.returncode == 0, describe(cp)
    assert f"udpweave: process {p.pid} exited" in cp.stderr, describe(cp)
    lines = cp.stdout.splitlines()
    assert 1 <= len(lines) <= 4 and all(json.loads(l) == SAMPLE for l in lines), describe(cp)


# --------------------------------------------------------------------------
# man pages

@pytest.mark.parametrize("page", ["udpweave.1", "udpweave.7"])
def test_man_page(page):
    """The man pages render with `man -l` without a single warning."""
    if not shutil.which("man"):
        pytest.skip("man not installed")
    path = REPO / "docs" / page
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    cp = subprocess.run(["man", "--warnings", "-l", str(path)], env=env,
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert not cp.stderr.strip(), f"{page}: warnings:\n{cp.stderr}"
    assert "NAME" in cp.stdout and "udpweave" in cp.stdout, cp.stdout[:500]
    assert "SEE ALSO" in cp.stdout, cp.stdout[-500:]
