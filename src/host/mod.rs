//! The host: the process's rooms and the services they share, under every front (`record`,
//! the C ABI, `cloudmixer serve`).
//!
//! - [`Host`]: rooms by mixer id, created, updated, stopped, listed and read from the vendor's
//!   JSON; one event stream of all of them ([`HostEvent`], each with its `mixerID`).
//! - [`feed`]: what pushes media into a room with capture times: files, and URLs pulled live
//!   ([`feed::pull`]: rtmp, rtsp, srt, http(s)/HLS, reconnecting with a back-off; each input's
//!   state is in the room's info (`inputStates`), the host's stats and `inputStateChanged`
//!   events).
//! - [`stats`]: one snapshot of the process ([`HostStats`]).
//!
//! A room is a real-time [`Mixer`] (mode 0) or, for a mode 1 config (`"mode":1`, one file per
//! stream), a [`StreamRecorder`], fed by its inputs. Creating one checks everything first
//! (the config, each input, the room limit) and records nothing when a check fails. A mode 1
//! room takes no update (code 5). Once a room ended only its final [`RoomInfo`] is kept (the
//! mixer, its threads and buffers are let go of).
//!
//! ```no_run
//! use cloudmixer::host::{CreateRoom, Host, HostSettings};
//! let host = Host::new(HostSettings::new("/srv/records"));
//! let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("room.json")?)?;
//! let id = host.create(CreateRoom {
//!     mixer_id: Some("room1".into()),
//!     config: cfg,
//!     inputs: vec![("Usr1.-1".into(), "cam1.mp4".into())],
//! })?;
//! let events = host.subscribe(None);
//! let outputs = host.destroy(&id)?; // the files are final
//! # let _ = (events, outputs);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod capacity;
pub mod events;
pub mod feed;
pub mod journal;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::Value;

pub use events::HostEvent;
pub use stats::{HostStats, RoomStats, ServiceStats};

use crate::model::config::{ConfigError, MixerConfig, StorageSettings};
use crate::model::events::{codes, MixerEvent, MixerState, OutputInfo};
use crate::model::frame::I420Image;
use crate::model::time::PaceMode;
use crate::output::Storage;
use crate::pipeline::sources::SourceStats;
use crate::pipeline::{Mixer, MixerError, MixerSettings, MixerStats, Services, StreamRecorder};
use events::EventHub;
use feed::{FeedError, FileInputs};

/// A resolved input: (camid or user, file).
type Input = (String, PathBuf);

/// Ended rooms kept for `get`/`list` (their final outputs), oldest forgotten first.
pub const ENDED_KEPT: usize = 256;

/// How a host runs its rooms.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Where recordings are written (the storage root of every room).
    pub storage: PathBuf,
    /// Where `file:` inputs are read from (default: `storage`); nothing outside it is opened
    /// (unless `trusted_inputs`).
    pub media_root: Option<PathBuf>,
    /// Whether inputs are trusted local paths: absolute or relative to the process's working
    /// directory, opened as given (`file:` stripped), `media_root` unused. For a front whose
    /// inputs come from its own operator (`cloudmixer record`'s command line). Off by default;
    /// `cloudmixer serve` never turns it on: its inputs come from the network and stay
    /// confined to the media root.
    pub trusted_inputs: bool,
    /// Whether a room with a `storageConfig` resumes the uploads an earlier run left pending
    /// under the storage root (default: yes). A front that resumes them itself (`record`,
    /// which reports them in its summary) turns it off.
    pub resume_uploads: bool,
    /// Rooms recording at once, at most (`None`: no limit but the capacity estimate).
    pub max_rooms: Option<usize>,
    /// Each room's mixer settings (its `mode` is set per room: real time unless created offline
    /// with [`Host::create_with`]).
    pub mixer: MixerSettings,
    /// Events kept for readers that resume.
    pub backlog: usize,
    /// Cores one room is assumed to cost until the host has measured it (see [`capacity`]).
    pub room_cost: f64,
    /// Cores the rooms may use (`None`: every core of the machine), e.g. a container's CPU
    /// quota.
    pub cores: Option<f64>,
    /// How URL inputs are pulled: time-outs, back-off, size and bitrate limits.
    pub pull: feed::pull::PullSettings,
    /// The key RTMP and SRT publishers must give (`None`: none asked), see
    /// [`feed::pull::PublishKey`].
    pub publish_key: Option<feed::pull::PublishKey>,
}

impl HostSettings {
    /// Defaults: recordings and `file:` inputs under `storage`, no room limit, default mixer
    /// settings (real time, 200 ms latency).
    pub fn new(storage: impl Into<PathBuf>) -> Self {
        HostSettings {
            storage: storage.into(),
            media_root: None,
            trusted_inputs: false,
            resume_uploads: true,
            max_rooms: None,
            mixer: MixerSettings::default(),
            backlog: events::DEFAULT_BACKLOG,
            room_cost: capacity::DEFAULT_ROOM_COST,
            cores: None,
            pull: feed::pull::PullSettings::default(),
            publish_key: None,
        }
    }
}

/// A room to create: the vendor's `cloudMixerCfg` JSON, an optional id, and its inputs.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// The mixer id (`[A-Za-z0-9_.-]`, 1–64 characters); generated when absent.
    pub mixer_id: Option<String>,
    /// The vendor's mixer config.
    pub config: Value,
    /// `(camid or user, URL)`: a camid (`Usr1.-1`) is that camera and, if the file has audio,
    /// its user's microphone; a user (`Usr1`) is only that user's audio. A URL is `file:PATH`
    /// or a plain relative `PATH`, under the media root, or a stream to pull: `rtmp://`,
    /// `rtmps://`, `rtsp://` (`?transport=udp` for RTP over UDP), `srt://`, `http(s)://`
    /// (progressive or HLS), see [`feed::pull`].
    pub inputs: Vec<(String, String)>,
}

/// A room whose config is already parsed, for a front that reads its own (`record`), with
/// the pictures its layout shows; otherwise as [`CreateRoom`] ([`Host::create_parsed`]).
#[derive(Debug, Clone)]
pub struct CreateParsed {
    /// The mixer id (`[A-Za-z0-9_.-]`, 1–64 characters); generated when absent.
    pub mixer_id: Option<String>,
    /// The validated mixer config.
    pub config: MixerConfig,
    /// As [`CreateRoom::inputs`].
    pub inputs: Vec<(String, String)>,
    /// `(resourceid, picture)`: registered on the room's mixer before its inputs are fed (a
    /// mode 1 room takes none: code 5).
    pub pictures: Vec<(String, crate::model::frame::VideoFrame)>,
}

/// Why the host refused or failed a call.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A bad config or update (code 5), the field named.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad field of the request outside the config (code 5).
    #[error("{field}: {msg}")]
    BadField {
        /// The field, e.g. `inputs.Usr1.-1`.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// An input that cannot be opened (code 5).
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// No room with this id.
    #[error("no mixer {0}")]
    NotFound(String),
    /// A room with this id is recording (code 906).
    #[error("mixer {0} is already running")]
    AlreadyStarted(String),
    /// The room limit or the capacity is reached, or the host is draining (code 907).
    #[error("{0}")]
    NoCapacity(String),
    /// A publish to a camera that a publisher or one of the room's inputs feeds already
    /// (code 906).
    #[error("{0}")]
    InputBusy(String),
    /// The mixer refused or failed (its own code).
    #[error(transparent)]
    Mixer(#[from] MixerError),
}

/// What kind of failure a [`HostError`] is, for a front to map (HTTP status, exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (HTTP 400).
    BadRequest,
    /// No such room (404).
    NotFound,
    /// Conflicts with a running room (409).
    Conflict,
    /// No room for it now (503).
    Unavailable,
    /// The recording failed (500).
    Internal,
}

