//! What the stages of one mixer share: config, layout, source slots, state, clock, events,
//! and the [`Services`] the mixer runs on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};

use super::error::{End, MixerError, MAX_DURATION_DESC};
use super::inbox::AudioInbox;
use super::services::Services;
use super::sources::SourceSlots;
use crate::model::config::MixerConfig;
use crate::model::events::{codes, MixerEvent, MixerState, MixerStats, OutputInfo};
use crate::model::layout::Layout;
use crate::model::time::PaceMode;

/// Every event to every subscriber; the streams end after NULL. Keeps the latest output info
/// of each output and the end, for `wait`.
#[derive(Default)]
pub(crate) struct EventHub {
    inner: Mutex<HubInner>,
    ended: Condvar,
}

#[derive(Default)]
struct HubInner {
    subs: Vec<Sender<MixerEvent>>,
    #[cfg(feature = "async")]
    streams: Vec<tokio::sync::mpsc::UnboundedSender<MixerEvent>>,
    outputs: BTreeMap<u32, OutputInfo>,
    /// `(err, errDesc)` of the NULL that ended the mixer, once it has.
    end: Option<(i32, String)>,
    /// The latest state change: a subscriber made later gets it first.
    state: Option<MixerEvent>,
    /// The mixer's own queue (`Mixer::events`) until somebody asks for it: trimmed to the
    /// latest [`OWN_EVENTS_KEPT`] events, so a queue nobody reads does not grow.
    own: Option<Receiver<MixerEvent>>,
}

/// Events the mixer's own queue keeps until [`crate::pipeline::Mixer::events`] is first
/// called (then it is the caller's, every event kept).
pub const OWN_EVENTS_KEPT: usize = 1024;

impl EventHub {
    /// A new stream of every event from now on (already ended after NULL).
    ///
    /// A subscriber made after the first state change gets the current state first (the latest
    /// `StateChanged`, e.g. RUNNING with the encoder and backend names).
    pub fn subscribe(&self) -> Receiver<MixerEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.end.is_none() {
            if let Some(st) = &g.state {
                let _ = tx.send(st.clone());
            }
            g.subs.push(tx);
        }
        rx
    }

    /// The mixer's own queue: every event from now on, trimmed to the latest
    /// [`OWN_EVENTS_KEPT`] until [`EventHub::own_taken`].
    pub fn subscribe_own(&self) -> Receiver<MixerEvent> {
        let rx = self.subscribe();
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).own = Some(rx.clone());
        rx
    }

    /// Somebody reads the mixer's own queue: it is no longer trimmed.
    pub fn own_taken(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).own = None;
    }

    /// An async stream of every event from now on (already ended after NULL).
    #[cfg(feature = "async")]
    pub fn subscribe_async(&self) -> tokio::sync::mpsc::UnboundedReceiver<MixerEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.end.is_none() {
            if let Some(st) = &g.state {
                let _ = tx.send(st.clone());
            }
            g.streams.push(tx);
        }
        rx
    }

    pub fn send(&self, ev: MixerEvent) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.end.is_some() {
            return;
        }
        if let MixerEvent::StateChanged { .. } = &ev {
            g.state = Some(ev.clone());
        }
        match &ev {
            MixerEvent::OutputInfoChanged(i) => {
                g.outputs.insert(i.id, i.clone());
            }
            MixerEvent::StateChanged {
                state: MixerState::Null,
                err,
                err_desc,
                ..
            } => g.end = Some((*err, err_desc.clone())),
            _ => {}
        }
        // a subscriber that dropped its receiver is forgotten
        g.subs.retain(|s| s.send(ev.clone()).is_ok());
        if let Some(own) = &g.own {
            while own.len() > OWN_EVENTS_KEPT {
                let _ = own.try_recv();
            }
        }
        #[cfg(feature = "async")]
        g.streams.retain(|s| s.send(ev.clone()).is_ok());
        if g.end.is_some() {
            // the streams end: their senders go
            g.subs.clear();
            #[cfg(feature = "async")]
            g.streams.clear();
            self.ended.notify_all();
        }
    }

    /// Blocks until NULL (or `timeout`): the end and every output's final info.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<((i32, String), Vec<OutputInfo>)> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while g.end.is_none() {
            g = match deadline {
                None => self.ended.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.ended
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        let end = g.end.clone()?;
        Some((end, g.outputs.values().cloned().collect()))
    }

    /// The latest info of every output, by id.
    pub fn outputs(&self) -> Vec<OutputInfo> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.outputs.values().cloned().collect()
    }
}

