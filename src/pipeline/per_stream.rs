//! Mode 1 (one file per stream): a [`StreamRecorder`] records each subscribed camera into its
//! own file at the camera's own size, with its user's audio (`aStreamType` 0) or everyone's
//! (1), and each subscribed user's audio into its own audio file. Nothing is composited.
//!
//! Each stream is a mixer of its own ([`Mixer`], mode 0) with the config
//! [`PerStream::video_config`] derives: its canvas is the camera's size, its one item the
//! camera. So every stream gets what a mode 0 recording has (pacing, the encoder choice,
//! crash-safe files, segments, upload). A stream's mixer starts at the stream's first frame
//! (a stream that appears later gets its file then); its file is named by the vendor's rule
//! with that start time. Its frame rate is `vFps` when the config gives it, else the camera's
//! own, measured from the first two frames' arrival (1–30 fps).
//!
//! Events of all streams come out of one receiver: each file is its own output (`id` in order of
//! appearance), errors name their stream, and NULL comes last, after every stream has ended.
//! A stream that fails (its file cannot be written) ends alone: the others go on, and streams
//! that appear later still get their files. File names longer than a file system allows are
//! shortened ([`PerStream::video_file_name`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;

use super::error::MixerError;
use super::mixer::{Mixer, MixerSettings};
use super::state::EventHub;
use crate::compose::text::{format_timestamp, local_utc_offset};
use crate::model::audio::AudioFrame;
use crate::model::config::{ConfigError, MixerConfig, PerStream};
use crate::model::events::{codes, MixerEvent, MixerState};
use crate::model::frame::VideoFrame;
use crate::model::time::PaceMode;
use crate::output::Storage;

/// The stream's start in file names: local time `YYYY-MM-DD_HH-MM-SS`.
pub fn start_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format_timestamp(secs, local_utc_offset(secs))
        .replace(' ', "_")
        .replace(':', "-")
}

/// The frame rate of a stream whose first two frames arrived `gap` apart (1–30).
pub fn measured_fps(gap: Duration) -> u32 {
    let us = gap.as_micros().max(1) as f64;
    (1e6 / us).round().clamp(1.0, 30.0) as u32
}

struct Stream {
    mixer: Mixer,
    forward: JoinHandle<()>,
}

/// A camera seen once, waiting for its second frame (to measure its rate).
struct First {
    frame: VideoFrame,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    /// By camid, and by `"\0audio:" + user` for audio files.
    streams: HashMap<String, Stream>,
    first: HashMap<String, First>,
    /// The default camera of each user (its `-1` camid, or its first camera).
    default_cam: HashMap<String, String>,
    /// Streams that failed to start: not retried.
    refused: HashMap<String, ()>,
    stopped: bool,
}

/// Mode 1 front (see the [module docs](self)): real time only.
///
/// ```no_run
/// use cloudmixer::model::config::MixerConfig;
/// use cloudmixer::model::frame::VideoFrame;
/// use cloudmixer::output::Storage;
/// use cloudmixer::pipeline::{MixerSettings, StreamRecorder};
/// let cfg = MixerConfig::from_json(r#"{"mode":1,"videoFileCfg":{"svrPath":"/rec",
///   "svrFileNameSuffix":".mp4","subscribeVideos":["_cr_all_"]}}"#)?;
/// let rec = StreamRecorder::create(cfg, Storage::new("/srv/records"), MixerSettings::default())?;
/// let frame = VideoFrame::solid_i420(640, 360, [16, 128, 128])?; // a camera's decoded frame
/// rec.push_video("u1.0", frame)?; // u1's camera 0 gets its file at its first frame
/// let mut rec = rec;
/// rec.destroy()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamRecorder {
    ps: PerStream,
    storage: Storage,
    settings: MixerSettings,
    inner: Mutex<Inner>,
    hub: Arc<EventHub>,
    rx: Receiver<MixerEvent>,
    next_id: Arc<AtomicU32>,
    state: AtomicU8,
}

impl std::fmt::Debug for StreamRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRecorder")
            .field("per_stream", &self.ps)
            .finish_non_exhaustive()
    }
}

