//! Compositors: turn a [`Layout`] and the latest frame of each source into one output picture.
//!
//! [`cpu::CpuCompositor`] is the reference (and the production backend on machines without a
//! GPU). Both backends take every rectangle and sampling map from [`crate::model::layout`] and every
//! colour map from [`crate::model::color`]; the sampling rule they share is written out in
//! [`sampling`].

pub mod cpu;
pub mod gpu;
pub mod pipelined;
pub mod sampling;
pub mod scene;
pub mod text;

use std::collections::HashMap;

use thiserror::Error;

pub use gpu::OutputFormat;
pub use pipelined::{create_pipelined, Immediate, OutPlanes, Pipelined};

use crate::model::frame::{I420Image, SharedFrame};
use crate::model::layout::Layout;

/// The latest frame of each source, keyed by camid / resource id.
pub type Frames = HashMap<String, SharedFrame>;

/// Which compositor to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
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

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "cpu" => Ok(Backend::Cpu),
            "gpu" => Ok(Backend::Gpu),
            _ => Err(format!("unknown backend {s:?} (auto, cpu, gpu)")),
        }
    }
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
    /// The planes a picture is written into do not fit it, or the call order was wrong.
    #[error("output: {0}")]
    Output(String),
}

impl ComposeError {
    /// `Err(CanvasMismatch)` unless `layout`'s canvas is `width`x`height`.
    pub(crate) fn check_canvas(layout: &Layout, width: u32, height: u32) -> Result<(), Self> {
        if (layout.width, layout.height) == (width, height) {
            return Ok(());
        }
        Err(ComposeError::CanvasMismatch {
            got_w: layout.width,
            got_h: layout.height,
            want_w: width,
            want_h: height,
        })
    }
}

/// A compositor: one per mixer, with a fixed canvas size.
pub trait Compositor: Send {
    /// Composes one frame and returns the output picture (I420, BT.709 limited range). The
    /// picture stays valid until the next call; copy what you keep.
    fn compose(&mut self, layout: &Layout, frames: &Frames) -> Result<&I420Image, ComposeError>;
    /// The picture of the last successful `compose` (blank before the first).
    fn picture(&self) -> &I420Image;
    /// Short description, e.g. `cpu (rayon, 2 threads)` or the adapter name.
    fn describe(&self) -> String;
}

/// Creates a compositor of the given backend for a `width`x`height` canvas.
///
/// - `Cpu`: the rayon compositor.
/// - `Gpu`: the wgpu compositor on any adapter, a software one (lavapipe) included; a clear
///   [`ComposeError::Unavailable`] when there is none.
/// - `Auto`: the wgpu compositor when a hardware GPU exists (or `CLOUDMIXER_ADAPTER` names an
///   adapter), else the CPU compositor (wgpu on lavapipe is far slower than the CPU path).
///
/// `describe()` on the result names the backend and, for the GPU, the adapter.
pub fn create(
    backend: Backend,
    width: u32,
    height: u32,
) -> Result<Box<dyn Compositor>, ComposeError> {
    let gpu = |policy| {
        gpu::GpuCompositor::new(
            width,
            height,
            gpu::GpuOptions {
                policy,
                ..Default::default()
            },
        )
    };
    match backend {
        Backend::Cpu => Ok(Box::new(cpu::CpuCompositor::new(width, height))),
        Backend::Gpu => Ok(Box::new(gpu(gpu::AdapterPolicy::AllowSoftware)?)),
        Backend::Auto => match gpu(gpu::AdapterPolicy::HardwareOnly) {
            Ok(g) => Ok(Box::new(g)),
            Err(e) => {
                tracing::info!(reason = %e, "no usable hardware GPU, compositing on the CPU");
                Ok(Box::new(cpu::CpuCompositor::new(width, height)))
            }
        },
    }
}
