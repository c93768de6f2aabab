#!/usr/bin/python3
"""udpweave side-by-side benchmark: the driver.

Sections (--sections, default all three), each interleaving its variants
round by round (order rotated) on the same namespaces and veth pair:

  blast    udp_blast to 100 destinations: baseline sendto vs the shim, the
           hand-written ideal (sendmmsg + UDP GSO), netsniff-ng trafgen,
           passthrough, connected sockets; veth and loopback
           (blast_bench.py; its output is the original run_bench.py format)
  iperf3   iperf3 -u at -l 1316/1472, -b 0 and fixed rates: throughput,
           sender CPU %, loss; baseline vs mmsg vs passthrough
           (iperf_bench.py)
  streams  N = 1..500 concurrent 5 Mbit/s MPEG-TS streams from GStreamer
           multiudpsink and from N ffmpeg processes: CPU per datagram,
           system calls, delay and jitter from the server's own send calls,
           loss, TS continuity (streams_bench.py)
  uring    (only when asked: --sections uring, make bench-uring) the uring
           backend's figures: 100 connected sockets with one datagram each
           per flush, 16-segment runs to 100 destinations, copying vs
           zero-copy sends; baseline vs mmsg vs uring (uring_bench.py)

Setup shared by all sections (benchlib.Topology): sender in netns
uwb-tx-*, receivers in uwb-rx-*, a veth pair between them with threaded
NAPI on the receiving side, sender pinned to CPU 0 and receiver + napi
kthread to CPU 1 (so receive work is not charged to the sender), TSO off
and a pfifo qdisc on the sending veth; loopback runs in a private netns.
Traffic goes only to addresses inside the namespaces this script creates;
they are removed on exit, on error and on Ctrl-C.

Writes bench/results/NAME.json, NAME.md and PNG plots (NAME.png: blast;
NAME-iperf3.png; NAME-streams-cpu.png: CPU per datagram vs stream count;
NAME-delay-cdf.png) with Debian's python3-matplotlib.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import blast_bench  # noqa: E402
import iperf_bench  # noqa: E402
import streams_bench  # noqa: E402
import uring_bench  # noqa: E402
from benchlib import HERE, BenchError, Topology, log  # noqa: E402

SECTIONS = ('blast', 'iperf3', 'streams')
EXTRA_SECTIONS = ('uring',)      # run only when named in --sections


def check_tools(args, sections):
    missing = [t for t in ('ip', 'tc', 'ethtool', 'taskset') if not shutil.which(t)]
    if missing:
        raise BenchError('missing tools: %s (Debian: iproute2 ethtool util-linux)'
                         % ' '.join(missing))
    need = ['run_measured']
    if 'blast' in sections:
        need += ['udp_blast', 'udp_sink']
    if 'streams' in sections:
        need += ['stream_sink']
    if 'uring' in sections:
        need += ['udp_blast', 'udp_sink']
    for f in need:
        if not os.access(os.path.join(args.build, 'bench', f), os.X_OK):
            raise BenchError('%s/bench/%s not built (make tools)' % (args.build, f))
    if os.geteuid() != 0:
        raise BenchError('needs root (network namespaces)')


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(os.path.dirname(HERE), 'build'))
    ap.add_argument('--name', default='latest', help='bench/results/NAME.{json,md,png}')
    ap.add_argument('--sections', default=','.join(SECTIONS),
                    help='comma list of %s (default: %s)' % (
                        ','.join(SECTIONS + EXTRA_SECTIONS), ','.join(SECTIONS)))
    ap.add_argument('--quick', action='store_true',
                    help='1-2 rounds and fewer configurations (about 2 minutes)')
    ap.add_argument('--full', action='store_true',
                    help='3 rounds everywhere, ffmpeg up to 100 streams, the ideal at every '
                    'multiudpsink N, iperf3 also at 200M (about 15 minutes)')
    ap.add_argument('--rounds', type=int, default=None,
                    help='rounds of every section (default: blast 5, iperf3 3, streams 2)')
    ap.add_argument('--paths', default='veth,loopback', help='blast and iperf3 paths')
    ap.add_argument('--shim-env', action='append', default=[],
                    metavar='KEY=VAL', help='extra environment for shim variants')
    ap.add_argument('--no-pin', action='store_true')
    ap.add_argument('--no-strace', action='store_true')
    ap.add_argument('--report', metavar='JSON',
                    help='only rewrite NAME.{json,md} (summaries and targets recomputed) '
                    'and the plots from an earlier NAME.json')
    g = ap.add_argument_group('blast')
    g.add_argument('--count', type=int, default=200000)
    g.add_argument('--blast-rounds', type=int, default=None)
    g.add_argument('--variants', default=None,
                   help='comma list (default: %s on veth, %s on loopback)'
                   % (','.join(blast_bench.DEFAULT_VETH), ','.join(blast_bench.DEFAULT_LO)))
    g.add_argument('--ref-lib', default=None, metavar='SO',
                   help='another build of libudpweave.so for the shim-ref variant '
                   '(this tree against it in one run)')
    g.add_argument('--ref2-lib', default=None, metavar='SO',
                   help='a third build of libudpweave.so for the shim-ref2 variant')
    g.add_argument('--rate', type=int, default=0,
                   help='pace every sender at this many datagrams/s (0: as fast as possible)')
    g.add_argument('--no-rx-check', action='store_true')
    g.add_argument('--no-fd-overhead', action='store_true')
    g = ap.add_argument_group('iperf3')
    g.add_argument('--iperf-rounds', type=int, default=None)
    g.add_argument('--iperf-time', type=int, default=2, help='iperf3 -t (seconds)')
    g.add_argument('--iperf-lengths', default='1316,1472', help='-l values on veth')
    g.add_argument('--iperf-lo-lengths', default='1316', help='-l values on loopback')
    g.add_argument('--iperf-rates', default='0,1G', help='-b values')
    g.add_argument('--iperf-variants', default='baseline,mmsg,passthrough')
    g = ap.add_argument_group('streams')
    g.add_argument('--streams-rounds', type=int, default=None)
    g.add_argument('--streams-seconds', type=float, default=4,
                   help='length of the generated TS file')
    g.add_argument('--streams-servers', default='gst,ffmpeg')
    g.add_argument('--gst-streams', default='1,10,100,500')
    g.add_argument('--ffmpeg-streams', default='1,10,50')
    g.add_argument('--streams-variants', default='baseline,shim,shim-20ms,ideal-20ms')
    g.add_argument('--ideal-streams', default='100',
                   help='stream counts (gst rows) that also run the ideal-20ms sender')
    g.add_argument('--perf', action='store_true',
                   help='also profile one multiudpsink run per variant with perf record -g')
    g.add_argument('--perf-streams', type=int, default=100)
    g.add_argument('--no-stamps', action='store_true',
                   help='no send-time logger: no delay figures')
    g = ap.add_argument_group('uring')
    g.add_argument('--uring-rounds', type=int, default=None,
                   help='rounds of the uring section (default 5, --quick 2)')
    g.add_argument('--uring-configs', default=None,
                   help='comma list of %s (default: all; --quick: %s)' % (
                       ','.join(uring_bench.CONFIGS), ','.join(uring_bench.QUICK_CONFIGS)))
    args = ap.parse_args()
    if args.quick:
        args.rounds = args.rounds or 1
        args.blast_rounds = args.blast_rounds or 2
        args.count = min(args.count, 100000)
        args.no_rx_check = args.no_fd_overhead = True
        args.iperf_lengths = '1316'
        args.iperf_lo_lengths = ''
        args.gst_streams = '10,100'
        args.ffmpeg_streams = '10'
        args.streams_seconds = min(args.streams_seconds, 3)
    if args.full:
        args.rounds = args.rounds or 3
        args.ffmpeg_streams = '1,10,50,100'
        args.ideal_streams = '1,10,100,500'
        args.iperf_rates = '0,200M,1G'
        args.iperf_lo_lengths = '1316,1472'
        args.streams_variants = 'baseline,shim,shim-20ms,shim-20ms-rt,ideal-20ms'
    args.blast_rounds = args.blast_rounds or args.rounds or 5
    args.iperf_rounds = args.iperf_rounds or args.rounds or 3
    args.streams_rounds = args.streams_rounds or args.rounds or 2
    args.build = os.path.abspath(args.build)
    return args


def write_outputs(result, args, sections):
    outdir = os.path.join(HERE, 'results')
    os.makedirs(outdir, exist_ok=True)
    base = os.path.join(outdir, args.name)
    text = json.dumps(result, indent=1, default=str)
    # lists of numbers on one line each (the delay CDFs)
    text = re.sub(r'\[\s+([-+\d.eE,\s]+?)\s+\]',
                  lambda m: '[' + ' '.join(m.group(1).split()) + ']', text)
    with open(base + '.json', 'w') as f:
        f.write(text + '\n')
    if 'blast' in sections:
        lines = blast_bench.markdown(result)
    else:
        lines = ['# udpweave benchmark: %s' % result['name'], '',
                 '`%s` — %s. Kernel %s, %d CPUs%s.' % (
                     result['command'], result['date'], result['kernel'], os.cpu_count(),
                     ', senders pinned to CPU %d, receivers + napi to CPU %d' % tuple(
                         result['config']['pin']) if result['config'].get('pin') else ''), '']
    if result.get('iperf3', {}).get('summary'):
        lines += iperf_bench.markdown(result['iperf3'])
    if result.get('streams', {}).get('summary'):
        lines += streams_bench.markdown(result['streams'])
    if result.get('uring', {}).get('summary'):
        lines += uring_bench.markdown(result['uring'])
    for n in result.get('notes', []):
        lines.append('- ' + n)
    md = '\n'.join(lines) + '\n'
    with open(base + '.md', 'w') as f:
        f.write(md)
    pngs = []
    if 'blast' in sections and result.get('summary') and blast_bench.plot(result, base + '.png'):
        pngs.append(base + '.png')
    if result.get('iperf3', {}).get('summary') and \
            iperf_bench.plot(result['iperf3'], base + '-iperf3.png'):
        pngs.append(base + '-iperf3.png')
    if result.get('streams', {}).get('summary'):
        pngs += streams_bench.plot(result['streams'], base + '-streams-cpu.png',
                                   base + '-delay-cdf.png')
    uring_png = base + ('.png' if 'blast' not in sections else '-uring.png')
    if result.get('uring', {}).get('summary') and uring_bench.plot(result['uring'], uring_png):
        pngs.append(uring_png)
    print(md)
    log('wrote %s.{json,md}%s' % (base, ''.join(' ' + os.path.basename(p) for p in pngs)))


def main():
    args = parse_args()
    if args.report:
        with open(args.report) as f:
            result = json.load(f)
        args.name = result['name']
        # targets from the stored summaries, with the current wording
        if result.get('summary', {}).get('veth'):
            result['targets'] = blast_bench.targets(result['summary']['veth'])
        if result.get('iperf3', {}).get('summary'):
            result['iperf3']['targets'] = iperf_bench.targets(result['iperf3']['summary'])
        if result.get('uring', {}).get('summary'):
            result['uring']['targets'] = uring_bench.targets(result['uring']['summary'])
        sec = result.get('streams', {})
        if sec.get('summary') and sec.get('runs'):
            # re-summarize (the per-run CDFs are not stored: keep the old ones)
            cdf = {(r['server'], r['n'], r['variant']): r.get('delay_cdf_us')
                   for r in sec['summary']}
            configs = list(dict.fromkeys((r['server'], r['n']) for r in sec['summary']))
            sec['summary'] = streams_bench.summarize(sec['runs'], configs,
                                                     sec['config']['variants'])
            for r in sec['summary']:
                if cdf.get((r['server'], r['n'], r['variant'])):
                    r['delay_cdf_us'] = streams_bench.compact_cdf(
                        cdf[(r['server'], r['n'], r['variant'])])
            sec['targets'] = streams_bench.targets(sec)
        write_outputs(result, args, result.get('sections', ['blast']))
        return
    sections = [s for s in args.sections.split(',') if s]
    for s in sections:
        if s not in SECTIONS + EXTRA_SECTIONS:
            raise BenchError('unknown section %s (known: %s)' % (
                s, ', '.join(SECTIONS + EXTRA_SECTIONS)))
    check_tools(args, sections)
    paths = [p for p in args.paths.split(',') if p]
    have_lib = os.path.exists(os.path.join(args.build, 'libudpweave.so'))
    notes = []
    if not have_lib:
        notes.append('%s/libudpweave.so missing: shim variants skipped' % args.build)
        log('warning: ' + notes[-1])
    pin = None if args.no_pin or (os.cpu_count() or 1) < 2 else (0, 1)
    topo = Topology(pin)

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t_start = time.monotonic()
    result = {'name': args.name,
              'date': datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S'),
              'kernel': os.uname().release,
              'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              'sections': sections,
              'config': {'pin': list(pin) if pin else None},
              'notes': notes}
    failed = []
    timing = {}
    try:
        if 'veth' in paths or 'streams' in sections or 'uring' in sections:
            topo.setup_veth()
        if 'loopback' in paths:
            topo.setup_lo()
        for s in sections:
            t0 = time.monotonic()
            log('== section %s' % s)
            if s == 'blast':
                failed += blast_bench.run_section(args, topo, result, paths, have_lib)
            elif s == 'iperf3':
                failed += iperf_bench.run_section(args, topo, result, paths, have_lib)
            elif s == 'streams':
                failed += streams_bench.run_section(args, topo, result, have_lib)
            elif s == 'uring':
                failed += uring_bench.run_section(args, topo, result, have_lib)
            timing[s] = time.monotonic() - t0
    except KeyboardInterrupt:
        log('interrupted: cleaning up')
        topo.close()
        sys.exit(130)
    except BenchError as e:
        log('error: %s' % e)
        topo.close()
        sys.exit(1)
    finally:
        topo.close()
    result['runtime_s'] = time.monotonic() - t_start
    result['section_runtime_s'] = timing
    notes.append('total benchmark runtime %.0f s (%s)' % (
        result['runtime_s'], ', '.join('%s %.0f s' % kv for kv in timing.items())))
    write_outputs(result, args, sections)
    if failed:
        log('%d runs failed (exit status / timeout)' % len(failed))
        sys.exit(1)


if __name__ == '__main__':
    try:
        main()
    except BenchError as e:
        log('error: %s' % e)
        sys.exit(1)
