//! Adapter choice, the shared device handle ([`SharedDevice`]), and the GPU error type.
//!
//! One `wgpu::Device` + `Queue` serve every compositor of the process (each compositor owns
//! only its textures, buffers and bind groups). The adapter is chosen once:
//!
//! - `CLOUDMIXER_ADAPTER=<substring>` keeps only adapters whose name contains it
//!   (case-insensitive); naming an adapter also allows a software one.
//! - `WGPU_BACKEND=vulkan,gl,…` restricts the backends (wgpu's own syntax); without it only
//!   Vulkan / Metal / DX12 are probed (GL's EGL loaders write to stderr on headless hosts), so
//!   GL is used only when named.
//! - Otherwise the best hardware adapter wins (discrete > integrated > virtual > other, Vulkan
//!   before GL); a CPU adapter (lavapipe, llvmpipe) only under [`AdapterPolicy::AllowSoftware`].
//!
//! Validation errors, out-of-memory and device loss are reported as [`GpuError`], never as
//! panics: the device gets an uncaptured-error handler and a device-lost callback, and every
//! compositor call runs inside error scopes.

use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;

use super::pipeline::Pipelines;
use crate::compose::ComposeError;

/// Errors at the GPU boundary.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GpuError {
    /// No adapter fits the policy (no GPU, no lavapipe, or `CLOUDMIXER_ADAPTER` matched none).
    #[error("no suitable GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("cannot create a device on {adapter}: {reason}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// A wgpu validation error (a bug in this crate, or an unsupported source size).
    #[error("validation error on {adapter}: {message}")]
    Validation {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// The GPU ran out of memory.
    #[error("out of GPU memory on {0}")]
    OutOfMemory(String),
    /// The device was lost (driver reset, GPU removed, destroyed).
    #[error("GPU device lost on {adapter}: {reason}")]
    DeviceLost {
        /// Adapter name.
        adapter: String,
        /// Reason given by wgpu.
        reason: String,
    },
    /// Mapping a readback buffer failed or timed out.
    #[error("readback failed on {adapter}: {reason}")]
    Readback {
        /// Adapter name.
        adapter: String,
        /// What went wrong.
        reason: String,
    },
    /// `receive` was called with nothing submitted.
    #[error("nothing to receive: no frame is in flight")]
    NothingInFlight,
}

impl From<GpuError> for ComposeError {
    fn from(e: GpuError) -> Self {
        match e {
            GpuError::NoAdapter(_) => ComposeError::Unavailable(e.to_string()),
            other => ComposeError::Gpu(other.to_string()),
        }
    }
}

/// Which adapters may be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Hardware GPUs only (what `Backend::Auto` uses), unless `CLOUDMIXER_ADAPTER` names one.
    HardwareOnly,
    /// Any adapter, a software one (lavapipe) included (`Backend::Gpu`, tests).
    AllowSoftware,
}

/// Name, backend and type of an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Backend, e.g. `Vulkan`.
    pub backend: String,
    /// Device type, e.g. `DiscreteGpu` or `Cpu`.
    pub device_type: String,
    /// Driver and driver info.
    pub driver: String,
    /// Whether this is a software (CPU) adapter.
    pub software: bool,
}

impl AdapterSummary {
    fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            software: info.device_type == wgpu::DeviceType::Cpu,
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// The shared device, its queue and the state every compositor consults.
pub struct GpuContext {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter it was created on.
    pub adapter: AdapterSummary,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    pipelines: OnceLock<Pipelines>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

struct Enumerated {
    /// Kept alive for the adapters' sake.
    #[allow(dead_code)]
    instance: wgpu::Instance,
    adapters: Vec<wgpu::Adapter>,
}

/// The adapters wgpu enumerates, looked up once per process: a constant of the machine, not
/// a service (it opens no device; every device belongs to a [`SharedDevice`] or its caller).
fn enumerated() -> &'static Enumerated {
    static E: OnceLock<Enumerated> = OnceLock::new();
    E.get_or_init(|| {
        let make = |backends| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = backends;
            desc.flags = wgpu::InstanceFlags::empty().with_env();
            let instance = wgpu::Instance::new(desc);
            let adapters = pollster::block_on(instance.enumerate_adapters(backends));
            Enumerated { instance, adapters }
        };
        // the drivers' loaders write to stderr ("XDG_RUNTIME_DIR is invalid…" from Mesa's WSI
        // on headless hosts): their words go to tracing instead
        let backends = wgpu::Backends::from_env();
        stderr_to_tracing(|| match backends {
            Some(b) => make(b),
            // Vulkan / Metal / DX12 only: probing GL goes through EGL, whose loaders print to
            // stderr on headless servers ("XDG_RUNTIME_DIR is invalid"); GL, the slowest path,
            // is used only when asked for (WGPU_BACKEND=gl)
            None => make(wgpu::Backends::PRIMARY),
        })
    })
}

