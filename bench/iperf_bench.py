"""The iperf3 section of the udpweave benchmark (run by run_bench.py).

One iperf3 UDP client (`iperf3 -u -c ... -b RATE -l LEN -t T -w 4M -J`,
pinned to the sender CPU) against `iperf3 -s -1 -J` in the receiving
namespace (iperf3 3.12 refuses -w on the server, "client only": the
client sends its -w 4M to the server, which applies it to its socket) (pinned to the receiver CPU, with the veth's napi kthread), for
every datagram length and rate, in three variants, interleaved and rotated
round by round:

  baseline     plain iperf3
  mmsg         LD_PRELOAD=libudpweave.so (default backend)
  passthrough  the shim with UDPWEAVE_BACKEND=passthrough (one send each)

Figures per run:
  sent       the client's end.sum.bits_per_second (what it wrote)
  received   the server's end.sum.bits_per_second (what it read)
  CPU %      the client's end.cpu_utilization_percent.host_total: iperf3's
             own getrusage over the test (all threads, so the shim's flush
             thread too); run_measured's wait4 figure, which adds start-up
             and the exit-time flush, is kept in the JSON
  per CPU    throughput / (CPU % / 100): Mbit/s per sender CPU-second
  loss       the server's lost_packets (sequence gaps it saw).  iperf3's
             server stops reading UDP when TEST_END arrives on the control
             connection (esnet/iperf #1865, PR #1868; see
             tests/integration/test_iperf3.py): datagrams still in its socket
             buffer then are neither counted nor lost.  That unread tail is
             reported separately (client packets - the highest sequence
             number the server saw).
Ratios are medians of per-round ratios to the baseline of the same round.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from benchlib import (BenchError, RX_BASE, log, clean_env, med, fmt, rotated,
                      stop_process, kill_group, read_json)

PORT = 5201
VARIANTS = {
    'baseline':    {'preload': False},
    'mmsg':        {'preload': True},
    'passthrough': {'preload': True, 'env': {'UDPWEAVE_BACKEND': 'passthrough'}},
}
CLIENT_GRACE_S = 25


def rate_label(rate):
    return 'unlimited (-b 0)' if rate in ('0', 0) else rate + 'bit/s'


def listening(pid, port):
    """True when process pid's network namespace has TCP port listening."""
    for name in ('tcp', 'tcp6'):
        try:
            with open('/proc/%d/net/%s' % (pid, name)) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if (int(fields[1].rsplit(':', 1)[1], 16) == port and
                            fields[3] == '0A'):
                        return True
        except (OSError, StopIteration):
            pass
    return False


