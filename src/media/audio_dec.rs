//! Decoding the best audio stream of a media file into interleaved `f32` chunks.
//!
//! Sources with at most two channels and a sample rate within 8–48 kHz keep their native
//! rate and channel count (only the sample format is converted). Sources with more than
//! two channels are **downmixed to stereo** with libswresample's default matrix (centre
//! and surround channels folded into left/right at −3 dB, LFE dropped, not just the first
//! two channels), normalised so that it cannot clip, as FFmpeg's `-ac` does; sources with a
//! rate outside 8–48 kHz are resampled to 48 kHz.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg_next as ffmpeg;

use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::format::Sample;
use ffmpeg::packet::Mut as _;
use ffmpeg::software::resampling;
use ffmpeg::{codec, ffi, frame, media, ChannelLayout, Packet, Rational};

/// FFmpeg initialisation; the only place that names the crate-wide init function.
fn init() {
    super::decode::init_ffmpeg();
}

/// Lowest sample rate kept as is.
const MIN_NATIVE_RATE: u32 = 8_000;
/// Highest sample rate kept as is; also the rate out-of-range sources are resampled to.
const MAX_NATIVE_RATE: u32 = 48_000;
/// After this many consecutive decode errors the iterator gives up.
const MAX_CONSECUTIVE_ERRORS: u32 = 64;

/// One chunk of decoded audio.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved samples, nominally -1..1, `channels` per sample frame.
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of interleaved channels (1 or 2).
    pub channels: u16,
    /// Position of the first sample, from the stream's timestamps relative to the
    /// stream's start time (clamped at zero). A frame without a timestamp continues
    /// from the end of the previous chunk.
    pub pts: Duration,
}

/// Errors from [`AudioFileDecoder`]; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioDecodeError {
    /// The file could not be opened or probed, or its audio decoder could not be set up.
    #[error("cannot open audio in {}: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file has no audio stream.
    #[error("no audio stream in {}", path.display())]
    NoAudio {
        /// The file.
        path: PathBuf,
    },
    /// Reading or decoding failed part-way.
    #[error("error decoding audio in {}: {reason}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn is_eagain(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == libc::EAGAIN)
}

/// A libswresample context plus the input it was configured for.
struct Resampler {
    ctx: resampling::Context,
    /// (format, channels, rate, layout mask) of the input.
    key: (Sample, u16, u32, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading packets.
    Reading,
    /// EOF sent to the decoder; draining it.
    Draining,
    /// Nothing more to yield.
    Done,
}

/// Decodes the best audio stream of a media file; iterate it for [`DecodedAudio`]
/// chunks (typically one per codec frame).
///
/// Corrupt packets are reported as `Some(Err(AudioDecodeError::Decode { .. }))` and
/// iteration may continue after them; read errors other than end of file, and many
/// consecutive decode errors, end the iteration after the error.
pub struct AudioFileDecoder {
    ictx: ffmpeg::format::context::Input,
    stream_index: usize,
    packet: Packet,
    /// The stream's decoder and conversion (shared with the live pull feed).
    s: AudioStream,
    state: State,
    consecutive_errors: u32,
}

/// One audio stream's decoder and its conversion to interleaved `f32` chunks, fed packets by
/// whoever demuxes (a file's [`AudioFileDecoder`], or a live input that demuxes video and audio
/// from one connection).
pub(crate) struct AudioStream {
    path: PathBuf,
    pub(crate) dec: codec::decoder::Audio,
    time_base: Rational,
    start_time: i64,
    out_rate: u32,
    out_channels: u16,
    pub(crate) frame: frame::Audio,
    resampler: Option<Resampler>,
    /// End of the previous chunk.
    next_pts: Duration,
}

impl AudioFileDecoder {
    /// Opens `path` and sets up a decoder for its best audio stream.
    pub fn open(path: &Path) -> Result<Self, AudioDecodeError> {
        init();
        let open_err = |reason: String| AudioDecodeError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let mut ictx = ffmpeg::format::input(path).map_err(|e| open_err(e.to_string()))?;
        let (stream_index, time_base, start_time, params) = {
            let stream = ictx.streams().best(media::Type::Audio).ok_or_else(|| {
                AudioDecodeError::NoAudio {
                    path: path.to_path_buf(),
                }
            })?;
            let start = stream.start_time();
            let start = if start == ffi::AV_NOPTS_VALUE {
                0
            } else {
                start
            };
            (
                stream.index(),
                stream.time_base(),
                start,
                stream.parameters(),
            )
        };
        // Do not demux streams we ignore.
        for mut s in ictx.streams_mut() {
            if s.index() != stream_index {
                // SAFETY: valid AVStream owned by `ictx`.
                unsafe { (*s.as_mut_ptr()).discard = ffi::AVDiscard::AVDISCARD_ALL };
            }
        }

        let s = AudioStream::open(params, time_base, start_time, path)?;
        Ok(AudioFileDecoder {
            ictx,
            stream_index,
            packet: Packet::empty(),
            s,
            state: State::Reading,
            consecutive_errors: 0,
        })
    }

