"""The uring backend (issue 7) where it has behaviour of its own; the
conformance tests run with it too (SHIM_BACKENDS in conftest.py).

- Without io_uring (refused by a seccomp filter, for this process tree
  only): one warning line, and the mmsg backend sends everything.
- A full socket buffer (waited out inside the kernel) and a qdisc drop
  (ENOBUFS completions, retried) lose nothing, on a veth pair between two
  namespaces the test creates.
- A firewall reject (nftables, `reject with icmpx type port-unreachable`)
  of one destination surfaces ECONNREFUSED on later sends on that connected
  socket, as with the kernel alone; the other destinations get everything.
- Zero-copy sends deliver everything, and every notification is reaped.
- A forked child makes a ring of its own; the parent's goes on working."""
import itertools
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import (BACKENDS, PRELOAD, SHIM_BACKENDS, assert_backend_used, assert_delivered,
                      needs_uring, read_stats, require_shim, run, sender_flows, sender_summaries, tool,
                      udpweave_lines)

pytestmark = needs_uring

SIZES = [1316, 1316, 1316, 1316, 200, 28, 1316, 9000]
_seq = itertools.count()


class NetPair:
    """Namespaces tx and rx joined by a veth pair: 10.77.0.1 / fd77::1 on
    tx's end, 10.77.0.2 / fd77::2 on rx's. Removed by close()."""

    V4 = ("10.77.0.1", "10.77.0.2")
    V6 = ("fd77::1", "fd77::2")

    def __init__(self):
        if os.geteuid() != 0 or not shutil.which("ip"):
            pytest.skip("needs root and ip(8) for network namespaces")
        tag = f"{os.getpid()}x{next(_seq)}"
        self.tx, self.rx = f"uwt-utx-{tag}", f"uwt-urx-{tag}"
        self.txdev, self.rxdev = f"ut{tag}a"[:15], f"ut{tag}b"[:15]
        self.made = []
        for ns in (self.tx, self.rx):
            r = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
            if r.returncode:
                self.close()
                pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
            self.made.append(ns)
        self.ip("link", "add", self.txdev, "netns", self.tx, "type", "veth",
                "peer", "name", self.rxdev, "netns", self.rx)
        ends = ((self.tx, self.txdev, 0), (self.rx, self.rxdev, 1))
        for ns, dev, i in ends:
            self.ip("-n", ns, "link", "set", "lo", "up")
            self.ip("-n", ns, "link", "set", dev, "up")
            self.ip("-n", ns, "addr", "add", f"{self.V4[i]}/24", "dev", dev)
            self.ip("-n", ns, "addr", "add", f"{self.V6[i]}/64", "dev", dev, "nodad")
        # The receiving end through NAPI (its one ring, as a NIC's queue):
        # without it veth hands each packet to the backlog of the CPU that
        # sent it, and two threads sending on one socket (the flush thread
        # and the application's own calls) may be delivered out of order.
        subprocess.run([*self.in_rx(), "ethtool", "-K", self.rxdev, "gro", "on"],
                       capture_output=True)
        # Static neighbours: a burst to an address not yet resolved waits
        # in the neighbour's small queue, which drops silently (with or
        # without the library) and is not what these tests are about.
        for (ns, dev, i), (pns, pdev, j) in zip(ends, reversed(ends)):
            mac = json.loads(subprocess.run(["ip", "-n", pns, "-j", "link", "show", pdev],
                                            check=True, capture_output=True,
                                            text=True).stdout)[0]["address"]
            for addr in (self.V4[j], self.V6[j]):
                self.ip("-n", ns, "neigh", "replace", addr, "lladdr", mac, "dev", dev,
                        "nud", "permanent")

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def in_tx(self):
        return ["ip", "netns", "exec", self.tx]

    def in_rx(self):
        return ["ip", "netns", "exec", self.rx]

    def shape_tx(self, *tbf):
        """A tbf shaper on tx's end of the pair."""
        subprocess.run(["tc", "-n", self.tx, "qdisc", "replace", "dev", self.txdev, "root",
                        "tbf", *tbf], check=True, capture_output=True, text=True)

    def tx_qdisc_drops(self):
        out = subprocess.run(["tc", "-n", self.tx, "-s", "qdisc", "show", "dev", self.txdev],
                             check=True, capture_output=True, text=True).stdout
        return sum(int(n) for n in re.findall(r"dropped (\d+)", out))

    def close(self):
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made = []


