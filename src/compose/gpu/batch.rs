//! One GPU renderer for all mixers that share a [`SharedRenderer`] (the rooms of one
//! [`crate::host::Host`], through its [`crate::pipeline::Services`]).
//!
//! Each mixer owns a [`BatchCompositor`]: on its own thread it copies the source planes that
//! changed into a shared, sub-allocated upload belt (the host copies run on as many cores as
//! there are mixers) and builds the frame's uniforms and draw list. The frame then goes to the
//! [`Renderer`]'s thread, which gathers the frames due from every mixer, records them in **one
//! command encoder**, submits **once** and copies every output picture into **one** mapped
//! readback buffer per batch. A second thread waits for each batch and hands every mixer its
//! part; the mixer copies its picture straight into its encoder's frame.
//!
//! - **Order and fairness**: a batch takes at most one frame per mixer (the oldest), mixers in
//!   the order their frames arrived; a mixer that stops submitting or receiving delays nobody
//!   (its readback part stays mapped until it is received or the compositor is dropped).
//! - **Back-pressure**: at most [`RendererOptions::max_in_flight`] batches are on the GPU; while
//!   they are, frames queue up and the next batch takes them all. Nothing is dropped: a frame
//!   is either delivered or answered with an error.
//! - **Nothing changed, no GPU work**: when neither the layout nor any drawn source changed
//!   since the previous frame, the compositor repeats its previous picture without a round
//!   trip (counted in [`BatchStats::repeated`]).
//! - **Device loss**: every frame in flight and every later one is answered with the error; the
//!   next [`SharedRenderer::get`] call builds a new device and renderer.
//!
//! ```no_run
//! use std::{collections::HashMap, sync::Arc};
//! use cloudmixer::compose::gpu::batch::BatchCompositor;
//! use cloudmixer::compose::gpu::{AdapterPolicy, OutputFormat};
//! use cloudmixer::compose::OutPlanes;
//! use cloudmixer::model::frame::{I420Image, VideoFrame};
//! use cloudmixer::model::layout::{Layout, Rect};
//! let layout = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
//! let mut frames = HashMap::new();
//! frames.insert("a".to_string(), Arc::new(VideoFrame::solid_i420(16, 16, [200, 90, 60]).unwrap()));
//! let mut c = BatchCompositor::new(64, 32, OutputFormat::I420, AdapterPolicy::AllowSoftware).unwrap();
//! c.submit(&layout, &frames).unwrap();
//! let mut img = I420Image::new(64, 32);
//! c.receive_into(&mut OutPlanes::i420(&mut img)).unwrap();
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::device::{AdapterPolicy, AdapterSummary, GpuContext, GpuError, SharedDevice};
use super::plan::{Plan, Recording, Targets};
use super::readback::{copy_out, plane_copies, wait_mapped, MapState, OutputFormat, PlaneCopy};
use super::upload::{lay_out, PlaneJob, UploadCopy};
use super::Ticket;
use crate::compose::{ComposeError, Frames, OutPlanes, Pipelined};
use crate::model::layout::Layout;

/// Tuning of a [`Renderer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RendererOptions {
    /// Most frames in one batch (default 256).
    pub max_batch: usize,
    /// After the first frame of a batch arrives, wait up to this long for the other mixers'
    /// frames (default 3 ms; the wait ends as soon as every compositor on the renderer has a
    /// frame queued, so one mixer alone never waits). Real-time mixers tick at their own
    /// phases: without a window each frame would be a submission of its own.
    /// `CLOUDMIXER_BATCH_GATHER_US` overrides the default of [`SharedRenderer::get`].
    pub gather: Duration,
    /// Batches on the GPU at once (default 3).
    pub max_in_flight: usize,
    /// Size of one upload belt chunk (default 16 MiB, a little more than one W3 frame's
    /// sources; larger uploads get a chunk of their own).
    pub chunk_bytes: u64,
    /// Longest wait for one batch before its frames are answered with an error.
    pub timeout: Duration,
}

impl Default for RendererOptions {
    fn default() -> Self {
        RendererOptions {
            max_batch: 256,
            gather: Duration::from_millis(3),
            max_in_flight: 3,
            chunk_bytes: 16 << 20,
            timeout: Duration::from_secs(20),
        }
    }
}

