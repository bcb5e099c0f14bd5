//! File feeds: one decoding thread per input feeding a short bounded queue, and the real-time
//! pacing that pushes each frame when its pts comes due, stamped with its capture time.
//!
//! A file's time 0 is placed on a tick of the mixer ([`FileClock::on_next_tick`]): a tick
//! shows what was captured until its own time, so a file's frames fall on the ticks exactly as
//! in an offline recording of the same file (a frame at 1.000 s is the tick at 1.000 s, with
//! its audio), whatever moment the feed started.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use crate::media::audio_dec::{AudioDecodeError, AudioFileDecoder};
use crate::media::decode::{DecodeCounts, DecodeError, Decoder};
use crate::model::audio::AudioFrame;
use crate::model::frame::VideoFrame;
use crate::model::time::{tick_time, ticks_before};
use crate::pipeline::{Mixer, MixerError};

/// Decoded video frames that may wait between a decoder thread and the mixer.
pub const INPUT_QUEUE: usize = 3;
/// Decoded audio chunks that may wait between a decoder thread and the mixer.
pub const AUDIO_INPUT_QUEUE: usize = 16;

/// Why a file feed could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A video input could not be opened or decoded.
    #[error("input {camid}: {source}")]
    Input {
        /// The camid it was given for.
        camid: String,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An audio input could not be opened or decoded.
    #[error("audio input {user}: {source}")]
    AudioInput {
        /// The user it was given for.
        user: String,
        /// Why.
        #[source]
        source: AudioDecodeError,
    },
    /// A decoder thread could not start or died before it opened its input.
    #[error("decoder thread for {0}: {1}")]
    Thread(String, String),
}

/// The opened inputs of a room: per camid a queue of decoded frames, per user a queue of audio
/// chunks stamped with their pts as capture time, and the decoder threads (which end at the
/// end of their input or once their queue's receiver is dropped).
#[derive(Debug, Default)]
pub struct FileInputs {
    /// `(camid, frames)`, in the order given.
    pub video: Vec<(String, Receiver<VideoFrame>)>,
    /// `(user, chunks)`, in the order given.
    pub audio: Vec<(String, Receiver<AudioFrame>)>,
    /// The decoder threads.
    pub decoders: Vec<JoinHandle<()>>,
    /// `(camid, counts)` of each video decoder, in the order given.
    pub counts: Vec<(String, Arc<DecodeCounts>)>,
}

/// What a video input's decoder did ([`FileInputs::decode_stats`], a room's
/// [`RoomInfo::decodes`](crate::host::RoomInfo::decodes)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecodeStats {
    /// The camid.
    pub camid: String,
    /// Packets sent to the decoder.
    pub packets: u64,
    /// Packets whose frame no tick shows, sent with the order to skip them (the decoder skips
    /// those no other frame refers to).
    pub skip_asked: u64,
    /// Frames decoded.
    pub decoded: u64,
    /// Decoded frames no tick shows (references for others), dropped unconverted.
    pub unshown: u64,
}

impl DecodeStats {
    /// The counts of `camid`'s decoder now.
    pub fn of(camid: &str, c: &DecodeCounts) -> DecodeStats {
        DecodeStats {
            camid: camid.to_string(),
            packets: c.packets(),
            skip_asked: c.skip_asked(),
            decoded: c.decoded(),
            unshown: c.unshown(),
        }
    }
}

