//! Storage safety, written as the attacks and faults a hostile user or a bad network brings
//! (DESIGN "Storage safety"): symlinks planted at every file the recorder writes, forged and
//! replayed upload journals, two recordings with the same path against a real S3-compatible
//! server (s3s-fs), SIGTERM against an endpoint that never answers, two uploaders sharing one
//! root, credentials in the endpoint.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudmixer::output::upload::{JournalKey, UploadOptions, UploadTarget, Uploader};
use cloudmixer::output::Storage;
use cloudmixer::testkit::s3::{free_port, S3Server};
use serde_json::{json, Value};

mod common;
use common::frames;

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The binary under test (`CLOUDMIXER_TEST_BIN` runs these attacks against another build).
fn bin() -> String {
    std::env::var("CLOUDMIXER_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cloudmixer").into())
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("storage_safety")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every (name, bytes) under `d`, symlinks as their target text (to see nothing changed).
fn snapshot(d: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let ty = e.file_type().unwrap();
            if ty.is_symlink() {
                let t = std::fs::read_link(&path).unwrap();
                out.push((path, t.into_os_string().into_encoded_bytes()));
            } else if ty.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fn config(d: &Path, svr: &str, top: Value) -> PathBuf {
    let mut cfg = json!({"mode":0,"videoFileCfg":{"svrPathName":svr,"vWidth":320,"vHeight":240,
        "vFps":15,"layoutConfig":[{"type":0,"left":0,"top":0,"width":320,"height":240,
        "param":{"camid":"u1.0"}}]}});
    for (k, v) in top.as_object().unwrap() {
        match k.strip_prefix("videoFileCfg.") {
            Some(field) => cfg["videoFileCfg"][field] = v.clone(),
            None => cfg[k] = v.clone(),
        }
    }
    let p = d.join(format!("cfg-{}.json", free_port()));
    std::fs::write(&p, cfg.to_string()).unwrap();
    p
}

/// `record` of cam1 into `svr` under `d/st` for `secs` seconds.
fn record_cmd(d: &Path, svr: &str, top: Value, secs: u32, events: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["record", "--config"])
        .arg(config(d, svr, top))
        .arg("--input")
        .arg(format!("u1.0={ROOT}/fixtures/clips/cam1_640x480_15.mp4"))
        .arg("--storage")
        .arg(d.join("st"))
        .args(["--duration", &secs.to_string(), "--events"])
        .arg(events)
        // the journal key lives outside the storage tree, shared by the runs of one test
        .env("CLOUDMIXER_JOURNAL_KEY", d.join("journal.key"));
    c
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
}

fn run(d: &Path, svr: &str, top: Value, secs: u32, extra: &[&str]) -> Run {
    let ev = d.join(format!("events-{}.jsonl", free_port()));
    let out = record_cmd(d, svr, top, secs, &ev)
        .args(extra)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        events: read_events(&ev),
    }
}

fn read_events(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn storage_cfg(s: &S3Server) -> Value {
    json!({"storageConfig": {"vendor": 0, "region": "us-east-1", "bucket": s.bucket,
        "accessKey": s.access_key, "secretKey": s.secret_key, "endpoint": s.endpoint}})
}

fn symlink(target: &Path, at: &Path) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// Item 1 and 4: symlinks at every HLS side-file name (init segment, playlist and segment
/// temporaries, a segment) and an existing recording named like the init segment. Nothing is
/// written outside the root, nothing existing is clobbered, and the playlist plays.
#[test]
fn hls_side_files_planted_as_symlinks_write_nothing_outside() {
    let d = dir("hls_planted");
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"VICTIM").unwrap();
    let live = d.join("st/live");
    for n in [
        "room_init.mp4",
        "room.m3u8.tmp",
        "room_00000.m4s.tmp",
        "room_00001.m4s",
    ] {
        symlink(&outside.join(n), &live.join(n));
    }
    symlink(&outside.join("victim"), &live.join("room_00002.m4s.tmp"));
    // an earlier recording that an HLS init segment must not replace
    std::fs::copy(
        format!("{ROOT}/fixtures/clips/cam1_640x480_15.mp4"),
        live.join("talk_init.mp4"),
    )
    .unwrap();
    let before_out = snapshot(&outside);
    let before_in = snapshot(&d.join("st"));
    let r = run(&d, "/live/room.m3u8", json!({}), 5, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r2 = run(&d, "/live/talk.m3u8", json!({}), 3, &[]);
    assert_eq!(r2.code, Some(0), "{}", r2.stderr);
    assert_eq!(snapshot(&outside), before_out, "written outside the root");
    let after_in = snapshot(&d.join("st"));
    for entry in &before_in {
        assert!(after_in.contains(entry), "{} changed", entry.0.display());
    }
    // both playlists chose names whose side files were free
    assert_eq!(frames(&live.join("room_1.m3u8")), 75);
    assert_eq!(frames(&live.join("talk_1.m3u8")), 45);
    assert!(live.join("room_1_init.mp4").is_file() && live.join("talk_1_init.mp4").is_file());
}

/// Item 1, while recording: symlinks planted after the start at the names the HLS muxer
/// writes next (segment temporaries, a segment, the playlist temporary) are replaced, never
/// followed.
#[test]
fn hls_names_planted_during_a_live_recording_are_not_followed() {
    let d = dir("hls_race");
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"VICTIM").unwrap();
    let ev = d.join("events.jsonl");
    let mut child = record_cmd(&d, "/live/r.m3u8", json!({}), 7, &ev)
        .arg("--realtime")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let live = d.join("st/live");
    let t0 = Instant::now();
    while !live.join("r.m3u8").exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    for n in [
        "r_00002.m4s.tmp",
        "r_00003.m4s.tmp",
        "r_00002.m4s",
        "r.m3u8.tmp",
    ] {
        symlink(&outside.join("victim"), &live.join(n));
    }
    let st = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"VICTIM");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert!(st.success(), "{err}");
    assert_eq!(frames(&live.join("r.m3u8")), 105);
    for n in ["r_00002.m4s", "r_00003.m4s"] {
        let m = std::fs::symlink_metadata(live.join(n)).unwrap();
        assert!(m.is_file(), "{n} is a regular file of ours");
    }
}

