//! `cloudmixer record`: files in, one recording out (the library side of the CLI command).
//!
//! Each input file is decoded on its own thread into a small bounded queue. Offline (the
//! default) the recording runs as fast as the machine allows: for every output tick each input
//! advances to its latest frame with `pts ≤` the tick time ([`Mixer::run_offline`]), so the
//! output is exactly `round(duration × fps)` frames. With `realtime`, frames are pushed when
//! their pts comes due on the wall clock, as a live recording server would.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use serde_json::Value;
use thiserror::Error;

use crate::media::decode::{DecodeError, Decoder};
use crate::model::config::{ConfigError, MixerConfig};
use crate::model::events::{codes, MixerEvent, OutputInfo};
use crate::model::frame::VideoFrame;
use crate::model::time::{frames_for, tick_time, PaceMode};
use crate::output::Storage;
use crate::pipeline::{Mixer, MixerError, MixerSettings};

/// Decoded frames queued per input.
const INPUT_QUEUE: usize = 3;

/// Everything `record` needs.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The create config.
    pub config: MixerConfig,
    /// `(camid, file)` inputs.
    pub inputs: Vec<(String, PathBuf)>,
    /// `(resourceid, image file)`: pictures shown by layout items of type 1.
    pub pictures: Vec<(String, PathBuf)>,
    /// Live updates: applied before the first tick at or after their time.
    pub updates: Vec<(Duration, Value)>,
    /// Storage root.
    pub storage: PathBuf,
    /// Recording length; `None` = the longest input.
    pub duration: Option<Duration>,
    /// Mixer settings (mode, backend, encoder, preset…).
    pub settings: MixerSettings,
    /// Write every event as a JSON line here.
    pub events: Option<PathBuf>,
}

/// Progress, reported about every 100 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Ticks composed.
    pub frames: u64,
    /// Ticks in all.
    pub total: u64,
    /// Output frame rate.
    pub fps: u32,
    /// Wall time since the start.
    pub elapsed: Duration,
}

/// The result of a recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordSummary {
    /// Frames written.
    pub frames: u64,
    /// Output frame rate.
    pub fps: u32,
    /// Recorded duration in milliseconds.
    pub duration_ms: u64,
    /// File size in bytes (first target).
    pub bytes: u64,
    /// Absolute path (or URL) of the first target.
    pub path: String,
    /// Encoder used.
    pub encoder: String,
    /// Compositor used.
    pub backend: String,
    /// Wall time in seconds.
    pub wall_s: f64,
    /// Recorded duration / wall time.
    pub speed: f64,
    /// The final output info.
    pub output: Option<OutputInfo>,
}

impl std::fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "recorded {}", self.path)?;
        writeln!(
            f,
            "  frames:   {} ({} fps, constant frame rate)",
            self.frames, self.fps
        )?;
        writeln!(f, "  duration: {:.3} s", self.duration_ms as f64 / 1000.0)?;
        writeln!(
            f,
            "  size:     {} bytes ({:.2} MB)",
            self.bytes,
            self.bytes as f64 / 1e6
        )?;
        writeln!(f, "  encoder:  {}", self.encoder)?;
        writeln!(f, "  backend:  {}", self.backend)?;
        write!(
            f,
            "  wall:     {:.2} s, speed {:.2}x real time",
            self.wall_s, self.speed
        )
    }
}

