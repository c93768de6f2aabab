"""The systemd drop-in example, docs/systemd/udpweave.conf (issue 11).

A small unit with the drop-in beside it must pass `systemd-analyze verify`
as written and with every commented setting turned on; every UDPWEAVE_*
name in it must be one the library reads (core/config.c), and the library
must take every value without a word; its LD_PRELOAD path must be where
`make deb` puts the library (the Makefile's package layout)."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, child_env, udpweave_lines

DROPIN = REPO / "docs" / "systemd" / "udpweave.conf"
MULTIARCH = "x86_64-linux-gnu"        # the triplet the drop-in is written for
UNIT = "[Unit]\nDescription=udpweave drop-in test\n\n[Service]\nExecStart=/bin/true\n"
SETTING = re.compile(r"^#?\s*([A-Za-z]+)=(.*)$")


def dropin_lines(enabled):
    """The drop-in's lines; with enabled, its commented settings turned on."""
    lines = DROPIN.read_text().splitlines()
    if enabled:
        lines = [l[1:] if re.match(r"^#[A-Z][A-Za-z]*=", l) else l for l in lines]
    return lines


def environment(lines):
    """NAME -> value of the Environment= assignments (one per line here):
    quotes dropped, %% unescaped as systemd does."""
    env = {}
    for l in lines:
        m = SETTING.match(l)
        if not m or l.startswith("#") or m.group(1) != "Environment":
            continue
        value = m.group(2).strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        name, _, v = value.partition("=")
        env[name] = v.replace("%%", "%")
    return env


def library_variables():
    """The UDPWEAVE_* names the library reads: core/config.c's uw_vars[]."""
    src = (REPO / "core" / "config.c").read_text()
    table = re.search(r"uw_vars\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    assert table, "core/config.c: no uw_vars[] table"
    names = re.findall(r'\{\s*"([A-Z0-9_]+)",', table.group(1))
    assert len(names) > 5, names
    return {"UDPWEAVE_" + n for n in names}


@pytest.mark.parametrize("enabled", [False, True], ids=["as-written", "all-settings-on"])
def test_unit_with_the_dropin_verifies(tmp_path, enabled):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    (tmp_path / "uwtest.service").write_text(UNIT)
    (tmp_path / "uwtest.service.d").mkdir()
    (tmp_path / "uwtest.service.d" / "udpweave.conf").write_text(
        "\n".join(dropin_lines(enabled)) + "\n")
    r = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "uwtest.service")],
                       capture_output=True, text=True, timeout=30)
    # Unknown keys and bad assignments are warnings with exit status 0: any
    # line about our files is a failure.
    ours = [l for l in (r.stdout + r.stderr).splitlines() if str(tmp_path) in l]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_every_setting_is_a_library_variable():
    known = library_variables()
    env = environment(dropin_lines(enabled=True))
    names = {n for n in env if n.startswith("UDPWEAVE_")}
    assert len(names) >= 10, names
    assert names <= known, f"not read by the library: {sorted(names - known)}"
    # Every comment naming a variable names a real one too.
    mentioned = set(re.findall(r"UDPWEAVE_[A-Z0-9_]+", DROPIN.read_text()))
    assert mentioned <= known, f"not read by the library: {sorted(mentioned - known)}"


def test_the_library_takes_every_value(tmp_path):
    """/bin/true under the built library with all the drop-in's settings on:
    UDPWEAVE_LOG=info prints the configuration read (the packet backend,
    set last); a bad value or an unknown name would print a line of its own."""
    env = {n: v for n, v in environment(dropin_lines(enabled=True)).items()
           if n.startswith("UDPWEAVE_")}
    env["UDPWEAVE_STATS"] = str(tmp_path / "stats-%p.json")   # /run/udpweave may not exist
    env.pop("UDPWEAVE_DISABLE")          # the other settings must be read
    r = subprocess.run(["/bin/true"], env=child_env(True, extra=env),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert env["UDPWEAVE_LOG"] == "info" and env["UDPWEAVE_BACKEND"] == "packet", env
    lines = udpweave_lines(r.stderr)
    config = [l for l in lines if l.startswith("udpweave: backend ")]
    assert config and config[0].startswith("udpweave: backend packet,"), r.stderr
    assert not [l for l in lines if l not in config], r.stderr


def test_preload_path_is_the_package_layout(tmp_path):
    """The drop-in's LD_PRELOAD is where `make deb` installs the library:
    the install line of libudpweave.so in the package's staging tree."""
    env = environment(dropin_lines(enabled=False))
    assert env.get("LD_PRELOAD") == f"/usr/lib/{MULTIARCH}/udpweave/libudpweave.so", env
    build = tmp_path / "b"
    r = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(REPO), "deb",
                        f"B={build}", f"DEB_MULTIARCH={MULTIARCH}"],
                       env=dict(os.environ, UW_DEPS_CHECKED="1"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    staging = f"{build}/deb/udpweave"
    dests = re.findall(rf"^install -m \d+ {re.escape(str(build))}/libudpweave\.so "
                       rf"{re.escape(staging)}(\S+)$", r.stdout, re.M)
    assert dests == [env["LD_PRELOAD"]], r.stdout
