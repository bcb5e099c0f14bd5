//! The audio stage: every user's audio, resampled once onto the mixer timeline (one
//! [`Timeline`] track per user, whatever the number of outputs), mixed in 10 ms blocks per
//! output (the video targets' track, an audio-only file: each its own channel strategy and
//! limiter, a [`Mixdown`]) and encoded.
//!
//! - [`AudioInbox`] is the push side: `Mixer::push_audio` maps the user ID to a small index
//!   (a lock-free map, rebuilt only when a user appears for the first time) and `try_send`s the
//!   frame into a bounded queue, so a push never blocks and allocates nothing once the user is
//!   known. A full queue drops the frame and says so.
//! - The clock stage sends `MixUntil(position)` into the same queue once per tick, after the
//!   tick's inputs: the mix of a block never races the pushes that precede it. Real time: tick
//!   `t` runs at wall time `t + latency`, so audio captured at `t` may arrive up to `latency`
//!   late; later audio is dropped and counted.
//! - Positions are in 48 kHz samples since the mixer's start (its clock). Audio without a capture
//!   time is placed at its arrival time (real time) or right after the user's previous frame
//!   (offline).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use ffmpeg_next as ffmpeg;

use super::error::MixerError;
use super::state::{End, Shared};
use super::writer::WriterMsg;
use crate::audio::mix::{Mixdown, Timeline};
use crate::audio::{BLOCK, MIX_RATE};
use crate::media::audio_enc::AudioEncoder;
use crate::model::audio::AudioFrame;
use crate::model::events::codes;
use crate::output::{Packet, TrackId};
use crate::pipeline::sources::TooManySources;

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

    /// Queues `frame` of `user`; never blocks. A full queue gives the frame back.
    pub(crate) fn push(
        &self,
        shared: &Shared,
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
            Ok(()) => {
                shared.counters.audio_frames.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(AudioMsg::Frame { frame, .. })) => Err(PushError::Full(frame)),
            Err(_) => Err(PushError::Other(shared.stopped_error())),
        }
    }
}

/// Why a push did not queue its frame.
pub(crate) enum PushError {
    /// The queue is full; the frame is given back.
    Full(AudioFrame),
    Other(MixerError),
}

/// One mixed audio output: its channel strategy and limiter, its encoder and its track.
///
/// AAC starts with `initial_padding` (1024) priming samples that decoders output unless an
/// edit list says to skip them, and fragmented mp4, flv and ts carry no edit list. So the
/// first `skip` samples of the timeline are not encoded and every packet is moved `skip`
/// later: the decoded priming then stands in for the first 21.3 ms, and every later sample
/// plays exactly at its timeline position, in step with the video (pts = n / fps from 0).
pub(crate) struct AudioOutput {
    pub mix: Mixdown,
    pub enc: AudioEncoder,
    pub track: TrackId,
    pub buf: Vec<f32>,
    skip: usize,
}

impl AudioOutput {
    pub(crate) fn new(mix: Mixdown, enc: AudioEncoder, track: TrackId, skip: usize) -> Self {
        let ch = mix.channels();
        AudioOutput {
            mix,
            enc,
            track,
            buf: vec![0.0; BLOCK * ch],
            skip,
        }
    }

    /// Mixes [start, start+len) of `timeline` (without consuming it) and encodes it, sending
    /// finished packets to the writer.
    fn block(
        &mut self,
        timeline: &Timeline,
        start: u64,
        len: usize,
        out: &Sender<WriterMsg>,
    ) -> Result<(), End> {
        let ch = self.mix.channels();
        let n = len * ch;
        self.buf[..n].fill(0.0);
        self.mix.mix(timeline, start, len, &mut self.buf[..n]);
        let first = start.max(self.skip as u64).min(start + len as u64);
        let from = (first - start) as usize * ch;
        self.enc
            .push(&self.buf[from..n])
            .map_err(|e| End::Failed(codes::INTERNAL, format!("audio encoder: {e}")))?;
        self.drain(out)
    }

