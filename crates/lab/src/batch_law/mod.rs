//! The batch-size law of MiniCPM (section 3): the batch size that reaches a loss with the fewest
//! tokens falls on a power law of that loss, bs_opt = a / L^b (the paper: a = 1.21e9, b = 6.24,
//! batch in tokens, L the C4 loss).
//!
//! The method, one file per step:
//! 1. crossings ([`find_crossing`]): for each run (a model size and a batch size at a fixed
//!    learning rate) and each target loss, the tokens at which its held-out loss curve first
//!    reaches the target;
//! 2. the parabola ([`fit_log_parabola`]): for each model size and target, a parabola through the
//!    (batch, tokens) points in log space, whose vertex is the batch that needs the fewest tokens;
//! 3. the law ([`fit_power_law`]): a straight line through the vertices of all sizes and targets
//!    in log space, with intervals from Student's t ([`student_t_quantile`]);
//! 4. the report ([`fit_batch_law`]): all of it over a set of runs, with what was used and why
//!    anything was skipped.
//!
//! The objective is tokens, not steps: a larger batch always needs fewer steps, but past the
//! optimum each token does less.

mod crossing;
mod error;
mod parabola;
mod power_law;
mod report;
mod student_t;

pub use crossing::{find_crossing, tokens_to_reach, Crossing};
pub use error::BatchLawError;
pub use parabola::{
    fit_log_parabola, ParabolaFit, ParabolaShape, Vertex, PARABOLA_MIN_BATCH_SIZES,
};
pub use power_law::{fit_power_law, Estimate, PowerLawFit, POWER_LAW_MIN_POINTS};
pub use report::{
    fit_batch_law, fit_batch_law_with, BatchLawConfig, BatchLawReport, BatchRun, LawPoint,
    MissedRun, ReachPoint, SizeReport, SkipReason, TargetCell,
};
pub use student_t::{student_t_cdf, student_t_quantile};
