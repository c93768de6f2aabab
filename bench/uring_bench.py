"""The uring section of the udpweave benchmark (run_bench.py --sections
uring, or make bench-uring): the figures of issue 7, side by side on the
veth pair of benchlib.Topology (sender pinned to CPU 0; receiver and the
threaded-NAPI kthread to CPU 1), variants interleaved and rotated round by
round, medians.

Workloads (bench/udp_blast to 100 destinations: 10 addresses x 10 ports):

  conn100        100 connected sockets, one send() each in turn, and after
                 every 100 datagrams the aware application's uw_flush()
                 (--flush-every 100): every flush carries exactly one
                 datagram per socket.  Figure (a).
  conn100-paced  the same sockets, unmodified application paced at 50000
                 datagrams/s: the flush thread's flushes carry about one
                 datagram per socket (the realistic form of (a)).
  gso16          one unconnected socket, sendto() round-robin, a flush every
                 1600 datagrams: 100 GSO runs of 16 segments.  Figure (b).
  zc8, zc12      as gso16 with 8- and 12-segment runs (10.5 KB, 15.8 KB of
                 1316-byte datagrams): copying vs zero-copy sends.
  zc16k, zc60k   one 16000- or 60000-byte datagram per destination per
                 flush: copying vs zero-copy.
  (A run of 1316-byte datagrams goes zero-copy only up to 13 segments: the
  pages of one zero-copy send must fit the 17 fragments of an skb.)

Variants: baseline (no library), mmsg, auto (the default), uring
(UDPWEAVE_BACKEND), uring-zc
(uring with UDPWEAVE_URING_ZC_BYTES=1: every message that fits one skb's
fragments goes zero-copy from the registered arena), and for conn100
hand-uring: udp_blast's own io_uring sender (--mode uring-conn, no
library), one IORING_OP_SEND per socket and one io_uring_enter per round:
the floor for what the uring backend can do there.

Figures per variant: sender CPU us/datagram (wait4 rusage of the sender
alone, all its threads: build/bench/run_measured), its ratio to baseline and
to mmsg (medians of per-round ratios), datagrams per send system call and
io_uring_enter calls per flush (the library's stats, which test_syscalls
checks against strace), zero-copy sends and how many the kernel copied
anyway, loss and order at the receiver (bench/udp_sink).
"""
import json
import os
import select
import signal
import subprocess

from benchlib import (BenchError, N_ADDRS, RX_BASE, log, clean_env, med, fmt, rotated,
                      settle_and_stop)
import blast_bench

BASE_PORT = 9000
N_PORTS = 10
DESTS = N_ADDRS * N_PORTS

VARIANTS = {
    'baseline': None,
    'hand-uring': None,     # udp_blast --mode uring-conn: no library
    'mmsg':     {'UDPWEAVE_BACKEND': 'mmsg'},
    'auto':     {'UDPWEAVE_BACKEND': 'auto'},   # the default
    'uring':    {'UDPWEAVE_BACKEND': 'uring'},
    'uring-zc': {'UDPWEAVE_BACKEND': 'uring', 'UDPWEAVE_URING_ZC_BYTES': '1'},
}

CONFIGS = {
    'conn100':       {'mode': 'connected-send', 'size': 1316, 'flush_every': DESTS,
                      'count': 200000, 'variants': ['baseline', 'hand-uring', 'mmsg', 'auto', 'uring']},
    'conn100-paced': {'mode': 'connected-send', 'size': 1316, 'rate': 50000,
                      'count': 100000, 'variants': ['baseline', 'mmsg', 'auto', 'uring']},
    'gso16':         {'mode': 'sendto', 'size': 1316, 'flush_every': 16 * DESTS,
                      'count': 320000, 'variants': ['baseline', 'mmsg', 'auto', 'uring']},
    'zc8':           {'mode': 'sendto', 'size': 1316, 'flush_every': 8 * DESTS,
                      'count': 160000, 'variants': ['mmsg', 'uring', 'uring-zc']},
    'zc12':          {'mode': 'sendto', 'size': 1316, 'flush_every': 12 * DESTS,
                      'count': 240000, 'variants': ['mmsg', 'uring', 'uring-zc']},
    'zc16k':         {'mode': 'sendto', 'size': 16000, 'flush_every': DESTS,
                      'count': 50000, 'variants': ['mmsg', 'uring', 'uring-zc']},
    'zc60k':         {'mode': 'sendto', 'size': 60000, 'flush_every': DESTS,
                      'count': 20000, 'variants': ['mmsg', 'uring', 'uring-zc']},
}
DEFAULT_CONFIGS = list(CONFIGS)
QUICK_CONFIGS = ['conn100', 'gso16', 'zc12']


