"""The packet backend (UDPWEAVE_BACKEND=packet, issue 5) on real veth pairs.

Topology (created once for the module, names carry the test's pid):

    A (sender) ---veth--- B (receivers; router, ip_forward) ---veth--- C (receivers)
    10.9.0.1/24            10.9.0.2/24 | 10.9.1.1/24                    10.9.1.2/24
    fd00:9::1/64           fd00:9::2/64 | fd00:9:1::1/64                fd00:9:1::2/64

A reaches C through the gateway B, so C's frames must carry B's MAC. The
sender (tests/tools/uw_sender) runs in A under the shim, uw_receiver in B
and C verifies every byte and the per-flow order; the stats file tells
which way each datagram went (ring frames or a counted fallback), so a
backend that silently used its sockets fails. dumpcap on B's veth captures
what went over the wire and tshark checks the headers.

The neighbour entries of the next hops are resolved before a test runs
(the kernel drops what it parks on an unresolved neighbour beyond
unres_qlen_bytes, with or without the shim), with a long reachable time so
that they stay REACHABLE: a test that wants a resolution deletes one.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

import media
from conftest import (PRELOAD, SAN_RUNTIME, Run, assert_delivered, child_env, require_shim,
                      sender_summaries, tool, udpweave_lines)

PID = os.getpid()
NS = {k: f"uwp{PID}{k}" for k in "abc"}
DEV = {"a0": f"uwp{PID}a0", "b0": f"uwp{PID}b0", "b1": f"uwp{PID}b1", "c0": f"uwp{PID}c0"}
A4, B4, GW4, C4 = "10.9.0.1", "10.9.0.2", "10.9.1.1", "10.9.1.2"
A6, B6, GW6, C6 = "fd00:9::1", "fd00:9::2", "fd00:9:1::1", "fd00:9:1::2"
MC4, MC6 = "239.9.9.9", "ff05::9:9"
MC4_MAC, MC6_MAC = "01:00:5e:09:09:09", "33:33:00:09:00:09"
SIZES = [1316, 200, 29, 1472 - 20]     # odd and even lengths, up to a full frame
STEP_TIMEOUT = 30
REASONS = ("no_cap_net_raw", "local", "broadcast", "above_mtu", "tunnel", "link_type",
           "no_ring", "unresolved_neighbour", "multicast_loop", "v4_mapped", "route",
           "ip_options", "neighbour_refresh", "shaper")


def sh(*args, check=True, timeout=STEP_TIMEOUT):
    cp = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                        timeout=timeout)
    if check and cp.returncode:
        raise AssertionError(f"{' '.join(map(str, args))}: rc={cp.returncode} {cp.stderr}")
    return cp.stdout


def in_ns(ns, *args):
    return ["ip", "netns", "exec", NS[ns], *[str(a) for a in args]]


# --------------------------------------------------------------------------
# topology

def _need_root_and_tools():
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, veth pairs, AF_PACKET")
    for prog in ("ip", "dumpcap", "tshark", "setpriv"):
        if not shutil.which(prog):
            pytest.skip(f"{prog} not installed (scripts/deps.sh installs it)")


class Topology:
    def __init__(self):
        self.created = []
        self.mac = {}

    def add_ns(self, key):
        cp = subprocess.run(["ip", "netns", "add", NS[key]], capture_output=True, text=True)
        if cp.returncode:
            pytest.skip(f"cannot create a network namespace: {cp.stderr.strip()}")
        self.created.append(NS[key])
        sh("ip", "-n", NS[key], "link", "set", "lo", "up")

    def close(self):
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []

    def setup(self):
        for k in "abc":
            self.add_ns(k)
        sh("ip", "link", "add", DEV["a0"], "netns", NS["a"], "type", "veth",
           "peer", "name", DEV["b0"], "netns", NS["b"])
        sh("ip", "link", "add", DEV["b1"], "netns", NS["b"], "type", "veth",
           "peer", "name", DEV["c0"], "netns", NS["c"])
        for ns, dev, v4, v6 in (("a", "a0", A4, A6), ("b", "b0", B4, B6),
                                ("b", "b1", GW4, GW6), ("c", "c0", C4, C6)):
            sh("ip", "-n", NS[ns], "addr", "add", f"{v4}/24", "dev", DEV[dev])
            sh("ip", "-n", NS[ns], "addr", "add", f"{v6}/64", "dev", DEV[dev], "nodad")
            # the neighbours stay REACHABLE for the whole module once resolved
            sh(*in_ns(ns, "sysctl", "-qw",
                      f"net.ipv4.neigh.{DEV[dev]}.base_reachable_time_ms=600000",
                      f"net.ipv6.neigh.{DEV[dev]}.base_reachable_time_ms=600000"))
            sh("ip", "-n", NS[ns], "link", "set", DEV[dev], "up")
            self.mac[dev] = json.loads(sh("ip", "-j", "-n", NS[ns], "link", "show",
                                          DEV[dev]))[0]["address"]
        sh(*in_ns("b", "sysctl", "-qw", "net.ipv4.ip_forward=1",
                  "net.ipv6.conf.all.forwarding=1"))
        sh("ip", "-n", NS["a"], "route", "add", "10.9.1.0/24", "via", B4)
        sh("ip", "-n", NS["a"], "-6", "route", "add", "fd00:9:1::/64", "via", B6)
        sh("ip", "-n", NS["a"], "route", "add", "224.0.0.0/4", "dev", DEV["a0"])
        sh("ip", "-n", NS["c"], "route", "add", "default", "via", GW4)
        sh("ip", "-n", NS["c"], "-6", "route", "add", "default", "via", GW6)

    def neigh_state(self, ns, dev, addr):
        out = sh("ip", "-j", "-n", NS[ns], "neigh", "show", "to", addr, "dev", DEV[dev])
        entries = json.loads(out or "[]")
        return entries[0].get("state", []) if entries else []

    def resolve_neighbours(self):
        """Next hops of A (B, both families) and of B towards C: REACHABLE.
        One datagram from the namespace's own stack (no shim) makes the
        kernel resolve; then poll, bounded. (The module's neighbour entries
        stay REACHABLE for 10 minutes: base_reachable_time_ms.)"""
        hops = (("a", "a0", B4), ("a", "a0", B6), ("b", "b1", C4), ("b", "b1", C6))
        for ns, dev, addr in hops:
            if {"REACHABLE", "PERMANENT"} & set(self.neigh_state(ns, dev, addr)):
                continue
            # a STALE/DELAY entry would wait for its probe: start afresh
            sh("ip", "-n", NS[ns], "neigh", "flush", "to", addr, "dev", DEV[dev], check=False)
            fam = "AF_INET6" if ":" in addr else "AF_INET"
            sh(*in_ns(ns, "/usr/bin/python3", "-c",
                      f"import socket; socket.socket(socket.{fam}, socket.SOCK_DGRAM)"
                      f".sendto(b'x', ({addr!r}, 9))"))
            deadline = time.monotonic() + 10
            while not {"REACHABLE", "PERMANENT"} & set(self.neigh_state(ns, dev, addr)):
                assert time.monotonic() < deadline, \
                    f"neighbour {addr} in {NS[ns]} not resolved: {self.neigh_state(ns, dev, addr)}"
                time.sleep(0.02)


@pytest.fixture(scope="module")
def topo():
    _need_root_and_tools()
    t = Topology()
    try:
        t.setup()
        yield t
    finally:
        t.close()


@pytest.fixture
def net(topo):
    """The topology with every next hop resolved."""
    require_shim()
    topo.resolve_neighbours()
    return topo


# --------------------------------------------------------------------------
# processes in the namespaces

class NsReceiver:
    """uw_receiver in a namespace; finish() returns its JSON report."""

    def __init__(self, procs, tmp_path, ns, binds, expect=0, join=None):
        self.ready = tmp_path / f"rx-{ns}-{len(procs.procs)}.json"
        args = [tool("uw_receiver"), "--ready-file", self.ready, "--idle-ms", 5000,
                "--timeout-s", 40]
        for b in binds:
            args += ["--bind", b]
        if expect:
            args += ["--expect", expect]
        if join:
            args += ["--join", DEV[join]]
        self.binds = binds
        self.proc = procs.popen(in_ns(ns, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env())
        deadline = time.monotonic() + 10
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError("receiver died: " + self.proc.stderr.read())
            assert time.monotonic() < deadline, "receiver not ready within 10 s"
            time.sleep(0.01)
        self.ports = json.loads(self.ready.read_text())["ports"]

    def addr(self, i):
        host = self.binds[i].rsplit(":", 1)[0]
        return f"{host}:{self.ports[i]}"

    def finish(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"receiver did not finish: {err}")
        assert self.proc.returncode == 0, f"receiver failed: {err}"
        return json.loads(out.strip().splitlines()[-1])


def merge_reports(reports):
    """One report from several receivers (flow ids are unique per sender)."""
    out = dict(reports[0])
    out["flows"] = {}
    for r in reports:
        for fid, f in r["flows"].items():
            assert fid not in out["flows"], f"flow {fid} reached two receivers"
            out["flows"][fid] = f
    for key in ("datagrams", "zero_len", "short", "bad_magic", "bad_length", "truncated",
                "corrupt", "rx_overflow"):
        out[key] = sum(r[key] for r in reports)
    return out


def shim_env(tmp_path, extra=None, tag="stats"):
    """The packet backend. These tests follow every datagram through the
    ring, so a socket's first sends are queued too (UDPWEAVE_SYNC=0);
    test_first_sends_are_the_kernels_then_the_ring runs the default."""
    env = {"LD_PRELOAD": PRELOAD, "UDPWEAVE_BACKEND": "packet",
           "UDPWEAVE_STATS": str(tmp_path / f"{tag}-%p.json"), "UDPWEAVE_SYNC": 0}
    env.update(extra or {})
    return env


def ns_run(ns, args, env=None, wrap=(), timeout=60):
    """Runs args in namespace ns; env (the shim's variables) is given through
    env(1) inside the namespace, so that ip(8) itself is not preloaded."""
    cmd = in_ns(ns, *wrap, "env", *[f"{k}={v}" for k, v in (env or {}).items()],
                *[str(a) for a in args])
    try:
        cp = subprocess.run(cmd, env=child_env(), capture_output=True, text=True,
                            timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout} s: {' '.join(cmd)}\n{e.stderr}")
    return Run(cp, cmd)


def stats_files(tmp_path, tag="stats"):
    files = sorted(tmp_path.glob(f"{tag}-*.json"))
    assert files, f"no stats file {tag}-*.json written"
    return [json.loads(f.read_text()) for f in files]


def pkt(st):
    return st["backend_counters"]["packet"]


def fallbacks(st):
    """The non-zero fallback counters."""
    fb = pkt(st)["fallback_datagrams"]
    assert set(fb) == set(REASONS), f"fallback reasons changed: {sorted(fb)}"
    return {k: v for k, v in fb.items() if v}


def describe_stats(st):
    p = pkt(st)
    keep = ("frames", "kicks", "kick_retries", "gso_frames", "rings", "neighbour_triggers",
            "longest_same_destination_burst")
    return (f"stats: datagrams_in={st['datagrams_in']} datagrams_out={st['datagrams_out']} "
            f"batches={st['batches']} syscalls={st['syscalls']} "
            f"packet={ {k: p.get(k) for k in keep} } fallback={fallbacks(st)} "
            f"mmsg={st['backend_counters']['mmsg']} "
            f"passthrough={st['backend_counters']['passthrough']}")


def sent_total(sums):
    return sum(s["sent_total"] + s["zero_len_total"] for s in sums)


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def assert_source_ports(rx, sums):
    """The receiver saw each flow from its socket's port (getsockname)."""
    for s in sums:
        for fid, f in s["flows"].items():
            got = rx["flows"][fid]
            assert port_of(got["src"]) == port_of(f["src"]), (fid, got["src"], f["src"])
            assert got["src_mismatch"] == got["tos_mismatch"] == got["ttl_mismatch"] == 0, got


def assert_all_through_ring(st, sums, context):
    """Every datagram went out as a ring frame: none through a socket."""
    n = sent_total(sums)
    msg = f"{context}\n{describe_stats(st)}"
    assert st["datagrams_in"] == n and st["datagrams_out"] == n, msg
    assert fallbacks(st) == {}, msg
    assert pkt(st)["frames"] == n, msg
    assert st["backend_counters"]["mmsg"]["sendmmsg_calls"] == 0, msg
    assert st["backend_counters"]["passthrough"]["sendmsg_calls"] == 0, msg
    assert pkt(st)["neighbour_triggers"] == 0, msg
    # one kick per batch and ring (the rings are larger than any batch here;
    # sockets of different SO_PRIORITY, which IP_TOS sets, use different rings)
    kicks = pkt(st)["kicks"] - pkt(st)["kick_retries"]
    assert st["batches"] <= kicks <= st["batches"] * pkt(st)["rings"], msg


# --------------------------------------------------------------------------
# capture

class Capture:
    """dumpcap on a device of a namespace; frames() reads the file back
    with tshark (checksums verified).

    dumpcap says "Capturing on" before its filter is in place, so a sleep
    after that line is a race (on a loaded machine it missed a whole run).
    Instead a probe in A sends a datagram to B's discard port every 50 ms
    until dumpcap reports a packet written; frames() leaves the probes out."""

    PROBE_PORT = 9

    def __init__(self, procs, tmp_path, ns, dev, name, bpf="udp"):
        self.path = tmp_path / f"{name}.pcapng"
        self.proc = procs.popen(in_ns(ns, "dumpcap", "-i", DEV[dev], "-f", bpf,
                                      "-B", "64", "-w", self.path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=child_env())
        self._err = bytearray()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        probe = procs.popen(in_ns("a", "/usr/bin/python3", "-c",
                                  "import socket,time\n"
                                  "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                                  "for _ in range(300):\n"
                                  f"    s.sendto(b'uwprobe',('{B4}',{self.PROBE_PORT}))\n"
                                  "    time.sleep(0.05)\n"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        try:
            while b"Packets: " not in self._err:
                assert self.proc.poll() is None, "dumpcap died: " + self.err()
                assert time.monotonic() < deadline, \
                    f"dumpcap captured no probe within 15 s: {self.err()}"
                time.sleep(0.02)
        finally:
            probe.kill()
            probe.wait()
        time.sleep(0.1)     # a probe still in flight

    def _read_stderr(self):
        while chunk := self.proc.stderr.read1(4096):
            self._err += chunk

    def err(self):
        return self._err.decode(errors="replace")

    def stop(self):
        time.sleep(0.2)    # the last frames of the veth
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("dumpcap did not stop")
        self._reader.join(timeout=5)
        err = self.err()
        m = re.search(r"received/dropped on interface '[^']*': (\d+)/(\d+)", err)
        assert m, f"dumpcap did not report its counts: {err}"
        assert int(m.group(2)) == 0, f"the capture dropped frames: {err}"

    FIELDS = ("frame.number", "eth.src", "eth.dst", "ip.src", "ip.dst", "ipv6.src",
              "ipv6.dst", "ip.ttl", "ipv6.hlim", "ip.dsfield", "ipv6.tclass", "ip.flags.df",
              "ip.checksum.status", "udp.srcport", "udp.dstport", "udp.checksum",
              "udp.checksum.status", "udp.length", "ip.flags.mf", "ip.frag_offset")

    def frames(self):
        """One dict per UDP frame, in capture order."""
        cp = subprocess.run(["tshark", "-n", "-r", str(self.path),
                             "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                             "-T", "fields", "-E", "separator=|", "-E", "occurrence=f",
                             *sum((["-e", f] for f in self.FIELDS), [])],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        out = []
        for line in cp.stdout.splitlines():
            f = dict(zip(self.FIELDS, line.split("|")))
            if not f.get("udp.srcport"):
                continue     # an IP fragment without the UDP header
            if f["udp.dstport"] == str(self.PROBE_PORT):
                continue     # the start-up probe
            f["src"] = f["ip.src"] or f["ipv6.src"]
            f["dst"] = f["ip.dst"] or f["ipv6.dst"]
            out.append(f)
        return out


def longest_run(keys):
    best = cur = 0
    prev = None
    for k in keys:
        cur = cur + 1 if k == prev else 1
        prev = k
        best = max(best, cur)
    return best


# --------------------------------------------------------------------------
# 1. every send path, direct and through the gateway, IPv4 and IPv6

CONNECTED_MODES = ["send", "sendto", "sendmsg", "sendmmsg", "write", "writev"]
UNCONNECTED_MODES = ["sendto", "sendmsg", "sendmmsg"]
PATHS = ([pytest.param(m, True, id=f"{m}-connected") for m in CONNECTED_MODES]
         + [pytest.param(m, False, id=f"{m}-unconnected") for m in UNCONNECTED_MODES])


def four_receivers(procs, tmp_path, expect_per_flow=0):
    """B's and C's receivers, IPv4 and IPv6 each; the four destinations."""
    rb = NsReceiver(procs, tmp_path, "b", [f"{B4}:0", f"[{B6}]:0"], expect=2 * expect_per_flow)
    rc = NsReceiver(procs, tmp_path, "c", [f"{C4}:0", f"[{C6}]:0"], expect=2 * expect_per_flow)
    dests = [rb.addr(0), rb.addr(1), rc.addr(0), rc.addr(1)]
    return rb, rc, dests


@pytest.mark.parametrize("mode,connected", PATHS)
def test_every_send_path_goes_through_the_ring(net, procs, tmp_path, mode, connected):
    """Datagrams (and zero-length ones) of one send path to B directly and to
    C through the gateway B, IPv4 and IPv6: every one arrives, intact, in
    order, from the socket's port, and every one was a ring frame."""
    count = 200
    rb, rc, dests = four_receivers(procs, tmp_path)
    args = [tool("uw_sender"), "--mode", mode, "--count", count, "--zero-len",
            "--sizes", ",".join(map(str, SIZES))]
    for d in dests:
        args += ["--dest", d]
    if connected:
        args.append("--connected")
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe(), ports=rb.ports + rc.ports)
    assert_source_ports(rx, sums)
    assert udpweave_lines(r.stderr) == [], r.stderr
    (st,) = stats_files(tmp_path)
    assert_all_through_ring(st, sums, r.describe())
    # C is one hop further: the gateway forwarded what A's ring sent to B's MAC
    for fid, f in sums[0]["flows"].items():
        assert rx["flows"][fid]["ttl"] == (64 if f["dest_index"] < 2 else 63), rx["flows"][fid]


def test_first_sends_are_the_kernels_then_the_ring(net, procs, tmp_path):
    """The default configuration: each connected socket's first send goes
    through the socket (the kernel judges it: routes, firewall, ICMP), and
    once the socket sends faster than half the max delay its datagrams are
    ring frames. A socket to an address with no route gets the kernel's
    error on its first call, as without the library, and nothing queued."""
    count = 300
    rb, rc, dests = four_receivers(procs, tmp_path)
    args = [tool("uw_sender"), "--mode", "send", "--count", count, "--sizes", "1316",
            "--connected"]
    for d in dests:
        args += ["--dest", d]
    env = shim_env(tmp_path, {"UDPWEAVE_SYNC": 1})
    r = ns_run("a", args, env)
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe(), ports=rb.ports + rc.ports)
    (st,) = stats_files(tmp_path)
    msg = f"{r.describe()}\n{describe_stats(st)} sync={st['sync_datagrams']}"
    n = sent_total(sums)
    assert st["datagrams_in"] == st["datagrams_out"] == n, msg
    assert fallbacks(st) == {}, msg
    assert st["sync_datagrams"] >= 4, msg               # one per socket at least
    assert pkt(st)["frames"] + st["sync_datagrams"] == n, msg
    assert pkt(st)["frames"] >= n // 2, msg              # the ring sent the stream
    no_route = ["ip", "netns", "exec", NS["a"], "/usr/bin/python3", "-c",
                "import socket,errno\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "r=[]\n"
                "for i in range(3):\n"
                "    try: s.sendto(b'x'*100,('10.99.0.1',9)); r.append('ok')\n"
                "    except OSError as e: r.append(errno.errorcode[e.errno])\n"
                "print(','.join(r))"]
    base = subprocess.run(no_route, capture_output=True, text=True, timeout=30)
    shim = subprocess.run(["ip", "netns", "exec", NS["a"], "env",
                           *[f"{k}={v}" for k, v in env.items()], *no_route[4:]],
                          capture_output=True, text=True, timeout=30)
    assert base.stdout.strip() == "ENETUNREACH,ENETUNREACH,ENETUNREACH", base
    assert shim.stdout.strip() == base.stdout.strip(), shim


@pytest.mark.parametrize("bypass", [0, 1], ids=["qdisc", "qdisc_bypass"])
def test_threads_and_batches_larger_than_the_ring(net, procs, tmp_path, bypass):
    """4 threads with their own connected sockets (every send path), small
    datagrams and a 512 KiB arena: a batch holds more datagrams than the
    ring has frames (1.5 KiB each), so the ring is kicked and reused within
    a batch, and flushes come from the sending threads as well as the flush
    thread. With and without PACKET_QDISC_BYPASS: nothing lost, in order."""
    count = 5000
    rb = NsReceiver(procs, tmp_path, "b", [f"{B4}:0", f"[{B6}]:0"], expect=8 * count)
    args = [tool("uw_sender"), "--count", count, "--sizes", "29,40,28,64", "--mode", "mixed",
            "--connected", "--threads", 4, "--dest", rb.addr(0), "--dest", rb.addr(1)]
    # batches bounded by the arena, not by the delay (however slow the
    # senders, e.g. under ThreadSanitizer)
    env = shim_env(tmp_path, {"UDPWEAVE_ARENA_KB": 512, "UDPWEAVE_MAX_DELAY_US": 500000,
                              "UDPWEAVE_PACKET_QDISC_BYPASS": bypass})
    r = ns_run("a", args, env)
    sums = sender_summaries(r)
    rx = rb.finish()
    assert_delivered(rx, sums, r.describe(), ports=rb.ports)
    assert_source_ports(rx, sums)
    (st,) = stats_files(tmp_path)
    msg = f"{r.describe()}\n{describe_stats(st)}"
    n = sent_total(sums)
    assert st["datagrams_out"] == n and pkt(st)["frames"] == n, msg
    assert fallbacks(st) == {}, msg
    frames_in_ring = pkt(st)["ring_bytes"] // 1536      # at least 1.5 KiB a frame
    assert n > 3 * frames_in_ring, msg
    # more kicks than batches: the ring filled within a batch
    assert pkt(st)["kicks"] > st["batches"], msg
    assert st["flushes_by_reason"]["arena_full"] > 0, msg     # inline, by a sender


# --------------------------------------------------------------------------
# 2. on the wire: checksums, source port, TTL/TOS, DF, MACs

def wire_run(net, procs, tmp_path, shim, name):
    count = 60
    rb, rc, dests = four_receivers(procs, tmp_path, expect_per_flow=count)
    cap = Capture(procs, tmp_path, "b", "b0", name)
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES)),
            "--ttl", 7, "--tos", "0x28"]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, shim_env(tmp_path, tag=name) if shim else None)
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    cap.stop()
    assert_delivered(rx, sums, r.describe())
    return sums, rx, cap.frames()


