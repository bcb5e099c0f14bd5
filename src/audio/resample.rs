//! [`Resampler`]: streaming mono resampler from any rate in 8000..=48000 Hz to
//! [`MIX_RATE`] with a variable ratio for clock-drift correction.
//!
//! Design: windowed-sinc interpolation, 16 taps per side (32 in all), Kaiser
//! window (β = 8, ≈ 80 dB side lobes), cutoff 0.45 × the *input* rate (90 %
//! of the input Nyquist, which is always the lower one because inputs are at
//! most 48 kHz; at 48 kHz with the maximal +2 % adjust the output Nyquist is
//! 0.49 × the input rate, still above the cutoff's pass band). The kernel is
//! tabulated at 256 fractional phases (plus one guard row), each row
//! normalised to unity DC gain, and the output linearly interpolates between
//! the two neighbouring rows. The table is built once per process and shared.
//!
//! Timing: output sample `k` after a [`Resampler::reset`] corresponds to input
//! time `phase + Σ step` (input-sample units), so output `0` is aligned with
//! input sample `0`. Because the kernel needs 16 future input samples, outputs
//! are *emitted* 16 input samples late; [`Resampler::flush`] emits the rest.

use super::MIX_RATE;
use crate::model::audio::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use std::sync::OnceLock;

/// Taps on each side of the kernel centre.
pub const TAPS_PER_SIDE: usize = 16;
const WIDTH: usize = 2 * TAPS_PER_SIDE;
/// Number of tabulated fractional phases.
pub const PHASES: usize = 256;
/// Largest magnitude accepted by [`Resampler::set_adjust`].
pub const MAX_ADJUST: f64 = 0.02;
const CUTOFF: f64 = 0.45; // cycles per input sample
const KAISER_BETA: f64 = 8.0;

/// The input rate is outside 8000..=48000 Hz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported resampler input rate {0} Hz (expected 8000..=48000)")]
pub struct UnsupportedRate(pub u32);

/// Streaming mono resampler to 48 kHz with drift adjustment.
///
/// ```
/// use cloudmixer::audio::resample::Resampler;
///
/// let mut rs = Resampler::new(16_000)?;
/// let input: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
/// let mut out = Vec::new();
/// rs.process(&input, &mut |y| out.push(y));
/// rs.flush(&mut |y| out.push(y));
/// assert_eq!(out.len(), 4800); // 100 ms at 48 kHz
///
/// rs.set_adjust(0.01); // consume input 1 % faster: fewer outputs
/// let mut n = 0;
/// rs.process(&input, &mut |_| n += 1);
/// rs.flush(&mut |_| n += 1);
/// assert!((n as f64 - 4800.0 / 1.01).abs() <= 2.0);
/// # Ok::<(), cloudmixer::audio::resample::UnsupportedRate>(())
/// ```
#[derive(Debug, Clone)]
pub struct Resampler {
    in_rate: u32,
    base_step: f64,
    adjust: f64,
    step: f64,
    /// Double ring: sample `i` is stored at `head` and `head + WIDTH`, so the
    /// last `WIDTH` inputs are always the contiguous `hist[head..head+WIDTH]`.
    hist: [f32; 2 * WIDTH],
    head: usize,
    /// Position of the next output relative to the centre of the current
    /// window (`0 <= u < 1` means it can be computed now).
    u: f64,
    table: &'static [f32],
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn kernel(tau: f64) -> f64 {
    let half = TAPS_PER_SIDE as f64;
    if tau.abs() > half {
        return 0.0;
    }
    let x = 2.0 * CUTOFF * tau;
    let sinc = if x.abs() < 1e-12 {
        1.0
    } else {
        (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
    };
    let r = tau / half;
    let w = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(KAISER_BETA);
    2.0 * CUTOFF * sinc * w
}

/// Rows `p = 0..=PHASES` for fractional position `u = p / PHASES`; row entry
/// `j` weights window sample `j` (oldest first).
fn table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Vec::with_capacity((PHASES + 1) * WIDTH);
        let mut row = [0f64; WIDTH];
        for p in 0..=PHASES {
            let u = p as f64 / PHASES as f64;
            for (j, c) in row.iter_mut().enumerate() {
                *c = kernel(u + (TAPS_PER_SIDE as f64 - 1.0) - j as f64);
            }
            let sum: f64 = row.iter().sum();
            t.extend(row.iter().map(|c| (c / sum) as f32));
        }
        t
    })
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Default for Resampler {
    /// A 48 kHz (exact pass-through) resampler.
    fn default() -> Self {
        let mut r = Self {
            in_rate: MIX_RATE,
            base_step: 1.0,
            adjust: 0.0,
            step: 1.0,
            hist: [0.0; 2 * WIDTH],
            head: 0,
            u: 0.0,
            table: table(),
        };
        r.reset();
        r
    }
}

