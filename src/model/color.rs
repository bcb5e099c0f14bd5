//! Colour maths shared by the CPU and GPU compositors.
//!
//! Every source sample is mapped to the output colour space (BT.709, limited range) by one affine
//! 3x4 matrix on 8-bit code values: `out[r] = m[r][0]·a + m[r][1]·b + m[r][2]·c + m[r][3]`, where
//! (a, b, c) is (Y, U, V) for YUV sources and (R, G, B) for RGBA sources. The GPU gets the same
//! matrix as a uniform (`shaders/compose.wgsl`), so the two backends cannot drift apart.

/// YUV matrix coefficients of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Matrix {
    /// ITU-R BT.601 (SD cameras, most webcams and JPEG).
    Bt601,
    /// ITU-R BT.709 (HD).
    #[default]
    Bt709,
}

/// Quantisation range of a YUV source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Range {
    /// Y 16–235, UV 16–240 ("TV", "MPEG").
    #[default]
    Limited,
    /// 0–255 ("PC", "JPEG").
    Full,
}

/// Colour space tag of a YUV frame (ignored for RGBA, which is full-range RGB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ColorSpace {
    /// Matrix coefficients.
    pub matrix: Matrix,
    /// Quantisation range.
    pub range: Range,
}

impl ColorSpace {
    /// BT.709 limited range: the output colour space (and the tag of untagged HD frames).
    pub const BT709_LIMITED: ColorSpace = ColorSpace {
        matrix: Matrix::Bt709,
        range: Range::Limited,
    };
    /// BT.601 limited range (SD cameras).
    pub const BT601_LIMITED: ColorSpace = ColorSpace {
        matrix: Matrix::Bt601,
        range: Range::Limited,
    };
    /// The colour space of an untagged frame `height` lines tall: BT.601 limited below 720
    /// lines, BT.709 limited from 720 up (FFmpeg's and the browsers' guess).
    ///
    /// ```
    /// use cloudmixer::model::color::ColorSpace;
    /// assert_eq!(ColorSpace::for_height(480), ColorSpace::BT601_LIMITED);
    /// assert_eq!(ColorSpace::for_height(720), ColorSpace::BT709_LIMITED);
    /// ```
    pub const fn for_height(height: u32) -> ColorSpace {
        if height < 720 {
            ColorSpace::BT601_LIMITED
        } else {
            ColorSpace::BT709_LIMITED
        }
    }
    /// BT.601 full range (JPEG).
    pub const BT601_FULL: ColorSpace = ColorSpace {
        matrix: Matrix::Bt601,
        range: Range::Full,
    };
}

/// Affine map from source code values to output (Y, U, V) code values.
pub type Affine = [[f32; 4]; 3];

/// The identity map (a BT.709 limited-range source).
pub const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
];

fn kr_kb(m: Matrix) -> (f64, f64) {
    match m {
        Matrix::Bt601 => (0.299, 0.114),
        Matrix::Bt709 => (0.2126, 0.0722),
    }
}

/// (R, G, B, 1) normalised 0..1 → output (Y, U, V) code values, BT.709 limited.
fn rgb_to_out() -> [[f64; 4]; 3] {
    let (kr, kb) = kr_kb(Matrix::Bt709);
    let kg = 1.0 - kr - kb;
    let cb = 224.0 / (2.0 * (1.0 - kb));
    let cr = 224.0 / (2.0 * (1.0 - kr));
    [
        [219.0 * kr, 219.0 * kg, 219.0 * kb, 16.0],
        [-kr * cb, -kg * cb, (1.0 - kb) * cb, 128.0],
        [(1.0 - kr) * cr, -kg * cr, -kb * cr, 128.0],
    ]
}

/// Source (Y, U, V, 1) code values → (R, G, B) normalised.
fn yuv_to_rgb(cs: ColorSpace) -> [[f64; 4]; 3] {
    let (kr, kb) = kr_kb(cs.matrix);
    let kg = 1.0 - kr - kb;
    let (ys, yo, cs_) = match cs.range {
        Range::Limited => (1.0 / 219.0, -16.0 / 219.0, 1.0 / 224.0),
        Range::Full => (1.0 / 255.0, 0.0, 1.0 / 255.0),
    };
    // R = Y' + 2(1-kr)·Pr ; B = Y' + 2(1-kb)·Pb ; G = (Y' - kr R - kb B) / kg
    let rv = 2.0 * (1.0 - kr) * cs_;
    let bu = 2.0 * (1.0 - kb) * cs_;
    let gu = -kb * bu / kg;
    let gv = -kr * rv / kg;
    [
        [ys, 0.0, rv, yo - 128.0 * rv],
        [ys, gu, gv, yo - 128.0 * (gu + gv)],
        [ys, bu, 0.0, yo - 128.0 * bu],
    ]
}