def test_wire_headers_match_the_kernel(net, procs, tmp_path):
    """dumpcap on B's veth: the ring's frames carry valid IPv4 header and UDP
    checksums (IPv6: never 0), the socket's source port, the TTL/hop limit
    and TOS/traffic class set on the socket, the DF bit as the kernel sets
    it without the shim, A's MAC as source and B's MAC as destination (also
    for C, through the gateway)."""
    base_sums, _, base = wire_run(net, procs, tmp_path, False, "baseline")
    sums, rx, frames = wire_run(net, procs, tmp_path, True, "shim")
    (st,) = stats_files(tmp_path, "shim")
    assert_all_through_ring(st, sums, "")
    n = sent_total(sums)
    assert len(frames) == n, f"captured {len(frames)} UDP frames, sent {n}"
    assert len(base) == sent_total(base_sums)

    ports = {port_of(f["src"]) for s in sums for f in s["flows"].values()}
    bad = []
    for f in frames:
        v6 = bool(f["ipv6.src"])
        if f["eth.src"] != net.mac["a0"] or f["eth.dst"] != net.mac["b0"]:
            bad.append(f"MACs {f['eth.src']} -> {f['eth.dst']}")
        if f["udp.checksum.status"] != "1":
            bad.append(f"UDP checksum {f['udp.checksum']} status {f['udp.checksum.status']}")
        if v6 and int(f["udp.checksum"], 16) == 0:
            bad.append("IPv6 UDP checksum 0")
        if not v6 and f["ip.checksum.status"] != "1":
            bad.append(f"IPv4 header checksum status {f['ip.checksum.status']}")
        if int(f["udp.srcport"]) not in ports:
            bad.append(f"source port {f['udp.srcport']}, sockets have {sorted(ports)}")
        if (f["ipv6.hlim"] if v6 else f["ip.ttl"]) != "7":
            bad.append(f"TTL/hop limit {f['ipv6.hlim'] or f['ip.ttl']}")
        if int(f["ipv6.tclass"] if v6 else f["ip.dsfield"], 16) != 0x28:
            bad.append(f"TOS {f['ipv6.tclass'] or f['ip.dsfield']}")
        if f["src"] not in (A4, A6):
            bad.append(f"source address {f['src']}")
    assert not bad, f"{len(bad)} bad frames, e.g. " + "; ".join(sorted(set(bad))[:10])

    # DF: as the kernel's own frames have it, per destination
    def df(fs):
        return {(f["dst"], f["ip.flags.df"]) for f in fs if f["ip.src"]}
    assert df(frames) == df(base), (df(frames), df(base))
    # and the receiver saw what the socket asked for
    for fid, f in rx["flows"].items():
        assert f["tos"] == 0x28, f
        assert f["ttl"] == (7 if sums[0]["flows"][fid]["dest_index"] < 2 else 6), f
    assert_source_ports(rx, sums)


