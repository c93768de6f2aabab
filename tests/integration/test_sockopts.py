"""What the application set on its socket still applies to what the library
sends for it (the mmsg backend sends on the application's own socket):
TTL, TOS, the bound source port, multicast TTL/interface/loop; and sockets
the library did not see created (inherited, dup'ed) are found and batched.

The senders here are Python processes: real programs whose socket calls go
through libc, so the shim intercepts them like any C server's."""
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import SHIM_BACKENDS, assert_backend_used, child_env, require_shim

PY = "/usr/bin/python3"
N = 300
# <linux/in.h>, <linux/in6.h>: not all of them are in Python's socket module
IP_TOS, IP_TTL, IP_RECVTTL, IP_RECVTOS = 1, 2, 12, 13
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT, IPV6_RECVTCLASS, IPV6_TCLASS = 51, 52, 66, 67


def _receiver(family=socket.AF_INET, addr="127.0.0.1"):
    rx = socket.socket(family, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)        # SO_RCVBUFFORCE
    if family == socket.AF_INET:
        rx.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        rx.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
    else:
        rx.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        rx.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
    rx.bind((addr, 0))
    return rx


def _collect(rx, expect, limit_s=20):
    """(payload, source address, {cmsg type: int}) for each datagram."""
    out = []
    rx.settimeout(1.0)
    end = time.monotonic() + limit_s
    while len(out) < expect and time.monotonic() < end:
        try:
            data, anc, _flags, src = rx.recvmsg(70000, 256)
        except socket.timeout:
            break
        opts = {}
        for level, typ, val in anc:
            opts[typ] = val[0] if len(val) == 1 else int.from_bytes(val[:4], "little")
        out.append((data, src, opts))
    return out


def _run_sender(code, shim, tmp_path, env=None, pass_fds=()):
    stats = tmp_path / ("stats-%p.json" if shim else "unused")
    extra = {"UDPWEAVE_STATS": str(stats)} if shim else {}
    extra.update(env or {})
    cp = subprocess.run([PY, "-c", textwrap.dedent(code)], env=child_env(shim=shim, extra=extra),
                        capture_output=True, text=True, timeout=60, pass_fds=pass_fds)
    assert cp.returncode == 0, cp.stderr
    assert "udpweave:" not in cp.stderr, cp.stderr
    if not shim:
        return cp, None
    files = list(tmp_path.glob("stats-*.json"))
    assert len(files) == 1, files
    st = json.loads(files[0].read_text())
    files[0].unlink()
    assert_backend_used(st, shim)
    return cp, st


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("shim", SHIM_BACKENDS)
def test_ttl_tos_and_source_port_apply(shim, family, tmp_path):
    if shim:
        require_shim()
    fam = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    host = "127.0.0.1" if family == "ipv4" else "::1"
    rx = _receiver(fam, host)
    port = rx.getsockname()[1]
    src = socket.socket(fam, socket.SOCK_DGRAM)
    src.bind((host, 0))
    src_port = src.getsockname()[1]
    src.close()
    if family == "ipv4":
        level, ttl_opt, tos_opt = "socket.IPPROTO_IP", IP_TTL, IP_TOS
    else:
        level, ttl_opt, tos_opt = "socket.IPPROTO_IPV6", 16, IPV6_TCLASS  # IPV6_UNICAST_HOPS
    code = f"""
        import socket
        s = socket.socket({int(fam)}, socket.SOCK_DGRAM)
        s.setsockopt({level}, {ttl_opt}, 7)
        s.setsockopt({level}, {tos_opt}, 0x28)
        s.bind(({host!r}, {src_port}))
        for i in range({N}):
            s.sendto(i.to_bytes(4, "little") * 300, ({host!r}, {port}))
    """
    _, st = _run_sender(code, shim, tmp_path)
    got = _collect(rx, N)
    rx.close()
    assert len(got) == N
    if family == "ipv4":
        ttl_t, tos_t = IP_TTL, IP_TOS
    else:
        ttl_t, tos_t = IPV6_HOPLIMIT, IPV6_TCLASS
    for i, (data, srcaddr, o) in enumerate(got):
        assert data == i.to_bytes(4, "little") * 300
        assert srcaddr[1] == src_port
        assert o.get(ttl_t) == 7, o
        assert o.get(tos_t) == 0x28, o
    if shim:   # went through the library's batches, not around them
        assert st["datagrams_in"] == N and st["datagrams_out"] == N
        assert st["syscalls"] < N / 4


