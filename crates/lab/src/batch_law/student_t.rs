//! Student's t distribution: its CDF and quantile, for the confidence intervals of the law.
//!
//! With three to a few dozen optimum points the law has few residual degrees of freedom, where
//! the normal quantile 1.96 would make the intervals far too narrow (t_{0.975, 1} is 12.7). The
//! distribution is `statrs`'s (through the regularised incomplete beta function). Its own
//! quantile inverts that function approximately (t_{0.975} is off by 1e-4 at a million degrees of
//! freedom), so the quantile here is the root of its upper tail, found by Brent's method to a few
//! ulps, which a table's three decimals cannot tell from exact.

use crate::scaling::univariate::root;
use statrs::distribution::{ContinuousCDF, StudentsT};
/// The standard t distribution with `df` degrees of freedom, for `df` positive and finite.
fn standard(df: f64) -> Option<StudentsT> {
    if !(df.is_finite() && df > 0.0) {
        return None;
    }
    StudentsT::new(0.0, 1.0, df).ok()
}

/// The CDF P(T <= t) of Student's t with `df` degrees of freedom (any positive real); `None` for
/// a NaN `t` or a `df` that is not positive and finite.
pub fn student_t_cdf(t: f64, df: f64) -> Option<f64> {
    if t.is_nan() {
        return None;
    }
    Some(standard(df)?.cdf(t))
}

/// The quantile t_{p, df}: the t with P(T <= t) = p. `None` unless 0 < p < 1 and `df` is positive
/// and finite.
pub fn student_t_quantile(p: f64, df: f64) -> Option<f64> {
    if !(p > 0.0 && p < 1.0) {
        return None;
    }
    if p == 0.5 {
        return Some(0.0);
    }
    let t = standard(df)?;
    // Solve on the upper tail, where the probability is small and represented accurately; it
    // falls strictly from 1/2 at 0, so doubling brackets the root.
    let q = if p > 0.5 { 1.0 - p } else { p };
    let mut hi = 1.0f64;
    while t.sf(hi) > q {
        hi *= 2.0;
        if !hi.is_finite() {
            return None;
        }
    }
    let quantile = root(|x| t.sf(x) - q, 0.0, hi)?;
    Some(if p > 0.5 { quantile } else { -quantile })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_matches_the_cauchy_and_two_df_closed_forms() {
        for &t in &[-30.0, -2.0, -0.3, 0.0, 0.7, 4.0, 100.0] {
            let cauchy = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!(
                (student_t_cdf(t, 1.0).unwrap() - cauchy).abs() < 1e-13,
                "t = {t}"
            );
            let two = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!(
                (student_t_cdf(t, 2.0).unwrap() - two).abs() < 1e-13,
                "t = {t}"
            );
        }
        assert_eq!(student_t_cdf(f64::INFINITY, 3.0), Some(1.0));
        assert_eq!(student_t_cdf(f64::NAN, 3.0), None);
        assert_eq!(student_t_cdf(1.0, 0.0), None);
    }
}
