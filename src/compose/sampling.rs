//! The sampling rule shared by both compositors (DESIGN §4).
//!
//! Output pixel centres map through [`Placement::map_x`]/[`Placement::map_y`] to source
//! coordinates; texel centres sit at `i + 0.5`; bilinear weights are quantised to 1/256 and
//! coordinates are clamped to the plane's edge. 4:2:0 chroma is centre-sited: output chroma
//! sample `c` stands at luma coordinate `2c + 1`, source chroma texel `j` at source luma `2j + 1`.
//! The WGSL twin of these functions is `shaders/compose.wgsl` (`tap()`); keep them in step.

use crate::model::layout::Placement;

/// Sub-texel weight precision (bits).
pub const WEIGHT_BITS: u32 = 8;
/// 1.0 in weight units.
pub const WEIGHT_ONE: u32 = 1 << WEIGHT_BITS;

/// Where an output sample along one axis reads its two taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    /// First texel.
    pub i0: u32,
    /// Second texel (`i0 + 1`, clamped to the last texel).
    pub i1: u32,
    /// Weight of `i1` in 1/256 (0..=255).
    pub w: u16,
}

/// The tap for an output sample centred at `pos` (output luma units) with map `(scale, offset)`.
/// `sub` is the source plane's subsampling (1 for luma or RGBA, 2 for 4:2:0 chroma) and `n` the
/// plane's texel count along the axis.
#[inline]
pub fn tap(pos: f64, map: (f64, f64), sub: u32, n: u32) -> Tap {
    let s = pos * map.0 + map.1; // source luma coordinate
    let t = (s / sub as f64 - 0.5).clamp(0.0, (n - 1) as f64);
    let mut i0 = t.floor() as u32;
    let mut w = ((t - i0 as f64) * WEIGHT_ONE as f64).round() as u32;
    if w >= WEIGHT_ONE {
        i0 += 1;
        w = 0;
    }
    let i0 = i0.min(n - 1);
    Tap {
        i0,
        i1: (i0 + 1).min(n - 1),
        w: w as u16,
    }
}

/// Taps for output samples `start..end` of a plane with subsampling `out_sub` (1 = luma,
/// 2 = 4:2:0 chroma output) along one axis.
pub fn taps(
    start: i64,
    end: i64,
    out_sub: u32,
    map: (f64, f64),
    src_sub: u32,
    n: u32,
    out: &mut Vec<Tap>,
) {
    out.clear();
    for c in start..end {
        // centre of output sample c, in output luma units
        let pos = if out_sub == 1 {
            c as f64 + 0.5
        } else {
            2.0 * c as f64 + 1.0
        };
        out.push(tap(pos, map, src_sub, n));
    }
}

/// Output-plane span `[a, b)` of the luma span `[x0, x1)` for a plane with subsampling `sub`.
/// A chroma sample belongs to a span when its centre (`2c + 1`) lies inside it.
#[inline]
pub fn plane_span(x0: i64, x1: i64, sub: u32) -> (i64, i64) {
    if sub == 1 {
        (x0, x1)
    } else {
        (x0.div_euclid(2), x1.div_euclid(2))
    }
}

/// The placement's sampling maps as f32 uniforms `(scale_x, offset_x, scale_y, offset_y)`
/// (the GPU's view of the same numbers).
pub fn map_uniform(p: &Placement) -> [f32; 4] {
    let (sx, ox) = p.map_x();
    let (sy, oy) = p.map_y();
    [sx as f32, ox as f32, sy as f32, oy as f32]
}

/// Blends `src` over `dst` with 8-bit coverage `a` (255 = opaque).
#[inline]
pub fn blend(dst: u8, src: u8, a: u32) -> u8 {
    ((src as u32 * a + dst as u32 * (255 - a) + 127) / 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layout::{place, FitMode, Rect};

    #[test]
    fn identity_hits_texels_exactly() {
        let p = place(Rect::new(0, 0, 8, 8), FitMode::Stretch, 8, 8, (1, 1));
        let mut v = Vec::new();
        taps(0, 8, 1, p.map_x(), 1, 8, &mut v);
        for (i, t) in v.iter().enumerate() {
            assert_eq!((t.i0, t.w), (i as u32, 0));
        }
    }

    #[test]
    fn halving_averages_pairs_and_chroma_is_centre_sited() {
        let p = place(Rect::new(0, 0, 4, 4), FitMode::Stretch, 8, 8, (1, 1));
        let mut v = Vec::new();
        taps(0, 4, 1, p.map_x(), 1, 8, &mut v);
        assert_eq!(
            v[1],
            Tap {
                i0: 2,
                i1: 3,
                w: 128
            }
        );
        // output chroma 0 sits at luma 1 -> source luma 2 -> source chroma 0.5
        taps(0, 2, 2, p.map_x(), 2, 4, &mut v);
        assert_eq!(
            v[0],
            Tap {
                i0: 0,
                i1: 1,
                w: 128
            }
        );
    }

    #[test]
    fn clamps_at_edges() {
        let p = place(Rect::new(0, 0, 100, 1), FitMode::Stretch, 2, 1, (1, 1));
        let mut v = Vec::new();
        taps(0, 100, 1, p.map_x(), 1, 2, &mut v);
        assert_eq!(v[0], Tap { i0: 0, i1: 1, w: 0 });
        assert_eq!(v[99], Tap { i0: 1, i1: 1, w: 0 });
        taps(0, 1, 1, p.map_y(), 1, 1, &mut v);
        assert_eq!(v[0], Tap { i0: 0, i1: 0, w: 0 });
    }

    #[test]
    fn spans() {
        assert_eq!(plane_span(1017, 1144, 2), (508, 572));
        assert_eq!(plane_span(-3, 5, 2), (-2, 2));
        assert_eq!(plane_span(3, 5, 1), (3, 5));
    }

    #[test]
    fn blending() {
        assert_eq!(blend(16, 235, 255), 235);
        assert_eq!(blend(16, 235, 0), 16);
        assert_eq!(blend(0, 255, 128), 128);
    }
}
