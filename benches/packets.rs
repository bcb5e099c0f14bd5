//! Handing one encoded packet to the live targets (DESIGN §2, the writer): `clone` is
//! `ffmpeg::Packet::clone` (a copy of the payload per target, what the writer did before),
//! `share` is `Packet::share` (`av_packet_ref`: a reference per target, own timestamps). Each
//! target's copy gets its timestamps rescaled (as its muxer does) and is dropped.
//!
//! Payloads: 15 kB (a 1080p P-frame at 2 Mbit/s, 15 fps) and 120 kB (a keyframe); 1 and 3
//! live targets. Bytes of payload copied per packet: `clone` size × targets, `share` 0.
//!
//! `cargo bench --bench packets`
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ffmpeg_next as ffmpeg;

use cloudmixer::output::Packet;

fn packet(size: usize) -> Packet {
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut data = ffmpeg::Packet::copy(&bytes);
    data.set_pts(Some(1234));
    data.set_dts(Some(1233));
    Packet { track: 0, data }
}

fn fan_out(p: &Packet, targets: usize, share: bool) -> i64 {
    let mut sum = 0;
    for _ in 0..targets {
        let mut q = if share {
            p.share()
        } else {
            Packet {
                track: p.track,
                data: p.data.clone(),
            }
        };
        q.data
            .rescale_ts(ffmpeg::Rational::new(1, 15), ffmpeg::Rational::new(1, 1000));
        sum += q.data.pts().unwrap_or(0);
    }
    sum
}

fn bench(c: &mut Criterion) {
    ffmpeg::init().expect("ffmpeg");
    let mut g = c.benchmark_group("live_fan_out");
    for size in [15_000usize, 120_000] {
        let p = packet(size);
        for targets in [1usize, 3] {
            g.throughput(Throughput::Bytes((size * targets) as u64));
            for (name, share) in [("clone", false), ("share", true)] {
                g.bench_with_input(
                    BenchmarkId::new(format!("{name}/{targets}_targets"), size),
                    &(),
                    |b, _| b.iter(|| fan_out(&p, targets, share)),
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
