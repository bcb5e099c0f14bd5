//! One mixer's GPU state, shared by [`super::GpuCompositor`] and [`super::batch`]:
//! its output targets, its source textures, its item uniforms and the draws built from them;
//! and a [`Recording`] — everything one frame needs, owned, so that another thread (the batch
//! renderer) can record it into a command encoder of its own.

use std::collections::HashMap;
use std::sync::Arc;

use super::device::{GpuContext, GpuError};
use super::pipeline::{item_uniforms, ItemUniform, Pipelines, UNIFORM_STRIDE};
use super::readback::{OutputFormat, PlaneCopy};
use super::upload::{encode_copies, PlaneJob, SourceTextures, UploadCopy};
use crate::compose::Frames;
use crate::model::frame::{FrameKey, PixelFormat, VideoFrame};
use crate::model::layout::{Item, Layout};

/// Frames after which an unused source's textures are dropped.
const EVICT_AFTER: u64 = 300;

/// Per pass (Y, chroma): the uniform offset and source bind group of each draw.
pub(crate) type Passes = [Vec<(u32, wgpu::BindGroup)>; 2];

/// A layout generation and, per item, its source id and frame geometry.
type PlanKey = (u64, Vec<(Option<String>, Option<FrameKey>)>);

/// One item's draws: uniform offsets per plane kind, and its source id.
struct Draw {
    source: Option<String>,
    /// The source geometry its uniforms were built for: the draw samples only textures of
    /// exactly this size and format (the shader runs without bounds checks).
    expect: Option<(u32, u32, PixelFormat)>,
    offsets: [Option<u32>; 2],
}

/// The render targets of one output picture: Y, then U and V (I420) or UV (NV12).
pub(crate) struct Targets {
    y: wgpu::Texture,
    y_view: wgpu::TextureView,
    chroma: Vec<wgpu::Texture>,
    chroma_views: Vec<wgpu::TextureView>,
    format: OutputFormat,
}

impl Targets {
    pub fn new(ctx: &GpuContext, width: u32, height: u32, format: OutputFormat) -> Targets {
        let tex = |label, w, h, format| {
            ctx.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d {
                    width: w,
                    height: h,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
                view_formats: &[],
            })
        };
        let r8 = wgpu::TextureFormat::R8Unorm;
        let y = tex("out Y", width, height, r8);
        let chroma = match format {
            OutputFormat::I420 => vec![
                tex("out U", width / 2, height / 2, r8),
                tex("out V", width / 2, height / 2, r8),
            ],
            OutputFormat::Nv12 => vec![tex(
                "out UV",
                width / 2,
                height / 2,
                wgpu::TextureFormat::Rg8Unorm,
            )],
        };
        Targets {
            y_view: y.create_view(&Default::default()),
            chroma_views: chroma
                .iter()
                .map(|t| t.create_view(&Default::default()))
                .collect(),
            y,
            chroma,
            format,
        }
    }

    /// Records the copies of every output plane into `buffer` at `base` + each plane's offset.
    pub fn encode_readback(
        &self,
        enc: &mut wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        base: u64,
        planes: &[PlaneCopy],
    ) {
        let textures = std::iter::once(&self.y).chain(&self.chroma);
        for (tex, pc) in textures.zip(planes) {
            enc.copy_texture_to_buffer(
                wgpu::TexelCopyTextureInfo {
                    texture: tex,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::TexelCopyBufferInfo {
                    buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: base + pc.offset,
                        bytes_per_row: Some(pc.padded_row),
                        rows_per_image: None,
                    },
                },
                wgpu::Extent3d {
                    width: pc.width,
                    height: pc.rows,
                    depth_or_array_layers: 1,
                },
            );
        }
    }
}

/// Everything one frame needs on the GPU, owned (wgpu handles are reference-counted), so
/// that it can be recorded on another thread.
pub(crate) struct Recording {
    pub targets: Arc<Targets>,
    pub background: [u8; 3],
    pub uniform_bg: wgpu::BindGroup,
    /// The draws (shared with the plan until the layout or a source's textures change).
    pub passes: Arc<Passes>,
    /// New item uniforms to write before this frame's passes (layout changed).
    pub uniform_write: Option<(wgpu::Buffer, Vec<u8>)>,
    /// Source uploads: the staging buffer and the plane copies out of it.
    pub uploads: Option<(wgpu::Buffer, Vec<UploadCopy>)>,
}

