#!/usr/bin/env python3
"""Measures the recordings API of `cloudmixer serve` (BENCHMARKS.md "Recordings API"):

- list latency with 10 000 recordings under the storage root (100 folders x 100 one-second
  clips): the first page (its files probed by FFmpeg), then the same page again (probe cache),
  a `prefix` filter and a 1000-item page;
- download throughput of a 1 GiB local file over loopback (curl to /dev/null), side by side with
  nginx serving the same file (`sendfile on`);
- Range request latency (random 64 KiB ranges of that file over one keep-alive connection),
  p50 / p99, the same against nginx.

    python3 scripts/bench-recordings.py [--bin target/release/cloudmixer] [--reps 5]

Only 127.0.0.1 is used. Needs ffmpeg, curl and nginx (scripts/install-deps.sh).
"""
import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Serve:
    def __init__(self, binary, storage, tmp):
        tf = os.path.join(tmp, "token")
        with open(tf, "w") as f:
            f.write(TOKEN + "\n")
        self.p = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu",
             "--storage", storage, "--token-file", tf],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        base = line.strip().removeprefix("listening on ").removeprefix("http://")
        self.host, port = base.rsplit(":", 1)
        self.port = int(port)

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=30)


def timed_get(conn, path, headers):
    t = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    return time.perf_counter() - t, r.status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/cloudmixer"))
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-rec-")
    os.chmod(tmp, 0o755)  # nginx workers run as another user
    storage = os.path.join(tmp, "rec")
    os.makedirs(storage)
    auth = {"Authorization": "Bearer " + TOKEN}
    try:
        # 10 000 recordings: one encoded clip, hard-linked (different paths, the same bytes)
        clip = os.path.join(tmp, "clip.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=s=320x240:r=15:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                        clip], check=True)
        for d in range(100):
            sub = os.path.join(storage, f"2026-12-{d:03d}")
            os.makedirs(sub)
            for i in range(100):
                os.link(clip, os.path.join(sub, f"room{i:03d}.mp4"))
        big = os.path.join(storage, "big.mp4")
        with open(big, "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
        size = os.path.getsize(big)

        s = Serve(a.bin, storage, tmp)
        c = s.conn()
        rows = []
        first, st, body = timed_get(c, "/v1/recordings", auth)
        assert st == 200, body[:200]
        total = json.loads(body)["total"]
        warm = [timed_get(c, "/v1/recordings", auth)[0] for _ in range(20)]
        pref = [timed_get(c, "/v1/recordings?prefix=2026-12-050/", auth)[0] for _ in range(20)]
        big_first, st, _ = timed_get(c, "/v1/recordings?pageSize=1000&page=2", auth)
        big_warm = [timed_get(c, "/v1/recordings?pageSize=1000&page=2", auth)[0]
                    for _ in range(5)]
        rows.append(("list, first page (50 probed)", f"{first * 1000:.1f} ms"))
        rows.append(("list, same page again p50 / p99",
                     f"{pct(warm, 50) * 1000:.1f} / {pct(warm, 99) * 1000:.1f} ms"))
        rows.append(("list, prefix of one folder p50 / p99",
                     f"{pct(pref, 50) * 1000:.1f} / {pct(pref, 99) * 1000:.1f} ms"))
        rows.append(("list, 1000-item page: first (probed) / again p50",
                     f"{big_first * 1000:.1f} / {pct(big_warm, 50) * 1000:.1f} ms"))

        # nginx beside it, serving the same root
        nport = free_port()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
worker_processes 1; events {{ worker_connections 64; }}
http {{ access_log off; sendfile on;
  client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
  uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
  server {{ listen 127.0.0.1:{nport}; root {storage}; }} }}
""")
        ng = subprocess.Popen(["nginx", "-c", conf, "-p", tmp],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            urls = {
                "cloudmixer": (f"http://{s.host}:{s.port}/v1/recordings/big.mp4",
                               ["-H", "Authorization: Bearer " + TOKEN]),
                "nginx": (f"http://127.0.0.1:{nport}/big.mp4", []),
            }
            thr = {k: [] for k in urls}
            for _ in range(a.reps):
                for k, (u, h) in urls.items():
                    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                                          "%{http_code} %{size_download} %{time_total}", *h, u],
                                         capture_output=True, text=True, check=True).stdout
                    code, n, t = out.split()
                    assert code == "200" and int(n) == size, out
                    thr[k].append(size / float(t) / 1e9)
            for k, xs in thr.items():
                rows.append((f"download 1 GiB, {k} (min / median / max)",
                             f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f} GB/s"))
            rng = random.Random(7)
            for k, port, path, h in [("cloudmixer", s.port, "/v1/recordings/big.mp4", auth),
                                     ("nginx", nport, "/big.mp4", {})]:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                lat = []
                for _ in range(1000):
                    start = rng.randrange(0, size - 65536)
                    hh = dict(h)
                    hh["Range"] = f"bytes={start}-{start + 65535}"
                    t, st, body = timed_get(conn, path, hh)
                    assert st == 206 and len(body) == 65536, st
                    lat.append(t)
                rows.append((f"Range 64 KiB, {k}: p50 / p99 (1000 requests)",
                             f"{pct(lat, 50) * 1000:.2f} / {pct(lat, 99) * 1000:.2f} ms"))
        finally:
            ng.terminate()
            ng.wait(timeout=10)
        s.stop()
        print(f"recordings listed: {total}\n")
        print("| measure | figure |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
