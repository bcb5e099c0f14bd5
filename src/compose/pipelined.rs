//! The compositor interface the mixer uses: submit a tick now, receive it later, in order,
//! written straight into the encoder's own frame ([`OutPlanes`]).
//!
//! - [`Immediate`] wraps a blocking [`Compositor`] (the CPU one): the work happens in
//!   `submit`, `receive` copies the picture into the planes given.
//! - `gpu::batch::BatchCompositor` (feature `gpu`) hands the tick to a GPU renderer (one per
//!   `SharedRenderer`: the rooms of a host share one), which records the ticks of every mixer
//!   on it into one submission; the readback of tick n overlaps
//!   the encoding of tick n−1.
//!
//! ```
//! use std::{collections::HashMap, sync::Arc};
//! use cloudmixer::compose::{create_pipelined, Backend, OutPlanes, OutputFormat};
//! use cloudmixer::model::frame::{ColorSpace, I420Image, VideoFrame};
//! use cloudmixer::model::layout::{Layout, Rect};
//! let layout = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
//! let mut frames = HashMap::new();
//! // tagged BT.709 (the output's space): the colour comes out as it went in
//! let f = VideoFrame::solid_i420(16, 16, [200, 90, 60]).unwrap().with_color(ColorSpace::BT709_LIMITED);
//! frames.insert("a".to_string(), Arc::new(f));
//! let mut c = create_pipelined(Backend::Cpu, 64, 32, OutputFormat::I420).unwrap();
//! c.submit(&layout, &frames).unwrap();
//! let mut img = I420Image::new(64, 32);
//! c.receive(&mut OutPlanes::i420(&mut img)).unwrap();
//! assert_eq!(img.yuv_at(10, 10), [200, 90, 60]);
//! ```

use super::{Backend, ComposeError, Compositor, Frames};
use crate::model::layout::Layout;
/// Moved to [`crate::model::picture`] (shared with the encoder); kept here for old paths.
pub use crate::model::picture::OutPlanes;
use crate::model::picture::OutputFormat;

/// A compositor the mixer drives one tick ahead: `submit` tick n, later `receive` it (in
/// submission order) into the encoder's frame.
pub trait Pipelined: Send {
    /// Starts composing one picture.
    fn submit(&mut self, layout: &Layout, frames: &Frames) -> Result<(), ComposeError>;
    /// Writes the oldest submitted picture into `out` (waits for it when it is not ready).
    fn receive(&mut self, out: &mut OutPlanes<'_>) -> Result<(), ComposeError>;
    /// Pictures submitted and not yet received.
    fn in_flight(&self) -> usize;
    /// Whether `receive` would return without waiting.
    fn is_ready(&self) -> bool;
    /// How many pictures the caller should keep in flight (1: none ahead, the CPU).
    fn depth(&self) -> usize;
    /// Short description, e.g. `cpu (rayon, 2 threads)` or the adapter name.
    fn describe(&self) -> String;
}

/// A blocking [`Compositor`] as a [`Pipelined`] one: at most one picture in flight.
pub struct Immediate {
    inner: Box<dyn Compositor>,
    pending: bool,
}

impl Immediate {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Compositor>) -> Self {
        Immediate {
            inner,
            pending: false,
        }
    }
}

impl Pipelined for Immediate {
    fn submit(&mut self, layout: &Layout, frames: &Frames) -> Result<(), ComposeError> {
        if self.pending {
            return Err(ComposeError::Output(
                "a picture is in flight already (receive it first)".into(),
            ));
        }
        self.inner.compose(layout, frames)?;
        self.pending = true;
        Ok(())
    }

    fn receive(&mut self, out: &mut OutPlanes<'_>) -> Result<(), ComposeError> {
        if !self.pending {
            return Err(ComposeError::Output("nothing in flight".into()));
        }
        self.pending = false;
        Ok(out.write_i420(self.inner.picture())?)
    }

    fn in_flight(&self) -> usize {
        self.pending as usize
    }

    fn is_ready(&self) -> bool {
        self.pending
    }

    fn depth(&self) -> usize {
        1
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Creates the compositor a mixer uses, writing `format` (the encoder's own input format):
/// the CPU compositor behind [`Immediate`], or a GPU compositor on a batch renderer of its own
/// (`gpu::batch`, feature `gpu`; `create_pipelined_on` (feature `gpu`) shares one). Backend choice as in
/// [`super::create`]; without the `gpu` feature `Auto` is the CPU and `Gpu` is refused
/// ([`ComposeError::NotBuilt`]).
pub fn create_pipelined(
    backend: Backend,
    width: u32,
    height: u32,
    format: OutputFormat,
) -> Result<Box<dyn Pipelined>, ComposeError> {
    #[cfg(feature = "gpu")]
    {
        create_pipelined_on(
            &super::gpu::batch::SharedRenderer::new(),
            backend,
            width,
            height,
            format,
        )
    }
    #[cfg(not(feature = "gpu"))]
    {
        // the CPU writes any format through `OutPlanes`
        let _ = format;
        match backend {
            Backend::Cpu | Backend::Auto => Ok(cpu(width, height)),
            Backend::Gpu => Err(ComposeError::gpu_not_built()),
        }
    }
}

fn cpu(width: u32, height: u32) -> Box<dyn Pipelined> {
    Box::new(Immediate::new(Box::new(super::cpu::CpuCompositor::new(
        width, height,
    ))))
}

/// As [`create_pipelined`], a GPU compositor on `gpu`'s renderer: every compositor created
/// on one [`SharedRenderer`](super::gpu::batch::SharedRenderer) batches with the others. The
/// CPU backend (and `Auto` without a hardware GPU) opens nothing on it.
#[cfg(feature = "gpu")]
pub fn create_pipelined_on(
    gpu: &super::gpu::batch::SharedRenderer,
    backend: Backend,
    width: u32,
    height: u32,
    format: OutputFormat,
) -> Result<Box<dyn Pipelined>, ComposeError> {
    use super::gpu::batch::BatchCompositor;
    use super::gpu::AdapterPolicy;
    let on = |policy| {
        gpu.get(policy)
            .and_then(|r| BatchCompositor::with_renderer(r, width, height, format))
    };
    match backend {
        Backend::Cpu => Ok(cpu(width, height)),
        Backend::Gpu => Ok(Box::new(on(AdapterPolicy::AllowSoftware)?)),
        Backend::Auto => match on(AdapterPolicy::HardwareOnly) {
            Ok(g) => Ok(Box::new(g)),
            Err(e) => {
                tracing::info!(reason = %e, "no usable hardware GPU, compositing on the CPU");
                Ok(cpu(width, height))
            }
        },
    }
}