@pytest.fixture
def netpair():
    p = NetPair()
    yield p
    p.close()


def one_stats(tmp_path, context):
    stats = list(read_stats(tmp_path).values())
    assert len(stats) == 1, f"expected one stats file, got {len(stats)}\n{context}"
    return stats[0]


# --------------------------------------------------------------------------
# no io_uring

def noring_run(rx, tmp_path, errno_name, env, sender_args, sizes):
    """uw_sender under the library with io_uring_setup refused (errno_name)
    by uw_noring's seccomp filter, to every address of rx; returns the run,
    the sender's summaries and the receiver's report, delivery checked."""
    args = [tool("uw_noring"), errno_name, "/usr/bin/env", f"LD_PRELOAD={PRELOAD}", *env,
            f"UDPWEAVE_STATS={tmp_path / 'stats-%p.json'}", tool("uw_sender"), *sender_args,
            "--sizes", ",".join(map(str, sizes))]
    for a in rx.addrs():
        args += ["--dest", a]
    r = run(args)
    if r.rc == 77:
        pytest.skip(f"uw_noring cannot install its seccomp filter: {r.stderr.strip()}")
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=sizes)
    return r, sums, report


@pytest.mark.parametrize("errno_name,text", [("ENOSYS", "Function not implemented"),
                                             ("EPERM", "Operation not permitted")])
def test_without_io_uring_one_warning_and_mmsg_sends(receiver_factory, tmp_path, errno_name,
                                                     text):
    """io_uring_setup refused (ENOSYS: a seccomp profile or an old kernel;
    EPERM: kernel.io_uring_disabled or a seccomp profile) for this process
    tree only: exactly one "udpweave:" line naming the reason, every
    datagram delivered by the mmsg backend, the stats saying so."""
    require_shim()
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0"])
    r, sums, _ = noring_run(rx, tmp_path, errno_name,
                            ["UDPWEAVE_BACKEND=uring", "UDPWEAVE_STEP_ASIDE=0"],
                            ["--mode", "mixed", "--count", 500], SIZES)
    lines = udpweave_lines(r.stderr)
    assert len(lines) == 1, f"expected one udpweave line\n{r.describe()}"
    assert "io_uring is not available" in lines[0] and text in lines[0], r.describe()
    assert "mmsg" in lines[0], r.describe()
    st = one_stats(tmp_path, r.describe())
    u = st["backend_counters"]["uring"]
    assert st["backend"] == "uring" and u["io_uring_enter_calls"] == 0, st
    assert u["mmsg_batches"] == st["batches"] > 0, st
    assert st["backend_counters"]["mmsg"]["sendmmsg_calls"] == st["syscalls"] > 0, st
    assert st["datagrams_out"] == sums[0]["sent_total"], st


def test_auto_without_io_uring_is_mmsg_quietly(receiver_factory, tmp_path):
    """The default backend (auto) where io_uring_setup is refused: no line
    on stderr at the default log level (nobody asked for io_uring), and the
    mmsg backend itself in its place, not io_uring's fallback to it: no
    batch counted as a fallback (batches of 8 sockets, each sending every
    0.4 ms), all delivered."""
    require_shim()
    rx = receiver_factory(binds=["127.0.0.1:0"] * 8)
    r, sums, _ = noring_run(rx, tmp_path, "ENOSYS", [],
                            ["--mode", "send", "--connected", "--count", 500,
                             "--rate-pps", 20000], [1316])
    assert udpweave_lines(r.stderr) == [], r.describe()
    st = one_stats(tmp_path, r.describe())
    u = st["backend_counters"]["uring"]
    assert st["backend"] == "auto" and u["io_uring_enter_calls"] == 0, st
    assert u["mmsg_batches"] == 0 and st["batches"] > 0, st
    assert st["backend_counters"]["mmsg"]["sendmmsg_calls"] == st["syscalls"], st


