"""Media helpers for the real-server tests (test_servers.py): test media
generation, a multi-port UDP capture, and MPEG-TS / RTP / RTCP checkers.

Nothing here talks to the network beyond 127.0.0.1.
"""
import json
import os
import pathlib
import select
import shutil
import socket
import subprocess
import threading
import time

TS = 188
NULL_PID = 0x1FFF
SO_RCVBUFFORCE = 33

# Media generated once per pytest session: 3 s of ffmpeg lavfi testsrc +
# sine, H.264 at a constant 6 Mbit/s (x264 CBR with filler, so that a
# remuxer that drops the null packets still streams ~6 Mbit/s) and AAC,
# in MPEG-TS at a constant mux rate of 8 Mbit/s.
MEDIA_SECONDS = 3
MEDIA_FPS = 25


def make_media(directory):
    """Writes directory/test.ts and returns its path (skips without ffmpeg)."""
    path = pathlib.Path(directory) / "test.ts"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "lavfi", "-i", f"testsrc=size=640x360:rate={MEDIA_FPS}",
           "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
           "-t", str(MEDIA_SECONDS),
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-g", str(MEDIA_FPS), "-b:v", "6M", "-minrate", "6M", "-maxrate", "6M",
           "-bufsize", "1M", "-x264-params", "nal-hrd=cbr",
           "-c:a", "aac", "-b:a", "128k",
           "-f", "mpegts", "-muxrate", "8M", str(path)]
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, timeout=120)
    if cp.returncode != 0 or not path.exists():
        raise AssertionError(f"media generation failed: {' '.join(cmd)}\n{cp.stderr}")
    return path


# --------------------------------------------------------------------------
# capture

def _udp_drops(sock):
    """The kernel's receive-buffer drop count for `sock` (/proc/net/udp)."""
    inode = os.fstat(sock.fileno()).st_ino
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[9]) == inode:
                    return int(fields[12])
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _bind(port=0, rcvbuf=8 << 20):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


class Capture:
    """Records every datagram arriving on a set of loopback UDP sockets.

    Capture(n) binds n sockets on free ports; Capture(pairs=n) binds n
    (even P, P+1) pairs for RTP and RTCP (ports[2i] = P, ports[2i+1] = P+1).
    A thread drains them with poll() until stop()."""

    def __init__(self, n=1, pairs=0, timeout_s=60):
        self.socks = []
        if pairs:
            for _ in range(pairs):
                self.socks += self._pair()
        else:
            self.socks = [_bind() for _ in range(n)]
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.data = {p: [] for p in self.ports}
        self.drops = {}
        self.last_rx = None
        self._stop = threading.Event()
        self._deadline = time.monotonic() + timeout_s
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _pair():
        for _ in range(100):
            probe = _bind()
            p = probe.getsockname()[1]
            probe.close()
            p -= p % 2
            try:
                a = _bind(p)
            except OSError:
                continue
            try:
                b = _bind(p + 1)
            except OSError:
                a.close()
                continue
            return [a, b]
        raise AssertionError("no free even/odd port pair on 127.0.0.1")

    def _loop(self):
        poller = select.poll()
        by_fd = {}
        for s in self.socks:
            poller.register(s.fileno(), select.POLLIN)
            by_fd[s.fileno()] = (s, self.data[s.getsockname()[1]])
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for fd, _ in poller.poll(50):
                s, out = by_fd[fd]
                for _ in range(4096):
                    try:
                        out.append(s.recv(65536))
                    except BlockingIOError:
                        break
                self.last_rx = time.monotonic()

    def stop(self, idle_s=0.3, max_wait_s=10):
        """Waits until nothing arrived for idle_s (at most max_wait_s), then
        stops the thread, records kernel drops and closes the sockets."""
        if self._stop.is_set():
            return self
        end = time.monotonic() + max_wait_s
        while time.monotonic() < end:
            last = self.last_rx
            if last is None or time.monotonic() - last >= idle_s:
                break
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=5)
        for s in self.socks:
            self.drops[s.getsockname()[1]] = _udp_drops(s)
            s.close()
        return self

    def __del__(self):
        self._stop.set()


# --------------------------------------------------------------------------
# MPEG-TS

def ts_pid(p):
    return ((p[1] & 0x1F) << 8) | p[2]


def ts_packets(data):
    return [data[o:o + TS] for o in range(0, len(data) - len(data) % TS, TS)]