# --------------------------------------------------------------------------
# 3. multicast

def test_multicast_to_a_group_joined_in_b(net, procs, tmp_path):
    """IPv4 and IPv6 groups joined by a receiver in B: the ring's frames carry
    the groups' multicast MACs and the socket's multicast TTL (1), and all
    are delivered."""
    count = 300
    rb = NsReceiver(procs, tmp_path, "b", [f"{MC4}:0", f"[{MC6}]:0"], expect=2 * count,
                    join="b0")
    cap = Capture(procs, tmp_path, "b", "b0", "mc")
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES)),
            "--dest", rb.addr(0), "--dest", rb.addr(1)]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    rx = rb.finish()
    cap.stop()
    assert_delivered(rx, sums, r.describe())
    (st,) = stats_files(tmp_path)
    assert_all_through_ring(st, sums, r.describe())
    frames = cap.frames()
    assert len(frames) == 2 * count
    macs = {(f["dst"], f["eth.dst"], f["ip.ttl"] or f["ipv6.hlim"]) for f in frames}
    assert macs == {(MC4, MC4_MAC, "1"), (MC6, MC6_MAC, "1")}, macs
    assert all(f["udp.checksum.status"] == "1" for f in frames)


def test_multicast_with_a_local_member_falls_back(net, procs, tmp_path):
    """A member of the groups in A itself and IP_MULTICAST_LOOP on (the
    default): the kernel must loop copies back, which injected frames would
    not get, so these flows go through the socket (multicast_loop) and both
    the local and the remote member receive everything."""
    count = 300
    rb = NsReceiver(procs, tmp_path, "b", [f"{MC4}:0", f"[{MC6}]:0"], expect=2 * count,
                    join="b0")
    ra = NsReceiver(procs, tmp_path, "a", [f"{MC4}:{rb.ports[0]}", f"[{MC6}]:{rb.ports[1]}"],
                    expect=2 * count, join="a0")
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES)),
            "--dest", rb.addr(0), "--dest", rb.addr(1)]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    for rep in (rb.finish(), ra.finish()):
        assert_delivered(rep, sums, r.describe())
    (st,) = stats_files(tmp_path)
    msg = describe_stats(st)
    assert fallbacks(st) == {"multicast_loop": 2 * count}, msg
    assert pkt(st)["frames"] == 0, msg
    assert st["datagrams_out"] == 2 * count, msg


