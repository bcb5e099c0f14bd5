//! The compositor interface the mixer uses: submit a tick now, receive it later, in order,
//! written straight into the encoder's own frame ([`OutPlanes`]).
//!
//! - [`Immediate`] wraps a blocking [`Compositor`] (the CPU one): the work happens in
//!   `submit`, `receive` copies the picture into the planes given.
//! - `gpu::batch::BatchCompositor` (feature `gpu`) hands the tick to the process's GPU renderer,
//!   which records the ticks of every mixer into one submission; the readback of tick n overlaps
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

use super::image::{Nv12Image, OutputFormat};
use super::{Backend, ComposeError, Compositor, Frames};
use crate::model::frame::I420Image;
use crate::model::layout::Layout;

/// Where a composed picture goes: the planes of an encoder frame (or any buffer), each with its
/// stride in bytes. I420: Y, U, V; NV12: Y, interleaved UV (the third plane empty).
pub struct OutPlanes<'a> {
    /// Picture width (chroma planes are `width / 2` wide, rounded down, as in [`I420Image`]).
    pub width: u32,
    /// Picture height (chroma planes have `height / 2` rows, rounded down).
    pub height: u32,
    /// I420 or NV12.
    pub format: OutputFormat,
    /// The planes and their strides.
    pub planes: [(&'a mut [u8], usize); 3],
}

impl<'a> OutPlanes<'a> {
    /// The planes of an [`I420Image`] (resized to nothing: the image must have its size).
    pub fn i420(img: &'a mut I420Image) -> Self {
        let (w, h) = (img.width, img.height);
        OutPlanes {
            width: w,
            height: h,
            format: OutputFormat::I420,
            planes: [
                (&mut img.y[..], w as usize),
                (&mut img.u[..], w as usize / 2),
                (&mut img.v[..], w as usize / 2),
            ],
        }
    }

    /// The planes of an [`Nv12Image`] (its buffers must have its size).
    pub fn nv12(img: &'a mut Nv12Image) -> Self {
        let w = img.width as usize;
        OutPlanes {
            width: img.width,
            height: img.height,
            format: OutputFormat::Nv12,
            planes: [(&mut img.y[..], w), (&mut img.uv[..], w), (&mut [], 0)],
        }
    }

    /// Bytes per row and rows of plane `i`.
    pub fn plane_size(&self, i: usize) -> (usize, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        match (self.format, i) {
            (_, 0) => (w, h),
            (OutputFormat::Nv12, 1) => (w / 2 * 2, h / 2),
            (OutputFormat::Nv12, _) => (0, 0),
            (OutputFormat::I420, _) => (w / 2, h / 2),
        }
    }

    /// Checks that every plane holds its rows at its stride.
    pub fn check(&self) -> Result<(), ComposeError> {
        if self.width == 0 || self.height == 0 {
            return Err(ComposeError::Output(format!(
                "{}x{} picture (non-zero sizes expected)",
                self.width, self.height
            )));
        }
        for (i, (data, stride)) in self.planes.iter().enumerate() {
            let (row, rows) = self.plane_size(i);
            if rows == 0 {
                continue;
            }
            if *stride < row || data.len() < (rows - 1) * stride + row {
                return Err(ComposeError::Output(format!(
                    "plane {i}: {} bytes at stride {stride} cannot hold {rows} rows of {row}",
                    data.len()
                )));
            }
        }
        Ok(())
    }

    /// Copies each of `src`'s planes, given as (bytes, stride), into the plane of the same
    /// index, row by row: the one plane copy of every compositor output (GPU readback rows
    /// padded to 256 bytes, pictures kept in memory, encoder frames with their own strides).
    pub fn copy_planes(&mut self, src: &[(&[u8], usize)]) -> Result<(), ComposeError> {
        self.check()?;
        for (i, &(data, stride)) in src.iter().enumerate() {
            let (row, rows) = self.plane_size(i);
            if rows == 0 {
                return Err(ComposeError::Output(format!(
                    "{} source planes for a {:?} picture",
                    src.len(),
                    self.format
                )));
            }
            if stride < row || data.len() < (rows - 1) * stride + row {
                return Err(ComposeError::Output(format!(
                    "source plane {i}: {} bytes at stride {stride} cannot hold {rows} rows of {row}",
                    data.len()
                )));
            }
            let (dst, dstride) = &mut self.planes[i];
            for r in 0..rows {
                dst[r * *dstride..r * *dstride + row]
                    .copy_from_slice(&data[r * stride..r * stride + row]);
            }
        }
        Ok(())
    }

    /// Copies (I420) or interleaves (NV12) a picture of the same size into the planes.
    pub fn write_i420(&mut self, img: &I420Image) -> Result<(), ComposeError> {
        if (img.width, img.height) != (self.width, self.height) {
            return Err(ComposeError::Output(format!(
                "{}x{} picture into {}x{} planes",
                img.width, img.height, self.width, self.height
            )));
        }
        let (w, cw) = (self.width as usize, self.width as usize / 2);
        match self.format {
            OutputFormat::I420 => self.copy_planes(&[(&img.y, w), (&img.u, cw), (&img.v, cw)]),
            OutputFormat::Nv12 => {
                self.copy_planes(&[(&img.y, w)])?;
                let (dst, stride) = &mut self.planes[1];
                for r in 0..self.height as usize / 2 {
                    let row = &mut dst[r * *stride..r * *stride + 2 * cw];
                    let (u, v) = (&img.u[r * cw..(r + 1) * cw], &img.v[r * cw..(r + 1) * cw]);
                    for (x, p) in row.chunks_exact_mut(2).enumerate() {
                        p[0] = u[x];
                        p[1] = v[x];
                    }
                }
                Ok(())
            }
        }
    }
}

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
        out.write_i420(self.inner.picture())
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
/// the CPU compositor behind [`Immediate`], or a GPU compositor on the process's batch
/// renderer (`gpu::batch`, feature `gpu`). Backend choice as in [`super::create`]; without the
/// `gpu` feature `Auto` is the CPU and `Gpu` is refused ([`ComposeError::NotBuilt`]).
pub fn create_pipelined(
    backend: Backend,
    width: u32,
    height: u32,
    format: OutputFormat,
) -> Result<Box<dyn Pipelined>, ComposeError> {
    let cpu = || -> Box<dyn Pipelined> {
        Box::new(Immediate::new(Box::new(super::cpu::CpuCompositor::new(
            width, height,
        ))))
    };
    #[cfg(feature = "gpu")]
    {
        use super::gpu::batch::BatchCompositor;
        use super::gpu::AdapterPolicy;
        match backend {
            Backend::Cpu => Ok(cpu()),
            Backend::Gpu => Ok(Box::new(BatchCompositor::new(
                width,
                height,
                format,
                AdapterPolicy::AllowSoftware,
            )?)),
            Backend::Auto => {
                match BatchCompositor::new(width, height, format, AdapterPolicy::HardwareOnly) {
                    Ok(g) => Ok(Box::new(g)),
                    Err(e) => {
                        tracing::info!(reason = %e, "no usable hardware GPU, compositing on the CPU");
                        Ok(cpu())
                    }
                }
            }
        }
    }
    #[cfg(not(feature = "gpu"))]
    {
        // the CPU writes any format through `OutPlanes`
        let _ = format;
        match backend {
            Backend::Cpu | Backend::Auto => Ok(cpu()),
            Backend::Gpu => Err(ComposeError::gpu_not_built()),
        }
    }
}
