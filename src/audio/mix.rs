//! [`Timeline`] (every user's audio, resampled once), [`Mixdown`] (one output's channel
//! strategy, summing and limiter) and [`AudioMix`] (the two for a single output).
//!
//! # Channel modes
//!
//! * [`ChannelMode::Mono`]: one channel, the sum of the listed users (or of
//!   everyone when the list is empty).
//! * [`ChannelMode::LeftRight`]: two channels, `left`'s audio on channel 0
//!   and `right`'s on channel 1, nobody else.
//!
//! # Limiter
//!
//! The sum goes through a linked (all channels share one gain) peak limiter
//! with a ceiling of [`CEILING`] (0.98 FS):
//!
//! * **Look-ahead of one block without added latency**: the limiter needs to
//!   see the future, and the future is already in the tracks' ring buffers.
//!   For a block `[s, s+n)` the mixer consumes `[s, s+n)` and *peeks* (reads
//!   without consuming) the next [`BLOCK`] samples.
//! * **Gain computer**: per sample the required gain is
//!   `min(1, CEILING / peak)`. A backward pass turns it into an envelope that
//!   ramps down linearly at most 1/240 per sample (≤ 5 ms from 1 to 0), so
//!   every reduction starts early enough to be smooth yet is complete at the
//!   peak: the output never exceeds the ceiling (a final clamp only absorbs
//!   f32 rounding).
//! * **Release**: exponential towards 1 with a 150 ms time constant; within
//!   1e-5 of unity it snaps to exactly 1.0 (≈ 2 s after a 20 dB reduction).
//! * **Transparency**: while the gain is exactly 1.0 the samples are copied
//!   unchanged, so a single normal speaker passes bit-exact.
//!
//! Audio arriving after its look-ahead was peeked is still accepted; if it
//! makes the block louder than foreseen, the gain drops within the sample
//! (hard knee) instead of clipping.

use super::track::UserTrack;
use super::BLOCK;
use super::MIX_RATE;
use crate::model::audio::AudioFrame;

/// Output ceiling of the limiter (≈ −0.18 dBFS).
pub const CEILING: f32 = 0.98;
const ATTACK_STEP: f32 = 1.0 / 240.0;
const RELEASE_S: f32 = 0.15;
const SNAP: f32 = 1e-5;
const SPAN: usize = 2 * BLOCK;

pub use crate::model::audio::ChannelMode;

/// A new user would exceed the mixer's `max_users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many users: the mixer holds at most {max} tracks")]
pub struct TooManyUsers {
    /// The configured maximum.
    pub max: usize,
}

/// Route of a user: (to channel 0, to channel 1); `None` if ignored.
fn route(mode: &ChannelMode, user: &str) -> Option<(bool, bool)> {
    match mode {
        ChannelMode::Mono { users } => {
            (users.is_empty() || users.iter().any(|u| u == user)).then_some((true, false))
        }
        ChannelMode::LeftRight { left, right } => {
            let (l, r) = (left == user, right == user);
            (l || r).then_some((l, r))
        }
    }
}

#[derive(Debug, Clone)]
struct Limiter {
    /// 1 - gain.
    reduction: f32,
    release: f32,
    env: Vec<f32>,
}

impl Limiter {
    fn new() -> Self {
        Self {
            reduction: 0.0,
            release: (-1.0 / (RELEASE_S * MIX_RATE as f32)).exp(),
            env: vec![1.0; SPAN],
        }
    }

    /// `acc` holds `ch` channel buffers of `SPAN` samples each; the first `n`
    /// are the block, the next `BLOCK` the look-ahead. Writes `n` interleaved
    /// frames to `out`.
    fn process(&mut self, acc: &[f32], ch: usize, n: usize, out: &mut [f32]) {
        let span = n + BLOCK;
        for (k, e) in self.env[..span].iter_mut().enumerate() {
            let mut peak = 0.0f32;
            for c in 0..ch {
                peak = peak.max(acc[c * SPAN + k].abs());
            }
            *e = if peak > CEILING { CEILING / peak } else { 1.0 };
        }
        let mut a = 1.0f32;
        for e in self.env[..span].iter_mut().rev() {
            a = (a + ATTACK_STEP).min(*e);
            *e = a;
        }
        // Track the reduction d = 1 - gain: decaying d itself keeps full f32
        // precision near unity gain (1 - (1 - g) * r would stall there).
        let mut d = self.reduction;
        for (k, frame) in out.chunks_exact_mut(ch).take(n).enumerate() {
            if d > 0.0 {
                d *= self.release;
                if d < SNAP {
                    d = 0.0;
                }
            }
            d = d.max(1.0 - self.env[k]);
            let g = 1.0 - d;
            for (c, o) in frame.iter_mut().enumerate() {
                let x = acc[c * SPAN + k];
                *o = if d == 0.0 {
                    x
                } else {
                    let y = x * g;
                    if y.is_nan() {
                        0.0
                    } else {
                        y.clamp(-CEILING, CEILING)
                    }
                };
            }
        }
        self.reduction = d;
    }
}

