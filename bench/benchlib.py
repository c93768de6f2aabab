"""Shared pieces of the udpweave benchmarks: namespaces and veth pair,
process helpers, small statistics.  Used by run_bench.py (the driver) and
the section modules blast_bench.py, iperf_bench.py, streams_bench.py."""
import json
import os
import signal
import statistics
import subprocess
import sys
import secrets
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N_ADDRS = 10
TX_ADDR = '10.203.0.1'
RX_BASE = '10.203.1.1'
LO_BASE = '127.0.1.1'
TX_QDISC_LIMIT = 50000


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(*args, check=True):
    """Run a setup command; raise with its stderr on failure."""
    r = subprocess.run(list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise BenchError('%s: %s' % (' '.join(args), r.stderr.strip()))
    return r.stdout


def clean_env():
    """The environment children inherit: no preload, no udpweave config."""
    env = {k: v for k, v in os.environ.items()
           if k != 'LD_PRELOAD' and not k.startswith('UDPWEAVE_')}
    env['LC_ALL'] = 'C'
    return env


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec='%.2f', none='–'):
    return none if x is None else spec % x


def rotated(order, rnd):
    """The run order of round rnd: rotated so no variant always runs first."""
    k = rnd % len(order) if order else 0
    return order[k:] + order[:k]


def kill_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def stop_process(p, timeout=3.0):
    """Wait for p; TERM then KILL its process group if it does not end."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p, signal.SIGTERM)
        try:
            return p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p, signal.SIGKILL)
            return p.communicate()


def find_napi_thread(dev):
    prefix = ('napi/' + dev)[:15]
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/comm' % pid) as f:
                if f.read().startswith(prefix):
                    return int(pid)
        except OSError:
            pass
    return None


def thread_cpu_ns(pid):
    try:
        with open('/proc/%d/schedstat' % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError):
        return 0


def descendants(root):
    """root and every process below it (by scanning /proc for ppids)."""
    children = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tasks_cpu_ns(pids):
    """{(pid, tid): ns on CPU} for every thread of pids (schedstat: ns,
    unlike the tick-based utime/stime of /proc/PID/stat)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir('/proc/%d/task' % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                    out[(pid, int(tid))] = int(f.read().split()[0])
            except (OSError, ValueError):
                pass
    return out


def udp_in_datagrams(pid):
    """Udp InDatagrams of process pid's network namespace."""
    try:
        with open('/proc/%d/net/snmp' % pid) as f:
            lines = [l.split() for l in f if l.startswith('Udp:')]
        return int(lines[1][lines[0].index('InDatagrams')])
    except (OSError, ValueError, IndexError):
        return None


def settle_and_stop(sink, quiet_s=0.25, limit_s=15.0):
    """Once the sender is done: wait until the receiving namespace has
    taken no datagram for quiet_s (what is still in the qdisc or the napi
    ring has arrived), then SIGTERM the sink, which drains its sockets and
    reports.  A sink that stops on its own idle timer instead could stop
    during a scheduling stall of the sender on a noisy machine."""
    last, since, t_end = None, time.monotonic(), time.monotonic() + limit_s
    while sink.poll() is None and time.monotonic() < t_end:
        n = udp_in_datagrams(sink.pid)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.05)
    if sink.poll() is None:
        sink.send_signal(signal.SIGTERM)


STRACE_CALLS = ('sendto', 'sendmsg', 'sendmmsg', 'write', 'writev')


def strace_prefix(out):
    """strace -C: every call of every thread with its fd decoded (-yy), and
    the -c summary at the end; parse with parse_strace()."""
    return ['strace', '-f', '-C', '-yy', '-qq', '-s', '0', '-o', out]


def parse_strace(path):
    """{'udp': {call: n}, 'other': {call: n}, 'summary': {call: n, 'total': n}}:
    send and write calls split by what their fd is (only UDP sockets count
    as sends; LTTng-UST, for one, talks to its session daemon with sendmsg
    on a Unix socket), and the per-call totals of the summary."""
    import re
    call = re.compile(r'^\s*(?:\d+\s+)?(%s)\((\d+)<([^>]*)>' % '|'.join(STRACE_CALLS))
    summ = re.compile(r'^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$')
    out = {'udp': {}, 'other': {}, 'summary': {}}
    with open(path, errors='replace') as f:
        for line in f:
            m = call.match(line)
            if m:
                kind = 'udp' if m.group(3).startswith('UDP') else 'other'
                out[kind][m.group(1)] = out[kind].get(m.group(1), 0) + 1
                continue
            m = summ.match(line)
            if m:
                out['summary'][m.group(2)] = int(m.group(1))
    return out


def rx_addresses(base, n=N_ADDRS):
    a, b, c, d = (int(x) for x in base.split('.'))
    return ['%d.%d.%d.%d' % (a, b, c, d + i) for i in range(n)]


def udp_snmp(ns):
    snmp = sh('ip', 'netns', 'exec', ns, 'cat', '/proc/net/snmp')
    lines = [l.split() for l in snmp.splitlines() if l.startswith('Udp:')]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


# --------------------------------------------------------------------------
# Network namespaces