impl HostError {
    /// The vendor's error code.
    pub fn code(&self) -> i32 {
        match self {
            HostError::Config(_) | HostError::BadField { .. } | HostError::Feed(_) => {
                codes::PARAM_ERR
            }
            HostError::NotFound(_) => codes::PARAM_ERR,
            HostError::AlreadyStarted(_) | HostError::InputBusy(_) => codes::ALREADY_STARTED,
            HostError::NoCapacity(_) => codes::NO_CAPACITY,
            HostError::Mixer(e) => e.code(),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HostError::Config(_) | HostError::BadField { .. } | HostError::Feed(_) => {
                ErrorKind::BadRequest
            }
            HostError::NotFound(_) => ErrorKind::NotFound,
            HostError::AlreadyStarted(_) | HostError::InputBusy(_) => ErrorKind::Conflict,
            HostError::NoCapacity(_) => ErrorKind::Unavailable,
            HostError::Mixer(e) => match e {
                MixerError::Config(_)
                | MixerError::Frame(_)
                | MixerError::TooManySources(_)
                | MixerError::BadUser(_)
                | MixerError::Picture(_)
                | MixerError::WrongMode(_) => ErrorKind::BadRequest,
                MixerError::Stopped { .. } => ErrorKind::Conflict,
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// A room as `list`/`get` report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    /// The mixer id.
    #[serde(rename = "mixerID")]
    pub mixer_id: String,
    /// The vendor's mixer state (0 NULL … 4 STOPPING).
    pub state: u8,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// Every output's latest info (the vendor's `outputInfo`).
    pub outputs: Vec<OutputInfo>,
    /// The mixer's counters.
    pub stats: MixerStats,
    /// Per-source input counters.
    pub sources: Vec<SourceStats>,
    /// The inputs as given (camid or user → URL, credentials redacted).
    pub inputs: Vec<(String, String)>,
    /// The state and counters of each URL input (pulled live), in the order given.
    pub input_states: Vec<feed::pull::InputStats>,
    /// What each file input's video decoder did (frames decoded, skipped as shown by no
    /// tick), in the order given.
    pub decodes: Vec<feed::DecodeStats>,
    /// The encoder in use, e.g. `libx264`.
    pub encoder: String,
    /// The compositor in use.
    pub backend: String,
    /// 0, or the code that ended it.
    pub err_code: i32,
    /// Empty, or why it ended.
    pub err_desc: String,
}

struct Room {
    id: Arc<str>,
    /// The mixer while the room records; its final info once it ended (the mixer, its
    /// threads and buffers are gone then).
    phase: Mutex<Phase>,
    created_at: i64,
    inputs: Vec<(String, String)>,
    /// The URL inputs' states, by the key this room gave each.
    pulls: Vec<(String, Arc<feed::pull::PullInput>)>,
    /// The pulled sources this room takes part in (shared with other rooms pulling the same
    /// URL).
    shared: Vec<Arc<feed::shared::SharedFeed>>,
    /// The file inputs' decoder counts.
    decodes: Vec<(String, Arc<crate::media::decode::DecodeCounts>)>,
    /// The cameras publishers fed or feed ([`Host::publish`]), by camid.
    published: Mutex<BTreeMap<String, Published>>,
    /// The users whose audio comes from the room's files or URLs (a publisher of their camera
    /// does not bring it).
    audio_taken: Vec<String>,
    /// Whether a URL's (or publisher's) video and audio are taken at all.
    feed_video: bool,
    feed_audio: bool,
    /// Set to end the feeds.
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// (code, description) once it ended.
    ended: Mutex<Option<(i32, String)>>,
    /// Order of ending (for forgetting the oldest ended rooms).
    ended_seq: AtomicU64,
    /// The latest snapshot's JPEG, by the picture it was made of.
    jpeg: Mutex<Option<CachedJpeg>>,
}

/// A camera a publisher took ([`Host::publish`]).
struct Published {
    input: Arc<feed::pull::PullInput>,
    /// A publisher holds it now.
    held: bool,
    /// The user whose audio it brings.
    audio: Option<String>,
}

/// A publisher's hold on one camera of a room ([`Host::publish`]): where its frames go, its
/// input's state and counters, and the room's stop flag. Dropping it lets the camera go (the
/// input turns `idle`; the mixer shows the placeholder after its `source_timeout`).
pub struct Publication {
    spec: feed::pull::PullSpec,
    input: Arc<feed::pull::PullInput>,
    stop: Arc<AtomicBool>,
    target: Arc<dyn feed::file::FeedTarget>,
    room: std::sync::Weak<Room>,
    /// Why the publisher left (the idle input's error), if [`Publication::end`] said.
    why: Option<String>,
}

impl std::fmt::Debug for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publication")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Publication {
    /// What it feeds: `video` = the camid (`None` when the room records no video), `audio` =
    /// the user (`None` when the room's files or URLs, or another publisher, bring it).
    pub fn spec(&self) -> &feed::pull::PullSpec {
        &self.spec
    }

    /// The input's shared state and counters (in the room's `inputStates` and `/metrics`).
    pub fn input(&self) -> &Arc<feed::pull::PullInput> {
        &self.input
    }

    /// What to push frames and audio into (the room's mixer or per-stream recorder).
    pub fn target(&self) -> Arc<dyn feed::file::FeedTarget> {
        self.target.clone()
    }

    /// The room's stop flag: set once the room ends (the publisher should then hang up).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Whether the room ended.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Lets the camera go (as dropping it does) with `why` as the idle input's error, e.g.
    /// "no media for 5 s" (a drop says "the publisher left").
    pub fn end(mut self, why: &str) {
        self.why = Some(why.to_string());
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        // `idle` before the camera is free: a publisher that takes it next sets `connecting`
        // after this, never the other way round
        if !self.stopped() {
            let why = self.why.as_deref().unwrap_or("the publisher left");
            self.input.set_state(feed::pull::InputState::Idle, why);
        }
        if let Some(room) = self.room.upgrade() {
            let mut published = room.published.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = published.get_mut(&self.spec.key) {
                p.held = false;
            }
        }
    }
}

/// What records a room: a mixer (mode 0), or a per-stream recorder (mode 1).
#[derive(Clone)]
enum Engine {
    Mix(Arc<Mixer>),
    Streams(Arc<Streams>),
}

/// A mode 1 room: its [`StreamRecorder`] (pushed to under the read lock, destroyed under the
/// write lock) and the latest info of each stream's file, from its events.
struct Streams {
    rec: RwLock<StreamRecorder>,
    /// The recorder's state as its events said (read without the lock, which a destroy holds
    /// while the streams' files are finalised).
    state: AtomicU8,
    outputs: Mutex<BTreeMap<u32, OutputInfo>>,
    /// Set, and notified, once the room's events have passed its NULL.
    done: (Mutex<bool>, Condvar),
}

impl Streams {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, StreamRecorder> {
        self.rec.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The recorder for a feed's push, which must not wait: while it is being destroyed (the
    /// write lock held for seconds) the push is refused, so a feed shared with other rooms is
    /// not held up.
    fn feeding(&self) -> Result<std::sync::RwLockReadGuard<'_, StreamRecorder>, MixerError> {
        match self.rec.try_read() {
            Ok(g) => Ok(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                Err(MixerError::WrongMode("the recorder is stopping"))
            }
        }
    }

    fn state(&self) -> MixerState {
        match self.state.load(Ordering::Acquire) {
            1 => MixerState::Starting,
            2 => MixerState::Running,
            4 => MixerState::Stopping,
            _ => MixerState::Null,
        }
    }

    fn outputs(&self) -> Vec<OutputInfo> {
        let g = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        g.values().cloned().collect()
    }

    /// Waits until the room's NULL has been forwarded (its outputs final), up to `timeout`.
    fn wait_done(&self, timeout: Duration) -> bool {
        let (m, cv) = &self.done;
        let g = m.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |d| !*d)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }

    /// Ends every stream's file; returns their final infos once the events reported them.
    fn destroy(&self) -> Result<Vec<OutputInfo>, MixerError> {
        let res = self
            .rec
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .destroy();
        self.wait_done(Duration::from_secs(10));
        res.map(|()| self.outputs())
    }
}

impl feed::file::FeedTarget for Streams {
    fn file_clock(&self) -> feed::file::FileClock {
        // each stream's mixer keeps its own clock, from its first frame: push in real time
        feed::file::FileClock::starting_now()
    }

    fn push_video_at(
        &self,
        camid: &str,
        frame: crate::model::frame::VideoFrame,
        _capture: Duration,
    ) -> Result<(), MixerError> {
        self.feeding()?.push_video(camid, frame)
    }