    fn drain(&mut self, out: &Sender<WriterMsg>) -> Result<(), End> {
        loop {
            let mut pkt = ffmpeg::Packet::empty();
            match self.enc.receive(&mut pkt) {
                Ok(true) => {
                    if self.skip > 0 {
                        let s = self.skip as i64;
                        pkt.set_pts(pkt.pts().map(|p| p + s));
                        pkt.set_dts(pkt.dts().map(|d| d + s));
                    }
                    let p = Packet {
                        track: self.track,
                        data: pkt,
                    };
                    // the writer is gone: it failed and reports why
                    out.send(WriterMsg::Packet(p)).map_err(|_| End::Stop)?;
                }
                Ok(false) => return Ok(()),
                Err(e) => return Err(End::Failed(codes::INTERNAL, format!("audio encoder: {e}"))),
            }
        }
    }
}

/// Mixes and encodes `[start, start+len)` for every output, then releases it on the timeline.
fn block_all(
    timeline: &mut Timeline,
    outs: &mut [AudioOutput],
    start: u64,
    len: usize,
    writer: &Sender<WriterMsg>,
) -> Result<(), End> {
    for o in outs.iter_mut() {
        o.block(timeline, start, len, writer)?;
    }
    timeline.consume(start + len as u64);
    Ok(())
}

/// The audio stage's thread; at most `max_users` users get a track.
pub(crate) fn audio_loop(
    shared: Arc<Shared>,
    rx: Receiver<AudioMsg>,
    mut outs: Vec<AudioOutput>,
    writer: Sender<WriterMsg>,
    max_users: usize,
) {
    let mut names: Vec<Box<str>> = Vec::new();
    // per user: whether any output mixes its audio (else it gets no track)
    let mut carried: Vec<bool> = Vec::new();
    // every user's audio, resampled once, read by every output
    let mut timeline = Timeline::new(max_users);
    // offline, frames without a capture time follow the user's previous frame
    let mut next_pos: Vec<Option<f64>> = Vec::new();
    let mut cursor = 0u64;
    let mix_until =
        |cursor: &mut u64, until: u64, timeline: &mut Timeline, outs: &mut Vec<AudioOutput>| {
            while *cursor + BLOCK as u64 <= until {
                block_all(timeline, outs, *cursor, BLOCK, &writer)?;
                *cursor += BLOCK as u64;
            }
            Ok::<(), End>(())
        };
    let end = loop {
        let Ok(msg) = rx.recv() else {
            break End::Stop;
        };
        match msg {
            AudioMsg::User(i, name) => {
                if i as usize == names.len() {
                    carried.push(outs.iter().any(|o| o.mix.carries(&name)));
                    names.push(name);
                    next_pos.push(None);
                }
            }
            AudioMsg::Frame { user, pos, frame } => {
                let u = user as usize;
                let Some(name) = names.get(u) else { continue };
                let pos = pos.or(next_pos[u]).unwrap_or(cursor as f64).max(0.0);
                next_pos[u] = Some(
                    pos + frame.frames() as f64 * MIX_RATE as f64 / frame.sample_rate() as f64,
                );
                if !carried[u] {
                    continue;
                }
                // users beyond the cap were refused at the push already
                let late = timeline.push(name, &frame, pos, cursor).unwrap_or(0);
                shared
                    .counters
                    .audio_tracks
                    .store(timeline.user_count() as u64, Ordering::Relaxed);
                if late > 0 {
                    shared
                        .counters
                        .audio_late_samples
                        .fetch_add(late as u64, Ordering::Relaxed);
                }
            }
            AudioMsg::MixUntil(p) => {
                if let Err(e) = mix_until(&mut cursor, p, &mut timeline, &mut outs) {
                    break e;
                }
            }
            AudioMsg::End(p, end) => {
                let flushed = mix_until(&mut cursor, p, &mut timeline, &mut outs).and_then(|_| {
                    let rest = p.saturating_sub(cursor) as usize;
                    if rest > 0 {
                        block_all(&mut timeline, &mut outs, cursor, rest, &writer)?;
                    }
                    if matches!(end, End::Failed(..)) {
                        return Ok(());
                    }
                    for o in outs.iter_mut() {
                        o.enc.finish().map_err(|e| {
                            End::Failed(codes::INTERNAL, format!("audio encoder: {e}"))
                        })?;
                        o.drain(&writer)?;
                    }
                    Ok(())
                });
                break match flushed {
                    Ok(()) => end,
                    Err(e) => e.worst(end),
                };
            }
        }
    };
    let _ = writer.send(WriterMsg::End(end));
}
