#!/bin/bash
# udpweave demo (make demo): stream an MPEG-TS file with a real server,
# GStreamer, to receivers on 127.0.0.1 -- plainly and under
# LD_PRELOAD=libudpweave.so -- check that every receiver got exactly the
# file, and show, side by side, a workload where batching pays and one
# where it does not:
#
#   (a) multiudpsink with 100 clients (127.0.0.1 ports P..P+99): every
#       datagram goes to 100 destinations, so a 2 ms flush interval holds
#       hundreds of datagrams -- few sendmmsg calls, and GSO runs of several
#       datagrams per destination;
#   (b) one udpsink stream at 20 Mbit/s: one datagram every 0.53 ms, ~4 per
#       flush interval -- the library's fixed cost (its flush thread, one
#       wake-up per flush) exceeds the send system calls it saves.
#
#   bash scripts/demo.sh [BUILD_DIR]
#
# Server: gst-launch-1.0 filesrc blocksize=1316 ! identity datarate=R
#         ! udpsink sync=true        (or multiudpsink clients=...)
# i.e. a constant-bit-rate playout of 7-TS-packet datagrams, paced by the
# pipeline clock. (tsparse set-timestamps=true alignment=7 is the more
# "TS-aware" pipeline, but at EOS it re-packs the packets after the last PCR
# into one oversized buffer padded with null packets, so the receiver could
# not get a byte-identical file.)
#
# CPU: DEMO_ROUNDS rounds of (a) baseline, (a) udpweave, (b) baseline,
# (b) udpweave, interleaved so that the machine's drift hits both sides;
# the server's CPU (wait4 rusage, bench/run_measured) is the median over
# the rounds.  Send system calls: udpweave's from the library's own
# statistics (UDPWEAVE_STATS, written at exit, of the measured runs); the
# baseline's from `strace -f --seccomp-bpf` of a shorter run
# (DEMO_STRACE_SECONDS of the file; strace slows the traced process, so its
# CPU is not used), and udpweave under strace as a cross-check of the
# library's count.  Every run's delivery is checked: (b) datagram count and
# sizes, sha256 of the concatenated payloads against the file, sync bytes,
# continuity counters; (a) the datagram count and bytes of all clients, and
# that full check for DEMO_KEEP_CLIENTS of them.  Exits 1 if a check fails,
# 2 if a tool is missing.
#
# Environment: DEMO_MBPS (TS mux rate, default 20), DEMO_SECONDS (file
# length, default 4), DEMO_CLIENTS (default 100), DEMO_KEEP_CLIENTS (clients
# checked byte for byte, default 4), DEMO_ROUNDS (default 3),
# DEMO_STRACE_SECONDS (default 1), DEMO_KEEP=1 keeps the received payloads
# in BUILD_DIR/demo.
set -u

BUILD=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "demo: build dir '${1:-build}' not found (run make)" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
MBPS=${DEMO_MBPS:-20}
SECONDS_TS=${DEMO_SECONDS:-4}
CLIENTS=${DEMO_CLIENTS:-100}
KEEP_CLIENTS=${DEMO_KEEP_CLIENTS:-4}
ROUNDS=${DEMO_ROUNDS:-3}
STRACE_SECONDS=${DEMO_STRACE_SECONDS:-1}
WORK=$BUILD/demo
LIB=$BUILD/libudpweave.so
MEASURE=$BUILD/bench/run_measured
RX="/usr/bin/python3 $SRC/bench/ts_receiver.py"
PY=/usr/bin/python3
RX_PID=
FAILED=0

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
	for e in filesrc identity udpsink multiudpsink; do
		gst-inspect-1.0 "$e" >/dev/null 2>&1 ||
			die "GStreamer element '$e' missing (Debian: gstreamer1.0-plugins-base gstreamer1.0-plugins-good)"
	done
	[ -f "$LIB" ] || die "$LIB not built (make lib)"
	[ -x "$MEASURE" ] || die "$MEASURE not built (make tools)"
}

