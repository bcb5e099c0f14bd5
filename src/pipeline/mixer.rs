//! The mixer: one recorded room (DESIGN §1–§2).
//!
//! ```text
//! push_video ──▶ SourceSlots ──(snapshot per tick)──▶ pace+compose thread ──bounded──▶ encode+mux thread ──▶ file(s)
//! update_content ──▶ ArcSwap<Layout> ──(loaded once per tick)──┘        ▲ recycled frames ┘
//! ```
//!
//! - The pace+compose thread loads the layout snapshot once per tick, so a frame never mixes
//!   two layouts; it copies the composed picture into a recycled encoder frame (a pool of
//!   [`FRAME_POOL`] frames that travel between the two threads, so the steady state allocates no
//!   frame buffers) and hands it on through a bounded channel (back-pressure).
//! - The encode+mux thread encodes, writes every target, and reports `OutputInfoChanged` at
//!   least once a second; at the end it drains the encoder, finalises the files and reports the
//!   final output info and the return to NULL.
//! - `push_video` and `update_content` never block on the frame path and hold no lock across a
//!   frame.
//! - [`PaceMode::Realtime`] ticks on the wall clock; [`PaceMode::Offline`] ticks when the caller
//!   advances synthetic time ([`Mixer::advance_to`], [`Mixer::run_offline`]), as fast as the
//!   machine allows.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use ffmpeg_next as ffmpeg;
use serde_json::Value;

use super::error::MixerError;
use super::sources::{SourceSlots, DEFAULT_MAX_SOURCES};
use crate::compose::{self, Backend, Compositor, Frames};
use crate::media::video_enc::{fill_frame, EncoderSettings, VideoEncoder};
use crate::model::config::{MixerConfig, Target};
use crate::model::events::{codes, MixerEvent, MixerState, OutputInfo, OutputState};
use crate::model::frame::VideoFrame;
use crate::model::layout::Layout;
use crate::model::time::{frames_for, tick_time, ticks_before, LatestUpTo, PaceMode, Pacer};
use crate::output::{header_needs, Muxer, Storage};

/// Encoder frames in circulation between the compose and encode threads.
pub const FRAME_POOL: usize = 4;

/// Default longest recording (8 h); reaching it stops the recording with code 901.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(8 * 3600);

const MAX_DURATION_DESC: &str = "maximum recording duration reached";

/// Default time after which a silent source is drawn as missing.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a mixer runs (everything the JSON config does not say).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MixerSettings {
    /// Compositor backend.
    pub backend: Backend,
    /// Encoder choice and x264 preset.
    pub encoder: EncoderSettings,
    /// Real-time (live sources) or offline (files, as fast as possible).
    pub mode: PaceMode,
    /// A source silent for this long is drawn as missing.
    pub source_timeout: Duration,
    /// Longest recording; reaching it stops cleanly with code 901.
    pub max_duration: Duration,
    /// Most distinct camids kept (frames of camids outside the layout included).
    pub max_sources: usize,
}

impl Default for MixerSettings {
    fn default() -> Self {
        MixerSettings {
            backend: Backend::Auto,
            encoder: EncoderSettings::default(),
            mode: PaceMode::Realtime,
            source_timeout: DEFAULT_SOURCE_TIMEOUT,
            max_duration: DEFAULT_MAX_DURATION,
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

impl MixerSettings {
    /// Offline settings (synthetic time), otherwise defaults.
    pub fn offline() -> Self {
        MixerSettings {
            mode: PaceMode::Offline,
            ..Default::default()
        }
    }
}

/// A live layout update: JSON text or an already parsed value.
#[derive(Debug, Clone, Copy)]
pub enum Update<'a> {
    /// JSON text.
    Text(&'a str),
    /// A parsed value.
    Value(&'a Value),
}

impl<'a> From<&'a str> for Update<'a> {
    fn from(s: &'a str) -> Self {
        Update::Text(s)
    }
}
impl<'a> From<&'a String> for Update<'a> {
    fn from(s: &'a String) -> Self {
        Update::Text(s)
    }
}
impl<'a> From<&'a Value> for Update<'a> {
    fn from(v: &'a Value) -> Self {
        Update::Value(v)
    }
}

enum Cmd {
    /// Offline: produce ticks until `ticks` have been made; ack once the last one's inputs
    /// (layout and frames) are captured.
    Advance {
        ticks: u64,
        ack: Sender<()>,
    },
    Stop,
}

enum End {
    Stop,
    MaxDuration,
    Failed(i32, String),
}

enum Msg {
    Frame(ffmpeg::frame::Video),
    End(End),
}

struct Shared {
    config: MixerConfig,
    layout: ArcSwap<Layout>,
    slots: SourceSlots,
    state: AtomicU8,
    events: Sender<MixerEvent>,
    mode: PaceMode,
    start: Instant,
    /// Offline: the synthetic time (µs) of the next tick, the stamp of pushed frames.
    clock_us: AtomicU64,
    /// Ticks composed so far.
    ticks: AtomicU64,
    /// Stop (cleanly) once this many ticks are composed.
    stop_after: AtomicU64,
    /// Why the recording ended on its own, once it has.
    ended: Mutex<Option<(i32, String)>>,
}

impl Shared {
    /// The last state change: back to NULL with the final error (0 = clean stop).
    fn end_null(&self, code: i32, desc: String) {
        self.set_state(MixerState::Null);
        self.emit(MixerEvent::StateChanged {
            state: MixerState::Null,
            err: code,
            err_desc: desc,
            encoder: None,
            backend: None,
        });
    }

