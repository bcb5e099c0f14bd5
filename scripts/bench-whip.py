#!/usr/bin/env python3
"""N simultaneous WHIP publishers into one service on this box (BENCHMARKS.md "Network
ingest"): how many are kept without loss.

One headless Chromium page opens N peer connections, each sending its own canvas
(`captureStream`, W x H at FPS, a moving pattern so every frame differs) by WHIP to
`/v1/whip/bench/Usr{i}.-1` of a `cloudmixer serve` recording one mixer that shows all N
cameras in a grid (1280x720 at 15 fps). After a warm-up the script samples the mixer's
`inputStates` and source stats over SECS seconds. A publisher is *kept* when its input stayed
`live` all along, the service pushed at least 99 % of the frames the browser sent (its
`framesSent`, capped at FPS), and no frame of it was lost in the service (`lostFrames`
unchanged).
Also: the service's CPU (cores, from /proc), the CPU of its WHIP session threads
(`cm-whip-…`: str0m, depacketizing and decoding) and the mixer's late ticks. Per input the output
lists (camid, fps the browser sent, fps the service decoded and pushed, frames lost in the
service, kept); the browser posts its `framesSent` to the page's server once a second, so a
browser that cannot encode N streams in real time on the same cores shows as `sent` < FPS.

    python3 scripts/bench-whip.py [--bin target/release/cloudmixer] [--n 16] [--secs 20]
                                  [--size 320x240] [--fps 15]

The service and the browser run in a network namespace with only `lo` (`unshare -n`, needs
root), as the tests do; Chromium needs `--allow-loopback-in-peer-connection` there.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-whip-token-0123456789abcdef"
TICK = os.sysconf("SC_CLK_TCK")

PAGE = """<!doctype html><meta charset=utf-8><title>starting</title><body></body><script>
const q = new URLSearchParams(location.hash.slice(1));
const N = Number(q.get('n')), W = Number(q.get('w')), H = Number(q.get('h')),
      FPS = Number(q.get('fps'));
window.drawn = new Array(N).fill(0); window.status = new Array(N).fill('');
window.pcs = [];
const canvases = [];
for (let i = 0; i < N; i++) {
  const c = document.createElement('canvas'); c.width = W; c.height = H;
  document.body.appendChild(c); canvases.push(c);
}
function draw() {
  const t = performance.now() / 1000;
  canvases.forEach((c, i) => {
    const g = c.getContext('2d');
    g.fillStyle = `hsl(${(i * 360 / N) | 0},80%,40%)`; g.fillRect(0, 0, W, H);
    g.fillStyle = '#fff';
    g.fillRect(((t * 97 + i * 13) % 1) * (W - 40), ((t * 0.61 + i * 0.1) % 1) * (H - 40), 40, 40);
    drawn[i]++;
  });
}
setInterval(draw, 1000 / FPS);
async function publish(i) {
  const pc = new RTCPeerConnection(); pcs[i] = pc;
  const s = canvases[i].captureStream(FPS);
  pc.addTransceiver(s.getVideoTracks()[0], {direction: 'sendonly'});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const r = await fetch(q.get('base') + `/v1/whip/bench/Usr${i + 1}.-1`, {method: 'POST',
    body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + q.get('token')}});
  if (r.status !== 201) { status[i] = 'refused ' + r.status + ' ' + await r.text(); return; }
  await pc.setRemoteDescription({type: 'answer', sdp: await r.text()});
  status[i] = 'sent';
}
(async () => {
  for (let i = 0; i < N; i++) { await publish(i); }
  document.title = 'published';
})();
setInterval(async () => {
  try { await fetch('/stats', {method: 'POST', body: JSON.stringify(await report())}); } catch (e) {}
}, 1000);
async function report() {
  const out = [];
  for (let i = 0; i < N; i++) {
    let sent = 0;
    if (pcs[i]) {
      const st = await pcs[i].getStats();
      st.forEach(x => { if (x.type === 'outbound-rtp' && x.kind === 'video') sent = x.framesSent; });
    }
    out.push({drawn: drawn[i], encoded: sent, status: status[i], ice: pcs[i] ? pcs[i].iceConnectionState : ''});
  }
  return out;
}
</script>
"""


def thread_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    parts = s[s.rindex(")") + 2:].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def threads_cpu(pid, prefix):
    """CPU seconds of the process's threads whose name starts with `prefix`."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                st = f.read()
        except FileNotFoundError:
            continue
        if st[st.index("(") + 1:st.rindex(")")].startswith(prefix):
            parts = st[st.rindex(")") + 2:].split()
            total += int(parts[11]) + int(parts[12])
    return total / TICK


