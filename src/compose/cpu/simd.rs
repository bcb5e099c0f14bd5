//! x86-64 SIMD kernels of the CPU compositor, selected at run time (AVX2), each with a scalar
//! fallback that computes the same integers. Every kernel is bit-identical to the plain
//! separable formula of [`super::super::sampling`].
//!
//! The general horizontal pass gathers two taps per output from the u16 scratch row. With
//! AVX2 it works on groups of 4 outputs whose taps lie within 8 consecutive scratch elements
//! (any downscale up to about 2:1, and every upscale): one unaligned 16-byte load per group,
//! a `pshufb` that forms the `(tmp[i], tmp[i+1])` pairs, and a `pmaddwd` with the pairs'
//! weights `(256 - w, w)`. `pmaddwd` multiplies signed 16-bit values, so the scratch values
//! (0..=65280) are biased by −32768 first (`xor 0x8000`), and the bias is added back to the
//! 32-bit sum: `p·(256−w) + q·w = p'·(256−w) + q'·w + 32768·256` with `p' = p − 32768`.
//! Groups whose taps span up to 16 elements (downscales up to about 4.6:1) use two windows
//! and two shuffles per group, OR-ed together (`pshufb` zeroes bytes whose control has the high
//! bit set).

use super::WEIGHT_ONE;

/// Outputs per group (one 128-bit lane of pairs).
const G: usize = 4;
/// Outputs per AVX2 iteration (four groups).
pub(super) const BLOCK: usize = 16;
/// Scratch elements one group load reads (`base..base + WINDOW`).
pub(super) const WINDOW: usize = 8;
/// `pshufb` control byte that yields zero.
const ZERO: u8 = 0x80;

/// Per-group tables for the SIMD horizontal pass over the first `n` outputs of a row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct HBlocks {
    /// First scratch element each group loads.
    base: Vec<u32>,
    /// `pshufb` control per group: bytes of `(tmp[i0], tmp[i0 + 1])` for its 4 outputs, from
    /// the window at `base`.
    mask: Vec<[u8; 16]>,
    /// Two-window tables: the bytes from the window at `base + WINDOW` (empty: one window).
    mask2: Vec<[u8; 16]>,
    /// `(256 − w, w)` per output, 4 outputs per group.
    wts: Vec<[i16; 8]>,
    /// Outputs covered: a multiple of [`BLOCK`].
    n: usize,
    /// Largest `base`: loads read up to `max_base + WINDOW`.
    max_base: usize,
}

impl HBlocks {
    /// Tables for the horizontal taps `hx` (first tap relative to the scratch row, weight):
    /// one window per group where every group fits one, else two, else None (also when the row
    /// is shorter than a block).
    pub(super) fn build(hx: &[(u32, u16)]) -> Option<HBlocks> {
        Self::build_with(hx, 1).or_else(|| Self::build_with(hx, 2))
    }

    fn build_with(hx: &[(u32, u16)], windows: usize) -> Option<HBlocks> {
        let n = hx.len() / BLOCK * BLOCK;
        if n == 0 {
            return None;
        }
        let groups = n / G;
        let mut b = HBlocks {
            base: Vec::with_capacity(groups),
            mask: Vec::with_capacity(groups),
            mask2: Vec::with_capacity(if windows == 2 { groups } else { 0 }),
            wts: Vec::with_capacity(groups),
            n,
            max_base: 0,
        };
        for g in hx[..n].chunks_exact(G) {
            let base = g[0].0;
            let mut mask = [[ZERO; 16]; 2];
            let mut wts = [0i16; 8];
            for (k, &(i, w)) in g.iter().enumerate() {
                let d = i.checked_sub(base)? as usize;
                if d + 1 >= windows * WINDOW {
                    return None;
                }
                // byte j of the pair sits at byte 2d + j of the windows
                for j in 0..4 {
                    let at = 2 * d + j;
                    mask[at / 16][4 * k + j] = (at % 16) as u8;
                }
                wts[2 * k] = (WEIGHT_ONE - w as u32) as i16;
                wts[2 * k + 1] = w as i16;
            }
            b.base.push(base);
            b.mask.push(mask[0]);
            if windows == 2 {
                b.mask2.push(mask[1]);
            }
            b.wts.push(wts);
            b.max_base = b.max_base.max(base as usize);
        }
        Some(b)
    }

    /// Windows per group (1 or 2).
    fn windows(&self) -> usize {
        if self.mask2.is_empty() {
            1
        } else {
            2
        }
    }

    /// Scratch elements the SIMD pass may read (`tmp` must be at least this long).
    pub(super) fn reach(&self) -> usize {
        self.max_base + self.windows() * WINDOW
    }
}

