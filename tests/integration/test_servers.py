"""Real streaming servers under the shim (issue 3): VLC, GStreamer, ffmpeg
and iperf3, each run twice -- without and with LD_PRELOAD -- against a
receiver on loopback that checks what arrived:

- the same datagrams (count and the sequence of sizes) with and without
  the shim;
- MPEG-TS: a sync byte every 188 bytes, no transport error, per-PID
  continuity counters without a discontinuity;
- RTP: sequence numbers contiguous per SSRC (and RTCP where the server
  sends it);
- file-based servers: the TS bytes identical to what arrived without the
  shim; live encoders: decodable by ffprobe with the same packet count;
- the library batched: datagrams_out == datagrams_in == datagrams received,
  nothing dropped, far fewer system calls than datagrams.

Plus the delay bound (design.md 3.6) measured at the receiver with a
sender that stamps CLOCK_MONOTONIC into every payload.

The media (3 s of H.264 + AAC in MPEG-TS at a constant 8 Mbit/s mux rate)
is generated once per session by ffmpeg in a directory `nobody` can read
(VLC refuses to run as root and runs as nobody through setpriv).

Debian packages: ffmpeg (ffmpeg, ffprobe), vlc-bin + vlc-plugin-base
(cvlc; TS demux/mux, udp access output, rtp stream output), gstreamer1.0-tools,
gstreamer1.0-plugins-base (videotestsrc, audiotestsrc, audioconvert),
-good (udpsink, multiudpsink, rtpmp2tpay), -bad (tsparse, mpegtsmux),
-ugly (x264enc), gstreamer1.0-libav (avenc_aac), iperf3, iproute2,
util-linux (setpriv).
"""
import glob
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import media
from conftest import (DEFAULT_MAX_DELAY_US, SAN_RUNTIME, SANITIZER, assert_delivered, child_env,
                      require_shim, run, sender_summaries, tool)

RUN_TIMEOUT = 40            # seconds; every server run is killed after this

# The library must have batched: each server has a bound on system calls
# per datagram (Server.max_syscalls), about twice what was measured here.
# VLC sends one datagram at a time at its due time, ~570/s: 1 to 2 per
# 2 ms window, so 0.34-0.37 was measured and a perfect batcher could not go
# far below 0.5; ffmpeg -re writes each frame's datagrams in one burst
# (0.018-0.020), GStreamer's udpsink sends each tsparse buffer as one
# buffer list (0.063), multiudpsink one buffer to 64 clients (0.004).

# Delay test: 4 streams x 2000 datagrams/s x 2 s of 1316 bytes.
DELAY_THREADS, DELAY_PPS, DELAY_COUNT = 4, 2000, 4000
# Margins above UDPWEAVE_MAX_DELAY_US for the receiver-measured delay
# (kernel receive timestamp minus the stamped send time), measured on this
# 2-core VM over 13 runs with 2000 us (some while benchmarks ran beside):
# p50 1050-1110 us, p99 2000-2070 us (2280 once, under load), max
# 2400-9160 us -- against 75-910 us max without the shim. p99 sits at the
# deadline because the flush thread sends what is queued when the oldest
# datagram is due; the max is that thread's wake-up latency (the library
# reported it up to 6.9 ms late) on a busy machine. So: p99 within
# 500 us of the bound (the benchmark target is 200 us), and the
# max within 10 ms: far below what a datagram left behind until the next
# send or the exit would show.
DELAY_P99_MARGIN_US = 500
DELAY_MAX_MARGIN_US = 10000

IPERF_SECONDS = 2
IPERF_LEN = 1316
IPERF_RATES = ["100M", "1G"]


# --------------------------------------------------------------------------
# session fixtures

@pytest.fixture(scope="session")
def media_dir():
    """A directory that the user nobody (VLC) can read, outside pytest's
    private tmp tree, with the test media; removed at the end of the
    session."""
    missing = media.have("ffmpeg", "ffprobe")
    if missing:
        pytest.skip(f"{missing} not installed (Debian package ffmpeg)")
    d = pathlib.Path(tempfile.mkdtemp(prefix="udpweave-media-"))
    try:
        os.chmod(d, 0o755)
        media.make_media(d)
        os.chmod(d / "test.ts", 0o644)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def media_file(media_dir):
    return media_dir / "test.ts"


# --------------------------------------------------------------------------
# running a server

