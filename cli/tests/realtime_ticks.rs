//! Real time, as a recording server sees it: a tick shows what was captured until its own
//! time on the mixer clock, whatever its thread's wake-up jitter, so a camera whose capture
//! times sit just off the tick grid has every due frame shown (on a loaded box), and a live
//! `record --realtime` keeps each flash with its beep as offline does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloudmixer::model::time::tick_time;
use cloudmixer::prelude::*;
use serde_json::json;

// the repository root (fixtures/, scripts/): this crate is cli/
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("realtime_ticks")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Raw bytes FFmpeg writes for `args` on `input`.
fn ffmpeg_raw(input: &Path, args: &[&str]) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(args)
        .args(["-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Mean luma of the 16x16 square at (x, y) of every video frame.
fn lumas_at(file: &Path, x: u32, y: u32) -> Vec<u8> {
    let vf = format!("crop=16:16:{x}:{y},scale=1:1,format=gray");
    ffmpeg_raw(file, &["-map", "0:v:0", "-vf", &vf])
}

/// The luma camera frame `k` carries (distinct over any 25 consecutive frames).
fn code(k: u64) -> u8 {
    30 + (k % 25) as u8 * 8
}

/// Spins until `stop` (a box busy with other work).
fn burner(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut x = 1u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        }
    })
}

/// A 15 fps camera captured `off(k)` µs after (`after`) or before tick `k`'s time: frame `k`
/// is pushed once the mixer clock reaches its capture time, stamped with it, its luma `code(k)`.
fn camera(m: Arc<Mixer>, camid: &'static str, after: bool) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut seed = if after { 7u64 } else { 11u64 };
        let mut k = 0u64;
        loop {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // 0.1–0.9 ms off the grid
            let off = Duration::from_micros(100 + (seed >> 33) % 801);
            let t = tick_time(15, k);
            let capture = if after {
                t + off
            } else {
                t.saturating_sub(off)
            };
            while m.clock() < capture {
                std::thread::sleep((capture - m.clock()).min(Duration::from_millis(2)));
            }
            let y = code(k);
            let f = VideoFrame::solid_i420(160, 120, [y, 128, 128]).unwrap();
            if m.push_video_at(camid, f, capture).is_err() {
                return k;
            }
            k += 1;
        }
    })
}

/// Two cameras at the output's rate, one 0.1–0.9 ms after the tick grid and one 0.1–0.9 ms
/// before it, on a box with twice as many spinning threads as cores: every frame is shown at
/// its tick (the one at or after its capture time), none is replaced or late, and the file
/// shows each camera's frames in order, one per output frame, none repeated or skipped.
#[test]
fn cameras_just_off_the_tick_grid_have_every_frame_shown_on_a_loaded_box() {
    let d = dir("off_grid");
    let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"rec.mp4",
        "vWidth":640,"vHeight":240,"vFps":15,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":320,"height":240,"param":{"camid":"after.0"}},
            {"type":0,"left":320,"top":0,"width":320,"height":240,"param":{"camid":"before.0"}}]}}))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let burners: Vec<_> = (0..2 * cores).map(|_| burner(stop.clone())).collect();
    let m = Arc::new(Mixer::create_with(cfg, Storage::new(&d), MixerSettings::default()).unwrap());
    m.stop_after(Duration::from_secs(8));
    let cams = [
        camera(m.clone(), "after.0", true),
        camera(m.clone(), "before.0", false),
    ];
    let outputs = m.wait();
    stop.store(true, Ordering::Relaxed);
    burners.into_iter().for_each(|b| b.join().unwrap());
    cams.into_iter().for_each(|c| {
        c.join().unwrap();
    });
    let outputs = outputs.unwrap();
    assert_eq!(outputs[0].duration, 8_000);
    let stats = m.stats();
    let per_source = m.source_stats();
    assert_eq!(stats.ticks, 120, "{stats:?}");
    for s in &per_source {
        // the last pushes may still wait for a tick after the end
        assert!(s.received - s.used <= 4, "{s:?} (stats {stats:?})");
        assert_eq!((s.replaced, s.late), (0, 0), "{s:?} (stats {stats:?})");
    }
    assert_eq!(stats.frames_late, 0);

    let file = d.join("rec.mp4");
    let after = lumas_at(&file, 152, 112);
    let before = lumas_at(&file, 472, 112);
    assert_eq!(after.len(), 120);
    // the file is decoded to full-range grey: luma y reads (y - 16) * 255 / 219
    let near = |got: u8, y: u8| (got as f64 - (y as f64 - 16.0) * 255.0 / 219.0).abs() <= 3.0;
    for n in 1..120u64 {
        // tick n shows the "before" camera's frame n (captured just before it) and the
        // "after" camera's frame n - 1 (captured just after tick n - 1)
        assert!(
            near(before[n as usize], code(n)),
            "frame {n}: 'before' camera shows luma {} instead of frame {n}'s {}; all: {before:?}",
            before[n as usize],
            code(n)
        );
        assert!(
            near(after[n as usize], code(n - 1)),
            "frame {n}: 'after' camera shows luma {} instead of frame {}'s {}; all: {after:?}",
            after[n as usize],
            n - 1,
            code(n - 1)
        );
    }
}

