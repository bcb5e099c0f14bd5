//! GPU compositor throughput and latency check (for the H100 target, DESIGN §9).
//!
//! - `gpu_bench offline --frames 3000`: one compositor, I420 sources changing per their fps,
//!   upload + compose + NV12 readback with `--inflight` frames in flight; prints frames/s and
//!   where the time goes.
//! - `gpu_bench realtime --mixers 100 --seconds 10`: M compositors on M threads, each ticking at
//!   the workload's fps in real time; prints p50/p99/max compose latency (submit → readback done)
//!   and how many mixers kept up (no frame later than one period).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use cloudmixer::compose::gpu::{
    AdapterPolicy, GpuCompositor, GpuOptions, OutputFormat, OutputFrame,
};
use cloudmixer::testkit::synth::SyntheticSources;
use cloudmixer::testkit::workloads::Workload;

#[derive(Parser)]
#[command(about = "GPU compositor benchmark: offline throughput and real-time concurrency")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Workload (W1, W2, W3).
    #[arg(long, default_value = "W3", global = true)]
    workload: String,
    /// Readback format.
    #[arg(long, value_enum, default_value = "nv12", global = true)]
    output: Out,
    /// Refuse software adapters (lavapipe).
    #[arg(long, global = true)]
    hardware_only: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Out {
    I420,
    Nv12,
}

