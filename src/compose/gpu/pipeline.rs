//! Render pipelines (shared per device) and the per-item uniforms (one per item and output
//! plane), computed on the CPU from [`crate::model::layout::place`] and [`crate::model::color`].

use std::num::NonZeroU64;

use bytemuck::{Pod, Zeroable};

use crate::compose::sampling::plane_span;
use crate::model::color::{self, Affine};
use crate::model::frame::{PixelFormat, VideoFrame};
use crate::model::layout::{Item, Layout};

/// The WGSL source of the compositor (`shaders/compose.wgsl`).
pub const COMPOSE_WGSL: &str = include_str!("../../../shaders/compose.wgsl");

/// Bytes between two uniform entries (WebGPU's default `min_uniform_buffer_offset_alignment`).
pub const UNIFORM_STRIDE: u64 = 256;

/// `struct Item` of `compose.wgsl`, field by field (see the comments there).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct ItemUniform {
    /// Item rect in plane texels, clipped: x0, y0, x1, y1.
    pub rect: [i32; 4],
    /// Image span in plane texels: x0, y0, x1, y1 (x0 >= x1: none).
    pub img: [i32; 4],
    /// scale_x, src0_x, scale_y, src0_y.
    pub map: [f32; 4],
    /// Image origin x, y (output luma units); plane width, height.
    pub origin: [f32; 4],
    /// Colour map row for Y.
    pub m0: [f32; 4],
    /// Colour map row for U.
    pub m1: [f32; 4],
    /// Colour map row for V.
    pub m2: [f32; 4],
    /// Bar / placeholder colour (Y, U, V code values).
    pub fill: [f32; 4],
    /// Source texels: full w, h; chroma w, h.
    pub src_size: [u32; 4],
    /// mode, alpha, output subsampling, identity.
    pub params: [u32; 4],
}

/// `params.x` of [`ItemUniform`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// Bars / placeholder colour only.
    Fill = 0,
    /// I420 source.
    I420 = 1,
    /// NV12 source.
    Nv12 = 2,
    /// RGBA source.
    Rgba = 3,
}

/// A span in plane coordinates `[x0, x1) x [y0, y1)`, as the CPU compositor computes it.
fn span(x0: i64, x1: i64, y0: i64, y1: i64, sub: u32, pw: u32, ph: u32) -> Option<[i32; 4]> {
    let (a, b) = plane_span(x0, x1, sub);
    let (c, d) = plane_span(y0, y1, sub);
    let s = [a.max(0), c.max(0), b.min(pw as i64), d.min(ph as i64)];
    (s[2] > s[0] && s[3] > s[1]).then(|| s.map(|v| v as i32))
}

/// The uniforms of one item for the luma plane (`[0]`) and the chroma plane(s) (`[1]`);
/// `None` where the item is not visible in that plane.
pub fn item_uniforms(
    item: &Item,
    layout: &Layout,
    frame: Option<&VideoFrame>,
) -> [Option<ItemUniform>; 2] {
    let (cw, ch) = (layout.width, layout.height);
    let r = item.rect;
    let alpha = (item.alpha * 255.0).round().clamp(0.0, 255.0) as u32;
    let place = frame.map(|f| (f, item.place(f.width(), f.height(), f.sar)));
    let mut out = [None, None];
    for (k, sub) in [1u32, 2].into_iter().enumerate() {
        let (pw, ph) = (cw / sub, ch / sub);
        let Some(rect) = span(r.x as i64, r.right(), r.y as i64, r.bottom(), sub, pw, ph) else {
            continue;
        };
        let mut u = ItemUniform {
            rect,
            img: [0; 4],
            map: [0.0; 4],
            origin: [0.0, 0.0, pw as f32, ph as f32],
            m0: [0.0; 4],
            m1: [0.0; 4],
            m2: [0.0; 4],
            fill: [0.0; 4],
            src_size: [1; 4],
            params: [Mode::Fill as u32, alpha, sub, 0],
        };
        let fill = match place {
            None => layout.placeholder,
            Some((f, p)) => {
                let d = p.dst;
                let (x0, x1) = ((d.x as i64).max(r.x as i64), d.right().min(r.right()));
                let (y0, y1) = ((d.y as i64).max(r.y as i64), d.bottom().min(r.bottom()));
                if let Some(img) = span(x0, x1, y0, y1, sub, pw, ph) {
                    u.img = img;
                    let (sx, _) = p.map_x();
                    let (sy, _) = p.map_y();
                    // the same map, rebased on the image origin: s = (X - dst.x) * scale + src.x
                    u.map = [sx as f32, p.src.x as f32, sy as f32, p.src.y as f32];
                    u.origin[0] = d.x as f32;
                    u.origin[1] = d.y as f32;
                    u.src_size = [
                        f.width(),
                        f.height(),
                        f.width().div_ceil(2),
                        f.height().div_ceil(2),
                    ];
                    let (mode, m): (Mode, Affine) = match f.format() {
                        PixelFormat::I420 => (Mode::I420, color::yuv_to_output(f.color)),
                        PixelFormat::Nv12 => (Mode::Nv12, color::yuv_to_output(f.color)),
                        PixelFormat::Rgba => (Mode::Rgba, color::rgb_to_output()),
                    };
                    u.params[0] = mode as u32;
                    u.params[3] = (mode != Mode::Rgba && m == color::IDENTITY) as u32;
                    u.m0 = m[0];
                    u.m1 = m[1];
                    u.m2 = m[2];
                }
                layout.background
            }
        };
        u.fill = [fill[0] as f32, fill[1] as f32, fill[2] as f32, 0.0];
        out[k] = Some(u);
    }
    out
}

