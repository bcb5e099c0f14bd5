//! Compositors: turn a [`Layout`] and the latest frame of each source into one output picture.
//!
//! [`cpu::CpuCompositor`] is the reference (and the production backend on machines without a
//! GPU). Both backends take every rectangle and sampling map from [`crate::layout`] and every
//! colour map from [`crate::color`]; the sampling rule they share is written out in
//! [`sampling`].

pub mod cpu;
pub mod sampling;

use std::collections::HashMap;

use thiserror::Error;

use crate::frame::{I420Image, SharedFrame};
use crate::layout::Layout;

/// The latest frame of each source, keyed by camid / resource id.
pub type Frames = HashMap<String, SharedFrame>;

/// Which compositor to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A real GPU when one exists, else the CPU.
    #[default]
    Auto,
    /// The rayon CPU compositor.
    Cpu,
    /// The wgpu compositor (also accepts a software adapter such as lavapipe).
    Gpu,
}

/// A compositing failure.
#[derive(Debug, Error)]
pub enum ComposeError {
    /// The layout's canvas size differs from the compositor's.
    #[error("layout canvas {got_w}x{got_h} does not match the compositor's {want_w}x{want_h}")]
    CanvasMismatch {
        /// Layout width.
        got_w: u32,
        /// Layout height.
        got_h: u32,
        /// Compositor width.
        want_w: u32,
        /// Compositor height.
        want_h: u32,
    },
    /// The requested backend cannot be used here.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A GPU error (validation, device loss, out of memory).
    #[error("gpu: {0}")]
    Gpu(String),
}

/// A compositor: one per mixer, with a fixed canvas size.
pub trait Compositor: Send {
    /// Composes one frame and returns the output picture (I420, BT.709 limited range). The
    /// picture stays valid until the next call; copy what you keep.
    fn compose(&mut self, layout: &Layout, frames: &Frames) -> Result<&I420Image, ComposeError>;
    /// Short description, e.g. `cpu (rayon, 2 threads)` or the adapter name.
    fn describe(&self) -> String;
}

/// Creates a compositor of the given backend for a `width`x`height` canvas.
/// `Auto` and `Gpu` fall back to / fail with a clear error until the GPU backend is built in.
pub fn create(
    backend: Backend,
    width: u32,
    height: u32,
) -> Result<Box<dyn Compositor>, ComposeError> {
    match backend {
        Backend::Cpu | Backend::Auto => Ok(Box::new(cpu::CpuCompositor::new(width, height))),
        Backend::Gpu => Err(ComposeError::Unavailable(
            "the GPU backend is not built yet; use --backend cpu or auto".into(),
        )),
    }
}
