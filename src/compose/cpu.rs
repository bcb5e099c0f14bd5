//! The rayon CPU compositor: the reference for the GPU path and the production backend on
//! machines without a GPU.
//!
//! - Scales straight into the output planes: no intermediate frame, one scratch row per thread.
//! - Separable fixed-point bilinear ([`super::sampling`]): a vertical pass over the source span
//!   into a u16 scratch row, then two horizontal taps per output sample. Both passes have
//!   run-time selected x86-64 kernels (`simd`: AVX2 vertical pass, AVX2 `pshufb`/`pmaddwd`
//!   horizontal pass for any ratio up to ~7:1), with exact shortcuts for 2:1 (box) and texel
//!   hits (strided copy); all are bit-identical to the plain formula.
//! - Per-item tap tables are cached while the layout and the source geometry are unchanged.
//! - The canvas persists between frames: when no item overlaps another, only items whose frame
//!   changed are redrawn (a 15 fps camera in a 30 fps recording costs every other frame), and
//!   their bars are left as they are. A full redraw fills the background only in bands that
//!   opaque items do not cover.
//! - Output rows are split into bands processed in parallel; items are drawn bottom to top.

use std::cell::RefCell;

use rayon::prelude::*;

use super::sampling::{blend, plane_span, taps, Tap, WEIGHT_ONE};
use super::{ComposeError, Compositor, Frames};
use crate::model::color::{self, Affine};
use crate::model::frame::{FrameKey, I420Image, PixelFormat, SharedFrame, VideoFrame};
use crate::model::layout::{Item, Layout, Placement};

/// Luma rows per parallel band (chroma: half).
const BAND: usize = 16;

/// A span in plane coordinates: columns `x0..x1`, rows `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    x0: i64,
    x1: i64,
    y0: i64,
    y1: i64,
}

impl Span {
    /// The plane span (subsampling `sub`) of an unclipped luma rect, clipped to the plane.
    fn of(x0: i64, x1: i64, y0: i64, y1: i64, sub: u32, pw: usize, ph: usize) -> Option<Span> {
        let (a, b) = plane_span(x0, x1, sub);
        let (c, d) = plane_span(y0, y1, sub);
        let s = Span {
            x0: a.max(0),
            x1: b.min(pw as i64),
            y0: c.max(0),
            y1: d.min(ph as i64),
        };
        (s.x1 > s.x0 && s.y1 > s.y0).then_some(s)
    }
}

/// Tap tables of one (output plane kind, source plane kind) pair, for the image span.
#[derive(Debug, Default)]
struct Tabs {
    xs: Vec<Tap>,
    ys: Vec<Tap>,
    /// Horizontal pass: for each output column, (first tap relative to `lo`, weight).
    hx: Vec<(u32, u16)>,
    /// First source column the vertical pass covers.
    lo: usize,
    /// Columns the vertical pass covers (`hi - lo`), plus one so `i0 + 1` is always in bounds.
    span: usize,
    /// `i0 = start + step·x` with one weight for all x (integer ratios): (start, step, weight).
    uniform: Option<(usize, usize, u16)>,
    /// Group tables of the SIMD general horizontal pass (None: scalar only).
    blocks: Option<simd::HBlocks>,
}

impl Tabs {
    fn finish(&mut self) {
        let lo = self.xs.first().map_or(0, |t| t.i0) as usize;
        let hi = self.xs.last().map_or(0, |t| t.i1) as usize + 1;
        self.lo = lo;
        self.span = hi - lo + 1;
        // i1 is i0 + 1 except where clamped at the right edge; there the weight is 0, so reading
        // i0 + 1 (the padding element) does not change the result
        self.hx = self.xs.iter().map(|t| (t.i0 - lo as u32, t.w)).collect();
        self.uniform = None;
        if let [a, b, ..] = self.hx[..] {
            let step = b.0.wrapping_sub(a.0) as usize;
            if (1..=4).contains(&step)
                && self
                    .hx
                    .iter()
                    .enumerate()
                    .all(|(x, t)| t.1 == a.1 && t.0 as usize == a.0 as usize + step * x)
            {
                self.uniform = Some((a.0 as usize, step, a.1));
            }
        }
        self.blocks = match self.uniform {
            Some(_) => None,
            None => simd::HBlocks::build(&self.hx),
        };
    }
}