class Runner(blast_bench.Runner):
    """blast_bench's runner (sink, run_measured, cleanup) with this
    section's sender command lines."""

    def start_sized_sink(self, ns, size):
        cmd = (['ip', 'netns', 'exec', ns] + self.pin_prefix(1) +
               [self.sink, '--port', str(BASE_PORT), '--ports', str(N_PORTS),
                '--size', str(size), '--idle-ms', '10000',
                '--rcvbuf', str(256 << 20), '--time-limit', '120'])
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

    def command(self, cfg, variant, count, stats_path):
        env = VARIANTS[variant]
        measured = [self.measure, '--out', self.rusage_path]
        if env is not None:
            measured += ['--setenv', 'LD_PRELOAD=' + self.lib,
                         '--setenv', 'UDPWEAVE_STATS=' + stats_path]
            measured += sum((['--setenv', '%s=%s' % kv] for kv in env.items()), [])
            measured += sum((['--setenv', e] for e in self.args.shim_env), [])
        mode = 'uring-conn' if variant == 'hand-uring' else cfg['mode']
        return (['ip', 'netns', 'exec', self.topo.tx] + self.pin_prefix(0) + measured +
                ['--', self.blast, '--mode', mode, '--count', str(count),
                 '--size', str(cfg['size']), '--dst', RX_BASE, '--addrs', str(N_ADDRS),
                 '--port', str(BASE_PORT), '--ports', str(N_PORTS),
                 '--rate', str(cfg.get('rate', 0)),
                 '--flush-every', str(cfg.get('flush_every', 0)),
                 '--sndbuf', str(cfg.get('sndbuf', 0)),
                 '--time-limit', '30'])

    def run_config(self, name, variant, count):
        cfg = CONFIGS[name]
        stats_path = os.path.join(self.tmp, 'stats-%p.json')
        for f in os.listdir(self.tmp):
            if f.startswith('stats-'):
                os.unlink(os.path.join(self.tmp, f))
        sink = self.start_sized_sink(self.topo.rx, cfg['size'])
        rc, ru, text = self.run_sender(self.command(cfg, variant, count, stats_path))
        settle_and_stop(sink)
        sink_rep = self.stop_sink(sink) or {}
        blast = next((json.loads(l) for l in text.splitlines() if l.startswith('{')), {})
        stats = None
        files = [f for f in os.listdir(self.tmp) if f.startswith('stats-')]
        if files:
            with open(os.path.join(self.tmp, sorted(files)[0])) as f:
                stats = json.load(f)
        cpu = ru['utime_s'] + ru['stime_s']
        rep = {'config': name, 'variant': variant, 'count': count, 'exit': rc,
               'cpu_s': cpu, 'cpu_us_per_dgram': cpu / count * 1e6, 'wall_s': ru['wall_s'],
               'received': sink_rep.get('received', 0),
               'reordered': sink_rep.get('reordered', 0),
               'bad_size': sink_rep.get('bad_size', 0),
               'blast_calls': blast.get('calls'), 'explicit_flushes': blast.get('explicit_flushes'),
               'stats': stats}
        rep['loss'] = count - rep['received']
        if stats and stats.get('syscalls'):
            rep['dgrams_per_syscall'] = stats['datagrams_out'] / stats['syscalls']
        elif env_free(variant) and blast.get('calls'):
            rep['dgrams_per_syscall'] = blast['sent'] / blast['calls']
        else:
            rep['dgrams_per_syscall'] = None
        if stats:
            u = stats['backend_counters']['uring']
            rep['flushes'] = stats['batches']
            rep['dgrams_per_flush'] = stats['datagrams_out'] / max(1, stats['batches'])
            rep['enters_per_flush'] = (u['io_uring_enter_calls'] / stats['batches']
                                       if stats['batches'] else None)
            rep['zc_sends'] = u['zc_sends']
            rep['zc_copied'] = u['zc_copied']
            rep['uring_fallback_batches'] = u['mmsg_batches']
        return rep


def env_free(variant):
    return VARIANTS[variant] is None


