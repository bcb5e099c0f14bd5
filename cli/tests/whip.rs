//! WebRTC ingest by WHIP (RFC 9725) into `cloudmixer serve`: the refusals and CORS answers
//! with a hand-written offer (no browser), and Debian's `chromium` (driven through
//! `chromedriver`) publishing a flash-and-beep clip from its fake camera and microphone: the
//! recording shows the browser's camera with each flash's beep in step, and the placeholder
//! once the page closes its peer connection.
//!
//! The service and the browser run in a network namespace of their own with only `lo` up
//! (`unshare(CLONE_NEWNET)` in the test's thread, which its children inherit): the test needs
//! root for that (CI runs as root); elsewhere it says so and uses the host's loopback.
//!
//! Where chromium or chromedriver cannot start the browser test says why and passes, unless
//! `CLOUDMIXER_REQUIRE_BROWSER=1` (CI sets it): then it fails.

#[path = "common/browser.rs"]
mod browser_kit;
mod common;
use browser_kit::{chromium, Driver};

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, header, spawn_serve, test_dir, TOKEN};
use fantoccini::Client;
use serde_json::{json, Value};

/// Output rate of the recordings.
const FPS: f64 = 30.0;

/// The service, killed when dropped.
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(d: &Path, extra: &[&str]) -> Serve {
        Serve::start_with(d, true, extra)
    }

    fn start_with(d: &Path, token: bool, extra: &[&str]) -> Serve {
        let (child, base) = spawn_serve(
            d,
            token,
            extra,
            Stdio::from(std::fs::File::create(d.join("serve.log")).unwrap()),
        );
        Serve { child, base }
    }

    /// A request with the token (unless `token` is false): status, headers, body.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
        token: bool,
    ) -> (u16, Vec<(String, String)>, String) {
        let url = format!("{}{path}", self.base);
        let a = agent();
        let auth = format!("Bearer {TOKEN}");
        macro_rules! with_headers {
            ($r:expr) => {{
                let mut r = $r;
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                if token {
                    r = r.header("Authorization", &auth);
                }
                r
            }};
        }
        let resp = match (method, body) {
            ("POST", Some((ctype, b))) => with_headers!(a.post(&url))
                .header("Content-Type", ctype)
                .send(b),
            ("POST", None) => with_headers!(a.post(&url)).send_empty(),
            ("GET", _) => with_headers!(a.get(&url)).call(),
            ("DELETE", _) => with_headers!(a.delete(&url)).call(),
            ("OPTIONS", _) => with_headers!(a.options(&url)).call(),
            (m, _) => panic!("method {m}"),
        };
        let mut r = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let st = r.status().as_u16();
        let h = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (st, h, text)
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let b = body.map(|v| v.to_string());
        let (st, _, t) = self.call(
            method,
            path,
            &[],
            b.as_deref().map(|b| ("application/json", b)),
            true,
        );
        (st, serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    fn input(&self, mixer: &str) -> Value {
        let (_, v) = self.json("GET", &format!("/v1/mixers/{mixer}"), None);
        v["inputStates"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["input"] == "Usr1.-1").cloned())
            .unwrap_or(Value::Null)
    }
}

/// A room showing `Usr1.-1` on the whole 320x240 canvas (`inputs` may feed cameras).
fn room(id: &str, inputs: Value) -> Value {
    json!({"mixerID": id, "mode": 0, "inputs": inputs,
        "videoFileCfg": {"svrPathName": format!("/{id}.mp4"), "vWidth": 320, "vHeight": 240,
            "vFps": FPS as u32, "layoutConfig": [{"type": 0, "left": 0, "top": 0, "width": 320,
            "height": 240, "param": {"camid": "Usr1.-1"}}]}})
}

/// A browser's offer as WHIP clients send it (VP8 + Opus, sendonly, one BUNDLE), written by
/// hand: what the service answers and holds the camera with until the ICE deadline.
fn static_offer() -> String {
    let fp = (0..32)
        .map(|i| format!("{:02X}", i * 7))
        .collect::<Vec<_>>()
        .join(":");
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        &format!("a=fingerprint:sha-256 {fp}"),
        "a=setup:actpass",
        "a=mid:0",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=ssrc:1111 cname:x",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        &format!("a=fingerprint:sha-256 {fp}"),
        "a=setup:actpass",
        "a=mid:1",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:2222 cname:x",
        "",
    ]
    .join("\r\n")
}

