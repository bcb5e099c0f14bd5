//! Mode 1 (one file per stream): `cloudmixer record` with two cameras and `_cr_all_`, and a
//! live `StreamRecorder` fed frames the way a recording server does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloudmixer::model::audio::AudioFrame;
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::events::MixerEvent;
use cloudmixer::model::frame::VideoFrame;
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{MixerSettings, StreamRecorder};
use serde_json::{json, Value};

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BIN: &str = env!("CARGO_BIN_EXE_cloudmixer");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("per_stream")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (codec_type, width, height, frames) of every stream of a file.
fn streams(p: &Path) -> Vec<(String, u32, u32, u64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args([
            "stream=codec_type,width,height,nb_read_frames",
            "-of",
            "json",
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
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = |k: &str| {
                s[k].as_u64()
                    .or_else(|| s[k].as_str()?.parse().ok())
                    .unwrap_or(0)
            };
            (
                s["codec_type"].as_str().unwrap().to_string(),
                n("width") as u32,
                n("height") as u32,
                n("nb_read_frames"),
            )
        })
        .collect()
}

/// The one file in `d` whose name starts with `prefix` and ends with `suffix`.
fn file_like(d: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{prefix}*{suffix} in {}: {found:?}",
        d.display()
    );
    found[0].clone()
}

