//! cloudmixer: server-side cloud recording.
//!
//! A recording server feeds decoded camera frames of everyone in a room; cloudmixer composites
//! them per a live layout (on the GPU, or on the CPU), and encodes a fixed-rate recording.
//! See `DESIGN.md` for the architecture.
#![warn(missing_docs)]

pub mod bench;
pub mod color;
pub mod compose;
pub mod config;
pub mod decode;
pub mod encode;
pub mod events;
pub mod frame;
pub mod layout;
pub mod mixer;
pub mod mux;
pub mod pacer;
pub mod record;
pub mod snapshot;
pub mod source;
#[doc(hidden)]
pub mod testutil;
pub mod workloads;
