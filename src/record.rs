//! `cloudmixer record`: files in, one recording out (the library side of the CLI command).
//!
//! The recording is a room of a [`Host`] of its own ([`Host::create_parsed`], its inputs
//! trusted local paths: see [`HostSettings::trusted_inputs`]); `record` adds what a command
//! line needs: its checks before anything is recorded, timed updates, progress, the events
//! file and the summary.
//!
//! Each input file is decoded on its own thread into a small bounded queue; so is the audio of
//! every input that has an audio stream (for the user named by the camid, the part before the
//! first '.') and every audio-only input. Offline (the default) the recording runs as fast as
//! the machine allows: for every output tick each input advances to its latest frame with
//! `pts ≤` the tick time and the audio captured before the next tick is mixed
//! ([`Mixer::run_offline_av`](crate::pipeline::Mixer::run_offline_av)), so the output is
//! exactly `round(duration × fps)` frames. With `realtime`, the host's file feeds push frames
//! and audio when their pts comes due on the wall clock, as a live recording server would,
//! stamped with their capture time on the mixer clock so that both tracks stay in step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;

use crate::host::feed::file::{FeedError, FileInputs};
pub(crate) use crate::host::journal::{open_events, write_event};
use crate::host::{CreateParsed, Host, HostError, HostSettings};
use crate::media::audio_dec::{AudioDecodeError, AudioFileDecoder};
use crate::media::decode::DecodeError;
use crate::model::audio::ChannelMode;
use crate::model::config::{ConfigError, Container, MixerConfig, Target};
use crate::model::events::{codes, MixerEvent, OutputInfo, OutputState};
use crate::model::time::{frames_for, tick_time, PaceMode};
use crate::output::Storage;
use crate::pipeline::{MixerError, MixerSettings, MixerStats};

/// Real time: how long a stop request waits for the first frame (a file without one does
/// not play).
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(3);

/// The picture ids that the layout or any update shows (resourceid, placeholders,
/// backgroundImage).
fn shown_pictures(config: &MixerConfig, updates: &[(Duration, Value)]) -> Vec<String> {
    let used = std::cell::RefCell::new(Vec::new());
    let note = |id: &str| {
        used.borrow_mut().push(id.to_string());
        true
    };
    let _ = crate::model::config::check_pictures(&config.layout, note);
    for (_, u) in updates {
        if let Ok(l) = config.parse_update_value(u) {
            let _ = crate::model::config::check_pictures(&l, note);
        }
    }
    used.into_inner()
}

/// A mixer's failure to start: a refused setting (code 5: encoder, preset, config) is bad
/// usage, anything else a failed recording.
fn setting_or_failure(e: MixerError) -> RecordError {
    use crate::media::audio_enc::AudioEncodeError as A;
    use crate::media::video_enc::EncodeError as V;
    match e {
        MixerError::Encode(V::NotFound(_) | V::Setting(_))
        | MixerError::AudioEncode(A::NotFound(_) | A::Setting(_))
        | MixerError::Config(_) => RecordError::Setting(e),
        e => RecordError::Mixer(e),
    }
}

/// Logs what a mixer that fails to start reports: STARTING, the error, NULL with its code
/// (`states` false: the error only, for mode 1's per-stream mixers).
fn log_failed_start(
    file: &std::fs::File,
    code: i32,
    desc: &str,
    states: bool,
) -> std::io::Result<()> {
    use crate::model::events::MixerState;
    let error = MixerEvent::Error {
        code,
        desc: desc.to_string(),
    };
    let null = MixerEvent::StateChanged {
        state: MixerState::Null,
        err: code,
        err_desc: desc.to_string(),
        encoder: None,
        backend: None,
    };
    let events = if states {
        vec![MixerEvent::state(MixerState::Starting), error, null]
    } else {
        vec![error]
    };
    for ev in events {
        write_event(file, &ev.to_json())?;
    }
    Ok(())
}

/// A host's refusal as `record` reports it (the mixer's own errors as they are).
fn record_error(e: HostError) -> RecordError {
    match e {
        HostError::Config(e) => RecordError::Config(e),
        HostError::Feed(e) => RecordError::from(e),
        HostError::Mixer(e) => RecordError::Mixer(e),
        e => RecordError::Usage(e.to_string()),
    }
}

/// Everything `record` needs.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The create config.
    pub config: MixerConfig,
    /// `(camid, file)` inputs. The audio of a file that has an audio stream is taken too, for
    /// the user named by the camid (the part before the first '.'), unless `audio` names
    /// that user or an earlier input of the same user already has audio. A URL
    /// (`rtmp://`, `rtsp://`, `srt://`, `http(s)://`…) is a live stream pulled by the host
    /// ([`crate::host::feed::pull`]): only in real time, with a `duration`.
    pub inputs: Vec<(String, PathBuf)>,
    /// `(user, file)` audio-only inputs (a file without an audio stream is a usage error);
    /// one replaces the audio of the user's camera inputs.
    pub audio: Vec<(String, PathBuf)>,
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

