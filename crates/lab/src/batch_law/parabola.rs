//! The parabola through (batch size, tokens to reach a loss) in log space, whose vertex is the
//! batch size that reaches the loss with the fewest tokens: too small a batch wastes tokens on
//! noisy steps, too large a batch wastes them on redundant gradients. The least squares live in
//! [`crate::log_parabola`]; this file names the results in the batch law's terms and checks the
//! points. The paper's minima are interior; others are reported with their shape.

use serde::{Deserialize, Serialize};

use super::error::{count_distinct, value_problem, BatchLawError};
pub use crate::log_parabola::ParabolaShape;
use crate::log_parabola::{self, MIN_DISTINCT_X};

/// Three coefficients need three distinct batch sizes.
pub const PARABOLA_MIN_BATCH_SIZES: usize = MIN_DISTINCT_X;

/// A stationary point of the parabola, back in linear units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    /// Batch size, in tokens.
    pub batch_tokens: f64,
    /// Tokens to reach the loss at that batch size, as the parabola predicts.
    pub tokens: f64,
}

/// A fitted parabola ln(tokens) = a + b ln(bs) + c ln(bs)^2 (natural logs, bs and tokens in
/// tokens).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParabolaFit {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub shape: ParabolaShape,
    /// The stationary point: the minimum when c > 0, a maximum when c < 0, none when c == 0.
    pub vertex: Option<Vertex>,
    /// Smallest and largest batch size among the points, in tokens.
    pub batch_range: (f64, f64),
    pub n_points: usize,
    pub n_batch_sizes: usize,
    /// Residual sum of squares in ln(tokens); zero when the points lie on a parabola.
    pub rss: f64,
}

impl ParabolaFit {
    /// Tokens the parabola predicts to reach the loss at `batch_tokens`.
    pub fn predict(&self, batch_tokens: f64) -> f64 {
        let x = batch_tokens.ln();
        (self.a + self.b * x + self.c * x * x).exp()
    }

    /// The minimum, wherever it lies; `None` when the parabola opens downward.
    pub fn minimum(&self) -> Option<Vertex> {
        (self.shape != ParabolaShape::OpensDownward)
            .then_some(self.vertex)
            .flatten()
    }

    /// The minimum only when it lies within the batch sizes tried, as the paper's do.
    pub fn interior_minimum(&self) -> Option<Vertex> {
        (self.shape == ParabolaShape::Interior)
            .then_some(self.vertex)
            .flatten()
    }
}

/// Fits the parabola through `points`, pairs of (batch size, tokens to reach the loss), both in
/// tokens and positive. Repeated batch sizes (several seeds) are fine; at least three must differ.
pub fn fit_log_parabola(points: &[(f64, f64)]) -> Result<ParabolaFit, BatchLawError> {
    const WHAT: &str = "fitting the batch parabola";
    for (index, &(bs, tokens)) in points.iter().enumerate() {
        if let Some(problem) =
            value_problem("batch_tokens", bs).or_else(|| value_problem("tokens", tokens))
        {
            return Err(BatchLawError::BadPoint {
                what: WHAT,
                index,
                problem,
            });
        }
    }
    let n_batch_sizes = count_distinct(points.iter().map(|p| p.0));
    if n_batch_sizes < PARABOLA_MIN_BATCH_SIZES {
        return Err(BatchLawError::TooFewDistinct {
            what: WHAT,
            of: "batch sizes",
            needed: PARABOLA_MIN_BATCH_SIZES,
            got: n_batch_sizes,
        });
    }

    let fit = log_parabola::fit(points);
    Ok(ParabolaFit {
        a: fit.a,
        b: fit.b,
        c: fit.c,
        shape: fit.shape,
        vertex: fit.vertex.map(|(batch_tokens, tokens)| Vertex {
            batch_tokens,
            tokens,
        }),
        batch_range: fit.x_range,
        n_points: points.len(),
        n_batch_sizes,
        rss: fit.rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_of_one_batch_size_count_once_and_the_vertex_is_in_tokens() {
        // ln T = 20 - 2 x + 0.1 x^2 (x = ln bs), vertex at x = 10 with ln T = 10; two seeds per
        // batch size, 0.01 above and below the curve, leave the fit on the curve and 6 * 1e-4 of
        // residual.
        let mut points = Vec::new();
        for x in [8.0f64, 10.0, 12.0] {
            for noise in [0.01, -0.01] {
                points.push((x.exp(), (20.0 - 2.0 * x + 0.1 * x * x + noise).exp()));
            }
        }
        let fit = fit_log_parabola(&points).unwrap();
        assert_eq!((fit.n_points, fit.n_batch_sizes), (6, 3));
        assert!((fit.rss - 6e-4).abs() < 1e-12, "{}", fit.rss);
        let v = fit.interior_minimum().unwrap();
        assert!((v.batch_tokens.ln() - 10.0).abs() < 1e-9);
        assert!((v.tokens.ln() - 10.0).abs() < 1e-9);
        assert!((fit.batch_range.0.ln() - 8.0).abs() < 1e-12);
        assert!((fit.batch_range.1.ln() - 12.0).abs() < 1e-12);

        let two_sizes = &points[..4];
        assert!(matches!(
            fit_log_parabola(two_sizes),
            Err(BatchLawError::TooFewDistinct { got: 2, .. })
        ));
    }
}
