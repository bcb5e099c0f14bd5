//! The readback ring: MAP_READ staging buffers that receive the output planes, mapped
//! asynchronously so that composing frame n+1 never waits for frame n's readback.
//!
//! Each slot holds one frame: the Y plane, then the chroma plane(s), every row padded to
//! [`wgpu::COPY_BYTES_PER_ROW_ALIGNMENT`]; the padding is stripped when the frame is read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::device::{GpuContext, GpuError};
pub use crate::model::picture::{Nv12Image, OutputFormat, OutputFrame};

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
    Ok(out.copy_planes(&src[..want])?)
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