class IperfRunner:
    def __init__(self, args, topo):
        self.args = args
        self.topo = topo
        self.lib = os.path.join(args.build, 'libudpweave.so')
        self.measure = os.path.join(args.build, 'bench', 'run_measured')
        self.tmp = tempfile.mkdtemp(prefix='uwbench-iperf-')
        self.children = []

    def close(self):
        for p in self.children:
            if p.poll() is None:
                kill_group(p, signal.SIGKILL)
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path_params(self, path):
        if path == 'veth':
            return self.topo.tx, self.topo.rx, RX_BASE
        return self.topo.lo, self.topo.lo, '127.0.0.1'

    def start_server(self, ns):
        cmd = (['ip', 'netns', 'exec', ns] + self.topo.pin_prefix(1) +
               ['iperf3', '-s', '-1', '-p', str(PORT), '-J'])
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=clean_env(), text=True, start_new_session=True)
        self.children.append(p)
        deadline = time.monotonic() + 5
        while not listening(p.pid, PORT):
            if p.poll() is not None or time.monotonic() > deadline:
                out, err = stop_process(p)
                self.children.remove(p)
                raise BenchError('iperf3 server did not start in %s: %s' % (ns, err))
            time.sleep(0.01)
        return p

    def client_cmd(self, ns, dst, variant, length, rate, stats_path, ru_path):
        v = VARIANTS[variant]
        env = []
        if v['preload']:
            env = ['LD_PRELOAD=' + self.lib, 'UDPWEAVE_STATS=' + stats_path]
            env += ['%s=%s' % kv for kv in v.get('env', {}).items()]
            env += self.args.shim_env
        measured = [self.measure, '--out', ru_path]
        for e in env:
            measured += ['--setenv', e]
        return (['ip', 'netns', 'exec', ns] + self.topo.pin_prefix(0) + measured +
                ['--', 'iperf3', '-u', '-c', dst, '-p', str(PORT), '-b', rate,
                 '-l', str(length), '-t', str(self.args.iperf_time), '-w', '4M', '-J'])

    def run(self, path, variant, length, rate):
        tx, rx, dst = self.path_params(path)
        for f in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, f))
        stats_path = os.path.join(self.tmp, 'stats-%p.json')
        ru_path = os.path.join(self.tmp, 'rusage.json')
        server = self.start_server(rx)
        cmd = self.client_cmd(tx, dst, variant, length, rate, stats_path, ru_path)
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=clean_env(), text=True, start_new_session=True)
        self.children.append(client)
        try:
            c_out, c_err = client.communicate(timeout=self.args.iperf_time + CLIENT_GRACE_S)
        except subprocess.TimeoutExpired:
            c_out, c_err = stop_process(client)
        s_out, s_err = stop_process(server, timeout=5.0)
        self.children.remove(client)
        self.children.remove(server)
        rep = {'path': path, 'variant': variant, 'length': length, 'rate': rate,
               'exit': client.returncode, 'server_exit': server.returncode,
               'rusage': read_json(ru_path), 'stats': None}
        stats = [f for f in os.listdir(self.tmp) if f.startswith('stats-')]
        if stats:
            rep['stats'] = read_json(os.path.join(self.tmp, sorted(stats)[0]))
        try:
            c = json.loads(c_out)
            s = json.loads(s_out)
        except ValueError:
            rep['error'] = ('client: %s server: %s' % (c_err.strip()[-300:],
                                                      s_err.strip()[-300:]))
            rep['exit'] = rep['exit'] or 'bad json'
            return rep
        if 'error' in c or 'error' in s:
            rep['error'] = c.get('error') or s.get('error')
            rep['exit'] = rep['exit'] or 'iperf3 error'
            return rep
        # client sum_sent: what it wrote; server sum_received: bytes it read,
        # packets = highest sequence number seen (read + lost), lost_packets
        # = sequence gaps
        cs = c['end'].get('sum_sent') or c['end']['sum']
        ss = s['end'].get('sum_received') or s['end']['sum']
        cpu = c['end'].get('cpu_utilization_percent', {})
        rep.update({
            'seconds': cs.get('seconds'),
            'sent_mbps': cs['bits_per_second'] / 1e6,
            'recv_mbps': ss['bits_per_second'] / 1e6,
            'sent_packets': cs.get('packets'),
            'recv_packets': ss['bytes'] // length,
            'server_counted': ss.get('packets'),
            'lost_packets': ss.get('lost_packets'),
            'lost_percent': ss.get('lost_percent'),
            'out_of_order': sum(st.get('udp', {}).get('out_of_order', 0)
                                for st in s['end'].get('streams', [])),
            'cpu_pct': cpu.get('host_total'),
            'cpu_user_pct': cpu.get('host_user'),
            'cpu_system_pct': cpu.get('host_system'),
            'server_cpu_pct': cpu.get('remote_total'),
        })
        rep['unread_tail'] = (rep['sent_packets'] - rep['server_counted']
                              if None not in (rep['sent_packets'], rep['server_counted'])
                              else None)
        if rep['cpu_pct']:
            rep['sent_mbps_per_cpu'] = rep['sent_mbps'] / (rep['cpu_pct'] / 100)
            rep['recv_mbps_per_cpu'] = rep['recv_mbps'] / (rep['cpu_pct'] / 100)
        ru = rep['rusage']
        if ru:
            rep['wait4_cpu_s'] = ru['utime_s'] + ru['stime_s']
        return rep


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(runs, configs, variants):
    rows = []
    for path, length, rate in configs:
        sel = [r for r in runs if (r['path'], r['length'], r['rate']) == (path, length, rate)]
        base = {r['round']: r for r in sel if r['variant'] == 'baseline' and r['exit'] == 0}
        for v in variants:
            rs = [r for r in sel if r['variant'] == v]
            if not rs:
                continue
            ok = [r for r in rs if r['exit'] == 0]
            row = {'path': path, 'length': length, 'rate': rate, 'variant': v,
                   'runs': len(rs), 'failed': len(rs) - len(ok)}
            for k in ('sent_mbps', 'recv_mbps', 'cpu_pct', 'sent_mbps_per_cpu',
                      'recv_mbps_per_cpu', 'lost_packets', 'lost_percent', 'unread_tail',
                      'server_cpu_pct'):
                row[k] = med(r.get(k) for r in ok)
            row['lost_total'] = sum(r.get('lost_packets') or 0 for r in ok)
            row['recv_total'] = sum(r.get('recv_packets') or 0 for r in ok)
            row['sent_total'] = sum(r.get('sent_packets') or 0 for r in ok)
            row['out_of_order_total'] = sum(r.get('out_of_order') or 0 for r in ok)
            for k in ('sent_mbps_per_cpu', 'recv_mbps_per_cpu', 'sent_mbps', 'recv_mbps',
                      'cpu_pct'):
                row[k + '_ratio'] = med(ratio(r.get(k), base[r['round']].get(k))
                                        for r in ok if r['round'] in base)
            st = [r['stats'] for r in ok if r.get('stats')]
            if st:
                row['dgrams_per_syscall'] = med(s['datagrams_out'] / s['syscalls']
                                                for s in st if s.get('syscalls'))
                row['max_queue_delay_us'] = max(s.get('max_queue_delay_us', 0) for s in st)
                row['datagrams_dropped_total'] = sum(s.get('datagrams_dropped', 0) for s in st)
            rows.append(row)
    return rows


