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
//! Groups whose taps span more elements (downscales beyond 2:1) use two or three windows
//! and as many shuffles per group, OR-ed together (`pshufb` zeroes bytes whose control has the
//! high bit set).

use super::WEIGHT_ONE;

/// Outputs per group (one 128-bit lane of pairs).
const G: usize = 4;
/// Outputs per AVX2 iteration (four groups).
pub(super) const BLOCK: usize = 16;
/// Scratch elements one group load reads (`base..base + WINDOW`).
pub(super) const WINDOW: usize = 8;
/// `pshufb` control byte that yields zero.
const ZERO: u8 = 0x80;

/// Most windows per group: taps spanning up to 24 scratch elements (downscales to ~7:1).
pub(super) const MAX_WINDOWS: usize = 3;

/// Per-group tables for the SIMD horizontal pass over the first `n` outputs of a row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct HBlocks {
    /// First scratch element each group loads.
    base: Vec<u32>,
    /// `pshufb` control per window and group: the bytes of `(tmp[i0], tmp[i0 + 1])` for the
    /// group's 4 outputs that lie in the window at `base + k·WINDOW` (others zero). Only the
    /// first `windows` vectors are used (the others are empty).
    mask: [Vec<[u8; 16]>; MAX_WINDOWS],
    /// `(256 − w, w)` per output, 4 outputs per group.
    wts: Vec<[i16; 8]>,
    /// Outputs covered: a multiple of [`BLOCK`].
    n: usize,
    /// Windows per group, 1..=MAX_WINDOWS.
    windows: usize,
    /// Largest `base`: loads read up to `max_base + windows·WINDOW`.
    max_base: usize,
}

impl HBlocks {
    /// Tables for the horizontal taps `hx` (first tap relative to the scratch row, weight),
    /// with the fewest windows per group that hold every group's taps; None when more than
    /// [`MAX_WINDOWS`] would be needed or the row is shorter than a block.
    pub(super) fn build(hx: &[(u32, u16)]) -> Option<HBlocks> {
        let n = hx.len() / BLOCK * BLOCK;
        // taps are monotonic: a group's span is its last tap minus its first
        let span = hx[..n]
            .chunks_exact(G)
            .map(|g| g[G - 1].0.checked_sub(g[0].0).map(|d| d as usize + 2))
            .try_fold(0, |m, d| d.map(|d| d.max(m)))?;
        let windows = span.div_ceil(WINDOW).max(1);
        if n == 0 || windows > MAX_WINDOWS {
            return None;
        }
        let groups = n / G;
        let mut b = HBlocks {
            base: Vec::with_capacity(groups),
            mask: Default::default(),
            wts: Vec::with_capacity(groups),
            n,
            windows,
            max_base: 0,
        };
        for g in hx[..n].chunks_exact(G) {
            let base = g[0].0;
            let mut mask = [[ZERO; 16]; MAX_WINDOWS];
            let mut wts = [0i16; 8];
            for (k, &(i, w)) in g.iter().enumerate() {
                let d = (i - base) as usize; // < span - 1 (checked above)
                                             // byte j of the pair sits at byte 2d + j of the windows
                for j in 0..4 {
                    let at = 2 * d + j;
                    mask[at / 16][4 * k + j] = (at % 16) as u8;
                }
                wts[2 * k] = (WEIGHT_ONE - w as u32) as i16;
                wts[2 * k + 1] = w as i16;
            }
            b.base.push(base);
            for (v, m) in b.mask.iter_mut().zip(mask).take(windows) {
                v.push(m);
            }
            b.wts.push(wts);
            b.max_base = b.max_base.max(base as usize);
        }
        Some(b)
    }