def test_getsockname_shows_the_port_right_after_the_first_send(tmp_path):
    """An unbound socket gets its ephemeral port at the first send, even
    though the datagram is still queued."""
    require_shim()
    rx = _receiver()
    port = rx.getsockname()[1]
    code = f"""
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x" * 100, ("127.0.0.1", {port}))
        p = s.getsockname()[1]
        sys.stdout.write(str(p))
    """
    cp, st = _run_sender(code, True, tmp_path)
    got = _collect(rx, 1)
    rx.close()
    assert st["datagrams_in"] == 1
    assert int(cp.stdout) != 0
    assert got and got[0][1][1] == int(cp.stdout)


@pytest.mark.parametrize("shim", SHIM_BACKENDS)
def test_inherited_and_dup_sockets_are_batched_in_order(shim, tmp_path):
    """A connected UDP socket created by a parent without the shim, used by
    a child under it through write(), a dup() and the original closed."""
    rx = _receiver()
    port = rx.getsockname()[1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    fd = s.fileno()
    code = f"""
        import os
        fd = {fd}
        for i in range(100):
            os.write(fd, i.to_bytes(4, "little") * 100)
        d = os.dup(fd)
        for i in range(100, 200):
            os.write(d if i % 2 else fd, i.to_bytes(4, "little") * 100)
        os.close(fd)
        for i in range(200, {N}):
            os.write(d, i.to_bytes(4, "little") * 100)
    """
    _, st = _run_sender(code, shim, tmp_path, pass_fds=(fd,))
    s.close()
    got = _collect(rx, N)
    rx.close()
    assert [g[0] for g in got] == [i.to_bytes(4, "little") * 100 for i in range(N)]
    if shim:
        assert st["datagrams_in"] == N and st["datagrams_out"] == N
        assert st["flushes_by_reason"]["close"] >= 1 or st["syscalls"] < N / 4


def _variant(shim):
    """A digit for names of this test's namespaces and links: 0 baseline,
    1 shim (default backend), 2 uring."""
    return {False: 0, True: 1}.get(shim, 2)


def _netns(name):
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")


@pytest.mark.parametrize("shim", SHIM_BACKENDS)
def test_multicast_ttl_interface_and_loop_apply(shim, tmp_path):
    """Multicast on the loopback of a namespace the test creates: the group,
    IP_MULTICAST_IF/TTL/LOOP set by the sender apply to batched datagrams."""
    if shim:
        require_shim()
    ns = f"uwt-mc-{os.getpid()}-{_variant(shim)}"
    _netns(ns)
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "lo", "multicast", "on"],
                    ["route", "add", "239.0.0.0/8", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns] + cmd, check=True)
        recv_code = """
            import socket, struct, sys, time
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
            rx.setsockopt(socket.IPPROTO_IP, 12, 1)    # IP_RECVTTL
            rx.bind(("239.1.2.3", 0))
            mreq = socket.inet_aton("239.1.2.3") + socket.inet_aton("127.0.0.1")
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            print(rx.getsockname()[1], flush=True)
            rx.settimeout(3)
            out = []
            try:
                while len(out) < %d:
                    data, anc, _, _ = rx.recvmsg(2048, 64)
                    ttl = [v[0] for l, t, v in anc if t == 2]    # IP_TTL
                    out.append((int.from_bytes(data[:4], "little"), len(data), ttl[0] if ttl else -1))
            except socket.timeout:
                pass
            print(out, flush=True)
        """ % N
        rxp = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", textwrap.dedent(recv_code)],
                               stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            port = int(rxp.stdout.readline())
            send_code = f"""
                import socket
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 3)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                for i in range({N}):
                    s.sendto(i.to_bytes(4, "little") * 329, ("239.1.2.3", {port}))
            """
            stats = tmp_path / "stats-%p.json"
            extra = {"UDPWEAVE_STATS": str(stats)} if shim else {}
            cp = subprocess.run(["ip", "netns", "exec", ns, PY, "-c", textwrap.dedent(send_code)],
                                env=child_env(shim=shim, extra=extra), capture_output=True,
                                text=True, timeout=60)
            assert cp.returncode == 0, cp.stderr
            out, _ = rxp.communicate(timeout=30)
        finally:
            if rxp.poll() is None:
                rxp.kill()
        got = eval(out.strip().splitlines()[-1])
        assert [g[0] for g in got] == list(range(N))
        assert all(g[1] == 1316 and g[2] == 3 for g in got)
        if shim:
            st = json.loads(next(tmp_path.glob("stats-*.json")).read_text())
            assert st["datagrams_out"] == N and st["gso_runs"] >= 1
            assert_backend_used(st, shim)
    finally:
        subprocess.run(["ip", "netns", "del", ns])