/// A recording that failed.
#[derive(Debug, Error)]
pub enum RecordError {
    /// Bad options (inputs, updates, duration).
    #[error("{0}")]
    Usage(String),
    /// A bad config or update.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An input could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The mixer failed (see the code).
    #[error(transparent)]
    Mixer(#[from] MixerError),
    /// The events file could not be written.
    #[error("events file: {0}")]
    Io(#[from] std::io::Error),
}

impl RecordError {
    /// The vendor error code.
    pub fn code(&self) -> i32 {
        match self {
            RecordError::Usage(_) | RecordError::Config(_) | RecordError::Decode(_) => {
                codes::PARAM_ERR
            }
            RecordError::Mixer(e) => e.code(),
            RecordError::Io(_) => codes::FILE_ERR,
        }
    }
}

/// Longest container duration among the inputs.
fn longest_input(inputs: &[(String, PathBuf)]) -> Result<Duration, RecordError> {
    crate::media::decode::init_ffmpeg();
    let mut best = Duration::ZERO;
    for (_, p) in inputs {
        let ctx = ffmpeg_next::format::input(p)
            .map_err(|e| RecordError::Usage(format!("{}: {e}", p.display())))?;
        let d = ctx.duration();
        if d > 0 {
            best = best.max(Duration::from_micros(d as u64));
        }
    }
    if best.is_zero() {
        return Err(RecordError::Usage(
            "cannot tell the inputs' duration: give --duration".into(),
        ));
    }
    Ok(best)
}

/// One decoding thread per input, feeding a bounded queue; returns once every input opened.
#[allow(clippy::type_complexity)]
fn spawn_inputs(
    inputs: &[(String, PathBuf)],
) -> Result<
    (
        Vec<(String, crossbeam_channel::Receiver<VideoFrame>)>,
        Vec<std::thread::JoinHandle<()>>,
    ),
    RecordError,
> {
    let mut rxs = Vec::new();
    let mut handles = Vec::new();
    for (camid, path) in inputs {
        let (tx, rx) = bounded::<VideoFrame>(INPUT_QUEUE);
        let (open_tx, open_rx) = bounded::<Result<(), DecodeError>>(1);
        let path = path.clone();
        let name = format!("cm-decode-{camid}");
        let h = std::thread::Builder::new().name(name).spawn(move || {
            let mut d = match Decoder::open(&path) {
                Ok(d) => {
                    let _ = open_tx.send(Ok(()));
                    d
                }
                Err(e) => {
                    let _ = open_tx.send(Err(e));
                    return;
                }
            };
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        if tx.send(f).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "input ended early");
                        return;
                    }
                }
            }
        })?;
        open_rx
            .recv()
            .map_err(|_| RecordError::Usage(format!("decoder thread for {camid} died")))??;
        rxs.push((camid.clone(), rx));
        handles.push(h);
    }
    Ok((rxs, handles))
}