/// Every user's audio on the mixer timeline: one [`UserTrack`] per user, so a user's audio is
/// resampled to 48 kHz and placed (drift steering) **once**, however many outputs mix it.
///
/// Outputs read it through their own [`Mixdown`] (channel strategy and limiter), which only
/// peeks; once every output has mixed a block, [`Timeline::consume`] releases it.
///
/// ```
/// use cloudmixer::audio::mix::{ChannelMode, Mixdown, Timeline};
/// use cloudmixer::model::audio::AudioFrame;
///
/// let mut timeline = Timeline::new(16);
/// let frame = AudioFrame::i16_interleaved(vec![8192; 160], 16_000, 1)?;
/// timeline.push("alice", &frame, 0.0, 0).unwrap(); // resampled once
///
/// // two outputs: a mono mix and alice on the left channel
/// let mut mono = Mixdown::new(ChannelMode::Mono { users: vec![] });
/// let mut lr = Mixdown::new(ChannelMode::LeftRight { left: "alice".into(), right: "bob".into() });
/// let (mut a, mut b) = (vec![0.0f32; 480], vec![0.0f32; 960]);
/// mono.mix(&timeline, 0, 480, &mut a);
/// lr.mix(&timeline, 0, 480, &mut b);
/// timeline.consume(480);
/// assert!((a[200] - 0.25).abs() < 1e-3);
/// assert_eq!((b[400], b[401]), (a[200], 0.0));
/// assert_eq!(timeline.user_count(), 1);
/// # Ok::<(), cloudmixer::model::audio::AudioFrameError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Timeline {
    max_users: usize,
    tracks: Vec<(String, UserTrack)>,
    mono: Vec<f32>,
}

impl Timeline {
    /// No users yet; at most `max_users` tracks will be created.
    pub fn new(max_users: usize) -> Self {
        Self {
            max_users,
            tracks: Vec::with_capacity(max_users.min(64)),
            mono: Vec::with_capacity(MIX_RATE as usize / 10),
        }
    }

    /// Adds one user's frame (down-mixed to mono, resampled to 48 kHz); `pos` = timeline
    /// position (48 kHz units) of its first sample, `read_pos` = first position not yet mixed.
    /// Returns late samples dropped. Creating a track for a new user allocates (once per
    /// user); the steady state does not (except if a frame is longer than any seen before).
    /// Beyond `max_users` new users are refused.
    pub fn push(
        &mut self,
        user: &str,
        frame: &AudioFrame,
        pos: f64,
        read_pos: u64,
    ) -> Result<usize, TooManyUsers> {
        let idx = match self.tracks.iter().position(|(n, _)| n == user) {
            Some(i) => i,
            None => {
                if self.tracks.len() >= self.max_users {
                    return Err(TooManyUsers {
                        max: self.max_users,
                    });
                }
                self.tracks.push((user.to_owned(), UserTrack::new()));
                self.tracks.len() - 1
            }
        };
        frame.mono_into(&mut self.mono);
        let track = &mut self.tracks[idx].1;
        Ok(track.write(&self.mono, frame.sample_rate(), pos, read_pos))
    }

    /// Releases everything before `until` (every output has mixed it): its slots are cleared
    /// and audio for it arriving later is late.
    pub fn consume(&mut self, until: u64) {
        for (_, t) in &mut self.tracks {
            t.consume(until);
        }
    }

    /// Total late samples dropped over all tracks.
    pub fn late_samples(&self) -> u64 {
        self.tracks.iter().map(|(_, t)| t.late_samples()).sum()
    }

