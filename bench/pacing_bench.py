#!/usr/bin/python3
"""Pacing benchmark (issue 6): many app-paced streams, batched without
adding jitter.

N streams (default 100) of R bit/s each (default 5 Mbit/s: a 1316-byte
datagram every 2106 us), one connected socket per stream, all sent by one
process that paces itself (build/tests/uw_pacer: absolute clock_nanosleep
schedule, streams staggered), across the veth pair of bench/benchlib.py
(two namespaces; receive work in a threaded-NAPI kthread on the receiver's
CPU) to build/tests/uw_ts_sink, which stamps every arrival in the kernel
(SO_TIMESTAMPNS, CLOCK_REALTIME, the clock of the send stamps).

Variants, interleaved round by round (order rotated), medians:
  baseline        no shim: one send call per datagram
  unpaced         the shim, UDPWEAVE_MAX_DELAY_US = the delay budget, no
                  metrics: today's batching with the same budget
  paced-BACKEND   the shim with UDPWEAVE_RULES giving every stream its
                  metrics (rate, jitter, delay), UDPWEAVE_BACKEND=BACKEND
                  (--backends: mmsg by default; uring, packet once merged)
  paced-BACKEND-rt  the same with UDPWEAVE_RT_PRIORITY=10 (a SCHED_FIFO
                  flush thread; --rt)

Figures per run, over the window that leaves out the first and last 0.5 s:
  syscalls/dgram  send calls the library made (+ datagrams it handed back
                  to be sent directly) / datagrams; baseline: the sender's
  IAT dev p99     |arrival spacing - nominal spacing|, p99 over all streams
  IPDV p99        |arrival spacing - send spacing| (RFC 5481): what the
                  path (and the shim) changed of the sender's own spacing
  delay p99       arrival - send stamp (one host, one clock)
  rate err        the worst stream's |achieved / nominal - 1|, achieved =
                  its bytes over its first-to-last arrival span
  wake late       the flush thread's lateness against its release times,
                  p50/p99 (the library's histogram; quarter-octave buckets)
  sender CPU      user + sys of the sender process, us per datagram

Targets (the issue): syscalls/dgram <= 1/10 with a backend that batches
across sockets (mmsg makes one call per socket per quantum: reported, not
expected to reach it); IAT jitter p99 within 200 us of the baseline's;
delay p99 <= max_delay + 1 ms; rate within 0.5% over the run.

Writes bench/results/NAME.{json,md} (default NAME: pacing). Run as root:
  /usr/bin/python3 bench/pacing_bench.py --build build [--backends mmsg,uring]
"""
import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import (BenchError, Topology, log, med, fmt, rotated, clean_env,  # noqa: E402
                      RX_BASE)

SIZE = 1316


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(os.path.dirname(HERE), 'build'))
    ap.add_argument('--name', default='pacing', help='bench/results/NAME.{json,md}')
    ap.add_argument('--streams', type=int, default=100)
    ap.add_argument('--rate', type=float, default=5e6, help='bit/s per stream')
    ap.add_argument('--jitter-us', type=int, default=1000)
    ap.add_argument('--delay-us', type=int, default=30000)
    ap.add_argument('--seconds', type=float, default=10)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--backends', default='mmsg', help='paced variants, comma-separated')
    ap.add_argument('--ref-lib', help='also the default configuration with this library')
    ap.add_argument('--no-unpaced', action='store_true')
    ap.add_argument('--unpaced-backends', default='',
                    help='also the default configuration on these backends '
                         '(unpaced-BACKEND), comma-separated')
    ap.add_argument('--rt', action='store_true', help='also paced with a SCHED_FIFO flusher')
    ap.add_argument('--pin', action='store_true',
                    help='sender on CPU 0, receiver on CPU 1 (default: unpinned)')
    ap.add_argument('--napi', action='store_true',
                    help='threaded NAPI on the receiving veth (default: inline receive)')
    ap.add_argument('--report', metavar='JSON',
                    help='only write the markdown of a stored result again')
    return ap.parse_args()