    fn push_audio(
        &self,
        user: &str,
        frame: crate::model::audio::AudioFrame,
    ) -> Result<(), MixerError> {
        // (capture times are on each stream's own clock: none given, the chunks follow each
        // other as they come)
        self.feeding()?.push_audio(user, frame.without_capture())
    }
}

impl Engine {
    fn state(&self) -> MixerState {
        match self {
            Engine::Mix(m) => m.state(),
            Engine::Streams(s) => s.state(),
        }
    }

    /// Ends the recording with what was captured until now; returns the final outputs once
    /// the files are final.
    fn stop_and_wait(&self) -> Result<Vec<OutputInfo>, MixerError> {
        match self {
            Engine::Mix(m) => {
                m.stop();
                m.wait()
            }
            Engine::Streams(s) => s.destroy(),
        }
    }

    /// Waits up to `timeout` for the recording to end on its own (a mode 1 room never does).
    fn wait_timeout(&self, timeout: Duration) {
        match self {
            Engine::Mix(m) => drop(m.wait_timeout(timeout)),
            Engine::Streams(s) => drop(s.wait_done(timeout)),
        }
    }
}

/// A room's engine while it records, or what is left of it once it ended.
enum Phase {
    Live(Engine),
    /// The final info (its `err_code`/`err_desc` are read from [`Room::ended`]).
    Ended(Box<RoomInfo>),
}

/// A snapshot's JPEG and the picture it was made of.
type CachedJpeg = (Arc<I420Image>, Arc<Vec<u8>>);

impl Room {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end(&self) -> Option<(i32, String)> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The engine while the room records (`None` once it ended and was let go of).
    fn live(&self) -> Option<Engine> {
        match &*self.phase() {
            Phase::Live(e) => Some(e.clone()),
            Phase::Ended(_) => None,
        }
    }

    /// The mixer while a mode 0 room records.
    fn live_mixer(&self) -> Result<Arc<Mixer>, HostError> {
        match self.live() {
            Some(Engine::Mix(m)) => Ok(m),
            Some(Engine::Streams(_)) => Err(mode1(&self.id)),
            None => Err(self.ended_error()),
        }
    }

    /// What a call on an ended room gets: the mixer's own "stopped" error.
    fn ended_error(&self) -> HostError {
        let (code, desc) = self.end().unwrap_or_else(|| {
            (
                codes::OK,
                "the recording was stopped (stop, stop_after or destroy)".into(),
            )
        });
        HostError::Mixer(MixerError::Stopped { code, desc })
    }

    fn info_of(&self, engine: &Engine) -> RoomInfo {
        let mixer = match engine {
            Engine::Mix(m) => m,
            Engine::Streams(s) => {
                return RoomInfo {
                    mixer_id: self.id.to_string(),
                    state: s.state() as u8,
                    created_at: self.created_at,
                    outputs: s.outputs(),
                    stats: MixerStats::default(),
                    sources: Vec::new(),
                    inputs: self.inputs.clone(),
                    input_states: self.pull_stats(),
                    decodes: self.decode_stats(),
                    encoder: String::new(),
                    backend: PER_STREAM_BACKEND.into(),
                    err_code: 0,
                    err_desc: String::new(),
                }
            }
        };
        RoomInfo {
            mixer_id: self.id.to_string(),
            state: mixer.state() as u8,
            created_at: self.created_at,
            outputs: mixer.outputs(),
            stats: mixer.stats(),
            sources: mixer.source_stats(),
            inputs: self.inputs.clone(),
            input_states: self.pull_stats(),
            decodes: self.decode_stats(),
            encoder: mixer.encoder_name().to_string(),
            backend: mixer.backend_name().to_string(),
            err_code: 0,
            err_desc: String::new(),
        }
    }

    fn decode_stats(&self) -> Vec<feed::DecodeStats> {
        self.decodes
            .iter()
            .map(|(c, n)| feed::DecodeStats::of(c, n))
            .collect()
    }

    fn pull_stats(&self) -> Vec<feed::pull::InputStats> {
        let mut v: Vec<_> = self
            .pulls
            .iter()
            .map(|(key, p)| feed::pull::InputStats {
                input: key.clone(),
                ..p.stats()
            })
            .collect();
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        v.extend(published.values().map(|p| p.input.stats()));
        v
    }

    fn info(&self) -> RoomInfo {
        let mut info = match &*self.phase() {
            Phase::Live(m) => self.info_of(m),
            Phase::Ended(i) => (**i).clone(),
        };
        (info.err_code, info.err_desc) = self.end().unwrap_or_default();
        info
    }

    fn state(&self) -> MixerState {
        match &*self.phase() {
            Phase::Live(e) => e.state(),
            Phase::Ended(_) => MixerState::Null,
        }
    }

    fn running(&self) -> bool {
        self.state() != MixerState::Null
    }

    /// Once the mixer is back at NULL: keeps its final info and lets go of the mixer (its
    /// threads, buffers and encoder go once the feeds, which end on their own, let go too).
    /// Idempotent; a room still recording is left as it is.
    fn finish(&self) {
        let mixer = {
            let mut phase = self.phase();
            let Phase::Live(m) = &*phase else { return };
            if m.state() != MixerState::Null {
                return;
            }
            let m = m.clone();
            let mut info = self.info_of(&m);
            info.state = MixerState::Null as u8;
            // the pulls end with the room (their threads see the stop flag set below)
            for i in &mut info.input_states {
                i.state = feed::pull::InputState::Stopped;
            }
            *phase = Phase::Ended(Box::new(info));
            m
        };
        *self.jpeg.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.stop.store(true, Ordering::Relaxed);
        let ended: Vec<JoinHandle<()>> = self.shared.iter().filter_map(|f| f.prune()).collect();
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ended);
        // (the last reference may be a feed's, dropped on its own thread)
        drop(mixer);
        give_back_freed_memory();
    }

    /// Ends the feeds and joins their threads (off the caller's thread).
    fn release_feeds(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // a shared pull goes on for the rooms still in it; the last one to leave joins it
        let ended: Vec<JoinHandle<()>> = self.shared.iter().filter_map(|f| f.prune()).collect();
        let mut threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        threads.extend(ended);
        if !threads.is_empty() {
            let _ = std::thread::Builder::new()
                .name("cm-feed-join".into())
                .spawn(move || {
                    threads.into_iter().for_each(|t| drop(t.join()));
                    give_back_freed_memory();
                });
        }
    }
}

/// Hands the memory an ended room freed back to the system. glibc keeps freed blocks in its
/// arenas (one per thread that allocated: the encoder's, the compositor's, the feeds'), so a
/// long-running host's RSS would stay at its peak after rooms end; `malloc_trim` returns the
/// free pages of every arena.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists (thread-safe in glibc).
    unsafe {
        libc::malloc_trim(0);
    }
}

enum Slot {
    /// Being created (the id is taken).
    Starting,
    Room(Arc<Room>),
}

struct Inner {
    settings: HostSettings,
    rooms: Mutex<HashMap<String, Slot>>,
    hub: EventHub,
    draining: AtomicBool,
    ids: AtomicU64,
    ended: AtomicU64,
    capacity: capacity::Capacity,
    /// Pending uploads resumed, once per bucket (endpoint, region, bucket) per host.
    #[cfg(feature = "upload")]
    resumed: Mutex<Vec<(String, journal::Resumer)>>,
    /// The distinct upload targets (`storageConfig`) of the rooms created, newest first.
    targets: Mutex<Vec<StorageSettings>>,
    /// The pulled sources running, each shared by the rooms that pull its URL.
    shared: Mutex<Vec<std::sync::Weak<feed::shared::SharedFeed>>>,
}

/// Upload targets a host remembers, at most (the oldest is forgotten).
pub const MAX_UPLOAD_TARGETS: usize = 32;

/// The process's rooms (see the [module docs](self)). Cheap to clone: clones share the rooms.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("storage", &self.inner.settings.storage)
            .field("rooms", &self.rooms_running())
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The backend a mode 1 room reports (it composes nothing).
const PER_STREAM_BACKEND: &str = "none (mode 1: one file per stream)";

