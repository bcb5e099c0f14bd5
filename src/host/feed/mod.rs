//! What pushes media into a room, with capture times on its mixer's clock.
//!
//! - [`file`](mod@file): decoder threads reading files (or anything FFmpeg's demuxers open),
//!   paced in real time onto the mixer's tick grid, or handed to an offline run as they come.
//!
//! - [`pull`]: one thread per URL input (rtmp, rtsp, srt, http(s)/HLS) that reconnects with a
//!   back-off and maps the stream's timestamps onto the mixer clock; its state and counters are
//!   in the room's info, the host's stats and events.
//!
//! - `publish` (feature `serve`): RTMP and SRT listeners that publishers push to
//!   (`rtmp://HOST:PORT/live/{mixerID}/{camid}`, SRT `streamid`), each stream taken through
//!   `Host::publish` and decoded as a pulled one.
//!
//! - `whip` (feature `serve`): WebRTC publishers (WHIP, RFC 9725), one session thread each,
//!   taking a camera of a running room with [`Host::publish`](crate::host::Host::publish).
//!
//! Each feed pushes frames
//! with `Mixer::push_video_at` and audio with `AudioFrame::with_capture`, so A/V sync,
//! placeholders and stats apply unchanged.

pub mod file;
#[cfg(feature = "serve")]
pub mod publish;
pub mod pull;
pub mod shared;
#[cfg(feature = "serve")]
pub mod whip;

pub use file::{DecodeStats, FeedError, FileClock, FileInputs};
