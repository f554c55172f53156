//! The whole batch-size study over a set of runs: crossings, one parabola per (model size, target
//! loss), and the law through their minima, gathered in one serialisable report that keeps every
//! point used and says why each skipped pair was skipped, so a surprising law can be traced back
//! to the runs behind it.

use serde::{Deserialize, Serialize};

use super::crossing::{find_crossing, Crossing};
use super::error::{count_distinct, value_problem, BatchLawError};
use super::parabola::{
    fit_log_parabola, ParabolaFit, ParabolaShape, Vertex, PARABOLA_MIN_BATCH_SIZES,
};
use super::power_law::{fit_power_law, PowerLawFit, POWER_LAW_MIN_POINTS};

/// One training run of the sweep: a model size trained with one batch size at a fixed learning
/// rate, and its held-out loss curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRun {
    /// Names the model size; runs with the same label are one size.
    pub size_label: String,
    /// Parameter count of that size (reported, and checked to agree within a label).
    pub params: f64,
    /// Batch size in tokens (sequences times sequence length).
    pub batch_tokens: f64,
    /// (tokens consumed, held-out loss) at each evaluation, in increasing order of tokens.
    pub curve: Vec<(f64, f64)>,
}

/// Choices the caller makes about what enters the law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchLawConfig {
    /// Let minima that lie outside the batch sizes tried into the law. Off by default: the
    /// paper's minima are interior, and an extrapolated vertex is set by the curvature of a
    /// parabola fitted away from it, so it can be far off.
    pub use_minima_outside_range: bool,
}

/// A run that reached a target, as a point of the parabola.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReachPoint {
    /// Index of the run in the input.
    pub run: usize,
    pub batch_tokens: f64,
    /// Tokens consumed when the run first reached the target.
    pub tokens: f64,
}

/// A run that gave no point for a target, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MissedRun {
    pub run: usize,
    pub batch_tokens: f64,
    pub crossing: Crossing,
}

/// Why a (size, target) pair contributes no point to the law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// Too few distinct batch sizes reached the target to fit a parabola.
    TooFewBatchSizesReached { got: usize, needed: usize },
    /// The parabola has no minimum.
    OpensDownward,
    /// The minimum lies below the smallest batch size tried (and extrapolations were not asked for).
    MinimumBelowRange,
    /// The minimum lies above the largest batch size tried (and extrapolations were not asked for).
    MinimumAboveRange,
}

/// One model size at one target loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCell {
    pub target: f64,
    /// The points of the parabola, one per run that reached the target, in input order.
    pub reached: Vec<ReachPoint>,
    pub missed: Vec<MissedRun>,
    /// The parabola, when enough batch sizes reached the target to fit one.
    pub parabola: Option<ParabolaFit>,
    /// The minimum that enters the law, if one does.
    pub optimum: Option<Vertex>,
    /// Why no minimum enters the law, if none does.
    pub skipped: Option<SkipReason>,
}

/// Everything about one model size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeReport {
    pub size_label: String,
    pub params: f64,
    /// The distinct batch sizes tried, ascending, in tokens.
    pub batch_sizes: Vec<f64>,
    /// Indices of this size's runs in the input.
    pub runs: Vec<usize>,
    /// One cell per target, in the order the targets were given.
    pub cells: Vec<TargetCell>,
}

/// One optimum on the law's line, with how far the fitted law misses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LawPoint {
    pub size_label: String,
    pub params: f64,
    pub loss: f64,
    /// The parabola's minimum: the batch size (tokens) reaching `loss` with the fewest tokens.
    pub bs_opt: f64,
    /// The fewest tokens, as the parabola predicts at its minimum.
    pub tokens_min: f64,
    /// The minimum lies outside the batch sizes tried (only when the config lets such in).
    pub extrapolated: bool,
    /// The law's bs_opt at this loss.
    pub predicted_bs_opt: f64,
    /// ln(bs_opt) - ln(predicted): the residual the fit minimises.
    pub log_residual: f64,
}

/// The whole study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchLawReport {
    /// The units of every number, spelled out because a changes with them.
    pub units: String,
    pub config: BatchLawConfig,
    pub targets: Vec<f64>,
    pub sizes: Vec<SizeReport>,
    /// The optima the law was fitted through, by size then target.
    pub law_points: Vec<LawPoint>,
    pub law: PowerLawFit,
}

