//! [`UserTrack`]: one user's audio placed on the mixer timeline.
//!
//! Positions are counted in 48 kHz samples since the mixer started. Audio is
//! resampled to 48 kHz and stored in a fixed ring of [`RING_SIZE`] samples
//! (≈ 2.7 s), allocated once in [`UserTrack::new`].
//!
//! # Placement and drift control
//!
//! The track keeps a write cursor `W`, the timeline slot of the next resampled
//! sample. For each chunk it computes the placement error
//! `e = (W + resampler lag) − pos`, i.e. where the chunk's first sample would
//! land minus where its timestamp says it belongs.
//!
//! * **Jump** on the first chunk, after a sample-rate change, or when
//!   `|e| > 100 ms` (gap, pause, timestamp jump): the resampler's pending tail
//!   is flushed at the old cursor, then `W = ceil(pos)`, the resampler is reset
//!   with a fractional phase so the first sample lands exactly at `pos`, and
//!   the controller state is cleared. Skipped positions stay silent.
//! * **Steer** otherwise: `e` is smoothed by an exponential moving average
//!   (time constant 0.5 s, weighted by chunk duration), and a PI controller
//!   sets the resampler's ratio adjust
//!   `rel = 1.5/s · ē + 0.4/s² · ∫ē dt` (ē in seconds), clamped to ±2 %. A
//!   positive error (audio landing late) makes the resampler consume input
//!   faster, so `W` advances slower and `e` shrinks. The integral term removes
//!   the steady-state offset a constant clock drift would otherwise leave.
//!   Measured (tests): a constant ±1 % drift peaks at ≈ 7.3 ms offset and
//!   converges to 0; ±3 ms timestamp jitter makes the ratio wobble by at most
//!   ≈ 0.1 % (below the pitch discrimination threshold) with no jumps.
//!
//! # Lateness
//!
//! The track remembers how far the mixer has consumed the timeline (the
//! maximum of the `read_pos` given to [`UserTrack::write`] and of the ends of
//! [`UserTrack::read_add`]). Resampled output landing before that point, or
//! more than [`RING_SIZE`] samples after it, is dropped and counted as late.
//! The resampler tail flushed on a jump is dropped silently when it is too
//! old (it is not the sender's lateness).

use super::resample::{Resampler, MAX_ADJUST};
use super::MIX_RATE;
use crate::model::audio::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// Ring capacity in 48 kHz samples (2^17 ≈ 2.73 s).
pub const RING_SIZE: usize = 1 << 17;
const MASK: u64 = RING_SIZE as u64 - 1;
/// Placement error beyond which the track jumps instead of steering (100 ms).
pub const JUMP_THRESHOLD: f64 = MIX_RATE as f64 * 0.1;
const KP: f64 = 1.5;
const KI: f64 = 0.4;
const EMA_TAU_S: f64 = 0.5;

/// One user's audio on the mixer timeline.
///
/// ```
/// use cloudmixer::audio::track::UserTrack;
///
/// let mut t = UserTrack::new();
/// // 10 ms of a 16 kHz signal whose first sample belongs at position 4800.
/// let chunk = vec![0.25f32; 160];
/// assert_eq!(t.write(&chunk, 16_000, 4800.0, 0), 0); // nothing late
///
/// let mut out = vec![0.0f32; 480];
/// t.read_add(4200, &mut out, 1.0); // 4200..4680: before the audio
/// assert!(out.iter().all(|&x| x == 0.0));
/// t.read_add(4800, &mut out, 1.0); // where the chunk was placed
/// assert!(out[100..300].iter().all(|&x| (x - 0.25).abs() < 1e-3));
///
/// // A chunk that would land before what was already mixed is late.
/// assert_eq!(t.write(&chunk, 16_000, 0.0, 5280), 480);
/// assert_eq!(t.late_samples(), 480);
/// ```
#[derive(Debug, Clone)]
pub struct UserTrack {
    ring: Vec<f32>,
    /// First timeline position not yet consumed by the mixer.
    consumed: u64,
    /// Timeline slot of the next resampled sample.
    w: i64,
    rate: u32,
    started: bool,
    resampler: Resampler,
    ema: f64,
    integral: f64,
    last_error: f64,
    late: u64,
    resyncs: u64,
}

impl Default for UserTrack {
    fn default() -> Self {
        Self::new()
    }
}

