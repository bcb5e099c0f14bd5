//! Compositors: turn a [`Layout`] and the latest frame of each source into one output picture.
//!
//! [`cpu::CpuCompositor`] is the reference (and the production backend on machines without a
//! GPU). Both backends take every rectangle and sampling map from [`crate::model::layout`] and every
//! colour map from [`crate::model::color`]; the sampling rule they share is written out in
//! [`sampling`].
//!
//! The GPU backend (`gpu`, wgpu) is compiled with the cargo feature `gpu` (on by default);
//! without it [`Backend::Auto`] composites on the CPU and [`Backend::Gpu`] is refused with
//! [`ComposeError::NotBuilt`].

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
/// The picture types, moved to [`crate::model::picture`] (neutral to compositors and codecs);
/// re-exported here so that the old paths keep working.
pub mod image {
    pub use crate::model::picture::{Nv12Image, OutputFormat, OutputFrame};
}
pub mod pipelined;
pub mod sampling;
pub mod scene;
pub mod text;

use std::collections::HashMap;

use thiserror::Error;

pub use crate::model::picture::{Nv12Image, OutputFormat, OutputFrame};
#[cfg(feature = "gpu")]
pub use pipelined::create_pipelined_on;
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
    /// The wgpu compositor (also accepts a software adapter such as lavapipe). Needs the cargo
    /// feature `gpu`: a build without it refuses it with [`ComposeError::NotBuilt`].
    Gpu,
}

impl Backend {
    /// Its name, as [`FromStr`](std::str::FromStr) parses it: `auto`, `cpu` or `gpu`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }
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
    /// The requested backend is not compiled into this build: the cargo feature that brings it
    /// (`gpu`) was off.
    #[error(
        "the {backend} backend is not in this build of cloudmixer (built without its cargo \
         feature `{feature}`); use the cpu or auto backend, or build with --features {feature}"
    )]
    NotBuilt {
        /// The backend asked for (`gpu`).
        backend: &'static str,
        /// The cargo feature that brings it (`gpu`).
        feature: &'static str,
    },
    /// A GPU error (validation, device loss, out of memory).
    #[error("gpu: {0}")]
    Gpu(String),
    /// The planes a picture is written into do not fit it, or the call order was wrong.
    #[error("output: {0}")]
    Output(String),
}

impl From<crate::model::picture::PlaneError> for ComposeError {
    fn from(e: crate::model::picture::PlaneError) -> Self {
        ComposeError::Output(e.0)
    }
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

    /// [`ComposeError::NotBuilt`] for the GPU backend (a build without the `gpu` feature).
    #[cfg(not(feature = "gpu"))]
    pub(crate) fn gpu_not_built() -> Self {
        ComposeError::NotBuilt {
            backend: Backend::Gpu.name(),
            feature: "gpu",
        }
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
///   [`ComposeError::Unavailable`] when there is none, [`ComposeError::NotBuilt`] in a build
///   without the `gpu` feature.
/// - `Auto`: the wgpu compositor when a hardware GPU exists (or `CLOUDMIXER_ADAPTER` names an
///   adapter), else the CPU compositor (wgpu on lavapipe is far slower than the CPU path); the
///   CPU compositor in a build without the `gpu` feature.
///
/// `describe()` on the result names the backend and, for the GPU, the adapter.
#[cfg(feature = "gpu")]
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

/// Creates a compositor of the given backend for a `width`x`height` canvas.
///
/// This build has no `gpu` feature: `Cpu` and `Auto` give the rayon compositor, `Gpu` is
/// refused with [`ComposeError::NotBuilt`].
#[cfg(not(feature = "gpu"))]
pub fn create(
    backend: Backend,
    width: u32,
    height: u32,
) -> Result<Box<dyn Compositor>, ComposeError> {
    match backend {
        Backend::Cpu | Backend::Auto => Ok(Box::new(cpu::CpuCompositor::new(width, height))),
        Backend::Gpu => Err(ComposeError::gpu_not_built()),
    }
}

#[cfg(all(test, not(feature = "gpu")))]
mod no_gpu_tests {
    use super::*;

    /// Without the `gpu` feature the GPU backend is a typed error that names the feature (no
    /// panic, no fallback); `auto` composites on the CPU.
    #[test]
    fn the_gpu_backend_is_refused_without_the_gpu_feature() {
        let e = create(Backend::Gpu, 64, 48).err().expect("refused");
        assert!(
            matches!(
                e,
                ComposeError::NotBuilt {
                    backend: "gpu",
                    feature: "gpu"
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("feature `gpu`"), "{msg}");
        let e = create_pipelined(Backend::Gpu, 64, 48, OutputFormat::Nv12)
            .err()
            .expect("refused");
        assert!(matches!(e, ComposeError::NotBuilt { .. }), "{e:?}");
        // the parser still knows the name: the error comes from the choice, with the reason
        assert_eq!("gpu".parse::<Backend>(), Ok(Backend::Gpu));
        for b in [Backend::Auto, Backend::Cpu] {
            assert!(create(b, 64, 48).unwrap().describe().starts_with("cpu"));
            let p = create_pipelined(b, 64, 48, OutputFormat::I420).unwrap();
            assert!(p.describe().starts_with("cpu"));
        }
    }
}
