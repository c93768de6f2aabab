#!/usr/bin/python3
"""MPEG-TS over UDP receiver and checker for scripts/demo.sh.

  ts_receiver.py receive --out FILE [--port P] [--idle S] [--timeout S]
                         [--clients N [--keep K]]
      Binds 127.0.0.1 (port 0 = any free port), prints "ready PORT", writes
      every datagram's payload to FILE and its size to FILE.sizes, stops
      --idle seconds after the last datagram (or at --timeout), prints JSON.
      With --clients N: N sockets on ports PORT..PORT+N-1 (a free block is
      picked when --port is 0), drained from one epoll loop; every socket's
      datagrams and bytes are counted, and the payloads of K of them (the
      first, the last and evenly spaced ones between; default 4) are written
      to FILE.PORT (+ .sizes) for `check`.  The JSON then has per-port
      counts, "kept": the ports written, and the total.

  ts_receiver.py check-clients --reference REF.ts --received FILE --log LOG
      For a --clients receiver (LOG: its stdout): every port got REF's
      datagram count and bytes, and each kept port passes `check`.  Prints
      JSON; exit status 0 when everything matches.

  ts_receiver.py check --reference REF.ts --received FILE
      Compares what arrived with the file that was streamed: datagram count
      and sizes (REF is cut into 1316-byte datagrams), sha256 of the
      concatenated payloads, TS sync byte 0x47 every 188 bytes, continuity
      counter errors.  Prints JSON; exit status 0 when everything matches.
"""
import argparse
import hashlib
import json
import os
import random
import select
import socket
import sys
import time

TS = 188
DGRAM = 7 * TS


