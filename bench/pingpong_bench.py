#!/usr/bin/python3
"""Request/response through the library (issue 13): sockperf ping-pong
across the bench's veth pair, server in rx, client in tx, with the library
on neither side, on the client only, and on both; rounds interleaved,
medians of each run's p50 and p99 one-way latency (sockperf's half round
trip), and the difference to the baseline. Optionally a dnsmasq answering
dig in rx (--dns), the same three ways, median query time.

    bench/pingpong_bench.py --build build [--rounds 3] [--seconds 3] [--dns]
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BenchError, RX_BASE, Topology, clean_env, kill_group, log,  # noqa: E402
                      med, rotated, stop_process)

PORT = 11111
VARIANTS = ('baseline', 'client', 'both')


def env_for(lib, side, variant):
    env = clean_env()
    if variant == 'both' or (variant == 'client' and side == 'client'):
        env['LD_PRELOAD'] = lib
    return env


def sockperf_run(topo, lib, variant, seconds):
    srv = subprocess.Popen(['ip', 'netns', 'exec', topo.rx, 'sockperf', 'sr', '-i', RX_BASE,
                            '-p', str(PORT)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env_for(lib, 'server', variant),
                           start_new_session=True)
    try:
        time.sleep(0.5)
        cp = subprocess.run(['ip', 'netns', 'exec', topo.tx, 'sockperf', 'pp', '-i', RX_BASE,
                             '-p', str(PORT), '-t', str(seconds)], capture_output=True,
                            text=True, timeout=seconds + 30, env=env_for(lib, 'client', variant))
    finally:
        kill_group(srv, signal.SIGTERM)
        stop_process(srv)
    out = re.sub(r'\x1b\[[0-9;]*m', '', cp.stdout + cp.stderr)
    p50 = re.search(r'percentile 50\.000 =\s*([0-9.]+)', out)
    p99 = re.search(r'percentile 99\.000 =\s*([0-9.]+)', out)
    if cp.returncode or not p50 or not p99:
        raise BenchError('sockperf pp failed (%s): %s' % (variant, out[-400:]))
    return float(p50.group(1)), float(p99.group(1))


def dns_run(topo, lib, variant, queries, work):
    conf = os.path.join(work, 'dnsmasq.conf')
    with open(conf, 'w') as f:
        f.write('no-resolv\nno-hosts\nport=53\nlisten-address=%s\nbind-interfaces\n'
                'address=/bench.test/10.9.9.9\nuser=root\n' % RX_BASE)
    srv = subprocess.Popen(['ip', 'netns', 'exec', topo.rx, 'dnsmasq', '-k', '-C', conf],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=env_for(lib, 'server', variant), start_new_session=True)
    try:
        time.sleep(0.5)
        times = []
        for i in range(queries):
            cp = subprocess.run(['ip', 'netns', 'exec', topo.tx, 'dig', '+tries=1',
                                 '+time=2', '@' + RX_BASE, 'q%d.bench.test' % i],
                                capture_output=True, text=True, timeout=10,
                                env=env_for(lib, 'client', variant))
            m = re.search(r'Query time: (\d+) msec', cp.stdout)
            if cp.returncode or not m or '10.9.9.9' not in cp.stdout:
                raise BenchError('dig failed (%s): %s' % (variant, cp.stdout[-300:]))
            times.append(int(m.group(1)))
        return med(times)
    finally:
        kill_group(srv, signal.SIGTERM)
        stop_process(srv)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build', default='build')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--seconds', type=int, default=3)
    ap.add_argument('--dns', action='store_true', help='also dnsmasq answering dig')
    a = ap.parse_args()
    lib = os.path.abspath(os.path.join(a.build, 'libudpweave.so'))
    need = ['sockperf'] + (['dnsmasq', 'dig'] if a.dns else [])
    missing = [t for t in need if not shutil.which(t) and
               not os.path.exists('/usr/sbin/' + t)]
    if missing or not os.path.exists(lib):
        sys.exit('pingpong_bench: missing %s' % ', '.join(missing or [lib]))
    topo = Topology(pin=None)
    res = {v: {'p50': [], 'p99': [], 'dns': []} for v in VARIANTS}
    try:
        topo.setup_veth()
        with tempfile.TemporaryDirectory() as work:
            for rnd in range(a.rounds):
                for v in rotated(VARIANTS, rnd):
                    p50, p99 = sockperf_run(topo, lib, v, a.seconds)
                    res[v]['p50'].append(p50)
                    res[v]['p99'].append(p99)
                    if a.dns:
                        res[v]['dns'].append(dns_run(topo, lib, v, 20, work))
                    log('round %d %-8s p50 %.1f us p99 %.1f us' % (rnd, v, p50, p99))
    finally:
        topo.close()
    base = med(res['baseline']['p50'])
    print('sockperf ping-pong across a veth pair, %d interleaved rounds of %d s, medians'
          % (a.rounds, a.seconds))
    print('%-10s %10s %10s %12s %s' % ('library on', 'p50 us', 'p99 us', 'p50 - base',
                                        ' dig ms' if a.dns else ''))
    for v in VARIANTS:
        p50 = med(res[v]['p50'])
        print('%-10s %10.1f %10.1f %+12.1f %s' % (
            {'baseline': 'neither', 'client': 'client', 'both': 'both'}[v], p50,
            med(res[v]['p99']), p50 - base,
            (' %6.1f' % med(res[v]['dns'])) if a.dns else ''))


if __name__ == '__main__':
    try:
        main()
    except BenchError as e:
        sys.exit('pingpong_bench: %s' % e)
