#!/usr/bin/python3
"""Builds of the library side by side on the loopback micro-benchmark.

Runs build/bench/sendto_cost (300000 sendto() calls of 1316 bytes to
127.0.0.1) under each library given as NAME=PATH, NAME=none for no preload,
one run of each per round, order rotated round by round, and prints per
library the median, min and max over the rounds of

  fast90_mean_ns    the mean of the fastest 90 % of the calls: what a
                    sendto() costs when it only queues (stable)
  cpu_ns_per_dgram  the process's CPU time per datagram, all threads,
                    flushes and the kernel's sends included (noisy)

and the median of the per-round ratios to the first library (the runs of
a round are neighbours in time: the machine's drift hits them alike).

  bench/sendto_cost_bench.py --rounds 31 before=/tmp/before.so \\
      main=/tmp/main.so branch=build/libudpweave.so
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = ('fast90_mean_ns', 'cpu_ns_per_dgram')


def run(tool, so, args):
    env = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
    if so != 'none':
        env.update(LD_PRELOAD=so, UDPWEAVE_STATS='/dev/null')
    cmd = [tool, '--count', str(args.count), '--size', str(args.size)]
    if args.cpu is not None:
        cmd = ['taskset', '-c', str(args.cpu)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--build', default=os.path.join(HERE, '..', 'build'))
    ap.add_argument('--rounds', type=int, default=15)
    ap.add_argument('--count', type=int, default=300000)
    ap.add_argument('--size', type=int, default=1316)
    ap.add_argument('--cpu', type=int, default=None, help='pin to this CPU (taskset)')
    ap.add_argument('--json', help='write every run here')
    ap.add_argument('libs', nargs='+', metavar='NAME=SO')
    args = ap.parse_args()
    libs = [l.split('=', 1) for l in args.libs]
    if any(len(l) != 2 for l in libs):
        ap.error('libraries as NAME=PATH')
    tool = os.path.join(args.build, 'bench', 'sendto_cost')
    runs = {name: [] for name, _ in libs}
    for r in range(args.rounds):
        k = r % len(libs)
        for name, so in libs[k:] + libs[:k]:
            runs[name].append(run(tool, so, args))
        print('round %d/%d' % (r + 1, args.rounds), file=sys.stderr)
    first = libs[0][0]
    print('%d rounds x %d sendto() of %d B to 127.0.0.1, order rotated' %
          (args.rounds, args.count, args.size))
    for key in KEYS:
        print('\n| %s | median | min | max | per-round ratio to %s |' % (key, first))
        print('|---|---|---|---|---|')
        base = [x[key] for x in runs[first]]
        for name, _ in libs:
            v = [x[key] for x in runs[name]]
            ratio = statistics.median(a / b for a, b in zip(v, base))
            print('| %s | %.1f | %.1f | %.1f | %.3f |' % (name, statistics.median(v), min(v),
                                                         max(v), ratio))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'args': vars(args), 'runs': runs}, f, indent=1)


if __name__ == '__main__':
    main()