def summarize(runs, name, variants):
    by = {v: [r for r in runs if r['config'] == name and r['variant'] == v] for v in variants}
    ref = {}
    for v in ('baseline', 'mmsg'):
        ref[v] = {r['round']: r for r in by.get(v, []) if r['exit'] == 0}
    rows = []
    for v in variants:
        ok = [r for r in by[v] if r['exit'] == 0]
        row = {'variant': v, 'runs': len(by[v]), 'failed': len(by[v]) - len(ok),
               'cpu_us_per_dgram': med(r['cpu_us_per_dgram'] for r in ok),
               'cpu_us_min': min((r['cpu_us_per_dgram'] for r in ok), default=None),
               'cpu_us_max': max((r['cpu_us_per_dgram'] for r in ok), default=None),
               'dgrams_per_syscall': med(r['dgrams_per_syscall'] for r in ok),
               'dgrams_per_flush': med(r.get('dgrams_per_flush') for r in ok),
               'enters_per_flush': med(r.get('enters_per_flush') for r in ok)
               if v.startswith('uring') else None,
               'zc_sends': sum(r.get('zc_sends') or 0 for r in ok),
               'zc_copied': sum(r.get('zc_copied') or 0 for r in ok),
               'fallback_batches': sum(r.get('uring_fallback_batches') or 0 for r in ok),
               'loss_total': sum(r['loss'] for r in by[v]),
               'reordered_total': sum(r['reordered'] for r in by[v]),
               'sent_total': sum(r['count'] for r in by[v])}
        for ref_name in ('baseline', 'mmsg'):
            rs = ref[ref_name]
            row['ratio_to_' + ref_name] = med(
                r['cpu_us_per_dgram'] / rs[r['round']]['cpu_us_per_dgram']
                for r in ok if r['round'] in rs) if rs and v != ref_name else None
        rows.append(row)
    return rows


def targets(summary):
    out = {}
    rows = {r['variant']: r for r in summary.get('conn100', [])}
    u = rows.get('uring')
    if u and u['dgrams_per_syscall']:
        out['(a) conn100 uring: datagrams per system call >= 64'] = '%s (%.1f)' % (
            'met' if u['dgrams_per_syscall'] >= 64 else 'NOT met', u['dgrams_per_syscall'])
        out['(a) conn100 uring: io_uring_enter per flush = 1'] = '%s (%.2f)' % (
            'met' if u['enters_per_flush'] == 1 else 'NOT met', u['enters_per_flush'])
    if u and u['ratio_to_baseline']:
        x = u['ratio_to_baseline']
        out['(a) conn100 uring: CPU/datagram <= 2/3 of send()'] = '%s (%.3f)' % (
            'met' if x <= 2 / 3 else 'NOT met', x)
    h = rows.get('hand-uring')
    if h and h['ratio_to_baseline']:
        out['(a) conn100 hand-written io_uring sender, no library: CPU/datagram vs send()'] = \
            '%.3f' % h['ratio_to_baseline']
    rows = {r['variant']: r for r in summary.get('conn100-paced', [])}
    u = rows.get('uring')
    if u and u['ratio_to_baseline']:
        out['(a, paced) conn100-paced uring: CPU/datagram vs send()'] = '%.3f, %.1f dgrams/syscall' % (
            u['ratio_to_baseline'], u['dgrams_per_syscall'] or 0)
    rows = {r['variant']: r for r in summary.get('gso16', [])}
    u = rows.get('uring')
    if u and u['ratio_to_mmsg']:
        x = u['ratio_to_mmsg']
        out['(b) gso16 uring: CPU/datagram within 10% of mmsg'] = '%s (%.3f)' % (
            'met' if x <= 1.10 else 'NOT met', x)
    for name in ('zc8', 'zc12', 'zc16k', 'zc60k'):
        rows = {r['variant']: r for r in summary.get(name, [])}
        z, c = rows.get('uring-zc'), rows.get('uring')
        if z and c and z['cpu_us_per_dgram'] and c['cpu_us_per_dgram']:
            out['zero-copy %s: uring-zc / uring CPU' % name] = '%.3f (%d zero-copy sends, %d copied by the kernel)' % (
                z['cpu_us_per_dgram'] / c['cpu_us_per_dgram'], z['zc_sends'], z['zc_copied'])
    return out


