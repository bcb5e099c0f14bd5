//! Memory per room: N real-time mixers (W1 geometry: 1280x720 at 15 fps, two cameras of
//! synthetic frames pushed at 15 fps, audio on), run for 8 s; prints the process's RSS before
//! and after, and per room. The x264 settings are the defaults (`--preset veryfast`,
//! zerolatency in real time, the encoder's own thread count) unless `threads` is given.
//!
//!     cargo run --release --example rss_per_room -- ROOMS [threads]

use std::sync::Arc;
use std::time::Duration;

use cloudmixer::prelude::*;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let rooms: usize = std::env::args().nth(1).map_or(1, |a| a.parse().unwrap());
    let threads: usize = std::env::args().nth(2).map_or(0, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("cm-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let base = rss_mib();
    // the rooms share one set of services, as the rooms of a host do
    let mut settings = MixerSettings {
        backend: Backend::Cpu,
        services: Some(cloudmixer::pipeline::Services::new()),
        ..MixerSettings::default()
    };
    settings.encoder.threads = threads;
    let mixers: Vec<Arc<Mixer>> = (0..rooms)
        .map(|i| {
            let c = MixerConfig::from_value(serde_json::json!({"mode":0,"videoFileCfg":{
                "svrPathName": format!("room{i}.mp4"),"vWidth":1280,"vHeight":720,"vFps":15,
                "layoutConfig":[
                  {"type":0,"left":0,"top":180,"width":640,"height":360,"param":{"camid":"Usr1.-1"}},
                  {"type":0,"left":640,"top":180,"width":640,"height":360,"param":{"camid":"Usr2.-1"}}]}}))
            .unwrap();
            Arc::new(Mixer::create_with(c, Storage::new(&dir), settings.clone()).unwrap())
        })
        .collect();
    let a = VideoFrame::solid_i420(640, 480, [81, 90, 240]).unwrap();
    let b = VideoFrame::solid_i420(1280, 720, [145, 54, 34]).unwrap();
    let t0 = std::time::Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(8) {
        for m in &mixers {
            // a moving bar, so the encoder has work
            let mut fa = a.clone();
            fa.pts = Duration::from_millis(n * 66);
            let _ = m.push_video("Usr1.-1", fa);
            let _ = m.push_video("Usr2.-1", b.clone());
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(66));
    }
    let peak = rss_mib();
    let late: u64 = mixers.iter().map(|m| m.stats().late_ticks).sum();
    for m in &mixers {
        m.stop();
    }
    for m in &mixers {
        let _ = m.wait();
    }
    println!(
        "{rooms} rooms, x264 threads {}: RSS {base:.0} MiB before, {peak:.0} MiB while recording: {:.1} MiB per room ({late} late ticks)",
        if threads == 0 { "auto".to_string() } else { threads.to_string() },
        (peak - base) / rooms as f64
    );
    drop(mixers);
    let _ = std::fs::remove_dir_all(&dir);
}
