//! H.264 encoding through FFmpeg (ffmpeg-next): encoder selection, settings, frames.
//!
//! Selection (DESIGN §6): the probe order is [`PROBE_ORDER`] — `h264_nvenc`, `h264_vaapi`,
//! `h264_qsv`, `h264_videotoolbox`, then `libx264`. A named encoder (setting or
//! `--encoder NAME`) is tried first. A hardware encoder that is missing or fails to open is
//! skipped with a logged reason (`tracing::warn`, once per [`EncoderProbes`] cache: a host's
//! rooms share one) and the next one is tried;
//! only when nothing opens is it an error.
//!
//! Output: yuv420p (NV12 for encoders that want it), BT.709 limited range tagged in the stream,
//! a keyframe every 2 s, time base `1/fps` with `pts = n` (constant frame rate). `vBps` forces a
//! bitrate (x264: ABR with a VBV of 2 s); otherwise `vQP` is the constant quality (x264 `crf`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ffmpeg::codec;
use ffmpeg::format::Pixel;
use ffmpeg::util::color;
use ffmpeg::{Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use thiserror::Error;

use crate::model::config::OutputSettings;
use crate::model::frame::I420Image;
use crate::model::picture::{OutPlanes, OutputFormat};

/// Encoders tried in order when none is named.
pub const PROBE_ORDER: [&str; 5] = [
    "h264_nvenc",
    "h264_vaapi",
    "h264_qsv",
    "h264_videotoolbox",
    "libx264",
];

/// The software fallback.
pub const SOFTWARE: &str = "libx264";

/// Default x264 preset.
pub const DEFAULT_PRESET: &str = "veryfast";

/// Live x264: how much picture the lookahead may hold (frames = this × fps, at least 1). With
/// x264's macroblock tree on these few frames a live file is about as small as an offline one
/// at the same quality (BENCHMARKS.md "Live encoding"), at the cost of these frames in a crash.
pub const LIVE_LOOKAHEAD: std::time::Duration = std::time::Duration::from_millis(140);

/// Live x264: CRF = vQP − this. The short lookahead's rate control spends slightly fewer bits
/// than the offline one at the same CRF; this brings the default vQP to the offline quality.
pub const LIVE_CRF_OFFSET: f32 = 2.4;

/// Frames the live x264 lookahead holds at `fps` ([`LIVE_LOOKAHEAD`]).
pub fn live_lookahead_frames(fps: u32) -> u32 {
    ((LIVE_LOOKAHEAD.as_secs_f64() * fps.max(1) as f64).round() as u32).max(1)
}

/// A failure at the encode boundary.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The named encoder does not exist in this FFmpeg build.
    #[error("encoder {0:?} is not available in this FFmpeg build")]
    NotFound(String),
    /// No encoder of the probe list could be opened.
    #[error("no H.264 encoder could be opened: {}", .tried.iter().map(|(n, r)| format!("{n}: {r}")).collect::<Vec<_>>().join("; "))]
    NoEncoder {
        /// (encoder, reason) for each one tried.
        tried: Vec<(String, String)>,
    },
    /// A bad setting (e.g. an unknown x264 preset).
    #[error("invalid encoder setting: {0}")]
    Setting(String),
    /// A frame that does not fit the picture copied into it (size or pixel format).
    #[error("encoder frame: {0}")]
    Frame(String),
    /// FFmpeg failed while encoding.
    #[error("{op}: {source}")]
    Ffmpeg {
        /// What was being done.
        op: &'static str,
        /// FFmpeg's error.
        source: ffmpeg::Error,
    },
}

/// Encoder choice and tuning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EncoderSettings {
    /// An FFmpeg encoder name to try first (e.g. `libx264`, `h264_nvenc`); `None` = probe.
    pub encoder: Option<String>,
    /// x264 preset (`ultrafast` … `placebo`); default `veryfast`.
    pub preset: String,
    /// Encoder threads; 0 = the encoder's default.
    pub threads: usize,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            encoder: None,
            preset: DEFAULT_PRESET.into(),
            threads: 0,
        }
    }
}

