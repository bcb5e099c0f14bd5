//! Outputs as a user runs them with `cloudmixer record` (default settings): segments, HLS, a
//! live target that cannot be reached next to a file, an RTMP server that dies and comes back,
//! uploads to a real S3-compatible server (s3s-fs) with their faults.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BIN: &str = env!("CARGO_BIN_EXE_cloudmixer");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("outputs")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a `record` run left: exit status, stdout, stderr, the events (JSON lines).
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

/// `record` of cam1 (15 fps, with a tone) into `svr` for `secs` seconds (offline unless
/// `args` says `--realtime`); `extra` goes into `videoFileCfg`, `top` into the config.
fn record_run(d: &Path, svr: &str, extra: Value, top: Value, secs: u32, args: &[&str]) -> Run {
    let mut vfc = json!({"svrPathName":svr,"vWidth":320,"vHeight":240,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":320,"height":240,"param":{"camid":"u1.0"}}]});
    for (k, v) in extra.as_object().unwrap() {
        vfc[k] = v.clone();
    }
    let mut cfg_v = json!({"mode":0,"videoFileCfg":vfc});
    for (k, v) in top.as_object().unwrap() {
        cfg_v[k] = v.clone();
    }
    let cfg = d.join("cfg.json");
    std::fs::write(&cfg, cfg_v.to_string()).unwrap();
    let events = d.join("events.jsonl");
    let out = Command::new(BIN)
        .args(["record", "--config"])
        .arg(&cfg)
        .arg("--input")
        .arg(format!("u1.0={ROOT}/fixtures/clips/cam1_640x480_15.mp4"))
        .arg("--storage")
        .arg(d.join("out"))
        .args(["--duration", &secs.to_string(), "--events"])
        .arg(&events)
        .args(args)
        .output()
        .unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        events: std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

/// `record_run` offline with no extra config, which must succeed; the events.
fn record(d: &Path, svr: &str, extra: Value, secs: u32) -> Vec<Value> {
    let r = record_run(d, svr, extra, json!({}), secs, &[]);
    assert!(r.status.success(), "record failed: {}", r.stderr);
    r.events
}

/// (video frames, audio packets) that ffprobe reads from a file or playlist.
fn counts(p: &Path) -> (u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-count_packets",
            "-show_entries",
        ])
        .args([
            "stream=codec_type,nb_read_frames,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut v, mut a) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split(',').collect();
        match f.first() {
            Some(&"video") => v = f[1].parse().unwrap(),
            Some(&"audio") => a = f[2].parse().unwrap(),
            _ => {}
        }
    }
    (v, a)
}

/// The final output infos (state ≠ 1), by id.
fn finals(events: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .filter(|o| o["state"] != 1)
        .cloned()
        .collect();
    v.sort_by_key(|o| o["id"].as_u64());
    v
}

#[test]
fn two_second_segments_of_a_ten_second_recording_add_up() {
    let d = dir("segments");
    let ev = record(&d, "seg/rec.mp4", json!({"segmentDuration": 2}), 10);
    let whole = dir("segments_whole");
    record(&whole, "rec.mp4", json!({}), 10);
    let (wv, wa) = counts(&whole.join("out/rec.mp4"));
    assert_eq!(wv, 150);
    let mut frames = Vec::new();
    let mut audio = 0;
    for i in 1..=5 {
        let f = d.join(format!("out/seg/rec_{i:04}.mp4"));
        let (v, a) = counts(&f);
        frames.push(v);
        audio += a;
    }
    assert!(!d.join("out/seg/rec_0006.mp4").exists());
    assert_eq!(frames, [30; 5], "each segment from a keyframe, 2 s each");
    assert_eq!(audio, wa, "audio packets: segments vs one file");
    // every segment is reported as its own output, stopped, with its own id and name
    let f = finals(&ev);
    let names: Vec<&str> = f
        .iter()
        .map(|o| o["svrFilePathName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "seg/rec_0001.mp4",
            "seg/rec_0002.mp4",
            "seg/rec_0003.mp4",
            "seg/rec_0004.mp4",
            "seg/rec_0005.mp4"
        ]
    );
    assert!(
        f.iter().all(|o| o["state"] == 2 && o["errCode"] == 0),
        "{f:?}"
    );
    let ids: Vec<u64> = f.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    let durations: u64 = f.iter().map(|o| o["duration"].as_u64().unwrap()).sum();
    assert_eq!(durations, 10_000);
}

#[test]
fn an_hls_playlist_plays_end_to_end() {
    let d = dir("hls");
    record(&d, "live/room.m3u8;room.mp4", json!({}), 7);
    let pl = d.join("out/live/room.m3u8");
    let text = std::fs::read_to_string(&pl).unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"room_init.mp4\""), "{text}");
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    assert_eq!(text.matches("#EXTINF:").count(), 4, "2 s segments: {text}");
    let (v, a) = counts(&pl);
    assert_eq!(v, 105);
    assert_eq!((v, a), counts(&d.join("out/room.mp4")));
}

