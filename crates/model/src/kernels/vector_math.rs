//! Softmax's and SwiGLU's element-wise math over slices, at the CPU's widest vector width.
//!
//! libm's `expf` is a scalar call per element, and a float reduction written as a loop is
//! sequential (reassociating it would change the result, so the compiler may not); together they
//! were 6% of a training step's time in the LM head's softmax, the attention's softmax and
//! SwiGLU's sigmoid. Here `exp` is a polynomial the compiler vectorises, reductions keep one
//! partial result per lane of a 16-wide block, and each public function is compiled for AVX-512
//! and AVX2 as well as the baseline and picks one at run time.
//!
//! Results differ from the scalar forms by rounding only: [`exp`] is within 2 ulp of the
//! correctly rounded value over f32's whole range (tested against f64), and a sum adds its terms
//! in another order.

/// Lanes of the blocks the loops are written in: one AVX-512 register of f32, two of AVX2.
const LANES: usize = 16;

/// Below this, `e^x` is not a normal f32: the result is 0. Inputs are clamped here before the
/// exponent is formed, so `n` stays in [-126, 127] whatever the input.
const MIN_X: f32 = -87.336_54;
/// Above this, `2^n` would need the exponent field's infinity code: inputs are clamped here,
/// which only sigmoid's `e^-x` for x < -88 reaches (giving 1 / (1 + 1.65e38), not 0).
const MAX_X: f32 = 88.0;
/// Adding 1.5 x 2^23 rounds an f32 of magnitude below 2^22 to an integer, which then sits in
/// the low bits of the sum.
const ROUND: f32 = 12_582_912.0;
/// ln 2 split so that `n * LN2_HI` is exact for |n| < 2^9 (Cody and Waite's reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`: `x = n ln 2 + r` with |r| <= ln 2 / 2, `e^r` by a degree-6 polynomial (Cephes'
/// `expf` coefficients), times `2^n` built in the exponent bits. NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(MIN_X, MAX_X);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes' 5.0000001201e-1, which is 0.5 in f32
    let e_r = p * r * r + r + 1.0;
    let k = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let two_n = f32::from_bits(((k + 127) as u32) << 23);
    let y = e_r * two_n;
    if x < MIN_X {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Defines `pub fn $name` that runs `$body` compiled for AVX-512, for AVX2 + FMA, or for the
/// baseline, whichever the CPU has (checked at run time; the check is a cached load).
macro_rules! dispatched {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

dispatched! {
    /// The largest element (NEG_INFINITY for an empty slice; NaNs are skipped, as `f32::max`).
    fn max(xs: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let blocks = xs.chunks_exact(LANES);
        let tail = blocks.remainder();
        for block in blocks {
            for (m, &x) in lanes.iter_mut().zip(block) {
                *m = m.max(x);
            }
        }
        tail.iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

dispatched! {
    /// Replaces every `x` with `e^(x - shift)` and returns their sum: softmax's numerator and
    /// denominator in one pass.
    fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
        let mut lanes = [0.0f32; LANES];
        let mut blocks = xs.chunks_exact_mut(LANES);
        for block in &mut blocks {
            for (s, x) in lanes.iter_mut().zip(block) {
                *x = exp(*x - shift);
                *s += *x;
            }
        }
        let mut tail_sum = 0.0f32;
        for x in blocks.into_remainder() {
            *x = exp(*x - shift);
            tail_sum += *x;
        }
        lanes.iter().sum::<f32>() + tail_sum
    }
}

dispatched! {
    /// Multiplies every element by `k`.
    fn scale(xs: &mut [f32], k: f32) {
        for x in xs.iter_mut() {
            *x *= k;
        }
    }
}

dispatched! {
    /// SwiGLU's forward: `y = silu(gate) * up`.
    fn swiglu(gate: &[f32], up: &[f32], y: &mut [f32]) {
        for ((y, &g), &u) in y.iter_mut().zip(gate).zip(up) {
            *y = g * sigmoid(g) * u;
        }
    }
}

dispatched! {
    /// SwiGLU's backward: `dgate = dy * up * s * (1 + gate * (1 - s))` and `dup = dy * gate * s`
    /// with `s = sigmoid(gate)`.
    fn swiglu_backward(gate: &[f32], up: &[f32], dy: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
        for ((((dg, du), &g), &u), &dy) in dgate.iter_mut().zip(dup.iter_mut()).zip(gate).zip(up).zip(dy) {
            let s = sigmoid(g);
            *dg = dy * u * s * (1.0 + g * (1.0 - s));
            *du = dy * g * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `got` and the f64 value rounded to f32.
    fn ulps(got: f32, want: f64) -> u32 {
        let want = want as f32;
        (got.to_bits() as i64 - want.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_normal_range() {
        let mut worst = (0, 0.0f32);
        let mut x = MIN_X;
        while x < MAX_X {
            let u = ulps(exp(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
            x += 1e-3 + x.abs() * 1e-5;
        }
        assert!(worst.0 <= 2, "{} ulp at x = {}", worst.0, worst.1);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_is_zero_below_the_normal_range_and_keeps_nan() {
        for x in [-87.34f32, -100.0, -1e30, f32::NEG_INFINITY] {
            assert_eq!(exp(x), 0.0, "{x}");
        }
        // Inputs whose unclamped exponent would overflow an i32 when biased.
        for x in (-17_443_700..-17_443_450).step_by(2) {
            assert_eq!(exp(x as f32), 0.0, "{x}");
        }
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1e30).is_finite(), "clamped, not infinite");
        assert_eq!(sigmoid(-1e30), 1.0 / (1.0 + exp(MAX_X)));
        assert_eq!(sigmoid(1e30), 1.0);
    }

    /// A slice long enough for blocks and a tail, with every dispatched function against the
    /// scalar composition it replaces.
    #[test]
    fn slice_functions_match_their_scalar_forms() {
        let xs: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
            .collect();
        let want_max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max(&xs), want_max);
        assert_eq!(max(&[]), f32::NEG_INFINITY);

        let mut e = xs.clone();
        let sum = exp_shifted_sum(&mut e, want_max);
        let want_sum: f64 = xs.iter().map(|&x| (x as f64 - want_max as f64).exp()).sum();
        assert!(
            (sum as f64 - want_sum).abs() < 1e-6 * want_sum,
            "{sum} vs {want_sum}"
        );
        for (&got, &x) in e.iter().zip(&xs) {
            assert!(ulps(got, ((x - want_max) as f64).exp()) <= 2);
        }

        let mut s = xs.clone();
        scale(&mut s, 0.5);
        assert!(s.iter().zip(&xs).all(|(&a, &b)| a == b * 0.5));

        let up: Vec<f32> = xs.iter().map(|x| x.cos()).collect();
        let dy: Vec<f32> = xs.iter().map(|x| x.sin()).collect();
        let mut y = vec![0.0; xs.len()];
        swiglu(&xs, &up, &mut y);
        let (mut dg, mut du) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        swiglu_backward(&xs, &up, &dy, &mut dg, &mut du);
        for i in 0..xs.len() {
            let (g, u, d) = (xs[i] as f64, up[i] as f64, dy[i] as f64);
            let s = 1.0 / (1.0 + (-g).exp());
            let close =
                |got: f32, want: f64| (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs());
            assert!(close(y[i], g * s * u), "y at {i}");
            assert!(
                close(dg[i], d * u * s * (1.0 + g * (1.0 - s))),
                "dgate at {i}"
            );
            assert!(close(du[i], d * g * s), "dup at {i}");
        }
    }
}
