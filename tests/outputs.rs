//! Outputs as a user runs them with `cloudmixer record` (default settings): segments, HLS, a
//! live target that cannot be reached next to a file.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_cloudmixer");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("outputs")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `record` of cam1 (15 fps, with a tone) into `svr` for `secs` seconds, offline; the events.
fn record(d: &Path, svr: &str, extra: Value, secs: u32) -> Vec<Value> {
    let mut vfc = json!({"svrPathName":svr,"vWidth":320,"vHeight":240,"vFps":15,
        "layoutConfig":[{"type":0,"left":0,"top":0,"width":320,"height":240,"param":{"camid":"u1.0"}}]});
    for (k, v) in extra.as_object().unwrap() {
        vfc[k] = v.clone();
    }
    let cfg = d.join("cfg.json");
    std::fs::write(&cfg, json!({"mode":0,"videoFileCfg":vfc}).to_string()).unwrap();
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
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