#[test]
fn an_unreachable_live_target_never_costs_the_file() {
    let d = dir("unreachable");
    let ev = record(&d, "/ok.mp4;rtmp://127.0.0.1:1/live/x", json!({}), 4);
    assert_eq!(counts(&d.join("out/ok.mp4")).0, 60);
    let f = finals(&ev);
    assert_eq!(f[0]["state"], 2, "{f:?}");
    assert_eq!(f[1]["svrFilePathName"], "rtmp://127.0.0.1:1/live/x");
    assert_eq!(f[1]["state"], 3, "{f:?}");
    assert_eq!(f[1]["errCode"], 905);
    assert!(
        f[1]["errDesc"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{f:?}"
    );
    // the recording itself ended well
    let last = ev.last().unwrap();
    assert_eq!(
        (last["state"].as_u64(), last["err"].as_i64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_file_and_an_rtmp_push_to_nginx_both_get_everything() {
    use cloudmixer::testkit::nginx::RtmpServer;
    let d = dir("rtmp");
    let mut server = RtmpServer::start(&d.join("nginx"));
    let url = server.url("room");
    let ev = record(&d, &format!("/room.mp4;{url}"), json!({}), 4);
    // let nginx write what it received, then read its recording
    server.stop();
    let (fv, fa) = counts(&d.join("out/room.mp4"));
    assert_eq!(fv, 60);
    let recs = server.recordings();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let (rv, ra) = counts(&recs[0]);
    assert_eq!(rv, fv, "every frame reached the server");
    assert!(ra + 2 >= fa && ra > 0, "audio: server {ra}, file {fa}");
    let f = finals(&ev);
    assert_eq!(f[1]["svrFilePathName"], url.as_str());
    assert_eq!(
        (f[1]["state"].as_u64(), f[1]["errCode"].as_i64()),
        (Some(2), Some(0)),
        "{f:?}"
    );
    assert!(f[1]["fileSize"].as_u64().unwrap() > 10_000, "{f:?}");
}

/// The states output `id` went through, repeats folded: e.g. `[1, 2, 4, 5]`.
fn states(events: &[Value], id: u64) -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    for o in events.iter().filter_map(|e| e.get("outputInfo")) {
        if o["id"] == id {
            let s = o["state"].as_u64().unwrap();
            if v.last() != Some(&s) {
                v.push(s);
            }
        }
    }
    v
}

/// The last output info of output `id`.
fn last_info(events: &[Value], id: u64) -> Value {
    events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .rfind(|o| o["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no outputInfo {id}: {events:?}"))
}

/// A live record run in the background, while the test plays with the server.
fn record_live_in_background<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    d: &'s Path,
    svr: String,
    secs: u32,
) -> std::thread::ScopedJoinHandle<'s, Run> {
    s.spawn(move || record_run(d, &svr, json!({}), json!({}), secs, &["--realtime"]))
}

/// The RTMP server is killed 3 s into a 10 s live recording and comes back at 5 s: the file
/// has every frame, the push comes back by itself, and the events say so (1 → 3 → 1).
#[test]
fn an_rtmp_server_that_dies_and_comes_back_costs_the_file_nothing() {
    use cloudmixer::testkit::nginx::RtmpServer;
    let d = dir("rtmp_restart");
    let nginx = d.join("nginx");
    let mut server = RtmpServer::start(&nginx);
    let port = server.port();
    let url = server.url("room");
    let r = std::thread::scope(|s| {
        let t0 = std::time::Instant::now();
        let run = record_live_in_background(s, &d, format!("/room.mp4;{url}"), 10);
        std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
        server.kill();
        std::thread::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed()));
        server = RtmpServer::start_on(&nginx, port);
        run.join().unwrap()
    });
    server.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(
        counts(&d.join("out/room.mp4")).0,
        150,
        "the file has every frame"
    );
    let st = states(&r.events, 1);
    assert!(
        st.windows(3).any(|w| w == [1, 3, 1]),
        "the live output went down and came back: {st:?}"
    );
    let down = r
        .events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .find(|o| o["id"] == 1 && o["state"] == 3)
        .unwrap();
    assert_eq!(down["errCode"], 905);
    assert!(
        down["errDesc"].as_str().unwrap().contains("reconnecting"),
        "{down}"
    );
    assert_eq!(last_info(&r.events, 1)["state"], 2, "{st:?}");
    // nginx recorded the stream before the kill and again after the restart
    let recs = server.recordings();
    assert!(recs.len() >= 2, "{recs:?}");
    let after = counts(recs.iter().max().unwrap());
    assert!(after.0 >= 15 && after.1 > 0, "the resumed push: {after:?}");
}

