//! Test kit (cargo feature `testkit`): synthetic sources, the W1–W3 workloads and helpers for
//! pixel tests of compositors, used by unit and integration tests, benches and the `bench`
//! command. Not part of the library API a recording server uses: build with
//! `default-features = false` to leave it (and the CLI) out.

pub mod nginx;
#[cfg(feature = "upload")]
pub mod s3;
pub mod signal;
pub mod stats;
pub mod synth;
pub mod workloads;

use std::collections::HashMap;
use std::sync::Arc;

use crate::compose::Frames;
use crate::model::frame::{I420Image, VideoFrame};
use crate::model::layout::{Layout, Rect};

/// Distinct BT.709 limited-range colours for solid test sources (none equals black).
pub const PALETTE: [[u8; 3]; 10] = [
    [81, 90, 240],
    [145, 54, 34],
    [41, 240, 110],
    [210, 16, 146],
    [170, 166, 16],
    [106, 202, 222],
    [235, 128, 128],
    [60, 160, 100],
    [120, 100, 180],
    [190, 110, 90],
];

/// Solid frames of the given sizes, one palette colour each, keyed by id.
pub fn solid_frames(sources: &[(&str, u32, u32)]) -> (Frames, HashMap<String, [u8; 3]>) {
    let mut frames = HashMap::new();
    let mut colours = HashMap::new();
    for (i, (id, w, h)) in sources.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        frames.insert(
            id.to_string(),
            // tagged BT.709 (the output's space): the colour comes out as it went in
            Arc::new(
                VideoFrame::solid_i420(*w, *h, c)
                    .expect("valid size")
                    .with_color(crate::model::color::ColorSpace::BT709_LIMITED),
            ),
        );
        colours.insert(id.to_string(), c);
    }
    (frames, colours)
}

/// The colour a luma pixel must have for opaque solid sources: the topmost item containing it
/// decides; inside its image it is the source colour, elsewhere in its rect the background.
pub fn expected_at(
    layout: &Layout,
    frames: &Frames,
    colours: &HashMap<String, [u8; 3]>,
    x: i64,
    y: i64,
) -> [u8; 3] {
    for it in layout.items.iter().rev() {
        if !it.rect.contains(x, y) {
            continue;
        }
        let Some(id) = it.kind.source_id() else {
            continue;
        };
        let Some(f) = frames.get(id) else {
            return layout.placeholder;
        };
        let p = it.place(f.width(), f.height(), f.sar);
        return if p.dst.contains(x, y) {
            colours[id]
        } else {
            layout.background
        };
    }
    layout.background
}

/// Probe points 1 px inside and outside every edge of every item rect and image rect, on
/// horizontal and vertical lines through the rect's middle, clipped to the canvas.
pub fn edge_probes(layout: &Layout, frames: &Frames) -> Vec<(i64, i64)> {
    let mut rects: Vec<Rect> = Vec::new();
    for it in &layout.items {
        rects.push(it.rect);
        if let Some(f) = it.kind.source_id().and_then(|id| frames.get(id)) {
            rects.push(it.place(f.width(), f.height(), f.sar).dst);
        }
    }
    let mut pts = Vec::new();
    for r in rects {
        let (mx, my) = (r.x as i64 + r.w as i64 / 2, r.y as i64 + r.h as i64 / 2);
        for x in [r.x as i64 - 1, r.x as i64, r.right() - 1, r.right()] {
            pts.push((x, my));
        }
        for y in [r.y as i64 - 1, r.y as i64, r.bottom() - 1, r.bottom()] {
            pts.push((mx, y));
        }
        // corners, just inside
        pts.push((r.x as i64, r.y as i64));
        pts.push((r.right() - 1, r.bottom() - 1));
    }
    pts.retain(|&(x, y)| x >= 0 && y >= 0 && x < layout.width as i64 && y < layout.height as i64);
    pts
}

