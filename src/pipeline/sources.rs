//! Source slots: the latest frame of each source, handed from `push_video` to the pacer.
//!
//! - Each camid has a [`Slot`] holding an `ArcSwapOption<VideoFrame>` and the time it was
//!   filled. A push stores one `Arc` (the frame's planes are moved, not copied) and never
//!   blocks: no lock is taken on the frame path.
//! - The camid → slot map is itself behind an `ArcSwap` and only rebuilt (under a small lock
//!   that is never held across a frame) when a camid appears for the first time.
//! - Frames of camids that the current layout does not show are kept too (one latest frame
//!   each), so a layout update that adds them shows them at once; the number of slots is capped
//!   and the stalest slot not in the layout is evicted to make room.
//! - A slot not filled for `timeout` counts as missing: the compositor draws the placeholder.
//! - Frames are stamped with their capture time on the mixer clock and wait in a short
//!   per-slot queue until a tick at or after that time takes them (a real-time mixer composes
//!   tick `t` at wall time `t + latency`, so a frame captured at `t` shows at `t + latency`,
//!   like its audio). The queue is behind a per-slot mutex held only to move an `Arc` in or out
//!   (never across a frame copy); it keeps at most [`PENDING_MAX`] frames, dropping the oldest.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::compose::Frames;
use crate::model::frame::VideoFrame;
use crate::model::layout::Layout;

/// Frames waiting for their tick, per source (a 60 fps source with 500 ms latency fits).
pub const PENDING_MAX: usize = 32;

/// Default limit on the number of distinct camids kept.
pub const DEFAULT_MAX_SOURCES: usize = 128;

/// One source's latest frame.
#[derive(Debug, Default)]
pub struct Slot {
    frame: ArcSwapOption<VideoFrame>,
    /// Mixer clock (µs) when the frame was pushed.
    stamp_us: AtomicU64,
    /// A registered picture: never times out, never evicted.
    pinned: std::sync::atomic::AtomicBool,
    /// Order of the latest push among all sources: the least recently pushed source is
    /// evicted first.
    pushed_seq: AtomicU64,
    /// Frames pushed but not yet due: (capture stamp µs, frame), oldest first.
    pending: Mutex<VecDeque<(u64, Arc<VideoFrame>)>>,
    /// Frames pushed.
    received: AtomicU64,
    /// Frames that became the source's picture.
    used: AtomicU64,
    /// Frames superseded by a newer one before they were ever the picture.
    replaced: AtomicU64,
    /// Frames pushed after the tick that was due to show them had been taken.
    late: AtomicU64,
}

impl Slot {
    /// Lets go of every frame (shown and queued), on the releaser thread.
    fn release(&self, rel: &Releaser) {
        let queued: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        queued.into_iter().for_each(|(_, f)| rel.release(f));
        if let Some(f) = self.frame.swap(None) {
            rel.release(f);
        }
    }

    /// Makes the newest pending frame with `stamp ≤ now_us` the current one.
    ///
    /// Frames it replaces are released after the lock is let go, on the releaser thread
    /// ([`Releaser`]): a release callback may push to this very camera.
    fn promote(&self, now_us: u64, rel: &Releaser) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = None;
        let mut skipped = Vec::new();
        while q.front().is_some_and(|(s, _)| *s <= now_us) {
            if let Some((_, old)) = due.take() {
                skipped.push(old);
            }
            due = q.pop_front();
        }
        drop(q);
        if !skipped.is_empty() {
            self.replaced
                .fetch_add(skipped.len() as u64, Ordering::Relaxed);
            skipped.into_iter().for_each(|f| rel.release(f));
        }
        if let Some((stamp, f)) = due {
            self.used.fetch_add(1, Ordering::Relaxed);
            if let Some(old) = self.frame.swap(Some(f)) {
                rel.release(old);
            }
            self.stamp_us.store(stamp, Ordering::Release);
        }
    }
}

/// Input counters of one source ([`SourceSlots::stats`], `Mixer::source_stats`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStats {
    /// The camid (or picture id).
    pub camid: String,
    /// Frames pushed.
    pub received: u64,
    /// Frames that became the source's picture (shown from their capture time on).
    pub used: u64,
    /// Frames a newer one superseded before they were ever shown (pushed faster than the
    /// output rate, or a burst after a stall). received = used + replaced + waiting.
    pub replaced: u64,
    /// Frames pushed after the tick that was due to show them (the first at or after their
    /// capture time) had been taken: they arrived more than the mixer's latency after their
    /// capture time and show a tick late, or not at all. 0 when every due frame was shown at
    /// its tick.
    pub late: u64,
}