class ServerRun:
    """One run of a server: what every capture port received, the
    library's stats (shim runs) and how the server ended."""

    def __init__(self, server, shim, cap, stats, cp, command, elapsed):
        self.server, self.shim = server, shim
        self.data = [cap.data[p] for p in cap.ports]     # per capture port
        self.drops = [cap.drops[p] for p in cap.ports]
        self.stats = stats
        self.rc, self.stderr = cp
        self.command, self.elapsed = command, elapsed

    @property
    def datagrams(self):
        return sum(len(d) for d in self.data)

    def describe(self):
        return (f"{'with' if self.shim else 'without'} the shim: {self.command}\n"
                f"rc={self.rc} ({self.elapsed:.1f} s), received "
                f"{[len(d) for d in self.data[:8]]}{' ...' if len(self.data) > 8 else ''}"
                f"\nstderr (tail): {self.stderr[-1500:]}")


def _shim_env_delta(extra):
    """The variables the shim run adds to (or changes in) a clean env."""
    base = child_env()
    shim = child_env(shim=True, extra=extra)
    return {k: v for k, v in shim.items() if base.get(k) != v}


def _run_bounded(args, env):
    """Runs args in its own process group; kills that group after RUN_TIMEOUT."""
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError(f"timed out after {RUN_TIMEOUT} s: {' '.join(args)}\n{err[-2000:]}")
    return p.returncode, err


def _read_stats(directory):
    """Sums the stats of every process that queued datagrams (helpers such
    as a shell or setpriv write all-zero files)."""
    files = [json.loads(pathlib.Path(f).read_text())
             for f in sorted(glob.glob(str(directory / "stats-*.json")))]
    busy = [s for s in files if s.get("datagrams_in")]
    total = {k: sum(s.get(k, 0) for s in busy)
             for k in ("datagrams_in", "datagrams_out", "datagrams_dropped", "syscalls",
                       "gso_runs", "gso_segments")}
    total["max_queue_delay_us"] = max([s.get("max_queue_delay_us", 0) for s in busy] or [0])
    total["processes"] = len(busy)
    total["files"] = len(files)
    return total


class Server:
    """How to run one server and what to expect from it.

    kind: "ts" (MPEG-TS in UDP) or "rtp" (RTP/MP2T); ports: capture sockets
    (or `pairs` RTP/RTCP port pairs); live: a live encoder, compared by
    ffprobe packet counts (a file-based server's TS must be identical
    without and with the shim); tail_may_vary: the server's own end of
    stream depends on timing (compare up to the shorter run's end);
    equals_file: the TS that arrives is the media file itself;
    max_syscalls: system calls per datagram the library may use at most."""

    def __init__(self, name, programs, kind, argv, max_syscalls, pairs=0, ports=1,
                 live=False, rtcp=False, as_nobody=False, psi_versions_may_differ=False,
                 equals_file=False, tail_may_vary=False):
        self.name, self.programs, self.kind, self.argv = name, programs, kind, argv
        self.max_syscalls = max_syscalls
        self.pairs, self.ports = pairs, ports
        self.live, self.rtcp = live, rtcp
        self.as_nobody = as_nobody
        self.psi_versions_may_differ = psi_versions_may_differ
        self.equals_file = equals_file
        self.tail_may_vary = tail_may_vary

    def media_ports(self, run_):
        """Indices of the capture ports that carry the media."""
        if self.pairs:
            return list(range(0, 2 * self.pairs, 2))
        return list(range(len(run_.data)))

    def run(self, media_file, workdir, shim):
        if shim:
            require_shim()
        cap = media.Capture(n=self.ports, pairs=self.pairs)
        try:
            stats_dir = pathlib.Path(tempfile.mkdtemp(prefix="stats-", dir=workdir))
            os.chmod(stats_dir, 0o777)
            dests = cap.ports[::2] if self.pairs else cap.ports
            args = [str(a) for a in self.argv(media_file, dests)]
            extra = {"UDPWEAVE_STATS": str(stats_dir / "stats-%p.json"),
                     "UDPWEAVE_MAX_DELAY_US": str(DEFAULT_MAX_DELAY_US)}
            delta = _shim_env_delta(extra) if shim else {}
            env = child_env()
            if self.as_nobody:
                # only VLC gets the shim (not setpriv or env)
                home = workdir / "vlc-home"
                home.mkdir(exist_ok=True)
                os.chmod(home, 0o777)
                prefix = ["env", f"HOME={home}"] + [f"{k}={v}" for k, v in delta.items()]
                if os.geteuid() == 0:
                    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup",
                              "--clear-groups"] + prefix
                args = prefix + args
            else:
                env.update(delta)
            command = " ".join(([] if self.as_nobody else
                                [f"{k}={v}" for k, v in delta.items()]) + args)
            t0 = time.monotonic()
            cp = _run_bounded(args, env)
            elapsed = time.monotonic() - t0
        finally:
            cap.stop()
        stats = _read_stats(stats_dir) if shim else None
        r = ServerRun(self.name, shim, cap, stats, cp, command, elapsed)
        assert r.rc == 0, f"{self.name} failed\n{r.describe()}"
        assert r.datagrams > 0, f"{self.name} sent nothing\n{r.describe()}"
        return r


