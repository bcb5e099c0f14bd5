//! The mixer: one recorded room (DESIGN §1–§2), a thin front over the pipeline's stages.
//!
//! ```text
//! push_video ─▶ SourceSlots ─(snapshot per tick)─▶ clock+compose ─bounded─▶ video encode ─┐
//! update_content ─▶ ArcSwap<Layout> ─(once per tick)─┘      │ MixUntil(t)                  ├─▶ writer ─▶ muxers ─▶ files
//! push_audio ─▶ audio queue (bounded) ───────────────────────┴─▶ audio mix + encode ──────┘
//! ```
//!
//! - The clock stage ([`super::video`]) ticks, composes, and moves the audio stage's timeline
//!   on; the video and audio stages ([`super::audio`]) hand timestamped packets of their
//!   tracks to one writer ([`super::writer`]) that owns the file muxers and feeds each live
//!   target's own thread ([`crate::output::live`]) (the video targets carry video + audio, an
//!   `audioFileCfg` file carries audio).
//! - `push_video`, `push_audio` and `update_content` never block on the frame path and hold no
//!   lock across a frame.
//! - One timeline for both tracks: video pts = n / fps, audio pts = samples / 48000, from the
//!   same start. Real time: a frame or audio captured at `t` (the mixer clock, [`Mixer::clock`])
//!   is in the output at `t`, composed/mixed at wall time `t + latency`
//!   ([`MixerSettings::latency`]), so lips stay in sync when audio and video arrive with
//!   different delays.
//! - [`PaceMode::Realtime`] ticks on the wall clock; [`PaceMode::Offline`] ticks when the caller
//!   advances synthetic time ([`Mixer::advance_to`], [`Mixer::run_offline`]), as fast as the
//!   machine allows.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::Value;

use super::audio::{audio_loop, AudioOutput};
use super::error::MixerError;
use super::inbox::{AudioInbox, PushError};
use super::services::Services;
use super::sources::{SourceSlots, DEFAULT_MAX_SOURCES};
use super::state::{Counters, EventHub, Shared};
use super::video::{clock_loop, encode_loop, Cmd, Msg, VideoSide, FRAME_POOL};
use super::writer::{writer_loop, Live, Output, Reporter, WriterMsg};
use crate::audio::mix::Mixdown;
use crate::audio::MIX_RATE;
use crate::compose::{self, Backend};
use crate::media::audio_enc::{AudioCodec, AudioEncoder};
use crate::media::video_enc::{EncoderSettings, VideoEncoder};
use crate::model::audio::AudioFrame;
use crate::model::config::ConfigError;
use crate::model::config::{check_pictures, AudioSettings, Container, MixerConfig, Target};
use crate::model::events::{codes, MixerEvent, MixerState, MixerStats, OutputInfo, OutputState};
use crate::model::frame::VideoFrame;
use crate::model::layout::Layout;
use crate::model::time::{frames_for, tick_time, ticks_before, LatestUpTo, PaceMode, PTS_SLACK};
use crate::output::live::{LiveSink, OwnedTrack};
use crate::output::segment::Segmented;
use crate::output::upload::{JournalKey, UploadOptions};
use crate::output::{header_needs, Muxer, Storage, TrackId, TrackKind, TrackSpec};

/// Track ids: the video, the audio of the video targets, the audio-only file.
const VIDEO_TRACK: TrackId = 0;
const AUDIO_TRACK: TrackId = 1;
const AUDIO_FILE_TRACK: TrackId = 2;

/// Default real-time latency: a frame or audio captured at `t` is composed/mixed at `t` + this.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(200);