/// Runs `f` with the process's stderr (fd 2) going into a pipe, then logs what was written
/// through `tracing` (debug). Writes of other threads in that window are logged, not lost
/// (beyond the pipe's 64 KiB they are dropped).
#[cfg(unix)]
fn stderr_to_tracing<T>(f: impl FnOnce() -> T) -> T {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: plain fd syscalls on fds this function owns; fd 2 is restored before returning.
    let saved = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
            return f();
        }
        let saved = libc::dup(2);
        if saved < 0 || libc::dup2(fds[1], 2) < 0 {
            libc::close(fds[0]);
            libc::close(fds[1]);
            if saved >= 0 {
                libc::close(saved);
            }
            return f();
        }
        libc::close(fds[1]);
        saved
    };
    let out = f();
    // SAFETY: restores fd 2 from the saved copy; the read end becomes a File that closes it.
    let mut pipe = unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
        std::fs::File::from_raw_fd(fds[0])
    };
    let mut text = Vec::new();
    let _ = pipe.read_to_end(&mut text);
    for line in String::from_utf8_lossy(&text).lines() {
        tracing::debug!(target: "cloudmixer::gpu", "driver: {line}");
    }
    out
}

#[cfg(not(unix))]
fn stderr_to_tracing<T>(f: impl FnOnce() -> T) -> T {
    f()
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let t = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let b = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (t, b)
}

/// Every adapter wgpu finds here (after `WGPU_BACKEND`), best first.
pub fn adapters() -> Vec<AdapterSummary> {
    let mut v: Vec<_> = enumerated().adapters.iter().map(|a| a.get_info()).collect();
    v.sort_by_key(rank);
    v.iter().map(AdapterSummary::of).collect()
}

/// Picks the adapter for `policy` (see the module docs).
fn choose(policy: AdapterPolicy) -> Result<wgpu::Adapter, GpuError> {
    let e = enumerated();
    let wanted = std::env::var("CLOUDMIXER_ADAPTER")
        .ok()
        .filter(|s| !s.is_empty());
    let mut cands: Vec<(wgpu::AdapterInfo, &wgpu::Adapter)> =
        e.adapters.iter().map(|a| (a.get_info(), a)).collect();
    let all: Vec<String> = cands
        .iter()
        .map(|(i, _)| AdapterSummary::of(i).to_string())
        .collect();
    if let Some(w) = &wanted {
        let w = w.to_lowercase();
        cands.retain(|(i, _)| i.name.to_lowercase().contains(&w));
    } else if policy == AdapterPolicy::HardwareOnly {
        cands.retain(|(i, _)| i.device_type != wgpu::DeviceType::Cpu);
    }
    cands.sort_by_key(|(i, _)| rank(i));
    match cands.first() {
        Some((_, a)) => Ok((*a).clone()),
        None => Err(GpuError::NoAdapter(format!(
            "{}; adapters found: [{}]",
            match (&wanted, policy) {
                (Some(w), _) => format!("none matches CLOUDMIXER_ADAPTER={w:?}"),
                (None, AdapterPolicy::HardwareOnly) => "no hardware GPU".to_string(),
                (None, AdapterPolicy::AllowSoftware) =>
                    "no adapter at all (is mesa-vulkan-drivers installed?)".to_string(),
            },
            all.join(", ")
        ))),
    }
}

