//! What a recording server embedding the crate relies on: a mixer shared by threads
//! (`Arc<Mixer>`, `stop` + `wait`), exact lengths, every subscriber getting every event until
//! NULL, and an overloaded mixer saying so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudmixer::prelude::*;
use serde_json::json;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("embedding")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(w: u32, h: u32, fps: u32) -> MixerConfig {
    MixerConfig::from_value(json!({"mode":0,"videoFileCfg":{"svrPathName":"rec.mp4",
        "vWidth":w,"vHeight":h,"vFps":fps,"layoutConfig":[
            {"type":0,"left":0,"top":0,"width":w,"height":h,"param":{"camid":"u1.0"}}]}}))
    .unwrap()
}

/// Video frames ffprobe counts in a file.
fn frames(p: &Path) -> u64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A camera thread pushing a frame every `every` until the mixer refuses.
fn camera(m: Arc<Mixer>, every: Duration) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        loop {
            let f = VideoFrame::solid_i420(320, 240, [120, 100, 160]).unwrap();
            if m.push_video("u1.0", f).is_err() {
                return n;
            }
            n += 1;
            std::thread::sleep(every);
        }
    })
}

/// `Arc<Mixer>`: one thread waits, another stops it; `wait` returns the final output info;
/// the camera thread's pushes are refused from then on.
#[test]
fn a_shared_mixer_is_stopped_and_waited_for_from_other_threads() {
    let d = dir("shared");
    let m = Arc::new(
        Mixer::create_with(
            config(320, 240, 15),
            Storage::new(&d),
            MixerSettings::default(),
        )
        .unwrap(),
    );
    let cam = camera(m.clone(), Duration::from_millis(33));
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || m.wait())
    };
    std::thread::sleep(Duration::from_millis(1500));
    m.stop();
    let outputs = waiter.join().unwrap().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].state, OutputState::Stopped);
    assert!(
        outputs[0].file_size > 0 && outputs[0].duration >= 1000,
        "{:?}",
        outputs[0]
    );
    assert!(cam.join().unwrap() > 10);
    assert_eq!(m.state(), MixerState::Null);
    // stopping again, waiting again: the same answer at once
    m.stop();
    assert_eq!(m.wait().unwrap(), outputs);
    assert_eq!(
        frames(&d.join("rec.mp4")),
        (outputs[0].duration * 15 + 500) / 1000
    );
}

/// `stop_after(12 s)` in real time: exactly 180 frames at 15 fps, and `startTime` is when the
/// recording's clock started (after `create` opened everything, before it returned).
#[test]
fn a_twelve_second_recording_holds_exactly_180_frames() {
    let d = dir("twelve");
    let epoch_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let before = epoch_ms();
    let m = Arc::new(
        Mixer::create_with(
            config(320, 240, 15),
            Storage::new(&d),
            MixerSettings::default(),
        )
        .unwrap(),
    );
    let after = epoch_ms();
    m.stop_after(Duration::from_secs(12));
    let cam = camera(m.clone(), Duration::from_millis(40));
    let t0 = Instant::now();
    let outputs = m.wait().unwrap();
    let took = t0.elapsed();
    cam.join().unwrap();
    assert_eq!(frames(&d.join("rec.mp4")), 180);
    assert_eq!(outputs[0].duration, 12_000);
    assert!(
        (before..=after).contains(&outputs[0].start_time),
        "startTime {} not within create ({before}..{after})",
        outputs[0].start_time
    );
    // the last tick is due at 11.933 s + the 200 ms latency
    assert!(took >= Duration::from_millis(11_900), "{took:?}");
}

/// Two subscribers each get every event, in the same order, and their streams end after NULL;
/// a subscriber made after the end gets an ended stream.
#[test]
fn every_subscriber_gets_every_event_and_its_stream_ends() {
    let d = dir("subscribers");
    let mut m = Mixer::create_with(
        config(160, 120, 10),
        Storage::new(&d),
        MixerSettings::offline(),
    )
    .unwrap();
    let collect =
        |rx: Receiver<MixerEvent>| std::thread::spawn(move || rx.iter().collect::<Vec<_>>());
    let a = collect(m.subscribe());
    let b = collect(m.subscribe());
    for i in 0..20u64 {
        m.push_video(
            "u1.0",
            VideoFrame::solid_i420(160, 120, [90, 90, 90]).unwrap(),
        )
        .unwrap();
        m.advance_frames(i + 1).unwrap();
    }
    m.destroy().unwrap();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(a, b);
    assert_ended_stopped(&a);
    // the first receiver (from create) has STARTING too, and also ends
    let all: Vec<MixerEvent> = m.events().iter().collect();
    assert!(matches!(
        all[0],
        MixerEvent::StateChanged {
            state: MixerState::Starting,
            ..
        }
    ));
    assert_eq!(all.last(), a.last());
    assert_eq!(m.subscribe().iter().count(), 0);
}

