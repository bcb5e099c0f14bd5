#!/usr/bin/env python3
"""Measures `cloudmixer serve`: API latency (create → RUNNING, update → answered, delete → final
file) at 1 and 8 rooms, RSS of an idle service, and the CPU of a W1 room under `serve` against
`record --realtime` of the same room (same binary, same duration, run alternately).

    python3 scripts/bench-serve.py [--bin target/release/cloudmixer] [--reps 10] [--secs 20]

Prints a markdown table (the BENCHMARKS.md "Service" section). Only 127.0.0.1 is used.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = os.path.join(ROOT, "fixtures", "clips")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / tick


def rss_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Serve:
    def __init__(self, binary, storage):
        self.p = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu",
             "--storage", storage, "--media-root", CLIPS],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        self.base = line.strip().removeprefix("listening on ")

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, method=method, data=data)
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(r, timeout=120) as f:
                out = f.status, f.read()
        except urllib.error.HTTPError as e:
            out = e.code, e.read()
        return out[0], out[1], time.monotonic() - t0

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=60)


def w1(mid):
    cfg = json.load(open(os.path.join(ROOT, "fixtures/layouts/seed_side_by_side.json")))
    cfg["videoFileCfg"]["svrPathName"] = f"/{mid}.mp4"
    cfg["mixerID"] = mid
    cfg["inputs"] = {"Usr1.-1": "cam1_640x480_15.mp4", "Usr2.-1": "cam4_1280x720_30.mp4"}
    return cfg


def small(mid):
    return {"mode": 0, "mixerID": mid,
            "videoFileCfg": {"svrPathName": f"/{mid}.mp4", "vWidth": 320, "vHeight": 240,
                             "vFps": 15, "layoutConfig": [
                                 {"type": 0, "left": 0, "top": 0, "width": 320, "height": 240,
                                  "param": {"camid": "Usr1.-1"}}]},
            "inputs": {"Usr1.-1": "cam9_320x240_15.mp4"}}


PIP = json.load(open(os.path.join(ROOT, "fixtures/layouts/seed_pip_update.json")))
SMALL_UPDATE = {"videoFileCfg": {"layoutConfig": [
    {"type": 0, "left": 80, "top": 60, "width": 160, "height": 120,
     "param": {"camid": "Usr1.-1"}}]}}


def latency(s, n, reps, make, update):
    lat = {"create": [], "update": [], "delete": []}
    for rep in range(reps):
        ids = [f"r{rep}-{i}" for i in range(n)]

        def run(kind, f):
            res = [None] * n
            ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, f(ids[i]))) for i in range(n)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            for st, body, dt in res:
                assert st in (200, 201), (kind, st, body)
                lat[kind].append(dt * 1000)

        run("create", lambda i: s.req("POST", "/v1/mixers", make(i)))
        time.sleep(1)
        run("update", lambda i: s.req("POST", f"/v1/mixers/{i}/content", update))
        time.sleep(1)
        run("delete", lambda i: s.req("DELETE", f"/v1/mixers/{i}"))
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/cloudmixer"))
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--secs", type=int, default=20)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cm-bench-serve-")
    try:
        s = Serve(a.bin, os.path.join(work, "rec"))
        time.sleep(1)
        idle_rss = rss_of(s.p.pid)
        rows = []
        for name, n, make, upd in [("W1", 1, w1, PIP), ("320x240", 1, small, SMALL_UPDATE),
                                   ("320x240", 8, small, SMALL_UPDATE)]:
            lat = latency(s, n, a.reps, make, upd)
            rows.append((name, n, lat))
        after_rss = rss_of(s.p.pid)
        # CPU of one W1 room for a.secs: the service vs record --realtime, alternately
        serve_cpu, record_cpu = [], []
        for k in range(3):
            c0 = cpu_of(s.p.pid)
            st, body, _ = s.req("POST", "/v1/mixers", w1(f"cpu{k}"))
            assert st == 201, body
            time.sleep(a.secs)
            st, body, _ = s.req("DELETE", f"/v1/mixers/cpu{k}")
            assert st == 200, body
            serve_cpu.append(cpu_of(s.p.pid) - c0)
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([a.bin, "record", "--backend", "cpu", "--realtime", "--duration",
                            str(a.secs), "--config",
                            os.path.join(ROOT, "fixtures/layouts/seed_side_by_side.json"),
                            "--input", f"Usr1.-1={CLIPS}/cam1_640x480_15.mp4",
                            "--input", f"Usr2.-1={CLIPS}/cam4_1280x720_30.mp4",
                            "--storage", os.path.join(work, "rec"), "--output", f"rec{k}.mp4"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            record_cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        s.stop()
        print(f"binary: {a.bin}; cores: {os.cpu_count()}; reps: {a.reps}\n")
        print("| rooms | room | create → RUNNING p50 / p99 | update → answered p50 / p99 | delete → final p50 / p99 |")
        print("|---|---|---|---|---|")
        for name, n, lat in rows:
            cells = " | ".join(f"{pct(lat[k], 50):.1f} / {pct(lat[k], 99):.1f} ms"
                               for k in ("create", "update", "delete"))
            print(f"| {n} | {name} | {cells} |")
        print(f"\nidle service RSS: {idle_rss / 2**20:.1f} MiB (after the runs, rooms ended: {after_rss / 2**20:.1f} MiB)")
        print(f"W1 room, {a.secs} s: serve CPU {[round(x, 2) for x in serve_cpu]} s, "
              f"record --realtime CPU {[round(x, 2) for x in record_cpu]} s; "
              f"median ratio {statistics.median(serve_cpu) / statistics.median(record_cpu):.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