    /// Smoothed placement error of `user`'s track in milliseconds (see
    /// [`UserTrack::offset_samples`]); `None` if the user has no track.
    pub fn user_offset_ms(&self, user: &str) -> Option<f64> {
        self.tracks
            .iter()
            .find(|(n, _)| n == user)
            .map(|(_, t)| t.offset_samples() * 1000.0 / f64::from(MIX_RATE))
    }

    /// Number of user tracks (resamplers) created so far.
    pub fn user_count(&self) -> usize {
        self.tracks.len()
    }
}

/// One output's mix of a [`Timeline`]: its channel strategy, summing and limiter.
#[derive(Debug, Clone)]
pub struct Mixdown {
    mode: ChannelMode,
    acc: Vec<f32>,
    limiter: Limiter,
}

impl Mixdown {
    /// A mix with the channel strategy `mode`.
    pub fn new(mode: ChannelMode) -> Self {
        let ch = channels_of(&mode);
        Self {
            mode,
            acc: vec![0.0; ch * SPAN],
            limiter: Limiter::new(),
        }
    }

    /// Output channels: 1 for [`ChannelMode::Mono`], 2 for
    /// [`ChannelMode::LeftRight`].
    pub fn channels(&self) -> usize {
        channels_of(&self.mode)
    }

    /// The channel strategy.
    pub fn mode(&self) -> &ChannelMode {
        &self.mode
    }

    /// Whether `user`'s audio is in this mix.
    pub fn carries(&self, user: &str) -> bool {
        route(&self.mode, user).is_some()
    }

    /// Mixes timeline `[start, start+len)` of `timeline` into `out` (interleaved,
    /// `len * channels` f32 in `-CEILING..=CEILING`) without consuming it (see
    /// [`Timeline::consume`]); returns the frames mixed. Users with no audio there contribute
    /// silence. If `out` is shorter than `len * channels`, only the whole frames that fit are
    /// mixed; samples of `out` beyond them are left untouched.
    pub fn mix(&mut self, timeline: &Timeline, start: u64, len: usize, out: &mut [f32]) -> usize {
        let ch = self.channels();
        let frames = len.min(out.len() / ch);
        let dup = matches!(&self.mode, ChannelMode::LeftRight { left, right } if left == right);
        let mut done = 0;
        while done < frames {
            let n = (frames - done).min(BLOCK);
            let s = start.saturating_add(done as u64);
            self.acc.fill(0.0);
            for (name, track) in &timeline.tracks {
                let Some((l, r)) = route(&self.mode, name) else {
                    continue;
                };
                let c = if l {
                    0
                } else if r {
                    1
                } else {
                    continue;
                };
                // the block and the limiter's look-ahead: both only read
                track.peek_add(s, &mut self.acc[c * SPAN..c * SPAN + n + BLOCK], 1.0);
            }
            if dup {
                let (a, b) = self.acc.split_at_mut(SPAN);
                b[..SPAN].copy_from_slice(a);
            }
            self.limiter
                .process(&self.acc, ch, n, &mut out[done * ch..(done + n) * ch]);
            done += n;
        }
        frames
    }

    /// Current limiter gain (1.0 = transparent).
    pub fn limiter_gain(&self) -> f32 {
        1.0 - self.limiter.reduction
    }
}

fn channels_of(mode: &ChannelMode) -> usize {
    match mode {
        ChannelMode::Mono { .. } => 1,
        ChannelMode::LeftRight { .. } => 2,
    }
}

/// The room's audio mixer for one output: a [`Timeline`] of the users the channel strategy
/// carries and its [`Mixdown`]. (Several outputs of one room share one [`Timeline`] and mix it
/// with a [`Mixdown`] each, as the mixer's audio stage does.)
///
/// ```
/// use cloudmixer::audio::mix::{AudioMix, ChannelMode};
/// use cloudmixer::model::audio::AudioFrame;
///
/// let mut mix = AudioMix::new(ChannelMode::Mono { users: vec![] }, 16);
/// // 10 ms of 16 kHz audio from "alice", captured at timeline position 0.
/// let frame = AudioFrame::i16_interleaved(vec![8192; 160], 16_000, 1)?;
/// assert_eq!(mix.push("alice", &frame, 0.0, 0).unwrap(), 0);
///
/// let mut out = vec![0.0f32; 480];
/// mix.mix(0, 480, &mut out);
/// assert!((out[200] - 0.25).abs() < 1e-3);
/// assert_eq!(mix.late_samples(), 0);
/// assert!(mix.user_offset_ms("alice").is_some());
/// # Ok::<(), cloudmixer::model::audio::AudioFrameError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AudioMix {
    timeline: Timeline,
    mixdown: Mixdown,
}