def _vlc(sout):
    # VLC drops what its UDP output thread still holds when the input ends
    # (the blocks dated after the end of input: about a second here), and
    # how much that is depends on wall-clock timing: without the shim, from
    # the same file, 399, 400 or 420 datagrams with VLC's default caching,
    # 1194 (most runs) or 1146/1147 with zero caching, which streams more of the
    # file (2 of its 3 s). So VLC's runs are compared up to the shorter
    # one's end. tsid/netid: VLC otherwise draws them at random (it still
    # draws the PSI table versions).
    return lambda m, ports: ["cvlc", "--intf", "dummy", "--play-and-exit",
                             "--file-caching=0", m, "--sout", sout(ports[0])]


TSMUX = "mux=ts{tsid=1,netid=1,dts-delay=0}"


def _gst_live(m, ports):
    clients = ",".join(f"127.0.0.1:{p}" for p in ports)
    # 75 video frames and 141 x 1024 audio samples: 3 s from live sources.
    return ("gst-launch-1.0 -q "
            "videotestsrc is-live=true num-buffers=75 "
            "! video/x-raw,width=320,height=240,framerate=25/1 "
            "! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=25 "
            "! h264parse ! queue ! mpegtsmux name=mux alignment=7 ! rtpmp2tpay "
            f"! multiudpsink sync=true clients={clients} "
            "audiotestsrc is-live=true num-buffers=141 samplesperbuffer=1024 "
            "! audio/x-raw,rate=48000,channels=1 ! audioconvert ! avenc_aac ! aacparse "
            "! queue ! mux.").split()


LIVE_VIDEO_FRAMES = 75
LIVE_AUDIO_BUFFERS = 141        # of 1024 samples: 141 AAC frames (142 seen)
LIVE_CLIENTS = 64

SERVERS = {
    "vlc-udp": Server(
        "vlc-udp", ["cvlc", "setpriv"], "ts", max_syscalls=0.6, as_nobody=True,
        psi_versions_may_differ=True, tail_may_vary=True,
        argv=_vlc(lambda p: f"#std{{access=udp{{caching=0}},{TSMUX},dst=127.0.0.1:{p}}}")),
    "vlc-rtp": Server(
        "vlc-rtp", ["cvlc", "setpriv"], "rtp", max_syscalls=0.6, pairs=1, rtcp=True,
        as_nobody=True,
        psi_versions_may_differ=True, tail_may_vary=True,
        argv=_vlc(lambda p: f"#rtp{{dst=127.0.0.1,port={p},{TSMUX},caching=0}}")),
    "gst-udpsink": Server(
        "gst-udpsink", ["gst-launch-1.0"], "rtp", max_syscalls=0.15, equals_file=True,
        argv=lambda m, ports: ["gst-launch-1.0", "-q", "filesrc", f"location={m}", "!",
                               "tsparse", "set-timestamps=true", "!", "rtpmp2tpay", "!",
                               "udpsink", "host=127.0.0.1", f"port={ports[0]}",
                               "sync=true"]),
    "gst-multiudpsink-live": Server(
        "gst-multiudpsink-live", ["gst-launch-1.0", "ffprobe"], "rtp", max_syscalls=0.02,
        ports=LIVE_CLIENTS, live=True, argv=_gst_live),
    "ffmpeg-udp": Server(
        "ffmpeg-udp", ["ffmpeg"], "ts", max_syscalls=0.1,
        argv=lambda m, ports: ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                               "-re", "-i", m, "-c", "copy", "-f", "mpegts",
                               f"udp://127.0.0.1:{ports[0]}?pkt_size=1316"]),
    "ffmpeg-rtp": Server(
        "ffmpeg-rtp", ["ffmpeg"], "rtp", max_syscalls=0.1, pairs=1, rtcp=True,
        argv=lambda m, ports: ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                               "-re", "-i", m, "-c", "copy", "-f", "rtp_mpegts",
                               f"rtp://127.0.0.1:{ports[0]}"]),
}

_GST_ELEMENTS = {"gst-udpsink": ["filesrc", "tsparse", "rtpmp2tpay", "udpsink"],
                 "gst-multiudpsink-live": ["videotestsrc", "audiotestsrc", "x264enc",
                                           "h264parse", "mpegtsmux", "avenc_aac", "aacparse",
                                           "rtpmp2tpay", "multiudpsink", "audioconvert"]}
_VLC_PLUGINS = ["mux/libmux_ts_plugin.so", "access_output/libaccess_output_udp_plugin.so",
                "stream_out/libstream_out_rtp_plugin.so",
                "stream_out/libstream_out_standard_plugin.so", "demux/libts_plugin.so"]