/// The RTMP server is not there when the recording starts and comes up 2 s later: the push
/// starts then, and the file is complete.
#[test]
fn an_rtmp_server_down_at_start_is_pushed_to_once_it_is_up() {
    use cloudmixer::testkit::nginx::{free_port, RtmpServer};
    let d = dir("rtmp_late");
    let port = free_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/late");
    let (r, mut server) = std::thread::scope(|s| {
        let run = record_live_in_background(s, &d, format!("/late.mp4;{url}"), 8);
        std::thread::sleep(Duration::from_secs(2));
        let server = RtmpServer::start_on(&d.join("nginx"), port);
        (run.join().unwrap(), server)
    });
    server.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(counts(&d.join("out/late.mp4")).0, 120);
    let st = states(&r.events, 1);
    // reported running at create (before the first attempt), down, then up
    assert!(st.windows(2).any(|w| w == [3, 1]), "down, then up: {st:?}");
    assert_eq!(st.last(), Some(&2), "{st:?}");
    let recs = server.recordings();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let (v, a) = counts(&recs[0]);
    assert!(
        v >= 30 && a > 0,
        "pushed after the server came up: {v} frames, {a} audio"
    );
}

fn storage(s: &cloudmixer::testkit::s3::S3Server, extra: Value) -> Value {
    let mut st = json!({"vendor": 0, "region": "us-east-1", "bucket": s.bucket,
        "accessKey": s.access_key, "secretKey": s.secret_key, "endpoint": s.endpoint});
    for (k, v) in extra.as_object().unwrap() {
        st[k] = v.clone();
    }
    json!({ "storageConfig": st })
}

fn journal(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.upload.json", p.display()))
}