/// Checks every probe: luma exactly, chroma at the 4:2:0 sample whose centre is the probe's
/// odd-aligned neighbour. Returns the mismatches as text (empty = pass).
pub fn check_edges(
    img: &I420Image,
    layout: &Layout,
    frames: &Frames,
    colours: &HashMap<String, [u8; 3]>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (x, y) in edge_probes(layout, frames) {
        let want = expected_at(layout, frames, colours, x, y);
        let got = img.y[y as usize * img.width as usize + x as usize];
        if got != want[0] {
            bad.push(format!("Y at ({x},{y}): got {got}, want {}", want[0]));
        }
        // chroma sample (x/2, y/2) stands at luma (x|1, y|1)
        let (cx, cy) = (x / 2, y / 2);
        let want = expected_at(layout, frames, colours, 2 * cx + 1, 2 * cy + 1);
        let ci = cy as usize * (img.width as usize / 2) + cx as usize;
        if img.u[ci] != want[1] || img.v[ci] != want[2] {
            bad.push(format!(
                "UV at chroma ({cx},{cy}): got ({},{}), want ({},{})",
                img.u[ci], img.v[ci], want[1], want[2]
            ));
        }
    }
    bad
}

/// PSNR in dB between two planes (infinite when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// A deterministic textured I420 frame (gradients plus a checker), for scaling tests.
pub fn pattern_frame(w: u32, h: u32, seed: u32) -> VideoFrame {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let y = (0..h)
        .flat_map(|r| {
            (0..w).map(move |c| {
                (16 + ((c * 3 + r * 2 + seed * 17) % 200)
                    + if (c / 8 + r / 8) % 2 == 0 { 10 } else { 0 }) as u8
            })
        })
        .collect();
    let u = (0..ch)
        .flat_map(|r| (0..cw).map(move |c| (64 + (c * 5 + r + seed) % 128) as u8))
        .collect();
    let v = (0..ch)
        .flat_map(|r| (0..cw).map(move |c| (64 + (c + r * 3 + seed * 7) % 128) as u8))
        .collect();
    VideoFrame::i420(w, h, y, u, v)
        .expect("valid pattern")
        .with_color(crate::model::color::ColorSpace::BT709_LIMITED)
}

/// Writes an RGB PNG (for failure artefacts and snapshots).
pub fn write_png(path: &std::path::Path, w: u32, h: u32, rgb: &[u8]) -> std::io::Result<()> {
    crate::snapshot::write_rgb_png(path, w, h, rgb)
}

/// Whether `CLOUDMIXER_REQUIRE_GPU=1` is set (CI sets it: GPU tests must fail, not skip,
/// without an adapter).
pub fn require_gpu() -> bool {
    std::env::var("CLOUDMIXER_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The one GPU-or-skip rule of tests and benches: `Ok(v)` gives `Some(v)`; an error panics
/// under `CLOUDMIXER_REQUIRE_GPU=1` and otherwise prints a note naming `what` and gives `None`
/// (the caller skips).
pub fn gpu_or_skip<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if require_gpu() => panic!("CLOUDMIXER_REQUIRE_GPU=1 but no GPU for {what}: {e}"),
        Err(e) => {
            eprintln!("note: skipping {what}, no GPU adapter: {e}");
            None
        }
    }
}

/// Decodes every video frame of `path` in order, calling `f(index, frame)`; returns the count
/// and the error that ended decoding early, if any.
pub fn each_frame(
    path: &std::path::Path,
    mut f: impl FnMut(usize, &VideoFrame),
) -> (usize, Option<String>) {
    let mut d = match crate::media::decode::Decoder::open(path) {
        Ok(d) => d,
        Err(e) => return (0, Some(e.to_string())),
    };
    let mut n = 0;
    loop {
        match d.next_frame() {
            Ok(Some(fr)) => {
                f(n, &fr);
                n += 1;
            }
            Ok(None) => return (n, None),
            Err(e) => return (n, Some(e.to_string())),
        }
    }
}

/// (Y, U, V) at luma (x, y) of a decoded I420 frame (`None` for other formats or outside).
pub fn yuv_of(f: &VideoFrame, x: usize, y: usize) -> Option<[u8; 3]> {
    let p = f.planes();
    if f.format() != crate::model::frame::PixelFormat::I420
        || x >= f.width() as usize
        || y >= f.height() as usize
    {
        return None;
    }
    Some([
        p[0].data[y * p[0].stride + x],
        p[1].data[(y / 2) * p[1].stride + x / 2],
        p[2].data[(y / 2) * p[2].stride + x / 2],
    ])
}
