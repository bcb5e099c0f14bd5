//! One pulled source for several rooms: a URL that rooms of one host pull at the same time is
//! connected to and decoded once, and each decoded frame goes to every room that shows it.
//!
//! [`SharedFeed`] is the [`FeedTarget`] the pull thread pushes into. It keeps a clock of its
//! own; each member (a room's mixer or per-stream recorder) joins with the offset of its clock
//! from it, so a frame captured at `c` on the feed's clock is pushed at `c + offset` on the
//! member's, with the member's own camid and user. Frames are shared, not copied (their planes
//! are reference-counted). A member leaves when its room's stop flag is set or it refuses a
//! push; once the last one has left the pull thread is told to stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::file::{FeedTarget, FileClock};
use super::pull::{InputStats, OnChange, PullInput, PullSpec};
use crate::model::audio::AudioFrame;
use crate::model::frame::VideoFrame;
use crate::pipeline::MixerError;

struct Member {
    id: u64,
    /// `None` while the member is reserved but its room not yet ready ([`SharedFeed::reserve`]).
    target: Option<Arc<dyn FeedTarget>>,
    /// The member's camid for the source's video (`None`: it takes no video from it).
    video: Option<String>,
    /// The member's user for the source's audio.
    audio: Option<String>,
    /// The member's clock minus the feed's, in nanoseconds.
    offset_ns: i128,
    /// The member's room ended (its feeds' stop flag).
    stop: Arc<AtomicBool>,
    /// Where the input's state changes go for this member's room.
    on_change: Option<OnChange>,
}

/// A pulled source shared by the rooms that show it (see the [module docs](self)).
pub struct SharedFeed {
    /// What the pull thread decodes (the first member's names).
    spec: PullSpec,
    t0: Instant,
    members: Mutex<Vec<Member>>,
    /// The pull thread's stop flag: set once no member is left.
    stop: Arc<AtomicBool>,
    /// The input's state and counters (one per source, shown by every member's room).
    input: Arc<PullInput>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for SharedFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFeed")
            .field("url", &crate::output::upload::redact_url(&self.spec.url))
            .field("members", &self.lock().len())
            .finish()
    }
}

