//! The wgpu compositor: upload source planes → one render pass per output plane → readback ring.
//!
//! - [`device`]: adapter choice (`CLOUDMIXER_ADAPTER`, `WGPU_BACKEND`), the shared device
//!   handle ([`SharedDevice`]), error scopes and device-loss handling ([`GpuError`]).
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

pub mod batch;
pub mod device;
pub mod pipeline;
pub(crate) mod plan;
pub mod readback;
pub mod upload;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use device::{adapters, AdapterPolicy, AdapterSummary, GpuContext, GpuError, SharedDevice};
pub use readback::{Nv12Image, OutputFormat, OutputFrame};

use self::plan::{Plan, Recording, Targets};
use self::readback::Ring;
use self::upload::{PlaneJob, UploadStaging};
use super::{ComposeError, Compositor, Frames};
use crate::model::frame::I420Image;
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

/// The wgpu compositor (see the module docs).
pub struct GpuCompositor {
    ctx: Arc<GpuContext>,
    width: u32,
    height: u32,
    opts: GpuOptions,
    targets: Arc<Targets>,
    plan: Plan,
    ring: Ring,
    uploads: Vec<UploadStaging>,
    in_flight: VecDeque<(Ticket, usize)>,
    ready: VecDeque<(Ticket, OutputFrame)>,
    next_ticket: u64,
    last: I420Image,
    scratch: OutputFrame,
    stats: GpuStats,
}

impl GpuCompositor {
    /// A compositor for a `width`x`height` canvas on a device of its own (share one with
    /// [`GpuCompositor::with_context`] and a [`SharedDevice`]).
    pub fn new(width: u32, height: u32, opts: GpuOptions) -> Result<Self, GpuError> {
        let ctx = SharedDevice::new().get(opts.policy)?;
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
            let targets = Arc::new(Targets::new(&ctx, width, height, opts.output));
            let plan = Plan::new(&ctx);
            let ring = Ring::new(&ctx, opts.output, width, height, opts.ring.max(1));
            Ok(GpuCompositor {
                ctx: ctx.clone(),
                width,
                height,
                opts,
                targets,
                plan,
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

    /// Submits one frame without waiting for it. Frames come back from [`Self::receive`] in
    /// order. When `ring` frames are in flight already, the oldest is completed first (and kept
    /// for `receive`).
    pub fn submit(&mut self, layout: &Layout, frames: &Frames) -> Result<Ticket, ComposeError> {
        ComposeError::check_canvas(layout, self.width, self.height)?;
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
            let mut jobs = self.plan.source_jobs(&ctx, layout, frames)?;
            let staging = self.uploads[slot].write(
                &ctx,
                &mut jobs,
                self.opts.timeout,
                self.opts.parallel_upload,
            )?;
            self.stats.upload_bytes += jobs.iter().map(|j| (j.row * j.rows) as u64).sum::<u64>();
            let t1 = Instant::now();
            self.stats.upload_s += (t1 - t0).as_secs_f64();
            let rec = Recording {
                targets: self.targets.clone(),
                background: layout.background,
                uniform_write: self.plan.prepare_uniforms(&ctx, layout, frames),
                uniform_bg: self.plan.uniform_bind_group().clone(),
                passes: self.plan.passes(ctx.pipelines()),
                uploads: staging
                    .as_ref()
                    .map(|b| (b.clone(), jobs.iter().map(PlaneJob::copy).collect())),
            };
            if let Some((buf, data)) = &rec.uniform_write {
                ctx.queue.write_buffer(buf, 0, data);
            }
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("compose"),
                });
            rec.encode(ctx.pipelines(), &mut enc);
            let ring = &self.ring;
            self.targets
                .encode_readback(&mut enc, &ring.slots[slot].buffer, 0, &ring.planes);
            let sub = ctx.queue.submit([enc.finish()]);
            if staging.is_some() {
                self.uploads[slot].remap_after(sub.clone());
            }
            self.ring.start_map(slot, sub);
            self.stats.submit_s += t1.elapsed().as_secs_f64();
            Ok(())
        });
        if let Err(e) = r {
            // whatever was half-done, upload everything again next time
            self.plan.invalidate();
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

    fn picture(&self) -> &I420Image {
        &self.last
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