cleanup() {
	[ -n "$RX_PID" ] && kill "$RX_PID" 2>/dev/null
	[ "${DEMO_KEEP:-0}" = 1 ] || rm -rf "$WORK"/run-* "$WORK"/stats-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An H.264 + AAC test stream at a constant mux rate, cut to whole
# 1316-byte datagrams (cached in BUILD_DIR/demo), and its first
# STRACE_SECONDS for the strace runs.
make_ts() {
	TS=$WORK/testsrc-${MBPS}M-${SECONDS_TS}s.ts
	if [ ! -s "$TS" ]; then
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
	fi
	HEAD_DGRAMS=$((MBPS * 125000 * STRACE_SECONDS / 1316))
	TS_HEAD=$WORK/testsrc-${MBPS}M-${SECONDS_TS}s-head${HEAD_DGRAMS}.ts
	[ -s "$TS_HEAD" ] || head -c $((HEAD_DGRAMS * 1316)) "$TS" >"$TS_HEAD"
}

# start_receiver NAME WORKLOAD: sets PORT (the first of the block for many)
start_receiver() {
	local opt=()
	[ "$2" = many ] && opt=(--clients "$CLIENTS" --keep "$KEEP_CLIENTS")
	$RX receive --out "$WORK/run-$1.ts" --idle 0.5 --timeout $((SECONDS_TS + 40)) "${opt[@]}" \
		>"$WORK/run-$1.log" &
	RX_PID=$!
	for _ in $(seq 100); do
		PORT=$(awk '/^ready/ {print $2}' "$WORK/run-$1.log")
		[ -n "$PORT" ] && return
		sleep 0.05
	done
	die "receiver did not start"
}

# server WORKLOAD FILE NUM_BUFFERS PREFIX...: the GStreamer server under the
# given prefix command
server() {
	local workload=$1 file=$2 nbuf=$3 sink
	shift 3
	if [ "$workload" = many ]; then
		local cl= i
		for ((i = 0; i < CLIENTS; i++)); do cl+="${cl:+,}127.0.0.1:$((PORT + i))"; done
		sink=(multiudpsink clients="$cl" sync=true)
	else
		sink=(udpsink host=127.0.0.1 port="$PORT" sync=true)
	fi
	"$@" gst-launch-1.0 -q filesrc location="$file" blocksize=1316 num-buffers="$nbuf" \
		! identity datarate=$((MBPS * 125000)) ! "${sink[@]}"
}

# run NAME many|one shim|plain measure|strace
run() {
	local name=$1 workload=$2 shim=$3 how=$4 env=() rc ref=$TS nbuf=-1
	rm -rf "$WORK"/stats-*.json "$WORK/run-$name.stats"
	[ "$shim" = shim ] && env=(LD_PRELOAD="$LIB" UDPWEAVE_STATS="$WORK/stats-%p.json")
	start_receiver "$name" "$workload"
	if [ "$how" = measure ]; then
		local setenv=()
		for e in "${env[@]}"; do setenv+=(--setenv "$e"); done
		server "$workload" "$TS" -1 timeout 60 "$MEASURE" --out "$WORK/run-$name.rusage" "${setenv[@]}" --
	else
		ref=$TS_HEAD nbuf=$HEAD_DGRAMS
		server "$workload" "$TS" "$nbuf" timeout 60 strace -f -qq -yy --seccomp-bpf \
			-o "$WORK/run-$name.strace" -e trace=sendto,sendmsg,sendmmsg env "${env[@]}"
	fi
	rc=$?
	wait "$RX_PID"
	RX_PID=
	[ $rc -eq 0 ] || echo "demo: server exited with status $rc in run '$name'" >&2
	mkdir -p "$WORK/run-$name.stats"
	mv "$WORK"/stats-*.json "$WORK/run-$name.stats/" 2>/dev/null
	if [ "$workload" = many ]; then
		$RX check-clients --reference "$ref" --received "$WORK/run-$name.ts" \
			--log "$WORK/run-$name.log" >"$WORK/run-$name.check"
	else
		$RX check --reference "$ref" --received "$WORK/run-$name.ts" >"$WORK/run-$name.check"
	fi
	[ $? -eq 0 ] || FAILED=1
	printf '  %-22s %s\n' "$name" "$($PY - "$WORK/run-$name.check" "$WORK/run-$name.rusage" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print('delivery check FAILED (no result)'); sys.exit()
s = 'delivery check %s' % ('passed' if d['passed'] else 'FAILED')
if 'clients' in d:
    s += ' (%d datagrams: %d/%d clients complete, %d/%d byte-exact)' % (
        d['received_datagrams'], d['clients_complete'], d['clients'],
        d['kept_passed'], d['kept_checked'])
else:
    s += ' (%d datagrams)' % d['received_datagrams']
try:
    r = json.load(open(sys.argv[2]))
    s += ', server CPU %.2f s' % (r['utime_s'] + r['stime_s'])
except (OSError, ValueError):
    pass
print(s)
PY
)"
	[ "${DEMO_KEEP:-0}" = 1 ] || rm -f "$WORK/run-$name.ts" "$WORK/run-$name.ts".*
}

