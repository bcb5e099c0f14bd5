//! Stress: 16 real-time mixers in one process, each fed by its own pusher threads at 30 fps
//! (video of three sources, and audio), while 4 threads send 1 000 random valid and invalid
//! live updates per second in all. No panic or deadlock, exact CFR frame counts, every file
//! plays with both tracks, no frame mixes two layouts. A test binary of its own (no other test
//! competes for the 2 cores).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudmixer::compose::Backend;
use cloudmixer::model::audio::AudioFrame;
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::events::codes;
use cloudmixer::model::frame::VideoFrame;
use cloudmixer::model::time::PaceMode;
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{Mixer, MixerSettings};
use cloudmixer::testkit::{each_frame, yuv_of, PALETTE};
use serde_json::{json, Value};

const MIXERS: usize = 16;
const SECONDS: u64 = 8;
const FPS: u64 = 30;

const PERMS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

fn layout(p: [usize; 3]) -> Value {
    let items: Vec<Value> = (0..3)
        .map(|cell| {
            json!({"type":0,"left":cell*64,"top":0,"width":64,"height":64,"keepAspectRatio":1,
            "param":{"camid":format!("s{}.-1", p[cell])}})
        })
        .collect();
    json!({"videoFileCfg":{"layoutConfig":items}})
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stress");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter()
        .zip(&b)
        .all(|(x, y)| (*x as i32 - *y as i32).abs() <= 6)
}