impl FileInputs {
    /// Opens every input (one decoding thread each) and returns once all of them opened, or
    /// with the first that did not. `video` is `(camid, path)`, `audio` `(user, path)`.
    /// `shown_at`: the rate of the mixer the frames go to, whose ticks (from each file's time
    /// 0) are the only ones that show them: frames no tick shows are not decoded where the
    /// codec allows, and not queued ([`Decoder::only_shown_at`]); `None` (a per-stream
    /// recorder, which keeps every frame): all of them.
    ///
    /// ```no_run
    /// use cloudmixer::host::feed::FileInputs;
    /// let inputs = FileInputs::open(
    ///     &[("Usr1.-1".into(), "fixtures/clips/cam1_640x480_15.mp4".into())],
    ///     &[("Usr1".into(), "fixtures/clips/cam1_640x480_15.mp4".into())],
    ///     Some(15),
    /// ).unwrap();
    /// assert_eq!(inputs.video.len(), 1);
    /// ```
    pub fn open(
        video: &[(String, PathBuf)],
        audio: &[(String, PathBuf)],
        shown_at: Option<u32>,
    ) -> Result<FileInputs, FeedError> {
        // every input opens on its own thread at once (a file's open probes its streams);
        // then each is waited for, in order
        let mut videos = Vec::new();
        for (camid, path) in video {
            videos.push((camid, spawn_video(camid, path, shown_at)?));
        }
        let mut audios = Vec::new();
        for (user, path) in audio {
            audios.push((user, spawn_audio(user, path)?));
        }
        let mut out = FileInputs::default();
        for (camid, (rx, h, opened)) in videos {
            let counts = match opened.recv() {
                Ok(Ok(counts)) => counts,
                Ok(Err(source)) => {
                    return Err(FeedError::Input {
                        camid: camid.clone(),
                        source,
                    })
                }
                Err(_) => return Err(FeedError::Thread(camid.clone(), "died".into())),
            };
            out.video.push((camid.clone(), rx));
            out.decoders.push(h);
            out.counts.push((camid.clone(), counts));
        }
        for (user, (rx, h, opened)) in audios {
            match opened.recv() {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(FeedError::AudioInput {
                        user: user.clone(),
                        source,
                    })
                }
                Err(_) => return Err(FeedError::Thread(user.clone(), "died".into())),
            }
            out.audio.push((user.clone(), rx));
            out.decoders.push(h);
        }
        Ok(out)
    }

    /// What each video input's decoder did so far.
    pub fn decode_stats(&self) -> Vec<DecodeStats> {
        self.counts
            .iter()
            .map(|(c, n)| DecodeStats::of(c, n))
            .collect()
    }

    /// Pushes every input into `mixer` in real time on threads of its own, each frame when its
    /// pts comes due on the target's [`FeedTarget::file_clock`] (a mixer: started at its next
    /// tick); they end at the end of their input, when `stop` is set or once the target
    /// refuses a push (it stopped).
    pub fn spawn_realtime<T: FeedTarget + 'static>(
        self,
        mixer: Arc<T>,
        stop: Arc<AtomicBool>,
    ) -> Vec<JoinHandle<()>> {
        let clock = Arc::new(mixer.file_clock());
        let mut threads = self.decoders;
        for (camid, rx) in self.video {
            let (m, c, s) = (mixer.clone(), clock.clone(), stop.clone());
            let stopped = move || s.load(Ordering::Relaxed);
            threads.push(std::thread::spawn(move || {
                push_video(&*m, &c, &camid, &rx, &stopped)
            }));
        }
        for (user, rx) in self.audio {
            let (m, c, s) = (mixer.clone(), clock.clone(), stop.clone());
            let stopped = move || s.load(Ordering::Relaxed);
            threads.push(std::thread::spawn(move || {
                push_audio(&*m, &c, &user, &rx, &stopped)
            }));
        }
        threads
    }
}

/// What file feeds push into: a [`Mixer`], or a host's mode 1 room.
pub trait FeedTarget: Send + Sync {
    /// The clock a file's time 0 is placed on.
    fn file_clock(&self) -> FileClock;
    /// A frame of `camid` captured at `capture` on the target's clock.
    fn push_video_at(
        &self,
        camid: &str,
        frame: VideoFrame,
        capture: Duration,
    ) -> Result<(), MixerError>;
    /// An audio chunk of `user` (its capture time on the target's clock, if it has one).
    fn push_audio(&self, user: &str, frame: AudioFrame) -> Result<(), MixerError>;
    /// The target's clock now (what live feeds anchor their capture times on); by default the
    /// time since the process first asked.
    fn clock_now(&self) -> Duration {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        T0.get_or_init(Instant::now).elapsed()
    }
    /// How long after its capture a frame is composed ([`Mixer::latency`]), when the target
    /// composes on its clock; `None` (the default): no such deadline.
    fn latency(&self) -> Option<Duration> {
        None
    }
}

impl FeedTarget for Mixer {
    fn file_clock(&self) -> FileClock {
        FileClock::on_next_tick(self)
    }

    fn push_video_at(
        &self,
        camid: &str,
        frame: VideoFrame,
        capture: Duration,
    ) -> Result<(), MixerError> {
        Mixer::push_video_at(self, camid, frame, capture)
    }

    fn push_audio(&self, user: &str, frame: AudioFrame) -> Result<(), MixerError> {
        Mixer::push_audio(self, user, frame)
    }

    fn clock_now(&self) -> Duration {
        self.clock()
    }

    fn latency(&self) -> Option<Duration> {
        Some(Mixer::latency(self))
    }
}

/// The first input with an audio stream of each user (the part of its camid before the first
/// '.'), for users not in `taken`: a room's cameras bring their users' sound.
pub fn audio_of_inputs(inputs: &[(String, PathBuf)], taken: &[String]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for (camid, path) in inputs {
        let user = crate::pipeline::user_of(camid);
        // a URL's audio comes through its pull feed (opening it here would connect)
        if super::pull::is_url(&path.to_string_lossy()) {
            continue;
        }
        if !taken.iter().any(|u| u == user)
            && !out.iter().any(|(u, _)| u == user)
            && AudioFileDecoder::has_audio(path)
        {
            out.push((user.to_string(), path.clone()));
        }
    }
    out
}

/// A file's time on the mixer clock in real time: pts `p` is due at wall time `start + p` and
/// was captured at `base + p`, `base` being a tick of the mixer.
#[derive(Debug, Clone, Copy)]
pub struct FileClock {
    start: Instant,
    base: Duration,
}

