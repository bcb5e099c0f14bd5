//! cloudmixer: server-side cloud recording.
//!
//! A recording server feeds decoded camera frames of everyone in a room; cloudmixer composites
//! them per a live layout (on the GPU, or on the CPU), and encodes a fixed-rate recording.
//! See `DESIGN.md` for the architecture.
//!
//! Modules import downwards only: [`model`] ← [`compose`] / [`audio`] ← [`media`] / [`output`] ←
//! [`pipeline`] ← [`record`] / [`snapshot`] ← the binary.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod audio;
pub mod compose;
pub mod media;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod snapshot;

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use model::audio::AudioFrame;
pub use model::config::MixerConfig;
pub use model::events::{MixerEvent, MixerState, OutputInfo, OutputState};
pub use model::frame::VideoFrame;
pub use output::Storage;
pub use pipeline::{Mixer, MixerError, MixerSettings};

/// The README's library example, compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
