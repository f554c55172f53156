//! A parabola through points in log-log space, ln y = a + b ln x + c (ln x)^2, by ordinary least
//! squares; its vertex is where y is smallest. Two fits in the lab have this shape: the tokens a
//! batch size needs to reach a loss (the batch-size law) and the loss a model size reaches at a
//! fixed compute (iso-FLOP profiles). Around an optimum both costs are close to symmetric in log
//! space, which is why the paper and Chinchilla draw parabolas.
//!
//! The fit is done in closed form through the normal equations, after centring and scaling ln x to
//! [-1, 1]: raw ln x sits near 12-16 for token counts, whose powers up to the fourth would make the
//! normal equations badly conditioned, while on [-1, 1] they are tame for any sane number of
//! points.
//!
//! A parabola can open downward (c <= 0) or put its minimum outside the x tried, for instance
//! when the optimum was not bracketed or noise dominates. The fit reports that shape rather than
//! failing, so the caller decides what such a minimum is worth.

use serde::{Deserialize, Serialize};

/// Three coefficients need three distinct x; with more, the residual says how well the parabola
/// fits.
pub const MIN_DISTINCT_X: usize = 3;

/// Where the parabola's vertex falls and whether it is a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParabolaShape {
    /// Opens upward with its minimum within the x tried (edges included).
    Interior,
    /// Opens upward, but the minimum lies below the smallest x tried: an extrapolation.
    MinimumBelowRange,
    /// Opens upward, but the minimum lies above the largest x tried: an extrapolation.
    MinimumAboveRange,
    /// c <= 0: no minimum; within the range, the smallest y is at one of its edges.
    OpensDownward,
}

impl ParabolaShape {
    /// In words, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            ParabolaShape::Interior => "minimum within the range",
            ParabolaShape::MinimumBelowRange => "minimum below the range",
            ParabolaShape::MinimumAboveRange => "minimum above the range",
            ParabolaShape::OpensDownward => "no minimum (opens downward)",
        }
    }
}

/// A fitted ln y = a + b ln x + c (ln x)^2 (natural logs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogParabola {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub shape: ParabolaShape,
    /// The stationary point (x, y): the minimum when c > 0, a maximum when c < 0, none when
    /// c == 0.
    pub vertex: Option<(f64, f64)>,
    /// Smallest and largest x among the points.
    pub x_range: (f64, f64),
    /// Residual sum of squares in ln y; zero when the points lie on a parabola.
    pub rss: f64,
}

impl LogParabola {
    /// y at `x`, as the parabola predicts.
    pub fn predict(&self, x: f64) -> f64 {
        let u = x.ln();
        (self.a + self.b * u + self.c * u * u).exp()
    }
}

/// Fits the parabola through `points` (x, y). The caller has checked that every value is finite
/// and positive and that at least [`MIN_DISTINCT_X`] of the x differ; repeated x are fine.
pub fn fit(points: &[(f64, f64)]) -> LogParabola {
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

    // Back to ln x: u = (ln x - centre) / half.
    let c = p[2] / (half * half);
    let b = p[1] / half - 2.0 * p[2] * centre / (half * half);
    let a = p[0] - p[1] * centre / half + p[2] * centre * centre / (half * half);

    // The vertex from the centred coefficients, where it is computed most accurately, and its
    // place in the range judged in u, where the range is [-1, 1]; the small tolerance keeps a
    // vertex that sits on an edge from being called outside by rounding.
    let u_star = -p[1] / (2.0 * p[2]);
    let vertex = (p[2] != 0.0).then(|| {
        (
            (centre + half * u_star).exp(),
            (p[0] - p[1] * p[1] / (4.0 * p[2])).exp(),
        )
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

    LogParabola {
        a,
        b,
        c,
        shape,
        vertex,
        x_range: (x_min.exp(), x_max.exp()),
        rss,
    }
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
    fn coefficients_in_log_x_reproduce_the_points() {
        // ln y = 2 - 0.5 u + 0.25 u^2 with u = ln x, at five x.
        let points: Vec<(f64, f64)> = [1.0f64, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .map(|&u| (u.exp(), (2.0 - 0.5 * u + 0.25 * u * u).exp()))
            .collect();
        let p = fit(&points);
        assert!((p.a - 2.0).abs() < 1e-10);
        assert!((p.b + 0.5).abs() < 1e-10);
        assert!((p.c - 0.25).abs() < 1e-10);
        assert!(p.rss < 1e-20);
        assert_eq!(p.shape, ParabolaShape::Interior);
        // Vertex at u = 1, ln y = 2 - 0.25.
        let (x, y) = p.vertex.unwrap();
        assert!((x.ln() - 1.0).abs() < 1e-12);
        assert!((y.ln() - 1.75).abs() < 1e-12);
        assert!((p.predict(3f64.exp()).ln() - (2.0 - 1.5 + 2.25)).abs() < 1e-10);
    }
}