def ts_check(data):
    """Sync bytes, transport errors and per-PID continuity (ISO/IEC 13818-1
    2.4.3.3): the counter increments only on packets with a payload, the
    null PID is not counted, one duplicate (an identical packet) is allowed,
    a discontinuity_indicator resets it. Returns a dict of figures; the
    stream is clean when every *_errors figure is 0."""
    r = {"bytes": len(data), "packets": len(data) // TS, "sync_errors": 0,
         "length_errors": 1 if len(data) % TS else 0, "tei_errors": 0,
         "cc_errors": 0, "duplicates": 0, "pids": {}, "first_cc_error": None}
    last = {}            # pid -> (cc, packet, duplicate_seen)
    for i, p in enumerate(ts_packets(data)):
        if p[0] != 0x47:
            r["sync_errors"] += 1
            continue
        if p[1] & 0x80:
            r["tei_errors"] += 1
        pid = ts_pid(p)
        r["pids"][pid] = r["pids"].get(pid, 0) + 1
        if pid == NULL_PID:
            continue
        afc = (p[3] >> 4) & 3
        cc = p[3] & 0x0F
        disc = bool(afc & 2 and p[4] > 0 and p[5] & 0x80)
        prev = last.get(pid)
        if prev is not None and not disc:
            pcc, ppkt, pdup = prev
            if afc & 1:
                if cc == pcc:
                    if p == ppkt and not pdup:
                        r["duplicates"] += 1
                        last[pid] = (cc, p, True)
                        continue
                    ok = False
                else:
                    ok = cc == (pcc + 1) & 0x0F
            else:
                ok = cc == pcc          # adaptation field only: no increment
            if not ok:
                r["cc_errors"] += 1
                if r["first_cc_error"] is None:
                    r["first_cc_error"] = (f"packet {i} pid {pid:#x}: cc {cc} after "
                                           f"{pcc} (afc {afc})")
        last[pid] = (cc, p, False)
    r["pids"] = {f"{k:#x}": v for k, v in sorted(r["pids"].items())}
    return r


def ts_problems(data, what):
    r = ts_check(data)
    out = []
    if r["packets"] == 0:
        out.append(f"{what}: no TS packets")
    for k in ("sync_errors", "length_errors", "tei_errors", "cc_errors"):
        if r[k]:
            out.append(f"{what}: {k}={r[k]}"
                       + (f" (first: {r['first_cc_error']})" if k == "cc_errors" else ""))
    return out


def psi_pids(data):
    """PIDs carrying PSI/SI sections: PAT, CAT, TSDT, the DVB SI PIDs and
    every PMT PID the PAT names."""
    pids = {0x00, 0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14}
    for p in ts_packets(data):
        if p[0] == 0x47 and ts_pid(p) == 0 and p[1] & 0x40:
            sec = _section(p)
            if sec is None:
                continue
            n = ((sec[1] & 0x0F) << 8) | sec[2]
            body = sec[8:3 + n - 4]
            for o in range(0, len(body) - 3, 4):
                prog = (body[o] << 8) | body[o + 1]
                if prog:
                    pids.add(((body[o + 2] & 0x1F) << 8) | body[o + 3])
    return pids


def _payload_offset(p):
    afc = (p[3] >> 4) & 3
    if not afc & 1:
        return None
    off = 4
    if afc & 2:
        off += 1 + p[4]
    return off if off < TS else None


def _section(p):
    off = _payload_offset(p)
    if off is None:
        return None
    off += 1 + p[off]                       # pointer_field
    return p[off:] if off + 3 <= TS else None


def normalize_psi(p):
    """A PSI packet with the section's version_number and CRC_32 zeroed
    (VLC's TS muxer draws its table versions at random)."""
    if not p[1] & 0x40:
        return p
    off = _payload_offset(p)
    if off is None:
        return p
    start = off + 1 + p[off]
    if start + 8 > TS:
        return p
    b = bytearray(p)
    n = ((b[start + 1] & 0x0F) << 8) | b[start + 2]
    b[start + 5] &= 0xC1                     # version_number (5 bits)
    end = start + 3 + n
    if end <= TS:
        b[end - 4:end] = b"\0\0\0\0"         # CRC_32
    return bytes(b)


