#!/usr/bin/env python3
"""CPU of ingesting one 720p30 stream (demux + H.264 and AAC decode), cloudmixer's pull feed
against FFmpeg reading the same stream, per protocol (BENCHMARKS.md "Network ingest").

For each protocol and rep, a fresh FFmpeg publisher sends fixtures/clips/cam4_1280x720_30.mp4
(1280x720 30 fps H.264 + AAC, looped, `-re`, stream copy) and then, one after the other:

- `ffmpeg -i URL -t SECS -f null -`: its whole process CPU (user + sys, from wait4);
- `cloudmixer serve` with one mixer (160x120 at 15 fps, so composing and encoding stay small)
  pulling URL for SECS: the CPU of the threads named `cm-pull-…` (the pull thread and the
  decoder's slice threads, which inherit its name), read from /proc/PID/task/*/stat.

    python3 scripts/bench-ingest.py [--bin target/release/cloudmixer] [--secs 20] [--reps 3]

Protocols: rtmp (through nginx-rtmp, as the tests run it), srt (FFmpeg as the SRT listener,
the reader calls), http (FFmpeg's HTTP server mode, progressive MPEG-TS). Loopback only.

Publish protocols (the publisher connects to the reader): rtmp-publish (FFmpeg `-listen 1`
as the RTMP server against `serve --rtmp-listen`: threads `cm-rtmp…` and `cm-pub…`) and
srt-publish (FFmpeg's SRT listener against `serve --srt-listen`: threads `cm-srt…`,
`cm-pub…` and the SRT runtime's `tokio-runtime-worker`).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = os.path.join(ROOT, "fixtures", "clips", "cam4_1280x720_30.mp4")
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def thread_cpu(pid, prefix):
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0.0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
        except FileNotFoundError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        if name.startswith(prefix):
            parts = s[s.rindex(")") + 2:].split()
            total += int(parts[11]) + int(parts[12])
    return total / TICK


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


def publisher(proto, port):
    """(publisher process, the URL a reader opens)"""
    base = ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", CLIP, "-c", "copy"]
    if proto == "rtmp":
        url = f"rtmp://127.0.0.1:{port}/live/cam"
        p = subprocess.Popen(base + ["-f", "flv", url], stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        return p, url
    if proto == "srt":
        p = subprocess.Popen(base + ["-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener"],
                             stdin=subprocess.DEVNULL)
        time.sleep(0.5)
        return p, f"srt://127.0.0.1:{port}"
    p = subprocess.Popen(base + ["-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/cam.ts"],
                         stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    return p, f"http://127.0.0.1:{port}/cam.ts"


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


PUB_BASE = ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", CLIP, "-c", "copy"]


def start_publisher(proto, port, path):
    if proto == "rtmp-publish":
        args = ["-f", "flv", f"rtmp://127.0.0.1:{port}/live/{path}"]
    else:
        args = ["-f", "mpegts", f"srt://127.0.0.1:{port}?streamid=live/{path}"]
    return subprocess.Popen(PUB_BASE + args, stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def ffmpeg_listener(proto, port, secs):
    """FFmpeg as the server the publisher connects to, reading for SECS after it came."""
    if proto == "rtmp-publish":
        url = f"rtmp://127.0.0.1:{port}/live/cam/Usr1.-1"
        args = ["-listen", "1", "-i", url]
    else:
        url = f"srt://127.0.0.1:{port}?mode=listener"
        args = ["-i", url]
    r = subprocess.Popen(["ffmpeg", "-v", "error"] + args + ["-t", str(secs), "-f", "null", "-"],
                         stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    pub = start_publisher(proto, port, "cam/Usr1.-1")
    try:
        _, _, ru = os.wait4(r.pid, 0)
    finally:
        stop(pub)
    return ru.ru_utime + ru.ru_stime


def cloudmixer_publish(binary, tmp, proto, port, secs):
    storage = os.path.join(tmp, "rec")
    os.makedirs(storage, exist_ok=True)
    flag = "--rtmp-listen" if proto == "rtmp-publish" else "--srt-listen"
    s = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu",
                          "--storage", storage, flag, f"127.0.0.1:{port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = s.stdout.readline().strip().removeprefix("listening on ")
    body = {"mixerID": "m1", "mode": 0, "inputs": {},
            "videoFileCfg": {"svrPathName": "/m1.mp4", "vWidth": 160, "vHeight": 120, "vFps": 15,
                             "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 160,
                                               "height": 120, "param": {"camid": "Usr1.-1"}}]}}
    req = urllib.request.Request(base + "/v1/mixers", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    pub = start_publisher(proto, port, "m1/Usr1.-1")
    prefixes = ("cm-rtmp", "cm-pub") if proto == "rtmp-publish" else (
        "cm-srt", "cm-pub", "tokio-runtime-w")
    try:
        t0 = time.time()
        while time.time() - t0 < 15:
            v = json.load(urllib.request.urlopen(base + "/v1/mixers/m1", timeout=10))
            if any(i.get("state") == "live" for i in v.get("inputStates", [])):
                break
            time.sleep(0.1)
        c0 = sum(thread_cpu(s.pid, p) for p in prefixes)
        time.sleep(secs)
        c1 = sum(thread_cpu(s.pid, p) for p in prefixes)
        v = json.load(urllib.request.urlopen(base + "/v1/mixers/m1", timeout=10))
        urllib.request.urlopen(urllib.request.Request(base + "/v1/mixers/m1", method="DELETE"),
                               timeout=60).read()
    finally:
        stop(pub)
        stop(s)
        shutil.rmtree(storage, ignore_errors=True)
    st = (v.get("inputStates") or [{}])[0]
    return c1 - c0, st


def ffmpeg_reader(url, secs):
    p = subprocess.Popen(["ffmpeg", "-v", "error", "-i", url, "-t", str(secs), "-f", "null", "-"],
                         stdin=subprocess.DEVNULL)
    _, _, ru = os.wait4(p.pid, 0)
    return ru.ru_utime + ru.ru_stime


def cloudmixer_reader(binary, tmp, url, secs):
    storage = os.path.join(tmp, "rec")
    os.makedirs(storage, exist_ok=True)
    s = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu",
                          "--storage", storage], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    base = s.stdout.readline().strip().removeprefix("listening on ")
    body = {"mixerID": "m1", "mode": 0, "inputs": {"Usr1.-1": url},
            "videoFileCfg": {"svrPathName": "/m1.mp4", "vWidth": 160, "vHeight": 120, "vFps": 15,
                             "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 160,
                                               "height": 120, "param": {"camid": "Usr1.-1"}}]}}
    req = urllib.request.Request(base + "/v1/mixers", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    # from the first live state on
    t0 = time.time()
    while time.time() - t0 < 15:
        v = json.load(urllib.request.urlopen(base + "/v1/mixers/m1", timeout=10))
        if any(i.get("state") == "live" for i in v.get("inputStates", [])):
            break
        time.sleep(0.1)
    c0 = thread_cpu(s.pid, "cm-pull")
    time.sleep(secs)
    c1 = thread_cpu(s.pid, "cm-pull")
    v = json.load(urllib.request.urlopen(base + "/v1/mixers/m1", timeout=10))
    urllib.request.urlopen(urllib.request.Request(base + "/v1/mixers/m1", method="DELETE"),
                           timeout=60).read()
    stop(s)
    shutil.rmtree(storage, ignore_errors=True)
    st = (v.get("inputStates") or [{}])[0]
    return c1 - c0, st


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/cloudmixer"))
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--protocols", default="rtmp,srt,http")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-ingest-")
    rows = []
    try:
        for proto in a.protocols.split(","):
            ff, cm, fps = [], [], []
            ng = None
            port = free_port()
            if proto == "rtmp":
                ng = nginx(tmp, port)
            try:
                for _ in range(a.reps):
                    for who in ("ffmpeg", "cloudmixer"):
                        if proto.endswith("-publish"):
                            if who == "ffmpeg":
                                ff.append(ffmpeg_listener(proto, port, a.secs) / a.secs)
                            else:
                                c, st = cloudmixer_publish(a.bin, tmp, proto, port, a.secs)
                                cm.append(c / a.secs)
                                fps.append(st.get("fps", 0))
                            time.sleep(0.5)
                            continue
                        pub, url = publisher(proto, port)
                        try:
                            if who == "ffmpeg":
                                ff.append(ffmpeg_reader(url, a.secs) / a.secs)
                            else:
                                c, st = cloudmixer_reader(a.bin, tmp, url, a.secs)
                                cm.append(c / a.secs)
                                fps.append(st.get("fps", 0))
                        finally:
                            stop(pub)
                        time.sleep(0.5)
            finally:
                if ng:
                    stop(ng)
            rows.append((proto, ff, cm, fps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("| protocol | FFmpeg `-f null` (cores, min / median / max) | cloudmixer pull "
          "(cores, min / median / max) | ratio of medians | input fps seen |")
    print("|---|---|---|---|---|")
    for proto, ff, cm, fps in rows:
        f = lambda xs: f"{min(xs):.3f} / {statistics.median(xs):.3f} / {max(xs):.3f}"
        print(f"| {proto} | {f(ff)} | {f(cm)} | "
              f"{statistics.median(cm) / statistics.median(ff):.2f} | "
              f"{', '.join(str(round(x, 1)) for x in fps)} |")


if __name__ == "__main__":
    main()
