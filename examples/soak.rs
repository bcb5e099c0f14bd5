//! Soak: N real-time mixers (default 16) recording for M minutes (default 10), fed at 30 fps
//! with three sources and their audio, with a live update every 100 ms per mixer, reading
//! their events as a server does; prints the process's RSS and open file descriptors once a
//! minute. Not a test: run it and read the
//! figures (BENCHMARKS.md).
//!
//!     [SOAK_EXT=mkv] cargo run --release --example soak -- [MIXERS] [MINUTES]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudmixer::compose::Backend;
use cloudmixer::model::audio::AudioFrame;
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::frame::VideoFrame;
use cloudmixer::model::time::PaceMode;
use cloudmixer::output::Storage;
use cloudmixer::pipeline::{Mixer, MixerSettings};
use cloudmixer::testkit::PALETTE;
use serde_json::json;

fn layout(shift: usize) -> serde_json::Value {
    let items: Vec<_> = (0..3)
        .map(|cell| {
            json!({"type":0,"left":cell*64,"top":0,"width":64,"height":64,
                "param":{"camid":format!("s{}.-1", (cell + shift) % 3)}})
        })
        .collect();
    json!({"videoFileCfg":{"layoutConfig":items}})
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mixers: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let minutes: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    // the container (SOAK_EXT=mkv, ts, flv; default mp4)
    let ext = std::env::var("SOAK_EXT").unwrap_or_else(|_| "mp4".into());
    let dir = std::env::temp_dir().join(format!("cloudmixer-soak-{}", std::process::id()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut threads = Vec::new();
    let mut all = Vec::new();
    // the mixers share one set of services, as the rooms of a host do
    let services = cloudmixer::pipeline::Services::new();
    for i in 0..mixers {
        let mut v = layout(0);
        v["mode"] = 0.into();
        v["videoFileCfg"]["svrPathName"] = format!("/m{i}.{ext}").into();
        v["videoFileCfg"]["vWidth"] = 192.into();
        v["videoFileCfg"]["vHeight"] = 64.into();
        v["videoFileCfg"]["vFps"] = 30.into();
        let s = MixerSettings {
            backend: Backend::Cpu,
            mode: PaceMode::Realtime,
            services: Some(services.clone()),
            ..Default::default()
        };
        let m = Arc::new(
            Mixer::create_with(MixerConfig::from_value(v).unwrap(), Storage::new(&dir), s)
                .expect("mixer"),
        );
        all.push(m.clone());
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let frames: Vec<VideoFrame> = (0..3)
                .map(|c| VideoFrame::solid_i420(64, 64, PALETTE[c]).unwrap())
                .collect();
            let mut k = 0u64;
            while !stop.load(Ordering::Acquire) {
                let due = t0 + Duration::from_millis(10 * k);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                for u in 0..3 {
                    let a = AudioFrame::i16_interleaved(vec![100; 480], 48_000, 1).unwrap();
                    let _ = m.push_audio(&format!("s{u}"), a);
                }
                if k % 3 == 0 {
                    for (c, f) in frames.iter().enumerate() {
                        let _ = m.push_video(&format!("s{c}.-1"), f.clone());
                    }
                }
                if k % 10 == 0 {
                    let _ = m.update_content(&layout((k / 10) as usize));
                }
                k += 1;
            }
        }));
    }
    println!("minute  rss_MiB  open_fds  ticks(m0)");
    let events: Vec<_> = all.iter().map(|m| m.events()).collect();
    for minute in 0..=minutes {
        let due = t0 + Duration::from_secs(60 * minute);
        // a server reads its mixers' events (unread, they pile up in the channel)
        while let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w.min(Duration::from_secs(1)));
            for rx in &events {
                while rx.try_recv().is_ok() {}
            }
        }
        println!(
            "{minute:>6}  {:>7.1}  {:>8}  {:>9}",
            rss_kib() as f64 / 1024.0,
            open_fds(),
            all[0].ticks()
        );
    }
    stop.store(true, Ordering::Release);
    for t in threads {
        let _ = t.join();
    }
    for m in all {
        if let Ok(mut m) = Arc::try_unwrap(m) {
            let _ = m.destroy();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
