//! Audio end to end: A/V sync (offline and real time), left/right separation, overload,
//! joining and leaving users, source clock drift, kill -9, audio-only files and bad input.
//! Outputs are decoded with the FFmpeg CLI, as a user would check them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloudmixer::model::audio::{AudioFrame, AudioFrameError, SampleLayout, Samples};
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::events::codes;
use cloudmixer::model::frame::VideoFrame;
use cloudmixer::model::time::{tick_time, PaceMode};
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{Mixer, MixerError, MixerSettings};
use cloudmixer::testkit::signal::{db, decode_audio, frame_lumas};
use serde_json::json;

fn goertzel(x: &[f32], f: f64) -> f64 {
    cloudmixer::testkit::signal::goertzel(x, f, RATE)
}

const RATE: u32 = 48_000;
/// One AAC frame: the tolerance on durations.
const AAC_FRAME_S: f64 = 1024.0 / 48_000.0;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("audio")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings(mode: PaceMode) -> MixerSettings {
    let mut s = MixerSettings {
        mode,
        ..Default::default()
    };
    s.backend = cloudmixer::compose::Backend::Cpu;
    s
}

/// A 160x120 canvas at 15 fps showing camera "A.-1" full frame.
fn av_config(svr: &str) -> MixerConfig {
    MixerConfig::from_value(
        json!({"mode":0,"videoFileCfg":{"svrPathName":svr,"vWidth":160,
        "vHeight":120,"vFps":15,"layoutConfig":[{"type":0,"left":0,"top":0,"width":160,
        "height":120,"param":{"camid":"A.-1"}}]}}),
    )
    .unwrap()
}

fn white() -> VideoFrame {
    VideoFrame::solid_i420(160, 120, [235, 128, 128]).unwrap()
}
fn black() -> VideoFrame {
    VideoFrame::solid_i420(160, 120, [16, 128, 128]).unwrap()
}

/// `n` samples at 48 kHz starting at sample `first`, a 1 kHz beep of 60 ms at amplitude 0.5
/// starting at each of `beeps` (sample indices), silence elsewhere.
fn beeps_at(first: u64, n: usize, beeps: &[u64]) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let s = first + i;
            match beeps.iter().find(|&&b| s >= b && s < b + 2880) {
                Some(&b) => {
                    0.5 * (2.0 * std::f64::consts::PI * 1000.0 * (s - b) as f64 / RATE as f64).sin()
                        as f32
                }
                None => 0.0,
            }
        })
        .collect()
}

fn tone(f: f64, amp: f32, first: u64, n: usize, rate: u32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            amp * (2.0 * std::f64::consts::PI * f * (first + i) as f64 / rate as f64).sin() as f32
        })
        .collect()
}

/// 10 ms mono frames of `samples` (48 kHz), captured at their position.
fn frames_10ms(samples: &[f32]) -> Vec<AudioFrame> {
    samples
        .chunks(480)
        .enumerate()
        .map(|(k, c)| {
            AudioFrame::f32_interleaved(c.to_vec(), RATE, 1)
                .unwrap()
                .with_capture(Duration::from_millis(10 * k as u64))
        })
        .collect()
}

/// ffprobe's duration of each stream, by codec type.
fn durations(file: &Path) -> (Option<f64>, Option<f64>) {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,duration",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let mut v = None;
    let mut a = None;
    for l in s.lines() {
        let mut it = l.split(',');
        let (Some(kind), Some(d)) = (it.next(), it.next()) else {
            continue;
        };
        let d = d.parse::<f64>().ok();
        match kind {
            "video" => v = d,
            "audio" => a = d,
            _ => {}
        }
    }
    (v, a)
}

/// The first sample in `[from, to)` whose magnitude reaches `thr`.
fn onset(x: &[f32], from: usize, to: usize, thr: f32) -> Option<usize> {
    (from..to.min(x.len())).find(|&i| x[i].abs() >= thr)
}

