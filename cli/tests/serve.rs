//! `cloudmixer serve` over real HTTP on 127.0.0.1 (the `ureq` client), the server started and
//! stopped by each test: create with two file inputs, a live update, delete, the events
//! stream, errors with their status and vendor code, the room limit, concurrent creates,
//! SIGTERM with recordings running, and the metrics text (checked by `promtool` when present).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{frames, ROOT, TOKEN};

fn dir(name: &str) -> PathBuf {
    common::test_dir("serve", name)
}

/// A running `cloudmixer serve`, killed when dropped (also when a test fails).
struct Server {
    child: Option<Child>,
    base: String,
    storage: PathBuf,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Server {
    fn start(name: &str, extra: &[&str], token: bool) -> Server {
        Server::start_in(&dir(name), extra, token)
    }

    /// A server with its storage (and token) under `d`, kept between servers of a test.
    fn start_in(d: &Path, extra: &[&str], token: bool) -> Server {
        let (child, base) = common::spawn_serve(d, token, extra, Stdio::piped());
        Server {
            child: Some(child),
            base,
            storage: d.join("rec"),
            agent: common::agent(),
            token: token.then(|| TOKEN.to_string()),
        }
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// (status, JSON body or Null)
    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = self.auth() {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = self.auth() {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, b) => {
                let mut r = self.agent.post(&url);
                if let Some(a) = self.auth() {
                    r = r.header("Authorization", a);
                }
                r.send_json(b.cloned().unwrap_or(Value::Null))
            }
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn text(&self, path: &str) -> (u16, String) {
        let mut r = self.agent.get(format!("{}{path}", self.base));
        if let Some(a) = self.auth() {
            r = r.header("Authorization", a);
        }
        let mut resp = r.call().unwrap();
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Every SSE `data:` object, as they come, until `until` says stop (or 60 s pass).
    fn events(
        &self,
        until: impl Fn(&Value) -> bool + Send + 'static,
    ) -> mpsc::Receiver<Vec<Value>> {
        let (tx, rx) = mpsc::channel();
        let mut r = self.agent.get(format!("{}/v1/events", self.base));
        if let Some(a) = self.auth() {
            r = r.header("Authorization", a);
        }
        let resp = r.call().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let reader = BufReader::new(resp.into_body().into_reader());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(d) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(d).unwrap();
                    let stop = until(&v);
                    seen.push(v);
                    if stop {
                        break;
                    }
                }
            }
            let _ = tx.send(seen);
        });
        rx
    }

    /// kill -9.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "serve did not exit within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn seed(svr: &str) -> Value {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"))
            .unwrap(),
    )
    .unwrap();
    v["videoFileCfg"]["svrPathName"] = svr.into();
    v
}