/// Default longest recording (8 h); reaching it stops the recording with code 901.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(8 * 3600);

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
    /// Most distinct camids kept (frames of camids outside the layout included); also the
    /// most distinct users whose audio is kept.
    pub max_sources: usize,
    /// Real time: how late audio or video may arrive after its capture time. A frame captured
    /// at `t` is composed (its audio mixed) at wall time `t + latency`; audio arriving later is
    /// dropped and counted ([`MixerStats::audio_late_samples`]). Ignored offline.
    pub latency: Duration,
    /// Record an audio track in the video targets (default on; off gives a silent,
    /// video-only file as before audio existed).
    pub audio: bool,
    /// Replace an existing file at a target's path. Off (the default): an existing recording
    /// is never overwritten; the new one goes to the first free name `name_1.mp4`,
    /// `name_2.mp4`, … and that path is reported in `svrFilePathName`.
    pub overwrite: bool,
    /// Wall-clock time of the recording's first frame, which `%timestamp%` in text items
    /// counts from (tick `t` shows this + `t`). `None` (the default): when the mixer is
    /// created. Set it when recording files offline to show when they were captured.
    pub start_time: Option<SystemTime>,
    /// How finished files are uploaded when the config has a `storageConfig` (workers,
    /// retries and backoff, part size).
    pub upload: UploadOptions,
    /// Signs the upload journals left next to files not uploaded yet, so that only journals
    /// written by a holder of this key are resumed ([`crate::output::upload`]). Default: a
    /// random key (journals resumable by this process only); `cloudmixer record` keeps one in
    /// a file outside the storage tree. Never serialised.
    #[serde(skip)]
    pub journal_key: JournalKey,
    /// The services the mixer runs on: the GPU renderer it batches on, its frame releaser,
    /// its upload slots, fonts and encoder probes. `None` (the default): a [`Services`] of
    /// the mixer's own (its own `cm-release` thread, its own renderer if it composes on the
    /// GPU). A [`crate::host::Host`] sets its own here, so its rooms share one set; mixers
    /// created by hand share one by setting the same `Services`. Never serialised.
    #[serde(skip)]
    pub services: Option<Services>,
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
            latency: DEFAULT_LATENCY,
            audio: true,
            overwrite: false,
            start_time: None,
            upload: UploadOptions::default(),
            journal_key: JournalKey::random(),
            services: None,
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

fn target_names(svr_path_name: &str, targets: &[Target]) -> Vec<String> {
    let parts: Vec<String> = svr_path_name
        .split(';')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if parts.len() == targets.len() {
        parts
    } else {
        targets
            .iter()
            .map(|t| match t {
                Target::File { path, .. } => format!("/{}", path.display()),
                Target::Url { url } => url.clone(),
            })
            .collect()
    }
}

/// The reported names with the file names a muxer actually used (`rec.mp4` → `rec_1.mp4`).
fn renamed(names: Vec<String>, actual: Vec<Option<String>>) -> Vec<String> {
    names
        .into_iter()
        .zip(actual.into_iter().chain(std::iter::repeat(None)))
        .map(|(n, a)| match a {
            Some(file) => match n.rfind('/') {
                Some(i) => format!("{}{file}", &n[..=i]),
                None => file,
            },
            None => n,
        })
        .collect()
}

/// Everything opened before the threads start.
struct Opened {
    video: Option<(Box<dyn compose::Pipelined>, VideoEncoder)>,
    audio: Vec<AudioOutput>,
    outputs: Vec<Output>,
    lives: Vec<Live>,
}

fn open_audio(
    codec: AudioCodec,
    a: &AudioSettings,
    global: bool,
    track: TrackId,
) -> Result<AudioOutput, MixerError> {
    let ch = a.channel_count();
    let rate = a.bitrate.unwrap_or_else(|| codec.default_bitrate(ch));
    let enc = AudioEncoder::open(codec, ch, rate, global)?;
    // AAC priming (see AudioOutput); mp3's is in its LAME header, PCM has none
    let skip = match codec {
        AudioCodec::Aac => enc.initial_padding(),
        _ => 0,
    };
    Ok(AudioOutput::new(
        Mixdown::new(a.channels.clone()),
        enc,
        track,
        skip,
    ))
}

impl Mixer {
    /// Creates a real-time mixer with default settings and starts recording.
    pub fn create(config: MixerConfig, storage: Storage) -> Result<Mixer, MixerError> {
        Self::create_with(config, storage, MixerSettings::default())
    }

