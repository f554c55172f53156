//! The law through the optima: bs_opt = a / L^b, fitted as the straight line
//! ln(bs_opt) = ln(a) - b ln(L) by ordinary least squares.
//!
//! Least squares in log space weighs every optimum by its relative error, which is how the
//! optima scatter (a parabola's vertex is uncertain by a factor, not by a number of tokens), and
//! it is how the paper draws its line. The intervals are the textbook ones for a straight line:
//! standard errors from the residual variance with n - 2 degrees of freedom and Student's t
//! quantile, which is what makes them honest with the handful of points such studies have.

use serde::{Deserialize, Serialize};

use super::error::{count_distinct, value_problem, BatchLawError};
use super::student_t::student_t_quantile;

/// Two parameters plus one degree of freedom to estimate the scatter from.
pub const POWER_LAW_MIN_POINTS: usize = 3;

/// The confidence level of every interval reported.
const CONFIDENCE: f64 = 0.95;

/// A fitted quantity with its standard error and confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub std_error: f64,
    /// Lower end of the confidence interval (value - t * std_error).
    pub low: f64,
    /// Upper end of the confidence interval (value + t * std_error).
    pub high: f64,
}

impl Estimate {
    fn new(value: f64, std_error: f64, t: f64) -> Self {
        Self {
            value,
            std_error,
            low: value - t * std_error,
            high: value + t * std_error,
        }
    }

    /// Whether `x` lies in the confidence interval (ends included).
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// bs_opt = a / L^b with its uncertainty; a is in the batch's unit (tokens), L as given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerLawFit {
    /// The coefficient a = exp(ln a).
    pub a: f64,
    /// The exponent b.
    pub b: Estimate,
    /// ln(a), the fitted intercept; its interval is symmetric here, not in a.
    pub ln_a: Estimate,
    /// The interval of a itself: the exponentials of ln a's ends.
    pub a_interval: (f64, f64),
    /// Covariance of the estimates of ln(a) and b, needed for the uncertainty of a prediction.
    pub cov_ln_a_b: f64,
    /// Coefficient of determination of the line in log space.
    pub r_squared: f64,
    /// Residual standard deviation in ln(bs_opt): the typical factor e^s by which optima miss.
    pub residual_std: f64,
    pub n_points: usize,
    /// Residual degrees of freedom, n - 2.
    pub dof: usize,
    /// Confidence level of the intervals (0.95).
    pub confidence: f64,
    /// The t quantile the intervals use, t_{(1 + confidence) / 2, dof}.
    pub t_quantile: f64,
}

impl PowerLawFit {
    /// The optimal batch size (in tokens) the law predicts for a loss.
    pub fn predict(&self, loss: f64) -> f64 {
        self.a / loss.powf(self.b.value)
    }
}

/// Fits bs_opt = a / L^b through `points`, pairs of (loss, optimal batch size in tokens), both
/// positive. Needs at least three points and two distinct losses.
pub fn fit_power_law(points: &[(f64, f64)]) -> Result<PowerLawFit, BatchLawError> {
    const WHAT: &str = "fitting bs_opt = a / L^b";
    for (index, &(loss, bs)) in points.iter().enumerate() {
        if let Some(problem) = value_problem("loss", loss).or_else(|| value_problem("bs_opt", bs)) {
            return Err(BatchLawError::BadPoint {
                what: WHAT,
                index,
                problem,
            });
        }
    }
    let n = points.len();
    if n < POWER_LAW_MIN_POINTS {
        return Err(BatchLawError::TooFewPoints {
            what: WHAT,
            needed: POWER_LAW_MIN_POINTS,
            got: n,
        });
    }
    let distinct = count_distinct(points.iter().map(|p| p.0));
    if distinct < 2 {
        return Err(BatchLawError::TooFewDistinct {
            what: WHAT,
            of: "losses",
            needed: 2,
            got: distinct,
        });
    }

    let x: Vec<f64> = points.iter().map(|p| p.0.ln()).collect();
    let y: Vec<f64> = points.iter().map(|p| p.1.ln()).collect();
    let nf = n as f64;
    let mean_x = x.iter().sum::<f64>() / nf;
    let mean_y = y.iter().sum::<f64>() / nf;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (&xi, &yi) in x.iter().zip(&y) {
        sxx += (xi - mean_x) * (xi - mean_x);
        sxy += (xi - mean_x) * (yi - mean_y);
        syy += (yi - mean_y) * (yi - mean_y);
    }
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let rss: f64 = x
        .iter()
        .zip(&y)
        .map(|(&xi, &yi)| (yi - intercept - slope * xi).powi(2))
        .sum();

    let dof = n - 2;
    let variance = rss / dof as f64;
    let se_slope = (variance / sxx).sqrt();
    let se_intercept = (variance * (1.0 / nf + mean_x * mean_x / sxx)).sqrt();
    let t = student_t_quantile(0.5 * (1.0 + CONFIDENCE), dof as f64)
        .expect("the confidence level is inside (0, 1) and dof >= 1");

    let ln_a = Estimate::new(intercept, se_intercept, t);
    // b = -slope: the same standard error, and cov(ln a, b) = -cov(intercept, slope).
    let b = Estimate::new(-slope, se_slope, t);
    Ok(PowerLawFit {
        a: intercept.exp(),
        b,
        a_interval: (ln_a.low.exp(), ln_a.high.exp()),
        ln_a,
        cov_ln_a_b: mean_x * variance / sxx,
        // All optima equal leaves nothing to explain; the (flat) line then fits them exactly.
        r_squared: if syy > 0.0 { 1.0 - rss / syy } else { 1.0 },
        residual_std: variance.sqrt(),
        n_points: n,
        dof,
        confidence: CONFIDENCE,
        t_quantile: t,
    })
}