/// Whether the AVX2 kernels may run (cached by std after the first call).
#[inline]
pub(super) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One output row of the general horizontal pass: SIMD over the groups of `blocks` (when
/// present and the CPU has AVX2), the scalar gather for the rest.
#[inline]
pub(super) fn hpass(tmp: &[u16], hx: &[(u32, u16)], blocks: Option<&HBlocks>, out: &mut [u8]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = blocks {
        if has_avx2() {
            assert!(
                b.n <= out.len() && b.n <= hx.len() && b.reach() <= tmp.len(),
                "SIMD tap tables exceed the row or the scratch"
            );
            // SAFETY: AVX2 is present; b.n <= out.len() and every load reads
            // tmp[base..base + WINDOW] with base <= max_base, max_base + WINDOW <= tmp.len()
            // (asserted above); mask2 is empty or as long as mask (built so)
            unsafe {
                match b.windows() {
                    1 => hpass_avx2::<false>(tmp, b, out),
                    _ => hpass_avx2::<true>(tmp, b, out),
                }
            };
            done = b.n;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = blocks;
    hpass_scalar(tmp, &hx[done..], &mut out[done..]);
}

/// The scalar horizontal pass (a gather per output sample).
#[inline]
pub(super) fn hpass_scalar(tmp: &[u16], hx: &[(u32, u16)], out: &mut [u8]) {
    // taps are monotonic (the sampling map has a positive scale), so the last is the largest
    debug_assert!(hx.windows(2).all(|p| p[0].0 <= p[1].0));
    let Some(&(last, _)) = hx.last() else { return };
    assert!(
        (last as usize) + 1 < tmp.len(),
        "tap table exceeds the scratch row"
    );
    for (o, &(i, w)) in out.iter_mut().zip(hx) {
        let i = i as usize;
        // SAFETY: i <= last and last + 1 < tmp.len() (checked above)
        let (p, q) = unsafe {
            (
                *tmp.get_unchecked(i) as i32,
                *tmp.get_unchecked(i + 1) as i32,
            )
        };
        *o = ((p * WEIGHT_ONE as i32 + (q - p) * w as i32 + 32768) >> 16) as u8;
    }
}

/// [`hpass`] for the first `b.n` outputs, with two windows per group when `TWO`.
/// Caller guarantees AVX2, `out.len() >= b.n`, `tmp.len() >= b.reach()`, and `TWO` exactly when
/// `b.mask2` is not empty.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hpass_avx2<const TWO: bool>(tmp: &[u16], b: &HBlocks, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let bias = _mm256_set1_epi16(-32768);
    let round = _mm256_set1_epi32(32768 * 256 + 32768);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let t = tmp.as_ptr();
    let mut g = 0;
    let mut x = 0;
    while x < b.n {
        // two groups per 256-bit register, one per lane (a macro, not a closure, so that
        // the intrinsics inline under this function's target features)
        macro_rules! pair {
            ($g:expr) => {{
                let g = $g;
                let (b0, b1) = (*b.base.get_unchecked(g), *b.base.get_unchecked(g + 1));
                let win = _mm256_loadu2_m128i(
                    t.add(b1 as usize) as *const __m128i,
                    t.add(b0 as usize) as *const __m128i,
                );
                let m = _mm256_loadu_si256(b.mask.as_ptr().add(g) as *const __m256i);
                let w = _mm256_loadu_si256(b.wts.as_ptr().add(g) as *const __m256i);
                let mut pq = _mm256_shuffle_epi8(win, m);
                if TWO {
                    let win2 = _mm256_loadu2_m128i(
                        t.add(b1 as usize + WINDOW) as *const __m128i,
                        t.add(b0 as usize + WINDOW) as *const __m128i,
                    );
                    let m2 = _mm256_loadu_si256(b.mask2.as_ptr().add(g) as *const __m256i);
                    pq = _mm256_or_si256(pq, _mm256_shuffle_epi8(win2, m2));
                }
                let pq = _mm256_xor_si256(pq, bias);
                _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(pq, w), round), 16)
            }};
        }
        let lo = pair!(g); // outputs 0..4 | 4..8
        let hi = pair!(g + 2); // outputs 8..12 | 12..16
        let s16 = _mm256_packs_epi32(lo, hi); // 0..4 8..12 | 4..8 12..16
        let s8 = _mm256_packus_epi16(s16, s16); // dwords: 0..4 8..12 0..4 8..12 | 4..8 12..16 ..
        let s8 = _mm256_permutevar8x32_epi32(s8, order);
        _mm_storeu_si128(
            out.as_mut_ptr().add(x) as *mut __m128i,
            _mm256_castsi256_si128(s8),
        );
        g += 4;
        x += BLOCK;
    }
}

/// Vertical pass: `d[j] = a0[j]·w0 + a1[j]·w1` (u16, no overflow as `w0 + w1 = 256`).
#[inline]
pub(super) fn vpass(a0: &[u8], a1: &[u8], w0: u16, w1: u16, d: &mut [u16]) {
    let n = d.len();
    assert!(a0.len() >= n && a1.len() >= n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 is present and a0, a1 hold at least d.len() elements (asserted above)
        done = unsafe { vpass_avx2(a0, a1, w0, w1, d) };
    }
    for ((d, &p), &q) in d[done..].iter_mut().zip(&a0[done..n]).zip(&a1[done..n]) {
        *d = p as u16 * w0 + q as u16 * w1;
    }
}