    /// RUNNING → STOPPING, reported once, whoever gets there first (destroy or the pipeline).
    fn begin_stopping(&self) {
        if self
            .state
            .compare_exchange(
                MixerState::Running as u8,
                MixerState::Stopping as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.emit(MixerEvent::state(MixerState::Stopping));
        }
    }

    fn emit(&self, ev: MixerEvent) {
        let _ = self.events.send(ev);
    }
    fn set_state(&self, s: MixerState) {
        self.state.store(s as u8, Ordering::Release);
    }
    /// Records why the recording ended (the first cause wins) and reports it as an `Error`
    /// event at once, before any caller can observe the stop.
    fn set_ended(&self, code: i32, desc: &str) {
        let mut e = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some((code, desc.to_string()));
            tracing::warn!(code, %desc, "recording ended");
            self.emit(MixerEvent::Error {
                code,
                desc: desc.to_string(),
            });
        }
    }

    fn stopped_error(&self) -> MixerError {
        match &*self.ended.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((code, desc)) => MixerError::Stopped {
                code: *code,
                desc: desc.clone(),
            },
            None => MixerError::Stopped {
                code: codes::OK,
                desc: "destroyed".into(),
            },
        }
    }
}

/// One recording: sources in, a composed, encoded, crash-safe file out.
///
/// ```no_run
/// use cloudmixer::model::config::MixerConfig;
/// use cloudmixer::model::frame::VideoFrame;
/// use cloudmixer::pipeline::{Mixer, MixerSettings};
/// use cloudmixer::output::Storage;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cfg = MixerConfig::from_json(&std::fs::read_to_string("fixtures/layouts/seed_side_by_side.json")?)?;
/// let mut mixer = Mixer::create_with(cfg, Storage::new("/srv/records"), MixerSettings::offline())?;
/// mixer.push_video("Usr1.-1", VideoFrame::solid_i420(640, 480, [81, 90, 240])?)?;
/// mixer.push_video("Usr2.-1", VideoFrame::solid_i420(1280, 720, [145, 54, 34])?)?;
/// mixer.advance_to(std::time::Duration::from_secs(5))?; // frames 0..75
/// mixer.update_content(r#"{"videoFileCfg":{"layoutConfig":[]}}"#)?;
/// mixer.advance_to(std::time::Duration::from_secs(10))?; // frames 75..150
/// for ev in mixer.events().try_iter() {
///     println!("{}", ev.to_json());
/// }
/// mixer.destroy()?;
/// # Ok(()) }
/// ```
pub struct Mixer {
    shared: Arc<Shared>,
    events: Receiver<MixerEvent>,
    cmd: Option<Sender<Cmd>>,
    threads: Vec<JoinHandle<()>>,
    encoder: String,
    backend: String,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("svrPathName", &self.shared.config.output.svr_path_name)
            .field("state", &self.state())
            .field("encoder", &self.encoder)
            .field("backend", &self.backend)
            .finish()
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn target_names(cfg: &MixerConfig) -> Vec<String> {
    let parts: Vec<String> = cfg
        .output
        .svr_path_name
        .split(';')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if parts.len() == cfg.output.targets.len() {
        parts
    } else {
        cfg.output
            .targets
            .iter()
            .map(|t| match t {
                Target::File { path, .. } => format!("/{}", path.display()),
                Target::Url { url } => url.clone(),
            })
            .collect()
    }
}

impl Mixer {
    /// Creates a real-time mixer with default settings and starts recording.
    pub fn create(config: MixerConfig, storage: Storage) -> Result<Mixer, MixerError> {
        Self::create_with(config, storage, MixerSettings::default())
    }

