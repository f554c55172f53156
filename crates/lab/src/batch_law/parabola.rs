//! The parabola through (batch size, tokens to reach a loss) in log space, whose vertex is the
//! batch size that reaches the loss with the fewest tokens.
//!
//! ln(tokens) = a + b ln(bs) + c ln(bs)^2 is fitted by ordinary least squares. Too small a batch
//! wastes tokens on noisy steps, too large a batch wastes them on redundant gradients, and in log
//! space the cost around the optimum is close to symmetric, which is why the paper draws
//! parabolas. The fit is done in closed form through the normal equations, after centring and
//! scaling ln(bs) to [-1, 1]: raw ln(bs) sits near 12-16, whose powers up to the fourth would
//! make the normal equations badly conditioned, while on [-1, 1] they are tame for any sane
//! number of batch sizes.
//!
//! A parabola can open downward (c <= 0) or put its minimum outside the batch sizes tried, for
//! instance when the optimum was not bracketed or noise dominates. The fit reports that shape
//! rather than failing, so the caller decides what to do with such a minimum; the paper's are
//! interior.

use serde::{Deserialize, Serialize};

use super::error::{count_distinct, value_problem, BatchLawError};

/// Three coefficients need three distinct batch sizes; with more, the residual says how well the
/// parabola fits.
pub const PARABOLA_MIN_BATCH_SIZES: usize = 3;

/// A stationary point of the parabola, back in linear units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Vertex {
    /// Batch size, in tokens.
    pub batch_tokens: f64,
    /// Tokens to reach the loss at that batch size, as the parabola predicts.
    pub tokens: f64,
}

/// Where the parabola's vertex falls and whether it is a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParabolaShape {
    /// Opens upward with its minimum within the batch sizes tried (edges included).
    Interior,
    /// Opens upward, but the minimum lies below the smallest batch size tried: an extrapolation.
    MinimumBelowRange,
    /// Opens upward, but the minimum lies above the largest batch size tried: an extrapolation.
    MinimumAboveRange,
    /// c <= 0: no minimum; within the range, the fewest tokens are at one of its edges.
    OpensDownward,
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

    let x: Vec<f64> = points.iter().map(|p| p.0.ln()).collect();
    let y: Vec<f64> = points.iter().map(|p| p.1.ln()).collect();
    let x_min = x.iter().copied().fold(f64::INFINITY, f64::min);
    let x_max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let centre = 0.5 * (x_min + x_max);
    let half = 0.5 * (x_max - x_min);
    let u: Vec<f64> = x.iter().map(|&xi| (xi - centre) / half).collect();

    // Normal equations for y = p0 + p1 u + p2 u^2.
    let mut power_sums = [0.0; 5];
    let mut rhs = [0.0; 3];
    for (&ui, &yi) in u.iter().zip(&y) {
        let mut pow = 1.0;
        for (k, sum) in power_sums.iter_mut().enumerate() {
            *sum += pow;
            if k < 3 {
                rhs[k] += pow * yi;
            }
            pow *= ui;
        }
    }
    let mut matrix = [[0.0; 3]; 3];
    for (i, row) in matrix.iter_mut().enumerate() {
        for (j, entry) in row.iter_mut().enumerate() {
            *entry = power_sums[i + j];
        }
    }
    let p = solve3(matrix, rhs);

    let rss = u
        .iter()
        .zip(&y)
        .map(|(&ui, &yi)| (yi - (p[0] + p[1] * ui + p[2] * ui * ui)).powi(2))
        .sum();

    // Back to ln(bs): u = (x - centre) / half.
    let c = p[2] / (half * half);
    let b = p[1] / half - 2.0 * p[2] * centre / (half * half);
    let a = p[0] - p[1] * centre / half + p[2] * centre * centre / (half * half);

    // The vertex from the centred coefficients, where it is computed most accurately, and its
    // place in the range judged in u, where the range is [-1, 1]; the small tolerance keeps a
    // vertex that sits on an edge from being called outside by rounding.
    let u_star = -p[1] / (2.0 * p[2]);
    let vertex = (p[2] != 0.0).then(|| Vertex {
        batch_tokens: (centre + half * u_star).exp(),
        tokens: (p[0] - p[1] * p[1] / (4.0 * p[2])).exp(),
    });
    const EDGE_TOLERANCE: f64 = 1e-9;
    let shape = if p[2] <= 0.0 {
        ParabolaShape::OpensDownward
    } else if u_star < -1.0 - EDGE_TOLERANCE {
        ParabolaShape::MinimumBelowRange
    } else if u_star > 1.0 + EDGE_TOLERANCE {
        ParabolaShape::MinimumAboveRange
    } else {
        ParabolaShape::Interior
    };

    Ok(ParabolaFit {
        a,
        b,
        c,
        shape,
        vertex,
        batch_range: (x_min.exp(), x_max.exp()),
        n_points: points.len(),
        n_batch_sizes,
        rss,
    })
}

/// Solves a 3 x 3 system by Gaussian elimination with partial pivoting. The callers' systems are
/// non-singular (three distinct abscissae), so no singularity check is needed beyond that.
fn solve3(mut m: [[f64; 3]; 3], mut r: [f64; 3]) -> [f64; 3] {
    for col in 0..3 {
        let pivot = (col..3)
            .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        r.swap(col, pivot);
        for row in col + 1..3 {
            let factor = m[row][col] / m[col][col];
            let (above, below) = m.split_at_mut(row);
            for (entry, &pivot_entry) in below[0][col..].iter_mut().zip(&above[col][col..]) {
                *entry -= factor * pivot_entry;
            }
            r[row] -= factor * r[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
        x[row] = (r[row] - tail) / m[row][row];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve3_matches_a_hand_solved_system() {
        // x = 1, y = -2, z = 3; the first pivot must be swapped in (zero in the corner).
        let m = [[0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [2.0, -1.0, 3.0]];
        let r = [-1.0, 2.0, 13.0];
        let x = solve3(m, r);
        for (got, want) in x.iter().zip([1.0, -2.0, 3.0]) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
    }

    #[test]
    fn coefficients_in_log_bs_reproduce_the_points() {
        // ln T = 2 - 0.5 x + 0.25 x^2 with x = ln bs, at five batch sizes.
        let points: Vec<(f64, f64)> = [1.0f64, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .map(|&x| (x.exp(), (2.0 - 0.5 * x + 0.25 * x * x).exp()))
            .collect();
        let fit = fit_log_parabola(&points).unwrap();
        assert!((fit.a - 2.0).abs() < 1e-10);
        assert!((fit.b + 0.5).abs() < 1e-10);
        assert!((fit.c - 0.25).abs() < 1e-10);
        assert!(fit.rss < 1e-20);
        // Vertex at x = 1, ln T = 2 - 0.25.
        let v = fit.interior_minimum().unwrap();
        assert!((v.batch_tokens.ln() - 1.0).abs() < 1e-12);
        assert!((v.tokens.ln() - 1.75).abs() < 1e-12);
        assert!((fit.predict(3f64.exp()).ln() - (2.0 - 1.5 + 2.25)).abs() < 1e-10);
    }
}
