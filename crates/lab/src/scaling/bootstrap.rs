//! Bootstrap confidence intervals for the law's parameters: refit on resamples of the points
//! (drawn with replacement) and take percentiles of each parameter.
//!
//! A resample's optimum is usually close to the full-data one, so each refit starts from the
//! full-data optimum plus a small grid rather than the full 5400-start grid; that keeps 100
//! resamples cheaper than the original fit while still letting a resample move to another basin.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::ScalingError;
use super::fit::{fit_points, FitConfig, LawFit, StartGrid};
use super::law::{LawParams, PerParam};
use super::point::Point;

/// How to bootstrap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples.
    pub resamples: usize,
    /// Seed of the resampling, so intervals are reproducible.
    pub seed: u64,
    /// Starts tried besides the full-data optimum.
    pub extra_starts: StartGrid,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 100,
            seed: 0,
            extra_starts: StartGrid {
                alpha: vec![0.25, 0.75],
                beta: vec![0.25, 0.75],
                e: vec![0.5],
                a: vec![5.0, 10.0],
                b: vec![5.0, 10.0],
            },
        }
    }
}

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Percentile intervals of each parameter over the resamples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapIntervals {
    /// Resamples drawn, and how many of them could not be fitted (left out of the percentiles).
    pub resamples: usize,
    pub failed: usize,
    pub seed: u64,
    /// Lower and upper percentiles used (2.5 and 97.5: a 95% interval).
    pub percentiles: (f64, f64),
    pub intervals: PerParam<Interval>,
}

/// Bootstraps `fit`, the fit of `points` under `config`.
pub fn bootstrap(
    points: &[Point],
    fit: &LawFit,
    config: &FitConfig,
    bootstrap: &BootstrapConfig,
) -> Result<BootstrapIntervals, ScalingError> {
    if bootstrap.resamples < 2 {
        return Err(ScalingError::InvalidConfig(format!(
            "the bootstrap needs at least 2 resamples, got {}",
            bootstrap.resamples
        )));
    }
    let mut starts = vec![fit.params.to_theta()];
    starts.extend(bootstrap.extra_starts.starts());

    // Draw every resample up front, in order, so the result does not depend on threading.
    let mut rng = ChaCha8Rng::seed_from_u64(bootstrap.seed);
    let samples: Vec<Vec<Point>> = (0..bootstrap.resamples)
        .map(|_| {
            (0..points.len())
                .map(|_| points[rng.random_range(0..points.len())])
                .collect()
        })
        .collect();
    // Results come back in the order of the samples, whatever the scheduling.
    let outcomes: Vec<_> = samples
        .par_iter()
        .map(|sample| fit_points(sample, config, &starts, false))
        .collect();
    let mut fits: Vec<LawParams> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        match outcome {
            Ok(f) => fits.push(f.params),
            // A degenerate resample is a property of that draw, not of the data: count it.
            Err(ScalingError::NoConvergence { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    let failed = bootstrap.resamples - fits.len();
    if fits.len() < 2 {
        return Err(ScalingError::NoConvergence {
            what: "bootstrapping L(N, D)",
        });
    }
    let percentiles = (2.5, 97.5);
    let intervals = PerParam::from_fn(|get| {
        let mut values: Vec<f64> = fits.iter().map(get).collect();
        values.sort_by(f64::total_cmp);
        Interval {
            low: percentile(&values, percentiles.0),
            high: percentile(&values, percentiles.1),
        }
    });
    Ok(BootstrapIntervals {
        resamples: bootstrap.resamples,
        failed,
        seed: bootstrap.seed,
        percentiles,
        intervals,
    })
}

/// The `q`-th percentile of sorted values, interpolating linearly between ranks (NumPy's
/// default), so small resample counts still give smooth bounds.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert!((percentile(&v, 2.5) - 1.1).abs() < 1e-12);
        assert!((percentile(&v, 97.5) - 4.9).abs() < 1e-12);
    }
}
