//! Single-run envelopes: how one run's loss falls with the compute spent so far, fitted both as a
//! power law L(C) = a C^-b + c and as an exponential L(C) = a exp(-b C) + c, so one can tell
//! which describes the run better.
//!
//! Both are least squares on the loss itself (not its log), so their residual sums of squares are
//! in the same units and, with three parameters each, directly comparable. For a fixed b each
//! model is linear in (a, c); the fit therefore searches b alone (a log-spaced scan, then a
//! golden-section refinement) and solves (a, c) in closed form, which needs no starting guess.

use serde::{Deserialize, Serialize};

use super::error::ScalingError;
use super::point::value_problem;
use super::univariate::golden_section_min;

/// Three parameters per form, plus one point so the residual sum of squares says something.
pub const ENVELOPE_MIN_POINTS: usize = 4;

/// One point on a run's curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Compute spent so far, in FLOPs (any positive unit works; the parameters follow it).
    pub compute: f64,
    pub loss: f64,
}

/// The two candidate shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvelopeForm {
    /// L(C) = a C^-b + c.
    PowerLaw,
    /// L(C) = a exp(-b C) + c.
    Exponential,
}

/// One fitted envelope; a, b and c are in the units of the input compute and loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeFit {
    pub form: EnvelopeForm,
    pub a: f64,
    pub b: f64,
    pub c: f64,
    /// Residual sum of squares in loss units.
    pub rss: f64,
}

impl EnvelopeFit {
    pub fn predict(&self, compute: f64) -> f64 {
        match self.form {
            EnvelopeForm::PowerLaw => self.a * compute.powf(-self.b) + self.c,
            EnvelopeForm::Exponential => self.a * (-self.b * compute).exp() + self.c,
        }
    }
}

/// Both fits and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeComparison {
    pub power_law: EnvelopeFit,
    pub exponential: EnvelopeFit,
    /// The form with the smaller residual sum of squares.
    pub better: EnvelopeForm,
    pub n_points: usize,
}

/// Fits both forms to a run's curve and says which fits better.
pub fn fit_envelope(points: &[CurvePoint]) -> Result<EnvelopeComparison, ScalingError> {
    let power_law = fit_envelope_form(points, EnvelopeForm::PowerLaw)?;
    let exponential = fit_envelope_form(points, EnvelopeForm::Exponential)?;
    let better = if power_law.rss <= exponential.rss {
        EnvelopeForm::PowerLaw
    } else {
        EnvelopeForm::Exponential
    };
    Ok(EnvelopeComparison {
        power_law,
        exponential,
        better,
        n_points: points.len(),
    })
}

/// Fits one form by least squares on the loss.
pub fn fit_envelope_form(
    points: &[CurvePoint],
    form: EnvelopeForm,
) -> Result<EnvelopeFit, ScalingError> {
    check(points)?;
    // Work with x = C / C_max in (0, 1]: FLOP counts near 1e20 would otherwise push exp(-b C)
    // and C^-b to the edge of floating point.
    let scale = points.iter().map(|p| p.compute).fold(0.0, f64::max);
    let x: Vec<f64> = points.iter().map(|p| p.compute / scale).collect();
    let y: Vec<f64> = points.iter().map(|p| p.loss).collect();
    let basis = |b: f64, xi: f64| match form {
        EnvelopeForm::PowerLaw => xi.powf(-b),
        EnvelopeForm::Exponential => (-b * xi).exp(),
    };
    // Exponents of C^-b beyond ~10 or rates beyond ~1e4 (in scaled units) are not curves anyone
    // would call an envelope; the lower ends make the shape nearly linear.
    let (lo, hi) = match form {
        EnvelopeForm::PowerLaw => (1e-4f64, 10.0f64),
        EnvelopeForm::Exponential => (1e-3f64, 1e4f64),
    };
    let rss_at =
        |ln_b: f64| linear_part(&x, &y, |xi| basis(ln_b.exp(), xi)).map_or(f64::INFINITY, |f| f.2);

    let steps = 400;
    let grid: Vec<f64> = (0..=steps)
        .map(|i| lo.ln() + (hi.ln() - lo.ln()) * i as f64 / steps as f64)
        .collect();
    let (best, _) = grid
        .iter()
        .enumerate()
        .map(|(i, &g)| (i, rss_at(g)))
        .min_by(|p, q| p.1.total_cmp(&q.1))
        .ok_or(ScalingError::NoConvergence {
            what: "fitting an envelope",
        })?;
    let left = grid[best.saturating_sub(1)];
    let right = grid[(best + 1).min(steps)];
    let refined = golden_section_min(rss_at, left, right, grid[best]);
    // The refinement assumes one minimum between the neighbours; keep the scan's point if not.
    let ln_b = match refined {
        Some(x) if rss_at(x) <= rss_at(grid[best]) => x,
        _ => grid[best],
    };
    let b_scaled = ln_b.exp();
    let (a, c, rss) = linear_part(&x, &y, |xi| basis(b_scaled, xi))
        .filter(|f| f.2.is_finite())
        .ok_or(ScalingError::NoConvergence {
            what: "fitting an envelope",
        })?;
    // Back to the caller's units: a (x)^-b = a C_max^b C^-b, and exp(-b x) = exp(-(b / C_max) C).
    let (a, b) = match form {
        EnvelopeForm::PowerLaw => (a * scale.powf(b_scaled), b_scaled),
        EnvelopeForm::Exponential => (a, b_scaled / scale),
    };
    Ok(EnvelopeFit { form, a, b, c, rss })
}

fn check(points: &[CurvePoint]) -> Result<(), ScalingError> {
    for (index, p) in points.iter().enumerate() {
        let problem = value_problem("compute", p.compute).or_else(|| value_problem("loss", p.loss));
        if let Some(problem) = problem {
            return Err(ScalingError::BadPoint { index, problem });
        }
    }
    if points.len() < ENVELOPE_MIN_POINTS {
        return Err(ScalingError::TooFewPoints {
            what: "fitting an envelope",
            needed: ENVELOPE_MIN_POINTS,
            got: points.len(),
        });
    }
    Ok(())
}

/// Ordinary least squares of y = a f(x) + c: returns (a, c, rss), or `None` when f is (nearly)
/// constant over the points and a is not identified.
fn linear_part(x: &[f64], y: &[f64], f: impl Fn(f64) -> f64) -> Option<(f64, f64, f64)> {
    let n = x.len() as f64;
    let fx: Vec<f64> = x.iter().map(|&xi| f(xi)).collect();
    let mean_f = fx.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sff, mut sfy) = (0.0, 0.0);
    for (&fi, &yi) in fx.iter().zip(y) {
        sff += (fi - mean_f) * (fi - mean_f);
        sfy += (fi - mean_f) * (yi - mean_y);
    }
    if !(sff.is_finite() && sff > 1e-300 && sff > 1e-24 * mean_f * mean_f * n) {
        return None;
    }
    let a = sfy / sff;
    let c = mean_y - a * mean_f;
    let rss = fx
        .iter()
        .zip(y)
        .map(|(&fi, &yi)| (yi - a * fi - c).powi(2))
        .sum();
    Some((a, c, rss))
}