impl StreamRecorder {
    /// Starts a mode 1 recording: STARTING, RUNNING. Files start with their streams. Every
    /// stream's mixer runs on `settings.services`, or on one set of the recorder's own.
    pub fn create(
        config: MixerConfig,
        storage: Storage,
        settings: MixerSettings,
    ) -> Result<StreamRecorder, MixerError> {
        // every stream's mixer runs on one set of services: the given one, else the
        // recorder's own
        let mut settings = settings;
        settings.services.get_or_insert_with(Default::default);
        let ps = config.per_stream.clone().ok_or_else(|| {
            MixerError::Config(ConfigError::Invalid {
                path: "mode".into(),
                rule: "StreamRecorder records mode 1 configs; use Mixer for mode 0".into(),
            })
        })?;
        if settings.mode != PaceMode::Realtime {
            return Err(MixerError::WrongMode(
                "mode 1 runs in real time (offline, record each stream's file on its own)",
            ));
        }
        // refused now rather than at the first stream (a build without `upload` cannot honour a
        // storageConfig); with `upload`, each stream's mixer checks it when it starts
        #[cfg(not(feature = "upload"))]
        super::uploads::check_storage(&config)?;
        let hub = Arc::new(EventHub::default());
        // subscribed before STARTING: `events()` sees everything
        let rx = hub.subscribe();
        let r = StreamRecorder {
            ps,
            storage,
            settings,
            inner: Mutex::default(),
            hub,
            rx,
            next_id: Arc::new(AtomicU32::new(0)),
            state: AtomicU8::new(MixerState::Starting as u8),
        };
        r.emit(MixerEvent::state(MixerState::Starting));
        r.state.store(MixerState::Running as u8, Ordering::Release);
        r.emit(MixerEvent::state(MixerState::Running));
        Ok(r)
    }

    fn emit(&self, ev: MixerEvent) {
        self.hub.send(ev);
    }

    /// The events of every stream's file since create (see the [module docs](self)); the
    /// stream ends after NULL. Clones of it share one stream (each event goes to one of them);
    /// use [`StreamRecorder::subscribe`] for a stream of one's own.
    pub fn events(&self) -> Receiver<MixerEvent> {
        self.rx.clone()
    }

    /// A stream of its own that gets every event from now on, ending after NULL (already
    /// ended once the recorder is back to NULL).
    pub fn subscribe(&self) -> Receiver<MixerEvent> {
        self.hub.subscribe()
    }

    /// The state: RUNNING until [`StreamRecorder::destroy`], then NULL.
    pub fn state(&self) -> MixerState {
        match self.state.load(Ordering::Acquire) {
            1 => MixerState::Starting,
            2 => MixerState::Running,
            4 => MixerState::Stopping,
            _ => MixerState::Null,
        }
    }