def targets(rows):
    out = {}
    by = {(r['path'], r['length'], r['rate'], r['variant']): r for r in rows}
    r = by.get(('veth', 1316, '0', 'mmsg'))
    if r and r.get('sent_mbps_per_cpu_ratio'):
        x, y = r['sent_mbps_per_cpu_ratio'], r.get('recv_mbps_per_cpu_ratio')
        b = by[('veth', 1316, '0', 'baseline')]
        out['iperf3 -u -b 0 -l 1316 on veth: >= 2.5x baseline throughput per sender CPU'] = (
            '%s for what the sender puts on the wire: %.2fx sent per CPU (sent %.0f vs %.0f '
            'Mbit/s at %.0f%% vs %.0f%% CPU). End to end %s: received per sender CPU %s '
            '(received %.0f vs %.0f Mbit/s) — the iperf3 server (one read per datagram, on '
            'the receiving CPU with the napi kthread) takes at most ~2-2.5 Gbit/s whatever '
            'the sender does, and drops the rest (%.0f%% vs %.0f%% lost)' % (
                'met' if x >= 2.5 else 'NOT met (%.0f%% short)' % (100 * (1 - x / 2.5)), x,
                r['sent_mbps'], b['sent_mbps'], r['cpu_pct'], b['cpu_pct'],
                'met' if y and y >= 2.5 else 'NOT shown on this rig',
                '%.2fx' % y if y else '–', r['recv_mbps'], b['recv_mbps'],
                r['lost_percent'] or 0, b['lost_percent'] or 0))
    r, b = by.get(('veth', 1316, '1G', 'mmsg')), by.get(('veth', 1316, '1G', 'baseline'))
    if r and b and r.get('sent_mbps_per_cpu_ratio'):
        out['for reference, the same CPU comparison at a fixed 1 Gbit/s (-l 1316, veth)'] = (
            '%.2fx throughput per sender CPU (%.0f%% vs %.0f%% CPU for the same 1 Gbit/s)' % (
                r['sent_mbps_per_cpu_ratio'], r['cpu_pct'], b['cpu_pct']))
    for length in (1316, 1472):
        r, b = by.get(('veth', length, '1G', 'mmsg')), by.get(('veth', length, '1G', 'baseline'))
        if r and b:
            added = r['lost_total'] - b['lost_total']
            out['zero added loss at 1 Gbit/s, -l %d, veth' % length] = (
                '%s: mmsg lost %d of %d, baseline %d of %d (server lost_packets, all rounds)' % (
                    'met' if added <= 0 else 'NOT met', r['lost_total'], r['sent_total'],
                    b['lost_total'], b['sent_total']))
    return out


