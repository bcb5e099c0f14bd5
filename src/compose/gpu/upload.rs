//! Persistent per-source textures and their upload.
//!
//! I420 → three R8Unorm textures; NV12 → R8Unorm + Rg8Unorm; RGBA → one Rgba8Unorm. The
//! textures are re-created only when the source's size or format changes, and a frame whose
//! [`VideoFrame::id`] was uploaded already is not uploaded again.

use super::device::GpuError;
use super::pipeline::Pipelines;
use crate::frame::{PixelFormat, VideoFrame};

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
                message: format!("source frame {w}x{h} exceeds the device's {max} px texture limit"),
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
        let views: Vec<wgpu::TextureView> = textures.iter().map(|t| t.create_view(&Default::default())).collect();
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

    /// Uploads `frame` unless it is the frame uploaded last; returns the bytes written.
    pub fn upload(&mut self, queue: &wgpu::Queue, frame: &VideoFrame) -> usize {
        if self.last_id == Some(frame.id()) {
            return 0;
        }
        let (w, h, fmt) = self.key;
        let mut bytes = 0;
        for (i, (tex, plane)) in self.textures.iter().zip(frame.planes()).enumerate() {
            let (tw, th) = plane_texels(fmt, i, w, h);
            let (row, rows) = fmt.plane_size(i, w, h);
            // the frame was validated: stride >= row, data >= stride * (rows - 1) + row
            let len = plane.stride * (rows - 1) + row;
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: tex,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                &plane.data[..len],
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(plane.stride as u32),
                    rows_per_image: None,
                },
                wgpu::Extent3d {
                    width: tw,
                    height: th,
                    depth_or_array_layers: 1,
                },
            );
            bytes += len;
        }
        self.last_id = Some(frame.id());
        bytes
    }
}
