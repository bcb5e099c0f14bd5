//! Segmented files (extensions `segmentDuration`, `segmentSize`): `rec.mp4` is written as
//! `rec_0001.mp4`, `rec_0002.mp4`, … each starting on a video keyframe, with timestamps from 0.
//!
//! - A new segment starts at the first video keyframe at or after the limit (so segments are
//!   as long as the limit rounded up to the keyframe interval, 2 s).
//! - Packets go to a segment by their time, not by their arrival: audio captured before the
//!   boundary goes to the segment that ends there even when it arrives after the keyframe (the
//!   old segment stays open until the first audio packet past the boundary), and audio past
//!   the limit that arrives before the keyframe waits for it. No frame or audio packet is lost
//!   or written twice at a boundary.
//! - With a size limit the boundary's time is not known in advance (it is the time of the
//!   first keyframe written once the limit is reached), and the video encoder's delay makes
//!   audio arrive up to a second ahead of the video of the same time. So audio at or after
//!   the newest video packet's time waits until the video has passed it: at a boundary, the
//!   audio before the keyframe goes to the old segment and the rest to the new one.

use std::time::Duration;

use ffmpeg_next as ffmpeg;

use super::live::{time_base_of, OwnedTrack};
use super::{MuxError, Muxer, Packet, Storage, TargetProgress, TrackId, TrackKind, TrackSpec};
use crate::model::config::{Segments, Target};

/// Audio packets held while waiting for the keyframe that opens the next segment (≈ 10 s).
const HOLD_MAX: usize = 500;

/// A finished segment, to report once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSegment {
    /// Its files (one per file target), with their final sizes.
    pub files: Vec<TargetProgress>,
    /// Its duration (video frames / fps).
    pub duration: Duration,
}

struct Plan {
    storage: Storage,
    targets: Vec<Target>,
    tracks: Vec<OwnedTrack>,
    overwrite: bool,
    limits: Segments,
    /// Number of the open segment (1-based).
    index: u32,
    video: Option<(TrackId, ffmpeg::Rational)>,
    /// The latest presentation time of the video packets so far (seconds), if any.
    newest_video: Option<f64>,
    /// Start of the open segment, seconds on the recording's timeline.
    start: f64,
    /// The previous segment, open for late audio: (muxer, its start, the boundary).
    old: Option<(Muxer, f64, f64)>,
    held: Vec<Packet>,
    closed: Vec<ClosedSegment>,
}

/// One muxer, or a series of segment muxers (see the module docs).
pub struct Segmented {
    current: Muxer,
    plan: Option<Box<Plan>>,
}

/// `dir/rec.mp4` → `dir/rec_0007.mp4`.
fn numbered(t: &Target, index: u32) -> Target {
    match t {
        Target::File { path, container } => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            Target::File {
                path: path.with_file_name(format!("{stem}_{index:04}{ext}")),
                container: *container,
            }
        }
        url => url.clone(),
    }
}

fn secs(ts: i64, tb: ffmpeg::Rational) -> f64 {
    ts as f64 * tb.numerator() as f64 / tb.denominator().max(1) as f64
}

/// Moves a packet's timestamps `base` seconds earlier.
fn rebase(mut p: Packet, base: f64, tb: ffmpeg::Rational) -> Packet {
    if base > 0.0 {
        let shift = (base * tb.denominator() as f64 / tb.numerator().max(1) as f64).round() as i64;
        p.data.set_pts(p.data.pts().map(|t| t - shift));
        p.data.set_dts(p.data.dts().map(|t| t - shift));
    }
    p
}

impl Segmented {
    /// One file per target, as [`Muxer::open`].
    pub fn plain(muxer: Muxer) -> Segmented {
        Segmented {
            current: muxer,
            plan: None,
        }
    }

