//! Pull by URL with real programs on loopback: nginx-rtmp (the test kit's `RtmpServer`), the
//! FFmpeg CLI publishing the flash-and-click clip to it in real time, and `cloudmixer record
//! --realtime --input Usr1.-1=rtmp://…` / `cloudmixer serve` pulling it: sync of the pulled
//! video and audio, an outage of the server (placeholder, reconnect, a whole file), a URL that
//! is refused and a scheme that is not taken.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudmixer::testkit::nginx::{free_port, RtmpServer};
use serde_json::{json, Value};

mod common;
use common::ROOT;
/// Output rate of the test recordings (a flash is one 15 fps frame: two output frames).
const FPS: f64 = 30.0;

fn dir(name: &str) -> PathBuf {
    common::test_dir("pull", name)
}

fn clip() -> String {
    format!("{ROOT}/fixtures/clips/cam1_640x480_15.mp4")
}

/// One 640x480 camera over the whole picture, 30 fps, on a magenta background (the
/// placeholder's colour).
fn config(d: &Path) -> PathBuf {
    let c = json!({"mode":0,"videoFileCfg":{"svrPathName":"/pull.mp4","vWidth":640,"vHeight":480,
        "vFps":30,"backgroundColor":"#FF00FF",
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":640,"height":480,"param":{"camid":"Usr1.-1"}}]}});
    let p = d.join("cfg.json");
    std::fs::write(&p, c.to_string()).unwrap();
    p
}

/// A child process killed (and waited for) when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// FFmpeg publishing the clip, looped, in real time to `url`.
fn publish(url: &str, log: &Path) -> Proc {
    let c = Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(clip())
        .args(["-c", "copy", "-f", "flv"])
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("ffmpeg");
    Proc(Some(c))
}

fn record_cmd(d: &Path, url: &str, secs: f64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloudmixer"));
    c.args([
        "record",
        "--realtime",
        "--latency",
        "300",
        "--backend",
        "cpu",
    ])
    .args(["--duration", &secs.to_string(), "--output", "pull.mp4"])
    .arg("--config")
    .arg(config(d))
    .arg("--input")
    .arg(format!("Usr1.-1={url}"))
    .arg("--events")
    .arg(d.join("ev.jsonl"))
    .arg("--storage")
    .arg(d.join("out"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn events(d: &Path) -> Vec<Value> {
    std::fs::read_to_string(d.join("ev.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The input's states as the events said, in order.
fn input_states(ev: &[Value]) -> Vec<(String, String)> {
    ev.iter()
        .filter(|e| e["event"] == "inputStateChanged")
        .map(|e| {
            (
                e["state"].as_str().unwrap_or_default().to_string(),
                e["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits (up to `limit`) until the events say the input is live.
fn wait_live(d: &Path, limit: Duration) -> Instant {
    let t0 = Instant::now();
    loop {
        if input_states(&events(d)).iter().any(|(s, _)| s == "live") {
            return Instant::now();
        }
        assert!(t0.elapsed() < limit, "not live: {:?}", events(d));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Per output frame, the mean luma of the 8x8 square at (x, y).
fn lumas_at(p: &Path, x: u32, y: u32) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(p)
        .args(["-map", "0:v:0", "-vf"])
        .arg(format!("crop=8:8:{x}:{y},scale=1:1,format=gray"))
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Per output frame, whether it is the placeholder: one flat colour (the clip's colour bars
/// never are), magenta-ish.
fn placeholder_frames(p: &Path) -> Vec<bool> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(p)
        .args(["-map", "0:v:0", "-vf", "scale=8:2:flags=area,format=rgb24"])
        .args(["-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
        .chunks_exact(8 * 2 * 3)
        .map(|f| {
            f.chunks_exact(3)
                .all(|px| px[0] > 200 && px[1] < 60 && px[2] > 200)
        })
        .collect()
}

/// Times (s) of the output frames where the clip's flash box (top right, 580..640 x 0..60,
/// grey 179 otherwise) is white; one time per flash (its first frame).
fn flash_times(p: &Path) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for (n, y) in lumas_at(p, 605, 20).into_iter().enumerate() {
        let t = n as f64 / FPS;
        if y > 240 && out.last().is_none_or(|l| t - l > 0.5) {
            out.push(t);
        }
    }
    out
}

use cloudmixer::testkit::signal::click_times;

fn frames_and_duration(p: &Path) -> (u64, f64) {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames:format=duration"])
        .args(["-of", "default=nw=1:nk=1"])
        .arg(p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    let mut l = s.lines();
    let n = l.next().unwrap().trim().parse().unwrap();
    let d = l.next().unwrap().trim().parse().unwrap();
    (n, d)
}

/// Waits for `record` (at most 60 s); its stderr is kept beside its files.
fn finish(d: &Path, mut c: Child) -> std::process::Output {
    let t0 = Instant::now();
    loop {
        if c.try_wait().unwrap().is_some() {
            let out = c.wait_with_output().unwrap();
            let _ = std::fs::write(d.join("record.stderr"), &out.stderr);
            return out;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = c.kill();
            panic!("record did not end: {:?}", c.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pulled clip's flashes and clicks stay together: every flash (the first output frame
/// showing it) has its click within 40 ms plus one output frame (the tick that shows a frame
/// comes up to a frame after its capture), and the AAC priming the file loses (21.3 ms).
#[test]
fn pulled_rtmp_keeps_flash_and_click_in_step() {
    let d = dir("sync");
    let server = RtmpServer::start(&d.join("nginx"));
    let url = server.url("cam");
    let _publisher = publish(&url, &d.join("ffmpeg.log"));
    let t0 = Instant::now();
    // (the first second or so is the placeholder: the connect and FFmpeg's 1 s probe)
    let out = finish(&d, record_cmd(&d, &url, 8.0).spawn().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("recorded 8 s in {:.1} s", t0.elapsed().as_secs_f64());
    assert_in_step(&d.join("out/pull.mp4"), 3);
    let st = input_states(&events(&d));
    assert_eq!(
        st.first().map(|s| s.0.as_str()),
        Some("connecting"),
        "{st:?}"
    );
    assert!(st.iter().any(|s| s.0 == "live"), "{st:?}");
}

/// nginx killed ~3 s after the input went live and restarted on the same port ~3 s later (the
/// publisher with it): the placeholder shows during the outage (after source_timeout, 2 s),
/// the clip comes back after the reconnect, the events say live → reconnecting → live, and
/// the file is whole.
#[test]
fn pulled_rtmp_survives_a_server_outage() {
    let d = dir("outage");
    let nginx = d.join("nginx");
    let mut server = RtmpServer::start(&nginx);
    let port = server.port();
    let url = server.url("cam");
    let mut publisher = publish(&url, &d.join("ffmpeg1.log"));
    let rec = record_cmd(&d, &url, 14.0).spawn().unwrap();
    let rec = Proc(Some(rec));
    let live = wait_live(&d, Duration::from_secs(10));
    std::thread::sleep((live + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    server.kill();
    publisher.kill();
    let killed = live.elapsed().as_secs_f64();
    std::thread::sleep((live + Duration::from_secs(6)).saturating_duration_since(Instant::now()));
    let server = RtmpServer::start_on(&nginx, port);
    let _publisher = publish(&url, &d.join("ffmpeg2.log"));
    let restarted = live.elapsed().as_secs_f64();
    let mut rec = rec;
    let out = finish(&d, rec.0.take().unwrap());
    drop(server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = d.join("out/pull.mp4");
    let (frames, dur) = frames_and_duration(&p);
    assert!((frames as i64 - 14 * 30).abs() <= 1, "{frames} frames");
    assert!((dur - 14.0).abs() < 0.1, "duration {dur}");
    let ph = placeholder_frames(&p);
    // the first frame of the clip in the file is the input going live
    let first = ph.iter().position(|&x| !x).expect("the clip never showed") as f64 / FPS;
    let runs = runs_of(&ph);
    println!(
        "live at file {first:.2} s; killed at +{killed:.2} s, restarted at +{restarted:.2} s; \
         placeholder runs (s): {runs:?}"
    );
    let outage = runs
        .iter()
        .find(|(a, _)| *a > first + 1.0)
        .unwrap_or_else(|| panic!("no placeholder after the kill: {runs:?}"));
    // the placeholder from source_timeout (2 s) after the last frame, to the reconnect
    assert!(
        (outage.0 - (first + killed + 2.0)).abs() < 1.0,
        "placeholder from {:.2} s, expected ~{:.2}: {runs:?}",
        outage.0,
        first + killed + 2.0
    );
    let back = outage.1 - first;
    assert!(
        back > restarted - 0.5 && back < restarted + 5.0,
        "clip back {back:.2} s after live, restarted at {restarted:.2}: {runs:?}"
    );
    println!("clip back {:.2} s after the restart", back - restarted);
    // the clip until the end, and the frames in the outage are the placeholder only
    assert!(!ph[ph.len() - 30..].iter().any(|&x| x), "{runs:?}");
    let st = input_states(&events(&d));
    let names: Vec<&str> = st.iter().map(|s| s.0.as_str()).collect();
    let i = names.iter().position(|s| *s == "live").expect("live");
    let j = i + names[i..]
        .iter()
        .position(|s| *s == "reconnecting")
        .expect("reconnecting");
    assert!(names[j..].contains(&"live"), "{st:?}");
    assert!(!st[j].1.is_empty(), "reconnecting without an error: {st:?}");
    println!("states: {st:?}");
}

/// Every flash (the first output frame showing it) has its click within 40 ms plus one output
/// frame (the tick that shows a frame comes up to a frame after its capture) and the AAC
/// priming the file loses (21.3 ms), and no click after the first flash lacks its flash.
fn assert_in_step(p: &Path, min_flashes: usize) {
    assert_in_step_after(p, min_flashes, 0.0)
}

/// As `assert_in_step`, for the flashes from `from` seconds on (a room that joined a stream
/// already running starts with the picture of its first tick; the sound of the moment it
/// joined may be cut).
fn assert_in_step_after(p: &Path, min_flashes: usize, from: f64) {
    let flashes: Vec<f64> = flash_times(p).into_iter().filter(|&f| f >= from).collect();
    let clicks: Vec<f64> = click_times(&cloudmixer::testkit::signal::decode_audio(p, 1))
        .into_iter()
        .filter(|&t| t > 0.1 && t >= from - 0.2)
        .collect();
    println!("flashes {flashes:?}\nclicks  {clicks:?}");
    assert!(
        flashes.len() >= min_flashes,
        "flashes {flashes:?}, clicks {clicks:?}"
    );
    let tol = 0.040 + 1.0 / FPS + 0.0214;
    let mut worst = 0f64;
    for f in &flashes {
        let d = clicks
            .iter()
            .map(|c| c - f)
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(f64::INFINITY);
        worst = worst.max(d.abs());
        assert!(
            d.abs() <= tol,
            "flash at {f:.3} s: nearest click {d:+.3} s away: flashes {flashes:?}, clicks {clicks:?}"
        );
    }
    // and no click without its flash once the video is there (and until it ends: the audio
    // track may end a block after the last frame)
    let (_, end) = frames_and_duration(p);
    for c in clicks
        .iter()
        .filter(|&&c| c > flashes[0] - tol && c < end - tol)
    {
        assert!(
            flashes.iter().any(|f| (c - f).abs() <= tol),
            "click at {c:.3} s without a flash: flashes {flashes:?}, clicks {clicks:?}"
        );
    }
    println!("worst flash-click offset {:.1} ms", worst * 1000.0);
}

/// Runs of `true` as (start, end) seconds.
fn runs_of(v: &[bool]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &x) in v.iter().chain(std::iter::once(&false)).enumerate() {
        match (x, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s as f64 / FPS, i as f64 / FPS));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// `cloudmixer serve`, killed when dropped.
struct Serve {
    _child: Proc,
    base: String,
    agent: ureq::Agent,
}

impl Serve {
    fn start(d: &Path, extra: &[&str]) -> Serve {
        let (child, base) = common::spawn_serve(d, false, extra, Stdio::null());
        Serve {
            _child: Proc(Some(child)),
            base,
            agent: common::agent(),
        }
    }

    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value, String) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .send_json(body.cloned().unwrap_or(Value::Null)),
        }
        .unwrap();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }
}

/// A URL where nothing listens: the mixer runs (placeholder), the input is `reconnecting` with
/// the error in the mixer's info and in /metrics, and a delete ends it at once. A scheme that
/// is not taken is a 400 naming the input.
#[test]
fn a_refused_url_leaves_the_mixer_running_and_a_bad_scheme_is_refused() {
    let d = dir("refused");
    let s = Serve::start(&d, &[]);
    let cfg = tiny;
    let (st, v, _) = s.req(
        "POST",
        "/v1/mixers",
        Some(&cfg(json!({"Usr1.-1": "ftp://127.0.0.1/a.mp4"}))),
    );
    assert_eq!(st, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("inputs.Usr1.-1: ftp://"), "{v}");
    let port = free_port();
    let url = format!("rtmp://user:secret@127.0.0.1:{port}/live/cam");
    let (st, v, _) = s.req("POST", "/v1/mixers", Some(&cfg(json!({ "Usr1.-1": url }))));
    assert_eq!(st, 201, "{v}");
    let t0 = Instant::now();
    let info = loop {
        let (st, v, _) = s.req("GET", "/v1/mixers/m1", None);
        assert_eq!(st, 200, "{v}");
        if v["inputStates"][0]["state"] == "reconnecting" {
            break v;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let inp = &info["inputStates"][0];
    println!("{inp}");
    assert_eq!(info["state"], 2, "{info}");
    assert_eq!(inp["input"], "Usr1.-1");
    assert!(!inp["error"].as_str().unwrap().is_empty(), "{inp}");
    assert!(!info.to_string().contains("secret"), "{info}");
    let (_, _, metrics) = s.req("GET", "/metrics", None);
    assert!(
        metrics.contains(
            "cloudmixer_input_state{mixer_id=\"m1\",input=\"Usr1.-1\",state=\"reconnecting\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudmixer_input_reconnects_total{mixer_id=\"m1\",input=\"Usr1.-1\"}")
    );
    common::promtool_check(&metrics);
    // the mixer keeps recording the placeholder; a delete ends it (and the pull) at once
    std::thread::sleep(Duration::from_millis(1500));
    let t1 = Instant::now();
    let (st, v, _) = s.req("DELETE", "/v1/mixers/m1", None);
    assert_eq!(st, 200, "{v}");
    assert!(t1.elapsed() < Duration::from_secs(5));
    let (_, v, _) = s.req("GET", "/v1/mixers/m1", None);
    assert_eq!(v["inputStates"][0]["state"], "stopped", "{v}");
    let p = d.join("rec/m1.mp4");
    let (frames, _) = frames_and_duration(&p);
    assert!(frames >= 15, "{frames} frames");
}

fn tiny(inputs: Value) -> Value {
    json!({"mixerID":"m1","mode":0,"videoFileCfg":{"svrPathName":"/m1.mp4","vWidth":160,
    "vHeight":120,"vFps":15,"layoutConfig":[{"type":0,"left":0,"top":0,"width":160,
    "height":120,"param":{"camid":"Usr1.-1"}}]},"inputs":inputs})
}

/// A stream larger than the service takes (`--max-input-size 320x240`, the clip is 640x480)
/// is dropped with its size in the input's error, and the mixer goes on with the placeholder.
#[test]
fn a_stream_over_the_size_limit_is_refused_with_a_clear_error() {
    let d = dir("limit");
    let server = RtmpServer::start(&d.join("nginx"));
    let url = server.url("cam");
    let _publisher = publish(&url, &d.join("ffmpeg.log"));
    let s = Serve::start(&d, &["--max-input-size", "320x240"]);
    let (st, v, _) = s.req("POST", "/v1/mixers", Some(&tiny(json!({ "Usr1.-1": url }))));
    assert_eq!(st, 201, "{v}");
    let t0 = Instant::now();
    let inp = loop {
        let (_, v, _) = s.req("GET", "/v1/mixers/m1", None);
        let inp = v["inputStates"][0].clone();
        if inp["error"].as_str().is_some_and(|e| e.contains("640x480")) {
            break inp;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{inp}");
    assert_eq!(inp["state"], "reconnecting", "{inp}");
    assert!(
        inp["error"]
            .as_str()
            .unwrap()
            .starts_with("the stream is 640x480, over the limit of 320x240"),
        "{inp}"
    );
    assert_eq!(inp["videoFrames"], 0, "{inp}");
    let (st, v, _) = s.req("DELETE", "/v1/mixers/m1", None);
    assert_eq!(st, 200, "{v}");
}

/// The publisher frozen (SIGSTOP) ~3 s after the input went live: nginx keeps the connection
/// open with nothing on it, so the input turns `stalled` after 1 s, and the 5 s read deadline
/// ends the connection (`reconnecting`, "no data") instead of hanging; once the publisher goes
/// on (SIGCONT, ~8 s later: the reader runs up to the 1 s probe behind the server, so its read
/// starts waiting up to a second after the freeze) the input is live again and the clip is back
/// in the file.
#[test]
fn a_stalled_stream_is_reported_and_reconnected() {
    let d = dir("stall");
    let server = RtmpServer::start(&d.join("nginx"));
    let url = server.url("cam");
    let publisher = publish(&url, &d.join("ffmpeg.log"));
    let pid = publisher.0.as_ref().unwrap().id() as i32;
    let rec = Proc(Some(record_cmd(&d, &url, 20.0).spawn().unwrap()));
    let live = wait_live(&d, Duration::from_secs(10));
    std::thread::sleep((live + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep((live + Duration::from_secs(11)).saturating_duration_since(Instant::now()));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let mut rec = rec;
    let out = finish(&d, rec.0.take().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = input_states(&events(&d));
    println!("states: {st:?}");
    let names: Vec<&str> = st.iter().map(|s| s.0.as_str()).collect();
    let i = names.iter().position(|s| *s == "stalled").expect("stalled");
    assert_eq!(names[i - 1], "live", "{st:?}");
    let j = i + names[i..]
        .iter()
        .position(|s| *s == "reconnecting")
        .expect("reconnecting");
    assert!(st[j].1.contains("no data"), "{st:?}");
    assert!(names[j..].contains(&"live"), "{st:?}");
    let p = d.join("out/pull.mp4");
    let (frames, _) = frames_and_duration(&p);
    assert!((frames as i64 - 20 * 30).abs() <= 1, "{frames} frames");
    let ph = placeholder_frames(&p);
    println!("placeholder runs (s): {:?}", runs_of(&ph));
    assert!(
        !ph[ph.len() - 30..].iter().any(|&x| x),
        "{:?}",
        runs_of(&ph)
    );
}

/// An HLS playlist served over HTTP (Python's http.server on loopback; FFmpeg cut the clip
/// into 2 s segments): the `hls` demuxer reads it through the http whitelist, and the file
/// shows the clip with its flashes.
#[test]
fn an_hls_playlist_over_http_is_pulled() {
    let d = dir("hls");
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip())
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_list_size",
            "0",
        ])
        .arg(www.join("cam.m3u8"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let port = free_port();
    let _http = Proc(Some(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    ));
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/cam.m3u8");
    let out = finish(&d, record_cmd(&d, &url, 6.0).spawn().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = d.join("out/pull.mp4");
    let flashes = flash_times(&p);
    let st = input_states(&events(&d));
    println!("flashes {flashes:?}; states {st:?}");
    assert!(flashes.len() >= 3, "flashes {flashes:?}; states {st:?}");
    // paced in real time: one flash a second, as in the clip
    for w in flashes.windows(2) {
        assert!((w[1] - w[0] - 1.0).abs() < 0.1, "flashes {flashes:?}");
    }
    assert!(st.iter().any(|s| s.0 == "live"), "{st:?}");
}

/// FFmpeg as an SRT listener on a free loopback port, sending the clip as MPEG-TS in real time
/// (looped) to the one caller it takes: the process and the URL to call.
fn srt_listener(d: &Path) -> (Proc, String) {
    let url = format!("srt://127.0.0.1:{}", free_port());
    let c = Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(clip())
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("{url}?mode=listener"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("ffmpeg.log")).unwrap())
        .spawn()
        .expect("ffmpeg");
    (Proc(Some(c)), url)
}

/// FFmpeg as an SRT listener sending MPEG-TS (the clip in real time), pulled by an `srt://`
/// caller: the clip's flashes and clicks in step, as over RTMP.
#[test]
fn an_srt_stream_is_pulled_in_step() {
    let d = dir("srt");
    let (_listener, url) = srt_listener(&d);
    // (the caller retries with the back-off until the listener is up)
    let out = finish(&d, record_cmd(&d, &url, 8.0).spawn().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("states {:?}", input_states(&events(&d)));
    assert_in_step(&d.join("out/pull.mp4"), 3);
}

/// FFmpeg serving FLV over HTTP (`-listen 1`) in real time, pulled by `http://`: progressive
/// HTTP, the clip's flashes and clicks in step.
#[test]
fn a_progressive_http_stream_is_pulled_in_step() {
    let d = dir("http");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/cam.flv");
    let _server = Proc(Some(
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(clip())
            .args(["-c", "copy", "-f", "flv", "-listen", "1"])
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("ffmpeg.log")).unwrap())
            .spawn()
            .expect("ffmpeg"),
    ));
    // (no probe: `-listen 1` serves one client; the caller retries with the back-off until
    // the server is up)
    let out = finish(&d, record_cmd(&d, &url, 8.0).spawn().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("states {:?}", input_states(&events(&d)));
    assert_in_step(&d.join("out/pull.mp4"), 3);
}

/// `record` takes a URL only in real time with a duration: offline, or without `--duration`,
/// it is a usage error (exit 2) naming the input, before anything is recorded; a scheme it does
/// not take too.
#[test]
fn record_refuses_a_url_offline_or_without_a_duration() {
    let d = dir("usage");
    let cfg = config(&d);
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
            .args(["record", "--backend", "cpu", "--config"])
            .arg(&cfg)
            .arg("--storage")
            .arg(d.join("out"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let url = "Usr1.-1=rtmp://u:secret@127.0.0.1:1/live/cam";
    let (code, err) = run(&["--duration", "2", "--input", url]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--input Usr1.-1=rtmp://***@127.0.0.1:1/live/cam"),
        "{err}"
    );
    assert!(err.contains("--realtime"), "{err}");
    let (code, err) = run(&["--realtime", "--input", url]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--duration"), "{err}");
    let (code, err) = run(&[
        "--realtime",
        "--duration",
        "2",
        "--input",
        "Usr1.-1=ftp://h/a",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ftp://"), "{err}");
    assert!(!d.join("out/pull.mp4").exists());
}

/// A mode 1 mixer (one file per stream) pulling a URL: the camera's file gets the stream's
/// frames (the per-stream recorder ignores capture times; the pull paces in real time).
#[test]
fn a_mode_1_mixer_records_a_pulled_stream_into_its_own_file() {
    let d = dir("mode1");
    let server = RtmpServer::start(&d.join("nginx"));
    let url = server.url("cam");
    let _publisher = publish(&url, &d.join("ffmpeg.log"));
    let s = Serve::start(&d, &[]);
    let body = json!({"mode": 1, "mixerID": "m1", "roomId": "42",
        "videoFileCfg": {"svrPath": "/m1", "svrFileNameSuffix": ".mp4",
            "subscribeVideos": ["_cr_all_"]},
        "inputs": {"u1.0": url}});
    let (st, v, _) = s.req("POST", "/v1/mixers", Some(&body));
    assert_eq!(st, 201, "{v}");
    std::thread::sleep(Duration::from_secs(4));
    let (_, v, _) = s.req("GET", "/v1/mixers/m1", None);
    println!("{}", v["inputStates"]);
    assert_eq!(v["inputStates"][0]["state"], "live", "{v}");
    let (st, v, _) = s.req("DELETE", "/v1/mixers/m1", None);
    assert_eq!(st, 200, "{v}");
    let files: Vec<PathBuf> = std::fs::read_dir(d.join("rec/m1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (n, _) = frames_and_duration(&files[0]);
    // ~2.5 s of a 15 fps stream after the connect and probe
    assert!(n >= 20, "{}: {n} frames", files[0].display());
}

/// An MPEG-TS stream (over SRT) whose 33-bit timestamps wrap 2 s in: the recording goes on
/// through the wrap with the clip's pictures and sound in step (no freeze, no placeholder, no
/// gap), and the input stays live.
#[test]
fn mpegts_timestamps_that_wrap_continue_the_timeline() {
    let d = dir("ts-wrap");
    let port = free_port();
    let url = format!("srt://127.0.0.1:{port}");
    // 2^33 / 90 kHz = 95443.718 s: the stream's clock wraps 2 s after its start
    let _listener = Proc(Some(
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(clip())
            .args(["-c", "copy", "-output_ts_offset", "95441.7", "-f", "mpegts"])
            .arg(format!("{url}?mode=listener"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("ffmpeg.log")).unwrap())
            .spawn()
            .expect("ffmpeg"),
    ));
    let out = finish(&d, record_cmd(&d, &url, 9.0).spawn().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let states = input_states(&events(&d));
    println!("states {states:?}");
    assert!(
        states.iter().all(|(s, _)| s == "connecting" || s == "live"),
        "the input was lost across the wrap: {states:?}"
    );
    let p = d.join("out/pull.mp4");
    assert_in_step(&p, 5);
    // from the first picture on, every frame shows the camera (the wrap froze nothing into a
    // placeholder), and its flashes keep coming once a second to the end
    let ph = placeholder_frames(&p);
    let first = ph.iter().position(|&x| !x).expect("no camera picture");
    assert!(
        ph[first..].iter().all(|&x| !x),
        "placeholder after the camera appeared: {:?}",
        runs_of(&ph)
    );
    let flashes = flash_times(&p);
    let (_, dur) = frames_and_duration(&p);
    for w in flashes.windows(2) {
        assert!(
            (w[1] - w[0] - 1.0).abs() < 0.1,
            "flashes not a second apart: {flashes:?}"
        );
    }
    assert!(
        dur - flashes.last().unwrap() < 1.6,
        "flashes stop at {:?} of {dur:.2} s",
        flashes.last()
    );
}

/// Two rooms of one service pulling the same SRT URL: FFmpeg's SRT listener takes one caller
/// only, so both rooms getting the stream means one connection and one decode for both. Each
/// room names the input its own way (its events and info say that name), each file has the
/// clip's flashes and clicks in step on its own clock, and the first room's end leaves the
/// second one's input live.
#[test]
fn two_rooms_pulling_one_url_share_its_connection_and_its_decode() {
    let d = dir("shared");
    let (_listener, url) = srt_listener(&d);
    let s = Serve::start(&d, &["--latency", "300"]);
    let room = |id: &str, camid: &str| {
        json!({"mixerID":id,"mode":0,"videoFileCfg":{"svrPathName":format!("/{id}.mp4"),
        "vWidth":640,"vHeight":480,"vFps":30,"backgroundColor":"#FF00FF",
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":640,"height":480,
        "param":{"camid":camid}}]},"inputs":{camid: url}})
    };
    let input = |id: &str| {
        let (st, v, _) = s.req("GET", &format!("/v1/mixers/{id}"), None);
        assert_eq!(st, 200, "{v}");
        v["inputStates"][0].clone()
    };
    let wait_live = |id: &str| {
        let t0 = Instant::now();
        loop {
            let i = input(id);
            if i["state"] == "live" {
                return i;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{id}: {i}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (st, v, _) = s.req("POST", "/v1/mixers", Some(&room("m1", "Usr1.-1")));
    assert_eq!(st, 201, "{v}");
    wait_live("m1");
    std::thread::sleep(Duration::from_secs(1));
    let (st, v, _) = s.req("POST", "/v1/mixers", Some(&room("m2", "Usr2.-1")));
    assert_eq!(st, 201, "{v}");
    // live at once: it joined the connection that is live
    let i2 = wait_live("m2");
    assert_eq!(i2["input"], "Usr2.-1", "{i2}");
    std::thread::sleep(Duration::from_secs(5));
    let (i1, i2) = (input("m1"), input("m2"));
    println!("m1 {i1}\nm2 {i2}");
    assert_eq!(i1["input"], "Usr1.-1", "{i1}");
    assert_eq!(i1["reconnects"], 0, "{i1}");
    // one decode: the frames counted for the one stream are the frames of its ~7 s (15 fps),
    // not twice that
    let frames = i2["videoFrames"].as_u64().unwrap();
    assert!(
        (80..=130).contains(&frames),
        "{frames} frames decoded: {i2}"
    );
    let (_, v, _) = s.req("GET", "/v1/mixers/m1", None);
    println!("m1 stats {}", v["stats"]);
    let (_, v, _) = s.req("GET", "/v1/mixers/m2", None);
    println!("m2 stats {}", v["stats"]);
    let (st, v, _) = s.req("DELETE", "/v1/mixers/m1", None);
    assert_eq!(st, 200, "{v}");
    std::thread::sleep(Duration::from_secs(2));
    let i2 = input("m2");
    assert_eq!(i2["state"], "live", "{i2}");
    assert!(i2["videoFrames"].as_u64().unwrap() >= frames + 20, "{i2}");
    let (_, v, _) = s.req("GET", "/v1/mixers/m2", None);
    println!("m2 stats {}", v["stats"]);
    let (st, v, _) = s.req("DELETE", "/v1/mixers/m2", None);
    assert_eq!(st, 200, "{v}");
    assert_in_step(&d.join("rec/m1.mp4"), 2);
    // m2 joined a running stream: in step from its first half second on
    assert_in_step_after(&d.join("rec/m2.mp4"), 5, 0.5);
}