/// What a mode 0 call (an update, the mixer, a snapshot) on a mode 1 room gets (code 5).
fn mode1(id: &str) -> HostError {
    HostError::BadField {
        field: "mode".into(),
        msg: format!(
            "mixer {id} records one file per stream (mode 1): it has no layout to update or \
             picture to show"
        ),
    }
}

/// Whether `id` is a valid mixer id.
pub(crate) fn check_id(id: &str) -> Result<(), HostError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(HostError::BadField {
            field: "mixerID".into(),
            msg: format!(
                "{id:?}: expected 1-64 characters of A-Z a-z 0-9 _ - . (not starting with '.')"
            ),
        })
    }
}

impl Host {
    /// A host with no rooms yet. Room mixers run in real time (unless created offline with
    /// [`Host::create_with`]).
    ///
    /// The host owns one [`Services`] (the one in `settings.mixer.services`, else a new one)
    /// and hands it to every room: the rooms batch on one GPU renderer, drop frames on one
    /// releaser thread and share the upload slots ([`Host::services`]).
    pub fn new(settings: HostSettings) -> Host {
        let mut settings = settings;
        settings.mixer.mode = PaceMode::Realtime;
        settings.mixer.services.get_or_insert_with(Services::new);
        let backlog = settings.backlog;
        let capacity = capacity::Capacity::new(settings.room_cost, settings.cores);
        let inner = Arc::new(Inner {
            settings,
            rooms: Mutex::new(HashMap::new()),
            hub: EventHub::new(backlog),
            draining: AtomicBool::new(false),
            ids: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            capacity,
            #[cfg(feature = "upload")]
            resumed: Mutex::new(Vec::new()),
            targets: Mutex::new(Vec::new()),
            shared: Mutex::new(Vec::new()),
        });
        // the capacity model samples the process's CPU time once a second while the host lives
        let weak = Arc::downgrade(&inner);
        let _ = std::thread::Builder::new()
            .name("cm-host-capacity".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let Some(inner) = weak.upgrade() else { return };
                Host { inner }.capacity();
            });
        Host { inner }
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &HostSettings {
        &self.inner.settings
    }