#[derive(Subcommand)]
enum Mode {
    /// One compositor, as fast as possible.
    Offline {
        /// Frames to compose.
        #[arg(long, default_value_t = 3000)]
        frames: u64,
        /// Frames in flight (readback ring size).
        #[arg(long, default_value_t = 3)]
        inflight: usize,
        /// Copy each frame's source planes in parallel (rayon).
        #[arg(long)]
        parallel_upload: bool,
    },
    /// M compositors at the workload's fps in real time.
    Realtime {
        /// Concurrent compositors.
        #[arg(long, default_value_t = 100)]
        mixers: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = Args::parse();
    let w = Workload::by_name(&args.workload).unwrap_or_else(|| {
        eprintln!("unknown workload {:?}", args.workload);
        std::process::exit(2)
    });
    let opts = GpuOptions {
        output: match args.output {
            Out::I420 => OutputFormat::I420,
            Out::Nv12 => OutputFormat::Nv12,
        },
        policy: if args.hardware_only {
            AdapterPolicy::HardwareOnly
        } else {
            AdapterPolicy::AllowSoftware
        },
        ..Default::default()
    };
    let layout = w.layout();
    match args.mode {
        Mode::Offline {
            frames,
            inflight,
            parallel_upload,
        } => {
            let opts = GpuOptions {
                ring: inflight.max(1),
                parallel_upload,
                ..opts
            };
            let mut c = GpuCompositor::new(w.width, w.height, opts).unwrap_or_else(|e| {
                eprintln!("no GPU compositor: {e}");
                std::process::exit(1)
            });
            println!(
                "gpu_bench offline: {} {}x{} ({} sources), {} frames, {} in flight, {:?} readback, parallel upload {}, adapter {}",
                w.name,
                w.width,
                w.height,
                w.cells.len(),
                frames,
                inflight,
                opts.output,
                parallel_upload,
                c.adapter()
            );
            let mut src = SyntheticSources::new(&w);
            let mut out = OutputFrame::empty(opts.output);
            // warm-up: first uploads, pipeline compilation
            for n in 0..3 {
                c.submit(&layout, src.at(n)).expect("submit");
                c.receive_into(&mut out).expect("receive");
            }
            let s0 = c.stats();
            let t0 = Instant::now();
            let mut received = 0u64;
            for n in 0..frames {
                if c.in_flight() >= inflight {
                    c.receive_into(&mut out).expect("receive");
                    received += 1;
                }
                c.submit(&layout, src.at(n + 3)).expect("submit");
            }
            while c.in_flight() > 0 {
                c.receive_into(&mut out).expect("receive");
                received += 1;
            }
            let wall = t0.elapsed().as_secs_f64();
            let s = c.stats();
            let ms = |v: f64| v * 1e3 / frames as f64;
            println!(
                "frames/s: {:.1} ({} frames in {:.3} s)",
                received as f64 / wall,
                received,
                wall
            );
            println!(
                "per frame: upload {:.3} ms ({:.2} MB/frame), encode+submit {:.3} ms, readback wait {:.3} ms, readback copy {:.3} ms, other {:.3} ms",
                ms(s.upload_s - s0.upload_s),
                (s.upload_bytes - s0.upload_bytes) as f64 / 1e6 / frames as f64,
                ms(s.submit_s - s0.submit_s),
                ms(s.wait_s - s0.wait_s),
                ms(s.copy_s - s0.copy_s),
                ms(wall - (s.upload_s - s0.upload_s) - (s.submit_s - s0.submit_s) - (s.wait_s - s0.wait_s) - (s.copy_s - s0.copy_s)),
            );
            println!("RSS: {:.1} MiB", rss_mib());
        }
        Mode::Realtime { mixers, seconds } => {
            let period = Duration::from_secs_f64(1.0 / w.fps as f64);
            let ticks = (seconds * w.fps as f64).round() as u64;
            println!(
                "gpu_bench realtime: {} mixers x {} {}x{} @ {} fps for {:.1} s ({} ticks), {:?} readback",
                mixers, w.name, w.width, w.height, w.fps, seconds, ticks, opts.output
            );
            let t_setup = Instant::now();
            let comps: Vec<GpuCompositor> = (0..mixers)
                .map(|_| {
                    GpuCompositor::new(w.width, w.height, opts).unwrap_or_else(|e| {
                        eprintln!("no GPU compositor: {e}");
                        std::process::exit(1)
                    })
                })
                .collect();
            println!(
                "adapter {}; {} compositors created in {:.2} s",
                comps[0].adapter(),
                mixers,
                t_setup.elapsed().as_secs_f64()
            );
            // one set of synthetic pictures shared by all mixers (each still uploads its own)
            let shared_src = SyntheticSources::new(&w);
            let barrier = Arc::new(Barrier::new(mixers));
            let handles: Vec<_> = comps
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    let (layout, barrier, mut src) =
                        (layout.clone(), barrier.clone(), shared_src.clone());
                    std::thread::spawn(move || {
                        let mut out = OutputFrame::empty(c.options().output);
                        // warm-up (uploads, first submit), then start together, staggered in the period
                        c.submit(&layout, src.at(0)).expect("submit");
                        c.receive_into(&mut out).expect("receive");
                        barrier.wait();
                        let start = Instant::now() + period.mul_f64(i as f64 / mixers as f64);
                        let mut lat = Vec::with_capacity(ticks as usize);
                        let mut late = 0u64;
                        for n in 0..ticks {
                            let due = start + period.mul_f64(n as f64);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                            let t = Instant::now();
                            c.submit(&layout, src.at(n + 1)).expect("submit");
                            c.receive_into(&mut out).expect("receive");
                            let done = Instant::now();
                            lat.push((done - t).as_secs_f64() * 1e3);
                            if done > due + period {
                                late += 1;
                            }
                        }
                        (lat, late)
                    })
                })
                .collect();
            let mut all = Vec::new();
            let mut kept_up = 0;
            let mut late_total = 0;
            for h in handles {
                let (lat, late) = h.join().expect("mixer thread");
                if late == 0 {
                    kept_up += 1;
                }
                late_total += late;
                all.extend(lat);
            }
            all.sort_by(|a, b| a.total_cmp(b));
            println!(
                "compose latency (submit -> readback done): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} frames",
                pct(&all, 0.5),
                pct(&all, 0.99),
                all.last().copied().unwrap_or(f64::NAN),
                all.len()
            );
            println!(
                "kept up: {kept_up}/{mixers} mixers (no frame later than one period); late frames: {late_total}; p99 < {:.1} ms: {}",
                period.as_secs_f64() * 1e3,
                pct(&all, 0.99) < period.as_secs_f64() * 1e3
            );
            println!(
                "RSS: {:.1} MiB ({:.1} MiB per mixer; the synthetic source pictures are shared)",
                rss_mib(),
                rss_mib() / mixers as f64
            );
        }
    }
}
