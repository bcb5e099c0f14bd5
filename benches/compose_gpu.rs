//! GPU compositor: W1–W3 upload + compose + readback, pipelined (3 frames in flight), synthetic
//! sources changing at their own fps. One criterion iteration = one output frame.
//!
//! Without an adapter the benchmarks are skipped with a note (`CLOUDMIXER_REQUIRE_GPU=1` makes
//! that an error). `CLOUDMIXER_BENCH_WORKLOADS=W1,W2` limits the set (W3 is slow on lavapipe).

use std::time::{Duration, Instant};

use cloudmixer::compose::gpu::{GpuCompositor, GpuOptions, OutputFormat, OutputFrame};
use cloudmixer::testkit::synth::SyntheticSources;
use cloudmixer::testkit::workloads::Workload;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const IN_FLIGHT: usize = 3;

fn bench(c: &mut Criterion) {
    let wanted = std::env::var("CLOUDMIXER_BENCH_WORKLOADS").unwrap_or_else(|_| "W1,W2,W3".into());
    let mut group = c.benchmark_group("gpu_pipelined");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for w in Workload::all() {
        if !wanted
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(w.name))
        {
            continue;
        }
        for output in [OutputFormat::Nv12, OutputFormat::I420] {
            let opts = GpuOptions {
                output,
                ring: IN_FLIGHT,
                ..Default::default()
            };
            let Some(mut comp) = cloudmixer::testkit::gpu_or_skip(
                GpuCompositor::new(w.width, w.height, opts),
                "the GPU benches",
            ) else {
                return;
            };
            let layout = w.layout();
            let mut src = SyntheticSources::new(&w);
            let mut out = OutputFrame::empty(output);
            let mut tick = 0u64;
            let name = format!(
                "{}_{:?}_{}",
                w.name,
                output,
                comp.adapter().name.split(' ').next().unwrap_or("gpu")
            );
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        if comp.in_flight() >= IN_FLIGHT {
                            comp.receive_into(&mut out).expect("receive");
                        }
                        comp.submit(&layout, src.at(tick)).expect("submit");
                        tick += 1;
                    }
                    while comp.in_flight() > 0 {
                        comp.receive_into(&mut out).expect("receive");
                    }
                    t0.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
