//! Pull feeds: one thread per URL input (`rtmp://`, `rtmps://`, `rtsp://`, `srt://`,
//! `http(s)://` progressive or HLS) that opens the URL with FFmpeg, demuxes video and audio
//! from that one connection, decodes them (the file decoders' parts: `open_video_stream` /
//! `convert_frame` of `media::decode`, `media::audio_dec::AudioStream`) and pushes them with capture times on the mixer
//! clock, reconnecting while the room runs.
//!
//! - **Protocols**: each scheme opens with its own `protocol_whitelist` (rtmp(s): `rtmp,rtmps,
//!   tcp,tls`; rtsp: `rtsp,rtp,udp,tcp`, interleaved over TCP unless the URL ends with
//!   `?transport=udp` (or has `transport=udp` among its query parameters: taken out of the URL
//!   before FFmpeg sees it); srt: `srt,udp` (caller mode); http(s): `http,https,tcp,tls,crypto`,
//!   which lets the `hls` demuxer read a `.m3u8` and its segments over HTTP and nothing else).
//! - **Time-outs and stop**: every open and read runs under FFmpeg's interrupt callback with a
//!   deadline ([`PullSettings::io_timeout`] per read, plus the probe time for an open) and the
//!   room's stop flag, on top of `rw_timeout` (and rtsp's socket `timeout`): a connection that
//!   stalls returns an error instead of hanging, and stopping the room ends the thread within
//!   about 100 ms.
//! - **Capture times**: live, so a stream's timestamps are mapped onto the mixer clock at the
//!   first packet after each (re)connect: `capture = anchor + (ts − first_ts)`, `anchor` the
//!   mixer clock then. Video and audio of one URL share the mapping, so they stay in sync as
//!   they were sent. Frames and chunks are pushed when their capture time is due: a stream that
//!   comes faster than real time (a file over HTTP, an HLS playlist's first segments, what a
//!   server or the probe buffered) is paced as a live one comes. A timestamp that jumps (more
//!   than [`MAX_TS_JUMP`] forward or 0.5 s back: a wrap the demuxer did not unwrap, a publisher
//!   that restarted) continues the timeline one frame after the previous one; a mapping that
//!   drifted more than [`MAX_DRIFT`] from the mixer clock (a stall that did not drop the
//!   connection, a smaller jump forward) is re-anchored on it.
//! - **Reconnects**: on end of stream or an error, while the room runs, it reconnects after 1,
//!   2, 4 … 30 s ([`PullSettings::max_backoff`]); the wait starts again at 1 s after the input
//!   was live for [`PullSettings::live_reset`]. Meanwhile the mixer's `source_timeout` shows
//!   the placeholder; the first frame after the reconnect shows the source again.
//! - **State** ([`InputState`]): `connecting` (first attempt), `live` (packets coming),
//!   `stalled` (connected, no packet for [`PullSettings::stall_after`]), `reconnecting` (with
//!   the error, URL credentials redacted), `stopped` (the room ended). Each change but
//!   `stopped` is reported through the callback given to [`spawn`] (the host publishes it as
//!   `inputStateChanged`); [`PullInput::stats`] has the state and the counters (bitrate, fps,
//!   decode time, lost frames, reconnects, re-anchors) for the room's info and `/metrics`.
//! - **Limits**: a stream larger than [`PullSettings::max_width`] × [`PullSettings::max_height`]
//!   (declared or decoded), or above [`PullSettings::max_bitrate`] (measured over a window), is
//!   dropped with that error and retried with the back-off.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_next as ff;

use super::file::FeedTarget;
use crate::media::audio_dec::AudioStream;
use crate::media::decode::{convert_frame, init_ffmpeg, open_video_stream, MAX_TS_JUMP};
use crate::model::audio::AudioFrame;
use crate::pipeline::MixerError;

/// A mapping further than this from the mixer clock is re-anchored on it.
pub const MAX_DRIFT: Duration = Duration::from_secs(1);

/// The URL schemes taken as pull inputs.
pub const SCHEMES: [&str; 6] = ["rtmp", "rtmps", "rtsp", "srt", "http", "https"];

/// The decode slots network inputs share: at most this many of their video packets are
/// decoded at once (by default one per core). Each input's video decoder runs 1 thread per 2 Mpx of
/// picture (1 up to 1080p, at most 4), so 16 inputs use 16 reading threads that block on
/// their sockets and at most a core's worth of decoding each, never 16 × cores decoder
/// threads contending for the cores. Cheap to clone: clones share the slots.
#[derive(Clone)]
pub struct DecodeSlots {
    inner: Arc<(Mutex<usize>, std::sync::Condvar)>,
    total: usize,
}

impl DecodeSlots {
    /// `n` slots (at least 1).
    pub fn new(n: usize) -> DecodeSlots {
        let n = n.max(1);
        DecodeSlots {
            inner: Arc::new((Mutex::new(n), std::sync::Condvar::new())),
            total: n,
        }
    }

    /// How many slots there are.
    pub fn total(&self) -> usize {
        self.total
    }

    /// How many are taken now.
    pub fn busy(&self) -> usize {
        self.total - *self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot; it is given back when the guard drops.
    pub fn acquire(&self) -> DecodeSlot<'_> {
        let (m, cv) = &*self.inner;
        let mut free = m.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        DecodeSlot(self)
    }
}

impl Default for DecodeSlots {
    /// One slot per core.
    fn default() -> Self {
        DecodeSlots::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl std::fmt::Debug for DecodeSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecodeSlots({})", self.total)
    }
}

impl PartialEq for DecodeSlots {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// A taken decode slot ([`DecodeSlots::acquire`]).
pub struct DecodeSlot<'a>(&'a DecodeSlots);

impl Drop for DecodeSlot<'_> {
    fn drop(&mut self) {
        let (m, cv) = &*self.0.inner;
        *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_one();
    }
}