    /// Scratch elements the SIMD pass may read (`tmp` must be at least this long).
    pub(super) fn reach(&self) -> usize {
        self.max_base + self.windows * WINDOW
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
            // (the scalar tail below starts at b.n)
            assert!(b.n <= hx.len(), "SIMD tap tables longer than the row");
            // SAFETY: AVX2 is present; the kernel checks the tables against `out` and `tmp`
            // itself before it touches memory (see its assert)
            unsafe {
                match b.windows {
                    1 => hpass_avx2::<1>(tmp, b, out),
                    2 => hpass_avx2::<2>(tmp, b, out),
                    _ => hpass_avx2::<3>(tmp, b, out),
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

/// [`hpass`] for the first `b.n` outputs, `W == b.windows` windows per group.
/// Caller guarantees AVX2, `out.len() >= b.n`, `tmp.len() >= b.reach()` and tables of
/// `b.n / G` groups.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hpass_avx2<const W: usize>(tmp: &[u16], b: &HBlocks, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let groups = b.n / G;
    // the bounds every load and store below relies on, checked here where the pointers are
    assert!(
        W == b.windows
            && b.n <= out.len()
            && b.reach() <= tmp.len()
            && b.base.len() == groups
            && b.wts.len() == groups
            && b.mask[..W].iter().all(|m| m.len() == groups),
        "hpass_avx2: tap tables do not match the row or the scratch"
    );
    // SAFETY: AVX2 is enabled for this function (its caller checked the CPU). Every group
    // index g, g + 1 … g + 7 used below is < groups (x + 32 <= b.n, or x + 16 <= b.n for the
    // tail, and g = x / G), so the table reads are in bounds (lengths asserted); window loads
    // read tmp[base + k·WINDOW .. + WINDOW] with base + W·WINDOW <= b.reach() <= tmp.len();
    // stores write out[x .. x + 32 or 16] with x + 32 (16) <= b.n <= out.len().
    unsafe {
        let bias = _mm256_set1_epi16(-32768);
        let round = _mm256_set1_epi32(32768 * 256 + 32768);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let t = tmp.as_ptr();
        // outputs of groups g, g + 1 (one per lane) as i32 (a macro, not a closure, so that the
        // intrinsics inline under this function's target features)
        macro_rules! pair {
            ($g:expr) => {{
                let g = $g;
                let (b0, b1) = (
                    *b.base.get_unchecked(g) as usize,
                    *b.base.get_unchecked(g + 1) as usize,
                );
                let mut pq = _mm256_setzero_si256();
                for k in 0..W {
                    let win = _mm256_loadu2_m128i(
                        t.add(b1 + k * WINDOW) as *const __m128i,
                        t.add(b0 + k * WINDOW) as *const __m128i,
                    );
                    let m = _mm256_loadu_si256(b.mask[k].as_ptr().add(g) as *const __m256i);
                    pq = _mm256_or_si256(pq, _mm256_shuffle_epi8(win, m));
                }
                let w = _mm256_loadu_si256(b.wts.as_ptr().add(g) as *const __m256i);
                let pq = _mm256_xor_si256(pq, bias);
                _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(pq, w), round), 16)
            }};
        }
        let (mut x, mut g) = (0, 0);
        while x + 32 <= b.n {
            // packs/packus work per lane: dwords end up as outputs 0..4 8..12 16..20 24..28 |
            // 4..8 12..16 20..24 28..32
            let a = _mm256_packs_epi32(pair!(g), pair!(g + 2));
            let c = _mm256_packs_epi32(pair!(g + 4), pair!(g + 6));
            let v = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, c), order);
            _mm256_storeu_si256(out.as_mut_ptr().add(x) as *mut __m256i, v);
            x += 32;
            g += 32 / G;
        }
        if x < b.n {
            // one block of 16
            let a = _mm256_packs_epi32(pair!(g), pair!(g + 2));
            let v = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, a), order);
            _mm_storeu_si128(
                out.as_mut_ptr().add(x) as *mut __m128i,
                _mm256_castsi256_si128(v),
            );
        }
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
    assert!(a0.len() >= d.len() && a1.len() >= d.len());
    // SAFETY: AVX2 is enabled for this function; each iteration reads a0[j..j + 16],
    // a1[j..j + 16] and writes d[j..j + 16] with j + 16 <= d.len() <= a0.len(), a1.len().
    unsafe {
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
}

/// [`super::box2`] 32 outputs at a time; returns how many it wrote.
/// Caller guarantees AVX2 and `r0.len(), r1.len() >= 2 * out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn box2_avx2(r0: &[u8], r1: &[u8], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    assert!(r0.len() >= 2 * out.len() && r1.len() >= 2 * out.len());
    // SAFETY: AVX2 is enabled for this function; each iteration reads r0, r1 at
    // [2x .. 2x + 64] and writes out[x .. x + 32] with x + 32 <= out.len(), so
    // 2x + 64 <= 2·out.len() <= r0.len(), r1.len().
    unsafe {
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
                    let s = _mm256_add_epi16(
                        _mm256_maddubs_epi16(a, ones),
                        _mm256_maddubs_epi16(b, ones),
                    );
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
    for (j, b) in (0..16).zip((0..).step_by(step)) {
        masks[b / 16][j] = (b % 16) as u8;
    }
    // SAFETY: SSSE3 is enabled for this function; the mask loads read 16-byte arrays; each
    // iteration reads src[x·S .. x·S + 16·S] and writes out[x .. x + 16], with
    // x + 16 <= out.len() and (x + 16)·S <= src.len() (the loop condition).
    unsafe {
        let m = masks.map(|m| _mm_loadu_si128(m.as_ptr() as *const __m128i));
        let mut x = 0;
        while x + 16 <= out.len() && (x + 16) * step <= src.len() {
            let p = src.as_ptr().add(x * step);
            let mut v = _mm_shuffle_epi8(_mm_loadu_si128(p as *const __m128i), m[0]);
            for (k, mk) in m[1..S].iter().enumerate() {
                let w = _mm_loadu_si128(p.add(16 * (k + 1)) as *const __m128i);
                v = _mm_or_si128(v, _mm_shuffle_epi8(w, *mk));
            }
            _mm_storeu_si128(out.as_mut_ptr().add(x) as *mut __m128i, v);
            x += 16;
        }
        x
    }
}
