//! `exp` over slices, 16 or 8 lanes at a time: the softmax of attention and the SiLU of the MLP
//! take one per score and per hidden unit, and libm's scalar `expf` was the largest cost of a
//! prompt after the matrix products.
//!
//! Cephes' single-precision method: `x = n·ln 2 + r` with `n` the nearest integer to `x / ln 2`
//! and `ln 2` split in two so that `r` keeps its accuracy, `e^r` by a degree-7 polynomial on
//! `|r| ≤ ln 2 / 2`, then `2^n` put into the exponent. Within 2 ulp of the exact value (tested
//! against f64). Inputs are clamped to the range whose results are normal floats (an input below
//! -87.34 gives about 1.2e-38 rather than a smaller number or 0; above 88.37, about 2.4e38
//! rather than a larger number or infinity), which neither the softmax (whose largest argument
//! is 0) nor SiLU (where `1 + e^-x` meets it) notices. Every lane and the scalar tail compute the
//! same operations with fused multiply-adds, so a value's result does not depend on where it
//! sits in the slice.

use super::Backend;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `ln` of the smallest and largest normal powers of two the result can take.
const LOW: f32 = -87.336_55;
const HIGH: f32 = 88.376_26;
/// Cephes' coefficients of `(e^r - 1 - r) / r²`, highest degree first (its last, 5.0000001201e-1,
/// is 0.5 in f32).
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `x = e^x` for every element, with `backend`'s instructions.
pub fn exp_in_place(backend: Backend, xs: &mut [f32]) {
    let done = match backend {
        Backend::Scalar => 0,
        // SAFETY: `Backend::available` offers these only where the CPU has their features.
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => unsafe { x86::avx2(xs) },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => unsafe { x86::avx512(xs) },
    };
    xs[done..].iter_mut().for_each(|x| *x = exp(*x));
}

/// One value, by the same operations as the vector lanes.
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(LOW, HIGH);
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = P[1..].iter().fold(P[0], |p, &c| p.mul_add(r, c));
    let y = p.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// The whole 16-lane vectors of `xs`; returns how many values it did.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(xs: &mut [f32]) -> usize {
        let whole = xs.len() / 16 * 16;
        for chunk in xs[..whole].chunks_exact_mut(16) {
            let x = _mm512_loadu_ps(chunk.as_ptr());
            let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(LOW)), _mm512_set1_ps(HIGH));
            let n = _mm512_roundscale_ps(
                _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
            let mut p = _mm512_set1_ps(P[0]);
            for &c in &P[1..] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
            }
            let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
            let y = _mm512_add_ps(y, _mm512_set1_ps(1.0));
            let bits = _mm512_slli_epi32(
                _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)),
                23,
            );
            let y = _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
            _mm512_storeu_ps(chunk.as_mut_ptr(), y);
        }
        whole
    }

    /// The whole 8-lane vectors of `xs`; returns how many values it did.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(xs: &mut [f32]) -> usize {
        let whole = xs.len() / 8 * 8;
        for chunk in xs[..whole].chunks_exact_mut(8) {
            let x = _mm256_loadu_ps(chunk.as_ptr());
            let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LOW)), _mm256_set1_ps(HIGH));
            let n = _mm256_round_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
            let mut p = _mm256_set1_ps(P[0]);
            for &c in &P[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
            let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
            let bits = _mm256_slli_epi32(
                _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
                23,
            );
            let y = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
            _mm256_storeu_ps(chunk.as_mut_ptr(), y);
        }
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2 ulp of f64's `exp` over the whole normal range, for every backend, and every
    /// backend gives the scalar function's bits wherever the value sits in the slice.
    #[test]
    fn exp_is_within_two_ulp_and_the_same_on_every_backend() {
        let xs: Vec<f32> = (0..20_011)
            .map(|i| LOW + (HIGH - LOW) * i as f32 / 20_010.0)
            .chain([0.0, -0.0, 1.0, -1.0, 1e-8, -1e-8, 0.5, -0.5])
            .collect();
        for &x in &xs {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
            assert!(
                (got - want).abs() <= 2.0 * ulp,
                "exp({x}) = {got}, want {want}"
            );
        }
        for backend in Backend::available() {
            for offset in [0, 1, 7] {
                let mut ys = xs[offset..].to_vec();
                exp_in_place(backend, &mut ys);
                for (&x, &y) in xs[offset..].iter().zip(&ys) {
                    assert_eq!(y.to_bits(), exp(x).to_bits(), "{} exp({x})", backend.name());
                }
            }
        }
        assert_eq!(exp(-1000.0), exp(LOW));
        assert!(exp(1000.0).is_finite());
    }
}