/// Refusals (before any ICE), the session's Location and DELETE, CORS: the service's answers
/// to a hand-written offer.
#[test]
fn whip_refuses_checks_and_answers() {
    // in a network namespace of its own: its UDP ports are free
    let res = std::thread::spawn(|| {
        own_network();
        refusals_and_answers();
    })
    .join();
    res.unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn refusals_and_answers() {
    let d = test_dir("whip", "answers");
    let origin = "http://127.0.0.1:9";
    let s = Serve::start(
        &d,
        &[
            "--webrtc-udp",
            "127.0.0.1:47100-47101",
            "--whip-origin",
            origin,
        ],
    );
    let offer = static_offer();
    let sdp = Some(("application/sdp", offer.as_str()));
    // no token: 401, with CORS headers for an allowed page (it can read the error)
    let (st, h, t) = s.call(
        "POST",
        "/v1/whip/r1/Usr1.-1",
        &[("Origin", origin)],
        sdp,
        false,
    );
    assert_eq!(st, 401, "{t}");
    assert_eq!(header(&h, "access-control-allow-origin"), origin);
    // an unknown mixer: 404 before any ICE
    let (st, _, t) = s.call("POST", "/v1/whip/nope/Usr1.-1", &[], sdp, true);
    assert_eq!(st, 404, "{t}");
    let (st, v) = s.json(
        "POST",
        "/v1/mixers",
        Some(&room("r1", json!({"Usr2.-1": "cam1_640x480_15.mp4"}))),
    );
    assert_eq!(st, 201, "{v}");
    // not SDP, a bad camid, a camera the inputs feed
    let (st, _, t) = s.call(
        "POST",
        "/v1/whip/r1/Usr1.-1",
        &[],
        Some(("application/json", "{}")),
        true,
    );
    assert_eq!(st, 415, "{t}");
    let (st, _, t) = s.call("POST", "/v1/whip/r1/Usr1", &[], sdp, true);
    assert_eq!(st, 400, "{t}");
    let (st, _, t) = s.call("POST", "/v1/whip/r1/Usr2.-1", &[], sdp, true);
    assert_eq!(st, 409, "{t}");
    assert!(t.contains("906"), "{t}");
    let (st, _, t) = s.call(
        "POST",
        "/v1/whip/r1/Usr1.-1",
        &[],
        Some(("application/sdp", "v=0\r\nnot sdp")),
        true,
    );
    assert_eq!(st, 400, "{t}");
    // nothing holds the camera after the refused offers
    assert_ne!(s.input("r1")["state"], "connecting", "{}", s.input("r1"));
    // an offer: 201, the answer (ICE-lite, our candidate), the Location
    let (st, h, answer) = s.call(
        "POST",
        "/v1/whip/r1/Usr1.-1",
        &[("Origin", origin)],
        sdp,
        true,
    );
    assert_eq!(st, 201, "{answer}");
    assert_eq!(header(&h, "content-type"), "application/sdp");
    assert_eq!(header(&h, "access-control-allow-origin"), origin);
    assert_eq!(header(&h, "access-control-expose-headers"), "Location");
    let loc = header(&h, "location").to_string();
    assert!(loc.starts_with("/v1/whip/r1/Usr1.-1/"), "{loc}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(
        answer.contains("127.0.0.1 4710") && answer.contains("typ host"),
        "{answer}"
    );
    assert_eq!(s.input("r1")["state"], "connecting");
    // a second publisher for the same camera: 409
    let (st, _, t) = s.call("POST", "/v1/whip/r1/Usr1.-1", &[], sdp, true);
    assert_eq!(st, 409, "{t}");
    assert!(t.contains("906") && t.contains("already"), "{t}");
    // a DELETE of another camera's session: 404; of this one: 200, the camera is free
    let other = loc.replace("Usr1.-1", "Usr3.-1");
    let (st, _, _) = s.call("DELETE", &other, &[], None, true);
    assert_eq!(st, 404);
    let (st, _, _) = s.call("DELETE", &loc, &[], None, false);
    assert_eq!(st, 401);
    let (st, _, t) = s.call("DELETE", &loc, &[], None, true);
    assert_eq!(st, 200, "{t}");
    let i = s.input("r1");
    assert_eq!(
        (i["state"].as_str(), i["error"].as_str()),
        (
            Some("idle"),
            Some("the publisher ended the session (DELETE)")
        ),
        "{i}"
    );
    let (st, _, _) = s.call("DELETE", &loc, &[], None, true);
    assert_eq!(st, 404);
    // the port range bounds the sessions: two ports, two sessions, the third is refused
    let (st, v) = s.json(
        "POST",
        "/v1/mixers",
        Some(
            &json!({"mixerID": "r2", "mode": 0, "videoFileCfg": {"svrPathName": "/r2.mp4",
            "vWidth": 160, "vHeight": 120, "vFps": 15, "layoutConfig": []}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    for (cam, want) in [("Usr1.-1", 201), ("Usr4.-1", 201), ("Usr5.-1", 503)] {
        let (st, _, t) = s.call("POST", &format!("/v1/whip/r2/{cam}"), &[], sdp, true);
        assert_eq!(st, want, "{cam}: {t}");
    }
    // a session that never connects ends by itself (15 s): the camera is free again
    let t0 = Instant::now();
    loop {
        let (st, _, t) = s.call("POST", "/v1/whip/r2/Usr5.-1", &[], sdp, true);
        if st == 201 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(25), "{st} {t}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // the room ends: its sessions end with it, both ports are free for another room's
    let (st, v) = s.json("DELETE", "/v1/mixers/r2", None);
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.json(
        "POST",
        "/v1/mixers",
        Some(
            &json!({"mixerID": "r3", "mode": 0, "videoFileCfg": {"svrPathName": "/r3.mp4",
            "vWidth": 160, "vHeight": 120, "vFps": 15, "layoutConfig": []}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    let t0 = Instant::now();
    for cam in ["Usr1.-1", "Usr2.-1"] {
        loop {
            let (st, _, t) = s.call("POST", &format!("/v1/whip/r3/{cam}"), &[], sdp, true);
            if st == 201 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(3), "{cam}: {st} {t}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!(
        "both ports free {:.2} s after the room ended",
        t0.elapsed().as_secs_f64()
    );
    // CORS preflight: an allowed origin gets the headers, another none (and no token asked)
    let pre = [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type",
        ),
    ];
    let (st, h, _) = s.call("OPTIONS", "/v1/whip/r1/Usr1.-1", &pre, None, false);
    assert_eq!(st, 204, "{h:?}");
    assert_eq!(header(&h, "access-control-allow-origin"), origin);
    assert!(header(&h, "access-control-allow-methods").contains("POST"));
    assert!(header(&h, "access-control-allow-methods").contains("DELETE"));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        "Authorization, Content-Type"
    );
    assert_eq!(header(&h, "access-control-expose-headers"), "Location");
    let evil = [("Origin", "http://evil.example"), pre[1], pre[2]];
    let (st, h, _) = s.call("OPTIONS", "/v1/whip/r1/Usr1.-1", &evil, None, false);
    assert_eq!(st, 204);
    assert!(
        !h.iter().any(|(k, _)| k.starts_with("access-control-")),
        "{h:?}"
    );
    let (st, h, _) = s.call(
        "POST",
        "/v1/whip/r1/Usr1.-1",
        &[("Origin", "http://evil.example")],
        sdp,
        false,
    );
    assert_eq!(st, 401);
    assert!(!h.iter().any(|(k, _)| k.starts_with("access-control-")));
    drop(s);
    // WHIP off: a clear 503
    let d = test_dir("whip", "off");
    let s = Serve::start(&d, &[]);
    let (st, _, t) = s.call("POST", "/v1/whip/r1/Usr1.-1", &[], sdp, true);
    assert_eq!(st, 503, "{t}");
    assert!(t.contains("--webrtc-udp"), "{t}");
    drop(s);
    // without a token (loopback only) a page of an allowed origin may publish, another not
    let d = test_dir("whip", "open");
    let udp = "127.0.0.1:47110-47111";
    let s = Serve::start_with(&d, false, &["--webrtc-udp", udp, "--whip-origin", origin]);
    let (st, v) = s.json("POST", "/v1/mixers", Some(&room("r1", json!({}))));
    assert_eq!(st, 201, "{v}");
    let evil = [("Origin", "http://evil.example")];
    let (st, h, t) = s.call("POST", "/v1/whip/r1/Usr1.-1", &evil, sdp, false);
    assert_eq!(st, 403, "{t}");
    assert!(!h.iter().any(|(k, _)| k.starts_with("access-control-")));
    let (st, h, t) = s.call(
        "POST",
        "/v1/whip/r1/Usr1.-1",
        &[("Origin", origin)],
        sdp,
        false,
    );
    assert_eq!(st, 201, "{t}");
    assert_eq!(header(&h, "access-control-allow-origin"), origin);
}

// ---- the browser ----------------------------------------------------------------------------

/// Moves the calling thread (and what it starts from now on) into a new network namespace
/// with only `lo` up; false (and why, printed) where that is not allowed.
fn own_network() -> bool {
    // SAFETY: unshare(2) of the calling thread's network namespace; no memory involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!(
            "cannot unshare the network namespace ({}): using the host's loopback",
            std::io::Error::last_os_error()
        );
        return false;
    }
    let ok = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip link set lo up in the new namespace failed");
    true
}

/// A headless chromium whose fake camera and microphone play `y4m` and `wav`.
async fn browser(y4m: &Path, wav: &Path) -> Result<(Driver, Client), String> {
    let args = [
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".into(),
        format!("--use-file-for-fake-video-capture={}", y4m.display()),
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
        // host candidates on 127.0.0.1 (chromium gathers no loopback candidate by default)
        "--allow-loopback-in-peer-connection".into(),
        "--autoplay-policy=no-user-gesture-required".into(),
    ];
    chromium(&args, json!({})).await
}

/// The publishing page: getUserMedia → sendonly transceivers → the offer once ICE gathering
/// is complete (no trickle) → POST → the answer. `window.whip` says how it went.
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>whip</title>
<script>
window.whip = {state: "idle"};
async function publish(url, token, codec) {
  try {
    whip.state = "media";
    const s = await navigator.mediaDevices.getUserMedia({
      video: {width: 320, height: 240, frameRate: 30},
      audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    const pc = new RTCPeerConnection();
    window.pc = pc;
    for (const t of s.getTracks()) {
      const tr = pc.addTransceiver(t, {direction: "sendonly"});
      if (t.kind !== "video") continue;
      // only the codec under test (H.264: packetization-mode 1)
      const want = RTCRtpSender.getCapabilities("video").codecs.filter(c =>
        c.mimeType.toLowerCase() === "video/" + codec &&
        (codec !== "h264" || /packetization-mode=1/.test(c.sdpFmtpLine || "")));
      if (!want.length) { whip.state = "no " + codec + " encoder"; return; }
      tr.setCodecPreferences(want);
    }
    await pc.setLocalDescription(await pc.createOffer());
    whip.state = "gathering";
    await new Promise(done => {
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange",
        () => pc.iceGatheringState === "complete" && done());
      setTimeout(done, 5000);
    });
    whip.state = "posting";
    const r = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
      headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
    const text = await r.text();
    if (r.status !== 201) { whip.state = "refused " + r.status + ": " + text; return; }
    whip.location = r.headers.get("Location");
    whip.answer = text;
    await pc.setRemoteDescription({type: "answer", sdp: text});
    pc.addEventListener("connectionstatechange", () => whip.pc = pc.connectionState);
    whip.state = "answered";
  } catch (e) { whip.state = "error: " + e; }
}
</script><body>whip</body>"#;

/// Serves [`PAGE`] on 127.0.0.1 (another origin than the service's): its origin.
fn serve_page() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
        }
    });
    origin
}

/// The clip the fake devices play (20 s, looped by chromium): a dark 320x240 picture that is
/// white for 3 frames (100 ms) from every whole second, and a 1 kHz beep (0.9) for 50 ms from
/// the same instants.
fn make_clip() -> (PathBuf, PathBuf) {
    static CLIP: std::sync::Mutex<Option<(PathBuf, PathBuf)>> = std::sync::Mutex::new(None);
    let mut made = CLIP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = made.as_ref() {
        return c.clone();
    }
    let d = test_dir("whip", "clip");
    let (y4m, wav) = (d.join("clip.y4m"), d.join("clip.wav"));
    let run = |args: &[&str], out: &Path| {
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(out)
            .output()
            .expect("ffmpeg");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=0x303030:s=320x240:r=30:d=20,\
             drawbox=x=0:y=0:w=320:h=240:color=white:t=fill:enable='lt(mod(n,30),3)'",
            "-pix_fmt",
            "yuv420p",
        ],
        &y4m,
    );
    run(
        &[
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=0.9*sin(2*PI*1000*t)*lt(mod(t\\,1)\\,0.05):s=48000:d=20",
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
        ],
        &wav,
    );
    *made = Some((y4m.clone(), wav.clone()));
    (y4m, wav)
}

/// Runs `script` every 200 ms until it gives neither null nor false (at most `secs`).
async fn wait_js(c: &Client, script: &str, secs: u64, what: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let last = match c.execute(script, vec![]).await {
            Ok(v) if !v.is_null() && v != Value::Bool(false) => return v,
            Ok(v) => v,
            Err(e) => Value::String(format!("script error: {e}")),
        };
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Times (s) of the output frames that start a flash (mean luma over 128, > 0.5 s after the
/// previous one).
fn flash_times(p: &Path) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for (n, y) in cloudmixer::testkit::signal::frame_lumas(p)
        .into_iter()
        .enumerate()
    {
        let t = n as f64 / FPS;
        if y > 128 && out.last().is_none_or(|l| t - l > 0.5) {
            out.push(t);
        }
    }
    out
}

/// The browser publishes its fake camera (VP8) and microphone by WHIP; the recording shows
/// the camera (its flashes) with each flash's beep in step, and the placeholder (input `idle`)
/// after the page closes its peer connection.
#[test]
fn chromium_publishes_vp8_by_whip_in_sync() {
    browser_in_sync("vp8", "127.0.0.1:47200-47209");
}

/// As [`chromium_publishes_vp8_by_whip_in_sync`] with H.264 (packetization-mode 1).
#[test]
fn chromium_publishes_h264_by_whip_in_sync() {
    browser_in_sync("h264", "127.0.0.1:47300-47309");
}

/// Runs `f` while no other browser test of this file runs: two browsers (with two services
/// encoding) overload a small CI machine.
fn static_browser_lock<R>(f: impl FnOnce() -> R) -> R {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    f()
}

fn browser_in_sync(codec: &'static str, udp: &'static str) {
    static_browser_lock(|| browser_in_sync_alone(codec, udp))
}

fn browser_in_sync_alone(codec: &'static str, udp: &'static str) {
    let required = std::env::var("CLOUDMIXER_REQUIRE_BROWSER").as_deref() == Ok("1");
    let d = test_dir("whip", codec);
    let (y4m, wav) = make_clip();
    // everything below runs in a thread of its own network namespace
    let res = std::thread::spawn(move || {
        let isolated = own_network();
        let page = serve_page();
        let s = Serve::start(
            &d,
            &[
                "--webrtc-udp",
                udp,
                "--whip-origin",
                &page,
                "--events",
                d.join("ev.jsonl").to_str().unwrap(),
            ],
        );
        let (st, v) = s.json("POST", "/v1/mixers", Some(&room("room1", json!({}))));
        assert_eq!(st, 201, "{v}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // (a second try: under load chromium sometimes does not come up under chromedriver)
        let started = match rt.block_on(browser(&y4m, &wav)) {
            Err(why) => {
                eprintln!("the browser did not start ({why}): trying again");
                rt.block_on(browser(&y4m, &wav))
            }
            ok => ok,
        };
        let (driver, c) = match started {
            Ok(x) => x,
            Err(why) if required => panic!("CLOUDMIXER_REQUIRE_BROWSER=1 and no browser: {why}"),
            Err(why) => {
                eprintln!("skipping the WHIP browser test: {why}");
                return None;
            }
        };
        let url = format!("{}/v1/whip/room1/Usr1.-1", s.base);
        let out = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(120),
                publish(&c, &s, &page, &url, codec),
            )
            .await
        });
        let _ =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
        drop(driver);
        out.expect("the WHIP browser test took over 120 s");
        let (st, v) = s.json("DELETE", "/v1/mixers/room1", None);
        assert_eq!(st, 200, "{v}");
        let ev: Vec<Value> = std::fs::read_to_string(d.join("ev.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let states: Vec<&str> = ev
            .iter()
            .filter(|e| e["event"] == "inputStateChanged")
            .filter_map(|e| e["state"].as_str())
            .collect();
        assert_eq!(states, ["connecting", "live", "idle"], "{ev:?}");
        let input_end = s.input("room1");
        Some((d.join("rec/room1.mp4"), isolated, input_end))
    })
    .join();
    let Some((p, isolated, input_end)) = res.unwrap_or_else(|e| std::panic::resume_unwind(e))
    else {
        return;
    };
    println!("network namespace of its own: {isolated}");
    let flashes = flash_times(&p);
    let clicks: Vec<f64> =
        cloudmixer::testkit::signal::click_times(&cloudmixer::testkit::signal::decode_audio(&p, 1))
            .into_iter()
            .filter(|&t| t > 0.1)
            .collect();
    println!("{codec}: flashes {flashes:?}\nbeeps   {clicks:?}");
    assert!(flashes.len() >= 15, "flashes {flashes:?}, beeps {clicks:?}");
    // each flash (the first output frame showing it) has its beep within 40 ms, plus the output
    // frame a picture may wait for its tick and the AAC priming the file loses (as pull.rs)
    let tol = 0.040 + 1.0 / FPS + 0.0214;
    let mut offs = Vec::new();
    for f in &flashes {
        let d = clicks
            .iter()
            .map(|c| c - f)
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(f64::INFINITY);
        offs.push(d);
    }
    let ms: Vec<i64> = offs.iter().map(|d| (d * 1000.0).round() as i64).collect();
    println!("{codec}: beep − flash per flash (ms): {ms:?}");
    // (the input's reanchors count sender reports that moved a stream's clock by over 20 ms:
    // chromium's fake microphone falling behind on a loaded machine shows there)
    println!("{codec}: input at the end: {input_end}");
    let mean = offs.iter().sum::<f64>() / offs.len() as f64;
    let worst = offs.iter().fold(0f64, |m, d| m.max(d.abs()));
    println!(
        "{codec}: beep − flash over {} flashes: mean {:+.1} ms, worst {:.1} ms",
        offs.len(),
        mean * 1000.0,
        worst * 1000.0
    );
    for (f, d) in flashes.iter().zip(&offs) {
        assert!(
            d.abs() <= tol,
            "flash at {f:.3} s: nearest beep {d:+.3} s away: flashes {flashes:?}, beeps \
             {clicks:?}; input {input_end}"
        );
    }
    // the camera's dark grey between the flashes, then the (black) placeholder once the
    // publisher left: the last second
    let lumas = cloudmixer::testkit::signal::frame_lumas(&p);
    let mut mid = lumas[lumas.len() / 3..lumas.len() * 2 / 3].to_vec();
    mid.sort_unstable();
    let cam = mid[mid.len() / 2];
    let tail = &lumas[lumas.len().saturating_sub(FPS as usize)..];
    assert!(cam > 20 && cam < 128, "camera luma {cam}");
    assert!(
        tail.iter().all(|&y| y < cam / 2),
        "camera luma {cam}, tail lumas {tail:?}"
    );
}

/// The page publishes, the input goes live, ~20 s are recorded, then the page closes its peer
/// connection and the input turns idle.
async fn publish(c: &Client, s: &Serve, page: &str, url: &str, codec: &str) {
    c.goto(&format!("{page}/")).await.unwrap();
    c.execute(
        "publish(arguments[0], arguments[1], arguments[2]); return true",
        vec![json!(url), json!(TOKEN), json!(codec)],
    )
    .await
    .unwrap();
    let st = wait_js(
        c,
        "return whip.state === 'answered' ? whip.location : (whip.state.startsWith('refused') \
         || whip.state.startsWith('error') || whip.state.startsWith('no ') ? whip.state : null)",
        30,
        "the WHIP answer",
    )
    .await;
    let loc = st.as_str().unwrap_or_default().to_string();
    assert!(loc.starts_with("/v1/whip/room1/Usr1.-1/"), "{st}");
    let answer = c.execute("return whip.answer", vec![]).await.unwrap();
    let rtpmap = answer
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("a=rtpmap:"))
        .map(str::trim)
        .collect::<Vec<_>>();
    println!("answer's codecs: {rtpmap:?}");
    assert!(
        rtpmap
            .iter()
            .any(|l| l.to_ascii_lowercase().contains(&format!(" {codec}/90000"))),
        "{codec} not in the answer: {rtpmap:?}"
    );
    let t0 = Instant::now();
    loop {
        let i = s.input("room1");
        if i["state"] == "live" && i["videoFrames"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "not live: {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("live after {:.1} s", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let i = s.input("room1");
    println!("input after 20 s: {i}");
    assert!(i["audioChunks"].as_u64().unwrap_or(0) > 500, "{i}");
    c.execute("pc.close(); return true", vec![]).await.unwrap();
    let t1 = Instant::now();
    loop {
        let i = s.input("room1");
        if i["state"] == "idle" {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(15), "not idle: {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "idle {:.1} s after pc.close(): {}",
        t1.elapsed().as_secs_f64(),
        s.input("room1")
    );
    // the placeholder for a while (the mixer's source timeout, then a second of it)
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// A browser stream above `--max-input-bitrate` is dropped: the session ends with the limit's
/// error in the input's state (`idle`), and the room goes on.
#[test]
fn a_whip_stream_over_the_bitrate_limit_is_dropped() {
    static_browser_lock(|| {
        let required = std::env::var("CLOUDMIXER_REQUIRE_BROWSER").as_deref() == Ok("1");
        let d = test_dir("whip", "bitrate");
        let (y4m, wav) = make_clip();
        let res = std::thread::spawn(move || {
            own_network();
            let page = serve_page();
            let s = Serve::start(
                &d,
                &[
                    "--webrtc-udp",
                    "127.0.0.1:47400-47409",
                    "--whip-origin",
                    &page,
                    "--max-input-bitrate",
                    "20",
                ],
            );
            let (st, v) = s.json("POST", "/v1/mixers", Some(&room("room1", json!({}))));
            assert_eq!(st, 201, "{v}");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (driver, c) = match rt.block_on(browser(&y4m, &wav)) {
                Ok(x) => x,
                Err(why) if required => {
                    panic!("CLOUDMIXER_REQUIRE_BROWSER=1 and no browser: {why}")
                }
                Err(why) => {
                    eprintln!("skipping: {why}");
                    return None;
                }
            };
            let url = format!("{}/v1/whip/room1/Usr1.-1", s.base);
            let input = rt.block_on(async {
                c.goto(&format!("{page}/")).await.unwrap();
                c.execute(
                    "publish(arguments[0], arguments[1], 'vp8'); return true",
                    vec![json!(url), json!(TOKEN)],
                )
                .await
                .unwrap();
                let t0 = Instant::now();
                loop {
                    let i = s.input("room1");
                    if i["state"] == "idle" {
                        break i;
                    }
                    assert!(t0.elapsed() < Duration::from_secs(40), "not dropped: {i}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let _ = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
            drop(driver);
            // the room goes on
            let (st, v) = s.json("GET", "/v1/mixers/room1", None);
            assert_eq!((st, v["state"].as_u64()), (200, Some(2)), "{v}");
            Some(input)
        })
        .join();
        let Some(input) = res.unwrap_or_else(|e| std::panic::resume_unwind(e)) else {
            return;
        };
        println!("{input}");
        assert!(
            input["error"]
                .as_str()
                .unwrap_or_default()
                .contains("over the limit (20 kb/s)"),
            "{input}"
        );
    });
}