@pytest.mark.parametrize("shim", SHIM_BACKENDS)
def test_ipv6_multicast_over_veth(shim, tmp_path):
    """IPv6 multicast from one namespace to a group joined in another,
    across a veth pair the test creates: IPV6_MULTICAST_IF and
    IPV6_MULTICAST_HOPS apply to the library's batches, every datagram
    arrives in order."""
    if shim:
        require_shim()
    tag = f"{os.getpid()}{_variant(shim)}"
    a, b = f"uwt-m6a-{tag}", f"uwt-m6b-{tag}"
    _netns(a)
    try:
        _netns(b)
        run = lambda *c: subprocess.run(list(c), check=True, capture_output=True)
        run("ip", "link", "add", f"m6x{tag}"[:15], "netns", a, "type", "veth",
            "peer", "name", f"m6y{tag}"[:15], "netns", b)
        xa, yb = f"m6x{tag}"[:15], f"m6y{tag}"[:15]
        for ns, dev, addr in ((a, xa, "fd00:6::1/64"), (b, yb, "fd00:6::2/64")):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad")
        ifa = int(subprocess.check_output(["ip", "netns", "exec", a, "cat",
                                           f"/sys/class/net/{xa}/ifindex"]))
        ifb = int(subprocess.check_output(["ip", "netns", "exec", b, "cat",
                                           f"/sys/class/net/{yb}/ifindex"]))
        recv_code = f"""
            import socket, struct
            rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
            rx.setsockopt(socket.IPPROTO_IPV6, {IPV6_RECVHOPLIMIT}, 1)
            rx.bind(("::", 0))
            mreq = socket.inet_pton(socket.AF_INET6, "ff15::1234") + struct.pack("@I", {ifb})
            rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            print(rx.getsockname()[1], flush=True)
            rx.settimeout(3)
            out = []
            try:
                while len(out) < {N}:
                    data, anc, _, _ = rx.recvmsg(2048, 64)
                    hl = [int.from_bytes(v[:4], "little") for l, t, v in anc if t == {IPV6_HOPLIMIT}]
                    out.append((int.from_bytes(data[:4], "little"), len(data), hl[0] if hl else -1))
            except socket.timeout:
                pass
            print(out, flush=True)
        """
        rxp = subprocess.Popen(["ip", "netns", "exec", b, PY, "-c", textwrap.dedent(recv_code)],
                               stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            port = int(rxp.stdout.readline())
            send_code = f"""
                import socket
                s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, {ifa})
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 3)
                for i in range({N}):
                    s.sendto(i.to_bytes(4, "little") * 329, ("ff15::1234", {port}))
            """
            extra = {"UDPWEAVE_STATS": str(tmp_path / "stats-%p.json")} if shim else {}
            cp = subprocess.run(["ip", "netns", "exec", a, PY, "-c", textwrap.dedent(send_code)],
                                env=child_env(shim=shim, extra=extra), capture_output=True,
                                text=True, timeout=60)
            assert cp.returncode == 0, cp.stderr
            out, _ = rxp.communicate(timeout=30)
        finally:
            if rxp.poll() is None:
                rxp.kill()
        got = eval(out.strip().splitlines()[-1])
        assert [g[0] for g in got] == list(range(N))
        assert all(g[1] == 1316 and g[2] == 3 for g in got)
        if shim:
            st = json.loads(next(tmp_path.glob("stats-*.json")).read_text())
            assert st["datagrams_out"] == N and st["gso_runs"] >= 1, st
            assert_backend_used(st, shim)
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)
