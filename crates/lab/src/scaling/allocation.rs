//! Compute-optimal allocation under C = 6 N D: minimising L(N, D) on that curve gives
//! N_opt = G (C/6)^(beta/(alpha+beta)) and D_opt = G^-1 (C/6)^(alpha/(alpha+beta)), with
//! G = (alpha A / (beta B))^(1/(alpha+beta)); hence N_opt / D_opt = K^2 (C/6)^eta with K = G and
//! eta = (beta - alpha)/(alpha + beta) (MiniCPM's notation).
//!
//! Units matter: G and K carry the units A and B were fitted in. Everything here is in
//! parameters, tokens and FLOPs, except [`Allocation::billions`], which restates K in MiniCPM's
//! units (N and D in billions, so C/6 in units of 1e18 FLOPs / 6).

use serde::{Deserialize, Serialize};

use super::error::{PointProblem, ScalingError};
use super::law::LawParams;
use super::point::value_problem;

/// The optimal split at one compute budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetAllocation {
    /// Training compute in FLOPs.
    pub flops: f64,
    /// Optimal model size in parameters.
    pub n_opt: f64,
    /// Optimal data in tokens.
    pub d_opt: f64,
    /// D_opt / N_opt: tokens per parameter (the same in any unit shared by N and D).
    pub tokens_per_param: f64,
    /// Predicted loss at the optimum.
    pub loss: f64,
}

/// K and the MiniCPM-style ratio restated with N and D in billions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BillionsUnits {
    /// K with N, D in billions: K_raw * 1e9^eta.
    pub k: f64,
    pub k_squared: f64,
    /// D_opt / N_opt at C/6 = 1 (billion parameters x billion tokens, i.e. C = 6e18 FLOPs): the
    /// ratio 1 / K^2 that MiniCPM quotes. It depends on this choice of units unless eta = 0.
    pub tokens_per_param_at_unit_budget: f64,
}

/// Compute-optimal scaling implied by a fitted law.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// G = K = (alpha A / (beta B))^(1/(alpha+beta)), with N in parameters and D in tokens.
    pub k: f64,
    /// K^2, in the same units: N_opt / D_opt = K^2 (C/6)^eta.
    pub k_squared: f64,
    /// eta = (beta - alpha) / (alpha + beta).
    pub eta: f64,
    /// Exponent of N_opt in C: beta / (alpha + beta).
    pub n_exponent: f64,
    /// Exponent of D_opt in C: alpha / (alpha + beta).
    pub d_exponent: f64,
    pub billions: BillionsUnits,
    /// The split at each requested budget.
    pub budgets: Vec<BudgetAllocation>,
}

/// Derives the allocation from `params` and evaluates it at each of `budgets` (FLOPs).
pub fn allocate(params: &LawParams, budgets: &[f64]) -> Result<Allocation, ScalingError> {
    for (name, value) in [
        ("alpha", params.alpha),
        ("beta", params.beta),
        ("A", params.a),
        ("B", params.b),
    ] {
        if let Some(problem) = value_problem(name, value) {
            return Err(ScalingError::InvalidConfig(format!(
                "no compute-optimal allocation: {problem}"
            )));
        }
    }
    let budgets = budgets
        .iter()
        .enumerate()
        .map(
            |(index, &flops)| match value_problem("budget (FLOPs)", flops) {
                Some(problem) => Err(bad_budget(index, problem)),
                None => Ok(at_budget(params, flops)),
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let (alpha, beta) = (params.alpha, params.beta);
    let k = g(params);
    let eta = (beta - alpha) / (alpha + beta);
    let k_billions = k * 1e9f64.powf(eta);
    Ok(Allocation {
        k,
        k_squared: k * k,
        eta,
        n_exponent: beta / (alpha + beta),
        d_exponent: alpha / (alpha + beta),
        billions: BillionsUnits {
            k: k_billions,
            k_squared: k_billions * k_billions,
            tokens_per_param_at_unit_budget: 1.0 / (k_billions * k_billions),
        },
        budgets,
    })
}

fn bad_budget(index: usize, problem: PointProblem) -> ScalingError {
    ScalingError::InvalidConfig(format!("compute budget {index}: {problem}"))
}

/// G = (alpha A / (beta B))^(1/(alpha+beta)).
fn g(params: &LawParams) -> f64 {
    ((params.alpha * params.a) / (params.beta * params.b)).powf(1.0 / (params.alpha + params.beta))
}

/// The optimal split at `flops`, assuming alpha, beta, A, B positive.
pub(crate) fn at_budget(params: &LawParams, flops: f64) -> BudgetAllocation {
    let (alpha, beta) = (params.alpha, params.beta);
    let g = g(params);
    let c6 = flops / 6.0;
    let n_opt = g * c6.powf(beta / (alpha + beta));
    let d_opt = c6.powf(alpha / (alpha + beta)) / g;
    BudgetAllocation {
        flops,
        n_opt,
        d_opt,
        tokens_per_param: d_opt / n_opt,
        loss: params.predict(n_opt, d_opt),
    }
}
