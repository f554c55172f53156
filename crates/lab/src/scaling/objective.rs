//! The objective of Besiroglu et al. (2024): a Huber loss on the log-space residual of the law.
//!
//! ln L(N, D) = logsumexp(a - alpha ln N, b - beta ln D, e) with a = ln A, b = ln B, e = ln E, so
//! the fit works in log loss (relative errors) and stays finite for any parameter values.

use std::cell::{Cell, RefCell};

use argmin::core::{CostFunction, Error, Gradient};

use super::point::Point;

/// Huber(delta) of r: quadratic within delta, linear beyond. The small delta (1e-3 by default)
/// makes the fit close to least absolute deviations, hence robust to outlying runs.
pub(crate) fn huber(r: f64, delta: f64) -> f64 {
    if r.abs() <= delta {
        0.5 * r * r
    } else {
        delta * (r.abs() - 0.5 * delta)
    }
}

fn huber_slope(r: f64, delta: f64) -> f64 {
    r.clamp(-delta, delta)
}

/// Sum over points of Huber(delta) of [predicted ln L - observed ln L], in the coordinates
/// `[ln A, ln B, ln E, alpha, beta]`. The logs of the data are taken once, up front.
#[derive(Debug, Clone)]
pub(crate) struct HuberLogObjective {
    ln_n: Vec<f64>,
    ln_d: Vec<f64>,
    ln_loss: Vec<f64>,
    delta: f64,
}

impl HuberLogObjective {
    pub(crate) fn new(points: &[Point], delta: f64) -> Self {
        Self {
            ln_n: points.iter().map(|p| p.n.ln()).collect(),
            ln_d: points.iter().map(|p| p.d.ln()).collect(),
            ln_loss: points.iter().map(|p| p.loss.ln()).collect(),
            delta,
        }
    }

    /// The objective and, when asked, its gradient: both come from the same softmax weights,
    /// so computing them together costs little more than the value alone.
    pub(crate) fn eval(&self, theta: &[f64], mut grad: Option<&mut [f64; 5]>) -> f64 {
        let (a, b, e, alpha, beta) = (theta[0], theta[1], theta[2], theta[3], theta[4]);
        if let Some(g) = grad.as_deref_mut() {
            *g = [0.0; 5];
        }
        let mut total = 0.0;
        for ((&ln_n, &ln_d), &ln_l) in self.ln_n.iter().zip(&self.ln_d).zip(&self.ln_loss) {
            let t1 = a - alpha * ln_n;
            let t2 = b - beta * ln_d;
            // Shift by the largest term for stability; its weight is exactly 1, which also
            // saves one of the three exponentials (they dominate the cost of a fit).
            let (w1, w2, w3, m) = if t1 >= t2 && t1 >= e {
                (1.0, (t2 - t1).exp(), (e - t1).exp(), t1)
            } else if t2 >= e {
                ((t1 - t2).exp(), 1.0, (e - t2).exp(), t2)
            } else {
                ((t1 - e).exp(), (t2 - e).exp(), 1.0, e)
            };
            let sum = w1 + w2 + w3;
            let r = m + sum.ln() - ln_l;
            total += huber(r, self.delta);
            if let Some(g) = grad.as_deref_mut() {
                let s = huber_slope(r, self.delta) / sum;
                g[0] += s * w1;
                g[1] += s * w2;
                g[2] += s * w3;
                g[3] -= s * w1 * ln_n;
                g[4] -= s * w2 * ln_d;
            }
        }
        total
    }
}

/// A point, the objective there, and its gradient.
type Evaluation = (Vec<f64>, f64, [f64; 5]);

/// A cap on the evaluations of one optimiser run, and the best point it has seen. The cap is
/// needed because argmin's L-BFGS runs its line search with no iteration limit, and on the
/// flat, kinked surfaces of a degenerate fit (an exponent near zero) More-Thuente can search
/// forever; when the cap is reached the run is stopped and the best point so far stands.
pub(crate) struct EvaluationBudget {
    left: Cell<u64>,
    best: RefCell<Option<(Vec<f64>, f64)>>,
}

impl EvaluationBudget {
    pub(crate) fn new(evaluations: u64) -> Self {
        Self {
            left: Cell::new(evaluations),
            best: RefCell::new(None),
        }
    }

    /// The point with the lowest finite objective evaluated so far.
    pub(crate) fn best(&self) -> Option<(Vec<f64>, f64)> {
        self.best.borrow().clone()
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.left.get() == 0
    }
}

/// One optimiser run's view of the objective. The line search asks for the value and then the
/// gradient at the same point, and L-BFGS asks for the gradient there once more; remembering the
/// last point evaluated turns those three passes over the data into one.
pub(crate) struct CachedObjective<'a> {
    inner: &'a HuberLogObjective,
    last: RefCell<Option<Evaluation>>,
    budget: &'a EvaluationBudget,
}