/// Bind group layouts, pipelines and the dummy textures of one device.
pub struct Pipelines {
    /// group 0: the item uniform (dynamic offset).
    pub item_layout: wgpu::BindGroupLayout,
    /// group 1: three source planes.
    pub source_layout: wgpu::BindGroupLayout,
    /// Y plane into an R8Unorm target.
    pub y: wgpu::RenderPipeline,
    /// Chroma into one Rg8Unorm target (NV12 output).
    pub uv: wgpu::RenderPipeline,
    /// Chroma into two R8Unorm targets (I420 output).
    pub u_v: wgpu::RenderPipeline,
    /// A 1x1 R8 texture view bound where a format has fewer planes.
    pub dummy_view: wgpu::TextureView,
    /// Source bind group for items without a source (all dummies).
    pub empty_source: wgpu::BindGroup,
}

impl Pipelines {
    /// Builds everything from `shaders/compose.wgsl`.
    pub fn new(device: &wgpu::Device) -> Self {
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some("compose.wgsl"),
            source: wgpu::ShaderSource::Wgsl(COMPOSE_WGSL.into()),
        };
        let module = if std::env::var("CLOUDMIXER_GPU_CHECKED").is_ok_and(|v| v == "1") {
            device.create_shader_module(desc)
        } else {
            // SAFETY: every textureLoad index is clamped to [0, n - 1] by `tap()`, where n is
            // the bound texture's size (`src_size`, set from the same frame that sized the
            // textures, in the same `submit`); the dummy 1x1 planes are never loaded (their
            // modes do not read them); there are no loops and no arrays. So wgpu's injected
            // bounds checks (a size query per load) never fire and can be left out.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        };
        let item_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("item uniform"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: NonZeroU64::new(std::mem::size_of::<ItemUniform>() as u64),
                },
                count: None,
            }],
        });
        let tex = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let source_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("source planes"),
            entries: &[tex(0), tex(1), tex(2)],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("compose"),
            bind_group_layouts: &[Some(&item_layout), Some(&source_layout)],
            immediate_size: 0,
        });
        let blend = wgpu::BlendComponent {
            src_factor: wgpu::BlendFactor::SrcAlpha,
            dst_factor: wgpu::BlendFactor::OneMinusSrcAlpha,
            operation: wgpu::BlendOperation::Add,
        };
        let target = |format| {
            Some(wgpu::ColorTargetState {
                format,
                blend: Some(wgpu::BlendState {
                    color: blend,
                    alpha: blend,
                }),
                write_mask: wgpu::ColorWrites::ALL,
            })
        };
        let pipeline = |label: &str, entry: &str, targets: &[Option<wgpu::ColorTargetState>]| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(&layout),
                vertex: wgpu::VertexState {
                    module: &module,
                    entry_point: Some("vs_main"),
                    compilation_options: Default::default(),
                    buffers: &[],
                },
                primitive: wgpu::PrimitiveState {
                    topology: wgpu::PrimitiveTopology::TriangleStrip,
                    ..Default::default()
                },
                depth_stencil: None,
                multisample: wgpu::MultisampleState::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    targets,
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        let r8 = wgpu::TextureFormat::R8Unorm;
        let y = pipeline("compose Y", "fs_y", &[target(r8)]);
        let uv = pipeline(
            "compose UV (NV12)",
            "fs_uv",
            &[target(wgpu::TextureFormat::Rg8Unorm)],
        );
        let u_v = pipeline("compose U+V (I420)", "fs_u_v", &[target(r8), target(r8)]);
        let dummy = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("dummy plane"),
            size: wgpu::Extent3d {
                width: 1,
                height: 1,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: r8,
            usage: wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        });
        let dummy_view = dummy.create_view(&Default::default());
        let empty_source = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("no source"),
            layout: &source_layout,
            entries: &[0, 1, 2].map(|binding| wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::TextureView(&dummy_view),
            }),
        });
        Pipelines {
            item_layout,
            source_layout,
            y,
            uv,
            u_v,
            dummy_view,
            empty_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layout::Rect;

    #[test]
    fn uniform_layout_matches_wgsl() {
        assert_eq!(std::mem::size_of::<ItemUniform>(), 160);
        assert!(std::mem::size_of::<ItemUniform>() as u64 <= UNIFORM_STRIDE);
    }

    #[test]
    fn spans_follow_the_cpu_rule() {
        let l = Layout::cameras(64, 32, &[("a", Rect::new(3, 5, 10, 7))]);
        let f = VideoFrame::solid_i420(10, 7, [1, 2, 3])
            .unwrap()
            .with_color(crate::model::color::ColorSpace::BT709_LIMITED);
        let [y, c] = item_uniforms(&l.items[0], &l, Some(&f));
        let (y, c) = (y.unwrap(), c.unwrap());
        assert_eq!(y.rect, [3, 5, 13, 12]);
        assert_eq!(y.img, [3, 5, 13, 12]);
        // chroma sample c belongs when its centre 2c+1 lies inside [3, 13) x [5, 12)
        assert_eq!(c.rect, [1, 2, 6, 6]);
        assert_eq!(c.params, [Mode::I420 as u32, 255, 2, 1]);
        // a 1-px-wide rect at an even x has no chroma sample
        let l = Layout::cameras(64, 32, &[("a", Rect::new(4, 4, 1, 8))]);
        let [y, c] = item_uniforms(&l.items[0], &l, None);
        assert!(y.is_some() && c.is_none());
        assert_eq!(y.unwrap().params[0], Mode::Fill as u32);
    }
}
