//! Composes a workload N times on the CPU (for profilers): `compose_loop W3 100 [threads]`.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use cloudmixer::compose::{cpu::CpuCompositor, Compositor, Frames};
use cloudmixer::testutil::pattern_frame;
use cloudmixer::workloads::Workload;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let w = Workload::by_name(a.get(1).map_or("W3", |s| s)).expect("W1, W2 or W3");
    let n: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let threads: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let layout = w.layout();
    let pics: Vec<[Arc<_>; 3]> = w
        .cells
        .iter()
        .enumerate()
        .map(|(i, (s, _))| {
            [0, 1, 2].map(|k| Arc::new(pattern_frame(s.width, s.height, (i * 3 + k) as u32)))
        })
        .collect();
    let mut comp = CpuCompositor::with_threads(w.width, w.height, threads);
    let mut frames: Frames = HashMap::new();
    let t = Instant::now();
    let mut sum = 0u64;
    for tick in 0..n {
        for (i, (s, _)) in w.cells.iter().enumerate() {
            let k = tick * s.fps as u64 / w.fps as u64 % 3;
            frames.insert(s.camid.to_string(), pics[i][k as usize].clone());
        }
        sum += comp.compose(&layout, &frames).unwrap().y[1000] as u64;
    }
    let el = t.elapsed();
    println!(
        "{} x{n}: {:.3} ms/frame ({} threads) [{sum}]",
        w.name,
        el.as_secs_f64() * 1e3 / n as f64,
        threads
    );
}