def receive(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind(('127.0.0.1', args.port))
    s.settimeout(0.1)
    print('ready %d' % s.getsockname()[1], flush=True)
    count = nbytes = 0
    last = None
    t0 = time.monotonic()
    with open(args.out, 'wb') as out, open(args.out + '.sizes', 'w') as sizes:
        while time.monotonic() - t0 < args.timeout:
            try:
                d = s.recv(65536)
            except socket.timeout:
                if last is not None and time.monotonic() - last > args.idle:
                    break
                continue
            last = time.monotonic()
            out.write(d)
            sizes.write('%d\n' % len(d))
            count += 1
            nbytes += len(d)
    print(json.dumps({'received': count, 'bytes': nbytes}), flush=True)


def bind_block(base, n):
    """n UDP sockets on 127.0.0.1 ports base..base+n-1 (base 0: a free
    block at a random place in 20000..59999), non-blocking, big buffers."""
    for _ in range(200):
        b = base or random.randrange(20000, 60000 - n)
        socks = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                try:    # root: past net.core.rmem_max
                    s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                s.bind(('127.0.0.1', b + i))
                s.setblocking(False)
            return b, socks
        except OSError:
            for s in socks:
                s.close()
            if base:
                raise
    raise OSError('no block of %d free ports' % n)


def receive_many(args):
    base, socks = bind_block(args.port, args.clients)
    n = len(socks)
    k = max(1, min(args.keep, n))
    keep = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
    ep = select.epoll()
    byfd = {}
    counts = [0] * n
    nbytes = [0] * n
    outs = {}
    for i, s in enumerate(socks):
        ep.register(s.fileno(), select.EPOLLIN)
        byfd[s.fileno()] = i
    for i in keep:
        outs[i] = (open('%s.%d' % (args.out, base + i), 'wb'),
                   open('%s.%d.sizes' % (args.out, base + i), 'w'))
    print('ready %d' % base, flush=True)
    buf = bytearray(65536)
    mv = memoryview(buf)
    last = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.timeout:
        ev = ep.poll(0.1)
        if not ev:
            if last is not None and time.monotonic() - last > args.idle:
                break
            continue
        last = time.monotonic()
        for fd, _ in ev:
            i = byfd[fd]
            s = socks[i]
            o = outs.get(i)
            c = b = 0
            while True:
                try:
                    m = s.recv_into(buf)
                except BlockingIOError:
                    break
                c += 1
                b += m
                if o:
                    o[0].write(mv[:m])
                    o[1].write('%d\n' % m)
            counts[i] += c
            nbytes[i] += b
    for f, g in outs.values():
        f.close()
        g.close()
    print(json.dumps({'base_port': base, 'clients': n,
                      'kept': [base + i for i in keep],
                      'received': sum(counts), 'bytes': sum(nbytes),
                      'per_port': {str(base + i): [counts[i], nbytes[i]]
                                   for i in range(n)}}), flush=True)


def continuity_errors(data):
    """Continuity-counter errors per ISO/IEC 13818-1 2.4.3.3."""
    last = {}
    errors = 0
    for off in range(0, len(data) - TS + 1, TS):
        p = data[off:off + TS]
        pid = ((p[1] & 0x1F) << 8) | p[2]
        if pid == 0x1FFF:
            continue
        afc = (p[3] >> 4) & 3
        cc = p[3] & 0x0F
        discontinuity = afc & 2 and p[4] > 0 and p[5] & 0x80
        if pid in last and not discontinuity:
            prev, prev_dup = last[pid]
            if afc & 1:
                if cc == prev and not prev_dup:
                    last[pid] = (cc, True)     # one duplicate allowed
                    continue
                if cc != (prev + 1) & 0x0F:
                    errors += 1
            elif cc != prev:
                errors += 1
        last[pid] = (cc, False)
    return errors


def check(args):
    with open(args.reference, 'rb') as f:
        ref = f.read()
    with open(args.received, 'rb') as f:
        got = f.read()
    with open(args.received + '.sizes') as f:
        sizes = [int(x) for x in f.read().split()]
    want_sizes = [min(DGRAM, len(ref) - o) for o in range(0, len(ref), DGRAM)]
    r = {
        'expected_datagrams': len(want_sizes),
        'received_datagrams': len(sizes),
        'sizes_match': sizes == want_sizes,
        'sha256_reference': hashlib.sha256(ref).hexdigest(),
        'sha256_received': hashlib.sha256(got).hexdigest(),
        'sync_errors': sum(1 for o in range(0, len(got), TS) if got[o] != 0x47)
        + (1 if len(got) % TS else 0),
        'cc_errors': continuity_errors(got),
        'cc_errors_reference': continuity_errors(ref),
    }
    r['sha256_match'] = r['sha256_reference'] == r['sha256_received']
    r['passed'] = (r['sizes_match'] and r['sha256_match'] and
                   r['sync_errors'] == 0 and
                   r['cc_errors'] == r['cc_errors_reference'] == 0)
    if getattr(args, 'quiet', False):
        return r
    print(json.dumps(r))
    return 0 if r['passed'] else 1


def check_clients(args):
    with open(args.log) as f:
        rx = json.loads([l for l in f.read().split('\n') if l.startswith('{')][-1])
    size = os.path.getsize(args.reference)
    want = (size + DGRAM - 1) // DGRAM
    bad = sorted(int(p) for p, (c, b) in rx['per_port'].items()
                 if c != want or b != size)
    kept = {}
    for port in rx['kept']:
        kept[str(port)] = check(argparse.Namespace(
            reference=args.reference, received='%s.%d' % (args.received, port),
            quiet=True))
    r = {
        'clients': rx['clients'],
        'expected_datagrams_per_client': want,
        'received_datagrams': rx['received'],
        'clients_complete': rx['clients'] - len(bad),
        'clients_incomplete': bad[:10],
        'kept_checked': len(kept),
        'kept_passed': sum(1 for v in kept.values() if v['passed']),
        'kept': kept,
    }
    r['passed'] = not bad and r['kept_passed'] == len(rx['kept']) > 0
    print(json.dumps(r))
    return 0 if r['passed'] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    a = sub.add_parser('receive')
    a.add_argument('--out', required=True)
    a.add_argument('--port', type=int, default=0)
    a.add_argument('--idle', type=float, default=1.5)
    a.add_argument('--timeout', type=float, default=60)
    a.add_argument('--clients', type=int, default=1)
    a.add_argument('--keep', type=int, default=4)
    c = sub.add_parser('check')
    c.add_argument('--reference', required=True)
    c.add_argument('--received', required=True)
    cc = sub.add_parser('check-clients')
    cc.add_argument('--reference', required=True)
    cc.add_argument('--received', required=True)
    cc.add_argument('--log', required=True)
    args = ap.parse_args()
    if args.cmd == 'receive':
        if args.clients > 1:
            receive_many(args)
        else:
            receive(args)
        return 0
    if args.cmd == 'check-clients':
        return check_clients(args)
    return check(args)


if __name__ == '__main__':
    sys.exit(main())
