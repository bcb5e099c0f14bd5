//! [`AudioFrame`]: one chunk of decoded audio of one user, as pushed by the
//! recording server.

use std::time::Duration;

/// Lowest accepted sample rate in Hz.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest accepted sample rate in Hz.
pub const MAX_SAMPLE_RATE: u32 = 48_000;

/// Sample storage of an [`AudioFrame`].
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    /// Signed 16-bit PCM; full scale is ±32768.
    I16(Vec<i16>),
    /// 32-bit float PCM; full scale is ±1.0 (larger finite values are allowed
    /// and get limited by the mixer).
    F32(Vec<f32>),
}

impl Samples {
    /// Total number of samples over all channels.
    pub fn len(&self) -> usize {
        match self {
            Samples::I16(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }

    /// Whether there are no samples at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How the channels of a multi-channel frame are arranged in the one `Vec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleLayout {
    /// `L0 R0 L1 R1 …`
    Interleaved,
    /// All of channel 0, then all of channel 1: `L0 L1 … R0 R1 …`.
    Planar,
}

/// Why an [`AudioFrame`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AudioFrameError {
    /// The sample rate is outside 8000..=48000 Hz.
    #[error("unsupported sample rate {0} Hz (expected 8000..=48000)")]
    SampleRate(u32),
    /// The channel count is neither 1 nor 2.
    #[error("unsupported channel count {0} (expected 1 or 2)")]
    Channels(u16),
    /// The number of samples is not a whole multiple of the channel count.
    #[error("sample count {samples} is not a multiple of the channel count {channels}")]
    Misaligned {
        /// Total number of samples given.
        samples: usize,
        /// Channel count given.
        channels: u16,
    },
    /// The frame holds no samples.
    #[error("empty audio frame")]
    Empty,
    /// An `f32` sample is NaN or infinite.
    #[error("non-finite f32 sample at index {index}")]
    NonFinite {
        /// Index of the first offending sample in the sample `Vec`.
        index: usize,
    },
}

/// Decoded audio of one user: validated samples plus format and an optional
/// capture timestamp.
///
/// ```
/// use cloudmixer::model::audio::{AudioFrame, SampleLayout, Samples};
/// use std::time::Duration;
///
/// // 10 ms of stereo 16 kHz audio, planar.
/// let mut s = vec![0i16; 320];
/// s[0] = 16384; // left
/// s[160] = -16384; // right
/// let frame = AudioFrame::new(Samples::I16(s), SampleLayout::Planar, 16_000, 2)?
///     .with_capture(Duration::from_millis(40));
/// assert_eq!(frame.frames(), 160);
/// assert_eq!(frame.duration(), Duration::from_millis(10));
/// assert_eq!(frame.capture(), Some(Duration::from_millis(40)));
///
/// let mut mono = Vec::new();
/// frame.mono_into(&mut mono);
/// assert_eq!(mono.len(), 160);
/// assert_eq!(mono[0], 0.0); // mean of +0.5 and -0.5
///
/// assert!(AudioFrame::i16_interleaved(vec![0; 10], 0, 1).is_err());
/// # Ok::<(), cloudmixer::model::audio::AudioFrameError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    samples: Samples,
    layout: SampleLayout,
    sample_rate: u32,
    channels: u16,
    capture: Option<Duration>,
}

