//! Plane bytes that frames share without copying ([`PlaneData`]), and a pool of plane buffers
//! a caller fills and hands over ([`FramePool`]).
//!
//! The ownership rule: a [`VideoFrame`](super::frame::VideoFrame) never copies its planes. Its
//! [`PlaneData`] is reference-counted: cloning a frame (to push it into several mixers, or
//! because a mixer keeps it as the source's latest picture) shares the bytes, and the bytes
//! are released when the last holder drops them, on whichever thread that is (mixers drop the
//! frames they replace on their own threads, never inside `push_video`). Bytes come from:
//! - a `Vec<u8>` (moved in, never copied),
//! - any `Arc<T: AsRef<[u8]>>` the caller already holds (one decoded frame, many rooms),
//! - memory the caller owns, with a release callback called exactly once when the last holder
//!   is done ([`PlaneData::from_raw`]), e.g. a decoder's buffer returned to its pool,
//! - a [`FramePool`] buffer, which goes back to its pool instead of being freed.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use cloudmixer::model::buffer::PlaneData;
//! let released = Arc::new(AtomicUsize::new(0));
//! let mine: Box<[u8]> = vec![7u8; 16].into_boxed_slice();
//! let (ptr, len) = (mine.as_ptr(), mine.len());
//! let r = released.clone();
//! // SAFETY: `mine` stays alive and unchanged until the callback runs
//! let data = unsafe { PlaneData::from_raw(ptr, len, move || { drop(mine); r.fetch_add(1, Ordering::SeqCst); }) };
//! let shared = data.clone(); // no copy: the same bytes
//! assert_eq!(shared.as_ptr(), ptr);
//! drop(data);
//! assert_eq!(released.load(Ordering::SeqCst), 0);
//! drop(shared);
//! assert_eq!(released.load(Ordering::SeqCst), 1); // exactly once, by the last holder
//! ```

use std::any::Any;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};

/// Immutable, shareable plane bytes (see the [module docs](self)).
#[derive(Clone)]
pub struct PlaneData {
    ptr: *const u8,
    len: usize,
    /// Keeps `ptr..ptr+len` alive and unchanged.
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the bytes are immutable while any PlaneData points at them, and the owner that keeps
// them alive is Send + Sync.
unsafe impl Send for PlaneData {}
// SAFETY: as above; only shared reads happen through `ptr`.
unsafe impl Sync for PlaneData {}

impl fmt::Debug for PlaneData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlaneData({} bytes at {:p})", self.len, self.ptr)
    }
}

impl PlaneData {
    /// Shares the bytes of `owner` (an `Arc<Vec<u8>>`, `Arc<[u8]>`-like buffer, a decoder
    /// frame wrapper…) without copying; they live as long as any frame holds them.
    pub fn from_arc<T: AsRef<[u8]> + Send + Sync + 'static>(owner: Arc<T>) -> PlaneData {
        let s: &[u8] = (*owner).as_ref();
        let (ptr, len) = (s.as_ptr(), s.len());
        PlaneData {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// Lends `len` bytes at `ptr` that the caller owns; `release` is called exactly once,
    /// on the thread that drops the last holder, when no frame uses them any more.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be readable and must not change until `release` is called.
    pub unsafe fn from_raw(
        ptr: *const u8,
        len: usize,
        release: impl FnOnce() + Send + 'static,
    ) -> PlaneData {
        let owner = PlaneData::from_arc(Arc::new(Lent(Mutex::new(Some(Box::new(release))))));
        // SAFETY: the caller's promise, for as long as the owner (the release) lives
        unsafe { owner.sharing(ptr, len) }
    }

    /// Lends a buffer of the caller's (e.g. from its own pool) without copying and without
    /// `unsafe`: `release` gets the buffer back, exactly once, on the thread that drops the
    /// last holder (a mixer's releaser thread for frames it lets go of), to recycle it.
    ///
    /// ```
    /// use cloudmixer::model::buffer::PlaneData;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let p = PlaneData::lend(vec![7u8; 64], move |buf| tx.send(buf).unwrap());
    /// assert_eq!(p.len(), 64);
    /// drop(p);
    /// assert_eq!(rx.recv().unwrap().len(), 64); // back for the next frame
    /// ```
    pub fn lend(buf: Vec<u8>, release: impl FnOnce(Vec<u8>) + Send + 'static) -> PlaneData {
        let (ptr, len) = (buf.as_ptr(), buf.len());
        // SAFETY: the Vec moves into the release closure: its heap bytes stay where they are,
        // unchanged (nothing else can reach them), until the closure hands them back
        unsafe { PlaneData::from_raw(ptr, len, move || release(buf)) }
    }

    /// A part of these bytes, sharing them (no copy): e.g. the Y, U and V planes of one frame
    /// buffer lent with a single release callback. `None` if `range` is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Option<PlaneData> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        Some(PlaneData {
            // SAFETY: start ≤ len, so the pointer stays inside (or one past) the buffer
            ptr: unsafe { self.ptr.add(range.start) },
            len: range.end - range.start,
            _owner: self._owner.clone(),
        })
    }

    /// Other bytes kept alive by the same owner as `self` (e.g. the U and V planes of a
    /// caller's frame lent with one release callback: the callback runs once, when every plane
    /// is done).
    ///
    /// # Safety
    /// `ptr..ptr + len` must be readable and unchanged for as long as `self`'s owner lives.
    pub unsafe fn sharing(&self, ptr: *const u8, len: usize) -> PlaneData {
        PlaneData {
            ptr: if len == 0 {
                std::ptr::NonNull::dangling().as_ptr()
            } else {
                ptr
            },
            len,
            _owner: self._owner.clone(),
        }
    }

    /// The address of the first byte (two `PlaneData` with the same address share bytes).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
}

