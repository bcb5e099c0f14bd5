//! The clock and video stages.
//!
//! - The clock stage (`cm-compose`) ticks at the output frame rate (real time: tick `n` at
//!   `start + n/fps + latency`; offline: when the caller advances), loads the layout snapshot
//!   once per tick (a frame never mixes two layouts), takes the sources' frames captured up to
//!   the tick's time, resolves them into what to draw ([`crate::compose::scene`]: rotation,
//!   text, placeholders, background picture), composes them into a recycled encoder frame (a pool of [`FRAME_POOL`]
//!   frames travels between the threads, so the steady state allocates no frame buffers) and
//!   tells the audio stage how far the timeline has advanced. A mixer without video only ticks.
//! - The video encode stage (`cm-encode`) encodes and hands the packets to the writer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ffmpeg_next as ffmpeg;

use super::error::End;
use super::inbox::AudioMsg;
use super::state::Shared;
use super::writer::WriterMsg;
use crate::audio::MIX_RATE;
use crate::compose::scene::Scene;
use crate::compose::{Frames, Pipelined};
use crate::media::video_enc::{frame_planes, VideoEncoder};
use crate::model::events::codes;
use crate::model::time::{tick_time, PaceMode, Pacer};
use crate::output::{Packet, TrackId};

/// Encoder frames in circulation between the compose and encode threads.
pub const FRAME_POOL: usize = 4;

pub(crate) enum Cmd {
    /// Offline: produce ticks until `ticks` have been made; ack once the last one's inputs
    /// (layout and frames) are captured.
    Advance {
        ticks: u64,
        ack: Sender<()>,
    },
    Stop,
}

pub(crate) enum Msg {
    /// A composed frame and when it was handed over.
    Frame(ffmpeg::frame::Video, Instant),
    End(End),
}

/// Timeline position (48 kHz samples) of time `t`.
pub(crate) fn samples_at(t: Duration) -> u64 {
    (t.as_nanos() * MIX_RATE as u128 / 1_000_000_000) as u64
}

/// The compose side of a mixer with video.
pub(crate) struct VideoSide {
    pub compositor: Box<dyn Pipelined>,
    pub pool: Receiver<ffmpeg::frame::Video>,
    pub out: Sender<Msg>,
}

impl VideoSide {
    /// Receives the oldest tick in flight (`n`) into a pooled encoder frame and hands it to
    /// the encoder.
    fn hand_off(&mut self, shared: &Shared, n: u64) -> Result<(), End> {
        let Ok(mut vf) = self.pool.recv() else {
            return Err(End::Stop); // the encoder stopped on its own and reports why
        };
        let received = frame_planes(&mut vf)
            .map_err(|e| e.to_string())
            .and_then(|mut planes| {
                self.compositor
                    .receive(&mut planes)
                    .map_err(|e| format!("compositor: {e}"))
            });
        if let Err(e) = received {
            return Err(End::Failed(codes::INTERNAL, e));
        }
        // a snapshot was asked for (at most about once a second): copy this picture
        if shared.snapshot.wanted.swap(false, Ordering::AcqRel) {
            if let Some(img) = picture_of(&vf) {
                shared.snapshot.put(img);
            }
        }
        vf.set_pts(Some(n as i64));
        shared.counters.encoder_in.fetch_add(1, Ordering::Relaxed);
        self.out
            .send(Msg::Frame(vf, Instant::now()))
            .map_err(|_| End::Stop)
    }
}