def ts_differences(a, b, psi_versions_may_differ=False):
    """[] when the TS byte streams a and b are identical (or identical but
    for PSI table versions and CRCs, when psi_versions_may_differ)."""
    out = []
    if len(a) != len(b):
        out.append(f"length {len(a)} vs {len(b)} bytes")
    pa, pb = ts_packets(a), ts_packets(b)
    psi = psi_pids(a) | psi_pids(b) if psi_versions_may_differ else set()
    diffs = 0
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x == y:
            continue
        if ts_pid(x) in psi and ts_pid(y) == ts_pid(x) and normalize_psi(x) == normalize_psi(y):
            continue
        diffs += 1
        if diffs <= 3:
            out.append(f"TS packet {i} (pid {ts_pid(x):#x} vs {ts_pid(y):#x}) differs")
    if diffs > 3:
        out.append(f"... {diffs} differing TS packets in all")
    return out


# --------------------------------------------------------------------------
# RTP / RTCP

def rtp_parse(datagrams):
    """Splits RTP datagrams per SSRC. Returns (streams, problems) where
    streams[ssrc] = {"pt", "seqs", "payload" (bytes), "count"}."""
    streams, problems = {}, []
    for i, d in enumerate(datagrams):
        if len(d) < 12 or d[0] >> 6 != 2:
            problems.append(f"datagram {i}: not RTP version 2 ({len(d)} bytes)")
            continue
        cc = d[0] & 0x0F
        off = 12 + 4 * cc
        if d[0] & 0x10:
            if len(d) < off + 4:
                problems.append(f"datagram {i}: truncated header extension")
                continue
            off += 4 + 4 * ((d[off + 2] << 8) | d[off + 3])
        end = len(d)
        if d[0] & 0x20:
            end -= d[-1]
        if off > end:
            problems.append(f"datagram {i}: bad RTP lengths")
            continue
        ssrc = int.from_bytes(d[8:12], "big")
        s = streams.setdefault(ssrc, {"pt": d[1] & 0x7F, "seqs": [],
                                      "chunks": [], "count": 0})
        s["seqs"].append((d[2] << 8) | d[3])
        s["chunks"].append(d[off:end])
        s["count"] += 1
        if (d[1] & 0x7F) != s["pt"]:
            problems.append(f"datagram {i}: payload type changed within SSRC {ssrc:#x}")
    for s in streams.values():
        s["payload"] = b"".join(s.pop("chunks"))
    return streams, problems


def rtp_seq_problems(seqs, what):
    """Sequence numbers must be contiguous modulo 2^16."""
    out = []
    gaps = [(i, a, b) for i, (a, b) in enumerate(zip(seqs, seqs[1:]))
            if b != (a + 1) & 0xFFFF]
    if gaps:
        i, a, b = gaps[0]
        out.append(f"{what}: {len(gaps)} RTP sequence discontinuities "
                   f"(first after packet {i}: {a} -> {b})")
    return out


def rtcp_packets(datagrams):
    """[(packet_type, ssrc)] for every RTCP packet in compound datagrams;
    raises AssertionError on a malformed one."""
    out = []
    for i, d in enumerate(datagrams):
        off = 0
        while off < len(d):
            if len(d) - off < 8 or d[off] >> 6 != 2:
                raise AssertionError(f"RTCP datagram {i}: malformed at byte {off}: {d.hex()}")
            pt = d[off + 1]
            length = 4 * (((d[off + 2] << 8) | d[off + 3]) + 1)
            if not 192 <= pt <= 223 or off + length > len(d):
                raise AssertionError(f"RTCP datagram {i}: bad packet type {pt} or "
                                     f"length {length} at byte {off}")
            out.append((pt, int.from_bytes(d[off + 4:off + 8], "big")))
            off += length
    return out


# --------------------------------------------------------------------------
# ffprobe

def ffprobe_counts(path):
    """{codec_name: (packets, frames)} read (and decoded) by ffprobe, and the
    error output ffprobe printed."""
    cmd = ["ffprobe", "-v", "error", "-count_packets", "-count_frames",
           "-show_entries", "stream=codec_name,nb_read_packets,nb_read_frames",
           "-of", "json", str(path)]
    cp = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, timeout=60)
    if cp.returncode != 0:
        raise AssertionError(f"ffprobe failed on {path}: {cp.stderr}")
    streams = json.loads(cp.stdout).get("streams", [])
    counts = {s["codec_name"]: (int(s.get("nb_read_packets", 0)),
                                int(s.get("nb_read_frames", 0))) for s in streams}
    return counts, cp.stderr.strip()


def have(*programs):
    """The first missing program, or None."""
    for p in programs:
        if not shutil.which(p):
            return p
    return None