const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// Initialises FFmpeg once per process (safe to call often; FFmpeg's log is limited to errors).
pub fn init() {
    crate::media::decode::init_ffmpeg();
}

/// Hardware encoders that failed once, with the reason (not retried by anyone sharing the
/// cache). Cheap to clone; every clone is the same cache. No process-wide state: whoever owns
/// it (a [`crate::pipeline::Services`]) decides who shares the probes.
#[derive(Debug, Clone, Default)]
pub struct EncoderProbes {
    failed: Arc<Mutex<HashMap<String, String>>>,
}

impl EncoderProbes {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The hardware encoders that failed so far, with the reason, by name.
    pub fn failed(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }
}

/// An open H.264 encoder.
pub struct VideoEncoder {
    enc: ffmpeg::encoder::Video,
    name: String,
    pix: Pixel,
    width: u32,
    height: u32,
    fps: u32,
}

impl std::fmt::Debug for VideoEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEncoder")
            .field("name", &self.name)
            .field("pix", &self.pix)
            .finish()
    }
}

fn is_hardware(name: &str) -> bool {
    name != SOFTWARE && name != "libx264rgb" && name != "libopenh264"
}

impl VideoEncoder {
    /// Opens an encoder for `out` per `settings`. `global_header`: the container wants the
    /// parameter sets out of band (mp4, mkv, flv). `repeat_headers`: also keep them in-band
    /// (a `.ts` target shares the encode). `low_delay`: no frame may wait inside the encoder
    /// (live recording: what a crash loses is bounded): x264 `tune=zerolatency` (no lookahead,
    /// no B-frames, sliced threads), nvenc `zerolatency` with no delay.
    ///
    /// Hardware probes are remembered in a cache of this call's own; [`VideoEncoder::open_with`]
    /// shares one.
    pub fn open(
        out: &OutputSettings,
        settings: &EncoderSettings,
        global_header: bool,
        repeat_headers: bool,
        low_delay: bool,
    ) -> Result<Self, EncodeError> {
        Self::open_with(
            &EncoderProbes::new(),
            out,
            settings,
            global_header,
            repeat_headers,
            low_delay,
        )
    }

    /// As [`VideoEncoder::open`], skipping the hardware encoders that failed before in
    /// `probes` (and recording the ones that fail now).
    pub fn open_with(
        probes: &EncoderProbes,
        out: &OutputSettings,
        settings: &EncoderSettings,
        global_header: bool,
        repeat_headers: bool,
        low_delay: bool,
    ) -> Result<Self, EncodeError> {
        init();
        if !X264_PRESETS.contains(&settings.preset.as_str()) {
            return Err(EncodeError::Setting(format!(
                "x264 preset {:?} is not one of {}",
                settings.preset,
                X264_PRESETS.join(", ")
            )));
        }
        let mut order: Vec<String> = Vec::new();
        if let Some(n) = &settings.encoder {
            if ffmpeg::encoder::find_by_name(n).is_none() {
                return Err(EncodeError::NotFound(n.clone()));
            }
            order.push(n.clone());
        }
        order.extend(
            PROBE_ORDER
                .iter()
                .map(|s| s.to_string())
                .filter(|s| Some(s) != settings.encoder.as_ref()),
        );
        let mut tried = Vec::new();
        for name in order {
            let named = settings.encoder.as_deref() == Some(name.as_str());
            // hardware probes are serialised and remembered, so concurrent mixers sharing the
            // cache probe (and log) each failing encoder once
            let mut failed_guard =
                is_hardware(&name).then(|| probes.failed.lock().unwrap_or_else(|e| e.into_inner()));
            if let Some(r) = failed_guard.as_ref().and_then(|g| g.get(&name)) {
                tracing::debug!(encoder = %name, reason = %r, "skipping hardware encoder that failed before");
                tried.push((name, r.clone()));
                continue;
            }
            match Self::try_open(
                &name,
                out,
                settings,
                global_header,
                repeat_headers,
                low_delay,
            ) {
                Ok(e) => return Ok(e),
                Err(reason) => {
                    if let Some(g) = failed_guard.as_mut() {
                        let absent = ffmpeg::encoder::find_by_name(&name).is_none()
                            || reason.starts_with("no device");
                        if named || !absent {
                            tracing::warn!(encoder = %name, %reason, "hardware encoder unavailable, falling back");
                        } else {
                            tracing::debug!(encoder = %name, %reason, "hardware encoder not present");
                        }
                        g.insert(name.clone(), reason.clone());
                    } else {
                        tracing::warn!(encoder = %name, %reason, "encoder failed to open");
                    }
                    tried.push((name, reason));
                }
            }
        }
        Err(EncodeError::NoEncoder { tried })
    }

