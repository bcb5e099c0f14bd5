#!/usr/bin/env python3
"""Measures `cloudmixer serve --fleet` against a real nats-server -js on 127.0.0.1:

- admission: API call → 201 (the room RUNNING on the worker that took it) through three
  workers, one create at a time, beside a plain `serve` (no fleet) create of the same room in
  the same run;
- failover: kill -9 of the worker owning a room → the room RUNNING on the other worker (the
  `end` of its `gap` event), over N trials (default lease TTL, 3 s);
- the fleet's cost on a worker: CPU of one W1 room (seed side-by-side, cam1 + cam4) over
  --secs under `serve --fleet` and under plain `serve`, run alternately; CPU of an idle worker.

    python3 scripts/bench-fleet.py [--bin target/release/cloudmixer] [--reps 30] [--trials 10] [--secs 20]

Needs nats-server (scripts/install-deps.sh installs 2.15.1; $NATS_SERVER_BIN overrides).
Prints markdown for BENCHMARKS.md "Fleet".
"""
import argparse
import json
import os
import shutil
import signal
import socket
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
    k = max(0, min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def now_ms():
    return int(time.time() * 1000)


class Nats:
    def __init__(self, d):
        self.port = free_port()
        self.p = subprocess.Popen(
            [os.environ.get("NATS_SERVER_BIN", "nats-server"), "-js", "-a", "127.0.0.1",
             "-p", str(self.port), "-sd", os.path.join(d, "nats")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nats-server did not start")

    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def stop(self):
        self.p.kill()
        self.p.wait()


class Serve:
    def __init__(self, binary, storage, extra=()):
        self.p = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu",
             "--storage", storage, "--media-root", CLIPS, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.base = self.p.stdout.readline().strip().removeprefix("listening on ")
        threading.Thread(target=self.p.stdout.read, daemon=True).start()

    def req(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, data=data, method=method,
                                   headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=120) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def kill9(self):
        self.p.kill()
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(60)


def tiny(mid):
    return {"mixerID": mid, "mode": 0, "videoFileCfg": {
        "svrPathName": f"{mid}.mp4", "vWidth": 320, "vHeight": 240, "vFps": 15,
        "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 320, "height": 240,
                          "param": {"camid": "Usr1.-1"}}]},
            "inputs": {"Usr1.-1": "file:cam9_320x240_15.mp4"}}


def w1_room(mid):
    with open(os.path.join(ROOT, "fixtures", "layouts", "seed_side_by_side.json")) as f:
        v = json.load(f)
    v["videoFileCfg"]["svrPathName"] = f"{mid}.mp4"
    v["mixerID"] = mid
    v["inputs"] = {"Usr1.-1": "file:cam1_640x480_15.mp4", "Usr4.-1": "file:cam4_1280x720_30.mp4"}
    return v


def events(base, out, stop):
    def run():
        with urllib.request.urlopen(base + "/v1/events", timeout=600) as r:
            for line in r:
                if stop.is_set():
                    return
                line = line.decode().strip()
                if line.startswith("data: "):
                    out.append(json.loads(line[6:]))
    threading.Thread(target=run, daemon=True).start()


def admission(binary, d, reps):
    nats = Nats(d)
    ws = [Serve(binary, os.path.join(d, "rec"),
                ["--fleet", nats.url(), "--node-id", f"w{i}", "--max-rooms", "4"])
          for i in range(3)]
    plain = Serve(binary, os.path.join(d, "rec_plain"))
    fleet_ms, plain_ms = [], []
    try:
        for i in range(reps):
            w = ws[i % 3]
            t0 = time.perf_counter()
            st, v = w.req("POST", "/v1/mixers", tiny(f"a{i}"))
            fleet_ms.append((time.perf_counter() - t0) * 1000)
            assert st == 201, v
            t0 = time.perf_counter()
            st, v = plain.req("POST", "/v1/mixers", tiny(f"p{i}"))
            plain_ms.append((time.perf_counter() - t0) * 1000)
            assert st == 201, v
            time.sleep(0.3)
            assert ws[(i + 1) % 3].req("DELETE", f"/v1/mixers/a{i}")[0] == 200
            assert plain.req("DELETE", f"/v1/mixers/p{i}")[0] == 200
    finally:
        for w in ws + [plain]:
            w.stop()
        nats.stop()
    return fleet_ms, plain_ms


def failover(binary, d, trials):
    nats = Nats(d)
    out = []
    try:
        for t in range(trials):
            victim = Serve(binary, os.path.join(d, "rec"),
                           ["--fleet", nats.url(), "--node-id", f"v{t}", "--max-rooms", "1"])
            mid = f"fo{t}"
            st, v = victim.req("POST", "/v1/mixers", tiny(mid))
            assert st == 201 and v["owner"] == f"v{t}", v
            taker = Serve(binary, os.path.join(d, "rec"),
                          ["--fleet", nats.url(), "--node-id", f"t{t}", "--max-rooms", "1"])
            evs, stop = [], threading.Event()
            events(taker.base, evs, stop)
            time.sleep(2)
            victim.kill9()
            t_kill = now_ms()
            t0 = time.time()
            gap = None
            while time.time() - t0 < 15 and gap is None:
                gap = next((e for e in evs if e.get("event") == "gap" and e.get("mixerID") == mid), None)
                time.sleep(0.05)
            assert gap, f"trial {t}: no takeover"
            out.append(gap["end"] - t_kill)
            stop.set()
            assert taker.req("DELETE", f"/v1/mixers/{mid}")[0] == 200
            taker.stop()
    finally:
        nats.stop()
    return out


def cost(binary, d, secs, reps):
    nats = Nats(d)
    fleet, plain, idle_fleet, idle_plain = [], [], [], []
    try:
        for r in range(reps):
            for mode in ("fleet", "plain"):
                extra = ["--fleet", nats.url(), "--node-id", f"c{r}"] if mode == "fleet" else []
                s = Serve(binary, os.path.join(d, "rec"), extra)
                time.sleep(1)
                c0 = cpu_of(s.p.pid)
                time.sleep(secs / 2)
                (idle_fleet if mode == "fleet" else idle_plain).append(
                    (cpu_of(s.p.pid) - c0) / (secs / 2))
                c0 = cpu_of(s.p.pid)
                st, v = s.req("POST", "/v1/mixers", w1_room(f"{mode}{r}"))
                assert st == 201, v
                time.sleep(secs)
                assert s.req("DELETE", f"/v1/mixers/{mode}{r}")[0] == 200
                (fleet if mode == "fleet" else plain).append(cpu_of(s.p.pid) - c0)
                s.stop()
    finally:
        nats.stop()
    return fleet, plain, idle_fleet, idle_plain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "cloudmixer"))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--parts", default="admission,failover,cost",
                    help="which measures, comma-separated")
    a = ap.parse_args()
    parts = a.parts.split(",")
    d = tempfile.mkdtemp(prefix="bench-fleet-")
    try:
        if "admission" in parts:
            f, p = admission(a.bin, os.path.join(d, "adm"), a.reps)
            print(f"| create → RUNNING, 3 workers (fleet) | {pct(f, 50):.1f} ms | {pct(f, 99):.1f} ms |")
            print(f"| create → RUNNING, plain serve | {pct(p, 50):.1f} ms | {pct(p, 99):.1f} ms |")
        if "failover" in parts:
            fo = failover(a.bin, os.path.join(d, "fo"), a.trials)
            print(f"failover (kill -9 → RUNNING on the other worker), {len(fo)} trials: "
                  f"min {min(fo)} / median {statistics.median(fo):.0f} / max {max(fo)} ms; all: {fo}")
        if "cost" in parts:
            fl, pl, ifl, ipl = cost(a.bin, os.path.join(d, "cost"), a.secs, 3)
            print(f"W1 room over {a.secs:.0f} s, CPU s: fleet {[round(x, 2) for x in fl]} "
                  f"plain {[round(x, 2) for x in pl]}; median ratio "
                  f"{statistics.median(fl) / statistics.median(pl):.3f}")
            print(f"idle worker, cores: fleet {[round(x, 4) for x in ifl]} "
                  f"plain {[round(x, 4) for x in ipl]}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