/// One output row of the horizontal pass for an integer ratio: taps at `start + S·x`, one
/// weight. Written over exact chunks so that it vectorises.
#[inline]
fn hpass_uniform<const S: usize>(tmp: &[u16], start: usize, w: u16, out: &mut [u8]) {
    let (w1, w0) = (w as u32, WEIGHT_ONE - w as u32);
    let src = &tmp[start..];
    let lerp = |p: u16, q: u16| ((p as u32 * w0 + q as u32 * w1 + 32768) >> 16) as u8;
    let bulk = if S == 1 {
        out.len().min(src.len() - 1)
    } else {
        out.len().min(src.len() / S)
    };
    let (head, tail) = out.split_at_mut(bulk);
    if S == 1 {
        for ((o, &p), &q) in head.iter_mut().zip(src).zip(&src[1..]) {
            *o = lerp(p, q);
        }
    } else {
        for (o, p) in head.iter_mut().zip(src[..bulk * S].chunks_exact(S)) {
            *o = lerp(p[0], p[1]);
        }
    }
    for (x, o) in tail.iter_mut().enumerate() {
        let i = (bulk + x) * S;
        *o = lerp(src[i], src[i + 1]);
    }
}

/// 2:1 in both directions with weights ½: `(a + b + c + d + 2) >> 2` equals the separable
/// fixed-point result exactly (`((a+c)·128·128 + (b+d)·128·128 + 32768) >> 16`).
#[inline]
fn box2(r0: &[u8], r1: &[u8], out: &mut [u8]) {
    let n = out.len();
    assert!(r0.len() >= 2 * n && r1.len() >= 2 * n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and the assert above bounds every access
        done = unsafe { simd::box2_avx2(r0, r1, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("ssse3") {
        let (a, b) = (&r0[2 * done..], &r1[2 * done..]);
        // SAFETY: the CPU has SSSE3, and a, b hold 2 · (n - done) bytes (assert above)
        done += unsafe { box2_ssse3(a, b, &mut out[done..]) };
    }
    for ((o, a), b) in out[done..]
        .iter_mut()
        .zip(r0[2 * done..].chunks_exact(2))
        .zip(r1[2 * done..].chunks_exact(2))
    {
        *o = ((a[0] as u16 + a[1] as u16 + b[0] as u16 + b[1] as u16 + 2) >> 2) as u8;
    }
}

/// [`box2`] for 8 outputs at a time; returns how many outputs it wrote.
/// Caller guarantees `r0.len(), r1.len() >= 2 * out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn box2_ssse3(r0: &[u8], r1: &[u8], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    assert!(r0.len() >= 2 * out.len() && r1.len() >= 2 * out.len());
    // SAFETY: SSSE3 is enabled for this function; each iteration reads r0, r1 at
    // [2x .. 2x + 16] and writes out[x .. x + 8] with x + 8 <= out.len(), so
    // 2x + 16 <= 2·out.len() <= r0.len(), r1.len().
    unsafe {
        let ones = _mm_set1_epi8(1);
        let two = _mm_set1_epi16(2);
        let mut x = 0;
        while x + 8 <= out.len() {
            let a = _mm_loadu_si128(r0.as_ptr().add(2 * x) as *const __m128i);
            let b = _mm_loadu_si128(r1.as_ptr().add(2 * x) as *const __m128i);
            // pairwise sums of horizontally adjacent bytes, as u16
            let s = _mm_add_epi16(_mm_maddubs_epi16(a, ones), _mm_maddubs_epi16(b, ones));
            let s = _mm_srli_epi16(_mm_add_epi16(s, two), 2);
            _mm_storel_epi64(
                out.as_mut_ptr().add(x) as *mut __m128i,
                _mm_packus_epi16(s, s),
            );
            x += 8;
        }
        x
    }
}

/// Everything needed to draw one item, rebuilt when the layout or the source geometry changes.
#[derive(Debug)]
struct ItemPlan {
    key: Option<FrameKey>,
    /// Item rect per output plane kind (0 luma, 1 chroma), clipped.
    rect: [Option<Span>; 2],
    /// Image rect per output plane kind, clipped (None: nothing visible or no source).
    img: [Option<Span>; 2],
    /// `tabs[out_kind][src_kind]`; src_kind 0 = full-resolution source plane, 1 = 4:2:0 chroma.
    tabs: [[Tabs; 2]; 2],
    matrix: Affine,
    identity: bool,
    /// Fixed-point form of `matrix` for YUV sources (chroma independent of luma).
    fixed: Option<color::Fixed>,
    alpha: u32,
    /// Bars / placeholder colour.
    fill: [u8; 3],
    /// Frame id drawn last time (0 = placeholder).
    drawn: Option<u64>,
    /// RGBA sources (pictures, text): the general path's result for every output sample of
    /// the image, computed once per frame id, so a picture or a text box that stays the same
    /// costs one integer blend per sample per frame.
    overlay: Option<Overlay>,
}

/// (value, coverage) per output sample of an item's image, per plane (Y, U, V), row-major
/// over the image span of that plane.
#[derive(Debug)]
struct Overlay {
    id: u64,
    planes: [Vec<[u8; 2]>; 3],
}

impl ItemPlan {
    fn new(item: &Item, layout: &Layout, frame: Option<&VideoFrame>) -> ItemPlan {
        let (cw, ch) = (layout.width as usize, layout.height as usize);
        let r = item.rect;
        let rect = [1u32, 2].map(|sub| {
            let (pw, ph) = (cw / sub as usize, ch / sub as usize);
            Span::of(r.x as i64, r.right(), r.y as i64, r.bottom(), sub, pw, ph)
        });
        let alpha = (item.alpha * 255.0).round().clamp(0.0, 255.0) as u32;
        let mut plan = ItemPlan {
            key: None,
            rect,
            img: [None, None],
            tabs: Default::default(),
            matrix: color::IDENTITY,
            identity: true,
            fixed: None,
            alpha,
            fill: layout.placeholder,
            drawn: None,
            overlay: None,
        };
        let Some(f) = frame else {
            return plan;
        };
        plan.fill = layout.background;
        plan.key = Some(f.key());
        let p: Placement = item.place(f.width(), f.height(), f.sar);
        let d = p.dst;
        // the image is also limited to the item rect (it is inside it by construction)
        let (x0, x1) = ((d.x as i64).max(r.x as i64), d.right().min(r.right()));
        let (y0, y1) = ((d.y as i64).max(r.y as i64), d.bottom().min(r.bottom()));
        let (mx, my) = (p.map_x(), p.map_y());
        for (k, sub) in [1u32, 2].into_iter().enumerate() {
            let (pw, ph) = (cw / sub as usize, ch / sub as usize);
            let Some(s) = Span::of(x0, x1, y0, y1, sub, pw, ph) else {
                continue;
            };
            plan.img[k] = Some(s);
            for (sk, src_sub) in [1u32, 2].into_iter().enumerate() {
                if sk == 1 && f.format() == PixelFormat::Rgba {
                    continue;
                }
                let (nw, nh) = if src_sub == 1 {
                    (f.width(), f.height())
                } else {
                    (f.width().div_ceil(2), f.height().div_ceil(2))
                };
                let t = &mut plan.tabs[k][sk];
                taps(s.x0, s.x1, sub, mx, src_sub, nw, &mut t.xs);
                taps(s.y0, s.y1, sub, my, src_sub, nh, &mut t.ys);
                t.finish();
            }
        }
        match f.format() {
            PixelFormat::Rgba => {
                plan.matrix = color::rgb_to_output();
                plan.identity = false;
            }
            _ => {
                plan.matrix = color::yuv_to_output(f.color);
                plan.identity = plan.matrix == color::IDENTITY;
                plan.fixed = color::Fixed::of_yuv(&plan.matrix);
            }
        }
        plan
    }

    /// Whether drawing this item writes every pixel of its rect at full coverage.
    fn opaque(&self) -> bool {
        self.alpha == 255 && self.key.is_none_or(|k| k.format != PixelFormat::Rgba)
    }

    /// Whether the rects share a pixel in either plane kind (items side by side at an odd
    /// column share a chroma sample).
    fn overlaps(&self, other: &ItemPlan) -> bool {
        (0..2).any(|k| match (self.rect[k], other.rect[k]) {
            (Some(a), Some(b)) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1,
            _ => false,
        })
    }

    /// Whether `other`'s rect lies inside this one's in both plane kinds.
    fn contains(&self, other: &ItemPlan) -> bool {
        (0..2).all(|k| match (self.rect[k], other.rect[k]) {
            (Some(a), Some(b)) => a.x0 <= b.x0 && b.x1 <= a.x1 && a.y0 <= b.y0 && b.y1 <= a.y1,
            (_, None) => true,
            (None, Some(_)) => false,
        })
    }
}

/// One source plane as the sampler sees it: bytes, stride, element step and offset.
#[derive(Clone, Copy)]
struct SrcPlane<'a> {
    data: &'a [u8],
    stride: usize,
    step: usize,
    off: usize,
}

impl<'a> SrcPlane<'a> {
    /// Component `c` (0 Y/R, 1 U/G, 2 V/B, 3 A) of a frame.
    fn of(f: &'a VideoFrame, c: usize) -> SrcPlane<'a> {
        let pl = f.planes();
        let (i, step, off) = match (f.format(), c) {
            (PixelFormat::I420, c) => (c, 1, 0),
            (PixelFormat::Nv12, 0) => (0, 1, 0),
            (PixelFormat::Nv12, c) => (1, 2, c - 1),
            (PixelFormat::Rgba, c) => (0, 4, c),
        };
        SrcPlane {
            data: &pl[i].data,
            stride: pl[i].stride,
            step,
            off,
        }
    }

    #[inline]
    fn at(&self, x: u32, y: u32) -> u32 {
        self.data[y as usize * self.stride + x as usize * self.step + self.off] as u32
    }

    /// Bilinear sample in 1/65536 units.
    #[inline]
    fn sample(&self, tx: Tap, ty: Tap) -> u32 {
        let (wx, wy) = (tx.w as u32, ty.w as u32);
        let top = self.at(tx.i0, ty.i0) * (WEIGHT_ONE - wx) + self.at(tx.i1, ty.i0) * wx;
        let bot = self.at(tx.i0, ty.i1) * (WEIGHT_ONE - wx) + self.at(tx.i1, ty.i1) * wx;
        top * (WEIGHT_ONE - wy) + bot * wy
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    /// Sampled source rows (Y, U, V) for colour-converted items.
    static ROWS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One output row of an image: the vertical pass of source row pair `t.ys[yo]` into `tmp`,
/// then the horizontal pass into `out` (with the exact 2:1 box and texel-hit shortcuts).
fn sample_row(t: &Tabs, sp: SrcPlane, yo: usize, tmp: &mut Vec<u16>, out: &mut [u8]) {
    let (lo, span) = (t.lo, t.span);
    // the span plus room for the SIMD pass's whole-window loads
    let need = span.max(t.blocks.as_ref().map_or(0, |b| b.reach()));
    if tmp.len() < need {
        tmp.resize(need, 0);
    }
    let hi = lo + span - 1; // needed columns lo..hi, then one padding element
    let ty = t.ys[yo];
    let (w1, w0) = (ty.w, WEIGHT_ONE as u16 - ty.w);
    let row0 = &sp.data[ty.i0 as usize * sp.stride..];
    let row1 = &sp.data[ty.i1 as usize * sp.stride..];
    // exact shortcuts of the same arithmetic (bit-identical results)
    if sp.step == 1 {
        match t.uniform {
            // 2:1 both ways: weights 1/2 → the rounded mean of a 2x2 block
            Some((st, 2, 128)) if ty.w == 128 && ty.i1 == ty.i0 + 1 => {
                let n = out.len();
                box2(
                    &row0[lo + st..lo + st + 2 * n],
                    &row1[lo + st..lo + st + 2 * n],
                    out,
                );
                return;
            }
            // texel hits on both axes: a strided copy
            Some((st, step, 0)) if ty.w == 0 => {
                simd::copy_strided(&row0[lo + st..], step, out);
                return;
            }
            _ => {}
        }
    }
    let n = hi - lo;
    if sp.step == 1 {
        simd::vpass(&row0[lo..hi], &row1[lo..hi], w0, w1, &mut tmp[..n]);
    } else {
        for (j, d) in tmp[..n].iter_mut().enumerate() {
            let i = (lo + j) * sp.step + sp.off;
            *d = row0[i] as u16 * w0 + row1[i] as u16 * w1;
        }
    }
    let last = tmp[n - 1];
    tmp[n..span].iter_mut().for_each(|d| *d = last);
    match t.uniform {
        Some((st, 1, w)) => hpass_uniform::<1>(tmp, st, w, out),
        Some((st, 2, w)) => hpass_uniform::<2>(tmp, st, w, out),
        Some((st, 3, w)) => hpass_uniform::<3>(tmp, st, w, out),
        Some((st, 4, w)) => hpass_uniform::<4>(tmp, st, w, out),
        _ => simd::hpass(tmp, &t.hx, t.blocks.as_ref(), out),
    }
}

/// Draws plane component `comp` of one item into a band of output rows.
/// `band` holds plane rows `r0..r0 + band.len() / pw`. `keep_bars`: the bars around the image
/// are on the canvas already (an incremental redraw of an item drawn before with this plan).
fn draw_band(
    plan: &ItemPlan,
    frame: Option<&VideoFrame>,
    comp: usize,
    band: &mut [u8],
    pw: usize,
    r0: usize,
    keep_bars: bool,
) {
    let k = (comp > 0) as usize;
    let Some(rect) = plan.rect[k] else { return };
    let r1 = r0 + band.len() / pw;
    let (ya, yb) = ((rect.y0 as usize).max(r0), (rect.y1 as usize).min(r1));
    if ya >= yb {
        return;
    }
    let fillv = plan.fill[comp];
    let a = plan.alpha;
    let fill = |row: &mut [u8]| {
        if a == 255 {
            row.fill(fillv);
        } else {
            row.iter_mut().for_each(|p| *p = blend(*p, fillv, a));
        }
    };
    let img = plan.img[k];
    let (frame, img) = match (frame, img) {
        (Some(f), Some(s)) => (f, s),
        _ => {
            for y in ya..yb {
                let row = &mut band[(y - r0) * pw..(y - r0 + 1) * pw];
                fill(&mut row[rect.x0 as usize..rect.x1 as usize]);
            }
            return;
        }
    };
    // bars: the item rect minus the image (unless still on the canvas from the last draw)
    for y in (ya..yb).filter(|_| !keep_bars) {
        let row = &mut band[(y - r0) * pw..(y - r0 + 1) * pw];
        let yi = y as i64;
        if yi < img.y0 || yi >= img.y1 {
            fill(&mut row[rect.x0 as usize..rect.x1 as usize]);
        } else {
            fill(&mut row[rect.x0 as usize..img.x0 as usize]);
            fill(&mut row[img.x1 as usize..rect.x1 as usize]);
        }
    }
    let (ia, ib) = ((img.y0 as usize).max(r0), (img.y1 as usize).min(r1));
    if ia >= ib {
        return;
    }
    let (x0, x1) = (img.x0 as usize, img.x1 as usize);
    let yuv = frame.format() != PixelFormat::Rgba;
    if a == 255 && yuv && plan.identity {
        // fast path: same colour space, opaque: sample straight into the output row
        let t = &plan.tabs[k][k]; // a YUV source's component comp lives in a plane of kind k
        let sp = SrcPlane::of(frame, comp);
        SCRATCH.with(|s| {
            let mut tmp = s.borrow_mut();
            for y in ia..ib {
                let out = &mut band[(y - r0) * pw + x0..(y - r0) * pw + x1];
                sample_row(t, sp, y - img.y0 as usize, &mut tmp, out);
            }
        });
        return;
    }
    if let (255, true, Some(fx)) = (a, yuv, plan.fixed.as_ref()) {
        // converted colour space, opaque: sample the source planes with the same kernels into
        // rows, then one fixed-point affine map per sample ([`color::Fixed`])
        let n = x1 - x0;
        SCRATCH.with(|s| {
            ROWS.with(|r| {
                let mut tmp = s.borrow_mut();
                let mut rows = r.borrow_mut();
                rows.resize(3 * n, 0);
                let (ry, rest) = rows.split_at_mut(n);
                let (ru, rv) = rest.split_at_mut(n);
                let (ru, rv) = (&mut ru[..n], &mut rv[..n]);
                for y in ia..ib {
                    let yo = y - img.y0 as usize;
                    // luma output needs the source's chroma at luma positions (tabs[0][1]);
                    // chroma output does not depend on the source's luma
                    if comp == 0 {
                        sample_row(&plan.tabs[0][0], SrcPlane::of(frame, 0), yo, &mut tmp, ry);
                    }
                    sample_row(&plan.tabs[k][1], SrcPlane::of(frame, 1), yo, &mut tmp, ru);
                    sample_row(&plan.tabs[k][1], SrcPlane::of(frame, 2), yo, &mut tmp, rv);
                    let out = &mut band[(y - r0) * pw + x0..(y - r0) * pw + x1];
                    fx.map_row(comp, ry, ru, rv, out);
                }
            })
        });
        return;
    }
    // RGBA with a cached overlay: one blend per sample
    if let Some(ov) = plan.overlay.as_ref().filter(|o| o.id == frame.id()) {
        let n = x1 - x0;
        let vals = &ov.planes[comp];
        for y in ia..ib {
            let yo = y - img.y0 as usize;
            let out = &mut band[(y - r0) * pw + x0..(y - r0) * pw + x1];
            for (o, &[v, cov]) in out.iter_mut().zip(&vals[yo * n..(yo + 1) * n]) {
                *o = if cov == 255 {
                    v
                } else {
                    blend(*o, v, cov as u32)
                };
            }
        }
        return;
    }
    // general path: colour conversion and/or alpha
    let g = General::new(plan, frame, k);
    for y in ia..ib {
        let yo = y - img.y0 as usize;
        let out = &mut band[(y - r0) * pw + x0..(y - r0) * pw + x1];
        for (xo, o) in out.iter_mut().enumerate() {
            let [v, cov] = g.sample(comp, xo, yo);
            *o = if cov == 255 {
                v
            } else {
                blend(*o, v, cov as u32)
            };
        }
    }
}

/// The general sampling path (colour conversion and/or alpha) of one item and plane kind.
struct General<'a> {
    m: &'a Affine,
    planes: [Option<SrcPlane<'a>>; 4],
    full: &'a Tabs,
    sub: &'a Tabs,
    alpha: u32,
}

impl<'a> General<'a> {
    fn new(plan: &'a ItemPlan, frame: &'a VideoFrame, k: usize) -> Self {
        let rgba = frame.format() == PixelFormat::Rgba;
        General {
            m: &plan.matrix,
            planes: [0, 1, 2, 3].map(|c| {
                if c < 3 || rgba {
                    Some(SrcPlane::of(frame, c))
                } else {
                    None
                }
            }),
            full: &plan.tabs[k][0],
            sub: &plan.tabs[k][if rgba { 0 } else { 1 }],
            alpha: plan.alpha,
        }
    }

    /// (value, coverage 0..=255) of component `comp` at image sample (`xo`, `yo`).
    #[inline]
    fn sample(&self, comp: usize, xo: usize, yo: usize) -> [u8; 2] {
        const S: f32 = 1.0 / 65536.0;
        let (full, sub) = (self.full, self.sub);
        let p = |c: usize| self.planes[c].expect("the colour planes always exist");
        let a0 = p(0).sample(full.xs[xo], full.ys[yo]) as f32 * S;
        let b = p(1).sample(sub.xs[xo], sub.ys[yo]) as f32 * S;
        let c = p(2).sample(sub.xs[xo], sub.ys[yo]) as f32 * S;
        let v = color::apply(self.m, a0, b, c)[comp];
        let cov = match self.planes[3] {
            Some(ap) => {
                (ap.sample(full.xs[xo], full.ys[yo]) as f32 * S).round() as u32 * self.alpha / 255
            }
            None => self.alpha,
        };
        [v, cov.min(255) as u8]
    }
}

impl ItemPlan {
    /// Fills [`ItemPlan::overlay`] for an RGBA frame (once per frame id), in parallel rows.
    fn prepare_overlay(&mut self, frame: &VideoFrame) {
        if frame.format() != PixelFormat::Rgba
            || self.overlay.as_ref().is_some_and(|o| o.id == frame.id())
        {
            return;
        }
        let mut planes: [Vec<[u8; 2]>; 3] = Default::default();
        for (comp, vals) in planes.iter_mut().enumerate() {
            let k = (comp > 0) as usize;
            let Some(img) = self.img[k] else { continue };
            let (n, rows) = ((img.x1 - img.x0) as usize, (img.y1 - img.y0) as usize);
            vals.resize(n * rows, [0, 0]);
            let g = General::new(self, frame, k);
            vals.par_chunks_mut(n).enumerate().for_each(|(yo, row)| {
                for (xo, o) in row.iter_mut().enumerate() {
                    *o = g.sample(comp, xo, yo);
                }
            });
        }
        self.overlay = Some(Overlay {
            id: frame.id(),
            planes,
        });
    }
}

/// Whether the rects (plane kind `k`) of the plans for which `opaque` holds cover every column
/// `0..pw` of plane rows `r0..r1`. Every pixel of such a rect is written when its plan is
/// drawn (image, bars or placeholder, at full coverage), so the background fill can be skipped.
fn covered(
    plans: &[ItemPlan],
    opaque: &impl Fn(usize) -> bool,
    k: usize,
    r0: usize,
    r1: usize,
    pw: usize,
) -> bool {
    let (r0, r1) = (r0 as i64, r1 as i64);
    let mut c = 0i64; // columns 0..c are covered
    while c < pw as i64 {
        let next = plans
            .iter()
            .enumerate()
            .filter(|&(i, _)| opaque(i))
            .filter_map(|(_, p)| p.rect[k])
            .filter(|s| s.y0 <= r0 && s.y1 >= r1 && s.x0 <= c && s.x1 > c)
            .map(|s| s.x1)
            .max();
        match next {
            Some(x) => c = x,
            None => return false,
        }
    }
    true
}

/// The CPU reference compositor.
///
/// ```
/// use std::{collections::HashMap, sync::Arc};
/// use cloudmixer::compose::{cpu::CpuCompositor, Compositor};
/// use cloudmixer::model::frame::{ColorSpace, VideoFrame};
/// use cloudmixer::model::layout::{Layout, Rect};
/// let layout = Layout::cameras(64, 32, &[("a", Rect::new(0, 0, 32, 32))]);
/// let mut frames = HashMap::new();
/// // tagged BT.709 (the output's space): the colour passes through unchanged
/// let f = VideoFrame::solid_i420(16, 16, [200, 90, 60]).unwrap().with_color(ColorSpace::BT709_LIMITED);
/// frames.insert("a".to_string(), Arc::new(f));
/// let mut c = CpuCompositor::new(64, 32);
/// let out = c.compose(&layout, &frames).unwrap();
/// assert_eq!(out.yuv_at(10, 10), [200, 90, 60]); // the camera
/// assert_eq!(out.yuv_at(40, 10), [16, 128, 128]); // background
/// ```
pub struct CpuCompositor {
    canvas: I420Image,
    plans: Vec<ItemPlan>,
    layout_gen: u64,
    pool: Option<rayon::ThreadPool>,
    /// Per-item scratch, reused from frame to frame (no allocation on the frame path): the
    /// item's current frame, and whether it is redrawn this frame.
    current: Vec<Option<SharedFrame>>,
    dirty: Vec<bool>,
    /// Per item: whether an incremental redraw may leave its bars as they are.
    keep: Vec<bool>,
    /// Per item: redrawn because it lies on a dirty item.
    above: Vec<bool>,
}

impl CpuCompositor {
    /// A compositor for a `width`x`height` canvas (even sizes), on rayon's global pool.
    pub fn new(width: u32, height: u32) -> Self {
        CpuCompositor {
            canvas: I420Image::new(width, height),
            plans: Vec::new(),
            layout_gen: 0,
            pool: None,
            current: Vec::new(),
            dirty: Vec::new(),
            keep: Vec::new(),
            above: Vec::new(),
        }
    }

    /// A compositor that runs on its own pool of `threads` threads (1 = no parallelism).
    pub fn with_threads(width: u32, height: u32, threads: usize) -> Self {
        let mut c = Self::new(width, height);
        c.pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .ok();
        c
    }

    /// Forgets what was drawn, so the next frame is redrawn completely.
    pub fn invalidate(&mut self) {
        self.layout_gen = 0;
    }

    fn compose_inner(&mut self, layout: &Layout, frames: &Frames) -> Result<(), ComposeError> {
        let (w, h) = (self.canvas.width, self.canvas.height);
        ComposeError::check_canvas(layout, w, h)?;
        let mut full = layout.generation != self.layout_gen;
        if full {
            self.plans.clear();
            self.layout_gen = layout.generation;
        }
        self.current.clear();
        self.current.extend(
            layout
                .items
                .iter()
                .map(|it| it.kind.source_id().and_then(|id| frames.get(id)).cloned()),
        );
        // (re)build plans whose source geometry changed
        for (i, (item, f)) in layout.items.iter().zip(&self.current).enumerate() {
            let f = f.as_deref();
            if i >= self.plans.len() {
                self.plans.push(ItemPlan::new(item, layout, f));
            } else if self.plans[i].key != f.map(VideoFrame::key) {
                self.plans[i] = ItemPlan::new(item, layout, f);
                full = true; // the old image may leave uncovered pixels behind
            }
        }
        let id_of = |f: &Option<SharedFrame>| f.as_ref().map_or(0, |f| f.id());
        self.dirty.clear();
        self.dirty.extend(
            self.plans
                .iter()
                .zip(&self.current)
                .map(|(p, f)| p.drawn != Some(id_of(f))),
        );
        // Partial redraw is exact for an opaque dirty item that overlaps nothing, or whose
        // overlapping items all lie inside it, above it, unchanged, and overlap nothing else (a
        // text box or a logo over a camera): they are redrawn after it, bars included. Anything
        // else redraws the whole canvas.
        let n = self.plans.len();
        self.keep.clear();
        self.keep.resize(n, true);
        let mut above = std::mem::take(&mut self.above);
        above.clear();
        above.resize(n, false);
        'check: for i in (0..n).filter(|&i| self.dirty[i]) {
            if !self.plans[i].opaque() {
                full = true;
                break;
            }
            for j in (0..n).filter(|&j| j != i && self.plans[i].overlaps(&self.plans[j])) {
                let (pi, pj) = (&self.plans[i], &self.plans[j]);
                let alone = (0..n).all(|k| k == i || k == j || !pj.overlaps(&self.plans[k]));
                if j < i || self.dirty[j] || !pi.contains(pj) || !alone {
                    full = true;
                    break 'check;
                }
                above[j] = true;
                self.keep[i] = false;
                self.keep[j] = false;
            }
        }
        for (d, a) in self.dirty.iter_mut().zip(&above) {
            *d |= *a;
        }
        self.above = above;
        if full {
            self.dirty.iter_mut().for_each(|d| *d = true);
        }
        if !self.dirty.iter().any(|d| *d) {
            self.current.clear();
            return Ok(());
        }
        let (plans, current, dirty) = (&mut self.plans, &self.current, &self.dirty);
        let mut prepare = || {
            for ((plan, f), d) in plans.iter_mut().zip(current).zip(dirty) {
                if let (true, Some(f)) = (*d, f) {
                    plan.prepare_overlay(f);
                }
            }
        };
        match &self.pool {
            Some(p) => p.install(prepare),
            None => prepare(),
        }
        let bg = layout.background;
        let (plans, current, dirty, keep) = (&self.plans, &self.current, &self.dirty, &self.keep);
        let (w, cw) = (w as usize, w as usize / 2);
        let c = &mut self.canvas;
        let work = |((yb, ub), vb): ((&mut [u8], &mut [u8]), &mut [u8]), band: usize| {
            if full {
                // the background shows only where no opaque item covers the band
                let opaque = |i: usize| plans[i].opaque();
                for (k, (buf, pw, r0)) in [
                    (&mut *yb, w, band * BAND),
                    (&mut *ub, cw, band * BAND / 2),
                    (&mut *vb, cw, band * BAND / 2),
                ]
                .into_iter()
                .enumerate()
                {
                    let r1 = r0 + buf.len() / pw;
                    if !covered(plans, &opaque, (k > 0) as usize, r0, r1, pw) {
                        buf.fill(bg[k]);
                    }
                }
            }
            for (i, plan) in plans.iter().enumerate() {
                if dirty[i] {
                    // an incremental redraw of an item that overlaps nothing keeps its bars: its
                    // plan (so its bars) is unchanged since it was last drawn
                    let keep = !full && keep[i] && plan.drawn.is_some();
                    let f = current[i].as_deref();
                    draw_band(plan, f, 0, yb, w, band * BAND, keep);
                    draw_band(plan, f, 1, ub, cw, band * BAND / 2, keep);
                    draw_band(plan, f, 2, vb, cw, band * BAND / 2, keep);
                }
            }
        };
        let mut run = || {
            c.y.par_chunks_mut(w * BAND)
                .zip(c.u.par_chunks_mut(cw * BAND / 2))
                .zip(c.v.par_chunks_mut(cw * BAND / 2))
                .enumerate()
                .for_each(|(band, bufs)| work(bufs, band));
        };
        match &self.pool {
            Some(p) => p.install(run),
            None => run(),
        }
        for (p, f) in self.plans.iter_mut().zip(&self.current) {
            p.drawn = Some(id_of(f));
        }
        // hold no frame between calls (the sources may free them)
        self.current.clear();
        Ok(())
    }
}

impl Compositor for CpuCompositor {
    fn compose(&mut self, layout: &Layout, frames: &Frames) -> Result<&I420Image, ComposeError> {
        self.compose_inner(layout, frames)?;
        Ok(&self.canvas)
    }

    fn picture(&self) -> &I420Image {
        &self.canvas
    }

    fn describe(&self) -> String {
        let n = self
            .pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        format!("cpu (rayon, {n} threads)")
    }
}

mod simd;

#[cfg(all(test, feature = "testkit"))]
mod tests;
