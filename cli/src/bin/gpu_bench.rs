//! GPU compositor throughput and latency check (for the H100 target, DESIGN §9).
//!
//! - `gpu_bench offline --frames 3000`: one compositor, I420 sources changing per their fps,
//!   upload + compose + NV12 readback with `--inflight` frames in flight; prints frames/s and
//!   where the time goes.
//! - `gpu_bench realtime --mixers 100 --seconds 10`: M compositors on M threads, each ticking at
//!   the workload's fps in real time; prints p50/p99/max compose latency (submit → readback done)
//!   and how many mixers kept up (no frame later than one period).
//! - `--batched`: the same through the process's batch renderer (`compose::gpu::batch`, what
//!   the mixer uses): one submission and one readback map per batch for all mixers; prints
//!   submits per tick, bytes staged per frame and staging memory per mixer.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use cloudmixer::compose::gpu::batch::{BatchCompositor, RendererStats, SharedRenderer};
use cloudmixer::compose::gpu::{
    AdapterPolicy, GpuCompositor, GpuOptions, OutputFormat, OutputFrame,
};
use cloudmixer::compose::Frames;
use cloudmixer::model::layout::Layout;
use cloudmixer::testkit::stats::{percentile, GpuFigures};
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
    /// Through one batch renderer (one submission per batch for all mixers).
    #[arg(long, global = true)]
    batched: bool,
}

/// One mixer's compositor: the one-mixer GpuCompositor or a BatchCompositor.
enum Comp {
    One(GpuCompositor, OutputFrame),
    Batch(BatchCompositor, OutputFrame),
}

impl Comp {
    fn new(gpu: &SharedRenderer, batched: bool, w: u32, h: u32, opts: GpuOptions) -> Comp {
        let r = if batched {
            let r = gpu.get(opts.policy);
            r.and_then(|r| BatchCompositor::with_renderer(r, w, h, opts.output))
                .map(|mut c| {
                    c.set_parallel_upload(opts.parallel_upload);
                    Comp::Batch(c, OutputFrame::sized(opts.output, w, h))
                })
        } else {
            let ctx = gpu.device().get(opts.policy);
            ctx.and_then(|ctx| GpuCompositor::with_context(ctx, w, h, opts))
                .map(|c| Comp::One(c, OutputFrame::empty(opts.output)))
        };
        r.unwrap_or_else(|e| {
            eprintln!("no GPU compositor: {e}");
            std::process::exit(1)
        })
    }
    fn submit(&mut self, l: &Layout, f: &Frames) {
        match self {
            Comp::One(c, _) => c.submit(l, f).map(|_| ()),
            Comp::Batch(c, _) => c.submit(l, f).map(|_| ()),
        }
        .expect("submit")
    }
    fn receive(&mut self) {
        match self {
            Comp::One(c, out) => c.receive_into(out).map(|_| ()),
            Comp::Batch(c, out) => c.receive_into(&mut out.planes_mut()).map(|_| ()),
        }
        .expect("receive")
    }
    fn in_flight(&self) -> usize {
        match self {
            Comp::One(c, _) => c.in_flight(),
            Comp::Batch(c, _) => c.in_flight(),
        }
    }
    fn adapter(&self) -> String {
        match self {
            Comp::One(c, _) => c.adapter().to_string(),
            Comp::Batch(c, _) => c.renderer().adapter().to_string(),
        }
    }
}

fn renderer_stats(
    gpu: &SharedRenderer,
    args: &Args,
    policy: AdapterPolicy,
) -> Option<RendererStats> {
    args.batched
        .then(|| gpu.get(policy).ok().map(|r| r.stats()))
        .flatten()
}

