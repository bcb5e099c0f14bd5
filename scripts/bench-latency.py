#!/usr/bin/env python3
"""Glass-to-file latency of a live input (BENCHMARKS.md "Network ingest"): how long after a
publisher made a picture its composited frame is in the recording's file.

The publisher draws its wall-clock time (ms, 32 bits plus an 8-bit check) into every picture
as 40 black/white blocks (8 x 5 blocks of 80 x 72 on a 640 x 360 frame), encodes it (x264
zerolatency, or the browser's own encoder for WHIP) and sends it live. The service records a
640 x 360 mixer showing that camera full-canvas, 1:1. While it records, this script polls the
output file's size every millisecond and keeps when each size was first seen. Afterwards it
reads each video packet's file offset (ffprobe) and each frame's time code (decoding the
recording); a frame's glass-to-file latency = (when the file first held all of its packet's
bytes) - (the time code drawn into it). Only frames whose code changed from the frame before
count (a repeated picture is not a new capture). Everything on one machine, one clock.

    python3 scripts/bench-latency.py --via rtmp|pull-rtmp|whip [--bin target/release/cloudmixer]
                                     [--secs 20] [--fps 30]

- `pull-rtmp`: FFmpeg publishes to nginx-rtmp, the mixer pulls it (`"inputs"`);
- `rtmp`: FFmpeg publishes to the service's own RTMP listener (`serve --rtmp-listen`);
- `whip`: headless Chromium draws the code on a canvas, `captureStream()`, WHIP to the service
  (`serve --webrtc-udp`), run in a network namespace with only `lo` (`unshare -n`, root).

The latency includes the publisher's encoder, the transport, the decoder, the mixer's latency
setting (`--latency`, default as serve), the compositor, x264 and the 0.1 s fragments.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
W, H, COLS, ROWS = 640, 360, 8, 5
BW, BH = W // COLS, H // ROWS
TOKEN = "bench-latency-token-0123456789"


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def bits_of(ms):
    """40 bits: the time (ms mod 2^32) then its check byte (sum of its bytes mod 256, xor 0xA5)."""
    v = ms & 0xFFFFFFFF
    check = (sum(v.to_bytes(4, "big")) & 0xFF) ^ 0xA5
    word = (v << 8) | check
    return [(word >> (39 - i)) & 1 for i in range(40)]


def frame_of(ms):
    """A 640 x 360 gray picture carrying `ms`."""
    bits = bits_of(ms)
    row_blocks = []
    for r in range(ROWS):
        line = b"".join((b"\xeb" if bits[r * COLS + c] else b"\x10") * BW for c in range(COLS))
        row_blocks.append(line * BH)
    return b"".join(row_blocks)


def code_of(gray):
    """The time code of a decoded 640 x 360 gray picture, or None when the check fails."""
    word = 0
    for r in range(ROWS):
        for c in range(COLS):
            # the mean of the block's centre (a quarter of it)
            y0, x0 = r * BH + BH // 4, c * BW + BW // 4
            total = 0
            n = 0
            for y in range(y0, y0 + BH // 2, 4):
                row = gray[y * W + x0:y * W + x0 + BW // 2:4]
                total += sum(row)
                n += len(row)
            word = (word << 1) | (1 if total / n > 126 else 0)
    v, check = word >> 8, word & 0xFF
    if ((sum(v.to_bytes(4, "big")) & 0xFF) ^ 0xA5) != check:
        return None
    return v


def stop(p):
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def nginx(tmp, port):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
pid {tmp}/nginx.pid; error_log {tmp}/nginx.err; load_module {RTMP_MODULE};
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;
  application live {{ live on; }} }} }}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp + "/"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


class FfmpegPublisher:
    """Frames with their wall-clock time drawn in, written to FFmpeg in real time, x264
    zerolatency, FLV to `url`."""

    def __init__(self, url, fps):
        self.p = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}",
             "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
             "-tune", "zerolatency", "-g", str(fps), "-pix_fmt", "yuv420p",
             "-flvflags", "no_duration_filesize", "-f", "flv", url],
            stdin=subprocess.PIPE)
        self.fps = fps
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        start = time.time()
        n = 0
        try:
            while not self.done.is_set():
                due = start + n / self.fps
                d = due - time.time()
                if d > 0:
                    time.sleep(d)
                self.p.stdin.write(frame_of(int(time.time() * 1000)))
                self.p.stdin.flush()
                n += 1
        except (BrokenPipeError, ValueError):
            pass

    def stop(self):
        self.done.set()
        self.t.join(timeout=5)
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        stop(self.p)


WHIP_PAGE = """<!doctype html><meta charset=utf-8><canvas id=c width=640 height=360></canvas>
<script>
const q = new URLSearchParams(location.hash.slice(1));
const c = document.getElementById('c'), g = c.getContext('2d');
function draw() {
  const v = Date.now() % 4294967296;
  const b = [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  const check = ((b[0] + b[1] + b[2] + b[3]) & 255) ^ 0xA5;
  const hi = Math.floor(v / 16777216), lo = v % 16777216;
  const bits = [];
  for (let i = 7; i >= 0; i--) bits.push((hi >>> i) & 1);
  for (let i = 23; i >= 0; i--) bits.push((lo >>> i) & 1);
  for (let i = 7; i >= 0; i--) bits.push((check >>> i) & 1);
  for (let i = 0; i < 40; i++) {
    g.fillStyle = bits[i] ? '#ebebeb' : '#101010';
    g.fillRect((i % 8) * 80, Math.floor(i / 8) * 72, 80, 72);
  }
}
draw(); setInterval(draw, 1000 / 60);
(async () => {
  const stream = c.captureStream(Number(q.get('fps')));
  const pc = new RTCPeerConnection();
  for (const t of stream.getTracks()) pc.addTransceiver(t, {direction: 'sendonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const r = await fetch(q.get('whip'), {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + q.get('token')}});
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  document.title = 'sent ' + r.status;
})();
</script>
"""


def watch_size(path, until, out):
    """(time, size) whenever the file's size changed, polled every ms."""
    last = -1
    while time.time() < until:
        try:
            s = os.stat(path).st_size
        except FileNotFoundError:
            s = -1
        if s != last:
            out.append((time.time(), s))
            last = s
        time.sleep(0.001)


def analyse(path, sizes):
    pk = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                         "packet=pts_time,pos,size", "-of", "json", path],
                        capture_output=True, text=True, check=True)
    packets = sorted((float(p["pts_time"]), int(p["pos"]), int(p["size"]))
                     for p in json.loads(pk.stdout)["packets"])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v:0", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    n = len(raw) // (W * H)
    lat = []
    prev = None
    bad = 0
    for i in range(min(n, len(packets))):
        code = code_of(raw[i * W * H:(i + 1) * W * H])
        if code is None:
            bad += 1
            continue
        if code == prev:
            continue
        prev = code
        _, pos, size = packets[i]
        end = pos + size
        if end <= sizes[0][1]:
            # in the file before the watch began: when it came is unknown
            continue
        seen = next((t for t, s in sizes if s >= end), None)
        if seen is None:
            continue
        # the time code is ms mod 2^32 of the wall clock
        glass = (int(seen * 1000) & ~0xFFFFFFFF) + code
        if glass > seen * 1000 + 2**31:
            glass -= 2**32
        lat.append(seen * 1000 - glass)
    return lat, n, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/cloudmixer"))
    ap.add_argument("--via", default="rtmp", choices=["rtmp", "pull-rtmp", "whip"])
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--latency", type=int, help="the mixer's latency (ms); default: serve's")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-latency-")
    procs = []
    pub = None
    try:
        storage = os.path.join(tmp, "rec")
        os.makedirs(storage)
        with open(os.path.join(tmp, "token"), "w") as f:
            f.write(TOKEN)
        args = [a.bin, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu", "--storage",
                storage, "--token-file", os.path.join(tmp, "token")]
        if a.latency is not None:
            args += ["--latency", str(a.latency)]
        rtmp_port = free_port()
        inputs = {}
        if a.via == "rtmp":
            args += ["--rtmp-listen", f"127.0.0.1:{rtmp_port}"]
        elif a.via == "pull-rtmp":
            procs.append(nginx(tmp, rtmp_port))
            inputs = {"Usr1.-1": f"rtmp://127.0.0.1:{rtmp_port}/live/cam"}
        else:
            # the page comes from an http origin the service allows
            class Page(BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(WHIP_PAGE.encode())

                def log_message(self, *args):
                    pass
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            origin = f"http://127.0.0.1:{httpd.server_address[1]}"
            u = free_port(socket.SOCK_DGRAM)
            args += ["--webrtc-udp", f"127.0.0.1:{u}-{u + 20}", "--whip-origin", origin]
        s = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(
            os.path.join(tmp, "serve.log"), "w"), text=True)
        procs.append(s)
        base = s.stdout.readline().strip().removeprefix("listening on ")
        hdr = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        body = {"mixerID": "lat", "mode": 0, "inputs": inputs,
                "videoFileCfg": {"svrPathName": "/lat.mp4", "vWidth": W, "vHeight": H,
                                 "vFps": a.fps,
                                 "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": W,
                                                   "height": H, "param": {"camid": "Usr1.-1"}}]}}
        urllib.request.urlopen(urllib.request.Request(
            base + "/v1/mixers", data=json.dumps(body).encode(), headers=hdr), timeout=30).read()
        if a.via == "rtmp":
            pub = FfmpegPublisher(f"rtmp://127.0.0.1:{rtmp_port}/live/lat/Usr1.-1", a.fps)
        elif a.via == "pull-rtmp":
            pub = FfmpegPublisher(f"rtmp://127.0.0.1:{rtmp_port}/live/cam", a.fps)
        else:
            url = f"{origin}/#whip={base}/v1/whip/lat/Usr1.-1&token={TOKEN}&fps={a.fps}"
            procs.append(subprocess.Popen(
                ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                 "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
                 "--disable-features=WebRtcHideLocalIpsWithMdns",
                 f"--user-data-dir={tmp}/chrome", url],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # from the input's first live state on
        t0 = time.time()
        while time.time() - t0 < 20:
            v = json.load(urllib.request.urlopen(urllib.request.Request(
                base + "/v1/mixers/lat", headers=hdr), timeout=10))
            if any(i.get("state") == "live" for i in v.get("inputStates", [])):
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"the input never went live: {v.get('inputStates')}")
        sizes = []
        watch_size(os.path.join(storage, "lat.mp4"), time.time() + a.secs, sizes)
        urllib.request.urlopen(urllib.request.Request(
            base + "/v1/mixers/lat", method="DELETE", headers=hdr), timeout=60).read()
        if pub:
            pub.stop()
        lat, n, bad = analyse(os.path.join(storage, "lat.mp4"), sizes)
        if len(lat) < 10:
            raise SystemExit(f"only {len(lat)} frames with a new time code of {n} ({bad} unreadable)")
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
        print(json.dumps({"via": a.via, "frames": n, "new_codes": len(lat), "unreadable": bad,
                          "p50_ms": round(q(50)), "p90_ms": round(q(90)), "p99_ms": round(q(99)),
                          "min_ms": round(lat[0]), "max_ms": round(lat[-1]),
                          "mean_ms": round(statistics.mean(lat))}))
    finally:
        if pub:
            pub.stop()
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
