//! Release callbacks of lent frames that call back into the mixer (issue 20, item 2): a
//! recording server recycles a buffer into its next frame from the callback, or stops the
//! mixer from it. Neither may hang the mixer, and callbacks run on the releaser thread, never
//! under a source's lock or on the compose thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use cloudmixer::model::buffer::PlaneData;
use cloudmixer::prelude::*;
use serde_json::json;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("release_callbacks")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A real-time mixer (default settings) of one 64x48 camera.
fn mixer(d: &Path) -> Arc<Mixer> {
    let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"rec.mp4",
        "vWidth":64,"vHeight":48,"vFps":15,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":64,"height":48,"param":{"camid":"u1.0"}}]}}))
    .unwrap();
    Arc::new(Mixer::create_with(cfg, Storage::new(d), MixerSettings::default()).unwrap())
}

/// A lent 64x48 I420 frame whose release runs `on_release`.
fn lent(y: u8, on_release: impl FnOnce() + Send + 'static) -> VideoFrame {
    let (ys, cs) = (64 * 48, 32 * 24);
    let mut buf = vec![128u8; ys + 2 * cs].into_boxed_slice();
    buf[..ys].fill(y);
    let (ptr, len) = (buf.as_ptr(), buf.len());
    // SAFETY: `buf` moves into the callback: alive and unchanged until it runs
    let whole = unsafe {
        PlaneData::from_raw(ptr, len, move || {
            drop(buf);
            on_release();
        })
    };
    VideoFrame::i420_shared(
        64,
        48,
        whole.slice(0..ys).unwrap(),
        whole.slice(ys..ys + cs).unwrap(),
        whole.slice(ys + cs..len).unwrap(),
    )
    .unwrap()
}

/// The camera pushes lent frames at 30 fps (twice the output rate, so frames are replaced
/// before use) for `secs`; each frame's release callback runs `cb` with the mixer. The pushes
/// run on a thread of their own: a mixer that deadlocks fails the test instead of hanging it.
fn camera(
    m: &Arc<Mixer>,
    secs: f64,
    cb: Arc<dyn Fn(&Mixer) + Send + Sync>,
) -> Arc<Mutex<Vec<String>>> {
    let threads: Arc<Mutex<Vec<String>>> = Arc::default();
    let (m2, t2) = (m.clone(), threads.clone());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed().as_secs_f64() < secs {
            let (w, t, cb): (Weak<Mixer>, _, _) = (Arc::downgrade(&m2), t2.clone(), cb.clone());
            let f = lent((16 + n % 200) as u8, move || {
                let name = std::thread::current().name().unwrap_or("?").to_string();
                t.lock().unwrap().push(name);
                if let Some(m) = w.upgrade() {
                    cb(&m);
                }
            });
            if m2.push_video("u1.0", f).is_err() {
                break;
            }
            n += 1;
            std::thread::sleep(Duration::from_micros(33_333));
        }
        let _ = done_tx.send(());
    });
    assert!(
        done_rx
            .recv_timeout(Duration::from_secs_f64(secs + 10.0))
            .is_ok(),
        "push_video hung: the mixer deadlocked in a release callback"
    );
    threads
}