impl AudioFrame {
    /// Validates and wraps decoded samples.
    ///
    /// Errors: sample rate outside 8000..=48000, channels not 1 or 2, no
    /// samples, a sample count that is not a multiple of `channels`, or a
    /// NaN/infinite `f32` sample.
    pub fn new(
        samples: Samples,
        layout: SampleLayout,
        sample_rate: u32,
        channels: u16,
    ) -> Result<Self, AudioFrameError> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
            return Err(AudioFrameError::SampleRate(sample_rate));
        }
        if channels != 1 && channels != 2 {
            return Err(AudioFrameError::Channels(channels));
        }
        let n = samples.len();
        if n == 0 {
            return Err(AudioFrameError::Empty);
        }
        if n % usize::from(channels) != 0 {
            return Err(AudioFrameError::Misaligned {
                samples: n,
                channels,
            });
        }
        let non_finite = match &samples {
            Samples::F32(v) => v.iter().position(|x| !x.is_finite()),
            Samples::I16(_) => None,
        };
        if let Some(index) = non_finite {
            return Err(AudioFrameError::NonFinite { index });
        }
        Ok(Self {
            samples,
            layout,
            sample_rate,
            channels,
            capture: None,
        })
    }

    /// Interleaved `i16` frame (see [`AudioFrame::new`]).
    pub fn i16_interleaved(
        samples: Vec<i16>,
        sample_rate: u32,
        channels: u16,
    ) -> Result<Self, AudioFrameError> {
        Self::new(
            Samples::I16(samples),
            SampleLayout::Interleaved,
            sample_rate,
            channels,
        )
    }

    /// Interleaved `f32` frame (see [`AudioFrame::new`]).
    pub fn f32_interleaved(
        samples: Vec<f32>,
        sample_rate: u32,
        channels: u16,
    ) -> Result<Self, AudioFrameError> {
        Self::new(
            Samples::F32(samples),
            SampleLayout::Interleaved,
            sample_rate,
            channels,
        )
    }

    /// Sets the capture timestamp of the first sample, on the mixer's clock.
    pub fn with_capture(mut self, t: Duration) -> Self {
        self.capture = Some(t);
        self
    }

    /// The frame without a capture time (it follows the previous one).
    pub fn without_capture(mut self) -> Self {
        self.capture = None;
        self
    }

    /// Capture timestamp of the first sample, if one was given.
    pub fn capture(&self) -> Option<Duration> {
        self.capture
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Number of channels (1 or 2).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The raw samples.
    pub fn samples(&self) -> &Samples {
        &self.samples
    }

    /// Channel layout of the raw samples.
    pub fn layout(&self) -> SampleLayout {
        self.layout
    }

    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels)
    }

    /// Play-out duration (`frames / sample_rate`), rounded down to the nanosecond.
    pub fn duration(&self) -> Duration {
        let nanos = self.frames() as u128 * 1_000_000_000 / u128::from(self.sample_rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Downmix to mono f32 in -1..1 (i16 / 32768; stereo = mean of L and R),
    /// appending to `out` after clearing it (reuses its capacity: no
    /// allocation once warm).
    pub fn mono_into(&self, out: &mut Vec<f32>) {
        out.clear();
        let frames = self.frames();
        match (&self.samples, self.channels, self.layout) {
            (Samples::I16(v), 1, _) => out.extend(v.iter().map(|&x| i16_to_f32(x))),
            (Samples::F32(v), 1, _) => out.extend_from_slice(v),
            (Samples::I16(v), _, SampleLayout::Interleaved) => out.extend(
                v.chunks_exact(2)
                    .map(|p| (i16_to_f32(p[0]) + i16_to_f32(p[1])) * 0.5),
            ),
            (Samples::F32(v), _, SampleLayout::Interleaved) => {
                out.extend(v.chunks_exact(2).map(|p| (p[0] + p[1]) * 0.5))
            }
            (Samples::I16(v), _, SampleLayout::Planar) => {
                let (l, r) = v.split_at(frames);
                out.extend(
                    l.iter()
                        .zip(r)
                        .map(|(&a, &b)| (i16_to_f32(a) + i16_to_f32(b)) * 0.5),
                )
            }
            (Samples::F32(v), _, SampleLayout::Planar) => {
                let (l, r) = v.split_at(frames);
                out.extend(l.iter().zip(r).map(|(&a, &b)| (a + b) * 0.5))
            }
        }
    }
}

#[inline]
fn i16_to_f32(x: i16) -> f32 {
    f32::from(x) / 32768.0
}

/// Which users go where in a mixed audio track (the vendor's `aChannelType` /
/// `aChannelContent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMode {
    /// One channel: the sum of `users` (empty = everyone).
    Mono {
        /// Users to mix; empty means all users.
        users: Vec<String>,
    },
    /// Two channels: `left` on channel 0, `right` on channel 1.
    LeftRight {
        /// User on the left channel.
        left: String,
        /// User on the right channel.
        right: String,
    },
}