def markdown(sec):
    a = sec['config']
    lines = ['## iperf3 UDP: baseline vs udpweave', '',
             '`iperf3 -u -c DST -b RATE -l LEN -t %d -w 4M -J` (sender CPU %s) against '
             '`iperf3 -s -1 -J` (the client\'s -w 4M applies to the server socket; 3.12 '
             'rejects -w on the server) (receiver CPU %s, with the veth napi kthread); %d rounds '
             'interleaved (order rotated), medians; ratios are medians of per-round ratios to '
             'baseline. CPU %% = iperf3\'s end.cpu_utilization_percent.host_total of the client '
             '(all its threads: the shim\'s flush thread included). "per CPU" = Mbit/s per '
             'sender CPU-second. Loss = the server\'s lost_packets (sequence gaps); "unread" = '
             'datagrams the client sent that the server neither received nor counted lost: '
             'iperf3\'s server stops reading at TEST_END (esnet/iperf #1865), which leaves '
             'what is still queued unread — large at -b 0, where the receiver is the '
             'bottleneck.' % (a['time_s'], a['pin'][0] if a['pin'] else '-',
                              a['pin'][1] if a['pin'] else '-', a['rounds']), '']
    for path in ('veth', 'loopback'):
        rows = [r for r in sec['summary'] if r['path'] == path]
        if not rows:
            continue
        lines += ['### %s' % {'veth': 'veth pair between two namespaces',
                              'loopback': 'loopback (receive work charged to the sender CPU)'}[path],
                  '',
                  '| -l | -b | variant | sent Mbit/s | received Mbit/s | sender CPU % | '
                  'sent per CPU (ratio) | received per CPU (ratio) | lost (all rounds) | '
                  'unread tail (median) | dgrams/syscall |',
                  '|---|---|---|---|---|---|---|---|---|---|---|']
        for r in rows:
            lines.append('| %d | %s | %s%s | %s | %s | %s | %s (%s) | %s (%s) | %d/%d | %s | %s |' % (
                r['length'], '0' if r['rate'] == '0' else r['rate'], r['variant'],
                ' (%d FAILED)' % r['failed'] if r['failed'] else '',
                fmt(r['sent_mbps'], '%.0f'), fmt(r['recv_mbps'], '%.0f'),
                fmt(r['cpu_pct'], '%.0f'),
                fmt(r['sent_mbps_per_cpu'], '%.0f'), fmt(r.get('sent_mbps_per_cpu_ratio'), '%.2fx'),
                fmt(r['recv_mbps_per_cpu'], '%.0f'), fmt(r.get('recv_mbps_per_cpu_ratio'), '%.2fx'),
                r['lost_total'], r['sent_total'], fmt(r['unread_tail'], '%.0f'),
                fmt(r.get('dgrams_per_syscall'), '%.1f')))
        lines.append('')
    if sec.get('targets'):
        lines += ['Targets:', '']
        lines += ['- %s: %s' % kv for kv in sec['targets'].items()]
        lines.append('')
    for n in sec.get('notes', []):
        lines.append('- ' + n)
    if sec.get('notes'):
        lines.append('')
    return lines