# --------------------------------------------------------------------------
# 4. a neighbour deleted while the flows run

NEIGH_NOTICE_S = 0.3


def test_neighbour_deleted_mid_stream_is_resolved_again(net, procs, tmp_path):
    """`ip neigh del` of B (IPv4 and IPv6) in A while a paced sender runs:
    the backend learns it from its event socket, sends the flow's next
    datagram through the socket so that the kernel resolves B again
    (neighbour_triggers), goes on with ring frames, and nothing is lost."""
    count, pps = 1200, 2000     # 2 flows, 1.2 s
    rb = NsReceiver(procs, tmp_path, "b", [f"{B4}:0", f"[{B6}]:0"], expect=2 * count)
    args = [tool("uw_sender"), "--count", count, "--rate-pps", pps,
            "--sizes", ",".join(map(str, SIZES)), "--dest", rb.addr(0), "--dest", rb.addr(1)]
    env = child_env()
    cmd = in_ns("a", "env", *[f"{k}={v}" for k, v in shim_env(tmp_path).items()],
                *map(str, args))
    sender = procs.popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(0.4)
    assert sender.poll() is None, "the sender ended before the neighbours were deleted"
    for addr in (B4, B6):
        sh("ip", "-n", NS["a"], "neigh", "del", addr, "dev", DEV["a0"])
    deleted_at = time.monotonic()
    # Only the backend's datagram through the socket makes A's kernel ask
    # for B again (ring frames bypass the neighbour layer, and B never
    # sends to A): the entries come back once the backend saw the change.
    back, gone = {}, set()
    while len(back) < 2 and time.monotonic() - deleted_at < 3:
        for addr in (B4, B6):
            state = net.neigh_state("a", "a0", addr)
            if not state or state == ["FAILED"]:
                gone.add(addr)
            elif "REACHABLE" in state and addr not in back:
                back[addr] = time.monotonic() - deleted_at
        time.sleep(0.005)
    try:
        out, err = sender.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        sender.kill()
        raise AssertionError("the sender did not finish")
    assert time.monotonic() - deleted_at > 0.3, "the sender had finished too soon"
    r = Run(subprocess.CompletedProcess(cmd, sender.returncode, out, err), cmd)
    sums = sender_summaries(r)
    rx = rb.finish()
    assert_delivered(rx, sums, r.describe())
    (st,) = stats_files(tmp_path)
    p, msg = pkt(st), describe_stats(st)
    assert p["neighbour_triggers"] >= 2, msg      # one per family at least
    fb = fallbacks(st)
    assert set(fb) <= {"neighbour_refresh", "unresolved_neighbour"}, msg
    assert fb.get("neighbour_refresh", 0) == p["neighbour_triggers"], msg
    assert p["frames"] + sum(fb.values()) == 2 * count, msg
    assert p["frames"] >= 2 * count - 50, msg     # back on the ring after the refresh
    # the change was noticed from the event socket, not at the next
    # periodic revalidation (every second)
    print(f"neighbours back after {back} s (seen gone: {sorted(gone)})")
    assert len(back) == 2, f"neighbours not resolved again: {back}"
    assert max(back.values()) < NEIGH_NOTICE_S, f"neighbours back only after {back} s"