class Topology:
    """Namespaces, veth pair and addresses; torn down by close()."""

    def __init__(self, pin):
        sfx = secrets.token_hex(2)
        self.tx = 'uwb-tx-' + sfx
        self.rx = 'uwb-rx-' + sfx
        self.lo = 'uwb-lo-' + sfx
        self.txdev = 'uwt' + sfx
        self.rxdev = 'uwr' + sfx
        self.pin = pin
        self.created = []
        self.napi_pid = None
        self.rx_mac = self.tx_mac = None

    def close(self):
        for ns in reversed(self.created):
            subprocess.run(['ip', 'netns', 'del', ns],
                           stderr=subprocess.DEVNULL)
        self.created = []

    def add_ns(self, ns):
        sh('ip', 'netns', 'add', ns)
        self.created.append(ns)
        sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')

    def setup_veth(self):
        self.add_ns(self.tx)
        self.add_ns(self.rx)
        sh('ip', 'link', 'add', self.txdev, 'netns', self.tx, 'type', 'veth',
           'peer', 'name', self.rxdev, 'netns', self.rx)
        sh('ip', '-n', self.tx, 'addr', 'add', TX_ADDR + '/16',
           'dev', self.txdev)
        for a in rx_addresses(RX_BASE):
            sh('ip', '-n', self.rx, 'addr', 'add', a + '/16', 'dev', self.rxdev)
        sh('ip', '-n', self.tx, 'link', 'set', self.txdev, 'up')
        sh('ip', '-n', self.rx, 'link', 'set', self.rxdev, 'up')
        # Permanent neighbour entries: no ARP resolution (and no datagrams
        # parked on an unresolved neighbour) inside a measured run.
        self.rx_mac = json.loads(sh('ip', '-j', '-n', self.rx, 'link', 'show',
                                    self.rxdev))[0]['address']
        self.tx_mac = json.loads(sh('ip', '-j', '-n', self.tx, 'link', 'show',
                                    self.txdev))[0]['address']
        for a in rx_addresses(RX_BASE):
            sh('ip', '-n', self.tx, 'neigh', 'replace', a, 'lladdr', self.rx_mac,
               'dev', self.txdev, 'nud', 'permanent')
        sh('ip', '-n', self.rx, 'neigh', 'replace', TX_ADDR, 'lladdr', self.tx_mac,
           'dev', self.rxdev, 'nud', 'permanent')
        sh('ip', 'netns', 'exec', self.tx, 'ethtool', '-K', self.txdev,
           'tso', 'off')
        # A qdisc on the sending veth: when the peer's NAPI ring (256 skbs)
        # is full, veth (>= 6.16) stops the queue and the qdisc holds the
        # skb, so socket send buffers push back on the sender instead of
        # the ring dropping (which it does with the default noqueue once
        # many sockets -- connected-send -- have skbs in flight).
        sh('tc', '-n', self.tx, 'qdisc', 'replace', 'dev', self.txdev,
           'root', 'pfifo', 'limit', str(TX_QDISC_LIMIT))

    def set_rx_napi(self, on):
        """Threaded NAPI on the receiving veth (on) or the default inline
        netif_rx path that runs in the sender's softirq context (off)."""
        threaded = ('ip', 'netns', 'exec', self.rx, 'sh', '-c',
                    'echo %d > /sys/class/net/%s/threaded' % (int(on), self.rxdev))
        if not on:  # fails (EIO) when NAPI is not enabled: nothing to undo
            sh(*threaded, check=False)
        sh('ip', 'netns', 'exec', self.rx, 'ethtool', '-K', self.rxdev,
           'gro', 'on' if on else 'off')
        if on:
            sh(*threaded)
        self.napi_pid = find_napi_thread(self.rxdev) if on else None
        if on and not self.napi_pid:
            raise BenchError('threaded NAPI kthread for %s not found'
                             % self.rxdev)
        if self.napi_pid and self.pin:
            sh('taskset', '-pc', str(self.pin[1]), str(self.napi_pid))

    def setup_lo(self):
        self.add_ns(self.lo)

    def pin_prefix(self, which):
        """taskset prefix for the sender (0) or the receiver side (1)."""
        if not self.pin:
            return []
        return ['taskset', '-c', str(self.pin[which])]

    def rx_stats(self, ns, dev=None):
        """UDP receive errors of ns, and tx drops of dev (veth)."""
        out = {}
        udp = udp_snmp(ns)
        for k in ('InDatagrams', 'RcvbufErrors', 'InErrors', 'NoPorts'):
            out['udp_' + k] = udp.get(k, 0)
        if dev:
            link = json.loads(sh('ip', '-j', '-s', '-n', self.tx, 'link',
                                 'show', dev))[0]['stats64']
            out['veth_tx_dropped'] = link['tx']['dropped']
            q = json.loads(sh('tc', '-j', '-s', '-n', self.tx, 'qdisc', 'show',
                              'dev', dev) or '[]')
            out['qdisc_drops'] = sum(x.get('drops', 0) for x in q)
        return out


def build_preload(build, name):
    """Compile bench/so/NAME.c into BUILD/bench/libNAME.so when missing or
    older than its source (the Makefile builds bench/*.c as programs only)."""
    src = os.path.join(HERE, 'so', name + '.c')
    out = os.path.join(build, 'bench', 'lib%s.so' % name)
    if (not os.path.exists(out) or
            os.path.getmtime(out) < os.path.getmtime(src)):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        r = subprocess.run(['gcc', '-std=gnu11', '-O2', '-g', '-Wall', '-Wextra',
                            '-Werror', '-fPIC', '-shared', '-pthread', src,
                            '-o', out, '-ldl'], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError('building %s: %s' % (out, r.stderr.strip()))
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
