//! The batch renderer (`compose::gpu::batch`): many mixers in one submission, each picture
//! identical to the CPU compositor's; repeats without GPU work; a stalled mixer delays nobody;
//! a device lost mid-batch is an error for every frame, not a hang.
//!
//! Without an adapter these tests print a note and pass, unless `CLOUDMIXER_REQUIRE_GPU=1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudmixer::compose::cpu::CpuCompositor;
use cloudmixer::compose::gpu::batch::{BatchCompositor, Renderer, RendererOptions, SharedRenderer};
use cloudmixer::compose::gpu::{
    AdapterPolicy, GpuCompositor, GpuContext, GpuOptions, OutputFormat, OutputFrame,
};
use cloudmixer::compose::{Compositor, Frames, OutPlanes};
use cloudmixer::model::frame::{ColorSpace, I420Image};
use cloudmixer::model::layout::{FitMode, Layout, Rect};
use cloudmixer::testkit::{gpu_or_skip, pattern_frame};

fn frames(sources: &[(&str, u32, u32)], seed: u32) -> Frames {
    sources
        .iter()
        .enumerate()
        .map(|(i, (id, w, h))| {
            (
                id.to_string(),
                Arc::new(
                    pattern_frame(*w, *h, seed + i as u32 * 3)
                        .with_color(ColorSpace::BT709_LIMITED),
                ),
            )
        })
        .collect()
}

fn cpu(layout: &Layout, f: &Frames) -> I420Image {
    CpuCompositor::new(layout.width(), layout.height())
        .compose(layout, f)
        .unwrap()
        .clone()
}

/// Receives one picture as I420 (NV12 output is split for the comparison).
fn receive(c: &mut BatchCompositor) -> I420Image {
    let (w, h) = c.size();
    let mut f = OutputFrame::sized(c.format(), w, h);
    c.receive_into(&mut f.planes_mut()).unwrap();
    f.to_i420()
}

/// Eight mixers, each with its own canvas size, layout and output format.
fn eight() -> Vec<(Layout, Frames, OutputFormat)> {
    let s4 = [
        ("a", 640, 480),
        ("b", 320, 240),
        ("c", 1280, 720),
        ("d", 176, 144),
    ];
    let side = |w, h| {
        Layout::cameras(
            w,
            h,
            &[
                ("a", Rect::new(0, 0, w / 2, h)),
                ("b", Rect::new(w as i32 / 2, 0, w / 2, h)),
            ],
        )
    };
    let grid = |w: u32, h: u32| {
        let (cw, ch) = (w / 2, h / 2);
        Layout::cameras(
            w,
            h,
            &[
                ("a", Rect::new(0, 0, cw, ch)),
                ("b", Rect::new(cw as i32, 0, cw, ch)),
                ("c", Rect::new(0, ch as i32, cw, ch)),
                ("d", Rect::new(cw as i32, ch as i32, cw, ch)),
            ],
        )
    };
    let pip = |w: u32, h: u32| {
        Layout::cameras(
            w,
            h,
            &[
                ("c", Rect::new(0, 0, w, h)),
                ("d", Rect::new(w as i32 - 100, h as i32 - 80, 90, 70)),
            ],
        )
    };
    let odd = Layout::cameras(
        330,
        250,
        &[
            ("a", Rect::new(-7, 3, 101, 77)),
            ("b", Rect::new(95, 13, 127, 201)),
            ("c", Rect::new(231, 171, 95, 75)),
            ("d", Rect::new(231, 1, 33, 33)),
        ],
    );
    let fill = grid(640, 360).with_items(|items| {
        for (i, it) in items.iter_mut().enumerate() {
            it.fit = if i % 2 == 0 {
                FitMode::Fill
            } else {
                FitMode::Stretch
            };
        }
    });
    let f = |seed| frames(&s4, seed);
    vec![
        (side(1280, 720), f(1), OutputFormat::I420),
        (grid(1920, 1080), f(5), OutputFormat::Nv12),
        (pip(640, 480), f(9), OutputFormat::I420),
        (odd, f(13), OutputFormat::Nv12),
        (fill, f(17), OutputFormat::I420),
        (side(320, 180), f(21), OutputFormat::Nv12),
        (grid(960, 540), f(25), OutputFormat::I420),
        (pip(1280, 720), f(29), OutputFormat::Nv12),
    ]
}

fn private_renderer(opts: RendererOptions) -> Option<Arc<Renderer>> {
    let ctx = gpu_or_skip(
        GpuContext::new(AdapterPolicy::AllowSoftware),
        "the batch renderer",
    )?;
    Some(Renderer::new(ctx, opts).unwrap())
}