def rule(args):
    rx_net = RX_BASE.rsplit('.', 1)[0] + '.0/24'
    return '%s:rate=%d,jitter=%dus,delay=%dus' % (rx_net, args.rate, args.jitter_us,
                                                  args.delay_us)


def variants(args):
    v = [('baseline', None)]
    if not args.no_unpaced:
        v.append(('unpaced', {'UDPWEAVE_MAX_DELAY_US': str(args.delay_us)}))
        if args.ref_lib:	# another build of the library, side by side
            v.append(('unpaced-ref', {'UDPWEAVE_MAX_DELAY_US': str(args.delay_us),
                                      'LD_PRELOAD': os.path.abspath(args.ref_lib)}))
        for b in [b for b in args.unpaced_backends.split(',') if b]:
            v.append(('unpaced-' + b, {'UDPWEAVE_MAX_DELAY_US': str(args.delay_us),
                                       'UDPWEAVE_BACKEND': b}))
            if args.ref_lib:
                v.append(('unpaced-%s-ref' % b, {'UDPWEAVE_MAX_DELAY_US': str(args.delay_us),
                                                 'UDPWEAVE_BACKEND': b,
                                                 'LD_PRELOAD': os.path.abspath(args.ref_lib)}))
    for b in [b for b in args.backends.split(',') if b]:
        env = {'UDPWEAVE_RULES': rule(args), 'UDPWEAVE_BACKEND': b}
        v.append(('paced-' + b, env))
        if args.rt:
            v.append(('paced-%s-rt' % b, dict(env, UDPWEAVE_RT_PRIORITY='10')))
    return v


def ns_cmd(ns, args, env=None, pin=None):
    pre = ['ip', 'netns', 'exec', ns]
    if pin is not None:
        pre += ['taskset', '-c', str(pin)]
    if env:
        pre += ['env'] + ['%s=%s' % kv for kv in env.items()]
    return pre + [str(a) for a in args]