/// The key a publisher must give to publish (RTMP: `?key=KEY` after the stream key, e.g.
/// `rtmp://HOST/live/room1/Usr1.-1?key=KEY`; SRT: `s=KEY` in an access-control streamid,
/// `#!::r=room1/Usr1.-1,m=publish,s=KEY`, or `?key=KEY` after a plain one). Compared in
/// constant time; never printed (its `Debug` is `***`).
///
/// ```
/// use cloudmixer::host::feed::pull::PublishKey;
/// let k = PublishKey::new("s3cret-publish-key").unwrap();
/// assert!(k.check(Some("s3cret-publish-key")).is_ok());
/// assert!(k.check(Some("guess")).unwrap_err().contains("wrong"));
/// assert!(k.check(None).unwrap_err().contains("no publish key"));
/// assert_eq!(format!("{k:?}"), "PublishKey(***)");
/// ```
#[derive(Clone)]
pub struct PublishKey(Arc<str>);

impl PublishKey {
    /// A key: 16 to 256 printable ASCII characters, none of `?&,=#/` or spaces.
    pub fn new(key: &str) -> Result<PublishKey, String> {
        if key.len() < 16
            || key.len() > 256
            || !key
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"?&,=#/".contains(&b))
        {
            return Err(
                "a publish key is 16 to 256 printable characters without spaces or ?&,=#/".into(),
            );
        }
        Ok(PublishKey(key.into()))
    }

    /// Whether `given` is the key (the error says which way it is not, never the key).
    pub fn check(&self, given: Option<&str>) -> Result<(), String> {
        let Some(g) = given else {
            return Err("no publish key given (this service asks for one)".into());
        };
        let (a, b) = (self.0.as_bytes(), g.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        if diff == 0 {
            Ok(())
        } else {
            Err("wrong publish key".into())
        }
    }
}

impl std::fmt::Debug for PublishKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishKey(***)")
    }
}

/// A video decoder's threads for a `w` x `h` stream: 1 per 2 Mpx (1 up to 1080p), at most 4.
pub fn decode_threads(w: u32, h: u32) -> usize {
    (u64::from(w) * u64::from(h))
        .div_ceil(2_100_000)
        .clamp(1, 4) as usize
}

/// How pull inputs connect, wait and what they accept.
#[derive(Debug, Clone, PartialEq)]
pub struct PullSettings {
    /// Widest stream taken (pixels).
    pub max_width: u32,
    /// Tallest stream taken (pixels).
    pub max_height: u32,
    /// Highest bitrate taken, bits/s over [`STATS_WINDOW`] (`None`: no limit).
    pub max_bitrate: Option<u64>,
    /// How long one read (or connect) may wait for data before the connection counts as lost.
    pub io_timeout: Duration,
    /// How long an open may probe the stream (FFmpeg's `analyzeduration`), also added to
    /// `io_timeout` for the open's deadline. Short: a live stream's first frames wait for it.
    pub probe: Duration,
    /// Connected without a packet for this long: `stalled`.
    pub stall_after: Duration,
    /// The longest wait between reconnects (they double from 1 s).
    pub max_backoff: Duration,
    /// Live this long: the next reconnect waits 1 s again.
    pub live_reset: Duration,
    /// The decode slots every network input of the host shares.
    pub decode_slots: DecodeSlots,
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            max_width: 4096,
            max_height: 4096,
            max_bitrate: None,
            io_timeout: Duration::from_secs(5),
            probe: Duration::from_secs(1),
            stall_after: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            live_reset: Duration::from_secs(10),
            decode_slots: DecodeSlots::default(),
        }
    }
}

/// Bitrate, fps and decode time are measured over windows this long.
pub const STATS_WINDOW: Duration = Duration::from_secs(2);

/// Where a pull input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputState {
    /// Opening the URL for the first time.
    Connecting,
    /// Packets coming.
    Live,
    /// Connected, but no packet for [`PullSettings::stall_after`].
    Stalled,
    /// Lost or never got the stream (see the error); trying again after the back-off.
    Reconnecting,
    /// The room ended (no more attempts).
    Stopped,
    /// A published input (RTMP/SRT publish, WHIP) whose publisher left: a new publish to
    /// the same camid takes it again.
    Idle,
}

impl InputState {
    /// The state's name (`connecting`, `live`, `stalled`, `reconnecting`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            InputState::Connecting => "connecting",
            InputState::Live => "live",
            InputState::Stalled => "stalled",
            InputState::Reconnecting => "reconnecting",
            InputState::Stopped => "stopped",
            InputState::Idle => "idle",
        }
    }
}

/// One pull input's state and counters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputStats {
    /// The camid (or user) it feeds.
    pub input: String,
    /// The URL, credentials redacted.
    pub url: String,
    /// Its state.
    pub state: InputState,
    /// Why it is not live (empty when it is, or before the first error).
    pub error: String,
    /// Connections lost (or refused) so far.
    pub reconnects: u64,
    /// Video frames decoded and pushed.
    pub video_frames: u64,
    /// Audio chunks decoded and pushed.
    pub audio_chunks: u64,
    /// Frames or chunks the mixer did not take (its queue full) or that failed to decode.
    pub lost_frames: u64,
    /// Timestamp jumps, wraps or restarts continued, and mappings re-anchored.
    pub reanchors: u64,
    /// Bytes received (packets).
    pub bytes: u64,
    /// Bits per second over the last window.
    pub bitrate: u64,
    /// Video frames per second over the last window.
    pub fps: f64,
    /// Mean decode (and conversion) time of a video frame over the last window, ms.
    pub decode_ms: f64,
    /// The stream's size (0 before the first connection).
    pub width: u32,
    /// The stream's height.
    pub height: u32,
}

/// What one pull thread feeds: `video` (a camid) and/or `audio` (a user) of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// The input's key as given (camid or user).
    pub key: String,
    /// The URL.
    pub url: String,
    /// The camid its video feeds (`None`: its video is not used).
    pub video: Option<String>,
    /// The user its audio feeds (`None`: its audio is not used).
    pub audio: Option<String>,
}

