#!/bin/bash
# udpweave demo (make demo): stream an MPEG-TS file with a real server,
# GStreamer, to a receiver on 127.0.0.1 -- once plainly, once under
# LD_PRELOAD=libudpweave.so -- and check that the receiver got exactly the
# file, datagram for datagram.
#
#   bash scripts/demo.sh [BUILD_DIR]
#
# Server: gst-launch-1.0 filesrc blocksize=1316 ! identity datarate=R
#         ! udpsink sync=true
# i.e. a constant-bit-rate playout of 7-TS-packet datagrams, paced by the
# pipeline clock. (tsparse set-timestamps=true alignment=7 is the more
# "TS-aware" pipeline, but at EOS it re-packs the packets after the last PCR
# into one oversized buffer padded with null packets, so the receiver could
# not get a byte-identical file.)
#
# Four runs of ~8 s: baseline and udpweave for CPU time (run_measured:
# wait4 rusage of the server), then both again under `strace -f -yy` to count
# send system calls (strace slows the traced process, so its CPU is not
# used).  Every run's delivery is checked: datagram count and sizes, sha256
# of the concatenated payloads against the file, sync bytes, continuity
# counters.  Exits 1 if a check fails, 2 if a tool is missing.
#
# Rate: 20 Mbit/s by default, i.e. one 1316-byte datagram every 0.53 ms.
# At 4 Mbit/s a datagram leaves every 2.6 ms, longer than udpweave's default
# maximum delay (2 ms), so there is nothing to batch (DEMO_MBPS=4 shows it).
#
# Environment: DEMO_MBPS (TS mux rate, default 20), DEMO_SECONDS (default 8),
# DEMO_KEEP=1 keeps the received payloads in BUILD_DIR/demo.
set -u

BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "demo: build dir '${1:-build}' not found (run make)" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
MBPS=${DEMO_MBPS:-20}
SECONDS_TS=${DEMO_SECONDS:-8}
WORK=$BUILD/demo
LIB=$BUILD/libudpweave.so
MEASURE=$BUILD/bench/run_measured
RX="/usr/bin/python3 $SRC/bench/ts_receiver.py"
PY=/usr/bin/python3
RX_PID=

die() { echo "demo: $*" >&2; exit 2; }

need() {	# tool, Debian package
	command -v "$1" >/dev/null 2>&1 || die "missing '$1' (Debian package: $2; 'make deps' installs it)"
}

check_tools() {
	need ffmpeg ffmpeg
	need gst-launch-1.0 gstreamer1.0-tools
	need gst-inspect-1.0 gstreamer1.0-tools
	need strace strace
	need timeout coreutils
	[ -x $PY ] || die "missing $PY (Debian package: python3)"
	for e in filesrc identity udpsink; do
		gst-inspect-1.0 "$e" >/dev/null 2>&1 ||
			die "GStreamer element '$e' missing (Debian: gstreamer1.0-plugins-base gstreamer1.0-plugins-good)"
	done
	[ -f "$LIB" ] || die "$LIB not built (make lib)"
	[ -x "$MEASURE" ] || die "$MEASURE not built (make tools)"
}