impl GpuContext {
    /// Creates a new, private device on the adapter `policy` picks (tests use this to destroy a
    /// device without harming others). Most callers want a [`SharedDevice`].
    pub fn new(policy: AdapterPolicy) -> Result<Arc<GpuContext>, GpuError> {
        let adapter = choose(policy)?;
        let info = adapter.get_info();
        let summary = AdapterSummary::of(&info);
        let mut desc = wgpu::DeviceDescriptor {
            label: Some("cloudmixer"),
            required_features: wgpu::Features::empty(),
            required_limits: wgpu::Limits::default(),
            ..Default::default()
        };
        let (device, queue) = match pollster::block_on(adapter.request_device(&desc)) {
            Ok(dq) => dq,
            Err(_) => {
                // small iGPUs / GL: the downlevel defaults are enough for this compositor
                desc.required_limits =
                    wgpu::Limits::downlevel_defaults().using_resolution(adapter.limits());
                pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
                    GpuError::RequestDevice {
                        adapter: summary.to_string(),
                        reason: e.to_string(),
                    }
                })?
            }
        };
        let lost = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(None));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                tracing::error!(?reason, %msg, "GPU device lost");
                *lost.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(format!("{reason:?}: {msg}"));
            });
            let uncaptured = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                tracing::error!(error = %e, "uncaptured wgpu error");
                let mut g = uncaptured.lock().unwrap_or_else(|p| p.into_inner());
                if g.is_none() {
                    *g = Some(e.to_string());
                }
            }));
        }
        tracing::info!(adapter = %summary, "GPU compositor device created");
        Ok(Arc::new(GpuContext {
            device,
            queue,
            adapter: summary,
            lost,
            uncaptured,
            pipelines: OnceLock::new(),
        }))
    }

    /// The render pipelines (built on first use).
    pub(crate) fn pipelines(&self) -> &Pipelines {
        self.pipelines.get_or_init(|| Pipelines::new(&self.device))
    }

    /// `Err(DeviceLost)` once the device is gone; also reports errors that escaped every scope.
    pub fn check(&self) -> Result<(), GpuError> {
        if let Some(r) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(GpuError::DeviceLost {
                adapter: self.adapter.to_string(),
                reason: r,
            });
        }
        if let Some(m) = self
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(GpuError::Validation {
                adapter: self.adapter.to_string(),
                message: m,
            });
        }
        Ok(())
    }

    /// Whether the device was lost.
    pub fn is_lost(&self) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns a captured error
    /// (or a lost device) into a [`GpuError`].
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T, GpuError>) -> Result<T, GpuError> {
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let ve = pollster::block_on(val.pop());
        let oe = pollster::block_on(oom.pop());
        if let Some(e) = oe {
            let _ = e;
            return Err(GpuError::OutOfMemory(self.adapter.to_string()));
        }
        if let Some(e) = ve {
            return Err(GpuError::Validation {
                adapter: self.adapter.to_string(),
                message: e.to_string(),
            });
        }
        let v = r?;
        self.check()?;
        Ok(v)
    }
}

/// A device opened on first use and shared by every clone of this handle (no process-wide
/// state: whoever owns the handle, e.g. a [`crate::pipeline::Services`], decides who shares
/// it). Re-created after a device loss.
///
/// Every policy shares one device: the best adapter is the same for both unless none is a
/// hardware GPU, in which case [`AdapterPolicy::HardwareOnly`] fails without creating one.
#[derive(Clone, Default)]
pub struct SharedDevice {
    ctx: Arc<Mutex<Option<Arc<GpuContext>>>>,
}

impl std::fmt::Debug for SharedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDevice")
            .field("open", &self.current().is_some())
            .finish()
    }
}

impl SharedDevice {
    /// A handle with no device yet (nothing is opened until [`SharedDevice::get`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The device for `policy`: created on first use, re-created after a device loss.
    pub fn get(&self, policy: AdapterPolicy) -> Result<Arc<GpuContext>, GpuError> {
        let mut g = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.as_ref() {
            if !c.is_lost() {
                if policy == AdapterPolicy::HardwareOnly
                    && c.adapter.software
                    && std::env::var("CLOUDMIXER_ADAPTER").map_or(true, |s| s.is_empty())
                {
                    // the shared device is software: a hardware GPU does not exist (or was
                    // filtered)
                    return Err(choose(policy)
                        .err()
                        .unwrap_or_else(|| GpuError::NoAdapter("no hardware GPU".into())));
                }
                return Ok(c.clone());
            }
        }
        // make sure the policy can be met before creating anything
        choose(policy)?;
        let c = GpuContext::new(policy)?;
        *g = Some(c.clone());
        Ok(c)
    }

    /// The device opened so far, if any (opens nothing).
    pub fn current(&self) -> Option<Arc<GpuContext>> {
        self.ctx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
