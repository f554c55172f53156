//! Where a fitted law reaches a given loss at a given compute: the arithmetic behind iso-loss
//! contours (Hoffmann et al. 2022, Fig. 4).
//!
//! Along an iso-FLOP line D = C / (6N) the law reads, in x = ln N,
//! f(x) = E + A e^(-alpha x) + B (6/C)^beta e^(beta x): a sum of two exponentials, hence convex,
//! with its minimum at the compute-optimal N_opt(C) and growing without bound on both sides. A
//! loss level below that minimum is out of reach at C, one above it is reached by exactly two
//! model sizes, one on each side of N_opt(C). Each is found by bracketing on its side and then
//! Brent's method in ln N inside the bracket, which cannot miss the root or converge to the
//! wrong branch.
//!
//! Every function here assumes a law with positive A, B, alpha, beta and a finite E (what
//! `fit_law` returns); for anything else they return an empty answer, never a wrong one.

use super::allocation::at_budget;
use super::law::LawParams;
use super::univariate::root;

/// A level this close to the frontier's loss (relative) counts as touching it: one solution.
const TOUCH: f64 = 1e-12;

/// The compute-optimal model size N_opt(C) at `flops` (the efficient frontier); the same
/// number as `allocate`'s `n_opt`. NaN for an unusable law or budget.
pub fn frontier(law: &LawParams, flops: f64) -> f64 {
    if !usable(law) || !positive(flops) {
        return f64::NAN;
    }
    at_budget(law, flops).n_opt
}

/// The lowest loss reachable with `flops`: the law at (N_opt(C), D_opt(C)). NaN when unusable.
pub fn frontier_loss(law: &LawParams, flops: f64) -> f64 {
    if !usable(law) || !positive(flops) {
        return f64::NAN;
    }
    at_budget(law, flops).loss
}

/// The least compute that reaches `level`: the C where the frontier's loss equals it, i.e. the
/// leftmost point of the level's contour. On the frontier both reducible terms scale as
/// (C/6)^-gamma with gamma = alpha beta / (alpha + beta), so
/// L_opt(C) = E + K (C/6)^-gamma with K = A G^-alpha + B G^beta, and this inverts in closed form.
/// None when the level is at or below E (no compute reaches it) or the law is unusable.
pub fn compute_to_reach(law: &LawParams, level: f64) -> Option<f64> {
    if !usable(law) || !level.is_finite() || level <= law.e {
        return None;
    }
    let (alpha, beta) = (law.alpha, law.beta);
    let g = ((alpha * law.a) / (beta * law.b)).powf(1.0 / (alpha + beta));
    let k = law.a * g.powf(-alpha) + law.b * g.powf(beta);
    let gamma = alpha * beta / (alpha + beta);
    let flops = 6.0 * ((level - law.e) / k).powf(-1.0 / gamma);
    positive(flops).then_some(flops)
}

/// The compute at which a model of `n` parameters reaches `level`, where the level's contour
/// crosses the horizontal line N = n. For fixed N the loss falls monotonically with data, so
/// there is at most one: B / D^beta = level - E - A / N^alpha gives D, and C = 6 N D. None when
/// the model is too small to ever reach the level.
pub fn compute_at_size(law: &LawParams, level: f64, n: f64) -> Option<f64> {
    if !usable(law) || !level.is_finite() || !positive(n) {
        return None;
    }
    let data_term = level - law.e - law.a * n.powf(-law.alpha);
    if data_term <= 0.0 {
        return None;
    }
    let flops = 6.0 * n * (law.b / data_term).powf(1.0 / law.beta);
    positive(flops).then_some(flops)
}

/// The model sizes that reach exactly `level` with `flops` of compute, ascending: none when the
/// level is below the frontier's loss at C, N_opt(C) alone when it touches it (within 1e-12
/// relative), otherwise one smaller and one larger than N_opt(C).
pub fn iso_loss_n(law: &LawParams, level: f64, flops: f64) -> Vec<f64> {
    if !usable(law) || !positive(flops) || !level.is_finite() {
        return Vec::new();
    }
    let loss_at = |x: f64| {
        let n = x.exp();
        law.predict(n, flops / (6.0 * n))
    };
    let n_opt = frontier(law, flops);
    let x_opt = n_opt.ln();
    let lowest = loss_at(x_opt);
    if (level - lowest).abs() <= TOUCH * lowest.abs() {
        return vec![n_opt];
    }
    if level < lowest {
        return Vec::new();
    }
    [-1.0, 1.0]
        .into_iter()
        .filter_map(|side| {
            let outside = bracket(&loss_at, level, x_opt, side)?;
            Some(root(|x| loss_at(x) - level, x_opt, outside)?.exp())
        })
        .collect()
}

/// Walks from the minimum at `x_opt` towards `side` (-1 smaller models, +1 larger) with doubling
/// steps until the loss reaches `level`; returns that point. Both ends of the iso-FLOP line go to
/// infinity, so this ends within a few dozen steps for any usable law.
fn bracket(loss_at: &impl Fn(f64) -> f64, level: f64, x_opt: f64, side: f64) -> Option<f64> {
    let mut step = 1.0;
    for _ in 0..80 {
        let x = x_opt + side * step;
        let loss = loss_at(x);
        if loss.is_nan() {
            return None;
        }
        if loss >= level {
            return Some(x);
        }
        step *= 2.0;
    }
    None
}

