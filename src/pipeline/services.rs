//! The services mixers share: the GPU renderer (and its device), the fonts, the frame
//! releaser, the upload slots and the encoder probe cache.
//!
//! Nothing here is a process static. One [`Services`] is a set of these, created empty (every
//! service starts on first use: a CPU-only process never opens a GPU adapter, a layout without
//! text never loads a font) and shared by every mixer it is handed to through
//! [`MixerSettings::services`](super::MixerSettings::services):
//!
//! - a [`crate::host::Host`] owns one and hands it to every room, so the rooms of a host batch
//!   their GPU frames on one renderer, drop frames on one `cm-release` thread and take turns
//!   for the upload slots;
//! - a bare [`Mixer::create`](super::Mixer::create) (settings without services) gets a
//!   `Services` of its own: its own releaser thread, its own renderer if it composes on the
//!   GPU, its own upload slot. Mixers that should share pass one `Services` explicitly.
//!
//! - the C ABI (`capi/`) has no object that could own a set, so its mixers share one it makes
//!   on the first `cm_mixer_create`: there the process is the host.
//!
//! What stays process-wide is constant, not a service: FFmpeg's one-time initialisation, the
//! adapter enumeration of wgpu, the resampler's window table, frame ids and layout generations,
//! the CPU compositor's per-thread scratch rows, and the default crypto provider rustls
//! installs for the uploader.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::sources::Releaser;
use crate::compose::text::FontCache;
use crate::compose::{Backend, ComposeError, OutputFormat, Pipelined};
use crate::media::video_enc::EncoderProbes;

/// Mixers of one [`Services`] that upload at the same time; the rest queue.
pub const MAX_UPLOADING_MIXERS: usize = 4;

/// Services shared by mixers (see the module docs). Cheap to clone: every clone is the same
/// set; two are equal when they are clones of one.
#[derive(Clone, Default)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    #[cfg(feature = "gpu")]
    gpu: crate::compose::gpu::batch::SharedRenderer,
    fonts: FontCache,
    releaser: Releaser,
    uploads: UploadSlots,
    probes: EncoderProbes,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Services");
        #[cfg(feature = "gpu")]
        d.field("gpu", &self.inner.gpu);
        d.field("fonts", &self.inner.fonts)
            .field("releaser", &self.inner.releaser)
            .field("uploads", &self.inner.uploads)
            .finish()
    }
}

impl PartialEq for Services {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Services {
    /// A new, empty set: nothing is started or opened until a mixer needs it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frame releaser (`cm-release`) of every mixer of this set.
    pub fn releaser(&self) -> &Releaser {
        &self.inner.releaser
    }

    /// Waits (up to `timeout`) until the releaser has dropped every frame handed to it so far
    /// ([`Releaser::flush`]).
    pub fn flush_releases(&self, timeout: Duration) -> bool {
        self.inner.releaser.flush(timeout)
    }

    /// The fonts text items are drawn with (loaded on the first text item).
    pub fn fonts(&self) -> &FontCache {
        &self.inner.fonts
    }

    /// The hardware encoders that failed to open, remembered so no mixer of this set probes
    /// one twice.
    pub fn encoder_probes(&self) -> &EncoderProbes {
        &self.inner.probes
    }

    /// The upload slots: at most [`MAX_UPLOADING_MIXERS`] mixers of this set upload at once.
    pub fn upload_slots(&self) -> &UploadSlots {
        &self.inner.uploads
    }

    /// The GPU renderer handle (feature `gpu`): the renderer and its device open on the first
    /// mixer that composes on the GPU.
    #[cfg(feature = "gpu")]
    pub fn gpu(&self) -> &crate::compose::gpu::batch::SharedRenderer {
        &self.inner.gpu
    }

    /// The GPU renderer, if a mixer of this set opened one (opens nothing).
    #[cfg(feature = "gpu")]
    pub fn renderer(&self) -> Option<Arc<crate::compose::gpu::batch::Renderer>> {
        self.inner.gpu.current()
    }

    /// The compositor of a mixer of this set (see [`crate::compose::create_pipelined`]): a
    /// GPU backend composes on this set's renderer.
    pub(crate) fn compositor(
        &self,
        backend: Backend,
        width: u32,
        height: u32,
        format: OutputFormat,
    ) -> Result<Box<dyn Pipelined>, ComposeError> {
        #[cfg(feature = "gpu")]
        {
            crate::compose::create_pipelined_on(&self.inner.gpu, backend, width, height, format)
        }
        #[cfg(not(feature = "gpu"))]
        {
            crate::compose::create_pipelined(backend, width, height, format)
        }
    }
}

/// At most [`MAX_UPLOADING_MIXERS`] mixers upload at once ([`Services::upload_slots`]).
/// Cheap to clone: every clone is the same pool.
#[derive(Clone)]
pub struct UploadSlots {
    inner: Arc<(Mutex<SlotCount>, Condvar)>,
}

#[derive(Debug, Default)]
struct SlotCount {
    held: usize,
    waiting: usize,
}

impl Default for UploadSlots {
    fn default() -> Self {
        UploadSlots {
            inner: Arc::new((Mutex::new(SlotCount::default()), Condvar::new())),
        }
    }
}

impl std::fmt::Debug for UploadSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (held, waiting) = self.counts();
        f.debug_struct("UploadSlots")
            .field("held", &held)
            .field("waiting", &waiting)
            .finish()
    }
}

/// One of the [`MAX_UPLOADING_MIXERS`] slots, held while a mixer uploads.
#[derive(Debug)]
pub struct UploadSlot {
    slots: UploadSlots,
}

impl UploadSlots {
    /// `(held, waiting)`: mixers uploading now, and mixers waiting for a slot.
    pub fn counts(&self) -> (usize, usize) {
        let g = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        (g.held, g.waiting)
    }

    /// Waits for a slot; `None` once `give_up()` says so (checked every 50 ms).
    pub fn take_unless(&self, give_up: impl Fn() -> bool) -> Option<UploadSlot> {
        let (m, cv) = &*self.inner;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        n.waiting += 1;
        while n.held >= MAX_UPLOADING_MIXERS {
            if give_up() {
                n.waiting -= 1;
                return None;
            }
            n = cv
                .wait_timeout(n, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        n.waiting -= 1;
        n.held += 1;
        Some(UploadSlot {
            slots: self.clone(),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let (m, cv) = &*self.slots.inner;
        m.lock().unwrap_or_else(|e| e.into_inner()).held -= 1;
        cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_concurrent_uploaders() {
        let slots = UploadSlots::default();
        let held: Vec<UploadSlot> = (0..MAX_UPLOADING_MIXERS)
            .map(|_| slots.take_unless(|| false).unwrap())
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = slots.clone();
        let t = std::thread::spawn(move || {
            let _s = s2.take_unless(|| false).unwrap();
            tx.send(()).unwrap();
        });
        // all slots held: the next one waits
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(slots.counts(), (MAX_UPLOADING_MIXERS, 1));
        // another set's slots are its own
        assert!(UploadSlots::default().take_unless(|| true).is_some());
        drop(held);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert_eq!(slots.counts(), (0, 0));
    }

    #[test]
    fn clones_are_one_set_and_nothing_starts_before_use() {
        let a = Services::new();
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, Services::new());
        assert!(b.releaser().same(a.releaser()));
        assert!(!a.releaser().started());
        assert!(!a.fonts().loaded());
        #[cfg(feature = "gpu")]
        assert!(a.renderer().is_none(), "no GPU opened before a GPU mixer");
        assert!(a.flush_releases(Duration::from_secs(1)));
    }
}
