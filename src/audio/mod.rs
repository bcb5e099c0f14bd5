//! Audio mixing pipeline: [`resample`] (any rate → 48 kHz with drift
//! correction), [`track`] (one user's audio on the mixer timeline) and
//! [`mix`] (channel strategies and the limiter).

pub mod mix;
pub mod resample;
pub mod track;

/// Sample rate of the mixer timeline and of its output, in Hz.
pub const MIX_RATE: u32 = 48_000;
/// Processing block: 10 ms at 48 kHz.
pub const BLOCK: usize = 480;

#[cfg(test)]
pub(crate) mod testsig {
    //! Signal generators and measurements shared by the tests.

    /// `n` samples of `amp * sin(2π f t)` at `rate`.
    pub fn sine(f: f64, rate: u32, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp as f64 * (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin())
                    as f32
            })
            .collect()
    }

    /// Number of sign changes.
    pub fn zero_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    /// Goertzel power of `x` at frequency `f` (normalised by length²).
    pub fn goertzel(x: &[f32], f: f64, rate: u32) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f / rate as f64;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = v as f64 + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let p = s1 * s1 + s2 * s2 - c * s1 * s2;
        p / (x.len() as f64 * x.len() as f64)
    }

    /// Least-squares fit of a sinusoid of known frequency.
    pub struct Fit {
        pub amplitude: f64,
        pub tone_energy: f64,
        pub residual_energy: f64,
    }

    /// Fits `a cos + b sin` at `f` to `x` and reports tone and residual energy.
    pub fn tone_fit(x: &[f32], f: f64, rate: u32) -> Fit {
        let w = 2.0 * std::f64::consts::PI * f / rate as f64;
        let (mut cc, mut ss, mut cs, mut xc, mut xs) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            cc += c * c;
            ss += s * s;
            cs += c * s;
            xc += v as f64 * c;
            xs += v as f64 * s;
        }
        let det = cc * ss - cs * cs;
        let a = (xc * ss - xs * cs) / det;
        let b = (xs * cc - xc * cs) / det;
        let (mut te, mut re) = (0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            let t = a * c + b * s;
            te += t * t;
            re += (v as f64 - t) * (v as f64 - t);
        }
        Fit {
            amplitude: (a * a + b * b).sqrt(),
            tone_energy: te,
            residual_energy: re,
        }
    }

    /// Largest |x[n+1] + x[n-1] - 2cos(ω) x[n]| / amp: zero for a clean sine
    /// of frequency `f`, large at clicks, gaps and jumps.
    pub fn sine_defect(x: &[f32], f: f64, rate: u32, amp: f32) -> f64 {
        let c = 2.0 * (2.0 * std::f64::consts::PI * f / rate as f64).cos();
        x.windows(3)
            .map(|w| (w[2] as f64 + w[0] as f64 - c * w[1] as f64).abs())
            .fold(0.0, f64::max)
            / amp as f64
    }

    /// Tiny deterministic LCG (Numerical Recipes constants).
    pub struct Lcg(pub u64);

    impl Lcg {
        /// Uniform in [0, 1).
        pub fn next_f64(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}