/// Beep onsets vs flash frames: returns (event time, offset in ms) per event at
/// `t = k + 0.4` s, k in 0..seconds.
fn sync_offsets(file: &Path, seconds: u64) -> Vec<(f64, f64)> {
    let lumas = frame_lumas(file);
    let audio = decode_audio(file, 1);
    let mut out = Vec::new();
    for k in 0..seconds {
        let t = k as f64 + 0.4;
        // the flash: first bright frame at or after t − 0.3 s
        let f0 = ((t - 0.3) * 15.0).round().max(0.0) as usize;
        let flash = (f0..lumas.len().min(f0 + 10)).find(|&i| lumas[i] > 128);
        let Some(flash) = flash else {
            panic!("no flash near {t} s in {}", file.display())
        };
        let flash_t = flash as f64 / 15.0;
        let from = ((flash_t - 0.2) * RATE as f64) as usize;
        let to = ((flash_t + 0.2) * RATE as f64) as usize;
        let Some(on) = onset(&audio, from, to, 0.2) else {
            panic!("no beep within 200 ms of the flash at {flash_t} s")
        };
        out.push((t, (on as f64 / RATE as f64 - flash_t) * 1000.0));
    }
    out
}

fn assert_in_sync(offsets: &[(f64, f64)]) {
    for (t, off) in offsets {
        assert!(
            off.abs() <= 20.0,
            "beep at {t} s is {off:.1} ms from its flash; all: {offsets:?}"
        );
    }
    let first = offsets.first().unwrap().1;
    let last = offsets.last().unwrap().1;
    assert!(
        (last - first).abs() <= 5.0,
        "drift: {first:.1} ms → {last:.1} ms"
    );
}

/// Records `secs` seconds offline of flash frames and beeps at the same instants into `svr`.
fn record_flashes_and_beeps(d: &Path, svr: &str, secs: u64) {
    let fps = 15;
    let total = secs * fps;
    let mut m =
        Mixer::create_with(av_config(svr), Storage::new(d), settings(PaceMode::Offline)).unwrap();
    let video: Vec<VideoFrame> = (0..total)
        .map(|n| {
            let f = if n % fps == 6 { white() } else { black() };
            f.with_pts(tick_time(fps as u32, n))
        })
        .collect();
    let beeps: Vec<u64> = (0..secs).map(|k| k * 48_000 + 19_200).collect();
    let audio = frames_10ms(&beeps_at(0, (secs * 48_000) as usize, &beeps));
    m.run_offline_av(
        vec![("A.-1".to_string(), video.into_iter())],
        vec![("A".to_string(), audio.into_iter())],
        total,
        |_, _| Ok(()),
    )
    .unwrap();
    m.destroy().unwrap();
}

/// (1) offline: flash frames and beeps at the same instants, 30 s, every beep within ±20 ms.
#[test]
fn av_sync_offline_30s() {
    let d = dir("sync_offline");
    record_flashes_and_beeps(&d, "/sync.mp4", 30);
    let file = d.join("sync.mp4");
    let (v, a) = durations(&file);
    let (v, a) = (v.unwrap(), a.unwrap());
    assert!((v - 30.0).abs() < 1e-3, "video {v} s");
    assert!((a - v).abs() <= AAC_FRAME_S, "audio {a} s vs video {v} s");
    let offs = sync_offsets(&file, 30);
    eprintln!("offline offsets (ms): {offs:?}");
    assert_in_sync(&offs);
}

