//! One observation of a trained model: its size, its data, and the loss it reached.

use serde::{Deserialize, Serialize};

use super::error::{PointProblem, ScalingError};

/// A trained model's final loss. Units: `n` in parameters, `d` in tokens (not billions), `loss` in
/// whatever unit the caller measured (nats per token, or bits per byte as docs/MODEL.md
/// section 7 defines).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Model size in parameters.
    pub n: f64,
    /// Training data in tokens.
    pub d: f64,
    /// Final (held-out) loss.
    pub loss: f64,
}

impl Point {
    pub fn new(n: f64, d: f64, loss: f64) -> Self {
        Self { n, d, loss }
    }

    /// The first unusable value, if any: the law takes logarithms of all three, so each must be
    /// finite and strictly positive.
    pub fn problem(&self) -> Option<PointProblem> {
        [("params", self.n), ("tokens", self.d), ("loss", self.loss)]
            .into_iter()
            .find_map(|(field, value)| value_problem(field, value))
    }
}

/// Why a single value cannot enter a log-space fit, if it cannot.
pub(crate) fn value_problem(field: &'static str, value: f64) -> Option<PointProblem> {
    if !value.is_finite() {
        Some(PointProblem::NonFinite { field, value })
    } else if value <= 0.0 {
        Some(PointProblem::NonPositive { field, value })
    } else {
        None
    }
}

/// Checks every point and that there are at least `needed` of them, so fits can assume clean data.
pub fn validate(points: &[Point], needed: usize, what: &'static str) -> Result<(), ScalingError> {
    if let Some((index, problem)) = points
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.problem().map(|problem| (i, problem)))
    {
        return Err(ScalingError::BadPoint { index, problem });
    }
    if points.len() < needed {
        return Err(ScalingError::TooFewPoints {
            what,
            needed,
            got: points.len(),
        });
    }
    Ok(())
}

/// Drops the `k` points with the highest loss, keeping the others in their order. Besiroglu et al.
/// (2024) do this to the Chinchilla data before refitting: the highest losses belong to the
/// smallest, least-trained models, which sit far from the asymptotic law.
pub fn exclude_highest_loss(points: &[Point], k: usize) -> Vec<Point> {
    let mut by_loss: Vec<usize> = (0..points.len()).collect();
    by_loss.sort_by(|&i, &j| points[j].loss.total_cmp(&points[i].loss));
    let mut dropped = vec![false; points.len()];
    for &i in by_loss.iter().take(k) {
        dropped[i] = true;
    }
    points
        .iter()
        .zip(dropped)
        .filter_map(|(p, drop)| (!drop).then_some(*p))
        .collect()
}