def test_unresolved_next_hop_is_resolved_by_the_first_datagram(net, procs, tmp_path):
    """No neighbour entry for B (the next hop of all four flows) when the
    sender starts: each flow's first datagram goes through its socket, the
    kernel resolves B from it, the rest are ring frames; none is dropped,
    the order holds."""
    count = 300
    for addr in (B4, B6):
        sh("ip", "-n", NS["a"], "neigh", "del", addr, "dev", DEV["a0"])
        assert not net.neigh_state("a", "a0", addr), f"{addr} still known"
    rb, rc, dests = four_receivers(procs, tmp_path, expect_per_flow=count)
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES))]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe(), ports=rb.ports + rc.ports)
    (st,) = stats_files(tmp_path)
    p, msg = pkt(st), describe_stats(st)
    fb = fallbacks(st)
    assert set(fb) <= {"neighbour_refresh", "unresolved_neighbour"}, msg
    # the first flow to each next hop (B4, B6) at least; the others too if
    # they were in the same batch
    assert fb.get("neighbour_refresh", 0) == p["neighbour_triggers"] >= 2, msg
    assert p["frames"] + sum(fb.values()) == st["datagrams_out"] == 4 * count, msg
    assert p["frames"] > 0, msg
    for addr in (B4, B6):
        assert "REACHABLE" in net.neigh_state("a", "a0", addr), addr


