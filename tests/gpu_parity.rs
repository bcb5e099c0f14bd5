//! GPU compositor vs the CPU reference (DESIGN §4, §7).
//!
//! Textured sources must match at PSNR ≥ 45 dB per plane; solid sources must pass
//! `testutil::check_edges` exactly (bars exactly Y=16, U=V=128). On failure the actual,
//! expected and diff pictures are written under `target/gpu-parity/` (or
//! `$CLOUDMIXER_PARITY_OUT`), and the message names the adapter.
//!
//! Without an adapter these tests print a note and pass, unless `CLOUDMIXER_REQUIRE_GPU=1`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cloudmixer::compose::cpu::CpuCompositor;
use cloudmixer::compose::gpu::{
    AdapterPolicy, GpuCompositor, GpuContext, GpuOptions, OutputFormat, OutputFrame,
};
use cloudmixer::compose::scene::Scene;
use cloudmixer::compose::{ComposeError, Compositor, Frames};
use cloudmixer::model::config::MixerConfig;
use cloudmixer::model::frame::{ColorSpace, I420Image, PixelFormat, Plane, Rotation, VideoFrame};
use cloudmixer::model::layout::{FitMode, Item, ItemKind, Layout, Rect};
use cloudmixer::testkit::workloads::Workload;
use cloudmixer::testkit::{
    check_edges, gpu_or_skip, pattern_frame, psnr, require_gpu, solid_frames, write_png, PALETTE,
};

const SEED_CREATE: &str = include_str!("../fixtures/layouts/seed_side_by_side.json");
const SEED_UPDATE: &str = include_str!("../fixtures/layouts/seed_pip_update.json");
const MIN_PSNR: f64 = 45.0;

/// A GPU compositor on any adapter (lavapipe included), or `None` (test skipped) without one.
fn gpu_with(w: u32, h: u32, output: OutputFormat) -> Option<GpuCompositor> {
    let opts = GpuOptions {
        output,
        policy: AdapterPolicy::AllowSoftware,
        ..Default::default()
    };
    gpu_or_skip(GpuCompositor::new(w, h, opts), "a GPU compositor test")
}

fn gpu(w: u32, h: u32) -> Option<GpuCompositor> {
    gpu_with(w, h, OutputFormat::I420)
}

fn cpu_ref(layout: &Layout, frames: &Frames) -> I420Image {
    CpuCompositor::new(layout.width(), layout.height())
        .compose(layout, frames)
        .unwrap()
        .clone()
}

fn out_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; CLOUDMIXER_PARITY_OUT overrides (device runs)
    let d = std::env::var_os("CLOUDMIXER_PARITY_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join("gpu-parity")
        });
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn diff_image(a: &I420Image, b: &I420Image) -> Vec<u8> {
    let (w, h) = (a.width as usize, a.height as usize);
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let p = a.yuv_at(x as u32, y as u32);
            let q = b.yuv_at(x as u32, y as u32);
            let d = |i: usize| ((p[i] as i32 - q[i] as i32).unsigned_abs() * 32).min(255) as u8;
            out[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[d(0), d(1), d(2)]);
        }
    }
    out
}

fn dump(name: &str, got: &I420Image, want: &I420Image) -> String {
    let d = out_dir();
    let (w, h) = (got.width, got.height);
    let _ = write_png(&d.join(format!("{name}_actual.png")), w, h, &got.to_rgb());
    let _ = write_png(
        &d.join(format!("{name}_expected.png")),
        w,
        h,
        &want.to_rgb(),
    );
    let _ = write_png(
        &d.join(format!("{name}_diff.png")),
        w,
        h,
        &diff_image(got, want),
    );
    format!("see {}/{name}_{{actual,expected,diff}}.png", d.display())
}

/// PSNR per plane ≥ 45 dB, else PNGs and a panic naming the adapter.
fn assert_close(name: &str, c: &GpuCompositor, got: &I420Image, want: &I420Image) {
    assert_eq!(
        (got.width, got.height),
        (want.width, want.height),
        "{name}: size"
    );
    let p = [
        psnr(&got.y, &want.y),
        psnr(&got.u, &want.u),
        psnr(&got.v, &want.v),
    ];
    eprintln!(
        "{name} on {}: PSNR Y/U/V = {:.2}/{:.2}/{:.2} dB",
        c.adapter(),
        p[0],
        p[1],
        p[2]
    );
    if p.iter().any(|&v| v < MIN_PSNR) {
        let maxd = |a: &[u8], b: &[u8]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (*x as i32 - *y as i32).abs())
                .max()
                .unwrap_or(0)
        };
        panic!(
            "{name} on {}: PSNR Y/U/V = {:.2}/{:.2}/{:.2} dB (< {MIN_PSNR}), max diff {}/{}/{}; {}",
            c.adapter(),
            p[0],
            p[1],
            p[2],
            maxd(&got.y, &want.y),
            maxd(&got.u, &want.u),
            maxd(&got.v, &want.v),
            dump(name, got, want)
        );
    }
}

