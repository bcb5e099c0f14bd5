//! `cloudmixer bench`: how many rooms a machine can mix, side by side with FFmpeg.
//!
//! A configuration is (workload, backend, number of concurrent mixers). Each mixer composes the
//! workload's layout from synthetic decoded frames (sources change at their own frame rate) on
//! its own thread, offline (as fast as possible) or in real time (ticks at `n / fps`). The run
//! reports output fps, per-frame latency p50/p99, CPU time per frame, peak RSS and, in real time,
//! how many mixers kept their rate (p99 under one frame interval): the capacity figure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use cloudmixer::compose::scene::Scene;
use cloudmixer::compose::{self, Backend, Frames};
use cloudmixer::testkit::stats::{GpuFigures, LatencyStats};
use cloudmixer::testkit::synth::SyntheticSources;
use cloudmixer::testkit::workloads::Workload;

/// Parses `--mixers 1,8,32` (also a single number). Each count must be 1..=4096.
pub fn parse_sweep(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        let n: usize = p
            .parse()
            .map_err(|_| format!("--mixers: '{p}' is not a number"))?;
        if !(1..=4096).contains(&n) {
            return Err(format!("--mixers: {n} is out of range (1..=4096)"));
        }
        out.push(n);
    }
    if out.is_empty() {
        return Err("--mixers: empty list".into());
    }
    Ok(out)
}

/// FFmpeg's figures for a workload, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct FfmpegResult {
    /// The compose command (null sink).
    pub command: String,
    /// Wall seconds of the compose command (median of runs).
    pub wall_s: f64,
    /// CPU seconds (user + sys) of the compose command (median).
    pub cpu_s: f64,
    /// CPU seconds of decoding alone (median).
    pub decode_cpu_s: f64,
    /// (cpu − decode cpu) / frames, in ms: FFmpeg's compose cost per frame.
    pub comp_cpu_ms_per_frame: f64,
    /// Output frames per second of the compose command.
    pub out_fps: f64,
    /// Wall seconds of the file→file command with libx264 ultrafast (when encoding is compared).
    pub ultrafast_wall_s: Option<f64>,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigResult {
    /// Workload name.
    pub workload: String,
    /// `cpu` or `gpu`.
    pub backend: String,
    /// Compositor description (adapter name for the GPU).
    pub adapter: String,
    /// Encoder (none while `--encode none`).
    pub encoder: String,
    /// Concurrent mixers.
    pub mixers: usize,
    /// Real time (true) or offline.
    pub realtime: bool,
    /// Target output fps of one mixer.
    pub target_fps: u32,
    /// Frames composed per mixer.
    pub frames_per_mixer: u64,
    /// Output frames per second, all mixers together.
    pub output_fps: f64,
    /// Output fps of the slowest mixer.
    pub min_mixer_fps: f64,
    /// Per-frame compose latency over all mixers, ms.
    pub latency_ms: LatencyStats,
    /// CPU time (user + sys, all threads) per output frame, ms.
    pub cpu_ms_per_frame: f64,
    /// Peak resident memory during the configuration, MiB.
    pub peak_rss_mib: f64,
    /// Mixers whose p99 stayed under one frame interval (and, in real time, kept the rate).
    pub mixers_kept_up: usize,
    /// Real time: late ticks of each mixer (a tick composed more than one frame interval after
    /// its due time), in mixer order.
    pub late_ticks: Vec<u64>,
    /// GPU backend: what the process's batch renderer did in this configuration.
    pub gpu: Option<GpuFigures>,
    /// Users pushing audio into each mixer (0: no audio track).
    pub audio_users: usize,
    /// Time of one `push_audio` call, µs (when users push audio).
    pub push_audio_us: Option<LatencyStats>,
    /// FFmpeg in the same run, when asked.
    pub ffmpeg: Option<FfmpegResult>,
}

impl ConfigResult {
    /// Our CPU ms per frame over FFmpeg's compose CPU ms per frame.
    pub fn cpu_ratio_vs_ffmpeg(&self) -> Option<f64> {
        if self.encoder != "none" {
            // whole pipeline: our wall per mixer over FFmpeg's file→file wall
            let f = self.ffmpeg.as_ref()?;
            let ours = self.frames_per_mixer as f64 / self.min_mixer_fps.max(1e-9);
            return f.ultrafast_wall_s.filter(|w| *w > 0.0).map(|w| ours / w);
        }
        self.ffmpeg
            .as_ref()
            .filter(|f| f.comp_cpu_ms_per_frame > 0.0)
            .map(|f| self.cpu_ms_per_frame / f.comp_cpu_ms_per_frame)
    }
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Report format version.
    pub version: u32,
    /// When it ran (RFC 3339-ish, UTC seconds since epoch).
    pub unix_time: u64,
    /// `nproc`.
    pub cpus: usize,
    /// CPU model.
    pub cpu_model: String,
    /// The capacity figure per (workload, backend) in real-time sweeps: the largest mixer count
    /// at which every mixer kept up.
    pub capacity: Vec<Capacity>,
    /// Every configuration.
    pub results: Vec<ConfigResult>,
}

/// Capacity of one (workload, backend) real-time sweep.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capacity {
    /// Workload.
    pub workload: String,
    /// Backend.
    pub backend: String,
    /// Largest swept mixer count at which all mixers kept up (0 if none did).
    pub mixers: usize,
}

/// Computes the capacity figures from real-time results.
pub fn capacities(results: &[ConfigResult]) -> Vec<Capacity> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in results.iter().filter(|r| r.realtime) {
        let k = (r.workload.clone(), r.backend.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(w, b)| {
            let mixers = results
                .iter()
                .filter(|r| {
                    r.realtime && r.workload == w && r.backend == b && r.mixers_kept_up == r.mixers
                })
                .map(|r| r.mixers)
                .max()
                .unwrap_or(0);
            Capacity {
                workload: w,
                backend: b,
                mixers,
            }
        })
        .collect()
}

/// Peak-RSS sampler: reads VmRSS every 20 ms while alive.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(rss_kib()));
        let (s, p) = (stop.clone(), peak_kib.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            stop,
            peak_kib,
            handle: Some(handle),
        }
    }
    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak_kib.load(Ordering::Relaxed).max(rss_kib()) as f64 / 1024.0
    }
}

