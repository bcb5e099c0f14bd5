//! The wgpu compositor: upload source planes → one render pass per output plane → readback ring.
//!
//! - [`device`]: adapter choice (`CLOUDMIXER_ADAPTER`, `WGPU_BACKEND`), the process-wide shared
//!   device, error scopes and device-loss handling ([`GpuError`]).
//! - [`upload`]: persistent per-source textures, uploads skipped when the frame id is unchanged.
//! - [`pipeline`]: the render pipelines and the per-item uniforms (rects, sampling maps, colour
//!   matrices all computed on the CPU from [`crate::model::layout`] and [`crate::model::color`]).
//! - [`readback`]: a ring of MAP_READ buffers; [`OutputFormat::I420`] or [`OutputFormat::Nv12`].
//!
//! Output strategy: each output plane is rendered directly (a Y pass into an R8 target, a chroma
//! pass into two R8 targets for I420 or one Rg8 target for NV12); there is no RGBA intermediate.
//!
//! Pipelined use: [`GpuCompositor::submit`] returns a [`Ticket`] without waiting;
//! [`GpuCompositor::receive`] returns frames in submission order. Up to `ring` frames may be in
//! flight; submitting more first completes the oldest (kept until received).
//! [`Compositor::compose`] is submit + wait.
//!
//! ```no_run
//! use std::{collections::HashMap, sync::Arc};
//! use cloudmixer::compose::gpu::{GpuCompositor, GpuOptions};
//! use cloudmixer::model::frame::VideoFrame;
//! use cloudmixer::model::layout::{Layout, Rect};
//! let layout = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
//! let mut frames = HashMap::new();
//! frames.insert("a".to_string(), Arc::new(VideoFrame::solid_i420(16, 16, [200, 90, 60]).unwrap()));
//! let mut c = GpuCompositor::new(64, 32, GpuOptions::default()).unwrap();
//! let t0 = c.submit(&layout, &frames).unwrap();
//! let t1 = c.submit(&layout, &frames).unwrap();
//! let (t, frame) = c.receive().unwrap();
//! assert_eq!(t, t0);
//! ```

pub mod device;
pub mod pipeline;
pub mod readback;
pub mod upload;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use device::{adapters, shared, AdapterPolicy, AdapterSummary, GpuContext, GpuError};
pub use readback::{Nv12Image, OutputFormat, OutputFrame};

use self::pipeline::{item_uniforms, ItemUniform, UNIFORM_STRIDE};
use self::readback::Ring;
use self::upload::{PlaneJob, SourceTextures, UploadStaging};
use super::{ComposeError, Compositor, Frames};
use crate::model::frame::{FrameKey, I420Image, VideoFrame};
use crate::model::layout::Layout;

/// Options of a [`GpuCompositor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuOptions {
    /// Readback format of [`GpuCompositor::receive`] (`compose` always returns I420).
    pub output: OutputFormat,
    /// Readback buffers, i.e. frames that may be in flight (at least 1; default 3).
    pub ring: usize,
    /// Which adapters may be used.
    pub policy: AdapterPolicy,
    /// Longest wait for one readback before it is reported as an error.
    pub timeout: Duration,
    /// Copy large uploads (> 4 MiB) plane by plane on rayon's pool. Helps one compositor on a
    /// many-core machine; leave it off with many compositors (each already has its own thread)
    /// or few cores.
    pub parallel_upload: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            output: OutputFormat::I420,
            ring: 3,
            policy: AdapterPolicy::AllowSoftware,
            timeout: Duration::from_secs(20),
            parallel_upload: false,
        }
    }
}

/// Identifies a submitted frame; [`GpuCompositor::receive`] hands it back with the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Where the time went (seconds, summed over all frames).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuStats {
    /// Frames submitted.
    pub frames: u64,
    /// Source planes uploaded (bytes).
    pub upload_bytes: u64,
    /// Time preparing uploads: texture (re)creation and copying source planes into staging memory.
    pub upload_s: f64,
    /// Time building and submitting the command buffer (uniforms, passes, copies).
    pub submit_s: f64,
    /// Time blocked waiting for readbacks (GPU work not yet done).
    pub wait_s: f64,
    /// Time copying mapped readbacks out (padding stripped).
    pub copy_s: f64,
}