    /// Creates a mixer and starts recording: emits STARTING, opens the compositor, the encoder
    /// and every target, then emits the first output info and RUNNING (with the encoder and
    /// backend names). A failure emits `Error` and NULL and is returned.
    pub fn create_with(
        config: MixerConfig,
        storage: Storage,
        settings: MixerSettings,
    ) -> Result<Mixer, MixerError> {
        let (ev_tx, ev_rx) = unbounded();
        let shared = Arc::new(Shared {
            layout: ArcSwap::new(config.layout.clone()),
            slots: SourceSlots::with_capacity(settings.source_timeout, settings.max_sources),
            state: AtomicU8::new(MixerState::Null as u8),
            events: ev_tx,
            mode: settings.mode,
            start: Instant::now(),
            clock_us: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            stop_after: AtomicU64::new(u64::MAX),
            ended: Mutex::new(None),
            config,
        });
        shared.set_state(MixerState::Starting);
        shared.emit(MixerEvent::state(MixerState::Starting));
        let opened = Self::open_stages(&shared, &storage, &settings);
        let (compositor, encoder, muxer) = match opened {
            Ok(x) => x,
            Err(e) => {
                let (code, desc) = (e.code(), e.to_string());
                tracing::error!(code, %desc, "mixer failed to start");
                shared.emit(MixerEvent::Error {
                    code,
                    desc: desc.clone(),
                });
                shared.end_null(code, desc);
                return Err(e);
            }
        };
        let encoder_name = encoder.name().to_string();
        let backend_name = compositor.describe();
        let names = target_names(&shared.config);
        let start_time = epoch_ms();
        let reporter = Reporter { names, start_time };
        for ev in reporter.infos(&muxer, OutputState::Running, 0, "") {
            shared.emit(ev);
        }
        shared.set_state(MixerState::Running);
        shared.emit(MixerEvent::StateChanged {
            state: MixerState::Running,
            err: 0,
            err_desc: String::new(),
            encoder: Some(encoder_name.clone()),
            backend: Some(backend_name.clone()),
        });
        tracing::info!(encoder = %encoder_name, backend = %backend_name, target = %shared.config.output.svr_path_name, "recording");

        let (pool_tx, pool_rx) = bounded(FRAME_POOL);
        for _ in 0..FRAME_POOL {
            let _ = pool_tx.send(encoder.alloc_frame());
        }
        let (frame_tx, frame_rx) = bounded::<Msg>(2);
        let (cmd_tx, cmd_rx) = bounded::<Cmd>(4);
        let max_ticks = frames_for(shared.config.output.fps, settings.max_duration).max(1);
        let s1 = shared.clone();
        let pace = std::thread::Builder::new()
            .name("cm-compose".into())
            .spawn(move || pace_loop(s1, compositor, cmd_rx, pool_rx, frame_tx, max_ticks))
            .map_err(MixerError::Io)?;
        let s2 = shared.clone();
        let enc = std::thread::Builder::new()
            .name("cm-encode".into())
            .spawn(move || encode_loop(s2, encoder, muxer, frame_rx, pool_tx, reporter))
            .map_err(MixerError::Io)?;
        Ok(Mixer {
            shared,
            events: ev_rx,
            cmd: Some(cmd_tx),
            threads: vec![pace, enc],
            encoder: encoder_name,
            backend: backend_name,
        })
    }

    #[allow(clippy::type_complexity)]
    fn open_stages(
        shared: &Shared,
        storage: &Storage,
        settings: &MixerSettings,
    ) -> Result<(Box<dyn Compositor>, VideoEncoder, Muxer), MixerError> {
        let out = &shared.config.output;
        // paths first: a bad target must not cost an encoder open
        crate::output::resolve_targets(storage, &out.targets)?;
        let compositor = compose::create(settings.backend, out.width, out.height)?;
        let (global, inband) = header_needs(&out.targets);
        let encoder = VideoEncoder::open(out, &settings.encoder, global, inband)?;
        let muxer = Muxer::open(storage, &out.targets, &encoder)?;
        Ok((compositor, encoder, muxer))
    }