/// A 640x480@30 clip with a one-frame white flash and a 60 ms 1 kHz beep at every whole
/// second, recorded live (`record --realtime`, default latency) into the seed layout at
/// 15 fps for 60 s: every flash is within ±20 ms of its beep, as offline.
#[test]
fn record_realtime_keeps_every_flash_within_20ms_of_its_beep_for_60s() {
    let d = dir("flash_beep");
    let clip = d.join("flash_beep.mp4");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=black:s=640x480:r=30:d=62,geq=lum='if(lt(mod(N\\,30)\\,1)\\,235\\,16)':cb=128:cr=128")
        .args(["-f", "lavfi", "-i"])
        .arg("aevalsrc='if(lt(mod(t\\,1)\\,0.06)\\,0.5*sin(2*PI*1000*t)\\,0)':s=48000:d=62")
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&clip)
        .output()
        .expect("ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_cloudmixer"))
        .args([
            "record",
            "--realtime",
            "--duration",
            "60",
            "--output",
            "rt.mp4",
        ])
        .args([
            "--config",
            &format!("{ROOT}/fixtures/layouts/seed_side_by_side.json"),
        ])
        .arg("--input")
        .arg(format!("Usr1.-1={}", clip.display()))
        .arg("--storage")
        .arg(&d)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let file = d.join("rt.mp4");
    // the seed layout shows Usr1.-1 (640x480) in the left half, centred on (320, 360)
    let lumas = lumas_at(&file, 312, 352);
    let pcm = {
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&file)
            .args([
                "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "f32le", "-",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect::<Vec<f32>>()
    };
    let mut offsets = Vec::new();
    for k in 1..60usize {
        let f0 = ((k as f64 - 0.3) * 15.0) as usize;
        let flash = (f0..(f0 + 10).min(lumas.len())).find(|&i| lumas[i] > 128);
        let Some(flash) = flash else {
            panic!("no flash near {k} s; the recording said:\n{summary}")
        };
        let flash_t = flash as f64 / 15.0;
        let from = ((flash_t - 0.2) * 48_000.0) as usize;
        let to = (((flash_t + 0.2) * 48_000.0) as usize).min(pcm.len());
        let Some(on) = (from..to).find(|&i| pcm[i].abs() > 0.2) else {
            panic!("no beep within 200 ms of the flash at {flash_t:.3} s")
        };
        offsets.push((k, (on as f64 / 48_000.0 - flash_t) * 1000.0));
    }
    for (k, off) in &offsets {
        assert!(
            off.abs() <= 20.0,
            "the beep at {k} s is {off:.1} ms from its flash; all: {offsets:?}\n{summary}"
        );
    }
}