/// [`vpass`] 16 elements at a time; returns how many it wrote.
/// Caller guarantees AVX2 and `a0.len(), a1.len() >= d.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vpass_avx2(a0: &[u8], a1: &[u8], w0: u16, w1: u16, d: &mut [u16]) -> usize {
    use std::arch::x86_64::*;
    let (v0, v1) = (_mm256_set1_epi16(w0 as i16), _mm256_set1_epi16(w1 as i16));
    let mut j = 0;
    while j + 16 <= d.len() {
        let p = _mm256_cvtepu8_epi16(_mm_loadu_si128(a0.as_ptr().add(j) as *const __m128i));
        let q = _mm256_cvtepu8_epi16(_mm_loadu_si128(a1.as_ptr().add(j) as *const __m128i));
        let s = _mm256_add_epi16(_mm256_mullo_epi16(p, v0), _mm256_mullo_epi16(q, v1));
        _mm256_storeu_si256(d.as_mut_ptr().add(j) as *mut __m256i, s);
        j += 16;
    }
    j
}

/// [`super::box2`] 32 outputs at a time; returns how many it wrote.
/// Caller guarantees AVX2 and `r0.len(), r1.len() >= 2 * out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn box2_avx2(r0: &[u8], r1: &[u8], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi8(1);
    let two = _mm256_set1_epi16(2);
    let (p0, p1) = (r0.as_ptr(), r1.as_ptr());
    let mut x = 0;
    while x + 32 <= out.len() {
        // 16 outputs from 32 bytes of each row: pairwise sums of adjacent bytes, as u16
        macro_rules! half {
            ($o:expr) => {{
                let a = _mm256_loadu_si256(p0.add(2 * x + $o) as *const __m256i);
                let b = _mm256_loadu_si256(p1.add(2 * x + $o) as *const __m256i);
                let s =
                    _mm256_add_epi16(_mm256_maddubs_epi16(a, ones), _mm256_maddubs_epi16(b, ones));
                _mm256_srli_epi16(_mm256_add_epi16(s, two), 2)
            }};
        }
        let (lo, hi) = (half!(0), half!(32));
        // packus interleaves the lanes: 0..8 16..24 | 8..16 24..32
        let v = _mm256_permute4x64_epi64(_mm256_packus_epi16(lo, hi), 0b11_01_10_00);
        _mm256_storeu_si256(out.as_mut_ptr().add(x) as *mut __m256i, v);
        x += 32;
    }
    x
}

/// `out[x] = src[step·x]` (texel hits on both axes).
#[inline]
pub(super) fn copy_strided(src: &[u8], step: usize, out: &mut [u8]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if (2..=4).contains(&step) && std::is_x86_feature_detected!("ssse3") {
        // SAFETY: SSSE3 is present; copy_strided_ssse3 reads src[..step · 16 · blocks] and
        // writes out[..16 · blocks] only for blocks with 16·step·(b+1) <= src.len() and
        // 16·(b+1) <= out.len(), which it checks itself
        done = unsafe {
            match step {
                2 => copy_strided_ssse3::<2>(src, out),
                3 => copy_strided_ssse3::<3>(src, out),
                _ => copy_strided_ssse3::<4>(src, out),
            }
        };
    }
    for (o, v) in out[done..]
        .iter_mut()
        .zip(src[done * step..].iter().step_by(step))
    {
        *o = *v;
    }
}

/// [`copy_strided`] 16 outputs at a time (`S` 2..=4); returns how many it wrote.
/// Caller guarantees SSSE3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn copy_strided_ssse3<const S: usize>(src: &[u8], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let step = S;
    assert!((2..=4).contains(&step));
    // mask k picks, from the k-th 16 input bytes, output bytes j with step·j in that block
    let mut masks = [[0x80u8; 16]; 4];
    for j in 0..16 {
        let b = step * j;
        masks[b / 16][j] = (b % 16) as u8;
    }
    let m = masks.map(|m| _mm_loadu_si128(m.as_ptr() as *const __m128i));
    let mut x = 0;
    while x + 16 <= out.len() && (x + 16) * step <= src.len() {
        let p = src.as_ptr().add(x * step);
        let mut v = _mm_shuffle_epi8(_mm_loadu_si128(p as *const __m128i), m[0]);
        for k in 1..S {
            let w = _mm_loadu_si128(p.add(16 * k) as *const __m128i);
            v = _mm_or_si128(v, _mm_shuffle_epi8(w, m[k]));
        }
        _mm_storeu_si128(out.as_mut_ptr().add(x) as *mut __m128i, v);
        x += 16;
    }
    x
}
