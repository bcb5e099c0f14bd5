//! Live targets (`rtmp://`, `rtsp://`): each is a sink with its own thread and bounded queue,
//! fed from the one encode, so a server that is unreachable, slow or gone never delays,
//! fails or shortens the recording's files.
//!
//! - [`LiveSink::send`] never blocks: a full queue (the server too slow) or a target that is
//!   down drops the packet and counts it ([`LiveStatus::dropped`]).
//! - The sink's thread connects, writes, and on any failure closes the connection and
//!   reconnects after 1, 2, 4 … 30 s ([`backoff`]); a new connection starts at the next video
//!   keyframe (with the audio from there), so the server always gets a decodable stream.
//! - Socket operations time out after [`IO_TIMEOUT`] (a server that stops reading counts as
//!   down).
//! - Its state ([`LiveSink::status`]) is read by the writer, which reports each live target as
//!   its own output (state 1 while connected, 3 with the error while down).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use ffmpeg_next as ffmpeg;

use super::{MuxError, Muxer, Packet, Storage, TrackKind, TrackSpec};
use crate::model::config::Target;

/// Packets queued per live target (≈ 6 s of 15 fps video with its audio).
pub const LIVE_QUEUE: usize = 512;

/// Longest a socket read or write may block before the target counts as down.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait before reconnect attempt `n` (0-based): 1, 2, 4, 8, 16, 30, 30 … s.
///
/// ```
/// use std::time::Duration;
/// use cloudmixer::output::live::backoff;
/// assert_eq!(backoff(0), Duration::from_secs(1));
/// assert_eq!(backoff(4), Duration::from_secs(16));
/// assert_eq!(backoff(9), Duration::from_secs(30));
/// ```
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30))
}

/// A track with its own copy of the encoder's parameters, so a sink can (re)open its target
/// on its own thread at any time.
pub struct OwnedTrack {
    /// The id packets of this track carry.
    pub id: super::TrackId,
    /// Video or audio.
    pub kind: TrackKind,
    /// The encoder's time base.
    pub time_base: ffmpeg::Rational,
    codec: ffmpeg::codec::Context,
}

impl OwnedTrack {
    /// Copies the stream parameters (and extradata) of `spec`'s encoder.
    pub fn of(spec: &TrackSpec<'_>) -> Result<OwnedTrack, MuxError> {
        let params = ffmpeg::codec::Parameters::from(ByRef(spec.codec));
        let codec = ffmpeg::codec::Context::from_parameters(params)
            .map_err(|e| MuxError::ff("(track parameters)", e))?;
        Ok(OwnedTrack {
            id: spec.id,
            kind: spec.kind,
            time_base: spec.time_base,
            codec,
        })
    }

    /// The track as a [`TrackSpec`] for [`Muxer::open`].
    pub fn spec(&self) -> TrackSpec<'_> {
        TrackSpec {
            id: self.id,
            kind: self.kind,
            codec: &self.codec,
            time_base: self.time_base,
        }
    }
}

/// `Parameters::from` takes `AsRef<Context>`, which `&Context` is not.
struct ByRef<'a>(&'a ffmpeg::codec::Context);

impl AsRef<ffmpeg::codec::Context> for ByRef<'_> {
    fn as_ref(&self) -> &ffmpeg::codec::Context {
        self.0
    }
}

/// What a live target is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStatus {
    /// Connected and writing.
    pub connected: bool,
    /// Why it is down (the last connect or write error), while it is down.
    pub error: Option<String>,
    /// Packets not sent: queue full, target down, or waiting for a keyframe after a reconnect.
    pub dropped: u64,
    /// Packets written to the server.
    pub sent: u64,
    /// Successful connections so far (1 + reconnects).
    pub connections: u32,
    /// Bytes written over all connections.
    pub bytes: u64,
}

pub(crate) enum Msg {
    Packet(Packet),
    End,
}

/// One live target's sink (see the module docs).
pub struct LiveSink {
    url: String,
    tx: Sender<Msg>,
    status: Arc<Mutex<LiveStatus>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LiveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSink")
            .field("url", &self.url)
            .field("status", &self.status())
            .finish()
    }
}

impl LiveSink {
    /// Starts the sink's thread, which connects to `url` (in the background: this returns at
    /// once, whether the server is up or not).
    pub fn start(url: &str, tracks: Vec<OwnedTrack>) -> std::io::Result<LiveSink> {
        let (tx, rx) = bounded(LIVE_QUEUE);
        let status = Arc::new(Mutex::new(LiveStatus::default()));
        let (u, st) = (url.to_string(), status.clone());
        let thread = std::thread::Builder::new()
            .name("cm-live".into())
            .spawn(move || run(&u, &tracks, &rx, &st))?;
        Ok(LiveSink {
            url: url.to_string(),
            tx,
            status,
            thread: Some(thread),
        })
    }

    /// A sink without a thread (tests): what it is sent stays in the returned queue.
    #[cfg(test)]
    pub(crate) fn detached(url: &str) -> (LiveSink, Receiver<Msg>) {
        let (tx, rx) = bounded(LIVE_QUEUE);
        let sink = LiveSink {
            url: url.to_string(),
            tx,
            status: Arc::default(),
            thread: None,
        };
        (sink, rx)
    }