fn tiny(svr: &str) -> Value {
    json!({"mode":0,"videoFileCfg":{"svrPathName":svr,"vWidth":160,"vHeight":120,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":160,"height":120,"param":{"camid":"Usr1.-1"}}]}})
}

/// Mean luma of the 8x8 square at (x, y) of every frame.
fn lumas_at(file: &Path, x: u32, y: u32) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v:0", "-vf"])
        .arg(format!("crop=8:8:{x}:{y},scale=1:1,format=gray"))
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn ticks(s: &Server, id: &str) -> u64 {
    let (st, v) = s.req("GET", &format!("/v1/mixers/{id}"), None);
    assert_eq!(st, 200, "{v}");
    v["stats"]["ticks"].as_u64().unwrap()
}

/// Two file inputs, the seed side-by-side layout, the picture-in-picture update after ~2 s,
/// delete after ~4 s: the file switches layout at the tick the update reached, holds the
/// frames its final info says, and the event stream carries 1 → 2 → 4 → 0 for the mixer,
/// each event with its mixerID.
#[test]
fn create_update_delete_over_http_with_events() {
    let s = Server::start("lifecycle", &[], true);
    let events =
        s.events(|v| v["mixerID"] == "room1" && v["event"] == "stateChanged" && v["state"] == 0);
    let mut body = seed("/room1.mp4");
    body["mixerID"] = "room1".into();
    body["inputs"] =
        json!({"Usr1.-1": "cam1_640x480_15.mp4", "Usr2.-1": "file:cam4_1280x720_30.mp4"});
    let t0 = Instant::now();
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!((st, &v), (201, &json!({"mixerID": "room1"})));
    assert!(t0.elapsed() < Duration::from_secs(10));
    // the same id again while it runs: 409, "already started"
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!((st, v["code"].as_i64()), (409, Some(906)), "{v}");
    std::thread::sleep(Duration::from_secs(2));
    // the snapshot: a JPEG of the canvas, side by side (the top margin black)
    let jpg = {
        let mut r = s
            .agent
            .get(format!("{}/v1/mixers/room1/snapshot.jpg", s.base))
            .header("Authorization", s.auth().unwrap())
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        r.body_mut().read_to_vec().unwrap()
    };
    let snap = s.storage.join("snap.jpg");
    std::fs::write(&snap, &jpg).unwrap();
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&snap)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "mjpeg,1280,720");
    assert!(lumas_at(&snap, 1006, 556)[0] < 40);
    assert_eq!(s.req("GET", "/v1/mixers/nope/snapshot.jpg", None).0, 404);
    let before = ticks(&s, "room1");
    let update: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/fixtures/layouts/seed_pip_update.json")).unwrap(),
    )
    .unwrap();
    let (st, v) = s.req("POST", "/v1/mixers/room1/content", Some(&update));
    assert_eq!(st, 200, "{v}");
    let after = ticks(&s, "room1");
    std::thread::sleep(Duration::from_secs(2));
    let (st, v) = s.req("DELETE", "/v1/mixers/room1", None);
    assert_eq!(st, 200, "{v}");
    let out = &v["outputs"][0];
    assert_eq!(out["state"], 2, "{v}");
    assert_eq!(out["svrFilePathName"], "/room1.mp4");
    let file = s.storage.join("room1.mp4");
    let n = frames(&file);
    assert_eq!(
        n,
        (out["duration"].as_u64().unwrap() * 15 + 500) / 1000,
        "{v}"
    );
    assert!(n >= 55, "{n} frames in ~4 s");
    // (1010, 560): the margin below the side-by-side pictures (black), a colour bar of cam4's
    // (static) picture in picture-in-picture
    let lumas = lumas_at(&file, 1006, 556);
    let switch = lumas
        .iter()
        .position(|&y| y > 100)
        .expect("no picture-in-picture frame");
    assert!(
        lumas[switch..].iter().all(|&y| y > 100) && lumas[..switch].iter().all(|&y| y < 40),
        "one switch expected: {lumas:?}"
    );
    // applied at the next tick after the request arrived: between the ticks taken just
    // before the request and just after its answer (+1)
    assert!(
        (before..=after + 1).contains(&(switch as u64)),
        "switch at frame {switch}, update sent between ticks {before} and {after}"
    );
    let seen = events
        .recv_timeout(Duration::from_secs(30))
        .expect("events");
    let mine: Vec<&Value> = seen.iter().filter(|v| v["mixerID"] == "room1").collect();
    let states: Vec<i64> = mine
        .iter()
        .filter(|v| v["event"] == "stateChanged")
        .map(|v| v["state"].as_i64().unwrap())
        .collect();
    assert_eq!(states, [1, 2, 4, 0], "{seen:?}");
    let last_info = mine
        .iter()
        .rev()
        .find(|v| v["event"] == "outputInfoChanged")
        .expect("no outputInfoChanged");
    assert_eq!(&last_info["outputInfo"], out);
    // the room is still listed, ended
    let (st, v) = s.req("GET", "/v1/mixers", None);
    assert_eq!(st, 200);
    assert_eq!(v["mixers"][0]["state"], 0, "{v}");
}

/// A mode 1 create (one file per stream) with two file inputs: each camera into its own file,
/// named by the vendor's per-stream rule and playable; a layout update is refused (400, code 5).
#[test]
fn a_mode_1_mixer_records_one_file_per_camera() {
    let s = Server::start("mode1", &[], true);
    let body = json!({"mode": 1, "mixerID": "m1", "roomId": "42",
        "videoFileCfg": {"svrPath": "/m1", "svrFileNameSuffix": ".mp4",
            "subscribeVideos": ["_cr_all_"]},
        "inputs": {"u1.0": "cam9_320x240_15.mp4", "u2.0": "cam8_480x270_30.mp4"}});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!((st, &v), (201, &json!({"mixerID": "m1"})));
    let (st, v) = s.req(
        "POST",
        "/v1/mixers/m1/content",
        Some(&json!({"videoFileCfg": {"layoutConfig": []}})),
    );
    assert_eq!((st, v["code"].as_i64()), (400, Some(5)), "{v}");
    std::thread::sleep(Duration::from_secs(3));
    let (st, v) = s.req("GET", "/v1/mixers/m1", None);
    assert_eq!((st, &v["state"]), (200, &json!(2)), "{v}");
    let (st, v) = s.req("DELETE", "/v1/mixers/m1", None);
    assert_eq!(st, 200, "{v}");
    let dir = s.storage.join("m1");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    for (name, prefix) in names.iter().zip(["u1_cam0_42_", "u2_cam0_42_"]) {
        assert!(name.starts_with(prefix) && name.ends_with(".mp4"), "{name}");
        let n = frames(&dir.join(name));
        assert!(n >= 15, "{name}: {n} frames");
    }
    let (st, v) = s.req("GET", "/v1/mixers/m1", None);
    assert_eq!((st, &v["state"]), (200, &json!(0)), "{v}");
    assert_eq!(v["outputs"].as_array().map(Vec::len), Some(2), "{v}");
}