impl FileClock {
    /// A clock whose time 0 is the mixer's next tick (or the current one, when exactly on it).
    pub fn on_next_tick(mixer: &Mixer) -> FileClock {
        let fps = mixer.config().output.fps;
        let now = mixer.clock();
        let base = tick_time(fps, ticks_before(fps, now));
        FileClock {
            start: Instant::now() + base.saturating_sub(now),
            base,
        }
    }

    /// A clock whose time 0 is now (on a target clock that starts now).
    pub fn starting_now() -> FileClock {
        FileClock {
            start: Instant::now(),
            base: Duration::ZERO,
        }
    }

    /// Sleeps until `pts` is due.
    pub fn wait(&self, pts: Duration) {
        if let Some(d) = (self.start + pts).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }

    /// The capture time of `pts` on the mixer clock.
    pub fn capture(&self, pts: Duration) -> Duration {
        self.base + pts
    }
}

/// Pushes `camid`'s frames from `rx` in real time (each at its pts on `clock`) until the input
/// ends, `stopped()` or the mixer refuses one.
pub fn push_video<T: FeedTarget + ?Sized>(
    m: &T,
    clock: &FileClock,
    camid: &str,
    rx: &Receiver<VideoFrame>,
    stopped: &dyn Fn() -> bool,
) {
    for f in rx.iter() {
        if stopped() {
            return;
        }
        clock.wait(f.pts);
        let capture = clock.capture(f.pts);
        if m.push_video_at(camid, f, capture).is_err() {
            return;
        }
    }
}

/// Pushes `user`'s audio from `rx` in real time until the input ends, `stopped()` or the mixer
/// refuses a chunk for another reason than a full queue (a chunk it had no room for is lost,
/// later ones may fit).
pub fn push_audio<T: FeedTarget + ?Sized>(
    m: &T,
    clock: &FileClock,
    user: &str,
    rx: &Receiver<AudioFrame>,
    stopped: &dyn Fn() -> bool,
) {
    for f in rx.iter() {
        if stopped() {
            return;
        }
        let pts = f.capture().unwrap_or_default();
        clock.wait(pts);
        match m.push_audio(user, f.with_capture(clock.capture(pts))) {
            Ok(()) | Err(MixerError::Backlog(_)) => {}
            Err(_) => return,
        }
    }
}

/// A video input's frames, its thread and (once it opened its file) its decoder's counts.
type VideoFeed = (
    Receiver<VideoFrame>,
    JoinHandle<()>,
    Receiver<Result<Arc<DecodeCounts>, DecodeError>>,
);
/// An audio input's chunks, its thread and whether it opened its file.
type AudioFeed = (
    Receiver<AudioFrame>,
    JoinHandle<()>,
    Receiver<Result<(), AudioDecodeError>>,
);

fn spawn_video(
    camid: &str,
    path: &std::path::Path,
    shown_at: Option<u32>,
) -> Result<VideoFeed, FeedError> {
    let (tx, rx) = bounded::<VideoFrame>(INPUT_QUEUE);
    let (open_tx, open_rx) = bounded::<Result<Arc<DecodeCounts>, DecodeError>>(1);
    let path = path.to_path_buf();
    let h = std::thread::Builder::new()
        .name(format!("cm-decode-{camid}"))
        .spawn(move || {
            let mut d = match Decoder::open(&path) {
                Ok(mut d) => {
                    if let Some(fps) = shown_at {
                        d.only_shown_at(fps);
                    }
                    let _ = open_tx.send(Ok(d.counts()));
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
        })
        .map_err(|e| FeedError::Thread(camid.to_string(), e.to_string()))?;
    Ok((rx, h, open_rx))
}

fn spawn_audio(user: &str, path: &std::path::Path) -> Result<AudioFeed, FeedError> {
    let (tx, rx) = bounded::<AudioFrame>(AUDIO_INPUT_QUEUE);
    let (open_tx, open_rx) = bounded::<Result<(), AudioDecodeError>>(1);
    let path = path.to_path_buf();
    let h = std::thread::Builder::new()
        .name(format!("cm-audio-dec-{user}"))
        .spawn(move || {
            let dec = match AudioFileDecoder::open(&path) {
                Ok(d) => {
                    let _ = open_tx.send(Ok(()));
                    d
                }
                Err(e) => {
                    let _ = open_tx.send(Err(e));
                    return;
                }
            };
            for chunk in dec {
                let d = match chunk {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "audio input ended early");
                        return;
                    }
                };
                if d.samples.is_empty() {
                    continue;
                }
                let f = match AudioFrame::f32_interleaved(d.samples, d.sample_rate, d.channels) {
                    Ok(f) => f.with_capture(d.pts),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "bad audio chunk: audio input ended");
                        return;
                    }
                };
                if tx.send(f).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| FeedError::Thread(user.to_string(), e.to_string()))?;
    Ok((rx, h, open_rx))
}