def one_run(topo, args, name, shim_env, interval_us, port, tmp):
    build = args.build
    ready = os.path.join(tmp, '%s-%d.ready' % (name, port))
    stats = os.path.join(tmp, '%s-%d.stats.json' % (name, port))
    for p in (ready, stats):
        if os.path.exists(p):
            os.unlink(p)
    sink = subprocess.Popen(
        ns_cmd(topo.rx, [os.path.join(build, 'tests', 'uw_ts_sink'), '--bind',
                         '%s:%d' % (RX_BASE, port), '--interval-us', interval_us,
                         '--size', SIZE, '--skip-ms', 500, '--idle-ms', 5000,
                         '--timeout-s', int(args.seconds * 3 + 30), '--ready-file', ready],
               pin=topo.pin[1] if topo.pin else None),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            if sink.poll() is not None:
                raise BenchError('sink died: ' + sink.stderr.read())
            if time.monotonic() > deadline:
                raise BenchError('sink not ready')
            time.sleep(0.01)
        env = None
        if shim_env is not None:
            env = dict({'LD_PRELOAD': os.path.join(build, 'libudpweave.so')}, **shim_env,
                       UDPWEAVE_STATS=stats)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cp = subprocess.run(
            ns_cmd(topo.tx, [os.path.join(build, 'tests', 'uw_pacer'), '--dest',
                             '%s:%d' % (RX_BASE, port), '--streams', args.streams,
                             '--interval-us', interval_us, '--size', SIZE,
                             '--seconds', args.seconds], env,
                   pin=topo.pin[0] if topo.pin else None),
            capture_output=True, text=True, env=clean_env(), timeout=args.seconds * 3 + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cp.returncode:
            raise BenchError('%s: sender failed: %s' % (name, cp.stderr[-2000:]))
        snd = json.loads(cp.stdout.strip().splitlines()[-1])
        time.sleep(0.3)
        sink.send_signal(signal.SIGUSR1)
        out, err = sink.communicate(timeout=60)
        if sink.returncode:
            raise BenchError('%s: sink failed: %s' % (name, err))
        rx = json.loads(out.strip().splitlines()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    st = None
    if shim_env is not None:
        with open(stats) as f:
            st = json.load(f)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    r = {'variant': name, 'sent': snd['sent'], 'received': rx['datagrams'],
         'lost': rx['lost'], 'reordered': rx['reordered'],
         'iat_dev_p99_us': rx['iat_dev_us'].get('p99'),
         'iat_dev_p50_us': rx['iat_dev_us'].get('p50'),
         'ipdv_p99_us': rx['ipdv_us'].get('p99'), 'ipdv_p50_us': rx['ipdv_us'].get('p50'),
         'delay_p99_us': rx['delay_us'].get('p99'), 'delay_p50_us': rx['delay_us'].get('p50'),
         'delay_max_us': rx['delay_us'].get('max'),
         'rate_err': rx['rate_err'], 'rate_min_bps': None, 'rate_max_bps': None,
         'sender_cpu_us_per_dgram': cpu * 1e6 / snd['sent'] if snd['sent'] else None,
         'sender_late_p99_us': snd['sender_late_us']['p99'],
         'window_s': rx['window_s']}
    if rx['rate_bps'].get('n'):
        r['rate_min_bps'] = rx['rate_bps']['p50'] if rx['rate_bps']['n'] == 1 else None
    if st is None:
        r['syscalls_per_dgram'] = snd['send_calls'] / snd['sent']
    else:
        calls = (st['syscalls'] + st['pacing']['direct_datagrams'] + st['passthrough_calls'] +
                 st.get('sync_calls', 0))
        r['syscalls_per_dgram'] = calls / st['datagrams_in'] if st['datagrams_in'] else None
        r['backend'] = st['backend']
        r['wake_late_us'] = st['flush_thread_wake_late_us']
        r['precision_us'] = st['pacing']['precision_us']
        r['flushes'] = st['flushes_by_reason']
        r['pacing_modes'] = sorted({f['pacing'] for f in st['pacing']['flow_list']})
        r['quantum_us'] = sorted({f['quantum_us'] for f in st['pacing']['flow_list']})
        r['refusals'] = st['pacing']['refusals']
        r['gso_runs'] = st['gso_runs']
        r['txtime_runs'] = st['pacing']['txtime_runs']
    return r


def summarize(runs, order, args):
    out = []
    base = [r for r in runs if r['variant'] == 'baseline']
    base_iat = med([r['iat_dev_p99_us'] for r in base])
    for name in order:
        rs = [r for r in runs if r['variant'] == name]
        if not rs:
            continue
        s = {'variant': name, 'runs': len(rs)}
        for k in ('syscalls_per_dgram', 'iat_dev_p99_us', 'iat_dev_p50_us', 'ipdv_p99_us',
                  'ipdv_p50_us', 'delay_p99_us', 'delay_p50_us', 'delay_max_us', 'rate_err',
                  'sender_cpu_us_per_dgram', 'sender_late_p99_us'):
            s[k] = med([r.get(k) for r in rs])
        s['lost'] = sum(r['lost'] for r in rs)
        s['reordered'] = sum(r['reordered'] for r in rs)
        s['sent'] = sum(r['sent'] for r in rs)
        if rs[0].get('wake_late_us'):
            s['wake_late_p50_us'] = med([r['wake_late_us']['p50'] for r in rs])
            s['wake_late_p99_us'] = med([r['wake_late_us']['p99'] for r in rs])
            s['wake_late_max_us'] = max(r['wake_late_us']['max'] for r in rs)
            s['pacing_modes'] = rs[-1]['pacing_modes']
            s['quantum_us'] = rs[-1]['quantum_us']
        if base_iat is not None and s['iat_dev_p99_us'] is not None:
            s['iat_p99_over_baseline_us'] = s['iat_dev_p99_us'] - base_iat
        b = med([r['syscalls_per_dgram'] for r in base])
        if b and s['syscalls_per_dgram']:
            s['syscalls_ratio'] = s['syscalls_per_dgram'] / b
        paced = name.startswith('paced')
        if paced:
            s['targets'] = {
                'syscalls_per_dgram<=0.1': s['syscalls_per_dgram'] <= 0.1,
                'iat_p99_within_200us_of_baseline': s.get('iat_p99_over_baseline_us', 1e9) <= 200,
                'iat_p99_within_jitter_budget_of_baseline':
                    s.get('iat_p99_over_baseline_us', 1e9) <= args.jitter_us,
                'delay_p99<=max_delay+1ms': s['delay_p99_us'] <= args.delay_us + 1000,
                'rate_within_0.5%': s['rate_err'] <= 0.005,
            }
        out.append(s)
    return out


def markdown(res):
    a = res['config']
    lines = ['# udpweave pacing benchmark', '',
             '`%s` — %s. Kernel %s, %d CPUs%s.' % (
                 res['command'], res['date'], res['kernel'], res['cpus'],
                 ', sender pinned to CPU %d, receiver to CPU %d' % tuple(a['pin'])
                 if a.get('pin') else ''), '',
             '%d streams x %.2f Mbit/s (%d B every %d us), one connected socket each, one '
             'app-paced sender; paced rule `%s`; %g s per run, %d rounds interleaved, medians; '
             'the window leaves out the first and last 0.5 s.' % (
                 a['streams'], a['rate_bps'] / 1e6, SIZE, a['interval_us'], a['rule'],
                 a['seconds'], a['rounds']), '',
             '| variant | syscalls/dgram (ratio) | IAT dev p99 µs (vs baseline) | IPDV p99 µs '
             '| delay p50 / p99 µs | rate err | wake late p50 / p99 µs | quantum µs '
             '| sender CPU µs/dgram | sender late p99 µs | lost / reordered |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for s in res['summary']:
        lines.append('| %s | %s (%s) | %s (%s) | %s | %s / %s | %s | %s | %s | %s | %s | %d / %d |' % (
            s['variant'], fmt(s['syscalls_per_dgram'], '%.3f'),
            fmt(s.get('syscalls_ratio'), '%.3f'), fmt(s['iat_dev_p99_us'], '%.0f'),
            fmt(s.get('iat_p99_over_baseline_us'), '%+.0f'), fmt(s['ipdv_p99_us'], '%.0f'),
            fmt(s['delay_p50_us'], '%.0f'), fmt(s['delay_p99_us'], '%.0f'),
            fmt(s['rate_err'] * 100 if s['rate_err'] is not None else None, '%.3f%%'),
            ('%s / %s' % (s['wake_late_p50_us'], s['wake_late_p99_us'])
             if 'wake_late_p50_us' in s else '–'),
            ','.join(map(str, s.get('quantum_us', []))) or '–',
            fmt(s['sender_cpu_us_per_dgram'], '%.2f'), fmt(s['sender_late_p99_us'], '%.0f'),
            s['lost'], s['reordered']))
    lines.append('')
    for s in res['summary']:
        if 'targets' in s:
            lines.append('- %s: %s' % (s['variant'], ', '.join(
                '%s %s' % (k, 'met' if v else 'NOT met') for k, v in s['targets'].items())))
    lines += ['', 'Notes:']
    for n in res['notes']:
        lines.append('- ' + n)
    return lines


def main():
    args = parse_args()
    if args.report:
        with open(args.report) as f:
            res = json.load(f)
        md = '\n'.join(markdown(res)) + '\n'
        with open(os.path.join(HERE, 'results', res['name'] + '.md'), 'w') as f:
            f.write(md)
        print(md)
        return
    build = os.path.abspath(args.build)
    args.build = build
    for f in ('libudpweave.so', 'tests/uw_pacer', 'tests/uw_ts_sink'):
        if not os.path.exists(os.path.join(build, f)):
            raise BenchError('%s/%s missing: make all' % (build, f))
    interval_us = int(round(SIZE * 8 * 1e6 / args.rate))
    pin = (0, 1) if args.pin and (os.cpu_count() or 1) >= 2 else None
    topo = Topology(pin)
    tmp = os.path.join('/tmp', 'uw-pacing-bench-%d' % os.getpid())
    os.makedirs(tmp, exist_ok=True)
    vs = variants(args)
    runs = []

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        topo.setup_veth()
        if args.napi:
            # receive work in a threaded-NAPI kthread on the receiver's
            # CPU, not in the sender's softirq (receive stamps then carry
            # the kthread's scheduling delays)
            topo.set_rx_napi(True)
        port = 30000
        for rnd in range(args.rounds):
            for name, env in rotated(vs, rnd):
                port += 1
                log('round %d/%d: %s' % (rnd + 1, args.rounds, name))
                r = one_run(topo, args, name, env, interval_us, port, tmp)
                r['round'] = rnd
                runs.append(r)
                log('  syscalls/dgram %s, IAT dev p99 %s us, IPDV p99 %s us, delay p99 %s us, '
                    'rate err %.4f%s' % (
                        fmt(r['syscalls_per_dgram'], '%.3f'), r['iat_dev_p99_us'],
                        r['ipdv_p99_us'], r['delay_p99_us'], r['rate_err'],
                        ', wake late %s' % r['wake_late_us'] if r.get('wake_late_us') else ''))
    finally:
        topo.close()
    order = [n for n, _ in vs]
    res = {'name': args.name,
           'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S'),
           'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
           'kernel': platform.release(), 'cpus': os.cpu_count(),
           'config': {'streams': args.streams, 'rate_bps': SIZE * 8 * 1e6 / interval_us,
                      'interval_us': interval_us, 'jitter_us': args.jitter_us,
                      'delay_us': args.delay_us, 'seconds': args.seconds,
                      'rounds': args.rounds, 'rule': rule(args), 'pin': list(pin) if pin else None,
                      'napi': args.napi, 'backends': args.backends},
           'runs': runs, 'summary': summarize(runs, order, args),
           'notes': [
               'No fq qdisc on this kernel: the paced variants use the library\'s own '
               'scheduler (user-space release each quantum); kernel pacing (SO_TXTIME) '
               'is not measured here.' if not fq_available() else
               'fq exists on this kernel, but the veth carries pfifo here: user-space pacing.',
               'mmsg sends one sendmmsg per socket per quantum: with one socket per stream '
               'and a datagram every %d us, a quantum within the %d us jitter budget holds '
               'at most one datagram per socket, so mmsg cannot reach 1/10; a backend that '
               'batches across sockets (uring, packet) makes one call per quantum: run with '
               '--backends uring,packet.' % (interval_us, args.jitter_us),
               'IAT jitter in user space is bounded by the quantum (less than the jitter '
               'budget less the flush thread\'s precision), not by 200 us: the 200 us target '
               'needs departure times (fq) or a quantum near 200 us.',
           ]}
    outdir = os.path.join(HERE, 'results')
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, args.name + '.json'), 'w') as f:
        json.dump(res, f, indent=1)
        f.write('\n')
    md = '\n'.join(markdown(res)) + '\n'
    with open(os.path.join(outdir, args.name + '.md'), 'w') as f:
        f.write(md)
    print(md)
    log('wrote bench/results/%s.{json,md}' % args.name)


def fq_available():
    ns = 'uwb-fqprobe-%d' % os.getpid()
    try:
        subprocess.run(['ip', 'netns', 'add', ns], check=True, capture_output=True)
        r = subprocess.run(['tc', '-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'fq'],
                           capture_output=True)
        return r.returncode == 0
    except subprocess.CalledProcessError:
        return False
    finally:
        subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)


if __name__ == '__main__':
    try:
        main()
    except BenchError as e:
        log('pacing_bench: %s' % e)
        sys.exit(1)