def markdown(sec):
    lines = ['## uring backend (issue 7): veth pair, 100 destinations, %d rounds interleaved, medians'
             % sec['config']['rounds'], '',
             'Sender CPU = user+sys of the sender process alone (wait4 in run_measured; all its '
             'threads, the exit flush). Ratios: medians of per-round ratios.', '']
    for name in sec['config']['configs']:
        rows = sec['summary'].get(name)
        if not rows:
            continue
        c = CONFIGS[name]
        what = '%s, %d x %d B%s%s' % (
            c['mode'], c['count'], c['size'],
            ', uw_flush() every %d datagrams' % c['flush_every'] if c.get('flush_every') else '',
            ', paced at %d/s' % c['rate'] if c.get('rate') else '')
        lines += ['### %s (%s)' % (name, what), '',
                  '| variant | CPU µs/dgram (min–max) | vs baseline | vs mmsg | dgrams/syscall | '
                  'dgrams/flush | io_uring_enter/flush | zero-copy sends (copied) | loss | reordered |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for r in rows:
            lines.append('| %s%s | %s | %s | %s | %s | %s | %s | %s | %d/%d | %d |' % (
                r['variant'], ' (%d FAILED)' % r['failed'] if r['failed'] else '',
                '%.3f (%.3f–%.3f)' % (r['cpu_us_per_dgram'], r['cpu_us_min'], r['cpu_us_max'])
                if r['cpu_us_per_dgram'] is not None else '–',
                fmt(r['ratio_to_baseline'], '%.3f'), fmt(r['ratio_to_mmsg'], '%.3f'),
                fmt(r['dgrams_per_syscall'], '%.1f'), fmt(r['dgrams_per_flush'], '%.1f'),
                fmt(r['enters_per_flush'], '%.2f'),
                '%d (%d)' % (r['zc_sends'], r['zc_copied']) if r['zc_sends'] else '–',
                r['loss_total'], r['sent_total'], r['reordered_total']))
        lines.append('')
    if sec.get('targets'):
        lines += ['### Targets', '']
        lines += ['- %s: %s' % kv for kv in sec['targets'].items()]
        lines.append('')
    return lines


def plot(sec, path_png):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [n for n in sec['config']['configs'] if sec['summary'].get(n)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    colors = {'baseline': '#888', 'hand-uring': '#bbb', 'mmsg': '#2a7', 'auto': '#7a2',
              'uring': '#27a',
              'uring-zc': '#a72'}
    for ax, n in zip(axes[0], names):
        rows = [r for r in sec['summary'][n] if r['cpu_us_per_dgram'] is not None]
        xs = range(len(rows))
        ys = [r['cpu_us_per_dgram'] for r in rows]
        ax.bar(xs, ys, color=[colors[r['variant']] for r in rows],
               yerr=[[y - r['cpu_us_min'] for y, r in zip(ys, rows)],
                     [r['cpu_us_max'] - y for y, r in zip(ys, rows)]], capsize=3)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r['variant'] for r in rows], rotation=30, ha='right')
        ax.set_title(n, fontsize=9)
        for x, y in zip(xs, ys):
            ax.text(x, y, '%.2f' % y, ha='center', va='bottom', fontsize=7)
    axes[0][0].set_ylabel('sender CPU µs / datagram')
    fig.tight_layout()
    fig.savefig(path_png, dpi=80)
    plt.close(fig)
    return True


def run_section(args, topo, result, have_lib):
    """Fills result['uring']; returns the failed runs."""
    if not have_lib:
        raise BenchError('the uring section needs build/libudpweave.so')
    names = [n for n in (args.uring_configs.split(',') if args.uring_configs else
                         (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)) if n]
    for n in names:
        if n not in CONFIGS:
            raise BenchError('unknown uring config %s (known: %s)' % (n, ', '.join(CONFIGS)))
    rounds = args.uring_rounds or (2 if args.quick else args.rounds or 5)
    scale = 0.5 if args.quick else 1.0
    topo.set_rx_napi(True)
    runner = Runner(args, topo)
    runs = []
    try:
        for rnd in range(rounds):
            for name in rotated(names, rnd):
                cfg = CONFIGS[name]
                for v in rotated(cfg['variants'], rnd):
                    r = runner.run_config(name, v, int(cfg['count'] * scale))
                    r['round'] = rnd
                    runs.append(r)
                    log('round %d %-13s %-9s cpu %.3f µs/dgram  %s%s  loss %d%s' % (
                        rnd + 1, name, v, r['cpu_us_per_dgram'],
                        '%.1f dgrams/syscall' % r['dgrams_per_syscall']
                        if r['dgrams_per_syscall'] else '',
                        '  %.2f enters/flush' % r['enters_per_flush']
                        if r.get('enters_per_flush') and v.startswith('uring') else '',
                        r['loss'], '' if r['exit'] == 0 else '  EXIT %s' % r['exit']))
    finally:
        runner.close()
    summary = {n: summarize(runs, n, CONFIGS[n]['variants']) for n in names}
    result['uring'] = {'config': {'rounds': rounds, 'configs': names, 'scale': scale,
                                  'pin': list(topo.pin) if topo.pin else None,
                                  'shim_env': args.shim_env},
                       'runs': runs, 'summary': summary, 'targets': targets(summary)}
    return [r for r in runs if r['exit'] != 0]
