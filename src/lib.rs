//! cloudmixer: server-side cloud recording.
//!
//! A recording server feeds decoded camera frames of everyone in a room; cloudmixer composites
//! them per a live layout (on the GPU, or on the CPU), and encodes a fixed-rate recording.
//! See `DESIGN.md` for the architecture.
//!
//! What mixers share (the GPU renderer, the frame releaser, upload slots, fonts, encoder probes)
//! is a [`pipeline::Services`] they are given, not a process static: a [`host::Host`] gives
//! its rooms one; a mixer created without one has its own.
//!
//! Modules import downwards only: [`model`] ← [`compose`] / [`audio`] ← [`media`] / [`output`] ←
//! [`pipeline`] ← [`host`] ← [`record`] / [`snapshot`] ← the binary.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod audio;
pub mod compose;
pub mod host;
pub mod media;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod record;
#[cfg(feature = "serve")]
pub mod serve;
pub mod snapshot;

#[cfg(feature = "testkit")]
pub mod testkit;

/// The channel crate whose `Receiver` [`Mixer::events`] returns.
pub use crossbeam_channel;
/// The crate whose `Stream` [`pipeline::EventStream`] implements (feature `async`).
#[cfg(feature = "async")]
pub use futures_core;
pub use model::audio::AudioFrame;
pub use model::config::MixerConfig;
pub use model::events::{MixerEvent, MixerState, OutputInfo, OutputState};
pub use model::frame::VideoFrame;
pub use output::Storage;
pub use pipeline::{Mixer, MixerError, MixerSettings, MixerStats, StreamRecorder};

/// What an embedder needs, in one import: `use cloudmixer::prelude::*;`.
///
/// ```no_run
/// use cloudmixer::prelude::*;
/// let cfg = MixerConfig::from_json(&std::fs::read_to_string("room.json")?)?;
/// let mixer = Mixer::create(cfg, Storage::new("/srv/records"))?;
/// let events: Receiver<MixerEvent> = mixer.events();
/// mixer.push_video("Usr1.-1", VideoFrame::solid_i420(640, 480, [81, 90, 240])?)?;
/// # let _ = events;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod prelude {
    pub use crate::compose::Backend;
    pub use crate::model::audio::AudioFrame;
    pub use crate::model::buffer::{FramePool, PlaneData};
    pub use crate::model::color::ColorSpace;
    pub use crate::model::config::{ConfigError, MixerConfig};
    pub use crate::model::events::{MixerEvent, MixerState, OutputInfo, OutputState};
    pub use crate::model::frame::{PixelFormat, Plane, Rotation, VideoFrame};
    pub use crate::model::time::PaceMode;
    pub use crate::output::Storage;
    #[cfg(feature = "async")]
    pub use crate::pipeline::EventStream;
    pub use crate::pipeline::{Mixer, MixerError, MixerSettings, MixerStats, StreamRecorder};
    pub use crossbeam_channel::Receiver;
}

/// The README's library example, compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