    /// Opens the first segment of every file target (`_0001`).
    pub fn open(
        storage: &Storage,
        targets: &[Target],
        tracks: &[TrackSpec<'_>],
        overwrite: bool,
        limits: Segments,
    ) -> Result<Segmented, MuxError> {
        if !limits.enabled() {
            return Ok(Self::plain(Muxer::open(
                storage, targets, tracks, overwrite,
            )?));
        }
        // a new series never mixes with an earlier one: `rec_1_0001.mp4`, … when any
        // `rec_0…` exists (with overwrite the names are taken as they are); a continued one
        // (`limits.first` > 1) goes on at the first free number of every file target
        let continued = limits.first > 1;
        let mut index = limits.first.max(1);
        if continued && !overwrite {
            for t in targets {
                if let Target::File { path, .. } = t {
                    index = index.max(storage.free_index(path, index)?);
                }
            }
        }
        let targets: Vec<Target> = targets
            .iter()
            .map(|t| match t {
                Target::File { path, container } if !overwrite && !continued => Ok(Target::File {
                    path: storage.free_series(path)?,
                    container: *container,
                }),
                other => Ok(other.clone()),
            })
            .collect::<Result<_, MuxError>>()?;
        let first: Vec<Target> = targets.iter().map(|t| numbered(t, index)).collect();
        let current = Muxer::open(storage, &first, tracks, overwrite)?;
        let owned = tracks
            .iter()
            .map(OwnedTrack::of)
            .collect::<Result<Vec<_>, _>>()?;
        let video = tracks
            .iter()
            .find(|t| matches!(t.kind, TrackKind::Video { .. }))
            .map(|t| (t.id, t.time_base));
        Ok(Segmented {
            current,
            plan: Some(Box::new(Plan {
                storage: Storage::new(storage.root()),
                targets,
                tracks: owned,
                overwrite,
                limits,
                index,
                video,
                newest_video: None,
                start: 0.0,
                old: None,
                held: Vec::new(),
                closed: Vec::new(),
            })),
        })
    }

    /// The open muxer (the open segment).
    pub fn muxer(&self) -> &Muxer {
        &self.current
    }

    /// Segments finished since the last call.
    pub fn take_closed(&mut self) -> Vec<ClosedSegment> {
        self.plan
            .as_mut()
            .map(|p| std::mem::take(&mut p.closed))
            .unwrap_or_default()
    }

    /// Writes a packet to the segment its time belongs to.
    pub fn write(&mut self, p: Packet) -> Result<(), MuxError> {
        let Some(plan) = self.plan.as_mut() else {
            return self.current.write(p);
        };
        let Some(tb) = time_base_of(&plan.tracks, p.track) else {
            return Ok(());
        };
        let t = secs(p.data.pts().unwrap_or(0), tb);
        let is_video = plan.video.is_some_and(|(v, _)| v == p.track);
        if is_video {
            let elapsed = t - plan.start;
            let by_time = plan
                .limits
                .duration
                .is_some_and(|d| elapsed + 1e-6 >= d.as_secs_f64());
            let by_size = plan.limits.size.is_some_and(|s| {
                self.current
                    .progress()
                    .iter()
                    .map(|p| p.bytes)
                    .max()
                    .unwrap_or(0)
                    >= s
            });
            if p.data.is_key() && self.current.frames() > 0 && (by_time || by_size) {
                self.roll(t)?;
            }
            let plan = self.plan.as_mut().expect("segmented");
            plan.newest_video = Some(plan.newest_video.map_or(t, |n| n.max(t)));
            let start = plan.start;
            self.current.write(rebase(p, start, tb))?;
            return self.release_held();
        }
        // audio (or any other track)
        if let Some((old, start, boundary)) = plan.old.as_mut() {
            if t < *boundary {
                return old.write(rebase(p, *start, tb));
            }
            // the first audio past the boundary: the old segment is complete
            Self::close_old(plan)?;
        }
        if plan.video.is_some() && (Self::past_limit(plan, t) || !plan.held.is_empty()) {
            // in time order behind the audio already waiting
            if plan.held.len() >= HOLD_MAX {
                // the video is stalled: the oldest waits no longer
                let h = plan.held.remove(0);
                let htb = time_base_of(&plan.tracks, h.track).unwrap_or(tb);
                self.current.write(rebase(h, plan.start, htb))?;
            }
            plan.held.push(p);
            return Ok(());
        }
        let start = plan.start;
        self.current.write(rebase(p, start, tb))
    }

    /// Whether audio at `t` (seconds) may belong to a segment that has not started yet: past
    /// the duration limit, or (with a size limit) not yet passed by the video.
    fn past_limit(plan: &Plan, t: f64) -> bool {
        let by_time = plan
            .limits
            .duration
            .is_some_and(|d| t - plan.start + 1e-6 >= d.as_secs_f64());
        let by_size = plan.limits.size.is_some() && plan.newest_video.is_none_or(|v| t >= v);
        by_time || by_size
    }

    /// Writes the held audio that can no longer belong to a later segment (size limit: the
    /// video has passed it) into the open segment, in order.
    fn release_held(&mut self) -> Result<(), MuxError> {
        let plan = self.plan.as_mut().expect("segmented");
        let mut n = 0;
        for h in &plan.held {
            let tb = time_base_of(&plan.tracks, h.track).unwrap_or(ffmpeg::Rational::new(1, 1));
            if Self::past_limit(plan, secs(h.data.pts().unwrap_or(0), tb)) {
                break;
            }
            n += 1;
        }
        let start = plan.start;
        for h in plan.held.drain(..n) {
            let tb = time_base_of(&plan.tracks, h.track).unwrap_or(ffmpeg::Rational::new(1, 1));
            self.current.write(rebase(h, start, tb))?;
        }
        Ok(())
    }

    /// Starts the next segment at `boundary` (seconds): the open one stays open for late audio.
    fn roll(&mut self, boundary: f64) -> Result<(), MuxError> {
        let plan = self.plan.as_mut().expect("segmented");
        Self::close_old(plan)?;
        plan.index += 1;
        let next: Vec<Target> = plan
            .targets
            .iter()
            .map(|t| numbered(t, plan.index))
            .collect();
        let specs: Vec<TrackSpec<'_>> = plan.tracks.iter().map(OwnedTrack::spec).collect();
        let new = Muxer::open(&plan.storage, &next, &specs, plan.overwrite)?;
        let old = std::mem::replace(&mut self.current, new);
        plan.old = Some((old, plan.start, boundary));
        plan.start = boundary;
        // audio that waited for this keyframe: what is before it ends the old segment, the
        // rest waits on for the video of the new one (see `release_held`)
        let held = std::mem::take(&mut plan.held);
        for h in held {
            let tb = time_base_of(&plan.tracks, h.track).unwrap_or(ffmpeg::Rational::new(1, 1));
            let t = secs(h.data.pts().unwrap_or(0), tb);
            match plan.old.as_mut() {
                Some((old, start, b)) if t < *b => old.write(rebase(h, *start, tb))?,
                _ => plan.held.push(h),
            }
        }
        Ok(())
    }

    fn close_old(plan: &mut Plan) -> Result<(), MuxError> {
        if let Some((mut old, _, _)) = plan.old.take() {
            old.finish()?;
            plan.closed.push(ClosedSegment {
                files: old.progress(),
                duration: old.duration(),
            });
        }
        Ok(())
    }

    /// Finishes every open segment (the held audio goes to the last one).
    pub fn finish(&mut self) -> Result<(), MuxError> {
        if let Some(plan) = self.plan.as_mut() {
            let start = plan.start;
            for h in std::mem::take(&mut plan.held) {
                let tb = time_base_of(&plan.tracks, h.track).unwrap_or(ffmpeg::Rational::new(1, 1));
                self.current.write(rebase(h, start, tb))?;
            }
            Self::close_old(plan)?;
        }
        self.current.finish()
    }
}