def _require_components(server):
    if server.name in _GST_ELEMENTS and shutil.which("gst-inspect-1.0"):
        for e in _GST_ELEMENTS[server.name]:
            cp = subprocess.run(["gst-inspect-1.0", "--exists", e], env=child_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if cp.returncode != 0:
                pytest.skip(f"{server.name}: GStreamer element {e} missing "
                            "(gstreamer1.0-plugins-good/-bad/-ugly, gstreamer1.0-libav)")
    if server.as_nobody:
        dirs = glob.glob("/usr/lib/*/vlc/plugins") + glob.glob("/usr/lib/vlc/plugins")
        for plugin in _VLC_PLUGINS:
            if not any(os.path.exists(os.path.join(d, plugin)) for d in dirs):
                pytest.skip(f"{server.name}: VLC plugin {plugin} missing (vlc-plugin-base)")


@pytest.fixture(scope="module", params=list(SERVERS))
def server_runs(request, media_file, tmp_path_factory):
    """(server, baseline run, shim run), run once per module."""
    server = SERVERS[request.param]
    missing = media.have(*server.programs)
    if missing:
        pytest.skip(f"{server.name}: {missing} not installed")
    _require_components(server)
    if server.as_nobody and SANITIZER:
        pytest.skip(f"{server.name}: VLC deadlocks at start-up under a sanitizer runtime "
                    "even without the library (seen with libasan alone: the main thread "
                    "waits forever on glibc's _nl_state_lock in bindtextdomain)")
    if "gst-launch-1.0" in server.programs and any("libtsan" in p for p in SAN_RUNTIME):
        pytest.skip(f"{server.name}: ThreadSanitizer reports races inside GStreamer "
                    "even without the library (GLib's futex-based GMutex is invisible "
                    "to it; seen with libtsan alone on the same pipeline)")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"udpweave-{server.name}-"))
    os.chmod(workdir, 0o755)
    try:
        base = server.run(media_file, workdir, shim=False)
        shim = server.run(media_file, workdir, shim=True)
        yield server, base, shim
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ts_of(server, r, port_index, limit=None):
    """The TS bytes one capture port received (RTP payloads for RTP), in
    the first `limit` datagrams."""
    data = r.data[port_index][:limit]
    if server.kind == "ts":
        return b"".join(data)
    streams, _ = media.rtp_parse(data)
    return b"".join(s["payload"] for s in streams.values())


# --------------------------------------------------------------------------
# per-server checks

def test_no_kernel_drops(server_runs):
    """The receiver's sockets never overflowed: any difference below is the
    sender's, not the receiver's."""
    server, base, shim = server_runs
    for r in (base, shim):
        assert not any(r.drops), f"receive-buffer drops {r.drops}\n{r.describe()}"


def test_same_datagrams(server_runs):
    """The same datagrams with and without the shim: per port, the same
    count and the same sequence of sizes (design.md 3.2: boundaries kept).
    A live encoder's output is not reproducible: its datagram count may
    differ by 2 % (mpegtsmux inserts PCR and PSI by running time, x264's
    output sizes follow the live timestamps). VLC's runs end at a point
    that depends on timing (see _vlc): up to 10 % fewer or more datagrams,
    the same sizes up to the shorter run's end."""
    server, base, shim = server_runs
    assert len(base.data) == len(shim.data)
    for i, (a, b) in enumerate(zip(base.data, shim.data)):
        if server.live:
            assert abs(len(a) - len(b)) <= max(2, 0.02 * len(a)), (
                f"port {i}: {len(a)} datagrams without the shim, {len(b)} with\n"
                f"{shim.describe()}")
            continue
        sa, sb = [len(d) for d in a], [len(d) for d in b]
        if server.tail_may_vary:
            print(f"{server.name} port {i}: {len(sa)} datagrams without the shim, "
                  f"{len(sb)} with")
            assert abs(len(sa) - len(sb)) <= max(5, 0.1 * len(sa)), (
                f"port {i}: {len(sa)} datagrams without the shim, {len(sb)} with\n"
                f"{base.describe()}\n{shim.describe()}")
            sa, sb = sa[:len(sb)], sb[:len(sa)]
        assert len(sa) == len(sb), (f"port {i}: {len(sa)} datagrams without the shim, "
                                    f"{len(sb)} with\n{base.describe()}\n{shim.describe()}")
        first = next((k for k, (x, y) in enumerate(zip(sa, sb)) if x != y), None)
        assert first is None, (f"port {i}: datagram {first} is {sa[first]} bytes without "
                               f"the shim, {sb[first]} with\n{shim.describe()}")


