use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::model::config::MixerConfig;
use crate::model::frame::{ColorSpace, VideoFrame};
use crate::model::layout::{FitMode, ItemKind, Rect};
use crate::testkit::workloads::Workload;
use crate::testkit::{check_edges, pattern_frame, psnr, solid_frames};

const SEED_CREATE: &str = include_str!("../../../fixtures/layouts/seed_side_by_side.json");
const SEED_UPDATE: &str = include_str!("../../../fixtures/layouts/seed_pip_update.json");

fn compose_once(layout: &Layout, frames: &Frames) -> I420Image {
    let mut c = CpuCompositor::new(layout.width, layout.height);
    c.compose(layout, frames).unwrap().clone()
}

fn assert_edges(layout: &Layout, sources: &[(&str, u32, u32)]) {
    let (frames, colours) = solid_frames(sources);
    let img = compose_once(layout, &frames);
    let bad = check_edges(&img, layout, &frames, &colours);
    assert!(
        bad.is_empty(),
        "{} mismatches, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(8)]
    );
}

#[test]
fn seed_side_by_side_edges() {
    let cfg = MixerConfig::from_json(SEED_CREATE).unwrap();
    assert_edges(
        &cfg.layout,
        &[("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)],
    );
    // and the hand-computed numbers: pillarbox 80 px each side of Usr1, rows 0-179 black
    let (frames, colours) = solid_frames(&[("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)]);
    let img = compose_once(&cfg.layout, &frames);
    assert_eq!(img.yuv_at(79, 300), [16, 128, 128]);
    assert_eq!(img.yuv_at(80, 300), colours["Usr1.-1"]);
    assert_eq!(img.yuv_at(559, 300), colours["Usr1.-1"]);
    assert_eq!(img.yuv_at(560, 300), [16, 128, 128]);
    assert_eq!(img.yuv_at(640, 179), [16, 128, 128]);
    assert_eq!(img.yuv_at(640, 180), colours["Usr2.-1"]);
    assert_eq!(img.yuv_at(1279, 539), colours["Usr2.-1"]);
    assert_eq!(img.yuv_at(1279, 540), [16, 128, 128]);
}

#[test]
fn seed_pip_edges() {
    let cfg = MixerConfig::from_json(SEED_CREATE).unwrap();
    let l = cfg.parse_update(SEED_UPDATE).unwrap();
    assert_edges(&l, &[("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)]);
    assert_edges(&l, &[("Usr1.-1", 1280, 720), ("Usr2.-1", 720, 1280)]);
}

#[test]
fn workloads_edges() {
    for w in Workload::all() {
        let sources: Vec<(&str, u32, u32)> = w
            .cells
            .iter()
            .map(|(s, _)| (s.camid, s.width, s.height))
            .collect();
        assert_edges(&w.layout(), &sources);
    }
}

#[test]
fn odd_rects_portrait_and_tiny_sources() {
    let l = Layout::cameras(
        322,
        242,
        &[
            ("a", Rect::new(-7, 3, 101, 77)),
            ("b", Rect::new(95, 13, 127, 201)),
            ("c", Rect::new(231, 171, 95, 75)),
            ("d", Rect::new(231, 1, 33, 33)),
        ],
    );
    assert_edges(
        &l,
        &[("a", 1, 1), ("b", 9, 31), ("c", 1919, 3), ("d", 2, 1)],
    );
}

#[test]
fn missing_source_draws_placeholder() {
    let mut l = Layout::cameras(
        64,
        64,
        &[
            ("a", Rect::new(0, 0, 32, 32)),
            ("gone", Rect::new(32, 32, 32, 32)),
        ],
    );
    l.placeholder = [100, 110, 120];
    let (frames, colours) = solid_frames(&[("a", 8, 8)]);
    let img = compose_once(&l, &frames);
    assert_eq!(img.yuv_at(40, 40), [100, 110, 120]);
    assert_eq!(img.yuv_at(10, 10), colours["a"]);
    assert_eq!(img.yuv_at(40, 10), [16, 128, 128]);
}

#[test]
fn formats_agree() {
    let src = pattern_frame(64, 48, 3);
    // the same picture as NV12 and as I420 with padded strides
    let nv12 = VideoFrame::nv12(64, 48, src.packed_plane(0), {
        let (u, v) = (src.packed_plane(1), src.packed_plane(2));
        u.iter().zip(&v).flat_map(|(a, b)| [*a, *b]).collect()
    })
    .unwrap();
    let pad = |d: Vec<u8>, w: usize| {
        d.chunks(w)
            .flat_map(|r| r.iter().copied().chain([0u8; 7]))
            .collect::<Vec<u8>>()
    };
    let padded = VideoFrame::new(
        PixelFormat::I420,
        64,
        48,
        vec![
            crate::model::frame::Plane {
                data: pad(src.packed_plane(0), 64).into(),
                stride: 71,
            },
            crate::model::frame::Plane {
                data: pad(src.packed_plane(1), 32).into(),
                stride: 39,
            },
            crate::model::frame::Plane {
                data: pad(src.packed_plane(2), 32).into(),
                stride: 39,
            },
        ],
    )
    .unwrap();
    let l = Layout::cameras(100, 80, &[("a", Rect::new(3, 5, 91, 67))]);
    let run = |f: VideoFrame| {
        let mut m = HashMap::new();
        m.insert("a".to_string(), Arc::new(f));
        compose_once(&l, &m)
    };
    let a = run(src.clone());
    assert_eq!(a, run(nv12.with_color(src.color)));
    assert_eq!(a, run(padded.with_color(src.color)));
}

#[test]
fn rgba_source_converts_and_blends_alpha() {
    let l = Layout::cameras(
        32,
        32,
        &[
            ("a", Rect::new(0, 0, 16, 32)),
            ("b", Rect::new(16, 0, 16, 32)),
        ],
    );
    let red = VideoFrame::rgba(4, 8, [255, 0, 0, 255].repeat(32)).unwrap();
    let half = VideoFrame::rgba(4, 8, [255, 255, 255, 128].repeat(32)).unwrap();
    let mut m: Frames = HashMap::new();
    m.insert("a".into(), Arc::new(red));
    m.insert("b".into(), Arc::new(half));
    let img = compose_once(&l, &m);
    assert_eq!(
        img.yuv_at(5, 5),
        crate::model::color::rgb_to_yuv709_limited([255, 0, 0])
    );
    // white at 50 % over black: Y = 16 + (235-16)·128/255
    assert_eq!(img.yuv_at(20, 5), [126, 128, 128]);
}

#[test]
fn item_alpha_and_overlap_order() {
    let mut l = Layout::cameras(
        32,
        32,
        &[
            ("a", Rect::new(0, 0, 32, 32)),
            ("b", Rect::new(8, 8, 16, 16)),
        ],
    );
    l.items[1].alpha = 0.5;
    let mut m: Frames = HashMap::new();
    m.insert(
        "a".into(),
        Arc::new(
            VideoFrame::solid_i420(8, 8, [200, 100, 150])
                .unwrap()
                .with_color(ColorSpace::BT709_LIMITED),
        ),
    );
    m.insert(
        "b".into(),
        Arc::new(
            VideoFrame::solid_i420(8, 8, [100, 200, 50])
                .unwrap()
                .with_color(ColorSpace::BT709_LIMITED),
        ),
    );
    let img = compose_once(&l, &m);
    assert_eq!(img.yuv_at(2, 2), [200, 100, 150]);
    // 128/255 of b over a
    assert_eq!(img.yuv_at(16, 16), [150, 150, 100]);
}

#[test]
fn bt601_full_source_is_converted() {
    let l = Layout::cameras(16, 16, &[("a", Rect::new(0, 0, 16, 16))]);
    let f = VideoFrame::solid_i420(8, 8, [255, 128, 128])
        .unwrap()
        .with_color(ColorSpace::BT601_FULL);
    let mut m: Frames = HashMap::new();
    m.insert("a".into(), Arc::new(f));
    assert_eq!(compose_once(&l, &m).yuv_at(3, 3), [235, 128, 128]);
}

#[test]
fn halving_averages() {
    // 2x downscale of a 1-px checker is flat grey
    let w = 64u32;
    let y: Vec<u8> = (0..w * w)
        .map(|i| if (i % w + i / w) % 2 == 0 { 20 } else { 220 })
        .collect();
    let f = VideoFrame::i420(w, w, y, vec![128; 32 * 32], vec![128; 32 * 32]).unwrap();
    let l = Layout::cameras(32, 32, &[("a", Rect::new(0, 0, 32, 32))]);
    let mut m: Frames = HashMap::new();
    m.insert("a".into(), Arc::new(f));
    let img = compose_once(&l, &m);
    assert!(img.y.iter().all(|&v| v == 120), "{:?}", &img.y[..8]);
}

#[test]
fn fill_and_stretch_cover_the_rect() {
    for fit in [FitMode::Fill, FitMode::Stretch] {
        let mut l = Layout::cameras(64, 64, &[("a", Rect::new(5, 9, 41, 23))]);
        l.items[0].fit = fit;
        assert_edges(&l, &[("a", 30, 90)]);
    }
}

#[test]
fn partial_redraw_matches_full_redraw() {
    // W3-like grid where some sources change each frame and some don't
    let w = Workload::w3();
    let layout = w.layout();
    let mut inc = CpuCompositor::new(w.width, w.height);
    let mut frames: Frames = HashMap::new();
    for step in 0..6u32 {
        for (i, (s, _)) in w.cells.iter().enumerate() {
            // 15 fps cameras change every other step; cam5 changes size at step 3
            if step == 0 || s.fps == 30 || step % 2 == 0 {
                let (sw, sh) = if s.camid == "cam5" && step >= 3 {
                    (320, 240)
                } else {
                    (s.width / 4, s.height / 4)
                };
                frames.insert(
                    s.camid.into(),
                    Arc::new(pattern_frame(sw, sh, step * 10 + i as u32)),
                );
            }
        }
        if step == 4 {
            frames.remove("cam2");
        }
        let a = inc.compose(&layout, &frames).unwrap().clone();
        let b = compose_once(&layout, &frames);
        assert!(
            a == b,
            "step {step}: incremental differs (psnr {})",
            psnr(&a.y, &b.y)
        );
    }
}

#[test]
fn boxes_on_changing_cameras_redraw_exactly() {
    // translucent boxes (text, logos) above cameras that change every frame: one inside a
    // cell (redrawn with it), one at odd coordinates inside another, one across two cells
    let w = Workload::w3();
    let pic = |id: &str, x: i32, y: i32, ww: u32, hh: u32, index: usize| Item {
        kind: ItemKind::Picture {
            resource_id: id.into(),
        },
        rect: Rect::new(x, y, ww, hh),
        fit: FitMode::Stretch,
        alpha: 1.0,
        zorder: 1,
        index,
        placeholder: None,
    };
    let inside = w.layout().with_items(|v| {
        v.push(pic("t1", 16, 16, 200, 30, 9));
        v.push(pic("t2", 651, 371, 101, 29, 10));
    });
    let across = inside
        .clone()
        .with_items(|v| v.push(pic("t3", 600, 700, 90, 40, 11)));
    let rgba = |ww: u32, hh: u32, seed: u32| {
        let d = (0..ww * hh)
            .flat_map(|i| {
                [
                    (i * 7 + seed) as u8,
                    (i / 3) as u8,
                    200,
                    ((i * 13 + seed) % 256) as u8,
                ]
            })
            .collect();
        Arc::new(VideoFrame::rgba(ww, hh, d).unwrap())
    };
    for layout in [inside, across] {
        let mut inc = CpuCompositor::new(w.width, w.height);
        let mut frames: Frames = HashMap::new();
        for step in 0..5u32 {
            for (i, (s, _)) in w.cells.iter().enumerate() {
                if step == 0 || s.fps == 30 {
                    let f = pattern_frame(s.width / 4, s.height / 4, step * 10 + i as u32);
                    frames.insert(s.camid.into(), Arc::new(f));
                }
            }
            if step == 0 || step == 3 {
                // the boxes change now and then (a timestamp's second)
                frames.insert("t1".into(), rgba(200, 30, step));
                frames.insert("t2".into(), rgba(101, 29, step + 1));
                frames.insert("t3".into(), rgba(90, 40, step + 2));
            }
            let a = inc.compose(&layout, &frames).unwrap().clone();
            let b = compose_once(&layout, &frames);
            assert!(
                a == b,
                "{} items, step {step}: incremental differs (psnr {} / {} / {})",
                layout.items().len(),
                psnr(&a.y, &b.y),
                psnr(&a.u, &b.u),
                psnr(&a.v, &b.v)
            );
        }
    }
}

#[test]
fn layout_change_redraws_everything() {
    let cfg = MixerConfig::from_json(SEED_CREATE).unwrap();
    let pip = cfg.parse_update(SEED_UPDATE).unwrap();
    let (frames, colours) = solid_frames(&[("Usr1.-1", 640, 480), ("Usr2.-1", 1280, 720)]);
    let mut c = CpuCompositor::new(1280, 720);
    c.compose(&cfg.layout, &frames).unwrap();
    let img = c.compose(&pip, &frames).unwrap().clone();
    assert!(check_edges(&img, &pip, &frames, &colours).is_empty());
    assert_eq!(img, compose_once(&pip, &frames));
}

#[test]
fn canvas_mismatch_is_an_error() {
    let mut c = CpuCompositor::new(64, 64);
    let l = Layout::cameras(32, 32, &[]);
    assert!(matches!(
        c.compose(&l, &HashMap::new()),
        Err(ComposeError::CanvasMismatch { .. })
    ));
}

#[test]
fn text_items_do_not_break_composition() {
    let mut l = Layout::cameras(32, 32, &[("a", Rect::new(0, 0, 32, 32))]);
    l.items.push(crate::model::layout::Item {
        kind: ItemKind::Text {
            text: "hi".into(),
            color: [255; 4],
            background: [0, 0, 0, 125],
            font_size: 18,
            margin: 5,
        },
        rect: Rect::new(0, 0, 10, 10),
        fit: FitMode::Fit,
        alpha: 1.0,
        zorder: 0,
        index: 1,
        placeholder: None,
    });
    let (frames, colours) = solid_frames(&[("a", 8, 8)]);
    assert_eq!(compose_once(&l, &frames).yuv_at(16, 16), colours["a"]);
}

/// The plain separable formula of `sampling`, pixel by pixel, with no fast path: every
/// specialised kernel (2:1 box, strided copy, uniform and general horizontal passes) must give
/// exactly this.
fn reference(layout: &Layout, id: &str, f: &VideoFrame) -> I420Image {
    use crate::compose::sampling::{tap, WEIGHT_ONE};
    let mut img = I420Image::new(layout.width, layout.height);
    let it = &layout.items[0];
    let p = it.place(f.width(), f.height(), f.sar);
    assert_eq!(it.kind.source_id(), Some(id));
    for (plane, sub) in [(0usize, 1u32), (1, 2), (2, 2)] {
        let (pw, ph) = (layout.width / sub, layout.height / sub);
        let (sw, sh) = if sub == 1 {
            (f.width(), f.height())
        } else {
            (f.width().div_ceil(2), f.height().div_ceil(2))
        };
        let src = f.packed_plane(plane);
        let out = match plane {
            0 => &mut img.y,
            1 => &mut img.u,
            _ => &mut img.v,
        };
        for y in 0..ph {
            for x in 0..pw {
                let (cx, cy) = if sub == 1 {
                    (x as f64 + 0.5, y as f64 + 0.5)
                } else {
                    (2.0 * x as f64 + 1.0, 2.0 * y as f64 + 1.0)
                };
                if !p.dst.contains(cx.floor() as i64, cy.floor() as i64) {
                    continue;
                }
                let tx = tap(cx, p.map_x(), sub, sw);
                let ty = tap(cy, p.map_y(), sub, sh);
                let at = |i: u32, j: u32| src[(j * sw + i) as usize] as u32;
                let top =
                    at(tx.i0, ty.i0) * (WEIGHT_ONE - tx.w as u32) + at(tx.i1, ty.i0) * tx.w as u32;
                let bot =
                    at(tx.i0, ty.i1) * (WEIGHT_ONE - tx.w as u32) + at(tx.i1, ty.i1) * tx.w as u32;
                out[(y * pw + x) as usize] =
                    ((top * (WEIGHT_ONE - ty.w as u32) + bot * ty.w as u32 + 32768) >> 16) as u8;
            }
        }
    }
    img
}

#[test]
fn every_kernel_equals_the_plain_formula() {
    // (source size, rect): 2:1, 3:1, 1.5:1, 4:3, upscales, odd sizes and offsets, 1:1
    let cases = [
        ((1280, 720), Rect::new(0, 0, 640, 360)),
        ((1920, 1080), Rect::new(640, 360, 640, 360)),
        ((1920, 1080), Rect::new(0, 0, 1280, 720)),
        ((640, 480), Rect::new(0, 180, 640, 360)),
        ((720, 1280), Rect::new(880, 495, 400, 225)),
        ((160, 90), Rect::new(3, 7, 1001, 563)),
        ((320, 180), Rect::new(0, 0, 640, 360)),
        ((333, 201), Rect::new(1, 1, 333, 201)),
        ((1281, 721), Rect::new(5, 3, 640, 360)),
        // 8:3, 3.55:1 (W3's portrait cell), 5:3 and 7:5 (odd periods), 1.9:1, 2.1:1
        ((1280, 720), Rect::new(0, 0, 480, 270)),
        ((720, 1280), Rect::new(640, 0, 640, 360)),
        ((1000, 600), Rect::new(2, 0, 600, 360)),
        ((700, 500), Rect::new(1, 1, 500, 358)),
        ((1216, 684), Rect::new(0, 0, 640, 360)),
        ((1344, 756), Rect::new(0, 0, 640, 360)),
        // rows shorter than one SIMD block, and a little longer
        ((40, 30), Rect::new(7, 5, 24, 18)),
        ((57, 33), Rect::new(0, 0, 38, 22)),
        ((99, 61), Rect::new(1, 0, 66, 40)),
        // right edge of the canvas and clamped taps at the source's right edge
        ((1920, 1080), Rect::new(1100, 600, 180, 120)),
        ((301, 170), Rect::new(1079, 2, 201, 113)),
    ];
    for (i, ((sw, sh), rect)) in cases.into_iter().enumerate() {
        let layout = Layout::cameras(1280, 720, &[("a", rect)]);
        let f = pattern_frame(sw, sh, i as u32);
        let mut m: Frames = HashMap::new();
        m.insert("a".into(), Arc::new(f.clone()));
        let got = compose_once(&layout, &m);
        let want = reference(&layout, "a", &f);
        for (name, g, w) in [
            ("Y", &got.y, &want.y),
            ("U", &got.u, &want.u),
            ("V", &got.v, &want.v),
        ] {
            let diff = g.iter().zip(w.iter()).position(|(a, b)| a != b);
            assert!(
                diff.is_none(),
                "case {i} ({sw}x{sh} in {rect:?}) plane {name}: first difference at index {diff:?}"
            );
        }
    }
}

/// Deterministic pseudo-random numbers (xorshift).
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn simd_passes_equal_scalar() {
    use super::simd::{hpass, hpass_scalar, vpass, HBlocks};
    use crate::compose::sampling::taps;
    let mut r = rng(7);
    // ratios (source / output) from upscales through 2:1 to beyond what one window holds
    let ratios = [
        0.3,
        0.5,
        0.75,
        1.0,
        1.25,
        4.0 / 3.0,
        1.5,
        5.0 / 3.0,
        1.9,
        2.0,
        2.1,
        3.0,
        3.55,
        4.5,
        5.67,
        7.0,
        8.0,
    ];
    for (ri, &ratio) in ratios.iter().enumerate() {
        for len in [0usize, 1, 7, 15, 16, 17, 31, 32, 33, 100, 202, 640] {
            for off in [0.0, 0.37] {
                let n = ((len as f64 * ratio).ceil() as u32).max(1) + 1;
                let mut t = Vec::new();
                // output samples 3..3 + len, map x -> x·ratio + off
                taps(3, 3 + len as i64, 1, (ratio, off), 1, n, &mut t);
                let lo = t.first().map_or(0, |t| t.i0);
                let hx: Vec<(u32, u16)> = t.iter().map(|t| (t.i0 - lo, t.w)).collect();
                let b = HBlocks::build(&hx);
                if ratio <= 7.0 && len >= 16 {
                    assert!(b.is_some(), "ratio {ratio} len {len}: no SIMD tables");
                }
                let span = (n - lo) as usize + 1;
                let m = span.max(b.as_ref().map_or(0, |b| b.reach()));
                let tmp: Vec<u16> = (0..m)
                    .map(|_| match r() % 4 {
                        0 => 0,
                        1 => 65280,
                        _ => (r() % 65281) as u16,
                    })
                    .collect();
                let mut want = vec![0u8; len];
                hpass_scalar(&tmp, &hx, &mut want);
                let mut got = vec![0u8; len];
                hpass(&tmp, &hx, b.as_ref(), &mut got);
                assert_eq!(got, want, "case {ri}: ratio {ratio} len {len} off {off}");
                // the plain formula
                for (x, &(i, w)) in hx.iter().enumerate() {
                    let (p, q) = (tmp[i as usize] as u32, tmp[i as usize + 1] as u32);
                    let v = (p * (256 - w as u32) + q * w as u32 + 32768) >> 16;
                    assert_eq!(want[x] as u32, v);
                }
            }
        }
    }
    for len in 0..70 {
        for w1 in [0u16, 1, 64, 128, 192, 255] {
            let a0: Vec<u8> = (0..len).map(|_| r() as u8).collect();
            let a1: Vec<u8> = (0..len).map(|_| r() as u8).collect();
            let mut d = vec![0u16; len];
            vpass(&a0, &a1, 256 - w1, w1, &mut d);
            for j in 0..len {
                assert_eq!(d[j], a0[j] as u16 * (256 - w1) + a1[j] as u16 * w1);
            }
        }
    }
}

#[test]
fn background_is_skipped_only_where_opaque_items_cover_it() {
    // a persistent compositor (stale pixels from the previous layout) against a fresh one
    let bright = |w, h| {
        let mut f = HashMap::new();
        for id in ["a", "b", "c"] {
            f.insert(
                id.to_string(),
                Arc::new(VideoFrame::solid_i420(w, h, [230, 30, 220]).unwrap()),
            );
        }
        f
    };
    let full = Layout::cameras(
        64,
        48,
        &[
            ("a", Rect::new(0, 0, 64, 48)),
            ("b", Rect::new(40, 30, 20, 14)),
        ],
    );
    let layouts = [
        // split at an odd column: the chroma column of the seam belongs to "b" only
        Layout::cameras(
            64,
            48,
            &[
                ("a", Rect::new(0, 0, 33, 48)),
                ("b", Rect::new(33, 0, 31, 48)),
            ],
        ),
        // a one-pixel gap at the bottom, an overlapping third item
        Layout::cameras(
            64,
            48,
            &[
                ("a", Rect::new(0, 0, 64, 47)),
                ("c", Rect::new(10, 10, 20, 20)),
            ],
        ),
        // covering but translucent
        {
            let mut l = Layout::cameras(
                64,
                48,
                &[("a", Rect::new(0, 0, 64, 48)), ("b", Rect::new(1, 1, 9, 9))],
            );
            l.items[0].alpha = 0.5;
            l
        },
        // covering with a placeholder (missing source) and a letterboxed image
        Layout::cameras(
            64,
            48,
            &[
                ("gone", Rect::new(0, 0, 64, 48)),
                ("a", Rect::new(5, 5, 50, 20)),
            ],
        ),
    ];
    for (i, l) in layouts.iter().enumerate() {
        let mut c = CpuCompositor::new(64, 48);
        c.compose(&full, &bright(64, 48)).unwrap();
        let f = bright(16, 16);
        let got = c.compose(l, &f).unwrap().clone();
        assert!(got == compose_once(l, &f), "layout {i}");
    }
}

#[test]
fn bars_are_redrawn_over_items_below() {
    // "a" is letterboxed on top of "b": every full redraw must paint its bars over "b" again
    let l = Layout::cameras(
        64,
        48,
        &[
            ("b", Rect::new(0, 0, 64, 48)),
            ("a", Rect::new(8, 8, 40, 30)),
        ],
    );
    let mut c = CpuCompositor::new(64, 48);
    for step in 0..3u32 {
        let mut f: Frames = HashMap::new();
        f.insert("a".into(), Arc::new(pattern_frame(16, 16, step)));
        f.insert("b".into(), Arc::new(pattern_frame(32, 24, 10 + step)));
        let got = c.compose(&l, &f).unwrap().clone();
        assert!(got == compose_once(&l, &f), "step {step}");
    }
}

/// An untagged SD frame (a WebRTC/libyuv webcam frame is BT.601) comes out in its colours:
/// red encoded with BT.601 coefficients is red in the BT.709 output; the same bytes in a
/// 720-line frame are read as BT.709.
#[test]
fn untagged_frames_default_to_bt601_below_720_lines() {
    // RGB (200, 40, 160) in BT.601 limited range, computed here from the standard's formula
    let (r, g, b) = (200.0f32, 40.0f32, 160.0f32);
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    let yuv601 = [y.round() as u8, u.round() as u8, v.round() as u8];
    let want = crate::model::color::rgb_to_yuv709_limited([200, 40, 160]);
    let out = |h: u32| {
        let f = VideoFrame::solid_i420(640, h, yuv601).unwrap();
        let l = Layout::cameras(64, 48, &[("a", Rect::new(0, 0, 64, 48))]);
        let mut m = HashMap::new();
        m.insert("a".to_string(), Arc::new(f));
        compose_once(&l, &m).yuv_at(32, 24)
    };
    let sd = out(480);
    for c in 0..3 {
        assert!(
            (sd[c] as i32 - want[c] as i32).abs() <= 1,
            "480 lines: {sd:?} vs {want:?}"
        );
    }
    // 720 lines: the bytes are taken as BT.709 and pass through
    assert_eq!(out(720), yuv601);
}