# --------------------------------------------------------------------------
# EAGAIN and ENOBUFS

ZC_VARIANTS = BACKENDS + [pytest.param("uring-zc", id="uring-zerocopy", marks=needs_uring)]


def shaped_run(netpair, receiver_factory, tmp_path, backend, *sender_opts, errors=None):
    """uw_sender in tx, as fast as it can, to two destinations in rx (IPv4
    and IPv6) through the shaper on tx's end. The zero-copy variant sends
    large datagrams: the runs of 1316-byte ones span more pages than one
    zero-copy send carries, and would all be copied."""
    rx = receiver_factory(binds=[f"{netpair.V4[1]}:0", f"[{netpair.V6[1]}]:0"],
                          prefix=netpair.in_rx())
    env = {"UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")}
    if backend != "mmsg":
        # a shaped socket's sends are few per flush: by default they would
        # go straight to the kernel (udpweave(7), WHEN THE LIBRARY STEPS
        # ASIDE) and the backend under test would send nothing
        env["UDPWEAVE_STEP_ASIDE"] = "0"
    count, sizes = 1000, [1316]
    if backend == "uring-zc":
        backend = "uring"
        env["UDPWEAVE_URING_ZC_BYTES"] = "1"
        count, sizes = 150, [30000, 1316]
    args = [*netpair.in_tx(), tool("uw_sender"), "--mode", "sendto", "--count", count,
            "--sizes", ",".join(map(str, sizes)), *sender_opts]
    for a in rx.addrs():
        args += ["--dest", a]
    r = run(args, shim=backend, extra_env=env, timeout=120)
    if errors:
        # the kernel's answers to sends it judged (the library's sync
        # sends): the sender goes on, and only those errors are allowed
        assert r.rc in (0, 1), f"sender failed\n{r.describe()}"
        sums = [j for j in r.json_lines if "flows" in j]
        assert sums, r.describe()
        bad = [l for l in r.stderr.splitlines() if "errno=" in l and f"errno={errors}" not in l]
        assert not bad, r.describe()
    else:
        sums = sender_summaries(r)
    report = rx.finish()
    if errors and any(s["errors"] for s in sums):
        # the refused sequence numbers are gaps: every datagram told sent
        # arrived once, intact, in order
        for fid, f in sender_flows(sums).items():
            got = report["flows"].get(fid, {"count": 0})
            assert got["count"] == f["sent"], (fid, got, f, r.describe())
            assert got.get("dups", 0) == got.get("reorders", 0) == got.get("corrupt", 0) == 0, \
                (fid, got, r.describe())
    else:
        assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=sizes)
    st = one_stats(tmp_path, r.describe())
    assert_backend_used(st, backend, r.describe())
    assert st["datagrams_dropped"] == 0 and st["async_errors"] == 0, st
    assert st["datagrams_out"] == sum(s["sent_total"] for s in sums), st
    assert st["datagrams_out"] + sum(s["errors"] for s in sums) == 2 * count, st
    if env.get("UDPWEAVE_URING_ZC_BYTES"):
        u = st["backend_counters"]["uring"]
        assert u["zc_sends"] > 0 and u["zc_notifications"] == u["zc_sends"], st
    return r, st


@pytest.mark.parametrize("backend", ZC_VARIANTS)
def test_full_socket_buffer_holds_and_blocks_the_sender(netpair, receiver_factory, tmp_path,
                                                        backend):
    """Blocking sockets with a 32 KiB send buffer behind a 25 Mbit/s
    shaper that holds what it cannot send yet (it never drops): the buffer
    fills. No send of the library waits for room (MSG_DONTWAIT): what the
    kernel refuses with EAGAIN is held on the socket's own list, and the
    application's next send on it waits for room, as the kernel's would.
    Every datagram arrives in order, the qdisc dropped nothing, the library
    dropped nothing. (Non-blocking sockets get EAGAIN: test_hostile.py,
    test_faults.py.)"""
    # slow enough that a sender under a sanitizer still outruns it
    netpair.shape_tx("rate", "25mbit", "burst", "256kb", "limit", "32mb")
    r, st = shaped_run(netpair, receiver_factory, tmp_path, backend, "--sndbuf", 32768)
    assert st["held_datagrams"] > 0, f"the buffer never filled: nothing was tested\n{st}"
    assert st["held_dropped"] == 0, st
    assert netpair.tx_qdisc_drops() == 0