/// Composes `frames` on both backends and compares.
fn parity(name: &str, layout: &Layout, frames: &Frames) {
    let Some(mut g) = gpu(layout.width(), layout.height()) else {
        return;
    };
    let got = g.compose(layout, frames).unwrap().clone();
    assert_close(name, &g, &got, &cpu_ref(layout, frames));
}

/// Solid sources: exact edges (check_edges) and parity.
fn edges(name: &str, layout: &Layout, sources: &[(&str, u32, u32)]) {
    let Some(mut g) = gpu(layout.width(), layout.height()) else {
        return;
    };
    let (frames, colours) = solid_frames(sources);
    let got = g.compose(layout, &frames).unwrap().clone();
    let want = cpu_ref(layout, &frames);
    let bad = check_edges(&got, layout, &frames, &colours);
    if !bad.is_empty() {
        panic!(
            "{name} on {}: {} edge mismatches, first: {:?}; {}",
            g.adapter(),
            bad.len(),
            &bad[..bad.len().min(8)],
            dump(name, &got, &want)
        );
    }
    assert_close(name, &g, &got, &want);
}

fn patterns(sources: &[(&str, u32, u32)]) -> Frames {
    sources
        .iter()
        .enumerate()
        .map(|(i, (id, w, h))| {
            (
                id.to_string(),
                Arc::new(pattern_frame(*w, *h, i as u32 * 3 + 1)),
            )
        })
        .collect()
}

fn nv12_of(f: &VideoFrame) -> VideoFrame {
    let (u, v) = (f.packed_plane(1), f.packed_plane(2));
    let uv = u.iter().zip(&v).flat_map(|(a, b)| [*a, *b]).collect();
    VideoFrame::nv12(f.width(), f.height(), f.packed_plane(0), uv)
        .unwrap()
        .with_color(f.color)
}

fn rgba_pattern(w: u32, h: u32, seed: u32, alpha: bool) -> VideoFrame {
    let mut d = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let a = if alpha {
                ((x * 9 + y * 5 + seed) % 256) as u8
            } else {
                255
            };
            d.extend_from_slice(&[
                ((x * 7 + seed * 13) % 256) as u8,
                ((y * 5 + x / 8 * 40) % 256) as u8,
                (((x + y) * 3 + seed) % 256) as u8,
                a,
            ]);
        }
    }
    VideoFrame::rgba(w, h, d).unwrap()
}

/// The same picture with padded rows (stride > row), to exercise strided uploads.
fn padded_i420(f: &VideoFrame, pad: usize) -> VideoFrame {
    let planes = (0..3)
        .map(|i| {
            let (row, rows) = PixelFormat::I420.plane_size(i, f.width(), f.height());
            let stride = row + pad;
            let mut data = vec![0xEEu8; stride * rows];
            let packed = f.packed_plane(i);
            for r in 0..rows {
                data[r * stride..r * stride + row].copy_from_slice(&packed[r * row..(r + 1) * row]);
            }
            Plane {
                data: data.into(),
                stride,
            }
        })
        .collect();
    VideoFrame::new(PixelFormat::I420, f.width(), f.height(), planes)
        .unwrap()
        .with_color(f.color)
}

fn with_fit(l: Layout, fits: &[FitMode]) -> Layout {
    l.with_items(|items| {
        for (it, f) in items.iter_mut().zip(fits) {
            it.fit = *f;
        }
    })
}

fn insert(frames: &mut Frames, id: &str, f: VideoFrame) {
    frames.insert(id.to_string(), Arc::new(f));
}

