//! The readback ring: MAP_READ staging buffers that receive the output planes, mapped
//! asynchronously so that composing frame n+1 never waits for frame n's readback.
//!
//! Each slot holds one frame: the Y plane, then the chroma plane(s), every row padded to
//! [`wgpu::COPY_BYTES_PER_ROW_ALIGNMENT`]; the padding is stripped when the frame is read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::device::{GpuContext, GpuError};
use crate::model::frame::I420Image;

/// Output pixel layout of the GPU compositor's readback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Planar Y, U, V (two R8 chroma targets).
    #[default]
    I420,
    /// Y plus interleaved UV (one Rg8 chroma target), what hardware encoders take.
    Nv12,
}

/// An output picture in NV12, BT.709 limited range, tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nv12Image {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Y plane, `width * height` bytes.
    pub y: Vec<u8>,
    /// Interleaved U, V: `width/2 * 2` bytes per row, `height/2` rows.
    pub uv: Vec<u8>,
}

impl Nv12Image {
    /// Splits UV into planar I420.
    pub fn to_i420(&self) -> I420Image {
        let mut img = I420Image {
            width: self.width,
            height: self.height,
            y: self.y.clone(),
            u: Vec::with_capacity(self.uv.len() / 2),
            v: Vec::with_capacity(self.uv.len() / 2),
        };
        for p in self.uv.chunks_exact(2) {
            img.u.push(p[0]);
            img.v.push(p[1]);
        }
        img
    }
}

/// One composed frame as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFrame {
    /// [`OutputFormat::I420`].
    I420(I420Image),
    /// [`OutputFormat::Nv12`].
    Nv12(Nv12Image),
}

impl OutputFrame {
    /// An empty frame of the given format (buffers grow on first use).
    pub fn empty(format: OutputFormat) -> Self {
        match format {
            OutputFormat::I420 => OutputFrame::I420(I420Image {
                width: 0,
                height: 0,
                y: Vec::new(),
                u: Vec::new(),
                v: Vec::new(),
            }),
            OutputFormat::Nv12 => OutputFrame::Nv12(Nv12Image {
                width: 0,
                height: 0,
                y: Vec::new(),
                uv: Vec::new(),
            }),
        }
    }

    /// The picture as I420 (a copy for NV12).
    pub fn to_i420(&self) -> I420Image {
        match self {
            OutputFrame::I420(i) => i.clone(),
            OutputFrame::Nv12(n) => n.to_i420(),
        }
    }

    /// A `width`x`height` frame of the given format (buffers zeroed).
    pub fn sized(format: OutputFormat, width: u32, height: u32) -> Self {
        let mut f = OutputFrame::empty(format);
        f.resize(width, height);
        f
    }

    /// Sets the size, growing or shrinking the buffers (their capacity is kept).
    pub fn resize(&mut self, width: u32, height: u32) {
        let (y, c) = (
            width as usize * height as usize,
            (width / 2 * (height / 2)) as usize,
        );
        match self {
            OutputFrame::I420(i) => {
                (i.width, i.height) = (width, height);
                i.y.resize(y, 0);
                i.u.resize(c, 0);
                i.v.resize(c, 0);
            }
            OutputFrame::Nv12(n) => {
                (n.width, n.height) = (width, height);
                n.y.resize(y, 0);
                n.uv.resize(2 * c, 0);
            }
        }
    }

    /// Its planes with their strides (I420: Y, U, V; NV12: Y, UV).
    pub fn planes(&self) -> Vec<(&[u8], usize)> {
        match self {
            OutputFrame::I420(i) => {
                let w = i.width as usize;
                vec![(&i.y[..], w), (&i.u[..], w / 2), (&i.v[..], w / 2)]
            }
            OutputFrame::Nv12(n) => {
                vec![(&n.y[..], n.width as usize), (&n.uv[..], n.width as usize)]
            }
        }
    }

    /// Its planes to write into.
    pub fn planes_mut(&mut self) -> crate::compose::OutPlanes<'_> {
        match self {
            OutputFrame::I420(i) => crate::compose::OutPlanes::i420(i),
            OutputFrame::Nv12(n) => crate::compose::OutPlanes::nv12(n),
        }
    }

    /// Width and height.
    pub fn size(&self) -> (u32, u32) {
        match self {
            OutputFrame::I420(i) => (i.width, i.height),
            OutputFrame::Nv12(n) => (n.width, n.height),
        }
    }
}

/// Where one output plane lies in a staging buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaneCopy {
    /// Byte offset in the staging buffer.
    pub offset: u64,
    /// Padded bytes per row (a multiple of 256).
    pub padded_row: u32,
    /// Texels per row.
    pub width: u32,
    /// Rows.
    pub rows: u32,
}

/// Rounds `n` up to a multiple of [`wgpu::COPY_BYTES_PER_ROW_ALIGNMENT`].
pub(crate) fn padded(n: u32) -> u32 {
    n.div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT
}

/// The planes of a `w`x`h` frame in `format`, and the staging buffer size.
pub(crate) fn plane_copies(format: OutputFormat, w: u32, h: u32) -> (Vec<PlaneCopy>, u64) {
    let (cw, ch) = (w / 2, h / 2);
    let dims: Vec<(u32, u32, u32)> = match format {
        OutputFormat::I420 => vec![(w, h, 1), (cw, ch, 1), (cw, ch, 1)],
        OutputFormat::Nv12 => vec![(w, h, 1), (cw, ch, 2)],
    };
    let mut off = 0u64;
    let planes = dims
        .into_iter()
        .map(|(pw, ph, bpp)| {
            let p = PlaneCopy {
                offset: off,
                padded_row: padded(pw * bpp),
                width: pw,
                rows: ph,
            };
            off += p.padded_row as u64 * ph as u64;
            p
        })
        .collect();
    (planes, off)
}