#[test]
fn eight_mixers_in_one_batch_match_the_cpu_bit_for_bit() {
    // gather up to 8 frames (at most 10 s): the eight submissions below make one batch
    let Some(r) = private_renderer(RendererOptions {
        max_batch: 8,
        gather: Duration::from_secs(10),
        ..Default::default()
    }) else {
        return;
    };
    let cases = eight();
    let mut comps: Vec<BatchCompositor> = cases
        .iter()
        .map(|(l, _, fmt)| {
            BatchCompositor::with_renderer(r.clone(), l.width(), l.height(), *fmt).unwrap()
        })
        .collect();
    for (c, (l, f, _)) in comps.iter_mut().zip(&cases) {
        c.submit(l, f).unwrap();
    }
    for (i, (c, (l, f, fmt))) in comps.iter_mut().zip(&cases).enumerate() {
        let got = receive(c);
        let want = cpu(l, f);
        // the same frame through the one-mixer GPU compositor: identical whatever the adapter
        let mut single = GpuCompositor::new(
            l.width(),
            l.height(),
            GpuOptions {
                output: *fmt,
                ..Default::default()
            },
        )
        .unwrap();
        let one = single.compose(l, f).unwrap().clone();
        let diff = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert!(
            got == one,
            "mixer {i}: batched and one-mixer GPU pictures differ ({} Y bytes)",
            diff(&got.y, &one.y)
        );
        assert!(
            got == want,
            "mixer {i} ({}x{}, {fmt:?}) differs from the CPU compositor: {} / {} / {} bytes",
            l.width(),
            l.height(),
            diff(&got.y, &want.y),
            diff(&got.u, &want.u),
            diff(&got.v, &want.v)
        );
    }
    let s = r.stats();
    assert_eq!((s.batches, s.frames, s.max_batch), (1, 8, 8), "{s:?}");
    // staged: the sources once (rows, no padding) and one readback region per mixer
    let sources: u64 = [(640u64, 480u64), (320, 240), (1280, 720), (176, 144)]
        .iter()
        .map(|(w, h)| w * h * 3 / 2)
        .sum();
    // every mixer uploads the sources it draws
    assert!(s.upload_bytes > 0 && s.upload_bytes <= 8 * sources, "{s:?}");

    // the same frames again: nothing changed, so no GPU work, and the same pictures
    for (c, (l, f, _)) in comps.iter_mut().zip(&cases) {
        c.submit(l, f).unwrap();
    }
    for (c, (l, f, _)) in comps.iter_mut().zip(&cases) {
        assert!(receive(c) == cpu(l, f));
        assert_eq!(c.stats().repeated, 1);
    }
    assert_eq!(r.stats().batches, 1, "repeats cost no submission");
}

#[test]
fn changed_frames_go_to_the_gpu_again_and_repeats_follow_them() {
    let Some(r) = private_renderer(RendererOptions::default()) else {
        return;
    };
    let (l, f0, _) = eight().swap_remove(2);
    let f1 = frames(
        &[
            ("a", 640, 480),
            ("b", 320, 240),
            ("c", 1280, 720),
            ("d", 176, 144),
        ],
        77,
    );
    let mut c =
        BatchCompositor::with_renderer(r.clone(), l.width(), l.height(), OutputFormat::I420)
            .unwrap();
    // pipelined: f0, f0 (repeat), f1, f1 (repeat), f0 — two in flight at a time
    let seq = [&f0, &f0, &f1, &f1, &f0];
    let mut want = Vec::new();
    let mut got = Vec::new();
    for (i, f) in seq.iter().enumerate() {
        c.submit(&l, f).unwrap();
        want.push(cpu(&l, f));
        if i >= 1 {
            got.push(receive(&mut c));
        }
    }
    got.push(receive(&mut c));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "frame {i} differs");
    }
    assert_eq!(c.stats().repeated, 2);
    assert_eq!(r.stats().frames, 3, "{:?}", r.stats());
}