impl AudioMix {
    /// New mixer; at most `max_users` tracks will be created.
    pub fn new(mode: ChannelMode, max_users: usize) -> Self {
        Self {
            timeline: Timeline::new(max_users),
            mixdown: Mixdown::new(mode),
        }
    }

    /// Output channels: 1 for [`ChannelMode::Mono`], 2 for
    /// [`ChannelMode::LeftRight`].
    pub fn channels(&self) -> usize {
        self.mixdown.channels()
    }

    /// The channel strategy.
    pub fn mode(&self) -> &ChannelMode {
        self.mixdown.mode()
    }

    /// Adds one user's frame; `pos` = timeline position (48 kHz units) of its
    /// first sample, `read_pos` = first position not yet mixed. Users not in
    /// the mode's list are ignored (Ok, nothing stored). Returns late samples
    /// dropped. Creating a track for a new user allocates (once per user);
    /// the steady state does not (except if a frame is longer than any seen
    /// before). Beyond `max_users` new users are refused.
    pub fn push(
        &mut self,
        user: &str,
        frame: &AudioFrame,
        pos: f64,
        read_pos: u64,
    ) -> Result<usize, TooManyUsers> {
        if !self.mixdown.carries(user) {
            return Ok(0);
        }
        self.timeline.push(user, frame, pos, read_pos)
    }

    /// Mixes timeline `[start, start+len)` into `out` (interleaved,
    /// `len * channels` f32 in `-CEILING..=CEILING`), consuming it. Users with
    /// no audio there contribute silence. If `out` is shorter than
    /// `len * channels`, only the whole frames that fit are mixed (and
    /// consumed); samples of `out` beyond `len * channels` are left untouched.
    pub fn mix(&mut self, start: u64, len: usize, out: &mut [f32]) {
        let n = self.mixdown.mix(&self.timeline, start, len, out);
        if n > 0 {
            self.timeline.consume(start.saturating_add(n as u64));
        }
    }

    /// Total late samples dropped over all tracks.
    pub fn late_samples(&self) -> u64 {
        self.timeline.late_samples()
    }

    /// Smoothed placement error of `user`'s track in milliseconds (see
    /// [`UserTrack::offset_samples`]); `None` if the user has no track.
    pub fn user_offset_ms(&self, user: &str) -> Option<f64> {
        self.timeline.user_offset_ms(user)
    }

    /// Current limiter gain (1.0 = transparent).
    pub fn limiter_gain(&self) -> f32 {
        self.mixdown.limiter_gain()
    }

    /// Number of user tracks created so far.
    pub fn user_count(&self) -> usize {
        self.timeline.user_count()
    }
}