/// Too many distinct camids, all of them shown by the current layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many sources: {max} camids are already kept and all are in the layout")]
pub struct TooManySources {
    /// The cap.
    pub max: usize,
}

type SlotMap = HashMap<Arc<str>, Arc<Slot>>;

/// The latest frame per camid.
///
/// ```
/// use std::time::Duration;
/// use cloudmixer::pipeline::sources::SourceSlots;
/// use cloudmixer::model::layout::{Layout, Rect};
/// use cloudmixer::model::frame::VideoFrame;
/// let slots = SourceSlots::new(Duration::from_secs(2));
/// let layout = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
/// slots.push("a", VideoFrame::solid_i420(8, 8, [81, 90, 240]).unwrap(), 0, &layout).unwrap();
/// let mut frames = Default::default();
/// slots.snapshot(&layout, 1_000_000, &mut frames);
/// assert!(frames.contains_key("a"));
/// slots.snapshot(&layout, 3_000_001, &mut frames); // silent for more than 2 s
/// assert!(frames.is_empty());
/// ```
#[derive(Debug)]
pub struct SourceSlots {
    map: ArcSwap<SlotMap>,
    grow: Mutex<()>,
    max: usize,
    timeout_us: u64,
    /// Counts pushes (for [`Slot::pushed_seq`]).
    seq: AtomicU64,
    /// The mixer time of the latest snapshot + 1 (0: none yet): a frame stamped before it
    /// missed the tick that was due to show it.
    taken_us: AtomicU64,
    /// Drops the frames let go of, off the pushing and composing threads.
    releaser: Releaser,
}

impl SourceSlots {
    /// Slots whose frames expire after `timeout` without a new frame.
    pub fn new(timeout: Duration) -> Self {
        Self::with_capacity(timeout, DEFAULT_MAX_SOURCES)
    }

    /// As [`SourceSlots::new`] with a cap on distinct camids (at least 1), with a releaser of
    /// its own.
    pub fn with_capacity(timeout: Duration, max: usize) -> Self {
        Self::with_releaser(timeout, max, Releaser::new())
    }

    /// As [`SourceSlots::with_capacity`], the frames let go of dropped by `releaser`.
    pub fn with_releaser(timeout: Duration, max: usize, releaser: Releaser) -> Self {
        SourceSlots {
            releaser,
            map: ArcSwap::from_pointee(HashMap::new()),
            grow: Mutex::new(()),
            max: max.max(1),
            timeout_us: timeout.as_micros().min(u64::MAX as u128) as u64,
            seq: AtomicU64::new(0),
            taken_us: AtomicU64::new(0),
        }
    }

    /// Queues `frame` of `camid`, captured at mixer clock `stamp_us`: the first snapshot at or
    /// after that time makes it the source's latest frame. `layout` (the current one) decides
    /// which slots may be evicted when the cap is reached.
    pub fn push(
        &self,
        camid: &str,
        frame: VideoFrame,
        stamp_us: u64,
        layout: &Layout,
    ) -> Result<(), TooManySources> {
        let slot = self.slot(camid, layout)?;
        let frame = Arc::new(frame);
        let mut q = slot.pending.lock().unwrap_or_else(|e| e.into_inner());
        slot.received.fetch_add(1, Ordering::Relaxed);
        if stamp_us < self.taken_us.load(Ordering::Acquire) {
            slot.late.fetch_add(1, Ordering::Relaxed);
        }
        let dropped = if q.len() >= PENDING_MAX {
            slot.replaced.fetch_add(1, Ordering::Relaxed);
            q.pop_front()
        } else {
            None
        };
        // out-of-order stamps are clamped so the queue stays sorted
        let stamp = q.back().map_or(stamp_us, |(s, _)| stamp_us.max(*s));
        q.push_back((stamp, frame));
        slot.pushed_seq.store(
            self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            Ordering::Release,
        );
        drop(q);
        if let Some((_, f)) = dropped {
            // a frame replaced before use is freed (or its release callback called) off the
            // caller's thread
            self.releaser.release(f);
        }
        Ok(())
    }

    fn slot(&self, camid: &str, layout: &Layout) -> Result<Arc<Slot>, TooManySources> {
        match self.map.load().get(camid) {
            Some(s) => Ok(s.clone()),
            None => self.add(camid, layout),
        }
    }