/// What a [`Renderer`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RendererStats {
    /// Submissions (one per batch).
    pub batches: u64,
    /// Frames rendered.
    pub frames: u64,
    /// Largest batch.
    pub max_batch: u64,
    /// Source bytes uploaded (plane rows, without padding).
    pub upload_bytes: u64,
    /// Output bytes read back (with row padding).
    pub readback_bytes: u64,
    /// Upload belt memory allocated (all chunks).
    pub belt_bytes: u64,
    /// Readback buffer memory allocated (mapped or pooled).
    pub readback_pool_bytes: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    frames: AtomicU64,
    max_batch: AtomicU64,
    upload_bytes: AtomicU64,
    readback_bytes: AtomicU64,
    readback_pool_bytes: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// upload belt

struct Chunk {
    buffer: wgpu::Buffer,
    cursor: u64,
    /// Allocations being written (the chunk cannot be unmapped).
    writers: u32,
    /// Allocations not yet submitted (the chunk cannot be re-mapped).
    pending: u32,
    /// No more allocations (full, or about to be used by a batch).
    sealed: bool,
    mapped: bool,
    last_submission: Option<wgpu::SubmissionIndex>,
}

#[derive(Default)]
struct BeltInner {
    chunks: Vec<Option<Chunk>>,
    active: Option<usize>,
    free: Vec<usize>,
    bytes: u64,
}

/// MAP_WRITE chunks sub-allocated to the mixers' uploads; a chunk is unmapped when a batch
/// first needs it and mapped again once its last allocation's batch is done.
struct Belt {
    ctx: Arc<GpuContext>,
    chunk_bytes: u64,
    inner: Arc<Mutex<BeltInner>>,
}

/// One mixer's part of a belt chunk; released (as unused) if dropped before it is submitted.
struct Lease {
    belt: Arc<Belt>,
    chunk: usize,
    buffer: wgpu::Buffer,
    offset: u64,
    writing: bool,
    settled: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.settled {
            self.belt.release(self.chunk, self.writing, None);
        }
    }
}

const ALIGN: u64 = 256;