/// Converts f32 samples (full scale ±1.0) to i16 with saturation (no wrap);
/// NaN becomes 0. Converts `min(src.len(), dst.len())` samples.
///
/// ```
/// let mut d = [0i16; 4];
/// cloudmixer::audio::mix::to_i16(&[0.5, 1.5, -3.0, -1.0], &mut d);
/// assert_eq!(d, [16384, 32767, -32768, -32768]);
/// ```
pub fn to_i16(src: &[f32], dst: &mut [i16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        // `as` saturates and maps NaN to 0.
        *d = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testsig::*;

    fn frame48(x: &[f32]) -> AudioFrame {
        AudioFrame::f32_interleaved(x.to_vec(), 48_000, 1).unwrap()
    }

    #[test]
    fn nine_full_scale_users_are_limited() {
        let mut mix = AudioMix::new(ChannelMode::Mono { users: vec![] }, 10);
        let secs = 3usize;
        let n = 48_000 * secs;
        let sigs: Vec<Vec<f32>> = (0..9)
            .map(|i| sine(150.0 + 97.0 * i as f64, 48_000, 1.0, n))
            .collect();
        let names: Vec<String> = (0..9).map(|i| format!("u{i}")).collect();
        let total = n + 48_000 * 3;
        let mut out = vec![0.0f32; total];
        let delay = 2 * BLOCK;
        let mut read = 0usize;
        for b in 0..total / BLOCK {
            let p = b * BLOCK;
            if p + BLOCK <= n {
                for (s, name) in sigs.iter().zip(&names) {
                    let late = mix
                        .push(name, &frame48(&s[p..p + BLOCK]), p as f64, read as u64)
                        .unwrap();
                    assert_eq!(late, 0);
                }
            }
            if p >= delay {
                mix.mix(read as u64, BLOCK, &mut out[read..read + BLOCK]);
                read += BLOCK;
            }
        }
        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let mut min_gain_db = 0.0f64;
        let mut checked = 0;
        // Unlimited sum (48 kHz passes the resampler exactly).
        for (k, &o) in out[..n - BLOCK].iter().enumerate() {
            let sum: f32 = sigs.iter().map(|s| s[k]).sum();
            if sum.abs() > 0.5 {
                assert_eq!(o.signum(), sum.signum(), "sign flip at {k}");
                checked += 1;
                min_gain_db = min_gain_db.min(20.0 * (o.abs() / sum.abs()).log10() as f64);
            }
        }
        let max_sum = (0..n)
            .map(|k| sigs.iter().map(|s| s[k]).sum::<f32>().abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "9 users: unlimited peak {max_sum:.3}, output peak {peak:.6}, deepest gain {min_gain_db:.1} dB, {checked} signs checked"
        );
        assert!(peak <= CEILING, "peak {peak}");
        assert!(peak > 0.9);
        assert!(max_sum > 4.0);
        assert!(checked > 10_000);
        // Recovered after the 3 s of silence.
        assert_eq!(mix.limiter_gain(), 1.0);
        // And a normal speaker now passes unchanged.
        let tone = sine(700.0, 48_000, 0.5, 4800);
        let base = read;
        for (i, c) in tone.chunks_exact(BLOCK).enumerate() {
            mix.push(
                "u0",
                &frame48(c),
                (base + (i + 2) * BLOCK) as f64,
                read as u64,
            )
            .unwrap();
        }
        let mut o2 = vec![0.0f32; 4800 + 4 * BLOCK];
        for (i, b) in o2.chunks_exact_mut(BLOCK).enumerate() {
            mix.mix((base + i * BLOCK) as u64, BLOCK, b);
        }
        assert_eq!(&o2[2 * BLOCK..2 * BLOCK + 4800 - 16], &tone[..4800 - 16]);
    }

    #[test]
    fn left_right_separation() {
        let mode = ChannelMode::LeftRight {
            left: "a".into(),
            right: "b".into(),
        };
        let mut mix = AudioMix::new(mode, 4);
        assert_eq!(mix.channels(), 2);
        let a = sine(440.0, 16_000, 0.5, 32_000);
        let b = sine(1000.0, 16_000, 0.5, 32_000);
        let c = sine(2500.0, 16_000, 0.5, 32_000);
        let mut out = vec![0.0f32; 2 * 96_000];
        let mut read = 0u64;
        for i in 0..200 {
            let pos = (i * 480) as f64;
            for (name, s) in [("a", &a), ("b", &b), ("c", &c)] {
                let f = AudioFrame::f32_interleaved(s[i * 160..(i + 1) * 160].to_vec(), 16_000, 1)
                    .unwrap();
                mix.push(name, &f, pos, read).unwrap();
            }
            if i >= 2 {
                let s = read as usize * 2;
                mix.mix(read, 480, &mut out[s..s + 960]);
                read += 480;
            }
        }
        assert!(mix.user_offset_ms("c").is_none(), "unlisted user ignored");
        assert_eq!(mix.user_count(), 2);
        let (l, r): (Vec<f32>, Vec<f32>) = out[2 * 4800..2 * 91_200]
            .chunks_exact(2)
            .map(|f| (f[0], f[1]))
            .unzip();
        let hann = |x: &[f32]| -> Vec<f32> {
            let n = x.len() as f32;
            x.iter()
                .enumerate()
                .map(|(i, v)| v * (0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n).cos()))
                .collect()
        };
        let (l, r) = (hann(&l), hann(&r));
        let sep = |x: &[f32], want: f64, other: f64| {
            10.0 * (goertzel(x, want, 48_000) / goertzel(x, other, 48_000)).log10()
        };
        let sl = sep(&l, 440.0, 1000.0);
        let sr = sep(&r, 1000.0, 440.0);
        let sc = sep(&l, 440.0, 2500.0).min(sep(&r, 1000.0, 2500.0));
        eprintln!("L/R separation: left {sl:.1} dB, right {sr:.1} dB, vs unlisted {sc:.1} dB");
        assert!(sl >= 30.0 && sr >= 30.0 && sc >= 30.0);
    }

    #[test]
    fn join_and_leave() {
        let mut mix = AudioMix::new(ChannelMode::Mono { users: vec![] }, 4);
        let tone = sine(600.0, 16_000, 0.4, 16_000 * 3);
        let total_blocks = 800; // 8 s
        let mut out = Vec::new();
        let mut block = [0.0f32; BLOCK];
        let mut read = 0u64;
        for i in 0..total_blocks {
            let t_ms = i * 10;
            if (3000..6000).contains(&t_ms) {
                let k = (t_ms - 3000) / 10;
                let f = AudioFrame::i16_interleaved(
                    tone[k * 160..(k + 1) * 160]
                        .iter()
                        .map(|&x| (x * 32768.0) as i16)
                        .collect(),
                    16_000,
                    1,
                )
                .unwrap();
                mix.push("late-joiner", &f, (i * BLOCK) as f64, read)
                    .unwrap();
            }
            if i >= 4 {
                block.fill(7.0);
                mix.mix(read, BLOCK, &mut block);
                out.extend_from_slice(&block);
                read += BLOCK as u64;
            }
        }
        while (out.len()) < total_blocks * BLOCK {
            mix.mix(read, BLOCK, &mut block);
            out.extend_from_slice(&block);
            read += BLOCK as u64;
        }
        assert_eq!(out.len(), total_blocks * BLOCK);
        let s3 = 3 * 48_000;
        let s6 = 6 * 48_000;
        assert!(out[..s3].iter().all(|&x| x == 0.0), "silence before 3 s");
        let tail = out[s6..]
            .iter()
            .rposition(|&x| x != 0.0)
            .map_or(0, |p| p + 1);
        eprintln!("join/leave: non-zero tail after 6 s: {tail} samples");
        assert!(tail <= 5 * 48, "tail {tail}");
        for b in out[s3 + 480..s6 - 480].chunks_exact(BLOCK) {
            let rms = (b.iter().map(|x| x * x).sum::<f32>() / BLOCK as f32).sqrt();
            assert!((rms - 0.4 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
        }
        assert!(out[s3..s3 + 20].iter().any(|&x| x != 0.0));
        assert_eq!(mix.late_samples(), 0);
        assert_eq!(mix.limiter_gain(), 1.0);
    }

    #[test]
    fn unlisted_users_are_ignored() {
        let mode = ChannelMode::Mono {
            users: vec!["a".into()],
        };
        let mut mix = AudioMix::new(mode, 1);
        let x = frame48(&[0.25; 480]);
        assert_eq!(mix.push("b", &x, 0.0, 0), Ok(0));
        assert_eq!(mix.push("a", &x, 0.0, 0), Ok(0));
        assert_eq!(mix.push("b", &x, 0.0, 0), Ok(0)); // not refused either
        assert_eq!(mix.user_count(), 1);
        assert!(mix.user_offset_ms("b").is_none());
        let mut out = [0.0f32; 480];
        mix.mix(0, 480, &mut out);
        assert!(out[..464].iter().all(|&v| v == 0.25));
    }

    #[test]
    fn too_many_users() {
        let mut mix = AudioMix::new(ChannelMode::Mono { users: vec![] }, 2);
        let x = frame48(&[0.1; 480]);
        mix.push("a", &x, 0.0, 0).unwrap();
        mix.push("b", &x, 0.0, 0).unwrap();
        assert_eq!(mix.push("c", &x, 0.0, 0), Err(TooManyUsers { max: 2 }));
        assert!(mix.push("a", &x, 480.0, 0).is_ok());
    }

    #[test]
    fn minus_6_dbfs_passes_unchanged() {
        let mut mix = AudioMix::new(ChannelMode::Mono { users: vec![] }, 4);
        let amp = 10f32.powf(-6.0 / 20.0);
        let tone = sine(997.0, 48_000, amp, 48_000);
        let mut out = vec![0.0f32; 48_000];
        let mut read = 0usize;
        for (i, c) in tone.chunks_exact(BLOCK).enumerate() {
            mix.push("solo", &frame48(c), (i * BLOCK) as f64, read as u64)
                .unwrap();
            if i >= 1 {
                mix.mix(read as u64, BLOCK, &mut out[read..read + BLOCK]);
                read += BLOCK;
                assert_eq!(mix.limiter_gain(), 1.0);
            }
        }
        assert_eq!(&out[..read], &tone[..read]);
    }

    #[test]
    fn short_output_and_empty_mix() {
        let mut mix = AudioMix::new(
            ChannelMode::LeftRight {
                left: "x".into(),
                right: "x".into(),
            },
            2,
        );
        mix.push("x", &frame48(&[0.5; 480]), 0.0, 0).unwrap();
        let mut out = [9.0f32; 7];
        mix.mix(0, 100, &mut out); // only 3 frames fit
        assert_eq!(&out, &[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 9.0]);
        mix.mix(0, 0, &mut []);
    }

    /// Outputs mixing one shared [`Timeline`] get exactly what a mix of their own (its own
    /// tracks, the resampling repeated) would give, whatever users each carries.
    #[test]
    fn shared_timeline_matches_a_mix_per_output() {
        let modes = [
            ChannelMode::Mono { users: vec![] },
            ChannelMode::LeftRight {
                left: "a".into(),
                right: "b".into(),
            },
            ChannelMode::Mono {
                users: vec!["c".into()],
            },
        ];
        let mut own: Vec<AudioMix> = modes.iter().map(|m| AudioMix::new(m.clone(), 4)).collect();
        let mut timeline = Timeline::new(4);
        let mut shared: Vec<Mixdown> = modes.iter().map(|m| Mixdown::new(m.clone())).collect();
        let users = [
            ("a", 16_000u32, 440.0),
            ("b", 48_000, 1000.0),
            ("c", 32_000, 700.0),
        ];
        let sigs: Vec<Vec<f32>> = users
            .iter()
            .map(|&(_, r, f)| sine(f, r, 0.7, r as usize * 4))
            .collect();
        let mut lcg = Lcg(7);
        let mut read = 0u64;
        let mut min_gain = 1.0f32;
        for i in 0..400usize {
            for (&(name, rate, _), s) in users.iter().zip(&sigs) {
                // b pauses 0.5 s (a jump), everyone's stamps jitter ±2 ms
                if name == "b" && (150..200).contains(&i) {
                    continue;
                }
                let n = rate as usize / 100;
                let f =
                    AudioFrame::f32_interleaved(s[i * n..(i + 1) * n].to_vec(), rate, 1).unwrap();
                let pos = (i * BLOCK) as f64 + (lcg.next_f64() * 4.0 - 2.0) * 48.0;
                let late: Vec<usize> = own
                    .iter_mut()
                    .map(|m| m.push(name, &f, pos, read).unwrap())
                    .collect();
                let l = timeline.push(name, &f, pos, read).unwrap();
                assert!(late.iter().all(|&x| x == 0 || x == l));
            }
            if i >= 3 {
                for (m, d) in own.iter_mut().zip(&mut shared) {
                    let ch = m.channels();
                    let (mut a, mut b) = (vec![0.0f32; BLOCK * ch], vec![0.0f32; BLOCK * ch]);
                    m.mix(read, BLOCK, &mut a);
                    assert_eq!(d.mix(&timeline, read, BLOCK, &mut b), BLOCK);
                    assert_eq!(a, b, "block at {read}, {:?}", d.mode());
                    assert_eq!(m.limiter_gain(), d.limiter_gain());
                    min_gain = min_gain.min(d.limiter_gain());
                }
                timeline.consume(read + BLOCK as u64);
                read += BLOCK as u64;
            }
        }
        // the sum of three 0.7 sines was limited: the limiters ran (and alike, above)
        assert!(min_gain < 0.7, "{min_gain}");
        assert_eq!(timeline.user_count(), 3);
        assert_eq!(
            own.iter().map(AudioMix::user_count).sum::<usize>(),
            3 + 2 + 1
        );
        assert_eq!(timeline.late_samples(), own[0].late_samples());
    }

    #[test]
    fn i16_saturates() {
        let mut d = [1i16; 7];
        to_i16(&[2.0, -2.0, 0.5, f32::NAN, 1.0, -1.0], &mut d);
        assert_eq!(d, [32767, -32768, 16384, 0, 32767, -32768, 1]);
    }
}
