//! One error type for the batch-size law, so a caller can print any failure as a single line that
//! names the run, point or size at fault.

use crate::scaling::PointProblem;

/// Everything that can stop a batch-size law fit.
#[derive(Debug, thiserror::Error)]
pub enum BatchLawError {
    /// No runs were given.
    #[error("no runs given")]
    NoRuns,
    /// No target losses were given.
    #[error("no target losses given")]
    NoTargets,
    /// A run's size or batch size cannot be used (NaN, infinite, zero or negative).
    #[error("run {run} (size '{size}'): {problem}")]
    BadRun {
        run: usize,
        size: String,
        problem: PointProblem,
    },
    /// A run has no evaluations at all.
    #[error("run {run} (size '{size}', batch {batch_tokens} tokens): empty loss curve")]
    EmptyCurve {
        run: usize,
        size: String,
        batch_tokens: f64,
    },
    /// One evaluation of a run's curve has an unusable token count or loss.
    #[error(
        "run {run} (size '{size}', batch {batch_tokens} tokens): curve point {point}: {problem}"
    )]
    BadCurvePoint {
        run: usize,
        size: String,
        batch_tokens: f64,
        point: usize,
        problem: PointProblem,
    },
    /// A run's evaluations are not in order of tokens consumed, so "first" crossing means nothing.
    #[error(
        "run {run} (size '{size}', batch {batch_tokens} tokens): curve point {point}: tokens \
         {tokens} do not increase on the previous point's {previous}"
    )]
    CurveNotIncreasing {
        run: usize,
        size: String,
        batch_tokens: f64,
        point: usize,
        tokens: f64,
        previous: f64,
    },
    /// Two runs under one size label claim different parameter counts: likely a labelling slip.
    #[error("size '{size}': runs disagree on the parameter count ({first} vs {other})")]
    InconsistentParams {
        size: String,
        first: f64,
        other: f64,
    },
    /// A target loss cannot be used.
    #[error("target {index}: {problem}")]
    BadTarget { index: usize, problem: PointProblem },
    /// The same target loss was given twice; it would count its optima twice in the law.
    #[error("target {index} ({target}) repeats target {first}")]
    DuplicateTarget {
        index: usize,
        first: usize,
        target: f64,
    },
    /// A model size was trained with too few distinct batch sizes to fit a parabola at all.
    #[error("size '{size}' has {got} distinct batch sizes; a parabola needs at least {needed}")]
    TooFewBatchSizes {
        size: String,
        needed: usize,
        got: usize,
    },
    /// No (size, target) pair had enough runs reach the target to fit a parabola.
    #[error(
        "no target loss was reached by runs of at least {needed} distinct batch sizes of any \
         one model size"
    )]
    NoTargetReached { needed: usize },
    /// Too few (size, target) pairs gave a usable optimum to fit the law through them.
    #[error("the batch-size law needs at least {needed} optimum points, got {got} ({why})")]
    TooFewOptima {
        needed: usize,
        got: usize,
        /// How the other (size, target) pairs were lost, e.g. "3 parabolas open downward".
        why: String,
    },
    /// A point handed to a fit directly (not from runs) is unusable.
    #[error("{what}: point {index}: {problem}")]
    BadPoint {
        what: &'static str,
        index: usize,
        problem: PointProblem,
    },
    /// A fit was handed fewer points than it needs.
    #[error("{what} needs at least {needed} points, got {got}")]
    TooFewPoints {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// A fit was handed too few distinct x values to identify its parameters.
    #[error("{what} needs at least {needed} distinct {of}, got {got}")]
    TooFewDistinct {
        what: &'static str,
        of: &'static str,
        needed: usize,
        got: usize,
    },
    /// The report could not be serialised.
    #[error("cannot write the batch-size report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The scaling-law fit's check of one value serves here too: same rule, same messages.
pub(crate) use crate::scaling::value_problem;

/// Number of distinct values, compared exactly: repeated runs of one batch size (seeds) count once.
pub(crate) fn count_distinct(values: impl IntoIterator<Item = f64>) -> usize {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len()
}