impl Recording {
    /// Records the upload copies and the two passes (the uniform write is the caller's: it
    /// must reach the queue before the submission that carries `enc`).
    pub fn encode(&self, p: &Pipelines, enc: &mut wgpu::CommandEncoder) {
        if let Some((buf, copies)) = &self.uploads {
            encode_copies(enc, buf, copies);
        }
        let t = &self.targets;
        let bg = self.background;
        let clear = |v: [u8; 2]| wgpu::Operations {
            load: wgpu::LoadOp::Clear(wgpu::Color {
                r: v[0] as f64 / 255.0,
                g: v[1] as f64 / 255.0,
                b: 0.0,
                a: 1.0,
            }),
            store: wgpu::StoreOp::Store,
        };
        let att = |view, v| {
            Some(wgpu::RenderPassColorAttachment {
                view,
                depth_slice: None,
                resolve_target: None,
                ops: clear(v),
            })
        };
        let chroma_atts: Vec<_> = match t.format {
            OutputFormat::I420 => vec![
                att(&t.chroma_views[0], [bg[1], 0]),
                att(&t.chroma_views[1], [bg[2], 0]),
            ],
            OutputFormat::Nv12 => vec![att(&t.chroma_views[0], [bg[1], bg[2]])],
        };
        let chroma_pipe = match t.format {
            OutputFormat::I420 => &p.u_v,
            OutputFormat::Nv12 => &p.uv,
        };
        let y_atts = [att(&t.y_view, [bg[0], 0])];
        let passes: [(
            &[Option<wgpu::RenderPassColorAttachment>],
            &wgpu::RenderPipeline,
        ); 2] = [(&y_atts, &p.y), (&chroma_atts, chroma_pipe)];
        for ((atts, pipe), draws) in passes.into_iter().zip(self.passes.iter()) {
            let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("compose plane"),
                color_attachments: atts,
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_pipeline(pipe);
            for (off, src) in draws {
                pass.set_bind_group(0, &self.uniform_bg, &[*off]);
                pass.set_bind_group(1, src, &[]);
                pass.draw(0..4, 0..1);
            }
        }
    }
}

/// A mixer's sources, uniforms and draws.
pub(crate) struct Plan {
    uniform: wgpu::Buffer,
    uniform_slots: usize,
    uniform_bg: wgpu::BindGroup,
    sources: HashMap<String, SourceTextures>,
    draws: Vec<Draw>,
    /// What the uniforms were built for: the layout, and per item its source id and frame
    /// geometry (an item whose source changes in place, same generation, is seen).
    plan_key: Option<PlanKey>,
    /// The draws built from `draws` and `sources`, until either changes.
    passes: Option<Arc<Passes>>,
    frame_no: u64,
}

fn uniform_buffer(
    ctx: &GpuContext,
    p: &Pipelines,
    slots: usize,
) -> (wgpu::Buffer, wgpu::BindGroup) {
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("item uniforms"),
        size: slots as u64 * UNIFORM_STRIDE,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("item uniforms"),
        layout: &p.item_layout,
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &buf,
                offset: 0,
                size: wgpu::BufferSize::new(std::mem::size_of::<ItemUniform>() as u64),
            }),
        }],
    });
    (buf, bg)
}

fn source<'a>(it: &'a Item, frames: &'a Frames) -> (Option<&'a str>, Option<&'a VideoFrame>) {
    let id = it.kind.source_id();
    (id, id.and_then(|id| frames.get(id)).map(|f| &**f))
}

impl Plan {
    pub fn new(ctx: &GpuContext) -> Plan {
        let (uniform, uniform_bg) = uniform_buffer(ctx, ctx.pipelines(), 16);
        Plan {
            uniform,
            uniform_slots: 16,
            uniform_bg,
            sources: HashMap::new(),
            draws: Vec::new(),
            plan_key: None,
            passes: None,
            frame_no: 0,
        }
    }