def plot(sec, path_png):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in sec['summary'] if r['sent_mbps_per_cpu'] is not None]
    groups = list(dict.fromkeys((r['path'], r['length'], r['rate']) for r in rows))
    variants = list(dict.fromkeys(r['variant'] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(groups)), 3.8))
    w = 0.8 / max(1, len(variants))
    colors = {'baseline': '#888', 'mmsg': '#2a7', 'passthrough': '#c84'}
    for i, v in enumerate(variants):
        ys = []
        for g in groups:
            r = next((x for x in rows if (x['path'], x['length'], x['rate']) == g and
                      x['variant'] == v), None)
            ys.append(r['sent_mbps_per_cpu'] / 1000 if r else 0)
        ax.bar([k + i * w for k in range(len(groups))], ys, w, label=v,
               color=colors.get(v))
    ax.set_xticks([k + w * (len(variants) - 1) / 2 for k in range(len(groups))])
    ax.set_xticklabels(['%s\n-l %d -b %s' % g for g in groups], fontsize=8)
    ax.set_ylabel('sent Gbit/s per sender CPU')
    ax.set_title('iperf3 -u: throughput per sender CPU-second')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=80)
    plt.close(fig)
    return True


def run_section(args, topo, result, paths, have_lib):
    if not shutil.which('iperf3'):
        result['notes'].append('iperf3 not installed: iperf3 section skipped')
        return []
    variants = [v for v in args.iperf_variants.split(',') if v]
    for v in variants:
        if v not in VARIANTS:
            raise BenchError('unknown iperf3 variant %s' % v)
    if not have_lib:
        variants = [v for v in variants if not VARIANTS[v]['preload']]
    lengths = [int(x) for x in args.iperf_lengths.split(',') if x]
    rates = [x for x in args.iperf_rates.split(',') if x]
    lo_lengths = [int(x) for x in args.iperf_lo_lengths.split(',') if x]
    configs = []
    for p in paths:
        for length in (lengths if p == 'veth' else lo_lengths):
            for rate in rates:
                configs.append((p, length, rate))
    sec = {'config': {'time_s': args.iperf_time, 'rounds': args.iperf_rounds,
                      'lengths': lengths, 'loopback_lengths': lo_lengths, 'rates': rates,
                      'variants': variants, 'pin': list(topo.pin) if topo.pin else None,
                      'shim_env': args.shim_env},
           'notes': []}
    result['iperf3'] = sec
    if 'veth' in paths:
        topo.set_rx_napi(True)
    runner = IperfRunner(args, topo)
    runs = []
    order = [(c, v) for c in configs for v in variants]
    try:
        for rnd in range(args.iperf_rounds):
            for (p, length, rate), v in rotated(order, rnd):
                r = runner.run(p, v, length, rate)
                r['round'] = rnd
                runs.append(r)
                log('iperf3 round %d %-8s -l %d -b %-3s %-11s sent %6s Mbit/s recv %6s '
                    'cpu %4s%%  lost %s unread %s%s' % (
                        rnd + 1, p, length, rate, v, fmt(r.get('sent_mbps'), '%.0f'),
                        fmt(r.get('recv_mbps'), '%.0f'), fmt(r.get('cpu_pct'), '%.0f'),
                        r.get('lost_packets'), r.get('unread_tail'),
                        '' if r['exit'] == 0 else '  FAILED %s %s' % (r['exit'], r.get('error', ''))))
    finally:
        runner.close()
    sec['runs'] = runs
    sec['summary'] = summarize(runs, configs, variants)
    sec['targets'] = targets(sec['summary'])
    return [r for r in runs if r['exit'] != 0]