report() {
	$PY - "$WORK" "$TS" "$MBPS" "$CLIENTS" "$ROUNDS" <<'PY'
import json, os, re, statistics, sys
work, ts, mbps, clients, rounds = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def load(path):
    try:
        with open(path) as f:
            return json.loads(f.read().split('\n')[0])
    except (OSError, ValueError, IndexError):
        return None

def stats(name):
    """The library's stats JSON of the server (the file with the most
    datagrams: a helper process such as gst-plugin-scanner writes one too)."""
    d = os.path.join(work, 'run-%s.stats' % name)
    try:
        files = [load(os.path.join(d, f)) for f in os.listdir(d)]
    except OSError:
        return None
    files = [f for f in files if f]
    return max(files, key=lambda f: f.get('datagrams_in', 0)) if files else None

def strace_calls(name):
    """Send calls on UDP sockets in a `strace -f -yy` log (not, say, the
    Unix-socket traffic of another library of the process)."""
    call = re.compile(r'^\d+\s+(sendto|sendmsg|sendmmsg)\(\d+<UDP')
    try:
        return sum(1 for line in open(os.path.join(work, 'run-%s.strace' % name)) if call.match(line))
    except OSError:
        return None

def cpu(name):
    r = load(os.path.join(work, 'run-%s.rusage' % name))
    return r['utime_s'] + r['stime_s'] if r else None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

size = os.path.getsize(ts)
per_stream = size // 1316
seconds = size * 8 / (mbps * 1e6)
ok = True
W = {}
for w, n in (('a', clients), ('b', 1)):
    base = [cpu('%s-base-%d' % (w, r)) for r in range(1, rounds + 1)]
    uw = [cpu('%s-udpweave-%d' % (w, r)) for r in range(1, rounds + 1)]
    sts = [stats('%s-udpweave-%d' % (w, r)) for r in range(1, rounds + 1)]
    sts = [s for s in sts if s]
    names = ['%s-%s-%d' % (w, m, r) for m in ('base', 'udpweave') for r in range(1, rounds + 1)]
    names += ['%s-%s-strace' % (w, m) for m in ('base', 'udpweave')]
    chk = [load(os.path.join(work, 'run-%s.check' % x)) for x in names]
    passed = all(c and c['passed'] for c in chk)
    ok &= passed
    dgrams = per_stream * n
    # baseline calls per datagram from strace of the shorter run
    head_dgrams = None
    c = load(os.path.join(work, 'run-%s-base-strace.check' % w))
    if c:
        head_dgrams = c.get('received_datagrams')
    bcalls = strace_calls('%s-base-strace' % w)
    ucalls = strace_calls('%s-udpweave-strace' % w)
    ust = stats('%s-udpweave-strace' % w)
    W[w] = dict(
        n=n, dgrams=dgrams, base=base, uw=uw, passed=passed,
        bmed=med(base), umed=med(uw),
        bspd=bcalls / head_dgrams if bcalls is not None and head_dgrams else None,
        uspd=med([(s['syscalls'] + s.get('sync_calls', 0)) / s['datagrams_in']
                  for s in sts if s.get('datagrams_in')]),
        batches=med([s['batches'] for s in sts]),
        messages=med([s['messages'] for s in sts]),
        wakeups=med([s.get('flush_thread_wake_late_us', {}).get('count', s['batches']) for s in sts]),
        sdgrams=med([s['datagrams_in'] for s in sts]),
        xcheck=(ucalls, ust['syscalls'] + ust.get('sync_calls', 0) if ust else None),
        dropped=sum(s.get('datagrams_dropped', 0) for s in sts))

def f(x, fmt):
    return fmt % x if x is not None else '?'

def ratio(w):
    return w['umed'] / w['bmed'] if w['umed'] and w['bmed'] else None

def explain(w, label):
    r = ratio(w)
    if r is None or not w['batches'] or w['bspd'] is None or w['uspd'] is None:
        return '%s: not enough measurements to explain' % label
    dpf = w['sdgrams'] / w['batches']
    ivl = seconds * 1e3 / w['batches']
    dpm = w['sdgrams'] / w['messages'] if w['messages'] else 0
    saved = w['bspd'] - w['uspd']
    num = lambda x: '%.0f' % x if x >= 20 else '%.1f' % x
    per = '%s datagrams per %.1f ms flush interval' % (num(dpf), ivl)
    if w['n'] > 1:
        per += ' (%s per client)' % num(dpf / w['n'])
    calls = ('1 send syscall per %.0f datagrams instead of per %.0f' % (1 / w['uspd'], 1 / w['bspd'])
             if w['uspd'] and w['bspd'] else 'no send syscalls')
    gso = '%.1f datagrams per GSO message' % dpm
    if r < 0.95:
        return ('%s: %s -> %s and %s, which outweighs the flush thread\'s %.0f wake-ups: '
                '%.2fx the CPU' % (label, per, calls, gso, w['wakeups'], r))
    if r > 1.05:
        return ('%s: %s, the flush thread\'s %.0f wake-ups cost more than the %.2f send '
                'syscalls per datagram saved (%s): %.2fx the CPU' % (
                    label, per, w['wakeups'], saved, calls, r))
    return ('%s: %s, the %.2f send syscalls per datagram saved (%s) about pay for the flush '
            'thread\'s %.0f wake-ups: %.2fx the CPU, within 5%%' % (
                label, per, saved, calls, w['wakeups'], r))

la = '(a) %d clients x %g Mbit/s' % (clients, mbps)
lb = '(b) 1 stream x %g Mbit/s' % mbps
a, b = W['a'], W['b']
rows = [
    ('', la, lb),
    ('GStreamer sink', 'multiudpsink, 127.0.0.1:P..P+%d' % (clients - 1), 'udpsink'),
    ('datagrams per run', '%d' % a['dgrams'], '%d' % b['dgrams']),
    ('server CPU s, baseline', f(a['bmed'], '%.2f'), f(b['bmed'], '%.2f')),
    ('server CPU s, udpweave', f(a['umed'], '%.2f'), f(b['umed'], '%.2f')),
    ('udpweave / baseline', f(ratio(a), '%.2fx'), f(ratio(b), '%.2fx')),
    ('send syscalls/datagram, baseline', f(a['bspd'], '%.4f'), f(b['bspd'], '%.4f')),
    ('send syscalls/datagram, udpweave', f(a['uspd'], '%.4f'), f(b['uspd'], '%.4f')),
    ('datagrams per flush', f(a['sdgrams'] / a['batches'] if a['batches'] else None, '%.1f'),
     f(b['sdgrams'] / b['batches'] if b['batches'] else None, '%.1f')),
    ('datagrams per GSO message', f(a['sdgrams'] / a['messages'] if a['messages'] else None, '%.1f'),
     f(b['sdgrams'] / b['messages'] if b['messages'] else None, '%.1f')),
    ('delivery check', 'passed' if a['passed'] else 'FAILED', 'passed' if b['passed'] else 'FAILED'),
]
wd = [max(len(r[i]) for r in rows) for i in range(3)]
print()
print('%s: %.1f MB, %d datagrams x 1316 B, %.1f s at %g Mbit/s per stream; '
      'server CPU = %s' % (
          os.path.basename(ts), size / 1e6, per_stream, seconds, mbps,
          'median of %d interleaved rounds' % rounds if rounds > 1 else '1 round'))
print()
for i, r in enumerate(rows):
    print('  ' + '  '.join(c.ljust(wd[j]) for j, c in enumerate(r)).rstrip())
    if i == 0:
        print('  ' + '  '.join('-' * x for x in wd))
print()
for w, l in ((a, la[4:]), (b, lb[4:])):
    print('  CPU s per round, %s: baseline %s, udpweave %s' % (
        l, ' '.join(f(x, '%.2f') for x in w['base']), ' '.join(f(x, '%.2f') for x in w['uw'])))
hc = load(os.path.join(work, 'run-b-base-strace.check'))
print('  send syscalls: baseline counted by strace -f over the first %s datagrams of each stream,' % (
    f(hc and hc['received_datagrams'], '%d')))
print('  udpweave by its stats file; cross-check, udpweave under strace: strace counted %s and %s '
      'send calls, the stats say %s and %s' % (
          f(a['xcheck'][0], '%d'), f(b['xcheck'][0], '%d'),
          f(a['xcheck'][1], '%d'), f(b['xcheck'][1], '%d')))
print()
print(explain(a, '%d clients' % clients))
print(explain(b, '1 stream at %g Mbit/s' % mbps))
print()
print('delivery check, every run: (b) same datagram count and sizes, sha256 of the payloads = sha256 of the file,')
print('0x47 every 188 bytes, no continuity-counter errors; (a) every client got every datagram and byte,')
print('and that full check on %s clients: %s' % (
    f(load(os.path.join(work, 'run-a-base-1.check')) and load(os.path.join(work, 'run-a-base-1.check'))['kept_checked'], '%d'),
    'passed' if ok else 'FAILED'))
sys.exit(0 if ok else 1)
PY
}

check_tools
mkdir -p "$WORK"
make_ts
gst-inspect-1.0 udpsink >/dev/null 2>&1	# warm the plugin registry outside the measured runs
echo "streaming $(basename "$TS") (${SECONDS_TS} s): $ROUNDS round(s) of (a) $CLIENTS clients and (b) 1 stream," \
	"baseline and udpweave, then 4 short runs under strace ..."
for r in $(seq "$ROUNDS"); do
	run a-base-$r many plain measure
	run a-udpweave-$r many shim measure
	run b-base-$r one plain measure
	run b-udpweave-$r one shim measure
done
run a-base-strace many plain strace
run a-udpweave-strace many shim strace
run b-base-strace one plain strace
run b-udpweave-strace one shim strace
report || FAILED=1
exit $FAILED