def get(base, path):
    return json.load(urllib.request.urlopen(urllib.request.Request(
        base + path, headers={"Authorization": f"Bearer {TOKEN}"}), timeout=10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/cloudmixer"))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--secs", type=float, default=20)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.inner:
        # run ourselves again inside a fresh network namespace with only lo up
        cmd = ["unshare", "-n", "sh", "-c",
               "ip link set lo up && exec \"$0\" \"$@\" --inner", sys.executable] + sys.argv
        sys.exit(subprocess.call(cmd))
    w, h = (int(x) for x in a.size.split("x"))
    tmp = tempfile.mkdtemp(prefix="bench-whip-")
    procs = []
    try:
        storage = os.path.join(tmp, "rec")
        os.makedirs(storage)
        with open(os.path.join(tmp, "token"), "w") as f:
            f.write(TOKEN)
        page = os.path.join(tmp, "page.html")
        with open(page, "w") as f:
            f.write(PAGE)
        # the page is served over http so its origin can be allowed
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(PAGE.encode())

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                browser["at"] = time.time()
                browser["stats"] = json.loads(self.rfile.read(n))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass
        browser = {}
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        origin = f"http://127.0.0.1:{httpd.server_address[1]}"
        s = subprocess.Popen([a.bin, "serve", "--listen", "127.0.0.1:0", "--backend", "cpu",
                              "--storage", storage, "--token-file", os.path.join(tmp, "token"),
                              "--webrtc-udp", "127.0.0.1:41000-41199", "--whip-origin", origin],
                             stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "serve.log"), "w"),
                             text=True)
        procs.append(s)
        base = s.stdout.readline().strip().removeprefix("listening on ")
        cols = 4 if a.n > 9 else 3 if a.n > 4 else 2
        rows = (a.n + cols - 1) // cols
        tw, th = 1280 // cols // 2 * 2, 720 // rows // 2 * 2
        layout = [{"type": 0, "left": (i % cols) * tw, "top": (i // cols) * th, "width": tw,
                   "height": th, "param": {"camid": f"Usr{i + 1}.-1"}} for i in range(a.n)]
        body = {"mixerID": "bench", "mode": 0, "inputs": {},
                "videoFileCfg": {"svrPathName": "/bench.mp4", "vWidth": 1280, "vHeight": 720,
                                 "vFps": 15, "layoutConfig": layout}}
        urllib.request.urlopen(urllib.request.Request(
            base + "/v1/mixers", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}),
            timeout=30).read()
        url = f"{origin}/#base={base}&token={TOKEN}&n={a.n}&w={w}&h={h}&fps={a.fps}"
        chrome = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
             "--allow-loopback-in-peer-connection",
             "--disable-features=WebRtcHideLocalIpsWithMdns", f"--user-data-dir={tmp}/chrome",
             "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(chrome)
        # warm-up: every input live (or 30 s)
        t0 = time.time()
        while time.time() - t0 < 30:
            st = get(base, "/v1/mixers/bench").get("inputStates", [])
            if sum(1 for i in st if i["state"] == "live") >= a.n:
                break
            time.sleep(0.5)
        else:
            with open(os.path.join(tmp, "serve.log")) as f:
                sys.stderr.write("not every input went live; the service said:\n" + f.read()[-3000:])
        time.sleep(3)
        m0 = get(base, "/v1/mixers/bench")
        b0 = browser.get("stats")
        c0 = thread_cpu(s.pid)
        w0 = threads_cpu(s.pid, "cm-whip")
        ok_all = {i["input"]: True for i in m0.get("inputStates", []) if i["state"] == "live"}
        t_end = time.time() + a.secs
        while time.time() < t_end:
            for i in get(base, "/v1/mixers/bench").get("inputStates", []):
                if i["state"] != "live":
                    ok_all[i["input"]] = False
            time.sleep(0.5)
        m1 = get(base, "/v1/mixers/bench")
        b1 = browser.get("stats")
        c1 = thread_cpu(s.pid)
        w1 = threads_cpu(s.pid, "cm-whip")
        before = {i["input"]: i for i in m0.get("inputStates", [])}
        kept = 0
        rows_out = []
        for i in m1.get("inputStates", []):
            b = before.get(i["input"])
            if not b:
                continue
            frames = i["videoFrames"] - b["videoFrames"]
            lost = i["lostFrames"] - b["lostFrames"]
            fps = frames / a.secs
            # what the browser sent of this camera over the same window (its stats, posted
            # about once a second: the window is matched to within ~1 s)
            k = int(i["input"][3:].split(".")[0]) - 1
            sent = (b1[k]["encoded"] - b0[k]["encoded"]) / a.secs if b0 and b1 else float("nan")
            good = ok_all.get(i["input"], False) and lost == 0 and fps >= 0.99 * min(sent, a.fps)
            kept += good
            rows_out.append((i["input"], round(sent, 2), round(fps, 2), lost, good))
        late = m1["stats"].get("lateTicks", 0) - m0["stats"].get("lateTicks", 0)
        print(json.dumps({"publishers": a.n, "live_at_start": len(ok_all), "kept": kept,
                          "service_cores": round((c1 - c0) / a.secs, 3),
                          "whip_session_cores": round((w1 - w0) / a.secs, 3),
                          "late_ticks": late, "size": a.size, "fps": a.fps,
                          "per_input": rows_out}, indent=None))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