/// Two cameras of different sizes and rates, `_cr_all_`: two files at the cameras' own sizes
/// and rates, each with its user's audio, named by the vendor's rule; one mp3 per user.
#[test]
fn record_two_cameras_into_their_own_files() {
    let d = dir("record");
    let cfg = json!({"mode": 1, "roomId": "888", "nicknames": {"u1": "Ann"},
        "videoFileCfg": {"svrPath": "/room", "svrFileNameSuffix": ".mp4",
            "subscribeVideos": ["_cr_all_"]},
        "audioFileCfg": {"svrPath": "/room", "svrFileNameSuffix": ".mp3",
            "subscribeAudios": ["_cr_all_"]}});
    std::fs::write(d.join("cfg.json"), cfg.to_string()).unwrap();
    let out = Command::new(BIN)
        .args(["record", "--config"])
        .arg(d.join("cfg.json"))
        .arg("--input")
        .arg(format!("u1.0={ROOT}/fixtures/clips/cam1_640x480_15.mp4"))
        .arg("--input")
        .arg(format!("u2.0={ROOT}/fixtures/clips/cam4_1280x720_30.mp4"))
        .arg("--storage")
        .arg(d.join("out"))
        .args(["--duration", "3", "--events"])
        .arg(d.join("events.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let room = d.join("out/room");
    let ann = file_like(&room, "Ann_cam0_888_", ".mp4");
    let u2 = file_like(&room, "u2_cam0_888_", ".mp4");
    let s1 = streams(&ann);
    assert_eq!((s1[0].1, s1[0].2, s1[0].3), (640, 480, 45), "{s1:?}");
    let s2 = streams(&u2);
    assert_eq!((s2[0].1, s2[0].2, s2[0].3), (1280, 720, 90), "{s2:?}");
    assert!(s1[1].0 == "audio" && s1[1].3 > 100, "{s1:?}");
    assert!(s2[1].0 == "audio" && s2[1].3 > 100, "{s2:?}");
    for who in ["Ann_888_", "u2_888_"] {
        let mp3 = file_like(&room, who, ".mp3");
        let s = streams(&mp3);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, "audio");
    }
    // each file is its own output, finished
    let events: Vec<Value> = std::fs::read_to_string(d.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut finals: Vec<(u64, String)> = events
        .iter()
        .filter_map(|e| e.get("outputInfo"))
        .filter(|o| o["state"] == 2)
        .map(|o| {
            (
                o["id"].as_u64().unwrap(),
                o["svrFilePathName"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    finals.sort();
    assert_eq!(
        finals.iter().map(|f| f.0).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "{finals:?}"
    );
    assert!(finals[0].1.starts_with("/room/Ann_cam0_888_"), "{finals:?}");
    assert_eq!(events.last().unwrap()["state"], 0);
}

/// A server pushes two cameras (one joins 1 s late) and one user's audio into a
/// `StreamRecorder`: each camera gets its own file at its size and measured rate, starting
/// when it appears; only u1's file has u1's tone (`aStreamType` 0).
#[test]
fn stream_recorder_gives_each_camera_its_file_when_it_appears() {
    let d = dir("live");
    let cfg = MixerConfig::from_json(
        &json!({"mode": 1, "roomId": 7,
            "videoFileCfg": {"svrPath": "", "svrFileNameSuffix": ".mp4",
                "subscribeVideos": ["_cr_allDefCam_"]}})
        .to_string(),
    )
    .unwrap();
    let mut rec = StreamRecorder::create(cfg, Storage::new(&d), MixerSettings::default()).unwrap();
    let events = rec.events();
    let t0 = Instant::now();
    let mut n = 0u32;
    // u2's frames as pushed: how many and over how long (a loaded box stretches the loop)
    let (mut u2_pushed, mut u2_first, mut u2_last) = (0u32, None, Duration::ZERO);
    while t0.elapsed() < Duration::from_millis(3000) {
        let t = t0.elapsed();
        let f1 = VideoFrame::solid_i420(320, 240, [200, 128, 128]).unwrap();
        rec.push_video("u1.0", f1).unwrap();
        // u1's second camera is not its default one: not recorded
        rec.push_video(
            "u1.1",
            VideoFrame::solid_i420(64, 64, [90, 128, 128]).unwrap(),
        )
        .unwrap();
        if t >= Duration::from_secs(1) && n % 2 == 0 {
            let f2 = VideoFrame::solid_i420(480, 270, [60, 128, 128]).unwrap();
            rec.push_video("u2.-1", f2).unwrap();
            u2_pushed += 1;
            u2_first.get_or_insert(t);
            u2_last = t;
        }
        // 20 ms of a 440 Hz tone for u1
        let tone: Vec<i16> = (0..960)
            .map(|i| {
                let k = (n * 960 + i) as f32 / 48_000.0;
                ((k * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        rec.push_audio("u1", AudioFrame::i16_interleaved(tone, 48_000, 1).unwrap())
            .unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(20).saturating_sub(t0.elapsed() - t));
    }
    assert_eq!(rec.streams(), 2);
    rec.destroy().unwrap();
    // the stream ends after NULL
    let mut evs: Vec<MixerEvent> = Vec::new();
    let ended = loop {
        match events.recv_timeout(Duration::from_secs(5)) {
            Ok(e) => evs.push(e),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break true,
            Err(_) => break false,
        }
    };
    assert!(ended, "the event stream did not end after NULL: {evs:?}");
    assert!(
        matches!(evs.last(), Some(MixerEvent::StateChanged { state, .. }) if *state as u8 == 0)
    );
    assert!(
        rec.subscribe().recv().is_err(),
        "a late subscriber's stream has ended"
    );
    let f1 = file_like(&d, "u1_cam0_7_", ".mp4");
    let f2 = file_like(&d, "u2_cam-1_7_", ".mp4");
    let s1 = streams(&f1);
    let s2 = streams(&f2);
    // the first camera at 320x240; frames came every 20 ms: 30 fps (the most), ~3 s
    assert_eq!((s1[0].1, s1[0].2), (320, 240));
    // (a loop slowed under 30 per second by a loaded box gives one output frame per push)
    let want = f64::from(n).min(90.0);
    assert!(
        (want * 0.83..=want * 1.06 + 1.0).contains(&(s1[0].3 as f64)),
        "{s1:?}: {n} frames pushed"
    );
    // the second at 480x270 from 1 s on, every other loop (every 40 ms when the loop keeps
    // time: 25 fps, ~2 s, 50 frames): recorded at its measured rate, so about one output frame
    // per frame pushed (under 30 fps)
    assert_eq!((s2[0].1, s2[0].2), (480, 270));
    let span = u2_last - u2_first.unwrap();
    let fps = f64::from(u2_pushed - 1) / span.as_secs_f64();
    assert!(fps < 30.0, "{u2_pushed} frames in {span:?}");
    let (lo, hi) = (u2_pushed * 8 / 10, u2_pushed * 12 / 10 + 2);
    assert!(
        (lo..=hi).contains(&(s2[0].3 as u32)),
        "{s2:?}: {u2_pushed} frames pushed in {span:?}"
    );
    assert!(!std::fs::read_dir(&d).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("cam1_")));
    // u1's tone is in u1's file, not in u2's (aStreamType 0)
    let loud = |p: &Path| -> f64 {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-i"])
            .arg(p)
            .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        e.lines()
            .find_map(|l| l.split("max_volume: ").nth(1))
            .and_then(|v| v.trim_end_matches(" dB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{e}"))
    };
    assert!(loud(&f1) > -20.0, "u1's file has its tone");
    assert!(loud(&f2) < -60.0, "u2's file is silent: {}", loud(&f2));
}