/// Item 1 for plain files: a symlinked folder and symlinked target and segment names; the
/// recording goes elsewhere or is refused, nothing outside is touched.
#[test]
fn symlinked_folders_and_names_of_files_and_segments_are_never_followed() {
    let d = dir("files_planted");
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"VICTIM").unwrap();
    symlink(&outside, &d.join("st/away"));
    symlink(&outside.join("victim"), &d.join("st/a/rec.flv"));
    symlink(&outside.join("victim"), &d.join("st/seg/s_0001.mp4"));
    symlink(&outside.join("new.mp4"), &d.join("st/seg/s_0002.mp4"));
    let before = snapshot(&outside);
    let r = run(&d, "/away/x.mp4", json!({}), 1, &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("code 5"), "{}", r.stderr);
    assert!(r.stderr.contains("away is a symlink"), "{}", r.stderr);
    let r = run(&d, "/a/rec.flv", json!({}), 1, &["--overwrite"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
    let r = run(
        &d,
        "/seg/s.mp4",
        json!({"videoFileCfg.segmentDuration": 2}),
        5,
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(snapshot(&outside), before);
    // the segments went to the first free names instead
    let seg = d.join("st/seg");
    let mut names: Vec<String> = std::fs::read_dir(&seg)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // a new series, next to the planted names, never mixing with them
    assert_eq!(
        names,
        ["s_1_0001.mp4", "s_1_0002.mp4", "s_1_0003.mp4"],
        "{names:?}"
    );
    let total: u64 = names.iter().map(|n| frames(&seg.join(n))).sum();
    assert_eq!(total, 75, "{names:?}");
}

/// Item 2: a planted symlink to an outside file plus a hand-written journal naming another
/// tenant's key; a real pending upload whose file was then swapped for another file, and one
/// whose file became a symlink. None is uploaded, nothing is deleted, the outside file stays.
#[test]
fn forged_and_replayed_journals_upload_nothing() {
    let d = dir("forged");
    let mut s3 = S3Server::start(&d.join("s3"));
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.mp4"), b"SECRET").unwrap();
    let x = d.join("st/x");
    symlink(&outside.join("secret.mp4"), &x.join("leak.mp4"));
    let forged = [
        // the old unsigned journal format
        json!({"version":1,"key":"other-tenant/room42/rec.mp4","size":6,"bucket":s3.bucket,
            "created_ms":0}),
        // the new fields with a made-up signature
        json!({"version":2,"key":"other-tenant/room42/rec.mp4","size":6,"bucket":s3.bucket,
            "endpoint":s3.endpoint,"rel":"x/leak.mp4","dev":0,"ino":0,"created_ms":0,
            "mac":"00".repeat(32)}),
    ];
    // real pending uploads of this key holder (the store is down for this run)
    s3.kill();
    let r = run(&d, "/p/swapped.mp4", storage_cfg(&s3), 1, &[]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let r = run(&d, "/p/linked.mp4", storage_cfg(&s3), 1, &[]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    s3.restart();
    let p = d.join("st/p");
    // swapped: same name and size, another inode
    let bytes = std::fs::read(p.join("swapped.mp4")).unwrap();
    std::fs::remove_file(p.join("swapped.mp4")).unwrap();
    std::fs::write(p.join("swapped.mp4"), &bytes).unwrap();
    // linked: the file became a symlink to the outside secret
    std::fs::remove_file(p.join("linked.mp4")).unwrap();
    symlink(&outside.join("secret.mp4"), &p.join("linked.mp4"));
    // a signed journal copied next to the planted symlink (replayed under another name)
    std::fs::copy(
        p.join("linked.mp4.upload.json"),
        x.join("copied.mp4.upload.json"),
    )
    .unwrap();
    symlink(&outside.join("secret.mp4"), &x.join("copied.mp4"));
    for (i, j) in forged.iter().enumerate() {
        let at = if i == 0 {
            x.join("leak.mp4.upload.json")
        } else {
            x.join("leak2.mp4.upload.json")
        };
        std::fs::write(&at, j.to_string()).unwrap();
    }
    symlink(&outside.join("secret.mp4"), &x.join("leak2.mp4"));
    let before = snapshot(&d.join("st"));
    let r = run(&d, "/ok.mp4", storage_cfg(&s3), 1, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for key in [
        "other-tenant/room42/rec.mp4",
        "x/leak.mp4",
        "x/leak2.mp4",
        "x/copied.mp4",
        "p/linked.mp4",
        "p/swapped.mp4",
    ] {
        assert!(s3.get_object(key).is_err(), "{key} was uploaded");
    }
    assert!(s3.get_object("ok.mp4").is_ok(), "the recording itself is");
    assert_eq!(
        std::fs::read(outside.join("secret.mp4")).unwrap(),
        b"SECRET"
    );
    // every trace left alone (the run's own recording was uploaded and removed)
    let after = snapshot(&d.join("st"));
    for entry in &before {
        assert!(after.contains(entry), "{} changed", entry.0.display());
    }
    assert!(!r.stdout.contains("resumed"), "{}", r.stdout);
    assert!(
        !r.events.iter().any(|e| e.get("resumed").is_some()),
        "no resumed upload reported"
    );
}

/// Item 3 and 9: run 1 cannot upload (store down); run 2 with the same `svrPathName` resumes
/// it and records into the freed name: both recordings end in the bucket under their own keys,
/// and the resumed upload shows in run 2's events with states 4 then 5.
#[test]
fn the_same_path_twice_never_overwrites_an_object() {
    let d = dir("same_path");
    let mut s3 = S3Server::start(&d.join("s3"));
    s3.kill();
    let r1 = run(&d, "/r/rec.mp4", storage_cfg(&s3), 2, &[]);
    assert_eq!(r1.code, Some(3), "{}", r1.stderr);
    s3.restart();
    let r2 = run(&d, "/r/rec.mp4", storage_cfg(&s3), 3, &[]);
    assert_eq!(r2.code, Some(0), "{}", r2.stderr);
    let r3 = run(&d, "/r/rec.mp4", storage_cfg(&s3), 1, &[]);
    assert_eq!(r3.code, Some(0), "{}", r3.stderr);
    let mut got = Vec::new();
    for key in ["r/rec.mp4", "r/rec_1.mp4", "r/rec_2.mp4"] {
        let obj = s3.get_object(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let copy = d.join(key.replace('/', "_"));
        std::fs::write(&copy, obj).unwrap();
        got.push(frames(&copy));
    }
    got.sort();
    assert_eq!(got, [15, 30, 45], "every recording kept once");
    // the resumed upload of run 1 reported in run 2's events: 4 … 5, resumed
    let resumed: Vec<&Value> = r2
        .events
        .iter()
        .filter(|e| e.get("resumed") == Some(&Value::Bool(true)))
        .collect();
    let states: Vec<u64> = resumed
        .iter()
        .filter_map(|e| e["outputInfo"]["state"].as_u64())
        .collect();
    assert_eq!(states.first(), Some(&4), "{resumed:?}");
    assert_eq!(states.last(), Some(&5), "{resumed:?}");
    let last = resumed.last().unwrap();
    assert_eq!(last["outputInfo"]["svrFilePathName"], "/r/rec.mp4");
    // run 3's object went to the next free key, and its events say so
    let name = r3
        .events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .filter(|o| o["state"] == 5)
        .map(|o| o["svrFilePathName"].as_str().unwrap().to_string())
        .next_back()
        .unwrap();
    assert_eq!(name, "/r/rec_2.mp4");
}

/// A TCP server that accepts connections and never answers (kept open until dropped).
struct BlackHole {
    port: u16,
    _stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        BlackHole { port, _stop: stop }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self._stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Item 5: the first SIGTERM while uploading to an endpoint that accepts and never answers,
/// or to one that refuses, ends the process within 2 s with status 3, the upload journaled
/// (state 6, "interrupted") and the file kept.
#[test]
fn sigterm_while_uploading_exits_within_two_seconds() {
    let hole = BlackHole::start();
    let refused = free_port();
    for (name, port) in [("hole", hole.port), ("refused", refused)] {
        let d = dir(&format!("sigterm_{name}"));
        let top = json!({"storageConfig": {"vendor": 0, "region": "us-east-1",
            "bucket": "recordings", "accessKey": "a", "secretKey": "s",
            "endpoint": format!("http://127.0.0.1:{port}")}});
        let ev = d.join("events.jsonl");
        let mut child = record_cmd(&d, "/up/rec.mp4", top, 1, &ev)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // wait until the upload runs (state 4), then a little longer
        let t0 = Instant::now();
        while !read_events(&ev)
            .iter()
            .any(|e| e["outputInfo"]["state"] == 4)
        {
            assert!(t0.elapsed() < Duration::from_secs(30), "{name}: no upload");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let sent = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if sent.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{name}: still running 10 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = sent.elapsed();
        eprintln!("{name}: exited {took:?} after SIGTERM");
        assert!(
            took < Duration::from_secs(2),
            "{name}: exited {took:?} after SIGTERM"
        );
        assert_eq!(status.code(), Some(3), "{name}");
        let local = d.join("st/up/rec.mp4");
        assert!(local.is_file() && d.join("st/up/rec.mp4.upload.json").is_file());
        assert_eq!(frames(&local), 15);
        let evs = read_events(&ev);
        let last_info = evs
            .iter()
            .filter_map(|e| e.get("outputInfo"))
            .next_back()
            .unwrap();
        assert_eq!(last_info["state"], 6, "{name}: {last_info}");
        assert!(
            last_info["errDesc"]
                .as_str()
                .unwrap()
                .contains("interrupted"),
            "{last_info}"
        );
        assert_eq!(evs.last().unwrap()["state"], 0, "NULL last");
    }
}

/// Item 12: a journal being uploaded by one recorder is not taken by a second one sharing the
/// storage root; once the first is gone, the second takes it.
#[test]
fn two_uploaders_sharing_a_root_do_not_take_each_others_journals() {
    let d = dir("shared_root");
    let hole = BlackHole::start();
    let root = d.join("st");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a/rec.mp4"), vec![7u8; 1000]).unwrap();
    let target = UploadTarget {
        bucket: "recordings".into(),
        access_key: "a".into(),
        secret_key: "s".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", hole.port)),
        ..UploadTarget::default()
    };
    let key = JournalKey::from_bytes([9; 32]);
    let a = Uploader::new(
        target.clone(),
        UploadOptions::default(),
        Storage::new(&root),
        key.clone(),
        |_| {},
    )
    .unwrap();
    a.submit(&root.join("a/rec.mp4"), "a/rec.mp4").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = Uploader::new(
        target,
        UploadOptions::default(),
        Storage::new(&root),
        key,
        |_| {},
    )
    .unwrap();
    assert_eq!(
        b.resume_pending(&root).unwrap(),
        0,
        "taken while A uploads it"
    );
    drop(a);
    assert_eq!(b.resume_pending(&root).unwrap(), 1, "free once A is gone");
}

/// Item 12: an endpoint with `user:password@` and a bucket that is a path are refused with
/// the field named; the password is never printed or written to the events.
#[test]
fn bad_buckets_and_endpoint_credentials_are_refused_without_echo() {
    let d = dir("creds");
    let top = json!({"storageConfig": {"vendor": 0, "region": "us-east-1",
        "bucket": "recordings", "accessKey": "a", "secretKey": "s",
        "endpoint": "http://admin:hunter2@127.0.0.1:9/"}});
    let r = run(&d, "/c.mp4", top, 1, &[]);
    assert_ne!(r.code, Some(0));
    let all = format!("{}{}{:?}", r.stdout, r.stderr, r.events);
    assert!(!all.contains("hunter2"), "{all}");
    assert!(r.stderr.contains("storageConfig.endpoint"), "{}", r.stderr);
    let top = json!({"storageConfig": {"vendor": 0, "region": "us-east-1",
        "bucket": "records/../other", "accessKey": "a", "secretKey": "s",
        "endpoint": "http://127.0.0.1:9"}});
    let r = run(&d, "/c.mp4", top, 1, &[]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("storageConfig.bucket"), "{}", r.stderr);
}

/// Item 5 for embedders: mixers whose uploads wait for one of their services' upload slots
/// (all held by mixers uploading to an endpoint that never answers) are abandoned at once
/// too: state 6 "interrupted", NULL, and a signed journal left so the next run uploads them.
#[test]
fn abandoned_uploads_waiting_for_a_slot_end_at_once_with_journals() {
    use cloudmixer::model::config::MixerConfig;
    use cloudmixer::model::events::{MixerEvent, MixerState, OutputState};
    use cloudmixer::model::frame::VideoFrame;
    use cloudmixer::pipeline::{Mixer, MixerSettings, Services, MAX_UPLOADING_MIXERS};
    let d = dir("slots");
    // the mixers share one set of upload slots (as the rooms of a host do)
    let services = Services::new();
    let hole = BlackHole::start();
    let root = d.join("st");
    let key = JournalKey::from_bytes([3; 32]);
    let n = MAX_UPLOADING_MIXERS + 2;
    let mut mixers = Vec::new();
    for i in 0..n {
        let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{
            "svrPathName": format!("/m{i}.mp4"),"vWidth":64,"vHeight":48,"vFps":15,
            "layoutConfig":[{"type":0,"left":0,"top":0,"width":64,"height":48,
            "param":{"camid":"a"}}]},
            "storageConfig":{"vendor":0,"region":"us-east-1","bucket":"recordings",
            "accessKey":"a","secretKey":"s","endpoint":format!("http://127.0.0.1:{}", hole.port)}}))
        .unwrap();
        let settings = MixerSettings {
            journal_key: key.clone(),
            services: Some(services.clone()),
            ..MixerSettings::offline()
        };
        let mut m = Mixer::create_with(cfg, Storage::new(&root), settings).unwrap();
        let rx = m.events();
        m.push_video("a", VideoFrame::solid_i420(64, 48, [80, 90, 100]).unwrap())
            .unwrap();
        m.advance_to(Duration::from_millis(500)).unwrap();
        m.destroy().unwrap();
        mixers.push((m, rx));
    }
    // let the first ones take the slots and hang on the black hole
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(services.upload_slots().counts(), (MAX_UPLOADING_MIXERS, 2));
    // the ones still waiting for a slot first: they must not wait for the others
    let t0 = Instant::now();
    for (m, _) in &mixers[MAX_UPLOADING_MIXERS..] {
        m.upload_abandon().abandon();
    }
    let check = |i: usize, rx: &crossbeam_channel::Receiver<MixerEvent>, t0: Instant| {
        let mut last_state = None;
        loop {
            let left = Duration::from_secs(3).saturating_sub(t0.elapsed());
            match rx.recv_timeout(left) {
                Ok(MixerEvent::OutputInfoChanged(info)) => last_state = Some(info),
                Ok(MixerEvent::StateChanged {
                    state: MixerState::Null,
                    ..
                }) => break,
                Ok(_) => {}
                Err(e) => panic!("mixer {i}: no NULL within 3 s of abandon ({e})"),
            }
        }
        let info = last_state.unwrap();
        assert_eq!(info.state, OutputState::UploadFail, "mixer {i}");
        assert!(info.err_desc.contains("interrupted"), "{}", info.err_desc);
        let f = root.join(format!("m{i}.mp4"));
        assert!(
            f.is_file() && root.join(format!("m{i}.mp4.upload.json")).is_file(),
            "{i}"
        );
    };
    for (i, (_, rx)) in mixers.iter().enumerate().skip(MAX_UPLOADING_MIXERS) {
        check(i, rx, t0);
    }
    // then the ones hanging on the endpoint
    let t0 = Instant::now();
    for (m, _) in &mixers[..MAX_UPLOADING_MIXERS] {
        m.upload_abandon().abandon();
    }
    for (i, (_, rx)) in mixers.iter().enumerate().take(MAX_UPLOADING_MIXERS) {
        check(i, rx, t0);
    }
    // every journal is signed: a resumer with the key takes all of them
    let up = Uploader::new(
        UploadTarget {
            bucket: "recordings".into(),
            access_key: "a".into(),
            secret_key: "s".into(),
            endpoint: Some(format!("http://127.0.0.1:{}", hole.port)),
            ..UploadTarget::default()
        },
        UploadOptions {
            queue: 64,
            ..UploadOptions::default()
        },
        Storage::new(&root),
        key,
        |_| {},
    )
    .unwrap();
    assert_eq!(up.resume_pending(&root).unwrap(), n);
}