    /// The services every room of this host runs on.
    pub fn services(&self) -> &Services {
        self.inner
            .settings
            .mixer
            .services
            .as_ref()
            .expect("set by Host::new")
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rooms recording now (or being created).
    pub fn rooms_running(&self) -> usize {
        self.rooms()
            .values()
            .filter(|s| match s {
                Slot::Starting => true,
                Slot::Room(r) => r.running(),
            })
            .count()
    }

    /// Whether a create would be taken now: not draining, below the room limit, and (once a
    /// room's cost is measured) room for one more.
    pub fn accepting(&self) -> bool {
        let running = self.rooms_running();
        !self.inner.draining.load(Ordering::Acquire)
            && self.inner.settings.max_rooms.is_none_or(|m| running < m)
            && !self.refused_for_capacity(running)
    }

    /// The capacity estimate now (rooms this process can take on top of the running ones).
    pub fn capacity(&self) -> capacity::CapacityEstimate {
        let running = self.rooms_running();
        let left = self
            .inner
            .settings
            .max_rooms
            .map(|m| m.saturating_sub(running));
        self.inner.capacity.estimate(running, left)
    }

    /// Whether a measured cost says another room would not keep real time.
    fn refused_for_capacity(&self, running: usize) -> bool {
        let e = self.inner.capacity.estimate(running, None);
        running > 0 && e.measured && e.rooms_more == 0
    }

    /// Starts a room: checks the id, the config and every input, takes a place under the room
    /// limit, opens the inputs and the mixer (its files), and feeds it in real time. Returns
    /// its mixer id once it is RUNNING. Nothing is recorded when a check fails.
    pub fn create(&self, req: CreateRoom) -> Result<String, HostError> {
        self.create_with(req, PaceMode::Realtime)
    }

    /// As [`Host::create`], paced as `pace` says: [`PaceMode::Realtime`] is `create`;
    /// [`PaceMode::Offline`] is a room whose caller pushes the frames (through
    /// [`Host::mixer`]) and advances its clock ([`Mixer::advance_frames`]), as fast as it
    /// likes: it takes no file inputs (they are fed in real time), and a mode 1 config is
    /// refused (per-stream recording is real time). Everything else (the checks, the room
    /// limit, events, get/list/destroy) is as for any room.
    pub fn create_with(&self, req: CreateRoom, pace: PaceMode) -> Result<String, HostError> {
        if pace == PaceMode::Offline && !req.inputs.is_empty() {
            return Err(HostError::BadField {
                field: "inputs".into(),
                msg: "an offline room takes no file inputs: its caller pushes the frames and \
                      advances its clock"
                    .into(),
            });
        }
        if let Some(id) = &req.mixer_id {
            check_id(id)?;
        }
        let config = MixerConfig::from_value(req.config)?;
        self.create_parsed(
            CreateParsed {
                mixer_id: req.mixer_id,
                config,
                inputs: req.inputs,
                pictures: Vec::new(),
            },
            pace,
        )
    }

    /// As [`Host::create_with`], with a config already parsed and pictures to register before
    /// the room's inputs are fed (what `record` uses: it reads its own config and pictures).
    pub fn create_parsed(&self, req: CreateParsed, pace: PaceMode) -> Result<String, HostError> {
        if pace == PaceMode::Offline && !req.inputs.is_empty() {
            return Err(HostError::BadField {
                field: "inputs".into(),
                msg: "an offline room takes no file inputs: its caller pushes the frames and \
                      advances its clock"
                    .into(),
            });
        }
        if req.config.per_stream.is_some() && !req.pictures.is_empty() {
            return Err(mode1(req.mixer_id.as_deref().unwrap_or("(new)")));
        }
        let id = match req.mixer_id {
            Some(id) => {
                check_id(&id)?;
                id
            }
            None => self.new_id(),
        };
        let config = req.config;
        let target = config.storage.clone();
        let (video, audio, pulls) = self.resolve_inputs(&req.inputs)?;
        self.reserve(&id)?;
        #[cfg(feature = "upload")]
        if let Some(st) = &config.storage {
            if self.inner.settings.resume_uploads {
                self.resume_pending(&id, st);
            }
        }
        let started = self.start(
            &id,
            config,
            (&video, &audio, pulls),
            req.pictures,
            req.inputs,
            pace,
        );
        let mut rooms = self.rooms();
        match started {
            Ok(room) => {
                rooms.insert(id.clone(), Slot::Room(room));
                drop(rooms);
                if let Some(t) = &target {
                    self.add_upload_target(t);
                }
                Ok(id)
            }
            Err(e) => {
                rooms.remove(&id);
                self.inner.capacity.rooms_changed();
                Err(e)
            }
        }
    }

    /// The distinct upload targets this host knows, newest first: the `storageConfig` of each
    /// room it created, and those given to [`Host::add_upload_target`]. Targets differing only
    /// in `keepLocal` are one; the same bucket with other credentials is another target (a
    /// room created with a wrong key does not replace the one that works: the service tries
    /// a bucket's credentials newest first). What the service lists, reads and deletes
    /// recordings in besides the storage root. The secret key is in them (a client needs
    /// it); [`StorageSettings`]' `Debug` and serialisation leave it out.
    pub fn upload_targets(&self) -> Vec<StorageSettings> {
        self.inner
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Remembers an upload target (see [`Host::upload_targets`]): a bucket recordings were
    /// uploaded to before this process started (from the operator's configuration), or a
    /// room's. At most [`MAX_UPLOAD_TARGETS`] are kept.
    pub fn add_upload_target(&self, st: &StorageSettings) {
        let same = |a: &StorageSettings| {
            a.vendor == st.vendor
                && a.endpoint == st.endpoint
                && a.region == st.region
                && a.bucket == st.bucket
                && a.access_key == st.access_key
                && a.secret_key == st.secret_key
        };
        let mut t = self.inner.targets.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|a| !same(a));
        t.insert(0, st.clone());
        t.truncate(MAX_UPLOAD_TARGETS);
    }

    /// Uploads an earlier run left pending under the storage root for this bucket go along,
    /// once per bucket per host, reported under `id` with `"resumed": true`.
    #[cfg(feature = "upload")]
    fn resume_pending(&self, id: &str, st: &crate::model::config::StorageSettings) {
        let key = format!("{:?}|{:?}|{}", st.endpoint, st.region, st.bucket);
        let mut done = self.inner.resumed.lock().unwrap_or_else(|e| e.into_inner());
        if done.iter().any(|(k, _)| *k == key) {
            return;
        }
        let hub = Arc::downgrade(&self.inner);
        let rid: Arc<str> = id.into();
        let resumer = journal::Resumer::start(
            st,
            &self.inner.settings.mixer,
            &self.inner.settings.storage,
            Box::new(move |info| {
                if let Some(inner) = hub.upgrade() {
                    inner
                        .hub
                        .publish_with(&rid, MixerEvent::OutputInfoChanged(info.clone()), true);
                }
            }),
        );
        if let Some(r) = resumer {
            done.push((key, r));
        }
    }

    fn new_id(&self) -> String {
        let n = self.inner.ids.fetch_add(1, Ordering::Relaxed);
        format!("mixer-{:x}-{n}", now_ms())
    }

    /// Takes the id and a place under the limit (or says why not).
    fn reserve(&self, id: &str) -> Result<(), HostError> {
        if self.inner.draining.load(Ordering::Acquire) {
            return Err(HostError::NoCapacity(
                "the service is shutting down: no new mixers".into(),
            ));
        }
        let mut rooms = self.rooms();
        if let Some(slot) = rooms.get(id) {
            let busy = match slot {
                Slot::Starting => true,
                Slot::Room(r) => r.running(),
            };
            if busy {
                return Err(HostError::AlreadyStarted(id.to_string()));
            }
        }
        let running = rooms
            .values()
            .filter(|s| match s {
                Slot::Starting => true,
                Slot::Room(r) => r.running(),
            })
            .count();
        if let Some(max) = self.inner.settings.max_rooms {
            if running >= max {
                return Err(HostError::NoCapacity(format!(
                    "{running} mixers are recording, the most this service takes (--max-rooms {max})"
                )));
            }
        }
        if self.refused_for_capacity(running) {
            let e = self.inner.capacity.estimate(running, None);
            return Err(HostError::NoCapacity(format!(
                "no capacity: {running} mixers use {:.2} of {} cores ({:.2} cores each, measured); \
                 another would not keep real time",
                e.cores_used, e.cores, e.room_cost
            )));
        }
        rooms.insert(id.to_string(), Slot::Starting);
        self.inner.capacity.rooms_changed();
        self.forget_ended(&mut rooms);
        Ok(())
    }

    fn forget_ended(&self, rooms: &mut HashMap<String, Slot>) {
        let mut ended: Vec<(u64, String)> = rooms
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Room(r) if !r.running() => {
                    Some((r.ended_seq.load(Ordering::Relaxed), k.clone()))
                }
                _ => None,
            })
            .collect();
        if ended.len() > ENDED_KEPT {
            ended.sort();
            for (_, k) in ended.iter().take(ended.len() - ENDED_KEPT) {
                rooms.remove(k);
            }
        }
    }

    /// The file inputs (video by camid, audio by user) and the URLs to pull: a URL's camid
    /// gets its video, and its user its audio unless an audio input or a file of the user's
    /// brings it.
    #[allow(clippy::type_complexity)]
    fn resolve_inputs(
        &self,
        inputs: &[(String, String)],
    ) -> Result<(Vec<Input>, Vec<Input>, Vec<feed::pull::PullSpec>), HostError> {
        let settings = &self.inner.settings;
        let root = settings.media_root.as_ref().unwrap_or(&settings.storage);
        let mut video = Vec::new();
        let mut audio = Vec::new();
        let mut pulls: Vec<feed::pull::PullSpec> = Vec::new();
        for (key, url) in inputs {
            let field = format!("inputs.{key}");
            if key.is_empty() || key.len() > 128 || key.chars().any(char::is_control) {
                return Err(HostError::BadField {
                    field: "inputs".into(),
                    msg: format!("{key:?}: expected a camid (Usr1.-1) or a user ID"),
                });
            }
            if feed::pull::is_url(url) {
                feed::pull::check_url(url).map_err(|msg| HostError::BadField {
                    field: field.clone(),
                    msg,
                })?;
                let (v, a) = if key.contains('.') {
                    (Some(key.clone()), None)
                } else {
                    (None, Some(key.clone()))
                };
                pulls.push(feed::pull::PullSpec {
                    key: key.clone(),
                    url: url.clone(),
                    video: v,
                    audio: a,
                });
                continue;
            }
            let path = if settings.trusted_inputs {
                trusted_file(url)
            } else {
                resolve_file(root, url)
            };
            let path = path.map_err(|msg| HostError::BadField {
                field: field.clone(),
                msg,
            })?;
            if key.contains('.') {
                video.push((key.clone(), path));
            } else {
                audio.push((key.clone(), path));
            }
        }
        let mut taken: Vec<String> = audio.iter().map(|(u, _)| u.clone()).collect();
        taken.extend(pulls.iter().filter_map(|p| p.audio.clone()));
        audio.extend(feed::file::audio_of_inputs(&video, &taken));
        for p in &mut pulls {
            if let Some(camid) = &p.video {
                let user = crate::pipeline::user_of(camid).to_string();
                if !audio.iter().any(|(u, _)| *u == user) && !taken.contains(&user) {
                    taken.push(user.clone());
                    p.audio = Some(user);
                }
            }
        }
        Ok((video, audio, pulls))
    }

    fn start(
        &self,
        id: &str,
        config: MixerConfig,
        (video, audio, pulls): (&[Input], &[Input], Vec<feed::pull::PullSpec>),
        pictures: Vec<(String, crate::model::frame::VideoFrame)>,
        given: Vec<(String, String)>,
        pace: PaceMode,
    ) -> Result<Arc<Room>, HostError> {
        let rid: Arc<str> = id.into();
        let hub = &self.inner.hub;
        hub.publish(&rid, MixerEvent::state(MixerState::Starting));
        let failed = |e: &HostError| MixerEvent::StateChanged {
            state: MixerState::Null,
            err: e.code(),
            err_desc: e.to_string(),
            encoder: None,
            backend: None,
        };
        let per_stream = config.per_stream.is_some();
        let with_audio = !audio.is_empty() && self.inner.settings.mixer.audio;
        // mode 1: every input goes to the recorder, which keeps the subscribed streams
        let audio = if per_stream || with_audio || config.audio_file.is_some() {
            audio
        } else {
            &[]
        };
        let inputs = if per_stream || config.has_video() {
            video
        } else {
            &[]
        };
        // a URL's video and audio are taken as the files' are
        let pull_audio =
            per_stream || self.inner.settings.mixer.audio || config.audio_file.is_some();
        let pull_video = per_stream || config.has_video();
        let pulls: Vec<feed::pull::PullSpec> = pulls
            .into_iter()
            .map(|mut p| {
                if !pull_video {
                    p.video = None;
                }
                if !pull_audio {
                    p.audio = None;
                }
                p
            })
            .filter(|p| p.video.is_some() || p.audio.is_some())
            .collect();
        // a mixer shows its file inputs' frames on its ticks only; a per-stream recorder keeps
        // them all
        let shown_at = (!per_stream).then_some(config.output.fps);
        let opened = match FileInputs::open(inputs, audio, shown_at) {
            Ok(o) => o,
            Err(e) => {
                let e = HostError::from(e);
                hub.publish(&rid, failed(&e));
                return Err(e);
            }
        };
        let storage = Storage::new(&self.inner.settings.storage);
        let settings = MixerSettings {
            mode: pace,
            ..self.inner.settings.mixer.clone()
        };
        let created = if per_stream {
            StreamRecorder::create(config, storage, settings).map(|rec| {
                Engine::Streams(Arc::new(Streams {
                    state: AtomicU8::new(rec.state() as u8),
                    rec: RwLock::new(rec),
                    outputs: Mutex::default(),
                    done: (Mutex::new(false), Condvar::new()),
                }))
            })
        } else {
            Mixer::create_with(config, storage, settings).map(|m| Engine::Mix(Arc::new(m)))
        };
        let engine = match created {
            Ok(e) => e,
            Err(e) => {
                let e = HostError::from(e);
                hub.publish(&rid, failed(&e));
                return Err(e);
            }
        };
        if let Engine::Mix(m) = &engine {
            for (pid, pic) in pictures {
                if let Err(e) = m.register_picture(&pid, pic) {
                    m.stop_now();
                    let _ = m.wait();
                    let e = HostError::from(e);
                    hub.publish(&rid, failed(&e));
                    return Err(e);
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        // a URL another room of this host pulls already is decoded once for both: the room
        // joins that feed (a new one is started otherwise)
        let shared: Vec<(Arc<feed::shared::SharedFeed>, u64, bool)> =
            pulls.iter().map(|p| self.shared_feed(p, &stop)).collect();
        let on_changes: Vec<feed::pull::OnChange> = pulls
            .iter()
            .map(|p| self.input_events_as(&rid, &stop, Some(p.key.clone())))
            .collect();
        let pull_inputs: Vec<(String, Arc<feed::pull::PullInput>)> = pulls
            .iter()
            .zip(&shared)
            .map(|(p, (f, _, _))| (p.key.clone(), f.input()))
            .collect();
        let audio_taken = audio
            .iter()
            .map(|(u, _)| u.clone())
            .chain(pulls.iter().filter_map(|p| p.audio.clone()))
            .collect();
        let room = Arc::new(Room {
            id: rid.clone(),
            phase: Mutex::new(Phase::Live(engine.clone())),
            created_at: now_ms(),
            inputs: given
                .into_iter()
                .map(|(k, u)| (k, crate::output::upload::redact_url(&u)))
                .collect(),
            pulls: pull_inputs,
            shared: shared.iter().map(|(f, _, _)| f.clone()).collect(),
            decodes: opened.counts.clone(),
            published: Mutex::default(),
            audio_taken,
            feed_video: pull_video,
            feed_audio: pull_audio,
            stop: stop.clone(),
            threads: Mutex::new(Vec::new()),
            ended: Mutex::new(None),
            ended_seq: AtomicU64::new(0),
            jpeg: Mutex::new(None),
        });
        // the room's events into the host's stream (the first is its current state); at NULL
        // the feeds end. A mode 1 recorder's stream starts with its STARTING (published above).
        // A mixer reported its first output infos while it was created (before RUNNING): they
        // go first, as in the mixer's own stream (later ones come through the subscription).
        let (events, streams, skip_starting) = match &engine {
            Engine::Mix(m) => {
                let rx = m.subscribe();
                for info in m.outputs() {
                    hub.publish(&rid, MixerEvent::OutputInfoChanged(info));
                }
                (rx, std::sync::Weak::new(), false)
            }
            Engine::Streams(s) => (s.read().events(), Arc::downgrade(s), true),
        };
        let this_room = room.clone();
        let forward = {
            let (host, room) = (self.inner.clone(), Arc::downgrade(&room));
            let mut events = events.into_iter().peekable();
            if skip_starting {
                let _ = events.next_if(|e| {
                    matches!(
                        e,
                        MixerEvent::StateChanged {
                            state: MixerState::Starting,
                            ..
                        }
                    )
                });
            }
            let spawned = std::thread::Builder::new()
                .name(format!("cm-room-{id}"))
                .spawn(move || forward_events(&host, &rid, events, room, streams));
            match spawned {
                Ok(t) => t,
                Err(e) => {
                    // the places taken in shared feeds are given back
                    this_room.release_feeds();
                    return Err(MixerError::Io(e).into());
                }
            }
        };
        let mut threads = Vec::new();
        for ((spec, (feed, id, new)), on_change) in pulls.into_iter().zip(shared).zip(on_changes) {
            let target: Arc<dyn feed::file::FeedTarget> = match &engine {
                Engine::Mix(m) => m.clone(),
                Engine::Streams(s) => s.clone(),
            };
            feed.join(
                id,
                target,
                spec.video.clone(),
                spec.audio.clone(),
                on_change,
                !new,
            );
            if new {
                let ps = self.inner.settings.pull.clone();
                let (f, s, i) = (feed.clone(), feed.stop_flag(), feed.input());
                match feed::pull::spawn(f, s, spec, ps, i) {
                    Ok(t) => feed.set_thread(t),
                    Err(e) => tracing::error!(error = %e, "pull thread did not start"),
                }
            }
        }
        threads.extend(match engine {
            Engine::Mix(m) => opened.spawn_realtime(m, stop),
            Engine::Streams(s) => opened.spawn_realtime(s, stop),
        });
        threads.push(forward);
        *room.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(room)
    }

    /// The callback that publishes an input's state changes as `inputStateChanged` events of
    /// room `rid` (none once the room's `stop` is set: its NULL is its last event).
    /// A place for a room (ended by `stop`) in the running feed of `spec`'s URL that decodes
    /// what it needs, or in a new one (`true`: its pull thread is to be started): the feed and
    /// the member's id ([`SharedFeed::reserve`](feed::shared::SharedFeed::reserve)).
    fn shared_feed(
        &self,
        spec: &feed::pull::PullSpec,
        stop: &Arc<AtomicBool>,
    ) -> (Arc<feed::shared::SharedFeed>, u64, bool) {
        let mut feeds = self.inner.shared.lock().unwrap_or_else(|e| e.into_inner());
        feeds.retain(|f| f.strong_count() > 0);
        for f in feeds.iter().filter_map(|f| f.upgrade()) {
            if f.serves(&spec.url, spec.video.is_some(), spec.audio.is_some()) {
                if let Some(id) = f.reserve(stop.clone()) {
                    return (f, id, false);
                }
            }
        }
        let f = feed::shared::SharedFeed::new(spec);
        let id = f.reserve(stop.clone()).expect("a new feed has not ended");
        feeds.push(Arc::downgrade(&f));
        (f, id, true)
    }

    fn input_events(&self, rid: &Arc<str>, stop: &Arc<AtomicBool>) -> feed::pull::OnChange {
        self.input_events_as(rid, stop, None)
    }

    /// As `input_events`, naming the input `key` (a shared pull's state is reported to each
    /// room under the name that room gave it) instead of the state's own.
    fn input_events_as(
        &self,
        rid: &Arc<str>,
        stop: &Arc<AtomicBool>,
        key: Option<String>,
    ) -> feed::pull::OnChange {
        let (hub, rid, stop) = (Arc::downgrade(&self.inner), rid.clone(), stop.clone());
        Arc::new(move |st| {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(h) = hub.upgrade() {
                h.hub.publish(
                    &rid,
                    MixerEvent::InputStateChanged {
                        input: key.clone().unwrap_or_else(|| st.input.clone()),
                        state: st.state.as_str().into(),
                        error: st.error.clone(),
                    },
                );
            }
        })
    }

    /// Takes camera `camid` of room `mixer_id` for a publisher (RTMP/SRT publish, WHIP), which
    /// then pushes into [`Publication::target`]: its video feeds the camera, its audio the
    /// camera's user (unless the room's files or URLs bring that user's audio). `source`
    /// describes the publisher in the room's info (e.g. `rtmp://127.0.0.1:50312`; credentials
    /// are redacted). The input is `connecting` until the publisher's feed says `live`, and
    /// `idle` once the [`Publication`] is dropped; a later publish takes it again.
    ///
    /// Refused before anything is decoded: an unknown mixer ([`HostError::NotFound`]), a room
    /// that ended, a camid that is not one (`Usr1.-1`), a camera that a publisher holds or one
    /// of the room's inputs feeds ([`HostError::InputBusy`]), and any publish once the host
    /// drains ([`HostError::NoCapacity`]: publishers already in go on through the grace).
    pub fn publish(
        &self,
        mixer_id: &str,
        camid: &str,
        source: &str,
    ) -> Result<Publication, HostError> {
        let room = self.room(mixer_id)?;
        let Some(engine) = room.live() else {
            return Err(room.ended_error());
        };
        if self.draining() {
            return Err(HostError::NoCapacity(format!(
                "{mixer_id}/{camid}: the service is draining: no new publishers"
            )));
        }
        if !camid.contains('.')
            || camid.len() > 128
            || camid.chars().any(|c| c.is_control() || c == '/')
        {
            return Err(HostError::BadField {
                field: "camid".into(),
                msg: format!("{camid:?}: expected a camid (user.camera, e.g. Usr1.-1)"),
            });
        }
        if room.inputs.iter().any(|(k, _)| k == camid) {
            return Err(HostError::InputBusy(format!(
                "{mixer_id}/{camid}: the mixer's inputs feed this camera"
            )));
        }
        let user = crate::model::audio::user_of(camid).to_string();
        let mut published = room.published.lock().unwrap_or_else(|e| e.into_inner());
        if published.get(camid).is_some_and(|p| p.held) {
            return Err(HostError::InputBusy(format!(
                "{mixer_id}/{camid}: a publisher sends this camera already"
            )));
        }
        let audio_held = published
            .values()
            .any(|p| p.held && p.audio.as_deref() == Some(user.as_str()));
        let spec = feed::pull::PullSpec {
            key: camid.to_string(),
            url: source.to_string(),
            video: room.feed_video.then(|| camid.to_string()),
            audio: (room.feed_audio && !audio_held && !room.audio_taken.contains(&user))
                .then_some(user),
        };
        let input = match published.get(camid) {
            Some(p) => p.input.clone(),
            None => feed::pull::PullInput::new(&spec, self.input_events(&room.id, &room.stop)),
        };
        published.insert(
            camid.to_string(),
            Published {
                input: input.clone(),
                held: true,
                audio: spec.audio.clone(),
            },
        );
        drop(published);
        input.set_url(source);
        if input.stats().state == feed::pull::InputState::Connecting {
            input.announce();
        } else {
            input.set_state(feed::pull::InputState::Connecting, "");
        }
        let target: Arc<dyn feed::file::FeedTarget> = match engine {
            Engine::Mix(m) => m,
            Engine::Streams(s) => s,
        };
        Ok(Publication {
            spec,
            input,
            stop: room.stop.clone(),
            target,
            room: Arc::downgrade(&room),
            why: None,
        })
    }

    fn room(&self, id: &str) -> Result<Arc<Room>, HostError> {
        match self.rooms().get(id) {
            Some(Slot::Room(r)) => Ok(r.clone()),
            _ => Err(HostError::NotFound(id.to_string())),
        }
    }

    /// Applies the vendor's update JSON (`UpdateCloudMixerContent`) at the room's next frame.
    pub fn update(&self, id: &str, update: &Value) -> Result<(), HostError> {
        Ok(self.room(id)?.live_mixer()?.update_content(update)?)
    }

    /// Stops a room with what was captured until now and returns once its files are final,
    /// with every output's final info (uploads go on and are reported as events).
    pub fn destroy(&self, id: &str) -> Result<Vec<OutputInfo>, HostError> {
        let room = self.room(id)?;
        let Some(engine) = room.live() else {
            // ended already: its final outputs (or what ended it)
            return match room.end() {
                Some((code, desc)) if code != codes::OK && code != codes::RECORD_MAX => {
                    Err(HostError::Mixer(MixerError::Stopped { code, desc }))
                }
                _ => Ok(room.info().outputs),
            };
        };
        let res = engine.stop_and_wait();
        drop(engine);
        room.release_feeds();
        room.finish();
        Ok(res?)
    }

    /// The room, as reported by `list`.
    pub fn get(&self, id: &str) -> Result<RoomInfo, HostError> {
        Ok(self.room(id)?.info())
    }

    /// The rooms made so far (not those still being created), in no order.
    fn all_rooms(&self) -> Vec<Arc<Room>> {
        self.rooms()
            .values()
            .filter_map(|s| match s {
                Slot::Room(r) => Some(r.clone()),
                Slot::Starting => None,
            })
            .collect()
    }

    /// Every room known (recording, and the latest [`ENDED_KEPT`] ended), by id.
    pub fn list(&self) -> Vec<RoomInfo> {
        let rooms = self.all_rooms();
        let mut v: Vec<RoomInfo> = rooms.iter().map(|r| r.info()).collect();
        v.sort_by(|a, b| a.mixer_id.cmp(&b.mixer_id));
        v
    }

    /// The room's mixer (to push frames from the embedder's own feeds, take a snapshot…)
    /// while it records; an ended room has let go of its mixer (a `Stopped` error).
    pub fn mixer(&self, id: &str) -> Result<Arc<Mixer>, HostError> {
        self.room(id)?.live_mixer()
    }

    /// The room's latest composed picture as a JPEG, at most about a second old: one picture
    /// is copied and encoded per second at most, whatever the number of readers (cached).
    pub fn snapshot_jpeg(&self, id: &str) -> Result<Arc<Vec<u8>>, HostError> {
        let room = self.room(id)?;
        let img = room
            .live_mixer()
            .ok()
            .and_then(|m| m.snapshot(Duration::from_secs(1)))
            .ok_or_else(|| HostError::NotFound(format!("{id}: no picture composed")))?;
        let mut cache = room.jpeg.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((i, j)) = cache.as_ref() {
            if Arc::ptr_eq(i, &img) {
                return Ok(j.clone());
            }
        }
        let jpg = crate::media::jpeg::encode_jpeg(&img, 5)
            .map_err(|e| HostError::Mixer(MixerError::Io(std::io::Error::other(e.to_string()))))?;
        let jpg = Arc::new(jpg);
        *cache = Some((img, jpg.clone()));
        Ok(jpg)
    }

    /// The sequence number of the newest event published (0: none yet).
    pub fn last_event_seq(&self) -> u64 {
        self.inner.hub.next_seq() - 1
    }

    /// The host's events after `since` (kept ones; `None`: none) and a receiver of every later
    /// one; the receiver ends if its reader falls [`events::SUBSCRIBER_QUEUE`] events behind
    /// (resume with the last sequence number seen).
    pub fn subscribe(&self, since: Option<u64>) -> (Vec<Arc<HostEvent>>, Receiver<Arc<HostEvent>>) {
        self.inner.hub.subscribe(since)
    }

    /// Calls `f` with every event `rx` (from [`Host::subscribe`]) brings and every later one,
    /// in order, for as long as `f` returns true: when the reader is cut off for falling
    /// behind, it goes on from the backlog after the last event it saw (events that left the
    /// backlog meanwhile show as a gap in `seq`). For a reader on a thread of its own (an event
    /// log, a webhook).
    pub fn follow(&self, mut rx: Receiver<Arc<HostEvent>>, mut f: impl FnMut(&HostEvent) -> bool) {
        let mut last = 0u64;
        loop {
            for e in rx.iter() {
                if !f(&e) {
                    return;
                }
                last = e.seq;
            }
            let (missed, next) = self.subscribe(Some(last));
            for e in missed {
                if !f(&e) {
                    return;
                }
                last = e.seq;
            }
            rx = next;
        }
    }

    /// One snapshot of the process.
    pub fn stats(&self) -> HostStats {
        let rooms = self.all_rooms();
        stats::snapshot(self, &rooms)
    }

    /// Stops taking rooms, lets running ones go on for up to `grace`, then stops the rest
    /// (each keeps what was captured until then) and waits until every file is final.
    /// Returns each room's id and final outputs (or why it failed).
    pub fn drain(&self, grace: Duration) -> Vec<(String, Result<Vec<OutputInfo>, HostError>)> {
        self.inner.draining.store(true, Ordering::Release);
        let rooms: Vec<(Arc<Room>, Engine)> = self
            .all_rooms()
            .into_iter()
            .filter_map(|r| r.live().map(|m| (r, m)))
            .collect();
        let until = Instant::now() + grace;
        for (_, e) in &rooms {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                e.wait_timeout(left);
            }
        }
        for (_, e) in &rooms {
            if let Engine::Mix(m) = e {
                m.stop();
            }
        }
        let out = rooms
            .into_iter()
            .map(|(r, m)| {
                let res = m.stop_and_wait().map_err(HostError::from);
                drop(m);
                r.release_feeds();
                r.finish();
                (r.id.to_string(), res)
            })
            .collect();
        // resumed uploads get what is left of the grace; unfinished ones keep their journals
        #[cfg(feature = "upload")]
        for (_, r) in
            std::mem::take(&mut *self.inner.resumed.lock().unwrap_or_else(|e| e.into_inner()))
        {
            r.finish(until.saturating_duration_since(Instant::now()));
        }
        out
    }

    /// Whether [`Host::drain`] was called.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }
}

fn forward_events(
    host: &Arc<Inner>,
    id: &Arc<str>,
    events: impl Iterator<Item = MixerEvent>,
    room: std::sync::Weak<Room>,
    streams: std::sync::Weak<Streams>,
) {
    for ev in events {
        match (&ev, streams.upgrade()) {
            (MixerEvent::OutputInfoChanged(i), Some(s)) => {
                let mut g = s.outputs.lock().unwrap_or_else(|e| e.into_inner());
                g.insert(i.id, i.clone());
            }
            (MixerEvent::StateChanged { state, .. }, Some(s)) => {
                s.state.store(*state as u8, Ordering::Release);
            }
            _ => {}
        }
        if let (
            MixerEvent::StateChanged {
                state,
                err,
                err_desc,
                ..
            },
            Some(r),
        ) = (&ev, room.upgrade())
        {
            if *state == MixerState::Null {
                *r.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some((*err, err_desc.clone()));
                r.ended_seq.store(
                    host.ended.fetch_add(1, Ordering::Relaxed) + 1,
                    Ordering::Relaxed,
                );
                r.stop.store(true, Ordering::Relaxed);
                host.capacity.rooms_changed();
                host.hub.publish(id, ev);
                if let Some(s) = streams.upgrade() {
                    let (m, cv) = &s.done;
                    *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    cv.notify_all();
                }
                // NULL is the mixer's last event: keep the final info, let go of the mixer
                r.finish();
                continue;
            }
        }
        host.hub.publish(id, ev);
    }
}

/// The file a trusted input names ([`HostSettings::trusted_inputs`]): the path as given
/// (`file:` stripped), absolute or relative to the working directory; opening it tells whether
/// it is there.
fn trusted_file(url: &str) -> Result<PathBuf, String> {
    let p = url.strip_prefix("file:").unwrap_or(url);
    if p.is_empty() {
        return Err("expected a file path".into());
    }
    Ok(PathBuf::from(p))
}

/// The file a `file:` input names under `root`, or why it is refused: only relative paths
/// without `..`, resolving (symlinks followed) to a file inside `root`.
fn resolve_file(root: &Path, url: &str) -> Result<PathBuf, String> {
    let rel = url.strip_prefix("file:").unwrap_or(url);
    if let Some((scheme, _)) = rel.split_once("://") {
        return Err(format!(
            "file:{scheme}://…: a file: input is a path under the media root (give a stream's URL \
             without file:)"
        ));
    }
    let p = Path::new(rel);
    if rel.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "{rel:?}: expected a relative path under the media root, without '..'"
        ));
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("media root {}: {e}", root.display()))?;
    let full = root
        .join(p)
        .canonicalize()
        .map_err(|_| format!("{rel:?}: no such file under the media root"))?;
    if !full.starts_with(&root) || !full.is_file() {
        return Err(format!("{rel:?}: no such file under the media root"));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_targets_are_distinct_newest_first_and_bounded() {
        let host = Host::new(HostSettings::new(std::env::temp_dir()));
        let t = |bucket: &str, key: &str| StorageSettings {
            vendor: 0,
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key: "ak".into(),
            secret_key: key.into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            keep_local: false,
        };
        host.add_upload_target(&t("one", "k1"));
        host.add_upload_target(&t("two", "k2"));
        // the same target again (keepLocal aside): one entry, now the newest
        let mut again = t("one", "k1");
        again.keep_local = true;
        host.add_upload_target(&again);
        // the same bucket with another key: a target of its own
        host.add_upload_target(&t("one", "k3"));
        let got = host.upload_targets();
        assert_eq!(
            got.iter()
                .map(|t| (t.bucket.as_str(), t.secret_key.as_str()))
                .collect::<Vec<_>>(),
            [("one", "k3"), ("one", "k1"), ("two", "k2")]
        );
        for i in 0..40 {
            host.add_upload_target(&t(&format!("b{i:03}"), "k"));
        }
        let got = host.upload_targets();
        assert_eq!(got.len(), MAX_UPLOAD_TARGETS);
        assert_eq!(got[0].bucket, "b039");
        assert!(!format!("{host:?}").contains("k3"));
    }

    #[test]
    fn inputs_outside_the_media_root_are_refused() {
        let d = std::env::temp_dir().join(format!("cm-host-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/sub")).unwrap();
        std::fs::write(d.join("root/sub/a.mp4"), b"x").unwrap();
        std::fs::write(d.join("secret.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("secret.mp4"), d.join("root/link.mp4")).unwrap();
        let root = d.join("root");
        assert!(resolve_file(&root, "sub/a.mp4").is_ok());
        assert!(resolve_file(&root, "file:sub/a.mp4").is_ok());
        for bad in [
            "../secret.mp4",
            "sub/../../secret.mp4",
            "/etc/passwd",
            "file:/etc/passwd",
            "link.mp4",
            "sub",
            "",
            "missing.mp4",
            "http://127.0.0.1/x.mp4",
            "concat:sub/a.mp4|../secret.mp4",
        ] {
            assert!(resolve_file(&root, bad).is_err(), "{bad} was taken");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn only_a_trusted_host_takes_paths_outside_the_media_root() {
        assert_eq!(
            trusted_file("file:/abs/a.mp4").unwrap(),
            PathBuf::from("/abs/a.mp4")
        );
        assert_eq!(trusted_file("../a.mp4").unwrap(), PathBuf::from("../a.mp4"));
        assert!(trusted_file("").is_err());
        let d = std::env::temp_dir().join(format!("cm-host-trusted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root")).unwrap();
        std::fs::write(d.join("secret.mp4"), b"x").unwrap();
        let outside = d.join("secret.mp4").display().to_string();
        let inputs = vec![("Usr1.-1".to_string(), outside.clone())];
        // the default (what `serve` runs with) confines
        let host = Host::new(HostSettings::new(d.join("root")));
        assert!(!host.settings().trusted_inputs);
        assert!(host.resolve_inputs(&inputs).is_err());
        let trusted = Host::new(HostSettings {
            trusted_inputs: true,
            ..HostSettings::new(d.join("root"))
        });
        let (video, _, _) = trusted.resolve_inputs(&inputs).unwrap();
        assert_eq!(video, [("Usr1.-1".to_string(), PathBuf::from(outside))]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn url_inputs_are_pulled_and_other_schemes_refused() {
        let host = Host::new(HostSettings::new(std::env::temp_dir()));
        let inputs = vec![
            (
                "Usr1.-1".to_string(),
                "rtmp://127.0.0.1:1/live/a".to_string(),
            ),
            ("Usr2.-1".to_string(), "srt://127.0.0.1:2".to_string()),
            ("Usr2".to_string(), "https://u:p@h/a.m3u8".to_string()),
        ];
        let (video, audio, pulls) = host.resolve_inputs(&inputs).unwrap();
        assert!(video.is_empty() && audio.is_empty());
        let got: Vec<_> = pulls
            .iter()
            .map(|p| (p.key.as_str(), p.video.as_deref(), p.audio.as_deref()))
            .collect();
        // Usr2's audio comes from its audio input, not from its camera's stream
        assert_eq!(
            got,
            [
                ("Usr1.-1", Some("Usr1.-1"), Some("Usr1")),
                ("Usr2.-1", Some("Usr2.-1"), None),
                ("Usr2", None, Some("Usr2")),
            ]
        );
        for bad in ["ftp://h/a.mp4", "gopher://h", "rtmp://", "rtmp://h/a b"] {
            let e = host
                .resolve_inputs(&[("Usr1.-1".into(), bad.into())])
                .unwrap_err();
            assert!(e.to_string().starts_with("inputs.Usr1.-1: "), "{bad}: {e}");
        }
    }

    #[test]
    fn mixer_ids_are_checked() {
        for ok in ["room1", "a.b-c_d", "X"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "../x", &"x".repeat(65)] {
            let e = check_id(bad).unwrap_err();
            assert!(e.to_string().starts_with("mixerID: "), "{e}");
        }
    }
}