    /// Registers a picture (layout items of type 1 show it by its resource id): like
    /// [`SourceSlots::push`], but the slot never times out and is never evicted.
    pub fn pin(
        &self,
        id: &str,
        frame: VideoFrame,
        now_us: u64,
        layout: &Layout,
    ) -> Result<(), TooManySources> {
        let slot = self.slot(id, layout)?;
        if let Some(old) = slot.frame.swap(Some(Arc::new(frame))) {
            self.releaser.release(old);
        }
        slot.stamp_us.store(now_us, Ordering::Release);
        slot.pushed_seq.store(
            self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            Ordering::Release,
        );
        slot.pinned.store(true, Ordering::Release);
        Ok(())
    }

    fn add(&self, camid: &str, layout: &Layout) -> Result<Arc<Slot>, TooManySources> {
        let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.map.load_full();
        if let Some(s) = cur.get(camid) {
            return Ok(s.clone());
        }
        let mut next: SlotMap = (*cur).clone();
        if next.len() >= self.max {
            let shown = |id: &str| layout.uses_source(id);
            // the least recently pushed (a just-added slot has not shown a frame yet, so the
            // shown frame's stamp would make the newest the victim)
            let victim = next
                .iter()
                .filter(|(id, s)| !shown(id) && !s.pinned.load(Ordering::Acquire))
                .min_by_key(|(_, s)| s.pushed_seq.load(Ordering::Acquire))
                .map(|(id, _)| id.clone());
            match victim.and_then(|v| next.remove(&v)) {
                Some(gone) => gone.release(&self.releaser),
                None => return Err(TooManySources { max: self.max }),
            }
        }
        let slot = Arc::new(Slot::default());
        next.insert(Arc::from(camid), slot.clone());
        self.map.store(Arc::new(next));
        Ok(slot)
    }

    /// Lets go of every source's frames (the recording ended): lent buffers go back to their
    /// owners now, on the releaser thread, even while the mixer itself is still held.
    pub fn release_all(&self) {
        for s in self.map.load().values() {
            s.release(&self.releaser);
        }
    }

    /// Whether `id` is a registered picture ([`SourceSlots::pin`]).
    pub fn is_pinned(&self, id: &str) -> bool {
        self.map
            .load()
            .get(id)
            .is_some_and(|s| s.pinned.load(Ordering::Acquire))
    }

    /// Number of camids kept.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether no camid has pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every source's input counters, by camid.
    pub fn stats(&self) -> Vec<SourceStats> {
        let mut v: Vec<SourceStats> = self
            .map
            .load()
            .iter()
            .map(|(k, s)| SourceStats {
                camid: k.to_string(),
                received: s.received.load(Ordering::Relaxed),
                used: s.used.load(Ordering::Relaxed),
                replaced: s.replaced.load(Ordering::Relaxed),
                late: s.late.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by(|a, b| a.camid.cmp(&b.camid));
        v
    }

    /// Fills `frames` with the fresh frames of the sources `layout` may draw
    /// ([`Layout::source_ids`]: items, placeholders, background picture) at mixer clock
    /// `now_us` (frames captured later stay queued). Entries of other or stale sources are
    /// removed. `frames` is reused from tick to tick, so the steady state allocates nothing.
    pub fn snapshot(&self, layout: &Layout, now_us: u64, frames: &mut Frames) {
        self.taken_us
            .fetch_max(now_us.saturating_add(1), Ordering::AcqRel);
        let map = self.map.load();
        for s in map.values() {
            s.promote(now_us, &self.releaser);
            // a camera silent past the timeout (it left) is drawn as missing: its last frame
            // (a lent buffer, maybe) goes back now, not when the mixer is dropped
            if !s.pinned.load(Ordering::Acquire)
                && now_us.saturating_sub(s.stamp_us.load(Ordering::Acquire)) > self.timeout_us
            {
                if let Some(old) = s.frame.swap(None) {
                    self.releaser.release(old);
                }
            }
        }
        // frames leave the map through the releaser thread (a release callback never runs on
        // the compose thread)
        let unused: Vec<String> = frames
            .keys()
            .filter(|k| !layout.uses_source(k))
            .cloned()
            .collect();
        for k in unused {
            if let Some(old) = frames.remove(&k) {
                self.releaser.release(old);
            }
        }
        for id in layout.source_ids() {
            let fresh = map.get(id).and_then(|s| {
                let f = s.frame.load_full()?;
                let stamp = s.stamp_us.load(Ordering::Acquire);
                let pinned = s.pinned.load(Ordering::Acquire);
                (pinned || now_us.saturating_sub(stamp) <= self.timeout_us).then_some(f)
            });
            match (fresh, frames.get_mut(id)) {
                (Some(f), Some(slot)) => {
                    if !Arc::ptr_eq(slot, &f) {
                        self.releaser.release(std::mem::replace(slot, f));
                    }
                }
                (Some(f), None) => {
                    frames.insert(id.to_string(), f);
                }
                (None, _) => {
                    if let Some(old) = frames.remove(id) {
                        self.releaser.release(old);
                    }
                }
            }
        }
    }
}

enum Release {
    Frame(Arc<VideoFrame>),
    /// Answered once every frame queued before it was dropped.
    Flush(crossbeam_channel::Sender<()>),
}

/// The releaser: a thread (`cm-release`) that drops the frames a source lets go of, so that
/// freeing a frame's memory or calling its release callback never costs the pushing or the
/// composing thread, and never runs under a source lock.
///
/// Cheap to clone; every clone is the same releaser. The thread starts on the first frame and
/// ends once every clone is gone (no process-wide state: a bare mixer has one of its own, the
/// rooms of a [`crate::host::Host`] share the host's through [`super::Services`]).
#[derive(Clone, Default)]
pub struct Releaser {
    inner: Arc<ReleaserInner>,
}

#[derive(Default)]
struct ReleaserInner {
    /// The thread's queue, once started (`None`: it could not start; frames drop in place).
    tx: std::sync::OnceLock<Option<crossbeam_channel::Sender<Release>>>,
}

impl std::fmt::Debug for Releaser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releaser")
            .field("started", &self.started())
            .finish()
    }
}