/// A law the contour arithmetic can use: what `allocate` demands, plus a finite E.
pub(crate) fn usable(law: &LawParams) -> bool {
    law.e.is_finite()
        && [law.a, law.b, law.alpha, law.beta]
            .into_iter()
            .all(positive)
}

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

#[cfg(test)]
mod tests {
    use super::super::allocation::allocate;
    use super::*;

    use crate::scaling::law::CHINCHILLA_REFIT as CHINCHILLA;

    /// MiniCPM-like exponents (alpha > beta, so data outgrows the model), in parameters/tokens.
    const DATA_HUNGRY: LawParams = LawParams {
        e: 0.6,
        a: 50.0,
        b: 120.0,
        alpha: 0.29,
        beta: 0.23,
    };

    fn budgets() -> impl Iterator<Item = f64> {
        (0..=12).map(|i| 10f64.powf(17.0 + 0.5 * i as f64))
    }

    fn loss_at(law: &LawParams, n: f64, flops: f64) -> f64 {
        law.predict(n, flops / (6.0 * n))
    }

    #[test]
    fn solutions_reach_the_level() {
        for law in [CHINCHILLA, DATA_HUNGRY] {
            for flops in budgets() {
                let lowest = frontier_loss(&law, flops);
                for excess in [1e-6, 1e-3, 0.01, 0.1, 0.5, 2.0, 10.0] {
                    let level = lowest + excess;
                    let sizes = iso_loss_n(&law, level, flops);
                    assert_eq!(sizes.len(), 2, "level {level} at {flops:e}");
                    for n in sizes {
                        let loss = loss_at(&law, n, flops);
                        assert!(
                            (loss - level).abs() <= 1e-9 * level,
                            "N {n:e} at {flops:e}: loss {loss} for level {level}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn below_the_frontier_nothing_above_it_one_size_either_side() {
        for law in [CHINCHILLA, DATA_HUNGRY] {
            for flops in budgets() {
                let n_opt = frontier(&law, flops);
                let lowest = frontier_loss(&law, flops);
                assert!(iso_loss_n(&law, lowest * (1.0 - 1e-9), flops).is_empty());
                assert!(iso_loss_n(&law, law.e, flops).is_empty());
                assert_eq!(iso_loss_n(&law, lowest, flops), vec![n_opt]);
                let sizes = iso_loss_n(&law, lowest * 1.01, flops);
                assert_eq!(sizes.len(), 2);
                assert!(
                    sizes[0] < n_opt && n_opt < sizes[1],
                    "{sizes:?} vs {n_opt:e}"
                );
            }
        }
    }

    #[test]
    fn the_frontier_is_the_allocation_and_the_iso_flop_minimum() {
        for law in [CHINCHILLA, DATA_HUNGRY] {
            let flops: Vec<f64> = budgets().collect();
            let allocation = allocate(&law, &flops).unwrap();
            for budget in &allocation.budgets {
                let n_opt = frontier(&law, budget.flops);
                assert_eq!(n_opt, budget.n_opt);
                assert_eq!(frontier_loss(&law, budget.flops), budget.loss);
                // An independent check: 0.1% either way along the iso-FLOP line costs loss.
                let at = |n: f64| loss_at(&law, n, budget.flops);
                assert!(at(n_opt * 1.001) > at(n_opt) && at(n_opt / 1.001) > at(n_opt));
            }
        }
        // Chinchilla's law puts about 20 tokens per parameter on the frontier near 1e23 FLOPs.
        let n = frontier(&CHINCHILLA, 1e23);
        let ratio = 1e23 / (6.0 * n) / n;
        assert!((15.0..30.0).contains(&ratio), "{ratio}");
    }

    #[test]
    fn closed_forms_agree_with_the_law() {
        for law in [CHINCHILLA, DATA_HUNGRY] {
            for flops in budgets() {
                let level = frontier_loss(&law, flops);
                let back = compute_to_reach(&law, level).unwrap();
                assert!((back / flops - 1.0).abs() < 1e-9, "{back:e} vs {flops:e}");
                // Where the level's contour crosses a size, that size reaches the level.
                let level = level + 0.05;
                for n in iso_loss_n(&law, level, flops) {
                    let c = compute_at_size(&law, level, n).unwrap();
                    assert!((c / flops - 1.0).abs() < 1e-6, "{c:e} vs {flops:e}");
                }
            }
            assert_eq!(compute_to_reach(&law, law.e), None);
            // A model too small never reaches a level near E, whatever its data.
            assert_eq!(compute_at_size(&law, law.e + 1e-6, 1e6), None);
        }
    }

    #[test]
    fn unusable_inputs_give_no_answer() {
        let flat = LawParams {
            alpha: 0.0,
            ..CHINCHILLA
        };
        assert!(iso_loss_n(&flat, 3.0, 1e20).is_empty());
        assert!(frontier(&flat, 1e20).is_nan());
        assert!(iso_loss_n(&CHINCHILLA, 3.0, -1.0).is_empty());
        assert!(iso_loss_n(&CHINCHILLA, f64::NAN, 1e20).is_empty());
        assert_eq!(compute_to_reach(&flat, 3.0), None);
    }
}