    /// Creates a mixer and starts recording: emits STARTING, opens the compositor, the
    /// encoders and every target, then emits the first output info and RUNNING (with the
    /// encoder and backend names). A failure emits `Error` and NULL and is returned.
    pub fn create_with(
        config: MixerConfig,
        storage: Storage,
        settings: MixerSettings,
    ) -> Result<Mixer, MixerError> {
        if config.per_stream.is_some() {
            return Err(MixerError::Config(ConfigError::Invalid {
                path: "mode".into(),
                rule: "mode 1 (one file per stream) is recorded by StreamRecorder, not Mixer"
                    .into(),
            }));
        }
        let (inbox, audio_rx) = AudioInbox::new(settings.max_sources);
        // no services given: this mixer's own (see `Services`)
        let services = settings.services.clone().unwrap_or_default();
        let mut shared = Arc::new(Shared {
            layout: ArcSwap::new(config.layout.clone()),
            slots: SourceSlots::with_releaser(
                settings.source_timeout,
                settings.max_sources,
                services.releaser().clone(),
            ),
            state: AtomicU8::new(MixerState::Null as u8),
            events: EventHub::default(),
            mode: settings.mode,
            latency: match settings.mode {
                PaceMode::Realtime => settings.latency,
                PaceMode::Offline => Duration::ZERO,
            },
            start: Instant::now(),
            start_unix_ms: match settings.start_time {
                Some(t) => t.duration_since(UNIX_EPOCH).map_or_else(
                    |e| -(e.duration().as_millis() as i64),
                    |d| d.as_millis() as i64,
                ),
                None => epoch_ms() as i64,
            },
            clock_us: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            stop_after: AtomicU64::new(u64::MAX),
            ended: Mutex::new(None),
            audio: inbox,
            counters: Counters::default(),
            uploads_abandoned: Default::default(),
            snapshot: Default::default(),
            services,
            config,
        });
        // the first subscriber, made before the first event: `events()` misses nothing
        let ev_rx = shared.events.subscribe_own();
        shared.set_state(MixerState::Starting);
        shared.emit(MixerEvent::state(MixerState::Starting));
        let opened = match Self::open_stages(&shared, &storage, &settings) {
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
        let Opened {
            video,
            audio,
            outputs,
            lives,
        } = opened;
        // the recording's clock starts now, when everything is open: capture time 0, the
        // first tick's frame (real time: composed `latency` later) and `startTime`
        let start_ms = epoch_ms();
        if let Some(sh) = Arc::get_mut(&mut shared) {
            sh.start = Instant::now();
            if settings.start_time.is_none() {
                sh.start_unix_ms = start_ms as i64;
            }
        }
        let backend_name = match &video {
            Some((c, _)) => c.describe(),
            None => "none (audio only)".to_string(),
        };
        // the video encoder; an audio-only mixer names its audio encoder
        let encoder_name = match (&video, audio.first()) {
            (Some((_, e)), _) => e.name().to_string(),
            (None, Some(a)) => a.enc.name().to_string(),
            (None, None) => String::new(),
        };
        let reporter = Reporter {
            start_time: start_ms,
        };
        let upload = super::uploads::plan_of(
            &shared.config,
            (&settings.upload, &settings.journal_key),
            &storage,
        );
        let mut lives = lives;
        for (_, ev) in reporter.infos(&outputs, &mut lives, OutputState::Running, 0, "") {
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

        let (wr_tx, wr_rx) = bounded::<WriterMsg>(256);
        let (cmd_tx, cmd_rx) = bounded::<Cmd>(4);
        let max_ticks = frames_for(shared.config.output.fps, settings.max_duration).max(1);
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(MixerError::Io)
        };
        let stages = 1 + usize::from(video.is_some());
        let s = shared.clone();
        threads.push(spawn(
            "cm-write",
            Box::new(move || writer_loop(s, outputs, lives, wr_rx, stages, reporter, upload)),
        )?);
        let s = shared.clone();
        let w = wr_tx.clone();
        let max_users = settings.max_sources;
        threads.push(spawn(
            "cm-audio",
            Box::new(move || audio_loop(s, audio_rx, audio, w, max_users)),
        )?);
        let video_side = match video {
            Some((compositor, encoder)) => {
                let (pool_tx, pool_rx) = bounded(FRAME_POOL);
                for _ in 0..FRAME_POOL {
                    let _ = pool_tx.send(encoder.alloc_frame());
                }
                let (frame_tx, frame_rx) = bounded::<Msg>(2);
                let s = shared.clone();
                let w = wr_tx.clone();
                threads.push(spawn(
                    "cm-encode",
                    Box::new(move || encode_loop(s, encoder, VIDEO_TRACK, frame_rx, pool_tx, w)),
                )?);
                Some(VideoSide {
                    compositor,
                    pool: pool_rx,
                    out: frame_tx,
                })
            }
            None => None,
        };
        drop(wr_tx);
        let s = shared.clone();
        threads.push(spawn(
            "cm-compose",
            Box::new(move || clock_loop(s, video_side, cmd_rx, max_ticks)),
        )?);
        Ok(Mixer {
            shared,
            events: ev_rx,
            cmd: Some(cmd_tx),
            threads,
            encoder: encoder_name,
            backend: backend_name,
        })
    }

    fn open_stages(
        shared: &Shared,
        storage: &Storage,
        settings: &MixerSettings,
    ) -> Result<Opened, MixerError> {
        let cfg = &shared.config;
        let services = &shared.services;
        let out = &cfg.output;
        // paths first: a bad target must not cost an encoder open
        crate::output::resolve_targets(storage, &out.targets)?;
        // a bad storageConfig, or one this build cannot upload to (no `upload` feature)
        super::uploads::check_storage(cfg)?;
        if let Some(af) = &cfg.audio_file {
            crate::output::resolve_targets(storage, std::slice::from_ref(&af.target))?;
        }
        let mut audio = Vec::new();
        let mut outputs = Vec::new();
        let mut lives = Vec::new();
        let mut video = None;
        if cfg.has_video() {
            let (global, inband) = header_needs(&out.targets);
            // live: no frame waits inside the encoder, so a crash loses little (DESIGN §6)
            let low_delay = settings.mode == PaceMode::Realtime;
            let encoder = VideoEncoder::open_with(
                services.encoder_probes(),
                out,
                &settings.encoder,
                global,
                inband,
                low_delay,
            )?;
            // the compositor writes the encoder's own input format into its frames
            let compositor = services.compositor(
                settings.backend,
                out.width,
                out.height,
                encoder.output_format(),
            )?;
            let mut tracks = vec![TrackSpec {
                id: VIDEO_TRACK,
                kind: TrackKind::Video { fps: out.fps },
                codec: encoder.context(),
                time_base: encoder.time_base(),
            }];
            if settings.audio {
                audio.push(open_audio(
                    AudioCodec::Aac,
                    &cfg.audio,
                    global,
                    AUDIO_TRACK,
                )?);
            }
            if let Some(a) = audio.first() {
                tracks.push(TrackSpec {
                    id: AUDIO_TRACK,
                    kind: TrackKind::Audio { rate: MIX_RATE },
                    codec: a.enc.context(),
                    time_base: a.enc.time_base(),
                });
            }
            // the files in one muxer; each HLS playlist in its own; each live URL a sink with
            // its own thread, so a live server never holds up the files
            let names = target_names(&out.svr_path_name, &out.targets);
            let mut groups: Vec<Vec<usize>> = Vec::new();
            let mut files = Vec::new();
            for (i, t) in out.targets.iter().enumerate() {
                match t {
                    Target::Url { url } => {
                        let owned = tracks
                            .iter()
                            .map(OwnedTrack::of)
                            .collect::<Result<Vec<_>, _>>()?;
                        lives.push(Live::new(
                            LiveSink::start(url, owned)?,
                            names[i].clone(),
                            i as u32,
                            tracks.iter().map(|t| t.id).collect(),
                        ));
                    }
                    Target::File {
                        container: Container::Hls,
                        ..
                    } => groups.push(vec![i]),
                    Target::File { .. } => files.push(i),
                }
            }
            if !files.is_empty() {
                groups.insert(0, files);
            }
            for (k, g) in groups.into_iter().enumerate() {
                let ts: Vec<Target> = g.iter().map(|&i| out.targets[i].clone()).collect();
                // the files (the first group) may be split into segments; HLS is already
                let limits = match (k, &out.targets[g[0]]) {
                    (
                        _,
                        Target::File {
                            container: Container::Hls,
                            ..
                        },
                    ) => Default::default(),
                    _ => out.segments,
                };
                let muxer = Segmented::open(storage, &ts, &tracks, settings.overwrite, limits)?;
                let actual = if limits.enabled() {
                    muxer.muxer().file_names()
                } else {
                    muxer.muxer().dest_names()
                };
                let names = renamed(g.iter().map(|&i| names[i].clone()).collect(), actual);
                outputs.push(Output {
                    muxer,
                    names,
                    ids: g.iter().map(|&i| i as u32).collect(),
                    upload: !matches!(
                        out.targets[g[0]],
                        Target::File {
                            container: Container::Hls,
                            ..
                        }
                    ),
                });
            }
            video = Some((compositor, encoder));
        }
        if let Some(af) = &cfg.audio_file {
            let (codec, global) = match af.target {
                Target::File {
                    container: Container::Mp3,
                    ..
                } => (AudioCodec::Mp3, false),
                Target::File {
                    container: Container::Wav,
                    ..
                } => (AudioCodec::Pcm, false),
                _ => (AudioCodec::Aac, true),
            };
            let a = open_audio(codec, &af.audio, global, AUDIO_FILE_TRACK)?;
            let muxer = Segmented::plain(Muxer::open(
                storage,
                std::slice::from_ref(&af.target),
                &[TrackSpec {
                    id: AUDIO_FILE_TRACK,
                    kind: TrackKind::Audio { rate: MIX_RATE },
                    codec: a.enc.context(),
                    time_base: a.enc.time_base(),
                }],
                settings.overwrite,
            )?);
            let names = renamed(
                target_names(&af.svr_path_name, std::slice::from_ref(&af.target)),
                muxer.muxer().dest_names(),
            );
            outputs.push(Output {
                muxer,
                names,
                ids: vec![out.targets.len() as u32],
                upload: true,
            });
            audio.push(a);
        }
        Ok(Opened {
            video,
            audio,
            outputs,
            lives,
        })
    }

    /// The mixer clock now: time since the mixer started (real time), or the synthetic time of
    /// the next tick (offline). Capture timestamps of pushed frames are on this clock.
    pub fn clock(&self) -> Duration {
        Duration::from_micros(self.shared.now_us())
    }

    /// Real time: media captured at `t` is composed (its audio mixed) at `t` + this; offline 0.
    pub fn latency(&self) -> Duration {
        self.shared.latency
    }

    /// Hands over a decoded frame of source `camid` (any size, format, rate). Never blocks;
    /// the frame's planes are moved, not copied. Real time: the frame is captured now (see
    /// [`Mixer::push_video_at`]); offline: at the time of the next tick.
    pub fn push_video(&self, camid: &str, frame: VideoFrame) -> Result<(), MixerError> {
        self.push_video_stamped(camid, frame, None)
    }

    /// As [`Mixer::push_video`], with the frame's capture time on the mixer clock
    /// ([`Mixer::clock`]): a real-time mixer shows it from the tick at `capture` on (composed at
    /// `capture + latency`), in step with audio captured at the same time.
    pub fn push_video_at(
        &self,
        camid: &str,
        frame: VideoFrame,
        capture: Duration,
    ) -> Result<(), MixerError> {
        self.push_video_stamped(camid, frame, Some(capture))
    }

    fn push_video_stamped(
        &self,
        camid: &str,
        frame: VideoFrame,
        capture: Option<Duration>,
    ) -> Result<(), MixerError> {
        if !self.shared.running() {
            return Err(self.shared.stopped_error());
        }
        let stamp = match (self.shared.mode, capture) {
            (PaceMode::Realtime, Some(c)) => c.as_micros().min(u64::MAX as u128) as u64,
            _ => self.shared.now_us(),
        };
        let layout = self.shared.layout.load();
        self.shared.slots.push(camid, frame, stamp, &layout)?;
        Ok(())
    }

    /// Hands over decoded audio of `user` (a user ID, or a camid: the part before the first
    /// '.' is the user). Never blocks, and allocates nothing once the user is known.
    ///
    /// The frame is placed on the timeline at its capture time ([`AudioFrame::with_capture`],
    /// on the mixer clock); without one at its arrival time (real time) or right after the
    /// user's previous frame (offline). Real time: audio arriving more than
    /// [`MixerSettings::latency`] after its capture time is dropped and counted. A full queue
    /// (the mixer far behind) refuses the frame with [`MixerError::Backlog`].
    pub fn push_audio(&self, user: &str, frame: AudioFrame) -> Result<(), MixerError> {
        match self.push_audio_inner(user, frame) {
            Ok(()) => Ok(()),
            Err(PushError::Full(_)) => {
                self.shared
                    .counters
                    .audio_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(MixerError::Backlog(
                    "the audio queue is full (the mixer is behind): frame dropped",
                ))
            }
            Err(PushError::Other(e)) => Err(e),
        }
    }

    fn push_audio_inner(&self, user: &str, frame: AudioFrame) -> Result<(), PushError> {
        if !self.shared.running() {
            return Err(PushError::Other(self.shared.stopped_error()));
        }
        let pos = match (frame.capture(), self.shared.mode) {
            (Some(c), _) => Some(c.as_secs_f64() * MIX_RATE as f64),
            // it arrives once complete: its first sample was captured one frame earlier
            (None, PaceMode::Realtime) => Some(
                (self.shared.start.elapsed().as_secs_f64() - frame.duration().as_secs_f64())
                    .max(0.0)
                    * MIX_RATE as f64,
            ),
            (None, PaceMode::Offline) => None,
        };
        let shared = &self.shared;
        shared
            .audio
            .push(|| shared.stopped_error(), user, frame, pos)
            .inspect(|()| {
                shared.counters.audio_frames.fetch_add(1, Ordering::Relaxed);
            })
    }

    /// The latest composed picture, at most `max_age` old: a copy of the next frame composed
    /// is made when the one kept is older (a copy costs one picture's bytes, made only when
    /// asked). `None` for a mixer without video, or one that has ended without a picture or
    /// composes none within 2 s.
    pub fn snapshot(&self, max_age: Duration) -> Option<Arc<crate::model::frame::I420Image>> {
        let snap = &self.shared.snapshot;
        let fresh = |l: &Option<(Instant, Arc<crate::model::frame::I420Image>)>| {
            l.as_ref()
                .filter(|(t, _)| t.elapsed() <= max_age)
                .map(|(_, i)| i.clone())
        };
        let mut latest = snap.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(img) = fresh(&latest) {
            return Some(img);
        }
        if !self.shared.config.has_video() || !self.shared.running() {
            return latest.as_ref().map(|(_, i)| i.clone());
        }
        snap.wanted.store(true, Ordering::Release);
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return latest.as_ref().map(|(_, i)| i.clone());
            }
            latest = snap
                .ready
                .wait_timeout(latest, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if let Some(img) = fresh(&latest) {
                return Some(img);
            }
        }
    }

