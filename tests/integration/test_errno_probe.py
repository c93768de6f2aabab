"""Return values and errno of bad (and edge-case) send calls are the
kernel's (design.md 3.4): `uw_sender --errno-probe` runs each case with and
without the shim; the lines must be identical, including what reached the
probe's own sink sockets (d4=N:SIZExCOUNT...)."""
import os
import re
import subprocess

import pytest

from conftest import BACKENDS, PRELOAD, SHIM_LIB, TOOLS, backend_env, child_env

# Every case the probe prints (tests/tools/uw_sender.c, --errno-probe).
CASES = """
send_closed_fd sendto_closed_fd sendmsg_closed_fd sendmmsg_closed_fd write_closed_fd
writev_closed_fd send_pipe sendto_pipe sendmsg_pipe sendmmsg_pipe write_pipe writev_pipe
send_toobig_v4 send_max_v4 write_toobig_v4 writev_toobig_v4 sendto_toobig_v4
send_toobig_v6 send_max_v6 sendmsg_toobig_v6 sendmmsg_toobig_v4
sendmmsg_partial_toobig_v4 send_unconnected write_unconnected writev_unconnected
sendmsg_noname_unconnected sendmmsg_noname_unconnected sendto_nulladdr_unconnected
send_unconnected_v6 getsockname_after_sendto send_after_disconnect send_after_reconnect
sendto_connected_other_addr send_null_buf sendto_null_buf write_null_buf
writev_null_iov_base sendmsg_null_iov_base sendmsg_null_msg_iov sendmsg_null_msghdr
send_null_zero_len sendmmsg_null_iov_base sendmmsg_partial_efault sendmmsg_null_vec
sendmmsg_null_vec_vlen0 sendto_short_addrlen_v4 sendto_short_addrlen_v6
sendmsg_short_namelen_v4 sendto_addrlen0_unconnected sendto_addrlen_too_long
sendto_v4sock_v6addr sendto_v4sock_unspec_family sendto_v6sock_v4addr
sendto_v6sock_v4mapped sendto_v6only_v4mapped sendto_port0_v4 sendto_port0_v6
sendmsg_iovlen_1025 sendmsg_iovlen_1024 writev_iovcnt_1025 writev_iovcnt_1024
sendmmsg_vlen_2000 send_zero_len write_zero_len writev_zero_len sendmsg_zero_len
sendmmsg_zero_len sendto_zero_len_v6 send_msg_oob send_msg_dontwait
send_msg_more_join udp_cork_join send_after_shutdown_wr sendmsg_app_gso
sendmsg_bad_cmsg
""".split()
ASYNC_CASES = ["async_econnrefused_v4", "async_econnrefused_v6"]
# the asynchronous error must surface within this many sends after the first
ASYNC_MAX_ATTEMPT = 5


def probe(shim):
    path = TOOLS / "uw_sender"
    if not path.exists():
        return None, f"{path} not built"
    if shim and not os.path.exists(SHIM_LIB):
        return None, f"{SHIM_LIB} not built"
    env = child_env()
    if shim:
        env["LD_PRELOAD"] = PRELOAD
        env.update(backend_env(shim))
    cp = subprocess.run([str(path), "--errno-probe"], env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=60)
    lines = {}
    for line in cp.stdout.splitlines():
        m = re.match(r"case=(\S+) (.*)$", line)
        if m:
            lines[m.group(1)] = m.group(2)
    return {"rc": cp.returncode, "lines": lines, "stderr": cp.stderr}, None


@pytest.fixture(scope="module")
def baseline_probe():
    base, why = probe(False)
    if base is None:
        pytest.skip(why)
    return base


@pytest.fixture(scope="module", params=BACKENDS)
def probes(request, baseline_probe):
    """The baseline's lines and the shim's, with each backend."""
    base = baseline_probe
    shim, why = probe(request.param)
    if shim is None:
        pytest.skip(why)
    return base, shim


def split_attempt(rest):
    m = re.search(r" attempt=(\d+)", rest)
    return re.sub(r" attempt=\d+", "", rest), int(m.group(1)) if m else None


def test_probe_ran(probes):
    """The probe ran to the end both ways and printed every known case."""
    base, shim = probes
    for name, p in (("baseline", base), ("shim", shim)):
        assert p["rc"] == 0, f"{name} probe exit {p['rc']}: {p['stderr']}"
        missing = [c for c in CASES + ASYNC_CASES if c not in p["lines"]]
        assert not missing, f"{name} probe did not print {missing}"


@pytest.mark.parametrize("case", CASES)
def test_errno_case(probes, case):
    """Same return value, errno and delivered datagrams with and without
    the shim for this case."""
    base, shim = probes
    want = base["lines"].get(case)
    got = shim["lines"].get(case)
    assert want is not None, f"baseline probe did not print {case}"
    assert got == want, (f"case {case}\n  kernel (no shim): {want}\n  with shim:        {got}\n"
                         f"command: LD_PRELOAD={PRELOAD} {TOOLS / 'uw_sender'} --errno-probe")


@pytest.mark.parametrize("case", ASYNC_CASES)
def test_async_error(probes, case):
    """A connected UDP socket to a closed port: ECONNREFUSED (from the ICMP
    error) is reported on a later send, within a few sends, and the send
    after it succeeds, as with the kernel alone."""
    base, shim = probes
    want, want_attempt = split_attempt(base["lines"][case])
    got, got_attempt = split_attempt(shim["lines"].get(case, "missing"))
    assert want.startswith("rc=-1 errno=ECONNREFUSED"), f"baseline: {base['lines'][case]}"
    assert want_attempt is not None and want_attempt <= ASYNC_MAX_ATTEMPT
    assert got == want, f"case {case}\n  kernel: {base['lines'][case]}\n  shim:   {shim['lines'].get(case)}"
    assert got_attempt is not None and got_attempt <= ASYNC_MAX_ATTEMPT, (
        f"ECONNREFUSED surfaced only at send #{got_attempt} with the shim "
        f"(kernel: #{want_attempt}); bound {ASYNC_MAX_ATTEMPT}")
