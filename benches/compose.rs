//! CPU compose of W1–W3 from pre-decoded frames (shared/peers/WORKLOADS.md).
//!
//! `steady`: each source changes at its own rate (15 fps cameras in a 30 fps output change every
//! other tick), as in a real recording. `all_new`: every source has a new frame every tick.
use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use cloudmixer::compose::{cpu::CpuCompositor, Compositor, Frames};
use cloudmixer::testutil::pattern_frame;
use cloudmixer::workloads::Workload;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compose_cpu");
    g.sample_size(30);
    for w in Workload::all() {
        let layout = w.layout();
        // three decoded pictures per source, alternated as the source's clock advances
        let pics: Vec<[Arc<_>; 3]> = w
            .cells
            .iter()
            .enumerate()
            .map(|(i, (s, _))| {
                [0, 1, 2].map(|k| Arc::new(pattern_frame(s.width, s.height, (i * 3 + k) as u32)))
            })
            .collect();
        for mode in ["steady", "all_new"] {
            let mut comp = CpuCompositor::new(w.width, w.height);
            let mut frames: Frames = HashMap::new();
            let mut tick: u64 = 0;
            g.bench_function(format!("{}/{mode}", w.name), |b| {
                b.iter(|| {
                    for (i, (s, _)) in w.cells.iter().enumerate() {
                        let n = tick * s.fps as u64 / w.fps as u64; // source frame index at this tick
                        let k = if mode == "steady" { n % 3 } else { tick % 3 };
                        frames.insert(s.camid.to_string(), pics[i][k as usize].clone());
                    }
                    tick += 1;
                    comp.compose(&layout, &frames).unwrap().y[0]
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