#[test]
fn a_stalled_mixer_does_not_delay_the_others() {
    let Some(r) = private_renderer(RendererOptions::default()) else {
        return;
    };
    let (big, f, _) = eight().swap_remove(2);
    // the stalled mixer: submits two frames, then neither receives nor submits for the rest
    let mut stalled =
        BatchCompositor::with_renderer(r.clone(), big.width(), big.height(), OutputFormat::I420)
            .unwrap();
    stalled.submit(&big, &f).unwrap();
    let f2 = frames(&[("c", 1280, 720), ("d", 176, 144)], 3);
    stalled.submit(&big, &f2).unwrap();
    // three mixers at 10 fps for 3 s, each frame new, each received within a second of its
    // tick while the stalled mixer holds its two frames
    let period = Duration::from_millis(100);
    let l = Layout::cameras(
        320,
        240,
        &[
            ("a", Rect::new(0, 0, 160, 240)),
            ("b", Rect::new(160, 0, 160, 240)),
        ],
    );
    let handles: Vec<_> = (0..3u32)
        .map(|m| {
            let (r, l) = (r.clone(), l.clone());
            std::thread::spawn(move || {
                let mut c =
                    BatchCompositor::with_renderer(r, l.width(), l.height(), OutputFormat::Nv12)
                        .unwrap();
                let sets: Vec<Frames> = (0..31u32)
                    .map(|n| frames(&[("a", 160, 120), ("b", 96, 64)], 100 + m * 50 + n))
                    .collect();
                let (w, h) = c.size();
                let mut nv = OutputFrame::sized(OutputFormat::Nv12, w, h);
                // warm-up (textures, the first use of the pipelines), not timed
                c.submit(&l, &sets[30]).unwrap();
                c.receive_into(&mut nv.planes_mut()).unwrap();
                let mut worst = Duration::ZERO;
                let start = Instant::now();
                for (n, f) in sets[..30].iter().enumerate() {
                    let due = start + period * n as u32;
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    c.submit(&l, f).unwrap();
                    c.receive_into(&mut nv.planes_mut()).unwrap();
                    worst = worst.max(Instant::now() - due);
                    if n == 29 {
                        assert!(nv.to_i420() == cpu(&l, f), "mixer {m}: last frame differs");
                    }
                }
                worst
            })
        })
        .collect();
    let worst: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    // lavapipe shares two cores with everything else here: a frame may be late by a few
    // periods, but never by the stalled mixer's (unbounded) stall
    for (m, &worst) in worst.iter().enumerate() {
        assert!(
            worst < period * 10,
            "mixer {m}: a frame was received {worst:?} after its tick (period {period:?}); {:?}",
            r.stats()
        );
    }
    // the stalled mixer's frames were kept for it, in order
    assert!(receive(&mut stalled) == cpu(&big, &f));
    assert!(receive(&mut stalled) == cpu(&big, &f2));
}

#[test]
fn a_device_lost_mid_batch_is_an_error_for_every_frame() {
    let Some(ctx) = gpu_or_skip(GpuContext::new(AdapterPolicy::AllowSoftware), "device loss")
    else {
        return;
    };
    let r = Renderer::new(
        ctx.clone(),
        RendererOptions {
            max_batch: 4,
            gather: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .unwrap();
    let (l, f, _) = eight().swap_remove(0);
    let mut comps: Vec<_> = (0..4)
        .map(|_| {
            BatchCompositor::with_renderer(r.clone(), l.width(), l.height(), OutputFormat::I420)
                .unwrap()
        })
        .collect();
    for c in &mut comps[..3] {
        c.submit(&l, &f).unwrap();
    }
    // the batch waits for its fourth frame; the device goes away first
    ctx.device.destroy();
    let _ = ctx.device.poll(wgpu::PollType::Poll);
    let t = Instant::now();
    let last = comps[3].submit(&l, &f);
    for (i, c) in comps.iter_mut().enumerate() {
        let mut img = I420Image::new(l.width(), l.height());
        let r = if i == 3 && last.is_err() {
            last.as_ref().map(|_| ()).map_err(|e| e.to_string())
        } else {
            c.receive_into(&mut OutPlanes::i420(&mut img))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let e = r.expect_err("a frame of a lost device");
        assert!(
            e.contains("gpu") || e.contains("lost") || e.contains("readback"),
            "{e}"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "answered in {:?}",
        t.elapsed()
    );
    // other devices are untouched: a renderer on another device still composes
    let gpu = SharedRenderer::new();
    if let Some(r2) = gpu_or_skip(gpu.get(AdapterPolicy::AllowSoftware), "another device") {
        assert!(!Arc::ptr_eq(r2.context(), &ctx));
        let mut c =
            BatchCompositor::with_renderer(r2, l.width(), l.height(), OutputFormat::I420).unwrap();
        c.submit(&l, &f).unwrap();
        let mut img = I420Image::new(l.width(), l.height());
        c.receive_into(&mut OutPlanes::i420(&mut img)).unwrap();
        assert!(img == cpu(&l, &f));
    }
}