/// One item's draws: uniform offsets per plane kind, and its source id.
/// A layout generation and, per item, its source id and frame geometry.
type PlanKey = (u64, Vec<(Option<String>, Option<FrameKey>)>);

struct Draw {
    source: Option<String>,
    /// The source geometry its uniforms were built for: the draw samples only textures of
    /// exactly this size and format (the shader runs without bounds checks).
    expect: Option<(u32, u32, crate::model::frame::PixelFormat)>,
    offsets: [Option<u32>; 2],
}

struct Targets {
    y: wgpu::Texture,
    y_view: wgpu::TextureView,
    chroma: Vec<wgpu::Texture>,
    chroma_views: Vec<wgpu::TextureView>,
}

/// The wgpu compositor (see the module docs).
pub struct GpuCompositor {
    ctx: Arc<GpuContext>,
    width: u32,
    height: u32,
    opts: GpuOptions,
    targets: Targets,
    uniform: wgpu::Buffer,
    uniform_slots: usize,
    uniform_bg: wgpu::BindGroup,
    sources: HashMap<String, SourceTextures>,
    draws: Vec<Draw>,
    /// What the uniforms were built for: the layout, and per item its source id and frame
    /// geometry (an item whose source changes in place, same generation, is seen).
    plan_key: Option<PlanKey>,
    ring: Ring,
    uploads: Vec<UploadStaging>,
    in_flight: VecDeque<(Ticket, usize)>,
    ready: VecDeque<(Ticket, OutputFrame)>,
    next_ticket: u64,
    last: I420Image,
    scratch: OutputFrame,
    stats: GpuStats,
}

/// Frames after which an unused source's textures are dropped.
const EVICT_AFTER: u64 = 300;

impl GpuCompositor {
    /// A compositor for a `width`x`height` canvas on the process-wide shared device.
    pub fn new(width: u32, height: u32, opts: GpuOptions) -> Result<Self, GpuError> {
        let ctx = shared(opts.policy)?;
        Self::with_context(ctx, width, height, opts)
    }

