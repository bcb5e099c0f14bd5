//! Checks that `AudioEncoder::push` (and draining `receive`) does not allocate through
//! the Rust allocator in the steady state. FFmpeg's own `av_malloc` goes to libc directly
//! and is not counted here (packet buffers are allocated by libavcodec per packet).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use cloudmixer::media::audio_enc::{AudioCodec, AudioEncoder};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn push_480_does_not_allocate_after_warm_up() {
    for codec in [AudioCodec::Aac, AudioCodec::Mp3, AudioCodec::Pcm] {
        for channels in [1u16, 2] {
            let mut enc = AudioEncoder::open(codec, channels, 0, true).expect("open");
            let block: Vec<f32> = (0..480 * usize::from(channels))
                .map(|i| (i as f32 * 0.05).sin() * 0.5)
                .collect();
            let mut pkt = ffmpeg_next::Packet::empty();
            let mut packets = 0;
            let mut run = |enc: &mut AudioEncoder, blocks: usize, count: bool| {
                for _ in 0..blocks {
                    COUNTING.with(|c| c.set(count));
                    enc.push(&block).expect("push");
                    while enc.receive(&mut pkt).expect("receive") {
                        packets += 1;
                    }
                    COUNTING.with(|c| c.set(false));
                }
            };
            run(&mut enc, 200, false); // 2 s warm-up
            ALLOCS.store(0, Ordering::Relaxed);
            run(&mut enc, 1_000, true); // 10 s counted
            let allocs = ALLOCS.load(Ordering::Relaxed);
            println!(
                "{} {channels}ch: {allocs} Rust allocations in 1000 pushes",
                enc.name()
            );
            assert_eq!(allocs, 0, "{} {channels}ch allocated", enc.name());
            assert!(packets > 0);
            enc.finish().expect("finish");
        }
    }
}

/// `Mixer::push_audio` allocates nothing once the user is known (the caller's frame is moved
/// in; the queue is a fixed ring).
#[test]
fn push_audio_does_not_allocate_in_the_steady_state() {
    use cloudmixer::model::audio::AudioFrame;
    use cloudmixer::model::config::MixerConfig;
    use cloudmixer::output::Storage;
    use cloudmixer::pipeline::{Mixer, MixerSettings};
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("push_audio_alloc");
    let _ = std::fs::remove_dir_all(&d);
    let cfg =
        MixerConfig::from_json(r#"{"mode":0,"audioFileCfg":{"svrPathName":"/a.wav"}}"#).unwrap();
    let mut m = Mixer::create_with(cfg, Storage::new(&d), MixerSettings::offline()).unwrap();
    let frame = || AudioFrame::i16_interleaved(vec![100; 960], 48_000, 2).unwrap();
    let users = ["Usr1.-1", "Usr2", "Usr3.0"];
    let mut pushed = 0;
    for round in 0..300u64 {
        let counted = round >= 100; // users known, queue and stage warm
        for u in users {
            let f = frame();
            COUNTING.with(|c| c.set(counted));
            let r = m.push_audio(u, f);
            COUNTING.with(|c| c.set(false));
            r.unwrap();
            pushed += 1;
        }
        m.advance_to(std::time::Duration::from_millis(10 * (round + 1)))
            .unwrap();
        if round == 99 {
            ALLOCS.store(0, Ordering::Relaxed);
        }
    }
    let allocs = ALLOCS.load(Ordering::Relaxed);
    m.destroy().unwrap();
    assert_eq!(m.stats().audio_frames, pushed);
    assert_eq!(
        allocs, 0,
        "push_audio allocated {allocs} times in 600 pushes"
    );
}