@pytest.mark.parametrize("state", ["absent", "stale"])
def test_neighbour_refresh_with_one_datagram_in_the_flow(net, procs, tmp_path, state):
    """A flow with a single datagram in its batch (a low-rate stream, an RTCP
    report) whose next hop is unknown or STALE: that datagram is the one
    sent through the socket to make the kernel resolve or confirm B; it
    must not be sent a second time, nor counted as anything else."""
    for addr in (B4, B6):
        if state == "absent":
            sh("ip", "-n", NS["a"], "neigh", "del", addr, "dev", DEV["a0"])
        else:
            sh("ip", "-n", NS["a"], "neigh", "change", addr, "lladdr", net.mac["b0"],
               "dev", DEV["a0"], "nud", "stale")
            assert "STALE" in net.neigh_state("a", "a0", addr)
    rb, rc, dests = four_receivers(procs, tmp_path, expect_per_flow=1)
    args = [tool("uw_sender"), "--count", 1, "--sizes", "200"]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe(), ports=rb.ports + rc.ports)
    (st,) = stats_files(tmp_path)
    p, msg = pkt(st), describe_stats(st)
    # the first flow to each next hop (B4, B6) triggers; so do the others if
    # they were in the same batch, else they find B resolved: ring frames
    n = p["neighbour_triggers"]
    assert 2 <= n <= 4 and fallbacks(st) == {"neighbour_refresh": n}, msg
    assert p["frames"] == 4 - n, msg
    assert st["datagrams_out"] == 4, msg
    # the kernel saw traffic through its neighbour entry: resolved, or (from
    # STALE) waiting to confirm it (DELAY, PROBE)
    for addr in (B4, B6):
        got = net.neigh_state("a", "a0", addr)
        assert {"REACHABLE", "DELAY", "PROBE"} & set(got), (addr, got)


# --------------------------------------------------------------------------
# 5. without CAP_NET_RAW

def test_without_cap_net_raw_everything_goes_through_sockets(net, procs, tmp_path):
    """CAP_NET_RAW dropped from the bounding set (root keeps the others):
    one warning line, the mmsg backend for every datagram, all delivered."""
    count = 300
    rb, rc, dests = four_receivers(procs, tmp_path, expect_per_flow=count)
    args = [tool("uw_sender"), "--count", count, "--sizes", ",".join(map(str, SIZES))]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, shim_env(tmp_path),
               wrap=("setpriv", "--inh-caps=-all", "--bounding-set=-net_raw"))
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe())
    lines = udpweave_lines(r.stderr)
    assert len(lines) == 1 and "CAP_NET_RAW" in lines[0], r.stderr
    (st,) = stats_files(tmp_path)
    msg = describe_stats(st)
    assert fallbacks(st) == {"no_cap_net_raw": 4 * count}, msg
    assert pkt(st)["frames"] == 0 and pkt(st)["rings"] == 0, msg
    assert st["backend_counters"]["mmsg"]["messages_sent"] > 0, msg
    assert st["datagrams_out"] == 4 * count, msg


# --------------------------------------------------------------------------
# 6. local destinations, datagrams above the MTU

def test_local_destinations_and_large_datagrams_fall_back(net, procs, tmp_path):
    """Loopback and A's own addresses (the kernel drops injected frames with a
    local source): `local`. 3000-byte datagrams to B (IP fragments): the
    flow's batches go through its socket, `above_mtu`. All delivered."""
    count = 200
    ra = NsReceiver(procs, tmp_path, "a", ["127.0.0.1:0", f"{A4}:0", "[::1]:0", f"[{A6}]:0"],
                    expect=4 * count)
    rb = NsReceiver(procs, tmp_path, "b", [f"{B4}:0", f"[{B6}]:0"], expect=2 * count)
    args = [tool("uw_sender"), "--count", count, "--sizes", "3000,1316"]
    for rec, n in ((ra, 4), (rb, 2)):
        for i in range(n):
            args += ["--dest", rec.addr(i)]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    rx = merge_reports([ra.finish(), rb.finish()])
    assert_delivered(rx, sums, r.describe(), sizes=[3000, 1316])
    (st,) = stats_files(tmp_path)
    msg = describe_stats(st)
    fb = fallbacks(st)
    assert set(fb) == {"local", "above_mtu"}, msg
    assert fb["local"] == 4 * count, msg
    # every 3000-byte datagram, and whatever shared a batch with one
    assert count <= fb["above_mtu"] <= 2 * count, msg
    assert pkt(st)["frames"] + fb["above_mtu"] == 2 * count, msg
    assert st["datagrams_out"] == 6 * count, msg