/// Stores one resampled sample at slot `*w` and advances `*w`.
#[inline]
fn put(ring: &mut [f32], w: &mut i64, consumed: u64, late: &mut usize, y: f32) {
    let p = *w;
    *w = p.saturating_add(1);
    let Ok(p) = u64::try_from(p) else {
        *late += 1;
        return;
    };
    if p < consumed || p - consumed >= RING_SIZE as u64 {
        *late += 1;
        return;
    }
    let y = if y.is_finite() { y } else { 0.0 };
    ring[(p & MASK) as usize] += y;
}

impl UserTrack {
    /// Empty track; allocates the ring (512 KiB) once.
    pub fn new() -> Self {
        Self {
            ring: vec![0.0; RING_SIZE],
            consumed: 0,
            w: 0,
            rate: MIX_RATE,
            started: false,
            resampler: Resampler::default(),
            ema: 0.0,
            integral: 0.0,
            last_error: 0.0,
            late: 0,
            resyncs: 0,
        }
    }

    /// Adds a mono chunk at `rate` Hz whose first sample was captured at
    /// timeline position `pos` (48 kHz units, fractional). `read_pos` is the
    /// first position not yet mixed. Returns the number of resampled samples
    /// dropped because they landed before `read_pos` (or more than
    /// [`RING_SIZE`] after it); they are also added to
    /// [`late_samples`](Self::late_samples).
    ///
    /// An empty chunk, a non-finite `pos` or a rate outside 8000..=48000 is
    /// ignored (returns 0). A chunk that ends before `read_pos` is counted as
    /// late and changes nothing else.
    pub fn write(&mut self, mono: &[f32], rate: u32, pos: f64, read_pos: u64) -> usize {
        if mono.is_empty()
            || !pos.is_finite()
            || !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate)
        {
            return 0;
        }
        self.advance_to(read_pos);
        let out_len = mono.len() as f64 * f64::from(MIX_RATE) / f64::from(rate);
        if pos + out_len <= self.consumed as f64 {
            let n = out_len.round() as usize;
            self.late = self.late.saturating_add(n as u64);
            return n;
        }

        let err = if self.started && rate == self.rate {
            self.w as f64 + self.resampler.lag_out() - pos
        } else {
            f64::NAN
        };
        if err.abs() <= JUMP_THRESHOLD {
            self.steer(err, mono.len() as f64 / f64::from(rate));
        } else {
            self.jump(rate, pos);
        }