    /// A cheap check that the hardware an encoder needs can exist on this machine (no device
    /// node, no probe: opening nvenc or qsv without hardware costs ~0.1 s each).
    fn hardware_present(name: &str) -> Result<(), String> {
        let any = |paths: &[&str]| paths.iter().any(|p| std::path::Path::new(p).exists());
        let dri = || {
            std::fs::read_dir("/dev/dri")
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
                })
                .unwrap_or(false)
        };
        let ok = match name {
            "h264_nvenc" => any(&["/dev/nvidiactl", "/dev/nvidia0"]) || cfg!(windows),
            "h264_vaapi" | "h264_qsv" => dri() || cfg!(windows),
            "h264_videotoolbox" => cfg!(target_os = "macos"),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err("no device for it on this machine".into())
        }
    }

    fn try_open(
        name: &str,
        out: &OutputSettings,
        s: &EncoderSettings,
        global_header: bool,
        repeat_headers: bool,
        low_delay: bool,
    ) -> Result<Self, String> {
        let codec = ffmpeg::encoder::find_by_name(name)
            .ok_or_else(|| "not in this FFmpeg build".to_string())?;
        if is_hardware(name) {
            Self::hardware_present(name)?;
        }
        let pix = match name {
            "h264_qsv" | "h264_videotoolbox" => Pixel::NV12,
            "h264_vaapi" => return Err("needs VAAPI hardware frames (not implemented)".into()),
            _ => Pixel::YUV420P,
        };
        let ctx = codec::context::Context::new_with_codec(codec);
        let mut enc = ctx.encoder().video().map_err(|e| e.to_string())?;
        enc.set_width(out.width);
        enc.set_height(out.height);
        enc.set_format(pix);
        enc.set_time_base(Rational::new(1, out.fps as i32));
        enc.set_frame_rate(Some(Rational::new(out.fps as i32, 1)));
        enc.set_gop(2 * out.fps);
        enc.set_colorspace(color::Space::BT709);
        enc.set_color_range(color::Range::MPEG);
        enc.set_color_primaries(color::Primaries::BT709);
        enc.set_color_transfer_characteristic(color::TransferCharacteristic::BT709);
        // closed GOPs: every keyframe starts an independent stream (x264 through the API
        // defaults to open GOPs, whose leading B-frames need the previous GOP), so a segment, a
        // live reconnect or a seek starting at a keyframe decodes from its first frame
        let mut flags = codec::Flags::CLOSED_GOP;
        if global_header {
            flags |= codec::Flags::GLOBAL_HEADER;
        }
        enc.set_flags(flags);
        let threads = match (s.threads, name, low_delay) {
            (0, SOFTWARE, true) => live_x264_threads(out.width, out.height, out.fps),
            (n, ..) => n,
        };
        if threads > 0 {
            enc.set_threading(codec::threading::Config {
                kind: codec::threading::Type::Frame,
                count: threads,
                ..Default::default()
            });
        }
        let mut opts = Dictionary::new();
        let forced = out.bitrate;
        let rate = out.effective_bitrate() as usize;
        match name {
            SOFTWARE => {
                opts.set("preset", &s.preset);
                let mut params = Vec::new();
                if low_delay {
                    // zerolatency (no B-frames, sliced threads, no sync lookahead) but with the
                    // macroblock tree on a lookahead of LIVE_LOOKAHEAD: the frames it holds are
                    // what a crash may cost on top
                    opts.set("tune", "zerolatency");
                    params.push(format!(
                        "rc-lookahead={}:mbtree=1:sync-lookahead=0:bframes=1",
                        live_lookahead_frames(out.fps)
                    ));
                }
                if let Some(b) = forced {
                    enc.set_bit_rate(b as usize);
                    opts.set("maxrate", &b.to_string());
                    opts.set("bufsize", &(2 * b as u64).to_string());
                } else if low_delay {
                    let crf = (out.qp as f32 - LIVE_CRF_OFFSET).max(0.0);
                    opts.set("crf", &format!("{crf:.1}"));
                } else {
                    opts.set("crf", &out.qp.to_string());
                }
                if repeat_headers {
                    params.push("repeat-headers=1".into());
                }
                if !params.is_empty() {
                    opts.set("x264-params", &params.join(":"));
                }
            }
            "h264_nvenc" => {
                if low_delay {
                    opts.set("zerolatency", "1");
                    opts.set("delay", "0");
                }
                if let Some(b) = forced {
                    enc.set_bit_rate(b as usize);
                    opts.set("rc", "cbr");
                } else {
                    opts.set("rc", "constqp");
                    opts.set("qp", &out.qp.to_string());
                }
            }
            _ => enc.set_bit_rate(rate),
        }
        let enc = enc.open_as_with(codec, opts).map_err(|e| e.to_string())?;
        Ok(VideoEncoder {
            enc,
            name: name.to_string(),
            pix,
            width: out.width,
            height: out.height,
            fps: out.fps,
        })
    }

    /// The FFmpeg encoder name, e.g. `libx264`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Time base of frame and packet timestamps (`1/fps`).
    pub fn time_base(&self) -> Rational {
        Rational::new(1, self.fps as i32)
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// The codec context (stream parameters for muxers).
    pub fn context(&self) -> &codec::Context {
        &self.enc
    }

    /// What the compositor should write for this encoder: NV12 or I420.
    pub fn output_format(&self) -> OutputFormat {
        output_format(self.pix)
    }

    /// A frame buffer of the encoder's size and pixel format (for a recycling pool).
    pub fn alloc_frame(&self) -> ffmpeg::frame::Video {
        let mut f = ffmpeg::frame::Video::new(self.pix, self.width, self.height);
        f.set_color_space(color::Space::BT709);
        f.set_color_range(color::Range::MPEG);
        f.set_color_primaries(color::Primaries::BT709);
        f.set_color_transfer_characteristic(color::TransferCharacteristic::BT709);
        f
    }

    /// Sends frame `n` (pts = n in `1/fps`).
    pub fn send(&mut self, frame: &ffmpeg::frame::Video) -> Result<(), EncodeError> {
        self.enc
            .send_frame(frame)
            .map_err(|source| EncodeError::Ffmpeg {
                op: "sending a frame to the encoder",
                source,
            })
    }

    /// Signals the end of the stream; then drain with [`VideoEncoder::receive`].
    pub fn finish(&mut self) -> Result<(), EncodeError> {
        self.enc.send_eof().map_err(|source| EncodeError::Ffmpeg {
            op: "flushing the encoder",
            source,
        })
    }

    /// The next encoded packet, if one is ready.
    pub fn receive(&mut self, pkt: &mut Packet) -> Result<bool, EncodeError> {
        match self.enc.receive_packet(pkt) {
            Ok(()) => Ok(true),
            Err(ffmpeg::Error::Eof) => Ok(false),
            Err(ffmpeg::Error::Other { errno }) if errno == libc::EAGAIN => Ok(false),
            Err(source) => Err(EncodeError::Ffmpeg {
                op: "receiving a packet",
                source,
            }),
        }
    }
}

