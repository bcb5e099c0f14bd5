//! The audio stage: every user's audio, resampled once onto the mixer timeline (one
//! [`Timeline`] track per user, whatever the number of outputs), mixed in 10 ms blocks per
//! output (the video targets' track, an audio-only file: each its own channel strategy and
//! limiter, a [`Mixdown`]) and encoded.
//!
//! - [`AudioInbox`](super::inbox::AudioInbox) is the push side: `Mixer::push_audio` maps the user ID to a small index
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

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use ffmpeg_next as ffmpeg;

use super::error::End;
use super::inbox::AudioMsg;
use super::state::Shared;
use super::writer::WriterMsg;
use crate::audio::mix::{Mixdown, Timeline};
use crate::audio::{BLOCK, MIX_RATE};
use crate::media::audio_enc::AudioEncoder;
use crate::model::events::codes;
use crate::output::{Packet, TrackId};

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
