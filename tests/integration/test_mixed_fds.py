"""Only UDP sockets are touched (design.md 3.1): a process that mixes TCP,
Unix stream/datagram/seqpacket, pipe, file and netlink traffic (and an ICMP
datagram socket in a private network namespace) with UDP sends.  The
non-UDP traffic must be byte-identical with its message boundaries and its
errno behaviour; the UDP datagrams, including those on sockets the library
did not see created (raw syscall, SCM_RIGHTS, dup), must all arrive."""
import json
import re

from conftest import assert_delay_bound, run, tool, udpweave_lines

ROUNDS = 150
# a long max delay makes "close flushes" and the fd-reuse cases sharp
LONG_DELAY_US = 300_000


def parse(stdout):
    cases, checks, summary = {}, {}, None
    for line in stdout.splitlines():
        m = re.match(r"case=(\S+) (.*)$", line)
        if m:
            cases[m.group(1)] = m.group(2)
        m = re.match(r"check=(\S+) (ok|FAIL)(.*)$", line)
        if m:
            checks[m.group(1)] = (m.group(2), m.group(3).strip())
        if line.startswith("{"):
            summary = json.loads(line)
    return cases, checks, summary


def run_mixed(receiver_factory, shim, extra_env=None):
    rx = receiver_factory(binds=["127.0.0.1:0"])
    r = run([tool("uw_mixed"), "--dest", rx.addr(0), "--rounds", ROUNDS, "--netns-ping"],
            shim=shim, extra_env=extra_env)
    report = rx.finish()
    cases, checks, summary = parse(r.stdout)
    assert summary is not None, f"uw_mixed printed no summary\n{r.describe()}"
    return r, report, cases, checks, summary


def udp_problems(rx, summary):
    """What is wrong with the UDP flows uw_mixed sent, per the receiver."""
    problems = []
    for fid, n in summary["udp_sent"].items():
        f = rx["flows"].get(fid)
        if not f:
            problems.append(f"UDP flow {fid}: {n} sent, none received")
            continue
        for key, want in (("count", n), ("missing", 0), ("dups", 0), ("reorders", 0),
                          ("corrupt", 0), ("last_seq", n - 1)):
            if f[key] != want:
                problems.append(f"UDP flow {fid}: {key}={f[key]}, expected {want}")
    for key in ("short", "bad_magic", "bad_length", "truncated", "corrupt", "rx_overflow"):
        if rx[key]:
            problems.append(f"receiver: {key}={rx[key]}")
    extra = set(rx["flows"]) - set(summary["udp_sent"])
    if extra:
        problems.append(f"UDP flows nobody sent: {sorted(extra)}")
    return problems


def test_mixed_traffic(receiver_factory):
    """Run uw_mixed without and with the shim: every non-UDP check passes
    both ways, every errno case is the same, and all UDP datagrams
    arrive."""
    b_run, b_rx, b_cases, b_checks, b_sum = run_mixed(receiver_factory, False)
    assert b_run.rc == 0 and b_sum["fail"] == 0, f"baseline failed\n{b_run.describe()}"

    env = {"UDPWEAVE_MAX_DELAY_US": str(LONG_DELAY_US)}
    r, rx, cases, checks, summary = run_mixed(receiver_factory, True, env)
    assert not udpweave_lines(r.stderr), f"configuration refused\n{r.describe()}"

    problems = []
    for name, (state, detail) in sorted(checks.items()):
        if state != "ok":
            problems.append(f"check {name} failed with the shim: {detail} "
                            f"(kernel alone: {b_checks.get(name)})")
    for name in b_checks:
        if name not in checks:
            problems.append(f"check {name} missing with the shim")
    for name, want in sorted(b_cases.items()):
        got = cases.get(name)
        if got != want:
            problems.append(f"case {name}: kernel alone '{want}', with shim '{got}'")
    assert not problems, r.describe() + "\n" + "\n".join(problems)
    assert r.rc == 0, r.describe()

    assert not udp_problems(b_rx, b_sum), b_run.describe() + "\n" + "\n".join(udp_problems(b_rx, b_sum))
    assert not udp_problems(rx, summary), r.describe() + "\n" + "\n".join(udp_problems(rx, summary))
    assert summary["udp_sent"] == b_sum["udp_sent"]
    assert_delay_bound(rx, LONG_DELAY_US, r.describe())