impl Releaser {
    /// A releaser whose thread starts on the first frame.
    pub fn new() -> Self {
        Self::default()
    }

    fn sender(&self) -> Option<&crossbeam_channel::Sender<Release>> {
        self.inner
            .tx
            .get_or_init(|| {
                let (tx, rx) = crossbeam_channel::unbounded::<Release>();
                std::thread::Builder::new()
                    .name(RELEASER.into())
                    .spawn(move || {
                        for m in rx {
                            match m {
                                Release::Frame(f) => drop(f),
                                Release::Flush(done) => {
                                    let _ = done.send(());
                                }
                            }
                        }
                    })
                    .ok()
                    .map(|_| tx)
            })
            .as_ref()
    }

    /// Whether its thread has started (a frame was handed to it).
    pub fn started(&self) -> bool {
        self.inner.tx.get().is_some()
    }

    /// Whether `self` and `other` are the same releaser (clones of one).
    pub fn same(&self, other: &Releaser) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Drops `f` on the releaser thread instead of the caller's. Falls back to dropping here
    /// if the thread cannot start.
    pub fn release(&self, f: Arc<VideoFrame>) {
        if let Some(tx) = self.sender() {
            let _ = tx.send(Release::Frame(f));
        }
    }

    /// Waits (up to `timeout`) until every frame handed to [`Releaser::release`] before the
    /// call has been dropped, so a mixer's end can promise that every lent buffer went back.
    /// Returns at once when called on a releaser thread (from a release callback), and when
    /// the thread never started (nothing to wait for).
    pub fn flush(&self, timeout: Duration) -> bool {
        if std::thread::current().name() == Some(RELEASER) {
            return false;
        }
        let Some(Some(tx)) = self.inner.tx.get() else {
            return true;
        };
        let (done, wait) = crossbeam_channel::bounded(1);
        tx.send(Release::Flush(done)).is_ok() && wait.recv_timeout(timeout).is_ok()
    }
}

