"""Where UDPWEAVE_STATS writes, and what it never does: follow a planted
symlink, replace a device or a FIFO, or fail the host. A %p is the pid;
without one, any process of the tree but the first writes to path.PID,
also after a fork and an exec."""
import json
import os
import socket
import stat
import subprocess
import threading

import pytest

from conftest import child_env, tool


def _send(stats, *cmd_prefix, count=5):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    cmd = list(cmd_prefix) + [tool("uw_sender"), "--dest", f"127.0.0.1:{port}",
                              "--count", str(count)]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                        env=child_env(shim=True, extra={"UDPWEAVE_STATS": str(stats)}))
    rx.close()
    return cp


def test_planted_symlink_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "stats.json"
    link.symlink_to(victim)
    cp = _send(link)
    assert cp.returncode == 0, cp.stderr
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink()
    assert json.loads(link.read_text())["datagrams_in"] == 5


def test_character_device_is_written_in_place(tmp_path):
    before = os.stat("/dev/null")
    cp = _send("/dev/null")
    after = os.lstat("/dev/null")
    assert cp.returncode == 0, cp.stderr
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert "udpweave:" not in cp.stderr


def test_fifo_gets_the_json(tmp_path):
    fifo = tmp_path / "stats.fifo"
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo) as f:
            got["text"] = f.read()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    cp = _send(fifo)
    t.join(timeout=10)
    assert cp.returncode == 0, cp.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(got["text"])["datagrams_out"] == 5


def test_directory_is_refused_with_one_line(tmp_path):
    d = tmp_path / "a-directory"
    d.mkdir()
    cp = _send(d)
    assert cp.returncode == 0
    lines = [l for l in cp.stderr.splitlines() if l.startswith("udpweave:")]
    assert len(lines) == 1 and "Is a directory" in lines[0], cp.stderr
    assert d.is_dir() and not any(d.iterdir())


def test_missing_directory_does_not_fail_the_host(tmp_path):
    cp = _send(tmp_path / "no" / "such" / "dir" / "s.json")
    assert cp.returncode == 0
    assert len([l for l in cp.stderr.splitlines() if l.startswith("udpweave:")]) == 1


def test_forked_and_execed_child_writes_path_dot_pid(tmp_path):
    """sh (the first process) keeps the plain path; the sender it forks and
    execs writes path.PID, even though it loaded the library afresh."""
    stats = tmp_path / "s.json"
    cp = _send(stats, "sh", "-c", '"$@"; true', "sh", count=7)
    assert cp.returncode == 0, cp.stderr
    children = [p for p in tmp_path.iterdir() if p.name.startswith("s.json.")
                and p.name[len("s.json."):].isdigit()]
    assert len(children) == 1, list(tmp_path.iterdir())
    assert json.loads(stats.read_text())["datagrams_in"] == 0
    assert json.loads(children[0].read_text())["datagrams_in"] == 7


def test_percent_p_is_the_pid(tmp_path):
    cp = _send(tmp_path / "s-%p.json")
    assert cp.returncode == 0, cp.stderr
    files = list(tmp_path.glob("s-*.json"))
    assert len(files) == 1 and files[0].name[2:-5].isdigit()