/// x264 threads of a live (real-time) recording when none are asked for: as many as the
/// output's pixel rate needs — one per 1280x720 at 30 fps, at most the machine's cores —
/// rather than x264's one-and-a-half per core. Live encoding uses sliced threads (no frame
/// held back), and on a box packed with rooms the slices of every room's encoder contend:
/// 720p15 on one thread takes ≈ 25 % less CPU than on x264's default (BENCHMARKS.md).
pub fn live_x264_threads(width: u32, height: u32, fps: u32) -> usize {
    let rate = width as u64 * height as u64 * fps.max(1) as u64;
    let need = rate.div_ceil(1280 * 720 * 30) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    need.clamp(1, cores.max(1))
}

/// The planes of an encoder frame (I420 or NV12) to compose into, made writable first (a
/// buffer the encoder still references is replaced, never overwritten).
pub fn frame_planes(frame: &mut ffmpeg::frame::Video) -> Result<OutPlanes<'_>, EncodeError> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let format = match frame.format() {
        Pixel::YUV420P => OutputFormat::I420,
        Pixel::NV12 => OutputFormat::Nv12,
        other => {
            return Err(EncodeError::Frame(format!(
                "pixel format {other:?} (yuv420p or nv12 expected)"
            )))
        }
    };
    if w % 2 != 0 || h % 2 != 0 || w == 0 || h == 0 {
        return Err(EncodeError::Frame(format!(
            "{w}x{h} frame (even, non-zero sizes expected)"
        )));
    }
    // SAFETY: `frame` is a valid, allocated AVFrame owned by us.
    let r = unsafe { ffmpeg::ffi::av_frame_make_writable(frame.as_mut_ptr()) };
    if r < 0 {
        return Err(EncodeError::Ffmpeg {
            op: "making a frame writable",
            source: ffmpeg::Error::from(r),
        });
    }
    let n = if format == OutputFormat::I420 { 3 } else { 2 };
    let mut planes: [(&mut [u8], usize); 3] = [(&mut [], 0), (&mut [], 0), (&mut [], 0)];
    for (i, p) in planes.iter_mut().enumerate().take(n) {
        let rows = if i == 0 { h } else { h / 2 };
        // SAFETY: plane `i` of a writable frame of this format and size holds `rows` rows of
        // `linesize[i]` bytes; the planes are distinct allocations (or disjoint parts of one),
        // so the slices do not overlap, and they borrow `frame` mutably for their lifetime.
        unsafe {
            let f = frame.as_mut_ptr();
            let stride = (*f).linesize[i];
            let data = (*f).data[i];
            if stride <= 0 || data.is_null() {
                return Err(EncodeError::Frame(format!("plane {i} is not allocated")));
            }
            *p = (
                std::slice::from_raw_parts_mut(data, stride as usize * rows),
                stride as usize,
            );
        }
    }
    Ok(OutPlanes {
        width: w as u32,
        height: h as u32,
        format,
        planes,
    })
}

