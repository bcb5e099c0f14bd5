//! Frame hand-off cost: building a `VideoFrame` from a decoder's planes and pushing it into a
//! real-time mixer, copied (`Vec` from the planes, as before zero-copy frames) vs lent
//! (`PlaneData::from_raw`, the decoder's buffer kept until released) vs a `FramePool` buffer
//! filled by the "decoder". 1280x720 I420, 3000 pushes each, p50/p99/max.
//!
//!     cargo run --release --example handoff   # (feature `testkit`: on in a build at the root, which builds the command too)

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudmixer::model::buffer::{FramePool, PlaneData};
use cloudmixer::prelude::*;
use cloudmixer::testkit::stats::LatencyStats;

const W: usize = 1280;
const H: usize = 720;
const N: usize = 3000;

fn mixer(dir: &std::path::Path) -> Mixer {
    let cfg = MixerConfig::from_value(serde_json::json!({"mode":0,"videoFileCfg":{
        "svrPathName":"h.mp4","vWidth":640,"vHeight":360,"vFps":15,"layoutConfig":[
        {"type":0,"left":0,"top":0,"width":640,"height":360,"param":{"camid":"u1.0"}}]}}))
    .unwrap();
    let settings = MixerSettings {
        backend: Backend::Cpu,
        ..MixerSettings::default()
    };
    Mixer::create_with(cfg, Storage::new(dir), settings).unwrap()
}

fn report(name: &str, t: Vec<Duration>) {
    let us: Vec<f64> = t.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let s = LatencyStats::of(&us);
    println!(
        "{name:<28} p50 {:>7.1} µs   p99 {:>7.1} µs   max {:>8.1} µs",
        s.p50, s.p99, s.max
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("cm-handoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = mixer(&dir);
    // the "decoder's" frame buffers: refcounted, as FFmpeg's are
    let decoded: Vec<Arc<Vec<u8>>> = (0..4)
        .map(|i| Arc::new(vec![40 + i as u8; W * H * 3 / 2]))
        .collect();
    let planes = |b: &[u8]| {
        (
            b[..W * H].to_vec(),
            b[W * H..W * H * 5 / 4].to_vec(),
            b[W * H * 5 / 4..].to_vec(),
        )
    };
    let pace = || std::thread::sleep(Duration::from_millis(2));
    let mut copied = Vec::with_capacity(N);
    for i in 0..N {
        let b = &decoded[i % 4];
        let t0 = Instant::now();
        let (y, u, v) = planes(b);
        let f = VideoFrame::i420(W as u32, H as u32, y, u, v).unwrap();
        m.push_video("u1.0", f).unwrap();
        copied.push(t0.elapsed());
        pace();
    }
    let mut lent = Vec::with_capacity(N);
    for i in 0..N {
        let b = decoded[i % 4].clone();
        let t0 = Instant::now();
        let whole = PlaneData::from_arc(b);
        let f = VideoFrame::i420_shared(
            W as u32,
            H as u32,
            whole.slice(0..W * H).unwrap(),
            whole.slice(W * H..W * H * 5 / 4).unwrap(),
            whole.slice(W * H * 5 / 4..W * H * 3 / 2).unwrap(),
        )
        .unwrap();
        m.push_video("u1.0", f).unwrap();
        lent.push(t0.elapsed());
        pace();
    }
    let pool = FramePool::new(16);
    let mut pooled = Vec::with_capacity(N);
    for i in 0..N {
        let src = &decoded[i % 4];
        let t0 = Instant::now();
        // a decoder writing straight into the pool's buffers (the write itself is counted)
        let mut y = pool.buffer(W * H);
        let mut u = pool.buffer(W * H / 4);
        let mut v = pool.buffer(W * H / 4);
        y.copy_from_slice(&src[..W * H]);
        u.copy_from_slice(&src[W * H..W * H * 5 / 4]);
        v.copy_from_slice(&src[W * H * 5 / 4..]);
        let f = VideoFrame::i420_shared(W as u32, H as u32, y.into(), u.into(), v.into()).unwrap();
        m.push_video("u1.0", f).unwrap();
        pooled.push(t0.elapsed());
        pace();
    }
    report("copied (Vec per plane)", copied);
    report("lent (no copy)", lent);
    report("pool (decoder writes into)", pooled);
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}