/// Copies one read-back picture (`data` starts at its first plane; planes laid out as
/// `planes`, rows padded) into `out`.
pub(crate) fn copy_out(
    data: &[u8],
    planes: &[PlaneCopy],
    out: &mut crate::compose::OutPlanes<'_>,
) -> Result<(), crate::compose::ComposeError> {
    let want = match out.format {
        OutputFormat::I420 => 3,
        OutputFormat::Nv12 => 2,
    };
    let p0 = planes.first().map_or((0, 0), |p| (p.width, p.rows));
    if planes.len() != want || p0 != (out.width, out.height) {
        return Err(crate::compose::ComposeError::Output(format!(
            "a {}-plane {}x{} picture into {:?} {}x{} planes",
            planes.len(),
            p0.0,
            p0.1,
            out.format,
            out.width,
            out.height
        )));
    }
    let mut src: [(&[u8], usize); 3] = [(&[], 0); 3];
    for (s, p) in src.iter_mut().zip(planes) {
        *s = (
            data.get(p.offset as usize..).unwrap_or(&[]),
            p.padded_row as usize,
        );
    }
    out.copy_planes(&src[..want])
}

/// Result of a `map_async`, set by its callback (`None` while pending).
pub(crate) type MapState = Arc<Mutex<Option<Result<(), String>>>>;

/// Waits until `state` is set, polling the device for `submission`.
pub(crate) fn wait_mapped(
    ctx: &GpuContext,
    state: &MapState,
    submission: Option<wgpu::SubmissionIndex>,
    timeout: Duration,
) -> Result<(), GpuError> {
    let deadline = Instant::now() + timeout;
    let err = |reason: String| GpuError::Readback {
        adapter: ctx.adapter.to_string(),
        reason,
    };
    loop {
        if let Some(r) = state.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return r.map_err(err);
        }
        ctx.check()?;
        let now = Instant::now();
        if now >= deadline {
            return Err(err(format!("timed out after {timeout:?}")));
        }
        match ctx.device.poll(wgpu::PollType::Wait {
            submission_index: submission.clone(),
            timeout: Some(deadline - now),
        }) {
            Ok(_) => {}
            Err(wgpu::PollError::Timeout) => {
                return Err(err(format!("timed out after {timeout:?}")))
            }
            Err(e) => return Err(err(e.to_string())),
        }
    }
}

/// One staging buffer and the state of its frame.
pub(crate) struct Slot {
    pub buffer: wgpu::Buffer,
    state: MapState,
    submission: Option<wgpu::SubmissionIndex>,
}

/// The ring of staging buffers.
pub(crate) struct Ring {
    pub slots: Vec<Slot>,
    pub planes: Vec<PlaneCopy>,
}

impl Ring {
    pub fn new(ctx: &GpuContext, format: OutputFormat, w: u32, h: u32, n: usize) -> Ring {
        let (planes, size) = plane_copies(format, w, h);
        let slots = (0..n.max(1))
            .map(|_| Slot {
                buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                state: Arc::new(Mutex::new(None)),
                submission: None,
            })
            .collect();
        Ring { slots, planes }
    }

    /// Starts mapping slot `i` after `submission` (call right after the submit that filled it).
    pub fn start_map(&mut self, i: usize, submission: wgpu::SubmissionIndex) {
        let slot = &mut self.slots[i];
        *slot.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
        slot.submission = Some(submission);
        let state = slot.state.clone();
        slot.buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            *state.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.map_err(|e| e.to_string()));
        });
    }

    /// Waits until slot `i` is mapped, polling the device for its submission.
    pub fn wait(&mut self, ctx: &GpuContext, i: usize, timeout: Duration) -> Result<(), GpuError> {
        let slot = &self.slots[i];
        wait_mapped(ctx, &slot.state, slot.submission.clone(), timeout)
    }

    /// Copies mapped slot `i` into `out` (stripping the row padding) and unmaps it.
    pub fn read(&mut self, i: usize, w: u32, h: u32, out: &mut OutputFrame) -> Result<(), String> {
        let slot = &mut self.slots[i];
        {
            let view = slot
                .buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| e.to_string())?;
            out.resize(w, h);
            copy_out(&view, &self.planes, &mut out.planes_mut()).map_err(|e| e.to_string())?;
        }
        slot.buffer.unmap();
        slot.submission = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_offsets_are_aligned() {
        let (p, size) = plane_copies(OutputFormat::I420, 1920, 1080);
        assert_eq!(p[0].padded_row, 2048);
        assert_eq!(p[1].offset, 2048 * 1080);
        assert_eq!(p[1].padded_row, 1024);
        assert_eq!(size, 2048 * 1080 + 2 * 1024 * 540);
        let (p, _) = plane_copies(OutputFormat::Nv12, 322, 242);
        assert_eq!((p[1].width, p[1].padded_row, p[1].rows), (161, 512, 121));
        assert!(p.iter().all(|p| p.offset % 256 == 0));
    }
}
