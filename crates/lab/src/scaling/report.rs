//! Per-point residuals and the serialisable report that gathers a whole scaling-law study, so the
//! CLI (or a notebook) can print or store it as JSON without recomputing anything.

use serde::{Deserialize, Serialize};

use super::allocation::{allocate, Allocation};
use super::bootstrap::{bootstrap, BootstrapConfig, BootstrapIntervals};
use super::error::ScalingError;
use super::fit::{fit_law, FitConfig, LawFit};
use super::iso_flop::{covered_budgets, iso_flop_profiles, IsoFlopProfile};
use super::law::LawParams;
use super::objective::huber;
use super::point::Point;

/// Budgets per decade of compute at which the report reads iso-FLOP profiles.
const ISO_FLOP_BUDGETS_PER_DECADE: usize = 4;

/// How one point departs from the fitted law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Residual {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
    pub predicted: f64,
    /// ln(predicted) - ln(observed): the quantity the fit penalises (about a relative error).
    pub log_residual: f64,
    /// Its Huber(delta) penalty, to see which points drive the objective.
    pub huber: f64,
}

/// Residual of every point, in input order.
pub fn residuals(points: &[Point], params: &LawParams, huber_delta: f64) -> Vec<Residual> {
    points
        .iter()
        .map(|p| {
            let predicted = params.predict(p.n, p.d);
            let log_residual = predicted.ln() - p.loss.ln();
            Residual {
                n: p.n,
                d: p.d,
                loss: p.loss,
                predicted,
                log_residual,
                huber: huber(log_residual, huber_delta),
            }
        })
        .collect()
}

/// Everything a scaling-law study reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingReport {
    /// The units every number is in, spelled out because K and A, B change with them.
    pub units: String,
    pub fit: LawFit,
    /// The same law with N and D in billions (MiniCPM's units).
    pub params_in_billions: LawParams,
    /// 95% bootstrap intervals, when asked for.
    pub intervals: Option<BootstrapIntervals>,
    /// Absent when the fitted law has no compute-optimal split (an exponent that is not
    /// positive: more parameters or more data would not lower the loss); `no_allocation` says
    /// why. A fit like that is a finding about the data, so it is reported, not refused.
    pub allocation: Option<Allocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_allocation: Option<String>,
    pub residuals: Vec<Residual>,
    /// The compute-optimal size read from the points at each budget that enough sizes cover
    /// (four budgets a decade), with no law assumed: the check on the law's allocation.
    #[serde(default)]
    pub iso_flop: Vec<IsoFlopProfile>,
}

impl ScalingReport {
    pub fn to_json(&self) -> Result<String, ScalingError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// Fits `points`, optionally bootstraps, and evaluates the allocation at `budgets` (FLOPs).
pub fn study(
    points: &[Point],
    config: &FitConfig,
    bootstrap_config: Option<&BootstrapConfig>,
    budgets: &[f64],
) -> Result<ScalingReport, ScalingError> {
    let fit = fit_law(points, config)?;
    let intervals = bootstrap_config
        .map(|b| bootstrap(points, &fit, config, b))
        .transpose()?;
    let (allocation, no_allocation) = match allocate(&fit.params, budgets) {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(ScalingReport {
        units: "N in parameters, D in tokens, C in FLOPs (C = 6ND), loss as given; \
                params_in_billions and allocation.billions use N and D in billions"
            .into(),
        params_in_billions: fit.params.in_billions(),
        residuals: residuals(points, &fit.params, config.huber_delta),
        iso_flop: iso_flop_profiles(
            points,
            &covered_budgets(points, ISO_FLOP_BUDGETS_PER_DECADE),
        ),
        fit,
        intervals,
        allocation,
        no_allocation,
    })
}
