//! File decoding with FFmpeg (ffmpeg-next): video files (mp4, mkv, webm, …) and stills (PNG,
//! JPEG) into [`VideoFrame`]s, with seeking. Used by the CLI, tests and benches to feed sources.
//!
//! I420, NV12 and RGBA frames pass through with their strides; every other pixel format is
//! converted with swscale (to RGBA when it carries alpha, else I420).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use ff::format::Pixel;
use ffmpeg_next as ff;
use thiserror::Error;

use crate::model::buffer::PlaneData;
use crate::model::frame::{ColorSpace, Matrix, PixelFormat, Plane, Range, Rotation, VideoFrame};
use crate::model::time::{tick_time, ticks_before, PTS_SLACK};

/// Why a file could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The file does not exist.
    #[error("{0}: no such file")]
    NotFound(PathBuf),
    /// FFmpeg could not open or probe the file.
    #[error("{path}: cannot open as media ({reason})")]
    Open {
        /// File.
        path: PathBuf,
        /// FFmpeg's message.
        reason: String,
    },
    /// The file has no video stream.
    #[error("{0}: has no video stream")]
    NoVideo(PathBuf),
    /// No decoder for the codec.
    #[error("{path}: unsupported video codec {codec}")]
    Unsupported {
        /// File.
        path: PathBuf,
        /// Codec name.
        codec: String,
    },
    /// Damaged data.
    #[error("{path}: corrupt or truncated ({reason})")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file decoded but holds no frame at or after the requested time.
    #[error("{path}: no video frame at {at:?}")]
    NoFrame {
        /// File.
        path: PathBuf,
        /// Requested time.
        at: Duration,
    },
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Initialises FFmpeg once per process (quiet logging).
pub fn init_ffmpeg() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Error);
    });
}

/// A forward timestamp jump larger than this is a discontinuity (backward: any step over
/// 0.5 s), not a pause of the source.
pub const MAX_TS_JUMP: Duration = Duration::from_secs(10);

/// A video file decoder yielding frames in presentation order.
///
/// ```no_run
/// use cloudmixer::media::decode::Decoder;
/// let mut d = Decoder::open("fixtures/clips/cam1_320x240_15.mp4").unwrap();
/// d.seek(std::time::Duration::from_secs(2)).unwrap();
/// let f = d.next_frame().unwrap().unwrap();
/// assert!(f.pts >= std::time::Duration::from_secs(2));
/// ```
pub struct Decoder {
    path: PathBuf,
    input: ff::format::context::Input,
    decoder: ff::decoder::Video,
    stream: usize,
    time_base: ff::Rational,
    start_ts: i64,
    scaler: Option<(ff::software::scaling::Context, (Pixel, u32, u32))>,
    frame: ff::frame::Video,
    skip_before: Option<Duration>,
    flushed: bool,
    done: bool,
    last_pts: Option<Duration>,
    fps: f64,
    /// Added to the stream's timestamps after a discontinuity (seconds).
    offset: f64,
    /// The stream's display rotation, given to every frame.
    rotation: Rotation,
    /// The output rate whose ticks (from the stream's time 0) are the only ones that show
    /// frames ([`Decoder::only_shown_at`]); `None`: every frame is returned.
    shown_at: Option<u32>,
    /// Packets of the stream demuxed ahead (only while `shown_at` is set): the next frame's
    /// pts is known before a frame is decoded.
    ahead: VecDeque<ff::Packet>,
    /// The pts of the packets sent last (with `ahead`, the window in which the next pts in
    /// presentation order is looked for).
    sent: VecDeque<i64>,
    /// Raw pts of frames no tick shows: not converted when the decoder returns them.
    unshown: VecDeque<i64>,
    counts: Arc<DecodeCounts>,
}

/// Packets demuxed ahead to find the next frame's pts in presentation order: H.264 and HEVC
/// reorder at most 16 frames.
const REORDER_WINDOW: usize = 16;

/// What a [`Decoder`] did with its stream's packets ([`Decoder::counts`]): shared, so a feed
/// can read it while its decoder thread runs.
#[derive(Debug, Default)]
pub struct DecodeCounts {
    packets: AtomicU64,
    skipped: AtomicU64,
    decoded: AtomicU64,
    unshown: AtomicU64,
}

