//! The fixed-rate clock of a mixer.
//!
//! Tick `n` has presentation time exactly `n / fps` (a rational: `pts = n` in time base
//! `1/fps`). In real-time mode tick `n` is due at `start + n/fps`, computed from `n` each time,
//! so rounding never accumulates into drift; a late tick is produced at once (never skipped: the
//! output is constant frame rate). In offline mode ticks are produced as fast as the caller
//! allows, on synthetic time.

use std::time::{Duration, Instant};

use crate::model::frame::VideoFrame;

/// How a mixer's clock advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaceMode {
    /// Wall-clock time: tick `n` at `start + n/fps` (live recording).
    #[default]
    Realtime,
    /// Synthetic time: ticks are produced when the caller advances the clock (files, tests).
    Offline,
}

/// Presentation time of tick `n` at `fps` frames per second (nanosecond floor of `n/fps`).
///
/// ```
/// use std::time::Duration;
/// use cloudmixer::model::time::tick_time;
/// assert_eq!(tick_time(15, 3), Duration::from_millis(200));
/// assert_eq!(tick_time(30, 1), Duration::from_nanos(33_333_333));
/// ```
pub fn tick_time(fps: u32, n: u64) -> Duration {
    let ns = n as u128 * 1_000_000_000 / fps.max(1) as u128;
    Duration::from_nanos(ns.min(u64::MAX as u128) as u64)
}

/// Number of ticks whose time is `< t`: `ceil(t · fps)`.
///
/// ```
/// use std::time::Duration;
/// use cloudmixer::model::time::ticks_before;
/// assert_eq!(ticks_before(15, Duration::from_secs(5)), 75);
/// assert_eq!(ticks_before(15, Duration::from_millis(5001)), 76);
/// ```
pub fn ticks_before(fps: u32, t: Duration) -> u64 {
    let num = t.as_nanos() * fps as u128;
    num.div_ceil(1_000_000_000).min(u64::MAX as u128) as u64
}

/// Frames of a constant-frame-rate recording of `d`: `round(d · fps)`.
///
/// ```
/// use std::time::Duration;
/// use cloudmixer::model::time::frames_for;
/// assert_eq!(frames_for(15, Duration::from_secs(10)), 150);
/// assert_eq!(frames_for(30, Duration::from_millis(1016)), 30);
/// assert_eq!(frames_for(30, Duration::from_millis(1017)), 31);
/// ```
pub fn frames_for(fps: u32, d: Duration) -> u64 {
    let num = d.as_nanos() * fps as u128;
    ((num + 500_000_000) / 1_000_000_000).min(u64::MAX as u128) as u64
}

/// A real-time tick schedule.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    fps: u32,
    start: Instant,
}

impl Pacer {
    /// A schedule whose tick 0 is due at `start`.
    pub fn new(fps: u32, start: Instant) -> Self {
        Pacer {
            fps: fps.max(1),
            start,
        }
    }
    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }
    /// When tick `n` is due.
    pub fn deadline(&self, n: u64) -> Instant {
        self.start + tick_time(self.fps, n)
    }
    /// Time since tick 0 in microseconds (the mixer clock in real-time mode).
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// Rounding slack when comparing input timestamps with tick times.
pub const PTS_SLACK: Duration = Duration::from_micros(500);

/// Picks, for each tick, the latest frame of a pts-ordered input with `pts ≤` the tick time:
/// inputs advance by their own timestamps, so a 30 fps input in a 15 fps recording is
/// decimated and a 15 fps input in a 30 fps recording is repeated.
///
/// ```
/// use std::time::Duration;
/// use cloudmixer::model::frame::VideoFrame;
/// use cloudmixer::model::time::LatestUpTo;
/// let f = |ms| VideoFrame::solid_i420(2, 2, [16, 128, 128]).unwrap().with_pts(Duration::from_millis(ms));
/// let mut input = LatestUpTo::new(vec![f(0), f(33), f(66), f(100)].into_iter());
/// assert_eq!(input.advance(Duration::from_millis(0)).unwrap().pts, Duration::ZERO);
/// assert_eq!(input.advance(Duration::from_millis(70)).unwrap().pts, Duration::from_millis(66));
/// assert!(input.advance(Duration::from_millis(80)).is_none()); // nothing new
/// assert!(!input.ended());
/// ```
#[derive(Debug)]
pub struct LatestUpTo<I: Iterator<Item = VideoFrame>> {
    it: I,
    peeked: Option<VideoFrame>,
    ended: bool,
}

impl<I: Iterator<Item = VideoFrame>> LatestUpTo<I> {
    /// Wraps a pts-ordered frame iterator.
    pub fn new(it: I) -> Self {
        LatestUpTo {
            it,
            peeked: None,
            ended: false,
        }
    }

    /// The newest frame with `pts ≤ t` not returned before, if any (older ones are dropped).
    /// Timestamps within [`PTS_SLACK`] after `t` count as `≤ t` (container time bases do not
    /// represent `n/fps` exactly).
    pub fn advance(&mut self, t: Duration) -> Option<VideoFrame> {
        let mut latest = None;
        loop {
            if self.peeked.is_none() && !self.ended {
                self.peeked = self.it.next();
                self.ended = self.peeked.is_none();
            }
            match self.peeked.take() {
                Some(f) if f.pts <= t + PTS_SLACK => latest = Some(f),
                other => {
                    self.peeked = other;
                    return latest;
                }
            }
        }
    }

    /// Whether the input has no more frames.
    pub fn ended(&self) -> bool {
        self.ended && self.peeked.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drift_over_long_runs() {
        // 8 h at 30 fps: the tick time is exact to the nanosecond floor, never accumulated
        let n = 8 * 3600 * 30;
        assert_eq!(tick_time(30, n), Duration::from_secs(8 * 3600));
        assert_eq!(
            tick_time(7, 7 * 1000 + 1),
            Duration::from_nanos(1_000_142_857_142)
        );
        assert_eq!(ticks_before(30, tick_time(30, n)), n);
    }

    #[test]
    fn realtime_deadlines_follow_n() {
        let t0 = Instant::now();
        let p = Pacer::new(15, t0);
        assert_eq!(p.deadline(15) - t0, Duration::from_secs(1));
        assert_eq!(p.deadline(1) - t0, Duration::from_nanos(66_666_666));
    }

    #[test]
    fn frame_picking_decimates_and_repeats() {
        let f = |ms: u64| {
            VideoFrame::solid_i420(2, 2, [16, 128, 128])
                .unwrap()
                .with_pts(Duration::from_millis(ms))
        };
        // 30 fps input into 15 fps ticks
        let frames: Vec<_> = (0..10).map(|i| f(i * 1000 / 30)).collect();
        let mut inp = LatestUpTo::new(frames.into_iter());
        let picked: Vec<_> = (0..5)
            .map(|n| inp.advance(tick_time(15, n)).map(|f| f.pts.as_millis()))
            .collect();
        assert_eq!(
            picked,
            vec![Some(0), Some(66), Some(133), Some(200), Some(266)]
        );
        // 15 fps input into 30 fps ticks: every other tick has nothing new (the slot keeps it)
        let frames: Vec<_> = (0..3).map(|i| f(i * 1000 / 15)).collect();
        let mut inp = LatestUpTo::new(frames.into_iter());
        let picked: Vec<_> = (0..6)
            .map(|n| inp.advance(tick_time(30, n)).is_some())
            .collect();
        assert_eq!(picked, vec![true, false, true, false, true, false]);
        assert!(inp.ended());
    }
}