cleanup() {
	[ -n "$RX_PID" ] && kill "$RX_PID" 2>/dev/null
	[ "${DEMO_KEEP:-0}" = 1 ] || rm -rf "$WORK"/recv-* "$WORK"/stats-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An ~8 s H.264 + AAC test stream at a constant mux rate, cut to whole
# 1316-byte datagrams (cached in BUILD_DIR/demo).
make_ts() {
	TS=$WORK/testsrc-${MBPS}M-${SECONDS_TS}s.ts
	[ -s "$TS" ] && return
	echo "generating $TS (${SECONDS_TS} s, ${MBPS} Mbit/s mux rate) ..."
	ffmpeg -hide_banner -loglevel error -y \
		-f lavfi -i "testsrc=size=1280x720:rate=25" \
		-f lavfi -i "sine=frequency=1000:sample_rate=48000" -t "$SECONDS_TS" \
		-c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p \
		-b:v "$((MBPS * 6 / 10))M" -maxrate "$((MBPS * 6 / 10))M" -bufsize "$((MBPS * 3 / 10))M" \
		-c:a aac -b:a 128k -f mpegts -muxrate "${MBPS}M" "$TS.tmp" ||
		die "ffmpeg failed to generate the test stream"
	truncate -s $(( $(stat -c %s "$TS.tmp") / 1316 * 1316 )) "$TS.tmp"
	mv "$TS.tmp" "$TS"
}

start_receiver() {	# name
	$RX receive --out "$WORK/recv-$1.ts" --idle 1.5 --timeout 90 >"$WORK/recv-$1.log" &
	RX_PID=$!
	for _ in $(seq 50); do
		PORT=$(awk '/^ready/ {print $2}' "$WORK/recv-$1.log")
		[ -n "$PORT" ] && return
		sleep 0.1
	done
	die "receiver did not start"
}

server() {	# runs the GStreamer server with the given prefix command
	"$@" gst-launch-1.0 -q filesrc location="$TS" blocksize=1316 \
		! identity datarate=$((MBPS * 125000)) \
		! udpsink host=127.0.0.1 port="$PORT" sync=true
}

# run NAME shim|plain measure|strace
run() {
	local name=$1 shim=$2 how=$3 env=() rc
	rm -rf "$WORK"/stats-*.json "$WORK/recv-$name.stats"
	[ "$shim" = shim ] && env=(LD_PRELOAD="$LIB" UDPWEAVE_STATS="$WORK/stats-%p.json")
	start_receiver "$name"
	if [ "$how" = measure ]; then
		local setenv=()
		for e in "${env[@]}"; do setenv+=(--setenv "$e"); done
		server timeout 60 "$MEASURE" --out "$WORK/recv-$name.rusage" "${setenv[@]}" --
	else
		server timeout 60 strace -f -qq -yy -o "$WORK/recv-$name.strace" \
			-e trace=sendto,sendmsg,sendmmsg env "${env[@]}"
	fi
	rc=$?
	wait "$RX_PID"
	RX_PID=
	[ $rc -eq 0 ] || echo "demo: server exited with status $rc in run '$name'" >&2
	mkdir -p "$WORK/recv-$name.stats"
	mv "$WORK"/stats-*.json "$WORK/recv-$name.stats/" 2>/dev/null
	$RX check --reference "$TS" --received "$WORK/recv-$name.ts" >"$WORK/recv-$name.check"
	printf '  %-16s %s\n' "$name" "$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print("delivery check", "passed" if d["passed"] else "FAILED", "(%d datagrams)" % d["received_datagrams"])' "$WORK/recv-$name.check")"
	[ "${DEMO_KEEP:-0}" = 1 ] || rm -f "$WORK/recv-$name.ts"
}

report() {
	$PY - "$WORK" "$TS" "$MBPS" <<'EOF'
import json, os, re, sys
work, ts, mbps = sys.argv[1], sys.argv[2], sys.argv[3]

def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().split('\n')[0])
    except (OSError, ValueError, IndexError):
        return None

def stats(d):
    """The library's stats JSON of the server (the file with the most
    datagrams: a helper process such as gst-plugin-scanner writes one too)."""
    try:
        files = [load(os.path.join(d, f)) for f in os.listdir(d)]
    except OSError:
        return None
    files = [f for f in files if f]
    return max(files, key=lambda f: f.get('datagrams_in', 0)) if files else None

def strace_calls(path):
    """Send calls on UDP sockets in a `strace -f -yy` log (not, say, the
    Unix-socket traffic of another library of the process)."""
    call = re.compile(r'^\d+\s+(sendto|sendmsg|sendmmsg)\(\d+<UDP')
    try:
        return sum(1 for line in open(path) if call.match(line))
    except OSError:
        return None

rows, ok, xcheck = [], True, None
for name, label in (('baseline', 'baseline'), ('udpweave', 'udpweave (LD_PRELOAD)')):
    ru = load(os.path.join(work, 'recv-%s.rusage' % name))
    st_cpu = stats(os.path.join(work, 'recv-%s.stats' % name)) if name == 'udpweave' else None
    chk = [load(os.path.join(work, 'recv-%s%s.check' % (name, s))) for s in ('', '-strace')]
    calls = strace_calls(os.path.join(work, 'recv-%s-strace.strace' % name))
    sent = (st_cpu or {}).get('datagrams_out') if name == 'udpweave' else calls
    passed = all(c and c['passed'] for c in chk)
    ok &= passed
    sys_txt = '%s (strace)' % calls if calls is not None else '?'
    if name == 'udpweave':
        sys_txt = '%s (stats)' % (st_cpu['syscalls'] if st_cpu else '?')
        st_tr = stats(os.path.join(work, 'recv-udpweave-strace.stats'))
        xcheck = ('cross-check, udpweave run under strace -f: strace counted %s send '
                  'calls, the library\'s stats say %s' % (
                      calls if calls is not None else '?',
                      st_tr['syscalls'] if st_tr else '?'))
    nsys = st_cpu['syscalls'] if name == 'udpweave' and st_cpu else calls
    rows.append((label,
                 '%s' % (sent if sent is not None else '?'),
                 '%s' % (chk[0]['received_datagrams'] if chk[0] else '?'),
                 sys_txt,
                 '%.1f' % (sent / nsys) if sent and nsys else '?',
                 '%.3f' % (ru['utime_s'] + ru['stime_s']) if ru else '?',
                 'passed' if passed else 'FAILED'))
hdr = ('run', 'datagrams sent', 'received', 'send syscalls', 'dgrams/syscall',
       'server CPU s', 'delivery check')
w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
line = lambda r: '| ' + ' | '.join(c.ljust(w[i]) for i, c in enumerate(r)) + ' |'
size = os.path.getsize(ts)
print()
print('GStreamer (filesrc ! identity datarate ! udpsink sync=true) -> 127.0.0.1, '
      '%s: %.1f MB, %d datagrams x 1316 B, %s Mbit/s' % (
          os.path.basename(ts), size / 1e6, size // 1316, mbps))
print()
print(line(hdr))
print('|' + '|'.join('-' * (x + 2) for x in w) + '|')
for r in rows:
    print(line(r))
st = stats(os.path.join(work, 'recv-udpweave.stats'))
print()
if xcheck:
    print(xcheck)
if st:
    print('udpweave stats: backend=%s batches=%s gso_runs=%s segments_max=%s '
          'max_queue_delay_us=%s dropped=%s fallbacks_gso=%s async_errors=%s' % tuple(
              st.get(k, '?') for k in ('backend', 'batches', 'gso_runs', 'segments_max',
                                       'max_queue_delay_us', 'datagrams_dropped',
                                       'fallbacks_gso', 'async_errors')))
print()
print('delivery check: same datagram count and sizes, sha256 of the payloads = sha256 of the file,')
print('0x47 every 188 bytes, no continuity-counter errors (all four runs): %s'
      % ('passed' if ok else 'FAILED'))
sys.exit(0 if ok else 1)
EOF
}

check_tools
mkdir -p "$WORK"
make_ts
gst-inspect-1.0 udpsink >/dev/null 2>&1	# warm the plugin registry outside the measured runs
echo "streaming $(basename "$TS") 4 times (~${SECONDS_TS} s each) ..."
run baseline plain measure
run udpweave shim measure
run baseline-strace plain strace
run udpweave-strace shim strace
report
