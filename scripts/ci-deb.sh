#!/usr/bin/env bash
# CI: the Debian package. `make deb` in this checkout, `dpkg -i` it, then
# from the installed paths only: `udpweave check` (exit 0: the default
# backend can run here), a short `udpweave run` of a program sending UDP
# datagrams to 127.0.0.1 (the installed library loaded and counting them),
# `pkg-config --variable=preload udpweave` naming the installed library;
# then `dpkg -r udpweave` (also on failure) and no file of the package left.
# Root only (dpkg -i); never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "ci-deb: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs and removes the package with dpkg)"
if dpkg-query -W -f='${Status}' udpweave 2>/dev/null | grep -q 'install ok installed'; then
	fail "udpweave is already installed as a package; remove it first (dpkg -r udpweave)"
fi

tmp=$(mktemp -d /tmp/udpweave-deb.XXXXXX)
installed=0
cleanup() {
	if [ "$installed" = 1 ]; then
		dpkg -r udpweave >/dev/null || echo "ci-deb: dpkg -r udpweave failed" >&2
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

make -j2 deb >"$tmp/make.log" 2>&1 || { tail -n 30 "$tmp/make.log"; fail "make deb"; }
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
deb=build/udpweave_${version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "make deb did not build $deb"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib=/usr/lib/$multiarch/udpweave/libudpweave.so
echo "ci-deb: built $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb --field "$deb" Depends

installed=1
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i $deb"; }
dpkg -L udpweave >"$tmp/files"
for f in /usr/bin/udpweave "$lib" /usr/include/udpweave.h /usr/include/udpweave_stats.h \
	/usr/lib/"$multiarch"/pkgconfig/udpweave.pc /usr/share/man/man1/udpweave.1.gz \
	/usr/share/man/man7/udpweave.7.gz /usr/share/doc/udpweave/copyright; do
	[ -f "$f" ] || fail "$f not installed"
done

# check: 0 the backend can run here, 1 it cannot (udpweave(1), EXIT STATUS).
rc=0
/usr/bin/udpweave check >"$tmp/check" 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/check"; fail "udpweave check exited $rc"; }
grep -q "^OK   library: $lib\$" "$tmp/check" || { cat "$tmp/check"; fail "udpweave check did not find $lib"; }
grep -E '^(OK|NO)   (library|backend)' "$tmp/check"

# run: 20 datagrams to a socket of the same program, which reports the
# udpweave library it has mapped and how many datagrams arrived.
cat >"$tmp/send.py" <<'EOF'
import socket
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.settimeout(5)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    tx.sendto(b"%04d" % i * 50, rx.getsockname())
got = sum(1 for _ in range(20) if rx.recv(2048))
maps = [l.split()[-1] for l in open("/proc/self/maps") if "libudpweave" in l]
print(f"received {got} mapped {maps[0] if maps else 'none'}")
EOF
rc=0
out=$(/usr/bin/udpweave run --stats "$tmp/stats.json" -- /usr/bin/python3 "$tmp/send.py") || rc=$?
[ $rc -eq 0 ] || fail "udpweave run exited $rc"
echo "ci-deb: run: $out"
[ "$out" = "received 20 mapped $lib" ] || fail "expected 'received 20 mapped $lib'"
/usr/bin/python3 - "$tmp/stats.json" <<'EOF' || fail "the library's stats do not count the 20 datagrams"
import json, sys
s = json.load(open(sys.argv[1]))
print(f"ci-deb: stats: backend {s['backend']}, datagrams in {s['datagrams_in']}, "
      f"out {s['datagrams_out']}, syscalls {s['syscalls']}")
sys.exit(0 if s["datagrams_in"] == 20 and s["datagrams_out"] == 20 else 1)
EOF

# tracing: the provider installed beside the library is what it loads
# (UDPWEAVE_TRACE=1: whether or not a session daemon runs).
provider=/usr/lib/"$multiarch"/udpweave/libudpweave-lttng.so
if grep -q ' lttng=1 ' build/config.stamp 2>/dev/null; then
	[ -f "$provider" ] || fail "$provider not installed"
	out=$(UDPWEAVE_TRACE=1 /usr/bin/udpweave run -- /usr/bin/python3 -c '
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))
print(sum("libudpweave-lttng.so" in l for l in open("/proc/self/maps")) > 0)') ||
		fail "udpweave run with UDPWEAVE_TRACE=1 failed"
	[ "$out" = True ] || fail "UDPWEAVE_TRACE=1 did not load $provider"
	echo "ci-deb: tracing: UDPWEAVE_TRACE=1 loads $provider"
fi

preload=$(pkg-config --variable=preload udpweave) || fail "pkg-config does not know udpweave"
[ "$preload" = "$lib" ] ||
	fail "pkg-config --variable=preload udpweave is '$preload' ($(pkg-config --path udpweave)), not $lib"
[ -f "$preload" ] || fail "$preload (pkg-config's preload) does not exist"
echo "ci-deb: pkg-config preload: $preload"

dpkg -r udpweave >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -r udpweave"; }
installed=0
left=()
while read -r f; do
	if [ -f "$f" ] || [ -L "$f" ]; then left+=("$f"); fi
done <"$tmp/files"
if [ -d "/usr/lib/$multiarch/udpweave" ]; then left+=("/usr/lib/$multiarch/udpweave/"); fi
[ ${#left[@]} -eq 0 ] || fail "left after dpkg -r: ${left[*]}"
echo "ci-deb: $deb installed, checked, run and removed ($(wc -l <"$tmp/files") paths, none left)"
