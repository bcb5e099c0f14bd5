//! CPU compose of W1–W3 from pre-decoded frames (shared/peers/WORKLOADS.md).
//!
//! `steady`: each source changes at its own rate (15 fps cameras in a 30 fps output change every
//! other tick), as in a real recording. `all_new`: every source has a new frame every tick.
use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion};

use cloudmixer::compose::{cpu::CpuCompositor, Compositor, Frames};
use cloudmixer::testkit::synth::SyntheticSources;
use cloudmixer::testkit::workloads::Workload;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compose_cpu");
    g.sample_size(30);
    for w in Workload::all() {
        let layout = w.layout();
        let sources = SyntheticSources::new(&w);
        for mode in ["steady", "all_new"] {
            let mut comp = CpuCompositor::new(w.width, w.height);
            let mut frames: Frames = HashMap::new();
            let mut tick: u64 = 0;
            g.bench_function(format!("{}/{mode}", w.name), |b| {
                b.iter(|| {
                    // all_new: advance every source's clock by one of its own frames per tick
                    let t = if mode == "steady" {
                        tick
                    } else {
                        tick * w.fps as u64
                    };
                    sources.frames_at(t, &mut frames);
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
