//! Searches along one variable through argmin's solvers: a golden-section search for a minimum
//! and Brent's method for a root, on plain closures.

use argmin::core::{CostFunction, Error, Executor, State};
use argmin::solver::brent::BrentRoot;
use argmin::solver::goldensectionsearch::GoldenSectionSearch;

/// A closure as an argmin problem.
struct Scalar<F>(F);

impl<F: Fn(f64) -> f64> CostFunction for Scalar<F> {
    type Param = f64;
    type Output = f64;

    fn cost(&self, x: &f64) -> Result<f64, Error> {
        Ok((self.0)(*x))
    }
}

/// The minimum of `f` on `[lo, hi]`, which should hold one, by golden-section search from `start`
/// (inside the interval) until the bracket is 1e-12 of the abscissa wide or after 100 steps,
/// which shrink it by 1e-21. The best point evaluated; `None` if the search cannot start.
pub(crate) fn golden_section_min(
    f: impl Fn(f64) -> f64,
    lo: f64,
    hi: f64,
    start: f64,
) -> Option<f64> {
    let solver = GoldenSectionSearch::new(lo, hi)
        .ok()?
        .with_tolerance(1e-12)
        .ok()?;
    let result = Executor::new(Scalar(f), solver)
        .configure(|state| state.param(start).max_iters(100))
        .run()
        .ok()?;
    result.state().get_best_param().copied()
}

/// A root of `f` between `a` and `b`, where `f` changes sign, by Brent's method down to a couple
/// of ulps of the abscissa: the point evaluated where |f| is smallest. `None` when `f` has the
/// same sign at both ends.
pub(crate) fn root(f: impl Fn(f64) -> f64, a: f64, b: f64) -> Option<f64> {
    // With a tolerance of zero, Brent's method stops at 2 ulps of the iterate.
    let solver = BrentRoot::new(a.min(b), a.max(b), 0.0);
    let result = Executor::new(Scalar(f), solver)
        .configure(|state| state.max_iters(200))
        .run()
        .ok()?;
    result.state().get_best_param().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_section_finds_the_minimum_of_a_parabola_and_of_a_cosh() {
        let x = golden_section_min(|x| (x - 0.3).powi(2) + 1.0, -2.0, 5.0, 1.0).unwrap();
        assert!((x - 0.3).abs() < 1e-7, "{x}");
        // cosh(x - 2) is flat near its minimum: the abscissa is good to ~sqrt(eps).
        let x = golden_section_min(|x| (x - 2.0).cosh(), 1.0, 4.0, 1.5).unwrap();
        assert!((x - 2.0).abs() < 1e-7, "{x}");
        assert_eq!(golden_section_min(|x| x, 1.0, 1.0, 1.0), None);
    }

    #[test]
    fn root_reaches_adjacent_floats_of_sqrt_2() {
        let x = root(|x| x * x - 2.0, 3.0, 0.0).unwrap();
        assert!((x - std::f64::consts::SQRT_2).abs() < 1e-15, "{x}");
        assert_eq!(root(|x| x * x + 1.0, -1.0, 1.0), None);
    }
}