/// The user an audio frame belongs to: the part of a camid before the first '.'
/// ("Usr1.-1" → "Usr1").
pub fn user_of(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_rate() {
        for r in [0, 7_999, 48_001, 96_000] {
            let e = AudioFrame::i16_interleaved(vec![0; 4], r, 1).unwrap_err();
            assert_eq!(e, AudioFrameError::SampleRate(r));
            assert!(e.to_string().contains(&r.to_string()));
        }
        assert!(AudioFrame::i16_interleaved(vec![0; 4], 8_000, 1).is_ok());
        assert!(AudioFrame::i16_interleaved(vec![0; 4], 48_000, 1).is_ok());
    }

    #[test]
    fn rejects_bad_channels() {
        for c in [0u16, 3, 7] {
            let e = AudioFrame::i16_interleaved(vec![0; 42], 16_000, c).unwrap_err();
            assert_eq!(e, AudioFrameError::Channels(c));
            assert!(e.to_string().contains(&c.to_string()));
        }
    }

    #[test]
    fn rejects_misaligned() {
        let e = AudioFrame::f32_interleaved(vec![0.0; 5], 16_000, 2).unwrap_err();
        assert_eq!(
            e,
            AudioFrameError::Misaligned {
                samples: 5,
                channels: 2
            }
        );
        assert!(e.to_string().contains('5'));
    }

    #[test]
    fn rejects_empty() {
        let e = AudioFrame::f32_interleaved(vec![], 16_000, 1).unwrap_err();
        assert_eq!(e, AudioFrameError::Empty);
        let e = AudioFrame::i16_interleaved(vec![], 16_000, 2).unwrap_err();
        assert_eq!(e, AudioFrameError::Empty);
    }

    #[test]
    fn rejects_non_finite() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vec![0.5f32; 8];
            v[5] = bad;
            let e = AudioFrame::f32_interleaved(v, 16_000, 2).unwrap_err();
            assert_eq!(e, AudioFrameError::NonFinite { index: 5 });
            assert!(e.to_string().contains('5'));
        }
        // Over-range but finite is fine.
        assert!(AudioFrame::f32_interleaved(vec![3.0, -7.5], 16_000, 1).is_ok());
    }

    #[test]
    fn accessors() {
        let f = AudioFrame::i16_interleaved(vec![0; 960], 48_000, 2).unwrap();
        assert_eq!(f.frames(), 480);
        assert_eq!(f.channels(), 2);
        assert_eq!(f.sample_rate(), 48_000);
        assert_eq!(f.duration(), Duration::from_millis(10));
        assert_eq!(f.capture(), None);
        let f = f.with_capture(Duration::from_secs(3));
        assert_eq!(f.capture(), Some(Duration::from_secs(3)));
        let f = AudioFrame::i16_interleaved(vec![0; 441], 44_100, 1).unwrap();
        assert_eq!(f.duration(), Duration::from_millis(10));
    }

    #[test]
    fn mono_i16_mono() {
        let f = AudioFrame::i16_interleaved(vec![-32768, 0, 16384, 32767], 8_000, 1).unwrap();
        let mut out = vec![9.0; 100];
        f.mono_into(&mut out);
        assert_eq!(out, vec![-1.0, 0.0, 0.5, 32767.0 / 32768.0]);
    }

    #[test]
    fn mono_f32_mono() {
        let f = AudioFrame::f32_interleaved(vec![0.25, -2.0], 8_000, 1).unwrap();
        let mut out = Vec::new();
        f.mono_into(&mut out);
        assert_eq!(out, vec![0.25, -2.0]);
    }

    #[test]
    fn mono_i16_stereo_interleaved() {
        let f = AudioFrame::i16_interleaved(vec![16384, 0, -32768, -16384], 8_000, 2).unwrap();
        let mut out = Vec::new();
        f.mono_into(&mut out);
        assert_eq!(out, vec![0.25, -0.75]);
    }

    #[test]
    fn mono_f32_stereo_interleaved() {
        let f = AudioFrame::f32_interleaved(vec![1.0, 0.0, 0.5, -0.5], 8_000, 2).unwrap();
        let mut out = Vec::new();
        f.mono_into(&mut out);
        assert_eq!(out, vec![0.5, 0.0]);
    }

    #[test]
    fn mono_i16_stereo_planar() {
        let f = AudioFrame::new(
            Samples::I16(vec![16384, -32768, 0, -16384]),
            SampleLayout::Planar,
            8_000,
            2,
        )
        .unwrap();
        let mut out = Vec::new();
        f.mono_into(&mut out);
        assert_eq!(out, vec![0.25, -0.75]);
    }

    #[test]
    fn mono_f32_stereo_planar() {
        let f = AudioFrame::new(
            Samples::F32(vec![1.0, 0.5, 0.0, -0.5]),
            SampleLayout::Planar,
            8_000,
            2,
        )
        .unwrap();
        let mut out = Vec::new();
        f.mono_into(&mut out);
        assert_eq!(out, vec![0.5, 0.0]);
    }

    #[test]
    fn mono_into_reuses_capacity() {
        let f = AudioFrame::i16_interleaved(vec![1; 960], 48_000, 2).unwrap();
        let mut out = Vec::with_capacity(480);
        let p = out.as_ptr();
        f.mono_into(&mut out);
        f.mono_into(&mut out);
        assert_eq!(out.len(), 480);
        assert_eq!(out.as_ptr(), p);
    }
}