    /// Whether `path` can be opened and has a decodable audio stream.
    pub fn has_audio(path: &Path) -> bool {
        Self::open(path).is_ok()
    }

    /// Sample rate of the yielded chunks: the native rate if within 8–48 kHz, else 48000.
    pub fn sample_rate(&self) -> u32 {
        self.s.out_rate
    }

    /// Channels of the yielded chunks: the native count for mono and stereo; sources
    /// with more than two channels are downmixed to stereo (libswresample's default
    /// downmix matrix, not just the first two channels).
    pub fn channels(&self) -> u16 {
        self.s.out_channels
    }

    fn decode_err(&self, reason: String) -> AudioDecodeError {
        self.s.decode_err(reason)
    }

    /// Counts a decode error; gives up after too many in a row.
    fn error(&mut self, reason: String) -> Option<Result<DecodedAudio, AudioDecodeError>> {
        self.consecutive_errors += 1;
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            self.state = State::Done;
        }
        Some(Err(self.decode_err(reason)))
    }
}

impl AudioStream {
    /// A decoder for a stream with these parameters; `path` names it in errors.
    pub(crate) fn open(
        params: codec::Parameters,
        time_base: Rational,
        start_time: i64,
        path: &Path,
    ) -> Result<Self, AudioDecodeError> {
        let open_err = |reason: String| AudioDecodeError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let mut ctx = codec::context::Context::from_parameters(params)
            .map_err(|e| open_err(format!("codec parameters: {e}")))?;
        // SAFETY: valid, not yet opened codec context.
        unsafe { (*ctx.as_mut_ptr()).pkt_timebase = time_base.into() };
        let codec_id = ctx.id();
        let dec = ctx
            .decoder()
            .audio()
            .map_err(|e| open_err(format!("audio decoder for {codec_id:?}: {e}")))?;
        let (rate, channels) = (dec.rate(), dec.channels());
        if rate == 0 || channels == 0 {
            return Err(open_err(format!(
                "unknown sample rate ({rate}) or channel count ({channels})"
            )));
        }
        let out_rate = if (MIN_NATIVE_RATE..=MAX_NATIVE_RATE).contains(&rate) {
            rate
        } else {
            MAX_NATIVE_RATE
        };
        Ok(AudioStream {
            path: path.to_path_buf(),
            dec,
            time_base,
            start_time,
            out_rate,
            out_channels: channels.min(2),
            frame: frame::Audio::empty(),
            resampler: None,
            next_pts: Duration::ZERO,
        })
    }

    fn decode_err(&self, reason: String) -> AudioDecodeError {
        AudioDecodeError::Decode {
            path: self.path.clone(),
            reason,
        }
    }

