//! One event stream for the whole host: every room's events, numbered, each carrying its
//! mixer id, with a bounded backlog so a reader that reconnects (SSE `Last-Event-ID`) resumes
//! where it left off.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::Value;

use crate::model::events::MixerEvent;

/// Events kept for readers that resume (`Host::subscribe(Some(seq))`).
pub const DEFAULT_BACKLOG: usize = 4096;

/// Events a subscriber may have unread before it is cut off (its stream ends; it resumes
/// from the backlog with the last sequence number it saw). A slow reader never blocks a room.
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// One event of one room.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEvent {
    /// Position in the host's stream, from 1.
    pub seq: u64,
    /// The room's mixer id.
    pub mixer_id: Arc<str>,
    /// The event.
    pub event: MixerEvent,
    /// An upload an earlier run left pending, resumed by this process (its output info; id
    /// from 1000 on): `"resumed": true` in the JSON.
    pub resumed: bool,
}

impl HostEvent {
    /// The vendor's event JSON with the room's `mixerID`.
    ///
    /// ```
    /// use cloudmixer::host::HostEvent;
    /// use cloudmixer::model::events::{MixerEvent, MixerState};
    /// let e = HostEvent { seq: 7, mixer_id: "room1".into(),
    ///     event: MixerEvent::state(MixerState::Running), resumed: false };
    /// assert_eq!(e.to_json()["mixerID"], "room1");
    /// assert_eq!(e.to_json()["state"], 2);
    /// ```
    pub fn to_json(&self) -> Value {
        let mut v = self.event.to_json();
        v["mixerID"] = Value::from(&*self.mixer_id);
        if self.resumed {
            v["resumed"] = Value::Bool(true);
        }
        v
    }

    /// The event's name (`stateChanged`, `outputInfoChanged`, `stats`, `error`,
    /// `inputStateChanged`).
    pub fn name(&self) -> &'static str {
        match self.event {
            MixerEvent::StateChanged { .. } => "stateChanged",
            MixerEvent::OutputInfoChanged(_) => "outputInfoChanged",
            MixerEvent::Stats(_) => "stats",
            MixerEvent::Error { .. } => "error",
            MixerEvent::InputStateChanged { .. } => "inputStateChanged",
        }
    }
}

#[derive(Debug)]
struct Inner {
    next: u64,
    backlog: VecDeque<Arc<HostEvent>>,
    cap: usize,
    subs: Vec<Sender<Arc<HostEvent>>>,
}

/// The host's event stream (publish from room threads, subscribe from fronts).
#[derive(Debug)]
pub(crate) struct EventHub {
    inner: Mutex<Inner>,
}

impl EventHub {
    pub(crate) fn new(backlog: usize) -> Self {
        EventHub {
            inner: Mutex::new(Inner {
                next: 1,
                backlog: VecDeque::new(),
                cap: backlog.max(1),
                subs: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn publish(&self, mixer_id: &Arc<str>, event: MixerEvent) {
        self.publish_with(mixer_id, event, false)
    }

    /// As [`EventHub::publish`], marking a resumed upload's event.
    pub(crate) fn publish_with(&self, mixer_id: &Arc<str>, event: MixerEvent, resumed: bool) {
        let mut g = self.lock();
        let ev = Arc::new(HostEvent {
            seq: g.next,
            mixer_id: mixer_id.clone(),
            event,
            resumed,
        });
        g.next += 1;
        if g.backlog.len() >= g.cap {
            g.backlog.pop_front();
        }
        g.backlog.push_back(ev.clone());
        // a full or gone subscriber is cut off (it resumes from the backlog)
        g.subs.retain(|s| match s.try_send(ev.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
    }

    /// The kept events after `since` (all kept ones for `None`... none: only new events) and
    /// a receiver of every later one, with nothing lost or repeated in between.
    pub(crate) fn subscribe(
        &self,
        since: Option<u64>,
    ) -> (Vec<Arc<HostEvent>>, Receiver<Arc<HostEvent>>) {
        let mut g = self.lock();
        let missed = match since {
            Some(s) => g.backlog.iter().filter(|e| e.seq > s).cloned().collect(),
            None => Vec::new(),
        };
        let (tx, rx) = crossbeam_channel::bounded(SUBSCRIBER_QUEUE);
        g.subs.push(tx);
        (missed, rx)
    }

    /// The sequence number the next event will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock().next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::events::MixerState;

    #[test]
    fn resume_after_a_sequence_number_and_bounded_backlog() {
        let hub = EventHub::new(3);
        let id: Arc<str> = "a".into();
        let (_, live) = hub.subscribe(None);
        for s in [
            MixerState::Starting,
            MixerState::Running,
            MixerState::Stopping,
        ] {
            hub.publish(&id, MixerEvent::state(s));
        }
        hub.publish(&id, MixerEvent::state(MixerState::Null));
        let seen: Vec<u64> = live.try_iter().map(|e| e.seq).collect();
        assert_eq!(seen, [1, 2, 3, 4]);
        let (missed, _) = hub.subscribe(Some(2));
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        // only 3 kept: asking from 0 gives what is left
        let (missed, _) = hub.subscribe(Some(0));
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(hub.next_seq(), 5);
    }

    #[test]
    fn a_reader_that_stops_reading_is_cut_off_not_waited_for() {
        let hub = EventHub::new(8);
        let id: Arc<str> = "a".into();
        let (_, slow) = hub.subscribe(None);
        for _ in 0..SUBSCRIBER_QUEUE + 10 {
            hub.publish(&id, MixerEvent::state(MixerState::Running));
        }
        assert_eq!(slow.try_iter().count(), SUBSCRIBER_QUEUE);
        // its stream has ended: it was dropped from the hub
        assert!(slow.recv().is_err());
    }
}