@pytest.mark.parametrize("backend", ZC_VARIANTS)
def test_qdisc_drop_enobufs_is_retried(netpair, receiver_factory, tmp_path, backend):
    """Sockets with IP_RECVERR (so the kernel reports a qdisc drop as
    ENOBUFS instead of dropping silently) behind a 50 Mbit/s shaper whose
    queue holds 70 KiB (one 64 KiB GSO run fits, two do not; the bucket
    exceeds a run, so tbf never splits one): the qdisc drops, the kernel
    refuses with ENOBUFS, the library backs off and sends again (a send the
    kernel judges itself, a socket's first, gets the kernel's ENOBUFS, as
    without the library). Every datagram told sent arrives, in order,
    though the qdisc dropped (counted by tc)."""
    netpair.shape_tx("rate", "50mbit", "burst", "80kb", "limit", "70kb")
    r, st = shaped_run(netpair, receiver_factory, tmp_path, backend, "--recverr",
                       errors="ENOBUFS")
    drops = netpair.tx_qdisc_drops()
    assert drops > 0, f"the qdisc dropped nothing: no ENOBUFS was tested\n{st}"
    assert st["retries"] >= 1, st


# --------------------------------------------------------------------------
# firewall reject

@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("shim", SHIM_BACKENDS)
def test_firewall_reject_surfaces_econnrefused(netpair, receiver_factory, tmp_path, shim,
                                               family):
    """Three connected sockets, paced; nftables in the receiving namespace
    rejects the second destination with an ICMP port unreachable. On that
    socket later sends fail with ECONNREFUSED, as with the kernel alone (the
    baseline run shows it); the other two destinations receive everything
    in order; with the shim the library counted the ICMP errors and dropped
    nothing itself."""
    if not shutil.which("nft"):
        pytest.skip("nft (Debian: nftables) not installed")
    host = netpair.V4[1] if family == "v4" else f"[{netpair.V6[1]}]"
    rx = receiver_factory(binds=[f"{host}:0"] * 3, prefix=netpair.in_rx())
    rejected = rx.ports[1]
    rules = ("add table inet uwt\n"
             "add chain inet uwt input { type filter hook input priority 0; policy accept; }\n"
             f"add rule inet uwt input udp dport {rejected} "
             "reject with icmpx type port-unreachable\n")
    subprocess.run([*netpair.in_rx(), "nft", "-f", "-"], input=rules, text=True, check=True,
                   capture_output=True)
    args = [*netpair.in_tx(), tool("uw_sender"), "--mode", "send", "--connected",
            "--count", 300, "--rate-pps", 6000, "--sizes", "1316"]
    for a in rx.addrs():
        args += ["--dest", a]
    env = {"UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")} if shim else None
    if shim == "uring":
        env["UDPWEAVE_STEP_ASIDE"] = "0"    # 18,000/s is near the edge (see shaped_run)
    r = run(args, shim=shim, extra_env=env)
    assert r.rc == 1, f"expected the sender to see failed sends\n{r.describe()}"
    summary = next(j for j in r.json_lines if "flows" in j)
    errors = [l for l in r.stderr.splitlines() if l.startswith("uw_sender: send flow")]
    assert summary["errors"] > 0 and errors, r.describe()
    assert all(" flow 1 " in l and "errno=ECONNREFUSED" in l for l in errors), r.describe()
    flows = summary["flows"]
    assert flows["1"]["sent"] + summary["errors"] == 300, r.describe()
    report = rx.finish()
    assert "1" not in report["flows"], f"the firewall let flow 1 through: {report['flows']}"
    kept = dict(summary, flows={k: v for k, v in flows.items() if k != "1"})
    assert all(f["sent"] == 300 for f in kept["flows"].values()), r.describe()
    assert_delivered(report, [kept], r.describe(), ports=rx.ports, sizes=[1316])
    if shim:
        st = one_stats(tmp_path, r.describe())
        assert_backend_used(st, shim, r.describe())
        # each error the sender saw: on a send the kernel judged, or one
        # the library heard at a flush
        refused = st["async_errors_by_errno"].get("ECONNREFUSED", 0) + st["sync_errors"]
        assert refused >= summary["errors"], st
        assert st["datagrams_dropped"] == 0, st