impl Belt {
    fn lock(&self) -> std::sync::MutexGuard<'_, BeltInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alloc(self: &Arc<Self>, size: u64) -> Lease {
        let size = size.div_ceil(ALIGN) * ALIGN;
        let mut g = self.lock();
        let g = &mut *g;
        if let Some(a) = g.active {
            let c = g.chunks[a].as_mut().expect("active chunk exists");
            if !c.sealed && c.cursor + size <= c.buffer.size() {
                let offset = c.cursor;
                c.cursor += size;
                c.writers += 1;
                c.pending += 1;
                return Lease {
                    belt: self.clone(),
                    chunk: a,
                    buffer: c.buffer.clone(),
                    offset,
                    writing: true,
                    settled: false,
                };
            }
            c.sealed = true;
            g.active = None;
        }
        let pick = g.free.iter().position(|&i| {
            g.chunks[i]
                .as_ref()
                .is_some_and(|c| c.buffer.size() >= size)
        });
        let idx = match pick {
            Some(p) => g.free.swap_remove(p),
            None => {
                let cap = self.chunk_bytes.max(size.div_ceil(1 << 20) << 20);
                let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("upload belt"),
                    size: cap,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                });
                g.bytes += cap;
                let c = Chunk {
                    buffer,
                    cursor: 0,
                    writers: 0,
                    pending: 0,
                    sealed: false,
                    mapped: true,
                    last_submission: None,
                };
                match g.chunks.iter().position(Option::is_none) {
                    Some(i) => {
                        g.chunks[i] = Some(c);
                        i
                    }
                    None => {
                        g.chunks.push(Some(c));
                        g.chunks.len() - 1
                    }
                }
            }
        };
        let c = g.chunks[idx].as_mut().expect("picked chunk exists");
        c.cursor = size;
        c.writers = 1;
        c.pending = 1;
        c.sealed = false;
        g.active = Some(idx);
        Lease {
            belt: self.clone(),
            chunk: idx,
            buffer: c.buffer.clone(),
            offset: 0,
            writing: true,
            settled: false,
        }
    }

    /// The lease's bytes are written.
    fn written(&self, lease: &mut Lease) {
        if lease.writing {
            lease.writing = false;
            if let Some(c) = self.lock().chunks[lease.chunk].as_mut() {
                c.writers -= 1;
            }
        }
    }

    /// Makes the chunk usable by a batch: seals it and unmaps it. `false` while another
    /// mixer is still writing into it (its frame then waits for the next batch).
    fn prepare(&self, chunk: usize) -> bool {
        let mut g = self.lock();
        if g.active == Some(chunk) {
            g.active = None;
        }
        let Some(c) = g.chunks[chunk].as_mut() else {
            return false;
        };
        c.sealed = true;
        if c.writers > 0 {
            return false;
        }
        if c.mapped {
            c.buffer.unmap();
            c.mapped = false;
        }
        true
    }

    /// One allocation of `chunk` is done with (submitted in `submission`, or dropped unused):
    /// once the chunk is sealed and has none left, it is mapped again and returns to the free list.
    fn release(&self, chunk: usize, writing: bool, submission: Option<wgpu::SubmissionIndex>) {
        let remap = {
            let mut g = self.lock();
            let g = &mut *g;
            let Some(c) = g.chunks[chunk].as_mut() else {
                return;
            };
            if writing {
                c.writers -= 1;
            }
            c.pending -= 1;
            if submission.is_some() {
                c.last_submission = submission;
            }
            if c.pending > 0 || c.writers > 0 || !c.sealed && g.active == Some(chunk) {
                return;
            }
            if c.mapped {
                // never used by the GPU: free at once
                c.cursor = 0;
                c.sealed = false;
                g.free.push(chunk);
                return;
            }
            c.buffer.clone()
        };
        // outside the lock: a failed map_async calls back at once
        let inner = Arc::downgrade(&self.inner);
        remap.map_async(wgpu::MapMode::Write, .., move |r| {
            let Some(inner) = inner.upgrade() else { return };
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_err() {
                if let Some(c) = g.chunks[chunk].take() {
                    g.bytes -= c.buffer.size();
                }
                return;
            }
            if let Some(c) = g.chunks[chunk].as_mut() {
                c.mapped = true;
                c.cursor = 0;
                c.sealed = false;
                c.last_submission = None;
                g.free.push(chunk);
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// readback

/// A MAP_READ buffer holding one batch's pictures; unmapped and pooled after its last reader.
struct ReadChunk {
    buffer: wgpu::Buffer,
    readers: AtomicUsize,
    pool: Weak<ReadPool>,
}

#[derive(Default)]
struct ReadPool {
    idle: Mutex<Vec<wgpu::Buffer>>,
}

const POOL_KEEP: usize = 4;

impl ReadPool {
    fn take(&self, ctx: &GpuContext, size: u64, counters: &Counters) -> wgpu::Buffer {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let best = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.size() >= size)
            .min_by_key(|(_, b)| b.size())
            .map(|(i, _)| i);
        if let Some(i) = best {
            return idle.swap_remove(i);
        }
        drop(idle);
        let cap = size.div_ceil(4 << 20) * (4 << 20);
        counters
            .readback_pool_bytes
            .fetch_add(cap, Ordering::Relaxed);
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("batch readback"),
            size: cap,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn put(&self, b: wgpu::Buffer, counters: &Counters) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(b);
        if idle.len() > POOL_KEEP {
            // keep the larger ones
            idle.sort_by_key(|b| std::cmp::Reverse(b.size()));
            if let Some(b) = idle.pop() {
                counters
                    .readback_pool_bytes
                    .fetch_sub(b.size(), Ordering::Relaxed);
            }
        }
    }
}

/// One mixer's picture inside a mapped batch readback buffer.
pub struct Readback {
    chunk: Arc<ReadChunk>,
    base: u64,
    size: u64,
    planes: Arc<[PlaneCopy]>,
    counters: Arc<Counters>,
}

impl Readback {
    fn copy_to(&self, out: &mut OutPlanes<'_>) -> Result<(), ComposeError> {
        let view = self
            .chunk
            .buffer
            .slice(self.base..self.base + self.size)
            .get_mapped_range()
            .map_err(|e| ComposeError::Gpu(format!("readback: {e}")))?;
        copy_out(&view, &self.planes, out)
    }
}

impl Drop for Readback {
    fn drop(&mut self) {
        if self.chunk.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chunk.buffer.unmap();
            if let Some(pool) = self.chunk.pool.upgrade() {
                pool.put(self.chunk.buffer.clone(), &self.counters);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the renderer

struct Request {
    mixer: u64,
    seq: u64,
    rec: Recording,
    lease: Option<Lease>,
    planes: Arc<[PlaneCopy]>,
    size: u64,
    reply: Reply,
}

/// Where a frame's answer goes.
type Reply = Sender<Result<Readback, GpuError>>;

struct InFlight {
    /// Per frame: its reply, offset and size in the batch buffer, plane layout.
    requests: Vec<(Reply, u64, u64, Arc<[PlaneCopy]>)>,
    buffer: wgpu::Buffer,
    state: MapState,
    submission: wgpu::SubmissionIndex,
}

struct Shared {
    /// Compositors alive on this renderer.
    live: AtomicUsize,
    ctx: Arc<GpuContext>,
    opts: RendererOptions,
    belt: Arc<Belt>,
    pool: Arc<ReadPool>,
    counters: Arc<Counters>,
}

/// A GPU renderer (see the module docs). Created by [`SharedRenderer::get`] (one per handle
/// and device) or [`Renderer::new`] (a private one, e.g. to tune [`RendererOptions`]).
pub struct Renderer {
    shared: Arc<Shared>,
    tx: Option<Sender<Request>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next_mixer: AtomicU64,
    seq: AtomicU64,
}

impl Drop for Renderer {
    /// Ends the threads once every compositor is gone: the batch thread finishes what is
    /// queued, the wait thread the batches in flight (a driver torn down at process exit
    /// under a thread still polling it can crash).
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("adapter", &self.shared.ctx.adapter)
            .field("opts", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// A renderer on `ctx` with its two threads (`cm-gpu-batch`, `cm-gpu-wait`); they end
    /// when the renderer and every compositor on it are dropped.
    pub fn new(ctx: Arc<GpuContext>, opts: RendererOptions) -> Result<Arc<Renderer>, GpuError> {
        let opts = RendererOptions {
            max_batch: opts.max_batch.max(1),
            max_in_flight: opts.max_in_flight.max(1),
            ..opts
        };
        let shared = Arc::new(Shared {
            live: AtomicUsize::new(0),
            belt: Arc::new(Belt {
                ctx: ctx.clone(),
                chunk_bytes: opts.chunk_bytes.max(1 << 20),
                inner: Arc::default(),
            }),
            ctx,
            opts,
            pool: Arc::default(),
            counters: Arc::default(),
        });
        let (tx, rx) = unbounded::<Request>();
        let (done_tx, done_rx) = unbounded::<InFlight>();
        // one token per batch that may be on the GPU: taken to submit, returned once answered
        let (tok_tx, tok_rx) = bounded::<()>(opts.max_in_flight);
        for _ in 0..opts.max_in_flight {
            let _ = tok_tx.send(());
        }
        let tok_back = tok_tx.clone();
        let spawn_err = |e: std::io::Error| GpuError::Validation {
            adapter: shared.ctx.adapter.to_string(),
            message: format!("cannot start the renderer thread: {e}"),
        };
        let s = shared.clone();
        let batch = std::thread::Builder::new()
            .name("cm-gpu-batch".into())
            .spawn(move || batch_loop(s, rx, done_tx, (tok_back, tok_rx)))
            .map_err(spawn_err)?;
        let s = shared.clone();
        let wait = std::thread::Builder::new()
            .name("cm-gpu-wait".into())
            .spawn(move || wait_loop(s, done_rx, tok_tx))
            .map_err(spawn_err)?;
        Ok(Arc::new(Renderer {
            shared,
            tx: Some(tx),
            threads: vec![batch, wait],
            next_mixer: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        }))
    }

    /// The device context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.shared.ctx
    }

    /// The adapter.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.shared.ctx.adapter
    }

    /// The options in force.
    pub fn options(&self) -> RendererOptions {
        self.shared.opts
    }

    /// Compositors alive on this renderer now.
    pub fn compositors(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Counters since creation.
    pub fn stats(&self) -> RendererStats {
        let c = &self.shared.counters;
        RendererStats {
            batches: c.batches.load(Ordering::Relaxed),
            frames: c.frames.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            upload_bytes: c.upload_bytes.load(Ordering::Relaxed),
            readback_bytes: c.readback_bytes.load(Ordering::Relaxed),
            belt_bytes: self.shared.belt.lock().bytes,
            readback_pool_bytes: c.readback_pool_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A renderer created on first use and shared by every clone of this handle, on the handle's
/// [`SharedDevice`]; re-created after a device loss. No process-wide state: whoever owns the
/// handle (a [`crate::pipeline::Services`], e.g. one per [`crate::host::Host`]) decides which
/// compositors batch together.
#[derive(Clone, Default)]
pub struct SharedRenderer {
    device: SharedDevice,
    r: Arc<Mutex<Option<Arc<Renderer>>>>,
}

impl std::fmt::Debug for SharedRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRenderer")
            .field("open", &self.current().is_some())
            .finish()
    }
}

impl SharedRenderer {
    /// A handle with no device or renderer yet (nothing is opened until
    /// [`SharedRenderer::get`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The renderer for `policy`: created on first use (with its device), re-created after a
    /// device loss. `CLOUDMIXER_BATCH_GATHER_US` overrides [`RendererOptions::gather`].
    pub fn get(&self, policy: AdapterPolicy) -> Result<Arc<Renderer>, GpuError> {
        let ctx = self.device.get(policy)?;
        let mut g = self.r.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = g.as_ref() {
            if Arc::ptr_eq(&r.shared.ctx, &ctx) {
                return Ok(r.clone());
            }
        }
        let mut opts = RendererOptions::default();
        if let Some(us) = std::env::var("CLOUDMIXER_BATCH_GATHER_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            opts.gather = Duration::from_micros(us);
        }
        let r = Renderer::new(ctx, opts)?;
        *g = Some(r.clone());
        Ok(r)
    }

    /// The renderer created so far, if any (opens nothing).
    pub fn current(&self) -> Option<Arc<Renderer>> {
        self.r.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The device handle the renderer is on.
    pub fn device(&self) -> &SharedDevice {
        &self.device
    }
}

fn batch_loop(
    sh: Arc<Shared>,
    rx: Receiver<Request>,
    done: Sender<InFlight>,
    (tok_back, tokens): (Sender<()>, Receiver<()>),
) {
    let opts = sh.opts;
    let mut queues: HashMap<u64, VecDeque<Request>> = HashMap::new();
    let mut queued = 0usize;
    let mut fronts: Vec<(u64, u64)> = Vec::new();
    let push = |q: &mut HashMap<u64, VecDeque<Request>>, n: &mut usize, r: Request| {
        q.entry(r.mixer).or_default().push_back(r);
        *n += 1;
    };
    loop {
        if queued == 0 {
            match rx.recv() {
                Ok(r) => push(&mut queues, &mut queued, r),
                Err(_) => return,
            }
            if !opts.gather.is_zero() {
                let deadline = Instant::now() + opts.gather;
                while queued < opts.max_batch && queues.len() < sh.live.load(Ordering::Acquire) {
                    match rx.recv_deadline(deadline) {
                        Ok(r) => push(&mut queues, &mut queued, r),
                        Err(_) => break,
                    }
                }
            }
        }
        // back-pressure: at most `max_in_flight` batches on the GPU; while they are, frames
        // queue up and the next batch takes them
        if tokens.recv().is_err() {
            return;
        }
        while let Ok(r) = rx.try_recv() {
            push(&mut queues, &mut queued, r);
        }
        // the oldest frame of each mixer, mixers in arrival order
        fronts.clear();
        fronts.extend(
            queues
                .iter()
                .filter_map(|(m, q)| q.front().map(|r| (r.seq, *m))),
        );
        fronts.sort_unstable();
        let mut batch: Vec<Request> = Vec::with_capacity(fronts.len());
        // one readback buffer per batch: no larger than the device allows
        let max_bytes = sh.ctx.device.limits().max_buffer_size;
        let mut bytes = 0u64;
        for &(_, m) in &fronts {
            if batch.len() >= opts.max_batch {
                break;
            }
            let q = queues.get_mut(&m).expect("listed above");
            let need = q.front().map_or(0, |r| r.size.div_ceil(ALIGN) * ALIGN);
            if !batch.is_empty() && bytes + need > max_bytes {
                break;
            }
            let ready = q
                .front()
                .and_then(|r| r.lease.as_ref())
                .is_none_or(|l| sh.belt.prepare(l.chunk));
            if ready {
                bytes += need;
                batch.push(q.pop_front().expect("listed above"));
            }
        }
        queues.retain(|_, q| !q.is_empty());
        if batch.is_empty() {
            // every queued frame shares a chunk another mixer is still writing: a memcpy away
            let _ = tok_back.send(());
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        queued -= batch.len();
        match record(&sh, &mut batch) {
            Ok(inflight) => {
                if done.send(inflight).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tok_back.send(());
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Records and submits one batch; its readback is mapped asynchronously.
fn record(sh: &Shared, batch: &mut [Request]) -> Result<InFlight, GpuError> {
    let ctx = &sh.ctx;
    let mut bases = Vec::with_capacity(batch.len());
    let mut total = 0u64;
    for r in batch.iter() {
        bases.push(total);
        total += r.size.div_ceil(ALIGN) * ALIGN;
    }
    let mut buffer = None;
    let r = ctx.scoped(|| {
        let buffer = buffer.insert(sh.pool.take(ctx, total, &sh.counters));
        let p = ctx.pipelines();
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("compose batch"),
            });
        for (r, &base) in batch.iter().zip(&bases) {
            if let Some((buf, data)) = &r.rec.uniform_write {
                ctx.queue.write_buffer(buf, 0, data);
            }
            r.rec.encode(p, &mut enc);
            r.rec
                .targets
                .encode_readback(&mut enc, buffer, base, &r.planes);
        }
        Ok(ctx.queue.submit([enc.finish()]))
    });
    // the uploads are done with either way
    let sub = r.as_ref().ok().cloned();
    for req in batch.iter_mut() {
        if let Some(mut l) = req.lease.take() {
            l.settled = true;
            sh.belt.release(l.chunk, false, sub.clone());
        }
    }
    let submission = r?;
    let buffer = buffer.expect("set inside the scope");
    let c = &sh.counters;
    c.batches.fetch_add(1, Ordering::Relaxed);
    c.frames.fetch_add(batch.len() as u64, Ordering::Relaxed);
    c.max_batch.fetch_max(batch.len() as u64, Ordering::Relaxed);
    c.readback_bytes.fetch_add(total, Ordering::Relaxed);
    let state: MapState = Arc::new(Mutex::new(None));
    let st = state.clone();
    buffer.map_async(wgpu::MapMode::Read, ..total, move |r| {
        *st.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.map_err(|e| e.to_string()));
    });
    Ok(InFlight {
        requests: batch
            .iter()
            .zip(bases)
            .map(|(r, b)| (r.reply.clone(), b, r.size, r.planes.clone()))
            .collect(),
        buffer,
        state,
        submission,
    })
}

fn wait_loop(sh: Arc<Shared>, rx: Receiver<InFlight>, tokens: Sender<()>) {
    for b in rx {
        let r = wait_mapped(&sh.ctx, &b.state, Some(b.submission), sh.opts.timeout);
        match r {
            Ok(()) => {
                let chunk = Arc::new(ReadChunk {
                    buffer: b.buffer,
                    readers: AtomicUsize::new(b.requests.len()),
                    pool: Arc::downgrade(&sh.pool),
                });
                for (reply, base, size, planes) in b.requests {
                    // a compositor gone meanwhile drops its part here
                    let _ = reply.send(Ok(Readback {
                        chunk: chunk.clone(),
                        base,
                        size,
                        planes,
                        counters: sh.counters.clone(),
                    }));
                }
            }
            Err(e) => {
                for (reply, ..) in b.requests {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        let _ = tokens.send(());
    }
}

// ---------------------------------------------------------------------------------------------
// the mixer's side

enum Pending {
    Gpu(Receiver<Result<Readback, GpuError>>),
    /// Nothing changed since the previous frame: the same picture again.
    Repeat,
}

enum Last {
    None,
    /// The previous picture, still in its readback buffer.
    Mapped(Readback),
    /// The previous picture, copied out (a mixer repeating it does not pin a batch buffer).
    Copied(super::OutputFrame),
}

/// What one [`BatchCompositor`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Frames submitted.
    pub submitted: u64,
    /// Of those, repeated without GPU work (nothing changed).
    pub repeated: u64,
    /// Source bytes copied into the upload belt.
    pub upload_bytes: u64,
}

/// A mixer's compositor on a [`Renderer`] shared with other mixers (see the module docs). Frames are
/// received in submission order; up to `depth` may be in flight.
pub struct BatchCompositor {
    renderer: Arc<Renderer>,
    mixer: u64,
    width: u32,
    height: u32,
    format: OutputFormat,
    targets: Arc<Targets>,
    planes: Arc<[PlaneCopy]>,
    size: u64,
    plan: Plan,
    pending: VecDeque<(Ticket, Pending)>,
    last: Last,
    next_ticket: u64,
    stats: BatchStats,
    parallel_upload: bool,
}

impl std::fmt::Debug for BatchCompositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchCompositor")
            .field("mixer", &self.mixer)
            .field("size", &(self.width, self.height))
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl BatchCompositor {
    /// A compositor for a `width`x`height` canvas writing `format`, on a renderer (and device)
    /// of its own; compositors that should batch together use [`BatchCompositor::with_renderer`]
    /// with one [`SharedRenderer`].
    pub fn new(
        width: u32,
        height: u32,
        format: OutputFormat,
        policy: AdapterPolicy,
    ) -> Result<Self, GpuError> {
        Self::with_renderer(SharedRenderer::new().get(policy)?, width, height, format)
    }

    /// A compositor on a given renderer.
    pub fn with_renderer(
        renderer: Arc<Renderer>,
        width: u32,
        height: u32,
        format: OutputFormat,
    ) -> Result<Self, GpuError> {
        let ctx = renderer.shared.ctx.clone();
        if width < 2 || height < 2 || width % 2 != 0 || height % 2 != 0 {
            return Err(GpuError::Validation {
                adapter: ctx.adapter.to_string(),
                message: format!("canvas {width}x{height}: even sizes of at least 2x2 expected"),
            });
        }
        let (targets, plan) = ctx.scoped(|| {
            Ok((
                Arc::new(Targets::new(&ctx, width, height, format)),
                Plan::new(&ctx),
            ))
        })?;
        let (planes, size) = plane_copies(format, width, height);
        let mixer = renderer.next_mixer.fetch_add(1, Ordering::Relaxed);
        renderer.shared.live.fetch_add(1, Ordering::AcqRel);
        Ok(BatchCompositor {
            renderer,
            mixer,
            width,
            height,
            format,
            targets,
            planes: planes.into(),
            size,
            plan,
            pending: VecDeque::new(),
            last: Last::None,
            next_ticket: 0,
            stats: BatchStats::default(),
            parallel_upload: false,
        })
    }

    /// Copy large uploads (> 4 MiB) plane by plane on rayon's pool: helps one mixer on a
    /// many-core machine; leave it off with many mixers (each already copies on its own thread).
    pub fn set_parallel_upload(&mut self, on: bool) {
        self.parallel_upload = on;
    }

    /// The renderer it submits to.
    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.renderer
    }

    /// Canvas width and height.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The output format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Counters since creation.
    pub fn stats(&self) -> BatchStats {
        self.stats
    }

    /// Frames submitted and not yet received.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether the oldest frame can be received without waiting.
    pub fn is_ready(&self) -> bool {
        match self.pending.front() {
            Some((_, Pending::Repeat)) => true,
            Some((_, Pending::Gpu(rx))) => !rx.is_empty(),
            None => false,
        }
    }

    /// Submits one frame: copies the sources that changed into the upload belt and hands the
    /// frame to the renderer (or, when nothing changed, queues a repeat of the previous one).
    pub fn submit(&mut self, layout: &Layout, frames: &Frames) -> Result<Ticket, ComposeError> {
        ComposeError::check_canvas(layout, self.width, self.height)?;
        let ctx = self.renderer.shared.ctx.clone();
        let r = ctx.scoped(|| self.prepare(&ctx, layout, frames));
        let pending = match r {
            Ok(p) => p,
            Err(e) => {
                self.plan.invalidate();
                return Err(e.into());
            }
        };
        if matches!(pending, Pending::Repeat) {
            self.stats.repeated += 1;
            if self.pending.is_empty() {
                // the picture to repeat is the one received last
                self.unpin();
            }
        } else if self.pending.is_empty() {
            // the previous picture is no longer needed
            self.last = Last::None;
        }
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.stats.submitted += 1;
        self.pending.push_back((t, pending));
        Ok(t)
    }

    fn prepare(
        &mut self,
        ctx: &Arc<GpuContext>,
        layout: &Layout,
        frames: &Frames,
    ) -> Result<Pending, GpuError> {
        let mut jobs = self.plan.source_jobs(ctx, layout, frames)?;
        let uniform_write = self.plan.prepare_uniforms(ctx, layout, frames);
        let has_previous = !self.pending.is_empty() || !matches!(self.last, Last::None);
        if jobs.is_empty() && uniform_write.is_none() && has_previous {
            return Ok(Pending::Repeat);
        }
        let size = lay_out(&mut jobs);
        let mut lease = None;
        let mut copies: Vec<UploadCopy> = Vec::new();
        if size > 0 {
            let mut l = self.renderer.shared.belt.alloc(size);
            let views = jobs
                .iter()
                .map(|j| {
                    let start = l.offset + j.offset;
                    let len = j.padded_row as u64 * j.rows as u64;
                    l.buffer.slice(start..start + len).get_mapped_range_mut()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| GpuError::Validation {
                    adapter: ctx.adapter.to_string(),
                    message: format!("upload belt: {e}"),
                })?;
            let parts: Vec<_> = views.into_iter().zip(jobs.iter()).collect();
            let copy =
                |(mut view, j): (wgpu::BufferViewMut, &PlaneJob<'_>)| j.write_rows(&mut view);
            if self.parallel_upload && size > (4 << 20) && parts.len() > 1 {
                use rayon::prelude::*;
                parts.into_par_iter().for_each(copy);
            } else {
                parts.into_iter().for_each(copy);
            }
            self.renderer.shared.belt.written(&mut l);
            copies = jobs
                .iter()
                .map(|j| {
                    let mut c = PlaneJob::copy(j);
                    c.offset += l.offset;
                    c
                })
                .collect();
            let bytes: u64 = jobs.iter().map(|j| (j.row * j.rows) as u64).sum();
            self.stats.upload_bytes += bytes;
            self.renderer
                .shared
                .counters
                .upload_bytes
                .fetch_add(bytes, Ordering::Relaxed);
            lease = Some(l);
        }
        let rec = Recording {
            targets: self.targets.clone(),
            background: layout.background,
            uniform_write,
            uniform_bg: self.plan.uniform_bind_group().clone(),
            passes: self.plan.passes(ctx.pipelines()),
            uploads: lease.as_ref().map(|l| (l.buffer.clone(), copies)),
        };
        let (reply, rx) = bounded(1);
        let req = Request {
            mixer: self.mixer,
            seq: self.renderer.seq.fetch_add(1, Ordering::Relaxed),
            rec,
            lease,
            planes: self.planes.clone(),
            size: self.size,
            reply,
        };
        let sent = match &self.renderer.tx {
            Some(tx) => tx.send(req).is_ok(),
            None => false,
        };
        if !sent {
            return Err(GpuError::Readback {
                adapter: ctx.adapter.to_string(),
                reason: "the renderer has stopped".into(),
            });
        }
        Ok(Pending::Gpu(rx))
    }

    /// Writes the oldest submitted frame into `out` (waiting for its batch if need be).
    pub fn receive_into(&mut self, out: &mut OutPlanes<'_>) -> Result<Ticket, ComposeError> {
        let Some((t, p)) = self.pending.pop_front() else {
            return Err(GpuError::NothingInFlight.into());
        };
        let ctx = &self.renderer.shared.ctx;
        match p {
            Pending::Gpu(rx) => {
                let timeout = self.renderer.shared.opts.timeout;
                let rb = match rx.recv_timeout(timeout) {
                    Ok(r) => r,
                    Err(e) => Err(GpuError::Readback {
                        adapter: ctx.adapter.to_string(),
                        reason: match e {
                            crossbeam_channel::RecvTimeoutError::Timeout => {
                                format!("no picture after {timeout:?}")
                            }
                            _ => "the renderer has stopped".into(),
                        },
                    }),
                };
                let rb = match rb {
                    Ok(rb) => rb,
                    Err(e) => {
                        self.plan.invalidate();
                        self.last = Last::None;
                        return Err(e.into());
                    }
                };
                rb.copy_to(out)?;
                // keep it while the next frame may repeat it
                self.last = if matches!(self.pending.front(), Some((_, Pending::Gpu(_)))) {
                    Last::None
                } else {
                    Last::Mapped(rb)
                };
                if matches!(self.pending.front(), Some((_, Pending::Repeat))) {
                    self.unpin();
                }
            }
            Pending::Repeat => match &self.last {
                Last::Mapped(rb) => {
                    rb.copy_to(out)?;
                    self.unpin();
                }
                Last::Copied(f) if f.size() == (out.width, out.height) => {
                    out.copy_planes(&f.planes())?
                }
                Last::Copied(f) => {
                    return Err(ComposeError::Output(format!(
                        "a {:?} picture into {}x{} planes",
                        f.size(),
                        out.width,
                        out.height
                    )))
                }
                Last::None => {
                    return Err(ComposeError::Gpu(
                        "repeat without a previous picture (after an error)".into(),
                    ))
                }
            },
        }
        Ok(t)
    }

    /// Copies a mapped previous picture out so that its batch buffer can be reused (a copy
    /// that fails forgets the picture: a repeat of it is then an error).
    fn unpin(&mut self) {
        if let Last::Mapped(rb) = &self.last {
            let mut f = super::OutputFrame::sized(self.format, self.width, self.height);
            self.last = match rb.copy_to(&mut f.planes_mut()) {
                Ok(()) => Last::Copied(f),
                Err(_) => Last::None,
            };
        }
    }
}

impl Drop for BatchCompositor {
    fn drop(&mut self) {
        self.renderer.shared.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pipelined for BatchCompositor {
    fn submit(&mut self, layout: &Layout, frames: &Frames) -> Result<(), ComposeError> {
        BatchCompositor::submit(self, layout, frames).map(|_| ())
    }

    fn receive(&mut self, out: &mut OutPlanes<'_>) -> Result<(), ComposeError> {
        self.receive_into(out).map(|_| ())
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn is_ready(&self) -> bool {
        BatchCompositor::is_ready(self)
    }

    fn depth(&self) -> usize {
        2
    }

    fn describe(&self) -> String {
        let a = &self.renderer.shared.ctx.adapter;
        format!(
            "gpu (wgpu {}: {}, {}; batched)",
            a.backend, a.name, a.device_type
        )
    }
}