fn compose(a: &[[f64; 4]; 3], b: &[[f64; 4]; 3]) -> Affine {
    // a ∘ b: first b, then a
    let mut m = [[0f32; 4]; 3];
    for r in 0..3 {
        for c in 0..4 {
            let mut v = if c == 3 { a[r][3] } else { 0.0 };
            for k in 0..3 {
                v += a[r][k] * b[k][c];
            }
            m[r][c] = v as f32;
        }
    }
    m
}

/// The map from a YUV source in `cs` to output BT.709 limited range.
/// Exactly [`IDENTITY`] for BT.709 limited sources.
pub fn yuv_to_output(cs: ColorSpace) -> Affine {
    if cs == ColorSpace::BT709_LIMITED {
        return IDENTITY;
    }
    compose(&rgb_to_out(), &yuv_to_rgb(cs))
}

/// The map from 8-bit RGB (0..255) to output BT.709 limited range.
pub fn rgb_to_output() -> Affine {
    let s = 1.0 / 255.0;
    let scale = [[s, 0.0, 0.0, 0.0], [0.0, s, 0.0, 0.0], [0.0, 0.0, s, 0.0]];
    compose(&rgb_to_out(), &scale)
}

/// Applies an affine map and rounds to 8-bit code values (clamped).
#[inline]
pub fn apply(m: &Affine, a: f32, b: f32, c: f32) -> [u8; 3] {
    let f = |r: usize| {
        let v = m[r][0] * a + m[r][1] * b + m[r][2] * c + m[r][3];
        (v + 0.5).clamp(0.0, 255.0) as u8
    };
    [f(0), f(1), f(2)]
}

/// Fixed-point (1/4096) form of a YUV→output [`Affine`] whose chroma rows do not depend on
/// luma (true of every BT.601/709 limited/full conversion): the CPU compositor's fast path for
/// converted sources. Applied to 8-bit sampled values; the float [`apply`] is its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    m: [[i32; 4]; 3],
}

impl Fixed {
    const SHIFT: u32 = 12;

    /// `None` when a chroma row depends on luma (then use [`apply`]).
    pub fn of_yuv(m: &Affine) -> Option<Fixed> {
        if m[1][0].abs() > 1e-6 || m[2][0].abs() > 1e-6 {
            return None;
        }
        let one = (1u32 << Self::SHIFT) as f32;
        let mut f = [[0i32; 4]; 3];
        for r in 0..3 {
            for c in 0..4 {
                f[r][c] = (m[r][c] * one).round() as i32;
            }
            // rounding offset folded into the constant
            f[r][3] += 1 << (Self::SHIFT - 1);
        }
        Some(Fixed { m: f })
    }

    /// Output component `comp` for rows of sampled source Y, U, V (`y` is ignored for chroma).
    pub fn map_row(&self, comp: usize, y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
        let [a, b, c, d] = self.m[comp];
        let n = out.len();
        let (u, v) = (&u[..n], &v[..n]);
        if comp == 0 {
            for (((o, &y), &u), &v) in out.iter_mut().zip(&y[..n]).zip(u).zip(v) {
                let t = a * y as i32 + b * u as i32 + c * v as i32 + d;
                *o = (t >> Self::SHIFT).clamp(0, 255) as u8;
            }
        } else {
            for ((o, &u), &v) in out.iter_mut().zip(u).zip(v) {
                let t = b * u as i32 + c * v as i32 + d;
                *o = (t >> Self::SHIFT).clamp(0, 255) as u8;
            }
        }
    }
}

/// 8-bit RGB → BT.709 limited-range (Y, U, V); black is exactly (16, 128, 128).
pub fn rgb_to_yuv709_limited(rgb: [u8; 3]) -> [u8; 3] {
    apply(
        &rgb_to_output(),
        rgb[0] as f32,
        rgb[1] as f32,
        rgb[2] as f32,
    )
}

