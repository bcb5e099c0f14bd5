//! Frames without copies: one caller-owned frame buffer (lent with a release callback) feeds
//! two mixers; pushing it allocates next to nothing, both recordings show it, and the release
//! callback fires exactly once, after the last mixer let go of it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cloudmixer::model::buffer::{FramePool, PlaneData};
use cloudmixer::prelude::*;
use serde_json::json;

/// Counts the bytes this thread allocates while `COUNT` is on.
struct Counting;
thread_local! {
    static COUNT: Cell<bool> = const { Cell::new(false) };
}
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT.try_with(|c| c.get()).unwrap_or(false) {
            BYTES.fetch_add(l.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is System's
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("zero_copy")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mixer(d: &Path) -> Mixer {
    let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"rec.mp4",
        "vWidth":1280,"vHeight":720,"vFps":10,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":1280,"height":720,"param":{"camid":"u1.0"}}]}}))
    .unwrap();
    Mixer::create_with(cfg, Storage::new(d), MixerSettings::offline()).unwrap()
}

/// The Y, U, V of the centre pixel of a recording's first frame.
fn centre(p: &Path) -> [u8; 3] {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(p)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "crop=2:2:640:360",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv444p",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    [out.stdout[0], out.stdout[4], out.stdout[8]]
}

#[test]
fn one_lent_frame_feeds_two_mixers_without_a_copy() {
    let (w, h) = (1280usize, 720usize);
    let (ys, cs) = (w * h, w / 2 * h / 2);
    let mut buf = vec![0u8; ys + 2 * cs].into_boxed_slice();
    buf[..ys].fill(170);
    buf[ys..ys + cs].fill(60);
    buf[ys + cs..].fill(200);
    let released = Arc::new(AtomicUsize::new(0));
    let (ptr, len) = (buf.as_ptr(), buf.len());
    let r = released.clone();
    // SAFETY: `buf` is moved into the callback: alive and unchanged until it runs
    let whole = unsafe {
        PlaneData::from_raw(ptr, len, move || {
            drop(buf);
            r.fetch_add(1, Ordering::SeqCst);
        })
    };
    let frame = VideoFrame::i420_shared(
        w as u32,
        h as u32,
        whole.slice(0..ys).unwrap(),
        whole.slice(ys..ys + cs).unwrap(),
        whole.slice(ys + cs..len).unwrap(),
    )
    .unwrap();
    drop(whole);
    let (d1, d2) = (dir("a"), dir("b"));
    let (mut m1, mut m2) = (mixer(&d1), mixer(&d2));
    BYTES.store(0, Ordering::SeqCst);
    COUNT.with(|c| c.set(true));
    m1.push_video("u1.0", frame.clone()).unwrap();
    m2.push_video("u1.0", frame).unwrap();
    COUNT.with(|c| c.set(false));
    let pushed = BYTES.load(Ordering::SeqCst);
    assert!(
        pushed < 16 * 1024,
        "pushing a 1.4 MB frame twice allocated {pushed} bytes"
    );
    for m in [&m1, &m2] {
        m.advance_frames(5).unwrap();
    }
    assert_eq!(
        released.load(Ordering::SeqCst),
        0,
        "both mixers still hold it"
    );
    m1.destroy().unwrap();
    drop(m1);
    m2.destroy().unwrap();
    drop(m2);
    // the releaser thread may drop the last reference a moment later
    let t0 = std::time::Instant::now();
    while released.load(Ordering::SeqCst) == 0 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(released.load(Ordering::SeqCst), 1, "released exactly once");
    for d in [&d1, &d2] {
        let c = centre(&d.join("rec.mp4"));
        for (got, want) in c.iter().zip([170u8, 60, 200]) {
            assert!(
                (*got as i32 - want as i32).abs() <= 2,
                "{c:?} in {}",
                d.display()
            );
        }
    }
}

/// A camera drawing its frames from a `FramePool`: the buffers come back once the mixer has
/// replaced the frames, so a steady stream reuses them.
#[test]
fn pooled_buffers_come_back_for_reuse() {
    let d = dir("pool");
    let mut m = mixer(&d);
    let pool = FramePool::new(16);
    let mut luma_buffers = std::collections::HashSet::new();
    for i in 0..20u64 {
        let (mut y, mut u, mut v) = (
            pool.buffer(1280 * 720),
            pool.buffer(640 * 360),
            pool.buffer(640 * 360),
        );
        luma_buffers.insert(y.as_ptr() as usize);
        y.fill(100);
        u.fill(128);
        v.fill(128);
        let f = VideoFrame::i420_shared(1280, 720, y.into(), u.into(), v.into()).unwrap();
        m.push_video("u1.0", f).unwrap();
        m.advance_frames(i + 1).unwrap();
    }
    m.destroy().unwrap();
    drop(m);
    let t0 = std::time::Instant::now();
    while pool.idle() < 3 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(pool.idle() >= 3, "{pool:?}");
    assert!(pool.idle() <= 16);
    // 20 frames, a handful of distinct luma buffers: the rest were reused
    assert!(
        luma_buffers.len() <= 8,
        "{} distinct buffers",
        luma_buffers.len()
    );
}