        let ring = &mut self.ring;
        let w = &mut self.w;
        let consumed = self.consumed;
        let mut late = 0usize;
        self.resampler
            .process(mono, &mut |y| put(ring, w, consumed, &mut late, y));
        self.late = self.late.saturating_add(late as u64);
        late
    }

    fn steer(&mut self, err: f64, dt: f64) {
        self.last_error = err;
        let alpha = (dt / EMA_TAU_S).min(1.0);
        self.ema += alpha * (err - self.ema);
        let e_s = self.ema / f64::from(MIX_RATE);
        let lim = MAX_ADJUST / KI;
        self.integral = (self.integral + e_s * dt).clamp(-lim, lim);
        self.resampler.set_adjust(KP * e_s + KI * self.integral);
    }

    fn jump(&mut self, rate: u32, pos: f64) {
        if self.started {
            let ring = &mut self.ring;
            let w = &mut self.w;
            let consumed = self.consumed;
            let mut stale = 0usize;
            self.resampler
                .flush(&mut |y| put(ring, w, consumed, &mut stale, y));
        }
        if self.resampler.set_rate(rate).is_err() {
            return; // unreachable: validated by the caller
        }
        self.rate = rate;
        self.resampler.set_adjust(0.0);
        let slot = pos.ceil().clamp(i64::MIN as f64, i64::MAX as f64);
        self.w = slot as i64;
        let step = self.resampler.step();
        self.resampler.reset_with_phase((slot - pos) * step);
        self.ema = 0.0;
        self.integral = 0.0;
        self.last_error = self.w as f64 + self.resampler.lag_out() - pos;
        self.started = true;
        self.resyncs += 1;
    }

    /// Marks everything before `pos` as consumed, clearing skipped slots.
    fn advance_to(&mut self, pos: u64) {
        if pos <= self.consumed {
            return;
        }
        let end = pos.min(self.consumed.saturating_add(RING_SIZE as u64));
        for p in self.consumed..end {
            self.ring[(p & MASK) as usize] = 0.0;
        }
        self.consumed = pos;
    }

    /// Marks everything before `pos` as consumed (mixed by every output that reads the track
    /// with [`peek_add`](Self::peek_add)), clearing it: audio landing there later is late.
    pub fn consume(&mut self, pos: u64) {
        self.advance_to(pos);
    }

    /// Adds the samples at `[start, start + out.len())` times `gain` into
    /// `out` and clears them (a slot is never read twice; everything before
    /// `start` is considered consumed too). Positions never written, or
    /// already consumed, read as silence.
    pub fn read_add(&mut self, start: u64, out: &mut [f32], gain: f32) {
        self.advance_to(start);
        let end = start.saturating_add(out.len() as u64);
        let lo = self.consumed.max(start);
        let hi = end.min(self.consumed.saturating_add(RING_SIZE as u64));
        for p in lo..hi {
            let slot = &mut self.ring[(p & MASK) as usize];
            out[(p - start) as usize] += *slot * gain;
            *slot = 0.0;
        }
        self.consumed = self.consumed.max(end);
    }

    /// Like [`read_add`](Self::read_add) but without consuming anything (used
    /// for the limiter's look-ahead).
    pub fn peek_add(&self, start: u64, out: &mut [f32], gain: f32) {
        let end = start.saturating_add(out.len() as u64);
        let lo = self.consumed.max(start);
        let hi = end.min(self.consumed.saturating_add(RING_SIZE as u64));
        for p in lo..hi {
            out[(p - start) as usize] += self.ring[(p & MASK) as usize] * gain;
        }
    }

    /// Total resampled samples dropped as late (or too far ahead).
    pub fn late_samples(&self) -> u64 {
        self.late
    }

    /// Smoothed placement error `W − pos` in 48 kHz samples (positive: audio
    /// is being placed later than its timestamps say).
    pub fn offset_samples(&self) -> f64 {
        self.ema
    }

    /// Unsmoothed placement error of the last chunk, in 48 kHz samples.
    pub fn last_error_samples(&self) -> f64 {
        self.last_error
    }

    /// Number of jumps (re-synchronisations), including the first chunk.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Current resampler ratio adjustment (see
    /// [`Resampler::set_adjust`]).
    pub fn adjust(&self) -> f64 {
        self.resampler.adjust()
    }

    /// Timeline slot of the next resampled sample.
    pub fn write_pos(&self) -> i64 {
        self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testsig::*;

    const MS: f64 = 48.0; // samples per ms

    struct SimResult {
        worst_raw_ms: f64,
        worst_ema_ms: f64,
        final_ema_ms: f64,
        max_adjust: f64,
        out: Vec<f32>,
        resyncs: u64,
        late: u64,
    }

    /// A source at nominal `rate` whose clock runs `drift` fast, in 10 ms
    /// chunks stamped with true time (+ uniform jitter of ±`jitter_ms`), read
    /// by the mixer 60 ms behind real time.
    fn simulate(rate: u32, drift: f64, jitter_ms: f64, secs: f64, tone: f64) -> SimResult {
        let mut t = UserTrack::new();
        let chunk = (rate / 100) as usize;
        let total_src = (secs * rate as f64 * (1.0 + drift)) as usize;
        let src = sine(tone, rate, 0.5, total_src);
        let mut lcg = Lcg(12345);
        let mut out = Vec::new();
        let mut read = 0u64;
        let delay = 60.0 * MS;
        let (mut worst_raw, mut worst_ema, mut max_adj) = (0.0f64, 0.0f64, 0.0f64);
        let mut buf = [0.0f32; 480];
        for (i, c) in src.chunks_exact(chunk).enumerate() {
            let true_pos = (i * chunk) as f64 / (rate as f64 * (1.0 + drift)) * 48_000.0;
            let jitter = (lcg.next_f64() * 2.0 - 1.0) * jitter_ms * MS;
            // Mixer consumes everything up to now - delay.
            while (read + 480) as f64 <= true_pos - delay {
                buf.fill(0.0);
                t.read_add(read, &mut buf, 1.0);
                out.extend_from_slice(&buf);
                read += 480;
            }
            t.write(c, rate, true_pos + jitter, read);
            if true_pos > 48_000.0 {
                let raw = t.last_error_samples() / MS;
                let ema = t.offset_samples() / MS;
                // Jitter is part of the raw error; what is placed is the trend.
                assert!(
                    raw.abs() <= 20.0 + jitter_ms,
                    "rate {rate} drift {drift}: raw {raw} ms at chunk {i}"
                );
                assert!(
                    ema.abs() <= 20.0,
                    "rate {rate} drift {drift}: offset {ema} ms at chunk {i}"
                );
                worst_raw = worst_raw.max(raw.abs());
                worst_ema = worst_ema.max(ema.abs());
            }
            if true_pos > 5.0 * 48_000.0 {
                max_adj = max_adj.max(t.adjust().abs());
            }
        }
        SimResult {
            worst_raw_ms: worst_raw,
            worst_ema_ms: worst_ema,
            final_ema_ms: t.offset_samples() / MS,
            max_adjust: max_adj,
            out,
            resyncs: t.resyncs(),
            late: t.late_samples(),
        }
    }

    #[test]
    fn drift_control() {
        for (rate, drift) in [
            (48_000, 0.005),
            (48_000, -0.005),
            (48_000, 0.01),
            (48_000, -0.01),
            (16_000, 0.005),
        ] {
            let r = simulate(rate, drift, 0.0, 60.0, 1000.0);
            eprintln!(
                "{rate} Hz drift {:+.1}%: worst offset {:.3} ms (smoothed {:.3} ms), final {:.4} ms, max |adjust| after 5 s {:.4}",
                drift * 100.0,
                r.worst_raw_ms,
                r.worst_ema_ms,
                r.final_ema_ms,
                r.max_adjust
            );
            assert_eq!(r.resyncs, 1, "no jumps");
            assert_eq!(r.late, 0);
            assert!(r.final_ema_ms.abs() < 1.0, "converged");
            // Audio is continuous: no clicks after the first second.
            let seg = &r.out[48_000..r.out.len() - 4800];
            let defect = sine_defect(seg, 1000.0, 48_000, 0.5);
            assert!(defect < 1e-3, "defect {defect}");
        }
    }

    #[test]
    fn jittered_timestamps() {
        let r = simulate(48_000, 0.0, 3.0, 30.0, 1000.0);
        eprintln!(
            "jitter ±3 ms: worst raw error {:.3} ms, worst smoothed {:.3} ms, max |adjust| after 5 s {:.5}",
            r.worst_raw_ms, r.worst_ema_ms, r.max_adjust
        );
        assert_eq!(r.resyncs, 1);
        assert!(r.max_adjust < 0.002, "adjust wobble {}", r.max_adjust);
        let seg = &r.out[48_000..r.out.len() - 4800];
        let defect = sine_defect(seg, 1000.0, 48_000, 0.5);
        eprintln!("jitter ±3 ms: sine defect {defect:.2e}");
        assert!(defect < 1e-3, "defect {defect}");
        // Every 10 ms block carries the tone at full level.
        for b in seg.chunks_exact(480) {
            let rms = (b.iter().map(|x| x * x).sum::<f32>() / 480.0).sqrt();
            assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
        }
        // Jitter plus drift together.
        let r = simulate(16_000, -0.01, 3.0, 30.0, 440.0);
        eprintln!(
            "jitter ±3 ms, 16 kHz -1%: worst raw {:.3} ms, smoothed {:.3} ms",
            r.worst_raw_ms, r.worst_ema_ms
        );
        assert_eq!(r.resyncs, 1);
    }

    #[test]
    fn pause_and_resume() {
        let mut t = UserTrack::new();
        let rate = 16_000u32;
        let tone = sine(500.0, rate, 0.5, 16_000 * 4);
        let mut out = vec![0.0f32; 48_000 * 6];
        let mut read = 0u64;
        let mut consume = |t: &mut UserTrack, upto: u64, read: &mut u64| {
            while *read + 480 <= upto {
                let s = *read as usize;
                t.read_add(*read, &mut out[s..s + 480], 1.0);
                *read += 480;
            }
        };
        // 1 s of audio starting at 0.5 s.
        let start = 24_000.0;
        for (i, c) in tone[..16_000].chunks_exact(160).enumerate() {
            consume(
                &mut t,
                (start as u64 + i as u64 * 480).saturating_sub(2400),
                &mut read,
            );
            t.write(c, rate, start + (i * 480) as f64, read);
        }
        // Silence for 2 s, then resume at 3.5 s + 0.3 samples.
        let resume = 3.5 * 48_000.0 + 0.3;
        consume(&mut t, resume as u64 - 2400, &mut read);
        for (i, c) in tone[16_000..32_000].chunks_exact(160).enumerate() {
            consume(
                &mut t,
                (resume as u64 + i as u64 * 480).saturating_sub(2400),
                &mut read,
            );
            t.write(c, rate, resume + (i * 480) as f64, read);
        }
        consume(&mut t, 48_000 * 6, &mut read);
        assert_eq!(t.resyncs(), 2);
        let end1 = 72_000usize; // 0.5 s + 1 s
        assert!(out[..24_000].iter().all(|&x| x == 0.0));
        assert!(out[24_000..24_100].iter().any(|&x| x != 0.0));
        assert!(out[end1 - 100..end1 - 50].iter().any(|&x| x != 0.0));
        // The gap is exact zeros (the resampler tail is at most 1 ms).
        let first = out.iter().skip(end1).position(|&x| x != 0.0).unwrap() + end1;
        let first_ms = (first as f64 - resume) / MS;
        eprintln!("pause: gap ends {first_ms:.3} ms from the resume timestamp");
        assert!(first_ms.abs() <= 1.0, "resumed at {first_ms} ms");
        assert!(out[end1 + 48..first].iter().all(|&x| x == 0.0));
        // And the resumed audio is in phase with its timestamp: compare with
        // the ideal 500 Hz tone starting at `resume` (16 kHz sample 16000 has
        // phase 0 again).
        let seg = &out[first + 480..first + 47_000];
        let ideal: Vec<f32> = (0..seg.len())
            .map(|k| {
                let tt = (first + 480 + k) as f64 - resume;
                (0.5 * (2.0 * std::f64::consts::PI * 500.0 * tt / 48_000.0).sin()) as f32
            })
            .collect();
        let err = seg
            .iter()
            .zip(&ideal)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3, "placement error {err}");
        assert_eq!(t.late_samples(), 0);
    }

    #[test]
    fn entirely_late_chunk_changes_nothing() {
        let mut t = UserTrack::new();
        let a = sine(300.0, 48_000, 0.5, 4800);
        for (i, c) in a.chunks_exact(480).enumerate() {
            t.write(c, 48_000, 10_000.0 + (i * 480) as f64, 0);
        }
        let mut buf = vec![0.0f32; 960];
        t.read_add(10_000, &mut buf, 1.0);
        let before = t.clone();
        let n = t.write(&a[..480], 48_000, 9_000.0, 10_960);
        assert_eq!(n, 480);
        assert_eq!(t.late_samples(), 480);
        assert_eq!(t.ring, before.ring);
        assert_eq!(t.write_pos(), before.write_pos());
        assert_eq!(t.last_error_samples(), before.last_error_samples());
        assert_eq!(t.offset_samples(), before.offset_samples());
        assert_eq!(t.resyncs(), before.resyncs());
        // Partially late chunk: only the late part is dropped.
        let mut u = UserTrack::new();
        assert_eq!(u.write(&a[..480], 48_000, 100.0, 300), 200);
        assert_eq!(u.late_samples(), 200);
    }

    #[test]
    fn too_far_ahead_is_dropped() {
        let mut t = UserTrack::new();
        let n = t.write(&[0.1; 480], 48_000, (RING_SIZE - 100) as f64, 0);
        // 464 samples are emitted (16 inputs stay pending); 364 are past the ring.
        assert_eq!(n, 364);
        assert_eq!(t.late_samples(), 364);
    }

    #[test]
    fn unwritten_and_consumed_read_silent() {
        let mut t = UserTrack::new();
        t.write(&[0.5; 480], 48_000, 0.0, 0);
        let mut a = vec![0.0f32; 480];
        t.read_add(0, &mut a, 2.0);
        // 48 kHz passes through exactly; the last 16 inputs are still pending.
        assert!(a[..464].iter().all(|&x| x == 1.0));
        assert!(a[464..].iter().all(|&x| x == 0.0));
        let mut b = vec![0.0f32; 480];
        t.read_add(0, &mut b, 1.0); // already consumed
        assert!(b.iter().all(|&x| x == 0.0));
        // Far in the future: wraps the ring index but must not alias.
        t.write(&[0.5; 480], 48_000, 480.0, 480);
        let mut c = vec![0.0f32; 480];
        t.read_add(480 + RING_SIZE as u64, &mut c, 1.0);
        assert!(c.iter().all(|&x| x == 0.0));
        // Bad input is ignored.
        assert_eq!(t.write(&[0.5; 10], 0, 0.0, 0), 0);
        assert_eq!(t.write(&[0.5; 10], 16_000, f64::NAN, 0), 0);
        assert_eq!(t.write(&[], 16_000, 0.0, 0), 0);
    }

    #[test]
    fn rate_change_resyncs() {
        let mut t = UserTrack::new();
        t.write(&[0.1; 160], 16_000, 0.0, 0);
        t.write(&[0.1; 160], 16_000, 480.0, 0);
        assert_eq!(t.resyncs(), 1);
        t.write(&[0.1; 441], 44_100, 960.0, 0);
        assert_eq!(t.resyncs(), 2);
        // 441 inputs minus the 16 still pending, at 48/44.1 outputs each.
        assert_eq!(t.write_pos(), 960 + 463);
    }
}