    /// Counters: ticks, audio frames accepted, refused and late.
    pub fn stats(&self) -> MixerStats {
        self.shared.stats()
    }

    /// Input counters per source (frames received, used, replaced before use), by camid.
    pub fn source_stats(&self) -> Vec<super::sources::SourceStats> {
        self.shared.slots.stats()
    }

    /// Registers (or replaces) the picture that layout items of type 1 show by `resource_id`
    /// (a logo, a background, a "camera off" card). Unlike a camera it never times out.
    pub fn register_picture(
        &self,
        resource_id: &str,
        picture: VideoFrame,
    ) -> Result<(), MixerError> {
        if !self.shared.running() {
            return Err(self.shared.stopped_error());
        }
        let layout = self.shared.layout.load();
        self.shared.slots.pin(resource_id, picture, 0, &layout)?;
        Ok(())
    }

    /// As [`Mixer::register_picture`], from the bytes of a PNG or JPEG file (decoded here,
    /// once; an RGBA PNG keeps its transparency). Pictures over the limits of
    /// [`super::picture`] (4096 × 4096 pixels, 32 MiB), read from the header, are refused
    /// before anything is decoded.
    pub fn register_picture_bytes(
        &self,
        resource_id: &str,
        image: &[u8],
    ) -> Result<(), MixerError> {
        let picture = super::picture::load_picture_bytes(resource_id, image)
            .map_err(|e| MixerError::Picture(e.to_string()))?;
        self.register_picture(resource_id, picture)
    }