@pytest.mark.parametrize("family,fits", [(4, 1472), (6, 1452)], ids=["ipv4", "ipv6"])
def test_full_mtu_datagrams_are_frames_one_byte_more_falls_back(net, procs, tmp_path,
                                                                 family, fits):
    """The boundary of the MTU check (1500 - IP - UDP headers): datagrams
    of exactly that size are ring frames, one byte more and the flow goes
    through its socket (above_mtu); both delivered, directly and through
    the gateway."""
    count = 50
    host_b, host_c = (B4, C4) if family == 4 else (f"[{B6}]", f"[{C6}]")
    rb = NsReceiver(procs, tmp_path, "b", [f"{host_b}:0"], expect=2 * count)
    rc = NsReceiver(procs, tmp_path, "c", [f"{host_c}:0"], expect=2 * count)
    got = {}
    for size in (fits, fits + 1):
        tag = f"s{size}"
        args = [tool("uw_sender"), "--count", count, "--sizes", size, "--flow-base", size * 10,
                "--dest", rb.addr(0), "--dest", rc.addr(0)]
        r = ns_run("a", args, shim_env(tmp_path, tag=tag))
        got[size] = (r, sender_summaries(r), stats_files(tmp_path, tag)[0])
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, got[fits][1] + got[fits + 1][1], got[fits][0].describe())
    st = got[fits][2]
    assert fallbacks(st) == {} and pkt(st)["frames"] == 2 * count, describe_stats(st)
    st = got[fits + 1][2]
    assert fallbacks(st) == {"above_mtu": 2 * count}, describe_stats(st)
    assert pkt(st)["frames"] == 0, describe_stats(st)


def test_large_datagrams_of_a_flow_whose_next_hop_was_just_resolved(net, procs, tmp_path):
    """The flow's next hop is unknown at its first batch, which also holds
    3000-byte datagrams: once the first datagram has made the kernel resolve
    B, the flow is resolved again, and must still keep what exceeds the MTU
    off the ring (a ring frame holds one MTU)."""
    count = 40
    for addr in (B4, B6):
        sh("ip", "-n", NS["a"], "neigh", "del", addr, "dev", DEV["a0"])
    rb = NsReceiver(procs, tmp_path, "b", [f"{B4}:0", f"[{B6}]:0"], expect=2 * count)
    args = [tool("uw_sender"), "--count", count, "--sizes", "1316,3000",
            "--dest", rb.addr(0), "--dest", rb.addr(1)]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    rx = rb.finish()
    assert_delivered(rx, sums, r.describe(), sizes=[1316, 3000])
    (st,) = stats_files(tmp_path)
    p, msg = pkt(st), describe_stats(st)
    fb = fallbacks(st)
    assert set(fb) <= {"above_mtu", "neighbour_refresh", "unresolved_neighbour"}, msg
    assert fb.get("above_mtu", 0) >= count - 2, msg     # the 3000-byte ones, but triggers
    assert p["frames"] + sum(fb.values()) == 2 * count, msg


# --------------------------------------------------------------------------
# 7. interleaving, fork

ROUND_BURST, ROUNDS = 16, 6


def bursty_run(net, procs, tmp_path, name, env):
    """The application sends ROUND_BURST datagrams to one destination, then
    to the next (as GStreamer's multiudpsink sends a buffer list), pausing
    between rounds longer than the delay so that a batch is one round."""
    rb, rc, dests = four_receivers(procs, tmp_path, expect_per_flow=ROUND_BURST * ROUNDS)
    cap = Capture(procs, tmp_path, "b", "b0", name)
    args = [tool("uw_sender"), "--count", ROUND_BURST * ROUNDS, "--sizes", "1316",
            "--burst", ROUND_BURST, "--pause-us", 150000]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, env)
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    cap.stop()
    assert_delivered(rx, sums, r.describe())
    frames = cap.frames()
    assert len(frames) == sent_total(sums)
    return sums, longest_run((f["dst"], f["udp.dstport"]) for f in frames)


@pytest.mark.parametrize("policy,burst", [("flow", 1), ("burst:4", 4)])
def test_interleaving_breaks_the_applications_bursts(net, procs, tmp_path, policy, burst):
    """Without the shim the wire shows the application's bursts of 16; with
    UDPWEAVE_INTERLEAVE=flow the ring alternates destinations frame by
    frame, with burst:4 at most 4 in a row: in the capture and in the stats
    (longest_same_destination_burst)."""
    _, base = bursty_run(net, procs, tmp_path, "baseline", None)
    assert base == ROUND_BURST, f"the application's own bursts: {base}"
    env = shim_env(tmp_path, {"UDPWEAVE_INTERLEAVE": policy,
                              "UDPWEAVE_MAX_DELAY_US": 100000})
    sums, wire = bursty_run(net, procs, tmp_path, "shim", env)
    (st,) = stats_files(tmp_path)
    assert_all_through_ring(st, sums, "")
    assert st["batches"] >= ROUNDS, describe_stats(st)
    assert pkt(st)["longest_same_destination_burst"] == burst, describe_stats(st)
    assert wire == burst, f"longest same-destination run on the wire: {wire}"


def test_forked_child_sends_through_its_own_ring(net, procs, tmp_path):
    """uw_sender --fork-exit: the parent sends, forks, the child sends and
    _exit()s, the parent sends again; the child does not write into the
    parent's ring, opens its own, and everything arrives in order."""
    count = 400
    rb, rc, dests = four_receivers(procs, tmp_path)
    args = [tool("uw_sender"), "--count", count, "--fork-exit",
            "--sizes", ",".join(map(str, SIZES))]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, shim_env(tmp_path))
    sums = sender_summaries(r)
    assert {s["proc"] for s in sums} == {0, 1, 2}
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe(), ports=rb.ports + rc.ports)
    stats = stats_files(tmp_path)
    assert len(stats) == 2, "parent and child each write their stats"
    for st in stats:
        msg = describe_stats(st)
        assert fallbacks(st) == {}, msg
        assert pkt(st)["frames"] == st["datagrams_out"] == st["datagrams_in"] > 0, msg
        assert pkt(st)["rings"] >= 1, msg
    assert sum(st["datagrams_out"] for st in stats) == sent_total(sums)