fn print_batch(a: Option<RendererStats>, b: Option<RendererStats>, mixers: usize, ticks: u64) {
    let (Some(a), Some(b)) = (a, b) else { return };
    let g = GpuFigures::between(a, b, mixers, ticks);
    println!(
        "batch renderer: {} submits for {} frames ({:.3} submits per tick, {:.1} frames per submit, largest {}), staged {:.2} MB up + {:.2} MB down per frame, staging {:.1} MiB per mixer",
        g.submits,
        g.frames,
        g.submits_per_tick,
        g.frames as f64 / g.submits.max(1) as f64,
        g.max_batch,
        g.upload_mb_per_frame,
        g.readback_mb_per_frame,
        g.staging_mib_per_mixer,
    );
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

fn main() {
    let args = Args::parse();
    // one device and renderer for every compositor of the run
    let gpu = SharedRenderer::new();
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
            let mut c = Comp::new(&gpu, args.batched, w.width, w.height, opts);
            println!(
                "gpu_bench offline{}: {} {}x{} ({} sources), {} frames, {} in flight, {:?} readback, parallel upload {}, adapter {}",
                if args.batched { " (batched)" } else { "" },
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
            // warm-up: first uploads, pipeline compilation
            for n in 0..3 {
                c.submit(&layout, src.at(n));
                c.receive();
            }
            let s0 = match &c {
                Comp::One(g, _) => Some(g.stats()),
                Comp::Batch(..) => None,
            };
            let r0 = renderer_stats(&gpu, &args, opts.policy);
            let t0 = Instant::now();
            let mut received = 0u64;
            for n in 0..frames {
                if c.in_flight() >= inflight {
                    c.receive();
                    received += 1;
                }
                c.submit(&layout, src.at(n + 3));
            }
            while c.in_flight() > 0 {
                c.receive();
                received += 1;
            }
            let wall = t0.elapsed().as_secs_f64();
            println!(
                "frames/s: {:.1} ({} frames in {:.3} s)",
                received as f64 / wall,
                received,
                wall
            );
            if let (Some(s0), Comp::One(g, _)) = (s0, &c) {
                let s = g.stats();
                let ms = |v: f64| v * 1e3 / frames as f64;
                println!(
                    "per frame: upload {:.3} ms ({:.2} MB/frame), encode+submit {:.3} ms, readback wait {:.3} ms, readback copy {:.3} ms, other {:.3} ms",
                    ms(s.upload_s - s0.upload_s),
                    (s.upload_bytes - s0.upload_bytes) as f64 / 1e6 / frames as f64,
                    ms(s.submit_s - s0.submit_s),
                    ms(s.wait_s - s0.wait_s),
                    ms(s.copy_s - s0.copy_s),
                    ms(wall - (s.upload_s - s0.upload_s) - (s.submit_s - s0.submit_s) - (s.wait_s - s0.wait_s) - (s.copy_s - s0.copy_s)),
                );
            }
            print_batch(r0, renderer_stats(&gpu, &args, opts.policy), 1, frames);
            println!("RSS: {:.1} MiB", rss_mib());
        }
        Mode::Realtime { mixers, seconds } => {
            let period = Duration::from_secs_f64(1.0 / w.fps as f64);
            let ticks = (seconds * w.fps as f64).round() as u64;
            println!(
                "gpu_bench realtime{}: {} mixers x {} {}x{} @ {} fps for {:.1} s ({} ticks), {:?} readback",
                if args.batched { " (batched)" } else { "" },
                mixers, w.name, w.width, w.height, w.fps, seconds, ticks, opts.output
            );
            let t_setup = Instant::now();
            let comps: Vec<Comp> = (0..mixers)
                .map(|_| Comp::new(&gpu, args.batched, w.width, w.height, opts))
                .collect();
            println!(
                "adapter {}; {} compositors created in {:.2} s",
                comps[0].adapter(),
                mixers,
                t_setup.elapsed().as_secs_f64()
            );
            // one set of synthetic pictures shared by all mixers (each still uploads its own)
            let shared_src = SyntheticSources::new(&w);
            let r0 = renderer_stats(&gpu, &args, opts.policy);
            let barrier = Arc::new(Barrier::new(mixers));
            let handles: Vec<_> = comps
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    let (layout, barrier, mut src) =
                        (layout.clone(), barrier.clone(), shared_src.clone());
                    std::thread::spawn(move || {
                        // warm-up (uploads, first submit), then start together, staggered in the period
                        c.submit(&layout, src.at(0));
                        c.receive();
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
                            c.submit(&layout, src.at(n + 1));
                            c.receive();
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
                percentile(&all, 50.0),
                percentile(&all, 99.0),
                all.last().copied().unwrap_or(f64::NAN),
                all.len()
            );
            println!(
                "kept up: {kept_up}/{mixers} mixers (no frame later than one period); late frames: {late_total}; p99 < {:.1} ms: {}",
                period.as_secs_f64() * 1e3,
                percentile(&all, 99.0) < period.as_secs_f64() * 1e3
            );
            print_batch(r0, renderer_stats(&gpu, &args, opts.policy), mixers, ticks);
            println!(
                "RSS: {:.1} MiB ({:.1} MiB per mixer; the synthetic source pictures are shared)",
                rss_mib(),
                rss_mib() / mixers as f64
            );
        }
    }
}
