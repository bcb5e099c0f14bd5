//! Audio checks for tests: tone power (Goertzel), level ratios, and a recording's audio as
//! decoded by the FFmpeg command line (what a user would hear).

use std::path::Path;
use std::process::Command;

/// Power of frequency `f` Hz in `x` sampled at `rate` (Goertzel), normalised by `len²`.
///
/// ```
/// use cloudmixer::testkit::signal::{db, goertzel};
/// let x: Vec<f32> = (0..4800).map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin()).collect();
/// assert!(db(goertzel(&x, 440.0, 48_000), goertzel(&x, 1000.0, 48_000)) > 40.0);
/// ```
pub fn goertzel(x: &[f32], f: f64, rate: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f / rate as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len().max(1) as f64).powi(2)
}

/// `a / b` in decibels (power ratio).
pub fn db(a: f64, b: f64) -> f64 {
    10.0 * (a / b.max(1e-30)).log10()
}

/// The first audio stream of `file` decoded by the `ffmpeg` CLI to 48 kHz f32 with
/// `channels` channels (interleaved). Panics with FFmpeg's message if it cannot.
pub fn decode_audio(file: &Path, channels: u32) -> Vec<f32> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:a:0", "-f", "f32le", "-ar", "48000", "-ac"])
        .arg(channels.to_string())
        .arg("-")
        .output()
        .expect("running ffmpeg");
    assert!(
        o.status.success(),
        "ffmpeg cannot decode {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The mean luma of each video frame of `file` as decoded by the `ffmpeg` CLI (every frame
/// kept, in order): a flash, a black frame or a count of frames at a glance.
pub fn frame_lumas(file: &Path) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:v:0",
            "-vsync",
            "passthrough",
            "-vf",
            "scale=1:1:flags=area",
            "-pix_fmt",
            "gray",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .expect("running ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Onsets (s) of the fixture clips' clicks in mono 48 kHz samples: the first sample of each
/// run above 0.6 in magnitude (the clips' tone stays at 0.2), runs closer than 0.5 s merged.
pub fn click_times(x: &[f32]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for (i, v) in x.iter().enumerate() {
        if v.abs() > 0.6 {
            let t = i as f64 / 48_000.0;
            if t - last > 0.5 {
                out.push(t);
            }
            last = t;
        }
    }
    out
}
