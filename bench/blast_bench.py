"""The blast section of the udpweave benchmark (run by run_bench.py).

Workload: one plain C sender (build/bench/udp_blast) writes N datagrams of
1316 bytes round-robin to 100 destinations (10 addresses x 10 ports) with
one sendto() each, on one unconnected socket.  Variants, interleaved and
rotated round by round so drift on a noisy machine hits all of them alike:

  baseline     udp_blast --mode sendto, no preload
  shim         the same, LD_PRELOAD=libudpweave.so (default backend: mmsg)
  ideal        udp_blast --mode ideal-gso: hand-written sendmmsg, one
               16-segment UDP GSO run per destination per message
  trafgen      netsniff-ng trafgen (veth only): the same 1358-byte frames
               (Ethernet+IPv4+UDP+1316), 100 prebuilt frames for the 100
               destinations, sent from a TX_RING through the qdisc (-q) like
               every other variant; one process (-P 1).  Its socket memory
               boost and EAGAIN handling come from bench/so/uwb_trafgen_env.c
               (trafgen cannot change the host sysctls from a netns, and it
               exits on EAGAIN when the receiver pushes back).
  passthrough  shim with UDPWEAVE_BACKEND=passthrough
  baseline-conn, shim-conn   connected-send: one connected socket per
               destination, send() (veth path only)

Paths:
  veth      sender in netns uwb-tx-*, receiver (build/bench/udp_sink) in
            uwb-rx-*, joined by a veth pair.  The receiving veth runs
            threaded NAPI (GRO on + /sys/class/net/*/threaded), so the
            receive-side protocol work (IP/UDP input, GSO segmentation at
            the receiver, socket enqueue) runs in a napi kthread pinned
            to the receiver's CPU instead of in the sender's softirq
            context: without it that work is charged to the sender
            process (tick accounting, no IRQ_TIME_ACCOUNTING).  The
            "rx charging check" measures both ways.  TSO is off on the
            sending veth so every skb, whatever its origin, is eligible for
            the NAPI path (veth_skb_is_eligible_for_gro), and a pfifo qdisc
            on it turns a full NAPI ring into backpressure instead of drops
            (many connected sockets otherwise overflow the 256-entry ring).
            Same receive path for every variant.
  loopback  sender and receiver on the lo of a private netns (uwb-lo-*);
            here the receive path runs in the sender's context and IS
            charged to it (shown for comparison, as naive measurements see).

Figures per variant (medians over rounds): sender CPU us/datagram from the
wait4() rusage of the sender alone (build/bench/run_measured forks it, so
neither the launchers nor Python's high-water RSS leak into the figures;
covers its threads and the exit-time flush), ratio to baseline (median of
per-round ratios), datagrams per send system call (shim: stats JSON
datagrams_out/syscalls; plain modes: the tool's own call count), peak RSS
and its difference to baseline, delivery (loss, per-flow order, sizes) seen
by udp_sink, and CPU of the receiving napi kthread.  --rate paces every
sender (the ideal then batches one 2 ms window per destination; trafgen is
left out: its paced mode is a different, per-packet send path).
"""
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile

from benchlib import (BenchError, N_ADDRS, RX_BASE, LO_BASE, TX_ADDR, log,
                      clean_env, med, fmt, rotated, kill_group, thread_cpu_ns,
                      rx_addresses, build_preload, settle_and_stop, strace_prefix,
                      parse_strace)

SIZE = 1316
N_PORTS = 10
BASE_PORT = 9000
SENDER_TIMEOUT = 40.0   # hard kill of a sender (udp_blast stops itself at 20 s)
BLAST_TIME_LIMIT = 20.0
IDEAL_WINDOW_S = 0.002      # UDPWEAVE_MAX_DELAY_US default
SEND_CALLS = ('sendto', 'sendmsg', 'sendmmsg')

VARIANTS = {
    'baseline':      {'mode': 'sendto', 'preload': False},
    'shim':          {'mode': 'sendto', 'preload': True},
    # the same with another build of the library (--ref-lib, e.g. main's):
    # this tree's cost against it, side by side in one run
    'shim-ref':      {'mode': 'sendto', 'preload': True, 'ref': 'ref_lib'},
    # and a second one (--ref2-lib, e.g. the commit before a change): three
    # builds interleaved in one run
    'shim-ref2':     {'mode': 'sendto', 'preload': True, 'ref': 'ref2_lib'},
    'ideal':         {'mode': 'ideal-gso', 'preload': False},
    'trafgen':       {'mode': 'trafgen', 'preload': False},
    'passthrough':   {'mode': 'sendto', 'preload': True,
                      'env': {'UDPWEAVE_BACKEND': 'passthrough'}},
    'baseline-conn': {'mode': 'connected-send', 'preload': False},
    'shim-conn':     {'mode': 'connected-send', 'preload': True},
    # the packet backend: TX ring, frames interleaved packet by packet
    'packet':        {'mode': 'sendto', 'preload': True,
                      'env': {'UDPWEAVE_BACKEND': 'packet'}},
    'packet-conn':   {'mode': 'connected-send', 'preload': True,
                      'env': {'UDPWEAVE_BACKEND': 'packet'}},
    'packet-gso':    {'mode': 'sendto', 'preload': True,
                      'env': {'UDPWEAVE_BACKEND': 'packet', 'UDPWEAVE_PACKET_GSO': '1'}},
}
DEFAULT_VETH = ['baseline', 'shim', 'ideal', 'trafgen', 'passthrough',
                'baseline-conn', 'shim-conn', 'packet', 'packet-conn', 'packet-gso']