impl SharedFeed {
    /// A feed of `spec`'s URL (decoding what `spec` asks for: video, audio) with no member
    /// yet, its input state reported to every member's callback.
    pub fn new(spec: &PullSpec) -> Arc<SharedFeed> {
        Arc::new_cyclic(|weak: &std::sync::Weak<SharedFeed>| {
            let weak = weak.clone();
            let on_change: OnChange = Arc::new(move |st: &InputStats| {
                if let Some(f) = weak.upgrade() {
                    let calls: Vec<OnChange> = f
                        .lock()
                        .iter()
                        .filter_map(|m| m.on_change.clone())
                        .collect();
                    calls.iter().for_each(|c| c(st));
                }
            });
            SharedFeed {
                spec: spec.clone(),
                t0: Instant::now(),
                members: Mutex::default(),
                stop: Arc::default(),
                input: PullInput::new(spec, on_change),
                thread: Mutex::default(),
                next_id: AtomicU64::new(0),
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The input's shared state (for every member's room info).
    pub fn input(&self) -> Arc<PullInput> {
        self.input.clone()
    }

    /// The pull thread's stop flag.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Keeps the pull thread's handle (handed to the last member to leave).
    pub fn set_thread(&self, t: JoinHandle<()>) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// Whether the feed decodes what a room asking for `video` / `audio` of its URL needs,
    /// and still runs.
    pub fn serves(&self, url: &str, video: bool, audio: bool) -> bool {
        self.spec.url == url
            && !self.stop.load(Ordering::Acquire)
            && (!video || self.spec.video.is_some())
            && (!audio || self.spec.audio.is_some())
    }

    /// Takes a place in the feed for a room (ended when `stop` is set), so the feed cannot end
    /// before the room [`joins`](SharedFeed::join): the member's id, or `None` when the feed
    /// has ended already (the room then starts a feed of its own).
    pub fn reserve(&self, stop: Arc<AtomicBool>) -> Option<u64> {
        let mut m = self.lock();
        // (under the members' lock: `prune` decides the end under it too)
        if self.stop.load(Ordering::Acquire) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        m.push(Member {
            id,
            target: None,
            video: None,
            audio: None,
            offset_ns: 0,
            stop,
            on_change: None,
        });
        Some(id)
    }

    /// Makes member `id` ([`SharedFeed::reserve`]) take the video as `video` and the audio as
    /// `audio` into `target` (a room's engine). A member joining a running feed (`announce`)
    /// is told the input's current state at once; the first hears it when the pull thread
    /// starts. Nothing happens when the member has left meanwhile (its room ended).
    pub fn join(
        &self,
        id: u64,
        target: Arc<dyn FeedTarget>,
        video: Option<String>,
        audio: Option<String>,
        on_change: OnChange,
        announce: bool,
    ) {
        let offset_ns = target.clock_now().as_nanos() as i128 - self.now().as_nanos() as i128;
        let st = self.input().stats();
        let joined = {
            let mut m = self.lock();
            match m.iter_mut().find(|m| m.id == id) {
                Some(m) => {
                    m.target = Some(target);
                    m.video = video;
                    m.audio = audio;
                    m.offset_ns = offset_ns;
                    m.on_change = Some(on_change.clone());
                    true
                }
                None => false,
            }
        };
        if joined && announce {
            on_change(&st);
        }
    }

    /// Drops the members whose rooms ended; once none is left the pull thread is told to
    /// stop and its handle is returned (to be joined off the caller's thread).
    pub fn prune(&self) -> Option<JoinHandle<()>> {
        {
            let mut m = self.lock();
            m.retain(|m| !m.stop.load(Ordering::Acquire));
            if !m.is_empty() {
                return None;
            }
            self.stop.store(true, Ordering::Release);
        }
        self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Pushes to every member (`push(target, camid, user, capture on its clock)`), dropping
    /// those that ended or refused; `Err` once none is left (a member's full queue comes back
    /// as its `Backlog`, the others still fed). What was captured before a member's clock
    /// began goes to it at its time 0 when `before_start` (a picture to show from its first
    /// tick), else not at all (sound from before the room).
    fn each(
        &self,
        capture: Duration,
        before_start: bool,
        mut push: impl FnMut(
            &dyn FeedTarget,
            Option<&str>,
            Option<&str>,
            Duration,
        ) -> Result<(), MixerError>,
    ) -> Result<(), MixerError> {
        // under the members' lock (the pushes never block: a full queue refuses), so nothing
        // is copied per frame and `prune` decides the end against what is pushed
        let mut m = self.lock();
        m.retain(|m| !m.stop.load(Ordering::Acquire));
        if m.is_empty() {
            self.stop.store(true, Ordering::Release);
            return Err(MixerError::WrongMode(
                "every room of this shared input ended",
            ));
        }
        let mut backlog = None;
        m.retain(|m| {
            // (a member still being set up takes nothing yet)
            let Some(target) = &m.target else {
                return true;
            };
            let at = capture.as_nanos() as i128 + m.offset_ns;
            if at < 0 && !before_start {
                // captured before the member's room began: not its sound
                return true;
            }
            let at = Duration::from_nanos(at.clamp(0, u64::MAX as i128) as u64);
            match push(&**target, m.video.as_deref(), m.audio.as_deref(), at) {
                Ok(()) => true,
                Err(e @ MixerError::Backlog(_)) => {
                    backlog = Some(e);
                    true
                }
                // refused: its room stopped
                Err(_) => false,
            }
        });
        drop(m);
        match backlog {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl FeedTarget for SharedFeed {
    fn file_clock(&self) -> FileClock {
        FileClock::starting_now()
    }

    fn push_video_at(
        &self,
        _camid: &str,
        frame: VideoFrame,
        capture: Duration,
    ) -> Result<(), MixerError> {
        self.each(capture, true, |target, camid, _, at| match camid {
            Some(camid) => target.push_video_at(camid, frame.clone(), at),
            None => Ok(()),
        })
    }

    fn push_audio(&self, _user: &str, frame: AudioFrame) -> Result<(), MixerError> {
        let capture = frame.capture().unwrap_or_default();
        self.each(capture, false, |target, _, user, at| match user {
            Some(user) => target.push_audio(user, frame.clone().with_capture(at)),
            None => Ok(()),
        })
    }

    fn clock_now(&self) -> Duration {
        self.now()
    }

    fn latency(&self) -> Option<Duration> {
        self.lock()
            .iter()
            .filter_map(|m| m.target.as_ref()?.latency())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that records what it is given, on a clock `ahead` of the feed's.
    struct Sink {
        t0: Instant,
        video: Mutex<Vec<(String, Duration)>>,
        audio: Mutex<Vec<(String, Duration)>>,
    }

    impl Sink {
        fn new(ahead: Duration) -> Arc<Sink> {
            Arc::new(Sink {
                t0: Instant::now() - ahead,
                video: Mutex::default(),
                audio: Mutex::default(),
            })
        }
    }

    impl FeedTarget for Sink {
        fn file_clock(&self) -> FileClock {
            FileClock::starting_now()
        }
        fn push_video_at(&self, c: &str, _: VideoFrame, at: Duration) -> Result<(), MixerError> {
            self.video.lock().unwrap().push((c.to_string(), at));
            Ok(())
        }
        fn push_audio(&self, u: &str, f: AudioFrame) -> Result<(), MixerError> {
            self.audio
                .lock()
                .unwrap()
                .push((u.to_string(), f.capture().unwrap()));
            Ok(())
        }
        fn clock_now(&self) -> Duration {
            self.t0.elapsed()
        }
    }

    fn spec() -> PullSpec {
        PullSpec {
            key: "a.-1".into(),
            url: "srt://127.0.0.1:9".into(),
            video: Some("a.-1".into()),
            audio: Some("a".into()),
        }
    }

    fn frame() -> VideoFrame {
        VideoFrame::solid_i420(16, 16, [16, 128, 128]).unwrap()
    }

    fn chunk(at: Duration) -> AudioFrame {
        AudioFrame::f32_interleaved(vec![0.0; 480], 48_000, 1)
            .unwrap()
            .with_capture(at)
    }

    #[test]
    fn each_member_gets_the_media_on_its_own_clock_under_its_own_names() {
        let feed = SharedFeed::new(&spec());
        let (s1, s2) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        // m1's clock started 5 s before the feed's
        let m1 = Sink::new(Duration::from_secs(5));
        let id1 = feed.reserve(s1.clone()).unwrap();
        feed.join(
            id1,
            m1.clone(),
            Some("a.-1".into()),
            Some("a".into()),
            Arc::new(|_| {}),
            false,
        );
        // media captured now, on the feed's clock; m2's clock starts 20 ms later
        let before = feed.clock_now();
        std::thread::sleep(Duration::from_millis(20));
        let m2 = Sink::new(Duration::ZERO);
        let id2 = feed.reserve(s2.clone()).unwrap();
        feed.join(
            id2,
            m2.clone(),
            Some("b.-1".into()),
            Some("b".into()),
            Arc::new(|_| {}),
            true,
        );
        feed.push_video_at("ignored", frame(), before).unwrap();
        feed.push_audio("ignored", chunk(before)).unwrap();
        let v1 = m1.video.lock().unwrap().clone();
        assert_eq!(v1.len(), 1);
        assert_eq!(v1[0].0, "a.-1");
        let want = before + Duration::from_secs(5);
        assert!(
            v1[0].1.abs_diff(want) < Duration::from_millis(5),
            "{v1:?} {want:?}"
        );
        let a1 = m1.audio.lock().unwrap().clone();
        assert_eq!(a1[0].0, "a");
        assert!(a1[0].1.abs_diff(want) < Duration::from_millis(5), "{a1:?}");
        // m2: the picture at its time 0 (captured before it began), not the sound
        let v2 = m2.video.lock().unwrap().clone();
        assert_eq!(v2, vec![("b.-1".to_string(), Duration::ZERO)]);
        assert!(m2.audio.lock().unwrap().is_empty());
        // and what comes after its start, at its own time
        let later = feed.clock_now();
        feed.push_audio("ignored", chunk(later)).unwrap();
        let a2 = m2.audio.lock().unwrap().clone();
        assert_eq!(a2.len(), 1);
        assert_eq!(a2[0].0, "b");
        assert!(a2[0].1 < Duration::from_millis(50), "{a2:?}");
    }

    #[test]
    fn a_reserved_place_keeps_the_feed_and_the_last_to_leave_ends_it() {
        let feed = SharedFeed::new(&spec());
        let (s1, s2) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let id1 = feed.reserve(s1.clone()).unwrap();
        let _id2 = feed.reserve(s2.clone()).unwrap();
        feed.join(
            id1,
            Sink::new(Duration::ZERO),
            Some("a.-1".into()),
            None,
            Arc::new(|_| {}),
            false,
        );
        s1.store(true, Ordering::Release);
        assert!(feed.prune().is_none());
        // the second room has not joined yet: its place keeps the feed running
        assert!(!feed.stop_flag().load(Ordering::Acquire));
        assert!(feed.serves(&spec().url, true, true));
        // nothing to push to yet, but the feed goes on
        assert!(feed.push_video_at("x", frame(), Duration::ZERO).is_ok());
        s2.store(true, Ordering::Release);
        feed.prune();
        assert!(feed.stop_flag().load(Ordering::Acquire));
        // an ended feed takes no one: a room coming now starts its own
        assert!(feed.reserve(Arc::default()).is_none());
        assert!(!feed.serves(&spec().url, true, true));
        assert!(feed.push_video_at("x", frame(), Duration::ZERO).is_err());
    }

    #[test]
    fn a_feed_serves_only_what_it_decodes() {
        let feed = SharedFeed::new(&PullSpec {
            audio: None,
            ..spec()
        });
        assert!(feed.serves("srt://127.0.0.1:9", true, false));
        assert!(!feed.serves("srt://127.0.0.1:9", true, true));
        assert!(!feed.serves("srt://127.0.0.1:10", true, false));
    }
}