def test_ts_clean(server_runs):
    """MPEG-TS sync bytes every 188 bytes, no transport error, continuity
    counters without a discontinuity, on every port, in both runs."""
    server, base, shim = server_runs
    problems = []
    for r in (base, shim):
        for i in server.media_ports(r):
            ts = _ts_of(server, r, i)
            problems += media.ts_problems(ts, f"{'shim' if r.shim else 'baseline'} port {i}")
    assert not problems, "\n".join(problems[:20]) + "\n" + shim.describe()


def test_rtp_sequence_and_rtcp(server_runs):
    """RTP: version 2, payload type 33 (MP2T), one SSRC per port, sequence
    numbers contiguous; RTCP (where the server sends it) well formed on
    P+1. VLC's only RTCP is the SR+SDES+BYE it sends when it stops, and it
    carries SSRC 0 (VLC fills the SSRC in when it sends an SR, which it did
    not in 3 s); ffmpeg's SR carries the RTP SSRC."""
    server, base, shim = server_runs
    if server.kind != "rtp":
        pytest.skip(f"{server.name} does not send RTP")
    for r in (base, shim):
        for i in server.media_ports(r):
            streams, problems = media.rtp_parse(r.data[i])
            what = f"{'shim' if r.shim else 'baseline'} port {i}"
            assert not problems, f"{what}: {problems[:5]}\n{r.describe()}"
            assert len(streams) == 1, f"{what}: SSRCs {list(map(hex, streams))}"
            (ssrc, s), = streams.items()
            assert s["pt"] == 33, f"{what}: payload type {s['pt']}"
            seq = media.rtp_seq_problems(s["seqs"], what)
            assert not seq, "\n".join(seq) + "\n" + r.describe()
            if server.rtcp:
                rtcp = media.rtcp_packets(r.data[i + 1])
                assert rtcp, f"{what}: no RTCP on port P+1\n{r.describe()}"
                srs = [x for x in rtcp if x[0] == 200]
                assert srs, f"{what}: no sender report in RTCP {rtcp}"
                if server.name.startswith("ffmpeg"):
                    assert all(x[1] == ssrc for x in srs), (
                        f"{what}: RTCP SR SSRCs {[hex(x[1]) for x in srs]}, RTP {ssrc:#x}")
    if server.rtcp:
        nb = [len(base.data[i + 1]) for i in server.media_ports(base)]
        ns = [len(shim.data[i + 1]) for i in server.media_ports(shim)]
        assert nb == ns, f"RTCP datagrams: {nb} without the shim, {ns} with"


def test_same_transport_stream(server_runs, media_file):
    """File-based servers: the TS bytes that arrived with the shim are those
    that arrived without it (VLC: but for the PSI table versions it draws at
    random, and up to the shorter run's end); GStreamer's udpsink from the
    file delivers the file itself.
    Live encoder: every one of the 64 clients got the same datagrams, and
    ffprobe reads and decodes the stream with the same packet counts in
    both runs: exactly the 75 video frames the source produced, and audio
    within 1 packet (141 frames from 141 buffers; the AAC encoder's flush
    at EOS may add one). The TS bytes themselves differ between live runs
    (timestamps and PCR come from the running clock)."""
    server, base, shim = server_runs
    if server.live:
        counts = {}
        for r in (base, shim):
            what = "shim" if r.shim else "baseline"
            first = r.data[0]
            for i, d in enumerate(r.data):
                assert d == first, (f"{what}: client {i} received different datagrams "
                                    f"than client 0 ({len(d)} vs {len(first)})")
            path = pathlib.Path(tempfile.mkdtemp(prefix="udpweave-live-")) / "rx.ts"
            try:
                path.write_bytes(_ts_of(server, r, 0))
                counts[what], err = media.ffprobe_counts(path)
            finally:
                shutil.rmtree(path.parent, ignore_errors=True)
            assert not err, f"{what}: ffprobe reported errors: {err[:1000]}"
            assert counts[what].get("h264", (0, 0))[0] == LIVE_VIDEO_FRAMES, (
                f"{what}: ffprobe counted {counts[what]}, expected {LIVE_VIDEO_FRAMES} "
                "H.264 packets")
            audio = counts[what].get("aac", (0, 0))[0]
            assert LIVE_AUDIO_BUFFERS <= audio <= LIVE_AUDIO_BUFFERS + 2, (
                f"{what}: ffprobe counted {counts[what]}, expected {LIVE_AUDIO_BUFFERS} "
                "AAC packets (+ the encoder's flush)")
        (bv, _), (sv, _) = counts["baseline"]["h264"], counts["shim"]["h264"]
        (ba, _), (sa, _) = counts["baseline"]["aac"], counts["shim"]["aac"]
        assert bv == sv and abs(ba - sa) <= 1, f"ffprobe packet counts: {counts}"
        return
    for i in server.media_ports(base):
        n = min(len(base.data[i]), len(shim.data[i])) if server.tail_may_vary else None
        a, b = _ts_of(server, base, i, n), _ts_of(server, shim, i, n)
        diff = media.ts_differences(a, b, server.psi_versions_may_differ)
        assert not diff, (f"port {i}: the TS differs with the shim:\n" + "\n".join(diff)
                          + "\n" + shim.describe())
        if server.equals_file:
            ref = pathlib.Path(media_file).read_bytes()
            assert a == ref, (f"port {i}: {len(a)} TS bytes arrived, the file has "
                              f"{len(ref)}; not the file")