/// Both tracks in every container, in sync.
#[test]
fn both_tracks_in_flv_ts_and_mkv() {
    for ext in ["flv", "ts", "mkv"] {
        let d = dir(&format!("container_{ext}"));
        record_flashes_and_beeps(&d, &format!("/sync.{ext}"), 5);
        let file = d.join(format!("sync.{ext}"));
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let codecs = String::from_utf8_lossy(&o.stdout).to_string();
        // (ffprobe lists a ts file's streams again under its program)
        let mut codecs: Vec<&str> = codecs.split_whitespace().collect();
        codecs.dedup_by(|a, b| a == b);
        codecs.truncate(2);
        assert_eq!(codecs, ["h264", "aac"], "{ext}");
        let lumas = frame_lumas(&file);
        let audio = decode_audio(&file, 1);
        let (vd, ad) = (lumas.len() as f64 / 15.0, audio.len() as f64 / 48_000.0);
        assert!((vd - 5.0).abs() < 1e-6, "{ext}: {} frames", lumas.len());
        assert!(
            (ad - vd).abs() <= AAC_FRAME_S + 1e-6,
            "{ext}: audio {ad} s, video {vd} s"
        );
        let offs = sync_offsets(&file, 5);
        eprintln!("{ext} offsets (ms): {offs:?}");
        assert_in_sync(&offs);
    }
}

/// (1) real time: the same, pushed live, audio arriving 150 ms after its video.
#[test]
fn av_sync_realtime_30s_audio_150ms_late() {
    let d = dir("sync_rt");
    let secs = 30u64;
    let fps = 15u64;
    let mut m = Mixer::create_with(
        av_config("/sync.mp4"),
        Storage::new(&d),
        settings(PaceMode::Realtime),
    )
    .unwrap();
    m.stop_after_frames(secs * fps);
    let beeps: Vec<u64> = (0..secs).map(|k| k * 48_000 + 19_200).collect();
    let samples = beeps_at(0, (secs * 48_000) as usize, &beeps);
    let start = Instant::now() - m.clock();
    let at = |t: Duration| {
        if let Some(w) = (start + t).checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    };
    std::thread::scope(|s| {
        let m = &m;
        s.spawn(move || {
            for n in 0..secs * fps {
                let t = tick_time(fps as u32, n);
                at(t);
                let f = if n % fps == 6 { white() } else { black() };
                if m.push_video_at("A.-1", f, t).is_err() {
                    return;
                }
            }
        });
        s.spawn(move || {
            for (k, c) in samples.chunks(480).enumerate() {
                let t = Duration::from_millis(10 * k as u64);
                at(t + Duration::from_millis(150));
                let f = AudioFrame::f32_interleaved(c.to_vec(), RATE, 1)
                    .unwrap()
                    .with_capture(t);
                if m.push_audio("A", f).is_err() {
                    return;
                }
            }
        });
    });
    m.destroy().unwrap();
    assert_eq!(
        m.stats().audio_late_samples,
        0,
        "150 ms is within the default latency"
    );
    let file = d.join("sync.mp4");
    let (v, a) = durations(&file);
    let (v, a) = (v.unwrap(), a.unwrap());
    assert!((v - 30.0).abs() < 1e-3, "video {v} s");
    assert!((a - v).abs() <= AAC_FRAME_S, "audio {a} s vs video {v} s");
    let offs = sync_offsets(&file, secs);
    eprintln!("real-time offsets (ms): {offs:?}");
    assert_in_sync(&offs);
}

/// Runs an offline mixer over `secs` seconds with the given per-user 48 kHz mono signals
/// (10 ms frames with capture times) and returns it destroyed.
fn run_users(cfg: MixerConfig, d: &Path, secs: f64, users: Vec<(&str, Vec<AudioFrame>)>) {
    let fps = cfg.output.fps;
    let total = (secs * fps as f64).round() as u64;
    let mut m = Mixer::create_with(cfg, Storage::new(d), settings(PaceMode::Offline)).unwrap();
    let audio = users
        .into_iter()
        .map(|(u, f)| (u.to_string(), f.into_iter()))
        .collect();
    let still = black();
    let video = vec![("A.-1".to_string(), vec![still].into_iter())];
    m.run_offline_av(video, audio, total, |_, _| Ok(()))
        .unwrap();
    m.destroy().unwrap();
}

