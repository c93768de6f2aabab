#!/usr/bin/python3
"""MPEG-TS over UDP receiver and checker for scripts/demo.sh.

  ts_receiver.py receive --out FILE [--port P] [--idle S] [--timeout S]
      Binds 127.0.0.1 (port 0 = any free port), prints "ready PORT", writes
      every datagram's payload to FILE and its size to FILE.sizes, stops
      --idle seconds after the last datagram (or at --timeout), prints JSON.

  ts_receiver.py check --reference REF.ts --received FILE
      Compares what arrived with the file that was streamed: datagram count
      and sizes (REF is cut into 1316-byte datagrams), sha256 of the
      concatenated payloads, TS sync byte 0x47 every 188 bytes, continuity
      counter errors.  Prints JSON; exit status 0 when everything matches.
"""
import argparse
import hashlib
import json
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
    c = sub.add_parser('check')
    c.add_argument('--reference', required=True)
    c.add_argument('--received', required=True)
    args = ap.parse_args()
    if args.cmd == 'receive':
        receive(args)
        return 0
    return check(args)


if __name__ == '__main__':
    sys.exit(main())