    /// The target URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues a packet; never blocks (a full queue drops it and counts it). The writer sends
    /// each live target its own [`Packet::share`] of the encoded packet: a dropped packet
    /// costs a reference count, not a copy.
    pub fn send(&self, p: Packet) {
        match self.tx.try_send(Msg::Packet(p)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                lock(&self.status).dropped += 1;
            }
        }
    }

    /// The sink's state now.
    pub fn status(&self) -> LiveStatus {
        lock(&self.status).clone()
    }

    /// Ends the stream: the queued packets are sent and the connection closed, waiting at most
    /// `timeout` (a stalled server is abandoned; its thread ends at its next I/O timeout).
    pub fn finish(mut self, timeout: Duration) -> LiveStatus {
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::End;
        // the queue may be full of a stalled server's packets: keep trying until the deadline
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        self.status()
    }
}

impl Drop for LiveSink {
    fn drop(&mut self) {
        let _ = self.tx.try_send(Msg::End);
    }
}

fn lock(s: &Mutex<LiveStatus>) -> std::sync::MutexGuard<'_, LiveStatus> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sink's thread: connect, stream, reconnect with backoff, until `End`.
fn run(url: &str, tracks: &[OwnedTrack], rx: &Receiver<Msg>, status: &Mutex<LiveStatus>) {
    let specs: Vec<TrackSpec<'_>> = tracks.iter().map(OwnedTrack::spec).collect();
    let video = tracks
        .iter()
        .find(|t| matches!(t.kind, TrackKind::Video { .. }))
        .map(|t| t.id);
    let storage = Storage::new("/");
    let target = [Target::Url {
        url: url.to_string(),
    }];
    let mut failures = 0u32;
    loop {
        let mut muxer = match Muxer::open(&storage, &target, &specs, false) {
            Ok(m) => {
                let mut s = lock(status);
                s.connected = true;
                s.error = None;
                s.connections += 1;
                failures = 0;
                m
            }
            Err(e) => {
                {
                    let mut s = lock(status);
                    s.connected = false;
                    s.error = Some(e.to_string());
                }
                tracing::warn!(url, error = %e, retry_in = ?backoff(failures), "live target down");
                // drop what arrives while waiting; stop if the recording ends
                let until = Instant::now() + backoff(failures);
                failures += 1;
                if drain_until(rx, until, status) {
                    return;
                }
                continue;
            }
        };
        tracing::info!(url, "live target connected");
        // a new connection starts at a video keyframe
        let mut waiting_key = video.is_some();
        let mut held: Vec<Packet> = Vec::new();
        let mut bytes0 = 0;
        let failed = loop {
            let p = match rx.recv() {
                Ok(Msg::Packet(p)) => p,
                Ok(Msg::End) | Err(_) => {
                    let _ = muxer.finish();
                    let mut s = lock(status);
                    s.connected = false;
                    return;
                }
            };
            if waiting_key {
                if Some(p.track) == video && p.data.is_key() {
                    waiting_key = false;
                    // the audio that arrived first, from the keyframe's time on (the encoded
                    // video runs behind the audio)
                    let key_t = time_of(tracks, &p);
                    let mut err = None;
                    for h in std::mem::take(&mut held) {
                        if time_of(tracks, &h) + 1e-3 < key_t {
                            lock(status).dropped += 1;
                        } else if err.is_none() {
                            if let Err(e) = muxer.write(h) {
                                err = Some(e);
                            }
                        }
                    }
                    if let Some(e) = err {
                        break e;
                    }
                } else {
                    if Some(p.track) != video && held.len() < LIVE_QUEUE {
                        held.push(p);
                    } else {
                        lock(status).dropped += 1;
                    }
                    continue;
                }
            }
            if let Err(e) = muxer.write(p) {
                break e;
            }
            let bytes = muxer.progress().first().map_or(0, |p| p.bytes);
            let mut s = lock(status);
            s.sent += 1;
            s.bytes += bytes.saturating_sub(bytes0);
            bytes0 = bytes;
        };
        drop(muxer);
        {
            let mut s = lock(status);
            s.connected = false;
            s.error = Some(failed.to_string());
        }
        tracing::warn!(url, error = %failed, "live target lost; reconnecting");
        let until = Instant::now() + backoff(failures);
        failures += 1;
        if drain_until(rx, until, status) {
            return;
        }
    }
}

/// The time base of track `id` among `tracks`.
pub(crate) fn time_base_of(tracks: &[OwnedTrack], id: super::TrackId) -> Option<ffmpeg::Rational> {
    tracks.iter().find(|t| t.id == id).map(|t| t.time_base)
}

/// A packet's time in seconds.
pub(crate) fn time_of(tracks: &[OwnedTrack], p: &Packet) -> f64 {
    let tb = time_base_of(tracks, p.track).unwrap_or(ffmpeg::Rational::new(1, 1));
    p.data.pts().unwrap_or(0) as f64 * tb.numerator() as f64 / tb.denominator().max(1) as f64
}

/// Drops packets until `until`; true when the recording ended meanwhile.
fn drain_until(rx: &Receiver<Msg>, until: Instant, status: &Mutex<LiveStatus>) -> bool {
    loop {
        match rx.recv_deadline(until) {
            Ok(Msg::Packet(_)) => lock(status).dropped += 1,
            Ok(Msg::End) | Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}