/// With a `storageConfig` (default settings): the finished file is uploaded (1 → 2 → 4 → 5),
/// the object is the recording, the local file and its journal are gone, and NULL comes last.
#[test]
fn a_finished_recording_is_uploaded_and_the_local_copy_removed() {
    use cloudmixer::testkit::s3::S3Server;
    let d = dir("upload_ok");
    let s3 = S3Server::start(&d.join("s3"));
    let r = record_run(&d, "/rec/a.mp4", json!({}), storage(&s3, json!({})), 3, &[]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(states(&r.events, 0), [1, 2, 4, 5]);
    let uploading: Vec<&Value> = r
        .events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .filter(|o| o["state"] == 4)
        .collect();
    assert!(
        uploading.iter().all(|o| o["progress"].is_number()),
        "{uploading:?}"
    );
    let done = last_info(&r.events, 0);
    assert_eq!(done["progress"], 100.0);
    let last = r.events.last().unwrap();
    assert_eq!(
        (last["state"].as_u64(), last["err"].as_i64()),
        (Some(0), Some(0))
    );
    let local = d.join("out/rec/a.mp4");
    assert!(!local.exists() && !journal(&local).exists());
    let obj = s3.get_object("rec/a.mp4").unwrap();
    assert_eq!(done["fileSize"].as_u64(), Some(obj.len() as u64));
    let copy = d.join("object.mp4");
    std::fs::write(&copy, &obj).unwrap();
    let (v, a) = counts(&copy);
    assert_eq!(v, 45);
    assert!(a > 0);
    assert!(
        r.stdout.contains("output 0: /rec/a.mp4: uploaded"),
        "{}",
        r.stdout
    );
}

/// `keepLocal` with 2 s segments: every segment is uploaded as its own object, byte for byte.
#[test]
fn segments_are_each_uploaded_and_kept_with_keep_local() {
    use cloudmixer::testkit::s3::S3Server;
    let d = dir("upload_segments");
    let s3 = S3Server::start(&d.join("s3"));
    let top = storage(&s3, json!({"keepLocal": true}));
    let r = record_run(&d, "seg/b.mp4", json!({"segmentDuration": 2}), top, 4, &[]);
    assert!(r.status.success(), "{}", r.stderr);
    for (id, i) in [(0, 1), (1, 2)] {
        let name = format!("seg/b_{i:04}.mp4");
        let local = std::fs::read(d.join("out").join(&name)).unwrap();
        assert_eq!(s3.get_object(&name).unwrap(), local, "{name}");
        assert_eq!(last_info(&r.events, id)["state"], 5);
        assert!(!journal(&d.join("out").join(&name)).exists());
    }
}

/// The store is down when the recording ends: retries (state 4 saying why), then 6 with 1107,
/// exit status 3, the file and its journal kept. The next run, with the store back, uploads it.
#[test]
fn an_upload_that_fails_is_kept_and_finished_by_the_next_run() {
    use cloudmixer::testkit::s3::S3Server;
    let d = dir("upload_down");
    let mut s3 = S3Server::start(&d.join("s3"));
    s3.kill();
    let r = record_run(&d, "/down.mp4", json!({}), storage(&s3, json!({})), 2, &[]);
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    assert_eq!(states(&r.events, 0), [1, 2, 4, 6]);
    let failed = last_info(&r.events, 0);
    assert_eq!(failed["errCode"], 1107);
    assert!(!failed["errDesc"].as_str().unwrap().is_empty());
    let retries = r
        .events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .filter(|o| o["state"] == 4 && o["errDesc"].as_str().unwrap().contains("retrying"))
        .count();
    assert_eq!(retries, 5, "the default retry budget");
    assert!(
        r.stderr.contains("upload of /down.mp4 failed"),
        "{}",
        r.stderr
    );
    let local = d.join("out/down.mp4");
    assert!(local.exists() && journal(&local).exists());
    assert_eq!(counts(&local).0, 30);

    s3.restart();
    let r2 = record_run(&d, "/next.mp4", json!({}), storage(&s3, json!({})), 1, &[]);
    assert!(r2.status.success(), "{}", r2.stderr);
    assert!(r2.stdout.contains("uploaded as down.mp4"), "{}", r2.stdout);
    assert!(!local.exists() && !journal(&local).exists());
    let copy = d.join("down_object.mp4");
    std::fs::write(&copy, s3.get_object("down.mp4").unwrap()).unwrap();
    assert_eq!(counts(&copy).0, 30);
    assert!(s3.get_object("next.mp4").is_ok());
}

/// Wrong credentials fail at once (6, 1107) with a description that says so; the file stays.
#[test]
fn wrong_credentials_fail_the_upload_and_say_so() {
    use cloudmixer::testkit::s3::S3Server;
    let d = dir("upload_creds");
    let s3 = S3Server::start(&d.join("s3"));
    let top = storage(&s3, json!({"secretKey": "not-the-secret"}));
    let r = record_run(&d, "/c.mp4", json!({}), top, 1, &[]);
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    let f = last_info(&r.events, 0);
    assert_eq!(
        (f["state"].as_u64(), f["errCode"].as_i64()),
        (Some(6), Some(1107))
    );
    let desc = f["errDesc"].as_str().unwrap();
    assert!(desc.contains("secretKey"), "{desc}");
    assert!(d.join("out/c.mp4").exists());
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, without connecting: an
/// RTSP server in listen mode takes the first connection as its publisher).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// `rtsp://` next to a file, to a real RTSP server: FFmpeg in listen mode (`-rtsp_flags
/// listen`, RTP over the RTSP connection) that lists what it receives: every video frame
/// and every audio packet (but possibly the last) arrives.
#[test]
fn an_rtsp_push_reaches_a_listening_server() {
    use cloudmixer::testkit::nginx::free_port;
    let d = dir("rtsp");
    let port = free_port();
    let url = format!("rtsp://127.0.0.1:{port}/live/room");
    let crc = d.join("received.crc");
    /// The listening server, killed when the test ends (also when it fails).
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Server(
        Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-rtsp_flags",
                "listen",
                "-timeout",
                "20",
                "-i",
                &url,
            ])
            .args(["-map", "0", "-c", "copy", "-f", "framecrc", "-y"])
            .arg(&crc)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = std::time::Instant::now();
    while !listening(port) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "ffmpeg did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ev = record(&d, &format!("/room.mp4;{url}"), json!({}), 4);
    // the server ends when the publisher tears down
    let t1 = std::time::Instant::now();
    while server.0.try_wait().unwrap().is_none() {
        if t1.elapsed() > Duration::from_secs(10) {
            panic!("the RTSP server did not end after the push");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (fv, fa) = counts(&d.join("out/room.mp4"));
    let text = std::fs::read_to_string(&crc).unwrap();
    let per_stream = |i: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.split(',').next().map(str::trim) == Some(i))
            .count() as u64
    };
    assert_eq!(fv, 60);
    assert_eq!(per_stream("0"), fv, "every video frame reached the server");
    // FFmpeg's RTP AAC packetizer may hold the very last 21 ms packet at teardown
    let ra = per_stream("1");
    assert!(
        ra <= fa && ra + 1 >= fa,
        "audio packets: server {ra}, file {fa}"
    );
    let f = finals(&ev);
    assert_eq!(f[1]["svrFilePathName"], url.as_str());
    assert_eq!(f[1]["state"], 2, "{f:?}");
}