/// (2) left/right: A 440 Hz on the left, B 1 kHz on the right, ≥ 30 dB separation.
#[test]
fn left_right_channels_carry_their_users() {
    let d = dir("lr");
    let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"/lr.mp4",
        "vWidth":160,"vHeight":120,"vFps":15,"aChannelType":1,"aChannelContent":["A","B"],
        "layoutConfig":[]}}))
    .unwrap();
    let n = 3 * 48_000;
    run_users(
        cfg,
        &d,
        3.0,
        vec![
            ("A", frames_10ms(&tone(440.0, 0.3, 0, n, RATE))),
            ("B.-1", frames_10ms(&tone(1000.0, 0.3, 0, n, RATE))),
            ("C", frames_10ms(&tone(700.0, 0.3, 0, n, RATE))),
        ],
    );
    let st = decode_audio(&d.join("lr.mp4"), 2);
    let (l, r): (Vec<f32>, Vec<f32>) = st[9600..2 * 9600 * 10]
        .chunks_exact(2)
        .map(|p| (p[0], p[1]))
        .unzip();
    let sep_l = db(goertzel(&l, 440.0), goertzel(&l, 1000.0));
    let sep_r = db(goertzel(&r, 1000.0), goertzel(&r, 440.0));
    let leak_c = db(goertzel(&l, 440.0), goertzel(&l, 700.0))
        .min(db(goertzel(&r, 1000.0), goertzel(&r, 700.0)));
    eprintln!("separation: left {sep_l:.1} dB, right {sep_r:.1} dB, unlisted C {leak_c:.1} dB");
    assert!(sep_l >= 30.0 && sep_r >= 30.0, "{sep_l} / {sep_r}");
    assert!(leak_c >= 30.0, "an unlisted user leaks: {leak_c}");
}

/// (3) nine users at full scale in mono: nothing beyond full scale, no wrap (WAV, exact).
#[test]
fn nine_full_scale_users_never_clip_or_wrap() {
    let d = dir("nine");
    let cfg = MixerConfig::from_value(json!({"mode":0,"audioFileCfg":{"svrPathName":"/nine.wav"}}))
        .unwrap();
    let n = 2 * 48_000;
    let users: Vec<String> = (0..9).map(|i| format!("U{i}")).collect();
    let sigs: Vec<(&str, Vec<AudioFrame>)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            // in phase for the first user pairs: the worst case for overload
            let f = 200.0 + 50.0 * (i / 2) as f64;
            (u.as_str(), frames_10ms(&tone(f, 1.0, 0, n, RATE)))
        })
        .collect();
    run_users(cfg, &d, 2.0, sigs);
    let x = decode_audio(&d.join("nine.wav"), 1);
    assert!(x.len() >= 2 * 48_000 - 480, "{} samples", x.len());
    let peak = x.iter().fold(0f32, |p, v| p.max(v.abs()));
    // (the recording ends while all nine still sound: the last 16 samples, still in the
    // resampler's filter, are cut off there; that end is not part of the check)
    let max_step = x[..x.len() - 480]
        .windows(2)
        .fold(0f32, |p, w| p.max((w[1] - w[0]).abs()));
    eprintln!("nine users: peak {peak:.4}, largest step {max_step:.4}");
    assert!(peak <= 0.99, "peak {peak} reaches full scale");
    assert!(peak > 0.5, "the limiter should not kill the signal: {peak}");
    // a wrap would jump by ~2.0; a limited sum of tones ≤ 500 Hz moves ≤ 0.07 per sample
    assert!(
        max_step < 0.2,
        "discontinuity {max_step}: wrap or hard clip"
    );
}