/// Counters a server can read while recording ([`super::Mixer::stats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub audio_frames: AtomicU64,
    pub audio_queue_full: AtomicU64,
    pub audio_late_samples: AtomicU64,
    /// User tracks on the audio stage's timeline.
    pub audio_tracks: AtomicU64,
    /// Real time: ticks taken more than one frame interval after their deadline.
    pub late_ticks: AtomicU64,
    /// Real time: the most any tick was taken after its deadline, µs.
    pub max_tick_late_us: AtomicU64,
    /// A tick of the last second was late (set by the writer's once-a-second report).
    pub overloaded: std::sync::atomic::AtomicBool,
    /// Frames handed to the video encoder, and frames it has taken and encoded.
    pub encoder_in: AtomicU64,
    pub encoder_out: AtomicU64,
    /// The longest hand-off → encoded time, µs.
    pub encoder_max_us: AtomicU64,
    /// Composed frames with no new source frame and the same layout as the one before.
    pub frames_repeated: AtomicU64,
}

pub(crate) struct Shared {
    pub config: MixerConfig,
    pub layout: ArcSwap<Layout>,
    pub slots: SourceSlots,
    pub state: AtomicU8,
    pub events: EventHub,
    pub mode: PaceMode,
    /// Real time: a frame captured at `t` is composed (and its audio mixed) at `t + latency`.
    pub latency: Duration,
    pub start: Instant,
    /// Wall-clock time of `start` (Unix ms): `%timestamp%` of tick `t` shows this + `t`.
    pub start_unix_ms: i64,
    /// Offline: the synthetic time (µs) of the next tick, the stamp of pushed frames.
    pub clock_us: AtomicU64,
    /// Ticks taken so far.
    pub ticks: AtomicU64,
    /// Stop (cleanly) once this many ticks are taken.
    pub stop_after: AtomicU64,
    /// Why the recording ended on its own, once it has.
    pub ended: Mutex<Option<(i32, String)>>,
    pub audio: AudioInbox,
    pub counters: Counters,
    /// Set by [`super::UploadAbandon::abandon`]: the uploads after the end stop at once.
    pub uploads_abandoned: std::sync::atomic::AtomicBool,
    /// The latest picture copied for `Mixer::snapshot`, and whether one is wanted.
    pub snapshot: Snapshot,
    /// The services this mixer runs on (its releaser, upload slots, renderer).
    pub services: Services,
}

/// A copy of a composed picture, made at most when asked (`Mixer::snapshot`).
#[derive(Default)]
pub(crate) struct Snapshot {
    pub wanted: std::sync::atomic::AtomicBool,
    pub latest: Mutex<
        Option<(
            std::time::Instant,
            std::sync::Arc<crate::model::frame::I420Image>,
        )>,
    >,
    pub ready: std::sync::Condvar,
}

impl Snapshot {
    /// Keeps `img` as the latest picture and wakes who waits for it.
    pub fn put(&self, img: crate::model::frame::I420Image) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), std::sync::Arc::new(img)));
        self.ready.notify_all();
    }
}

impl Shared {
    /// The counters now (see `Mixer::stats`).
    pub fn stats(&self) -> MixerStats {
        let c = &self.counters;
        MixerStats {
            ticks: self.ticks.load(Ordering::Acquire),
            audio_frames: c.audio_frames.load(Ordering::Relaxed),
            audio_queue_full: c.audio_queue_full.load(Ordering::Relaxed),
            audio_late_samples: c.audio_late_samples.load(Ordering::Relaxed),
            audio_tracks: c.audio_tracks.load(Ordering::Relaxed),
            late_ticks: c.late_ticks.load(Ordering::Relaxed),
            max_tick_late_us: c.max_tick_late_us.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            ..self.input_and_encoder_stats()
        }
    }

    fn input_and_encoder_stats(&self) -> MixerStats {
        let c = &self.counters;
        let src = self.slots.stats();
        let (i, o) = (
            c.encoder_in.load(Ordering::Relaxed),
            c.encoder_out.load(Ordering::Relaxed),
        );
        MixerStats {
            frames_received: src.iter().map(|s| s.received).sum(),
            frames_used: src.iter().map(|s| s.used).sum(),
            frames_replaced: src.iter().map(|s| s.replaced).sum(),
            frames_late: src.iter().map(|s| s.late).sum(),
            encoder_queue: i.saturating_sub(o),
            encoder_max_us: c.encoder_max_us.load(Ordering::Relaxed),
            frames_repeated: c.frames_repeated.load(Ordering::Relaxed),
            ..MixerStats::default()
        }
    }