impl BatchLawReport {
    pub fn to_json(&self) -> Result<String, BatchLawError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// [`fit_batch_law_with`] with the default config: only interior minima enter the law.
pub fn fit_batch_law(runs: &[BatchRun], targets: &[f64]) -> Result<BatchLawReport, BatchLawError> {
    fit_batch_law_with(runs, targets, &BatchLawConfig::default())
}

/// Fits the batch-size law: for every model size and target loss, the tokens each run needed to
/// reach the target, a parabola through them in log space and its minimum; then bs_opt = a / L^b
/// through all minima.
///
/// Fails on unusable input (naming the run, point or target), on a size with fewer than three
/// batch sizes, when no (size, target) pair has three batch sizes reaching the target, and when
/// fewer than three minima survive for the law.
pub fn fit_batch_law_with(
    runs: &[BatchRun],
    targets: &[f64],
    config: &BatchLawConfig,
) -> Result<BatchLawReport, BatchLawError> {
    check_targets(targets)?;
    check_runs(runs)?;
    let groups = group_by_size(runs)?;

    let mut sizes = Vec::with_capacity(groups.len());
    for (label, params, members) in groups {
        let batch_sizes = distinct_sorted(members.iter().map(|&i| runs[i].batch_tokens));
        if batch_sizes.len() < PARABOLA_MIN_BATCH_SIZES {
            return Err(BatchLawError::TooFewBatchSizes {
                size: label,
                needed: PARABOLA_MIN_BATCH_SIZES,
                got: batch_sizes.len(),
            });
        }
        let cells = targets
            .iter()
            .map(|&target| cell(runs, &members, target, config))
            .collect::<Result<Vec<_>, _>>()?;
        sizes.push(SizeReport {
            size_label: label,
            params,
            batch_sizes,
            runs: members,
            cells,
        });
    }

    let cells = || sizes.iter().flat_map(|s| s.cells.iter());
    if cells().all(|c| c.parabola.is_none()) {
        return Err(BatchLawError::NoTargetReached {
            needed: PARABOLA_MIN_BATCH_SIZES,
        });
    }

    let mut law_points: Vec<LawPoint> = Vec::new();
    for size in &sizes {
        for c in &size.cells {
            if let (Some(optimum), Some(parabola)) = (c.optimum, c.parabola) {
                law_points.push(LawPoint {
                    size_label: size.size_label.clone(),
                    params: size.params,
                    loss: c.target,
                    bs_opt: optimum.batch_tokens,
                    tokens_min: optimum.tokens,
                    extrapolated: parabola.shape != ParabolaShape::Interior,
                    predicted_bs_opt: f64::NAN,
                    log_residual: f64::NAN,
                });
            }
        }
    }
    if law_points.len() < POWER_LAW_MIN_POINTS {
        return Err(BatchLawError::TooFewOptima {
            needed: POWER_LAW_MIN_POINTS,
            got: law_points.len(),
            why: skip_summary(cells()),
        });
    }

    let pairs: Vec<(f64, f64)> = law_points.iter().map(|p| (p.loss, p.bs_opt)).collect();
    let law = fit_power_law(&pairs)?;
    for p in &mut law_points {
        p.predicted_bs_opt = law.predict(p.loss);
        p.log_residual = p.bs_opt.ln() - p.predicted_bs_opt.ln();
    }

    Ok(BatchLawReport {
        units: "batch sizes, tokens and bs_opt in tokens; loss as given; \
                bs_opt = a / L^b with a in tokens"
            .into(),
        config: *config,
        targets: targets.to_vec(),
        sizes,
        law_points,
        law,
    })
}

/// One (size, target) cell: crossings of every run of the size, the parabola, its verdict.
fn cell(
    runs: &[BatchRun],
    members: &[usize],
    target: f64,
    config: &BatchLawConfig,
) -> Result<TargetCell, BatchLawError> {
    let mut reached = Vec::new();
    let mut missed = Vec::new();
    for &run in members {
        let batch_tokens = runs[run].batch_tokens;
        match find_crossing(&runs[run].curve, target) {
            Crossing::Reached { tokens } => reached.push(ReachPoint {
                run,
                batch_tokens,
                tokens,
            }),
            crossing => missed.push(MissedRun {
                run,
                batch_tokens,
                crossing,
            }),
        }
    }
    let got = count_distinct(reached.iter().map(|p| p.batch_tokens));
    if got < PARABOLA_MIN_BATCH_SIZES {
        return Ok(TargetCell {
            target,
            reached,
            missed,
            parabola: None,
            optimum: None,
            skipped: Some(SkipReason::TooFewBatchSizesReached {
                got,
                needed: PARABOLA_MIN_BATCH_SIZES,
            }),
        });
    }
    let points: Vec<(f64, f64)> = reached.iter().map(|p| (p.batch_tokens, p.tokens)).collect();
    let parabola = fit_log_parabola(&points)?;
    let skipped = match parabola.shape {
        ParabolaShape::Interior => None,
        ParabolaShape::OpensDownward => Some(SkipReason::OpensDownward),
        _ if config.use_minima_outside_range => None,
        ParabolaShape::MinimumBelowRange => Some(SkipReason::MinimumBelowRange),
        ParabolaShape::MinimumAboveRange => Some(SkipReason::MinimumAboveRange),
    };
    let optimum = if skipped.is_none() {
        parabola.minimum()
    } else {
        None
    };
    Ok(TargetCell {
        target,
        reached,
        missed,
        parabola: Some(parabola),
        optimum,
        skipped,
    })
}

/// Targets must be usable losses and given once each.
fn check_targets(targets: &[f64]) -> Result<(), BatchLawError> {
    if targets.is_empty() {
        return Err(BatchLawError::NoTargets);
    }
    for (index, &target) in targets.iter().enumerate() {
        if let Some(problem) = value_problem("target loss", target) {
            return Err(BatchLawError::BadTarget { index, problem });
        }
        if let Some(first) = targets[..index].iter().position(|&t| t == target) {
            return Err(BatchLawError::DuplicateTarget {
                index,
                first,
                target,
            });
        }
    }
    Ok(())
}

/// Every run must have a usable size, batch size and curve, with tokens strictly increasing.
fn check_runs(runs: &[BatchRun]) -> Result<(), BatchLawError> {
    if runs.is_empty() {
        return Err(BatchLawError::NoRuns);
    }
    for (run, r) in runs.iter().enumerate() {
        let size = || r.size_label.clone();
        if let Some(problem) = value_problem("params", r.params)
            .or_else(|| value_problem("batch_tokens", r.batch_tokens))
        {
            return Err(BatchLawError::BadRun {
                run,
                size: size(),
                problem,
            });
        }
        if r.curve.is_empty() {
            return Err(BatchLawError::EmptyCurve {
                run,
                size: size(),
                batch_tokens: r.batch_tokens,
            });
        }
        for (point, &(tokens, loss)) in r.curve.iter().enumerate() {
            if let Some(problem) =
                value_problem("tokens", tokens).or_else(|| value_problem("loss", loss))
            {
                return Err(BatchLawError::BadCurvePoint {
                    run,
                    size: size(),
                    batch_tokens: r.batch_tokens,
                    point,
                    problem,
                });
            }
            if point > 0 && tokens <= r.curve[point - 1].0 {
                return Err(BatchLawError::CurveNotIncreasing {
                    run,
                    size: size(),
                    batch_tokens: r.batch_tokens,
                    point,
                    tokens,
                    previous: r.curve[point - 1].0,
                });
            }
        }
    }
    Ok(())
}

/// Runs grouped by size label, in order of first appearance, with the size's parameter count.
fn group_by_size(runs: &[BatchRun]) -> Result<Vec<(String, f64, Vec<usize>)>, BatchLawError> {
    let mut groups: Vec<(String, f64, Vec<usize>)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match groups.iter_mut().find(|g| g.0 == r.size_label) {
            Some((label, params, members)) => {
                if *params != r.params {
                    return Err(BatchLawError::InconsistentParams {
                        size: label.clone(),
                        first: *params,
                        other: r.params,
                    });
                }
                members.push(i);
            }
            None => groups.push((r.size_label.clone(), r.params, vec![i])),
        }
    }
    Ok(groups)
}

fn distinct_sorted(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// One clause on how the (size, target) pairs were lost, for the too-few-optima error.
fn skip_summary<'a>(cells: impl Iterator<Item = &'a TargetCell>) -> String {
    let (mut total, mut usable, mut too_few, mut downward, mut outside) = (0, 0, 0, 0, 0);
    for c in cells {
        total += 1;
        match c.skipped {
            None => usable += 1,
            Some(SkipReason::TooFewBatchSizesReached { .. }) => too_few += 1,
            Some(SkipReason::OpensDownward) => downward += 1,
            Some(SkipReason::MinimumBelowRange | SkipReason::MinimumAboveRange) => outside += 1,
        }
    }
    let mut parts = vec![format!("of {total} (size, target) pairs, {usable} usable")];
    if too_few > 0 {
        parts.push(format!(
            "{too_few} reached by fewer than {PARABOLA_MIN_BATCH_SIZES} batch sizes"
        ));
    }
    if downward > 0 {
        parts.push(format!("{downward} with a parabola opening downward"));
    }
    if outside > 0 {
        parts.push(format!(
            "{outside} with the minimum outside the batch sizes tried"
        ));
    }
    parts.join(", ")
}