impl DecodeCounts {
    /// Packets sent to the decoder.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
    /// Packets sent with the order to skip them (their frame is shown by no tick), which the
    /// decoder did skip where the frame is no reference for others.
    pub fn skip_asked(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    /// Frames the decoder returned (decoded).
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }
    /// Decoded frames no tick shows (reference frames), dropped without conversion.
    pub fn unshown(&self) -> u64 {
        self.unshown.load(Ordering::Relaxed)
    }
}

/// Frame threads for a file decoder of a `w` x `h` stream at `fps` (0: unknown, taken as
/// 30): one per 62.5 Mpx/s (one up to 1080p30; 4K30 four), at most 8. One thread decodes
/// 1080p30 several times faster than real time; more threads only add hand-offs and memory
/// when a room decodes several inputs at once.
///
/// ```
/// use cloudmixer::media::decode::file_decode_threads;
/// assert_eq!(file_decode_threads(1280, 720, 30.0), 1);
/// assert_eq!(file_decode_threads(1920, 1080, 30.0), 1);
/// assert_eq!(file_decode_threads(1920, 1080, 60.0), 2);
/// assert_eq!(file_decode_threads(3840, 2160, 30.0), 4);
/// ```
pub fn file_decode_threads(w: u32, h: u32, fps: f64) -> usize {
    let fps = if fps > 0.0 { fps } else { 30.0 };
    let rate = f64::from(w) * f64::from(h) * fps;
    ((rate / 62_500_000.0).ceil() as usize).clamp(1, 8)
}