#[test]
fn seed_side_by_side() {
    let cfg = MixerConfig::from_json(SEED_CREATE).unwrap();
    let src = [("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)];
    edges("seed_side_by_side_solid", &cfg.layout, &src);
    parity("seed_side_by_side", &cfg.layout, &patterns(&src));
}

#[test]
fn seed_pip_update() {
    let cfg = MixerConfig::from_json(SEED_CREATE).unwrap();
    let l = cfg.parse_update(SEED_UPDATE).unwrap();
    edges(
        "seed_pip_solid",
        &l,
        &[("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)],
    );
    let src = [("Usr1.-1", 1280, 720), ("Usr2.-1", 720, 1280)];
    edges("seed_pip_portrait_solid", &l, &src);
    parity("seed_pip_portrait", &l, &patterns(&src));
}

fn workload_sources(w: &Workload) -> Vec<(&'static str, u32, u32)> {
    w.cells
        .iter()
        .map(|(s, _)| (s.camid, s.width, s.height))
        .collect()
}

#[test]
fn workloads_w1_w2() {
    for w in [Workload::w1(), Workload::w2()] {
        let src = workload_sources(&w);
        edges(&format!("{}_solid", w.name), &w.layout(), &src);
        parity(w.name, &w.layout(), &patterns(&src));
    }
}

#[test]
fn workload_w3_full_size() {
    let w = Workload::w3();
    let src = workload_sources(&w);
    let Some(mut g) = gpu(w.width, w.height) else {
        return;
    };
    let layout = w.layout();
    // textured
    let frames = patterns(&src);
    let got = g.compose(&layout, &frames).unwrap().clone();
    assert_close("W3", &g, &got, &cpu_ref(&layout, &frames));
    // solid, exact edges (same compositor: sources change size/format-free, textures reused)
    let (frames, colours) = solid_frames(&src);
    let got = g.compose(&layout, &frames).unwrap().clone();
    let bad = check_edges(&got, &layout, &frames, &colours);
    assert!(
        bad.is_empty(),
        "W3 on {}: {} edge mismatches, first: {:?}",
        g.adapter(),
        bad.len(),
        &bad[..bad.len().min(8)]
    );
}

/// W3's layout scaled to a small canvas: every cell, all nine source shapes.
#[test]
fn workload_w3_small() {
    let w = Workload::w3();
    let cells: Vec<(&str, Rect)> = w
        .cells
        .iter()
        .enumerate()
        .map(|(i, (s, _))| {
            (
                s.camid,
                Rect::new((i % 3) as i32 * 106, (i / 3) as i32 * 60, 106, 60),
            )
        })
        .collect();
    let l = Layout::cameras(320, 180, &cells);
    let src = workload_sources(&w);
    edges("W3_small_solid", &l, &src);
    parity("W3_small", &l, &patterns(&src));
}

fn odd_layout(w: u32, h: u32) -> Layout {
    Layout::cameras(
        w,
        h,
        &[
            ("a", Rect::new(-7, 3, 101, 77)),
            ("b", Rect::new(95, 13, 127, 201)),
            ("c", Rect::new(231, 171, 95, 75)),
            ("d", Rect::new(231, 1, 33, 33)),
        ],
    )
}

#[test]
fn odd_rects_portrait_and_tiny_sources() {
    let src = [("a", 1, 1), ("b", 9, 31), ("c", 1919, 3), ("d", 2, 1)];
    edges("odd_rects_solid", &odd_layout(322, 242), &src);
    parity("odd_rects", &odd_layout(322, 242), &patterns(&src));
    let src = [("a", 33, 17), ("b", 360, 640), ("c", 7, 5), ("d", 1, 1)];
    edges("odd_rects_solid2", &odd_layout(322, 242), &src);
    parity("odd_rects2", &odd_layout(322, 242), &patterns(&src));
}

#[test]
fn odd_canvas() {
    let src = [("a", 33, 17), ("b", 360, 640), ("c", 7, 5), ("d", 1, 1)];
    edges("odd_canvas_solid", &odd_layout(321, 242), &src);
    parity("odd_canvas", &odd_layout(321, 242), &patterns(&src));
}

#[test]
fn fill_and_stretch() {
    let base = Layout::cameras(
        256,
        144,
        &[
            ("a", Rect::new(0, 0, 128, 72)),
            ("b", Rect::new(128, 0, 128, 72)),
            ("c", Rect::new(0, 72, 101, 72)),
            ("d", Rect::new(131, 75, 95, 61)),
        ],
    );
    let l = with_fit(
        base,
        &[
            FitMode::Fill,
            FitMode::Stretch,
            FitMode::Fill,
            FitMode::Stretch,
        ],
    );
    let src = [
        ("a", 640, 480),
        ("b", 720, 1280),
        ("c", 1280, 720),
        ("d", 3, 7),
    ];
    edges("fill_stretch_solid", &l, &src);
    parity("fill_stretch", &l, &patterns(&src));
}

#[test]
fn alpha_and_overlaps() {
    let l = Layout::cameras(
        200,
        120,
        &[
            ("a", Rect::new(0, 0, 200, 120)),
            ("b", Rect::new(50, 30, 101, 61)),
            ("c", Rect::new(120, 60, 90, 70)),
            ("gone", Rect::new(10, 70, 40, 40)),
        ],
    );
    let l = l
        .with_items(|it| {
            it[1].alpha = 0.5;
            it[2].alpha = 0.8;
            it[3].alpha = 0.3;
        })
        .with_placeholder([100, 110, 120]);
    let src = [("a", 320, 240), ("b", 640, 360), ("c", 33, 77)];
    parity("alpha_overlaps", &l, &patterns(&src));
    // opaque overlaps: the topmost item decides, exactly
    let l2 = Layout::cameras(
        200,
        120,
        &[
            ("a", Rect::new(0, 0, 120, 100)),
            ("b", Rect::new(50, 30, 101, 61)),
            ("c", Rect::new(99, 1, 51, 117)),
        ],
    );
    edges("overlaps_solid", &l2, &src);
}

#[test]
fn nv12_rgba_and_bt601_full_sources() {
    let l = Layout::cameras(
        240,
        136,
        &[
            ("nv12", Rect::new(0, 0, 120, 68)),
            ("rgba", Rect::new(120, 0, 120, 68)),
            ("rgba_alpha", Rect::new(60, 34, 120, 68)),
            ("601", Rect::new(0, 68, 120, 68)),
            ("padded", Rect::new(121, 69, 119, 67)),
        ],
    );
    let mut frames = Frames::new();
    insert(&mut frames, "nv12", nv12_of(&pattern_frame(321, 181, 5)));
    insert(&mut frames, "rgba", rgba_pattern(160, 90, 2, false));
    insert(&mut frames, "rgba_alpha", rgba_pattern(97, 55, 9, true));
    insert(
        &mut frames,
        "601",
        pattern_frame(176, 144, 4).with_color(ColorSpace::BT601_FULL),
    );
    insert(
        &mut frames,
        "padded",
        padded_i420(&pattern_frame(99, 57, 6), 13),
    );
    parity("nv12_rgba_601", &l, &frames);
    // an NV12 solid source gets exact edges like I420
    let l = Layout::cameras(96, 64, &[("a", Rect::new(3, 5, 60, 41))]);
    let (solid, colours) = solid_frames(&[("a", 40, 30)]);
    let mut frames = Frames::new();
    insert(&mut frames, "a", nv12_of(&solid["a"]));
    let Some(mut g) = gpu(96, 64) else { return };
    let got = g.compose(&l, &frames).unwrap().clone();
    let bad = check_edges(&got, &l, &frames, &colours);
    assert!(
        bad.is_empty(),
        "nv12 solid on {}: {:?}",
        g.adapter(),
        &bad[..bad.len().min(8)]
    );
}

#[test]
fn missing_source_text_item_and_background() {
    let l = Layout::cameras(
        64,
        48,
        &[
            ("a", Rect::new(0, 0, 32, 32)),
            ("gone", Rect::new(32, 16, 32, 32)),
        ],
    );
    let l = l
        .with_placeholder([100, 110, 120])
        .with_background([30, 140, 120]);
    let l = l.with_items(|items| {
        items.push(Item {
            kind: ItemKind::Text {
                text: "hi".into(),
                color: [255; 4],
                background: [0, 0, 0, 125],
                font_size: 18,
                margin: 5,
            },
            rect: Rect::new(2, 36, 20, 10),
            fit: FitMode::Fit,
            alpha: 1.0,
            zorder: 0,
            index: 2,
            placeholder: None,
        })
    });
    let (frames, _) = solid_frames(&[("a", 8, 4)]);
    let Some(mut g) = gpu(64, 48) else { return };
    let got = g.compose(&l, &frames).unwrap().clone();
    assert_eq!(got.yuv_at(40, 40), [100, 110, 120], "placeholder");
    assert_eq!(got.yuv_at(60, 2), [30, 140, 120], "background");
    assert_eq!(
        got.yuv_at(5, 30),
        [30, 140, 120],
        "letterbox bar in background colour"
    );
    assert_close("missing_source", &g, &got, &cpu_ref(&l, &frames));
}

#[test]
fn source_size_and_format_change_between_frames() {
    let l = Layout::cameras(
        160,
        96,
        &[
            ("a", Rect::new(0, 0, 100, 96)),
            ("b", Rect::new(90, 10, 70, 50)),
        ],
    );
    let Some(mut g) = gpu(160, 96) else { return };
    let steps: Vec<(VideoFrame, VideoFrame)> = vec![
        (pattern_frame(64, 48, 1), pattern_frame(32, 32, 2)),
        (pattern_frame(48, 64, 3), pattern_frame(32, 32, 2)),
        (
            nv12_of(&pattern_frame(100, 30, 4)),
            rgba_pattern(20, 40, 5, true),
        ),
        (pattern_frame(1, 1, 6), pattern_frame(640, 360, 7)),
        (pattern_frame(64, 48, 8), pattern_frame(33, 31, 9)),
    ];
    for (i, (a, b)) in steps.into_iter().enumerate() {
        let mut frames = Frames::new();
        insert(&mut frames, "a", a);
        insert(&mut frames, "b", b);
        let got = g.compose(&l, &frames).unwrap().clone();
        assert_close(&format!("size_change_{i}"), &g, &got, &cpu_ref(&l, &frames));
    }
    // a source disappearing falls back to the placeholder
    let frames = Frames::new();
    let got = g.compose(&l, &frames).unwrap().clone();
    assert_close("size_change_gone", &g, &got, &cpu_ref(&l, &frames));
}

/// 100 frames with changing content and a live layout change through the pipelined API:
/// every received frame equals the CPU result for its own inputs, in order.
#[test]
fn pipelined_hundred_frames_in_order() {
    let (w, h) = (160, 96);
    let Some(mut g) = gpu(w, h) else { return };
    let l1 = Layout::cameras(
        w,
        h,
        &[
            ("a", Rect::new(0, 0, 80, 96)),
            ("b", Rect::new(80, 0, 80, 96)),
        ],
    );
    let l2 = Layout::cameras(
        w,
        h,
        &[
            ("a", Rect::new(0, 0, 160, 96)),
            ("b", Rect::new(100, 56, 60, 40)),
        ],
    );
    let mut cpu = CpuCompositor::new(w, h);
    let mut expected: HashMap<u64, I420Image> = HashMap::new();
    let mut frames = Frames::new();
    let mut received = 0u64;
    let mut check =
        |t: u64, img: &I420Image, expected: &mut HashMap<u64, I420Image>, g: &GpuCompositor| {
            let want = expected.remove(&t).expect("ticket known");
            assert_eq!(t, received, "frames out of order");
            assert_close(&format!("pipelined_{t}"), g, img, &want);
            received += 1;
        };
    for n in 0..100u32 {
        // "a" changes every frame, "b" every third frame (15 fps source in a 30 fps output)
        insert(&mut frames, "a", pattern_frame(64 + n % 3, 48, n));
        if n % 3 == 0 {
            insert(&mut frames, "b", pattern_frame(40, 30 + n % 2, 1000 + n));
        }
        let l = if (n / 25) % 2 == 0 { &l1 } else { &l2 };
        let t = g.submit(l, &frames).unwrap();
        expected.insert(t.0, cpu.compose(l, &frames).unwrap().clone());
        if g.in_flight() >= 3 {
            let (t, img) = g.receive().unwrap();
            check(t.0, &img.to_i420(), &mut expected, &g);
        }
    }
    while g.in_flight() > 0 {
        let (t, img) = g.receive().unwrap();
        check(t.0, &img.to_i420(), &mut expected, &g);
    }
    assert!(expected.is_empty());
    // submitting past the ring completes the oldest frames without losing them
    for _ in 0..7 {
        g.submit(&l1, &frames).unwrap();
    }
    let tickets: Vec<u64> = (0..7).map(|_| g.receive().unwrap().0 .0).collect();
    assert_eq!(tickets, (100..107).collect::<Vec<_>>());
    assert!(
        matches!(g.receive(), Err(ComposeError::Gpu(_))),
        "nothing in flight is an error"
    );
}

#[test]
fn nv12_output_equals_i420_output() {
    let cfg = MixerConfig::from_json(SEED_CREATE).unwrap();
    let l = cfg.layout;
    let frames = patterns(&[("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)]);
    let (Some(mut a), Some(mut b)) = (gpu(1280, 720), gpu_with(1280, 720, OutputFormat::Nv12))
    else {
        return;
    };
    let i420 = a.compose(&l, &frames).unwrap().clone();
    b.submit(&l, &frames).unwrap();
    let (_, out) = b.receive().unwrap();
    let OutputFrame::Nv12(nv12) = &out else {
        panic!("wanted NV12")
    };
    assert_eq!(nv12.uv.len(), i420.u.len() * 2);
    assert_eq!(nv12.to_i420(), i420);
    assert_eq!(b.compose(&l, &frames).unwrap(), &i420);
}

#[test]
fn errors_are_reported_not_panics() {
    let Some(mut g) = gpu(64, 48) else { return };
    let l = Layout::cameras(32, 32, &[]);
    assert!(matches!(
        g.compose(&l, &Frames::new()),
        Err(ComposeError::CanvasMismatch { .. })
    ));
    let l = Layout::cameras(64, 48, &[("a", Rect::new(0, 0, 32, 32))]);
    g.submit(&l, &Frames::new()).unwrap();
    assert!(
        matches!(g.compose(&l, &Frames::new()), Err(ComposeError::Gpu(_))),
        "compose with frames in flight"
    );
    g.receive().unwrap();
    assert!(g.compose(&l, &Frames::new()).is_ok());
    assert!(g.describe().starts_with("gpu (wgpu "), "{}", g.describe());
}

#[test]
fn device_loss_is_an_error() {
    let Some(ctx) = gpu_or_skip(GpuContext::new(AdapterPolicy::AllowSoftware), "device loss")
    else {
        return;
    };
    let mut g = GpuCompositor::with_context(ctx.clone(), 64, 48, GpuOptions::default()).unwrap();
    let l = Layout::cameras(64, 48, &[("a", Rect::new(0, 0, 32, 32))]);
    let (frames, _) = solid_frames(&[("a", 8, 8)]);
    g.compose(&l, &frames).unwrap();
    ctx.device.destroy();
    let _ = ctx.device.poll(wgpu::PollType::Poll);
    let r = g.compose(&l, &frames);
    assert!(
        matches!(r, Err(ComposeError::Gpu(_))),
        "{:?}",
        r.map(|_| ())
    );
}

#[test]
fn create_picks_backends() {
    use cloudmixer::compose::{create, Backend};
    let c = create(Backend::Cpu, 64, 48).unwrap();
    assert!(c.describe().starts_with("cpu"));
    // Auto: a hardware GPU when present, else the CPU; never lavapipe unless named
    let auto = create(Backend::Auto, 64, 48).unwrap();
    let hw = cloudmixer::compose::gpu::adapters()
        .iter()
        .any(|a| !a.software);
    if std::env::var("CLOUDMIXER_ADAPTER").map_or(true, |s| s.is_empty()) {
        assert_eq!(
            auto.describe().starts_with("gpu"),
            hw,
            "{}",
            auto.describe()
        );
    }
    match create(Backend::Gpu, 64, 48) {
        Err(e) if !require_gpu() => assert!(matches!(e, ComposeError::Unavailable(_)), "{e}"),
        r => {
            if let Some(g) = gpu_or_skip(r, "Backend::Gpu") {
                assert!(g.describe().starts_with("gpu"), "{}", g.describe());
            }
        }
    }
}

// ---- the layout vocabulary (text, placeholders, background picture, rotation, types 2–6),
// resolved by the scene once for both backends ----

/// Resolves `layout` through a [`Scene`] at `wall_ms` and compares GPU with CPU. Returns the
/// CPU picture (for pixel checks) and the resolved layout and frames.
fn scene_parity(
    name: &str,
    layout: &Layout,
    frames: &Frames,
    wall_ms: i64,
) -> Option<(I420Image, Layout, Frames)> {
    let mut scene = Scene::new();
    let (l, f) = scene.resolve(layout, frames, wall_ms);
    let mut g = gpu(l.width(), l.height())?;
    let got = g.compose(l, f).unwrap().clone();
    let want = cpu_ref(l, f);
    assert_close(name, &g, &got, &want);
    Some((want, l.clone(), f.clone()))
}

/// A config's layout (`items` is the layoutConfig array, `extra` more videoFileCfg fields).
fn config_layout(w: u32, h: u32, items: serde_json::Value, extra: serde_json::Value) -> Layout {
    let mut vfc = serde_json::json!({"svrPathName":"x.mp4","vWidth":w,"vHeight":h,
        "layoutConfig": items});
    for (k, v) in extra.as_object().unwrap() {
        vfc[k] = v.clone();
    }
    let cfg = MixerConfig::from_value(serde_json::json!({"mode":0,"videoFileCfg":vfc})).unwrap();
    (*cfg.layout).clone()
}

/// Pixels of `a` and `b` that differ inside `r` (luma).
fn changed_in(a: &I420Image, b: &I420Image, r: Rect) -> usize {
    let mut n = 0;
    for y in r.y as u32..r.y as u32 + r.h {
        for x in r.x as u32..r.x as u32 + r.w {
            n += (a.yuv_at(x, y)[0] != b.yuv_at(x, y)[0]) as usize;
        }
    }
    n
}

#[test]
fn text_latin_and_chinese_at_12_18_48_px() {
    let cam = serde_json::json!({"type":0,"left":0,"top":0,"width":640,"height":360,
        "keepAspectRatio":0,"param":{"camid":"cam"}});
    let mut items = vec![cam];
    let lines = [
        (12, "Latin 12px: Quick brown fox", "#FFFFFF", "#0000007D"),
        (18, "会议录制 18px", "#FFCC00", "#20408060"),
        (48, "Room 会议 48", "#FF000080", "#00000000"),
        (18, "半透明 #RRGGBBAA", "#00FF00C0", "#FFFFFF40"),
    ];
    let mut top = 3;
    for (size, text, color, bg) in lines {
        items.push(
            serde_json::json!({"type":10,"left":7,"top":top,"width":1,"height":1,
            "param":{"text":text,"font-size":size,"color":color,"background":bg}}),
        );
        top += size + 20;
    }
    let layout = config_layout(640, 360, items.into(), serde_json::json!({}));
    let frames = patterns(&[("cam", 640, 360)]);
    let Some((img, l, f)) = scene_parity("text_sizes", &layout, &frames, 0) else {
        return;
    };
    // every box is drawn, sized to its text, and changes the picture under it
    let plain = cpu_ref(&layout.clone().with_items(|v| v.truncate(1)), &frames);
    let boxes: Vec<Rect> = l.items()[1..].iter().map(|it| it.rect).collect();
    assert_eq!(boxes.len(), 4);
    for (b, (size, ..)) in boxes.iter().zip(lines) {
        assert!(b.h as i64 > size, "box {b:?} for {size} px");
        // (the 48 px line has a transparent box: only its glyphs change pixels)
        assert!(changed_in(&img, &plain, *b) > 200, "{b:?}");
    }
    assert!(boxes[2].h > 2 * boxes[1].h, "48 px box taller than 18 px");
    // the boxes are pictures of the scene's frames
    assert_eq!(f.len(), 5);
}

#[test]
fn timestamp_across_a_second_boundary() {
    let layout = config_layout(
        320,
        64,
        serde_json::json!([{"type":10,"left":4,"top":4,"width":1,"height":1,
            "param":{"text":"%timestamp% 录制","font-size":18}}]),
        serde_json::json!({"backgroundColor":"#204060"}),
    );
    let frames = Frames::new();
    let t0 = 1_700_000_000_000i64;
    let at = |ms| scene_parity(&format!("timestamp_{ms}"), &layout, &frames, t0 + ms);
    let (Some(a), Some(b), Some(c)) = (at(900), at(1100), at(1900)) else {
        return;
    };
    let r = b.1.items()[0].rect;
    assert!(changed_in(&a.0, &b.0, r) > 0, "a new second, a new box");
    assert_eq!(changed_in(&b.0, &c.0, r), 0, "the same second");
}

#[test]
fn placeholder_colour_and_image() {
    let layout = config_layout(
        96,
        48,
        serde_json::json!([
            {"type":0,"left":0,"top":0,"width":32,"height":48,"param":{"camid":"a"}},
            {"type":0,"left":32,"top":0,"width":32,"height":48,"param":{"camid":"b","placeholder":"b_off"}},
            {"type":0,"left":64,"top":0,"width":32,"height":48,"param":{"camid":"c"}}]),
        serde_json::json!({"placeholder":"#4060A0"}),
    );
    // a sends, b and c do not: b shows its picture (fitted: a 16x8 card letterboxed), c the colour
    let (mut frames, _) = solid_frames(&[("a", 8, 8)]);
    insert(
        &mut frames,
        "b_off",
        VideoFrame::solid_i420(16, 8, [170, 60, 200])
            .unwrap()
            .with_color(ColorSpace::BT709_LIMITED),
    );
    let Some((img, ..)) = scene_parity("placeholder", &layout, &frames, 0) else {
        return;
    };
    assert_eq!(
        img.yuv_at(48, 24),
        [170, 60, 200],
        "b's placeholder picture"
    );
    assert_eq!(img.yuv_at(48, 2), [16, 128, 128], "bars of the fitted card");
    let want = cloudmixer::model::color::rgb_to_yuv709_limited([0x40, 0x60, 0xA0]);
    assert_eq!(img.yuv_at(80, 24), want, "c's placeholder colour");
}

#[test]
fn background_image_under_everything() {
    let layout = config_layout(
        128,
        72,
        serde_json::json!([{"type":0,"left":32,"top":18,"width":64,"height":36,"param":{"camid":"a"}},
            {"type":1,"left":4,"top":4,"width":24,"height":24,"param":{"resourceid":"logo"}}]),
        serde_json::json!({"backgroundImage":"bg"}),
    );
    let mut frames = patterns(&[("a", 64, 48)]);
    insert(&mut frames, "bg", rgba_pattern(50, 30, 3, false));
    insert(&mut frames, "logo", rgba_pattern(12, 12, 9, true));
    let Some((img, ..)) = scene_parity("background_image", &layout, &frames, 0) else {
        return;
    };
    // the background picture shows outside the camera (not the black background colour)
    assert_ne!(img.yuv_at(120, 60), [16, 128, 128]);
}

#[test]
fn rotation_90_and_270_with_odd_sizes_in_fit_and_fill() {
    for rot in [Rotation::R90, Rotation::R270] {
        for fit in [FitMode::Fit, FitMode::Fill] {
            let l = with_fit(
                Layout::cameras(
                    160,
                    90,
                    &[
                        ("p", Rect::new(0, 0, 80, 45)),
                        ("s", Rect::new(80, 0, 80, 45)),
                        ("q", Rect::new(1, 45, 79, 45)),
                    ],
                ),
                &[fit; 3],
            );
            let mut frames = Frames::new();
            // a 37x21 textured phone frame, a solid one (exact bars), an NV12 one
            insert(
                &mut frames,
                "p",
                pattern_frame(37, 21, 5).with_rotation(rot),
            );
            insert(
                &mut frames,
                "s",
                VideoFrame::solid_i420(33, 19, PALETTE[4])
                    .unwrap()
                    .with_color(ColorSpace::BT709_LIMITED)
                    .with_rotation(rot),
            );
            insert(
                &mut frames,
                "q",
                nv12_of(&pattern_frame(41, 23, 2)).with_rotation(rot),
            );
            let name = format!("rotation_{}_{fit:?}", rot.degrees());
            let Some((img, _, f)) = scene_parity(&name, &l, &frames, 0) else {
                return;
            };
            // turned: portrait images, pillarboxed in the landscape cells when fitted
            assert_eq!((f["p"].width(), f["p"].height()), (21, 37), "{name}");
            assert_eq!((f["s"].width(), f["s"].height()), (19, 33), "{name}");
            assert_eq!(img.yuv_at(120, 20), PALETTE[4], "{name}: image");
            if fit == FitMode::Fit {
                // 19x33 in 80x45: 26x45 at x = 80 + 27; bars exactly black
                for x in [80, 104, 134, 159] {
                    assert_eq!(img.yuv_at(x, 20), [16, 128, 128], "{name}: bar at {x}");
                }
                assert_eq!(img.yuv_at(108, 20), PALETTE[4], "{name}: image edge");
            } else {
                assert_eq!(img.yuv_at(80, 20), PALETTE[4], "{name}: filled");
            }
        }
    }
}

#[test]
fn stream_types_2_3_5_6_are_sources() {
    let layout = config_layout(
        128,
        64,
        serde_json::json!([
            {"type":2,"left":0,"top":0,"width":64,"height":32},
            {"type":3,"left":64,"top":0,"width":64,"height":32},
            {"type":5,"left":0,"top":32,"width":64,"height":32},
            {"type":6,"left":64,"top":32,"width":64,"height":32,"param":{"camid":"wb"}}]),
        serde_json::json!({}),
    );
    let ids: Vec<&str> = layout
        .items()
        .iter()
        .filter_map(|it| it.kind.source_id())
        .collect();
    assert_eq!(ids, ["_cr_localscreen_", "_cr_media_", "_cr_screen_", "wb"]);
    edges(
        "types_2_3_5_6",
        &layout,
        &[
            ("_cr_localscreen_", 40, 30),
            ("_cr_media_", 16, 9),
            ("_cr_screen_", 30, 40),
            ("wb", 64, 32),
        ],
    );
}