/// Errors: no token → 401 (but /healthz answers), a bad config → 400 naming the field with
/// code 5, an input outside the media root → 400, an unknown mixer → 404, the third create
/// with `--max-rooms 2` → 503 code 907 and /readyz 503 meanwhile; a secret in the config is
/// never echoed.
#[test]
fn errors_auth_and_the_room_limit() {
    let s = Server::start("errors", &["--max-rooms", "2"], true);
    // no token
    let bare: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for path in [
        "/v1/mixers",
        "/metrics",
        "/readyz",
        "/v1/events",
        "/v1/mixers/x",
    ] {
        let r = bare.get(format!("{}{path}", s.base)).call().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    let r = bare
        .get(format!("{}/v1/mixers", s.base))
        .header("Authorization", "Bearer test-token-0123456789abcdeX")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = bare.get(format!("{}/healthz", s.base)).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let mut bad = seed("/bad.mp4");
    bad["videoFileCfg"]["layoutConfig"][1]["width"] = json!(-5);
    let (st, v) = s.req("POST", "/v1/mixers", Some(&bad));
    assert_eq!(st, 400);
    assert_eq!(
        v,
        json!({"code": 5, "error": "videoFileCfg.layoutConfig[1].width: must be > 0, got -5"})
    );
    let mut secret = tiny("/s.mp4");
    secret["storageConfig"] = json!({"vendor": 1, "region": "r", "bucket": "Not A Bucket!",
        "accessKey": "AKIDSECRETACCESS", "secretKey": "SUPERSECRETVALUE"});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&secret));
    assert_eq!(st, 400, "{v}");
    assert!(!v.to_string().contains("SECRET"), "{v}");
    for (input, field) in [
        ("../layouts/seed_side_by_side.json", "inputs.Usr1.-1"),
        ("/etc/passwd", "inputs.Usr1.-1"),
        ("missing.mp4", "inputs.Usr1.-1"),
    ] {
        let mut b = tiny("/in.mp4");
        b["inputs"] = json!({"Usr1.-1": input});
        let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
        assert_eq!(st, 400, "{input}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(field), "{v}");
    }
    let (st, v) = s.req("POST", "/v1/mixers", Some(&json!([1, 2])));
    assert_eq!((st, v["code"].as_i64()), (400, Some(5)), "{v}");
    for (m, p) in [
        ("GET", "/v1/mixers/nope"),
        ("DELETE", "/v1/mixers/nope"),
        ("POST", "/v1/mixers/nope/content"),
    ] {
        let (st, v) = s.req(m, p, Some(&json!({"videoFileCfg": {"layoutConfig": []}})));
        assert_eq!(st, 404, "{m} {p}: {v}");
        assert_eq!(v["error"], "no mixer nope");
    }
    assert_eq!(s.text("/readyz").0, 200);
    for id in ["a", "b"] {
        let mut b = tiny(&format!("/{id}.mp4"));
        b["mixerID"] = id.into();
        b["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
        let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
        assert_eq!(st, 201, "{v}");
    }
    let mut b = tiny("/c.mp4");
    b["mixerID"] = "c".into();
    let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
    assert_eq!((st, v["code"].as_i64()), (503, Some(907)), "{v}");
    assert_eq!(s.text("/readyz").0, 503);
    // a bad update names the field and leaves the mixer running
    let (st, v) = s.req(
        "POST",
        "/v1/mixers/a/content",
        Some(
            &json!({"videoFileCfg": {"layoutConfig": [{"type": 0, "left": 0, "top": 0,
            "width": 0, "height": 10, "param": {"camid": "Usr1.-1"}}]}}),
        ),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("width"), "{v}");
    assert_eq!(s.req("GET", "/v1/mixers/a", None).1["state"], 2);
    for id in ["a", "b"] {
        let (st, v) = s.req("DELETE", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{v}");
    }
    // room for one again
    assert_eq!(s.text("/readyz").0, 200);
    let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
    assert_eq!(st, 201, "{v}");
    assert_eq!(s.req("DELETE", "/v1/mixers/c", None).0, 200);
    // a body over the limit is refused on its Content-Length, before a byte of it is sent
    // (a client that sent it all at once could meet the closed connection half-way instead)
    let mut c = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "POST /v1/mixers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":5"#), "{answer}");
    // and one without a length is cut off at the limit
    let huge = json!({"pad": "x".repeat(2 << 20)});
    let body = serde_json::to_vec(&huge).unwrap();
    let r = s
        .agent
        .post(format!("{}/v1/mixers", s.base))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(ureq::SendBody::from_reader(&mut &body[..]));
    // the server answers 413 after the first MiB and closes; the client either reads the 413 or
    // meets the closed connection while still sending (never a 2xx)
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(
            e.to_string().contains("pipe") || e.to_string().contains("reset"),
            "{e}"
        ),
    }
}

/// Eight mixers created at once through the API, deleted at once: all eight files final and
/// whole.
#[test]
fn eight_mixers_created_concurrently_all_finish() {
    let s = Server::start("eight", &[], false);
    let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    std::thread::scope(|sc| {
        for id in &ids {
            let s = &s;
            sc.spawn(move || {
                let mut b = tiny(&format!("/{id}.mp4"));
                b["mixerID"] = id.as_str().into();
                b["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
                let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
                assert_eq!(st, 201, "{id}: {v}");
            });
        }
    });
    let (_, v) = s.req("GET", "/v1/mixers", None);
    assert_eq!(v["mixers"].as_array().unwrap().len(), 8, "{v}");
    std::thread::sleep(Duration::from_secs(2));
    let outs: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = ids
            .iter()
            .map(|id| {
                let s = &s;
                sc.spawn(move || s.req("DELETE", &format!("/v1/mixers/{id}"), None))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .map(|(st, v)| {
                assert_eq!(st, 200, "{v}");
                v
            })
            .collect()
    });
    for (id, v) in ids.iter().zip(&outs) {
        let out = &v["outputs"][0];
        assert_eq!(out["state"], 2, "{v}");
        let n = frames(&s.storage.join(format!("{id}.mp4")));
        assert_eq!(
            n,
            (out["duration"].as_u64().unwrap() * 15 + 500) / 1000,
            "{id}: {v}"
        );
        assert!(n >= 25, "{id}: {n} frames");
    }
}

/// SIGTERM while two mixers record: /readyz turns 503 and creates are refused while they are
/// finalised, both files are final and whole, the process exits 0.
#[test]
fn sigterm_finalises_running_recordings_and_exits_0() {
    let log = dir("sigterm_log").join("events.jsonl");
    let mut s = Server::start("sigterm", &["--events", log.to_str().unwrap()], false);
    for id in ["t1", "t2"] {
        let mut b = tiny(&format!("/{id}.mp4"));
        b["mixerID"] = id.into();
        b["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
        assert_eq!(s.req("POST", "/v1/mixers", Some(&b)).0, 201);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let status = s.sigterm();
    assert_eq!(status.code(), Some(0), "{status:?}");
    for id in ["t1", "t2"] {
        let p = s.storage.join(format!("{id}.mp4"));
        let n = frames(&p);
        assert!(n >= 15, "{id}: {n} frames");
        // the container says the same length as the frames (a finalised file)
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(&p)
            .output()
            .unwrap();
        let d: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        assert!(
            (d - n as f64 / 15.0).abs() < 0.15,
            "{id}: {d} s for {n} frames"
        );
    }
}

/// `/metrics` with a mixer running: the counters of that mixer, mixers by state, resident
/// memory; `promtool check metrics` finds nothing to complain about.
#[test]
fn metrics_are_valid_prometheus_text() {
    let s = Server::start("metrics", &["--max-rooms", "4"], true);
    let mut b = tiny("/m.mp4");
    b["mixerID"] = "mx".into();
    b["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
    assert_eq!(s.req("POST", "/v1/mixers", Some(&b)).0, 201);
    std::thread::sleep(Duration::from_millis(1500));
    let (st, text) = s.text("/metrics");
    assert_eq!(st, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("cloudmixer_ticks_total{mixer_id=\"mx\"}") >= 10.0);
    assert!(value("cloudmixer_frames_received_total{mixer_id=\"mx\"}") >= 10.0);
    assert_eq!(value("cloudmixer_mixers{state=\"running\"}"), 1.0);
    assert_eq!(value("cloudmixer_max_rooms"), 4.0);
    assert!(value("cloudmixer_written_bytes_total{mixer_id=\"mx\"}") > 0.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") > 0.0);
    // 4 rooms at most, one running: at most 3 more
    let more = value("cloudmixer_capacity_rooms");
    assert!((0.0..=3.0).contains(&more), "{more}");
    assert!(value("cloudmixer_room_cost_cores") > 0.0);
    common::promtool_check(&text);
    assert_eq!(s.req("DELETE", "/v1/mixers/mx", None).0, 200);
}

/// Admission by measured cost: with `--cores 0.05` (a tiny CPU quota) the first mixer is taken
/// (nothing is measured yet), and once it has run alone long enough for its cost to be
/// measured, a second is refused with 503 / 907 naming the measurement; /readyz says 503 too.
#[test]
fn a_measured_cost_over_the_cores_refuses_the_next_mixer() {
    let s = Server::start("capacity", &["--cores", "0.05"], false);
    let mut b = seed("/cap1.mp4");
    b["mixerID"] = "cap1".into();
    b["inputs"] = json!({"Usr1.-1": "cam1_640x480_15.mp4"});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
    assert_eq!(st, 201, "{v}");
    std::thread::sleep(Duration::from_millis(4500));
    let mut b2 = tiny("/cap2.mp4");
    b2["mixerID"] = "cap2".into();
    let (st, v) = s.req("POST", "/v1/mixers", Some(&b2));
    assert_eq!((st, v["code"].as_i64()), (503, Some(907)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("measured"), "{v}");
    assert_eq!(s.text("/readyz").0, 503);
    assert_eq!(s.req("DELETE", "/v1/mixers/cap1", None).0, 200);
    // alone again: taken
    let (st, v) = s.req("POST", "/v1/mixers", Some(&b2));
    assert_eq!(st, 201, "{v}");
    assert_eq!(s.req("DELETE", "/v1/mixers/cap2", None).0, 200);
}

/// Restart after kill -9: a service killed while a finished recording's upload waits for a
/// store that is down leaves the file and its signed journal; the restarted service (same
/// storage, same journal key) resumes that upload when a mixer with the same storageConfig is
/// created, reports it as `"resumed": true` (state 4 → 5) and the object lands in the bucket.
#[test]
fn a_restarted_service_resumes_the_uploads_a_killed_one_left() {
    use cloudmixer::testkit::s3::S3Server;
    let d = dir("restart");
    let mut s3 = S3Server::start(&d.join("s3"));
    s3.kill(); // the store is down while the first service records
    let key = d.join("journal.key");
    let key_arg = ["--journal-key", key.to_str().unwrap()];
    let storage = json!({"vendor": 0, "region": "us-east-1", "bucket": s3.bucket,
        "accessKey": s3.access_key, "secretKey": s3.secret_key, "endpoint": s3.endpoint});
    let mut a = Server::start_in(&d, &key_arg, false);
    let mut b = tiny("/first.mp4");
    b["mixerID"] = "first".into();
    b["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
    b["storageConfig"] = storage.clone();
    assert_eq!(a.req("POST", "/v1/mixers", Some(&b)).0, 201);
    std::thread::sleep(Duration::from_millis(1500));
    let (st, v) = a.req("DELETE", "/v1/mixers/first", None);
    assert_eq!(st, 200, "{v}");
    // the upload is retrying against the dead store: kill the service
    std::thread::sleep(Duration::from_millis(500));
    a.kill9();
    let file = a.storage.join("first.mp4");
    assert!(file.exists());
    assert!(Path::new(&format!("{}.upload.json", file.display())).exists());
    let n = frames(&file);
    assert!(n >= 15, "{n}");

    s3.restart();
    let bsrv = Server::start_in(&d, &key_arg, false);
    let events =
        bsrv.events(|v| v["resumed"] == true && v["outputInfo"]["state"].as_i64() >= Some(5));
    let mut b2 = tiny("/second.mp4");
    b2["mixerID"] = "second".into();
    b2["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
    b2["storageConfig"] = storage;
    assert_eq!(bsrv.req("POST", "/v1/mixers", Some(&b2)).0, 201);
    let seen = events
        .recv_timeout(Duration::from_secs(60))
        .expect("no resumed upload reported");
    let last = seen.last().unwrap();
    assert_eq!(last["outputInfo"]["state"], 5, "{seen:?}");
    assert_eq!(last["mixerID"], "second");
    assert!(last["outputInfo"]["id"].as_u64().unwrap() >= 1000, "{last}");
    let obj = s3.get_object("first.mp4").expect("first.mp4 in the bucket");
    assert_eq!(
        obj.len() as u64,
        std::fs::metadata(&file)
            .map(|m| m.len())
            .unwrap_or(obj.len() as u64)
    );
    assert_eq!(bsrv.req("DELETE", "/v1/mixers/second", None).0, 200);
}

/// A webhook receiver on 127.0.0.1: answers the first POST 503 and every later one 200, and
/// passes on each POST as `(X-Cloudmixer-Seq, X-Cloudmixer-Event, JSON body)`.
fn webhook_receiver() -> (String, mpsc::Receiver<(u64, String, Value)>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let mut r = BufReader::new(c);
            let (mut seq, mut name, mut len) = (0u64, String::new(), 0usize);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                let value = line.split_once(':').map(|(_, v)| v.trim().to_string());
                if lower.starts_with("x-cloudmixer-seq:") {
                    seq = value.unwrap().parse().unwrap();
                } else if lower.starts_with("x-cloudmixer-event:") {
                    name = value.unwrap();
                } else if lower.starts_with("content-length:") {
                    len = value.unwrap().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                continue;
            }
            let status = if std::mem::take(&mut first) {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tx.send((seq, name, serde_json::from_slice(&body).unwrap()));
        }
    });
    (url, rx)
}

/// `--webhook`: every event reaches the receiver in order, the one it refused with a 503 comes
/// again, and the room's states are the ones the SSE stream has.
#[test]
fn the_webhook_gets_every_event_in_order_and_a_refused_one_again() {
    let (url, rx) = webhook_receiver();
    let s = Server::start("webhook", &["--webhook", &url], true);
    let mut b = tiny("/wh.mp4");
    b["mixerID"] = "wh".into();
    b["inputs"] = json!({"Usr1.-1": "cam9_320x240_15.mp4"});
    let (st, v) = s.req("POST", "/v1/mixers", Some(&b));
    assert_eq!(st, 201, "{v}");
    std::thread::sleep(Duration::from_secs(1));
    let (st, v) = s.req("DELETE", "/v1/mixers/wh", None);
    assert_eq!(st, 200, "{v}");
    let mut got: Vec<(u64, String, Value)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while !got
        .iter()
        .any(|(_, _, v)| v["event"] == "stateChanged" && v["state"] == 0)
    {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(p) => got.push(p),
            Err(_) => panic!("no NULL state by webhook in 30 s: {got:?}"),
        }
    }
    // the first event was refused (503) and POSTed again, then each one once, in order
    assert!(got.len() >= 4, "{got:?}");
    assert_eq!(got[0].0, got[1].0, "{got:?}");
    let seqs: Vec<u64> = got[1..].iter().map(|p| p.0).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    for (_, name, v) in &got {
        assert_eq!(v["mixerID"], "wh", "{v}");
        assert_eq!(v["event"], name.as_str(), "{v}");
    }
    let states: Vec<i64> = got[1..]
        .iter()
        .filter(|(_, n, _)| n == "stateChanged")
        .map(|(_, _, v)| v["state"].as_i64().unwrap())
        .collect();
    assert_eq!(states, [1, 2, 4, 0], "{got:?}");
}

/// Threads of `pid` named `name` (from /proc).
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|c| c.trim() == name)
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_events_reader_that_leaves_frees_its_thread_with_no_room_running() {
    let s = Server::start("sse_leave", &[], true);
    let pid = s.child.as_ref().unwrap().id();
    let mut streams = Vec::new();
    for _ in 0..5 {
        let resp = s
            .agent
            .get(format!("{}/v1/events", s.base))
            .header("Authorization", s.auth().unwrap())
            .call()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        streams.push(resp);
    }
    let t0 = Instant::now();
    while threads_named(pid, "cm-sse") < 5 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        threads_named(pid, "cm-sse"),
        5,
        "one reader thread per stream"
    );
    drop(streams);
    // No room runs, so no event comes: the readers must notice on their own.
    let t0 = Instant::now();
    while threads_named(pid, "cm-sse") > 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = threads_named(pid, "cm-sse");
    assert_eq!(
        left, 0,
        "{left} reader threads outlived their clients by 10 s"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
}
