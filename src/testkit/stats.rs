//! Measurement helpers shared by `cloudmixer bench`, `gpu_bench`, the benches, examples and
//! timing tests: the one percentile rule (nearest rank), latency statistics and the batch
//! renderer's figures between two readings.

use serde::Serialize;

/// Nearest-rank percentile of sorted samples (`p` in 0..=100): the smallest sample with at
/// least `p`% of the samples at or below it; 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Statistics of a set of per-frame latencies (ms).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LatencyStats {
    /// Samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencyStats {
    /// Statistics of unsorted samples (non-finite ones are left out).
    pub fn of(samples: &[f64]) -> Self {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        s.sort_by(|a, b| a.total_cmp(b));
        LatencyStats {
            n: s.len(),
            p50: percentile(&s, 50.0),
            p99: percentile(&s, 99.0),
            max: s.last().copied().unwrap_or(0.0),
            mean: if s.is_empty() {
                0.0
            } else {
                s.iter().sum::<f64>() / s.len() as f64
            },
        }
    }
}

/// The batch renderer's work in one configuration (GPU backend).
#[cfg(feature = "gpu")]
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct GpuFigures {
    /// Submissions (batches).
    pub submits: u64,
    /// Frames rendered on the GPU (repeats of unchanged pictures are not).
    pub frames: u64,
    /// Submissions per output tick (all mixers together; 1 = one submit per tick for all).
    pub submits_per_tick: f64,
    /// Largest batch.
    pub max_batch: u64,
    /// Source bytes staged per composed frame (MB).
    pub upload_mb_per_frame: f64,
    /// Readback bytes per composed frame (MB, rows padded).
    pub readback_mb_per_frame: f64,
    /// Upload belt + readback buffers allocated at the end, per mixer (MiB).
    pub staging_mib_per_mixer: f64,
}

#[cfg(feature = "gpu")]
impl GpuFigures {
    /// The renderer's work between two readings of its counters (`ticks` per mixer).
    pub fn between(
        a: crate::compose::gpu::batch::RendererStats,
        b: crate::compose::gpu::batch::RendererStats,
        mixers: usize,
        ticks: u64,
    ) -> GpuFigures {
        let frames = b.frames - a.frames;
        let per = |x: u64| x as f64 / 1e6 / frames.max(1) as f64;
        GpuFigures {
            submits: b.batches - a.batches,
            frames,
            submits_per_tick: (b.batches - a.batches) as f64 / ticks.max(1) as f64,
            max_batch: b.max_batch,
            upload_mb_per_frame: per(b.upload_bytes - a.upload_bytes),
            readback_mb_per_frame: per(b.readback_bytes - a.readback_bytes),
            staging_mib_per_mixer: (b.belt_bytes + b.readback_pool_bytes) as f64
                / (1 << 20) as f64
                / mixers.max(1) as f64,
        }
    }
}