# --------------------------------------------------------------------------
# 8. GSO frames (virtio_net_hdr)

def test_gso_frames_deliver_everything(net, procs, tmp_path):
    """UDPWEAVE_PACKET_GSO=1: runs of equal-size datagrams become one
    virtio_net_hdr GSO frame each, segmented by the kernel; every datagram
    arrives, intact and in order, directly and through the gateway."""
    count = 1000
    rb, rc, dests = four_receivers(procs, tmp_path, expect_per_flow=count)
    args = [tool("uw_sender"), "--count", count, "--sizes", "1316", "--mode", "sendmmsg",
            "--connected"]
    for d in dests:
        args += ["--dest", d]
    r = ns_run("a", args, shim_env(tmp_path, {"UDPWEAVE_PACKET_GSO": 1}))
    sums = sender_summaries(r)
    rx = merge_reports([rb.finish(), rc.finish()])
    assert_delivered(rx, sums, r.describe(), ports=rb.ports + rc.ports, sizes=[1316])
    (st,) = stats_files(tmp_path)
    p, msg = pkt(st), describe_stats(st)
    assert fallbacks(st) == {}, msg
    assert st["backend_counters"]["mmsg"]["sendmmsg_calls"] == 0, msg
    assert st["datagrams_out"] == 4 * count, msg
    assert p["gso_frames"] > 0, msg
    assert p["frames"] < 4 * count, msg       # fewer frames than datagrams


# --------------------------------------------------------------------------
# a real server: GStreamer's multiudpsink

# Binds UDP ports on one address, prints READY, then collects every datagram
# until 1 s without data (or 30 s); prints {port: [[len, RTP seq, sha1], ...]}.
RTP_SINK = r"""
import hashlib, json, selectors, socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
sel, socks = selectors.DefaultSelector(), []
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
    s.bind((host, 0))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
got = {s.getsockname()[1]: [] for s in socks}
print("READY " + " ".join(map(str, got)), flush=True)
end, last = time.monotonic() + 30, None
while time.monotonic() < end and (last is None or time.monotonic() - last < 1.0):
    for key, _ in sel.select(0.1):
        while True:
            try:
                d = key.fileobj.recv(65536)
            except BlockingIOError:
                break
            seq = d[2] << 8 | d[3] if len(d) >= 4 else -1
            got[key.fileobj.getsockname()[1]].append([len(d), seq, hashlib.sha1(d).hexdigest()])
            last = time.monotonic()
print(json.dumps(got), flush=True)
"""


class RtpSink:
    def __init__(self, procs, ns, host, n):
        self.host = host
        self.proc = procs.popen(in_ns(ns, "/usr/bin/python3", "-c", RTP_SINK, host, n),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env())
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), "RTP sink failed: " + self.proc.stderr.read()
        self.ports = [int(p) for p in line.split()[1:]]

    def finish(self):
        try:
            out, err = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("RTP sink did not finish")
        assert self.proc.returncode == 0, err
        return {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}


GST_BUFFERS = 50        # of 1024 samples at 48 kHz, live: about 1 s


def test_gstreamer_multiudpsink_through_the_ring(net, procs, tmp_path):
    """A real server under the shim: GStreamer's multiudpsink sends an RTP
    stream (live audio, rtpL16pay) to 8 clients in B and 4 in C behind the
    gateway. Every client gets the same datagrams, RTP sequence numbers
    without a gap, and every datagram was a ring frame."""
    missing = media.have("gst-launch-1.0")
    if missing:
        pytest.skip(f"{missing} not installed (gstreamer1.0-tools)")
    for e in ("audiotestsrc", "rtpL16pay", "multiudpsink"):
        if subprocess.run(["gst-inspect-1.0", "--exists", e], env=child_env()).returncode:
            pytest.skip(f"GStreamer element {e} missing (gstreamer1.0-plugins-base/-good)")
    if any("libtsan" in p for p in SAN_RUNTIME):
        pytest.skip("ThreadSanitizer reports races inside GStreamer even without the "
                    "library (see test_servers.py)")
    sinks = [RtpSink(procs, "b", B4, 8), RtpSink(procs, "c", C4, 4)]
    clients = ",".join(f"{s.host}:{p}" for s in sinks for p in s.ports)
    argv = ["gst-launch-1.0", "-q", "audiotestsrc", "is-live=true",
            f"num-buffers={GST_BUFFERS}", "samplesperbuffer=1024", "!",
            "audio/x-raw,format=S16BE,rate=48000,channels=2", "!", "rtpL16pay", "mtu=1400",
            "!", "multiudpsink", "sync=true", f"clients={clients}"]
    r = ns_run("a", argv, shim_env(tmp_path), timeout=60)
    assert r.rc == 0, r.describe()
    got = {}
    for s in sinks:
        got.update(s.finish())
    stats = [st for st in stats_files(tmp_path) if st["datagrams_in"]]
    assert len(stats) == 1, "one process of gst-launch sent"
    st = stats[0]
    msg = f"{r.describe()}\n{describe_stats(st)}"
    first = got[sinks[0].ports[0]]
    assert len(first) >= 3 * GST_BUFFERS, msg      # 4096 B per buffer, mtu 1400
    problems = media.rtp_seq_problems([d[1] for d in first], "client 0")
    assert not problems, problems
    for port, dgrams in got.items():
        assert dgrams == first, f"client {port}: {len(dgrams)} datagrams, " \
                                f"client {sinks[0].ports[0]}: {len(first)}"
    assert st["datagrams_out"] == st["datagrams_in"] == 12 * len(first), msg
    assert fallbacks(st) == {}, msg
    assert pkt(st)["frames"] == st["datagrams_out"], msg
    assert st["backend_counters"]["mmsg"]["sendmmsg_calls"] == 0, msg