/// (4) a user joining at 3 s and leaving at 6 s: silence elsewhere, no gap, equal durations.
#[test]
fn join_at_3s_leave_at_6s() {
    let d = dir("join");
    let all = tone(500.0, 0.3, 0, 9 * 48_000, RATE);
    let frames: Vec<AudioFrame> = frames_10ms(&all)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| (300..600).contains(k))
        .map(|(_, f)| f)
        .collect();
    run_users(av_config("/join.mp4"), &d, 9.0, vec![("A", frames)]);
    let file = d.join("join.mp4");
    let (v, a) = durations(&file);
    let (v, a) = (v.unwrap(), a.unwrap());
    assert!((v - 9.0).abs() < 1e-3, "video {v}");
    assert!((a - v).abs() <= AAC_FRAME_S, "audio {a} vs video {v}");
    let x = decode_audio(&file, 1);
    let rms = |a: f64, b: f64| {
        let s = &x[(a * 48_000.0) as usize..((b * 48_000.0) as usize).min(x.len())];
        (s.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    };
    assert!(
        rms(0.0, 2.95) < 1e-3,
        "sound before the join: {}",
        rms(0.0, 2.95)
    );
    assert!(
        rms(6.05, 8.95) < 1e-3,
        "sound after leaving: {}",
        rms(6.05, 8.95)
    );
    // every 50 ms window of the talk carries the tone (no hole)
    let mut t = 3.05;
    while t < 5.95 {
        let r = rms(t, t + 0.05);
        assert!(r > 0.15, "hole at {t:.2} s: rms {r}");
        t += 0.05;
    }
}

/// (5) a source whose clock runs 0.5 % fast over 60 s of synthetic time stays within ±20 ms.
#[test]
fn fast_source_clock_stays_in_sync_over_60s() {
    let d = dir("drift");
    let cfg =
        MixerConfig::from_value(json!({"mode":0,"audioFileCfg":{"svrPathName":"/drift.wav"}}))
            .unwrap();
    let secs = 60u64;
    // the source makes 48240 samples per real second but calls them 48 kHz; a beep at each
    // real second, frames stamped with real (mixer) time every 10 ms
    let src_rate = 48_240.0;
    let total_src = (secs as f64 * src_rate) as usize;
    let beeps: Vec<u64> = (0..secs)
        .map(|k| ((k as f64 + 0.4) * src_rate) as u64)
        .collect();
    let src = beeps_at(0, total_src, &beeps);
    let mut frames = Vec::new();
    let mut pos = 0usize;
    let mut k = 0u64;
    while pos < src.len() {
        let end = (((k + 1) as f64 * src_rate / 100.0).round() as usize).min(src.len());
        frames.push(
            AudioFrame::f32_interleaved(src[pos..end].to_vec(), RATE, 1)
                .unwrap()
                .with_capture(Duration::from_millis(10 * k)),
        );
        pos = end;
        k += 1;
    }
    run_users(cfg, &d, secs as f64, vec![("A", frames)]);
    let x = decode_audio(&d.join("drift.wav"), 1);
    let mut worst = 0f64;
    for k in 0..secs {
        let t = k as f64 + 0.4;
        let from = ((t - 0.1) * 48_000.0) as usize;
        let on = onset(&x, from, from + 9600, 0.2).unwrap_or_else(|| panic!("no beep near {t} s"));
        let off = (on as f64 / 48_000.0 - t) * 1000.0;
        worst = worst.max(off.abs());
        assert!(off.abs() <= 20.0, "beep {k} is {off:.1} ms off");
    }
    eprintln!("0.5 % fast source over 60 s: worst offset {worst:.2} ms");
}

/// (7) audio-only recordings in .m4a, .mp3 and .wav play with the right duration.
#[test]
fn audio_only_files_have_the_right_duration() {
    for ext in ["m4a", "mp3", "wav", "aac"] {
        let d = dir(&format!("only_{ext}"));
        let cfg = MixerConfig::from_value(
            json!({"mode":0,"audioFileCfg":{"svrPathName":format!("/a/rec.{ext}")}}),
        )
        .unwrap();
        let n = 3 * 48_000;
        run_users(
            cfg,
            &d,
            3.0,
            vec![("U", frames_10ms(&tone(440.0, 0.3, 0, n, RATE)))],
        );
        let file = d.join(format!("a/rec.{ext}"));
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let dur: f64 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0);
        assert!((dur - 3.0).abs() <= 0.03, "{ext}: duration {dur}");
        let x = decode_audio(&file, 1);
        let mid = &x[48_000..96_000];
        assert!(
            db(goertzel(mid, 440.0), goertzel(mid, 1000.0)) > 30.0,
            "{ext}: no tone"
        );
    }
}