    /// Validates a live update (`{"videoFileCfg":{"layoutConfig":[…]}}`) and applies it from
    /// the next tick. A bad update is an error and changes nothing; so is an update that
    /// names a picture not registered ([`Mixer::register_picture`]) as a `resourceid`,
    /// `param.placeholder`.
    pub fn update_content<'a>(&self, update: impl Into<Update<'a>>) -> Result<(), MixerError> {
        // an ended (or ending) mixer draws nothing more: say so rather than accept it
        if !self.shared.running() {
            return Err(self.shared.stopped_error());
        }
        let layout = match update.into() {
            Update::Text(t) => self.shared.config.parse_update(t)?,
            Update::Value(v) => self.shared.config.parse_update_value(v)?,
        };
        check_pictures(&layout, |id| self.shared.slots.is_pinned(id))?;
        self.shared.layout.store(Arc::new(layout));
        Ok(())
    }

    /// The layout in force.
    pub fn layout(&self) -> Arc<Layout> {
        self.shared.layout.load_full()
    }

    /// The mixer's events from its creation on (STARTING, RUNNING, output infos, errors,
    /// STOPPING, NULL). All clones of this receiver share one queue: for a second reader use
    /// [`Mixer::subscribe`]. The stream ends (iteration stops) after NULL.
    ///
    /// Until this is first called the queue keeps only the latest
    /// [`OWN_EVENTS_KEPT`](super::OWN_EVENTS_KEPT) events (a server that reads
    /// [`Mixer::subscribe`] or `event_stream` instead never pays for it); from then on it keeps
    /// every event until read.
    pub fn events(&self) -> Receiver<MixerEvent> {
        self.shared.events.own_taken();
        self.events.clone()
    }

    /// A stream of its own that gets every event from now on (each subscriber sees all of
    /// them; a dropped receiver is forgotten), ending after NULL; already ended once the mixer
    /// has returned to NULL.
    ///
    /// ```no_run
    /// # use cloudmixer::prelude::*;
    /// # let mixer = Mixer::create(MixerConfig::from_json("{}")?, Storage::new("out"))?;
    /// let log = mixer.subscribe();
    /// std::thread::spawn(move || {
    ///     for ev in log {
    ///         println!("{}", ev.to_json()); // ends after NULL
    ///     }
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self) -> Receiver<MixerEvent> {
        self.shared.events.subscribe()
    }

    /// As [`Mixer::subscribe`], as a `futures_core::Stream` (feature `async`, on by default):
    /// every event from now on, ending after NULL; works on any async runtime.
    ///
    /// ```no_run
    /// # use cloudmixer::prelude::*;
    /// # async fn log(mixer: &Mixer) {
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use cloudmixer::futures_core::Stream;
    /// let mut events = mixer.event_stream();
    /// while let Some(ev) = poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await {
    ///     println!("{}", ev.to_json());
    /// }
    /// # }
    /// ```
    #[cfg(feature = "async")]
    pub fn event_stream(&self) -> EventStream {
        EventStream(self.shared.events.subscribe_async())
    }

    /// A handle that stops this mixer's uploads (after the end, `storageConfig`) at once, e.g.
    /// on a signal; it outlives the mixer. See [`UploadAbandon::abandon`].
    pub fn upload_abandon(&self) -> UploadAbandon {
        UploadAbandon(self.shared.clone())
    }

    /// Ends the recording with what was captured until now, from any thread that shares the
    /// mixer (`Arc<Mixer>`): real time, the ticks up to the mixer clock's current time are
    /// still made (`round(clock × fps)` frames in all, about `latency` later; pushes keep
    /// being taken until then), then STOPPING, the files finalised, the final output infos,
    /// NULL. Offline, the ticks taken so far. Returns at once; [`Mixer::wait`] blocks until
    /// the end. Idempotent. [`Mixer::stop_now`] ends at the next tick instead.
    pub fn stop(&self) {
        if self.shared.mode == PaceMode::Realtime {
            let fps = self.shared.config.output.fps;
            let now = crate::model::time::frames_for(fps, self.clock())
                .max(self.shared.ticks.load(Ordering::Acquire));
            self.shared.stop_after.fetch_min(now, Ordering::AcqRel);
            return;
        }
        self.stop_now();
    }

    /// Ends the recording at the next tick (what was captured but not yet composed, up to
    /// `latency`, is left out): STOPPING, the files finalised, the final output infos, NULL.
    /// Returns at once. Idempotent.
    pub fn stop_now(&self) {
        let now = self.shared.ticks.load(Ordering::Acquire);
        self.shared.stop_after.fetch_min(now, Ordering::AcqRel);
        self.shared.begin_stopping();
        if let Some(cmd) = &self.cmd {
            let _ = cmd.send(Cmd::Stop);
        }
    }

    /// Ends the recording cleanly when it holds `d` of video: exactly `round(d × fps)` frames
    /// (12 s at 15 fps: 180), counted from the first tick; see [`Mixer::stop_after_frames`].
    pub fn stop_after(&self, d: Duration) {
        self.stop_after_frames(crate::model::time::frames_for(
            self.shared.config.output.fps,
            d,
        ));
    }

    /// Blocks until the mixer is back at NULL (stopped, failed, or after the uploads of a
    /// `storageConfig`) and returns every output's final info, by id. `Err` carries the failure
    /// that ended the recording (reaching the maximum duration is not one).
    pub fn wait(&self) -> Result<Vec<OutputInfo>, MixerError> {
        let (end, outputs) = self
            .shared
            .events
            .wait(None)
            .unwrap_or(((codes::INTERNAL, "ended without NULL".into()), Vec::new()));
        // every frame let go of at NULL has gone back to its owner when wait returns
        self.shared.services.flush_releases(Duration::from_secs(10));
        ended(end, outputs)
    }

    /// As [`Mixer::wait`], giving up after `timeout` (`None`: still running).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Vec<OutputInfo>, MixerError>> {
        let (end, outputs) = self.shared.events.wait(Some(timeout))?;
        self.shared.services.flush_releases(Duration::from_secs(10));
        Some(ended(end, outputs))
    }

    /// The services this mixer runs on ([`MixerSettings::services`], or its own).
    pub fn services(&self) -> &Services {
        &self.shared.services
    }

    /// The latest info of every output (bytes, duration, state), by id.
    pub fn outputs(&self) -> Vec<OutputInfo> {
        self.shared.events.outputs()
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
        at_tick: impl FnMut(&Mixer, u64) -> Result<(), MixerError>,
    ) -> Result<(), MixerError>
    where
        I: Iterator<Item = VideoFrame>,
    {
        self.run_offline_av(
            inputs,
            Vec::<(String, std::iter::Empty<AudioFrame>)>::new(),
            total,
            at_tick,
        )
    }

    /// As [`Mixer::run_offline`], with audio inputs `(user, frames)` too: before tick `n`
    /// every audio frame captured before tick `n + 1` is pushed (frames without a capture time
    /// follow each other), so both tracks follow the inputs' own timestamps.
    pub fn run_offline_av<I, A>(
        &self,
        inputs: Vec<(String, I)>,
        audio: Vec<(String, A)>,
        total: u64,
        mut at_tick: impl FnMut(&Mixer, u64) -> Result<(), MixerError>,
    ) -> Result<(), MixerError>
    where
        I: Iterator<Item = VideoFrame>,
        A: Iterator<Item = AudioFrame>,
    {
        let fps = self.shared.config.output.fps;
        let mut inputs: Vec<(String, LatestUpTo<I>)> = inputs
            .into_iter()
            .map(|(c, i)| (c, LatestUpTo::new(i)))
            .collect();
        let mut audio: Vec<(String, std::iter::Peekable<A>)> =
            audio.into_iter().map(|(u, a)| (u, a.peekable())).collect();
        for n in self.ticks()..total {
            at_tick(self, n)?;
            let t = tick_time(fps, n);
            for (camid, inp) in &mut inputs {
                if let Some(f) = inp.advance(t) {
                    self.push_video(camid, f)?;
                }
            }
            let next = tick_time(fps, n + 1);
            for (user, inp) in &mut audio {
                while let Some(f) =
                    inp.next_if(|f| f.capture().is_none_or(|c| c + PTS_SLACK < next))
                {
                    self.push_audio_offline(user, f)?;
                }
            }
            self.advance_frames(n + 1)?;
        }
        Ok(())
    }

    /// Offline pushes wait for room instead of failing (the caller drives the clock, so
    /// waiting cannot stall it).
    fn push_audio_offline(&self, user: &str, frame: AudioFrame) -> Result<(), MixerError> {
        let mut frame = frame;
        loop {
            match self.push_audio_inner(user, frame) {
                Err(PushError::Full(f)) => {
                    frame = f;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(PushError::Other(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
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
        // every lent frame has gone back when destroy returns (the releaser works through
        // what the stages let go of)
        self.shared.services.flush_releases(Duration::from_secs(10));
        match &*self.shared.ended.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((code, desc)) if *code != codes::RECORD_MAX => Err(MixerError::Stopped {
                code: *code,
                desc: desc.clone(),
            }),
            _ => Ok(()),
        }
    }
}

fn ended(
    (code, desc): (i32, String),
    outputs: Vec<OutputInfo>,
) -> Result<Vec<OutputInfo>, MixerError> {
    if code == codes::OK || code == codes::RECORD_MAX {
        Ok(outputs)
    } else {
        Err(MixerError::Stopped { code, desc })
    }
}

/// The events of one mixer as an async stream ([`Mixer::event_stream`]).
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct EventStream(tokio::sync::mpsc::UnboundedReceiver<MixerEvent>);

#[cfg(feature = "async")]
impl EventStream {
    /// The next event, `None` after NULL: `while let Some(ev) = stream.next().await { … }`
    /// in any async runtime, without `Pin` or `poll_fn`.
    pub async fn next(&mut self) -> Option<MixerEvent> {
        self.0.recv().await
    }
}

#[cfg(feature = "async")]
impl futures_core::Stream for EventStream {
    type Item = MixerEvent;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<MixerEvent>> {
        self.0.poll_recv(cx)
    }
}

impl Drop for Mixer {
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

/// Stops a mixer's uploads at once ([`Mixer::upload_abandon`]).
#[derive(Clone)]
pub struct UploadAbandon(Arc<Shared>);

impl std::fmt::Debug for UploadAbandon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadAbandon")
    }
}

impl UploadAbandon {
    /// Cancels the running uploads and drops the waiting ones within a fraction of a second:
    /// their files and signed journals stay, so a later run resumes them; each such file is
    /// reported 6 UPLOADFAIL (1107, "upload interrupted…") and the mixer then ends with NULL.
    /// Uploads that already finished keep their state. Idempotent; harmless before the end.
    pub fn abandon(&self) {
        self.0
            .uploads_abandoned
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(all(test, not(feature = "gpu")))]
mod no_gpu_tests {
    use super::*;
    use crate::compose::ComposeError;

    /// Without the `gpu` feature a mixer asked for the GPU backend fails at create with a
    /// typed error naming the feature (a bad setting, code 5); `auto` records on the CPU.
    #[test]
    fn the_gpu_backend_is_refused_at_create_without_the_gpu_feature() {
        let root = std::env::temp_dir().join(format!("cm-no-gpu-{}", std::process::id()));
        let cfg = || {
            let mut v: Value = serde_json::from_str(include_str!(
                "../../fixtures/layouts/seed_side_by_side.json"
            ))
            .unwrap();
            v["videoFileCfg"]["svrPathName"] = "/rec.mp4".into();
            MixerConfig::from_value(v).unwrap()
        };
        let settings = |backend| MixerSettings {
            backend,
            overwrite: true,
            ..MixerSettings::offline()
        };
        let e = Mixer::create_with(cfg(), Storage::new(&root), settings(Backend::Gpu))
            .err()
            .expect("refused");
        assert!(
            matches!(
                e,
                MixerError::Compose(ComposeError::NotBuilt {
                    backend: "gpu",
                    feature: "gpu"
                })
            ),
            "{e:?}"
        );
        assert_eq!(e.code(), crate::model::events::codes::PARAM_ERR);
        assert!(e.to_string().contains("feature `gpu`"), "{e}");
        let mut m = Mixer::create_with(cfg(), Storage::new(&root), settings(Backend::Auto))
            .expect("auto: the CPU");
        assert!(m.backend_name().starts_with("cpu"), "{}", m.backend_name());
        m.destroy().unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
