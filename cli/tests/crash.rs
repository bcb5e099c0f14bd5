//! Crash safety, in a test binary of its own so that no other test competes for the CPU while
//! it measures what a `kill -9` loses.

use std::process::Command;
use std::time::Duration;

use cloudmixer::testkit::signal::{decode_audio, frame_lumas};
use serde_json::json;

// the repository root (fixtures/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("crash")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (6) kill -9 at 4 s of a real-time recording at the default settings: the file plays with
/// both tracks, and each has all but ≤ 0.5 s of what was captured since RUNNING.
#[test]
fn kill_9_keeps_both_tracks() {
    let d = dir("kill");
    let cfg = d.join("cfg.json");
    std::fs::write(
        &cfg,
        json!({"mode":0,"videoFileCfg":{"svrPathName":"/live/rec.mp4","vWidth":320,
            "vHeight":240,"vFps":15,"layoutConfig":[{"type":0,"left":0,"top":0,"width":320,
            "height":240,"param":{"camid":"cam"}}]}})
        .to_string(),
    )
    .unwrap();
    let events = d.join("events.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
        .args(["record", "--realtime", "--duration", "30"])
        .arg("--config")
        .arg(&cfg)
        .arg("--input")
        .arg(format!("cam={}/fixtures/clips/cam9_320x240_15.mp4", ROOT))
        .arg("--storage")
        .arg(d.join("store"))
        .arg("--events")
        .arg(&events)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    child.kill().unwrap(); // SIGKILL
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let _ = child.wait();
    let start_ms = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["outputInfo"]["startTime"].as_f64())
        .expect("an OutputInfoChanged with startTime");
    let captured = (killed_ms - start_ms) / 1000.0;
    let file = d.join("store/live/rec.mp4");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lumas = frame_lumas(&file);
    let audio = decode_audio(&file, 1);
    let (vd, ad) = (lumas.len() as f64 / 15.0, audio.len() as f64 / 48_000.0);
    eprintln!("kill -9 after {captured:.2} s of recording: video {vd:.2} s, audio {ad:.2} s kept");
    assert!(captured - vd <= 0.5, "video lost {:.2} s", captured - vd);
    assert!(captured - ad <= 0.5, "audio lost {:.2} s", captured - ad);
}