/// The picture in an encoder frame (I420 or NV12), as I420.
fn picture_of(vf: &ffmpeg::frame::Video) -> Option<crate::model::frame::I420Image> {
    use ffmpeg::format::Pixel;
    let (w, h) = (vf.width(), vf.height());
    let (cw, ch) = (w as usize / 2, h as usize / 2);
    let mut img = crate::model::frame::I420Image::new(w, h);
    let copy = |dst: &mut [u8], src: &[u8], stride: usize, width: usize, rows: usize| {
        for r in 0..rows {
            dst[r * width..(r + 1) * width].copy_from_slice(&src[r * stride..r * stride + width]);
        }
    };
    copy(&mut img.y, vf.data(0), vf.stride(0), w as usize, h as usize);
    match vf.format() {
        Pixel::YUV420P => {
            copy(&mut img.u, vf.data(1), vf.stride(1), cw, ch);
            copy(&mut img.v, vf.data(2), vf.stride(2), cw, ch);
        }
        Pixel::NV12 => {
            let (src, stride) = (vf.data(1), vf.stride(1));
            for r in 0..ch {
                for c in 0..cw {
                    img.u[r * cw + c] = src[r * stride + 2 * c];
                    img.v[r * cw + c] = src[r * stride + 2 * c + 1];
                }
            }
        }
        _ => return None,
    }
    Some(img)
}