/// (8) bad audio frames are typed errors; the running mixer is untouched.
#[test]
fn bad_audio_frames_are_typed_errors_and_the_mixer_goes_on() {
    use AudioFrameError as E;
    assert_eq!(
        AudioFrame::i16_interleaved(vec![0; 480], 0, 1).unwrap_err(),
        E::SampleRate(0)
    );
    assert_eq!(
        AudioFrame::i16_interleaved(vec![0; 480], 96_000, 1).unwrap_err(),
        E::SampleRate(96_000)
    );
    assert_eq!(
        AudioFrame::i16_interleaved(vec![0; 7 * 480], 48_000, 7).unwrap_err(),
        E::Channels(7)
    );
    assert!(matches!(
        AudioFrame::i16_interleaved(vec![0; 481], 48_000, 2).unwrap_err(),
        E::Misaligned { .. }
    ));
    assert_eq!(
        AudioFrame::f32_interleaved(vec![0.0, f32::NAN], 48_000, 1).unwrap_err(),
        E::NonFinite { index: 1 }
    );
    assert_eq!(
        AudioFrame::new(Samples::F32(vec![]), SampleLayout::Planar, 16_000, 2).unwrap_err(),
        E::Empty
    );
    let e: MixerError = E::Channels(7).into();
    assert_eq!(e.code(), codes::PARAM_ERR);
    let d = dir("bad");
    let mut m = Mixer::create_with(
        av_config("/bad.mp4"),
        Storage::new(&d),
        settings(PaceMode::Offline),
    )
    .unwrap();
    let ok = || AudioFrame::i16_interleaved(vec![1000; 960], 48_000, 2).unwrap();
    let e = m.push_audio("", ok()).unwrap_err();
    assert_eq!(e.code(), codes::PARAM_ERR, "{e}");
    let e = m.push_audio(".-1", ok()).unwrap_err();
    assert!(e.to_string().contains("user ID"), "{e}");
    m.push_audio("A.-1", ok()).unwrap();
    m.push_video("A.-1", white()).unwrap();
    m.advance_to(Duration::from_secs(1)).unwrap();
    m.destroy().unwrap();
    assert_eq!(m.stats().audio_frames, 1);
    let (v, a) = durations(&d.join("bad.mp4"));
    assert!(v.unwrap() > 0.9 && a.unwrap() > 0.9, "{v:?} {a:?}");
}

/// Real time: audio later than the latency is dropped and counted; audio without a capture
/// time is placed at its arrival; the recording goes on either way.
#[test]
fn late_audio_is_dropped_and_counted_in_real_time() {
    let d = dir("late");
    let mut s = settings(PaceMode::Realtime);
    s.latency = Duration::from_millis(100);
    let mut m = Mixer::create_with(av_config("/late.mp4"), Storage::new(&d), s).unwrap();
    m.stop_after_frames(30); // 2 s
    let start = Instant::now() - m.clock();
    for k in 0..230u64 {
        let t = Duration::from_millis(10 * k);
        if let Some(w) = (start + t).checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        if k % 7 == 0 {
            let _ = m.push_video("A.-1", black());
        }
        // A: no capture time (arrival); B: captured 300 ms ago, beyond the 100 ms latency
        let a = AudioFrame::f32_interleaved(tone(440.0, 0.3, k * 480, 480, RATE), RATE, 1).unwrap();
        if m.push_audio("A", a).is_err() {
            break; // the 2 s are up
        }
        if t >= Duration::from_millis(300) {
            let b = AudioFrame::f32_interleaved(tone(1000.0, 0.3, k * 480, 480, RATE), RATE, 1)
                .unwrap()
                .with_capture(t - Duration::from_millis(300));
            let _ = m.push_audio("B", b);
        }
    }
    m.destroy().unwrap();
    let st = m.stats();
    eprintln!("{st:?}");
    assert!(st.audio_late_samples >= 100 * 480, "{st:?}");
    let x = decode_audio(&d.join("late.mp4"), 1);
    let mid = &x[48_000..96_000 - 4800];
    assert!(
        db(goertzel(mid, 440.0), goertzel(mid, 1000.0)) > 30.0,
        "A (arrival-stamped) should be there, late B not"
    );
}