    /// Creates / re-creates source textures and lists the plane uploads this frame needs
    /// (none for a source whose frame was uploaded already).
    pub fn source_jobs<'f>(
        &mut self,
        ctx: &GpuContext,
        layout: &Layout,
        frames: &'f Frames,
    ) -> Result<Vec<PlaneJob<'f>>, GpuError> {
        self.frame_no += 1;
        let frame_no = self.frame_no;
        let p = ctx.pipelines();
        let mut jobs = Vec::new();
        for it in &layout.items {
            let Some(id) = it.kind.source_id() else {
                continue;
            };
            let Some(f) = frames.get(id) else { continue };
            let st = match self.sources.get_mut(id) {
                Some(st) if st.fits(f) => st,
                _ => {
                    let st = SourceTextures::new(&ctx.device, p, f).map_err(|e| match e {
                        GpuError::Validation { message, .. } => GpuError::Validation {
                            adapter: ctx.adapter.to_string(),
                            message: format!("source {id:?}: {message}"),
                        },
                        e => e,
                    })?;
                    self.sources.insert(id.to_string(), st);
                    self.passes = None;
                    self.sources.get_mut(id).expect("just inserted")
                }
            };
            st.last_used = frame_no;
            if let Some(j) = st.jobs(f) {
                jobs.extend(j);
            }
        }
        let before = self.sources.len();
        self.sources
            .retain(|_, s| frame_no - s.last_used < EVICT_AFTER);
        if self.sources.len() != before {
            self.passes = None;
        }
        Ok(jobs)
    }

    /// Rebuilds the item uniforms when the layout or a source's geometry changed; returns the
    /// bytes to write into the uniform buffer then (`None`: unchanged, nothing allocated).
    pub fn prepare_uniforms(
        &mut self,
        ctx: &GpuContext,
        layout: &Layout,
        frames: &Frames,
    ) -> Option<(wgpu::Buffer, Vec<u8>)> {
        let unchanged = self.plan_key.as_ref().is_some_and(|(g, keys)| {
            *g == layout.generation
                && keys.len() == layout.items.len()
                && keys.iter().zip(&layout.items).all(|((kid, k), it)| {
                    let (id, f) = source(it, frames);
                    kid.as_deref() == id && *k == f.map(VideoFrame::key)
                })
        });
        if unchanged {
            return None;
        }
        let items: Vec<_> = layout.items.iter().map(|it| source(it, frames)).collect();
        let key = (
            layout.generation,
            items
                .iter()
                .map(|(id, f)| (id.map(str::to_string), f.map(VideoFrame::key)))
                .collect::<Vec<_>>(),
        );
        let mut data: Vec<u8> = Vec::new();
        self.draws.clear();
        for (it, (id, f)) in layout.items.iter().zip(&items) {
            let u = item_uniforms(it, layout, *f);
            let mut offsets = [None, None];
            for (k, u) in u.iter().enumerate() {
                if let Some(u) = u {
                    offsets[k] = Some(data.len() as u32);
                    data.extend_from_slice(bytemuck::bytes_of(u));
                    data.resize(
                        data.len() + UNIFORM_STRIDE as usize - std::mem::size_of::<ItemUniform>(),
                        0,
                    );
                }
            }
            self.draws.push(Draw {
                source: f.and(*id).map(str::to_string),
                expect: f.map(|f| (f.width(), f.height(), f.format())),
                offsets,
            });
        }
        let slots = data.len() / UNIFORM_STRIDE as usize;
        if slots > self.uniform_slots {
            let n = slots.next_power_of_two();
            let (b, bg) = uniform_buffer(ctx, ctx.pipelines(), n);
            self.uniform = b;
            self.uniform_bg = bg;
            self.uniform_slots = n;
        }
        self.plan_key = Some(key);
        self.passes = None;
        (!data.is_empty()).then(|| (self.uniform.clone(), data))
    }

    /// The draws of both passes with their bind groups: only the very textures the uniforms
    /// were built for (a missing or differently sized source is not drawn rather than sampled
    /// out of bounds). Built again only after the layout or a source's textures changed.
    pub fn passes(&mut self, p: &Pipelines) -> Arc<Passes> {
        let (draws, sources) = (&self.draws, &self.sources);
        self.passes
            .get_or_insert_with(|| {
                let mut out: Passes = [Vec::new(), Vec::new()];
                for (k, pass) in out.iter_mut().enumerate() {
                    for d in draws {
                        let Some(off) = d.offsets[k] else { continue };
                        let src = match &d.source {
                            None => &p.empty_source,
                            Some(s) => match sources.get(s) {
                                Some(t) if Some(t.geometry()) == d.expect => &t.bind_group,
                                _ => continue,
                            },
                        };
                        pass.push((off, src.clone()));
                    }
                }
                Arc::new(out)
            })
            .clone()
    }

    /// The uniform bind group.
    pub fn uniform_bind_group(&self) -> &wgpu::BindGroup {
        &self.uniform_bg
    }

    /// Forgets every uploaded frame and the uniforms (after a failed submission: whatever was
    /// half-done is redone next time).
    pub fn invalidate(&mut self) {
        self.sources
            .values_mut()
            .for_each(SourceTextures::invalidate);
        self.plan_key = None;
        self.passes = None;
    }
}