# --------------------------------------------------------------------------
# zero-copy, fork

@pytest.mark.parametrize("zc_bytes", ["1", "10000"])
def test_zero_copy_sends_deliver_everything(receiver_factory, tmp_path, zc_bytes):
    """UDPWEAVE_URING_ZC_BYTES=1 (every message zero-copy) and 10000 (the
    large ones): every datagram delivered intact and in order, IPv4 and
    IPv6, and every zero-copy send's notification reaped (on loopback the
    kernel copies anyway: counted in zc_copied)."""
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0", "127.0.0.1:0"])
    sizes = SIZES + [20000, 65507]
    args = [tool("uw_sender"), "--mode", "mixed", "--count", 600,
            "--sizes", ",".join(map(str, sizes))]
    for a in rx.addrs():
        args += ["--dest", a]
    # STEP_ASIDE=0: the backend's own path, whatever rate a sanitizer
    # leaves the sender (udpweave(7), WHEN THE LIBRARY STEPS ASIDE)
    r = run(args, shim="uring", extra_env={"UDPWEAVE_URING_ZC_BYTES": zc_bytes,
                                           "UDPWEAVE_STEP_ASIDE": "0",
                                           "UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")})
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=sizes)
    st = one_stats(tmp_path, r.describe())
    assert_backend_used(st, "uring", r.describe())
    u = st["backend_counters"]["uring"]
    assert u["zc_sends"] > 0 and u["zc_notifications"] == u["zc_sends"], st
    if zc_bytes == "1":
        assert u["zc_sends"] == u["sqes"], st
    else:
        assert u["zc_sends"] < u["sqes"], st
    assert not udpweave_lines(r.stderr), r.describe()


def test_forked_child_makes_its_own_ring(receiver_factory, tmp_path):
    """Parent sends, forks; the child sends and _exit(0)s; the parent sends
    again. Every datagram arrives; the child's stats (path.PID) show that it
    sent through a ring of its own (io_uring_enter calls, no mmsg), the
    parent's that its ring still worked after the fork."""
    rx = receiver_factory(binds=["127.0.0.1:0", "[::1]:0"])
    stats = tmp_path / "st.json"
    args = [tool("uw_sender"), "--fork-exit", "--mode", "mixed", "--connected",
            "--count", 300, "--sizes", ",".join(map(str, SIZES))]
    for a in rx.addrs():
        args += ["--dest", a]
    r = run(args, shim="uring", extra_env={"UDPWEAVE_STATS": str(stats),
                                           "UDPWEAVE_MAX_DELAY_US": "1000000",
                                           "UDPWEAVE_INTERVAL_US": "1000000"})
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), ports=rx.ports, sizes=SIZES)
    parent = json.loads(stats.read_text())
    children = list(tmp_path.glob("st.json.*"))
    assert len(children) == 1, f"{children}\n{r.describe()}"
    child = json.loads(children[0].read_text())
    assert_backend_used(parent, "uring", r.describe())
    assert_backend_used(child, "uring", r.describe())
    assert parent["flushes_by_reason"]["fork"] >= 1, parent
    assert parent["backend_counters"]["uring"]["io_uring_enter_calls"] >= 2, parent
    child_sent = next(s for s in sums if s["proc"] == 1)["sent_total"]
    assert child["datagrams_out"] == child_sent, child