impl Decoder {
    /// Opens the best video stream of a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        init_ffmpeg();
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(DecodeError::NotFound(path));
        }
        let input = ff::format::input(&path).map_err(|e| DecodeError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Self::with_input(path, input)
    }

    /// Opens the best video stream of an open file, with FFmpeg held to the demuxers named in
    /// `formats` (FFmpeg's `format_whitelist`, e.g. `"mov,mp4,matroska"`) and the `file`
    /// protocol: a file served from a storage root is read through the descriptor that was
    /// opened confined to it, and bytes that claim to be a playlist or a concat list cannot make
    /// FFmpeg open other paths. `label` names the file in errors.
    pub fn open_file(file: &std::fs::File, label: &Path, formats: &str) -> Result<Self> {
        use std::os::fd::AsRawFd;
        init_ffmpeg();
        let url = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut opts = ff::Dictionary::new();
        opts.set("format_whitelist", formats);
        opts.set("protocol_whitelist", "file");
        let input =
            ff::format::input_with_dictionary(&url, opts).map_err(|e| DecodeError::Open {
                path: label.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::with_input(label.to_path_buf(), input)
    }

    fn with_input(path: PathBuf, input: ff::format::context::Input) -> Result<Self> {
        let st = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| DecodeError::NoVideo(path.clone()))?;
        let stream = st.index();
        let time_base = st.time_base();
        let start_ts = if st.start_time() == i64::MIN || st.start_time() < 0 {
            0
        } else {
            st.start_time()
        };
        // SAFETY: the parameters belong to a stream of `input`, alive for this call
        let (w, h) = unsafe {
            let p = st.parameters().as_ptr();
            ((*p).width.max(0) as u32, (*p).height.max(0) as u32)
        };
        let threads = file_decode_threads(w, h, avg_fps(&st));
        let (decoder, fps, rotation) =
            open_video_stream(&st, &path, ff::codec::threading::Type::Frame, threads)?;
        Ok(Decoder {
            path,
            input,
            decoder,
            stream,
            time_base,
            start_ts,
            scaler: None,
            frame: ff::frame::Video::empty(),
            skip_before: None,
            flushed: false,
            done: false,
            last_pts: None,
            offset: 0.0,
            fps,
            rotation,
            shown_at: None,
            ahead: VecDeque::new(),
            sent: VecDeque::new(),
            unshown: VecDeque::new(),
            counts: Arc::default(),
        })
    }

    /// Returns only the frames a recording at `fps` shows, where the codec allows skipping
    /// the others: a frame is shown when a tick (`n / fps` from the stream's time 0, as a
    /// mixer places a file's time 0 on a tick) falls between its pts and the next frame's
    /// (within [`PTS_SLACK`] either side). A frame no tick shows is not decoded when no other
    /// frame refers to it (FFmpeg's `skip_frame` for non-reference frames: B-frames,
    /// temporal layers), and not converted when it is a reference. Every frame is returned
    /// where the next pts is unknown (the stream's end, a timestamp jump).
    ///
    /// ```
    /// use cloudmixer::media::decode::Decoder;
    /// let mut d = Decoder::open("fixtures/clips/cam4_1280x720_30.mp4").unwrap();
    /// d.only_shown_at(15);
    /// let mut n = 0;
    /// while let Some(f) = d.next_frame().unwrap() {
    ///     n += 1;
    /// }
    /// // a 30 fps file (300 frames), of which a 15 fps recording shows every other frame,
    /// // and its last frame (whose next pts is unknown, so it counts as shown)
    /// assert_eq!(n, 151);
    /// ```
    pub fn only_shown_at(&mut self, fps: u32) {
        self.shown_at = (fps > 0).then_some(fps);
    }

    /// The decoder's counts so far (shared: they go on counting as it decodes).
    pub fn counts(&self) -> Arc<DecodeCounts> {
        self.counts.clone()
    }

    /// The next packet of the stream (demuxed ahead into the reorder window while only
    /// shown frames are wanted).
    fn next_packet(&mut self) -> Option<ff::Packet> {
        let want = if self.shown_at.is_some() {
            REORDER_WINDOW
        } else {
            0
        };
        while self.ahead.len() <= want {
            match self
                .input
                .packets()
                .find(|(st, _)| st.index() == self.stream)
            {
                Some((_, pkt)) => self.ahead.push_back(pkt),
                None => break,
            }
        }
        self.ahead.pop_front()
    }

    /// Whether a tick shows the frame of the packet with raw pts `pts` (judged on the
    /// packets around it). True where that cannot be told.
    fn shown(&self, pts: Option<i64>) -> bool {
        let (Some(fps), Some(p)) = (self.shown_at, pts) else {
            return true;
        };
        // the next frame in presentation order: the lowest pts above p in the window
        let next = self
            .ahead
            .iter()
            .filter_map(|k| k.pts())
            .chain(self.sent.iter().copied())
            .filter(|&q| q > p)
            .min();
        let Some(q) = next else {
            return true;
        };
        let secs = |ts: i64| {
            (ts - self.start_ts).max(0) as f64 * f64::from(self.time_base.numerator())
                / f64::from(self.time_base.denominator().max(1))
                + self.offset
        };
        let (ps, qs) = (secs(p), secs(q));
        if qs <= ps || qs - ps > MAX_TS_JUMP.as_secs_f64() {
            return true;
        }
        let (pd, qd) = (
            Duration::from_secs_f64(ps.max(0.0)),
            Duration::from_secs_f64(qs),
        );
        if matches!(self.skip_before, Some(t) if qd + PTS_SLACK <= t) {
            // dropped before the seek target whatever it shows
            return false;
        }
        // the first tick at or after p - slack: p shows there unless q is due by then
        let first = ticks_before(fps, pd.saturating_sub(PTS_SLACK));
        if self.offset != 0.0 {
            // after a timestamp jump: judged in float time, erring towards decoding
            return tick_time(fps, first) < qd + PTS_SLACK;
        }
        // tick < q, exactly: first / fps < (q - start) * num / den (a frame due on a tick is
        // shown there, and a 30 fps frame falls exactly on every 15 fps tick)
        let (num, den) = (
            i128::from(self.time_base.numerator()),
            i128::from(self.time_base.denominator().max(1)),
        );
        i128::from(first) * den < i128::from((q - self.start_ts).max(0)) * num * i128::from(fps)
    }

    /// The file's duration as its container declares it (`None`: not declared, e.g. a
    /// recording still being written).
    pub fn duration(&self) -> Option<Duration> {
        let d = self.input.duration();
        (d > 0).then(|| Duration::from_micros(d as u64))
    }

    /// The stream's width as declared by the container.
    pub fn width(&self) -> u32 {
        self.decoder.width()
    }
    /// The stream's height as declared by the container.
    pub fn height(&self) -> u32 {
        self.decoder.height()
    }
    /// Average frame rate (0 when unknown, e.g. stills).
    pub fn fps(&self) -> f64 {
        self.fps
    }
    /// The file this decoder reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seeks so that the next frame returned is the first with pts ≥ `t`.
    pub fn seek(&mut self, t: Duration) -> Result<()> {
        let ts = (t.as_secs_f64() * ff::ffi::AV_TIME_BASE as f64) as i64;
        // seek to the keyframe at or before t, then decode and drop frames before t
        if self.input.seek(ts, ..ts + 1).is_err() {
            // not seekable (e.g. a still): decode from the start
        }
        self.decoder.flush();
        self.ahead.clear();
        self.sent.clear();
        self.unshown.clear();
        self.last_pts = None;
        self.offset = 0.0;
        self.skip_before = Some(t);
        self.flushed = false;
        self.done = false;
        Ok(())
    }

    fn pts_of(&self, ts: Option<i64>) -> Duration {
        match ts {
            Some(ts) => {
                let rel = (ts - self.start_ts).max(0) as f64;
                Duration::from_secs_f64(
                    rel * self.time_base.numerator() as f64
                        / self.time_base.denominator().max(1) as f64,
                )
            }
            None => match self.last_pts {
                Some(p) if self.fps > 0.0 => p + Duration::from_secs_f64(1.0 / self.fps),
                Some(p) => p,
                None => Duration::ZERO,
            },
        }
    }

    /// The pts of the decoded frame, continuous across timestamp discontinuities: a stream
    /// whose timestamps restart (concatenated `.ts` segments) or jump more than
    /// [`MAX_TS_JUMP`] goes on one frame after the previous one, with a warning.
    fn stamp(&mut self) -> Duration {
        let raw = self.pts_of(self.frame.timestamp().or(self.frame.pts()));
        let mut pts = raw.as_secs_f64() + self.offset;
        if let Some(last) = self.last_pts {
            let last = last.as_secs_f64();
            if pts < last - 0.5 || pts > last + MAX_TS_JUMP.as_secs_f64() {
                let step = if self.fps > 0.0 { 1.0 / self.fps } else { 0.04 };
                let next = last + step;
                tracing::warn!(
                    file = %self.path.display(),
                    at = last,
                    jump = pts - last,
                    "timestamp discontinuity in the input: continuing from the previous frame"
                );
                self.offset += next - pts;
                pts = next;
            }
        }
        let pts = Duration::from_secs_f64(pts.max(0.0));
        self.last_pts = Some(pts);
        pts
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let pts = self.stamp();
                    if self.take_unshown() {
                        continue;
                    }
                    if let Some(t) = self.skip_before {
                        if pts < t {
                            continue;
                        }
                        self.skip_before = None;
                    }
                    return self.convert(pts).map(Some);
                }
                Err(ff::Error::Eof) => {
                    self.done = true;
                    return Ok(None);
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {}
                Err(e) => {
                    return Err(DecodeError::Corrupt {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })
                }
            }
            // feed one more packet of our stream
            if self.flushed {
                self.done = true;
                return Ok(None);
            }
            let mut fed = false;
            while let Some(pkt) = self.next_packet() {
                let shown = self.shown(pkt.pts());
                self.decoder.skip_frame(if shown {
                    ff::Discard::Default
                } else {
                    ff::Discard::NonReference
                });
                if let Some(p) = pkt.pts() {
                    self.sent.push_back(p);
                    if self.sent.len() > REORDER_WINDOW {
                        self.sent.pop_front();
                    }
                    if !shown {
                        self.unshown.push_back(p);
                        if self.unshown.len() > 4 * REORDER_WINDOW {
                            self.unshown.pop_front();
                        }
                    }
                }
                self.counts.packets.fetch_add(1, Ordering::Relaxed);
                if !shown {
                    self.counts.skipped.fetch_add(1, Ordering::Relaxed);
                }
                match self.decoder.send_packet(&pkt) {
                    Ok(()) => {}
                    Err(ff::Error::InvalidData) => continue, // skip a damaged packet
                    Err(e) => {
                        return Err(DecodeError::Corrupt {
                            path: self.path.clone(),
                            reason: e.to_string(),
                        })
                    }
                }
                fed = true;
                break;
            }
            if !fed {
                let _ = self.decoder.send_eof();
                self.flushed = true;
                // drain remaining frames; loop ends when receive_frame reports EOF
                loop {
                    match self.decoder.receive_frame(&mut self.frame) {
                        Ok(()) => {
                            let pts = self.stamp();
                            if self.take_unshown() {
                                continue;
                            }
                            if matches!(self.skip_before, Some(t) if pts < t) {
                                continue;
                            }
                            self.skip_before = None;
                            return self.convert(pts).map(Some);
                        }
                        _ => {
                            self.done = true;
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// Counts the frame just received, and whether it is one no tick shows (then it is not
    /// converted).
    fn take_unshown(&mut self) -> bool {
        self.counts.decoded.fetch_add(1, Ordering::Relaxed);
        let Some(p) = self.frame.pts() else {
            return false;
        };
        match self.unshown.iter().position(|&u| u == p) {
            Some(i) => {
                self.unshown.remove(i);
                self.counts.unshown.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn convert(&mut self, pts: Duration) -> Result<VideoFrame> {
        let mut out = convert_frame(&self.frame, &mut self.scaler, &self.path)?;
        out.rotation = self.rotation;
        Ok(out.with_pts(pts))
    }
}

/// A decoder for video stream `st` (frame threads), its average frame rate (0 when unknown)
/// and display rotation; `path` names it in errors. Shared by [`Decoder`] and the live pull
/// feed (which demuxes video and audio from one connection, and decodes with slice threads:
/// frame threads hold frames back). `threads`: the decoder's threads (0: FFmpeg's choice, one
/// per core).
pub(crate) fn open_video_stream(
    st: &ff::format::stream::Stream,
    path: &Path,
    threading: ff::codec::threading::Type,
    threads: usize,
) -> Result<(ff::decoder::Video, f64, Rotation)> {
    let fps = avg_fps(st);
    let rotation = rotation_of(st);
    let params = st.parameters();
    let codec_id = params.id();
    let mut ctx =
        ff::codec::context::Context::from_parameters(params).map_err(|e| DecodeError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if ff::decoder::find(codec_id).is_none() {
        return Err(DecodeError::Unsupported {
            path: path.to_path_buf(),
            codec: format!("{codec_id:?}"),
        });
    }
    ctx.set_threading(ff::codec::threading::Config {
        kind: threading,
        count: threads,
        ..Default::default()
    });
    let decoder = ctx
        .decoder()
        .video()
        .map_err(|e| DecodeError::Unsupported {
            path: path.to_path_buf(),
            codec: format!("{codec_id:?} ({e})"),
        })?;
    Ok((decoder, fps, rotation))
}

/// A stream's average frame rate (0 when unknown).
fn avg_fps(st: &ff::format::stream::Stream) -> f64 {
    let rate = st.avg_frame_rate();
    if rate.denominator() != 0 && rate.numerator() > 0 {
        f64::from(rate.numerator()) / f64::from(rate.denominator())
    } else {
        0.0
    }
}

/// The rotation that displays a stream upright: its display matrix (as FFmpeg's players
/// read it), else its `rotate` tag; `R0` when neither says, or the angle is not a multiple of
/// 90°.
fn rotation_of(st: &ff::format::stream::Stream) -> Rotation {
    for sd in st.side_data() {
        let d = sd.data();
        if sd.kind() == ff::codec::packet::side_data::Type::DisplayMatrix && d.len() >= 36 {
            let m: Vec<f64> = d[..36]
                .chunks_exact(4)
                .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect();
            let (s0, s1) = (m[0].hypot(m[3]), m[1].hypot(m[4]));
            if s0 == 0.0 || s1 == 0.0 {
                return Rotation::R0;
            }
            // clockwise display rotation (the negation of av_display_rotation_get)
            let cw = (m[1] / s1).atan2(m[0] / s0).to_degrees();
            return Rotation::from_degrees((cw / 90.0).round() as i64 * 90)
                .filter(|_| (cw - (cw / 90.0).round() * 90.0).abs() < 1.0)
                .unwrap_or_default();
        }
    }
    st.metadata()
        .get("rotate")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(Rotation::from_degrees)
        .unwrap_or_default()
}

/// Turns a decoded FFmpeg frame into a [`VideoFrame`] (no pts), converting pixel formats other
/// than I420, NV12 and RGBA with a cached swscale context.
pub(crate) fn convert_frame(
    f: &ff::frame::Video,
    scaler: &mut Option<(ff::software::scaling::Context, (Pixel, u32, u32))>,
    path: &Path,
) -> Result<VideoFrame> {
    let (w, h) = (f.width(), f.height());
    let corrupt = |e: crate::model::frame::FrameError| DecodeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let color = color_of(f);
    let sar = {
        let r = f.aspect_ratio();
        if r.numerator() > 0 && r.denominator() > 0 {
            (r.numerator() as u32, r.denominator() as u32)
        } else {
            (1, 1)
        }
    };
    let direct = match f.format() {
        Pixel::YUV420P | Pixel::YUVJ420P => Some(PixelFormat::I420),
        Pixel::NV12 => Some(PixelFormat::Nv12),
        Pixel::RGBA => Some(PixelFormat::Rgba),
        _ => None,
    };
    let mut out = match direct {
        Some(fmt) => planes_of(f, fmt, w, h).map_err(corrupt)?,
        None => {
            let has_alpha = matches!(
                f.format(),
                Pixel::RGBA
                    | Pixel::BGRA
                    | Pixel::ARGB
                    | Pixel::ABGR
                    | Pixel::YUVA420P
                    | Pixel::GRAY8A
                    | Pixel::PAL8
            );
            let (target, fmt) = if has_alpha || is_rgb(f.format()) {
                (Pixel::RGBA, PixelFormat::Rgba)
            } else {
                (Pixel::YUV420P, PixelFormat::I420)
            };
            let key = (f.format(), w, h);
            if scaler.as_ref().map(|s| s.1) != Some(key) {
                let ctx = ff::software::scaling::Context::get(
                    f.format(),
                    w,
                    h,
                    target,
                    w,
                    h,
                    ff::software::scaling::Flags::BILINEAR,
                )
                .map_err(|e| DecodeError::Unsupported {
                    path: path.to_path_buf(),
                    codec: format!("pixel format {:?} ({e})", f.format()),
                })?;
                *scaler = Some((ctx, key));
            }
            let mut dst = ff::frame::Video::empty();
            let (sc, _) = scaler.as_mut().expect("scaler set above");
            sc.run(f, &mut dst).map_err(|e| DecodeError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let mut v = planes_of(&dst, fmt, w, h).map_err(corrupt)?;
            if fmt == PixelFormat::I420 {
                // swscale kept the source's matrix and range
                v.color = color;
            }
            v
        }
    };
    if out.format() != PixelFormat::Rgba {
        out.color = color;
    }
    out.sar = sar;
    Ok(out)
}

/// Decodes a PNG or JPEG image held in memory (a picture registered through the API).
///
/// ```
/// use cloudmixer::media::decode::decode_image;
/// assert!(decode_image(b"not an image").is_err());
/// ```
pub fn decode_image(bytes: &[u8]) -> Result<VideoFrame> {
    init_ffmpeg();
    let path = Path::new("<picture bytes>");
    let corrupt = |reason: String| DecodeError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let id = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ff::codec::Id::PNG
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        ff::codec::Id::MJPEG
    } else {
        return Err(DecodeError::Open {
            path: path.to_path_buf(),
            reason: "not a PNG or JPEG image".into(),
        });
    };
    let codec = ff::decoder::find(id).ok_or_else(|| DecodeError::Unsupported {
        path: path.to_path_buf(),
        codec: format!("{id:?}"),
    })?;
    let mut dec = ff::codec::context::Context::new_with_codec(codec)
        .decoder()
        .video()
        .map_err(|e| corrupt(e.to_string()))?;
    dec.send_packet(&ff::Packet::copy(bytes))
        .map_err(|e| corrupt(e.to_string()))?;
    let _ = dec.send_eof();
    let mut frame = ff::frame::Video::empty();
    dec.receive_frame(&mut frame)
        .map_err(|e| corrupt(e.to_string()))?;
    if frame.width() == 0 || frame.height() == 0 {
        return Err(corrupt("no picture decoded".into()));
    }
    convert_frame(&frame, &mut None, path)
}

fn is_rgb(p: Pixel) -> bool {
    matches!(
        p,
        Pixel::RGB24
            | Pixel::BGR24
            | Pixel::RGB48BE
            | Pixel::RGB48LE
            | Pixel::GBRP
            | Pixel::ZRGB
            | Pixel::ZBGR
            | Pixel::RGBZ
            | Pixel::BGRZ
            | Pixel::GRAY8
            | Pixel::GRAY16BE
            | Pixel::GRAY16LE
    )
}

fn color_of(f: &ff::frame::Video) -> ColorSpace {
    use ff::util::color::{Range as R, Space as S};
    let full = matches!(
        f.format(),
        Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P
    ) || f.color_range() == R::JPEG;
    let matrix = match f.color_space() {
        S::BT709 => Matrix::Bt709,
        S::BT470BG | S::SMPTE170M | S::SMPTE240M | S::FCC => Matrix::Bt601,
        // unspecified: SD sizes are BT.601 by convention, HD BT.709
        _ if f.height() < 720 => Matrix::Bt601,
        _ => Matrix::Bt709,
    };
    ColorSpace {
        matrix,
        range: if full { Range::Full } else { Range::Limited },
    }
}

fn planes_of(
    f: &ff::frame::Video,
    fmt: PixelFormat,
    w: u32,
    h: u32,
) -> std::result::Result<VideoFrame, crate::model::frame::FrameError> {
    // the frame's buffers are shared, not copied: a new reference to them (FFmpeg reuses a
    // buffer only once no reference is left) is let go of when the last plane is dropped
    let held = FrameRef::of(f).map(PlaneData::from_arc);
    let planes = (0..fmt.plane_count())
        .map(|i| {
            let (row, rows) = fmt.plane_size(i, w, h);
            let stride = f.stride(i);
            let data = f.data(i);
            // only what the frame's rows cover (the buffer may be padded)
            let need = (stride * (rows - 1) + row).min(data.len());
            let data = match &held {
                // SAFETY: `data` lies in a buffer that the reference that `held` owns; FFmpeg
                // does not write into a buffer while a reference to it is held
                Some(owner) => unsafe { owner.sharing(data.as_ptr(), need) },
                None => data[..need].to_vec().into(),
            };
            Plane { data, stride }
        })
        .collect();
    VideoFrame::new(fmt, w, h, planes)
}

/// A reference to a decoded frame's buffers (`av_frame_ref`), released when dropped.
struct FrameRef(*mut ff::ffi::AVFrame);

// SAFETY: the AVFrame is only freed (once, on drop) and never read or written through this
// handle; its buffers' reference counts are atomic.
unsafe impl Send for FrameRef {}
// SAFETY: as above, nothing is reached through a shared reference.
unsafe impl Sync for FrameRef {}

impl FrameRef {
    /// A new reference to `f`'s buffers; `None` when they are not reference-counted (then
    /// they are copied) or the reference cannot be made.
    fn of(f: &ff::frame::Video) -> Option<Arc<FrameRef>> {
        // SAFETY: `f` is a valid frame; av_frame_clone makes a new frame referencing the same
        // buffers (or returns null)
        unsafe {
            let src = f.as_ptr();
            if (*src).buf[0].is_null() {
                return None;
            }
            let r = ff::ffi::av_frame_clone(src);
            (!r.is_null()).then(|| Arc::new(FrameRef(r)))
        }
    }
}

impl AsRef<[u8]> for FrameRef {
    /// Nothing: the planes point into the buffers it holds ([`PlaneData::sharing`]).
    fn as_ref(&self) -> &[u8] {
        &[]
    }
}

impl Drop for FrameRef {
    fn drop(&mut self) {
        // SAFETY: made by av_frame_clone, freed once here
        unsafe { ff::ffi::av_frame_free(&mut self.0) }
    }
}

/// Decodes the first frame at or after `t` (the last frame if `t` is past the end; the only
/// frame of a still).
pub fn frame_at(path: impl AsRef<Path>, t: Duration) -> Result<VideoFrame> {
    let mut d = Decoder::open(path.as_ref())?;
    d.seek(t)?;
    if let Some(f) = d.next_frame()? {
        return Ok(f);
    }
    // past the end: take the last frame
    let mut d = Decoder::open(path.as_ref())?;
    let mut last = None;
    while let Some(f) = d.next_frame()? {
        last = Some(f);
    }
    last.ok_or_else(|| DecodeError::NoFrame {
        path: path.as_ref().to_path_buf(),
        at: t,
    })
}
