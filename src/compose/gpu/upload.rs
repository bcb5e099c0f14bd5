//! Persistent per-source textures and their upload.
//!
//! I420 → three R8Unorm textures; NV12 → R8Unorm + Rg8Unorm; RGBA → one Rgba8Unorm. The
//! textures are re-created only when the source's size or format changes, and a frame whose
//! [`VideoFrame::id`] was uploaded already is not uploaded again. Uploads go through per-frame
//! MAP_WRITE staging buffers (`UploadStaging`) written from the compositor's own thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;

use super::device::{GpuContext, GpuError};
use super::pipeline::Pipelines;
use super::readback::{padded, wait_mapped, MapState};
use crate::model::frame::{PixelFormat, VideoFrame};

/// The GPU copy of one source.
pub(crate) struct SourceTextures {
    key: (u32, u32, PixelFormat),
    textures: Vec<wgpu::Texture>,
    /// Group 1 of the compose pipelines: the planes plus dummies.
    pub bind_group: wgpu::BindGroup,
    last_id: Option<u64>,
    /// Frame counter of the compositor when this source was last drawn.
    pub last_used: u64,
}

fn plane_formats(f: PixelFormat) -> &'static [wgpu::TextureFormat] {
    use wgpu::TextureFormat::*;
    match f {
        PixelFormat::I420 => &[R8Unorm, R8Unorm, R8Unorm],
        PixelFormat::Nv12 => &[R8Unorm, Rg8Unorm],
        PixelFormat::Rgba => &[Rgba8Unorm],
    }
}

/// Texel size of plane `i` of a `w`x`h` frame.
fn plane_texels(f: PixelFormat, i: usize, w: u32, h: u32) -> (u32, u32) {
    match (f, i) {
        (_, 0) => (w, h),
        _ => (w.div_ceil(2), h.div_ceil(2)),
    }
}

impl SourceTextures {
    /// Textures for frames shaped like `frame` (not uploaded yet).
    pub fn new(device: &wgpu::Device, p: &Pipelines, frame: &VideoFrame) -> Result<Self, GpuError> {
        let (w, h, fmt) = (frame.width(), frame.height(), frame.format());
        let max = device.limits().max_texture_dimension_2d;
        if w > max || h > max {
            return Err(GpuError::Validation {
                adapter: String::new(),
                message: format!(
                    "source frame {w}x{h} exceeds the device's {max} px texture limit"
                ),
            });
        }
        let textures: Vec<wgpu::Texture> = plane_formats(fmt)
            .iter()
            .enumerate()
            .map(|(i, &format)| {
                let (tw, th) = plane_texels(fmt, i, w, h);
                device.create_texture(&wgpu::TextureDescriptor {
                    label: Some("source plane"),
                    size: wgpu::Extent3d {
                        width: tw,
                        height: th,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format,
                    usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                })
            })
            .collect();
        let views: Vec<wgpu::TextureView> = textures
            .iter()
            .map(|t| t.create_view(&Default::default()))
            .collect();
        let view = |i: usize| views.get(i).unwrap_or(&p.dummy_view);
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("source planes"),
            layout: &p.source_layout,
            entries: &[0u32, 1, 2].map(|b| wgpu::BindGroupEntry {
                binding: b,
                resource: wgpu::BindingResource::TextureView(view(b as usize)),
            }),
        });
        Ok(SourceTextures {
            key: (w, h, fmt),
            textures,
            bind_group,
            last_id: None,
            last_used: 0,
        })
    }

    /// Whether these textures fit `frame`'s size and format.
    pub fn fits(&self, frame: &VideoFrame) -> bool {
        self.key == (frame.width(), frame.height(), frame.format())
    }

    /// (width, height, format) of the textures: the geometry a draw's uniforms must match.
    pub fn geometry(&self) -> (u32, u32, PixelFormat) {
        self.key
    }

    /// The plane copies `frame` needs, unless it is the frame uploaded last (then `None`).
    /// Marks the frame as uploaded: the caller must carry the jobs out in this submission.
    pub fn jobs<'f>(&mut self, frame: &'f VideoFrame) -> Option<Vec<PlaneJob<'f>>> {
        if self.last_id == Some(frame.id()) {
            return None;
        }
        self.last_id = Some(frame.id());
        let (w, h, fmt) = self.key;
        let jobs = self
            .textures
            .iter()
            .zip(frame.planes())
            .enumerate()
            .map(|(i, (tex, plane))| {
                let (tw, th) = plane_texels(fmt, i, w, h);
                let (row, rows) = fmt.plane_size(i, w, h);
                PlaneJob {
                    texture: tex.clone(),
                    width: tw,
                    height: th,
                    row,
                    rows,
                    src: &plane.data,
                    stride: plane.stride,
                    offset: 0,
                    padded_row: padded(row as u32),
                }
            });
        Some(jobs.collect())
    }

    /// Forgets the uploaded frame (after a failed submission).
    pub fn invalidate(&mut self) {
        self.last_id = None;
    }
}

/// One source plane to copy: CPU rows → staging buffer (rows padded to 256 bytes) → texture.
pub(crate) struct PlaneJob<'f> {
    pub texture: wgpu::Texture,
    pub width: u32,
    pub height: u32,
    /// Bytes per row of the plane.
    pub row: usize,
    /// Rows.
    pub rows: usize,
    /// The frame's plane bytes and stride.
    pub src: &'f [u8],
    pub stride: usize,
    /// Offset in the staging buffer (set by [`UploadStaging::write`]).
    pub offset: u64,
    /// Bytes per row in the staging buffer.
    pub padded_row: u32,
}