/// Called on each state change (not for `stopped`).
pub type OnChange = Arc<dyn Fn(&InputStats) + Send + Sync>;

/// A pull input's shared state (read by the host's stats, written by its thread).
pub struct PullInput {
    stats: Mutex<InputStats>,
    /// Last packet (ms since `t0`), for stall detection.
    last_packet_ms: AtomicU64,
    t0: Instant,
    on_change: OnChange,
}

impl std::fmt::Debug for PullInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullInput")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PullInput {
    /// A pull input for `spec`, `connecting`.
    pub fn new(spec: &PullSpec, on_change: OnChange) -> Arc<PullInput> {
        Arc::new(PullInput {
            stats: Mutex::new(InputStats {
                input: spec.key.clone(),
                url: crate::output::upload::redact_url(&spec.url),
                state: InputState::Connecting,
                error: String::new(),
                reconnects: 0,
                video_frames: 0,
                audio_chunks: 0,
                lost_frames: 0,
                reanchors: 0,
                bytes: 0,
                bitrate: 0,
                fps: 0.0,
                decode_ms: 0.0,
                width: 0,
                height: 0,
            }),
            last_packet_ms: AtomicU64::new(0),
            t0: Instant::now(),
            on_change,
        })
    }

    /// The state and counters now.
    pub fn stats(&self) -> InputStats {
        self.lock().clone()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, InputStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the counters (no event).
    pub(crate) fn update(&self, f: impl FnOnce(&mut InputStats)) {
        f(&mut self.lock());
    }

    /// Sets the state (and error); reports a change.
    pub(crate) fn set_state(&self, state: InputState, error: &str) {
        let changed = {
            let mut g = self.lock();
            if g.state == state && g.error == error {
                None
            } else {
                g.state = state;
                g.error = redact_in(error, &g.url);
                Some(g.clone())
            }
        };
        if let Some(st) = changed {
            if state != InputState::Stopped {
                (self.on_change)(&st);
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Reports the current state through the callback (as a change).
    pub(crate) fn announce(&self) {
        (self.on_change)(&self.stats());
    }

    /// Notes that a packet came now (for stall detection; the publish listeners' and the WHIP
    /// sessions').
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn touch(&self) {
        self.last_packet_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Sets what the input is (a publisher's description of its source, redacted).
    pub(crate) fn set_url(&self, url: &str) {
        self.update(|s| s.url = crate::output::upload::redact_url(url));
    }
}

/// `msg` with any `user:password@` of URLs in it redacted.
fn redact_in(msg: &str, _redacted_url: &str) -> String {
    msg.split(' ')
        .map(|w| {
            if w.contains("://") {
                crate::output::upload::redact_url(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `input` names a URL to pull rather than a file (`scheme://…`, not `file:`).
pub fn is_url(input: &str) -> bool {
    !input.starts_with("file:")
        && input
            .split_once("://")
            .is_some_and(|(s, _)| !s.is_empty() && !s.contains('/'))
}

/// Checks a pull URL: a scheme of [`SCHEMES`], a host, no whitespace or control characters.
///
/// ```
/// use cloudmixer::host::feed::pull::check_url;
/// assert!(check_url("rtmp://127.0.0.1:1935/live/cam").is_ok());
/// assert!(check_url("ftp://example.com/a.mp4").unwrap_err().contains("ftp://"));
/// ```
pub fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?}: expected a URL (scheme://host/…)"));
    };
    let scheme_l = scheme.to_ascii_lowercase();
    if !SCHEMES.contains(&scheme_l.as_str()) {
        return Err(format!(
            "{scheme}:// inputs are not taken: give rtmp://, rtmps://, rtsp://, srt://, http:// or \
             https:// (a stream to pull), or a file under the media root"
        ));
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{}: a URL without spaces or control characters, at most 2048 bytes",
            crate::output::upload::redact_url(url)
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!(
            "{}: no host",
            crate::output::upload::redact_url(url)
        ));
    }
    Ok(())
}

/// The URL FFmpeg opens and its options, per scheme (see the module docs).
fn ffmpeg_target(url: &str, s: &PullSettings) -> (String, ff::Dictionary<'static>) {
    let (scheme, _) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let mut opts = ff::Dictionary::new();
    let mut url = url.to_string();
    let io_us = s.io_timeout.as_micros().to_string();
    opts.set("rw_timeout", &io_us);
    let probe_us = s.probe.as_micros().to_string();
    opts.set("analyzeduration", &probe_us);
    match scheme.as_str() {
        "rtmp" | "rtmps" => opts.set("protocol_whitelist", "rtmp,rtmps,tcp,tls"),
        "rtsp" => {
            opts.set("protocol_whitelist", "rtsp,rtp,udp,tcp");
            let mut transport = "tcp";
            if let Some((base, query)) = url.split_once('?') {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| {
                        if kv.eq_ignore_ascii_case("transport=udp") {
                            transport = "udp";
                            false
                        } else {
                            !kv.eq_ignore_ascii_case("transport=tcp")
                        }
                    })
                    .collect();
                url = if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                };
            }
            opts.set("rtsp_transport", transport);
            opts.set("timeout", &io_us);
        }
        "srt" => opts.set("protocol_whitelist", "srt,udp"),
        _ => opts.set("protocol_whitelist", "http,https,tcp,tls,crypto"),
    }
    (url, opts)
}

/// The interrupt callback's view: the room's stop flag and the current operation's deadline;
/// it also marks the input `stalled` while a read waits too long.
struct Watch {
    stop: Arc<AtomicBool>,
    /// ms since `input.t0`; 0: none.
    deadline_ms: AtomicU64,
    /// Whether a read is waiting on a live connection (stall detection applies).
    reading: AtomicBool,
    stall_ms: u64,
    input: Arc<PullInput>,
}

impl Watch {
    fn arm(&self, d: Duration) {
        self.deadline_ms.store(
            self.input.now_ms() + d.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn timed_out(&self) -> bool {
        let d = self.deadline_ms.load(Ordering::Relaxed);
        d != 0 && self.input.now_ms() > d
    }

    /// FFmpeg's interrupt callback: true ends the blocking call.
    fn interrupted(&self) -> bool {
        if self.reading.load(Ordering::Relaxed) {
            let idle = self
                .input
                .now_ms()
                .saturating_sub(self.input.last_packet_ms.load(Ordering::Relaxed));
            if idle > self.stall_ms && self.input.lock().state == InputState::Live {
                self.input.set_state(
                    InputState::Stalled,
                    &format!("no data for {:.1} s", idle as f64 / 1000.0),
                );
            }
        }
        self.stopped() || self.timed_out()
    }
}

/// Why a connection ended.
enum Ended {
    /// The room stopped (or refused a frame): no more attempts.
    Stop,
    /// Lost; try again.
    Lost(String),
}

/// Starts the thread that pulls `spec` into `target` until `stop` is set or the target refuses
/// a frame (it stopped). `input` is its shared state ([`PullInput::new`]).
pub fn spawn<T: FeedTarget + 'static>(
    target: Arc<T>,
    stop: Arc<AtomicBool>,
    spec: PullSpec,
    settings: PullSettings,
    input: Arc<PullInput>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("cm-pull-{}", spec.key))
        .spawn(move || run(&*target, stop, &spec, &settings, input))
}

fn run<T: FeedTarget + ?Sized>(
    target: &T,
    stop: Arc<AtomicBool>,
    spec: &PullSpec,
    settings: &PullSettings,
    input: Arc<PullInput>,
) {
    let watch = Arc::new(Watch {
        stop,
        deadline_ms: AtomicU64::new(0),
        reading: AtomicBool::new(false),
        stall_ms: settings.stall_after.as_millis() as u64,
        input: input.clone(),
    });
    let mut backoff = Duration::from_secs(1);
    // the first state, reported as every later one
    input.announce();
    while !watch.stopped() {
        let t_open = Instant::now();
        let (url, opts) = ffmpeg_target(&spec.url, settings);
        let ended = connection(target, spec, settings, &watch, &url, opts);
        if let Ended::Lost(why) = ended {
            if watch.stopped() {
                break;
            }
            let was_live = matches!(input.lock().state, InputState::Live | InputState::Stalled);
            // live long enough: the back-off starts again
            if was_live && t_open.elapsed() >= settings.live_reset {
                backoff = Duration::from_secs(1);
            }
            input.update(|s| s.reconnects += 1);
            input.set_state(
                InputState::Reconnecting,
                &format!("{why}; next try in {} s", backoff.as_secs()),
            );
            tracing::warn!(input = %spec.key, url = %crate::output::upload::redact_url(&spec.url),
                error = %why, "pull input lost: reconnecting");
            let until = Instant::now() + backoff;
            while Instant::now() < until && !watch.stopped() {
                std::thread::sleep(Duration::from_millis(50));
            }
            backoff = (backoff * 2).min(settings.max_backoff);
        } else {
            break;
        }
    }
    input.set_state(InputState::Stopped, "");
}

/// One connection over `url`, without the reconnect loop: a publisher's stream that the
/// publish listeners ([`super::publish`]) hand FFmpeg through a pipe (`pipe:FD`, `opts` its
/// protocol whitelist and probe), decoded and pushed as a pulled one (capture times, pacing,
/// limits, state and counters). `Ok(())` once the room stopped (or refused a frame),
/// `Err(why)` when the stream ended, failed or was dropped (over a limit).
#[cfg(feature = "serve")]
pub(crate) fn feed_once<T: FeedTarget + ?Sized>(
    target: &T,
    stop: Arc<AtomicBool>,
    spec: &PullSpec,
    settings: &PullSettings,
    input: Arc<PullInput>,
    url: &str,
    opts: ff::Dictionary<'static>,
) -> Result<(), String> {
    let watch = Arc::new(Watch {
        stop,
        deadline_ms: AtomicU64::new(0),
        reading: AtomicBool::new(false),
        stall_ms: settings.stall_after.as_millis() as u64,
        input,
    });
    match connection(target, spec, settings, &watch, url, opts) {
        Ended::Stop => Ok(()),
        Ended::Lost(why) => Err(why),
    }
}

/// One connection: open `url` (with `opts`: [`ffmpeg_target`]), demux, decode and push until
/// it ends.
fn connection<T: FeedTarget + ?Sized>(
    target: &T,
    spec: &PullSpec,
    settings: &PullSettings,
    watch: &Arc<Watch>,
    url: &str,
    opts: ff::Dictionary<'static>,
) -> Ended {
    init_ffmpeg();
    let label = PathBuf::from(crate::output::upload::redact_url(&spec.url));
    watch.arm(settings.io_timeout + settings.probe);
    let cb = watch.clone();
    let t_open = Instant::now();
    let opened =
        ff::format::input_with_interrupt_and_dictionary(url, move || cb.interrupted(), opts);
    let mut ictx = match opened {
        Ok(i) => i,
        Err(e) if watch.stopped() => {
            let _ = e;
            return Ended::Stop;
        }
        Err(_) if watch.timed_out() => {
            return Ended::Lost(format!(
                "cannot open: no stream within {:.0} s",
                (settings.io_timeout + settings.probe).as_secs_f64()
            ))
        }
        Err(e) => return Ended::Lost(format!("cannot open: {e}")),
    };
    let input = &watch.input;
    match Connection::new(&ictx, spec, settings, &label) {
        Ok(mut c) => {
            c.backdate = backdate(t_open.elapsed());
            // (what came before the first packet, e.g. audio muxed ahead of the video, lies
            // up to that much further back: not a drift)
            c.timeline.slack = c.backdate;
            // (the open read packets: it is live)
            input
                .last_packet_ms
                .store(input.now_ms(), Ordering::Relaxed);
            input.update(|s| (s.width, s.height) = (c.width, c.height));
            input.set_state(InputState::Live, "");
            c.pump(&mut ictx, target, watch)
        }
        Err(e) => Ended::Lost(e),
    }
}

/// The decoders and the timeline of one connection.
struct Connection<'a> {
    spec: &'a PullSpec,
    settings: &'a PullSettings,
    label: &'a Path,
    video: Option<VideoIn>,
    audio: Option<(usize, ff::Rational, AudioStream)>,
    timeline: Timeline,
    /// The audio decoder's origin in seconds of the stream's time (see `add_stream`).
    audio_origin: f64,
    /// How long before the first packet's read it came (see [`backdate`]).
    backdate: f64,
    /// A video frame came in time for its tick since the open (until then late ones are
    /// dropped).
    caught_up: bool,
    width: u32,
    height: u32,
    window: Window,
}

/// How much earlier than its read the first packet after an open came, for an open that took
/// `open`: the open probed the stream (up to [`PullSettings::probe`]), and a live stream's
/// first packet came at its start, the later ones in real time while it probed. Anchoring the
/// first packet at its read instead would delay the whole stream by the probe: buffered
/// packets are read at once, then paced to their capture times (about 1 s late on nginx-rtmp,
/// measured by `scripts/bench-latency.py`). Kept under [`MAX_DRIFT`], beyond which a mapping
/// is re-anchored. A stream that comes faster than real time (a file over HTTP) has its first
/// frames this much in the past: late at the mixer for a moment, then paced.
fn backdate(open: Duration) -> f64 {
    open.as_secs_f64().min(MAX_DRIFT.as_secs_f64() * 0.9)
}

struct VideoIn {
    index: usize,
    time_base: ff::Rational,
    dec: ff::decoder::Video,
    fps: f64,
    rotation: crate::model::frame::Rotation,
    scaler: Option<(
        ff::software::scaling::Context,
        (ff::format::Pixel, u32, u32),
    )>,
    frame: ff::frame::Video,
    last: Option<f64>,
}

/// Counters over the current stats window of a network input (pull, publish, WHIP): its
/// bitrate, fps and decode time, and the bitrate limit.
pub(crate) struct Window {
    start: Instant,
    /// Bytes received.
    pub(crate) bytes: u64,
    /// Video frames decoded.
    pub(crate) frames: u64,
    /// Time spent decoding (and converting) them.
    pub(crate) decode: Duration,
}

impl Window {
    pub(crate) fn new() -> Window {
        Window {
            start: Instant::now(),
            bytes: 0,
            frames: 0,
            decode: Duration::ZERO,
        }
    }

    /// The error of a stream above `max` bits/s, measured from the window's first second on.
    pub(crate) fn over(&self, max: Option<u64>) -> Option<String> {
        let max = max?;
        let el = self.start.elapsed().as_secs_f64();
        let rate = self.bytes as f64 * 8.0 / el.max(1e-3);
        (el >= 1.0 && rate > max as f64 * 1.05).then(|| {
            format!(
                "the stream's bitrate ({:.0} kb/s) is over the limit ({} kb/s)",
                rate / 1000.0,
                max / 1000
            )
        })
    }

    /// Once the window is [`STATS_WINDOW`] long: its figures and `reanchors()` into `input`'s
    /// stats, and a new window.
    pub(crate) fn roll(&mut self, input: &PullInput, reanchors: impl FnOnce() -> u64) {
        let el = self.start.elapsed();
        if el < STATS_WINDOW {
            return;
        }
        let s = el.as_secs_f64();
        let (bitrate, fps) = ((self.bytes as f64 * 8.0 / s) as u64, self.frames as f64 / s);
        let decode_ms = if self.frames > 0 {
            self.decode.as_secs_f64() * 1000.0 / self.frames as f64
        } else {
            0.0
        };
        let reanchors = reanchors();
        input.update(|st| {
            st.bitrate = bitrate;
            st.fps = (fps * 100.0).round() / 100.0;
            st.decode_ms = (decode_ms * 100.0).round() / 100.0;
            st.reanchors += reanchors;
        });
        *self = Window::new();
    }
}

/// An audio decoder's origin, 10^6 s before the stream's time 0 (in its time base).
fn audio_origin(tb: ff::Rational) -> i64 {
    let (num, den) = (
        i128::from(tb.numerator().max(1)),
        i128::from(tb.denominator().max(1)),
    );
    i64::try_from(-(1_000_000 * den / num)).unwrap_or(i64::MIN / 2)
}

fn secs(ts: i64, tb: ff::Rational) -> f64 {
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator().max(1))
}

impl<'a> Connection<'a> {
    fn new(
        ictx: &ff::format::context::Input,
        spec: &'a PullSpec,
        settings: &'a PullSettings,
        label: &'a Path,
    ) -> Result<Self, String> {
        let mut c = Connection {
            spec,
            settings,
            label,
            video: None,
            audio: None,
            timeline: Timeline::default(),
            audio_origin: 0.0,
            backdate: 0.0,
            caught_up: false,
            width: 0,
            height: 0,
            window: Window::new(),
        };
        for kind in [ff::media::Type::Video, ff::media::Type::Audio] {
            if let Some(st) = ictx.streams().best(kind) {
                c.add_stream(&st)?;
            }
        }
        Ok(c)
    }

    /// Sets up the decoder for stream `st` if it is the first video (or audio) stream and the
    /// input wants it. A stream may appear after the open: a connection made before the
    /// publisher (or during its stall) probes none, FLV then adds them as their packets come.
    fn add_stream(&mut self, st: &ff::format::stream::Stream) -> Result<(), String> {
        match st.parameters().medium() {
            ff::media::Type::Video if self.video.is_none() && self.spec.video.is_some() => {
                let p = st.parameters();
                // SAFETY: `p` is the stream's valid AVCodecParameters.
                let (pw, ph) = unsafe { ((*p.as_ptr()).width, (*p.as_ptr()).height) };
                let threads = decode_threads(pw.max(0) as u32, ph.max(0) as u32);
                let (dec, fps, rotation) =
                    open_video_stream(st, self.label, ff::codec::threading::Type::Slice, threads)
                        .map_err(|e| e.to_string())?;
                let (w, h) = (dec.width(), dec.height());
                check_size(w, h, self.settings)?;
                (self.width, self.height) = (w, h);
                self.video = Some(VideoIn {
                    index: st.index(),
                    time_base: st.time_base(),
                    dec,
                    fps,
                    rotation,
                    scaler: None,
                    frame: ff::frame::Video::empty(),
                    last: None,
                });
            }
            ff::media::Type::Audio if self.audio.is_none() && self.spec.audio.is_some() => {
                // the decoder's positions count from an origin far before any timestamp (a
                // live stream's may be negative: MPEG-TS ones before a 33-bit wrap, which
                // FFmpeg unwraps downwards); `audio_packet` takes the origin off again, so
                // video and audio share the stream's own timestamps
                let tb = st.time_base();
                let origin = audio_origin(tb);
                match AudioStream::open(st.parameters(), tb, origin, self.label) {
                    Ok(a) => {
                        self.audio_origin = secs(origin, tb);
                        self.audio = Some((st.index(), tb, a));
                    }
                    Err(e) => {
                        tracing::warn!(url = %self.label.display(), error = %e, "audio not decoded")
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn pump<T: FeedTarget + ?Sized>(
        &mut self,
        ictx: &mut ff::format::context::Input,
        target: &T,
        watch: &Arc<Watch>,
    ) -> Ended {
        let input = watch.input.clone();
        let opened = Instant::now();
        loop {
            let mut pkt = ff::Packet::empty();
            if watch.stopped() {
                return Ended::Stop;
            }
            watch.arm(self.settings.io_timeout);
            watch.reading.store(true, Ordering::Relaxed);
            let read = pkt.read(ictx);
            watch.reading.store(false, Ordering::Relaxed);
            match read {
                Ok(()) => {}
                Err(_) if watch.stopped() => return Ended::Stop,
                Err(ff::Error::Eof) => return Ended::Lost("the stream ended".into()),
                Err(_) if watch.timed_out() => {
                    return Ended::Lost(format!(
                        "no data for {:.0} s",
                        self.settings.io_timeout.as_secs_f64()
                    ))
                }
                Err(e) => return Ended::Lost(format!("reading: {e}")),
            }
            input
                .last_packet_ms
                .store(input.now_ms(), Ordering::Relaxed);
            if input.lock().state != InputState::Live {
                input.set_state(InputState::Live, "");
            }
            let size = pkt.size() as u64;
            self.window.bytes += size;
            input.update(|s| s.bytes += size);
            let idx = pkt.stream();
            let known = |c: &Self| {
                (
                    c.video.as_ref().is_some_and(|v| v.index == idx),
                    c.audio.as_ref().is_some_and(|a| a.0 == idx),
                )
            };
            if known(self) == (false, false) {
                if let Some(st) = ictx.stream(idx) {
                    if let Err(e) = self.add_stream(&st) {
                        return Ended::Lost(e);
                    }
                }
                if self.video.is_none()
                    && self.audio.is_none()
                    && opened.elapsed() > self.settings.io_timeout
                {
                    return Ended::Lost(match self.spec.video {
                        Some(_) => "the stream has no video".into(),
                        None => "the stream has no audio".into(),
                    });
                }
            }
            let (is_video, is_audio) = known(self);
            if !is_video && !is_audio {
                continue;
            }
            let now = target.clock_now().as_secs_f64();
            // the mapping is anchored at the first packet after a (re)connect
            if let Some(ts) = pkt.pts().or(pkt.dts()) {
                let tb = if is_video {
                    self.video.as_ref().map(|v| v.time_base)
                } else {
                    self.audio.as_ref().map(|a| a.1)
                };
                if let Some(tb) = tb {
                    self.timeline.anchor(secs(ts, tb), now - self.backdate);
                }
            }
            let res = if is_video {
                self.video_packet(&pkt, target, watch)
            } else {
                self.audio_packet(&pkt, target, watch)
            };
            if let Err(e) = res {
                return e;
            }
            let timeline = &mut self.timeline;
            self.window
                .roll(&input, || std::mem::take(&mut timeline.reanchors));
            if let Some(e) = self.window.over(self.settings.max_bitrate) {
                return Ended::Lost(e);
            }
        }
    }

    fn video_packet<T: FeedTarget + ?Sized>(
        &mut self,
        pkt: &ff::Packet,
        target: &T,
        watch: &Watch,
    ) -> Result<(), Ended> {
        let input = &*watch.input;
        let Some(v) = self.video.as_mut() else {
            return Ok(());
        };
        let camid = self.spec.video.as_deref().unwrap_or_default();
        let t0 = Instant::now();
        let slots = self.settings.decode_slots.clone();
        let slot = slots.acquire();
        match v.dec.send_packet(pkt) {
            Ok(()) => {}
            Err(ff::Error::InvalidData) => {
                input.update(|s| s.lost_frames += 1);
                return Ok(());
            }
            Err(e) => return Err(Ended::Lost(format!("decoding video: {e}"))),
        }
        let mut slot = Some(slot);
        loop {
            let slot_now = slot.take().unwrap_or_else(|| slots.acquire());
            match v.dec.receive_frame(&mut v.frame) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(Ended::Lost(format!("decoding video: {e}"))),
            }
            let (w, h) = (v.frame.width(), v.frame.height());
            check_size(w, h, self.settings).map_err(Ended::Lost)?;
            if (w, h) != (self.width, self.height) {
                (self.width, self.height) = (w, h);
                input.update(|s| (s.width, s.height) = (w, h));
            }
            let step = if v.fps > 0.0 { 1.0 / v.fps } else { 1.0 / 30.0 };
            let t = match v.frame.timestamp().or(v.frame.pts()) {
                Some(ts) => secs(ts, v.time_base),
                None => v.last.map_or(0.0, |l| l + step),
            };
            v.last = Some(t);
            let now = target.clock_now().as_secs_f64();
            let capture = self.timeline.capture(Kind::Video, t, now, step);
            if !self.caught_up {
                // catching up after an open: a frame whose tick has passed is dropped, as the
                // mixer drops the audio that came after its block was mixed (shown a tick
                // late, such a frame would be out of step with its sound)
                match target.latency() {
                    Some(lat) if capture.as_secs_f64() + lat.as_secs_f64() + step < now => {
                        continue;
                    }
                    _ => self.caught_up = true,
                }
            }
            let frame = match convert_frame(&v.frame, &mut v.scaler, self.label) {
                Ok(mut f) => {
                    f.rotation = v.rotation;
                    f.with_pts(capture)
                }
                Err(e) => {
                    tracing::warn!(url = %self.label.display(), error = %e, "video frame dropped");
                    input.update(|s| s.lost_frames += 1);
                    continue;
                }
            };
            // (not held while the frame waits for its time)
            drop(slot_now);
            self.window.frames += 1;
            self.window.decode += t0.elapsed();
            pace(target, capture, watch)?;
            match target.push_video_at(camid, frame, capture) {
                Ok(()) => input.update(|s| s.video_frames += 1),
                Err(MixerError::Backlog(_)) => input.update(|s| s.lost_frames += 1),
                Err(_) => return Err(Ended::Stop),
            }
        }
        Ok(())
    }

    fn audio_packet<T: FeedTarget + ?Sized>(
        &mut self,
        pkt: &ff::Packet,
        target: &T,
        watch: &Watch,
    ) -> Result<(), Ended> {
        let input = &*watch.input;
        let Some((_, _, a)) = self.audio.as_mut() else {
            return Ok(());
        };
        let user = self.spec.audio.as_deref().unwrap_or_default();
        if a.dec.send_packet(pkt).is_err() {
            input.update(|s| s.lost_frames += 1);
            return Ok(());
        }
        loop {
            match a.dec.receive_frame(&mut a.frame) {
                Ok(()) => {}
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(_) => {
                    input.update(|s| s.lost_frames += 1);
                    break;
                }
            }
            let chunk = match a.convert_frame() {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(url = %self.label.display(), error = %e, "audio dropped");
                    input.update(|s| s.lost_frames += 1);
                    continue;
                }
            };
            let frames = chunk.samples.len() / usize::from(chunk.channels.max(1));
            let step = frames as f64 / f64::from(chunk.sample_rate.max(1));
            let now = target.clock_now().as_secs_f64();
            let ts = chunk.pts.as_secs_f64() + self.audio_origin;
            let capture = self.timeline.capture(Kind::Audio, ts, now, step);
            let f =
                match AudioFrame::f32_interleaved(chunk.samples, chunk.sample_rate, chunk.channels)
                {
                    Ok(f) => f.with_capture(capture),
                    Err(_) => {
                        input.update(|s| s.lost_frames += 1);
                        continue;
                    }
                };
            pace(target, capture, watch)?;
            match target.push_audio(user, f) {
                Ok(()) => input.update(|s| s.audio_chunks += 1),
                Err(MixerError::Backlog(_)) => input.update(|s| s.lost_frames += 1),
                Err(_) => return Err(Ended::Stop),
            }
        }
        Ok(())
    }
}

/// Waits until `capture` is due on the target's clock: a stream that comes faster than real
/// time (a file over HTTP, an HLS playlist's first segments, what a server buffered) is pushed
/// in real time, as a live one comes, so its capture times are never ahead of the mixer.
fn pace<T: FeedTarget + ?Sized>(target: &T, capture: Duration, watch: &Watch) -> Result<(), Ended> {
    loop {
        let now = target.clock_now();
        let Some(wait) = capture.checked_sub(now) else {
            return Ok(());
        };
        if wait <= Duration::from_millis(2) {
            return Ok(());
        }
        if watch.stopped() {
            return Err(Ended::Stop);
        }
        std::thread::sleep(wait.min(Duration::from_millis(50)));
    }
}

pub(crate) fn check_size(w: u32, h: u32, s: &PullSettings) -> Result<(), String> {
    if w > s.max_width || h > s.max_height {
        return Err(format!(
            "the stream is {w}x{h}, over the limit of {}x{}",
            s.max_width, s.max_height
        ));
    }
    Ok(())
}

/// Which track a capture time is for ([`Timeline::capture`]).
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Video = 0,
    Audio = 1,
}

/// The mapping of one connection's timestamps (seconds) onto the mixer clock (seconds):
/// `capture = ts + offset`, shared by video and audio.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    offset: Option<f64>,
    /// The last capture time given, per kind.
    last: [Option<f64>; 2],
    /// Discontinuities continued and re-anchorings since the stats last took them.
    pub(crate) reanchors: u64,
    /// How much further back than [`MAX_DRIFT`] a capture time may lie without a re-anchor
    /// (the connection's back-dating, see `backdate`).
    pub(crate) slack: f64,
}

impl Timeline {
    /// Anchors the mapping at `ts` = `now`, unless it is anchored.
    pub(crate) fn anchor(&mut self, ts: f64, now: f64) {
        self.offset.get_or_insert(now - ts);
    }

    /// The capture time of a frame or chunk at `ts` lasting `step`.
    pub(crate) fn capture(&mut self, kind: Kind, ts: f64, now: f64, step: f64) -> Duration {
        let mut off = *self.offset.get_or_insert(now - ts);
        let mut c = ts + off;
        if let Some(last) = self.last[kind as usize] {
            if c < last - 0.5 || c > last + MAX_TS_JUMP.as_secs_f64() {
                // a jump, wrap or restart: continue one step after the previous one (the
                // other kind, whose timestamps jumped alike, then falls in place)
                off = last + step - ts;
                c = last + step;
                self.reanchors += 1;
            }
        }
        let drift = MAX_DRIFT.as_secs_f64();
        if c < now - drift - self.slack || c > now + drift {
            off = now - ts;
            c = now;
            self.reanchors += 1;
        }
        self.offset = Some(off);
        self.last[kind as usize] = Some(c);
        Duration::from_secs_f64(c.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_files_and_checked() {
        assert!(is_url("rtmp://h/live/a"));
        assert!(is_url("ftp://h/a"));
        assert!(!is_url("file:a.mp4"));
        assert!(!is_url("dir/a.mp4"));
        assert!(!is_url("a/b://c"));
        for ok in [
            "rtmp://127.0.0.1:1935/live/a",
            "rtmps://h/live/a",
            "RTSP://h:554/s?transport=udp",
            "srt://h:9000?streamid=x",
            "http://h/a.flv",
            "https://u:p@h/a.m3u8",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://h/a",
            "rtmp://",
            "rtmp:///live",
            "rtmp://h/a b",
            "x://y",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let e = check_url("rtmp://user:secret@h/a\n").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn rtsp_transport_is_tcp_unless_asked() {
        let s = PullSettings::default();
        let (u, o) = ffmpeg_target("rtsp://h/s", &s);
        assert_eq!(
            (u.as_str(), o.get("rtsp_transport")),
            ("rtsp://h/s", Some("tcp"))
        );
        let (u, o) = ffmpeg_target("rtsp://h/s?a=1&transport=udp", &s);
        assert_eq!(
            (u.as_str(), o.get("rtsp_transport")),
            ("rtsp://h/s?a=1", Some("udp"))
        );
        let (_, o) = ffmpeg_target("rtmp://h/live/a", &s);
        assert_eq!(o.get("protocol_whitelist"), Some("rtmp,rtmps,tcp,tls"));
        assert_eq!(o.get("rw_timeout"), Some("5000000"));
    }

    #[test]
    fn timeline_anchors_shares_and_continues() {
        let mut t = Timeline::default();
        t.anchor(100.0, 10.0);
        let v = t.capture(Kind::Video, 100.0, 10.0, 0.04);
        let a = t.capture(Kind::Audio, 100.02, 10.0, 0.02);
        assert_eq!(v, Duration::from_secs(10));
        assert!((a.as_secs_f64() - 10.02).abs() < 1e-9);
        // a restart of the publisher's timestamps continues the timeline
        let v = t.capture(Kind::Video, 100.04, 10.04, 0.04);
        let v2 = t.capture(Kind::Video, 0.0, 10.08, 0.04);
        assert!((v2.as_secs_f64() - (v.as_secs_f64() + 0.04)).abs() < 1e-9);
        // the audio, whose timestamps restarted alike, falls in place without a re-anchor
        let before = t.reanchors;
        let a2 = t.capture(Kind::Audio, 0.0, 10.08, 0.02);
        assert!((a2.as_secs_f64() - v2.as_secs_f64()).abs() < 1e-9);
        assert_eq!(t.reanchors, before);
        // a stall that kept the connection: re-anchored on the mixer clock
        let late = t.capture(Kind::Video, 0.04, 15.0, 0.04);
        assert_eq!(late, Duration::from_secs(15));
    }

    #[test]
    fn a_back_dated_anchor_keeps_what_came_before_the_first_packet() {
        // anchored 0.9 s back (the open's probe); audio muxed 0.4 s ahead of the first video
        // packet lies 1.3 s back: within the slack, so no re-anchor moves the video
        let mut t = Timeline {
            slack: 0.9,
            ..Timeline::default()
        };
        t.anchor(10.0, 100.0 - 0.9);
        let a = t.capture(Kind::Audio, 9.6, 100.0, 0.02);
        let v = t.capture(Kind::Video, 10.0, 100.0, 0.04);
        assert!((a.as_secs_f64() - 98.7).abs() < 1e-9, "{a:?}");
        assert!((v.as_secs_f64() - 99.1).abs() < 1e-9, "{v:?}");
        assert_eq!(t.reanchors, 0);
        // without the slack the audio re-anchored the shared mapping 1.3 s later than the
        // video already pushed: the first second's pictures came early against their sound
        let mut t = Timeline::default();
        t.anchor(10.0, 100.0 - 0.9);
        t.capture(Kind::Audio, 9.6, 100.0, 0.02);
        assert_eq!(t.reanchors, 1);
    }

    #[test]
    fn decode_slots_bound_the_decodes_at_once() {
        let slots = DecodeSlots::new(2);
        let peak = Arc::new(Mutex::new((0usize, 0usize)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, peak) = (slots.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _s = slots.acquire();
                        {
                            let mut p = peak.lock().unwrap();
                            p.0 += 1;
                            p.1 = p.1.max(p.0);
                        }
                        std::thread::sleep(Duration::from_micros(300));
                        peak.lock().unwrap().0 -= 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.lock().unwrap().1, 2);
        assert_eq!(slots.busy(), 0);
        assert_eq!(DecodeSlots::new(0).total(), 1);
        assert_eq!(
            [
                (640, 480),
                (1920, 1080),
                (2560, 1440),
                (3840, 2160),
                (7680, 4320)
            ]
            .map(|(w, h)| decode_threads(w, h)),
            [1, 1, 2, 4, 4]
        );
    }

    #[test]
    fn credentials_are_redacted_from_errors() {
        assert_eq!(
            redact_in("cannot open rtmp://u:p@h/a: refused", ""),
            "cannot open rtmp://***@h/a: refused"
        );
    }
}
