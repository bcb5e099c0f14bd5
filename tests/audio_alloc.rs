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