    /// Hands over a decoded frame of source `camid` (any size, format, rate). Never blocks;
    /// the frame's planes are moved, not copied. The latest frame per source is used.
    pub fn push_video(&self, camid: &str, frame: VideoFrame) -> Result<(), MixerError> {
        if self.shared.state.load(Ordering::Acquire) != MixerState::Running as u8 {
            return Err(self.shared.stopped_error());
        }
        let now = match self.shared.mode {
            PaceMode::Realtime => self.shared.start.elapsed().as_micros() as u64,
            PaceMode::Offline => self.shared.clock_us.load(Ordering::Acquire),
        };
        let layout = self.shared.layout.load();
        self.shared.slots.push(camid, frame, now, &layout)?;
        Ok(())
    }

    /// Registers (or replaces) the picture that layout items of type 1 show by `resource_id`
    /// (a logo, a background, a "camera off" card). Unlike a camera it never times out.
    pub fn register_picture(
        &self,
        resource_id: &str,
        picture: VideoFrame,
    ) -> Result<(), MixerError> {
        if self.shared.state.load(Ordering::Acquire) != MixerState::Running as u8 {
            return Err(self.shared.stopped_error());
        }
        let layout = self.shared.layout.load();
        self.shared.slots.pin(resource_id, picture, 0, &layout)?;
        Ok(())
    }

    /// Validates a live update (`{"videoFileCfg":{"layoutConfig":[…]}}`) and applies it from
    /// the next tick. A bad update is an error and changes nothing.
    pub fn update_content<'a>(&self, update: impl Into<Update<'a>>) -> Result<(), MixerError> {
        let layout = match update.into() {
            Update::Text(t) => self.shared.config.parse_update(t)?,
            Update::Value(v) => self.shared.config.parse_update_value(v)?,
        };
        self.shared.layout.store(Arc::new(layout));
        Ok(())
    }

    /// The layout in force.
    pub fn layout(&self) -> Arc<Layout> {
        self.shared.layout.load_full()
    }

    /// The mixer's events (state changes, output info, errors). All clones of the receiver
    /// share one queue.
    pub fn events(&self) -> Receiver<MixerEvent> {
        self.events.clone()
    }

    /// Current state.
    pub fn state(&self) -> MixerState {
        match self.shared.state.load(Ordering::Acquire) {
            1 => MixerState::Starting,
            2 => MixerState::Running,
            4 => MixerState::Stopping,
            _ => MixerState::Null,
        }
    }

    /// The encoder in use, e.g. `libx264`.
    pub fn encoder_name(&self) -> &str {
        &self.encoder
    }

    /// The compositor in use.
    pub fn backend_name(&self) -> &str {
        &self.backend
    }

    /// The validated create config.
    pub fn config(&self) -> &MixerConfig {
        &self.shared.config
    }