def test_batched(server_runs):
    """The library queued every datagram the server sent and sent it:
    datagrams_out == datagrams_in == datagrams received, none dropped, and
    it batched: system calls per datagram at most the server's bound."""
    server, base, shim = server_runs
    st = shim.stats
    ctx = f"stats {st}\n{shim.describe()}"
    assert st["processes"] >= 1, f"no stats file with queued datagrams\n{ctx}"
    assert st["datagrams_dropped"] == 0, ctx
    assert st["datagrams_in"] == st["datagrams_out"] == shim.datagrams, (
        f"datagrams_in {st['datagrams_in']}, datagrams_out {st['datagrams_out']}, "
        f"received {shim.datagrams}\n{ctx}")
    ratio = st["syscalls"] / st["datagrams_out"]
    print(f"{server.name}: {st['datagrams_out']} datagrams, {st['syscalls']} system calls "
          f"({ratio:.3f} per datagram), {st['gso_runs']} GSO runs, "
          f"max queue delay {st['max_queue_delay_us']} us")
    assert ratio <= server.max_syscalls, (
        f"{st['syscalls']} system calls for {st['datagrams_out']} datagrams "
        f"({ratio:.2f} per datagram)\n{ctx}")


# --------------------------------------------------------------------------
# delay bound

def _delay_run(receiver_factory, shim, tmp_path):
    rx = receiver_factory()
    args = [tool("uw_sender"), "--dest", rx.addr(0), "--threads", DELAY_THREADS,
            "--count", DELAY_COUNT, "--rate-pps", DELAY_PPS, "--sizes", "1316"]
    extra = {"UDPWEAVE_MAX_DELAY_US": str(DEFAULT_MAX_DELAY_US),
             "UDPWEAVE_STATS": str(tmp_path / f"delay-stats-{int(shim)}.json")}
    r = run(args, shim=shim, extra_env=extra)
    sums = sender_summaries(r)
    report = rx.finish()
    assert_delivered(report, sums, r.describe(), sizes=[1316])
    return report, r


def test_delay_bound(receiver_factory, tmp_path):
    """4 streams x 2000 datagrams/s for 2 s, each payload stamped with
    CLOCK_MONOTONIC; the receiver takes the kernel receive timestamp. With
    UDPWEAVE_MAX_DELAY_US=2000: delay p99 <= 2000 + DELAY_P99_MARGIN_US and
    max <= 2000 + DELAY_MAX_MARGIN_US (design.md 3.6)."""
    require_shim()
    base, _ = _delay_run(receiver_factory, False, tmp_path)
    shim, r = _delay_run(receiver_factory, True, tmp_path)
    st = json.loads((tmp_path / "delay-stats-1.json").read_text())
    d, b = shim["delay_us"], base["delay_us"]
    summary = (f"without the shim p50/p99/max {b['p50']}/{b['p99']}/{b['max']} us; with it "
               f"{d['p50']}/{d['p99']}/{d['max']} us (source {d['source']}); library: "
               f"{st['syscalls']} system calls for {st['datagrams_out']} datagrams, max "
               f"queue delay {st.get('max_queue_delay_us')} us, flush thread late up to "
               f"{st.get('max_flush_thread_late_us')} us")
    print(summary)
    assert d["n"] == DELAY_THREADS * DELAY_COUNT
    assert st["datagrams_out"] == DELAY_THREADS * DELAY_COUNT, summary
    # ~16 datagrams per 2 ms window on 4 sockets: one sendmmsg per socket
    assert st["syscalls"] <= 0.5 * st["datagrams_out"], summary
    if SANITIZER:
        pytest.skip("delay bounds are not meaningful under a sanitizer: " + summary)
    assert d["p99"] <= DEFAULT_MAX_DELAY_US + DELAY_P99_MARGIN_US, summary
    assert d["max"] <= DEFAULT_MAX_DELAY_US + DELAY_MAX_MARGIN_US, summary


# --------------------------------------------------------------------------
# iperf3 in a network namespace of its own