/// An encoder far too slow for real time (x264 `medium` on 1080p noise at 30 fps here):
/// the late ticks are counted, and the once-a-second stats event says the mixer is overloaded.
#[test]
fn an_overloaded_mixer_counts_late_ticks_and_says_so() {
    let d = dir("overload");
    let mut settings = MixerSettings::default();
    settings.encoder.preset = "medium".into();
    let m =
        Arc::new(Mixer::create_with(config(1920, 1080, 30), Storage::new(&d), settings).unwrap());
    let events = m.subscribe();
    m.stop_after(Duration::from_secs(2));
    let cam = {
        let m = m.clone();
        std::thread::spawn(move || {
            // noise: nothing for the encoder to predict
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut noise = |n: usize| -> Vec<u8> {
                (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            };
            let fs: Vec<VideoFrame> = (0..4)
                .map(|_| {
                    let (y, u, v) = (noise(1920 * 1080), noise(960 * 540), noise(960 * 540));
                    VideoFrame::i420(1920, 1080, y, u, v).unwrap()
                })
                .collect();
            let mut i = 0;
            while m.push_video("u1.0", fs[i % 4].clone()).is_ok() {
                i += 1;
                std::thread::sleep(Duration::from_millis(33));
            }
        })
    };
    m.wait().unwrap();
    cam.join().unwrap();
    let st = m.stats();
    assert!(st.late_ticks > 0, "{st:?}");
    assert!(st.max_tick_late_us > 33_333, "{st:?}");
    let overloaded = events
        .iter()
        .filter_map(|e| match e {
            MixerEvent::Stats(s) => Some(s),
            _ => None,
        })
        .any(|s| s.overloaded && s.late_ticks > 0);
    assert!(overloaded, "no stats event said overloaded: {st:?}");
}

/// The async stream (feature `async`) gets every event and ends after NULL, polled here by a
/// minimal executor (no runtime needed).
#[cfg(feature = "async")]
#[test]
fn the_async_event_stream_ends_after_null() {
    use std::future::poll_fn;
    use std::pin::Pin;
    use std::task::{Context, Poll, Wake, Waker};

    use futures_core::Stream;

    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = Waker::from(Arc::new(Thread(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    let d = dir("async");
    let m = Arc::new(
        Mixer::create_with(
            config(160, 120, 10),
            Storage::new(&d),
            MixerSettings::default(),
        )
        .unwrap(),
    );
    let mut stream = m.event_stream();
    m.stop_after(Duration::from_millis(500));
    let events = block_on(async {
        let mut v = Vec::new();
        while let Some(ev) = stream.next().await {
            v.push(ev);
        }
        v
    });
    assert_ended_stopped(&events);
    // the Stream impl (for combinators) ends too
    let mut again = m.event_stream();
    let rest = block_on(poll_fn(|cx| Pin::new(&mut again).poll_next(cx)));
    assert!(rest.is_none(), "{rest:?}");
}

/// The events end with NULL and include the file's final output info (state 2, stopped).
fn assert_ended_stopped(events: &[MixerEvent]) {
    assert!(
        matches!(
            events.last(),
            Some(MixerEvent::StateChanged {
                state: MixerState::Null,
                ..
            })
        ),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, MixerEvent::OutputInfoChanged(i) if i.state == OutputState::Stopped)));
}

/// Input and encoder counters: frames pushed faster than the output rate are counted as
/// replaced before use; every composed frame went through the encoder.
#[test]
fn stats_count_frames_received_used_and_replaced() {
    let d = dir("stats");
    let mut m = Mixer::create_with(
        config(160, 120, 10),
        Storage::new(&d),
        MixerSettings::offline(),
    )
    .unwrap();
    for i in 0..10u64 {
        // three frames per output tick: the last one is shown, two are replaced before use
        for _ in 0..3 {
            m.push_video(
                "u1.0",
                VideoFrame::solid_i420(160, 120, [90, 90, 90]).unwrap(),
            )
            .unwrap();
        }
        m.advance_frames(i + 1).unwrap();
    }
    let src = m.source_stats();
    assert_eq!(src.len(), 1);
    assert_eq!(
        (
            src[0].camid.as_str(),
            src[0].received,
            src[0].used,
            src[0].replaced
        ),
        ("u1.0", 30, 10, 20)
    );
    assert_eq!(m.stats().frames_repeated, 0, "a new frame every tick");
    // the camera stalls: five more ticks show its last frame again
    m.advance_frames(15).unwrap();
    m.destroy().unwrap();
    let st = m.stats();
    assert_eq!(
        (st.frames_received, st.frames_used, st.frames_replaced),
        (30, 10, 20)
    );
    assert_eq!(st.frames_repeated, 5, "{st:?}");
    assert_eq!((st.ticks, st.encoder_queue), (15, 0));
    assert!(st.encoder_max_us > 0, "{st:?}");
}

/// Issue 20, item 6: after `stop()` the mixer refuses updates and pushes with an error that
/// says it was stopped (not "destroyed"), and a subscriber made while it runs sees RUNNING
/// first.
#[test]
fn a_stopped_mixer_says_so_and_a_late_subscriber_sees_the_state() {
    let d = dir("stopped_says_so");
    let m = Mixer::create_with(
        config(160, 120, 10),
        Storage::new(&d),
        MixerSettings::offline(),
    )
    .unwrap();
    let late = m.subscribe();
    assert!(matches!(
        late.try_recv(),
        Ok(MixerEvent::StateChanged {
            state: MixerState::Running,
            ..
        })
    ));
    m.push_video(
        "u1.0",
        VideoFrame::solid_i420(160, 120, [90, 90, 90]).unwrap(),
    )
    .unwrap();
    m.advance_frames(3).unwrap();
    m.stop();
    assert!(m.wait_timeout(Duration::from_secs(10)).is_some());
    let update = json!([{"type":0,"left":0,"top":0,"width":80,"height":60,
        "param":{"camid":"u1.0"}}]);
    let e = m.update_content(&update).unwrap_err();
    assert!(e.to_string().contains("stopped"), "{e}");
    let e = m
        .push_video(
            "u1.0",
            VideoFrame::solid_i420(160, 120, [90, 90, 90]).unwrap(),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("stopped") && !e.to_string().contains("destroyed"),
        "{e}"
    );
}

/// Issue 20, item 4: `stop()` in real time keeps what was captured until the call: the
/// frames up to the mixer clock at `stop()` (15 fps: round(T × 15)), not the ticks already
/// made (which run `latency` behind); `stop_now()` ends at the next tick.
#[test]
fn stop_keeps_what_was_captured_until_the_call() {
    for now in [false, true] {
        let d = dir(if now { "stop_now" } else { "stop_keeps" });
        let m = Arc::new(
            Mixer::create_with(
                config(160, 120, 15),
                Storage::new(&d),
                MixerSettings::default(),
            )
            .unwrap(),
        );
        let cam = {
            let m = m.clone();
            std::thread::spawn(move || loop {
                let f = VideoFrame::solid_i420(160, 120, [120, 100, 160]).unwrap();
                if m.push_video("u1.0", f).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        std::thread::sleep(Duration::from_millis(2030));
        let (t0, ticks0) = (m.clock(), m.ticks());
        if now {
            m.stop_now();
        } else {
            m.stop();
        }
        let t1 = m.clock();
        let outputs = m.wait_timeout(Duration::from_secs(10)).unwrap().unwrap();
        cam.join().unwrap();
        let got = frames(&d.join("rec.mp4"));
        let due = |t: Duration| (t.as_secs_f64() * 15.0).round() as u64;
        if now {
            assert!(
                got <= ticks0 + 2,
                "stop_now: {got} frames, {ticks0} ticks made"
            );
        } else {
            assert!(
                (due(t0)..=due(t1)).contains(&got),
                "stop() at {t0:?}: {got} frames, want {}..={} ({ticks0} ticks were made)",
                due(t0),
                due(t1)
            );
            assert!(got > ticks0, "more than the ticks made before the call");
            assert_eq!(outputs[0].duration, got * 1000 / 15);
        }
    }
}