/// CPU seconds (user + sys) of this process, or of its waited-for children.
pub fn cpu_seconds(children: bool) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other invariants
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let who = if children {
            libc::RUSAGE_CHILDREN
        } else {
            libc::RUSAGE_SELF
        };
        if libc::getrusage(who, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// What a configuration's mixer threads measured, before it becomes a [`ConfigResult`].
struct Measured {
    wall: f64,
    cpu: f64,
    peak_mib: f64,
    latencies: Vec<f64>,
    min_fps: f64,
    kept: usize,
    adapter: String,
    encoder: String,
    late_ticks: Vec<u64>,
    gpu: Option<GpuFigures>,
}

impl Measured {
    fn into_result(self, w: &Workload, mixers: usize, frames: u64, realtime: bool) -> ConfigResult {
        let total = frames * mixers as u64;
        ConfigResult {
            workload: w.name.to_string(),
            backend: if self.adapter.starts_with("cpu") {
                "cpu"
            } else {
                "gpu"
            }
            .into(),
            adapter: self.adapter,
            encoder: self.encoder,
            mixers,
            realtime,
            target_fps: w.fps,
            frames_per_mixer: frames,
            output_fps: total as f64 / self.wall.max(1e-9),
            min_mixer_fps: if self.min_fps.is_finite() {
                self.min_fps
            } else {
                0.0
            },
            latency_ms: LatencyStats::of(&self.latencies),
            cpu_ms_per_frame: self.cpu * 1e3 / total.max(1) as f64,
            peak_rss_mib: self.peak_mib,
            mixers_kept_up: self.kept,
            late_ticks: self.late_ticks,
            gpu: self.gpu,
            audio_users: 0,
            push_audio_us: None,
            ffmpeg: None,
        }
    }
}

/// The batch renderer counters of the run's services, when `backend` is the GPU.
fn renderer_stats(
    backend: Backend,
    services: &cloudmixer::pipeline::Services,
) -> Option<cloudmixer::compose::gpu::batch::RendererStats> {
    use cloudmixer::compose::gpu::AdapterPolicy;
    (backend == Backend::Gpu)
        .then(|| services.gpu().get(AdapterPolicy::AllowSoftware).ok())
        .flatten()
        .map(|r| r.stats())
}

/// Runs one configuration (compose only), through the compositor the mixer uses
/// ([`compose::create_pipelined_on`]: the GPU backend is one batch renderer for all). Offline,
/// each mixer keeps the compositor's depth of frames in flight; in real time each tick is
/// submitted at its due time and received before the next. Latency = submit → picture received.
pub fn run_config(
    w: &Workload,
    sources: &Arc<SyntheticSources>,
    backend: Backend,
    mixers: usize,
    frames: u64,
    realtime: bool,
) -> Result<ConfigResult, String> {
    use cloudmixer::compose::{OutPlanes, OutputFormat};
    use cloudmixer::model::frame::I420Image;
    let layout = Arc::new(w.layout());
    // create every compositor before starting the clock (GPU setup is not per frame); all
    // on one batch renderer, as the rooms of a host
    let services = cloudmixer::pipeline::Services::new();
    let mut comps = Vec::with_capacity(mixers);
    for _ in 0..mixers {
        comps.push(
            compose::create_pipelined_on(
                services.gpu(),
                backend,
                w.width,
                w.height,
                OutputFormat::I420,
            )
            .map_err(|e| e.to_string())?,
        );
    }
    let adapter = comps.first().map(|c| c.describe()).unwrap_or_default();
    let interval = Duration::from_secs_f64(1.0 / w.fps as f64);
    let w_fps = w.fps.max(1) as u64;
    let (cw, ch) = (w.width, w.height);
    let barrier = Arc::new(Barrier::new(mixers + 1));
    let gpu0 = renderer_stats(backend, &services);
    let rss = RssSampler::start();
    let cpu0 = cpu_seconds(false);
    let mut handles = Vec::with_capacity(mixers);
    for mut comp in comps {
        let (layout, sources, barrier) = (layout.clone(), sources.clone(), barrier.clone());
        handles.push(std::thread::spawn(
            move || -> Result<(Vec<f64>, Duration, u64), String> {
                let mut fr: Frames = HashMap::new();
                let mut out = I420Image::new(cw, ch);
                // text, placeholders, rotation: resolved as the mixer does, inside the timing
                let mut scene = Scene::new();
                let wall0 = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let mut lat = Vec::with_capacity(frames as usize);
                let mut sent: std::collections::VecDeque<Instant> = Default::default();
                let mut late_ticks = 0u64;
                let depth = if realtime { 1 } else { comp.depth() };
                barrier.wait();
                let start = Instant::now();
                let mut receive = |comp: &mut Box<dyn compose::Pipelined>,
                                   sent: &mut std::collections::VecDeque<Instant>|
                 -> Result<(), String> {
                    comp.receive(&mut OutPlanes::i420(&mut out))
                        .map_err(|e| e.to_string())?;
                    let t = sent.pop_front().expect("one per frame in flight");
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    Ok(())
                };
                for n in 0..frames {
                    let due = start + interval.mul_f64(n as f64);
                    if realtime {
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                    sources.frames_at(n, &mut fr);
                    let t = Instant::now();
                    let wall_ms = wall0 + (n * 1000 / w_fps) as i64;
                    let (l, f) = scene.resolve(&layout, &fr, wall_ms);
                    comp.submit(l, f).map_err(|e| e.to_string())?;
                    sent.push_back(t);
                    while comp.in_flight() >= depth {
                        receive(&mut comp, &mut sent)?;
                    }
                    if realtime && Instant::now() > due + interval {
                        late_ticks += 1;
                    }
                }
                while comp.in_flight() > 0 {
                    receive(&mut comp, &mut sent)?;
                }
                Ok((lat, start.elapsed(), late_ticks))
            },
        ));
    }
    barrier.wait();
    let wall0 = Instant::now();
    let mut all = Vec::new();
    let mut min_fps = f64::INFINITY;
    let mut kept = 0;
    let mut err = None;
    let mut lates = Vec::with_capacity(mixers);
    for h in handles {
        match h.join() {
            Ok(Ok((lat, el, late))) => {
                let fps = frames as f64 / el.as_secs_f64().max(1e-9);
                min_fps = min_fps.min(fps);
                let st = LatencyStats::of(&lat);
                let rate_ok = !realtime || (late == 0 && fps >= w.fps as f64 * 0.99);
                if st.p99 < interval.as_secs_f64() * 1e3 && rate_ok {
                    kept += 1;
                }
                lates.push(late);
                all.extend(lat);
            }
            Ok(Err(e)) => err = Some(e),
            Err(_) => err = Some("a mixer thread panicked".into()),
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(false) - cpu0;
    let peak = rss.finish();
    if let Some(e) = err {
        return Err(e);
    }
    let gpu = match (gpu0, renderer_stats(backend, &services)) {
        (Some(a), Some(b)) => Some(GpuFigures::between(a, b, mixers, frames)),
        _ => None,
    };
    Ok(Measured {
        wall,
        cpu,
        peak_mib: peak,
        latencies: all,
        min_fps,
        kept,
        adapter,
        encoder: "none".into(),
        late_ticks: if realtime { lates } else { Vec::new() },
        gpu,
    }
    .into_result(w, mixers, frames, realtime))
}

/// How a configuration with encoding gets its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Synthetic decoded frames pushed through [`cloudmixer::pipeline::Mixer::push_video`].
    Synthetic,
    /// The workload's real clips decoded by FFmpeg ([`cloudmixer::record::record`]).
    Decode,
}

/// Runs one configuration through the whole recording pipeline (compose, encode, mux into a
/// temporary folder). `encoder`: `None` = probe hardware encoders, then libx264.
/// Offline (libx264 `ultrafast`): latency samples are the per-tick compose hand-off times
/// (synthetic feed only). `realtime` (synthetic feed, the default encoder settings, as
/// `cloudmixer record --realtime` runs): each tick's frames are pushed at its time, and a mixer
/// is kept when it had no late tick and wrote every frame; latency samples are each mixer's
/// worst tick lateness.
/// `audio_users`: that many users each push 10 ms frames of 48 kHz mono audio (a tone of
/// their own) per 10 ms of recording, timed per call; 0 = no audio track at all.
#[allow(clippy::too_many_arguments)]
pub fn run_encode_config(
    w: &Workload,
    sources: &Arc<SyntheticSources>,
    backend: Backend,
    mixers: usize,
    frames: u64,
    encoder: Option<&str>,
    feed: Feed,
    clips: &Path,
    audio_users: usize,
    realtime: bool,
) -> Result<ConfigResult, String> {
    use cloudmixer::media::video_enc::EncoderSettings;
    use cloudmixer::pipeline::{Mixer, MixerSettings};
    if realtime && feed == Feed::Decode {
        return Err("--decode with --realtime: use `cloudmixer record --realtime` per room".into());
    }
    // one folder per run: runs in one process (tests, sweeps) never remove each other's files
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cloudmixer-bench-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // every mixer of the run on one set of services (one batch renderer), as a host's rooms
    let services = cloudmixer::pipeline::Services::new();
    let settings = if realtime {
        MixerSettings {
            backend,
            encoder: EncoderSettings {
                encoder: encoder.map(str::to_string),
                ..Default::default()
            },
            audio: audio_users > 0,
            services: Some(services.clone()),
            ..MixerSettings::default()
        }
    } else {
        MixerSettings {
            backend,
            encoder: EncoderSettings {
                encoder: encoder.map(str::to_string),
                preset: "ultrafast".into(),
                threads: 0,
            },
            audio: audio_users > 0,
            services: Some(services.clone()),
            ..MixerSettings::offline()
        }
    };
    // one second of each user's tone; each push copies 10 ms of it into a new frame, as a
    // server hands over a freshly decoded frame (the copy is not timed)
    let tones: Arc<Vec<Vec<i16>>> = Arc::new(
        (0..audio_users)
            .map(|u| {
                let f = 200.0 + 37.0 * u as f64;
                (0..48_000)
                    .map(|i| {
                        (3000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 48_000.0).sin())
                            as i16
                    })
                    .collect()
            })
            .collect(),
    );
    if feed == Feed::Decode {
        for (s, _) in &w.cells {
            if !clips.join(s.clip).exists() {
                return Err(format!(
                    "{}: missing (--decode reads the workload's clips; pass --clips DIR)",
                    clips.join(s.clip).display()
                ));
            }
        }
    }
    let barrier = Arc::new(Barrier::new(mixers + 1));
    let gpu0 = renderer_stats(backend, &services);
    let rss = RssSampler::start();
    let cpu0 = cpu_seconds(false);
    let mut handles = Vec::new();
    for i in 0..mixers {
        let cfg = cloudmixer::model::config::MixerConfig::from_value(
            w.config_json(&format!("/bench_{}_{i}.mp4", w.name)),
        )
        .map_err(|e| e.to_string())?;
        let (settings, barrier, sources, dir, tones) = (
            settings.clone(),
            barrier.clone(),
            sources.clone(),
            dir.clone(),
            tones.clone(),
        );
        let inputs: Vec<(String, PathBuf)> = w
            .cells
            .iter()
            .map(|(s, _)| (s.camid.to_string(), clips.join(s.clip)))
            .collect();
        let fps = w.fps;
        #[allow(clippy::type_complexity)]
        handles.push(std::thread::spawn(
            move || -> Result<(Vec<f64>, Vec<f64>, Duration, String, String, u64), String> {
                barrier.wait();
                let start = Instant::now();
                if feed == Feed::Decode {
                    let opts = cloudmixer::record::RecordOptions {
                        config: cfg,
                        inputs,
                        audio: vec![],
                        pictures: vec![],
                        updates: vec![],
                        storage: dir,
                        duration: Some(Duration::from_secs_f64(frames as f64 / fps as f64)),
                        settings,
                        events: None,
                    };
                    let s = cloudmixer::record::record(opts, |_| {}).map_err(|e| e.to_string())?;
                    return Ok((vec![], vec![], start.elapsed(), s.encoder, s.backend, 0));
                }
                let mut m =
                    Mixer::create_with(cfg, cloudmixer::output::Storage::new(dir), settings)
                        .map_err(|e| e.to_string())?;
                let (enc, back) = (m.encoder_name().to_string(), m.backend_name().to_string());
                let mut fr: Frames = HashMap::new();
                let mut last: HashMap<String, u64> = HashMap::new();
                let mut lat = Vec::with_capacity(frames as usize);
                let mut push_us = Vec::new();
                let mut audio_k = 0u64; // next 10 ms audio frame of every user
                let clock0 = m.clock();
                let t0 = Instant::now();
                for n in 0..frames {
                    if realtime {
                        // this tick's frames arrive at its time
                        let due = t0 + cloudmixer::model::time::tick_time(fps, n);
                        if let Some(d) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                    }
                    let next = cloudmixer::model::time::tick_time(fps, n + 1);
                    while Duration::from_millis(10 * audio_k) < next && !tones.is_empty() {
                        let cap = clock0 + Duration::from_millis(10 * audio_k);
                        let at = (audio_k % 100) as usize * 480;
                        for (u, tone) in tones.iter().enumerate() {
                            let f = cloudmixer::model::audio::AudioFrame::i16_interleaved(
                                tone[at..at + 480].to_vec(),
                                48_000,
                                1,
                            )
                            .map_err(|e| e.to_string())?
                            .with_capture(cap);
                            let user = format!("U{u}");
                            let t = Instant::now();
                            m.push_audio(&user, f).map_err(|e| e.to_string())?;
                            push_us.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                        audio_k += 1;
                    }
                    sources.frames_at(n, &mut fr);
                    for (id, f) in &fr {
                        if last.get(id) != Some(&f.id()) {
                            last.insert(id.clone(), f.id());
                            // a server hands each decoded frame over once: one copy, as in production
                            m.push_video(id, (**f).clone()).map_err(|e| e.to_string())?;
                        }
                    }
                    if !realtime {
                        let t = Instant::now();
                        m.advance_frames(n + 1).map_err(|e| e.to_string())?;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                let mut late = 0;
                if realtime {
                    m.stop_after(cloudmixer::model::time::tick_time(fps, frames));
                    m.wait().map_err(|e| e.to_string())?;
                    let st = m.stats();
                    late = st.late_ticks;
                    lat.push(st.max_tick_late_us as f64 / 1e3);
                    if st.ticks < frames {
                        return Err(format!("a mixer made {} of {frames} ticks", st.ticks));
                    }
                }
                m.destroy().map_err(|e| e.to_string())?;
                Ok((lat, push_us, t0.elapsed(), enc, back, late))
            },
        ));
    }
    barrier.wait();
    let wall0 = Instant::now();
    let (mut all, mut min_fps, mut err) = (Vec::new(), f64::INFINITY, None);
    let mut pushes = Vec::new();
    let (mut enc, mut back) = (String::new(), String::new());
    let mut lates = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((lat, push, el, e, b, late))) => {
                lates.push(late);
                min_fps = min_fps.min(frames as f64 / el.as_secs_f64().max(1e-9));
                all.extend(lat);
                pushes.extend(push);
                (enc, back) = (e, b);
            }
            Ok(Err(e)) => err = Some(e),
            Err(_) => err = Some("a mixer thread panicked".into()),
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(false) - cpu0;
    let peak = rss.finish();
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(e) = err {
        return Err(e);
    }
    let mut r = Measured {
        wall,
        cpu,
        peak_mib: peak,
        latencies: all,
        min_fps,
        kept: if realtime {
            lates.iter().filter(|&&l| l == 0).count()
        } else {
            mixers
        },
        late_ticks: if realtime { lates } else { Vec::new() },
        gpu: match (gpu0, renderer_stats(backend, &services)) {
            (Some(a), Some(b)) => Some(GpuFigures::between(a, b, mixers, frames)),
            _ => None,
        },
        adapter: back,
        encoder: if feed == Feed::Decode {
            format!("{enc} (+decode)")
        } else {
            enc
        },
    }
    .into_result(w, mixers, frames, realtime);
    r.audio_users = audio_users;
    r.push_audio_us = (!pushes.is_empty()).then(|| LatencyStats::of(&pushes));
    Ok(r)
}

/// The FFmpeg compose command of a workload, as a skilled FFmpeg user writes it (the graphs of
/// the peer baseline): `variant` is `null` (discard raw frames), `decode` (demux + decode only)
/// or `ultrafast` (libx264 into `out`).
pub fn ffmpeg_args(w: &Workload, clips: &Path, variant: &str, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostats", "-loglevel", "error", "-y"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (s, _) in &w.cells {
        a.push("-i".into());
        a.push(clips.join(s.clip).display().to_string());
    }
    if variant == "decode" {
        for i in 0..w.cells.len() {
            a.push("-map".into());
            a.push(format!("{i}:v"));
        }
        a.extend(["-f", "null", "-"].map(String::from));
        return a;
    }
    let fit = |i: usize, cw: u32, ch: u32, pw: u32, ph: u32, py: &str, fps: bool| {
        format!(
            "[{i}:v]{}scale={cw}:{ch}:force_original_aspect_ratio=decrease:force_divisible_by=2,pad={pw}:{ph}:(ow-iw)/2:{py}",
            if fps { format!("fps={},", w.fps) } else { String::new() }
        )
    };
    let (graph, cfr) = match w.name {
        "W1" => (
            format!(
                "{}[a];{}[b];[a][b]hstack=inputs=2[out]",
                fit(0, 640, 360, 640, 720, "180+(360-ih)/2", true),
                fit(1, 640, 360, 640, 720, "180+(360-ih)/2", true)
            ),
            false,
        ),
        "W2" => (
            format!(
                "{}[a];{}[b];[a][b]overlay=x=880:y=495:eval=init[out]",
                fit(0, 1280, 720, 1280, 720, "(oh-ih)/2", true),
                fit(1, 400, 225, 400, 225, "(oh-ih)/2", true)
            ),
            false,
        ),
        _ => {
            // generic: every cell padded to its rect, then one xstack with explicit positions
            let mut g = String::new();
            let mut lay = Vec::new();
            for (i, (_, r)) in w.cells.iter().enumerate() {
                g.push_str(&fit(i, r.w, r.h, r.w, r.h, "(oh-ih)/2", false));
                g.push_str(&format!("[v{i}];"));
                lay.push(format!("{}_{}", r.x, r.y));
            }
            for i in 0..w.cells.len() {
                g.push_str(&format!("[v{i}]"));
            }
            g.push_str(&format!(
                "xstack=inputs={}:layout={}[out]",
                w.cells.len(),
                lay.join("|")
            ));
            (g, true)
        }
    };
    a.push("-filter_complex".into());
    a.push(graph);
    a.extend(["-map", "[out]"].map(String::from));
    if cfr {
        a.extend(["-fps_mode", "cfr", "-r"].map(String::from));
        a.push(w.fps.to_string());
    }
    a.extend(["-frames:v".to_string(), w.frames.to_string()]);
    match variant {
        "ultrafast" => {
            a.extend(
                [
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-crf",
                    "23",
                    "-pix_fmt",
                    "yuv420p",
                ]
                .map(String::from),
            );
            a.push(out.display().to_string());
        }
        _ => a.extend(["-c:v", "rawvideo", "-f", "null", "-"].map(String::from)),
    }
    a
}

fn time_ffmpeg(args: &[String], runs: usize) -> Result<(f64, f64), String> {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..runs {
        let c0 = cpu_seconds(true);
        let t = Instant::now();
        let st = Command::new("ffmpeg")
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
        if !st.success() {
            return Err(format!("ffmpeg failed ({st}): ffmpeg {}", args.join(" ")));
        }
        walls.push(t.elapsed().as_secs_f64());
        cpus.push(cpu_seconds(true) - c0);
    }
    Ok((LatencyStats::of(&walls).p50, LatencyStats::of(&cpus).p50))
}

/// Runs FFmpeg's compose (null) and decode commands `runs` times each for a workload.
pub fn run_ffmpeg(
    w: &Workload,
    clips: &Path,
    runs: usize,
    encode: bool,
) -> Result<FfmpegResult, String> {
    for (s, _) in &w.cells {
        if !clips.join(s.clip).exists() {
            return Err(format!(
                "{}: missing (the FFmpeg comparison decodes the workload's clips; pass --clips DIR)",
                clips.join(s.clip).display()
            ));
        }
    }
    let null = ffmpeg_args(w, clips, "null", Path::new("-"));
    let dec = ffmpeg_args(w, clips, "decode", Path::new("-"));
    let (wall, cpu) = time_ffmpeg(&null, runs)?;
    let (_, dcpu) = time_ffmpeg(&dec, runs)?;
    let ultrafast_wall_s = if encode {
        let out = std::env::temp_dir().join(format!(
            "cloudmixer-bench-ffmpeg-{}.mp4",
            std::process::id()
        ));
        let r = time_ffmpeg(&ffmpeg_args(w, clips, "ultrafast", &out), runs)?.0;
        let _ = std::fs::remove_file(&out);
        Some(r)
    } else {
        None
    };
    Ok(FfmpegResult {
        ultrafast_wall_s,
        command: format!(
            "ffmpeg {}",
            null.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        wall_s: wall,
        cpu_s: cpu,
        decode_cpu_s: dcpu,
        comp_cpu_ms_per_frame: ((cpu - dcpu) * 1e3 / w.frames as f64).max(0.0),
        out_fps: w.frames as f64 / wall.max(1e-9),
    })
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The table printed on stdout.
pub fn table(results: &[ConfigResult]) -> String {
    let mut s = format!(
        "{:<4} {:<4} {:>6} {:<8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6} {:>9}\n",
        "work",
        "back",
        "mixers",
        "mode",
        "out_fps",
        "min_fps",
        "p50_ms",
        "p99_ms",
        "cpu_ms/f",
        "rss_MiB",
        "kept",
        "vs_ffmpeg"
    );
    for r in results {
        s.push_str(&format!(
            "{:<4} {:<4} {:>6} {:<8} {:>9.1} {:>8.1} {:>8.2} {:>8.2} {:>9.3} {:>8.0} {:>6} {:>9}\n",
            r.workload,
            r.backend,
            r.mixers,
            if r.realtime { "realtime" } else { "offline" },
            r.output_fps,
            r.min_mixer_fps,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.cpu_ms_per_frame,
            r.peak_rss_mib,
            format!("{}/{}", r.mixers_kept_up, r.mixers),
            r.cpu_ratio_vs_ffmpeg()
                .map_or("-".to_string(), |x| format!("{x:.2}x")),
        ));
        if r.late_ticks.iter().any(|&l| l > 0) {
            s.push_str(&format!(
                "     late ticks per mixer: {}\n",
                r.late_ticks
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if let Some(g) = &r.gpu {
            s.push_str(&format!(
                "     gpu: {} submits for {} frames ({:.3} per tick, largest batch {}), staged {:.2} MB up + {:.2} MB down per frame, {:.1} MiB staging per mixer\n",
                g.submits, g.frames, g.submits_per_tick, g.max_batch, g.upload_mb_per_frame, g.readback_mb_per_frame, g.staging_mib_per_mixer
            ));
        }
        if let Some(p) = &r.push_audio_us {
            s.push_str(&format!(
                "     audio: {} users, push_audio p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs ({} pushes)\n",
                r.audio_users, p.p50, p.p99, p.max, p.n
            ));
        }
        if let Some(f) = &r.ffmpeg {
            s.push_str(&format!(
                "     ffmpeg: {:.2} s wall, {:.2} s cpu, decode {:.2} s cpu -> compose {:.3} cpu_ms/f, {:.1} fps\n",
                f.wall_s, f.cpu_s, f.decode_cpu_s, f.comp_cpu_ms_per_frame, f.out_fps
            ));
            if let Some(u) = f.ultrafast_wall_s {
                s.push_str(&format!(
                    "     ffmpeg file->file libx264 ultrafast: {u:.2} s wall; ours ({}): {:.2} s (vs_ffmpeg = wall ratio)\n",
                    r.encoder,
                    r.frames_per_mixer as f64 / r.min_mixer_fps.max(1e-9)
                ));
            }
        }
    }
    s
}

/// Writes a PNG plot: output fps and p99 latency against the number of mixers, one line per
/// (workload, backend).
pub fn plot(results: &[ConfigResult], path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    ensure_font()?;
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(600);
    let mut series: Vec<(String, Vec<&ConfigResult>)> = Vec::new();
    for r in results {
        let k = format!("{} {}", r.workload, r.backend);
        match series.iter_mut().find(|(n, _)| *n == k) {
            Some((_, v)) => v.push(r),
            None => series.push((k, vec![r])),
        }
    }
    let max_m = results.iter().map(|r| r.mixers).max().unwrap_or(1) as f64;
    type Metric = fn(&ConfigResult) -> f64;
    let charts: [(&str, &str, Metric, _); 2] = [
        (
            "Output frames/s (all mixers)",
            "frames/s",
            |r| r.output_fps,
            &left,
        ),
        ("p99 compose latency", "ms", |r| r.latency_ms.p99, &right),
    ];
    for (title, unit, f, area) in charts {
        let max_y = results.iter().map(f).fold(0.0, f64::max).max(1e-3) * 1.1;
        let mut ch = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_m * 1.05, 0.0..max_y)
            .map_err(|e| e.to_string())?;
        ch.configure_mesh()
            .x_desc("concurrent mixers")
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        if unit == "ms" {
            // one frame interval per workload rate
            for fps in results
                .iter()
                .map(|r| r.target_fps)
                .collect::<std::collections::BTreeSet<_>>()
            {
                let y = 1000.0 / fps as f64;
                if y <= max_y {
                    ch.draw_series(LineSeries::new([(0.0, y), (max_m * 1.05, y)], RED.mix(0.4)))
                        .map_err(|e| e.to_string())?
                        .label(format!("{fps} fps budget"))
                        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.mix(0.4)));
                }
            }
        }
        for (i, (name, rs)) in series.iter().enumerate() {
            const COLORS: [RGBColor; 6] = [
                RGBColor(31, 119, 180),
                RGBColor(214, 39, 40),
                RGBColor(44, 160, 44),
                RGBColor(255, 127, 14),
                RGBColor(148, 103, 189),
                RGBColor(23, 190, 207),
            ];
            let color = COLORS[i % COLORS.len()].to_rgba();
            let pts: Vec<(f64, f64)> = rs.iter().map(|r| (r.mixers as f64, f(r))).collect();
            ch.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn ensure_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let env = std::env::var("CLOUDMIXER_FONT").unwrap_or_default();
        let candidates = [
            env.as_str(),
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        ];
        let bytes = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or("no DejaVuSans.ttf found for plot labels (install fonts-dejavu-core)")?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
            .map_err(|_| "DejaVuSans.ttf is not a usable font".to_string())
    })
    .clone()
}

/// Resolves `--workload`: W1, W2, W3, `all`, or a config JSON file (its sources are synthesised
/// at 1280x720 @30 unless the camid names a peer camera).
pub fn workloads(arg: &str) -> Result<Vec<Workload>, String> {
    if arg.eq_ignore_ascii_case("all") {
        return Ok(Workload::all());
    }
    if let Some(w) = Workload::by_name(arg) {
        return Ok(vec![w]);
    }
    let p = PathBuf::from(arg);
    if !p.exists() {
        return Err(format!(
            "--workload {arg}: not W1, W2, W3, all, or an existing config file"
        ));
    }
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{arg}: {e}"))?;
    let cfg = cloudmixer::model::config::MixerConfig::from_json(&text)
        .map_err(|e| format!("{arg}: {e}"))?;
    let cells = cfg
        .layout
        .items()
        .iter()
        .filter_map(|it| {
            let id = it.kind.source_id()?;
            let spec = cloudmixer::testkit::workloads::CAMS
                .iter()
                .find(|c| c.camid == id)
                .copied()
                .unwrap_or(cloudmixer::testkit::workloads::SourceSpec {
                    camid: Box::leak(id.to_string().into_boxed_str()),
                    width: 1280,
                    height: 720,
                    fps: 30,
                    clip: "cam4_1280x720_30.mp4",
                });
            Some((spec, it.rect))
        })
        .collect();
    Ok(vec![Workload {
        name: Box::leak(
            p.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
                .into_boxed_str(),
        ),
        width: cfg.output.width,
        height: cfg.output.height,
        fps: cfg.output.fps,
        frames: cfg.output.fps * 10,
        cells,
        extra: cfg
            .layout
            .items()
            .iter()
            .filter(|it| it.kind.source_id().is_none())
            .cloned()
            .collect(),
    }])
}

/// Flags of `cloudmixer bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// W1, W2, W3, all, or a config JSON file.
    #[arg(long, default_value = "all")]
    pub workload: String,
    /// cpu, gpu or both.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Concurrent mixers: N or a sweep N,N,...
    #[arg(long, default_value = "1")]
    pub mixers: String,
    /// Frames per mixer (default: the workload's 10 s).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Tick at the output rate instead of as fast as possible; reports the capacity.
    #[arg(long)]
    pub realtime: bool,
    /// none (compose only), libx264 or auto (hardware first): with an encoder every mixer runs
    /// the whole recording pipeline into a temporary folder — offline with x264 `ultrafast`,
    /// or with --realtime at the default encoder settings, as `record --realtime` runs (the
    /// capacity: how many rooms this box records in real time).
    #[arg(long, default_value = "none")]
    pub encode: String,
    /// Decode the workload's real clips (from --clips) instead of synthetic frames (needs
    /// --encode; this is `cloudmixer record`, file to file).
    #[arg(long)]
    pub decode: bool,
    /// Folder with the workload clips (cam1_640x480_15.mp4 …), for --decode and --vs-ffmpeg.
    #[arg(long, default_value = "/tmp/cloudmixer-peers/fixtures")]
    pub clips: PathBuf,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a PNG plot (fps and p99 against mixers).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Run the equivalent FFmpeg commands in the same run and print our/FFmpeg ratios.
    #[arg(long)]
    pub vs_ffmpeg: bool,
    /// Sources never change after the first frame (measures compose + readback without the
    /// per-frame source uploads).
    #[arg(long)]
    pub frozen_sources: bool,
    /// Runs of each FFmpeg command (median taken).
    #[arg(long, default_value_t = 3)]
    pub ffmpeg_runs: usize,
    /// With --encode: users pushing 10 ms frames of 48 kHz audio into each mixer (N, or a list
    /// N,N,… measured side by side in this run); 0 = no audio track, as before audio existed.
    #[arg(long, default_value = "0")]
    pub audio: String,
}

/// The whole-pipeline runner ([`run_encode_config`]) as a value, so that builds which never
/// encode (e.g. `examples/bench_sweep.rs`) do not link FFmpeg.
pub type EncodeRunner = fn(
    &Workload,
    &Arc<SyntheticSources>,
    Backend,
    usize,
    u64,
    Option<&str>,
    Feed,
    &Path,
    usize,
    bool,
) -> Result<ConfigResult, String>;

/// Runs `cloudmixer bench` with parsed flags: prints the table, writes JSON and plot.
pub fn run(a: BenchArgs) -> Result<(), String> {
    run_with(a, Some(run_encode_config))
}

/// [`run`] with an optional encode runner (`None`: `--encode` other than `none` is refused).
pub fn run_with(a: BenchArgs, encode: Option<EncodeRunner>) -> Result<(), String> {
    let workloads = workloads(&a.workload)?;
    let backends: Vec<Backend> = match a.backend.as_str() {
        "cpu" => vec![Backend::Cpu],
        "gpu" => vec![Backend::Gpu],
        "both" => vec![Backend::Cpu, Backend::Gpu],
        o => return Err(format!("--backend {o}: use cpu, gpu or both")),
    };
    let sweep = parse_sweep(&a.mixers)?;
    let encoder: Option<Option<&str>> = match a.encode.as_str() {
        "none" => None,
        "auto" => Some(None),
        "libx264" => Some(Some("libx264")),
        o => return Err(format!("--encode {o}: use none, libx264 or auto")),
    };
    if a.decode && encoder.is_none() {
        return Err(
            "--decode runs the whole recording pipeline: add --encode libx264 or auto".into(),
        );
    }
    let audio_counts: Vec<usize> = a
        .audio
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("--audio {:?}: use N or N,N,…", a.audio))
        })
        .collect::<Result<_, _>>()?;
    if encoder.is_none() && audio_counts.iter().any(|&n| n > 0) {
        return Err("--audio mixes and encodes audio: add --encode libx264 or auto".into());
    }
    let mut results = Vec::new();
    for w in &workloads {
        let mut src = SyntheticSources::new(w);
        src.frozen = a.frozen_sources;
        let sources = Arc::new(src);
        let ff = if a.vs_ffmpeg {
            eprintln!(
                "{}: timing ffmpeg ({} runs each of compose and decode)…",
                w.name, a.ffmpeg_runs
            );
            Some(run_ffmpeg(
                w,
                &a.clips,
                a.ffmpeg_runs.max(1),
                encoder.is_some(),
            )?)
        } else {
            None
        };
        for &b in &backends {
            for &m in &sweep {
                let frames = a.frames.unwrap_or(w.frames as u64);
                eprintln!(
                    "{} {:?} x{m} {}: {frames} frames…",
                    w.name,
                    b,
                    if a.realtime { "realtime" } else { "offline" }
                );
                match encoder {
                    None => {
                        let mut r = run_config(w, &sources, b, m, frames, a.realtime)?;
                        r.ffmpeg = ff.clone();
                        results.push(r);
                    }
                    Some(enc) => {
                        let feed = if a.decode {
                            Feed::Decode
                        } else {
                            Feed::Synthetic
                        };
                        let runner = encode.ok_or(
                            "--encode: this build has no encoder (use `cloudmixer bench`)",
                        )?;
                        for &users in &audio_counts {
                            let mut r = runner(
                                w, &sources, b, m, frames, enc, feed, &a.clips, users, a.realtime,
                            )?;
                            r.ffmpeg = ff.clone();
                            results.push(r);
                        }
                    }
                }
            }
        }
    }
    print!("{}", table(&results));
    let report = Report {
        version: 1,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default(),
        capacity: capacities(&results),
        results,
    };
    for c in &report.capacity {
        println!(
            "capacity {} {}: {} mixers keep {} fps",
            c.workload,
            c.backend,
            c.mixers,
            report
                .results
                .iter()
                .find(|r| r.workload == c.workload)
                .map_or(0, |r| r.target_fps)
        );
    }
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.plot {
        plot(&report.results, p).map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_parsing() {
        assert_eq!(parse_sweep("1,8, 32").unwrap(), vec![1, 8, 32]);
        assert_eq!(parse_sweep("4").unwrap(), vec![4]);
        assert_eq!(
            parse_sweep("1,x").unwrap_err(),
            "--mixers: 'x' is not a number"
        );
        assert_eq!(
            parse_sweep("0").unwrap_err(),
            "--mixers: 0 is out of range (1..=4096)"
        );
    }

    fn result(backend: &str, mixers: usize, kept: usize, realtime: bool) -> ConfigResult {
        ConfigResult {
            workload: "W3".into(),
            backend: backend.into(),
            adapter: "x".into(),
            encoder: "none".into(),
            mixers,
            realtime,
            target_fps: 30,
            frames_per_mixer: 10,
            output_fps: 30.0 * mixers as f64,
            min_mixer_fps: 30.0,
            latency_ms: LatencyStats::of(&[1.0, 2.0]),
            cpu_ms_per_frame: 2.0,
            peak_rss_mib: 10.0,
            mixers_kept_up: kept,
            late_ticks: vec![0; mixers],
            gpu: None,
            audio_users: 0,
            push_audio_us: None,
            ffmpeg: None,
        }
    }

    #[test]
    fn capacity_is_the_largest_count_where_all_kept_up() {
        let rs = vec![
            result("gpu", 1, 1, true),
            result("gpu", 8, 8, true),
            result("gpu", 32, 31, true),
            result("cpu", 1, 0, true),
            result("cpu", 1, 1, false),
        ];
        assert_eq!(
            capacities(&rs),
            vec![
                Capacity {
                    workload: "W3".into(),
                    backend: "gpu".into(),
                    mixers: 8
                },
                Capacity {
                    workload: "W3".into(),
                    backend: "cpu".into(),
                    mixers: 0
                },
            ]
        );
    }

    #[test]
    fn json_shape() {
        let mut r = result("cpu", 2, 2, false);
        r.ffmpeg = Some(FfmpegResult {
            command: "ffmpeg ...".into(),
            wall_s: 1.0,
            cpu_s: 2.0,
            decode_cpu_s: 1.0,
            comp_cpu_ms_per_frame: 4.0,
            out_fps: 300.0,
            ultrafast_wall_s: None,
        });
        assert_eq!(r.cpu_ratio_vs_ffmpeg(), Some(0.5));
        let rep = Report {
            version: 1,
            unix_time: 0,
            cpus: 2,
            cpu_model: "m".into(),
            capacity: capacities(&[r.clone()]),
            results: vec![r],
        };
        let v = serde_json::to_value(&rep).unwrap();
        for key in ["version", "cpus", "cpu_model", "capacity", "results"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let r0 = &v["results"][0];
        for key in [
            "workload",
            "backend",
            "adapter",
            "encoder",
            "mixers",
            "realtime",
            "output_fps",
            "latency_ms",
            "cpu_ms_per_frame",
            "peak_rss_mib",
            "mixers_kept_up",
            "ffmpeg",
        ] {
            assert!(r0.get(key).is_some(), "{key}");
        }
        assert_eq!(r0["latency_ms"]["p99"], 2.0);
        assert_eq!(r0["ffmpeg"]["comp_cpu_ms_per_frame"], 4.0);
    }

    #[test]
    fn ffmpeg_commands_follow_the_peer_graphs() {
        let clips = Path::new("/c");
        let a = ffmpeg_args(&Workload::w1(), clips, "null", Path::new("-")).join(" ");
        assert!(a.contains("[0:v]fps=15,scale=640:360:force_original_aspect_ratio=decrease:force_divisible_by=2,pad=640:720:(ow-iw)/2:180+(360-ih)/2[a]"), "{a}");
        assert!(
            a.contains("hstack=inputs=2[out]") && a.ends_with("-c:v rawvideo -f null -"),
            "{a}"
        );
        let a = ffmpeg_args(&Workload::w3(), clips, "null", Path::new("-")).join(" ");
        assert!(a.contains("xstack=inputs=9:layout=0_0|640_0|1280_0|0_360|640_360|1280_360|0_720|640_720|1280_720[out]"), "{a}");
        assert!(a.contains("-fps_mode cfr -r 30"), "{a}");
        let a = ffmpeg_args(&Workload::w2(), clips, "decode", Path::new("-")).join(" ");
        assert!(a.ends_with("-i /c/cam8_1920x1080_30.mp4 -i /c/cam7_720x1280_30.mp4 -map 0:v -map 1:v -f null -"), "{a}");
    }

    #[test]
    fn encode_smoke_run_through_the_recording_pipeline() {
        let w = Workload::w1();
        let s = Arc::new(SyntheticSources::new(&w));
        let r = run_encode_config(
            &w,
            &s,
            Backend::Cpu,
            2,
            10,
            Some("libx264"),
            Feed::Synthetic,
            Path::new("/nonexistent"),
            3,
            false,
        )
        .unwrap();
        assert_eq!(r.encoder, "libx264");
        assert_eq!(r.latency_ms.n, 20);
        assert!(r.output_fps > 0.0 && r.cpu_ms_per_frame > 0.0);
        // 10 frames cover 10/fps s: that many 10 ms frames from each of 3 users, per mixer
        let per_user = 1000usize.div_ceil(w.fps as usize);
        assert_eq!(r.audio_users, 3);
        assert_eq!(
            r.push_audio_us.as_ref().map(|p| p.n),
            Some(2 * 3 * per_user)
        );
        // --decode without the clips is a clear error
        let e = run_encode_config(
            &w,
            &s,
            Backend::Cpu,
            1,
            10,
            Some("libx264"),
            Feed::Decode,
            Path::new("/nonexistent"),
            0,
            false,
        )
        .unwrap_err();
        assert!(
            e.contains("/nonexistent/cam1_640x480_15.mp4: missing"),
            "{e}"
        );
    }

    /// `bench --realtime --encode libx264`: two real-time W1 recordings at the default encoder
    /// settings for 2 s; every tick is made, and each mixer's late ticks are reported.
    #[test]
    fn realtime_encode_counts_late_ticks_per_mixer() {
        let w = Workload::w1();
        let s = Arc::new(SyntheticSources::new(&w));
        let t = Instant::now();
        let r = run_encode_config(
            &w,
            &s,
            Backend::Cpu,
            2,
            30,
            Some("libx264"),
            Feed::Synthetic,
            Path::new("/nonexistent"),
            0,
            true,
        )
        .unwrap();
        assert!(r.realtime && r.encoder == "libx264", "{r:?}");
        assert_eq!(r.late_ticks.len(), 2);
        assert_eq!(
            r.mixers_kept_up,
            r.late_ticks.iter().filter(|&&l| l == 0).count()
        );
        // real time: 30 frames at 15 fps take 2 s, plus the latency and the finish
        assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(table(&[r]).contains("realtime"));
    }

    #[test]
    fn ten_frame_smoke_run() {
        let w = Workload::w1();
        let s = Arc::new(SyntheticSources::new(&w));
        let r = run_config(&w, &s, Backend::Cpu, 2, 10, false).unwrap();
        assert_eq!(r.latency_ms.n, 20);
        assert!(r.output_fps > 0.0 && r.cpu_ms_per_frame > 0.0 && r.peak_rss_mib > 1.0);
        assert!(table(std::slice::from_ref(&r)).contains("W1   cpu       2 offline"));
        let dir = std::env::temp_dir().join(format!("cm-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("p.png");
        plot(&[r], &png).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    }
}
