//! Composes a workload N times on the CPU (for profilers): `compose_loop W3 100 [threads]`.
use std::collections::HashMap;
use std::time::Instant;

use cloudmixer::compose::{cpu::CpuCompositor, Compositor, Frames};
use cloudmixer::testkit::synth::SyntheticSources;
use cloudmixer::testkit::workloads::Workload;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let w = Workload::by_name(a.get(1).map_or("W3", |s| s)).expect("W1, W2 or W3");
    let n: u64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let threads: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let layout = w.layout();
    let sources = SyntheticSources::new(&w);
    let mut comp = CpuCompositor::with_threads(w.width, w.height, threads);
    let mut frames: Frames = HashMap::new();
    let t = Instant::now();
    let mut sum = 0u64;
    for tick in 0..n {
        sources.frames_at(tick, &mut frames);
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