/// 10 ms mono frames of `samples` at `rate`, captured at their position.
fn frames_10ms_at(samples: &[f32], rate: u32) -> Vec<AudioFrame> {
    let n = rate as usize / 100;
    samples
        .chunks(n)
        .enumerate()
        .map(|(k, c)| {
            AudioFrame::f32_interleaved(c.to_vec(), rate, 1)
                .unwrap()
                .with_capture(Duration::from_millis(10 * k as u64))
        })
        .collect()
}

/// (10) a user's audio is resampled once, however many outputs carry it: the video file's
/// audio track and an `audioFileCfg` file with the same settings decode to the same samples,
/// and the audio stage holds one track per carried user (C, in no output, gets none).
#[test]
fn video_and_audio_file_share_each_users_track() {
    let d = dir("shared_tracks");
    let cfg = MixerConfig::from_value(json!({"mode":0,
        "videoFileCfg":{"svrPathName":"/v.mp4","vWidth":160,"vHeight":120,"vFps":15,
            "aChannelContent":["A","B"],"layoutConfig":[]},
        "audioFileCfg":{"svrPathName":"/a.m4a","aChannelContent":["A","B"]}}))
    .unwrap();
    let secs = 3u64;
    let mut m = Mixer::create_with(cfg, Storage::new(&d), settings(PaceMode::Offline)).unwrap();
    let audio = vec![
        // 16 and 32 kHz: both go through the resampler
        (
            "A".to_string(),
            frames_10ms_at(&tone(440.0, 0.3, 0, 16_000 * secs as usize, 16_000), 16_000)
                .into_iter(),
        ),
        (
            "B.-1".to_string(),
            frames_10ms_at(
                &tone(1000.0, 0.2, 0, 32_000 * secs as usize, 32_000),
                32_000,
            )
            .into_iter(),
        ),
        (
            "C".to_string(),
            frames_10ms(&tone(2500.0, 0.3, 0, 48_000 * secs as usize, RATE)).into_iter(),
        ),
    ];
    let video = vec![("A.-1".to_string(), vec![black()].into_iter())];
    m.run_offline_av(video, audio, secs * 15, |_, _| Ok(()))
        .unwrap();
    m.destroy().unwrap();
    let st = m.stats();
    assert_eq!(st.audio_tracks, 2, "one track per carried user: {st:?}");
    let v = decode_audio(&d.join("v.mp4"), 1);
    let a = decode_audio(&d.join("a.m4a"), 1);
    let n = v.len().min(a.len());
    eprintln!("video file {} samples, audio file {}", v.len(), a.len());
    assert!(n >= 48_000 * secs as usize - 2048, "{n} samples");
    let differ = v[..n].iter().zip(&a[..n]).filter(|(x, y)| x != y).count();
    assert_eq!(differ, 0, "{differ} of {n} samples differ");
    let mid = &v[48_000..96_000];
    assert!(
        db(goertzel(mid, 440.0), goertzel(mid, 2500.0)) > 30.0,
        "A there, C not"
    );
    assert!(
        db(goertzel(mid, 1000.0), goertzel(mid, 2500.0)) > 30.0,
        "B there, C not"
    );
}