#[test]
fn sixteen_live_mixers_with_a_storm_of_updates() {
    let d = dir();
    let colours = [PALETTE[0], PALETTE[1], PALETTE[2]];
    let mixers: Vec<Arc<Mixer>> = (0..MIXERS)
        .map(|i| {
            let mut v = layout(PERMS[0]);
            v["mode"] = 0.into();
            v["videoFileCfg"]["svrPathName"] = format!("/m{i}.mp4").into();
            v["videoFileCfg"]["vWidth"] = 192.into();
            v["videoFileCfg"]["vHeight"] = 64.into();
            v["videoFileCfg"]["vFps"] = FPS.into();
            let s = MixerSettings {
                backend: Backend::Cpu,
                mode: PaceMode::Realtime,
                ..Default::default()
            };
            let m = Mixer::create_with(MixerConfig::from_value(v).unwrap(), Storage::new(&d), s)
                .unwrap();
            m.stop_after_frames(SECONDS * FPS);
            Arc::new(m)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (fin_tx, fin_rx) = crossbeam_channel::bounded(1);
    let runner = {
        let (mixers, stop, ok, bad) = (mixers.clone(), stop.clone(), ok.clone(), bad.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut threads = Vec::new();
            for m in &mixers {
                // video: three cameras at 30 fps
                let m2 = m.clone();
                threads.push(std::thread::spawn(move || {
                    let frames: Vec<VideoFrame> = colours
                        .iter()
                        .map(|c| {
                            // tagged BT.709: the colours come out as they went in
                            VideoFrame::solid_i420(64, 64, *c)
                                .unwrap()
                                .with_color(cloudmixer::model::color::ColorSpace::BT709_LIMITED)
                        })
                        .collect();
                    let mut k = 0u64;
                    loop {
                        let due = t0 + Duration::from_nanos(k * 1_000_000_000 / FPS);
                        if let Some(w) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(w);
                        }
                        for (i, f) in frames.iter().enumerate() {
                            if m2.push_video(&format!("s{i}.-1"), f.clone()).is_err() {
                                return;
                            }
                        }
                        k += 1;
                    }
                }));
                // audio: each camera's user, 10 ms at a time
                let m3 = m.clone();
                threads.push(std::thread::spawn(move || {
                    let mut k = 0u64;
                    loop {
                        let due = t0 + Duration::from_millis(10 * k);
                        if let Some(w) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(w);
                        }
                        for u in 0..3 {
                            let a = AudioFrame::i16_interleaved(
                                vec![(u * 1000) as i16; 480],
                                48_000,
                                1,
                            )
                            .unwrap();
                            if m3.push_audio(&format!("s{u}"), a).is_err() {
                                return;
                            }
                        }
                        k += 1;
                    }
                }));
            }
            // 4 threads × 250 updates/s, to random mixers, a third of them invalid
            let updaters: Vec<_> = (0..4u64)
                .map(|t| {
                    let (mixers, stop, ok, bad) =
                        (mixers.clone(), stop.clone(), ok.clone(), bad.clone());
                    std::thread::spawn(move || {
                        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                        let mut k = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            let due = t0 + Duration::from_millis(4 * k);
                            if let Some(w) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(w);
                            }
                            k += 1;
                            let r = rng.next();
                            let m = &mixers[(r % MIXERS as u64) as usize];
                            let mut u = layout(PERMS[((r >> 4) % 6) as usize]);
                            let valid = (r >> 8) % 3 != 0;
                            if !valid {
                                match (r >> 16) % 4 {
                                    0 => {
                                        u["videoFileCfg"]["layoutConfig"][1]["width"] = (-5).into()
                                    }
                                    1 => u["videoFileCfg"]["vWidth"] = 640.into(),
                                    2 => u["videoFileCfg"]["layoutConfig"][0]["type"] = 4.into(),
                                    _ => u["videoFileCfg"]["layoutConfig"] = "nope".into(),
                                }
                            }
                            match m.update_content(&u) {
                                Ok(()) => {
                                    assert!(valid, "an invalid update was taken");
                                    ok.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) if e.code() == codes::PARAM_ERR => {
                                    assert!(!valid, "a valid update was refused: {e}");
                                    bad.fetch_add(1, Ordering::Relaxed);
                                }
                                // the recording reached its length
                                Err(_) => {}
                            }
                        }
                    })
                })
                .collect();
            // wait for every mixer to finish its frames
            while mixers.iter().any(|m| m.ticks() < SECONDS * FPS) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Release);
            for u in updaters {
                u.join().unwrap();
            }
            let _ = fin_tx.send(t0.elapsed());
            for t in threads {
                t.join().unwrap();
            }
        })
    };
    let took = fin_rx
        .recv_timeout(Duration::from_secs(SECONDS + 30))
        .expect("deadlock: the mixers did not finish");
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!("{MIXERS} mixers × {SECONDS} s took {took:?}; updates: {ok} applied, {bad} refused");
    let mut mixers: Vec<Mixer> = {
        let mut v = Vec::new();
        for m in mixers {
            let mut m = m;
            // the pusher threads end once their mixer stops; wait for them to drop their Arc
            let t0 = Instant::now();
            loop {
                match Arc::try_unwrap(m) {
                    Ok(x) => {
                        v.push(x);
                        break;
                    }
                    Err(back) => {
                        assert!(t0.elapsed() < Duration::from_secs(10), "a pusher hangs");
                        m = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        v
    };
    runner.join().unwrap();
    for m in &mut mixers {
        m.destroy().unwrap();
    }
    assert!(
        ok + bad >= 900 * SECONDS / 2,
        "only {} updates sent",
        ok + bad
    );
    assert!(ok > 0 && bad > 0);
    for i in 0..MIXERS {
        let file = d.join(format!("m{i}.mp4"));
        let mut torn = Vec::new();
        // the first ticks may come before the first pushed frame (the mixers are created one
        // after the other, the pushers start after the last): those show no source at all
        let mut started = false;
        let mut empty_lead = 0;
        let (n, err) = each_frame(&file, |k, f| {
            let mut perm = [usize::MAX; 3];
            for (cell, p) in perm.iter_mut().enumerate() {
                let idx: Vec<Option<usize>> = [(8, 8), (32, 32), (56, 56), (8, 56), (56, 8)]
                    .iter()
                    .map(|&(x, y)| {
                        let px = yuv_of(f, cell * 64 + x, y).unwrap_or([0; 3]);
                        colours.iter().position(|c| close(px, *c))
                    })
                    .collect();
                if idx.iter().all(|v| v.is_some() && *v == idx[0]) {
                    *p = idx[0].unwrap_or(usize::MAX);
                }
            }
            if !started && perm == [usize::MAX; 3] {
                empty_lead += 1;
                return;
            }
            started = true;
            if !PERMS.contains(&perm) {
                torn.push(format!("frame {k}: cells {perm:?}"));
            }
        });
        assert_eq!((n as u64, err), (SECONDS * FPS, None), "m{i}: frames");
        assert!(torn.is_empty(), "m{i}: {torn:?}");
        assert!(
            empty_lead < FPS,
            "m{i}: {empty_lead} frames before the first source"
        );
        let o = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type,duration",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout);
        let audio: f64 = s
            .lines()
            .find_map(|l| l.strip_prefix("audio,"))
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("m{i}: no audio track: {s}"));
        assert!(
            (audio - SECONDS as f64).abs() <= 0.0214,
            "m{i}: audio {audio} s"
        );
    }
}
