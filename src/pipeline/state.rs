//! What the stages of one mixer share: config, layout, source slots, state, clock, events.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;

use super::audio::AudioInbox;
use super::error::MixerError;
use super::sources::SourceSlots;
use crate::model::config::MixerConfig;
use crate::model::events::{codes, MixerEvent, MixerState};
use crate::model::layout::Layout;
use crate::model::time::PaceMode;

pub(crate) const MAX_DURATION_DESC: &str = "maximum recording duration reached";

/// Why a stage ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
    Stop,
    MaxDuration,
    Failed(i32, String),
}

impl End {
    /// The graver of two ends (a failure beats the maximum duration beats a stop).
    pub(crate) fn worst(self, other: End) -> End {
        match (&self, &other) {
            (End::Failed(..), _) => self,
            (_, End::Failed(..)) => other,
            (End::MaxDuration, _) => self,
            _ => other,
        }
    }
}

/// Counters a server can read while recording ([`super::Mixer::stats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub audio_frames: AtomicU64,
    pub audio_queue_full: AtomicU64,
    pub audio_late_samples: AtomicU64,
    /// Real time: ticks taken more than one frame interval after their deadline.
    pub late_ticks: AtomicU64,
    /// Real time: the most any tick was taken after its deadline, µs.
    pub max_tick_late_us: AtomicU64,
}

pub(crate) struct Shared {
    pub config: MixerConfig,
    pub layout: ArcSwap<Layout>,
    pub slots: SourceSlots,
    pub state: AtomicU8,
    pub events: Sender<MixerEvent>,
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
}

impl Shared {
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
        let _ = self.events.send(ev);
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
                desc: "destroyed".into(),
            },
        }
    }
}