impl From<Vec<u8>> for PlaneData {
    /// Moves the vector in (no copy).
    fn from(v: Vec<u8>) -> PlaneData {
        PlaneData::from_arc(Arc::new(v))
    }
}

impl Deref for PlaneData {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: the owner keeps `len` readable bytes at `ptr` unchanged while we live.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for PlaneData {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

type Release = Box<dyn FnOnce() + Send>;

/// Caller-owned bytes: calls the release callback when the last holder goes.
struct Lent(Mutex<Option<Release>>);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &[]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let f = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            f();
        }
    }
}

/// A pool of plane buffers: [`FramePool::buffer`] hands out a zeroed-once, reused `Vec<u8>` to
/// fill; turned into [`PlaneData`] it goes back to the pool when the last frame holding it is
/// dropped, so a steady camera allocates nothing after its first frames. One pool may feed any
/// number of mixers.
///
/// ```
/// use cloudmixer::model::buffer::FramePool;
/// use cloudmixer::model::frame::VideoFrame;
/// let pool = FramePool::new(8);
/// let (mut y, mut u, mut v) = (pool.buffer(64 * 48), pool.buffer(32 * 24), pool.buffer(32 * 24));
/// y.fill(81); u.fill(90); v.fill(240);
/// let f = VideoFrame::i420_shared(64, 48, y.into(), u.into(), v.into()).unwrap();
/// drop(f);
/// assert_eq!(pool.idle(), 3); // back for the next frame
/// ```
#[derive(Clone)]
pub struct FramePool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FramePool({} idle, keeps {})",
            self.idle(),
            self.inner.keep
        )
    }
}

impl FramePool {
    /// A pool that keeps at most `keep` idle buffers (more are freed).
    pub fn new(keep: usize) -> FramePool {
        FramePool {
            inner: Arc::new(PoolInner {
                free: Mutex::new(Vec::new()),
                keep,
            }),
        }
    }

    /// A buffer of exactly `len` bytes (contents unspecified: a reused buffer keeps old
    /// bytes), reused from the pool when one is large enough.
    pub fn buffer(&self, len: usize) -> PoolBuffer {
        let reused = {
            let mut free = self.inner.free.lock().unwrap_or_else(|e| e.into_inner());
            free.iter()
                .position(|b| b.capacity() >= len)
                .map(|i| free.swap_remove(i))
        };
        let mut v = reused.unwrap_or_default();
        v.resize(len, 0);
        PoolBuffer {
            data: v,
            pool: Arc::downgrade(&self.inner),
        }
    }

    /// Idle buffers waiting in the pool.
    pub fn idle(&self) -> usize {
        self.inner
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A buffer from a [`FramePool`], writable until it becomes [`PlaneData`].
pub struct PoolBuffer {
    data: Vec<u8>,
    pool: Weak<PoolInner>,
}

impl Deref for PoolBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl DerefMut for PoolBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// A pooled buffer held by frames: returns to its pool when the last one drops it.
struct Pooled(PoolBuffer);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.0.pool.upgrade() {
            let mut free = pool.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < pool.keep {
                free.push(std::mem::take(&mut self.0.data));
            }
        }
    }
}

impl From<PoolBuffer> for PlaneData {
    fn from(b: PoolBuffer) -> PlaneData {
        PlaneData::from_arc(Arc::new(Pooled(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_is_moved_not_copied() {
        let v = vec![1u8, 2, 3];
        let p = v.as_ptr();
        let d = PlaneData::from(v);
        assert_eq!(d.as_ptr(), p);
        assert_eq!(&*d, &[1, 2, 3]);
        assert_eq!(d.clone().as_ptr(), p);
    }

    #[test]
    fn pool_reuses_and_bounds() {
        let pool = FramePool::new(1);
        let a = PlaneData::from(pool.buffer(100));
        let b = PlaneData::from(pool.buffer(100));
        let pa = a.as_ptr();
        drop(a);
        drop(b); // the pool keeps one
        assert_eq!(pool.idle(), 1);
        let c = pool.buffer(50);
        assert_eq!(c.as_ptr(), pa, "the kept buffer is reused");
        assert_eq!(c.len(), 50);
    }
}