DEFAULT_LO = ['baseline', 'shim', 'ideal', 'passthrough']
VETH_ONLY = ('trafgen', 'packet', 'packet-conn', 'packet-gso')


# --------------------------------------------------------------------------
# One run: sink up, sender, wait4, sink report

class Runner:
    def __init__(self, args, topo):
        self.args = args
        self.topo = topo
        self.build = args.build
        self.blast = os.path.join(self.build, 'bench', 'udp_blast')
        self.sink = os.path.join(self.build, 'bench', 'udp_sink')
        self.measure = os.path.join(self.build, 'bench', 'run_measured')
        self.lib = os.path.join(self.build, 'libudpweave.so')
        self.tmp = tempfile.mkdtemp(prefix='uwbench-')
        self.rusage_path = os.path.join(self.tmp, 'rusage.json')
        # Paced runs: the ideal batches what arrives in one max-delay
        # window (2 ms), as the shim can; unpaced it uses 16-segment runs.
        self.segs = 16 if not args.rate else max(1, min(16, round(
            args.rate * IDEAL_WINDOW_S / (N_ADDRS * N_PORTS))))
        self.children = []
        self.trafgen_env = None

    def close(self):
        for p in self.children:
            if p.poll() is None:
                kill_group(p, signal.SIGKILL)
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def pin_prefix(self, which):
        return self.topo.pin_prefix(which)

    def path_params(self, path):
        if path == 'veth':
            return self.topo.tx, self.topo.rx, RX_BASE
        return self.topo.lo, self.topo.lo, LO_BASE

    def start_sink(self, ns):
        cmd = (['ip', 'netns', 'exec', ns] + self.pin_prefix(1) +
               [self.sink, '--port', str(BASE_PORT), '--ports', str(N_PORTS),
                '--size', str(SIZE), '--idle-ms', '10000',
                '--rcvbuf', str(256 << 20), '--time-limit', '60'])
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=clean_env(),
                             text=True, start_new_session=True)
        self.children.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 5.0)
        line = p.stdout.readline() if ready else ''
        if line.strip() != 'ready':
            p.kill()
            p.wait()
            raise BenchError('udp_sink did not start in %s' % ns)
        return p

    def stop_sink(self, p):
        try:
            out, _ = p.communicate(timeout=3.0)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            try:
                out, _ = p.communicate(timeout=3.0)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
        self.children.remove(p)
        for line in (out or '').splitlines():
            if line.startswith('{'):
                return json.loads(line)
        return None

    def sender_cmd(self, ns, variant, count, stats_path, prefix=()):
        v = VARIANTS[variant]
        env = []
        if v['preload']:
            lib = getattr(self.args, v['ref']) if v.get('ref') else self.lib
            if not lib:
                raise BenchError('variant %s needs --%s' % (variant, v['ref'].replace('_', '-')))
            env = ['LD_PRELOAD=' + lib, 'UDPWEAVE_STATS=' + stats_path]
            env += ['%s=%s' % kv for kv in v.get('env', {}).items()]
            env += self.args.shim_env
        if v['mode'] == 'trafgen':
            if not self.trafgen_env:
                self.trafgen_env = build_preload(self.build, 'uwb_trafgen_env')
            env = ['LD_PRELOAD=' + self.trafgen_env]
        measured = [self.measure, '--out', self.rusage_path]
        for e in env:
            measured += ['--setenv', e]
        if v['mode'] == 'trafgen':
            return (['ip', 'netns', 'exec', ns] + list(prefix) +
                    self.pin_prefix(0) + measured + ['--',
                     'trafgen', '-o', self.topo.txdev, '-i', self.trafgen_config(),
                     '-n', str(count), '-P', '1', '-q', '-Q', '-C'])
        return (['ip', 'netns', 'exec', ns] + list(prefix) +
                self.pin_prefix(0) + measured + ['--',
                 self.blast, '--mode', v['mode'], '--count', str(count),
                 '--size', str(SIZE), '--dst', None, '--addrs', str(N_ADDRS),
                 '--port', str(BASE_PORT), '--ports', str(N_PORTS),
                 '--segs', str(self.segs), '--time-limit', str(BLAST_TIME_LIMIT),
                 '--rate', str(self.args.rate)])

    def trafgen_config(self):
        """100 prebuilt frames, one per destination (10 addresses x 10
        ports), sent round-robin: Ethernet + IPv4 (header checksum filled
        in by trafgen) + UDP (checksum 0) + 1316 zero bytes = 1358 bytes."""
        path = os.path.join(self.tmp, 'trafgen.cfg')
        if not os.path.exists(path):
            frames = []
            for a in rx_addresses(RX_BASE):
                for port in range(BASE_PORT, BASE_PORT + N_PORTS):
                    frames.append(
                        '{ eth(da=%s, sa=%s, type=0x0800), '
                        'ipv4(sa=%s, da=%s, ttl=64, df), '
                        'udp(sp=40000, dp=%d, csum=0), fill(0x00, %d) }' % (
                            self.topo.rx_mac, self.topo.tx_mac, TX_ADDR, a,
                            port, SIZE))
            with open(path, 'w') as f:
                f.write('\n'.join(frames) + '\n')
        return path

    def run_sender(self, cmd):
        """Run the sender; returns (exit, rusage dict, out).  The rusage is
        run_measured's wait4() of the sender alone (see run_measured.c)."""
        out_path = os.path.join(self.tmp, 'blast.out')
        if os.path.exists(self.rusage_path):
            os.unlink(self.rusage_path)
        with open(out_path, 'w') as out:
            p = subprocess.Popen(cmd, stdout=out, env=clean_env(),
                                 start_new_session=True)
        self.children.append(p)
        try:
            rc = p.wait(timeout=SENDER_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_group(p, signal.SIGTERM)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                kill_group(p, signal.SIGKILL)
                p.wait()
            rc = 'timeout'
        self.children.remove(p)
        with open(out_path) as f:
            text = f.read()
        ru = None
        if os.path.exists(self.rusage_path):
            with open(self.rusage_path) as f:
                ru = json.load(f)
        if ru is None:
            raise BenchError('sender left no rusage report: %s' % ' '.join(cmd))
        if rc == 0 and ru.get('exit_code') != 0:
            rc = ru.get('exit_code')
        return rc, ru, text

    def run(self, path, variant, count=None):
        count = count or self.args.count
        tx, rx, dst = self.path_params(path)
        stats_path = os.path.join(self.tmp, 'stats-%p.json')
        for f in os.listdir(self.tmp):
            if f.startswith('stats-'):
                os.unlink(os.path.join(self.tmp, f))
        before = self.topo.rx_stats(rx, self.topo.txdev if path == 'veth' else None)
        napi0 = thread_cpu_ns(self.topo.napi_pid) if path == 'veth' and self.topo.napi_pid else 0
        sink = self.start_sink(rx)
        cmd = self.sender_cmd(tx, variant, count, stats_path)
        if None in cmd:
            cmd[cmd.index(None)] = dst
        rc, ru, text = self.run_sender(cmd)
        settle_and_stop(sink)
        sink_rep = self.stop_sink(sink)
        napi1 = thread_cpu_ns(self.topo.napi_pid) if path == 'veth' and self.topo.napi_pid else 0
        after = self.topo.rx_stats(rx, self.topo.txdev if path == 'veth' else None)
        rep = {'path': path, 'variant': variant, 'count': count,
               'exit': rc, 'wall_s': ru['wall_s'],
               'utime_s': ru['utime_s'], 'stime_s': ru['stime_s'],
               'cpu_s': ru['utime_s'] + ru['stime_s'],
               'maxrss_kb': ru['maxrss_kb'],
               'cpu_us_per_dgram': (ru['utime_s'] + ru['stime_s']) / count * 1e6,
               'nvcsw': ru['nvcsw'], 'nivcsw': ru['nivcsw'],
               'napi_cpu_s': (napi1 - napi0) / 1e9,
               'blast': None, 'sink': sink_rep, 'stats': None,
               'kernel': {k: after[k] - before.get(k, 0) for k in after}}
        for line in text.splitlines():
            if line.startswith('{'):
                rep['blast'] = json.loads(line)
        stats_files = [f for f in os.listdir(self.tmp) if f.startswith('stats-')]
        if stats_files:
            with open(os.path.join(self.tmp, sorted(stats_files)[0])) as f:
                try:
                    rep['stats'] = json.load(f)
                except ValueError as e:
                    rep['stats_error'] = str(e)
            rep['stats_files'] = len(stats_files)
        rep['dgrams_per_syscall'] = dgrams_per_syscall(rep)
        rep['loss'] = count - (sink_rep or {}).get('received', 0)
        return rep

    def strace_check(self, path, count):
        """Count the send system calls on UDP sockets of a short shim run
        with strace -f -yy (the library's other sends, e.g. LTTng-UST's on a
        Unix socket, are not datagrams)."""
        tx, rx, dst = self.path_params(path)
        out = os.path.join(self.tmp, 'strace.txt')
        stats_path = os.path.join(self.tmp, 'strace-stats-%p.json')
        sink = self.start_sink(rx)
        cmd = self.sender_cmd(tx, 'shim', count, stats_path, prefix=strace_prefix(out))
        cmd[cmd.index(None)] = dst
        rc, ru, _ = self.run_sender(cmd)
        wall = ru['wall_s']
        settle_and_stop(sink)
        sink_rep = self.stop_sink(sink)
        calls = parse_strace(out)
        send_calls = sum(calls['udp'].get(k, 0) for k in SEND_CALLS)
        stats = None
        for f in os.listdir(self.tmp):
            if f.startswith('strace-stats-'):
                with open(os.path.join(self.tmp, f)) as fh:
                    stats = json.load(fh)
                os.unlink(os.path.join(self.tmp, f))
        return {'count': count, 'exit': rc, 'wall_s': wall,
                'strace_calls': calls['udp'],
                'strace_other_fds': calls['other'],
                'strace_send_calls': send_calls,
                'stats_syscalls': (stats or {}).get('syscalls'),
                'stats_datagrams_out': (stats or {}).get('datagrams_out'),
                'received': (sink_rep or {}).get('received')}


def dgrams_per_syscall(rep):
    st = rep.get('stats')
    if st and st.get('syscalls'):
        return st.get('datagrams_out', 0) / st['syscalls']
    b = rep.get('blast')
    if VARIANTS[rep['variant']]['preload']:
        return None
    if b and b.get('calls'):
        return b['sent'] / b['calls']
    return None


# --------------------------------------------------------------------------
# Summary

def summarize(runs, path, variants):
    by = {v: [r for r in runs if r['path'] == path and r['variant'] == v]
          for v in variants}
    base = {r['round']: r for r in by.get('baseline', [])}
    rows = []
    for v in variants:
        rs = by[v]
        if not rs:
            continue
        ok = [r for r in rs if r['exit'] == 0]
        ratios = [r['cpu_us_per_dgram'] / base[r['round']]['cpu_us_per_dgram']
                  for r in ok if r['round'] in base and
                  base[r['round']]['exit'] == 0]
        row = {
            'variant': v, 'runs': len(rs), 'failed': len(rs) - len(ok),
            'cpu_us_per_dgram': med(r['cpu_us_per_dgram'] for r in ok),
            'cpu_us_min': min((r['cpu_us_per_dgram'] for r in ok), default=None),
            'cpu_us_max': max((r['cpu_us_per_dgram'] for r in ok), default=None),
            'ratio_to_baseline': med(ratios),
            'dgrams_per_syscall': med(r['dgrams_per_syscall'] for r in ok),
            'maxrss_kb': med(r['maxrss_kb'] for r in ok),
            'loss_median': med(r['loss'] for r in rs),
            'loss_total': sum(r['loss'] for r in rs),
            'sent_total': sum(r['count'] for r in rs),
            'reordered_total': sum((r['sink'] or {}).get('reordered', 0) for r in rs),
            'bad_size_total': sum((r['sink'] or {}).get('bad_size', 0) for r in rs),
            'wall_ms': med(r['wall_s'] * 1000 for r in ok),
            'napi_us_per_dgram': med(r['napi_cpu_s'] / r['count'] * 1e6 for r in ok)
            if path == 'veth' else None,
            'rcvbuf_errors': sum(r['kernel'].get('udp_RcvbufErrors', 0) for r in rs),
            'veth_tx_dropped': sum(r['kernel'].get('veth_tx_dropped', 0) for r in rs),
            'qdisc_drops': sum(r['kernel'].get('qdisc_drops', 0) for r in rs),
        }
        st = [r['stats'] for r in ok if r.get('stats')]
        if st:
            row['stats_last'] = st[-1]
            row['datagrams_dropped_total'] = sum(s.get('datagrams_dropped', 0) for s in st)
            row['async_errors_total'] = sum(s.get('async_errors', 0) for s in st)
            row['fallbacks_gso_total'] = sum(s.get('fallbacks_gso', 0) for s in st)
            pk = [s.get('backend_counters', {}).get('packet') for s in st]
            pk = [x for x in pk if x and x.get('frames')]
            if pk:
                row['packet_longest_burst'] = max(x['longest_same_destination_burst'] for x in pk)
                row['packet_frames_total'] = sum(x['frames'] for x in pk)
                row['packet_fallback_total'] = sum(sum(x['fallback_datagrams'].values())
                                                   for x in pk)
            row['stats_mismatch'] = sum(
                1 for r in ok if r.get('stats') and
                r['stats'].get('datagrams_in') != r['count'])
        elif VARIANTS[v]['preload']:
            row['stats_missing'] = len(ok)
        rows.append(row)
    b = next((r for r in rows if r['variant'] == 'baseline'), None)
    for r in rows:
        r['rss_delta_mib'] = ((r['maxrss_kb'] - b['maxrss_kb']) / 1024
                              if b and r['maxrss_kb'] is not None and
                              b['maxrss_kb'] is not None else None)
    return rows



def markdown(result):
    a = result['config']
    lines = ['# udpweave benchmark: %s' % result['name'], '',
             '`%s` — %s; %d datagrams x %d B per run, %d destinations (%d addrs x %d ports), '
             '%s, %d rounds interleaved (order rotated), medians. Kernel %s, %d CPUs%s.%s' % (
                 result['command'], result['date'], a['count'], SIZE, N_ADDRS * N_PORTS,
                 N_ADDRS, N_PORTS,
                 'paced at %d dgrams/s (ideal: %d-segment runs)' % (a['rate'], a['ideal_segs'])
                 if a['rate'] else 'as fast as possible',
                 a['rounds'], result['kernel'], os.cpu_count(),
                 ', sender pinned to CPU %d, receiver+napi to CPU %d' % tuple(a['pin'])
                 if a['pin'] else '',
                 ' Shim env: %s.' % ' '.join(a['shim_env']) if a['shim_env'] else ''),
             '', 'Sender CPU = user+sys of the sender process alone (wait4 in run_measured; '
             'includes its threads and the exit-time flush).', '']
    for path in ('veth', 'loopback'):
        rows = result['summary'].get(path)
        if not rows:
            continue
        title = {'veth': 'veth between two netns (receive work in a threaded-NAPI kthread, not charged to the sender)',
                 'loopback': 'loopback in a private netns (receive work runs in, and is charged to, the sender)'}[path]
        lines += ['## %s' % title, '',
                  '| variant | sender CPU µs/dgram (min–max) | ratio to baseline | dgrams/syscall | peak RSS MiB (Δ) | loss (total/sent) | reordered | wall ms |'
                  + (' rx napi µs/dgram |' if path == 'veth' else ''),
                  '|---|---|---|---|---|---|---|---|' + ('---|' if path == 'veth' else '')]
        for r in rows:
            line = '| %s%s | %s | %s | %s | %s (%s) | %d/%d | %d | %s |' % (
                r['variant'], ' (%d FAILED)' % r['failed'] if r['failed'] else '',
                '%.3f (%.3f–%.3f)' % (r['cpu_us_per_dgram'], r['cpu_us_min'], r['cpu_us_max'])
                if r['cpu_us_per_dgram'] is not None else '–',
                '1/%.1f (%.3f)' % (1 / r['ratio_to_baseline'], r['ratio_to_baseline'])
                if r['ratio_to_baseline'] else '–',
                fmt(r['dgrams_per_syscall'], '%.1f'),
                fmt(r['maxrss_kb'] and r['maxrss_kb'] / 1024, '%.1f'),
                fmt(r['rss_delta_mib'], '%+.1f'),
                r['loss_total'], r['sent_total'], r['reordered_total'],
                fmt(r['wall_ms'], '%.0f'))
            if path == 'veth':
                line += ' %s |' % fmt(r['napi_us_per_dgram'], '%.3f')
            lines.append(line)
        lines.append('')
        for r in rows:
            st = r.get('stats_last')
            if st:
                lines.append('- %s stats (last run): backend=%s syscalls=%s batches=%s gso_runs=%s '
                             'segments_max=%s max_queue_delay_us=%s flushes=%s; over all runs: '
                             'dropped=%d fallbacks_gso=%d async_errors=%d, datagrams_in≠count in %d runs' % (
                                 r['variant'], st.get('backend'), st.get('syscalls'), st.get('batches'),
                                 st.get('gso_runs'), st.get('segments_max'),
                                 st.get('max_queue_delay_us', '?'),
                                 {k: v for k, v in (st.get('flushes_by_reason') or {}).items() if v},
                                 r['datagrams_dropped_total'], r['fallbacks_gso_total'],
                                 r['async_errors_total'], r['stats_mismatch']))
            elif r.get('stats_missing'):
                lines.append('- %s: NO stats JSON written in %d runs' % (r['variant'], r['stats_missing']))
            if r['loss_total']:
                where = ('veth tx dropped %d skbs, qdisc drops %d, ' % (
                    r['veth_tx_dropped'], r['qdisc_drops']) if path == 'veth' else '')
                lines.append('- %s loss: %sreceiver UDP RcvbufErrors %d%s' % (
                    r['variant'], where, r['rcvbuf_errors'],
                    ', sender failed in %d runs' % r['failed'] if r['failed'] else ''))
        lines.append('')
    t = result.get('targets')
    if t:
        lines += ['## Targets (veth)', '']
        for k, v in t.items():
            lines.append('- %s: %s' % (k, v))
        lines.append('')
    c = result.get('rx_charging')
    if c:
        lines += ['## Is the veth receive path charged to the sender?', '',
                  'baseline sendto, %d datagrams, veth without NAPI (netif_rx; the receive softirq runs '
                  'in the sender\'s context on local_bh_enable) vs threaded NAPI:' % c['count'], '',
                  '| receive path | sender CPU µs/dgram | napi kthread µs/dgram | sink loss |',
                  '|---|---|---|---|',
                  '| inline (no NAPI) | %.3f | – | %s |' % (c['inline_us'], c['inline_loss']),
                  '| threaded NAPI | %.3f | %.3f | %s |' % (c['napi_us'], c['napi_kthread_us'], c['napi_loss']),
                  '', '%s' % c['verdict'], '']
    s = result.get('strace')
    if s:
        lines += ['## strace cross-check (shim, %s, %d datagrams, `strace -f -yy`)' % (s['path'], s['count']), '',
                  '- send calls (sendto+sendmsg+sendmmsg) on UDP sockets counted by strace: %s, library stats '
                  'syscalls: %s → %s; %s dgrams/syscall' % (
                      s['strace_send_calls'], s['stats_syscalls'],
                      'agree' if s['strace_send_calls'] == s['stats_syscalls'] else 'DISAGREE',
                      fmt(s['stats_datagrams_out'] / s['strace_send_calls'], '%.1f')
                      if s['strace_send_calls'] and s['stats_datagrams_out'] else '–'),
                  '- per call on UDP sockets: %s; on other fds (not datagrams: udp_blast\'s '
                  'stdout, the stats file, LTTng-UST\'s Unix socket): %s. strace slows the '
                  'sender, so batches differ from untraced runs' % (
                      s['strace_calls'], s.get('strace_other_fds', {})),
                  '- receiver got %s of %d' % (s['received'], s['count']), '']
    o = result.get('fd_overhead')
    if o:
        b, s = o['median_ns']['baseline'], o['median_ns']['shim']
        lines += ['## Calls on other fds (not UDP sockets)', '',
                  '%d calls each, %d rounds interleaved, medians, ns per call:' % (
                      o['calls'], o['rounds']), '',
                  '| call | baseline | shim | difference |', '|---|---|---|---|']
        for k, name in (('write_devnull_ns', 'write() to /dev/null'),
                        ('send_unix_stream_ns', 'send() on a Unix stream socket')):
            lines.append('| %s | %.1f | %.1f | %+.1f (%+.1f%%) |' % (
                name, b[k], s[k], s[k] - b[k], 100.0 * (s[k] - b[k]) / b[k]))
        lines.append('')
    lines += ceilings_markdown(result)
    return lines


def ceilings_markdown(result):
    """The veth rows of the senders that bound what the shim can reach."""
    rows = {r['variant']: r for r in result['summary'].get('veth', [])}
    have = [v for v in ('baseline', 'shim', 'ideal', 'trafgen') if v in rows and
            rows[v]['cpu_us_per_dgram'] is not None]
    if 'trafgen' not in have and 'ideal' not in have:
        return []
    lines = ['## Ceilings on the veth pair (same 1358-byte frames: Ethernet+IPv4+UDP+1316)', '',
             '| sender | CPU µs/dgram | datagrams per CPU-second | vs baseline | loss |',
             '|---|---|---|---|---|']
    what = {'baseline': 'baseline: sendto() per datagram',
            'shim': 'the same under udpweave (mmsg backend)',
            'ideal': 'hand-written ideal: sendmmsg + 16-segment UDP GSO runs',
            'trafgen': 'netsniff-ng trafgen: TX_RING, prebuilt frames, qdisc path, 1 process'}
    for v in have:
        r = rows[v]
        lines.append('| %s | %.3f | %.0f k | %s | %d/%d |' % (
            what[v], r['cpu_us_per_dgram'], 1e3 / r['cpu_us_per_dgram'],
            '1/%.1f' % (1 / r['ratio_to_baseline']) if r['ratio_to_baseline'] else '–',
            r['loss_total'], r['sent_total']))
    lines.append('')
    if 'trafgen' in have and 'ideal' in have and \
            rows['ideal']['cpu_us_per_dgram'] < rows['trafgen']['cpu_us_per_dgram']:
        lines += ['trafgen skips the socket layer but still takes one skb per frame through '
                  'the qdisc and the veth transmit; with UDP GSO (ideal, shim) one skb carries '
                  'a whole run through the sender\'s UDP/IP/qdisc path, so GSO goes below trafgen.',
                  '']
    return lines


def plot(result, path_png):
    """Bar chart of sender CPU per datagram (median, min-max whiskers);
    skipped when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    paths = [p for p in ('veth', 'loopback') if result['summary'].get(p)]
    fig, axes = plt.subplots(1, len(paths), figsize=(5 * len(paths), 3.6),
                             squeeze=False)
    for ax, p in zip(axes[0], paths):
        rows = [r for r in result['summary'][p] if r['cpu_us_per_dgram'] is not None]
        xs = range(len(rows))
        med_ = [r['cpu_us_per_dgram'] for r in rows]
        err = [[m - r['cpu_us_min'] for m, r in zip(med_, rows)],
               [r['cpu_us_max'] - m for m, r in zip(med_, rows)]]
        ax.bar(xs, med_, yerr=err, capsize=3,
               color=['#888' if not VARIANTS[r['variant']]['preload'] else '#2a7'
                      for r in rows])
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r['variant'] for r in rows], rotation=30, ha='right')
        ax.set_ylabel('sender CPU µs / datagram')
        ax.set_title(p)
        for x, m in zip(xs, med_):
            ax.text(x, m, '%.2f' % m, ha='center', va='bottom', fontsize=8)
    fig.suptitle('udpweave %s: %d x %d B to %d destinations' % (
        result['name'], result['config']['count'], SIZE, N_ADDRS * N_PORTS), fontsize=10)
    fig.tight_layout()
    fig.savefig(path_png, dpi=80)
    plt.close(fig)
    return True


def targets(rows):
    r = {x['variant']: x for x in rows}
    out = {}
    if 'shim' in r and r['shim']['ratio_to_baseline']:
        x = r['shim']['ratio_to_baseline']
        out['shim/baseline CPU ≤ 1/5'] = '%s (1/%.1f)' % ('met' if x <= 0.2 else 'NOT met', 1 / x)
    if 'ideal' in r and r['ideal']['ratio_to_baseline']:
        x = r['ideal']['ratio_to_baseline']
        out['ideal/baseline CPU (~1/6 expected)'] = '1/%.1f' % (1 / x)
    if 'shim' in r and r['shim']['dgrams_per_syscall']:
        x = r['shim']['dgrams_per_syscall']
        out['shim datagrams/syscall ≥ 16'] = '%s (%.1f)' % ('met' if x >= 16 else 'NOT met', x)
    if 'shim' in r and r['shim']['rss_delta_mib'] is not None:
        x = r['shim']['rss_delta_mib']
        out['shim RSS overhead ≤ 8 MiB'] = '%s (%+.1f MiB)' % ('met' if x <= 8 else 'NOT met', x)
    if 'packet' in r and r['packet']['ratio_to_baseline']:
        x = r['packet']['ratio_to_baseline']
        out['packet/baseline CPU ≤ 1/1.5'] = '%s (1/%.2f)' % ('met' if x <= 1 / 1.5 else 'NOT met',
                                                             1 / x)
    if 'packet' in r and 'trafgen' in r and r['trafgen']['cpu_us_per_dgram']:
        x = r['packet']['cpu_us_per_dgram'] / r['trafgen']['cpu_us_per_dgram']
        out['packet/trafgen CPU ≤ 1.15'] = '%s (%.2f)' % ('met' if x <= 1.15 else 'NOT met', x)
    if 'packet' in r and r['packet']['dgrams_per_syscall']:
        x = r['packet']['dgrams_per_syscall']
        out['packet syscalls/datagram ≤ 1/64'] = '%s (1/%.0f)' % ('met' if x >= 64 else 'NOT met', x)
    if 'packet-gso' in r and 'shim' in r and r['shim']['cpu_us_per_dgram']:
        x = r['packet-gso']['cpu_us_per_dgram'] / r['shim']['cpu_us_per_dgram']
        out['packet-gso/mmsg CPU (reported)'] = '%.2f' % x
    for v in ('packet', 'packet-conn', 'packet-gso'):
        if v in r and 'packet_longest_burst' in r[v]:
            out['%s longest same-destination burst' % v] = '%d (%d frames, %d datagrams by socket)' % (
                r[v]['packet_longest_burst'], r[v]['packet_frames_total'],
                r[v]['packet_fallback_total'])
        if v in r:
            out['%s delivery' % v] = '%d lost of %d, %d reordered, %d bad size' % (
                r[v]['loss_total'], r[v]['sent_total'], r[v]['reordered_total'],
                r[v]['bad_size_total'])
    if 'shim' in r:
        out['shim delivery'] = '%d lost of %d, %d reordered, %d bad size' % (
            r['shim']['loss_total'], r['shim']['sent_total'],
            r['shim']['reordered_total'], r['shim']['bad_size_total'])
    return out


# --------------------------------------------------------------------------

def fd_overhead(build, lib, rounds, n=2000000):
    """Cost of the shim on fds that are not UDP sockets: write() to
    /dev/null and send() on a Unix stream socket, baseline and shim
    interleaved, medians of ns per call."""
    exe = os.path.join(build, 'bench', 'fd_overhead')
    if not os.path.exists(exe):
        return None
    res = {'baseline': [], 'shim': []}
    for _ in range(rounds):
        for v in ('baseline', 'shim'):
            env = clean_env()
            if v == 'shim':
                env['LD_PRELOAD'] = lib
            out = subprocess.run([exe, str(n)], env=env, capture_output=True,
                                 text=True, timeout=120, check=True).stdout
            res[v].append(json.loads(out))
    keys = list(res['baseline'][0])
    return {'calls': n, 'rounds': rounds,
            'median_ns': {v: {k: med(r[k] for r in res[v]) for k in keys} for v in res}}


def check_tools(args):
    missing = [t for t in ('ip', 'tc', 'ethtool', 'taskset') if not shutil.which(t)]
    if missing:
        raise BenchError('missing tools: %s (Debian: iproute2 ethtool util-linux)'
                         % ' '.join(missing))
    for f in ('udp_blast', 'udp_sink', 'run_measured'):
        if not os.access(os.path.join(args.build, 'bench', f), os.X_OK):
            raise BenchError('%s/bench/%s not built (make tools)' % (args.build, f))
    if os.geteuid() != 0:
        raise BenchError('needs root (network namespaces)')



def section_variants(args, paths, have_lib):
    """{path: [variants]} from --variants or the defaults."""
    variants = {}
    for p in paths:
        vs = args.variants.split(',') if args.variants else (
            DEFAULT_VETH if p == 'veth' else DEFAULT_LO)
        vs = list(dict.fromkeys(v for v in vs if v))
        for v in vs:
            if v not in VARIANTS:
                raise BenchError('unknown variant %s' % v)
        if not have_lib:
            vs = [v for v in vs if not VARIANTS[v]['preload']]
        if p != 'veth':
            vs = [v for v in vs if v not in VETH_ONLY]
        if 'trafgen' in vs and (args.rate or not shutil.which('trafgen')):
            vs.remove('trafgen')
        variants[p] = vs
    return variants


def run_section(args, topo, result, paths, have_lib):
    """The blast section: rx charging check, interleaved rounds, non-UDP
    fd overhead, strace cross-check.  Fills result (the top-level keys of
    the original run_bench.py output) and returns."""
    notes = result['notes']
    variants = section_variants(args, paths, have_lib)
    if 'veth' in paths and not args.rate and not shutil.which('trafgen'):
        notes.append('trafgen (Debian: netsniff-ng) not installed: no trafgen ceiling')
    runner = Runner(args, topo)
    result['config'].update({'count': args.count, 'rounds': args.blast_rounds,
                             'rate': args.rate, 'ideal_segs': runner.segs,
                             'pin': list(topo.pin) if topo.pin else None,
                             'shim_env': args.shim_env, 'size': SIZE,
                             'destinations': N_ADDRS * N_PORTS})
    result['config']['rounds'] = args.blast_rounds
    runs = []
    try:
        if 'veth' in paths and not args.no_rx_check:
            log('rx charging check (veth, baseline, inline vs threaded NAPI)...')
            n = min(args.count, 100000)
            inline, napi = [], []
            for _ in range(2):
                topo.set_rx_napi(False)
                inline.append(runner.run('veth', 'baseline', n))
                topo.set_rx_napi(True)
                napi.append(runner.run('veth', 'baseline', n))
            iu = med(r['cpu_us_per_dgram'] for r in inline)
            nu = med(r['cpu_us_per_dgram'] for r in napi)
            ku = med(r['napi_cpu_s'] / n * 1e6 for r in napi)
            result['rx_charging'] = {
                'count': n, 'inline_us': iu, 'napi_us': nu, 'napi_kthread_us': ku,
                'inline_loss': sum(r['loss'] for r in inline),
                'napi_loss': sum(r['loss'] for r in napi),
                'verdict': ('Yes: without NAPI the sender pays %.2f µs/dgram more; with threaded '
                            'NAPI that work (%.2f µs/dgram) shows up in the napi kthread instead. '
                            'All veth figures below use threaded NAPI.' % (iu - nu, ku))
                if iu - nu > 0.1 * nu else
                ('No clear difference (%.3f vs %.3f µs/dgram).' % (iu, nu))}
            log('  inline %.3f µs/dgram, threaded NAPI %.3f (+ kthread %.3f)' % (iu, nu, ku))
        elif 'veth' in paths:
            topo.set_rx_napi(True)

        order = [(p, v) for p in paths for v in variants[p]]
        for rnd in range(args.blast_rounds):
            for p, v in rotated(order, rnd):
                r = runner.run(p, v)
                r['round'] = rnd
                runs.append(r)
                log('round %d %-8s %-13s cpu %.3f µs/dgram  rss %5.1f MiB  %s  loss %d%s' % (
                    rnd + 1, p, v, r['cpu_us_per_dgram'], r['maxrss_kb'] / 1024,
                    ('%.1f dgrams/syscall' % r['dgrams_per_syscall'])
                    if r['dgrams_per_syscall'] else '', r['loss'],
                    '' if r['exit'] == 0 else '  EXIT %s' % r['exit']))

        if have_lib and not args.no_fd_overhead:
            log('non-UDP fd overhead...')
            result['fd_overhead'] = fd_overhead(args.build,
                                                os.path.join(args.build, 'libudpweave.so'),
                                                max(3, args.blast_rounds))

        if have_lib and not args.no_strace and shutil.which('strace'):
            p = 'veth' if 'veth' in paths else paths[0]
            log('strace cross-check...')
            result['strace'] = runner.strace_check(p, 20000)
            result['strace']['path'] = p
        elif have_lib and not args.no_strace:
            notes.append('strace not installed: cross-check skipped')
    finally:
        runner.close()
    result['runs'] = runs
    result['summary'] = {p: summarize(runs, p, variants[p]) for p in paths}
    if 'veth' in result['summary']:
        result['targets'] = targets(result['summary']['veth'])
    return [r for r in runs if r['exit'] != 0]