/// Staging memory for one in-flight frame's uploads: a MAP_WRITE buffer written directly from
/// the compositor's thread (no device-wide lock held during the copy, unlike
/// `Queue::write_texture`, so many compositors upload concurrently), then copied into the textures by the frame's command buffer.
pub(crate) struct UploadStaging {
    buffer: Option<wgpu::Buffer>,
    state: MapState,
    submission: Option<wgpu::SubmissionIndex>,
}

impl UploadStaging {
    pub fn new() -> Self {
        UploadStaging {
            buffer: None,
            state: Arc::new(Mutex::new(None)),
            submission: None,
        }
    }

    /// Lays the jobs out, waits for the buffer to be mapped (it normally is: its last frame was
    /// read back already), copies the rows in (plane by plane on rayon's pool when `parallel`
    /// and the upload is large) and unmaps.
    /// Returns the buffer to copy from, or `None` when there is nothing to upload.
    pub fn write(
        &mut self,
        ctx: &GpuContext,
        jobs: &mut [PlaneJob<'_>],
        timeout: Duration,
        parallel: bool,
    ) -> Result<Option<wgpu::Buffer>, GpuError> {
        if jobs.is_empty() {
            return Ok(None);
        }
        let size = lay_out(jobs);
        let fits = self.buffer.as_ref().is_some_and(|b| b.size() >= size);
        if !fits {
            // grow with headroom, so that a source switching size does not re-allocate every frame
            let cap = (size + size / 4).div_ceil(256) * 256;
            self.buffer = Some(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload staging"),
                size: cap,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            }));
            self.state = Arc::new(Mutex::new(Some(Ok(()))));
            self.submission = None;
        }
        wait_mapped(ctx, &self.state, self.submission.clone(), timeout)?;
        let buffer = self.buffer.clone().expect("allocated above");
        let views = jobs
            .iter()
            .map(|j| {
                let len = j.padded_row as u64 * j.rows as u64;
                buffer
                    .slice(j.offset..j.offset + len)
                    .get_mapped_range_mut()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GpuError::Validation {
                adapter: ctx.adapter.to_string(),
                message: format!("upload staging: {e}"),
            })?;
        let copy = |(mut view, j): (wgpu::BufferViewMut, &PlaneJob<'_>)| {
            j.write_rows(&mut view);
        };
        let parts: Vec<_> = views.into_iter().zip(jobs.iter()).collect();
        if parallel && size > PARALLEL_UPLOAD_BYTES && parts.len() > 1 {
            parts.into_par_iter().for_each(copy);
        } else {
            parts.into_iter().for_each(copy);
        }
        buffer.unmap();
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(Some(buffer))
    }

    /// Re-maps the buffer for the next use once `submission` (which read it) completes.
    pub fn remap_after(&mut self, submission: wgpu::SubmissionIndex) {
        let Some(b) = &self.buffer else { return };
        self.submission = Some(submission);
        let state = self.state.clone();
        b.map_async(wgpu::MapMode::Write, .., move |r| {
            *state.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.map_err(|e| e.to_string()));
        });
    }
}

/// Uploads above this many bytes may copy their planes on rayon's pool.
const PARALLEL_UPLOAD_BYTES: u64 = 4 << 20;

/// One plane copy out of a staging buffer into a source texture (owned: recorded on the
/// thread that submits).
pub(crate) struct UploadCopy {
    pub texture: wgpu::Texture,
    pub width: u32,
    pub height: u32,
    pub offset: u64,
    pub padded_row: u32,
}

impl PlaneJob<'_> {
    /// The copy that moves this plane from the staging buffer into its texture.
    pub fn copy(&self) -> UploadCopy {
        UploadCopy {
            texture: self.texture.clone(),
            width: self.width,
            height: self.height,
            offset: self.offset,
            padded_row: self.padded_row,
        }
    }

    /// Copies the plane's rows into `view` (this job's part of a mapped staging buffer, from
    /// its start), each row at a multiple of `padded_row`.
    pub fn write_rows(&self, view: &mut wgpu::BufferViewMut) {
        let pr = self.padded_row as usize;
        let mut dst = view.slice(..);
        for r in 0..self.rows {
            dst.slice(r * pr..r * pr + self.row)
                .copy_from_slice(&self.src[r * self.stride..r * self.stride + self.row]);
        }
    }
}

/// Lays `jobs` out one after the other from offset 0 (each plane's rows padded to 256 bytes)
/// and returns the bytes they need.
pub(crate) fn lay_out(jobs: &mut [PlaneJob<'_>]) -> u64 {
    let mut size = 0u64;
    for j in jobs.iter_mut() {
        j.offset = size;
        size += j.padded_row as u64 * j.rows as u64;
    }
    size
}

/// Records the staging → texture copies.
pub(crate) fn encode_copies(
    enc: &mut wgpu::CommandEncoder,
    buffer: &wgpu::Buffer,
    jobs: &[UploadCopy],
) {
    for j in jobs {
        enc.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: j.offset,
                    bytes_per_row: Some(j.padded_row),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: &j.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: j.width,
                height: j.height,
                depth_or_array_layers: 1,
            },
        );
    }
}