pub(crate) fn clock_loop(
    shared: Arc<Shared>,
    mut video: Option<VideoSide>,
    cmd: Receiver<Cmd>,
    max_ticks: u64,
) {
    let fps = shared.config.output.fps;
    let pacer = Pacer::new(fps, shared.start + shared.latency);
    let frame_interval = tick_time(fps, 1);
    let audio = shared.audio.sender().clone();
    let mut frames = Frames::new();
    let mut scene = Scene::with_font_cache(shared.services.fonts().clone());
    let mut allowed = 0u64;
    let mut ack: Option<Sender<()>> = None;
    let mut n = 0u64;
    // ticks submitted to the compositor and not yet handed to the encoder
    let mut in_flight: std::collections::VecDeque<u64> = Default::default();
    // what the previous tick showed: layout generation and each source's frame id
    let mut shown: (u64, std::collections::HashMap<String, u64>) = Default::default();
    let end = 'run: loop {
        if n >= max_ticks {
            break End::MaxDuration;
        }
        if n >= shared.stop_after.load(Ordering::Acquire) {
            break End::Stop;
        }
        match shared.mode {
            PaceMode::Realtime => match cmd.recv_deadline(pacer.deadline(n)) {
                Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => break End::Stop,
                Ok(Cmd::Advance { .. }) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    let late = Instant::now().saturating_duration_since(pacer.deadline(n));
                    let c = &shared.counters;
                    c.max_tick_late_us
                        .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                    if late > frame_interval {
                        c.late_ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            PaceMode::Offline => {
                while n >= allowed {
                    match cmd.recv() {
                        Ok(Cmd::Advance { ticks, ack: a }) => {
                            allowed = ticks;
                            if n >= allowed {
                                let _ = a.send(());
                            } else {
                                ack = Some(a);
                            }
                        }
                        Ok(Cmd::Stop) | Err(_) => break 'run End::Stop,
                    }
                }
                if n >= shared.stop_after.load(Ordering::Acquire) {
                    break End::Stop;
                }
            }
        }
        let t = tick_time(fps, n);
        // the tick shows what was captured until its own time `t` on the mixer clock (real
        // time: it wakes at `t + latency`, so frames up to `latency` late are in), never what
        // its wake-up jitter happened to let in: a frame captured just after `t` is always
        // the next tick's
        let now_us = t.as_micros() as u64;
        let layout = shared.layout.load_full();
        if video.is_some() {
            shared.slots.snapshot(&layout, now_us, &mut frames);
            if n > 0 && repeats(&mut shown, layout.generation, &frames) {
                shared
                    .counters
                    .frames_repeated
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        // every input pushed before this tick is in the audio queue ahead of this message
        if audio.send(AudioMsg::MixUntil(samples_at(t))).is_err() {
            break End::Stop; // the audio stage ended on its own and reports why
        }
        shared.ticks.store(n + 1, Ordering::Release);
        if shared.mode == PaceMode::Offline {
            shared
                .clock_us
                .store(tick_time(fps, n + 1).as_micros() as u64, Ordering::Release);
            if n + 1 == allowed {
                if let Some(a) = ack.take() {
                    let _ = a.send(());
                }
            }
        }
        if let Some(v) = video.as_mut() {
            let wall_ms = shared.start_unix_ms + t.as_millis() as i64;
            let (layout, frames) = scene.resolve(&layout, &frames, wall_ms);
            if let Err(e) = v.compositor.submit(layout, frames) {
                break End::Failed(codes::INTERNAL, format!("compositor: {e}"));
            }
            in_flight.push_back(n);
            // keep `depth` ticks in flight (the GPU's readback overlaps the encoder's work);
            // hand over whatever is done already
            while let Some(&k) = in_flight.front() {
                if in_flight.len() < v.compositor.depth() && !v.compositor.is_ready() {
                    break;
                }
                in_flight.pop_front();
                if let Err(e) = v.hand_off(&shared, k) {
                    break 'run e;
                }
            }
        }
        n += 1;
    };
    // the ticks taken are in the output: hand over those still in flight
    let mut end = end;
    if let (Some(v), false) = (video.as_mut(), matches!(end, End::Failed(..))) {
        for k in in_flight.drain(..) {
            if let Err(e) = v.hand_off(&shared, k) {
                end = e.worst(end);
                break;
            }
        }
    }
    shared.note_end(&end);
    drop(ack);
    let _ = audio.send(AudioMsg::End(samples_at(tick_time(fps, n)), end.clone()));
    if let Some(v) = video {
        let _ = v.out.send(Msg::End(end));
    }
}

/// Whether this tick shows what the previous one did (same layout generation, every source
/// the same frame); remembers this tick's for the next. Allocates only for a new source id.
fn repeats(
    shown: &mut (u64, std::collections::HashMap<String, u64>),
    generation: u64,
    frames: &Frames,
) -> bool {
    let (gen, ids) = shown;
    let same = *gen == generation
        && ids.len() == frames.len()
        && frames.iter().all(|(k, f)| ids.get(k) == Some(&f.id()));
    if !same {
        *gen = generation;
        ids.retain(|k, _| frames.contains_key(k));
        for (k, f) in frames {
            match ids.get_mut(k) {
                Some(v) => *v = f.id(),
                None => {
                    ids.insert(k.clone(), f.id());
                }
            }
        }
    }
    same
}

pub(crate) fn encode_loop(
    shared: Arc<Shared>,
    mut enc: VideoEncoder,
    track: TrackId,
    frames: Receiver<Msg>,
    pool: Sender<ffmpeg::frame::Video>,
    writer: Sender<WriterMsg>,
) {
    let drain = |enc: &mut VideoEncoder| -> Result<(), End> {
        loop {
            let mut pkt = ffmpeg::Packet::empty();
            match enc.receive(&mut pkt) {
                Ok(true) => writer
                    .send(WriterMsg::Packet(Packet { track, data: pkt }))
                    .map_err(|_| End::Stop)?,
                Ok(false) => return Ok(()),
                Err(e) => return Err(End::Failed(codes::INTERNAL, e.to_string())),
            }
        }
    };
    let end = loop {
        match frames.recv() {
            Ok(Msg::Frame(vf, handed)) => {
                let sent = enc.send(&vf);
                let _ = pool.send(vf);
                if let Err(e) = sent {
                    break End::Failed(codes::INTERNAL, e.to_string());
                }
                if let Err(e) = drain(&mut enc) {
                    break e;
                }
                let c = &shared.counters;
                c.encoder_out.fetch_add(1, Ordering::Relaxed);
                c.encoder_max_us
                    .fetch_max(handed.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Ok(Msg::End(e)) => break e,
            Err(_) => break End::Failed(codes::INTERNAL, "compose thread ended".into()),
        }
    };
    if let End::Failed(c, d) = &end {
        shared.set_ended(*c, d);
    }
    // unblock the compose thread at once
    drop(frames);
    drop(pool);
    let mut end = end;
    if !matches!(end, End::Failed(..)) {
        let flushed = enc
            .finish()
            .map_err(|e| End::Failed(codes::INTERNAL, e.to_string()))
            .and_then(|_| drain(&mut enc));
        if let Err(e) = flushed {
            end = e.worst(end);
        }
    }
    let _ = writer.send(WriterMsg::End(end));
}