/// Progress, reported about every 100 ms (also while the finished files upload).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Ticks composed.
    pub frames: u64,
    /// Ticks in all.
    pub total: u64,
    /// Output frame rate.
    pub fps: u32,
    /// Wall time since the start.
    pub elapsed: Duration,
    /// The latest output info of every output (file, segment, live target), by id: bytes
    /// written, live state, and after the end the upload state and `progress`.
    pub outputs: Vec<OutputInfo>,
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
    /// The output has an audio track (always, unless `settings.audio` is off and there is no
    /// `audioFileCfg`).
    pub audio: bool,
    /// The audio track's format, e.g. `AAC 48 kHz mono` (empty without audio).
    pub audio_format: String,
    /// Audio inputs fed to the mixer (inputs' audio streams and audio-only inputs).
    pub audio_inputs: usize,
    /// The recording has a video track (false for an `audioFileCfg`-only config).
    pub video: bool,
    /// The recording was stopped from outside ([`record_until`]'s `stop` flag) before its
    /// end; it holds every frame composed until then and was finalised as usual.
    pub stopped_early: bool,
    /// The final output info (of output 0).
    pub output: Option<OutputInfo>,
    /// The final output info of every output (files, segments, live targets), by id; with a
    /// `storageConfig`, after the uploads (state 5 uploaded or 6 failed).
    pub outputs: Vec<OutputInfo>,
    /// The mixer's counters at the end (real time: late ticks, dropped audio; see
    /// [`MixerStats`]).
    pub stats: MixerStats,
    /// What each video input's decoder did: frames decoded, and those skipped or left
    /// unconverted because no tick of the recording shows them.
    pub decodes: Vec<crate::host::feed::DecodeStats>,
    /// Uploads left pending by an earlier run (journals under the storage root) that this run
    /// tried again.
    pub resumed_uploads: Vec<ResumedUpload>,
}

pub use crate::host::journal::ResumedUpload;

impl RecordSummary {
    /// The outputs whose upload failed (state 6): the files are kept, with their journals.
    pub fn failed_uploads(&self) -> impl Iterator<Item = &OutputInfo> {
        self.outputs
            .iter()
            .filter(|o| o.state == OutputState::UploadFail)
    }
}

impl std::fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "recorded {}", self.path)?;
        if self.video {
            writeln!(
                f,
                "  frames:   {} ({} fps, constant frame rate)",
                self.frames, self.fps
            )?;
        } else {
            writeln!(f, "  frames:   none (audio only)")?;
        }
        writeln!(f, "  duration: {:.3} s", self.duration_ms as f64 / 1000.0)?;
        writeln!(
            f,
            "  size:     {} bytes ({:.2} MB)",
            self.bytes,
            self.bytes as f64 / 1e6
        )?;
        writeln!(f, "  encoder:  {}", self.encoder)?;
        writeln!(f, "  backend:  {}", self.backend)?;
        if self.audio {
            let s = if self.audio_inputs == 1 { "" } else { "s" };
            writeln!(
                f,
                "  audio:    {} ({} input{s})",
                self.audio_format, self.audio_inputs
            )?;
        } else {
            writeln!(f, "  audio:    none")?;
        }
        for d in &self.decodes {
            writeln!(
                f,
                "  decoded:  {}: {} of {} frames ({} no tick shows were not decoded, {} not converted)",
                d.camid,
                d.decoded,
                d.packets,
                d.packets.saturating_sub(d.decoded),
                d.unshown
            )?;
        }
        if self.stopped_early {
            writeln!(
                f,
                "  stopped:  early, on request (the file is complete up to there)"
            )?;
        }
        if self.stats.frames_received > 0 {
            writeln!(
                f,
                "  inputs:   {} frames received, {} shown, {} replaced before use, {} late; {} output frames repeated; encoder at most {:.1} ms behind",
                self.stats.frames_received,
                self.stats.frames_used,
                self.stats.frames_replaced,
                self.stats.frames_late,
                self.stats.frames_repeated,
                self.stats.encoder_max_us as f64 / 1000.0
            )?;
        }
        if self.stats.late_ticks > 0 || self.stats.max_tick_late_us > 0 {
            writeln!(
                f,
                "  timing:   {} late ticks (most {:.1} ms behind){}",
                self.stats.late_ticks,
                self.stats.max_tick_late_us as f64 / 1000.0,
                if self.stats.late_ticks > 0 {
                    ": the machine could not keep real time"
                } else {
                    ""
                }
            )?;
        }
        if self.outputs.len() > 1
            || self
                .outputs
                .iter()
                .any(|o| o.state as u8 >= OutputState::Uploading as u8)
        {
            for o in &self.outputs {
                writeln!(f, "  output {}: {}", o.id, describe_output(o))?;
            }
        }
        for ResumedUpload { file, key, error } in &self.resumed_uploads {
            match error {
                None => writeln!(
                    f,
                    "  resumed:  {} uploaded as {key} (left pending by an earlier run)",
                    file.display()
                )?,
                Some(e) => writeln!(
                    f,
                    "  resumed:  {} still not uploaded: {e} (kept for the next run)",
                    file.display()
                )?,
            }
        }
        write!(
            f,
            "  wall:     {:.2} s, speed {:.2}x real time",
            self.wall_s, self.speed
        )
    }
}