    /// A compositor on a given device context.
    pub fn with_context(
        ctx: Arc<GpuContext>,
        width: u32,
        height: u32,
        opts: GpuOptions,
    ) -> Result<Self, GpuError> {
        if width < 2 || height < 2 {
            return Err(GpuError::Validation {
                adapter: ctx.adapter.to_string(),
                message: format!("canvas {width}x{height} is too small (at least 2x2)"),
            });
        }
        let c2 = ctx.clone();
        c2.scoped(|| {
            let p = ctx.pipelines();
            let dev = &ctx.device;
            let tex = |label, w, h, format| {
                dev.create_texture(&wgpu::TextureDescriptor {
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
            let chroma = match opts.output {
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
            let targets = Targets {
                y_view: y.create_view(&Default::default()),
                chroma_views: chroma
                    .iter()
                    .map(|t| t.create_view(&Default::default()))
                    .collect(),
                y,
                chroma,
            };
            let (uniform, uniform_bg) = Self::uniform_buffer(&ctx, p, 16);
            let ring = Ring::new(&ctx, opts.output, width, height, opts.ring.max(1));
            Ok(GpuCompositor {
                ctx: ctx.clone(),
                width,
                height,
                opts,
                targets,
                uniform,
                uniform_slots: 16,
                uniform_bg,
                sources: HashMap::new(),
                draws: Vec::new(),
                plan_key: None,
                uploads: (0..ring.slots.len())
                    .map(|_| UploadStaging::new())
                    .collect(),
                ring,
                in_flight: VecDeque::new(),
                ready: VecDeque::new(),
                next_ticket: 0,
                last: I420Image::new(width, height),
                scratch: OutputFrame::empty(opts.output),
                stats: GpuStats::default(),
            })
        })
    }

    fn uniform_buffer(
        ctx: &GpuContext,
        p: &pipeline::Pipelines,
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

    /// The adapter this compositor runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.ctx.adapter
    }

    /// The device context (shared with other compositors unless created privately).
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// The options it was created with.
    pub fn options(&self) -> GpuOptions {
        self.opts
    }

    /// Frames submitted but not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() + self.ready.len()
    }

    /// Time accounting since creation.
    pub fn stats(&self) -> GpuStats {
        self.stats
    }

    /// Creates / re-creates source textures and lists the plane uploads this frame needs.
    fn source_jobs<'f>(
        &mut self,
        layout: &Layout,
        frames: &'f Frames,
    ) -> Result<Vec<PlaneJob<'f>>, GpuError> {
        let frame_no = self.stats.frames + 1;
        let p = self.ctx.pipelines();
        let mut jobs = Vec::new();
        for it in &layout.items {
            let Some(id) = it.kind.source_id() else {
                continue;
            };
            let Some(f) = frames.get(id) else { continue };
            let st = match self.sources.get_mut(id) {
                Some(st) if st.fits(f) => st,
                _ => {
                    let st = SourceTextures::new(&self.ctx.device, p, f).map_err(|e| match e {
                        GpuError::Validation { message, .. } => GpuError::Validation {
                            adapter: self.ctx.adapter.to_string(),
                            message: format!("source {id:?}: {message}"),
                        },
                        e => e,
                    })?;
                    self.sources.insert(id.to_string(), st);
                    self.sources.get_mut(id).expect("just inserted")
                }
            };
            st.last_used = frame_no;
            if let Some(j) = st.jobs(f) {
                jobs.extend(j);
            }
        }
        self.sources
            .retain(|_, s| frame_no - s.last_used < EVICT_AFTER);
        Ok(jobs)
    }

    /// Rebuilds the item uniforms when the layout or a source's geometry changed.
    fn prepare_uniforms(&mut self, layout: &Layout, frames: &Frames) {
        fn source<'a>(
            it: &'a crate::model::layout::Item,
            frames: &'a Frames,
        ) -> (Option<&'a str>, Option<&'a VideoFrame>) {
            let id = it.kind.source_id();
            (id, id.and_then(|id| frames.get(id)).map(|f| &**f))
        }
        // unchanged layout and source geometry: nothing to do, and nothing allocated
        let unchanged = self.plan_key.as_ref().is_some_and(|(g, keys)| {
            *g == layout.generation
                && keys.len() == layout.items.len()
                && keys.iter().zip(&layout.items).all(|((kid, k), it)| {
                    let (id, f) = source(it, frames);
                    kid.as_deref() == id && *k == f.map(VideoFrame::key)
                })
        });
        if !unchanged {
            let p = self.ctx.pipelines();
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
                            data.len() + UNIFORM_STRIDE as usize
                                - std::mem::size_of::<ItemUniform>(),
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
                let (b, bg) = Self::uniform_buffer(&self.ctx, p, n);
                self.uniform = b;
                self.uniform_bg = bg;
                self.uniform_slots = n;
            }
            if !data.is_empty() {
                self.ctx.queue.write_buffer(&self.uniform, 0, &data);
            }
            self.plan_key = Some(key);
        }
    }

    /// Records the two passes and the readback copy into slot `slot`, and submits.
    fn encode_and_submit(
        &mut self,
        layout: &Layout,
        slot: usize,
        uploads: Option<(&wgpu::Buffer, &[PlaneJob<'_>])>,
    ) -> wgpu::SubmissionIndex {
        let p = self.ctx.pipelines();
        let bg = layout.background;
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("compose"),
            });
        if let Some((buf, jobs)) = uploads {
            upload::encode_copies(&mut enc, buf, jobs);
        }
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
        let chroma_atts: Vec<_> = match self.opts.output {
            OutputFormat::I420 => vec![
                att(&self.targets.chroma_views[0], [bg[1], 0]),
                att(&self.targets.chroma_views[1], [bg[2], 0]),
            ],
            OutputFormat::Nv12 => vec![att(&self.targets.chroma_views[0], [bg[1], bg[2]])],
        };
        let passes: [(
            &[Option<wgpu::RenderPassColorAttachment>],
            &wgpu::RenderPipeline,
            usize,
        ); 2] = [
            (&[att(&self.targets.y_view, [bg[0], 0])], &p.y, 0),
            (
                &chroma_atts,
                match self.opts.output {
                    OutputFormat::I420 => &p.u_v,
                    OutputFormat::Nv12 => &p.uv,
                },
                1,
            ),
        ];
        for (atts, pipe, k) in passes {
            let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("compose plane"),
                color_attachments: atts,
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_pipeline(pipe);
            for d in &self.draws {
                let Some(off) = d.offsets[k] else { continue };
                let src = match &d.source {
                    None => &p.empty_source,
                    // only the very textures the uniforms were built for: a missing or
                    // differently sized source is not drawn rather than sampled out of bounds
                    Some(s) => match self.sources.get(s) {
                        Some(t) if Some(t.geometry()) == d.expect => &t.bind_group,
                        _ => continue,
                    },
                };
                pass.set_bind_group(0, &self.uniform_bg, &[off]);
                pass.set_bind_group(1, src, &[]);
                pass.draw(0..4, 0..1);
            }
        }
        let buf = &self.ring.slots[slot].buffer;
        let textures = std::iter::once(&self.targets.y).chain(&self.targets.chroma);
        for (tex, pc) in textures.zip(&self.ring.planes) {
            enc.copy_texture_to_buffer(
                wgpu::TexelCopyTextureInfo {
                    texture: tex,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::TexelCopyBufferInfo {
                    buffer: buf,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: pc.offset,
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
        self.ctx.queue.submit([enc.finish()])
    }

    /// Submits one frame without waiting for it. Frames come back from [`Self::receive`] in
    /// order. When `ring` frames are in flight already, the oldest is completed first (and kept
    /// for `receive`).
    pub fn submit(&mut self, layout: &Layout, frames: &Frames) -> Result<Ticket, ComposeError> {
        if layout.width != self.width || layout.height != self.height {
            return Err(ComposeError::CanvasMismatch {
                got_w: layout.width,
                got_h: layout.height,
                want_w: self.width,
                want_h: self.height,
            });
        }
        if self.in_flight.len() >= self.ring.slots.len() {
            let mut out = OutputFrame::empty(self.opts.output);
            let t = self.finish_oldest(&mut out)?;
            self.ready.push_back((t, out));
        }
        let ticket = Ticket(self.next_ticket);
        let slot = (self.next_ticket % self.ring.slots.len() as u64) as usize;
        let ctx = self.ctx.clone();
        let r = ctx.scoped(|| {
            let t0 = Instant::now();
            let mut jobs = self.source_jobs(layout, frames)?;
            let staging = self.uploads[slot].write(
                &ctx,
                &mut jobs,
                self.opts.timeout,
                self.opts.parallel_upload,
            )?;
            self.stats.upload_bytes += jobs.iter().map(|j| (j.row * j.rows) as u64).sum::<u64>();
            let t1 = Instant::now();
            self.stats.upload_s += (t1 - t0).as_secs_f64();
            self.prepare_uniforms(layout, frames);
            let sub =
                self.encode_and_submit(layout, slot, staging.as_ref().map(|b| (b, &jobs[..])));
            if staging.is_some() {
                self.uploads[slot].remap_after(sub.clone());
            }
            self.ring.start_map(slot, sub);
            self.stats.submit_s += t1.elapsed().as_secs_f64();
            Ok(())
        });
        if let Err(e) = r {
            // whatever was half-done, upload everything again next time
            self.sources
                .values_mut()
                .for_each(SourceTextures::invalidate);
            return Err(e.into());
        }
        self.stats.frames += 1;
        self.next_ticket += 1;
        self.in_flight.push_back((ticket, slot));
        Ok(ticket)
    }

    fn finish_oldest(&mut self, out: &mut OutputFrame) -> Result<Ticket, GpuError> {
        let Some(&(ticket, slot)) = self.in_flight.front() else {
            return Err(GpuError::NothingInFlight);
        };
        let t0 = Instant::now();
        let r = self.ring.wait(&self.ctx, slot, self.opts.timeout);
        let t1 = Instant::now();
        self.stats.wait_s += (t1 - t0).as_secs_f64();
        self.in_flight.pop_front();
        r?;
        self.ring
            .read(slot, self.width, self.height, out)
            .map_err(|reason| GpuError::Readback {
                adapter: self.ctx.adapter.to_string(),
                reason,
            })?;
        self.stats.copy_s += t1.elapsed().as_secs_f64();
        Ok(ticket)
    }

    /// Waits for the oldest submitted frame and returns it.
    pub fn receive(&mut self) -> Result<(Ticket, OutputFrame), ComposeError> {
        let mut out = OutputFrame::empty(self.opts.output);
        let t = self.receive_into(&mut out)?;
        Ok((t, out))
    }

    /// As [`Self::receive`], reusing `out`'s buffers (no allocation in steady state). `out` is
    /// replaced by a frame of the compositor's output format if it has another one.
    pub fn receive_into(&mut self, out: &mut OutputFrame) -> Result<Ticket, ComposeError> {
        if let Some((t, f)) = self.ready.pop_front() {
            *out = f;
            return Ok(t);
        }
        let fmt_ok = matches!(
            (&*out, self.opts.output),
            (OutputFrame::I420(_), OutputFormat::I420) | (OutputFrame::Nv12(_), OutputFormat::Nv12)
        );
        if !fmt_ok {
            *out = OutputFrame::empty(self.opts.output);
        }
        Ok(self.finish_oldest(out)?)
    }
}

impl Compositor for GpuCompositor {
    fn compose(&mut self, layout: &Layout, frames: &Frames) -> Result<&I420Image, ComposeError> {
        if self.in_flight() > 0 {
            return Err(ComposeError::Gpu(format!(
                "compose() called with {} pipelined frame(s) not yet received",
                self.in_flight()
            )));
        }
        self.submit(layout, frames)?;
        match self.opts.output {
            OutputFormat::I420 => {
                let mut out =
                    OutputFrame::I420(std::mem::replace(&mut self.last, I420Image::new(0, 0)));
                let r = self.receive_into(&mut out);
                if let OutputFrame::I420(img) = out {
                    self.last = img;
                }
                r?;
            }
            OutputFormat::Nv12 => {
                let mut out =
                    std::mem::replace(&mut self.scratch, OutputFrame::empty(OutputFormat::Nv12));
                let r = self.receive_into(&mut out);
                if r.is_ok() {
                    self.last = out.to_i420();
                }
                self.scratch = out;
                r?;
            }
        }
        Ok(&self.last)
    }

    fn describe(&self) -> String {
        let a = &self.ctx.adapter;
        format!("gpu (wgpu {}: {}, {})", a.backend, a.name, a.device_type)
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::compose::cpu::CpuCompositor;
    use crate::compose::Compositor;
    use crate::model::layout::{ItemKind, Rect};
    use crate::testkit::{gpu_or_skip, solid_frames};

    /// An item whose source is changed in place (the generation kept, as code inside the crate
    /// could still do) shows the new source at once, and a source whose textures do not match
    /// the uniforms is never sampled (the shader runs without bounds checks).
    #[test]
    fn an_item_source_changed_in_place_shows_the_new_source() {
        let opts = GpuOptions {
            output: OutputFormat::I420,
            policy: AdapterPolicy::AllowSoftware,
            ..Default::default()
        };
        let Some(mut g) = gpu_or_skip(GpuCompositor::new(64, 48, opts), "the bind cache test")
        else {
            return;
        };
        let mut l = Layout::cameras(64, 48, &[("a", Rect::new(0, 0, 64, 48))]);
        // the same geometry: only the source id tells them apart
        let (frames, colours) = solid_frames(&[("a", 16, 12), ("b", 16, 12)]);
        let first = g.compose(&l, &frames).unwrap().clone();
        assert_eq!(first.yuv_at(32, 24), colours["a"]);
        let gen = l.generation;
        l.items[0].kind = ItemKind::Camera { camid: "b".into() };
        assert_eq!(l.generation, gen);
        let mut cpu = CpuCompositor::new(64, 48);
        for n in 0..3 {
            let got = g.compose(&l, &frames).unwrap().clone();
            assert_eq!(
                got.yuv_at(32, 24),
                colours["b"],
                "frame {n} after the change"
            );
            assert_eq!(&got, cpu.compose(&l, &frames).unwrap());
        }
    }
}