#[test]
fn a_release_callback_that_pushes_to_the_same_camera_never_hangs() {
    let d = dir("recycle");
    let m = mixer(&d);
    let pushed = Arc::new(AtomicUsize::new(0));
    let p = pushed.clone();
    // the server recycles the buffer into its next frame: a push from the callback
    let cb: Arc<dyn Fn(&Mixer) + Send + Sync> = Arc::new(move |m: &Mixer| {
        let f = VideoFrame::solid_i420(64, 48, [200, 128, 128]).unwrap();
        if m.push_video("u1.0", f).is_ok() {
            p.fetch_add(1, Ordering::Relaxed);
        }
    });
    let threads = camera(&m, 1.5, cb);
    m.stop();
    let t0 = Instant::now();
    let end = m.wait_timeout(Duration::from_secs(10));
    assert!(
        end.is_some(),
        "the mixer hung: stop() did not end within 10 s"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let names = threads.lock().unwrap().clone();
    assert!(names.len() >= 20, "{} callbacks ran", names.len());
    assert!(pushed.load(Ordering::Relaxed) >= 20);
    // while recording, callbacks ran on the releaser thread only (never under a source's lock
    // on the compose thread)
    let off = names.iter().filter(|n| *n != "cm-release").count();
    assert!(
        off <= 2,
        "{off} of {} callbacks ran elsewhere: {:?}",
        names.len(),
        names
            .iter()
            .filter(|n| *n != "cm-release")
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_release_callback_that_stops_the_mixer_never_hangs() {
    let d = dir("stop");
    let m = mixer(&d);
    let cb: Arc<dyn Fn(&Mixer) + Send + Sync> = Arc::new(|m: &Mixer| m.stop());
    let _ = camera(&m, 1.0, cb);
    let end = m.wait_timeout(Duration::from_secs(10));
    assert!(end.is_some(), "the mixer hung after a callback stopped it");
}

/// A lent frame that counts its release.
fn counted(y: u8, n: &Arc<AtomicUsize>) -> VideoFrame {
    let n = n.clone();
    lent(y, move || {
        n.fetch_add(1, Ordering::SeqCst);
    })
}

fn released_within(n: &Arc<AtomicUsize>, want: usize, limit: Duration) -> bool {
    let t0 = Instant::now();
    while n.load(Ordering::SeqCst) < want && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    n.load(Ordering::SeqCst) == want
}

/// Issue 20, item 5: the last frame of a camera that left goes back once the camera times
/// out, a frame of a camid no item shows goes back the same way, and everything still held
/// goes back at NULL — while the server still holds the mixer.
#[test]
fn lent_frames_nobody_shows_go_back_without_dropping_the_mixer() {
    let d = dir("departed");
    let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"rec.mp4",
        "vWidth":64,"vHeight":48,"vFps":10,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":64,"height":48,"param":{"camid":"u1.0"}}]}}))
    .unwrap();
    let m = Arc::new(Mixer::create_with(cfg, Storage::new(&d), MixerSettings::offline()).unwrap());
    let (left, ghost, last) = (Arc::default(), Arc::default(), Arc::default());
    m.push_video("u1.0", counted(60, &left)).unwrap();
    m.push_video("Usr9.-1", counted(70, &ghost)).unwrap();
    m.advance_frames(5).unwrap();
    assert_eq!(left.load(Ordering::SeqCst), 0, "still shown");
    // 3 s later (the source timeout is 2 s) both are gone
    m.advance_frames(35).unwrap();
    assert!(
        released_within(&left, 1, Duration::from_secs(5)),
        "the camera that left"
    );
    assert!(
        released_within(&ghost, 1, Duration::from_secs(5)),
        "the unknown camid"
    );
    // a frame still shown at the end goes back at NULL, the mixer still held
    m.push_video("u1.0", counted(80, &last)).unwrap();
    m.advance_frames(42).unwrap();
    m.stop();
    assert!(m.wait_timeout(Duration::from_secs(10)).is_some());
    assert!(
        released_within(&last, 1, Duration::from_secs(5)),
        "held until the mixer drops"
    );
    drop(m);
}

/// Issue 20, item 5: with more unknown camids than the mixer keeps, the least recently pushed
/// is evicted (its frames go back), not the newest.
#[test]
fn the_least_recently_pushed_unknown_camid_is_evicted() {
    let d = dir("evict");
    let cfg = MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"rec.mp4",
        "vWidth":64,"vHeight":48,"vFps":10,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":64,"height":48,"param":{"camid":"u1.0"}}]}}))
    .unwrap();
    let settings = MixerSettings {
        max_sources: 4,
        ..MixerSettings::offline()
    };
    let m = Mixer::create_with(cfg, Storage::new(&d), settings).unwrap();
    let stale = Arc::new(AtomicUsize::new(0));
    m.advance_frames(10).unwrap();
    m.push_video("Usr9.-1", counted(60, &stale)).unwrap();
    m.advance_frames(12).unwrap();
    // a burst of new camids between two ticks (none of them promoted yet)
    for i in 0..10 {
        let n = Arc::new(AtomicUsize::new(0));
        m.push_video(&format!("late{i}.-1"), counted(70, &n))
            .unwrap();
    }
    assert!(
        released_within(&stale, 1, Duration::from_secs(5)),
        "the stale camid went first"
    );
    let kept: Vec<String> = m.source_stats().into_iter().map(|s| s.camid).collect();
    assert!(!kept.contains(&"Usr9.-1".to_string()), "{kept:?}");
    assert!(kept.contains(&"late9.-1".to_string()), "{kept:?}");
    assert!(kept.contains(&"late8.-1".to_string()), "{kept:?}");
}