/// The releaser thread's name.
const RELEASER: &str = "cm-release";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layout::Rect;

    fn solid(w: u32, h: u32) -> VideoFrame {
        VideoFrame::solid_i420(w, h, [81, 90, 240]).unwrap()
    }

    #[test]
    fn latest_frame_wins_and_resolution_changes() {
        let s = SourceSlots::new(Duration::from_secs(2));
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
        s.push("a", solid(8, 8), 0, &l).unwrap();
        s.push("a", solid(16, 6), 10, &l).unwrap();
        let mut f = Frames::new();
        s.snapshot(&l, 20, &mut f);
        assert_eq!(f["a"].width(), 16);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn frames_wait_for_their_capture_time() {
        let s = SourceSlots::new(Duration::from_secs(2));
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
        s.push("a", solid(8, 8), 100, &l).unwrap();
        s.push("a", solid(10, 8), 200, &l).unwrap();
        s.push("a", solid(12, 8), 300, &l).unwrap();
        let mut f = Frames::new();
        s.snapshot(&l, 99, &mut f);
        assert!(!f.contains_key("a"), "nothing captured by 99 µs");
        s.snapshot(&l, 250, &mut f);
        assert_eq!(f["a"].width(), 10, "the newest frame due at 250 µs");
        s.snapshot(&l, 300, &mut f);
        assert_eq!(f["a"].width(), 12);
        // a flood keeps at most PENDING_MAX frames
        for i in 0..100 {
            s.push("a", solid(2, 2), 1_000 + i, &l).unwrap();
        }
        s.snapshot(&l, 2_000, &mut f);
        assert_eq!(f["a"].width(), 2);
    }

    #[test]
    fn a_frame_pushed_after_its_tick_was_taken_counts_as_late() {
        let s = SourceSlots::new(Duration::from_secs(2));
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
        let mut f = Frames::new();
        // before any tick nothing is late, also not a frame stamped 0
        s.push("a", solid(8, 8), 0, &l).unwrap();
        s.snapshot(&l, 66_666, &mut f);
        // captured at the tick's own time but pushed after it was taken: late, shown next
        s.push("a", solid(10, 8), 66_666, &l).unwrap();
        // captured after the tick: on time for the next one
        s.push("a", solid(12, 8), 66_667, &l).unwrap();
        let st = &s.stats()[0];
        assert_eq!((st.received, st.late), (3, 1), "{st:?}");
        s.snapshot(&l, 133_333, &mut f);
        assert_eq!(f["a"].width(), 12);
        let st = &s.stats()[0];
        assert_eq!((st.used, st.replaced, st.late), (2, 1, 1), "{st:?}");
    }

    #[test]
    fn pinned_pictures_never_time_out() {
        let slots = SourceSlots::new(Duration::from_secs(2));
        let l = Layout::cameras(
            64,
            32,
            &[
                ("logo", Rect::new(0, 0, 32, 32)),
                ("cam", Rect::new(32, 0, 32, 32)),
            ],
        );
        slots
            .pin(
                "logo",
                VideoFrame::solid_i420(8, 8, [235, 128, 128]).unwrap(),
                0,
                &l,
            )
            .unwrap();
        slots
            .push(
                "cam",
                VideoFrame::solid_i420(8, 8, [81, 90, 240]).unwrap(),
                0,
                &l,
            )
            .unwrap();
        let mut frames = Frames::default();
        slots.snapshot(&l, 3_600_000_000, &mut frames);
        assert!(frames.contains_key("logo"));
        assert!(!frames.contains_key("cam"));
    }

    #[test]
    fn timeout_makes_a_source_missing_until_it_pushes_again() {
        let s = SourceSlots::new(Duration::from_millis(100));
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
        s.push("a", solid(8, 8), 1_000, &l).unwrap();
        let mut f = Frames::new();
        s.snapshot(&l, 101_000, &mut f);
        assert!(f.contains_key("a"));
        s.snapshot(&l, 101_001, &mut f);
        assert!(!f.contains_key("a"));
        s.push("a", solid(8, 8), 200_000, &l).unwrap();
        s.snapshot(&l, 200_000, &mut f);
        assert!(f.contains_key("a"));
    }

    #[test]
    fn unknown_camids_are_bounded_and_layout_sources_survive() {
        let s = SourceSlots::with_capacity(Duration::from_secs(2), 4);
        let l = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
        s.push("a", solid(2, 2), 0, &l).unwrap();
        for i in 0..50u64 {
            s.push(&format!("x{i}"), solid(2, 2), i + 1, &l).unwrap();
        }
        assert_eq!(s.len(), 4);
        let mut f = Frames::new();
        s.snapshot(&l, 60, &mut f);
        assert!(f.contains_key("a"));
        // the newest unknowns are kept and show once a layout names them
        let l2 = Layout::cameras(64, 32, &[("x49", Rect::new(0, 0, 32, 32))]);
        s.snapshot(&l2, 60, &mut f);
        assert!(f.contains_key("x49") && !f.contains_key("a"));
        // a cap filled by layout sources only refuses new camids
        let s = SourceSlots::with_capacity(Duration::from_secs(2), 1);
        s.push("a", solid(2, 2), 0, &l).unwrap();
        assert_eq!(
            s.push("b", solid(2, 2), 0, &l),
            Err(TooManySources { max: 1 })
        );
    }
}