    /// How many stream files have started.
    pub fn streams(&self) -> usize {
        self.lock().streams.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A frame of camera `camid` (`user.cam`). A subscribed camera's file starts with it (at
    /// the camera's size); frames of cameras not subscribed are dropped (Ok).
    pub fn push_video(&self, camid: &str, frame: VideoFrame) -> Result<(), MixerError> {
        let mut g = self.lock();
        if g.stopped {
            return Err(MixerError::Stopped {
                code: codes::OK,
                desc: "destroyed".into(),
            });
        }
        if let Some(s) = g.streams.get(camid) {
            return s.mixer.push_video(camid, frame);
        }
        let user = PerStream::user_of(camid).to_string();
        let default = g
            .default_cam
            .entry(user.clone())
            .or_insert_with(|| camid.to_string())
            .clone();
        let is_default = default == camid || camid.ends_with(".-1");
        if !self.ps.subscribes_video(camid, is_default) || g.refused.contains_key(camid) {
            return Ok(());
        }
        // the rate: vFps, else measured between the camera's first two frames
        let (fps, first) = match self.ps.video.as_ref().and_then(|v| v.fps) {
            Some(f) => (f, None),
            None => match g.first.remove(camid) {
                None => {
                    let at = Instant::now();
                    g.first.insert(camid.to_string(), First { frame, at });
                    return Ok(());
                }
                Some(first) => (measured_fps(first.at.elapsed()), Some(first.frame)),
            },
        };
        let s = self.start_video(&mut g, camid, first.as_ref().unwrap_or(&frame), fps)?;
        if let Some(f) = first {
            // the first frame shows until the second, as it arrived
            s.mixer.push_video(camid, f)?;
        }
        s.mixer.push_video(camid, frame)
    }

    fn start_video<'a>(
        &self,
        g: &'a mut Inner,
        camid: &str,
        like: &VideoFrame,
        fps: u32,
    ) -> Result<&'a Stream, MixerError> {
        // a rotated camera is recorded upright
        let (w, h) = if like.rotation.swaps_axes() {
            (like.height(), like.width())
        } else {
            (like.width(), like.height())
        };
        let stamp = start_stamp(SystemTime::now());
        let cfg = self.ps.video_config(camid, w, h, fps, &stamp);
        self.start(g, camid.to_string(), cfg, camid)
    }

    fn start<'a>(
        &self,
        g: &'a mut Inner,
        key: String,
        cfg: Result<MixerConfig, ConfigError>,
        what: &str,
    ) -> Result<&'a Stream, MixerError> {
        let started = cfg
            .map_err(MixerError::from)
            .and_then(|cfg| Mixer::create_with(cfg, self.storage.clone(), self.settings.clone()));
        let mixer = match started {
            Ok(m) => m,
            Err(e) => {
                g.refused.insert(key, ());
                self.emit(MixerEvent::Error {
                    code: e.code(),
                    desc: format!("stream {what}: {e}"),
                });
                return Err(e);
            }
        };
        let forward = forward(mixer.events(), self.hub.clone(), self.next_id.clone(), what);
        Ok(g.streams.entry(key).or_insert(Stream { mixer, forward }))
    }

    /// Audio of `user`: into the user's audio file (subscribed users; it starts with the
    /// user's first audio) and into the video files that carry it.
    pub fn push_audio(&self, user: &str, frame: AudioFrame) -> Result<(), MixerError> {
        let user = PerStream::user_of(user);
        let mut g = self.lock();
        if g.stopped {
            return Err(MixerError::Stopped {
                code: codes::OK,
                desc: "destroyed".into(),
            });
        }
        let key = format!("\0audio:{user}");
        if self.ps.subscribes_audio(user)
            && !g.streams.contains_key(&key)
            && !g.refused.contains_key(&key)
        {
            let stamp = start_stamp(SystemTime::now());
            let cfg = self.ps.audio_config(user, &stamp);
            let _ = self.start(&mut g, key.clone(), cfg, &format!("{user} (audio)"));
        }
        let room = self.ps.video.as_ref().is_some_and(|v| v.room_audio);
        for (k, s) in &g.streams {
            let carries =
                *k == key || (!k.starts_with('\0') && (room || PerStream::user_of(k) == user));
            // a stream that has failed has said so once (its error event); the others go on
            if carries && s.mixer.state() != MixerState::Null {
                // a full queue drops this frame for that file only
                match s.mixer.push_audio(user, frame.clone()) {
                    Ok(()) | Err(MixerError::Backlog(_)) => {}
                    Err(e) => tracing::warn!("audio of {user} into {k:?}: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Ends every stream's file (each: final output info, upload if configured), then NULL.
    /// Idempotent. Returns the first stream failure, if any.
    pub fn destroy(&mut self) -> Result<(), MixerError> {
        let streams: Vec<Stream> = {
            let mut g = self.lock();
            if g.stopped {
                return Ok(());
            }
            g.stopped = true;
            g.first.clear();
            g.streams.drain().map(|(_, s)| s).collect()
        };
        self.state
            .store(MixerState::Stopping as u8, Ordering::Release);
        self.emit(MixerEvent::state(MixerState::Stopping));
        // the streams end in parallel
        let ends: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                std::thread::spawn(move || {
                    let r = s.mixer.destroy();
                    drop(s.mixer);
                    let _ = s.forward.join();
                    r
                })
            })
            .collect();
        let mut first_err = None;
        for h in ends {
            if let Ok(Err(e)) = h.join() {
                first_err.get_or_insert(e);
            }
        }
        let (code, desc) = first_err
            .as_ref()
            .map_or((codes::OK, String::new()), |e| (e.code(), e.to_string()));
        self.state.store(MixerState::Null as u8, Ordering::Release);
        self.emit(MixerEvent::StateChanged {
            state: MixerState::Null,
            err: code,
            err_desc: desc,
            encoder: None,
            backend: None,
        });
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for StreamRecorder {
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

/// Re-emits a stream's output infos under ids of the whole recording and its errors naming
/// the stream; ends when the stream's mixer has reported NULL (after its uploads).
fn forward(
    rx: Receiver<MixerEvent>,
    tx: Arc<EventHub>,
    next_id: Arc<AtomicU32>,
    what: &str,
) -> JoinHandle<()> {
    let what = what.to_string();
    std::thread::spawn(move || {
        let mut ids: HashMap<u32, u32> = HashMap::new();
        for ev in rx.iter() {
            match ev {
                MixerEvent::OutputInfoChanged(mut i) => {
                    i.id = *ids
                        .entry(i.id)
                        .or_insert_with(|| next_id.fetch_add(1, Ordering::AcqRel));
                    tx.send(MixerEvent::OutputInfoChanged(i));
                }
                MixerEvent::Error { code, desc } => {
                    tx.send(MixerEvent::Error {
                        code,
                        desc: format!("stream {what}: {desc}"),
                    });
                }
                MixerEvent::StateChanged {
                    state: MixerState::Null,
                    ..
                } => break,
                MixerEvent::StateChanged { .. }
                | MixerEvent::Stats(_)
                | MixerEvent::InputStateChanged { .. } => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_rate_is_rounded_and_clamped() {
        assert_eq!(measured_fps(Duration::from_micros(33_333)), 30);
        assert_eq!(measured_fps(Duration::from_millis(66)), 15);
        assert_eq!(measured_fps(Duration::from_millis(5)), 30);
        assert_eq!(measured_fps(Duration::from_secs(3)), 1);
    }

    #[test]
    fn start_stamp_has_no_spaces_or_colons() {
        let s = start_stamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(s.len(), 19, "{s}");
        assert!(!s.contains(' ') && !s.contains(':'), "{s}");
    }
}
