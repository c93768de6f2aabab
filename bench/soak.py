#!/usr/bin/python3
"""soak.py -- the udpweave soak: build/bench/soak under LD_PRELOAD for a long
randomized run (16 threads, 500 sockets, closes, reopens, dup2, close_range,
closefrom, raw closes whose numbers go to files and TCP sockets, signals
with default and custom handlers, EFAULT calls, forked children killed by
SIGTERM), judged from outside.

  make bench-soak SOAK_SECONDS=600
  /usr/bin/python3 bench/soak.py --build build --seconds 60 [--seed N]

Steps:
  1. as root, net.core.rmem_max is raised (and put back at the end);
  2. a receiver, this script with --receiver and WITHOUT LD_PRELOAD, binds
     127.0.0.1:BASE..BASE+499 (one port per slot), a port for the forked
     children, one for datagrams sent from signal handlers, and a TCP
     listener; it checks every datagram's header (magic, check word,
     length), its port (that of its slot), its source port (that of the
     socket it was written to), and order within a slot's generation;
     every byte that reaches the TCP listener is a stray one;
  3. the sender, with LD_PRELOAD and UDPWEAVE_STATS, prints a heartbeat
     every second: one progress counter per thread. Watchdog: no heartbeat,
     or a thread whose counter has not moved, for 15 s is a hang: the
     threads' wchan and kernel stacks and a gdb backtrace are saved, the
     sender is killed, the run fails;
  4. VmRSS of the sender every 10 s;
  5. the figures, and the verdict: exit 1 if a datagram was misdirected
     (wrong port or wrong socket), a stray byte reached a file or the TCP
     stream, the sender crashed or hung, RSS at the end exceeds RSS at 60 s
     x 1.2 + 8 MB (runs under 120 s: RSS at a quarter of the run), or a
     child did not die of SIGTERM. --out FILE also writes them as Markdown.
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HDR = struct.Struct('<IHHHHIII')
MAGIC = 0x4B414F53
MAGIC_BYTES = struct.pack('<I', MAGIC)
KIND_SLOT, KIND_CHILD, KIND_HANDLER = 0, 1, 2
HANG_S = 15
RMEM = 16 << 20


def hdr_check(kind, slot, sport, length, gen, seq):
    return (MAGIC ^ (kind << 16) ^ slot ^ (sport << 16) ^ length ^
            ((gen * 0x9E3779B1) & 0xffffffff) ^ ((seq * 0x85EBCA77) & 0xffffffff)) & 0xffffffff


# ---- receiver (no LD_PRELOAD) ----------------------------------------------

class Receiver:
    def __init__(self, a):
        self.a = a
        self.c = dict.fromkeys((
            'received', 'received_slot', 'received_child', 'received_handler',
            'wrong_port', 'wrong_socket', 'bad_magic', 'bad_check', 'bad_length',
            'bad_payload', 'short', 'out_of_order', 'late_old_generation',
            'child_out_of_order', 'tcp_connections', 'tcp_bytes', 'tcp_magic'), 0)
        self.samples = []
        self.misdirected = []
        self.last_gen = [-1] * a.slots
        self.last_seq = [-1] * a.slots
        self.child_last = {}
        self.ep = select.epoll()
        self.socks = {}

    def udp(self, port, index):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RMEM)
        s.bind(('127.0.0.1', port))
        s.setblocking(False)
        self.socks[s.fileno()] = (s, index)
        self.ep.register(s.fileno(), select.EPOLLIN)

    def open(self):
        a = self.a
        for i in range(a.slots):
            self.udp(a.base_port + i, i)
        self.udp(a.child_port, 'child')
        self.udp(a.sig_port, 'handler')
        self.lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsn.bind(('127.0.0.1', a.tcp_port))
        self.lsn.listen(4096)
        self.lsn.setblocking(False)
        self.socks[self.lsn.fileno()] = (self.lsn, 'listen')
        self.ep.register(self.lsn.fileno(), select.EPOLLIN)
        self.ep.register(sys.stdin.fileno(), select.EPOLLIN | select.EPOLLHUP)

    def sample(self, what, detail):
        if len(self.samples) < 20:
            self.samples.append('%s: %s' % (what, detail))

    def datagram(self, index, data, src):
        c = self.c
        c['received'] += 1
        if len(data) < HDR.size:
            c['short'] += 1
            return
        magic, kind, slot, sport, length, gen, seq, chk = HDR.unpack_from(data)
        if magic != MAGIC:
            c['bad_magic'] += 1
            return
        if chk != hdr_check(kind, slot, sport, length, gen, seq):
            c['bad_check'] += 1
            return
        if length != len(data):
            c['bad_length'] += 1
            self.sample('length', 'header %d, datagram %d' % (length, len(data)))
        elif length > HDR.size and data[-1] != seq & 0xff:
            c['bad_payload'] += 1
        if kind == KIND_SLOT:
            c['received_slot'] += 1
            if index != slot:
                c['wrong_port'] += 1
                self.sample('wrong port', 'slot %d gen %d seq %d arrived at the port of %s'
                            % (slot, gen, seq, index))
            if src[1] != sport:
                c['wrong_socket'] += 1
                self.sample('wrong socket', 'slot %d gen %d seq %d from port %d, sent on %d'
                            % (slot, gen, seq, src[1], sport))
            if (index != slot or src[1] != sport) and len(self.misdirected) < 50:
                self.misdirected.append((slot, gen, seq, str(index), src[1], sport))
            if slot >= self.a.slots:
                return
            g = self.last_gen[slot]
            if gen == g:
                if seq <= self.last_seq[slot]:
                    c['out_of_order'] += 1
                    self.sample('order', 'slot %d gen %d seq %d after %d'
                                % (slot, gen, seq, self.last_seq[slot]))
                else:
                    self.last_seq[slot] = seq
            elif gen > g:
                self.last_gen[slot], self.last_seq[slot] = gen, seq
            else:
                c['late_old_generation'] += 1
        elif kind == KIND_CHILD:
            c['received_child'] += 1
            if index != 'child':
                c['wrong_port'] += 1
                self.sample('wrong port', 'child %d seq %d at %s' % (gen, seq, index))
            if src[1] != sport:
                c['wrong_socket'] += 1
                self.sample('wrong socket', 'child %d seq %d from %d, sent on %d'
                            % (gen, seq, src[1], sport))
            if self.child_last.get(gen, -1) >= seq:
                c['child_out_of_order'] += 1
            self.child_last[gen] = seq
        elif kind == KIND_HANDLER:
            c['received_handler'] += 1
            if index != 'handler':
                c['wrong_port'] += 1
                self.sample('wrong port', 'handler seq %d at %s' % (seq, index))

    def readable(self, fd):
        s, index = self.socks[fd]
        if index == 'listen':
            while True:
                try:
                    conn, _ = s.accept()
                except (BlockingIOError, InterruptedError):
                    return
                conn.setblocking(False)
                self.socks[conn.fileno()] = (conn, 'tcp')
                self.ep.register(conn.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                self.c['tcp_connections'] += 1
        if index == 'tcp':
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b''
            if data:
                self.c['tcp_bytes'] += len(data)
                self.c['tcp_magic'] += data.count(MAGIC_BYTES)
                self.sample('tcp', '%d stray bytes' % len(data))
            else:
                self.ep.unregister(fd)
                del self.socks[fd]
                s.close()
            return
        for _ in range(256):
            try:
                data, src = s.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            self.datagram(index, data, src)

    def run(self):
        self.open()
        print('ready', flush=True)
        stdin_fd, quiet_since = sys.stdin.fileno(), None
        while True:
            events = self.ep.poll(0.2)
            for fd, _ in events:
                if fd == stdin_fd:
                    if not os.read(stdin_fd, 4096):
                        self.ep.unregister(stdin_fd)
                        quiet_since = time.monotonic()
                    continue
                self.readable(fd)
            if quiet_since is not None:
                if any(fd != stdin_fd for fd, _ in events):
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 1.5:
                    break
        out = dict(self.c, children_seen=len(self.child_last), samples=self.samples,
                   misdirected=self.misdirected)
        print(json.dumps(out), flush=True)


# ---- the run ---------------------------------------------------------------

def read_snmp_udp():
    with open('/proc/net/snmp') as f:
        rows = [l.split() for l in f if l.startswith('Udp:')]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def rss_kb(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def set_rmem_max(value):
    path = '/proc/sys/net/core/rmem_max'
    try:
        with open(path) as f:
            old = int(f.read())
        if value is None or old >= value:
            return old
        with open(path, 'w') as f:
            f.write(str(value))
        return old
    except OSError:
        return None


def dump_hang(pid, path, why):
    lines = ['hang: ' + why]
    for tid in sorted(os.listdir('/proc/%d/task' % pid), key=int):
        base = '/proc/%d/task/%s/' % (pid, tid)
        info = {}
        for name in ('comm', 'wchan', 'stack'):
            try:
                with open(base + name) as f:
                    info[name] = f.read().strip()
            except OSError as e:
                info[name] = '(%s)' % e.strerror
        lines.append('task %s %s wchan=%s' % (tid, info['comm'], info['wchan']))
        lines += ['    ' + l for l in info['stack'].splitlines()]
    try:
        bt = subprocess.run(['gdb', '-p', str(pid), '-batch', '-ex', 'thread apply all bt'],
                            capture_output=True, text=True, timeout=90).stdout
        lines += ['', 'gdb thread apply all bt:', bt]
    except (OSError, subprocess.TimeoutExpired) as e:
        lines.append('gdb: %s' % e)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return lines


class Sender:
    """The soak process: its heartbeat, its result line."""

    def __init__(self, proc):
        self.proc = proc
        self.result = None
        self.last_hb = time.monotonic()
        self.counters = {}
        self.hb_elapsed = 0.0
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        for line in self.proc.stdout:
            if line.startswith('hb '):
                now = time.monotonic()
                f = line.split()
                self.hb_elapsed = float(f[1])
                self.last_hb = now
                for i, v in enumerate(f[2:]):
                    old = self.counters.get(i)
                    if v == 'd':
                        self.counters[i] = ('d', now)
                    elif old is None or old[0] != v:
                        self.counters[i] = (v, now)
            elif line.startswith('result '):
                self.result = json.loads(line[7:])

    def stalled(self, nthreads):
        now = time.monotonic()
        if now - self.last_hb > HANG_S:
            return 'no heartbeat for %.0f s' % (now - self.last_hb)
        names = ['worker %d' % i for i in range(nthreads)] + ['signaller', 'toggler', 'main']
        for i, (v, t) in self.counters.items():
            if v != 'd' and now - t > HANG_S:
                return '%s made no progress for %.0f s' % (names[i] if i < len(names) else i, now - t)
        return None


def load_stats(workdir, pid):
    parent, children = None, []
    for name in os.listdir(workdir):
        if not (name.startswith('stats-') and name.endswith('.json')):
            continue
        try:
            with open(os.path.join(workdir, name)) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue
        if name == 'stats-%d.json' % pid:
            parent = st
        else:
            children.append(st)
    return parent, children


LIB_KEYS = ('datagrams_dropped', 'dropped_sock_gone', 'held_datagrams', 'held_dropped',
            'sync_calls', 'datagrams_in', 'datagrams_out', 'syscalls')


def how_ended(path, misdirected):
    """For each misdirected datagram's (slot, generation): how the sender
    ended that generation (bench/soak --history)."""
    want = {(m[0], m[1]) for m in misdirected}
    ended = {}
    try:
        with open(path) as f:
            for line in f:
                slot, gen, how = line.rstrip('\n').split(' ', 2)
                if (int(slot), int(gen)) in want:
                    ended[(int(slot), int(gen))] = how
    except OSError:
        pass
    return ['slot %d gen %d seq %d (sent on port %d) arrived at %s from port %d; '
            'the generation ended by: %s' % (m[0], m[1], m[2], m[5], m[3], m[4],
                                            ended.get((m[0], m[1]), '?'))
            for m in misdirected]


def rss_at(samples, t):
    return min(samples, key=lambda s: abs(s[0] - t)) if samples else (0, 0)


def run(a):
    build = os.path.abspath(a.build)
    soak, lib = os.path.join(build, 'bench', 'soak'), os.path.join(build, 'libudpweave.so')
    for p in (soak, lib):
        if not os.path.exists(p):
            sys.exit('soak.py: %s missing: make -C %s all' % (p, ROOT))
    workdir = tempfile.mkdtemp(prefix='uw-soak-')
    files = os.path.join(workdir, 'files')
    os.mkdir(files)
    old_rmem = set_rmem_max(RMEM)
    snmp0 = read_snmp_udp()
    ports = dict(base_port=a.base_port, child_port=a.base_port + a.slots,
                 sig_port=a.base_port + a.slots + 1, tcp_port=a.base_port + a.slots + 2)
    plain = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
    rx = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--receiver',
                           '--slots', str(a.slots)] +
                          sum((['--' + k.replace('_', '-'), str(v)] for k, v in ports.items()), []),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=plain)
    if rx.stdout.readline().strip() != 'ready':
        sys.exit('soak.py: the receiver did not start (ports %d..%d in use?)'
                 % (a.base_port, ports['tcp_port']))
    cmd = [soak, '--seconds', str(a.seconds), '--seed', str(a.seed), '--threads', str(a.threads),
           '--slots', str(a.slots), '--rate', str(a.rate), '--tmpdir', files,
           '--fork-ms', str(a.fork_ms)] + \
        sum((['--' + k.replace('_', '-'), str(v)] for k, v in ports.items()), []) + \
        (['--handler-send'] if a.handler_send else [])
    env = dict(plain, UDPWEAVE_STATS=os.path.join(workdir, 'stats-%p.json'))
    if not a.no_preload:
        env['LD_PRELOAD'] = lib
    for kv in a.env:
        k, _, v = kv.partition('=')
        env[k] = v
    history = os.path.join(workdir, 'history.txt')
    cmd += ['--history', history, '--ops', a.ops]
    err_path = os.path.join(workdir, 'soak.stderr')
    t0 = time.monotonic()
    with open(err_path, 'w') as err:
        tx = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    snd = Sender(tx)
    rss, hang, next_rss = [], None, t0 + 1.0
    while tx.poll() is None:
        time.sleep(0.5)
        now = time.monotonic()
        if now >= next_rss and snd.hb_elapsed <= a.seconds:
            kb = rss_kb(tx.pid)
            if kb is not None:
                rss.append((round(now - t0), kb))
            next_rss = t0 + 10.0 * (len(rss) if rss else 1)
        why = snd.stalled(a.threads)
        if why and tx.poll() is None:
            hang = why
            print('soak.py: %s: dumping the threads, killing %d' % (why, tx.pid), flush=True)
            lines = dump_hang(tx.pid, os.path.join(workdir, 'hang.txt'), why)
            print('\n'.join(lines[:400]), flush=True)
            tx.kill()
            break
    tx.wait()
    snd.thread.join(5)
    rx.stdin.close()
    try:
        rxr = json.loads(rx.stdout.readline() or '{}')
        rx.wait(30)
    except (ValueError, subprocess.TimeoutExpired):
        rx.kill()
        rxr = {}
    snmp1 = read_snmp_udp()
    if old_rmem is not None:
        set_rmem_max(None)
        try:
            with open('/proc/sys/net/core/rmem_max', 'w') as f:
                f.write(str(old_rmem))
        except OSError:
            pass
    parent, children = load_stats(workdir, tx.pid)
    rxr['how_ended'] = how_ended(history, rxr.get('misdirected', []))
    with open(err_path) as f:
        stderr_tail = f.read().splitlines()[-30:]
    return report(a, cmd, tx.returncode, hang, snd.result or {}, rxr, rss, parent, children,
                  {k: snmp1.get(k, 0) - snmp0.get(k, 0) for k in snmp1}, stderr_tail, workdir)


def report(a, cmd, rc, hang, r, x, rss, parent, children, snmp, stderr_tail, workdir):
    fails = []
    L = []
    g = lambda d, k: (d or {}).get(k, 0)
    crash = None
    if hang is None and rc != 0:
        crash = ('signal %s' % signal.Signals(-rc).name) if rc < 0 else 'exit status %d' % rc
    sent = g(r, 'sent')
    child_sent = g(r, 'child_sent')
    misdirected = g(x, 'wrong_port') + g(x, 'wrong_socket')
    stray_file, stray_tcp = g(r, 'stray_file_bytes'), g(x, 'tcp_bytes')
    lib_drop = g(parent, 'datagrams_dropped')
    kdrop = snmp.get('RcvbufErrors', 0)
    ref_t = 60 if a.seconds >= 120 else max(10, a.seconds // 4)
    run_rss = [s for s in rss if s[0] <= a.seconds] or rss
    start, ref, mid, end = (run_rss[0] if run_rss else (0, 0)), rss_at(run_rss, ref_t), \
        rss_at(run_rss, a.seconds / 2), (run_rss[-1] if run_rss else (0, 0))
    rss_limit = ref[1] * 1.2 + 8 * 1024

    L.append('udpweave soak: %d s, %d threads, %d slots, seed %d, rate %d datagrams/s, ops %s%s%s%s'
             % (a.seconds, a.threads, a.slots, a.seed, a.rate, a.ops,
                ', handler sends' if a.handler_send else '',
                ', WITHOUT the library' if a.no_preload else '',
                (', ' + ' '.join(a.env)) if a.env else ''))
    L.append('')
    row = lambda k, v: L.append('  %-52s %s' % (k, v))
    row('datagrams the sender was told were sent', '%d (sendto %d, send %d, write %d, writev %d, '
        'sendmsg %d, sendmmsg %d; %d through a dup)' % (
            sent, g(r, 'sent_sendto'), g(r, 'sent_send'), g(r, 'sent_write'), g(r, 'sent_writev'),
            g(r, 'sent_sendmsg'), g(r, 'sent_sendmmsg'), g(r, 'sent_via_dup')))
    row('send calls, failed calls (errno)', '%d, %d %s' % (
        g(r, 'send_calls'), g(r, 'send_errors'), json.dumps(g(r, 'send_errnos') or {})))
    row('datagrams received (slots)', '%d' % g(x, 'received_slot'))
    row('  not received: sent - received', '%d' % (sent - g(x, 'received_slot')))
    row('  library dropped (datagrams_dropped)', '%d' % lib_drop)
    row('  kernel receive-buffer drops (Udp RcvbufErrors)', '%d' % kdrop)
    row('misdirected: wrong port / wrong socket', '%d / %d' % (g(x, 'wrong_port'), g(x, 'wrong_socket')))
    row('  new sockets found bound already (written to by another)', '%d' % g(r, 'bind_already_bound'))
    row('late from an earlier generation (fine)', '%d' % g(x, 'late_old_generation'))
    row('out of order within a generation', '%d' % g(x, 'out_of_order'))
    row('bad length / payload / check word / magic', '%d / %d / %d / %d' % (
        g(x, 'bad_length'), g(x, 'bad_payload'), g(x, 'bad_check'), g(x, 'bad_magic')))
    row('stray bytes: files / TCP stream', '%d / %d (magic %d / %d)' % (
        stray_file, stray_tcp, g(r, 'stray_file_magic'), g(x, 'tcp_magic')))
    row('raw closes -> file / TCP (same number again)', '%d / %d (%d); TCP connections seen %d' % (
        g(r, 'raw_close_file'), g(r, 'raw_close_tcp'), g(r, 'fd_number_reused'),
        g(x, 'tcp_connections')))
    row('reopens, dup2/dup3, dup sends (copy kept)', '%d, %d, %d (%d)' % (
        g(r, 'reopens'), g(r, 'dup2s'), g(r, 'dup_sends'), g(r, 'dup_kept')))
    row('close_range calls (slots; skipped), closefrom (slots)', '%d (%d; %d), %d (%d)' % (
        g(r, 'close_ranges'), g(r, 'close_range_slots'), g(r, 'close_range_skipped'),
        g(r, 'closefroms'), g(r, 'closefrom_slots')))
    row('EFAULT calls: expected results / got / mismatches', '%d / %d / %d' % (
        g(r, 'efault_tests'), g(r, 'efault_ok'), g(r, 'efault_mismatch')))
    row('forked children / died of SIGTERM / otherwise / hung', '%d / %d / %d / %d' % (
        g(r, 'forks'), g(r, 'child_sigterm'), g(r, 'child_other_death'), g(r, 'child_hung')))
    row('  children\'s datagrams sent / received', '%d / %d' % (child_sent, g(x, 'received_child')))
    sc = g(r, 'signals_caught') or {}
    row('signals sent / caught USR1 USR2 WINCH / dispositions set', '%d / %d %d %d / %d' % (
        g(r, 'signals_sent'), sc.get('SIGUSR1', 0), sc.get('SIGUSR2', 0), sc.get('SIGWINCH', 0),
        g(r, 'disposition_changes')))
    if a.handler_send:
        row('datagrams sent from handlers / received', '%d / %d' % (
            g(r, 'handler_sent'), g(x, 'received_handler')))
    row('crashes', '1 (%s)' % crash if crash else '0')
    row('hangs', '1 (%s)' % hang if hang else '0')
    row('sender VmRSS kB: start / at %d s / middle / end' % ref[0], '%d / %d / %d / %d '
        '(limit %d; samples at t=%s s)' % (start[1], ref[1], mid[1], end[1], rss_limit,
                                           ','.join(str(s[0]) for s in run_rss)))
    row('library stats (parent)', ', '.join('%s %d' % (k, g(parent, k)) for k in LIB_KEYS)
        if parent else 'none written')
    row('library stats (%d children, summed)' % len(children),
        ', '.join('%s %d' % (k, sum(g(c, k) for c in children)) for k in LIB_KEYS[:5]))
    if x.get('how_ended'):
        L.append('')
        L.append('  misdirected datagrams (first %d):' % len(x['how_ended']))
        L += ['    ' + m for m in x['how_ended'][:20]]
    if x.get('samples'):
        L.append('')
        L.append('  receiver samples: ' + '; '.join(x['samples'][:10]))

    if not r:
        fails.append('no result line from the sender')
    if misdirected:
        fails.append('%d misdirected datagrams' % misdirected)
    if g(r, 'bind_already_bound'):
        fails.append('%d new sockets written to by another before the program bound them'
                     % g(r, 'bind_already_bound'))
    if stray_file or stray_tcp:
        fails.append('%d stray bytes' % (stray_file + stray_tcp))
    if crash:
        fails.append('crash: ' + crash)
    if hang:
        fails.append('hang: ' + hang)
    if run_rss and end[1] > rss_limit:
        fails.append('RSS grew: %d kB at the end > %d kB' % (end[1], rss_limit))
    if g(r, 'child_other_death') or g(r, 'child_hung'):
        fails.append('%d children did not die of SIGTERM' % (
            g(r, 'child_other_death') + g(r, 'child_hung')))
    L.append('')
    L.append('verdict: ' + ('PASS' if not fails else 'FAIL: ' + '; '.join(fails)))
    if stderr_tail:
        L.append('')
        L.append('sender stderr (last lines):')
        L += ['  ' + l for l in stderr_tail]
    L.append('work directory: ' + workdir)
    text = '\n'.join(L)
    print(text, flush=True)
    if a.out:
        with open(a.out, 'w') as f:
            f.write('# udpweave soak\n\n```\n%s\n```\n\nfigures:\n\n```\n%s\n```\n'
                    % (a.command or ' '.join(['/usr/bin/python3', 'bench/soak.py'] + sys.argv[1:]),
                       text))
    return 0 if not fails else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--receiver', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--build', default=os.path.join(ROOT, 'build'))
    p.add_argument('--seconds', type=int, default=600)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--threads', type=int, default=16)
    p.add_argument('--slots', type=int, default=500)
    p.add_argument('--rate', type=int, default=40000,
                   help='datagrams per second over all threads (0: no limit)')
    p.add_argument('--base-port', type=int, default=21000)
    p.add_argument('--child-port', type=int)
    p.add_argument('--sig-port', type=int)
    p.add_argument('--tcp-port', type=int)
    p.add_argument('--fork-ms', type=int, default=500, help='a fork at most this often')
    p.add_argument('--ops', default='all',
                   help='what the workers do besides sending (bench/soak --ops): all, or a list '
                   'of reopen,dup2,dup-send,close-range,raw-close,fault,fork,closefrom,signals')
    p.add_argument('--handler-send', action='store_true',
                   help='signal handlers also send a datagram (sendto from a handler)')
    p.add_argument('--env', action='append', default=[], metavar='K=V',
                   help='extra environment for the sender (UDPWEAVE_SYNC=0, ...)')
    p.add_argument('--no-preload', action='store_true',
                   help='run the sender without the library (a control run of the soak itself)')
    p.add_argument('--out', help='also write the figures to this Markdown file')
    p.add_argument('--command', help='the command line to record in --out')
    a = p.parse_args()
    if a.receiver:
        Receiver(a).run()
        return 0
    return run(a)


if __name__ == '__main__':
    sys.exit(main())