    /// Ticks taken so far (a tick is taken when it has captured its layout and frames; all
    /// taken ticks are in the output once the mixer has stopped cleanly).
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Acquire)
    }

    /// Ends the recording cleanly after exactly `total` ticks (the output then holds `total`
    /// frames); the mixer reports STOPPING, the final output info and NULL on its own, and
    /// [`Mixer::destroy`] just waits for that. Useful for fixed-length real-time recordings.
    pub fn stop_after_frames(&self, total: u64) {
        self.shared.stop_after.store(total, Ordering::Release);
    }

    /// Offline: composes every tick whose time is before `t` (`ceil(t·fps)` ticks in all) and
    /// returns once the last one has taken its frames and layout, so pushes and updates made
    /// after the call show from the next tick on.
    pub fn advance_to(&self, t: Duration) -> Result<(), MixerError> {
        self.advance_frames(ticks_before(self.shared.config.output.fps, t))
    }

    /// Offline: as [`Mixer::advance_to`], counted in ticks (`total` since the start).
    pub fn advance_frames(&self, total: u64) -> Result<(), MixerError> {
        if self.shared.mode != PaceMode::Offline {
            return Err(MixerError::WrongMode("advance is for offline mixers"));
        }
        let cmd = self
            .cmd
            .as_ref()
            .ok_or_else(|| self.shared.stopped_error())?;
        let (ack_tx, ack_rx) = bounded(1);
        cmd.send(Cmd::Advance {
            ticks: total,
            ack: ack_tx,
        })
        .map_err(|_| self.shared.stopped_error())?;
        // The pace thread acknowledges, or drops the ack when it ends. A command queued just as
        // it ended (the encoder failed, say) is never received, and its ack lives on in the
        // channel, so also watch the pipeline threads.
        loop {
            match ack_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(self.shared.stopped_error())
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.threads.iter().any(|t| t.is_finished()) {
                        // a last look: the ack may have raced the thread's end
                        return ack_rx.try_recv().map_err(|_| self.shared.stopped_error());
                    }
                }
            }
        }
    }

    /// Offline: records `total` ticks from pts-ordered inputs. For each tick every input
    /// advances to its latest frame with `pts ≤` the tick time (see [`LatestUpTo`]);
    /// `at_tick(n)` runs before tick `n` takes its inputs (apply updates, report progress).
    pub fn run_offline<I>(
        &self,
        inputs: Vec<(String, I)>,
        total: u64,
        mut at_tick: impl FnMut(&Mixer, u64) -> Result<(), MixerError>,
    ) -> Result<(), MixerError>
    where
        I: Iterator<Item = VideoFrame>,
    {
        let fps = self.shared.config.output.fps;
        let mut inputs: Vec<(String, LatestUpTo<I>)> = inputs
            .into_iter()
            .map(|(c, i)| (c, LatestUpTo::new(i)))
            .collect();
        for n in self.ticks()..total {
            at_tick(self, n)?;
            let t = tick_time(fps, n);
            for (camid, inp) in &mut inputs {
                if let Some(f) = inp.advance(t) {
                    self.push_video(camid, f)?;
                }
            }
            self.advance_frames(n + 1)?;
        }
        Ok(())
    }

    /// Stops recording: emits STOPPING, drains the pipeline, finalises the files, emits the
    /// final output info (STOPPED) and NULL. Idempotent. Returns the failure that ended the
    /// recording earlier, if one did (reaching the maximum duration is not a failure).
    pub fn destroy(&mut self) -> Result<(), MixerError> {
        if self.threads.is_empty() {
            return Ok(());
        }
        self.shared.begin_stopping();
        if let Some(cmd) = self.cmd.take() {
            let _ = cmd.send(Cmd::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        match &*self.shared.ended.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((code, desc)) if *code != codes::RECORD_MAX => Err(MixerError::Stopped {
                code: *code,
                desc: desc.clone(),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for Mixer {
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

fn pace_loop(
    shared: Arc<Shared>,
    mut compositor: Box<dyn Compositor>,
    cmd: Receiver<Cmd>,
    pool: Receiver<ffmpeg::frame::Video>,
    out: Sender<Msg>,
    max_ticks: u64,
) {
    let fps = shared.config.output.fps;
    let pacer = Pacer::new(fps, shared.start);
    let mut frames = Frames::new();
    let mut allowed = 0u64;
    let mut ack: Option<Sender<()>> = None;
    let mut n = 0u64;
    let end = 'run: loop {
        if n >= max_ticks {
            break End::MaxDuration;
        }
        if n >= shared.stop_after.load(Ordering::Acquire) {
            break End::Stop;
        }
        match shared.mode {
            PaceMode::Realtime => match cmd.recv_deadline(pacer.deadline(n)) {
                Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => break End::Stop,
                Ok(Cmd::Advance { .. }) => continue,
                Err(RecvTimeoutError::Timeout) => {}
            },
            PaceMode::Offline => {
                while n >= allowed {
                    match cmd.recv() {
                        Ok(Cmd::Advance { ticks, ack: a }) => {
                            allowed = ticks;
                            if n >= allowed {
                                let _ = a.send(());
                            } else {
                                ack = Some(a);
                            }
                        }
                        Ok(Cmd::Stop) | Err(_) => break 'run End::Stop,
                    }
                }
                if n >= shared.stop_after.load(Ordering::Acquire) {
                    break End::Stop;
                }
            }
        }
        let now_us = match shared.mode {
            PaceMode::Realtime => pacer.now_us(),
            PaceMode::Offline => tick_time(fps, n).as_micros() as u64,
        };
        let layout = shared.layout.load_full();
        shared.slots.snapshot(&layout, now_us, &mut frames);
        shared.ticks.store(n + 1, Ordering::Release);
        if shared.mode == PaceMode::Offline {
            shared
                .clock_us
                .store(tick_time(fps, n + 1).as_micros() as u64, Ordering::Release);
            if n + 1 == allowed {
                if let Some(a) = ack.take() {
                    let _ = a.send(());
                }
            }
        }
        let img = match compositor.compose(&layout, &frames) {
            Ok(img) => img,
            Err(e) => break End::Failed(codes::INTERNAL, format!("compositor: {e}")),
        };
        let Ok(mut vf) = pool.recv() else { return };
        if let Err(e) = fill_frame(&mut vf, img) {
            break End::Failed(codes::INTERNAL, e.to_string());
        }
        vf.set_pts(Some(n as i64));
        if out.send(Msg::Frame(vf)).is_err() {
            return; // the encoder stopped on its own and reports why
        }
        n += 1;
    };
    match &end {
        End::MaxDuration => shared.set_ended(codes::RECORD_MAX, MAX_DURATION_DESC),
        End::Failed(c, d) => shared.set_ended(*c, d),
        End::Stop => {}
    }
    drop(ack);
    let _ = out.send(Msg::End(end));
}

struct Reporter {
    names: Vec<String>,
    start_time: u64,
}

impl Reporter {
    fn infos(&self, mux: &Muxer, state: OutputState, err: i32, desc: &str) -> Vec<MixerEvent> {
        let dur = mux.duration().as_millis() as u64;
        mux.progress()
            .into_iter()
            .zip(&self.names)
            .enumerate()
            .map(|(i, (p, name))| {
                MixerEvent::OutputInfoChanged(OutputInfo {
                    id: i as u32,
                    state,
                    svr_file_path_name: name.clone(),
                    start_time: self.start_time,
                    duration: dur,
                    file_size: p.bytes,
                    err_code: err,
                    err_desc: desc.to_string(),
                })
            })
            .collect()
    }
}

fn drain(
    enc: &mut VideoEncoder,
    mux: &mut Muxer,
    pkt: &mut ffmpeg::Packet,
) -> Result<(), (i32, String)> {
    loop {
        match enc.receive(pkt) {
            Ok(true) => mux.write(pkt).map_err(|e| (e.code(), e.to_string()))?,
            Ok(false) => return Ok(()),
            Err(e) => return Err((codes::INTERNAL, e.to_string())),
        }
    }
}

fn encode_loop(
    shared: Arc<Shared>,
    mut enc: VideoEncoder,
    mut mux: Muxer,
    frames: Receiver<Msg>,
    pool: Sender<ffmpeg::frame::Video>,
    rep: Reporter,
) {
    let mut pkt = ffmpeg::Packet::empty();
    let mut next_info = Instant::now() + Duration::from_secs(1);
    let end = loop {
        match frames.recv_deadline(next_info) {
            Ok(Msg::Frame(vf)) => {
                let sent = enc.send(&vf);
                let _ = pool.send(vf);
                if let Err(e) = sent {
                    break End::Failed(codes::INTERNAL, e.to_string());
                }
                if let Err((c, d)) = drain(&mut enc, &mut mux, &mut pkt) {
                    break End::Failed(c, d);
                }
            }
            Ok(Msg::End(e)) => break e,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                break End::Failed(codes::INTERNAL, "compose thread ended".into())
            }
        }
        if Instant::now() >= next_info {
            for ev in rep.infos(&mux, OutputState::Running, 0, "") {
                shared.emit(ev);
            }
            next_info = Instant::now() + Duration::from_secs(1);
        }
    };
    if let End::Failed(c, d) = &end {
        shared.set_ended(*c, d);
    }
    // unblock the compose thread at once
    drop(frames);
    drop(pool);
    let mut end = end;
    if !matches!(end, End::Failed(..)) {
        let flushed = enc
            .finish()
            .map_err(|e| (codes::INTERNAL, e.to_string()))
            .and_then(|_| drain(&mut enc, &mut mux, &mut pkt));
        if let Err((c, d)) = flushed {
            end = End::Failed(c, d);
        }
    }
    if let Err(e) = mux.finish() {
        if !matches!(end, End::Failed(..)) {
            end = End::Failed(e.code(), e.to_string());
        }
    }
    let (code, desc, out_state) = match &end {
        End::Stop => (codes::OK, String::new(), OutputState::Stopped),
        End::MaxDuration => (
            codes::RECORD_MAX,
            MAX_DURATION_DESC.to_string(),
            OutputState::Stopped,
        ),
        End::Failed(c, d) => (*c, d.clone(), OutputState::Fail),
    };
    if code != codes::OK {
        shared.set_ended(code, &desc);
    }
    shared.begin_stopping();
    for ev in rep.infos(&mux, out_state, code, &desc) {
        shared.emit(ev);
    }
    shared.end_null(code, desc);
}