/// BT.709 limited-range (Y, U, V) → 8-bit RGB, for PNG snapshots and tests.
pub fn yuv709_limited_to_rgb(yuv: [u8; 3]) -> [u8; 3] {
    let m = yuv_to_rgb(ColorSpace::BT709_LIMITED);
    let f = |r: usize| {
        let v =
            m[r][0] * yuv[0] as f64 + m[r][1] * yuv[1] as f64 + m[r][2] * yuv[2] as f64 + m[r][3];
        (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
    };
    [f(0), f(1), f(2)]
}

/// Parses `#RRGGBB` or `#RRGGBBAA` (also without `#`). Returns RGBA.
pub fn parse_hex_color(s: &str) -> Option<[u8; 4]> {
    let h = s.strip_prefix('#').unwrap_or(s);
    if !(h.len() == 6 || h.len() == 8) || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    let a = if h.len() == 8 { byte(6)? } else { 255 };
    Some([byte(0)?, byte(2)?, byte(4)?, a])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_and_white_are_exact() {
        assert_eq!(rgb_to_yuv709_limited([0, 0, 0]), [16, 128, 128]);
        assert_eq!(rgb_to_yuv709_limited([255, 255, 255]), [235, 128, 128]);
        assert_eq!(yuv709_limited_to_rgb([16, 128, 128]), [0, 0, 0]);
        assert_eq!(yuv709_limited_to_rgb([235, 128, 128]), [255, 255, 255]);
    }

    #[test]
    fn primaries_round_trip() {
        for rgb in [[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 100, 50]] {
            let back = yuv709_limited_to_rgb(rgb_to_yuv709_limited(rgb));
            for c in 0..3 {
                assert!(
                    (back[c] as i32 - rgb[c] as i32).abs() <= 2,
                    "{rgb:?} -> {back:?}"
                );
            }
        }
        // known BT.709 limited red
        assert_eq!(rgb_to_yuv709_limited([255, 0, 0]), [63, 102, 240]);
    }

    #[test]
    fn bt601_full_grey_maps_to_limited_grey() {
        let m = yuv_to_output(ColorSpace::BT601_FULL);
        assert_eq!(apply(&m, 0.0, 128.0, 128.0), [16, 128, 128]);
        assert_eq!(apply(&m, 255.0, 128.0, 128.0), [235, 128, 128]);
        // 601 limited red → 709 limited red
        let m = yuv_to_output(ColorSpace::BT601_LIMITED);
        let red601 = [81.0, 90.0, 240.0];
        let out = apply(&m, red601[0], red601[1], red601[2]);
        assert!(
            (out[0] as i32 - 63).abs() <= 1 && (out[2] as i32 - 240).abs() <= 1,
            "{out:?}"
        );
    }

    #[test]
    fn fixed_point_agrees_with_float() {
        for cs in [
            ColorSpace::BT601_LIMITED,
            ColorSpace::BT601_FULL,
            ColorSpace {
                matrix: Matrix::Bt709,
                range: Range::Full,
            },
        ] {
            let m = yuv_to_output(cs);
            let f = Fixed::of_yuv(&m).expect("chroma independent of luma");
            for (y, u, v) in [
                (16u8, 128u8, 128u8),
                (235, 16, 240),
                (81, 90, 240),
                (0, 0, 255),
                (255, 255, 0),
                (128, 60, 200),
            ] {
                let want = apply(&m, y as f32, u as f32, v as f32);
                for (c, w) in want.iter().enumerate() {
                    let mut o = [0u8];
                    f.map_row(c, &[y], &[u], &[v], &mut o);
                    assert!(
                        (o[0] as i32 - *w as i32).abs() <= 1,
                        "{cs:?} {:?} comp {c}: {} vs {w}",
                        (y, u, v),
                        o[0]
                    );
                }
            }
        }
    }

    #[test]
    fn hex_colours() {
        assert_eq!(parse_hex_color("#0000007D"), Some([0, 0, 0, 0x7d]));
        assert_eq!(parse_hex_color("FFFFFF"), Some([255, 255, 255, 255]));
        assert_eq!(parse_hex_color("#12345"), None);
        assert_eq!(parse_hex_color("#GG0000"), None);
    }
}