impl Resampler {
    /// New resampler for mono input at `in_rate` Hz (8000..=48000), with
    /// adjust 0 and empty (silent) history.
    pub fn new(in_rate: u32) -> Result<Self, UnsupportedRate> {
        let mut r = Self::default();
        r.set_rate(in_rate)?;
        Ok(r)
    }

    /// Changes the input rate and [`reset`](Self::reset)s (adjust is kept).
    pub fn set_rate(&mut self, in_rate: u32) -> Result<(), UnsupportedRate> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&in_rate) {
            return Err(UnsupportedRate(in_rate));
        }
        self.in_rate = in_rate;
        self.base_step = f64::from(in_rate) / f64::from(MIX_RATE);
        self.set_adjust(self.adjust);
        self.reset();
        Ok(())
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Sets the relative ratio adjustment: each output sample advances the
    /// input by `(in_rate / 48000) * (1 + rel)` samples. `rel` is clamped to
    /// ±[`MAX_ADJUST`]; a non-finite value counts as 0. Positive `rel`
    /// consumes input faster, producing fewer output samples.
    pub fn set_adjust(&mut self, rel: f64) {
        let rel = if rel.is_finite() {
            rel.clamp(-MAX_ADJUST, MAX_ADJUST)
        } else {
            0.0
        };
        self.adjust = rel;
        self.step = self.base_step * (1.0 + rel);
    }

    /// Current (clamped) adjustment.
    pub fn adjust(&self) -> f64 {
        self.adjust
    }

    /// Input samples advanced per output sample.
    pub fn step(&self) -> f64 {
        self.step
    }

    /// Clears the history (to silence) and restarts timing: the next output
    /// corresponds to the next input sample.
    pub fn reset(&mut self) {
        self.reset_with_phase(0.0);
    }

    /// Like [`reset`](Self::reset), but the next output corresponds to input
    /// time `phase` (in input samples, clamped to `0..=1`) after the next
    /// input sample. Used to align outputs to integer timeline slots.
    pub fn reset_with_phase(&mut self, phase: f64) {
        let phase = if phase.is_finite() {
            phase.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.hist = [0.0; 2 * WIDTH];
        self.head = 0;
        self.u = phase + TAPS_PER_SIDE as f64 + 1.0;
    }

    /// Distance, in output samples at the current step, from the next output
    /// sample to be emitted to the time of the next input sample. Adding it to
    /// the timeline position of the next output gives the position where the
    /// next input sample will land. Negative right after a phased reset.
    pub fn lag_out(&self) -> f64 {
        (TAPS_PER_SIDE as f64 + 1.0 - self.u) / self.step
    }

    /// Feeds input samples; calls `out` for every output sample that can be
    /// computed. Allocation-free.
    pub fn process(&mut self, input: &[f32], out: &mut impl FnMut(f32)) {
        for &x in input {
            self.push(x, out);
        }
    }

    /// Emits every pending output whose time lies before the end of the input
    /// seen so far, then [`reset`](Self::reset)s.
    pub fn flush(&mut self, out: &mut impl FnMut(f32)) {
        for _ in 0..TAPS_PER_SIDE {
            self.push(0.0, out);
        }
        self.reset();
    }

    #[inline]
    fn push(&mut self, x: f32, out: &mut impl FnMut(f32)) {
        self.hist[self.head] = x;
        self.hist[self.head + WIDTH] = x;
        self.head = (self.head + 1) % WIDTH;
        self.u -= 1.0;
        while self.u < 1.0 {
            let win = &self.hist[self.head..self.head + WIDTH];
            let y = if self.u == 0.0 && self.step == 1.0 {
                // Exact pass-through: phase 0 at unity ratio.
                win[TAPS_PER_SIDE - 1]
            } else {
                let pos = self.u.max(0.0) * PHASES as f64;
                let p = (pos as usize).min(PHASES - 1);
                let a = (pos - p as f64) as f32;
                let r0 = &self.table[p * WIDTH..(p + 1) * WIDTH];
                let r1 = &self.table[(p + 1) * WIDTH..(p + 2) * WIDTH];
                let y0 = dot(r0, win);
                let y1 = dot(r1, win);
                y0 + a * (y1 - y0)
            };
            out(y);
            self.u += self.step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testsig::*;

    fn run(rate: u32, input: &[f32], adjust: f64) -> Vec<f32> {
        let mut rs = Resampler::new(rate).unwrap();
        rs.set_adjust(adjust);
        let mut out = Vec::new();
        // Feed in uneven chunks to exercise streaming.
        let mut i = 0;
        let mut k = 1;
        while i < input.len() {
            let n = (k * 37 % 500 + 1).min(input.len() - i);
            rs.process(&input[i..i + n], &mut |y| out.push(y));
            i += n;
            k += 1;
        }
        rs.flush(&mut |y| out.push(y));
        out
    }

    #[test]
    fn rejects_bad_rates() {
        assert_eq!(Resampler::new(0).unwrap_err(), UnsupportedRate(0));
        assert!(Resampler::new(96_000).is_err());
        let mut r = Resampler::new(8_000).unwrap();
        assert!(r.set_rate(7_000).is_err());
        assert_eq!(r.in_rate(), 8_000);
    }

    #[test]
    fn sine_quality_all_rates() {
        for rate in [8_000u32, 16_000, 44_100, 48_000] {
            let amp = 0.7;
            let input = sine(1000.0, rate, amp, rate as usize); // 1 s
            let out = run(rate, &input, 0.0);
            // Skip start-up and flush edges.
            let seg = &out[4800..4800 + 38_400];
            let zc = zero_crossings(seg) as f64 / (seg.len() as f64 / 48_000.0) / 2.0;
            let fit = tone_fit(seg, 1000.0, 48_000);
            let amp_db = 20.0 * (fit.amplitude / amp as f64).log10();
            let spur_db = 10.0 * (fit.residual_energy / fit.tone_energy).log10();
            eprintln!(
                "{rate} Hz: zc-freq {zc:.2} Hz, amplitude {amp_db:+.4} dB, spurious {spur_db:.1} dB"
            );
            assert!((zc - 1000.0).abs() < 1.0, "{rate}: freq {zc}");
            assert!(amp_db.abs() < 0.5, "{rate}: amplitude {amp_db} dB");
            assert!(spur_db < -50.0, "{rate}: spurious {spur_db} dB");
        }
    }

    #[test]
    fn pass_through_at_48k() {
        let input = sine(1234.5, 48_000, 0.9, 10_000);
        let out = run(48_000, &input, 0.0);
        assert_eq!(out.len(), input.len());
        assert_eq!(out, input, "exact pass-through");
    }

    #[test]
    fn output_counts() {
        for rate in [8_000u32, 11_025, 16_000, 44_100, 48_000] {
            let n = 24_007usize;
            let input = vec![0.1f32; n];
            let mut got = [0.0f64; 3];
            for (g, adj) in got.iter_mut().zip([0.0, 0.01, -0.01]) {
                *g = run(rate, &input, adj).len() as f64;
                let want = n as f64 * 48_000.0 / rate as f64 / (1.0 + adj);
                assert!(
                    (*g - want).abs() <= 2.0,
                    "rate {rate} adj {adj}: {g} vs {want}"
                );
            }
            let [base, fast, slow] = got;
            // rel = +0.01 gives base/1.01 outputs, rel = -0.01 gives base/0.99.
            assert!((base - fast - base * 0.01 / 1.01).abs() <= 3.0);
            assert!((slow - base - base * 0.01 / 0.99).abs() <= 3.0);
        }
    }

    #[test]
    fn adjust_is_clamped_and_sanitised() {
        let mut r = Resampler::new(48_000).unwrap();
        r.set_adjust(0.5);
        assert_eq!(r.adjust(), MAX_ADJUST);
        r.set_adjust(-0.5);
        assert_eq!(r.adjust(), -MAX_ADJUST);
        r.set_adjust(f64::NAN);
        assert_eq!(r.adjust(), 0.0);
        assert_eq!(r.step(), 1.0);
    }

    #[test]
    fn reset_clears_history() {
        let mut r = Resampler::new(16_000).unwrap();
        r.process(&[1.0; 100], &mut |_| {});
        r.reset();
        let mut out = Vec::new();
        r.process(&[0.0; 100], &mut |y| out.push(y));
        assert!(out.iter().all(|&y| y == 0.0));
    }

    #[test]
    fn dc_gain_is_unity() {
        let out = run(44_100, &vec![0.5; 20_000], 0.013);
        for &y in &out[200..out.len() - 200] {
            assert!((y - 0.5).abs() < 1e-5, "{y}");
        }
    }
}
