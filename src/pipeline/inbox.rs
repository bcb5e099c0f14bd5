//! The push side of the audio stage ([`AudioInbox`]) and the messages the stage reads: what
//! the mixer front, the clock and the audio stage share, below all of them.
//!
//! `Mixer::push_audio` maps the user ID to a small index (a lock-free map, rebuilt only when a
//! user appears for the first time) and `try_send`s the frame into a bounded queue, so a push
//! never blocks and allocates nothing once the user is known. A full queue drops the frame and
//! says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::error::{End, MixerError};
use super::sources::TooManySources;
use crate::model::audio::AudioFrame;
use crate::model::events::codes;

/// Frames (of all users) that may wait for the audio stage: ~2.5 s of 10 ms frames from 40
/// users.
pub const AUDIO_QUEUE: usize = 10_000;

pub(crate) enum AudioMsg {
    /// A new user ID and its index.
    User(u32, Box<str>),
    /// One frame; `pos` = timeline position of its first sample (48 kHz units).
    Frame {
        user: u32,
        pos: Option<f64>,
        frame: AudioFrame,
    },
    /// Mix every whole block before this position.
    MixUntil(u64),
    /// Mix up to exactly this position, flush the encoders and end.
    End(u64, End),
}

/// The push side of the audio stage.
pub(crate) struct AudioInbox {
    tx: Sender<AudioMsg>,
    users: ArcSwap<HashMap<Box<str>, u32>>,
    grow: Mutex<()>,
    max_users: usize,
}

pub use crate::model::audio::user_of;

impl AudioInbox {
    pub(crate) fn new(max_users: usize) -> (Self, Receiver<AudioMsg>) {
        let (tx, rx) = crossbeam_channel::bounded(AUDIO_QUEUE);
        (
            AudioInbox {
                tx,
                users: ArcSwap::from_pointee(HashMap::new()),
                grow: Mutex::new(()),
                max_users: max_users.max(1),
            },
            rx,
        )
    }

    pub(crate) fn sender(&self) -> &Sender<AudioMsg> {
        &self.tx
    }

    fn index(&self, user: &str) -> Result<u32, MixerError> {
        if let Some(i) = self.users.load().get(user) {
            return Ok(*i);
        }
        let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.users.load_full();
        if let Some(i) = cur.get(user) {
            return Ok(*i);
        }
        if cur.len() >= self.max_users {
            return Err(TooManySources {
                max: self.max_users,
            }
            .into());
        }
        let i = cur.len() as u32;
        // announced before any frame of the user (same queue); blocking here is fine: once
        // per user, and the stage drains the queue continuously
        self.tx
            .send(AudioMsg::User(i, user.into()))
            .map_err(|_| MixerError::Stopped {
                code: codes::OK,
                desc: "the audio stage has ended".into(),
            })?;
        let mut next = (*cur).clone();
        next.insert(user.into(), i);
        self.users.store(Arc::new(next));
        Ok(i)
    }

    /// Queues `frame` of `user`; never blocks. A full queue gives the frame back; once the
    /// stage has ended, `stopped()` says why.
    pub(crate) fn push(
        &self,
        stopped: impl FnOnce() -> MixerError,
        user: &str,
        frame: AudioFrame,
        pos: Option<f64>,
    ) -> Result<(), PushError> {
        let user = user_of(user);
        if user.is_empty() {
            return Err(PushError::Other(MixerError::BadUser(
                "an empty user ID cannot carry audio".into(),
            )));
        }
        let i = self.index(user).map_err(PushError::Other)?;
        match self.tx.try_send(AudioMsg::Frame {
            user: i,
            pos,
            frame,
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(AudioMsg::Frame { frame, .. })) => Err(PushError::Full(frame)),
            Err(_) => Err(PushError::Other(stopped())),
        }
    }
}

/// Why a push did not queue its frame.
pub(crate) enum PushError {
    /// The queue is full; the frame is given back.
    Full(AudioFrame),
    Other(MixerError),
}