class Netns:
    """A network namespace with only lo up; removed by close()."""

    _seq = 0

    def __init__(self):
        Netns._seq += 1
        self.name = f"uwsrv-{os.getpid()}-{Netns._seq}"
        cp = subprocess.run(["ip", "netns", "add", self.name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        if cp.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {cp.stderr.strip()}")
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def argv(self, args):
        return ["ip", "netns", "exec", self.name] + [str(a) for a in args]

    def udp_counters(self):
        """The namespace's Udp counters from /proc/net/snmp."""
        out = subprocess.run(self.argv(["cat", "/proc/net/snmp"]), stdout=subprocess.PIPE,
                             text=True, check=True).stdout
        rows = [l.split()[1:] for l in out.splitlines() if l.startswith("Udp:")]
        return dict(zip(rows[0], map(int, rows[1])))

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)


def _listening(pid, port):
    """True when some socket listens on TCP `port` in pid's namespace."""
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        return True
        except (OSError, StopIteration):
            pass
    return False


def iperf3_pair(ns, rate, shim, stats_path):
    """One iperf3 -s -1 and one UDP client inside ns; returns (client JSON,
    server JSON, the namespace's Udp counter deltas, command)."""
    port = 5201
    server = subprocess.Popen(ns.argv(["iperf3", "-s", "-1", "-p", port, "-J"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=child_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not _listening(server.pid, port):
            if server.poll() is not None or time.monotonic() > deadline:
                if server.poll() is None:
                    os.killpg(server.pid, signal.SIGKILL)
                _, err = server.communicate(timeout=10)
                raise AssertionError(f"iperf3 server did not listen on {port}: {err}")
            time.sleep(0.02)
        before = ns.udp_counters()
        cmd = ["iperf3", "-u", "-c", "127.0.0.1", "-p", port, "-b", rate, "-l", IPERF_LEN,
               "-t", IPERF_SECONDS, "-w", "4M", "-J"]
        env = child_env(shim=shim, extra={"UDPWEAVE_STATS": str(stats_path),
                                          "UDPWEAVE_MAX_DELAY_US": str(DEFAULT_MAX_DELAY_US)}
                        if shim else None)
        if shim and SANITIZER and "ASAN_OPTIONS" not in env:
            env["ASAN_OPTIONS"] = "detect_leaks=0"
        client = subprocess.run(ns.argv(cmd), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, timeout=IPERF_SECONDS + 30)
        out, err = server.communicate(timeout=30)
        after = ns.udp_counters()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    command = ("LD_PRELOAD=... " if shim else "") + " ".join(map(str, cmd))
    assert client.returncode == 0, f"iperf3 client failed: {command}\n{client.stderr}"
    assert server.returncode == 0, f"iperf3 server failed: {err}"
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return json.loads(client.stdout), json.loads(out), delta, command


def _udp(result):
    return result["end"]["streams"][0]["udp"]


@pytest.fixture(scope="module")
def iperf3_netns():
    missing = media.have("iperf3", "ip")
    if missing:
        pytest.skip(f"{missing} not installed (Debian packages iperf3, iproute2)")
    if os.geteuid() != 0:
        pytest.skip("iperf3 tests run in a network namespace of their own: need root")
    require_shim()
    ns = Netns()
    yield ns
    ns.close()


@pytest.mark.parametrize("rate", IPERF_RATES)
def test_iperf3_fixed_rate(iperf3_netns, rate, tmp_path):
    """iperf3 -u at a fixed rate, without and with the shim: the client
    sends as many datagrams (not 1 % fewer; see below); the library sent every one it got
    (datagrams_out == client packets + the UDP "connect" datagram); the
    server saw no gap and no reordering and the kernel dropped nothing; the
    server's count is short only by the tail it had not read at TEST_END
    (see test_iperf3.py: iperf3 stops counting UDP at TEST_END), at most
    what the library may hold plus the flush thread's lateness."""
    ns = iperf3_netns
    b_cli, b_srv, b_k, _ = iperf3_pair(ns, rate, False, None)
    if _udp(b_srv)["lost_packets"] or b_k.get("RcvbufErrors"):
        pytest.skip(f"this machine loses datagrams at {rate} without the shim: "
                    f"{_udp(b_srv)}, kernel {b_k}")
    stats_path = tmp_path / "iperf3-stats.json"
    cli, srv, k, command = iperf3_pair(ns, rate, True, stats_path)
    st = json.loads(stats_path.read_text())
    sent, recv = _udp(cli), _udp(srv)
    base_sent = _udp(b_cli)["packets"]
    print(f"iperf3 -b {rate}: client {base_sent} datagrams without the shim "
          f"({b_cli['end']['cpu_utilization_percent']['host_total']:.1f} % CPU), "
          f"{sent['packets']} with ({cli['end']['cpu_utilization_percent']['host_total']:.1f}"
          f" % CPU); {st['syscalls']} system calls "
          f"({st['syscalls'] / max(1, st['datagrams_out']):.4f} per datagram), max queue "
          f"delay {st.get('max_queue_delay_us')} us; server counted {recv['packets']}")
    rate_pps = float(rate[:-1]) * {"M": 1e6, "G": 1e9}[rate[-1]] / 8 / IPERF_LEN
    target = rate_pps * IPERF_SECONDS
    # a loaded machine may keep the client below the rate without the shim
    # (seen: 167113 of 189969 at 1G while benchmarks ran beside), so: not
    # fewer than without the shim, not more than the rate allows
    # (under a sanitizer the instrumented library is several times slower:
    # only the upper bound and the delivery checks below apply there)
    floor = 0 if SANITIZER else 0.99 * base_sent
    assert floor <= sent["packets"] <= 1.01 * target, (
        f"{command}: client sent {sent['packets']} datagrams with the shim, "
        f"{base_sent} without, {target:.0f} at {rate} for {IPERF_SECONDS} s")
    assert st["datagrams_in"] == sent["packets"] + 1, (command, st)
    assert st["datagrams_out"] == st["datagrams_in"] and st["datagrams_dropped"] == 0, st
    assert recv["lost_packets"] == 0 and recv["out_of_order"] == 0, (command, recv)
    assert k.get("RcvbufErrors", 0) == 0 and k.get("InErrors", 0) == 0, (command, k)
    tail_bound = math.ceil(rate_pps * (DEFAULT_MAX_DELAY_US + 2000) / 1e6) + 8
    missing = sent["packets"] - recv["packets"]
    assert 0 <= missing <= tail_bound, (
        f"{command}\nclient sent {sent['packets']}, server counted {recv['packets']}: "
        f"{missing} short, more than the {tail_bound} one flush can hold")


def test_iperf3_unlimited(iperf3_netns, tmp_path):
    """iperf3 -u -b 0 (as fast as it can), without and with the shim. The
    receiver cannot keep up on 2 cores (the kernel drops for a full receive
    buffer, with and without the shim), so the check is conservation in the
    test's own network namespace: the library sent every datagram it got;
    the server saw no reordering; every gap it counted ("lost") is a kernel
    receive-buffer drop (Udp RcvbufErrors); and of the datagrams after the
    highest sequence number it read, those the kernel did not drop are at
    most what its receive buffer can hold (read after TEST_END: never)."""
    ns = iperf3_netns
    figures = {}
    for shim in (False, True):
        stats_path = tmp_path / f"iperf3-b0-{int(shim)}.json"
        cli, srv, k, command = iperf3_pair(ns, "0", shim, stats_path)
        sent, recv = _udp(cli), _udp(srv)
        # the server's "packets" is the highest sequence number it read
        drops = k.get("RcvbufErrors", 0)
        after_last = sent["packets"] - recv["packets"]
        unread = after_last - (drops - recv["lost_packets"])
        figures["shim" if shim else "baseline"] = (
            f"{sent['packets']} sent at {cli['end']['sum']['bits_per_second'] / 1e6:.0f} Mbit/s "
            f"({cli['end']['cpu_utilization_percent']['host_total']:.0f} % CPU), "
            f"{recv['packets'] - recv['lost_packets']} read by the server, "
            f"{recv['lost_packets']} lost, {drops} kernel drops, {unread} unread")
        ctx = f"{command}\nclient {sent}\nserver {recv}\nkernel {k}"
        assert recv["out_of_order"] == 0, ctx
        assert after_last >= 0, ctx
        assert recv["lost_packets"] <= drops, (
            f"the server counted {recv['lost_packets']} lost but the kernel dropped only "
            f"{drops}\n{ctx}")
        rcvbuf_capacity = 2 * (4 << 20) // IPERF_LEN
        assert 0 <= unread <= rcvbuf_capacity, (
            f"{unread} datagrams neither read by the server nor dropped by the kernel "
            f"(its receive buffer holds at most {rcvbuf_capacity})\n{ctx}")
        if shim:
            st = json.loads(stats_path.read_text())
            figures["library"] = (f"{st['syscalls']} system calls for {st['datagrams_out']} "
                                  f"datagrams, flushes {st['flushes_by_reason']}, max queue "
                                  f"delay {st.get('max_queue_delay_us')} us")
            assert st["datagrams_in"] == sent["packets"] + 1, (ctx, st)
            assert st["datagrams_out"] == st["datagrams_in"], st
            assert st["datagrams_dropped"] == 0, st
    print("iperf3 -b 0: " + "; ".join(f"{k}: {v}" for k, v in figures.items()))