    /// The mixer clock now, in µs: wall time since start (real time) or the synthetic time
    /// of the next tick (offline).
    pub fn now_us(&self) -> u64 {
        match self.mode {
            PaceMode::Realtime => self.start.elapsed().as_micros() as u64,
            PaceMode::Offline => self.clock_us.load(Ordering::Acquire),
        }
    }

    pub fn running(&self) -> bool {
        self.state.load(Ordering::Acquire) == MixerState::Running as u8
    }

    /// The last state change: back to NULL with the final error (0 = clean stop).
    pub fn end_null(&self, code: i32, desc: String) {
        self.set_state(MixerState::Null);
        // nothing draws any more: every held frame (lent buffers) goes back now
        self.slots.release_all();
        self.emit(MixerEvent::StateChanged {
            state: MixerState::Null,
            err: code,
            err_desc: desc,
            encoder: None,
            backend: None,
        });
    }

    /// RUNNING → STOPPING, reported once, whoever gets there first (destroy or the pipeline).
    pub fn begin_stopping(&self) {
        if self
            .state
            .compare_exchange(
                MixerState::Running as u8,
                MixerState::Stopping as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.emit(MixerEvent::state(MixerState::Stopping));
        }
    }

    pub fn emit(&self, ev: MixerEvent) {
        self.events.send(ev);
    }

    pub fn set_state(&self, s: MixerState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Records why the recording ended (the first cause wins) and reports it as an `Error`
    /// event at once, before any caller can observe the stop.
    pub fn set_ended(&self, code: i32, desc: &str) {
        let mut e = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some((code, desc.to_string()));
            tracing::warn!(code, %desc, "recording ended");
            self.emit(MixerEvent::Error {
                code,
                desc: desc.to_string(),
            });
        }
    }

    /// Records a stage's end if it is not a clean stop.
    pub fn note_end(&self, end: &End) {
        match end {
            End::MaxDuration => self.set_ended(codes::RECORD_MAX, MAX_DURATION_DESC),
            End::Failed(c, d) => self.set_ended(*c, d),
            End::Stop => {}
        }
    }

    pub fn stopped_error(&self) -> MixerError {
        match &*self.ended.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((code, desc)) => MixerError::Stopped {
                code: *code,
                desc: desc.clone(),
            },
            None => MixerError::Stopped {
                code: codes::OK,
                desc: "the recording was stopped (stop, stop_after or destroy)".into(),
            },
        }
    }
}

#[cfg(test)]
mod hub_tests {
    use super::*;

    fn stats() -> MixerEvent {
        MixerEvent::Stats(MixerStats::default())
    }

    /// Issue 20, item 3: a server that reads only `subscribe()` (the README's pattern) does
    /// not pay for the mixer's own queue: after 10 000 events it holds `OWN_EVENTS_KEPT`,
    /// while the subscriber got every one; once taken, the queue keeps everything.
    #[test]
    fn the_own_queue_nobody_reads_stays_bounded() {
        let hub = EventHub::default();
        let own = hub.subscribe_own();
        let sub = hub.subscribe();
        for _ in 0..10_000 {
            hub.send(stats());
        }
        assert_eq!(sub.len(), 10_000);
        assert_eq!(own.len(), OWN_EVENTS_KEPT);
        hub.own_taken();
        for _ in 0..2_000 {
            hub.send(stats());
        }
        assert_eq!(own.len(), OWN_EVENTS_KEPT + 2_000);
    }

    /// Issue 20, item 6: a subscriber made after RUNNING sees RUNNING first.
    #[test]
    fn a_late_subscriber_gets_the_current_state_first() {
        let hub = EventHub::default();
        assert!(hub.subscribe().try_recv().is_err(), "no state yet");
        hub.send(MixerEvent::state(MixerState::Starting));
        hub.send(MixerEvent::state(MixerState::Running));
        hub.send(stats());
        let late = hub.subscribe();
        assert!(matches!(
            late.try_recv(),
            Ok(MixerEvent::StateChanged {
                state: MixerState::Running,
                ..
            })
        ));
        assert!(late.try_recv().is_err());
        hub.send(stats());
        assert!(matches!(late.try_recv(), Ok(MixerEvent::Stats(_))));
    }
}