impl<'a> CachedObjective<'a> {
    pub(crate) fn new(inner: &'a HuberLogObjective, budget: &'a EvaluationBudget) -> Self {
        Self {
            inner,
            last: RefCell::new(None),
            budget,
        }
    }

    fn value_and_gradient(&self, theta: &[f64]) -> Result<(f64, [f64; 5]), Error> {
        if let Some((at, value, grad)) = self.last.borrow().as_ref() {
            if at.as_slice() == theta {
                return Ok((*value, *grad));
            }
        }
        let left = self.budget.left.get();
        if left == 0 {
            return Err(Error::msg("evaluation budget of the run exhausted"));
        }
        self.budget.left.set(left - 1);
        let mut grad = [0.0; 5];
        let value = self.inner.eval(theta, Some(&mut grad));
        let mut best = self.budget.best.borrow_mut();
        if value.is_finite()
            && theta.iter().all(|t| t.is_finite())
            && best.as_ref().is_none_or(|(_, b)| value < *b)
        {
            *best = Some((theta.to_vec(), value));
        }
        *self.last.borrow_mut() = Some((theta.to_vec(), value, grad));
        Ok((value, grad))
    }
}

impl CostFunction for CachedObjective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, Error> {
        Ok(self.value_and_gradient(theta)?.0)
    }
}

impl Gradient for CachedObjective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, Error> {
        Ok(self.value_and_gradient(theta)?.1.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<Point> {
        (0..12)
            .map(|i| {
                let n = 1e7 * 2f64.powi(i % 4);
                let d = 2e8 * 3f64.powi(i / 4);
                Point::new(n, d, 2.0 + 0.3 * ((i * 7 % 5) as f64) / 5.0)
            })
            .collect()
    }

    /// Where the gradient is checked, in `[ln A, ln B, ln E, alpha, beta]`: far from the data,
    /// as at a fit's start.
    const THETA: [f64; 5] = [5.0, 7.0, 0.5, 0.35, 0.3];

    /// Near the data, as late in a fit: residuals of a few hundredths, of both signs.
    const THETA_NEAR: [f64; 5] = [3.0, 4.5, 0.6, 0.35, 0.3];

    /// Each point's residual ln L(N, D) - ln loss, from the law written out directly rather
    /// than through the objective's log-sum-exp.
    fn residuals(points: &[Point], theta: &[f64; 5]) -> Vec<f64> {
        let [a, b, e, alpha, beta] = *theta;
        points
            .iter()
            .map(|p| {
                let law = e.exp() + a.exp() / p.n.powf(alpha) + b.exp() / p.d.powf(beta);
                law.ln() - p.loss.ln()
            })
            .collect()
    }

    fn assert_gradient_matches_finite_differences(obj: &HuberLogObjective, theta: &[f64; 5]) {
        let mut g = [0.0; 5];
        obj.eval(theta, Some(&mut g));
        for k in 0..5 {
            let h = 1e-6;
            let (mut up, mut down) = (*theta, *theta);
            up[k] += h;
            down[k] -= h;
            let fd = (obj.eval(&up, None) - obj.eval(&down, None)) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                "k={k}: {fd} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences_on_the_quadratic_branch() {
        let points = points();
        let delta = 10.0;
        let r = residuals(&points, &THETA);
        assert!(r.iter().all(|r| r.abs() < delta), "{r:?}");
        let obj = HuberLogObjective::new(&points, delta);
        // On the quadratic branch the objective is half the sum of squared residuals.
        let want: f64 = r.iter().map(|r| 0.5 * r * r).sum();
        let got = obj.eval(&THETA, None);
        assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");
        assert_gradient_matches_finite_differences(&obj, &THETA);
    }

    #[test]
    fn gradient_matches_finite_differences_on_the_linear_branch() {
        // The default delta, which real fits use: every residual here lies well beyond it, so
        // the check sees the clamped slope, not the quadratic one.
        let points = points();
        let delta = 1e-3;
        let r = residuals(&points, &THETA_NEAR);
        // Far enough from the kink that a step of 1e-6 in any coordinate cannot cross it.
        assert!(r.iter().all(|r| r.abs() > 5.0 * delta), "{r:?}");
        // Both signs, so both clamps are exercised.
        assert!(
            r.iter().any(|&r| r > 0.0) && r.iter().any(|&r| r < 0.0),
            "{r:?}"
        );
        let obj = HuberLogObjective::new(&points, delta);
        let want: f64 = r.iter().map(|r| delta * (r.abs() - 0.5 * delta)).sum();
        let got = obj.eval(&THETA_NEAR, None);
        assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");
        assert_gradient_matches_finite_differences(&obj, &THETA_NEAR);
    }
}
