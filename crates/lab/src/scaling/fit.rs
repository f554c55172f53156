//! Fitting L(N, D) = E + A / N^alpha + B / D^beta the way Besiroglu et al. (2024) refitted
//! Chinchilla: Huber loss on log loss, L-BFGS from every point of a grid, best result kept.
//! The objective is non-convex with long flat valleys (A and alpha trade off), so a single start
//! lands in whichever basin is nearest; the grid is what makes the answer reproducible.

use argmin::core::{Executor, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::ScalingError;
use super::law::LawParams;
use super::objective::{CachedObjective, EvaluationBudget, HuberLogObjective};
use super::point::{validate, Point};

/// Five free parameters: with fewer points the law interpolates anything.
pub const LAW_PARAMS: usize = 5;

/// Starting values for each optimiser coordinate; every combination is one start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartGrid {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    /// ln E.
    pub e: Vec<f64>,
    /// ln A.
    pub a: Vec<f64>,
    /// ln B.
    pub b: Vec<f64>,
}

impl StartGrid {
    /// The grid of Besiroglu et al. (2024): alpha, beta in {0, .5, ..., 2}, ln E in {-1, ..., 1.5},
    /// ln A, ln B in {0, 5, ..., 25}; 5400 starts.
    pub fn besiroglu() -> Self {
        let steps = |from: f64, step: f64, count: usize| -> Vec<f64> {
            (0..count).map(|i| from + step * i as f64).collect()
        };
        Self {
            alpha: steps(0.0, 0.5, 5),
            beta: steps(0.0, 0.5, 5),
            e: steps(-1.0, 0.5, 6),
            a: steps(0.0, 5.0, 6),
            b: steps(0.0, 5.0, 6),
        }
    }

    /// A grid with no starts, for callers who supply their own starts (e.g. the bootstrap).
    pub fn empty() -> Self {
        Self {
            alpha: vec![],
            beta: vec![],
            e: vec![],
            a: vec![],
            b: vec![],
        }
    }

    /// Number of starts.
    pub fn len(&self) -> usize {
        self.alpha.len() * self.beta.len() * self.e.len() * self.a.len() * self.b.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every start in optimiser coordinates `[ln A, ln B, ln E, alpha, beta]`.
    pub(crate) fn starts(&self) -> Vec<[f64; 5]> {
        let mut out = Vec::with_capacity(self.len());
        for &alpha in &self.alpha {
            for &beta in &self.beta {
                for &e in &self.e {
                    for &a in &self.a {
                        for &b in &self.b {
                            out.push([a, b, e, alpha, beta]);
                        }
                    }
                }
            }
        }
        out
    }
}

/// How to fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Huber threshold on the log-loss residual; 1e-3 as in Chinchilla and its replication.
    pub huber_delta: f64,
    /// Starting points of L-BFGS.
    pub grid: StartGrid,
    /// Iteration cap of each L-BFGS run.
    pub max_iters: u64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            huber_delta: 1e-3,
            grid: StartGrid::besiroglu(),
            max_iters: 1000,
        }
    }
}

impl FitConfig {
    fn check(&self) -> Result<(), ScalingError> {
        if !(self.huber_delta.is_finite() && self.huber_delta > 0.0) {
            return Err(ScalingError::InvalidConfig(format!(
                "Huber delta must be positive and finite, got {}",
                self.huber_delta
            )));
        }
        if self.max_iters == 0 {
            return Err(ScalingError::InvalidConfig(
                "max_iters must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The best fit found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LawFit {
    pub params: LawParams,
    /// Sum of Huber(delta) of the log-loss residuals at `params`.
    pub objective: f64,
    pub huber_delta: f64,
    /// Points fitted.
    pub n_points: usize,
    /// Starts tried, and how many ended at a finite objective.
    pub starts: usize,
    pub finite_starts: usize,
}

/// Fits the law to `points` from every start of `config.grid`.
pub fn fit_law(points: &[Point], config: &FitConfig) -> Result<LawFit, ScalingError> {
    if config.grid.is_empty() {
        return Err(ScalingError::InvalidConfig(
            "the start grid is empty".into(),
        ));
    }
    fit_points(points, config, &config.grid.starts(), true)
}

/// Fits from explicit starts (optimiser coordinates), after checking points and config; runs
/// the starts on all cores when `parallel` (callers already running fits in parallel say no).
pub(crate) fn fit_points(
    points: &[Point],
    config: &FitConfig,
    starts: &[[f64; 5]],
    parallel: bool,
) -> Result<LawFit, ScalingError> {
    config.check()?;
    validate(points, LAW_PARAMS, "fitting L(N, D)")?;
    let objective = HuberLogObjective::new(points, config.huber_delta);
    let run = |start: &[f64; 5]| minimise(&objective, start, config.max_iters);
    let results: Vec<_> = if parallel {
        starts.par_iter().map(run).collect()
    } else {
        starts.iter().map(run).collect()
    };
    let finite: Vec<_> = results.into_iter().flatten().collect();
    let finite_starts = finite.len();
    let (theta, value) = finite
        .into_iter()
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .ok_or(ScalingError::NoConvergence {
            what: "fitting L(N, D)",
        })?;
    Ok(LawFit {
        params: LawParams::from_theta(&theta),
        objective: value,
        huber_delta: config.huber_delta,
        n_points: points.len(),
        starts: starts.len(),
        finite_starts,
    })
}

/// Objective evaluations allowed per L-BFGS iteration, on average, before a run is cut short
/// (see [`EvaluationBudget`]): a healthy iteration takes one to a few.
const EVALUATIONS_PER_ITERATION: u64 = 20;

/// One L-BFGS run; `None` when it fails or ends somewhere non-finite. A line search that cannot
/// progress (common on the kinks of the Huber loss) ends the run with its best point so far, and
/// so does a run that spends its evaluation budget.
fn minimise(
    objective: &HuberLogObjective,
    start: &[f64; 5],
    max_iters: u64,
) -> Option<(Vec<f64>, f64)> {
    let budget = EvaluationBudget::new(max_iters.saturating_mul(EVALUATIONS_PER_ITERATION));
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10);
    let outcome = Executor::new(CachedObjective::new(objective, &budget), solver)
        .configure(|s| s.param(start.to_vec()).max_iters(max_iters))
        .timer(false)
        .run();
    let theta = match outcome {
        Ok(result) => result.state().get_best_param()?.clone(),
        Err(_) if budget.exhausted() => budget.best()?.0,
        Err(_) => return None,
    };
    let value = objective.eval(&theta, None);
    (value.is_finite() && theta.iter().all(|t| t.is_finite())).then_some((theta, value))
}