/// Records `opts.inputs` per `opts.config`; `progress` is called about every 100 ms.
///
/// ```no_run
/// use cloudmixer::{model::config::MixerConfig, pipeline::MixerSettings, record::{record, RecordOptions}};
/// let cfg = MixerConfig::from_json(&std::fs::read_to_string("fixtures/layouts/seed_side_by_side.json").unwrap()).unwrap();
/// let summary = record(RecordOptions {
///     config: cfg,
///     inputs: vec![("Usr1.-1".into(), "fixtures/clips/cam1_640x480_15.mp4".into()),
///                  ("Usr2.-1".into(), "fixtures/clips/cam4_1280x720_30.mp4".into())],
///     pictures: vec![],
///     updates: vec![],
///     storage: "out".into(),
///     duration: Some(std::time::Duration::from_secs(10)),
///     settings: MixerSettings::offline(),
///     events: None,
/// }, |_| {}).unwrap();
/// println!("{summary}");
/// ```
pub fn record(
    opts: RecordOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<RecordSummary, RecordError> {
    let fps = opts.config.output.fps;
    let duration = match opts.duration {
        Some(d) => d,
        None => longest_input(&opts.inputs)?,
    };
    let total = frames_for(fps, duration);
    if total == 0 {
        return Err(RecordError::Usage(format!(
            "duration {duration:?} is shorter than one frame"
        )));
    }
    let mut updates = opts.updates.clone();
    updates.sort_by_key(|u| u.0);
    // validate every update before recording anything
    for (t, u) in &updates {
        opts.config
            .parse_update_value(u)
            .map_err(|e| RecordError::Usage(format!("update at {:.3} s: {e}", t.as_secs_f64())))?;
    }
    let mut events_file = match &opts.events {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let pictures = opts
        .pictures
        .iter()
        .map(|(id, p)| {
            Ok((
                id.clone(),
                crate::media::decode::frame_at(p, Duration::ZERO)?,
            ))
        })
        .collect::<Result<Vec<_>, RecordError>>()?;
    let (inputs, decoders) = spawn_inputs(&opts.inputs)?;
    let t0 = Instant::now();
    let mode = opts.settings.mode;
    let created = Mixer::create_with(
        opts.config.clone(),
        Storage::new(&opts.storage),
        opts.settings.clone(),
    );
    // events: written as they come (a kill leaves a complete log of what happened)
    let last_info: Arc<Mutex<Option<OutputInfo>>> = Arc::default();
    let mut mixer = match created {
        Ok(m) => m,
        Err(e) => {
            // the failed create's events are lost with it; log the error itself
            if let Some(f) = events_file.as_mut() {
                let ev = MixerEvent::Error {
                    code: e.code(),
                    desc: e.to_string(),
                };
                writeln!(f, "{}", ev.to_json())?;
            }
            return Err(e.into());
        }
    };
    for (id, pic) in pictures {
        mixer.register_picture(&id, pic)?;
    }
    let rx = mixer.events();
    let li = last_info.clone();
    let ev_thread = std::thread::spawn(move || -> std::io::Result<()> {
        for ev in rx.iter() {
            if let MixerEvent::OutputInfoChanged(i) = &ev {
                if i.id == 0 {
                    *li.lock().unwrap_or_else(|e| e.into_inner()) = Some(i.clone());
                }
            }
            if let Some(f) = events_file.as_mut() {
                writeln!(f, "{}", ev.to_json())?;
                f.flush()?;
            }
        }
        Ok(())
    });
    let mut next_report = Instant::now();
    let mut report = |frames: u64, force: bool| {
        if force || Instant::now() >= next_report {
            progress(&Progress {
                frames,
                total,
                fps,
                elapsed: t0.elapsed(),
            });
            next_report = Instant::now() + Duration::from_millis(100);
        }
    };
    let mut upd = updates.into_iter().peekable();
    let run: Result<(), MixerError> = match mode {
        PaceMode::Offline => {
            let iters: Vec<_> = inputs
                .into_iter()
                .map(|(c, rx)| (c, rx.into_iter()))
                .collect();
            mixer.run_offline(iters, total, |m, n| {
                let t = tick_time(fps, n);
                while let Some((_, u)) = upd.next_if(|(at, _)| *at <= t) {
                    m.update_content(&u)?;
                }
                report(n, false);
                Ok(())
            })
        }
        PaceMode::Realtime => {
            mixer.stop_after_frames(total);
            let m = &mixer;
            std::thread::scope(|s| {
                for (camid, rx) in inputs {
                    s.spawn(move || {
                        for f in rx.iter() {
                            let due = t0 + f.pts;
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            if m.push_video(&camid, f).is_err() {
                                return;
                            }
                        }
                    });
                }
                let mut res = Ok(());
                while m.state() != crate::model::events::MixerState::Null && m.ticks() < total {
                    let t = t0.elapsed();
                    while let Some((_, u)) = upd.next_if(|(at, _)| *at <= t) {
                        if let Err(e) = m.update_content(&u) {
                            res = Err(e);
                        }
                    }
                    report(m.ticks(), false);
                    std::thread::sleep(Duration::from_millis(5));
                }
                // the input threads end on their own: pushes fail once the mixer has stopped
                res
            })
        }
    };
    report(mixer.ticks(), true);
    let encoder = mixer.encoder_name().to_string();
    let backend = mixer.backend_name().to_string();
    let destroyed = mixer.destroy();
    let frames = mixer.ticks();
    drop(mixer);
    for d in decoders {
        let _ = d.join();
    }
    let wall = t0.elapsed();
    let ev_res = ev_thread.join();
    // a failure recorded by the mixer (e.g. a full disk) takes precedence over the driver's
    // "mixer stopped" error
    destroyed?;
    run?;
    if let Ok(Err(e)) = ev_res {
        return Err(RecordError::Io(e));
    }
    let out = last_info.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let duration_ms = out.as_ref().map_or(0, |o| o.duration);
    let resolved =
        crate::output::resolve_targets(&Storage::new(&opts.storage), &opts.config.output.targets)
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default();
    Ok(RecordSummary {
        frames,
        fps,
        duration_ms,
        bytes: out.as_ref().map_or(0, |o| o.file_size),
        path: resolved,
        encoder,
        backend,
        wall_s: wall.as_secs_f64(),
        speed: duration_ms as f64 / 1000.0 / wall.as_secs_f64().max(1e-9),
        output: out,
    })
}