/// One output's state in words, e.g. `rec/a.mp4: uploaded (1.20 MB)`.
pub fn describe_output(o: &OutputInfo) -> String {
    let mb = o.file_size as f64 / 1e6;
    let name = &o.svr_file_path_name;
    let err = |what: &str| format!("{name}: {what} ({} {})", o.err_code, o.err_desc);
    match o.state {
        OutputState::Null => format!("{name}: not started"),
        OutputState::Running if name.contains("://") => format!("{name}: live, {mb:.2} MB sent"),
        OutputState::Running => format!("{name}: {mb:.2} MB"),
        OutputState::Stopped => format!("{name}: finished, {mb:.2} MB"),
        OutputState::Fail => err("failed"),
        OutputState::Uploading => format!(
            "{name}: uploading {:.1}% of {mb:.2} MB{}",
            o.progress.unwrap_or(0.0),
            if o.err_desc.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.err_desc)
            }
        ),
        OutputState::Uploaded => format!("{name}: uploaded ({mb:.2} MB)"),
        OutputState::UploadFail => err("upload failed, file kept"),
    }
}

#[cfg(feature = "upload")]
use crate::host::journal::Resumer;
pub use crate::host::journal::RESUMED_OUTPUT_IDS;

/// The upload journal key of `record`: the file `path`, else `$CLOUDMIXER_JOURNAL_KEY`, else
/// `$XDG_STATE_HOME/cloudmixer/journal.key`, else `$HOME/.local/state/cloudmixer/journal.key`
/// (created with a random key when missing). A key file under the storage root is refused:
/// whoever can write there could read it and forge journals.
pub fn load_journal_key(
    path: Option<&Path>,
    storage: &Path,
) -> Result<crate::output::upload::JournalKey, RecordError> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let p = path
        .map(Path::to_path_buf)
        .or_else(|| env("CLOUDMIXER_JOURNAL_KEY"))
        .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("cloudmixer/journal.key")))
        .or_else(|| env("HOME").map(|d| d.join(".local/state/cloudmixer/journal.key")))
        .ok_or_else(|| {
            RecordError::Usage(
                "no place for the upload journal key: give --journal-key FILE (or set HOME)".into(),
            )
        })?;
    let abs = |p: &Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // the deepest existing ancestor, canonicalised, with the rest appended
        let mut head = p.clone();
        let mut tail = Vec::new();
        while !head.exists() {
            match (head.parent(), head.file_name()) {
                (Some(parent), Some(name)) => {
                    tail.push(name.to_os_string());
                    head = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let mut out = std::fs::canonicalize(&head).unwrap_or(head);
        out.extend(tail.into_iter().rev());
        out
    };
    if abs(&p).starts_with(abs(storage)) {
        return Err(RecordError::Usage(format!(
            "--journal-key {}: lies under the storage root {}; keep it outside",
            p.display(),
            storage.display()
        )));
    }
    crate::output::upload::JournalKey::load_or_create(&p)
        .map_err(|e| RecordError::Usage(format!("journal key {}: {e}", p.display())))
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
    /// An input's audio could not be decoded.
    #[error(transparent)]
    AudioDecode(#[from] AudioDecodeError),
    /// An `--input` file that cannot be opened (missing, not media, no video stream): bad
    /// usage, found before anything is recorded.
    #[error("--input {camid}: {source}")]
    Input {
        /// The input's camid.
        camid: String,
        /// Why (names the file).
        #[source]
        source: DecodeError,
    },
    /// An audio input (`--audio`, or the audio of an `--input`) that cannot be opened: bad
    /// usage, found before anything is recorded.
    #[error("audio input of user {user}: {source}")]
    AudioInput {
        /// The user the audio is for.
        user: String,
        /// Why (names the file).
        #[source]
        source: AudioDecodeError,
    },
    /// A `--picture` that cannot be used (missing, not an image, over the size limits): bad
    /// usage, found before anything is recorded.
    #[error(transparent)]
    Picture(#[from] crate::pipeline::picture::PictureError),
    /// The mixer refused a setting when it started (an encoder that is not available, a bad
    /// preset): bad usage, nothing recorded.
    #[error(transparent)]
    Setting(MixerError),
    /// The mixer failed (see the code).
    #[error(transparent)]
    Mixer(#[from] MixerError),
    /// The events file could not be written.
    #[error("events file: {0}")]
    Io(#[from] std::io::Error),
}

impl From<FeedError> for RecordError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::Input { camid, source } => RecordError::Input { camid, source },
            FeedError::AudioInput {
                source: AudioDecodeError::NoAudio { path },
                ..
            } => RecordError::Usage(format!("{}: has no audio stream", path.display())),
            FeedError::AudioInput { user, source } => RecordError::AudioInput { user, source },
            FeedError::Thread(who, why) => {
                RecordError::Usage(format!("decoder thread for {who}: {why}"))
            }
        }
    }
}

impl RecordError {
    /// The vendor error code.
    pub fn code(&self) -> i32 {
        match self {
            RecordError::Usage(_)
            | RecordError::Config(_)
            | RecordError::Decode(_)
            | RecordError::AudioDecode(_)
            | RecordError::Input { .. }
            | RecordError::AudioInput { .. }
            | RecordError::Picture(_) => codes::PARAM_ERR,
            RecordError::Mixer(e) | RecordError::Setting(e) => e.code(),
            RecordError::Io(_) => codes::FILE_ERR,
        }
    }
}

/// Longest container duration among the inputs (video and audio-only).
fn longest_input<'a>(
    inputs: impl IntoIterator<Item = &'a PathBuf>,
) -> Result<Duration, RecordError> {
    crate::media::decode::init_ffmpeg();
    let mut best = Duration::ZERO;
    for p in inputs {
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

/// The storage root, and every folder of a file target under it, must be a folder where it
/// exists: a regular file there would fail the recording with a bare "File exists".
fn check_storage(storage: &std::path::Path, targets: &[&Target]) -> Result<(), RecordError> {
    if storage.exists() && !storage.is_dir() {
        return Err(RecordError::Usage(format!(
            "storage root {}: is a file, not a folder",
            storage.display()
        )));
    }
    for t in targets {
        if let Target::File { path, .. } = t {
            let mut dir = storage.to_path_buf();
            for c in path.parent().into_iter().flat_map(|p| p.components()) {
                dir.push(c);
                if dir.exists() && !dir.is_dir() {
                    return Err(RecordError::Usage(format!(
                        "{}: is a file, not a folder (the folder of {} under the storage root {})",
                        dir.display(),
                        path.display(),
                        storage.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether a mixer with these settings records audio: the video targets' track (unless
/// `settings.audio` is off) or an `audioFileCfg` file.
fn records_audio(config: &MixerConfig, settings: &MixerSettings) -> bool {
    (config.has_video() && settings.audio) || config.audio_file.is_some()
}

/// The format of the first target's audio track, e.g. `AAC 48 kHz mono`.
fn audio_format(config: &MixerConfig) -> String {
    let (codec, audio) = match (&config.audio_file, config.has_video()) {
        (Some(af), false) => {
            let codec = match af.target {
                Target::File {
                    container: Container::Mp3,
                    ..
                } => "MP3",
                Target::File {
                    container: Container::Wav,
                    ..
                } => "PCM",
                _ => "AAC",
            };
            (codec, &af.audio)
        }
        _ => ("AAC", &config.audio),
    };
    let channels = match &audio.channels {
        ChannelMode::Mono { .. } => "mono".to_string(),
        ChannelMode::LeftRight { left, right } => format!("left-right ({left} | {right})"),
    };
    format!("{codec} 48 kHz {channels}")
}

/// The `(user, file)` audio inputs: `--audio` files (checked for an audio stream), then the
/// first input with an audio stream of each user not named by `--audio`.
fn audio_inputs(
    inputs: &[(String, PathBuf)],
    audio: &[(String, PathBuf)],
) -> Result<Vec<(String, PathBuf)>, RecordError> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for (user, path) in audio {
        if user.is_empty() || user.contains('.') {
            return Err(RecordError::Usage(format!(
                "--audio {user}={}: expected a user ID (no '.')",
                path.display()
            )));
        }
        if out.iter().any(|(u, _)| u == user) {
            return Err(RecordError::Usage(format!(
                "--audio {user}: given twice (one audio input per user)"
            )));
        }
        if path.exists() && !AudioFileDecoder::has_audio(path) {
            return Err(RecordError::Usage(format!(
                "--audio {user}={}: {} has no audio stream",
                path.display(),
                path.display()
            )));
        }
        out.push((user.clone(), path.clone()));
    }
    let taken: Vec<String> = out.iter().map(|(u, _)| u.clone()).collect();
    out.extend(crate::host::feed::file::audio_of_inputs(inputs, &taken));
    Ok(out)
}

/// Records `opts.inputs` per `opts.config`; `progress` is called about every 100 ms.
///
/// The recording runs to its end (`opts.duration`, or the longest input); to stop it earlier
/// from outside, e.g. on a signal, use [`record_until`].
///
/// ```no_run
/// use cloudmixer::{model::config::MixerConfig, pipeline::MixerSettings, record::{record, RecordOptions}};
/// let cfg = MixerConfig::from_json(&std::fs::read_to_string("fixtures/layouts/seed_side_by_side.json").unwrap()).unwrap();
/// let summary = record(RecordOptions {
///     config: cfg,
///     inputs: vec![("Usr1.-1".into(), "fixtures/clips/cam1_640x480_15.mp4".into()),
///                  ("Usr2.-1".into(), "fixtures/clips/cam4_1280x720_30.mp4".into())],
///     audio: vec![], // the clips' own audio is taken
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
    progress: impl FnMut(&Progress),
) -> Result<RecordSummary, RecordError> {
    record_until(opts, &AtomicBool::new(false), progress)
}

/// As [`record`], stopping early once `stop` is set: the recording ends cleanly as if its
/// duration were reached then ([`Mixer::stop_now`](crate::pipeline::Mixer::stop_now):
/// STOPPING, the final output info with state STOPPED, NULL), holding every frame composed before, and the summary says
/// [`RecordSummary::stopped_early`]. `stop` is checked before every output tick offline and
/// every 5 ms in real time.
///
/// The library installs no signal handlers. An embedder that wants SIGTERM/SIGINT to stop
/// the recording gracefully registers its own and sets the flag from there, e.g. with the
/// `signal-hook` crate (what `cloudmixer record` does):
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::{atomic::AtomicBool, Arc};
/// # use cloudmixer::record::{record_until, RecordOptions};
/// # fn options() -> RecordOptions { unimplemented!() }
/// # let opts = options();
/// let stop = Arc::new(AtomicBool::new(false));
/// for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
///     // a second signal while stopping exits at once (the fragmented mp4 still plays)
///     signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))?;
///     signal_hook::flag::register(sig, Arc::clone(&stop))?;
/// }
/// let summary = record_until(opts, &stop, |_| {})?;
/// # Ok(())
/// # }
/// ```
///
/// Setting the flag from another thread (a control API, a timer) works the same way.
pub fn record_until(
    opts: RecordOptions,
    stop: &AtomicBool,
    progress: impl FnMut(&Progress),
) -> Result<RecordSummary, RecordError> {
    // the events file starts empty; the recording and the resumed uploads append to it
    if let Some(p) = &opts.events {
        std::fs::File::create(p)?;
    }
    // uploads an earlier run left pending (journals under the storage root) go along (a build
    // without the `upload` feature refuses a storageConfig when the mixer is created)
    #[cfg(feature = "upload")]
    let resumer = match (&opts.config.storage, &opts.events) {
        (Some(st), ev) => {
            let events = ev.as_deref().map(open_events).transpose()?;
            Resumer::start(
                st,
                &opts.settings,
                &opts.storage,
                Box::new(move |info: &OutputInfo| {
                    if let Some(f) = events.as_ref() {
                        let mut v = MixerEvent::OutputInfoChanged(info.clone()).to_json();
                        v["resumed"] = Value::Bool(true);
                        let _ = write_event(f, &v);
                    }
                }),
            )
        }
        (None, _) => None,
    };
    let res = if opts.config.per_stream.is_some() {
        check_url_inputs(&opts).and_then(|()| per_stream::record(opts, stop, progress))
    } else {
        let log = match &opts.events {
            Some(p) => Some(EventLog {
                file: open_events(p)?,
                ids: None,
            }),
            None => None,
        };
        // a recording that fails before its mixer exists logs what a failed mixer reports
        let start_log = log.as_ref().map(|l| l.file.try_clone()).transpose()?;
        let res = record_one(opts, stop, progress, log);
        if let (Err(e), Some(f)) = (&res, start_log) {
            // (a mixer that failed to start logged itself)
            if !matches!(
                e,
                RecordError::Mixer(_) | RecordError::Setting(_) | RecordError::Io(_)
            ) {
                log_failed_start(&f, e.code(), &e.to_string(), true)?;
            }
        }
        res
    };
    #[cfg(feature = "upload")]
    let resumed = resumer
        .map(|r| r.finish(Duration::from_secs(24 * 3600)))
        .unwrap_or_default();
    #[cfg(not(feature = "upload"))]
    let resumed = Vec::new();
    res.map(|mut s| {
        s.resumed_uploads = resumed;
        s
    })
}

/// URL inputs are live streams: they need a real-time mode 0 recording of a given duration,
/// and a URL the host takes (scheme, form).
fn check_url_inputs(opts: &RecordOptions) -> Result<(), RecordError> {
    use crate::host::feed::pull;
    let flag = |id: &str| {
        if id.contains('.') {
            "--input"
        } else {
            "--audio"
        }
    };
    for (id, p) in opts.inputs.iter().chain(&opts.audio) {
        let url = p.to_string_lossy();
        if !pull::is_url(&url) {
            continue;
        }
        let shown = crate::output::upload::redact_url(&url);
        pull::check_url(&url)
            .map_err(|e| RecordError::Usage(format!("{} {id}={shown}: {e}", flag(id))))?;
        if opts.config.per_stream.is_some() {
            return Err(RecordError::Usage(format!(
                "{} {id}={shown}: a mode 1 (per-stream) recording from the command line takes files only",
                flag(id)
            )));
        }
        if opts.settings.mode != PaceMode::Realtime {
            return Err(RecordError::Usage(format!(
                "{} {id}={shown}: a URL is a live stream: record it with --realtime",
                flag(id)
            )));
        }
        if opts.duration.is_none() {
            return Err(RecordError::Usage(format!(
                "{} {id}={shown}: a live stream has no length: give --duration",
                flag(id)
            )));
        }
    }
    Ok(())
}

/// Where a recording's events go: a JSON-lines file; `ids`: mode 1 gives every stream's files
/// ids of the whole recording (from this counter) and keeps its own state changes.
pub(crate) struct EventLog {
    pub file: std::fs::File,
    pub ids: Option<Arc<std::sync::atomic::AtomicU32>>,
}

/// One mixer's recording (mode 0, or one stream of mode 1).
pub(crate) fn record_one(
    opts: RecordOptions,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
    log: Option<EventLog>,
) -> Result<RecordSummary, RecordError> {
    check_url_inputs(&opts)?;
    let stopped = || stop.load(Ordering::Relaxed);
    let fps = opts.config.output.fps;
    let has_video = opts.config.has_video();
    let with_audio = records_audio(&opts.config, &opts.settings);
    if !with_audio && !opts.audio.is_empty() {
        return Err(RecordError::Usage(
            "--audio given, but the recording has no audio track (--no-audio)".into(),
        ));
    }
    if !has_video && opts.inputs.is_empty() && opts.audio.is_empty() {
        return Err(RecordError::Usage(
            "an audio-only recording needs --audio (or --input) files".into(),
        ));
    }
    // audio inputs first: a file without audio is named before anything else is looked at
    let audio_sources = if with_audio {
        audio_inputs(&opts.inputs, &opts.audio)?
    } else {
        Vec::new()
    };
    let duration = match opts.duration {
        Some(d) => d,
        None => longest_input(opts.inputs.iter().chain(&opts.audio).map(|(_, p)| p))?,
    };
    let total = frames_for(fps, duration);
    if total == 0 {
        return Err(RecordError::Usage(format!(
            "duration {duration:?} is shorter than one frame"
        )));
    }
    let mut updates = opts.updates.clone();
    updates.sort_by_key(|u| u.0);
    // every picture the layout names must be given (--picture)
    let given = |id: &str| opts.pictures.iter().any(|(p, _)| p == id);
    crate::model::config::check_pictures(&opts.config.layout, given)
        .map_err(|e| RecordError::Usage(format!("{e} (give it with --picture ID=IMAGE)")))?;
    // validate every update before recording anything
    for (t, u) in &updates {
        opts.config
            .parse_update_value(u)
            .and_then(|l| crate::model::config::check_pictures(&l, given))
            .map_err(|e| RecordError::Usage(format!("update at {:.3} s: {e}", t.as_secs_f64())))?;
    }
    {
        let mut targets: Vec<&Target> = opts.config.output.targets.iter().collect();
        if let Some(af) = &opts.config.audio_file {
            targets.push(&af.target);
        }
        check_storage(&opts.storage, &targets)?;
    }
    let mut events_file = log;
    // every picture is checked from its header (size limits) before anything is decoded; only
    // those the layout or an update shows are decoded
    for (id, p) in &opts.pictures {
        crate::pipeline::picture::check_picture_file(id, p)?;
    }
    let shown = shown_pictures(&opts.config, &updates);
    let pictures = opts
        .pictures
        .iter()
        .filter(|(id, _)| shown.contains(id))
        .map(|(id, p)| Ok((id.clone(), crate::pipeline::picture::load_picture(id, p)?)))
        .collect::<Result<Vec<_>, RecordError>>()?;
    // the room, through a host of its own: offline, its frames are pushed here tick by tick;
    // in real time the host feeds the inputs (its trusted inputs: the paths as given)
    let mode = opts.settings.mode;
    let host = Host::new(HostSettings {
        mixer: opts.settings.clone(),
        trusted_inputs: true,
        // resumed uploads are record's own (in its summary, see record_until)
        resume_uploads: false,
        ..HostSettings::new(&opts.storage)
    });
    // an audio-only recording draws no pictures: its inputs give only their audio
    let video_sources = if has_video { &opts.inputs[..] } else { &[] };
    let (offline_inputs, room_inputs) = match mode {
        PaceMode::Offline => (
            Some(FileInputs::open(
                video_sources,
                &audio_sources,
                Some(opts.config.output.fps),
            )?),
            vec![],
        ),
        PaceMode::Realtime => {
            let url = |(k, p): &(String, PathBuf)| {
                let s = p.to_string_lossy();
                if crate::host::feed::pull::is_url(&s) {
                    (k.clone(), s.into_owned())
                } else {
                    (k.clone(), format!("file:{}", p.display()))
                }
            };
            let inputs = video_sources.iter().chain(&audio_sources).map(url);
            (None, inputs.collect())
        }
    };
    let t0 = Instant::now();
    // the room's events, from its creation (subscribed before it is created)
    let (_, rx) = host.subscribe(None);
    let created = host.create_parsed(
        CreateParsed {
            mixer_id: Some("record".into()),
            config: opts.config.clone(),
            inputs: room_inputs,
            pictures,
        },
        mode,
    );
    // events: written as they come (a kill leaves a complete log of what happened)
    let infos: Arc<Mutex<BTreeMap<u32, OutputInfo>>> = Arc::default();
    let (id, mixer) = match created.and_then(|id| Ok((id.clone(), host.mixer(&id)?))) {
        Ok(m) => m,
        Err(HostError::Mixer(e)) => {
            // the failed create's events are not the room's: log what the mixer reported
            if let Some(f) = events_file.as_mut() {
                log_failed_start(&f.file, e.code(), &e.to_string(), f.ids.is_none())?;
            }
            return Err(setting_or_failure(e));
        }
        Err(e) => return Err(record_error(e)),
    };
    if mode == PaceMode::Realtime {
        mixer.stop_after_frames(total);
    }
    let li = infos.clone();
    let room = id.clone();
    let ev_thread = std::thread::spawn(move || -> std::io::Result<()> {
        let mut ids = std::collections::HashMap::new();
        for hev in rx.iter() {
            if *hev.mixer_id != *room {
                continue;
            }
            let mut ev = hev.event.clone();
            let end = matches!(
                ev,
                MixerEvent::StateChanged {
                    state: crate::model::events::MixerState::Null,
                    ..
                }
            );
            if let (MixerEvent::OutputInfoChanged(i), Some(EventLog { ids: Some(n), .. })) =
                (&mut ev, &events_file)
            {
                i.id = *ids
                    .entry(i.id)
                    .or_insert_with(|| n.fetch_add(1, Ordering::AcqRel));
            }
            if let MixerEvent::OutputInfoChanged(i) = &ev {
                li.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(i.id, i.clone());
            }
            if let Some(f) = events_file.as_mut() {
                if !(f.ids.is_some() && matches!(ev, MixerEvent::StateChanged { .. })) {
                    write_event(&f.file, &ev.to_json())?;
                }
            }
            // NULL is the room's last event
            if end {
                break;
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
                outputs: infos
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned()
                    .collect(),
            });
            next_report = Instant::now() + Duration::from_millis(100);
        }
    };
    let mut upd = updates.into_iter().peekable();
    let mut decoders = Vec::new();
    let mut decode_counts = Vec::new();
    let run: Result<(), MixerError> = match offline_inputs {
        Some(FileInputs {
            video: inputs,
            audio,
            decoders: d,
            counts,
        }) => {
            decoders = d;
            decode_counts = counts;
            let iters: Vec<_> = inputs
                .into_iter()
                .map(|(c, rx)| (c, rx.into_iter()))
                .collect();
            let audio_iters: Vec<_> = audio
                .into_iter()
                .map(|(u, rx)| (u, rx.into_iter()))
                .collect();
            let res = mixer.run_offline_av(iters, audio_iters, total, |m, n| {
                // the first tick is always recorded: a file without a frame does not play
                if stopped() && n > 0 {
                    return Err(MixerError::Stopped {
                        code: 0,
                        desc: "stopped on request".into(),
                    });
                }
                let t = tick_time(fps, n);
                while let Some((_, u)) = upd.next_if(|(at, _)| *at <= t) {
                    m.update_content(&u)?;
                }
                report(n, false);
                Ok(())
            });
            // the stop request's own error is not a failure
            match res {
                Err(MixerError::Stopped { code: 0, .. }) if stopped() => Ok(()),
                other => other,
            }
        }
        None => {
            // the host feeds the inputs: their time 0 is a tick, their frames fall on the
            // ticks as offline
            let m = &mixer;
            let mut res = Ok(());
            // a stop is honoured once the first frame is composed (a file without a frame
            // does not play), or after FIRST_FRAME_WAIT if none comes
            let mut stop_seen: Option<Instant> = None;
            let mut stop_now = || {
                stopped()
                    && (m.ticks() > 0
                        || stop_seen.get_or_insert_with(Instant::now).elapsed() >= FIRST_FRAME_WAIT)
            };
            while m.state() != crate::model::events::MixerState::Null
                && m.ticks() < total
                && !stop_now()
            {
                let t = t0.elapsed();
                while let Some((_, u)) = upd.next_if(|(at, _)| *at <= t) {
                    if let Err(e) = m.update_content(&u) {
                        res = Err(e);
                    }
                }
                report(m.ticks(), false);
                std::thread::sleep(Duration::from_millis(5));
            }
            res
        }
    };
    let stopped_early = stopped() && mixer.ticks() < total;
    report(mixer.ticks(), true);
    let encoder = mixer.encoder_name().to_string();
    let backend = mixer.backend_name().to_string();
    let uploads = mixer.upload_abandon();
    // the end at the next tick: STOPPING, the files finalised, the final infos, NULL
    mixer.stop_now();
    let frames = mixer.ticks();
    // with a storageConfig the event stream ends after the uploads: report them meanwhile; a
    // stop request (a signal) ends them at once, their files kept with signed journals
    while !ev_thread.is_finished() {
        if stopped() {
            uploads.abandon();
        }
        report(mixer.ticks(), false);
        std::thread::sleep(Duration::from_millis(20));
    }
    // what the decoders did: offline here, in real time the room's file feeds
    let decodes = if decode_counts.is_empty() {
        host.get(&id).map(|i| i.decodes).unwrap_or_default()
    } else {
        decode_counts
            .iter()
            .map(|(c, n)| crate::host::feed::DecodeStats::of(c, n))
            .collect()
    };
    // the room has ended: its final outputs, or the failure that ended it
    let destroyed = host.destroy(&id);
    let stats = mixer.stats();
    let frames = frames.max(mixer.ticks());
    drop(mixer);
    drop(host);
    for d in decoders {
        let _ = d.join();
    }
    let wall = t0.elapsed();
    report(frames, true);
    let ev_res = ev_thread.join();

    // a failure recorded by the mixer (e.g. a full disk) takes precedence over the driver's
    // "mixer stopped" error
    destroyed.map_err(record_error)?;
    run?;
    if let Ok(Err(e)) = ev_res {
        return Err(RecordError::Io(e));
    }
    let outputs: Vec<OutputInfo> = infos
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let out = outputs.first().cloned();
    let duration_ms = out.as_ref().map_or(0, |o| o.duration);
    // the first target as written (an existing file is not overwritten: the mixer reports
    // the free name it used), else as configured
    let first_targets = match (&opts.config.audio_file, has_video) {
        (Some(af), false) => std::slice::from_ref(&af.target),
        _ => &opts.config.output.targets[..],
    };
    let configured = crate::output::resolve_targets(&Storage::new(&opts.storage), first_targets)
        .ok()
        .and_then(|v| v.into_iter().next())
        .unwrap_or_default();
    let resolved = match out
        .as_ref()
        .map(|o| (o.svr_file_path_name.as_str(), o.state))
    {
        // uploaded and the local copy removed: name the object, not a file that is gone
        Some((name, OutputState::Uploaded))
            if !opts.storage.join(name.trim_start_matches('/')).exists() =>
        {
            let bucket = opts
                .config
                .storage
                .as_ref()
                .map_or("", |s| s.bucket.as_str());
            format!("s3://{bucket}/{}", name.trim_start_matches('/'))
        }
        Some((name, _)) if !name.contains("://") && !name.is_empty() => {
            let p = opts.storage.join(name.trim_start_matches('/'));
            std::fs::canonicalize(&p).unwrap_or(p).display().to_string()
        }
        _ => configured,
    };
    Ok(RecordSummary {
        frames: if has_video { frames } else { 0 },
        fps,
        duration_ms,
        bytes: out.as_ref().map_or(0, |o| o.file_size),
        path: resolved,
        encoder,
        backend,
        wall_s: wall.as_secs_f64(),
        speed: duration_ms as f64 / 1000.0 / wall.as_secs_f64().max(1e-9),
        audio: with_audio,
        audio_format: if with_audio {
            audio_format(&opts.config)
        } else {
            String::new()
        },
        audio_inputs: audio_sources.len(),
        video: has_video,
        stopped_early,
        output: out,
        outputs,
        stats,
        decodes,
        resumed_uploads: Vec::new(),
    })
}

mod per_stream;

#[cfg(test)]
mod tests {
    use super::*;

    /// Offline, a stop request ends the recording at the next tick, cleanly.
    #[test]
    fn offline_recording_stops_on_request() {
        let root = env!("CARGO_MANIFEST_DIR");
        let text =
            std::fs::read_to_string(format!("{root}/fixtures/layouts/seed_side_by_side.json"))
                .unwrap();
        let dir = std::env::temp_dir().join(format!("cm-record-stop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = RecordOptions {
            config: MixerConfig::from_json(&text).unwrap(),
            inputs: vec![(
                "Usr1.-1".into(),
                format!("{root}/fixtures/clips/cam1_640x480_15.mp4").into(),
            )],
            audio: vec![],
            pictures: vec![],
            updates: vec![],
            storage: dir.clone(),
            duration: Some(Duration::from_secs(20)),
            settings: MixerSettings {
                backend: crate::compose::Backend::Cpu,
                audio: false,
                ..MixerSettings::offline()
            },
            events: Some(dir.join("ev.jsonl")),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let stop = AtomicBool::new(false);
        // the first progress report comes before tick 0: stop there
        let s = record_until(opts, &stop, |_| stop.store(true, Ordering::Relaxed)).unwrap();
        assert!(s.stopped_early);
        assert!(s.frames >= 1 && s.frames < 300, "{}", s.frames);
        assert!(s.to_string().contains("  stopped:  early, on request"));
        let ev = std::fs::read_to_string(dir.join("ev.jsonl")).unwrap();
        let last = ev.lines().last().unwrap();
        assert!(last.contains(r#""state":0"#), "{ev}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