    /// Stream timestamp → position relative to the stream start (clamped at zero).
    fn ts_to_duration(&self, ts: i64) -> Duration {
        let rel = i128::from(ts) - i128::from(self.start_time);
        let num = i128::from(self.time_base.numerator());
        let den = i128::from(self.time_base.denominator());
        if rel <= 0 || num <= 0 || den <= 0 {
            return Duration::ZERO;
        }
        let nanos = rel * num * 1_000_000_000 / den;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn samples_duration(&self, samples: usize) -> Duration {
        Duration::from_nanos(samples as u64 * 1_000_000_000 / u64::from(self.out_rate))
    }

    /// Builds a chunk and advances `next_pts`. `None` for an empty chunk.
    fn chunk(&mut self, samples: Vec<f32>, pts: Duration) -> Option<DecodedAudio> {
        if samples.is_empty() {
            return None;
        }
        let frames = samples.len() / usize::from(self.out_channels);
        self.next_pts = pts + self.samples_duration(frames);
        Some(DecodedAudio {
            samples,
            sample_rate: self.out_rate,
            channels: self.out_channels,
            pts,
        })
    }

    /// Converts the decoded frame in `self.frame`.
    pub(crate) fn convert_frame(&mut self) -> Result<Option<DecodedAudio>, AudioDecodeError> {
        let n = self.frame.samples();
        let fmt = self.frame.format();
        let channels = self.frame.channels();
        let rate = self.frame.rate();
        if n == 0 || channels == 0 {
            return Ok(None);
        }
        let pts = match self.frame.timestamp().or(self.frame.pts()) {
            Some(ts) => self.ts_to_duration(ts),
            None => self.next_pts,
        };
        if rate == self.out_rate && channels == self.out_channels {
            let samples = interleave_f32(&self.frame, fmt, usize::from(channels), n)
                .ok_or_else(|| self.decode_err(format!("unsupported sample format {fmt:?}")))?;
            return Ok(self.chunk(samples, pts));
        }

        // Resample / downmix.
        let mut mask = self.frame.channel_layout().bits();
        if mask == 0 || mask.count_ones() != u32::from(channels) {
            mask = ChannelLayout::default(i32::from(channels)).bits();
        }
        let key = (fmt, channels, rate, mask);
        if self.resampler.as_ref().map(|r| r.key) != Some(key) {
            let ctx = resampling::Context::get(
                fmt,
                ChannelLayout::from_bits_truncate(mask),
                rate,
                Sample::F32(SampleType::Packed),
                ChannelLayout::default(i32::from(self.out_channels)),
                self.out_rate,
            )
            .map_err(|e| {
                self.decode_err(format!(
                    "resampler {fmt:?}/{channels}ch/{rate}Hz -> f32/{}ch/{}Hz: {e}",
                    self.out_channels, self.out_rate
                ))
            })?;
            let mut ctx = ctx;
            if channels > self.out_channels {
                normalise_downmix(&mut ctx)
                    .map_err(|e| self.decode_err(format!("downmix {channels}ch: {e}")))?;
            }
            self.resampler = Some(Resampler { ctx, key });
        }
        let Some(rs) = self.resampler.as_mut() else {
            return Ok(None);
        };
        // SAFETY: valid initialised SwrContext.
        let delay = unsafe { ffi::swr_get_delay(rs.ctx.as_mut_ptr(), i64::from(self.out_rate)) };
        // SAFETY: the frame was just filled by the decoder; extended_data is its plane table.
        let input = unsafe { (*self.frame.as_ptr()).extended_data as *mut *const u8 };
        let samples = run_swr(&mut rs.ctx, input, n, self.out_channels)
            .map_err(|e| self.decode_err(format!("swr_convert: {e}")))?;
        let pts = pts.saturating_sub(self.samples_duration(delay.max(0) as usize));
        Ok(self.chunk(samples, pts))
    }

    /// Drains what the resampler still buffers at end of stream.
    pub(crate) fn flush_resampler(&mut self) -> Option<DecodedAudio> {
        let mut rs = self.resampler.take()?;
        let samples = run_swr(&mut rs.ctx, std::ptr::null_mut(), 0, self.out_channels).ok()?;
        let pts = self.next_pts;
        self.chunk(samples, pts)
    }
}

/// Makes a downmixing resampler use swresample's default matrix *normalised* so that the
/// output cannot clip (each output channel's coefficients sum to at most 1), as FFmpeg's
/// `-ac` does: libswresample normalises only for integer sample formats, and without it a
/// 5.1 source folded into float stereo is up to 2.4× (7.7 dB) louder than FFmpeg's own
/// downmix. The matrix is ITU-R BS.775's: centre and surrounds at −3 dB, LFE dropped.
fn normalise_downmix(ctx: &mut resampling::Context) -> Result<(), ffmpeg::Error> {
    // SAFETY: a valid, initialised SwrContext; setting an option and initialising again
    // rebuilds its matrix (swr_init clears the old state first).
    unsafe {
        let s = ctx.as_mut_ptr();
        let r = ffi::av_opt_set_double(s.cast(), c"rematrix_maxval".as_ptr(), 1.0, 0);
        if r < 0 {
            return Err(ffmpeg::Error::from(r));
        }
        let r = ffi::swr_init(s);
        if r < 0 {
            return Err(ffmpeg::Error::from(r));
        }
    }
    Ok(())
}

/// Runs `swr_convert` on `in_count` samples (null input = flush) into a new interleaved
/// f32 buffer.
fn run_swr(
    ctx: &mut resampling::Context,
    input: *mut *const u8,
    in_count: usize,
    out_channels: u16,
) -> Result<Vec<f32>, ffmpeg::Error> {
    let in_count = i32::try_from(in_count).map_err(|_| ffmpeg::Error::InvalidData)?;
    // SAFETY: valid SwrContext; `input` is null or points to the frame's plane pointers
    // holding `in_count` samples; the output buffer holds `cap` samples per channel.
    unsafe {
        let cap = ffi::swr_get_out_samples(ctx.as_mut_ptr(), in_count);
        if cap < 0 {
            return Err(ffmpeg::Error::from(cap));
        }
        let mut out = vec![0f32; cap as usize * usize::from(out_channels)];
        if cap == 0 {
            return Ok(out);
        }
        let mut out_ptr = out.as_mut_ptr() as *mut u8;
        let got = ffi::swr_convert(ctx.as_mut_ptr(), &mut out_ptr, cap, input, in_count);
        if got < 0 {
            return Err(ffmpeg::Error::from(got));
        }
        out.truncate(got as usize * usize::from(out_channels));
        Ok(out)
    }
}

/// Converts a decoded frame of any common sample format to interleaved f32.
fn interleave_f32(frame: &frame::Audio, fmt: Sample, ch: usize, n: usize) -> Option<Vec<f32>> {
    let planar = match fmt {
        Sample::U8(t)
        | Sample::I16(t)
        | Sample::I32(t)
        | Sample::F32(t)
        | Sample::I64(t)
        | Sample::F64(t) => t == SampleType::Planar,
        Sample::None => return None,
    };
    let read = |p: *const u8, i: usize| -> f32 {
        // SAFETY: callers index within the plane (see below); FFmpeg aligns planes.
        unsafe {
            match fmt {
                Sample::U8(_) => (f32::from(*p.add(i)) - 128.0) / 128.0,
                Sample::I16(_) => f32::from(*(p as *const i16).add(i)) / 32768.0,
                Sample::I32(_) => (*(p as *const i32).add(i) as f64 / 2_147_483_648.0) as f32,
                Sample::I64(_) => {
                    (*(p as *const i64).add(i) as f64 / 9.223_372_036_854_776e18) as f32
                }
                Sample::F32(_) => *(p as *const f32).add(i),
                Sample::F64(_) => *(p as *const f64).add(i) as f32,
                Sample::None => 0.0,
            }
        }
    };
    let mut out = Vec::with_capacity(n * ch);
    // SAFETY: a decoded frame has `ch` planes of `n` samples (planar) or one plane of
    // `n * ch` interleaved samples (packed) in `extended_data`.
    let data = unsafe { (*frame.as_ptr()).extended_data };
    if data.is_null() {
        return None;
    }
    if planar {
        let planes: Vec<*const u8> = (0..ch)
            // SAFETY: a planar frame's extended_data has `ch` plane pointers (see above).
            .map(|c| unsafe { *data.add(c) as *const u8 })
            .collect();
        if planes.iter().any(|p| p.is_null()) {
            return None;
        }
        for i in 0..n {
            for p in &planes {
                out.push(read(*p, i));
            }
        }
    } else {
        // SAFETY: a packed frame's extended_data has at least one plane pointer.
        let p = unsafe { *data as *const u8 };
        if p.is_null() {
            return None;
        }
        for i in 0..n * ch {
            out.push(read(p, i));
        }
    }
    Some(out)
}

impl Iterator for AudioFileDecoder {
    type Item = Result<DecodedAudio, AudioDecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.state == State::Done {
                return None;
            }
            match self.s.dec.receive_frame(&mut self.s.frame) {
                Ok(()) => {
                    self.consecutive_errors = 0;
                    match self.s.convert_frame() {
                        Ok(Some(chunk)) => return Some(Ok(chunk)),
                        Ok(None) => continue,
                        Err(e) => {
                            self.consecutive_errors += 1;
                            if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                                self.state = State::Done;
                            }
                            return Some(Err(e));
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.state = State::Done;
                    return self.s.flush_resampler().map(Ok);
                }
                Err(e) if is_eagain(&e) => {
                    if self.state == State::Draining {
                        // Should not happen after EOF; avoid spinning.
                        self.state = State::Done;
                        return self.s.flush_resampler().map(Ok);
                    }
                }
                Err(e) => return self.error(format!("decoding: {e}")),
            }

            // The decoder wants input.
            // SAFETY: valid packet; drop the previous packet's data before reuse.
            unsafe { ffi::av_packet_unref(self.packet.as_mut_ptr()) };
            match self.packet.read(&mut self.ictx) {
                Ok(()) => {
                    if self.packet.stream() != self.stream_index {
                        continue;
                    }
                    match self.s.dec.send_packet(&self.packet) {
                        Ok(()) => {}
                        Err(e) => return self.error(format!("decoding packet: {e}")),
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.state = State::Draining;
                    if let Err(e) = self.s.dec.send_eof() {
                        self.state = State::Done;
                        return Some(Err(self.decode_err(format!("flushing decoder: {e}"))));
                    }
                }
                Err(e) => {
                    self.state = State::Done;
                    return Some(Err(self.decode_err(format!("reading: {e}"))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use crate::media::testfile::TempFile;

    fn ffmpeg_make(args: &[&str], out: &Path) {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(out)
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "ffmpeg {args:?} failed");
    }

    fn decode_all(path: &Path) -> (AudioFileDecoder, Vec<DecodedAudio>) {
        let mut dec = AudioFileDecoder::open(path).expect("open");
        let chunks: Vec<DecodedAudio> = (&mut dec).map(|c| c.expect("chunk")).collect();
        (dec, chunks)
    }

    fn rms(x: impl Iterator<Item = f32>) -> f64 {
        let (mut s, mut n) = (0.0f64, 0usize);
        for v in x {
            s += f64::from(v) * f64::from(v);
            n += 1;
        }
        (s / n.max(1) as f64).sqrt()
    }

    #[test]
    fn missing_file() {
        let path = std::env::temp_dir().join("cloudmixer-audio-dec-does-not-exist.m4a");
        match AudioFileDecoder::open(&path) {
            Err(e @ AudioDecodeError::Open { .. }) => {
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("opened a missing file"),
        }
        assert!(!AudioFileDecoder::has_audio(&path));
    }

    #[test]
    fn text_file() {
        let file = TempFile::new("text", "txt");
        std::fs::write(&file.0, "hello, this is not a media file\n").expect("write");
        match AudioFileDecoder::open(&file.0) {
            // FFmpeg may reject it or probe it as a (video-only) "tty" file.
            Err(AudioDecodeError::Open { path, reason }) => {
                println!("text file: Open error: {reason}");
                assert_eq!(path, file.0);
            }
            Err(AudioDecodeError::NoAudio { path }) => {
                println!("text file: NoAudio");
                assert_eq!(path, file.0);
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("found audio in a text file"),
        }
        assert!(!AudioFileDecoder::has_audio(&file.0));
    }

    #[test]
    fn video_only_file() {
        let file = TempFile::new("video", "mkv");
        ffmpeg_make(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=64x48:rate=5",
                "-t",
                "1",
                "-c:v",
                "mpeg4",
            ],
            &file.0,
        );
        match AudioFileDecoder::open(&file.0) {
            Err(e @ AudioDecodeError::NoAudio { .. }) => {
                assert!(e.to_string().contains(&*file.0.to_string_lossy()), "{e}");
            }
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("found audio in a video-only file"),
        }
        assert!(!AudioFileDecoder::has_audio(&file.0));
    }

    #[test]
    fn native_rate_and_channels_kept() {
        // 22.05 kHz mono s16 WAV: kept at 22050 Hz mono, converted to f32.
        let file = TempFile::new("native", "wav");
        ffmpeg_make(
            &[
                "-f",
                "lavfi",
                "-i",
                "aevalsrc=0.5*sin(2*PI*441*t):s=22050:d=1",
                "-c:a",
                "pcm_s16le",
            ],
            &file.0,
        );
        assert!(AudioFileDecoder::has_audio(&file.0));
        let (dec, chunks) = decode_all(&file.0);
        assert_eq!((dec.sample_rate(), dec.channels()), (22_050, 1));
        let total: usize = chunks.iter().map(|c| c.samples.len()).sum();
        assert_eq!(total, 22_050);
        // pts continuity.
        let mut expect = Duration::ZERO;
        for c in &chunks {
            assert_eq!((c.sample_rate, c.channels), (22_050, 1));
            let diff = c.pts.as_secs_f64() - expect.as_secs_f64();
            assert!(diff.abs() < 1e-4, "pts {:?} expected {expect:?}", c.pts);
            expect = c.pts + Duration::from_secs_f64(c.samples.len() as f64 / 22_050.0);
        }
        let level = rms(chunks.iter().flat_map(|c| c.samples.iter().copied()));
        assert!((level - 0.5 / 2f64.sqrt()).abs() < 0.01, "rms {level}");
    }

    #[test]
    fn surround_high_rate_is_downmixed_and_resampled() {
        // 96 kHz 5.1 FLAC with a tone only in front-left: stereo 48 kHz, tone on the left.
        let file = TempFile::new("surround", "flac");
        ffmpeg_make(
            &[
                "-f",
                "lavfi",
                "-i",
                "aevalsrc=0.5*sin(2*PI*440*t)|0|0|0|0|0:s=96000:d=1:c=5.1",
            ],
            &file.0,
        );
        let (dec, chunks) = decode_all(&file.0);
        assert_eq!((dec.sample_rate(), dec.channels()), (48_000, 2));
        let samples: Vec<f32> = chunks.iter().flat_map(|c| c.samples.clone()).collect();
        let frames = samples.len() / 2;
        assert!((frames as i64 - 48_000).abs() < 100, "frames {frames}");
        let left = rms(samples.iter().step_by(2).skip(2_400).take(40_000).copied());
        let right = rms(samples
            .iter()
            .skip(1)
            .step_by(2)
            .skip(2_400)
            .take(40_000)
            .copied());
        println!(
            "5.1@96k -> stereo@48k: {frames} frames, left rms {left:.4}, right rms {right:.6}"
        );
        assert!(left > 0.1, "left rms {left}");
        assert!(right < left / 100.0, "right rms {right}");
        assert!(chunks.windows(2).all(|w| w[0].pts <= w[1].pts));
    }
}