/// The compositor output format an encoder frame of this pixel format takes.
pub fn output_format(pix: Pixel) -> OutputFormat {
    match pix {
        Pixel::NV12 => OutputFormat::Nv12,
        _ => OutputFormat::I420,
    }
}

/// Copies an output picture into an encoder frame (I420 or NV12), making the frame writable
/// first (a buffer the encoder still references is replaced, never overwritten).
pub fn fill_frame(frame: &mut ffmpeg::frame::Video, img: &I420Image) -> Result<(), EncodeError> {
    frame_planes(frame)?
        .write_i420(img)
        .map_err(|e| EncodeError::Frame(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::MixerConfig;

    fn out(w: u32, h: u32) -> OutputSettings {
        let cfg = MixerConfig::from_json(&format!(
            r#"{{"videoFileCfg":{{"svrPathName":"a.mp4","vWidth":{w},"vHeight":{h},"vFps":15,"layoutConfig":[]}}}}"#
        ))
        .unwrap();
        cfg.output
    }

    #[test]
    fn falls_back_to_x264_and_encodes() {
        let s = EncoderSettings {
            preset: "ultrafast".into(),
            ..Default::default()
        };
        let mut e = VideoEncoder::open(&out(64, 48), &s, true, false, false).unwrap();
        assert_eq!(e.name(), SOFTWARE);
        let img = I420Image::new(64, 48);
        let mut f = e.alloc_frame();
        let mut pkt = Packet::empty();
        let mut got = 0;
        for n in 0..10 {
            fill_frame(&mut f, &img).unwrap();
            f.set_pts(Some(n));
            e.send(&f).unwrap();
            while e.receive(&mut pkt).unwrap() {
                got += 1;
            }
        }
        e.finish().unwrap();
        while e.receive(&mut pkt).unwrap() {
            got += 1;
        }
        assert_eq!(got, 10);
    }

    /// Frames sent before the first packet comes out, at the default preset.
    fn delay_frames(low_delay: bool) -> usize {
        let s = EncoderSettings {
            encoder: Some(SOFTWARE.into()),
            ..Default::default()
        };
        let mut e = VideoEncoder::open(&out(320, 240), &s, true, false, low_delay).unwrap();
        let mut f = e.alloc_frame();
        let mut pkt = Packet::empty();
        for n in 0..60 {
            let mut img = I420Image::new(320, 240);
            img.y.iter_mut().enumerate().for_each(|(i, v)| {
                *v = ((i as i64 * 7 + n * 13) % 200 + 16) as u8;
            });
            fill_frame(&mut f, &img).unwrap();
            f.set_pts(Some(n));
            e.send(&f).unwrap();
            if e.receive(&mut pkt).unwrap() {
                return n as usize;
            }
        }
        60
    }

    #[test]
    fn live_encoding_holds_only_its_short_lookahead() {
        // offline (veryfast: lookahead, B-frames, frame threads) holds many frames; live only
        // the frames of LIVE_LOOKAHEAD (2 at the test's 15 fps; its one B-frame fits in them)
        let (offline, live) = (delay_frames(false), delay_frames(true));
        eprintln!("x264 veryfast delay: offline {offline} frames, live {live}");
        assert!(offline >= 10, "offline delay {offline} frames");
        assert_eq!(live_lookahead_frames(15), 2);
        assert_eq!(live_lookahead_frames(30), 4);
        assert_eq!(live_lookahead_frames(1), 1);
        assert_eq!(
            live as u32,
            live_lookahead_frames(15),
            "live delay {live} frames"
        );
    }

    #[test]
    fn live_threads_follow_the_pixel_rate() {
        assert_eq!(live_x264_threads(1280, 720, 15), 1);
        assert_eq!(live_x264_threads(1280, 720, 30), 1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(live_x264_threads(1920, 1080, 30), 3.min(cores));
        assert_eq!(live_x264_threads(3840, 2160, 30), 9.min(cores));
    }

    #[test]
    fn fill_frame_refuses_frames_that_do_not_fit() {
        let img = I420Image::new(64, 48);
        for (pix, w, h) in [
            (Pixel::YUV420P, 2, 2),
            (Pixel::GRAY8, 64, 48),
            (Pixel::RGBA, 64, 48),
            (Pixel::YUV420P, 128, 48),
        ] {
            let mut f = ffmpeg::frame::Video::new(pix, w, h);
            let e = fill_frame(&mut f, &img).unwrap_err();
            assert!(matches!(e, EncodeError::Frame(_)), "{pix:?} {w}x{h}: {e}");
        }
        let mut f = ffmpeg::frame::Video::new(Pixel::NV12, 64, 48);
        fill_frame(&mut f, &img).unwrap();
    }

    #[test]
    fn bad_names_and_presets_are_errors() {
        let s = EncoderSettings {
            encoder: Some("no_such_encoder".into()),
            ..Default::default()
        };
        assert!(matches!(
            VideoEncoder::open(&out(64, 48), &s, true, false, false),
            Err(EncodeError::NotFound(_))
        ));
        let s = EncoderSettings {
            preset: "warp".into(),
            ..Default::default()
        };
        assert!(matches!(
            VideoEncoder::open(&out(64, 48), &s, true, false, false),
            Err(EncodeError::Setting(_))
        ));
        // a named hardware encoder that cannot open falls back
        let s = EncoderSettings {
            encoder: Some("h264_vaapi".into()),
            preset: "ultrafast".into(),
            threads: 1,
        };
        assert_eq!(
            VideoEncoder::open(&out(64, 48), &s, true, false, false)
                .unwrap()
                .name(),
            SOFTWARE
        );
    }
}
